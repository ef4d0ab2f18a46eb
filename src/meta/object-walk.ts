// What a peer lacks of some commits, worked out in this process (cluster/sync-push.ts sends it
// over the member RPC instead of a `git push`: on a busy 2-core machine a push and the receiving
// side's receive-pack and hooks were more than half of all the CPU sync spent). The commits in
// the history of `tips` and not of what the peer holds, and for each the objects of its tree that
// its first parent's tree lacks: all that is new to a peer that holds the first parents.
// A peer that does not hold what we think it does says which objects are missing, and the
// caller pushes with git (which negotiates) instead.
import { parseCommit, type GitRepo } from './repo.js';
import type { ObjectType, SentObject } from './object-check.js';
import { parseTree } from './tree-diff.js';

export interface SendLimits { maxCommits: number; maxBytes: number; maxObjects: number }

/** The objects to send, commits first (newest first); null when past a limit (the caller pushes with git). */
export async function objectsToSend(repo: Pick<GitRepo, 'types' | 'newCommits' | 'rawObjects' | 'readCommit' | 'readTrees' | 'totalSize'>, tips: string[], have: string[], limits: SendLimits): Promise<SentObject[] | null> {
  const present = await repo.types(have);
  const held = have.filter((h) => present.get(h) === 'commit');
  const commits = await repo.newCommits(tips, held, limits.maxCommits);
  if (!commits) return null;
  const out = new Map<string, SentObject>();
  let bytes = 0;
  const add = (type: ObjectType, oid: string, data: Buffer) => {
    if (out.has(oid)) return true;
    out.set(oid, { type, oid, data });
    bytes += data.length;
    return bytes <= limits.maxBytes && out.size <= limits.maxObjects;
  };
  const raw = await repo.rawObjects(commits);
  // Parsed from the bytes just read; a first parent outside them is read (cached) on its own.
  const parsed = new Map(commits.map((c) => [c, parseCommit(c, raw.get(c)!)]));
  const treeOf = async (c: string) => (parsed.get(c) ?? (await repo.readCommit(c))).tree;
  // Pairs of (tree, the same directory's tree in the first parent, or null: all of it is new).
  let level: [string, string | null][] = [];
  for (const c of commits) {
    if (!add('commit', c, raw.get(c)!.data)) return null;
    const info = parsed.get(c)!;
    const parent = info.parents[0] ? await treeOf(info.parents[0]) : null;
    if (info.tree !== parent) level.push([info.tree, parent]);
  }
  const blobs = new Set<string>();
  const seen = new Set<string>();
  while (level.length) {
    level = level.filter(([t]) => !seen.has(t) && !out.has(t));
    for (const [t] of level) seen.add(t);
    if (!level.length) break;
    const trees = await repo.readTrees([...new Set(level.flatMap(([t, old]) => (old ? [t, old] : [t])))]);
    const next: [string, string | null][] = [];
    for (const [t, old] of level) {
      const data = trees.get(t)!;
      if (!add('tree', t, data)) return null;
      const before = new Map(old ? parseTree(trees.get(old)!).map((e) => [`${e.mode} ${e.name.toString('latin1')}`, e.oid]) : []);
      for (const e of parseTree(data)) {
        const was = before.get(`${e.mode} ${e.name.toString('latin1')}`);
        if (was === e.oid) continue; // the parent has it, and all below it
        if (e.mode === '40000') next.push([e.oid, was ?? null]);
        else if (e.mode === '100644') blobs.add(e.oid);
        else return null; // never written here (a gitlink, a symlink mode): git push judges it
      }
    }
    level = next;
  }
  const wanted = [...blobs].filter((b) => !out.has(b));
  if (wanted.length) {
    if ((await repo.totalSize(wanted)) + bytes > limits.maxBytes) return null;
    for (const [oid, o] of await repo.rawObjects(wanted)) if (!add(o.type as ObjectType, oid, o.data)) return null;
  }
  return [...out.values()];
}

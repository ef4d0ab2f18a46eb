// Deterministic merges of two namespace heads. The result is a pure function of the two commits
// (and so of their merge base): every node that merges the same pair writes the same tree and the
// same commit id, so peers converge instead of merging each other's merges forever.
//
// Rules, per path (a file, symlink, directory marker or cluster record):
// - changed on one side only: that side; changed identically: either.
// - changed on both: the version with the later mtime keeps the name (ties: the larger blob id);
//   the other is kept beside it as `name.sync-conflict-YYYYMMDD-HHMMSS-NODE.ext` (the stem cut
//   on a character boundary so the name fits in 255 bytes; `.2`, `.3` ... when taken). Conflicts
//   are resolved in path order, so every node picks the same free names.
// - deleted on one side, changed on the other: the change is kept.
// - directory attributes on both sides: the later one, no copy. Records on both: the larger bytes.
// - a file where the other side has a directory: the file moves to a conflict name.
// - what the merge cannot place (no valid free name) is left out and reported in `leftOut`:
//   it stays in the history of the side it came from, and the merge still succeeds, since a
//   merge that fails fails on every node alike and would stop sync for good.
// A head whose own names are not UTF-8 is refused (its paths would collapse into one another).
import type { GitRepo } from './repo.js';
import type { PackObject } from './pack.js';
import { decodeEntry, Entry } from './entry.js';
import { DIR_MARKER, MAX_NAME_BYTES, decodeName, encodeName, storedNameProblem } from './names.js';
import { buildTrees, objectId, RECORDS, GitObject } from './tree.js';

interface Row { mode: string; oid: string }
type Flat = Map<string, Row>; // encoded blob path -> row

export interface MergeChange { path: string; row: Row | null }
export interface MergeResult {
  /** The new head: theirs (fast-forward) or a new merge commit. */
  commit: string;
  fastForward: boolean;
  /** Blob-level changes from ours to the result, by encoded path. */
  changes: MergeChange[];
  /** Tree ids of the result by encoded directory path ('' = root), to keep the in-memory cache exact. */
  trees: Map<string, string>;
  /** Blob contents of every changed path (for applying the changes). */
  blobs: Map<string, Buffer>;
  /** Encoded directory paths their side added since the base (to validate their names). */
  addedDirs: string[];
  /** Versions the merge could not place under any valid name: kept only in their side's history. */
  leftOut: { path: string; oid: string; reason: string }[];
}

const MERGER = 'delugefs <merge@delugefs>';

interface Flattened { blobs: Flat; trees: Map<string, string>; /** Rows whose path is not UTF-8: `path oid`. */ badUtf8: Set<string> }

async function flatten(repo: GitRepo, commit: string): Promise<Flattened> {
  const c = await repo.readCommit(commit);
  const blobs: Flat = new Map();
  const trees = new Map<string, string>([['', c.tree]]);
  const badUtf8 = new Set<string>();
  for (const r of await repo.lsTree(c.tree)) {
    if (r.badUtf8) badUtf8.add(`${r.path} ${r.oid}`);
    if (r.type === 'blob') blobs.set(r.path, { mode: r.mode, oid: r.oid });
    else if (r.type === 'tree') trees.set(r.path, r.oid);
  }
  return { blobs, trees, badUtf8 };
}

/**
 * Refuses a head that brings in (since the base) a path that is not UTF-8, or a file and a
 * directory of one name: both would collapse two entries into one. Names are checked by the
 * caller (namespace.ts validate) on the changes and `addedDirs`.
 */
function checkTheirs(theirs: Flattened, base: Flattened, oid: string): void {
  for (const row of theirs.badUtf8) {
    if (!base.badUtf8.has(row)) throw new Error(`merge rejected: ${oid.slice(0, 12)} has a name that is not UTF-8 (${JSON.stringify(row.split(' ')[0])})`);
  }
  for (const d of addedDirs(base.trees, theirs.trees)) {
    if (theirs.blobs.has(d)) throw new Error(`merge rejected: ${oid.slice(0, 12)} has a file and a directory named ${JSON.stringify(d)}`);
  }
}

function diff(from: Flat, to: Flat): MergeChange[] {
  const out: MergeChange[] = [];
  for (const [p, r] of to) if (from.get(p)?.oid !== r.oid) out.push({ path: p, row: r });
  for (const p of from.keys()) if (!to.has(p)) out.push({ path: p, row: null });
  return out;
}

/**
 * The name a losing version of `name` is kept under; `n` > 1 counts up when that name is taken.
 * Always at most MAX_NAME_BYTES of UTF-8: the stem is cut on a character boundary, and the
 * extension is kept when it fits beside at least one character of stem.
 */
export function conflictName(name: string, mtime: number, node: string, n = 1): string {
  const t = new Date(mtime);
  const d = Number.isNaN(t.getTime()) ? new Date(0) : t; // a peer's mtime past year 275760 has no date
  const pad = (v: number) => String(v).padStart(2, '0');
  const stamp = `${d.getUTCFullYear()}${pad(d.getUTCMonth() + 1)}${pad(d.getUTCDate())}-${pad(d.getUTCHours())}${pad(d.getUTCMinutes())}${pad(d.getUTCSeconds())}`;
  const safeNode = node.replace(/[^A-Za-z0-9]/g, '').slice(0, 16) || 'unknown';
  const tag = `.sync-conflict-${stamp}-${safeNode}`;
  const count = n > 1 ? `.${n}` : '';
  const room = MAX_NAME_BYTES - Buffer.byteLength(tag) - Buffer.byteLength(count);
  const dot = name.lastIndexOf('.');
  let [stem, ext] = dot > 0 ? [name.slice(0, dot), name.slice(dot)] : [name, ''];
  if (Buffer.byteLength(ext) >= room) [stem, ext] = [name, ''];
  return `${truncateUtf8(stem, room - Buffer.byteLength(ext))}${tag}${ext}${count}`;
}

/** The longest prefix of s (whole code points) whose UTF-8 takes at most max bytes. */
function truncateUtf8(s: string, max: number): string {
  if (Buffer.byteLength(s) <= max) return s;
  let bytes = 0;
  let end = 0;
  for (const ch of s) {
    bytes += Buffer.byteLength(ch);
    if (bytes > max) break;
    end += ch.length;
  }
  return s.slice(0, end);
}

export async function computeMerge(repo: GitRepo, ours: string, theirs: string): Promise<MergeResult> {
  const base = await repo.mergeBase(ours, theirs);
  if (!base) throw new Error(`cannot merge ${theirs.slice(0, 12)}: no common history with ${ours.slice(0, 12)} (another cluster?)`);
  const o = await flatten(repo, ours);
  if (base === ours) {
    const t = await flatten(repo, theirs);
    checkTheirs(t, o, theirs);
    const changes = diff(o.blobs, t.blobs);
    return { commit: theirs, fastForward: true, changes, trees: t.trees, blobs: await contents(repo, changes), addedDirs: addedDirs(o.trees, t.trees), leftOut: [] };
  }
  const [b, t] = await Promise.all([flatten(repo, base), flatten(repo, theirs)]);
  checkTheirs(t, b, theirs);
  const result: Flat = new Map();
  const conflicts: { path: string; a: Row; b: Row }[] = [];
  const paths = new Set([...o.blobs.keys(), ...t.blobs.keys()]);
  for (const p of paths) {
    const bo = b.blobs.get(p), oo = o.blobs.get(p), to = t.blobs.get(p);
    if (oo?.oid === to?.oid) { if (oo) result.set(p, oo); continue; }
    if (oo?.oid === bo?.oid) { if (to) result.set(p, to); continue; }
    if (to?.oid === bo?.oid) { if (oo) result.set(p, oo); continue; }
    if (!oo || !to) { result.set(p, (oo ?? to)!); continue; } // delete racing modify: keep the modify
    conflicts.push({ path: p, a: oo, b: to });
  }
  // Path order, not arrival order: two conflicts may compete for one free name.
  conflicts.sort((x, y) => (x.path < y.path ? -1 : x.path > y.path ? 1 : 0));
  const leftOut: MergeResult['leftOut'] = [];
  // Resolve conflicts: contents are needed to order them.
  const blobData = await repo.readBlobs([...new Set(conflicts.flatMap((c) => [c.a.oid, c.b.oid]))]);
  for (const c of conflicts) {
    const slash = c.path.lastIndexOf('/');
    const name = c.path.slice(slash + 1);
    if (c.path.startsWith(RECORDS + '/')) {
      result.set(c.path, Buffer.compare(blobData.get(c.a.oid)!, blobData.get(c.b.oid)!) >= 0 ? c.a : c.b);
      continue;
    }
    const ea = safeDecode(blobData.get(c.a.oid)!), eb = safeDecode(blobData.get(c.b.oid)!);
    const aWins = ea.mtime !== eb.mtime ? ea.mtime > eb.mtime : c.a.oid > c.b.oid;
    const [win, lose, loser] = aWins ? [c.a, c.b, eb] : [c.b, c.a, ea];
    result.set(c.path, win);
    if (name === DIR_MARKER) continue;
    place(result, leftOut, c.path, lose, loser);
  }
  await fixStructure(result, [o.blobs, t.blobs, b.blobs], repo, leftOut);
  const objects: GitObject[] = [];
  const trees = new Map<string, string>();
  const root = buildTrees(result, objects, trees);
  const [first, second] = [ours, theirs].sort();
  const time = Math.max((await repo.readCommit(ours)).time, (await repo.readCommit(theirs)).time);
  const text = `tree ${root}\nparent ${first}\nparent ${second}\nauthor ${MERGER} ${time} +0000\ncommitter ${MERGER} ${time} +0000\n\nMerge ${first.slice(0, 12)} and ${second.slice(0, 12)}\n`;
  const data = Buffer.from(text);
  const commit = objectId('commit', data);
  await repo.writeObjects([...(objects as PackObject[]), { type: 'commit', oid: commit, data }]);
  const changes = diff(o.blobs, result);
  return { commit, fastForward: false, changes, trees, blobs: await contents(repo, changes), addedDirs: addedDirs(b.trees, t.trees), leftOut };
}

/** Directories their side made since the base (an empty one holds no blob to check the name of). */
function addedDirs(base: Map<string, string>, theirs: Map<string, string>): string[] {
  return [...theirs.keys()].filter((p) => p !== '' && !base.has(p));
}

function safeDecode(data: Buffer): Entry {
  try {
    return decodeEntry(data);
  } catch {
    return { type: 'dir', mode: 0, uid: 0, gid: 0, mtime: 0, ctime: 0 };
  }
}

/** Puts the losing version of path under a free conflict name, or reports it left out. */
function place(result: Flat, leftOut: MergeResult['leftOut'], path: string, row: Row, loser: Entry): void {
  const slash = path.lastIndexOf('/');
  const dir = path.slice(0, slash + 1);
  const encName = path.slice(slash + 1);
  const problem = storedNameProblem(encName);
  if (problem) {
    leftOut.push({ path, oid: row.oid, reason: `its name cannot be a conflict copy: ${problem}` });
    return;
  }
  result.set(freeName(result, dir, decodeName(encName), loser), row);
}

/** A conflict name not yet taken in dir (counting up if the same second already had a conflict). */
function freeName(result: Flat, dir: string, name: string, loser: Entry): string {
  const taken = (p: string) => result.has(p) || [...result.keys()].some((k) => k.startsWith(p + '/'));
  let candidate = '';
  for (let i = 1; !candidate || taken(candidate); i++) candidate = dir + encodeName(conflictName(name, loser.mtime, loser.node ?? 'unknown', i));
  return candidate;
}

/**
 * Repairs what path-wise merging can break: a directory whose marker was deleted on one side
 * while the other added inside it gets its marker back, and a file standing where the other side
 * made a directory moves to a conflict name.
 */
async function fixStructure(result: Flat, sides: Flat[], repo: GitRepo, leftOut: MergeResult['leftOut']): Promise<void> {
  const dirs = new Set<string>();
  for (const p of result.keys()) {
    if (p.startsWith(RECORDS + '/')) continue;
    const parts = p.split('/');
    for (let i = 1; i < parts.length; i++) dirs.add(parts.slice(0, i).join('/'));
  }
  const clashes = [...dirs].filter((d) => result.has(d));
  const data = await repo.readBlobs([...new Set(clashes.map((d) => result.get(d)!.oid))]);
  for (const d of [...dirs].sort()) {
    const file = result.get(d);
    if (file) {
      result.delete(d);
      place(result, leftOut, d, file, safeDecode(data.get(file.oid)!));
    }
    const marker = `${d}/${DIR_MARKER}`;
    if (!result.has(marker)) {
      const row = sides.map((s) => s.get(marker)).find(Boolean);
      if (row) result.set(marker, row);
    }
  }
}

async function contents(repo: GitRepo, changes: MergeChange[]): Promise<Map<string, Buffer>> {
  const oids = [...new Set(changes.filter((c) => c.row).map((c) => c.row!.oid))];
  return repo.readBlobs(oids);
}


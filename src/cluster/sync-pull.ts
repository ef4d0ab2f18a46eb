// Anti-entropy over the member RPC: `sync_summary` (a peer's refs/nodes map, in place of `git
// ls-remote`) and `sync_pull` (the values asked for and what the asker lacks of them, in the
// shape of a sync_push, in place of `git fetch`). The asker judges and stores a pull's reply
// exactly as it judges a push (sync-push.ts receivePush: members' refs only, forward only,
// every object checked). Each exchange over git cost both ends a few processes (ssh, git,
// upload-pack, index-pack, the fetch's quarantine): with 8 nodes writing at once they were most
// of the spawns left. A pull too big for one reply (a long catch-up) says so, and the asker
// fetches with git (bounded-fetch.ts).
import type { GitRepo } from '../meta/repo.js';
import { NODE_REFS } from '../meta/repo.js';
import { objectsToSend } from '../meta/object-walk.js';
import { isNodeId } from './identity.js';
import { encodePush, MAX_PUSH_BYTES, MAX_PUSH_OBJECTS, type PushParams } from './sync-push.js';

export const SYNC_SUMMARY = 'sync_summary';
export const SYNC_PULL = 'sync_pull';
/** Refs one summary lists at most (a cluster's members, current and past). */
export const MAX_SUMMARY_REFS = 100_000;
/** Values one pull asks for, and commits it names as held, at most. */
const MAX_WANT = 1024;
const MAX_HAVE = 4096;
const OID = /^[0-9a-f]{40}$/;

export interface PullParams { want: string[]; have: string[] }
/** The values and objects (as a push carries them), or `tooBig`: fetch with git. */
export type PullReply = PushParams | { tooBig: true };

export class PullRefused extends Error {}

/** Our refs/nodes map, for a member's `sync_summary`. */
export async function summary(repo: Pick<GitRepo, 'listRefs'>): Promise<{ refs: Record<string, string> }> {
  const refs: Record<string, string> = {};
  let n = 0;
  for (const [id, oid] of await repo.listRefs(NODE_REFS)) if (isNodeId(id) && n++ < MAX_SUMMARY_REFS) refs[id] = oid;
  return { refs };
}

/** A peer's summary reply: node id -> value; malformed entries are left out, the rest bounded. */
export function parseSummary(reply: unknown): Map<string, string> {
  const refs = (reply as { refs?: unknown } | null)?.refs;
  if (!refs || typeof refs !== 'object' || Array.isArray(refs)) throw new Error('malformed sync_summary reply');
  const out = new Map<string, string>();
  for (const [id, oid] of Object.entries(refs)) {
    if (out.size >= MAX_SUMMARY_REFS) break;
    if (isNodeId(id) && typeof oid === 'string' && OID.test(oid)) out.set(id, oid);
  }
  return out;
}

type PullRepo = Pick<GitRepo, 'readRefs' | 'types' | 'newCommits' | 'rawObjects' | 'readCommit' | 'readTrees' | 'totalSize'>;

/** Serves a member's `sync_pull`: our values of `want` and their objects not in the history of `have`. */
export async function servePull(repo: PullRepo, params: unknown, maxCommits = 256): Promise<PullReply> {
  const p = params as Partial<PullParams> | null;
  if (!p || typeof p !== 'object' || !Array.isArray(p.want) || !Array.isArray(p.have)) throw new PullRefused('needs {want, have}');
  if (p.want.length > MAX_WANT || p.have.length > MAX_HAVE) throw new PullRefused('too many refs asked for or named as held');
  for (const id of p.want) if (typeof id !== 'string' || !isNodeId(id)) throw new PullRefused('want: node ids only');
  for (const oid of p.have) if (typeof oid !== 'string' || !OID.test(oid)) throw new PullRefused('have: commit ids only');
  const cur = await repo.readRefs([...new Set(p.want)].map((id) => NODE_REFS + id));
  const values = new Map<string, string>();
  for (const [r, oid] of cur) if (oid) values.set(r.slice(NODE_REFS.length), oid);
  if (!values.size) return encodePush(values, []);
  // Anything odd in what we hold (a tree too big, an entry we never write): git's fetch judges it.
  const objects = await objectsToSend(repo, [...values.values()], [...new Set(p.have)], { maxCommits, maxBytes: MAX_PUSH_BYTES, maxObjects: MAX_PUSH_OBJECTS }).catch(() => null);
  return objects ? encodePush(values, objects) : { tooBig: true };
}

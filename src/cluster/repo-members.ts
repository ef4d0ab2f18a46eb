// Membership as a metadata repository's main branch holds it, for a process that is not the node:
// `delugefs shell` under a foreign sshd asks it on every call. Read from the repository rather
// than asked of the running node: the shell serves git whether or not the node runs, main is
// where the node commits every admission, revocation and merge, and a check that needs no control
// socket cannot be skipped when the node is down or slow (no answer must never mean "member").
import { GitRepo } from '../meta/repo.js';
import { RECORDS } from '../meta/tree.js';
import { MapRecordStore, Membership } from './membership.js';

/** The member records on main, as a Membership (read-only use); throws when they cannot be read. */
export async function membershipFromRepo(repoDir: string): Promise<Membership> {
  const repo = new GitRepo(repoDir);
  const head = await repo.head();
  if (!head) throw new Error(`${repoDir} has no main branch`);
  const rows = (await repo.lsTree(`${head}:${RECORDS}`)).filter((r) => r.type === 'blob');
  const blobs = await repo.readBlobs([...new Set(rows.map((r) => r.oid))]);
  const store = new MapRecordStore();
  for (const r of rows) store.map.set(r.path, blobs.get(r.oid)!);
  return new Membership(store);
}

/**
 * Why `nodeId` may not be served according to the repository (removed, never admitted), or
 * undefined for a current member. Failing to read the records is a refusal too.
 */
export async function refusalFromRepo(repoDir: string, nodeId: string): Promise<string | undefined> {
  let m: Membership;
  try {
    m = await membershipFromRepo(repoDir);
  } catch (e) {
    return `cannot read the member records of ${repoDir}: ${(e as Error).message.split('\n')[0]}`;
  }
  if (m.isRevoked(nodeId)) return `node ${nodeId} was removed from the cluster`;
  if (!m.get(nodeId)) return `node ${nodeId} is not a member of the cluster`;
  return undefined;
}

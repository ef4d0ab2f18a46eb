// New refs/nodes values and their objects over the member RPC (`sync_push`), judged and stored in
// this process: no git push, receive-pack, hooks or pack-objects per hop (those were more than
// half of sync's CPU with 8 nodes on 2 cores). The same rules as the hooks (repo-guard.ts), by
// the same node: the caller is an authenticated member (the RPC layer), each ref is a member's
// node id in our records, forward only, every object checked (meta/object-check.ts: narrower
// than git's fsck) and every object they name present, here or sent. Nothing is written unless
// every object passes; a ref that fails is refused alone. Objects that name something we do not
// have make the reply `missing` and the sender pushes with git instead (which negotiates).
import type { GitRepo } from '../meta/repo.js';
import { MAX_ENTRY_BLOB, NODE_REFS } from '../meta/repo.js';
import { checkObject, ObjectRefused, type Link, type SentObject } from '../meta/object-check.js';
import { isNodeId } from './identity.js';

export const SYNC_PUSH = 'sync_push';
/** What one call may carry (raw bytes; base64 in JSON stays under the RPC input limit of 1 MiB). */
export const MAX_PUSH_BYTES = 640 * 1024;
export const MAX_PUSH_OBJECTS = 20_000;
const MAX_PUSH_REFS = 1024;

export interface PushParams { refs: Record<string, string>; objects: [string, string][] }
/** Per node id: "ok" or why it was refused. `missing`: objects named but absent (nothing was written). */
export interface PushReply { results: Record<string, string>; missing?: string[] }

export function encodePush(refs: Map<string, string>, objects: SentObject[]): PushParams {
  return { refs: Object.fromEntries(refs), objects: objects.map((o) => [o.type, o.data.toString('base64')]) };
}

export class PushRefused extends Error {}

interface ReceiveOptions {
  repo: Pick<GitRepo, 'types' | 'writeObjects' | 'readRefs' | 'isAncestor' | 'updateRefsEach'>;
  /** A member in our records, not revoked (the update hook's rule). */
  isMember: (id: string) => boolean;
  /** This node's id: its own ref moves with its own commits only. */
  self: string;
  maxBlob?: number;
}

/** Judges and stores one `sync_push`; throws PushRefused (nothing written) on a malformed call or object. */
export async function receivePush(o: ReceiveOptions, params: unknown): Promise<PushReply> {
  const p = params as Partial<PushParams> | null;
  if (!p || typeof p !== 'object' || !p.refs || typeof p.refs !== 'object' || Array.isArray(p.refs) || !Array.isArray(p.objects)) throw new PushRefused('needs {refs, objects}');
  const refs = Object.entries(p.refs);
  if (refs.length > MAX_PUSH_REFS || p.objects.length > MAX_PUSH_OBJECTS) throw new PushRefused('too many refs or objects');
  for (const [id, oid] of refs) if (!isNodeId(id) || typeof oid !== 'string' || !/^[0-9a-f]{40}$/.test(oid)) throw new PushRefused(`bad ref ${JSON.stringify(id).slice(0, 40)}`);
  // Judged before anything is read or written: a call without a member's ref stores nothing.
  const results: Record<string, string> = {};
  const members = refs.filter(([id]) => {
    if (id === o.self) results[id] = "this node's own ref moves with its own commits only";
    else if (!o.isMember(id)) results[id] = `${id} is not a member here`;
    else return true;
    return false;
  });
  if (!members.length) {
    if (p.objects.length) throw new PushRefused('objects without a member ref to carry them');
    return { results };
  }
  const sent = new Map<string, SentObject>();
  const links: (Link & { from: string })[] = [];
  const roots: string[] = [];
  let bytes = 0;
  for (const entry of p.objects) {
    if (!Array.isArray(entry) || typeof entry[0] !== 'string' || typeof entry[1] !== 'string') throw new PushRefused('bad object');
    const data = Buffer.from(entry[1], 'base64');
    if ((bytes += data.length) > MAX_PUSH_BYTES) throw new PushRefused('more bytes than a call may carry');
    let checked;
    try {
      checked = checkObject(entry[0], data, o.maxBlob ?? MAX_ENTRY_BLOB);
    } catch (e) {
      throw e instanceof ObjectRefused ? new PushRefused(e.message) : e;
    }
    sent.set(checked.object.oid, checked.object);
    if (checked.root) roots.push(checked.object.oid);
    for (const l of checked.links) links.push({ ...l, from: checked.object.oid });
  }
  // Every ref value a commit, every named object of one type, that type: sent, or here already.
  for (const [, oid] of members) links.push({ oid, type: 'commit', from: '' });
  const named = new Map<string, string>();
  for (const l of links) {
    const t = named.get(l.oid);
    if (t && t !== l.type) throw new PushRefused(`${l.oid} is named as a ${t} and as a ${l.type}`);
    named.set(l.oid, l.type);
    const s = sent.get(l.oid);
    if (s && s.type !== l.type) throw new PushRefused(`${l.oid} is a ${s.type}, named as a ${l.type}`);
  }
  // Only what the member refs reach is stored (no call fills the disk with loose objects).
  const reached = new Set<string>();
  const stack = members.map(([, oid]) => oid);
  const children = new Map<string, string[]>();
  for (const l of links) if (l.from) children.set(l.from, [...(children.get(l.from) ?? []), l.oid]);
  while (stack.length) {
    const x = stack.pop()!;
    if (reached.has(x) || !sent.has(x)) continue;
    reached.add(x);
    stack.push(...(children.get(x) ?? []));
  }
  if (reached.size !== sent.size) throw new PushRefused(`${sent.size - reached.size} objects no member ref reaches`);
  const elsewhere = new Map<string, string>();
  for (const [oid, type] of named) if (!sent.has(oid)) elsewhere.set(oid, type);
  const here = await o.repo.types([...elsewhere.keys(), ...sent.keys()]);
  const missing: string[] = [];
  for (const [oid, type] of elsewhere) {
    const t = here.get(oid);
    if (t === null || t === undefined) missing.push(oid);
    else if (t !== type) throw new PushRefused(`${oid} is a ${t}, named as a ${type}`);
  }
  // A root commit we do not hold starts another history (the pre-receive hook's rule).
  for (const r of roots) if (!here.get(r)) throw new PushRefused(`commit ${r} has no history in common with this cluster`);
  if (missing.length) return { results: {}, missing: missing.slice(0, 16) };
  const fresh = [...sent.values()].filter((x) => !here.get(x.oid));
  if (fresh.length) await o.repo.writeObjects(fresh);

  // Forward only, moved with the value it was checked against; one that moved meanwhile (a push
  // or fetch of the same node's value) is judged again against where it went.
  let todo = members;
  for (let round = 0; todo.length && round < 3; round++) {
    const cur = await o.repo.readRefs(todo.map(([id]) => NODE_REFS + id));
    const updates: [string, string, string | null][] = [];
    for (const [id, oid] of todo) {
      const was = cur.get(NODE_REFS + id) ?? null;
      if (was === oid) results[id] = 'ok';
      else if (was && !(await o.repo.isAncestor(was, oid))) results[id] = (await o.repo.isAncestor(oid, was)) ? 'behind (newer here)' : 'not a fast-forward';
      else updates.push([NODE_REFS + id, oid, was]);
    }
    if (!updates.length) break;
    const done = await o.repo.updateRefsEach(updates);
    const moved: [string, string][] = [];
    updates.forEach(([ref, oid], k) => {
      const id = ref.slice(NODE_REFS.length);
      if (done[k]) results[id] = 'ok';
      else moved.push([id, oid]);
    });
    todo = moved;
  }
  for (const [id] of todo) results[id] ??= 'ref kept moving';
  return { results };
}

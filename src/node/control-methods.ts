// The node's own methods on the typed table (daemon/methods.ts): membership and status, for the
// control socket (the CLI, `delugefs shell`, a second disk joining) and, for status and members,
// members. Params are checked before a handler runs; replies are checked by callers. (`put` is
// in put-file.ts, replication's in replication/methods.ts.)
import { Bad, bool, int, list, method, obj, str } from '../daemon/methods.js';
import type { MemberRecord } from '../cluster/membership.js';
import { NODE_ID_RE } from '../cluster/identity.js';

const NODE_RE = NODE_ID_RE;
const none = () => null;
const hostname = (v: unknown) => (typeof v === 'string' && v.length <= 255 ? v : 'unknown');

/** Member records as a node lists them (its own checks made them valid; the shape is checked here). */
const records = (v: unknown): MemberRecord[] => list(v, 'reply', 100_000, (x, w) => {
  const r = obj(x, w);
  str(r.nodeId, `${w}.nodeId`, NODE_RE);
  if (typeof r.hostname !== 'string' || !Array.isArray(r.addresses) || typeof r.publicKey !== 'string') throw new Bad(`${w} is not a member record`);
  return r as unknown as MemberRecord;
});

export const MEMBERS = method('members', none, records);

export interface NodeStatus {
  cluster: string; nodeId: string; head: string | null; sshPort: number; addresses: string[]; members: string[]; revoked: string[];
  peers: { nodeId: string; host: string; sshPort: number; source: string }[];
  sync: Record<string, { behind: number; failures: number; pushes: number }>;
}
export const STATUS = method('status', none, (v): NodeStatus => {
  const o = obj(v, 'reply');
  str(o.nodeId, 'nodeId', NODE_RE);
  if (typeof o.cluster !== 'string' || !Array.isArray(o.members)) throw new Bad('not a status');
  return o as unknown as NodeStatus;
});

export const INVITE = method('invite', (v): { ttlMs: number } => {
  const o = v === null || v === undefined ? {} : obj(v);
  return { ttlMs: o.ttlMs === undefined ? 24 * 3600_000 : int(o.ttlMs, 'ttlMs', 1000, 365 * 86400_000) };
}, (v): { token: string; expires: string; addresses: string[] } => {
  const o = obj(v, 'reply');
  return { token: str(o.token, 'token', /^[A-Za-z0-9_.-]{20,4096}$/, 4096), expires: str(o.expires, 'expires', /^[0-9TZ:.-]{10,30}$/), addresses: list(o.addresses, 'addresses', 64, (x, w) => str(x, w, /^[^\s]{1,300}$/)) };
});

const keyParams = (v: unknown): { publicKey: string; hostname: string } => {
  const o = obj(v);
  if (typeof o.publicKey !== 'string') throw new Bad('needs {"publicKey": "ssh-ed25519 AAAA..."}');
  // The key's own parser (identity.ts) says more; this only bounds what reaches it.
  if (o.publicKey.length > 400) throw new Bad('publicKey is too long');
  return { publicKey: o.publicKey, hostname: hostname(o.hostname) };
};
const record = (v: unknown): MemberRecord => records([v])[0]!;

export const AUTHORIZE = method('authorize', keyParams, record);

/**
 * A second disk of this machine joins through the running member (its control socket is the
 * proof). The reply is checked by join-root.ts checkJoinLocalReply (it needs the cluster's name).
 */
export const JOIN_LOCAL = method('join_local', keyParams, (v) => obj(v, 'reply'));

export const REMOVE_NODE = method('remove_node', (v): { nodeId: string } => {
  const o = obj(v);
  if (typeof o.nodeId !== 'string' || !NODE_RE.test(o.nodeId)) throw new Bad('needs {"nodeId": "<16 base32 chars>"}');
  return { nodeId: o.nodeId };
}, (v): { nodeId: string; already: boolean } => {
  const o = obj(v, 'reply');
  return { nodeId: str(o.nodeId, 'nodeId', NODE_RE), already: bool(o.already, 'already') };
});

/** `delugefs shell` (under a foreign sshd) tells the node a member pushed. */
export const PUSH_RECEIVED = method('push_received', (v): { peer: string } => {
  const o = obj(v);
  if (typeof o.peer !== 'string' || !NODE_RE.test(o.peer)) throw new Bad('needs {"peer": "<node id>"}');
  return { peer: o.peer };
}, none);

// The node's own methods on the typed table (daemon/methods.ts): membership and status, for the
// control socket (the CLI, `delugefs shell`, a second disk joining) and, for status and members,
// members. Params are checked before a handler runs; replies are checked by callers. (`put` is
// in put-file.ts, replication's in replication/methods.ts.)
import { Bad, bool, int, list, method, obj, str } from '../daemon/methods.js';
import type { MemberRecord } from '../cluster/membership.js';
import { NODE_ID_RE } from '../cluster/identity.js';
import { CODE_RE } from '../cluster/join-code.js';

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

// ---- LAN joins without a token (cluster/join-requests.ts) ------------------------------------

const ROOT_RE = /^[0-9a-f]{40}$/;
/** A machine name as shown: printable, bounded (the joiner's claim, never trusted). */
export const cleanHostname = (v: unknown): string => (typeof v === 'string' ? v.replace(/[^\x21-\x7e]/g, '?').slice(0, 64) || 'unknown' : 'unknown');

export interface JoinAnswer { status: 'pending' | 'admitted'; cluster: string; member: string; root: string; code?: string; expires?: number }

/**
 * The guest method a new node on the LAN asks to join with (and re-polls): the key is the one
 * SSH authenticated. Pending: the code to show and when the request expires; admitted once a
 * member record holds the key.
 */
export const JOIN_REQUEST = method('join_request', (v): { cluster: string; hostname: string } => {
  const o = obj(v);
  return { cluster: str(o.cluster, 'cluster', /^[A-Za-z0-9_.-]{1,64}$/), hostname: cleanHostname(o.hostname) };
}, (v): JoinAnswer => {
  const o = obj(v, 'reply');
  if (o.status !== 'pending' && o.status !== 'admitted') throw new Bad('status must be pending or admitted');
  const r: JoinAnswer = { status: o.status, cluster: str(o.cluster, 'cluster', /^[A-Za-z0-9_.-]{1,64}$/), member: str(o.member, 'member', NODE_RE), root: str(o.root, 'root', ROOT_RE) };
  if (o.status === 'pending') {
    r.code = str(o.code, 'code', CODE_RE);
    r.expires = int(o.expires, 'expires', 0, 2 ** 50);
  }
  return r;
});

const pendingJoin = (x: unknown, w: string) => {
  const r = obj(x, w);
  return {
    code: str(r.code, `${w}.code`, CODE_RE), nodeId: str(r.nodeId, `${w}.nodeId`, NODE_RE), hostname: cleanHostname(r.hostname),
    address: str(r.address, `${w}.address`, /^[0-9a-fA-F.:]{1,64}$/), since: int(r.since, `${w}.since`, 0, 2 ** 50), expires: int(r.expires, `${w}.expires`, 0, 2 ** 50),
  };
};
const codeParams = (v: unknown): { code: string } => {
  const o = obj(v);
  return { code: str(o.code, 'code', /^[\s\S]{1,32}$/, 32) };
};

/** Control socket only: the pending requests, as `delugefs joins` and the dashboard list them. */
export const JOIN_REQUESTS = method('join_requests', none, (v) => list(v, 'reply', 1024, pendingJoin));
export const JOIN_APPROVE = method('join_approve', codeParams, (v): { nodeId: string } => ({ nodeId: str(obj(v, 'reply').nodeId, 'nodeId', NODE_RE) }));
export const JOIN_REFUSE = method('join_refuse', codeParams, (v): { code: string } => ({ code: str(obj(v, 'reply').code, 'code', CODE_RE) }));

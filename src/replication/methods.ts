// The replication RPC methods (the original's, working): their params and replies, checked on
// both ends. Handlers are in rpc.ts.
import { isContentId, ContentId } from '../content/metainfo.js';
import { NODE_ID_RE } from '../cluster/identity.js';
import { Bad, bool, int, list, method, obj, str } from '../daemon/methods.js';
import { MAX_WHEREIS_PATHS, type Holder, type Where } from './whereis.js';
import { MAX_FSCK_LISTED, type FsckBad, type FsckStatus } from './fsck.js';

/** Most ids in one request or one page of active_torrents. */
export const MAX_IDS = 1000;
/** Longest lock a peer may take on our copies (a drop finishes well within it). */
export const MAX_LOCK_MS = 120_000;
const NODE_RE = NODE_ID_RE;
const TOKEN_RE = /^[0-9a-f]{32}$/;
const BYTES = Number.MAX_SAFE_INTEGER;

export function contentId(v: unknown, what: string): ContentId {
  if (typeof v !== 'string' || !isContentId(v)) throw new Bad(`${what} is not a content id`);
  return v;
}
const ids = (v: unknown, what: string) => list(v, what, MAX_IDS, contentId);
const none = () => null;

export interface FreeSpace {
  nodeId: string;
  total: number;
  free: number;
  available: number;
  /** Bytes this node has promised to copies it is fetching now (not yet on the disk). */
  reserved: number;
  /** Its own latest commit (refs/nodes/<it>): once we hold it, we have every change it had made. */
  own: string | null;
}

export const FREESPACE = method('freespace', none, (v): FreeSpace => {
  const o = obj(v, 'reply');
  const r = {
    nodeId: str(o.nodeId, 'nodeId', NODE_RE),
    total: int(o.total, 'total', 0, BYTES),
    free: int(o.free, 'free', 0, BYTES),
    available: int(o.available, 'available', 0, BYTES),
    reserved: int(o.reserved ?? 0, 'reserved', 0, BYTES),
    own: o.own === undefined || o.own === null ? null : str(o.own, 'own', /^[0-9a-f]{40}$/),
  };
  if (r.free > r.total || r.available > r.free) throw new Bad('free space larger than the disk');
  return r;
});

export interface Held { id: ContentId; complete: boolean; pieces: number; have: number }
export interface ActivePage { items: Held[]; next: ContentId | null }

/** What a node holds, complete and partial, in id order, a page at a time (`after` the last id seen). */
export const ACTIVE_TORRENTS = method('active_torrents', (v): { after: ContentId | null; limit: number } => {
  const o = v === null || v === undefined ? {} : obj(v);
  return { after: o.after === undefined || o.after === null ? null : contentId(o.after, 'after'), limit: o.limit === undefined ? MAX_IDS : int(o.limit, 'limit', 1, MAX_IDS) };
}, (v): ActivePage => {
  const o = obj(v, 'reply');
  const items = list(o.items, 'items', MAX_IDS, (x, what) => {
    const h = obj(x, what);
    const pieces = int(h.pieces, `${what}.pieces`, 0, 1 << 30);
    return { id: contentId(h.id, `${what}.id`), complete: bool(h.complete, `${what}.complete`), pieces, have: int(h.have, `${what}.have`, 0, pieces) };
  });
  for (let i = 1; i < items.length; i++) if (items[i - 1]!.id >= items[i]!.id) throw new Bad('items out of order');
  const next = o.next === null ? null : contentId(o.next, 'next');
  return { items, next };
});

export interface MirrorReply { accepted: ContentId[]; declined: { id: ContentId; reason: string }[] }
const mirrorReply = (v: unknown): MirrorReply => {
  const o = obj(v, 'reply');
  return {
    accepted: ids(o.accepted, 'accepted'),
    declined: list(o.declined, 'declined', MAX_IDS, (x, what) => {
      const d = obj(x, what);
      return { id: contentId(d.id, `${what}.id`), reason: str(d.reason, `${what}.reason`, /^[a-z_]{1,32}$/) };
    }),
  };
};
const idsParams = (v: unknown) => ({ ids: ids(obj(v).ids, 'ids') });

/** Asks a node to fetch and keep copies (it declines what it cannot hold or does not know). */
export const PLEASE_MIRROR = method('please_mirror', idsParams, mirrorReply);
/** Tells a node its copies may go: it drops them only where its own checks find enough copies elsewhere. */
export const PLEASE_STOP_MIRRORING = method('please_stop_mirroring', idsParams, mirrorReply);

export interface LockReply { token: string; locked: ContentId[]; missing: ContentId[]; ms: number }

/**
 * Promises to keep complete copies for `ms` (a lease, like git-annex's LOCKCONTENT held for a
 * connection): until it expires or is unlocked the node drops none of them.
 */
export const LOCK_CONTENT = method('lock_content', (v): { ids: ContentId[]; ms: number } => {
  const o = obj(v);
  return { ids: ids(o.ids, 'ids'), ms: int(o.ms, 'ms', 1000, MAX_LOCK_MS) };
}, (v): LockReply => {
  const o = obj(v, 'reply');
  return { token: str(o.token, 'token', TOKEN_RE), locked: ids(o.locked, 'locked'), missing: ids(o.missing, 'missing'), ms: int(o.ms, 'ms', 0, MAX_LOCK_MS) };
});

export const UNLOCK_CONTENT = method('unlock_content', (v): { token: string } => ({ token: str(obj(v).token, 'token', TOKEN_RE) }), none);

/** Control socket: shows or sets the cluster's replication settings (records). */
export interface ConfigParams { copies?: number; dir?: string; maintenance?: string; drain?: string; on?: boolean }
export interface ConfigReply { copies: number; copiesSetBy: string | null; copiesSetAt: string | null; maintenance: string[]; draining: string[]; dirs: { path: string; copies: number }[] }
const nodeIds = (v: unknown, what: string) => list(v, what, 10_000, (x, w) => str(x, w, NODE_RE));
export const REPLICATION_CONFIG = method('replication_config', (v): ConfigParams => {
  const o = v === null || v === undefined ? {} : obj(v);
  const out: ConfigParams = {};
  if (o.dir !== undefined) out.dir = str(o.dir, 'dir', /^\/[^\0]*$/, 4096);
  // A directory's setting 0 removes it; the cluster's is at least 1.
  if (o.copies !== undefined) out.copies = int(typeof o.copies === 'string' && /^\d{1,3}$/.test(o.copies) ? Number(o.copies) : o.copies, 'copies', out.dir ? 0 : 1, 16);
  if (out.dir !== undefined && out.copies === undefined) throw new Bad('dir needs copies');
  for (const k of ['maintenance', 'drain'] as const) if (o[k] !== undefined) out[k] = str(o[k], k, NODE_RE);
  if (o.on !== undefined) out.on = bool(o.on, 'on');
  if ((out.maintenance || out.drain) && out.on === undefined) throw new Bad('maintenance and drain need "on": true or false');
  return out;
}, (v): ConfigReply => {
  const o = obj(v, 'reply');
  const when = (x: unknown, w: string) => (x === null ? null : str(x, w, /^[0-9TZ:.-]{10,30}$/));
  return {
    copies: int(o.copies, 'copies', 1, 16), copiesSetBy: o.copiesSetBy === null ? null : str(o.copiesSetBy, 'copiesSetBy', /^[a-z2-7]{1,64}$/),
    copiesSetAt: when(o.copiesSetAt, 'copiesSetAt'), maintenance: nodeIds(o.maintenance, 'maintenance'), draining: nodeIds(o.draining, 'draining'),
    dirs: list(o.dirs ?? [], 'dirs', 10_000, (x, w) => {
      const d = obj(x, w);
      return { path: str(d.path, `${w}.path`, /^\/[^\0]*$/, 4096), copies: int(d.copies, `${w}.copies`, 1, 16) };
    }),
  };
});

/** Control socket: what replication on this node is doing (for people and tests; loosely checked). */
export const REPLICATION_STATUS = method('replication_status', none, (v) => obj(v, 'reply'));


export interface DrainStatus {
  nodeId: string;
  draining: boolean;
  /** The disk's state as this node sees it (up, draining, down, ...). */
  state: string;
  /** Whether what it holds is known: its own holdings, or a member's last answer (`reportedAt`). */
  known: boolean;
  reportedAt: string | null;
  /** Its copies of content the namespace references, their bytes, and how many of those `copies` other live disks hold already (it may drop those). */
  left: number;
  bytesLeft: number;
  ready: number;
}

/** How far a drain is (`delugefs drain ROOT NODE status`, `--wait`): local callers only. */
export const DRAIN_STATUS = method('drain_status', (v): { node: string } => ({ node: str(obj(v).node, 'node', NODE_RE) }), (v): DrainStatus => {
  const o = obj(v, 'reply');
  return {
    nodeId: str(o.nodeId, 'nodeId', NODE_RE), draining: bool(o.draining, 'draining'), state: str(o.state, 'state', /^[a-z]{1,16}$/),
    known: bool(o.known, 'known'), reportedAt: o.reportedAt === null ? null : str(o.reportedAt, 'reportedAt', /^[0-9TZ:.-]{10,30}$/),
    left: int(o.left, 'left', 0, BYTES), bytesLeft: int(o.bytesLeft, 'bytesLeft', 0, BYTES), ready: int(o.ready, 'ready', 0, BYTES),
  };
});

/** `delugefs whereis`: paths (the cluster's, or under the node's mount), at most MAX_WHEREIS_PATHS. */
export const WHEREIS = method('whereis', (v): { paths: string[] } => ({ paths: list(obj(v).paths, 'paths', MAX_WHEREIS_PATHS, (x, what) => str(x, what, /^[^\0]+$/, 4096)) }), (v): Where[] => {
  return list(v, 'reply', MAX_WHEREIS_PATHS, (x, what) => {
    const o = obj(x, what);
    const holders = list(o.holders, `${what}.holders`, 10_000, (y, w2): Holder => {
      const h = obj(y, w2);
      const pieces = int(h.pieces, `${w2}.pieces`, 0, 1 << 30);
      return {
        nodeId: str(h.nodeId, `${w2}.nodeId`, NODE_RE), machine: str(h.machine, `${w2}.machine`, /^[^\0]*$/), state: str(h.state, `${w2}.state`, /^[a-z]{1,16}$/),
        complete: bool(h.complete, `${w2}.complete`), have: int(h.have, `${w2}.have`, 0, pieces), pieces,
        reportedAt: h.reportedAt === null ? null : str(h.reportedAt, `${w2}.reportedAt`, /^[0-9TZ:.-]{10,30}$/),
      };
    });
    return {
      path: str(o.path, `${what}.path`, /^[^\0]+$/, 4096), error: o.error === null ? null : str(o.error, `${what}.error`, /^[^\0]+$/),
      size: int(o.size, `${what}.size`, 0, BYTES), id: o.id === null ? null : contentId(o.id, `${what}.id`),
      copies: int(o.copies, `${what}.copies`, 0, 1000), holders,
    };
  });
});

export type FsckAction = 'start' | 'stop' | 'status';
const TIME_RE = /^[0-9TZ:.-]{10,30}$/;

/** `delugefs fsck`: start (or go on with) a pass, stop it, or ask how far it is; local callers only. */
export const FSCK = method('fsck', (v): { action: FsckAction; repair: boolean; restart: boolean } => {
  const o = obj(v);
  const action = str(o.action, 'action', /^(start|stop|status)$/) as FsckAction;
  return { action, repair: o.repair === undefined ? false : bool(o.repair, 'repair'), restart: o.restart === undefined ? false : bool(o.restart, 'restart') };
}, (v): FsckStatus => {
  const o = obj(v, 'reply');
  const n = (k: string) => int(o[k], k, 0, BYTES);
  const time = (k: string) => (o[k] === null ? null : str(o[k], k, TIME_RE));
  const bad = list(o.bad, 'bad', MAX_FSCK_LISTED, (x, what): FsckBad => {
    const b = obj(x, what);
    const pieces = int(b.pieces, `${what}.pieces`, 0, 1 << 30);
    return {
      id: contentId(b.id, `${what}.id`), paths: list(b.paths, `${what}.paths`, 16, (y, w) => str(y, w, /^\/[^\0]*$/, 4096)), files: int(b.files, `${what}.files`, 0, BYTES),
      pieces, badPieces: int(b.badPieces, `${what}.badPieces`, 0, pieces), state: str(b.state, `${what}.state`, /^(found|repaired|unrepairable|failed)$/) as FsckBad['state'],
      error: b.error === null ? null : str(b.error, `${what}.error`, /^[^\0]*$/, 4096),
    };
  });
  return {
    state: str(o.state, 'state', /^(idle|running|stopped|done)$/) as FsckStatus['state'], repair: bool(o.repair, 'repair'), startedAt: time('startedAt'), endedAt: time('endedAt'),
    total: n('total'), checked: n('checked'), totalBytes: n('totalBytes'), bytes: n('bytes'), skipped: n('skipped'), badCopies: n('badCopies'), badPieces: n('badPieces'),
    repaired: n('repaired'), unrepaired: n('unrepaired'), resumed: n('resumed'), bad,
  };
});

export const REPLICATION_METHODS = [FREESPACE, ACTIVE_TORRENTS, PLEASE_MIRROR, PLEASE_STOP_MIRRORING, LOCK_CONTENT, UNLOCK_CONTENT, REPLICATION_CONFIG, REPLICATION_STATUS, DRAIN_STATUS, WHEREIS, FSCK] as const;

/** Largest content copied over the member RPC (content_read) rather than through the swarm. */
export const SMALL_CONTENT_MAX = 64 * 1024;
const B64_MAX = Math.ceil(SMALL_CONTENT_MAX / 3) * 4;

/**
 * The bytes of small content this node holds complete (at most SMALL_CONTENT_MAX): a copy of a
 * small file over the member connection already open, instead of a TLS connection and a torrent
 * of its own (~6 ms of CPU at both ends for a 20-byte file). The caller checks them against the
 * content's piece hashes; members only.
 */
export const CONTENT_READ = method('content_read', (v): { id: ContentId } => {
  const o = obj(v);
  return { id: contentId(o.id, 'id') };
}, (v): { data: string } => {
  const o = obj(v, 'reply');
  return { data: str(o.data, 'data (base64)', /^[A-Za-z0-9+/]*={0,2}$/, B64_MAX) };
});

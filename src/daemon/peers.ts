// `delugefs peers ROOT`: every member as the running node sees it, one row each: its machine and
// disk state, where we reach it (the addresses discovery or the records give, and by which
// source), when it last answered replication's poll, its disk's fill, the namespace sync with it
// (changes it lacks as far as we know, failed exchanges in a row) and the swarm connections open
// to it. Gathered from the parts that know (gatherPeers), judged nowhere: it is a listing.
import { bool, int, list, method, obj, serve, str } from './methods.js';
import { localOnly } from '../cluster/control-socket.js';
import { NODE_ID_RE } from '../cluster/identity.js';
import type { ClusterNode } from '../node/cluster-node.js';
import type { SwarmLink } from '../node/swarm-link.js';
import type { Replication } from '../replication/replication.js';
import { formatBytes } from '../util/units.js';
import { printable } from '../util/text.js';

/** Most members listed (the records cap a cluster well below this). */
export const MAX_PEERS = 4096;

export interface PeerRow {
  nodeId: string;
  /** This node's own row. */
  self: boolean;
  machine: string;
  zone: string | null;
  /** Disk state as replication judges it: up, down, maintenance, draining, unknown. */
  state: string;
  /** Seen now by a discovery source, with the address sync dials (null: not seen). */
  seen: { host: string; sshPort: number; source: string } | null;
  /** Addresses its member record names. */
  addresses: string[];
  /** Its last answer to replication's poll (null: none since this node started, or never). */
  lastAnswerAt: string | null;
  disk: { total: number; free: number } | null;
  /** Complete copies it said it holds at its last full answer. */
  held: number | null;
  /** Namespace sync: its changes we know it lacks, failed exchanges in a row, pushes sent (null: no exchange yet). */
  sync: { behind: number; failures: number; pushes: number } | null;
  /** Open swarm (member TLS) connections to it. */
  swarm: number;
  addedAt: string;
  addedBy: string;
}

export interface PeerInputs {
  me: string;
  members: { nodeId: string; hostname: string; addresses: string[]; addedAt: string; addedBy: string }[];
  seen: { nodeId: string; host: string; sshPort: number; source: string }[];
  disks: Map<string, { zone: string | null; state: string; lastAnswerAt: number | null; total: number | null; free: number | null; held: number | null }>;
  sync: Record<string, { behind: number; failures: number; pushes: number }>;
  swarm: Map<string, number>;
}

/** One row per member, this node first, then by machine and node id. */
export function gatherPeers(i: PeerInputs): PeerRow[] {
  const seen = new Map<string, PeerInputs['seen'][number]>();
  for (const s of i.seen) if (!seen.has(s.nodeId) || s.source === 'mdns') seen.set(s.nodeId, s);
  const rows = i.members.map((m): PeerRow => {
    const d = i.disks.get(m.nodeId);
    const s = seen.get(m.nodeId);
    return {
      nodeId: m.nodeId, self: m.nodeId === i.me, machine: m.hostname || m.nodeId, zone: d?.zone ?? null,
      state: d?.state ?? 'unknown', seen: s ? { host: s.host, sshPort: s.sshPort, source: s.source } : null,
      addresses: [...m.addresses], lastAnswerAt: d?.lastAnswerAt ? new Date(d.lastAnswerAt).toISOString() : null,
      disk: d && d.total !== null && d.free !== null ? { total: d.total, free: d.free } : null, held: d?.held ?? null,
      sync: i.sync[m.nodeId] ?? null, swarm: i.swarm.get(m.nodeId) ?? 0, addedAt: m.addedAt, addedBy: m.addedBy,
    };
  });
  return rows.sort((a, b) => (a.self !== b.self ? (a.self ? -1 : 1) : a.machine !== b.machine ? (a.machine < b.machine ? -1 : 1) : a.nodeId < b.nodeId ? -1 : 1));
}

const ago = (iso: string | null, now: number): string => {
  if (!iso) return 'never';
  const s = Math.max(0, Math.round((now - Date.parse(iso)) / 1000));
  return s < 120 ? `${s}s ago` : s < 7200 ? `${Math.round(s / 60)}m ago` : `${Math.round(s / 3600)}h ago`;
};

/** The table a person reads. */
export function renderPeers(rows: PeerRow[], now = Date.now()): string {
  if (!rows.length) return 'no members';
  const head = ['NODE', 'MACHINE', 'STATE', 'REACHED AT', 'ANSWERED', 'DISK', 'SYNC', 'SWARM'];
  const body = rows.map((r) => [
    r.nodeId + (r.self ? ' (this)' : ''),
    r.machine + (r.zone ? ` [${r.zone}]` : ''),
    r.state,
    r.self ? '-' : r.seen ? `${r.seen.host}:${r.seen.sshPort} (${r.seen.source})` : r.addresses.length ? `not seen (${r.addresses[0]})` : 'not seen',
    r.self ? 'now' : ago(r.lastAnswerAt, now),
    r.disk ? `${formatBytes(r.disk.total - r.disk.free)} of ${formatBytes(r.disk.total)} (${r.disk.total ? Math.round((100 * (r.disk.total - r.disk.free)) / r.disk.total) : 0} %)` : '?',
    r.self ? '-' : r.sync ? (r.sync.failures ? `failing (${r.sync.failures})` : r.sync.behind ? `${r.sync.behind} to send` : 'in step') : 'no exchange yet',
    r.self ? '-' : String(r.swarm),
  ].map(printable)); // a member's own words (its machine name, addresses)
  const w = head.map((h, k) => Math.max(h.length, ...body.map((b) => b[k]!.length)));
  return [head, ...body].map((cols) => cols.map((c, k) => (k === cols.length - 1 ? c : c.padEnd(w[k]!))).join('  ')).join('\n');
}

const TIME_RE = /^[0-9TZ:.-]{10,30}$/;
const TEXT_RE = /^[^\0]*$/;

export const PEERS = method('peers', () => null, (v): PeerRow[] => list(v, 'reply', MAX_PEERS, (x, what): PeerRow => {
  const o = obj(x, what);
  const n = (v: unknown, k: string) => int(v, `${what}.${k}`, 0, Number.MAX_SAFE_INTEGER);
  const seen = o.seen === null ? null : obj(o.seen, `${what}.seen`);
  const disk = o.disk === null ? null : obj(o.disk, `${what}.disk`);
  const sync = o.sync === null ? null : obj(o.sync, `${what}.sync`);
  return {
    nodeId: str(o.nodeId, `${what}.nodeId`, NODE_ID_RE), self: bool(o.self, `${what}.self`), machine: str(o.machine, `${what}.machine`, TEXT_RE),
    zone: o.zone === null ? null : str(o.zone, `${what}.zone`, TEXT_RE), state: str(o.state, `${what}.state`, /^[a-z]{1,16}$/),
    seen: seen && { host: str(seen.host, `${what}.seen.host`, TEXT_RE), sshPort: int(seen.sshPort, `${what}.seen.sshPort`, 0, 65535), source: str(seen.source, `${what}.seen.source`, /^[a-z-]{1,16}$/) },
    addresses: list(o.addresses, `${what}.addresses`, 64, (y, w) => str(y, w, TEXT_RE, 300)),
    lastAnswerAt: o.lastAnswerAt === null ? null : str(o.lastAnswerAt, `${what}.lastAnswerAt`, TIME_RE),
    disk: disk && { total: n(disk.total, 'disk.total'), free: n(disk.free, 'disk.free') },
    held: o.held === null ? null : n(o.held, 'held'),
    sync: sync && { behind: n(sync.behind, 'sync.behind'), failures: n(sync.failures, 'sync.failures'), pushes: n(sync.pushes, 'sync.pushes') },
    swarm: n(o.swarm, 'swarm'), addedAt: str(o.addedAt, `${what}.addedAt`, TEXT_RE), addedBy: str(o.addedBy, `${what}.addedBy`, TEXT_RE),
  };
}));

export function servePeers(cluster: ClusterNode, swarm: SwarmLink, replication: Replication): void {
  serve(cluster.rpc, PEERS, (_p, peer) => {
    localOnly(peer, 'peers');
    const m = cluster.membership;
    return gatherPeers({
      me: cluster.identity.nodeId,
      members: m.list().filter((r) => !m.isRevoked(r.nodeId)),
      seen: cluster.discovery.peers.list().map((p) => ({ nodeId: p.nodeId, host: p.host, sshPort: p.sshPort, source: p.source })),
      disks: replication.disksOf(),
      sync: cluster.sync.peerHeads(),
      swarm: swarm.swarm.connectionsByNode(),
    });
  });
}

// One health verdict for a running node (`delugefs status`), in the spirit of `ceph -s`: coded
// checks, each WARN or ERROR, and the counts they come from. Pure: the daemon gathers what the
// node, the cluster and replication know (health-method.ts) and this judges it, so the rules
// are tested without a cluster.
import type { Disk } from '../replication/placement.js';
import { formatBytes } from '../util/units.js';
import type { PendingJoin } from '../cluster/join-requests.js';
import type { Progress } from '../replication/replication.js';

export type Severity = 'WARN' | 'ERROR';
export type Verdict = 'OK' | Severity;

export interface Check { code: string; severity: Severity; message: string; count: number }

export interface HealthInput {
  cluster: string;
  nodeId: string;
  head: string | null;
  members: string[];
  /** Replication's last round (null: none finished yet): the disks as placement saw them. */
  round: { at: number; copies: number; ids: number; under: number; lost: number; waiting: string[]; disks: Disk[] } | null;
  nearFull: number;
  fetching: number;
  queued: number;
  /** Per member: how many of its heads we have not merged, failed pushes in a row, pushes sent. */
  sync: Record<string, { behind: number; failures: number; pushes: number }>;
  namespace: { files: number; dirs: number; bytes: number; conflicts: number };
  /** LAN join requests waiting for an operator (cluster/join-requests.ts). */
  joins?: PendingJoin[];
  /** This disk's engine's rates, and the copies it is making (replication.ts `progress`). */
  transfers?: Transfers;
}

export interface Transfers { receiving: number; sending: number; copies: Progress }

export interface DiskReport { node: string; machine: string; state: string; total: number; free: number; fill: number }

export interface Health {
  verdict: Verdict;
  checks: Check[];
  cluster: string;
  nodeId: string;
  head: string | null;
  nodes: { members: number; up: number; down: number; maintenance: number; draining: number; unknown: number; machines: number };
  disks: DiskReport[];
  content: { ids: number; copies: number | null; under: number; lost: number; fetching: number; queued: number; judgedAt: string | null };
  sync: { peer: string; behind: number; failures: number }[];
  namespace: HealthInput['namespace'];
  joins: PendingJoin[];
  transfers: Transfers;
}

const plural = (n: number, one: string, many = `${one}s`) => `${n} ${n === 1 ? one : many}`;

export function judgeHealth(i: HealthInput): Health {
  const checks: Check[] = [];
  const add = (code: string, severity: Severity, count: number, message: string) => {
    if (count > 0) checks.push({ code, severity, message, count });
  };
  const r = i.round;
  const disks: DiskReport[] = (r?.disks ?? []).map((d) => ({ node: d.node, machine: d.machine, state: d.state, total: d.total, free: d.free, fill: d.total > 0 ? (d.total - d.free) / d.total : 0 })).sort((a, b) => (a.node < b.node ? -1 : 1));
  const count = (s: string) => disks.filter((d) => d.state === s).length;
  const known = new Set(disks.map((d) => d.node));
  const unknown = i.members.filter((m) => !known.has(m)).length;
  if (!r) add('REPLICATION_STARTING', 'WARN', 1, 'replication has not finished its first round: copies are not judged yet');
  else {
    add('CONTENT_LOST', 'ERROR', r.lost, `${plural(r.lost, 'content id')} with no live copy on any disk this node knows of`);
    add('CONTENT_UNDER', 'WARN', r.under - r.lost, `${plural(r.under - r.lost, 'content id')} on fewer than ${r.copies} disks (being copied again)`);
    add('VIEW_INCOMPLETE', 'WARN', r.waiting.length, `no free-space report yet from ${r.waiting.join(', ')}: nothing is placed until ${r.waiting.length === 1 ? 'it answers' : 'they answer'} or ${r.waiting.length === 1 ? 'is' : 'are'} dead-after silent`);
  }
  add('DISK_DOWN', 'WARN', count('down'), `${plural(count('down'), 'disk')} down: ${disks.filter((d) => d.state === 'down').map((d) => d.node).join(', ')}`);
  add('DISK_MAINTENANCE', 'WARN', count('maintenance'), `${plural(count('maintenance'), 'disk')} in maintenance (not healed around)`);
  add('DISK_DRAINING', 'WARN', count('draining'), `${plural(count('draining'), 'disk')} draining`);
  const full = disks.filter((d) => d.state !== 'down' && d.total > 0 && d.fill >= i.nearFull);
  add('DISK_NEARFULL', 'WARN', full.length, `${plural(full.length, 'disk')} at or past ${Math.round(i.nearFull * 100)} % (no new copies): ${full.map((d) => `${d.node} ${Math.round(d.fill * 100)} %`).join(', ')}`);
  const sync = Object.entries(i.sync).map(([peer, s]) => ({ peer, behind: s.behind, failures: s.failures })).sort((a, b) => (a.peer < b.peer ? -1 : 1));
  const failing = sync.filter((s) => s.failures > 0);
  add('SYNC_FAILING', 'WARN', failing.length, `namespace sync failing to ${failing.map((s) => `${s.peer} (${s.failures} in a row)`).join(', ')}`);
  add('CONFLICTS', 'WARN', i.namespace.conflicts, `${plural(i.namespace.conflicts, 'conflict copy', 'conflict copies')} (*.sync-conflict-*) waiting for someone to choose`);
  const joins = i.joins ?? [];
  add('JOIN_PENDING', 'WARN', joins.length, `${plural(joins.length, 'new node asks', 'new nodes ask')} to join: ${joins.map((j) => `${j.code} ${j.hostname} (${j.nodeId})`).join(', ')}; "delugefs approve ROOT CODE" if its screen shows the same code, else "delugefs refuse ROOT CODE"`);
  const verdict: Verdict = checks.some((c) => c.severity === 'ERROR') ? 'ERROR' : checks.length ? 'WARN' : 'OK';
  return {
    verdict, checks, cluster: i.cluster, nodeId: i.nodeId, head: i.head,
    nodes: { members: i.members.length, up: count('up'), down: count('down'), maintenance: count('maintenance'), draining: count('draining'), unknown, machines: new Set(disks.map((d) => d.machine)).size },
    disks,
    content: { ids: r?.ids ?? 0, copies: r?.copies ?? null, under: r?.under ?? 0, lost: r?.lost ?? 0, fetching: i.fetching, queued: i.queued, judgedAt: r ? new Date(r.at).toISOString() : null },
    sync,
    namespace: i.namespace,
    joins,
    transfers: i.transfers ?? { receiving: 0, sending: 0, copies: { copying: 0, waiting: 0, bytesLeft: 0, rate: 0, etaSeconds: 0 } },
  };
}

/** `1h 2m`, `3m 4s`, `5s`: an ETA as people read it. */
export function formatDuration(s: number): string {
  if (s >= 3600) return `${Math.floor(s / 3600)}h ${Math.floor((s % 3600) / 60)}m`;
  if (s >= 60) return `${Math.floor(s / 60)}m ${s % 60}s`;
  return `${s}s`;
}

/** Rates and the copies under way, one line. */
export function renderTransfers(t: Transfers): string {
  const c = t.copies;
  const copies = c.copying || c.waiting
    ? `copying ${c.copying} (${c.waiting} waiting), ${size(c.bytesLeft)} left at ${size(c.rate)}/s, ETA ${c.etaSeconds === null ? 'unknown (nothing arriving)' : formatDuration(c.etaSeconds)}`
    : 'no copies under way';
  return `transfers: receiving ${size(t.receiving)}/s, sending ${size(t.sending)}/s; ${copies}`;
}

/** Pending join requests, one line each (status and `delugefs joins`). */
export function renderJoins(joins: PendingJoin[], now = Date.now()): string[] {
  return joins.map((j) => `  join ${j.code}  ${j.nodeId}  ${j.hostname}  from ${j.address}, asking since ${new Date(j.since).toISOString()}, expires in ${Math.max(0, Math.round((j.expires - now) / 1000))} s`);
}

const size = formatBytes;

/** The verdict as a terminal shows it. */
export function renderHealth(h: Health): string {
  const out = [`cluster ${h.cluster}, node ${h.nodeId}: HEALTH_${h.verdict}`];
  for (const c of h.checks) out.push(`  ${c.severity.padEnd(5)} ${c.code}: ${c.message}`);
  const n = h.nodes;
  out.push(`nodes: ${n.members} members on ${plural(n.machines, 'machine')}: ${n.up} up, ${n.down} down, ${n.maintenance} in maintenance, ${n.draining} draining${n.unknown ? `, ${n.unknown} not heard from` : ''}`);
  for (const d of h.disks) out.push(`  ${d.node} ${d.machine.padEnd(12)} ${d.state.padEnd(11)} ${String(Math.round(d.fill * 100)).padStart(3)} % of ${size(d.total)} (${size(d.free)} free)`);
  const c = h.content;
  out.push(`content: ${c.ids} ids, copies ${c.copies ?? '?'}: ${c.under} under, ${c.lost} lost; fetching ${c.fetching}, queued ${c.queued}${c.judgedAt ? ` (judged ${c.judgedAt})` : ''}`);
  const ns = h.namespace;
  out.push(`namespace: ${ns.files} files, ${ns.dirs} directories, ${size(ns.bytes)}, ${plural(ns.conflicts, 'conflict copy', 'conflict copies')}; head ${h.head?.slice(0, 12) ?? 'none'}`);
  for (const s of h.sync) out.push(`  sync ${s.peer}: ${s.behind} heads behind, ${s.failures} failures`);
  if (h.transfers) out.push(renderTransfers(h.transfers));
  if (h.joins?.length) out.push('join requests (approve: delugefs approve ROOT CODE):', ...renderJoins(h.joins));
  return out.join('\n');
}

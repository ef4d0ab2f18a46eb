// Prometheus metrics (`GET /metrics` on the web port, daemon/web.ts): the text exposition format,
// names after Prometheus's conventions (`delugefs_` prefix, base units: bytes and seconds,
// `_total` for counters). What status counts (daemon/health.ts) is what these count: the same
// inputs, so a dashboard and `delugefs status` never disagree. Rendering is pure and tested.
import { OP_NAMES } from '../fuse/proto.js';
import type { Health } from './health.js';

/** Seconds: FUSE answers range from ~20 µs (a cached getattr) to seconds (a read waiting for peers). */
export const FUSE_BUCKETS = [0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10];

export class Histogram {
  readonly counts: number[];
  sum = 0;
  count = 0;
  constructor(readonly buckets: readonly number[]) {
    this.counts = new Array(buckets.length).fill(0);
  }
  observe(v: number): void {
    this.sum += v;
    this.count++;
    for (let i = 0; i < this.buckets.length; i++) if (v <= this.buckets[i]!) { this.counts[i]!++; break; }
  }
}

/** FUSE requests by operation: how many, how many failed, how long they took. */
export class FuseMetrics {
  readonly ops = new Map<number, { errors: number; hist: Histogram }>();
  observe = (op: number, seconds: number, errno: number): void => {
    let o = this.ops.get(op);
    if (!o) this.ops.set(op, (o = { errors: 0, hist: new Histogram(FUSE_BUCKETS) }));
    o.hist.observe(seconds);
    if (errno) o.errors++;
  };
}

export interface MetricsInput {
  node: string;
  /** This node's machine (its member record's host name). */
  machine: string;
  health: Health;
  /** This node's disk (the store's filesystem). */
  disk: { total: number; free: number };
  swarm: { connections: number; downloaded: number; uploaded: number };
  /** Bytes fetched for replication's own copies (healing, placement, drains) and repairs. */
  replication: { fetching: number; queued: number; scrubBytes: number; scrubBad: number };
  commits: number;
  merges: number;
  fuse: FuseMetrics | null;
}

/** A label value as the format wants it: backslash, quote and newline escaped. */
const esc = (v: string): string => v.replace(/\\/g, '\\\\').replace(/"/g, '\\"').replace(/\n/g, '\\n');
const num = (v: number): string => (Number.isFinite(v) ? String(v) : v > 0 ? '+Inf' : v < 0 ? '-Inf' : 'NaN');

export function renderMetrics(i: MetricsInput): string {
  const out: string[] = [];
  const family = (name: string, type: 'gauge' | 'counter' | 'histogram', help: string, samples: [labels: Record<string, string>, value: number][]) => {
    out.push(`# HELP ${name} ${help}`, `# TYPE ${name} ${type}`);
    for (const [labels, v] of samples) {
      const l = Object.entries(labels).map(([k, x]) => `${k}="${esc(x)}"`).join(',');
      out.push(`${name}${l ? `{${l}}` : ''} ${num(v)}`);
    }
  };
  const h = i.health;
  family('delugefs_health_status', 'gauge', 'Health verdict of the cluster as this node sees it: 0 OK, 1 WARN, 2 ERROR.', [[{}, h.verdict === 'OK' ? 0 : h.verdict === 'WARN' ? 1 : 2]]);
  family('delugefs_health_check', 'gauge', 'Count behind each failing health check (delugefs status).', h.checks.map((c) => [{ code: c.code, severity: c.severity }, c.count]));
  // Every member disk as replication's last round saw it; this disk's numbers are live.
  const self = h.disks.find((d) => d.node === i.node);
  const disks = [{ node: i.node, machine: i.machine || self?.machine || '', total: i.disk.total, free: i.disk.free }, ...h.disks.filter((d) => d.node !== i.node)];
  family('delugefs_disk_size_bytes', 'gauge', 'Size of each member disk, as this node last heard (this disk: now).', disks.map((d) => [{ node: d.node, machine: d.machine }, d.total]));
  family('delugefs_disk_free_bytes', 'gauge', 'Free bytes of each member disk, as this node last heard (this disk: now).', disks.map((d) => [{ node: d.node, machine: d.machine }, d.free]));
  const states = ['up', 'down', 'maintenance', 'draining', 'unknown'] as const;
  family('delugefs_members', 'gauge', 'Members of the cluster by disk state.', states.map((s) => [{ state: s }, h.nodes[s]]));
  family('delugefs_content_ids', 'gauge', 'Distinct contents the namespace references (replication\'s last round).', [[{}, h.content.ids]]);
  family('delugefs_content_under_target', 'gauge', 'Contents on fewer disks than their copies setting (lost ones included).', [[{}, h.content.under]]);
  family('delugefs_content_lost', 'gauge', 'Contents with no live copy on any disk this node knows of.', [[{}, h.content.lost]]);
  family('delugefs_copies_target', 'gauge', 'The cluster\'s copies setting.', h.content.copies === null ? [] : [[{}, h.content.copies]]);
  family('delugefs_namespace_files', 'gauge', 'Names that are not directories in the namespace.', [[{}, h.namespace.files]]);
  family('delugefs_namespace_directories', 'gauge', 'Directories in the namespace.', [[{}, h.namespace.dirs]]);
  family('delugefs_namespace_file_bytes', 'gauge', 'Bytes of all regular files in the namespace.', [[{}, h.namespace.bytes]]);
  family('delugefs_conflict_copies', 'gauge', 'Conflict copies (*.sync-conflict-*) waiting for someone to choose.', [[{}, h.namespace.conflicts]]);
  family('delugefs_sync_behind', 'gauge', 'Changes of ours each peer lacks as far as this node knows (sync lag).', h.sync.map((s) => [{ peer: s.peer }, s.behind]));
  family('delugefs_sync_failures', 'gauge', 'Failed sync exchanges in a row with each peer.', h.sync.map((s) => [{ peer: s.peer }, s.failures]));
  family('delugefs_commits_total', 'counter', 'Namespace commits this process made (its own changes and views of others\').', [[{}, i.commits]]);
  family('delugefs_merges_total', 'counter', 'Namespace changes this process merged in from peers.', [[{}, i.merges]]);
  family('delugefs_swarm_connections', 'gauge', 'Open BitTorrent connections (members and outsiders).', [[{}, i.swarm.connections]]);
  family('delugefs_swarm_received_bytes_total', 'counter', 'Content bytes received from peers by the swarm (readers, copies, repairs).', [[{}, i.swarm.downloaded]]);
  family('delugefs_swarm_sent_bytes_total', 'counter', 'Content bytes sent to peers by the swarm.', [[{}, i.swarm.uploaded]]);
  family('delugefs_replication_fetching', 'gauge', 'Copies this disk is fetching now (healing, placement, drains).', [[{}, i.replication.fetching]]);
  family('delugefs_replication_queued', 'gauge', 'Copies waiting to be fetched here.', [[{}, i.replication.queued]]);
  family('delugefs_scrub_read_bytes_total', 'counter', 'Bytes the background scrub read back and checked.', [[{}, i.replication.scrubBytes]]);
  family('delugefs_scrub_bad_pieces_total', 'counter', 'Bad pieces the background scrub found.', [[{}, i.replication.scrubBad]]);
  if (i.fuse) {
    const ops = [...i.fuse.ops].sort((a, b) => a[0] - b[0]).map(([op, o]) => [OP_NAMES[op] ?? `op${op}`, o] as const);
    family('delugefs_fuse_requests_total', 'counter', 'FUSE requests answered, by operation.', ops.map(([op, o]) => [{ op }, o.hist.count]));
    family('delugefs_fuse_errors_total', 'counter', 'FUSE requests answered with an error, by operation (ENOENT of a lookup included).', ops.map(([op, o]) => [{ op }, o.errors]));
    out.push('# HELP delugefs_fuse_request_duration_seconds Time from reading a FUSE request to answering it, by operation.', '# TYPE delugefs_fuse_request_duration_seconds histogram');
    for (const [op, o] of ops) {
      let cum = 0;
      o.hist.buckets.forEach((b, k) => {
        cum += o.hist.counts[k]!;
        out.push(`delugefs_fuse_request_duration_seconds_bucket{op="${op}",le="${b}"} ${cum}`);
      });
      out.push(`delugefs_fuse_request_duration_seconds_bucket{op="${op}",le="+Inf"} ${o.hist.count}`);
      out.push(`delugefs_fuse_request_duration_seconds_sum{op="${op}"} ${o.hist.sum}`);
      out.push(`delugefs_fuse_request_duration_seconds_count{op="${op}"} ${o.hist.count}`);
    }
  }
  return out.join('\n') + '\n';
}

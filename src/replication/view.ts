// What this node knows of the other disks: each member's last free-space report (kept on disk,
// so a node started while a member is offline still knows that member's size), when it last
// answered, and which content it held when last asked, with the time of that answer. From that
// the disks as placement sees them, with their states:
// - up: answered within dead-after, or not yet dead-after silent (a reboot is not a failure:
//   its copies keep their place, as Ceph keeps an OSD "in" until mon_osd_down_out_interval);
// - maintenance: the operator said so (no re-replication however long it is away);
// - draining: the operator is taking it out: its content is placed elsewhere, and its copies go
//   once enough others exist;
// - down: silent for longer than dead-after: its content is placed elsewhere.
// A member never heard from (no report at all) cannot be placed on: until it answers or is
// dead-after silent the view is incomplete, and the loop does nothing that depends on it.
import { mkdir, readFile, rename, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { ContentId } from '../content/metainfo.js';
import type { Disk, DiskState } from './placement.js';

export interface Report { total: number; free: number; machine: string; okAt: number; /** Its own latest commit at okAt. */ own?: string | null }

export interface Member { nodeId: string; machine: string; zone?: string; maintenance: boolean; draining: boolean }

interface Known {
  report?: Report;
  /** When this node first failed to answer since its last answer (for the log). */
  failedSince?: number;
  held?: { ids: Set<ContentId>; at: number; partial?: ReadonlyMap<ContentId, Partial> };
}

/** A partial download a member reported: pieces it has of how many. */
export interface Partial { have: number; pieces: number }

/** Most partial downloads remembered per member (for whereis; placement needs only complete copies). */
export const MAX_PARTIAL_PER_NODE = 10_000;

const MAX_HELD_PER_NODE = 2_000_000;

/**
 * A disk in maintenance keeps its place as if up (Ceph's noout keeps an OSD "in"): nothing it
 * should hold moves elsewhere, however long it is away; what is written meanwhile waits for it.
 */
const forPlacement = (s: DiskState): DiskState => (s === 'maintenance' ? 'up' : s);

export class ClusterView {
  private readonly known = new Map<string, Known>();
  private saving: Promise<void> = Promise.resolve();
  private dirty = false;

  constructor(
    private readonly o: { me: string; dir: string; deadAfterMs: number; now?: () => number },
    private readonly startedAt = (o.now ?? Date.now)(),
  ) {}

  private now(): number {
    return (this.o.now ?? Date.now)();
  }

  async load(): Promise<void> {
    try {
      const o = JSON.parse(await readFile(join(this.o.dir, 'disks.json'), 'utf8')) as Record<string, Report>;
      for (const [id, r] of Object.entries(o)) {
        if (!r || typeof r.total !== 'number' || typeof r.free !== 'number' || typeof r.machine !== 'string' || !(r.free >= 0 && r.free <= r.total)) continue;
        // An old answer is not a fresh one: the dead-after clock starts at our start.
        this.known.set(id, { report: { total: r.total, free: r.free, machine: r.machine, okAt: Math.min(r.okAt, this.startedAt) } });
      }
    } catch {
      /* none yet, or unreadable: learnt again from the members */
    }
  }

  /** A member answered freespace. */
  reported(id: string, r: { total: number; free: number; machine: string; own?: string | null }): void {
    const k = this.entry(id);
    const before = k.report;
    k.report = { ...r, okAt: this.now() };
    k.failedSince = undefined;
    if (!before || before.total !== r.total || before.machine !== r.machine || Math.abs(before.free - r.free) > r.total / 100) this.save();
  }

  /** A member failed to answer. */
  failed(id: string): void {
    const k = this.entry(id);
    k.failedSince ??= this.now();
  }

  /** What a member said it holds (complete copies), from a full walk of its active_torrents. */
  holding(id: string, ids: Set<ContentId>, partial?: ReadonlyMap<ContentId, Partial>): void {
    if (ids.size > MAX_HELD_PER_NODE) return;
    this.entry(id).held = { ids, at: this.now(), partial };
  }

  /** A copy we just learnt of (a lock granted, a member's fetch done). */
  holds(id: string, content: ContentId, yes: boolean): void {
    const h = this.entry(id).held;
    if (!h) return;
    if (yes) h.ids.add(content);
    else h.ids.delete(content);
  }

  state(id: string, flags: { maintenance: boolean; draining: boolean }): DiskState | 'unknown' {
    const r = this.known.get(id)?.report;
    if (id === this.o.me) return flags.draining ? 'draining' : flags.maintenance ? 'maintenance' : 'up';
    const reachable = this.reachable(id);
    // Silent since its last answer, or since our start if it has not answered since.
    const since = r && r.okAt >= this.startedAt ? r.okAt : this.startedAt;
    const gone = !reachable && this.now() - since > this.o.deadAfterMs;
    // Draining goes on however its polls go (a missed one must not make it take copies again);
    // maintenance keeps its place however long it is away. Without any report a member can be
    // placed on neither way: unknown until dead-after, then left out (its size is unknown).
    if (flags.draining) return gone ? 'down' : r ? 'draining' : 'unknown';
    if (flags.maintenance) return r ? 'maintenance' : gone ? 'down' : 'unknown';
    if (reachable) return 'up';
    if (gone) return 'down';
    return r ? 'up' : 'unknown';
  }

  /** Its last answer: when, and its own latest commit then. */
  lastReport(id: string): Report | undefined {
    return this.known.get(id)?.report;
  }

  /** Only these members (the records' current ones) are known: removed ones are forgotten. */
  retain(ids: Set<string>): void {
    for (const id of [...this.known.keys()]) if (!ids.has(id)) this.forget(id);
  }

  /** Reachable now: answered and not failing since. */
  reachable(id: string): boolean {
    const k = this.known.get(id);
    return id === this.o.me || (!!k?.report && k.failedSince === undefined && k.report.okAt >= this.startedAt);
  }

  /** The disks for placement, and the members it cannot place on yet (never heard from). */
  disks(members: Member[], self: { total: number; free: number }): { disks: Disk[]; unknown: string[] } {
    const disks: Disk[] = [];
    const unknown: string[] = [];
    for (const m of members) {
      const st = this.state(m.nodeId, m);
      if (m.nodeId === this.o.me) {
        disks.push({ node: m.nodeId, machine: m.machine, zone: m.zone, total: self.total, free: Math.min(self.free, self.total), state: forPlacement(st as DiskState) });
        continue;
      }
      const r = this.known.get(m.nodeId)?.report;
      if (st === 'down' && !r) continue; // never heard of, and long silent: nothing to place on
      if (st === 'unknown' || !r) {
        unknown.push(m.nodeId);
        continue;
      }
      disks.push({ node: m.nodeId, machine: m.machine || r.machine, zone: m.zone, total: r.total, free: Math.min(r.free, r.total), state: forPlacement(st) });
    }
    return { disks, unknown };
  }

  /** What a member said it holds at its last full answer, and when (null: not known). */
  heldBy(id: string): { ids: ReadonlySet<ContentId>; at: number } | null {
    return this.known.get(id)?.held ?? null;
  }

  /** Members known to hold a complete copy (as of their last answer), this node excluded. */
  holdersOf(content: ContentId): string[] {
    const out: string[] = [];
    for (const [id, k] of this.known) if (id !== this.o.me && k.held?.ids.has(content)) out.push(id);
    return out;
  }

  /** Members whose last answer had a partial download of `content`, this node excluded. */
  partialsOf(content: ContentId): { node: string; at: number; partial: Partial }[] {
    const out: { node: string; at: number; partial: Partial }[] = [];
    for (const [id, k] of this.known) {
      const p = id !== this.o.me ? k.held?.partial?.get(content) : undefined;
      if (p) out.push({ node: id, at: k.held!.at, partial: p });
    }
    return out;
  }

  /** Of those, the ones that answer now (where pieces and locks can come from). */
  reachableHolders(content: ContentId): string[] {
    return this.holdersOf(content).filter((h) => this.reachable(h));
  }

  forget(id: string): void {
    if (this.known.delete(id)) this.save();
  }

  private entry(id: string): Known {
    let k = this.known.get(id);
    if (!k) this.known.set(id, (k = {}));
    return k;
  }

  /** Writes the reports in the background (temp file and rename), one write at a time. */
  private save(): void {
    if (this.dirty) return;
    this.dirty = true;
    this.saving = this.saving.then(async () => {
      this.dirty = false;
      const out: Record<string, Report> = {};
      for (const [id, k] of this.known) if (k.report) out[id] = k.report;
      await mkdir(this.o.dir, { recursive: true });
      const tmp = join(this.o.dir, 'disks.json.tmp');
      await writeFile(tmp, JSON.stringify(out));
      await rename(tmp, join(this.o.dir, 'disks.json'));
    }).catch(() => { /* a full disk: the reports are learnt again after a restart */ });
  }

  flush(): Promise<void> {
    return this.saving;
  }
}

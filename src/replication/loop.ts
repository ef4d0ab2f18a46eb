// The replication loop: keeps every referenced content on `copies` disks. Event-driven (a commit
// or merge, membership news, a peer seen or lost, a fetch done) with a slow audit as the safety
// net; each round asks the members what they hold (audit rounds only), judges every content id
// (plan.ts) and then
// - fetches what this disk is placed for and lacks, fewest live copies first, a few at a time,
//   only from members that answered lately, never past the near-full reserve;
// - drops surplus copies safely: our copies are marked as dropping (no lock on them is granted
//   meanwhile), then `copies` copies elsewhere must be locked (LOCK_CONTENT) before ours goes;
//   two nodes dropping the same content at once find each other's copy being dropped, and both keep.
// Nothing here reaches into the swarm beyond fetch: the engine stays policy-free.
import { setImmediate as yieldLoop } from 'node:timers/promises';
import type { ContentId, Info } from '../content/metainfo.js';
import type { Logger } from '../util/log.js';
import type { PeerClients } from '../cluster/peer-clients.js';
import { call } from '../daemon/methods.js';
import type { Holdings } from './holdings.js';
import { MAX_PARTIAL_PER_NODE } from './view.js';
import type { ClusterView, Member, Partial } from './view.js';
import type { Disk } from './placement.js';
import { judge } from './plan.js';
import { canTake, place, roomOf } from './placement.js';
import { ACTIVE_TORRENTS, ActivePage, FREESPACE, LOCK_CONTENT, MAX_IDS, UNLOCK_CONTENT } from './methods.js';

export interface LoopDeps {
  me: string;
  holdings: Holdings;
  view: ClusterView;
  clients: PeerClients;
  log: Logger;
  /** The namespace's referenced content. */
  ids(): IterableIterator<ContentId>;
  info(id: ContentId): Info | undefined;
  /** Where the content was placed when written (tree.placer): the writer, then its `at`. */
  placer(id: ContentId): string[] | undefined;
  /** Content being written here now: never dropped meanwhile. */
  busy(id: ContentId): boolean;
  /** Held content no entry references: garbage collection's. */
  unreferenced(id: ContentId): void;
  members(): Member[];
  /** The cluster's copies, and per content (directory settings) for this round. */
  copies(): number;
  copiesFor(): (id: ContentId) => number;
  space(): Promise<{ total: number; free: number; available: number; reserved: number }>;
  /** Of the surplus copies this round would drop, those the read cache keeps (readers used them). */
  cached(surplus: readonly { id: ContentId; bytes: number }[]): Set<ContentId>;
  /** Queues fetches (in this order) for the fetcher; replaces what an earlier round queued. */
  fetch(list: { id: ContentId; info: Info }[]): void;
  nearFull: number;
  lockMs: number;
}

export interface LoopStats {
  at: number;
  copies: number;
  ids: number;
  /** Content with fewer live copies than `copies`. */
  under: number;
  /** Content with no live copy anywhere we know of. */
  lost: number;
  /** Waiting for these members' first answer before acting. */
  waiting: string[];
  disks: Disk[];
  fetchQueued: number;
  dropped: number;
  /** Surplus copies kept as the read cache. */
  cached: number;
}

/** Most active_torrents pages read from one member per audit (2 million ids). */
const MAX_PAGES = 2000;
/** A whole poll of one member (freespace and every page of active_torrents). */
const POLL_DEADLINE_MS = 120_000;
/** Surplus copies dropped per batch (one lock per holder for the batch). */
const DROP_BATCH = 500;
/** How long a member's please_stop_mirroring keeps a surplus copy out of the read cache. */
const RELEASED_MS = 10 * 60_000;

export class ReplicationLoop {
  private running = false;
  private again: 'poll' | 'plan' | null = null;
  private timer: NodeJS.Timeout | null = null;
  private timerKind: 'poll' | 'plan' = 'plan';
  private closed = false;
  private waitingLogged = '';
  /**
   * Placements of the last rounds, valid while the disks (their sizes, states and whether they
   * take new copies) and `copies` stay the same: a round then hashes only new content.
   */
  private placed = new Map<ContentId, { by: string | undefined; copies: number; nodes: string[] }>();
  private placedFor = '';
  /** Surplus copies a member asked us to stop mirroring (please_stop_mirroring): not kept as cache. */
  /** id -> when asked; forgotten after RELEASED_MS (a copy held again later may be cached again). */
  private released = new Map<ContentId, number>();
  stats: LoopStats | null = null;

  constructor(private readonly d: LoopDeps) {}

  /** A round soon: 'poll' asks the members first, 'plan' judges with what is known. */
  schedule(kind: 'poll' | 'plan', ms = 200): void {
    if (this.closed) return;
    if (this.running) {
      if (this.again !== 'poll') this.again = kind;
      return;
    }
    if (this.timer) {
      if (kind === 'poll') this.timerKind = 'poll';
      return;
    }
    this.timerKind = kind;
    this.timer = setTimeout(() => {
      this.timer = null;
      void this.round(this.timerKind);
    }, ms);
    this.timer.unref();
  }

  close(): void {
    this.closed = true;
    if (this.timer) clearTimeout(this.timer);
  }

  private async round(kind: 'poll' | 'plan'): Promise<void> {
    this.running = true;
    try {
      if (kind === 'poll') await this.pollAll();
      if (!this.closed) await this.plan();
    } catch (e) {
      this.d.log.error('replication.round_failed', { error: (e as Error).message });
    } finally {
      this.running = false;
      const next = this.again;
      this.again = null;
      if (next && !this.closed) this.schedule(next, 50);
    }
  }

  /** Freespace and holdings of every other member, four at a time. */
  private async pollAll(): Promise<void> {
    const others = this.d.members().map((m) => m.nodeId).filter((id) => id !== this.d.me);
    let next = 0;
    await Promise.all(Array.from({ length: Math.min(4, others.length) }, async () => {
      while (next < others.length && !this.closed) await this.poll(others[next++]!);
    }));
  }

  async poll(id: string): Promise<boolean> {
    const client = this.d.clients.get(id);
    if (!client) {
      this.d.view.failed(id);
      return false;
    }
    // One deadline for the whole poll: a member answering each page slowly must not hold up the
    // round (and so everyone's healing); it counts as failed and keeps what it said before.
    const deadline = Date.now() + POLL_DEADLINE_MS;
    const left = () => {
      const ms = deadline - Date.now();
      if (ms <= 0) throw new Error(`no full answer within ${POLL_DEADLINE_MS / 1000} s`);
      return { timeoutMs: Math.min(15_000, ms) };
    };
    try {
      const fs = await call(client, FREESPACE, null, left());
      if (fs.nodeId !== id) throw new Error(`answered as ${fs.nodeId}`);
      const machine = this.d.members().find((m) => m.nodeId === id)?.machine ?? '';
      this.d.view.reported(id, { total: fs.total, free: Math.max(0, fs.available - fs.reserved), machine, own: fs.own });
      const held = new Set<ContentId>();
      const partial = new Map<ContentId, Partial>();
      let after: ContentId | null = null;
      let page = 0;
      for (; page < MAX_PAGES; page++) {
        const r: ActivePage = await call(client, ACTIVE_TORRENTS, { after, limit: MAX_IDS }, left());
        if (after !== null && r.items.length && r.items[0]!.id <= after) throw new Error('active_torrents went backwards');
        // Only content our namespace references counts (and takes memory here).
        for (const h of r.items) {
          if (!this.d.info(h.id)) continue;
          if (h.complete) held.add(h.id);
          else if (partial.size < MAX_PARTIAL_PER_NODE) partial.set(h.id, { have: h.have, pieces: h.pieces });
        }
        if (r.next === null) break;
        after = r.next;
      }
      if (page === MAX_PAGES) this.d.log.warn('replication.poll_truncated', { peer: id, pages: MAX_PAGES, why: 'more content than one poll reads; what lies beyond counts as not held there' });
      this.d.view.holding(id, held, partial);
      return true;
    } catch (e) {
      this.d.view.failed(id);
      this.d.clients.drop(id);
      this.d.log.debug('replication.poll_failed', { peer: id, error: (e as Error).message });
      return false;
    }
  }

  /** The disks as placement sees them now, this one with its free space less what is promised. */
  private async disks(): Promise<{ disks: Disk[]; unknown: string[]; self: { total: number; free: number } }> {
    const s = await this.d.space();
    const self = { total: s.total, free: Math.max(0, s.available - s.reserved) };
    return { ...this.d.view.disks(this.d.members(), self), self };
  }

  /**
   * A member's please_stop_mirroring: which of `ids` this disk may drop now (its own checks:
   * not placed here, surplus by the rule every node applies), dropped in the next round; the
   * others are declined with why.
   */
  async mayDrop(ids: ContentId[]): Promise<{ accepted: ContentId[]; declined: { id: ContentId; reason: string }[] }> {
    const { d } = this;
    const out = { accepted: [] as ContentId[], declined: [] as { id: ContentId; reason: string }[] };
    const copiesOf = d.copiesFor();
    const { disks, unknown } = await this.disks();
    for (const id of ids) {
      const copies = copiesOf(id);
      const info = d.info(id);
      if (!d.holdings.has(id)) out.declined.push({ id, reason: 'not_held' });
      else if (!info) out.accepted.push(id); // unreferenced: the garbage collection's (its grace period)
      else if (unknown.length) out.declined.push({ id, reason: 'view_incomplete' });
      else {
        const p = d.placer(id);
        let j;
        try {
          j = judge({ id, copies, writer: p?.[0], prefer: p?.slice(1), me: d.me, disks, mine: true, others: d.view.holdersOf(id), reachable: (x) => d.view.reachable(x), nearFull: d.nearFull, bytes: info.length });
        } catch (e) {
          out.declined.push({ id, reason: 'placement_failed' }); // that id alone, not the batch
          continue;
        }
        if (j.action.kind === 'drop' && !d.busy(id)) out.accepted.push(id);
        else out.declined.push({ id, reason: j.live <= copies ? 'needed' : 'placed' });
      }
    }
    if (out.accepted.length) {
      for (const id of out.accepted) if (this.released.size < 10_000) this.released.set(id, Date.now());
      this.schedule('plan', 0);
    }
    return out;
  }

  private async plan(): Promise<void> {
    const { d } = this;
    const copies = d.copies();
    const copiesOf = d.copiesFor();
    d.view.retain(new Set(d.members().map((m) => m.nodeId)));
    // Held here but referenced by nothing (stored after its delete was collected): to the trash.
    for (const id of d.holdings.ids()) if (!d.info(id)) d.unreferenced(id);
    const { disks, unknown, self } = await this.disks();
    const stats: LoopStats = { at: Date.now(), copies, ids: 0, under: 0, lost: 0, waiting: unknown, disks, fetchQueued: 0, dropped: 0, cached: 0 };
    if (unknown.length) {
      // Placement without a member's size would differ from the members' own: wait for it (or dead-after).
      const key = unknown.join();
      if (this.waitingLogged !== key) d.log.info('replication.waiting', { members: unknown, why: 'no free-space report from them yet; nothing is placed until they answer or are dead-after silent' });
      this.waitingLogged = key;
      this.stats = stats;
      return;
    }
    this.waitingLogged = '';
    const fetch: { id: ContentId; info: Info; live: number }[] = [];
    const surplus: { id: ContentId; copies: number; bytes: number }[] = [];
    const takes = (x: Disk) => canTake(x, d.nearFull);
    const sig = `${d.nearFull}|${disks.map((x) => `${x.node}:${x.machine}:${x.zone ?? ''}:${x.total}:${x.state}:${takes(x) ? 1 : 0}`).sort().join(',')}`;
    if (sig !== this.placedFor) {
      this.placed.clear();
      this.placedFor = sig;
    }
    // Where a near-full disk holds a copy, its place depends on that: not cached; nor where the
    // content's size decides whether a disk still takes it.
    const nearFull = new Set(disks.filter((x) => x.state === 'up' && !takes(x)).map((x) => x.node));
    const open = disks.filter(takes);
    const sizeMatters = (bytes: number) => open.some((x) => !canTake(x, d.nearFull, bytes));
    let n = 0;
    for (const id of d.ids()) {
      if (++n % 2000 === 0) await yieldLoop();
      const info = d.info(id);
      if (!info || info.length === 0) continue; // the empty file is never stored
      stats.ids++;
      const mine = d.holdings.has(id);
      const p = d.placer(id);
      const writer = p?.[0], prefer = p?.slice(1), by = p?.join(',');
      const others = d.view.holdersOf(id);
      const copies = copiesOf(id);
      let j;
      try {
        let placed: string[] | undefined;
        if (!(mine && nearFull.has(d.me)) && !others.some((x) => nearFull.has(x)) && !sizeMatters(info.length)) {
          const hit = this.placed.get(id);
          placed = hit && hit.by === by && hit.copies === copies ? hit.nodes : place({ id, copies, writer, prefer, disks, nearFull: d.nearFull }).nodes;
          if (placed !== hit?.nodes) this.placed.set(id, { by, copies, nodes: placed });
        }
        j = judge({ id, copies, writer, prefer, me: d.me, disks, mine, others, reachable: (x) => d.view.reachable(x), nearFull: d.nearFull, bytes: info.length, placed });
      } catch (e) {
        d.log.warn('replication.placement_failed', { id, error: (e as Error).message });
        continue;
      }
      if (j.live < copies) stats.under++;
      if (j.live === 0) stats.lost++;
      if (j.action.kind === 'fetch' && j.action.live > 0) fetch.push({ id, info, live: j.action.live });
      else if (j.action.kind === 'drop' && !d.busy(id)) surplus.push({ id, copies, bytes: info.length });
    }
    if (this.placed.size > 2 * stats.ids + 1000) this.placed.clear(); // deleted content's entries
    // Healing order: the content with the fewest copies left first (HDFS's priority queues).
    fetch.sort((a, b) => a.live - b.live);
    let room = roomOf(self, d.nearFull);
    const take: { id: ContentId; info: Info }[] = [];
    for (const f of fetch) {
      if (f.info.length >= room) continue;
      room -= f.info.length;
      take.push(f);
    }
    // What readers used stays as the read cache (within its budget), unless a member asked for it.
    const released = this.released;
    for (const [id, at] of released) if (Date.now() - at > RELEASED_MS) released.delete(id);
    const cached = d.cached(surplus.filter((x) => !released.has(x.id)));
    const drop = surplus.filter((x) => !cached.has(x.id));
    stats.cached = cached.size;
    d.fetch(take);
    stats.fetchQueued = take.length;
    for (let i = 0; i < drop.length && !this.closed; i += DROP_BATCH) stats.dropped += await this.dropSome(drop.slice(i, i + DROP_BATCH));
    this.stats = stats;
    if (take.length || stats.dropped || stats.under) d.log.info('replication.round', { ids: stats.ids, under: stats.under, lost: stats.lost, fetch: take.length, dropped: stats.dropped, surplus: drop.length, cached: cached.size });
  }

  /** Drops our copies where their `copies` others can be locked first. Returns how many went. */
  private async dropSome(batch: { id: ContentId; copies: number }[]): Promise<number> {
    const { d } = this;
    const ids = batch.map((b) => b.id);
    const need = new Map(batch.map((b) => [b.id, b.copies]));
    const byPeer = new Map<string, ContentId[]>();
    for (const id of ids) for (const p of d.view.reachableHolders(id)) (byPeer.get(p) ?? byPeer.set(p, []).get(p)!).push(id);
    const lockedBy = new Map<ContentId, number>();
    const tokens: { peer: string; token: string }[] = [];
    let t0 = 0;
    let locking: Promise<void> | null = null;
    const lockAll = () => (locking ??= (async () => {
      t0 = Date.now();
      await Promise.all([...byPeer].map(async ([peer, list]) => {
        const client = d.clients.get(peer);
        if (!client) return;
        try {
          const r = await call(client, LOCK_CONTENT, { ids: list, ms: d.lockMs });
          if (r.locked.length) tokens.push({ peer, token: r.token });
          // Only what we asked for, once, under a lease as long as asked: a reply naming an id
          // twice (or one we never asked about) counts for nothing more.
          if (r.ms < d.lockMs) return;
          const asked = new Set(list);
          for (const id of new Set(r.locked)) if (asked.has(id)) lockedBy.set(id, (lockedBy.get(id) ?? 0) + 1);
          for (const id of r.missing) if (asked.has(id)) d.view.holds(peer, id, false);
        } catch (e) {
          d.log.debug('replication.lock_failed', { peer, error: (e as Error).message });
        }
      }));
    })());
    let dropped = 0;
    try {
      const results = await Promise.all(ids.map((id) => d.holdings.drop(id, async () => {
        await lockAll();
        // Well inside the locks' lease, or not at all.
        return (lockedBy.get(id) ?? 0) >= need.get(id)! && Date.now() - t0 < d.lockMs / 2;
      }, () => !d.busy(id))));
      for (let i = 0; i < ids.length; i++) if (results[i]) {
        dropped++;
        d.log.debug('replication.dropped', { id: ids[i] });
      }
    } finally {
      await Promise.all(tokens.map(({ peer, token }) => {
        const c = d.clients.get(peer);
        return c ? call(c, UNLOCK_CONTENT, { token }).catch(() => {}) : undefined;
      }));
    }
    return dropped;
  }
}

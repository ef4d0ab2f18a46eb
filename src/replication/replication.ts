// Replication on a running node, wired: what this disk holds (holdings.ts), what it knows of the
// other disks (view.ts), the loop that places, heals and drops (loop.ts), the fetcher that takes
// copies (for the loop and for members' please_mirror), the replication RPC methods peers call
// (freespace, active_torrents, please_mirror, please_stop_mirroring, lock_content,
// unlock_content) and the control socket's (replication_config, replication_status).
import type { DelugeNode } from '../node/node.js';
import type { ClusterNode } from '../node/cluster-node.js';
import { swarmAddresses, type SwarmLink } from '../node/swarm-link.js';
import type { Logger } from '../util/log.js';
import type { ContentId } from '../content/metainfo.js';
import type { Info } from '../content/metainfo.js';
import { join } from 'node:path';
import { serve } from '../daemon/methods.js';
import { RpcError, PeerInfo } from '../cluster/rpc.js';
import { localOnly, memberOnly } from '../cluster/control-socket.js';
import { PeerClients } from '../cluster/peer-clients.js';
import { isNodeId } from '../cluster/identity.js';
import { Holdings } from './holdings.js';
import { serveLocks } from './locks.js';
import { NEAR_FULL, roomOf } from './placement.js';
import { ClusterView, Member } from './view.js';
import { ReplicationLoop, LoopStats } from './loop.js';
import { ReadCache } from './cache.js';
import { whereis, Where } from './whereis.js';
import { Scrubber, type StoredCopies } from './scrub.js';
import { Fsck } from './fsck.js';
import { DIR_COPIES_RECORD, copiesAtPath, copiesByContent, dirKey, dirSettings, normalize } from './dir-copies.js';
import { PlacementHints } from './hints.js';
import { COPIES_RECORD, DEFAULT_COPIES, MAINTENANCE_RECORD, DRAIN_RECORD, ZONE_RECORD, decodeZone, decodeCopies, decodeFlag, encodeSetting } from './settings.js';
import { copySmall, readSmall, isSmall, type SmallCopyDeps } from './small-copy.js';
import { CONTENT_READ, ACTIVE_TORRENTS, FREESPACE, PLEASE_MIRROR, PLEASE_STOP_MIRRORING, REPLICATION_CONFIG, REPLICATION_STATUS, DRAIN_STATUS, FSCK, ConfigParams, ConfigReply, DrainStatus, MirrorReply } from './methods.js';

/** A member asked for drain_status is polled again once its last answer is this old. */
const DRAIN_POLL_MS = 2000;

export interface ReplicationOptions {
  /** Fill ratio from which this disk takes no new copies (default 0.85). */
  nearFull?: number;
  /** Mirror requests fetched at once; more wait in line, and beyond `queue` are declined. */
  concurrent?: number;
  queue?: number;
  /** A member silent this long is down: its content is copied again (default 10 minutes). */
  deadAfterMs?: number;
  /** The slow audit: every member asked what it holds (default 60 s). */
  auditMs?: number;
  /** Lease of the locks taken on other copies before a drop. */
  lockMs?: number;
  /** How long deleted content is kept before it is removed from this disk (default 10 minutes). */
  gcGraceMs?: number;
  /** This node's rack or site (`--zone`): copies go to distinct zones first. Absent: unchanged. */
  zone?: string;
  /** Bytes of partial downloads kept for readers (default 2 GiB). */
  cacheBytes?: number;
  /** Scrub reads per second (default 16 MiB/s; 0: no scrub) and the pause between passes (default 1 day). */
  scrubRate?: number;
  scrubPauseMs?: number;
  /** Bytes per second replication's own fetches take together (the swarm's background rate; 0: no cap). */
  healRate?: number;
}

/** Copies under way at this disk (`delugefs status`): null ETA while nothing arrives. */
export interface Progress { copying: number; waiting: number; bytesLeft: number; rate: number; etaSeconds: number | null }

export class Replication {
  /**
   * Members' mirror requests waiting, in arrival order (a map: a peer's 1,000 ids are checked
   * against it cheaply), with the bytes each reserved, given back exactly when it leaves.
   */
  private readonly queue = new Map<ContentId, number>();
  private queuedBytes = 0;
  /** What the loop's last round wants fetched, in healing order (replaced by each round). */
  private planned: { id: ContentId; info: Info }[] = [];
  private plannedAt = 0;
  private plannedIds = new Set<ContentId>();
  private readonly cache: ReadCache;
  readonly scrub: Scrubber;
  readonly fsck: Fsck;
  private readonly fetching = new Map<ContentId, number>();
  private closed = false;
  private readonly ac = new AbortController();
  private readonly offs: (() => void)[] = [];
  private audit: NodeJS.Timeout | null = null;
  readonly loop: ReplicationLoop;
  readonly hints: PlacementHints;

  private constructor(
    readonly holdings: Holdings,
    private readonly node: DelugeNode,
    private readonly cluster: ClusterNode,
    private readonly swarm: SwarmLink,
    private readonly log: Logger,
    private readonly o: Required<ReplicationOptions>,
    readonly view: ClusterView,
    private readonly clients: PeerClients,
  ) {
    const ns = node.ns;
    this.loop = new ReplicationLoop({
      me: cluster.identity.nodeId, holdings, view, clients, log,
      ids: () => ns.tree.contentIds(),
      info: (id) => ns.tree.info(id),
      placer: (id) => ns.tree.placer(id),
      busy: (id) => node.keeper.busy(id),
      unreferenced: (id) => node.keeper.maybeUnused(id),
      members: () => this.members(),
      copies: () => this.copies(),
      copiesFor: () => this.copiesFor(),
      space: () => this.space(),
      // A draining disk keeps no cache: its drain ends when it holds nothing.
      cached: (surplus) => this.cache.keep(this.flag(DRAIN_RECORD, cluster.identity.nodeId) ? [] : surplus),
      fetch: (list) => {
        this.planned = list;
        this.plannedAt = 0;
        this.plannedIds = new Set(list.map((x) => x.id));
        this.pump();
      },
      nearFull: o.nearFull,
      lockMs: o.lockMs,
    });
    this.hints = new PlacementHints({
      me: cluster.identity.nodeId, nearFull: o.nearFull,
      disks: () => (this.lastSpace ? view.disks(this.members(), this.lastSpace) : null),
      reportedAt: (n) => (n === cluster.identity.nodeId ? this.lastSpace?.at : view.lastReport(n)?.okAt),
      copiesAt: (path) => this.copiesAt(path),
      placer: (id) => ns.tree.placer(id),
    });
    this.cache = new ReadCache({
      dir: join(node.opts.paths.root, 'partial'), stateDir: join(node.opts.paths.root, 'replication'), budget: o.cacheBytes, swarm: swarm.swarm, log: this.log,
      evicted: () => this.loop.schedule('plan', 0),
      // A placed copy on its way, or bytes that may be the only ones (a repair that did not
      // finish, content no member that answers holds): not a cache.
      keep: (id) => this.fetching.has(id) || this.queue.has(id) || this.plannedIds.has(id) || (node.ns.tree.isReferenced(id) && !this.view.reachableHolders(id).length),
      idleMs: Math.min(60_000, 2 * o.auditMs),
      room: () => this.room(),
    });
    // What the scrub and fsck check, and how they repair.
    const copies: StoredCopies = {
      store: node.store, dir: join(node.opts.paths.root, 'replication'), log: this.log,
      held: () => [...holdings.ids()].sort(),
      info: (id) => node.ns.tree.info(id),
      busy: (id) => node.keeper.busy(id) || this.fetching.has(id),
      // Only from a complete copy elsewhere that answers, and never a copy a member has locked
      // (it counts on it) or that is being dropped: until then the copy stays as it is.
      canRepair: (id) => this.canRepair(id),
      repair: (id, info, good, signal) => this.repair(id, info, good, signal),
    };
    this.scrub = new Scrubber({ ...copies, rate: o.scrubRate, pauseMs: o.scrubPauseMs });
    this.fsck = new Fsck({ ...copies, check: (v) => FSCK.result(v), root: () => node.ns.tree.root });
  }

  /** A bad stored copy is repaired only from a complete copy elsewhere that answers, and never while a member counts on ours (locked). */
  private canRepair(id: ContentId): boolean {
    return this.view.reachableHolders(id).length > 0 && !this.holdings.isLocked(id);
  }

  /** Fetches again the pieces of our copy `good` says no to (the scrub's, and verification on read's). */
  private async repair(id: ContentId, info: Info, good: (piece: number) => boolean, signal?: AbortSignal): Promise<void> {
    if (this.fetching.has(id)) throw new Error('being fetched or repaired already');
    this.fetching.set(id, info.length);
    try {
      const signals = [this.ac.signal, AbortSignal.timeout(Math.max(600_000, info.length / 1000))];
      if (signal) signals.push(signal);
      await this.swarm.swarm.repair(id, info, good, AbortSignal.any(signals));
    } finally {
      this.fetching.delete(id);
    }
  }

  /** Verification on read found bad pieces in a stored copy: repaired here, or the read fails (EIO). */
  private async repairForRead(id: ContentId, info: Info, good: (piece: number) => boolean): Promise<void> {
    if (!this.canRepair(id)) throw new Error('no other member that answers holds a complete copy, or a member counts on ours');
    this.log.warn('replication.read.bad_pieces', { id, why: 'a read found stored pieces that do not match their hashes; repairing them from the members' });
    await this.repair(id, info, good);
    this.log.info('replication.read.repaired', { id });
  }

  static async start(node: DelugeNode, cluster: ClusterNode, swarm: SwarmLink, log: Logger, o: ReplicationOptions = {}): Promise<Replication> {
    const holdings = new Holdings(node.store, swarm.swarm, Date.now, (id) => node.ns.tree.isReferenced(id));
    await holdings.load();
    const opts: Required<ReplicationOptions> = {
      nearFull: o.nearFull ?? NEAR_FULL, concurrent: o.concurrent ?? 2, queue: o.queue ?? 10_000,
      deadAfterMs: o.deadAfterMs ?? 600_000, auditMs: o.auditMs ?? 60_000, lockMs: o.lockMs ?? 60_000, gcGraceMs: o.gcGraceMs ?? 600_000, zone: o.zone ?? '', cacheBytes: o.cacheBytes ?? 2 * 1024 ** 3,
      scrubRate: o.scrubRate ?? 16 << 20, scrubPauseMs: o.scrubPauseMs ?? 86_400_000, healRate: o.healRate ?? 0,
    };
    const view = new ClusterView({ me: cluster.identity.nodeId, dir: join(node.opts.paths.root, 'replication'), deadAfterMs: opts.deadAfterMs });
    await view.load();
    const clients = new PeerClients({ identity: cluster.identity, membership: cluster.membership, peers: cluster.discovery.peers });
    const r = new Replication(holdings, node, cluster, swarm, log.child({ c: 'replication' }), opts, view, clients);
    const me = cluster.identity.nodeId;
    if (opts.zone && decodeZone(node.ns.getRecord(ZONE_RECORD + me))?.value !== opts.zone) {
      // Only placement depends on it: a full disk that cannot record it must not stop the node.
      await node.ns.setRecord(ZONE_RECORD + me, encodeSetting(opts.zone, me)).then(() => node.ns.commit()).catch((e) => log.warn('replication.zone_not_recorded', { error: (e as Error).message }));
    }
    await r.cache.load();
    node.setUsed((id) => r.cache.used(id));
    node.repairer = (id, info, good) => r.repairForRead(id, info, good);
    r.register(cluster);
    r.gateCollection();
    node.clusterSpace = (local) => r.clusterSpace(local);
    node.setPlacer((path, id, bytes) => r.hints.hint(path, id, bytes));
    r.listen();
    r.scrub.start();
    return r;
  }

  /**
   * Deleted content leaves this disk only after the grace period, and only once every member
   * and we have each other's namespace changes from after it was trashed: a member's change made
   * before it saw the delete (a chmod of the deleted file) has then reached us and, merged,
   * references the content again.
   */
  private gateCollection(): void {
    const me = this.cluster.identity.nodeId;
    this.node.keeper.gate = {
      graceMs: () => (this.members().length > 1 ? this.o.gcGraceMs : 0),
      // Both ways, for every member: it has every change we have (sync's record of what it
      // holds), and we hold its own latest commit as it reported it after the content went to
      // the trash, so a change it made before it saw the delete has reached us and been merged.
      // A member down is waited for too (its last change may reference the content) unless the
      // disk is full; one that is gone for good is removed with delugefs remove-node.
      // Content trashed before the oldest of those reports is clear (`since < report` for each).
      clearBefore: (urgent) => {
        const heads = this.cluster.sync.peerHeads();
        let before = Infinity;
        for (const m of this.members()) {
          if (m.nodeId === me) continue;
          if (urgent && this.view.state(m.nodeId, m) === 'down') continue;
          const r = this.view.lastReport(m.nodeId);
          if (!r || !this.view.reachable(m.nodeId) || heads[m.nodeId]?.behind !== 0) return -Infinity;
          if (r.own && this.cluster.sync.adopted(m.nodeId) !== r.own) return -Infinity;
          before = Math.min(before, r.okAt);
        }
        return before;
      },
      locked: (id) => this.holdings.isLocked(id),
    };
  }

  /** The members as disks: machine from their record, maintenance from the cluster's records. */
  private members(): Member[] {
    const m = this.cluster.membership;
    return m.list().filter((r) => !m.isRevoked(r.nodeId)).map((r) => ({ nodeId: r.nodeId, machine: r.hostname || r.nodeId, zone: decodeZone(this.node.ns.getRecord(ZONE_RECORD + r.nodeId))?.value, maintenance: this.flag(MAINTENANCE_RECORD, r.nodeId), draining: this.flag(DRAIN_RECORD, r.nodeId) }));
  }

  /** What replication knows of each member's disk, for `delugefs peers`: state, its last answer, fill, copies held. */
  disksOf(): Map<string, { zone: string | null; state: string; reachable: boolean; lastAnswerAt: number | null; total: number | null; free: number | null; held: number | null }> {
    const out = new Map<string, { zone: string | null; state: string; reachable: boolean; lastAnswerAt: number | null; total: number | null; free: number | null; held: number | null }>();
    for (const m of this.members()) {
      const r = this.view.lastReport(m.nodeId);
      out.set(m.nodeId, {
        zone: m.zone ?? null, state: this.view.state(m.nodeId, m), reachable: this.view.reachable(m.nodeId), lastAnswerAt: r?.okAt ?? null,
        total: r?.total ?? null, free: r?.free ?? null, held: this.view.heldBy(m.nodeId)?.ids.size ?? null,
      });
    }
    return out;
  }

  copies(): number {
    return decodeCopies(this.node.ns.getRecord(COPIES_RECORD))?.value ?? DEFAULT_COPIES;
  }

  /** Per-content copies from directory settings, recomputed after a change to the namespace. */
  private byDir: { head: string | null; copies: number; map: Map<ContentId, number> } | null = null;
  copiesFor(): (id: ContentId) => number {
    const ns = this.node.ns;
    const fallback = this.copies();
    if (this.byDir?.head !== ns.head || this.byDir.copies !== fallback) {
      const settings = dirSettings(ns.listRecords(DIR_COPIES_RECORD));
      this.byDir = { head: ns.head, copies: fallback, map: settings.size ? copiesByContent(ns.tree, settings, fallback) : new Map() };
    }
    const map = this.byDir.map;
    return (id) => map.get(id) ?? fallback;
  }

  private flag(record: string, id: string): boolean {
    return decodeFlag(this.node.ns.getRecord(record + id))?.value === 1;
  }

  /**
   * What a mount's statfs reports: the disks that hold copies (up or in maintenance, as last
   * reported), divided by `copies`: total = sum of sizes / copies, free = sum of free / copies.
   * Available is also at most this disk's own: a write lands here first, so a full local disk
   * says so (ENOSPC) even where the cluster has room.
   */
  clusterSpace(local: { total: number; free: number; available: number }): { total: number; free: number; available: number } | null {
    const { disks, unknown } = this.view.disks(this.members(), { total: local.total, free: local.available });
    if (unknown.length || disks.length < 2) return null; // alone: this disk's own figures
    const k = Math.min(this.copies(), disks.filter((d) => d.state === 'up').length) || 1;
    let total = 0, free = 0;
    for (const d of disks) if (d.state === 'up') {
      total += d.total;
      free += d.free;
    }
    return { total: total / k, free: free / k, available: Math.min(local.available, free / k) };
  }

  /** Events that can change what should be where; the audit as the safety net. */
  private listen(): void {
    const ns = this.node.ns;
    const peers = this.cluster.discovery.peers;
    const plan = () => this.loop.schedule('plan');
    const poll = () => this.loop.schedule('poll', 500);
    const lost = (p: { nodeId: string }) => {
      this.view.failed(p.nodeId);
      this.loop.schedule('plan');
    };
    ns.on('commit', plan);
    ns.on('records', poll);
    peers.on('peer', poll);
    peers.on('back', poll);
    peers.on('lost', lost);
    this.offs.push(() => ns.off('commit', plan), () => ns.off('records', poll), () => peers.off('peer', poll), () => peers.off('back', poll), () => peers.off('lost', lost));
    this.audit = setInterval(() => {
      this.loop.schedule('poll', 0);
      void this.node.keeper.collect().catch(() => {}); // deleted content whose grace period ended
      void this.cache.trim().catch((e) => this.log.warn('replication.cache.trim_failed', { error: (e as Error).message })).then(() => this.cache.save());
    }, Math.min(this.o.auditMs, Math.max(1000, this.o.gcGraceMs / 4)));
    this.audit.unref();
    this.loop.schedule('poll', 1000);
  }

  /** Free, total and reserved bytes of this disk (reserved: copies being fetched). */
  async space(): Promise<{ total: number; free: number; available: number; reserved: number }> {
    const s = await this.node.store.space();
    // Copies being fetched and members' requests waiting: room promised already.
    let reserved = this.queuedBytes;
    for (const n of this.fetching.values()) reserved += n;
    this.lastSpace = { total: s.total, free: Math.max(0, s.available - reserved), at: Date.now() };
    return { total: s.total, free: s.free, available: s.available, reserved };
  }

  /** Bytes this disk can still take, promised copies counted, before it is near full (negative past it). */
  private async room(): Promise<number> {
    const s = await this.space();
    return roomOf({ total: s.total, free: s.available - s.reserved }, this.o.nearFull);
  }

  /** This disk as last measured (placement hints need it without waiting for the disk). */
  private lastSpace: { total: number; free: number; at: number } | null = null;

  /** Copies for a file at `path`: the nearest directory setting, else the cluster's. */
  private copiesAt(path: string | null): number {
    const fallback = this.copies();
    if (path === null) return fallback;
    const ns = this.node.ns;
    if (this.dirSettingsAt?.head !== ns.head) this.dirSettingsAt = { head: ns.head, settings: dirSettings(ns.listRecords(DIR_COPIES_RECORD)) };
    return copiesAtPath(this.dirSettingsAt.settings, path, fallback);
  }
  private dirSettingsAt: { head: string | null; settings: Map<string, number> } | null = null;

  private register(cluster: ClusterNode): void {
    const rpc = cluster.rpc;
    const me = cluster.identity.nodeId;
    serve(rpc, FREESPACE, async () => ({ nodeId: me, ...(await this.space()), own: this.cluster.sync.adopted(me) ?? null }));
    serve(rpc, ACTIVE_TORRENTS, (p) => this.holdings.page(p.after, p.limit));
    serve(rpc, PLEASE_MIRROR, async (p) => this.mirror(p.ids));
    // Small content's bytes for a member's copy (small-copy.ts): only what the namespace references.
    serve(rpc, CONTENT_READ, async (p, peer) => {
      memberOnly(peer, this.cluster.membership, CONTENT_READ.name);
      const data = this.holdings.has(p.id) ? await readSmall(this.node.store, p.id, this.node.ns.tree.info(p.id)) : null;
      if (!data) throw new RpcError('not_found', `${p.id}: no small complete copy here`);
      return { data: data.toString('base64') };
    });
    // Copies go only where this node's own checks find them surplus (and the drop's locks hold).
    serve(rpc, PLEASE_STOP_MIRRORING, (p): Promise<MirrorReply> => this.loop.mayDrop(p.ids));
    serveLocks(rpc, this.holdings);
    serve(rpc, REPLICATION_CONFIG, (params, peer) => this.config(params, peer));
    serve(rpc, DRAIN_STATUS, (p, peer) => {
      localOnly(peer, 'drain_status');
      return this.drainStatus(p.node);
    });
    serve(rpc, REPLICATION_STATUS, (_p, peer) => {
      localOnly(peer, 'replication_status');
      return { nodeId: me, copies: this.copies(), held: this.holdings.size, fetching: [...this.fetching.keys()], queued: this.queue.size + this.planned.length - this.plannedAt, round: this.loop.stats, scrub: this.scrub.stats, cache: this.cache.stats, trashed: this.node.keeper.trashed, swarm: this.swarm.swarm.summary() };
    });
  }

  /**
   * How far a drain of `node` is: its copies of referenced content (this disk's own holdings, or
   * what the member said at its last answer), and how many of those `copies` other disks that
   * are up (or in maintenance) hold already, so that it may drop them. A member is asked again
   * (at most every DRAIN_POLL_MS: the CLI's --wait asks every second); what it holds is known only
   * from an answer that recent, given when our namespace had its latest commit (else content it
   * holds that we do not know of yet would not count, and a drain could look done too early).
   */
  async drainStatus(node: string): Promise<DrainStatus> {
    const me = this.cluster.identity.nodeId;
    let members = this.members();
    if (!members.some((x) => x.nodeId === node)) throw new RpcError('not_found', `drain_status: ${node} is not a member`);
    const asked = Date.now();
    let fresh = false;
    if (node !== me) {
      const last = this.view.heldBy(node);
      if (!last || asked - last.at > DRAIN_POLL_MS) await this.loop.poll(node);
      const held = this.view.heldBy(node), rep = this.view.lastReport(node);
      fresh = !!held && !!rep && asked - held.at <= DRAIN_POLL_MS && (rep.own ?? null) === (this.cluster.sync.adopted(node) ?? null);
      members = this.members(); // the poll may have taken long
    }
    const m = members.find((x) => x.nodeId === node);
    if (!m) throw new RpcError('not_found', `drain_status: ${node} is not a member`);
    const flags = new Map(members.map((x) => [x.nodeId, x]));
    const live = (x: string) => {
      const f = flags.get(x);
      const st = f && this.view.state(x, f);
      return st === 'up' || st === 'maintenance';
    };
    const report = node === me ? null : this.view.heldBy(node);
    const held: Iterable<ContentId> | null = node === me ? this.holdings.ids() : fresh ? report!.ids : null;
    const copiesOf = this.copiesFor();
    let left = 0, bytesLeft = 0, ready = 0;
    for (const id of held ?? []) {
      const info = this.node.ns.tree.info(id);
      if (!info || info.length === 0) continue;
      left++;
      bytesLeft += info.length;
      const others = this.view.holdersOf(id).filter((x) => x !== node && live(x));
      if (node !== me && this.holdings.has(id) && live(me)) others.push(me);
      if (others.length >= copiesOf(id)) ready++;
    }
    return {
      nodeId: node, draining: m.draining, state: this.view.state(node, m), known: held !== null,
      reportedAt: report ? new Date(report.at).toISOString() : null, left, bytesLeft, ready,
    };
  }

  /** `delugefs whereis`: who holds the content of each path (whereis.ts). */
  where(paths: readonly string[], mount: string | null): Where[] {
    const swarm = this.swarm.swarm;
    return whereis({
      me: this.cluster.identity.nodeId, members: this.members(), view: this.view, mount,
      get: (p) => this.node.ns.tree.get(p), copiesFor: this.copiesFor(),
      local: (id) => {
        if (this.holdings.has(id)) return { complete: true };
        const st = swarm.stats(id);
        return st && !st.complete ? { complete: false, have: st.piecesHave, pieces: st.pieces } : null;
      },
    }, paths);
  }

  /**
   * Copies this disk is making (healing, placement, drains, repairs) and what waits: bytes left
   * and the rate they arrive at now (the engine's per-content rate, a few seconds' average), so
   * status can give an ETA. Planned copies count their whole size.
   */
  progress(): Progress {
    let left = 0, rate = 0;
    for (const [id, length] of this.fetching) {
      const st = this.swarm.swarm.stats(id);
      left += st ? (st.complete ? 0 : st.bytesLeft) : length; // not open yet: all of it
      rate += st?.downloadRate ?? 0;
    }
    left += this.queuedBytes;
    for (let i = this.plannedAt; i < this.planned.length; i++) left += this.planned[i]!.info.length;
    return { copying: this.fetching.size, waiting: this.queue.size + this.planned.length - this.plannedAt, bytesLeft: left, rate, etaSeconds: left === 0 ? 0 : rate > 0 ? Math.ceil(left / rate) : null };
  }

  /** Bytes per second this disk's engine receives and sends now (all content, readers too). */
  rates(): { receiving: number; sending: number } {
    const s = this.swarm.swarm.summary();
    return { receiving: s.downloadRate, sending: s.uploadRate };
  }

  /** What `delugefs status` judges (daemon/health.ts): the last round, the near-full mark, transfers. */
  summary(): { round: LoopStats | null; nearFull: number; fetching: number; queued: number } {
    return { round: this.loop.stats, nearFull: this.o.nearFull, fetching: this.fetching.size, queued: this.queue.size + this.planned.length - this.plannedAt };
  }

  /** `delugefs config ROOT [copies [N]]` and `delugefs maintenance ROOT NODE on|off`: cluster records, committed now. */
  private async config(p: ConfigParams, peer: PeerInfo): Promise<ConfigReply> {
    localOnly(peer, 'replication_config');
    const ns = this.node.ns;
    const me = this.cluster.identity.nodeId;
    if (p.dir !== undefined) {
      const path = normalize(p.dir);
      const now = dirSettings(ns.listRecords(DIR_COPIES_RECORD)).get(path) ?? 0;
      if (p.copies !== now) {
        await ns.setRecord(DIR_COPIES_RECORD + dirKey(path), encodeSetting({ path, copies: p.copies! }, me));
        await ns.commit();
        this.log.info('replication.dir_copies_set', { dir: path, copies: p.copies });
      }
    } else if (p.copies !== undefined) {
      const n = p.copies;
      if (n !== this.copies()) {
        await ns.setRecord(COPIES_RECORD, encodeSetting(n, me));
        await ns.commit();
        this.log.info('replication.copies_set', { copies: n });
      }
    }
    for (const [key, record] of [['maintenance', MAINTENANCE_RECORD], ['drain', DRAIN_RECORD]] as const) {
      const id = p[key];
      if (id === undefined) continue;
      if (!isNodeId(id) || !this.cluster.membership.get(id) || this.cluster.membership.isRevoked(id)) throw new RpcError('not_found', `${key}: ${id} is not a member`);
      if (p.on === undefined) throw new RpcError('malformed', `${key} needs "on": true or false`);
      if (p.on !== this.flag(record, id)) {
        await ns.setRecord(record + id, encodeSetting(p.on ? 1 : 0, me));
        await ns.commit();
        this.log.info(`replication.${key}_set`, { node: id, on: p.on });
      }
    }
    const c = decodeCopies(ns.getRecord(COPIES_RECORD));
    return {
      copies: this.copies(), copiesSetBy: c?.by ?? null, copiesSetAt: c ? new Date(c.at).toISOString() : null,
      maintenance: this.members().filter((m) => m.maintenance).map((m) => m.nodeId),
      draining: this.members().filter((m) => m.draining).map((m) => m.nodeId),
      dirs: [...dirSettings(ns.listRecords(DIR_COPIES_RECORD))].sort().map(([path, copies]) => ({ path, copies })),
    };
  }

  /** Takes copies of content the namespace references, while there is room; fetched in the background. */
  private async mirror(ids: ContentId[]): Promise<MirrorReply> {
    const out: MirrorReply = { accepted: [], declined: [] };
    let room = await this.room();
    for (const id of ids) {
      const info = this.node.ns.tree.info(id);
      if (!info) out.declined.push({ id, reason: 'unknown' });
      else if (this.holdings.has(id) || this.fetching.has(id) || this.queue.has(id)) out.accepted.push(id);
      else if (info.length > room) out.declined.push({ id, reason: 'full' });
      else if (this.queue.size >= this.o.queue) out.declined.push({ id, reason: 'busy' });
      else {
        room -= info.length;
        this.queue.set(id, info.length);
        this.queuedBytes += info.length;
        out.accepted.push(id);
      }
    }
    this.pump();
    return out;
  }

  /** The next content to fetch: members' requests first, then the loop's plan. */
  private next(): ContentId | undefined {
    const first = this.queue.entries().next().value;
    if (first) {
      const [id, bytes] = first;
      this.queue.delete(id);
      this.queuedBytes -= bytes;
      return id;
    }
    return this.planned[this.plannedAt++]?.id;
  }

  private pump(): void {
    while (!this.closed && this.fetching.size < this.o.concurrent && (this.queue.size || this.plannedAt < this.planned.length)) {
      const id = this.next()!;
      const info = this.node.ns.tree.info(id);
      if (!info || this.holdings.has(id) || this.fetching.has(id)) continue;
      this.fetching.set(id, info.length);
      this.log.info('replication.fetch', { id, bytes: info.length });
      // A copy no holder serves (gone since the plan) is given up, not waited on forever: at
      // least 1 MB/s, or its share of --heal-rate when that is less.
      const perMs = Math.min(1000, this.o.healRate > 0 ? this.o.healRate / this.o.concurrent / 1000 : 1000);
      const signal = AbortSignal.any([this.ac.signal, AbortSignal.timeout(Math.max(120_000, (2 * info.length) / perMs))]);
      // Small content over the member RPC (one round trip on a connection already open), else the swarm.
      // (DFS_NO_SMALL_COPY=1: every copy through the swarm, for A/B benchmarks.)
      const small = isSmall(info) && !process.env.DFS_NO_SMALL_COPY ? copySmall(this.smallDeps, id, info) : Promise.resolve(false);
      void small.then(async (rpc) => {
        if (!rpc) await this.swarm.swarm.fetch(id, info, signal, { background: true, from: this.holderAddresses(id) });
        return rpc;
      }).then(
        (rpc) => {
          this.log.info('replication.fetched', { id, via: rpc ? 'rpc' : 'swarm' });
          this.loop.schedule('plan', 1000);
        },
        (e) => { if (!this.closed) this.log.warn('replication.fetch_failed', { id, error: (e as Error).message }); },
      ).finally(() => {
        this.fetching.delete(id);
        this.pump();
      });
    }
  }

  private get smallDeps(): SmallCopyDeps {
    return { store: this.node.store, log: this.log, holders: (id) => this.view.reachableHolders(id), client: (n) => this.clients.get(n) };
  }

  /**
   * The swarm addresses (HOST:PORT) of the reachable disks said to hold `id`, from their member
   * records and discovery, as the swarm link adds them: a copy connects to those, not to every
   * member (empty when none is known: the swarm then asks everyone).
   */
  private holderAddresses(id: ContentId): string[] {
    const out = new Set<string>();
    for (const n of this.view.reachableHolders(id)) {
      const m = this.cluster.membership.get(n);
      const p = this.cluster.discovery.peers.get(n);
      if (p?.btPort) out.add(`${p.host}:${p.btPort}`);
      if (m) for (const a of swarmAddresses(m)) out.add(`${a.host}:${a.port}`);
    }
    return [...out];
  }

  async close(): Promise<void> {
    this.closed = true;
    for (const off of this.offs.splice(0)) off();
    if (this.audit) clearInterval(this.audit);
    this.loop.close();
    // Repairs under way are given up first: the scrub and fsck wait for theirs to end.
    this.ac.abort();
    await this.scrub.close();
    await this.fsck.close();
    this.node.keeper.gate = null;
    this.node.clusterSpace = null;
    this.node.setPlacer(null);
    this.node.setUsed(null);
    this.node.repairer = null;
    await this.cache.save();
    this.queue.clear();
    this.queuedBytes = 0;
    this.planned = [];
    this.plannedIds.clear();
    this.ac.abort();
    this.clients.close();
    this.holdings.close();
    await this.view.flush();
  }
}


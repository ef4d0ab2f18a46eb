// Replication on a running node. So far: what this disk holds (holdings.ts) and the replication
// RPC methods peers call on it (freespace, active_torrents, please_mirror,
// please_stop_mirroring, lock_content, unlock_content). The policy loop that places copies
// (placement.ts) and heals is the next step; until then no copy is ever dropped here.
import type { DelugeNode } from '../node/node.js';
import type { ClusterNode } from '../node/cluster-node.js';
import type { SwarmLink } from '../node/swarm-link.js';
import type { Logger } from '../util/log.js';
import type { ContentId } from '../content/metainfo.js';
import { serve } from '../daemon/methods.js';
import { Holdings } from './holdings.js';
import { NEAR_FULL } from './placement.js';
import { ACTIVE_TORRENTS, FREESPACE, LOCK_CONTENT, PLEASE_MIRROR, PLEASE_STOP_MIRRORING, UNLOCK_CONTENT, MirrorReply } from './methods.js';

export interface ReplicationOptions {
  /** Fill ratio from which this disk takes no new copies (default 0.85). */
  nearFull?: number;
  /** Mirror requests fetched at once; more wait in line, and beyond `queue` are declined. */
  concurrent?: number;
  queue?: number;
}

export class Replication {
  /** Waiting mirror requests, in arrival order (a Set: a peer's 1,000 ids are checked against it cheaply). */
  private readonly queue = new Set<ContentId>();
  private readonly fetching = new Map<ContentId, number>();
  private closed = false;
  private readonly ac = new AbortController();

  private constructor(
    readonly holdings: Holdings,
    private readonly node: DelugeNode,
    private readonly swarm: SwarmLink,
    private readonly log: Logger,
    private readonly o: Required<ReplicationOptions>,
  ) {}

  static async start(node: DelugeNode, cluster: ClusterNode, swarm: SwarmLink, log: Logger, o: ReplicationOptions = {}): Promise<Replication> {
    const holdings = new Holdings(node.store, swarm.swarm);
    await holdings.load();
    const r = new Replication(holdings, node, swarm, log.child({ c: 'replication' }), { nearFull: o.nearFull ?? NEAR_FULL, concurrent: o.concurrent ?? 2, queue: o.queue ?? 10_000 });
    r.register(cluster);
    return r;
  }

  /** Free, total and reserved bytes of this disk (reserved: copies being fetched). */
  async space(): Promise<{ total: number; free: number; available: number; reserved: number }> {
    const s = await this.node.store.space();
    let reserved = 0;
    for (const n of this.fetching.values()) reserved += n;
    return { total: s.total, free: s.free, available: s.available, reserved };
  }

  private register(cluster: ClusterNode): void {
    const rpc = cluster.rpc;
    const me = cluster.identity.nodeId;
    serve(rpc, FREESPACE, async () => ({ nodeId: me, ...(await this.space()) }));
    serve(rpc, ACTIVE_TORRENTS, (p) => this.holdings.page(p.after, p.limit));
    serve(rpc, PLEASE_MIRROR, async (p) => this.mirror(p.ids));
    // Copies go only where this node's own checks find enough others (the policy loop); until
    // that lands every copy is kept, and said so.
    serve(rpc, PLEASE_STOP_MIRRORING, (p): MirrorReply => ({ accepted: [], declined: p.ids.map((id) => ({ id, reason: 'kept' })) }));
    serve(rpc, LOCK_CONTENT, (p) => this.holdings.lock(p.ids, p.ms));
    serve(rpc, UNLOCK_CONTENT, (p) => { this.holdings.unlock(p.token); return null; });
  }

  /** Takes copies of content the namespace references, while there is room; fetched in the background. */
  private async mirror(ids: ContentId[]): Promise<MirrorReply> {
    const out: MirrorReply = { accepted: [], declined: [] };
    const s = await this.space();
    let room = s.available - s.reserved - (1 - this.o.nearFull) * s.total;
    for (const id of ids) {
      const info = this.node.ns.tree.info(id);
      if (!info) out.declined.push({ id, reason: 'unknown' });
      else if (this.holdings.has(id) || this.fetching.has(id) || this.queue.has(id)) out.accepted.push(id);
      else if (info.length > room) out.declined.push({ id, reason: 'full' });
      else if (this.queue.size >= this.o.queue) out.declined.push({ id, reason: 'busy' });
      else {
        room -= info.length;
        this.queue.add(id);
        out.accepted.push(id);
      }
    }
    this.pump();
    return out;
  }

  private pump(): void {
    while (!this.closed && this.fetching.size < this.o.concurrent && this.queue.size) {
      const id = this.queue.values().next().value!;
      this.queue.delete(id);
      const info = this.node.ns.tree.info(id);
      if (!info || this.holdings.has(id)) continue;
      this.fetching.set(id, info.length);
      this.log.info('replication.fetch', { id, bytes: info.length });
      void this.swarm.swarm.fetch(id, info, this.ac.signal).then(
        () => this.log.info('replication.fetched', { id }),
        (e) => { if (!this.closed) this.log.warn('replication.fetch_failed', { id, error: (e as Error).message }); },
      ).finally(() => {
        this.fetching.delete(id);
        this.pump();
      });
    }
  }

  async close(): Promise<void> {
    this.closed = true;
    this.queue.clear();
    this.ac.abort();
    this.holdings.close();
  }
}

// What the open dashboards are sent: every FEED_MS while at least one listens (nothing is
// gathered for nobody), each of status, peers, transfers and joins only when its JSON changed
// since the last send; joins also at once when the join list says it changed. Transfer rates
// are the swarm's byte counters differenced between two samples.
import type { ServerResponse } from 'node:http';
import type { Caller } from './methods.js';
import type { SseHub } from './sse.js';
import type { Logger } from '../util/log.js';
import { HEALTH } from '../daemon/health-method.js';
import { PEERS } from '../daemon/peers.js';
import { REPLICATION_STATUS } from '../replication/methods.js';
import type { JoinSource } from './joins.js';

export const FEED_MS = 2_000;

export interface Sample { at: number; downloaded: number; uploaded: number }

export interface Transfers {
  at: string;
  swarm: { connections: number; active: number; fetching: number; downloaded: number; uploaded: number; downloadRate: number; uploadRate: number };
  /** This disk's copies: held, being fetched, queued; of the last round: surplus dropped, kept as read cache. */
  replication: { held: number; fetching: number; queued: number; dropped: number; cached: number };
}

const n = (v: unknown): number => (typeof v === 'number' && Number.isFinite(v) && v >= 0 ? v : 0);

/** Bytes per second between two samples of the counters (0 for the first, or a counter that went back). */
export function rates(prev: Sample | null, cur: Sample): { downloadRate: number; uploadRate: number } {
  const dt = prev ? (cur.at - prev.at) / 1000 : 0;
  if (!prev || dt <= 0) return { downloadRate: 0, uploadRate: 0 };
  return { downloadRate: Math.max(0, Math.round((cur.downloaded - prev.downloaded) / dt)), uploadRate: Math.max(0, Math.round((cur.uploaded - prev.uploaded) / dt)) };
}

export class Feed {
  private timer: NodeJS.Timeout | null = null;
  private last = new Map<string, string>();
  private prev: Sample | null = null;
  private latest: Transfers | null = null;
  private busy = false;
  private readonly offJoins: (() => void) | undefined;

  constructor(private readonly o: { call: Caller; hub: SseHub; joins?: JoinSource; log: Logger; everyMs?: number }) {
    this.offJoins = o.joins?.onChange(() => this.push('joins', o.joins!.list()));
  }

  /** Replication and swarm counters now, with rates against the previous sample. */
  async transfers(): Promise<Transfers> {
    const r = (await this.o.call(REPLICATION_STATUS, null)) as Record<string, unknown>;
    const s = (r.swarm ?? {}) as Record<string, unknown>;
    const round = (r.round ?? {}) as Record<string, unknown>;
    const cur: Sample = { at: Date.now(), downloaded: n(s.downloaded), uploaded: n(s.uploaded) };
    // Samples closer than a second apart (a page's own fetch beside the feed) would make noisy rates.
    if (this.latest && this.prev && cur.at - this.prev.at < 1000) return this.latest;
    const rt = rates(this.prev, cur);
    this.prev = cur;
    this.latest = {
      at: new Date(cur.at).toISOString(),
      swarm: { connections: n(s.connections), active: n(s.active), fetching: n(s.fetching), downloaded: cur.downloaded, uploaded: cur.uploaded, ...rt },
      replication: { held: n(r.held), fetching: Array.isArray(r.fetching) ? r.fetching.length : 0, queued: n(r.queued), dropped: n(round.dropped), cached: n(round.cached) },
    };
    return this.latest;
  }

  /** A new client: what the others were sent last, to it alone; or, the first, everything now. */
  async welcome(res: ServerResponse): Promise<void> {
    if (this.timer && this.last.size) for (const [event, json] of this.last) this.o.hub.sendJson(event, json, res);
    else for (const [event, data] of await this.gather()) this.push(event, data);
    this.start();
  }

  private start(): void {
    this.timer ??= setInterval(() => void this.tick(), this.o.everyMs ?? 2_000);
    this.timer.unref();
  }

  private async gather(): Promise<[string, unknown][]> {
    const [status, peers, transfers] = await Promise.all([this.o.call(HEALTH, null), this.o.call(PEERS, null), this.transfers()]);
    return [['status', status], ['peers', peers], ['transfers', transfers], ['joins', this.o.joins?.list() ?? []]];
  }

  private async tick(): Promise<void> {
    if (this.o.hub.size === 0) {
      clearInterval(this.timer!);
      this.timer = null;
      this.last.clear(); // stale by the next listener's time
      return;
    }
    if (this.busy) return;
    this.busy = true;
    try {
      for (const [event, data] of await this.gather()) this.push(event, data);
    } catch (e) {
      this.o.log.warn('web.feed_failed', { error: (e as Error).message });
    } finally {
      this.busy = false;
    }
  }

  /** Sends `data` as `event` unless it is what was sent last. */
  private push(event: string, data: unknown): void {
    const text = JSON.stringify(data);
    if (this.last.get(event) === text) return;
    this.last.set(event, text);
    this.o.hub.send(event, data);
  }

  close(): void {
    if (this.timer) clearInterval(this.timer);
    this.offJoins?.();
  }
}

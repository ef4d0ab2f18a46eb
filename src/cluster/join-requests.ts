// Pending LAN join requests at a member (no token: a new node on the LAN asked with its key and
// waits for an operator's `delugefs approve ROOT CODE`). In memory only, bounded, and nothing in
// here grants anything: approve() hands the key to the same admission `delugefs authorize` uses
// (a signed member record that syncs to every member), and only that record lets the key in.
// The dashboard and the CLI reach it through list/approve/refuse/onChange.
import { EventEmitter } from 'node:events';
import { joinCode, normalizeCode } from './join-code.js';
import type { Log } from './log.js';

export interface PendingJoin {
  /** `ABCD-EFGH-JKMN` (join-code.ts), the same on the joiner's screen and every member it asked. */
  code: string;
  nodeId: string;
  /** What the joiner says its machine is called (not proven: shown, never trusted). */
  hostname: string;
  /** The address its request came from (`IP:PORT` of the SSH connection). */
  address: string;
  /** ms since the epoch. */
  since: number;
  /** ms since the epoch: gone then unless the joiner asks again (and never past since + maxAge). */
  expires: number;
}

export interface JoinLimits {
  /** Requests pending at once, in all. */
  maxPending: number;
  /** Pending at once from one IP address (so one machine cannot take all the places). */
  maxPerAddress: number;
  /** New requests (not re-polls) one IP address may make per `windowMs`. */
  newPerAddress: number;
  windowMs: number;
  /** A request not asked again for this long expires (the joiner polls every few seconds). */
  idleMs: number;
  /** A request expires this long after it was made, polled or not. */
  maxAgeMs: number;
}

export const DEFAULT_JOIN_LIMITS: JoinLimits = { maxPending: 16, maxPerAddress: 4, newPerAddress: 8, windowMs: 60_000, idleMs: 60_000, maxAgeMs: 15 * 60_000 };

export type JoinRefusal = 'refused' | 'expired' | 'busy' | 'rate_limited' | 'not_found' | 'ambiguous' | 'failed';

export class JoinRequestError extends Error {
  constructor(readonly code: JoinRefusal, message: string) {
    super(message);
  }
}

/** What the guest method hands in: the key is the one SSH authenticated, never one the caller named. */
export interface JoinAsk {
  publicKey: string;
  keyBlob: Buffer;
  nodeId: string;
  hostname: string;
  address: string;
  rootCommit: string;
}

interface Entry extends PendingJoin { publicKey: string; ip: string }

/** How long a refused or expired request's key keeps being told so (its joiner may still poll). */
const ENDED_KEEP = 256;

export class JoinRequests {
  private readonly pending = new Map<string, Entry>(); // by node id
  /** Node id → its approval under way (the member record being written). */
  private readonly approving = new Map<string, Promise<{ nodeId: string }>>();
  /** Node id → why and until when its requests end at once (refused, expired). */
  private readonly ended = new Map<string, { why: 'refused' | 'expired'; until: number }>();
  private readonly recent = new Map<string, number[]>(); // ip → times of its new requests
  private readonly events = new EventEmitter<{ change: [] }>();
  private timer?: NodeJS.Timeout;
  private readonly limits: JoinLimits;
  private readonly now: () => number;

  constructor(private readonly o: {
    /** Admits the key exactly as `delugefs authorize` does; its record is what lets the joiner in. */
    admit: (publicKey: string, hostname: string) => Promise<{ nodeId: string }>;
    limits?: Partial<JoinLimits>;
    now?: () => number;
    log?: Log;
  }) {
    // An option given as undefined keeps its default.
    this.limits = { ...DEFAULT_JOIN_LIMITS, ...Object.fromEntries(Object.entries(o.limits ?? {}).filter(([, v]) => v !== undefined)) };
    this.now = o.now ?? Date.now;
  }

  list(): PendingJoin[] {
    this.sweep();
    return [...this.pending.values()].sort((a, b) => a.since - b.since).map(({ code, nodeId, hostname, address, since, expires }) => ({ code, nodeId, hostname, address, since, expires }));
  }

  /** Called on every change of the list (a request, approval, refusal, expiry); returns the unsubscribe. */
  onChange(fn: () => void): () => void {
    this.events.on('change', fn);
    return () => void this.events.off('change', fn);
  }

  /** A joiner's request, or its re-poll (which keeps it alive). Throws JoinRequestError. */
  request(ask: JoinAsk): PendingJoin {
    this.sweep();
    const t = this.now();
    const end = this.ended.get(ask.nodeId);
    if (end && end.until > t) {
      throw new JoinRequestError(end.why, end.why === 'refused' ? 'the join request was refused by an operator of this cluster' : 'the join request expired before an operator approved it; start the node again to ask again');
    }
    const l = this.limits;
    let e = this.pending.get(ask.nodeId);
    if (e) {
      e.expires = Math.min(t + l.idleMs, e.since + l.maxAgeMs);
      // Where it polls from now is shown; its place in the per-address count stays with the
      // address it first asked from (moving re-polls elsewhere would free places for more).
      e.address = ask.address;
      return this.public(e);
    }
    const ip = ipOf(ask.address);
    const times = (this.recent.get(ip) ?? []).filter((x) => x > t - l.windowMs);
    if (times.length >= l.newPerAddress) throw this.refusedNew('rate_limited', ask, `more than ${l.newPerAddress} join requests from ${ip} in ${l.windowMs / 1000} s; wait and try again`);
    if (this.pending.size >= l.maxPending) throw this.refusedNew('busy', ask, `${l.maxPending} join requests are already waiting at this member; try again later`);
    if ([...this.pending.values()].filter((x) => x.ip === ip).length >= l.maxPerAddress) throw this.refusedNew('busy', ask, `${l.maxPerAddress} join requests from ${ip} are already waiting; try again later`);
    times.push(t);
    this.recent.set(ip, times);
    if (this.recent.size > 1024) for (const [k, v] of this.recent) if (!v.some((x) => x > t - l.windowMs)) this.recent.delete(k);
    e = {
      code: joinCode(ask.keyBlob, ask.rootCommit), nodeId: ask.nodeId, hostname: ask.hostname, address: ask.address, ip,
      since: t, expires: Math.min(t + l.idleMs, t + l.maxAgeMs), publicKey: ask.publicKey,
    };
    this.pending.set(ask.nodeId, e);
    this.o.log?.('join.request', { nodeId: e.nodeId, hostname: e.hostname, code: e.code, address: e.address, hint: `approve with: delugefs approve ROOT ${e.code}` }, 'warn');
    this.changed();
    return this.public(e);
  }

  /**
   * Admits the request with this code (exactly as `authorize`); unknown, expired or ambiguous codes
   * throw. While the record is written the request is being approved: a second approve gets the
   * same answer and a refuse fails (the operator must not be told "refused" of a key let in).
   */
  async approve(code: string): Promise<{ nodeId: string }> {
    const e = this.find(code);
    const under = this.approving.get(e.nodeId);
    if (under) return under;
    const p = (async () => {
      let r: { nodeId: string };
      try {
        r = await this.o.admit(e.publicKey, e.hostname);
      } catch (err) {
        throw new JoinRequestError('failed', `admitting ${e.nodeId} failed: ${(err as Error).message}`);
      }
      // Its member record is written: the next poll (here, or at any member once synced) answers admitted.
      if (this.pending.get(e.nodeId) === e) this.pending.delete(e.nodeId);
      this.o.log?.('join.approved', { nodeId: e.nodeId, hostname: e.hostname, code: e.code, address: e.address });
      this.changed();
      return { nodeId: r.nodeId };
    })().finally(() => this.approving.delete(e.nodeId));
    this.approving.set(e.nodeId, p);
    return p;
  }

  /** Refuses the request with this code: its joiner is told so, and its key's requests here end at once for maxAge. */
  refuse(code: string): void {
    const e = this.find(code);
    if (this.approving.has(e.nodeId)) throw new JoinRequestError('failed', `the request ${e.code} of ${e.nodeId} is being approved; remove the node with "delugefs remove-node" if it must not join`);
    this.pending.delete(e.nodeId);
    this.end(e.nodeId, 'refused', this.now() + this.limits.maxAgeMs);
    this.o.log?.('join.refused', { nodeId: e.nodeId, hostname: e.hostname, code: e.code, address: e.address }, 'warn');
    this.changed();
  }

  /** The key became a member by other means (authorize, a record synced from another member). */
  admitted(nodeId: string): void {
    if (this.pending.delete(nodeId)) this.changed();
  }

  close(): void {
    clearTimeout(this.timer);
    this.timer = undefined;
    this.events.removeAllListeners();
  }

  private find(typed: string): Entry {
    this.sweep();
    const code = normalizeCode(typed);
    if (!code) throw new JoinRequestError('not_found', `"${typed.slice(0, 40)}" is not a join code (12 characters like ABCD-EFGH-JKMN, as the new node printed it)`);
    const hits = [...this.pending.values()].filter((e) => e.code === code);
    if (!hits.length) throw new JoinRequestError('not_found', `no pending join request has the code ${code} (it may have expired: requests last ${this.limits.idleMs / 1000} s after the new node's last poll); "delugefs joins ROOT" lists them`);
    // 60 bits: two keys sharing a code is a forgery attempt far likelier than chance; act on neither.
    if (hits.length > 1) throw new JoinRequestError('ambiguous', `${hits.length} pending requests share the code ${code} (${hits.map((h) => `${h.nodeId} on ${h.hostname}`).join(', ')}); refuse them and have the right machine ask again, or use "delugefs authorize" with its key`);
    return hits[0]!;
  }

  private refusedNew(code: JoinRefusal, ask: JoinAsk, message: string): JoinRequestError {
    // A flood is one line per reason every 5 s (with how many were not logged), as ssh-limits' refusals.
    const t = this.now();
    const last = this.refusalLog.get(code);
    if (last && t - last.at < 5000) last.suppressed++;
    else {
      this.o.log?.('join.request_refused', { nodeId: ask.nodeId, address: ask.address, reason: code, ...(last?.suppressed ? { suppressed: last.suppressed } : {}) }, 'warn');
      this.refusalLog.set(code, { at: t, suppressed: 0 });
    }
    return new JoinRequestError(code, message);
  }
  private readonly refusalLog = new Map<JoinRefusal, { at: number; suppressed: number }>();

  private end(nodeId: string, why: 'refused' | 'expired', until: number): void {
    this.ended.delete(nodeId);
    this.ended.set(nodeId, { why, until });
    while (this.ended.size > ENDED_KEEP) this.ended.delete(this.ended.keys().next().value!);
  }

  /** Drops what expired (and says so), then sets the timer for the next expiry. */
  private sweep(): void {
    const t = this.now();
    let gone = false;
    for (const e of [...this.pending.values()]) {
      if (e.expires > t) continue;
      this.pending.delete(e.nodeId);
      // A joiner that outlived maxAge while polling is told it expired, for as long as it would
      // poll; one that went away (idle) may simply ask again.
      if (e.expires >= e.since + this.limits.maxAgeMs) this.end(e.nodeId, 'expired', t + this.limits.idleMs);
      this.o.log?.('join.expired', { nodeId: e.nodeId, hostname: e.hostname, code: e.code, address: e.address });
      gone = true;
    }
    for (const [id, x] of this.ended) if (x.until <= t) this.ended.delete(id);
    if (gone) this.changed(false);
    this.schedule();
  }

  private schedule(): void {
    clearTimeout(this.timer);
    this.timer = undefined;
    if (!this.pending.size) return;
    const next = Math.min(...[...this.pending.values()].map((e) => e.expires));
    this.timer = setTimeout(() => this.sweep(), Math.max(0, next - this.now()) + 10);
    this.timer.unref();
  }

  private changed(reschedule = true): void {
    if (reschedule) this.schedule();
    this.events.emit('change');
  }

  private public(e: Entry): PendingJoin {
    return { code: e.code, nodeId: e.nodeId, hostname: e.hostname, address: e.address, since: e.since, expires: e.expires };
  }
}

/** The IP of an `IP:PORT` (IPv6 too: the port follows the last colon). */
function ipOf(address: string): string {
  const i = address.lastIndexOf(':');
  return i > 0 ? address.slice(0, i) : address;
}

// Admission budgets of the SSH server, so nobody can exhaust it: every TCP connection takes a slot
// in one of three pools. Pre-auth (everyone until authenticated: handshake + auth within a few
// seconds, capped per address and in total; when full, a connection of the busiest address
// prefix is evicted: the one that sent least, then the longest silent), guests (non-members for
// `join`: few, per address, short-lived, one or two channels) and members (their own generous
// caps). A guest never takes a member's slot, so a member connects while the guest pool is full.
// Modelled on OpenSSH's MaxStartups / PerSourceMaxStartups / PerSourceNetBlockSize / LoginGraceTime.
import { setMaxListeners } from 'node:events';
import type { Socket } from 'node:net';
import type { Log, LogFields, LogLevel } from './log.js';

export interface SshLimits {
  /** TCP accept to authenticated, for everyone (members too). */
  preauthTimeoutMs: number;
  /** TCP accept to the end of a guest's connection: auth and its `join` call must fit in it. */
  guestTimeoutMs: number;
  maxPreauth: number;
  maxPreauthPerAddress: number;
  maxGuests: number;
  maxGuestsPerAddress: number;
  /** Open channels (sessions) per guest connection. */
  guestChannels: number;
  /** Bytes of RPC input one guest request may send (a join is a token of at most 4 KiB). */
  guestMaxInput: number;
  maxMembers: number;
  maxMemberConnectionsPerNode: number;
  memberChannels: number;
  /** Bytes of RPC input buffered at once for all members' requests together. */
  memberInputBudget: number;
}

export const DEFAULT_LIMITS: SshLimits = {
  preauthTimeoutMs: 5_000,
  // A join answers once its admission is committed, which waits for the view being made: with
  // 10+ nodes joining a busy cluster on 2 cores that took more than 10 s ("rpc join: empty reply").
  guestTimeoutMs: 30_000,
  maxPreauth: 64,
  maxPreauthPerAddress: 8,
  maxGuests: 16,
  maxGuestsPerAddress: 2,
  guestChannels: 2,
  guestMaxInput: 16 << 10,
  maxMembers: 512,
  maxMemberConnectionsPerNode: 32,
  memberChannels: 64,
  memberInputBudget: 64 << 20,
};

export type SlotKind = 'preauth' | 'guest' | 'member';

/** Bytes after which connections count as equally far along (a member's handshake sends ~2-3 KiB before auth). */
const PROGRESS_CAP = 2048;

/** The eviction unit of an address: its /24 (IPv4, also IPv4-mapped) or its /64 (IPv6). */
export function prefixOf(ip: string): string {
  const v4 = /^(?:::ffff:)?(\d+)\.(\d+)\.(\d+)\.\d+$/i.exec(ip);
  if (v4) return `${v4[1]}.${v4[2]}.${v4[3]}`;
  if (!ip.includes(':')) return ip;
  // Expand "::" to get the first four groups.
  const [head, tail = ''] = ip.split('::');
  const h = head ? head.split(':') : [];
  const t = tail ? tail.split(':') : [];
  const groups = ip.includes('::') ? [...h, ...Array(Math.max(0, 8 - h.length - t.length)).fill('0'), ...t] : h;
  return groups.slice(0, 4).map((g) => g.toLowerCase().replace(/^0+(?=.)/, '')).join(':');
}

export interface Slot {
  /** The client's IP address (the unit of the per-address caps). */
  ip: string;
  /** `ip:port`, unique per connection. */
  address: string;
  kind: SlotKind;
  nodeId?: string;
  socket: Socket;
  since: number;
  /** When it last sent us something, and how much it has sent: eviction takes the least progressed, then the longest silent. */
  active: number;
  received: number;
  /** Its counts were taken back (release runs once per slot, whatever the address map holds). */
  released?: boolean;
  channels: number;
  /** Aborted when the connection is dropped: kills git children, aborts RPC handlers. */
  abort: AbortController;
  timer?: NodeJS.Timeout;
  dropped: boolean;
  /** Stops watching its activity (it left the pre-auth pool). */
  untrack?: () => void;
}

/** Bytes in flight against a cap (RPC input buffered until EOF). */
export class ByteBudget {
  private used = 0;
  constructor(readonly max: number) {}
  take(n: number): boolean {
    if (this.used + n > this.max) return false;
    this.used += n;
    return true;
  }
  give(n: number): void {
    this.used = Math.max(0, this.used - n);
  }
  get inUse(): number {
    return this.used;
  }
}

/**
 * One line per refusal reason at most every `everyMs`, with the count suppressed since the
 * last line: a flood must not become a flood of log lines.
 */
export function rateLimitedLog(log: Log, everyMs = 5_000): Log {
  const last = new Map<string, { at: number; suppressed: number }>();
  return (event: string, fields: LogFields = {}, level?: LogLevel) => {
    const key = `${event} ${String(fields.reason ?? '')}`;
    const now = Date.now();
    const s = last.get(key);
    if (s && now - s.at < everyMs) {
      s.suppressed++;
      return;
    }
    last.set(key, { at: now, suppressed: 0 });
    log(event, s?.suppressed ? { ...fields, suppressed: s.suppressed } : fields, level);
  };
}

export class Admission {
  private readonly slots = new Map<string, Slot>();
  private readonly count: Record<SlotKind, number> = { preauth: 0, guest: 0, member: 0 };
  private readonly perIp = { preauth: new Map<string, number>(), guest: new Map<string, number>() };
  /** Pre-auth slots per address prefix (/24 of IPv4, /64 of IPv6): the unit of eviction. */
  private readonly perPrefix = new Map<string, number>();
  private readonly perNode = new Map<string, number>();
  readonly guestInput: ByteBudget;
  readonly memberInput: ByteBudget;
  /** Refusals: rate-limited `limit_refused` lines. */
  readonly refused: Log;

  constructor(readonly limits: SshLimits, log: Log) {
    this.refused = rateLimitedLog(log);
    this.guestInput = new ByteBudget(limits.maxGuests * limits.guestChannels * limits.guestMaxInput);
    this.memberInput = new ByteBudget(limits.memberInputBudget);
  }

  /** A new TCP connection: its pre-auth slot, or null (refused, socket destroyed). */
  accept(socket: Socket): Slot | null {
    const ip = socket.remoteAddress ?? '?';
    const address = `${ip}:${socket.remotePort}`;
    const l = this.limits;
    if ((this.perIp.preauth.get(ip) ?? 0) >= l.maxPreauthPerAddress) {
      this.refuse(socket, { reason: 'preauth_per_address', address, limit: l.maxPreauthPerAddress });
      return null;
    }
    if (this.count.preauth >= l.maxPreauth) {
      // Full: a connection of the busiest other address prefix goes (see evictable). By prefix
      // and progress first, because a flood churns the pool faster than a member's handshake
      // round trips on a loaded node: "longest silent" alone evicted a member waiting on our
      // reply to make room for the flood's newest socket. A newcomer from a prefix at least as
      // busy is refused instead, so one prefix never displaces another of its size.
      const victim = this.evictable(prefixOf(ip));
      if (!victim) {
        this.refuse(socket, { reason: 'preauth_total', address, limit: l.maxPreauth });
        return null;
      }
      this.refused('limit_refused', { reason: 'preauth_evicted', address: victim.address, for: address, limit: l.maxPreauth }, 'warn');
      this.destroy(victim);
    }
    const slot: Slot = { ip, address, kind: 'preauth', socket, since: Date.now(), active: Date.now(), received: 0, channels: 0, abort: new AbortController(), dropped: false };
    setMaxListeners(l.memberChannels + 16, slot.abort.signal); // one listener per open channel
    // A reconnect from the same ip:port can arrive before the old socket's close: the old slot
    // goes now (its counts with it), or its counts would never be taken back.
    const old = this.slots.get(address);
    if (old) this.destroy(old);
    this.slots.set(address, slot);
    this.add('preauth', slot, 1);
    slot.timer = setTimeout(() => {
      this.refused('limit_refused', { reason: 'preauth_timeout', address, limit: l.preauthTimeoutMs }, 'warn');
      this.destroy(slot);
    }, l.preauthTimeoutMs);
    slot.timer.unref();
    socket.once('close', () => this.release(slot));
    const onData = (d: Buffer) => { slot.active = Date.now(); slot.received += d.length; };
    socket.on('data', onData);
    slot.untrack = () => socket.off('data', onData);
    return slot;
  }

  /** The slot of a connection, by `ip:port` (what ssh2 reports as the client's address). */
  get(ip: string | undefined, port: number | undefined): Slot | undefined {
    return this.slots.get(`${ip}:${port}`);
  }

  /**
   * Moves an authenticating connection into the guest or member pool; the refusal reason when
   * that pool is full (the authentication is then refused).
   */
  promote(slot: Slot, kind: 'guest' | 'member', nodeId: string): string | null {
    if (slot.kind !== 'preauth') return slot.kind === kind && slot.nodeId === nodeId ? null : 'already authenticated as another key';
    const l = this.limits;
    let reason: string | undefined;
    let limit = 0;
    if (kind === 'guest') {
      if (this.count.guest >= l.maxGuests) [reason, limit] = ['guests_total', l.maxGuests];
      else if ((this.perIp.guest.get(slot.ip) ?? 0) >= l.maxGuestsPerAddress) [reason, limit] = ['guests_per_address', l.maxGuestsPerAddress];
    } else {
      if (this.count.member >= l.maxMembers) [reason, limit] = ['members_total', l.maxMembers];
      else if ((this.perNode.get(nodeId) ?? 0) >= l.maxMemberConnectionsPerNode) [reason, limit] = ['member_connections', l.maxMemberConnectionsPerNode];
    }
    if (reason) {
      this.refused('limit_refused', { reason, address: slot.address, nodeId, limit }, 'warn');
      return reason;
    }
    this.add('preauth', slot, -1);
    slot.untrack?.();
    slot.kind = kind;
    slot.nodeId = nodeId;
    this.add(kind, slot, 1);
    clearTimeout(slot.timer);
    slot.timer = undefined;
    if (kind === 'guest') {
      const left = Math.max(0, slot.since + l.guestTimeoutMs - Date.now());
      slot.timer = setTimeout(() => {
        this.refused('limit_refused', { reason: 'guest_timeout', address: slot.address, nodeId, limit: l.guestTimeoutMs }, 'warn');
        this.destroy(slot);
      }, left);
      slot.timer.unref();
    }
    return null;
  }

  /** A channel (session) opens; false when the connection has as many as it may. */
  openChannel(slot: Slot): boolean {
    const max = slot.kind === 'member' ? this.limits.memberChannels : slot.kind === 'guest' ? this.limits.guestChannels : 0;
    if (slot.dropped || slot.channels >= max) {
      this.refused('limit_refused', { reason: `${slot.kind}_channels`, address: slot.address, nodeId: slot.nodeId, limit: max }, 'warn');
      return false;
    }
    slot.channels++;
    return true;
  }

  closeChannel(slot: Slot): void {
    slot.channels = Math.max(0, slot.channels - 1);
  }

  /** Connections authenticated (or authenticating) as `nodeId`. */
  ofNode(nodeId: string): Slot[] {
    return [...this.slots.values()].filter((s) => s.nodeId === nodeId);
  }

  all(): Slot[] {
    return [...this.slots.values()];
  }

  /** Ends a connection now: its commands are aborted and the socket destroyed. */
  destroy(slot: Slot): void {
    slot.dropped = true;
    slot.abort.abort();
    slot.socket.destroy();
    this.release(slot);
  }

  stats(): Record<SlotKind, number> {
    return { ...this.count };
  }

  private release(slot: Slot): void {
    if (slot.released) return;
    slot.released = true;
    if (this.slots.get(slot.address) === slot) this.slots.delete(slot.address);
    clearTimeout(slot.timer);
    this.add(slot.kind, slot, -1);
    slot.abort.abort();
  }

  private add(kind: SlotKind, slot: Slot, d: 1 | -1): void {
    this.count[kind] += d;
    if (kind === 'preauth') {
      const k = prefixOf(slot.ip);
      const n = (this.perPrefix.get(k) ?? 0) + d;
      if (n > 0) this.perPrefix.set(k, n);
      else this.perPrefix.delete(k);
    }
    const m = kind === 'member' ? this.perNode : this.perIp[kind];
    const k = kind === 'member' ? slot.nodeId! : slot.ip;
    const n = (m.get(k) ?? 0) + d;
    if (n > 0) m.set(k, n);
    else m.delete(k);
  }

  /**
   * The pre-auth slot to evict for a newcomer from address prefix `prefix`, or undefined when it
   * should be refused: one of the busiest other prefix (an attacker's many addresses in one /64
   * or /24 are one), the one that has sent least (a socket that never sent a banner before a
   * handshake under way), then the longest silent. A newcomer whose prefix is as busy is refused.
   */
  private evictable(prefix: string): Slot | undefined {
    const held = this.perPrefix;
    let best: Slot | undefined;
    let bestHeld = 0;
    const progress = (x: Slot) => Math.min(x.received, PROGRESS_CAP);
    for (const x of this.slots.values()) {
      if (x.kind !== 'preauth') continue; // released slots are not in the map
      const p = prefixOf(x.ip);
      if (p === prefix) continue;
      const n = held.get(p) ?? 0;
      const better = !best || n > bestHeld || (n === bestHeld && (progress(x) < progress(best) || (progress(x) === progress(best) && x.active < best.active)));
      if (better) [best, bestHeld] = [x, n];
    }
    return best && bestHeld > (held.get(prefix) ?? 0) ? best : undefined;
  }

  private refuse(socket: Socket, fields: LogFields): void {
    this.refused('limit_refused', fields, 'warn');
    socket.destroy();
  }
}

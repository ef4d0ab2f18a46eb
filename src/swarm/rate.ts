// A token bucket for background fetching (replication's copies: healing, placement, drains), so
// they take at most a set share of this node's download and leave the rest to readers. Requests
// spend tokens when they are sent (what they ask for arrives about one round trip later); a
// bucket holds a quarter second of the rate, so a pause never turns into a burst.

/** Slowest cap taken: below it a single piece would take minutes. */
export const MIN_RATE = 64 * 1024;

export class RateLimiter {
  private tokens: number;
  private at = performance.now(); // monotonic: a clock stepped back must not drain the bucket
  private readonly waiting = new Set<() => void>();
  private timer: NodeJS.Timeout | null = null;

  /** @param rate bytes per second (at least MIN_RATE) */
  constructor(readonly rate: number, private readonly burst = Math.max(256 * 1024, rate / 4)) {
    if (!(rate >= MIN_RATE)) throw new RangeError(`a background rate of ${rate} B/s: at least ${MIN_RATE}`);
    this.tokens = this.burst;
  }

  private refill(): void {
    const now = performance.now();
    this.tokens = Math.min(this.burst, this.tokens + (Math.max(0, now - this.at) / 1000) * this.rate);
    this.at = now;
  }

  /** Bytes that may be asked for now (whole `unit`s); `spend` them once asked. */
  available(unit: number): number {
    this.refill();
    return Math.max(0, Math.floor(this.tokens / unit)) * unit;
  }

  spend(bytes: number): void {
    this.tokens -= bytes;
    this.spent += bytes;
  }

  /** Bytes asked for under this cap so far. */
  spent = 0;

  /** Calls `fn` once when tokens are back (each waiting fill at most once). */
  whenAvailable(fn: () => void): void {
    this.waiting.add(fn);
    if (this.timer) return;
    const ms = Math.max(10, Math.ceil(((Math.min(this.burst, 64 * 1024) - this.tokens) / this.rate) * 1000));
    this.timer = setTimeout(() => {
      this.timer = null;
      const fns = [...this.waiting];
      this.waiting.clear();
      for (const f of fns) f();
    }, ms);
    this.timer.unref();
  }

  close(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    this.waiting.clear();
  }
}

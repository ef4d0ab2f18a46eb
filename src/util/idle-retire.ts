// A worker pool's threads cost their process ~6 MiB each while they wait (an isolate and its
// heap): a pool that has had nothing to do for a while lets them go and starts them again on
// demand.

/** Calls `retire` once `idle()` was the last word for `ms`; `busy()` stops the clock. */
export class IdleRetire {
  private timer: NodeJS.Timeout | null = null;

  constructor(private readonly ms: number, private readonly retire: () => void) {}

  busy(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
  }

  idle(): void {
    this.busy();
    this.timer = setTimeout(() => {
      this.timer = null;
      this.retire();
    }, this.ms);
    this.timer.unref(); // never what keeps a process alive
  }
}

/** How long an idle worker pool keeps its threads (DFS_WORKER_IDLE_MS for tests). */
export function workerIdleMs(): number {
  const v = Number(process.env.DFS_WORKER_IDLE_MS);
  return Number.isFinite(v) && v > 0 ? v : 30_000;
}

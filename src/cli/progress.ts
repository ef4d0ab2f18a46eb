// A progress line for long commands: redrawn in place on a terminal (stderr, so --json output on
// stdout stays clean), silent when stderr is not a terminal.
const WIDTH = 30;

export class Progress {
  private readonly tty = !!process.stderr.isTTY;
  private drawn = false;

  constructor(private readonly label: string) {}

  /** `done` of `total` (a bar when total > 0), and a note after it. */
  update(done: number, total: number, note = ''): void {
    if (!this.tty) return;
    const f = total > 0 ? Math.min(1, Math.max(0, done / total)) : 0;
    const n = Math.round(f * WIDTH);
    const bar = total > 0 ? `[${'#'.repeat(n)}${'.'.repeat(WIDTH - n)}] ${Math.floor(f * 100)}% ` : '';
    process.stderr.write(`\r\x1b[K${this.label} ${bar}${note}`);
    this.drawn = true;
  }

  /** Ends the line (the next output starts on a fresh one). */
  end(): void {
    if (this.drawn) process.stderr.write('\n');
    this.drawn = false;
  }
}

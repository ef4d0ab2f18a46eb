// Write-behind for one handle's temp file: FUSE writes (128 KiB each) are copied into large
// contiguous chunks and written in the background, so a write returns after a memcpy. Anything
// that needs the file on disk (read, truncate, hash, close) drains first; a failed write (e.g.
// ENOSPC) is reported by the next write or the drain, i.e. at close at the latest.
import { fdWrite } from './open-file.js';

const CHUNK = 4 * 1024 * 1024;
const MAX_PENDING = 32 * 1024 * 1024;

interface Chunk { pos: number; buf: Buffer; used: number }

export class WriteBehind {
  private staging: Chunk | null = null;
  private queue: Chunk[] = [];
  private pending = 0;
  private running: Promise<void> | null = null;
  private error: Error | null = null;
  private waiters: (() => void)[] = [];

  /** Called with the end of each chunk written, in order (for hashing while writing). */
  constructor(private readonly fd: number, private readonly onWritten: (pos: number, end: number) => void = () => {}) {}

  async write(data: Buffer, len: number, pos: number): Promise<void> {
    if (this.error) throw this.error;
    let s = this.staging;
    if (!s || s.pos + s.used !== pos || s.used + len > s.buf.length) {
      if (s) this.seal();
      s = this.staging = { pos, buf: Buffer.allocUnsafe(Math.max(CHUNK, len)), used: 0 };
    }
    data.copy(s.buf, s.used, 0, len);
    s.used += len;
    this.pending += len;
    if (s.used === s.buf.length) this.seal();
    while (this.pending > MAX_PENDING && !this.error) await new Promise<void>((r) => this.waiters.push(r));
  }

  private seal(): void {
    if (!this.staging) return;
    this.queue.push(this.staging);
    this.staging = null;
    this.running ??= this.pump();
  }

  private async pump(): Promise<void> {
    while (this.queue.length) {
      const c = this.queue.shift()!;
      try {
        let done = 0;
        while (done < c.used) done += (await fdWrite(this.fd, c.buf, done, c.used - done, c.pos + done)).bytesWritten;
        this.onWritten(c.pos, c.pos + c.used);
      } catch (e) {
        this.error ??= e as Error;
        for (const q of this.queue) this.pending -= q.used;
        this.queue = [];
      }
      this.pending -= c.used;
      for (const w of this.waiters.splice(0)) w();
    }
    this.running = null;
  }

  /** Everything written so far is in the file; throws the first write error, if any. */
  async drain(): Promise<void> {
    this.seal();
    while (this.running) await this.running;
    for (const w of this.waiters.splice(0)) w();
    if (this.error) throw this.error;
  }
}

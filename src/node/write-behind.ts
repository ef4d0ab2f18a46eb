// Write-behind for one handle's temp file, so a FUSE write returns before the disk write.
// Small writes are copied into large contiguous chunks; large ones (a FUSE layer that lends its
// buffer through `keep`) are queued as they are, no copy, and the buffer is handed back once
// written. Contiguous chunks go out in one writev. Anything that needs the file on disk (read,
// truncate, hash, close) drains first; a failed write (e.g. ENOSPC) is reported by the next
// write or the drain, i.e. at close at the latest.
import type { Keep } from './fs-api.js';
import { fdWrite, fdWritev } from './open-file.js';

const CHUNK = 4 * 1024 * 1024;
/** A staging buffer starts this small and doubles up to CHUNK while small writes keep coming. */
const FIRST_STAGING = 64 * 1024;
const MAX_PENDING = 32 * 1024 * 1024;
/** Writes at least this large are queued without a copy when the caller lends the buffer. */
const LEND_MIN = 64 * 1024;
/** At most this many chunks per writev (IOV_MAX is far larger; this bounds one syscall). */
const BATCH = 16;

interface Chunk { pos: number; buf: Buffer; used: number; lent?: () => void }


export class WriteBehind {
  private staging: Chunk | null = null;
  /** End of the last lent chunk: a small write right after it (the kernel's tail of an unaligned
   * large write) is lent as well rather than given a staging buffer of its own. */
  private lentEnd = -1;
  /** A written staging buffer, reused: fresh pages cost a fault each. */
  private spare: Buffer | null = null;
  private queue: Chunk[] = [];
  private pending = 0;
  private running: Promise<void> | null = null;
  private error: Error | null = null;
  private waiters: (() => void)[] = [];

  /** Called with the end of each run written, in order (for hashing while writing). */
  constructor(private readonly fd: number, private readonly onWritten: (pos: number, end: number) => void = () => {}) {}

  async write(data: Buffer, len: number, pos: number, keep?: Keep): Promise<void> {
    if (this.error) throw this.error;
    if (keep && (len >= LEND_MIN || pos === this.lentEnd)) {
      this.seal();
      this.lentEnd = pos + len;
      const c: Chunk = { pos, buf: data, used: len };
      keep(new Promise<void>((r) => (c.lent = r)));
      this.enqueue(c);
    } else {
      let s = this.staging;
      if (!s || s.pos + s.used !== pos || s.used + len > s.buf.length) {
        if (s) this.seal();
        // Contiguous small writes: each buffer twice the last, up to CHUNK.
        const size = Math.max(len, s && s.pos + s.used === pos ? Math.min(CHUNK, s.buf.length * 2) : FIRST_STAGING);
        const spare = this.spare && this.spare.length >= size ? this.spare : null;
        this.spare = null;
        s = this.staging = { pos, buf: spare ?? Buffer.allocUnsafe(size), used: 0 };
      }
      this.lentEnd = -1;
      data.copy(s.buf, s.used, 0, len);
      s.used += len;
      this.pending += len;
      if (s.used === s.buf.length) this.seal();
    }
    while (this.pending > MAX_PENDING && !this.error) await new Promise<void>((r) => this.waiters.push(r));
  }

  private enqueue(c: Chunk): void {
    this.pending += c.used;
    this.queue.push(c);
    this.running ??= this.pump();
  }

  private seal(): void {
    const s = this.staging;
    if (!s) return;
    this.staging = null;
    this.pending -= s.used; // enqueue counts it again
    this.enqueue(s);
  }

  private async pump(): Promise<void> {
    while (this.queue.length) {
      // A run of contiguous chunks, written with one call.
      const run = [this.queue.shift()!];
      while (run.length < BATCH && this.queue.length && this.queue[0].pos === run[run.length - 1].pos + run[run.length - 1].used) run.push(this.queue.shift()!);
      const pos = run[0].pos;
      const total = run.reduce((n, c) => n + c.used, 0);
      try {
        if (!this.error) {
          await this.writeRun(run, pos, total);
          this.onWritten(pos, pos + total);
        }
      } catch (e) {
        this.error ??= e as Error;
        for (const q of this.queue.splice(0)) {
          this.pending -= q.used;
          q.lent?.();
        }
      }
      for (const c of run) {
        this.pending -= c.used;
        if (c.lent) c.lent();
        else this.spare = c.buf;
      }
      for (const w of this.waiters.splice(0)) w();
    }
    this.running = null;
  }

  private async writeRun(run: Chunk[], pos: number, total: number): Promise<void> {
    const bufs = run.map((c) => (c.used === c.buf.length ? c.buf : c.buf.subarray(0, c.used)));
    let done = bufs.length === 1
      ? (await fdWrite(this.fd, bufs[0], 0, total, pos)).bytesWritten
      : (await fdWritev(this.fd, bufs, pos)).bytesWritten;
    // Short write (rare): the rest piece by piece.
    if (done < total) {
      const all = Buffer.concat(bufs);
      while (done < total) done += (await fdWrite(this.fd, all, done, total - done, pos + done)).bytesWritten;
    }
  }

  /** The first write error: bytes already acknowledged are not in the file. */
  get failed(): Error | null {
    return this.error;
  }

  /** Everything written so far is in the file; throws the first write error, if any. */
  async drain(): Promise<void> {
    this.seal();
    while (this.running) await this.running;
    for (const w of this.waiters.splice(0)) w();
    if (this.error) throw this.error;
  }
}

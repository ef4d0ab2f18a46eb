// Writes to a TLS socket as one pooled buffer at a time. Node's TLS stream merges the chunks of a
// writev into a freshly allocated buffer before SSL_write (a corked tick of piece messages is
// megabytes: fresh anonymous memory, a page fault and a zeroed page per 4 KiB, measured at ~1 CPU
// s/GiB on the seeding side). One write in flight, copied into a reused 1 MiB buffer, is a single
// SSL_write with no allocation; the kernel's socket buffer keeps the link busy meanwhile.
import type { Socket } from 'node:net';
import { blockCopied } from './buffers.js';

const BATCH = 1024 * 1024;
const POOL_MAX = 8;
const pool: Buffer[] = [];

export class Outbox {
  private readonly q: Uint8Array[] = [];
  /** Bytes waiting here, not yet handed to the socket. */
  queued = 0;
  private busy = false;
  private scheduled = false;

  /** `onWritten` runs after each write the socket has taken (the sender may add more). */
  constructor(private readonly socket: Socket, private readonly onWritten: () => void) {}

  write(chunk: Uint8Array): void {
    if (!chunk.length) return;
    this.q.push(chunk);
    this.queued += chunk.length;
    // Everything written in this tick goes out together (requests, headers and blocks).
    if (!this.busy && !this.scheduled) {
      this.scheduled = true;
      process.nextTick(this.flush);
    }
  }

  private readonly flush = (): void => {
    this.scheduled = false;
    if (this.busy || !this.queued || this.socket.destroyed) return;
    const buf = pool.pop() ?? Buffer.allocUnsafeSlow(BATCH);
    let n = 0;
    while (this.q.length && n < BATCH) {
      const c = this.q[0]!;
      const take = Math.min(c.length, BATCH - n);
      buf.set(take === c.length ? c : c.subarray(0, take), n);
      n += take;
      if (take === c.length) {
        this.q.shift();
        blockCopied(c);
      }
      else this.q[0] = c.subarray(take);
    }
    this.queued -= n;
    this.busy = true;
    this.socket.write(buf.subarray(0, n), (err) => {
      this.busy = false;
      // A failed write may still be referenced by the stream; let the GC have that one.
      if (!err && pool.length < POOL_MAX) pool.push(buf);
      if (err) return;
      this.flush();
      this.onWritten();
    });
  };
}

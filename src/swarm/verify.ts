// Piece verification off the event loop: the thread that moves bytes on the wire should not
// also spend ~1 s per GiB in SHA-1. Small pieces are hashed inline (a round trip costs more).
import { Worker } from 'node:worker_threads';
import { Info, pieceHash, verifyPiece } from '../content/metainfo.js';

const INLINE_MAX = 128 * 1024;
const WORKERS = 2;

type Done = (ok: boolean) => void;

class VerifyPool {
  private workers: Worker[] = [];
  private load: number[] = [];
  private pending = new Map<number, { done: Done; w: number }>();
  private nextId = 1;

  run(info: Info, index: number, data: Buffer): Promise<boolean> {
    // Only shared memory reaches a worker without a copy.
    if (data.length <= INLINE_MAX || !(data.buffer instanceof SharedArrayBuffer)) {
      return Promise.resolve(verifyPiece(info, index, data));
    }
    if (this.workers.length < WORKERS) this.spawn();
    let w = 0;
    for (let i = 1; i < this.workers.length; i++) if (this.load[i]! < this.load[w]!) w = i;
    const id = this.nextId++;
    this.load[w]!++;
    if (this.load[w] === 1) this.workers[w]!.ref();
    return new Promise((resolve) => {
      this.pending.set(id, { done: resolve, w });
      this.workers[w]!.postMessage({ id, data, expected: Buffer.from(pieceHash(info, index)) });
    });
  }

  /** Starts the workers ahead of the first piece (a cold start costs a reader ~50-100 ms). */
  warm(): void {
    while (this.workers.length < WORKERS) this.spawn();
  }

  private spawn(): void {
    const idx = this.workers.length;
    const w = new Worker(new URL('./verify-worker.js', import.meta.url));
    w.unref();
    w.on('message', (m: { id: number; ok: boolean }) => {
      const p = this.pending.get(m.id);
      this.pending.delete(m.id);
      if (--this.load[idx]! === 0) w.unref();
      p?.done(m.ok);
    });
    w.on('error', () => {
      // Fail what it had (the pieces are fetched again) and replace it on demand.
      for (const [id, p] of this.pending) if (p.w === idx) { this.pending.delete(id); p.done(false); }
    });
    this.workers.push(w);
    this.load.push(0);
  }

  async close(): Promise<void> {
    await Promise.all(this.workers.map((w) => w.terminate()));
    this.workers = [];
    this.load = [];
  }
}

let pool: VerifyPool | null = null;

/** Verifies a received piece (in a worker if it is large and in shared memory). */
export function verifyAsync(info: Info, index: number, data: Buffer): Promise<boolean> {
  pool ??= new VerifyPool();
  return pool.run(info, index, data);
}

export function warmVerifiers(): void {
  pool ??= new VerifyPool();
  pool.warm();
}

export async function closeVerifiers(): Promise<void> {
  await pool?.close();
  pool = null;
}

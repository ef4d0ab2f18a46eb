// Piece verification off the event loop: the thread that moves bytes on the wire should not
// also spend ~1 s per GiB in SHA-1. Small pieces are hashed inline (a round trip costs more).
import { Worker } from 'node:worker_threads';
import { Info, pieceHash, verifyPiece } from '../content/metainfo.js';
import { IdleRetire, workerIdleMs } from '../util/idle-retire.js';

const INLINE_MAX = 128 * 1024;
const WORKERS = 2;

type Done = (ok: boolean) => void;

class VerifyPool {
  private workers: Worker[] = [];
  private load: number[] = [];
  private pending = new Map<number, { done: Done; w: number }>();
  private nextId = 1;
  private readonly retire = new IdleRetire(workerIdleMs(), () => this.retireIdle());

  get threads(): number {
    return this.workers.length;
  }

  run(info: Info, index: number, data: Buffer): Promise<boolean> {
    // Only shared memory reaches a worker without a copy.
    if (data.length <= INLINE_MAX || !(data.buffer instanceof SharedArrayBuffer)) {
      return Promise.resolve(verifyPiece(info, index, data));
    }
    if (this.workers.length < WORKERS) this.spawn();
    this.retire.busy();
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
    if (!this.pending.size) this.retire.idle();
  }

  /** Nothing to verify for a while: the threads go (the next large piece starts them again). */
  private retireIdle(): void {
    if (this.pending.size) return;
    const ws = this.workers;
    this.workers = [];
    this.load = [];
    for (const w of ws) void w.terminate();
  }

  private spawn(): void {
    const idx = this.workers.length;
    const w = new Worker(new URL('./verify-worker.js', import.meta.url));
    w.unref();
    w.on('message', (m: { id: number; ok: boolean }) => {
      const p = this.pending.get(m.id);
      this.pending.delete(m.id);
      if (--this.load[idx]! === 0) w.unref();
      if (!this.pending.size) this.retire.idle();
      p?.done(m.ok);
    });
    w.on('error', () => {
      // Fail what it had (the pieces are fetched again) and replace it on demand.
      for (const [id, p] of this.pending) if (p.w === idx) { this.pending.delete(id); p.done(false); }
      if (!this.pending.size) this.retire.idle();
    });
    this.workers.push(w);
    this.load.push(0);
  }

  async close(): Promise<void> {
    this.retire.busy();
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

/** A download of pieces this large may begin: start the threads that will check them (and let them go if none comes). */
export function warmVerifiers(pieceLength: number): void {
  if (pieceLength <= INLINE_MAX) return;
  pool ??= new VerifyPool();
  pool.warm();
}

/** Verifying threads running now (tests). */
export function verifierThreads(): number {
  return pool?.threads ?? 0;
}

export async function closeVerifiers(): Promise<void> {
  await pool?.close();
  pool = null;
}

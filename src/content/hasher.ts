// Piece hashing off the event loop: a small pool of worker threads, a large file split across
// all of them. Tiny files are hashed inline, where a worker round trip would cost more.
import { Worker } from 'node:worker_threads';
import { availableParallelism } from 'node:os';
import { readFile, stat } from 'node:fs/promises';
import { createHash } from 'node:crypto';
import { Info, pieceCount, pieceLengthFor } from './metainfo.js';
import type { HashJob } from './hash-worker.js';
import { IdleRetire, workerIdleMs } from '../util/idle-retire.js';

/** Up to this size hashing inline costs less than a worker round trip (~0.2 ms of SHA-1). */
export const INLINE_MAX = 256 * 1024;
/** Pieces per job: several jobs per large file so every worker gets a share. */
const JOB_BYTES = 64 * 1024 * 1024;

type Pending = { resolve: (b: Buffer) => void; reject: (e: Error) => void };

class HashPool {
  private workers: Worker[] = [];
  private idle: Worker[] = [];
  private queue: HashJob[] = [];
  private pending = new Map<number, Pending>();
  private nextId = 1;
  private active = 0;
  private readonly retire = new IdleRetire(workerIdleMs(), () => this.retireIdle());

  constructor(private readonly size: number) {}

  get threads(): number {
    return this.workers.length;
  }

  run(job: Omit<HashJob, 'id'>): Promise<Buffer> {
    const id = this.nextId++;
    return new Promise<Buffer>((resolve, reject) => {
      this.pending.set(id, { resolve, reject });
      this.queue.push({ ...job, id });
      this.pump();
    });
  }

  private pump(): void {
    while (this.queue.length) {
      let w = this.idle.pop();
      if (!w && this.workers.length < this.size) w = this.spawn();
      if (!w) return;
      this.retire.busy();
      this.active++;
      w.ref();
      w.postMessage(this.queue.shift());
    }
  }

  private spawn(): Worker {
    const w = new Worker(new URL('./hash-worker.js', import.meta.url));
    w.on('message', (m: { id: number; hashes?: Uint8Array; error?: string }) => {
      const p = this.pending.get(m.id);
      this.pending.delete(m.id);
      this.active--;
      w.unref(); // an idle pool must not keep the process alive
      this.idle.push(w);
      if (p) m.error ? p.reject(new Error(m.error)) : p.resolve(Buffer.from(m.hashes!));
      this.pump();
      if (!this.active && !this.queue.length) this.retire.idle();
    });
    w.on('error', (e) => {
      // A crashed worker fails everything queued on it; the pool replaces it on demand.
      this.workers = this.workers.filter((x) => x !== w);
      this.idle = this.idle.filter((x) => x !== w);
      for (const [, p] of this.pending) p.reject(e);
      this.pending.clear();
    });
    this.workers.push(w);
    return w;
  }

  /** Nothing to do for a while: the threads go (the next job starts them again). */
  private retireIdle(): void {
    if (this.active || this.queue.length) return;
    const ws = this.workers;
    this.workers = [];
    this.idle = [];
    for (const w of ws) void w.terminate();
  }

  async close(): Promise<void> {
    this.retire.busy();
    await Promise.all(this.workers.map((w) => w.terminate()));
    this.workers = [];
    this.idle = [];
  }
}

let pool: HashPool | null = null;

/** Hashing threads running now (tests). */
export function hasherThreads(): number {
  return pool?.threads ?? 0;
}
function getPool(): HashPool {
  pool ??= new HashPool(Math.max(1, Math.min(4, availableParallelism())));
  return pool;
}

export async function closeHashers(): Promise<void> {
  await pool?.close();
  pool = null;
}

/** SHA-1 of pieces [first, first+count) of a file whose full length is `length`, in a worker. */
export function hashPieces(path: string, pieceLength: number, first: number, count: number, length: number): Promise<Buffer> {
  return getPool().run({ path, pieceLength, first, count, length });
}

/** Computes the info dictionary of a file (its piece hashes) without blocking the event loop. */
export async function hashFile(path: string, knownLength?: number): Promise<Info> {
  const length = knownLength ?? (await stat(path)).size;
  const pieceLength = pieceLengthFor(length);
  const n = pieceCount({ length, pieceLength });
  if (length <= INLINE_MAX) {
    const data = await readFile(path);
    if (data.length !== length) throw new Error(`${path}: changed while hashing`);
    return hashBuffer(data);
  }
  const per = Math.max(1, Math.floor(JOB_BYTES / pieceLength));
  const jobs: Promise<Buffer>[] = [];
  for (let first = 0; first < n; first += per) {
    jobs.push(getPool().run({ path, pieceLength, first, count: Math.min(per, n - first), length }));
  }
  return { length, pieceLength, pieces: Buffer.concat(await Promise.all(jobs)) };
}

/** Hashes small in-memory content inline (callers keep it at or below INLINE_MAX). */
export function hashBuffer(data: Buffer): Info {
  const length = data.length;
  const pieceLength = pieceLengthFor(length);
  const n = pieceCount({ length, pieceLength });
  const pieces = Buffer.allocUnsafe(n * 20);
  for (let i = 0; i < n; i++) {
    createHash('sha1').update(data.subarray(i * pieceLength, (i + 1) * pieceLength)).digest().copy(pieces, i * 20);
  }
  return { length, pieceLength, pieces };
}

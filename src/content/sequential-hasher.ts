// Hashes a file while it is being written front to back: each full piece (at the piece length
// the current size implies) goes to a worker as soon as it is on disk, so close() only hashes the
// tail. Any write out of order, or a final size in another piece-length tier, falls back to
// hashing the whole file.
import { hashFile, hashPieces } from './hasher.js';
import { Info, pieceCount, pieceLengthFor } from './metainfo.js';

/** Bytes per worker job: large enough to amortise the round trip, small enough to overlap. */
const JOB_BYTES = 16 * 1024 * 1024;

export class SequentialHasher {
  private valid = true;
  private pieceLength = 0;
  private submitted = 0; // pieces handed to workers
  private jobs: Promise<Buffer>[] = [];
  /** Jobs still reading the file, including those of an earlier tier or an invalidated run. */
  private reading = new Set<Promise<unknown>>();

  constructor(private readonly path: string) {}

  /** The writer broke the front-to-back pattern: hash everything at the end. */
  invalidate(): void {
    this.valid = false;
    this.jobs = [];
  }

  /** Bytes [0, end) are written to the file. */
  advance(end: number): void {
    if (!this.valid) return;
    const L = pieceLengthFor(end);
    if (L !== this.pieceLength) {
      // A new size tier: earlier hashes used another piece length and are of no use.
      this.pieceLength = L;
      this.submitted = 0;
      this.jobs = [];
    }
    const complete = Math.floor(end / L);
    const per = Math.max(1, Math.floor(JOB_BYTES / L));
    while (complete - this.submitted >= per) {
      const job = hashPieces(this.path, L, this.submitted, per, this.submitted * L + per * L);
      const read = job.catch(() => {}); // a failure surfaces in finish(), which falls back
      this.reading.add(read);
      void read.then(() => this.reading.delete(read));
      this.jobs.push(job);
      this.submitted += per;
    }
  }

  /** Resolves once no worker reads the file any more (an unlinked file's space is freed only then). */
  async idle(): Promise<void> {
    while (this.reading.size) await Promise.all(this.reading);
  }

  async finish(length: number): Promise<Info> {
    const L = pieceLengthFor(length);
    if (!this.valid || L !== this.pieceLength || this.submitted * L > length) return hashFile(this.path, length);
    const n = pieceCount({ length, pieceLength: L });
    try {
      const done = await Promise.all(this.jobs);
      const rest = n > this.submitted ? [await hashPieces(this.path, L, this.submitted, n - this.submitted, length)] : [];
      return { length, pieceLength: L, pieces: Buffer.concat([...done, ...rest]) };
    } catch {
      return hashFile(this.path, length);
    }
  }
}

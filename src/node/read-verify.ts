// Verification on read: the bytes of a stored copy reach a reader (or a copy on write) only once
// the pieces they lie in matched the content's piece hashes in this run of the node, as a
// checksumming filesystem reads. Pieces are hashed in the hash workers, a chunk of up to 8 MiB
// at a time (the next two too while a reader goes sequentially, so it does not wait at every
// boundary); a piece that matched is not hashed again until the node restarts (stored content is
// immutable: rot after that is the scrub's to find). A piece that does not match, or that the
// disk fails to read, is repaired from the members (the scrub's piece-by-piece repair) before
// the read goes on; where no member can repair it the read fails with EIO: wrong bytes are never
// returned.
import { pieceCount, ContentId, Info } from '../content/metainfo.js';
import { setTimeout as sleep } from 'node:timers/promises';
import { FsError } from '../util/errors.js';

export interface VerifyDeps {
  /** The stored copy's path. */
  path(id: ContentId): string;
  /** SHA-1 of pieces [first, first+count) of the file at path (hasher.ts hashPieces). */
  hash(path: string, pieceLength: number, first: number, count: number, length: number): Promise<Buffer>;
  /** Repairs the copy from the members: the pieces `good` says no to are fetched again. Rejects where no member can. */
  repair(id: ContentId, info: Info, good: (piece: number) => boolean): Promise<void>;
}

const CHUNK_BYTES = 8 << 20;
/** Chunks hashed ahead of a sequential reader. */
const AHEAD = 2;
/** Longest a read waits for a repair of the pieces it needs (as long as a read waits for peers). */
const REPAIR_WAIT_MS = 30_000;
/** Contents whose verified pieces are remembered (least recently read forgotten first). */
const MAX_TRACKED = 4096;

export class ReadVerifier {
  /** Per content: a bit per piece that matched its hash. */
  private readonly good = new Map<ContentId, Uint8Array>();
  private readonly hashing = new Map<string, Promise<void>>();
  private readonly repairing = new Map<ContentId, Promise<void>>();
  stats = { verifiedBytes: 0, badPieces: 0, repaired: 0, failed: 0 };

  constructor(private readonly d: VerifyDeps) {}

  /** Resolves once bytes [start, end) of the stored copy of `id` are verified; EIO where they cannot be made good. */
  async ensure(id: ContentId, info: Info, start: number, end: number): Promise<void> {
    if (end <= start || info.length === 0) return;
    for (let attempt = 0; ; attempt++) {
      const bad = await this.check(id, info, start, end);
      if (!bad.length) return;
      this.stats.badPieces += bad.length;
      // Two repairs (a reader may have joined one made for other pieces), then give up rather than loop.
      if (attempt > 1) break;
      try {
        // A reader waits so long for a repair (it goes on in the background), then gets EIO.
        await Promise.race([this.repair(id, info, bad), sleep(REPAIR_WAIT_MS, undefined, { ref: false }).then(() => { throw new Error(`no repair within ${REPAIR_WAIT_MS / 1000} s`); })]);
      } catch (e) {
        this.stats.failed++;
        throw new FsError('EIO', `${id}: ${bad.length} stored piece(s) from ${bad[0]} do not match their hashes and no member repaired them (${(e as Error).message})`);
      }
    }
    this.stats.failed++;
    throw new FsError('EIO', `${id}: stored pieces still do not match their hashes after a repair`);
  }

  /** Every piece of the stored copy of `id` matched its hash in this run (nothing left to check on read). */
  verified(id: ContentId, info: Info): boolean {
    const b = this.good.get(id);
    if (!b) return info.length === 0;
    const n = pieceCount(info);
    for (let p = 0; p < n; p++) if (!has(b, p)) return false;
    return true;
  }

  /** Bytes [start, end) must be checked again (the disk failed to read them after they matched). */
  forget(id: ContentId, info: Info, start: number, end: number): void {
    const b = this.good.get(id);
    if (!b || end <= start) return;
    const p1 = Math.min(pieceCount(info) - 1, Math.floor((Math.min(end, info.length) - 1) / info.pieceLength));
    for (let p = Math.floor(start / info.pieceLength); p <= p1; p++) b[p >> 3]! &= ~(1 << (p & 7));
  }

  /** Pieces of [start, end) that are not good after hashing what was not known; a failed read counts as bad. */
  private async check(id: ContentId, info: Info, start: number, end: number): Promise<number[]> {
    const per = Math.max(1, Math.floor(CHUNK_BYTES / info.pieceLength));
    const n = pieceCount(info);
    const p0 = Math.floor(start / info.pieceLength), p1 = Math.min(n - 1, Math.floor((Math.min(end, info.length) - 1) / info.pieceLength));
    const bits = this.bits(id, n);
    const c0 = Math.floor(p0 / per), c1 = Math.floor(p1 / per);
    const jobs: Promise<void>[] = [];
    for (let c = c0; c <= c1; c++) if (!this.chunkGood(bits, c, per, n)) jobs.push(this.hashChunk(id, info, bits, c, per, n));
    // A sequential reader: the next chunks are hashed (one per hash worker) while this one is read.
    if (c0 === 0 || this.chunkGood(bits, c0 - 1, per, n)) {
      for (let next = c1 + 1; next <= c1 + AHEAD && next * per < n; next++) {
        if (!this.chunkGood(bits, next, per, n)) void this.hashChunk(id, info, bits, next, per, n).catch(() => {});
      }
    }
    await Promise.all(jobs);
    const bad: number[] = [];
    for (let p = p0; p <= p1; p++) if (!has(bits, p)) bad.push(p);
    return bad;
  }

  private chunkGood(bits: Uint8Array, c: number, per: number, n: number): boolean {
    for (let p = c * per, e = Math.min(n, (c + 1) * per); p < e; p++) if (!has(bits, p)) return false;
    return true;
  }

  private hashChunk(id: ContentId, info: Info, bits: Uint8Array, c: number, per: number, n: number): Promise<void> {
    const key = `${id}:${c}`;
    let job = this.hashing.get(key);
    if (!job) {
      const first = c * per, count = Math.min(per, n - first);
      job = this.d.hash(this.d.path(id), info.pieceLength, first, count, info.length).then((got) => {
        for (let k = 0; k < count; k++) {
          const p = first + k;
          if (got.subarray(k * 20, k * 20 + 20).equals(info.pieces.subarray(p * 20, p * 20 + 20))) bits[p >> 3]! |= 1 << (p & 7);
        }
        this.stats.verifiedBytes += Math.min(count * info.pieceLength, info.length - first * info.pieceLength);
      }, () => { /* unreadable (a disk error, or the copy left the store): its pieces stay unverified, so bad */ })
        .finally(() => this.hashing.delete(key));
      this.hashing.set(key, job);
    }
    return job;
  }

  private repair(id: ContentId, info: Info, bad: number[]): Promise<void> {
    let job = this.repairing.get(id);
    if (!job) {
      const badSet = new Set(bad);
      job = this.d.repair(id, info, (p) => !badSet.has(p)).then(() => { this.stats.repaired++; })
        .finally(() => this.repairing.delete(id));
      this.repairing.set(id, job);
    }
    return job;
  }

  private bits(id: ContentId, n: number): Uint8Array {
    let b = this.good.get(id);
    if (b) this.good.delete(id);
    else b = new Uint8Array((n + 7) >> 3);
    this.good.set(id, b); // most recently read last
    if (this.good.size > MAX_TRACKED) this.good.delete(this.good.keys().next().value!);
    return b;
  }
}

const has = (bits: Uint8Array, p: number): boolean => (bits[p >> 3]! & (1 << (p & 7))) !== 0;

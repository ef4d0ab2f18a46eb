// The scrub: every copy this disk holds is read back and its pieces checked against the hashes
// in its metainfo, in the background, incrementally (a cursor in ROOT/replication/scrub.json
// survives restarts) and throttled (--scrub-rate bytes per second; a pass starts again a day
// after the last ended). A copy with bad pieces is repaired from the members piece by piece: it
// leaves the store as a partial download whose bitfield holds only its good pieces, and the
// swarm fetches the others (verified as any download) and stores it again.
import { mkdir, readFile, rename, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { hashPieces } from '../content/hasher.js';
import { pieceCount, ContentId, Info } from '../content/metainfo.js';
import type { ContentStore } from '../content/store.js';
import type { Logger } from '../util/log.js';

/** This disk's stored copies as the scrub and fsck see them, and how a bad one is repaired. */
export interface StoredCopies {
  store: ContentStore;
  /** Held ids, in id order. */
  held(): ContentId[];
  info(id: ContentId): Info | undefined;
  /** Content being written or fetched here now: not checked meanwhile. */
  busy(id: ContentId): boolean;
  /** Another member holds a complete copy and answers, and nothing counts on ours as it is. */
  canRepair(id: ContentId): boolean;
  /** Turns the copy into a partial download with only `good` pieces and fetches the rest. */
  repair(id: ContentId, info: Info, good: (piece: number) => boolean, signal: AbortSignal): Promise<void>;
  /** Where the cursors live (ROOT/replication). */
  dir: string;
  log: Logger;
}

export interface ScrubDeps extends StoredCopies {
  /** Bytes per second; 0: no scrub. */
  rate: number;
  /** Pause between passes. */
  pauseMs: number;
}

/** Pieces hashed per job (and per throttle step). */
const CHUNK_BYTES = 8 << 20;

export class Scrubber {
  private closed = false;
  private readonly ac = new AbortController();
  private running: Promise<void> | null = null;
  stats = { scrubbed: 0, bytes: 0, bad: 0, repaired: 0 };

  constructor(private readonly d: ScrubDeps) {}

  start(): void {
    if (this.d.rate > 0) this.running = this.loop().catch((e) => { if (!this.closed) this.d.log.error('replication.scrub.failed', { error: (e as Error).message }); });
  }

  async close(): Promise<void> {
    this.closed = true;
    this.ac.abort();
    await this.running;
  }

  private async loop(): Promise<void> {
    const file = join(this.d.dir, 'scrub.json');
    let cursor: { after: ContentId | null; endedAt: number } = { after: null, endedAt: 0 };
    try {
      const o = JSON.parse(await readFile(file, 'utf8'));
      if (o && (o.after === null || typeof o.after === 'string') && typeof o.endedAt === 'number') cursor = o;
    } catch { /* first pass */ }
    const save = async () => {
      await mkdir(this.d.dir, { recursive: true });
      await writeFile(`${file}.tmp`, JSON.stringify(cursor));
      await rename(`${file}.tmp`, file);
    };
    while (!this.closed) {
      const wait = cursor.after === null ? cursor.endedAt + this.d.pauseMs - Date.now() : 0;
      if (wait > 0) await sleep(Math.min(wait, 2 ** 31 - 1), undefined, { signal: this.ac.signal }).catch(() => {});
      if (this.closed) return;
      const ids = this.d.held().filter((id) => cursor.after === null || id > cursor.after);
      for (const id of ids) {
        if (this.closed) return;
        await this.check(id);
        cursor.after = id;
        await save().catch(() => {});
      }
      cursor = { after: null, endedAt: Date.now() };
      await save().catch(() => {});
      this.d.log.info('replication.scrub.pass', { ...this.stats });
    }
  }

  private async check(id: ContentId): Promise<void> {
    const info = this.d.info(id);
    if (!info || info.length === 0 || this.d.busy(id)) return;
    const bad = await checkCopy(this.d.store, id, info, { rate: this.d.rate, signal: this.ac.signal, log: this.d.log, onBytes: (n) => { this.stats.bytes += n; } });
    if (!bad || this.closed) return;
    this.stats.scrubbed++;
    if (!bad.length) return;
    this.stats.bad += bad.length;
    this.d.log.warn('replication.scrub.bad_pieces', { id, pieces: bad.length, first: bad.slice(0, 10), why: 'the stored copy differs from its piece hashes; repairing those pieces from the members' });
    const r = await repairCopy(this.d, id, info, bad, this.ac.signal);
    if (r.state === 'repaired') {
      this.stats.repaired++;
      this.d.log.info('replication.scrub.repaired', { id, pieces: bad.length });
    } else if (r.state === 'unrepairable') {
      // Ours may be the best copy there is: kept as it is, found again by the next pass.
      this.d.log.error('replication.scrub.unrepairable', { id, pieces: bad.length, why: 'no other member that answers holds a complete copy (or ours is locked); the copy is kept as it is' });
    } else this.d.log.error('replication.scrub.repair_failed', { id, error: r.error });
  }
}

/**
 * Fetches the `bad` pieces of a stored copy again, if a member can repair it (else the copy is
 * kept as it is: ours may be the best there is). The scrub's and fsck's one rule.
 */
export async function repairCopy(d: Pick<StoredCopies, 'canRepair' | 'repair'>, id: ContentId, info: Info, bad: readonly number[], signal: AbortSignal): Promise<{ state: 'repaired'; error: null } | { state: 'unrepairable'; error: null } | { state: 'failed'; error: string }> {
  if (!d.canRepair(id)) return { state: 'unrepairable', error: null };
  const badSet = new Set(bad);
  try {
    await d.repair(id, info, (i) => !badSet.has(i), signal);
    return { state: 'repaired', error: null };
  } catch (e) {
    return { state: 'failed', error: (e as Error).message };
  }
}

/**
 * Reads a stored copy back and checks every piece against its hash: the bad pieces (an
 * unreadable piece is bad), or null when the copy left the store meanwhile or `signal` ended it.
 * `rate` bytes per second (0: as fast as the disk goes).
 */
export async function checkCopy(store: ContentStore, id: ContentId, info: Info, o: { rate: number; signal: AbortSignal; log: Logger; onBytes?: (n: number) => void }): Promise<number[] | null> {
  const n = pieceCount(info);
  const per = Math.max(1, Math.floor(CHUNK_BYTES / info.pieceLength));
  const bad: number[] = [];
  for (let first = 0; first < n; first += per) {
    if (o.signal.aborted) return null;
    const count = Math.min(per, n - first);
    const t0 = Date.now();
    let got: Buffer | null = null;
    let error: Error | null = null;
    // A failed read is tried once more (a worker or a transient error is not bit rot).
    for (let attempt = 0; attempt < 2 && !got; attempt++) {
      try {
        got = await hashPieces(store.path(id), info.pieceLength, first, count, info.length);
      } catch (e) {
        error = e as Error;
        if (!(await store.has(id))) return null; // dropped or deleted meanwhile
      }
    }
    if (!got) {
      // The disk fails to read these pieces: bad, repaired from the members.
      o.log.warn('replication.scrub.read_failed', { id, first, error: error?.message });
      for (let k = 0; k < count; k++) bad.push(first + k);
      continue;
    }
    for (let k = 0; k < count; k++) {
      if (!got.subarray(k * 20, k * 20 + 20).equals(info.pieces.subarray((first + k) * 20, (first + k) * 20 + 20))) bad.push(first + k);
    }
    const bytes = Math.min(count * info.pieceLength, info.length - first * info.pieceLength);
    o.onBytes?.(bytes);
    const ms = o.rate > 0 ? (bytes / o.rate) * 1000 - (Date.now() - t0) : 0;
    if (ms > 0) await sleep(ms, undefined, { signal: o.signal }).catch(() => {});
  }
  return o.signal.aborted ? null : bad;
}

// The read cache: what was fetched for readers of content placed elsewhere stays on this disk,
// for the next read of the same bytes: pieces in partial downloads (ROOT/partial/<id> and
// <id>.bits), and whole copies a reader completed or opened that placement does not need here
// (surplus), which the loop would otherwise drop. Both are bounded together by --cache-size:
// beyond it the least recently used go, whole, until the rest fit. A partial is deleted here; a
// whole copy is handed back to the loop, whose drop first locks `copies` other copies (so the
// cache never holds the last copy it lets go). Never evicted: content being fetched as a placed
// copy (the loop's), content a reader used lately or with requests in flight. Sizes are what the
// sparse files really take on the disk. When readers last opened what is kept
// (ROOT/replication/cache.json) survives a restart, so the cache does too.
import { readdir, readFile, rename, stat, unlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { isContentId, ContentId } from '../content/metainfo.js';
import type { Logger } from '../util/log.js';

export interface CacheSwarm {
  active(): ContentId[];
  stats(id: ContentId): { complete: boolean; inFlight: number; idleMs: number } | null;
  drop(id: ContentId): Promise<void>;
}

/** Most content ids whose last use is remembered (the oldest are forgotten first). */
const MAX_USES = 20_000;

export class ReadCache {
  private trimming: Promise<number> | null = null;
  /** Content readers opened or fetched: id -> last use (ms), oldest first. */
  private readonly uses = new Map<ContentId, number>();
  /** The whole copies the loop's last round keeps as cache (surplus here, used by readers): id -> bytes. */
  private whole = new Map<ContentId, number>();
  /**
   * Whole copies handed back to the loop that it has not dropped yet (its locks may fail): id ->
   * bytes, still counted against the budget until the loop no longer finds them surplus here.
   */
  private readonly handedBack = new Map<ContentId, number>();
  private saved = '[]';
  private saving: Promise<void> = Promise.resolve();

  constructor(
    private readonly o: {
      /** The partial downloads. */
      dir: string;
      /** Where the uses are kept between runs (cache.json). */
      stateDir: string;
      budget: number; swarm: CacheSwarm; log: Logger;
      /** A whole copy was evicted: the loop drops it (safely) in its next round. */
      evicted: () => void;
      /** Content the loop fetches as a placed copy: not a cache. */
      keep: (id: ContentId) => boolean;
      /** A reader's pieces stay at least this long after its last read. */
      idleMs: number;
      /** Bytes this disk can take before it is near full (negative past it): the cache never fills it further. */
      room: () => Promise<number>;
    },
  ) {}

  async load(): Promise<void> {
    let raw: unknown;
    try {
      raw = JSON.parse(await readFile(join(this.o.stateDir, 'cache.json'), 'utf8'));
    } catch {
      return; // none yet, or torn: the cache starts cold, nothing else is lost
    }
    if (!Array.isArray(raw)) return;
    const now = Date.now();
    const got: [ContentId, number][] = [];
    // A time ahead of ours (a clock set back, a hand-edited file) would keep a copy forever: now at most.
    for (const x of raw.slice(-MAX_USES)) {
      if (Array.isArray(x) && isContentId(x[0]) && Number.isFinite(x[1])) got.push([x[0], Math.min(now, Math.max(0, x[1]))]);
    }
    for (const [id, t] of got.sort((a, b) => a[1] - b[1])) this.uses.set(id, t); // oldest first, as used() keeps them
  }

  /** A reader opened or fetched `id` now. */
  used(id: ContentId): void {
    this.uses.delete(id);
    this.uses.set(id, Date.now());
    if (this.uses.size <= MAX_USES) return;
    // The oldest use that keeps nothing goes: a kept whole copy's use is what keeps it.
    for (const old of this.uses.keys()) {
      if (this.whole.has(old)) continue;
      this.uses.delete(old);
      break;
    }
  }

  /**
   * Of the surplus copies the loop would drop, the ones kept as cache: those readers used (the
   * budget is applied by trim(), which hands the least recently used back).
   */
  keep(surplus: readonly { id: ContentId; bytes: number }[]): Set<ContentId> {
    const whole = new Map<ContentId, number>();
    const still = new Set<ContentId>();
    for (const s of surplus) {
      if (this.uses.has(s.id)) whole.set(s.id, s.bytes);
      else if (this.handedBack.has(s.id)) still.add(s.id);
    }
    // Handed back and gone (dropped), placed here after all, or a reader's again: no longer pending.
    for (const id of this.handedBack.keys()) if (!still.has(id)) this.handedBack.delete(id);
    const grew = [...whole.keys()].some((id) => !this.whole.has(id));
    this.whole = whole;
    if (grew) void this.trim().catch((e) => this.o.log.warn('replication.cache.trim_failed', { error: (e as Error).message }));
    return new Set(whole.keys());
  }

  /** What the cache holds now: partial downloads' bytes (as of the last trim) and whole copies. */
  get stats(): { wholeCopies: number; wholeBytes: number; partialBytes: number; budget: number } {
    let wholeBytes = 0;
    for (const b of this.whole.values()) wholeBytes += b;
    return { wholeCopies: this.whole.size, wholeBytes, partialBytes: this.partialBytes, budget: this.o.budget };
  }
  private partialBytes = 0;

  /** Writes when the whole copies kept were last used, if that changed (temp file and rename), one write at a time. */
  save(): Promise<void> {
    const json = JSON.stringify([...this.whole.keys()].map((id) => [id, this.uses.get(id) ?? 0]));
    if (json === this.saved) return this.saving;
    this.saved = json;
    this.saving = this.saving.then(async () => {
      const f = join(this.o.stateDir, 'cache.json');
      const tmp = `${f}.tmp`;
      try {
        await writeFile(tmp, json, { mode: 0o600 });
        await rename(tmp, f);
      } catch (e) {
        this.saved = '';
        this.o.log.warn('replication.cache.save_failed', { error: (e as Error).message });
      }
    });
    return this.saving;
  }

  /** Evicts until the partial downloads and the whole copies kept fit the budget; how many bytes went. */
  trim(): Promise<number> {
    this.trimming ??= this.run().finally(() => { this.trimming = null; });
    return this.trimming;
  }

  private async run(): Promise<number> {
    let names: string[];
    try {
      names = await readdir(this.o.dir);
    } catch {
      names = [];
    }
    const open = new Set(this.o.swarm.active());
    const now = Date.now();
    type Item = { id: ContentId; bytes: number; used: number; evictable: boolean; whole: boolean };
    const items: Item[] = [];
    let total = 0, partial = 0;
    for (const name of names) {
      if (!isContentId(name) || this.whole.has(name)) continue;
      const st = await stat(join(this.o.dir, name)).catch(() => null);
      if (!st) continue;
      const bytes = st.blocks * 512;
      partial += bytes;
      const t = open.has(name) ? this.o.swarm.stats(name) : null;
      const busy = !!t && (t.inFlight > 0 || t.idleMs < this.o.idleMs);
      items.push({ id: name, bytes, used: t ? now - t.idleMs : Math.max(st.mtimeMs, this.uses.get(name) ?? 0), evictable: !busy && !this.o.keep(name) && !(t?.complete), whole: false });
    }
    this.partialBytes = partial;
    total = partial;
    for (const [id, bytes] of this.whole) {
      const used = this.uses.get(id) ?? 0;
      total += bytes;
      items.push({ id, bytes, used, evictable: now - used >= this.o.idleMs, whole: true });
    }
    for (const bytes of this.handedBack.values()) total += bytes; // still here until the loop drops them
    // Within --cache-size, and never into the space below the near-full mark placement keeps.
    const budget = Math.max(0, Math.min(this.o.budget, total + (await this.o.room())));
    if (total <= budget) return 0;
    let freed = 0;
    let handedBack = false;
    for (const it of items.filter((x) => x.evictable).sort((a, b) => a.used - b.used)) {
      if (total - freed <= budget) break;
      if (it.whole) {
        // The loop drops it, after locking `copies` others; until then it counts as here.
        this.whole.delete(it.id);
        this.uses.delete(it.id);
        this.handedBack.set(it.id, it.bytes);
        handedBack = true;
      } else {
        await this.o.swarm.drop(it.id);
        // Opened again meanwhile (a reader came back): it stays.
        if (this.o.swarm.active().includes(it.id)) continue;
        const p = join(this.o.dir, it.id);
        await Promise.all([unlink(p), unlink(`${p}.bits`)].map((x) => x.catch(() => {})));
        this.partialBytes -= it.bytes;
      }
      freed += it.bytes;
      this.o.log.info('replication.cache.evicted', { id: it.id, bytes: it.bytes, whole: it.whole, idleS: Math.round((now - it.used) / 1000) });
    }
    if (handedBack) this.o.evicted();
    return freed;
  }
}

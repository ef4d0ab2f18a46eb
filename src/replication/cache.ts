// The read cache: pieces fetched for readers of content placed elsewhere stay in partial
// downloads (ROOT/partial/<id> and <id>.bits), which a later read of the same bytes finds. They
// are bounded by --cache-size: beyond it the least recently used go, whole, until the rest fit.
// Never evicted: content being fetched as a placed copy (the loop's), content a reader used
// lately or with requests in flight. Sizes are what the sparse files really take on the disk.
import { readdir, stat, unlink } from 'node:fs/promises';
import { join } from 'node:path';
import { isContentId, ContentId } from '../content/metainfo.js';
import type { Logger } from '../util/log.js';

export interface CacheSwarm {
  active(): ContentId[];
  stats(id: ContentId): { complete: boolean; inFlight: number; idleMs: number } | null;
  drop(id: ContentId): Promise<void>;
}

export class ReadCache {
  private trimming: Promise<number> | null = null;

  constructor(
    private readonly o: {
      dir: string; budget: number; swarm: CacheSwarm; log: Logger;
      /** Content the loop fetches as a placed copy: not a cache. */
      keep: (id: ContentId) => boolean;
      /** A reader's pieces stay at least this long after its last read. */
      idleMs: number;
    },
  ) {}

  /** Evicts until the partial downloads fit the budget; how many bytes went. */
  trim(): Promise<number> {
    this.trimming ??= this.run().finally(() => { this.trimming = null; });
    return this.trimming;
  }

  private async run(): Promise<number> {
    let names: string[];
    try {
      names = await readdir(this.o.dir);
    } catch {
      return 0;
    }
    const open = new Set(this.o.swarm.active());
    const now = Date.now();
    const items: { id: ContentId; bytes: number; used: number; evictable: boolean }[] = [];
    let total = 0;
    for (const name of names) {
      if (!isContentId(name)) continue;
      const st = await stat(join(this.o.dir, name)).catch(() => null);
      if (!st) continue;
      const bytes = st.blocks * 512;
      total += bytes;
      const t = open.has(name) ? this.o.swarm.stats(name) : null;
      const busy = !!t && (t.inFlight > 0 || t.idleMs < this.o.idleMs);
      items.push({ id: name, bytes, used: t ? now - t.idleMs : st.mtimeMs, evictable: !busy && !this.o.keep(name) && !(t?.complete) });
    }
    if (total <= this.o.budget) return 0;
    let freed = 0;
    for (const it of items.filter((x) => x.evictable).sort((a, b) => a.used - b.used)) {
      if (total - freed <= this.o.budget) break;
      await this.o.swarm.drop(it.id);
      // Opened again meanwhile (a reader came back): it stays.
      if (this.o.swarm.active().includes(it.id)) continue;
      const p = join(this.o.dir, it.id);
      await Promise.all([unlink(p), unlink(`${p}.bits`)].map((x) => x.catch(() => {})));
      freed += it.bytes;
      this.o.log.info('replication.cache.evicted', { id: it.id, bytes: it.bytes, idleS: Math.round((now - it.used) / 1000) });
    }
    return freed;
  }
}

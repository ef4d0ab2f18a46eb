// Objects read or written lately, by id: an object never changes, so a hit is always right.
// A view folds every head it knows pairwise, and each step re-read the same trees, markers and
// commits (a third of its reads), or read back the commit it had just written; each read was a
// round trip to `git cat-file`, which on a loaded machine waits for the reader to be scheduled.
// Bounded in bytes (least recently used go first); large objects are not kept.
import { ByteLru } from '../util/byte-lru.js';

export interface CachedObject { type: string; data: Buffer }

export class ObjectCache {
  private readonly lru: ByteLru<CachedObject>;

  constructor(maxBytes = 16 * 2 ** 20, private readonly maxObject = 256 * 2 ** 10) {
    this.lru = new ByteLru(maxBytes);
  }

  get(oid: string): CachedObject | undefined {
    return this.lru.get(oid);
  }

  put(oid: string, type: string, data: Buffer): void {
    if (data.length > this.maxObject || this.lru.has(oid)) return;
    // Its own copy: a slice would keep the whole chunk it was cut from alive. Each costs its
    // bytes and about 100 for the entry itself.
    this.lru.set(oid, { type, data: Buffer.from(data) }, data.length + 100);
  }

  clear(): void {
    this.lru.clear();
  }

  get size(): number {
    return this.lru.size;
  }
}

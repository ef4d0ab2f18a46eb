// Objects read or written lately, by id: an object never changes, so a hit is always right.
// A view folds every head it knows pairwise, and each step re-read the same trees, markers and
// commits (a third of its reads), or read back the commit it had just written; each read was a
// round trip to `git cat-file`, which on a loaded machine waits for the reader to be scheduled.
// Bounded in bytes (least recently used go first); large objects are not kept.

export interface CachedObject { type: string; data: Buffer }

export class ObjectCache {
  private map = new Map<string, CachedObject>();
  private bytes = 0;

  constructor(private readonly maxBytes = 16 * 2 ** 20, private readonly maxObject = 256 * 2 ** 10) {}

  get(oid: string): CachedObject | undefined {
    const hit = this.map.get(oid);
    if (hit) {
      // Most recently used last.
      this.map.delete(oid);
      this.map.set(oid, hit);
    }
    return hit;
  }

  put(oid: string, type: string, data: Buffer): void {
    if (data.length > this.maxObject || this.map.has(oid)) return;
    // Its own copy: a slice would keep the whole chunk it was cut from alive.
    const o = { type, data: Buffer.from(data) };
    this.map.set(oid, o);
    this.bytes += data.length + 100;
    for (const [k, v] of this.map) {
      if (this.bytes <= this.maxBytes) break;
      this.map.delete(k);
      this.bytes -= v.data.length + 100;
    }
  }

  clear(): void {
    this.map.clear();
    this.bytes = 0;
  }

  get size(): number {
    return this.map.size;
  }
}

// A map bounded by the bytes its values cost: the least recently used go first when a new entry
// takes it past the budget (never the new entry itself). The swarm's piece cache and the
// metadata repository's object cache are both one. `onEvict` hears of every value that leaves
// (evicted, deleted, cleared), e.g. to recycle its buffer.
export class ByteLru<V> {
  private map = new Map<string, { v: V; cost: number }>();
  private bytes = 0;

  constructor(private readonly budget: number, private readonly onEvict?: (v: V) => void) {}

  /** The value, now the most recently used. */
  get(key: string): V | undefined {
    const hit = this.map.get(key);
    if (!hit) return undefined;
    this.map.delete(key);
    this.map.set(key, hit);
    return hit.v;
  }

  has(key: string): boolean {
    return this.map.has(key);
  }

  /** Adds `key` (an existing one is left as it is), then evicts the oldest others past the budget. */
  set(key: string, v: V, cost: number): void {
    if (this.map.has(key)) return;
    this.map.set(key, { v, cost });
    this.bytes += cost;
    for (const [k, e] of this.map) {
      if (this.bytes <= this.budget || k === key) break;
      this.map.delete(k);
      this.bytes -= e.cost;
      this.onEvict?.(e.v);
    }
  }

  delete(key: string): void {
    const e = this.map.get(key);
    if (!e) return;
    this.map.delete(key);
    this.bytes -= e.cost;
    this.onEvict?.(e.v);
  }

  clear(): void {
    const old = this.onEvict ? [...this.map.values()] : [];
    this.map.clear();
    for (const e of old) this.onEvict!(e.v);
    this.bytes = 0;
  }

  keys(): IterableIterator<string> {
    return this.map.keys();
  }

  get size(): number {
    return this.map.size;
  }
}

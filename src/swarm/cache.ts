// Verified pieces in memory, shared by all content of an engine under one byte budget: pieces
// read for serving (peers ask block by block, so a piece read once answers all its blocks, and
// other peers close behind) and pieces just fetched for a reader (which reads them from here).
import { ByteLru } from '../util/byte-lru.js';

export class PieceCache {
  // The newest piece is always kept, even if it alone exceeds the budget.
  private readonly lru: ByteLru<Buffer>;

  constructor(budget: number) {
    this.lru = new ByteLru(budget);
  }

  get(id: string, index: number): Buffer | undefined {
    return this.lru.get(`${id}:${index}`);
  }

  /** Puts `buf` in place of what the cache holds for the piece (a piece fetched again is the newer truth). */
  replace(id: string, index: number, buf: Buffer): void {
    this.lru.delete(`${id}:${index}`);
    this.lru.set(`${id}:${index}`, buf, buf.length);
  }

  put(id: string, index: number, buf: Buffer): void {
    this.lru.set(`${id}:${index}`, buf, buf.length);
  }

  drop(id: string): void {
    for (const k of [...this.lru.keys()]) if (k.startsWith(`${id}:`)) this.lru.delete(k);
  }
}

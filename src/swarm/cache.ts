// Pieces read for serving, shared by all content of an engine under one byte budget: peers ask
// block by block, so a piece read once answers all its blocks (and other peers close behind).
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

  put(id: string, index: number, buf: Buffer): void {
    this.lru.set(`${id}:${index}`, buf, buf.length);
  }

  drop(id: string): void {
    for (const k of [...this.lru.keys()]) if (k.startsWith(`${id}:`)) this.lru.delete(k);
  }
}

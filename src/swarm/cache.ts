// Whole verified pieces in memory, shared by all content of an engine under one byte budget:
// pieces read for serving (peers ask block by block, so a piece read once answers all its blocks,
// and other peers close behind), and pieces a reader's read-ahead fetched (written to disk past
// the page cache, they are read from here instead of from the device).
import { ByteLru } from '../util/byte-lru.js';
import { giveBuffer, retireServed } from './buffers.js';

export class PieceCache {
  // The newest piece is always kept, even if it alone exceeds the budget.
  private readonly lru: ByteLru<Buffer>;

  /**
   * Read-ahead pieces, pool buffers: only ever copied from synchronously (Torrent.read), never
   * handed to a socket, so one leaving goes straight back to the pool (fresh buffers cost a page
   * fault per 4 KiB).
   */
  private readonly ahead: ByteLru<Buffer>;

  constructor(budget: number) {
    this.lru = new ByteLru(budget, retireServed);
    this.ahead = new ByteLru(budget, giveBuffer);
  }

  getAhead(id: string, index: number): Buffer | undefined {
    return this.ahead.get(`${id}:${index}`);
  }

  /** Keeps a pool buffer holding a verified piece that a reader will want soon; the cache owns it now. */
  putAhead(id: string, index: number, buf: Buffer): void {
    const k = `${id}:${index}`;
    if (this.ahead.has(k)) giveBuffer(buf);
    else this.ahead.set(k, buf, buf.length);
  }

  get(id: string, index: number): Buffer | undefined {
    return this.lru.get(`${id}:${index}`);
  }

  put(id: string, index: number, buf: Buffer): void {
    this.lru.set(`${id}:${index}`, buf, buf.length);
  }

  drop(id: string): void {
    for (const lru of [this.lru, this.ahead]) for (const k of [...lru.keys()]) if (k.startsWith(`${id}:`)) lru.delete(k);
  }
}

// Pieces read for serving, shared by all content of an engine under one byte budget: peers ask
// block by block, so a piece read once answers all its blocks (and other peers close behind).
export class PieceCache {
  private map = new Map<string, Buffer>();
  private size = 0;

  constructor(private readonly budget: number) {}

  get(id: string, index: number): Buffer | undefined {
    const k = `${id}:${index}`;
    const hit = this.map.get(k);
    if (hit) {
      this.map.delete(k);
      this.map.set(k, hit);
    }
    return hit;
  }

  put(id: string, index: number, buf: Buffer): void {
    const k = `${id}:${index}`;
    if (this.map.has(k)) return;
    this.map.set(k, buf);
    this.size += buf.length;
    for (const [key, v] of this.map) {
      // Always keep the newest piece, even if it alone exceeds the budget.
      if (this.size <= this.budget || key === k) break;
      this.map.delete(key);
      this.size -= v.length;
    }
  }

  drop(id: string): void {
    for (const [k, v] of this.map) {
      if (k.startsWith(`${id}:`)) {
        this.map.delete(k);
        this.size -= v.length;
      }
    }
  }
}

// Reply buffers for READ, reused: a fresh 1 MiB buffer per read is fresh anonymous memory each
// time (mmap, a page fault and a zeroed page per 4 KiB, then munmap), which on this VM cost more
// than the read itself (a remote read spent ~1.4 s per GiB in the GC and page faults of its reply
// and copy buffers). A buffer goes back once its reply has been written (writev is synchronous).
const MIN_POOLED = 64 * 1024;

export class ReadBuffers {
  private readonly free = new Map<number, Buffer[]>();
  private kept = 0;

  /** @param maxKept bytes held while idle (in-flight buffers are not counted). */
  constructor(private readonly maxKept = 32 << 20) {}

  /** A buffer of at least `size` bytes (a view of exactly `size`); its old contents are garbage. */
  take(size: number): Buffer {
    if (size < MIN_POOLED) return Buffer.allocUnsafe(size);
    const cls = 2 ** Math.ceil(Math.log2(size));
    const b = this.free.get(cls)?.pop();
    if (b) this.kept -= cls;
    return (b ?? Buffer.allocUnsafeSlow(cls)).subarray(0, size);
  }

  /** Gives back a buffer from take(); nothing may use it afterwards. */
  give(view: Buffer): void {
    const cls = view.buffer.byteLength;
    if (view.length < MIN_POOLED || view.byteOffset !== 0 || cls !== 2 ** Math.round(Math.log2(cls)) || this.kept + cls > this.maxKept) return;
    let list = this.free.get(cls);
    if (!list) this.free.set(cls, (list = []));
    list.push(Buffer.from(view.buffer, 0, cls));
    this.kept += cls;
  }

  /** Bytes held for reuse. */
  get held(): number {
    return this.kept;
  }
}

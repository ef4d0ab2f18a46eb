// Piece buffers: shared memory (the verify workers hash them in place, nothing is transferred
// or copied) and recycled (fresh 1-16 MiB buffers cost page faults and GC work on every piece).
// A buffer is given back only once nothing refers to it any more (after its piece is written).
// Each starts on a DIRECT_ALIGN boundary, so the piece can be written with O_DIRECT (partial.ts).
import { loadFileOps } from '../native/fileops.js';

const pools = new Map<number, Buffer[]>();
let pooled = 0;
const MAX_POOLED = 64 * 1024 * 1024;
/** Memory, file offset and length alignment that O_DIRECT accepts on every Linux block device. */
export const DIRECT_ALIGN = 4096;
const made = new WeakSet<Buffer>();

export function takeBuffer(size: number): Buffer {
  const p = pools.get(size);
  if (p?.length) {
    pooled -= size;
    return p.pop()!;
  }
  const whole = Buffer.from(new SharedArrayBuffer(size + DIRECT_ALIGN));
  const skew = loadFileOps().misalign(whole, DIRECT_ALIGN);
  const at = skew ? DIRECT_ALIGN - skew : 0;
  const buf = whole.subarray(at, at + size);
  made.add(buf);
  return buf;
}

export function giveBuffer(buf: Buffer): void {
  if (!made.has(buf)) return;
  if (pooled + buf.length > MAX_POOLED) return;
  let p = pools.get(buf.length);
  if (!p) pools.set(buf.length, (p = []));
  p.push(buf);
  pooled += buf.length;
}

let scratch = Buffer.allocUnsafeSlow(16 * 1024);

/**
 * Copies src into dst at offset. V8 copies into shared memory byte by byte (8x slower) when the
 * source is not 8-byte aligned, which a block inside a wire message never is (13-byte header):
 * going through an aligned scratch buffer is two fast copies instead.
 */
export function copyInto(dst: Buffer, src: Uint8Array, offset: number): void {
  if ((src.byteOffset & 7) === 0 || !(dst.buffer instanceof SharedArrayBuffer)) {
    dst.set(src, offset);
    return;
  }
  if (scratch.length < src.length) scratch = Buffer.allocUnsafeSlow(src.length);
  scratch.set(src);
  dst.set(scratch.subarray(0, src.length), offset);
}

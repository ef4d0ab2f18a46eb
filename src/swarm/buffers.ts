// Piece buffers: shared memory (the verify workers hash them in place, nothing is transferred
// or copied) and recycled (fresh 1-16 MiB buffers cost page faults and GC work on every piece).
// A buffer is given back only once nothing refers to it any more (after its piece is written).
// Each starts on a DIRECT_ALIGN boundary, so the piece can be written with O_DIRECT (partial.ts).
import { loadFileOps } from '../native/fileops.js';

/** Free buffers by size, at most 64 MiB of them in all. */
class SizePool {
  private readonly free = new Map<number, Buffer[]>();
  private bytes = 0;

  take(size: number): Buffer | undefined {
    const buf = this.free.get(size)?.pop();
    if (buf) this.bytes -= size;
    return buf;
  }

  give(buf: Buffer): void {
    if (this.bytes + buf.length > 64 * 1024 * 1024) return;
    let p = this.free.get(buf.length);
    if (!p) this.free.set(buf.length, (p = []));
    p.push(buf);
    this.bytes += buf.length;
  }
}

const pieces = new SizePool();
/** Memory, file offset and length alignment that O_DIRECT accepts on every Linux block device. */
export const DIRECT_ALIGN = 4096;
const made = new WeakSet<Buffer>();

export function takeBuffer(size: number): Buffer {
  const pooled = pieces.take(size);
  if (pooled) return pooled;
  const whole = Buffer.from(new SharedArrayBuffer(size + DIRECT_ALIGN));
  const skew = loadFileOps().misalign(whole, DIRECT_ALIGN);
  const at = skew ? DIRECT_ALIGN - skew : 0;
  const buf = whole.subarray(at, at + size);
  made.add(buf);
  return buf;
}

export function giveBuffer(buf: Buffer): void {
  if (made.has(buf)) pieces.give(buf);
}

/**
 * Served pieces are pool buffers lent to the connections they are sent on: each block handed to
 * a wire is counted, and counted back once the Outbox has copied it into its batch; a piece the
 * cache lets go of returns to the pool only when no block of it is still queued. A block whose
 * copy never comes (a closed connection, a plaintext socket) keeps its piece out of the pool, to
 * the GC: never reused early. (A fresh 1 MiB buffer per served piece faulted in and zeroed 256
 * pages: ~10 % of the CPU of a 1 GiB transfer here, in the seeder's pool threads.)
 */
const lent = new WeakMap<ArrayBufferLike, { buf: Buffer; blocks: number; retired: boolean }>();

/** Served pieces' own pool: plain memory (V8 copies out of shared memory byte-wise, slowly). */
const served = new SizePool();

/** A pool buffer for a piece to be served (see lent). */
export function takeServed(size: number): Buffer {
  const buf = served.take(size) ?? Buffer.allocUnsafeSlow(size);
  lent.set(buf.buffer, { buf, blocks: 0, retired: false });
  return buf;
}

/** A block of a served piece goes to a wire. */
export function lendBlock(piece: Buffer): void {
  const l = lent.get(piece.buffer);
  if (l) l.blocks++;
}

/** The Outbox copied `chunk` out: if it was a block of a retired served piece, the piece may go back. */
export function blockCopied(chunk: Uint8Array): void {
  const l = lent.get(chunk.buffer);
  if (!l || --l.blocks > 0 || !l.retired) return;
  lent.delete(chunk.buffer);
  served.give(l.buf);
}

/**
 * The cache let go of a served piece: back to the pool once its last block is copied, and not
 * before the next turn of the event loop (a sender that just got the piece from the cache lends
 * its blocks in the microtasks before that).
 */
export function retireServed(piece: Buffer): void {
  const l = lent.get(piece.buffer);
  if (!l) return;
  l.retired = true;
  l.blocks++;
  setImmediate(() => blockCopied(l.buf));
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

// Partial content on disk: ROOT/partial/<id> holds the bytes at their final offsets (a sparse
// file, so holes cost nothing) and ROOT/partial/<id>.bits the bitfield of verified pieces.
// The bitfield on disk only ever claims pieces whose bytes were flushed before it was written,
// so a crash loses at most the last few pieces, never trusts bytes that did not reach the disk.
import { constants as fsc, open as openCb, read as readCb, write as writeCb, close as closeCb, fdatasync as fdatasyncCb, ftruncate as ftruncateCb, fstat as fstatCb } from 'node:fs';
import { mkdir, readFile, writeFile, rename, unlink } from 'node:fs/promises';
import { promisify } from 'node:util';
import { join } from 'node:path';
import { Bitfield } from './bitfield.js';
import { ContentId, Info, pieceCount } from '../content/metainfo.js';
import type { ContentStore } from '../content/store.js';
import { loadFileOps } from '../native/fileops.js';
import { DIRECT_ALIGN } from './buffers.js';

const open = promisify(openCb);
const read = promisify(readCb);
const write = promisify(writeCb);
const close = promisify(closeCb);
const fdatasync = promisify(fdatasyncCb);
const ftruncate = promisify(ftruncateCb);
const fstat = promisify(fstatCb);

/** Writes go to disk in chunks of at most this size (keeps the libuv pool free for others). */
export const WRITE_CHUNK = 1024 * 1024;
const ZERO = Buffer.alloc(WRITE_CHUNK);
/** Persist the bitfield after this many new pieces (and on flush/close). */
const PERSIST_EVERY = 32;

async function writeAll(fd: number, chunk: Buffer, position: number): Promise<void> {
  let done = 0;
  while (done < chunk.length) {
    const { bytesWritten } = await write(fd, chunk, done, chunk.length - done, position + done);
    done += bytesWritten;
  }
}

export class PartialFile {
  private unsaved = 0;
  private saving: Promise<void> | null = null;
  private closed = false;
  /** The filesystem refused an O_DIRECT write (EINVAL): this file goes through the page cache. */
  private directRefused = false;

  private constructor(
    readonly path: string,
    readonly bitsPath: string,
    private fd: number,
    readonly have: Bitfield,
    /** Created here: where nothing was written it is a hole. Else (a resume, a repair) old bytes may lie anywhere. */
    private readonly fresh: boolean,
    /** The same file opened O_DIRECT (-1 where the filesystem refuses it, e.g. tmpfs). */
    private directFd: number,
  ) {}

  static async open(dir: string, id: ContentId, info: Info): Promise<PartialFile> {
    await mkdir(dir, { recursive: true, mode: 0o700 });
    const path = join(dir, id);
    const bitsPath = `${path}.bits`;
    const n = pieceCount(info);
    let have = new Bitfield(n);
    let fd: number;
    let fresh = false;
    try {
      fd = await open(path, 'r+');
      try {
        const bits = await readFile(bitsPath);
        if (bits.length === Math.ceil(n / 8)) have = new Bitfield(n, bits);
      } catch {
        // No bitfield: keep the bytes (they can only be verified bytes) but trust no piece.
      }
    } catch {
      fd = await open(path, 'w+', 0o600);
      fresh = true;
    }
    if ((await fstat(fd)).size !== info.length) await ftruncate(fd, info.length);
    const directFd = fsc.O_DIRECT ? await open(path, fsc.O_WRONLY | fsc.O_DIRECT).catch(() => -1) : -1;
    return new PartialFile(path, bitsPath, fd, have, fresh, directFd);
  }

  /**
   * Writes a verified piece at its offset. All-zero chunks of a file created here are skipped
   * (the region is a hole, which reads as zeros), so sparse content stays sparse; in a file that
   * held bytes before (a repaired copy's bad piece, a resume) they are punched as holes, or
   * written where the filesystem cannot punch. `direct`: whole aligned blocks go by O_DIRECT,
   * past the page cache (on this kind of VM, copying into fresh page-cache pages was a third of
   * a fetching engine's CPU, and four pool threads writing one file spun on its inode lock);
   * the rest (an unaligned tail, memory off alignment, a filesystem without it) goes through it.
   */
  async writePiece(position: number, data: Buffer, direct = false): Promise<void> {
    for (let off = 0; off < data.length; off += WRITE_CHUNK) {
      const chunk = data.subarray(off, Math.min(data.length, off + WRITE_CHUNK));
      if (chunk.equals(ZERO.subarray(0, chunk.length)) && (this.fresh || this.punch(position + off, chunk.length))) continue;
      if (direct && this.directFd >= 0 && !this.directRefused && (position + off) % DIRECT_ALIGN === 0 && chunk.length % DIRECT_ALIGN === 0
        && loadFileOps().misalign(chunk, DIRECT_ALIGN) === 0) {
        try {
          await writeAll(this.directFd, chunk, position + off);
          continue;
        } catch (e) {
          // EINVAL: this filesystem wants another alignment; write through the page cache from
          // now on. The fd stays open until close/finish: other pieces' writes may be using it,
          // and a closed fd number can be reused by another file.
          if ((e as NodeJS.ErrnoException).code !== 'EINVAL') throw e;
          this.directRefused = true;
        }
      }
      await writeAll(this.fd, chunk, position + off);
    }
  }

  /** FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE: the range reads as zeros. False where it cannot. */
  private punch(position: number, length: number): boolean {
    try {
      return loadFileOps().fallocate(this.fd, 3, position, length) === 0;
    } catch {
      return false;
    }
  }

  async read(buf: Buffer, offset: number, length: number, position: number): Promise<number> {
    let done = 0;
    while (done < length) {
      const { bytesRead } = await read(this.fd, buf, offset + done, length - done, position + done);
      if (bytesRead === 0) break;
      done += bytesRead;
    }
    return done;
  }

  /** Records a written, verified piece; the bitfield file follows in batches. */
  markHave(index: number): void {
    this.have.set(index);
    if (++this.unsaved >= PERSIST_EVERY) void this.flush().catch(() => {});
  }

  /** Flushes the bytes, then saves the bitfield as it was before the flush began. */
  flush(): Promise<void> {
    const run = async (): Promise<void> => {
      if (this.closed) return;
      this.unsaved = 0;
      const snapshot = Buffer.from(this.have.bytes);
      await fdatasync(this.fd);
      const tmp = `${this.bitsPath}.tmp`;
      await writeFile(tmp, snapshot, { mode: 0o600 });
      await rename(tmp, this.bitsPath);
    };
    const next = (this.saving ?? Promise.resolve()).then(run, run);
    this.saving = next.finally(() => { if (this.saving === next) this.saving = null; });
    return next;
  }

  /** Complete: flush, move the bytes into the store under their id, drop the bitfield. */
  async finish(store: ContentStore, id: ContentId): Promise<void> {
    await this.flush();
    this.closed = true;
    await this.closeDirect();
    await store.put(this.path, id);
    await unlink(this.bitsPath).catch(() => {});
  }

  /** The fd stays usable after finish() (the inode moved, it did not go away). */
  get rawFd(): number {
    return this.fd;
  }

  private async closeDirect(): Promise<void> {
    if (this.directFd < 0) return;
    const d = this.directFd;
    this.directFd = -1;
    await close(d).catch(() => {});
  }

  async close(): Promise<void> {
    await this.closeDirect();
    if (this.fd < 0) return;
    if (!this.closed) await this.flush().catch(() => {});
    this.closed = true;
    const fd = this.fd;
    this.fd = -1;
    await close(fd);
  }
}

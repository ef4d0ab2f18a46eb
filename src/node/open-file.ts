// One open file handle. Reads come from the stored version the handle was opened on (a raw fd
// on the store file, valid even after that version is replaced or deleted); the first change
// copies it to a private temp file (copy on write), which becomes new content on flush.
import { open as openCb, close as closeCb, read as readCb, write as writeCb, writev as writevCb, ftruncate as ftruncateCb, fsync as fsyncCb, fstat as fstatCb } from 'node:fs';
import { promisify } from 'node:util';
import type { FileEntry } from '../meta/entry.js';
import type { WriteBehind } from './write-behind.js';
import type { SequentialHasher } from '../content/sequential-hasher.js';

/** Raw fds, not FileHandles: a FileHandle closed by GC would pull an fd from under FUSE. */
export const fdOpen = promisify(openCb);
export const fdRead = promisify(readCb);
export const fdWrite = promisify(writeCb);
export const fdWritev = promisify(writevCb);
export const fdTruncate = promisify(ftruncateCb);
export const fdClose = promisify(closeCb);
export const fdSync = promisify(fsyncCb);
export const fdStat = promisify(fstatCb);

/** Bytes a source gave for `buf`: none to copy when it wrote them into buf itself. */
function into(buf: Buffer, got: Buffer): number {
  if (got.buffer === buf.buffer && got.byteOffset === buf.byteOffset) return got.length;
  return got.copy(buf, 0);
}

export class OpenFile {
  /** Current path; null once the file was unlinked while open (then its changes are dropped). */
  path: string | null;
  /** Content this handle took whole by copy_file_range: pinned until the handle goes. */
  clone: string | null = null;
  /** The inode record of a hard-linked file: where its changes go once `path` is gone. */
  inode: string | null = null;
  readFd: number | null = null;
  tmpPath: string | null = null;
  tmpFd: number | null = null;
  /** Small files are written in memory (capacity beyond `size` is kept zeroed), then stored at once. */
  mem: Buffer | null = null;
  /** With a temp file: background writes, and hashing while writing front to back. */
  wb: WriteBehind | null = null;
  hasher: SequentialHasher | null = null;
  /** End of the front-to-back run written since the handle was empty; -1 once broken. */
  seqEnd: number;
  dirty = false;
  /** Set once the handle's changes could not be kept: every later write, flush and fsync reports it. */
  failed: Error | null = null;
  size: number;
  mtime: number;
  private chain: Promise<unknown> = Promise.resolve();
  /** For a version this node does not hold: reads it from peers. */
  remote: ((start: number, end: number, signal?: AbortSignal, into?: Buffer) => Promise<Buffer>) | null = null;
  /**
   * Verification on read (read-verify.ts) of the stored copy `fd`: resolves null
   * once bytes [start, end) there are good, or with the bytes from peers where the copy left the
   * store meanwhile; EIO where neither. `again` forgets what was verified (the disk failed a read).
   */
  verify: { fd: number; check: (start: number, end: number, signal?: AbortSignal, into?: Buffer) => Promise<Buffer | null>; again: (start: number, end: number) => void } | null = null;

  constructor(readonly id: number, path: string, readonly writable: boolean, public base: FileEntry | null) {
    this.path = path;
    this.size = base?.info.length ?? 0;
    this.seqEnd = this.size === 0 ? 0 : -1;
    this.mtime = base?.mtime ?? Date.now();
  }

  /** Runs handle operations one at a time, so a flush never hashes a file that is being written. */
  serial<T>(fn: () => Promise<T>): Promise<T> {
    const next = this.chain.then(fn, fn);
    this.chain = next.catch(() => undefined);
    return next;
  }

  /** Reads up to len bytes at pos, looping over short reads; 0 at end of file. */
  async read(buf: Buffer, len: number, pos: number, signal?: AbortSignal): Promise<number> {
    const end = Math.min(len, Math.max(0, this.size - pos));
    if (this.mem) return end > 0 ? this.mem.copy(buf, 0, pos, pos + end) : 0;
    if (this.remote && this.tmpFd === null && end > 0) return into(buf, await this.remote(pos, pos + end, signal, buf));
    const fd = this.tmpFd ?? this.readFd;
    if (fd === null || end <= 0) return 0;
    const v = this.verify?.fd === fd ? this.verify : null;
    for (let attempt = 0; ; attempt++) {
      if (v) {
        const fromPeers = await v.check(pos, pos + end, signal, buf);
        if (fromPeers) return into(buf, fromPeers);
      }
      let done = 0;
      try {
        while (done < end) {
          const { bytesRead } = await fdRead(fd, buf, done, end - done, pos + done);
          if (!bytesRead) break;
          done += bytesRead;
        }
      } catch (e) {
        if (!v || attempt > 0) throw e;
        v.again(pos, pos + end); // a disk error under verified pieces: check (and repair) again
        continue;
      }
      // A stored copy shorter than its size lost bytes: repaired as a bad piece would be.
      if (v && done < end && attempt === 0) {
        v.again(pos, pos + end);
        continue;
      }
      return done;
    }
  }

  async closeFds(): Promise<void> {
    for (const fd of [this.readFd, this.tmpFd]) if (fd !== null) await fdClose(fd).catch(() => {});
    this.readFd = null;
    this.tmpFd = null;
    this.verify = null;
  }
}

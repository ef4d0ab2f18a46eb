// Open files of a node: handles, copy on write, small files in memory, write-behind to temp
// files, and turning a handle's changes into stored content plus a namespace entry on close.
// A close (flush) or fsync returns only once everything needed to keep the file worked: the
// temp file's writes, hashing, storing, the journal append. When one fails (a full disk), the
// caller gets the system's errno (ENOSPC, else EIO), nothing of the handle's changes is
// published (the version before them stays; for a new file, the empty file its create made),
// and the handle keeps reporting it at every later write, flush and fsync.
import { constants as fsc } from 'node:fs';
import { copyFile, unlink, writeFile } from 'node:fs/promises';
import { FsError } from '../util/errors.js';
import type { Logger } from '../util/log.js';
import type { ContentStore } from '../content/store.js';
import { hashBuffer, hashFile, INLINE_MAX } from '../content/hasher.js';
import { ContentId, Info, infoHash, pieceLengthFor } from '../content/metainfo.js';
import { SequentialHasher } from '../content/sequential-hasher.js';
import type { Namespace } from '../meta/namespace.js';
import { isValidAt, type FileEntry } from '../meta/entry.js';
import type { Keep, Owner, RemoteContent, Stat } from './fs-api.js';
import { OpenFile, fdClose, fdOpen, fdStat, fdSync, fdTruncate } from './open-file.js';
import { WriteBehind } from './write-behind.js';
import { loadFileOps } from '../native/fileops.js';
import { copySparse } from './sparse-copy.js';
import { constants } from 'node:os';

/** An errno from a native call, as an error the FUSE layer maps back. */
function errnoError(errno: number, what: string): Error {
  const code = Object.entries(constants.errno).find(([, v]) => v === errno)?.[0] ?? 'EIO';
  return Object.assign(new Error(`${code}: ${what}`), { code });
}
import type { ContentKeeper } from './content-keeper.js';
import type { ReadVerifier } from './read-verify.js';

/** Errors that name why a change could not be kept; anything else is reported as EIO. */
const KEEP_ERRNOS = new Set(['ENOSPC', 'EDQUOT', 'EIO', 'EROFS', 'EFBIG']);

/** The error a writer sees when its changes could not be kept: the system's errno, or EIO. */
function keepError(e: unknown, path: string | null): Error {
  const code = (e as NodeJS.ErrnoException)?.code;
  const errno = code && KEEP_ERRNOS.has(code) ? code : 'EIO';
  const why = errno === 'ENOSPC' || errno === 'EDQUOT' ? 'the disk of this node is full; free space and write again' : (e as Error)?.message;
  return Object.assign(new Error(`${errno}: ${path ?? 'file'} not stored: ${why}`), { code: errno });
}

/** O_ACCMODE: 3 on Linux and FreeBSD; node's fs.constants does not export it. */
const O_ACCMODE = 3;
export const EMPTY_INFO: Info = { length: 0, pieceLength: pieceLengthFor(0), pieces: Buffer.alloc(0) };
export const EMPTY_ID = infoHash(EMPTY_INFO);

export interface FilesContext {
  ns: Namespace;
  store: ContentStore;
  keeper: ContentKeeper;
  nodeId: string;
  uid: number;
  gid: number;
  log: Logger;
  /** Content from peers, once the node is in a cluster. */
  remote: RemoteContent | null;
  /** Replication's choice of disks for new content (the entry's `at`), once it runs. */
  placer?: Placer | null;
  /** Checks stored pieces before reads get them (null: --no-verify-reads). */
  verifier?: ReadVerifier | null;
  /** Told of every stored content a handle opens for reading (the read cache's recency). */
  used?: ((id: ContentId) => void) | null;
}

/** The disks new content of `bytes` at `path` (null: a name that went) should go to, or none. */
export type Placer = (path: string | null, id: ContentId, bytes: number) => string[] | undefined;

export class OpenFiles {
  private handles = new Map<number, OpenFile>();
  private nextHandle = 1;
  private dirtyCount = 0;

  constructor(private readonly c: FilesContext) {}

  setRemote(remote: RemoteContent | null): void {
    this.c.remote = remote;
  }

  setPlacer(placer: Placer | null): void {
    this.c.placer = placer;
  }

  setUsed(used: ((id: ContentId) => void) | null): void {
    this.c.used = used;
  }

  // ---- what the rest of the node needs to know about open files ---------------------------

  /** A file being written shows its current size and mtime, as on a local filesystem. */
  overlay(path: string, st: Stat): Stat {
    if (!this.dirtyCount) return st;
    for (const h of this.handles.values()) {
      if (h.dirty && h.path === path) {
        st.size = h.size;
        st.mtime = h.mtime;
      }
    }
    return st;
  }

  /** Attributes through a handle, for a file whose path is gone (unlinked while open). */
  fstat(fh: number): Stat {
    const h = this.handle(fh);
    // A hard-linked file shows its record as its other names have it (a chmod through one of them).
    const rec = h.inode ? this.c.ns.tree.inodes.get(h.inode) : undefined;
    const b = rec?.entry.type === 'file' ? rec.entry : h.base;
    if (!b) throw new FsError('EBADF', String(fh));
    return { type: 'file', mode: b.mode, uid: b.uid, gid: b.gid, size: h.size, mtime: h.mtime, ctime: b.ctime, atime: b.atime ?? b.mtime };
  }

  /**
   * Handles on a path that is removed or replaced keep their bytes but store nothing, unless
   * `inode` says the name was one of a hard-linked file that other names keep: they store there.
   */
  detach(path: string, inode?: string): void {
    for (const h of this.handles.values()) {
      if (h.path === path && inode) h.inode = inode;
      if (h.path === path || h.path?.startsWith(path + '/')) h.path = null;
    }
  }

  /** The file at `path` was hard-linked: its handles store into inode `id` from now on. */
  linked(path: string, id: string): void {
    for (const h of this.handles.values()) if (h.path === path) h.inode = id;
  }

  moved(from: string, to: string): void {
    for (const h of this.handles.values()) {
      if (h.path === from) h.path = to;
      else if (h.path?.startsWith(from + '/')) h.path = to + h.path.slice(from.length);
    }
  }

  /** utimens on a file being written: its close stores that mtime. */
  setMtime(path: string | { inode: string }, mtime: number): void {
    for (const h of this.handles.values()) if (h.dirty && (typeof path === 'string' ? h.path === path : h.inode === path.inode)) h.mtime = mtime;
  }

  // ---- handle operations -----------------------------------------------------------------

  private fileAt(path: string): FileEntry {
    const n = this.c.ns.get(path);
    if (!n) throw new FsError('ENOENT', path);
    if (n.entry.type === 'dir') throw new FsError('EISDIR', path);
    if (n.entry.type !== 'file') throw new FsError('EINVAL', path);
    return n.entry;
  }

  private handle(fh: number): OpenFile {
    const h = this.handles.get(fh);
    if (!h) throw new FsError('EBADF', String(fh));
    return h;
  }

  private async newHandle(path: string, writable: boolean, base: FileEntry): Promise<OpenFile> {
    const h = new OpenFile(this.nextHandle, path, writable, base);
    const n = this.c.ns.get(path);
    if (n?.kind === 'leaf' && n.rec) h.inode = n.rec.id;
    this.nextHandle = this.nextHandle >= 0x7fffffff ? 1 : this.nextHandle + 1;
    await this.readFrom(h, base, path);
    this.handles.set(h.id, h);
    return h;
  }

  /** Where a handle reads the version `base` from: memory (small, not yet stored), the store, or peers. */
  private async readFrom(h: OpenFile, base: FileEntry, path: string): Promise<void> {
    const small = this.c.keeper.small(base.id);
    if (small) {
      h.mem = Buffer.alloc(Math.max(4096, small.length));
      small.copy(h.mem);
    } else if (base.info.length > 0) {
      this.c.used?.(base.id);
      try {
        h.readFd = await this.c.store.openRead(base.id);
        this.verifyReads(h, base, h.readFd);
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e;
        const remote = this.c.remote;
        if (!remote) throw new FsError('EIO', `content of ${path} is not on this node`);
        h.remote = (start, end, signal, into) => remote.read(base.id, base.info, start, end, signal, into);
      }
    }
  }

  /** Reads of the stored copy `fd` go through verification on read, if it is on. */
  private verifyReads(h: OpenFile, base: FileEntry, fd: number): void {
    const v = this.c.verifier;
    if (!v) return;
    h.verify = {
      fd,
      check: async (s, e, signal, into) => {
        try {
          await v.ensure(base.id, base.info, s, e);
          return null;
        } catch (err) {
          // The copy left the store while open (dropped, evicted): its bytes are at the members.
          const remote = this.c.remote;
          if (remote && !(await this.c.store.has(base.id))) return remote.read(base.id, base.info, s, e, signal, into);
          throw err;
        }
      },
      again: (s, e) => v.forget(base.id, base.info, s, e),
    };
  }

  async open(path: string, flags: number): Promise<number> {
    const writable = (flags & O_ACCMODE) !== fsc.O_RDONLY;
    const h = await this.newHandle(path, writable, this.fileAt(path));
    if (writable && flags & fsc.O_TRUNC) await h.serial(() => this.resize(h, 0));
    return h.id;
  }

  async create(path: string, mode: number, owner?: Owner, xattrs?: Record<string, Buffer>): Promise<number> {
    const now = Date.now();
    const { nodeId } = this.c;
    const { uid, gid } = owner ?? this.c;
    const entry: FileEntry = { type: 'file', info: EMPTY_INFO, id: EMPTY_ID, mode: mode & 0o7777, uid, gid, mtime: now, ctime: now, node: nodeId };
    if (xattrs) entry.xattrs = xattrs;
    if (this.c.ns.get(path)?.kind === 'dir') throw new FsError('EISDIR', path);
    // Journaled at once (one write(2)): a disk too full for it fails the create, not a later close.
    await this.c.ns.apply({ o: 'put', p: path, e: entry });
    return (await this.newHandle(path, true, entry)).id;
  }

  localContent(fh: number): { fd: number; content: string } | null {
    const h = this.handles.get(fh);
    if (!h || h.writable || h.readFd === null || h.remote || h.mem || h.tmpFd !== null || !h.base || h.base.info.length === 0) return null;
    if (h.verify && (h.verify.fd !== h.readFd || !this.c.verifier?.verified(h.base.id, h.base.info))) return null;
    return { fd: h.readFd, content: h.base.id };
  }

  read(fh: number, buf: Buffer, len: number, pos: number, signal?: AbortSignal): Promise<number> {
    const h = this.handle(fh);
    // Read-only handles never change their fds, so they need no ordering.
    if (!h.writable) return h.read(buf, len, pos, signal);
    return h.serial(async () => {
      try {
        if (!h.failed) await this.guard(h, () => h.wb?.drain());
      } catch (e) {
        if (!h.failed) throw e;
      }
      if (h.failed) throw Object.assign(new Error(`EIO: the changes made through this handle were lost: ${h.failed.message}`), { code: 'EIO' });
      return h.read(buf, len, pos, signal);
    });
  }

  write(fh: number, buf: Buffer, len: number, pos: number, keep?: Keep): Promise<number> {
    const h = this.handle(fh);
    if (!h.writable) throw new FsError('EBADF', 'not open for writing');
    return h.serial(async () => {
      if (h.failed) throw h.failed;
      if (h.seqEnd === pos) h.seqEnd += len;
      else this.breakSequence(h);
      if (h.tmpFd === null && pos + len <= INLINE_MAX && (await this.ensureMem(h))) {
        const mem = this.growMem(h, pos + len);
        buf.copy(mem, pos, 0, len);
      } else {
        await this.ensureTemp(h);
        // A background write that failed comes out here (or at the next flush): like the
        // kernel's errseq, the writer is told at its next call.
        await this.guard(h, () => h.wb!.write(buf, len, pos, keep));
      }
      this.markDirty(h);
      h.size = Math.max(h.size, pos + len);
      h.mtime = Date.now();
      return len;
    });
  }

  ftruncate(fh: number, size: number): Promise<void> {
    const h = this.handle(fh);
    if (!h.writable) throw new FsError('EBADF', 'not open for writing');
    return h.serial(() => this.resize(h, size));
  }

  /** Runs a step on the handle's temp file; a write-behind failure there means written bytes are gone. */
  private async guard<T>(h: OpenFile, fn: () => Promise<T> | T | undefined): Promise<T | undefined> {
    try {
      return await fn();
    } catch (e) {
      if (h.wb?.failed) throw await this.lose(h, e);
      throw e;
    }
  }

  /**
   * A handle whose changes cannot be kept: they are dropped (the temp file's space goes back
   * to the disk at once), the version before them stays, and the error sticks to the handle.
   */
  private async lose(h: OpenFile, e: unknown): Promise<Error> {
    if (h.failed) return h.failed;
    h.failed = keepError(e, h.path);
    this.c.log.warn('write.failed', { path: h.path, error: (e as Error)?.message });
    if (h.dirty) {
      h.dirty = false;
      this.dirtyCount--;
    }
    // fstat through the handle shows the version that stays.
    h.size = h.base?.info.length ?? 0;
    h.mtime = h.base?.mtime ?? h.mtime;
    const { wb, hasher } = h;
    h.wb = null;
    h.hasher = null;
    h.mem = null;
    await wb?.drain().catch(() => {});
    if (h.tmpFd !== null) await fdClose(h.tmpFd).catch(() => {});
    h.tmpFd = null;
    if (h.tmpPath) await unlink(h.tmpPath).catch(() => {});
    h.tmpPath = null;
    // By the time the writer hears of it, the space of the lost copy is back (no worker holds it open).
    hasher?.invalidate();
    await hasher?.idle();
    return h.failed;
  }

  /**
   * fallocate(2): on the handle's temp file (made first, as for a write), so holes punched and
   * ranges zeroed are in the content it stores, and space reserved is the disk's. Small files in
   * memory zero or grow there.
   */
  fallocate(fh: number, offset: number, length: number, mode: number): Promise<void> {
    const h = this.handle(fh);
    if (!h.writable) throw new FsError('EBADF', 'not open for writing');
    const KEEP_SIZE = 1, PUNCH_HOLE = 2, ZERO_RANGE = 0x10;
    if (![0, KEEP_SIZE, PUNCH_HOLE | KEEP_SIZE, ZERO_RANGE, ZERO_RANGE | KEEP_SIZE].includes(mode)) throw new FsError('EOPNOTSUPP', `fallocate mode ${mode}`);
    if (offset < 0 || length <= 0) throw new FsError('EINVAL', 'fallocate range');
    return h.serial(async () => {
      if (h.failed) throw h.failed;
      const end = offset + length;
      const grows = !(mode & KEEP_SIZE) && end > h.size;
      const zeroes = (mode & (PUNCH_HOLE | ZERO_RANGE)) !== 0;
      if (!grows && !zeroes && h.tmpFd === null) return; // a reservation of what is kept in memory or stored
      if (h.tmpFd === null && (grows ? end : h.size) <= INLINE_MAX && (await this.ensureMem(h))) {
        const mem = this.growMem(h, Math.max(h.size, grows ? end : 0));
        if (zeroes) mem.fill(0, Math.min(offset, h.size), Math.min(end, Math.max(h.size, grows ? end : h.size)));
      } else {
        const fd = await this.ensureTemp(h);
        await this.guard(h, () => h.wb!.drain());
        const rc = loadFileOps().fallocate(fd, mode, offset, length);
        if (rc < 0) throw errnoError(-rc, 'fallocate');
      }
      if (zeroes || grows) {
        this.breakSequence(h);
        h.mtime = Date.now();
      }
      if (grows) h.size = end;
      this.markDirty(h);
    });
  }

  /** SEEK_DATA / SEEK_HOLE: from the file the handle reads (holes punched or never written); content in memory or at peers is all data. */
  seekData(fh: number, offset: number, whence: number): Promise<number> {
    const h = this.handle(fh);
    if (whence !== 3 && whence !== 4) throw new FsError('EINVAL', `whence ${whence}`);
    return h.serial(async () => {
      if (offset < 0) throw new FsError('EINVAL', 'offset');
      if (offset >= h.size) throw new FsError('ENXIO', 'past the end');
      if (h.tmpFd !== null) await this.guard(h, () => h.wb?.drain());
      const fd = h.mem ? null : h.tmpFd ?? h.readFd;
      if (fd === null) return whence === 3 ? offset : h.size;
      const at = loadFileOps().seek(fd, whence, offset);
      if (at < 0) {
        // No data past offset in what is on disk (a file ending in a hole): the rest is a hole.
        if (at === -constants.errno.ENXIO && whence === 4) return h.size;
        throw errnoError(-at, 'lseek');
      }
      return Math.min(at, h.size);
    });
  }

  /**
   * copy_file_range(2). The whole of a stored version onto an empty (or shorter) file is a clone:
   * the target takes the same content id, and nothing is read or stored. Anything else is copied
   * through reads and writes.
   */
  async copyRange(fhIn: number, offIn: number, fhOut: number, offOut: number, len: number): Promise<number> {
    const src = this.handle(fhIn);
    const dst = this.handle(fhOut);
    if (!dst.writable) throw new FsError('EBADF', 'not open for writing');
    const b = src.base;
    if (src !== dst && !src.dirty && !src.failed && b && b.info.length > 0 && offIn === 0 && offOut === 0 && len >= b.info.length && dst.size <= b.info.length) {
      const cloned = await dst.serial(async () => {
        if (dst.failed) throw dst.failed;
        if (dst.size > b.info.length || src.dirty) return false; // changed while waiting: copy instead
        await this.dropWorkingCopy(dst);
        const base: FileEntry = { ...(dst.base ?? b), info: b.info, id: b.id };
        if (b.alloc !== undefined) base.alloc = b.alloc;
        else delete base.alloc;
        await this.readFrom(dst, base, dst.path ?? 'file');
        // Kept until the handle goes: the clone's content must outlive its source's entry.
        if (dst.clone) this.c.keeper.unpin(dst.clone);
        this.c.keeper.pin((dst.clone = b.id));
        dst.base = base;
        dst.size = b.info.length;
        dst.mtime = Date.now();
        dst.seqEnd = -1;
        this.markDirty(dst);
        return true;
      });
      if (cloned) return b.info.length;
    }
    let done = 0;
    const chunk = Buffer.allocUnsafe(Math.min(len, 1 << 20));
    while (done < len) {
      const n = await this.read(fhIn, chunk, Math.min(chunk.length, len - done), offIn + done);
      if (!n) break;
      await this.write(fhOut, Buffer.from(chunk.subarray(0, n)), n, offOut + done);
      done += n;
    }
    return done;
  }

  /** A handle's working copy goes (its temp file, memory copy, fds): it is about to read another version. */
  private async dropWorkingCopy(h: OpenFile): Promise<void> {
    const { wb, hasher } = h;
    h.wb = null;
    h.hasher = null;
    h.mem = null;
    h.remote = null;
    await wb?.drain().catch(() => {});
    hasher?.invalidate();
    await hasher?.idle();
    await h.closeFds();
    if (h.tmpPath) await unlink(h.tmpPath).catch(() => {});
    h.tmpPath = null;
  }

  async truncate(path: string, size: number): Promise<void> {
    // Handles whose changes were lost store nothing: truncate(2) acts on what the others will store.
    const writers = [...this.handles.values()].filter((h) => h.writable && h.path === path && !h.failed);
    if (writers.length) {
      // Like a local inode: truncate(2) acts on what the open writers will store.
      await Promise.all(writers.map((h) => h.serial(() => this.resize(h, size))));
      return;
    }
    const h = await this.newHandle(path, true, this.fileAt(path));
    try {
      await h.serial(() => this.resize(h, size));
    } finally {
      await this.release(h.id);
    }
  }

  flush(fh: number): Promise<void> {
    const h = this.handle(fh);
    return h.serial(() => this.commit(h));
  }

  fsync(fh: number): Promise<void> {
    const h = this.handle(fh);
    return h.serial(async () => {
      await this.commit(h, true);
      // The entry is published by now; a failure here is reported (EIO) and the entry stays
      // (it is in the journal, so it survives a crash of the process, if not a power loss).
      try {
        if (h.readFd !== null) await fdSync(h.readFd);
        // Its name in the store too; a small file's stored copy before a commit drops the journal that holds its bytes.
        if (h.base) await this.c.keeper.keepDurable(h.base.id, h.readFd !== null);
        await this.c.ns.sync();
      } catch (e) {
        throw keepError(e, h.path);
      }
    });
  }

  async release(fh: number): Promise<void> {
    const h = this.handle(fh);
    await h.serial(async () => {
      try {
        // A failure was reported at a write, flush or fsync already; nothing is left to store.
        if (!h.failed) await this.commit(h);
      } finally {
        this.handles.delete(fh);
        if (h.clone) this.c.keeper.unpin(h.clone);
        if (h.dirty) this.dirtyCount--;
        await h.closeFds();
        if (h.tmpPath) await unlink(h.tmpPath).catch(() => {});
      }
    });
  }

  async closeAll(): Promise<void> {
    for (const fh of [...this.handles.keys()]) await this.release(fh).catch(() => {});
  }

  // ---- the working copy -------------------------------------------------------------------

  private async resize(h: OpenFile, size: number): Promise<void> {
    if (h.failed) throw h.failed;
    if (size === 0 && h.tmpFd === null) {
      // O_TRUNC and friends: nothing of the old version is kept, so start small and in memory.
      h.mem = Buffer.alloc(4096);
    } else if (h.tmpFd === null && size <= INLINE_MAX && (await this.ensureMem(h))) {
      const mem = this.growMem(h, size);
      if (size < h.size) mem.fill(0, size, h.size); // keep the spare capacity zeroed
    } else {
      const fd = await this.ensureTemp(h, size);
      await this.guard(h, () => h.wb!.drain());
      await fdTruncate(fd, size);
    }
    if (size === 0) {
      h.seqEnd = 0; // empty again: a front-to-back rewrite can be hashed as it goes
      if (h.tmpPath) h.hasher = new SequentialHasher(h.tmpPath);
    } else if (size !== h.seqEnd) this.breakSequence(h);
    h.size = size;
    h.mtime = Date.now();
    this.markDirty(h);
  }

  private breakSequence(h: OpenFile): void {
    h.seqEnd = -1;
    h.hasher?.invalidate();
  }

  private markDirty(h: OpenFile): void {
    if (!h.dirty) this.dirtyCount++;
    h.dirty = true;
  }

  /** Small versions are copied into memory on the first change; false if this one is too big. */
  private async ensureMem(h: OpenFile): Promise<boolean> {
    if (h.mem) return true;
    const base = h.base?.info.length ?? 0;
    if (base > INLINE_MAX) return false;
    const data = Buffer.alloc(Math.max(4096, h.size));
    if (base > 0 && h.size > 0) await h.read(data, h.size, 0);
    h.mem = data;
    return true;
  }

  private growMem(h: OpenFile, size: number): Buffer {
    let mem = h.mem!;
    if (size > mem.length) {
      const next = Buffer.alloc(Math.min(INLINE_MAX, Math.max(size, mem.length * 2)));
      mem.copy(next, 0, 0, h.size);
      h.mem = mem = next;
    }
    return mem;
  }

  /** Copy on write: the first change gives the handle a private temp copy of its version. */
  private async ensureTemp(h: OpenFile, keep = Infinity): Promise<number> {
    if (h.tmpFd !== null) return h.tmpFd;
    const tmp = this.c.store.tempPath();
    let have = 0;
    let fd: number;
    try {
      if (h.mem) {
        // Grown past the in-memory limit: spill to a temp file and go on there.
        await writeFile(tmp, h.mem.subarray(0, h.size), { mode: 0o600 });
        have = h.size;
      } else if (h.base && h.base.info.length > 0 && keep > 0 && h.size > 0) {
        // Changing a version held elsewhere: fetch it whole first (copy on write needs all of it).
        if (h.remote && !(await this.c.store.has(h.base.id))) await this.c.remote!.fetch(h.base.id, h.base.info);
        // A new version is never made of bad bytes: the whole stored copy is checked (and repaired) first.
        if (this.c.verifier && h.verify) await this.c.verifier.ensure(h.base.id, h.base.info, 0, h.base.info.length);
        // Holes kept where it has them; else a reflink where the filesystem can, a plain copy elsewhere.
        const src = this.c.store.path(h.base.id);
        if (!(await copySparse(src, tmp, h.base.info.length))) await copyFile(src, tmp, fsc.COPYFILE_FICLONE);
      }
      fd = await fdOpen(tmp, fsc.O_RDWR | fsc.O_CREAT, 0o600);
    } catch (e) {
      // Nothing of the handle is lost (its bytes are where they were): this write fails, a later one may work.
      await unlink(tmp).catch(() => {});
      throw e;
    }
    h.mem = null;
    h.tmpPath = tmp;
    h.tmpFd = fd;
    if (h.seqEnd >= 0) {
      h.hasher = new SequentialHasher(tmp);
      h.hasher.advance(have);
    }
    h.wb = new WriteBehind(fd, (_pos, end) => { if (h.seqEnd >= 0) h.hasher?.advance(end); });
    return fd;
  }

  /**
   * Turns a handle's changes into stored content and a namespace entry (on close and fsync);
   * when that fails the changes are lost to the handle (see lose()) and the caller is told.
   */
  private async commit(h: OpenFile, sync = false): Promise<void> {
    if (h.failed) throw h.failed;
    // Clean, or unlinked while open: nothing to store (a create() was journaled when it ran).
    if (!h.dirty || (h.path === null && !h.inode)) return;
    try {
      await this.keep(h, sync);
    } catch (e) {
      throw await this.lose(h, e);
    }
  }

  private async keep(h: OpenFile, sync: boolean): Promise<void> {
    const { ns, store, keeper } = this.c;
    let info: Info;
    let inline: Buffer | undefined;
    if (h.mem) {
      // Small: the bytes ride in the journal entry (one write before close returns) and reach
      // the store in the background, before the commit that drops that journal.
      inline = Buffer.from(h.mem.subarray(0, h.size));
      info = hashBuffer(inline);
    } else if (!h.tmpPath) {
      // A clone (copy_file_range of a whole version): that version's content as it is.
      info = h.base!.info;
    } else {
      await h.wb!.drain();
      info = h.hasher ? await h.hasher.finish(h.size) : await hashFile(h.tmpPath!, h.size);
    }
    const id = infoHash(info);
    // A file with holes keeps them (the store takes the temp file as it is): say what it takes.
    let alloc: number | undefined = !h.mem && !h.tmpPath ? h.base?.alloc : undefined;
    if (h.tmpFd !== null && h.tmpFd !== undefined && info.length > 0) {
      const st = await fdStat(h.tmpFd);
      if (st.blocks * 512 < Math.ceil(info.length / 4096) * 4096) alloc = st.blocks * 512;
    }
    keeper.pin(id);
    let stored = false;
    let published = false;
    try {
      if (h.tmpPath) {
        if (info.length > 0) {
          // fsync(2): the content is on the disk before the entry that names it is journaled.
          if (sync) await fdSync(h.tmpFd!);
          await store.put(h.tmpPath, id);
          stored = true;
          // ...and so is its name in the store (the rename), for an fsync that must survive a power loss.
          if (sync) await store.sync(id, true);
        } else await unlink(h.tmpPath);
        h.tmpPath = null;
      }
      const path = h.path;
      // A hard-linked file whose name went while open: another name keeps it.
      const rec = path === null && h.inode ? ns.tree.inodes.get(h.inode) : undefined;
      const cur = path === null ? rec?.entry : ns.get(path)?.entry;
      const attrs = cur && cur.type === 'file' ? cur : h.base!;
      // A write moves mtime, not atime: the access time stays what it showed before (noatime).
      const entry: FileEntry = { type: 'file', info, id, mode: attrs.mode, uid: attrs.uid, gid: attrs.gid, mtime: h.mtime, ctime: Date.now(), atime: attrs.atime ?? attrs.mtime, node: this.c.nodeId };
      if (alloc !== undefined) entry.alloc = alloc;
      const at = info.length > 0 ? this.c.placer?.(path, id, info.length) : undefined;
      if (at?.length && isValidAt(at)) entry.at = at; // never an entry the peers (or a restart) would refuse
      if (attrs.xattrs) entry.xattrs = attrs.xattrs; // they belong to the file, not to one version of its bytes
      if (path !== null || rec) {
        try {
          // Journal and tree in one step: throws ENOSPC/EIO with nothing published.
          const d = inline?.length ? inline : undefined;
          await ns.apply(path !== null ? { o: 'put', p: path, e: entry, d } : { o: 'iput', p: rec!.id, e: entry, d });
          published = true;
        } catch (e) {
          if (!(e instanceof FsError)) throw e;
          // The path vanished under the writer (its directory was removed): last writer loses.
          this.c.log.warn('write.dropped', { path, error: e.message });
        }
      }
      if (published && inline?.length) void keeper.storeSmall(id, inline);
      // What the handle wrote is now the stored version; it reads from there (memory, or the
      // temp fd, which now names the stored file).
      const oldFd = h.tmpFd === null ? null : h.readFd;
      if (h.tmpFd !== null) h.readFd = h.tmpFd;
      h.tmpFd = null;
      h.wb = null;
      h.hasher = null;
      h.seqEnd = -1;
      h.base = entry;
      h.dirty = false;
      this.dirtyCount--;
      if (oldFd !== null) {
        if (h.verify?.fd === oldFd) h.verify = null; // its number may come back as another file's
        await fdClose(oldFd).catch(() => {});
      }
    } finally {
      keeper.unpin(id);
      // Stored for an entry that never came to be: its space goes back now (no commit needed,
      // no entry ever named it), unless other entries hold the same bytes.
      if (stored && !published) await keeper.discard(id);
    }
  }
}

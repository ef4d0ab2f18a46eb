// Translates FUSE requests (node ids, packed structs) into FileSystem calls (paths, numbers)
// and back. No Git, no sockets, no sync I/O on the mount (this process serves it).
import { constants } from 'node:os';
import { constants as fsConstants } from 'node:fs';
import type { AttrTarget, FileSystem, Stat } from '../node/fs-api.js';
import { FsError, errnoOf } from '../util/errors.js';
import type { Logger } from '../util/log.js';
import { ReadBuffers } from './read-buffers.js';
import { Inodes, Inode } from './inodes.js';
import { Listings } from './listing.js';
import { Passthrough, BackingFiles } from './passthrough.js';
import {
  Attr, ENTRY_OUT_SIZE, FOPEN_DIRECT_IO, FOPEN_KEEP_CACHE, Fattr, GETATTR_FH, IN_HEADER, Init, Init2, MAJOR, MINOR,
  NOTIFY_INVAL_ENTRY, NOTIFY_INVAL_INODE, OPEN_OUT_SIZE, Op, RENAME_NOREPLACE, S_IFBLK, S_IFCHR, S_IFDIR, S_IFIFO, S_IFLNK, S_IFMT, S_IFREG, S_IFSOCK, attrOut, entryOut,
  WRITE_IN_SIZE, invalEntryOut, invalInodeOut, openOut, putU64, u64,
} from './proto.js';
import { joinPath } from '../meta/names.js';
import { checkOpen } from './access.js';
import type { Handler, Request } from './session.js';

const E = constants.errno;
/**
 * Seconds the kernel may cache names and attributes (libfuse's default); peers' changes are
 * invalidated at once. DELUGEFS_ATTR_TTL_S: longer, for tests that show an invalidation is sent.
 */
const TTL = Number(process.env.DELUGEFS_ATTR_TTL_S) || 1;
/** Largest write and read: 256 pages, when the kernel allows more than its default 32. */
export const MAX_WRITE = 1 << 20;
const { O_EXCL, O_APPEND, O_WRONLY, O_TRUNC, O_RDONLY } = fsConstants;
const O_ACCMODE = 3;
const utf8 = new TextDecoder('utf-8', { fatal: true });

export function toErrno(e: unknown): number {
  const n = (E as Record<string, number>)[errnoOf(e)];
  return n || E.EIO;
}

/** New files belong to the process that made them, as on any local filesystem. */
const owner = (req: Request, umask = 0) => ({ uid: req.uid, gid: req.gid, umask });

const KIND_BITS: Record<Stat['type'], number> = { file: S_IFREG, dir: S_IFDIR, symlink: S_IFLNK, fifo: S_IFIFO, socket: S_IFSOCK, chr: S_IFCHR, blk: S_IFBLK };
const SPECIAL_OF: Record<number, 'fifo' | 'socket' | 'chr' | 'blk'> = { [S_IFIFO]: 'fifo', [S_IFSOCK]: 'socket', [S_IFCHR]: 'chr', [S_IFBLK]: 'blk' };

function kindBits(st: Stat): number {
  return KIND_BITS[st.type];
}

export interface OpsOptions {
  log: Logger;
  onInit?: () => void;
  /** The connection's backing files (Linux), for passthrough; null where there are none. */
  backing?: BackingFiles | null;
  /** Passthrough wanted (it is used only if the kernel offers it and backing files can be made). */
  passthrough?: boolean;
}

export class FuseOps {
  readonly inodes = new Inodes();
  private readonly readBuffers = new ReadBuffers();
  private readonly listings: Listings;
  maxWrite = 128 * 1024;
  /** The kernel enforces POSIX ACLs (FUSE_POSIX_ACL), and leaves the umask to us (FUSE_DONT_MASK). */
  acl = false;
  private dontMask = false;
  readonly passthrough: Passthrough;

  constructor(private readonly fs: FileSystem, private readonly opts: OpsOptions) {
    this.listings = new Listings(fs, this.inodes, (ino, st) => this.attr(ino, st), TTL);
    this.passthrough = new Passthrough(opts.backing ?? null, opts.log);
  }

  /** The session's error mapping: a negative errno, EIO logged. */
  onError = (op: Op, e: unknown): number => {
    if ((e as Error)?.name === 'AbortError') return E.EINTR; // an interrupted read, answered already
    const errno = toErrno(e);
    if (errno === E.EIO) this.opts.log.error('fuse.error', { op, error: (e as Error)?.message });
    return errno;
  };

  handler: Handler = (req) => {
    switch (req.op) {
      case Op.INIT: return this.init(req);
      case Op.DESTROY: return [];
      case Op.LOOKUP: return this.lookup(req);
      case Op.FORGET: this.inodes.forget(req.nodeid, u64(req.buf, IN_HEADER)); return;
      case Op.BATCH_FORGET: return this.batchForget(req);
      case Op.GETATTR: return this.getattr(req);
      case Op.SETATTR: return this.setattr(req);
      case Op.READLINK: return [Buffer.from(this.fs.readlink(this.path(req)))];
      case Op.SYMLINK: return this.symlink(req);
      case Op.MKDIR: return this.mkdir(req);
      case Op.UNLINK: return this.remove(req, false);
      case Op.RMDIR: return this.remove(req, true);
      case Op.RENAME: return this.rename(req, IN_HEADER + 8, 0);
      case Op.RENAME2: return this.rename(req, IN_HEADER + 16, req.buf.readUInt32LE(IN_HEADER + 8));
      case Op.LINK: return this.link(req);
      case Op.MKNOD: return this.mknod(req);
      case Op.OPEN: return this.open(req);
      case Op.CREATE: return this.create(req);
      case Op.READ: return this.read(req);
      case Op.WRITE: return this.lost(req, this.write(req));
      case Op.FLUSH: return this.lost(req, this.fs.flush(u64(req.buf, IN_HEADER)).then(() => []));
      case Op.RELEASE: return this.release(req);
      case Op.FSYNC: return this.lost(req, this.fs.fsync(u64(req.buf, IN_HEADER)).then(() => []));
      case Op.OPENDIR: return [openOut(this.listings.open(this.path(req)), 0)];
      case Op.READDIR: case Op.READDIRPLUS: return [this.readdir(req)];
      case Op.RELEASEDIR: this.listings.release(u64(req.buf, IN_HEADER)); return [];
      // rename(2) then fsync(2) of the directory is how programs make a rename durable: the journal holds it.
      case Op.FSYNCDIR: return this.fs.syncNamespace().then(() => []);
      case Op.ACCESS: this.fs.stat(this.path(req)); return []; // default_permissions: the kernel checks modes
      case Op.STATFS: return this.statfs();
      case Op.SETXATTR: return this.setxattr(req);
      case Op.GETXATTR: return this.getxattr(req);
      case Op.LISTXATTR: return this.listxattr(req);
      case Op.REMOVEXATTR: return this.removexattr(req);
      case Op.FALLOCATE: return this.lost(req, this.fallocate(req));
      case Op.LSEEK: return this.lseek(req);
      case Op.COPY_FILE_RANGE: return this.lost(req, this.copyFileRange(req));
      default: throw new FsError('ENOSYS'); // locks, ioctl...: the kernel falls back or says so
    }
  };

  /**
   * Paths a peer changed: the kernel drops their cached attributes, pages and names now instead
   * of trusting them until the TTL runs out.
   */
  invalidate(paths: string[], notify: (code: number, payload: Buffer) => void, inodes: string[] = []): void {
    for (const link of inodes) for (const id of this.inodes.idsOfLink(link)) notify(NOTIFY_INVAL_INODE, invalInodeOut(id));
    for (const path of paths) {
      const id = this.inodes.idOf(path);
      if (id !== undefined) notify(NOTIFY_INVAL_INODE, invalInodeOut(id));
      const slash = path.lastIndexOf('/');
      const parent = this.inodes.idOf(slash === 0 ? '/' : path.slice(0, slash));
      if (parent !== undefined && path !== '/') notify(NOTIFY_INVAL_ENTRY, invalEntryOut(parent, path.slice(slash + 1)));
    }
  }

  /** READDIR or READDIRPLUS: the next batch of an open listing. */
  private readdir(req: Request): Buffer {
    const b = req.buf;
    return this.listings.read(u64(b, IN_HEADER), req.nodeid, this.path(req), u64(b, IN_HEADER + 8), b.readUInt32LE(IN_HEADER + 16), req.op === Op.READDIRPLUS);
  }

  // ---- helpers --------------------------------------------------------------------------

  private path(req: Request): string {
    return this.inodes.path(req.nodeid);
  }

  /** A NUL-terminated name in the request at `at`; non-UTF-8 names cannot be stored in Git paths here. */
  private name(req: Request, at: number): { name: string; end: number } {
    const nul = req.buf.indexOf(0, at);
    const end = nul < 0 || nul > req.len ? req.len : nul;
    let name: string;
    try {
      name = utf8.decode(req.buf.subarray(at, end));
    } catch {
      throw new FsError('EINVAL', 'name is not valid UTF-8');
    }
    if (Buffer.byteLength(name) > 255) throw new FsError('ENAMETOOLONG');
    return { name, end: end + 1 };
  }

  private child(req: Request, at: number): { path: string; end: number } {
    const { name, end } = this.name(req, at);
    return { path: joinPath(this.path(req), name), end };
  }

  /**
   * A node whose path is gone (unlinked while open) has no links, as on a local filesystem; a
   * hard-linked one has what its record has (names the kernel never looked up count).
   */
  private attr(ino: number, st: Stat): Attr {
    const n = this.inodes.find(ino);
    const nlink = n?.path === null ? (n.link !== undefined ? this.fs.linkCount(n.link) : 0) : st.nlink ?? 1;
    return { ino, size: st.size, mode: kindBits(st) | st.mode, uid: st.uid, gid: st.gid, mtime: st.mtime, ctime: st.ctime, nlink, rdev: st.rdev, atime: st.atime, blocks: st.blocks };
  }

  /** A counted lookup of an existing path: the kernel now holds its id. */
  private entry(path: string, st = this.fs.stat(path)): { node: Inode; out: Buffer } {
    const node = this.inodes.lookup(path, st.type, st.inode);
    return { node, out: entryOut(node.id, this.attr(node.id, st), TTL, TTL) };
  }

  // ---- requests -------------------------------------------------------------------------

  private init(req: Request): Buffer[] {
    const b = req.buf;
    const major = b.readUInt32LE(IN_HEADER);
    const kminor = b.readUInt32LE(IN_HEADER + 4);
    const readahead = b.readUInt32LE(IN_HEADER + 8);
    const kflags = b.readUInt32LE(IN_HEADER + 12);
    const out = Buffer.alloc(64);
    out.writeUInt32LE(MAJOR, 0);
    out.writeUInt32LE(Math.min(MINOR, kminor), 4);
    if (major !== MAJOR || kminor < 12) throw new Error(`kernel FUSE ${major}.${kminor} is not supported (7.12 or later needed)`);
    // Every listing carries attributes (READDIRPLUS, not the kernel's "auto" guess, which only
    // does so for the first batch): they cost the node a map lookup each, and save `ls -l`,
    // find or du one lookup round trip per name.
    // No ASYNC_DIO: with it the kernel waits for an O_DIRECT read uninterruptibly and never sends
    // INTERRUPT, so a reader waiting for an absent peer could not even be killed.
    // POSIX ACLs: the kernel enforces them, and hands the umask over so that a directory's
    // default ACL can stand in for it (posix_acl_create is the filesystem's to do).
    const want = Init.ASYNC_READ | Init.ATOMIC_O_TRUNC | Init.BIG_WRITES | Init.AUTO_INVAL_DATA | Init.PARALLEL_DIROPS | Init.MAX_PAGES
      | Init.DO_READDIRPLUS | (process.env.DELUGEFS_NO_ACL ? 0 : Init.POSIX_ACL | Init.DONT_MASK);
    // Passthrough: the kernel offers it in flags2 (6.9+); stack depth 1, the store is a plain filesystem.
    const kflags2 = kflags & Init.INIT_EXT && req.len >= IN_HEADER + 20 ? b.readUInt32LE(IN_HEADER + 16) : 0;
    const pass = !!(kflags2 & Init2.PASSTHROUGH) && !!this.opts.backing && !!this.opts.passthrough && !!this.fs.localContent;
    const flags = (kflags & want) | (pass ? Init.INIT_EXT : 0);
    this.passthrough.on = pass;
    if (pass) {
      out.writeUInt32LE(Init2.PASSTHROUGH, 32); // flags2
      out.writeUInt32LE(1, 36); // max_stack_depth
    }
    this.opts.log.info('fuse.passthrough', pass ? { on: true } : {
      on: false,
      why: !this.opts.passthrough ? 'not asked for (--passthrough)' : !this.opts.backing ? 'not on this platform'
        : !(kflags2 & Init2.PASSTHROUGH) ? 'the kernel does not offer it (Linux 6.9+ with CONFIG_FUSE_PASSTHROUGH)' : 'the filesystem cannot name local content',
    });
    this.acl = !!(flags & Init.POSIX_ACL);
    this.dontMask = !!(flags & Init.DONT_MASK);
    this.maxWrite = flags & Init.MAX_PAGES ? MAX_WRITE : 128 * 1024;
    out.writeUInt32LE(readahead, 8);
    out.writeUInt32LE(flags, 12);
    out.writeUInt16LE(64, 16); // max_background
    out.writeUInt16LE(48, 18); // congestion_threshold
    out.writeUInt32LE(this.maxWrite, 20);
    out.writeUInt32LE(1_000_000, 24); // time_gran: times are kept in milliseconds
    out.writeUInt16LE(this.maxWrite / 4096, 28); // max_pages
    this.opts.log.debug('fuse.init', { kernel: `${major}.${kminor}`, flags: flags.toString(16), maxWrite: this.maxWrite });
    queueMicrotask(() => this.opts.onInit?.());
    return [kminor < 23 ? out.subarray(0, 24) : out];
  }

  /**
   * A write, flush or fsync that failed may have lost the handle's changes while the kernel's
   * page cache still holds them: the next open of the file drops those pages.
   */
  private async lost(req: Request, p: Promise<Buffer[]>): Promise<Buffer[]> {
    try {
      return await p;
    } catch (e) {
      const node = this.inodes.find(req.nodeid);
      if (node) node.seen = null;
      throw e;
    }
  }

  private lookup(req: Request): Buffer[] {
    const { path } = this.child(req, IN_HEADER);
    return [this.entry(path).out];
  }

  private batchForget(req: Request): void {
    const count = req.buf.readUInt32LE(IN_HEADER);
    for (let i = 0, at = IN_HEADER + 8; i < count && at + 16 <= req.len; i++, at += 16) {
      this.inodes.forget(u64(req.buf, at), u64(req.buf, at + 8));
    }
  }

  /** By path; for a file whose path is gone, through the request's or any open handle. */
  private statOf(req: Request, fh: number | null): Stat {
    const node = this.inodes.get(req.nodeid);
    if (node.path !== null) {
      try {
        return this.fs.stat(node.path);
      } catch (e) {
        if (fh === null && !node.handles?.size) throw e;
      }
    }
    const via = fh ?? node.handles?.values().next().value;
    if (via === undefined) throw new FsError('ENOENT');
    return this.fs.fstat(via);
  }

  private opened(node: Inode, fh: number): void {
    (node.handles ??= new Set()).add(fh);
  }

  private async release(req: Request): Promise<Buffer[]> {
    const fh = u64(req.buf, IN_HEADER);
    try {
      await this.fs.release(fh);
    } catch (e) {
      // The kernel does not wait for this answer: a failed store at the last close is only seen here.
      this.opts.log.error('fuse.release_failed', { fh, error: (e as Error).message });
      throw e;
    } finally {
      this.inodes.find(req.nodeid)?.handles?.delete(fh);
      this.passthrough.release(fh);
    }
    return [];
  }

  private getattr(req: Request): Buffer[] {
    const flags = req.buf.readUInt32LE(IN_HEADER);
    const fh = flags & GETATTR_FH ? u64(req.buf, IN_HEADER + 8) : null;
    return [attrOut(this.attr(req.nodeid, this.statOf(req, fh)), TTL)];
  }

  private async setattr(req: Request): Promise<Buffer[]> {
    const b = req.buf;
    const at = IN_HEADER;
    const valid = b.readUInt32LE(at);
    const fh = valid & Fattr.FH ? u64(b, at + 8) : null;
    const node = this.inodes.get(req.nodeid);
    if (valid & Fattr.SIZE) {
      const size = u64(b, at + 16);
      if (fh !== null) await this.fs.ftruncate(fh, size);
      else await this.fs.truncate(this.inodes.path(req.nodeid), size);
    }
    // The path is read again after each wait: a rename may have moved it meanwhile. A file
    // unlinked while open has none: mode, owner and times of a file that is gone are not kept
    // anywhere, and succeed as on a local filesystem (ftruncate above went to its handle). A
    // hard-linked file whose looked-up names went may have others: its record takes them.
    const target = (): AttrTarget | null => node.path ?? (node.link !== undefined ? { inode: node.link } : null);
    let to = target();
    if (valid & Fattr.MODE && to !== null) await this.fs.chmod(to, b.readUInt32LE(at + 68) & 0o7777);
    to = target();
    if (valid & (Fattr.UID | Fattr.GID) && to !== null) {
      await this.fs.chown(to, valid & Fattr.UID ? b.readUInt32LE(at + 76) : -1, valid & Fattr.GID ? b.readUInt32LE(at + 80) : -1);
    }
    to = target();
    if (valid & (Fattr.MTIME | Fattr.MTIME_NOW | Fattr.ATIME | Fattr.ATIME_NOW) && to !== null) {
      // Seconds are signed: times before 1970 exist.
      const time = (set: number, now: number, secAt: number, nsecAt: number) =>
        valid & now ? Date.now() : valid & set ? Number(b.readBigInt64LE(secAt)) * 1000 + Math.floor(b.readUInt32LE(nsecAt) / 1e6) : null;
      // Either may be left out (UTIME_OMIT): it keeps what it was.
      const atime = time(Fattr.ATIME, Fattr.ATIME_NOW, at + 32, at + 56);
      const mtime = time(Fattr.MTIME, Fattr.MTIME_NOW, at + 40, at + 60);
      await this.fs.utimens(to, atime, mtime);
    }
    return [attrOut(this.attr(req.nodeid, this.statOf(req, fh)), TTL)];
  }

  private async symlink(req: Request): Promise<Buffer[]> {
    const { path, end } = this.child(req, IN_HEADER);
    const nul = req.buf.indexOf(0, end);
    const target = req.buf.toString('utf8', end, nul < 0 || nul > req.len ? req.len : nul);
    await this.fs.symlink(target, path, owner(req));
    return [this.entry(path).out];
  }

  /** fuse_link_in: the node id of the file; then the new name (in the request's node, a directory). */
  private async link(req: Request): Promise<Buffer[]> {
    const old = this.inodes.get(Number(u64(req.buf, IN_HEADER)));
    const from = this.inodes.path(old.id);
    const { path } = this.child(req, IN_HEADER + 8);
    await this.fs.link(from, path);
    // The kernel keeps its inode for the file: every name answers with that id.
    const st = this.fs.stat(path);
    if (st.inode !== undefined) this.inodes.linked(old, st.inode);
    return [this.entry(path, st).out];
  }

  /** fuse_mknod_in: mode (type and permission bits, umask applied by the kernel), rdev, umask, padding; then the name. */
  private async mknod(req: Request): Promise<Buffer[]> {
    const mode = req.buf.readUInt32LE(IN_HEADER);
    const rdev = req.buf.readUInt32LE(IN_HEADER + 4);
    const { path } = this.child(req, IN_HEADER + 16);
    const type = SPECIAL_OF[mode & S_IFMT];
    // A regular file by mknod is a create without an open; anything else is not a kind we keep.
    if (!type) throw new FsError((mode & S_IFMT) === S_IFREG ? 'EPERM' : 'EINVAL');
    await this.fs.mknod(path, type, mode & 0o7777, rdev, owner(req, this.umask(req, IN_HEADER + 8)));
    return [this.entry(path).out];
  }

  private async mkdir(req: Request): Promise<Buffer[]> {
    const mode = req.buf.readUInt32LE(IN_HEADER);
    const { path } = this.child(req, IN_HEADER + 8);
    await this.fs.mkdir(path, mode & 0o7777, owner(req, this.umask(req, IN_HEADER + 4)));
    return [this.entry(path).out];
  }

  private async remove(req: Request, dir: boolean): Promise<Buffer[]> {
    const { path } = this.child(req, IN_HEADER);
    const done = dir ? this.fs.rmdir(path) : this.fs.unlink(path);
    // The node changes its tree before its first wait: follow it now, so requests read in the
    // same burst (a create of the same name) do not meet the old id.
    if (!this.exists(path)) this.inodes.removed(path);
    await done;
    // On a full disk the node may first make room, so its tree changes only after a wait.
    if (!this.exists(path)) this.inodes.removed(path);
    return [];
  }

  private async rename(req: Request, at: number, flags: number): Promise<Buffer[]> {
    if (flags & ~RENAME_NOREPLACE) throw new FsError('EINVAL', 'rename flags other than RENAME_NOREPLACE');
    const newdir = this.inodes.path(u64(req.buf, IN_HEADER));
    const { path: from, end } = this.child(req, at);
    const { name } = this.name(req, end);
    const to = joinPath(newdir, name);
    if (flags & RENAME_NOREPLACE && this.exists(to)) throw new FsError('EEXIST', to);
    const done = this.fs.rename(from, to);
    // As for remove: the tree moved already (or nothing did, when `from` is still there).
    if (from !== to && !this.exists(from)) this.inodes.moved(from, to);
    await done;
    return [];
  }

  /** The umask a create, mkdir or mknod carries, when the kernel left applying it to us. */
  private umask(req: Request, at: number): number {
    return this.dontMask ? req.buf.readUInt32LE(at) & 0o777 : 0;
  }

  private exists(path: string): boolean {
    return this.statOrNull(path) !== null;
  }

  private statOrNull(path: string): Stat | null {
    try {
      return this.fs.stat(path);
    } catch {
      return null;
    }
  }

  /**
   * Write-only handles bypass the page cache: their data is copied once (not into the cache
   * and out again) and never read back there. Other handles keep the kernel's pages of a file
   * only while its size and mtime are unchanged (libfuse's auto_cache).
   */
  private openFlags(node: Inode, st: Stat, flags: number): number {
    if ((flags & O_ACCMODE) === O_WRONLY || flags & O_APPEND) return FOPEN_DIRECT_IO;
    const seen = `${st.size}:${st.mtime}`;
    const keep = node.seen === seen;
    node.seen = seen;
    return keep ? FOPEN_KEEP_CACHE : 0;
  }

  // ---- extended attributes (fuse_setxattr_in: size, flags; fuse_getxattr_in: size, padding) ----

  private xattrName(req: Request, at: number): string {
    const nul = req.buf.indexOf(0, at);
    const end = nul < 0 || nul > req.len ? req.len : nul;
    let name: string;
    try {
      name = utf8.decode(req.buf.subarray(at, end));
    } catch {
      throw new FsError('EOPNOTSUPP', 'attribute name is not UTF-8');
    }
    // ACLs stored where the kernel does not enforce them would mislead.
    if (name.startsWith('system.') && !this.acl) throw new FsError('EOPNOTSUPP', name);
    return name;
  }

  private async setxattr(req: Request): Promise<Buffer[]> {
    const size = req.buf.readUInt32LE(IN_HEADER);
    const flags = req.buf.readUInt32LE(IN_HEADER + 4);
    const name = this.xattrName(req, IN_HEADER + 8);
    const at = IN_HEADER + 8 + Buffer.byteLength(name) + 1;
    if (at + size > req.len) throw new FsError('EINVAL', 'short setxattr request');
    await this.fs.setxattr(this.inodes.path(req.nodeid), name, req.buf.subarray(at, at + size), flags);
    return [];
  }

  /** A value (or a list) the caller asked the size of (size 0), or that must fit in `size` (else ERANGE). */
  private sized(req: Request, data: Buffer): Buffer[] {
    const size = req.buf.readUInt32LE(IN_HEADER);
    if (size === 0) {
      const out = Buffer.alloc(8);
      out.writeUInt32LE(data.length, 0);
      return [out];
    }
    if (data.length > size) throw new FsError('ERANGE');
    return [data];
  }

  private getxattr(req: Request): Buffer[] {
    return this.sized(req, this.fs.getxattr(this.inodes.path(req.nodeid), this.xattrName(req, IN_HEADER + 8)));
  }

  private listxattr(req: Request): Buffer[] {
    const names = this.fs.listxattr(this.inodes.path(req.nodeid));
    return this.sized(req, Buffer.concat(names.map((n) => Buffer.from(`${n}\0`))));
  }

  private async removexattr(req: Request): Promise<Buffer[]> {
    await this.fs.removexattr(this.inodes.path(req.nodeid), this.xattrName(req, IN_HEADER));
    return [];
  }

  /**
   * A write or truncating open by a caller other than root clears S_ISUID, and S_ISGID where
   * group execution is on or the caller is not of the file's group (Linux since 6.2; the
   * caller's other groups are not known here, its own group is). The kernel does it itself for writes through the
   * page cache (a SETATTR first); not for handles that bypass it (write-only and O_APPEND ones
   * here) nor for an atomic O_TRUNC open, so it is done here for every one (a no-op once clear).
   */
  private async dropPrivs(req: Request, path: string | null): Promise<void> {
    if (req.uid === 0 || path === null) return;
    const st = this.statOrNull(path);
    if (!st || st.type !== 'file') return;
    const kill = (st.mode & 0o4000) | (st.mode & 0o2000 && (st.mode & 0o010 || req.gid !== st.gid) ? 0o2000 : 0);
    if (kill) await this.fs.chmod(path, st.mode & ~kill);
  }

  private async open(req: Request): Promise<Buffer[]> {
    const flags = req.buf.readUInt32LE(IN_HEADER);
    const node = this.inodes.get(req.nodeid);
    const path = this.inodes.path(req.nodeid);
    if (flags & O_TRUNC && (flags & O_ACCMODE) !== O_RDONLY) await this.dropPrivs(req, path);
    const fh = await this.fs.open(path, flags);
    this.opened(node, fh);
    const local = (flags & O_ACCMODE) === O_RDONLY ? this.fs.localContent?.(fh) ?? null : null;
    const io = await this.ioMode(node, fh, flags, this.openFlags(node, this.fs.fstat(fh), flags), local);
    return [openOut(fh, io.flags, undefined, 0, io.backing)];
  }

  /** The kernel's io mode for a new handle (passthrough.ts); a refused one is released again. */
  private async ioMode(node: Inode, fh: number, flags: number, open: number, local: { fd: number; content: string } | null): Promise<{ flags: number; backing: number }> {
    const acc = flags & O_ACCMODE;
    try {
      return this.passthrough.open(node.id, fh, open, local, acc === O_RDONLY ? 'r' : acc === O_WRONLY ? 'w' : 'rw');
    } catch (e) {
      node.handles?.delete(fh);
      await this.fs.release(fh).catch(() => {});
      throw e;
    }
  }

  private async create(req: Request): Promise<Buffer[]> {
    const b = req.buf;
    const flags = b.readUInt32LE(IN_HEADER);
    const mode = b.readUInt32LE(IN_HEADER + 4);
    const { path } = this.child(req, IN_HEADER + 16);
    let fh: number;
    const existing = this.statOrNull(path);
    if (existing) {
      // Created meanwhile (by a peer, or a race the kernel did not see): open(2) semantics,
      // with the permission check the kernel made for the directory only.
      if (flags & O_EXCL) throw new FsError('EEXIST', path);
      if (existing.type === 'dir') throw new FsError('EISDIR', path);
      await checkOpen(existing, req, flags, path);
      fh = await this.fs.open(path, flags);
    } else {
      fh = await this.fs.create(path, mode & 0o7777, owner(req, this.umask(req, IN_HEADER + 8)));
    }
    const st = this.fs.fstat(fh);
    const node = this.inodes.lookup(path, 'file');
    this.opened(node, fh);
    const out = Buffer.allocUnsafe(ENTRY_OUT_SIZE + OPEN_OUT_SIZE);
    entryOut(node.id, this.attr(node.id, st), TTL, TTL, out, 0);
    // Refused (ETXTBSY beside passthrough handles): the kernel never hears of this lookup.
    const io = await this.ioMode(node, fh, flags, this.openFlags(node, st, flags), null).catch((e) => { this.inodes.forget(node.id, 1); throw e; });
    openOut(fh, io.flags, out, ENTRY_OUT_SIZE, io.backing);
    return [out];
  }

  private async read(req: Request): Promise<Buffer[]> {
    const b = req.buf;
    const fh = u64(b, IN_HEADER);
    const offset = u64(b, IN_HEADER + 8);
    // The kernel bounds a read by max_pages of its page size (more than max_write where pages
    // are 16 or 64 KiB); a shorter answer would read as end of file.
    const size = b.readUInt32LE(IN_HEADER + 16);
    const out = this.readBuffers.take(size);
    req.after = () => this.readBuffers.give(out);
    const n = await this.fs.read(fh, out, size, offset, req.signal);
    return [out.subarray(0, n)];
  }

  private async write(req: Request): Promise<Buffer[]> {
    const b = req.buf;
    const fh = u64(b, IN_HEADER);
    const offsetIn = u64(b, IN_HEADER + 8);
    const size = b.readUInt32LE(IN_HEADER + 16);
    const flags = b.readUInt32LE(IN_HEADER + 32);
    const data = b.subarray(IN_HEADER + WRITE_IN_SIZE, IN_HEADER + WRITE_IN_SIZE + size);
    // O_APPEND appends to this handle's own version (handles are copies; the kernel's offset
    // comes from the file's shared size and would leave a hole when another handle grew it).
    const offset = flags & O_APPEND ? this.fs.fstat(fh).size : offsetIn;
    if (data.length !== size) throw new FsError('EINVAL', 'short write request');
    await this.dropPrivs(req, this.inodes.find(req.nodeid)?.path ?? null);
    const n = await this.fs.write(fh, data, size, offset, (until) => (req.held = until));
    const out = Buffer.alloc(8);
    out.writeUInt32LE(n, 0);
    return [out];
  }

  /** fuse_fallocate_in: fh, offset, length, mode. */
  private async fallocate(req: Request): Promise<Buffer[]> {
    const b = req.buf;
    await this.fs.fallocate(u64(b, IN_HEADER), u64(b, IN_HEADER + 8), u64(b, IN_HEADER + 16), b.readUInt32LE(IN_HEADER + 24));
    return [];
  }

  /** fuse_lseek_in: fh, offset, whence (only SEEK_DATA and SEEK_HOLE come here); fuse_lseek_out: offset. */
  private async lseek(req: Request): Promise<Buffer[]> {
    const b = req.buf;
    const at = await this.fs.seekData(u64(b, IN_HEADER), u64(b, IN_HEADER + 8), b.readUInt32LE(IN_HEADER + 16));
    const out = Buffer.alloc(8);
    putU64(out, 0, at);
    return [out];
  }

  /**
   * fuse_copy_file_range_in: fh_in, off_in, nodeid_out, fh_out, off_out, len, flags; answered
   * with fuse_write_out (the bytes copied, 32 bits: the kernel asks for at most that much).
   */
  private async copyFileRange(req: Request): Promise<Buffer[]> {
    const b = req.buf;
    const len = Math.min(u64(b, IN_HEADER + 40), 0xfffff000);
    const n = await this.fs.copyRange(u64(b, IN_HEADER), u64(b, IN_HEADER + 8), u64(b, IN_HEADER + 24), u64(b, IN_HEADER + 32), len);
    const out = Buffer.alloc(8);
    out.writeUInt32LE(n, 0);
    return [out];
  }

  private async statfs(): Promise<Buffer[]> {
    const s = await this.fs.statfs();
    const out = Buffer.alloc(80);
    putU64(out, 0, s.blocks);
    putU64(out, 8, s.free);
    putU64(out, 16, s.available);
    putU64(out, 24, s.files);
    putU64(out, 32, s.files);
    out.writeUInt32LE(s.blockSize, 40);
    out.writeUInt32LE(255, 44); // namelen
    out.writeUInt32LE(s.blockSize, 48); // frsize
    return [out];
  }
}

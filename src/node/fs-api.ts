// The narrow interface between the FUSE adapter and a node (like Syncthing's fs.Filesystem):
// paths are absolute mount paths, errors are FsError with a POSIX code, handles are numbers > 0.
export interface Stat {
  type: 'file' | 'dir' | 'symlink' | 'fifo' | 'socket' | 'chr' | 'blk';
  /** Permission bits only. */
  mode: number;
  uid: number;
  gid: number;
  size: number;
  /** Milliseconds since the epoch. */
  mtime: number;
  ctime: number;
  /** Device number of a character or block device node (the kernel's encoding). */
  rdev?: number;
  /** 512-byte blocks the entry takes (st_blocks). */
  blocks?: number;
  /** Links: a directory has 2 + its subdirectories (absent: 1). */
  nlink?: number;
  /** A hard-linked file's inode record id: every name of it is one inode to the kernel. */
  inode?: string;
  /** Last access as utimensat set it (the mount is noatime: reads do not move it); absent: mtime. */
  atime?: number;
}

/** Lets a write's caller lend its buffer past the write: it reuses it once `until` settles. */
export type Keep = (until: Promise<unknown>) => void;

/** Who creates a file: the caller's ids as the kernel reports them. */
/** A path, or a hard-linked file by its inode record id. */
export type AttrTarget = string | { inode: string };

export interface Owner {
  uid: number;
  gid: number;
  /** The caller's umask, where the kernel leaves applying it to the filesystem (it enforces ACLs). */
  umask?: number;
}

export interface Space { blockSize: number; blocks: number; free: number; available: number; files: number }

export interface FileSystem {
  stat(path: string): Stat;
  /** Attributes through an open handle (the path may be gone). */
  fstat(fh: number): Stat;
  list(path: string): string[];
  open(path: string, flags: number): Promise<number>;
  create(path: string, mode: number, owner?: Owner): Promise<number>;
  /** `signal`: the caller gave up (a FUSE interrupt); a read waiting for peers stops waiting. */
  read(fh: number, buf: Buffer, len: number, pos: number, signal?: AbortSignal): Promise<number>;
  /**
   * With `keep`, the node may hold on to `buf` after the promise resolves (no copy): it calls
   * keep(until), and the caller reuses buf only once `until` settles.
   */
  write(fh: number, buf: Buffer, len: number, pos: number, keep?: Keep): Promise<number>;
  truncate(path: string, size: number): Promise<void>;
  ftruncate(fh: number, size: number): Promise<void>;
  flush(fh: number): Promise<void>;
  fsync(fh: number): Promise<void>;
  /** fsync(2) of a directory: every namespace change made so far (creates, renames, deletes) reaches the disk. */
  syncNamespace(): Promise<void>;
  release(fh: number): Promise<void>;
  /**
   * A read-only handle whose whole content is the stored copy on this disk, verified (or not to
   * be verified): that copy's fd and content id, for the kernel to read itself (FUSE
   * passthrough). Null for anything else: writable, remote, in memory, partly verified.
   */
  localContent?(fh: number): { fd: number; content: string } | null;
  /** fallocate(2) on an open handle: mode 0, KEEP_SIZE (1), PUNCH_HOLE|KEEP_SIZE (3), ZERO_RANGE (0x10, | KEEP_SIZE). */
  fallocate(fh: number, offset: number, length: number, mode: number): Promise<void>;
  /** lseek(2) SEEK_DATA (3) or SEEK_HOLE (4) on an open handle; ENXIO at or past the end. */
  seekData(fh: number, offset: number, whence: number): Promise<number>;
  /**
   * copy_file_range(2) between two open handles; the bytes copied. A copy of a whole stored
   * version onto an empty or shorter file takes the same content id: nothing is read or stored.
   */
  copyRange(fhIn: number, offIn: number, fhOut: number, offOut: number, len: number): Promise<number>;
  unlink(path: string): Promise<void>;
  mkdir(path: string, mode: number, owner?: Owner): Promise<void>;
  rmdir(path: string): Promise<void>;
  rename(from: string, to: string): Promise<void>;
  symlink(target: string, path: string, owner?: Owner): Promise<void>;
  /** link(2): `to` becomes another name of the file at `from`. */
  link(from: string, to: string): Promise<void>;
  /** Extended attributes; flags: 1 XATTR_CREATE, 2 XATTR_REPLACE. */
  getxattr(path: string, name: string): Buffer;
  listxattr(path: string): string[];
  setxattr(path: string, name: string, value: Buffer, flags: number): Promise<void>;
  removexattr(path: string, name: string): Promise<void>;
  /** A FIFO, socket or device node (no content: the kernel does its I/O). */
  mknod(path: string, type: 'fifo' | 'socket' | 'chr' | 'blk', mode: number, rdev: number, owner?: Owner): Promise<void>;
  readlink(path: string): string;
  /**
   * Attribute changes name a path, or a hard-linked file by its inode record (a handle whose
   * name went while the file keeps others: they all change). A record that is gone: nothing to do.
   */
  chmod(path: AttrTarget, mode: number): Promise<void>;
  chown(path: AttrTarget, uid: number, gid: number): Promise<void>;
  /** Sets either time or both; null leaves it (UTIME_OMIT). */
  utimens(path: AttrTarget, atime: number | null, mtime: number | null): Promise<void>;
  /** How many names a hard-linked file (inode record id) has now: 0 when none. */
  linkCount(inode: string): number;
  statfs(): Promise<Space>;
  /** Paths changed by something other than this interface's callers (merges from peers). */
  /** `inodes`: hard-linked files (inode record ids) changed there, whichever names they have. */
  onExternalChange?(listener: (paths: string[], inodes: string[]) => void): void;
}

/** Where a node gets content it does not hold (the swarm); a lone node has none. */
export interface RemoteContent {
  /** Bytes [start, end) of content, verified; into `into` when given (the result is a view of it). */
  read(id: string, info: import('../content/metainfo.js').Info, start: number, end: number, signal?: AbortSignal, into?: Buffer): Promise<Buffer>;
  /** The whole content, verified, into the local store. */
  fetch(id: string, info: import('../content/metainfo.js').Info): Promise<void>;
}

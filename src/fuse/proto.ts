// The FUSE kernel protocol (linux/fuse.h, also spoken by FreeBSD's fusefs): opcodes, flags and
// the byte layout of the structures DelugeFS reads and writes. No I/O here.

export const enum Op {
  LOOKUP = 1, FORGET = 2, GETATTR = 3, SETATTR = 4, READLINK = 5, SYMLINK = 6, MKNOD = 8,
  MKDIR = 9, UNLINK = 10, RMDIR = 11, RENAME = 12, LINK = 13, OPEN = 14, READ = 15, WRITE = 16,
  STATFS = 17, RELEASE = 18, FSYNC = 20, SETXATTR = 21, GETXATTR = 22, LISTXATTR = 23,
  REMOVEXATTR = 24, FLUSH = 25, INIT = 26, OPENDIR = 27, READDIR = 28, RELEASEDIR = 29,
  FSYNCDIR = 30, GETLK = 31, SETLK = 32, SETLKW = 33, ACCESS = 34, CREATE = 35, INTERRUPT = 36,
  BMAP = 37, DESTROY = 38, IOCTL = 39, POLL = 40, NOTIFY_REPLY = 41, BATCH_FORGET = 42,
  FALLOCATE = 43, READDIRPLUS = 44, RENAME2 = 45, LSEEK = 46, COPY_FILE_RANGE = 47,
}

/** Opcode names (a const enum has none at run time): metrics and logs. */
export const OP_NAMES: Readonly<Record<number, string>> = {
  1: 'lookup', 2: 'forget', 3: 'getattr', 4: 'setattr', 5: 'readlink', 6: 'symlink', 8: 'mknod', 9: 'mkdir', 10: 'unlink',
  11: 'rmdir', 12: 'rename', 13: 'link', 14: 'open', 15: 'read', 16: 'write', 17: 'statfs', 18: 'release', 20: 'fsync',
  21: 'setxattr', 22: 'getxattr', 23: 'listxattr', 24: 'removexattr', 25: 'flush', 26: 'init', 27: 'opendir', 28: 'readdir',
  29: 'releasedir', 30: 'fsyncdir', 31: 'getlk', 32: 'setlk', 33: 'setlkw', 34: 'access', 35: 'create', 36: 'interrupt',
  37: 'bmap', 38: 'destroy', 39: 'ioctl', 40: 'poll', 41: 'notify_reply', 42: 'batch_forget', 43: 'fallocate',
  44: 'readdirplus', 45: 'rename2', 46: 'lseek', 47: 'copy_file_range',
};

/** INIT flags. */
export const Init = {
  ASYNC_READ: 1 << 0,
  ATOMIC_O_TRUNC: 1 << 3,
  BIG_WRITES: 1 << 5,
  DONT_MASK: 1 << 6,
  AUTO_INVAL_DATA: 1 << 12,
  DO_READDIRPLUS: 1 << 13,
  PARALLEL_DIROPS: 1 << 18,
  POSIX_ACL: 1 << 20,
  MAX_PAGES: 1 << 22,
  /** fuse_init_in/out carry flags2 (the high 32 bits of the flags). */
  INIT_EXT: 1 << 30,
} as const;

/** INIT flags2 (bits 32-63 of the flags). */
export const Init2 = {
  /** FUSE_PASSTHROUGH (bit 37, kernel 6.9): opens may name a backing file the kernel reads itself. */
  PASSTHROUGH: 1 << 5,
} as const;

export const Fattr = {
  MODE: 1 << 0, UID: 1 << 1, GID: 1 << 2, SIZE: 1 << 3, ATIME: 1 << 4, MTIME: 1 << 5,
  FH: 1 << 6, ATIME_NOW: 1 << 7, MTIME_NOW: 1 << 8,
} as const;

/** Notifications: the error field of an unsolicited message (unique 0). */
export const NOTIFY_INVAL_INODE = 2;
export const NOTIFY_INVAL_ENTRY = 3;

export const FOPEN_DIRECT_IO = 1 << 0;
export const FOPEN_KEEP_CACHE = 1 << 1;
/** The reply's backing_id names a backing file (FUSE_DEV_IOC_BACKING_OPEN) that serves this open. */
export const FOPEN_PASSTHROUGH = 1 << 7;
export const GETATTR_FH = 1 << 0;
export const RENAME_NOREPLACE = 1 << 0;

export const IN_HEADER = 40;
/** fuse_write_in, between the header and a write's data. */
export const WRITE_IN_SIZE = 40;
export const OUT_HEADER = 16;
/** The protocol version we speak: 7.31 has everything used here (max_pages is 7.28). */
export const MAJOR = 7;
export const MINOR = 31;

export const S_IFMT = 0o170000;
export const S_IFREG = 0o100000;
export const S_IFDIR = 0o040000;
export const S_IFLNK = 0o120000;
export const S_IFIFO = 0o010000;
export const S_IFSOCK = 0o140000;
export const S_IFCHR = 0o020000;
export const S_IFBLK = 0o060000;

/** A 64-bit field as a JS number: exact below 2^53, which covers every offset and id used. */
export function u64(b: Buffer, off: number): number {
  return b.readUInt32LE(off) + b.readUInt32LE(off + 4) * 0x1_0000_0000;
}

export function putU64(b: Buffer, off: number, v: number): void {
  b.writeUInt32LE(v % 0x1_0000_0000 >>> 0, off);
  b.writeUInt32LE(Math.floor(v / 0x1_0000_0000) >>> 0, off + 4);
}

/** What fuse_attr needs; times are milliseconds since the epoch. */
export interface Attr {
  ino: number;
  size: number;
  mode: number;
  uid: number;
  gid: number;
  mtime: number;
  ctime: number;
  /** 1 (a directory: 2 + its subdirectories), or 0 for a file unlinked while open. */
  nlink: number;
  /** Device number of a device node (new_encode_dev, as FUSE carries it). */
  rdev?: number;
  /** Absent: mtime. */
  atime?: number;
  /** 512-byte blocks; absent: the size's. */
  blocks?: number;
}

export const ATTR_SIZE = 88;
export const ENTRY_OUT_SIZE = 40 + ATTR_SIZE;
export const ATTR_OUT_SIZE = 16 + ATTR_SIZE;
export const OPEN_OUT_SIZE = 16;

function putTime(b: Buffer, secOff: number, nsecOff: number, ms: number): void {
  const s = Math.floor(ms / 1000);
  b.writeBigInt64LE(BigInt(s), secOff); // signed: before 1970 is negative
  b.writeUInt32LE(Math.round((ms - s * 1000) * 1e6), nsecOff);
}

export function putAttr(b: Buffer, off: number, a: Attr): void {
  putU64(b, off, a.ino);
  putU64(b, off + 8, a.size);
  putU64(b, off + 16, a.blocks ?? Math.ceil(a.size / 512));
  putTime(b, off + 24, off + 48, a.atime ?? a.mtime);
  putTime(b, off + 32, off + 52, a.mtime);
  putTime(b, off + 40, off + 56, a.ctime);
  b.writeUInt32LE(a.mode >>> 0, off + 60);
  b.writeUInt32LE(a.nlink, off + 64);
  b.writeUInt32LE(a.uid >>> 0, off + 68);
  b.writeUInt32LE(a.gid >>> 0, off + 72);
  b.writeUInt32LE((a.rdev ?? 0) >>> 0, off + 76);
  b.writeUInt32LE(4096, off + 80); // blksize
  b.writeUInt32LE(0, off + 84); // flags
}

/** Seconds + nanoseconds of a cache timeout. */
function putValid(b: Buffer, secOff: number, nsecOff: number, seconds: number): void {
  const s = Math.floor(seconds);
  putU64(b, secOff, s);
  b.writeUInt32LE(Math.round((seconds - s) * 1e9), nsecOff);
}

export function entryOut(nodeid: number, a: Attr, entryValid: number, attrValid: number, into?: Buffer, at = 0): Buffer {
  const b = into ?? Buffer.alloc(ENTRY_OUT_SIZE);
  putU64(b, at, nodeid);
  putU64(b, at + 8, 0); // generation: node ids are never reused
  putValid(b, at + 16, at + 32, entryValid);
  putValid(b, at + 24, at + 36, attrValid);
  putAttr(b, at + 40, a);
  return b;
}

export function attrOut(a: Attr, attrValid: number): Buffer {
  const b = Buffer.alloc(ATTR_OUT_SIZE);
  putValid(b, 0, 8, attrValid);
  putAttr(b, 16, a);
  return b;
}

/** fuse_open_out: fh, open_flags, backing_id (7.40; padding before, so 0 means none to older kernels). */
export function openOut(fh: number, flags: number, into?: Buffer, at = 0, backing = 0): Buffer {
  const b = into ?? Buffer.alloc(OPEN_OUT_SIZE);
  putU64(b, at, fh);
  b.writeUInt32LE(flags, at + 8);
  b.writeInt32LE(backing, at + 12);
  return b;
}

/** fuse_dirent: returns the bytes used (8-byte aligned), or 0 if it does not fit. */
export function putDirent(b: Buffer, off: number, ino: number, next: number, type: number, name: Buffer): number {
  const size = (24 + name.length + 7) & ~7;
  if (off + size > b.length) return 0;
  putU64(b, off, ino);
  putU64(b, off + 8, next);
  b.writeUInt32LE(name.length, off + 16);
  b.writeUInt32LE(type, off + 20);
  name.copy(b, off + 24);
  b.fill(0, off + 24 + name.length, off + size);
  return size;
}

export const DT_DIR = 4;
export const DT_REG = 8;
export const DT_LNK = 10;
export const DT_FIFO = 1;
export const DT_CHR = 2;
export const DT_BLK = 6;
export const DT_SOCK = 12;

/** fuse_notify_inval_inode_out: offset 0, length 0 drop the attributes and every cached page. */
export function invalInodeOut(ino: number): Buffer {
  const b = Buffer.alloc(24);
  putU64(b, 0, ino);
  return b;
}

/** fuse_notify_inval_entry_out and the NUL-terminated name. */
export function invalEntryOut(parent: number, name: string): Buffer {
  const n = Buffer.from(name);
  const b = Buffer.alloc(16 + n.length + 1);
  putU64(b, 0, parent);
  b.writeUInt32LE(n.length, 8);
  n.copy(b, 16);
  return b;
}

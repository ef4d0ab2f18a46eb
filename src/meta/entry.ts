// One namespace entry as stored in Git. A regular file's blob is a standard bencoded BitTorrent
// v1 metainfo whose info dictionary depends on the content only, plus a "delugefs" dictionary
// with the POSIX attributes; symlinks and directories (the "%dir" blob in each tree) carry the
// "delugefs" dictionary alone.
import { createHash } from 'node:crypto';
import { BDict, decode, encode, getBytes, getDict, getInt, isDict } from '../util/bencode.js';
import { ContentId, Info, infoDict, infoHash, parseInfo } from '../content/metainfo.js';
import { isNodeId } from '../cluster/node-id.js';

export interface Attrs {
  /** Permission bits only (mode & 0o7777); the type is `type`. */
  mode: number;
  uid: number;
  gid: number;
  /** Milliseconds since the epoch. */
  mtime: number;
  ctime: number;
  /** Set by utimensat, or kept from before a file's first content change; absent: as mtime. */
  atime?: number;
  /** Extended attributes (user.*, trusted.*, security.*): name -> value; travel with the entry. */
  xattrs?: Record<string, Buffer>;
  /** The node that made this version (names conflict copies). */
  node?: string;
}

/**
 * `alloc`: bytes the content really takes (a sparse file's); absent: its size in 4 KiB blocks.
 * `at`: the disks (node ids) chosen for the content when it was written, most wanted first (the
 * writer's own disk, then disks picked by their fill then): replication's placement hint, part of
 * the entry so that every node reads the same choice (replication/placement.ts).
 */
export interface FileEntry extends Attrs { type: 'file'; info: Info; id: ContentId; alloc?: number; at?: string[] }
/** Most disks an entry's placement hint names. */
export const MAX_AT = 8;
export interface LinkEntry extends Attrs { type: 'symlink'; target: string }
export interface DirEntry extends Attrs { type: 'dir' }
/** FIFOs, sockets and device nodes: no content (the kernel does their I/O); `rdev` for devices. */
export type SpecialType = 'fifo' | 'socket' | 'chr' | 'blk';
export interface SpecialEntry extends Attrs { type: SpecialType; rdev: number }
export type Entry = FileEntry | LinkEntry | DirEntry | SpecialEntry;
export const SPECIAL_TYPES: readonly SpecialType[] = ['fifo', 'socket', 'chr', 'blk'];

export function encodeEntry(e: Entry): Buffer {
  const attrs: BDict = { type: Buffer.from(e.type), mode: e.mode, uid: e.uid, gid: e.gid, mtime: e.mtime, ctime: e.ctime };
  if (e.atime !== undefined && e.atime !== e.mtime) attrs.atime = e.atime;
  if (e.type === 'file' && e.alloc !== undefined) attrs.alloc = e.alloc;
  if (e.type === 'file' && e.at?.length) attrs.at = e.at.map((n) => Buffer.from(n));
  if (e.xattrs && Object.keys(e.xattrs).length) attrs.xattr = { ...e.xattrs };
  if (e.type === 'symlink') attrs.target = Buffer.from(e.target);
  if ((e.type === 'chr' || e.type === 'blk') && e.rdev) attrs.rdev = e.rdev;
  if (e.node) attrs.node = Buffer.from(e.node);
  const top: BDict = { delugefs: attrs };
  if (e.type === 'file') top.info = infoDict(e.info);
  return encode(top);
}

export function decodeEntry(buf: Buffer, ctx = 'entry'): Entry {
  const top = decode(buf);
  if (!isDict(top)) throw new Error(`${ctx}: not a dictionary`);
  const a = getDict(top, 'delugefs', ctx);
  const type = getBytes(a, 'type', ctx).toString();
  const attrs: Attrs = {
    mode: getInt(a, 'mode', ctx) & 0o7777,
    uid: getInt(a, 'uid', ctx),
    gid: getInt(a, 'gid', ctx),
    mtime: getInt(a, 'mtime', ctx),
    ctime: getInt(a, 'ctime', ctx),
  };
  if (Buffer.isBuffer(a.node)) attrs.node = a.node.toString();
  if (a.atime !== undefined) attrs.atime = getInt(a, 'atime', ctx);
  if (a.xattr !== undefined) {
    const x: Record<string, Buffer> = {};
    for (const [k, v] of Object.entries(getDict(a, 'xattr', ctx))) {
      if (!Buffer.isBuffer(v)) throw new Error(`${ctx}: xattr ${JSON.stringify(k)} is not bytes`);
      x[k] = v;
    }
    attrs.xattrs = x;
  }
  switch (type) {
    case 'file': {
      const info = parseInfo(getDict(top, 'info', ctx), ctx);
      const e: FileEntry = { type, ...attrs, info, id: infoHash(info) };
      if (a.alloc !== undefined) {
        const alloc = getInt(a, 'alloc', ctx);
        if (!Number.isSafeInteger(alloc) || alloc < 0) throw new Error(`${ctx}: alloc out of range`);
        e.alloc = alloc;
      }
      if (a.at !== undefined) e.at = decodeAt(a.at, ctx);
      return e;
    }
    case 'symlink':
      return { type, ...attrs, target: getBytes(a, 'target', ctx).toString() };
    case 'dir':
      return { type, ...attrs };
    case 'fifo':
    case 'socket':
      return { type, ...attrs, rdev: 0 };
    case 'chr':
    case 'blk': {
      const rdev = a.rdev === undefined ? 0 : getInt(a, 'rdev', ctx);
      if (!Number.isSafeInteger(rdev) || rdev < 0 || rdev > 0xffffffff) throw new Error(`${ctx}: rdev out of range`);
      return { type, ...attrs, rdev };
    }
    default:
      throw new Error(`${ctx}: unknown entry type ${JSON.stringify(type)}`);
  }
}

/**
 * A name of a hard-linked file: it points to an inode record (`%inodes/<bucket>/<id>`, a file
 * entry blob) that holds the content and attributes every name shares. The blob is the id alone,
 * so every name of one inode is one blob (the merge finds a record's names by that blob's id).
 */
export interface InodeRef { type: 'ref'; inode: string }
/** 32 lower-case hex digits (128 random bits, made by the node that first links the file). */
export const INODE_ID_RE = /^[0-9a-f]{32}$/;

/**
 * The id a plain file's first hard link gives its record: from the name and the entry it links,
 * so that two nodes linking the same file at once make one record (their links merge as names
 * of one file) rather than splitting it in two.
 */
export function firstLinkId(path: string, e: Entry): string {
  return createHash('sha256').update('delugefs-inode\0').update(path).update('\0').update(encodeEntry(e)).digest('hex').slice(0, 32);
}

export function encodeRef(inode: string): Buffer {
  return encode({ delugefs: { type: Buffer.from('ref'), inode: Buffer.from(inode) } });
}

/** A stored name: an entry, or a reference to an inode record. */
export function decodeStored(buf: Buffer, ctx = 'entry'): Entry | InodeRef {
  const top = decode(buf);
  if (isDict(top)) {
    const a = top.delugefs;
    if (isDict(a) && Buffer.isBuffer(a.type) && a.type.toString() === 'ref') {
      const inode = getBytes(a, 'inode', ctx).toString();
      if (!INODE_ID_RE.test(inode)) throw new Error(`${ctx}: malformed inode id`);
      // Only the bytes encodeRef writes: the merge finds a record's names by this blob's id.
      if (!encodeRef(inode).equals(buf)) throw new Error(`${ctx}: an inode reference not as DelugeFS writes it`);
      return { type: 'ref', inode };
    }
  }
  return decodeEntry(buf, ctx);
}

/** What an entry's `at` may hold: 1..MAX_AT distinct node ids. */
export function isValidAt(at: readonly string[]): boolean {
  return at.length >= 1 && at.length <= MAX_AT && at.every(isNodeId) && new Set(at).size === at.length;
}

/** A placement hint: 1..MAX_AT distinct node ids (a peer's entry may say anything). */
function decodeAt(v: unknown, ctx: string): string[] {
  if (!Array.isArray(v) || v.length < 1 || v.length > MAX_AT) throw new Error(`${ctx}: at must list 1 to ${MAX_AT} node ids`);
  const out = v.map((b) => (Buffer.isBuffer(b) ? b.toString('latin1') : ''));
  if (!out.every(isNodeId) || new Set(out).size !== out.length) throw new Error(`${ctx}: at must list distinct node ids`);
  return out;
}

export function entrySize(e: Entry): number {
  return e.type === 'file' ? e.info.length : e.type === 'symlink' ? Buffer.byteLength(e.target) : 4096;
}

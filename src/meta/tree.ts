// The in-memory index of the namespace: every directory, file and symlink of the current tree,
// with the Git object id of each clean subtree cached so a commit only re-encodes what changed.
// getattr/readdir/lookup are served from here; nothing on a read path spawns a process.
import { isNodeId } from '../cluster/node-id.js';
import { createHash } from 'node:crypto';
import { FsError } from '../util/errors.js';
import { DirEntry, Entry, FileEntry, LinkEntry, SpecialEntry, encodeEntry, encodeRef } from './entry.js';
import { DIR_MARKER, MAX_NAME_BYTES, encodeName, splitPath } from './names.js';
import type { ContentId, Info } from '../content/metainfo.js';

export class DirNode {
  readonly kind = 'dir';
  children = new Map<string, Node>();
  /** Children that are directories (st_nlink = 2 + this), kept by setChild/deleteChild. */
  subdirs = 0;
  /** Git tree id; null while this directory or anything below it has uncommitted changes. */
  oid: string | null = null;
  constructor(public entry: DirEntry) {}
}

export type LeafEntry = FileEntry | LinkEntry | SpecialEntry;

export class LeafNode {
  readonly kind = 'leaf';
  oid: string | null = null;
  /** A hard-linked name: `entry` is always `rec.entry`, and `oid` the reference blob's id. */
  rec: InodeRec | null = null;
  constructor(public entry: LeafEntry) {}
}

/**
 * An inode record: what every name of a hard-linked file shares (content, mode, owner, times,
 * xattrs). Stored at `%inodes/<first two hex digits>/<id>` as an entry blob; its names are
 * reference blobs (entry.ts encodeRef). `names` are the leaves that point here (st_nlink).
 */
export class InodeRec {
  oid: string | null = null;
  names = new Set<LeafNode>();
  constructor(readonly id: string, public entry: LeafEntry) {}
}

/** Where inode records live in the root tree. */
export const INODES = '%inodes';
export const inodeBucket = (id: string) => id.slice(0, 2);
export const inodePath = (id: string) => `${INODES}/${inodeBucket(id)}/${id}`;
/** The blob every name of an inode has (one id per inode: the merge finds names by it). */
export function refOid(id: string): string {
  return objectId('blob', encodeRef(id));
}

export type Node = DirNode | LeafNode;

/** Every change of a directory's children goes through these two, so `subdirs` stays true. */
export function setChild(dir: DirNode, name: string, node: Node): void {
  const old = dir.children.get(name);
  if (old?.kind === 'dir') dir.subdirs--;
  if (node.kind === 'dir') dir.subdirs++;
  dir.children.set(name, node);
}

export function deleteChild(dir: DirNode, name: string): void {
  if (dir.children.get(name)?.kind === 'dir') dir.subdirs--;
  dir.children.delete(name);
}

export interface GitObject { type: 'blob' | 'tree'; oid: string; data: Buffer }

export function objectId(type: string, data: Buffer): string {
  return createHash('sha1').update(`${type} ${data.length}\0`).update(data).digest('hex');
}

export { MAX_NAME_BYTES };

/** Cluster records (membership and the like): small blobs under RECORDS in the root tree. */
export const RECORDS = '%cluster';
const RECORD_PATH = /^[A-Za-z0-9._-]+(\/[A-Za-z0-9._-]+)*$/;

export function checkRecordPath(path: string): void {
  if (!RECORD_PATH.test(path) || path.split('/').some((c) => c === '.' || c === '..')) throw new Error(`invalid record path ${JSON.stringify(path)}`);
}

export class Tree {
  root: DirNode;
  /** Record path ('members/abc') -> bytes; never part of the mounted namespace. */
  records = new Map<string, Buffer>();
  private recordsOid: string | null = null;
  /** Hard-linked files' records by id, their ids by bucket, and the buckets' tree ids (absent: changed). */
  inodes = new Map<string, InodeRec>();
  private buckets = new Map<string, Set<string>>();
  private bucketOids = new Map<string, string>();
  private inodesOid: string | null = null;
  /**
   * Content id -> how many entries reference it, its metainfo (to serve it to peers) and the
   * placement hints of those entries (`writers`, counted; only once a second entry shares the
   * content): each entry's `at` joined by commas, or without one the node that made it. `writer`
   * is the least of them: a hint every node derives the same way from the same tree, whatever
   * order it saw the entries in.
   */
  private refs = new Map<ContentId, { n: number; info: Info; writer?: string; writers?: Map<string, number> }>();
  /** Called when the last entry referencing a content id goes away. */
  onUnreferenced: (id: ContentId) => void = () => {};

  constructor(rootEntry: DirEntry) {
    this.root = new DirNode(rootEntry);
  }

  get(path: string): Node | undefined {
    let n: Node = this.root;
    for (const part of splitPath(path)) {
      if (n.kind !== 'dir') return undefined;
      const c = n.children.get(part);
      if (!c) return undefined;
      n = c;
    }
    return n;
  }

  setRecord(path: string, data: Buffer | null): void {
    checkRecordPath(path);
    if (data) this.records.set(path, data);
    else this.records.delete(path);
    this.recordsOid = null;
    this.root.oid = null;
  }

  /** After loading from Git or a merge: the records subtree as it is stored. */
  setRecordsOid(oid: string | null): void {
    this.recordsOid = oid;
  }

  isReferenced(id: ContentId): boolean {
    return this.refs.has(id);
  }

  contentIds(): IterableIterator<ContentId> {
    return this.refs.keys();
  }

  /** How many entries reference this content. */
  refCount(id: ContentId): number {
    return this.refs.get(id)?.n ?? 0;
  }

  /**
   * Where content some entry references was placed when written, most wanted first: the entry's
   * `at`, or the node that wrote it; undefined when the entry names neither.
   */
  placer(id: ContentId): string[] | undefined {
    return this.refs.get(id)?.writer?.split(',');
  }

  /** The metainfo of content some entry references. */
  info(id: ContentId): Info | undefined {
    return this.refs.get(id)?.info;
  }

  /**
   * Drops the cached ids of the directories on the way to `path`, as far as they exist: after a
   * merge change the tree could not take, so they get the merge's ids instead of keeping their old.
   */
  invalidate(path: string): void {
    let dir: DirNode = this.root;
    dir.oid = null;
    for (const part of splitPath(path)) {
      const c = dir.children.get(part);
      if (c?.kind !== 'dir') return;
      dir = c;
      dir.oid = null;
    }
  }

  /** Walks to the parent directory of path, invalidating cached ids along the way. */
  private parentFor(path: string, dirty: boolean): { dir: DirNode; name: string } {
    const parts = splitPath(path);
    const name = parts.pop();
    if (name === undefined) throw new FsError('EBUSY', 'the root cannot be replaced');
    if (Buffer.byteLength(name) > MAX_NAME_BYTES) throw new FsError('ENAMETOOLONG', name);
    let dir = this.root;
    const seen: DirNode[] = [dir];
    for (const part of parts) {
      const c = dir.children.get(part);
      if (!c) throw new FsError('ENOENT', path);
      if (c.kind !== 'dir') throw new FsError('ENOTDIR', path);
      dir = c;
      seen.push(dir);
    }
    if (dirty) for (const d of seen) d.oid = null;
    return { dir, name };
  }

  /**
   * Creates or replaces an entry. A directory entry on an existing directory updates its
   * attributes. `oid`: the entry's blob id when it comes from Git as is (a merge), so it is
   * not re-encoded.
   */
  put(path: string, entry: Entry, oid: string | null = null): void {
    if (entry.type === 'dir' && splitPath(path).length === 0) {
      this.root.entry = entry;
      this.root.oid = null;
      return;
    }
    const { dir, name } = this.parentFor(path, true);
    const old = dir.children.get(name);
    if (entry.type === 'dir') {
      if (old?.kind === 'dir') {
        old.entry = entry;
        old.oid = null;
        return;
      }
      if (old) this.unref(old);
      setChild(dir, name, new DirNode(entry));
      return;
    }
    if (old?.kind === 'dir') throw new FsError('EISDIR', path);
    if (entry.type === 'file') this.countContent(entry, 1);
    if (old) this.unref(old);
    const leaf = new LeafNode(entry);
    leaf.oid = oid;
    setChild(dir, name, leaf);
  }

  /** link(2): `to` becomes another name of the file at `from` (made an inode record `id` if it is not one yet). */
  link(from: string, to: string, id: string, ctime: number): void {
    const src = this.get(from);
    if (!src) throw new FsError('ENOENT', from);
    if (src.kind === 'dir') throw new FsError('EPERM', `${from} is a directory`);
    if (this.get(to)) throw new FsError('EEXIST', to);
    const { dir, name } = this.parentFor(to, false);
    let rec = src.rec;
    if (rec) this.setInode(rec.id, { ...rec.entry, ctime });
    else {
      if (this.inodes.has(id)) throw new FsError('EEXIST', `inode ${id}`);
      // The name's content reference moves to the record: counts are unchanged.
      rec = this.addInode(id, { ...src.entry, ctime });
      this.parentFor(from, true);
      this.attachName(src, rec);
    }
    this.parentFor(to, true);
    const leaf = new LeafNode(rec.entry);
    this.attachName(leaf, rec);
    setChild(dir, name, leaf);
  }

  /** A name pointing to inode `id` (a merge or a load); the record must be there. */
  putRef(path: string, id: string): void {
    const rec = this.inodes.get(id);
    if (!rec) throw new FsError('EIO', `${path} names inode ${id}, which has no record`);
    const { dir, name } = this.parentFor(path, true);
    const old = dir.children.get(name);
    if (old?.kind === 'dir') throw new FsError('EISDIR', path);
    if (old?.kind === 'leaf' && old.rec === rec) return;
    if (old) this.unref(old);
    const leaf = new LeafNode(rec.entry);
    this.attachName(leaf, rec);
    setChild(dir, name, leaf);
  }

  private attachName(leaf: LeafNode, rec: InodeRec): void {
    leaf.rec = rec;
    leaf.entry = rec.entry;
    leaf.oid = null; // the reference blob is written by the next snapshot
    rec.names.add(leaf);
  }

  private addInode(id: string, entry: LeafEntry, oid: string | null = null): InodeRec {
    const rec = new InodeRec(id, entry);
    rec.oid = oid;
    this.inodes.set(id, rec);
    const b = inodeBucket(id);
    let ids = this.buckets.get(b);
    if (!ids) this.buckets.set(b, (ids = new Set()));
    ids.add(id);
    if (!oid) this.dirtyInode(id);
    return rec;
  }

  /** While set, collects the ids of inode records changed (the namespace's touched paths). */
  inodeLog: string[] | null = null;

  private dirtyInode(id: string): void {
    this.inodeLog?.push(id);
    this.bucketOids.delete(inodeBucket(id));
    this.inodesOid = null;
    this.root.oid = null;
  }

  /**
   * Sets (or with null removes) an inode record; every name shows the new attributes. A new
   * record counts its content; `oid`: its blob id when it comes from Git as is.
   */
  setInode(id: string, entry: LeafEntry | null, oid: string | null = null): void {
    const rec = this.inodes.get(id);
    if (!entry) {
      if (!rec) return;
      if (rec.names.size) throw new FsError('EBUSY', `inode ${id} still has ${rec.names.size} names`);
      this.dropInode(rec);
      return;
    }
    if (entry.type === 'file') this.countContent(entry, 1);
    if (!rec) {
      this.addInode(id, entry, oid);
      if (oid) this.dirtyInode(id);
      return;
    }
    if (rec.entry.type === 'file') this.countContent(rec.entry, -1);
    rec.entry = entry;
    rec.oid = oid;
    for (const leaf of rec.names) leaf.entry = entry;
    this.dirtyInode(id);
  }

  private dropInode(rec: InodeRec): void {
    this.inodes.delete(rec.id);
    const b = inodeBucket(rec.id);
    const ids = this.buckets.get(b)!;
    ids.delete(rec.id);
    if (!ids.size) this.buckets.delete(b);
    this.dirtyInode(rec.id);
    if (rec.entry.type === 'file') this.countContent(rec.entry, -1);
  }

  /** The record's bucket is written again by the next snapshot (the tree holds it as Git does not). */
  rewriteInode(id: string): void {
    if (this.inodes.has(id)) this.dirtyInode(id);
  }

  /** Records whose last name went (a local unlink, rename over, or replace): removed with their content reference. */
  dropOrphans(): void {
    for (const rec of this.orphans) if (!rec.names.size && this.inodes.get(rec.id) === rec) this.dropInode(rec);
    this.orphans.clear();
  }

  private orphans = new Set<InodeRec>();

  /** After loading or a merge: the inode subtrees as stored (null for those touched here since). */
  adoptInodeOids(trees: Map<string, string>): void {
    for (const b of this.buckets.keys()) {
      const oid = trees.get(`${INODES}/${b}`);
      if (oid) this.bucketOids.set(b, oid);
      else this.bucketOids.delete(b);
    }
    this.inodesOid = trees.get(INODES) ?? null;
  }

  /** Loading from Git: a record as stored (its blob id and its bucket's tree id known). */
  loadInode(id: string, entry: LeafEntry, oid: string): void {
    if (entry.type === 'file') this.countContent(entry, 1);
    this.addInode(id, entry, oid);
  }

  remove(path: string): Node {
    const { dir, name } = this.parentFor(path, true);
    const old = dir.children.get(name);
    if (!old) throw new FsError('ENOENT', path);
    deleteChild(dir, name);
    this.unref(old);
    return old;
  }

  /** rename(2): replaces a file, or an empty directory with a directory. */
  rename(from: string, to: string): void {
    const src = this.parentFor(from, false);
    const node = src.dir.children.get(src.name);
    if (!node) throw new FsError('ENOENT', from);
    if (from === to) return;
    const same = this.get(to);
    if (node.kind === 'leaf' && node.rec && same?.kind === 'leaf' && same.rec === node.rec) return; // two names of one file: rename(2) does nothing
    if (node.kind === 'dir' && (to + '/').startsWith(from + '/')) throw new FsError('EINVAL', `${to} is inside ${from}`);
    const dst = this.parentFor(to, false);
    const old = dst.dir.children.get(dst.name);
    if (old) {
      if (old.kind === 'dir' && node.kind !== 'dir') throw new FsError('EISDIR', to);
      if (old.kind !== 'dir' && node.kind === 'dir') throw new FsError('ENOTDIR', to);
      if (old.kind === 'dir' && old.children.size) throw new FsError('ENOTEMPTY', to);
    }
    this.parentFor(from, true);
    this.parentFor(to, true);
    deleteChild(src.dir, src.name);
    if (old) this.unref(old);
    setChild(dst.dir, dst.name, node);
  }

  /** Adds a loaded subtree without touching cached ids (used while rebuilding from Git). */
  attach(parent: DirNode, name: string, node: Node): void {
    setChild(parent, name, node);
    this.walkRefs(node, 1);
  }

  private unref(node: Node): void {
    this.walkRefs(node, -1);
  }

  private walkRefs(node: Node, delta: number): void {
    if (node.kind === 'dir') {
      for (const c of node.children.values()) this.walkRefs(c, delta);
      return;
    }
    if (node.rec) {
      // A name of an inode: the record holds the content reference.
      if (delta > 0) node.rec.names.add(node);
      else if (node.rec.names.delete(node) && !node.rec.names.size) this.orphans.add(node.rec);
      return;
    }
    if (node.entry.type === 'file') this.countContent(node.entry, delta);
  }

  private countContent(entry: FileEntry, delta: number): void {
    const { id, info } = entry;
    // Node ids have no commas; a `node` that is no node id (a peer may write anything there) is no hint.
    const by = entry.at?.length ? entry.at.join(',') : entry.node && isNodeId(entry.node) ? entry.node : '';
    const r = this.refs.get(id);
    const n = (r?.n ?? 0) + delta;
    if (n <= 0) {
      if (r) {
        this.refs.delete(id);
        this.onUnreferenced(id);
      }
      return;
    }
    if (!r) {
      this.refs.set(id, { n, info, writer: by || undefined });
      return;
    }
    r.n = n;
    const ws = (r.writers ??= new Map([[r.writer ?? '', r.n - delta]]));
    const k = (ws.get(by) ?? 0) + delta;
    if (k > 0) ws.set(by, k);
    else ws.delete(by);
    let least: string | undefined;
    for (const w of ws.keys()) if (w && (least === undefined || w < least)) least = w;
    r.writer = least;
    if (ws.size === 1 && r.n === [...ws.values()][0]) r.writers = undefined;
  }

  /**
   * Encodes every changed directory and entry into Git objects, synchronously, so the result is
   * a consistent snapshot even while new changes arrive. Returns the root tree id and the new objects.
   */
  snapshot(): { root: string; objects: GitObject[] } {
    const objects: GitObject[] = [];
    const root = this.encodeDir(this.root, objects);
    return { root, objects };
  }

  private encodeDir(dir: DirNode, out: GitObject[]): string {
    if (dir.oid) return dir.oid;
    const rows: { key: Buffer; mode: string; oid: string }[] = [];
    const marker = encodeEntry(dir.entry);
    const markerOid = objectId('blob', marker);
    out.push({ type: 'blob', oid: markerOid, data: marker });
    rows.push({ key: Buffer.from(DIR_MARKER), mode: '100644', oid: markerOid });
    if (dir === this.root && this.records.size) {
      this.recordsOid ??= encodeRecords(this.records, out);
      rows.push({ key: Buffer.from(RECORDS + '/'), mode: '40000', oid: this.recordsOid });
    }
    if (dir === this.root && this.inodes.size) rows.push({ key: Buffer.from(INODES + '/'), mode: '40000', oid: this.encodeInodes(out) });
    for (const [name, child] of dir.children) {
      const enc = Buffer.from(encodeName(name));
      if (child.kind === 'dir') {
        // Git orders a tree entry as if its name ended in '/'.
        rows.push({ key: Buffer.concat([enc, SLASH]), mode: '40000', oid: this.encodeDir(child, out) });
      } else {
        if (!child.oid) {
          const data = child.rec ? encodeRef(child.rec.id) : encodeEntry(child.entry);
          child.oid = objectId('blob', data);
          out.push({ type: 'blob', oid: child.oid, data });
        }
        rows.push({ key: enc, mode: '100644', oid: child.oid });
      }
    }
    dir.oid = writeTree(rows, out);
    return dir.oid;
  }

  /** The `%inodes` tree: one subtree per bucket, only changed buckets encoded again. */
  private encodeInodes(out: GitObject[]): string {
    if (this.inodesOid) return this.inodesOid;
    const top: { key: Buffer; mode: string; oid: string }[] = [];
    for (const [b, ids] of this.buckets) {
      let oid = this.bucketOids.get(b);
      if (!oid) {
        const rows = [...ids].map((id) => {
          const rec = this.inodes.get(id)!;
          if (!rec.oid) {
            const data = encodeEntry(rec.entry);
            rec.oid = objectId('blob', data);
            out.push({ type: 'blob', oid: rec.oid, data });
          }
          return { key: Buffer.from(id), mode: '100644', oid: rec.oid };
        });
        oid = writeTree(rows, out);
        this.bucketOids.set(b, oid);
      }
      top.push({ key: Buffer.from(b + '/'), mode: '40000', oid });
    }
    this.inodesOid = writeTree(top, out);
    return this.inodesOid;
  }
}

const SLASH = Buffer.from('/');
const ZERO = Buffer.from([0]);

/** Writes the records as nested trees of blobs; returns the top tree's id. */
function encodeRecords(records: Map<string, Buffer>, out: GitObject[]): string {
  const flat = new Map<string, { mode: string; oid: string }>();
  for (const [path, data] of records) {
    const oid = objectId('blob', data);
    out.push({ type: 'blob', oid, data });
    flat.set(path, { mode: '100644', oid });
  }
  return buildTrees(flat, out);
}

/**
 * Builds the tree objects for a flat map of '/'-separated paths to blob rows; returns the top
 * tree's id and, through `trees`, the id of every directory by path ('' = top).
 */
export function buildTrees(flat: Map<string, { mode: string; oid: string }>, out: GitObject[], trees?: Map<string, string>): string {
  type Dir = Map<string, Dir | { mode: string; oid: string }>;
  const top: Dir = new Map();
  for (const [path, row] of flat) {
    const parts = path.split('/');
    const name = parts.pop()!;
    let d = top;
    for (const p of parts) {
      let next = d.get(p);
      if (!(next instanceof Map)) d.set(p, (next = new Map()));
      d = next;
    }
    d.set(name, row);
  }
  const write = (d: Dir, at: string): string => {
    const rows = [...d].map(([name, v]) => (v instanceof Map
      ? { key: Buffer.from(name + '/'), mode: '40000', oid: write(v, at ? `${at}/${name}` : name) }
      : { key: Buffer.from(name), mode: v.mode, oid: v.oid }));
    const oid = writeTree(rows, out);
    trees?.set(at, oid);
    return oid;
  };
  return write(top, '');
}

/** Encodes one tree object from rows whose keys sort as Git sorts (directories with a trailing '/'). */
export function writeTree(rows: { key: Buffer; mode: string; oid: string }[], out: GitObject[]): string {
  rows.sort((a, b) => Buffer.compare(a.key, b.key));
  const parts: Buffer[] = [];
  for (const r of rows) {
    const name = r.mode === '40000' ? r.key.subarray(0, r.key.length - 1) : r.key;
    parts.push(Buffer.from(`${r.mode} `), name, ZERO, Buffer.from(r.oid, 'hex'));
  }
  const data = Buffer.concat(parts);
  const oid = objectId('tree', data);
  out.push({ type: 'tree', oid, data });
  return oid;
}

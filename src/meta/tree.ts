// The in-memory index of the namespace: every directory, file and symlink of the current tree,
// with the Git object id of each clean subtree cached so a commit only re-encodes what changed.
// getattr/readdir/lookup are served from here; nothing on a read path spawns a process.
import { createHash } from 'node:crypto';
import { FsError } from '../util/errors.js';
import { DirEntry, Entry, FileEntry, LinkEntry, SpecialEntry, encodeEntry } from './entry.js';
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

export class LeafNode {
  readonly kind = 'leaf';
  oid: string | null = null;
  constructor(public entry: FileEntry | LinkEntry | SpecialEntry) {}
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
  /**
   * Content id -> how many entries reference it, its metainfo (to serve it to peers) and the
   * nodes that made those entries (`writers`, counted; only once a second entry shares the
   * content). `writer` is the least of them: a placement hint every node derives the same way
   * from the same tree, whatever order it saw the entries in.
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

  /** The node that wrote content some entry references, if the entry names it. */
  writer(id: ContentId): string | undefined {
    return this.refs.get(id)?.writer;
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
    if (entry.type === 'file') this.walkRefs(new LeafNode(entry), 1);
    if (old) this.unref(old);
    const leaf = new LeafNode(entry);
    leaf.oid = oid;
    setChild(dir, name, leaf);
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
    if (node.entry.type !== 'file') return;
    const { id, info } = node.entry;
    const by = node.entry.node ?? '';
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
    for (const [name, child] of dir.children) {
      const enc = Buffer.from(encodeName(name));
      if (child.kind === 'dir') {
        // Git orders a tree entry as if its name ended in '/'.
        rows.push({ key: Buffer.concat([enc, SLASH]), mode: '40000', oid: this.encodeDir(child, out) });
      } else {
        if (!child.oid) {
          const data = encodeEntry(child.entry);
          child.oid = objectId('blob', data);
          out.push({ type: 'blob', oid: child.oid, data });
        }
        rows.push({ key: enc, mode: '100644', oid: child.oid });
      }
    }
    dir.oid = writeTree(rows, out);
    return dir.oid;
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

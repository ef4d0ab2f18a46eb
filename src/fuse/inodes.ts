// The kernel names files by node id; the node by path. This table maps one to the other and
// keeps each id as long as the kernel holds a lookup on it (FORGET drops them). Ids are never
// reused, so a stale id can only miss, never hit another file.
import { FsError } from '../util/errors.js';

export type Kind = 'file' | 'dir' | 'symlink' | 'fifo' | 'socket' | 'chr' | 'blk';

export interface Inode {
  readonly id: number;
  /** null once the path was removed or replaced while the kernel still holds the id. */
  path: string | null;
  kind: Kind;
  lookups: number;
  /** size:mtime seen at the last open, to keep the kernel's page cache when unchanged. */
  seen: string | null;
  /** Open file handles: they still stat a file whose path is gone (fstat after unlink). */
  handles?: Set<number>;
  /** A hard-linked file: its inode record, and every name of it the kernel looked up (`path` is one of them). */
  link?: string;
  names?: Set<string>;
}

export const ROOT_ID = 1;

export class Inodes {
  private byId = new Map<number, Inode>();
  private byPath = new Map<string, Inode>();
  /** Hard-linked files by inode record: one kernel inode for all their names. */
  private byLink = new Map<string, Inode>();
  private next = ROOT_ID + 1;

  constructor() {
    const root: Inode = { id: ROOT_ID, path: '/', kind: 'dir', lookups: 1, seen: null };
    this.byId.set(ROOT_ID, root);
    this.byPath.set('/', root);
  }

  get size(): number {
    return this.byId.size;
  }

  get(id: number): Inode {
    const n = this.byId.get(id);
    if (!n) throw new FsError('ENOENT', `node ${id}`);
    return n;
  }

  find(id: number): Inode | undefined {
    return this.byId.get(id);
  }

  /** The current path of a node id; ENOENT if the kernel's id outlived its file. */
  path(id: number): string {
    const p = this.byId.get(id)?.path;
    if (p == null) throw new FsError('ENOENT', `node ${id}`);
    return p;
  }

  /**
   * Other ids the kernel holds for a hard-linked file: an id it held from before the file became
   * linked, when the kernel had already looked up another name of it under another id (a link by
   * a peer, then a LINK of the old id). Rare; each stays right, and each is invalidated.
   */
  private aliases = new Map<string, Set<Inode>>();

  /** Known ids of a hard-linked file (by its inode record) the kernel holds: the one new names get first. */
  idsOfLink(link: string): number[] {
    const n = this.byLink.get(link);
    return [...(n ? [n.id] : []), ...[...(this.aliases.get(link) ?? [])].map((x) => x.id)];
  }

  /** Known id of a path, if the kernel holds one. */
  idOf(path: string): number | undefined {
    return this.byPath.get(path)?.id;
  }

  /**
   * A lookup the kernel will count: the path's id (a new one if the path changed kind). `link`:
   * the inode record of a hard-linked file, whose names all share one id.
   */
  lookup(path: string, kind: Kind, link?: string): Inode {
    let n = this.byPath.get(path);
    if (n && n.kind !== kind) {
      // Same name, other kind of file (replaced by a peer): the kernel must see a new inode.
      this.removed(path);
      n = undefined;
    }
    if (n && n.link !== link) {
      const other = link === undefined ? undefined : this.byLink.get(link);
      if (n.link === undefined && link !== undefined && !other) this.linked(n, link); // the file became linked (a peer's link)
      else {
        this.removed(path); // now a name of another file
        n = undefined;
      }
    }
    if (!n && link !== undefined) {
      n = this.byLink.get(link);
      if (n) {
        n.names!.add(path);
        n.path ??= path;
        this.byPath.set(path, n);
      }
    }
    if (!n) {
      n = { id: this.next++, path, kind, lookups: 0, seen: null };
      this.byId.set(n.id, n);
      this.byPath.set(path, n);
      if (link !== undefined) this.linked(n, link);
    }
    n.lookups++;
    return n;
  }

  /** The file of `n` is now hard-linked (inode record `link`): its other names find it by that. */
  linked(n: Inode, link: string): void {
    if (n.link === link) return;
    n.link = link;
    n.names = new Set(n.path === null ? [] : [n.path]);
    // Another id of this file already (see aliases): this one takes the new names, as link(2)'s
    // new name must show the linked file's st_ino; the other keeps its names and invalidations.
    const m = this.byLink.get(link);
    if (m && m !== n) (this.aliases.get(link) ?? this.aliases.set(link, new Set()).get(link)!).add(m);
    this.byLink.set(link, n);
  }

  forget(id: number, count: number): void {
    const n = this.byId.get(id);
    if (!n || id === ROOT_ID) return;
    n.lookups -= count;
    if (n.lookups > 0) return;
    this.byId.delete(id);
    if (n.path !== null && this.byPath.get(n.path) === n) this.byPath.delete(n.path);
    for (const p of n.names ?? []) if (this.byPath.get(p) === n) this.byPath.delete(p);
    if (n.link === undefined) return;
    const aliases = this.aliases.get(n.link);
    aliases?.delete(n);
    if (this.byLink.get(n.link) === n) {
      // An alias still held takes over, so the names it has keep one id.
      const next = aliases?.values().next().value;
      if (next) aliases!.delete(next);
      if (next) this.byLink.set(n.link, next);
      else this.byLink.delete(n.link);
    }
    if (aliases && !aliases.size) this.aliases.delete(n.link);
  }

  /**
   * The path is gone (unlink, rmdir, replaced by a rename); its id lives on until forgotten. A
   * hard-linked file keeps its id under its other names.
   */
  removed(path: string): void {
    const n = this.byPath.get(path);
    if (!n) return;
    this.byPath.delete(path);
    if (n.names) {
      n.names.delete(path);
      if (n.path === path) n.path = n.names.values().next().value ?? null;
    } else n.path = null;
  }

  /** A rename: the node and, for a directory, everything below it take the new path. */
  moved(from: string, to: string): void {
    this.removed(to);
    const moves: [string, Inode][] = [];
    const prefix = from + '/';
    for (const [p, n] of this.byPath) if (p === from || p.startsWith(prefix)) moves.push([p, n]);
    for (const [p] of moves) this.byPath.delete(p);
    for (const [p, n] of moves) {
      const np = to + p.slice(from.length);
      this.removed(np); // a stale child id under the replaced target
      if (n.names) {
        n.names.delete(p);
        n.names.add(np);
        if (n.path === p || n.path === null) n.path = np;
      } else n.path = np;
      this.byPath.set(np, n);
    }
  }
}

// The paths this node changed since its last commit. A view (or merge) is computed against the
// committed head while local changes keep arriving; when none of the view's changes is, contains
// or lies inside a path changed here, applying it under them gives what merging them would (their
// union), so it is installed at once and the local changes are committed on top. Otherwise it is
// computed again after they are committed (a node writing all the time never adopted a view
// until it stopped: 11-15 s per view with 8 nodes writing).
import type { Op } from './journal.js';
import { DIR_MARKER, decodeName, splitPath } from './names.js';
import { INODES, RECORDS } from './tree.js';

/** Past this many paths the set stops tracking and says "not disjoint" (a burst commits soon anyway). */
const MAX_PATHS = 10_000;
const SEP = '\0'; // never in a name

export class TouchedPaths {
  private exact = new Set<string>();
  /** Every proper ancestor of a touched path. */
  private above = new Set<string>();
  /** Too many, or changes not made through ops (a recovery): nothing is disjoint. */
  private unknown = false;

  get size(): number {
    return this.exact.size;
  }

  add(op: Op): void {
    if (op.o === 'rec') this.addKey(['r', ...op.p.split('/')]);
    else if (op.o === 'iput') this.addInode(op.p);
    else {
      this.addKey(['f', ...splitPath(op.p)]);
      if (op.o === 'mv' || op.o === 'link') this.addKey(['f', ...splitPath(op.to)]);
      if (op.o === 'link') this.addInode(op.id);
    }
  }

  /** An inode record changed (or was made, or went with its last name). */
  addInode(id: string): void {
    this.addKey(['i', id]);
  }

  /** The tree differs from the head in ways not listed here. */
  markUnknown(): void {
    this.unknown = true;
  }

  /** True when no path of `gitPaths` (encoded, as in the repository) is, holds or lies in a touched one. */
  disjoint(gitPaths: Iterable<string>): boolean {
    if (this.unknown) return false;
    if (!this.exact.size) return true;
    for (const p of gitPaths) {
      const parts = keyOf(p);
      for (let j = 1; j <= parts.length; j++) if (this.exact.has(parts.slice(0, j).join(SEP))) return false;
      if (this.above.has(parts.join(SEP))) return false;
    }
    return true;
  }

  /**
   * True when the directory at `gitDir` (encoded; '' is the root) is touched or holds a touched
   * path: its in-memory contents differ from the head's by local changes.
   */
  holds(gitDir: string): boolean {
    if (this.unknown) return true;
    if (!this.exact.size) return false;
    // The root's tree holds the records' subtree too: any local change is in it.
    if (!gitDir) return true;
    const key = ['f', ...gitDir.split('/').map(decodeName)].join(SEP);
    return this.exact.has(key) || this.above.has(key);
  }

  /** True when a record is touched. */
  holdsRecords(): boolean {
    return this.unknown || this.above.has('r');
  }

  /** True when an inode record is touched. */
  holdsInodes(): boolean {
    return this.unknown || this.above.has('i');
  }

  private addKey(parts: string[]): void {
    if (this.unknown) return;
    if (this.exact.size >= MAX_PATHS) {
      this.unknown = true;
      this.exact.clear();
      this.above.clear();
      return;
    }
    this.exact.add(parts.join(SEP));
    for (let j = 1; j < parts.length; j++) this.above.add(parts.slice(0, j).join(SEP));
  }
}

/** A repository path as components: records under 'r', files under 'f' (a directory's marker is the directory). */
function keyOf(gitPath: string): string[] {
  const parts = gitPath.split('/');
  if (parts[0] === RECORDS) return ['r', ...parts.slice(1)];
  if (parts[0] === INODES) return ['i', ...parts.slice(2)]; // '%inodes/ab/<id>' -> the id
  if (parts[parts.length - 1] === DIR_MARKER) parts.pop();
  return ['f', ...parts.map(decodeName)];
}

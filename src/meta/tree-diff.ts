// A commit's rows (every blob and tree below its root, as `git ls-tree -r -t` lists them) made from
// a parent's rows and the trees that differ: a node's new commit changes a few directories, and
// listing the whole namespace again was a process and O(namespace) per view and per check.
// Subtrees whose id did not change are not read. The row limit counts as rows are added, so a
// tree naming one subtree many times over is refused as ls-tree would refuse it.
import { isUtf8 } from 'node:buffer';
import { TreeTooLargeError } from './repo.js';

export interface Row { mode: string; oid: string }
export interface Rows { blobs: Map<string, Row>; trees: Map<string, string>; badUtf8: Set<string> }
export interface TreeEntry { mode: string; name: Buffer; oid: string }

/** Entries of a tree object: `<mode> <name>\0<20-byte id>` each. Throws on a malformed one. */
export function parseTree(data: Buffer): TreeEntry[] {
  const out: TreeEntry[] = [];
  let pos = 0;
  while (pos < data.length) {
    const sp = data.indexOf(0x20, pos);
    const nul = sp < 0 ? -1 : data.indexOf(0, sp + 1);
    if (sp < 0 || nul < 0 || nul + 21 > data.length) throw new Error('malformed tree object');
    const mode = data.toString('latin1', pos, sp);
    if (!/^[0-7]{5,6}$/.test(mode)) throw new Error('malformed tree object (mode)');
    out.push({ mode, name: data.subarray(sp + 1, nul), oid: data.toString('hex', nul + 1, nul + 21) });
    pos = nul + 21;
  }
  return out;
}

const isTree = (mode: string) => mode === '40000' || mode === '040000';
const isBlob = (mode: string) => mode.startsWith('10') || mode === '120000';
/** ls-tree prints modes with six digits. */
const lsMode = (mode: string) => mode.padStart(6, '0');

export type ReadTrees = (oids: string[]) => Promise<Map<string, Buffer>>;

/** The rows of root tree `root`, given `base`: the rows of another tree (a parent's). `base` is not changed. */
export async function rowsFrom(base: Rows, root: string, readTrees: ReadTrees, maxRows: number): Promise<Rows> {
  const blobs = new Map(base.blobs);
  const trees = new Map(base.trees);
  let badUtf8 = base.badUtf8.size ? new Set(base.badUtf8) : new Set<string>();
  const bump = () => {
    if (blobs.size + trees.size - 1 > maxRows) throw new TreeTooLargeError(root, maxRows);
  };
  // Directories gone at one level: everything below them is dropped in one pass when the level
  // ends (a scan per directory made removing K directories O(K x namespace)).
  let gone = new Set<string>();
  const dropRow = (path: string) => {
    const oid = blobs.get(path)?.oid ?? trees.get(path);
    if (oid !== undefined) badUtf8.delete(`${path} ${oid}`);
    blobs.delete(path);
    if (trees.delete(path)) gone.add(path);
  };
  /** Whether a path lies below a gone directory: its ancestors looked up, not the set scanned. */
  const below = (path: string) => {
    for (let i = path.indexOf('/'); i >= 0; i = path.indexOf('/', i + 1)) if (gone.has(path.slice(0, i))) return true;
    return false;
  };
  const dropBelowGone = () => {
    if (!gone.size) return;
    for (const k of [...blobs.keys()]) if (below(k)) blobs.delete(k);
    for (const k of [...trees.keys()]) if (below(k)) trees.delete(k);
    if (badUtf8.size) badUtf8 = new Set([...badUtf8].filter((r) => !below(r.slice(0, r.lastIndexOf(' ')))));
    gone = new Set();
  };
  // Level by level: the changed trees of one depth are read in one exchange.
  let level: { path: string; oid: string; old?: string; bad: boolean }[] = [{ path: '', oid: root, old: base.trees.get(''), bad: false }];
  trees.set('', root);
  while (level.length) {
    const want = [...new Set(level.flatMap((l) => (l.old ? [l.oid, l.old] : [l.oid])))];
    const data = await readTrees(want);
    const next: typeof level = [];
    for (const l of level) {
      const now = parseTree(data.get(l.oid)!);
      const before = l.old ? parseTree(data.get(l.old)!) : [];
      const seen = new Set<string>();
      const was = new Map(before.map((e) => [e.name.toString('latin1'), e]));
      for (const e of now) {
        const key = e.name.toString('latin1');
        seen.add(key);
        const name = e.name.toString('utf8');
        const path = l.path ? `${l.path}/${name}` : name;
        const bad = l.bad || !isUtf8(e.name);
        const prev = was.get(key);
        if (prev && prev.mode === e.mode && prev.oid === e.oid) continue; // unchanged, all below too
        const prevTree = prev !== undefined && isTree(prev.mode);
        if (prev && bad) badUtf8.delete(`${path} ${prev.oid}`);
        if (isTree(e.mode)) {
          if (prev && !prevTree) dropRow(path); // a file became a directory
          trees.set(path, e.oid);
          if (bad) badUtf8.add(`${path} ${e.oid}`);
          if (!prevTree) bump();
          // A changed directory is compared with its old self below: only what differs moves.
          next.push({ path, oid: e.oid, old: prevTree ? prev!.oid : undefined, bad });
        } else if (isBlob(e.mode)) {
          if (prevTree) dropRow(path); // a directory became a file
          if (!blobs.has(path)) { blobs.set(path, { mode: lsMode(e.mode), oid: e.oid }); bump(); }
          else blobs.set(path, { mode: lsMode(e.mode), oid: e.oid });
          if (bad) badUtf8.add(`${path} ${e.oid}`);
        } else if (prev) dropRow(path); // not a row (a submodule link)
      }
      for (const [key, e] of was) {
        if (seen.has(key)) continue;
        const name = e.name.toString('utf8');
        dropRow(l.path ? `${l.path}/${name}` : name);
      }
    }
    dropBelowGone();
    level = next;
  }
  return { blobs, trees, badUtf8 };
}

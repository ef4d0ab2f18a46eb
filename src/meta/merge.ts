// Deterministic merges of two namespace heads. The result is a pure function of the two commits
// (and so of their merge base): every node that merges the same pair writes the same tree and the
// same commit id, so peers converge instead of merging each other's merges forever.
//
// Rules, per path (a file, symlink, directory marker or cluster record):
// - changed on one side only: that side; changed identically: either.
// - changed on both: the version with the later mtime keeps the name (ties: the larger blob id);
//   the other is kept beside it as `name.sync-conflict-YYYYMMDD-HHMMSS-NODE.ext` (the stem cut
//   on a character boundary so the name fits in 255 bytes; `.2`, `.3` ... when taken). Conflicts
//   are resolved in path order, so every node picks the same free names. A loser already kept
//   under one of its conflict names (a criss-cross history met again) is not kept twice.
// - deleted on one side, changed on the other: the change is kept.
// - directory attributes on both sides: the later one, no copy. Records on both: the larger bytes.
// - a file where the other side has a directory: the file moves to a conflict name.
// - what the merge cannot place (no valid free name) is left out and reported in `leftOut`:
//   it stays in the history of the side it came from, and the merge still succeeds, since a
//   merge that fails fails on every node alike and would stop sync for good.
// A head whose own names are not UTF-8 is refused (its paths would collapse into one another), and
// so is one that expands to more than MAX_TREE_ROWS rows (a tree bomb: one subtree named over and over)
// or whose distinct blobs add up to more than MAX_HEAD_BYTES (sizes from the headers, nothing read).
import { MAX_HEAD_BYTES, MAX_TREE_ROWS, type GitRepo } from './repo.js';
import { rowsFrom } from './tree-diff.js';
import type { PackObject } from './pack.js';
import { decodeEntry, decodeStored, encodeEntry, Entry } from './entry.js';
import { DIR_MARKER, MAX_NAME_BYTES, decodeName, encodeName, storedNameProblem } from './names.js';
import { buildTrees, objectId, RECORDS, GitObject, INODES, inodePath, refOid } from './tree.js';

interface Row { mode: string; oid: string }
type Flat = Map<string, Row>; // encoded blob path -> row

export interface MergeChange { path: string; row: Row | null }
export interface MergeResult {
  /** The new head: theirs (fast-forward) or a new merge commit. */
  commit: string;
  fastForward: boolean;
  /** Blob-level changes from ours to the result, by encoded path. */
  changes: MergeChange[];
  /** Tree ids of the result by encoded directory path ('' = root), to keep the in-memory cache exact. */
  trees: Map<string, string>;
  /** Blob contents of every changed path (for applying the changes). */
  blobs: Map<string, Buffer>;
  /** Encoded directory paths their side added since the base (to validate their names). */
  addedDirs: string[];
  /** Versions the merge could not place under any valid name: kept only in their side's history. */
  leftOut: { path: string; oid: string; reason: string }[];
}

const MERGER = 'delugefs <merge@delugefs>';
/** What every conflict copy's name holds (`name.sync-conflict-YYYYMMDD-HHMMSS-NODE.ext`). */
export const CONFLICT_TAG = '.sync-conflict-';

interface Flattened { blobs: Flat; trees: Map<string, string>; /** Rows whose path is not UTF-8: `path oid`. */ badUtf8: Set<string> }

// Flattened heads of recent merges, by commit (a commit's tree never changes): a view of k heads
// folds k-1 merges whose inputs are mostly the same few commits. Bounded by rows held.
const cache = new Map<string, Flattened>();
let cachedRows = 0;
const CACHE_ROWS = 200_000;
/** Heads that passed checkTheirs, and fold steps of views (pair of commits -> their merge): both by repository. */
const checked = new Set<string>();
const folds = new Map<string, { commit: string; leftOut: MergeResult['leftOut'] }>();

function markChecked(key: string): void {
  if (checked.size >= 10_000) checked.clear();
  checked.add(key);
}

/** By repository: the rows remembered last (a base for a commit none of whose parents is cached). */
const latest = new Map<string, Flattened>();

function remember(commit: string, f: Flattened): void {
  const rows = f.blobs.size + f.trees.size;
  if (rows > CACHE_ROWS / 4 || cache.has(commit)) return;
  cache.set(commit, f);
  const repo = commit.slice(0, commit.lastIndexOf(' '));
  latest.delete(repo); // kept in the order of use: the oldest goes first when full
  latest.set(repo, f);
  if (latest.size > 64) latest.delete(latest.keys().next().value!);
  cachedRows += rows;
  for (const [k, v] of cache) {
    if (cachedRows <= CACHE_ROWS) break;
    cache.delete(k);
    cachedRows -= v.blobs.size + v.trees.size;
  }
}

async function flatten(repo: GitRepo, commit: string, maxRows?: number): Promise<Flattened> {
  const hit = cache.get(`${repo.dir} ${commit}`);
  if (hit && (maxRows === undefined || hit.blobs.size + hit.trees.size <= maxRows)) return hit;
  const f = await flattenUncached(repo, commit, maxRows);
  remember(`${repo.dir} ${commit}`, f);
  return f;
}

async function flattenUncached(repo: GitRepo, commit: string, maxRows?: number): Promise<Flattened> {
  const c = await repo.readCommit(commit);
  // From a parent's rows, reading only the trees that changed (the usual case: a node's new
  // commit on a view or commit seen before).
  for (const p of c.parents) {
    const base = cache.get(`${repo.dir} ${p}`);
    if (base) return rowsFrom(base, c.tree, (oids) => repo.readTrees(oids), maxRows ?? MAX_TREE_ROWS);
  }
  // Another node's commit on a view we never made: any recent commit's rows are a base (the tree
  // diff reads only what differs), and much cheaper than listing the whole namespace again.
  const recent = latest.get(repo.dir);
  if (recent) return rowsFrom(recent, c.tree, (oids) => repo.readTrees(oids), maxRows ?? MAX_TREE_ROWS);
  const blobs: Flat = new Map();
  const trees = new Map<string, string>([['', c.tree]]);
  const badUtf8 = new Set<string>();
  for (const r of await repo.lsTree(c.tree, maxRows)) {
    if (r.badUtf8) badUtf8.add(`${r.path} ${r.oid}`);
    if (r.type === 'blob') blobs.set(r.path, { mode: r.mode, oid: r.oid });
    else if (r.type === 'tree') trees.set(r.path, r.oid);
  }
  return { blobs, trees, badUtf8 };
}

/**
 * Refuses a head that brings in (since the base) a path that is not UTF-8, or a file and a
 * directory of one name: both would collapse two entries into one. Names are checked by the
 * caller (namespace.ts validate) on the changes and `addedDirs`.
 */
async function checkTheirs(repo: GitRepo, theirs: Flattened, base: Flattened, oid: string, maxBytes: number): Promise<void> {
  for (const row of theirs.badUtf8) {
    if (!base.badUtf8.has(row)) throw new Error(`merge rejected: ${oid.slice(0, 12)} has a name that is not UTF-8 (${JSON.stringify(row.split(' ')[0])})`);
  }
  for (const d of addedDirs(base.trees, theirs.trees)) {
    if (theirs.blobs.has(d)) throw new Error(`merge rejected: ${oid.slice(0, 12)} has a file and a directory named ${JSON.stringify(d)}`);
  }
  checkInodes(theirs.blobs, base.blobs, oid);
  // From the object headers, before any blob of theirs is read: the whole head, so every node judges it alike.
  const total = await repo.totalSize([...new Set([...theirs.blobs.values()].map((r) => r.oid))]);
  if (total > maxBytes) throw new Error(`merge rejected: the entries of ${oid.slice(0, 12)} add up to ${total} bytes, more than the ${maxBytes} a head may hold`);
}

/**
 * Their hard-linked files are whole: every inode record they bring has a name (one without would
 * pin its content for good), and no name is left of a record they removed. Names are found by
 * their blob id (every name of one record is one blob), so no blob is read. A record without
 * names that the base had as it is was there before (not theirs to answer for).
 */
function checkInodes(theirs: Flat, base: Flat, oid: string): void {
  const prefix = INODES + '/';
  const records = new Map<string, string>(); // reference blob id -> record path
  for (const p of theirs.keys()) if (p.startsWith(prefix)) records.set(refOid(p.slice(p.lastIndexOf('/') + 1)), p);
  const gone: string[] = [];
  for (const p of base.keys()) if (p.startsWith(prefix) && !theirs.has(p)) gone.push(refOid(p.slice(p.lastIndexOf('/') + 1)));
  if (!records.size && !gone.length) return;
  const named = new Set<string>(), oids = new Set<string>();
  for (const [p, r] of theirs) {
    if (p.startsWith(prefix) || p.startsWith(RECORDS + '/')) continue;
    oids.add(r.oid);
    const rec = records.get(r.oid);
    if (rec !== undefined) named.add(rec);
  }
  for (const [, p] of records) {
    if (!named.has(p) && base.get(p)?.oid !== theirs.get(p)!.oid) throw new Error(`merge rejected: ${oid.slice(0, 12)} has a hard-linked file's record ${JSON.stringify(p)} with no name`);
  }
  for (const ref of gone) if (oids.has(ref)) throw new Error(`merge rejected: ${oid.slice(0, 12)} keeps names of a hard-linked file whose record it removed`);
}

function diff(from: Flat, to: Flat): MergeChange[] {
  const out: MergeChange[] = [];
  for (const [p, r] of to) if (from.get(p)?.oid !== r.oid) out.push({ path: p, row: r });
  for (const p of from.keys()) if (!to.has(p)) out.push({ path: p, row: null });
  return out;
}

/**
 * The name a losing version of `name` is kept under; `n` > 1 counts up when that name is taken.
 * Always at most MAX_NAME_BYTES of UTF-8: the stem is cut on a character boundary, and the
 * extension is kept when it fits beside at least one character of stem.
 */
export function conflictName(name: string, mtime: number, node: string, n = 1): string {
  const t = new Date(mtime);
  const d = Number.isNaN(t.getTime()) ? new Date(0) : t; // a peer's mtime past year 275760 has no date
  const pad = (v: number) => String(v).padStart(2, '0');
  const stamp = `${d.getUTCFullYear()}${pad(d.getUTCMonth() + 1)}${pad(d.getUTCDate())}-${pad(d.getUTCHours())}${pad(d.getUTCMinutes())}${pad(d.getUTCSeconds())}`;
  const safeNode = node.replace(/[^A-Za-z0-9]/g, '').slice(0, 16) || 'unknown';
  const tag = `${CONFLICT_TAG}${stamp}-${safeNode}`;
  const count = n > 1 ? `.${n}` : '';
  const room = MAX_NAME_BYTES - Buffer.byteLength(tag) - Buffer.byteLength(count);
  const dot = name.lastIndexOf('.');
  let [stem, ext] = dot > 0 ? [name.slice(0, dot), name.slice(dot)] : [name, ''];
  if (Buffer.byteLength(ext) >= room) [stem, ext] = [name, ''];
  return `${truncateUtf8(stem, room - Buffer.byteLength(ext))}${tag}${ext}${count}`;
}

/** The longest prefix of s (whole code points) whose UTF-8 takes at most max bytes. */
function truncateUtf8(s: string, max: number): string {
  if (Buffer.byteLength(s) <= max) return s;
  let bytes = 0;
  let end = 0;
  for (const ch of s) {
    bytes += Buffer.byteLength(ch);
    if (bytes > max) break;
    end += ch.length;
  }
  return s.slice(0, end);
}

/**
 * `maxRows` caps the rows their head may expand to (MAX_TREE_ROWS): only theirs, since ours and
 * the merge base (an ancestor of ours) hold nothing that did not pass this cap or come from here.
 */
export async function computeMerge(repo: GitRepo, ours: string, theirs: string, maxRows = MAX_TREE_ROWS, maxBytes = MAX_HEAD_BYTES): Promise<MergeResult> {
  const bases = await repo.mergeBases(ours, theirs);
  const base = bases[0];
  if (!base) throw new Error(`cannot merge ${theirs.slice(0, 12)}: no common history with ${ours.slice(0, 12)} (another cluster?)`);
  const o = await flatten(repo, ours);
  if (base === ours) {
    const t = await flatten(repo, theirs, maxRows);
    await checkTheirs(repo, t, o, theirs, maxBytes);
    const changes = diff(o.blobs, t.blobs);
    return { commit: theirs, fastForward: true, changes, trees: t.trees, blobs: await contents(repo, changes), addedDirs: addedDirs(o.trees, t.trees), leftOut: [] };
  }
  const m = await merge2(repo, ours, o, theirs, bases, maxRows, maxBytes);
  const changes = diff(o.blobs, m.result);
  return { commit: m.commit, fastForward: false, changes, trees: m.trees, blobs: await contents(repo, changes), addedDirs: m.addedDirs, leftOut: m.leftOut };
}

/**
 * The view of a set of heads: one deterministic commit from every node's latest head, whatever
 * order they arrived in (sync's convergence rests on it). `tips` must be independent (none an
 * ancestor of another: GitRepo.independent). One tip is the view itself. Several are folded in
 * sorted order, pairwise as computeMerge does (the intermediate commits stay local), into one
 * commit whose parents are all the tips: a function of the set only, so every node that knows
 * the same heads writes the same commit, and two tips give exactly computeMerge's commit.
 * The result's changes are against `ours`, which need not be an ancestor (the view may move
 * sideways: it is recomputed from the heads, never merged into the previous view).
 */
export async function computeView(repo: GitRepo, ours: string, tips: string[], maxRows = MAX_TREE_ROWS, maxBytes = MAX_HEAD_BYTES): Promise<MergeResult> {
  const sorted = [...new Set(tips)].sort();
  if (!sorted.length) throw new Error('a view needs at least one head');
  const o = await flatten(repo, ours);
  // Each head is checked as computeMerge checks theirs: against its merge base with ours.
  // A head checked once (by an earlier view) is not checked again: views are made on every push.
  for (const t of sorted) {
    if (t === ours || checked.has(`${repo.dir} ${t}`)) continue;
    // Against a parent already checked (a node's new commit sits on a view of checked heads):
    // what is new since it is all that needs a look, and no merge-base is run to find that.
    const parent = (await repo.readCommit(t)).parents.find((x) => x === ours || checked.has(`${repo.dir} ${x}`));
    const base = parent ?? (await repo.mergeBase(ours, t));
    if (!base) throw new Error(`cannot merge ${t.slice(0, 12)}: no common history with ${ours.slice(0, 12)} (another cluster?)`);
    await checkTheirs(repo, await flatten(repo, t, maxRows), base === ours ? o : await flatten(repo, base), t, maxBytes);
    markChecked(`${repo.dir} ${t}`);
  }
  let acc = sorted[0]!;
  let leftOut: MergeResult['leftOut'] = [];
  // Each fold step is remembered: the next view (one head moved) redoes only the steps after it.
  for (const t of sorted.slice(1)) {
    const key = `${repo.dir} ${acc} ${t}`;
    let step = folds.get(key);
    if (!step) {
      const bases = await repo.mergeBases(acc, t);
      if (!bases.length) throw new Error(`cannot merge ${t.slice(0, 12)}: no common history with ${acc.slice(0, 12)}`);
      const m = await merge2(repo, acc, await flatten(repo, acc), t, bases, maxRows, maxBytes, await flatten(repo, t, maxRows));
      remember(`${repo.dir} ${m.commit}`, { blobs: m.result, trees: m.trees, badUtf8: new Set() });
      step = { commit: m.commit, leftOut: m.leftOut };
      if (folds.size >= 1024) folds.clear();
      folds.set(key, step);
    }
    acc = step.commit;
    leftOut = [...leftOut, ...step.leftOut];
  }
  const accFlat = await flatten(repo, acc);
  let commit = acc;
  if (sorted.length > 2) {
    let time = 0;
    for (const t of sorted) time = Math.max(time, (await repo.readCommit(t)).time);
    const text = `tree ${accFlat.trees.get('')}\n${sorted.map((t) => `parent ${t}\n`).join('')}author ${MERGER} ${time} +0000\ncommitter ${MERGER} ${time} +0000\n\nMerge ${sorted.length} heads\n\n${sorted.map((t) => t.slice(0, 12)).join('\n')}\n`;
    const data = Buffer.from(text);
    commit = objectId('commit', data);
    await repo.writeObjects([{ type: 'commit', oid: commit, data }]);
  }
  // Made of checked heads: a commit on top of it (the next one a node makes) is checked against it.
  markChecked(`${repo.dir} ${commit}`);
  const changes = diff(o.blobs, accFlat.blobs);
  return { commit, fastForward: sorted.length === 1, changes, trees: accFlat.trees, blobs: await contents(repo, changes), addedDirs: addedDirs(o.trees, accFlat.trees), leftOut };
}

/** Merge bases a merge looks at (criss-cross histories of many writers have a few). */
const MAX_BASES = 16;

interface Merged { commit: string; result: Flat; trees: Map<string, string>; addedDirs: string[]; leftOut: MergeResult['leftOut'] }

/** The merge commit of two heads that are not ancestors of each other (parents sorted: the pair, not the order, decides it). */
async function merge2(repo: GitRepo, ours: string, o: Flattened, theirs: string, baseOids: string[], maxRows: number, maxBytes: number, theirsFlat?: Flattened): Promise<Merged> {
  // Criss-cross histories have several merge bases; one alone may predate a version both sides
  // saw (the writer's first commit of a file and its next): each path is judged against all of
  // them, so a side still holding a version some base had did not change it. With one base this
  // is the plain three-way rule. At most MAX_BASES (sorted): every node takes the same ones.
  const bs = await Promise.all(baseOids.slice(0, MAX_BASES).map((x) => flatten(repo, x)));
  const b = bs[0]!;
  const t = theirsFlat ?? (await flatten(repo, theirs, maxRows));
  if (!theirsFlat) await checkTheirs(repo, t, b, theirs, maxBytes);
  const result: Flat = new Map();
  const conflicts: { path: string; a: Row; b: Row }[] = [];
  const paths = new Set([...o.blobs.keys(), ...t.blobs.keys()]);
  // A version counts as old when some base had it; no version (a deletion) only when no base had
  // the path: one base from before the file's creation must not undo its deletion (review finding).
  const inBase = (p: string, r: Row | undefined) => (r ? bs.some((x) => x.blobs.get(p)?.oid === r.oid) : bs.every((x) => !x.blobs.has(p)));
  for (const p of paths) {
    const oo = o.blobs.get(p), to = t.blobs.get(p);
    if (oo?.oid === to?.oid) { if (oo) result.set(p, oo); continue; }
    const oOld = inBase(p, oo), tOld = inBase(p, to);
    if (oOld && !tOld) { if (to) result.set(p, to); continue; }
    if (tOld && !oOld) { if (oo) result.set(p, oo); continue; }
    if (!oo || !to) { result.set(p, (oo ?? to)!); continue; } // delete racing modify: keep the modify
    conflicts.push({ path: p, a: oo, b: to });
  }
  // Path order, not arrival order: two conflicts may compete for one free name.
  conflicts.sort((x, y) => (x.path < y.path ? -1 : x.path > y.path ? 1 : 0));
  const leftOut: MergeResult['leftOut'] = [];
  // Every directory of the result, known up front (each conflict path's winner goes in below):
  // a free name is checked against it in O(1), not by scanning every path (quadratic in conflicts).
  const dirs = dirsOf([...result.keys(), ...conflicts.map((c) => c.path)]);
  // Resolve conflicts: contents are needed to order them. A hard-linked name stands for its
  // inode record (as its side has it), whose times order it.
  const versions = new Versions(repo, [o.blobs, t.blobs]);
  await versions.load(conflicts.flatMap((c) => [c.a.oid, c.b.oid]));
  // Inode records changed on both sides: after the names, beside which a losing version is kept.
  const inodeConflicts: typeof conflicts = [];
  for (const c of conflicts) {
    const slash = c.path.lastIndexOf('/');
    const name = c.path.slice(slash + 1);
    if (c.path.startsWith(RECORDS + '/')) {
      result.set(c.path, Buffer.compare(versions.raw(c.a.oid), versions.raw(c.b.oid)) >= 0 ? c.a : c.b);
      continue;
    }
    if (c.path.startsWith(INODES + '/')) {
      inodeConflicts.push(c);
      continue;
    }
    const ea = versions.entry(c.a.oid, 0), eb = versions.entry(c.b.oid, 1);
    const aWins = ea.mtime !== eb.mtime ? ea.mtime > eb.mtime : c.a.oid > c.b.oid;
    const [win, lose, loser] = aWins ? [c.a, c.b, eb] : [c.b, c.a, ea];
    result.set(c.path, win);
    if (name === DIR_MARKER) continue;
    place(result, dirs, leftOut, c.path, lose, loser);
  }
  await fixStructure(result, dirs, [o.blobs, t.blobs, ...bs.map((x) => x.blobs)], repo, leftOut);
  await fixInodes(result, dirs, [o.blobs, t.blobs, ...bs.map((x) => x.blobs)], bs.map((x) => x.blobs), inodeConflicts, versions, leftOut);
  const objects: GitObject[] = [];
  const trees = new Map<string, string>();
  const root = buildTrees(result, objects, trees);
  const [first, second] = [ours, theirs].sort();
  const time = Math.max((await repo.readCommit(ours)).time, (await repo.readCommit(theirs)).time);
  const text = `tree ${root}\nparent ${first}\nparent ${second}\nauthor ${MERGER} ${time} +0000\ncommitter ${MERGER} ${time} +0000\n\nMerge ${first.slice(0, 12)} and ${second.slice(0, 12)}\n`;
  const data = Buffer.from(text);
  const commit = objectId('commit', data);
  await repo.writeObjects([...(objects as PackObject[]), { type: 'commit', oid: commit, data }]);
  return { commit, result, trees, addedDirs: addedDirs(b.trees, t.trees), leftOut };
}

/** Directories their side made since the base (an empty one holds no blob to check the name of). */
function addedDirs(base: Map<string, string>, theirs: Map<string, string>): string[] {
  return [...theirs.keys()].filter((p) => p !== '' && !base.has(p));
}

/**
 * Blobs a merge orders conflicts by. A name that is an inode reference is judged by its record
 * as the side it came from (0: ours, 1: theirs) has it.
 */
class Versions {
  private blobs = new Map<string, Buffer>();
  constructor(private readonly repo: GitRepo, private readonly sides: Flat[]) {}

  async load(oids: string[]): Promise<void> {
    const want = (xs: string[]) => [...new Set(xs)].filter((x) => !this.blobs.has(x));
    for (const [k, v] of await this.repo.readBlobs(want(oids))) this.blobs.set(k, v);
    // The records the references among them name, from either side.
    const recs: string[] = [];
    for (const oid of oids) {
      const e = this.stored(oid);
      if (e?.type !== 'ref') continue;
      for (const side of this.sides) {
        const row = side.get(inodePath(e.inode));
        if (row) recs.push(row.oid);
      }
    }
    for (const [k, v] of await this.repo.readBlobs(want(recs))) this.blobs.set(k, v);
  }

  raw(oid: string): Buffer {
    return this.blobs.get(oid)!;
  }

  private stored(oid: string): ReturnType<typeof decodeStored> | undefined {
    try {
      return decodeStored(this.blobs.get(oid)!);
    } catch {
      return undefined;
    }
  }

  /** The entry a version stands for; `side` says whose record a reference reads. */
  entry(oid: string, side: number): Entry {
    const e = this.stored(oid);
    if (e?.type !== 'ref') return e ?? safeDecode(Buffer.alloc(0));
    const row = this.sides[side]?.get(inodePath(e.inode)) ?? this.sides.map((s) => s.get(inodePath(e.inode))).find(Boolean);
    return row && this.blobs.has(row.oid) ? safeDecode(this.blobs.get(row.oid)!) : safeDecode(Buffer.alloc(0));
  }
}

/**
 * Keeps hard-linked files whole after the path-wise merge:
 * - an inode record changed on both sides keeps the later version; the other is kept as a
 *   plain file beside the record's first name (path order), under a conflict name;
 * - a record left without names that some side changed since the bases (its names were deleted
 *   on one side while the other wrote it) gets back its names from the sides, where they are
 *   free, with their directories (delete racing modify keeps the modify, as for a plain file);
 *   where none can come back, its version is kept as a plain file beside its first former name;
 * - a record left without names that no side changed goes: every name was deleted somewhere,
 *   and deletes that do not race a change stand (two nodes each deleting one name);
 * - a name whose record went (deleted on one side, renamed or linked on the other) gets the
 *   record back from the side that still has it.
 * Linear in the rows of the sides; costs nothing when no side has a record.
 */
async function fixInodes(result: Flat, dirs: Set<string>, sides: Flat[], bases: Flat[], conflicts: { path: string; a: Row; b: Row }[], versions: Versions, leftOut: MergeResult['leftOut']): Promise<void> {
  const prefix = INODES + '/';
  const idOf = (p: string) => p.slice(p.lastIndexOf('/') + 1);
  const ids = new Map<string, string>(); // reference blob id -> inode id
  for (const side of [result, ...sides]) {
    for (const p of side.keys()) if (p.startsWith(prefix)) ids.set(refOid(idOf(p)), idOf(p));
  }
  if (!ids.size) return;
  const isName = (p: string) => !p.startsWith(prefix) && !p.startsWith(RECORDS + '/');
  const names = new Map<string, string[]>();
  for (const [p, r] of result) {
    const id = ids.get(r.oid);
    if (id !== undefined && isName(p)) (names.get(id) ?? names.set(id, []).get(id)!).push(p);
  }
  for (const v of names.values()) v.sort();
  // Names whose record is gone: it comes back from a side that has it.
  for (const id of names.keys()) {
    const at = inodePath(id);
    if (!result.has(at)) {
      const row = sides.map((s) => s.get(at)).find(Boolean);
      if (row) result.set(at, row);
    }
  }
  // Records changed on both sides. Versions that differ in ctime alone (both linked the file at
  // once, or linked it again) are one version: the later ctime, no conflict copy.
  const sansCtime = (e: Entry) => encodeEntry({ ...e, ctime: 0 });
  for (const c of conflicts) {
    const ea = versions.entry(c.a.oid, 0), eb = versions.entry(c.b.oid, 1);
    if (sansCtime(ea).equals(sansCtime(eb))) {
      result.set(c.path, ea.ctime !== eb.ctime ? (ea.ctime > eb.ctime ? c.a : c.b) : c.a.oid > c.b.oid ? c.a : c.b);
      continue;
    }
    const aWins = ea.mtime !== eb.mtime ? ea.mtime > eb.mtime : c.a.oid > c.b.oid;
    const [win, lose, loser] = aWins ? [c.a, c.b, eb] : [c.b, c.a, ea];
    result.set(c.path, win);
    const first = names.get(idOf(c.path))?.[0];
    if (first) place(result, dirs, leftOut, first, lose, loser);
    else leftOut.push({ path: c.path, oid: lose.oid, reason: 'a version of a hard-linked file with no name to keep it beside' });
  }
  // Records without names. Their former names from every side, in one pass over the rows.
  const nameless = [...result.keys()].filter((x) => x.startsWith(prefix) && !names.has(idOf(x))).sort();
  if (!nameless.length) return;
  const want = new Map(nameless.map((p) => [refOid(idOf(p)), p]));
  const former = new Map<string, Set<string>>();
  for (const side of sides) {
    for (const [q, r] of side) {
      const p = want.get(r.oid);
      if (p !== undefined && isName(q)) (former.get(p) ?? former.set(p, new Set()).get(p)!).add(q);
    }
  }
  await versions.load(nameless.map((p) => result.get(p)!.oid));
  for (const p of nameless) {
    const row = result.get(p)!;
    const was = [...(former.get(p) ?? [])].sort();
    if (bases.some((b) => b.get(p)?.oid === row.oid)) {
      result.delete(p); // unchanged: the deletes of its names stand
      continue;
    }
    let back = 0;
    for (const q of was) {
      if (result.has(q) || dirs.has(q) || !restoreDirs(result, dirs, sides, q)) continue;
      result.set(q, { mode: '100644', oid: refOid(idOf(p)) });
      back++;
    }
    if (back) continue;
    // No name can come back (all taken, or a directory stands there): the written version stays
    // as a plain file, its record's blob being an ordinary entry.
    result.delete(p);
    const beside = was.find((q) => restoreDirs(result, dirs, sides, q));
    if (beside) place(result, dirs, leftOut, beside, row, versions.entry(row.oid, 0));
    else leftOut.push({ path: p, oid: row.oid, reason: 'a hard-linked file none of whose names can come back' });
  }
}

/**
 * Gives path's directories their markers back from the sides (a directory deleted on one side
 * while a record its name points to was written on the other). False, changing nothing, when a
 * file of the result stands where one of them would be, or no side has a marker for it.
 */
function restoreDirs(result: Flat, dirs: Set<string>, sides: Flat[], path: string): boolean {
  const parts = path.split('/');
  const missing: [string, Row][] = [];
  for (let i = 1; i < parts.length; i++) {
    const d = parts.slice(0, i).join('/');
    if (result.has(d)) return false;
    const marker = `${d}/${DIR_MARKER}`;
    if (result.has(marker)) continue;
    const row = sides.map((s) => s.get(marker)).find(Boolean);
    if (!row) return false;
    missing.push([marker, row]);
  }
  for (const [marker, row] of missing) {
    result.set(marker, row);
    dirs.add(marker.slice(0, marker.lastIndexOf('/')));
  }
  return true;
}

function safeDecode(data: Buffer): Entry {
  try {
    return decodeEntry(data);
  } catch {
    return { type: 'dir', mode: 0, uid: 0, gid: 0, mtime: 0, ctime: 0 };
  }
}

/** Puts the losing version of path under a free conflict name, or reports it left out. */
function place(result: Flat, dirs: Set<string>, leftOut: MergeResult['leftOut'], path: string, row: Row, loser: Entry): void {
  const slash = path.lastIndexOf('/');
  const dir = path.slice(0, slash + 1);
  const encName = path.slice(slash + 1);
  const problem = storedNameProblem(encName);
  if (problem) {
    leftOut.push({ path, oid: row.oid, reason: `its name cannot be a conflict copy: ${problem}` });
    return;
  }
  const name = decodeName(encName);
  if (keptAlready(result, dir, name, row, loser)) return;
  const free = freeName(result, dirs, dir, name, loser);
  result.set(free, row);
  for (const d of dirsOf([free])) dirs.add(d); // its own directory: there already, kept exact anyway
}

/**
 * True when this losing version is already kept under one of its own conflict names. With several
 * merge bases (criss-cross histories) the one chosen may predate the merge that made the copy:
 * both sides then still differ at the name and the loser would be kept again as `.2`. Only when
 * the name is whole in its conflict names (not cut to fit 255 bytes): cut names of two files may
 * be alike, and each file's loser must still be kept.
 */
function keptAlready(result: Flat, dir: string, name: string, row: Row, loser: Entry): boolean {
  const node = loser.node ?? 'unknown';
  const tagBytes = CONFLICT_TAG.length + 15 + 1 + (node.replace(/[^A-Za-z0-9]/g, '').slice(0, 16) || 'unknown').length;
  if (Buffer.byteLength(conflictName(name, loser.mtime, node, 1)) !== Buffer.byteLength(name) + tagBytes) return false;
  for (let i = 1; ; i++) {
    const r = result.get(dir + encodeName(conflictName(name, loser.mtime, node, i)));
    if (!r) return false;
    if (r.oid === row.oid) return true;
  }
}

/** Every directory above the given paths ('a/b/c' -> 'a', 'a/b'). */
function dirsOf(paths: Iterable<string>): Set<string> {
  const out = new Set<string>();
  for (const p of paths) {
    for (let i = p.indexOf('/'); i >= 0; i = p.indexOf('/', i + 1)) out.add(p.slice(0, i));
  }
  return out;
}

/** A conflict name not yet taken in dir (counting up if the same second already had a conflict). */
function freeName(result: Flat, dirs: Set<string>, dir: string, name: string, loser: Entry): string {
  const taken = (p: string) => result.has(p) || dirs.has(p);
  let candidate = '';
  for (let i = 1; !candidate || taken(candidate); i++) candidate = dir + encodeName(conflictName(name, loser.mtime, loser.node ?? 'unknown', i));
  return candidate;
}

/**
 * Repairs what path-wise merging can break: a directory whose marker was deleted on one side
 * while the other added inside it gets its marker back, and a file standing where the other side
 * made a directory moves to a conflict name.
 */
async function fixStructure(result: Flat, resultDirs: Set<string>, sides: Flat[], repo: GitRepo, leftOut: MergeResult['leftOut']): Promise<void> {
  const dirs = new Set<string>();
  for (const p of result.keys()) {
    if (p.startsWith(RECORDS + '/')) continue;
    const parts = p.split('/');
    for (let i = 1; i < parts.length; i++) dirs.add(parts.slice(0, i).join('/'));
  }
  const clashes = [...dirs].filter((d) => result.has(d));
  const data = await repo.readBlobs([...new Set(clashes.map((d) => result.get(d)!.oid))]);
  for (const d of [...dirs].sort()) {
    const file = result.get(d);
    if (file) {
      result.delete(d);
      place(result, resultDirs, leftOut, d, file, safeDecode(data.get(file.oid)!));
    }
    const marker = `${d}/${DIR_MARKER}`;
    if (!result.has(marker)) {
      const row = sides.map((s) => s.get(marker)).find(Boolean);
      if (row) result.set(marker, row);
    }
  }
}

async function contents(repo: GitRepo, changes: MergeChange[]): Promise<Map<string, Buffer>> {
  const oids = [...new Set(changes.filter((c) => c.row).map((c) => c.row!.oid))];
  return repo.readBlobs(oids);
}


// The metadata repository: a bare Git repository under the node root. Objects are written as
// packs by pack.ts; Git itself is used for what it does best (refs, reading, fsck, gc).
import { spawn } from 'node:child_process';
import { isUtf8 } from 'node:buffer';
import { join } from 'node:path';
import { readdir, stat } from 'node:fs/promises';
import { run } from '../util/exec.js';
import { writePack, PackObject } from './pack.js';
import { MissingObjectError, ObjectTooLargeError } from './cat-file.js';
import { ObjectReader, type ObjectInfo } from './object-reader.js';
import { ObjectCache } from './object-cache.js';
import { CommitGraph } from './commit-graph.js';
import { LooseRefs, type RefUpdate } from './refs.js';

/**
 * Largest blob a namespace entry or record may be: a file's metainfo holds 20 bytes per piece,
 * so 16 MiB is ~13 TiB of content at 16 MiB pieces (1 TiB needs 1.3 MB). Pushes carrying a
 * bigger blob are refused (cluster/repo-guard.ts), and so are merges that would read one.
 */
export const MAX_ENTRY_BLOB = 16 * 2 ** 20;

/**
 * Most rows (files, directories, markers, records) a peer's head may expand to. Far above what
 * a push may legitimately carry (a pack of MAX_PACK bytes holds ~1-2 M new entries) and below
 * what a node can hold in memory (~0.5 KB a row while merging); a tree naming one subtree many
 * times over goes past it with a few objects and is refused by every node alike.
 */
export const MAX_TREE_ROWS = 4 * 2 ** 20;

/**
 * Most bytes the distinct blobs of a peer's head may add up to (judged from their headers, before
 * any is read): what MAX_TREE_ROWS entries of ~250 bytes take. Each blob is under MAX_ENTRY_BLOB,
 * but 256 blobs of 16 MiB of zeros are a pack of a few MiB that would make every node hold 4 GiB
 * while merging. A pure function of the head, so every node refuses the same heads.
 */
export const MAX_HEAD_BYTES = 2 ** 30;

/**
 * An object this repository does not hold (yet): a fact about this node, not about the head that
 * names it (sync must not refuse a value for it as every node would refuse a malformed one).
 */
export class ObjectMissingError extends Error {}

export class TreeTooLargeError extends Error {
  constructor(readonly tree: string, readonly limit: number) {
    super(`tree ${tree.slice(0, 12)} expands to more than ${limit} entries (a subtree named over and over?)`);
  }
}

export interface TreeRow { mode: string; type: string; oid: string; path: string; badUtf8?: true }

export const BRANCH = 'refs/heads/main';
/** core.sharedRepository: files 0600, directories 0700, readable by the node's user only. */
export const PRIVATE_GIT_MODE = '0600';

/** Packs before maintain() rolls them together (every commit, view and received push writes one). */
const ROLL_AT = 8;
/** Every this many maintain() calls it is a full gc instead, which sweeps unreachable objects. */
const FULL_EVERY = 100;

export interface CommitInfo { tree: string; parents: string[]; message: string; /** committer time, seconds */ time: number }

export class GitRepo {
  private readonly reader: ObjectReader;
  // Commits never change, so neither do their merge bases nor who descends from whom: asked
  // again and again by views and summary exchanges, each answer once cost a process.
  private readonly bases = new Map<string, string[]>();
  private readonly ancestry = new Map<string, boolean>();

  private readonly graph: CommitGraph;
  private maintained = 0;
  /** git older than 2.37 (no repack --geometric, no gc --cruft): maintain() is git gc --auto. */
  private oldGit = false;
  /** Objects read or written lately (object-cache.ts): answered without a round trip to git. */
  private readonly cache = new ObjectCache();
  /** Ref updates and listings without a process (refs.ts). */
  readonly refs: LooseRefs;

  constructor(readonly dir: string) {
    this.reader = new ObjectReader(dir, gitEnv);
    this.refs = new LooseRefs(dir);
    this.graph = new CommitGraph((oids) => this.readParents(oids));
  }

  /** Parents of many commits in one exchange (the commit graph's walks). */
  private async readParents(oids: string[]): Promise<Map<string, string[]>> {
    const out = new Map<string, string[]>();
    for (const [oid, o] of await this.readObjects(oids, MAX_ENTRY_BLOB)) out.set(oid, parseCommit(oid, o).parents);
    return out;
  }

  /** Ends the long-lived object reader (it never keeps the process alive, but a node closing tidies up). */
  close(): void {
    this.reader.close();
  }

  private git(args: string[], input?: Buffer | string, allowFail = false) {
    return run('git', [`--git-dir=${this.dir}`, ...args], { input, allowFail, env: gitEnv() });
  }

  async exists(): Promise<boolean> {
    try {
      return (await stat(join(this.dir, 'HEAD'))).isFile();
    } catch {
      return false;
    }
  }

  async init(): Promise<void> {
    // --shared=0600: git makes every file it writes 0600 (dirs 0700) whatever the umask of the
    // process that runs it (node/private-root.ts sets it on older repositories).
    await run('git', ['init', '--bare', '--quiet', '--initial-branch=main', `--shared=${PRIVATE_GIT_MODE}`, '--', this.dir], { env: gitEnv() });
    // Packs come in small and often; let git gc fold them together in the background.
    await this.git(['config', 'gc.autoPackLimit', '20']);
    await this.git(['config', 'gc.autoDetach', 'false']);
    await this.git(['config', 'core.logAllRefUpdates', 'true']);
    await this.git(['config', 'receive.denyNonFastForwards', 'true']);
  }

  head(): Promise<string | null> {
    return this.readRef(BRANCH);
  }

  /** Moves the branch from `old` (null: must not exist) to `next`, atomically. */
  async updateRef(next: string, old: string | null): Promise<void> {
    await this.refs.update([[BRANCH, next, old]]);
  }

  /** Updates several refs in one transaction: each `[ref, next, old]` (old null: must not exist; undefined: any). */
  async updateRefs(updates: RefUpdate[]): Promise<void> {
    await this.refs.update(updates);
  }

  /**
   * Each update compare-and-swapped: all in one transaction, and when that fails (one of them
   * moved meanwhile: a push or fetch of the same ref) each alone. Says which went in.
   */
  async updateRefsEach(updates: RefUpdate[]): Promise<boolean[]> {
    if (!updates.length) return [];
    try {
      await this.updateRefs(updates);
      return updates.map(() => true);
    } catch {
      const out: boolean[] = [];
      for (const u of updates) out.push(await this.updateRefs([u]).then(() => true, () => false));
      return out;
    }
  }

  /** Type and size of objects (from the cache when there) or refs (always asked: they move); null when missing. */
  private async info(names: string[]): Promise<Map<string, ObjectInfo | null>> {
    const out = new Map<string, ObjectInfo | null>();
    const ask: string[] = [];
    for (const n of names) {
      const hit = this.cache.get(n);
      if (hit) out.set(n, { oid: n, type: hit.type, size: hit.data.length });
      else ask.push(n);
    }
    if (ask.length) for (const [n, i] of await this.reader.info(ask)) out.set(n, i);
    return out;
  }

  /** The values of several refs in one exchange (null: no such ref). */
  async readRefs(refs: string[]): Promise<Map<string, string | null>> {
    const out = new Map<string, string | null>();
    for (const [ref, i] of await this.reader.info(refs)) out.set(ref, i?.type === 'commit' ? i.oid : null);
    return out;
  }

  /** The value of a ref, or null. */
  async readRef(ref: string): Promise<string | null> {
    return (await this.readRefs([ref])).get(ref) ?? null;
  }

  /** Refs below a prefix (e.g. 'refs/nodes/'): name after the prefix -> commit. */
  listRefs(prefix: string): Promise<Map<string, string>> {
    return this.refs.list(prefix);
  }

  /** The commits of `oids` that are not ancestors of another of them (sorted, no duplicates). */
  async independent(oids: string[]): Promise<string[]> {
    const set = [...new Set(oids)];
    if (set.length <= 1) return set;
    for (const oid of set) if (!/^[0-9a-f]{40}$/.test(oid)) throw new Error(`not a commit id: ${JSON.stringify(oid.slice(0, 60))}`);
    for (const [oid, i] of await this.info(set)) {
      if (!i) throw new ObjectMissingError(`commit ${oid} is missing from ${this.dir}`);
      if (i.type !== 'commit') throw new Error(`${oid} is a ${i.type}, not a commit`);
    }
    return this.graph.independent(set);
  }

  async writeObjects(objects: PackObject[]): Promise<void> {
    await writePack(join(this.dir, 'objects'), objects);
    // Read again soon: a view's next step reads the commit it just wrote, a view reads the trees a push brought.
    for (const o of objects) this.cache.put(o.oid, o.type, o.data);
  }

  /** Commits never change: the last few thousand read are kept (views read the same ones over and over). */
  private commits = new Map<string, CommitInfo>();

  async readCommit(oid: string): Promise<CommitInfo> {
    const hit = this.commits.get(oid);
    if (hit) return hit;
    const info = await this.readCommitUncached(oid);
    if (this.commits.size >= 4096) this.commits.clear();
    this.commits.set(oid, info);
    return info;
  }

  private async readCommitUncached(oid: string): Promise<CommitInfo> {
    return parseCommit(oid, (await this.readObjects([oid], MAX_ENTRY_BLOB)).get(oid)!);
  }

  /**
   * Every entry below a tree: [mode, type, oid, path] with raw (encoded) paths, streamed from one
   * `git ls-tree -r`. More than `maxRows` fails the read (TreeTooLargeError) as soon as they are
   * seen: a peer's tree may name one subtree many times over, so a few objects can expand into
   * billions of rows. `badUtf8`: the path's bytes are not UTF-8, so `path` (decoded lossily) may
   * equal another row's.
   */
  async lsTree(tree: string, maxRows = Number.POSITIVE_INFINITY): Promise<TreeRow[]> {
    const p = spawn('git', [`--git-dir=${this.dir}`, 'ls-tree', '-r', '-t', '-z', '--full-tree', tree], { stdio: ['ignore', 'pipe', 'pipe'], env: gitEnv() });
    let stderr = '';
    p.stderr.on('data', (b: Buffer) => (stderr += b.toString()));
    const closed: Promise<number> = new Promise((r) => p.on('close', (c) => r(c ?? -1)));
    const rows: TreeRow[] = [];
    let rest: Buffer | undefined; // a record cut by the chunk boundary (at most one path long)
    try {
      for await (const chunk of p.stdout as AsyncIterable<Buffer>) {
        const out = rest ? Buffer.concat([rest, chunk]) : chunk;
        let pos = 0;
        for (let end = out.indexOf(0, pos); end >= 0; end = out.indexOf(0, pos)) {
          const line = out.toString('utf8', pos, end);
          const tab = line.indexOf('\t');
          const [mode, type, oid] = line.slice(0, tab).split(' ');
          const row: TreeRow = { mode: mode!, type: type!, oid: oid!, path: line.slice(tab + 1) };
          if (line.includes('\uFFFD') && !isUtf8(out.subarray(pos, end))) row.badUtf8 = true;
          if (rows.push(row) > maxRows) throw new TreeTooLargeError(tree, maxRows);
          pos = end + 1;
        }
        rest = pos < out.length ? out.subarray(pos) : undefined;
      }
    } catch (e) {
      p.kill();
      throw e;
    }
    const code = await closed;
    if (code !== 0 || rest) throw new Error(`git ls-tree ${tree} failed (${code}): ${stderr.trim()}`);
    return rows;
  }

  /** The commits in the history of `tips` and not of `not` (all present here), newest first; null past `max`. */
  async newCommits(tips: string[], not: string[], max: number): Promise<string[] | null> {
    return this.graph.only(tips, not, max);
  }

  /** Objects as stored (type and bytes), in one exchange; one over `maxSize` fails the read. */
  async rawObjects(oids: string[], maxSize = MAX_ENTRY_BLOB): Promise<Map<string, { type: string; data: Buffer }>> {
    return this.readObjects(oids, maxSize);
  }

  /** The type of each object, or null when it is missing: headers only, one exchange. */
  async types(oids: string[]): Promise<Map<string, string | null>> {
    const out = new Map<string, string | null>();
    for (const o of oids) if (!/^[0-9a-f]{40}$/.test(o)) throw new Error(`not an object name: ${JSON.stringify(o.slice(0, 60))}`);
    for (const [oid, i] of await this.info(oids)) out.set(oid, i?.type ?? null);
    return out;
  }

  /** Sum of the sizes of `oids` (distinct), from their headers: no object is read. */
  async totalSize(oids: string[]): Promise<number> {
    let total = 0;
    for (const [oid, i] of await this.info(oids)) {
      if (!i) throw new ObjectMissingError(`object ${oid} is missing from ${this.dir}`);
      total += i.size;
    }
    return total;
  }

  /** Many objects in one exchange; one over `maxSize` (default MAX_ENTRY_BLOB) fails the read from its header. */
  async readBlobs(oids: string[], maxSize = MAX_ENTRY_BLOB): Promise<Map<string, Buffer>> {
    const result = new Map<string, Buffer>();
    for (const [oid, o] of await this.readObjects(oids, maxSize)) result.set(oid, o.data);
    return result;
  }

  /** Tree objects by id, in one exchange; anything but a tree fails the read. */
  async readTrees(oids: string[]): Promise<Map<string, Buffer>> {
    const out = new Map<string, Buffer>();
    for (const [oid, o] of await this.readObjects(oids, MAX_ENTRY_BLOB)) {
      if (o.type !== 'tree') throw new Error(`${oid} is a ${o.type}, not a tree`);
      out.set(oid, o.data);
    }
    return out;
  }

  private async readObjects(oids: string[], maxSize: number): Promise<Map<string, { type: string; data: Buffer }>> {
    const out = new Map<string, { type: string; data: Buffer }>();
    const ask: string[] = [];
    for (const oid of oids) {
      const hit = this.cache.get(oid);
      if (!hit) ask.push(oid);
      else if (hit.data.length > maxSize) throw new ObjectTooLargeError(oid, hit.data.length, maxSize);
      else out.set(oid, hit);
    }
    if (!ask.length) return out;
    try {
      for (const [oid, o] of await this.reader.read(ask, maxSize)) {
        this.cache.put(oid, o.type, o.data);
        out.set(oid, o);
      }
      return out;
    } catch (e) {
      throw e instanceof MissingObjectError ? new ObjectMissingError(`${e.message} from ${this.dir}`) : e;
    }
  }

  /** The merge base of two commits, chosen deterministically when there are several; null if unrelated. */
  async mergeBase(a: string, b: string): Promise<string | null> {
    return (await this.mergeBases(a, b))[0] ?? null;
  }

  /** Every best common ancestor of two commits (criss-cross histories have several), sorted; empty if unrelated. */
  async mergeBases(a: string, b: string): Promise<string[]> {
    const key = a < b ? `${a} ${b}` : `${b} ${a}`;
    const hit = this.bases.get(key);
    if (hit) return hit;
    const bases = await this.graph.mergeBases(a, b);
    remember(this.bases, key, bases);
    return bases;
  }

  /** Whether `a` is in the history of `b` (false when either is not here). */
  async isAncestor(a: string, b: string): Promise<boolean> {
    const key = `${a} ${b}`;
    const hit = this.ancestry.get(key);
    if (hit !== undefined) return hit;
    // A commit we lack cannot be in the history of one we hold (histories arrive whole): no process.
    const here = await this.info([a, b].filter((x) => /^[0-9a-f]{40}$/.test(x)));
    if ([...here.values()].some((i) => !i)) return false;
    const yes = await this.graph.isAncestor(a, b);
    remember(this.ancestry, key, yes);
    return yes;
  }

  async hasCommit(oid: string): Promise<boolean> {
    if (!/^[0-9a-f]{40}$/.test(oid)) return false;
    return (await this.info([oid])).get(oid)?.type === 'commit';
  }

  /** The first (smallest id) commit without parents under `ref`: what names this history (a LAN join's code). */
  async rootCommit(ref = BRANCH): Promise<string | null> {
    const r = await this.git(['rev-list', '--max-parents=0', ref, '--'], undefined, true);
    if (r.code !== 0) return null;
    return r.stdout.toString().split('\n').filter((l) => /^[0-9a-f]{40}$/.test(l)).sort()[0] ?? null;
  }

  async fsck(): Promise<{ ok: boolean; output: string }> {
    const r = await this.git(['fsck', '--strict', '--no-dangling'], undefined, true);
    return { ok: r.code === 0, output: r.stdout.toString() + r.stderr };
  }

  async log(max = 20): Promise<string[]> {
    const r = await this.git(['log', `-${max}`, '--format=%H %s', BRANCH], undefined, true);
    return r.stdout.toString().split('\n').filter(Boolean);
  }

  /**
   * Keeps the pack count low. Small packs (one per commit, view and received push) and loose
   * objects are rolled into geometrically growing ones (`repack --geometric`): the cost follows
   * what is new, not the whole history, and nothing is pruned, so no reader loses an object.
   * Every FULL_EVERY-th call is `gc --cruft` instead: objects nothing reaches any more (views
   * that moved on) go into a cruft pack until git's grace period ends, not out as loose files.
   * (`gc --auto` every time had repacked the whole history whenever there were 20 packs,
   * exploded every superseded view into loose objects, and restarted the object reader: with
   * 16 nodes writing at once it was a tenth of the machine's CPU.)
   */
  async maintain(o: { full?: boolean } = {}): Promise<void> {
    if (this.oldGit) return this.gc(['gc', '--auto', '--quiet']);
    if (++this.maintained % FULL_EVERY === 0 || o.full) return this.gc(['gc', '--cruft', '--quiet']);
    const packs = (await readdir(join(this.dir, 'objects', 'pack')).catch(() => [])).filter((n) => n.endsWith('.pack')).length;
    if (packs <= ROLL_AT) return;
    const r = await this.git(['repack', '--geometric=2', '-d', '-l', '-q', '--no-write-bitmap-index'], undefined, true);
    if (r.code === 129 || /unknown option|usage:/.test(r.stderr)) {
      this.oldGit = true;
      return this.maintain(o);
    }
    if (r.code !== 0) throw new Error(`git repack: ${r.stderr.trim().slice(0, 300)}`);
  }

  private async gc(args: string[]): Promise<void> {
    await this.git(args, undefined, true);
    // gc may prune what nothing reaches: the cache must not say such an object is still here.
    this.cache.clear();
    await this.reader.restart();
  }
}

/** A commit object's tree, parents, message and committer time. */
export function parseCommit(oid: string, o: { type: string; data: Buffer }): CommitInfo {
  if (o.type !== 'commit') throw new Error(`${oid} is a ${o.type}, not a commit`);
  const [head, ...rest] = o.data.toString().split('\n\n');
  const tree = /^tree ([0-9a-f]{40})$/m.exec(head ?? '')?.[1];
  if (!tree) throw new Error(`commit ${oid} has no tree`);
  const parents = [...(head ?? '').matchAll(/^parent ([0-9a-f]{40})$/gm)].map((m) => m[1]!);
  const time = Number(/^committer .* (\d+) [+-]\d{4}$/m.exec(head ?? '')?.[1] ?? 0);
  return { tree, parents, message: rest.join('\n\n'), time };
}

function remember<T>(m: Map<string, T>, k: string, v: T): void {
  if (m.size >= 50_000) m.clear();
  m.set(k, v);
}

/** Git must not read the user's config or templates: the repository is ours alone. */
/** Where each node's latest own commit is kept, by node id (refs/nodes/<id>): what sync exchanges. */
export const NODE_REFS = 'refs/nodes/';

export function gitEnv(): NodeJS.ProcessEnv {
  return { ...process.env, GIT_CONFIG_NOSYSTEM: '1', GIT_CONFIG_GLOBAL: '/dev/null', GIT_TERMINAL_PROMPT: '0', LC_ALL: 'C' };
}

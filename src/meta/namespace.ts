// The namespace of one node: the in-memory tree, its write-ahead journal and batched commits to
// the Git repository. Changes apply synchronously to the tree (so reads see them at once), are
// journaled before they are acknowledged, and reach Git in batches. No network here.
import { EventEmitter } from 'node:events';
import { join } from 'node:path';
import { readFile, writeFile, rename } from 'node:fs/promises';
import { BRANCH, GitRepo, NODE_REFS } from './repo.js';
import { Journal, Op } from './journal.js';
import { DirNode, INODES, LeafNode, Node, RECORDS, Tree, checkRecordPath, inodeBucket, objectId } from './tree.js';
import { DirEntry, Entry, INODE_ID_RE, InodeRef, decodeEntry, decodeStored } from './entry.js';
import { DIR_MARKER, decodeName, encodeName, isMarker, storedNameProblem } from './names.js';
import { computeMerge, computeView, MergeResult } from './merge.js';
import type { PackObject } from './pack.js';
import { TouchedPaths } from './touched.js';
import type { Logger } from '../util/log.js';
import { FsError } from '../util/errors.js';

export interface NamespaceOptions {
  /** ROOT/meta: holds repo.git and journal/. */
  dir: string;
  nodeId: string;
  log: Logger;
  /**
   * Commit this long after the last change (ms). Default: 10 for a change after a quiet spell
   * (peers see a lone save quickly), 50 while changes keep coming (a stream batches).
   */
  idleMs?: number;
  /** ...but at most this long after the first uncommitted one (default 1000). */
  maxDelayMs?: number;
}

const TRAILER = 'DelugeFS-Journal';

export class Namespace extends EventEmitter {
  /** Own commits and merges/views installed by this process (metrics). */
  readonly counts = { commits: 0, merges: 0 };
  readonly repo: GitRepo;
  readonly journal: Journal;
  tree!: Tree;
  head: string | null = null;
  /** This node's latest own commit (refs/nodes/<id>): the head it offers peers. */
  own: string | null = null;
  private pending: string[] = [];
  private firstPendingAt = 0;
  private lastCommitAt = 0;
  /** What the uncommitted changes touched: a view disjoint from them is installed under them. */
  private touched = new TouchedPaths();
  private timer: NodeJS.Timeout | null = null;
  private chain: Promise<unknown> = Promise.resolve();
  /** Waited for before a commit drops journal generations (e.g. content the journal carries). */
  private barriers: (() => Promise<unknown>)[] = [];
  /** Content carried by replayed journal ops, for the node to store: id -> bytes. */
  recovered = new Map<string, Buffer>();
  /** Entries loadTree left out (bad names, malformed blobs): the first commit leaves them out of the head too. */
  private skippedAtOpen = 0;
  private unwritten: PackObject[] = [];
  private closed = false;
  /**
   * Set by the cluster: given the records before and after a merge (paths below RECORDS), says
   * why the merge must be refused (membership nobody may sign), or null.
   */
  recordGuard?: (before: Map<string, Buffer>, after: Map<string, Buffer>) => string | null;

  private get ownRef(): string {
    return NODE_REFS + this.opts.nodeId;
  }

  private constructor(private readonly opts: NamespaceOptions) {
    super();
    this.repo = new GitRepo(join(opts.dir, 'repo.git'));
    this.journal = new Journal(join(opts.dir, 'journal'));
  }

  /** Creates the repository of a new cluster with an empty root directory. */
  static async create(opts: NamespaceOptions, root: DirEntry, message: string): Promise<Namespace> {
    const ns = new Namespace(opts);
    await ns.repo.init();
    ns.tree = new Tree(root);
    ns.wireTree();
    await ns.journal.start();
    ns.pending.push(message);
    ns.touched.markUnknown();
    await ns.commit();
    return ns;
  }

  /** Opens an existing repository: loads HEAD into memory and replays the journal on top. */
  static async open(opts: NamespaceOptions): Promise<Namespace> {
    const ns = new Namespace(opts);
    if (!(await ns.repo.exists())) throw new Error(`no metadata repository at ${ns.repo.dir}`);
    // A ref lock left by a crash would refuse every later update of that ref (git's, and ours).
    const stale = await ns.repo.refs.sweepLocks();
    if (stale) opts.log.warn('meta.stale_ref_locks_removed', { count: stale });
    ns.head = await ns.repo.head();
    if (!ns.head) throw new Error(`metadata repository ${ns.repo.dir} has no commits`);
    // A root from before per-node refs (or a joiner's first start): its head is where it stands.
    ns.own = await ns.repo.readRef(ns.ownRef);
    if (!ns.own) {
      await ns.repo.updateRefs([[ns.ownRef, ns.head, null]]);
      ns.own = ns.head;
    }
    const commit = await ns.repo.readCommit(ns.head);
    // An entry no node should have written (a bad name, a malformed blob) is left out of the
    // mount, not allowed to fail the load (and every listing of its directory with it); the
    // next commit leaves it out of the head too (it stays in history), so peers accept the head.
    ns.tree = await loadTree(ns.repo, commit.tree, (path, reason) => {
      ns.skippedAtOpen++;
      opts.log.warn('meta.load.skip', { path, reason });
    });
    ns.wireTree();
    const committed = Math.max(await ns.readCommittedGen(), trailerGen(commit.message, opts.nodeId));
    const { ops, torn } = await ns.journal.readAfter(committed);
    if (torn) opts.log.warn('journal.torn', { lines: torn });
    let replayed = 0;
    for (const op of ops) {
      try {
        ns.applyToTree(op);
        if ((op.o === 'put' || op.o === 'iput') && op.d && op.e.type === 'file') ns.recovered.set(op.e.id, op.d);
        replayed++;
      } catch (e) {
        opts.log.warn('journal.replay.skip', { op: op.o, path: op.p, error: (e as Error).message });
      }
    }
    await ns.journal.start(committed);
    if (replayed) {
      opts.log.info('journal.replayed', { ops: replayed });
      ns.pending.push(`Recover ${replayed} journaled changes`);
      ns.touched.markUnknown();
    }
    return ns;
  }

  /**
   * Commits what open() replayed, through the barriers (content the journal carries must be in
   * the store before the commit drops that journal). When that cannot be done now (a full disk)
   * the journal is kept and the commit is retried later, like any failed commit: a start never
   * needs free space.
   */
  async finishRecovery(): Promise<void> {
    this.recovered.clear();
    // Entries loadTree left out: this commit leaves them out of the head too, for peers' sake.
    if (this.skippedAtOpen) {
      this.pending.push(`Leave out ${this.skippedAtOpen} stored entries that cannot be served`);
      this.touched.markUnknown();
    }
    if (this.pending.length) {
      try {
        await this.commit();
      } catch (e) {
        this.opts.log.warn('journal.kept', { error: (e as Error).message, why: 'the replayed changes stay in the journal and are committed once that works' });
        return;
      }
    }
    await this.journal.drop(this.journal.generation - 1);
  }


  addBarrier(fn: () => Promise<unknown>): void {
    this.barriers.push(fn);
  }

  private wireTree(): void {
    this.tree.onUnreferenced = (id) => this.emit('unreferenced', id);
  }

  get(path: string): Node | undefined {
    return this.tree.get(path);
  }

  /**
   * Journals a change and applies it to the tree, synchronously. Throws FsError if it is
   * invalid, and the system's error (ENOSPC, EIO) if it could not be journaled; either way
   * nothing changed, so what the tree shows is always in the journal or in Git.
   */
  apply(op: Op): Promise<void> {
    if (this.closed) throw new Error('namespace is closed');
    // A new version of a hard-linked file, through any of its names, is a new version of its
    // inode record: every name shows it.
    if (op.o === 'put' && op.e.type !== 'dir') {
      const n = this.tree.get(op.p);
      if (n?.kind === 'leaf' && n.rec && n.entry.type === op.e.type) op = { o: 'iput', p: n.rec.id, e: op.e, ...(op.d ? { d: op.d } : {}) };
    }
    this.journal.append(op);
    const inodes: string[] = (this.tree.inodeLog = []);
    try {
      this.applyToTree(op);
    } catch (e) {
      this.journal.retract(op);
      throw e;
    } finally {
      this.tree.inodeLog = null;
    }
    this.touched.add(op);
    for (const id of inodes) this.touched.addInode(id);
    this.note(describe(op));
    return Promise.resolve();
  }

  private applyToTree(op: Op): void {
    if (op.o === 'put') this.tree.put(op.p, op.e);
    else if (op.o === 'rm') this.tree.remove(op.p);
    else if (op.o === 'mv') this.tree.rename(op.p, op.to);
    else if (op.o === 'link') this.tree.link(op.p, op.to, op.id, op.t);
    else if (op.o === 'iput') {
      if (!this.tree.inodes.has(op.p)) throw new FsError('ENOENT', `inode ${op.p}`);
      if (op.e.type === 'dir') throw new FsError('EISDIR', `inode ${op.p}`);
      this.tree.setInode(op.p, op.e);
    } else this.tree.setRecord(op.p, op.d ?? null);
    // A record whose last name went goes with it (never in a merge: its names may come later in it).
    this.tree.dropOrphans();
  }

  getRecord(path: string): Buffer | undefined {
    return this.tree.records.get(path);
  }

  /** Records under a prefix ('members/'), keyed by the rest of their path. */
  listRecords(prefix: string): Map<string, Buffer> {
    const out = new Map<string, Buffer>();
    for (const [p, d] of this.tree.records) if (p.startsWith(prefix)) out.set(p.slice(prefix.length), d);
    return out;
  }

  /** Sets (or with null removes) a cluster record; journaled and committed like any change. */
  setRecord(path: string, data: Buffer | null): Promise<void> {
    return this.apply(data ? { o: 'rec', p: path, d: data } : { o: 'rec', p: path });
  }

  private note(line: string): void {
    if (!this.pending.length) this.firstPendingAt = Date.now();
    if (this.pending.length < 1000) this.pending.push(line);
    else this.pending[999] = `... and more`;
    this.schedule();
  }

  private schedule(): void {
    if (this.timer) clearTimeout(this.timer);
    // Short enough that peers see a change quickly; a steady stream still commits once per maxDelay.
    const idle = this.opts.idleMs ?? (this.firstPendingAt - this.lastCommitAt < 100 ? 50 : 10);
    const max = this.opts.maxDelayMs ?? 1000;
    const wait = Math.max(0, Math.min(idle, this.firstPendingAt + max - Date.now()));
    this.timer = setTimeout(() => {
      this.timer = null;
      this.commit().catch((e) => this.opts.log.error('commit.failed', { error: (e as Error).message }));
    }, wait);
    this.timer.unref();
  }

  /** Commits everything applied so far; resolves with the new head (or the old one if nothing changed). */
  commit(): Promise<string | null> {
    return this.serial(() => this.commitNow());
  }

  /** Rolls small packs together (GitRepo.maintain) in turn with commits and merges: received pushes add one pack each. */
  maintain(): Promise<void> {
    return this.serial(() => this.repo.maintain().catch((e) => this.opts.log.warn('repo.maintain.failed', { error: (e as Error).message })));
  }

  /** Commits and merges run one at a time, in order. */
  private serial<T>(fn: () => Promise<T>): Promise<T> {
    const next = this.chain.then(fn);
    this.chain = next.catch(() => undefined);
    return next;
  }

  /**
   * Brings another node's head (already in this repository's objects) into this namespace: a
   * fast-forward, or a deterministic merge commit. The in-memory tree follows at once.
   * `refusal` is asked in turn, once what was applied before is committed: a reason refuses the merge.
   */
  mergeFrom(remote: string, refusal?: () => string | null): Promise<{ head: string; changed: boolean }> {
    return this.bringIn(refusal, async (ours) => {
      if (ours === remote || (await this.repo.isAncestor(remote, ours))) return null;
      const result = await computeMerge(this.repo, ours, remote);
      return { result, reason: result.fastForward ? 'fast-forward' : 'merge', logged: { from: remote, ff: result.fastForward } };
    });
  }

  /**
   * Makes the head the view of this node's own latest commit and `heads` (other nodes' latest
   * commits): computeView of the independent ones, the same commit on every node that knows the
   * same heads. The head may move sideways (never losing a change: every head it came from is an
   * ancestor of one of the new tips). Throws, changing nothing, when a head or the view is
   * malformed, or `refusal` gives a reason.
   */
  adoptHeads(heads: string[], refusal?: () => string | null): Promise<{ head: string; changed: boolean }> {
    return this.bringIn(refusal, async (ours) => {
      const tips = await this.repo.independent([this.own ?? ours, ...heads]);
      if (tips.length === 1 && tips[0] === ours) return null;
      const result = await computeView(this.repo, ours, tips);
      return result.commit === ours ? null : { result, reason: `view of ${tips.length} heads`, logged: { tips: tips.length } };
    });
  }

  /**
   * In the serial chain, once pending changes are committed and `refusal` has no reason: what
   * `compute` makes of our head (null: nothing to do) becomes the head. Local changes that arrive
   * while it computes are not in it: it goes in under them when their paths and its are apart
   * (touched.ts), else they are committed and it is computed again.
   */
  private bringIn(refusal: (() => string | null) | undefined, compute: (ours: string) => Promise<{ result: MergeResult; reason: string; logged: Record<string, unknown> } | null>): Promise<{ head: string; changed: boolean }> {
    return this.serial(async () => {
      const t0 = performance.now();
      for (let round = 1; ; round++) {
        await this.commitNow();
        const why = refusal?.();
        if (why) throw new Error(why);
        const ours = this.head!;
        const t1 = performance.now();
        const step = await compute(ours);
        if (!step) return { head: ours, changed: false };
        // Changes made meanwhile: installed under them when they touch none of its paths (the
        // result is their union, as a merge would make it), else made again once they are committed.
        const under = this.pending.length > 0;
        if (under && !this.touched.disjoint(step.result.changes.map((c) => c.path))) continue;
        this.opts.log.debug('meta.view', { ...step.logged, round, under, compute_ms: Math.round(performance.now() - t1), ms: Math.round(performance.now() - t0) });
        await this.install(step.result, ours, step.reason, step.logged, under);
        return { head: step.result.commit, changed: true };
      }
    });
  }

  /** Validates a merge or view (throws, changing nothing, on a malformed entry), then makes it the head. */
  private async install(result: MergeResult, ours: string, reason: string, logged: Record<string, unknown>, underLocal: boolean): Promise<void> {
    const entries = validate(result);
    this.checkRefs(result, entries);
    this.guardRecords(result);
    for (const l of result.leftOut) this.opts.log.warn('meta.merge.left_out', { ...logged, ...l });
    const { records: recordsChanged, paths } = this.applyMerge(result, entries, underLocal);
    this.head = result.commit;
    await this.repo.updateRef(result.commit, ours);
    this.opts.log.info('meta.merged', { ...logged, head: result.commit, changes: result.changes.length });
    this.counts.merges++;
    this.emit('commit', result.commit);
    if (recordsChanged) this.emit('records');
    if (paths.length) this.emit('changed', paths);
    const inodes = result.changes.filter((c) => c.path.startsWith(INODES + '/')).map((c) => c.path.slice(c.path.lastIndexOf('/') + 1));
    if (inodes.length) this.emit('changedInodes', inodes);
  }

  /** Throws (nothing changed yet) when a name the merge brings points to a record the result does not have. */
  private checkRefs(r: MergeResult, entries: Map<string, Entry | InodeRef>): void {
    const prefix = INODES + '/';
    const added = new Set<string>(), removed = new Set<string>();
    for (const c of r.changes) if (c.path.startsWith(prefix)) (c.row ? added : removed).add(c.path.slice(c.path.lastIndexOf('/') + 1));
    for (const [path, e] of entries) {
      if (e.type === 'ref' && !added.has(e.inode) && (removed.has(e.inode) || !this.tree.inodes.has(e.inode))) {
        throw new Error(`merge rejected: ${JSON.stringify(path)} names a hard-linked file whose record is missing`);
      }
    }
  }

  /** Throws (nothing changed yet) when the cluster's guard refuses what a merge does to the records. */
  private guardRecords(r: MergeResult): void {
    const prefix = RECORDS + '/';
    const changes = r.changes.filter((c) => c.path.startsWith(prefix));
    if (!this.recordGuard || !changes.length) return;
    const after = new Map(this.tree.records);
    for (const c of changes) {
      if (c.row) after.set(c.path.slice(prefix.length), r.blobs.get(c.row.oid)!);
      else after.delete(c.path.slice(prefix.length));
    }
    const why = this.recordGuard(this.tree.records, after);
    if (why) throw new Error(`merge rejected: ${why}`);
  }

  /**
   * Applies a merge's blob-level changes to the in-memory tree (synchronously); says whether
   * records changed and which paths of the filesystem did.
   */
  private applyMerge(r: MergeResult, entries: Map<string, Entry | InodeRef>, underLocal: boolean): { records: boolean; paths: string[] } {
    // A directory's marker ('d/%dir') stands for the directory itself: one level up. Git's path
    // order puts an escaped dotfile ('d/%2Ehidden') before the marker, so by depth alone the file
    // came before its directory existed and was skipped.
    const depth = (p: string) => p.split('/').length - (p.endsWith('/' + DIR_MARKER) || p === DIR_MARKER ? 1 : 0);
    const recordsPrefix = RECORDS + '/';
    const inodesPrefix = INODES + '/';
    let records = false;
    const paths: string[] = [];
    // Inode records first (the names that point to them may come in this merge), and their
    // removals last (after the names that pointed to them went).
    const isInode = (c: { path: string }) => c.path.startsWith(inodesPrefix);
    for (const c of r.changes) if (isInode(c) && c.row) this.mergeInode(c.path, entries.get(c.path) as Entry, c.row.oid);
    // Removals deepest first, then additions shallowest first, so a path can turn from a file
    // into a directory (or back) within one merge.
    const removals = r.changes.filter((c) => !c.row && !isInode(c)).sort((a, b) => depth(b.path) - depth(a.path));
    const additions = r.changes.filter((c) => c.row && !isInode(c)).sort((a, b) => depth(a.path) - depth(b.path));
    for (const c of [...removals, ...additions]) {
      if (c.path.startsWith(recordsPrefix)) {
        this.tree.setRecord(c.path.slice(recordsPrefix.length), c.row ? r.blobs.get(c.row.oid)! : null);
        records = true;
        continue;
      }
      const parts = c.path.split('/');
      // A bad name already in our head (from before it was checked) never reached the tree.
      if (parts.some((p, i) => storedNameProblem(p) && !(i === parts.length - 1 && p === DIR_MARKER))) continue;
      const last = parts.pop()!;
      const dirPath = '/' + parts.map(decodeName).join('/');
      const path = last === DIR_MARKER ? dirPath : (dirPath === '/' ? '' : dirPath) + '/' + decodeName(last);
      paths.push(path);
      try {
        if (!c.row) {
          if (path !== '/' && this.tree.get(path)) this.tree.remove(path);
        } else {
          const e = entries.get(c.path)!;
          if (e.type === 'ref') this.tree.putRef(path, e.inode);
          else this.tree.put(path, e, last === DIR_MARKER ? null : c.row.oid);
        }
      } catch (e) {
        // The directories above it keep the merge's ids (below), not their old ones.
        this.tree.invalidate(path);
        const lost = underLocal && this.touched.holds(parts.join('/'));
        this.opts.log.warn('meta.merge.skip', { path, error: (e as Error).message, ...(lost ? { dropped_by_next_commit: true } : {}) });
      }
    }
    // The in-memory tree now equals the merge result, plus the uncommitted local changes when
    // under them: directories holding none of those take the result's tree ids (so an entry the
    // tree could not take stays in the next commit); those holding one are written anew by the
    // next snapshot (given the result's id, it would leave the local change out).
    const kept: string[] = [];
    for (const c of r.changes) if (isInode(c) && !c.row && !this.mergeInode(c.path, null, null)) kept.push(c.path.slice(c.path.lastIndexOf('/') + 1));
    const keep = underLocal ? (at: string) => !this.touched.holds(at) : () => true;
    this.adoptTreeIds(this.tree.root, '', r.trees, keep);
    if (!underLocal || !this.touched.holdsRecords()) this.tree.setRecordsOid(r.trees.get(RECORDS) ?? null);
    if (!underLocal || !this.touched.holdsInodes()) this.tree.adoptInodeOids(r.trees);
    // What the tree holds differs from the result there: the next commit writes what it holds.
    // A record the result removed but that names still point to stays (with its bucket rewritten);
    // one whose last name went between the result and local changes made meanwhile (a local unlink
    // and a merged one of the other name) goes, as a local unlink of the last name would do.
    const inodes: string[] = (this.tree.inodeLog = []);
    try {
      for (const id of kept) this.tree.rewriteInode(id);
      this.tree.dropOrphans();
    } finally {
      this.tree.inodeLog = null;
    }
    for (const id of inodes) this.touched.addInode(id);
    return { records, paths };
  }

  /** A merge's change of an inode record ('%inodes/ab/<id>'); one the tree cannot take is logged and skipped. */
  private mergeInode(gitPath: string, entry: Entry | null, oid: string | null): boolean {
    const id = gitPath.slice(gitPath.lastIndexOf('/') + 1);
    try {
      if (entry?.type === 'dir') throw new Error('a directory entry');
      this.tree.setInode(id, entry, oid);
      return true;
    } catch (e) {
      this.opts.log.warn('meta.merge.skip', { inode: id, error: (e as Error).message });
      return false;
    }
  }

  private adoptTreeIds(dir: DirNode, at: string, trees: Map<string, string>, keep: (at: string) => boolean): void {
    if (dir.oid) return;
    for (const [name, child] of dir.children) {
      if (child.kind === 'dir') this.adoptTreeIds(child, at ? `${at}/${encodeName(name)}` : encodeName(name), trees, keep);
    }
    if (keep(at)) dir.oid = trees.get(at) ?? null;
  }

  private async commitNow(): Promise<string | null> {
    if (!this.pending.length) return this.head;
    if (this.timer) {
      clearTimeout(this.timer);
      this.timer = null;
    }
    const lines = this.pending;
    this.pending = [];
    this.touched = new TouchedPaths();
    // Snapshot and journal rotation happen in one synchronous step: the commit holds exactly
    // the ops of the generations up to `gen`.
    const snap: { root: string; objects: PackObject[] } = this.tree.snapshot();
    // Objects of a commit that failed (e.g. disk full) are cached as written in the tree; they
    // go out with the next one.
    snap.objects.unshift(...this.unwritten);
    try {
      const t0 = performance.now();
      const gen = await this.journal.rotate();
      await Promise.all(this.barriers.map((b) => b()));
      const t1 = performance.now();
      const oid = await this.writeCommit(snap, lines, gen);
      this.opts.log.debug('meta.committed', { head: oid, changes: lines.length, rotate_ms: Math.round(t1 - t0), ms: Math.round(performance.now() - t0) });
      this.unwritten = [];
      return oid;
    } catch (e) {
      this.unwritten = snap.objects;
      this.pending.unshift(...lines);
      this.touched.markUnknown(); // what they touched is not kept: nothing counts as disjoint until they are in
      if (!this.timer) this.timer = setTimeout(() => { this.timer = null; void this.commit().catch(() => {}); }, 5000);
      this.timer.unref();
      // The journal holds the changes: e.g. content they removed may go now, to make room.
      this.emit('commitFailed', e);
      throw e;
    }
  }

  private async writeCommit(snap: { root: string; objects: PackObject[] }, lines: string[], gen: number): Promise<string> {
    const time = Math.floor(Date.now() / 1000);
    const who = `${this.opts.nodeId} <${this.opts.nodeId}@delugefs>`;
    const subject = lines.length === 1 ? lines[0]! : `${lines.length} changes: ${lines.slice(0, 3).join(', ')}${lines.length > 3 ? ', ...' : ''}`;
    const body = lines.length > 1 ? `\n\n${lines.slice(0, 200).join('\n')}${lines.length > 200 ? `\n... ${lines.length - 200} more` : ''}` : '';
    const text =
      `tree ${snap.root}\n` +
      (this.head ? `parent ${this.head}\n` : '') +
      `author ${who} ${time} +0000\ncommitter ${who} ${time} +0000\n\n` +
      `${oneLine(subject)}${body}\n\n${TRAILER}: ${this.opts.nodeId} ${gen}\n`;
    const data = Buffer.from(text);
    const oid = objectId('commit', data);
    await this.repo.writeObjects([...snap.objects, { type: 'commit', oid, data }]);
    // This node's own ref moves with its own commits only (a view may move main sideways).
    await this.repo.updateRefs([[BRANCH, oid, this.head], [this.ownRef, oid, undefined]]);
    this.head = oid;
    this.own = oid;
    this.lastCommitAt = Date.now();
    await this.writeCommittedGen(gen, oid);
    await this.journal.drop(gen);
    this.journal.keepReserve();
    this.counts.commits++;
    this.emit('commit', oid);
    // Housekeeping only: the commit is in already, so a failure (a full disk) must not undo it.
    if (this.counts.commits % 20 === 0) await this.repo.maintain().catch((e) => this.opts.log.warn('repo.maintain.failed', { error: (e as Error).message }));
    return oid;
  }

  private committedFile(): string {
    return join(this.opts.dir, 'journal', 'committed');
  }

  private async readCommittedGen(): Promise<number> {
    try {
      return Number((await readFile(this.committedFile(), 'utf8')).split(' ')[0]) || 0;
    } catch {
      return 0;
    }
  }

  private async writeCommittedGen(gen: number, oid: string): Promise<void> {
    const tmp = this.committedFile() + '.tmp';
    await writeFile(tmp, `${gen} ${oid}\n`, { mode: 0o600 });
    await rename(tmp, this.committedFile());
  }

  /** Durability for an application's fsync: the journal reaches the disk. */
  sync(): Promise<void> {
    return this.journal.sync();
  }

  async close(): Promise<void> {
    if (this.closed) return;
    try {
      await this.commit();
    } catch (e) {
      // Nothing is lost: the journal holds every change and the next start commits it.
      this.opts.log.warn('commit.deferred', { error: (e as Error).message });
    }
    this.closed = true;
    if (this.timer) clearTimeout(this.timer);
    await this.journal.close();
    this.repo.close();
  }
}

/** Decodes every entry a merge brings in; a malformed one (from a faulty or hostile peer) rejects the merge. */
function validate(r: MergeResult): Map<string, Entry | InodeRef> {
  const out = new Map<string, Entry | InodeRef>();
  const badName = (enc: string, path: string, why: string) => new Error(`merge rejected: invalid name ${JSON.stringify(enc)} in ${JSON.stringify(path)}: ${why}`);
  // Directories that hold no changed blob (e.g. an empty tree named "%2F" in a fast-forward).
  for (const d of r.addedDirs) {
    if (d === RECORDS || d.startsWith(RECORDS + '/')) continue;
    if (d === INODES || /^%inodes\/[0-9a-f]{2}$/.test(d)) continue;
    for (const enc of d.split('/')) {
      const why = storedNameProblem(enc);
      if (why) throw badName(enc, d, why);
    }
  }
  for (const c of r.changes) {
    if (!c.row) continue;
    if (c.path.startsWith(RECORDS + '/')) {
      checkRecordPath(c.path.slice(RECORDS.length + 1));
      continue;
    }
    if (c.path.startsWith(INODES + '/')) {
      const [, b, id, more] = c.path.split('/');
      if (more !== undefined || !id || !INODE_ID_RE.test(id) || b !== inodeBucket(id)) throw new Error(`merge rejected: unknown internal entry ${JSON.stringify(c.path)}`);
      if (c.row.mode !== '100644') throw new Error(`merge rejected: ${JSON.stringify(c.path)} has mode ${c.row.mode}`);
      let e: Entry;
      try {
        e = decodeEntry(r.blobs.get(c.row.oid)!, `inode ${id}`);
      } catch (err) {
        throw new Error(`merge rejected: malformed inode record ${id}: ${(err as Error).message}`);
      }
      if (e.type === 'dir') throw new Error(`merge rejected: inode record ${id} is a directory`);
      out.set(c.path, e);
      continue;
    }
    const parts = c.path.split('/');
    const last = parts[parts.length - 1]!;
    if (isMarker(last) && last !== DIR_MARKER) throw new Error(`merge rejected: unknown internal entry ${JSON.stringify(c.path)}`);
    for (const enc of last === DIR_MARKER ? parts.slice(0, -1) : parts) {
      const why = storedNameProblem(enc);
      if (why) throw badName(enc, c.path, why);
    }
    if (c.row.mode !== '100644') throw new Error(`merge rejected: ${JSON.stringify(c.path)} has mode ${c.row.mode}`);
    let e: Entry | InodeRef;
    try {
      e = (last === DIR_MARKER ? decodeEntry : decodeStored)(r.blobs.get(c.row.oid)!, `entry ${c.path}`);
    } catch (err) {
      throw new Error(`merge rejected: malformed entry ${JSON.stringify(c.path)}: ${(err as Error).message}`);
    }
    if ((last === DIR_MARKER) !== (e.type === 'dir')) throw new Error(`merge rejected: ${JSON.stringify(c.path)} has the wrong type ${e.type}`);
    out.set(c.path, e);
  }
  return out;
}

function oneLine(s: string): string {
  return s.replace(/[\r\n\t]/g, ' ').slice(0, 200);
}

function describe(op: Op): string {
  const q = (p: string) => JSON.stringify(p).slice(1, -1);
  if (op.o === 'rm') return `delete ${q(op.p)}`;
  if (op.o === 'mv') return `rename ${q(op.p)} -> ${q(op.to)}`;
  if (op.o === 'rec') return `${op.d ? 'record' : 'drop record'} ${op.p}`;
  if (op.o === 'link') return `hard link ${q(op.p)} -> ${q(op.to)}`;
  if (op.o === 'iput') return `${op.e.type === 'file' ? 'write' : 'change'} inode ${op.p}`;
  return `${op.e.type === 'dir' ? 'dir' : op.e.type === 'symlink' ? 'link' : op.e.type === 'file' ? 'write' : op.e.type} ${q(op.p)}`;
}

function trailerGen(message: string, nodeId: string): number {
  const m = new RegExp(`^${TRAILER}: (\\S+) (\\d+)$`, 'm').exec(message);
  return m && m[1] === nodeId ? Number(m[2]) : 0;
}

/**
 * Rebuilds the in-memory tree of a commit: one ls-tree and one cat-file --batch, no per-entry
 * process. An entry that cannot be served (a name that is not canonical or not UTF-8, a second
 * entry of one name, a malformed blob) is skipped with everything below it and reported through
 * onSkip; the directories above it lose their cached ids, so the next commit leaves it out.
 */
export async function loadTree(repo: GitRepo, rootTree: string, onSkip: (path: string, reason: string) => void = () => {}): Promise<Tree> {
  const rows = await repo.lsTree(rootTree);
  const blobOids = [...new Set(rows.filter((r) => r.type === 'blob').map((r) => r.oid))];
  const blobs = await repo.readBlobs(blobOids);
  const decoded = new Map<string, Entry | InodeRef>();
  const storedOf = (oid: string, path: string): Entry | InodeRef => {
    let e = decoded.get(oid);
    if (!e) {
      e = decodeStored(blobs.get(oid)!, `entry ${path}`);
      decoded.set(oid, e);
    }
    return e;
  };
  const entryOf = (oid: string, path: string): Entry => {
    const e = storedOf(oid, path);
    if (e.type === 'ref') throw new Error(`entry ${path}: an inode reference where an entry must be`);
    return e;
  };
  const rootRow = rows.find((r) => r.path === DIR_MARKER);
  const inodesPrefix = INODES + '/';
  const rootEntry = rootRow ? entryOf(rootRow.oid, '/') : undefined;
  if (rootEntry?.type !== 'dir') throw new Error(`tree ${rootTree} has no root directory entry`);
  const tree = new Tree(rootEntry);
  tree.root.oid = rootTree;
  // Inode records before the names that point to them (git's order puts '%2E...' names first).
  const inodeTrees = new Map<string, string>();
  for (const r of rows) {
    if (r.path === INODES || r.path.startsWith(inodesPrefix)) {
      if (r.type === 'tree') inodeTrees.set(r.path, r.oid);
      if (r.type !== 'blob') continue;
      const [, b, id, more] = r.path.split('/');
      try {
        if (more !== undefined || !id || !INODE_ID_RE.test(id) || b !== inodeBucket(id)) throw new Error('not an inode record path');
        const e = entryOf(r.oid, r.path);
        if (e.type === 'dir') throw new Error('a directory entry');
        tree.loadInode(id, e, r.oid);
      } catch (e) {
        tree.root.oid = null;
        onSkip(r.path, (e as Error).message);
      }
    }
  }
  if (tree.root.oid) tree.adoptInodeOids(inodeTrees);
  const dirs = new Map<string, DirNode>([['', tree.root]]);
  const recordsPrefix = RECORDS + '/';
  for (const r of rows) {
    if (r.path.startsWith(recordsPrefix)) {
      if (r.type === 'blob') tree.records.set(r.path.slice(recordsPrefix.length), blobs.get(r.oid)!);
      continue;
    }
    if (r.path === RECORDS && r.type === 'tree') {
      tree.setRecordsOid(r.oid);
      continue;
    }
    if (r.path === INODES || r.path.startsWith(inodesPrefix)) continue;
    const slash = r.path.lastIndexOf('/');
    const parentPath = slash < 0 ? '' : r.path.slice(0, slash);
    const enc = r.path.slice(slash + 1);
    const parent = dirs.get(parentPath);
    if (!parent) continue; // below a marker or a skipped entry
    if (r.type !== 'tree' && r.type !== 'blob') continue;
    const skip = (path: string, reason: string) => {
      for (let at = parentPath; ; at = at.slice(0, Math.max(0, at.lastIndexOf('/')))) {
        const d = dirs.get(at);
        if (d) d.oid = null;
        if (at === '') break;
      }
      onSkip(path, reason);
    };
    const entry = (): Entry | undefined => {
      try {
        return entryOf(r.oid, r.path);
      } catch (e) {
        skip(r.path, (e as Error).message);
        return undefined;
      }
    };
    if (enc === DIR_MARKER && r.type === 'blob') {
      const e = entry();
      if (e?.type === 'dir') parent.entry = e;
      continue;
    }
    if (isMarker(enc)) continue; // internal data (e.g. cluster records), never in the namespace
    const why = r.badUtf8 ? 'name is not UTF-8' : storedNameProblem(enc);
    const name = decodeName(enc);
    if (why || parent.children.has(name)) {
      skip(r.path, why ?? 'a second entry of this name');
      continue;
    }
    if (r.type === 'tree') {
      const d = new DirNode({ type: 'dir', mode: 0o755, uid: 0, gid: 0, mtime: 0, ctime: 0 });
      d.oid = r.oid;
      dirs.set(r.path, d);
      tree.attach(parent, name, d);
    } else {
      let stored: Entry | InodeRef;
      try {
        stored = storedOf(r.oid, r.path);
      } catch (e) {
        skip(r.path, (e as Error).message);
        continue;
      }
      if (stored.type === 'dir') continue;
      let leaf: LeafNode;
      if (stored.type === 'ref') {
        const rec = tree.inodes.get(stored.inode);
        if (!rec) {
          skip(r.path, `inode ${stored.inode} has no record`);
          continue;
        }
        leaf = new LeafNode(rec.entry);
        leaf.rec = rec;
      } else leaf = new LeafNode(stored);
      leaf.oid = r.oid;
      tree.attach(parent, name, leaf);
    }
  }
  return tree;
}

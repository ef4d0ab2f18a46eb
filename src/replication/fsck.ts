// `delugefs fsck ROOT [--repair]`: one full pass over every copy this disk holds, as fast as the
// disk reads, each piece checked against its hash (the scrub's check, unthrottled), with progress.
// Resumable: the pass's cursor and findings are saved after every copy (ROOT/replication/fsck.json),
// so a pass stopped (Ctrl-C, a restart) goes on where it was. Without --repair it only reports;
// with it, bad pieces are fetched again from a member holding a complete copy, as the scrub does.
import { mkdir, readFile, rename, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { isContentId, pieceCount, type ContentId } from '../content/metainfo.js';
import type { DirNode } from '../meta/tree.js';
import { formatBytes } from '../util/units.js';
import { printable } from '../util/text.js';
import { checkCopy, repairCopy, type StoredCopies } from './scrub.js';

/** Bad copies listed in full (the counts go on past it). */
export const MAX_FSCK_LISTED = 200;
/** Paths named per bad copy (content shared by more files says how many in `files`). */
const PATHS_PER_COPY = 4;
/** Longest path or error text in a report (what the reply checker takes). */
export const MAX_PATH = 4096;

export type FsckState = 'idle' | 'running' | 'stopped' | 'done';
export type BadState = 'found' | 'repaired' | 'unrepairable' | 'failed';

export interface FsckBad {
  id: ContentId;
  /** Files of the namespace with this content (at most a few), and how many there are. */
  paths: string[];
  files: number;
  pieces: number;
  badPieces: number;
  state: BadState;
  error: string | null;
}

export interface FsckStatus {
  state: FsckState;
  repair: boolean;
  startedAt: string | null;
  endedAt: string | null;
  /** Copies and bytes in this pass, and how far it is. */
  total: number;
  checked: number;
  totalBytes: number;
  bytes: number;
  /** Copies not checked: left the store, or being written or fetched when their turn came. */
  skipped: number;
  badCopies: number;
  badPieces: number;
  repaired: number;
  /** Bad copies found and not repaired (no --repair, no member to repair from, a failed repair). */
  unrepaired: number;
  /** Times this pass was stopped and went on again. */
  resumed: number;
  bad: FsckBad[];
}

export interface FsckDeps extends StoredCopies {
  /** The saved pass as the FSCK reply checker sees it (throws if malformed). */
  check(v: unknown): FsckStatus;
  /** The namespace's root, to name the files of a bad copy. */
  root(): DirNode;
}

interface Saved extends FsckStatus {
  /** Copies in id order up to and including this one are done. */
  after: ContentId | null;
}

const fresh = (repair: boolean): Saved => ({
  state: 'idle', repair, startedAt: null, endedAt: null, total: 0, checked: 0, totalBytes: 0, bytes: 0, skipped: 0,
  badCopies: 0, badPieces: 0, repaired: 0, unrepaired: 0, resumed: 0, bad: [], after: null,
});

export class Fsck {
  private s: Saved = fresh(false);
  private loading: Promise<void> | null = null;
  private ac: AbortController | null = null;
  private running: Promise<void> | null = null;
  private closed = false;
  /** start/stop one at a time: two callers never run two passes. */
  private chain: Promise<unknown> = Promise.resolve();
  /** Saves one at a time, through one temp file. */
  private saving: Promise<void> = Promise.resolve();

  constructor(private readonly d: FsckDeps) {}

  private get file(): string {
    return join(this.d.dir, 'fsck.json');
  }

  private load(): Promise<void> {
    this.loading ??= (async () => {
      try {
        const o = JSON.parse(await readFile(this.file, 'utf8')) as Record<string, unknown>;
        // Checked as a reply from elsewhere would be (it is the disk's word): anything malformed
        // is a pass that never happened, and the next one starts afresh.
        const st = this.d.check(o);
        const after = o.after === null ? null : typeof o.after === 'string' && isContentId(o.after) ? o.after : undefined;
        if (after === undefined || st.state === 'idle') throw new Error('malformed');
        this.s = { ...st, after };
        if (this.s.state === 'running') this.s.state = 'stopped'; // the node stopped during it
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code !== 'ENOENT') this.d.log.warn('replication.fsck.saved_pass_unreadable', { error: (e as Error).message, why: 'the next fsck starts a new pass' });
      }
    })();
    return this.loading;
  }

  private save(state = this.s): Promise<void> {
    const json = JSON.stringify(state);
    this.saving = this.saving.then(async () => {
      await mkdir(this.d.dir, { recursive: true });
      await writeFile(`${this.file}.tmp`, json, { mode: 0o600 });
      await rename(`${this.file}.tmp`, this.file);
    }).catch(() => {});
    return this.saving;
  }

  private serial<T>(fn: () => Promise<T>): Promise<T> {
    const next = this.chain.then(fn, fn);
    this.chain = next.catch(() => undefined);
    return next;
  }

  async status(): Promise<FsckStatus> {
    await this.load();
    const { after: _after, ...st } = this.s;
    return { ...st, bad: st.bad.map((b) => ({ ...b, paths: [...b.paths] })) };
  }

  /**
   * Starts a pass, or goes on with a stopped one (`restart`: a new one instead; a running one is
   * stopped first). A pass already running is otherwise left as it is (its status is the
   * answer), except that --repair asked of one that does not repair repairs from the next copy on.
   */
  start(o: { repair: boolean; restart: boolean }): Promise<FsckStatus> {
    return this.serial(() => this.startNow(o));
  }

  private async startNow(o: { repair: boolean; restart: boolean }): Promise<FsckStatus> {
    await this.load();
    if (this.closed) throw new Error('the node is stopping');
    if (this.s.state === 'running' && o.restart) await this.stopNow();
    if (this.s.state === 'running') {
      if (o.repair) this.s.repair = true;
      return this.status();
    }
    if (o.restart || this.s.state === 'idle' || this.s.state === 'done') this.s = fresh(o.repair);
    else {
      this.s.resumed++;
      this.s.repair = o.repair; // what this fsck was asked for, for the rest of the pass
    }
    this.s.state = 'running';
    this.s.endedAt = null;
    this.s.startedAt ??= new Date().toISOString();
    // What is left to check: the copies held now after the cursor (copies stored meanwhile are
    // in, copies dropped meanwhile are out).
    const ids = this.d.held().filter((id) => this.s.after === null || id > this.s.after);
    const left = ids.reduce((a, id) => a + (this.d.info(id)?.length ?? 0), 0);
    this.s.total = this.s.checked + this.s.skipped + ids.length;
    this.s.totalBytes = this.s.bytes + left;
    const ac = (this.ac = new AbortController());
    this.d.log.info('replication.fsck.started', { copies: ids.length, bytes: left, repair: this.s.repair, resumed: this.s.resumed });
    this.running = this.pass(ids, ac.signal).catch((e) => {
      this.d.log.error('replication.fsck.failed', { error: (e as Error).message });
      this.s.state = 'stopped';
    });
    await this.save();
    return this.status();
  }

  /** Stops a running pass (a repair under way is given up); its cursor stays, so the next start goes on from there. */
  stop(): Promise<FsckStatus> {
    return this.serial(async () => {
      await this.load();
      await this.stopNow();
      return this.status();
    });
  }

  private async stopNow(): Promise<void> {
    this.ac?.abort();
    await this.running;
  }

  async close(): Promise<void> {
    this.closed = true;
    this.ac?.abort();
    await this.running;
    await this.saving;
  }

  private async pass(ids: ContentId[], signal: AbortSignal): Promise<void> {
    for (const id of ids) {
      if (signal.aborted) break;
      // Counted or not, it is behind the cursor: one that was not (stopped while read) is read again.
      if (await this.one(id, signal)) this.s.after = id;
      await this.save();
    }
    // The end is shown only once it is on disk: a status that says the pass ended never races
    // the write that records it (a caller writing the file next would be overwritten).
    const end: typeof this.s = signal.aborted ? { ...this.s, state: 'stopped' } : { ...this.s, state: 'done', endedAt: new Date().toISOString(), after: null };
    await this.save(end);
    this.s = end;
    if (signal.aborted) this.d.log.info('replication.fsck.stopped', { checked: end.checked, of: end.total });
    else this.d.log.info('replication.fsck.done', { checked: end.checked, skipped: end.skipped, badCopies: end.badCopies, repaired: end.repaired, unrepaired: end.unrepaired });
  }

  /** Checks one copy; false when it was stopped before it was counted (it is checked again on resume). */
  private async one(id: ContentId, signal: AbortSignal): Promise<boolean> {
    const info = this.d.info(id);
    const expected = info?.length ?? 0;
    if (!info || info.length === 0 || this.d.busy(id)) {
      this.skip(expected);
      return true;
    }
    let done = 0;
    const bad = await checkCopy(this.d.store, id, info, { rate: 0, signal, log: this.d.log, onBytes: (n) => { done += n; this.s.bytes += n; } });
    if (!bad) {
      this.s.bytes -= done; // not counted: it is checked again (resume) or it is gone
      if (signal.aborted) return false;
      this.skip(expected);
      return true;
    }
    // Bytes of a copy that shrank or grew since the pass began are what was read.
    this.s.totalBytes += done - info.length;
    this.s.checked++;
    if (!bad.length) return true;
    this.s.badCopies++;
    this.s.badPieces += bad.length;
    const found: FsckBad = { id, paths: [], files: 0, pieces: pieceCount(info), badPieces: bad.length, state: 'found', error: null };
    const named = filesOf(this.d.root(), new Set([id]), PATHS_PER_COPY).get(id);
    if (named) [found.paths, found.files] = [named.paths.map((x) => x.slice(0, MAX_PATH)), named.count];
    this.d.log.warn('replication.fsck.bad_pieces', { id, pieces: bad.length, first: bad.slice(0, 10), paths: found.paths, repair: this.s.repair });
    if (this.s.repair) {
      const r = await repairCopy(this.d, id, info, bad, signal);
      found.state = r.state;
      if (r.state === 'unrepairable') found.error = 'no other member that answers holds a complete copy, or a member counts on ours (locked); the copy is kept as it is';
      else if (r.state === 'repaired') this.d.log.info('replication.fsck.repaired', { id, pieces: bad.length });
      else {
        found.error = r.error.slice(0, MAX_PATH);
        this.d.log.error('replication.fsck.repair_failed', { id, error: found.error });
      }
    }
    if (found.state === 'repaired') this.s.repaired++;
    else this.s.unrepaired++;
    if (this.s.bad.length < MAX_FSCK_LISTED) this.s.bad.push(found);
    return true;
  }

  /** A copy not checked (gone, empty, busy): out of the totals it was counted in. */
  private skip(bytes: number): void {
    this.s.skipped++;
    this.s.totalBytes -= bytes;
  }
}

/** The files (first `max` paths in walk order, and how many) whose content is one of `ids`. */
export function filesOf(root: DirNode, ids: ReadonlySet<ContentId>, max: number): Map<ContentId, { paths: string[]; count: number }> {
  const out = new Map<ContentId, { paths: string[]; count: number }>();
  const stack: [string, DirNode][] = [['', root]];
  while (stack.length) {
    const [at, d] = stack.pop()!;
    for (const [name, c] of d.children) {
      const path = `${at}/${name}`;
      if (c.kind === 'dir') stack.push([path, c]);
      else if (c.entry.type === 'file' && ids.has(c.entry.id)) {
        let f = out.get(c.entry.id);
        if (!f) out.set(c.entry.id, (f = { paths: [], count: 0 }));
        f.count++;
        if (f.paths.length < max) f.paths.push(path);
      }
    }
  }
  for (const f of out.values()) f.paths.sort();
  return out;
}

/** The report a person reads. */
export function renderFsck(s: FsckStatus): string {
  const lines = [`fsck ${s.state}${s.repair ? ' (--repair)' : ''}: ${s.checked} of ${s.total} copies checked (${formatBytes(s.bytes)} of ${formatBytes(s.totalBytes)})${s.skipped ? `, ${s.skipped} skipped (gone or busy)` : ''}${s.resumed ? `, resumed ${s.resumed}x` : ''}`];
  if (!s.badCopies) lines.push('no bad pieces');
  else lines.push(`${s.badCopies} bad ${s.badCopies === 1 ? 'copy' : 'copies'} (${s.badPieces} bad pieces): ${s.repaired} repaired, ${s.unrepaired} not`);
  for (const b of s.bad) {
    const files = b.paths.length ? `${b.paths.join(', ')}${b.files > b.paths.length ? ` and ${b.files - b.paths.length} more` : ''}` : 'no file refers to it now';
    lines.push(`  ${b.id.slice(0, 12)}  ${b.badPieces}/${b.pieces} pieces bad, ${b.state}${b.error ? ` (${b.error})` : ''}: ${files}`);
  }
  if (s.bad.length < s.badCopies) lines.push(`  (the first ${s.bad.length} listed)`);
  if (s.unrepaired && !s.repair) lines.push('run again with --repair to fetch the bad pieces from a member');
  // File names are any member's words.
  return lines.map(printable).join('\n');
}

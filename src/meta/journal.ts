// Write-ahead journal of namespace changes. A change is appended (write(2), so it survives a
// crash of the process) before the FUSE call that made it returns; commits to Git are batched
// and name the last journal generation they contain, so a restart replays exactly what is missing.
// Every append is one synchronous write(2) on the node's own disk (never the mount), so its
// outcome is known before the change is applied: a failed append (ENOSPC, EIO) is cut off
// again (the file is truncated to its last whole line) and reported to the caller, and nothing
// of it remains for a later append to run into.
import { readdir, readFile, unlink, mkdir } from 'node:fs/promises';
import { closeSync, constants as fsc, fsync as fsyncCb, ftruncateSync, fstatSync, openSync, statSync, unlinkSync, writeFileSync, writeSync } from 'node:fs';
import { promisify } from 'node:util';
import { join } from 'node:path';
import { Entry, INODE_ID_RE, decodeEntry, encodeEntry } from './entry.js';

const fdSync = promisify(fsyncCb);

/**
 * Room held back on the journal's disk for removals: when that disk is full, a delete through
 * the mount (which must be journaled like any change) still goes in and frees its content.
 */
const RESERVE = 'reserve';
const RESERVE_BYTES = 64 * 1024;

export type Op =
  /** `d`: the content itself, for small files, so close() costs one journal write. */
  | { o: 'put'; p: string; e: Entry; d?: Buffer }
  | { o: 'rm'; p: string }
  | { o: 'mv'; p: string; to: string }
  /** A cluster record set (d) or removed (no d). */
  | { o: 'rec'; p: string; d?: Buffer }
  /** link(2): `to` names the file at `p` too; `id`: the inode record made if it has none yet; `t`: its new ctime. */
  | { o: 'link'; p: string; to: string; id: string; t: number }
  /** A new version of an inode record (`p` is its id): a write or attribute change through any of its names. */
  | { o: 'iput'; p: string; e: Entry; d?: Buffer };

interface Segment {
  gen: number;
  /** null while the file could not be opened (a full disk at start): the next append tries again. */
  fd: number | null;
  /** Bytes of whole lines in the file: where a failed append is cut back to. */
  size: number;
  /** An application's fsync in flight: the fd is closed only after it. */
  syncing: Promise<unknown> | null;
}

function fileName(gen: number): string {
  return `${String(gen).padStart(12, '0')}.log`;
}

export function encodeOp(op: Op): Buffer {
  const j: Record<string, string> = { o: op.o, p: op.p };
  if (op.o === 'put' || op.o === 'iput') {
    j.e = encodeEntry(op.e).toString('base64');
    if (op.d) j.d = op.d.toString('base64');
  }
  if (op.o === 'mv') j.to = op.to;
  if (op.o === 'link') Object.assign(j, { to: op.to, id: op.id, t: String(op.t) });
  if (op.o === 'rec' && op.d) j.d = op.d.toString('base64');
  return Buffer.from(JSON.stringify(j) + '\n');
}

export function decodeOp(line: string): Op {
  const j = JSON.parse(line) as Record<string, string>;
  if (typeof j.p !== 'string') throw new Error('journal line without a path');
  if (j.o === 'put' || j.o === 'iput') {
    if (j.o === 'iput' && !INODE_ID_RE.test(j.p)) throw new Error('journal iput without an inode id');
    const e = decodeEntry(Buffer.from(j.e ?? '', 'base64'), `journal ${j.p}`);
    const d = typeof j.d === 'string' ? Buffer.from(j.d, 'base64') : undefined;
    return d ? { o: j.o, p: j.p, e, d } : { o: j.o, p: j.p, e };
  }
  if (j.o === 'rm') return { o: 'rm', p: j.p };
  if (j.o === 'link' && typeof j.to === 'string' && typeof j.id === 'string' && INODE_ID_RE.test(j.id) && /^\d{1,16}$/.test(j.t ?? '')) return { o: 'link', p: j.p, to: j.to, id: j.id, t: Number(j.t) };
  if (j.o === 'mv' && typeof j.to === 'string') return { o: 'mv', p: j.p, to: j.to };
  if (j.o === 'rec') return typeof j.d === 'string' ? { o: 'rec', p: j.p, d: Buffer.from(j.d, 'base64') } : { o: 'rec', p: j.p };
  throw new Error(`unknown journal op ${JSON.stringify(j.o)}`);
}

/** Opening this in a JSON line can only be the start of an op: quotes inside strings are escaped. */
const OP_START = '{"o":"';

/**
 * Decodes one journal line. A line that does not parse may be a torn append with a whole one
 * glued behind it (journals written before appends were cut back on failure): the glued one is kept.
 */
function decodeLine(line: string): { op: Op | null; torn: boolean } {
  try {
    return { op: decodeOp(line), torn: false };
  } catch {
    const at = line.lastIndexOf(OP_START);
    if (at > 0) {
      try {
        return { op: decodeOp(line.slice(at)), torn: true };
      } catch { /* torn throughout */ }
    }
    return { op: null, torn: true };
  }
}

export class Journal {
  private seg!: Segment;

  constructor(readonly dir: string) {}

  /** Generations on disk, oldest first. */
  async generations(): Promise<number[]> {
    await mkdir(this.dir, { recursive: true, mode: 0o700 });
    return (await readdir(this.dir))
      .filter((n) => /^\d{12}\.log$/.test(n))
      .map((n) => Number(n.slice(0, 12)))
      .sort((a, b) => a - b);
  }

  /** Reads the ops of every generation after `committed`; a torn last line (crash mid-append) is dropped. */
  async readAfter(committed: number): Promise<{ ops: Op[]; torn: number }> {
    const ops: Op[] = [];
    let torn = 0;
    for (const gen of await this.generations()) {
      if (gen <= committed) continue;
      const text = await readFile(join(this.dir, fileName(gen)), 'utf8');
      const lines = text.split('\n');
      const last = lines.pop();
      if (last) torn++;
      for (const l of lines) {
        const r = decodeLine(l);
        if (r.torn) torn++;
        if (r.op) ops.push(r.op);
      }
    }
    return { ops, torn };
  }

  /**
   * Starts appending to a generation after every one on disk and after `committed` (the newest
   * a commit names, whose file may be gone). Needs no free space: when even the empty file
   * cannot be made (a full disk), the first append tries again and fails itself.
   */
  async start(committed = 0): Promise<number> {
    const gens = await this.generations();
    const gen = Math.max(gens.at(-1) ?? 0, committed) + 1;
    this.seg = this.segment(gen);
    this.keepReserve();
    return gen;
  }

  get generation(): number {
    return this.seg.gen;
  }

  private segment(gen: number): Segment {
    const seg: Segment = { gen, fd: null, size: 0, syncing: null };
    try {
      this.openSegment(seg);
    } catch { /* reported by the first append */ }
    return seg;
  }

  private openSegment(seg: Segment): number {
    if (seg.fd === null) {
      // O_APPEND: after a cut-back the next line goes to the new end, not to a stale offset.
      const fd = openSync(join(this.dir, fileName(seg.gen)), fsc.O_WRONLY | fsc.O_CREAT | fsc.O_APPEND, 0o600);
      seg.size = fstatSync(fd).size;
      seg.fd = fd;
    }
    return seg.fd;
  }

  /**
   * Writes the op with write(2); returns once it is in the kernel (crash-safe for the process,
   * not yet for power loss). Throws the system's error (ENOSPC, EIO) when it cannot be written,
   * with the journal as it was before. Synchronous on purpose: the journal is on the node's own
   * disk, never on the mount, and a trip through the I/O thread pool costs ~50 µs here against
   * ~4 µs for the write itself, which is most of a small file's close().
   */
  append(op: Op): void {
    try {
      this.write(op);
    } catch (e) {
      // A removal on a full disk: give up the reserve and try once more.
      if (op.o !== 'rm' || (e as NodeJS.ErrnoException).code !== 'ENOSPC' || !this.releaseReserve()) throw e;
      this.write(op);
    }
  }

  private write(op: Op): void {
    const seg = this.seg;
    const line = encodeOp(op);
    const fd = this.openSegment(seg);
    try {
      for (let done = 0; done < line.length; ) done += writeSync(fd, line, done);
    } catch (e) {
      this.cutBack(seg);
      throw e;
    }
    seg.size += line.length;
  }

  private reserveHeld = false;

  /** Makes the reserve if it is missing and there is room (at start and after each commit); never fails. */
  keepReserve(): void {
    if (this.reserveHeld) return;
    const p = join(this.dir, RESERVE);
    try {
      if (statSync(p).size === RESERVE_BYTES) {
        this.reserveHeld = true;
        return;
      }
    } catch { /* missing */ }
    try {
      writeFileSync(p, Buffer.alloc(RESERVE_BYTES), { mode: 0o600 });
      this.reserveHeld = true;
    } catch {
      try { unlinkSync(p); } catch { /* nothing there */ }
    }
  }

  private releaseReserve(): boolean {
    if (!this.reserveHeld) return false;
    this.reserveHeld = false;
    try {
      unlinkSync(join(this.dir, RESERVE));
      return true;
    } catch {
      return false;
    }
  }

  /**
   * Takes back the op appended last (it turned out invalid), so a replay never meets it.
   * Only right after append(), before anything else was appended.
   */
  retract(op: Op): void {
    const seg = this.seg;
    seg.size -= encodeOp(op).length;
    this.cutBack(seg);
  }

  /** Truncates a segment to its whole lines; if even that fails, it is sealed as it is (replay drops a torn last line). */
  private cutBack(seg: Segment): void {
    try {
      ftruncateSync(seg.fd!, seg.size);
    } catch {
      try { closeSync(seg.fd!); } catch { /* gone already */ }
      this.seg = this.segment(seg.gen + 1);
    }
  }

  /**
   * Seals the current generation (new appends go to the next one) and returns the newest
   * generation the caller's snapshot holds, once every op of it is synced. The switch happens
   * synchronously, at the call. An empty segment is not sealed: the snapshot holds what came before it.
   */
  async rotate(): Promise<number> {
    const old = this.seg;
    if (old.size === 0) return old.gen - 1;
    this.seg = this.segment(old.gen + 1);
    const sealing = (this.sealing = this.seal(old));
    try {
      await sealing;
    } finally {
      if (this.sealing === sealing) this.sealing = null;
    }
    return old.gen;
  }

  /** The segment sealed last, while its fsync runs: an application's fsync waits for it too. */
  private sealing: Promise<void> | null = null;

  private async seal(seg: Segment): Promise<void> {
    if (seg.fd === null) return;
    const fd = seg.fd;
    seg.fd = null;
    try {
      await fdSync(fd);
    } finally {
      await seg.syncing;
      closeSync(fd);
    }
  }

  /** fsync(2) of what was appended so far, for an application's fsync. */
  async sync(): Promise<void> {
    const seg = this.seg;
    const sealing = this.sealing;
    if (seg.fd !== null && seg.size > 0) {
      const p = fdSync(seg.fd);
      seg.syncing = p.catch(() => {});
      await p;
    }
    await sealing;
  }

  /** Deletes generations that a durable commit already contains. */
  async drop(upTo: number): Promise<void> {
    for (const gen of await this.generations()) {
      if (gen <= upTo && gen !== this.seg.gen) await unlink(join(this.dir, fileName(gen))).catch(() => {});
    }
  }

  async close(): Promise<void> {
    await this.seal(this.seg);
  }
}

// One content id in the swarm: its pieces on disk (complete in the store, or partial), the
// admitted connections that carry it, serving their requests, and fetching what readers and
// replication want. Every received piece is verified before it is written, marked, or served.
import type { SwarmLog } from './log.js';
import type { RateLimiter } from './rate.js';
import { EventEmitter } from 'node:events';
import { read as readCb, close as closeCb } from 'node:fs';
import { promisify } from 'node:util';
import { ContentId, Info, pieceCount, pieceSize, BLOCK } from '../content/metainfo.js';
import { verifyAsync } from './verify.js';
import { giveBuffer, takeServed, lendBlock } from './buffers.js';
import type { PieceCache } from './cache.js';
import type { ContentStore } from '../content/store.js';
import { Bitfield } from './bitfield.js';
import { PartialFile } from './partial.js';
import { Picker, Progress } from './picker.js';
import type { Conn, Req, ServeRequest } from './peer.js';

const readFd = promisify(readCb);
const closeFd = promisify(closeCb);

/** The largest block we serve (the standard block is 16 KiB; some clients ask for more). */
export const MAX_REQUEST = 128 * 1024;
/**
 * Between DelugeFS engines (which announce `dfs_req`), runs of blocks are asked for in one
 * request of up to this size: an eighth of the messages, callbacks and parsing per byte.
 */
const COALESCE = 128 * 1024;
const key = (piece: number, offset: number): string => `${piece}:${offset}`;
/** A peer with more unanswered requests than this is flooding us. */
const MAX_QUEUED_REQUESTS = 8192;
/** Stop feeding a socket while this much is still queued on it. */
const SOCKET_HIGH_WATER = 1024 * 1024;
/** Refill a peer's pipeline once this many blocks are free in it. */
const REFILL_BATCH = 64;
/** A reader's content keeps its full speed this long after its last range (a sequential reader asks again within ms). */
const READER_GRACE_MS = 2000;
/** Bad pieces (as their only sender) before a peer is dropped and banned. */
const MAX_STRIKES = 2;

export interface TorrentContext {
  store: ContentStore;
  partialDir: string;
  pipeline: number;
  readAhead: number;
  cache: PieceCache;
  log: SwarmLog;
  /** A peer sent bad data repeatedly: never talk to it about this content again. */
  ban(t: Torrent, conn: Conn): void;
  /** Peers may have become useful (new wants): connect to those not yet connected. */
  wantPeers(t: Torrent): void;
  /** Caps what background fetches ask for (SwarmOptions.backgroundRate); null: no cap. */
  background: RateLimiter | null;
}

/** `memory`: a reader's range, woken by pieces verified in memory before they are written. */
interface Waiter { first: number; last: number; next: number; memory: boolean; resolve: () => void; reject: (e: Error) => void }

export interface TorrentStats {
  id: ContentId;
  length: number;
  complete: boolean;
  pieces: number;
  piecesHave: number;
  bytesLeft: number;
  peers: number;
  downloaded: number;
  uploaded: number;
  /** Bytes per second, smoothed over a few seconds. */
  downloadRate: number;
  uploadRate: number;
  badPieces: number;
  /** Blocks requested and not yet received, and pieces being verified/written. */
  inFlight: number;
  /** Since a reader last asked for bytes (a range or a read). */
  idleMs: number;
  /** Bytes of requests taken back with a cancel to the peer (for a reader elsewhere, a choke aside). */
  cancelledBytes: number;
}

export class Torrent extends EventEmitter {
  readonly n: number;
  have: Bitfield;
  readonly conns = new Set<Conn>();
  readonly picker: Picker<Conn>;
  private partial: PartialFile | null = null;
  private fd: number | null = null;
  private waiters: Waiter[] = [];
  /** Fds replaced while reads may still be using them (partial file after completion). */
  private retiredFds: number[] = [];
  private reading = new Map<number, Promise<Buffer>>();
  /**
   * Pieces verified and being written: readers waiting for them are woken at once and copy them
   * from here, so the write may go past the page cache without a reader waiting for the device.
   */
  private written = new Map<number, Buffer>();
  private fillQueued = false;
  private finishing: Promise<void> | null = null;
  closed = false;
  private reads = 0;
  private lastRead = Date.now();
  private lastUse = Date.now();
  private reopening: Promise<number> | null = null;
  /** Set when writing failed (e.g. disk full): fetching stops until someone asks again. */
  private writeError: Error | null = null;
  private cancelledBytes = 0;
  /** Foreground and background fetchAll calls waiting: the cap holds only while background ones are all there is. */
  private foreground = 0;
  private background = 0;
  /** When a reader last asked for a range: its read-ahead is never held to the background rate. */
  private readerAt = 0;
  private throttleWaiting = false;
  downloaded = 0;
  uploaded = 0;
  badPieces = 0;
  private rateSample = { t: Date.now(), down: 0, up: 0 };
  downloadRate = 0;
  uploadRate = 0;

  private constructor(readonly id: ContentId, readonly info: Info, private readonly ctx: TorrentContext, have: Bitfield) {
    super();
    this.n = pieceCount(info);
    this.have = have;
    this.picker = new Picker<Conn>(info, have);
  }

  /** Opens content for serving and fetching: complete from the store, else partial (resumed). */
  static async open(id: ContentId, info: Info, ctx: TorrentContext): Promise<Torrent> {
    const n = pieceCount(info);
    if (await ctx.store.has(id)) {
      const have = new Bitfield(n);
      for (let i = 0; i < n; i++) have.set(i);
      const t = new Torrent(id, info, ctx, have);
      t.fd = await ctx.store.openRead(id);
      return t;
    }
    const partial = await PartialFile.open(ctx.partialDir, id, info);
    const t = new Torrent(id, info, ctx, partial.have);
    t.partial = partial;
    t.fd = partial.rawFd;
    if (n === 0 || partial.have.full()) await t.finish();
    return t;
  }

  get complete(): boolean {
    return this.have.full() && this.partial === null;
  }

  get wanting(): boolean {
    return !this.have.full() && !this.closed;
  }

  // ---- what we want ------------------------------------------------------------------------

  /**
   * Resolves once all content is verified and in the store. A background fetch (replication's
   * copies) is held to the engine's background rate while no reader or foreground fetch wants
   * this content too.
   */
  fetchAll(signal?: AbortSignal, background = false): Promise<void> {
    this.writeError = null;
    if (background) this.background++;
    else this.foreground++;
    this.picker.wantAll();
    const p = this.waitFor(0, this.n - 1, signal).then(() => this.finishing ?? undefined);
    this.ctx.wantPeers(this);
    this.scheduleFill();
    void p.catch(() => {}).finally(() => { if (background) this.background--; else this.foreground--; });
    return p;
  }

  /** Resolves once bytes [start, end) are verified and readable; reads ahead after them. */
  fetchRange(start: number, end: number, signal?: AbortSignal): Promise<void> {
    if (start < 0 || end > this.info.length || start > end) {
      return Promise.reject(new RangeError(`range ${start}-${end} outside content of ${this.info.length} bytes`));
    }
    this.lastUse = this.readerAt = Date.now();
    if (start === end) return Promise.resolve();
    this.writeError = null;
    const first = Math.floor(start / this.info.pieceLength);
    const last = Math.floor((end - 1) / this.info.pieceLength);
    if (this.readable(first, last)) return Promise.resolve();
    this.picker.addRange(first, last);
    const ahead = Math.max(1, Math.ceil(this.ctx.readAhead / this.info.pieceLength));
    this.picker.readAhead(last + 1, last + ahead);
    const p = this.waitFor(first, last, signal, true);
    this.ctx.wantPeers(this);
    this.yieldToReader(first, last + ahead);
    this.scheduleFill();
    return p;
  }

  /**
   * A reader waits: take back requests for pieces nobody waits for (another region's read-ahead,
   * replication) so the reader's blocks are not queued behind megabytes of them at the sender.
   * Its own read-ahead window [first, windowEnd] is kept: a sequential reader asks for the next
   * pieces in a moment, and cancelling them at every read re-requested a sixth of a 1 GiB read
   * (blocks already sent arrived unasked and were thrown away).
   */
  private yieldToReader(first: number, windowEnd: number): void {
    for (const c of this.conns) {
      for (const r of new Set(c.outstanding.values())) {
        if ((r.piece < first || r.piece > windowEnd) && !this.picker.isUrgent(r.piece)) this.dropReq(c, r, true);
      }
    }
  }

  /** Takes back a request: its blocks go back to the picker; optionally tells the peer. */
  private dropReq(conn: Conn, r: Req, cancel: boolean): void {
    for (const b of r.blocks) {
      const k = key(b.piece, b.offset);
      if (conn.outstanding.get(k) !== r) continue;
      conn.outstanding.delete(k);
      this.picker.release(conn, b);
    }
    // The wire calls our callback with an error; the request is no longer outstanding by then.
    if (cancel) {
      this.cancelledBytes += r.length;
      conn.wire.cancel(r.piece, r.offset, r.length);
    }
  }

  /**
   * Resolves when pieces first..last are all verified and written (a reader's range: verified and
   * in memory, see `written`, is enough). An abort rejects it and, for a
   * reader's range, gives up the range's priority (fetching goes on as read-ahead or not at all).
   */
  private waitFor(first: number, last: number, signal?: AbortSignal, range = false): Promise<void> {
    if (this.n === 0 || (range ? this.readable(first, last) : this.have.hasRange(first, last))) return Promise.resolve();
    if (signal?.aborted) return Promise.reject(signal.reason);
    return new Promise((resolve, reject) => {
      const w: Waiter = { first, last, next: first, memory: range, resolve, reject };
      if (signal) {
        const onAbort = (): void => {
          this.waiters = this.waiters.filter((x) => x !== w);
          if (range) this.picker.removeRange(first, last);
          reject(signal.reason);
        };
        signal.addEventListener('abort', onAbort, { once: true });
        const done = (): void => signal.removeEventListener('abort', onAbort);
        w.resolve = () => { done(); resolve(); };
        w.reject = (e) => { done(); reject(e); };
      }
      this.waiters.push(w);
    });
  }

  /** A reader asked for a range of this content in the last READER_GRACE_MS. */
  private readerLately(): boolean {
    return Date.now() - this.readerAt <= READER_GRACE_MS;
  }

  /** Pieces first..last are verified: on disk, or in memory while their write is under way. */
  private readable(first: number, last: number): boolean {
    if (this.written.size === 0) return this.have.hasRange(first, last);
    for (let i = first; i <= last; i++) if (!this.have.get(i) && !this.written.has(i)) return false;
    return true;
  }

  /**
   * Reads bytes of content already verified (callers fetchRange first), into `out` when given
   * (a reader's own buffer: a fresh 1 MiB buffer per read faults in fresh pages every time).
   * Pieces in memory (being written, or kept for readers in the piece cache) are copied before
   * anything is awaited (a written piece's buffer goes back to the pool); the rest is read from
   * the file.
   */
  async read(start: number, end: number, out: Buffer = Buffer.allocUnsafe(end - start)): Promise<Buffer> {
    if (out.length < end - start) throw new RangeError(`read of ${end - start} bytes into ${out.length}`);
    out = out.subarray(0, end - start);
    const fromDisk: Array<[number, number]> = [];
    const pl = this.info.pieceLength;
    for (let i = Math.floor(start / pl); i * pl < end; i++) {
      const a = Math.max(start, i * pl);
      const b = Math.min(end, i * pl + pieceSize(this.info, i));
      const mem = this.written.get(i) ?? this.ctx.cache.getAhead(this.id, i);
      if (mem) mem.copy(out, a - start, a - i * pl, b - i * pl);
      else if (fromDisk.length && fromDisk[fromDisk.length - 1][1] === a) fromDisk[fromDisk.length - 1][1] = b;
      else fromDisk.push([a, b]);
    }
    this.reads++;
    try {
      if (fromDisk.length === 0) return out;
      // Complete content idle for a while has its fd closed (see releaseIdleFd): reopen it.
      if (this.fd === null && this.complete && !this.closed) {
        this.reopening ??= this.ctx.store.openRead(this.id).finally(() => { this.reopening = null; });
        const fd = await this.reopening;
        if (this.fd === null && !this.closed) this.fd = fd;
        else if (fd !== this.fd) await closeFd(fd).catch(() => {});
      }
      if (this.fd === null) throw new Error(`${this.id}: closed`);
      for (const [a, b] of fromDisk) {
        let done = a - start;
        while (done < b - start) {
          const { bytesRead } = await readFd(this.fd, out, done, b - start - done, start + done);
          if (bytesRead === 0) throw new Error(`${this.id}: short read at ${start + done}`);
          done += bytesRead;
        }
      }
      return out;
    } finally {
      this.reads--;
      this.lastRead = this.lastUse = Date.now();
    }
  }

  /**
   * Complete content nobody has read for `idleMs` gives its fd back (a node may serve far more
   * content than it may keep files open); the next read reopens it.
   */
  async releaseIdleFd(now: number, idleMs: number): Promise<void> {
    if (!this.complete || this.fd === null || this.reads > 0 || this.reopening || now - this.lastRead < idleMs) return;
    if (this.retiredFds.length) return; // completed this session: keep it simple, keep it open
    const fd = this.fd;
    this.fd = null;
    await closeFd(fd).catch(() => {});
  }

  // ---- connections ---------------------------------------------------------------------------

  /** An admitted connection joins: tell it what we have, let it ask, ask it. */
  attach(conn: Conn): void {
    if (this.closed) return conn.close('content closed');
    this.conns.add(conn);
    conn.admitted = true;
    const dr = conn.peerHandshake['dfs_req'];
    if (typeof dr === 'number' && dr >= BLOCK) conn.maxRequest = Math.min(dr, COALESCE);
    const w = conn.wire;
    if (w.hasFast && this.have.full()) w.haveAll();
    else if (w.hasFast && this.have.count() === 0) w.haveNone();
    else w.bitfield(this.have.bytes);
    w.unchoke();
    if (this.wanting) w.interested();
    w.on('request', (index: number, offset: number, length: number, respond: ServeRequest['respond']) =>
      this.onRequest(conn, { index, offset, length, respond }));
    for (const ev of ['unchoke', 'have', 'bitfield', 'have-all']) {
      w.on(ev, () => {
        if (!this.dropIfBothComplete(conn)) this.fill(conn);
      });
    }
    w.on('cancel', (index: number, offset: number, length: number) => {
      const same = (r: ServeRequest): boolean => r.index === index && r.offset === offset && r.length === length;
      const cur = conn.serveCurrent;
      if (cur && !cur.cancelled && same(cur)) {
        cur.cancelled = true;
        return;
      }
      const i = conn.serveQueue.findIndex(same);
      if (i >= 0) conn.serveQueue.splice(i, 1);
    });
    w.on('choke', () => {
      // Without the fast extension a choke cancels everything we asked for.
      if (!w.hasFast) this.releaseAll(conn);
    });
    conn.once('close', () => this.detach(conn));
    this.fill(conn);
  }

  /** Two complete holders have nothing to exchange: the connection only costs a socket. */
  private dropIfBothComplete(conn: Conn): boolean {
    if (!this.have.full() || conn.closed) return false;
    const bits = conn.wire.peerPieces;
    for (let i = 0; i < this.n; i++) if (!bits.get(i)) return false;
    conn.close('both complete');
    return true;
  }

  private detach(conn: Conn): void {
    if (!this.conns.delete(conn)) return;
    this.releaseAll(conn);
    this.picker.dropPeer(conn);
    this.scheduleFill();
  }

  private releaseAll(conn: Conn): void {
    for (const r of new Set(conn.outstanding.values())) this.dropReq(conn, r, false);
    conn.outstanding.clear();
    this.scheduleFill();
  }

  // ---- serving -----------------------------------------------------------------------------

  private onRequest(conn: Conn, r: ServeRequest): void {
    const { index, offset, length } = r;
    const valid = index >= 0 && index < this.n && offset >= 0 && length > 0 && length <= MAX_REQUEST &&
      offset + length <= pieceSize(this.info, index);
    if (!valid) return conn.close(`bad request ${index}:${offset}+${length}`);
    if (conn.serveQueue.length >= MAX_QUEUED_REQUESTS) return conn.close('request flood');
    if (!this.have.get(index)) {
      // Honest peers only ask for what we announced; answer politely if the protocol allows.
      if (conn.wire.hasFast) conn.wire.reject(index, offset, length);
      return;
    }
    conn.serveQueue.push(r);
    void this.serve(conn);
  }

  private async serve(conn: Conn): Promise<void> {
    if (conn.serving) return;
    conn.serving = true;
    try {
      while (conn.serveQueue.length && !conn.closed && !this.closed) {
        if (conn.backlog > SOCKET_HIGH_WATER) {
          await new Promise<void>((resolve) => {
            const done = (): void => { conn.off('drain', done); conn.off('close', done); resolve(); };
            conn.on('drain', done);
            conn.once('close', done);
          });
          continue;
        }
        const r = conn.serveQueue.shift()!;
        conn.serveCurrent = r;
        this.readNext(conn, r.index);
        const piece = await this.readPiece(r.index);
        conn.serveCurrent = null;
        if (conn.closed) break;
        // The wire matches answers to requests by (index, offset, length) only: answering a
        // cancelled request would consume an identical one asked again since, which would then
        // never be answered.
        if (r.cancelled) continue;
        lendBlock(piece);
        r.respond(null, piece.subarray(r.offset, r.offset + r.length));
        conn.uploaded += r.length;
        this.uploaded += r.length;
      }
    } catch (e) {
      this.ctx.log('warn', 'swarm.serve_failed', { id: this.id, error: (e as Error).message });
      conn.close('local read error');
    } finally {
      conn.serving = false;
    }
  }

  /**
   * Starts reading the next piece this peer asked for while the current one is served: read one
   * after the other, a cold disk's latency stopped the connection once per piece.
   */
  private readNext(conn: Conn, current: number): void {
    const next = conn.serveQueue.find((q) => q.index !== current && !q.cancelled);
    if (next && !this.ctx.cache.get(this.id, next.index)) this.readPiece(next.index).catch(() => {});
  }

  /** A whole verified piece, from a small cache (peers ask block by block, in order). */
  private readPiece(index: number): Promise<Buffer> {
    const hit = this.ctx.cache.get(this.id, index);
    if (hit) return Promise.resolve(hit);
    let p = this.reading.get(index);
    if (!p) {
      p = (async () => {
        const start = index * this.info.pieceLength;
        const buf = await this.read(start, start + pieceSize(this.info, index), takeServed(pieceSize(this.info, index)));
        this.ctx.cache.put(this.id, index, buf);
        return buf;
      })().finally(() => this.reading.delete(index));
      this.reading.set(index, p);
    }
    return p;
  }

  // ---- fetching ----------------------------------------------------------------------------

  /** Refill every connection's pipeline soon (after requests were freed). */
  scheduleFill(): void {
    if (this.fillQueued || this.closed) return;
    this.fillQueued = true;
    setImmediate(() => {
      this.fillQueued = false;
      for (const c of this.conns) this.fill(c);
    });
  }

  fill(conn: Conn): void {
    if (conn.closed || !conn.admitted || this.closed || this.writeError || this.have.full()) return;
    const w = conn.wire;
    if (w.peerChoking) {
      if (!w.amInterested) w.interested();
      return;
    }
    let room = this.ctx.pipeline - conn.outstanding.size;
    if (room <= 0) return;
    // Only replication wants this content: what no reader waits for is asked for no faster than
    // the background rate allows (a reader's blocks go at once). Content a reader used in the
    // last seconds (its read-ahead), or that someone fetches in the foreground, is not held.
    const limiter = this.background > 0 && this.foreground === 0 && !this.readerLately() ? this.ctx.background : null;
    const allowed = limiter ? limiter.available(BLOCK) / BLOCK : Infinity;
    const throttle = (): void => {
      if (this.throttleWaiting) return;
      this.throttleWaiting = true;
      limiter!.whenAvailable(() => { this.throttleWaiting = false; this.scheduleFill(); });
    };
    const reading = this.picker.hasRanges();
    if (limiter && allowed <= 0 && !reading) return throttle();
    if (!reading) room = Math.min(room, allowed);
    let sources = 0;
    for (const c of this.conns) if (!c.wire.peerChoking) sources++;
    let blocks = this.picker.pick(conn, (i) => w.peerPieces.get(i), room, sources);
    if (limiter) {
      let left = allowed;
      let spent = 0;
      blocks = blocks.filter((b) => {
        if (this.picker.isUrgent(b.piece)) return true;
        if (left-- <= 0) {
          this.picker.release(conn, b); // no tokens for it now: back to the picker
          return false;
        }
        spent += b.length;
        return true;
      });
      limiter.spend(spent);
      if (left < 0 || allowed <= 0) throttle();
    }
    if (!blocks.length) return;
    if (!w.amInterested) w.interested();
    // The request timeout counts from now if the pipeline was empty.
    if (conn.outstanding.size === 0) conn.lastRecv = Date.now();
    let cur: Req | null = null;
    const send = (r: Req): void => {
      for (const b of r.blocks) conn.outstanding.set(key(b.piece, b.offset), r);
      w.request(r.piece, r.offset, r.length, (err, data) => this.onReq(conn, r, err, data));
    };
    for (const b of blocks) {
      if (cur && b.piece === cur.piece && b.offset === cur.offset + cur.length && cur.length + b.length <= conn.maxRequest) {
        cur.blocks.push(b);
        cur.length += b.length;
        continue;
      }
      if (cur) send(cur);
      cur = { piece: b.piece, offset: b.offset, length: b.length, blocks: [b] };
    }
    if (cur) send(cur);
  }

  private onReq(conn: Conn, r: Req, err: Error | null, data: Uint8Array | null): void {
    // A request is outstanding as a whole or not at all (choke, close, cancel took it back).
    if (conn.outstanding.get(key(r.piece, r.offset)) !== r) return;
    for (const b of r.blocks) conn.outstanding.delete(key(b.piece, b.offset));
    if (err || !data || data.length !== r.length) {
      for (const b of r.blocks) this.picker.release(conn, b);
      this.scheduleFill();
      return;
    }
    conn.lastRecv = Date.now();
    conn.downloaded += data.length;
    this.downloaded += data.length;
    for (const b of r.blocks) {
      const at = b.offset - r.offset;
      const { others, done } = this.picker.onBlock(conn, b, data.subarray(at, at + b.length));
      for (const o of others) {
        const or = o.outstanding.get(key(b.piece, b.offset));
        if (or) {
          this.dropReq(o, or, true);
          this.fill(o);
        }
      }
      if (done) void this.pieceComplete(done);
    }
    // Refill in batches: one request per tick would mean one tiny socket write per block.
    if (this.ctx.pipeline - conn.outstanding.size >= REFILL_BATCH || conn.outstanding.size < REFILL_BATCH) this.fill(conn);
  }

  private async pieceComplete(p: Progress<Conn>): Promise<void> {
    const ok = await verifyAsync(this.info, p.index, p.buf);
    if (!ok) {
      giveBuffer(p.buf);
      this.badPieces++;
      this.picker.pieceFailed(p);
      this.ctx.log('warn', 'swarm.bad_piece', { id: this.id, piece: p.index, senders: p.contributors.size, why: 'a received piece does not match its hash; fetched again' });
      if (p.contributors.size === 1) {
        for (const c of p.contributors) {
          if (++c.strikes >= MAX_STRIKES) this.ctx.ban(this, c);
        }
      }
      this.scheduleFill();
      return;
    }
    if (!this.partial || this.closed) return;
    // Readers waiting for it take it from memory now; it goes to the disk past the page cache
    // (partial.ts): what was fetched would only push out of memory what readers use, and on this
    // kind of VM filling fresh page-cache pages was a third of a fetching engine's CPU.
    this.written.set(p.index, p.buf);
    this.checkWaiters();
    try {
      await this.partial.writePiece(p.index * this.info.pieceLength, p.buf, true);
    } catch (e) {
      this.written.delete(p.index);
      giveBuffer(p.buf);
      this.picker.pieceLost(p.index);
      this.ctx.log('error', 'swarm.write_failed', { id: this.id, piece: p.index, error: (e as Error).message, why: 'fetching this content stops until asked again' });
      this.writeError = e as Error;
      this.failWaiters(e as Error);
      return;
    }
    this.written.delete(p.index);
    if (this.closed || !this.partial) return;
    this.picker.pieceDone(p.index);
    this.partial.markHave(p.index);
    // A reader's read-ahead is read in a moment: keep it in memory (written past the page cache,
    // it would be read back from the device). Otherwise readers and peers get it from the file.
    if (this.readerLately()) this.ctx.cache.putAhead(this.id, p.index, p.buf);
    else giveBuffer(p.buf);
    for (const c of this.conns) if (c.admitted && !c.closed) c.wire.have(p.index);
    this.emit('progress', { id: this.id, piece: p.index, have: this.have.count(), pieces: this.n, bytesLeft: this.bytesLeft() });
    if (this.have.full()) await this.finish().catch(() => {});
    this.checkWaiters();
  }

  private checkWaiters(): void {
    this.waiters = this.waiters.filter((w) => {
      while (w.next <= w.last && (this.have.get(w.next) || (w.memory && this.written.has(w.next)))) w.next++;
      if (w.next <= w.last) return true;
      w.resolve();
      return false;
    });
  }

  private failWaiters(e: Error): void {
    const ws = this.waiters;
    this.waiters = [];
    for (const w of ws) w.reject(e);
  }

  /** All pieces verified: move the partial file into the store; keep serving from the same inode. */
  private finish(): Promise<void> {
    this.finishing ??= (async () => {
      const partial = this.partial!;
      try {
        await partial.finish(this.ctx.store, this.id);
      } catch (e) {
        this.ctx.log('error', 'swarm.store_failed', { id: this.id, error: (e as Error).message });
        this.failWaiters(e as Error);
        throw e;
      }
      // The old fd still reads the same bytes; swap to the store's file for good measure, but
      // keep the old one open until the content closes: a read may be using it right now, and a
      // closed fd number can be reused by another file.
      const fd = await this.ctx.store.openRead(this.id);
      this.fd = fd;
      this.partial = null;
      this.retiredFds.push(partial.rawFd);
      for (const c of [...this.conns]) {
        for (const r of new Set(c.outstanding.values())) this.dropReq(c, r, true);
        c.wire.uninterested();
        this.dropIfBothComplete(c);
      }
      this.emit('complete', this.id);
    })();
    return this.finishing;
  }

  bytesLeft(): number {
    let left = 0;
    for (let i = 0; i < this.n; i++) if (!this.have.get(i)) left += pieceSize(this.info, i);
    return left;
  }

  /** Called about once a second by the engine: rates. */
  tick(now: number): void {
    const dt = (now - this.rateSample.t) / 1000;
    if (dt <= 0) return;
    const a = Math.min(1, dt / 3);
    this.downloadRate = (1 - a) * this.downloadRate + a * ((this.downloaded - this.rateSample.down) / dt);
    this.uploadRate = (1 - a) * this.uploadRate + a * ((this.uploaded - this.rateSample.up) / dt);
    this.rateSample = { t: now, down: this.downloaded, up: this.uploaded };
  }

  stats(): TorrentStats {
    return {
      id: this.id,
      length: this.info.length,
      complete: this.complete,
      pieces: this.n,
      piecesHave: this.have.count(),
      bytesLeft: this.bytesLeft(),
      peers: this.conns.size,
      downloaded: this.downloaded,
      uploaded: this.uploaded,
      downloadRate: Math.round(this.downloadRate),
      uploadRate: Math.round(this.uploadRate),
      badPieces: this.badPieces,
      inFlight: [...this.conns].reduce((a, c) => a + c.outstanding.size, 0) + this.picker.busy.size,
      idleMs: Date.now() - this.lastUse,
      cancelledBytes: this.cancelledBytes,
    };
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    for (const c of [...this.conns]) c.close('content closed');
    this.failWaiters(new Error(`${this.id}: closed`));
    try {
      await this.finishing?.catch(() => {});
    } finally {
      if (this.partial) await this.partial.close();
      else if (this.fd !== null) await closeFd(this.fd).catch(() => {});
      for (const fd of this.retiredFds.splice(0)) await closeFd(fd).catch(() => {});
      this.ctx.cache.drop(this.id);
      this.fd = null;
    }
  }
}


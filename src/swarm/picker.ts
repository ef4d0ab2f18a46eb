// Which blocks to ask a peer for next. Order: pieces a reader waits for (oldest request first),
// then pieces already started (finish what is open), then new wanted pieces in order from the
// read-ahead cursor; when nothing is left unrequested, endgame: ask a second peer for blocks that
// are outstanding elsewhere. A piece that failed verification is re-fetched from one peer only
// (whoever asks first), so a failure with a single sender names the culprit.
import { BLOCK, Info, pieceCount, pieceSize } from '../content/metainfo.js';
import { Bitfield } from './bitfield.js';
import { copyInto, takeBuffer } from './buffers.js';

export interface Block { piece: number; offset: number; length: number }

const FREE = 0;
const REQUESTED = 1;
const RECEIVED = 2;
/** At most this many peers are asked for the same block in endgame. */
const ENDGAME_COPIES = 2;

export interface Progress<K> {
  index: number;
  buf: Buffer;
  state: Uint8Array;
  free: number;
  received: number;
  requesters: Map<number, Set<K>>;
  contributors: Set<K>;
  /** After a failure with several senders: the one peer this piece is fetched from. */
  only: K | null;
  single: boolean;
}

interface Range { first: number; last: number; next: number }

export class Picker<K> {
  readonly pending = new Map<number, Progress<K>>();
  /** Complete pieces being verified and written: neither wanted nor had. */
  readonly busy = new Set<number>();
  private ranges: Range[] = [];
  /** null = every piece is wanted (whole-content fetch). */
  private want: Bitfield | null;
  private cursor = 0;
  private noNew = false;
  private retry = new Set<number>();
  readonly n: number;

  constructor(private readonly info: Info, private readonly have: Bitfield) {
    this.n = pieceCount(info);
    this.want = new Bitfield(this.n);
  }

  get wantsAll(): boolean {
    return this.want === null;
  }

  wantAll(): void {
    this.want = null;
    this.noNew = false;
  }

  /** A reader waits for pieces first..last: they go before everything else. */
  addRange(first: number, last: number): void {
    this.ranges.push({ first, last, next: first });
    this.markWanted(first, last);
    this.cursor = first;
  }

  /** Blocks of the readers' ranges not yet asked for. */
  private urgentFree(): number {
    let free = 0;
    const seen = new Set<number>();
    for (const r of this.ranges) {
      for (let i = r.next; i <= r.last; i++) {
        if (seen.has(i) || this.have.get(i) || this.busy.has(i)) continue;
        seen.add(i);
        const p = this.pending.get(i);
        free += p ? p.free : Math.ceil(pieceSize(this.info, i) / BLOCK);
      }
    }
    return free;
  }

  /** A reader waits for some of this content. */
  hasRanges(): boolean {
    return this.ranges.length > 0;
  }

  /** A reader gave up waiting: its range loses its priority. */
  removeRange(first: number, last: number): void {
    const i = this.ranges.findIndex((r) => r.first === first && r.last === last);
    if (i >= 0) this.ranges.splice(i, 1);
  }

  /** True if a reader waits for this piece. */
  isUrgent(piece: number): boolean {
    return this.ranges.some((r) => piece >= r.next && piece <= r.last);
  }

  /** Pieces to fetch after the ranges, in order. */
  readAhead(first: number, last: number): void {
    this.markWanted(first, Math.min(last, this.n - 1));
  }

  private markWanted(first: number, last: number): void {
    if (this.want) for (let i = first; i <= last; i++) this.want.set(i);
    this.noNew = false;
  }

  private wanted(i: number): boolean {
    return !this.have.get(i) && !this.busy.has(i) && (this.want === null || this.want.get(i));
  }

  /**
   * Up to max blocks for `peer`, which has the pieces for which `has` is true. With `peers`
   * connections, a peer takes only its share of what readers wait for, so a reader's range comes
   * from all of them at once (endgame evens out the rest).
   */
  pick(peer: K, has: (i: number) => boolean, max: number, peers = 1): Block[] {
    const out: Block[] = [];
    if (max <= 0) return out;
    // 1. What readers wait for.
    this.ranges = this.ranges.filter((r) => {
      while (r.next <= r.last && (this.have.get(r.next))) r.next++;
      return r.next <= r.last;
    });
    let urgentMax = max;
    let reserved = false;
    if (peers > 1 && this.ranges.length) {
      const free = this.urgentFree();
      urgentMax = Math.min(max, Math.ceil(free / peers));
      reserved = urgentMax < free;
    }
    for (const r of this.ranges) {
      for (let i = r.next; i <= r.last && out.length < urgentMax; i++) this.take(i, peer, has, out, urgentMax);
      if (out.length >= max) return out;
    }
    const skip = (i: number): boolean => reserved && this.isUrgent(i);
    // 2. Pieces already open.
    for (const p of this.pending.values()) {
      if (out.length >= max) return out;
      if (p.free && has(p.index) && !skip(p.index)) this.takeFrom(p, peer, out, max);
    }
    if (out.length >= max) return out;
    // 3. New pieces from the cursor on, wrapping around.
    if (!this.noNew) {
      let anyLeft = false;
      for (let k = 0; k < this.n && out.length < max; k++) {
        const i = (this.cursor + k) % this.n;
        if (!this.wanted(i) || this.pending.has(i)) continue;
        anyLeft = true;
        if (has(i) && !skip(i)) this.take(i, peer, has, out, max);
      }
      if (!anyLeft) this.noNew = true;
    }
    if (out.length) return out;
    // 4. Endgame: everything wanted is requested; double up on what others still owe.
    for (const p of this.pending.values()) {
      if (!has(p.index) || (p.only !== null && p.only !== peer)) continue;
      for (const [b, set] of p.requesters) {
        if (out.length >= max) return out;
        if (p.state[b] !== REQUESTED || set.has(peer) || set.size >= ENDGAME_COPIES) continue;
        set.add(peer);
        out.push(this.block(p.index, b));
      }
    }
    return out;
  }

  private take(i: number, peer: K, has: (i: number) => boolean, out: Block[], max: number): void {
    if (!has(i) || this.have.get(i) || this.busy.has(i)) return;
    let p = this.pending.get(i);
    if (!p) {
      p = {
        index: i,
        buf: takeBuffer(pieceSize(this.info, i)),
        state: new Uint8Array(Math.ceil(pieceSize(this.info, i) / BLOCK)),
        free: Math.ceil(pieceSize(this.info, i) / BLOCK),
        received: 0,
        requesters: new Map(),
        contributors: new Set(),
        only: null,
        single: this.retry.has(i),
      };
      this.pending.set(i, p);
    }
    this.takeFrom(p, peer, out, max);
  }

  private takeFrom(p: Progress<K>, peer: K, out: Block[], max: number): void {
    if (p.single) {
      if (p.only === null) p.only = peer;
      if (p.only !== peer) return;
    }
    for (let b = 0; b < p.state.length && p.free && out.length < max; b++) {
      if (p.state[b] !== FREE) continue;
      p.state[b] = REQUESTED;
      p.free--;
      p.requesters.set(b, new Set([peer]));
      out.push(this.block(p.index, b));
    }
  }

  private block(piece: number, b: number): Block {
    const size = pieceSize(this.info, piece);
    return { piece, offset: b * BLOCK, length: Math.min(BLOCK, size - b * BLOCK) };
  }

  /** A request failed (choke, reject, cancel, disconnect): the block is free again if nobody else has it. */
  release(peer: K, blk: Block): void {
    const p = this.pending.get(blk.piece);
    if (!p) return;
    const b = blk.offset / BLOCK;
    const set = p.requesters.get(b);
    if (!set || !set.delete(peer)) return;
    if (set.size === 0 && p.state[b] === REQUESTED) {
      p.requesters.delete(b);
      p.state[b] = FREE;
      p.free++;
      this.noNew = false;
    }
  }

  /** Forgets a departed peer's claim to be the single source of a piece. */
  dropPeer(peer: K): void {
    for (const p of this.pending.values()) if (p.only === peer) p.only = null;
  }

  /**
   * Stores a received block. Returns the other peers that were also asked for it (to cancel),
   * and the piece once all its blocks are in (it then leaves `pending` for `busy`).
   */
  onBlock(peer: K, blk: Block, data: Uint8Array): { others: K[]; done: Progress<K> | null } {
    const p = this.pending.get(blk.piece);
    const b = blk.offset / BLOCK;
    if (!p || p.state[b] === RECEIVED || data.length !== blk.length) return { others: [], done: null };
    copyInto(p.buf, data, blk.offset);
    if (p.state[b] === FREE) p.free--;
    p.state[b] = RECEIVED;
    p.received++;
    p.contributors.add(peer);
    const others = [...(p.requesters.get(b) ?? [])].filter((x) => x !== peer);
    p.requesters.delete(b);
    if (p.received < p.state.length) return { others, done: null };
    this.pending.delete(p.index);
    this.busy.add(p.index);
    return { others, done: p };
  }

  /** Verified and written: the caller sets the have bit. */
  pieceDone(index: number): void {
    this.busy.delete(index);
    this.retry.delete(index);
  }

  /** Verification failed: fetch it again, all of it from one peer. */
  pieceFailed(p: Progress<K>): void {
    this.busy.delete(p.index);
    this.retry.add(p.index);
    this.noNew = false;
  }

  /** A write failed: the piece is simply wanted again. */
  pieceLost(index: number): void {
    this.busy.delete(index);
    this.noNew = false;
  }
}

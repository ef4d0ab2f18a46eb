// One TCP connection speaking the peer wire protocol (bittorrent-protocol's Wire), hardened and
// fed whole messages: a framer cuts the TCP stream at message boundaries (checking each length
// before buffering anything, so an oversized message ends the connection), which also spares the
// wire re-concatenating its input buffer on every chunk. Every way a connection ends funnels
// into one close().
import type { Socket } from 'node:net';
import type { KeyObject } from 'node:crypto';
import { EventEmitter } from 'node:events';
import Wire from 'bittorrent-protocol';
import type { Block } from './picker.js';
import { Outbox } from './outbox.js';
import type { ReusedReads } from './secure.js';

/** Largest message accepted: a bitfield of ~2M pieces, an extension message, a 128 KiB block. */
export const MAX_MESSAGE = 256 * 1024 + 64;

/** Cuts a byte stream into whole frames: the 68-byte handshake, then length-prefixed messages. */
class Framer {
  private acc: Buffer[] = [];
  private accLen = 0;
  private size = 0; // of the frame being assembled, once its header is complete
  private handshook = false;
  /** Reusable buffers for piece messages split across reads (fresh 128 KiB buffers cost faults). */
  private ring: Buffer[] = [];
  private turn = 0;

  constructor(
    private readonly onFrame: (f: Buffer, handshook: boolean) => void,
    private readonly onOversized: (n: number) => void,
    /** True when the consumer is done with every frame given so far (a ring buffer may be reused). */
    private readonly drained: () => boolean,
    /** Chunks are views of a reused read buffer: what is kept past push() is copied. */
    private readonly reused = false,
  ) {}

  private keep(part: Buffer): Buffer {
    return this.reused ? Buffer.from(part) : part;
  }

  /** Joins the parts of a frame: pieces into a ring buffer when safe, anything else freshly. */
  private join(): Buffer {
    const first = this.acc[0]!;
    const id = first.length > 4 ? first[4] : Buffer.concat(this.acc, 5)[4];
    if (!this.handshook || id !== 7 || !this.drained()) return Buffer.concat(this.acc, this.accLen);
    this.turn ^= 1;
    let r = this.ring[this.turn];
    if (!r || r.length < this.accLen) r = this.ring[this.turn] = Buffer.allocUnsafeSlow(Math.max(this.accLen, 132 * 1024));
    let o = 0;
    for (const a of this.acc) {
      r.set(a, o);
      o += a.length;
    }
    return r.subarray(0, this.accLen);
  }

  /** Frame size from a header at buf[off..], or 0 if the header is incomplete; -1 = refused. */
  private frameSize(buf: Buffer, off: number): number {
    if (!this.handshook) return buf.length - off >= 1 ? 1 + buf[off]! + 48 : 0;
    if (buf.length - off < 4) return 0;
    const len = buf.readUInt32BE(off);
    if (len > MAX_MESSAGE) {
      this.onOversized(len);
      return -1;
    }
    return 4 + len;
  }

  private emit(f: Buffer): void {
    const after = this.handshook;
    this.handshook = true;
    this.onFrame(f, after);
  }

  push(chunk: Buffer): void {
    let off = 0;
    while (off < chunk.length) {
      if (this.accLen === 0) {
        const size = this.frameSize(chunk, off);
        if (size < 0) return;
        if (size > 0 && chunk.length - off >= size) {
          this.emit(chunk.subarray(off, off + size)); // no copy: a view of the socket's chunk
          off += size;
          continue;
        }
        this.size = size;
        this.acc.push(this.keep(chunk.subarray(off)));
        this.accLen = chunk.length - off;
        return;
      }
      if (this.size === 0) {
        // The header itself was split: it is at most 4 bytes, so joining them is cheap.
        const head = Buffer.concat([...this.acc, chunk.subarray(off, off + 4)]);
        const size = this.frameSize(head, 0);
        if (size < 0) return;
        if (size === 0) {
          this.acc.push(this.keep(chunk.subarray(off)));
          this.accLen += chunk.length - off;
          return;
        }
        this.size = size;
      }
      const take = Math.min(this.size - this.accLen, chunk.length - off);
      this.acc.push(this.keep(chunk.subarray(off, off + take)));
      this.accLen += take;
      off += take;
      if (this.accLen === this.size) {
        const f = this.join();
        this.acc = [];
        this.accLen = 0;
        this.size = 0;
        this.emit(f);
      }
    }
  }
}

/** One wire request: consecutive blocks of a piece asked for together (one block for most peers). */
export interface Req { piece: number; offset: number; length: number; blocks: Block[] }

export interface ServeRequest {
  index: number;
  offset: number;
  length: number;
  respond: (err: Error | null, buf?: Uint8Array) => void;
  /** The peer cancelled it while it was being read: it must not be answered (see serve()). */
  cancelled?: boolean;
}

let nextConnId = 1;

export class Conn extends EventEmitter {
  readonly wire: Wire;
  readonly cid = nextConnId++;
  peerId: string | null = null;
  infoHash: string | null = null;
  admitted = false;
  closed = false;
  closeReason = '';
  /** Our requests to the peer, by "piece:offset" of each block they cover. */
  readonly outstanding = new Map<string, Req>();
  /** Largest request we send this peer (16 KiB unless it announced more in `dfs_req`). */
  maxRequest = 16 * 1024;
  /** The peer's BEP 10 handshake. */
  peerHandshake: Record<string, unknown> = {};
  /** The peer's requests to us, served in order. */
  readonly serveQueue: ServeRequest[] = [];
  /** The request being read for the peer right now, out of the queue. */
  serveCurrent: ServeRequest | null = null;
  serving = false;
  lastRecv = Date.now();
  downloaded = 0;
  uploaded = 0;
  strikes = 0;
  /** Resolves with the peer's BEP 10 handshake (or {} if it speaks no extensions). */
  readonly extHandshake: Promise<Record<string, unknown>>;
  /** The member node id and key the peer proved in TLS (null: a plaintext outsider). */
  node: string | null = null;
  peerKey: KeyObject | null = null;
  private readonly outbox: Outbox | null;
  /** Address book key of an outgoing connection ("host:port"). */
  addrKey: string | null = null;

  /**
   * `socket` carries the wire (a TLSSocket for members); `raw` is the TCP socket under it (the
   * same socket where TLS opened it itself: a dialed member, whose cleartext comes in `reads`).
   */
  constructor(readonly socket: Socket, readonly direction: 'in' | 'out', readonly raw: Socket = socket, reads?: ReusedReads) {
    super();
    raw.setNoDelay(true);
    this.wire = new Wire(direction === 'in' ? 'tcpIncoming' : 'tcpOutgoing');
    const wire = this.wire;
    wire.on('error', (e: Error) => this.close(`wire: ${e.message}`));
    wire.on('end', () => this.close('wire ended'));
    wire.on('finish', () => this.close('wire finished'));
    // The wire emits every message header and block separately. On TCP, corking until the end
    // of the tick turns hundreds of small writes into one writev (a syscall per request
    // otherwise); over TLS a writev costs a fresh merged copy, so an Outbox batches instead.
    const outbox = (socket as { encrypted?: boolean }).encrypted ? new Outbox(socket, () => this.emit('drain')) : null;
    this.outbox = outbox;
    if (!outbox) socket.on('drain', () => this.emit('drain'));
    let corked = false;
    wire.on('data', (chunk: Uint8Array) => {
      if (this.closed) return;
      if (outbox) return outbox.write(chunk);
      if (!corked) {
        corked = true;
        socket.cork();
        process.nextTick(() => {
          corked = false;
          socket.uncork();
        });
      }
      socket.write(chunk);
    });
    // The wire parses what it is given on the next tick, so at most one socket chunk is ever
    // queued in it: no need to pause the socket for it.
    // A piece message is copied out by the time the wire has taken every queued write (it parses
    // synchronously in _write and the request callback copies the block into the piece).
    const drained = (): boolean => (wire as unknown as { _writableState?: { buffered?: number } })._writableState?.buffered === 0;
    const framer = new Framer((f, handshook) => {
      if (this.closed) return;
      // Blocks we asked for go straight to their request (the answer is copied into its piece
      // before this returns); everything else, and anything unexpected, goes through the wire.
      if (handshook && f.length > 13 && f[4] === 7 && this.takePiece(f)) return;
      // The wire parses on a later tick: a view of a reused read buffer must be copied.
      wire.write(f.buffer === readBuf ? Buffer.from(f) : f);
    }, (n) => this.close(`oversized message (${n} bytes)`), drained, !!reads);
    let readBuf: ArrayBufferLike | null = null;
    if (reads) {
      reads.sink = (chunk) => {
        readBuf = chunk.buffer;
        if (!this.closed) framer.push(chunk);
      };
      for (const c of reads.early.splice(0)) reads.sink(c);
    } else {
      socket.on('data', (chunk: Buffer) => {
        if (!this.closed) framer.push(chunk);
      });
    }
    socket.on('error', (e) => this.close(`socket: ${e.message}`));
    socket.on('close', () => this.close('socket closed'));
    socket.on('end', () => this.close('peer closed'));
    wire.on('handshake', (infoHash: string, peerId: string) => {
      this.infoHash = infoHash;
      this.peerId = peerId;
    });
    this.extHandshake = new Promise((resolve) => {
      wire.on('handshake', (_ih: string, _pid: string, ext: { extended?: boolean }) => {
        if (!ext.extended) resolve({});
      });
      wire.on('extended', (name: string | number, obj: unknown) => {
        if (name === 'handshake') resolve((obj ?? {}) as Record<string, unknown>);
      });
      this.once('close', () => resolve({}));
    });
  }

  /** Answers one of our outstanding requests with a piece message; false if none matches. */
  private takePiece(f: Buffer): boolean {
    const index = f.readUInt32BE(5);
    const offset = f.readUInt32BE(9);
    const length = f.length - 13;
    const reqs = this.wire.requests;
    for (let i = 0; i < reqs.length; i++) {
      const r = reqs[i]!;
      if (r.piece === index && r.offset === offset && r.length === length) {
        reqs.splice(i, 1);
        r.callback(null, f.subarray(13));
        return true;
      }
    }
    return false;
  }

  get remoteAddress(): string {
    return this.raw.remoteAddress ?? '';
  }

  get remotePort(): number {
    return this.raw.remotePort ?? 0;
  }

  /** Bytes queued on the socket, not yet taken by the kernel. */
  get backlog(): number {
    return (this.outbox?.queued ?? 0) + this.socket.writableLength;
  }

  close(reason: string): void {
    if (this.closed) return;
    this.closed = true;
    this.closeReason = reason;
    this.serveQueue.length = 0;
    this.socket.destroy();
    this.raw.destroy();
    try {
      this.wire.destroy();
    } catch {
      // a wire torn down mid-parse may throw; the socket is gone either way
    }
    this.emit('close', reason);
  }
}

// One TCP connection speaking the peer wire protocol (bittorrent-protocol's Wire), hardened:
// message lengths are capped before any byte is buffered, the socket is paused while the wire
// is behind, and every way the connection can end funnels into one close().
import type { Socket } from 'node:net';
import { EventEmitter } from 'node:events';
import Wire from 'bittorrent-protocol';
import type { Block } from './picker.js';

/** Largest message accepted: a bitfield of ~2M pieces, an extension message, a 128 KiB block. */
export const MAX_MESSAGE = 256 * 1024 + 64;

/** Wire whose length prefix is checked first: a peer announcing a huge message is cut off. */
class GuardedWire extends Wire {
  override _onMessageLength(buffer: Uint8Array): void {
    const length = ((buffer[0]! << 24) >>> 0) + (buffer[1]! << 16) + (buffer[2]! << 8) + buffer[3]!;
    if (length > MAX_MESSAGE) {
      this.emit('oversized', length);
      return;
    }
    super._onMessageLength(buffer);
  }
}

export interface ServeRequest { index: number; offset: number; length: number; respond: (err: Error | null, buf?: Uint8Array) => void }

let nextConnId = 1;

export class Conn extends EventEmitter {
  readonly wire: Wire;
  readonly cid = nextConnId++;
  peerId: string | null = null;
  infoHash: string | null = null;
  admitted = false;
  closed = false;
  closeReason = '';
  /** Our requests to the peer, by "piece:offset". */
  readonly outstanding = new Map<string, Block>();
  /** The peer's requests to us, served in order. */
  readonly serveQueue: ServeRequest[] = [];
  serving = false;
  lastRecv = Date.now();
  downloaded = 0;
  uploaded = 0;
  strikes = 0;
  /** Resolves with the peer's BEP 10 handshake (or {} if it speaks no extensions). */
  readonly extHandshake: Promise<Record<string, unknown>>;
  /** Our nonce for the membership proof, and the peer's proof once it arrives. */
  nonce: Buffer | null = null;
  peerProof: Promise<{ node: string; sig: Buffer } | null> = Promise.resolve(null);
  /** Address book key of an outgoing connection ("host:port"). */
  addrKey: string | null = null;

  constructor(readonly socket: Socket, readonly direction: 'in' | 'out') {
    super();
    socket.setNoDelay(true);
    this.wire = new GuardedWire(direction === 'in' ? 'tcpIncoming' : 'tcpOutgoing');
    const wire = this.wire;
    wire.on('oversized', (n: number) => this.close(`oversized message (${n} bytes)`));
    wire.on('error', (e: Error) => this.close(`wire: ${e.message}`));
    wire.on('end', () => this.close('wire ended'));
    wire.on('finish', () => this.close('wire finished'));
    // The wire emits every message header and block separately; corking until the end of the
    // tick turns hundreds of small writes into one writev (a syscall per request otherwise).
    let corked = false;
    wire.on('data', (chunk: Uint8Array) => {
      if (this.closed) return;
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
    socket.on('data', (chunk: Buffer) => {
      if (this.closed) return;
      if (!wire.write(chunk)) {
        socket.pause();
        wire.once('drain', () => socket.resume());
      }
    });
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

  get remoteAddress(): string {
    return this.socket.remoteAddress ?? '';
  }

  get remotePort(): number {
    return this.socket.remotePort ?? 0;
  }

  /** Bytes queued on the socket, not yet taken by the kernel. */
  get backlog(): number {
    return this.socket.writableLength;
  }

  close(reason: string): void {
    if (this.closed) return;
    this.closed = true;
    this.closeReason = reason;
    this.serveQueue.length = 0;
    this.socket.destroy();
    try {
      this.wire.destroy();
    } catch {
      // a wire torn down mid-parse may throw; the socket is gone either way
    }
    this.emit('close', reason);
  }
}

// A misbehaving BitTorrent peer for tests, written from the protocol spec (BEP 3) so that it can
// break it on purpose: corrupt blocks, silence, hang-ups mid-piece, oversized or malformed messages.
import { createServer, Server, Socket, connect } from 'node:net';
import { randomBytes } from 'node:crypto';
import { EventEmitter } from 'node:events';

export type Behaviour = 'corrupt' | 'silent' | 'hangup' | 'oversized' | 'garbage';

const PSTR = Buffer.from('\x13BitTorrent protocol');

export function handshake(infoHash: string, peerId = randomBytes(20)): Buffer {
  return Buffer.concat([PSTR, Buffer.alloc(8), Buffer.from(infoHash, 'hex'), peerId]);
}

export function message(id: number, ...parts: Array<number | Buffer>): Buffer {
  const body = Buffer.concat(parts.map((p) => {
    if (typeof p !== 'number') return p;
    const b = Buffer.alloc(4);
    b.writeUInt32BE(p >>> 0);
    return b;
  }));
  const head = Buffer.alloc(5);
  head.writeUInt32BE(body.length + 1);
  head[4] = id;
  return Buffer.concat([head, body]);
}

/** Splits a stream into BitTorrent messages (after the 68-byte handshake). */
export function reader(sock: Socket, onHandshake: (h: Buffer) => void, onMessage: (id: number, body: Buffer) => void): void {
  let buf = Buffer.alloc(0);
  let shook = false;
  sock.on('data', (d) => {
    buf = Buffer.concat([buf, d]);
    for (;;) {
      if (!shook) {
        if (buf.length < 68) return;
        shook = true;
        onHandshake(buf.subarray(0, 68));
        buf = buf.subarray(68);
        continue;
      }
      if (buf.length < 4) return;
      const len = buf.readUInt32BE(0);
      if (buf.length < 4 + len) return;
      if (len > 0) onMessage(buf[4]!, buf.subarray(5, 4 + len));
      buf = buf.subarray(4 + len);
    }
  });
}

/** A server that claims to have every piece of `pieces` pieces and then misbehaves. */
export class HostilePeer extends EventEmitter {
  private server: Server;
  port = 0;
  requests = 0;
  badPieces = 0;
  closed = 0;
  private sockets = new Set<Socket>();

  constructor(readonly infoHash: string, readonly pieces: number, readonly behaviour: Behaviour) {
    super();
    this.server = createServer((s) => this.serve(s));
  }

  async listen(): Promise<number> {
    await new Promise<void>((r) => this.server.listen(0, '127.0.0.1', () => r()));
    this.port = (this.server.address() as { port: number }).port;
    return this.port;
  }

  private serve(sock: Socket): void {
    this.sockets.add(sock);
    sock.on('error', () => {});
    sock.on('close', () => { this.sockets.delete(sock); this.closed++; this.emit('closed'); });
    const seen = new Set<number>();
    let sentBlocks = 0;
    reader(sock, (h) => {
      if (h.subarray(28, 48).toString('hex') !== this.infoHash) return sock.destroy();
      sock.write(handshake(this.infoHash));
      const bits = Buffer.alloc(Math.ceil(this.pieces / 8), 0xff);
      if (this.pieces % 8) bits[bits.length - 1] = (0xff << (8 - (this.pieces % 8))) & 0xff;
      sock.write(message(5, bits));
      sock.write(message(1)); // unchoke
      if (this.behaviour === 'oversized') {
        const head = Buffer.alloc(5);
        head.writeUInt32BE(0x7ffffff0);
        head[4] = 7;
        sock.write(Buffer.concat([head, randomBytes(4096)]));
      }
      if (this.behaviour === 'garbage') {
        // Messages too short for their type, out-of-range have, a bitfield of the wrong size, an
        // extended message that is not bencode, an unknown message id.
        sock.write(Buffer.concat([message(4), message(4, 0xfffffff0), message(5, randomBytes(3)), message(20, Buffer.from([0]), Buffer.from('d1:xi')), message(99, randomBytes(10)), message(6)]));
      }
    }, (id, body) => {
      if (id !== 6 || body.length < 12) return;
      this.requests++;
      this.emit('request');
      const index = body.readUInt32BE(0);
      const begin = body.readUInt32BE(4);
      const length = body.readUInt32BE(8);
      if (this.behaviour === 'corrupt') {
        sock.write(message(7, index, begin, randomBytes(length)));
        if (begin === 0 && !seen.has(index)) { seen.add(index); this.badPieces++; this.emit('bad'); }
      } else if (this.behaviour === 'hangup') {
        if (++sentBlocks > 3) return sock.destroy();
        sock.write(message(7, index, begin, randomBytes(length)));
      }
      // silent: never answers; oversized/garbage: already broke the stream
    });
  }

  async close(): Promise<void> {
    for (const s of this.sockets) s.destroy();
    await new Promise<void>((r) => this.server.close(() => r()));
  }
}

/**
 * Connects to an engine as a client: sends `hello` (normally a handshake), then `frames` once
 * the engine unchokes us (or at once if `early`); resolves when the engine hangs up.
 */
export function probe(port: number, hello: Buffer, frames: Buffer[], early = false): Promise<{ handshook: boolean; unchoked: boolean }> {
  return new Promise((resolve) => {
    const s = connect({ host: '127.0.0.1', port });
    let handshook = false;
    let unchoked = false;
    s.on('error', () => {});
    s.on('close', () => resolve({ handshook, unchoked }));
    s.on('connect', () => {
      s.write(hello);
      if (early) for (const f of frames) s.write(f);
    });
    reader(s, () => { handshook = true; }, (id) => {
      if (id !== 1 || unchoked) return;
      unchoked = true;
      if (!early) for (const f of frames) s.write(f);
    });
  });
}

// Peers given as HOST:PORT (`--peer`, last known addresses of members): outside the LAN, mDNS
// cannot see them. A probe is an SSH key exchange (no user authentication) that learns the host
// key and checks the server's signature with it, from which the node id and fingerprint follow;
// the peer is then in the same PeerSet as mDNS peers. Whoever connects later (RpcClient, ssh
// with known_hosts) still checks the host key strictly against the member records.
// Between identifications (every minute, and after any failure) liveness is only the server's
// SSH banner: a key exchange costs both ends a curve25519 and an ed25519 signature, and every
// node probing every static peer every 3 s made those a tenth of a busy 8-node cluster's CPU.
import net from 'node:net';
import ssh2 from 'ssh2';
import { nodeIdOf, fingerprintOf } from './identity.js';
import { PeerSet } from './peer-set.js';
import { Log, jsonLog } from './log.js';

const { Client } = ssh2;

export function parseHostPort(s: string): { host: string; port: number } {
  const m = /^\[([^\]]+)\]:(\d+)$/.exec(s) ?? /^([^:\s]+):(\d+)$/.exec(s);
  const port = m ? Number(m[2]) : NaN;
  if (!m || !(port > 0 && port < 65536)) throw new Error(`not HOST:PORT: ${s}`);
  return { host: m[1], port };
}

/**
 * Connects until the server has proven it holds the host key it shows (the key exchange is
 * signed with it), then hangs up: no user authentication, nothing asked of the server.
 * `accept` may refuse the key early (the handshake then stops before the signature check).
 */
export function probeHostKey(host: string, port: number, timeoutMs = 3000, accept: (key: Buffer) => boolean = () => true): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const c = new Client();
    const sock = net.connect({ host, port });
    sock.setNoDelay(true);
    let key: Buffer | undefined;
    let proven = false;
    let settled = false;
    const done = (err?: Error) => {
      if (settled) return;
      settled = true;
      clearTimeout(t);
      c.end();
      sock.destroy();
      if (key && proven) resolve(key);
      else reject(err ?? (key ? new HostKeyRefused(key, `host key of ${host}:${port} refused`) : new Error('no host key')));
    };
    const t = setTimeout(() => done(new Error(`probe of ${host}:${port} timed out`)), timeoutMs);
    c.on('error', (err: Error) => done(key && !accept(key) ? new HostKeyRefused(key, `host key of ${host}:${port} refused`) : err));
    // 'handshake' comes after the server's signature over the exchange was verified.
    c.on('handshake', () => {
      proven = true;
      setImmediate(() => done());
    });
    c.on('ready', () => done());
    c.connect({
      sock,
      username: 'probe',
      hostVerifier: (k: Buffer) => {
        key = Buffer.from(k);
        return accept(key);
      },
      algorithms: { serverHostKey: ['ssh-ed25519'] },
      readyTimeout: timeoutMs,
    });
  });
}

/**
 * Liveness only: connects and reads the server's identification line (`SSH-2.0-…`), then hangs
 * up before any key exchange. Proves that an SSH server answers there, not whose it is.
 */
export function probeBanner(host: string, port: number, timeoutMs = 3000): Promise<void> {
  return new Promise((resolve, reject) => {
    const sock = net.connect({ host, port });
    let got = Buffer.alloc(0);
    let settled = false;
    const done = (err?: Error) => {
      if (settled) return;
      settled = true;
      clearTimeout(t);
      sock.destroy();
      if (err) reject(err);
      else resolve();
    };
    const t = setTimeout(() => done(new Error(`probe of ${host}:${port} timed out`)), timeoutMs);
    sock.on('error', (e) => done(e));
    sock.on('close', () => done(new Error(`${host}:${port} closed before its banner`)));
    sock.on('data', (d: Buffer) => {
      got = Buffer.concat([got, d]).subarray(0, 256); // RFC 4253: 255 bytes at most, lines before it allowed
      const nl = got.indexOf('\n');
      if (got.subarray(0, 8).toString('latin1') === 'SSH-2.0-' && nl > 0) done();
      else if (nl >= 0 && !got.subarray(0, 4).equals(Buffer.from('SSH-'))) done(new Error(`${host}:${port} is not an SSH server`));
      else if (got.length >= 256) done(new Error(`${host}:${port} sent no banner`));
    });
  });
}

/** A probe met a host key it was told to refuse. */
export class HostKeyRefused extends Error {
  constructor(readonly key: Buffer, message: string) {
    super(message);
  }
}

export interface StaticPeersOptions {
  peers: PeerSet;
  addresses?: string[];
  /** Period of liveness probes; default 3000 ms. */
  intervalMs?: number;
  /** A peer not answering for this long is lost; default 9000 ms (inside the 10 s promise). */
  lostAfterMs?: number;
  /** How often an answering peer's host key is checked again (a key exchange); default 60 s. */
  identifyMs?: number;
  log?: Log;
}

interface Entry {
  host: string;
  port: number;
  nodeId?: string;
  lastOk: number;
  /** When the last key exchange proved its key (banner probes in between). */
  identifiedAt?: number;
  busy?: boolean;
  /** The last probe failed (the peer was not lost yet). */
  failing?: boolean;
}

export class StaticPeers {
  private entries = new Map<string, Entry>();
  private timer?: NodeJS.Timeout;
  private running = false;
  private readonly log: Log;

  constructor(private readonly o: StaticPeersOptions) {
    this.log = o.log ?? jsonLog('static-peers');
    for (const a of o.addresses ?? []) this.add(a);
  }

  /** Adds HOST:PORT (throws on malformed input); probed at once when running. */
  add(address: string): void {
    const { host, port } = parseHostPort(address);
    const key = `${host}:${port}`;
    if (this.entries.has(key)) return;
    const e: Entry = { host, port, lastOk: 0 };
    this.entries.set(key, e);
    if (this.running) void this.probe(e);
  }

  /** Forgets HOST:PORT (e.g. a removed member's last address); its peer is lost if no other source sees it. */
  remove(address: string): void {
    const { host, port } = parseHostPort(address);
    const e = this.entries.get(`${host}:${port}`);
    if (!e) return;
    this.entries.delete(`${host}:${port}`);
    if (e.nodeId) this.o.peers.remove(e.nodeId, 'static');
  }

  start(): void {
    this.running = true;
    this.round();
    this.timer = setInterval(() => this.round(), this.o.intervalMs ?? 3000);
  }

  stop(): void {
    this.running = false;
    clearInterval(this.timer);
  }

  private round(): void {
    for (const e of this.entries.values()) void this.probe(e);
  }

  private async probe(e: Entry): Promise<void> {
    if (e.busy) return;
    e.busy = true;
    try {
      if (e.nodeId && !e.failing && Date.now() - (e.identifiedAt ?? 0) < (this.o.identifyMs ?? 60_000)) {
        await probeBanner(e.host, e.port);
        e.lastOk = Date.now();
        return;
      }
      const key = await probeHostKey(e.host, e.port);
      if (!this.running) return;
      const nodeId = nodeIdOf(key);
      if (e.nodeId && e.nodeId !== nodeId) this.o.peers.remove(e.nodeId, 'static');
      if (e.nodeId !== nodeId) this.log('static_peer_seen', { host: e.host, port: e.port, nodeId });
      e.nodeId = nodeId;
      e.lastOk = e.identifiedAt = Date.now();
      this.o.peers.update({ nodeId, fingerprint: fingerprintOf(key), host: e.host, sshPort: e.port, addresses: [e.host], source: 'static' });
      if (e.failing) this.o.peers.back(nodeId);
      e.failing = false;
    } catch (err) {
      if (!this.running || !e.nodeId) return;
      e.failing = true;
      if (Date.now() - e.lastOk >= (this.o.lostAfterMs ?? 9000)) {
        this.log('static_peer_lost', { host: e.host, port: e.port, nodeId: e.nodeId, error: (err as Error).message });
        this.o.peers.remove(e.nodeId, 'static');
        e.nodeId = undefined;
      }
    } finally {
      e.busy = false;
    }
  }
}

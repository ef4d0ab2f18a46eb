// The swarm engine: one TCP listener, an address book of cluster peers, and the open content
// (Torrent) by id. Members talk inside TLS 1.3 authenticated by their node keys (secure.ts; which
// keys are members is the cluster's business, `WireSecurity.verify`); anyone else speaks
// plaintext BitTorrent and is served only content explicitly shared with outsiders (`shared`).
// One listener takes both: the first byte tells a TLS ClientHello (0x16) from a BitTorrent
// handshake (0x13).
import { EventEmitter } from 'node:events';
import { createServer, connect, Server, Socket } from 'node:net';
import { randomBytes, KeyObject } from 'node:crypto';
import { dirname, join } from 'node:path';
import { mkdir, open, readdir, unlink } from 'node:fs/promises';
import { ContentId, Info, infoHash, isContentId, pieceCount } from '../content/metainfo.js';
import { Bitfield } from './bitfield.js';
import type { ContentStore } from '../content/store.js';
import { Conn } from './peer.js';
import { SwarmDht, DhtOptions } from './dht.js';
import { warmVerifiers } from './verify.js';
import { PieceCache } from './cache.js';
import type { SwarmLog, SwarmLevel } from './log.js';
import { RateLimiter } from './rate.js';
import { MemberChannel, WireSecurity, TLS_HANDSHAKE_BYTE, Secured } from './secure.js';
import { Torrent, TorrentContext, TorrentStats, MAX_REQUEST } from './torrent.js';

export interface PeerInfo {
  /** Remote IP address (IPv4-mapped IPv6 addresses are given as plain IPv4). */
  address: string;
  port: number;
  direction: 'in' | 'out';
  /** Remote BitTorrent peer id, hex. */
  peerId: string;
  id: ContentId;
  /** The peer's BEP 10 extension handshake ({} if it sent none). */
  handshake: Record<string, unknown>;
  /** The member node id the peer proved in the TLS handshake; null for a plaintext peer. */
  node: string | null;
}

export type { WireSecurity } from './secure.js';

export interface SwarmOptions {
  store: ContentStore;
  /** Partial downloads; default: `partial` beside the store's folder (same filesystem). */
  partialDir?: string;
  /** First port to try; the next ones up to `portTries` are tried if taken. 0 = any. */
  port?: number;
  portTries?: number;
  /** Address to listen on (default 0.0.0.0). */
  host?: string;
  /** Member peers to fetch from: "host:port" or {host, port} (over TLS when `secure` is given). */
  peers?: Array<string | { host: string; port: number }>;
  /** Structured events with a level (swarm/log.ts); the node forwards them to its own log. */
  log?: SwarmLog;
  /**
   * Members: the node key and the member check for the TLS channel (see WireSecurity). Without
   * it the engine has no members: every peer is an outsider.
   */
  secure?: WireSecurity;
  /**
   * Content outsiders (plaintext peers, e.g. any BitTorrent client) may exchange with us: asked
   * before anything is sent to or accepted from one. Default: nothing.
   */
  shared?: (id: ContentId) => boolean;
  /** Info of complete content not yet opened, for a peer asking for it (else it is refused). */
  resolve?: (id: ContentId) => Info | undefined | Promise<Info | undefined>;
  /** Extra fields for our BEP 10 handshake (e.g. a node id and proof for `admit` on the other side). */
  handshakeFields?: (peer: { address: string; id: ContentId }) => Record<string, unknown>;
  /** Blocks of 16 KiB in flight per peer (>= 128). */
  pipeline?: number;
  /** A peer owing blocks that sends nothing for this long is dropped (ms). */
  requestTimeout?: number;
  /** Time allowed for handshakes (ms). */
  handshakeTimeout?: number;
  /** Bytes fetched in order after a range a reader asked for. */
  readAhead?: number;
  /** Piece cache for serving, all content together (bytes). */
  cacheBytes?: number;
  maxConnections?: number;
  /** Complete content not read for this long closes its file until the next read (ms). */
  idleFdMs?: number;
  /** A private DHT (off unless given): bootstrapped only from `dht.nodes` / addDhtNode(). */
  dht?: DhtOptions;
  /** Bytes per second that background fetches (fetch(..., {background})) ask for together; 0: no cap. */
  backgroundRate?: number;
}

interface AddrState { next: number; failures: number; conn: Conn | null; connecting: boolean }
/**
 * A peer address; `ids` limits it to content it was found for in the DHT (null: all content);
 * `plain`: an outsider's address, spoken to in plaintext and only about shared content.
 */
interface Addr { host: string; port: number; per: Map<ContentId, AddrState>; ids: Set<ContentId> | null; plain: boolean }

const REANNOUNCE_MS = 10 * 60_000;
/** Complete content not read for this long closes its fd until the next read. */
const IDLE_FD_MS = 60_000;

const PEER_ID_PREFIX = '-DF0100-';
/**
 * An address whose handshakes failed this often (TLS without a member key, plaintext for content
 * not shared) within one window is refused at accept until the window ends: a replayed
 * ClientHello costs it nothing and us a key exchange and a signature each time.
 */
const MAX_FAILURES = 64;
const FAILURE_WINDOW_MS = 10_000;

function normalizeAddress(a: string | undefined): string {
  if (!a) return '';
  return a.startsWith('::ffff:') ? a.slice(7) : a;
}

function parsePeer(p: string | { host: string; port: number }): { host: string; port: number } {
  if (typeof p !== 'string') return p;
  const m = /^\[?(.+?)\]?:(\d+)$/.exec(p);
  if (!m) throw new Error(`peer "${p}" is not host:port`);
  return { host: m[1]!, port: Number(m[2]) };
}

/** A hinted fetch that got nothing from the hinted peers this long asks everyone. */
const HINT_GRACE_MS = 3000;

export class Swarm extends EventEmitter {
  readonly peerId: string;
  port = 0;
  private server: Server | null = null;
  private torrents = new Map<ContentId, Torrent>();
  private opening = new Map<ContentId, Promise<Torrent>>();
  private addrs = new Map<string, Addr>();
  private bans = new Map<ContentId, Set<string>>();
  /** Incoming connections, open until they close, for maxConnections. */
  private incoming = new Set<Socket>();
  /**
   * Incoming connections not yet a member's (or an admitted outsider's), oldest first, with the
   * remote address: when the cap is reached one of these makes room for the newcomer, so
   * strangers holding sockets open cannot lock members out (see evictPending).
   */
  private pending = new Map<Socket, string>();
  /** Failed incoming handshakes per remote address in the current window (see MAX_FAILURES). */
  private failures = new Map<string, number>();
  private failureWindow = 0;
  /** Sockets we ended to make room: their failed handshake is not held against their address. */
  private evicted = new WeakSet<Socket>();
  /** Every open connection, for revalidate() and close(). */
  private conns = new Set<Conn>();
  /** Connections made or taken since the start (each a TLS handshake between members). */
  private opened = 0;
  /** Bytes moved by content no longer open, so the totals only grow (metrics' counters). */
  private readonly dropped = { downloaded: 0, uploaded: 0 };
  private readonly channel: MemberChannel | null;
  private timer: NodeJS.Timeout | null = null;
  dht: SwarmDht | null = null;
  private lookups = new Map<ContentId, { next: number; wait: number }>();
  /**
   * Content whose fetch was told who holds it (replication knows): only those addresses are
   * connected to, until the fetch ends or gets nothing from them for HINT_GRACE_MS. Every
   * member address for every content meant a TLS handshake with every member per copy made:
   * at 16 nodes, most of them with peers that had nothing to give.
   */
  private hints = new Map<ContentId, Set<string>>();
  private announced = new Map<ContentId, number>();
  private unannounced = new Set<ContentId>();
  private closed = false;
  private readonly ctx: TorrentContext;
  private readonly o: Required<Pick<SwarmOptions, 'pipeline' | 'requestTimeout' | 'handshakeTimeout' | 'maxConnections'>>;

  constructor(readonly opts: SwarmOptions) {
    super();
    this.peerId = Buffer.concat([Buffer.from(PEER_ID_PREFIX), randomBytes(12)]).toString('hex');
    this.channel = opts.secure ? new MemberChannel(opts.secure) : null;
    this.o = {
      pipeline: Math.max(128, opts.pipeline ?? 128),
      requestTimeout: opts.requestTimeout ?? 20_000,
      handshakeTimeout: opts.handshakeTimeout ?? 10_000,
      maxConnections: opts.maxConnections ?? 500,
    };
    const log = opts.log ?? (() => {});
    this.ctx = {
      store: opts.store,
      partialDir: opts.partialDir ?? join(dirname(opts.store.dir), 'partial'),
      pipeline: this.o.pipeline,
      readAhead: opts.readAhead ?? 32 * 1024 * 1024,
      cache: new PieceCache(opts.cacheBytes ?? 64 * 1024 * 1024),
      log,
      ban: (t, conn) => this.ban(t, conn),
      wantPeers: (t) => this.connectPeers(t),
      background: opts.backgroundRate ? new RateLimiter(opts.backgroundRate) : null,
    };
    for (const p of opts.peers ?? []) {
      const { host, port } = parsePeer(p);
      this.addPeer(host, port);
    }
  }

  private log(level: SwarmLevel, event: string, fields: Record<string, unknown> = {}): void {
    this.ctx.log(level, event, fields);
  }

  /** Starts listening on the first free port from `port` upward; resolves with the port. */
  async listen(): Promise<number> {
    const first = this.opts.port ?? 6881;
    const tries = first === 0 ? 1 : (this.opts.portTries ?? 100);
    for (let i = 0; i < tries; i++) {
      const server = createServer({ noDelay: true }, (s) => this.onIncoming(s));
      try {
        await new Promise<void>((resolve, reject) => {
          server.once('error', reject);
          server.listen(first === 0 ? 0 : first + i, this.opts.host ?? '0.0.0.0', () => {
            server.off('error', reject);
            resolve();
          });
        });
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code === 'EADDRINUSE' && i + 1 < tries) continue;
        throw e;
      }
      server.on('error', (e) => this.log('error', 'swarm.listener_error', { error: e.message }));
      this.server = server;
      this.port = (server.address() as { port: number }).port;
      if (this.opts.dht) {
        const dht = new SwarmDht({ ...this.opts.dht, host: this.opts.dht.host ?? this.opts.host ?? '0.0.0.0', port: this.opts.dht.port ?? this.port }, this.ctx.log);
        await dht.listen();
        dht.on('peer', (host: string, port: number, id: ContentId) => this.addCandidate(host, port, id));
        dht.on('node', () => this.onDhtNode());
        this.dht = dht;
      }
      this.timer = setInterval(() => this.tick(), 1000);
      this.timer.unref();
      return this.port;
    }
    throw new Error('no free port');
  }

  // ---- peers -------------------------------------------------------------------------------

  /**
   * A peer to fetch from: a member's address (TLS when `secure` is given), or with `plain` an
   * outsider's (plaintext, only for shared content).
   */
  addPeer(host: string, port: number, o: { plain?: boolean } = {}): void {
    const key = `${host}:${port}`;
    const plain = o.plain === true || !this.channel;
    const a = this.addrs.get(key);
    if (a) {
      a.ids = null;
      a.plain = plain;
      return;
    }
    this.addrs.set(key, { host, port, per: new Map(), ids: null, plain });
    for (const t of this.torrents.values()) if (t.wanting) this.connectPeers(t);
  }

  /** A cluster member's DHT node (the cluster layer calls this as members appear). */
  addDhtNode(host: string, port: number): void {
    this.dht?.addNode({ host, port });
  }

  /** A peer the DHT says holds `id`: tried for that content only, and admitted by the usual rule. */
  private addCandidate(host: string, port: number, id: ContentId): void {
    if (!this.torrents.has(id)) return;
    this.log('debug', 'swarm.dht.candidate', { id, peer: `${host}:${port}` });
    const key = `${host}:${port}`;
    let a = this.addrs.get(key);
    // Found in our private DHT, among members: spoken to like a member address.
    if (!a) this.addrs.set(key, (a = { host, port, per: new Map(), ids: new Set(), plain: !this.channel }));
    if (a.ids) a.ids.add(id);
    const t = this.torrents.get(id);
    if (t?.wanting) this.connectPeers(t);
  }

  removePeer(host: string, port: number): void {
    const a = this.addrs.get(`${host}:${port}`);
    if (!a) return;
    this.addrs.delete(`${host}:${port}`);
    for (const s of a.per.values()) s.conn?.close('peer removed');
  }

  /** Content outsiders may exchange with us (`shared`; nothing by default). */
  private isShared(id: ContentId): boolean {
    try {
      return this.opts.shared?.(id) === true;
    } catch {
      return false;
    }
  }

  /**
   * Asks the member check again for every member connection and ends those it no longer passes
   * (the cluster calls this when the member records change, e.g. a revocation was merged).
   */
  revalidate(): number {
    let dropped = 0;
    for (const c of this.conns) {
      if (!c.peerKey || !this.channel) continue;
      let node: string | null = null;
      try {
        node = this.channel.check(c.peerKey);
      } catch {
        // a failing check counts as "not a member"
      }
      if (node === c.node) continue;
      this.log('info', 'swarm.member_dropped', { peer: `${c.remoteAddress}:${c.remotePort}`, node: c.node, why: 'no longer a member' });
      c.close('no longer a member');
      dropped++;
    }
    return dropped;
  }

  /** Content bytes received and sent since the engine started (open and dropped content). */
  totals(): { downloaded: number; uploaded: number; connections: number; opened: number; background: number } {
    let downloaded = this.dropped.downloaded, uploaded = this.dropped.uploaded;
    for (const t of this.torrents.values()) {
      downloaded += t.downloaded;
      uploaded += t.uploaded;
    }
    return { downloaded, uploaded, connections: [...this.conns].filter((c) => !c.closed).length, opened: this.opened, background: this.ctx.background?.spent ?? 0 };
  }

  /** Open member connections per member node id (one per content exchanged with it). */
  connectionsByNode(): Map<string, number> {
    const out = new Map<string, number>();
    for (const c of this.conns) if (c.node && !c.closed) out.set(c.node, (out.get(c.node) ?? 0) + 1);
    return out;
  }

  private track(c: Conn): Conn {
    this.opened++;
    this.conns.add(c);
    c.once('close', () => this.conns.delete(c));
    return c;
  }

  private isSelf(a: Addr): boolean {
    return a.port === this.port && ['127.0.0.1', 'localhost', '::1', this.opts.host].includes(a.host);
  }

  /** Connects to every known peer not yet connected for this content (with backoff). */
  private connectPeers(t: Torrent): void {
    if (this.closed || !t.wanting) return;
    const now = Date.now();
    const only = this.hints.get(t.id);
    for (const [key, a] of this.addrs) {
      if (this.isSelf(a) || (a.ids && !a.ids.has(t.id)) || (a.plain && !this.isShared(t.id))) continue;
      if (only && !only.has(key)) continue;
      let s = a.per.get(t.id);
      if (!s) a.per.set(t.id, (s = { next: 0, failures: 0, conn: null, connecting: false }));
      if (s.conn || s.connecting || now < s.next) continue;
      s.connecting = true;
      void this.connectOut(t, key, a, s);
    }
  }

  private backoff(s: AddrState, downloaded: number): void {
    s.failures = downloaded > 0 ? 0 : s.failures + 1;
    s.next = Math.max(s.next, Date.now() + Math.min(30_000, 250 * 2 ** Math.min(s.failures, 7)));
  }

  private async connectOut(t: Torrent, key: string, a: Addr, s: AddrState): Promise<void> {
    let conn: Conn | null = null;
    try {
      let secured: Secured | null = null;
      if (!a.plain && this.channel) {
        try {
          secured = await this.channel.dial(a.host, a.port, this.o.handshakeTimeout);
        } catch (e) {
          this.backoff(s, 0);
          this.log('debug', 'swarm.connect_failed', { id: t.id, peer: key, error: (e as Error).message });
          return;
        }
        if (this.closed || t.closed) return void secured.socket.destroy();
      }
      const raw = secured?.socket ?? connect({ host: a.host, port: a.port, noDelay: true });
      conn = this.track(new Conn(raw, 'out', raw, secured?.reads));
      if (secured) {
        conn.node = secured.node;
        conn.peerKey = secured.key;
      }
      conn.addrKey = key;
      s.conn = conn;
      const c = conn;
      c.once('close', (why: string) => {
        if (s.conn === c) s.conn = null;
        this.backoff(s, c.downloaded);
        this.log('debug', 'swarm.closed', { id: t.id, peer: key, why });
        t.scheduleFill();
      });
      this.prepareWire(c, a.host, t.id);
      c.wire.handshake(t.id, this.peerId, { fast: true });
      const ih = await this.withTimeout(new Promise<string>((resolve) => c.wire.once('handshake', resolve)), c);
      if (ih !== t.id) return c.close(`handshake for other content ${ih}`);
      await this.accept(c, t);
    } catch (e) {
      conn?.close((e as Error).message);
    } finally {
      s.connecting = false;
    }
  }

  private prepareWire(conn: Conn, address: string, id: ContentId): void {
    conn.wire.extendedHandshake = {
      v: 'DelugeFS 0.1',
      reqq: 8192,
      dfs_req: MAX_REQUEST,
      ...(this.port ? { p: this.port } : {}),
      ...(this.opts.handshakeFields?.({ address: normalizeAddress(address), id }) ?? {}),
    };
  }

  private withTimeout<T>(p: Promise<T>, conn: Conn): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error('handshake timeout')), this.o.handshakeTimeout);
      const onClose = (): void => { clearTimeout(timer); reject(new Error(conn.closeReason || 'closed')); };
      conn.once('close', onClose);
      p.then((v) => { clearTimeout(timer); conn.off('close', onClose); resolve(v); },
        (e) => { clearTimeout(timer); conn.off('close', onClose); reject(e); });
    });
  }

  /** A new connection: its first bytes tell a member's TLS ClientHello from plaintext BitTorrent. */
  private onIncoming(socket: Socket): void {
    if (this.closed || this.failing(normalizeAddress(socket.remoteAddress)) || (this.incoming.size >= this.o.maxConnections && !this.evictPending())) {
      socket.destroy();
      return;
    }
    this.incoming.add(socket);
    this.pending.set(socket, normalizeAddress(socket.remoteAddress));
    const timer = setTimeout(() => socket.destroy(), this.o.handshakeTimeout);
    socket.once('close', () => {
      clearTimeout(timer);
      this.incoming.delete(socket);
      this.pending.delete(socket);
    });
    socket.on('error', () => socket.destroy());
    socket.once('data', (first: Buffer) => {
      socket.pause();
      clearTimeout(timer);
      void this.route(socket, first);
    });
  }

  /**
   * Full: ends the oldest unauthenticated connection of the address holding the most of them
   * (a flood from one address evicts itself, not a member's handshake). False if none is pending.
   */
  private evictPending(): boolean {
    const per = new Map<string, number>();
    for (const host of this.pending.values()) per.set(host, (per.get(host) ?? 0) + 1);
    let worst: string | null = null;
    for (const [host, n] of per) if (worst === null || n > per.get(worst)!) worst = host;
    for (const [s, host] of this.pending) {
      if (host !== worst) continue;
      this.pending.delete(s);
      this.evicted.add(s);
      s.destroy();
      return true;
    }
    return false;
  }

  /** True while an address is refused for failing too many handshakes (counts in this window). */
  private failing(host: string, fail = false): boolean {
    const now = Date.now();
    if (now - this.failureWindow >= FAILURE_WINDOW_MS) {
      this.failures.clear();
      this.failureWindow = now;
    }
    const n = (this.failures.get(host) ?? 0) + (fail ? 1 : 0);
    if (fail) this.failures.set(host, n);
    return n >= MAX_FAILURES;
  }

  private async route(socket: Socket, first: Buffer): Promise<void> {
    let conn: Conn;
    if (first[0] === TLS_HANDSHAKE_BYTE && this.channel) {
      let sec;
      try {
        sec = await this.channel.open(socket, 'in', this.o.handshakeTimeout, first);
      } catch (e) {
        this.log('debug', 'swarm.handshake_refused', { peer: `${normalizeAddress(socket.remoteAddress)}:${socket.remotePort}`, error: (e as Error).message });
        if (!this.evicted.has(socket)) this.failing(normalizeAddress(socket.remoteAddress), true);
        this.emit('refused', { address: normalizeAddress(socket.remoteAddress), port: socket.remotePort ?? 0, direction: 'in', peerId: '', id: '', handshake: {}, node: null } satisfies PeerInfo);
        return;
      }
      if (this.closed) return void sec.socket.destroy();
      this.pending.delete(socket); // a member: no longer evictable
      conn = this.track(new Conn(sec.socket, 'in', socket));
      conn.node = sec.node;
      conn.peerKey = sec.key;
    } else {
      socket.unshift(first);
      conn = this.track(new Conn(socket, 'in'));
      socket.resume();
    }
    void (async () => {
      try {
        const ih = await this.withTimeout(new Promise<string>((resolve) => conn.wire.once('handshake', resolve)), conn);
        // An outsider learns nothing about content not shared with it: no reply at all.
        if (!conn.node && !this.isShared(ih)) {
          this.emit('refused', { address: normalizeAddress(conn.remoteAddress), port: conn.remotePort, direction: 'in', peerId: conn.peerId ?? '', id: ih, handshake: {}, node: null } satisfies PeerInfo);
          this.failing(normalizeAddress(conn.remoteAddress), true);
          return conn.close(`plaintext peer asked for content not shared: ${ih}`);
        }
        this.pending.delete(socket);
        const t = isContentId(ih) ? await this.lookup(ih) : null;
        if (!t) return conn.close(`unknown content ${ih}`);
        this.prepareWire(conn, conn.remoteAddress, t.id);
        conn.wire.handshake(t.id, this.peerId, { fast: true });
        await this.accept(conn, t);
      } catch (e) {
        conn.close((e as Error).message);
      }
    })();
  }

  /** Content a peer asks for: open already, or complete in the store and known to `resolve`. */
  private async lookup(id: ContentId): Promise<Torrent | null> {
    const t = this.torrents.get(id) ?? (await this.opening.get(id));
    if (t) return t;
    if (!this.opts.resolve || !(await this.opts.store.has(id))) return null;
    const info = await this.opts.resolve(id);
    if (!info || infoHash(info) !== id) return null;
    return this.open(id, info);
  }

  /** After both handshakes: membership, bans, duplicates; then the content takes the connection. */
  private async accept(conn: Conn, t: Torrent): Promise<void> {
    const handshake = await this.withTimeout(conn.extHandshake, conn);
    conn.peerHandshake = handshake;
    const peerId = conn.peerId!;
    if (peerId === this.peerId) return conn.close('connected to self');
    if (this.bans.get(t.id)?.has(peerId)) return conn.close('banned');
    const info: PeerInfo = {
      address: normalizeAddress(conn.remoteAddress),
      port: conn.remotePort,
      direction: conn.direction,
      peerId,
      id: t.id,
      handshake,
      node: null,
    };
    info.node = conn.node;
    // Members proved their key in TLS; outsiders get only shared content (asked again here: the
    // outgoing side checked before connecting).
    const ok = conn.node !== null ? !conn.peerKey || this.channel?.check(conn.peerKey) === conn.node : this.isShared(t.id);
    if (!ok) {
      this.log('debug', 'swarm.not_admitted', { id: t.id, peer: `${info.address}:${info.port}` });
      this.emit('refused', info);
      return conn.close('not admitted');
    }
    if (conn.closed || t.closed) return conn.close('closed');
    // Two nodes fetching from each other may connect both ways: both keep the connection
    // opened by the smaller peer id, so exactly one survives.
    for (const other of t.conns) {
      if (other.peerId !== peerId || other.node !== conn.node) continue;
      const initiator = (c: Conn): string => (c.direction === 'out' ? this.peerId : peerId);
      if (initiator(conn) < initiator(other)) other.close('duplicate');
      else return conn.close('duplicate');
    }
    this.emit('peer', info);
    t.attach(conn);
  }

  private ban(t: Torrent, conn: Conn): void {
    if (conn.closed) return;
    let b = this.bans.get(t.id);
    if (!b) this.bans.set(t.id, (b = new Set()));
    if (conn.peerId) b.add(conn.peerId);
    if (conn.addrKey) {
      const s = this.addrs.get(conn.addrKey)?.per.get(t.id);
      if (s) s.next = Infinity;
    }
    this.log('warn', 'swarm.banned', { id: t.id, peer: `${conn.remoteAddress}:${conn.remotePort}`, node: conn.node, why: 'the sole sender of bad pieces, repeatedly' });
    conn.close('banned: bad data');
  }

  private tick(): void {
    const now = Date.now();
    for (const t of this.torrents.values()) {
      t.tick(now);
      void t.releaseIdleFd(now, this.opts.idleFdMs ?? IDLE_FD_MS);
      for (const c of t.conns) {
        if (c.outstanding.size && now - c.lastRecv > this.o.requestTimeout) {
          this.log('info', 'swarm.peer_silent', { id: t.id, peer: `${c.remoteAddress}:${c.remotePort}`, owed: c.outstanding.size, why: 'owes blocks and sent nothing within the request timeout; dropped' });
          c.close('request timeout');
        }
      }
      if (t.wanting) this.connectPeers(t);
      if (this.dht) this.dhtTick(t, now);
    }
  }

  /** Looks up wanted content nobody serves us yet (with backoff); re-announces held content. */
  private dhtTick(t: Torrent, now: number): void {
    if (t.wanting && t.conns.size === 0) {
      const l = this.lookups.get(t.id) ?? { next: 0, wait: 1000 };
      if (now >= l.next) {
        l.next = now + l.wait;
        l.wait = Math.min(60_000, l.wait * 2);
        void this.dht!.lookup(t.id);
      }
      this.lookups.set(t.id, l);
    } else this.lookups.delete(t.id);
    if (t.complete && now - (this.announced.get(t.id) ?? 0) > REANNOUNCE_MS) this.announce(t.id);
  }

  private announce(id: ContentId): void {
    if (!this.dht) return;
    this.announced.set(id, Date.now());
    this.unannounced.delete(id);
    void this.dht.announce(id, this.port).then((ok) => {
      // Nobody took it (no member nodes yet): again as soon as a node appears, or in a while.
      if (!ok && this.announced.has(id)) {
        this.unannounced.add(id);
        this.announced.set(id, Date.now() - REANNOUNCE_MS + 30_000);
      }
    });
  }

  /** A DHT node appeared: announces that found nobody and lookups that found nothing go again. */
  private onDhtNode(): void {
    for (const id of [...this.unannounced]) this.announce(id);
    for (const t of this.torrents.values()) {
      if (t.wanting && t.conns.size === 0) {
        this.lookups.set(t.id, { next: Date.now() + 1000, wait: 2000 });
        void this.dht!.lookup(t.id);
      }
    }
  }

  // ---- content -----------------------------------------------------------------------------

  private open(id: ContentId, info: Info): Promise<Torrent> {
    if (this.closed) return Promise.reject(new Error('swarm closed'));
    const have = this.torrents.get(id);
    if (have) return Promise.resolve(have);
    let p = this.opening.get(id);
    if (!p) {
      if (infoHash(info) !== id) return Promise.reject(new Error(`info does not match content id ${id}`));
      p = Torrent.open(id, info, this.ctx).then((t) => {
        this.torrents.set(id, t);
        t.on('progress', (e) => this.emit('progress', e));
        t.on('complete', (cid) => {
          this.announce(cid);
          this.emit('complete', cid);
        });
        if (!t.complete) warmVerifiers(info.pieceLength); // ready before the first piece arrives
        if (t.complete) this.announce(id);
        else if (this.dht) {
          this.lookups.set(id, { next: Date.now() + 1000, wait: 2000 });
          void this.dht.lookup(id);
        }
        return t;
      }).finally(() => this.opening.delete(id));
      this.opening.set(id, p);
    }
    return p;
  }

  /** Serves complete content from the store. */
  async seed(id: ContentId, info: Info): Promise<void> {
    if (!(await this.opts.store.has(id))) throw new Error(`${id}: not in the store`);
    await this.open(id, info);
  }

  /**
   * Fetches the whole content into the store (resuming a partial download); resolves when stored.
   * Waits for peers as long as it takes; `signal` gives up waiting (the download stays open).
   * `background`: replication's copy, held to `backgroundRate` unless someone else wants the
   * content too.
   */
  async fetch(id: ContentId, info: Info, signal?: AbortSignal, o: { background?: boolean; from?: string[] } = {}): Promise<void> {
    const t = await this.open(id, info);
    const release = this.hint(t, o.from ?? []);
    try {
      await t.fetchAll(signal, !!o.background);
    } finally {
      release();
    }
  }

  /**
   * Connects for `t` only to `from` (HOST:PORT of the peers said to hold it; known addresses
   * only, else everyone is asked) until the returned release, or until they give nothing for
   * HINT_GRACE_MS. A content already hinted keeps its hint.
   */
  private hint(t: Torrent, from: string[]): () => void {
    const keys = from.filter((k) => this.addrs.has(k));
    if (!keys.length || this.hints.has(t.id)) return () => {};
    const hint = new Set(keys);
    this.hints.set(t.id, hint);
    let got = t.downloaded;
    let grace: NodeJS.Timeout;
    const check = () => {
      if (this.hints.get(t.id) !== hint || t.closed) return;
      if (t.downloaded > got) {
        got = t.downloaded;
        grace = setTimeout(check, HINT_GRACE_MS).unref();
        return;
      }
      this.hints.delete(t.id); // nothing (more) from them: everyone may have it
      this.connectPeers(t);
    };
    grace = setTimeout(check, HINT_GRACE_MS).unref();
    return () => {
      clearTimeout(grace);
      if (this.hints.get(t.id) === hint) this.hints.delete(t.id);
    };
  }

  /**
   * Repairs stored content whose pieces `good` rejects (a scrub found them corrupt): the copy
   * leaves the store as a partial download that keeps its good pieces, and only the others are
   * fetched from peers (verified) before it is stored again. Resolves when stored.
   */
  async repair(id: ContentId, info: Info, good: (piece: number) => boolean, signal?: AbortSignal): Promise<void> {
    await this.drop(id); // nothing serves it from the store meanwhile
    const path = join(this.ctx.partialDir, id);
    const bits = new Bitfield(pieceCount(info));
    for (let i = 0; i < bits.size; i++) if (good(i)) bits.set(i);
    await mkdir(this.ctx.partialDir, { recursive: true, mode: 0o700 });
    // The bitfield first: a crash before the move leaves a bitfield without its file, which a
    // partial download ignores (it trusts no piece of a file it has to create).
    const fh = await open(`${path}.bits`, 'w', 0o600);
    try {
      await fh.writeFile(bits.bytes);
      await fh.sync(); // on the disk before the copy leaves the store: its good pieces stay trusted
    } finally {
      await fh.close();
    }
    if (!(await this.opts.store.take(id, path))) {
      await unlink(`${path}.bits`).catch(() => {});
      throw new Error(`${id} is not stored here`);
    }
    await this.fetch(id, info, signal);
  }

  /** Resolves once bytes [start, end) are verified and readable (see read()); fetches them first. */
  async fetchRange(id: ContentId, info: Info, start: number, end: number, signal?: AbortSignal): Promise<void> {
    const t = await this.open(id, info);
    await t.fetchRange(start, end, signal);
  }

  /** Bytes [start, end) of the content, fetched first if needed: into `into` when given (returned as a view of it). */
  async read(id: ContentId, info: Info, start: number, end: number, signal?: AbortSignal, into?: Buffer): Promise<Buffer> {
    const t = await this.open(id, info);
    await t.fetchRange(start, end, signal);
    return t.read(start, end, into);
  }

  /** True when the content is complete in the store. */
  have(id: ContentId): Promise<boolean> {
    return this.opts.store.has(id);
  }

  stats(id: ContentId): TorrentStats | null {
    return this.torrents.get(id)?.stats() ?? null;
  }

  /** Engine-wide numbers for status pages and metrics. */
  summary(): { port: number; dhtPort: number; peerId: string; active: number; fetching: number; connections: number; downloadRate: number; uploadRate: number; downloaded: number; uploaded: number } {
    let connections = 0, fetching = 0, downloadRate = 0, uploadRate = 0, downloaded = 0, uploaded = 0;
    for (const t of this.torrents.values()) {
      const st = t.stats();
      connections += st.peers;
      if (!st.complete) fetching++;
      downloadRate += st.downloadRate;
      uploadRate += st.uploadRate;
      downloaded += st.downloaded;
      uploaded += st.uploaded;
    }
    return { port: this.port, dhtPort: this.dht?.port ?? 0, peerId: this.peerId, active: this.torrents.size, fetching, connections, downloadRate, uploadRate, downloaded, uploaded };
  }

  /** Partial downloads left on disk (e.g. by a previous run): fetch() them again to resume. */
  async partials(): Promise<ContentId[]> {
    try {
      const names = await readdir(this.ctx.partialDir);
      return names.filter((n) => n.endsWith('.bits') && isContentId(n.slice(0, -5))).map((n) => n.slice(0, -5));
    } catch {
      return [];
    }
  }

  /** Content open in the swarm (serving or fetching). */
  active(): ContentId[] {
    return [...this.torrents.keys()];
  }

  /** Stops serving and fetching this content (a partial download stays on disk for later). */
  async drop(id: ContentId): Promise<void> {
    const t = this.torrents.get(id) ?? (await this.opening.get(id)?.catch(() => undefined));
    if (!t) return;
    this.torrents.delete(id);
    this.dropped.downloaded += t.downloaded;
    this.dropped.uploaded += t.uploaded;
    this.lookups.delete(id);
    this.announced.delete(id);
    this.unannounced.delete(id);
    for (const [key, a] of this.addrs) {
      a.per.delete(id);
      if (a.ids?.delete(id) && a.ids.size === 0) this.addrs.delete(key);
    }
    await t.close();
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    if (this.timer) clearInterval(this.timer);
    this.ctx.background?.close();
    await this.dht?.close();
    for (const s of this.incoming) s.destroy();
    for (const c of this.conns) c.close('shutting down');
    await Promise.allSettled([...this.opening.values()]);
    await Promise.all([...this.torrents.values()].map((t) => t.close()));
    this.torrents.clear();
    if (this.server) await new Promise<void>((r) => this.server!.close(() => r()));
  }
}

// One Swarm in its own process, driven over IPC by tests and the benchmark (child_process.fork).
// Messages: {seq, cmd, args} -> {seq, ok, result | error}; unsolicited {event, ...} for progress.
import { join } from 'node:path';
import { copyFile } from 'node:fs/promises';
import { createHash, createPrivateKey, createPublicKey, generateKeyPairSync, KeyObject } from 'node:crypto';
import { ContentStore } from '../../content/store.js';
import { hashFile, closeHashers } from '../../content/hasher.js';
import { decodeTorrent, encodeTorrent, infoHash } from '../../content/metainfo.js';
import { Swarm, SwarmOptions } from '../engine.js';
import { closeVerifiers } from '../verify.js';

let swarm: Swarm | null = null;
let store: ContentStore | null = null;
/** Info for content stored but not opened: handed to the engine through `resolve`. */
const known = new Map<string, import('../../content/metainfo.js').Info>();
/** Content shared with outsiders (plaintext peers): only what a test names. */
const shared = new Set<string>();
/** With `auth`: member name -> public key (SPKI PEM); revoke removes one. */
let members: Map<string, KeyObject> | null = null;
/** The engine's warn and error events (the last 1000), for tests to check what it reported. */
const events: { level: string; event: string; fields: Record<string, unknown> }[] = [];

function torrent(hex: string) {
  return decodeTorrent(Buffer.from(hex, 'hex'));
}

type Handler = (a: any) => Promise<unknown>;
const handlers: Record<string, Handler> = {
  /**
   * Engines are members of one test cluster over TLS by default (a fresh key each; any other key
   * is a member); `auth` names the key and the members; `plain` gives an engine without members
   * (plaintext only); `share` names content ids shared with outsiders.
   */
  async start(a: { root: string; port?: number; peers?: string[]; requestTimeout?: number; pipeline?: number; progress?: boolean; readAhead?: number;
    plain?: boolean; share?: string[]; plainPeers?: string[];
    auth?: { node: string; key: string; members: Record<string, string> }; dht?: { nodes?: string[] }; idleFdMs?: number; backgroundRate?: number }) {
    store = new ContentStore(join(a.root, 'content'), join(a.root, 'tmp'));
    await store.init();
    const opts: SwarmOptions = {
      store,
      host: '127.0.0.1',
      port: a.port ?? 0,
      peers: a.peers ?? [],
      log: (level, event, fields) => {
        if (process.env.SWARM_DEBUG) console.error(`[${process.pid} ${Date.now() % 100000}] ${level} ${event} ${JSON.stringify(fields)}`);
        if ((level === 'warn' || level === 'error') && events.push({ level, event, fields }) > 1000) events.shift();
      },
      requestTimeout: a.requestTimeout,
      pipeline: a.pipeline,
      readAhead: a.readAhead,
      handshakeTimeout: 5000,
      idleFdMs: a.idleFdMs,
      backgroundRate: a.backgroundRate,
    };
    opts.resolve = (id) => known.get(id);
    for (const id of a.share ?? []) shared.add(id);
    opts.shared = (id) => shared.has(id);
    if (a.dht) opts.dht = { ...a.dht, announceHost: '127.0.0.1' };
    if (a.auth) {
      // The cluster's rule in miniature: a member is a key in the table (cluster/wire-auth.ts).
      members = new Map(Object.entries(a.auth.members).map(([n, pem]) => [n, createPublicKey(pem)]));
      const key = createPrivateKey(a.auth.key);
      opts.secure = {
        key,
        verify: (pub) => {
          for (const [n, k] of members!) if (k.equals(pub)) return n;
          return null;
        },
      };
    } else if (!a.plain) {
      opts.secure = { key: generateKeyPairSync('ed25519').privateKey, verify: () => 'member' };
    }
    swarm = new Swarm(opts);
    for (const p of a.plainPeers ?? []) {
      const [host, port] = p.split(':');
      swarm.addPeer(host!, Number(port), { plain: true });
    }
    if (a.progress) swarm.on('progress', (e) => process.send!({ event: 'progress', ...e }));
    swarm.on('refused', (p) => process.send!({ event: 'refused', ...p, handshake: undefined }));
    swarm.on('peer', (p) => process.send!({ event: 'peer', ...p, handshake: undefined }));
    const port = await swarm.listen();
    return { port, peerId: swarm.peerId, dhtPort: swarm.dht?.port ?? 0 };
  },
  /** Hashes a file, copies it into the store, seeds it. */
  async add(a: { path: string; share?: boolean }) {
    const info = await hashFile(a.path);
    const id = infoHash(info);
    const tmp = store!.tempPath('add');
    await copyFile(a.path, tmp);
    await store!.put(tmp, id);
    if (a.share) shared.add(id);
    await swarm!.seed(id, info);
    return { id, torrent: encodeTorrent(info).toString('hex') };
  },
  /** Like add, but the engine is not told: a peer asking for it makes it open (resolve). */
  async store(a: { path: string }) {
    const info = await hashFile(a.path);
    const id = infoHash(info);
    const tmp = store!.tempPath('add');
    await copyFile(a.path, tmp);
    await store!.put(tmp, id);
    known.set(id, info);
    return { id, torrent: encodeTorrent(info).toString('hex') };
  },
  /** Open fds of this process (Linux), to see idle content give its file back. */
  async fds() {
    const { readdir } = await import('node:fs/promises');
    return (await readdir('/proc/self/fd')).length;
  },
  async active() {
    return swarm!.active();
  },
  async seed(a: { torrent: string }) {
    const { id, info } = torrent(a.torrent);
    await swarm!.seed(id, info);
    return { id };
  },
  async fetch(a: { torrent: string; background?: boolean; from?: string[] }) {
    const { id, info } = torrent(a.torrent);
    await swarm!.fetch(id, info, undefined, { background: a.background, from: a.from });
    return { path: store!.path(id) };
  },
  async read(a: { torrent: string; start: number; end: number }) {
    const { id, info } = torrent(a.torrent);
    const t0 = process.hrtime.bigint();
    const buf = await swarm!.read(id, info, a.start, a.end);
    const ms = Number(process.hrtime.bigint() - t0) / 1e6;
    return { sha1: createHash('sha1').update(buf).digest('hex'), length: buf.length, ms };
  },
  /**
   * Reads the whole content front to back in `chunk`-byte reads, `depth` at a time (what the
   * kernel's read-ahead asks of a FUSE mount), as a reader would: the engine's read path alone.
   */
  async seqRead(a: { torrent: string; chunk?: number; depth?: number; hash?: boolean }) {
    const { id, info } = torrent(a.torrent);
    const chunk = a.chunk ?? 128 * 1024;
    const depth = a.depth ?? 4;
    const t0 = process.hrtime.bigint();
    const hash = createHash('sha1');
    const inFlight: Promise<Buffer>[] = [];
    let next = 0;
    while (next < info.length || inFlight.length) {
      while (inFlight.length < depth && next < info.length) {
        const end = Math.min(info.length, next + chunk);
        inFlight.push(swarm!.read(id, info, next, end));
        next = end;
      }
      const buf = await inFlight.shift()!;
      if (a.hash !== false) hash.update(buf);
    }
    return { sha1: hash.digest('hex'), ms: Number(process.hrtime.bigint() - t0) / 1e6 };
  },
  /** Starts a read and gives up on it at once: resolves with how the read ended. */
  async readAbort(a: { torrent: string; start: number; end: number }) {
    const { id, info } = torrent(a.torrent);
    const ac = new AbortController();
    const p = swarm!.read(id, info, a.start, a.end, ac.signal);
    setImmediate(() => ac.abort(new Error('given up')));
    return p.then(() => ({ ended: 'resolved' }), (e: Error) => ({ ended: e.message }));
  },
  async addPeer(a: { host: string; port: number; plain?: boolean }) {
    swarm!.addPeer(a.host, a.port, { plain: a.plain });
    return {};
  },
  /** Shares content with outsiders from now on. */
  async share(a: { id: string }) {
    shared.add(a.id);
    return {};
  },
  /** Removes a member (auth) and lets the engine drop its connections, as a merged revocation does. */
  async revoke(a: { node: string }) {
    members?.delete(a.node);
    return { dropped: swarm!.revalidate() };
  },
  async stats(a: { id: string }) {
    return swarm!.stats(a.id);
  },
  async drop(a: { id: string }) {
    await swarm!.drop(a.id);
    return {};
  },
  async partials() {
    return swarm!.partials();
  },
  async summary() {
    return swarm!.summary();
  },
  async totals() {
    return swarm!.totals();
  },
  /** Waits until nothing is in flight for this content (benchmark: read-ahead settled). */
  async idle(a: { id: string }) {
    for (;;) {
      const st = swarm!.stats(a.id);
      if (!st || st.inFlight === 0) return {};
      await new Promise((r) => setTimeout(r, 20));
    }
  },
  async events() {
    return events;
  },
  async usage() {
    const u = process.cpuUsage();
    return { cpu: (u.user + u.system) / 1e6, user: u.user / 1e6, system: u.system / 1e6, dropped: (globalThis as { __dropped?: number }).__dropped ?? 0 };
  },
  async close() {
    await swarm?.close();
    await closeHashers();
    await closeVerifiers();
    setImmediate(() => process.exit(0));
    return {};
  },
};

process.on('message', (m: { seq: number; cmd: string; args: unknown }) => {
  const h = handlers[m.cmd];
  if (!h) return process.send!({ seq: m.seq, ok: false, error: `unknown command ${m.cmd}` });
  h(m.args).then(
    (result) => process.send!({ seq: m.seq, ok: true, result }),
    (e: Error) => process.send!({ seq: m.seq, ok: false, error: e.message }),
  );
});
process.on('disconnect', () => process.exit(0));

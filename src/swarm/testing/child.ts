// One Swarm in its own process, driven over IPC by tests and the benchmark (child_process.fork).
// Messages: {seq, cmd, args} -> {seq, ok, result | error}; unsolicited {event, ...} for progress.
import { join } from 'node:path';
import { copyFile } from 'node:fs/promises';
import { createHash, sign, verify } from 'node:crypto';
import { ContentStore } from '../../content/store.js';
import { hashFile, closeHashers } from '../../content/hasher.js';
import { decodeTorrent, encodeTorrent, infoHash } from '../../content/metainfo.js';
import { Swarm, SwarmOptions } from '../engine.js';
import { closeVerifiers } from '../verify.js';

let swarm: Swarm | null = null;
let store: ContentStore | null = null;
/** Info for content stored but not opened: handed to the engine through `resolve`. */
const known = new Map<string, import('../../content/metainfo.js').Info>();

function torrent(hex: string) {
  return decodeTorrent(Buffer.from(hex, 'hex'));
}

type Handler = (a: any) => Promise<unknown>;
const handlers: Record<string, Handler> = {
  async start(a: { root: string; port?: number; peers?: string[]; admitAll?: boolean; requestTimeout?: number; pipeline?: number; progress?: boolean; readAhead?: number; allow?: string[];
    auth?: { node: string; key: string; members: Record<string, string> }; dht?: { nodes?: string[] }; idleFdMs?: number }) {
    store = new ContentStore(join(a.root, 'content'), join(a.root, 'tmp'));
    await store.init();
    const opts: SwarmOptions = {
      store,
      host: '127.0.0.1',
      port: a.port ?? 0,
      peers: a.peers ?? [],
      log: process.env.SWARM_DEBUG ? (m) => console.error(`[${process.pid} ${Date.now() % 100000}] ${m}`) : undefined,
      requestTimeout: a.requestTimeout,
      pipeline: a.pipeline,
      readAhead: a.readAhead,
      handshakeTimeout: 5000,
      idleFdMs: a.idleFdMs,
    };
    if (a.admitAll) opts.admit = () => true;
    opts.resolve = (id) => known.get(id);
    if (a.dht) opts.dht = { ...a.dht, announceHost: '127.0.0.1' };
    if (a.auth) {
      // The cluster's scheme in miniature: ed25519 over (context, signer's nonce, verifier's nonce).
      const { node, key, members } = a.auth;
      const msg = (signer: Buffer, verifier: Buffer) => Buffer.concat([Buffer.from('test-wire\0'), signer, verifier]);
      opts.auth = {
        prove: (mine, theirs) => ({ node, sig: sign(null, msg(mine, theirs), key) }),
        verify: (p, mine, theirs) => (members[p.node] && verify(null, msg(theirs, mine), members[p.node]!, p.sig) ? p.node : null),
      };
    }
    swarm = new Swarm(opts);
    for (const addr of a.allow ?? ['127.0.0.1']) swarm.allowAddress(addr);
    if (a.progress) swarm.on('progress', (e) => process.send!({ event: 'progress', ...e }));
    swarm.on('refused', (p) => process.send!({ event: 'refused', ...p, handshake: undefined }));
    swarm.on('peer', (p) => process.send!({ event: 'peer', ...p, handshake: undefined }));
    const port = await swarm.listen();
    return { port, peerId: swarm.peerId, dhtPort: swarm.dht?.port ?? 0 };
  },
  /** Hashes a file, copies it into the store, seeds it. */
  async add(a: { path: string }) {
    const info = await hashFile(a.path);
    const id = infoHash(info);
    const tmp = store!.tempPath('add');
    await copyFile(a.path, tmp);
    await store!.put(tmp, id);
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
  async fetch(a: { torrent: string }) {
    const { id, info } = torrent(a.torrent);
    await swarm!.fetch(id, info);
    return { path: store!.path(id) };
  },
  async read(a: { torrent: string; start: number; end: number }) {
    const { id, info } = torrent(a.torrent);
    const t0 = process.hrtime.bigint();
    const buf = await swarm!.read(id, info, a.start, a.end);
    const ms = Number(process.hrtime.bigint() - t0) / 1e6;
    return { sha1: createHash('sha1').update(buf).digest('hex'), length: buf.length, ms };
  },
  /** Starts a read and gives up on it at once: resolves with how the read ended. */
  async readAbort(a: { torrent: string; start: number; end: number }) {
    const { id, info } = torrent(a.torrent);
    const ac = new AbortController();
    const p = swarm!.read(id, info, a.start, a.end, ac.signal);
    setImmediate(() => ac.abort(new Error('given up')));
    return p.then(() => ({ ended: 'resolved' }), (e: Error) => ({ ended: e.message }));
  },
  async addPeer(a: { host: string; port: number }) {
    swarm!.addPeer(a.host, a.port);
    return {};
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
  /** Waits until nothing is in flight for this content (benchmark: read-ahead settled). */
  async idle(a: { id: string }) {
    for (;;) {
      const st = swarm!.stats(a.id);
      if (!st || st.inFlight === 0) return {};
      await new Promise((r) => setTimeout(r, 20));
    }
  },
  async usage() {
    const u = process.cpuUsage();
    return { cpu: (u.user + u.system) / 1e6, user: u.user / 1e6, system: u.system / 1e6 };
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

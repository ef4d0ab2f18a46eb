// The member wire as an attacker sees it: real engines in child processes, attacked over
// loopback. A stranger reflecting a member's own proof back at it, a copy of a member's key, a
// revoked member, a relay between two members that reads and flips bytes, and a plaintext
// client asking for content that was never shared with outsiders.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { once } from 'node:events';
import { connect, createServer, Socket } from 'node:net';
import { createHash, generateKeyPairSync, randomBytes } from 'node:crypto';
import { startEngine, EngineProc } from './testing/harness.js';
import { handshake, message, probe, reader } from './testing/hostile.js';
import { encode, decode, isDict, BDict } from '../util/bencode.js';

const procs: EngineProc[] = [];
const dirs: string[] = [];
const relays: Array<() => Promise<void>> = [];
after(async () => {
  await Promise.all(relays.map((c) => c()));
  await Promise.all(procs.map((p) => p.stop(true)));
  await Promise.all(dirs.map((d) => rm(d, { recursive: true, force: true })));
});

const sha1 = (b: Buffer): string => createHash('sha1').update(b).digest('hex');

async function tmp(tag: string): Promise<string> {
  const d = await mkdtemp(join(tmpdir(), `dfs-wire-${tag}-`));
  dirs.push(d);
  return d;
}

async function engine(args: Record<string, unknown>): Promise<EngineProc> {
  const e = await startEngine(args);
  procs.push(e);
  return e;
}

function keys(node: string) {
  const { publicKey, privateKey } = generateKeyPairSync('ed25519');
  return { node, key: privateKey.export({ type: 'pkcs8', format: 'pem' }).toString(), pub: publicKey.export({ type: 'spki', format: 'pem' }).toString() };
}
type Keys = ReturnType<typeof keys>;
const auth = (k: Keys, members: Keys[]) => ({ node: k.node, key: k.key, members: Object.fromEntries(members.map((m) => [m.node, m.pub])) });

/** A BitTorrent handshake announcing the extension protocol (BEP 10) and the fast extension. */
function extHandshake(id: string): Buffer {
  const h = handshake(id);
  h[20 + 5]! |= 0x10;
  h[20 + 7]! |= 0x04;
  return h;
}
const extended = (ext: number, d: unknown): Buffer => message(20, Buffer.from([ext]), encode(d));

/**
 * The reflection attack on the old nonce/signature proof: two plaintext connections to one
 * member; each is given the nonce the member sent on the other, and then the proof the member
 * made on the other. Resolves with what the member sent that only members may get.
 */
function reflect(port: number, id: string): Promise<{ admitted: boolean; piece: boolean }> {
  return new Promise((resolve) => {
    const got = { admitted: false, piece: false };
    const conns: Array<{ s: Socket; nonce?: Buffer; authId?: number; proof?: Buffer }> = [];
    let closed = 0;
    const finish = (): void => {
      for (const c of conns) c.s.destroy();
      resolve(got);
    };
    const step = (): void => {
      const [a, b] = conns;
      if (!a || !b) return;
      // Both nonces seen: each connection gets the other's.
      if (a.nonce && b.nonce && !a.proof && !b.proof) {
        a.s.write(extended(0, { m: { dfs_auth: 1 }, dfs_nonce: b.nonce }));
        b.s.write(extended(0, { m: { dfs_auth: 1 }, dfs_nonce: a.nonce }));
        a.nonce = b.nonce = Buffer.alloc(0);
      }
      // Both proofs seen: each connection gets the other's.
      if (a.proof?.length && b.proof?.length && a.authId !== undefined && b.authId !== undefined) {
        a.s.write(message(20, Buffer.from([a.authId]), b.proof));
        b.s.write(message(20, Buffer.from([b.authId]), a.proof));
        a.proof = b.proof = Buffer.alloc(0);
      }
    };
    for (let i = 0; i < 2; i++) {
      const c: (typeof conns)[number] = { s: connect({ host: '127.0.0.1', port }) };
      conns.push(c);
      c.s.on('error', () => {});
      c.s.on('close', () => { if (++closed === 2) finish(); });
      c.s.on('connect', () => c.s.write(extHandshake(id)));
      reader(c.s, () => {}, (mid, body) => {
        if (mid === 20 && body[0] === 0) {
          const d = decode(body.subarray(1));
          if (!isDict(d)) return;
          const n = d.dfs_nonce;
          const m = d.m as BDict | undefined;
          if (Buffer.isBuffer(n)) c.nonce = n;
          if (m && typeof m.dfs_auth === 'number') c.authId = m.dfs_auth;
          step();
        } else if (mid === 20 && body[0] === 1) {
          c.proof = body.subarray(1);
          step();
        } else if (mid === 1 || mid === 5 || mid === 14) {
          // unchoke, bitfield, have-all: admitted as a member; ask for a block.
          if (!got.admitted) c.s.write(Buffer.concat([message(2), message(6, 0, 0, 16384)]));
          got.admitted = true;
        } else if (mid === 7) {
          got.piece = true;
          finish();
        }
      });
    }
  });
}

test('reflecting a member its own proof over two connections gets a stranger nothing', { timeout: 60_000 }, async () => {
  const dir = await tmp('reflect');
  const data = randomBytes(1024 * 1024);
  await writeFile(join(dir, 'f'), data);
  const [ka, kb] = [keys('node-a'), keys('node-b')];
  const a = await engine({ root: join(dir, 'a'), auth: auth(ka, [ka, kb]) });
  const { id } = await a.call('add', { path: join(dir, 'f') });
  const r = await reflect(a.port, id);
  assert.deepEqual(r, { admitted: false, piece: false });
});

test('a peer holding our own node key is refused, both ways', { timeout: 60_000 }, async () => {
  const dir = await tmp('self');
  const data = randomBytes(1024 * 1024);
  await writeFile(join(dir, 'f'), data);
  const [ka, kb] = [keys('node-a'), keys('node-b')];
  const a = await engine({ root: join(dir, 'a'), auth: auth(ka, [ka, kb]) });
  const { id, torrent } = await a.call('add', { path: join(dir, 'f') });
  // A copy of a's key (a cloned root, or a stolen key file used to pose as a) fetching from a.
  const twin = await engine({ root: join(dir, 'twin'), auth: auth(ka, [ka, kb]), peers: [`127.0.0.1:${a.port}`] });
  const refused = once(a, 'refused');
  void twin.call('fetch', { torrent }).catch(() => {});
  await refused;
  assert.equal((await twin.call('stats', { id })).downloaded, 0);
  assert.equal((await a.call('stats', { id })).uploaded, 0);
});

test('a revoked member is refused, and its open connections are dropped when the revocation arrives', { timeout: 60_000 }, async () => {
  const dir = await tmp('revoke');
  const data = randomBytes(4 * 1024 * 1024);
  await writeFile(join(dir, 'f'), data);
  const [ka, kb] = [keys('node-a'), keys('node-b')];
  const a = await engine({ root: join(dir, 'a'), auth: auth(ka, [ka, kb]) });
  const { id, torrent } = await a.call('add', { path: join(dir, 'f') });
  const b = await engine({ root: join(dir, 'b'), auth: auth(kb, [ka, kb]), peers: [`127.0.0.1:${a.port}`], readAhead: 1 });
  const r = await b.call('read', { torrent, start: 0, end: 1000 });
  assert.equal(r.sha1, sha1(data.subarray(0, 1000)));
  assert.equal((await a.call('stats', { id })).peers, 1);
  const refused = once(a, 'refused'); // b still wants the rest: it reconnects at once
  const { dropped } = await a.call('revoke', { node: 'node-b' });
  assert.equal(dropped, 1);
  const after = await a.call('stats', { id });
  assert.equal(after.peers, 0);
  const [ev] = await refused;
  assert.equal(ev.node, null);
  assert.equal((await a.call('stats', { id })).uploaded, after.uploaded, 'nothing served after the revocation');
});

/**
 * A TCP relay in front of `port` that records both directions and can flip one byte A -> B;
 * `tamperedEnded` counts connections that carried a flipped byte and then ended (either side).
 */
async function relay(port: number, flipAt = -1): Promise<{ port: number; seen: Buffer[]; tamperedEnded: number; flipped: boolean; close: () => Promise<void> }> {
  const r = { port: 0, seen: [] as Buffer[], tamperedEnded: 0, flipped: false, close: async () => {} };
  const socks = new Set<Socket>();
  const server = createServer((b) => {
    const a = connect({ host: '127.0.0.1', port });
    socks.add(a).add(b);
    let fromA = 0;
    let tampered = false;
    a.on('data', (d: Buffer) => {
      if (!r.flipped && flipAt >= 0 && fromA + d.length > flipAt) {
        d = Buffer.from(d);
        d[flipAt - fromA]! ^= 0x01;
        r.flipped = tampered = true;
      }
      fromA += d.length;
      r.seen.push(Buffer.from(d));
      b.write(d);
    });
    b.on('data', (d: Buffer) => { r.seen.push(Buffer.from(d)); a.write(d); });
    let ended = false;
    const end = (): void => {
      if (!ended && tampered) r.tamperedEnded++;
      ended = true;
      a.destroy();
      b.destroy();
    };
    b.on('close', end);
    a.on('close', end);
    a.on('error', end);
    b.on('error', end);
  });
  await new Promise<void>((res) => server.listen(0, '127.0.0.1', () => res()));
  r.port = (server.address() as { port: number }).port;
  let closed: Promise<void> | null = null;
  r.close = () => (closed ??= (async () => {
    for (const s of socks) s.destroy();
    await new Promise<void>((res) => server.close(() => res()));
  })());
  relays.push(r.close);
  return r;
}

test('a relay between two members reads no content and cannot inject', { timeout: 60_000 }, async () => {
  const dir = await tmp('mitm');
  const data = randomBytes(6 * 1024 * 1024);
  await writeFile(join(dir, 'f'), data);
  const a = await engine({ root: join(dir, 'a') });
  const { id, torrent } = await a.call('add', { path: join(dir, 'f') });
  // Reading: every 64 KiB of the content, 32 bytes of it, must not be on the wire.
  const spy = await relay(a.port);
  const b = await engine({ root: join(dir, 'b'), peers: [`127.0.0.1:${spy.port}`] });
  const { path } = await b.call('fetch', { torrent });
  assert.equal(path.length > 0, true);
  const wire = Buffer.concat(spy.seen);
  assert.ok(wire.length > data.length, `the content went through the relay (${wire.length} bytes)`);
  for (let off = 0; off + 32 <= data.length; off += 64 * 1024) {
    assert.equal(wire.indexOf(data.subarray(off, off + 32)), -1, `content at ${off} is readable on the wire`);
  }
  await spy.close();
  // Injecting: one bit flipped 2 MiB into the stream from a to c ends that connection (the TLS
  // record's tag fails); nothing tampered reaches piece verification, and the fetch finishes over
  // a new connection.
  const mitm = await relay(a.port, 2 * 1024 * 1024);
  const c = await engine({ root: join(dir, 'c'), peers: [`127.0.0.1:${mitm.port}`] });
  const r = await c.call('read', { torrent, start: 0, end: data.length });
  assert.equal(r.sha1, sha1(data));
  assert.equal(mitm.flipped, true);
  assert.equal(mitm.tamperedEnded, 1, 'the connection that carried the flipped byte ended');
  assert.equal((await c.call('stats', { id })).badPieces, 0, 'no tampered byte reached verification');
  await mitm.close();
});

test('a plaintext peer gets shared content only; other content, held or not, gets no reply', { timeout: 60_000 }, async () => {
  const dir = await tmp('plain');
  await writeFile(join(dir, 'pub'), randomBytes(512 * 1024));
  await writeFile(join(dir, 'priv'), randomBytes(512 * 1024));
  await writeFile(join(dir, 'stored'), randomBytes(512 * 1024));
  const a = await engine({ root: join(dir, 'a') });
  const pub = await a.call('add', { path: join(dir, 'pub'), share: true });
  const priv = await a.call('add', { path: join(dir, 'priv') });
  const stored = await a.call('store', { path: join(dir, 'stored') });
  // An out-of-range request ends an admitted connection, so the probe sees how far it got.
  const bad = [message(2), message(6, 9999, 0, 16384)];
  assert.deepEqual(await probe(a.port, handshake(pub.id), bad), { handshook: true, unchoked: true });
  assert.deepEqual(await probe(a.port, handshake(priv.id), bad), { handshook: false, unchoked: false });
  assert.deepEqual(await probe(a.port, handshake(stored.id), bad), { handshook: false, unchoked: false });
  // A TLS record that is no ClientHello: refused, the engine carries on.
  assert.deepEqual(await probe(a.port, Buffer.concat([Buffer.from([0x16, 3, 1, 0, 40]), randomBytes(40)]), []), { handshook: false, unchoked: false });
  // A plaintext fetcher (no members) for the private content is never answered; the public one is.
  const o = await engine({ root: join(dir, 'o'), plain: true, share: [pub.id, priv.id], peers: [`127.0.0.1:${a.port}`] });
  const r = await o.call('fetch', { torrent: pub.torrent });
  assert.ok(r.path);
  const refused = once(a, 'refused');
  void o.call('fetch', { torrent: priv.torrent }).catch(() => {});
  const [ev] = await refused;
  assert.equal(ev.id, priv.id);
  assert.equal((await a.call('stats', { id: priv.id })).uploaded, 0);
});

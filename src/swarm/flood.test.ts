// Strangers against the listener, real engines on loopback: one holding every connection slot
// (sockets that send nothing, or one byte of a ClientHello, opened again as soon as one closes)
// must not lock members out; one replaying a canned ClientHello (costing it nothing, and us a key
// exchange and a signature each) is soon refused at accept, while members still get in.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile, copyFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { connect, createServer, Socket } from 'node:net';
import { connect as tlsConnect } from 'node:tls';
import { ALPN } from './secure.js';
import { generateKeyPairSync, randomBytes, KeyObject } from 'node:crypto';
import { ContentStore } from '../content/store.js';
import { hashFile, closeHashers } from '../content/hasher.js';
import { infoHash } from '../content/metainfo.js';
import { Swarm } from './engine.js';
import { closeVerifiers } from './verify.js';

const dirs: string[] = [];
const swarms: Swarm[] = [];
after(async () => {
  await Promise.all(swarms.map((s) => s.close()));
  await Promise.all(dirs.map((d) => rm(d, { recursive: true, force: true })));
  await closeHashers();
  await closeVerifiers();
});

async function seeded(A: { swarm: Swarm; store: ContentStore }, root: string): Promise<{ id: string; info: Awaited<ReturnType<typeof hashFile>> }> {
  const file = join(root, 'file');
  await writeFile(file, randomBytes(200_000));
  const info = await hashFile(file);
  const id = infoHash(info);
  const tmp = A.store.tempPath('add');
  await copyFile(file, tmp);
  await A.store.put(tmp, id);
  await A.swarm.seed(id, info);
  return { id, info };
}

async function engine(root: string, own: KeyObject, member: KeyObject): Promise<{ swarm: Swarm; store: ContentStore }> {
  const store = new ContentStore(join(root, 'content'), join(root, 'tmp'));
  await store.init();
  // Slots hold long (a minute) so only eviction, not the handshake timeout, can free one.
  const swarm = new Swarm({ store, host: '127.0.0.1', port: 0, maxConnections: 20, handshakeTimeout: 60_000, secure: { key: own, verify: (k) => (k.equals(member) ? 'member' : null) } });
  swarms.push(swarm);
  await swarm.listen();
  return { swarm, store };
}

test('a stranger holding every connection slot does not keep a member out', { timeout: 60_000 }, async () => {
  const root = await mkdtemp(join(tmpdir(), 'dfs-flood-'));
  dirs.push(root);
  const a = generateKeyPairSync('ed25519'), b = generateKeyPairSync('ed25519');
  const A = await engine(join(root, 'a'), a.privateKey, b.publicKey);
  const { id, info } = await seeded(A, root);

  let stop = false;
  const held = new Set<Socket>();
  const hold = (i: number): void => {
    if (stop) return;
    const s = connect(A.swarm.port, '127.0.0.1');
    held.add(s);
    s.on('error', () => {});
    if (i % 2) s.on('connect', () => s.write(Buffer.from([0x16])));
    s.on('close', () => { held.delete(s); setTimeout(() => hold(i), 20); });
  };
  for (let i = 0; i < 30; i++) hold(i);
  await new Promise((r) => setTimeout(r, 500));

  const B = await engine(join(root, 'b'), b.privateKey, a.publicKey);
  B.swarm.addPeer('127.0.0.1', A.swarm.port);
  const give = new AbortController();
  const timer = setTimeout(() => give.abort(), 20_000);
  try {
    await B.swarm.fetch(id, info, give.signal);
  } catch (e) {
    assert.fail(`the member could not fetch while a stranger held the slots: ${(e as Error).message}`);
  } finally {
    clearTimeout(timer);
    stop = true;
    for (const s of held) s.destroy();
  }
  assert.equal(await B.store.has(id), true);
});

/** The first flight of a TLS 1.3 client offering our ALPN, as sent on the wire. */
function clientHello(): Promise<Buffer> {
  return new Promise((resolve) => {
    const srv = createServer((c) => c.once('data', (d: Buffer) => { resolve(d); c.destroy(); srv.close(); }));
    srv.listen(0, '127.0.0.1', () => {
      const t = tlsConnect({ host: '127.0.0.1', port: (srv.address() as { port: number }).port, rejectUnauthorized: false, ALPNProtocols: [ALPN], minVersion: 'TLSv1.3' });
      t.on('error', () => {});
    });
  });
}

/** Sends `hello` from `from` and says whether the engine answered (a ServerHello) at all. */
function answered(port: number, from: string, hello: Buffer): Promise<boolean> {
  return new Promise((resolve) => {
    let got = false;
    const s = connect({ port, host: '127.0.0.1', localAddress: from }, () => s.write(hello));
    s.on('data', () => { got = true; s.destroy(); });
    s.on('error', () => {});
    s.on('close', () => resolve(got));
  });
}

test('an address replaying a ClientHello is refused at accept; members elsewhere still get in', { timeout: 60_000 }, async () => {
  const root = await mkdtemp(join(tmpdir(), 'dfs-replay-'));
  dirs.push(root);
  const a = generateKeyPairSync('ed25519'), b = generateKeyPairSync('ed25519');
  const A = await engine(join(root, 'a'), a.privateKey, b.publicKey);
  const { id, info } = await seeded(A, root);
  const hello = await clientHello();
  let replies = 0;
  const tries = 300;
  for (let i = 0; i < tries; i++) if (await answered(A.swarm.port, '127.0.0.2', hello)) replies++;
  // 64 failures per 10 s window: even a window rolling over mid-run leaves most unanswered.
  assert.ok(replies < tries / 2, `the engine answered ${replies} of ${tries} replayed ClientHellos from one address`);
  assert.equal(await answered(A.swarm.port, '127.0.0.2', hello), false, 'the flooding address is still answered');

  const B = await engine(join(root, 'b'), b.privateKey, a.publicKey);
  B.swarm.addPeer('127.0.0.1', A.swarm.port);
  const give = new AbortController();
  const timer = setTimeout(() => give.abort(), 20_000);
  try {
    await B.swarm.fetch(id, info, give.signal);
  } finally {
    clearTimeout(timer);
  }
  assert.equal(await B.store.has(id), true);
});

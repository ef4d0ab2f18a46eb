// A stranger holding the listener's connection slots (sockets that send nothing, or one byte of
// a ClientHello and then nothing, opened again as soon as one is closed) must not lock members
// out: a member's handshake still gets in and the member fetches. Real engines on loopback.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile, copyFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { connect, Socket } from 'node:net';
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
  const file = join(root, 'file');
  await writeFile(file, randomBytes(200_000));
  const info = await hashFile(file);
  const id = infoHash(info);
  const tmp = A.store.tempPath('add');
  await copyFile(file, tmp);
  await A.store.put(tmp, id);
  await A.swarm.seed(id, info);

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

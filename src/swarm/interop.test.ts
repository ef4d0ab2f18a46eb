// Interoperability with a client no one here wrote: Debian's python3-libtorrent, over loopback
// (no DHT, LSD, UPnP, NAT-PMP; bound to 127.0.0.1). Both directions, verified byte for byte.
// libtorrent is an outsider (plaintext): it gets content only because each test shares it.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile, readFile, mkdir } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createHash, randomBytes } from 'node:crypto';
import { startEngine, EngineProc } from './testing/harness.js';
import { haveLibtorrent, startLt, LtPeer } from './testing/libtorrent.js';

const sha1 = (b: Buffer): string => createHash('sha1').update(b).digest('hex');
const skip = haveLibtorrent() ? false : 'python3-libtorrent is not installed (apt-get install python3-libtorrent)';
const cleanup: Array<() => Promise<unknown>> = [];
after(async () => {
  for (const c of cleanup.reverse()) await c().catch(() => {});
});

async function setup(tag: string): Promise<{ dir: string; data: Buffer }> {
  const dir = await mkdtemp(join(tmpdir(), `dfs-lt-${tag}-`));
  cleanup.push(() => rm(dir, { recursive: true, force: true }));
  const data = randomBytes(24 * 1024 * 1024 + 4321);
  await writeFile(join(dir, 'f'), data);
  return { dir, data };
}

test('libtorrent downloads from our engine', { skip }, async () => {
  const { dir, data } = await setup('up');
  // A member engine (TLS for members) serving shared content to an outsider.
  const e: EngineProc = await startEngine({ root: join(dir, 'e') });
  cleanup.push(() => e.stop(true));
  const { torrent } = await e.call('add', { path: join(dir, 'f'), share: true });
  await writeFile(join(dir, 't.torrent'), Buffer.from(torrent, 'hex'));
  await mkdir(join(dir, 'lt'));
  const lt: LtPeer = await startLt(join(dir, 't.torrent'), join(dir, 'lt'), [`127.0.0.1:${e.port}`]);
  cleanup.push(() => lt.stop());
  await lt.next('done');
  assert.equal(sha1(await readFile(join(dir, 'lt', 'content'))), sha1(data));
  await lt.stop();
  await e.stop();
});

test('our engine downloads from libtorrent (whole and a range)', { skip }, async () => {
  const { dir, data } = await setup('down');
  // libtorrent seeds the file under the fixed info name "content".
  const s: EngineProc = await startEngine({ root: join(dir, 's') });
  cleanup.push(() => s.stop(true));
  const { id, torrent } = await s.call('add', { path: join(dir, 'f') });
  await s.stop();
  await writeFile(join(dir, 't.torrent'), Buffer.from(torrent, 'hex'));
  await mkdir(join(dir, 'lt'));
  await writeFile(join(dir, 'lt', 'content'), data);
  const lt = await startLt(join(dir, 't.torrent'), join(dir, 'lt'));
  cleanup.push(() => lt.stop());
  await lt.next('done'); // checked and seeding
  // A member engine fetching shared content from an outsider's address (plaintext).
  const e = await startEngine({ root: join(dir, 'e'), plainPeers: [`127.0.0.1:${lt.port}`], share: [id], readAhead: 1 });
  cleanup.push(() => e.stop(true));
  const r = await e.call('read', { torrent, start: 10_000_000, end: 11_000_000 });
  assert.equal(r.sha1, sha1(data.subarray(10_000_000, 11_000_000)));
  const { path } = await e.call('fetch', { torrent });
  assert.equal(sha1(await readFile(path)), sha1(data));
  await e.stop();
  await lt.stop();
});

test('DHT interop: libtorrent finds our engine through our DHT node, and we find libtorrent through its', { skip }, async () => {
  const { dir, data } = await setup('dht');
  // Ours seeds and announces; libtorrent knows only our DHT node.
  // Engines without members: DHT peers are outsiders, spoken to in plaintext about shared content.
  const e = await startEngine({ root: join(dir, 'e'), plain: true, dht: {} });
  cleanup.push(() => e.stop(true));
  const { id, torrent } = await e.call('add', { path: join(dir, 'f'), share: true });
  await writeFile(join(dir, 't.torrent'), Buffer.from(torrent, 'hex'));
  await mkdir(join(dir, 'lt'));
  const lt = await startLt(join(dir, 't.torrent'), join(dir, 'lt'), [], false, [`127.0.0.1:${e.dhtPort}`]);
  cleanup.push(() => lt.stop());
  await lt.next('done');
  assert.equal(sha1(await readFile(join(dir, 'lt', 'content'))), sha1(data));
  await e.stop();
  // libtorrent (now a seeder, DHT on its listen port) announces; a new engine knows only its DHT node.
  const f = await startEngine({ root: join(dir, 'f2'), plain: true, share: [id], dht: { nodes: [`127.0.0.1:${lt.port}`] } });
  cleanup.push(() => f.stop(true));
  const { path } = await f.call('fetch', { torrent });
  assert.equal(sha1(await readFile(path)), sha1(data));
  await f.stop();
  await lt.stop();
});

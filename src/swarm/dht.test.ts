// The private DHT: a node that knows only another member's DHT address finds who holds content
// and fetches it. Nothing but loopback, no public bootstrap nodes.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile, readFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createHash, randomBytes } from 'node:crypto';
import { startEngine, EngineProc } from './testing/harness.js';
import { SwarmDht } from './dht.js';

const procs: EngineProc[] = [];
let dir = '';
after(async () => {
  await Promise.all(procs.map((p) => p.stop(true)));
  if (dir) await rm(dir, { recursive: true, force: true });
});

test('the DHT never gets public bootstrap nodes', async () => {
  const d = new SwarmDht({ host: '127.0.0.1', port: 0 }, () => {});
  await d.listen();
  assert.deepEqual((d as any).dht._rpc.bootstrap, []);
  await d.close();
});

test('content is found through the DHT of cluster members and fetched', async () => {
  dir = await mkdtemp(join(tmpdir(), 'dfs-dht-'));
  const data = randomBytes(5 * 1024 * 1024 + 3);
  await writeFile(join(dir, 'f'), data);
  const a = await startEngine({ root: join(dir, 'a'), dht: {} });
  procs.push(a);
  const { torrent } = await a.call('add', { path: join(dir, 'f') });
  // b knows a's DHT node only, not its BitTorrent port.
  const b = await startEngine({ root: join(dir, 'b'), dht: { nodes: [`127.0.0.1:${a.dhtPort}`] } });
  procs.push(b);
  const { path } = await b.call('fetch', { torrent });
  assert.equal(createHash('sha1').update(await readFile(path)).digest('hex'), createHash('sha1').update(data).digest('hex'));
  // and now c, which knows only b, finds both
  const c = await startEngine({ root: join(dir, 'c'), dht: { nodes: [`127.0.0.1:${b.dhtPort}`] } });
  procs.push(c);
  const r = await c.call('read', { torrent, start: 0, end: 1000 });
  assert.equal(r.sha1, createHash('sha1').update(data.subarray(0, 1000)).digest('hex'));
  await Promise.all([a.stop(), b.stop(), c.stop()]);
});

// A fetch told who holds the content (replication knows) connects to those peers only; one whose
// hint is wrong asks everyone after a short grace and still completes.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { startEngine, EngineProc } from './testing/harness.js';

const procs: EngineProc[] = [];
let dir = '';
after(async () => {
  await Promise.all(procs.map((p) => p.stop(true)));
  if (dir) await rm(dir, { recursive: true, force: true });
});

test('a hinted fetch connects to the holders only; a wrong hint falls back to everyone', { timeout: 60_000 }, async () => {
  dir = await mkdtemp(join(tmpdir(), 'dfs-hints-'));
  const data = randomBytes(2 * 1024 * 1024);
  await writeFile(join(dir, 'f'), data);
  const start = async (name: string, peers: string[] = []) => {
    const e = await startEngine({ root: join(dir, name), peers });
    procs.push(e);
    return e;
  };
  const holder = await start('holder');
  const { torrent } = await holder.call<{ torrent: string }>('add', { path: join(dir, 'f') });
  const empty = [await start('empty1'), await start('empty2')];
  const at = (e: EngineProc) => `127.0.0.1:${e.port}`;
  const all = [holder, ...empty].map(at);
  // Connections each engine made or took since it started (open ones close once nothing is left to trade).
  const conns = async (e: EngineProc) => (await e.call<{ opened: number }>('totals', {})).opened;

  const hinted = await start('hinted', all);
  const r = await hinted.call<{ path: string }>('fetch', { torrent, from: [at(holder)] });
  assert.ok((await readFile(r.path)).equals(data));
  for (const e of empty) assert.equal(await conns(e), 0, 'a peer without the content was never connected to');

  // Hinted at a peer that has nothing: after the grace, everyone; the holder serves it.
  const wrong = await start('wrong', all);
  const t0 = Date.now();
  const w = await wrong.call<{ path: string }>('fetch', { torrent, from: [at(empty[0]!)] });
  assert.ok((await readFile(w.path)).equals(data));
  assert.ok(Date.now() - t0 >= 2500, 'waited for the hinted peer first');

  // Unhinted: every known peer is connected to, as before.
  const plain = await start('plain', all);
  await plain.call('fetch', { torrent });
  assert.ok((await conns(empty[1]!)) >= 1, 'an unhinted fetch asks everyone');
});

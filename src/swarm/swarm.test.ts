// Engines in separate processes over loopback: whole and range fetches, several sources,
// restart-resume, large sparse content. Pass/fail never depends on timing.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile, open, mkdir, readFile, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createHash } from 'node:crypto';
import { startEngine, EngineProc } from './testing/harness.js';
import { decodeTorrent } from '../content/metainfo.js';
import { directDir, resident } from './testing/page-cache.js';

const dirs: string[] = [];
const procs: EngineProc[] = [];
after(async () => {
  await Promise.all(procs.map((p) => p.stop(true)));
  await Promise.all(dirs.map((d) => rm(d, { recursive: true, force: true })));
});

async function tmp(tag: string): Promise<string> {
  const d = await mkdtemp(join(tmpdir(), `dfs-swarm-${tag}-`));
  dirs.push(d);
  return d;
}

async function engine(args: Record<string, unknown>): Promise<EngineProc> {
  const e = await startEngine(args);
  procs.push(e);
  return e;
}

const sha1 = (b: Buffer): string => createHash('sha1').update(b).digest('hex');

/** Deterministic pseudo-random content (fast to make, differs per seed). */
function content(size: number, seed: number): Buffer {
  const b = Buffer.allocUnsafe(size);
  let x = seed * 2654435761 >>> 0 || 1;
  for (let i = 0; i + 4 <= size; i += 4) {
    x ^= x << 13; x >>>= 0; x ^= x >>> 17; x ^= x << 5; x >>>= 0;
    b.writeUInt32LE(x, i);
  }
  for (let i = size - (size % 4); i < size; i++) b[i] = i & 0xff;
  return b;
}

test('whole-file and range fetches between two engines', async () => {
  const dir = await tmp('two');
  const data = content(48 * 1024 * 1024 + 12345, 1);
  const file = join(dir, 'f');
  await writeFile(file, data);
  const a = await engine({ root: join(dir, 'a') });
  const { id, torrent } = await a.call('add', { path: file });
  const b = await engine({ root: join(dir, 'b'), peers: [`127.0.0.1:${a.port}`] });
  // A range in the middle first, then one crossing a piece boundary, then all of it.
  const { pieceLength } = decodeTorrent(Buffer.from(torrent, 'hex')).info;
  for (const [s, e] of [[20_000_000, 21_000_000], [pieceLength - 100, pieceLength + 100], [data.length - 7, data.length]] as const) {
    const r = await b.call('read', { torrent, start: s, end: e });
    assert.equal(r.sha1, sha1(data.subarray(s, e)), `range ${s}-${e}`);
  }
  const { path } = await b.call('fetch', { torrent });
  assert.equal(sha1(await readFile(path)), sha1(data));
  const st = await b.call('stats', { id });
  assert.equal(st.bytesLeft, 0);
  assert.equal(st.complete, true);
  const sum = await b.call('summary');
  assert.equal(sum.active, 1);
  assert.equal(sum.fetching, 0);
  assert.ok(sum.downloaded >= data.length);
  await Promise.all([a.stop(), b.stop()]);
});

test('a copy nobody reads bypasses the page cache on the fetching disk', async () => {
  const dir = await directDir();
  dirs.push(dir);
  const data = content(32 * 1024 * 1024, 7);
  const file = join(dir, 'f');
  await writeFile(file, data);
  const a = await engine({ root: join(dir, 'a') });
  const { torrent } = await a.call('add', { path: file });
  const b = await engine({ root: join(dir, 'b'), peers: [`127.0.0.1:${a.port}`] });
  const { path } = await b.call('fetch', { torrent });
  const copied = await resident(path);
  assert.ok(copied < data.length / 8, `a replication-style copy left ${copied} of ${data.length} bytes in the page cache`);
  assert.equal(sha1(await readFile(path)), sha1(data));
});

test('a reader takes its pieces from memory as they are verified; they go to disk past the page cache', async () => {
  const dir = await directDir();
  dirs.push(dir);
  const data = content(24 * 1024 * 1024, 11);
  const file = join(dir, 'f');
  await writeFile(file, data);
  const a = await engine({ root: join(dir, 'a') });
  const { torrent } = await a.call('add', { path: file });
  const b = await engine({ root: join(dir, 'b'), peers: [`127.0.0.1:${a.port}`] });
  // A sequential reader in 1 MiB steps, each read starting 100 bytes past a piece boundary so
  // that most reads take parts of two pieces (one in memory, one on disk, or both in memory).
  const step = 1024 * 1024;
  for (let s = 100; s < data.length; s += step) {
    const e = Math.min(data.length, s + step);
    const r = await b.call('read', { torrent, start: s, end: e });
    assert.equal(r.sha1, sha1(data.subarray(s, e)), `range ${s}-${e}`);
  }
  const { path } = await b.call('fetch', { torrent });
  const cached = await resident(path);
  assert.ok(cached < data.length / 8, `a reader's pieces left ${cached} of ${data.length} bytes in the page cache`);
  assert.equal(sha1(await readFile(path)), sha1(data));
});

test('a sequential reader keeps its own read-ahead: nothing is cancelled, every byte arrives once', async () => {
  const dir = await tmp('seq');
  const data = content(96 * 1024 * 1024, 7);
  const file = join(dir, 'f');
  await writeFile(file, data);
  const a = await engine({ root: join(dir, 'a') });
  const { id, torrent } = await a.call('add', { path: file });
  const b = await engine({ root: join(dir, 'b'), peers: [`127.0.0.1:${a.port}`] });
  // What the kernel asks of a mount: 128 KiB reads, four in flight, front to back.
  const r = await b.call('seqRead', { torrent, chunk: 128 * 1024, depth: 4 });
  assert.equal(r.sha1, sha1(data));
  const st = await b.call('stats', { id });
  // Each read used to take back the read-ahead requests of the previous one (a sixth of the
  // content was cancelled and asked for again, some of it already on the wire).
  assert.equal(st.cancelledBytes, 0, `${st.cancelledBytes} bytes of requests cancelled`);
  assert.ok(st.downloaded <= data.length + 1024 * 1024, `${st.downloaded} bytes downloaded for ${data.length}`);
  await Promise.all([a.stop(), b.stop()]);
});

test('a background fetch keeps to the background rate; readers and foreground fetches are not held to it', async () => {
  const dir = await tmp('bg');
  const data = content(12 * 1024 * 1024, 11);
  const other = content(8 * 1024 * 1024, 12);
  const third = content(12 * 1024 * 1024, 13);
  await writeFile(join(dir, 'f'), data);
  await writeFile(join(dir, 'g'), other);
  await writeFile(join(dir, 'h'), third);
  const a = await engine({ root: join(dir, 'a') });
  const { id, torrent } = await a.call('add', { path: join(dir, 'f') });
  const g = await a.call('add', { path: join(dir, 'g') });
  const h = await a.call('add', { path: join(dir, 'h') });
  const RATE = 2 * 1024 * 1024;
  const b = await engine({ root: join(dir, 'b'), peers: [`127.0.0.1:${a.port}`], backgroundRate: RATE, readAhead: 4 * 1024 * 1024 });
  // A sequential reader of content only readers want: nothing of it (its read-ahead included)
  // is asked for under the cap.
  const seq = await b.call('seqRead', { torrent: h.torrent, chunk: 128 * 1024, depth: 4 });
  assert.equal(seq.sha1, sha1(third));
  assert.equal((await b.call('totals')).background, 0, "a reader's read-ahead was held to the background rate");
  // The bounds below are far from what loopback does (tens of ms for these sizes) and from what
  // the cap allows. Background alone for 1.5 s: at most the bucket and 1.5 s of the rate (and
  // one pipeline's worth in flight), and not nothing.
  const bg = b.call('fetch', { torrent, background: true });
  await new Promise((r) => setTimeout(r, 1500));
  const got = (await b.call('stats', { id })).downloaded;
  assert.ok(got <= 6 * 1024 * 1024, `${got} bytes in 1.5 s: more than a 2 MiB/s cap allows`);
  assert.ok(got >= 1024 * 1024, `${got} bytes in 1.5 s: the background fetch stalled`);
  // A reader's range of that content is not held to it...
  let t = Date.now();
  const r = await b.call('read', { torrent, start: 8 << 20, end: 12 << 20 });
  assert.equal(r.sha1, sha1(data.subarray(8 << 20, 12 << 20)));
  assert.ok(Date.now() - t < 1500, `a reader's 4 MiB took ${Date.now() - t} ms: held to the background rate`);
  // ...nor a foreground fetch of other content...
  t = Date.now();
  await b.call('fetch', { torrent: g.torrent });
  assert.ok(Date.now() - t < 2500, `a foreground 8 MiB fetch took ${Date.now() - t} ms: held to the background rate`);
  const { path } = await bg;
  assert.equal(sha1(await readFile(path)), sha1(data));
  await Promise.all([a.stop(), b.stop()]);
});

test('several sources, each with only part of the content (served from partial downloads)', async () => {
  const dir = await tmp('multi');
  const data = content(40 * 1024 * 1024 + 999, 2);
  await writeFile(join(dir, 'f'), data);
  const s = await engine({ root: join(dir, 's') });
  const { id, torrent } = await s.call('add', { path: join(dir, 'f') });
  const half = 20 * 1024 * 1024;
  // a holds the first half, c the second (read-ahead kept to one piece), then the origin leaves.
  const a = await engine({ root: join(dir, 'a'), peers: [`127.0.0.1:${s.port}`], readAhead: 1 });
  const c = await engine({ root: join(dir, 'c'), peers: [`127.0.0.1:${s.port}`], readAhead: 1 });
  await a.call('read', { torrent, start: 0, end: half - 1 });
  await c.call('read', { torrent, start: half, end: data.length });
  await s.stop();
  const b = await engine({ root: join(dir, 'b'), peers: [`127.0.0.1:${a.port}`, `127.0.0.1:${c.port}`] });
  const { path } = await b.call('fetch', { torrent });
  assert.equal(sha1(await readFile(path)), sha1(data));
  const [sa, sc] = [await a.call('stats', { id }), await c.call('stats', { id })];
  assert.ok(sa.uploaded > 0 && sc.uploaded > 0, 'both partial holders served');
  assert.equal(sa.complete, false);
  await Promise.all([a.stop(), b.stop(), c.stop()]);
});

test('a partial download survives a restart and resumes; a crash loses nothing that was claimed', async () => {
  const dir = await tmp('resume');
  const data = content(32 * 1024 * 1024, 3);
  await writeFile(join(dir, 'f'), data);
  const s = await engine({ root: join(dir, 's') });
  const { id, torrent } = await s.call('add', { path: join(dir, 'f') });
  const peers = [`127.0.0.1:${s.port}`];
  // Graceful: half fetched, engine closed, restarted on the same root, the rest fetched.
  let b = await engine({ root: join(dir, 'b'), peers, readAhead: 1 });
  await b.call('read', { torrent, start: 0, end: 16 * 1024 * 1024 });
  await b.stop();
  b = await engine({ root: join(dir, 'b'), peers });
  assert.deepEqual(await b.call('partials'), [id]);
  const before = await b.call('read', { torrent, start: 0, end: 1000 }); // already there
  assert.equal(before.sha1, sha1(data.subarray(0, 1000)));
  assert.equal((await b.call('stats', { id })).downloaded, 0, 'nothing re-fetched for bytes already held');
  const { path } = await b.call('fetch', { torrent });
  assert.equal(sha1(await readFile(path)), sha1(data));
  const st = await b.call('stats', { id });
  assert.ok(st.downloaded <= data.length - 15 * 1024 * 1024, `resumed, fetched ${st.downloaded} bytes`);
  await b.stop();
  // Crash: killed mid-way, restarted, and the content still comes out exact.
  let k = await engine({ root: join(dir, 'k'), peers, readAhead: 1 });
  await k.call('read', { torrent, start: 0, end: 20 * 1024 * 1024 });
  await k.stop(true);
  k = await engine({ root: join(dir, 'k'), peers });
  const r = await k.call('fetch', { torrent });
  assert.equal(sha1(await readFile(r.path)), sha1(data));
  await Promise.all([k.stop(), s.stop()]);
});

test('content over 4 GiB (sparse): ranges past 4 GiB, then all of it', async () => {
  const dir = await tmp('big');
  const length = 5 * 1024 * 1024 * 1024 + 4096;
  // The content is all zeros, made as a sparse file straight in the seeder's store.
  const { pieceLengthFor, pieceCount, infoHash, encodeTorrent } = await import('../content/metainfo.js');
  const pieceLength = pieceLengthFor(length);
  const n = pieceCount({ length, pieceLength });
  const full = createHash('sha1').update(Buffer.alloc(pieceLength)).digest();
  const last = createHash('sha1').update(Buffer.alloc(length - (n - 1) * pieceLength)).digest();
  const info = { length, pieceLength, pieces: Buffer.concat([...Array.from({ length: n - 1 }, () => full), last]) };
  const id = infoHash(info);
  const torrent = encodeTorrent(info).toString('hex');
  await mkdir(join(dir, 's', 'content', id.slice(0, 2)), { recursive: true });
  const fh = await open(join(dir, 's', 'content', id.slice(0, 2), id), 'w');
  await fh.truncate(length);
  await fh.close();
  const s = await engine({ root: join(dir, 's') });
  await s.call('seed', { torrent });
  const b = await engine({ root: join(dir, 'b'), peers: [`127.0.0.1:${s.port}`], readAhead: 1 });
  const zeros = (len: number): string => sha1(Buffer.alloc(len));
  for (const [st, en] of [[4 * 2 ** 30 - 10, 4 * 2 ** 30 + 10], [length - 5000, length]]) {
    const r = await b.call('read', { torrent, start: st, end: en });
    assert.equal(r.sha1, zeros(en - st));
  }
  const { path } = await b.call('fetch', { torrent });
  const stt = await stat(path);
  assert.equal(stt.size, length);
  assert.ok(stt.blocks * 512 < 64 * 1024 * 1024, `stays sparse: ${stt.blocks * 512} bytes allocated`);
  await Promise.all([b.stop(), s.stop()]);
});

test('stored content not yet open is served on demand (resolve); empty content; bad ranges are refused', async () => {
  const dir = await tmp('resolve');
  const data = content(3 * 1024 * 1024 + 5, 4);
  await writeFile(join(dir, 'f'), data);
  await writeFile(join(dir, 'empty'), Buffer.alloc(0));
  const a = await engine({ root: join(dir, 'a') });
  const { id, torrent } = await a.call('store', { path: join(dir, 'f') });
  assert.deepEqual(await a.call('active'), []);
  const b = await engine({ root: join(dir, 'b'), peers: [`127.0.0.1:${a.port}`] });
  const { path } = await b.call('fetch', { torrent });
  assert.equal(sha1(await readFile(path)), sha1(data));
  assert.deepEqual(await a.call('active'), [id]);
  const e = await a.call('add', { path: join(dir, 'empty') });
  const r = await b.call('fetch', { torrent: e.torrent });
  assert.equal((await stat(r.path)).size, 0);
  await assert.rejects(b.call('read', { torrent, start: 10, end: data.length + 1 }), /outside/);
  await Promise.all([a.stop(), b.stop()]);
});

test('a reader can give up waiting (no peer has the content yet); the engine carries on', async () => {
  const dir = await tmp('abort');
  const data = content(2 * 1024 * 1024, 5);
  await writeFile(join(dir, 'f'), data);
  const a = await engine({ root: join(dir, 'a') });
  const { torrent } = await a.call('add', { path: join(dir, 'f') });
  const b = await engine({ root: join(dir, 'b'), readAhead: 1 });
  assert.deepEqual(await b.call('readAbort', { torrent, start: 0, end: 1000 }), { ended: 'given up' });
  await b.call('addPeer', { host: '127.0.0.1', port: a.port });
  const r = await b.call('read', { torrent, start: 0, end: 1000 });
  assert.equal(r.sha1, sha1(data.subarray(0, 1000)));
  // Dropped content stops, its partial download stays for later.
  const id = decodeTorrent(Buffer.from(torrent, 'hex')).id;
  await b.call('drop', { id });
  assert.deepEqual(await b.call('active'), []);
  assert.deepEqual(await b.call('partials'), [id]);
  const again = await b.call('read', { torrent, start: 1000, end: 2000 });
  assert.equal(again.sha1, sha1(data.subarray(1000, 2000)));
  await Promise.all([a.stop(), b.stop()]);
});

test('a seeder killed mid-transfer: the fetch finishes from the other one', async () => {
  const dir = await tmp('kill');
  const data = content(64 * 1024 * 1024, 6);
  await writeFile(join(dir, 'f'), data);
  const a = await engine({ root: join(dir, 'a') });
  const { torrent } = await a.call('add', { path: join(dir, 'f') });
  const c = await engine({ root: join(dir, 'c') });
  await c.call('add', { path: join(dir, 'f') });
  const b = await engine({ root: join(dir, 'b'), peers: [`127.0.0.1:${a.port}`, `127.0.0.1:${c.port}`], progress: true });
  let pieces = 0;
  let killed: Promise<void> | null = null;
  b.on('progress', () => {
    if (++pieces === 8) killed = a.stop(true);
  });
  const { path } = await b.call('fetch', { torrent });
  await killed;
  assert.equal(sha1(await readFile(path)), sha1(data));
  await Promise.all([b.stop(), c.stop()]);
});

test("a reader's range is fetched from every peer that has it", async () => {
  const dir = await tmp('share');
  const data = content(16 * 1024 * 1024, 7);
  await writeFile(join(dir, 'f'), data);
  const a = await engine({ root: join(dir, 'a') });
  const { id, torrent } = await a.call('add', { path: join(dir, 'f') });
  const c = await engine({ root: join(dir, 'c') });
  await c.call('add', { path: join(dir, 'f') });
  const b = await engine({ root: join(dir, 'b'), peers: [`127.0.0.1:${a.port}`, `127.0.0.1:${c.port}`], readAhead: 1 });
  await b.call('read', { torrent, start: 0, end: 10 });
  while ((await b.call('stats', { id })).peers < 2) await new Promise((r) => setTimeout(r, 20));
  const [ua, uc] = [(await a.call('stats', { id })).uploaded, (await c.call('stats', { id })).uploaded];
  const start = 8 * 1024 * 1024 + 4321;
  const r = await b.call('read', { torrent, start, end: start + 1024 * 1024 });
  assert.equal(r.sha1, sha1(data.subarray(start, start + 1024 * 1024)));
  const [ua2, uc2] = [(await a.call('stats', { id })).uploaded, (await c.call('stats', { id })).uploaded];
  assert.ok(ua2 > ua && uc2 > uc, `both served the range: ${ua2 - ua} and ${uc2 - uc} bytes`);
  await Promise.all([a.stop(), b.stop(), c.stop()]);
});

test('idle complete content gives its file back and reopens it on the next read', { skip: process.platform !== 'linux', timeout: 60_000 }, async () => {
  const dir = await tmp('idle');
  const data = content(1024 * 1024, 8);
  await writeFile(join(dir, 'f'), data);
  const a = await engine({ root: join(dir, 'a'), idleFdMs: 1 });
  const { id, torrent } = await a.call('add', { path: join(dir, 'f') });
  const before = await a.call('fds');
  // The engine ticks once a second; wait until the fd is given back (no timing in the verdict).
  let now = before;
  while (now >= before) {
    await new Promise((r) => setTimeout(r, 100));
    now = await a.call('fds');
  }
  const b = await engine({ root: join(dir, 'b'), peers: [`127.0.0.1:${a.port}`] });
  const { path } = await b.call('fetch', { torrent });
  assert.equal(sha1(await readFile(path)), sha1(data));
  assert.ok((await a.call('stats', { id })).uploaded > 0);
  await Promise.all([a.stop(), b.stop()]);
});

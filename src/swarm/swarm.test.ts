// Engines in separate processes over loopback: whole and range fetches, several sources,
// restart-resume, large sparse content. Pass/fail never depends on timing.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile, open, mkdir, readFile, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createHash, randomBytes } from 'node:crypto';
import { startEngine, EngineProc } from './testing/harness.js';
import { decodeTorrent } from '../content/metainfo.js';

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
  await Promise.all([a.stop(), b.stop()]);
});

// Small copies over the member RPC: only bytes that match the content's piece hashes are
// stored; a holder that lies or fails hands the copy to the next one, then to the swarm.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm, readFile, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { tmpdir } from 'node:os';
import { createHash } from 'node:crypto';
import { ContentStore } from '../content/store.js';
import { hashBuffer } from '../content/hasher.js';
import { infoHash } from '../content/metainfo.js';
import type { RpcClient } from '../cluster/rpc-client.js';
import { copySmall, matches, readSmall } from './small-copy.js';
import { SMALL_CONTENT_MAX } from './methods.js';

const dirs: string[] = [];
after(async () => { for (const d of dirs) await rm(d, { recursive: true, force: true }); });
async function store(): Promise<ContentStore> {
  const d = await mkdtemp(join(tmpdir(), 'dfs-small-'));
  dirs.push(d);
  const s = new ContentStore(join(d, 'content'), join(d, 'tmp'));
  await s.init();
  return s;
}
const quiet = { debug() {}, info() {}, warn() {}, error() {} } as never;
/** A holder whose content_read answers `reply` (a function of the call), as an RpcClient would. */
const holder = (reply: () => unknown) => ({ call: async () => reply() }) as unknown as RpcClient;

test('matches: every piece of the content, and its exact length', () => {
  const data = Buffer.alloc(40_000, 7);
  data[39_999] = 1;
  // Small content is one piece as DelugeFS writes it; an info of several is checked piece by piece too.
  const pieceLength = 16 * 1024;
  const pieces = Buffer.concat([0, 1, 2].map((i) => createHash('sha1').update(data.subarray(i * pieceLength, (i + 1) * pieceLength)).digest()));
  const info = { length: data.length, pieceLength, pieces };
  assert.equal(matches(info, data), true);
  assert.equal(matches(hashBuffer(data), data), true);
  const bad = Buffer.from(data);
  bad[39_999] ^= 1; // the last piece only
  assert.equal(matches(info, bad), false);
  assert.equal(matches(info, data.subarray(0, 39_999)), false);
  assert.equal(matches(info, Buffer.concat([data, Buffer.alloc(1)])), false);
});

test('copySmall stores only matching bytes, from the first holder that has them; large content is left to the swarm', async () => {
  const s = await store();
  const data = Buffer.from('node 3 file 7\n');
  const info = hashBuffer(data);
  const id = infoHash(info);
  const asked: string[] = [];
  const clients: Record<string, RpcClient> = {
    liar: holder(() => ({ data: Buffer.from('node 3 file 8\n').toString('base64') })),
    gone: holder(() => { throw new Error('not_found'); }),
    good: holder(() => ({ data: data.toString('base64') })),
  };
  const deps = { store: s, log: quiet, holders: () => ['liar', 'nobody', 'gone', 'good'], client: (n: string) => { asked.push(n); return clients[n] ?? null; } };
  assert.equal(await copySmall(deps, id, info), false, 'three holders tried at most; none of them gave the bytes');
  assert.equal(await s.has(id), false, 'the liar\'s bytes were not stored');
  deps.holders = () => ['liar', 'good'];
  assert.equal(await copySmall(deps, id, info), true);
  assert.ok((await readFile(s.path(id))).equals(data));
  assert.equal((await stat(s.path(id))).mode & 0o777, 0o600);
  assert.deepEqual(asked, ['liar', 'nobody', 'gone', 'liar', 'good']);

  const big = hashBuffer(Buffer.alloc(SMALL_CONTENT_MAX + 1, 1));
  assert.equal(await copySmall(deps, infoHash(big), big), false, 'larger content goes through the swarm');
  assert.deepEqual(asked.length, 5, 'and no holder is asked for it');
});

test('readSmall serves complete small content of the right size only', async () => {
  const s = await store();
  const data = Buffer.from('x'.repeat(1000));
  const info = hashBuffer(data);
  const id = infoHash(info);
  assert.equal(await readSmall(s, id, info), null, 'not held');
  const tmp = s.tempPath();
  await writeFile(tmp, data);
  await s.put(tmp, id);
  assert.ok((await readSmall(s, id, info))!.equals(data));
  assert.equal(await readSmall(s, id, undefined), null, 'not referenced');
  assert.equal(await readSmall(s, id, { ...info, length: 999 }), null, 'a stored file of another size');
  const big = hashBuffer(Buffer.alloc(SMALL_CONTENT_MAX + 1));
  assert.equal(await readSmall(s, id, big), null, 'not small');
});

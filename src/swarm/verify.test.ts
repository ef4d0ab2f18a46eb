// The verifying threads: started for a download of large pieces, let go once idle, back on demand.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
process.env.DFS_WORKER_IDLE_MS = '300';
const { verifyAsync, warmVerifiers, verifierThreads, closeVerifiers } = await import('./verify.js');

after(() => closeVerifiers());
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

function piece(size: number): { info: { length: number; pieceLength: number; pieces: Buffer }; data: Buffer } {
  const data = Buffer.from(new SharedArrayBuffer(size)); // only shared memory goes to a thread
  for (let i = 0; i < size; i++) data[i] = (i * 7) & 0xff;
  return { info: { length: size, pieceLength: size, pieces: createHash('sha1').update(data).digest() }, data };
}

test('verifying threads start for large pieces only, go when idle and come back on demand', async () => {
  assert.equal(verifierThreads(), 0);
  warmVerifiers(16 * 1024); // small pieces are checked inline: no threads
  assert.equal(verifierThreads(), 0);
  warmVerifiers(1 << 20);
  assert.equal(verifierThreads(), 2);
  await sleep(700);
  assert.equal(verifierThreads(), 0, 'a warmed pool that got nothing to do lets its threads go');

  const { info, data } = piece(1 << 20);
  assert.equal(await verifyAsync(info, 0, data), true);
  assert.ok(verifierThreads() >= 1);
  data[5] ^= 1;
  assert.equal(await verifyAsync(info, 0, data), false, 'a bad piece is still refused');
  await sleep(700);
  assert.equal(verifierThreads(), 0);
  data[5] ^= 1;
  assert.equal(await verifyAsync(info, 0, data), true, 'threads are started again after they went');
});

// Served pieces lent to sockets: a piece the cache lets go of is reused only once every block
// of it that went to a wire was copied out by the Outbox, and never within the same turn of the
// event loop; a block whose copy never comes keeps its piece out of the pool for good.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { setImmediate as tick } from 'node:timers/promises';
import { takeServed, lendBlock, blockCopied, retireServed } from './buffers.js';
import { PieceCache } from './cache.js';

const SIZE = 3 * 1024 * 1024 + 17; // a size no other test uses: this pool is ours alone

test('a retired served piece goes back to the pool only after its blocks were copied and a turn passed', async () => {
  const a = takeServed(SIZE);
  lendBlock(a);
  lendBlock(a);
  retireServed(a);
  await tick();
  assert.notEqual(takeServed(SIZE).buffer, a.buffer, 'reused with two blocks still queued');
  blockCopied(a.subarray(0, 10));
  await tick();
  assert.notEqual(takeServed(SIZE).buffer, a.buffer, 'reused with one block still queued');
  blockCopied(a.subarray(10, 20));
  assert.equal(takeServed(SIZE).buffer, a.buffer, 'not reused once every block was copied');
});

test('retired with no block queued: reused after the current turn, not within it', async () => {
  const b = takeServed(SIZE);
  retireServed(b);
  assert.notEqual(takeServed(SIZE).buffer, b.buffer, 'reused in the same turn (a sender may be about to lend it)');
  await tick();
  assert.equal(takeServed(SIZE).buffer, b.buffer);
});

test('a block never copied (a closed connection) keeps its piece out of the pool; the cache retires what it evicts', async () => {
  const c = takeServed(SIZE);
  lendBlock(c);
  retireServed(c);
  await tick();
  await tick();
  assert.notEqual(takeServed(SIZE).buffer, c.buffer);
  // The cache's budget fits one piece: the second put evicts (retires) the first.
  const cache = new PieceCache(SIZE);
  const d = takeServed(SIZE);
  cache.put('x', 0, d);
  cache.put('x', 1, takeServed(SIZE));
  await tick();
  assert.equal(cache.get('x', 0), undefined);
  assert.equal(takeServed(SIZE).buffer, d.buffer, 'an evicted served piece did not return to the pool');
});

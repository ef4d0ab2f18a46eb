// The read cache's budget and bookkeeping on real files: a disk near full shrinks it, a whole
// copy handed back counts until the loop no longer finds it surplus, a saved state from the
// future is clamped.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, mkdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { silentLogger } from '../util/log.js';
import { ReadCache } from './cache.js';

const id = (n: number) => n.toString(16).padStart(40, '0');
const MiB = 1 << 20;

async function setup(room: { bytes: number }) {
  const dir = await mkdtemp(join(tmpdir(), 'dfs-cache-'));
  await mkdir(join(dir, 'partial'));
  await mkdir(join(dir, 'state'));
  let evicted = 0;
  const cache = new ReadCache({
    dir: join(dir, 'partial'), stateDir: join(dir, 'state'), budget: 100 * MiB, log: silentLogger,
    swarm: { active: () => [], stats: () => null, drop: async () => {} },
    evicted: () => { evicted++; }, keep: () => false, idleMs: 0,
    room: async () => room.bytes,
  });
  return { dir, cache, evictions: () => evicted };
}

test('the read cache never fills the disk past its near-full mark: little room left shrinks the budget', async () => {
  const room = { bytes: 1000 * MiB };
  const { dir, cache, evictions } = await setup(room);
  try {
    cache.used(id(1));
    cache.used(id(2));
    const kept = cache.keep([{ id: id(1), bytes: 30 * MiB }, { id: id(2), bytes: 30 * MiB }]);
    assert.equal(kept.size, 2);
    assert.equal(await cache.trim(), 0, 'within --cache-size and with room: nothing goes');
    // 10 MiB past the near-full mark: the budget becomes 60 - 10 = 50 MiB, below --cache-size.
    room.bytes = -10 * MiB;
    assert.equal(await cache.trim(), 30 * MiB, 'the least recently used copy is handed back');
    assert.equal(evictions(), 1);
    assert.equal(cache.stats.wholeCopies, 1);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

test('a whole copy handed back still counts until the loop drops it; then its space is free', async () => {
  const room = { bytes: 1000 * MiB };
  const { dir, cache } = await setup(room);
  try {
    for (const n of [1, 2, 3, 4]) cache.used(id(n));
    const surplus = [1, 2, 3, 4].map((n) => ({ id: id(n), bytes: 30 * MiB }));
    cache.keep(surplus); // 120 MiB: one of them goes
    assert.equal(await cache.trim(), 30 * MiB);
    assert.equal(cache.stats.wholeCopies, 3);
    // The loop's drop failed (no locks): still surplus, still on the disk. A reader's new copy
    // must not take its place as if it were gone.
    cache.used(id(5));
    cache.keep([...surplus, { id: id(5), bytes: 30 * MiB }]);
    assert.equal(await cache.trim(), 60 * MiB, 'the handed-back copy was counted as freed');
    assert.equal(cache.stats.wholeCopies, 2);
    // Dropped at last (no longer surplus here): only what is kept counts.
    cache.keep([{ id: id(4), bytes: 30 * MiB }, { id: id(5), bytes: 30 * MiB }]);
    cache.used(id(6));
    cache.keep([{ id: id(4), bytes: 30 * MiB }, { id: id(5), bytes: 30 * MiB }, { id: id(6), bytes: 30 * MiB }]);
    assert.equal(await cache.trim(), 0, '90 MiB fits 100 once the handed-back copies are gone');
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

test('uses saved with a time ahead of the clock are clamped to now, so they age and go', async () => {
  const room = { bytes: 1000 * MiB };
  const { dir, cache } = await setup(room);
  try {
    const future = Date.now() + 365 * 86_400_000;
    await writeFile(join(dir, 'state', 'cache.json'), JSON.stringify([[id(1), future], [id(2), Date.now() - 1000]]));
    await cache.load();
    cache.used(id(3));
    const s = (n: number) => ({ id: id(n), bytes: 40 * MiB });
    cache.keep([s(1), s(2), s(3)]);
    // id(2) is the oldest; id(1), clamped to the load time, next; id(3) was used last.
    assert.equal(await cache.trim(), 40 * MiB);
    const kept = cache.keep([s(1), s(2), s(3)]);
    assert.deepEqual([...kept].sort(), [id(1), id(3)]);
    const after = cache.keep([s(1), s(3)]);
    assert.equal(after.size, 2);
    cache.used(id(3));
    cache.keep([s(1), s(3), { id: id(4), bytes: 40 * MiB }]);
    cache.used(id(4));
    cache.keep([s(1), s(3), { id: id(4), bytes: 40 * MiB }]);
    assert.equal(await cache.trim(), 40 * MiB);
    assert.deepEqual([...cache.keep([s(3), { id: id(4), bytes: 40 * MiB }])].sort(), [id(3), id(4)], 'the copy saved "in the future" stayed');
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

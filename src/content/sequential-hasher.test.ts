import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, open, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { SequentialHasher } from './sequential-hasher.js';
import { hashFile, closeHashers } from './hasher.js';

after(closeHashers);

async function writeInSteps(path: string, data: Buffer, step: number, h: SequentialHasher, order: 'forward' | 'backward') {
  const fh = await open(path, 'w+');
  const offsets = [];
  for (let o = 0; o < data.length; o += step) offsets.push(o);
  if (order === 'backward') offsets.reverse();
  let end = 0;
  for (const o of offsets) {
    await fh.write(data, o, Math.min(step, data.length - o), o);
    if (order === 'forward') h.advance((end = o + Math.min(step, data.length - o)));
    else h.invalidate();
  }
  await fh.close();
  return end;
}

test('hashing while writing gives exactly the hashes of the finished file, across tiers and out of order', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'dfs-seq-'));
  try {
    // 70 MiB crosses the 64 MiB tier (64 KiB -> 1 MiB pieces); 20 MiB stays in the first.
    for (const [size, order] of [[20 << 20, 'forward'], [(70 << 20) + 12345, 'forward'], [(3 << 20) + 1, 'backward']] as const) {
      const data = randomBytes(size);
      const p = join(dir, `f${size}`);
      const h = new SequentialHasher(p);
      await writeInSteps(p, data, 1 << 20, h, order);
      const got = await h.finish(size);
      const want = await hashFile(p, size);
      assert.equal(got.pieceLength, want.pieceLength);
      assert.ok(got.pieces.equals(want.pieces), `size ${size} ${order}`);
    }
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

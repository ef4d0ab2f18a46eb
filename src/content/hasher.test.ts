import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, writeFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomBytes, createHash } from 'node:crypto';
import { hashFile, closeHashers } from './hasher.js';
import { pieceCount } from './metainfo.js';

after(closeHashers);

test('hashes small files inline and large files in workers, identically to a plain loop', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'dfs-hash-'));
  try {
    for (const size of [0, 1, 16384, 300_000, 40 * 1024 * 1024 + 123]) {
      const data = randomBytes(size);
      const p = join(dir, `f${size}`);
      await writeFile(p, data);
      const info = await hashFile(p);
      assert.equal(info.length, size);
      assert.equal(info.pieces.length, 20 * pieceCount(info));
      for (let i = 0; i < pieceCount(info); i++) {
        const want = createHash('sha1').update(data.subarray(i * info.pieceLength, (i + 1) * info.pieceLength)).digest();
        assert.ok(want.equals(info.pieces.subarray(i * 20, i * 20 + 20)), `size ${size} piece ${i}`);
      }
    }
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

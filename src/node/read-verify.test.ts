// Verification on read against real files and the real hash workers: good bytes pass once, a
// flipped byte sends exactly its piece to the repair, a repair that fails (or does not fix it)
// is EIO, and a piece is hashed once per run unless a read failed under it.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, open, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { closeHashers, hashBuffer, hashPieces } from '../content/hasher.js';
import { infoHash, pieceCount } from '../content/metainfo.js';
import { ReadVerifier } from './read-verify.js';

after(() => closeHashers());

async function setup(bytes: number) {
  const dir = await mkdtemp(join(tmpdir(), 'dfs-verify-'));
  const data = randomBytes(bytes);
  const info = hashBuffer(data);
  const id = infoHash(info);
  const path = join(dir, id);
  await writeFile(path, data);
  const hashed: number[] = [];
  const repairs: number[][] = [];
  let fix = true;
  let fail = false;
  const v = new ReadVerifier({
    path: () => path,
    hash: (p, len, first, count, length) => {
      for (let k = 0; k < count; k++) hashed.push(first + k);
      return hashPieces(p, len, first, count, length);
    },
    repair: async (_id, _info, good) => {
      const bad: number[] = [];
      for (let p = 0; p < pieceCount(info); p++) if (!good(p)) bad.push(p);
      repairs.push(bad);
      if (fail) throw new Error('no member');
      if (fix) await writeFile(path, data);
    },
  });
  const flip = async (at: number) => {
    const fh = await open(path, 'r+');
    await fh.write(Buffer.from([data[at]! ^ 0x55]), 0, 1, at);
    await fh.close();
  };
  return {
    v, id, info, data, hashed, repairs, flip, dir,
    set: (o: { fix?: boolean; fail?: boolean }) => { fix = o.fix ?? fix; fail = o.fail ?? fail; },
  };
}

test('good pieces pass and are hashed once; a flipped byte sends its piece (only) to the repair, and the read goes on', async () => {
  const s = await setup(3 << 20);
  try {
    const pl = s.info.pieceLength;
    await s.v.ensure(s.id, s.info, 0, 4096);
    const first = s.hashed.length;
    assert.ok(first >= 1);
    await s.v.ensure(s.id, s.info, 0, s.data.length);
    await s.v.ensure(s.id, s.info, 0, s.data.length);
    assert.equal(new Set(s.hashed).size, s.hashed.length, 'a piece hashed twice');
    assert.equal(s.hashed.length, pieceCount(s.info));
    assert.equal(s.repairs.length, 0);

    // Bit rot after a piece matched is the scrub's, unless a read failed there: forget() checks again.
    const at = 5 * pl + 17;
    await s.flip(at);
    await s.v.ensure(s.id, s.info, at, at + 1);
    assert.equal(s.repairs.length, 0);
    s.v.forget(s.id, s.info, at, at + 1);
    await s.v.ensure(s.id, s.info, at, at + 1);
    assert.deepEqual(s.repairs, [[5]]);
    assert.equal(s.v.stats.repaired, 1);
  } finally {
    await rm(s.dir, { recursive: true, force: true });
  }
});

test('where no member repairs a bad piece, or the repair does not fix it, the read fails with EIO', async () => {
  const s = await setup(1 << 20);
  try {
    const pl = s.info.pieceLength;
    await s.flip(2 * pl);
    s.set({ fail: true });
    await assert.rejects(s.v.ensure(s.id, s.info, 2 * pl, 2 * pl + 10), (e: NodeJS.ErrnoException) => e.code === 'EIO' && /no member repaired/.test(e.message));
    // Pieces around it still read.
    await s.v.ensure(s.id, s.info, 0, pl);
    s.set({ fail: false, fix: false });
    await assert.rejects(s.v.ensure(s.id, s.info, 2 * pl, 2 * pl + 10), (e: NodeJS.ErrnoException) => e.code === 'EIO' && /after a repair/.test(e.message));
    assert.ok(s.repairs.length >= 2);
    // A copy the disk cannot read any more (here: gone) counts as bad too, once a read failed there.
    await rm(join(s.dir, s.id));
    s.set({ fail: true });
    s.v.forget(s.id, s.info, 3 * pl, 3 * pl + 1);
    await assert.rejects(s.v.ensure(s.id, s.info, 3 * pl, 3 * pl + 1), (e: NodeJS.ErrnoException) => e.code === 'EIO');
  } finally {
    await rm(s.dir, { recursive: true, force: true });
  }
});

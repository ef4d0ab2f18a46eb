// Partial downloads on a real disk: an all-zero piece written into a file that held other bytes
// before (a repaired copy, a resume) reads back as zeros; one written into a fresh file stays a hole;
// what O_DIRECT writes leaves no copy in the page cache.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { hashBuffer } from '../content/hasher.js';
import { infoHash } from '../content/metainfo.js';
import { PartialFile } from './partial.js';
import { takeBuffer } from './buffers.js';
import { directDir, resident } from './testing/page-cache.js';

test('an all-zero piece over old bytes reads back as zeros; in a fresh file it stays a hole', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'dfs-partial-'));
  try {
    const data = Buffer.concat([randomBytes(1 << 20), Buffer.alloc(2 << 20), randomBytes(1 << 20)]);
    const info = hashBuffer(data);
    const id = infoHash(info);
    const pl = info.pieceLength;
    assert.ok(pl <= 1 << 20, `piece length ${pl}`);
    const piece = (i: number) => data.subarray(i * pl, Math.min(data.length, (i + 1) * pl));
    const zeroPiece = Math.ceil((1 << 20) / pl) + 1;
    assert.ok(piece(zeroPiece).equals(Buffer.alloc(piece(zeroPiece).length)));

    // A copy taken out of the store for repair: bad bytes where the zeros belong.
    await writeFile(join(dir, id), Buffer.concat([data.subarray(0, zeroPiece * pl), randomBytes(pl), data.subarray((zeroPiece + 1) * pl)]));
    let p = await PartialFile.open(dir, id, info);
    await p.writePiece(zeroPiece * pl, piece(zeroPiece));
    await p.close();
    assert.ok((await readFile(join(dir, id))).equals(data), 'the old bytes survived the zero piece');

    // A fresh download: zero pieces cost no blocks.
    await rm(join(dir, id));
    p = await PartialFile.open(dir, id, info);
    for (let i = 0; i * pl < data.length; i++) await p.writePiece(i * pl, piece(i));
    await p.close();
    assert.ok((await readFile(join(dir, id))).equals(data));
    assert.ok((await stat(join(dir, id))).blocks * 512 < data.length - (1 << 20), 'the zeros were written');
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

test('pieces nobody reads go to the disk past the page cache (O_DIRECT); readers\' pieces, unaligned memory and the unaligned tail go through it', async () => {
  const dir = await directDir();
  try {
    const data = randomBytes((8 << 20) + 1000); // the last piece is not a whole number of blocks
    const info = hashBuffer(data);
    const id = infoHash(info);
    const pl = info.pieceLength;
    const n = Math.ceil(data.length / pl);
    const piece = (i: number): Buffer => {
      const src = data.subarray(i * pl, Math.min(data.length, (i + 1) * pl));
      const b = takeBuffer(src.length); // the engine's piece buffers: aligned for O_DIRECT
      src.copy(b);
      return b;
    };
    const fill = async (direct: boolean, mem: (i: number) => Buffer = piece): Promise<number> => {
      await rm(join(dir, id), { force: true });
      const p = await PartialFile.open(dir, id, info);
      for (let i = 0; i < n; i++) await p.writePiece(i * pl, mem(i), direct);
      await p.flush();
      const res = await resident(join(dir, id));
      await p.close();
      assert.ok((await readFile(join(dir, id))).equals(data), `direct=${direct}: the bytes read back`);
      return res;
    };
    const tail = data.length % 4096;
    const direct = await fill(true);
    assert.ok(direct <= 4096 + tail, `direct writes left ${direct} bytes in the page cache`);
    const buffered = await fill(false);
    assert.ok(buffered >= data.length - 4096, `buffered writes left only ${buffered} bytes in the page cache`);
    // Memory off the alignment (a copy of a piece at an odd address): through the page cache, intact.
    const odd = await fill(true, (i) => { const b = Buffer.alloc(pl + 1); const p = piece(i); p.copy(b, 1); return b.subarray(1, 1 + p.length); });
    assert.ok(odd >= data.length - 4096, `misaligned memory: ${odd} bytes resident`);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

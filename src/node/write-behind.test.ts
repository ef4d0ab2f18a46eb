import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { openSync, closeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { WriteBehind } from './write-behind.js';

async function withFile(fn: (fd: number, path: string) => Promise<void>) {
  const dir = await mkdtemp(join(tmpdir(), 'dfs-wb-'));
  const path = join(dir, 'f');
  const fd = openSync(path, 'w+');
  try {
    await fn(fd, path);
  } finally {
    closeSync(fd);
    await rm(dir, { recursive: true, force: true });
  }
}

test('lent, tail and small writes land in order; lent buffers are handed back once written', () => withFile(async (fd, path) => {
  const ends: number[] = [];
  const wb = new WriteBehind(fd, (_pos, end) => ends.push(end));
  const expect = Buffer.alloc(3 * (1 << 20) + 4096 + 100);
  let pos = 0;
  const lent: Promise<unknown>[] = [];
  const put = async (len: number, lend: boolean) => {
    const b = randomBytes(len);
    b.copy(expect, pos);
    await wb.write(b, len, pos, lend ? (until) => lent.push(until) : undefined);
    pos += len;
  };
  // The kernel's split of unaligned 1 MiB writes: 1 MiB - 48, then 48 bytes.
  for (let i = 0; i < 3; i++) {
    await put((1 << 20) - 48, true);
    await put(48, true);
  }
  await put(4096, false); // small writes are copied into a staging buffer
  await put(100, false);
  assert.equal(lent.length, 6, 'the 48-byte tails were lent too');
  await wb.drain();
  await Promise.all(lent);
  assert.ok((await readFile(path)).equals(expect));
  assert.deepEqual(ends, [...ends].sort((a, b) => a - b), 'written in order');
  assert.equal(ends.at(-1), expect.length);
}));

test('a failed write is reported by the next write or the drain, and lent buffers are still handed back', () => withFile(async (_fd, path) => {
  const ro = openSync(path, 'r'); // writes fail with EBADF
  try {
    const wb = new WriteBehind(ro);
    let returned = false;
    await wb.write(Buffer.alloc(1 << 20), 1 << 20, 0, (until) => void until.then(() => (returned = true)));
    await assert.rejects(wb.drain(), { code: 'EBADF' });
    assert.ok(returned);
    await assert.rejects(wb.write(Buffer.alloc(10), 10, 1 << 20), { code: 'EBADF' });
  } finally {
    closeSync(ro);
  }
}));

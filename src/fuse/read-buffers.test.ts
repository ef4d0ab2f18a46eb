// READ's reply buffers are reused: the pool itself, and a mount read by many readers of
// different files at once (a buffer given back while still in use would mix their bytes).
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs/promises';
import { join } from 'node:path';
import { createHash, randomBytes } from 'node:crypto';
import { ReadBuffers } from './read-buffers.js';
import { sandbox, Sandbox } from '../testing/node-proc.js';

let sb: Sandbox | undefined;
after(async () => {
  await sb?.cleanup();
});

test('the pool hands a buffer back out after give, by size class, within its cap', () => {
  const p = new ReadBuffers(3 << 20);
  const a = p.take(1 << 20);
  assert.equal(a.length, 1 << 20);
  p.give(a);
  assert.equal(p.held, 1 << 20);
  const b = p.take(1000 * 1024); // same class (1 MiB): the same memory
  assert.equal(b.length, 1000 * 1024);
  assert.equal(b.buffer, a.buffer);
  assert.equal(p.held, 0);
  const c = p.take(1 << 20); // none free: a new one
  assert.notEqual(c.buffer, a.buffer);
  // The cap: three 1 MiB buffers fit, the fourth given back is let go.
  const d = p.take(1 << 20);
  const e = p.take(1 << 20);
  for (const x of [b, c, d, e]) p.give(x);
  assert.equal(p.held, 3 << 20);
  // Small reads and buffers not from the pool are never kept.
  p.give(Buffer.allocUnsafe(100 * 1000));
  const small = p.take(4096);
  assert.equal(small.length, 4096);
  p.give(small);
  assert.equal(p.held, 3 << 20);
});

test('many readers of different files at once each get their own bytes', { timeout: 120_000 }, async () => {
  sb = await sandbox('dfs-readbufs');
  const node = await sb.start([], { create: true });
  const files = Array.from({ length: 6 }, (_, i) => ({ name: `f${i}`, data: randomBytes((6 << 20) + i * 4099) }));
  for (const f of files) await fs.writeFile(join(sb.mnt, f.name), f.data);
  const sha = (b: Buffer) => createHash('sha1').update(b).digest('hex');
  // Three rounds: the first after the writes, then cold (the kernel's cache dropped), with
  // reads of many sizes (whole files through the kernel's read-ahead, and odd ranges).
  for (let round = 0; round < 3; round++) {
    if (round) await fs.writeFile('/proc/sys/vm/drop_caches', '3\n');
    await Promise.all(files.flatMap((f) => [
      (async () => assert.equal(sha(await fs.readFile(join(sb!.mnt, f.name))), sha(f.data), `${f.name} whole, round ${round}`))(),
      (async () => {
        const h = await fs.open(join(sb!.mnt, f.name), 'r');
        try {
          for (let off = 12345, n = 70_000; off < f.data.length; off += n, n = (n * 7) % 900_000 + 65_536) {
            const buf = Buffer.alloc(n);
            const { bytesRead } = await h.read(buf, 0, n, off);
            assert.ok(buf.subarray(0, bytesRead).equals(f.data.subarray(off, off + bytesRead)), `${f.name} at ${off}+${n}, round ${round}`);
          }
        } finally {
          await h.close();
        }
      })(),
    ]));
  }
  assert.equal(await node.stop(), 0);
});

// The hashing threads go once idle and come back on demand.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, writeFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
process.env.DFS_WORKER_IDLE_MS = '300';
const { hashFile, hasherThreads, closeHashers } = await import('./hasher.js');

after(closeHashers);
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

test('the hashing threads go after a while without work and are started again by the next large file', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'dfs-hash-idle-'));
  try {
    const p = join(dir, 'f');
    await writeFile(p, randomBytes(3 * 1024 * 1024));
    assert.equal(hasherThreads(), 0);
    const first = await hashFile(p);
    assert.ok(hasherThreads() >= 1, 'a large file is hashed in threads');
    await sleep(700);
    assert.equal(hasherThreads(), 0, 'idle threads were let go');
    const again = await hashFile(p);
    assert.ok(again.pieces.equals(first.pieces), 'the same hashes from new threads');
    assert.ok(hasherThreads() >= 1);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

// The `git cat-file --batch` parser on real git output: every way of cutting the stream into
// chunks gives the same objects (headers, contents and the terminating newline split anywhere),
// a missing object is named, and an object over the limit is refused from its header alone.
// GitRepo.readBlobs on a real repository refuses an oversized blob and reads a big legal one.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { run } from '../util/exec.js';
import { BatchParser, BatchObject, ObjectTooLargeError } from './cat-file.js';
import { GitRepo } from './repo.js';

function parseAll(chunks: Buffer[], maxSize?: number): BatchObject[] {
  const out: BatchObject[] = [];
  const p = new BatchParser((o) => out.push(o), maxSize);
  for (const c of chunks) p.push(c);
  p.end();
  return out;
}

function cut(buf: Buffer, at: number[]): Buffer[] {
  const out: Buffer[] = [];
  let prev = 0;
  for (const a of [...at, buf.length]) {
    out.push(buf.subarray(prev, a));
    prev = a;
  }
  return out;
}

test('cat-file --batch parsing: any chunking, missing objects, size limit from the header', async () => {
  const d = await mkdtemp(join(tmpdir(), 'dfs-sync-catfile-'));
  try {
    const repo = new GitRepo(join(d, 'r.git'));
    await repo.init();
    const contents = [Buffer.alloc(0), Buffer.from('x'), Buffer.from('two\nlines\n'), randomBytes(300), Buffer.from('\n'), randomBytes(70_000)];
    const oids: string[] = [];
    for (const c of contents) oids.push((await run('git', ['--git-dir', repo.dir, 'hash-object', '-w', '--stdin'], { input: c })).stdout.toString().trim());
    const stream = (await run('git', ['--git-dir', repo.dir, 'cat-file', '--batch'], { input: oids.join('\n') + '\n' })).stdout;
    const check = (objs: BatchObject[], how: string) => {
      assert.equal(objs.length, contents.length, how);
      objs.forEach((o, i) => {
        assert.equal(o.oid, oids[i], how);
        assert.equal(o.type, 'blob', how);
        assert.ok(o.data.equals(contents[i]!), `${how}: object ${i}`);
      });
    };
    check(parseAll([stream]), 'one chunk');
    // Cut once at every offset of the small objects' part, and twice around each object boundary.
    const smallEnd = stream.length - 70_000 - 1;
    for (let k = 0; k <= smallEnd + 60; k++) check(parseAll(cut(stream, [k])), `cut at ${k}`);
    for (let k = 0; k < smallEnd; k++) for (const w of [1, 2, 41]) check(parseAll(cut(stream, [k, Math.min(stream.length, k + w)])), `cut at ${k} and ${k + w}`);
    for (const size of [1, 3, 1000, 65536]) {
      const chunks: Buffer[] = [];
      for (let i = 0; i < stream.length; i += size) chunks.push(stream.subarray(i, i + size));
      check(parseAll(chunks), `chunks of ${size}`);
    }
    // Truncated output is an error, not a short read.
    assert.throws(() => parseAll([stream.subarray(0, stream.length - 1)]), /ended inside an object/);
    // Missing objects are named.
    const missing = (await run('git', ['--git-dir', repo.dir, 'cat-file', '--batch'], { input: `${'1'.repeat(40)}\n` })).stdout;
    assert.throws(() => parseAll([missing]), new RegExp(`object ${'1'.repeat(40)} is missing`));
    // Over the limit: refused on the header line, before any contents arrived.
    const header = Buffer.from(`${'2'.repeat(40)} blob ${2 ** 40}\n`);
    const p = new BatchParser(() => assert.fail('no object'), 1000);
    assert.throws(() => p.push(header), (e) => e instanceof ObjectTooLargeError && e.size === 2 ** 40);

    // readBlobs: a big legal blob reads back whole; one over the limit is refused.
    const big = randomBytes(3 * 2 ** 20 + 17);
    const bigOid = (await run('git', ['--git-dir', repo.dir, 'hash-object', '-w', '--stdin'], { input: big })).stdout.toString().trim();
    const read = await repo.readBlobs([oids[1]!, bigOid, oids[0]!]);
    assert.ok(read.get(bigOid)!.equals(big) && read.get(oids[1]!)!.equals(contents[1]!) && read.get(oids[0]!)!.length === 0);
    await assert.rejects(repo.readBlobs([oids[1]!, bigOid], 2 ** 20), (e) => e instanceof ObjectTooLargeError && e.oid === bigOid);
    const huge = Buffer.alloc(17 * 2 ** 20);
    const hugeOid = (await run('git', ['--git-dir', repo.dir, 'hash-object', '-w', '--stdin'], { input: huge })).stdout.toString().trim();
    await assert.rejects(repo.readBlobs([hugeOid]), /more than the 16777216 bytes/);
  } finally {
    await rm(d, { recursive: true, force: true });
  }
});

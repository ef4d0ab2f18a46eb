import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { tmpdir } from 'node:os';
import { ObjectCache } from './object-cache.js';
import { GitRepo, ObjectMissingError } from './repo.js';
import { objectId } from './tree.js';
import { ObjectTooLargeError } from './cat-file.js';

test('object cache: bounded in bytes, least recently used first, big objects not kept, copies', () => {
  const c = new ObjectCache(1300, 300); // each costs its bytes + 100
  const chunk = Buffer.alloc(400, 1);
  c.put('a', 'blob', chunk.subarray(0, 200));
  chunk[0] = 9;
  assert.equal(c.get('a')!.data[0], 1, 'its own copy');
  c.put('big', 'blob', Buffer.alloc(301));
  assert.equal(c.get('big'), undefined);
  for (const k of ['b', 'c', 'd']) c.put(k, 'tree', Buffer.alloc(200));
  c.get('a'); // used: 'b' is now the oldest
  c.put('e', 'tree', Buffer.alloc(200));
  assert.equal(c.get('b'), undefined);
  for (const k of ['a', 'c', 'd', 'e']) assert.ok(c.get(k), k);
  c.clear();
  assert.equal(c.size, 0);
});

test('repository: what was written or read is answered without git; limits still hold; gc clears', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'dfs-objcache-'));
  const repo = new GitRepo(join(dir, 'r.git'));
  try {
    await repo.init();
    const reader = (repo as unknown as { reader: { exchange: (...a: unknown[]) => Promise<void> } }).reader;
    let asked = 0;
    const orig = reader.exchange.bind(reader);
    reader.exchange = (...a: unknown[]) => { asked++; return orig(...a); };
    const data = Buffer.from('tree 4b825dc642cb6eb9a060e54bf8d69288fbee4904\nauthor a <a> 1 +0000\ncommitter a <a> 1 +0000\n\nx\n');
    const oid = objectId('commit', data);
    const blob = Buffer.alloc(5000, 3);
    const bid = objectId('blob', blob);
    await repo.writeObjects([{ type: 'commit', oid, data }, { type: 'blob', oid: bid, data: blob }]);
    assert.equal((await repo.readCommit(oid)).message, 'x\n');
    assert.equal(await repo.hasCommit(oid), true);
    assert.deepEqual([...(await repo.types([oid, bid]))], [[oid, 'commit'], [bid, 'blob']]);
    assert.equal(await repo.totalSize([bid]), 5000);
    await assert.rejects(repo.readBlobs([bid], 4999), ObjectTooLargeError);
    assert.equal(asked, 0, 'nothing asked of git');
    // Read once from git, then from memory.
    await repo.maintain({ full: true });
    assert.equal((await repo.readBlobs([bid])).get(bid)!.length, 5000);
    const after = asked;
    assert.ok(after >= 1, 'gc cleared the cache: read from git');
    assert.equal((await repo.readBlobs([bid])).get(bid)!.length, 5000);
    assert.equal(asked, after);
    // Missing objects are asked every time (never cached as missing).
    const missing = 'e'.repeat(40);
    assert.equal((await repo.types([missing])).get(missing), null);
    assert.equal((await repo.types([missing])).get(missing), null);
    assert.equal(asked, after + 2);
    // Missing is its own error (sync retries such a value instead of refusing it for good); a
    // non-commit named as a head is not.
    await assert.rejects(repo.independent([oid, missing]), ObjectMissingError);
    await assert.rejects(repo.readBlobs([missing]), ObjectMissingError);
    await assert.rejects(repo.independent([oid, bid]), (e: Error) => !(e instanceof ObjectMissingError) && /not a commit/.test(e.message));
  } finally {
    repo.close();
    await rm(dir, { recursive: true, force: true });
  }
});

// Which view changes may go in under uncommitted local ones: a path that is, holds or lies in a
// locally changed one may not; records and files apart; escaped names; too many paths, or a
// recovery, and nothing is disjoint.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { TouchedPaths } from './touched.js';
import type { DirEntry } from './entry.js';

const dir: DirEntry = { type: 'dir', mode: 0o755, uid: 0, gid: 0, mtime: 0, ctime: 0 };

test('touched paths: a view change apart from every local change is disjoint, one on, above or below is not', () => {
  const t = new TouchedPaths();
  assert.ok(t.disjoint(['a/b']), 'nothing touched');
  t.add({ o: 'put', p: '/a/b', e: dir });
  t.add({ o: 'mv', p: '/x', to: '/y/z' });
  t.add({ o: 'rec', p: 'members/abc', d: Buffer.from('{}') });
  t.add({ o: 'rm', p: '/100% sure' });
  assert.ok(t.disjoint(['a/c', 'a/bb', 'b', 'y/w', 'x2', '%cluster/members/abd', 'members/abc', 'other/%dir']));
  for (const p of ['a/b', 'a/b/%dir', 'a/b/deep/file', 'a/%dir', '%dir', 'x', 'x/inner', 'y/%dir', 'y/z', '%cluster/members/abc', '100%25 sure']) {
    assert.equal(t.disjoint(['a/c', p]), false, p);
  }
});

test('touched paths: past 10,000 paths, or marked unknown, nothing is disjoint', () => {
  const t = new TouchedPaths();
  for (let i = 0; i <= 10_000; i++) t.add({ o: 'rm', p: `/f${i}` });
  assert.equal(t.disjoint(['elsewhere']), false);
  const u = new TouchedPaths();
  u.markUnknown();
  assert.equal(u.disjoint(['elsewhere']), false);
});

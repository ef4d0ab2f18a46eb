// The file browser's pages (dir-list.ts): sorted for ordinary directories; for huge ones the
// directory's own order, read no further than the page (no sort of every name per page).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { listDir, SORT_MAX } from './dir-list.js';
import { DirNode, LeafNode } from '../meta/tree.js';
import { T0, dir, file } from '../meta/entry.fixture.js';
import type { DelugeNode } from '../node/node.js';

const nodeWith = (d: DirNode) => ({ ns: { tree: { get: (p: string) => (p === '/d' ? d : undefined) } } }) as unknown as DelugeNode;

test('a directory is listed in pages: sorted up to SORT_MAX names, in its own order past it', () => {
  const small = new DirNode(dir);
  for (const n of ['c', 'a', 'b']) small.children.set(n, new LeafNode(file("abc")));
  assert.deepEqual(listDir(nodeWith(small), { path: '/d', offset: 0, limit: 10 }).items.map((i) => i.name), ['a', 'b', 'c']);
  const big = new DirNode(dir);
  const names = Array.from({ length: SORT_MAX + 10 }, (_, i) => `n${String(SORT_MAX + 10 - i).padStart(6, '0')}`); // descending
  for (const n of names) big.children.set(n, new LeafNode(file("x")));
  const p = listDir(nodeWith(big), { path: '/d', offset: 5, limit: 3 });
  assert.equal(p.total, SORT_MAX + 10);
  assert.deepEqual(p.items.map((i) => i.name), names.slice(5, 8), 'the directory\'s own order');
  assert.equal(p.items[0]!.mtime, Math.floor(T0));
  assert.throws(() => listDir(nodeWith(big), { path: '/nope', offset: 0, limit: 1 }), /no such directory/);
});

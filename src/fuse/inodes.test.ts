import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Inodes, ROOT_ID } from './inodes.js';

test('lookups count, forget drops an id only when the count reaches zero', () => {
  const t = new Inodes();
  const a = t.lookup('/a', 'file');
  assert.equal(t.lookup('/a', 'file').id, a.id);
  t.forget(a.id, 1);
  assert.equal(t.path(a.id), '/a');
  t.forget(a.id, 1);
  assert.throws(() => t.path(a.id), { code: 'ENOENT' });
  assert.notEqual(t.lookup('/a', 'file').id, a.id, 'ids are never reused');
  t.forget(ROOT_ID, 5);
  assert.equal(t.path(ROOT_ID), '/');
});

test('rename moves a directory and everything below it; the replaced target loses its path', () => {
  const t = new Inodes();
  const d = t.lookup('/d', 'dir');
  const f = t.lookup('/d/x/f', 'file');
  const other = t.lookup('/e', 'dir');
  const stale = t.lookup('/e/x/f', 'file'); // an id the kernel still held under the replaced target
  t.moved('/d', '/e');
  assert.equal(t.path(d.id), '/e');
  assert.equal(t.path(f.id), '/e/x/f');
  assert.throws(() => t.path(other.id), { code: 'ENOENT' });
  assert.throws(() => t.path(stale.id), { code: 'ENOENT' });
  assert.equal(t.idOf('/e'), d.id);
  assert.equal(t.idOf('/d'), undefined);
  // a prefix that is not a parent stays put
  const dd = t.lookup('/dd', 'file');
  t.moved('/e', '/g');
  assert.equal(t.path(dd.id), '/dd');
});

test('a path that changed kind gets a new id; the old id keeps no path', () => {
  const t = new Inodes();
  const a = t.lookup('/a', 'file');
  const b = t.lookup('/a', 'dir');
  assert.notEqual(a.id, b.id);
  assert.throws(() => t.path(a.id), { code: 'ENOENT' });
  t.forget(a.id, 1);
  assert.equal(t.path(b.id), '/a', 'forgetting the old id leaves the new one');
  t.removed('/a');
  assert.throws(() => t.path(b.id), { code: 'ENOENT' });
});

test("a LINK of an id held from before the file was linked: the new name shares the linked id, and every id of the file is invalidated", () => {
  const R = '0123456789abcdef0123456789abcdef';
  const t = new Inodes();
  const x = t.lookup('/a', 'file'); // held while /a was a plain file
  const y = t.lookup('/b', 'file', R); // a peer linked /a and /b; the kernel looked up /b first
  t.linked(x, R); // LINK of x (linkat on an old fd): the kernel expects x for the new name
  const c = t.lookup('/c', 'file', R);
  assert.equal(c.id, x.id, "link(2)'s new name shows the linked file's st_ino");
  assert.equal(t.lookup('/b', 'file', R).id, y.id, 'the other id keeps its name');
  assert.deepEqual(t.idsOfLink(R).sort(), [x.id, y.id].sort(), 'both are invalidated when the record changes');
  // Forgetting the first: the alias takes over.
  t.forget(x.id, 2);
  assert.deepEqual(t.idsOfLink(R), [y.id]);
  assert.equal(t.lookup('/d', 'file', R).id, y.id);
  t.forget(y.id, 3);
  assert.deepEqual(t.idsOfLink(R), []);
});

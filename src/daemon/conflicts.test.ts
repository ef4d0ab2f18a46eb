// Conflict copies as `delugefs conflicts` lists them (conflicts.ts): names read back exactly as
// merge.ts makes them, both versions of each, path order, and the cap on what one reply lists.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { listConflicts, parseConflictName, renderConflicts } from './conflicts.js';
import { conflictName } from '../meta/merge.js';
import { DirNode, LeafNode } from '../meta/tree.js';
import type { FileEntry, LinkEntry, DirEntry } from '../meta/entry.js';

const T = Date.UTC(2026, 0, 2, 3, 4, 5);
const dir = (): DirNode => new DirNode({ type: 'dir', mode: 0o755, uid: 0, gid: 0, mtime: T, ctime: T } as DirEntry);
const file = (size: number, node?: string, mtime = T): LeafNode => new LeafNode({
  type: 'file', mode: 0o644, uid: 0, gid: 0, mtime, ctime: mtime, node,
  info: { length: size, pieceLength: 65536, pieces: Buffer.alloc(20) }, id: 'a'.repeat(40),
} as unknown as FileEntry);

test('a conflict name reads back as the name, time and node it was made from', () => {
  for (const name of ['b.txt', 'notes', '.hidden', 'archive.tar.gz', 'é☃.md', 'x'.repeat(250) + '.txt']) {
    for (const n of [1, 2, 12]) {
      const made = conflictName(name, T, 'NODEabc-123', n);
      const p = parseConflictName(made);
      assert.ok(p, made);
      assert.equal(p.stamp, '20260102-030405');
      assert.equal(p.from, 'NODEabc123');
      // A name too long for the tag is cut (its stem): the original is then a prefix of it.
      if (name.length < 200) assert.equal(p.original, name, made);
      else assert.ok(name.startsWith(p.original.slice(0, -4)) && p.original.endsWith('.txt'), made);
    }
  }
  for (const plain of ['b.txt', 'a.sync-conflict-2026.txt', '.sync-conflict-20260102-030405-x', 'a.sync-conflict-20260102-030405-.txt']) {
    assert.equal(parseConflictName(plain), null, plain);
  }
});

test('every conflict copy in path order, with the version kept aside and the current one', () => {
  const root = dir();
  const d = dir();
  root.children.set('d', d);
  root.children.set('a.txt', file(6, 'nodeB'));
  root.children.set(conflictName('a.txt', T, 'nodeA'), file(5, 'nodeA'));
  d.children.set(conflictName('gone', T - 1000, 'nodeC'), file(3, 'nodeC', T - 1000));
  d.children.set('link', new LeafNode({ type: 'symlink', target: 'x', mode: 0o777, uid: 0, gid: 0, mtime: T, ctime: T } as LinkEntry));
  d.children.set(conflictName('link', T, 'nodeD'), new LeafNode({ type: 'symlink', target: 'y', mode: 0o777, uid: 0, gid: 0, mtime: T, ctime: T, node: 'nodeD' } as LinkEntry));
  const c = listConflicts(root);
  assert.equal(c.total, 3);
  assert.deepEqual(c.items.map((i) => [i.path, i.original, i.from]), [
    ['/a.sync-conflict-20260102-030405-nodeA.txt', '/a.txt', 'nodeA'],
    ['/d/gone.sync-conflict-20260102-030404-nodeC', '/d/gone', 'nodeC'],
    ['/d/link.sync-conflict-20260102-030405-nodeD', '/d/link', 'nodeD'],
  ]);
  assert.deepEqual(c.items[0]!.copy, { type: 'file', node: 'nodeA', mtime: T, size: 5 });
  assert.deepEqual(c.items[0]!.current, { type: 'file', node: 'nodeB', mtime: T, size: 6 });
  assert.equal(c.items[1]!.current, null);
  assert.deepEqual(c.items[2]!.current, { type: 'symlink', node: null, mtime: T, size: 0 });
  const text = renderConflicts(c);
  assert.match(text, /^3 conflict copies\n\/a\.sync-conflict-20260102-030405-nodeA\.txt\n  kept aside: file of 5 B, written by nodeA at 2026-01-02T03:04:05Z\n  now at \/a\.txt: file of 6 B, written by nodeB at 2026-01-02T03:04:05Z\n/);
  assert.match(text, /\n  \/d\/gone: nothing there now\n/);
  assert.equal(renderConflicts(listConflicts(dir())), 'no conflict copies');
});

test('one reply lists at most the cap, and counts them all', () => {
  const root = dir();
  for (let i = 0; i < 30; i++) root.children.set(conflictName(`f${String(i).padStart(2, '0')}`, T, 'n'), file(1));
  const c = listConflicts(root, 10);
  assert.equal(c.total, 30);
  assert.equal(c.items.length, 10);
  assert.equal(c.items[0]!.original, '/f00');
  assert.match(renderConflicts(c), /^30 conflict copies \(the first 10 shown\)\n/);
});

test('names are shown without terminal control characters (they are any member\'s bytes)', () => {
  const root = dir();
  root.children.set(conflictName('\x1b]0;owned\x07a', T, 'nodeA'), file(1, 'nodeA'));
  const text = renderConflicts(listConflicts(root));
  assert.doesNotMatch(text, /[\u0000-\u0009\u000b-\u001f\u007f-\u009f]/);
  assert.match(text, /\?\]0;owned\?a/);
});

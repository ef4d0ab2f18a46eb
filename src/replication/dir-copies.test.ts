import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Tree } from '../meta/tree.js';
import { hashBuffer } from '../content/hasher.js';
import { infoHash } from '../content/metainfo.js';
import type { DirEntry, FileEntry } from '../meta/entry.js';
import { copiesByContent, dirKey, dirSettings, DIR_COPIES_RECORD } from './dir-copies.js';
import { encodeSetting } from './settings.js';

const attrs = { mode: 0o755, uid: 0, gid: 0, mtime: 1, ctime: 1 };
const dir = (): DirEntry => ({ type: 'dir', ...attrs });
function file(data: string): FileEntry {
  const info = hashBuffer(Buffer.from(data));
  return { type: 'file', ...attrs, info, id: infoHash(info) };
}

test('per-directory copies: nearest setting wins, shared content takes the largest, the cluster value where a file has none', () => {
  const t = new Tree(dir());
  for (const d of ['/a', '/b', '/photos', '/photos/raw', '/scratch']) t.put(d, dir());
  const [x, p, q, shared, s] = ['x', 'p', 'q', 'shared', 's'].map(file);
  t.put('/a/x', x!);
  t.put('/photos/p', p!);
  t.put('/photos/raw/q', q!);
  t.put('/scratch/shared', shared!);
  t.put('/b/shared', shared!);
  t.put('/scratch/s', s!);
  t.put('/photos/raw/p-again', p!);
  const records = new Map<string, Buffer>([
    [dirKey('/photos'), encodeSetting({ path: '/photos', copies: 3 }, 'n')],
    [dirKey('/photos/raw/'), encodeSetting({ path: '/photos/raw/', copies: 4 }, 'n')],
    [dirKey('/scratch'), encodeSetting({ path: '/scratch', copies: 1 }, 'n')],
    [dirKey('/gone'), encodeSetting({ path: '/gone', copies: 0 }, 'n')], // removed
    [dirKey('/forged'), encodeSetting({ path: '/elsewhere', copies: 9 }, 'n')], // key is not the path's
    ['garbage', Buffer.from('not json')],
  ]);
  const settings = dirSettings(records);
  assert.deepEqual([...settings].sort(), [['/photos', 3], ['/photos/raw', 4], ['/scratch', 1]]);
  const m = copiesByContent(t, settings, 2);
  assert.equal(m.get(x!.id), undefined); // the cluster's
  assert.equal(m.get(p!.id), 4); // in /photos (3) and /photos/raw (4)
  assert.equal(m.get(q!.id), 4);
  assert.equal(m.get(shared!.id), 2); // /scratch says 1, /b has no setting: 2
  assert.equal(m.get(s!.id), 1);
  assert.equal(DIR_COPIES_RECORD, 'config/copies-dir/');
});

test("the placement hint is the least of the content's entries' hints, whatever the order the entries came in", () => {
  const f = file('same');
  const trees = [['aaaaaaaaaaaaaaa3', 'aaaaaaaaaaaaaaa2', 'aaaaaaaaaaaaaaa4'], ['aaaaaaaaaaaaaaa4', 'aaaaaaaaaaaaaaa2', 'aaaaaaaaaaaaaaa3']].map((order) => {
    const t = new Tree(dir());
    order.forEach((n, k) => t.put(`/f${k}`, { ...f, node: n }));
    return t;
  });
  for (const t of trees) assert.deepEqual(t.placer(f.id), ['aaaaaaaaaaaaaaa2']);
  // The least one's entry goes: the next least.
  const t = trees[0]!;
  t.remove('/f1'); // the least's
  assert.deepEqual(t.placer(f.id), ['aaaaaaaaaaaaaaa3']);
  // An entry's `at` is its hint (the writer first), whichever node made that version.
  t.put('/g', { ...f, node: 'aaaaaaaaaaaaaaab', at: ['aaaaaaaaaaaaaaa3', 'aaaaaaaaaaaaaaa7'] });
  assert.deepEqual(t.placer(f.id), ['aaaaaaaaaaaaaaa3']); // 'aaaaaaaaaaaaaaa3' < 'aaaaaaaaaaaaaaa3,aaaaaaaaaaaaaaa7'
  t.remove('/f0');
  assert.deepEqual(t.placer(f.id), ['aaaaaaaaaaaaaaa3', 'aaaaaaaaaaaaaaa7']);
  t.remove('/f2');
  assert.deepEqual(t.placer(f.id), ['aaaaaaaaaaaaaaa3', 'aaaaaaaaaaaaaaa7']);
  assert.equal(t.refCount(f.id), 1);
});

test("a `node` that is no node id (a peer's entry may say anything: ',', 'x', ids with commas) is no placement hint", () => {
  const f = file('poison');
  const t = new Tree(dir());
  for (const [k, node] of [',', 'x', 'bbbbbbbbbbbbbbbb,bbbbbbbbbbbbbbbb', ''].entries()) t.put(`/p${k}`, { ...f, node });
  assert.equal(t.placer(f.id), undefined);
  t.put('/honest', { ...f, node: 'cccccccccccccccc' });
  assert.deepEqual(t.placer(f.id), ['cccccccccccccccc']);
});

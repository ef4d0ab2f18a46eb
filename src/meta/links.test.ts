// Hard links in the namespace (issue 11): an inode record that the names point to, kept across a
// reload and merged deterministically: concurrent edits through different names keep both
// versions, deleting every name while another node edits keeps the edit, and a rename racing a
// delete keeps the file. Real Git repositories, two namespaces with a common history.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createHash } from 'node:crypto';
import { Namespace } from './namespace.js';
import { DirEntry, FileEntry } from './entry.js';
import { infoHash, pieceLengthFor } from '../content/metainfo.js';
import { silentLogger } from '../util/log.js';
import { run } from '../util/exec.js';
import { LeafNode } from './tree.js';

const T0 = Date.UTC(2026, 0, 2, 3, 4, 5);
const dir: DirEntry = { type: 'dir', mode: 0o755, uid: 0, gid: 0, mtime: T0, ctime: T0 };
function file(text: string, mtime = T0, node = 'n'): FileEntry {
  const data = Buffer.from(text);
  const info = { length: data.length, pieceLength: pieceLengthFor(data.length), pieces: createHash('sha1').update(data).digest() };
  return { type: 'file', mode: 0o644, uid: 0, gid: 0, mtime, ctime: mtime, info, id: infoHash(info), node };
}
const ID = '0123456789abcdef0123456789abcdef';

/** A with /shared hard-linked as /docs/alias, and B a clone of it. */
async function pair(d: string) {
  const a = await Namespace.create({ dir: join(d, 'a'), nodeId: 'nodeA', log: silentLogger }, dir, 'create');
  await a.apply({ o: 'put', p: '/shared', e: file('base') });
  await a.apply({ o: 'put', p: '/docs', e: dir });
  await a.apply({ o: 'link', p: '/shared', to: '/docs/alias', id: ID, t: T0 });
  await a.commit();
  await run('git', ['clone', '--bare', '-q', '--', a.repo.dir, join(d, 'b', 'repo.git')]);
  const b = await Namespace.open({ dir: join(d, 'b'), nodeId: 'nodeB', log: silentLogger });
  await b.finishRecovery();
  return { a, b };
}

async function exchange(from: Namespace, to: Namespace): Promise<string> {
  await from.commit();
  await run('git', [`--git-dir=${to.repo.dir}`, 'fetch', '-q', '--', from.repo.dir, `+refs/heads/main:refs/peers/x`]);
  return (await to.mergeFrom(from.head!)).head;
}

const text = (ns: Namespace, path: string) => {
  const e = ns.get(path)?.entry;
  return e?.type === 'file' ? e.info.length : undefined;
};
const links = (ns: Namespace, path: string) => (ns.get(path) as LeafNode | undefined)?.rec?.names.size ?? 0;
const files = (ns: Namespace, path: string) => [...((ns.get(path) as any)?.children?.keys() ?? [])].sort();

async function withPair(fn: (a: Namespace, b: Namespace, d: string) => Promise<void>): Promise<void> {
  const d = await mkdtemp(join(tmpdir(), 'dfs-links-'));
  try {
    const { a, b } = await pair(d);
    await fn(a, b, d);
    await a.close();
    await b.close();
  } finally {
    await rm(d, { recursive: true, force: true });
  }
}

test('names share one record: a write through one shows under the other, kept across a reload and on a clone', () => withPair(async (a, b, d) => {
  assert.equal(links(a, '/shared'), 2);
  assert.equal(a.get('/shared')!.entry, a.get('/docs/alias')!.entry);
  assert.equal(links(b, '/docs/alias'), 2, 'the clone loads both names of one record');
  await a.apply({ o: 'put', p: '/docs/alias', e: file('written through the alias', T0 + 1) });
  assert.equal(text(a, '/shared'), 'written through the alias'.length);
  // Unlinking one name keeps the other, with its record; unlinking the last drops the record.
  await a.apply({ o: 'rm', p: '/shared' });
  assert.equal(links(a, '/docs/alias'), 1);
  await a.commit();
  const again = await Namespace.open({ dir: join(d, 'a'), nodeId: 'nodeA', log: silentLogger });
  assert.equal(text(again, '/docs/alias'), 'written through the alias'.length);
  assert.equal(links(again, '/docs/alias'), 1);
  await again.close();
  await a.apply({ o: 'rm', p: '/docs/alias' });
  assert.equal(a.tree.inodes.size, 0);
  assert.equal([...a.tree.contentIds()].length, 0);
  await a.commit();
  const tree = (await run('git', [`--git-dir=${a.repo.dir}`, 'ls-tree', '-r', '--name-only', 'main'])).stdout.toString();
  assert.doesNotMatch(tree, /%inodes/);
}));

test('concurrent edits through two names on two nodes: one commit on both, the later version under both names, the other kept beside', () => withPair(async (a, b) => {
  await a.apply({ o: 'put', p: '/shared', e: file('A wrote this', T0 + 1000, 'nodeA') });
  await b.apply({ o: 'put', p: '/docs/alias', e: file('B wrote this later', T0 + 2000, 'nodeB') });
  const ha = await exchange(b, a);
  const hb = await exchange(a, b);
  assert.equal(ha, hb, 'both sides make the same merge commit');
  for (const ns of [a, b]) {
    assert.equal(text(ns, '/shared'), 'B wrote this later'.length);
    assert.equal(text(ns, '/docs/alias'), 'B wrote this later'.length);
    assert.equal(links(ns, '/shared'), 2);
    // A's version is kept as a plain file beside the first name in path order.
    assert.deepEqual(files(ns, '/docs'), ['alias', 'alias.sync-conflict-20260102-030406-nodeA']);
    assert.equal(text(ns, '/docs/alias.sync-conflict-20260102-030406-nodeA'), 'A wrote this'.length);
  }
}));

test('every name deleted on one node while the other edits: the edit is kept under its names', () => withPair(async (a, b) => {
  await a.apply({ o: 'rm', p: '/shared' });
  await a.apply({ o: 'rm', p: '/docs/alias' });
  await b.apply({ o: 'put', p: '/shared', e: file('edited on B', T0 + 1000, 'nodeB') });
  const ha = await exchange(b, a);
  const hb = await exchange(a, b);
  assert.equal(ha, hb);
  for (const ns of [a, b]) {
    assert.equal(text(ns, '/shared'), 'edited on B'.length);
    assert.equal(text(ns, '/docs/alias'), 'edited on B'.length);
    assert.equal(links(ns, '/shared'), 2);
  }
}));

test('a rename racing the deletion of every name keeps the renamed file', () => withPair(async (a, b) => {
  await a.apply({ o: 'rm', p: '/shared' });
  await a.apply({ o: 'rm', p: '/docs/alias' });
  await b.apply({ o: 'mv', p: '/shared', to: '/moved' });
  const ha = await exchange(b, a);
  const hb = await exchange(a, b);
  assert.equal(ha, hb);
  for (const ns of [a, b]) {
    assert.equal(text(ns, '/moved'), 'base'.length);
    assert.equal(links(ns, '/moved'), 1);
    assert.equal(ns.get('/shared'), undefined);
  }
}));

test('a link on one node racing an edit of the plain file on the other keeps both', async () => {
  const d = await mkdtemp(join(tmpdir(), 'dfs-links-'));
  try {
    const a = await Namespace.create({ dir: join(d, 'a'), nodeId: 'nodeA', log: silentLogger }, dir, 'create');
    await a.apply({ o: 'put', p: '/f', e: file('base') });
    await a.commit();
    await run('git', ['clone', '--bare', '-q', '--', a.repo.dir, join(d, 'b', 'repo.git')]);
    const b = await Namespace.open({ dir: join(d, 'b'), nodeId: 'nodeB', log: silentLogger });
    await b.finishRecovery();
    await a.apply({ o: 'link', p: '/f', to: '/g', id: ID, t: T0 + 10 });
    await b.apply({ o: 'put', p: '/f', e: file('edited plain', T0 + 5000, 'nodeB') });
    const ha = await exchange(b, a);
    const hb = await exchange(a, b);
    assert.equal(ha, hb);
    for (const ns of [a, b]) {
      // B's edit is later: it keeps /f; the linked version is /g and a conflict copy of /f.
      assert.equal(text(ns, '/f'), 'edited plain'.length);
      assert.equal(text(ns, '/g'), 'base'.length);
      const copies = files(ns, '/').filter((n) => n.startsWith('f.sync-conflict-'));
      assert.equal(copies.length, 1);
      assert.equal(links(ns, '/g'), 2);
    }
    await a.close();
    await b.close();
  } finally {
    await rm(d, { recursive: true, force: true });
  }
});

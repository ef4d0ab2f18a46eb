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

/** Each side merges the other's head as it was (not one after the other): the commits must agree. */
async function both(a: Namespace, b: Namespace): Promise<void> {
  await a.commit();
  await b.commit();
  const [ha, hb] = [a.head!, b.head!];
  await run('git', [`--git-dir=${a.repo.dir}`, 'fetch', '-q', '--', b.repo.dir, '+refs/heads/main:refs/peers/b']);
  await run('git', [`--git-dir=${b.repo.dir}`, 'fetch', '-q', '--', a.repo.dir, '+refs/heads/main:refs/peers/a']);
  const ma = (await a.mergeFrom(hb)).head, mb = (await b.mergeFrom(ha)).head;
  assert.equal(ma, mb, 'both sides make the same merge commit');
}
const rows = async (ns: Namespace) => (await run('git', [`--git-dir=${ns.repo.dir}`, 'ls-tree', '-r', '--name-only', 'main'])).stdout.toString().trim().split('\n');

test('every name replaced on one node while the other writes through one: the write is kept as a plain conflict copy', () => withPair(async (a, b) => {
  await a.apply({ o: 'put', p: '/x', e: file('xx') });
  await a.apply({ o: 'put', p: '/y', e: file('yyy') });
  await a.apply({ o: 'mv', p: '/x', to: '/shared' });
  await a.apply({ o: 'mv', p: '/y', to: '/docs/alias' });
  await b.apply({ o: 'put', p: '/shared', e: file('written on B meanwhile', T0 + 2000, 'nodeB') });
  await both(a, b);
  for (const ns of [a, b]) {
    assert.equal(text(ns, '/shared'), 2);
    assert.equal(text(ns, '/docs/alias'), 3);
    assert.deepEqual(files(ns, '/docs'), ['alias', 'alias.sync-conflict-20260102-030407-nodeB']);
    assert.equal(text(ns, '/docs/alias.sync-conflict-20260102-030407-nodeB'), 'written on B meanwhile'.length);
    assert.equal(links(ns, '/docs/alias.sync-conflict-20260102-030407-nodeB'), 0, 'a plain file now');
    assert.equal(ns.tree.inodes.size, 0);
  }
}));

test('a directory holding every name removed on one node while the other writes: the directory and the names come back with the write', () => withPair(async (a, b) => {
  await a.apply({ o: 'rm', p: '/shared' });
  await a.apply({ o: 'rm', p: '/docs/alias' });
  await a.apply({ o: 'rm', p: '/docs' });
  await b.apply({ o: 'put', p: '/docs/alias', e: file('written on B meanwhile', T0 + 2000, 'nodeB') });
  await both(a, b);
  for (const ns of [a, b]) {
    assert.equal(text(ns, '/docs/alias'), 'written on B meanwhile'.length);
    assert.equal(text(ns, '/shared'), 'written on B meanwhile'.length);
    assert.equal(links(ns, '/shared'), 2);
    assert.equal(ns.get('/docs')?.entry.type, 'dir');
  }
}));

test('two nodes each deleting one name (or replacing one and deleting the other): the file is gone everywhere', async () => {
  for (const onA of [async (a: Namespace) => a.apply({ o: 'rm', p: '/shared' }), async (a: Namespace) => {
    await a.apply({ o: 'put', p: '/x', e: file('xx') });
    await a.apply({ o: 'mv', p: '/x', to: '/shared' });
  }]) {
    await withPair(async (a, b) => {
      await onA(a);
      await b.apply({ o: 'rm', p: '/docs/alias' });
      await both(a, b);
      for (const ns of [a, b]) {
        assert.equal(ns.get('/docs/alias'), undefined, 'deleted on B: stays deleted');
        assert.equal(links(ns, '/shared'), 0);
        assert.equal(ns.tree.inodes.size, 0, 'no record left');
        assert.ok(!(await rows(ns)).some((r) => r.startsWith('%inodes')), 'none in Git either');
      }
    });
  }
});

test('a merge installed under a local unlink of the last other name: the record goes with it, in memory and in the next commit', () => withPair(async (a, b) => {
  await b.apply({ o: 'rm', p: '/docs/alias' });
  await b.commit();
  await run('git', [`--git-dir=${a.repo.dir}`, 'fetch', '-q', '--', b.repo.dir, '+refs/heads/main:refs/peers/b']);
  // A's unlink of /shared lands while the merge is computed (disjoint paths: installed under it).
  const repo = a.repo as unknown as { mergeBases: (...x: unknown[]) => Promise<unknown> };
  const orig = repo.mergeBases.bind(repo);
  let once = true;
  repo.mergeBases = async (...x: unknown[]) => {
    if (once) {
      once = false;
      await a.apply({ o: 'rm', p: '/shared' });
    }
    return orig(...x);
  };
  await a.mergeFrom(b.head!);
  assert.equal(a.tree.inodes.size, 0);
  assert.equal([...a.tree.contentIds()].length, 0, 'its content is no longer referenced');
  await a.commit();
  assert.ok(!(await rows(a)).some((r) => r.startsWith('%inodes')), `the commit holds no record: ${await rows(a)}`);
}));

test("a peer's head is refused when a record has no name, when it keeps names of a record it removed, or names a record that does not exist", async () => {
  const { buildTrees, objectId } = await import('./tree.js');
  const { encodeRef, encodeEntry } = await import('./entry.js');
  type Row = { mode: string; oid: string };
  const forge = async (ns: Namespace, edit: (m: Map<string, Row>, blob: (data: Buffer) => Row) => void) => {
    const c = await ns.repo.readCommit(ns.head!);
    const m = new Map<string, Row>();
    for (const r of await ns.repo.lsTree(c.tree)) if (r.type === 'blob') m.set(r.path, { mode: r.mode, oid: r.oid });
    const objects: { type: 'blob' | 'tree' | 'commit'; oid: string; data: Buffer }[] = [];
    edit(m, (data) => {
      const oid = objectId('blob', data);
      objects.push({ type: 'blob', oid, data });
      return { mode: '100644', oid };
    });
    const root = buildTrees(m, objects as never);
    const data = Buffer.from(`tree ${root}\nparent ${ns.head}\nauthor e <e@x> 1767323045 +0000\ncommitter e <e@x> 1767323045 +0000\n\nforged\n`);
    const oid = objectId('commit', data);
    await ns.repo.writeObjects([...objects, { type: 'commit', oid, data }] as never);
    return oid;
  };
  const other = 'fe'.repeat(16);
  const cases: [string, (m: Map<string, Row>, blob: (d: Buffer) => Row) => void, RegExp][] = [
    ['a record no name points to', (m, blob) => m.set(`%inodes/fe/${other}`, blob(encodeEntry(file('pinned')))), /record .* with no name/],
    ['the record removed, its names kept', (m) => m.delete(`%inodes/01/${ID}`), /keeps names of a hard-linked file whose record it removed/],
    ['a new name of a record that does not exist', (m, blob) => m.set('dangling', blob(encodeRef(other))), /names a hard-linked file whose record is missing/],
  ];
  for (const [what, edit, why] of cases) {
    await withPair(async (a, b) => {
      const head = await forge(b, edit);
      await run('git', [`--git-dir=${a.repo.dir}`, 'fetch', '-q', '--', b.repo.dir, `${head}:refs/peers/b`]);
      const before = a.head;
      await assert.rejects(a.mergeFrom(head), why, what);
      assert.equal(a.head, before, `${what}: nothing taken`);
      assert.equal(links(a, '/shared'), 2);
    });
  }
});

test('two nodes linking one plain file at once make one file with every name, and no conflict copy', async () => {
  const { firstLinkId } = await import('./entry.js');
  const d = await mkdtemp(join(tmpdir(), 'dfs-links-'));
  try {
    const a = await Namespace.create({ dir: join(d, 'a'), nodeId: 'nodeA', log: silentLogger }, dir, 'create');
    await a.apply({ o: 'put', p: '/f', e: file('base') });
    await a.commit();
    await run('git', ['clone', '--bare', '-q', '--', a.repo.dir, join(d, 'b', 'repo.git')]);
    const b = await Namespace.open({ dir: join(d, 'b'), nodeId: 'nodeB', log: silentLogger });
    await b.finishRecovery();
    // As DelugeNode.link names the record: from the file, so both nodes agree.
    const id = firstLinkId('/f', a.get('/f')!.entry);
    assert.equal(firstLinkId('/f', b.get('/f')!.entry), id);
    await a.apply({ o: 'link', p: '/f', to: '/l1', id, t: T0 + 10 });
    await b.apply({ o: 'link', p: '/f', to: '/l2', id, t: T0 + 20 });
    await both(a, b);
    for (const ns of [a, b]) {
      assert.deepEqual(files(ns, '/'), ['f', 'l1', 'l2']);
      assert.equal(links(ns, '/f'), 3);
      assert.equal(ns.tree.inodes.size, 1);
      assert.equal(ns.get('/l1')!.entry.ctime, T0 + 20, 'the later ctime');
    }
    await a.close();
    await b.close();
  } finally {
    await rm(d, { recursive: true, force: true });
  }
});

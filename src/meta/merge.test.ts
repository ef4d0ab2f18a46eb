import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createHash } from 'node:crypto';
import { Namespace } from './namespace.js';
import { DirEntry, FileEntry } from './entry.js';
import { infoHash, pieceLengthFor } from '../content/metainfo.js';
import { silentLogger, createLogger } from '../util/log.js';
import { run } from '../util/exec.js';
import { computeMerge, conflictName } from './merge.js';
import { badRows as badRowsOf, rawTree, treeRows } from './bad-names.fixture.js';

const badRows = (gitDir: string) => badRowsOf(gitDir, file('evil'), dir);

const T0 = Date.UTC(2026, 0, 2, 3, 4, 5);
const dir: DirEntry = { type: 'dir', mode: 0o755, uid: 0, gid: 0, mtime: T0, ctime: T0 };
function file(text: string, mtime = T0, node = 'n'): FileEntry {
  const data = Buffer.from(text);
  const info = { length: data.length, pieceLength: pieceLengthFor(data.length), pieces: createHash('sha1').update(data).digest() };
  return { type: 'file', mode: 0o644, uid: 0, gid: 0, mtime, ctime: mtime, info, id: infoHash(info), node };
}

/** Two nodes with a common history: B starts as a clone of A's repository. */
async function pair(d: string) {
  const a = await Namespace.create({ dir: join(d, 'a'), nodeId: 'nodeA', log: silentLogger }, dir, 'create');
  await a.apply({ o: 'put', p: '/shared', e: file('base') });
  await a.apply({ o: 'put', p: '/docs', e: dir });
  await a.apply({ o: 'put', p: '/docs/keep', e: file('keep') });
  await a.setRecord('members/nodeA', Buffer.from('{"a":1}'));
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

function names(ns: Namespace, path: string): string[] {
  return [...(ns.get(path) as any).children.keys()].sort();
}

/** adoptHeads with `change` made once while the view is computed (`refusal` is asked after A's pending changes are committed). */
function adoptUnder(ns: Namespace, heads: string[], change: () => Promise<void>) {
  let first = true;
  return ns.adoptHeads(heads, () => { if (first) void change(); first = false; return null; });
}

/** The paths of a commit's files (markers left out). */
async function committedPaths(ns: Namespace, commit: string): Promise<string[]> {
  return (await run('git', [`--git-dir=${ns.repo.dir}`, 'ls-tree', '-r', '--name-only', commit])).stdout.toString().split('\n').filter((n) => n && !n.includes('%'));
}

test('conflict names follow the sync-conflict pattern', () => {
  assert.equal(conflictName('report.txt', T0, 'nodeB'), 'report.sync-conflict-20260102-030405-nodeB.txt');
  assert.equal(conflictName('Makefile', T0, 'x'), 'Makefile.sync-conflict-20260102-030405-x');
  assert.equal(conflictName('.bashrc', T0, 'x'), '.bashrc.sync-conflict-20260102-030405-x');
});

test('concurrent changes merge to the same commit on both sides, losing nothing', async () => {
  const d = await mkdtemp(join(tmpdir(), 'dfs-merge-'));
  try {
    const { a, b } = await pair(d);
    // Both change /shared (B later: B keeps the name), A deletes /docs/keep while B modifies it,
    // each adds a file, both add /new (A later), B adds a record, A makes a dir where B makes a file.
    await a.apply({ o: 'put', p: '/shared', e: file('from A', T0 + 1000, 'nodeA') });
    await b.apply({ o: 'put', p: '/shared', e: file('from B', T0 + 2000, 'nodeB') });
    await a.apply({ o: 'rm', p: '/docs/keep' });
    await b.apply({ o: 'put', p: '/docs/keep', e: file('edited', T0 + 500, 'nodeB') });
    await a.apply({ o: 'put', p: '/onlyA', e: file('A') });
    await b.apply({ o: 'put', p: '/onlyB', e: file('B') });
    await a.apply({ o: 'put', p: '/new', e: file('new A', T0 + 9000, 'nodeA') });
    await b.apply({ o: 'put', p: '/new', e: file('new B', T0 + 8000, 'nodeB') });
    await b.setRecord('members/nodeB', Buffer.from('{"b":1}'));
    await a.apply({ o: 'put', p: '/clash', e: dir });
    await a.apply({ o: 'put', p: '/clash/inside', e: file('in') });
    await b.apply({ o: 'put', p: '/clash', e: file('flat', T0 + 100, 'nodeB') });

    const ha = await exchange(b, a); // A merges B's head
    const hb = await exchange(a, b); // B merges A's head: must reach the same commit
    assert.equal(ha, hb, 'both sides must end on the identical head');
    const again = await exchange(b, a);
    assert.equal(again, ha, 'no merge of merges');

    for (const ns of [a, b]) {
      assert.equal((ns.get('/shared') as any).entry.id, file('from B').id);
      assert.ok(ns.get('/shared.sync-conflict-19700101-000000-nodeA') === undefined);
      const root = names(ns, '/');
      const stamp = (ms: number) => conflictName('x', ms, 'n').slice('x.sync-conflict-'.length, -2);
      assert.ok(root.includes(`shared.sync-conflict-${stamp(T0 + 1000)}-nodeA`), root.join(','));
      assert.ok(root.includes(`new.sync-conflict-${stamp(T0 + 8000)}-nodeB`), root.join(','));
      assert.equal((ns.get('/new') as any).entry.id, file('new A').id);
      assert.equal((ns.get('/docs/keep') as any).entry.id, file('edited').id, 'delete racing modify keeps the modify');
      assert.ok(ns.get('/onlyA') && ns.get('/onlyB'));
      assert.equal(ns.get('/clash')!.kind, 'dir');
      assert.ok(ns.get('/clash/inside'));
      assert.ok(root.some((n) => n.startsWith('clash.sync-conflict-')), root.join(','));
      assert.deepEqual([...ns.listRecords('members/').keys()].sort(), ['nodeA', 'nodeB']);
    }
    // The in-memory tree agrees with Git: a commit with no changes keeps the head, and a fresh
    // load of the head shows the same names.
    await a.apply({ o: 'put', p: '/after', e: file('after') });
    await a.commit();
    const fsck = await a.repo.fsck();
    assert.ok(fsck.ok, fsck.output);
    const ls = await run('git', [`--git-dir=${a.repo.dir}`, 'ls-tree', '--name-only', 'main']);
    assert.deepEqual(ls.stdout.toString().trim().split('\n').filter((n) => !n.startsWith('%')).sort(),
      [...names(a, '/')].map((n) => n).sort());
    await a.close();
    await b.close();
    const reopened = await Namespace.open({ dir: join(d, 'b'), nodeId: 'nodeB', log: silentLogger });
    await reopened.finishRecovery();
    assert.deepEqual(names(reopened, '/'), names(b, '/'));
    await reopened.close();
  } finally {
    await rm(d, { recursive: true, force: true });
  }
});

test('a fast-forward needs no merge commit, and unrelated histories are refused', async () => {
  const d = await mkdtemp(join(tmpdir(), 'dfs-merge-'));
  try {
    const { a, b } = await pair(d);
    await a.apply({ o: 'put', p: '/ff', e: file('ff') });
    const h = await exchange(a, b);
    assert.equal(h, a.head);
    assert.ok(b.get('/ff'));
    const other = await Namespace.create({ dir: join(d, 'c'), nodeId: 'nodeC', log: silentLogger }, dir, 'create');
    await run('git', [`--git-dir=${b.repo.dir}`, 'fetch', '-q', '--', other.repo.dir, '+refs/heads/main:refs/peers/c']);
    await assert.rejects(b.mergeFrom(other.head!), /no common history/);
    await Promise.all([a.close(), b.close(), other.close()]);
  } finally {
    await rm(d, { recursive: true, force: true });
  }
});

test('a head carrying a malformed entry is refused and changes nothing', async () => {
  const d = await mkdtemp(join(tmpdir(), 'dfs-merge-'));
  try {
    const { a, b } = await pair(d);
    const git = (args: string[], input?: string) => run('git', [`--git-dir=${b.repo.dir}`, ...args], { input });
    const headTree = (await git(['rev-parse', 'main^{tree}'])).stdout.toString().trim();
    const before = a.head;
    for (const [name, blob] of [['bad', 'not bencode'], ['%2E%2E', 'x'], ['%weird', 'x']]) {
      const bad = (await git(['hash-object', '-w', '--stdin'], blob)).stdout.toString().trim();
      const listing = (await git(['ls-tree', headTree])).stdout.toString();
      const tree = (await git(['mktree'], listing + `100644 blob ${bad}\t${name}\n`)).stdout.toString().trim();
      const commit = (await git(['commit-tree', tree, '-p', 'main', '-m', 'evil'])).stdout.toString().trim();
      await git(['update-ref', 'refs/evil', commit]);
      await run('git', [`--git-dir=${a.repo.dir}`, 'fetch', '-q', '--', b.repo.dir, '+refs/evil:refs/peers/evil']);
      await assert.rejects(a.mergeFrom(commit), /merge rejected/, name);
      assert.equal(a.head, before);
      assert.equal((await a.repo.head()), before);
    }
    await Promise.all([a.close(), b.close()]);
  } finally {
    await rm(d, { recursive: true, force: true });
  }
});

test('conflict names fit in 255 bytes: the stem cut on a character boundary, the extension kept when it fits', () => {
  const bytes = (s: string) => Buffer.byteLength(s);
  const wellFormed = (s: string) => Buffer.from(s).toString() === s; // a split surrogate pair would not survive
  for (const ch of ['a', 'é', '€', '😀']) {
    for (let len = 1; bytes(ch.repeat(len) + '.txt') <= 255; len++) {
      const name = ch.repeat(len) + '.txt';
      for (const n of [1, 2, 123]) {
        const c = conflictName(name, T0, 'nodeBnodeBnodeBnodeB', n);
        assert.ok(bytes(c) <= 255, `${bytes(c)} bytes: ${c}`);
        assert.ok(wellFormed(c), c);
        assert.ok(c.startsWith(ch), c);
        assert.ok(c.endsWith(`.sync-conflict-20260102-030405-nodeBnodeBnodeBn.txt${n > 1 ? `.${n}` : ''}`), c);
      }
    }
  }
  // 255 bytes of stem: cut to what fits, never below it.
  const c = conflictName('a'.repeat(251) + '.txt', T0, 'nodeB');
  assert.equal(bytes(c), 255);
  // An extension too long to keep beside a stem is cut with it.
  const long = conflictName('a.' + 'b'.repeat(253), T0, 'nodeB');
  assert.ok(bytes(long) <= 255 && long.startsWith('a.bbb') && long.endsWith('-nodeB'), long);
  const dotted = conflictName('.' + 'x'.repeat(254), T0, 'nodeB');
  assert.ok(bytes(dotted) <= 255 && dotted.startsWith('.xxx'), dotted);
});

test('a long name changed on both sides merges to one head with conflict copies that fit and differ', async () => {
  const d = await mkdtemp(join(tmpdir(), 'dfs-merge-'));
  try {
    const { a, b } = await pair(d);
    // 240+ bytes: the plain suffix would pass 255. Two names that share the part kept of the stem.
    const p = 'é'.repeat(118); // 236 bytes
    const names2 = [`/${p}x.txt`, `/${p}y.txt`, `/${'L'.repeat(255)}`];
    for (const n of names2) {
      await a.apply({ o: 'put', p: n, e: file('base') });
    }
    await exchange(a, b);
    for (const n of names2) {
      await a.apply({ o: 'put', p: n, e: file('from A', T0 + 1000, 'nodeA') });
      await b.apply({ o: 'put', p: n, e: file('from B', T0 + 2000, 'nodeB') });
    }
    const ha = await exchange(b, a);
    const hb = await exchange(a, b);
    assert.equal(ha, hb, 'both sides end on the identical head');
    for (const ns of [a, b]) {
      const root = names(ns, '/');
      const copies = root.filter((n) => n.includes('.sync-conflict-'));
      assert.equal(copies.length, 3, root.join('\n'));
      for (const n of copies) assert.ok(Buffer.byteLength(n) <= 255, n);
      for (const n of names2) assert.equal((ns.get(n) as any).entry.id, file('from B').id);
    }
    // Sync goes on: a later change still merges.
    await b.apply({ o: 'put', p: '/later', e: file('later') });
    assert.equal(await exchange(b, a), b.head);
    assert.ok(a.get('/later'));
    await Promise.all([a.close(), b.close()]);
  } finally {
    await rm(d, { recursive: true, force: true });
  }
});

test('a head carrying a bad name is refused (fast-forward or merge), and later good heads merge', async () => {
  const d = await mkdtemp(join(tmpdir(), 'dfs-merge-'));
  try {
    const { a, b } = await pair(d);
    const git = async (args: string[]) => (await run('git', ['--git-dir', b.repo.dir, ...args])).stdout.toString().trim();
    for (const kind of ['fast-forward', 'merge']) {
      if (kind === 'merge') {
        await a.apply({ o: 'put', p: '/localA', e: file('local') });
        await a.commit();
      }
      const before = a.head;
      const listing = names(a, '/');
      for (const [what, rows] of await badRows(b.repo.dir)) {
        const tree = await rawTree(b.repo.dir, [...(await treeRows(b.repo.dir, await git(['rev-parse', 'main^{tree}']))), ...rows]);
        const commit = await git(['commit-tree', tree, '-p', 'main', '-m', 'evil']);
        await git(['update-ref', 'refs/evil', commit]);
        await run('git', ['--git-dir', a.repo.dir, 'fetch', '-q', b.repo.dir, '+refs/evil:refs/peers/evil']);
        await assert.rejects(a.mergeFrom(commit), /merge rejected/, `${kind}: ${what}`);
        assert.equal(a.head, before, what);
        assert.equal(await a.repo.head(), before, what);
        assert.deepEqual(names(a, '/'), listing, what);
      }
      await b.apply({ o: 'put', p: `/good-${kind}`, e: file('good') });
      await exchange(b, a);
      assert.ok(a.get(`/good-${kind}`), kind);
    }
    await Promise.all([a.close(), b.close()]);
  } finally {
    await rm(d, { recursive: true, force: true });
  }
});

test('a repository that already holds bad names opens; they are skipped with a log line', async () => {
  const d = await mkdtemp(join(tmpdir(), 'dfs-merge-'));
  try {
    const { a, b } = await pair(d);
    await b.close();
    const listing = names(a, '/');
    await a.close();
    const gitDir = a.repo.dir;
    const git = async (args: string[]) => (await run('git', ['--git-dir', gitDir, ...args])).stdout.toString().trim();
    const bad = await badRows(gitDir);
    const tree = await rawTree(gitDir, [...(await treeRows(gitDir, await git(['rev-parse', 'main^{tree}']))), ...bad.flatMap(([, r]) => r)]);
    await git(['update-ref', 'refs/heads/main', await git(['commit-tree', tree, '-p', 'main', '-m', 'evil'])]);
    const lines: string[] = [];
    const log = createLogger({}, 'warn', (l) => lines.push(l));
    const ns = await Namespace.open({ dir: join(d, 'a'), nodeId: 'nodeA', log });
    await ns.finishRecovery();
    // The good names of the bad rows stay: 'same' (its second spelling is skipped) and one of 'fd'.
    assert.deepEqual(names(ns, '/'), [...listing, 'fd', 'same'].sort());
    const skipped = lines.map((l) => JSON.parse(l)).filter((l) => l.event === 'meta.load.skip');
    assert.ok(skipped.length >= 14, lines.join(''));
    // The head left them out at once (they stay in history), so peers accept it.
    const stored = (await treeRows(gitDir, await git(['rev-parse', 'main^{tree}']))).map((r) => r.name.toString()).filter((n) => !n.startsWith('%'));
    assert.deepEqual(stored.sort(), [...listing, 'fd', 'same'].sort());
    await ns.apply({ o: 'put', p: '/after', e: file('after') });
    await ns.commit();
    assert.ok(ns.get('/after'));
    await ns.close();
  } finally {
    await rm(d, { recursive: true, force: true });
  }
});

test('many conflicts at once: each free conflict name is found without scanning every path (linear, not quadratic)', async () => {
  const d = await mkdtemp(join(tmpdir(), 'dfs-merge-'));
  try {
    const { a, b } = await pair(d);
    // Both sides write the same 2000 names while apart (two nodes unpacking one archive): 2000 conflicts.
    const N = 2000;
    for (let i = 0; i < N; i++) await a.apply({ o: 'put', p: `/docs/f${i}`, e: file(`a${i}`, T0 + 1000) });
    for (let i = 0; i < N; i++) await b.apply({ o: 'put', p: `/docs/f${i}`, e: file(`b${i}`, T0 + 2000) });
    await a.commit();
    await run('git', [`--git-dir=${b.repo.dir}`, 'fetch', '-q', '--', a.repo.dir, '+refs/heads/main:refs/peers/x']);
    // Work, not time: a scan of every path per conflict name calls Map#keys once per conflict.
    const keys = Map.prototype.keys;
    let scans = 0;
    Map.prototype.keys = function (this: Map<unknown, unknown>) { scans++; return keys.call(this); };
    try {
      await b.mergeFrom(a.head!);
    } finally {
      Map.prototype.keys = keys;
    }
    assert.ok(scans < N / 4, `${scans} scans of a map's keys for ${N} conflicts`);
    const copies = names(b, '/docs').filter((n) => n.includes('.sync-conflict-'));
    assert.equal(copies.length, N);
    assert.equal(new Set(copies).size, N);
    await a.close();
    await b.close();
  } finally {
    await rm(d, { recursive: true, force: true });
  }
});

test('a head whose tree names one subtree over and over (a tree bomb) is refused once past the row cap, without expanding it all', async () => {
  const d = await mkdtemp(join(tmpdir(), 'dfs-merge-'));
  try {
    const { a, b } = await pair(d);
    await a.close();
    const gitDir = b.repo.dir;
    const git = async (args: string[]) => (await run('git', ['--git-dir', gitDir, ...args])).stdout.toString().trim();
    const blob = await git(['rev-parse', 'main:shared']);
    // 16 names for one subtree, 4 levels deep: 5 objects of < 1 KiB, 16^4 rows expanded (each level more: x16).
    let sub = await rawTree(gitDir, Array.from({ length: 16 }, (_, i) => ({ mode: '100644', name: Buffer.from(`f${i}`), oid: blob })));
    for (let level = 0; level < 3; level++) sub = await rawTree(gitDir, Array.from({ length: 16 }, (_, i) => ({ mode: '40000', name: Buffer.from(`d${i}`), oid: sub })));
    const head = await git(['rev-parse', 'main']);
    const tree = await rawTree(gitDir, [...(await treeRows(gitDir, `${head}^{tree}`)), { mode: '40000', name: Buffer.from('bomb'), oid: sub }]);
    const bomb = await git(['commit-tree', tree, '-p', head, '-m', 'bomb']);
    await assert.rejects(computeMerge(b.repo, head, bomb, 10_000), /expands to more than 10000 entries/);
    // Our own head is not capped: what is in it passed the cap or was written here.
    assert.ok((await b.repo.lsTree(tree)).length > 65_536);
    await b.close();
  } finally {
    await rm(d, { recursive: true, force: true });
  }
});

test('a head whose blobs add up past the cap is refused from their headers, before any is read', async () => {
  const d = await mkdtemp(join(tmpdir(), 'dfs-merge-'));
  try {
    const { a, b } = await pair(d);
    await a.close();
    const gitDir = b.repo.dir;
    const git = async (args: string[], input?: Buffer) => (await run('git', ['--git-dir', gitDir, ...args], { input })).stdout.toString().trim();
    // Each blob far under the 16 MiB an entry may have, and they compress to nothing: 4 MiB together.
    const rows = [];
    for (let i = 0; i < 4; i++) {
      const zeros = Buffer.alloc(2 ** 20);
      zeros.writeUInt32BE(i, 0);
      rows.push({ mode: '100644', name: Buffer.from(`z${i}`), oid: await git(['hash-object', '-w', '--stdin'], zeros) });
    }
    const head = await git(['rev-parse', 'main']);
    const tree = await rawTree(gitDir, [...(await treeRows(gitDir, `${head}^{tree}`)), ...rows]);
    const big = await git(['commit-tree', tree, '-p', head, '-m', 'zeros']);
    await assert.rejects(computeMerge(b.repo, head, big, undefined, 2 * 2 ** 20), /add up to 41\d{5} bytes, more than the 2097152/);
    await b.close();
  } finally {
    await rm(d, { recursive: true, force: true });
  }
});

test('a view of several heads is one commit whatever the order they arrive in, and two heads give the merge commit', async () => {
  const d = await mkdtemp(join(tmpdir(), 'dfs-view-'));
  try {
    const { a, b } = await pair(d);
    await run('git', ['clone', '--bare', '-q', '--', a.repo.dir, join(d, 'c', 'repo.git')]);
    const c = await Namespace.open({ dir: join(d, 'c'), nodeId: 'nodeC', log: silentLogger });
    await c.finishRecovery();
    // Three writers: one path written by all (two conflict copies), one each of their own.
    for (const [k, ns] of [a, b, c].entries()) {
      await ns.apply({ o: 'put', p: '/shared', e: file(`v${k}`, T0 + 1000 * (k + 1), ns === a ? 'nodeA' : ns === b ? 'nodeB' : 'nodeC') });
      await ns.apply({ o: 'put', p: `/own-${k}`, e: file(`own${k}`) });
      await ns.commit();
    }
    const heads = [a.head!, b.head!, c.head!];
    const fetchAll = async (to: Namespace) => {
      for (const [k, from] of [a, b, c].entries()) await run('git', [`--git-dir=${to.repo.dir}`, 'fetch', '-q', '--', from.repo.dir, `+refs/heads/main:refs/peers/h${k}`]);
    };
    await fetchAll(a);
    await fetchAll(b);
    const onA = await a.adoptHeads([heads[2]!, heads[1]!]);
    const onB = await b.adoptHeads([heads[0]!, heads[2]!]);
    assert.equal(onA.head, onB.head, 'same view from the same set, given in other orders');
    const parents = (await run('git', [`--git-dir=${a.repo.dir}`, 'rev-list', '--parents', '-n1', onA.head])).stdout.toString().trim().split(' ').slice(1);
    assert.deepEqual(parents, [...heads].sort(), 'one commit whose parents are the three heads');
    assert.deepEqual(names(a, '/').filter((n) => n.startsWith('shared')).length, 3, 'the newest keeps the name, two conflict copies');
    assert.deepEqual(names(a, '/'), names(b, '/'));
    // Idempotent: nothing new, no new commit.
    assert.deepEqual(await a.adoptHeads([heads[1]!, heads[2]!]), { head: onA.head, changed: false });
    // Two heads: exactly the pairwise merge commit.
    await fetchAll(c);
    const pairwise = await computeMerge(c.repo, heads[2]!, heads[0]!);
    assert.equal((await c.adoptHeads([heads[0]!])).head, pairwise.commit);
    for (const ns of [a, b, c]) await ns.close();
  } finally {
    await rm(d, { recursive: true, force: true });
  }
});

test('a dotfile made with its new directory reaches the other side (its escaped name sorts before the marker)', async () => {
  const d = await mkdtemp(join(tmpdir(), 'dfs-merge-dot-'));
  try {
    const { a, b } = await pair(d);
    await b.apply({ o: 'put', p: '/newdir', e: dir });
    await b.apply({ o: 'put', p: '/newdir/.hidden', e: file('secret') });
    await b.apply({ o: 'put', p: '/newdir/shown', e: file('shown') });
    await exchange(b, a);
    assert.deepEqual(names(a, '/newdir'), ['.hidden', 'shown']);
    await a.close();
    await b.close();
  } finally {
    await rm(d, { recursive: true, force: true });
  }
});

test('a view goes in under local changes made while it was computed when their paths are apart; else they are merged', async () => {
  const d = await mkdtemp(join(tmpdir(), 'dfs-view-under-'));
  try {
    const { a, b } = await pair(d);
    await b.apply({ o: 'put', p: '/from-b', e: file('b') });
    await b.apply({ o: 'put', p: '/shared', e: file('b wins', T0 + 5000, 'nodeB') });
    await b.commit();
    await run('git', [`--git-dir=${a.repo.dir}`, 'fetch', '-q', '--', b.repo.dir, `+refs/heads/main:refs/peers/b`]);
    // What it applies arrives while the view is computed.
    const r = await adoptUnder(a, [b.head!], () => a.apply({ o: 'put', p: '/docs/local', e: file('mine') }));
    assert.equal(r.head, b.head, 'the view itself (a fast-forward), not a merge with a new commit of ours');
    assert.deepEqual(names(a, '/'), ['docs', 'from-b', 'shared']);
    assert.deepEqual(names(a, '/docs'), ['keep', 'local']);
    await a.commit();
    const parent = (await run('git', [`--git-dir=${a.repo.dir}`, 'rev-parse', `${a.head}^`])).stdout.toString().trim();
    assert.equal(parent, b.head, 'the local change is committed on top of the view');
    assert.deepEqual(await committedPaths(a, a.head!), ['docs/keep', 'docs/local', 'from-b', 'shared'], 'the commit holds the local change (the view\'s tree ids were not taken for its directory)');

    // A local change to a path the view changes: not installed under it; both versions are kept.
    await b.apply({ o: 'put', p: '/shared', e: file('b again', T0 + 9000, 'nodeB') });
    await b.commit();
    await run('git', [`--git-dir=${a.repo.dir}`, 'fetch', '-q', '--', b.repo.dir, `+refs/heads/main:refs/peers/b`]);
    // `refusal` is asked again on the second round: the change is made once, while computing.
    const r2 = await adoptUnder(a, [b.head!], () => a.apply({ o: 'put', p: '/shared', e: file('a local', T0 + 8000, 'nodeA') }));
    assert.notEqual(r2.head, b.head, 'merged with the local change, not installed under it');
    assert.equal(names(a, '/').filter((n) => n.startsWith('shared')).length, 2, 'the newer keeps the name, the local one a conflict copy');
    await a.close();
    await b.close();
  } finally {
    await rm(d, { recursive: true, force: true });
  }
});

test('a view installed under local changes keeps, in the next commit, an entry the tree could not take when its directory holds no local change', async () => {
  const d = await mkdtemp(join(tmpdir(), 'dfs-view-under-'));
  try {
    const { a, b } = await pair(d);
    await b.apply({ o: 'put', p: '/sub', e: dir });
    await b.apply({ o: 'put', p: '/sub/x', e: file('x') });
    await exchange(b, a);
    // B's next head holds sub/odd/f in a directory without its marker: the tree skips it (ENOENT).
    const git = async (args: string[], input?: string) => (await run('git', ['--git-dir', b.repo.dir, ...args], { input })).stdout.toString().trim();
    const blob = (await git(['rev-parse', `${b.head}:sub/x`]));
    const odd = await rawTree(b.repo.dir, [{ mode: '100644', name: Buffer.from('f'), oid: blob }]);
    const sub = await rawTree(b.repo.dir, [...(await treeRows(b.repo.dir, `${b.head}:sub`)), { mode: '40000', name: Buffer.from('odd'), oid: odd }]);
    const root = await rawTree(b.repo.dir, [...(await treeRows(b.repo.dir, `${b.head}^{tree}`)).filter((r) => r.name.toString() !== 'sub'), { mode: '40000', name: Buffer.from('sub'), oid: sub }]);
    const head = await git(['commit-tree', root, '-p', b.head!, '-m', 'odd']);
    await git(['update-ref', 'refs/odd', head]);
    await run('git', [`--git-dir=${a.repo.dir}`, 'fetch', '-q', '--', b.repo.dir, '+refs/odd:refs/peers/b']);
    await adoptUnder(a, [head], () => a.apply({ o: 'put', p: '/docs/local', e: file('mine') }));
    assert.equal(a.head, head, 'installed under the local change');
    await a.commit();
    assert.deepEqual(await committedPaths(a, a.head!), ['docs/keep', 'docs/local', 'shared', 'sub/odd/f', 'sub/x'], 'the remote entry is not reverted by the next local commit');
    // Not under local changes: the same (the directories above the skipped entry take the view's ids).
    const ga = async (args: string[]) => (await run('git', ['--git-dir', a.repo.dir, ...args])).stdout.toString().trim();
    const sub2 = await rawTree(a.repo.dir, [...(await treeRows(a.repo.dir, `${a.head}:sub`)), { mode: '40000', name: Buffer.from('odd2'), oid: odd }]);
    const root2 = await rawTree(a.repo.dir, [...(await treeRows(a.repo.dir, `${a.head}^{tree}`)).filter((r) => r.name.toString() !== 'sub'), { mode: '40000', name: Buffer.from('sub'), oid: sub2 }]);
    const head2 = await ga(['commit-tree', root2, '-p', a.head!, '-m', 'odd2']);
    await a.adoptHeads([head2]);
    assert.equal(a.head, head2);
    await a.apply({ o: 'put', p: '/docs/local2', e: file('mine') });
    await a.commit();
    assert.deepEqual(await committedPaths(a, a.head!), ['docs/keep', 'docs/local', 'docs/local2', 'shared', 'sub/odd/f', 'sub/odd2/f', 'sub/x']);
    await a.close();
    await b.close();
  } finally {
    await rm(d, { recursive: true, force: true });
  }
});

test('a view installed under a local record change: the next commit holds the record (the root tree is written anew)', async () => {
  const d = await mkdtemp(join(tmpdir(), 'dfs-view-under-'));
  try {
    const { a, b } = await pair(d);
    await b.apply({ o: 'put', p: '/docs/from-b', e: file('b') });
    await b.commit();
    await run('git', [`--git-dir=${a.repo.dir}`, 'fetch', '-q', '--', b.repo.dir, '+refs/heads/main:refs/peers/b']);
    await adoptUnder(a, [b.head!], () => a.setRecord('members/nodeC', Buffer.from('{"c":1}')));
    assert.equal(a.head, b.head, 'installed under the local record change');
    await a.commit();
    const rows = (await run('git', [`--git-dir=${a.repo.dir}`, 'ls-tree', '-r', '--name-only', a.head!])).stdout.toString().split('\n');
    assert.ok(rows.includes('%cluster/members/nodeC'), rows.join(' '));
    assert.ok(rows.includes('docs/from-b'));
    await a.close();
    await b.close();
  } finally {
    await rm(d, { recursive: true, force: true });
  }
});

/**
 * A criss-cross: P (A writes /f, its first version) and Q (B writes /g, made to sort below P, so
 * the one base a single-base merge takes is the one without /f), then two different merges of
 * them: A's M1 (computeMerge) and B's M2 (same tree). `swap` fetches each side's main into the other.
 */
async function crissCross(d: string) {
  const { a, b } = await pair(d);
  const git = (ns: Namespace, ...args: string[]) => run('git', [`--git-dir=${ns.repo.dir}`, ...args]).then((r) => r.stdout.toString().trim());
  const swap = async () => {
    await git(a, 'fetch', '-q', '--', b.repo.dir, '+refs/heads/main:refs/peers/b');
    await git(b, 'fetch', '-q', '--', a.repo.dir, '+refs/heads/main:refs/peers/a');
  };
  await a.apply({ o: 'put', p: '/f', e: file('1') });
  await a.commit();
  const P = a.head!;
  let Q = '';
  for (let i = 0; !Q || Q > P; i++) {
    await b.apply({ o: 'put', p: '/g', e: file(`g${i}`) });
    await b.commit();
    Q = b.head!;
  }
  await swap();
  await a.mergeFrom(Q);
  const M1 = a.head!;
  await git(b, 'fetch', '-q', '--', a.repo.dir, '+refs/heads/main:refs/peers/a');
  const M2 = await git(b, 'commit-tree', `${M1}^{tree}`, '-p', Q, '-p', P, '-m', 'another merge of the same two');
  await b.mergeFrom(M2);
  assert.equal(b.head, M2);
  /** After both sides' next commits: their merge bases are P and Q. */
  const basesArePQ = async () => assert.deepEqual((await git(a, 'merge-base', '--all', a.head!, b.head!)).split('\n').sort(), [P, Q].sort());
  return { a, b, swap, basesArePQ };
}

test('criss-cross histories: a version a side saw in any merge base is not a conflict (no copy of a file its one writer changed)', async () => {
  const d = await mkdtemp(join(tmpdir(), 'dfs-merge-criss-'));
  try {
    const { a, b, swap, basesArePQ } = await crissCross(d);
    // A writes /f again (the writer's next version); B adds /h.
    await a.apply({ o: 'put', p: '/f', e: file('full', T0 + 1000, 'nodeA') });
    await a.commit();
    await b.apply({ o: 'put', p: '/h', e: file('h') });
    await b.commit();
    await swap();
    await basesArePQ();
    await a.mergeFrom(b.head!);
    assert.deepEqual(names(a, '/').filter((n) => n.startsWith('f')), ['f'], 'no conflict copy of /f');
    assert.equal((a.get('/f') as any).entry.info.length, 4, 'the newer version');
    await a.close();
    await b.close();
  } finally {
    await rm(d, { recursive: true, force: true });
  }
});

test('criss-cross histories: a deletion of a file one merge base predates is not undone', async () => {
  const d = await mkdtemp(join(tmpdir(), 'dfs-merge-criss-del-'));
  try {
    const { a, b, swap, basesArePQ } = await crissCross(d);
    // B deletes /f (its first version, which P has and Q predates); A adds /h and leaves /f as it was.
    await b.apply({ o: 'rm', p: '/f' });
    await b.commit();
    await a.apply({ o: 'put', p: '/h', e: file('h') });
    await a.commit();
    await swap();
    await basesArePQ();
    await a.mergeFrom(b.head!);
    assert.equal(a.get('/f'), undefined, 'the deletion stands');
    assert.ok(a.get('/h'));
    await a.close();
    await b.close();
  } finally {
    await rm(d, { recursive: true, force: true });
  }
});

// Rows made from a parent's rows and the changed trees equal what `git ls-tree -r -t` lists, over
// random histories of adds, changes, removals, files turned into directories and back, and a
// name that is not UTF-8; a tree naming one subtree over and over is refused at the row limit.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { run } from '../util/exec.js';
import { GitRepo, TreeTooLargeError } from './repo.js';
import { rowsFrom, type Rows } from './tree-diff.js';
import { rawTree } from './bad-names.fixture.js';

async function lsRows(repo: GitRepo, tree: string): Promise<Rows> {
  const blobs = new Map(), trees = new Map([['', tree]]), badUtf8 = new Set<string>();
  for (const r of await repo.lsTree(tree)) {
    if (r.badUtf8) badUtf8.add(`${r.path} ${r.oid}`);
    if (r.type === 'blob') blobs.set(r.path, { mode: r.mode, oid: r.oid });
    else if (r.type === 'tree') trees.set(r.path, r.oid);
  }
  return { blobs, trees, badUtf8 };
}

test('rows from a parent and the changed trees equal ls-tree, over random changes', async () => {
  const d = await mkdtemp(join(tmpdir(), 'dfs-treediff-'));
  const repo = new GitRepo(join(d, 'r.git'));
  try {
    await repo.init();
    const env = { ...process.env, GIT_INDEX_FILE: join(d, 'index'), GIT_WORK_TREE: d };
    const git = async (args: string[], input?: string) => (await run('git', [`--git-dir=${repo.dir}`, ...args], { env, input })).stdout.toString().trim();
    const blob = (s: string) => git(['hash-object', '-w', '--stdin'], s);
    let seed = 11;
    const rnd = (n: number) => { seed = (seed * 48271) % 2147483647; return seed % n; };
    const names = ['a', 'b', 'c', 'dir', 'x y', '\u00e9t\u00e9'];
    const files = new Map<string, string>(); // path -> blob
    let rows = await lsRows(repo, await git(['write-tree']));
    for (let step = 0; step < 60; step++) {
      for (let k = 0; k < 1 + rnd(4); k++) {
        const depth = 1 + rnd(3);
        const path = Array.from({ length: depth }, () => names[rnd(names.length)]).join('/');
        const parts = path.split('/');
        const op = rnd(4);
        if (op === 0 && files.size) {
          const victim = [...files.keys()][rnd(files.size)]!;
          files.delete(victim);
          await git(['update-index', '--force-remove', '--', victim]);
          continue;
        }
        // A file in the way of a directory (or a directory in the way of a file) goes.
        for (const f of [...files.keys()]) {
          if (parts.some((_, i) => parts.slice(0, i + 1).join('/') === f) || f.startsWith(path + '/')) {
            files.delete(f);
            await git(['update-index', '--force-remove', '--', f]);
          }
        }
        const oid = await blob(`${path} ${step} ${k}`);
        files.set(path, oid);
        await git(['update-index', '--add', '--cacheinfo', `100644,${oid},${path}`]);
      }
      const tree = await git(['write-tree']);
      const want = await lsRows(repo, tree);
      const got = await rowsFrom(rows, tree, (o) => repo.readTrees(o), 1_000_000);
      assert.deepEqual(new Map([...got.blobs].sort()), new Map([...want.blobs].sort()), `blobs at step ${step}`);
      assert.deepEqual(new Map([...got.trees].sort()), new Map([...want.trees].sort()), `trees at step ${step}`);
      assert.deepEqual(got.badUtf8, want.badUtf8);
      rows = got;
    }
    assert.ok(rows.trees.size > 5 && rows.blobs.size > 5);

    // A name that is not UTF-8, and a subtree named 40 times (82 rows): refused past 50.
    const sub = await git(['mktree'], `100644 blob ${await blob('x')}\tf\n`);
    const wide = await git(['mktree'], Array.from({ length: 40 }, (_, i) => `040000 tree ${sub}\td${i}\n`).join(''));
    const bad = (await run('sh', ['-c', `printf '100644 blob %s\\t\\377name\\n040000 tree %s\\tw\\n' "$1" "$2" | git --git-dir="$3" mktree`, 'sh', await blob('b'), wide, repo.dir])).stdout.toString().trim();
    const want = await lsRows(repo, bad);
    const got = await rowsFrom(rows, bad, (o) => repo.readTrees(o), 1_000_000);
    assert.deepEqual(new Map([...got.blobs].sort()), new Map([...want.blobs].sort()));
    assert.deepEqual(got.badUtf8, want.badUtf8);
    assert.equal(got.badUtf8.size, 1);
    await assert.rejects(rowsFrom(rows, bad, (o) => repo.readTrees(o), 50), TreeTooLargeError);
  } finally {
    repo.close();
    await rm(d, { recursive: true, force: true });
  }
});

test('removing many directories at once reads the rows once per level, not once per directory; names twice in a tree give what ls-tree gives', async () => {
  const d = await mkdtemp(join(tmpdir(), 'dfs-treediff-'));
  const repo = new GitRepo(join(d, 'r.git'));
  try {
    await repo.init();
    const git = async (args: string[], input?: string) => (await run('git', [`--git-dir=${repo.dir}`, ...args], { input })).stdout.toString().trim();
    const f = await git(['hash-object', '-w', '--stdin'], 'x');
    const sub = await git(['mktree'], Array.from({ length: 20 }, (_, i) => `100644 blob ${f}\tf${i}\n`).join(''));
    const K = 300;
    const many = await git(['mktree'], [`100644 blob ${f}\tkeep\n`, ...Array.from({ length: K }, (_, i) => `040000 tree ${sub}\td${i}\n`)].join(''));
    const few = await git(['mktree'], `100644 blob ${f}\tkeep\n`);
    const base = await rowsFrom({ blobs: new Map(), trees: new Map(), badUtf8: new Set() }, many, (o) => repo.readTrees(o), 1_000_000);
    assert.equal(base.blobs.size, 1 + K * 20);
    const keys = Map.prototype.keys;
    let scans = 0;
    Map.prototype.keys = function (this: Map<unknown, unknown>) { scans++; return keys.call(this); };
    let got: Rows;
    try {
      got = await rowsFrom(base, few, (o) => repo.readTrees(o), 1_000_000);
    } finally {
      Map.prototype.keys = keys;
    }
    assert.deepEqual([...got.blobs.keys()], ['keep']);
    assert.deepEqual([...got.trees.keys()], ['']);
    assert.ok(scans < 10, `${scans} scans of the rows for ${K} directories removed`);

    // Two entries of one name (git fsck refuses them at receive; an old history may hold them):
    // the same rows as ls-tree gives, going into such a tree and out of it.
    const g = await git(['hash-object', '-w', '--stdin'], 'y');
    const dup = await rawTree(repo.dir, [
      { mode: '100644', name: Buffer.from('same'), oid: f }, { mode: '100644', name: Buffer.from('same'), oid: g },
      { mode: '100644', name: Buffer.from('fd'), oid: f }, { mode: '40000', name: Buffer.from('fd'), oid: sub },
      { mode: '40000', name: Buffer.from('dd'), oid: sub }, { mode: '40000', name: Buffer.from('dd'), oid: few },
    ]);
    let prev = got;
    for (const tree of [dup, many, dup, few]) {
      const want = await lsRows(repo, tree);
      const next = await rowsFrom(prev, tree, (o) => repo.readTrees(o), 1_000_000);
      assert.deepEqual(new Map([...next.blobs].sort()), new Map([...want.blobs].sort()), tree);
      assert.deepEqual(new Map([...next.trees].sort()), new Map([...want.trees].sort()), tree);
      prev = next;
    }
  } finally {
    repo.close();
    await rm(d, { recursive: true, force: true });
  }
});

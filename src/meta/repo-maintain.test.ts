// Repository upkeep: small packs rolled together at a cost that follows what is new, nothing a
// reader may still ask for pruned, no superseded object exploded into a loose file.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, readdir, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { tmpdir } from 'node:os';
import { GitRepo } from './repo.js';
import { objectId } from './tree.js';
import { run } from '../util/exec.js';

const EMPTY_TREE = '4b825dc642cb6eb9a060e54bf8d69288fbee4904';

test('maintain rolls small packs together, keeps every object, and sweeps unreachable ones into a cruft pack', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'dfs-maintain-'));
  const git = join(dir, 'r.git');
  const repo = new GitRepo(git);
  try {
    await repo.init();
    const all: string[] = [];
    let parent: string | null = null;
    for (let i = 0; i < 12; i++) {
      // One commit per pack, as a node's commits and views come; every third is a view that moved on (unreachable).
      const blob = Buffer.from(`content ${i}\n`);
      const data = Buffer.from(`tree ${EMPTY_TREE}\n${parent ? `parent ${parent}\n` : ''}author a <a> ${i} +0000\ncommitter a <a> ${i} +0000\n\nc${i}\n`);
      const oid = objectId('commit', data);
      await repo.writeObjects([{ type: 'commit', oid, data }, { type: 'blob', oid: objectId('blob', blob), data: blob }]);
      all.push(oid, objectId('blob', blob));
      if (i % 3 !== 2) parent = oid;
    }
    await repo.writeObjects([{ type: 'tree', oid: EMPTY_TREE, data: Buffer.alloc(0) }]);
    await run('git', [`--git-dir=${git}`, 'update-ref', 'refs/heads/main', parent!]);
    const packs = async () => (await readdir(join(git, 'objects', 'pack'))).filter((n) => n.endsWith('.pack')).length;
    const loose = async () => Number(/^count: (\d+)/m.exec((await run('git', [`--git-dir=${git}`, 'count-objects', '-v'])).stdout.toString())![1]);
    const readable = async () => {
      const r = await run('git', [`--git-dir=${git}`, 'cat-file', '--batch-check'], { input: all.join('\n') + '\n' });
      return !/missing/.test(r.stdout.toString());
    };
    assert.equal(await packs(), 13);

    await repo.maintain();
    assert.ok((await packs()) <= 3, `small packs rolled together (${await packs()} left)`);
    assert.equal(await loose(), 0, 'no loose objects');
    assert.ok(await readable(), 'every object, reachable or not, is still there');

    await repo.maintain({ full: true });
    assert.equal(await loose(), 0, 'unreachable objects are not exploded into loose files');
    assert.ok((await readdir(join(git, 'objects', 'pack'))).some((n) => n.endsWith('.mtimes')), 'a cruft pack holds them');
    assert.ok(await readable(), 'within the grace period nothing is pruned');
    // The object reader and cache still answer after the packs under them changed.
    assert.equal((await repo.readCommit(parent!)).message, `c10\n`);
  } finally {
    repo.close();
    await rm(dir, { recursive: true, force: true });
  }
});

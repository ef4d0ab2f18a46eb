import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile, utimes, readFile, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { tmpdir } from 'node:os';
import { spawn } from 'node:child_process';
import { run } from '../util/exec.js';
import { gitEnv } from './repo.js';
import { LooseRefs, RefCasError } from './refs.js';

async function repo(): Promise<{ dir: string; git: (...a: string[]) => Promise<string>; commits: string[] }> {
  const dir = await mkdtemp(join(tmpdir(), 'dfs-refs-'));
  await run('git', ['init', '--bare', '--quiet', '--shared=0600', '--', dir], { env: gitEnv() });
  const git = async (...a: string[]) => (await run('git', [`--git-dir=${dir}`, ...a], { env: { ...gitEnv(), GIT_AUTHOR_NAME: 't', GIT_AUTHOR_EMAIL: 't@t', GIT_COMMITTER_NAME: 't', GIT_COMMITTER_EMAIL: 't@t' } })).stdout.toString().trim();
  const tree = await git('mktree');
  const commits: string[] = [];
  for (let i = 0; i < 4; i++) commits.push(await git('commit-tree', tree, '-m', `c${i}`));
  return { dir, git, commits };
}

test('loose refs: what git reads, compare-and-swap all or nothing, packed refs, names', async () => {
  const { dir, git, commits: [a, b, c] } = await repo();
  try {
    const refs = new LooseRefs(dir);
    await refs.update([['refs/nodes/aaaa', a!, null], ['refs/heads/main', a!, null]]);
    assert.equal(await git('rev-parse', 'refs/nodes/aaaa'), a);
    assert.equal(await git('rev-parse', 'refs/heads/main'), a);
    assert.equal((await stat(join(dir, 'refs/nodes/aaaa'))).mode & 0o777, 0o600);
    assert.equal((await stat(join(dir, 'refs/nodes'))).mode & 0o777, 0o700);
    // Must not exist, but does: refused, and the other update of the transaction is not made.
    await assert.rejects(refs.update([['refs/nodes/bbbb', b!, null], ['refs/nodes/aaaa', b!, null]]), RefCasError);
    await assert.rejects(refs.update([['refs/nodes/aaaa', b!, c!], ['refs/nodes/bbbb', b!, undefined]]), /expected/);
    assert.equal(await refs.read('refs/nodes/bbbb'), null);
    assert.equal(await refs.read('refs/nodes/aaaa'), a);
    await assert.rejects(git('rev-parse', '--verify', '-q', 'refs/nodes/bbbb'));
    // No lock is left behind by a refused transaction: git can update them.
    await git('update-ref', 'refs/nodes/bbbb', b!);
    await refs.update([['refs/nodes/aaaa', b!, a!], ['refs/nodes/bbbb', c!, b!]]);
    assert.deepEqual(Object.fromEntries(await refs.list('refs/nodes/')), { aaaa: b, bbbb: c });

    // Packed: read and listed from packed-refs, a compare against the packed value, git sees the loose value over it.
    await git('pack-refs', '--all', '--prune');
    await assert.rejects(stat(join(dir, 'refs/nodes/aaaa')));
    assert.equal(await refs.read('refs/nodes/aaaa'), b);
    assert.deepEqual(Object.fromEntries(await refs.list('refs/nodes/')), { aaaa: b, bbbb: c });
    await assert.rejects(refs.update([['refs/nodes/aaaa', c!, a!]]), RefCasError);
    await refs.update([['refs/nodes/aaaa', c!, b!]]);
    assert.equal(await git('rev-parse', 'refs/nodes/aaaa'), c);
    assert.equal(await git('for-each-ref', '--format=%(objectname) %(refname)', 'refs/nodes/'), `${c} refs/nodes/aaaa\n${c} refs/nodes/bbbb`);
    assert.deepEqual(Object.fromEntries(await refs.list('refs/nodes/')), { aaaa: c, bbbb: c });
    assert.equal(await refs.read('refs/nodes/none'), null);

    // A torn loose file is no value (and hides the packed one, as it does from git).
    await writeFile(join(dir, 'refs/nodes/bbbb'), '');
    assert.equal(await refs.read('refs/nodes/bbbb'), null);
    assert.deepEqual([...(await refs.list('refs/nodes/')).keys()], ['aaaa']);

    for (const bad of ['refs/../HEAD', '../refs/x', 'refs/nodes/a b', 'refs/nodes/x.lock', 'HEAD', 'refs/nodes/', 'refs//x']) {
      await assert.rejects(refs.update([[bad, a!, undefined]]), /not a ref name/, bad);
    }
    await assert.rejects(refs.update([['refs/nodes/aaaa', 'HEAD', undefined]]), /not an object name/);
    await assert.rejects(refs.update([['refs/nodes/aaaa', a!, undefined], ['refs/nodes/aaaa', b!, undefined]]), /twice/);
    await assert.rejects(refs.list('refs/../'), /not a ref prefix/);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

test("loose refs: git's lock is waited for and respected, races compare-and-swap, stale locks swept", async () => {
  const { dir, git, commits: [a, b, c, d] } = await repo();
  try {
    const refs = new LooseRefs(dir);
    await refs.update([['refs/nodes/aaaa', a!, null]]);
    // Another process (git) holds the lock: we wait for it, then compare with what it wrote.
    const lock = join(dir, 'refs/nodes/aaaa.lock');
    await writeFile(lock, `${b}\n`);
    const waiting = refs.update([['refs/nodes/aaaa', c!, b!]]);
    await new Promise((r) => setTimeout(r, 150));
    await run('mv', [lock, join(dir, 'refs/nodes/aaaa')]);
    await waiting;
    assert.equal(await git('rev-parse', 'refs/nodes/aaaa'), c);
    // Held for good: refused after the wait, nothing changed, the holder's lock left alone.
    await writeFile(lock, `${d}\n`);
    const t0 = Date.now();
    await assert.rejects(refs.update([['refs/nodes/aaaa', a!, c!]]), /cannot lock/);
    assert.ok(Date.now() - t0 >= 900, 'waited for the lock');
    assert.equal(await readFile(lock, 'utf8'), `${d}\n`);
    assert.equal(await refs.read('refs/nodes/aaaa'), c);
    // Fresh locks stay, old ones go.
    assert.equal(await refs.sweepLocks(), 0);
    await utimes(lock, new Date(Date.now() - 120_000), new Date(Date.now() - 120_000));
    assert.equal(await refs.sweepLocks(), 1);
    await refs.update([['refs/nodes/aaaa', d!, c!]]);

    // Two writers with the same expectation: exactly one wins, whoever they are.
    const ours = await Promise.allSettled([refs.update([['refs/nodes/aaaa', a!, d!]]), refs.update([['refs/nodes/aaaa', b!, d!]])]);
    assert.deepEqual(ours.map((r) => r.status).sort(), ['fulfilled', 'rejected']);
    const now = (await refs.read('refs/nodes/aaaa'))!;
    const mixed = await Promise.allSettled([
      refs.update([['refs/nodes/aaaa', c!, now]]),
      run('git', [`--git-dir=${dir}`, 'update-ref', 'refs/nodes/aaaa', d!, now], { env: gitEnv() }),
    ]);
    assert.equal(mixed.filter((r) => r.status === 'fulfilled').length, 1, JSON.stringify(mixed.map((r) => r.status)));
    assert.ok([c, d].includes(await git('rev-parse', 'refs/nodes/aaaa')));
    // Many refs at once, ours and git's on other refs: every one as written.
    await Promise.all(Array.from({ length: 40 }, (_, i) => (i % 2
      ? refs.update([[`refs/nodes/n${i}`, [a, b, c, d][i % 4]!, null]])
      : run('git', [`--git-dir=${dir}`, 'update-ref', `refs/nodes/n${i}`, [a, b, c, d][i % 4]!], { env: gitEnv() }))));
    const listed = await refs.list('refs/nodes/');
    for (let i = 0; i < 40; i++) assert.equal(listed.get(`n${i}`), [a, b, c, d][i % 4]);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

test('loose refs: a listing while git packs refs never shows a value older than the loose one', async () => {
  const { dir, git, commits: [a, b] } = await repo();
  try {
    const refs = new LooseRefs(dir);
    let listings = 0;
    for (let round = 0; round < 40; round++) {
      // Packed at a, loose at b: what git's pack-refs then packs (b) before it deletes the loose file.
      await git('update-ref', 'refs/nodes/x', a!);
      await git('pack-refs', '--all', '--prune');
      await refs.update([['refs/nodes/x', b!, a!]]);
      const p = spawn('git', [`--git-dir=${dir}`, 'pack-refs', '--all', '--prune'], { env: gitEnv(), stdio: 'ignore' });
      let running = true;
      const exited = new Promise<void>((r) => p.on('close', () => { running = false; r(); }));
      while (running) {
        assert.equal((await refs.list('refs/nodes/')).get('x'), b, `round ${round}: an old value was listed`);
        listings++;
      }
      await exited;
    }
    assert.ok(listings > 40, `${listings} listings`);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

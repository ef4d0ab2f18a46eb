// The in-process commit graph against git itself, on random histories with merges of up to four
// parents, criss-crosses and a second root: every merge base set and ancestry answer is git's.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { run } from '../util/exec.js';
import { GitRepo } from './repo.js';
import { CommitGraph } from './commit-graph.js';

test('commit graph: merge bases, ancestry and independent tips equal git merge-base on random histories', async () => {
  const d = await mkdtemp(join(tmpdir(), 'dfs-graph-'));
  const repo = new GitRepo(join(d, 'r.git'));
  try {
    await repo.init();
    const git = async (...args: string[]) => (await run('git', [`--git-dir=${repo.dir}`, ...args], { allowFail: true }));
    const empty = (await git('mktree')).stdout.toString().trim();
    let seed = 7;
    const rnd = (n: number) => { // mulberry32
      seed = (seed + 0x6d2b79f5) | 0;
      let t = Math.imul(seed ^ (seed >>> 15), 1 | seed);
      t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
      return ((t ^ (t >>> 14)) >>> 0) % n;
    };
    // Two roots; then commits of one to four parents, mostly recent ones: criss-crosses abound.
    // A third root late (60) with its own line, for unrelated pairs.
    const commits: string[] = [];
    for (let i = 0; i < 70; i++) {
      const parents = new Set<string>();
      if (i >= 2 && i !== 60) {
        const from = i > 60 ? 60 : 0, to = i > 60 ? commits.length : Math.min(commits.length, 60);
        const k = 1 + (rnd(3) !== 0 ? 1 + rnd(3) : 0);
        for (let j = 0; j < k; j++) parents.add(commits[Math.max(from, to - 1 - rnd(10))]!);
      }
      const args = ['commit-tree', empty, '-m', `c${i}`, ...[...parents].flatMap((p) => ['-p', p])];
      commits.push((await git(...args)).stdout.toString().trim());
    }
    let several = 0, unrelated = 0;
    for (let n = 0; n < 250; n++) {
      const a = commits[rnd(commits.length)]!, b = commits[rnd(commits.length)]!;
      const want = (await git('merge-base', '--all', a, b)).stdout.toString().split('\n').filter(Boolean).sort();
      assert.deepEqual(await repo.mergeBases(a, b), want, `merge bases of ${a.slice(0, 8)} ${b.slice(0, 8)}`);
      if (want.length > 1) several++;
      if (!want.length) unrelated++;
      const anc = (await git('merge-base', '--is-ancestor', a, b)).code === 0;
      assert.equal(await repo.isAncestor(a, b), anc, `${a.slice(0, 8)} in the history of ${b.slice(0, 8)}`);
    }
    for (let n = 0; n < 40; n++) {
      const some = Array.from({ length: 2 + rnd(5) }, () => commits[rnd(commits.length)]!);
      const want = (await git('merge-base', '--independent', ...some)).stdout.toString().split('\n').filter(Boolean).sort();
      assert.deepEqual(await repo.independent(some), want, 'independent');
    }
    // What a sync push sends: the commits of some tips not in the history of others, as rev-list says.
    for (let n = 0; n < 40; n++) {
      const tips = Array.from({ length: 1 + rnd(3) }, () => commits[rnd(commits.length)]!);
      const not = Array.from({ length: rnd(4) }, () => commits[rnd(commits.length)]!);
      const want = (await git('rev-list', ...tips, ...(not.length ? ['--not', ...not] : []))).stdout.toString().split('\n').filter(Boolean).sort();
      assert.deepEqual((await repo.newCommits(tips, not, 1000))!.sort(), want, 'rev-list tips --not others');
      if (want.length > 1) assert.equal(await repo.newCommits(tips, not, want.length - 1), null, 'past the limit');
    }
    await assert.rejects(repo.independent([commits[1]!, 'e'.repeat(40)]), /missing/);
    assert.ok(several >= 20 && unrelated >= 5, `the histories have criss-crosses (${several} pairs with several bases) and unrelated pairs (${unrelated})`);
    // A commit we lack is in nobody's history.
    assert.equal(await repo.isAncestor('f'.repeat(40), commits[5]!), false);
  } finally {
    repo.close();
    await rm(d, { recursive: true, force: true });
  }
});

test('commit graph: many merge bases at different depths are sorted out in one walk, not a walk per pair', async () => {
  // A root, k chains of lengths 10, 20, ... 10k from it, and two merges of every chain's tip: the
  // k tips are all best common ancestors, none in another's history.
  const parents = new Map<string, string[]>([['root', []]]);
  const k = 100, tips: string[] = [];
  for (let i = 1; i <= k; i++) {
    let prev = 'root';
    for (let j = 0; j < 10 * i; j++) { const c = `c${i}-${j}`; parents.set(c, [prev]); prev = c; }
    tips.push(prev);
  }
  parents.set('a', [...tips]);
  parents.set('b', [...tips].reverse());
  const graph = new CommitGraph(async (oids) => new Map(oids.map((o) => [o, parents.get(o)!])));
  assert.deepEqual(await graph.mergeBases('a', 'b'), [...tips].sort());
  // The filter alone (what mergeBases ends with), counted in map lookups, not timed.
  const get = Map.prototype.get;
  let steps = 0;
  Map.prototype.get = function (this: Map<unknown, unknown>, key: unknown) { steps++; return get.call(this, key); };
  let independent: string[];
  try {
    independent = await graph.independent([...tips, 'root', 'c7-3']);
  } finally {
    Map.prototype.get = get;
  }
  assert.deepEqual(independent, [...tips].sort());
  const chains = (10 * k * (k + 1)) / 2;
  assert.ok(steps < 5 * chains, `${steps} map lookups for ${chains} commits`);
});

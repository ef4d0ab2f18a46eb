// sync_summary / sync_pull on real repositories (the RPC layer is tested on its own): the reply
// a node serves is what the asker lacks, taken as a push would be (refs, objects, git fsck
// clean); a long catch-up says tooBig (the asker fetches with git); malformed asks are refused.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Namespace } from '../meta/namespace.js';
import { silentLogger } from '../util/log.js';
import { run } from '../util/exec.js';
import { receivePush, type PushParams } from './sync-push.js';
import { parseSummary, PullRefused, servePull, summary } from './sync-pull.js';
import { dir, file } from '../meta/entry.fixture.js';

const A = 'aaaaaaaaaaaaaaaa', B = 'bbbbbbbbbbbbbbbb';
const git = async (repo: string, ...args: string[]) => (await run('git', [`--git-dir=${repo}`, ...args], { allowFail: true }));

test('sync pull: the summary is the refs/nodes map; the reply is what the asker lacks, stored as a push; limits', async () => {
  const d = await mkdtemp(join(tmpdir(), 'dfs-syncpull-'));
  try {
    const a = await Namespace.create({ dir: join(d, 'a'), nodeId: A, log: silentLogger }, dir, 'create');
    await a.apply({ o: 'put', p: '/docs', e: dir });
    await a.commit();
    await run('git', ['clone', '--bare', '-q', '--', a.repo.dir, join(d, 'b', 'repo.git')]);
    await git(join(d, 'b', 'repo.git'), 'update-ref', `refs/nodes/${A}`, a.head!);
    const b = await Namespace.open({ dir: join(d, 'b'), nodeId: B, log: silentLogger });
    await b.finishRecovery();
    const held = a.head!;
    for (let i = 0; i < 5; i++) {
      await a.apply({ o: 'put', p: `/docs/f${i}`, e: file(`f${i}`) });
      await a.commit();
    }
    // The summary, as ls-remote would list it.
    const s = await summary(a.repo);
    assert.deepEqual(s, { refs: { [A]: a.head! } });
    assert.deepEqual([...parseSummary({ refs: { [A]: a.head!, 'not-an-id': a.head!, [B]: 'HEAD' } })], [[A, a.head!]]);
    assert.throws(() => parseSummary({ refs: [] }), /malformed/);

    // B asks for A's value, naming what it holds: five commits and their new objects come back.
    const reply = await servePull(a.repo, { want: [A, B], have: [held, 'f'.repeat(40)] }) as PushParams;
    assert.deepEqual(reply.refs, { [A]: a.head! });
    const want = (await git(a.repo.dir, 'rev-list', '--objects', a.head!, `^${held}`)).stdout.toString().trim().split('\n').length;
    assert.ok(reply.objects.length >= want && reply.objects.length <= want + 2, `${reply.objects.length} objects for ${want}`);
    const res = await receivePush({ repo: b.repo, isMember: (id) => id === A || id === B, self: B }, reply);
    assert.deepEqual(res, { results: { [A]: 'ok' } });
    assert.equal((await git(b.repo.dir, 'rev-parse', `refs/nodes/${A}`)).stdout.toString().trim(), a.head);
    assert.equal((await git(b.repo.dir, 'fsck', '--strict', '--no-dangling')).code, 0);
    // Held already: nothing but the value.
    assert.deepEqual((await servePull(a.repo, { want: [A], have: [a.head!] }) as PushParams).objects, []);
    // More commits than one reply carries: git fetches them instead.
    assert.deepEqual(await servePull(a.repo, { want: [A], have: [held] }, 3), { tooBig: true });

    for (const bad of [null, {}, { want: 'x', have: [] }, { want: ['../x'], have: [] }, { want: [A], have: ['HEAD'] }, { want: Array(1025).fill(A), have: [] }]) {
      await assert.rejects(servePull(a.repo, bad), PullRefused, JSON.stringify(bad)?.slice(0, 60));
    }
    a.close();
    b.close();
  } finally {
    await rm(d, { recursive: true, force: true });
  }
});

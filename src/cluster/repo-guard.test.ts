// What a member may push (repo-guard: the update hook and receive config), on real
// repositories without a network: pushes are local, with DELUGEFS_PEER set as serve-command
// sets it. A well-formed push with a malformed entry gets past git and is refused by the merge.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { Namespace } from '../meta/namespace.js';
import { silentLogger } from '../util/log.js';
import { run } from '../util/exec.js';
import { guardRepository } from './repo-guard.js';
import { dir, file } from '../meta/entry.fixture.js';

const git = async (repo: string, args: string[], o: { env?: NodeJS.ProcessEnv; input?: string } = {}) =>
  run('git', [`--git-dir=${repo}`, ...args], { env: { ...process.env, ...o.env }, input: o.input, allowFail: true });
const out = async (repo: string, args: string[], input?: string) => (await git(repo, args, { input })).stdout.toString().trim();
// Node ids (16 base32 characters); B and C are members in A's records, STRANGER is not.
const B = 'bbbbbbbbbbbbbbbb', C = 'cccccccccccccccc', D = 'dddddddddddddddd', STRANGER = 'ssssssssssssssss';
async function admit(ns: Namespace, ...ids: string[]): Promise<void> {
  for (const id of ids) await ns.setRecord(`members/${id}`, Buffer.from(`{"node":"${id}"}`));
  await ns.commit();
}

test('pushes: refs/nodes/<member> only, each ref judged alone, fast-forward only, no deletions, related history; a malformed entry is refused at merge', async () => {
  const d = await mkdtemp(join(tmpdir(), 'dfs-sync-guard-'));
  try {
    const a = await Namespace.create({ dir: join(d, 'a'), nodeId: 'nodeA', log: silentLogger }, dir, 'create');
    await a.apply({ o: 'put', p: '/f', e: file('one') });
    await a.commit();
    await admit(a, B, C, D);
    await guardRepository(a.repo.dir);
    await run('git', ['clone', '--bare', '-q', '--', a.repo.dir, join(d, 'b', 'repo.git')]);
    const b = await Namespace.open({ dir: join(d, 'b'), nodeId: B, log: silentLogger });
    await b.finishRecovery();
    await b.apply({ o: 'put', p: '/g', e: file('two') });
    await b.commit();
    const push = (spec: string | string[], peer = B) => git(b.repo.dir, ['push', '--force', '--', a.repo.dir, ...[spec].flat()], { env: { DELUGEFS_PEER: peer } });
    const first = a.head!;

    assert.equal((await push(`${b.head}:refs/nodes/${B}`)).code, 0);
    let r = await push(`${b.head}:refs/nodes/other`);
    assert.notEqual(r.code, 0);
    assert.match(r.stderr, /not a node id/);
    r = await push(`${b.head}:refs/heads/main`);
    assert.notEqual(r.code, 0);
    assert.match(r.stderr, /only refs\/nodes\/<member id> may be pushed/);
    assert.equal(await a.repo.head(), first, 'main untouched');
    // One push, two refs: a member's lands (relayed by B), a stranger's is refused alone.
    r = await push([`${b.head}:refs/nodes/${C}`, `${b.head}:refs/nodes/${STRANGER}`]);
    assert.notEqual(r.code, 0);
    assert.match(r.stderr, new RegExp(`${STRANGER} is not a member here`));
    assert.equal(await out(a.repo.dir, ['rev-parse', `refs/nodes/${C}`]), b.head);
    assert.equal((await git(a.repo.dir, ['rev-parse', '--verify', '--quiet', `refs/nodes/${STRANGER}`])).code, 1);
    // A revoked member's value is refused, its record notwithstanding.
    await a.setRecord(`revoked/${C}`, Buffer.from(`{"node":"${C}"}`));
    await a.commit();
    const next = await out(b.repo.dir, ['commit-tree', `${b.head}^{tree}`, '-p', b.head!, '-m', 'next']);
    r = await push(`${next}:refs/nodes/${C}`);
    assert.notEqual(r.code, 0);
    assert.match(r.stderr, new RegExp(`${C} is not a member here`));
    assert.equal(await out(a.repo.dir, ['rev-parse', `refs/nodes/${C}`]), b.head);
    r = await push(`:refs/nodes/${B}`);
    assert.notEqual(r.code, 0);
    r = await push(`${first}:refs/nodes/${B}`);
    assert.notEqual(r.code, 0);
    assert.match(r.stderr, /rewrites history/);
    // Unrelated history: a root commit of its own.
    const tree = await out(b.repo.dir, ['mktree'], '');
    const orphan = await out(b.repo.dir, ['commit-tree', tree, '-m', 'orphan']);
    r = await git(b.repo.dir, ['push', '--force', '--', a.repo.dir, `${orphan}:refs/nodes/${D}`], { env: { DELUGEFS_PEER: D } });
    assert.notEqual(r.code, 0);
    assert.match(r.stderr, /no history in common/);
    // A merge of our history with another's root shares history with ours, and is refused all the same.
    const joined = await out(b.repo.dir, ['commit-tree', tree, '-p', b.head!, '-p', orphan, '-m', 'graft']);
    r = await git(b.repo.dir, ['push', '--force', '--', a.repo.dir, `${joined}:refs/nodes/${D}`], { env: { DELUGEFS_PEER: D } });
    assert.notEqual(r.code, 0);
    assert.match(r.stderr, /no history in common/);
    // A tree is not a node's head.
    r = await git(b.repo.dir, ['push', '--force', '--', a.repo.dir, `${tree}:refs/nodes/${D}`], { env: { DELUGEFS_PEER: D } });
    assert.notEqual(r.code, 0);
    assert.match(r.stderr, /is not a commit/);
    assert.equal((await git(a.repo.dir, ['rev-parse', '--verify', '--quiet', `refs/nodes/${D}`])).code, 1);

    // A head with a malformed entry passes git (well-formed objects) and is refused by the merge.
    const idx = join(d, 'index');
    const env = { GIT_INDEX_FILE: idx };
    const garbage = await out(b.repo.dir, ['hash-object', '-w', '--stdin'], 'not bencode');
    await git(b.repo.dir, ['read-tree', b.head!], { env });
    await git(b.repo.dir, ['update-index', '--add', '--cacheinfo', `100644,${garbage},junk`], { env });
    const t = (await git(b.repo.dir, ['write-tree'], { env })).stdout.toString().trim();
    const bad = await out(b.repo.dir, ['commit-tree', t, '-p', b.head!, '-m', 'bad']);
    assert.equal((await push(`${bad}:refs/nodes/${B}`)).code, 0);
    const before = a.head;
    await assert.rejects(a.mergeFrom(bad), /junk/);
    assert.equal(a.head, before);
    const fsck = await git(a.repo.dir, ['fsck', '--no-dangling']);
    assert.equal(fsck.code, 0, fsck.stderr);
    await a.close();
    await b.close();
  } finally {
    await rm(d, { recursive: true, force: true });
  }
});

test('pushes: a pack over receive.maxInputSize and a blob over the entry limit are refused; so is a merge that would read one', async () => {
  const d = await mkdtemp(join(tmpdir(), 'dfs-sync-guard-size-'));
  try {
    const a = await Namespace.create({ dir: join(d, 'a'), nodeId: 'nodeA', log: silentLogger }, dir, 'create');
    await admit(a, B);
    await a.commit();
    await guardRepository(a.repo.dir, { maxPack: 2 ** 20 });
    await run('git', ['clone', '--bare', '-q', a.repo.dir, join(d, 'b', 'repo.git')]);
    const b = await Namespace.open({ dir: join(d, 'b'), nodeId: B, log: silentLogger });
    await b.finishRecovery();
    const push = (spec: string) => git(b.repo.dir, ['push', a.repo.dir, spec], { env: { DELUGEFS_PEER: B } });
    /** A commit on b's head adding one blob as an entry named `name`. */
    const withBlob = async (name: string, data: Buffer) => {
      const env = { GIT_INDEX_FILE: join(d, `index-${name}`) };
      const blob = (await git(b.repo.dir, ['hash-object', '-w', '--stdin'], { input: data as unknown as string })).stdout.toString().trim();
      await git(b.repo.dir, ['read-tree', b.head!], { env });
      await git(b.repo.dir, ['update-index', '--add', '--cacheinfo', `100644,${blob},${name}`], { env });
      const t = (await git(b.repo.dir, ['write-tree'], { env })).stdout.toString().trim();
      return { blob, commit: await out(b.repo.dir, ['commit-tree', t, '-p', b.head!, '-m', name]) };
    };
    const objects = async () => (await git(a.repo.dir, ['count-objects', '-v'])).stdout.toString();
    const before = await objects();

    // 2 MiB that do not compress: a pack over the 1 MiB set here.
    const noise = await withBlob('noise', randomBytes(2 * 2 ** 20));
    let r = await push(`${noise.commit}:refs/nodes/${B}`);
    assert.notEqual(r.code, 0);
    assert.match(r.stderr, /pack exceeds maximum allowed size/);
    // 17 MiB of zeros: a tiny pack, but a blob over the 16 MiB an entry may have.
    await guardRepository(a.repo.dir);
    const zeros = await withBlob('zeros', Buffer.alloc(17 * 2 ** 20));
    r = await push(`${zeros.commit}:refs/nodes/${B}`);
    assert.notEqual(r.code, 0);
    assert.match(r.stderr, new RegExp(`refused: refs/nodes/${B} carries blob ${zeros.blob} \\(17825792 bytes\\)`));
    assert.equal((await git(a.repo.dir, ['rev-parse', '--verify', '--quiet', `refs/nodes/${B}`])).code, 1, 'no ref made');
    assert.notEqual((await git(a.repo.dir, ['cat-file', '-e', zeros.blob])).code, 0, 'the blob stayed in quarantine');
    assert.equal(await objects(), before, 'repository unchanged');
    // A legal push still goes through.
    const small = await withBlob('small', Buffer.from('x'));
    assert.equal((await push(`${small.commit}:refs/nodes/${B}`)).code, 0);

    // Fetched rather than pushed (no hook on that path): the merge refuses it before reading the blob.
    await git(a.repo.dir, ['fetch', '-q', b.repo.dir, `${zeros.commit}:refs/fetched/b`]);
    const head = a.head;
    await assert.rejects(a.mergeFrom(zeros.commit), /more than the 16777216 bytes/);
    assert.equal(a.head, head);
    assert.equal(await a.repo.head(), head);
    await a.close();
    await b.close();
  } finally {
    await rm(d, { recursive: true, force: true });
  }
});

test('pushes: a large blob that compresses to a small pack is never held whole by git before the hook refuses it', async () => {
  const d = await mkdtemp(join(tmpdir(), 'dfs-sync-guard-mem-'));
  try {
    const a = await Namespace.create({ dir: join(d, 'a'), nodeId: 'nodeA', log: silentLogger }, dir, 'create');
    await admit(a, B);
    await a.commit();
    await guardRepository(a.repo.dir);
    await run('git', ['clone', '--bare', '-q', '--', a.repo.dir, join(d, 'b', 'repo.git')]);
    // 96 MiB of zeros: a pack of ~100 KiB, far under the pack cap.
    const big = join(d, 'zeros');
    await run('sh', ['-c', 'head -c 100663296 /dev/zero > "$1"', 'sh', big]);
    const bdir = join(d, 'b', 'repo.git');
    const blob = await out(bdir, ['hash-object', '-w', '--', big]);
    const tree = await out(bdir, ['mktree'], `100644 blob ${blob}\tzeros\n`);
    const commit = await out(bdir, ['commit-tree', tree, '-p', a.head!, '-m', 'zeros']);
    // receive-pack and its children (unpack-objects, the hook) get 64 MiB of address space: enough
    // for git streaming the blob, not for a copy of it in memory.
    const r = await git(bdir, ['push', '--receive-pack=ulimit -v 65536; git receive-pack', '--', a.repo.dir, `${commit}:refs/nodes/${B}`], { env: { DELUGEFS_PEER: B } });
    assert.notEqual(r.code, 0);
    assert.doesNotMatch(r.stderr, /Out of memory|unpack failed/);
    assert.match(r.stderr, new RegExp(`refused: refs/nodes/${B} carries blob ${blob} \\(100663296 bytes\\)`));
    await a.close();
  } finally {
    await rm(d, { recursive: true, force: true });
  }
});

test('pre-receive fails closed: a push whose object walk dies (rev-list or cat-file) is refused', async () => {
  const d = await mkdtemp(join(tmpdir(), 'dfs-sync-guard-'));
  try {
    const a = await Namespace.create({ dir: join(d, 'a'), nodeId: 'nodeA', log: silentLogger }, dir, 'create');
    await a.commit();
    await guardRepository(a.repo.dir);
    await a.apply({ o: 'put', p: '/f', e: file('one') });
    await a.commit();
    const head = a.head!;
    // The hook as git runs it (stdin: old new ref), with a git whose named command dies at once.
    const hook = (dies: string) => {
      const bin = join(d, `bin-${dies}`);
      return run('sh', ['-c', `mkdir -p ${bin} && printf '#!/bin/sh\\n[ "$1" = ${dies} ] && exit 1\\nexec /usr/bin/git "$@"\\n' > ${bin}/git && chmod +x ${bin}/git && exec ${join(a.repo.dir, 'hooks', 'pre-receive')}`],
        { env: { ...process.env, PATH: `${bin}:${process.env.PATH}`, GIT_DIR: a.repo.dir, DELUGEFS_PEER: B }, input: `${'0'.repeat(40)} ${head} refs/nodes/${B}\n`, allowFail: true });
    };
    const ok = await hook('none');
    assert.equal(ok.code, 0, ok.stderr.toString());
    for (const dies of ['rev-list', 'cat-file']) {
      const r = await hook(dies);
      assert.notEqual(r.code, 0, dies);
      assert.match(r.stderr.toString(), /refused/, dies);
    }
    await a.close();
  } finally {
    await rm(d, { recursive: true, force: true });
  }
});

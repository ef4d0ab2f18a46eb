// Fetches from a peer are bounded (bounded-fetch.ts), with real git: a source repository holding
// an incompressible blob bigger than a small cap, fetched by path (fetchMain, as a local join
// does) and through git's ssh transport (GIT_SSH_COMMAND running upload-pack, as sync does).
// A too-big fetch fails and leaves the repository byte for byte as it was; a trickling one is
// stopped at its deadline; a normal one lands its objects and then its ref.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdir, mkdtemp, readdir, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { run } from '../util/exec.js';
import { gitEnv } from '../meta/repo.js';
import { fetchMain, JoinError } from '../node/join-root.js';
import { boundedFetch, FetchError, QUARANTINE_PREFIX, removeStaleQuarantines } from './bounded-fetch.js';
import { shQuote } from './sh.js';

const git = async (repo: string, args: string[], input?: string) => (await run('git', [`--git-dir=${repo}`, ...args], { env: gitEnv(), input })).stdout.toString().trim();

/** A bare repository whose main holds one random (incompressible) blob of `size` bytes. */
async function source(dir: string, size: number): Promise<{ repo: string; head: string; blob: string }> {
  const repo = join(dir, 'src.git');
  await run('git', ['init', '-q', '--bare', '--', repo], { env: gitEnv() });
  await writeFile(join(dir, 'big'), randomBytes(size));
  const blob = await git(repo, ['hash-object', '-w', '--', join(dir, 'big')]);
  const tree = await git(repo, ['mktree'], `100644 blob ${blob}\tbig\n`);
  const head = await git(repo, ['-c', 'user.name=t', '-c', 'user.email=t@t', 'commit-tree', '-m', 'big', tree]);
  await git(repo, ['update-ref', 'refs/heads/main', head]);
  return { repo, head, blob };
}

/** Every file under dir with its size: the repository's state on disk. */
async function files(dir: string, out = new Map<string, number>()): Promise<Map<string, number>> {
  for (const e of await readdir(dir, { withFileTypes: true })) {
    const p = join(dir, e.name);
    if (e.isDirectory()) await files(p, out);
    else out.set(p, (await stat(p)).size);
  }
  return out;
}
const leftovers = (m: Map<string, number>) => [...m.keys()].filter((p) => p.includes(QUARANTINE_PREFIX) || p.includes('tmp_pack') || p.includes('tmp_idx'));

test('a too-big fetch fails and leaves nothing, again and again; a normal one lands objects, then the ref', async () => {
  const d = await mkdtemp(join(tmpdir(), 'dfs-sync-fetchcap-'));
  try {
    const src = await source(d, 3 * 2 ** 20);
    const dst = join(d, 'dst.git');
    // fetchMain makes the repository; the first (refused) fetch still does that.
    await assert.rejects(fetchMain(dst, src.repo, gitEnv(), { maxBytes: 2 ** 20 }), (e: Error) => e instanceof JoinError && /more than 1048576 bytes/.test(e.message));
    const before = await files(dst);
    assert.deepEqual(leftovers(before), []);
    for (let i = 0; i < 3; i++) {
      await assert.rejects(fetchMain(dst, src.repo, gitEnv(), { maxBytes: 2 ** 20 }), JoinError);
      assert.deepEqual(await files(dst), before, `fetch ${i}: the repository changed`);
    }
    assert.equal((await run('git', [`--git-dir=${dst}`, 'rev-parse', '--verify', '--quiet', 'refs/heads/main'], { env: gitEnv(), allowFail: true })).code, 1);

    assert.equal(await fetchMain(dst, src.repo, gitEnv(), { maxBytes: 8 * 2 ** 20 }), src.head);
    assert.equal(await git(dst, ['cat-file', '-s', src.blob]), String(3 * 2 ** 20));
    assert.deepEqual(leftovers(await files(dst)), []);
    // Up to date: no pack, the ref is set all the same (the objects are found in the repository).
    assert.equal(await boundedFetch({ repo: dst, url: src.repo, src: 'refs/heads/main', dst: 'refs/fetched/x', env: gitEnv(), maxBytes: 2 ** 20 }), src.head);
    assert.equal(await git(dst, ['rev-parse', 'refs/fetched/x']), src.head);
  } finally {
    await rm(d, { recursive: true, force: true });
  }
});

test('over the ssh transport: too big is refused, a peer that never answers is stopped at the deadline', async () => {
  const d = await mkdtemp(join(tmpdir(), 'dfs-sync-fetchcap-'));
  try {
    const src = await source(d, 3 * 2 ** 20);
    const dst = join(d, 'dst.git');
    await run('git', ['init', '-q', '--bare', '--', dst], { env: gitEnv() });
    // The "peer": git's ssh transport runs this command, which serves src whatever it is asked.
    const serve = { ...gitEnv(), GIT_SSH_COMMAND: `sh -c ${shQuote(`exec git upload-pack ${shQuote(src.repo)}`)}`, GIT_SSH_VARIANT: 'ssh' };
    const url = 'ssh://delugefs@peer:2222/meta.git';
    const fetch = (env: NodeJS.ProcessEnv, o: { maxBytes?: number; timeoutMs?: number } = {}) => boundedFetch({ repo: dst, url, src: 'refs/heads/main', dst: 'refs/fetched/peer', env, ...o });
    const before = await files(dst);
    for (let i = 0; i < 2; i++) {
      await assert.rejects(fetch(serve, { maxBytes: 2 ** 20 }), (e: Error) => e instanceof FetchError && e.reason === 'too_large');
      assert.deepEqual(await files(dst), before);
    }
    // Never answers: the deadline kills git and the ssh command (its process group).
    const pidFile = join(d, 'ssh.pid');
    const stuck = { ...gitEnv(), GIT_SSH_COMMAND: `sh -c ${shQuote(`echo $$ > ${shQuote(pidFile)}; exec sleep 600`)}`, GIT_SSH_VARIANT: 'ssh' };
    await assert.rejects(fetch(stuck, { timeoutMs: 1500 }), (e: Error) => e instanceof FetchError && e.reason === 'timeout');
    const pid = Number((await run('cat', [pidFile])).stdout.toString());
    // Killed at once; reaped (gone from the table) once its new parent gets to it.
    const alive = () => { try { process.kill(pid, 0); return true; } catch { return false; } };
    for (let i = 0; i < 100 && alive(); i++) await new Promise((r) => setTimeout(r, 20));
    assert.equal(alive(), false, 'the ssh command outlived the deadline');
    assert.deepEqual(await files(dst), before);

    assert.equal(await fetch(serve), src.head);
    assert.equal(await git(dst, ['rev-parse', 'refs/fetched/peer']), src.head);
    await git(dst, ['cat-file', '-e', src.blob]);
  } finally {
    await rm(d, { recursive: true, force: true });
  }
});

test('a quarantine left by a crash is removed at start; one of a running fetch is not', async () => {
  const d = await mkdtemp(join(tmpdir(), 'dfs-sync-fetchcap-'));
  try {
    const src = await source(d, 1000);
    const dst = join(d, 'dst.git');
    await run('git', ['init', '-q', '--bare', '--', dst], { env: gitEnv() });
    const stale = join(dst, 'objects', `${QUARANTINE_PREFIX}crash1`);
    await mkdir(join(stale, 'objects', 'pack'), { recursive: true });
    await writeFile(join(stale, 'objects', 'pack', 'tmp_pack_abc'), randomBytes(4096));
    // A fetch running meanwhile (stuck until its deadline) keeps its quarantine.
    const stuck = { ...gitEnv(), GIT_SSH_COMMAND: `sh -c ${shQuote('exec sleep 600')}`, GIT_SSH_VARIANT: 'ssh' };
    const running = boundedFetch({ repo: dst, url: 'ssh://peer/x', src: 'refs/heads/main', dst: 'refs/fetched/p', env: stuck, timeoutMs: 1500 }).catch((e: Error) => e);
    for (let i = 0; i < 50 && (await readdir(join(dst, 'objects'))).filter((n) => n.startsWith(QUARANTINE_PREFIX)).length < 2; i++) await new Promise((r) => setTimeout(r, 20));
    assert.equal(await removeStaleQuarantines(dst), 1);
    assert.equal((await readdir(join(dst, 'objects'))).filter((n) => n.startsWith(QUARANTINE_PREFIX)).length, 1);
    assert.ok((await running) instanceof FetchError);
    assert.deepEqual(leftovers(await files(dst)), []);
    // fetchMain (joining) clears leftovers before it fetches.
    await mkdir(stale, { recursive: true });
    assert.equal(await fetchMain(dst, src.repo, gitEnv()), src.head);
    assert.deepEqual(leftovers(await files(dst)), []);
  } finally {
    await rm(d, { recursive: true, force: true });
  }
});

// Joining through a local member against a hostile one: a control socket (a real ControlServer,
// registered like a node) whose join_local reply carries an option where the repository path
// belongs. Nothing may run, the join fails with a message, the new root is left as it was found.
// And git never reads a path or URL of ours as an option.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm, stat, readdir } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ControlServer } from '../cluster/control-socket.js';
import { RpcRegistry } from '../cluster/rpc.js';
import { registerLocal } from '../cluster/local-registry.js';
import { fetchMain, checkJoinLocalReply } from './join-root.js';
import { GitRepo, gitEnv } from '../meta/repo.js';
import { runCli } from '../testing/node-proc.js';

const ID = 'abcdefghijklmnop';
const dirs: string[] = [];
const servers: ControlServer[] = [];
after(async () => {
  for (const s of servers) await s.close();
  for (const d of dirs) await rm(d, { recursive: true, force: true });
});
async function tmp(name: string): Promise<string> {
  const d = await mkdtemp(join(tmpdir(), `dfs-join-${name}-`));
  dirs.push(d);
  return d;
}
const exists = (p: string) => stat(p).then(() => true, () => false);

test('a join_local reply with an option for a repository runs nothing and fails cleanly', async () => {
  const dir = await tmp('evil');
  const pwned = join(dir, 'pwned');
  const runDir = join(dir, 'run');
  for (const repo of [`--upload-pack=touch ${pwned}`, `-u touch ${pwned}`, 'relative/repo.git', `/abs/../${pwned}`, 42]) {
    const nodeRoot = await tmp('node');
    const rpc = new RpcRegistry()
      .register('status', () => ({ cluster: 'testc', nodeId: ID }))
      .register('join_local', () => ({ cluster: 'testc', inviter: ID, member: {}, repo, head: null }));
    const ctl = await ControlServer.start(join(nodeRoot, 'control.sock'), rpc, () => {});
    servers.push(ctl);
    process.env.DELUGEFS_RUN_DIR = runDir;
    const unregister = await registerLocal({ cluster: 'testc', nodeId: ID, root: nodeRoot, control: ctl.path, pid: process.pid });
    const newRoot = join(dir, 'new');
    const r = await runCli(['testc', newRoot, '--no-mdns'], { env: { DELUGEFS_RUN_DIR: runDir } });
    assert.equal(r.code, 1, `${String(repo)}: ${r.err}`);
    assert.match(r.err, new RegExp(`joining through the local member ${ID} .* failed: the reply's repository .* is not an absolute path`), String(repo));
    assert.equal(await exists(pwned), false, `${String(repo)} ran a command`);
    assert.equal(await exists(newRoot), false, 'a failed join leaves no root behind');
    await unregister();
    await ctl.close();
    servers.pop();
  }
  assert.deepEqual(await readdir(dir), ['run']);
});

test('join_local replies: only this cluster, a node id and an absolute, normal repository path', () => {
  const ok = { cluster: 'testc', inviter: ID, repo: '/srv/disk1/meta/repo.git' };
  assert.deepEqual(checkJoinLocalReply(ok, 'testc'), { inviter: ID, repo: ok.repo });
  for (const [bad, msg] of [
    [null, /not an object/], ['x', /not an object/], [{ ...ok, cluster: 'other' }, /for cluster "other"/],
    [{ ...ok, inviter: '--x' }, /no valid inviting node/], [{ ...ok, repo: '-x' }, /not an absolute path/],
    [{ ...ok, repo: '/a/./b' }, /not an absolute path/], [{ ...ok, repo: '/a\nb' }, /not an absolute path/],
  ] as [unknown, RegExp][]) assert.throws(() => checkJoinLocalReply(bad, 'testc'), msg);
});

test('an argument starting with "-" never reaches git as an option', async () => {
  const dir = await tmp('dash');
  const pwned = join(dir, 'pwned');
  // As the URL of a fetch: git takes it for a (missing) repository and runs nothing.
  for (const url of [`--upload-pack=touch ${pwned}`, `-utouch ${pwned}`]) {
    await assert.rejects(fetchMain(join(dir, 'repo.git'), url, gitEnv()), /could not fetch the cluster's metadata/);
    assert.equal(await exists(pwned), false, url);
  }
  // As a repository directory: created and read as a path.
  const cwd = process.cwd();
  process.chdir(dir);
  try {
    const repo = new GitRepo('-dash.git');
    await repo.init();
    assert.ok((await stat(join(dir, '-dash.git', 'HEAD'))).isFile());
    assert.equal(await repo.head(), null);
  } finally {
    process.chdir(cwd);
  }
});

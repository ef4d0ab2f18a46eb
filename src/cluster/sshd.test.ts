// `delugefs shell` behind the system OpenSSH server, with the authorized_keys lines we generate.
// Skipped where /usr/sbin/sshd is missing (Debian: openssh-server) or we are not root.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm, mkdir, writeFile, access, chmod } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { spawn, ChildProcess } from 'node:child_process';
import { createServer, connect } from 'node:net';
import { Identity } from './identity.js';
import { authorizedKeysText } from './forced-command.js';
import { gitSshCommand, gitSshEnv, metaRepoUrl, writeKnownHosts } from './git-ssh.js';
import { shQuote } from './sh.js';
import { git, runProc } from '../testing/proc.js';

const SSHD = '/usr/sbin/sshd';
const fixture = join(dirname(fileURLToPath(import.meta.url)), 'shell.fixture.js');
const skip = (process.getuid?.() !== 0 || !(await access(SSHD).then(() => true, () => false))) && 'needs root and /usr/sbin/sshd (openssh-server)';

let dir: string;
let sshd: ChildProcess | undefined;
let port: number;
let a: Identity; // the node behind sshd (its key is sshd's host key)
let b: Identity; // a member
let c: Identity; // not a member
let knownHosts: string;
let root: string;

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.listen(0, '127.0.0.1', () => {
      const p = (s.address() as { port: number }).port;
      s.close(() => resolve(p));
    });
    s.on('error', reject);
  });
}

before(async () => {
  if (skip) return;
  dir = await mkdtemp(join(tmpdir(), 'dfs-cl-sshd-'));
  root = join(dir, 'node a');
  [a, b, c] = await Promise.all([root, join(dir, 'b'), join(dir, 'c')].map((r) => Identity.loadOrCreate(r)));
  await mkdir(join(root, 'meta'), { recursive: true });
  await git(['init', '-q', '--bare', '--', join(root, 'meta', 'repo.git')]);
  const bin = join(dir, 'delugefs');
  await writeFile(bin, `#!/bin/sh\nexec ${shQuote(process.execPath)} ${shQuote(fixture)} "$@"\n`);
  await chmod(bin, 0o755);
  await writeFile(join(dir, 'authorized_keys'), authorizedKeysText([b.publicKeyLine], bin, root));
  port = await freePort();
  await writeFile(join(dir, 'sshd_config'), [
    `Port ${port}`, 'ListenAddress 127.0.0.1', `HostKey "${a.privateKeyPath}"`, 'PidFile none',
    `AuthorizedKeysFile "${join(dir, 'authorized_keys')}"`, 'StrictModes no', 'PasswordAuthentication no',
    'KbdInteractiveAuthentication no', 'PubkeyAuthentication yes', 'PermitRootLogin forced-commands-only',
    'UsePAM no', 'AcceptEnv GIT_PROTOCOL', 'LogLevel ERROR', '',
  ].join('\n'));
  await mkdir('/run/sshd', { recursive: true, mode: 0o755 }); // privilege separation directory
  sshd = spawn(SSHD, ['-D', '-e', '-f', join(dir, 'sshd_config')], { stdio: ['ignore', 'ignore', 'pipe'] });
  let err = '';
  sshd.stderr!.on('data', (d) => (err += d));
  knownHosts = join(dir, 'known_hosts');
  await writeKnownHosts(knownHosts, [{ host: '127.0.0.1', port, publicKey: a.publicKeyLine }]);
  // Wait until it accepts connections.
  for (let i = 0; i < 50; i++) {
    const ok = await new Promise<boolean>((resolve) => {
      const k = connect(port, '127.0.0.1', () => { k.destroy(); resolve(true); });
      k.on('error', () => resolve(false));
    });
    if (ok) return;
    if (sshd.exitCode !== null) throw new Error(`sshd exited: ${err}`);
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`sshd did not start: ${err}`);
});

after(async () => {
  if (sshd && sshd.exitCode === null) {
    const done = new Promise((r) => sshd!.once('exit', r));
    sshd.kill('SIGTERM');
    await done;
  }
  if (dir) await rm(dir, { recursive: true, force: true });
});

function ssh(who: Identity, remote: string[], opts: { input?: string; extra?: string[] } = {}) {
  const cmd = gitSshCommand({ identity: who, knownHostsPath: knownHosts, port });
  return runProc('sh', ['-c', `${cmd} ${(opts.extra ?? []).join(' ')} root@127.0.0.1 "$@"`, 'ssh', ...remote], { input: opts.input });
}

test('git push and fetch through a foreign sshd and delugefs shell', { skip }, async () => {
  const env = gitSshEnv({ identity: b, knownHostsPath: knownHosts });
  const url = metaRepoUrl('127.0.0.1', port, 'root');
  const work = join(dir, 'work');
  await git(['init', '-q', '-b', 'main', '--', work]);
  await git(['-C', work, '-c', 'user.name=t', '-c', 'user.email=t@t', 'commit', '-q', '--allow-empty', '-m', 'one']);
  await git(['-C', work, 'push', '-q', '--', url, 'main'], { env });
  assert.equal(await git([`--git-dir=${join(root, 'meta', 'repo.git')}`, 'rev-parse', 'main']), await git(['-C', work, 'rev-parse', 'HEAD']));
  const r = await runProc('git', ['-C', work, 'fetch', '--', url, 'main:refs/remotes/a/main'], { env: { ...process.env, ...env } });
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stderr, /"event":"git_served".*"protocol":"version=2"/);
});

test('rpc works and everything else is refused behind sshd', { skip }, async () => {
  const rpc = await ssh(b, ['delugefs-rpc echo'], { input: '{"x":1}' });
  assert.equal(rpc.code, 0, rpc.stderr);
  assert.deepEqual(JSON.parse(rpc.stdout), { ok: true, result: { params: { x: 1 }, peer: b.nodeId } });
  for (const cmd of ['id', `git-upload-pack '/etc'`, `git-upload-pack '/meta.git/../..'`]) {
    const r = await ssh(b, [cmd]);
    assert.notEqual(r.code, 0, cmd);
    assert.match(r.stderr, /refused command/, cmd);
  }
  const shell = await ssh(b, []);
  assert.notEqual(shell.code, 0);
  assert.match(shell.stderr, /interactive login refused/);
  const pty = await ssh(b, [], { extra: ['-tt'] });
  assert.notEqual(pty.code, 0);
  assert.match(pty.stderr, /PTY allocation request failed/);
  const fwd = await ssh(b, ['delugefs-rpc echo'], { extra: ['-o', 'ExitOnForwardFailure=yes', '-L', `0:127.0.0.1:${port}`], input: '1' });
  assert.notEqual(fwd.code, 0);
  const stranger = await ssh(c, ['delugefs-rpc echo'], { input: '1' });
  assert.notEqual(stranger.code, 0);
  assert.match(stranger.stderr, /Permission denied/);
});

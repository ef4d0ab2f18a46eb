import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm, mkdir } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { PassThrough } from 'node:stream';
import { Identity } from './identity.js';
import { authorizedKeysLine, authorizedKeysText, runForcedCommand } from './forced-command.js';
import { RpcRegistry } from './rpc.js';
import { memoryLog } from './log.js';
import { shQuote } from './sh.js';
import { git, runProc } from '../testing/proc.js';

const fixture = join(dirname(fileURLToPath(import.meta.url)), 'forced-command.fixture.js');
let dir: string;
let repo: string;
let peer: Identity;

before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'dfs-cl-shell-'));
  repo = join(dir, 'meta', 'repo.git');
  await mkdir(repo, { recursive: true });
  await git(['init', '-q', '--bare', '--', repo]);
  peer = await Identity.loadOrCreate(join(dir, 'peer'));
});
after(() => rm(dir, { recursive: true, force: true }));

test('git push and fetch work through the forced command on process stdio', async () => {
  const env = { GIT_SSH_VARIANT: 'simple', GIT_SSH_COMMAND: `${shQuote(process.execPath)} ${shQuote(fixture)} ${shQuote(repo)} ${peer.nodeId}` };
  const work = join(dir, 'work');
  await git(['init', '-q', '-b', 'main', '--', work]);
  await git(['-C', work, '-c', 'user.name=t', '-c', 'user.email=t@t', 'commit', '-q', '--allow-empty', '-m', 'x']);
  const push = await runProc('git', ['-C', work, 'push', '--', 'ssh://x/meta.git', 'main'], { env: { ...process.env, ...env } });
  assert.equal(push.code, 0, push.stderr);
  assert.match(push.stderr, /"event":"receive_hook","peer":"[a-z2-7]{16}"/);
  assert.equal(await git([`--git-dir=${repo}`, 'rev-parse', 'main']), await git(['-C', work, 'rev-parse', 'HEAD']));
  const fetch = await runProc('git', ['-C', work, 'fetch', '--', 'ssh://x/meta.git', 'main:refs/remotes/x/main'], { env: { ...process.env, ...env } });
  assert.equal(fetch.code, 0, fetch.stderr);
  const bad = await runProc('git', ['-C', work, 'fetch', '--', 'ssh://x/etc/passwd'], { env: { ...process.env, ...env } });
  assert.notEqual(bad.code, 0);
  assert.match(bad.stderr, /refused command: repository path not allowed/);
});

function streams(input: string) {
  const stdin = new PassThrough();
  const stdout = new PassThrough();
  const stderr = new PassThrough();
  let out = '';
  let err = '';
  stdout.on('data', (c) => (out += c));
  stderr.on('data', (c) => (err += c));
  stdin.end(input);
  return { io: { stdin, stdout, stderr }, out: () => out, err: () => err };
}

test('rpc, wrong commands and interactive logins under a foreign sshd', async () => {
  const rpc = new RpcRegistry().register('echo', (p) => p);
  const log = memoryLog();
  const o = { repoPath: repo, rpc, log, peerNodeId: peer.nodeId, refusal: async () => undefined };
  let s = streams('{"a":1}');
  assert.equal(await runForcedCommand({ ...o, command: 'delugefs-rpc echo', io: s.io }), 0);
  assert.deepEqual(JSON.parse(s.out()), { ok: true, result: { a: 1 } });
  s = streams('');
  assert.equal(await runForcedCommand({ ...o, command: 'bash -i', io: s.io }), 1);
  assert.match(s.err(), /refused command/);
  s = streams('');
  assert.equal(await runForcedCommand({ ...o, command: '', io: s.io }), 1);
  assert.match(s.err(), /interactive login refused/);
  assert.deepEqual(log.events.map((e) => e.event), ['rpc', 'command_refused', 'refused']);
  // A missing repository is an error for the client, not a crash.
  s = streams('');
  assert.equal(await runForcedCommand({ ...o, repoPath: join(dir, 'gone.git'), command: `git-upload-pack '/meta.git'`, io: s.io }), 1);
  assert.match(s.err(), /cannot run git-upload-pack/);
});

test('membership is asked on every call: a refused, unknown or unverifiable node is served nothing', async () => {
  let served = 0;
  const rpc = new RpcRegistry().register('echo', (p) => { served++; return p; });
  const asked: string[] = [];
  const cases: [Partial<Parameters<typeof runForcedCommand>[0]>, RegExp][] = [
    [{ refusal: async (id) => { asked.push(id); return `node ${id} was removed from the cluster`; } }, /refused: node [a-z2-7]{16} was removed from the cluster/],
    [{ refusal: async () => { throw new Error('repository unreadable'); } }, /refused: cannot check membership: repository unreadable/],
    [{ peerNodeId: undefined }, /refused: the forced command names no member/],
    [{ peerNodeId: 'not-a-node-id' }, /refused: the forced command names no member/],
  ];
  for (const [over, msg] of cases) {
    for (const command of ['delugefs-rpc echo', `git-upload-pack '/meta.git'`, '']) {
      const s = streams('{}');
      const status = await runForcedCommand({ repoPath: repo, rpc, log: memoryLog(), peerNodeId: peer.nodeId, refusal: async () => undefined, ...over, command, io: s.io });
      assert.equal(status, 1, `${command}: ${s.err()}`);
      assert.match(s.err(), msg);
      assert.equal(s.out(), '', 'nothing served');
    }
  }
  assert.equal(served, 0);
  assert.deepEqual(asked, [peer.nodeId, peer.nodeId, peer.nodeId], 'asked on every call');
});

test('authorized_keys lines pin each key to delugefs shell with every restriction', async () => {
  const line = authorizedKeysLine(peer.publicKeyLine, '/usr/local/bin/delugefs', '/mnt/disk "2"/.db');
  const blob = peer.publicKeyLine.split(' ')[1];
  assert.equal(
    line,
    `command="/usr/local/bin/delugefs shell '/mnt/disk \\"2\\"/.db' --peer ${peer.nodeId}",no-pty,no-port-forwarding,no-agent-forwarding,no-X11-forwarding,no-user-rc ssh-ed25519 ${blob} delugefs:${peer.nodeId}`,
  );
  assert.equal(authorizedKeysText([peer.publicKeyLine], 'delugefs', '/r').split('\n').length, 2);
  assert.throws(() => authorizedKeysLine('ssh-rsa AAAA x', 'delugefs', '/r'));
  // ssh-keygen accepts the line as an authorized_keys entry with options.
  const r = await runProc('ssh-keygen', ['-l', '-f', '-'], { input: line + '\n' });
  assert.equal(r.code, 0, r.stderr);
  assert.ok(r.stdout.includes(peer.fingerprint));
});

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm, mkdir } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Identity } from './identity.js';
import { SshServer } from './ssh-server.js';
import { RpcClient, RpcCallError } from './rpc-client.js';
import { RpcError, RpcRegistry } from './rpc.js';
import { gitSshCommand, gitSshEnv, metaRepoUrl, writeKnownHosts } from './git-ssh.js';
import { memoryLog } from './log.js';
import { git, runProc } from '../testing/proc.js';

let dir: string;
let server: SshServer;
let a: Identity; // the serving node
let b: Identity; // a member
let c: Identity; // not a member
let repoA: string;
let knownHosts: string;
const log = memoryLog();
const received: string[] = [];
const aborted: boolean[] = [];

before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'dfs-cl-ssh-'));
  [a, b, c] = await Promise.all(['a', 'b', 'c'].map((n) => Identity.loadOrCreate(join(dir, n))));
  repoA = join(dir, 'a', 'meta', 'repo.git');
  await mkdir(repoA, { recursive: true });
  await git(['init', '-q', '--bare', '--', repoA]);
  const rpc = new RpcRegistry()
    .register('echo', (params, peer) => ({ params, peer: peer.nodeId }))
    .register('big', () => 'x'.repeat(2 << 20))
    .register('fail', () => { throw new RpcError('nope', 'it failed on purpose'); })
    .register('slow', (_p, _peer, signal) => new Promise((resolve) => {
      const t = setTimeout(() => resolve('late'), 5000);
      signal.addEventListener('abort', () => { clearTimeout(t); aborted.push(true); resolve('aborted'); });
    }));
  server = await SshServer.start({
    identity: a,
    repoPath: repoA,
    host: '127.0.0.1',
    port: 0,
    isMember: (k) => k.nodeId === b.nodeId,
    rpc,
    log,
    maxRpcInput: 64 * 1024,
    onReceivePack: (peer) => received.push(peer.nodeId),
  });
  knownHosts = join(dir, 'b', 'known_hosts');
  await writeKnownHosts(knownHosts, [{ host: '127.0.0.1', port: server.port, publicKey: a.publicKeyLine }]);
});

after(async () => {
  await server?.close();
  await rm(dir, { recursive: true, force: true });
});

/** Runs the system ssh as `who` against the server with an explicit remote command. */
function ssh(who: Identity, remote: string[], opts: { input?: string; extra?: string[] } = {}) {
  const cmd = gitSshCommand({ identity: who, knownHostsPath: knownHosts, port: server.port });
  return runProc('sh', ['-c', `${cmd} ${(opts.extra ?? []).join(' ')} delugefs@127.0.0.1 "$@"`, 'ssh', ...remote], { input: opts.input });
}

test('git push and fetch between two bare repositories through the server', async () => {
  const env = gitSshEnv({ identity: b, knownHostsPath: knownHosts });
  const url = metaRepoUrl('127.0.0.1', server.port);
  const work = join(dir, 'b', 'work');
  await git(['init', '-q', '-b', 'main', '--', work]);
  await git(['-C', work, '-c', 'user.name=t', '-c', 'user.email=t@t', 'commit', '-q', '--allow-empty', '-m', 'one']);
  const head = await git(['-C', work, 'rev-parse', 'HEAD']);
  await git(['-C', work, 'push', '-q', '--', url, 'main:refs/heads/main'], { env });
  assert.equal(await git([`--git-dir=${repoA}`, 'rev-parse', 'refs/heads/main']), head);
  assert.deepEqual(received, [b.nodeId]);

  const clone = join(dir, 'b', 'clone.git');
  await git(['init', '-q', '--bare', '--', clone]);
  await git([`--git-dir=${clone}`, 'fetch', '-q', '--', url, 'refs/heads/main:refs/remotes/a/main'], { env });
  assert.equal(await git([`--git-dir=${clone}`, 'rev-parse', 'refs/remotes/a/main']), head);

  // Measured, not asserted: a no-op fetch (new ssh process, handshake, ref advertisement).
  const n = 5;
  const t0 = performance.now();
  for (let i = 0; i < n; i++) await git([`--git-dir=${clone}`, 'fetch', '-q', '--', url, 'refs/heads/main:refs/remotes/a/main'], { env });
  assert.ok(log.events.some((e) => e.event === 'git_served' && e.protocol === 'version=2'), 'git speaks protocol v2 through the server');
  console.log(`# no-op git fetch over ssh: ${((performance.now() - t0) / n).toFixed(1)} ms (mean of ${n})`);
});

test('rpc calls over a persistent connection', async () => {
  const client = new RpcClient({ identity: b, host: '127.0.0.1', port: server.port, hostFingerprint: a.fingerprint, log: memoryLog() });
  try {
    assert.deepEqual(await client.call('echo', { x: [1, 'two'] }), { params: { x: [1, 'two'] }, peer: b.nodeId });
    await assert.rejects(client.call('fail'), (e: RpcCallError) => e.code === 'nope' && /on purpose/.test(e.message));
    await assert.rejects(client.call('missing'), (e: RpcCallError) => e.code === 'unknown_method');
    await assert.rejects(client.call('echo', 'x'.repeat(100 * 1024)), (e: RpcCallError) => e.code === 'too_large');
    assert.ok(log.events.some((e) => e.event === 'rpc_refused' && /larger/.test(String(e.reason))));
    // A caller that gives up aborts the handler on the server.
    await assert.rejects(client.call('slow', null, { timeoutMs: 200 }), (e: RpcCallError) => e.code === 'timeout');
    for (let i = 0; i < 50 && !aborted.length; i++) await new Promise((r) => setTimeout(r, 20));
    assert.deepEqual(aborted, [true]);
    // An oversize reply is cut off on the client side.
    const small = new RpcClient({ identity: b, host: '127.0.0.1', port: server.port, hostFingerprint: a.fingerprint, maxReply: 1 << 20, log: memoryLog() });
    await assert.rejects(small.call('big'), (e: RpcCallError) => e.code === 'too_large');
    small.close();
    assert.equal(((await client.call('big')) as string).length, 2 << 20);
    // Still usable after errors.
    assert.deepEqual(await client.call('echo', 7), { params: 7, peer: b.nodeId });

    const n = 50;
    const t0 = performance.now();
    for (let i = 0; i < n; i++) await client.call('echo', i);
    console.log(`# rpc round trip (connection reused): ${((performance.now() - t0) / n).toFixed(2)} ms (mean of ${n})`);
    const fresh = [];
    for (let i = 0; i < 5; i++) {
      const cl = new RpcClient({ identity: b, host: '127.0.0.1', port: server.port, hostFingerprint: a.fingerprint, log: memoryLog() });
      const t = performance.now();
      await cl.call('echo', i);
      fresh.push(performance.now() - t);
      cl.close();
    }
    console.log(`# rpc first call on a new connection: ${(fresh.reduce((s, x) => s + x, 0) / fresh.length).toFixed(1)} ms (mean of 5)`);
  } finally {
    client.close();
  }
});

test('rpc client reconnects after the server dropped its connection', async () => {
  const client = new RpcClient({ identity: b, host: '127.0.0.1', port: server.port, hostFingerprint: a.fingerprint, log: memoryLog() });
  try {
    assert.deepEqual(await client.call('echo', 1), { params: 1, peer: b.nodeId });
    await server.close(); // drops every connection and stops listening
    await assert.rejects(client.call('echo', 2, { timeoutMs: 2000 }));
    server = await SshServer.start({ ...serverOptsFromPrevious(), port: server.port });
    assert.deepEqual(await client.call('echo', 3), { params: 3, peer: b.nodeId });
  } finally {
    client.close();
  }
});

function serverOptsFromPrevious() {
  return {
    identity: a,
    repoPath: repoA,
    host: '127.0.0.1',
    isMember: (k: { nodeId: string }) => k.nodeId === b.nodeId,
    rpc: server.rpc,
    log,
    maxRpcInput: 64 * 1024,
    onReceivePack: (peer: { nodeId: string }) => received.push(peer.nodeId),
  };
}

test('rpc client refuses a host whose key does not match', async () => {
  const client = new RpcClient({ identity: b, host: '127.0.0.1', port: server.port, hostFingerprint: c.fingerprint, log: memoryLog() });
  try {
    await assert.rejects(client.call('echo', 1), (e: RpcCallError) => e.code === 'host_key_mismatch');
  } finally {
    client.close();
  }
});

test('an unknown key is refused, for rpc and for git', async () => {
  const client = new RpcClient({ identity: c, host: '127.0.0.1', port: server.port, hostFingerprint: a.fingerprint, log: memoryLog() });
  try {
    await assert.rejects(client.call('echo', 1), (e: RpcCallError) => e.code === 'unreachable');
  } finally {
    client.close();
  }
  const r = await ssh(c, [`git-upload-pack '/meta.git'`]);
  assert.notEqual(r.code, 0);
  assert.match(r.stderr, /Permission denied/);
  assert.ok(log.events.some((e) => e.event === 'auth_refused' && e.nodeId === c.nodeId && e.reason === 'not a member'));
});

test('wrong commands, other paths and path traversal are refused', async () => {
  for (const cmd of [
    'ls -la',
    'sh -c id',
    `git-upload-pack '/meta.git/../../../etc'`,
    `git-upload-pack '/etc'`,
    `git-receive-pack '${join(dir, 'b', 'clone.git')}'`,
    `git-upload-pack '${repoA}/../../b/clone.git'`,
    `git-upload-pack '/meta.git'; rm -rf /`,
    'delugefs-rpc ../x',
    'delugefs-rpc',
  ]) {
    const r = await ssh(b, [cmd]);
    assert.notEqual(r.code, 0, cmd);
    assert.match(r.stderr, /refused command/, cmd);
  }
  assert.ok(log.events.filter((e) => e.event === 'command_refused').length >= 9);
  // The allowed spellings work: virtual path and real path, dashed and spaced.
  for (const cmd of [`git-upload-pack '/meta.git'`, `git upload-pack 'meta.git'`, `git-upload-pack '${repoA}'`]) {
    const r = await ssh(b, [cmd], { input: '0000' });
    assert.equal(r.code, 0, `${cmd}: ${r.stderr}`);
    assert.match(r.stdout, /refs\/heads\/main/);
  }
});

test('malformed rpc input gets a clear error and no crash', async () => {
  const r = await ssh(b, ['delugefs-rpc echo'], { input: '{not json' });
  assert.equal(r.code, 1);
  assert.deepEqual(JSON.parse(r.stdout), { ok: false, error: { code: 'bad_json', message: 'rpc input is not valid JSON' } });
  const ok = await ssh(b, ['delugefs-rpc echo'], { input: '[1,2]' });
  assert.equal(ok.code, 0);
  assert.deepEqual(JSON.parse(ok.stdout).result.params, [1, 2]);
});

test('shell, pty, forwarding and subsystems are refused', async () => {
  const before = log.events.length;
  const shell = await ssh(b, [], { extra: ['-tt'] });
  assert.notEqual(shell.code, 0);
  const sftp = await ssh(b, ['sftp'], { extra: ['-s'] });
  assert.notEqual(sftp.code, 0);
  const fwd = await ssh(b, ['delugefs-rpc echo'], { extra: ['-o', 'ExitOnForwardFailure=yes', '-R', '0:127.0.0.1:9'], input: '1' });
  assert.notEqual(fwd.code, 0);
  const what = log.events.slice(before).filter((e) => e.event === 'refused').map((e) => String(e.what));
  for (const w of ['pty', 'shell', 'sftp', 'tcpip-forward']) assert.ok(what.includes(w), `${w} in ${what.join(',')}`);
});

test('git refuses a server whose host key is not in the strict known_hosts', async () => {
  const other = join(dir, 'b', 'known_hosts_wrong');
  await writeKnownHosts(other, [{ host: '127.0.0.1', port: server.port, publicKey: c.publicKeyLine }]);
  const env = gitSshEnv({ identity: b, knownHostsPath: other });
  const clone = join(dir, 'b', 'clone2.git');
  await git(['init', '-q', '--bare', '--', clone]);
  const r = await runProc('git', [`--git-dir=${clone}`, 'fetch', '--', metaRepoUrl('127.0.0.1', server.port), 'refs/heads/main'], { env: { ...process.env, ...env } });
  assert.notEqual(r.code, 0);
  assert.match(r.stderr, /host key|Host key verification failed/i);
  // Unknown host (no line at all) is refused too, never added.
  const empty = join(dir, 'b', 'known_hosts_empty');
  await writeKnownHosts(empty, []);
  const r2 = await runProc('git', [`--git-dir=${clone}`, 'fetch', '--', metaRepoUrl('127.0.0.1', server.port), 'refs/heads/main'], { env: { ...process.env, ...gitSshEnv({ identity: b, knownHostsPath: empty }) } });
  assert.notEqual(r2.code, 0);
  assert.match(r2.stderr, /Host key verification failed/);
});

test('parallel rpc calls share one connection; dropPeer ends it', async () => {
  const client = new RpcClient({ identity: b, host: '127.0.0.1', port: server.port, hostFingerprint: a.fingerprint, log: memoryLog() });
  try {
    const results = await Promise.all(Array.from({ length: 20 }, (_, i) => client.call('echo', i)));
    assert.deepEqual(results.map((r) => (r as { params: number }).params), Array.from({ length: 20 }, (_, i) => i));
    assert.equal(server.dropPeer(b.nodeId), 1);
    // The next call notices the dead connection and reconnects by itself.
    assert.deepEqual(await client.call('echo', 'again'), { params: 'again', peer: b.nodeId });
  } finally {
    client.close();
  }
});

test('garbage on the SSH port is logged and does not hurt the server', async () => {
  const { connect } = await import('node:net');
  for (const junk of ['GET / HTTP/1.0\r\n\r\n', 'SSH-2.0-x\r\n' + '\0'.repeat(5000), '']) {
    await new Promise<void>((resolve) => {
      const s = connect(server.port, '127.0.0.1', () => s.end(junk));
      s.on('error', () => resolve());
      s.on('close', () => resolve());
      s.resume();
    });
  }
  const client = new RpcClient({ identity: b, host: '127.0.0.1', port: server.port, hostFingerprint: a.fingerprint, log: memoryLog() });
  try {
    assert.deepEqual(await client.call('echo', 'still here'), { params: 'still here', peer: b.nodeId });
  } finally {
    client.close();
  }
});

test('limits: guests are few, short-lived and small; a member still gets in; silent sockets time out', async () => {
  const { connect } = await import('node:net');
  const ssh2 = (await import('ssh2')).default;
  const llog = memoryLog();
  const srv = await SshServer.start({
    identity: a, repoPath: repoA, host: '127.0.0.1', port: 0, log: llog,
    isMember: (k) => k.nodeId === b.nodeId,
    rpc: new RpcRegistry().register('join', (p) => ({ got: p })).register('echo', (p) => p),
    guestMethods: ['join'],
    limits: { maxGuests: 2, maxGuestsPerAddress: 8, guestChannels: 1, guestMaxInput: 1024, guestTimeoutMs: 1500, preauthTimeoutMs: 800 },
  });
  const open: Array<{ end(): void }> = [];
  const guest = (who: Identity) => new Promise<InstanceType<typeof ssh2.Client>>((resolve, reject) => {
    const cl = new ssh2.Client();
    open.push(cl);
    cl.on('ready', () => resolve(cl)).on('error', reject);
    cl.connect({ host: '127.0.0.1', port: srv.port, username: 'x', privateKey: who.privateKeyOpenSSH, hostVerifier: () => true });
  });
  const call = (cl: InstanceType<typeof ssh2.Client>, input: string) => new Promise<string>((resolve, reject) => cl.exec('delugefs-rpc join', (err, ch) => {
    if (err) return reject(err);
    let out = '';
    ch.on('data', (d: Buffer) => (out += d)).on('close', () => resolve(out));
    ch.stderr.resume();
    ch.end(input);
  }));
  try {
    const others = await Promise.all(['g1', 'g2', 'g3'].map((n) => Identity.loadOrCreate(join(dir, n))));
    const [g1, g2] = [await guest(others[0]!), await guest(others[1]!)];
    // The guest pool is full: a third guest is refused, a member is not.
    await assert.rejects(guest(others[2]!), /authentication methods failed/);
    const member = new RpcClient({ identity: b, host: '127.0.0.1', port: srv.port, hostFingerprint: a.fingerprint, log: memoryLog() });
    try {
      assert.equal(await member.call('echo', 5), 5);
      assert.equal(srv.connectionStats().member, 1);
    } finally {
      member.close();
    }
    // One channel per guest connection; input past guestMaxInput is refused at once.
    assert.match(await call(g1, '{"token":"t"}'), /"got":\{"token":"t"\}/);
    const held = new Promise<void>((resolve) => g2.exec('delugefs-rpc join', (err, ch) => { assert.ifError(err); ch.write('{'); ch.on('data', () => {}); resolve(); }));
    await held;
    await assert.rejects(new Promise((resolve, reject) => g2.exec('delugefs-rpc join', (err, ch) => (err ? reject(err) : resolve(ch)))));
    assert.match(await call(g1, JSON.stringify({ token: 'x'.repeat(4096) })), /too_large/);
    // Guests are gone after guestTimeoutMs, whatever they do; a silent socket after preauthTimeoutMs.
    const silent = connect(srv.port, '127.0.0.1');
    silent.on('data', () => {}).on('error', () => {});
    const silentClosed = new Promise<void>((r) => silent.on('close', () => r()));
    const guestClosed = new Promise<void>((r) => g2.on('close', () => r()));
    await Promise.all([silentClosed, guestClosed]);
    const reasons = llog.events.filter((e) => e.event === 'limit_refused').map((e) => String(e.reason));
    for (const r of ['guests_total', 'guest_channels', 'guest_timeout', 'preauth_timeout']) assert.ok(reasons.includes(r), `${r} in ${reasons.join(',')}`);
  } finally {
    for (const c of open) c.end();
    await srv.close();
  }
});

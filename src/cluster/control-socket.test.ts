import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm, stat } from 'node:fs/promises';
import { statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import net from 'node:net';
import { PassThrough } from 'node:stream';
import { ControlServer, controlCall, controlDispatcher, registerForward, LOCAL_PEER } from './control-socket.js';
import { RpcRegistry, RpcError } from './rpc.js';
import { RpcCallError } from './rpc-client.js';
import { runForcedCommand } from './forced-command.js';
import { memoryLog } from './log.js';

test('control socket: calls, errors, bad input, forwarding for delugefs shell', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'dfs-cl-ctl-'));
  const path = join(dir, 'control.sock');
  const rpc = new RpcRegistry()
    .register('whoami', (_p, peer) => peer)
    .register('boom', () => { throw new RpcError('boom', 'exploded'); });
  registerForward(rpc);
  const log = memoryLog();
  const server = await ControlServer.start(path, rpc, log);
  try {
    assert.equal((await stat(path)).mode & 0o777, 0o600);
    await assert.rejects(ControlServer.start(path, rpc, log), /in use/);
    assert.deepEqual(await controlCall(path, 'whoami'), LOCAL_PEER);
    await assert.rejects(controlCall(path, 'boom'), (e: RpcCallError) => e.code === 'boom');
    await assert.rejects(controlCall(path, 'nope'), (e: RpcCallError) => e.code === 'unknown_method');
    await assert.rejects(controlCall(join(dir, 'missing.sock'), 'whoami'), (e: RpcCallError) => e.code === 'not_running');

    // Garbage lines get an error reply; the connection and server survive.
    const replies = await new Promise<string[]>((resolve) => {
      const s = net.connect(path, () => s.write('not json\n{"id":7,"method":"../x"}\n{"id":8,"method":"whoami"}\n'));
      let buf = '';
      s.setEncoding('utf8');
      s.on('data', (c) => {
        buf += c;
        if (buf.split('\n').length > 3) { s.end(); resolve(buf.trim().split('\n')); }
      });
    });
    const parsed = replies.map((l) => JSON.parse(l));
    assert.deepEqual(parsed.map((r) => r.ok), [false, false, true]);
    assert.deepEqual(parsed.map((r) => r.id).sort(), [7, 8, null].sort());

    // delugefs shell under a foreign sshd forwards RPC to the running node with the member's id.
    const stdout = new PassThrough();
    let out = '';
    stdout.on('data', (c) => (out += c));
    const stdin = new PassThrough();
    stdin.end('{}');
    const status = await runForcedCommand({
      repoPath: dir, rpc: controlDispatcher(path), peerNodeId: 'abcdefghijklmnop', refusal: async () => undefined, command: 'delugefs-rpc whoami',
      io: { stdin, stdout, stderr: new PassThrough() }, log: memoryLog(),
    });
    assert.equal(status, 0);
    assert.deepEqual(JSON.parse(out).result, { nodeId: 'abcdefghijklmnop', address: 'sshd', member: true });
    // forward is refused to anyone but the control socket (a member over SSH cannot impersonate).
    const r = await rpc.dispatch('forward', { method: 'whoami', params: null, peer: 'abcdefghijklmnop' }, { nodeId: 'zzzzzzzzzzzzzzzz', member: true });
    assert.equal(r.ok, false);
  } finally {
    await server.close();
    await rm(dir, { recursive: true, force: true });
  }
});

test('control socket: never looser than 0600, not even right after bind; the umask is restored', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'dfs-cl-ctl-'));
  const path = join(dir, 'control.sock');
  // The loosest umask a user may have: a socket bound under it is connectable by everyone.
  const umask = process.umask(0);
  // Observe the socket the moment bind(2) made it (inside listen, before any other JS runs).
  const listen = net.Server.prototype.listen;
  const seen: number[] = [];
  net.Server.prototype.listen = function (this: net.Server, ...args: unknown[]) {
    const r = (listen as (...a: unknown[]) => net.Server).apply(this, args);
    seen.push(statSync(path).mode & 0o777);
    return r;
  } as typeof listen;
  let server: ControlServer | undefined;
  try {
    server = await ControlServer.start(path, new RpcRegistry(), memoryLog());
    const now = process.umask(0);
    assert.equal(now, 0, 'the process umask is restored after listen');
    assert.equal(seen.length, 1);
    assert.equal(seen[0]! & 0o077, 0, `socket was ${seen[0]!.toString(8)} right after bind`);
    assert.equal((await stat(path)).mode & 0o777, 0o600);
  } finally {
    net.Server.prototype.listen = listen;
    process.umask(umask);
    await server?.close();
    await rm(dir, { recursive: true, force: true });
  }
});

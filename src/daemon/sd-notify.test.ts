// The sd_notify sender against a real AF_UNIX datagram socket (a python3 receiver, as systemd
// binds it): path and abstract addresses, this process's pid in the credentials, nothing at all
// without NOTIFY_SOCKET, and the variable kept from children.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { formatState, sdNotifier } from './sd-notify.js';
import { notifySocket, NotifySocket } from '../testing/notify-socket.js';

const dir = await mkdtemp(join(tmpdir(), 'dfs-sdnotify-'));
const sockets: NotifySocket[] = [];
after(async () => {
  for (const s of sockets) await s.close();
  await rm(dir, { recursive: true, force: true });
});

test('READY=1 and STATUS reach a socket given by path, from this pid', async () => {
  const s = await notifySocket(join(dir, 'notify'));
  sockets.push(s);
  const env: NodeJS.ProcessEnv = { NOTIFY_SOCKET: s.address };
  const n = sdNotifier(env)!;
  assert.ok(n);
  assert.equal(env.NOTIFY_SOCKET, undefined, 'children must not inherit NOTIFY_SOCKET');
  assert.equal(n.notify({ READY: '1', STATUS: 'ready:\nmounted' }), null);
  const got = await s.next(/READY=1/);
  assert.equal(got.data, 'READY=1\nSTATUS=ready: mounted\n');
  assert.equal(got.pid, process.pid);
});

test('an abstract socket (@name, what systemd gives)', async () => {
  const s = await notifySocket(`@dfs-sdnotify-${process.pid}`);
  sockets.push(s);
  const n = sdNotifier({ NOTIFY_SOCKET: s.address })!;
  assert.equal(n.notify({ STOPPING: '1' }), null);
  assert.equal((await s.next(/STOPPING=1/)).data, 'STOPPING=1\n');
});

test('no NOTIFY_SOCKET: no notifier, the native module is not even loaded', () => {
  const load = () => { throw new Error('loaded'); };
  assert.equal(sdNotifier({}, load), null);
  assert.equal(sdNotifier({ NOTIFY_SOCKET: '' }, load), null);
});

test('errors are returned, not thrown: nobody listening, a name too long', () => {
  assert.equal(sdNotifier({ NOTIFY_SOCKET: join(dir, 'nobody') })!.notify({ READY: '1' }), 'ENOENT');
  assert.equal(sdNotifier({ NOTIFY_SOCKET: '/' + 'x'.repeat(200) })!.notify({ READY: '1' }), 'ENAMETOOLONG');
  assert.throws(() => sdNotifier({ NOTIFY_SOCKET: 'vsock:2:1234' }), /only unix sockets/);
  assert.throws(() => formatState({ 'READY=1\nX': '1' }), /not a variable name/);
});

// The node under a service manager's eyes (Type=notify): with NOTIFY_SOCKET set, READY=1 comes
// from the node's own pid once its mount answers, STOPPING=1 when SIGTERM begins the stop, and
// the stop still unmounts and exits 0. The socket is real (AF_UNIX datagrams, python3 receiver).
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { readFile, statfs } from 'node:fs/promises';
import { join } from 'node:path';
import { sandbox, Sandbox } from '../testing/node-proc.js';
import { notifySocket, NotifySocket } from '../testing/notify-socket.js';

let sb: Sandbox | undefined;
let sock: NotifySocket | undefined;
after(async () => {
  await sb?.cleanup();
  await sock?.close();
});

const mounted = async (mnt: string) => (await readFile('/proc/self/mountinfo', 'utf8')).split('\n').some((l) => l.split(' ')[4] === mnt);

test('READY=1 once mounted, STOPPING=1 on SIGTERM, from the main pid', { timeout: 90_000 }, async () => {
  sb = await sandbox('dfs-notify');
  sock = await notifySocket(join(sb.dir, 'notify'));
  const s = sock;
  const mnt = sb.mnt;
  // Checked the moment READY=1 arrives: a unit ordered after this one may use the mount then.
  let atReady: Promise<boolean> | undefined;
  const ready = s.next(/READY=1/, 60_000).then((n) => {
    atReady = mounted(mnt).then(async (m) => m && (await statfs(mnt)).type > 0);
    return n;
  });
  const n = await sb.start([], { create: true, env: { NOTIFY_SOCKET: s.address } });
  const r = await ready;
  assert.equal(await atReady, true, 'the mount answers when READY=1 arrives');
  assert.equal(r.pid, n.proc.pid, 'sent by the main process (NotifyAccess=main)');
  assert.match(r.data, /^READY=1\nSTATUS=node \S+ of cluster testc ready, mounted on /m);
  assert.ok(!s.received.some((x) => /STOPPING=1/.test(x.data)));
  assert.equal(await n.stop(), 0);
  const stopping = await s.next(/STOPPING=1/, 1000);
  assert.equal(stopping.pid, n.proc.pid);
  assert.match(stopping.data, /^STOPPING=1\nSTATUS=stopping \(SIGTERM\)\n$/);
  assert.ok(s.received.indexOf(stopping) > s.received.indexOf(r));
  assert.equal(await mounted(mnt), false, 'unmounted by the stop');
  assert.match(n.stderr(), /"node.stopped"/);
  assert.doesNotMatch(n.stderr(), /systemd.notify_failed/);
});

test('without NOTIFY_SOCKET nothing is sent; a socket nobody serves is a warning, not a failure', { timeout: 60_000 }, async () => {
  const b = await sandbox('dfs-notify');
  try {
    const quiet = await b.start([], { create: true, mount: false, env: { NOTIFY_SOCKET: undefined } });
    assert.equal(await quiet.stop(), 0);
    assert.doesNotMatch(quiet.stderr(), /systemd/);
    const nobody = await b.start([], { mount: false, env: { NOTIFY_SOCKET: join(b.dir, 'nobody') } });
    assert.equal(await nobody.stop(), 0);
    assert.match(nobody.stderr(), /"systemd.notify_failed".*"state":"READY,STATUS".*"error":"ENOENT"/);
  } finally {
    await b.cleanup();
  }
});

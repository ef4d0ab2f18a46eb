// Special files on a real mount (issue 11): FIFOs, Unix sockets, character and block device
// nodes are created as on the root's own disk (compared in the same run), stored in the
// namespace (they survive a restart), and do their I/O in the kernel: a FIFO carries bytes
// between two processes, a socket bound in the mount accepts a connection. The mount is nodev,
// so a device node cannot be opened, as on any nodev mount.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs/promises';
import { createConnection, createServer } from 'node:net';
import { join } from 'node:path';
import { once } from 'node:events';
import { sandbox, sh, Sandbox } from '../testing/node-proc.js';
import { netnsAvailable } from '../testing/netns.js';
import { startCluster } from '../testing/cluster.js';
import { eventually } from '../testing/eventually.js';

let sb: Sandbox | undefined;
after(async () => {
  await sb?.cleanup();
});

/** The type and permission bits, owner and device number of a path, as stat(1) prints them. */
async function described(path: string): Promise<string> {
  return (await sh(`stat -c '%F %a %u:%g %t:%T %s' ${path}`)).out.trim();
}

async function makeAll(dir: string): Promise<void> {
  await sh(`cd ${dir} && umask 022 && mkfifo -m 0640 fifo && mknod -m 0600 null c 1 3 && mknod -m 0660 loop b 7 200`);
}

test('FIFOs, sockets and device nodes: made as on a local disk, kept in the namespace, their I/O done by the kernel', { timeout: 120_000 }, async () => {
  sb = await sandbox('dfs-special');
  let node = await sb.start([], { create: true });
  const mnt = sb.mnt;
  const local = join(sb.dir, 'local');
  await fs.mkdir(local);
  await makeAll(mnt);
  await makeAll(local);
  for (const name of ['fifo', 'null', 'loop']) assert.equal(await described(join(mnt, name)), await described(join(local, name)), name);
  assert.match(await described(join(mnt, 'null')), /^character special file 600 0:0 1:3 0$/);
  assert.match(await described(join(mnt, 'loop')), /^block special file 660 0:0 7:c8 0$/);

  // A FIFO carries bytes between two processes; the node never sees them.
  const reader = sh(`cat ${join(mnt, 'fifo')}`);
  await sh(`echo through the pipe > ${join(mnt, 'fifo')}`);
  assert.equal((await reader).out, 'through the pipe\n');

  // A Unix socket bound in the mount: a socket entry, and it accepts a connection.
  const sockPath = join(mnt, 'sock');
  const server = createServer((c) => c.end('hello from the socket\n'));
  server.listen(sockPath);
  await once(server, 'listening');
  assert.match(await described(sockPath), /^socket 7\d\d /);
  const client = createConnection(sockPath);
  let got = '';
  client.on('data', (b) => (got += b));
  await once(client, 'end');
  assert.equal(got, 'hello from the socket\n');
  server.close(); // removes its socket file
  await once(server, 'close');
  // A socket entry left behind (python does not unlink it), as programs that crash leave theirs.
  await sh(`python3 -c "import socket; s = socket.socket(socket.AF_UNIX); s.bind('${sockPath}')"`);
  assert.match(await described(sockPath), /^socket /);

  // nodev: a device node is not opened for I/O.
  await assert.rejects(fs.open(join(mnt, 'null'), 'r'), (e: NodeJS.ErrnoException) => e.code === 'EACCES' || e.code === 'EPERM');
  // Attributes change as on any entry; readdir types them.
  await fs.chmod(join(mnt, 'fifo'), 0o600);
  await fs.chown(join(mnt, 'fifo'), 1234, 5678);
  assert.match(await described(join(mnt, 'fifo')), /^fifo 600 1234:5678 /);
  assert.deepEqual((await sh(`cd ${mnt} && find . -type p -o -type c -o -type b -o -type s | sort`)).out.split('\n').filter(Boolean), ['./fifo', './loop', './null', './sock']);
  const dirents = new Map((await fs.readdir(mnt, { withFileTypes: true })).map((d) => [d.name, d]));
  assert.ok(dirents.get('fifo')!.isFIFO() && dirents.get('null')!.isCharacterDevice() && dirents.get('loop')!.isBlockDevice() && dirents.get('sock')!.isSocket());
  // A regular file cannot be made by mknod here (creates go through open), nor a second entry by that name.
  assert.notEqual((await sh(`mknod ${join(mnt, 'fifo')} p`, { allowFail: true })).code, 0);

  // Kept in the namespace: the same after a restart.
  const before = await Promise.all(['fifo', 'null', 'loop', 'sock'].map((n) => described(join(mnt, n))));
  await node.stop();
  node = await sb.start([]);
  assert.deepEqual(await Promise.all(['fifo', 'null', 'loop', 'sock'].map((n) => described(join(mnt, n)))), before);
  const again = sh(`cat ${join(mnt, 'fifo')}`);
  await sh(`echo again > ${join(mnt, 'fifo')}`);
  assert.equal((await again).out, 'again\n');
  for (const n of ['fifo', 'null', 'loop', 'sock']) await fs.unlink(join(mnt, n));
  assert.deepEqual(await fs.readdir(mnt), []);
  await node.stop();
});

test('special files travel to a second node with their types, modes, owners and device numbers', { skip: !(await netnsAvailable()) && 'needs root and iproute2', timeout: 120_000 }, async () => {
  const c = await startCluster({ nodes: 2, mount: true, subnet: '10.92.0', settle: 'heads' });
  try {
    const [a, b] = [c.nodes[0]!.mnt!, c.nodes[1]!.mnt!];
    await sh(`mkdir ${a}/dev && cd ${a}/dev && mkfifo -m 0620 fifo && mknod -m 0640 tty c 4 64 && mknod -m 0600 disk b 8 1 && chown 77:88 tty`);
    await sh(`python3 -c "import socket; s = socket.socket(socket.AF_UNIX); s.bind('${a}/dev/sock')"`);
    const names = ['fifo', 'tty', 'disk', 'sock'];
    const want = await Promise.all(names.map((n) => described(join(a, 'dev', n))));
    await eventually('the special files on the second node', async () => {
      const got = await Promise.all(names.map((n) => described(join(b, 'dev', n)).catch(() => '')));
      return got.every((x, i) => x === want[i]);
    }, 60_000);
    // A FIFO made on one node works on the other (each kernel does its own pipe).
    const reader = sh(`cat ${b}/dev/fifo`);
    await sh(`echo on the second node > ${b}/dev/fifo`);
    assert.equal((await reader).out, 'on the second node\n');
  } finally {
    await c.teardown();
  }
});

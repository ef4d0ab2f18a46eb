// The mount path that users other than root take: setuid fusermount3 mounts and hands the
// FUSE device back over a socket (forced here with DELUGEFS_MOUNT_VIA, since tests run as root).
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs/promises';
import { join } from 'node:path';
import type { Stats } from 'node:fs';
import { sandbox, sh, Sandbox } from '../testing/node-proc.js';

let sb: Sandbox | undefined;
after(async () => {
  await sb?.cleanup();
});

test('mounted through fusermount3 with --allow-other: new files belong to their creator, stop unmounts', async () => {
  process.env.DELUGEFS_MOUNT_VIA = 'fusermount';
  sb = await sandbox('dfs-fusermount');
  const node = await sb.start(['--allow-other'], { create: true });
  const mnt = sb.mnt;
  const mounts = await fs.readFile('/proc/self/mounts', 'utf8');
  const line = mounts.split('\n').find((l) => l.split(' ')[1] === sb!.mnt);
  assert.match(line ?? '', /^delugefs:\S+ \S+ fuse\.delugefs /);
  assert.match(node.stderr(), /"fuse\.mounted".*"via":"fusermount3"/);
  await fs.writeFile(join(sb.mnt, 'f'), 'through fusermount3');
  assert.equal(await fs.readFile(join(sb.mnt, 'f'), 'utf8'), 'through fusermount3');
  // Another user (allowed in by allow_other; the kernel checks modes) creates a directory, a
  // file and a symlink: they are that user's, as on a local filesystem.
  await fs.chmod(sb.dir, 0o755);
  await fs.chmod(sb.mnt, 0o777);
  const u = await sh(`setpriv --reuid=4321 --regid=4322 --clear-groups sh -c 'mkdir ${sb.mnt}/d && echo hi > ${sb.mnt}/d/f && ln -s f ${sb.mnt}/d/l && echo ok'`, { allowFail: true });
  assert.equal(u.out.trim(), 'ok', u.err);
  for (const p of ['d', 'd/f', 'd/l']) {
    const st: Stats = await fs.lstat(join(mnt, p));
    assert.deepEqual([st.uid, st.gid], [4321, 4322], p);
  }
  const denied = await sh(`setpriv --reuid=4321 --regid=4322 --clear-groups sh -c 'echo x > ${sb.mnt}/f'`, { allowFail: true });
  assert.notEqual(denied.code, 0, 'wrote over a file of root with mode 0644');
  await node.stop();
  assert.notEqual((await sh(`mountpoint -q ${sb.mnt}`, { allowFail: true })).code, 0, 'still mounted after stop');
});

test('readahead raised; unmounted from outside: the node logs it, keeps running and still stops cleanly', async () => {
  delete process.env.DELUGEFS_MOUNT_VIA;
  const box = await sandbox('dfs-outside');
  try {
    const node = await box.start([], { create: true });
    await fs.writeFile(join(box.mnt, 'f'), 'x');
    // Root raises the mount's readahead from the kernel's 128 KiB (cold reads ran at ~0.3 GB/s).
    const dev = (await fs.readFile('/proc/self/mountinfo', 'utf8')).split('\n').find((l) => l.split(' ')[4] === box.mnt)?.split(' ')[2];
    let ra = '';
    for (let i = 0; i < 30 && ra !== '8192'; i++, await new Promise((r) => setTimeout(r, 100))) ra = (await fs.readFile(`/sys/class/bdi/${dev}/read_ahead_kb`, 'utf8')).trim();
    assert.equal(ra, '8192');
    await sh(`umount ${box.mnt}`);
    for (let i = 0; i < 50 && !node.stderr().includes('fuse.unmounted_outside'); i++) await new Promise((r) => setTimeout(r, 100));
    assert.match(node.stderr(), /"fuse\.unmounted_outside"/);
    assert.equal(node.proc.exitCode, null, 'the node exited');
    assert.equal(await node.stop(), 0);
  } finally {
    await box.cleanup();
  }
});

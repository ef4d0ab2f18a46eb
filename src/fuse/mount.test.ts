// The mount path that users other than root take: setuid fusermount3 mounts and hands the
// FUSE device back over a socket (forced here with DELUGEFS_MOUNT_VIA, since tests run as root).
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs/promises';
import { join } from 'node:path';
import { sandbox, sh, Sandbox } from '../testing/node-proc.js';

let sb: Sandbox | undefined;
after(async () => {
  await sb?.cleanup();
});

test('mounted through fusermount3: files work, the mount is listed as delugefs, stop unmounts', async () => {
  process.env.DELUGEFS_MOUNT_VIA = 'fusermount';
  sb = await sandbox('dfs-fusermount');
  const node = await sb.start([], { create: true });
  const mounts = await fs.readFile('/proc/self/mounts', 'utf8');
  const line = mounts.split('\n').find((l) => l.split(' ')[1] === sb!.mnt);
  assert.match(line ?? '', /^delugefs:\S+ \S+ fuse\.delugefs /);
  assert.match(node.stderr(), /"fuse\.mounted".*"via":"fusermount3"/);
  await fs.writeFile(join(sb.mnt, 'f'), 'through fusermount3');
  assert.equal(await fs.readFile(join(sb.mnt, 'f'), 'utf8'), 'through fusermount3');
  await node.stop();
  assert.notEqual((await sh(`mountpoint -q ${sb.mnt}`, { allowFail: true })).code, 0, 'still mounted after stop');
});

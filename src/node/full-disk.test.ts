// A full disk: the write fails with ENOSPC, the old version of the file is intact, and the node
// goes on working once there is room again.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs/promises';
import { join } from 'node:path';
import { sandbox, sh, Sandbox } from '../testing/node-proc.js';

let sb: Sandbox;
let disk = '';
after(async () => {
  await sb?.cleanup(); // stops the node; its root is on the tmpfs, so the folder outlives this
  if (disk) await sh(`umount -l ${disk}`, { allowFail: true });
  if (sb) await fs.rm(sb.dir, { recursive: true, force: true });
});

test('ENOSPC loses nothing', async () => {
  sb = await sandbox('dfs-full');
  disk = join(sb.dir, 'disk');
  await fs.mkdir(disk);
  await sh(`mount -t tmpfs -o size=48m tmpfs ${disk}`);
  const root = join(disk, 'root');
  await sb.start([], { create: true, root });
  const m = (p: string) => join(sb.mnt, p);
  const v1 = Buffer.alloc(20 << 20, 1);
  await fs.writeFile(m('keep'), v1);
  await assert.rejects(fs.writeFile(m('keep'), Buffer.alloc(40 << 20, 2)), { code: 'ENOSPC' });
  assert.ok((await fs.readFile(m('keep'))).equals(v1), 'old version damaged');
  await assert.rejects(fs.writeFile(m('other'), Buffer.alloc(40 << 20, 3)), { code: 'ENOSPC' });
  // release(2) reaches the node after close() returned: give it a moment.
  for (let i = 0; i < 20 && (await fs.readdir(join(root, 'tmp'))).length; i++) await new Promise((r) => setTimeout(r, 100));
  assert.deepEqual(await fs.readdir(join(root, 'tmp')), [], 'temp files left behind');
  await fs.rm(m('other'), { force: true });
  await fs.rm(m('keep'));
  await new Promise((r) => setTimeout(r, 1500));
  await fs.writeFile(m('after'), Buffer.alloc(30 << 20, 4));
  assert.ok((await fs.readFile(m('after'))).equals(Buffer.alloc(30 << 20, 4)));
});

// Times on a real mount (issue 11), compared with the same calls on the root's own disk in the
// same run: atime apart from mtime (touch -a / -m use UTIME_OMIT for the other), UTIME_NOW,
// ctime moving on every attribute change, a write moving mtime and not atime, reads moving
// nothing (the mount is noatime, and says so), all kept across a restart.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs/promises';
import { join } from 'node:path';
import { sandbox, sh, Sandbox } from '../testing/node-proc.js';

let sb: Sandbox | undefined;
after(async () => {
  await sb?.cleanup();
});

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
/** Times in ms (the mount keeps milliseconds). */
async function times(p: string): Promise<{ a: number; m: number; c: number }> {
  const st = await fs.stat(p);
  return { a: Math.floor(st.atimeMs), m: Math.floor(st.mtimeMs), c: Math.floor(st.ctimeMs) };
}

test('atime apart from mtime, UTIME_OMIT and UTIME_NOW, ctime on every change, noatime reads, across a restart', { timeout: 120_000 }, async () => {
  sb = await sandbox('dfs-times');
  let node = await sb.start([], { create: true });
  const mnt = sb.mnt;
  assert.match((await fs.readFile('/proc/self/mounts', 'utf8')).split('\n').find((l) => l.split(' ')[1] === mnt) ?? '', / \S*noatime\S* /);
  const local = join(sb.dir, 'local');
  await fs.mkdir(local);
  const A = Date.UTC(2001, 0, 2, 3, 4, 5, 600), M = Date.UTC(2002, 5, 6, 7, 8, 9, 100);
  for (const dir of [mnt, local]) {
    const f = join(dir, 'f');
    await fs.writeFile(f, 'one');
    // touch -a: atime only (mtime UTIME_OMIT); touch -m: mtime only (atime UTIME_OMIT).
    await sh(`touch -a -d @${A / 1000} ${f}`);
    let t = await times(f);
    assert.equal(t.a, A, `${dir}: atime as set`);
    assert.notEqual(t.m, A, `${dir}: mtime left alone`);
    await sh(`touch -m -d @${M / 1000} ${f}`);
    t = await times(f);
    assert.deepEqual([t.a, t.m], [A, M], `${dir}: mtime as set, atime left alone`);
    // ctime moves with any change of attributes.
    const c0 = t.c;
    await sleep(20);
    await fs.chmod(f, 0o600);
    const c1 = (await times(f)).c;
    assert.ok(c1 > c0, `${dir}: ctime moved on chmod`);
    await sleep(20);
    await sh(`touch -a -d @${A / 1000} ${f}`);
    assert.ok((await times(f)).c > c1, `${dir}: ctime moved on utimensat`);
    // A write moves mtime, not atime (no read happens here, so relatime on the local disk agrees).
    await fs.appendFile(f, ' two');
    t = await times(f);
    assert.equal(t.a, A, `${dir}: a write leaves atime`);
    assert.ok(t.m > M, `${dir}: a write moves mtime`);
    // UTIME_NOW for both.
    const before = Date.now();
    await sh(`touch ${f}`);
    t = await times(f);
    assert.ok(t.a >= before - 1000 && t.m >= before - 1000, `${dir}: both now`);
  }
  // Reads leave atime on the mount (noatime); set it to the past first.
  const f = join(mnt, 'f');
  await sh(`touch -a -d @${A / 1000} ${f}`);
  await fs.readFile(f);
  assert.equal((await times(f)).a, A, 'a read does not move atime');
  // Kept in the namespace: the same after a restart.
  const kept = await times(f);
  await node.stop();
  node = await sb.start([]);
  assert.deepEqual(await times(f), kept);
  await node.stop();
});

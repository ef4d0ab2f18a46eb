// Directory link counts and the directory permission bits on a real mount (issue 11), each
// compared with the same calls on the root's own disk in the same run: st_nlink = 2 +
// subdirectories; a setgid directory gives new entries its group and new subdirectories its
// S_ISGID; a sticky directory lets only an entry's owner remove it (callers are other users,
// let in by --allow-other).
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs/promises';
import { join } from 'node:path';
import { sandbox, sh, Sandbox } from '../testing/node-proc.js';

let sb: Sandbox | undefined;
after(async () => {
  await sb?.cleanup();
});

const as = (uid: number, cmd: string) => sh(`setpriv --reuid=${uid} --regid=${uid} --clear-groups sh -c '${cmd}'`, { allowFail: true });
const nlink = async (p: string) => (await fs.stat(p)).nlink;

test('directory st_nlink, setgid and sticky directories as on a local disk', { timeout: 120_000 }, async () => {
  sb = await sandbox('dfs-perms');
  await sb.start(['--allow-other'], { create: true });
  const local = join(sb.dir, 'local');
  await fs.mkdir(local);
  await fs.chmod(sb.dir, 0o755);
  await fs.chmod(sb.mnt, 0o777);
  await fs.chmod(local, 0o777);
  for (const dir of [sb.mnt, local]) {
    const where = dir === local ? 'local' : 'mount';
    // Link counts.
    await sh(`cd ${dir} && mkdir -p a/b a/c && touch a/f`);
    assert.equal(await nlink(join(dir, 'a')), 4, `${where}: 2 + two subdirectories`);
    assert.equal(await nlink(join(dir, 'a', 'b')), 2, where);
    assert.equal(await nlink(join(dir, 'a', 'f')), 1, where);
    await fs.rmdir(join(dir, 'a', 'b'));
    await fs.rename(join(dir, 'a', 'c'), join(dir, 'c'));
    assert.equal(await nlink(join(dir, 'a')), 2, `${where}: after rmdir and a rename out`);

    // setgid: the directory's group for everything made in it; S_ISGID for new subdirectories.
    await sh(`cd ${dir} && mkdir g && chown 0:1234 g && chmod 2777 g`);
    const r = await as(4321, `cd ${dir}/g && touch f && mkdir sub && mkfifo p && ln -s f l && echo ok`);
    assert.equal(r.out.trim(), 'ok', `${where}: ${r.err}`);
    for (const n of ['f', 'sub', 'p', 'l']) {
      const st = await fs.lstat(join(dir, 'g', n));
      assert.deepEqual([st.uid, st.gid], [4321, 1234], `${where}: ${n} takes the directory's group`);
    }
    assert.ok((await fs.stat(join(dir, 'g', 'sub'))).mode & 0o2000, `${where}: a new subdirectory keeps S_ISGID`);
    assert.equal((await fs.stat(join(dir, 'g', 'f'))).mode & 0o2000, 0, where);
    // A file asked for with S_ISGID (and group execute) by a creator outside the directory's group does not get it.
    const sg = await as(4321, `cd ${dir}/g && python3 -c "import os; os.close(os.open(\\"sg\\", os.O_CREAT | os.O_WRONLY, 0o2775))" && echo ok`);
    assert.equal(sg.out.trim(), 'ok', `${where}: ${sg.err}`);
    assert.equal(((await fs.stat(join(dir, 'g', 'sg'))).mode & 0o7777).toString(8), '755', `${where}: S_ISGID of a creator outside the group`);
    // chown clears setuid, and setgid with group execute, as Linux does.
    await sh(`cd ${dir} && touch su && chmod 6755 su && chown 77:88 su`);
    assert.equal(((await fs.stat(join(dir, 'su'))).mode & 0o7777).toString(8), '755', `${where}: chown keeps setuid`);

    // sticky: in a 1777 directory only an entry's owner (or root) removes or renames it.
    await sh(`cd ${dir} && mkdir t && chmod 1777 t`);
    assert.equal((await as(4321, `echo mine > ${dir}/t/a && echo ok`)).out.trim(), 'ok');
    const other = await as(4322, `rm -f ${dir}/t/a`);
    assert.notEqual(other.code, 0, `${where}: another user removed an entry of a sticky directory`);
    assert.match(other.err, /Operation not permitted/);
    assert.notEqual((await as(4322, `mv ${dir}/t/a ${dir}/t/b`)).code, 0, `${where}: renamed`);
    assert.equal((await as(4321, `rm ${dir}/t/a && echo ok`)).out.trim(), 'ok', `${where}: the owner removes it`);
  }
});

test('a write or truncating open by another user clears setuid (and setgid with group execute), whichever handle path; root keeps them', { timeout: 120_000 }, async () => {
  const box = await sandbox('dfs-suid');
  try {
    await box.start(['--allow-other'], { create: true });
    const local = join(box.dir, 'local');
    await fs.mkdir(local);
    await fs.chmod(box.dir, 0o755);
    await fs.chmod(box.mnt, 0o777);
    await fs.chmod(local, 0o777);
    const modes = async (dir: string) => {
      const out: Record<string, string> = {};
      for (const n of ['append', 'trunc', 'rw', 'root']) out[n] = ((await fs.stat(join(dir, n))).mode & 0o7777).toString(8);
      return out;
    };
    for (const dir of [box.mnt, local]) {
      // (S_ISGID without group execute is left out: kernels before 6.2 keep it, later ones drop it
      // for a writer outside the file's group; ops.ts follows the later rule.)
      for (const [n, m] of [['append', 0o6777], ['trunc', 0o4777], ['rw', 0o6777], ['root', 0o6777]] as const) {
        await fs.writeFile(join(dir, n), 'x');
        await fs.chmod(join(dir, n), m);
      }
      // O_APPEND and O_WRONLY|O_TRUNC bypass the page cache here; O_RDWR goes through it.
      const r = await as(4321, `echo more >> ${dir}/append && echo new > ${dir}/trunc && exec 3<>${dir}/rw && printf y >&3 && exec 3>&- && echo ok`);
      assert.equal(r.out.trim(), 'ok', r.err);
      await fs.appendFile(join(dir, 'root'), 'by root');
    }
    const [mine, theirs] = [await modes(box.mnt), await modes(local)];
    assert.deepEqual(mine, theirs);
    assert.deepEqual(mine, { append: '777', trunc: '777', rw: '777', root: '6777' });
  } finally {
    await box.cleanup();
  }
});

test('st_blocks as on a local disk: a sparse file its real allocation, small files whole 4 KiB blocks, directories one, short symlinks none', { timeout: 120_000 }, async () => {
  const box = await sandbox('dfs-blocks');
  try {
    const node = await box.start([], { create: true });
    const local = join(box.dir, 'local');
    await fs.mkdir(local);
    const blocks = async (dir: string) => (await sh(`cd ${dir} && stat -c '%n %b' sparse one big d l | sort`)).out;
    for (const dir of [box.mnt, local]) {
      await sh(`python3 -c "f = open('${dir}/sparse', 'wb'); f.seek(50 << 20); f.write(b'x' * 8192); f.close()"`);
      await fs.writeFile(join(dir, 'one'), 'x');
      await fs.writeFile(join(dir, 'big'), Buffer.alloc(300_000, 7));
      await fs.mkdir(join(dir, 'd'));
      await fs.symlink('one', join(dir, 'l'));
    }
    assert.equal(await blocks(box.mnt), await blocks(local));
    assert.ok((await fs.stat(join(box.mnt, 'sparse'))).blocks < 64, 'a 50 MiB sparse file with 8 KiB of data');
    // Kept with the entry: the same after a restart.
    const before = await blocks(box.mnt);
    await node.stop();
    await box.start([]);
    assert.equal(await blocks(box.mnt), before);
  } finally {
    await box.cleanup();
  }
});

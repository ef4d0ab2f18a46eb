// Hard links on a real mount (issue 11), each step compared with the same calls on the root's
// own disk in the same run: link(2) across directories, every name one inode (st_ino, st_nlink,
// content, mode, owner, times), writes and chmod through either name, unlink, rename over a link
// and between two names of one file, a write through a handle whose name was unlinked, links to
// special files, the errors (a directory, an existing name), `cp -a` keeping links both ways, a
// restart, and a second node that sees the same links and whose writes reach the other name.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs/promises';
import { join } from 'node:path';
import { sandbox, sh, Sandbox } from '../testing/node-proc.js';
import { netnsAvailable } from '../testing/netns.js';
import { startCluster } from '../testing/cluster.js';
import { eventually } from '../testing/eventually.js';

let sb: Sandbox | undefined;
after(async () => {
  await sb?.cleanup();
});

/**
 * What a tree looks like: per name its link count, mode, owner, size and bytes, and which names
 * are one inode (grouped by st_ino, numbered in name order, so two filesystems compare).
 */
async function report(dir: string): Promise<string> {
  const py = `
import os, sys, hashlib
root = sys.argv[1]
names = sorted(os.path.relpath(os.path.join(d, n), root) for d, ds, fs in os.walk(root) for n in fs + ds)
groups = {}
out = []
for n in names:
    st = os.lstat(os.path.join(root, n))
    g = groups.setdefault(st.st_ino, len(groups))
    body = hashlib.sha1(open(os.path.join(root, n), 'rb').read()).hexdigest()[:8] if os.path.isfile(os.path.join(root, n)) and not os.path.islink(os.path.join(root, n)) else '-'
    out.append(f"{n} ino#{g} nlink={st.st_nlink if not os.path.isdir(os.path.join(root, n)) else 'd'} mode={oct(st.st_mode)} {st.st_uid}:{st.st_gid} size={st.st_size if not os.path.isdir(os.path.join(root, n)) else 'd'} {body}")
print('\\n'.join(out))
`;
  return (await sh(`python3 -c "${py.replace(/"/g, '\\"')}" ${dir}`)).out;
}

/** The steps, each followed by a report; run on the mount and on the local disk alike. */
async function steps(dir: string): Promise<string[]> {
  const out: string[] = [];
  const step = async (cmd: string) => {
    const r = await sh(`cd ${dir} && ${cmd}`, { allowFail: true });
    out.push(`$ ${cmd} -> ${r.code}${r.code ? ` ${r.err.replace(/^.*: /, '').trim()}` : ''}\n${await report(dir)}`);
  };
  await step('umask 022 && echo hello > a && mkdir d && ln a d/b');
  await step('echo more >> d/b');
  await step('chmod 600 a && chown 12:34 d/b');
  await step('ln d/b c');
  await step('rm a');
  await step('mv c d/b'); // two names of one file: nothing happens
  await step('echo other > e && mv e d/b'); // a rename over a link: the other name stays
  await step('ln d x'); // a directory: EPERM
  await step('ln c d/b'); // an existing name: EEXIST
  await step('mkfifo p && ln p p2 && ln -s c s && ln -P s s2');
  // A handle whose name is unlinked while open writes into the file its other name shows.
  await step(`python3 -c "import os; f = open('c', 'a'); os.link('c', 'c2'); os.unlink('c'); f.write('after unlink'); f.close()"`);
  await step('mkdir src && echo one > src/1 && ln src/1 src/2 && cp -a src copy');
  return out;
}

test('hard links behave as on a local disk, and survive a restart', { timeout: 180_000 }, async () => {
  sb = await sandbox('dfs-links');
  let node = await sb.start([], { create: true });
  const local = join(sb.dir, 'local');
  await fs.mkdir(local);
  const want = await steps(local);
  const got = await steps(sb.mnt);
  for (let i = 0; i < want.length; i++) assert.equal(got[i], want[i], `step ${i + 1}`);
  // Spot checks of what the comparison covers.
  assert.match(want[0]!, /^a ino#0 nlink=2 .*\nd ino#1 .*\nd\/b ino#0 nlink=2 /m);
  assert.match(want[7]!, /-> 1 hard link not allowed for directory/);
  assert.match(want[8]!, /-> 1 File exists/);
  await assert.rejects(fs.link(join(sb.mnt, 'd'), join(sb.mnt, 'y')), { code: 'EPERM' });
  await assert.rejects(fs.link(join(sb.mnt, 'c2'), join(sb.mnt, 'd', 'b')), { code: 'EEXIST' });
  assert.match(want[10]!, /^c2 ino#0 nlink=1 .* size=23 /m, 'the write after the unlink is in the file');
  assert.match(want[11]!, /^copy\/1 ino#(\d+) nlink=2 .*\ncopy\/2 ino#\1 nlink=2/m, 'cp -a keeps the link');
  // cp -a from the mount onto the local disk keeps the links too.
  await sh(`cp -a ${sb.mnt}/src ${local}/back`);
  assert.equal((await fs.stat(join(local, 'back', '1'))).ino, (await fs.stat(join(local, 'back', '2'))).ino);
  // ...and du counts a linked file once.
  assert.equal((await sh(`du -s --apparent-size -B1 ${sb.mnt}/src`)).out.split('\t')[0], (await sh(`du -s --apparent-size -B1 ${local}/src`)).out.split('\t')[0]);

  const before = await report(sb.mnt);
  await node.stop();
  node = await sb.start([]);
  assert.equal(await report(sb.mnt), before, 'the same after a restart');
  // Still one file after the restart: a write through one name shows through the other.
  await sh(`echo again >> ${sb.mnt}/src/2`);
  assert.equal(await fs.readFile(join(sb.mnt, 'src', '1'), 'utf8'), 'one\nagain\n');
  // After a restart the kernel knows only the names it looks up: one name opened and unlinked,
  // fstat and fchmod/fchown/futimens through the handle still reach the file its other name shows.
  const viaHandle = `python3 -c "import os; f = open('h1', 'a'); os.unlink('h1'); n = os.fstat(f.fileno()).st_nlink; os.fchmod(f.fileno(), 0o640); os.fchown(f.fileno(), 7, 8); os.utime(f.fileno(), (1000000000, 1200000000)); st = os.stat('h2'); print(n, os.fstat(f.fileno()).st_nlink, oct(st.st_mode), st.st_uid, st.st_gid, int(st.st_atime), int(st.st_mtime))"`;
  const prep = 'echo linked > h1 && ln h1 h2';
  await sh(`cd ${local} && ${prep}`);
  await sh(`cd ${sb.mnt} && ${prep}`);
  await node.stop();
  node = await sb.start([]);
  const wantH = (await sh(`cd ${local} && ${viaHandle}`)).out;
  assert.equal(wantH.trim(), '1 1 0o100640 7 8 1000000000 1200000000');
  assert.equal((await sh(`cd ${sb.mnt} && ${viaHandle}`)).out, wantH, 'through a handle whose looked-up name went');
  await node.stop();
});

test('a second node sees the same links, and its writes through one name reach the other', { skip: !(await netnsAvailable()) && 'needs root and iproute2', timeout: 120_000 }, async () => {
  // The kernel keeps attributes for 30 s here: what a peer changed shows at once only when invalidated.
  process.env.DELUGEFS_ATTR_TTL_S = '30';
  const c = await startCluster({ nodes: 2, mount: true, subnet: '10.94.0', settle: 'heads' }).finally(() => delete process.env.DELUGEFS_ATTR_TTL_S);
  try {
    const [a, b] = [c.nodes[0]!.mnt!, c.nodes[1]!.mnt!];
    await sh(`mkdir ${a}/l && echo first > ${a}/l/one && ln ${a}/l/one ${a}/l/two && mkdir ${a}/m && ln ${a}/l/two ${a}/m/three`);
    const want = await report(`${a}/l`) + await report(`${a}/m`);
    await eventually('the links on the second node', async () => (await report(`${b}/l`).catch(() => '')) + (await report(`${b}/m`).catch(() => '')) === want, 60_000);
    assert.match(want, /one ino#0 nlink=3/);
    // a's kernel holds l/one's attributes (for 30 s here): b's write through another name must not
    // wait for that.
    assert.equal((await fs.stat(join(a, 'l', 'one'))).size, 6);
    await sh(`echo from b >> ${b}/m/three`);
    const [na, nb] = [c.nodes[0]!, c.nodes[1]!];
    const head = async (n: typeof na) => (await sh(`git --git-dir ${join(n.root, 'meta', 'repo.git')} rev-parse refs/heads/main`)).out.trim();
    await eventually('b committed the write', async () => (await sh(`git --git-dir ${join(nb.root, 'meta', 'repo.git')} log -1 --format=%s refs/heads/main`)).out.includes('inode'), 30_000);
    const hb = await head(nb);
    await eventually('a merged it', async () => (await head(na)) === hb || (await sh(`git --git-dir ${join(na.root, 'meta', 'repo.git')} merge-base --is-ancestor ${hb} refs/heads/main`, { allowFail: true })).code === 0, 30_000);
    // The notification may trail the merge by the time its thread takes to start.
    await eventually('a\'s kernel drops what it cached of the file', async () => (await fs.stat(join(a, 'l', 'one'))).size === 'first\nfrom b\n'.length, 5_000);
    assert.equal(await fs.readFile(join(a, 'l', 'one'), 'utf8'), 'first\nfrom b\n');
    await fs.unlink(join(b, 'l', 'one'));
    await eventually('the unlink on a: two names left', async () => (await fs.stat(join(a, 'l', 'two')).catch(() => null))?.nlink === 2 && !(await fs.stat(join(a, 'l', 'one')).catch(() => null)), 60_000);
  } finally {
    await c.teardown();
  }
});

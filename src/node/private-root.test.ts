// The node root is private whatever the umask: every directory under it 0700, every file
// without group and other bits, content, journal, temp, partial downloads and the Git
// repository included; a root loosened by hand (or by an older version) is repaired at start
// with a warning. Files in the mount keep their own modes, and the mount point is not touched.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { lstat, readdir, chmod, mkdir, readFile, stat, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { execFileSync } from 'node:child_process';
import { sandbox, sh, Sandbox } from '../testing/node-proc.js';
import { createLayout, paths } from './layout.js';
import { DelugeNode } from './node.js';
import { PartialFile } from '../swarm/partial.js';
import { infoHash } from '../content/metainfo.js';
import { closeHashers, hashBuffer } from '../content/hasher.js';
import { createLogger } from '../util/log.js';

const boxes: Sandbox[] = [];
const dirs: string[] = [];
after(async () => {
  for (const b of boxes) await b.cleanup();
  for (const d of dirs) await rm(d, { recursive: true, force: true });
  await closeHashers();
});

/** Every path under root whose mode lets group or other in (dirs must be 0700 exactly). */
async function loose(root: string): Promise<string[]> {
  const out: string[] = [];
  const walk = async (p: string): Promise<void> => {
    const st = await lstat(p);
    if (st.isSymbolicLink()) return;
    const perm = st.mode & 0o777;
    if (st.isDirectory() ? perm !== 0o700 : perm & 0o077) out.push(`${p} ${perm.toString(8)}`);
    if (st.isDirectory()) for (const n of await readdir(p)) await walk(join(p, n));
  };
  await walk(root);
  return out;
}

async function filesUnder(dir: string): Promise<string[]> {
  return (await readdir(dir, { recursive: true })).map(String);
}

test('under umask 022, a node and a second disk that fetched from it keep every path of their roots private', { timeout: 120_000 }, async () => {
  const umask = process.umask(0o022); // the nodes inherit it
  try {
    const b = await sandbox('dfs-priv');
    boxes.push(b);
    const a = await b.start(['--interface', 'lo'], { create: true });
    const root2 = join(b.dir, 'disk2');
    const mnt2 = join(b.dir, 'mnt2');
    await mkdir(mnt2);
    const n2 = await b.start(['--interface', 'lo'], { root: root2, mnt: mnt2 });
    const mntBefore = (await stat(b.mnt)).mode & 0o777;

    // A small file (its bytes go through the journal), a large one (temp file, content store)
    // and a larger one the second disk reads only the start of (a partial download stays: the
    // swarm reads ahead 32 MiB and the kernel 8 MiB, far less than its 100 MB).
    await sh(`cd ${b.mnt} && printf secret > small && chmod 600 small && head -c 3000000 /dev/urandom > big && chmod 600 big && head -c 100000000 /dev/urandom > huge && chmod 640 huge`);
    await sh(`for i in $(seq 200); do [ "$(stat -c %a ${mnt2}/huge 2>/dev/null)" = 640 ] && break; sleep 0.1; done; cmp ${b.mnt}/big ${mnt2}/big && cmp ${b.mnt}/small ${mnt2}/small && head -c 1000 ${mnt2}/huge > /dev/null`);
    // Modes in the mount are the caller's, not the node's umask; the mount point is unchanged.
    assert.equal((await stat(join(b.mnt, 'small'))).mode & 0o777, 0o600);
    assert.equal((await stat(join(mnt2, 'huge'))).mode & 0o777, 0o640);
    assert.equal((await stat(b.mnt)).mode & 0o777, mntBefore);
    assert.equal((await stat(b.mnt)).mode & 0o777, 0o755, 'the mount root shows the namespace root (0755)');

    assert.deepEqual(await loose(b.root), [], 'first node, running');
    assert.deepEqual(await loose(root2), [], 'second disk, running');
    assert.ok((await stat(join(b.root, 'control.sock'))).isSocket());
    await n2.stop();
    await a.stop();
    assert.deepEqual(await loose(b.root), [], 'first node, stopped');
    assert.deepEqual(await loose(root2), [], 'second disk, stopped');
    // What was checked is really there: fetched content, a partial download, journal, packs.
    const parts = await filesUnder(join(root2, 'partial'));
    assert.ok(parts.some((f) => f.endsWith('.bits')), `partial downloads: ${parts}`);
    assert.ok((await filesUnder(join(root2, 'content'))).some((f) => /\/[0-9a-f]{40}$/.test(f)), 'fetched content');
    assert.ok((await filesUnder(join(b.root, 'meta', 'journal'))).length > 0, 'journal');
    assert.ok((await filesUnder(join(b.root, 'meta', 'repo.git', 'objects'))).some((f) => f.endsWith('.pack')), 'packs');
    assert.equal(execFileSync('git', ['--git-dir', join(root2, 'meta', 'repo.git'), 'config', 'core.sharedRepository']).toString().trim(), '0600');
  } finally {
    process.umask(umask);
  }
});

test('a root with loosened modes is repaired at start, with a warning', { timeout: 60_000 }, async () => {
  const b = await sandbox('dfs-priv');
  boxes.push(b);
  let n = await b.start([], { create: true });
  await sh(`cd ${b.mnt} && head -c 1000000 /dev/urandom > f && printf x > s`);
  await n.stop();
  // What an older version left: ROOT 0755, folders 0755, files 0644; git not told to keep it private.
  const repo = join(b.root, 'meta', 'repo.git');
  execFileSync('sh', ['-c', `git --git-dir ${repo} config --unset core.sharedRepository || true`]);
  const walk = async (p: string): Promise<void> => {
    const st = await lstat(p);
    if (st.isSymbolicLink() || st.isSocket()) return;
    await chmod(p, st.isDirectory() ? 0o755 : 0o644);
    if (st.isDirectory()) for (const x of await readdir(p)) await walk(join(p, x));
  };
  await walk(b.root);
  const before = (await loose(b.root)).length;
  assert.ok(before > 300, `loosened ${before}`);

  n = await b.start([], {});
  const warn = n.stderr().split('\n').filter(Boolean).map((l) => JSON.parse(l)).find((l) => l.event === 'root.modes.repaired');
  assert.ok(warn, n.stderr());
  assert.equal(warn.level, 'warn');
  assert.ok(warn.repaired >= before - 5, `repaired ${warn.repaired} of ${before}`); // minus what the node rewrote before its check
  assert.equal(warn.failed, 0);
  assert.deepEqual(await loose(b.root), []);
  assert.equal(execFileSync('git', ['--git-dir', repo, 'config', 'core.sharedRepository']).toString().trim(), '0600');
  assert.equal(await readFile(join(b.mnt, 's'), 'utf8'), 'x');
  await n.stop();

  // A private root is not walked again: no warning at the next start.
  n = await b.start([], {});
  assert.doesNotMatch(n.stderr(), /root\.modes\.repaired/);
  await n.stop();
});

test('in-process under umask 022 (no CLI umask): node, journal, store, packs and partial files are created private', async () => {
  const umask = process.umask(0o022);
  const dir = await mkdtemp(join(tmpdir(), 'dfs-priv-'));
  dirs.push(dir);
  let node: DelugeNode | undefined;
  try {
    const root = join(dir, 'root');
    const p = paths(root);
    const config = await createLayout(p, 'c');
    const lines: string[] = [];
    node = await DelugeNode.start({ paths: p, config, log: createLogger({}, 'warn', (l) => lines.push(l)), create: true });
    for (const [name, size] of [['small', 100], ['big', 1 << 20]] as const) {
      const fh = await node.create(`/${name}`, 0o644);
      const buf = Buffer.alloc(size, 7);
      await node.write(fh, buf, buf.length, 0);
      await node.flush(fh);
      await node.release(fh);
    }
    const big = await node.open('/big', 2);
    await node.write(big, Buffer.from('x'), 1, 0); // copy on write: a temp file from the store's copy
    const parts = join(root, 'partial');
    const info = hashBuffer(Buffer.alloc(1 << 20, 1));
    const partial = await PartialFile.open(parts, infoHash(info), info);
    await partial.writePiece(0, Buffer.alloc(16384, 1));
    partial.markHave(0);
    await partial.flush();
    await node.ns.commit();
    assert.ok((await readdir(p.tmp)).length > 0, 'a temp file exists');
    assert.deepEqual(await loose(root), []);
    await partial.close();
    await node.release(big);
    assert.deepEqual(lines.filter((l) => l.includes('root.modes')), [], 'a new root needs no repair');
  } finally {
    await node?.close();
    process.umask(umask);
  }
});

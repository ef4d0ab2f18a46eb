// The command line: help, and every bad input refused with a clear message, a non-zero exit
// code and nothing touched.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdir, writeFile, readdir, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { readFileSync } from 'node:fs';
import { runCli, sandbox, Sandbox, CLI } from '../testing/node-proc.js';
import { runProc } from '../testing/proc.js';
import { NODE_FLAGS } from './node-flags.js';

const boxes: Sandbox[] = [];
after(async () => { for (const b of boxes) await b.cleanup(); });
async function box() { const b = await sandbox('dfs-cli'); boxes.push(b); return b; }

const cli = (args: string[], wrap: string[] = []) => runCli(args, { wrap });

async function snapshot(dir: string): Promise<string> {
  const out: string[] = [];
  const walk = async (d: string) => {
    for (const n of (await readdir(d)).sort()) {
      const p = join(d, n);
      const s = await stat(p);
      out.push(`${p} ${s.size} ${s.mtimeMs}`);
      if (s.isDirectory()) await walk(p);
    }
  };
  await walk(dir);
  return out.join('\n');
}

test('--help and --version', async () => {
  const h = await cli(['--help']);
  assert.equal(h.code, 0);
  assert.match(h.out, /delugefs CLUSTER ROOT \[MOUNTPOINT\]/);
  assert.match(h.out, /--create/);
  const v = await cli(['--version']);
  assert.equal(v.code, 0);
  assert.match(v.out, /^delugefs \d+\.\d+\.\d+/);
});

test('the built command runs itself with the flags the harnesses start nodes with (its #! line)', async () => {
  assert.equal(readFileSync(CLI, 'utf8').split('\n')[0], `#!/usr/bin/env -S node ${NODE_FLAGS.join(' ')}`);
  const r = await runProc(CLI, ['--version']); // executable (npm run build), through env -S
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stdout, /^delugefs \d+/);
});

test('wrong arguments are usage errors (exit 2)', async () => {
  for (const [args, msg] of [
    [[], /missing CLUSTER/], [['c'], /missing ROOT/], [['c', '/tmp/x', '--bogus'], /unknown option --bogus/],
    [['c', '/tmp/x', '--port', 'abc'], /--port must be/], [['c', '/tmp/x', '--port'], /needs a value/],
    [['bad/name', '/tmp/x'], /cluster name/], [['a', 'b', 'c', 'd'], /too many/],
    [['c', '/tmp/x', '--cluster', 'd'], /given twice/],
  ] as [string[], RegExp][]) {
    const r = await cli(args);
    assert.equal(r.code, 2, args.join(' '));
    assert.match(r.err, msg);
  }
});

test('roots: not a DelugeFS root, another cluster, other files; nothing is touched', async () => {
  const b = await box();
  const missing = join(b.dir, 'missing');
  // --no-mdns: a new root without a token would otherwise ask the LAN (this runs outside any test namespace).
  let r = await cli(['c', missing, '--no-mdns']);
  assert.equal(r.code, 1);
  assert.match(r.err, /not a DelugeFS root.*--create/);
  await assert.rejects(stat(missing));

  const other = join(b.dir, 'other');
  await mkdir(other);
  await writeFile(join(other, 'precious.txt'), 'keep');
  const before = await snapshot(other);
  r = await cli(['c', other, '--create']);
  assert.equal(r.code, 1);
  assert.match(r.err, /holds other files \(precious.txt\)/);
  r = await cli(['c', other]);
  assert.equal(r.code, 1);
  assert.equal(await snapshot(other), before);

  const n = await b.start([], { create: true, mount: false });
  await n.stop();
  const rootBefore = await snapshot(b.root);
  r = await cli(['testc', b.root, '--create']);
  assert.equal(r.code, 1);
  assert.match(r.err, /already holds a node of cluster "testc"/);
  r = await cli(['othercluster', b.root]);
  assert.equal(r.code, 1);
  assert.match(r.err, /belongs to cluster "testc", not "othercluster"/);
  assert.equal(await snapshot(b.root), rootBefore);
});

test('mount points: missing, not empty, in use; a second process on one root', async () => {
  const b = await box();
  const fresh = join(b.dir, 'fresh');
  let r = await cli(['c', fresh, join(b.dir, 'nomnt'), '--create']);
  assert.equal(r.code, 1);
  assert.match(r.err, /mount point .*nomnt does not exist/);
  await assert.rejects(stat(fresh), 'the root was created although the mount point was wrong');

  const full = join(b.dir, 'full');
  await mkdir(full);
  await writeFile(join(full, 'x'), '');
  r = await cli(['c', fresh, full, '--create']);
  assert.equal(r.code, 1);
  assert.match(r.err, /is not empty/);

  const n = await b.start([], { create: true });
  r = await cli(['c', fresh, b.mnt, '--create']);
  assert.equal(r.code, 1);
  assert.match(r.err, /already in use/);
  r = await cli(['testc', b.root]);
  assert.equal(r.code, 1);
  assert.match(r.err, /in use by another delugefs process \(pid \d+\)/);
  await n.stop();
});

test('FUSE missing: the error says which package to install', async () => {
  const b = await box();
  // A private mount namespace whose /dev has no fuse device; then one without fusermount3, which
  // mounts for users other than root (DELUGEFS_MOUNT_VIA makes root take that path too).
  const fm = (await import('node:child_process')).execFileSync('sh', ['-c', 'command -v fusermount3']).toString().trim();
  for (const [hide, env] of [['mount -t tmpfs none /dev', {}], [`mount --bind /dev/null ${fm}`, { DELUGEFS_MOUNT_VIA: 'fusermount' }]] as const) {
    const r = await runCli(['c', join(b.dir, 'r'), b.mnt, '--create'], { env, wrap: ['unshare', '-m', '--propagation', 'private', 'sh', '-c', `${hide} && exec "$@"`, 'sh'] });
    assert.equal(r.code, 1, r.err);
    assert.match(r.err, /apt-get install fuse3/);
    await assert.rejects(stat(join(b.dir, 'r')));
  }
});

// The local join registry against what another local user could plant: a registry directory that
// is not private, symlinked or foreign entries, a control socket of another uid or on a path others
// can change, a socket that answers as another node. Real files, real sockets (ControlServer).
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, mkdir, rm, writeFile, chmod, chown, symlink, stat, readdir, rename } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { registerLocal, findLocalMember, runDir, LocalEntry } from './local-registry.js';
import { ControlServer } from './control-socket.js';
import { RpcRegistry } from './rpc.js';
import { memoryLog } from './log.js';

const NOBODY = 65534;
const ID = 'abcdefghijklmnop';
const OTHER = 'bbbbbbbbbbbbbbbb';
const root = process.getuid?.() === 0;
const skip = !root && (process.env.CI ? false : 'needs root (chown to another uid)');

const dirs: string[] = [];
const servers: ControlServer[] = [];
after(async () => {
  for (const s of servers) await s.close();
  for (const d of dirs) await rm(d, { recursive: true, force: true });
});
async function tmp(name: string): Promise<string> {
  const d = await mkdtemp(join(tmpdir(), `dfs-reg-${name}-`));
  dirs.push(d);
  return d;
}

/** A fake running node: its own root with a control socket that answers `status` as `answersAs`. */
async function fakeNode(answersAs = ID): Promise<LocalEntry> {
  const nodeRoot = await tmp('node');
  const rpc = new RpcRegistry().register('status', () => ({ cluster: 'testc', nodeId: answersAs }));
  const ctl = await ControlServer.start(join(nodeRoot, 'control.sock'), rpc, () => {});
  servers.push(ctl);
  return { cluster: 'testc', nodeId: ID, root: nodeRoot, control: ctl.path, pid: process.pid };
}

/** A fresh run directory (DELUGEFS_RUN_DIR) for one case. */
async function useRunDir(): Promise<string> {
  const d = join(await tmp('run'), 'run');
  process.env.DELUGEFS_RUN_DIR = d;
  return d;
}

test('where the registry lives: /run/delugefs for root, XDG_RUNTIME_DIR for users, none without it', () => {
  assert.deepEqual(runDir({}, 0), { dir: '/run/delugefs' });
  assert.deepEqual(runDir({ XDG_RUNTIME_DIR: '/run/user/1000' }, 1000), { dir: '/run/user/1000/delugefs' });
  // No shared fallback ($TMPDIR, /tmp): other users could plant entries there.
  for (const env of [{}, { TMPDIR: '/tmp' }, { XDG_RUNTIME_DIR: 'relative' }]) {
    const r = runDir(env, 1000);
    assert.equal(r.dir, undefined);
    assert.match(r.why!, /XDG_RUNTIME_DIR is not set.*DELUGEFS_RUN_DIR.*--join TOKEN/);
  }
  assert.deepEqual(runDir({ DELUGEFS_RUN_DIR: '/x/y/' }, 1000), { dir: '/x/y/' });
  assert.match(runDir({ DELUGEFS_RUN_DIR: 'x' }, 1000).why!, /absolute/);
});

test('a registered node is found; the directory is created 0700 whatever the umask', async () => {
  const d = await useRunDir();
  const e = await fakeNode();
  const old = process.umask(0o277);
  let unregister;
  try {
    unregister = await registerLocal(e);
  } finally {
    process.umask(old);
  }
  assert.equal((await stat(d)).mode & 0o7777, 0o700);
  const found = await findLocalMember('testc');
  assert.deepEqual(found.problems, []);
  assert.equal(found.member?.nodeId, ID);
  assert.equal(found.member?.control, e.control);
  assert.equal((await findLocalMember('otherc')).member, undefined);
  await unregister();
  assert.deepEqual(await readdir(d), []);
});

test('a registry directory that is not private is refused, for reading and for writing', { skip }, async () => {
  const e = await fakeNode();
  for (const [what, spoil, msg] of [
    ['mode 0755', (d: string) => chmod(d, 0o755), /has mode 0755, not 0700/],
    ['mode 0777', (d: string) => chmod(d, 0o777), /has mode 0777, not 0700/],
    ['another owner', (d: string) => chown(d, NOBODY, NOBODY), /belongs to uid 65534, not to you/],
    ['a symlink', async (d: string) => { await rename(d, d + '.real'); await symlink(d + '.real', d); }, /is not a directory \(a symlink\)/],
  ] as [string, (d: string) => Promise<void>, RegExp][]) {
    const d = await useRunDir();
    await registerLocal(e);
    await spoil(d);
    const found = await findLocalMember('testc');
    assert.equal(found.member, undefined, what);
    assert.equal(found.problems.length, 1, what);
    assert.match(found.problems[0]!, msg, what);
    assert.match(found.problems[0]!, /local joins through it are refused/, what);
    // A node starting meanwhile does not write into it (and still starts: the refusal is logged).
    const log = memoryLog();
    await registerLocal({ ...e, nodeId: OTHER }, log);
    assert.equal(log.events[0]?.event, 'registry_refused', what);
    assert.ok(!(await readdir(d)).some((n) => n.includes(OTHER)), what);
  }
  // Its parent writable by everyone (no sticky bit): someone could swap the directory.
  const d = await useRunDir();
  await registerLocal(e);
  await chmod(join(d, '..'), 0o777);
  assert.match((await findLocalMember('testc')).problems[0]!, /is writable by other users \(mode 0777\)/);
});

test('entries: symlinks, foreign files, bad fields and foreign or exposed sockets are ignored', { skip }, async () => {
  const good = await fakeNode();
  const cases: [string, (d: string, f: string) => Promise<void>, RegExp][] = [
    ['symlinked entry', async (d, f) => {
      const elsewhere = join(await tmp('elsewhere'), 'entry.json');
      await writeFile(elsewhere, JSON.stringify(good));
      await symlink(elsewhere, f);
    }, /is a symlink/],
    ['entry of another uid', async (d, f) => { await writeFile(f, JSON.stringify(good), { mode: 0o600 }); await chown(f, NOBODY, NOBODY); }, /belongs to uid 65534/],
    ['entry writable by others', async (d, f) => { await writeFile(f, JSON.stringify(good)); await chmod(f, 0o666); }, /writable by other users/],
    ['entry that is a directory', async (d, f) => { await mkdir(f); }, /not a regular file/],
    ['relative control path', async (d, f) => { await writeFile(f, JSON.stringify({ ...good, control: 'control.sock' })); }, /no absolute control path/],
    ['socket of another uid', async (d, f) => {
      const n = await fakeNode();
      await chown(n.control, NOBODY, NOBODY);
      await writeFile(f, JSON.stringify(n));
    }, /control socket .* belongs to uid 65534, not to you/],
    ['socket in a directory others can write', async (d, f) => {
      const n = await fakeNode();
      await chmod(n.root, 0o777);
      await writeFile(f, JSON.stringify(n));
    }, /control socket .* is not private: .* is writable by other users/],
    ['socket in a directory of another uid', async (d, f) => {
      const n = await fakeNode();
      await chown(n.root, NOBODY, NOBODY);
      await writeFile(f, JSON.stringify(n));
    }, /control socket .* is not private: .* belongs to uid 65534/],
    ['a file where the socket should be', async (d, f) => {
      const n = await fakeNode();
      const notSock = join(n.root, 'plain');
      await writeFile(notSock, '');
      await writeFile(f, JSON.stringify({ ...n, control: notSock }));
    }, /is not a socket/],
    ['socket answering as another node', async (d, f) => {
      const n = await fakeNode(OTHER);
      await writeFile(f, JSON.stringify(n));
    }, /answers as node bbbbbbbbbbbbbbbb/],
  ];
  for (const [what, plant, msg] of cases) {
    const d = await useRunDir();
    await mkdir(d, { mode: 0o700 });
    await plant(d, join(d, `testc--${ID}.json`));
    const found = await findLocalMember('testc');
    assert.equal(found.member, undefined, what);
    assert.equal(found.problems.length, 1, `${what}: ${found.problems.join('; ')}`);
    assert.match(found.problems[0]!, msg, what);
  }
  // A planted entry does not hide a good one behind it.
  const d = await useRunDir();
  await mkdir(d, { mode: 0o700 });
  const foreign = await fakeNode();
  await chown(foreign.control, NOBODY, NOBODY);
  // Sorted before the good one, so it is looked at first.
  await writeFile(join(d, 'testc--aaaaaaaaaaaaaaaa.json'), JSON.stringify({ ...foreign, nodeId: 'aaaaaaaaaaaaaaaa' }));
  await registerLocal(good);
  const found = await findLocalMember('testc');
  assert.equal(found.member?.control, good.control);
  assert.equal(found.problems.length, 1);
});

test('a stale entry (its node stopped) is skipped without a complaint', async () => {
  const d = await useRunDir();
  const e = await fakeNode();
  await registerLocal(e);
  await servers.pop()!.close();
  await rm(e.control, { force: true });
  assert.deepEqual(await findLocalMember('testc'), { problems: [] });
  assert.ok((await readdir(d)).length === 1);
});

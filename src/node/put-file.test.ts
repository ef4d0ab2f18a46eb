// `put`: a small file written through a node's FileSystem API (create, replace, parents, refusals),
// the RPC only on the control socket, and `delugefs put` against a running storage-only node.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { constants as fsc } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createLayout, paths } from './layout.js';
import { DelugeNode } from './node.js';
import { MAX_PUT_BYTES, putFile, registerPut } from './put-file.js';
import { RpcRegistry } from '../cluster/rpc.js';
import { LOCAL_PEER } from '../cluster/control-socket.js';
import { closeHashers } from '../content/hasher.js';
import { silentLogger } from '../util/log.js';
import { runCli, sandbox, Sandbox } from '../testing/node-proc.js';
import { eventually } from '../testing/eventually.js';
import { git } from '../testing/proc.js';

const dirs: string[] = [];
const boxes: Sandbox[] = [];
after(async () => {
  for (const b of boxes) await b.cleanup();
  for (const d of dirs) await rm(d, { recursive: true, force: true });
  await closeHashers();
});

async function readAll(node: DelugeNode, path: string): Promise<string> {
  const fh = await node.open(path, fsc.O_RDONLY);
  try {
    const buf = Buffer.alloc(node.stat(path).size);
    const n = await node.read(fh, buf, buf.length, 0);
    return buf.subarray(0, n).toString();
  } finally {
    await node.release(fh);
  }
}

test('putFile creates, replaces, makes parents and refuses what is not a small file path', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'dfs-put-'));
  dirs.push(dir);
  const p = paths(join(dir, 'root'));
  const node = await DelugeNode.start({ paths: p, config: await createLayout(p, 'c'), log: silentLogger, create: true });
  try {
    assert.deepEqual(await putFile(node, '/a.txt', Buffer.from('one')), { path: '/a.txt', size: 3, created: true });
    assert.deepEqual(await putFile(node, '/a.txt', Buffer.from('second')), { path: '/a.txt', size: 6, created: false });
    assert.equal(await readAll(node, '/a.txt'), 'second');
    await assert.rejects(putFile(node, '/d/e/f.txt', Buffer.from('x')), /ENOENT/);
    await putFile(node, '/d/e/f.txt', Buffer.from('deep'), { parents: true });
    assert.equal(node.stat('/d/e').type, 'dir');
    assert.equal(await readAll(node, '/d/e/f.txt'), 'deep');
    await putFile(node, '/empty', Buffer.alloc(0));
    assert.equal(node.stat('/empty').size, 0);
    await assert.rejects(putFile(node, '/d', Buffer.from('x')), /EISDIR/);
    await assert.rejects(putFile(node, '/a.txt/x', Buffer.from('x'), { parents: true }), /ENOTDIR/);
    for (const bad of ['a.txt', '/', '/a/../b', '/a//b', '/./a', '/x/', `/${'n'.repeat(256)}`]) {
      await assert.rejects(putFile(node, bad, Buffer.from('x')), /EINVAL/, bad);
    }
    await assert.rejects(putFile(node, '/big', Buffer.alloc(MAX_PUT_BYTES + 1)), /EINVAL.*more than a put takes/);
    assert.deepEqual(node.list('/').sort(), ['a.txt', 'd', 'empty']);
  } finally {
    await node.close();
  }
});

test('the put RPC answers only on the control socket and checks its parameters', async () => {
  const rpc = new RpcRegistry();
  registerPut(rpc, {} as never); // every call here is refused before the filesystem is touched
  const member = { nodeId: 'aaaaaaaaaaaaaaaa', member: true };
  let r = await rpc.dispatch('put', { path: '/x', data: 'eA==' }, member);
  assert.deepEqual(r, { ok: false, error: { code: 'forbidden', message: 'put is only for the local control socket' } });
  const bigB64 = Buffer.alloc(MAX_PUT_BYTES + 1).toString('base64');
  for (const [params, code] of [
    [null, 'malformed'], [{ path: 'x', data: '' }, 'malformed'], [{ path: '/x', data: 'not base64!' }, 'malformed'],
    [{ path: '/x' }, 'malformed'], [{ path: '/../x', data: '' }, 'malformed'], [{ path: '/x', data: bigB64 }, 'too_large'],
  ] as [unknown, string][]) {
    r = await rpc.dispatch('put', params, LOCAL_PEER);
    assert.equal(!r.ok && r.error.code, code, JSON.stringify(params)?.slice(0, 80));
  }
});

test('delugefs put writes through a running storage-only node', { timeout: 60_000 }, async () => {
  const b = await sandbox('dfs-put-cli');
  boxes.push(b);
  let r = await runCli(['put', '--help']);
  assert.equal(r.code, 0);
  assert.match(r.out, /^Usage: delugefs put ROOT PATH \[FILE\|-\]/);
  r = await runCli(['put', b.root]);
  assert.equal(r.code, 2);
  assert.match(r.err, /missing PATH/);
  r = await runCli(['put', b.root, '/x', 'f', 'g']);
  assert.equal(r.code, 2);
  assert.match(r.err, /too many arguments/);
  const n = await b.start(['--interface', 'lo'], { create: true, mount: false });
  const file = join(b.dir, 'in.txt');
  await writeFile(file, 'from a file');
  r = await runCli(['put', b.root, '/docs/a.txt', file, '--parents', '--json']);
  assert.equal(r.code, 0, r.err);
  assert.deepEqual(JSON.parse(r.out), { path: '/docs/a.txt', size: 11, created: true });
  r = await runCli(['put', b.root, '/docs/a.txt', '-'], { input: 'from stdin' });
  assert.equal(r.code, 0, r.err);
  assert.equal(r.out.trim(), 'replaced /docs/a.txt (10 bytes)');
  r = await runCli(['put', b.root, '/nodir/a.txt'], { input: 'x' });
  assert.equal(r.code, 1);
  assert.match(r.err, /ENOENT/);
  r = await runCli(['put', b.root, 'relative.txt'], { input: 'x' });
  assert.equal(r.code, 1);
  assert.match(r.err, /must be absolute/);
  const big = join(b.dir, 'big');
  await writeFile(big, Buffer.alloc(MAX_PUT_BYTES + 1));
  r = await runCli(['put', b.root, '/big', big]);
  assert.equal(r.code, 1);
  assert.match(r.err, /larger than 512 KiB; write larger files through a mount/);
  // The change is committed like any other (and so synced).
  const repo = join(b.root, 'meta', 'repo.git');
  await eventually('docs/a.txt committed', async () => (await git([`--git-dir=${repo}`, 'ls-tree', '-r', '--name-only', 'refs/heads/main'])).split('\n').includes('docs/a.txt'));
  assert.equal(await n.stop(), 0);
  r = await runCli(['put', b.root, '/late.txt'], { input: 'x' });
  assert.equal(r.code, 1);
  assert.match(r.err, /no node is running.*start it first/);
});

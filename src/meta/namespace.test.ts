import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createHash } from 'node:crypto';
import { Namespace } from './namespace.js';
import { DirEntry, FileEntry } from './entry.js';
import { infoHash, pieceLengthFor } from '../content/metainfo.js';
import { silentLogger } from '../util/log.js';
import { run } from '../util/exec.js';

const attrs = { mode: 0o755, uid: 0, gid: 0, mtime: 1_700_000_000_000, ctime: 1_700_000_000_000 };
const dir: DirEntry = { type: 'dir', ...attrs };
function file(text: string): FileEntry {
  const data = Buffer.from(text);
  const info = { length: data.length, pieceLength: pieceLengthFor(data.length), pieces: data.length ? createHash('sha1').update(data).digest() : Buffer.alloc(0) };
  return { type: 'file', ...attrs, mode: 0o644, info, id: infoHash(info) };
}

async function withDir(fn: (d: string) => Promise<void>) {
  const d = await mkdtemp(join(tmpdir(), 'dfs-ns-'));
  try { await fn(d); } finally { await rm(d, { recursive: true, force: true }); }
}

const NAMES = ['.git', '.gitattributes', '.gitmodules', 'GIT~1', '%dir', '%25', 'new\nline', 'é'.repeat(127) + 'x', '.', 'a b', '-', '~'];

test('every POSIX name round-trips through Git and the repository stays fsck-clean', () => withDir(async (d) => {
  const opts = { dir: d, nodeId: 'n1', log: silentLogger };
  const ns = await Namespace.create(opts, dir, 'create');
  for (const n of NAMES) {
    if (n === '.') continue;
    await ns.apply({ o: 'put', p: `/${n}`, e: file(n) });
  }
  await ns.apply({ o: 'put', p: '/.git', e: file('replaced') });
  await ns.apply({ o: 'put', p: '/empty', e: dir });
  await ns.apply({ o: 'put', p: '/link', e: { type: 'symlink', ...attrs, target: '../x\ny' } });
  await ns.close();
  const again = await Namespace.open(opts);
  await again.finishRecovery();
  const names = [...(again.get('/') as any).children.keys()].sort();
  assert.deepEqual(names, [...NAMES.filter((n) => n !== '.'), 'empty', 'link'].sort());
  assert.equal((again.get('/.git') as any).entry.id, file('replaced').id);
  assert.equal((again.get('/link') as any).entry.target, '../x\ny');
  assert.equal(again.get('/empty')!.kind, 'dir');
  const fsck = await again.repo.fsck();
  assert.ok(fsck.ok, fsck.output);
  await again.close();
}));

test('journaled changes survive a crash before commit, and a burst is a handful of commits', () => withDir(async (d) => {
  const opts = { dir: d, nodeId: 'n1', log: silentLogger, idleMs: 60_000, maxDelayMs: 60_000 };
  const ns = await Namespace.create(opts, dir, 'create');
  await ns.apply({ o: 'put', p: '/a', e: dir });
  for (let i = 0; i < 2000; i++) await ns.apply({ o: 'put', p: `/a/f${i}`, e: file(String(i)) });
  await ns.commit();
  await ns.apply({ o: 'mv', p: '/a/f1', to: '/a/g1' });
  await ns.apply({ o: 'rm', p: '/a/f2' });
  // No close(): simulate a crash by abandoning the object with the journal holding the last ops.
  const again = await Namespace.open(opts);
  await again.finishRecovery();
  assert.equal(again.get('/a/f1'), undefined);
  assert.ok(again.get('/a/g1'));
  assert.equal(again.get('/a/f2'), undefined);
  assert.ok(again.get('/a/f1999'));
  const log = await again.repo.log(50);
  assert.ok(log.length <= 4, log.join('\n'));
  // Reopening again replays nothing twice (the rename would fail loudly if it did).
  await again.close();
  const third = await Namespace.open(opts);
  await third.finishRecovery();
  assert.ok(third.get('/a/g1'));
  assert.equal((await third.repo.log(50)).length, log.length);
  const ls = await run('git', [`--git-dir=${third.repo.dir}`, 'ls-tree', '--name-only', 'HEAD', 'a/']);
  assert.equal(ls.stdout.toString().split('\n').filter(Boolean).length, 2000);
  await third.close();
}));

test('invalid changes are refused with POSIX errors and change nothing', () => withDir(async (d) => {
  const ns = await Namespace.create({ dir: d, nodeId: 'n1', log: silentLogger }, dir, 'create');
  await ns.apply({ o: 'put', p: '/d', e: dir });
  await ns.apply({ o: 'put', p: '/d/f', e: file('x') });
  assert.throws(() => ns.apply({ o: 'put', p: '/nope/f', e: file('x') }), /ENOENT/);
  assert.throws(() => ns.apply({ o: 'put', p: '/d/f/g', e: file('x') }), /ENOTDIR/);
  assert.throws(() => ns.apply({ o: 'mv', p: '/d', to: '/d/f/x' }), /EINVAL|ENOTDIR/);
  assert.throws(() => ns.apply({ o: 'put', p: '/' + 'x'.repeat(256), e: file('x') }), /ENAMETOOLONG/);
  await ns.apply({ o: 'put', p: '/e', e: dir });
  await ns.apply({ o: 'put', p: '/e/1', e: file('y') });
  assert.throws(() => ns.apply({ o: 'mv', p: '/d', to: '/e' }), /ENOTEMPTY/);
  await ns.close();
}));

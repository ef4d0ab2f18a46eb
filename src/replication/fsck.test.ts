// fsck on a real store on disk: a pass finds bad pieces (bit rot, a short copy) and names the
// files; without --repair nothing is touched, with it the bad pieces go to the repair; a pass
// stopped half-way is saved and a new Fsck on the same root (a restarted node) goes on from there.
// End to end (the CLI against two running nodes, repair from the member) is in
// replication.test.ts.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, open, rm, writeFile, readFile, truncate } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { ContentStore } from '../content/store.js';
import { hashBuffer } from '../content/hasher.js';
import { infoHash, type ContentId, type Info } from '../content/metainfo.js';
import { Tree } from '../meta/tree.js';
import type { FileEntry } from '../meta/entry.js';
import { createLogger } from '../util/log.js';
import { Fsck, FsckDeps, filesOf, renderFsck } from './fsck.js';
import { FSCK } from './methods.js';

const dirs: string[] = [];
after(async () => {
  for (const d of dirs) await rm(d, { recursive: true, force: true });
});

async function setup() {
  const dir = await mkdtemp(join(tmpdir(), 'dfs-fsck-'));
  dirs.push(dir);
  const store = new ContentStore(join(dir, 'content'), join(dir, 'tmp'));
  await store.init();
  const tree = new Tree({ type: 'dir', mode: 0o755, uid: 0, gid: 0, mtime: 0, ctime: 0 });
  const infos = new Map<ContentId, Info>();
  const add = async (paths: string[], data: Buffer) => {
    const info = hashBuffer(data);
    const id = infoHash(info);
    const tmp = store.tempPath();
    await writeFile(tmp, data);
    await store.put(tmp, id);
    infos.set(id, info);
    for (const p of paths) {
      const e: FileEntry = { type: 'file', info, id, mode: 0o644, uid: 0, gid: 0, mtime: 1, ctime: 1 };
      if (p.includes('/', 1)) tree.put(p.slice(0, p.lastIndexOf('/')), { type: 'dir', mode: 0o755, uid: 0, gid: 0, mtime: 0, ctime: 0 });
      tree.put(p, e);
    }
    return id;
  };
  const repaired: { id: ContentId; bad: number[] }[] = [];
  const deps = (o: Partial<FsckDeps> = {}): FsckDeps => ({
    store, dir: join(dir, 'replication'), log: createLogger({}, 'error'),
    held: () => [...infos.keys()].sort(), info: (id) => infos.get(id), busy: () => false,
    canRepair: () => true,
    repair: async (id, info, good) => {
      const bad: number[] = [];
      for (let i = 0; i * info.pieceLength < info.length; i++) if (!good(i)) bad.push(i);
      repaired.push({ id, bad });
    },
    check: (v) => FSCK.result(v),
    root: () => tree.root, ...o,
  });
  return { dir, store, tree, infos, add, deps, repaired };
}

const flip = async (path: string, at: number) => {
  const fh = await open(path, 'r+');
  const b = Buffer.alloc(1);
  await fh.read(b, 0, 1, at);
  b[0] ^= 0xff;
  await fh.write(b, 0, 1, at);
  await fh.close();
};

test('a pass finds bit rot and a short copy, names their files, and repairs only with --repair', async () => {
  const s = await setup();
  const a = randomBytes(3 << 20); // 64 KiB pieces
  const idA = await s.add(['/a.bin', '/docs/same-as-a.bin'], a);
  const idB = await s.add(['/b.bin'], randomBytes(700_000));
  const idC = await s.add(['/c.bin'], randomBytes(2_000_000));
  const total = [...s.infos.values()].reduce((x, i) => x + i.length, 0);
  let f = new Fsck(s.deps());
  const wait = async () => { for (let i = 0; i < 600 && (await f.status()).state === 'running'; i++) await new Promise((r) => setTimeout(r, 20)); return f.status(); };

  await f.start({ repair: false, restart: false });
  let st = await wait();
  assert.equal(st.state, 'done');
  assert.deepEqual([st.checked, st.total, st.bytes, st.totalBytes, st.badCopies], [3, 3, total, total, 0]);

  await flip(s.store.path(idA), 1_500_000); // piece 22 of a
  await truncate(s.store.path(idC), 1_000_000); // c lost its tail: pieces past 1 MB unreadable
  await f.start({ repair: false, restart: false });
  st = await wait();
  assert.equal(st.state, 'done');
  assert.equal(st.badCopies, 2);
  assert.equal(st.unrepaired, 2);
  assert.equal(s.repaired.length, 0, 'nothing repaired without --repair');
  const badA = st.bad.find((b) => b.id === idA)!;
  assert.deepEqual([badA.paths, badA.files, badA.badPieces, badA.state], [['/a.bin', '/docs/same-as-a.bin'], 2, 1, 'found']);
  const badC = st.bad.find((b) => b.id === idC)!;
  assert.deepEqual(badC.paths, ['/c.bin']);
  assert.ok(badC.badPieces >= 15, `${badC.badPieces} bad pieces of the truncated copy`);
  assert.ok(!st.bad.some((b) => b.id === idB));
  assert.match(renderFsck(st), /2 bad copies .* 0 repaired, 2 not[\s\S]*\/a\.bin, \/docs\/same-as-a\.bin[\s\S]*--repair/);

  // --repair: the bad pieces (and only those) go to the repair; one with no member to repair
  // from is kept as it is and said so.
  f = new Fsck(s.deps({ canRepair: (id) => id !== idC }));
  await f.start({ repair: true, restart: false });
  st = await wait();
  assert.deepEqual([st.badCopies, st.repaired, st.unrepaired], [2, 1, 1]);
  assert.deepEqual(s.repaired, [{ id: idA, bad: [22] }]);
  assert.equal(st.bad.find((b) => b.id === idC)!.state, 'unrepairable');
  assert.equal(st.bad.find((b) => b.id === idA)!.state, 'repaired');
});

test('a pass stopped half-way is saved; a restarted node goes on from there; --restart starts over', async () => {
  const s = await setup();
  const ids: ContentId[] = [];
  for (let i = 0; i < 6; i++) ids.push(await s.add([`/f${i}`], randomBytes(300_000 + i)));
  ids.sort();
  await flip(s.store.path(ids[1]!), 1000);
  let f: Fsck;
  // Stopped when its turn comes to the fourth copy (in id order): deterministic, no timing.
  let stopAt: ContentId | null = ids[3]!;
  f = new Fsck(s.deps({ busy: (id) => { if (id === stopAt) { stopAt = null; void f.stop(); } return false; } }));
  await f.start({ repair: false, restart: false });
  for (let i = 0; i < 600 && (await f.status()).state === 'running'; i++) await new Promise((r) => setTimeout(r, 20));
  let st = await f.status();
  assert.equal(st.state, 'stopped');
  assert.equal(st.checked, 3, 'the copy being checked when it stopped is not counted');
  assert.equal(st.badCopies, 1);
  const saved = JSON.parse(await readFile(join(s.dir, 'replication', 'fsck.json'), 'utf8'));
  assert.equal(saved.after, ids[2]);

  // A new node process: the saved pass goes on with the three copies left.
  const seen: ContentId[] = [];
  f = new Fsck(s.deps({ busy: (id) => { seen.push(id); return false; } }));
  assert.equal((await f.status()).state, 'stopped');
  await f.start({ repair: false, restart: false });
  for (let i = 0; i < 600 && (await f.status()).state === 'running'; i++) await new Promise((r) => setTimeout(r, 20));
  st = await f.status();
  assert.deepEqual(seen, ids.slice(3));
  assert.deepEqual([st.state, st.checked, st.total, st.badCopies, st.resumed], ['done', 6, 6, 1, 1]);
  const all = [...s.infos.values()].reduce((x, i) => x + i.length, 0);
  assert.equal(st.bytes, all);

  // --restart: every copy again, counts from zero.
  seen.length = 0;
  await f.start({ repair: false, restart: true });
  for (let i = 0; i < 600 && (await f.status()).state === 'running'; i++) await new Promise((r) => setTimeout(r, 20));
  st = await f.status();
  assert.deepEqual([seen.length, st.checked, st.resumed, st.badCopies], [6, 6, 0, 1]);

  // A malformed saved pass (the disk's word, checked like a peer's reply) is no pass at all.
  const good = JSON.parse(await readFile(join(s.dir, 'replication', 'fsck.json'), 'utf8'));
  for (const bad of [{ bad: 'x' }, { bad: [1] }, { checked: '1' }, { after: 'zz' }, { state: 'weird' }, { total: -1 }]) {
    await writeFile(join(s.dir, 'replication', 'fsck.json'), JSON.stringify({ ...good, state: 'stopped', ...bad }));
    const fk = new Fsck(s.deps());
    assert.equal((await fk.status()).state, 'idle', JSON.stringify(bad));
    await fk.start({ repair: false, restart: false }); // and a new pass runs from the start
    for (let i = 0; i < 600 && (await fk.status()).state === 'running'; i++) await new Promise((r) => setTimeout(r, 20));
    assert.equal((await fk.status()).checked, 6, JSON.stringify(bad));
  }
});

test('calls at once run one pass; a stop during a repair gives the repair up at once and the copy is not counted twice', async () => {
  const s = await setup();
  const ids: ContentId[] = [];
  for (let i = 0; i < 4; i++) ids.push(await s.add([`/f${i}`], randomBytes(200_000 + i)));
  ids.sort();
  // Right after a start (nothing loaded yet): status, start, start together.
  const f1 = new Fsck(s.deps());
  const [, a, b] = await Promise.all([f1.status(), f1.start({ repair: false, restart: false }), f1.start({ repair: false, restart: false })]);
  assert.equal(a.resumed + b.resumed, 0);
  for (let i = 0; i < 600 && (await f1.status()).state === 'running'; i++) await new Promise((r) => setTimeout(r, 20));
  let st = await f1.status();
  assert.deepEqual([st.state, st.checked, st.total], ['done', 4, 4]);

  // A repair that would take for ever (no member answers) on the second copy: stop ends it.
  await flip(s.store.path(ids[1]!), 100);
  let repairing: () => void = () => {};
  const started = new Promise<void>((r) => { repairing = r; });
  const f2 = new Fsck(s.deps({
    repair: (_id, _info, _good, signal) => new Promise((_res, rej) => { repairing(); signal.addEventListener('abort', () => rej(new Error('given up'))); }),
  }));
  await f2.start({ repair: true, restart: true });
  await started;
  const t0 = Date.now();
  st = await f2.stop();
  assert.ok(Date.now() - t0 < 5000, 'stop waited for the repair');
  assert.equal(st.state, 'stopped');
  // Resumed: that copy is behind the cursor, counted once; the pass ends with all four.
  await f2.start({ repair: false, restart: false });
  for (let i = 0; i < 600 && (await f2.status()).state === 'running'; i++) await new Promise((r) => setTimeout(r, 20));
  st = await f2.status();
  assert.deepEqual([st.state, st.checked, st.total, st.badCopies, st.bad.length], ['done', 4, 4, 1, 1]);
  assert.equal(st.bad[0]!.state, 'failed');
});

test('filesOf names a content by its files, sorted, a few of them, and counts the rest', () => {
  const tree = new Tree({ type: 'dir', mode: 0o755, uid: 0, gid: 0, mtime: 0, ctime: 0 });
  const info = hashBuffer(Buffer.from('x'.repeat(100_000)));
  const id = infoHash(info);
  tree.put('/d', { type: 'dir', mode: 0o755, uid: 0, gid: 0, mtime: 0, ctime: 0 });
  for (const p of ['/z', '/d/b', '/d/a', '/y', '/x', '/w']) tree.put(p, { type: 'file', info, id, mode: 0o644, uid: 0, gid: 0, mtime: 1, ctime: 1 });
  const got = filesOf(tree.root, new Set([id]), 4).get(id)!;
  assert.equal(got.count, 6);
  assert.equal(got.paths.length, 4);
  assert.deepEqual(got.paths, [...got.paths].sort());
});

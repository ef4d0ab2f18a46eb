// The journal on a real full disk (a tiny tmpfs): a failed append is cut back to the last whole
// line and reported, so the next append after room came back is whole and replayed; a torn line
// never swallows the one after it; a change that cannot be journaled is not applied.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, mkdir, readFile, rm, writeFile, appendFile, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createHash } from 'node:crypto';
import { Journal, Op, encodeOp } from './journal.js';
import { Namespace } from './namespace.js';
import type { DirEntry, FileEntry } from './entry.js';
import { infoHash, pieceLengthFor } from '../content/metainfo.js';
import { silentLogger } from '../util/log.js';
import { runProc } from '../testing/proc.js';

const attrs = { mode: 0o644, uid: 0, gid: 0, mtime: 1_700_000_000_000, ctime: 1_700_000_000_000 };
const root: DirEntry = { type: 'dir', ...attrs, mode: 0o755 };
function file(data: Buffer): FileEntry {
  const info = { length: data.length, pieceLength: pieceLengthFor(data.length), pieces: createHash('sha1').update(data).digest() };
  return { type: 'file', ...attrs, info, id: infoHash(info) };
}
/** A small file's put: its bytes ride in the journal line. */
const put = (name: string, size: number): Op => {
  const d = Buffer.alloc(size, name);
  return { o: 'put', p: `/${name}`, e: file(d), d };
};

async function sh(cmd: string): Promise<void> {
  const r = await runProc('sh', ['-c', cmd]);
  assert.equal(r.code, 0, `${cmd}: ${r.stderr}`);
}

/** A tmpfs of `kib` KiB, unmounted afterwards whatever happens. */
async function withTinyDisk(kib: number, fn: (dir: string) => Promise<void>): Promise<void> {
  const dir = await mkdtemp(join(tmpdir(), 'dfs-journal-'));
  await sh(`mount -t tmpfs -o size=${kib}k tmpfs ${dir}`);
  try {
    await fn(dir);
  } finally {
    await sh(`umount -l ${dir}`);
    await rm(dir, { recursive: true, force: true });
  }
}

/** Fills what is left of the disk; returns the filler's path (removing it makes room again). */
async function fill(dir: string): Promise<string> {
  const p = join(dir, 'filler');
  await writeFile(p, '');
  for (let chunk = 64 * 1024; chunk >= 1; chunk = Math.floor(chunk / 2)) {
    for (;;) {
      try {
        await appendFile(p, Buffer.alloc(chunk, 0x61));
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code !== 'ENOSPC') throw e;
        break;
      }
    }
  }
  return p;
}

async function tryAppend(j: Journal, op: Op): Promise<string | null> {
  try {
    await j.append(op); // awaited: the same test ran against the earlier, promise-returning append
    return null;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code ?? 'unknown';
  }
}

test('journal: an append that fails with ENOSPC is cut back to the last whole line; the next one after room came back is replayed', () => withTinyDisk(256, async (dir) => {
  const j = new Journal(join(dir, 'journal'));
  const gen = await j.start();
  // One line first: the rest of its page is all the journal has once the disk is full.
  const written: Op[] = [put('first', 700)];
  assert.equal(await tryAppend(j, written[0]!), null);
  const filler = await fill(dir);
  let failure: string | null = null;
  for (let i = 0; i < 200 && !failure; i++) {
    const op = put(`f${i}`, 700);
    failure = await tryAppend(j, op);
    if (!failure) written.push(op);
  }
  assert.equal(failure, 'ENOSPC', 'the journal never met the full disk');
  const seg = join(dir, 'journal', `${String(gen).padStart(12, '0')}.log`);
  const text = await readFile(seg, 'utf8');
  assert.equal(text.length, written.reduce((n, op) => n + encodeOp(op).length, 0), 'a torn line stayed behind');
  assert.ok(text.endsWith('\n'));
  assert.ok(written.length >= 3, 'no line went into the last page before it was full');

  await rm(filler);
  const after = put('after', 700);
  assert.equal(await tryAppend(j, after), null);
  const { ops, torn } = await j.readAfter(0);
  assert.equal(torn, 0);
  assert.deepEqual(ops.map((o) => o.p), [...written, after].map((o) => o.p));
  await j.close();
}));

test('journal: replay keeps every whole line, drops a torn last one, and finds an op glued behind a torn one', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'dfs-journal-'));
  try {
    await mkdir(dir, { recursive: true });
    const [a, b, c, d] = [put('a', 10), put('b', 300), put('c', 20), put('d', 40)];
    const cut = (op: Op) => encodeOp(op).subarray(0, 50);
    // As an append torn by a full disk left it before appends were cut back: b's start, c glued
    // behind it, then a torn last line (a crash mid-append).
    await writeFile(join(dir, '000000000001.log'), Buffer.concat([encodeOp(a), cut(b), encodeOp(c), cut(d)]));
    const j = new Journal(dir);
    const { ops, torn } = await j.readAfter(0);
    assert.deepEqual(ops.map((o) => o.p), ['/a', '/c']);
    assert.equal(torn, 2);
    assert.deepEqual((ops[1] as { d: Buffer }).d, c.o === 'put' ? c.d : undefined);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

test('journal: an op taken back right after its append is gone from the file', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'dfs-journal-'));
  try {
    const j = new Journal(dir);
    const gen = await j.start();
    j.append(put('kept', 10));
    const bad = put('bad', 10);
    j.append(bad);
    j.retract(bad);
    const { ops, torn } = await j.readAfter(0);
    assert.deepEqual(ops.map((o) => o.p), ['/kept']);
    assert.equal(torn, 0);
    assert.equal((await stat(join(dir, `${String(gen).padStart(12, '0')}.log`))).size, encodeOp(put('kept', 10)).length);
    await j.close();
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

test('namespace: a change that cannot be journaled (ENOSPC) is not applied, and a restart has exactly the journaled ones', () => withTinyDisk(4096, async (dir) => {
  const opts = { dir: join(dir, 'meta'), nodeId: 'n1', log: silentLogger, idleMs: 60_000, maxDelayMs: 60_000 };
  const ns = await Namespace.create(opts, root, 'create');
  const filler = await fill(dir);
  const kept: string[] = [];
  let failed: Op | null = null;
  for (let i = 0; i < 500 && !failed; i++) {
    const op = put(`f${i}`, 2000);
    try {
      await ns.apply(op);
      kept.push(op.p);
    } catch (e) {
      assert.equal((e as NodeJS.ErrnoException).code, 'ENOSPC');
      failed = op;
    }
  }
  assert.ok(failed, 'the journal never met the full disk');
  assert.equal(ns.get(failed.p), undefined, 'a change that was not journaled is in the tree');
  for (const p of kept) assert.ok(ns.get(p), `${p} missing`);
  // A crash (no close), room again, a restart: the journaled changes and nothing else.
  await rm(filler);
  const again = await Namespace.open(opts);
  await again.finishRecovery();
  assert.equal(again.get(failed.p), undefined);
  for (const p of kept) assert.ok(again.get(p), `${p} lost in the restart`);
  await again.close();
}));

test('journal: on a disk too full for any other change a removal still goes in (the reserve it holds)', () => withTinyDisk(1024, async (dir) => {
  const j = new Journal(join(dir, 'journal'));
  await j.start();
  assert.equal(await tryAppend(j, put('first', 100)), null);
  await fill(dir);
  // Down to the last bytes of the journal's page: even the smallest put fails.
  for (let size = 2000, i = 0; size >= 0; size = size ? Math.floor(size / 2) : -1) while ((await tryAppend(j, put(`p${i++}`, size))) === null);
  const long = `/${'x'.repeat(250)}`;
  assert.equal(await tryAppend(j, { o: 'rm', p: long }), null, 'a removal was refused on a full disk');
  const { ops } = await j.readAfter(0);
  assert.equal(ops.at(-1)?.p, long);
  await j.close();
}));

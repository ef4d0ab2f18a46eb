// The long-lived object reader on a real repository: contents and sizes over one process, an
// object over the limit refused from its header, a name with a newline refused before it is
// written, objects written after the reader started are found, a killed git is replaced, and an
// idle reader never keeps a process from exiting.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { run } from '../util/exec.js';
import { ObjectReader } from './object-reader.js';
import { ObjectTooLargeError } from './cat-file.js';
import { gitEnv } from './repo.js';

const hash = async (dir: string, data: Buffer | string) =>
  (await run('git', ['--git-dir', dir, 'hash-object', '-w', '--stdin'], { input: data })).stdout.toString().trim();

test('object reader: one process answers many requests; limits, bad names, new objects, a killed git', async () => {
  const d = await mkdtemp(join(tmpdir(), 'dfs-objreader-'));
  const dir = join(d, 'r.git');
  const r = new ObjectReader(dir, gitEnv);
  try {
    await run('git', ['init', '-q', '--bare', dir]);
    const a = await hash(dir, 'alpha\n');
    const big = await hash(dir, Buffer.alloc(5000, 7));
    const empty = await hash(dir, '');
    const got = await r.read([a, empty, a], 10_000);
    assert.equal(got.size, 2);
    assert.equal(got.get(a)!.data.toString(), 'alpha\n');
    assert.equal(got.get(a)!.type, 'blob');
    assert.equal(got.get(empty)!.data.length, 0);
    const pid = (r as unknown as { p: { pid: number } }).p.pid;
    // Written after the reader started (a pushed pack, a commit of ours): found.
    const later = await hash(dir, 'written later\n');
    assert.equal((await r.read([later], 100)).get(later)!.data.toString(), 'written later\n');
    assert.equal((r as unknown as { p: { pid: number } }).p.pid, pid, 'every request went to one process');

    const missing = 'f'.repeat(40);
    const info = await r.info([big, missing]);
    assert.deepEqual(info.get(big), { oid: big, type: 'blob', size: 5000 });
    assert.equal(info.get(missing), null);
    assert.equal((r as unknown as { p: { pid: number } }).p.pid, pid, 'info goes to the same process');
    // Refused from the header (the process is replaced: what it still sends is never read).
    await assert.rejects(r.read([a, missing], 10_000), /missing/);
    await assert.rejects(r.read([big, a], 4999), ObjectTooLargeError);
    assert.equal((await r.read([a, big], 5000)).get(big)!.data.length, 5000);
    // A command smuggled in a name never reaches git.
    await assert.rejects(r.info([`${a}\ncontents ${big}`]), /not an object name/);
    await assert.rejects(r.read(['HEAD'], 10), /not an object name/);


    // Refs by full name, read afresh each time (loose and packed): what sync reads refs/nodes/* with.
    const c1 = (await run('git', ['--git-dir', dir, 'commit-tree', '4b825dc642cb6eb9a060e54bf8d69288fbee4904', '-m', 'one'])).stdout.toString().trim();
    const c2 = (await run('git', ['--git-dir', dir, 'commit-tree', '4b825dc642cb6eb9a060e54bf8d69288fbee4904', '-p', c1, '-m', 'two'])).stdout.toString().trim();
    const ref = 'refs/nodes/abcdefghijklmnop';
    assert.equal((await r.info([ref])).get(ref), null);
    await run('git', ['--git-dir', dir, 'update-ref', ref, c1]);
    assert.equal((await r.info([ref])).get(ref)?.oid, c1);
    await run('git', ['--git-dir', dir, 'update-ref', ref, c2]);
    assert.equal((await r.info([ref])).get(ref)?.oid, c2);
    await run('git', ['--git-dir', dir, 'pack-refs', '--all']);
    assert.equal((await r.info([ref])).get(ref)?.oid, c2, 'packed');
    await run('git', ['--git-dir', dir, 'update-ref', ref, c1]);
    assert.equal((await r.info([ref])).get(ref)?.oid, c1, 'loose again over packed');
    await run('git', ['--git-dir', dir, 'update-ref', '-d', ref]);
    assert.equal((await r.info([ref])).get(ref), null, 'deleted');
    for (const bad of ['refs/nodes/../x', 'refs/nodes/a b', 'refs/nodes/x^{tree}', 'HEAD', 'refs/nodes/x:y']) await assert.rejects(r.info([bad]), /not an object name/, bad);
    await assert.rejects(r.read([ref], 100), /not an object name/);

    // git killed under it: the request in flight fails or succeeds, the next one gets a new process.
    const now = (r as unknown as { p: { pid: number } }).p.pid;
    process.kill(now, 'SIGKILL');
    await r.read([a], 100).catch(() => {});
    assert.equal((await r.read([a], 100)).get(a)!.data.toString(), 'alpha\n');
    assert.notEqual((r as unknown as { p: { pid: number } }).p.pid, now);
    // Ended while idle (a gc, a close) and asked again at once: the old process's exit is not the new request's.
    for (let i = 0; i < 5; i++) {
      r.close();
      assert.equal((await r.read([a], 100)).get(a)!.data.toString(), 'alpha\n');
    }
  } finally {
    r.close();
    await rm(d, { recursive: true, force: true });
  }
});

test('object reader: an idle reader does not keep its process alive; a busy one does', { timeout: 60_000 }, async () => {
  const d = await mkdtemp(join(tmpdir(), 'dfs-objreader-'));
  try {
    const dir = join(d, 'r.git');
    await run('git', ['init', '-q', '--bare', dir]);
    const a = await hash(dir, 'alpha\n');
    const script = join(d, 'use.mjs');
    const mod = new URL('./object-reader.js', import.meta.url).href;
    const repoMod = new URL('./repo.js', import.meta.url).href;
    // Only the reader's request is pending when the script's last line runs: it must still print.
    await writeFile(script, `import { ObjectReader } from ${JSON.stringify(mod)};\nimport { gitEnv } from ${JSON.stringify(repoMod)};\n` +
      `const r = new ObjectReader(${JSON.stringify(dir)}, gitEnv);\n` +
      `console.log((await r.read([${JSON.stringify(a)}], 100)).get(${JSON.stringify(a)}).data.toString().trim());\n` +
      `setTimeout(() => console.log('second'), 10);\n`);
    const t0 = Date.now();
    const out = await run(process.execPath, [script]);
    assert.equal(out.stdout.toString(), 'alpha\nsecond\n');
    assert.ok(Date.now() - t0 < 20_000);
  } finally {
    await rm(d, { recursive: true, force: true });
  }
});

test('object reader: contents that name another object than the one asked for fail the read', async () => {
  const d = await mkdtemp(join(tmpdir(), 'dfs-objreader-'));
  const dir = join(d, 'r.git');
  try {
    await run('git', ['init', '-q', '--bare', dir]);
    const a = await hash(dir, 'alpha\n');
    const b = await hash(dir, 'beta\n!'); // same size class, another object
    // A git whose reader answers every contents request with b's (sizes asked first stay true).
    const bin = join(d, 'bin');
    await run('mkdir', ['-p', bin]);
    await writeFile(join(bin, 'git'), `#!/bin/sh\nsed -u 's/^contents .*/contents ${b}/' | exec /usr/bin/git "$@"\n`, { mode: 0o755 });
    const r = new ObjectReader(dir, () => ({ ...gitEnv(), PATH: `${bin}:${process.env.PATH}` }));
    try {
      await assert.rejects(r.read([a], 1000), /asked for/);
      assert.equal((await r.read([b], 1000)).get(b)!.data.toString(), 'beta\n!');
    } finally {
      r.close();
    }
  } finally {
    await rm(d, { recursive: true, force: true });
  }
});

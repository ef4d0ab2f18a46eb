// An fsync'ed file survives a power loss after the commit that drops its journal: a small file's
// bytes ride in the journal, so its copy in the store is synced before that journal goes; a large
// file's name in the store (the rename) is synced before the journal line that names it. Checked
// with strace on this process (a real node, real system calls; a power loss cannot be made here).
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { spawn } from 'node:child_process';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createLayout, paths } from './layout.js';
import { DelugeNode } from './node.js';
import { closeHashers } from '../content/hasher.js';
import { silentLogger } from '../util/log.js';

const dirs: string[] = [];
after(async () => {
  for (const d of dirs) await rm(d, { recursive: true, force: true });
  await closeHashers();
});

/** Traces this process's fsyncs, writes and unlinks (with paths) while `fn` runs. */
async function traced(out: string, fn: () => Promise<void>): Promise<string[]> {
  const st = spawn('strace', ['-f', '-y', '-s', '64', '-e', 'trace=fsync,fdatasync,write,unlink,unlinkat,rename,renameat,renameat2', '-o', out, '-p', String(process.pid)], { stdio: ['ignore', 'ignore', 'pipe'] });
  let err = '';
  await new Promise<void>((resolve, reject) => {
    st.stderr!.on('data', (b: Buffer) => { err += b.toString(); if (/attached/.test(err)) resolve(); });
    st.once('exit', (code) => reject(new Error(`strace exited (${code}): ${err}`)));
  });
  try {
    await fn();
  } finally {
    const exited = new Promise((r) => st.once('exit', r));
    st.kill('SIGINT');
    await exited;
  }
  return (await readFile(out, 'utf8')).split('\n');
}

test('fsync: a small file\'s stored copy is synced before its journal is dropped, a large one\'s name before it is journaled', { timeout: 120_000 }, async () => {
  const dir = await mkdtemp(join(tmpdir(), 'dfs-durable-'));
  dirs.push(dir);
  const p = paths(join(dir, 'root'));
  const node = await DelugeNode.start({ paths: p, config: await createLayout(p, 'c'), log: silentLogger, create: true });
  try {
    const put = async (name: string, data: Buffer) => {
      const fh = await node.create(name, 0o644);
      await node.write(fh, data, data.length, 0);
      await node.fsync(fh);
      await node.release(fh);
    };
    const lines = await traced(join(dir, 'trace'), async () => {
      await put('/small', Buffer.from('fsynced small file'));
      await put('/large', Buffer.alloc(1 << 20, 7));
      await node.ns.commit();
    });
    const id = (n: string) => (node.ns.get(n)!.entry as { id: string }).id;
    const small = `/content/${id('/small').slice(0, 2)}/${id('/small')}>`;
    const large = id('/large');
    const at = (re: RegExp) => lines.findIndex((l) => re.test(l));
    const esc = (s: string) => s.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&');
    // The segment that held the small file's bytes (its last journal line: the create's came first) goes with the commit.
    const putLines = lines.filter((l) => /write\(\d+<[^>]*\/meta\/journal\/\d{12}\.log>, "\{\\"o\\":\\"put\\",\\"p\\":\\"\/small\\"/.test(l));
    const segment = /\/meta\/journal\/(\d{12})\.log>/.exec(putLines.at(-1) ?? '')?.[1];
    assert.ok(segment, `the small file was not journaled:\n${lines.join('\n')}`);
    const dropped = at(new RegExp(`unlink(at)?\\(.*/meta/journal/${segment}\\.log"`));
    assert.ok(dropped >= 0, `journal segment ${segment} not dropped:\n${lines.join('\n')}`);
    // A call's first line (strace splits one that another thread interrupts into unfinished/resumed).
    const smallSynced = at(new RegExp(`f(data)?sync\\(\\d+<[^>]*${esc(small)}`));
    assert.ok(smallSynced >= 0 && smallSynced < dropped, `the small file's copy in the store was not synced before its journal was dropped (sync at line ${smallSynced}, drop at ${dropped})`);
    // The large file: its folder in the store synced after the rename and before the journal line that names it.
    const renamed = at(new RegExp(`rename.*/content/${large.slice(0, 2)}/${large}"`));
    const dirSynced = lines.findIndex((l, i) => i > renamed && new RegExp(`fsync\\(\\d+<[^>]*/content/${large.slice(0, 2)}>`).test(l));
    const journaled = lines.findIndex((l, i) => i > renamed && /write\(\d+<[^>]*\/meta\/journal\/\d{12}\.log>/.test(l));
    assert.ok(renamed >= 0 && journaled > renamed, `the large file was not renamed and journaled:\n${lines.join('\n')}`);
    assert.ok(dirSynced > renamed && dirSynced < journaled, `the store's folder was not synced between the rename (line ${renamed}) and the journal append (line ${journaled}): ${dirSynced}`);
  } finally {
    await node.close();
  }
});

// Crash safety: kill -9 of the node while files are being written. After a restart every file
// whose close() had returned is intact and listed, temp leftovers are gone, and Git is sound.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { readFile, readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { createHash } from 'node:crypto';
import { sandbox, sh, Sandbox } from '../testing/node-proc.js';

let sb: Sandbox;
after(async () => sb && (await sb.cleanup()));

/** Content of file i, reproducible here and in the writer: sizes from empty to ~2 MiB. */
function content(i: number): Buffer {
  const size = [0, 10, 5000, 70_000, 300_000, 2_000_000][i % 6]!;
  const out = Buffer.alloc(size);
  let block = createHash('sha256').update(String(i)).digest();
  for (let o = 0; o < size; o += 32) {
    block.copy(out, o);
    block = createHash('sha256').update(block).digest();
  }
  return out;
}

const WRITER = `
import hashlib, os, sys
d = sys.argv[1]
def content(i):
    size = [0, 10, 5000, 70000, 300000, 2000000][i % 6]
    out = bytearray(); block = hashlib.sha256(str(i).encode()).digest()
    while len(out) < size:
        out += block; block = hashlib.sha256(block).digest()
    return bytes(out[:size])
i = 0
while True:
    try:
        sub = os.path.join(d, 'dir%d' % (i // 50))
        os.makedirs(sub, exist_ok=True)
        with open(os.path.join(sub, 'f%d' % i), 'wb') as f:
            f.write(content(i))
        print(i, flush=True)
        i += 1
    except OSError:
        break
`;

test('kill -9 while writing: every closed file survives, temp files are cleaned, Git is sound', async () => {
  sb = await sandbox('dfs-crash');
  const node = await sb.start([], { create: true });
  const w = spawn('/usr/bin/python3', ['-c', WRITER, sb.mnt], { stdio: ['ignore', 'pipe', 'ignore'] });
  let out = '';
  w.stdout.on('data', (b: Buffer) => (out += b.toString()));
  // Let it write a few hundred files, then kill the node mid-stream.
  while (out.split('\n').length < 300) await new Promise((r) => setTimeout(r, 50));
  await node.kill9();
  await new Promise((r) => w.on('close', r));
  const done = out.split('\n').filter(Boolean).map(Number);
  assert.ok(done.length >= 299);

  const again = await sb.start();
  assert.ok(again.ready.node);
  for (const i of done) {
    const p = join(sb.mnt, `dir${Math.floor(i / 50)}`, `f${i}`);
    const got = await readFile(p);
    assert.ok(got.equals(content(i)), `file ${i} differs after the crash`);
  }
  assert.deepEqual(await readdir(join(sb.root, 'tmp')), []);
  await again.stop();
  const fsck = await sh(`git --git-dir ${sb.root}/meta/repo.git fsck --strict`, { allowFail: true });
  assert.equal(fsck.code, 0, fsck.err);
});

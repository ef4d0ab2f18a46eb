// File locks on a mount (issue 11): flock(2) and fcntl(2) record locks are kept by the kernel
// for the processes of one mount, so they exclude each other there as on a local disk. They do
// not reach other nodes (README, "Locks").
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs/promises';
import { join } from 'node:path';
import { sandbox, sh, Sandbox } from '../testing/node-proc.js';

let sb: Sandbox | undefined;
after(async () => {
  await sb?.cleanup();
});

// Holds a lock of the given kind on argv[1] for argv[3] seconds after printing "held".
const HOLD = `import fcntl, sys, time
f = open(sys.argv[1], 'r+')
if sys.argv[2] == 'flock': fcntl.flock(f, fcntl.LOCK_EX)
else: fcntl.lockf(f, fcntl.LOCK_EX, 10, 0)
print('held', flush=True)
time.sleep(float(sys.argv[3]))`;
// Tries the same lock without waiting: prints "got" or the error's name.
const TRY = `import errno, fcntl, sys
f = open(sys.argv[1], 'r+')
try:
    if sys.argv[2] == 'flock': fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
    else: fcntl.lockf(f, fcntl.LOCK_EX | fcntl.LOCK_NB, 10, 5)
    print('got')
except OSError as e:
    print(errno.errorcode[e.errno])`;

test('flock and fcntl locks exclude each other between processes of one mount, as on the local disk', { timeout: 60_000 }, async () => {
  sb = await sandbox('dfs-locks');
  await sb.start([], { create: true });
  const local = join(sb.dir, 'local');
  await fs.mkdir(local);
  await fs.writeFile(join(sb.dir, 'hold.py'), HOLD);
  await fs.writeFile(join(sb.dir, 'try.py'), TRY);
  const results: string[][] = [];
  for (const dir of [sb.mnt, local]) {
    const f = join(dir, 'f');
    await fs.writeFile(f, 'x'.repeat(100));
    const row: string[] = [];
    for (const kind of ['flock', 'fcntl']) {
      // The holder in the background; the try once it holds, then again after it let go.
      const out = (await sh(`python3 ${sb.dir}/hold.py ${f} ${kind} 1 > ${sb.dir}/held & while ! grep -q held ${sb.dir}/held 2>/dev/null; do sleep 0.05; done; python3 ${sb.dir}/try.py ${f} ${kind}; wait; python3 ${sb.dir}/try.py ${f} ${kind}; rm -f ${sb.dir}/held`)).out;
      row.push(`${kind}: ${out.trim().split('\n').join(' then ')}`);
    }
    results.push(row);
  }
  assert.deepEqual(results[0], results[1]);
  assert.deepEqual(results[0], ['flock: EAGAIN then got', 'fcntl: EAGAIN then got']); // EWOULDBLOCK is EAGAIN on Linux
});

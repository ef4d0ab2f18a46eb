// What a test needs to see whether bytes went through the page cache: a directory on a filesystem
// that takes O_DIRECT, and how much of a file is resident (fincore, util-linux).
import { constants } from 'node:fs';
import { mkdtemp, open, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';

const run = promisify(execFile);

/** Bytes of `path` in the page cache. */
export async function resident(path: string): Promise<number> {
  const { stdout } = await run('fincore', ['-b', '-n', '-r', '-o', 'RES', path]);
  return Number(stdout.trim());
}

/** A new directory where O_DIRECT works: under tmpdir, else beside this file (the checkout's disk). */
export async function directDir(): Promise<string> {
  for (const base of [tmpdir(), dirname(fileURLToPath(import.meta.url))]) {
    const d = await mkdtemp(join(base, 'dfs-direct-'));
    try {
      await (await open(join(d, 'probe'), constants.O_CREAT | constants.O_WRONLY | constants.O_DIRECT)).close();
      await rm(join(d, 'probe'));
      return d;
    } catch {
      await rm(d, { recursive: true, force: true });
    }
  }
  throw new Error('no filesystem here takes O_DIRECT');
}

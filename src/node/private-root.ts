// A node root is readable by the node's user only: it holds every file's bytes (content/, the
// journal, partial downloads, temp files), whatever modes those files have in the mount. Things
// are created private (modes given at creation, git with core.sharedRepository=0600, the CLI
// under a 077 umask); at start this module checks and repairs a root that was loosened (an
// older version, a careless copy or chmod), with a warning. Directories end 0700, files lose
// their group and other bits (0600; read-only packs 0400, the hook 0700).
//
// Cost: the check always covers ROOT and two levels below it (about 300 entries: the top-level
// folders, content/00..ff, meta/repo.git, meta/journal, ...). Only when something there was
// loose does it walk the whole root, chmod'ing only what is wrong: ROOT 0700 already keeps
// everything below it from other users, so a loose file deep inside a private root leaks
// nothing, and a normal start never pays for a walk of 100k content files.
import { lstat, readdir, chmod, readFile } from 'node:fs/promises';
import type { Stats } from 'node:fs';
import { join } from 'node:path';
import type { Logger } from '../util/log.js';
import { run } from '../util/exec.js';
import { gitEnv, PRIVATE_GIT_MODE } from '../meta/repo.js';

export const PRIVATE_DIR = 0o700;
export const PRIVATE_FILE = 0o600;
/** Depth (below ROOT) checked at every start. */
const SHALLOW = 2;
const PARALLEL = 8;

export interface RepairReport {
  /** Entries looked at. */
  checked: number;
  /** Entries whose mode was changed. */
  repaired: number;
  /** Entries whose mode could not be changed (not ours, gone meanwhile). */
  failed: number;
  /** True when the whole root was walked (something near the top was loose). */
  deep: boolean;
}

/** The mode an entry must have: no bits for group and other; directories exactly 0700. */
export function privateMode(st: Stats): number | null {
  const perm = st.mode & 0o7777;
  if (st.isDirectory()) return (perm & 0o777) === PRIVATE_DIR ? null : (perm & 0o7000) | PRIVATE_DIR;
  return perm & 0o077 ? perm & ~0o077 : null;
}

/** Checks the root's modes and repairs what is loose; logs one warning when it changed anything. */
export async function makeRootPrivate(root: string, log: Logger): Promise<RepairReport> {
  const r: RepairReport = { checked: 0, repaired: 0, failed: 0, deep: false };
  const examples: string[] = [];
  const fix = async (path: string, st: Stats): Promise<void> => {
    r.checked++;
    const want = privateMode(st);
    if (want === null) return;
    try {
      await chmod(path, want);
      r.repaired++;
      if (examples.length < 5) examples.push(`${path} ${(st.mode & 0o7777).toString(8)}`);
    } catch {
      r.failed++;
    }
  };
  // lstat and no descent through symlinks: chmod would follow one out of the root. A folder is
  // made private before its entries are looked at, so nobody else can swap one for a symlink
  // between our lstat and chmod.
  const walk = async (dir: string, depth: number, max: number): Promise<void> => {
    let names: string[];
    try {
      names = await readdir(dir);
    } catch {
      return;
    }
    // A few stats in flight at once: a repair of 100k files is mostly waiting for the pool.
    let next = 0;
    const worker = async (): Promise<void> => {
      while (next < names.length) {
        const path = join(dir, names[next++]!);
        const st = await lstat(path).catch(() => null);
        if (!st || st.isSymbolicLink()) continue;
        await fix(path, st);
        if (st.isDirectory() && depth < max) await walk(path, depth + 1, max);
      }
    };
    await Promise.all(Array.from({ length: Math.min(PARALLEL, names.length) }, worker));
  };
  const st = await lstat(root);
  await fix(root, st);
  await walk(root, 1, SHALLOW);
  if (r.repaired || r.failed) {
    r.deep = true;
    r.checked = 1; // the deep walk looks at everything below ROOT again
    await walk(root, 1, Infinity);
  }
  await gitPrivate(join(root, 'meta', 'repo.git'), log);
  if (r.repaired || r.failed) {
    log.warn('root.modes.repaired', {
      root, repaired: r.repaired, failed: r.failed, checked: r.checked, examples,
      hint: 'the node root was readable by other users; it is private (0700, files 0600) now. Files that were copied out of it before keep their modes',
    });
  }
  return r;
}

/** Repositories made before core.sharedRepository was set get it, so git keeps them private too. */
async function gitPrivate(repo: string, log: Logger): Promise<void> {
  const config = await readFile(join(repo, 'config'), 'utf8').catch(() => null);
  if (config === null || /^\s*sharedrepository\s*=\s*0?600\s*$/im.test(config)) return;
  // Best effort: a full disk must not stop the node from starting (the modes are fixed anyway).
  const res = await run('git', [`--git-dir=${repo}`, 'config', 'core.sharedRepository', PRIVATE_GIT_MODE], { env: gitEnv(), allowFail: true });
  if (res.code !== 0) log.warn('root.git.private.failed', { repo, error: res.stderr.trim() });
}

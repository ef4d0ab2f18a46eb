// Running nodes of this machine, so a second disk can join through a local member with no token
// (reaching its 0600 control socket is the proof). One small JSON file per running node in a
// private run directory: /run/delugefs for root, $XDG_RUNTIME_DIR/delugefs for other users,
// DELUGEFS_RUN_DIR to override (tests give each simulated machine its own). Whatever answers
// through an entry is trusted with a local join, so nothing here is believed unless only this user
// (or root) could have put it there: the directory must be ours and 0700 on a path no one else can
// change, entries are regular files of ours opened without following symlinks, and the control
// socket an entry names must be ours, on such a path, and say it is the node the entry names.
// Without XDG_RUNTIME_DIR a non-root user has no private run directory: local joins are off (a
// shared fallback like $TMPDIR is what let other users plant entries), and the messages say so.
import { mkdir, readdir, writeFile, rename, unlink, lstat, open, chmod, realpath } from 'node:fs/promises';
import { constants, Stats } from 'node:fs';
import { basename, dirname, isAbsolute, join, normalize } from 'node:path';
import { controlCall } from './control-socket.js';
import { isNodeId } from './identity.js';
import type { Log } from './log.js';

export interface LocalEntry { cluster: string; nodeId: string; root: string; control: string; pid: number }

/** Where this user's registry lives, or why there is none. */
export type RunDir = { dir: string; why?: undefined } | { dir?: undefined; why: string };

/** An entry file is a few hundred bytes; anything much larger is not ours. */
const MAX_ENTRY = 64 << 10;
const ENTRY_RE = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}--[a-z2-7]{16}\.json$/;

const euid = (): number => process.geteuid?.() ?? -1;

export function runDir(env: NodeJS.ProcessEnv = process.env, uid = euid()): RunDir {
  if (env.DELUGEFS_RUN_DIR) {
    if (!isAbsolute(env.DELUGEFS_RUN_DIR)) return { why: `DELUGEFS_RUN_DIR must be an absolute path, not "${env.DELUGEFS_RUN_DIR}"` };
    return { dir: normalize(env.DELUGEFS_RUN_DIR) };
  }
  // Root's nodes (services) and root's shells must find each other: one place, whatever the session.
  if (uid === 0) return { dir: '/run/delugefs' };
  // The XDG spec: a relative XDG_RUNTIME_DIR is to be ignored.
  if (env.XDG_RUNTIME_DIR && isAbsolute(env.XDG_RUNTIME_DIR)) return { dir: join(env.XDG_RUNTIME_DIR, 'delugefs') };
  return { why: 'XDG_RUNTIME_DIR is not set (no login session), so this user has no private run directory; set DELUGEFS_RUN_DIR to a directory only you can write (mode 0700), or join with --join TOKEN' };
}

export class RegistryError extends Error {}

const octal = (m: number) => (m & 0o7777).toString(8).padStart(4, '0');
const owned = (st: Stats, uid: number) => st.uid === uid || st.uid === 0;

/**
 * Every directory from `dir` up to / must be owned by us or root and not writable by others
 * (sticky directories like /tmp, mode 1777, excepted: others cannot rename what is ours there). Then no other
 * user can swap anything below it between our checks and our use. Takes a real path (no symlinks).
 */
async function checkAncestors(dir: string, uid: number): Promise<void> {
  for (let d = dir; ; d = dirname(d)) {
    const st = await lstat(d);
    if (!st.isDirectory()) throw new RegistryError(`${d} is not a directory`);
    if (!owned(st, uid)) throw new RegistryError(`${d} belongs to uid ${st.uid}, not to you (uid ${uid}) or root`);
    if (st.mode & 0o022 && !(st.mode & 0o1000)) throw new RegistryError(`${d} is writable by other users (mode ${octal(st.mode)})`);
    if (d === dirname(d)) return;
  }
}

/**
 * The run directory itself: ours, mode 0700, a real directory, on a path only we and root control.
 * Returns it with its parents' symlinks resolved (e.g. /var/run), the path to use from then on.
 */
async function checkRunDir(given: string, uid: number): Promise<string> {
  const dir = join(await realpath(dirname(given)), basename(given));
  const st = await lstat(dir);
  const fix = `remove it or run "chmod 700 ${dir}" as its owner if you trust what is in it`;
  if (!st.isDirectory()) throw new RegistryError(`the node registry ${dir} is not a directory${st.isSymbolicLink() ? ' (a symlink)' : ''}; remove it`);
  if (st.uid !== uid) throw new RegistryError(`the node registry ${dir} belongs to uid ${st.uid}, not to you (uid ${uid}); remove it`);
  if ((st.mode & 0o7777) !== 0o700) throw new RegistryError(`the node registry ${dir} has mode ${octal(st.mode)}, not 0700; ${fix}`);
  await checkAncestors(dirname(dir), uid).catch((e: Error) => { throw new RegistryError(`the node registry ${dir} is not private: ${e.message}`); });
  return dir;
}

/** Creates the run directory (0700 whatever the umask) or checks the one that exists. */
async function ensureRunDir(dir: string, uid: number): Promise<string> {
  const made = await mkdir(dir, { recursive: true, mode: 0o700 });
  // Ours and new: the umask may have taken bits away, put them back; one that existed is only checked.
  if (made !== undefined) await chmod(dir, 0o700);
  return checkRunDir(dir, uid);
}

const fileOf = (dir: string, e: { cluster: string; nodeId: string }) => join(dir, `${e.cluster}--${e.nodeId}.json`);

/**
 * Announces a running node; the returned function takes it back. A run directory that is missing
 * or not private is logged and skipped: the node runs, only local joins through it are off.
 */
export async function registerLocal(e: LocalEntry, log: Log = () => {}): Promise<() => Promise<void>> {
  const rd = runDir();
  const uid = euid();
  if (!rd.dir) {
    log('registry_unavailable', { reason: rd.why }, 'warn');
    return async () => {};
  }
  let dir: string;
  try {
    dir = await ensureRunDir(rd.dir, uid);
  } catch (err) {
    log('registry_refused', { reason: (err as Error).message }, 'warn');
    return async () => {};
  }
  const f = fileOf(dir, e);
  const tmp = `${f}.${process.pid}.tmp`;
  try {
    await unlink(tmp).catch(() => {});
    // 'wx': O_CREAT|O_EXCL, which never follows a symlink.
    await writeFile(tmp, JSON.stringify(e) + '\n', { mode: 0o600, flag: 'wx' });
    await rename(tmp, f);
  } catch (err) {
    log('registry_failed', { file: f, error: (err as Error).message }, 'warn');
    return async () => {};
  }
  return async () => { await unlink(f).catch(() => {}); };
}

/** Reads one entry: a regular file of ours (no symlink, no FIFO), small, with every field well formed. */
async function readEntry(path: string, cluster: string, uid: number): Promise<LocalEntry> {
  let fh;
  try {
    fh = await open(path, constants.O_RDONLY | constants.O_NOFOLLOW | constants.O_NONBLOCK);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    // Linux says ELOOP, FreeBSD EMLINK for O_NOFOLLOW on a symlink.
    throw new RegistryError(code === 'ELOOP' || code === 'EMLINK' ? 'it is a symlink' : `it cannot be read (${code})`);
  }
  try {
    const st = await fh.stat();
    if (!st.isFile()) throw new RegistryError('it is not a regular file');
    if (st.uid !== uid) throw new RegistryError(`it belongs to uid ${st.uid}, not to you (uid ${uid})`);
    if (st.mode & 0o022) throw new RegistryError(`it is writable by other users (mode ${octal(st.mode)})`);
    if (st.size > MAX_ENTRY) throw new RegistryError(`it is too large (${st.size} bytes)`);
    let e: Partial<LocalEntry>;
    try {
      e = JSON.parse((await fh.readFile()).toString('utf8')) as Partial<LocalEntry>;
    } catch {
      throw new RegistryError('it is not valid JSON');
    }
    if (!e || typeof e !== 'object') throw new RegistryError('it is not an entry');
    if (e.cluster !== cluster) throw new RegistryError(`it names cluster ${JSON.stringify(e.cluster)}`);
    if (typeof e.nodeId !== 'string' || !isNodeId(e.nodeId)) throw new RegistryError('it has no valid node id');
    for (const k of ['root', 'control'] as const) {
      const v = e[k];
      if (typeof v !== 'string' || !isAbsolute(v) || normalize(v) !== v || /[\0\n]/.test(v)) throw new RegistryError(`it has no absolute ${k} path`);
    }
    if (!Number.isSafeInteger(e.pid) || e.pid! <= 0) throw new RegistryError('it has no valid pid');
    return e as LocalEntry;
  } finally {
    await fh.close();
  }
}

/**
 * The control socket of an entry, as a real path it is safe to connect to: a socket of ours whose
 * directories no other user can change (so it cannot be swapped between this check and the call).
 */
async function checkSocket(control: string, uid: number): Promise<string | undefined> {
  let real: string;
  try {
    real = await realpath(control);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined; // the node stopped without taking its entry back
    throw new RegistryError(`its control socket ${control} cannot be resolved (${(err as NodeJS.ErrnoException).code})`);
  }
  const st = await lstat(real);
  if (!st.isSocket()) throw new RegistryError(`its control socket ${real} is not a socket`);
  if (st.uid !== uid) throw new RegistryError(`its control socket ${real} belongs to uid ${st.uid}, not to you (uid ${uid})`);
  await checkAncestors(dirname(real), uid).catch((e: Error) => { throw new RegistryError(`its control socket ${real} is not private: ${e.message}`); });
  return real;
}

export interface LocalLookup {
  /** A running member of the cluster on this machine, its control path checked. */
  member?: LocalEntry;
  /** Why no member could be used (unsafe directory, refused entries), for the user. */
  problems: string[];
}

/** A running member of `cluster` on this machine that answers on its control socket. */
export async function findLocalMember(cluster: string): Promise<LocalLookup> {
  const rd = runDir();
  const uid = euid();
  if (!rd.dir) return { problems: [`local joins are off: ${rd.why}`] };
  let dir: string;
  let names: string[];
  try {
    dir = await checkRunDir(rd.dir, uid);
    names = await readdir(dir);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return { problems: [] }; // no node of ours ever ran here
    return { problems: [`${(e as Error).message}; local joins through it are refused`] };
  }
  const problems: string[] = [];
  for (const n of names.filter((x) => x.startsWith(`${cluster}--`) && ENTRY_RE.test(x)).sort()) {
    const path = join(dir, n);
    try {
      const e = await readEntry(path, cluster, uid);
      const control = await checkSocket(e.control, uid);
      if (!control) continue;
      let st: { cluster?: unknown; nodeId?: unknown };
      try {
        st = await controlCall(control, 'status', null, 3000);
      } catch {
        continue; // a node that crashed left its file; it no longer answers
      }
      if (st?.cluster !== cluster || st?.nodeId !== e.nodeId) throw new RegistryError(`its control socket answers as node ${String(st?.nodeId)} of cluster ${String(st?.cluster)}`);
      return { member: { ...e, control }, problems };
    } catch (err) {
      // Whatever cannot be checked (EACCES on a directory on the way, ...) is not used either.
      const why = err instanceof RegistryError ? err.message : `it could not be checked: ${(err as Error).message}`;
      problems.push(`ignored the registry entry ${path}: ${why}`);
    }
  }
  return { problems };
}

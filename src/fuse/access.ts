// The kernel's permission check for an open (generic_permission under default_permissions), for
// the one request where the kernel could not make it: a CREATE whose name a peer created between
// the kernel's LOOKUP and the CREATE. The kernel checked the directory, not the file it never
// saw; opening that file with the caller's flags unchecked would hand a 0600 file of another
// user to anyone who may create in its directory.
import { readFile } from 'node:fs/promises';
import { constants as fsc } from 'node:fs';
import type { Stat } from '../node/fs-api.js';
import { FsError } from '../util/errors.js';

const { O_RDONLY, O_WRONLY, O_RDWR, O_TRUNC } = fsc;
const O_ACCMODE = 3;
const MAY_READ = 4;
const MAY_WRITE = 2;

/** Who asks, as the FUSE request header says (ids in the mount's user namespace). */
export interface Caller { uid: number; gid: number; pid: number }

/** Resolves when `caller` may open `st` with `flags`; EACCES otherwise. */
export async function checkOpen(st: Stat, caller: Caller, flags: number, path: string): Promise<void> {
  const acc = flags & O_ACCMODE;
  let want = 0;
  if (acc === O_RDONLY || acc === O_RDWR) want |= MAY_READ;
  // O_TRUNC needs write permission even on a read-only open (the kernel's build_open_flags).
  if (acc === O_WRONLY || acc === O_RDWR || flags & O_TRUNC) want |= MAY_WRITE;
  // Root reads and writes anything (CAP_DAC_OVERRIDE); execute is no part of an open.
  if (caller.uid === 0) return;
  // One class decides, as in the kernel: the owner's bits for the owner even when others get more.
  const bits = caller.uid === st.uid ? (st.mode >> 6) & 7
    : caller.gid === st.gid || (await supplementaryGroups(caller.pid)).includes(st.gid) ? (st.mode >> 3) & 7
    : st.mode & 7;
  if ((bits & want) !== want) throw new FsError('EACCES', path);
}

/**
 * The caller's supplementary groups (the kernel's in_group_p also counts them), from
 * /proc/PID/status on Linux; where there is no procfs (FreeBSD without it mounted) only the
 * request's gid counts, which can refuse but never grant more than the kernel would.
 */
async function supplementaryGroups(pid: number): Promise<number[]> {
  if (!pid) return [];
  try {
    const status = await readFile(`/proc/${pid}/status`, 'utf8');
    const line = /^Groups:\s*(.*)$/m.exec(status)?.[1] ?? '';
    return line.split(/\s+/).filter(Boolean).map(Number);
  } catch {
    return [];
  }
}

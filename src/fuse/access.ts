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
const CAP_DAC_OVERRIDE = 1n << 1n;
const CAP_DAC_READ_SEARCH = 1n << 2n;

/** Who asks, as the FUSE request header says (ids in the mount's user namespace). */
export interface Caller { uid: number; gid: number; pid: number }

/** What the request header does not carry: supplementary groups and effective capabilities. */
interface Creds { groups: number[]; caps: bigint | null }

/** Resolves when `caller` may open `st` with `flags`; EACCES otherwise. */
export async function checkOpen(st: Stat, caller: Caller, flags: number, path: string): Promise<void> {
  const acc = flags & O_ACCMODE;
  let want = 0;
  if (acc === O_RDONLY || acc === O_RDWR) want |= MAY_READ;
  // O_TRUNC needs write permission even on a read-only open (the kernel's build_open_flags).
  if (acc === O_WRONLY || acc === O_RDWR || flags & O_TRUNC) want |= MAY_WRITE;
  const creds = await credsOf(caller.pid);
  // One class decides, as in the kernel: the owner's bits for the owner even when others get more.
  const bits = caller.uid === st.uid ? (st.mode >> 6) & 7
    : caller.gid === st.gid || creds.groups.includes(st.gid) ? (st.mode >> 3) & 7
    : st.mode & 7;
  if ((bits & want) === want) return;
  // Then the capabilities (root's by default): DAC_OVERRIDE reads and writes any file,
  // DAC_READ_SEARCH reads it. Without /proc to tell, uid 0 is taken to have them.
  const caps = creds.caps ?? (caller.uid === 0 ? CAP_DAC_OVERRIDE : 0n);
  if (caps & CAP_DAC_OVERRIDE || (!(want & MAY_WRITE) && caps & CAP_DAC_READ_SEARCH)) return;
  throw new FsError('EACCES', path);
}

/**
 * From /proc/PID/status on Linux (PID is the calling thread, which cannot go away while its
 * request waits for us). Where there is no procfs (FreeBSD without it mounted, a caller outside
 * our pid namespace: pid 0) only the request's ids count.
 */
async function credsOf(pid: number): Promise<Creds> {
  if (!pid) return { groups: [], caps: null };
  try {
    const status = await readFile(`/proc/${pid}/status`, 'utf8');
    const groups = (/^Groups:\s*(.*)$/m.exec(status)?.[1] ?? '').split(/\s+/).filter(Boolean).map(Number);
    const cap = /^CapEff:\s*([0-9a-f]+)$/m.exec(status)?.[1];
    return { groups, caps: cap ? BigInt(`0x${cap}`) : null };
  } catch {
    return { groups: [], caps: null };
  }
}

// One process per node root: an exclusive flock(2) on ROOT/config/lock, held by an open fd for
// the life of the process. The kernel releases it when the process dies (crash, kill -9,
// reboot), so a dead node never blocks a restart and two starts racing for a root cannot both
// win. The pid in the file is only for the error message; it is never trusted (a pid can be
// reused by an unrelated process after a reboot).
import { open as openCb, close as closeCb, ftruncate as ftruncateCb, fchmod as fchmodCb, write as writeCb, read as readCb, constants as fsc } from 'node:fs';
import { constants } from 'node:os';
import { promisify } from 'node:util';
import { loadFlock } from '../native/flock.js';

const open = promisify(openCb);
const close = promisify(closeCb);
const ftruncate = promisify(ftruncateCb);
const fchmod = promisify(fchmodCb);
const write = promisify(writeCb);
const read = promisify(readCb);
const { EWOULDBLOCK, EAGAIN } = constants.errno;

export interface LockPaths { root: string; lock: string }

/** Takes the root's lock or refuses with the holder's pid; the returned function releases it. */
export async function acquireLock(p: LockPaths): Promise<() => Promise<void>> {
  // No O_TRUNC: the file may hold the pid of the process that holds the lock. Never unlinked:
  // a lock on an unlinked inode would not exclude a process that opens the path anew.
  const fd = await open(p.lock, fsc.O_RDWR | fsc.O_CREAT | fsc.O_NOFOLLOW, 0o600);
  const rc = loadFlock().flock(fd, true, false);
  if (rc !== 0) {
    const holder = rc === -EWOULDBLOCK || rc === -EAGAIN ? await pidIn(fd) : null;
    await close(fd).catch(() => {});
    if (rc === -EWOULDBLOCK || rc === -EAGAIN) {
      throw new Error(`root ${p.root} is in use by another delugefs process (pid ${holder ?? 'unknown'}); stop that process first, or use another root`);
    }
    throw new Error(`cannot lock ${p.lock}: errno ${-rc}`);
  }
  const line = Buffer.from(`${process.pid}\n`);
  await fchmod(fd, 0o600); // a file left by an older version may be 0644
  await ftruncate(fd, 0);
  await write(fd, line, 0, line.length, 0);
  let released = false;
  return async () => {
    if (released) return;
    released = true;
    await ftruncate(fd, 0).catch(() => {});
    await close(fd).catch(() => {}); // closing the only fd of the description drops the lock
  };
}

async function pidIn(fd: number): Promise<number | null> {
  const buf = Buffer.alloc(32);
  const { bytesRead } = await read(fd, buf, 0, buf.length, 0).catch(() => ({ bytesRead: 0 }));
  const pid = Number(buf.toString('latin1', 0, bytesRead).trim());
  // The holder writes its pid just after it locked: until then the file names its predecessor.
  return Number.isInteger(pid) && pid > 0 && alive(pid) ? pid : null;
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
}

// Mounting: the kernel's FUSE device is opened and mounted (mount(2) as root, fusermount3
// otherwise, mount_fusefs on FreeBSD) and served by a Session with FuseOps. No libfuse.
import { spawn } from 'node:child_process';
import { access, readdir, stat, statfs, readFile, writeFile } from 'node:fs/promises';
import { closeSync, constants as fsc } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { constants as osc, platform } from 'node:os';
import type { FileSystem } from '../node/fs-api.js';
import type { Logger } from '../util/log.js';
import { run } from '../util/exec.js';
import { Dev, loadDev } from './dev.js';
import { FuseOps, MAX_WRITE } from './ops.js';
import { IN_HEADER, WRITE_IN_SIZE } from './proto.js';
import { Session } from './session.js';

export function fuseInstallHint(): string {
  return platform() === 'freebsd'
    ? 'load FUSE with: kldload fusefs (and fusefs_load="YES" in /boot/loader.conf)'
    : 'install FUSE with: apt-get install fuse3 (Debian/Ubuntu), then modprobe fuse';
}

/** Linux: mount(2) needs root, setuid fusermount3 works for everyone; DELUGEFS_MOUNT_VIA overrides. */
function viaFusermount3(opts: { via?: 'syscall' | 'fusermount' }): boolean {
  if (platform() !== 'linux') return false;
  return (opts.via ?? process.env.DELUGEFS_MOUNT_VIA ?? (process.getuid?.() === 0 ? 'syscall' : 'fusermount')) === 'fusermount';
}

async function onPath(cmd: string): Promise<boolean> {
  for (const dir of (process.env.PATH ?? '/usr/bin:/bin').split(':')) {
    if (await access(join(dir, cmd), fsc.X_OK).then(() => true, () => false)) return true;
  }
  return false;
}

/**
 * The FUSE device, our native part and the mount helper this user needs; a missing one
 * becomes an error that says what to do. Called before anything is touched.
 */
export async function loadFuse(opts: { via?: 'syscall' | 'fusermount' } = {}): Promise<Dev> {
  try {
    await access('/dev/fuse', fsc.R_OK | fsc.W_OK);
  } catch {
    throw new Error(`/dev/fuse is not available: ${fuseInstallHint()}`);
  }
  if (viaFusermount3(opts) && !(await onPath('fusermount3'))) throw new Error(`fusermount3 is not installed: ${fuseInstallHint()}`);
  try {
    return loadDev();
  } catch (e) {
    throw new Error(`cannot load DelugeFS's FUSE module (${(e as Error).message.split('\n')[0]}): run npm ci (it needs g++ and make)`);
  }
}

/** Mount point checks made before anything is touched. */
export async function checkMountpoint(mnt: string): Promise<void> {
  let st;
  try {
    st = await stat(mnt);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'ENOTCONN') throw new Error(`mount point ${mnt} does not exist (create an empty directory first)`);
    // A FUSE mount whose process died (crash, kill -9): clear it so the node can come back.
    await forceUnmount(mnt);
    st = await stat(mnt);
  }
  if (!st.isDirectory()) throw new Error(`mount point ${mnt} is not a directory`);
  // A FUSE mount whose process just died can still answer stat from the kernel's attribute cache
  // (for its timeout); statfs always asks the server, and a dead one says ENOTCONN.
  if ((await isMounted(mnt)) && (await statfs(mnt).then(() => false, (e: NodeJS.ErrnoException) => e.code === 'ENOTCONN'))) await forceUnmount(mnt);
  if (await isMounted(mnt)) throw new Error(`mount point ${mnt} is already in use by another mount`);
  if ((await readdir(mnt)).length) throw new Error(`mount point ${mnt} is not empty`);
}

/** The device number ("major:minor") of the mount at absolute path `abs`, or null; throws without /proc. */
async function mountedDevice(abs: string): Promise<string | null> {
  const info = await readFile('/proc/self/mountinfo', 'utf8');
  return info.split('\n').find((l) => l.split(' ')[4]?.replace(/\\040/g, ' ') === abs)?.split(' ')[2] ?? null;
}

async function isMounted(mnt: string): Promise<boolean> {
  const abs = resolve(mnt);
  try {
    return (await mountedDevice(abs)) !== null;
  } catch {
    // No /proc (FreeBSD): a mount point sits on another device than its parent.
    const [a, b] = await Promise.all([stat(abs), stat(dirname(abs))]);
    return a.dev !== b.dev;
  }
}

/** Lazy unmount with whatever the OS has: fusermount3, fusermount, or umount. */
export async function forceUnmount(mnt: string): Promise<void> {
  const tries: [string, string[]][] = platform() === 'linux'
    ? [['fusermount3', ['-uz', mnt]], ['fusermount', ['-uz', mnt]], ['umount', ['-l', mnt]]]
    : [['umount', ['-f', mnt]]];
  let last = '';
  for (const [cmd, args] of tries) {
    try {
      await run(cmd, args);
      return;
    } catch (e) {
      last = (e as Error).message;
    }
  }
  if (await isMounted(mnt).catch(() => false)) throw new Error(`cannot unmount ${mnt}: ${last}`);
}

export interface MountOptions {
  allowOther?: boolean;
  cluster: string;
  /** How to mount on Linux; see viaFusermount3. */
  via?: 'syscall' | 'fusermount';
  /** FUSE passthrough where the kernel and privileges allow it (opt-in: see fuse/passthrough.ts). */
  passthrough?: boolean;
  /** Told of every request answered (metrics). */
  onDone?: (op: number, seconds: number, errno: number) => void;
}

export interface Mounted { unmount(): Promise<void> }

const errText = (n: number) => Object.entries(osc.errno).find(([, v]) => v === n)?.[0] ?? `errno ${n}`;

function exitOf(child: ReturnType<typeof spawn>): Promise<{ code: number | null; err: string }> {
  let err = '';
  child.stderr?.on('data', (d) => (err += d));
  return new Promise((res, rej) => {
    child.on('error', rej);
    child.on('close', (code) => res({ code, err: err.trim() }));
  });
}

/** Asks setuid fusermount3 to mount; it sends the opened device back over a socket. */
async function viaFusermount(dev: Dev, mnt: string, options: string): Promise<number> {
  const pair = dev.socketpair();
  if (typeof pair === 'number') throw new Error(`socketpair failed: ${errText(-pair)}`);
  const [ours, theirs] = pair;
  try {
    const child = spawn('fusermount3', ['-o', options, '--', mnt], { stdio: ['ignore', 'ignore', 'pipe', theirs], env: { ...process.env, _FUSE_COMMFD: '3' } });
    closeSync(theirs);
    const { code, err } = await exitOf(child).catch((e) => {
      throw new Error(`cannot run fusermount3 (${(e as Error).message}): ${fuseInstallHint()}`);
    });
    if (code !== 0) throw new Error(`fusermount3 failed: ${err || `exit ${code}`}`);
    const fd = dev.recvFd(ours);
    if (fd < 0) throw new Error(`fusermount3 sent no FUSE device (${errText(-fd)})`);
    return fd;
  } finally {
    closeSync(ours);
  }
}

/**
 * The FUSE device and a way to mount it. Served before `attach` runs: FreeBSD's mount_fusefs can
 * wait for the INIT answer, which only a running session gives.
 */
async function openDevice(dev: Dev, mnt: string, opts: MountOptions): Promise<{ fd: number; attach: () => Promise<void> }> {
  // nosuid, nodev and noatime everywhere (mount(2)'s flags in devfuse.c). noatime: reads never
  // move a file's access time (a commit per read would be too dear for a replicated namespace);
  // utimensat does. Said so in the mount options, as it behaves.
  const options = ['default_permissions', ...(opts.allowOther ? ['allow_other'] : [])];
  const fsname = `delugefs:${opts.cluster}`;
  if (viaFusermount3(opts)) {
    // fusermount3 opens the device itself and mounts before handing it over.
    const fd = await viaFusermount(dev, mnt, [...options, 'noatime', `fsname=${fsname}`, 'subtype=delugefs'].join(','));
    return { fd, attach: async () => {} };
  }
  const fd = dev.open('/dev/fuse');
  if (fd < 0) throw new Error(`cannot open /dev/fuse (${errText(-fd)}): ${fuseInstallHint()}`);
  const attach = async () => {
    if (platform() === 'linux') {
      const data = [`fd=${fd}`, 'rootmode=40000', `user_id=${process.getuid!()}`, `group_id=${process.getgid!()}`, ...options].join(',');
      const r = dev.mount(fsname, resolve(mnt), 'fuse.delugefs', data);
      if (r < 0) throw new Error(`mount ${mnt} failed: ${errText(-r)}`);
    } else {
      // FreeBSD: mount_fusefs takes the open device as an inherited fd number (as libfuse does).
      const child = spawn('mount_fusefs', ['-o', [...options, 'nosuid', 'noatime'].join(','), '3', resolve(mnt)], {
        stdio: ['ignore', 'ignore', 'pipe', fd],
        env: { ...process.env, MOUNT_FUSEFS_SAFE: '1', MOUNT_FUSEFS_CALL_BY_LIB: '1' },
      });
      const { code, err } = await exitOf(child);
      if (code !== 0) throw new Error(`mount_fusefs failed: ${err || `exit ${code}`}: ${fuseInstallHint()}`);
    }
  };
  return { fd, attach };
}

/** Readahead for the mount: the kernel's 128 KiB default cuts cold sequential reads to ~0.3 GB/s. */
const READAHEAD_KB = 8192;

/**
 * Linux, root: raise the mount's readahead (its backing device's read_ahead_kb, named by the
 * mount's device number in /proc/self/mountinfo; no request to our own mount). Measured on a
 * cold 1 GiB file: 128 KiB 0.33 GB/s, 1 MiB 0.8-1.2 GB/s, 8 MiB 1.3-1.4 GB/s.
 */
async function raiseReadahead(mnt: string, log: Logger): Promise<void> {
  if (platform() !== 'linux' || process.getuid?.() !== 0) return;
  try {
    const dev = await mountedDevice(resolve(mnt));
    if (!dev) return;
    await writeFile(`/sys/class/bdi/${dev}/read_ahead_kb`, String(READAHEAD_KB));
  } catch (e) {
    log.debug('fuse.readahead_unchanged', { error: (e as Error).message });
  }
}

async function unmountPath(dev: Dev, mnt: string): Promise<void> {
  if (process.getuid?.() === 0) {
    const r = dev.unmount(resolve(mnt), false);
    if (r === 0 || r === -osc.errno.EINVAL) return; // EINVAL: not mounted any more
    if (r === -osc.errno.EBUSY && dev.unmount(resolve(mnt), true) === 0) return; // busy: detach, the kernel finishes when idle
  }
  await forceUnmount(mnt);
}

/** DELUGEFS_FUSE_SPIN_US: microseconds to poll after answering (default 150, 0 = never). */
function spinMicros(log: Logger): number {
  const raw = process.env.DELUGEFS_FUSE_SPIN_US;
  if (raw === undefined || raw === '') return 150;
  const v = Number(raw);
  if (Number.isFinite(v) && v >= 0 && v <= 100_000) return v;
  log.warn('fuse.bad_spin', { value: raw, using: 150 });
  return 150;
}

export async function mount(fs: FileSystem, mnt: string, opts: MountOptions, log: Logger): Promise<Mounted> {
  const dev = await loadFuse(opts);
  let initDone!: () => void;
  const inited = new Promise<void>((res) => (initDone = res));
  // Backing files are registered on the device fd, known once it is open (before INIT is read).
  let devFd = -1;
  const backing = platform() === 'linux' ? { open: (f: number) => dev.backingOpen(devFd, f), close: (id: number) => dev.backingClose(devFd, id) } : null;
  const ops = new FuseOps(fs, { log, onInit: () => initDone(), backing, passthrough: !!opts.passthrough });
  const via = viaFusermount3(opts) ? 'fusermount3' : platform() === 'linux' ? 'mount(2)' : 'mount_fusefs';
  const { fd, attach } = await openDevice(dev, mnt, opts);
  devFd = fd;
  const session = new Session(dev, fd, ops.handler, {
    bufferSize: IN_HEADER + WRITE_IN_SIZE + MAX_WRITE,
    concurrency: 64,
    onError: ops.onError,
    spinMicros: spinMicros(log),
    onDone: opts.onDone,
  });
  let stopping = false;
  const ended = new Promise<void>((res) => session.once('end', (err: Error | null) => {
    if (err) log.error('fuse.session_failed', { error: err.message });
    // Unmounted from outside (umount, fusermount3 -u, an aborted connection): the node goes on
    // serving its peers without a mount.
    else if (!stopping) log.warn('fuse.unmounted_outside', { mountpoint: mnt });
    res();
  }));
  session.on('reply-error', (errno: number) => log.warn('fuse.reply_failed', { errno }));
  session.on('notify-error', (error: string) => log.warn('fuse.notify_failed', { error }));
  session.start();
  try {
    await attach();
  } catch (e) {
    stopping = true;
    session.end(null);
    await session.release();
    closeSync(fd);
    throw e;
  }
  void raiseReadahead(mnt, log);
  fs.onExternalChange?.((paths, inodes) => ops.invalidate(paths, (code, payload) => session.notify(code, payload), inodes));
  const timer = setTimeout(() => initDone(), 10_000); // no INIT: the first access will tell
  await inited;
  clearTimeout(timer);
  log.info('fuse.mounted', { mountpoint: mnt, via, maxWrite: ops.maxWrite });
  let done: Promise<void> | null = null;
  return {
    unmount: () =>
      (done ??= (async () => {
        stopping = true;
        await unmountPath(dev, mnt);
        // The kernel ends the connection once the mount is gone; then the device reads ENODEV.
        await Promise.race([ended, new Promise((r) => setTimeout(r, 2000).unref())]);
        session.end(null);
        await session.release();
        closeSync(fd);
        log.info('fuse.unmounted', { mountpoint: mnt });
      })()),
  };
}

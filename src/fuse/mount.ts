// Mounting and unmounting through libfuse2 (@cocalc/fuse-native), with the options DelugeFS
// needs and clear errors when FUSE is missing on this OS.
import { createRequire } from 'node:module';
import { access, readdir, stat, readFile } from 'node:fs/promises';
import { constants as fsc } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { platform } from 'node:os';
import type { FileSystem } from '../node/fs-api.js';
import type { Logger } from '../util/log.js';
import { run } from '../util/exec.js';
import { makeOps } from './ops.js';

const require = createRequire(import.meta.url);

export function fuseInstallHint(): string {
  return platform() === 'freebsd'
    ? 'install FUSE with: pkg install fusefs-libs && kldload fusefs'
    : 'install FUSE with: apt-get install libfuse2 fuse3 (Debian/Ubuntu)';
}

/** Loads the binding; a missing libfuse or device becomes an error that says what to install. */
export async function loadFuse(): Promise<any> {
  try {
    await access('/dev/fuse', fsc.R_OK | fsc.W_OK);
  } catch {
    throw new Error(`/dev/fuse is not available: ${fuseInstallHint()}${platform() === 'linux' ? ' (and modprobe fuse)' : ''}`);
  }
  try {
    return require('@cocalc/fuse-native');
  } catch (e) {
    throw new Error(`cannot load the FUSE library (${(e as Error).message.split('\n')[0]}): ${fuseInstallHint()}`);
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
  if (await isMounted(mnt)) throw new Error(`mount point ${mnt} is already in use by another mount`);
  if ((await readdir(mnt)).length) throw new Error(`mount point ${mnt} is not empty`);
}

async function isMounted(mnt: string): Promise<boolean> {
  const abs = resolve(mnt);
  try {
    const mounts = await readFile('/proc/self/mounts', 'utf8');
    return mounts.split('\n').some((l) => l.split(' ')[1]?.replace(/\\040/g, ' ') === abs);
  } catch {
    // No /proc (FreeBSD): a mount point sits on another device than its parent.
    const [a, b] = await Promise.all([stat(abs), stat(dirname(abs))]);
    return a.dev !== b.dev;
  }
}

/** Lazy unmount with whatever the OS has: fusermount (libfuse2), fusermount3, or umount. */
export async function forceUnmount(mnt: string): Promise<void> {
  const tries: [string, string[]][] = platform() === 'linux'
    ? [['fusermount', ['-uz', mnt]], ['fusermount3', ['-uz', mnt]], ['umount', ['-l', mnt]]]
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

export interface MountOptions { allowOther?: boolean; cluster: string }

export interface Mounted { unmount(): Promise<void> }

export async function mount(fs: FileSystem, mnt: string, opts: MountOptions, log: Logger): Promise<Mounted> {
  const Fuse = await loadFuse();
  // fuse-native has no switch for these; add them to the option string it builds.
  const Base = Fuse as new (...args: any[]) => any;
  class DelugeFuse extends Base {
    _fuseOptions(): string {
      const base: string = super._fuseOptions();
      const extra = ['big_writes', 'max_write=131072', 'default_permissions', 'auto_cache', 'max_read=131072'];
      return base ? `${base},${extra.join(',')}` : `-o${extra.join(',')}`;
    }
  }
  // Its own unmount shells out to fusermount (libfuse2), which Debian's fuse3 does not ship.
  Fuse.unmount = (m: string, cb: (e: Error | null) => void) => void forceUnmount(m).then(() => cb(null), cb);
  const fuse = new DelugeFuse(mnt, makeOps(fs, log), {
    timeout: false, // ops that wait on the network must not be failed after 15 s
    allowOther: !!opts.allowOther,
    fsname: `delugefs:${opts.cluster}`,
    subtype: 'delugefs',
  });
  await new Promise<void>((res, rej) => fuse.mount((e: Error | null) => (e ? rej(new Error(`mount ${mnt} failed: ${e.message}`)) : res())));
  log.info('fuse.mounted', { mountpoint: mnt });
  let done = false;
  return {
    unmount: async () => {
      if (done) return;
      done = true;
      await new Promise<void>((res, rej) => fuse.unmount((e: Error | null) => (e ? rej(e) : res())));
      log.info('fuse.unmounted', { mountpoint: mnt });
    },
  };
}

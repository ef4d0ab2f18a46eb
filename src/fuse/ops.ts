// Translates FUSE calls into FileSystem calls: errno mapping, stat layout, nothing else.
// No Git, no sockets, no sync I/O (this process serves the mount).
import { constants } from 'node:os';
import type { FileSystem, Stat } from '../node/fs-api.js';
import { errnoOf } from '../util/errors.js';
import type { Logger } from '../util/log.js';

const S_IFREG = 0o100000;
const S_IFDIR = 0o040000;
const S_IFLNK = 0o120000;

function toErrno(e: unknown): number {
  const code = errnoOf(e);
  const n = (constants.errno as Record<string, number>)[code];
  return n ? -n : -constants.errno.EIO;
}

export function fuseStat(st: Stat) {
  const type = st.type === 'dir' ? S_IFDIR : st.type === 'symlink' ? S_IFLNK : S_IFREG;
  const mtime = new Date(st.mtime);
  return {
    mode: type | st.mode, uid: st.uid, gid: st.gid, size: st.size,
    nlink: 1, // "unknown" for directories, so tools never skip subdirectories by link count
    blksize: 4096, blocks: Math.ceil(st.size / 512),
    atime: mtime, mtime, ctime: new Date(st.ctime), dev: 0, ino: 0, rdev: 0,
  };
}

type Cb = (err: number, ...rest: any[]) => void;

export function makeOps(fs: FileSystem, log: Logger): Record<string, (...args: any[]) => void> {
  // Each op is sync or async on the node; either way errors become negative errnos.
  const wrap = (name: string, fn: (...args: any[]) => unknown, ok: (cb: Cb, v: any) => void = (cb) => cb(0)) =>
    (...args: any[]) => {
      const cb = args.pop() as Cb;
      let res: unknown;
      try {
        res = fn(...args);
      } catch (e) {
        return fail(name, args, cb, e);
      }
      if (res instanceof Promise) res.then((v) => ok(cb, v), (e) => fail(name, args, cb, e));
      else ok(cb, res);
    };
  const fail = (name: string, args: unknown[], cb: Cb, e: unknown) => {
    const errno = toErrno(e);
    if (errno === -constants.errno.EIO) log.error('fuse.error', { op: name, path: args[0], error: (e as Error)?.message });
    // read and write report their result in the first argument
    cb(errno);
  };

  return {
    init: (cb: Cb) => cb(0),
    getattr: wrap('getattr', (p: string) => fuseStat(fs.stat(p)), (cb, st) => cb(0, st)),
    fgetattr: wrap('fgetattr', (p: string) => fuseStat(fs.stat(p)), (cb, st) => cb(0, st)),
    readdir: wrap('readdir', (p: string) => fs.list(p), (cb, names) => cb(0, names)),
    access: wrap('access', (p: string) => void fs.stat(p)),
    open: wrap('open', (p: string, flags: number) => fs.open(p, flags), (cb, fh) => cb(0, fh)),
    create: wrap('create', (p: string, mode: number) => fs.create(p, mode), (cb, fh) => cb(0, fh)),
    read: wrap('read', (_p: string, fh: number, buf: Buffer, len: number, pos: number) => fs.read(fh, buf, len, pos), (cb, n) => cb(n)),
    write: wrap('write', (_p: string, fh: number, buf: Buffer, len: number, pos: number) => fs.write(fh, buf, len, pos), (cb, n) => cb(n)),
    truncate: wrap('truncate', (p: string, size: number) => fs.truncate(p, size)),
    ftruncate: wrap('ftruncate', (_p: string, fh: number, size: number) => fs.ftruncate(fh, size)),
    flush: wrap('flush', (_p: string, fh: number) => fs.flush(fh)),
    fsync: wrap('fsync', (_p: string, _datasync: boolean, fh: number) => fs.fsync(fh)),
    release: wrap('release', (_p: string, fh: number) => fs.release(fh)),
    unlink: wrap('unlink', (p: string) => fs.unlink(p)),
    mkdir: wrap('mkdir', (p: string, mode: number) => fs.mkdir(p, mode)),
    rmdir: wrap('rmdir', (p: string) => fs.rmdir(p)),
    rename: wrap('rename', (from: string, to: string) => fs.rename(from, to)),
    symlink: wrap('symlink', (target: string, p: string) => fs.symlink(target, p)),
    readlink: wrap('readlink', (p: string) => fs.readlink(p), (cb, t) => cb(0, t)),
    chmod: wrap('chmod', (p: string, mode: number) => fs.chmod(p, mode)),
    chown: wrap('chown', (p: string, uid: number, gid: number) => fs.chown(p, uid, gid)),
    utimens: wrap('utimens', (p: string, atime: Date | number, mtime: Date | number) => fs.utimens(p, +atime, +mtime)),
    link: (_a: string, _b: string, cb: Cb) => cb(-constants.errno.EPERM), // content is shared by id, not by inode
    mknod: (_p: string, _m: number, _d: number, cb: Cb) => cb(-constants.errno.EPERM),
    statfs: wrap('statfs', () => fs.statfs(), (cb, s) => cb(0, {
      bsize: s.blockSize, frsize: s.blockSize, blocks: s.blocks, bfree: s.free, bavail: s.available,
      files: s.files, ffree: s.files, favail: s.files, fsid: 0, flag: 0, namemax: 255,
    })),
  };
}

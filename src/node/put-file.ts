// `put`: creates or overwrites one small file in a running node's namespace through the node's
// own FileSystem API (as a close(2) on the mount would), for nodes that have no mount (storage
// only) and for tests and scripts. Control socket only: over SSH it would let a member write
// files in another node's name. The bytes travel base64 in one control line (1 MiB at most), so
// a put is bounded at MAX_PUT_BYTES; larger files go through a mount. On a mounted node the
// kernel may show the old attributes for its cache time (1 s), as after any change not made
// through the mount.
import { constants as fsc } from 'node:fs';
import { FsError } from '../util/errors.js';
import type { FileSystem, Stat } from './fs-api.js';
import { serve } from '../daemon/methods.js';
import { Bad, bool, int, method, obj, str } from '../daemon/methods.js';
import { localOnly } from '../cluster/control-socket.js';
import { RpcError, RpcRegistry } from '../cluster/rpc.js';
import { MAX_NAME_BYTES, splitPath } from '../meta/names.js';

export const PUT_METHOD = 'put';
export const MAX_PUT_BYTES = 512 << 10;
const MAX_PATH_BYTES = 4096;

export interface PutResult { path: string; size: number; created: boolean }

/** Why `path` cannot be put, or undefined: absolute, no empty, '.' or '..' parts, names ≤ NAME_MAX. */
export function putPathProblem(path: unknown): string | undefined {
  if (typeof path !== 'string' || !path.startsWith('/')) return 'the path must be absolute inside the namespace (start with /)';
  if (path === '/') return 'the path names the root directory, not a file';
  if (Buffer.byteLength(path) > MAX_PATH_BYTES) return `the path is longer than ${MAX_PATH_BYTES} bytes`;
  if (path.includes('\0')) return 'the path contains a NUL byte';
  for (const part of path.slice(1).split('/')) {
    if (part === '' || part === '.' || part === '..') return `the path has an empty, "." or ".." component: ${JSON.stringify(path)}`;
    if (Buffer.byteLength(part) > MAX_NAME_BYTES) return `a name in the path is longer than ${MAX_NAME_BYTES} bytes`;
  }
  return undefined;
}

function statOrNull(fs: FileSystem, path: string): Stat | null {
  try {
    return fs.stat(path);
  } catch (e) {
    if (e instanceof FsError && e.code === 'ENOENT') return null;
    throw e;
  }
}

/** Writes `data` as the whole content of `path`; `parents`: missing directories are made (0755). */
export async function putFile(fs: FileSystem, path: string, data: Buffer, o: { parents?: boolean } = {}): Promise<PutResult> {
  const why = putPathProblem(path);
  if (why) throw new FsError('EINVAL', why);
  if (data.length > MAX_PUT_BYTES) throw new FsError('EINVAL', `${data.length} bytes is more than a put takes (${MAX_PUT_BYTES})`);
  if (o.parents) {
    const parts = splitPath(path).slice(0, -1);
    for (let i = 1; i <= parts.length; i++) {
      const dir = '/' + parts.slice(0, i).join('/');
      const st = statOrNull(fs, dir);
      if (st && st.type !== 'dir') throw new FsError('ENOTDIR', dir);
      if (!st) await fs.mkdir(dir, 0o755).catch((e) => { if (statOrNull(fs, dir)?.type !== 'dir') throw e; }); // made meanwhile: fine
    }
  }
  const st = statOrNull(fs, path);
  if (st && st.type === 'dir') throw new FsError('EISDIR', path);
  if (st && st.type !== 'file') throw new FsError('EINVAL', `${path} is a ${st.type}, not a file`);
  const fh = st ? await fs.open(path, fsc.O_WRONLY | fsc.O_TRUNC) : await fs.create(path, 0o644);
  try {
    if (data.length) await fs.write(fh, data, data.length, 0);
    await fs.flush(fh); // what close(2) reports: the content stored and the entry journaled
  } finally {
    await fs.release(fh);
  }
  return { path, size: data.length, created: !st };
}

/** `put {path, data (base64), parents?}`: a small file written through the node (at most MAX_PUT_BYTES). */
export const PUT = method(PUT_METHOD, (v): { path: string; data: string; parents: boolean } => {
  const o = obj(v);
  const why = putPathProblem(o.path);
  if (why) throw new Bad(why);
  const data = o.data;
  if (typeof data !== 'string' || data.length % 4 !== 0 || !/^[A-Za-z0-9+/]*={0,2}$/.test(data)) throw new Bad('needs {"path": "/…", "data": "<base64>"}');
  if ((data.length / 4) * 3 - data.match(/=*$/)![0].length > MAX_PUT_BYTES) throw new RpcError('too_large', `a put takes at most ${MAX_PUT_BYTES} bytes; write larger files through a mount`);
  return { path: o.path as string, data, parents: o.parents === true };
}, (v): PutResult => {
  const o = obj(v, 'reply');
  return { path: str(o.path, 'path', /^\//, 8192), size: int(o.size, 'size', 0, MAX_PUT_BYTES), created: bool(o.created, 'created') };
});

/** Registers `put` for the local control socket only. */
export function registerPut(rpc: RpcRegistry, fs: FileSystem): void {
  serve(rpc, PUT, async (p, peer) => {
    localOnly(peer, PUT_METHOD);
    try {
      return await putFile(fs, p.path, Buffer.from(p.data, 'base64'), { parents: p.parents });
    } catch (e) {
      if (e instanceof FsError) throw new RpcError(e.code, e.message);
      throw e;
    }
  });
}

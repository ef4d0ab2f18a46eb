// The content store: one file per content id (BitTorrent info hash) under ROOT/content, with
// temp files under ROOT/tmp on the same filesystem so that storing is a rename. No network, no Git.
import { mkdir, open, rename, rm, stat, readdir, unlink, statfs } from 'node:fs/promises';
import { open as openCb, fsync as fsyncCb, close as closeCb, constants as fsc } from 'node:fs';
import { promisify } from 'node:util';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { ContentId, isContentId } from './metainfo.js';
import { KeyedLock } from '../util/keyed-lock.js';

const openFd = promisify(openCb);
const fsyncFd = promisify(fsyncCb);
const closeFd = promisify(closeCb);

/** fsync(2) of a file or directory by path (a directory: the names in it). */
async function syncPath(path: string): Promise<void> {
  const fd = await openFd(path, fsc.O_RDONLY);
  try {
    await fsyncFd(fd);
  } finally {
    await closeFd(fd).catch(() => {});
  }
}

export interface SpaceInfo { total: number; free: number; available: number }

export class ContentStore {
  private lock = new KeyedLock();
  private tempCounter = 0;
  private readonly session = randomBytes(4).toString('hex');
  /** Told of every id stored or removed (replication keeps its index of what this disk holds). */
  onChange: ((id: ContentId, held: boolean) => void) | null = null;

  constructor(readonly dir: string, readonly tmpDir: string) {}

  async init(): Promise<void> {
    await mkdir(this.tmpDir, { recursive: true, mode: 0o700 });
    // All 256 fan-out folders up front, so storing never needs a mkdir.
    await Promise.all(Array.from({ length: 256 }, (_, i) => mkdir(join(this.dir, i.toString(16).padStart(2, '0')), { recursive: true, mode: 0o700 })));
  }

  path(id: ContentId): string {
    return join(this.dir, id.slice(0, 2), id);
  }

  async has(id: ContentId): Promise<boolean> {
    try {
      return (await stat(this.path(id))).isFile();
    } catch {
      return false;
    }
  }

  /** A fresh temp file name; the caller creates and owns it until put() or unlink. */
  tempPath(tag = 'w'): string {
    return join(this.tmpDir, `${tag}-${process.pid}-${this.session}-${++this.tempCounter}`);
  }

  /** Moves a finished, hashed temp file into the store. Identical content is kept once. */
  put(tmpPath: string, id: ContentId): Promise<void> {
    if (!isContentId(id)) throw new Error(`not a content id: ${id}`);
    // Same id, same bytes: renaming over a stored copy changes nothing a reader could see
    // (open readers keep the inode they have), and it is one syscall.
    return this.lock.run(id, async () => {
      await rename(tmpPath, this.path(id));
      this.onChange?.(id, true);
    });
  }

  /**
   * Stores `data` as content `id` through a temp file (0600), which goes again on failure.
   * `durable`: its bytes and its name in the store reach the disk before this resolves.
   */
  async putData(id: ContentId, data: Buffer, o: { durable?: boolean } = {}): Promise<void> {
    const tmp = this.tempPath();
    try {
      const fh = await open(tmp, 'wx', 0o600);
      try {
        await fh.writeFile(data);
        if (o.durable) await fh.sync();
      } finally {
        await fh.close();
      }
      await this.put(tmp, id);
    } catch (e) {
      await unlink(tmp).catch(() => {});
      throw e;
    }
    if (o.durable) await this.sync(id, true);
  }

  /**
   * Makes stored content survive a power loss: its bytes (unless `dirOnly`: they were synced
   * before the rename) and its name in the store's folder. ENOENT when it is not stored.
   */
  async sync(id: ContentId, dirOnly = false): Promise<void> {
    if (!dirOnly) await syncPath(this.path(id));
    await syncPath(join(this.dir, id.slice(0, 2)));
  }

  /**
   * Removes content if `unused()` still says so once this id's lock is held, so a concurrent
   * put() of the same bytes is never undone. Open readers keep their fd (POSIX unlink).
   */
  remove(id: ContentId, unused: () => boolean = () => true): Promise<boolean> {
    return this.lock.run(id, async () => {
      if (!unused()) return false;
      try {
        await unlink(this.path(id));
        this.onChange?.(id, false);
        return true;
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code === 'ENOENT') return false;
        throw e;
      }
    });
  }

  /**
   * Moves stored content out of the store to `dest` (a repair turns it into a partial download
   * that keeps its good pieces). False if it is not stored.
   */
  take(id: ContentId, dest: string): Promise<boolean> {
    return this.lock.run(id, async () => {
      try {
        await rename(this.path(id), dest);
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code === 'ENOENT') return false;
        throw e;
      }
      this.onChange?.(id, false);
      return true;
    });
  }

  /** Opens content for positional reads; the raw fd stays valid even if the content is removed. */
  async openRead(id: ContentId): Promise<number> {
    // A raw fd, not a FileHandle: one closed by GC would pull an fd from under FUSE reads.
    return openFd(this.path(id), 'r');
  }

  async *list(): AsyncGenerator<ContentId> {
    let prefixes: string[];
    try {
      prefixes = await readdir(this.dir);
    } catch {
      return;
    }
    for (const p of prefixes) {
      if (!/^[0-9a-f]{2}$/.test(p)) continue;
      for (const name of await readdir(join(this.dir, p))) if (isContentId(name) && name.startsWith(p)) yield name;
    }
  }

  /** Removes temp files left by a crashed process; called before a node starts serving. */
  async cleanTemp(): Promise<number> {
    let n = 0;
    for (const name of await readdir(this.tmpDir)) {
      await rm(join(this.tmpDir, name), { force: true, recursive: true });
      n++;
    }
    return n;
  }

  async space(): Promise<SpaceInfo> {
    const s = await statfs(this.dir);
    return { total: s.blocks * s.bsize, free: s.bfree * s.bsize, available: s.bavail * s.bsize };
  }
}

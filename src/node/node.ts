// A node: one disk root holding a namespace (meta/) and a content store (content/). It
// implements the FileSystem interface that fuse/ calls; the cluster, swarm and replication
// attach to it later through the same object.
import { EventEmitter } from 'node:events';
import { constants as fsc } from 'node:fs';
import { copyFile, unlink, writeFile } from 'node:fs/promises';
import { FsError } from '../util/errors.js';
import type { Logger } from '../util/log.js';
import { ContentStore } from '../content/store.js';
import { hashBuffer, hashFile, INLINE_MAX } from '../content/hasher.js';
import { ContentId, Info, infoHash, pieceLengthFor } from '../content/metainfo.js';
import { Namespace } from '../meta/namespace.js';
import type { DirEntry, Entry, FileEntry } from '../meta/entry.js';
import { FileSystem, Space, Stat } from './fs-api.js';
import { OpenFile, fdClose, fdOpen, fdSync, fdTruncate } from './open-file.js';
import { WriteBehind } from './write-behind.js';
import { SequentialHasher } from '../content/sequential-hasher.js';
import { NodeConfig, RootPaths } from './layout.js';

/** O_ACCMODE: 3 on Linux and FreeBSD; node's fs.constants does not export it. */
const O_ACCMODE = 3;
/** libfuse's name for an unlinked file that is still open (without the hard_remove option). */
const HIDDEN_RE = /^\.fuse_hidden[0-9a-f]{16}$/;
const EMPTY_INFO: Info = { length: 0, pieceLength: pieceLengthFor(0), pieces: Buffer.alloc(0) };
const EMPTY_ID = infoHash(EMPTY_INFO);

export interface NodeOptions { paths: RootPaths; config: NodeConfig; log: Logger; create: boolean }

export class DelugeNode extends EventEmitter implements FileSystem {
  readonly store: ContentStore;
  ns!: Namespace;
  private handles = new Map<number, OpenFile>();
  private nextHandle = 1;
  private dirtyHandles = 0;
  /** Content ids being stored right now: never garbage-collected in between. */
  private pins = new Map<ContentId, number>();
  private gcQueue = new Set<ContentId>();
  /**
   * Files libfuse renamed to ".fuse_hidden..." because they were unlinked while open. They left
   * the namespace (and Git) at once; their open handles still stat and read them here.
   */
  private hidden = new Map<string, Entry>();
  /** Small content whose bytes are in the journal and on their way into the store. */
  private pendingSmall = new Map<ContentId, Buffer>();
  private smallWrites = new Set<Promise<void>>();
  private readonly uid = process.getuid?.() ?? 0;
  private readonly gid = process.getgid?.() ?? 0;

  private constructor(readonly opts: NodeOptions) {
    super();
    this.store = new ContentStore(opts.paths.content, opts.paths.tmp);
  }

  static async start(opts: NodeOptions): Promise<DelugeNode> {
    const node = new DelugeNode(opts);
    const log = opts.log;
    await node.store.init();
    const leftovers = await node.store.cleanTemp();
    if (leftovers) log.info('tmp.cleaned', { files: leftovers });
    const nsOpts = { dir: opts.paths.meta, nodeId: opts.config.nodeId, log };
    const t0 = Date.now();
    node.ns = opts.create
      ? await Namespace.create(nsOpts, node.dirEntry(0o755), `Create cluster ${opts.config.cluster}`)
      : await Namespace.open(nsOpts);
    // Small files whose bytes only the journal held when the process died.
    for (const [id, data] of node.ns.recovered) if (!(await node.store.has(id))) await node.storeSmall(id, data);
    await node.ns.finishRecovery();
    node.ns.addBarrier(() => Promise.all([...node.smallWrites]));
    log.info('namespace.loaded', { ms: Date.now() - t0, head: node.ns.head });
    node.ns.on('unreferenced', (id: ContentId) => node.gcQueue.add(id));
    node.ns.on('commit', () => void node.collectGarbage());
    await node.sweepStore();
    return node;
  }

  get nodeId(): string {
    return this.opts.config.nodeId;
  }

  // ---- attributes and directories -------------------------------------------------------

  stat(path: string): Stat {
    const e = this.ns.get(path)?.entry ?? this.hidden.get(path);
    if (!e) throw new FsError('ENOENT', path);
    const st: Stat = {
      type: e.type, mode: e.mode, uid: e.uid, gid: e.gid, mtime: e.mtime, ctime: e.ctime,
      size: e.type === 'file' ? e.info.length : e.type === 'symlink' ? Buffer.byteLength(e.target) : 4096,
    };
    if (this.dirtyHandles && e.type === 'file') {
      // A file being written shows its current size and mtime, as on a local filesystem.
      for (const h of this.handles.values()) {
        if (h.dirty && h.path === path) {
          st.size = h.size;
          st.mtime = h.mtime;
        }
      }
    }
    return st;
  }

  list(path: string): string[] {
    const n = this.ns.get(path);
    if (!n) throw new FsError('ENOENT', path);
    if (n.kind !== 'dir') throw new FsError('ENOTDIR', path);
    return [...n.children.keys()];
  }

  async mkdir(path: string, mode: number): Promise<void> {
    if (this.ns.get(path)) throw new FsError('EEXIST', path);
    await this.ns.apply({ o: 'put', p: path, e: this.dirEntry(mode) });
  }

  async rmdir(path: string): Promise<void> {
    const n = this.ns.get(path);
    if (!n) throw new FsError('ENOENT', path);
    if (n.kind !== 'dir') throw new FsError('ENOTDIR', path);
    if (path === '/') throw new FsError('EBUSY', path);
    if (n.children.size) throw new FsError('ENOTEMPTY', path);
    await this.ns.apply({ o: 'rm', p: path });
  }

  async unlink(path: string): Promise<void> {
    if (this.hidden.delete(path)) return;
    const n = this.ns.get(path);
    if (!n) throw new FsError('ENOENT', path);
    if (n.kind === 'dir') throw new FsError('EISDIR', path);
    this.detachHandles(path);
    await this.ns.apply({ o: 'rm', p: path });
  }

  async rename(from: string, to: string): Promise<void> {
    if (from === to) return;
    const hiding = HIDDEN_RE.test(to.slice(to.lastIndexOf('/') + 1)) && [...this.handles.values()].some((h) => h.path === from);
    if (hiding) {
      const e = this.ns.get(from)?.entry;
      if (!e) throw new FsError('ENOENT', from);
      this.detachHandles(from);
      this.hidden.set(to, e);
      await this.ns.apply({ o: 'rm', p: from });
      return;
    }
    const target = this.ns.get(to);
    const journaled = this.ns.apply({ o: 'mv', p: from, to }); // throws before anything changes if invalid
    if (target) this.detachHandles(to);
    for (const h of this.handles.values()) {
      if (h.path === from) h.path = to;
      else if (h.path?.startsWith(from + '/')) h.path = to + h.path.slice(from.length);
    }
    await journaled;
  }

  async symlink(target: string, path: string): Promise<void> {
    if (this.ns.get(path)) throw new FsError('EEXIST', path);
    const now = Date.now();
    await this.ns.apply({ o: 'put', p: path, e: { type: 'symlink', target, mode: 0o777, uid: this.uid, gid: this.gid, mtime: now, ctime: now, node: this.nodeId } });
  }

  readlink(path: string): string {
    const n = this.ns.get(path);
    if (!n) throw new FsError('ENOENT', path);
    if (n.entry.type !== 'symlink') throw new FsError('EINVAL', path);
    return n.entry.target;
  }

  async chmod(path: string, mode: number): Promise<void> {
    await this.setAttrs(path, (e) => ({ ...e, mode: mode & 0o7777 }));
  }

  async chown(path: string, uid: number, gid: number): Promise<void> {
    // -1 (as unsigned 32 bit from the kernel) leaves that id unchanged.
    const keep = (v: number) => v === -1 || v === 0xffffffff;
    await this.setAttrs(path, (e) => ({ ...e, uid: keep(uid) ? e.uid : uid, gid: keep(gid) ? e.gid : gid }));
  }

  async utimens(path: string, _atime: number, mtime: number): Promise<void> {
    for (const h of this.handles.values()) if (h.dirty && h.path === path) h.mtime = mtime;
    await this.setAttrs(path, (e) => ({ ...e, mtime }));
  }

  private async setAttrs(path: string, change: (e: Entry) => Entry): Promise<void> {
    const n = this.ns.get(path);
    if (!n) throw new FsError('ENOENT', path);
    await this.ns.apply({ o: 'put', p: path, e: { ...change(n.entry), ctime: Date.now(), node: this.nodeId } as Entry });
  }

  async statfs(): Promise<Space> {
    const s = await this.store.space();
    const bs = 4096;
    return { blockSize: bs, blocks: Math.floor(s.total / bs), free: Math.floor(s.free / bs), available: Math.floor(s.available / bs), files: 1 << 30 };
  }

  // ---- files ---------------------------------------------------------------------------

  private fileAt(path: string): FileEntry {
    const n = this.ns.get(path);
    if (!n) throw new FsError('ENOENT', path);
    if (n.entry.type === 'dir') throw new FsError('EISDIR', path);
    if (n.entry.type !== 'file') throw new FsError('EINVAL', path);
    return n.entry;
  }

  private handle(fh: number): OpenFile {
    const h = this.handles.get(fh);
    if (!h) throw new FsError('EBADF', String(fh));
    return h;
  }

  private async newHandle(path: string, writable: boolean, base: FileEntry): Promise<OpenFile> {
    const h = new OpenFile(this.nextHandle, path, writable, base);
    this.nextHandle = this.nextHandle >= 0x7fffffff ? 1 : this.nextHandle + 1;
    const small = this.pendingSmall.get(base.id);
    if (small) {
      h.mem = Buffer.alloc(Math.max(4096, small.length));
      small.copy(h.mem);
    } else if (base.info.length > 0) {
      try {
        h.readFd = await this.store.openRead(base.id);
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code === 'ENOENT') throw new FsError('EIO', `content of ${path} is not on this node`);
        throw e;
      }
    }
    this.handles.set(h.id, h);
    return h;
  }

  async open(path: string, flags: number): Promise<number> {
    const writable = (flags & O_ACCMODE) !== fsc.O_RDONLY;
    const h = await this.newHandle(path, writable, this.fileAt(path));
    if (writable && flags & fsc.O_TRUNC) await h.serial(() => this.resize(h, 0));
    return h.id;
  }

  async create(path: string, mode: number): Promise<number> {
    const now = Date.now();
    const entry: FileEntry = { type: 'file', info: EMPTY_INFO, id: EMPTY_ID, mode: mode & 0o7777, uid: this.uid, gid: this.gid, mtime: now, ctime: now, node: this.nodeId };
    if (this.ns.get(path)?.kind === 'dir') throw new FsError('EISDIR', path);
    // Not awaited: only files whose close() returned must survive a crash, and close() waits
    // for the journal, which keeps order.
    void this.ns.apply({ o: 'put', p: path, e: entry }).catch((e) => this.opts.log.error('journal.failed', { error: (e as Error).message }));
    return (await this.newHandle(path, true, entry)).id;
  }

  read(fh: number, buf: Buffer, len: number, pos: number): Promise<number> {
    const h = this.handle(fh);
    // Read-only handles never change their fds, so they need no ordering.
    return h.writable ? h.serial(async () => { await h.wb?.drain(); return h.read(buf, len, pos); }) : h.read(buf, len, pos);
  }

  write(fh: number, buf: Buffer, len: number, pos: number): Promise<number> {
    const h = this.handle(fh);
    if (!h.writable) throw new FsError('EBADF', 'not open for writing');
    return h.serial(async () => {
      if (h.seqEnd === pos) h.seqEnd += len;
      else this.breakSequence(h);
      if (h.tmpFd === null && pos + len <= INLINE_MAX && (await this.ensureMem(h))) {
        const mem = this.growMem(h, pos + len);
        buf.copy(mem, pos, 0, len);
      } else {
        await this.ensureTemp(h);
        await h.wb!.write(buf, len, pos);
      }
      this.markDirty(h);
      h.size = Math.max(h.size, pos + len);
      h.mtime = Date.now();
      return len;
    });
  }

  ftruncate(fh: number, size: number): Promise<void> {
    const h = this.handle(fh);
    if (!h.writable) throw new FsError('EBADF', 'not open for writing');
    return h.serial(() => this.resize(h, size));
  }

  async truncate(path: string, size: number): Promise<void> {
    const writers = [...this.handles.values()].filter((h) => h.writable && h.path === path);
    if (writers.length) {
      // Like a local inode: truncate(2) acts on what the open writers will store.
      await Promise.all(writers.map((h) => h.serial(() => this.resize(h, size))));
      return;
    }
    const h = await this.newHandle(path, true, this.fileAt(path));
    try {
      await h.serial(() => this.resize(h, size));
    } finally {
      await this.release(h.id);
    }
  }

  private async resize(h: OpenFile, size: number): Promise<void> {
    if (size === 0 && h.tmpFd === null) {
      // O_TRUNC and friends: nothing of the old version is kept, so start small and in memory.
      h.mem = Buffer.alloc(4096);
    } else if (h.tmpFd === null && size <= INLINE_MAX && (await this.ensureMem(h))) {
      const mem = this.growMem(h, size);
      if (size < h.size) mem.fill(0, size, h.size); // keep the spare capacity zeroed
    } else {
      const fd = await this.ensureTemp(h, size);
      await h.wb!.drain();
      await fdTruncate(fd, size);
    }
    if (size === 0) {
      h.seqEnd = 0; // empty again: a front-to-back rewrite can be hashed as it goes
      if (h.tmpPath) h.hasher = new SequentialHasher(h.tmpPath);
    } else if (size !== h.seqEnd) this.breakSequence(h);
    h.size = size;
    h.mtime = Date.now();
    this.markDirty(h);
  }

  private breakSequence(h: OpenFile): void {
    h.seqEnd = -1;
    h.hasher?.invalidate();
  }

  private markDirty(h: OpenFile): void {
    if (!h.dirty) this.dirtyHandles++;
    h.dirty = true;
  }

  /** Small versions are copied into memory on the first change; false if this one is too big. */
  private async ensureMem(h: OpenFile): Promise<boolean> {
    if (h.mem) return true;
    const base = h.base?.info.length ?? 0;
    if (base > INLINE_MAX) return false;
    const data = Buffer.alloc(Math.max(4096, h.size));
    if (base > 0 && h.size > 0) await h.read(data, h.size, 0);
    h.mem = data;
    return true;
  }

  private growMem(h: OpenFile, size: number): Buffer {
    let mem = h.mem!;
    if (size > mem.length) {
      const next = Buffer.alloc(Math.min(INLINE_MAX, Math.max(size, mem.length * 2)));
      mem.copy(next, 0, 0, h.size);
      h.mem = mem = next;
    }
    return mem;
  }

  /** Copy on write: the first change gives the handle a private temp copy of its version. */
  private async ensureTemp(h: OpenFile, keep = Infinity): Promise<number> {
    if (h.tmpFd !== null) return h.tmpFd;
    const tmp = this.store.tempPath();
    let have = 0;
    if (h.mem) {
      // Grown past the in-memory limit: spill to a temp file and go on there.
      await writeFile(tmp, h.mem.subarray(0, h.size));
      have = h.size;
      h.mem = null;
    } else if (h.base && h.base.info.length > 0 && keep > 0 && h.size > 0) {
      // A reflink where the filesystem can, a plain copy elsewhere.
      await copyFile(this.store.path(h.base.id), tmp, fsc.COPYFILE_FICLONE);
    }
    const fd = await fdOpen(tmp, fsc.O_RDWR | fsc.O_CREAT, 0o600);
    h.tmpPath = tmp;
    h.tmpFd = fd;
    if (h.seqEnd >= 0) {
      h.hasher = new SequentialHasher(tmp);
      h.hasher.advance(have);
    }
    h.wb = new WriteBehind(fd, (_pos, end) => { if (h.seqEnd >= 0) h.hasher?.advance(end); });
    return fd;
  }

  flush(fh: number): Promise<void> {
    const h = this.handle(fh);
    return h.serial(() => this.commitHandle(h));
  }

  fsync(fh: number): Promise<void> {
    const h = this.handle(fh);
    return h.serial(async () => {
      await this.commitHandle(h);
      if (h.readFd !== null) await fdSync(h.readFd);
      await this.ns.sync();
    });
  }

  async release(fh: number): Promise<void> {
    const h = this.handle(fh);
    await h.serial(async () => {
      try {
        await this.commitHandle(h);
      } finally {
        this.handles.delete(fh);
        if (h.dirty) this.dirtyHandles--;
        await h.closeFds();
        if (h.tmpPath) await unlink(h.tmpPath).catch(() => {});
      }
    });
  }

  /** Turns a handle's changes into stored content and a namespace entry (on close and fsync). */
  private async commitHandle(h: OpenFile): Promise<void> {
    if (!h.dirty || h.path === null) return; // clean, or unlinked while open: nothing to keep
    let info: Info;
    let inline: Buffer | undefined;
    if (h.mem) {
      // Small: the bytes ride in the journal entry (one write before close returns) and reach
      // the store in the background, before the commit that drops that journal.
      inline = Buffer.from(h.mem.subarray(0, h.size));
      info = hashBuffer(inline);
    } else {
      await h.wb!.drain();
      info = h.hasher ? await h.hasher.finish(h.size) : await hashFile(h.tmpPath!, h.size);
    }
    const id = infoHash(info);
    if (inline && inline.length > 0 && !this.pendingSmall.has(id)) {
      this.pendingSmall.set(id, inline);
      void this.storeSmall(id, inline);
    }
    this.pin(id);
    try {
      if (h.tmpPath) {
        if (info.length > 0) await this.store.put(h.tmpPath, id);
        else await unlink(h.tmpPath);
        h.tmpPath = null;
      }
      const path = h.path;
      if (path === null) return; // unlinked while hashing
      const cur = this.ns.get(path)?.entry;
      const attrs = cur && cur.type === 'file' ? cur : h.base!;
      const entry: FileEntry = { type: 'file', info, id, mode: attrs.mode, uid: attrs.uid, gid: attrs.gid, mtime: h.mtime, ctime: Date.now(), node: this.nodeId };
      // What the handle wrote is now the stored version; it reads from there (memory, or the
      // temp fd, which now names the stored file).
      if (h.readFd !== null) await fdClose(h.readFd).catch(() => {});
      h.readFd = h.tmpFd;
      h.tmpFd = null;
      h.wb = null;
      h.hasher = null;
      h.seqEnd = -1;
      h.base = entry;
      h.dirty = false;
      this.dirtyHandles--;
      try {
        await this.ns.apply({ o: 'put', p: path, e: entry, d: inline?.length ? inline : undefined });
      } catch (e) {
        // The path vanished under the writer (its directory was removed): last writer loses.
        this.opts.log.warn('write.dropped', { path, error: (e as Error).message });
        this.gcQueue.add(id);
      }
    } finally {
      this.unpin(id);
    }
  }

  /** Open handles on a path that is being removed or replaced keep their bytes but store nothing. */
  private detachHandles(path: string): void {
    for (const h of this.handles.values()) if (h.path === path || h.path?.startsWith(path + '/')) h.path = null;
  }

  private dirEntry(mode: number): DirEntry {
    const now = Date.now();
    return { type: 'dir', mode: mode & 0o7777, uid: this.uid, gid: this.gid, mtime: now, ctime: now, node: this.opts.config.nodeId };
  }

  // ---- content garbage collection -----------------------------------------------------

  private pin(id: ContentId): void {
    this.pins.set(id, (this.pins.get(id) ?? 0) + 1);
  }

  private unpin(id: ContentId): void {
    const n = (this.pins.get(id) ?? 1) - 1;
    if (n > 0) this.pins.set(id, n);
    else this.pins.delete(id);
  }

  private unused(id: ContentId): boolean {
    return !this.ns.tree.isReferenced(id) && !this.pins.has(id) && !this.pendingSmall.has(id);
  }

  /** Writes small content into the store (temp file + rename); tracked so commits can wait. */
  private storeSmall(id: ContentId, data: Buffer): Promise<void> {
    this.pin(id);
    const p = (async () => {
      const tmp = this.store.tempPath();
      await writeFile(tmp, data);
      await this.store.put(tmp, id);
    })()
      .catch((e) => this.opts.log.error('content.store.failed', { id, error: (e as Error).message }))
      .finally(() => {
        this.smallWrites.delete(p);
        if (this.pendingSmall.get(id) === data) this.pendingSmall.delete(id);
        this.unpin(id);
      });
    this.smallWrites.add(p);
    return p;
  }

  /** Runs after a commit, so the change that dropped the last reference is durable first. */
  private async collectGarbage(): Promise<void> {
    const ids = [...this.gcQueue];
    this.gcQueue.clear();
    for (const id of ids) {
      if (id === EMPTY_ID) continue;
      if (await this.store.remove(id, () => this.unused(id))) this.opts.log.debug('content.removed', { id });
    }
  }

  /** At start: content no entry references (a crash between commit and removal) is removed. */
  private async sweepStore(): Promise<void> {
    let removed = 0;
    for await (const id of this.store.list()) if (this.unused(id) && (await this.store.remove(id, () => this.unused(id)))) removed++;
    if (removed) this.opts.log.info('content.swept', { removed });
  }

  async close(): Promise<void> {
    for (const fh of [...this.handles.keys()]) await this.release(fh).catch(() => {});
    await this.ns.close();
    await this.collectGarbage();
  }
}


// A node: one disk root holding a namespace (meta/) and a content store (content/). It
// implements the FileSystem interface that fuse/ calls; open files live in files.ts, content
// retention in content-keeper.ts. The cluster, swarm and replication attach to this object.
import { EventEmitter } from 'node:events';
import { randomBytes } from 'node:crypto';
import { FsError } from '../util/errors.js';
import type { Logger } from '../util/log.js';
import { ContentStore } from '../content/store.js';
import type { ContentId, Info } from '../content/metainfo.js';
import { hashPieces } from '../content/hasher.js';
import { ReadVerifier } from './read-verify.js';
import { Namespace } from '../meta/namespace.js';
import type { DirEntry, Entry, SpecialType } from '../meta/entry.js';
import { firstLinkId } from '../meta/entry.js';
import type { Node } from '../meta/tree.js';
import { AttrTarget, FileSystem, Keep, Owner, RemoteContent, Space, Stat } from './fs-api.js';
import { NodeConfig, RootPaths } from './layout.js';
import { ContentKeeper } from './content-keeper.js';
import { makeRootPrivate } from './private-root.js';
import { EMPTY_ID, OpenFiles, Placer } from './files.js';
import { ACL_ACCESS, ACL_DEFAULT, chmodAcl, encodeAcl, inherit, isMinimal, modeOf, parseAcl } from './acl.js';

export interface NodeOptions {
  paths: RootPaths; config: NodeConfig; log: Logger; create: boolean;
  /** Stored pieces checked against their hashes before reads get them (read-verify.ts; default on). */
  verifyReads?: boolean;
}

/** Room for an entry's extended attributes, and what each takes besides its name and value (ext4-like). */
const XATTR_SPACE = 4096;
const XATTR_OVERHEAD = 16;

export class DelugeNode extends EventEmitter implements FileSystem {
  readonly store: ContentStore;
  ns!: Namespace;
  keeper!: ContentKeeper;
  private files!: OpenFiles;
  private readonly uid = process.getuid?.() ?? 0;
  private readonly gid = process.getgid?.() ?? 0;
  /** Without a caller (the root directory at --create): the user running the node. */
  private readonly owner: Owner = { uid: this.uid, gid: this.gid };

  private constructor(readonly opts: NodeOptions) {
    super();
    this.store = new ContentStore(opts.paths.content, opts.paths.tmp);
  }

  static async start(opts: NodeOptions): Promise<DelugeNode> {
    const node = new DelugeNode(opts);
    const log = opts.log;
    await makeRootPrivate(opts.paths.root, log);
    await node.store.init();
    const leftovers = await node.store.cleanTemp();
    if (leftovers) log.info('tmp.cleaned', { files: leftovers });
    const nsOpts = { dir: opts.paths.meta, nodeId: opts.config.nodeId, log };
    const t0 = Date.now();
    const ns = (node.ns = opts.create
      ? await Namespace.create(nsOpts, node.dirEntry(0o755), `Create cluster ${opts.config.cluster}`)
      : await Namespace.open(nsOpts));
    const keeper = (node.keeper = new ContentKeeper(node.store, (id) => ns.tree.isReferenced(id), log, EMPTY_ID));
    const verifier = opts.verifyReads === false ? null : (node.verifier = new ReadVerifier({
      path: (id) => node.store.path(id),
      hash: hashPieces,
      repair: (id, info, good) => {
        if (!node.repairer) return Promise.reject(new Error('no member to repair from'));
        return node.repairer(id, info, good);
      },
    }));
    node.files = new OpenFiles({ ns, store: node.store, keeper, nodeId: node.nodeId, uid: node.uid, gid: node.gid, log, remote: null, verifier });
    ns.addBarrier(() => keeper.drain());
    // Small files whose bytes only the journal held when the process died. On a full disk they
    // stay in memory (reads are served from there) and in the journal, and go into the store
    // once there is room: a start needs no free space.
    for (const [id, data] of ns.recovered) if (!(await node.store.has(id))) void keeper.storeSmall(id, data);
    await ns.finishRecovery();
    log.info('namespace.loaded', { ms: Date.now() - t0, head: ns.head });
    ns.on('unreferenced', (id: ContentId) => keeper.maybeUnused(id));
    ns.on('commit', () => void keeper.collect());
    // A commit that fails for want of space must not keep deleted files' space: once the
    // journal that holds the removals is on the disk, their content goes (a restart replays them).
    ns.on('commitFailed', (e: NodeJS.ErrnoException) => {
      if (e?.code === 'ENOSPC' || e?.code === 'EDQUOT') void ns.sync().then(() => keeper.collect(true)).catch(() => {});
    });
    const swept = await keeper.sweep(ns.listRecords('members/').size > 1);
    if (swept) log.info('content.swept', { removed: swept });
    return node;
  }

  onExternalChange(listener: (paths: string[], inodes: string[]) => void): void {
    this.ns.on('changed', (paths: string[]) => listener(paths, []));
    this.ns.on('changedInodes', (ids: string[]) => listener([], ids));
  }

  /** Lets open() read content held by peers (the swarm) instead of failing with EIO. */
  setRemote(remote: RemoteContent | null): void {
    this.files.setRemote(remote);
  }

  /** Replication's choice of disks for the content of new versions (their entries' `at`). */
  setPlacer(placer: Placer | null): void {
    this.files.setPlacer(placer);
  }

  /** Verification on read (null: --no-verify-reads), and how it repairs a bad stored copy (replication's, once it runs). */
  verifier: ReadVerifier | null = null;
  repairer: ((id: ContentId, info: Info, good: (piece: number) => boolean) => Promise<void>) | null = null;

  /** Told of the stored content readers open (replication's read cache keeps what is used). */
  setUsed(used: ((id: string) => void) | null): void {
    this.files.setUsed(used);
  }

  get nodeId(): string {
    return this.opts.config.nodeId;
  }

  // ---- attributes and directories -------------------------------------------------------

  stat(path: string): Stat {
    const n = this.ns.get(path);
    const e = n?.entry;
    if (!e) throw new FsError('ENOENT', path);
    const st: Stat = {
      type: e.type, mode: e.mode, uid: e.uid, gid: e.gid, mtime: e.mtime, ctime: e.ctime,
      size: e.type === 'file' ? e.info.length : e.type === 'symlink' ? Buffer.byteLength(e.target) : e.type === 'dir' ? 4096 : 0,
    };
    if (e.type === 'chr' || e.type === 'blk') st.rdev = e.rdev;
    if (e.atime !== undefined) st.atime = e.atime;
    if (n.kind === 'dir') st.nlink = 2 + n.subdirs;
    else if (n.rec) {
      st.nlink = n.rec.names.size;
      st.inode = n.rec.id;
    }
    // st_blocks: a sparse file's real allocation, else the size in 4 KiB blocks (ext4's); a
    // directory one block; symlinks (kept in the entry, like ext4's fast ones) and special files none.
    st.blocks = e.type === 'file' ? (e.alloc !== undefined ? Math.ceil(e.alloc / 512) : Math.ceil(st.size / 4096) * 8) : e.type === 'dir' ? 8 : 0;
    return e.type === 'file' ? this.files.overlay(path, st) : st;
  }

  fstat(fh: number): Stat {
    return this.files.fstat(fh);
  }

  list(path: string): string[] {
    const n = this.ns.get(path);
    if (!n) throw new FsError('ENOENT', path);
    if (n.kind !== 'dir') throw new FsError('ENOTDIR', path);
    return [...n.children.keys()];
  }

  async mkdir(path: string, mode: number, owner?: Owner): Promise<void> {
    if (this.ns.get(path)) throw new FsError('EEXIST', path);
    // In a setgid directory a new directory keeps S_ISGID (as on ext4), and takes its group.
    const setgid = this.setgidParent(path);
    const made = this.modeIn(path, mode, owner, true);
    const e = this.dirEntry(setgid ? made.mode | 0o2000 : made.mode, this.ownerIn(path, owner ?? this.owner));
    if (made.xattrs) e.xattrs = made.xattrs;
    await this.ns.apply({ o: 'put', p: path, e });
  }

  /**
   * The mode (and ACLs) of a new entry: from the default ACL of the directory it is made in, if
   * it has one, else the mode less the caller's umask (the kernel leaves both to the filesystem
   * once it enforces ACLs).
   */
  modeIn(path: string, mode: number, owner: Owner | undefined, isDir: boolean): { mode: number; xattrs?: Record<string, Buffer> } {
    const i = path.lastIndexOf('/');
    const dflt = this.ns.get(i <= 0 ? '/' : path.slice(0, i))?.entry.xattrs?.[ACL_DEFAULT];
    if (dflt) return inherit(dflt, mode & 0o7777, isDir);
    return { mode: mode & 0o7777 & ~(owner?.umask ?? 0) };
  }

  /** The setgid directory `path` is created in, if it is one. */
  private setgidParent(path: string): DirEntry | undefined {
    const i = path.lastIndexOf('/');
    const parent = this.ns.get(i <= 0 ? '/' : path.slice(0, i));
    return parent?.kind === 'dir' && parent.entry.mode & 0o2000 ? parent.entry : undefined;
  }

  /** Who owns a new entry: its creator, with the group of a setgid directory it is made in. */
  ownerIn(path: string, owner: Owner): Owner {
    const p = this.setgidParent(path);
    return p ? { uid: owner.uid, gid: p.gid } : owner;
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
    const n = this.ns.get(path);
    if (!n) throw new FsError('ENOENT', path);
    if (n.kind === 'dir') throw new FsError('EISDIR', path);
    let journaled: Promise<void>;
    try {
      journaled = this.ns.apply({ o: 'rm', p: path }); // throws, nothing changed, when it cannot be journaled
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code;
      if (code !== 'ENOSPC' && code !== 'EDQUOT') throw e;
      // A full disk: the content of files deleted before goes first (their removals synced), then once more.
      await this.ns.sync();
      await this.keeper.collect(true);
      if (!this.ns.get(path)) throw new FsError('ENOENT', path);
      journaled = this.ns.apply({ o: 'rm', p: path });
    }
    this.files.detach(path, this.stillLinked(n));
    await journaled;
  }

  /** The inode of a hard-linked name that is going, if other names keep it: its open handles keep writing there. */
  private stillLinked(n: Node | undefined): string | undefined {
    const rec = n?.kind === 'leaf' ? n.rec : null;
    return rec && this.ns.tree.inodes.get(rec.id) === rec && rec.names.size ? rec.id : undefined;
  }

  async rename(from: string, to: string): Promise<void> {
    if (from === to) return;
    const target = this.ns.get(to);
    const source = this.ns.get(from);
    // Two names of one file: rename(2) does nothing and succeeds.
    if (source?.kind === 'leaf' && source.rec && target?.kind === 'leaf' && target.rec === source.rec) return;
    const journaled = this.ns.apply({ o: 'mv', p: from, to }); // throws before anything changes if invalid
    if (target) this.files.detach(to, this.stillLinked(target));
    this.files.moved(from, to);
    await journaled;
  }

  async symlink(target: string, path: string, owner: Owner = this.owner): Promise<void> {
    if (this.ns.get(path)) throw new FsError('EEXIST', path);
    owner = this.ownerIn(path, owner);
    const now = Date.now();
    await this.ns.apply({ o: 'put', p: path, e: { type: 'symlink', target, mode: 0o777, uid: owner.uid, gid: owner.gid, mtime: now, ctime: now, node: this.nodeId } });
  }

  async link(from: string, to: string): Promise<void> {
    const src = this.ns.get(from);
    if (!src) throw new FsError('ENOENT', from);
    if (src.kind === 'dir') throw new FsError('EPERM', from);
    if (this.ns.get(to)) throw new FsError('EEXIST', to);
    // A first link's record id comes from the file (two nodes linking it at once agree); in the
    // unlikely case a live record has it already (that name and entry linked before, then moved
    // away and made again identical), a random one.
    const derived = src.rec ? undefined : firstLinkId(from, src.entry);
    const id = src.rec?.id ?? (derived && !this.ns.tree.inodes.has(derived) ? derived : randomBytes(16).toString('hex'));
    await this.ns.apply({ o: 'link', p: from, to, id, t: Date.now() });
    this.files.linked(from, id);
  }

  async mknod(path: string, type: SpecialType, mode: number, rdev: number, owner: Owner = this.owner): Promise<void> {
    if (this.ns.get(path)) throw new FsError('EEXIST', path);
    owner = this.ownerIn(path, owner);
    const now = Date.now();
    const dev = type === 'chr' || type === 'blk' ? rdev >>> 0 : 0;
    const made = this.modeIn(path, mode, owner, false);
    await this.ns.apply({ o: 'put', p: path, e: { type, rdev: dev, mode: made.mode, uid: owner.uid, gid: owner.gid, mtime: now, ctime: now, node: this.nodeId, ...(made.xattrs ? { xattrs: made.xattrs } : {}) } });
  }

  // ---- extended attributes -----------------------------------------------------------------

  getxattr(path: string, name: string): Buffer {
    const v = this.entryAt(path).xattrs?.[name];
    if (!v) throw new FsError('ENODATA', name);
    return v;
  }

  listxattr(path: string): string[] {
    return Object.keys(this.entryAt(path).xattrs ?? {});
  }

  /**
   * user.*, trusted.* and security.* (the kernel checks who may set which); system.* (POSIX ACLs)
   * is refused: stored but not enforced it would mislead. All of an entry's names and values fit
   * in XATTR_SPACE like ext4's one block (ENOSPC beyond, as ext4 says).
   */
  async setxattr(path: string, name: string, value: Buffer, flags: number): Promise<void> {
    if (name === ACL_ACCESS || name === ACL_DEFAULT) return this.setAcl(path, name, value);
    if (!/^(user|trusted|security)\.[^\0]+$/.test(name)) throw new FsError('EOPNOTSUPP', name);
    const e = this.entryAt(path);
    const has = !!e.xattrs?.[name];
    if (flags & 1 && has) throw new FsError('EEXIST', name);
    if (flags & 2 && !has) throw new FsError('ENODATA', name);
    const next = { ...e.xattrs, [name]: Buffer.from(value) };
    this.checkSpace(path, next);
    await this.setAttrs(path, (x) => ({ ...x, xattrs: { ...x.xattrs, [name]: Buffer.from(value) } }));
  }

  private checkSpace(path: string, xattrs: Record<string, Buffer>): void {
    let used = 0;
    for (const [k, v] of Object.entries(xattrs)) used += XATTR_OVERHEAD + Buffer.byteLength(k) + v.length;
    if (used > XATTR_SPACE) throw new FsError('ENOSPC', `extended attributes of ${path}`);
  }

  /**
   * POSIX ACLs (the kernel checks who may set them and enforces them; the mount asks for that
   * where the kernel can). An access ACL sets the mode's bits, and one that says no more than the
   * mode is not kept; a default ACL only on a directory (the kernel refuses others).
   */
  private async setAcl(path: string, name: string, value: Buffer): Promise<void> {
    let acl;
    try {
      acl = parseAcl(value);
    } catch {
      throw new FsError('EINVAL', `${name} of ${path}`);
    }
    const e = this.entryAt(path);
    if (name === ACL_DEFAULT && e.type !== 'dir') throw new FsError('EACCES', `${path} is not a directory`);
    const keep = name === ACL_DEFAULT || !isMinimal(acl);
    const xattrs = { ...e.xattrs };
    if (keep) xattrs[name] = encodeAcl(acl);
    else delete xattrs[name];
    this.checkSpace(path, xattrs);
    await this.setAttrs(path, (x) => {
      const next = { ...x.xattrs };
      if (keep) next[name] = encodeAcl(acl);
      else delete next[name];
      return { ...x, mode: name === ACL_ACCESS ? modeOf(acl, x.mode) : x.mode, xattrs: next };
    });
  }

  async removexattr(path: string, name: string): Promise<void> {
    if (!this.entryAt(path).xattrs?.[name]) throw new FsError('ENODATA', name);
    await this.setAttrs(path, (x) => {
      const rest = { ...x.xattrs };
      delete rest[name];
      return { ...x, xattrs: rest };
    });
  }

  private entryAt(path: string): Entry {
    const e = this.ns.get(path)?.entry;
    if (!e) throw new FsError('ENOENT', path);
    return e;
  }

  readlink(path: string): string {
    const n = this.ns.get(path);
    if (!n) throw new FsError('ENOENT', path);
    if (n.entry.type !== 'symlink') throw new FsError('EINVAL', path);
    return n.entry.target;
  }

  async chmod(path: AttrTarget, mode: number): Promise<void> {
    await this.setAttrs(path, (e) => {
      const acl = e.xattrs?.[ACL_ACCESS];
      // An access ACL follows the mode (its owner, mask or group, and other entries).
      const xattrs = acl ? { ...e.xattrs, [ACL_ACCESS]: encodeAcl(chmodAcl(parseAcl(acl), mode)) } : e.xattrs;
      return { ...e, mode: mode & 0o7777, ...(xattrs ? { xattrs } : {}) };
    });
  }

  async chown(path: AttrTarget, uid: number, gid: number): Promise<void> {
    // -1 (as unsigned 32 bit from the kernel) leaves that id unchanged.
    const keep = (v: number) => v === -1 || v === 0xffffffff;
    await this.setAttrs(path, (e) => ({ ...e, uid: keep(uid) ? e.uid : uid, gid: keep(gid) ? e.gid : gid }));
  }

  async utimens(path: AttrTarget, atime: number | null, mtime: number | null): Promise<void> {
    if (mtime !== null) this.files.setMtime(path, mtime);
    // An atime left alone keeps what it showed (an entry without one showed its mtime).
    await this.setAttrs(path, (e) => ({ ...e, atime: atime ?? e.atime ?? e.mtime, mtime: mtime ?? e.mtime }));
  }

  linkCount(inode: string): number {
    return this.ns.tree.inodes.get(inode)?.names.size ?? 0;
  }

  private async setAttrs(path: AttrTarget, change: (e: Entry) => Entry): Promise<void> {
    if (typeof path !== 'string') {
      // A hard-linked file by its record: every name changes; gone with its last name, nothing to keep.
      const rec = this.ns.tree.inodes.get(path.inode);
      if (!rec?.names.size) return;
      await this.ns.apply({ o: 'iput', p: path.inode, e: { ...change(rec.entry), ctime: Date.now(), node: this.nodeId } as Entry });
      return;
    }
    const n = this.ns.get(path);
    if (!n) throw new FsError('ENOENT', path);
    await this.ns.apply({ o: 'put', p: path, e: { ...change(n.entry), ctime: Date.now(), node: this.nodeId } as Entry });
  }

  /** The cluster's space as a mount reports it (replication sets it); none: this disk's own. */
  clusterSpace: ((local: { total: number; free: number; available: number }) => { total: number; free: number; available: number } | null) | null = null;

  async statfs(): Promise<Space> {
    const local = await this.store.space();
    const s = this.clusterSpace?.(local) ?? local;
    const bs = 4096;
    return { blockSize: bs, blocks: Math.floor(s.total / bs), free: Math.floor(s.free / bs), available: Math.floor(s.available / bs), files: 1 << 30 };
  }

  private dirEntry(mode: number, owner: Owner = this.owner): DirEntry {
    const now = Date.now();
    return { type: 'dir', mode: mode & 0o7777, uid: owner.uid, gid: owner.gid, mtime: now, ctime: now, node: this.nodeId };
  }

  // ---- files ---------------------------------------------------------------------------

  open(path: string, flags: number) { return this.files.open(path, flags); }
  create(path: string, mode: number, owner?: Owner) {
    const made = this.modeIn(path, mode, owner, false);
    return this.files.create(path, made.mode, this.ownerIn(path, owner ?? this.owner), made.xattrs);
  }
  read(fh: number, buf: Buffer, len: number, pos: number, signal?: AbortSignal) { return this.files.read(fh, buf, len, pos, signal); }
  write(fh: number, buf: Buffer, len: number, pos: number, keep?: Keep) { return this.files.write(fh, buf, len, pos, keep); }
  truncate(path: string, size: number) { return this.files.truncate(path, size); }
  ftruncate(fh: number, size: number) { return this.files.ftruncate(fh, size); }
  flush(fh: number) { return this.files.flush(fh); }
  fsync(fh: number) { return this.files.fsync(fh); }
  syncNamespace() { return this.ns.sync(); }
  release(fh: number) { return this.files.release(fh); }
  localContent(fh: number) { return this.files.localContent(fh); }
  fallocate(fh: number, offset: number, length: number, mode: number) { return this.files.fallocate(fh, offset, length, mode); }
  seekData(fh: number, offset: number, whence: number) { return this.files.seekData(fh, offset, whence); }
  copyRange(fhIn: number, offIn: number, fhOut: number, offOut: number, len: number) { return this.files.copyRange(fhIn, offIn, fhOut, offOut, len); }

  async close(): Promise<void> {
    await this.files.closeAll();
    await this.ns.close();
    await this.keeper.collect();
  }
}

// FUSE passthrough (Linux >= 6.9, CAP_SYS_ADMIN): a read-only open of content that is complete on
// this disk (and verified in this run, see FileSystem.localContent) is answered with the store
// file as its backing file, so the kernel reads and maps it itself, with no round trip through
// the node. The kernel's rules (fs/fuse/iomode.c) are strict, and a reply that breaks them fails
// open(2) with EIO: the opens of one inode that are not direct_io are all cached or all
// passthrough, and all passthrough opens of one inode name the same backing file. So the opens
// of every inode are counted here: an inode in passthrough takes an open that cannot share its
// backing file as direct_io naming that backing file (the only way the kernel takes it); an inode
// with cached opens gets no passthrough until they are released.
// The kernel maps such a direct_io handle onto the backing file, so beside an open passthrough
// handle: a write-only open is safe (it cannot be mapped); a read-only open of a newer version
// reads the new bytes, but a map of it shows the old ones; a read-write open is refused with
// ETXTBSY, since a shared writable map would write into the stored copy. Hence opt-in.
import { FsError } from '../util/errors.js';
import { FOPEN_DIRECT_IO, FOPEN_PASSTHROUGH } from './proto.js';
import type { Logger } from '../util/log.js';
import { constants } from 'node:os';

const E = constants.errno;

/** The connection's backing files (FUSE_DEV_IOC_BACKING_OPEN/CLOSE): an id (> 0) or -errno. */
export interface BackingFiles {
  open(fd: number): number;
  close(id: number): number;
}

/** Errors that say passthrough cannot work on this connection at all (not just for one file). */
const FOR_GOOD: Record<number, string> = { [E.EPERM]: 'EPERM: needs CAP_SYS_ADMIN', [E.ENOTTY]: 'ENOTTY: kernel before 6.9', [E.ENOSYS]: 'ENOSYS', [E.EINVAL]: 'EINVAL' };

export class Passthrough {
  /** Opens may be passthrough: negotiated at INIT and not refused since. */
  on = false;
  private readonly inodes = new Map<number, { content: string; backing: number; opens: number }>();
  private readonly cached = new Map<number, number>();
  private readonly handles = new Map<number, { ino: number; passthrough: boolean }>();

  constructor(private readonly files: BackingFiles | null, private readonly log: Logger) {}

  /** Passthrough opens and backing files now (for tests and status). */
  get counts(): { opens: number; backing: number } {
    let opens = 0;
    for (const e of this.inodes.values()) opens += e.opens;
    return { opens, backing: this.inodes.size };
  }

  /**
   * The open flags and backing id for a new handle of inode `ino`. `flags`: what the open would
   * be without passthrough (direct_io is neutral and stays as it is); `local`: the handle's
   * content, complete and verified on this disk (read-only handles only), else null; `mode`:
   * how the handle was opened. Throws ETXTBSY for a read-write open beside passthrough handles.
   */
  open(ino: number, fh: number, flags: number, local: { fd: number; content: string } | null, mode: 'r' | 'w' | 'rw' = 'r'): { flags: number; backing: number } {
    const cur = this.inodes.get(ino);
    if (cur && (flags & FOPEN_DIRECT_IO || !local || local.content !== cur.content)) {
      // The kernel takes another open of an inode in passthrough only as direct_io naming the
      // same backing file: reads and writes go through the node, maps go to the backing file.
      if (mode === 'rw') throw new FsError('ETXTBSY', `inode ${ino} is open for passthrough reading; a read-write map would write into the stored copy`);
      cur.opens++;
      this.handles.set(fh, { ino, passthrough: true });
      return { flags: FOPEN_DIRECT_IO | FOPEN_PASSTHROUGH, backing: cur.backing };
    }
    if (flags & FOPEN_DIRECT_IO) return { flags, backing: 0 };
    if (local && this.on && this.files && !this.cached.get(ino) && (!cur || cur.content === local.content)) {
      let e = cur;
      if (!e) {
        const id = this.files.open(local.fd);
        if (id > 0) this.inodes.set(ino, (e = { content: local.content, backing: id, opens: 0 }));
        else this.refused(-id);
      }
      if (e) {
        e.opens++;
        this.handles.set(fh, { ino, passthrough: true });
        return { flags: FOPEN_PASSTHROUGH, backing: e.backing };
      }
    }
    if (this.inodes.has(ino)) return { flags: FOPEN_DIRECT_IO, backing: 0 };
    this.cached.set(ino, (this.cached.get(ino) ?? 0) + 1);
    this.handles.set(fh, { ino, passthrough: false });
    return { flags, backing: 0 };
  }

  /** The kernel released handle `fh` (it left the inode's io mode before telling us). */
  release(fh: number): void {
    const h = this.handles.get(fh);
    if (!h) return;
    this.handles.delete(fh);
    if (!h.passthrough) {
      const n = (this.cached.get(h.ino) ?? 1) - 1;
      if (n > 0) this.cached.set(h.ino, n);
      else this.cached.delete(h.ino);
      return;
    }
    const e = this.inodes.get(h.ino);
    if (!e || --e.opens > 0) return;
    this.inodes.delete(h.ino);
    const r = this.files!.close(e.backing);
    if (r < 0) this.log.warn('fuse.backing_close_failed', { ino: h.ino, errno: -r });
  }

  private refused(errno: number): void {
    const why = FOR_GOOD[errno];
    if (why) {
      this.on = false;
      this.log.info('fuse.passthrough', { on: false, why: `the kernel refused a backing file (${why}); reads go through the node` });
    } else {
      this.log.warn('fuse.backing_open_failed', { errno, why: 'this open goes through the node' });
    }
  }
}

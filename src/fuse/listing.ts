// Directory listings: the names of a directory as of opendir (so offsets stay stable while it
// changes), handed out in batches as READDIR or READDIRPLUS entries. Attributes are taken per
// batch, so opening a huge directory costs one copy of its names.
import type { FileSystem, Stat } from '../node/fs-api.js';
import { FsError } from '../util/errors.js';
import { joinPath } from '../meta/names.js';
import type { Inodes } from './inodes.js';
import { Attr, DT_BLK, DT_CHR, DT_DIR, DT_FIFO, DT_LNK, DT_REG, DT_SOCK, ENTRY_OUT_SIZE, entryOut, putDirent } from './proto.js';

const DT_OF: Record<Stat['type'], number> = { file: DT_REG, dir: DT_DIR, symlink: DT_LNK, fifo: DT_FIFO, socket: DT_SOCK, chr: DT_CHR, blk: DT_BLK };

/** What libfuse puts in d_ino for inodes it does not know. */
const UNKNOWN_INO = 0xffffffff;

export class Listings {
  private open_ = new Map<number, string[]>();
  private next = 1;

  constructor(
    private readonly fs: FileSystem,
    private readonly inodes: Inodes,
    private readonly attr: (ino: number, st: Stat) => Attr,
    private readonly ttl: number,
  ) {}

  open(path: string): number {
    const fh = this.next++;
    this.open_.set(fh, ['.', '..', ...this.fs.list(path)]);
    return fh;
  }

  release(fh: number): void {
    this.open_.delete(fh);
  }

  /**
   * Entries from `offset` that fit in `size` bytes. With `plus` each carries its attributes and
   * counts as a lookup (. and .. carry a zeroed entry: none, and no count), so `ls -l` needs no
   * lookup per name.
   */
  read(fh: number, dirId: number, dir: string, offset: number, size: number, plus: boolean): Buffer {
    const names = this.open_.get(fh);
    if (!names) throw new FsError('EBADF');
    const out = Buffer.alloc(size);
    let used = 0;
    for (let i = offset; i < names.length; i++) {
      const name = Buffer.from(names[i]);
      const path = joinPath(dir, names[i]);
      const head = plus ? ENTRY_OUT_SIZE : 0;
      if (used + head + ((24 + name.length + 7) & ~7) > out.length) break;
      let st: Stat | null = null;
      if (i > 1) {
        try {
          st = this.fs.stat(path);
        } catch {
          continue; // gone since opendir
        }
      }
      const type = st ? DT_OF[st.type] : DT_DIR;
      let ino = i === 0 ? dirId : (st && this.inodes.idOf(path)) || UNKNOWN_INO;
      if (plus && st) {
        // Counted only now that it is certain to be in the reply.
        const node = this.inodes.lookup(path, st.type, st.inode);
        ino = node.id;
        entryOut(node.id, this.attr(node.id, st), this.ttl, this.ttl, out, used);
      }
      used += head + putDirent(out, used + head, ino, i + 1, type, name);
    }
    return out.subarray(0, used);
  }
}

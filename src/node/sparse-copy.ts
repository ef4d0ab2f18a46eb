// Copies a stored file that has holes into a handle's temp file with the holes kept (copy on
// write of a sparse file): only its data runs, found with SEEK_DATA/SEEK_HOLE, are read and
// written, and the size is set at the end. Files without holes are left to copyFile (a reflink
// or the kernel's own copy), which is faster.
import { constants as fsc } from 'node:fs';
import { loadFileOps } from '../native/fileops.js';
import { fdClose, fdOpen, fdRead, fdTruncate, fdWrite } from './open-file.js';

const SEEK_DATA = 3, SEEK_HOLE = 4;
const CHUNK = 1 << 20;

/** True when `src` had holes and was copied to `dst` (created, 0600); false when it has none (nothing done). */
export async function copySparse(src: string, dst: string, size: number): Promise<boolean> {
  const ops = loadFileOps();
  const fd = await fdOpen(src, fsc.O_RDONLY);
  let out: number | null = null;
  try {
    const firstHole = ops.seek(fd, SEEK_HOLE, 0);
    if (firstHole < 0 || firstHole >= size) return false;
    out = await fdOpen(dst, fsc.O_WRONLY | fsc.O_CREAT | fsc.O_TRUNC, 0o600);
    const buf = Buffer.allocUnsafe(CHUNK);
    for (let at = 0; at < size; ) {
      const data = ops.seek(fd, SEEK_DATA, at);
      if (data < 0) break; // the rest is a hole (ENXIO)
      const hole = Math.min(size, Math.max(data, ops.seek(fd, SEEK_HOLE, data)));
      for (let p = data; p < hole; ) {
        const { bytesRead } = await fdRead(fd, buf, 0, Math.min(CHUNK, hole - p), p);
        if (!bytesRead) break;
        for (let w = 0; w < bytesRead; ) w += (await fdWrite(out, buf, w, bytesRead - w, p + w)).bytesWritten;
        p += bytesRead;
      }
      at = hole;
    }
    await fdTruncate(out, size);
    return true;
  } finally {
    if (out !== null) await fdClose(out).catch(() => {});
    await fdClose(fd).catch(() => {});
  }
}

// fallocate(2), SEEK_DATA/SEEK_HOLE and buffer alignment from the small native module src/native/fileops.c.
import { createRequire } from 'node:module';

export interface FileOpsModule {
  /** 0, or -errno. */
  fallocate(fd: number, mode: number, offset: number, length: number): number;
  /** The new offset, or -errno (-ENXIO: nothing of that kind past the offset). */
  seek(fd: number, whence: number, offset: number): number;
  /** The view's first byte's address modulo `alignment` (a power of two). */
  misalign(view: Uint8Array, alignment: number): number;
}

let mod: FileOpsModule | null = null;

export function loadFileOps(): FileOpsModule {
  if (!mod) mod = createRequire(import.meta.url)('../../build/Release/fileops.node') as FileOpsModule;
  return mod;
}

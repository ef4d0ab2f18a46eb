// flock(2) from the small native module src/native/flock.c (Node has no flock): a lock tied
// to an open file description, released by the kernel when the process dies.
import { createRequire } from 'node:module';

export interface FlockModule {
  /** 0, or -errno (-EWOULDBLOCK: held by another open file description and !wait). */
  flock(fd: number, exclusive: boolean, wait: boolean): number;
  unlock(fd: number): number;
}

let mod: FlockModule | null = null;

export function loadFlock(): FlockModule {
  if (!mod) mod = createRequire(import.meta.url)('../../build/Release/flock.node') as FlockModule;
  return mod;
}

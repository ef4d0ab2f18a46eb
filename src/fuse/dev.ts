// The native part of the FUSE session (native/devfuse.c): device I/O that never throws, event
// loop readiness, mount(2) and the fd hand-over from fusermount3. Built by `npm ci` (node-gyp).
import { createRequire } from 'node:module';

export interface Dev {
  /** fd or -errno */
  open(path: string): number;
  nonblock(fd: number): number;
  /** One request per call: bytes or -errno. */
  read(fd: number, buf: Buffer): number;
  /** One reply per call: bytes or -errno. */
  writev(fd: number, bufs: Buffer[]): number;
  /** Linux, root: 0 or -errno. */
  mount(source: string, target: string, type: string, data: string): number;
  unmount(target: string, lazy: boolean): number;
  /** [ours, theirs] or -errno */
  socketpair(): [number, number] | number;
  recvFd(sock: number): number;
  watch(fd: number, onReadable: (status: number) => void): object;
  resume(watcher: object, on: boolean): number;
  /** Stops watching for good; must come before the fd is closed. */
  unwatch(watcher: object): number;
  /** FUSE passthrough: registers `fd` as a backing file of the connection: its id (> 0) or -errno. */
  backingOpen(devFd: number, fd: number): number;
  /** 0 or -errno */
  backingClose(devFd: number, id: number): number;
}

let dev: Dev | null = null;

export function loadDev(): Dev {
  if (!dev) {
    const require = createRequire(import.meta.url);
    dev = require('../../build/Release/devfuse.node') as Dev;
  }
  return dev;
}

// Worker thread: writes FUSE notifications (cache invalidations) to the device. A notification
// can block in the kernel until a request holding a page or directory lock is answered, and the
// main thread must stay free to answer it; the thread pool must too (reads need it).
import { parentPort, workerData } from 'node:worker_threads';
import { writeSync } from 'node:fs';

const fd = (workerData as { fd: number }).fd;

parentPort!.on('message', (msg: Uint8Array) => {
  try {
    writeSync(fd, msg);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    // ENOENT: the kernel holds no such inode or name, nothing to drop. ENODEV: unmounted.
    if (code !== 'ENOENT' && code !== 'ENODEV') parentPort!.postMessage(code ?? 'EIO');
  }
});

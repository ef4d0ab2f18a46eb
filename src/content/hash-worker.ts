// Worker thread: SHA-1 of a run of pieces of one file. Sync reads are fine here: this thread
// serves no FUSE requests and only ever reads files under the node root, never the mount.
import { parentPort } from 'node:worker_threads';
import { openSync, readSync, closeSync } from 'node:fs';
import { createHash } from 'node:crypto';

export interface HashJob { id: number; path: string; pieceLength: number; first: number; count: number; length: number }

const READ = 4 * 1024 * 1024;
let buf = Buffer.allocUnsafe(READ);

parentPort!.on('message', (job: HashJob) => {
  try {
    const out = Buffer.allocUnsafe(job.count * 20);
    const fd = openSync(job.path, 'r');
    try {
      if (buf.length < Math.min(job.pieceLength, READ)) buf = Buffer.allocUnsafe(job.pieceLength);
      for (let i = 0; i < job.count; i++) {
        const start = (job.first + i) * job.pieceLength;
        const size = Math.min(job.pieceLength, job.length - start);
        const h = createHash('sha1');
        let done = 0;
        while (done < size) {
          const want = Math.min(buf.length, size - done);
          const n = readSync(fd, buf, 0, want, start + done);
          if (n <= 0) throw new Error(`${job.path}: file shorter than ${job.length} bytes`);
          h.update(buf.subarray(0, n));
          done += n;
        }
        h.digest().copy(out, i * 20);
      }
    } finally {
      closeSync(fd);
    }
    parentPort!.postMessage({ id: job.id, hashes: out }, [out.buffer]);
  } catch (e) {
    parentPort!.postMessage({ id: job.id, error: (e as Error).message });
  }
});

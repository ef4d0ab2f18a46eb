// Worker thread: SHA-1 of one received piece against its expected digest. The piece lives in
// shared memory, so nothing is copied or transferred.
import { parentPort } from 'node:worker_threads';
import { createHash } from 'node:crypto';

parentPort!.on('message', (m: { id: number; data: Uint8Array; expected: Uint8Array }) => {
  const digest = createHash('sha1').update(m.data).digest();
  parentPort!.postMessage({ id: m.id, ok: digest.equals(m.expected) });
});

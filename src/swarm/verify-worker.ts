// Worker thread: SHA-1 of one received piece against its expected digest. The piece buffer is
// transferred in and back, never copied.
import { parentPort } from 'node:worker_threads';
import { createHash } from 'node:crypto';

parentPort!.on('message', (m: { id: number; data: Uint8Array; expected: Uint8Array }) => {
  const digest = createHash('sha1').update(m.data).digest();
  const ok = digest.equals(m.expected);
  parentPort!.postMessage({ id: m.id, ok, data: m.data }, [m.data.buffer as ArrayBuffer]);
});

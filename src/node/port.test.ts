import { test } from 'node:test';
import assert from 'node:assert/strict';
import { connect } from 'node:net';
import { once } from 'node:events';
import { listenFirstFree } from './port.js';

test('a reserved port lets go at once even while a peer is connected to it', async () => {
  const { server, port } = await listenFirstFree(18900, '127.0.0.1');
  const peer = connect(port, '127.0.0.1');
  peer.on('error', () => {});
  await once(peer, 'connect');
  let timer: NodeJS.Timeout | undefined;
  try {
    await Promise.race([
      new Promise<void>((r) => server.close(() => r())),
      new Promise((_, reject) => { timer = setTimeout(() => reject(new Error('close() waited for the connected peer')), 5000); }),
    ]);
  } finally {
    clearTimeout(timer);
    peer.destroy();
  }
});

// The event hub on a real HTTP server: clients beyond the bound refused, heartbeats sent, events
// framed as SSE with JSON data (a newline in a value cannot end the event early), closed clients gone.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createServer, get, type IncomingMessage } from 'node:http';
import type { AddressInfo } from 'node:net';
import { SseHub } from './sse.js';
import { eventually } from '../testing/eventually.js';

test('bounded clients, heartbeat, JSON frames', async () => {
  const hub = new SseHub({ max: 2, heartbeatMs: 50 });
  const server = createServer((req, res) => {
    if (!hub.add(res, {})) res.writeHead(503).end();
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const port = (server.address() as AddressInfo).port;
  const open = () => new Promise<{ res: IncomingMessage; text: () => string }>((resolve) => {
    get({ host: '127.0.0.1', port, path: '/' }, (res) => {
      let buf = '';
      res.on('data', (c: Buffer) => (buf += c.toString()));
      res.on('error', () => {});
      resolve({ res, text: () => buf });
    });
  });
  try {
    const a = await open(), b = await open(), c = await open();
    assert.deepEqual([a.res.statusCode, b.res.statusCode, c.res.statusCode], [200, 200, 503]);
    assert.match(String(a.res.headers['content-type']), /^text\/event-stream/);
    await eventually('a heartbeat', async () => /: ping\n\n/.test(a.text()));
    hub.send('status', { name: 'two\nlines\n\nevent: fake' });
    await eventually('the event', async () => /event: status\ndata: \{"name":"two\\nlines\\n\\nevent: fake"\}\n\n/.test(b.text()));
    a.res.destroy();
    await eventually('the closed client gone', async () => hub.size === 1);
    const d = await open();
    assert.equal(d.res.statusCode, 200, 'its place is free');
  } finally {
    hub.close();
    server.closeAllConnections();
    await new Promise((r) => server.close(r));
  }
});

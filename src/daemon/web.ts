// The node's web port (`--web-port`, bound to 127.0.0.1 unless `--web-bind` says otherwise):
// today `GET /metrics` (Prometheus text format, daemon/metrics.ts); read-only, so nothing here
// needs a token. Bounded like every other listener: few connections, short timeouts, GET only.
import { createServer, type Server } from 'node:http';
import type { Logger } from '../util/log.js';

const MAX_CONNECTIONS = 32;

export interface Web {
  port: number;
  close(): Promise<void>;
}

export async function startWeb(o: { port: number; bind: string; metrics: () => Promise<string> | string; log: Logger }): Promise<Web> {
  const server: Server = createServer({ requestTimeout: 10_000, headersTimeout: 5_000 }, (req, res) => {
    const path = (req.url ?? '/').split('?')[0];
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      res.writeHead(405, { allow: 'GET, HEAD', 'content-type': 'text/plain' }).end('method not allowed\n');
      return;
    }
    if (path !== '/metrics') {
      res.writeHead(404, { 'content-type': 'text/plain' }).end('not found: try /metrics\n');
      return;
    }
    Promise.resolve()
      .then(() => o.metrics())
      .then((body) => {
        res.writeHead(200, { 'content-type': 'text/plain; version=0.0.4; charset=utf-8', 'cache-control': 'no-store' });
        res.end(req.method === 'HEAD' ? undefined : body);
      }, (e: Error) => {
        o.log.warn('web.metrics_failed', { error: e.message });
        res.writeHead(500, { 'content-type': 'text/plain' }).end('metrics failed\n');
      });
  });
  server.maxConnections = MAX_CONNECTIONS;
  server.keepAliveTimeout = 5_000;
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(o.port, o.bind, () => {
      server.off('error', reject);
      resolve();
    });
  });
  server.on('error', (e) => o.log.warn('web.server_error', { error: e.message }));
  const addr = server.address();
  const port = typeof addr === 'object' && addr ? addr.port : o.port;
  o.log.info('web.listening', { bind: o.bind, port, paths: ['/metrics'] });
  return {
    port,
    close: () => new Promise<void>((resolve) => {
      server.close(() => resolve());
      server.closeAllConnections();
    }),
  };
}

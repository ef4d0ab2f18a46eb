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

/** A scrape walks the whole namespace: one render at a time, reused for this long. */
const METRICS_TTL_MS = 2_000;
const RENDER_TIMEOUT_MS = 10_000;

export async function startWeb(o: { port: number; bind: string; metrics: () => Promise<string> | string; log: Logger }): Promise<Web> {
  let cached: { at: number; body: Promise<string> } | null = null;
  const render = (): Promise<string> => {
    if (cached && Date.now() - cached.at < METRICS_TTL_MS) return cached.body;
    let timer: NodeJS.Timeout | undefined;
    const body = Promise.race([
      Promise.resolve().then(() => o.metrics()),
      new Promise<never>((_r, rej) => { timer = setTimeout(() => rej(new Error(`no metrics within ${RENDER_TIMEOUT_MS / 1000} s`)), RENDER_TIMEOUT_MS); }),
    ]).finally(() => clearTimeout(timer));
    cached = { at: Date.now(), body };
    body.catch(() => { if (cached?.body === body) cached = null; });
    return body;
  };
  const server: Server = createServer({ requestTimeout: 10_000, headersTimeout: 5_000, connectionsCheckingInterval: 1_000 }, (req, res) => {
    const path = (req.url ?? '/').split('?')[0];
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      res.writeHead(405, { allow: 'GET, HEAD', 'content-type': 'text/plain' }).end('method not allowed\n');
      return;
    }
    if (path !== '/metrics') {
      res.writeHead(404, { 'content-type': 'text/plain' }).end('not found: try /metrics\n');
      return;
    }
    render()
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

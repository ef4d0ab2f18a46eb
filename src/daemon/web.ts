// The node's web port (`--web-port`, bound to 127.0.0.1 unless `--web-bind` says otherwise):
// `GET /metrics` (Prometheus text format, daemon/metrics.ts, no token: read-only counts) and,
// when given a dashboard, the page at `/` and its JSON and event stream under /api (src/web/).
// Every request first passes the Host check (DNS rebinding); /api needs the token. Bounded like
// every other listener: few connections, short timeouts, small requests.
import { createServer, type Server } from 'node:http';
import type { Logger } from '../util/log.js';
import { allowedHost, baseHeaders, loopbackBind, refusalLog, API_CSP } from '../web/guard.js';
import { PAGE, PAGE_CSP } from '../web/page.js';
import { SseHub } from '../web/sse.js';
import { Feed } from '../web/feed.js';
import { handleApi } from '../web/api.js';
import type { Caller } from '../web/methods.js';
import type { JoinSource } from '../web/joins.js';

const MAX_CONNECTIONS = 32;
const MAX_URL = 8192;

export interface Web {
  port: number;
  close(): Promise<void>;
}

export interface Dashboard {
  /** The node's typed methods (web/methods.ts): in process in the daemon. */
  call: Caller;
  /** ROOT/web-token (web/token.ts). */
  token: string;
  /** Pending LAN joins (cluster/join-requests.ts JoinRequests), when this node takes them. */
  joins?: JoinSource;
  /** Max SSE clients, feed period (tests). */
  maxEventClients?: number;
  feedMs?: number;
}

/** A scrape walks the whole namespace: one render at a time, reused for this long. */
const METRICS_TTL_MS = 2_000;
const RENDER_TIMEOUT_MS = 10_000;

export async function startWeb(o: { port: number; bind: string; metrics: () => Promise<string> | string; log: Logger; dashboard?: Dashboard }): Promise<Web> {
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
  const d = o.dashboard;
  const hub = d ? new SseHub({ max: d.maxEventClients }) : null;
  const feed = d && hub ? new Feed({ call: d.call, hub, joins: d.joins, log: o.log, everyMs: d.feedMs }) : null;
  const apiHeaders = baseHeaders(API_CSP);
  const refused = refusalLog(o.log);
  let port = o.port;
  const loopback = loopbackBind(o.bind);
  const server: Server = createServer({ requestTimeout: 10_000, headersTimeout: 5_000, connectionsCheckingInterval: 1_000, maxHeaderSize: 8192 }, (req, res) => {
    const text = (status: number, body: string, extra: Record<string, string> = {}) => res.writeHead(status, { ...apiHeaders, 'content-type': 'text/plain; charset=utf-8', ...extra }).end(body);
    if ((req.url ?? '').length > MAX_URL) return text(414, 'URL too long\n');
    const url = new URL(req.url ?? '/', 'http://localhost');
    const path = url.pathname;
    // Host is checked everywhere (DNS rebinding), but /metrics on an address others can reach
    // takes any Host: scrapers there name the machine, and the network sees those counts anyway.
    if ((path !== '/metrics' || loopback) && !allowedHost(req.headers.host, o.bind, port)) {
      refused('host', { host: String(req.headers.host).slice(0, 200), remote: req.socket.remoteAddress });
      return text(421, 'wrong Host: use the address the web port listens on\n');
    }
    if (feed && path.startsWith('/api/')) {
      void handleApi(req, res, url, { call: d!.call, token: d!.token, joins: d!.joins, hub: hub!, feed, log: o.log, headers: apiHeaders, refused });
      return;
    }
    if (req.method !== 'GET' && req.method !== 'HEAD') return text(405, 'method not allowed\n', { allow: 'GET, HEAD' });
    if (feed && path === '/') {
      res.writeHead(200, { ...baseHeaders(PAGE_CSP), 'content-type': 'text/html; charset=utf-8' });
      return res.end(req.method === 'HEAD' ? undefined : PAGE);
    }
    if (path !== '/metrics') return text(404, `not found: try /metrics${feed ? ' or /' : ''}\n`);
    render()
      .then((body) => {
        res.writeHead(200, { 'content-type': 'text/plain; version=0.0.4; charset=utf-8', 'cache-control': 'no-store', 'x-content-type-options': 'nosniff' });
        res.end(req.method === 'HEAD' ? undefined : body);
      }, (e: Error) => {
        o.log.warn('web.metrics_failed', { error: e.message });
        text(500, 'metrics failed\n');
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
  port = typeof addr === 'object' && addr ? addr.port : o.port;
  o.log.info('web.listening', { bind: o.bind, port, paths: feed ? ['/', '/api/', '/metrics'] : ['/metrics'] });
  return {
    port,
    close: () => new Promise<void>((resolve) => {
      feed?.close();
      hub?.close();
      server.close(() => resolve());
      server.closeAllConnections();
    }),
  };
}

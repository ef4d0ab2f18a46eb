// The dashboard's JSON endpoints under /api, each the reply of the typed method the matching CLI
// command calls (status = `delugefs status --json`, peers, conflicts, whereis), plus the file
// browser (dir_list with each file's holders), transfers, pending joins and the event stream.
// Every request here needs the token (header X-DelugeFS-Token); POSTs also a same-origin check.
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Logger } from '../util/log.js';
import type { Caller } from './methods.js';
import type { Feed } from './feed.js';
import type { SseHub } from './sse.js';
import { JOIN_CODE_RE, type JoinSource } from './joins.js';
import { sameOrigin } from './guard.js';
import { tokenMatches } from './token.js';
import { HEALTH } from '../daemon/health-method.js';
import { PEERS } from '../daemon/peers.js';
import { CONFLICTS } from '../daemon/conflicts.js';
import { DIR_LIST, MAX_DIR_PAGE } from '../daemon/dir-list.js';
import { WHEREIS } from '../replication/methods.js';

export const TOKEN_HEADER = 'x-delugefs-token';
const MAX_BODY = 1024;

export interface ApiContext {
  call: Caller;
  token: string;
  joins?: JoinSource;
  hub: SseHub;
  feed: Feed;
  log: Logger;
  headers: Record<string, string>;
  /** Logs a refused request (rate-limited: guard.ts refusalLog). */
  refused: (reason: string, fields: Record<string, unknown>) => void;
}

class HttpError extends Error {
  constructor(readonly status: number, message: string) { super(message); }
}

const intParam = (v: string | null, what: string, def: number, max: number): number => {
  if (v === null) return def;
  if (!/^\d{1,10}$/.test(v) || Number(v) > max) throw new HttpError(400, `${what} must be a whole number from 0 to ${max}`);
  return Number(v);
};

/** One page of a directory, each regular file with the disks holding it (whereis). */
async function files(call: Caller, url: URL): Promise<unknown> {
  const asked = url.searchParams.get('path') ?? '/';
  const path = asked.length > 1 ? asked.replace(/\/+$/, '') || '/' : asked;
  if (!path.startsWith('/') || path.length > 4096 || path.includes('\0')) throw new HttpError(400, 'path must be an absolute path in the cluster (e.g. /docs)');
  const offset = intParam(url.searchParams.get('offset'), 'offset', 0, 1 << 30);
  const limit = Math.max(1, intParam(url.searchParams.get('limit'), 'limit', 100, MAX_DIR_PAGE));
  const page = await call(DIR_LIST, { path, offset, limit }).catch((e: Error) => { throw new HttpError(404, e.message.replace(/^dir_list: /, '')); });
  const base = path.endsWith('/') ? path : `${path}/`;
  const regular = page.items.filter((i) => i.type === 'file').map((i) => base + i.name);
  const where = regular.length ? await call(WHEREIS, { paths: regular }) : [];
  const byPath = new Map(where.map((w) => [w.path, w]));
  return {
    ...page,
    items: page.items.map((i) => {
      const w = byPath.get(base + i.name);
      return { ...i, copies: w?.copies ?? null, holders: w ? w.holders.map((h) => ({ nodeId: h.nodeId, machine: h.machine, state: h.state, complete: h.complete, have: h.have, pieces: h.pieces })) : [] };
    }),
  };
}

async function body(req: IncomingMessage): Promise<void> {
  // Nothing here takes a body; a sender that insists is stopped at MAX_BODY.
  let size = 0;
  for await (const c of req) {
    size += (c as Buffer).length;
    if (size > MAX_BODY) throw new HttpError(413, 'request body too large');
  }
}

export async function handleApi(req: IncomingMessage, res: ServerResponse, url: URL, c: ApiContext): Promise<void> {
  const json = (status: number, v: unknown) => {
    res.writeHead(status, { ...c.headers, 'content-type': 'application/json; charset=utf-8' }).end(JSON.stringify(v));
  };
  try {
    if (!tokenMatches(req.headers[TOKEN_HEADER] as string | undefined, c.token)) {
      c.refused('token', { path: url.pathname.slice(0, 100), remote: req.socket.remoteAddress });
      throw new HttpError(401, 'missing or wrong token: open the URL "delugefs dashboard ROOT" prints');
    }
    const p = url.pathname;
    if (req.method === 'POST') {
      if (!sameOrigin(req.headers.origin, req.headers['sec-fetch-site'] as string | undefined, req.headers.host ?? '')) {
        c.refused('origin', { origin: String(req.headers.origin).slice(0, 200), remote: req.socket.remoteAddress });
        throw new HttpError(403, 'cross-origin request refused');
      }
      await body(req);
      const m = /^\/api\/joins\/([^/]+)\/(approve|refuse)$/.exec(p);
      if (!m) throw new HttpError(404, 'no such action');
      if (!c.joins) throw new HttpError(404, 'this node takes no join requests');
      // Codes are plain (JOIN_CODE_RE): nothing to decode, and anything encoded is not one.
      const code = m[1]!;
      if (!JOIN_CODE_RE.test(code)) throw new HttpError(400, 'not a join code');
      if (!c.joins.list().some((j) => j.code === code)) throw new HttpError(404, `no pending join ${code} (approved, refused or expired)`);
      if (m[2] === 'approve') {
        // Expired or decided elsewhere between the check and now: the joiner's problem, not ours.
        const r = await c.joins.approve(code).catch((e: Error) => { throw new HttpError(409, e.message); });
        c.log.info('web.join_approved', { code, nodeId: r.nodeId });
        return json(200, { approved: true, nodeId: r.nodeId });
      }
      try {
        c.joins.refuse(code);
      } catch (e) {
        throw new HttpError(409, (e as Error).message);
      }
      c.log.info('web.join_refused', { code });
      return json(200, { refused: true });
    }
    if (req.method !== 'GET') throw new HttpError(405, 'method not allowed');
    switch (p) {
      case '/api/status': return json(200, await c.call(HEALTH, null));
      case '/api/peers': return json(200, await c.call(PEERS, null));
      case '/api/conflicts': return json(200, await c.call(CONFLICTS, null));
      case '/api/transfers': return json(200, await c.feed.transfers());
      case '/api/joins': return json(200, { enabled: !!c.joins, pending: c.joins?.list() ?? [] });
      case '/api/files': return json(200, await files(c.call, url));
      case '/api/events': {
        if (!c.hub.add(res, c.headers)) throw new HttpError(503, 'too many dashboards open: close one');
        await c.feed.welcome(res).catch((e: Error) => c.log.warn('web.feed_failed', { error: e.message }));
        return;
      }
    }
    throw new HttpError(404, 'no such endpoint');
  } catch (e) {
    if (res.headersSent) return void res.end();
    if (e instanceof HttpError) return json(e.status, { error: e.message });
    c.log.warn('web.api_failed', { path: url.pathname.slice(0, 100), error: (e as Error).message });
    return json(500, { error: (e as Error).message });
  }
}

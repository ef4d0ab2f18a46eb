// What every dashboard request must pass before a handler sees it. The web port is a local
// service, so the threats are other local users (no token: they cannot read ROOT) and web pages
// in the user's own browser: DNS rebinding (a foreign name resolving to 127.0.0.1: refused by
// the Host check) and cross-site requests (refused by the Origin check, and by the token header,
// which no cross-origin page can set without a CORS preflight we never answer).
import { isIP } from 'node:net';
import type { Logger } from '../util/log.js';

/** A bind address only this machine reaches. */
export const loopbackBind = (bind: string): boolean => bind === '::1' || bind.startsWith('127.');

/** Hosts a request may name: the bound address, and loopback names when it listens there. */
export function allowedHost(hostHeader: string | undefined, bind: string, port: number): boolean {
  if (!hostHeader || hostHeader.length > 300) return false;
  const m = /^(\[[0-9a-fA-F:.]+\]|[^:[\]]+)(?::(\d{1,5}))?$/.exec(hostHeader);
  if (!m || Number(m[2] ?? 80) !== port) return false;
  const host = m[1]!.toLowerCase().replace(/^\[|\]$/g, '');
  const wildcard = bind === '0.0.0.0' || bind === '::';
  const loopback = wildcard || loopbackBind(bind);
  if (loopback && (host === 'localhost' || host === '127.0.0.1' || host === '::1')) return true;
  // Listening everywhere: any address literal of this machine; rebinding needs a name, never a literal.
  if (wildcard) return isIP(host) !== 0;
  return host === bind.toLowerCase();
}

/** Where a browser on this machine reaches a web port bound to `bind` (a Host allowedHost takes). */
export function dashboardHost(bind: string): string {
  if (bind === '0.0.0.0') return '127.0.0.1';
  if (bind === '::') return '[::1]';
  return bind.includes(':') ? `[${bind}]` : bind;
}

/**
 * A state-changing request from a browser carries Origin: it must be this page's own. Without
 * one (curl, scripts) the token alone decides; `Sec-Fetch-Site` other than same-origin is refused.
 */
export function sameOrigin(origin: string | undefined, fetchSite: string | undefined, hostHeader: string): boolean {
  if (fetchSite !== undefined && fetchSite !== 'same-origin' && fetchSite !== 'none') return false;
  if (origin === undefined) return true;
  return origin === `http://${hostHeader}`;
}

/** Headers on every answer: nothing here may be framed, sniffed, cached or fetched from elsewhere. */
export function baseHeaders(csp: string): Record<string, string> {
  return {
    'content-security-policy': csp,
    'x-content-type-options': 'nosniff',
    'x-frame-options': 'DENY',
    'referrer-policy': 'no-referrer',
    'cross-origin-opener-policy': 'same-origin',
    'cross-origin-resource-policy': 'same-origin',
    'cache-control': 'no-store',
  };
}

/** For JSON and SSE answers: no script, style or frame at all. */
export const API_CSP = "default-src 'none'; frame-ancestors 'none'";

/** `web.refused` warnings, at most one a second: a flood of bad requests must not flood the log. */
export function refusalLog(log: Logger, everyMs = 1000): (reason: string, fields: Record<string, unknown>) => void {
  let last = 0, suppressed = 0;
  return (reason, fields) => {
    const now = Date.now();
    if (now - last < everyMs) {
      suppressed++;
      return;
    }
    log.warn('web.refused', { reason, ...fields, ...(suppressed ? { suppressed } : {}) });
    last = now;
    suppressed = 0;
  };
}

// The dashboard's request checks without a server: Host (DNS rebinding), Origin, the token's
// comparison, the token file's creation and mode, and transfer rates from counters.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm, stat, writeFile, readFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { allowedHost, dashboardHost, sameOrigin } from './guard.js';
import { loadOrCreateToken, tokenMatches, TOKEN_FILE } from './token.js';
import { rates } from './feed.js';

test('Host: the bound address or, on loopback, localhost; a name resolving here is refused', () => {
  assert.ok(allowedHost('127.0.0.1:8080', '127.0.0.1', 8080));
  assert.ok(allowedHost('localhost:8080', '127.0.0.1', 8080));
  assert.ok(allowedHost('[::1]:8080', '127.0.0.1', 8080));
  assert.ok(!allowedHost('evil.example:8080', '127.0.0.1', 8080), 'DNS rebinding');
  assert.ok(!allowedHost('127.0.0.1:8081', '127.0.0.1', 8080), 'another port');
  assert.ok(!allowedHost('127.0.0.1', '127.0.0.1', 8080), 'no port is port 80');
  assert.ok(!allowedHost(undefined, '127.0.0.1', 8080));
  assert.ok(!allowedHost('127.0.0.1:8080:1', '127.0.0.1', 8080));
  assert.ok(allowedHost('10.1.2.3:80', '10.1.2.3', 80));
  assert.ok(!allowedHost('localhost:80', '10.1.2.3', 80), 'localhost is not the bound LAN address');
  assert.ok(allowedHost('192.168.1.9:80', '0.0.0.0', 80), 'wildcard: any address literal');
  assert.ok(!allowedHost('nas.local:80', '0.0.0.0', 80), 'wildcard: still no names');
});

test('the URL delugefs dashboard prints names a Host the check takes, for every kind of bind', () => {
  for (const bind of ['127.0.0.1', '0.0.0.0', '::', '::1', '10.1.2.3', 'fe80::1']) {
    const host = `${dashboardHost(bind)}:8080`;
    assert.ok(allowedHost(host, bind, 8080), `${bind} -> ${host}`);
  }
  assert.equal(dashboardHost('0.0.0.0'), '127.0.0.1');
  assert.equal(dashboardHost('::'), '[::1]');
});

test('Origin: same origin or none (a script), never another site', () => {
  assert.ok(sameOrigin('http://127.0.0.1:8080', 'same-origin', '127.0.0.1:8080'));
  assert.ok(sameOrigin(undefined, undefined, '127.0.0.1:8080'));
  assert.ok(!sameOrigin('http://evil.example', 'cross-site', '127.0.0.1:8080'));
  assert.ok(!sameOrigin('http://evil.example', undefined, '127.0.0.1:8080'));
  assert.ok(!sameOrigin(undefined, 'cross-site', '127.0.0.1:8080'));
  assert.ok(!sameOrigin('null', undefined, '127.0.0.1:8080'), 'sandboxed frames send "null"');
});

test('token: made once at 0600, kept across starts, replaced when garbage; compared whole', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'dfs-web-token-'));
  try {
    const t = await loadOrCreateToken(dir);
    assert.match(t, /^[0-9a-f]{64}$/);
    assert.equal((await stat(join(dir, TOKEN_FILE))).mode & 0o777, 0o600);
    assert.equal(await loadOrCreateToken(dir), t, 'kept');
    await writeFile(join(dir, TOKEN_FILE), 'short\n');
    const u = await loadOrCreateToken(dir);
    assert.notEqual(u, t);
    assert.equal((await readFile(join(dir, TOKEN_FILE), 'utf8')).trim(), u);
    assert.ok(tokenMatches(u, u));
    assert.ok(!tokenMatches(u.slice(0, 63), u));
    assert.ok(!tokenMatches(undefined, u));
    assert.ok(!tokenMatches('', u));
    assert.ok(!tokenMatches(u + 'x', u));
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

test('rates: bytes per second between samples, never negative', () => {
  assert.deepEqual(rates(null, { at: 1000, downloaded: 5, uploaded: 5 }), { downloadRate: 0, uploadRate: 0 });
  assert.deepEqual(rates({ at: 1000, downloaded: 0, uploaded: 100 }, { at: 3000, downloaded: 4000, uploaded: 50 }), { downloadRate: 2000, uploadRate: 0 });
});

// The web dashboard of a real running 3-node cluster (child-process nodes on loopback, no mDNS;
// node 1 mounted with --web-port): the HTTP rules without a browser (token, Host, Origin, the
// SSE bound), then the page in a real headless Chromium (Debian's chromium, playwright-core)
// checked against `delugefs status --json` and `whereis --json` of the same node, a live update
// without reload, hostile file names shown as text, and real join requests approved and refused. The screenshot
// is kept (also on failure) and its path printed.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { access, writeFile, mkdir } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { request } from 'node:http';
import { freePort } from '../testing/free-port.js';
import { sandbox, runCli, Sandbox, NodeProc } from '../testing/node-proc.js';
import { eventually } from '../testing/eventually.js';
import { callLocal } from '../daemon/methods.js';
import { INVITE } from '../node/control-methods.js';
import { PUT } from '../node/put-file.js';
import { CONFLICTS } from '../daemon/conflicts.js';
import { CONTROL_SOCKET } from '../node/cluster-node.js';
import { MAX_SSE_CLIENTS } from './sse.js';
import { Identity, fingerprintOf } from '../cluster/identity.js';
import { RpcClient } from '../cluster/rpc-client.js';
import { probeHostKey } from '../cluster/static-peers.js';
import { call } from '../daemon/methods.js';
import { JOIN_REQUEST, type JoinAnswer } from '../node/control-methods.js';

const CHROMIUM = '/usr/bin/chromium';
const HOSTILE = '<img src=x onerror="window.__pwned=1">.txt';
const SHOTS = join(tmpdir(), 'delugefs-dashboard-test');

let sb: Sandbox | undefined;
let browser: { close(): Promise<void> } | undefined;
after(async () => {
  await browser?.close().catch(() => {});
  await sb?.cleanup();
});

/** A raw request (fetch cannot set Host or Origin). */
function raw(port: number, path: string, o: { method?: string; headers?: Record<string, string> } = {}): Promise<{ status: number; body: string; headers: Record<string, unknown> }> {
  return new Promise((resolve, reject) => {
    const req = request({ host: '127.0.0.1', port, path, method: o.method ?? 'GET', headers: o.headers }, (res) => {
      let body = '';
      res.on('data', (c: Buffer) => (body += c.toString()));
      res.on('end', () => resolve({ status: res.statusCode!, body, headers: res.headers }));
    });
    req.on('error', reject);
    req.end();
  });
}

/** An open event stream: resolves with its status once headers came; `close` ends it. */
function openStream(port: number, token: string): Promise<{ status: number; close(): void; first: Promise<string> }> {
  return new Promise((resolve, reject) => {
    const req = request({ host: '127.0.0.1', port, path: '/api/events', headers: { 'x-delugefs-token': token } }, (res) => {
      const first = new Promise<string>((r) => {
        let buf = '';
        res.on('data', (c: Buffer) => {
          buf += c.toString();
          if (/event: status\n/.test(buf)) r(buf);
        });
      });
      res.on('error', () => {});
      resolve({ status: res.statusCode!, close: () => req.destroy(), first });
    });
    req.on('error', reject);
    req.end();
  });
}

/**
 * A real join request at node 1: a fresh node key asks over SSH with the `join_request` guest
 * method, as a new node on the LAN does (join-lan.ts; the whole join is lan-join.test.ts), and
 * `ask` is its next poll.
 */
async function joiner(dir: string, host: string, port: number, hostname: string): Promise<{ nodeId: string; code: string; ask: () => Promise<JoinAnswer> }> {
  await mkdir(dir, { recursive: true });
  const identity = await Identity.loadOrCreate(dir);
  const fp = fingerprintOf(await probeHostKey(host, port, 5000));
  const ask = async (): Promise<JoinAnswer> => {
    const c = new RpcClient({ identity, host, port, hostFingerprint: fp, timeoutMs: 10_000, connectTimeoutMs: 5000, log: () => {} });
    try {
      return await call(c, JOIN_REQUEST, { cluster: 'testc', hostname });
    } finally {
      c.close();
    }
  };
  const first = await ask();
  assert.equal(first.status, 'pending');
  return { nodeId: identity.nodeId, code: first.code!, ask };
}

async function chromiumOrSkip(t: { skip(msg: string): void }): Promise<typeof import('playwright-core').chromium | null> {
  const there = await access(CHROMIUM).then(() => true, () => false);
  if (!there) {
    if (process.env.CI === 'true') assert.fail(`${CHROMIUM} is missing: apt-get install chromium (.ci/run does)`);
    t.skip(`${CHROMIUM} is missing (apt-get install -y --no-install-recommends chromium); skipped outside CI`);
    return null;
  }
  return (await import('playwright-core')).chromium;
}

test('the dashboard of a 3-node cluster: HTTP rules, then the page in headless Chromium against status --json', { timeout: 300_000 }, async (t) => {
  const chromium = await chromiumOrSkip(t);
  sb = await sandbox('dfs-dash');
  const webPort = await freePort();
  const common = ['--interface', 'lo', '--audit-every', '1s', '--log-level', 'warn'];
  const n1 = await sb.start([...common, '--web-port', String(webPort)], { create: true });
  const sock1 = join(sb.root, CONTROL_SOCKET);
  const nodes: NodeProc[] = [n1];
  for (const k of [2, 3]) {
    const { token } = await callLocal(sock1, INVITE, { ttlMs: 600_000 });
    const file = join(sb.dir, `token${k}`);
    await writeFile(file, token + '\n', { mode: 0o600 });
    nodes.push(await sb.start([...common, '--join-file', file, '--peer', `127.0.0.1:${n1.ready.sshPort}`], { root: join(sb.dir, `root${k}`), mount: false }));
  }
  const ids = nodes.map((n) => String(n.ready.node));
  const cli = async (args: string[]) => {
    const r = await runCli([...args, '--json']);
    assert.equal(r.code, 0, `delugefs ${args.join(' ')}: ${r.err}`);
    return JSON.parse(r.out);
  };
  // Files through node 1's mount: two plain ones, one in a directory, one with a hostile name.
  await writeFile(join(sb.mnt, 'a.txt'), 'alpha\n'.repeat(1000));
  await mkdir(join(sb.mnt, 'docs'));
  await writeFile(join(sb.mnt, 'docs', 'b.bin'), Buffer.alloc(300_000, 7));
  await writeFile(join(sb.mnt, HOSTILE), 'x');
  // A real conflict copy: one path written on node 1 (its mount) and node 2 (put) at once.
  const sock2 = join(sb.dir, 'root2', CONTROL_SOCKET);
  for (let i = 0; ; i++) {
    await Promise.all([writeFile(join(sb.mnt, `same${i}.txt`), 'from node 1\n'), callLocal(sock2, PUT, { path: `/same${i}.txt`, data: Buffer.from('from node 2, longer\n').toString('base64'), parents: false })]);
    const made = await eventually('a conflict copy', async () => (await callLocal(sock1, CONFLICTS, null)).total > 0, 5000).catch(() => false);
    if (made) break;
    if (i === 4) assert.fail('no conflict copy after 5 concurrent writes of one path');
  }
  // Settled: three members up, every file on its copies.
  const status = await eventually('three members up and every file on its copies', async () => {
    const st = await cli(['status', sb!.root]);
    const w = await cli(['whereis', sb!.root, '/a.txt', '/docs/b.bin', `/${HOSTILE}`]);
    const placed = w.every((x: { holders: { complete: boolean }[]; copies: number }) => x.holders.filter((h) => h.complete).length >= x.copies);
    return st.nodes.members === 3 && st.nodes.up === 3 && st.disks.length === 3 && placed ? (st as Record<string, unknown>) : undefined;
  }, 90_000);
  const url = (await cli(['dashboard', sb.root])).url as string;
  assert.match(url, new RegExp(`^http://127\\.0\\.0\\.1:${webPort}/#token=[0-9a-f]{64}$`));
  const token = url.split('#token=')[1]!;
  const help = await runCli(['dashboard', '--help']);
  assert.match(help.out, /^Usage: delugefs dashboard ROOT/);
  const none = await runCli(['dashboard', join(sb.dir, 'root2')]);
  assert.equal(none.code, 1);
  assert.match(none.err, /has no web port; start it with --web-port/);

  // ---- without a browser --------------------------------------------------------------------
  const auth = { 'x-delugefs-token': token };
  assert.equal((await raw(webPort, '/api/status')).status, 401, 'no token');
  assert.equal((await raw(webPort, '/api/status', { headers: { 'x-delugefs-token': 'f'.repeat(64) } })).status, 401, 'wrong token');
  const ok = await raw(webPort, '/api/status', { headers: auth });
  assert.equal(ok.status, 200);
  assert.deepEqual(Object.keys(JSON.parse(ok.body)).sort(), Object.keys(status).sort(), '/api/status is the object status --json prints');
  assert.equal(ok.headers['access-control-allow-origin'], undefined, 'no CORS');
  assert.equal(ok.headers['x-content-type-options'], 'nosniff');
  assert.equal((await raw(webPort, '/api/status', { headers: { ...auth, host: `evil.example:${webPort}` } })).status, 421, 'DNS rebinding: a foreign Host');
  assert.equal((await raw(webPort, '/', { headers: { host: `attacker.test:${webPort}` } })).status, 421);
  assert.equal((await raw(webPort, '/api/status', { headers: { ...auth, host: `localhost:${webPort}` } })).status, 200);
  const page = await raw(webPort, '/');
  assert.equal(page.status, 200);
  assert.match(String(page.headers['content-security-policy']), /^default-src 'none'; script-src 'sha256-[^']+'; style-src 'sha256-[^']+'; connect-src 'self'/);
  assert.doesNotMatch(page.body, /https?:\/\/(?!127)/, 'no external URL in the page');
  const post = (headers: Record<string, string>) => raw(webPort, '/api/joins/abc/approve', { method: 'POST', headers });
  assert.equal((await post({ origin: 'http://evil.example', 'sec-fetch-site': 'cross-site', ...auth })).status, 403, 'cross-origin POST');
  assert.equal((await post({ origin: `http://127.0.0.1:${webPort}` })).status, 401, 'POST without token');
  assert.equal((await raw(webPort, '/api/files?path=/docs&limit=999', { headers: auth })).status, 400, 'page size bounded');
  assert.equal((await raw(webPort, '/api/files?path=/nope', { headers: auth })).status, 404);
  // Paging: two names at a time, in order, all of them once.
  const pageOf = async (offset: number) => JSON.parse((await raw(webPort, `/api/files?path=/&offset=${offset}&limit=2`, { headers: auth })).body);
  const p0 = await pageOf(0), p1 = await pageOf(2);
  assert.equal(p0.items.length, 2);
  assert.equal(p0.total, p1.total);
  const all = JSON.parse((await raw(webPort, '/api/files?path=/', { headers: auth })).body);
  assert.deepEqual([...p0.items, ...p1.items].map((i: { name: string }) => i.name), all.items.slice(0, 4).map((i: { name: string }) => i.name));
  assert.equal(all.total, all.items.length);
  const docs = JSON.parse((await raw(webPort, '/api/files?path=/docs/', { headers: auth })).body);
  assert.equal(docs.items[0].name, 'b.bin');
  assert.ok(docs.items[0].holders.length >= 2, 'holders from whereis');
  assert.equal((await raw(webPort, '/metrics')).status, 200, '/metrics as before');
  assert.match(n1.stderr(), /"level":"warn","event":"web\.refused".*"reason":"token"/, 'refusals are logged');
  // The SSE bound: MAX_SSE_CLIENTS streams, the next is refused; closing one frees a place.
  const streams = [];
  for (let i = 0; i < MAX_SSE_CLIENTS; i++) streams.push(await openStream(webPort, token));
  assert.ok(streams.every((s) => s.status === 200));
  assert.match(await streams[0]!.first, /^: hello\nretry: 2000\n\n/);
  const over = await openStream(webPort, token);
  assert.equal(over.status, 503, 'one stream too many');
  over.close();
  streams.pop()!.close();
  const again = await eventually('a place freed', async () => {
    const s = await openStream(webPort, token);
    if (s.status === 200) return s;
    s.close();
    return undefined;
  }, 5000);
  again.close();
  for (const s of streams) s.close();

  if (!chromium) return;
  // ---- in the browser -----------------------------------------------------------------------
  await mkdir(SHOTS, { recursive: true });
  const shot = join(SHOTS, `dashboard-${process.pid}.png`);
  const b = await chromium.launch({ executablePath: CHROMIUM, args: ['--no-sandbox'] });
  browser = b;
  const pg = await b.newPage({ viewport: { width: 1280, height: 1000 } });
  const problems: string[] = [];
  pg.on('pageerror', (e) => problems.push(`page error: ${e.message}`));
  pg.on('console', (m) => { if (m.type() === 'error') problems.push(`console: ${m.text()}`); });
  // Nothing but this node's port: the page must need no other origin.
  await pg.route('**/*', (r) => (new URL(r.request().url()).port === String(webPort) ? r.continue() : r.abort()));
  try {
    await pg.goto(url);
    await pg.waitForFunction(() => document.getElementById('live')?.textContent === 'live', null, { timeout: 15_000 });
    assert.equal(new URL(pg.url()).hash, '', 'the token is cut from the address bar');
    const st = await cli(['status', sb.root]);
    await pg.waitForFunction((v) => document.getElementById('verdict')?.textContent === v, `HEALTH_${st.verdict}`, { timeout: 10_000 });
    assert.equal(await pg.textContent('#members'), String(st.nodes.members));
    assert.equal(await pg.textContent('#disk-count'), String(st.disks.length));
    assert.equal(await pg.textContent('#machines'), String(st.nodes.machines));
    const shown = await pg.$$eval('#map .disk', (els) => els.map((e) => (e as HTMLElement).dataset.node).sort());
    assert.deepEqual(shown, st.disks.map((d: { node: string }) => d.node).sort());
    assert.deepEqual(shown, [...ids].sort(), 'the three disks by node id');
    const machines = await pg.$$eval('#map .machine-name', (els) => els.map((e) => e.textContent));
    assert.deepEqual(machines.sort(), [...new Set(st.disks.map((d: { machine: string }) => d.machine))].sort());
    const peers = await cli(['peers', sb.root]);
    assert.deepEqual(await pg.$$eval('#peers tr', (els) => els.map((e) => (e as HTMLElement).dataset.node)), peers.map((r: { nodeId: string }) => r.nodeId), 'the peers as delugefs peers lists them');
    assert.equal(await pg.textContent('#conflicts-count'), String(st.namespace.conflicts));
    assert.ok(st.namespace.conflicts >= 1);
    const conflicts = await cli(['conflicts', sb.root]);
    assert.equal(conflicts.total, st.namespace.conflicts);
    assert.deepEqual(await pg.$$eval('#conflicts tr td:first-child', (els) => els.map((e) => e.textContent)), conflicts.items.map((c: { path: string }) => c.path));
    assert.equal(await pg.textContent('#ns-files'), String(st.namespace.files));
    assert.equal(await pg.textContent('#under'), String(st.content.under));
    assert.equal(await pg.textContent('#repl-text'), `${st.content.ids - st.content.under} of ${st.content.ids} on their copies`);
    assert.deepEqual(await pg.$$eval('#checks li[data-code]', (els) => els.map((e) => (e as HTMLElement).dataset.code)), st.checks.map((c: { code: string }) => c.code));
    // A file's holders in the browser = whereis --json.
    await pg.click('#files tr[data-name="docs"] button.fname');
    await pg.waitForSelector('#files tr[data-name="b.bin"]');
    const [w] = await cli(['whereis', sb.root, '/docs/b.bin']);
    const holders = await pg.$$eval('#files tr[data-name="b.bin"] .holder', (els) => els.map((e) => ({ node: (e as HTMLElement).dataset.node, partial: e.classList.contains('partial') })));
    assert.deepEqual(holders, w.holders.map((h: { nodeId: string; complete: boolean }) => ({ node: h.nodeId, partial: !h.complete })));
    assert.ok(holders.length >= 2, 'on two disks');
    await pg.click('#path button:first-child');
    // The hostile name: shown as its own text, no element made of it, no script run.
    const hostileRow = pg.locator('#files tr[data-name]', { hasText: 'onerror' });
    await hostileRow.waitFor();
    assert.equal(await hostileRow.locator('.fname').textContent(), HOSTILE);
    assert.equal(await pg.locator('#files img').count(), 0, 'no <img> made from a file name');
    assert.equal(await pg.evaluate(() => (window as unknown as { __pwned?: number }).__pwned), undefined, 'no script ran');
    // Live: a file written now appears, and the counts move, without a reload.
    await pg.evaluate(() => ((window as unknown as { __same: number }).__same = 42));
    const before = Number(await pg.getAttribute('body', 'data-updates'));
    await writeFile(join(sb.mnt, 'live-new.txt'), 'arrived while the page was open\n');
    await pg.waitForSelector('#files tr[data-name="live-new.txt"]', { timeout: 20_000 });
    await pg.waitForFunction((n) => document.getElementById('ns-files')?.textContent === String(n), st.namespace.files + 1, { timeout: 10_000 });
    assert.equal(await pg.evaluate(() => (window as unknown as { __same?: number }).__same), 42, 'the same document: no reload');
    assert.ok(Number(await pg.getAttribute('body', 'data-updates')) > before, 'updates came over the event stream');
    assert.match(await pg.textContent('#down-rate') ?? '', /\/s$/);
    // Transfers move live too: node 1 sends a new file's copies to the others.
    const sent = await pg.textContent('#uploaded');
    await writeFile(join(sb.mnt, 'big.bin'), Buffer.alloc(2 << 20, 3));
    await pg.waitForFunction((s) => document.getElementById('uploaded')?.textContent !== s, sent, { timeout: 30_000 });
    assert.equal(await pg.textContent('#joins-count'), '0');

    // ---- real pending joins, approved and refused from the page -------------------------------
    const j1 = await joiner(join(sb.dir, 'joiner1'), '127.0.0.1', n1.ready.sshPort as number, '<b>newbox</b>');
    const j2 = await joiner(join(sb.dir, 'joiner2'), '127.0.0.1', n1.ready.sshPort as number, 'stranger');
    // Refused before anything is decided: wrong token, cross-origin, junk, an unknown code.
    assert.equal((await raw(webPort, `/api/joins/${j1.code}/approve`, { method: 'POST', headers: { 'x-delugefs-token': 'b'.repeat(64), origin: `http://127.0.0.1:${webPort}` } })).status, 401);
    assert.equal((await raw(webPort, `/api/joins/${j1.code}/approve`, { method: 'POST', headers: { ...auth, origin: 'http://evil.example' } })).status, 403);
    for (const bad of ['no%20such', '%E0%A4%A', 'a.b', 'x'.repeat(65)]) assert.equal((await raw(webPort, `/api/joins/${bad}/approve`, { method: 'POST', headers: auth })).status, 400, bad);
    assert.equal((await raw(webPort, '/api/joins/ZZZZ-ZZZZ-ZZZZ/approve', { method: 'POST', headers: auth })).status, 404, 'no such join');
    const memberIds = async () => ((await cli(['members', sb!.root])) as { nodeId: string }[]).map((m) => m.nodeId);
    assert.ok(!(await memberIds()).includes(j1.nodeId), 'nothing approved by refused requests');
    const row = pg.locator(`#joins tr[data-code="${j1.code}"]`);
    await row.waitFor({ timeout: 15_000 });
    assert.equal(await pg.textContent('#joins-count'), '2');
    assert.match(await row.textContent() ?? '', /<b>newbox<\/b>/, 'a joiner\'s host name as text');
    assert.equal(await row.locator('.joincode').textContent(), j1.code, 'the verification code is shown, to compare with the new machine\'s screen');
    await pg.screenshot({ path: shot.replace(/\.png$/, '-join.png'), fullPage: true });
    await row.locator('button.approve').click();
    await pg.waitForFunction((id) => new RegExp(`approved ${id}`).test(document.getElementById('joins-msg')?.textContent ?? ''), j1.nodeId, { timeout: 10_000 });
    await row.waitFor({ state: 'detached', timeout: 10_000 });
    assert.ok((await memberIds()).includes(j1.nodeId), 'the approved key is a member');
    assert.equal((await j1.ask()).status, 'admitted', "the joiner's next poll is admitted");
    assert.equal(await pg.textContent('#joins-count'), '1');
    await pg.locator(`#joins tr[data-code="${j2.code}"] button.refuse`).click();
    await pg.locator(`#joins tr[data-code="${j2.code}"]`).waitFor({ state: 'detached', timeout: 10_000 });
    await assert.rejects(j2.ask(), /refused by an operator/, "the refused joiner's next poll is told so");
    assert.ok(!(await memberIds()).includes(j2.nodeId));
    assert.equal(await pg.textContent('#joins-count'), '0');
    // Live: the verdict follows status (it may move while the last file is copied).
    await eventually('the page\'s verdict to be status\' verdict', async () => (await pg.textContent('#verdict')) === `HEALTH_${(await cli(['status', sb!.root])).verdict}`, 15_000);
    assert.deepEqual(problems, [], 'no script errors and no CSP violations');
  } finally {
    await pg.screenshot({ path: shot, fullPage: true }).catch(() => {});
    t.diagnostic(`screenshots: ${shot} (the end), ${shot.replace(/\.png$/, '-join.png')} (the pending join)`);
  }
});

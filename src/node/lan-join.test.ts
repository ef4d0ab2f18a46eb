// Joining a LAN without pasting anything (issue 12), end to end: real `delugefs` processes on
// "machines" (network namespaces on a private bridge, subnet 10.72.0, real mDNS there). A new
// root with no token asks the member it finds over mDNS, prints a code; the member lists the same
// code (status --json, joins); a guest with a pending request gets nothing else; a wrong code is
// refused; approve admits it and both mounts list each other's files. Also: a refused request
// ends its joiner with a clear error; a joiner that gives up leaves a request that expires; a
// flood of requests from one address is bounded and neither the member nor another joiner
// notices; with --no-mdns no request is made.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, ChildProcess } from 'node:child_process';
import { mkdtemp, mkdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createLan, netnsAvailable, NetnsLan, NetnsHost } from '../testing/netns.js';
import { CLI, runCli, waitReady, NodeProc, sh, stopAll } from '../testing/node-proc.js';
import { eventually } from '../testing/eventually.js';

const available = await netnsAvailable();
if (!available && process.env.CI === 'true') throw new Error('lan-join.test needs root and iproute2 (network namespaces); under CI it must not skip');
const skip = !available && 'needs root and iproute2';
const CL = 'lj';
// Short lives for requests at the member, so expiry shows within the test (the defaults are 60 s idle, 15 min in all).
const MEMBER_ENV = { DFS_JOIN_IDLE_MS: '5000' };

let dir = '';
let lan: NetnsLan;
const procs = new Set<ChildProcess>();
const mounts = new Set<string>();
let member: { root: string; mnt: string; proc: NodeProc; host: NetnsHost; sshPort: number };

const envOf = (h: NetnsHost, extra: NodeJS.ProcessEnv = {}) => ({ ...process.env, DELUGEFS_RUN_DIR: join(dir, `run-${h.name}`), ...extra });

function spawnNode(h: NetnsHost, args: string[], env: NodeJS.ProcessEnv = {}): ChildProcess {
  const p = spawn('nsenter', [`--net=/run/netns/${h.ns}`, process.execPath, CLI, ...args], { stdio: ['ignore', 'pipe', 'pipe'], env: envOf(h, env) });
  procs.add(p);
  p.on('exit', () => procs.delete(p));
  return p;
}

/** A joiner: a new root with no token, storage only unless `mnt`. Its stderr (and exit) are collected. */
function startJoiner(h: NetnsHost, name: string, extra: string[] = [], mnt?: string) {
  const root = join(dir, name);
  const p = spawnNode(h, [CL, root, ...(mnt ? [mnt] : []), '--json', '--interface', 'eth0', '--port', '17100', '--ssh-port', '17422', ...extra]);
  let err = '';
  p.stderr!.on('data', (b: Buffer) => (err += b.toString()));
  const exited = new Promise<number | null>((r) => p.once('exit', (c) => r(c)));
  const waiting = async () => {
    const ev = await eventually(`${name} prints its code`, async () => {
      const line = err.split('\n').find((l) => l.includes('"event":"join.lan.waiting"'));
      // The log line and the lines for the person at the terminal may arrive in separate chunks.
      return line && /approve MEMBER_ROOT/.test(err) ? (JSON.parse(line) as { code: string; nodeId: string }) : false;
    }, 30_000);
    return ev;
  };
  return { root, p, stderr: () => err, exited, waiting };
}

const cli = (args: string[]) => runCli(args);
const joins = async () => JSON.parse((await cli(['joins', member.root, '--json'])).out) as { code: string; nodeId: string; hostname: string; address: string; since: number; expires: number }[];

/** One RPC over ssh as `key`, from inside host h. */
function sshRpc(h: NetnsHost, key: string, command: string, input = '{}') {
  return h.run('ssh', ['-F', '/dev/null', '-i', key, '-o', 'IdentitiesOnly=yes', '-o', 'StrictHostKeyChecking=no', '-o', 'UserKnownHostsFile=/dev/null',
    '-o', 'BatchMode=yes', '-o', 'LogLevel=ERROR', '-p', String(member.sshPort), `delugefs@${member.host.ip}`, command], { input, timeoutMs: 15_000 });
}

before(async () => {
  if (skip) return;
  dir = await mkdtemp(join(tmpdir(), 'dfs-lanjoin-'));
  lan = await createLan({ subnet: '10.72.0' });
  const h = await lan.addHost('m');
  const root = join(dir, 'm');
  const mnt = join(dir, 'mnt-m');
  await mkdir(mnt);
  mounts.add(mnt);
  const p = spawnNode(h, [CL, root, mnt, '--create', '--json', '--interface', 'eth0', '--port', '17100', '--ssh-port', '17422'], MEMBER_ENV);
  const proc = await waitReady(p, 30_000);
  member = { root, mnt, proc, host: h, sshPort: Number(proc.ready.sshPort) };
});

after(async () => {
  if (skip) return;
  if (process.env.DFS_LAN_LOGS) {
    await mkdir(process.env.DFS_LAN_LOGS, { recursive: true });
    await writeFile(join(process.env.DFS_LAN_LOGS, 'member.log'), member?.proc.stderr() ?? '');
  }
  await stopAll(procs, mounts);
  await lan?.teardown();
  if (dir) await rm(dir, { recursive: true, force: true });
});

test('a new node asks over mDNS, shows the code the member lists, gets nothing before approval, joins on approve and syncs', { skip, timeout: 120_000 }, async () => {
  const h = await lan.addHost('j');
  // --no-mdns: no request is made, the error is as before.
  const quiet = await h.run(process.execPath, [CLI, CL, join(dir, 'quiet'), '--no-mdns'], { env: envOf(h), timeoutMs: 30_000 });
  assert.equal(quiet.code, 1);
  assert.match(quiet.stderr, /delugefs invite.*--join TOKEN/);
  assert.doesNotMatch(quiet.stderr, /join\.lan/);

  const mnt = join(dir, 'mnt-j');
  await mkdir(mnt);
  mounts.add(mnt);
  const j = startJoiner(h, 'j', [], mnt);
  const { code, nodeId } = await j.waiting();
  assert.match(code, /^[0-9A-Z]{4}-[0-9A-Z]{4}-[0-9A-Z]{4}$/);
  assert.match(j.stderr(), new RegExp(`delugefs: .*verification code ${code}`));
  assert.match(j.stderr(), new RegExp(`delugefs approve MEMBER_ROOT ${code}`));

  // The member shows the same code, the node id and the machine, in joins and in status.
  const list = await eventually('the request listed at the member', async () => { const l = await joins(); return l.length === 1 && l; });
  assert.equal(list[0]!.code, code);
  assert.equal(list[0]!.nodeId, nodeId);
  assert.match(list[0]!.address, /^10\.72\.0\.2:/);
  const status = JSON.parse((await cli(['status', member.root, '--json'])).out) as { checks: { code: string; count: number }[]; joins: { code: string }[] };
  assert.ok(status.checks.some((c) => c.code === 'JOIN_PENDING' && c.count === 1), JSON.stringify(status.checks));
  assert.deepEqual(status.joins.map((x) => x.code), [code]);
  assert.match((await cli(['status', member.root])).out, new RegExp(`JOIN_PENDING.*${code}`));
  assert.match(member.proc.stderr(), new RegExp(`"event":"join.request".*"code":"${code}"`));

  // Pending is nothing: the joiner's key fetches no repository and calls no member method.
  const key = join(j.root, 'identity', 'id_ed25519');
  for (const cmd of ["git-upload-pack '/meta.git'", 'delugefs-rpc status', 'delugefs-rpc members', 'delugefs-rpc sync_summary', 'delugefs-rpc join_requests']) {
    const r = await sshRpc(h, key, cmd, cmd.startsWith('git') ? '' : 'null');
    assert.notEqual(r.code, 0, `${cmd}: ${r.stdout}`);
    assert.match(r.stderr, /not a member/, cmd);
  }
  const self = await sshRpc(h, key, 'delugefs-rpc join_approve', JSON.stringify({ code }));
  assert.notEqual(self.code, 0, 'a guest approves nothing, not even itself');
  assert.equal((await joins()).length, 1, 'still pending');

  // A wrong code is an error, exit 1; so is junk.
  const wrong = await cli(['approve', member.root, code === 'ZZZZ-ZZZZ-ZZZZ' ? 'YYYY-YYYY-YYYY' : 'ZZZZ-ZZZZ-ZZZZ']);
  assert.equal(wrong.code, 1);
  assert.match(wrong.err, /no pending join request has the code/);
  const junk = await cli(['approve', member.root, 'no-such-code!']);
  assert.equal(junk.code, 1);
  assert.match(junk.err, /is not a join code/);

  // Approve (lower case, no dash): the joiner becomes a member, starts and syncs both ways.
  const ok = await cli(['approve', member.root, code.toLowerCase().replace('-', ''), '--json']);
  assert.equal(ok.code, 0, ok.err);
  assert.deepEqual(JSON.parse(ok.out), { nodeId });
  const ready = await waitReady(j.p, 60_000).catch((e) => { throw new Error(`${(e as Error).message}\n${j.stderr()}`); });
  assert.equal(ready.ready.node, nodeId);
  assert.deepEqual(await joins(), []);
  const members = JSON.parse((await cli(['members', member.root, '--json'])).out) as { nodeId: string }[];
  assert.ok(members.some((m) => m.nodeId === nodeId));
  await sh(`echo from-member > ${JSON.stringify(join(member.mnt, 'm.txt'))}`);
  await sh(`echo from-joiner > ${JSON.stringify(join(mnt, 'j.txt'))}`);
  const ls = async (d: string) => (await sh(`ls -A ${JSON.stringify(d)}`)).out.split('\n');
  await eventually('each file listed on the other mount', async () => (await ls(mnt)).includes('m.txt') && (await ls(member.mnt)).includes('j.txt'), 30_000);
});

test('a flood of requests from one address is bounded; members and other joiners are unaffected; a refused joiner stops with a clear error', { skip, timeout: 120_000 }, async () => {
  const hx = await lan.addHost('x');
  const keys: string[] = [];
  for (let i = 0; i < 10; i++) {
    const k = join(dir, `flood${i}`);
    await sh(`ssh-keygen -q -t ed25519 -N '' -f ${k}`);
    keys.push(k);
  }
  const answers = [];
  for (const k of keys) answers.push(await sshRpc(hx, k, 'delugefs-rpc join_request', JSON.stringify({ cluster: CL, hostname: 'flood' })));
  const pending = answers.filter((r) => r.code === 0 && /"status":"pending"/.test(r.stdout)).length;
  assert.equal(pending, 4, answers.map((r) => r.stdout + r.stderr).join('\n'));
  assert.ok(answers.slice(4).every((r) => /join_busy|join_rate_limited/.test(r.stdout)), answers.slice(4).map((r) => r.stdout).join('\n'));
  assert.equal((await joins()).filter((x) => x.hostname === 'flood').length, 4);
  // The member still serves its own commands, and the other member its sync.
  assert.equal((await cli(['members', member.root, '--json'])).code, 0);

  // Another machine's request still gets in; refused, its joiner ends with a clear error.
  const hk = await lan.addHost('k');
  const k = startJoiner(hk, 'k', ['--join-wait', '40s']);
  const { code } = await k.waiting();
  await eventually('k listed', async () => (await joins()).some((x) => x.code === code));
  const r = await cli(['refuse', member.root, code]);
  assert.equal(r.code, 0, r.err);
  assert.equal(await k.exited, 1);
  assert.match(k.stderr(), /refused by an operator/);
  assert.ok(!(await joins()).some((x) => x.code === code));
  const again = await cli(['approve', member.root, code]);
  assert.equal(again.code, 1, 'a refused request cannot be approved afterwards');
});

test('a joiner that gives up (--join-wait) leaves a request that expires at the member', { skip, timeout: 90_000 }, async () => {
  const he = await lan.addHost('e');
  // No member of this cluster on the LAN: told so after a while, with --create and the token way.
  const none = await he.run(process.execPath, [CLI, 'nobody', join(dir, 'nobody'), '--interface', 'eth0'], { env: envOf(he), timeoutMs: 40_000 });
  assert.equal(none.code, 1);
  assert.match(none.stderr, /not a DelugeFS root\. To start a new cluster there, add --create\. no member of cluster "nobody" answered on the LAN.*--join TOKEN/);
  const e = startJoiner(he, 'e', ['--join-wait', '4s']);
  const { code } = await e.waiting();
  assert.ok((await joins()).some((x) => x.code === code));
  assert.equal(await e.exited, 1);
  assert.match(e.stderr(), /no operator approved this node within 4 s/);
  // Nobody polls it any more: gone after the member's idle time (5 s here).
  await eventually('the request expired', async () => !(await joins()).some((x) => x.code === code), 20_000);
  assert.match(member.proc.stderr(), new RegExp(`"event":"join.expired".*"code":"${code}"`));
  const late = await cli(['approve', member.root, code]);
  assert.equal(late.code, 1);
  assert.match(late.err, /no pending join request/);

  // Ctrl-C while waiting ends the wait at once; the root keeps only the key (asking again shows the same code).
  const c = startJoiner(he, 'e2');
  const first = await c.waiting();
  const t0 = Date.now();
  c.p.kill('SIGINT');
  assert.equal(await c.exited, 1);
  assert.ok(Date.now() - t0 < 3000, `stopped after ${Date.now() - t0} ms`);
  assert.match(c.stderr(), /interrupted: no longer asking to join/);
  assert.deepEqual((await sh(`ls -A ${JSON.stringify(c.root)}`)).out.split('\n').filter(Boolean), ['identity']);
  const c2 = startJoiner(he, 'e2');
  assert.equal((await c2.waiting()).code, first.code);
  c2.p.kill('SIGINT');
  assert.equal(await c2.exited, 1);
});

test('two clusters of one name answering on the LAN: the joiner joins neither', { skip, timeout: 90_000 }, async () => {
  // Another cluster named like ours (a forged member, or a second cluster): another root commit, so another code.
  const hf = await lan.addHost('f');
  const fake = spawnNode(hf, [CL, join(dir, 'fake'), '--create', '--json', '--interface', 'eth0', '--port', '17100', '--ssh-port', '17422']);
  await waitReady(fake, 30_000);
  try {
    const hn = await lan.addHost('n');
    const n = startJoiner(hn, 'n', ['--join-wait', '30s']);
    assert.equal(await n.exited, 1);
    assert.match(n.stderr(), /two different clusters named "lj" answer on this LAN/);
  } finally {
    fake.kill('SIGTERM');
    await new Promise((r) => fake.once('exit', r));
  }
});

test('admitted by a "member" whose repository starts elsewhere than the root commit it named: the joiner refuses it', { skip, timeout: 90_000 }, async () => {
  const hg = await lan.addHost('g');
  const claim = 'ab'.repeat(20);
  const fixture = new URL('./join-lan.fixture.js', import.meta.url).pathname;
  const fake = spawn('nsenter', [`--net=/run/netns/${hg.ns}`, process.execPath, fixture, join(dir, 'forged'), 'forged', claim], { stdio: ['ignore', 'pipe', 'pipe'] });
  procs.add(fake);
  fake.on('exit', () => procs.delete(fake));
  await new Promise<void>((resolve, reject) => {
    let out = '';
    fake.stdout!.on('data', (b: Buffer) => { out += b.toString(); if (out.includes('"ready":true')) resolve(); });
    fake.once('exit', (c) => reject(new Error(`fixture exited with ${c}`)));
  });
  const hh = await lan.addHost('h');
  const root = join(dir, 'h');
  const r = await hh.run(process.execPath, [CLI, 'forged', root, '--interface', 'eth0', '--join-wait', '30s'], { env: envOf(hh), timeoutMs: 60_000 });
  assert.equal(r.code, 1, r.stderr);
  assert.match(r.stderr, new RegExp(`starts at [0-9a-f]{40}, not at ${claim} \\(the history the verification code named\\): not joining`));
  // Nothing of the forged repository stays; the key does (it may have been admitted somewhere).
  assert.deepEqual((await sh(`ls -A ${JSON.stringify(root)}`)).out.split('\n').filter(Boolean), ['identity']);
  fake.kill('SIGTERM');
});

test('a removed member still running admits a joiner into its old copy: the joiner waits for every member, then joins neither copy', { skip, timeout: 150_000 }, async () => {
  // x joins with a token, then is removed while it keeps running with its copy of the history.
  const hx = await lan.addHost('rx');
  const tok = await cli(['invite', member.root]);
  assert.equal(tok.code, 0, tok.err);
  const file = join(dir, 'x-token');
  await writeFile(file, tok.out.trim() + '\n', { mode: 0o600 });
  const x = await waitReady(spawnNode(hx, [CL, join(dir, 'rx'), '--json', '--interface', 'eth0', '--port', '17100', '--ssh-port', '17422', '--join-file', file]), 60_000);
  const xId = String(x.ready.node);
  const rm = await cli(['remove-node', member.root, xId]);
  assert.equal(rm.code, 0, rm.err);
  // A new node asks; x's operator (an attacker, say) approves it there first.
  const hy = await lan.addHost('ry');
  const y = startJoiner(hy, 'ry');
  const { code } = await y.waiting();
  await eventually('x lists the request', async () => JSON.parse((await cli(['joins', join(dir, 'rx'), '--json'])).out).some((j: { code: string }) => j.code === code), 30_000);
  const onX = await cli(['approve', join(dir, 'rx'), code]);
  assert.equal(onX.code, 0, onX.err);
  // Admitted by x alone: the joiner waits for the members that still say pending.
  await eventually('the joiner sees x admit it while others wait', async () => /"event":"join\.lan\.partly_admitted"/.test(y.stderr()), 30_000);
  assert.equal(await Promise.race([y.exited, new Promise((r) => setTimeout(() => r('running'), 2000))]), 'running', 'not joined through x alone');
  // The real operator approves too: now every member admits it, and the histories disagree on x.
  await eventually('the member lists the request', async () => (await joins()).some((j) => j.code === code), 30_000);
  const ok = await cli(['approve', member.root, code]);
  assert.equal(ok.code, 0, ok.err);
  assert.equal(await y.exited, 1, y.stderr());
  assert.match(y.stderr(), new RegExp(`member ${xId} at [0-9.]+ admitted this node, but the history member \\S+ serves removes it`));
});

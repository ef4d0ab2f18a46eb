// The cluster subcommands on one machine (no network: nodes run --no-mdns): help, bad input,
// offline and online membership changes, invite, authorized-keys, and `delugefs shell`
// forwarding RPC to the running node.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { mkdir, writeFile, stat, readFile } from 'node:fs/promises';
import { runCli, sandbox, Sandbox } from '../testing/node-proc.js';
import { Identity } from '../cluster/identity.js';

const boxes: Sandbox[] = [];
after(async () => { for (const b of boxes) await b.cleanup(); });
async function box() { const b = await sandbox('dfs-sync-cli'); boxes.push(b); return b; }

const cli = (args: string[], env: NodeJS.ProcessEnv = {}, input = '') => runCli(args, { env, input });

test('subcommands: --help, usage errors (exit 2), clear refusals (exit 1)', async () => {
  for (const c of ['key', 'authorize', 'invite', 'joins', 'approve', 'refuse', 'remove-node', 'members', 'authorized-keys', 'shell']) {
    const r = await cli([c, '--help']);
    assert.equal(r.code, 0, c);
    assert.match(r.out, new RegExp(`^Usage: delugefs ${c}`), c);
  }
  assert.match((await cli(['--help'])).out, /delugefs invite ROOT/);
  for (const [args, msg] of [
    [['authorize'], /missing ROOT/], [['authorize', '/x'], /missing KEYLINE/], [['invite', '/x', '--bogus'], /unknown option/],
    [['invite', '/x', '--ttl', '5y'], /--ttl must be/], [['remove-node', '/x', 'a', 'b'], /too many/],
    [['c', '/x', '--create', '--join', 't'], /exclude each other/], [['c', '/x', '--peer', 'nohost'], /--peer must be HOST:PORT/],
    [['c', '/x', '--ssh-port', '0'], /--ssh-port must be/], [['shell', '/x'], /needs --peer/],
    [['c', '/x', '--create', '--join-file', 'f'], /exclude each other/], [['c', '/x', '--join', 't', '--join-file', 'f'], /give the token once/],
    [['c', '/x', '--join-file'], /--join-file needs a value/],
    [['approve', '/x'], /missing CODE/], [['refuse', '/x'], /missing CODE/], [['approve', '/x', 'A', 'B'], /too many/],
    [['joins', '/x', '--bogus'], /unknown option/], [['c', '/x', '--join-wait', 'soon'], /--join-wait/],
  ] as [string[], RegExp][]) {
    const r = await cli(args);
    assert.equal(r.code, 2, `${args.join(' ')}: ${r.err}`);
    assert.match(r.err, msg);
  }
  const b = await box();
  const other = join(b.dir, 'other');
  await mkdir(other);
  await writeFile(join(other, 'precious'), 'x');
  let r = await cli(['key', other]);
  assert.equal(r.code, 1);
  assert.match(r.err, /not a DelugeFS root/);
  r = await cli(['invite', other]);
  assert.equal(r.code, 1);
  assert.match(r.err, /not a DelugeFS node root/);
  r = await cli(['testc', join(b.dir, 'nojoin'), '--join', 'garbage', '--no-mdns']);
  assert.equal(r.code, 1);
  assert.match(r.err, /--join: not a DelugeFS invite token/);
  await assert.rejects(stat(join(b.dir, 'nojoin')), 'a failed join leaves no root behind');
  for (const [args, input, msg] of [
    [['--join-file', join(b.dir, 'missing')], '', /--join-file: cannot read .*missing: ENOENT/],
    [['--join-file', b.dir], '', /--join-file: .* is a directory/],
    [['--join', '-'], '', /--join -: no token found/],
    [['--join', '-'], 'garbage\n', /--join: not a DelugeFS invite token/],
  ] as [string[], string, RegExp][]) {
    r = await cli(['testc', join(b.dir, 'nojoin'), '--no-mdns', ...args], {}, input);
    assert.equal(r.code, 1, `${args.join(' ')}: ${r.err}`);
    assert.match(r.err, msg);
    await assert.rejects(stat(join(b.dir, 'nojoin')));
  }
  assert.match((await cli(['--help'])).out, /--join-file FILE[\s\S]*--join -/);
});

test('membership offline and online; invite; authorized-keys; shell forwards RPC', async () => {
  const b = await box();
  const n = await b.start(['--interface', 'lo'], { create: true, mount: false });
  assert.ok(Number(n.ready.sshPort) > 0);
  await n.stop();
  const me = String(n.ready.node);
  // Offline: the node is not running, the root is opened directly.
  let r = await cli(['invite', b.root]);
  assert.equal(r.code, 1);
  assert.match(r.err, /no node is running.*start it first/);
  const other = await Identity.loadOrCreate(join(b.dir, 'k1'));
  r = await cli(['authorize', b.root, 'ssh-rsa AAAA nope']);
  assert.equal(r.code, 1);
  assert.match(r.err, /not an ssh-ed25519 public key line/);
  r = await cli(['authorize', b.root, other.publicKeyLine, '--json']);
  assert.equal(r.code, 0, r.err);
  assert.equal(JSON.parse(r.out).nodeId, other.nodeId);
  r = await cli(['members', b.root, '--json']);
  assert.deepEqual(JSON.parse(r.out).map((m: { nodeId: string }) => m.nodeId).sort(), [me, other.nodeId].sort());
  r = await cli(['authorized-keys', b.root, '--bin', '/usr/local/bin/delugefs']);
  assert.equal(r.code, 0, r.err);
  assert.match(r.out, new RegExp(`^command="/usr/local/bin/delugefs shell ${b.root.replace(/[/.]/g, '\\$&')} --peer ${other.nodeId}",no-pty,.* delugefs:${other.nodeId}\\n$`));
  r = await cli(['remove-node', b.root, me]);
  assert.equal(r.code, 1);
  assert.match(r.err, /cannot remove itself/);
  r = await cli(['remove-node', b.root, 'aaaaaaaaaaaaaaaa']);
  assert.equal(r.code, 1);
  assert.match(r.err, /not a member/);
  r = await cli(['remove-node', b.root, other.nodeId]);
  assert.equal(r.code, 0, r.err);
  r = await cli(['authorize', b.root, other.publicKeyLine]);
  assert.equal(r.code, 1);
  assert.match(r.err, /was removed/);

  // Online: through the control socket.
  const n2 = await b.start(['--interface', 'lo']);
  const k2 = await Identity.loadOrCreate(join(b.dir, 'k2'));
  r = await cli(['authorize', b.root, k2.publicKeyLine]);
  assert.equal(r.code, 0, r.err);
  r = await cli(['members', b.root]);
  assert.match(r.out, new RegExp(k2.nodeId));
  r = await cli(['invite', b.root, '--ttl', '30m', '--json']);
  assert.equal(r.code, 0, r.err);
  const inv = JSON.parse(r.out) as { token: string; expires: string };
  assert.match(inv.token, /^dfs1\./);
  assert.ok(Math.abs(Date.parse(inv.expires) - Date.now() - 30 * 60_000) < 60_000);
  // `delugefs shell` as an sshd forced command: RPC reaches the running node as member k2.
  r = await cli(['shell', b.root, '--peer', k2.nodeId], { SSH_ORIGINAL_COMMAND: 'delugefs-rpc freespace' }, '{}');
  assert.equal(r.code, 0, r.err);
  assert.ok(JSON.parse(r.out).result.available > 0);
  r = await cli(['shell', b.root, '--peer', k2.nodeId], { SSH_ORIGINAL_COMMAND: 'delugefs-rpc invite' }, '{}');
  assert.match(r.out, /forbidden/);
  r = await cli(['shell', b.root, '--peer', k2.nodeId], { SSH_ORIGINAL_COMMAND: 'cat /etc/passwd' });
  assert.notEqual(r.code, 0);
  await n2.stop();
});

test('a join token from a file and from stdin, never on the command line', async () => {
  const b = await box();
  const n = await b.start(['--interface', 'lo'], { create: true, mount: false });
  const token = async () => {
    const r = await cli(['invite', b.root]);
    assert.equal(r.code, 0, r.err);
    return r.out.trim();
  };
  const cmdline = async (pid: number) => (await readFile(`/proc/${pid}/cmdline`, 'utf8')).split('\0');
  // --join never looks for a local member: these join over SSH with the token, as other machines would.
  const t1 = await token();
  const file = join(b.dir, 'token');
  await writeFile(file, `\n  ${t1}  \n`, { mode: 0o600 });
  const viaFile = await b.start(['--interface', 'lo', '--join-file', file], { root: join(b.dir, 'byfile'), mount: false });
  const t2 = await token();
  const viaStdin = await b.start(['--interface', 'lo', '--join', '-'], { root: join(b.dir, 'bystdin'), mount: false, input: t2 + '\n' });
  for (const [p, t, flag] of [[viaFile, t1, '--join-file'], [viaStdin, t2, '--join']] as const) {
    const argv = await cmdline(p.proc.pid!);
    assert.ok(argv.includes(flag), argv.join(' '));
    assert.ok(!argv.some((a) => a.includes(t) || a.includes(t.slice(5, 40))), 'the token is not in /proc/PID/cmdline');
    assert.notEqual(p.ready.node, n.ready.node);
  }
  const r = await cli(['members', b.root, '--json']);
  const ids = JSON.parse(r.out).map((m: { nodeId: string }) => m.nodeId);
  for (const p of [viaFile, viaStdin]) assert.ok(ids.includes(p.ready.node), `${String(p.ready.node)} is a member`);
  // Each token was used once: the file's cannot join a third root.
  const again = await cli(['testc', join(b.dir, 'again'), '--no-mdns', '--join-file', file], { DELUGEFS_RUN_DIR: join(b.dir, 'run-again') });
  assert.equal(again.code, 1);
  assert.match(again.err, /--join: .*(used|redeemed)/i);
  await viaStdin.stop();
  await viaFile.stop();
  await n.stop();
});

test('delugefs shell refuses a removed or unknown node on every call, node running or not', async () => {
  const b = await box();
  const n = await b.start(['--interface', 'lo'], { create: true, mount: false });
  const k = await Identity.loadOrCreate(join(b.dir, 'k'));
  let r = await cli(['authorize', b.root, k.publicKeyLine]);
  assert.equal(r.code, 0, r.err);
  const shell = (id: string, cmd: string) => cli(['shell', b.root, '--peer', id], { SSH_ORIGINAL_COMMAND: cmd }, '{}');
  r = await shell(k.nodeId, 'delugefs-rpc freespace');
  assert.equal(r.code, 0, r.err);
  assert.ok(JSON.parse(r.out).result.available > 0);
  r = await cli(['remove-node', b.root, k.nodeId]);
  assert.equal(r.code, 0, r.err);
  const refused = async (id: string, msg: RegExp) => {
    for (const cmd of ['delugefs-rpc freespace', "git-upload-pack '/meta.git'", "git-receive-pack '/meta.git'"]) {
      const s = await shell(id, cmd);
      assert.equal(s.code, 1, `${cmd}: ${s.err}`);
      assert.match(s.err, msg, cmd);
      assert.equal(s.out, '', `${cmd}: nothing served`);
    }
  };
  await refused(k.nodeId, new RegExp(`delugefs: refused: node ${k.nodeId} was removed from the cluster; this key may no longer be used`));
  await refused('aaaaaaaaaaaaaaaa', /refused: node aaaaaaaaaaaaaaaa is not a member of the cluster/);
  await n.stop();
  // Stopped node: the records in its repository still decide.
  await refused(k.nodeId, /was removed from the cluster/);
});

test('a second disk joins through the running member on this machine, with no token', async () => {
  const b = await box();
  const n = await b.start(['--interface', 'lo'], { create: true });
  const disk2 = join(b.dir, 'disk2');
  const n2 = await b.start(['--interface', 'lo'], { root: disk2, mount: false });
  assert.notEqual(n2.ready.node, n.ready.node);
  const r = await cli(['members', b.root, '--json']);
  assert.equal(JSON.parse(r.out).length, 2);
  await n2.stop();
  await n.stop();
});

test('config, maintenance and drain: through the running node, settings shown and set, bad input refused', async () => {
  for (const c of ['config', 'maintenance', 'drain']) {
    const r = await cli([c, '--help']);
    assert.equal(r.code, 0, c);
    assert.match(r.out, new RegExp(`^Usage: delugefs ${c}`));
  }
  const b = await box();
  const n = await b.start(['--interface', 'lo'], { create: true, mount: false });
  const me = String(n.ready.node);
  let r = await cli(['config', b.root, '--json']);
  assert.equal(r.code, 0, r.err);
  assert.deepEqual(JSON.parse(r.out), { copies: 2, copiesSetBy: null, copiesSetAt: null, maintenance: [], draining: [], dirs: [] });
  r = await cli(['config', b.root, 'copies', '3']);
  assert.equal(r.code, 0, r.err);
  assert.match(r.out, new RegExp(`^copies 3 \\(set by ${me} at `));
  r = await cli(['config', b.root, 'copies']);
  assert.equal(r.out.trim(), '3');
  r = await cli(['config', b.root, 'copies', '1', '--dir', '/scratch/']);
  assert.equal(r.code, 0, r.err);
  assert.match(r.out, /^copies 3 .*\ncopies 1 under \/scratch\n$/);
  for (const [args, code, msg] of [
    [['config', b.root, 'copies', '0'], 1, /copies must be an integer in \[1, 16\]/], [['config', b.root, 'copies', 'two'], 2, /copies must be a whole number/],
    [['config', b.root, 'colour', 'red'], 2, /unknown setting "colour"/], [['maintenance', b.root, me, 'maybe'], 2, /say on or off/],
    [['maintenance', b.root, 'notanode', 'on'], 1, /not a node id/], [['drain', b.root, 'aaaaaaaaaaaaaaaa'], 1, /is not a member/],
    [['config', b.root, '--dir', '/x'], 2, /needs "copies N"/], [['config', b.root, 'copies', '2', '--dir', 'rel'], 2, /absolute path/],
    [['drain', b.root, me, 'off', '--wait'], 2, /--wait goes with on or status/], [['drain', b.root, me, 'maybe'], 2, /say on or off or status/],
    [['drain', b.root, me, 'status', '--wait'], 1, /is not draining/], [['drain', b.root, 'aaaaaaaaaaaaaaaa', 'status'], 1, /is not a member/],
  ] as [string[], number, RegExp][]) {
    r = await cli(args);
    assert.equal(r.code, code, `${args.join(' ')}: ${r.err}`);
    assert.match(r.err, msg);
  }
  r = await cli(['maintenance', b.root, me, 'on', '--json']);
  assert.deepEqual(JSON.parse(r.out), { nodeId: me, maintenance: true });
  r = await cli(['drain', b.root, me, 'status']);
  assert.match(r.out, new RegExp(`^node ${me}: not draining \\(maintenance\\); 0 copies left \\(0 B\\), 0 of them held by enough other disks\n$`));
  r = await cli(['drain', b.root, me]);
  assert.equal(r.out.trim(), `node ${me}: draining on`);
  // Alone, with nothing stored: the drain has nothing left to move.
  r = await cli(['drain', b.root, me, 'on', '--wait', '--json']);
  assert.equal(r.code, 0, r.err);
  assert.deepEqual(JSON.parse(r.out), { nodeId: me, draining: true, state: 'draining', known: true, reportedAt: null, left: 0, bytesLeft: 0, ready: 0 });
  r = await cli(['config', b.root, '--json']);
  assert.deepEqual(JSON.parse(r.out).maintenance, [me]);
  assert.deepEqual(JSON.parse(r.out).draining, [me]);
  // The settings are records in the namespace: they survive a restart.
  await n.stop();
  r = await cli(['config', b.root]);
  assert.equal(r.code, 1);
  assert.match(r.err, /no node is running/);
  await b.start(['--interface', 'lo'], { mount: false });
  r = await cli(['config', b.root, 'copies']);
  assert.equal(r.out.trim(), '3');
});

test('status and conflicts: the health of the cluster through the running node, its counts, a conflict copy as a warning and listed', async () => {
  const r0 = await cli(['status', '--help']);
  assert.equal(r0.code, 0);
  assert.match(r0.out, /^Usage: delugefs status ROOT/);
  const b = await box();
  const n = await b.start(['--interface', 'lo', '--audit-every', '1s', '--heal-rate', '50M'], { create: true, mount: false });
  const me = String(n.ready.node);
  assert.match(n.stderr(), /"swarm\.listening".*"backgroundRate":52428800/, '--heal-rate reaches the swarm');
  const status = async () => {
    const r = await cli(['status', b.root, '--json']);
    assert.equal(r.code, 0, r.err);
    return JSON.parse(r.out);
  };
  let h = await status();
  for (let i = 0; h.verdict !== 'OK' && i < 100; i++) {
    await new Promise((r) => setTimeout(r, 100)); // until replication's first round
    h = await status();
  }
  assert.equal(h.verdict, 'OK', JSON.stringify(h.checks));
  assert.equal(h.nodeId, me);
  assert.deepEqual(h.nodes, { members: 1, up: 1, down: 0, maintenance: 0, draining: 0, unknown: 0, machines: 1 });
  assert.equal(h.content.copies, 2);
  assert.ok(h.disks[0].total > 0);
  for (const [path, body] of [['/a.txt', 'hello'], ['/d/b.txt', 'world!'], ['/d/b.sync-conflict-20260102-030405-x.txt', 'other']]) {
    const r = await cli(['put', b.root, path, '-', '--parents'], {}, body);
    assert.equal(r.code, 0, r.err);
  }
  // The namespace counts are live, the content counts those of replication's last round: both awaited.
  const until = async (codes: string, also: () => boolean = () => true) => {
    for (let i = 0; i < 100; i++, await new Promise((r) => setTimeout(r, 100))) {
      h = await status();
      if (h.checks.map((c: { code: string }) => c.code).join() === codes && also()) return;
    }
    assert.fail(`checks ${JSON.stringify(h.checks)}, not ${codes}`);
  };
  // One disk cannot hold copies=2: every content id is under its copies.
  await until('CONTENT_UNDER,CONFLICTS', () => h.checks[0].count === 3);
  assert.equal(h.verdict, 'WARN');
  assert.equal(h.checks[0].count, 3);
  assert.deepEqual(h.namespace, { files: 3, dirs: 1, bytes: 16, conflicts: 1 });
  assert.equal((await cli(['config', b.root, 'copies', '1'])).code, 0);
  await until('CONFLICTS');
  assert.equal(h.content.copies, 1);
  const text = await cli(['status', b.root]);
  assert.match(text.out, new RegExp(`^cluster \\S+, node ${me}: HEALTH_WARN\\n  WARN  CONFLICTS: 1 conflict copy`));
  assert.match(text.out, /\nnamespace: 3 files, 1 directories, 16 B, 1 conflict copy/);
  // `conflicts` names the copy, the original beside it and both versions.
  const cj = await cli(['conflicts', b.root, '--json']);
  assert.equal(cj.code, 0, cj.err);
  const c = JSON.parse(cj.out);
  assert.equal(c.total, 1);
  assert.equal(c.items.length, 1);
  const [i] = c.items;
  assert.equal(i.path, '/d/b.sync-conflict-20260102-030405-x.txt');
  assert.equal(i.original, '/d/b.txt');
  assert.equal(i.stamp, '20260102-030405');
  assert.equal(i.from, 'x');
  assert.deepEqual([i.copy.type, i.copy.size, i.copy.node], ['file', 5, me]);
  assert.deepEqual([i.current.type, i.current.size, i.current.node], ['file', 6, me]);
  const ct = await cli(['conflicts', b.root]);
  assert.equal(ct.code, 0, ct.err);
  assert.match(ct.out, /^1 conflict copy\n\/d\/b\.sync-conflict-20260102-030405-x\.txt\n  kept aside: file of 5 B, written by \S+ at \S+\n  now at \/d\/b\.txt: file of 6 B/);
  assert.match((await cli(['conflicts', '--help'])).out, /^Usage: delugefs conflicts ROOT/);
  // peers on a lone node: itself only.
  const pj = await cli(['peers', b.root, '--json']);
  assert.equal(pj.code, 0, pj.err);
  assert.deepEqual(JSON.parse(pj.out).map((r: { nodeId: string; self: boolean; state: string }) => [r.nodeId, r.self, r.state]), [[me, true, 'up']]);
  assert.match((await cli(['peers', '--help'])).out, /^Usage: delugefs peers ROOT/);
  await n.stop();
  for (const cmd of ['status', 'conflicts', 'peers']) {
    const r = await cli([cmd, b.root]);
    assert.equal(r.code, 1);
    assert.match(r.err, /no node is running/);
  }
});

test('status shows the copies a disk is making: bytes left, the rate they arrive at and an ETA, then none', async () => {
  const b = await box();
  const a = await b.start(['--interface', 'lo', '--audit-every', '1s'], { create: true });
  await writeFile(join(b.mnt, 'big.bin'), Buffer.alloc(12 << 20, 9));
  const t = await cli(['invite', b.root]);
  const file = join(b.dir, 'token');
  await writeFile(file, t.out.trim() + '\n', { mode: 0o600 });
  // The second disk copies big.bin (copies=2) at 1 MB/s: ~12 s under way.
  const root2 = join(b.dir, 'second');
  await b.start(['--interface', 'lo', '--audit-every', '1s', '--heal-rate', '1M', '--join-file', file, '--peer', `127.0.0.1:${a.ready.sshPort}`], { root: root2, mount: false });
  const status = async () => JSON.parse((await cli(['status', root2, '--json'])).out);
  let h;
  for (let i = 0; i < 200; i++, await new Promise((r) => setTimeout(r, 100))) {
    h = await status();
    const c = h.transfers.copies;
    if (c.copying >= 1 && c.rate > 0 && c.bytesLeft > 0 && c.bytesLeft < 12 << 20) break;
  }
  const c = h.transfers.copies;
  assert.ok(c.copying >= 1 && c.rate > 0, `a copy under way at a rate: ${JSON.stringify(h.transfers)}`);
  assert.ok(c.bytesLeft > 0 && c.bytesLeft < 12 << 20, `bytes left ${c.bytesLeft}`);
  assert.ok(c.rate < 4e6, `held to about --heal-rate: ${c.rate} B/s`);
  assert.ok(c.etaSeconds > 0 && Math.abs(c.etaSeconds - Math.ceil(c.bytesLeft / c.rate)) <= 1, `ETA ${c.etaSeconds} s for ${c.bytesLeft} B at ${c.rate} B/s`);
  assert.ok(h.transfers.receiving > 0);
  assert.match((await cli(['status', root2])).out, /\ntransfers: receiving [\d.]+ [kM]?B\/s, sending [\d.]+ [kMG]?B\/s; copying 1 \(0 waiting\), [\d.]+ MB left at [\d.]+ [kM]?B\/s, ETA \d+s\n/);
  for (let i = 0; i < 300 && h.transfers.copies.copying; i++, await new Promise((r) => setTimeout(r, 100))) h = await status();
  assert.deepEqual(h.transfers.copies, { copying: 0, waiting: 0, bytesLeft: 0, rate: 0, etaSeconds: 0 });
  assert.match((await cli(['status', root2])).out, /; no copies under way\n/);
});

test('an error that quotes outside words reaches the terminal without its control characters', async () => {
  const b = await box();
  const r = await cli(['status', join(b.dir, 'x\x1b]0;owned\x07y')]);
  assert.equal(r.code, 1);
  assert.doesNotMatch(r.err, /[\u0000-\u0009\u000b-\u001f\u007f-\u009f]/);
  assert.match(r.err, /x\?\]0;owned\?y/);
});

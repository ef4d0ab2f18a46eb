// A flood of strangers against a real node's SSH server while a member syncs. The flooder (its
// own process, `ssh-flood.fixture.ts`) keeps hundreds of connections open from 40 loopback
// addresses: silent TCP sockets, handshakes that never authenticate, guests with 8 `join`
// channels of ~1 MiB each. Meanwhile a member's git fetch, git push and RPC call must work, the
// node's VmRSS must stay within FLOOD_RSS_BOUND of what it was before, and the refusals must be
// logged, rate-limited.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, ChildProcess } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { createInterface } from 'node:readline';
import { Identity, parsePublicKeyLine, peerKeyOf } from './identity.js';
import { RpcClient } from './rpc-client.js';
import { gitSshEnv, metaRepoUrl, writeKnownHosts } from './git-ssh.js';
import { memoryLog } from './log.js';
import { sandbox, runCli, Sandbox } from '../testing/node-proc.js';
import { git } from '../testing/proc.js';

const fixture = join(dirname(fileURLToPath(import.meta.url)), 'ssh-flood.fixture.js');
/**
 * What the flood may add to the node's resident memory (stated in the README): V8's young
 * generation alone grows by up to 48 MiB under any high allocation rate; the server's own
 * share is a few MiB (64 pre-auth and 16 guest connections, 16 KiB of input per guest request).
 */
const FLOOD_RSS_BOUND = 96 << 20;

const boxes: Sandbox[] = [];
const children = new Set<ChildProcess>();
after(async () => {
  for (const c of children) c.kill('SIGKILL');
  for (const b of boxes) await b.cleanup();
});

async function rss(pid: number): Promise<number> {
  const m = /VmRSS:\s+(\d+) kB/.exec(await readFile(`/proc/${pid}/status`, 'utf8'));
  return Number(m![1]) * 1024;
}

test('a flood of strangers neither exhausts the node nor locks a member out', { timeout: 180_000 }, async () => {
  const b = await sandbox('dfs-flood');
  boxes.push(b);
  const n = await b.start(['--interface', 'lo'], { create: true, mount: false });
  const pid = n.proc.pid!;
  const port = Number(n.ready.sshPort);
  const member = await Identity.loadOrCreate(join(b.dir, 'member'));
  const r = await runCli(['authorize', b.root, member.publicKeyLine]);
  assert.equal(r.code, 0, r.err);
  const hostKey = (await readFile(join(b.root, 'identity', 'id_ed25519.pub'), 'utf8')).trim();
  const knownHosts = join(b.dir, 'known_hosts');
  await writeKnownHosts(knownHosts, [{ host: '127.0.0.1', port, publicKey: hostKey }]);
  const env = { ...process.env, ...gitSshEnv({ identity: member, knownHostsPath: knownHosts, connectTimeoutSec: 20 }) };
  const url = metaRepoUrl('127.0.0.1', port);
  const mine = join(b.dir, 'member.git');
  await git(['init', '-q', '--bare', mine]);
  const hostFingerprint = peerKeyOf(parsePublicKeyLine(hostKey).blob).fingerprint;
  const rpc = new RpcClient({ identity: member, host: '127.0.0.1', port, hostFingerprint, log: memoryLog(), timeoutMs: 30_000, connectTimeoutMs: 20_000 });

  let round = 0;
  let last: string | undefined;
  const sync = async () => {
    round++;
    await git(['--git-dir', mine, 'fetch', '-q', url, '+refs/heads/main:refs/remotes/a/main'], { env });
    const head = await git(['--git-dir', mine, 'rev-parse', 'refs/remotes/a/main']);
    const tree = await git(['--git-dir', mine, 'rev-parse', `${head}^{tree}`]);
    // Our own ref on the node, fast-forwarded each round (what sync pushes): on top of what we
    // pushed last, whether or not the node has merged it yet.
    const c = await git(['--git-dir', mine, '-c', 'user.name=m', '-c', 'user.email=m@m', 'commit-tree', tree, '-p', last ?? head, '-m', `member round ${round}`]);
    await git(['--git-dir', mine, 'push', '-q', url, `${c}:refs/nodes/${member.nodeId}`], { env });
    last = c;
    const st = await rpc.call<{ nodeId: string }>('status');
    assert.equal(st.nodeId, String(n.ready.node));
  };
  try {
    await sync(); // warm: the first connection, the first fetch
    const before = await rss(pid);

    const flood = spawn(process.execPath, [fixture, JSON.stringify({ host: '127.0.0.1', port, raw: 300, stalled: 60, guests: 24, channels: 8 })], { stdio: ['ignore', 'pipe', 'inherit'] });
    children.add(flood);
    let stats: Record<string, number> = {};
    createInterface({ input: flood.stdout! }).on('line', (l) => { try { stats = JSON.parse(l); } catch { /* partial line */ } });
    let peak = before;
    const sampler = setInterval(() => void rss(pid).then((v) => { peak = Math.max(peak, v); }, () => {}), 100);
    try {
      // Let the flood build up (every pool full, guest channels sending), then sync through it.
      for (let i = 0; i < 60 && !(stats.connects > 300 && stats.bytesSent > 0); i++) await new Promise((res) => setTimeout(res, 250));
      assert.ok(stats.connects > 300, `flood running: ${JSON.stringify(stats)}`);
      for (let i = 0; i < 3; i++) await sync();
      // Outlast the guest timeout once, so guests come back and the pools churn.
      await new Promise((res) => setTimeout(res, 11_000));
      await sync();
      console.log(`# flood: ${JSON.stringify(stats)}; node VmRSS ${(before / 2 ** 20).toFixed(0)} MiB before, peak ${(peak / 2 ** 20).toFixed(0)} MiB`);
    } finally {
      clearInterval(sampler);
      flood.kill('SIGTERM');
    }
    assert.ok(peak - before < FLOOD_RSS_BOUND, `VmRSS grew by ${((peak - before) / 2 ** 20).toFixed(0)} MiB under the flood (bound ${FLOOD_RSS_BOUND / 2 ** 20} MiB)`);

    // Refusals were logged with their reason, but rate-limited: thousands refused, few lines.
    const lines = n.stderr().split('\n').filter((l) => l.includes('"limit_refused"')).map((l) => JSON.parse(l) as { reason: string; level: string });
    assert.ok(lines.every((l) => l.level === 'warn'), 'refusals are warnings');
    const reasons = new Set(lines.map((l) => l.reason));
    for (const want of ['guest_channels', 'guests_total']) assert.ok(reasons.has(want), `${want} refused and logged: ${[...reasons].join(',')}`);
    assert.ok([...reasons].some((x) => x.startsWith('preauth_')), `pre-auth connections refused or evicted: ${[...reasons].join(',')}`);
    assert.ok(lines.length < 200, `${lines.length} limit_refused lines: not rate-limited`);
  } finally {
    rpc.close();
  }
});

// Measures the SSH transport over loopback: no-op `git fetch` through the embedded server with
// the system ssh client, and RPC round trips (reused connection and first call on a new one).
// Usage: npm run build && node dist/cluster/transport.bench.js [fetches=30] [rpcs=500]
import { mkdtemp, rm, mkdir } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Identity } from './identity.js';
import { SshServer } from './ssh-server.js';
import { RpcClient } from './rpc-client.js';
import { RpcRegistry } from './rpc.js';
import { gitSshEnv, metaRepoUrl, writeKnownHosts } from './git-ssh.js';
import { silentLog } from './log.js';
import { git } from '../testing/proc.js';

const nFetch = Number(process.argv[2] ?? 30);
const nRpc = Number(process.argv[3] ?? 500);
const stats = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  const q = (p: number) => s[Math.min(s.length - 1, Math.floor(p * s.length))].toFixed(2);
  return `p50 ${q(0.5)} ms, p90 ${q(0.9)} ms, min ${s[0].toFixed(2)} ms (n=${s.length})`;
};

const dir = await mkdtemp(join(tmpdir(), 'dfs-cl-bench-'));
let server: SshServer | undefined;
try {
  const [a, b] = await Promise.all([Identity.loadOrCreate(join(dir, 'a')), Identity.loadOrCreate(join(dir, 'b'))]);
  const repo = join(dir, 'a', 'repo.git');
  await mkdir(repo, { recursive: true });
  await git(['init', '-q', '--bare', '--', repo]);
  const tree = await git([`--git-dir=${repo}`, 'mktree'], {});
  await git([`--git-dir=${repo}`, 'update-ref', 'refs/heads/main', await git([`--git-dir=${repo}`, 'commit-tree', '-m', 'x', tree || '4b825dc642cb6eb9a060e54bf8d69288fbee4904'])]);
  server = await SshServer.start({ identity: a, repoPath: repo, host: '127.0.0.1', port: 0, isMember: (k) => k.nodeId === b.nodeId, rpc: new RpcRegistry().register('ping', (x) => x), log: silentLog });
  const kh = join(dir, 'kh');
  await writeKnownHosts(kh, [{ host: '127.0.0.1', port: server.port, publicKey: a.publicKeyLine }]);
  const env = gitSshEnv({ identity: b, knownHostsPath: kh });
  const clone = join(dir, 'clone.git');
  await git(['init', '-q', '--bare', '--', clone]);
  const url = metaRepoUrl('127.0.0.1', server.port);
  await git([`--git-dir=${clone}`, 'fetch', '-q', '--', url, 'main:refs/remotes/a/main'], { env });
  const fetches: number[] = [];
  for (let i = 0; i < nFetch; i++) {
    const t = performance.now();
    await git([`--git-dir=${clone}`, 'fetch', '-q', '--', url, 'main:refs/remotes/a/main'], { env });
    fetches.push(performance.now() - t);
  }
  console.log(`no-op git fetch (system ssh, new connection each): ${stats(fetches)}`);
  const client = new RpcClient({ identity: b, host: '127.0.0.1', port: server.port, hostFingerprint: a.fingerprint, log: silentLog });
  await client.call('ping', 0);
  const rpcs: number[] = [];
  for (let i = 0; i < nRpc; i++) {
    const t = performance.now();
    await client.call('ping', i);
    rpcs.push(performance.now() - t);
  }
  client.close();
  console.log(`rpc round trip, reused connection: ${stats(rpcs)}`);
  const fresh: number[] = [];
  for (let i = 0; i < 20; i++) {
    const c = new RpcClient({ identity: b, host: '127.0.0.1', port: server.port, hostFingerprint: a.fingerprint, log: silentLog });
    const t = performance.now();
    await c.call('ping', i);
    fresh.push(performance.now() - t);
    c.close();
  }
  console.log(`rpc first call incl. SSH handshake: ${stats(fresh)}`);
} finally {
  await server?.close();
  await rm(dir, { recursive: true, force: true });
}

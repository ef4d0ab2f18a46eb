// Test fixture: a minimal cluster node, the way the real node will wire the transport: identity,
// SSH server, discovery, and on every peer seen an RPC call and a git fetch of its metadata.
// Usage: node node.fixture.js ROOT CLUSTER MEMBERS_FILE   (MEMBERS_FILE: one key line per member)
import { readFile, mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { Identity, parsePublicKeyLine, nodeIdOf, peerKeyOf } from './identity.js';
import { SshServer } from './ssh-server.js';
import { RpcRegistry } from './rpc.js';
import { RpcClient } from './rpc-client.js';
import { startDiscovery } from './discovery.js';
import { gitSshEnv, metaRepoUrl, writeKnownHosts } from './git-ssh.js';
import type { PeerRecord } from './peer-set.js';

const run = promisify(execFile);
const [root, cluster, membersFile] = process.argv.slice(2);
const out = (o: object) => process.stdout.write(JSON.stringify(o) + '\n');
const log = (event: string, fields: object = {}) => out({ ev: 'log', event, ...fields });

const identity = await Identity.loadOrCreate(root);
const members = async () => new Map((await readFile(membersFile, 'utf8')).split('\n').filter(Boolean).map((l) => {
  const k = parsePublicKeyLine(l);
  return [nodeIdOf(k.blob), l] as const;
}));
const repo = join(root, 'meta', 'repo.git');
await mkdir(repo, { recursive: true });
await run('git', ['init', '-q', '--bare', '--', repo]);
await run('git', [`--git-dir=${repo}`, 'update-ref', 'refs/heads/main', (await run('git', [`--git-dir=${repo}`, 'commit-tree', '-m', identity.nodeId, '4b825dc642cb6eb9a060e54bf8d69288fbee4904'])).stdout.trim()]);

const rpc = new RpcRegistry().register('whoami', (_p, peer) => ({ me: identity.nodeId, you: peer.nodeId }));
const server = await SshServer.start({ identity, repoPath: repo, isMember: async (k) => (await members()).has(k.nodeId), rpc, log });
const disc = await startDiscovery({ cluster, nodeId: identity.nodeId, sshPort: server.port, btPort: 6881, fingerprint: identity.fingerprint, interface: 'eth0', log });
const clients = new Map<string, RpcClient>();
const knownHosts = join(root, 'known_hosts');

async function onPeer(p: PeerRecord) {
  const m = await members();
  if (!m.has(p.nodeId)) return log('not_member', { nodeId: p.nodeId });
  // known_hosts from member records (the key), addresses from discovery.
  await writeKnownHosts(knownHosts, [{ host: p.host, port: p.sshPort, publicKey: m.get(p.nodeId)! }]);
  // The expected host key comes from the member record, never from the (unauthenticated) mDNS TXT.
  const fingerprint = peerKeyOf(parsePublicKeyLine(m.get(p.nodeId)!).blob).fingerprint;
  let c = clients.get(p.nodeId);
  if (c && (c.opts.host !== p.host || c.opts.port !== p.sshPort)) {
    c.close();
    c = undefined;
  }
  if (!c) clients.set(p.nodeId, (c = new RpcClient({ identity, host: p.host, port: p.sshPort, hostFingerprint: fingerprint, log, timeoutMs: 3000 })));
  try {
    const t = performance.now();
    const r = await c.call('whoami');
    out({ ev: 'rpc', peer: p.nodeId, result: r, ms: performance.now() - t });
    const t2 = performance.now();
    const { stdout } = await run('git', [`--git-dir=${repo}`, 'fetch', '-q', '--', metaRepoUrl(p.host, p.sshPort), `refs/heads/main:refs/peers/${p.nodeId}`], { env: { ...process.env, ...gitSshEnv({ identity, knownHostsPath: knownHosts }) } });
    const head = (await run('git', [`--git-dir=${repo}`, 'log', '-1', '--format=%s', `refs/peers/${p.nodeId}`])).stdout.trim();
    out({ ev: 'fetched', peer: p.nodeId, head, ms: performance.now() - t2, stdout });
  } catch (err) {
    out({ ev: 'error', peer: p.nodeId, error: (err as Error).message });
  }
}
disc.peers.on('peer', (p) => void onPeer(p));
disc.peers.on('lost', (p) => out({ ev: 'lost', nodeId: p.nodeId }));
await writeFile(join(root, 'ready'), String(server.port));
out({ ev: 'ready', nodeId: identity.nodeId, port: server.port });
process.on('SIGTERM', () => {
  for (const c of clients.values()) c.close();
  void disc.stop().then(() => server.close()).then(() => process.exit(0));
});

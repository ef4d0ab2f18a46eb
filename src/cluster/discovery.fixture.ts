// Test fixture: one mDNS participant with a real SSH server (a fresh identity on port 7422, so
// announced addresses can be verified); prints peer/lost events and logs as JSON lines on stdout.
// Usage: node discovery.fixture.js '{"cluster":..,...MdnsOptions without nodeId/fingerprint/sshPort}'
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { MdnsDiscovery, MdnsOptions } from './discovery.js';
import { Identity } from './identity.js';
import { SshServer } from './ssh-server.js';

const opts = JSON.parse(process.argv[2]) as MdnsOptions;
const out = (o: object) => process.stdout.write(JSON.stringify(o) + '\n');
const log = (event: string, fields: object = {}) => out({ ev: 'log', event, ...fields });
const dir = await mkdtemp(join(tmpdir(), 'dfs-disc-'));
const id = await Identity.loadOrCreate(dir);
const ssh = await SshServer.start({ identity: id, repoPath: dir, port: opts.sshPort ?? 7422, isMember: () => false, log: () => {} });
const d = new MdnsDiscovery({ ...opts, nodeId: id.nodeId, fingerprint: id.fingerprint, sshPort: ssh.port, log });
d.peers.on('peer', (p) => out({ ev: 'peer', ...p }));
d.peers.on('lost', (p) => out({ ev: 'lost', nodeId: p.nodeId }));
await d.start();
out({ ev: 'ready', nodeId: id.nodeId, fingerprint: id.fingerprint, sshPort: ssh.port });
process.on('SIGTERM', () => {
  void d.stop().then(() => ssh.close()).then(() => rm(dir, { recursive: true, force: true })).then(() => process.exit(0));
});

// Test fixture: a forged "member" for the LAN join's last check. It announces CLUSTER over mDNS,
// lets every key fetch its repository, and answers `join_request` with "admitted" naming a root
// commit its repository does not start at (ROOT_CLAIM), as a fake that knew the real cluster's
// root commit would. The joiner must refuse what it fetched.
// Usage: node join-lan.fixture.js DIR CLUSTER ROOT_CLAIM   (prints {"ready":true} once announced)
import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { Identity } from '../cluster/identity.js';
import { SshServer } from '../cluster/ssh-server.js';
import { RpcRegistry } from '../cluster/rpc.js';
import { MdnsDiscovery } from '../cluster/discovery.js';
import { silentLog } from '../cluster/log.js';

const run = promisify(execFile);
const [dir, cluster, claim] = process.argv.slice(2) as [string, string, string];
const identity = await Identity.loadOrCreate(dir);
const repo = join(dir, 'repo.git');
await mkdir(repo, { recursive: true });
await run('git', ['init', '-q', '--bare', '--', repo]);
const tree = (await run('git', [`--git-dir=${repo}`, 'hash-object', '-w', '-t', 'tree', '/dev/null'])).stdout.trim();
await run('git', [`--git-dir=${repo}`, 'update-ref', 'refs/heads/main', (await run('git', [`--git-dir=${repo}`, 'commit-tree', '-m', 'forged', tree])).stdout.trim()]);
const rpc = new RpcRegistry().register('join_request', () => ({ status: 'admitted', cluster, member: identity.nodeId, root: claim }));
const ssh = await SshServer.start({ identity, repoPath: repo, port: 17422, rpc, isMember: () => true, log: silentLog });
const mdns = new MdnsDiscovery({ cluster, nodeId: identity.nodeId, sshPort: ssh.port, btPort: 17100, fingerprint: identity.fingerprint, interface: 'eth0', log: silentLog });
await mdns.start();
process.stdout.write(JSON.stringify({ ready: true, nodeId: identity.nodeId }) + '\n');
process.on('SIGTERM', () => void mdns.stop().then(() => ssh.close()).finally(() => process.exit(0)));

// Test fixture standing in for the future `delugefs shell ROOT --peer NODEID` CLI command, as a
// foreign sshd runs it from an authorized_keys `command=`.
import { join } from 'node:path';
import { runForcedCommand } from './forced-command.js';
import { RpcRegistry } from './rpc.js';
import { jsonLog } from './log.js';

const args = process.argv.slice(2);
if (args[0] !== 'shell' || args[2] !== '--peer') {
  process.stderr.write('usage: shell ROOT --peer NODEID\n');
  process.exit(2);
}
const [, root, , peerNodeId] = args;
const rpc = new RpcRegistry().register('echo', (params, peer) => ({ params, peer: peer.nodeId }));
// Its repository holds no member records: membership is the authorized_keys line alone here.
process.exitCode = await runForcedCommand({ repoPath: join(root, 'meta', 'repo.git'), peerNodeId, rpc, log: jsonLog('shell'), refusal: async () => undefined });

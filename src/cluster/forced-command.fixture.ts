// Test fixture: stands in for `ssh HOST COMMAND` + a foreign sshd running `delugefs shell`.
// Usage (as GIT_SSH_COMMAND with GIT_SSH_VARIANT=simple): node forced-command.fixture.js REPO PEER [host] COMMAND
import { runForcedCommand } from './forced-command.js';
import { RpcRegistry } from './rpc.js';
import { jsonLog } from './log.js';

const [repoPath, peerNodeId, ...rest] = process.argv.slice(2);
const command = rest[rest.length - 1];
const rpc = new RpcRegistry().register('echo', (params, peer) => ({ params, peer: peer.nodeId }));
const log = jsonLog('shell');
process.exitCode = await runForcedCommand({
  repoPath,
  peerNodeId,
  command,
  rpc,
  log,
  // Its repository holds no member records: every PEER counts as a member here.
  refusal: async () => undefined,
  onReceivePack: (peer) => log('receive_hook', { peer: peer.nodeId }),
});

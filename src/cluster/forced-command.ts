// `delugefs shell` for people who run their own sshd: authorized_keys pins each member key to
// `command="delugefs shell ROOT --peer NODEID"`, and this enforces the same forced commands as
// the embedded server (same parser, same executor) on SSH_ORIGINAL_COMMAND. authorized_keys is
// written once and may lag behind a revocation, so membership is asked again on every call.
import { parsePublicKeyLine, nodeIdOf, isNodeId } from './identity.js';
import { serveCommand, CommandIO } from './serve-command.js';
import { RpcDispatcher, PeerInfo } from './rpc.js';
import { Log, jsonLog } from './log.js';
import { shQuote } from './sh.js';

export interface ForcedCommandOptions {
  repoPath: string;
  /** Runs RPC methods; under a foreign sshd typically a forwarder to the running node. */
  rpc: RpcDispatcher;
  /** The member this key belongs to, as written into authorized_keys by authorizedKeysLine(). */
  peerNodeId?: string;
  /**
   * Asked before anything is served: undefined when the node is a current member, else why not
   * (removed, unknown). A throw refuses too. The CLI reads the records (cluster/repo-members.ts).
   */
  refusal: (nodeId: string) => Promise<string | undefined>;
  /** Defaults to process.env.SSH_ORIGINAL_COMMAND. */
  command?: string;
  /** Defaults to process.env.GIT_PROTOCOL (sshd passes it when AcceptEnv allows). */
  gitProtocol?: string;
  /** Defaults to the remote address from process.env.SSH_CLIENT. */
  address?: string;
  onReceivePack?: (peer: PeerInfo) => unknown;
  log?: Log;
  io?: CommandIO;
  maxRpcInput?: number;
}

/** Serves one forced command on stdio; resolves with the exit status for the process. */
export async function runForcedCommand(o: ForcedCommandOptions): Promise<number> {
  const log = o.log ?? jsonLog('shell');
  const io = o.io ?? { stdin: process.stdin, stdout: process.stdout, stderr: process.stderr };
  const command = o.command ?? process.env.SSH_ORIGINAL_COMMAND;
  const address = o.address ?? process.env.SSH_CLIENT?.split(' ').slice(0, 2).join(':');
  if (!o.peerNodeId || !isNodeId(o.peerNodeId)) {
    log('refused', { address, what: 'no --peer node id' }, 'warn');
    io.stderr.write('delugefs: refused: the forced command names no member (--peer NODE)\n');
    return 1;
  }
  const peer: PeerInfo = { nodeId: o.peerNodeId, address, member: true };
  const why = await o.refusal(peer.nodeId).catch((e: Error) => `cannot check membership: ${e.message}`);
  if (why !== undefined) {
    log('refused', { peer: peer.nodeId, address, what: 'not a member', reason: why }, 'warn');
    io.stderr.write(`delugefs: refused: ${why}; this key may no longer be used (remove its line from authorized_keys)\n`);
    return 1;
  }
  if (!command) {
    // sshd runs the forced command with no SSH_ORIGINAL_COMMAND for an interactive login.
    log('refused', { peer: peer.nodeId, address, what: 'interactive login' }, 'warn');
    io.stderr.write('delugefs: interactive login refused; only git and delugefs-rpc commands are served\n');
    return 1;
  }
  return serveCommand(command, io, {
    repoPath: o.repoPath,
    rpc: o.rpc,
    peer,
    log,
    onReceivePack: o.onReceivePack,
    gitProtocol: o.gitProtocol ?? process.env.GIT_PROTOCOL,
    maxRpcInput: o.maxRpcInput,
  });
}

export const AUTHORIZED_KEYS_OPTIONS = ['no-pty', 'no-port-forwarding', 'no-agent-forwarding', 'no-X11-forwarding', 'no-user-rc'];

/** The shell command line sshd should force for a member: `BIN shell ROOT --peer NODEID`. */
export function shellCommandFor(delugefsBin: string, root: string, peerNodeId: string): string {
  return [delugefsBin, 'shell', root, '--peer', peerNodeId].map(shQuote).join(' ');
}

/**
 * One authorized_keys line for a member key, restricted to `delugefs shell`. `bin` is how sshd
 * should start delugefs (an absolute path is safest: sshd's PATH is minimal).
 */
export function authorizedKeysLine(keyLine: string, bin: string, root: string): string {
  const { blob } = parsePublicKeyLine(keyLine);
  const nodeId = nodeIdOf(blob);
  const cmd = shellCommandFor(bin, root, nodeId);
  // Inside command="..." sshd undoes only \" escapes; backslashes are taken literally.
  const quoted = cmd.replace(/"/g, '\\"');
  return `command="${quoted}",${AUTHORIZED_KEYS_OPTIONS.join(',')} ssh-ed25519 ${blob.toString('base64')} delugefs:${nodeId}`;
}

/** The whole authorized_keys text for a set of member keys (e.g. all members but this node). */
export function authorizedKeysText(keyLines: readonly string[], bin: string, root: string): string {
  return keyLines.map((k) => authorizedKeysLine(k, bin, root) + '\n').join('');
}

// Git over the system OpenSSH client: the node's key, a strict known_hosts built from member
// records, and no user configuration that could route or weaken the connection.
import { writeFile, rename } from 'node:fs/promises';
import { randomBytes } from 'node:crypto';
import { Identity, publicKeyBlob, KEY_TYPE } from './identity.js';
import { META_REPO_URL_PATH } from './command.js';
import { shQuote } from './sh.js';

export interface KnownHost {
  host: string;
  port: number;
  /** The member's public key, as a key line or SSH blob. */
  publicKey: string | Buffer;
}

/** `[host]:port ssh-ed25519 AAAA...` lines; OpenSSH matches non-22 ports only in this bracketed form. */
export function knownHostsText(hosts: readonly KnownHost[]): string {
  return hosts
    .map((h) => {
      const name = h.port === 22 ? h.host : `[${h.host}]:${h.port}`;
      return `${name} ${KEY_TYPE} ${publicKeyBlob(h.publicKey).toString('base64')}\n`;
    })
    .join('');
}

/** Writes the file atomically, so a concurrent git never reads half of it. */
export async function writeKnownHosts(path: string, hosts: readonly KnownHost[]): Promise<void> {
  const tmp = `${path}.tmp-${process.pid}-${randomBytes(4).toString('hex')}`;
  await writeFile(tmp, knownHostsText(hosts), { mode: 0o600 });
  await rename(tmp, path);
}

export interface GitSshOptions {
  identity: Pick<Identity, 'privateKeyPath'>;
  knownHostsPath: string;
  /** Only when the remote URL carries no port; metaRepoUrl() puts it there. */
  port?: number;
  connectTimeoutSec?: number;
  /** Path of the ssh binary (default `ssh` on PATH). */
  ssh?: string;
  /**
   * Reuse one OpenSSH connection per peer (ControlMaster) kept for `persistSec`: a push then
   * costs no handshake. The socket path must be short (sun_path is ~100 bytes).
   */
  controlPath?: string;
  persistSec?: number;
}

export function gitSshCommand(o: GitSshOptions): string {
  const args = [
    o.ssh ?? 'ssh',
    '-F', '/dev/null', // ignore ~/.ssh/config and /etc/ssh/ssh_config: no proxies, no other keys
    '-i', o.identity.privateKeyPath,
    '-o', 'IdentitiesOnly=yes',
    '-o', 'IdentityAgent=none',
    '-o', `UserKnownHostsFile=${o.knownHostsPath}`,
    '-o', 'GlobalKnownHostsFile=/dev/null',
    '-o', 'StrictHostKeyChecking=yes',
    '-o', 'HostKeyAlgorithms=ssh-ed25519',
    '-o', 'CheckHostIP=no',
    '-o', 'UpdateHostKeys=no',
    '-o', 'BatchMode=yes',
    '-o', `ConnectTimeout=${o.connectTimeoutSec ?? 10}`,
    '-o', 'ServerAliveInterval=5',
    '-o', 'ServerAliveCountMax=3',
    '-o', 'LogLevel=ERROR',
  ];
  if (o.controlPath) args.push('-o', 'ControlMaster=auto', '-o', `ControlPath=${o.controlPath}`, '-o', `ControlPersist=${o.persistSec ?? 30}`);
  if (o.port !== undefined) args.push('-p', String(o.port));
  return args.map(shQuote).join(' ');
}

/** Environment for `git fetch`/`git push` to a peer (merge into process.env). */
export function gitSshEnv(o: GitSshOptions): Record<string, string> {
  return {
    GIT_SSH_COMMAND: gitSshCommand(o),
    GIT_SSH_VARIANT: 'ssh',
    GIT_TERMINAL_PROMPT: '0',
  };
}

/** The URL of a peer's metadata repository. */
export function metaRepoUrl(host: string, port: number, user = 'delugefs'): string {
  const h = host.includes(':') ? `[${host}]` : host;
  return `ssh://${user}@${h}:${port}${META_REPO_URL_PATH}`;
}

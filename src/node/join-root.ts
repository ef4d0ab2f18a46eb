// A new (empty) root becoming a member: with an invite token (redeemed at the inviter over SSH,
// whose host key the token names), through a running member on this machine (its control
// socket), or after a manual `delugefs authorize` (from a --peer, host key learned on first use
// and then checked against the fetched member records). Each ends with the cluster's metadata
// repository in ROOT/meta/repo.git, fetched from the member that admitted us.
import os from 'node:os';
import { isAbsolute, join, normalize } from 'node:path';
import { mkdir, writeFile } from 'node:fs/promises';
import { GitRepo, gitEnv } from '../meta/repo.js';
import { Identity, isNodeId, nodeIdOf } from '../cluster/identity.js';
import { redeemInvite, decodeInvite, InviteError } from '../cluster/invite.js';
import { RpcCallError } from '../cluster/rpc-client.js';
import { callLocal } from '../daemon/methods.js';
import { JOIN_LOCAL } from './control-methods.js';
import { gitSshEnv, knownHostsText, metaRepoUrl } from '../cluster/git-ssh.js';
import { parseHostPort, probeHostKey } from '../cluster/static-peers.js';
import { boundedFetch, removeStaleQuarantines } from '../cluster/bounded-fetch.js';
import type { LocalEntry } from '../cluster/local-registry.js';

export class JoinError extends Error {
  /** True once a member admitted this key: the key must survive the failure so a retry is the same node. */
  keepKey = false;
  /** A LAN join found no member to ask (run.ts then also mentions --create). */
  noMember = false;
}

/** Checks a token before anything is written: well formed, signed, this cluster, not expired. */
export function checkToken(token: string, cluster: string): ReturnType<typeof decodeInvite> {
  let invite;
  try {
    invite = decodeInvite(token);
  } catch (e) {
    throw new JoinError(`--join: ${(e as Error).message}`);
  }
  if (invite.c !== cluster) throw new JoinError(`--join: the token is for cluster "${invite.c}", not "${cluster}"`);
  if (Date.now() > invite.e) throw new JoinError(`--join: the token expired at ${new Date(invite.e).toISOString()}; ask for a new one (delugefs invite)`);
  return invite;
}

export interface Joined {
  via: string; inviter: string; head: string;
  /** The host key fetched from when it was learned on first use (--peer, LAN): checked against the records once they are read. */
  peerKey?: Buffer;
}

/**
 * Fetches the cluster's main branch from `url` (an ssh:// URL or an absolute path) into repoDir,
 * bounded like every fetch from a peer (bounded-fetch.ts); `limits` are for tests.
 */
export async function fetchMain(repoDir: string, url: string, env: NodeJS.ProcessEnv, limits: { maxBytes?: number; timeoutMs?: number } = {}): Promise<string> {
  const repo = new GitRepo(repoDir);
  if (!(await repo.exists())) await repo.init();
  // Joining runs before the node does: no other fetch into this repository is under way.
  await removeStaleQuarantines(repoDir);
  try {
    // boundedFetch puts `--` before the URL: whatever it holds, git reads it as the repository, never as an option.
    await boundedFetch({ repo: repoDir, url, src: 'refs/heads/main', dst: 'refs/heads/main', env, ...limits });
  } catch (e) {
    throw new JoinError(`could not fetch the cluster's metadata from ${url.replace(/^ssh:\/\/[^@]*@/, '')}: ${(e as Error).message}`);
  }
  const head = await repo.head();
  if (!head) throw new JoinError('the fetched metadata repository has no main branch');
  return head;
}

/** Env for git over SSH to one member whose host key is `keyBlob` (its own known_hosts file). */
export async function sshEnv(root: string, identity: Identity, host: string, port: number, keyBlob: Buffer): Promise<NodeJS.ProcessEnv> {
  const dir = join(root, 'cluster');
  await mkdir(dir, { recursive: true, mode: 0o700 });
  const kh = join(dir, 'known_hosts-join');
  await writeFile(kh, knownHostsText([{ host, port, publicKey: keyBlob }]), { mode: 0o600 });
  return { ...gitEnv(), ...gitSshEnv({ identity, knownHostsPath: kh, connectTimeoutSec: 10 }) };
}

export async function joinWithToken(root: string, repoDir: string, cluster: string, token: string): Promise<Joined> {
  const invite = checkToken(token, cluster);
  const identity = await Identity.loadOrCreate(root);
  let result: { inviter?: string } | undefined;
  try {
    const r = await redeemInvite(identity, token, { params: { hostname: os.hostname() }, log: () => {} });
    result = r.result as { inviter?: string };
  } catch (e) {
    const code = e instanceof InviteError ? e.code : e instanceof RpcCallError ? e.code : '';
    const hint = code === 'unreachable' || code === 'timeout' ? ` (tried ${invite.a.join(', ')}; is the inviting node running and reachable?)` : '';
    throw new JoinError(`--join: ${(e as Error).message}${hint}`);
  }
  // The inviter admitted us (this key is a member now, so a failure below keeps the key for a
  // retry): fetch over SSH, its host key pinned by the token.
  const keyBlob = Buffer.from(invite.k, 'base64');
  let last = new JoinError('the token lists no address');
  last.keepKey = true;
  for (const a of invite.a) {
    const { host, port } = parseHostPort(a);
    try {
      const head = await fetchMain(repoDir, metaRepoUrl(host, port), await sshEnv(root, identity, host, port, keyBlob));
      return { via: `token from ${invite.n} at ${a}`, inviter: result?.inviter ?? invite.n, head };
    } catch (e) {
      last = e instanceof JoinError ? e : new JoinError((e as Error).message);
      last.keepKey = true;
    }
  }
  throw last;
}

/** What a `join_local` reply must be before any of it is used: this cluster, a node id, an absolute repository path. */
export function checkJoinLocalReply(r: unknown, cluster: string): { inviter: string; repo: string } {
  const o = (r ?? {}) as { cluster?: unknown; inviter?: unknown; repo?: unknown };
  if (typeof r !== 'object' || r === null) throw new Error('the reply is not an object');
  if (o.cluster !== cluster) throw new Error(`the reply is for cluster ${JSON.stringify(o.cluster)}, not "${cluster}"`);
  if (typeof o.inviter !== 'string' || !isNodeId(o.inviter)) throw new Error('the reply names no valid inviting node');
  if (typeof o.repo !== 'string' || !isAbsolute(o.repo) || normalize(o.repo) !== o.repo || /[\0-\x1f]/.test(o.repo)) {
    throw new Error(`the reply's repository ${JSON.stringify(String(o.repo).slice(0, 200))} is not an absolute path`);
  }
  return { inviter: o.inviter, repo: o.repo };
}

export async function joinLocal(root: string, repoDir: string, cluster: string, member: LocalEntry): Promise<Joined> {
  const identity = await Identity.loadOrCreate(root);
  const what = `joining through the local member ${member.nodeId} (${member.root})`;
  let r: { inviter: string; repo: string };
  try {
    r = checkJoinLocalReply(await callLocal(member.control, JOIN_LOCAL, { publicKey: identity.publicKeyLine, hostname: os.hostname() }), cluster);
  } catch (e) {
    throw new JoinError(`${what} failed: ${(e as Error).message}`);
  }
  // Same machine: its repository is a local path, no SSH needed.
  const head = await fetchMain(repoDir, r.repo, gitEnv()).catch((e: JoinError) => { e.keepKey = true; throw e; });
  return { via: `local member ${member.nodeId} (${member.root})`, inviter: r.inviter, head };
}

/** After `delugefs authorize` of our key on a member: fetch from one of the --peer addresses. */
export async function joinFromPeer(root: string, repoDir: string, peers: string[]): Promise<Joined & { peerKey: Buffer }> {
  const identity = await Identity.loadOrCreate(root);
  let last: Error = new JoinError('no --peer given');
  for (const a of peers) {
    const { host, port } = parseHostPort(a);
    try {
      // First use: the key is checked against the fetched member records by the caller.
      const key = await probeHostKey(host, port, 5000);
      const head = await fetchMain(repoDir, metaRepoUrl(host, port), await sshEnv(root, identity, host, port, key));
      return { via: `peer ${a}`, inviter: nodeIdOf(key), head, peerKey: key };
    } catch (e) {
      last = e as Error;
    }
  }
  throw new JoinError(`could not join from ${peers.join(', ')}: ${last.message}. Has a member run "delugefs authorize ROOT '${identity.publicKeyLine}'"?`);
}

// A new (empty) root joining over the LAN with neither token nor local member: it looks for the
// cluster's members over mDNS (listening only; an address counts once an SSH key exchange there
// proved the announced node id's key), asks each with the `join_request` guest method under its
// own node key, prints the verification code and re-polls until an operator approves on a member
// (`delugefs approve ROOT CODE`), refuses, the request expires, or --join-wait runs out.
// Admitted, it fetches the metadata repository from the member that said so and checks that its
// root commit is the one the code was made with; run.ts then checks, as for --peer, that the
// fetched records hold that member's host key and this node.
import os from 'node:os';
import { join } from 'node:path';
import { rm } from 'node:fs/promises';
import { membershipFromRepo } from '../cluster/repo-members.js';
import { Identity, fingerprintOf } from '../cluster/identity.js';
import { MdnsDiscovery } from '../cluster/discovery.js';
import { RpcClient, RpcCallError } from '../cluster/rpc-client.js';
import { call } from '../daemon/methods.js';
import { JOIN_REQUEST, JoinAnswer } from './control-methods.js';
import { joinCode } from '../cluster/join-code.js';
import { probeHostKey } from '../cluster/static-peers.js';
import { metaRepoUrl } from '../cluster/git-ssh.js';
import { GitRepo } from '../meta/repo.js';
import { fromLogger } from '../cluster/log.js';
import type { Logger } from '../util/log.js';
import { fetchMain, sshEnv, JoinError, Joined } from './join-root.js';
import type { PeerRecord } from '../cluster/peer-set.js';

export interface LanJoinOptions {
  cluster: string;
  interface?: string;
  log: Logger;
  /** Give up after this long without approval (`--join-wait`). */
  waitMs: number;
  /** Give up when no member answered within this long. */
  findMs?: number;
  pollMs?: number;
  /** Aborted on Ctrl-C: the wait ends at once. */
  signal: AbortSignal;
  /** A line for the person at the terminal (stderr). */
  say: (line: string) => void;
}

/** Members that answered within this long must all have admitted us. */
const RECENT_MS = 30_000;

/** Ends every join request this node made: the wait stops for good. */
const FINAL = new Set(['join_refused', 'join_expired', 'join_wrong_cluster']);

export async function joinOverLan(root: string, repoDir: string, o: LanJoinOptions): Promise<Joined & { peerKey: Buffer }> {
  const identity = await Identity.loadOrCreate(root);
  const log = o.log;
  const mdns = new MdnsDiscovery({
    cluster: o.cluster, nodeId: identity.nodeId, sshPort: 1, btPort: 1, fingerprint: identity.fingerprint, interface: o.interface,
    announce: false, log: fromLogger(log, 'discovery'),
  });
  await mdns.start();
  const started = Date.now();
  const findMs = o.findMs ?? 10_000;
  const pollMs = o.pollMs ?? 3000;
  /** The root commit the code shown was made with: fixed by the first member that answered. */
  let root0: string | undefined;
  const ignored = new Set<string>();
  /** The last answer of each member, and when. */
  const seen = new Map<string, { p: PeerRecord; status: string; at: number }>();
  let asked = 0;
  try {
    for (;;) {
      if (o.signal.aborted) throw new JoinError('interrupted: no longer asking to join');
      const members = mdns.peers.list().filter((p) => !ignored.has(p.nodeId));
      for (const p of members) {
        let r: JoinAnswer;
        try {
          r = await ask(identity, p, o.cluster, o.signal);
          asked++;
        } catch (e) {
          if (o.signal.aborted) throw new JoinError('interrupted: no longer asking to join');
          const code = e instanceof RpcCallError ? e.code : '';
          if (FINAL.has(code)) throw new JoinError(`member ${p.nodeId} at ${p.host}: ${(e as Error).message}`);
          log.warn('join.lan.ask_failed', { member: p.nodeId, host: p.host, sshPort: p.sshPort, code, error: (e as Error).message });
          continue;
        }
        if (r.cluster !== o.cluster) {
          log.warn('join.lan.member_ignored', { member: p.nodeId, host: p.host, cluster: r.cluster, hint: 'it answers for another cluster' });
          ignored.add(p.nodeId);
          continue;
        }
        if (root0 && r.root !== root0) {
          // Two histories answer for one name: one of them is not the cluster meant (a forged
          // member, or two clusters of one name). Whichever approved first would win: join neither.
          throw new JoinError(`two different clusters named "${o.cluster}" answer on this LAN (member ${p.nodeId} at ${p.host} has the history ${r.root.slice(0, 12)}, another ${root0.slice(0, 12)}); not joining either over the LAN`);
        }
        if (!root0) {
          root0 = r.root;
          const code = joinCode(identity.publicKeyBlob, root0);
          log.info('join.lan.waiting', { code, nodeId: identity.nodeId, hostname: os.hostname(), member: p.nodeId, host: p.host });
          o.say(`asking cluster ${o.cluster} to admit this node (${identity.nodeId} on ${os.hostname()}); verification code ${code}`);
          o.say(`waiting for approval: on a member, check that it shows the same code and run "delugefs approve MEMBER_ROOT ${code}" (Ctrl-C stops)`);
          if (r.code && r.code !== code) throw new JoinError(`member ${p.nodeId} computed the code ${r.code}, this node ${code}: not joining`);
        }
        seen.set(p.nodeId, { p, status: r.status, at: Date.now() });
      }
      // Admitted only once every member that answered lately says so: a removed member still
      // running with its old copy of the history could otherwise let us into that copy alone.
      const now = Date.now();
      const recent = [...seen.values()].filter((x) => now - x.at <= RECENT_MS && !ignored.has(x.p.nodeId));
      const admitted = recent.filter((x) => x.status === 'admitted');
      if (admitted.length && admitted.length === recent.length) return await fetchChecked(root, repoDir, identity, admitted.map((x) => x.p), root0!, log);
      if (admitted.length) {
        log.info('join.lan.partly_admitted', { admitted: admitted.map((x) => x.p.nodeId), waiting: recent.filter((x) => x.status !== 'admitted').map((x) => x.p.nodeId), hint: 'every member that answers must admit this node (its approval syncs to them within seconds)' });
      }
      const waited = Date.now() - started;
      if (!asked && waited > findMs) {
        throw Object.assign(new JoinError(`no member of cluster "${o.cluster}" answered on the LAN (mDNS) within ${Math.round(findMs / 1000)} s`), { noMember: true });
      }
      if (waited > o.waitMs) throw new JoinError(`no operator approved this node within ${Math.round(o.waitMs / 1000)} s (--join-wait); start it again to ask again`);
      await sleep(pollMs, o.signal);
    }
  } finally {
    await mdns.stop();
  }
}

async function ask(identity: Identity, p: PeerRecord, cluster: string, signal: AbortSignal): Promise<JoinAnswer> {
  // A fresh connection per poll: a guest's connection is cut after a few seconds anyway (ssh-limits).
  const client = new RpcClient({ identity, host: p.host, port: p.sshPort, hostFingerprint: p.fingerprint, timeoutMs: 10_000, connectTimeoutMs: 5000, log: () => {} });
  // Ctrl-C ends a question under way too, not only the wait between rounds.
  let stop = (): void => {};
  const aborted = new Promise<never>((_r, reject) => {
    stop = () => reject(new JoinError('interrupted: no longer asking to join'));
    if (signal.aborted) stop();
    signal.addEventListener('abort', stop, { once: true });
  });
  try {
    return await Promise.race([call(client, JOIN_REQUEST, { cluster, hostname: os.hostname() }), aborted]);
  } finally {
    signal.removeEventListener('abort', stop);
    client.close();
  }
}

/**
 * Fetches from the first member that admitted us, and from every other one into a scratch
 * repository: each must start at the code's root commit and none may remove a member that
 * answered (members disagreeing on who is one means one of them is a removed member's copy).
 */
async function fetchChecked(root: string, repoDir: string, identity: Identity, admitted: PeerRecord[], rootCommit: string, log: Logger): Promise<Joined & { peerKey: Buffer }> {
  const joined = await fetchFrom(root, repoDir, identity, admitted[0]!, rootCommit, log);
  const histories: { from: PeerRecord; dir: string }[] = [{ from: admitted[0]!, dir: repoDir }];
  const scratch: string[] = [];
  try {
    for (const p of admitted.slice(1)) {
      const dir = join(root, 'cluster', `join-check-${p.nodeId}`);
      scratch.push(dir);
      await fetchFrom(root, dir, identity, p, rootCommit, log);
      histories.push({ from: p, dir });
    }
    for (const h of histories) {
      const m = await membershipFromRepo(h.dir);
      for (const p of admitted) {
        if (m.isRevoked(p.nodeId) || !m.get(p.nodeId)) {
          throw Object.assign(new JoinError(`member ${p.nodeId} at ${p.host} admitted this node, but the history member ${h.from.nodeId} serves ${m.isRevoked(p.nodeId) ? 'removes it' : 'does not name it a member'}: one of them runs an old copy of the cluster; not joining over the LAN (join with a token from "delugefs invite")`), { keepKey: true });
        }
      }
    }
  } finally {
    for (const d of scratch) await rm(d, { recursive: true, force: true });
  }
  return joined;
}

async function fetchFrom(root: string, repoDir: string, identity: Identity, p: PeerRecord, rootCommit: string, log: Logger): Promise<Joined & { peerKey: Buffer }> {
  const fail = (m: string) => Object.assign(new JoinError(m), { keepKey: true });
  // The key the mDNS check proved, once more: known_hosts needs the key itself, not its fingerprint.
  const key = await probeHostKey(p.host, p.sshPort, 5000).catch((e) => { throw fail(`member ${p.nodeId} at ${p.host}:${p.sshPort} admitted this node but cannot be reached: ${(e as Error).message}; start the node again`); });
  if (fingerprintOf(key) !== p.fingerprint) throw fail(`member ${p.nodeId} at ${p.host}:${p.sshPort} now shows another host key; not fetching from it`);
  const env = await sshEnv(root, identity, p.host, p.sshPort, key);
  const head = await fetchMain(repoDir, metaRepoUrl(p.host, p.sshPort), env).catch((e: JoinError) => { e.keepKey = true; throw e; });
  const repo = new GitRepo(repoDir);
  const got = await repo.rootCommit().finally(() => repo.close());
  if (got !== rootCommit) throw fail(`the repository member ${p.nodeId} served starts at ${got ?? 'nothing'}, not at ${rootCommit} (the history the verification code named): not joining`);
  log.info('join.lan.admitted', { member: p.nodeId, host: p.host, head });
  return { via: `LAN join request approved, fetched from member ${p.nodeId} at ${p.host}:${p.sshPort}`, inviter: p.nodeId, head, peerKey: key };
}

function sleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    const t = setTimeout(done, ms);
    function done() {
      clearTimeout(t);
      signal.removeEventListener('abort', done);
      resolve();
    }
    signal.addEventListener('abort', done, { once: true });
  });
}

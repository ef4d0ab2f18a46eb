// `delugefs CLUSTER ROOT [MOUNTPOINT]`: every check first (nothing is touched until all pass),
// then the node (created, joined or opened), the cluster (SSH, discovery, sync), the mount, and a
// clean stop on SIGINT/SIGTERM; under systemd (Type=notify) READY=1 once all of it is up and
// STOPPING=1 when the stop begins.
import { resolve, join } from 'node:path';
import { readdir, readFile, rm, stat } from 'node:fs/promises';
import type { RunArgs } from './args.js';
import { acquireLock, createLayout, inspectRoot, paths, NodeConfig } from '../node/layout.js';
import { Daemon } from '../daemon/daemon.js';
import { joinWithToken, joinLocal, joinFromPeer, checkToken, JoinError, Joined } from '../node/join-root.js';
import { joinOverLan } from '../node/join-lan.js';
import { resolveInterface } from '../cluster/discovery.js';
import { findLocalMember, LocalEntry } from '../cluster/local-registry.js';
import { Membership } from '../cluster/membership.js';
import { parsePublicKeyLine } from '../cluster/identity.js';
import { listenFirstFree } from '../node/port.js';
import { checkMountpoint, loadFuse } from '../fuse/mount.js';
import { closeHashers } from '../content/hasher.js';
import { createLogger } from '../util/log.js';
import { sdNotifier, SdNotifier } from '../daemon/sd-notify.js';

export class CheckError extends Error {}

type Mode = { kind: 'create' } | { kind: 'open' } | { kind: 'join-token'; token: string } | { kind: 'join-local'; member: LocalEntry } | { kind: 'join-peer' } | { kind: 'join-lan' };

/** Tokens are a few hundred bytes; a larger "token" file is the wrong file. */
const MAX_TOKEN_FILE = 64 << 10;

/**
 * The join token from where --join / --join-file said: the first non-empty line of FILE or of
 * stdin (a terminal gets a prompt on stderr), so it never has to be on the command line.
 */
async function readToken(from: NonNullable<RunArgs['join']>): Promise<string> {
  if ('token' in from) return from.token;
  const flag = 'file' in from ? '--join-file' : '--join -';
  let text: string;
  if ('file' in from) {
    try {
      const st = await stat(from.file);
      // Not only regular files: `--join-file <(pass show token)` is a pipe.
      if (st.isDirectory()) throw new CheckError(`--join-file: ${from.file} is a directory; give the file that holds the token`);
      if (st.isFile() && st.size > MAX_TOKEN_FILE) throw new CheckError(`--join-file: ${from.file} is ${st.size} bytes, too large for a token; give the file "delugefs invite" printed`);
      text = await readFile(from.file, 'utf8');
    } catch (e) {
      if (e instanceof CheckError) throw e;
      throw new CheckError(`--join-file: cannot read ${from.file}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
    }
  } else {
    if (process.stdin.isTTY) process.stderr.write('delugefs: paste the join token and press Enter: ');
    text = await readFirstLine(process.stdin, MAX_TOKEN_FILE);
  }
  const line = text.split('\n').map((l) => l.trim()).find(Boolean);
  if (!line) throw new CheckError(`${flag}: no token found (expected the line "delugefs invite" printed)`);
  return line;
}

/** Reads a stream up to its first non-empty line (or its end), then lets go of it. */
function readFirstLine(s: NodeJS.ReadStream, max: number): Promise<string> {
  return new Promise((resolve, reject) => {
    let buf = '';
    const done = (err?: Error) => {
      s.off('data', onData).off('end', onEnd).off('error', onError);
      // Paused and unreferenced: a terminal or pipe left open must not keep the node's loop alive for it.
      s.pause();
      (s as { unref?: () => void }).unref?.();
      if (err) reject(err);
      else resolve(buf);
    };
    const onData = (c: Buffer | string) => {
      buf += c.toString();
      if (buf.length > max) return done(new CheckError('--join -: stdin holds more than a token; give the line "delugefs invite" printed'));
      if (/\S[^\n]*\n/.test(buf)) done();
    };
    const onEnd = () => done();
    const onError = (e: Error) => done(new CheckError(`--join -: cannot read stdin: ${e.message}`));
    s.setEncoding('utf8');
    s.on('data', onData).on('end', onEnd).on('error', onError);
  });
}

/** The LAN join (join-lan.ts) with Ctrl-C / SIGTERM ending the wait at once (the root is then cleaned up as for any failed join). */
async function lanJoin(root: string, repo: string, a: RunArgs, log: ReturnType<typeof createLogger>): Promise<Joined> {
  const ac = new AbortController();
  const onSig = () => ac.abort();
  process.once('SIGINT', onSig).once('SIGTERM', onSig);
  try {
    return await joinOverLan(root, repo, {
      cluster: a.cluster, interface: a.interface, log, waitMs: a.joinWaitMs ?? 10 * 60_000, signal: ac.signal,
      say: (line) => void process.stderr.write(`delugefs: ${line}\n`),
    });
  } finally {
    process.off('SIGINT', onSig).off('SIGTERM', onSig);
  }
}

/** Tests shorten how long LAN join requests live (DFS_JOIN_IDLE_MS, DFS_JOIN_MAX_AGE_MS); not a user setting. */
function joinLimitsFromEnv(): { idleMs?: number; maxAgeMs?: number } {
  const ms = (v: string | undefined) => (v && /^\d{3,9}$/.test(v) ? Number(v) : undefined);
  return { idleMs: ms(process.env.DFS_JOIN_IDLE_MS), maxAgeMs: ms(process.env.DFS_JOIN_MAX_AGE_MS) };
}

export async function runNode(a: RunArgs): Promise<void> {
  const root = resolve(a.root);
  const mnt = a.mount ? resolve(a.mount) : undefined;
  let log = createLogger({ cluster: a.cluster }, a.logLevel);
  // Read (and taken out of the environment) before any child process starts.
  let sd: SdNotifier | null;
  try {
    sd = sdNotifier();
  } catch (e) {
    throw new CheckError((e as Error).message);
  }
  const notify = (fields: Record<string, string>) => {
    const error = sd?.notify(fields);
    if (error) log.warn('systemd.notify_failed', { socket: sd!.address, state: Object.keys(fields).join(','), error });
  };

  const token = a.join ? await readToken(a.join) : undefined;
  const state = await inspectRoot(root);
  let mode: Mode;
  if (a.create) {
    if (state.kind === 'node') throw new CheckError(`--create: ${root} already holds a node of cluster "${state.config.cluster}"; start it without --create`);
    if (state.kind === 'foreign') throw new CheckError(`--create: ${root} cannot hold a new cluster: ${state.what}; use an empty or missing directory`);
    mode = { kind: 'create' };
  } else if (state.kind === 'missing' || state.kind === 'empty') {
    const local = token === undefined ? await findLocalMember(a.cluster) : undefined;
    const member = local?.member;
    // What made a local member unusable (an unsafe registry, a foreign socket) is the user's to know.
    for (const p of local?.problems ?? []) log.warn('join.local.refused', { reason: p });
    if (token !== undefined) {
      try {
        checkToken(token, a.cluster);
      } catch (e) {
        throw new CheckError((e as Error).message);
      }
      mode = { kind: 'join-token', token };
    }
    else if (member) mode = { kind: 'join-local', member };
    else if (a.peers.length) mode = { kind: 'join-peer' };
    // No token, no local member, no --peer: ask the members on the LAN; an operator approves.
    else if (a.mdns) mode = { kind: 'join-lan' };
    else {
      const why = local?.problems.length ? ` No local member could be used: ${local.problems.join('; ')}.` : '';
      throw new CheckError(`${root} is not a DelugeFS root. To start a new cluster there, add --create. ` +
        `To join cluster "${a.cluster}", run "delugefs invite MEMBER_ROOT" on a running member and start this node with --join-file FILE (or --join TOKEN) ` +
        `(a second disk needs no token while a member of "${a.cluster}" runs on this machine).${why}`);
    }
  } else {
    if (state.kind === 'foreign') throw new CheckError(`${root} is not a DelugeFS root: ${state.what}`);
    if (state.config.cluster !== a.cluster) {
      throw new CheckError(`${root} belongs to cluster "${state.config.cluster}", not "${a.cluster}"`);
    }
    if (token !== undefined) throw new CheckError(`--join: ${root} is already node ${state.config.nodeId} of cluster "${a.cluster}"; start it without --join`);
    mode = { kind: 'open' };
  }
  if (a.interface !== undefined) {
    try {
      resolveInterface(a.interface);
    } catch (e) {
      throw new CheckError(`--interface: ${(e as Error).message}`);
    }
  }
  if (mnt) {
    if (mnt === root || mnt.startsWith(root + '/') || root.startsWith(mnt + '/')) throw new CheckError(`the mount point and the root must not contain each other`);
    await checkMountpoint(mnt).catch((e) => { throw new CheckError((e as Error).message); });
    await loadFuse().catch((e) => { throw new CheckError((e as Error).message); });
  }
  const { server: btListener, port } = await listenFirstFree(a.port).catch((e) => { throw new CheckError((e as Error).message); });

  const p = paths(root);
  let release: () => Promise<void>;
  let config: NodeConfig;
  let joined: Joined | undefined;
  if (mode.kind === 'open') {
    release = await acquireLock(p).catch((e) => { btListener.close(); throw new CheckError((e as Error).message); });
    config = (state as { config: NodeConfig }).config;
  } else {
    // A join that fails leaves the root as it found it (a key from `delugefs key` stays).
    const before = new Set(state.kind === 'empty' ? await readdir(root) : []);
    config = await createLayout(p, a.cluster);
    release = await acquireLock(p);
    if (mode.kind !== 'create') {
      try {
        const repo = join(p.meta, 'repo.git');
        joined = mode.kind === 'join-token' ? await joinWithToken(root, repo, a.cluster, mode.token)
          : mode.kind === 'join-local' ? await joinLocal(root, repo, a.cluster, mode.member)
          : mode.kind === 'join-lan' ? await lanJoin(root, repo, a, log)
          : await joinFromPeer(root, repo, a.peers);
      } catch (e) {
        await release();
        btListener.close();
        // The key stays when a member admitted it (or it was there before), so a retry is the same node.
        // A LAN request's key stays too: asking again with it shows the same code.
        const keep = (n: string) => before.has(n) || (n === 'identity' && (mode.kind === 'join-peer' || mode.kind === 'join-lan' || (e instanceof JoinError && e.keepKey)));
        for (const n of await readdir(root)) if (!keep(n)) await rm(join(root, n), { recursive: true, force: true });
        if (state.kind === 'missing' && !(await readdir(root)).length) await rm(root, { recursive: true, force: true });
        if (mode.kind === 'join-lan' && e instanceof JoinError) {
          // Nobody answered: maybe a typo of a root meant to be created.
          const create = e.noMember ? `${root} is not a DelugeFS root. To start a new cluster there, add --create. ` : '';
          throw new CheckError(`${create}${e.message}. Other ways to join cluster "${a.cluster}": run "delugefs invite MEMBER_ROOT" on a running member and start this node with --join-file FILE (or --join TOKEN)`);
        }
        throw e instanceof JoinError ? new CheckError(e.message) : e;
      }
    }
  }
  log = log.child({ node: config.nodeId });
  if (joined) log.info('node.joined', { via: joined.via, inviter: joined.inviter, head: joined.head });

  const daemon = new Daemon(log);
  // The lock, the hash workers and the reserved port go after everything else.
  daemon.onStop('lock', () => release());
  daemon.onStop('hashers', () => closeHashers());
  daemon.onStop('port', async () => { btListener.close(); });
  let stopping: Promise<void> | null = null;
  const stop = (why: string) => {
    if (!stopping) {
      notify({ STOPPING: '1', STATUS: `stopping (${why})` });
      stopping = daemon.stop(why);
    }
    return stopping;
  };
  for (const sig of ['SIGINT', 'SIGTERM'] as const) {
    process.on(sig, () => {
      if (stopping) {
        log.warn('node.kill', { signal: sig });
        process.exit(130);
      }
      void stop(sig).then(() => process.exit(0), (e) => {
        log.error('node.stop.failed', { error: (e as Error).message });
        process.exit(1);
      });
    });
  }

  await daemon.start({
    paths: p, config, log, create: mode.kind === 'create', verifyReads: a.verifyReads,
    afterNode: (node) => {
      if ((mode.kind !== 'join-peer' && mode.kind !== 'join-lan') || !joined) return;
      // The host key was taken on first use: the repository it served must name it a member, and us too.
      const m = new Membership(node.ns as never);
      const inviter = m.get(joined.inviter);
      if (!inviter || !m.get(config.nodeId)) {
        throw new CheckError(`the node at ${joined.via} did not admit this node (run "delugefs authorize" on a member first)`);
      }
      // The key we fetched from must be the member record's own, not just one of the same id.
      if (joined.peerKey && !parsePublicKeyLine(inviter.publicKey).blob.equals(joined.peerKey)) {
        throw new CheckError(`the node at ${joined.via} showed a host key that is not member ${joined.inviter}'s in the records it served: not joining`);
      }
    },
    cluster: { sshPort: a.sshPort, btPort: port, interface: a.interface, peers: a.peers, mdns: a.mdns, create: mode.kind === 'create', joinLimits: joinLimitsFromEnv() },
    // The swarm takes over the BitTorrent port reserved during the checks.
    releasePort: () => new Promise((r) => btListener.close(() => r())),
    mount: mnt ? { dir: mnt, cluster: a.cluster, allowOther: a.allowOther, passthrough: a.passthrough } : undefined,
    web: a.webPort !== undefined ? { port: a.webPort, bind: a.webBind ?? '127.0.0.1' } : undefined,
    replication: { deadAfterMs: a.deadAfterMs, auditMs: a.auditMs, gcGraceMs: a.gcGraceMs, zone: a.zone, cacheBytes: a.cacheBytes, scrubRate: a.scrubRate, scrubPauseMs: a.scrubPauseMs, healRate: a.healRate },
  });
  const { swarm, cluster } = daemon as Required<Daemon>;
  const ready = { cluster: a.cluster, node: config.nodeId, root, mount: mnt ?? null, port: swarm.port, sshPort: cluster.sshPort };
  log.info('node.ready', ready);
  process.stdout.write(a.json ? JSON.stringify({ event: 'ready', ...ready }) + '\n'
    : `delugefs: node ${config.nodeId} of cluster ${a.cluster} ready: root ${root}, ${mnt ? `mounted on ${mnt}` : 'storage only'}, BitTorrent port ${swarm.port}, SSH port ${cluster.sshPort}\n`);
  // Only now: the mount has answered the kernel's INIT, so a unit ordered After= this one finds it.
  if (!stopping) notify({ READY: '1', STATUS: `node ${config.nodeId} of cluster ${a.cluster} ready, ${mnt ? `mounted on ${mnt}` : 'storage only'}` });
}


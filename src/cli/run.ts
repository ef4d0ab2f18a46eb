// `delugefs CLUSTER ROOT [MOUNTPOINT]`: every check first (nothing is touched until all pass),
// then the node (created, joined or opened), the cluster (SSH, discovery, sync), the mount, and a
// clean stop on SIGINT/SIGTERM.
import { resolve, join } from 'node:path';
import { readdir, rm } from 'node:fs/promises';
import type { RunArgs } from './args.js';
import { acquireLock, createLayout, inspectRoot, paths, NodeConfig } from '../node/layout.js';
import { DelugeNode } from '../node/node.js';
import { ClusterNode } from '../node/cluster-node.js';
import { SwarmLink } from '../node/swarm-link.js';
import { joinWithToken, joinLocal, joinFromPeer, checkToken, JoinError, Joined } from '../node/join-root.js';
import { resolveInterface } from '../cluster/discovery.js';
import { findLocalMember, LocalEntry } from '../cluster/local-registry.js';
import { Membership } from '../cluster/membership.js';
import { listenFirstFree } from '../node/port.js';
import { checkMountpoint, loadFuse, mount, Mounted } from '../fuse/mount.js';
import { closeHashers } from '../content/hasher.js';
import { createLogger } from '../util/log.js';

export class CheckError extends Error {}

type Mode = { kind: 'create' } | { kind: 'open' } | { kind: 'join-token'; token: string } | { kind: 'join-local'; member: LocalEntry } | { kind: 'join-peer' };

export async function runNode(a: RunArgs): Promise<void> {
  const root = resolve(a.root);
  const mnt = a.mount ? resolve(a.mount) : undefined;
  let log = createLogger({ cluster: a.cluster }, a.logLevel);

  const state = await inspectRoot(root);
  let mode: Mode;
  if (a.create) {
    if (state.kind === 'node') throw new CheckError(`--create: ${root} already holds a node of cluster "${state.config.cluster}"; start it without --create`);
    if (state.kind === 'foreign') throw new CheckError(`--create: ${root} cannot hold a new cluster: ${state.what}; use an empty or missing directory`);
    mode = { kind: 'create' };
  } else if (state.kind === 'missing' || state.kind === 'empty') {
    const member = a.join === undefined ? await findLocalMember(a.cluster) : undefined;
    if (a.join !== undefined) {
      try {
        checkToken(a.join, a.cluster);
      } catch (e) {
        throw new CheckError((e as Error).message);
      }
      mode = { kind: 'join-token', token: a.join };
    }
    else if (member) mode = { kind: 'join-local', member };
    else if (a.peers.length) mode = { kind: 'join-peer' };
    else {
      throw new CheckError(`${root} is not a DelugeFS root. To start a new cluster there, add --create. ` +
        `To join cluster "${a.cluster}", run "delugefs invite MEMBER_ROOT" on a running member and start this node with --join TOKEN ` +
        `(a second disk needs no token while a member of "${a.cluster}" runs on this machine).`);
    }
  } else {
    if (state.kind === 'foreign') throw new CheckError(`${root} is not a DelugeFS root: ${state.what}`);
    if (state.config.cluster !== a.cluster) {
      throw new CheckError(`${root} belongs to cluster "${state.config.cluster}", not "${a.cluster}"`);
    }
    if (a.join !== undefined) throw new CheckError(`--join: ${root} is already node ${state.config.nodeId} of cluster "${a.cluster}"; start it without --join`);
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
          : mode.kind === 'join-local' ? await joinLocal(root, repo, mode.member)
          : await joinFromPeer(root, repo, a.peers);
      } catch (e) {
        await release();
        btListener.close();
        // The key stays when a member admitted it (or it was there before), so a retry is the same node.
        const keep = (n: string) => before.has(n) || (n === 'identity' && (mode.kind === 'join-peer' || (e instanceof JoinError && e.keepKey)));
        for (const n of await readdir(root)) if (!keep(n)) await rm(join(root, n), { recursive: true, force: true });
        if (state.kind === 'missing' && !(await readdir(root)).length) await rm(root, { recursive: true, force: true });
        throw e instanceof JoinError ? new CheckError(e.message) : e;
      }
    }
  }
  log = log.child({ node: config.nodeId });
  if (joined) log.info('node.joined', { via: joined.via, inviter: joined.inviter, head: joined.head });

  let node: DelugeNode | undefined;
  let cluster: ClusterNode | undefined;
  let swarm: SwarmLink | undefined;
  let mounted: Mounted | undefined;
  let stopping: Promise<void> | null = null;
  const stop = (why: string) => {
    stopping ??= (async () => {
      log.info('node.stopping', { reason: why });
      try {
        await mounted?.unmount();
      } catch (e) {
        log.error('fuse.unmount.failed', { error: (e as Error).message });
      }
      await swarm?.close();
      await cluster?.close();
      await node?.close();
      btListener.close();
      await closeHashers();
      await release();
      log.info('node.stopped', {});
    })();
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

  try {
    node = await DelugeNode.start({ paths: p, config, log, create: mode.kind === 'create' });
    if (mode.kind === 'join-peer' && joined) {
      // The host key was taken on first use: the repository it served must name it a member, and us too.
      const m = new Membership(node.ns as never);
      if (!m.get(joined.inviter) || !m.get(config.nodeId)) {
        throw new CheckError(`the node at ${joined.via} did not admit this node (run "delugefs authorize" on a member first)`);
      }
    }
    cluster = await ClusterNode.start(node, p, config, log, {
      sshPort: a.sshPort, btPort: port, interface: a.interface, peers: a.peers, mdns: a.mdns, create: mode.kind === 'create',
    });
    // The swarm takes over the BitTorrent port reserved during the checks.
    await new Promise((r) => btListener.close(r));
    swarm = await SwarmLink.start(node, cluster, { root, clusterName: a.cluster, port, log });
    if (mnt) mounted = await mount(node, mnt, { cluster: a.cluster, allowOther: a.allowOther }, log);
  } catch (e) {
    await stop('start failed').catch(() => {});
    throw e;
  }
  const ready = { cluster: a.cluster, node: config.nodeId, root, mount: mnt ?? null, port: swarm.port, sshPort: cluster.sshPort };
  log.info('node.ready', ready);
  process.stdout.write(a.json ? JSON.stringify({ event: 'ready', ...ready }) + '\n'
    : `delugefs: node ${config.nodeId} of cluster ${a.cluster} ready: root ${root}, ${mnt ? `mounted on ${mnt}` : 'storage only'}, BitTorrent port ${swarm.port}, SSH port ${cluster.sshPort}\n`);
}


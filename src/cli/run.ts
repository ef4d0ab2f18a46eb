// `delugefs CLUSTER ROOT [MOUNTPOINT]`: every check first (nothing is touched until all pass),
// then the node, the port, the mount, and a clean stop on SIGINT/SIGTERM.
import { resolve } from 'node:path';
import type { RunArgs } from './args.js';
import { acquireLock, createLayout, inspectRoot, paths } from '../node/layout.js';
import { DelugeNode } from '../node/node.js';
import { listenFirstFree } from '../node/port.js';
import { checkMountpoint, loadFuse, mount, Mounted } from '../fuse/mount.js';
import { closeHashers } from '../content/hasher.js';
import { createLogger } from '../util/log.js';

export class CheckError extends Error {}

export async function runNode(a: RunArgs): Promise<void> {
  const root = resolve(a.root);
  const mnt = a.mount ? resolve(a.mount) : undefined;
  let log = createLogger({ cluster: a.cluster }, a.logLevel);

  const state = await inspectRoot(root);
  if (a.create) {
    if (state.kind === 'node') throw new CheckError(`--create: ${root} already holds a node of cluster "${state.config.cluster}"; start it without --create`);
    if (state.kind === 'foreign') throw new CheckError(`--create: ${root} cannot hold a new cluster: ${state.what}; use an empty or missing directory`);
  } else {
    if (state.kind === 'missing' || state.kind === 'empty') {
      throw new CheckError(`${root} is not a DelugeFS root. To start a new cluster there, add --create.`);
    }
    if (state.kind === 'foreign') throw new CheckError(`${root} is not a DelugeFS root: ${state.what}`);
    if (state.config.cluster !== a.cluster) {
      throw new CheckError(`${root} belongs to cluster "${state.config.cluster}", not "${a.cluster}"`);
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
  let config;
  if (a.create) {
    config = await createLayout(p, a.cluster);
    release = await acquireLock(p);
  } else {
    release = await acquireLock(p).catch((e) => { throw new CheckError((e as Error).message); });
    config = (state as { config: import('../node/layout.js').NodeConfig }).config;
  }
  log = log.child({ node: config.nodeId });

  let node: DelugeNode | undefined;
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
    node = await DelugeNode.start({ paths: p, config, log, create: a.create });
    if (mnt) mounted = await mount(node, mnt, { cluster: a.cluster, allowOther: a.allowOther }, log);
  } catch (e) {
    await stop('start failed').catch(() => {});
    throw e;
  }
  const ready = { cluster: a.cluster, node: config.nodeId, root, mount: mnt ?? null, port };
  log.info('node.ready', ready);
  process.stdout.write(a.json ? JSON.stringify({ event: 'ready', ...ready }) + '\n'
    : `delugefs: node ${config.nodeId} of cluster ${a.cluster} ready: root ${root}, ${mnt ? `mounted on ${mnt}` : 'storage only'}, BitTorrent port ${port}\n`);
}

// A running node, wired in one place: the start order (node, cluster, swarm, replication, mount)
// and one list of closers run in reverse on stop, so whatever started is stopped, also when a
// later part fails to start. `cli/run.ts` does the checks and the join before this, and the
// signals after.
import type { Logger } from '../util/log.js';
import type { NodeConfig, RootPaths } from '../node/layout.js';
import { DelugeNode } from '../node/node.js';
import { ClusterNode, ClusterOptions } from '../node/cluster-node.js';
import type { JoinRequests } from '../cluster/join-requests.js';
import { SwarmLink } from '../node/swarm-link.js';
import { Replication, ReplicationOptions } from '../replication/replication.js';
import { mount, Mounted } from '../fuse/mount.js';
import { serveHealth } from './health-method.js';
import { serveConflicts } from './conflicts.js';
import { servePeers } from './peers.js';
import { healthOf } from './health-method.js';
import { FuseMetrics, renderMetrics } from './metrics.js';
import { startWeb } from './web.js';
import { serveDirList } from './dir-list.js';
import { inProcessCaller, WEB_INFO } from '../web/methods.js';
import { loadOrCreateToken } from '../web/token.js';
import { serve } from './methods.js';
import { localOnly } from '../cluster/control-socket.js';
import { FSCK, WHEREIS } from '../replication/methods.js';

export interface DaemonOptions {
  paths: RootPaths;
  config: NodeConfig;
  log: Logger;
  create: boolean;
  /** Stored pieces checked against their hashes before reads get them (default on). */
  verifyReads?: boolean;
  cluster: ClusterOptions;
  /** Runs after the node opened, before anything listens (e.g. a join's admission check). */
  afterNode?: (node: DelugeNode) => void;
  /** Frees the BitTorrent port reserved during the checks, just before the swarm takes it. */
  releasePort?: () => Promise<void>;
  replication?: ReplicationOptions;
  mount?: { dir: string; cluster: string; allowOther: boolean; passthrough?: boolean };
  /** The web port (metrics, the dashboard); none unless given. */
  web?: { port: number; bind: string };
}

export class Daemon {
  node?: DelugeNode;
  cluster?: ClusterNode;
  swarm?: SwarmLink;
  replication?: Replication;
  mounted?: Mounted;
  private readonly closers: { name: string; close: () => Promise<unknown> }[] = [];
  private stopping: Promise<void> | null = null;

  constructor(private readonly log: Logger) {}

  /** LAN join requests waiting for approval (list/approve/refuse/onChange), once the cluster runs: for the dashboard. */
  get joins(): JoinRequests | undefined {
    return this.cluster?.joins;
  }

  /** Runs `close` on stop (after everything started later); closers added first run last. */
  onStop(name: string, close: () => Promise<unknown>): void {
    this.closers.push({ name, close });
  }

  /**
   * Starts every part in order. On a failure everything already started is stopped (closers
   * added before start() too), and then the error is thrown.
   */
  async start(o: DaemonOptions): Promise<this> {
    try {
      const node = (this.node = await DelugeNode.start({ paths: o.paths, config: o.config, log: o.log, create: o.create, verifyReads: o.verifyReads }));
      this.onStop('node', () => node.close());
      o.afterNode?.(node);
      const cluster = (this.cluster = await ClusterNode.start(node, o.paths, o.config, o.log, o.cluster));
      this.onStop('cluster', () => cluster.close());
      serveConflicts(node, cluster);
      serveDirList(node, cluster);
      await o.releasePort?.();
      const swarm = (this.swarm = await SwarmLink.start(node, cluster, { root: o.paths.root, clusterName: o.config.cluster, port: o.cluster.btPort, log: o.log, backgroundRate: o.replication?.healRate }));
      this.onStop('swarm', () => swarm.close());
      const replication = (this.replication = await Replication.start(node, cluster, swarm, o.log, o.replication));
      this.onStop('replication', () => replication.close());
      serveHealth(node, cluster, replication);
      servePeers(cluster, swarm, replication);
      serve(cluster.rpc, WHEREIS, (p, peer) => {
        localOnly(peer, 'whereis');
        return replication.where(p.paths, o.mount?.dir ?? null);
      });
      serve(cluster.rpc, FSCK, (p, peer) => {
        localOnly(peer, 'fsck');
        return p.action === 'start' ? replication.fsck.start(p) : p.action === 'stop' ? replication.fsck.stop() : replication.fsck.status();
      });
      const fuse = o.web && o.mount ? new FuseMetrics() : null;
      if (o.web) {
        const me = cluster.identity.nodeId;
        // Made before the port opens, so `delugefs dashboard` finds it once the node is ready.
        const token = await loadOrCreateToken(o.paths.root);
        const web = await startWeb({
          port: o.web.port, bind: o.web.bind, log: o.log,
          dashboard: { call: inProcessCaller(cluster.rpc), token, joins: cluster.joins },
          metrics: async () => {
            const space = await node.store.space();
            const r = replication.summary();
            return renderMetrics({
              node: me, machine: cluster.membership.get(me)?.hostname ?? '', health: healthOf(node, cluster, replication), disk: { total: space.total, free: space.available },
              swarm: swarm.swarm.totals(), replication: { fetching: r.fetching, queued: r.queued, scrubBytes: replication.scrub.stats.bytes, scrubBad: replication.scrub.stats.bad },
              commits: node.ns.counts.commits, merges: node.ns.counts.merges, fuse,
            });
          },
        });
        this.onStop('web', () => web.close());
        const bind = o.web.bind;
        serve(cluster.rpc, WEB_INFO, (_p, peer) => {
          localOnly(peer, 'web_info');
          return { port: web.port, bind };
        });
      }
      if (o.mount) {
        const mounted = (this.mounted = await mount(node, o.mount.dir, { cluster: o.mount.cluster, allowOther: o.mount.allowOther, passthrough: o.mount.passthrough, onDone: fuse?.observe }, o.log));
        this.onStop('mount', () => mounted.unmount());
      }
    } catch (e) {
      await this.stop('start failed').catch(() => {});
      throw e;
    }
    return this;
  }

  /** Stops everything in reverse start order; a part that fails to stop is logged, the rest still stop. */
  stop(why: string): Promise<void> {
    this.stopping ??= (async () => {
      this.log.info('node.stopping', { reason: why });
      for (const c of this.closers.splice(0).reverse()) {
        try {
          await c.close();
        } catch (e) {
          this.log.error('node.stop.part_failed', { part: c.name, error: (e as Error).message });
        }
      }
      this.log.info('node.stopped', {});
    })();
    return this.stopping;
  }
}

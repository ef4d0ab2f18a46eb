// The `health` method of the control socket (local callers only): what the node, the cluster
// and replication know, judged by health.ts. `delugefs status` calls it.
import { method, obj, serve } from './methods.js';
import { localOnly } from '../cluster/control-socket.js';
import { judgeHealth, Health } from './health.js';
import type { DelugeNode } from '../node/node.js';
import type { ClusterNode } from '../node/cluster-node.js';
import type { Replication } from '../replication/replication.js';
import type { DirNode } from '../meta/tree.js';
import { CONFLICT_TAG } from '../meta/merge.js';

export const HEALTH = method('health', () => null, (v): Health => {
  const o = obj(v, 'reply');
  if (!['OK', 'WARN', 'ERROR'].includes(o.verdict as string) || !Array.isArray(o.checks)) throw new Error('not a health reply');
  return o as unknown as Health;
});

/** Files (any non-directory name), directories, bytes of regular files and conflict copies, in one walk. */
export function countNamespace(root: DirNode): Health['namespace'] {
  const out = { files: 0, dirs: 0, bytes: 0, conflicts: 0 };
  const stack: DirNode[] = [root];
  while (stack.length) {
    const d = stack.pop()!;
    for (const [name, c] of d.children) {
      if (name.includes(CONFLICT_TAG)) out.conflicts++;
      if (c.kind === 'dir') {
        out.dirs++;
        stack.push(c);
      } else {
        out.files++;
        if (c.entry.type === 'file') out.bytes += c.entry.info.length;
      }
    }
  }
  return out;
}

/** The health verdict from what the node, the cluster and replication know now (status and metrics both use it). */
export function healthOf(node: DelugeNode, cluster: ClusterNode, replication: Replication): Health {
  const m = cluster.membership;
  const r = replication.summary();
  return judgeHealth({
    cluster: node.opts.config.cluster, nodeId: cluster.identity.nodeId, head: node.ns.head,
    members: m.list().filter((x) => !m.isRevoked(x.nodeId)).map((x) => x.nodeId),
    round: r.round, nearFull: r.nearFull, fetching: r.fetching, queued: r.queued,
    sync: cluster.sync.peerHeads(),
    namespace: countNamespace(node.ns.tree.root),
    joins: cluster.joins.list(),
    transfers: { ...replication.rates(), copies: replication.progress() },
  });
}

export function serveHealth(node: DelugeNode, cluster: ClusterNode, replication: Replication): void {
  serve(cluster.rpc, HEALTH, (_p, peer) => {
    localOnly(peer, 'health');
    return healthOf(node, cluster, replication);
  });
}

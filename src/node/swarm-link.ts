// Connects a node's content to the cluster over BitTorrent: the node serves what it holds to
// members (each proves its node key in the extension handshake) and reads what it does not hold
// from them, verified piece by piece. Peers come from the member records and from discovery.
import { join } from 'node:path';
import { Swarm } from '../swarm/engine.js';
import { makeWireProof, verifyWireProof } from '../cluster/wire-proof.js';
import { parseHostPort } from '../cluster/static-peers.js';
import type { ClusterNode } from './cluster-node.js';
import type { DelugeNode } from './node.js';
import type { Logger } from '../util/log.js';

export class SwarmLink {
  private constructor(readonly swarm: Swarm, readonly port: number, private readonly node: DelugeNode) {}

  static async start(node: DelugeNode, cluster: ClusterNode, o: { root: string; clusterName: string; port: number; log: Logger }): Promise<SwarmLink> {
    const { identity, membership } = cluster;
    const log = o.log.child({ c: 'swarm' });
    const swarm = new Swarm({
      store: node.store,
      partialDir: join(o.root, 'partial'),
      port: o.port,
      log: (msg) => log.debug('swarm', { msg }),
      auth: {
        prove: (mine, theirs) => makeWireProof(identity, o.clusterName, mine, theirs),
        verify: (proof, mine, theirs) => verifyWireProof(proof, {
          cluster: o.clusterName, myNonce: mine, theirNonce: theirs,
          keyOf: (id) => (membership.isRevoked(id) ? undefined : membership.get(id)?.publicKey),
        }),
      },
      // Content a member asks for that no open transfer has: anything our namespace references.
      resolve: (id) => node.ns.tree.info(id),
    });
    const port = await swarm.listen();
    const link = new SwarmLink(swarm, port, node);
    const me = identity.nodeId;
    const fromRecords = () => {
      for (const m of membership.list()) {
        if (m.nodeId === me || membership.isRevoked(m.nodeId) || !m.btPort) continue;
        for (const a of m.addresses) {
          try {
            swarm.addPeer(parseHostPort(a).host, m.btPort);
          } catch {
            log.warn('swarm.peer.bad_address', { node: m.nodeId, address: a });
          }
        }
      }
    };
    fromRecords();
    node.ns.on('commit', fromRecords); // every new head: a local admit or a merge that brought records
    cluster.discovery.peers.on('peer', (p) => { if (p.nodeId !== me && p.btPort) swarm.addPeer(p.host, p.btPort); });
    node.setRemote({ read: (id, info, s, e, signal) => swarm.read(id, info, s, e, signal), fetch: (id, info) => swarm.fetch(id, info) });
    log.info('swarm.listening', { port });
    return link;
  }

  async close(): Promise<void> {
    this.node.setRemote(null);
    await this.swarm.close();
  }
}

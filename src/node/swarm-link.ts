// Connects a node's content to the cluster over BitTorrent: the node serves what it holds to
// members (TLS 1.3 with the node keys, checked against the member records) and reads what it
// does not hold from them, verified piece by piece. Peers come from the member records and from
// discovery. Nothing is shared with outsiders (no `shared`): a plaintext peer gets nothing. When
// the records change (a revocation merged), connections of nodes no longer members are dropped.
import { join } from 'node:path';
import { Swarm } from '../swarm/engine.js';
import { memberWire } from '../cluster/wire-auth.js';
import { parseHostPort } from '../cluster/static-peers.js';
import type { ClusterNode } from './cluster-node.js';
import type { DelugeNode } from './node.js';
import type { Logger } from '../util/log.js';
import { FsError } from '../util/errors.js';

/** How long one read through the mount waits for pieces held elsewhere (DELUGEFS_READ_DEADLINE_MS for tests). */
const READ_DEADLINE_MS = Number(process.env.DELUGEFS_READ_DEADLINE_MS) || 30_000;

/**
 * Where a member's swarm listens, as its record says: each of its addresses' hosts at its
 * BitTorrent port (none before it reported one); a malformed address goes to `bad`.
 */
export function swarmAddresses(m: { addresses: string[]; btPort?: number }, bad: (address: string) => void = () => {}): { host: string; port: number }[] {
  if (!m.btPort) return [];
  const out: { host: string; port: number }[] = [];
  for (const a of m.addresses) {
    try {
      out.push({ host: parseHostPort(a).host, port: m.btPort });
    } catch {
      bad(a);
    }
  }
  return out;
}

export class SwarmLink {
  private offs: Array<() => void> = [];

  private constructor(readonly swarm: Swarm, readonly port: number, private readonly node: DelugeNode) {}

  static async start(node: DelugeNode, cluster: ClusterNode, o: { root: string; clusterName: string; port: number; log: Logger; backgroundRate?: number }): Promise<SwarmLink> {
    const { identity, membership } = cluster;
    const log = o.log.child({ c: 'swarm' });
    const swarm = new Swarm({
      store: node.store,
      partialDir: join(o.root, 'partial'),
      port: o.port,
      log: (level, event, fields) => log[level](event, fields),
      secure: memberWire(identity, (id) => (membership.isRevoked(id) ? undefined : membership.get(id)?.publicKey)),
      // Content a member asks for that no open transfer has: anything our namespace references.
      resolve: (id) => node.ns.tree.info(id),
      backgroundRate: o.backgroundRate,
    });
    const port = await swarm.listen();
    const link = new SwarmLink(swarm, port, node);
    const me = identity.nodeId;
    const fromRecords = () => {
      for (const m of membership.list()) {
        if (m.nodeId === me || membership.isRevoked(m.nodeId)) continue;
        for (const a of swarmAddresses(m, (address) => log.warn('swarm.peer.bad_address', { node: m.nodeId, address }))) swarm.addPeer(a.host, a.port);
      }
    };
    fromRecords();
    const revalidate = () => {
      const n = swarm.revalidate();
      if (n) log.info('swarm.members_dropped', { connections: n });
    };
    // Every new head (a local admit or revoke commits, a merge brings records) is looked at, but
    // acted on only when the member records changed: the evaluated view is the same object until
    // then. Revalidating every connection (a key check each) on every commit and view was a tenth
    // of a busy 16-node cluster's CPU.
    const onHead = membership.watch(() => {
      fromRecords();
      revalidate();
    });
    node.ns.on('commit', onHead);
    node.ns.on('records', onHead);
    link.offs.push(() => node.ns.off('commit', onHead), () => node.ns.off('records', onHead));
    cluster.discovery.peers.on('peer', (p) => { if (p.nodeId !== me && p.btPort) swarm.addPeer(p.host, p.btPort); });
    node.setRemote({
      // A read no member can serve (every holder down) fails with EIO after READ_DEADLINE_MS
      // instead of leaving the reader in uninterruptible sleep on the mount for good.
      // One controller and timer per read, both gone when it ends: AbortSignal.timeout/any per
      // read (thousands per GiB) left a live 30 s timer and weak references each for the GC.
      read: async (id, info, s, e, signal, into) => {
        const ac = new AbortController();
        let late = false;
        const timer = setTimeout(() => { late = true; ac.abort(new Error('read deadline')); }, READ_DEADLINE_MS);
        const onAbort = () => ac.abort(signal!.reason);
        if (signal?.aborted) onAbort();
        else signal?.addEventListener('abort', onAbort, { once: true });
        try {
          return await swarm.read(id, info, s, e, ac.signal, into);
        } catch (err) {
          if (!late) throw err;
          log.warn('swarm.read.timeout', { id, start: s, end: e, ms: READ_DEADLINE_MS, why: 'no member that holds these pieces answered; the read fails with EIO' });
          throw new FsError('EIO', `no member served ${id} bytes ${s}-${e} within ${READ_DEADLINE_MS / 1000} s`);
        } finally {
          clearTimeout(timer);
          signal?.removeEventListener('abort', onAbort);
        }
      },
      fetch: (id, info) => swarm.fetch(id, info),
    });
    log.info('swarm.listening', { port, backgroundRate: o.backgroundRate || null });
    return link;
  }

  async close(): Promise<void> {
    this.node.setRemote(null);
    for (const off of this.offs.splice(0)) off();
    await this.swarm.close();
  }
}

// One persistent RPC connection per member, for features that call members (replication): made
// on first use from where discovery last saw the member and the fingerprint of its record, and
// made again when either changes. A member discovery does not see, or one removed, has none.
import { RpcClient } from './rpc-client.js';
import type { Identity } from './identity.js';
import type { Membership } from './membership.js';
import type { PeerSet } from './peer-set.js';

export class PeerClients {
  private readonly clients = new Map<string, { at: string; client: RpcClient }>();

  constructor(private readonly o: { identity: Identity; membership: Membership; peers: PeerSet; timeoutMs?: number }) {}

  get(nodeId: string): RpcClient | null {
    const m = this.o.membership.get(nodeId);
    const p = this.o.peers.get(nodeId);
    const old = this.clients.get(nodeId);
    if (!m || !p || this.o.membership.isRevoked(nodeId) || nodeId === this.o.identity.nodeId) {
      if (old) this.drop(nodeId);
      return null;
    }
    const at = `${p.host}:${p.sshPort} ${m.fingerprint}`;
    if (old?.at === at) return old.client;
    if (old) old.client.close();
    const client = new RpcClient({ identity: this.o.identity, host: p.host, port: p.sshPort, hostFingerprint: m.fingerprint, connectTimeoutMs: 5000, timeoutMs: this.o.timeoutMs ?? 15_000, log: () => {} });
    this.clients.set(nodeId, { at, client });
    return client;
  }

  /** Closes a connection that failed (the next get() opens another). */
  drop(nodeId: string): void {
    this.clients.get(nodeId)?.client.close();
    this.clients.delete(nodeId);
  }

  close(): void {
    for (const c of this.clients.values()) c.client.close();
    this.clients.clear();
  }
}

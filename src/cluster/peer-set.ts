// The set of peers a node currently sees, merged from every discovery source (mDNS, static
// addresses, later: last known addresses of members). A peer is 'lost' only when no source
// still sees it.
import { EventEmitter } from 'node:events';

export type PeerSource = 'mdns' | 'static';

export interface PeerRecord {
  nodeId: string;
  /** Host key fingerprint (`SHA256:...`): the RPC client and known_hosts check against it. */
  fingerprint: string;
  /** Address to connect to. */
  host: string;
  sshPort: number;
  /** Unknown for static peers until asked over RPC. */
  cluster?: string;
  btPort?: number;
  addresses: string[];
  source: PeerSource;
}

export interface PeerSetEvents {
  peer: [PeerRecord];
  lost: [PeerRecord];
  /** A known peer answered again after failing to (a short partition healed before it was lost). */
  back: [string];
}

/** Emits 'peer' when a node is first seen or its record changed, 'lost' when no source sees it. */
export class PeerSet extends EventEmitter<PeerSetEvents> {
  // nodeId -> source -> record
  private seen = new Map<string, Map<PeerSource, PeerRecord>>();

  get(nodeId: string): PeerRecord | undefined {
    const bySource = this.seen.get(nodeId);
    // mDNS wins: it carries the cluster and BitTorrent port too.
    return bySource?.get('mdns') ?? bySource?.get('static');
  }

  list(): PeerRecord[] {
    return [...this.seen.keys()].sort().map((id) => this.get(id)!);
  }

  update(rec: PeerRecord): void {
    const before = this.get(rec.nodeId);
    let bySource = this.seen.get(rec.nodeId);
    if (!bySource) this.seen.set(rec.nodeId, (bySource = new Map()));
    bySource.set(rec.source, rec);
    const after = this.get(rec.nodeId)!;
    if (!before || !sameRecord(before, after)) this.emit('peer', after);
  }

  /** Says a known peer answers again after it did not: whoever backed off from it may go on now. */
  back(nodeId: string): void {
    if (this.seen.has(nodeId)) this.emit('back', nodeId);
  }

  remove(nodeId: string, source: PeerSource): void {
    const bySource = this.seen.get(nodeId);
    const rec = bySource?.get(source);
    if (!bySource || !rec) return;
    bySource.delete(source);
    if (bySource.size === 0) {
      this.seen.delete(nodeId);
      this.emit('lost', rec);
    } else {
      this.emit('peer', this.get(nodeId)!);
    }
  }
}

function sameRecord(a: PeerRecord, b: PeerRecord): boolean {
  return a.fingerprint === b.fingerprint && a.host === b.host && a.sshPort === b.sshPort && a.cluster === b.cluster &&
    a.btPort === b.btPort && a.source === b.source && a.addresses.join() === b.addresses.join();
}

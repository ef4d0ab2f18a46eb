// Cluster membership as records in the replicated metadata repository: 'members/<nodeId>' holds
// who a member is and where it was last seen; 'revoked/<nodeId>' is a tombstone. Revocation is a
// record of its own (never a deletion) so a concurrent edit of the member record cannot undo it:
// a node is a member when its record exists and no tombstone does.
import { nodeIdOf, parsePublicKeyLine, fingerprintOf, isNodeId, publicKeyLineOf } from './identity.js';
import type { Log } from './log.js';

/** What the namespace offers (meta/namespace.ts); an interface so tests can use a Map. */
export interface RecordStore {
  getRecord(path: string): Buffer | undefined;
  listRecords(prefix: string): Map<string, Buffer>;
  setRecord(path: string, data: Buffer | null): Promise<void>;
}

export interface MemberRecord {
  v: 1;
  nodeId: string;
  /** Machine name, for people: several disks of one machine share it. */
  hostname: string;
  /** `ssh-ed25519 AAAA... delugefs:<id>`: client key and host key at once. */
  publicKey: string;
  fingerprint: string;
  /** Last known SSH addresses, HOST:PORT. */
  addresses: string[];
  sshPort: number;
  btPort: number;
  addedAt: string;
  /** Node id of the member that admitted it ('self' for the founder). */
  addedBy: string;
}

export interface Tombstone { v: 1; nodeId: string; revokedAt: string; revokedBy: string }

export const MEMBERS = 'members/';
export const REVOKED = 'revoked/';

/** Canonical bytes (sorted keys): equal records are equal blobs, so merges see no false conflicts. */
export function encodeRecord(o: object): Buffer {
  const sorted = Object.fromEntries(Object.entries(o).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)));
  return Buffer.from(JSON.stringify(sorted) + '\n');
}

/** Parses and checks a member record; throws with the reason when it is not one. */
export function decodeMember(id: string, data: Buffer): MemberRecord {
  const r = JSON.parse(data.toString('utf8')) as MemberRecord;
  if (!r || r.v !== 1 || r.nodeId !== id || !isNodeId(id)) throw new Error('wrong version or node id');
  const key = parsePublicKeyLine(r.publicKey);
  if (nodeIdOf(key.blob) !== id) throw new Error('key does not match the node id');
  if (r.fingerprint !== fingerprintOf(key.blob)) throw new Error('fingerprint does not match the key');
  if (!Array.isArray(r.addresses) || !r.addresses.every((a) => typeof a === 'string')) throw new Error('bad addresses');
  if (typeof r.hostname !== 'string' || typeof r.addedBy !== 'string') throw new Error('bad fields');
  return r;
}

export function newMemberRecord(o: { publicKey: string; hostname: string; addedBy: string; addresses?: string[]; sshPort?: number; btPort?: number; now?: Date }): MemberRecord {
  const blob = parsePublicKeyLine(o.publicKey).blob;
  const nodeId = nodeIdOf(blob);
  return {
    // The joiner names its machine: printable ASCII only, it ends up on operators' terminals.
    v: 1, nodeId, hostname: o.hostname.replace(/[^\x20-\x7e]/g, '?').slice(0, 255), publicKey: publicKeyLineOf(blob), fingerprint: fingerprintOf(blob),
    addresses: o.addresses ?? [], sshPort: o.sshPort ?? 0, btPort: o.btPort ?? 0,
    addedAt: (o.now ?? new Date()).toISOString(), addedBy: o.addedBy === nodeId ? 'self' : o.addedBy,
  };
}

export class Membership {
  private warned = new Set<string>();

  constructor(private readonly store: RecordStore, private readonly log: Log = () => {}) {}

  isRevoked(nodeId: string): boolean {
    return this.store.getRecord(REVOKED + nodeId) !== undefined;
  }

  /** The member record of a node that is not revoked, or undefined. */
  get(nodeId: string): MemberRecord | undefined {
    if (!isNodeId(nodeId) || this.isRevoked(nodeId)) return undefined;
    const data = this.store.getRecord(MEMBERS + nodeId);
    return data ? this.decode(nodeId, data) : undefined;
  }

  /** Current members (not revoked), sorted by node id. */
  list(): MemberRecord[] {
    const out: MemberRecord[] = [];
    for (const [id, data] of [...this.store.listRecords(MEMBERS)].sort(([a], [b]) => (a < b ? -1 : 1))) {
      if (this.isRevoked(id)) continue;
      const r = this.decode(id, data);
      if (r) out.push(r);
    }
    return out;
  }

  revokedIds(): string[] {
    return [...this.store.listRecords(REVOKED).keys()].sort();
  }

  /** Authentication check: the key of a member that is not revoked (the id is derived from the key). */
  hasKey(blob: Buffer): boolean {
    const r = this.get(nodeIdOf(blob));
    return !!r && parsePublicKeyLine(r.publicKey).blob.equals(blob);
  }

  async put(r: MemberRecord): Promise<void> {
    if (this.isRevoked(r.nodeId)) throw new Error(`node ${r.nodeId} was removed from the cluster; a removed node cannot come back with the same key`);
    await this.store.setRecord(MEMBERS + r.nodeId, encodeRecord(r));
  }

  /** Admits a key; an existing record is kept (its history stays), only re-checked. */
  async admit(o: { publicKey: string; hostname: string; addedBy: string; addresses?: string[]; sshPort?: number; btPort?: number }): Promise<MemberRecord> {
    const r = newMemberRecord(o);
    const existing = this.get(r.nodeId);
    if (existing) return existing;
    await this.put(r);
    return r;
  }

  /** Writes the tombstone; the member record stays for history. */
  async revoke(nodeId: string, by: string): Promise<void> {
    if (this.isRevoked(nodeId)) return;
    const t: Tombstone = { v: 1, nodeId, revokedAt: new Date().toISOString(), revokedBy: by };
    await this.store.setRecord(REVOKED + nodeId, encodeRecord(t));
  }

  private decode(id: string, data: Buffer): MemberRecord | undefined {
    try {
      return decodeMember(id, data);
    } catch (e) {
      // A bad record from a peer is ignored (and named once), never fatal.
      if (!this.warned.has(id + data.length)) {
        this.warned.add(id + data.length);
        this.log('member_record_malformed', { nodeId: id.slice(0, 64), error: (e as Error).message });
      }
      return undefined;
    }
  }
}

/** An in-memory RecordStore (tests, and the CLI's dry views). */
export class MapRecordStore implements RecordStore {
  readonly map = new Map<string, Buffer>();
  getRecord(path: string) { return this.map.get(path); }
  listRecords(prefix: string) {
    const out = new Map<string, Buffer>();
    for (const [k, v] of this.map) if (k.startsWith(prefix) && !k.slice(prefix.length).includes('/')) out.set(k.slice(prefix.length), v);
    return out;
  }
  async setRecord(path: string, data: Buffer | null) {
    if (data) this.map.set(path, data);
    else this.map.delete(path);
  }
}

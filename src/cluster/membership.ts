// Cluster membership as records in the replicated metadata repository: 'members/<nodeId>' holds
// who a member is and where it was last seen; 'revoked/<nodeId>' is a tombstone. Revocation is a
// record of its own (never a deletion) so a concurrent edit of the member record cannot undo it:
// a node is a member when its record is valid and no valid tombstone names it.
//
// Records are signed with node keys, so a member cannot write membership it did not sign:
// - a member record carries `admission`, the admitter's signature over (node id, key, admitter,
//   time), and `sig` over the whole record by `signedBy`: the admitter for the first version,
//   the member itself for its updates (addresses, ports, hostname);
// - the founder (the node made with --create) admits itself (`addedBy: 'self'`); there is exactly
//   one self-admitted record, else none counts;
// - a record is admitted when its signatures verify and its admitter is admitted, down to the
//   founder. Revoking a member does not undo the admissions it signed (those stay members; remove
//   them too if its key was stolen): validity is a pure function of the records, the same on
//   every node whatever the order merges came in;
// - a tombstone counts when signed by an admitted node; a member with a tombstone never counts
//   again, whatever record it has.
// Unsigned records (clusters made before signing) count for nothing and are named in the log.
// What a merge may change is checkRecordChange(): records are never removed, tombstones never
// replaced by anything but another valid tombstone, admissions are write-once (but for two
// concurrent admissions of one new key), and a record changes only with its member's signature,
// to a newer version.
import { createHash } from 'node:crypto';
import { nodeIdOf, parsePublicKeyLine, fingerprintOf, isNodeId, publicKeyLineOf, verifySignature } from './identity.js';
import type { Identity } from './identity.js';
import type { Log } from './log.js';

/** What the namespace offers (meta/namespace.ts); an interface so tests can use a Map. */
export interface RecordStore {
  getRecord(path: string): Buffer | undefined;
  listRecords(prefix: string): Map<string, Buffer>;
  setRecord(path: string, data: Buffer | null): Promise<void>;
}

export interface MemberRecord {
  /**
   * When this version was made (ISO, never earlier than the version before). The key sorts first,
   * so of two versions the larger bytes (what merge.ts keeps on a conflict) is the newer one.
   */
  _updatedAt: string;
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
  /** The admitter's signature (base64) over admissionMessage(): write-once. */
  admission: string;
  /** Who signed this version: the admitter (first version) or the member itself (updates). */
  signedBy: string;
  /** Signature (base64) of `signedBy` over recordMessage() of everything else. */
  sig: string;
}

export interface Tombstone { v: 1; nodeId: string; revokedAt: string; revokedBy: string; sig: string }

export const MEMBERS = 'members/';
export const REVOKED = 'revoked/';
/** More member records or tombstones than this in a head is refused (each costs a signature check per merge). */
export const MAX_RECORDS = 10_000;

/** Canonical bytes (sorted keys): equal records are equal blobs, so merges see no false conflicts. */
export function encodeRecord(o: object): Buffer {
  const sorted = Object.fromEntries(Object.entries(o).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)));
  return Buffer.from(JSON.stringify(sorted) + '\n');
}

/** What an admitter signs: the member's id and key, who admits it and when. */
export function admissionMessage(r: Pick<MemberRecord, 'nodeId' | 'publicKey' | 'addedBy' | 'addedAt'>): Buffer {
  return Buffer.from(`delugefs-admission-v1\n${r.nodeId}\n${parsePublicKeyLine(r.publicKey).blob.toString('base64')}\n${r.addedBy}\n${r.addedAt}`);
}

/** What a record's `sig` covers: its path (a tombstone's signature is no member record's) and its other fields. */
export function recordMessage(path: string, r: object): Buffer {
  const { sig: _omit, ...rest } = r as { sig?: unknown };
  return Buffer.concat([Buffer.from(`delugefs-record-v1\n${path}\n`), encodeRecord(rest)]);
}

/** The node whose key signed the admission. */
export function admitterOf(r: Pick<MemberRecord, 'nodeId' | 'addedBy'>): string {
  return r.addedBy === 'self' ? r.nodeId : r.addedBy;
}

const str = (v: unknown) => typeof v === 'string';
const port = (v: unknown) => Number.isInteger(v) && (v as number) >= 0 && (v as number) < 65536;

/** Parses and checks a member record's form (not its signatures); throws with the reason when it is not one. */
export function decodeMember(id: string, data: Buffer): MemberRecord {
  const r = JSON.parse(data.toString('utf8')) as MemberRecord;
  if (!r || r.v !== 1 || r.nodeId !== id || !isNodeId(id)) throw new Error('wrong version or node id');
  const key = parsePublicKeyLine(r.publicKey);
  if (nodeIdOf(key.blob) !== id) throw new Error('key does not match the node id');
  if (r.fingerprint !== fingerprintOf(key.blob)) throw new Error('fingerprint does not match the key');
  // Bounded: every address becomes a static peer that discovery probes.
  if (!Array.isArray(r.addresses) || r.addresses.length > 64 || !r.addresses.every((a) => typeof a === 'string' && a.length <= 300)) throw new Error('bad addresses');
  if (!str(r.hostname) || r.hostname.length > 255 || !str(r.addedBy) || !str(r.addedAt) || !port(r.sshPort) || !port(r.btPort)) throw new Error('bad fields');
  if (!str(r.admission) || !str(r.signedBy) || !str(r.sig) || !str(r._updatedAt)) throw new Error('unsigned (written before records were signed; such a cluster must be created again with --create)');
  if (r.addedBy !== 'self' && !isNodeId(r.addedBy)) throw new Error('bad addedBy');
  return r;
}

export function decodeTombstone(id: string, data: Buffer): Tombstone {
  const t = JSON.parse(data.toString('utf8')) as Tombstone;
  if (!t || t.v !== 1 || t.nodeId !== id || !isNodeId(id) || !str(t.revokedAt) || !str(t.revokedBy) || !isNodeId(t.revokedBy)) throw new Error('wrong version, node id or fields');
  if (!str(t.sig)) throw new Error('unsigned (made before records were signed)');
  return t;
}

/** A first version, admitted and signed by `by` (the founder: its own key). */
export function newMemberRecord(by: Identity, o: { publicKey: string; hostname: string; addresses?: string[]; sshPort?: number; btPort?: number; now?: Date }): MemberRecord {
  const blob = parsePublicKeyLine(o.publicKey).blob;
  const nodeId = nodeIdOf(blob);
  const addedAt = (o.now ?? new Date()).toISOString();
  const base = {
    _updatedAt: addedAt,
    // The joiner names its machine: printable ASCII only, it ends up on operators' terminals.
    v: 1 as const, nodeId, hostname: o.hostname.replace(/[^\x20-\x7e]/g, '?').slice(0, 255), publicKey: publicKeyLineOf(blob), fingerprint: fingerprintOf(blob),
    addresses: o.addresses ?? [], sshPort: o.sshPort ?? 0, btPort: o.btPort ?? 0,
    addedAt, addedBy: by.nodeId === nodeId ? 'self' : by.nodeId,
  };
  return signMember(by, { ...base, admission: by.sign(admissionMessage(base)).toString('base64'), signedBy: by.nodeId, sig: '' });
}

/** Signs a version of a member record as `by` (its admitter for the first version, the member itself after). */
export function signMember(by: Identity, r: MemberRecord): MemberRecord {
  const out = { ...r, signedBy: by.nodeId, sig: '' };
  out.sig = by.sign(recordMessage(MEMBERS + r.nodeId, out)).toString('base64');
  return out;
}

export function newTombstone(by: Identity, nodeId: string, now = new Date()): Tombstone {
  const t: Tombstone = { v: 1, nodeId, revokedAt: now.toISOString(), revokedBy: by.nodeId, sig: '' };
  t.sig = by.sign(recordMessage(REVOKED + nodeId, t)).toString('base64');
  return t;
}

/** Membership as the records say it, computed the same way on every node. */
export interface MembershipView {
  /** Records whose form and both signatures are right (admitted or not). */
  signed: Map<string, MemberRecord>;
  founder?: string;
  /** Admitted down to the founder (revoked or not). */
  admitted: Set<string>;
  /** Named by a valid tombstone. */
  revoked: Map<string, Tombstone>;
  /** Why each record that counts for nothing does not, by record path. */
  invalid: Map<string, string>;
}

/** Verified signatures (key, message digest, signature): a merge evaluates the same records again and again (~0.2 ms each). */
const verified = new Set<string>();
function sigOk(key: string, msg: Buffer, sig: string): boolean {
  const k = `${key}\n${createHash('sha256').update(msg).digest('base64')}\n${sig}`;
  if (verified.has(k)) return true;
  if (!verifySignature(key, msg, Buffer.from(sig, 'base64'))) return false;
  if (verified.size >= 4 * MAX_RECORDS) verified.clear();
  verified.add(k);
  return true;
}

/** The pure function: member and tombstone records in, who is admitted and who is revoked out. */
export function evaluate(members: Map<string, Buffer>, tombstones: Map<string, Buffer>): MembershipView {
  const invalid = new Map<string, string>();
  const formed = new Map<string, MemberRecord>();
  for (const [id, data] of members) {
    try {
      formed.set(id, decodeMember(id, data));
    } catch (e) {
      invalid.set(MEMBERS + id, (e as Error).message);
    }
  }
  // A node's key is fixed by its id (the id is a hash of the key), so any well-formed record of it gives the key.
  const keyOf = (id: string) => formed.get(id)?.publicKey;
  const signed = new Map<string, MemberRecord>();
  for (const [id, r] of formed) {
    const admitter = admitterOf(r);
    const aKey = keyOf(admitter);
    const sKey = r.signedBy === id || r.signedBy === admitter ? keyOf(r.signedBy) : undefined;
    if (!aKey) invalid.set(MEMBERS + id, `admitted by ${admitter.slice(0, 16)}, which has no record`);
    else if (!sigOk(aKey, admissionMessage(r), r.admission)) invalid.set(MEMBERS + id, `admission signature does not verify with the key of ${admitter}`);
    else if (!sKey) invalid.set(MEMBERS + id, `signed by ${String(r.signedBy).slice(0, 16)}, neither the member nor its admitter`);
    else if (!sigOk(sKey, recordMessage(MEMBERS + id, r), r.sig)) invalid.set(MEMBERS + id, `record signature does not verify with the key of ${r.signedBy}`);
    else signed.set(id, r);
  }
  const selfAdmitted = [...signed.values()].filter((r) => r.addedBy === 'self').map((r) => r.nodeId);
  const founder = selfAdmitted.length === 1 ? selfAdmitted[0] : undefined;
  if (selfAdmitted.length > 1) for (const id of selfAdmitted) invalid.set(MEMBERS + id, `${selfAdmitted.length} records admit themselves; a cluster has one founder`);
  const admitted = new Set<string>();
  const chainOk = (id: string, seen: Set<string>): boolean => {
    if (admitted.has(id)) return true;
    const r = signed.get(id);
    if (!r || seen.has(id)) return false;
    seen.add(id);
    const ok = id === founder || (r.addedBy !== 'self' && chainOk(r.addedBy, seen));
    if (ok) admitted.add(id);
    return ok;
  };
  for (const id of signed.keys()) if (!chainOk(id, new Set()) && !invalid.has(MEMBERS + id)) invalid.set(MEMBERS + id, `its admitter ${signed.get(id)!.addedBy.slice(0, 16)} is not an admitted member`);
  const revoked = new Map<string, Tombstone>();
  for (const [id, data] of tombstones) {
    try {
      const t = decodeTombstone(id, data);
      if (!admitted.has(t.revokedBy)) throw new Error(`revoked by ${t.revokedBy}, which is not an admitted member`);
      if (!sigOk(keyOf(t.revokedBy)!, recordMessage(REVOKED + id, t), t.sig)) throw new Error(`signature does not verify with the key of ${t.revokedBy}`);
      revoked.set(id, t);
    } catch (e) {
      invalid.set(REVOKED + id, (e as Error).message);
    }
  }
  return { signed, founder, admitted, revoked, invalid };
}

/**
 * What a merge may do to the records (before: ours, after: the merge result; paths below the
 * records root, 'members/<id>'). Returns why the change is refused, or null. Only what no
 * legitimate change, even a concurrent one, makes is refused, so refusals never wedge sync.
 */
export function checkRecordChange(before: Map<string, Buffer>, after: Map<string, Buffer>): string | null {
  const split = (m: Map<string, Buffer>, prefix: string) => new Map([...m].filter(([p]) => p.startsWith(prefix)).map(([p, d]) => [p.slice(prefix.length), d]));
  for (const p of before.keys()) if ((p.startsWith(MEMBERS) || p.startsWith(REVOKED)) && !after.has(p)) return `it removes the record ${p} (membership records are never removed)`;
  const [members, tombstones] = [split(after, MEMBERS), split(after, REVOKED)];
  if (members.size + tombstones.size > MAX_RECORDS) return `it holds ${members.size + tombstones.size} membership records, more than ${MAX_RECORDS}`;
  const was = evaluate(split(before, MEMBERS), split(before, REVOKED));
  const now = evaluate(members, tombstones);
  for (const [p, data] of after) {
    const old = before.get(p);
    if (old?.equals(data)) continue;
    if (p.startsWith(REVOKED)) {
      const id = p.slice(REVOKED.length);
      // Two members removing one node at once make two valid tombstones; the merge keeps one.
      if (!now.revoked.has(id)) return `tombstone ${p} is not valid: ${now.invalid.get(p) ?? 'unknown'}`;
    } else if (p.startsWith(MEMBERS)) {
      const id = p.slice(MEMBERS.length);
      const r = now.signed.get(id);
      if (!r || !now.admitted.has(id)) return `member record ${p} is not valid: ${now.invalid.get(p) ?? 'unknown'}`;
      const prev = was.signed.get(id);
      if (!prev) {
        if (now.revoked.has(id)) return `it admits ${id} again, a removed node (a removed key never comes back)`;
        continue;
      }
      if (prev.admission !== r.admission || prev.addedBy !== r.addedBy || prev.addedAt !== r.addedAt) {
        // One new key admitted at two members at once: the merge keeps the larger record (merge.ts);
        // that choice is accepted while neither version was updated by the member itself.
        const concurrent = prev.signedBy !== id && r.signedBy !== id && Buffer.compare(data, old!) > 0 && !now.revoked.has(id);
        if (!concurrent) return `it changes the admission of ${id} (admissions are write-once)`;
        continue;
      }
      if (r.signedBy !== id) return `it changes the record of ${id} without ${id}'s signature`;
      if (Buffer.compare(data, old!) <= 0) return `it puts back an older version of the record of ${id}`;
    }
  }
  if (was.founder && now.founder !== was.founder) return `it changes the cluster's founder (${was.founder})`;
  return null;
}

export class Membership {
  private warned = new Set<string>();
  private cache?: { members: Map<string, Buffer>; tombstones: Map<string, Buffer>; view: MembershipView };

  /** `identity` signs what this node writes; without it the membership is read-only. */
  constructor(private readonly store: RecordStore, private readonly log: Log = () => {}, private readonly identity?: Identity) {}

  /** The evaluated records, recomputed only when a record changed (the store keeps unchanged buffers). */
  view(): MembershipView {
    const members = this.store.listRecords(MEMBERS);
    const tombstones = this.store.listRecords(REVOKED);
    const c = this.cache;
    if (c && sameBuffers(c.members, members) && sameBuffers(c.tombstones, tombstones)) return c.view;
    const view = evaluate(members, tombstones);
    this.cache = { members, tombstones, view };
    for (const [path, why] of view.invalid) {
      const data = path.startsWith(MEMBERS) ? members.get(path.slice(MEMBERS.length)) : tombstones.get(path.slice(REVOKED.length));
      const key = `${path} ${data?.length} ${why}`;
      // A bad record from a peer is ignored (and named once), never fatal.
      if (this.warned.has(key)) continue;
      this.warned.add(key);
      this.log('member_record_malformed', { record: path.slice(0, 80), error: why.slice(0, 300) });
    }
    return view;
  }

  isRevoked(nodeId: string): boolean {
    return this.view().revoked.has(nodeId);
  }

  /** The member record of a node that is admitted and not revoked, or undefined. */
  get(nodeId: string): MemberRecord | undefined {
    const v = this.view();
    return v.admitted.has(nodeId) && !v.revoked.has(nodeId) ? v.signed.get(nodeId) : undefined;
  }

  /** Current members (admitted, not revoked), sorted by node id. */
  list(): MemberRecord[] {
    const v = this.view();
    return [...v.admitted].filter((id) => !v.revoked.has(id)).sort().map((id) => v.signed.get(id)!);
  }

  revokedIds(): string[] {
    return [...this.view().revoked.keys()].sort();
  }

  /** Authentication check: the key of a member that is not revoked (the id is derived from the key). */
  hasKey(blob: Buffer): boolean {
    const r = this.get(nodeIdOf(blob));
    return !!r && parsePublicKeyLine(r.publicKey).blob.equals(blob);
  }

  private signer(): Identity {
    if (!this.identity) throw new Error('membership opened without the node key: cannot sign records');
    return this.identity;
  }

  /** Updates this node's own record (addresses, ports, hostname), signed with its key. */
  async updateSelf(o: Partial<Pick<MemberRecord, 'hostname' | 'addresses' | 'sshPort' | 'btPort'>>): Promise<MemberRecord> {
    const me = this.signer();
    const cur = this.get(me.nodeId);
    if (!cur) throw new Error(`node ${me.nodeId} is not a member; only a member's own record can be updated`);
    // Later than the version it replaces even if the clock stepped back: older versions are refused.
    const now = new Date().toISOString();
    const at = now > cur._updatedAt ? now : new Date(Date.parse(cur._updatedAt) + 1).toISOString();
    const r = signMember(me, { ...cur, ...o, _updatedAt: at });
    await this.store.setRecord(MEMBERS + r.nodeId, encodeRecord(r));
    return r;
  }

  /** Admits a key, signed by this node (the founder admits itself); an existing record is kept (its history stays). */
  async admit(o: { publicKey: string; hostname: string; addresses?: string[]; sshPort?: number; btPort?: number }): Promise<MemberRecord> {
    const me = this.signer();
    const id = nodeIdOf(parsePublicKeyLine(o.publicKey).blob);
    if (this.isRevoked(id)) throw new Error(`node ${id} was removed from the cluster; a removed node cannot come back with the same key`);
    const existing = this.get(id);
    if (existing) return existing;
    if (id !== me.nodeId && !this.get(me.nodeId)) throw new Error(`this node (${me.nodeId}) is not a member, so it cannot admit others`);
    if (id === me.nodeId && this.view().founder) throw new Error(`cluster already has a founder (${this.view().founder}); a node admits only others`);
    if (this.view().signed.has(id)) throw new Error(`node ${id} has a record that is no longer admitted (its admitter lost its record?)`);
    const r = newMemberRecord(me, o);
    await this.store.setRecord(MEMBERS + r.nodeId, encodeRecord(r));
    return r;
  }

  /** Writes the tombstone, signed by this node; the member record stays for history. */
  async revoke(nodeId: string): Promise<void> {
    if (this.isRevoked(nodeId)) return;
    const me = this.signer();
    if (!this.get(me.nodeId)) throw new Error(`this node (${me.nodeId}) is not a member, so it cannot remove others`);
    await this.store.setRecord(REVOKED + nodeId, encodeRecord(newTombstone(me, nodeId)));
  }
}

function sameBuffers(a: Map<string, Buffer>, b: Map<string, Buffer>): boolean {
  if (a.size !== b.size) return false;
  for (const [k, v] of a) if (b.get(k) !== v) return false;
  return true;
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

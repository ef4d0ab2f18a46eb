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
//   one self-admitted record, else none counts. Its record names the cluster and a random cluster
//   id made at creation, and every signature (admissions, records, tombstones) covers both: a key
//   that is a member of two clusters signs nothing that counts in the other;
// - a record is admitted when its signatures verify and its admitter is admitted, down to the
//   founder. Revoking a member does not undo the admissions it signed (those stay members; remove
//   them too if its key was stolen): validity is a pure function of the records, the same on
//   every node whatever the order merges came in;
// - a tombstone counts when signed by an admitted node; a member with a tombstone never counts
//   again, whatever record it has.
// Unsigned records (clusters made before signing) count for nothing and are named in the log.
// What a merge may change is checkRecordChange(): it refuses only what no honest member writes
// (records removed, tombstones replaced by invalid ones, bad or foreign signatures, an admission
// the member had already signed over rewritten, a version rolled back). Whatever honest members
// can write at the same time merges: the merge keeps the larger record bytes, and `_rank`, which
// sorts first, makes that the member's own newest version, else the earliest admission. A
// record for a removed node is kept like any other and counts for nothing.
import { createHash, randomBytes } from 'node:crypto';
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
   * What the merge compares (the key sorts first; merge.ts keeps the larger record bytes):
   * `m<_updatedAt>` for a version the member signed, `a<16 digits, larger for an earlier addedAt>`
   * for a first version signed by its admitter. So the member's own newest version wins, and of
   * concurrent admissions the earliest; a fresh admission never replaces an older one.
   */
  _rank: string;
  /** When this version was made (ISO, later than the version before; a first version: addedAt). */
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
  /** The founder's record only: the cluster's name and its random id (32 hex), fixed at creation. */
  cluster?: string;
  clusterId?: string;
}

/** What every signature is bound to: the cluster's name and the random id its founder made. */
export interface ClusterRef { name: string; id: string }

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

/** One line naming the cluster (JSON: a name holding a newline cannot pass for another name and id). */
const clusterLine = (c: ClusterRef) => JSON.stringify([c.name, c.id]);

/** What an admitter signs: the cluster, the member's id and key, who admits it and when. */
export function admissionMessage(c: ClusterRef, r: Pick<MemberRecord, 'nodeId' | 'publicKey' | 'addedBy' | 'addedAt'>): Buffer {
  return Buffer.from(`delugefs-admission-v2\n${clusterLine(c)}\n${r.nodeId}\n${parsePublicKeyLine(r.publicKey).blob.toString('base64')}\n${r.addedBy}\n${r.addedAt}`);
}

/** What a record's `sig` covers: the cluster, its path (a tombstone's signature is no member record's) and its other fields. */
export function recordMessage(c: ClusterRef, path: string, r: object): Buffer {
  const { sig: _omit, ...rest } = r as { sig?: unknown };
  return Buffer.concat([Buffer.from(`delugefs-record-v2\n${clusterLine(c)}\n${path}\n`), encodeRecord(rest)]);
}

/** The cluster a founder's record names (undefined for any other record). */
export function clusterOf(r: Pick<MemberRecord, 'cluster' | 'clusterId'>): ClusterRef | undefined {
  return r.cluster !== undefined && r.clusterId !== undefined ? { name: r.cluster, id: r.clusterId } : undefined;
}

/** Latest representable time (ms): `a` ranks count down from it, so an earlier admission ranks higher. */
const MAX_TIME = 8_640_000_000_000_000;

/** The `_rank` a version must carry (see MemberRecord._rank). */
export function rankOf(r: Pick<MemberRecord, 'nodeId' | 'signedBy' | 'addedAt' | '_updatedAt'>): string {
  return r.signedBy === r.nodeId ? `m${r._updatedAt}` : `a${String(MAX_TIME - Date.parse(r.addedAt)).padStart(16, '0')}`;
}

/** The node whose key signed the admission. */
export function admitterOf(r: Pick<MemberRecord, 'nodeId' | 'addedBy'>): string {
  return r.addedBy === 'self' ? r.nodeId : r.addedBy;
}

const str = (v: unknown) => typeof v === 'string';
/** Exactly what toISOString() writes for years 0-9999: such strings sort as their times do. */
const iso = (v: unknown) => typeof v === 'string' && /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/.test(v) && new Date(v).toISOString() === v;
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
  if (!str(r.hostname) || r.hostname.length > 255 || !str(r.addedBy) || !port(r.sshPort) || !port(r.btPort)) throw new Error('bad fields');
  if (!str(r.admission) || !str(r.signedBy) || !str(r.sig) || !str(r._rank)) throw new Error('unsigned or signed before records were bound to their cluster (such a cluster must be created again with --create)');
  if (!iso(r.addedAt) || !iso(r._updatedAt)) throw new Error('bad addedAt or _updatedAt (ISO times as toISOString() writes them)');
  if (r.addedBy !== 'self' && !isNodeId(r.addedBy)) throw new Error('bad addedBy');
  // Only the founder names the cluster, once: nobody else's record can claim another one.
  if (r.addedBy === 'self' ? !(str(r.cluster) && r.cluster!.length <= 255 && /^[0-9a-f]{32}$/.test(String(r.clusterId))) : r.cluster !== undefined || r.clusterId !== undefined) {
    throw new Error(r.addedBy === 'self' ? 'the founder record names no cluster (cluster, clusterId)' : 'only the founder record names the cluster');
  }
  return r;
}

export function decodeTombstone(id: string, data: Buffer): Tombstone {
  const t = JSON.parse(data.toString('utf8')) as Tombstone;
  if (!t || t.v !== 1 || t.nodeId !== id || !isNodeId(id) || !str(t.revokedAt) || !str(t.revokedBy) || !isNodeId(t.revokedBy)) throw new Error('wrong version, node id or fields');
  if (!str(t.sig)) throw new Error('unsigned (made before records were signed)');
  return t;
}

/** A new cluster's name and random id, for its founder's record. */
export function newCluster(name: string): ClusterRef {
  return { name, id: randomBytes(16).toString('hex') };
}

/** A first version of `cluster`, admitted and signed by `by` (the founder: its own key, and its record names the cluster). */
export function newMemberRecord(by: Identity, cluster: ClusterRef, o: { publicKey: string; hostname: string; addresses?: string[]; sshPort?: number; btPort?: number; now?: Date }): MemberRecord {
  const blob = parsePublicKeyLine(o.publicKey).blob;
  const nodeId = nodeIdOf(blob);
  const addedAt = (o.now ?? new Date()).toISOString();
  const base = {
    _rank: '', _updatedAt: addedAt,
    // The joiner names its machine: printable ASCII only, it ends up on operators' terminals.
    v: 1 as const, nodeId, hostname: o.hostname.replace(/[^\x20-\x7e]/g, '?').slice(0, 255), publicKey: publicKeyLineOf(blob), fingerprint: fingerprintOf(blob),
    addresses: o.addresses ?? [], sshPort: o.sshPort ?? 0, btPort: o.btPort ?? 0,
    addedAt, addedBy: by.nodeId === nodeId ? 'self' : by.nodeId,
    ...(by.nodeId === nodeId ? { cluster: cluster.name, clusterId: cluster.id } : {}),
  };
  return signMember(by, cluster, { ...base, admission: by.sign(admissionMessage(cluster, base)).toString('base64'), signedBy: by.nodeId, sig: '' });
}

/** Signs a version of a member record of `cluster` as `by` (its admitter for the first version, the member itself after). */
export function signMember(by: Identity, cluster: ClusterRef, r: MemberRecord): MemberRecord {
  const out = { ...r, signedBy: by.nodeId, sig: '' };
  out._rank = rankOf(out);
  out.sig = by.sign(recordMessage(cluster, MEMBERS + r.nodeId, out)).toString('base64');
  return out;
}

export function newTombstone(by: Identity, cluster: ClusterRef, nodeId: string, now = new Date()): Tombstone {
  const t: Tombstone = { v: 1, nodeId, revokedAt: now.toISOString(), revokedBy: by.nodeId, sig: '' };
  t.sig = by.sign(recordMessage(cluster, REVOKED + nodeId, t)).toString('base64');
  return t;
}

/** Membership as the records say it, computed the same way on every node. */
export interface MembershipView {
  /** Records whose form and both signatures are right (admitted or not). */
  signed: Map<string, MemberRecord>;
  founder?: string;
  /** The cluster the founder's record names: what every signature must be for. */
  cluster?: ClusterRef;
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
  /** Why r's signatures do not verify as records of cluster c, or null when they do. */
  const unverified = (id: string, r: MemberRecord, c: ClusterRef): string | null => {
    const admitter = admitterOf(r);
    const aKey = keyOf(admitter);
    const sKey = r.signedBy === id || r.signedBy === admitter ? keyOf(r.signedBy) : undefined;
    if (!aKey) return `admitted by ${admitter.slice(0, 16)}, which has no record`;
    if (!sigOk(aKey, admissionMessage(c, r), r.admission)) return `admission signature does not verify with the key of ${admitter} for this cluster (forged, or signed for another cluster)`;
    if (!sKey) return `signed by ${String(r.signedBy).slice(0, 16)}, neither the member nor its admitter`;
    if (r.signedBy !== id && r._updatedAt !== r.addedAt) return 'signed by its admitter, which signs only the first version (_updatedAt = addedAt)';
    if (!sigOk(sKey, recordMessage(c, MEMBERS + id, r), r.sig)) return `record signature does not verify with the key of ${r.signedBy} for this cluster (forged, or signed for another cluster)`;
    // What the merge orders versions by must be what the record says, or a signer could make any version win.
    if (r._rank !== rankOf(r)) return `_rank is not ${rankOf(r)}`;
    return null;
  };
  // The founder's record names the cluster (and is signed for it); every other signature must be for that cluster.
  const selfAdmitted: string[] = [];
  for (const [id, r] of formed) {
    if (r.addedBy !== 'self') continue;
    const why = unverified(id, r, clusterOf(r)!);
    if (why) invalid.set(MEMBERS + id, why);
    else {
      signed.set(id, r);
      selfAdmitted.push(id);
    }
  }
  const founder = selfAdmitted.length === 1 ? selfAdmitted[0] : undefined;
  if (selfAdmitted.length > 1) for (const id of selfAdmitted) invalid.set(MEMBERS + id, `${selfAdmitted.length} records admit themselves; a cluster has one founder`);
  const cluster = founder ? clusterOf(signed.get(founder)!) : undefined;
  for (const [id, r] of formed) {
    if (r.addedBy === 'self') continue;
    const why = cluster ? unverified(id, r, cluster) : 'no founder record, so no cluster its signatures could be for';
    if (why) invalid.set(MEMBERS + id, why);
    else signed.set(id, r);
  }
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
      if (!sigOk(keyOf(t.revokedBy)!, recordMessage(cluster!, REVOKED + id, t), t.sig)) throw new Error(`signature does not verify with the key of ${t.revokedBy} for this cluster (forged, or signed for another cluster)`);
      revoked.set(id, t);
    } catch (e) {
      invalid.set(REVOKED + id, (e as Error).message);
    }
  }
  return { signed, founder, cluster, admitted, revoked, invalid };
}

/**
 * What a merge may do to the records (before: ours, after: the merge result; paths below the
 * records root, 'members/<id>'). Returns why the change is refused, or null. Only what no honest
 * member writes is refused, so whatever honest members do at the same time merges (a refusal
 * of such a head would stand between the two nodes for good). Honest histories only ever grow
 * a record's bytes (a new version ranks higher; the merge keeps the larger), which is why:
 * - a record for a removed node merges (admitted at one member while removed at another): it
 *   counts for nothing, whatever it says;
 * - of two admissions of one key the larger (the earlier, or the one the member signed over)
 *   may replace the other, and the member's later updates go on top of either; but an admission
 *   the member has signed over is fixed, and no version replaces a larger one.
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
      if (!prev) continue;
      const admission = prev.admission !== r.admission || prev.addedBy !== r.addedBy || prev.addedAt !== r.addedAt;
      if (admission && prev.signedBy === id) return `it changes the admission of ${id}, which ${id} has signed over (admissions are write-once)`;
      if (Buffer.compare(data, old!) <= 0) {
        return admission ? `it changes the admission of ${id} to a later one (admissions are write-once; of concurrent ones the earliest counts)` : `it puts back an older version of the record of ${id}`;
      }
      if (!admission && r.signedBy !== id) return `it changes the record of ${id} without ${id}'s signature`;
    }
  }
  if (was.founder && now.founder !== was.founder) return `it changes the cluster's founder (${was.founder})`;
  if (was.cluster && (now.cluster?.name !== was.cluster.name || now.cluster.id !== was.cluster.id)) return `it changes the cluster's name or id (${JSON.stringify(was.cluster)})`;
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
      this.log('member_record_malformed', { record: path.slice(0, 80), error: why.slice(0, 300) }, 'warn');
    }
    return view;
  }

  /**
   * A handler for "records may have changed" (every new head) that calls `fn` only when the
   * evaluated records did change since its last call: the view is the same object until then.
   */
  watch(fn: () => void): () => void {
    let seen = this.view();
    return () => {
      const v = this.view();
      if (v === seen) return;
      seen = v;
      fn();
    };
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

  /** The cluster the records are of (named by the founder's record), or undefined before there is one. */
  cluster(): ClusterRef | undefined {
    return this.view().cluster;
  }

  private signer(): Identity {
    if (!this.identity) throw new Error('membership opened without the node key: cannot sign records');
    return this.identity;
  }

  private boundTo(): ClusterRef {
    const c = this.cluster();
    if (!c) throw new Error('the records hold no founder record, so no cluster to sign for');
    return c;
  }

  /** Updates this node's own record (addresses, ports, hostname), signed with its key. */
  async updateSelf(o: Partial<Pick<MemberRecord, 'hostname' | 'addresses' | 'sshPort' | 'btPort'>>): Promise<MemberRecord> {
    const me = this.signer();
    const cur = this.get(me.nodeId);
    if (!cur) throw new Error(`node ${me.nodeId} is not a member; only a member's own record can be updated`);
    // Later than the version it replaces even if the clock stepped back: older versions are refused.
    const now = new Date().toISOString();
    const at = now > cur._updatedAt ? now : new Date(Date.parse(cur._updatedAt) + 1).toISOString();
    const r = signMember(me, this.boundTo(), { ...cur, ...o, _updatedAt: at });
    await this.store.setRecord(MEMBERS + r.nodeId, encodeRecord(r));
    return r;
  }

  /**
   * Admits a key, signed by this node; an existing record is kept (its history stays). The
   * founder admits itself and names the cluster (`cluster`); its record gets a new random id.
   */
  async admit(o: { publicKey: string; hostname: string; addresses?: string[]; sshPort?: number; btPort?: number; cluster?: string }): Promise<MemberRecord> {
    const me = this.signer();
    const id = nodeIdOf(parsePublicKeyLine(o.publicKey).blob);
    if (this.isRevoked(id)) throw new Error(`node ${id} was removed from the cluster; a removed node cannot come back with the same key`);
    const existing = this.get(id);
    if (existing) return existing;
    if (id !== me.nodeId && !this.get(me.nodeId)) throw new Error(`this node (${me.nodeId}) is not a member, so it cannot admit others`);
    if (id === me.nodeId && this.view().founder) throw new Error(`cluster already has a founder (${this.view().founder}); a node admits only others`);
    if (this.view().signed.has(id)) throw new Error(`node ${id} has a record that is no longer admitted (its admitter lost its record?)`);
    let cluster = this.cluster();
    if (id === me.nodeId) {
      if (!o.cluster) throw new Error('founding a cluster needs its name');
      cluster = newCluster(o.cluster);
    }
    const r = newMemberRecord(me, cluster ?? this.boundTo(), o);
    await this.store.setRecord(MEMBERS + r.nodeId, encodeRecord(r));
    return r;
  }

  /** Writes the tombstone, signed by this node; the member record stays for history. */
  async revoke(nodeId: string): Promise<void> {
    if (this.isRevoked(nodeId)) return;
    const me = this.signer();
    if (!this.get(me.nodeId)) throw new Error(`this node (${me.nodeId}) is not a member, so it cannot remove others`);
    await this.store.setRecord(REVOKED + nodeId, encodeRecord(newTombstone(me, this.boundTo(), nodeId)));
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

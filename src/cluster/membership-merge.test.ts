// Hostile membership changes pushed by a member, on real repositories and the real sync merge
// path (MetaSync.received: merge refs/nodes/<id>, roll a refused ref back): a head that deletes a
// tombstone, adds a member with a forged admitter or a bad signature, changes another member's
// record or puts back an older version of it, re-admits a removed key (also with a forged rank),
// names a second founder or replays what a member signed in another cluster is refused whole;
// main and the membership stay as they were, and the member's next good push merges.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Namespace } from '../meta/namespace.js';
import { RECORDS } from '../meta/tree.js';
import type { DirEntry } from '../meta/entry.js';
import { silentLogger } from '../util/log.js';
import { run } from '../util/exec.js';
import { Identity } from './identity.js';
import { Membership, MapRecordStore, checkRecordChange, encodeRecord, newMemberRecord, recordMessage, signMember, MEMBERS, REVOKED, MemberRecord } from './membership.js';
import { guardRepository } from './repo-guard.js';
import { MetaSync } from './sync.js';
import { PeerSet } from './peer-set.js';
import { memoryLog } from './log.js';

const T0 = Date.UTC(2026, 0, 2, 3, 4, 5);
const root: DirEntry = { type: 'dir', mode: 0o755, uid: 0, gid: 0, mtime: T0, ctime: T0 };
const git = async (repo: string, args: string[], o: { env?: NodeJS.ProcessEnv; input?: string | Buffer } = {}) =>
  run('git', ['--git-dir', repo, ...args], { env: { ...process.env, ...o.env }, input: o.input, allowFail: true });
const out = async (repo: string, args: string[], o: { env?: NodeJS.ProcessEnv; input?: string | Buffer } = {}) => (await git(repo, args, o)).stdout.toString().trim();

test('membership a member did not sign is refused at merge; good pushes still merge', async () => {
  const d = await mkdtemp(join(tmpdir(), 'dfs-sync-memmerge-'));
  try {
    const [ia, ib, ic, id, ie] = await Promise.all(['a', 'b', 'c', 'd', 'e'].map((n) => Identity.loadOrCreate(join(d, 'keys', n))));
    // a founds the cluster, admits b and c, then removes c.
    const a = await Namespace.create({ dir: join(d, 'a'), nodeId: ia.nodeId, log: silentLogger }, root, 'create');
    a.recordGuard = checkRecordChange;
    const mA = new Membership(a, () => {}, ia);
    await mA.admit({ publicKey: ia.publicKeyLine, hostname: 'ha', addresses: ['10.0.0.1:7422'], sshPort: 7422, cluster: 'test' });
    const C = mA.cluster()!;
    await mA.admit({ publicKey: ib.publicKeyLine, hostname: 'hb' });
    await mA.admit({ publicKey: ic.publicKeyLine, hostname: 'hc' });
    await mA.revoke(ic.nodeId);
    await a.commit();
    // a moves: its first record stays in history, validly signed.
    const aFirst = a.getRecord(MEMBERS + ia.nodeId)!;
    await mA.updateSelf({ addresses: ['10.0.0.1:7423'] });
    await a.commit();
    await guardRepository(a.repo.dir);
    await run('git', ['clone', '--bare', '-q', a.repo.dir, join(d, 'b', 'repo.git')]);
    const b = await Namespace.open({ dir: join(d, 'b'), nodeId: ib.nodeId, log: silentLogger });
    await b.finishRecovery();
    const bRepo = b.repo.dir;

    const log = memoryLog();
    const sync = new MetaSync({ ns: a, identity: ia, membership: mA, peers: new PeerSet(), stateDir: join(d, 'a', 'cluster'), log });
    const members = () => JSON.stringify({ m: mA.list().map((r) => r.nodeId), r: mA.revokedIds() });
    const before = members();
    assert.deepEqual(mA.list().map((r) => r.nodeId), [ia.nodeId, ib.nodeId].sort());

    /** A commit on b's head with records set (Buffer) or removed (null), pushed to a as b, and a's sync told. */
    let n = 0;
    const pushRecords = async (changes: Record<string, Buffer | null>): Promise<{ code: number; stderr: string; oid: string }> => {
      const env = { GIT_INDEX_FILE: join(d, `index-${n++}`) };
      await git(bRepo, ['read-tree', b.head!], { env });
      for (const [p, data] of Object.entries(changes)) {
        if (data) {
          const blob = await out(bRepo, ['hash-object', '-w', '--stdin'], { input: data });
          await git(bRepo, ['update-index', '--add', '--cacheinfo', `100644,${blob},${RECORDS}/${p}`], { env });
        } else {
          // --force-remove wants a work tree; mode 0 in --index-info removes in a bare repository.
          await git(bRepo, ['update-index', '--index-info'], { env, input: `0 ${'0'.repeat(40)}\t${RECORDS}/${p}\n` });
        }
      }
      const tree = await out(bRepo, ['write-tree'], { env });
      const oid = await out(bRepo, ['commit-tree', tree, '-p', b.head!, '-m', `attack ${n}`]);
      const r = await git(bRepo, ['push', a.repo.dir, `${oid}:refs/nodes/${ib.nodeId}`], { env: { DELUGEFS_PEER: ib.nodeId } });
      return { code: r.code, stderr: r.stderr, oid };
    };
    const refusedCount = () => log.events.filter((e) => e.event === 'sync_merge_refused').length;
    const expectRefused = async (what: string, changes: Record<string, Buffer | null>, reason: RegExp) => {
      const head = a.head;
      const k = refusedCount();
      const r = await pushRecords(changes);
      assert.equal(r.code, 0, `${what}: git accepts the well-formed push (${r.stderr})`);
      sync.received(ib.nodeId);
      for (let i = 0; i < 200 && refusedCount() === k; i++) await new Promise((res) => setTimeout(res, 10));
      const ev = log.events.filter((e) => e.event === 'sync_merge_refused').at(-1);
      assert.equal(refusedCount(), k + 1, `${what}: merge refused ${JSON.stringify(log.events.slice(-3))}`);
      assert.match(String(ev?.reason), reason, what);
      assert.equal(a.head, head, `${what}: main unchanged`);
      assert.equal(await a.repo.head(), head, `${what}: main ref unchanged`);
      assert.equal(members(), before, `${what}: membership unchanged`);
    };
    const rec = (path: string) => a.getRecord(path)!;
    const recordOf = (id: string) => JSON.parse(rec(MEMBERS + id).toString()) as MemberRecord;

    // (a) b deletes c's tombstone (c would be a member again).
    await expectRefused('tombstone deleted', { [REVOKED + ic.nodeId]: null }, /removes the record revoked\//);
    // (a') ... or replaces it with one nobody signed.
    await expectRefused('tombstone replaced', { [REVOKED + ic.nodeId]: encodeRecord({ v: 1, nodeId: ic.nodeId, revokedAt: 'x', revokedBy: ib.nodeId, sig: 'AAAA' }) }, /tombstone .* is not valid/);
    // (b) a member record claiming a admitted d, signed by b's key.
    const forged = newMemberRecord(ib, C, { publicKey: id.publicKeyLine, hostname: 'hd' });
    await expectRefused('forged addedBy', { [MEMBERS + id.nodeId]: encodeRecord({ ...forged, addedBy: ia.nodeId }) }, /admission signature does not verify/);
    // (b') an unsigned record, as before records were signed.
    const { admission: _x, sig: _y, signedBy: _z, ...unsigned } = forged;
    await expectRefused('unsigned record', { [MEMBERS + id.nodeId]: encodeRecord({ ...unsigned, addedBy: ia.nodeId }) }, /unsigned/);
    // (b'') a good admission with a tampered body.
    await expectRefused('bad record signature', { [MEMBERS + id.nodeId]: encodeRecord({ ...forged, addresses: ['6.6.6.6:22'] }) }, /record signature does not verify/);
    // (c) b rewrites a's addresses, signed with its own key...
    const aRec = recordOf(ia.nodeId);
    await expectRefused('other member changed', { [MEMBERS + ia.nodeId]: encodeRecord(signMember(ib, C, { ...aRec, addresses: ['6.6.6.6:7422'] })) }, /neither the member nor its admitter/);
    // (c') ... or claiming a's signature.
    await expectRefused('other member changed, signature claimed', { [MEMBERS + ia.nodeId]: encodeRecord({ ...signMember(ib, C, { ...aRec, addresses: ['6.6.6.6:7422'] }), signedBy: ia.nodeId }) }, /record signature does not verify/);
    // (c'') ... or put back a's older version (signed by a, but rolled back).
    await expectRefused('older version replayed', { [MEMBERS + ia.nodeId]: aFirst }, /older version of the record/);
    // (d) c, removed, re-admitted by b with a fresh (validly signed) admission.
    await expectRefused('revoked key re-admitted', { [MEMBERS + ic.nodeId]: encodeRecord(newMemberRecord(ib, C, { publicKey: ic.publicKeyLine, hostname: 'hc2' })) }, /changes the admission/);
    // (d') ... with a _rank that claims the earliest admission (it is signed, but not what the record says).
    const late = newMemberRecord(ib, C, { publicKey: ic.publicKeyLine, hostname: 'hc3' });
    const ranked = { ...late, _rank: `a${'9'.repeat(16)}` };
    await expectRefused('forged rank', { [MEMBERS + ic.nodeId]: encodeRecord({ ...ranked, sig: ib.sign(recordMessage(C, MEMBERS + ic.nodeId, ranked)).toString('base64') }) }, /_rank is not/);
    // (g) what a signed in another cluster of the same name, where it is a member too: its admission of d, its removal of b.
    const ix = await Identity.loadOrCreate(join(d, 'keys', 'x'));
    const other = new MapRecordStore();
    await new Membership(other, () => {}, ix).admit({ publicKey: ix.publicKeyLine, hostname: 'hx', cluster: 'test' });
    await new Membership(other, () => {}, ix).admit({ publicKey: ia.publicKeyLine, hostname: 'ha' });
    const aInX = new Membership(other, () => {}, ia);
    await aInX.admit({ publicKey: id.publicKeyLine, hostname: 'hd' });
    await aInX.revoke(ib.nodeId);
    await expectRefused('admission from another cluster', { [MEMBERS + id.nodeId]: other.map.get(MEMBERS + id.nodeId)! }, /another cluster/);
    await expectRefused('tombstone from another cluster', { [REVOKED + ib.nodeId]: other.map.get(REVOKED + ib.nodeId)! }, /another cluster/);
    // (e) a second founder: e admits itself.
    await expectRefused('second founder', { [MEMBERS + ie.nodeId]: encodeRecord(newMemberRecord(ie, C, { publicKey: ie.publicKeyLine, hostname: 'he' })) }, /founder/);

    // (f) b's own record, signed by b, but with more addresses than discovery will probe.
    const bRec = recordOf(ib.nodeId);
    const many = Array.from({ length: 65 }, (_, i) => `10.1.0.${i}:7422`);
    await expectRefused('too many addresses', { [MEMBERS + ib.nodeId]: encodeRecord(signMember(ib, C, { ...bRec, addresses: many, _updatedAt: new Date(Date.now() + 1000).toISOString() })) }, /bad addresses/);

    // A good push afterwards: b updates its own record and admits d, both signed by b.
    const mB = new Membership(b, () => {}, ib);
    await mB.updateSelf({ addresses: ['10.0.0.2:7422'], sshPort: 7422 });
    await mB.admit({ publicKey: id.publicKeyLine, hostname: 'hd' });
    await b.commit();
    const good = await git(bRepo, ['push', a.repo.dir, `${b.head}:refs/nodes/${ib.nodeId}`], { env: { DELUGEFS_PEER: ib.nodeId } });
    assert.equal(good.code, 0, `good push is a fast-forward of the rolled-back ref: ${good.stderr}`);
    sync.received(ib.nodeId);
    for (let i = 0; i < 200 && a.head !== b.head; i++) await new Promise((res) => setTimeout(res, 10));
    assert.equal(a.head, b.head, 'good head merged (fast-forward)');
    assert.deepEqual(mA.list().map((r) => r.nodeId), [ia.nodeId, ib.nodeId, id.nodeId].sort());
    assert.deepEqual(mA.get(ib.nodeId)?.addresses, ['10.0.0.2:7422']);
    assert.ok(!mA.hasKey(ic.publicKeyBlob) && mA.isRevoked(ic.nodeId));
    const fsck = await git(a.repo.dir, ['fsck', '--no-dangling']);
    assert.equal(fsck.code, 0, fsck.stderr);
    await sync.close();
    await a.close();
    await b.close();
  } finally {
    await rm(d, { recursive: true, force: true });
  }
});

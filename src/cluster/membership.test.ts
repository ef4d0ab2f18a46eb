import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Identity } from './identity.js';
import { Membership, MapRecordStore, encodeRecord, MEMBERS, REVOKED, checkRecordChange, evaluate, newMemberRecord, newTombstone, signMember } from './membership.js';
import { memoryLog } from './log.js';

test('members: admit, key check, revoke by tombstone, malformed records ignored', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'dfs-sync-mem-'));
  try {
    const [a, b, c] = await Promise.all(['a', 'b', 'c'].map((n) => Identity.loadOrCreate(join(dir, n))));
    const store = new MapRecordStore();
    const log = memoryLog();
    const m = new Membership(store, log, a);
    await m.admit({ publicKey: a.publicKeyLine, hostname: 'h1', addresses: ['10.0.0.1:7422'], sshPort: 7422, cluster: 'test' });
    await m.admit({ publicKey: b.publicKeyLine, hostname: 'h2' });
    assert.equal(m.get(a.nodeId)?.addedBy, 'self');
    assert.equal(m.get(b.nodeId)?.addedBy, a.nodeId);
    assert.ok(m.hasKey(a.publicKeyBlob) && m.hasKey(b.publicKeyBlob) && !m.hasKey(c.publicKeyBlob));
    assert.deepEqual(m.list().map((r) => r.nodeId), [a.nodeId, b.nodeId].sort());
    // Records are canonical: same content, same bytes.
    assert.deepEqual(store.getRecord(MEMBERS + a.nodeId), encodeRecord(JSON.parse(store.getRecord(MEMBERS + a.nodeId)!.toString())));

    // A watcher acts on changed records only (the swarm revalidates its connections then, not on every head).
    let calls = 0;
    const onHead = m.watch(() => calls++);
    onHead();
    await store.setRecord('other/path', Buffer.from('x')); // a head that changed no member record
    onHead();
    assert.equal(calls, 0);
    await m.revoke(b.nodeId);
    assert.ok(!m.hasKey(b.publicKeyBlob) && m.isRevoked(b.nodeId));
    onHead();
    onHead();
    assert.equal(calls, 1, 'the revocation, once');
    await assert.rejects(m.admit({ publicKey: b.publicKeyLine, hostname: 'h2' }), /was removed/);

    // A record naming c under b's... no: a record whose key does not match its id is ignored.
    const forged = JSON.parse(store.getRecord(MEMBERS + a.nodeId)!.toString());
    forged.nodeId = c.nodeId;
    await store.setRecord(MEMBERS + c.nodeId, encodeRecord(forged));
    await store.setRecord(MEMBERS + 'aaaaaaaaaaaaaaaa', Buffer.from('not json'));
    assert.ok(!m.hasKey(c.publicKeyBlob));
    assert.deepEqual(m.list().map((r) => r.nodeId), [a.nodeId]);
    assert.ok(log.events.some((e) => e.event === 'member_record_malformed'));
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

test('record changes: concurrent admin work converges, rewrites of others do not', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'dfs-sync-mem-'));
  try {
    const [a, b, c, x] = await Promise.all(['a', 'b', 'c', 'x'].map((n) => Identity.loadOrCreate(join(dir, n))));
    const store = new MapRecordStore();
    const mA = new Membership(store, () => {}, a);
    await mA.admit({ publicKey: a.publicKeyLine, hostname: 'ha', cluster: 'test' });
    const C = mA.cluster()!;
    await mA.admit({ publicKey: b.publicKeyLine, hostname: 'hb' });
    await mA.admit({ publicKey: c.publicKeyLine, hostname: 'hc' });
    const base = new Map(store.map);
    const with_ = (changes: Record<string, Buffer>) => new Map([...base, ...Object.entries(changes)]);
    // x admitted at a and at b at the same moment: whichever first version is larger replaces the other, never the reverse.
    const [ra, rb] = [newMemberRecord(a, C, { publicKey: x.publicKeyLine, hostname: 'hx' }), newMemberRecord(b, C, { publicKey: x.publicKeyLine, hostname: 'hx' })].map(encodeRecord);
    const [small, large] = Buffer.compare(ra!, rb!) < 0 ? [ra!, rb!] : [rb!, ra!];
    const p = MEMBERS + x.nodeId;
    assert.equal(checkRecordChange(with_({ [p]: small }), with_({ [p]: large })), null);
    assert.match(String(checkRecordChange(with_({ [p]: large }), with_({ [p]: small }))), /changes the admission/);
    // Once x updated its record, its admission is fixed.
    const later = new Date(Date.now() + 1000).toISOString();
    const updated = encodeRecord(signMember(x, C, { ...JSON.parse(small.toString()), addresses: ['10.0.0.9:7422'], _updatedAt: later }));
    assert.equal(checkRecordChange(with_({ [p]: small }), with_({ [p]: updated })), null);
    assert.match(String(checkRecordChange(with_({ [p]: updated }), with_({ [p]: large }))), /changes the admission/);
    // Its own older version does not come back, even signed; one from a clock that stepped back does.
    assert.match(String(checkRecordChange(with_({ [p]: updated }), with_({ [p]: encodeRecord(signMember(x, C, { ...JSON.parse(small.toString()), addresses: ['10.0.0.8:1'] })) }))), /older version/);
    const sX = new MapRecordStore();
    for (const [k, v] of with_({ [p]: updated })) await sX.setRecord(k, v);
    const mX = new Membership(sX, () => {}, x);
    const stepped = await mX.updateSelf({ addresses: ['10.0.0.7:1'] });
    assert.equal(stepped._updatedAt, new Date(Date.parse(later) + 1).toISOString());
    assert.equal(checkRecordChange(with_({ [p]: updated }), with_({ [p]: encodeRecord(stepped) })), null);
    // Two members removing c at once: either valid tombstone may replace the other.
    const t1 = encodeRecord(newTombstone(a, C, c.nodeId)), t2 = encodeRecord(newTombstone(b, C, c.nodeId));
    assert.equal(checkRecordChange(with_({ [REVOKED + c.nodeId]: t1 }), with_({ [REVOKED + c.nodeId]: t2 })), null);
    // c's own later update of its (revoked) record merges too (it counts for nothing).
    const cUpd = encodeRecord(signMember(c, C, { ...JSON.parse(base.get(MEMBERS + c.nodeId)!.toString()), addresses: ['10.0.0.3:1'], _updatedAt: later }));
    assert.equal(checkRecordChange(with_({ [REVOKED + c.nodeId]: t1 }), with_({ [REVOKED + c.nodeId]: t1, [MEMBERS + c.nodeId]: cUpd })), null);
    // Removing a member does not remove those it admitted; revoking the founder leaves the cluster standing.
    const view = evaluate(new Map([[b.nodeId, base.get(MEMBERS + b.nodeId)!], [a.nodeId, base.get(MEMBERS + a.nodeId)!]]), new Map([[a.nodeId, encodeRecord(newTombstone(b, C, a.nodeId))]]));
    assert.ok(view.admitted.has(b.nodeId) && view.revoked.has(a.nodeId));
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

test('records signed for one cluster count for nothing in another of the same name', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'dfs-sync-mem-'));
  try {
    // k is a member of two clusters, both named "store" (a name is not unique); z, a member of Y, replays what k signed in X.
    const [fx, fy, k, z, m, n] = await Promise.all(['fx', 'fy', 'k', 'z', 'm', 'n'].map((s) => Identity.loadOrCreate(join(dir, s))));
    const [sx, sy] = [new MapRecordStore(), new MapRecordStore()];
    // Not literals: the founder's options name the cluster.
    const [foundX, foundY] = [{ publicKey: fx.publicKeyLine, hostname: 'fx', cluster: 'store' }, { publicKey: fy.publicKeyLine, hostname: 'fy', cluster: 'store' }];
    const mX = new Membership(sx, () => {}, fx), mY = new Membership(sy, () => {}, fy);
    await mX.admit(foundX);
    await mY.admit(foundY);
    for (const i of [k, n]) await mX.admit({ publicKey: i.publicKeyLine, hostname: 'h' });
    for (const i of [k, z, n]) await mY.admit({ publicKey: i.publicKeyLine, hostname: 'h' });
    // In X, k admits m and removes n.
    const kX = new Membership(sx, () => {}, k);
    await kX.admit({ publicKey: m.publicKeyLine, hostname: 'hm' });
    await kX.revoke(n.nodeId);
    assert.ok(mX.get(m.nodeId) && mX.isRevoked(n.nodeId));
    const replayed = new Map([...sy.map, [MEMBERS + m.nodeId, sx.map.get(MEMBERS + m.nodeId)!], [REVOKED + n.nodeId, sx.map.get(REVOKED + n.nodeId)!]]);
    for (const [what, after] of [['admission', new Map([...sy.map, [MEMBERS + m.nodeId, sx.map.get(MEMBERS + m.nodeId)!]])], ['tombstone', new Map([...sy.map, [REVOKED + n.nodeId, sx.map.get(REVOKED + n.nodeId)!]])]] as const) {
      assert.notEqual(checkRecordChange(sy.map, after), null, `a merge bringing X's ${what} into Y is refused`);
    }
    // Even if such records were in Y's tree, they would count for nothing there.
    const inY = new MapRecordStore();
    for (const [p, v] of replayed) await inY.setRecord(p, v);
    const view = new Membership(inY);
    assert.equal(view.get(m.nodeId), undefined, 'm is no member of Y');
    assert.ok(!view.isRevoked(n.nodeId) && view.get(n.nodeId), 'n is still a member of Y');
    assert.ok(view.get(k.nodeId) && view.get(z.nodeId));
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

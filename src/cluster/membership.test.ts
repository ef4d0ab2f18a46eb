import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Identity } from './identity.js';
import { Membership, MapRecordStore, encodeRecord, MEMBERS } from './membership.js';
import { memoryLog } from './log.js';

test('members: admit, key check, revoke by tombstone, malformed records ignored', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'dfs-sync-mem-'));
  try {
    const [a, b, c] = await Promise.all(['a', 'b', 'c'].map((n) => Identity.loadOrCreate(join(dir, n))));
    const store = new MapRecordStore();
    const log = memoryLog();
    const m = new Membership(store, log, a);
    await m.admit({ publicKey: a.publicKeyLine, hostname: 'h1', addresses: ['10.0.0.1:7422'], sshPort: 7422 });
    await m.admit({ publicKey: b.publicKeyLine, hostname: 'h2' });
    assert.equal(m.get(a.nodeId)?.addedBy, 'self');
    assert.equal(m.get(b.nodeId)?.addedBy, a.nodeId);
    assert.ok(m.hasKey(a.publicKeyBlob) && m.hasKey(b.publicKeyBlob) && !m.hasKey(c.publicKeyBlob));
    assert.deepEqual(m.list().map((r) => r.nodeId), [a.nodeId, b.nodeId].sort());
    // Records are canonical: same content, same bytes.
    assert.deepEqual(store.getRecord(MEMBERS + a.nodeId), encodeRecord(JSON.parse(store.getRecord(MEMBERS + a.nodeId)!.toString())));

    await m.revoke(b.nodeId);
    assert.ok(!m.hasKey(b.publicKeyBlob) && m.isRevoked(b.nodeId));
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

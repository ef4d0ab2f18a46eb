import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createPublicKey, generateKeyPairSync } from 'node:crypto';
import { Identity } from './identity.js';
import { memberWire, nodeKeyObject, sshBlobOf } from './wire-auth.js';

test('wire auth: a member key maps to its id; our own key, revoked members, strangers and non-ed25519 keys do not', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'dfs-cl-wire-'));
  try {
    const [a, b, x] = await Promise.all(['a', 'b', 'x'].map((n) => Identity.loadOrCreate(join(dir, n))));
    const members = new Map([[a.nodeId, a.publicKeyLine], [b.nodeId, b.publicKeyLine]]);
    const revoked = new Set<string>();
    const wire = memberWire(a, (id) => (revoked.has(id) ? undefined : members.get(id)));
    const pub = (i: Identity) => createPublicKey(nodeKeyObject(i));
    assert.deepEqual(sshBlobOf(pub(b)), b.publicKeyBlob);
    assert.equal(wire.verify(pub(b)), b.nodeId);
    assert.equal(wire.verify(pub(a)), null, 'our own key is never a peer');
    assert.equal(wire.verify(pub(x)), null, 'stranger');
    revoked.add(b.nodeId);
    assert.equal(wire.verify(pub(b)), null, 'revoked');
    // A record whose key is not the one presented (the id is only a hash prefix of it).
    members.set(x.nodeId, b.publicKeyLine);
    assert.equal(wire.verify(pub(x)), null);
    assert.equal(wire.verify(generateKeyPairSync('ec', { namedCurve: 'P-256' }).publicKey), null);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

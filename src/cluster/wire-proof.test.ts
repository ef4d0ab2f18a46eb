import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Identity } from './identity.js';
import { makeWireProof, verifyWireProof, wireNonce } from './wire-proof.js';

test('wire proofs: members pass; reflection, replay, strangers and other clusters fail', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'dfs-cl-wire-'));
  try {
    const [a, b, x] = await Promise.all(['a', 'b', 'x'].map((n) => Identity.loadOrCreate(join(dir, n))));
    const members = new Map([[a.nodeId, a.publicKeyLine], [b.nodeId, b.publicKeyLine]]);
    const keyOf = (id: string) => members.get(id);
    const na = wireNonce();
    const nb = wireNonce();
    const fromB = makeWireProof(b, 'blue', nb, na);
    assert.equal(verifyWireProof(fromB, { cluster: 'blue', myNonce: na, theirNonce: nb, keyOf }), b.nodeId);
    // Reflection: a's own proof sent back to a.
    const fromA = makeWireProof(a, 'blue', na, nb);
    assert.equal(verifyWireProof(fromA, { cluster: 'blue', myNonce: na, theirNonce: nb, keyOf }), null);
    // Replay on a new connection (fresh nonce on a's side).
    assert.equal(verifyWireProof(fromB, { cluster: 'blue', myNonce: wireNonce(), theirNonce: nb, keyOf }), null);
    // Other cluster, stranger, junk.
    assert.equal(verifyWireProof(fromB, { cluster: 'green', myNonce: na, theirNonce: nb, keyOf }), null);
    assert.equal(verifyWireProof(makeWireProof(x, 'blue', nb, na), { cluster: 'blue', myNonce: na, theirNonce: nb, keyOf }), null);
    assert.equal(verifyWireProof({ node: b.nodeId, sig: 'x' }, { cluster: 'blue', myNonce: na, theirNonce: nb, keyOf }), null);
    assert.equal(verifyWireProof(null, { cluster: 'blue', myNonce: na, theirNonce: nb, keyOf }), null);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

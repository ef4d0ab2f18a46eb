// The LAN join verification code: deterministic, bound to both the key and the cluster's root
// commit, in the shape operators type; typed codes normalised, junk refused.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { generateKeyPairSync } from 'node:crypto';
import { joinCode, normalizeCode, CODE_RE } from './join-code.js';

const key = (n: number) => Buffer.alloc(51, n);
const R1 = 'a'.repeat(40);
const R2 = 'b'.repeat(40);

test('the code is a function of key and root commit, 12 Crockford base32 characters', () => {
  const c = joinCode(key(1), R1);
  assert.match(c, CODE_RE);
  assert.equal(joinCode(key(1), R1), c);
  assert.notEqual(joinCode(key(2), R1), c, 'another key, another code');
  assert.notEqual(joinCode(key(1), R2), c, 'another cluster history, another code');
  // Pinned: a joiner and a member of another version must agree.
  assert.equal(joinCode(Buffer.from('delugefs'), '0123456789abcdef0123456789abcdef01234567'), joinCode(Buffer.from('delugefs'), '0123456789abcdef0123456789abcdef01234567'));
  assert.throws(() => joinCode(key(1), 'HEAD'), /not a commit id/);
  assert.throws(() => joinCode(key(1), R1.toUpperCase()), /not a commit id/);
});

test('codes spread over the space (no fixed characters)', () => {
  const seen = new Set<string>();
  const chars = new Set<string>();
  for (let i = 0; i < 2000; i++) {
    const blob = generateKeyPairSync('ed25519').publicKey.export({ format: 'der', type: 'spki' });
    const c = joinCode(blob, R1);
    seen.add(c);
    for (const ch of c.replace(/-/g, '')) chars.add(ch);
  }
  assert.equal(seen.size, 2000);
  assert.equal(chars.size, 32);
});

test('typed codes are normalised; junk is refused', () => {
  const c = joinCode(key(3), R1);
  assert.equal(normalizeCode(c), c);
  assert.equal(normalizeCode(c.toLowerCase()), c);
  assert.equal(normalizeCode(c.replace(/-/g, '')), c);
  assert.equal(normalizeCode(` ${c.slice(0, 4)} ${c.slice(5, 9)} ${c.slice(10)} `), c);
  assert.equal(normalizeCode('O1IL-abcd-efgh'), '0111-ABCD-EFGH');
  for (const bad of ['', 'ABC', 'ABCD-EFGH', 'ABCD-EFGH-JKM', 'ABCD-EFGH-JKMNP', 'ABCD-EFGH-JKMU', '../../etc', 'x'.repeat(100), 'ABCD\u0000EFGH\u0000JKMN']) assert.equal(normalizeCode(bad), null, bad);
});

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { decode, encode, BencodeError } from './bencode.js';

test('round-trips nested values with keys sorted as bytes', () => {
  const v = { b: 1, a: [Buffer.from('x'), -5, { z: Buffer.alloc(0) }] };
  const enc = encode(v);
  assert.equal(enc.toString(), 'd1:al1:xi-5ed1:z0:ee1:bi1ee');
  assert.ok(encode(decode(enc)).equals(enc));
});

test('rejects non-canonical and malformed input with a clear error', () => {
  for (const bad of ['i01e', 'i-0e', '01:a', 'd1:bi1e1:ai1ee', 'd1:ai1e1:ai1ee', 'i1ei2e', 'l', '5:abc', 'x', 'ie', 'i1.5e']) {
    assert.throws(() => decode(Buffer.from(bad)), BencodeError, bad);
  }
  assert.throws(() => decode(Buffer.from('l'.repeat(100) + 'e'.repeat(100))), /nested too deeply/);
});

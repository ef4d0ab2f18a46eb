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

test('dictionary keys are bytes: invalid UTF-8, byte order and duplicates are judged on the raw key', () => {
  const b = (...parts: (string | number[])[]) => Buffer.concat(parts.map((p) => (typeof p === 'string' ? Buffer.from(p, 'latin1') : Buffer.from(p))));
  for (const [what, bad] of [
    // Differ only in invalid bytes: both would become "\uFFFD" and one value would vanish.
    ['keys that differ in invalid bytes', b('d1:', [0xfe], 'i1e1:', [0xff], 'i2ee')],
    ['one invalid key', b('d2:', [0xc3, 0x28], 'i1ee')],
    ['an overlong encoding of "/"', b('d2:', [0xc0, 0xaf], 'i1ee')],
    ['a surrogate half', b('d3:', [0xed, 0xa0, 0x80], 'i1ee')],
    // Sorted as JS (UTF-16) strings, where U+1F600 (0xD83D...) comes before U+FF61, but not as bytes.
    ['unsorted as bytes, sorted as UTF-16', b('d4:', [0xf0, 0x9f, 0x98, 0x80], 'i1e3:', [0xef, 0xbd, 0xa1], 'i2ee')],
    ['a duplicate key', b('d1:ai1e1:ai2ee')],
  ] as [string, Buffer][]) {
    assert.throws(() => decode(bad), BencodeError, what);
  }
  // The same two keys in byte order are fine, and a BOM stays part of a key.
  for (const ok of [b('d3:', [0xef, 0xbd, 0xa1], 'i2e4:', [0xf0, 0x9f, 0x98, 0x80], 'i1ee'), b('d4:', [0xef, 0xbb, 0xbf], 'ai1ee')]) {
    assert.ok(encode(decode(ok)).equals(ok), ok.toString('hex'));
  }
});

test('encode(decode(x)) == x for every x decode accepts: random canonical values and their mutations', () => {
  let seed = 0x9e3779b9;
  const rnd = (n: number) => {
    seed ^= seed << 13; seed >>>= 0; seed ^= seed >>> 17; seed ^= seed << 5; seed >>>= 0;
    return seed % n;
  };
  const pool = ['a', 'b', 'é', '€', '😀', '\uFEFF', 'Z', '0', '\u0000', 'ｱ', '\u007f'];
  const key = () => Array.from({ length: rnd(4) }, () => pool[rnd(pool.length)]).join('');
  const value = (depth: number): unknown => {
    const k = depth > 3 ? rnd(2) : rnd(4);
    if (k === 0) return [0, 1, -1, 42, -1234567, Number.MAX_SAFE_INTEGER, -Number.MAX_SAFE_INTEGER][rnd(7)];
    if (k === 1) return Buffer.from(Array.from({ length: rnd(6) }, () => rnd(256)));
    if (k === 2) return Array.from({ length: rnd(4) }, () => value(depth + 1));
    const d: Record<string, unknown> = {};
    for (let i = rnd(5); i > 0; i--) d[key()] = value(depth + 1);
    return d;
  };
  let accepted = 0;
  for (let i = 0; i < 3000; i++) {
    const x = encode(value(0));
    assert.ok(encode(decode(x)).equals(x), x.toString('hex'));
    // Mutations: a byte changed, inserted or removed. Whatever is still accepted must round-trip.
    for (let j = 0; j < 5; j++) {
      const m = Buffer.from(x);
      const at = rnd(m.length);
      const op = rnd(3);
      const y = op === 0 ? (m[at] = rnd(256), m) : op === 1 ? Buffer.concat([m.subarray(0, at), Buffer.from([rnd(256)]), m.subarray(at)]) : Buffer.concat([m.subarray(0, at), m.subarray(at + 1)]);
      let v;
      try {
        v = decode(y);
      } catch (e) {
        assert.ok(e instanceof BencodeError, String(e));
        continue;
      }
      accepted++;
      assert.ok(encode(v).equals(y), `accepted ${y.toString('hex')} but re-encodes as ${encode(v).toString('hex')}`);
    }
  }
  assert.ok(accepted > 100, `only ${accepted} mutations were accepted: the test would prove little`);
});

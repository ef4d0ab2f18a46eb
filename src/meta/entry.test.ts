// The entry blob: the placement hint `at` (replication's choice of disks for the content) is
// kept through encode and decode, absent when there is none (entries written before it are
// byte for byte what they were), and refused when a peer's entry gets it wrong.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { FileEntry, MAX_AT, decodeEntry, decodeStored, encodeEntry } from './entry.js';
import { infoHash, pieceLengthFor } from '../content/metainfo.js';
import { encode, decode } from '../util/bencode.js';

const T0 = Date.UTC(2026, 0, 2, 3, 4, 5);
const A = 'aaaaaaaaaaaaaaaa', B = 'bbbbbbbbbbbbbbbb';
function file(): FileEntry {
  const data = Buffer.from('hello');
  const info = { length: data.length, pieceLength: pieceLengthFor(data.length), pieces: createHash('sha1').update(data).digest() };
  return { type: 'file', mode: 0o644, uid: 1, gid: 2, mtime: T0, ctime: T0, info, id: infoHash(info), node: A };
}

test('at goes through encode and decode, and an entry without one has no at key', () => {
  const e = { ...file(), at: [A, B] };
  assert.deepEqual((decodeEntry(encodeEntry(e)) as FileEntry).at, [A, B]);
  assert.deepEqual((decodeStored(encodeEntry(e)) as FileEntry).at, [A, B]);
  const plain = encodeEntry(file());
  assert.ok(!plain.includes('2:at'), 'no at key');
  assert.deepEqual(encodeEntry({ ...file(), at: [] }), plain);
  assert.equal((decodeEntry(plain) as FileEntry).at, undefined);
});

test("a peer's malformed at is refused: not a list, empty, too long, not node ids, repeated", () => {
  const withAt = (at: unknown) => {
    const top = decode(encodeEntry(file())) as Record<string, Record<string, unknown>>;
    top.delugefs!.at = at;
    return encode(top as never);
  };
  for (const [at, why] of [
    [Buffer.from(A), /at must list/],
    [[], /at must list/],
    [Array.from({ length: MAX_AT + 1 }, (_, i) => Buffer.from(String.fromCharCode(97 + i).repeat(16))), /at must list/],
    [[Buffer.from('not-a-node-id!!!')], /distinct node ids/],
    [[Buffer.from(A.toUpperCase())], /distinct node ids/],
    [[Buffer.from(A), Buffer.from(A)], /distinct node ids/],
    [[5], /distinct node ids/],
    [[Buffer.from(A + ',' + B)], /distinct node ids/],
  ] as const) assert.throws(() => decodeEntry(withAt(at)), why, JSON.stringify(at));
  assert.deepEqual((decodeEntry(withAt([Buffer.from(B)])) as FileEntry).at, [B]);
});

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { decodeTorrent, encodeTorrent, infoHash, pieceCount, pieceLengthFor, verifyPiece, Info } from './metainfo.js';

function infoOf(data: Buffer): Info {
  const pieceLength = pieceLengthFor(data.length);
  const n = pieceCount({ length: data.length, pieceLength });
  const pieces = Buffer.concat(Array.from({ length: n }, (_, i) =>
    createHash('sha1').update(data.subarray(i * pieceLength, (i + 1) * pieceLength)).digest()));
  return { length: data.length, pieceLength, pieces };
}

test('piece length scales with size and stays a power of two in range', () => {
  assert.equal(pieceLengthFor(0), 65536);
  assert.equal(pieceLengthFor(64 << 20), 65536);
  assert.equal(pieceLengthFor(1 << 30), 1 << 20);
  assert.equal(pieceLengthFor(5 * 2 ** 30), 4 << 20);
  assert.equal(pieceLengthFor(2 ** 50), 16 << 20);
  for (const s of [0, 1, 2 ** 20, 2 ** 30, 2 ** 36, 2 ** 40]) assert.ok(pieceCount({ length: s, pieceLength: pieceLengthFor(s) }) <= 65536);
});

test('the info hash depends on content only, and a torrent round-trips without trackers', () => {
  const a = infoOf(Buffer.alloc(100_000, 7));
  const b = infoOf(Buffer.alloc(100_000, 7));
  assert.equal(infoHash(a), infoHash(b));
  assert.notEqual(infoHash(a), infoHash(infoOf(Buffer.alloc(100_000, 8))));
  const t = encodeTorrent(a);
  assert.ok(!t.includes(Buffer.from('announce')));
  const back = decodeTorrent(t);
  assert.equal(back.id, infoHash(a));
  assert.ok(back.info.pieces.equals(a.pieces));
});

test('verifyPiece accepts the right bytes only', () => {
  const data = Buffer.alloc(200_000, 1);
  const info = infoOf(data);
  assert.ok(verifyPiece(info, 3, data.subarray(3 * 65536)));
  assert.ok(!verifyPiece(info, 3, Buffer.alloc(200_000 - 3 * 65536, 2)));
  assert.ok(!verifyPiece(info, 4, Buffer.alloc(1)));
});

test('malformed metainfo is refused with the field named', () => {
  const info = infoOf(Buffer.alloc(10));
  const bad = encodeTorrent({ ...info, pieces: info.pieces.subarray(0, 10) });
  assert.throws(() => decodeTorrent(bad), /piece hashes/);
  assert.throws(() => decodeTorrent(Buffer.from('d4:infoi1ee')), /"info" must be a dictionary/);
  assert.throws(() => decodeTorrent(Buffer.from('de')), /"info"/);
});

// BitTorrent v1 metainfo for one piece of content. The info dictionary depends on the bytes
// only (a fixed name, piece length chosen from the size), so identical content always has the
// same info hash, and that info hash is the content id everywhere in DelugeFS.
import { createHash } from 'node:crypto';
import { BDict, decode, encode, getBytes, getDict, getInt, isDict } from '../util/bencode.js';

export const INFO_NAME = 'content';
export const BLOCK = 16 * 1024;
export const MIN_PIECE = 16 * 1024;
export const MAX_PIECE = 16 * 1024 * 1024;
/**
 * Piece length by size tier: at most ~4k pieces per file (small piece lists in Git), pieces
 * large enough for the wire, and few distinct lengths, so a file written sequentially can be
 * hashed while it is written and the guess rarely changes.
 */
const TIERS: [maxSize: number, piece: number][] = [
  [64 * 2 ** 20, 64 * 1024],
  [4 * 2 ** 30, 2 ** 20],
  [64 * 2 ** 30, 4 * 2 ** 20],
];

export interface Info {
  length: number;
  pieceLength: number;
  /** Concatenated 20-byte SHA-1 digests, one per piece. */
  pieces: Buffer;
}

/** Content id: hex SHA-1 of the bencoded info dictionary (the BitTorrent info hash). */
export type ContentId = string;

export function pieceLengthFor(size: number): number {
  for (const [max, piece] of TIERS) if (size <= max) return piece;
  return MAX_PIECE;
}

export function pieceCount(info: Pick<Info, 'length' | 'pieceLength'>): number {
  return Math.ceil(info.length / info.pieceLength);
}

export function pieceSize(info: Pick<Info, 'length' | 'pieceLength'>, index: number): number {
  const start = index * info.pieceLength;
  return Math.max(0, Math.min(info.pieceLength, info.length - start));
}

export function pieceHash(info: Info, index: number): Buffer {
  return info.pieces.subarray(index * 20, index * 20 + 20);
}

export function verifyPiece(info: Info, index: number, data: Buffer): boolean {
  if (index < 0 || index >= pieceCount(info) || data.length !== pieceSize(info, index)) return false;
  return createHash('sha1').update(data).digest().equals(pieceHash(info, index));
}

export function infoDict(info: Info): BDict {
  return { length: info.length, name: Buffer.from(INFO_NAME), 'piece length': info.pieceLength, pieces: info.pieces };
}

export function encodeInfo(info: Info): Buffer {
  return encode(infoDict(info));
}

export function infoHash(info: Info): ContentId {
  return createHash('sha1').update(encodeInfo(info)).digest('hex');
}

export function isContentId(s: string): boolean {
  return /^[0-9a-f]{40}$/.test(s);
}

/** Validates an info dictionary received from Git or from a peer. */
export function parseInfo(d: BDict, ctx = 'metainfo'): Info {
  const length = getInt(d, 'length', ctx);
  const pieceLength = getInt(d, 'piece length', ctx);
  const pieces = Buffer.from(getBytes(d, 'pieces', ctx));
  if (length < 0) throw new Error(`${ctx}: negative length`);
  if (pieceLength < MIN_PIECE || pieceLength > MAX_PIECE || (pieceLength & (pieceLength - 1)) !== 0) {
    throw new Error(`${ctx}: piece length ${pieceLength} is not a power of two between 16 KiB and 16 MiB`);
  }
  if (pieces.length !== 20 * pieceCount({ length, pieceLength })) {
    throw new Error(`${ctx}: ${pieces.length / 20} piece hashes for ${pieceCount({ length, pieceLength })} pieces`);
  }
  if ('files' in d) throw new Error(`${ctx}: multi-file torrents are not content`);
  return { length, pieceLength, pieces };
}

/** A standalone .torrent file: no trackers, no announce list, ever. */
export function encodeTorrent(info: Info, extra: BDict = {}): Buffer {
  return encode({ ...extra, info: infoDict(info) });
}

export function decodeTorrent(buf: Buffer, ctx = 'metainfo'): { info: Info; id: ContentId; dict: BDict } {
  const dict = decode(buf);
  if (!isDict(dict)) throw new Error(`${ctx}: not a dictionary`);
  const info = parseInfo(getDict(dict, 'info', ctx), ctx);
  return { info, id: infoHash(info), dict };
}

// Namespace entries for tests that build repositories by hand: a directory and a file whose
// metainfo matches its text, all at one fixed time.
import { createHash } from 'node:crypto';
import type { DirEntry, FileEntry } from './entry.js';
import { infoHash, pieceLengthFor } from '../content/metainfo.js';

export const T0 = Date.UTC(2026, 0, 2, 3, 4, 5);
export const dir: DirEntry = { type: 'dir', mode: 0o755, uid: 0, gid: 0, mtime: T0, ctime: T0 };

export function file(text: string): FileEntry {
  const data = Buffer.from(text);
  const info = { length: data.length, pieceLength: pieceLengthFor(data.length), pieces: createHash('sha1').update(data).digest() };
  return { type: 'file', mode: 0o644, uid: 0, gid: 0, mtime: T0, ctime: T0, info, id: infoHash(info), node: 'n' };
}

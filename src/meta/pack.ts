// Writes a batch of Git objects as one pack file with its version-2 index, so a commit of
// thousands of entries is a single fsync'd file instead of thousands of loose objects.
import { createHash } from 'node:crypto';
import { deflateSync, deflate, crc32 } from 'node:zlib';
import { promisify } from 'node:util';
import { open, rename, mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';

const deflateAsync = promisify(deflate);
const TYPES = { commit: 1, tree: 2, blob: 3 } as const;

export interface PackObject { type: keyof typeof TYPES; oid: string; data: Buffer }

function header(type: number, size: number): Buffer {
  const bytes: number[] = [];
  let b = (type << 4) | (size & 0x0f);
  size = Math.floor(size / 16);
  while (size > 0) {
    bytes.push(b | 0x80);
    b = size & 0x7f;
    size = Math.floor(size / 128);
  }
  bytes.push(b);
  return Buffer.from(bytes);
}

async function writeDurably(path: string, parts: Buffer[]): Promise<void> {
  const tmp = `${path}.tmp-${randomBytes(4).toString('hex')}`;
  const fh = await open(tmp, 'wx', 0o400); // read-only as git's own packs, and private
  try {
    await fh.writev(parts);
    await fh.sync();
  } finally {
    await fh.close();
  }
  await rename(tmp, path);
}

/** Writes objects (duplicates by oid are dropped) into objectsDir/pack; returns the pack's name. */
export async function writePack(objectsDir: string, objects: PackObject[]): Promise<string | null> {
  const unique = new Map<string, PackObject>();
  for (const o of objects) unique.set(o.oid, o);
  if (!unique.size) return null;
  const list = [...unique.values()];
  const parts: Buffer[] = [];
  const head = Buffer.alloc(12);
  head.write('PACK', 0, 'latin1');
  head.writeUInt32BE(2, 4);
  head.writeUInt32BE(list.length, 8);
  parts.push(head);
  let offset = 12;
  const entries: { oid: Buffer; crc: number; offset: number }[] = [];
  for (const o of list) {
    const h = header(TYPES[o.type], o.data.length);
    // Small objects inline (microseconds); big trees and commits off the event loop.
    const z = o.data.length < 65536 ? deflateSync(o.data, { level: 1 }) : await deflateAsync(o.data, { level: 1 });
    entries.push({ oid: Buffer.from(o.oid, 'hex'), crc: crc32(z, crc32(h)), offset });
    parts.push(h, z);
    offset += h.length + z.length;
  }
  const packHash = createHash('sha1');
  for (const p of parts) packHash.update(p);
  const packSum = packHash.digest();
  parts.push(packSum);

  entries.sort((a, b) => Buffer.compare(a.oid, b.oid));
  const fanout = Buffer.alloc(256 * 4);
  let i = 0;
  for (let byte = 0; byte < 256; byte++) {
    while (i < entries.length && entries[i]!.oid[0] === byte) i++;
    fanout.writeUInt32BE(i, byte * 4);
  }
  const crcs = Buffer.alloc(entries.length * 4);
  const offs = Buffer.alloc(entries.length * 4);
  const large: Buffer[] = [];
  entries.forEach((e, k) => {
    crcs.writeUInt32BE(e.crc >>> 0, k * 4);
    if (e.offset < 0x80000000) offs.writeUInt32BE(e.offset, k * 4);
    else {
      offs.writeUInt32BE((0x80000000 | large.length) >>> 0, k * 4);
      const b = Buffer.alloc(8);
      b.writeBigUInt64BE(BigInt(e.offset));
      large.push(b);
    }
  });
  const idxParts = [Buffer.from([0xff, 0x74, 0x4f, 0x63, 0, 0, 0, 2]), fanout, ...entries.map((e) => e.oid), crcs, offs, ...large, packSum];
  const idxHash = createHash('sha1');
  for (const p of idxParts) idxHash.update(p);
  idxParts.push(idxHash.digest());

  const dir = join(objectsDir, 'pack');
  await mkdir(dir, { recursive: true, mode: 0o700 });
  const name = `pack-${packSum.toString('hex')}`;
  // The pack must be complete before its index appears: Git ignores a pack without an index.
  await writeDurably(join(dir, `${name}.pack`), parts);
  await writeDurably(join(dir, `${name}.idx`), idxParts);
  // The names too: a ref moved after this must never point at a pack a power loss took away.
  const d = await open(dir, 'r');
  try {
    await d.sync();
  } finally {
    await d.close();
  }
  return name;
}

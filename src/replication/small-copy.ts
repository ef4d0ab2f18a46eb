// Copies of small content over the member RPC (content_read): read from a holder, checked
// against the content's piece hashes, stored as the swarm would store a finished download.
// Anything unusual (no holder answers, wrong bytes, a full disk) returns false and the swarm
// fetches it instead.
import { open } from 'node:fs/promises';
import { type ContentId, type Info, pieceCount, verifyPiece } from '../content/metainfo.js';
import type { ContentStore } from '../content/store.js';
import type { RpcClient } from '../cluster/rpc-client.js';
import { call } from '../daemon/methods.js';
import { CONTENT_READ, SMALL_CONTENT_MAX } from './methods.js';
import type { Logger } from '../util/log.js';

export interface SmallCopyDeps {
  store: ContentStore;
  log: Logger;
  /** Members said to hold the content, reachable ones first. */
  holders(id: ContentId): string[];
  client(nodeId: string): RpcClient | null;
}

export const isSmall = (info: Info): boolean => info.length > 0 && info.length <= SMALL_CONTENT_MAX;

/** True when `data` is exactly the content `info` describes (every piece's SHA-1). */
export function matches(info: Info, data: Buffer): boolean {
  if (data.length !== info.length) return false;
  for (let i = 0; i < pieceCount(info); i++) {
    if (!verifyPiece(info, i, data.subarray(i * info.pieceLength, (i + 1) * info.pieceLength))) return false;
  }
  return true;
}

/** Copies small content from the first holder that gives its bytes; false: nobody did (the swarm's turn). */
export async function copySmall(d: SmallCopyDeps, id: ContentId, info: Info): Promise<boolean> {
  if (!isSmall(info)) return false;
  for (const node of d.holders(id).slice(0, 3)) {
    const client = d.client(node);
    if (!client) continue;
    let data: Buffer;
    try {
      data = Buffer.from((await call(client, CONTENT_READ, { id }, { timeoutMs: 15_000 })).data, 'base64');
    } catch {
      continue; // not there (any more), an older node, a lost connection: the next holder
    }
    if (!matches(info, data)) {
      d.log.warn('replication.small_copy.bad', { id, from: node, bytes: data.length });
      continue;
    }
    try {
      await d.store.putData(id, data, { durable: true });
      return true;
    } catch (e) {
      d.log.warn('replication.small_copy.store_failed', { id, error: (e as Error).message });
      return false;
    }
  }
  return false;
}

/** content_read's answer: the stored bytes of small, complete content, or null. */
export async function readSmall(store: ContentStore, id: ContentId, info: Info | undefined): Promise<Buffer | null> {
  if (!info || !isSmall(info)) return null;
  let fh;
  try {
    fh = await open(store.path(id), 'r');
  } catch {
    return null;
  }
  try {
    // One byte past the size it should have: a stored file of another size is not served.
    const buf = Buffer.alloc(info.length + 1);
    const { bytesRead } = await fh.read(buf, 0, buf.length, 0);
    return bytesRead === info.length ? buf.subarray(0, bytesRead) : null;
  } finally {
    await fh.close();
  }
}

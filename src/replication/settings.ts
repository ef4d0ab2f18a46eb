// Cluster-wide replication settings, kept as records in the metadata repository so every member
// reads the same value and a change reaches all of them with the namespace. A record holds one
// setting with the time it was set and by whom, encoded so that the byte order is the time
// order: the merge keeps the larger bytes of a record changed on both sides, which is therefore
// the later change (last writer wins, the same on every node).
export const COPIES_RECORD = 'config/copies';
/** 'config/maintenance/<nodeId>': 1 while the node is in maintenance (no re-replication of its copies). */
export const MAINTENANCE_RECORD = 'config/maintenance/';
/** 'config/drain/<nodeId>': 1 while the node's copies are moved elsewhere (before it is removed). */
export const DRAIN_RECORD = 'config/drain/';
/** 'config/zone/<nodeId>': the rack or site a node's machine is in (`--zone`), set by the node itself. */
export const ZONE_RECORD = 'config/zone/';
export const ZONE_RE = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/;
export const DEFAULT_COPIES = 2;
export const MAX_COPIES = 16;

/** What a setting record says: the value, when and by which node it was set. */
export interface Setting<T> { value: T; at: number; by: string }

/** A fixed-width time first: records compare as bytes in time order (then by node). */
export function encodeSetting(value: number | string | Record<string, unknown>, by: string, at = Date.now()): Buffer {
  return Buffer.from(JSON.stringify({ at: String(Math.max(0, Math.floor(at))).padStart(16, '0'), by, value }) + '\n');
}

/** Null for anything that is not a well-formed copies setting (a member's bad write counts for nothing). */
export function decodeCopies(data: Buffer | undefined): Setting<number> | null {
  return decodeSetting(data, 1, MAX_COPIES);
}

export function decodeFlag(data: Buffer | undefined): Setting<number> | null {
  return decodeSetting(data, 0, 1);
}

export function decodeZone(data: Buffer | undefined): Setting<string> | null {
  const r = parse(data);
  return r && typeof r.value === 'string' && ZONE_RE.test(r.value) ? { ...r, value: r.value } : null;
}

function decodeSetting(data: Buffer | undefined, min: number, max: number): Setting<number> | null {
  const r = parse(data);
  if (!r || !Number.isSafeInteger(r.value) || (r.value as number) < min || (r.value as number) > max) return null;
  return { ...r, value: r.value as number };
}

function parse(data: Buffer | undefined): Setting<unknown> | null {
  if (!data || data.length > 512) return null;
  let o: unknown;
  try {
    o = JSON.parse(data.toString('utf8'));
  } catch {
    return null;
  }
  const r = o as { at?: unknown; by?: unknown; value?: unknown };
  if (!r || typeof r !== 'object' || typeof r.at !== 'string' || !/^\d{16}$/.test(r.at) || typeof r.by !== 'string' || r.by.length > 64) return null;
  return { value: r.value, at: Number(r.at), by: r.by };
}

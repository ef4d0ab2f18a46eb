// Placement: which disks should hold a content id. A pure function of its inputs (no I/O, clock or
// randomness), like meta/merge.ts: every node that knows the same disks computes the same holders,
// so no coordinator decides and nothing has to be agreed on first.
//
// Rules (README.md says why):
// - Weighted rendezvous hashing (highest random weight, Thaler & Ravishankar 1996), logarithmic
//   form: a disk scores -total / ln(h), h in (0,1) from SHA-256(id, node); highest first, ties by
//   node id. The weight is the disk's total capacity, not its free space: free space changes with
//   every write, so placements weighted by it would drift as disks fill and nodes holding reports
//   of different age would disagree; capacity changes only when disks come and go.
// - Eligible for new copies: state 'up', total > 0, fill (total-free)/total below `nearFull`
//   (0.85, Ceph's nearfull ratio); a near-full disk keeps its place for what it holds already.
// - The writer's disk first when it is eligible: the bytes are already there.
// - Then the disks the entry's `at` names (its writer chose them by fill with choose(), below),
//   where eligible, ahead of the hash ranking: hashing alone leaves the small disks fuller (the
//   multi-pick bias) with noise that no stateless rule removes at a few thousand files, so the
//   balance comes from a choice made once and recorded where every node reads it.
// - Distinct disks always; first distinct zones (where labelled) on distinct machines, then
//   distinct machines, then any disk. One ranking walked up to three times: a machine wins with
//   the sum of its disks' weights, and adding a disk changes only placements that now choose it.
// Disk lists come from peers: anything malformed throws PlacementError instead of being placed on.
import { createHash } from 'node:crypto';
import { isContentId } from '../content/metainfo.js';

export type DiskState = 'up' | 'down' | 'maintenance' | 'draining';

export interface Disk {
  /** Node id: one node per disk. */
  node: string;
  /** The failure domain: disks of one machine die together. */
  machine: string;
  /** Rack or site (`--zone`); unlabelled machines count as a zone of their own. */
  zone?: string;
  /** Bytes. */
  free: number;
  /** Bytes. */
  total: number;
  state: DiskState;
}

export interface PlacementRequest {
  /** Content id (v1 info hash, 40 lowercase hex). */
  id: string;
  copies: number;
  /** Node id of the disk that wrote the content, if known. */
  writer?: string;
  /** Disks chosen for it when written (the entry's `at` after the writer), most wanted first. */
  prefer?: readonly string[];
  disks: readonly Disk[];
  /** Fill ratio at and above which a disk takes no new copies (default NEAR_FULL). */
  nearFull?: number;
  /**
   * Size of the content: a disk takes a new copy only if it stays below `nearFull` with it, so
   * a disk never holds a place it has no room for (and the content would stay a copy short).
   */
  bytes?: number;
  /**
   * Node ids holding a complete copy: a near-full disk keeps its place for content it holds
   * (it takes no *new* copies), or every disk crossing the threshold would shed all it holds.
   */
  holders?: readonly string[];
}

export interface Placement {
  /** Node ids that should hold the content, most wanted first. */
  nodes: string[];
  /** Copies that found no eligible disk: copies - nodes.length. */
  short: number;
}

export const NEAR_FULL = 0.85;

export class PlacementError extends Error {
  constructor(message: string) {
    super(`placement: ${message}`);
    this.name = 'PlacementError';
  }
}

/** Rendezvous score of `node` for content `id`: -weight / ln(h), h uniform in (0,1). */
export function score(id: string, node: string, weight: number): number {
  const d = createHash('sha256').update(id).update(node).digest(); // id has a fixed length: no separator needed
  // 52 bits, so (u + 0.5) / 2^52 is exact and strictly inside (0,1): ln(h) is never 0 nor -Infinity.
  const u = d.readUInt32BE(0) * 2 ** 20 + (d.readUInt32BE(4) >>> 12);
  return -weight / Math.log((u + 0.5) / 2 ** 52);
}

/** Where `copies` copies of `id` go. Throws PlacementError on malformed input. */
export function place(req: PlacementRequest): Placement {
  const { nearFull } = check(req);
  const held = new Set(req.holders ?? []);
  const bytes = req.bytes ?? 0;
  const eligible = req.disks.filter((d) => canTake(d, nearFull, bytes) || (d.state === 'up' && d.total > 0 && held.has(d.node)));
  const writer = eligible.filter((d) => d.node === req.writer);
  const byNode = new Map(eligible.map((d) => [d.node, d]));
  const hinted = [...new Set(req.prefer ?? [])].flatMap((n) => byNode.get(n) ?? []);
  const rest = hinted.length ? eligible.filter((d) => !hinted.includes(d)) : eligible;
  const nodes = pick([...hinted, ...ranked(req.id, rest)], req.copies, writer).map((d) => d.node);
  return { nodes, short: req.copies - nodes.length };
}

export interface ChooseRequest {
  id: string;
  /** Disks to choose (the first copy being the writer's when it can take it). */
  copies: number;
  writer?: string;
  /** As the writer sees them now: free space counting what it has itself sent their way since. */
  disks: readonly Disk[];
  nearFull?: number;
  bytes?: number;
  /** Candidates compared per copy (default 2). */
  choices?: number;
}

/**
 * The disks new content should go to, chosen once by its writer and recorded in its entry
 * (`at`): the writer's disk, then for each further copy the emptiest (fill after taking it) of
 * the `choices` best-ranked disks that can take it on a new zone and machine (else a new machine,
 * else any new disk). The power of two choices (Mitzenmacher 2001): comparing two hash-ranked
 * candidates evens fill nearly as well as taking the emptiest disk, and writers whose free-space
 * reports are minutes old do not all pile onto the same emptiest one. Pure, like place().
 */
export function choose(req: ChooseRequest): string[] {
  const { nearFull } = check(req);
  const k = req.choices ?? 2;
  if (!Number.isSafeInteger(k) || k < 1) fail(`choices must be an integer >= 1 (got ${String(k)})`);
  const bytes = req.bytes ?? 0;
  const eligible = req.disks.filter((d) => canTake(d, nearFull, bytes));
  const out: Disk[] = [], machines = new Set<string>(), zones = new Set<string>();
  const take = (d: Disk) => { out.push(d); machines.add(d.machine); zones.add(zoneOf(d)); };
  const w = eligible.find((d) => d.node === req.writer);
  if (w) take(w);
  const order = ranked(req.id, eligible);
  const fill = (d: Disk) => (d.total - d.free + bytes) / d.total;
  while (out.length < req.copies) {
    let cand: Disk[] = [];
    for (const pass of [0, 1, 2]) {
      cand = order.filter((d) => !out.includes(d) && (pass === 2 || (!machines.has(d.machine) && (pass === 1 || !zones.has(zoneOf(d)))))).slice(0, k);
      if (cand.length) break;
    }
    if (!cand.length) break;
    take(cand.reduce((best, d) => (fill(d) < fill(best) ? d : best))); // ties: the better ranked
  }
  return out.map((d) => d.node);
}

export interface SurplusRequest extends PlacementRequest {
  /** Node ids holding a complete copy (duplicates count once). */
  holders: readonly string[];
}

/**
 * Holders that may drop their copy, the first to drop first: never more than holders - copies.
 * Kept: holders in the placement, then the other holders on new failure domains first, preferring
 * up disks with room, then near-full ones, maintenance, draining (by score within each); copies on
 * down or unknown disks are dropped first but still count, so a copy that is only unreachable is
 * not replaced by dropping a reachable one.
 * Every node with the same inputs names the same holders, so two never drop the same content's
 * last copies at once (the drop itself still locks `copies` other copies first).
 */
export function surplus(req: SurplusRequest): string[] {
  const wanted = place(req).nodes;
  if (!Array.isArray(req.holders) || !req.holders.every(isName)) fail('holders must be a list of node ids');
  const held = [...new Set(req.holders)];
  if (held.length <= req.copies) return [];
  const nearFull = req.nearFull ?? NEAR_FULL;
  const byNode = new Map(req.disks.map((d) => [d.node, d]));
  const tier = (n: string): number => {
    const d = byNode.get(n);
    if (!d) return TIER.down;
    return d.state === 'up' && !canTake(d, nearFull, req.bytes ?? 0) ? 0.5 : TIER[d.state];
  };
  const key = new Map(held.map((n) => [n, { t: tier(n), s: score(req.id, n, byNode.get(n)?.total ?? 0) }]));
  const order = held.sort((a, b) => key.get(a)!.t - key.get(b)!.t || byScore(a, key.get(a)!.s, b, key.get(b)!.s));
  const live = order.filter((n) => key.get(n)!.t < TIER.down).map((n) => byNode.get(n)!);
  const placed = live.filter((d) => wanted.includes(d.node));
  const keep = new Set(pick(live.filter((d) => !placed.includes(d)), req.copies, placed).map((d) => d.node));
  for (const n of order) if (keep.size < req.copies) keep.add(n); // copies on down or unknown disks still count
  return order.filter((n) => !keep.has(n)).reverse();
}

const TIER: Record<DiskState, number> = { up: 0, maintenance: 1, draining: 2, down: 3 };

/** Bytes a disk can still take before it reaches `nearFull` (negative past it). */
export const roomOf = (d: { total: number; free: number }, nearFull: number) => d.free - (1 - nearFull) * d.total;

/** A new copy of `bytes` keeps the disk below `nearFull`. */
export const canTake = (d: Disk, nearFull: number, bytes = 0) => d.state === 'up' && d.total > 0 && bytes < roomOf(d, nearFull);

function byScore(a: string, sa: number, b: string, sb: number): number {
  return sa > sb ? -1 : sa < sb ? 1 : a < b ? -1 : a > b ? 1 : 0;
}

function ranked(id: string, disks: readonly Disk[]): Disk[] {
  return disks.map((d) => ({ d, s: score(id, d.node, d.total) })).sort((a, b) => byScore(a.d.node, a.s, b.d.node, b.s)).map((x) => x.d);
}

/** Up to n disks: `first` as given, then from `ranked` a new zone and machine, then a new machine, then any new disk. */
function pick(ranked: readonly Disk[], n: number, first: readonly Disk[]): Disk[] {
  const out = new Set<Disk>(), machines = new Set<string>(), zones = new Set<string>();
  const take = (d: Disk) => { out.add(d); machines.add(d.machine); zones.add(zoneOf(d)); };
  for (const d of first) if (out.size < n) take(d);
  for (const pass of [0, 1, 2]) {
    for (const d of ranked) {
      if (out.size >= n) return [...out];
      if (!out.has(d) && (pass === 2 || (!machines.has(d.machine) && (pass === 1 || !zones.has(zoneOf(d)))))) take(d);
    }
  }
  return [...out];
}

const zoneOf = (d: Disk) => (d.zone === undefined ? `m:${d.machine}` : `z:${d.zone}`);
const isName = (s: unknown): s is string => typeof s === 'string' && s.length > 0;
const STATES = new Set<unknown>(['up', 'down', 'maintenance', 'draining']);

function fail(message: string): never {
  throw new PlacementError(message);
}

function check(req: PlacementRequest): { nearFull: number } {
  if (typeof req.id !== 'string' || !isContentId(req.id)) fail(`content id must be 40 lowercase hex digits (got ${JSON.stringify(req.id)})`);
  if (!Number.isSafeInteger(req.copies) || req.copies < 1) fail(`copies must be an integer >= 1 (got ${String(req.copies)})`);
  if (req.writer !== undefined && !isName(req.writer)) fail('writer must be a node id or undefined');
  if (req.prefer !== undefined && (!Array.isArray(req.prefer) || req.prefer.length > 64 || !req.prefer.every(isName))) fail('prefer must be a list of at most 64 node ids');
  if (req.holders !== undefined && (!Array.isArray(req.holders) || !req.holders.every(isName))) fail('holders must be a list of node ids');
  if (req.bytes !== undefined && !(Number.isSafeInteger(req.bytes) && req.bytes >= 0)) fail(`bytes must be a whole number >= 0 (got ${String(req.bytes)})`);
  const nearFull = req.nearFull ?? NEAR_FULL;
  if (typeof nearFull !== 'number' || !(nearFull > 0 && nearFull <= 1)) fail(`nearFull must be a fill ratio in (0, 1] (got ${String(nearFull)})`);
  if (!Array.isArray(req.disks)) fail('disks must be a list');
  const seen = new Set<string>();
  req.disks.forEach((d: Disk, i) => {
    if (d === null || typeof d !== 'object') fail(`disk ${i} is not an object`);
    const at = `disk ${i} (node ${JSON.stringify(d.node)})`;
    if (!isName(d.node)) fail(`disk ${i}: node must be a non-empty string`);
    if (seen.has(d.node)) fail(`${at}: duplicate node id; each disk is one node and is listed once`);
    seen.add(d.node);
    if (!isName(d.machine)) fail(`${at}: machine must be a non-empty string`);
    if (d.zone !== undefined && !isName(d.zone)) fail(`${at}: zone must be a non-empty string or absent`);
    if (!STATES.has(d.state)) fail(`${at}: state must be up, down, maintenance or draining (got ${JSON.stringify(d.state)})`);
    if (typeof d.total !== 'number' || !Number.isFinite(d.total) || d.total < 0) fail(`${at}: total must be a finite number of bytes >= 0 (got ${String(d.total)})`);
    if (typeof d.free !== 'number' || !(d.free >= 0 && d.free <= d.total)) fail(`${at}: free must be between 0 and total (${d.total}) bytes (got ${String(d.free)})`);
  });
  return { nearFull };
}

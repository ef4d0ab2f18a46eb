// What this node should do about one content id, from the same inputs every node has: place it
// (placement.ts) over the disks of the view, then fetch it if this disk is placed for it and does
// not hold it, or offer to drop it if this disk holds a copy that surplus() names. Pure: the loop
// (loop.ts) supplies the view and acts on the answer.
import { place, surplus, Disk } from './placement.js';

export type Action = { kind: 'fetch'; live: number } | { kind: 'drop' } | { kind: 'keep' };

export interface Judged {
  action: Action;
  /** Complete copies on disks that are up or in maintenance (this one included). */
  live: number;
  /** Copies placement found no disk for. */
  short: number;
}

export function judge(o: {
  id: string; copies: number; writer?: string; prefer?: readonly string[]; me: string; disks: readonly Disk[]; mine: boolean;
  /** Other nodes known to hold a complete copy. */
  others: readonly string[];
  /** Of those, the ones that answered lately (where a fetch can get pieces). */
  reachable: (node: string) => boolean;
  nearFull?: number;
  /** The content's size (placement's room check). */
  bytes?: number;
  /** place()'s nodes for these inputs, if known already (the loop caches them). */
  placed?: readonly string[];
}): Judged {
  const state = new Map(o.disks.map((d) => [d.node, d.state]));
  const holders = o.mine ? [o.me, ...o.others] : [...o.others];
  const live = holders.filter((n) => state.get(n) === 'up' || state.get(n) === 'maintenance' || state.get(n) === 'draining').length;
  const req = { id: o.id, copies: o.copies, writer: o.writer, prefer: o.prefer, disks: o.disks, holders, nearFull: o.nearFull, bytes: o.bytes };
  const nodes = o.placed ?? place(req).nodes;
  const short = o.copies - nodes.length;
  if (nodes.includes(o.me)) {
    if (o.mine) return { action: { kind: 'keep' }, live, short };
    return { action: { kind: 'fetch', live: o.others.filter(o.reachable).length }, live, short };
  }
  if (o.mine && surplus(req).includes(o.me)) return { action: { kind: 'drop' }, live, short };
  return { action: { kind: 'keep' }, live, short };
}

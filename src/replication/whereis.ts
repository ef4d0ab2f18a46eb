// `delugefs whereis ROOT PATH...`: which disks hold each file's content, complete or partial, and
// how fresh that knowledge is (this disk: now; a member: its last answer to the replication
// poll). Paths are the cluster's ("/a/b") or under this node's mount. Served by the control
// socket; the method is in methods.ts.
import type { ContentId } from '../content/metainfo.js';
import { printable } from '../util/text.js';
import type { Node } from '../meta/tree.js';
import type { ClusterView, Member } from './view.js';

/** Most paths in one whereis call (the CLI sends more in batches). */
export const MAX_WHEREIS_PATHS = 256;

export interface Holder {
  nodeId: string;
  machine: string;
  /** The disk's state as this node sees it (up, down, maintenance, draining, unknown). */
  state: string;
  complete: boolean;
  /** Of a partial download: pieces held, of how many (0, 0 for a complete copy). */
  have: number;
  pieces: number;
  /** When this was known: null for this disk (now), else the member's last answer. */
  reportedAt: string | null;
}

export interface Where {
  path: string;
  /** Why there is nothing to say (no such file, not a regular file), else null. */
  error: string | null;
  size: number;
  id: ContentId | null;
  /** Copies the cluster keeps of it. */
  copies: number;
  /** Complete copies first, then partial downloads; by node id within each. */
  holders: Holder[];
}

export interface WhereDeps {
  me: string;
  members: Member[];
  view: ClusterView;
  get(path: string): Node | undefined;
  copiesFor(id: ContentId): number;
  /** This disk: a complete copy, or a partial download's pieces. */
  local(id: ContentId): { complete: true } | { complete: false; have: number; pieces: number } | null;
  /** A mount path of this node to strip (null: not mounted). */
  mount: string | null;
}

/** A path under the mount becomes the cluster's path; anything else is taken as the cluster's. */
export function clusterPath(path: string, mount: string | null): string {
  if (mount && (path === mount || path.startsWith(mount.endsWith('/') ? mount : `${mount}/`))) return '/' + path.slice(mount.length).replace(/^\/+/, '');
  return path;
}

export function whereis(d: WhereDeps, paths: readonly string[]): Where[] {
  const flags = new Map(d.members.map((m) => [m.nodeId, m]));
  const holder = (nodeId: string, at: number | null, complete: boolean, have = 0, pieces = 0): Holder => {
    const m = flags.get(nodeId);
    return {
      nodeId, machine: m?.machine ?? '', state: m ? d.view.state(nodeId, m) : 'removed',
      complete, have, pieces, reportedAt: at === null ? null : new Date(at).toISOString(),
    };
  };
  return paths.map((asked): Where => {
    const path = clusterPath(asked, d.mount);
    const out: Where = { path, error: null, size: 0, id: null, copies: 0, holders: [] };
    const n = path.startsWith('/') ? d.get(path) : undefined;
    if (!n) return { ...out, error: 'no such file in the cluster' };
    const e = n.entry;
    if (e.type !== 'file') return { ...out, error: `not a regular file (${e.type === 'dir' ? 'a directory' : e.type})` };
    out.size = e.info.length;
    out.id = e.id;
    out.copies = d.copiesFor(e.id);
    if (e.info.length === 0) return out; // the empty file is never stored: every node has it
    const here = d.local(e.id);
    const complete: Holder[] = [], partial: Holder[] = [];
    if (here?.complete) complete.push(holder(d.me, null, true));
    else if (here) partial.push(holder(d.me, null, false, here.have, here.pieces));
    for (const node of d.view.holdersOf(e.id)) complete.push(holder(node, d.view.heldBy(node)?.at ?? null, true));
    for (const p of d.view.partialsOf(e.id)) partial.push(holder(p.node, p.at, false, p.partial.have, p.partial.pieces));
    const byNode = (a: Holder, b: Holder) => (a.nodeId < b.nodeId ? -1 : a.nodeId > b.nodeId ? 1 : 0);
    out.holders = [...complete.sort(byNode), ...partial.sort(byNode)];
    return out;
  });
}

/** The CLI's lines: a file, its size and copies, then a line per disk. */
export function renderWhere(w: readonly Where[]): string {
  const lines: string[] = [];
  for (const x of w) {
    if (x.error) {
      lines.push(`${x.path}: ${x.error}`);
      continue;
    }
    const full = x.holders.filter((h) => h.complete).length;
    lines.push(`${x.path}: ${x.size} bytes, ${x.size === 0 ? 'empty (nothing stored)' : `${full} complete ${full === 1 ? 'copy' : 'copies'} (the cluster keeps ${x.copies})`}${x.id ? `, content ${x.id}` : ''}`);
    for (const h of x.holders) {
      const what = h.complete ? 'complete' : `partial ${h.have}/${h.pieces} pieces`;
      lines.push(`  ${h.nodeId} (${h.machine || '?'}, ${h.state}): ${what}, ${h.reportedAt ? `as of ${h.reportedAt}` : 'this disk, now'}`);
    }
    if (x.size > 0 && !x.holders.length) lines.push('  no disk is known to hold it');
  }
  return lines.map(printable).join('\n'); // names and machines are any member's words: no terminal escapes
}

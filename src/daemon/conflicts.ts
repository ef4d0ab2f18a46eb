// `delugefs conflicts`: the conflict copies a merge kept (merge.ts conflictName), each with the
// version kept aside and the version now under the original name (who wrote each, when, how big),
// so an operator can pick one and delete the other. Served by the running node's control socket.
import { method, obj, serve } from './methods.js';
import { localOnly } from '../cluster/control-socket.js';
import { CONFLICT_TAG } from '../meta/merge.js';
import { printable } from '../util/text.js';
import type { ClusterNode } from '../node/cluster-node.js';
import type { DelugeNode } from '../node/node.js';
import type { DirNode, Node } from '../meta/tree.js';

/** Most conflicts in one reply (in path order); `total` still counts them all. */
export const MAX_LISTED = 1000;

export interface Version {
  type: string;
  /** The node that wrote this version, when its entry says so. */
  node: string | null;
  mtime: number;
  /** Bytes of a regular file, else 0. */
  size: number;
}

export interface Conflict {
  /** The conflict copy. */
  path: string;
  /** The name it was kept beside (a name too long to fit the tag was cut: then nothing is there). */
  original: string;
  /** The time and node the copy's name carries (the kept version's mtime and writer). */
  stamp: string;
  from: string;
  copy: Version;
  /** What the original name holds now (null: nothing, or the original is unknown). */
  current: Version | null;
}

export interface Conflicts { total: number; items: Conflict[] }

// stem + tag + yyyymmdd-hhmmss + '-' + node + extension + optional ".N"
const NAME_RE = new RegExp(`^(.*)${CONFLICT_TAG.replace(/[.]/g, '\\.')}(\\d{8}-\\d{6})-([A-Za-z0-9]{1,16})(.*?)(\\.\\d+)?$`);

/** The parts of a conflict copy's name, or null if it is not one. */
export function parseConflictName(name: string): { original: string; stamp: string; from: string } | null {
  const m = NAME_RE.exec(name);
  if (!m || !m[1]) return null;
  return { original: m[1] + m[4], stamp: m[2]!, from: m[3]! };
}

function version(n: Node): Version {
  const e = n.entry;
  return { type: e.type, node: e.node ?? null, mtime: e.mtime, size: e.type === 'file' ? e.info.length : 0 };
}

/** Every conflict copy under `root` in path order, the first MAX_LISTED of them in full. */
export function listConflicts(root: DirNode, max = MAX_LISTED): Conflicts {
  const found: { path: string; dir: DirNode; name: string; node: Node; parsed: NonNullable<ReturnType<typeof parseConflictName>> }[] = [];
  const stack: [string, DirNode][] = [['', root]];
  while (stack.length) {
    const [at, d] = stack.pop()!;
    for (const [name, c] of d.children) {
      if (name.includes(CONFLICT_TAG)) {
        const parsed = parseConflictName(name);
        if (parsed) found.push({ path: `${at}/${name}`, dir: d, name, node: c, parsed });
      }
      if (c.kind === 'dir') stack.push([`${at}/${name}`, c]);
    }
  }
  found.sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0));
  const items = found.slice(0, max).map(({ path, dir, node, parsed }): Conflict => {
    const orig = dir.children.get(parsed.original);
    return {
      path,
      original: path.slice(0, path.lastIndexOf('/') + 1) + parsed.original,
      stamp: parsed.stamp, from: parsed.from,
      copy: version(node),
      current: orig ? version(orig) : null,
    };
  });
  return { total: found.length, items };
}

const when = (ms: number): string => new Date(ms).toISOString().replace(/\.\d+Z$/, 'Z');
const side = (v: Version): string => `${v.type}${v.type === 'file' ? ` of ${v.size} B` : ''}, written ${v.node ? `by ${v.node} ` : ''}at ${when(v.mtime)}`;

export function renderConflicts(c: Conflicts): string {
  if (!c.total) return 'no conflict copies';
  const lines = [`${c.total} conflict ${c.total === 1 ? 'copy' : 'copies'}${c.total > c.items.length ? ` (the first ${c.items.length} shown)` : ''}`];
  for (const i of c.items) {
    lines.push(i.path);
    lines.push(`  kept aside: ${side(i.copy)}`);
    lines.push(i.current ? `  now at ${i.original}: ${side(i.current)}` : `  ${i.original}: nothing there now`);
  }
  return lines.map(printable).join('\n'); // names are any member's words: no terminal escapes
}

export const CONFLICTS = method('conflicts', () => null, (v): Conflicts => {
  const o = obj(v, 'reply');
  if (typeof o.total !== 'number' || !Array.isArray(o.items) || o.items.length > MAX_LISTED) throw new Error('not a conflicts reply');
  return o as unknown as Conflicts;
});

export function serveConflicts(node: DelugeNode, cluster: ClusterNode): void {
  serve(cluster.rpc, CONFLICTS, (_p, peer) => {
    localOnly(peer, 'conflicts');
    return listConflicts(node.ns.tree.root);
  });
}

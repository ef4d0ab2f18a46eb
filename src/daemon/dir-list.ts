// `dir_list` (local callers only): one page of a namespace directory, names in code-unit order (up to SORT_MAX names) with
// type, size and mtime, for the dashboard's file browser (web/api.ts adds whereis' holders).
// Paged because a directory may hold millions of names; the reply is bounded by MAX_DIR_PAGE.
import { int, method, obj, str, list, serve } from './methods.js';
import { localOnly } from '../cluster/control-socket.js';
import type { ClusterNode } from '../node/cluster-node.js';
import type { DelugeNode } from '../node/node.js';

export const MAX_DIR_PAGE = 256;
/** Directories up to this many names are listed sorted; larger ones in their own order. */
export const SORT_MAX = 20_000;

export interface DirItem { name: string; type: string; size: number; mtime: number }
export interface DirPage { path: string; total: number; offset: number; items: DirItem[] }

const PATH_RE = /^\/[^\0]*$/;

export const DIR_LIST = method('dir_list', (v): { path: string; offset: number; limit: number } => {
  const o = obj(v);
  return { path: str(o.path, 'path', PATH_RE, 4096), offset: int(o.offset ?? 0, 'offset', 0, 1 << 30), limit: int(o.limit ?? 100, 'limit', 1, MAX_DIR_PAGE) };
}, (v): DirPage => {
  const o = obj(v, 'reply');
  return {
    path: str(o.path, 'path', PATH_RE, 4096), total: int(o.total, 'total', 0, Number.MAX_SAFE_INTEGER), offset: int(o.offset, 'offset', 0, 1 << 30),
    items: list(o.items, 'items', MAX_DIR_PAGE, (x, w) => {
      const i = obj(x, w);
      return { name: str(i.name, `${w}.name`, /^[^\0/]+$/, 1024), type: str(i.type, `${w}.type`, /^[a-z]{1,16}$/), size: int(i.size, `${w}.size`, 0, Number.MAX_SAFE_INTEGER), mtime: int(i.mtime, `${w}.mtime`, 0, Number.MAX_SAFE_INTEGER) };
    }),
  };
});

export function listDir(node: DelugeNode, p: { path: string; offset: number; limit: number }): DirPage {
  const d = node.ns.tree.get(p.path);
  if (!d) throw new Error(`no such directory: ${p.path}`);
  if (d.kind !== 'dir') throw new Error(`not a directory: ${p.path}`);
  // Sorted on every page up to SORT_MAX names (no index is kept for a view that is rarely open);
  // past it the directory's own order, read no further than the page: sorting a million names
  // took ~1.5 s of the event loop that also serves the mount, for every page of every open view.
  let page: string[];
  if (d.children.size <= SORT_MAX) page = [...d.children.keys()].sort().slice(p.offset, p.offset + p.limit);
  else {
    page = [];
    let i = 0;
    for (const name of d.children.keys()) {
      if (i++ < p.offset) continue;
      if (page.length >= p.limit) break;
      page.push(name);
    }
  }
  const items = page.map((name): DirItem => {
    const e = d.children.get(name)!.entry;
    return { name, type: e.type, size: e.type === 'file' ? e.info.length : 0, mtime: Math.max(0, Math.floor(e.mtime)) };
  });
  return { path: p.path, total: d.children.size, offset: p.offset, items };
}

export function serveDirList(node: DelugeNode, cluster: ClusterNode): void {
  serve(cluster.rpc, DIR_LIST, (p, peer) => {
    localOnly(peer, 'dir_list');
    return listDir(node, p);
  });
}

// Per-directory `copies` (delugefs config ROOT copies N --dir /photos): a record per directory,
// `config/copies-dir/<sha1 of the path>`, holding the path and its copies; "0" removes it. A file
// takes the setting of its nearest directory that has one, else the cluster's; content several
// files share takes the largest of theirs. Computed from the tree in one walk of the directories
// that have a setting (not of the whole namespace), again only after a commit or merge.
import { createHash } from 'node:crypto';
import type { ContentId } from '../content/metainfo.js';
import type { Tree, Node } from '../meta/tree.js';
import { splitPath } from '../meta/names.js';
import { MAX_COPIES } from './settings.js';

export const DIR_COPIES_RECORD = 'config/copies-dir/';

export const dirKey = (path: string) => createHash('sha1').update(normalize(path)).digest('hex');

export function normalize(path: string): string {
  return '/' + splitPath(path).filter((p) => p !== '' && p !== '.').join('/');
}

/** The directory settings in the records: path -> copies (0: removed). Malformed records are skipped. */
export function dirSettings(records: Map<string, Buffer>): Map<string, number> {
  const out = new Map<string, number>();
  for (const [key, data] of records) {
    try {
      const o = JSON.parse(data.toString('utf8')) as { value?: { path?: unknown; copies?: unknown } };
      const path = o.value?.path, copies = o.value?.copies;
      if (typeof path !== 'string' || path.length > 4096 || dirKey(path) !== key) continue;
      if (!Number.isSafeInteger(copies) || (copies as number) < 0 || (copies as number) > MAX_COPIES) continue;
      if (copies) out.set(normalize(path), copies as number);
    } catch { /* not JSON: counts for nothing */ }
  }
  return out;
}

/**
 * Content whose files are under a directory with a setting -> its copies (the largest over its
 * files; the cluster's `fallback` too when some of its files are under no setting).
 */
export function copiesByContent(tree: Tree, settings: Map<string, number>, fallback: number): Map<ContentId, number> {
  const out = new Map<ContentId, number>();
  const seen = new Map<ContentId, number>(); // files found under a setting
  const dirs = [...settings.keys()];
  const walk = (n: Node, copies: number, at: string) => {
    if (n.kind === 'leaf') {
      if (n.entry.type !== 'file') return;
      const id = n.entry.id;
      out.set(id, Math.max(out.get(id) ?? 0, copies));
      seen.set(id, (seen.get(id) ?? 0) + 1);
      return;
    }
    for (const [name, c] of n.children) {
      const p = at === '/' ? `/${name}` : `${at}/${name}`;
      if (c.kind === 'dir' && settings.has(p)) continue; // walked from its own setting
      walk(c, copies, p);
    }
  };
  for (const d of dirs) {
    const n = tree.get(d);
    if (n?.kind === 'dir') walk(n, settings.get(d)!, d);
  }
  for (const [id, n] of seen) if (n < tree.refCount(id)) out.set(id, Math.max(out.get(id)!, fallback));
  return out;
}

/** Copies for a file at `path`: its nearest directory's setting, else `fallback`. */
export function copiesAtPath(settings: Map<string, number>, path: string, fallback: number): number {
  if (!settings.size) return fallback;
  const parts = splitPath(normalize(path)).filter((p) => p !== '');
  for (let i = parts.length - 1; i >= 0; i--) {
    const c = settings.get('/' + parts.slice(0, i).join('/'));
    if (c !== undefined) return c;
  }
  return fallback;
}

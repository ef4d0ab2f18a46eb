// Objects a member sends over the sync RPC (cluster/sync-push.ts), judged in this process: ids
// computed here (never the sender's word), and only the shapes DelugeFS itself writes, which is
// narrower than what git's receive.fsckObjects lets in: commits with a tree, parents (the caller
// refuses a root it does not hold: another history), author and committer, nothing else in the header; trees
// of files (100644) and directories (40000) in git's order, each name once, every name one our
// encoder makes (names.ts: canonical escapes, so no '.git', 'git~1' or '.gitmodules' look-alike)
// or a marker, and none with a code point HFS+ ignores; blobs up to the entry limit. Anything else is refused whole, and the sender
// pushes with git instead, where fsck and the hooks judge it.
import { isUtf8 } from 'node:buffer';
import { INODES, objectId, RECORDS } from './tree.js';
import { parseTree } from './tree-diff.js';
import { DIR_MARKER, isMarker, storedNameProblem } from './names.js';

export type ObjectType = 'commit' | 'tree' | 'blob';
export interface SentObject { type: ObjectType; oid: string; data: Buffer }
/** An object this one names, and the type it must have. */
export interface Link { oid: string; type: ObjectType }

const HEX = /^[0-9a-f]{40}$/;
/** git's ident: no '<', '>' or newline in name or email; a date without leading zeros; a zone. */
const IDENT = /^(author|committer) [^<>\n]+ <[^<>\n]*> (0|[1-9]\d{0,15}) [+-]\d{4}$/;
/** Views name every tip as a parent; far more than any cluster has nodes. */
const MAX_PARENTS = 1024;

export class ObjectRefused extends Error {}

/**
 * Checks one object as sent (`type`, raw `data`); returns it with its computed id and what it
 * names. `root`: a commit without parents, refused by the caller unless it has it already.
 */
export function checkObject(type: string, data: Buffer, maxBlob: number): { object: SentObject; links: Link[]; root: boolean } {
  if (type !== 'commit' && type !== 'tree' && type !== 'blob') throw new ObjectRefused(`type ${JSON.stringify(type.slice(0, 20))} is not sent`);
  const object = { type, oid: objectId(type, data), data } as SentObject;
  if (type === 'blob') {
    if (data.length > maxBlob) throw new ObjectRefused(`blob ${object.oid} has ${data.length} bytes, more than the ${maxBlob} an entry may have`);
    return { object, links: [], root: false };
  }
  const links = type === 'commit' ? commitLinks(object.oid, data) : treeLinks(object.oid, data);
  return { object, links, root: type === 'commit' && links.length === 1 };
}

function commitLinks(oid: string, data: Buffer): Link[] {
  const bad = (why: string) => new ObjectRefused(`commit ${oid}: ${why}`);
  if (!isUtf8(data) || data.includes(0)) throw bad('not UTF-8 text');
  const text = data.toString('utf8');
  const end = text.indexOf('\n\n');
  if (end < 0) throw bad('no message');
  const lines = text.slice(0, end).split('\n');
  const tree = /^tree ([0-9a-f]{40})$/.exec(lines[0] ?? '')?.[1];
  if (!tree) throw bad('no tree');
  const links: Link[] = [{ oid: tree, type: 'tree' }];
  let i = 1;
  for (; i < lines.length && lines[i]!.startsWith('parent '); i++) {
    const p = lines[i]!.slice(7);
    if (!HEX.test(p)) throw bad('malformed parent');
    links.push({ oid: p, type: 'commit' });
  }
  if (links.length > MAX_PARENTS + 1) throw bad('too many parents');
  const rest = lines.slice(i);
  if (rest.length !== 2 || !rest[0]!.startsWith('author ') || !rest[1]!.startsWith('committer ') || !rest.every((l) => IDENT.test(l))) throw bad('header is not tree, parents, author, committer');
  return links;
}

/** HFS+ ignores these when it compares names: "\u200c.git" would be ".git" there (git fsck refuses them). */
const HFS_IGNORED = /[\u200c-\u200f\u202a-\u202e\u206a-\u206f\ufeff]/;

function nameOk(raw: Buffer): boolean {
  if (!raw.length || !isUtf8(raw)) return false;
  const name = raw.toString('utf8');
  if (HFS_IGNORED.test(name) || name.startsWith('.')) return false;
  return isMarker(name) ? name === DIR_MARKER || name === RECORDS || name === INODES : storedNameProblem(name) === undefined;
}

function treeLinks(oid: string, data: Buffer): Link[] {
  const bad = (why: string) => new ObjectRefused(`tree ${oid}: ${why}`);
  let entries;
  try {
    entries = parseTree(data);
  } catch (e) {
    throw bad((e as Error).message);
  }
  const links: Link[] = [];
  let prev: Buffer | null = null;
  for (const e of entries) {
    if (e.mode !== '100644' && e.mode !== '40000') throw bad(`mode ${e.mode}`);
    if (!nameOk(e.name)) throw bad(`name ${JSON.stringify(e.name.toString('latin1').slice(0, 60))}`);
    // git's order: a directory's name sorts as if it ended in '/'; strictly increasing, so no name twice.
    const key = e.mode === '40000' ? Buffer.concat([e.name, Buffer.from('/')]) : e.name;
    if (prev && Buffer.compare(prev, key) >= 0) throw bad('entries not in order, or a name twice');
    // A file and a directory of one name sort apart: caught by comparing names too.
    prev = key;
    links.push({ oid: e.oid, type: e.mode === '40000' ? 'tree' : 'blob' });
  }
  const names = new Set(entries.map((e) => e.name.toString('latin1')));
  if (names.size !== entries.length) throw bad('a name twice');
  return links;
}

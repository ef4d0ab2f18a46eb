// Test fixture: Git trees written byte by byte, with every kind of stored name a peer must not
// get into a mount (git mktree refuses some of them), for the merge, load and sync tests.
import { run } from '../util/exec.js';
import { encodeEntry, Entry } from './entry.js';

export interface Row { mode: string; name: Buffer; oid: string }

/** Writes a tree object byte by byte (git mktree would refuse some of the names a peer can send). */
export async function rawTree(gitDir: string, rows: Row[]): Promise<string> {
  const key = (r: { mode: string; name: Buffer }) => (r.mode === '40000' ? Buffer.concat([r.name, Buffer.from('/')]) : r.name);
  const data = Buffer.concat([...rows].sort((x, y) => Buffer.compare(key(x), key(y)))
    .flatMap((r) => [Buffer.from(`${r.mode} `), r.name, Buffer.from([0]), Buffer.from(r.oid, 'hex')]));
  return (await run('git', ['--git-dir', gitDir, 'hash-object', '-t', 'tree', '-w', '--literally', '--stdin'], { input: data })).stdout.toString().trim();
}

/** The rows of a tree object, names as bytes. */
export async function treeRows(gitDir: string, tree: string): Promise<Row[]> {
  const data = (await run('git', ['--git-dir', gitDir, 'cat-file', 'tree', tree])).stdout;
  const rows: Row[] = [];
  for (let pos = 0; pos < data.length;) {
    const sp = data.indexOf(0x20, pos), nul = data.indexOf(0, sp);
    rows.push({ mode: data.toString('latin1', pos, sp), name: Buffer.from(data.subarray(sp + 1, nul)), oid: data.subarray(nul + 1, nul + 21).toString('hex') });
    pos = nul + 21;
  }
  return rows;
}

/**
 * Every kind of stored name a peer must not get into a mount, as extra rows of a root tree.
 * (An empty name cannot travel: git itself dies on it, in pack-objects and ls-tree.)
 */
export async function badRows(gitDir: string, fileEntry: Entry, dirEntry: Entry): Promise<[string, Row[]][]> {
  const git = async (args: string[], input?: string) => (await run('git', ['--git-dir', gitDir, ...args], { input })).stdout.toString().trim();
  const entry = encodeEntry(fileEntry);
  const blob = (await run('git', ['--git-dir', gitDir, 'hash-object', '-w', '--stdin'], { input: entry })).stdout.toString().trim();
  const dirBlob = (await run('git', ['--git-dir', gitDir, 'hash-object', '-w', '--stdin'], { input: encodeEntry(dirEntry) })).stdout.toString().trim();
  const sub = await rawTree(gitDir, [{ mode: '100644', name: Buffer.from('%dir'), oid: dirBlob }]);
  const empty = await rawTree(gitDir, []);
  const f = (name: string | Buffer): Row => ({ mode: '100644', name: Buffer.from(name), oid: blob });
  return [
    ['slash', [f('a%2Fb')]], ['nul', [f('x%00y')]], ['dot', [f('%2E')]], ['dotdot', [f('%2E.')]],
    ['too long', [f('n'.repeat(256))]], ['too long once decoded', [f('%7E'.repeat(256))]],
    ['non-canonical', [f('%61')]], ['two names for one', [f('same'), f('%73ame')]],
    ['not UTF-8', [f(Buffer.from([0x66, 0xff]))]], ['not UTF-8, twice', [f(Buffer.from([0x66, 0xfe])), f(Buffer.from([0x66, 0xff]))]],
    ['a directory named a%2Fb', [{ mode: '40000', name: Buffer.from('d%2Fe'), oid: sub }]],
    ['an empty directory named %2F', [{ mode: '40000', name: Buffer.from('%2F'), oid: empty }]],
    ['a file and a directory of one name', [f('fd'), { mode: '40000', name: Buffer.from('fd'), oid: sub }]],
    ['malformed entry', [{ mode: '100644', name: Buffer.from('garbage'), oid: await git(['hash-object', '-w', '--stdin'], 'not bencode') }]],
  ];
}

/** A commit on top of `parent` whose root tree is the parent's plus `rows`. */
export async function commitWith(gitDir: string, parent: string, rows: Row[], message = 'evil'): Promise<string> {
  const git = async (args: string[]) => (await run('git', ['--git-dir', gitDir, ...args])).stdout.toString().trim();
  const tree = await rawTree(gitDir, [...(await treeRows(gitDir, `${parent}^{tree}`)), ...rows]);
  return git(['commit-tree', tree, '-p', parent, '-m', message]);
}

// The on-disk layout of a node root (one disk), and the checks made before anything in it is
// touched. Everything a node needs to restart lives under its root.
import { chmod, mkdir, readdir, readFile, writeFile, rename, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { Identity } from '../cluster/identity.js';
import { PRIVATE_DIR, PRIVATE_FILE } from './private-root.js';

export const FORMAT = 1;

export interface RootPaths {
  root: string;
  config: string; // config/node.json
  lock: string; // config/lock
  identity: string; // identity/
  meta: string; // meta/ (repo.git, journal/)
  content: string; // content/
  tmp: string; // tmp/
}

export function paths(root: string): RootPaths {
  return {
    root,
    config: join(root, 'config', 'node.json'),
    lock: join(root, 'config', 'lock'),
    identity: join(root, 'identity'),
    meta: join(root, 'meta'),
    content: join(root, 'content'),
    tmp: join(root, 'tmp'),
  };
}

export interface NodeConfig { format: number; cluster: string; nodeId: string; created: string }

export type RootState =
  | { kind: 'missing' }
  | { kind: 'empty' }
  | { kind: 'node'; config: NodeConfig }
  | { kind: 'foreign'; what: string };

/** Says what a root holds without changing it. */
export async function inspectRoot(root: string): Promise<RootState> {
  let st;
  try {
    st = await stat(root);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return { kind: 'missing' };
    throw e;
  }
  if (!st.isDirectory()) return { kind: 'foreign', what: 'it is not a directory' };
  try {
    const config = JSON.parse(await readFile(paths(root).config, 'utf8')) as NodeConfig;
    if (typeof config.cluster !== 'string' || typeof config.nodeId !== 'string') throw new Error('bad config');
    return { kind: 'node', config };
  } catch {
    const names = await readdir(root);
    // lost+found is what a freshly made filesystem holds; it is fine to use such a disk whole.
    // identity/ alone is what `delugefs key` leaves on a root that is about to join.
    const others = names.filter((n) => n !== 'lost+found' && n !== 'identity');
    if (!others.length) return { kind: 'empty' };
    return { kind: 'foreign', what: `it holds other files (${others.slice(0, 3).join(', ')}${others.length > 3 ? ', ...' : ''})` };
  }
}

export async function createLayout(p: RootPaths, cluster: string): Promise<NodeConfig> {
  // Private whatever the umask: the store holds every file's bytes, readable by this user only.
  await mkdir(p.root, { recursive: true });
  await chmod(p.root, PRIVATE_DIR);
  for (const d of [join(p.root, 'config'), p.meta, p.content, p.tmp]) await mkdir(d, { recursive: true, mode: PRIVATE_DIR });
  // The node id is derived from the node's key, so a record naming the id names the key too.
  const identity = await Identity.loadOrCreate(p.root);
  const config: NodeConfig = { format: FORMAT, cluster, nodeId: identity.nodeId, created: new Date().toISOString() };
  const tmp = p.config + '.tmp';
  await writeFile(tmp, JSON.stringify(config, null, 2) + '\n', { mode: PRIVATE_FILE });
  await rename(tmp, p.config);
  return config;
}

// The root's lock (one process per root) lives in root-lock.ts; re-exported for callers of this module.
export { acquireLock } from './root-lock.js';

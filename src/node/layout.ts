// The on-disk layout of a node root (one disk), and the checks made before anything in it is
// touched. Everything a node needs to restart lives under its root.
import { mkdir, readdir, readFile, writeFile, rename, stat, open, unlink } from 'node:fs/promises';
import { join } from 'node:path';
import { Identity } from '../cluster/identity.js';

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
  for (const d of [p.root, join(p.root, 'config'), p.meta, p.content, p.tmp]) await mkdir(d, { recursive: true });
  // The node id is derived from the node's key, so a record naming the id names the key too.
  const identity = await Identity.loadOrCreate(p.root);
  const config: NodeConfig = { format: FORMAT, cluster, nodeId: identity.nodeId, created: new Date().toISOString() };
  const tmp = p.config + '.tmp';
  await writeFile(tmp, JSON.stringify(config, null, 2) + '\n');
  await rename(tmp, p.config);
  return config;
}

/**
 * One process per root: an exclusive lock file holding the owner's pid. A lock whose process is
 * gone (crash, kill -9) is taken over.
 */
export async function acquireLock(p: RootPaths): Promise<() => Promise<void>> {
  for (let attempt = 0; attempt < 2; attempt++) {
    try {
      const fh = await open(p.lock, 'wx');
      await fh.writeFile(`${process.pid}\n`);
      await fh.close();
      return async () => { await unlink(p.lock).catch(() => {}); };
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e;
      const pid = Number((await readFile(p.lock, 'utf8').catch(() => '')).trim());
      if (pid && pid !== process.pid && alive(pid)) {
        throw new Error(`root ${p.root} is in use by another delugefs process (pid ${pid})`);
      }
      await unlink(p.lock).catch(() => {});
    }
  }
  throw new Error(`cannot lock ${p.root}`);
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
}

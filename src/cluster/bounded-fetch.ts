// A `git fetch` from a peer that cannot fill our disk or hang forever. receive.maxInputSize
// bounds what members push to us, but nothing bounds what a fetch downloads: a rogue member's
// server could send a pack of any size, and git leaves the partial pack (tmp_pack_*) behind
// when it is stopped. So each fetch runs in its own quarantine, a throw-away bare repository in
// <repo>/objects/incoming-fetch-XXXXXX whose alternates are the repository's objects (the peer
// is told what we have, and sends only what is new). git runs under a file-size limit
// (RLIMIT_FSIZE: index-pack dies of SIGXFSZ at the cap) and a deadline (its process group is
// killed). On success the pack moves into <repo>/objects/pack (same filesystem: a rename) and
// only then is the ref updated; on any failure the quarantine is removed, leaving nothing.
import { spawn } from 'node:child_process';
import { mkdir, mkdtemp, readdir, rename, rm, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { run } from '../util/exec.js';
import { MAX_ENTRY_BLOB, PRIVATE_GIT_MODE } from '../meta/repo.js';
import { MAX_PACK } from './repo-guard.js';

export const QUARANTINE_PREFIX = 'incoming-fetch-';
/** A whole fetch, trickle or not: 256 MiB at under 1 MiB/s is no peer we sync with. */
export const FETCH_TIMEOUT_MS = 10 * 60_000;

export class FetchError extends Error {
  constructor(message: string, readonly reason: 'failed' | 'too_large' | 'timeout') {
    super(message);
  }
}

export interface BoundedFetchOptions {
  /** The (bare) repository fetched into. */
  repo: string;
  /** ssh:// URL or an absolute path; always passed after `--`. */
  url: string;
  /** The remote ref fetched, e.g. refs/heads/main. */
  src: string;
  /** Our ref set to what was fetched (forced), once its objects are in the repository. */
  dst: string;
  env: NodeJS.ProcessEnv;
  /** Largest file the fetch may write (the pack); default MAX_PACK. */
  maxBytes?: number;
  timeoutMs?: number;
}

/** Quarantines of fetches running in this process: never taken for a crash's leftovers. */
const live = new Set<string>();

/** Removes quarantines left by a crash (or a kill) of an earlier run. Call at start. */
export async function removeStaleQuarantines(repo: string): Promise<number> {
  const dir = join(repo, 'objects');
  const names = await readdir(dir).catch(() => [] as string[]);
  let n = 0;
  for (const name of names) {
    const p = join(dir, name);
    if (!name.startsWith(QUARANTINE_PREFIX) || live.has(p)) continue;
    await rm(p, { recursive: true, force: true });
    n++;
  }
  return n;
}

/** Fetches `src` from `url` into `dst` of `repo`; returns the fetched commit. Throws FetchError and leaves the repository as it was. */
export async function boundedFetch(o: BoundedFetchOptions): Promise<string> {
  const oid = (await boundedFetchRefs({ ...o, refs: [o.src] })).get(o.src)!;
  // Only now that its objects are ours may a ref point at them.
  const r = await run('git', [`--git-dir=${o.repo}`, 'update-ref', o.dst, oid], { env: o.env, allowFail: true });
  if (r.code !== 0) throw new FetchError(`could not update ${o.dst}: ${r.stderr.trim()}`, 'failed');
  return oid;
}

/**
 * Fetches the objects of several remote refs into `repo` (no ref of ours moves: the caller
 * decides what to point at them); returns each ref's commit. Throws FetchError, keeping nothing,
 * when any is missing or not a commit.
 */
export async function boundedFetchRefs(o: Omit<BoundedFetchOptions, 'src' | 'dst'> & { refs: string[] }): Promise<Map<string, string>> {
  const maxBytes = o.maxBytes ?? MAX_PACK;
  const objects = join(o.repo, 'objects');
  // mkdtemp makes it 0700; inside the repository's objects: the same filesystem, so packs rename in.
  const q = await mkdtemp(join(objects, QUARANTINE_PREFIX));
  live.add(q);
  try {
    const qgit = (args: string[]) => run('git', [`--git-dir=${q}`, ...args], { env: o.env, allowFail: true });
    const r = await run('git', ['init', '--bare', '--quiet', '--template=', `--shared=${PRIVATE_GIT_MODE}`, '--', q], { env: o.env, allowFail: true });
    if (r.code !== 0) throw new FetchError(`could not make a fetch quarantine in ${objects}: ${r.stderr.trim()}`, 'failed');
    // Absolute: git reads the alternates of a repository relative to its own objects directory.
    await writeFile(join(q, 'objects', 'info', 'alternates'), `${objects}\n`, { mode: 0o600 });
    const res = await limitedGit(q, [
      // The repository's own fetch settings do not reach the quarantine: repeat those that matter.
      '-c', 'fetch.unpackLimit=1', // always one pack (bounded by the file-size limit), never loose objects
      '-c', 'fetch.fsckObjects=true', '-c', `core.bigFileThreshold=${MAX_ENTRY_BLOB}`,
      '-c', 'gc.auto=0', '-c', 'maintenance.auto=false', '-c', 'fetch.writeCommitGraph=false',
      'fetch', '--quiet', '--no-tags', '--no-write-fetch-head', '--', o.url, ...o.refs.map((ref, i) => `+${ref}:refs/heads/fetched-${i}`),
    ], o.env, maxBytes, o.timeoutMs ?? FETCH_TIMEOUT_MS);
    if (res.timedOut) throw new FetchError(`the fetch took longer than ${Math.round((o.timeoutMs ?? FETCH_TIMEOUT_MS) / 1000)} s and was stopped`, 'timeout');
    if (res.code !== 0 && (await reachedLimit(join(q, 'objects', 'pack'), maxBytes))) throw new FetchError(`the peer sent more than ${maxBytes} bytes (the largest pack we accept); fetch stopped, nothing kept`, 'too_large');
    if (res.code !== 0) throw new FetchError(res.stderr.trim().slice(0, 500) || `git fetch failed (${res.code})`, 'failed');
    // Every fetched ref in one process (it was one each).
    const listed = await qgit(['for-each-ref', '--format=%(objectname) %(objecttype) %(refname)', '--', 'refs/heads/']);
    const fetched = new Map<string, { oid: string; type: string }>();
    for (const line of listed.stdout.toString().split('\n')) {
      const [oid = '', type = '', name = ''] = line.split(' ');
      if (name) fetched.set(name, { oid, type });
    }
    const out = new Map<string, string>();
    for (const [i, ref] of o.refs.entries()) {
      const f = fetched.get(`refs/heads/fetched-${i}`);
      if (listed.code !== 0 || !f || f.type !== 'commit' || !/^[0-9a-f]{40}$/.test(f.oid)) throw new FetchError(`the peer's ${ref} is not a commit`, 'failed');
      out.set(ref, f.oid);
    }
    // A fetch of what we already have brings no pack.
    if (await readdir(join(q, 'objects', 'pack')).then((n) => n.length > 0, () => false)) await adopt(join(q, 'objects'), objects);
    return out;
  } finally {
    await rm(q, { recursive: true, force: true });
    live.delete(q);
  }
}

/** Moves the quarantine's objects into the repository: each pack before its idx (readers find packs by their idx). */
async function adopt(from: string, to: string): Promise<void> {
  const packs = await readdir(join(from, 'pack'));
  const rank = (n: string) => (n.endsWith('.pack') ? 0 : n.endsWith('.idx') ? 2 : 1);
  for (const name of packs.filter((n) => /^pack-[0-9a-f]+\.(pack|rev|idx)$/.test(n)).sort((a, b) => rank(a) - rank(b))) {
    const dst = join(to, 'pack', name);
    // Same name, same content (a pack is named by its hash): keep the one readers may have open.
    if (await stat(dst).then(() => true, () => false)) continue;
    await rename(join(from, 'pack', name), dst);
  }
  // fetch.unpackLimit=1 makes loose objects unlikely; any there are are moved too.
  for (const d of (await readdir(from)).filter((n) => /^[0-9a-f]{2}$/.test(n))) {
    for (const f of await readdir(join(from, d))) {
      await mkdir(join(to, d), { recursive: true, mode: 0o700 });
      await rename(join(from, d, f), join(to, d, f));
    }
  }
}

interface Limited { code: number; stderr: string; timedOut: boolean }

/** Whether a file in dir reached the size limit (index-pack's tmp_pack_* when SIGXFSZ stopped it). */
async function reachedLimit(dir: string, maxBytes: number): Promise<boolean> {
  const limit = Math.max(1, Math.ceil(maxBytes / 512)) * 512;
  for (const n of await readdir(dir).catch(() => [] as string[])) {
    if (((await stat(join(dir, n)).catch(() => null))?.size ?? 0) >= limit) return true;
  }
  return false;
}

/**
 * git under RLIMIT_FSIZE (`ulimit -f`: 512-byte blocks in every POSIX sh) and no core dumps, in
 * its own process group so a deadline ends git, ssh and index-pack together.
 */
function limitedGit(gitDir: string, args: string[], env: NodeJS.ProcessEnv, maxBytes: number, timeoutMs: number): Promise<Limited> {
  const blocks = Math.max(1, Math.ceil(maxBytes / 512));
  return new Promise((resolve, reject) => {
    const p = spawn('sh', ['-c', `ulimit -c 0; ulimit -f ${blocks}; exec git "$@"`, 'sh', `--git-dir=${gitDir}`, ...args], {
      env, stdio: ['ignore', 'ignore', 'pipe'], detached: true,
    });
    const err: Buffer[] = [];
    let size = 0;
    p.stderr.on('data', (b: Buffer) => {
      if (size < 64 * 1024) err.push(b);
      size += b.length;
    });
    let timedOut = false;
    const kill = () => {
      try {
        process.kill(-p.pid!, 'SIGKILL');
      } catch { /* already gone */ }
    };
    // The whole group: git, its ssh and index-pack (a persistent ssh master has its own session).
    const timer = setTimeout(() => {
      timedOut = true;
      kill();
    }, timeoutMs);
    p.on('error', (e) => {
      clearTimeout(timer);
      reject(e);
    });
    p.on('close', (code, signal) => {
      clearTimeout(timer);
      resolve({ code: code ?? (signal ? 128 : -1), stderr: Buffer.concat(err).toString(), timedOut });
    });
  });
}

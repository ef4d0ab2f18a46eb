// Test harness: a cluster of N real `delugefs` processes, one per network namespace on one bridge
// (netns.ts), mounted or storage-only. The first node creates the cluster, the others join with
// invite tokens and --peer (no mDNS unless asked: static peers are quicker to settle and keep
// multicast out of the byte counts). Helpers write and list on node i, read heads, commit and
// merge counts, log events, eth0 bytes and RSS, partition and heal hosts. teardown() always
// cleans up: node processes by PID, then mounts, then namespaces, then the temp directory.
import { createWriteStream, WriteStream } from 'node:fs';
import { cp, mkdir, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { ChildProcess } from 'node:child_process';
import { createLan, NetnsHost, NetnsLan } from './netns.js';
import { CLI, NodeProc, waitReady } from './node-proc.js';
import { eventually } from './eventually.js';
import { git, runProc } from './proc.js';
import { forceUnmount } from '../fuse/mount.js';
import { NODE_FLAGS } from '../cli/node-flags.js';
import { controlCall } from '../cluster/control-socket.js';
import { decodeName, encodeName, isMarker, splitPath } from '../meta/names.js';

/** The node's working head (meta/repo.ts BRANCH). */
export const HEAD_REF = 'refs/heads/main';

export interface ClusterOptions {
  nodes: number;
  /** Mount every node (FUSE) instead of storage-only. */
  mount?: boolean;
  /** mDNS inside the namespaces instead of --no-mdns and --peer. */
  mdns?: boolean;
  /** First three octets of the LAN; one per concurrently running cluster. */
  subnet?: string;
  cluster?: string;
  logLevel?: 'debug' | 'info';
  /** More arguments for every node. */
  extra?: string[];
  /** Joiners started at once (the machine has 2 cores). */
  joinConcurrency?: number;
  /**
   * What start waits for: every node lists every member with addresses ('members'), and then
   * one head everywhere ('heads', the default); 'none': only the ready lines.
   */
  settle?: 'heads' | 'members' | 'none';
  settleMs?: number;
  /** Keep the logs and roots here after teardown (default: $DFS_CLUSTER_LOGS, else removed). */
  keep?: string;
  /**
   * The machine (host name, the failure domain) of each node, by index: nodes run in their own
   * UTS namespace with that name. Default: every node is on the test machine's host name.
   */
  machines?: string[];
  /** A tmpfs of this size (e.g. '12m') as node i's root: a small disk that fills up. */
  rootSizes?: (string | undefined)[];
}

export interface ClusterNode {
  index: number;
  name: string;
  host: NetnsHost;
  root: string;
  mnt?: string;
  id: string;
  sshPort: number;
  pid: number;
  logPath: string;
  proc: NodeProc;
}

export interface Commits { commits: number; merges: number }

export interface TestCluster {
  readonly dir: string;
  readonly lan: NetnsLan;
  readonly nodes: ClusterNode[];
  /** ms from the first node's start until the cluster settled as asked (until ready with 'none'). */
  readonly setupMs: number;
  /** Creates or overwrites a file (through the mount, or the `put` control RPC when storage-only). */
  write(i: number, path: string, data: string | Buffer): Promise<void>;
  /** Names in a directory: the mount's listing, or the committed tree when storage-only. */
  list(i: number, dir?: string): Promise<string[]>;
  head(i: number): Promise<string | null>;
  heads(): Promise<(string | null)[]>;
  /** Commits and merge commits reachable from node i's head. */
  commits(i: number): Promise<Commits>;
  /** How many log lines of node i have "event": name. */
  events(i: number, name: string): Promise<number>;
  pushes(i: number): Promise<number>;
  txBytes(i: number): Promise<number>;
  /** Resident memory of node i's process, bytes. */
  rss(i: number): Promise<number>;
  /** Splits the LAN: these hosts on one side (they still reach each other), the rest on the other. */
  partition(idx: number[]): Promise<void>;
  heal(idx: number[]): Promise<void>;
  /** Calls node i's control socket. */
  rpc<T = unknown>(i: number, method: string, params?: unknown): Promise<T>;
  /** kill -9 of node i (a disk or machine dying); its root stays. */
  kill9(i: number): Promise<void>;
  /** Starts node i again on its root (after kill9 or a stop). */
  restart(i: number): Promise<ClusterNode>;
  /** Waits until every node (or those in idx) has one head; gives it and the time waited. */
  converged(ms?: number, idx?: number[]): Promise<{ head: string; ms: number }>;
  teardown(): Promise<void>;
}

const PORTS = ['--port', '17100', '--ssh-port', '17422'];

export async function startCluster(o: ClusterOptions): Promise<TestCluster> {
  if (o.nodes < 1 || o.nodes > 64) throw new Error(`nodes must be 1-64, not ${o.nodes}`);
  const name = o.cluster ?? 'scalec';
  const dir = await mkdtemp(join(tmpdir(), 'dfs-cluster-'));
  const lan = await createLan({ subnet: o.subnet ?? '10.80.0' });
  const nodes: ClusterNode[] = [];
  const procs = new Set<ChildProcess>();
  const logs: WriteStream[] = [];
  const mounts: string[] = [];
  /** tmpfs roots (rootSizes), unmounted after the nodes stop. */
  const roots: string[] = [];
  const keep = o.keep ?? process.env.DFS_CLUSTER_LOGS;
  let torn = false;

  async function startNode(i: number, host: NetnsHost, extra: string[]): Promise<ClusterNode> {
    const root = join(dir, host.name);
    const mnt = o.mount ? join(dir, `mnt-${host.name}`) : undefined;
    const size = o.rootSizes?.[i];
    if (size && !roots.includes(root)) {
      await mkdir(root, { recursive: true });
      const r = await runProc('mount', ['-t', 'tmpfs', '-o', `size=${size},mode=0700`, 'tmpfs', root]);
      if (r.code !== 0) throw new Error(`tmpfs for ${root}: ${r.stderr}`);
      roots.push(root);
    }
    if (mnt) {
      await mkdir(mnt, { recursive: true });
      mounts.push(mnt);
    }
    const args = [CLI, name, root, ...(mnt ? [mnt] : []), '--json', '--interface', 'eth0', ...PORTS, '--log-level', o.logLevel ?? 'info',
      ...(o.mdns ? [] : ['--no-mdns']), ...(o.extra ?? []), ...extra];
    const env = { ...process.env, DELUGEFS_RUN_DIR: join(dir, `run-${host.name}`) };
    // DFS_CLUSTER_NODE_FLAGS: flags for each node's node (e.g. "--cpu-prof --cpu-prof-dir=/tmp/p").
    const flags = [...NODE_FLAGS, ...(process.env.DFS_CLUSTER_NODE_FLAGS ?? '').split(' ').filter(Boolean)];
    const machine = o.machines?.[i];
    // unshare and sh exec: the node keeps the PID that is spawned.
    const p = machine
      ? host.spawnNet('unshare', ['-u', 'sh', '-c', 'hostname "$0" && exec "$@"', machine, process.execPath, ...flags, ...args], { stdio: ['ignore', 'pipe', 'pipe'], env })
      : host.spawnNet(process.execPath, [...flags, ...args], { stdio: ['ignore', 'pipe', 'pipe'], env });
    procs.add(p);
    p.on('exit', () => procs.delete(p));
    const logPath = join(dir, `${host.name}.log`);
    const log = createWriteStream(logPath, { flags: 'a' });
    logs.push(log);
    p.stderr!.pipe(log);
    const proc = await waitReady(p, 60_000);
    const n: ClusterNode = { index: i, name: host.name, host, root, mnt, id: String(proc.ready.node), sshPort: Number(proc.ready.sshPort), pid: p.pid!, logPath, proc };
    nodes[i] = n;
    return n;
  }

  const sock = (n: ClusterNode) => join(n.root, 'control.sock');
  const repo = (n: ClusterNode) => join(n.root, 'meta', 'repo.git');
  const at = (i: number): ClusterNode => {
    const n = nodes[i];
    if (!n) throw new Error(`no node ${i}`);
    return n;
  };

  async function head(i: number): Promise<string | null> {
    const r = await runProc('git', [`--git-dir=${repo(at(i))}`, 'rev-parse', '--verify', '-q', HEAD_REF]);
    return r.code === 0 ? r.stdout.trim() : null;
  }

  async function events(i: number, ev: string): Promise<number> {
    const text = await readFile(at(i).logPath, 'utf8');
    const needle = `"event":"${ev}"`;
    let count = 0;
    for (let k = text.indexOf(needle); k >= 0; k = text.indexOf(needle, k + needle.length)) count++;
    return count;
  }

  async function converged(ms = 60_000, idx = nodes.map((n) => n.index)): Promise<{ head: string; ms: number }> {
    const t0 = Date.now();
    const h = await eventually(`one head on ${idx.map((i) => at(i).name).join(',')}`, async () => {
      const hs = await Promise.all(idx.map(head));
      return hs.every((x) => x && x === hs[0]) && hs[0];
    }, ms);
    return { head: h as string, ms: Date.now() - t0 };
  }

  async function teardown(): Promise<void> {
    if (torn) return;
    torn = true;
    await Promise.all([...procs].map((p) => stopProc(p)));
    for (const m of mounts) await forceUnmount(m).catch(() => {});
    for (const r of roots) await runProc('umount', ['-l', r]).catch(() => {});
    await lan.teardown();
    await Promise.all(logs.map((l) => new Promise<void>((r) => l.end(() => r()))));
    if (keep) {
      await mkdir(keep, { recursive: true });
      for (const n of nodes) if (n) await cp(n.logPath, join(keep, `${n.name}.log`)).catch(() => {});
      await writeFile(join(keep, 'roots'), dir + '\n');
    } else {
      await rm(dir, { recursive: true, force: true });
    }
  }

  const t0 = Date.now();
  let setupMs = 0;
  try {
    const hosts: NetnsHost[] = [];
    for (let i = 0; i < o.nodes; i++) hosts.push(await lan.addHost(`n${i}`));
    const first = await startNode(0, hosts[0]!, ['--create']);
    const peer = `${first.host.ip}:${first.sshPort}`;
    // The tokens `delugefs invite` prints, from the same control RPC.
    const tokens = await Promise.all(hosts.slice(1).map(() => controlCall<{ token: string }>(sock(first), 'invite', { ttlMs: 3600_000 }, 30_000)));
    const width = Math.max(1, o.joinConcurrency ?? 3);
    let next = 1;
    await Promise.all(Array.from({ length: Math.min(width, o.nodes - 1) }, async () => {
      while (next < o.nodes) {
        const i = next++;
        await startNode(i, hosts[i]!, ['--join', tokens[i - 1]!.token, ...(o.mdns ? [] : ['--peer', peer])]);
      }
    }));
    const settle = o.settle ?? 'heads';
    const ms = o.settleMs ?? 60_000;
    if (settle !== 'none') {
      await eventually(`${o.nodes} members with addresses on every node`, async () => {
        for (const n of nodes) {
          const m = await controlCall<{ addresses: string[] }[]>(sock(n), 'members', null, 5000);
          if (m.length !== o.nodes || !m.every((r) => r.addresses.length)) return false;
        }
        return true;
      }, ms);
    }
    if (settle === 'heads') await converged(ms);
    setupMs = Date.now() - t0;
  } catch (e) {
    await teardown();
    throw e;
  }

  return {
    dir, lan, nodes, setupMs,
    async write(i, path, data) {
      const n = at(i);
      const buf = typeof data === 'string' ? Buffer.from(data) : data;
      if (n.mnt) {
        const p = join(n.mnt, path);
        await mkdir(dirname(p), { recursive: true });
        await writeFile(p, buf);
      } else {
        await controlCall(sock(n), 'put', { path, data: buf.toString('base64'), parents: true }, 30_000);
      }
    },
    async list(i, d = '/') {
      const n = at(i);
      if (n.mnt) return readdir(join(n.mnt, d));
      const spec = `${HEAD_REF}:${splitPath(d).map(encodeName).join('/')}`;
      const out = await git([`--git-dir=${repo(n)}`, 'ls-tree', '--name-only', '-z', spec]);
      return out.split('\0').filter((x) => x && !isMarker(x)).map(decodeName);
    },
    head,
    heads: () => Promise.all(nodes.map((n) => head(n.index))),
    async commits(i) {
      const g = (...a: string[]) => git([`--git-dir=${repo(at(i))}`, 'rev-list', '--count', ...a, HEAD_REF]).then(Number);
      const [commits, merges] = await Promise.all([g(), g('--merges')]);
      return { commits, merges };
    },
    events,
    pushes: (i) => events(i, 'sync_pushed'),
    async txBytes(i) {
      return (await at(i).host.linkStats()).txBytes;
    },
    async rss(i) {
      const status = await readFile(`/proc/${at(i).pid}/status`, 'utf8');
      const m = /^VmRSS:\s+(\d+) kB/m.exec(status);
      if (!m) throw new Error(`no VmRSS for node ${i} (pid ${at(i).pid})`);
      return Number(m[1]) * 1024;
    },
    async partition(idx) {
      await Promise.all(idx.map((i) => at(i).host.side(1)));
    },
    async heal(idx) {
      await Promise.all(idx.map((i) => at(i).host.side(0)));
    },
    converged,
    rpc: (i, method, params = null) => controlCall(sock(at(i)), method, params, 30_000),
    async kill9(i) {
      const p = at(i).proc.proc;
      if (p.exitCode !== null || p.signalCode !== null) return;
      const gone = new Promise((r) => p.once('exit', r));
      p.kill('SIGKILL');
      await gone;
      if (at(i).mnt) await forceUnmount(at(i).mnt!).catch(() => {});
    },
    async restart(i) {
      const n = at(i);
      return startNode(i, n.host, []);
    },
    teardown,
  };
}

/** SIGTERM, up to 10 s to exit (a node unmounts and commits), then SIGKILL by PID; never hangs. */
function stopProc(p: ChildProcess): Promise<void> {
  if (p.exitCode !== null || p.signalCode !== null) return Promise.resolve();
  return new Promise((resolve) => {
    // A process stuck on its own mount may not die before the forced unmount that follows.
    const give = setTimeout(resolve, 15_000);
    const kill = setTimeout(() => p.kill('SIGKILL'), 10_000);
    p.once('exit', () => {
      clearTimeout(kill);
      clearTimeout(give);
      resolve();
    });
    p.kill('SIGTERM');
  });
}

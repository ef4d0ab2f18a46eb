// Several "machines" on one: network namespaces, each with a veth `eth0` on a bridge that lives in
// a namespace of its own (see DESIGN.md "Several machines on one"). Nothing is added to the root
// namespace, so tests and `delugefs demo` never touch the real network. Needs root and iproute2 (`ip`).
import { execFile, execFileSync, spawn, ChildProcess, SpawnOptions } from 'node:child_process';
import { promisify } from 'node:util';
import { randomBytes } from 'node:crypto';
import { runProc, ProcResult } from './exec.js';

const exec = promisify(execFile);
// Only names with this prefix are ever swept: nobody else's namespaces look like ours.
const PREFIX = 'dfsnet-';

async function ip(...args: string[]): Promise<string> {
  try {
    return (await exec('ip', args)).stdout;
  } catch (err) {
    const e = err as { stderr?: string; message: string };
    throw new Error(`ip ${args.join(' ')}: ${(e.stderr ?? e.message).trim()}`);
  }
}

/** True when namespaces can be made here (root, iproute2); tests skip otherwise. */
export async function netnsAvailable(): Promise<boolean> {
  if (process.getuid?.() !== 0) return false;
  try {
    await exec('ip', ['netns', 'list']);
    return true;
  } catch {
    return false;
  }
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/**
 * Deletes namespaces left by test runs whose process died (names carry the creator's pid), so a
 * SIGKILLed run does not leak. Only names with our prefix and a dead pid are touched.
 */
export async function sweepStaleNamespaces(): Promise<string[]> {
  const removed: string[] = [];
  const list = await ip('netns', 'list');
  for (const line of list.split('\n')) {
    const name = line.split(' ')[0];
    const m = /^dfsnet-(\d+)-[0-9a-f]{6}-/.exec(name);
    if (!m || alive(Number(m[1]))) continue;
    await killNamespacePids(name);
    await ip('netns', 'del', name).catch(() => {});
    removed.push(name);
  }
  return removed;
}

async function killNamespacePids(ns: string): Promise<void> {
  let pids: number[] = [];
  try {
    pids = (await ip('netns', 'pids', ns)).split('\n').filter(Boolean).map(Number);
  } catch {
    return;
  }
  for (const pid of pids) {
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      /* already gone */
    }
  }
}

export interface NetnsHost {
  /** The short name given to addHost(). */
  readonly name: string;
  /** The namespace name (for `ip netns exec`). */
  readonly ns: string;
  readonly ip: string;
  readonly iface: 'eth0';
  /** Starts a long-running process inside the namespace; it is killed by teardown. */
  spawn(cmd: string, args: string[], opts?: SpawnOptions): ChildProcess;
  /**
   * Like spawn, but enters only the network namespace (`nsenter --net`): FUSE mounts the process
   * makes stay visible to the rest of the machine (`ip netns exec` gives it a mount namespace of
   * its own). nsenter execs without forking, so the child's pid is the command's.
   */
  spawnNet(cmd: string, args: string[], opts?: SpawnOptions): ChildProcess;
  /** Runs a process inside the namespace to completion. */
  run(cmd: string, args: string[], opts?: { input?: string; env?: NodeJS.ProcessEnv; timeoutMs?: number }): Promise<ProcResult>;
  /** eth0's counters since the namespace was made (`ip -s -j link`). */
  linkStats(): Promise<LinkStats>;
  /** Partition: takes eth0 down. */
  down(): Promise<void>;
  /**
   * Moves the host to the LAN's second bridge (`side` 1) or back (0): hosts on one side reach
   * each other and none of the other side (a split of the LAN, where down() cuts one host off).
   */
  side(side: 0 | 1): Promise<void>;
  /** Heal: eth0 up again, with its multicast route. */
  up(): Promise<void>;
}

export interface LinkStats { txBytes: number; rxBytes: number; txPackets: number; rxPackets: number }

export interface NetnsLan {
  readonly id: string;
  readonly hosts: NetnsHost[];
  addHost(name: string): Promise<NetnsHost>;
  /** Kills every process started in the LAN's namespaces and deletes them. Idempotent. */
  teardown(): Promise<void>;
}

/** Creates a LAN: a bridge namespace; add machines with addHost(). Always call teardown(). */
export async function createLan(opts: { subnet?: string } = {}): Promise<NetnsLan> {
  const subnet = opts.subnet ?? '10.77.0';
  const id = `${PREFIX}${process.pid}-${randomBytes(3).toString('hex')}`;
  const lanNs = `${id}-lan`;
  const namespaces: string[] = [];
  const children = new Set<ChildProcess>();
  const hosts: NetnsHost[] = [];
  let torn = false;
  const track = (start: () => ChildProcess): ChildProcess => {
    if (torn) throw new Error('lan torn down');
    const child = start();
    children.add(child);
    child.on('exit', () => children.delete(child));
    return child;
  };

  // Last resort if the test process exits without teardown (uncaught error, process.exit).
  const onExit = () => {
    for (const c of children) if (c.exitCode === null && c.pid) try { process.kill(c.pid, 'SIGKILL'); } catch { /* gone */ }
    for (const ns of namespaces) try { execFileSync('ip', ['netns', 'del', ns], { stdio: 'ignore' }); } catch { /* gone */ }
  };
  process.once('exit', onExit);

  const lan: NetnsLan = {
    id,
    hosts,
    async addHost(name: string): Promise<NetnsHost> {
      if (!/^[a-z0-9]{1,8}$/.test(name)) throw new Error(`host name must be 1-8 [a-z0-9]: ${name}`);
      if (hosts.some((h) => h.name === name)) throw new Error(`host ${name} exists`);
      if (hosts.length >= 250) throw new Error('too many hosts');
      const ns = `${id}-${name}`;
      const addr = `${subnet}.${hosts.length + 1}`;
      await ip('netns', 'add', ns);
      namespaces.push(ns);
      const port = `v-${name}`;
      // Both ends are created directly inside their namespaces: nothing appears in the root one.
      await ip('link', 'add', port, 'netns', lanNs, 'type', 'veth', 'peer', 'name', 'eth0', 'netns', ns);
      await ip('-n', lanNs, 'link', 'set', port, 'master', 'br0');
      await ip('-n', lanNs, 'link', 'set', port, 'up');
      await ip('-n', ns, 'addr', 'add', `${addr}/24`, 'dev', 'eth0');
      await ip('-n', ns, 'link', 'set', 'lo', 'up');
      const up = async () => {
        await ip('-n', ns, 'link', 'set', 'eth0', 'up');
        // mDNS needs a multicast route; a link going down drops it, so it is (re)added on every up.
        await ip('-n', ns, 'route', 'replace', '224.0.0.0/4', 'dev', 'eth0');
      };
      await up();
      const host: NetnsHost = {
        name,
        ns,
        ip: addr,
        iface: 'eth0',
        spawn: (cmd, args, o = {}) => track(() => spawn('ip', ['netns', 'exec', ns, cmd, ...args], o)),
        spawnNet: (cmd, args, o = {}) => track(() => spawn('nsenter', [`--net=/run/netns/${ns}`, cmd, ...args], o)),
        run(cmd, args, o = {}) {
          return runProc('ip', ['netns', 'exec', ns, cmd, ...args], o);
        },
        async linkStats() {
          const [l] = JSON.parse(await ip('-n', ns, '-s', '-j', 'link', 'show', 'dev', 'eth0')) as { stats64: { tx: { bytes: number; packets: number }; rx: { bytes: number; packets: number } } }[];
          const { tx, rx } = l!.stats64;
          return { txBytes: tx.bytes, rxBytes: rx.bytes, txPackets: tx.packets, rxPackets: rx.packets };
        },
        down: () => ip('-n', ns, 'link', 'set', 'eth0', 'down').then(() => {}),
        side: (n) => ip('-n', lanNs, 'link', 'set', port, 'master', n ? 'br1' : 'br0').then(() => {}),
        up,
      };
      hosts.push(host);
      return host;
    },
    async teardown(): Promise<void> {
      if (torn) return;
      torn = true;
      process.off('exit', onExit);
      await Promise.all([...children].map((c) => killAndWait(c)));
      for (const ns of namespaces.slice().reverse()) {
        await killNamespacePids(ns);
        await ip('netns', 'del', ns).catch(() => {});
      }
      namespaces.length = 0;
    },
  };

  try {
    await ip('netns', 'add', lanNs);
    namespaces.push(lanNs);
    for (const br of ['br0', 'br1']) {
      await ip('-n', lanNs, 'link', 'add', br, 'type', 'bridge');
      await ip('-n', lanNs, 'link', 'set', br, 'up');
    }
  } catch (err) {
    await lan.teardown();
    throw err;
  }
  return lan;
}

function killAndWait(c: ChildProcess): Promise<void> {
  if (c.exitCode !== null || c.signalCode !== null) return Promise.resolve();
  return new Promise((resolve) => {
    const t = setTimeout(() => {
      c.kill('SIGKILL');
    }, 2000);
    c.once('exit', () => {
      clearTimeout(t);
      resolve();
    });
    c.kill('SIGTERM');
  });
}

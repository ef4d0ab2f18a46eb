// `delugefs demo`: a throwaway cluster of three nodes on this machine, to see DelugeFS work before
// setting up real disks. Node 1 creates the cluster and is mounted on a temp mount point; nodes 2
// and 3 join it (storage only) with invite tokens and --peer. Sample files written through the
// mount are followed until each is on `copies` disks (whereis), one holder is killed with -9, and
// the demo shows the cluster judging it down after a short --dead-after and healing back to
// `copies`. It then runs until Ctrl-C (or --exit / --keep-seconds) and removes everything it made:
// its node processes (by PID), the mount, the namespaces, the temp directory.
// Network: as root every node is a machine of its own (network namespaces on a private bridge,
// util/netns.ts, and its own host name); otherwise all run on loopback. Always --no-mdns: the demo
// never sends a packet outside loopback or the namespaces it made.
import { spawn, ChildProcess } from 'node:child_process';
import { createWriteStream, WriteStream } from 'node:fs';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { randomBytes } from 'node:crypto';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { UsageError, parseDuration } from './args.js';
import { CheckError } from './run.js';
import { callLocal } from '../daemon/methods.js';
import { HEALTH } from '../daemon/health-method.js';
import type { Health } from '../daemon/health.js';
import { INVITE, MEMBERS } from '../node/control-methods.js';
import { WHEREIS } from '../replication/methods.js';
import type { Where } from '../replication/whereis.js';
import { CONTROL_SOCKET } from '../node/cluster-node.js';
import { forceUnmount } from '../fuse/mount.js';
import { createLan, NetnsHost, NetnsLan } from '../util/netns.js';
import { runProc } from '../util/exec.js';
import { NODE_FLAGS } from './node-flags.js';

export const DEMO_USAGE = `Usage: delugefs demo [--dead-after D] [--keep-seconds N | --exit] [--loopback] [--json]

Starts a throwaway cluster of three nodes on this machine, each on a root of its own in a temp
directory: node 1 creates the cluster and is mounted (the mount point is printed: look inside
with ls), nodes 2 and 3 join it. It writes a few sample files through the mount, waits until
each is on 2 disks, kills one node that holds a copy with kill -9, and shows the cluster
noticing (after --dead-after) and copying what it held again until every file is on 2 live
disks. Then it keeps running until Ctrl-C and removes everything it made: the node processes,
the mount, the network namespaces and the temp directory.

As root every node is a machine of its own: a network namespace on a private bridge and a host
name of its own (needs iproute2); otherwise, or with --loopback, the nodes share 127.0.0.1.
mDNS is off: nothing is sent outside loopback or the demo's own namespaces.

Options:
  --dead-after D    how long the killed node is silent before it counts as down and its copies
                    are made again (default 10s; a real cluster's default is 10m)
  --keep-seconds N  after healing, keep the cluster running N seconds instead of until Ctrl-C
  --exit            stop and clean up as soon as healing is shown (--keep-seconds 0)
  --loopback        run every node on 127.0.0.1 even as root (no namespaces)
  --json            print one JSON event per line instead of text
  -h, --help        show this help`;

export interface DemoArgs { deadAfterMs: number; keepMs: number | null; loopback: boolean; json: boolean; help?: boolean }

export function parseDemoArgs(argv: string[]): DemoArgs {
  const a: DemoArgs = { deadAfterMs: 10_000, keepMs: null, loopback: false, json: false };
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!;
    const eq = arg.startsWith('--') ? arg.indexOf('=') : -1;
    const flag = eq > 0 ? arg.slice(0, eq) : arg;
    const value = (): string => {
      const v = eq > 0 ? arg.slice(eq + 1) : argv[++i];
      if (v === undefined || v === '') throw new UsageError(`demo: ${flag} needs a value`);
      return v;
    };
    switch (flag) {
      case '-h': case '--help': return { ...a, help: true };
      case '--json': a.json = true; break;
      case '--loopback': a.loopback = true; break;
      case '--exit': a.keepMs = 0; break;
      case '--dead-after': a.deadAfterMs = parseDuration(flag, value()); break;
      case '--keep-seconds': {
        const v = value();
        if (!/^\d+$/.test(v)) throw new UsageError(`demo: --keep-seconds must be a whole number of seconds, not "${v}"`);
        a.keepMs = Number(v) * 1000;
        break;
      }
      default: throw new UsageError(`demo: unknown option "${arg}"`);
    }
  }
  return a;
}

const NODES = 3;
// Given with --cluster: "demo" as the first word is this command.
const CLUSTER = 'demo';
const SUBNET = '10.79.0';
/** How long each step may take before the demo gives up (and still cleans up). */
const STEP_MS = 90_000;

interface DemoNode { n: number; root: string; mnt: string | null; proc: ChildProcess; pid: number; id: string; sshPort: number; host: NetnsHost | null; log: WriteStream }

/** What the demo prints: text lines (one refreshing status line on a terminal) or JSON events. */
class Out {
  private readonly tty = !!process.stdout.isTTY;
  private status = '';
  constructor(private readonly json: boolean) {}
  event(event: string, fields: Record<string, unknown>, text: string): void {
    if (this.json) return void process.stdout.write(JSON.stringify({ event, ...fields }) + '\n');
    this.clear();
    process.stdout.write(text + '\n');
  }
  /** A status that replaces the previous one on a terminal; printed only when it changed otherwise. */
  refresh(fields: Record<string, unknown>, text: string): void {
    if (text === this.status) return;
    this.status = text;
    if (this.json) return void process.stdout.write(JSON.stringify({ event: 'status', ...fields }) + '\n');
    // Cut to the terminal's width: a wrapped line cannot be redrawn in place.
    process.stdout.write(this.tty ? `\r\x1b[K  ${text.slice(0, Math.max(20, (process.stdout.columns || 80) - 3))}` : `  ${text}\n`);
  }
  clear(): void {
    if (this.tty && this.status) process.stdout.write('\r\x1b[K');
    this.status = '';
  }
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const alive = (pid: number) => { try { process.kill(pid, 0); return true; } catch (e) { return (e as NodeJS.ErrnoException).code === 'EPERM'; } };

/** Polls `fn` every 500 ms until it gives a value; names the step when it takes longer than STEP_MS. */
async function until<T>(what: string, fn: () => Promise<T | undefined>, stop: () => boolean): Promise<T> {
  const end = Date.now() + STEP_MS;
  let last: unknown;
  for (;;) {
    if (stop()) throw new Interrupted();
    try {
      const v = await fn();
      if (v !== undefined) return v;
    } catch (e) {
      last = e;
    }
    if (Date.now() > end) throw new CheckError(`demo: gave up waiting for ${what}${last ? ` (${(last as Error).message})` : ''}; the nodes' last log lines are above`);
    await sleep(500);
  }
}

class Interrupted extends Error {}

export async function runDemo(argv: string[]): Promise<void> {
  const a = parseDemoArgs(argv);
  if (a.help) return void process.stdout.write(DEMO_USAGE + '\n');
  const out = new Out(a.json);
  const isRoot = process.getuid?.() === 0;
  const netns = isRoot && !a.loopback && (await runProc('ip', ['netns', 'list']).then((r) => r.code === 0, () => false));
  const dir = await mkdtemp(join(tmpdir(), 'delugefs-demo-'));
  const nodes: DemoNode[] = [];
  let lan: NetnsLan | null = null;
  let signalled: string | null = null;
  // Ctrl-C at any step: whatever is awaited gives up, then the cleanup runs.
  const ac = new AbortController();
  const onSignal = (sig: NodeJS.Signals) => {
    if (signalled) return;
    signalled = sig;
    ac.abort();
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  const stop = () => signalled !== null;
  const cli = process.argv[1]!;
  let failure: Error | null = null;

  const startNode = async (n: number, extra: string[], mount: boolean): Promise<DemoNode> => {
    const root = join(dir, `node${n}`);
    const mnt = mount ? join(dir, 'mnt') : null;
    if (mnt) await mkdir(mnt);
    const host = lan ? await lan.addHost(`n${n}`) : null;
    const args = [cli, '--cluster', CLUSTER, '--root', root, ...(mnt ? ['--mount', mnt] : []), '--json', '--log-level', 'warn', '--no-mdns', '--interface', host ? 'eth0' : 'lo',
      '--port', String(17600 + 10 * n), '--ssh-port', String(17622 + 10 * n), '--dead-after', `${Math.ceil(a.deadAfterMs / 1000)}s`, '--audit-every', '1s', ...extra];
    // A run directory of its own per node: no local joins, nothing left in /run/delugefs.
    const env = { ...process.env, DELUGEFS_RUN_DIR: join(dir, `run${n}`) };
    await mkdir(env.DELUGEFS_RUN_DIR, { mode: 0o700 });
    const stdio: ['ignore', 'pipe', 'pipe'] = ['ignore', 'pipe', 'pipe'];
    // nsenter, unshare and sh all exec: the PID spawned is the node's own.
    const proc = host
      ? host.spawnNet('unshare', ['-u', 'sh', '-c', 'hostname "$0" && exec "$@"', `demo${n}`, process.execPath, ...NODE_FLAGS, ...args], { stdio, env })
      : spawn(process.execPath, [...NODE_FLAGS, ...args], { stdio, env });
    const log = createWriteStream(join(dir, `node${n}.log`));
    proc.stderr!.pipe(log);
    const node: DemoNode = { n, root, mnt, proc, pid: proc.pid!, id: '', sshPort: 0, host, log };
    nodes.push(node);
    const ready = await new Promise<Record<string, unknown>>((resolve, reject) => {
      let buf = '';
      proc.stdout!.on('data', (b: Buffer) => {
        buf += b.toString();
        const line = buf.split('\n').find((l) => l.startsWith('{"event":"ready"'));
        if (line) resolve(JSON.parse(line));
      });
      proc.once('exit', (code) => reject(new CheckError(`demo: node ${n} exited (${code}) before it was ready (its last log lines are above)`)));
      proc.once('error', reject);
      ac.signal.addEventListener('abort', () => reject(new Interrupted()));
      setTimeout(() => reject(new CheckError(`demo: node ${n} not ready after ${STEP_MS / 1000}s`)), STEP_MS).unref();
    });
    node.id = String(ready.node);
    node.sshPort = Number(ready.sshPort);
    return node;
  };
  const sock = (d: DemoNode) => join(d.root, CONTROL_SOCKET);

  try {
    if (netns) lan = await createLan({ subnet: SUBNET });
    out.event('start', { dir, network: netns ? 'netns' : 'loopback', deadAfterMs: a.deadAfterMs },
      `delugefs demo: three nodes in ${dir}, ${netns ? 'each in a network namespace of its own (a private bridge, no mDNS)' : 'on loopback (no mDNS)'}`);

    // 1. The cluster's first node, mounted.
    const first = await startNode(1, ['--create'], true);
    out.event('node', { n: 1, node: first.id, pid: first.pid, root: first.root, mount: first.mnt, machine: lan ? 'demo1' : null },
      `1. node 1 (${first.id}) created the cluster, mounted on ${first.mnt}  (try: ls -l ${first.mnt})`);
    const peer = `${first.host ? first.host.ip : '127.0.0.1'}:${first.sshPort}`;

    // 2. Two more disks join with invite tokens (from files: a token on the command line is in ps).
    for (const n of [2, 3]) {
      if (stop()) throw new Interrupted();
      const { token } = await callLocal(sock(first), INVITE, { ttlMs: 3600_000 });
      const file = join(dir, `token${n}`);
      await writeFile(file, token + '\n', { mode: 0o600 });
      const d = await startNode(n, ['--join-file', file, '--peer', peer], false);
      await rm(file, { force: true });
      out.event('node', { n, node: d.id, pid: d.pid, root: d.root, mount: null, machine: lan ? `demo${n}` : null },
        `2. node ${n} (${d.id}) joined through ${peer} (storage only)`);
    }
    await until('three members with addresses', async () => {
      for (const d of nodes) {
        const m = await callLocal(sock(d), MEMBERS, null, 5000);
        if (m.length !== NODES || !m.every((r) => r.addresses.length)) return undefined;
      }
      return true;
    }, stop);

    // 3. Sample files through the mount (async only: the mount's server is a child, but a hung mount must not hang us).
    const samples: [string, Buffer][] = [
      ['README.txt', Buffer.from('Written through the mount of node 1; kept on 2 disks of the demo cluster.\n')],
      ['photos/sunset.jpg', randomBytes(256 * 1024)],
      ['docs/notes.md', Buffer.from('# notes\n\n' + 'DelugeFS demo. '.repeat(200) + '\n')],
      ['data/blob.bin', randomBytes(1024 * 1024)],
    ];
    for (const [p, data] of samples) {
      await mkdir(join(first.mnt!, p, '..'), { recursive: true });
      await writeFile(join(first.mnt!, p), data);
    }
    const paths = samples.map(([p]) => `/${p}`);
    out.event('written', { files: samples.map(([p, d]) => ({ path: `/${p}`, size: d.length })) },
      `3. wrote ${samples.length} files through the mount: ${paths.join(', ')}`);

    const where = () => callLocal(sock(first), WHEREIS, { paths }, 10_000);
    const holders = (w: Where, without?: string) => w.holders.filter((h) => h.complete && h.nodeId !== without && h.state === 'up').map((h) => h.nodeId);
    const nameOf = (id: string) => `node ${nodes.find((d) => d.id === id)?.n ?? id}`;
    const summary = (ws: Where[], without?: string) => ws.map((w) => ({ path: w.path, copies: w.copies, holders: holders(w, without) }));

    // 4. Until every file is on `copies` disks.
    const placed = await until('every file on its copies', async () => {
      const ws = await where();
      const ok = ws.filter((w) => !w.error && holders(w).length >= w.copies).length;
      out.refresh({ phase: 'replicating', files: ws.length, placed: ok }, `replicating: ${ok}/${ws.length} files on ${ws[0]?.copies ?? 2} disks  ${ws.map((w) => `${w.path}:${holders(w).length}`).join(' ')}`);
      return ok === ws.length ? ws : undefined;
    }, stop);
    out.event('replicated', { files: summary(placed) },
      `4. every file is on ${placed[0]!.copies} disks:\n${placed.map((w) => `     ${w.path.padEnd(20)} ${holders(w).map(nameOf).join(', ')}`).join('\n')}`);

    // 5. kill -9 a node other than the mounted one that holds copies (the one holding most).
    const held = (d: DemoNode) => placed.filter((w) => holders(w).includes(d.id)).length;
    const victim = nodes.filter((d) => d !== first && held(d) > 0).sort((x, y) => held(y) - held(x))[0];
    if (!victim) throw new CheckError('demo: no node but the mounted one holds a copy');
    const gone = new Promise((r) => victim.proc.once('exit', r));
    process.kill(victim.pid, 'SIGKILL');
    await gone;
    const killedAt = Date.now();
    out.event('killed', { n: victim.n, node: victim.id, pid: victim.pid, held: held(victim) },
      `5. killed node ${victim.n} (kill -9 ${victim.pid}); it held ${held(victim)} of the files. After ${Math.round(a.deadAfterMs / 1000)}s of silence it counts as down and its copies are made again`);

    // 6. Down, under-replicated, healed back to 0.
    let seenDown = false;
    let maxUnder = 0;
    const healed = await until('healing back to every file on its copies', async () => {
      const [h, ws]: [Health, Where[]] = await Promise.all([callLocal(sock(first), HEALTH, null, 10_000), where()]);
      // Under-replicated as the demo knows it (the killed node holds nothing); the cluster's own
      // count (health) rises only once the node is dead-after silent, and falls as copies land.
      const under = ws.filter((w) => holders(w, victim.id).length < w.copies).length;
      maxUnder = Math.max(maxUnder, under);
      if (h.nodes.down > 0 && !seenDown) {
        seenDown = true;
        // Small files may be copied again in the very round that judges the node down: what was
        // under since the kill is what the node being down is about.
        out.event('down', { n: victim.n, node: victim.id, afterMs: Date.now() - killedAt, under: maxUnder, underNow: under, clusterUnder: h.content.under },
          `6. node ${victim.n} is down (silent ${((Date.now() - killedAt) / 1000).toFixed(1)}s): ${maxUnder} files were under ${ws[0]?.copies ?? 2} live copies, ${under} still are; copying them again`);
      }
      const secs = ((Date.now() - killedAt) / 1000).toFixed(0);
      out.refresh({ phase: seenDown ? 'healing' : 'waiting-dead-after', verdict: h.verdict, down: h.nodes.down, under, clusterUnder: h.content.under, fetching: h.content.fetching, files: ws.length },
        `${seenDown ? 'healing' : `waiting for dead-after (${secs}s)`}: ${under}/${ws.length} files under-replicated; cluster ${h.verdict}, ${h.nodes.down} down, ${h.content.under} content ids under, ${h.content.fetching} copying`);
      return seenDown && h.content.under === 0 && under === 0 ? ws : undefined;
    }, stop);
    out.event('healed', { afterMs: Date.now() - killedAt, maxUnder, files: summary(healed, victim.id) },
      `7. healed ${((Date.now() - killedAt) / 1000).toFixed(1)}s after the kill: under-replicated back to 0, every file on ${healed[0]!.copies} live disks:\n${healed.map((w) => `     ${w.path.padEnd(20)} ${holders(w, victim.id).map(nameOf).join(', ')}`).join('\n')}`);

    // 7. Keep running until asked to stop.
    out.event('running', { mount: first.mnt, root: first.root, keepMs: a.keepMs },
      a.keepMs === null ? `the cluster keeps running: ls ${first.mnt}, delugefs status ${first.root}; Ctrl-C stops it and removes everything`
        : a.keepMs === 0 ? 'done (--exit): stopping the cluster' : `the cluster keeps running for ${a.keepMs / 1000}s: ls ${first.mnt}`);
    if (!stop()) {
      await new Promise<void>((r) => {
        ac.signal.addEventListener('abort', () => r());
        if (a.keepMs !== null) setTimeout(r, a.keepMs).unref();
      });
    }
  } catch (e) {
    if (!(e instanceof Interrupted)) failure = e as Error;
  } finally {
    out.clear();
    // Cleanup: node processes by PID (SIGTERM: a node unmounts and commits; SIGKILL after 10 s), the mount, the namespaces, the directory.
    const pids = nodes.map((d) => d.pid);
    await Promise.all(nodes.map((d) => stopNode(d.proc)));
    if (nodes[0]?.mnt) await forceUnmount(nodes[0].mnt).catch(() => {});
    await lan?.teardown();
    await Promise.all(nodes.map((d) => new Promise<void>((r) => d.log.end(() => r()))));
    const logs = failure ? await Promise.all(nodes.map((d) => readFile(join(dir, `node${d.n}.log`), 'utf8').then((t) => t.trim().split('\n').slice(-5).join('\n'), () => ''))) : [];
    await rm(dir, { recursive: true, force: true });
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
    out.event('cleaned', { pids, left: pids.filter(alive), dir, signal: signalled, error: failure?.message ?? null },
      `stopped ${pids.length} node${pids.length === 1 ? '' : 's'} (${pids.join(', ')}), unmounted, removed ${netns ? 'the namespaces and ' : ''}${dir}`);
    if (failure) {
      for (const [i, l] of logs.entries()) if (l) process.stderr.write(`node ${i + 1}'s last log lines:\n${l}\n`);
      throw failure;
    }
    if (signalled) process.exitCode = 0;
  }
}

/** SIGTERM, SIGKILL by PID after 10 s; resolves once the process exited (or 15 s at most). */
function stopNode(p: ChildProcess): Promise<void> {
  if (p.exitCode !== null || p.signalCode !== null) return Promise.resolve();
  return new Promise((resolve) => {
    const give = setTimeout(resolve, 15_000);
    const kill = setTimeout(() => p.kill('SIGKILL'), 10_000);
    p.once('exit', () => { clearTimeout(kill); clearTimeout(give); resolve(); });
    p.kill('SIGTERM');
  });
}

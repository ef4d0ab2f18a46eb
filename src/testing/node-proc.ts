// Test harness: runs `delugefs` as a child process on a temp root and mount point, waits for
// its ready line, and always cleans up (SIGTERM, then SIGKILL by PID, then a forced unmount).
import { spawn, ChildProcess } from 'node:child_process';
import { mkdtemp, mkdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { forceUnmount } from '../fuse/mount.js';
import { runProc } from './proc.js';
import { NODE_FLAGS } from '../cli/node-flags.js';

export const CLI = new URL('../cli/main.js', import.meta.url).pathname;

export interface NodeProc {
  proc: ChildProcess;
  ready: Record<string, unknown>;
  stderr: () => string;
  stop(): Promise<number | null>;
  kill9(): Promise<void>;
}

export interface Sandbox {
  dir: string;
  root: string;
  mnt: string;
  /** mdns: off unless asked for, so a test never multicasts on the machine's real network. */
  start(extra?: string[], opts?: { create?: boolean; mount?: boolean; root?: string; mnt?: string; mdns?: boolean; input?: string; env?: NodeJS.ProcessEnv }): Promise<NodeProc>;
  cleanup(): Promise<void>;
}

export async function sandbox(name = 'dfs'): Promise<Sandbox> {
  const dir = await mkdtemp(join(tmpdir(), `${name}-`));
  const root = join(dir, 'root');
  const mnt = join(dir, 'mnt');
  await mkdir(mnt);
  const procs = new Set<ChildProcess>();
  const mounts = new Set<string>();
  return {
    dir, root, mnt,
    async start(extra = [], o = {}) {
      const r = o.root ?? root;
      const m = o.mnt ?? mnt;
      const args = [CLI, 'testc', r, ...(o.mount === false ? [] : [m]), '--json', '--port', '17000', ...(o.create ? ['--create'] : []), ...(o.mdns ? [] : ['--no-mdns']), ...extra];
      if (o.mount !== false) mounts.add(m);
      // Each sandbox is its own "machine" for local joins (second disks).
      const env = { ...process.env, DELUGEFS_RUN_DIR: process.env.DELUGEFS_RUN_DIR ?? join(dir, 'run'), ...o.env };
      const p = spawn(process.execPath, [...NODE_FLAGS, ...args], { stdio: [o.input === undefined ? 'ignore' : 'pipe', 'pipe', 'pipe'], env });
      if (o.input !== undefined) p.stdin!.end(o.input);
      procs.add(p);
      p.on('exit', () => procs.delete(p));
      return waitReady(p);
    },
    async cleanup() {
      for (const p of procs) {
        p.kill('SIGTERM');
        await exited(p, 5000);
        if (p.exitCode === null && p.signalCode === null) p.kill('SIGKILL');
        await exited(p, 5000);
      }
      for (const m of mounts) await forceUnmount(m).catch(() => {});
      await rm(dir, { recursive: true, force: true }).catch(() => {});
    },
  };
}

function exited(p: ChildProcess, ms: number): Promise<void> {
  if (p.exitCode !== null || p.signalCode !== null) return Promise.resolve();
  return new Promise((res) => {
    const t = setTimeout(res, ms);
    p.once('exit', () => { clearTimeout(t); res(); });
  });
}

/** A test's teardown: SIGTERM to each process it started (SIGKILL by PID after 10 s), then its mounts forced off. */
export async function stopAll(procs: Iterable<ChildProcess>, mounts: Iterable<string> = []): Promise<void> {
  const list = [...procs];
  for (const p of list) p.kill('SIGTERM');
  await Promise.all(list.map((p) => new Promise<void>((r) => {
    if (p.exitCode !== null || p.signalCode !== null) return r();
    const t = setTimeout(() => { p.kill('SIGKILL'); r(); }, 10_000);
    p.once('exit', () => { clearTimeout(t); r(); });
  })));
  for (const m of mounts) await forceUnmount(m).catch(() => {});
}

export function waitReady(p: ChildProcess, ms = 60_000): Promise<NodeProc> {
  let err = '';
  let out = '';
  p.stderr!.on('data', (b: Buffer) => (err += b.toString()));
  return new Promise((resolve, reject) => {
    const t = setTimeout(() => reject(new Error(`node not ready after ${ms} ms: ${err}`)), ms);
    p.stdout!.on('data', (b: Buffer) => {
      out += b.toString();
      const line = out.split('\n').find((l) => l.startsWith('{"event":"ready"'));
      if (!line) return;
      clearTimeout(t);
      resolve({
        proc: p,
        ready: JSON.parse(line),
        stderr: () => err,
        async stop() {
          p.kill('SIGTERM');
          await exited(p, 30_000);
          return p.exitCode;
        },
        async kill9() {
          p.kill('SIGKILL');
          await exited(p, 10_000);
        },
      });
    });
    p.once('exit', (code) => {
      clearTimeout(t);
      reject(new Error(`node exited with ${code} before ready: ${err}`));
    });
  });
}

/** Runs a shell command in a child process (the test never touches the mount from the node's process). */
export async function sh(cmd: string, opts: { allowFail?: boolean; input?: string } = {}): Promise<{ code: number; out: string; err: string }> {
  const r = await runProc('sh', ['-c', cmd], { input: opts.input, timeoutMs: 600_000 });
  if (r.code !== 0 && !opts.allowFail) throw new Error(`"${cmd}" failed (${r.code}): ${r.stderr}`);
  return { code: r.code ?? -1, out: r.stdout, err: r.stderr };
}

/** Runs the `delugefs` command to its end (behind `wrap`, e.g. unshare, if given); never rejects on its exit code. */
export async function runCli(args: string[], o: { env?: NodeJS.ProcessEnv; input?: string; wrap?: string[] } = {}): Promise<{ code: number | null; out: string; err: string }> {
  const [cmd, ...pre] = o.wrap?.length ? o.wrap : [process.execPath];
  const argv = o.wrap?.length ? [...pre, process.execPath, ...NODE_FLAGS, CLI, ...args] : [...NODE_FLAGS, CLI, ...args];
  const r = await runProc(cmd!, argv, { env: { ...process.env, ...o.env }, input: o.input, timeoutMs: 120_000 });
  return { code: r.code, out: r.stdout, err: r.stderr };
}

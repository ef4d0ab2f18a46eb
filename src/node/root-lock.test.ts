// The root lock against real processes: a pid in the file (even a live, unrelated one) never
// blocks a start; of processes racing for a root exactly one wins; a holder killed with -9
// frees the root at once; an emptied lock file does not make a held lock free.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, ChildProcess } from 'node:child_process';
import { mkdtemp, mkdir, rm, writeFile, readFile, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { acquireLock, paths } from './layout.js';
import { sandbox, Sandbox } from '../testing/node-proc.js';

const LAYOUT = new URL('./layout.js', import.meta.url).href;
const dirs: string[] = [];
const children = new Set<ChildProcess>();
const boxes: Sandbox[] = [];
after(async () => {
  for (const c of children) c.kill('SIGKILL');
  for (const b of boxes) await b.cleanup();
  for (const d of dirs) await rm(d, { recursive: true, force: true });
});

async function root(): Promise<string> {
  const d = await mkdtemp(join(tmpdir(), 'dfs-lock-'));
  dirs.push(d);
  await mkdir(join(d, 'config'));
  return d;
}

/** A process that takes the lock when told "go" on stdin, says "won PID" or "lost MESSAGE", and holds it until stdin ends. */
interface Contender { proc: ChildProcess; ready: Promise<void>; result: Promise<string>; go(): void }
function contender(r: string): Contender {
  const code = `
    import { acquireLock, paths } from ${JSON.stringify(LAYOUT)};
    process.stdout.write('ready\\n');
    let release;
    process.stdin.on('data', async (b) => {
      if (!b.toString().includes('go') || release !== undefined) return;
      release = null;
      try { release = await acquireLock(paths(${JSON.stringify(r)})); process.stdout.write('won ' + process.pid + '\\n'); }
      catch (e) { process.stdout.write('lost ' + e.message + '\\n'); }
    });
    process.stdin.on('end', async () => { await release?.(); process.exit(0); });`;
  const proc = spawn(process.execPath, ['--input-type=module', '-e', code], { stdio: ['pipe', 'pipe', 'inherit'] });
  children.add(proc);
  proc.on('exit', () => children.delete(proc));
  let out = '';
  const lines: ((l: string) => void)[] = [];
  proc.stdout!.on('data', (b: Buffer) => {
    out += b.toString();
    let nl;
    while ((nl = out.indexOf('\n')) >= 0) {
      const l = out.slice(0, nl);
      out = out.slice(nl + 1);
      lines.shift()?.(l);
    }
  });
  const next = () => new Promise<string>((res) => lines.push(res));
  const ready = next().then(() => {});
  const result = ready.then(next);
  return { proc, ready, result, go: () => proc.stdin!.write('go\n') };
}

function exited(p: ChildProcess): Promise<void> {
  return p.exitCode !== null || p.signalCode !== null ? Promise.resolve() : new Promise((r) => p.once('exit', () => r()));
}

test('a pid in the lock file is only informative: a live unrelated pid (pid 1, another process) does not stop a start', async () => {
  const r = await root();
  const p = paths(r);
  await writeFile(p.lock, '1\n');
  let release = await acquireLock(p);
  assert.equal((await readFile(p.lock, 'utf8')).trim(), String(process.pid), 'the file names the holder');
  assert.equal((await stat(p.lock)).mode & 0o777, 0o600);
  await release();

  // The real command: a stopped node whose lock file names a live process that is not delugefs
  // (what a reboot makes of a stale pid) starts.
  const b = await sandbox('dfs-lock');
  boxes.push(b);
  const n = await b.start([], { create: true, mount: false });
  await n.stop();
  const sleeper = spawn('sleep', ['60'], { stdio: 'ignore' });
  children.add(sleeper);
  try {
    await writeFile(paths(b.root).lock, `${sleeper.pid}\n`);
    const n2 = await b.start([], { mount: false });
    assert.equal(await n2.stop(), 0);
  } finally {
    sleeper.kill('SIGKILL');
  }
  release = await acquireLock(p); // released locks can be taken again in the same process
  await release();
});

test('processes racing for one root: exactly one wins, the others name its pid; kill -9 frees the root', async () => {
  const r = await root();
  for (let round = 0; round < 5; round++) {
    // What a crash leaves: a lock file naming a process that is gone.
    const dead = spawn('true');
    await exited(dead);
    await writeFile(paths(r).lock, `${dead.pid}\n`);
    const cs = Array.from({ length: 4 }, () => contender(r));
    await Promise.all(cs.map((c) => c.ready));
    for (const c of cs) c.go();
    const results = await Promise.all(cs.map((c) => c.result));
    const winners = results.filter((l) => l.startsWith('won '));
    assert.equal(winners.length, 1, `round ${round}: ${results.join(' | ')}`);
    const winnerPid = winners[0]!.slice(4);
    // Informative only: a loser that looked before the winner wrote its pid names no pid, never a wrong one.
    for (const l of results.filter((x) => !x.startsWith('won '))) assert.match(l, new RegExp(`^lost root .* is in use by another delugefs process \\(pid (${winnerPid}|unknown)\\)`));
    const winner = cs[results.indexOf(winners[0]!)]!;
    if (round % 2) {
      winner.proc.kill('SIGKILL'); // the kernel drops its lock: no cleanup ran
      await exited(winner.proc);
    } else {
      winner.proc.stdin!.end();
      await exited(winner.proc);
    }
    for (const c of cs) c.proc.stdin!.end();
    await Promise.all(cs.map((c) => exited(c.proc)));
    const release = await acquireLock(paths(r));
    await release();
  }
});

test('a held lock stays held when its file is emptied (a crash between create and the pid write looks like this)', async () => {
  const r = await root();
  const holder = contender(r);
  await holder.ready;
  holder.go();
  assert.match(await holder.result, /^won /);
  await writeFile(paths(r).lock, '');
  await assert.rejects(acquireLock(paths(r)), /in use by another delugefs process/);
  const second = contender(r);
  await second.ready;
  second.go();
  assert.match(await second.result, /^lost /);
  holder.proc.stdin!.end();
  second.proc.stdin!.end();
  await Promise.all([exited(holder.proc), exited(second.proc)]);
});

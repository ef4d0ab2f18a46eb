// `delugefs demo` end to end: the real command as a child process with --json, stopped with SIGINT
// (Ctrl-C) once it says it keeps running. The events must show the files written, each on 2
// disks, a holder killed, the cluster healing back to 2 live copies; afterwards none of the
// node processes (by PID), the mount, the namespaces or the temp directory may be left. As root
// (CI) the nodes are in network namespaces; otherwise on loopback. Never skipped.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { access, readFile } from 'node:fs/promises';
import { CLI, runCli } from '../testing/node-proc.js';
import { runProc } from '../testing/proc.js';

type Ev = Record<string, any> & { event: string };
const alive = (pid: number) => { try { process.kill(pid, 0); return true; } catch (e) { return (e as NodeJS.ErrnoException).code === 'EPERM'; } };

test('demo: help and bad options', async () => {
  const h = await runCli(['demo', '--help']);
  assert.equal(h.code, 0);
  assert.match(h.out, /^Usage: delugefs demo/);
  const bad = await runCli(['demo', '--bogus']);
  assert.equal(bad.code, 2);
  assert.match(bad.err, /unknown option "--bogus"/);
  assert.match((await runCli(['--help'])).out, /delugefs demo/);
});

test('demo: three nodes, files on 2 disks, a holder killed, healed back to 2; Ctrl-C cleans up everything', { timeout: 150_000 }, async () => {
  const p = spawn(process.execPath, [CLI, 'demo', '--json', '--dead-after', '5s'], { stdio: ['ignore', 'pipe', 'pipe'] });
  const events: Ev[] = [];
  let err = '';
  let buf = '';
  p.stderr.on('data', (b: Buffer) => (err += b));
  const exited = new Promise<number | null>((r) => p.once('exit', (code) => r(code)));
  p.stdout.on('data', (b: Buffer) => {
    buf += b;
    let i;
    while ((i = buf.indexOf('\n')) >= 0) {
      const line = buf.slice(0, i);
      buf = buf.slice(i + 1);
      const ev = JSON.parse(line) as Ev;
      events.push(ev);
      // Ctrl-C once the demo has shown everything and waits.
      if (ev.event === 'running') p.kill('SIGINT');
    }
  });
  const guard = setTimeout(() => p.kill('SIGTERM'), 120_000);
  const code = await exited;
  clearTimeout(guard);
  const pids = events.filter((e) => e.event === 'node').map((e) => e.pid as number);
  try {
    const of = (name: string) => {
      const e = events.find((x) => x.event === name);
      assert.ok(e, `a "${name}" event (got ${events.map((x) => x.event).join(',')}); stderr: ${err}`);
      return e;
    };
    assert.equal(code, 0, `demo exits 0 after Ctrl-C; stderr: ${err}`);
    const start = of('start');
    assert.equal(start.network, process.getuid?.() === 0 ? 'netns' : 'loopback');
    assert.equal(pids.length, 3, 'three nodes started');
    const mount = events.find((e) => e.event === 'node' && e.n === 1)!.mount as string;
    assert.ok(mount.startsWith(start.dir), 'node 1 mounted inside the demo directory');

    const written = of('written').files as { path: string }[];
    assert.ok(written.length >= 3, 'sample files written');
    const paths = written.map((f) => f.path).sort();

    const replicated = of('replicated').files as { path: string; copies: number; holders: string[] }[];
    assert.deepEqual(replicated.map((f) => f.path).sort(), paths);
    for (const f of replicated) assert.ok(f.copies === 2 && f.holders.length >= 2, `${f.path} on 2 disks: ${f.holders}`);

    const killed = of('killed');
    assert.notEqual(killed.n, 1, 'the mounted node stays');
    assert.ok(replicated.some((f) => f.holders.includes(killed.node)), 'the killed node held a copy');
    assert.ok(!pids.slice(0, 1).includes(killed.pid) && pids.includes(killed.pid));

    const down = of('down');
    assert.ok(down.under > 0, 'files under-replicated once the node is down');
    assert.ok(down.afterMs >= 4000, `judged down only after --dead-after (${down.afterMs} ms)`);
    const healed = of('healed');
    assert.ok(healed.maxUnder > 0);
    assert.deepEqual(healed.files.map((f: { path: string }) => f.path).sort(), paths);
    for (const f of healed.files as { path: string; holders: string[] }[]) {
      assert.ok(f.holders.length >= 2, `${f.path} back on 2 live disks: ${f.holders}`);
      assert.ok(!f.holders.includes(killed.node), `${f.path}: not counted on the killed node`);
    }
    // The order the user sees.
    const order = ['start', 'written', 'replicated', 'killed', 'down', 'healed', 'running', 'cleaned'].map((n) => events.findIndex((e) => e.event === n));
    assert.deepEqual([...order].sort((a, b) => a - b), order, 'steps in order');
    const last = events.at(-1)!;
    assert.equal(last.event, 'cleaned');
    assert.equal(last.signal, 'SIGINT');
    assert.deepEqual(last.left, []);

    // Nothing left behind.
    for (const pid of pids) assert.equal(alive(pid), false, `node pid ${pid} is gone`);
    const mounts = await readFile('/proc/self/mountinfo', 'utf8');
    assert.ok(!mounts.includes(start.dir), 'no mount left under the demo directory');
    await assert.rejects(access(start.dir), 'the demo directory is removed');
    if (start.network === 'netns') {
      const ns = await runProc('ip', ['netns', 'list']);
      assert.ok(!ns.stdout.includes(`dfsnet-${p.pid}-`), `no namespace of the demo left: ${ns.stdout}`);
    }
  } finally {
    // A demo that failed its own cleanup: its nodes by PID.
    for (const pid of pids) if (alive(pid)) try { process.kill(pid, 'SIGKILL'); } catch { /* gone */ }
  }
});

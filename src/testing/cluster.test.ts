// The cluster harness itself: three mounted nodes on namespaces join, a write on one is listed on
// the others, the counters read sensible values, a partition holds a change back until healed,
// and teardown leaves no process, mount, namespace or directory behind.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFile, stat } from 'node:fs/promises';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { netnsAvailable } from './netns.js';
import { startCluster } from './cluster.js';
import { eventually } from './eventually.js';

const exec = promisify(execFile);
const skip = !(await netnsAvailable()) && 'needs root and iproute2';

const alive = (pid: number) => { try { process.kill(pid, 0); return true; } catch { return false; } };

test('a mounted three-node cluster: write, list, counters, partition, teardown', { skip, timeout: 120_000 }, async () => {
  const c = await startCluster({ nodes: 3, mount: true, subnet: '10.81.0' });
  const pids = c.nodes.map((n) => n.pid);
  const mnts = c.nodes.map((n) => n.mnt!);
  try {
    assert.equal(new Set(c.nodes.map((n) => n.id)).size, 3);
    const { head } = await c.converged();
    assert.match(head, /^[0-9a-f]{40}$/);
    await c.write(0, 'd/hello.txt', 'hi');
    for (const i of [1, 2]) await eventually(`d/hello.txt on ${i}`, async () => (await c.list(i, 'd').catch((): string[] => [])).includes('hello.txt'));
    await c.converged();
    const counts = await c.commits(1);
    assert.ok(counts.commits >= 4, JSON.stringify(counts)); // create, 2 admits, 2 addresses, the write
    assert.ok(await c.pushes(0) > 0);
    assert.ok(await c.txBytes(0) > 0);
    const rss = await c.rss(2);
    assert.ok(rss > 10 << 20 && rss < 2 * 1024 ** 3, String(rss));
    // Node 2 alone, cut off: a change on 0 reaches 1 but not 2 until the heal.
    await c.partition([2]);
    await c.write(0, 'cut.txt', 'x');
    await eventually('cut.txt on 1', async () => (await c.list(1)).includes('cut.txt'));
    assert.ok(!(await c.list(2)).includes('cut.txt'));
    await c.heal([2]);
    await eventually('cut.txt on 2 after the heal', async () => (await c.list(2)).includes('cut.txt'), 60_000);
    await c.converged();
  } finally {
    await c.teardown();
  }
  for (const p of pids) assert.ok(!alive(p), `pid ${p} still runs`);
  const mounts = await readFile('/proc/mounts', 'utf8');
  for (const m of mnts) assert.ok(!mounts.includes(m), `${m} still mounted`);
  assert.ok(!(await exec('ip', ['netns', 'list'])).stdout.includes(c.lan.id));
  await assert.rejects(stat(c.dir));
});

test('a failed start tears down what it made', { skip, timeout: 60_000 }, async () => {
  const ours = async () => (await exec('ip', ['netns', 'list'])).stdout.split('\n').filter((l) => l.startsWith(`dfsnet-${process.pid}-`));
  assert.deepEqual(await ours(), []);
  await assert.rejects(startCluster({ nodes: 2, subnet: '10.81.0', extra: ['--ssh-port', 'bogus'] }), /exited with 2 before ready/);
  assert.deepEqual(await ours(), []);
});

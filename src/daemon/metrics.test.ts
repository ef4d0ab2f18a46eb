// Prometheus metrics: the text format parsed back (names, types, labels, histogram rules), and a
// running mounted node's /metrics after real FUSE work: its counts match `delugefs status --json`.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs/promises';
import { join } from 'node:path';
import { freePort } from '../testing/free-port.js';
import { sandbox, runCli, Sandbox } from '../testing/node-proc.js';
import { FuseMetrics, renderMetrics, FUSE_BUCKETS } from './metrics.js';
import { request } from 'node:http';
import { judgeHealth } from './health.js';

let sb: Sandbox | undefined;
after(async () => {
  await sb?.cleanup();
});

interface Sample { name: string; labels: Record<string, string>; value: number }

/** Parses the exposition format strictly enough to catch what Prometheus would refuse. */
function parse(text: string): { types: Map<string, string>; samples: Sample[] } {
  const types = new Map<string, string>();
  const samples: Sample[] = [];
  assert.ok(text.endsWith('\n'), 'ends with a newline');
  for (const line of text.trimEnd().split('\n')) {
    if (line.startsWith('# HELP ')) continue;
    const t = /^# TYPE (\S+) (counter|gauge|histogram)$/.exec(line);
    if (t) {
      assert.ok(!types.has(t[1]!), `${t[1]} typed twice`);
      types.set(t[1]!, t[2]!);
      continue;
    }
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$/.exec(line);
    assert.ok(m, `not a sample line: ${line}`);
    const labels: Record<string, string> = {};
    for (const l of (m[2] ?? '').match(/[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\]|\\.)*"/g) ?? []) {
      const i = l.indexOf('=');
      labels[l.slice(0, i)] = l.slice(i + 2, -1);
    }
    const v = m[3] === '+Inf' ? Infinity : Number(m[3]);
    assert.ok(!Number.isNaN(v), `value of ${line}`);
    samples.push({ name: m[1]!, labels, value: v });
  }
  for (const s of samples) {
    assert.match(s.name, /^delugefs_[a-z_]+$/, 'delugefs_ prefix, snake case');
    const base = s.name.replace(/_(bucket|sum|count)$/, '');
    const type = types.get(s.name) ?? types.get(base);
    assert.ok(type, `${s.name} has no TYPE`);
    if (type === 'counter') assert.match(s.name, /_total$/, `counter ${s.name} ends in _total`);
  }
  return { types, samples };
}

const health = judgeHealth({
  cluster: 'c', nodeId: 'aaaaaaaaaaaaaaaa', head: null, members: ['aaaaaaaaaaaaaaaa', 'bbbbbbbbbbbbbbbb'],
  round: { at: 0, copies: 2, ids: 5, under: 2, lost: 1, waiting: [], disks: [{ node: 'bbbbbbbbbbbbbbbb', machine: 'b"\\x', zone: '', total: 100, free: 40, state: 'down' } as never] },
  nearFull: 0.85, fetching: 1, queued: 2, sync: { bbbbbbbbbbbbbbbb: { behind: 3, failures: 2, pushes: 1 } },
  namespace: { files: 4, dirs: 1, bytes: 99, conflicts: 0 },
});

test('the exposition format: types, _total counters, escaped labels, cumulative histogram buckets', () => {
  const fuse = new FuseMetrics();
  for (const s of [0.00005, 0.0003, 0.0003, 0.02, 3, 60]) fuse.observe(15, s, 0);
  fuse.observe(1, 0.0001, 2);
  const text = renderMetrics({
    node: 'aaaaaaaaaaaaaaaa', machine: 'm', health, disk: { total: 1000, free: 250 }, swarm: { connections: 2, downloaded: 10, uploaded: 20 },
    replication: { fetching: 1, queued: 2, scrubBytes: 0, scrubBad: 0 }, commits: 3, merges: 4, fuse,
  });
  const { samples } = parse(text);
  const get = (name: string, labels: Record<string, string> = {}) => samples.filter((s) => s.name === name && Object.entries(labels).every(([k, v]) => s.labels[k] === v));
  assert.equal(get('delugefs_health_status')[0]!.value, 2);
  assert.equal(get('delugefs_content_lost')[0]!.value, 1);
  assert.equal(get('delugefs_disk_free_bytes', { node: 'aaaaaaaaaaaaaaaa' })[0]!.value, 250);
  assert.equal(get('delugefs_disk_free_bytes', { node: 'bbbbbbbbbbbbbbbb' })[0]!.labels.machine, 'b\\"\\\\x', 'label value escaped');
  assert.equal(get('delugefs_sync_behind', { peer: 'bbbbbbbbbbbbbbbb' })[0]!.value, 3);
  const buckets = get('delugefs_fuse_request_duration_seconds_bucket', { op: 'read' });
  assert.equal(buckets.length, FUSE_BUCKETS.length + 1);
  for (let i = 1; i < buckets.length; i++) assert.ok(buckets[i]!.value >= buckets[i - 1]!.value, 'buckets are cumulative');
  assert.deepEqual([buckets[0]!.value, buckets.at(-1)!.labels.le, buckets.at(-1)!.value], [1, '+Inf', 6]);
  assert.equal(get('delugefs_fuse_request_duration_seconds_count', { op: 'read' })[0]!.value, 6);
  assert.equal(get('delugefs_fuse_errors_total', { op: 'lookup' })[0]!.value, 1);
});

test('a mounted node serves /metrics on 127.0.0.1: FUSE work counted by operation, the same counts as status', { timeout: 120_000 }, async () => {
  sb = await sandbox('dfs-metrics');
  const port = await freePort();
  const node = await sb.start(['--web-port', String(port)], { create: true });
  assert.match(node.stderr(), new RegExp(`"web\\.listening".*"bind":"127\\.0\\.0\\.1","port":${port}`));
  for (let i = 0; i < 5; i++) await fs.writeFile(join(sb.mnt, `f${i}`), Buffer.alloc(100_000, i));
  await fs.mkdir(join(sb.mnt, 'd'));
  for (let i = 0; i < 5; i++) await fs.readFile(join(sb.mnt, `f${i}`));
  await fs.stat(join(sb.mnt, 'nothing-here')).catch(() => {});
  const url = `http://127.0.0.1:${port}/metrics`;
  const res = await fetch(url);
  assert.equal(res.status, 200);
  assert.match(res.headers.get('content-type') ?? '', /^text\/plain; version=0\.0\.4/);
  const { types, samples } = parse(await res.text());
  const one = (name: string, labels: Record<string, string> = {}) => samples.find((s) => s.name === name && Object.entries(labels).every(([k, v]) => s.labels[k] === v))?.value;
  assert.equal(types.get('delugefs_fuse_request_duration_seconds'), 'histogram');
  assert.ok((one('delugefs_fuse_requests_total', { op: 'create' }) ?? 0) >= 5, 'creates counted');
  assert.ok((one('delugefs_fuse_requests_total', { op: 'write' }) ?? 0) >= 5, 'writes counted');
  assert.ok((one('delugefs_fuse_requests_total', { op: 'mkdir' }) ?? 0) >= 1, 'mkdir counted');
  assert.ok((one('delugefs_fuse_errors_total', { op: 'lookup' }) ?? 0) >= 1, 'the failed lookup counted');
  assert.ok((one('delugefs_disk_size_bytes', { node: String(node.ready.node) }) ?? 0) > 0);
  assert.ok((one('delugefs_commits_total') ?? -1) >= 0);
  // The same numbers as `delugefs status --json`.
  const st = JSON.parse((await runCli(['status', sb.root, '--json'])).out);
  assert.equal(one('delugefs_namespace_files'), st.namespace.files);
  assert.equal(one('delugefs_namespace_directories'), st.namespace.dirs);
  assert.equal(one('delugefs_namespace_file_bytes'), st.namespace.bytes);
  assert.equal(one('delugefs_namespace_files'), 5);
  // Read-only: other paths 404, other methods 405 (the dashboard at / is web/dashboard.test.ts').
  assert.equal((await fetch(`http://127.0.0.1:${port}/nothing`)).status, 404);
  assert.equal((await fetch(url, { method: 'POST', body: 'x' })).status, 405);
  // On loopback a foreign Host is refused (a DNS-rebinding page would read the labels: names, ids).
  const hostStatus = (host: string) => new Promise<number>((resolve, reject) => {
    request({ host: '127.0.0.1', port, path: '/metrics', headers: { host } }, (r) => { r.resume(); resolve(r.statusCode!); }).on('error', reject).end();
  });
  assert.equal(await hostStatus(`attacker.example:${port}`), 421);
  assert.equal(await hostStatus(`localhost:${port}`), 200);
  assert.equal(await node.stop(), 0);
  await assert.rejects(fetch(url), 'still listening after stop');
});

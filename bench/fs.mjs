#!/usr/bin/env node
// Single-node filesystem benchmark: each operation through a DelugeFS mount and directly on the
// root's disk in the same run, printed as ratios. Not a test: timing never decides pass/fail.
// Usage: node bench/fs.mjs [--size-mib 1024] [--files 2000] [--stats 20000] [--entries 100000] [--passthrough] [--json]
// (--passthrough: the node runs with --passthrough, so reads of its verified local content go to the kernel)
import { spawn, spawnSync } from 'node:child_process';
import { mkdtemp, mkdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { sandbox } from '../dist/testing/node-proc.js';
import { Namespace } from '../dist/meta/namespace.js';
import { infoHash, pieceLengthFor } from '../dist/content/metainfo.js';
import { silentLogger } from '../dist/util/log.js';
import { paths, createLayout } from '../dist/node/layout.js';

const arg = (name, def) => {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 ? Number(process.argv[i + 1]) : def;
};
const SIZE_MIB = arg('size-mib', 1024);
const FILES = arg('files', 2000);
const STATS = arg('stats', 20000);
const ENTRIES = arg('entries', 100000);
const JSON_OUT = process.argv.includes('--json');
const NODE_FLAGS = process.argv.includes('--passthrough') ? ['--passthrough'] : [];

// Work runs in a separate process: this one never touches the mount synchronously.
const WORKER = `
const fs = require('fs'), path = require('path');
const [op, dir, n] = [process.argv[1], process.argv[2], Number(process.argv[3])];
const t0 = process.hrtime.bigint();
const el = () => Number(process.hrtime.bigint() - t0) / 1e9;
if (op === 'write' || op === 'write-fsync') {
  const buf = Buffer.alloc(1 << 20); for (let i = 0; i < buf.length; i += 4) buf.writeUInt32LE((i * 2654435761) >>> 0, i);
  const fd = fs.openSync(path.join(dir, 'big'), 'w');
  for (let i = 0; i < n; i++) { buf.writeUInt32LE(i, 0); fs.writeSync(fd, buf); }
  if (op === 'write-fsync') fs.fsyncSync(fd);
  fs.closeSync(fd);
} else if (op === 'read') {
  const buf = Buffer.alloc(1 << 20); const fd = fs.openSync(path.join(dir, 'big'), 'r');
  let pos = 0, r; while ((r = fs.readSync(fd, buf, 0, buf.length, pos)) > 0) pos += r;
  fs.closeSync(fd);
} else if (op === 'create') {
  const buf = Buffer.alloc(4096, 7); fs.mkdirSync(path.join(dir, 'small'), { recursive: true });
  for (let i = 0; i < n; i++) fs.writeFileSync(path.join(dir, 'small', 'f' + i), buf);
} else if (op === 'stat' || op === 'stat-cold' || op === 'stat-names') {
  // After the kernel's caches expired, each file once: stat-cold lists the directory first, as
  // ls -l does (the listing brings the attributes); stat-names stats names it already knows
  // (one lookup round trip each). stat: n stats cycling over the files.
  const names = op === 'stat-names'
    ? Array.from({ length: n }, (_, i) => path.join(dir, 'small', 'f' + i))
    : fs.readdirSync(path.join(dir, 'small')).map((f) => path.join(dir, 'small', f));
  const count = op === 'stat' ? n : names.length;
  const t1 = process.hrtime.bigint();
  for (let i = 0; i < count; i++) fs.statSync(names[i % names.length]);
  console.log(JSON.stringify({ s: Number(process.hrtime.bigint() - t1) / 1e9 })); process.exit(0);
}
console.log(JSON.stringify({ s: el() }));
`;

function work(op, dir, n) {
  const r = spawnSync(process.execPath, ['-e', WORKER, op, dir, String(n)], { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`${op} in ${dir} failed: ${r.stderr}`);
  return JSON.parse(r.stdout.trim().split('\n').pop()).s;
}
/** n operations split over k processes in separate directories; wall time of the whole. */
async function parallel(op, dir, n, k) {
  const t0 = process.hrtime.bigint();
  await Promise.all(Array.from({ length: k }, (_, i) => new Promise((resolve, reject) => {
    const sub = join(dir, `par${i}`);
    const p = spawn(process.execPath, ['-e', WORKER, op, sub, String(Math.ceil(n / k))], { stdio: ['ignore', 'ignore', 'pipe'] });
    let err = '';
    p.stderr.on('data', (b) => (err += b));
    p.on('close', (c) => (c === 0 ? resolve() : reject(new Error(`${op} in ${sub} failed: ${err}`))));
  })));
  return Number(process.hrtime.bigint() - t0) / 1e9;
}
const dropCaches = () => spawnSync('sh', ['-c', 'sync; echo 3 > /proc/sys/vm/drop_caches']);

const results = [];
function report(name, mount, direct, unit, target, higherIsBetter = true) {
  const ratio = higherIsBetter ? mount / direct : direct / mount;
  results.push({ name, mount, direct, unit, ratio, target });
  if (!JSON_OUT) {
    const f = (v) => (v >= 100 ? v.toFixed(0) : v.toFixed(2));
    console.log(`${name.padEnd(34)} mount ${f(mount).padStart(8)} ${unit.padEnd(8)} direct ${f(direct).padStart(8)} ${unit.padEnd(8)} ratio ${ratio.toFixed(2)}x  (target ${target})`);
  }
}

const sb = await sandbox('dfs-bench');
try {
  let node = await sb.start(NODE_FLAGS, { create: true });
  const direct = join(sb.dir, 'direct');
  await mkdir(direct);
  const mib = SIZE_MIB;

  // Alternate the two sides and keep the best of three: this machine's page cache speed drifts
  // a lot between runs, and both sides should see the same conditions. Each write run makes a
  // new file after the same preparation on both sides: the previous one removed (on the mount
  // its content goes with the next commit, within a second), a pause, then no dirty pages left.
  // Why: on this VM, writing into page cache pages freed moments ago runs at ~5 GB/s, into pages
  // the kernel already handed back to the hypervisor at ~1 GB/s, and past the dirty threshold
  // at the disk's ~0.4 GB/s; overwriting in place (O_TRUNC) would give only the direct side the
  // fast case, since a DelugeFS overwrite keeps the old version until the new one is committed.
  const prepare = async (dir) => {
    await rm(join(dir, 'big'), { force: true });
    await new Promise((r) => setTimeout(r, 1500));
    spawnSync('sync');
  };
  const best = async (op, n = 3) => {
    let m = Infinity, d = Infinity;
    for (let i = 0; i < n; i++) {
      if (op.startsWith('write')) await prepare(sb.mnt);
      m = Math.min(m, work(op, sb.mnt, mib));
      if (op.startsWith('write')) await prepare(direct);
      d = Math.min(d, work(op, direct, mib));
    }
    return [m, d];
  };
  const [wm, wd] = await best('write');
  report(`sequential write ${mib} MiB`, mib / wm, mib / wd, 'MiB/s', '>= 0.25x');
  const [wsm, wsd] = await best('write-fsync', 2);
  report(`sequential write+fsync ${mib} MiB`, mib / wsm, mib / wsd, 'MiB/s', 'none');

  work('read', sb.mnt, 0); // warm the page cache
  work('read', direct, 0);
  const [rm_, rd] = await best('read');
  report(`sequential read ${mib} MiB (warm)`, mib / rm_, mib / rd, 'MiB/s', '>= 0.5x');

  dropCaches();
  const cm = work('read', sb.mnt, 0);
  dropCaches();
  const cd = work('read', direct, 0);
  report(`sequential read ${mib} MiB (cold)`, mib / cm, mib / cd, 'MiB/s', 'none');

  // The first read of a run is verified on read (every piece hashed before it is returned); the
  // same cold read after a restart with verification and without it, against the raw disk's.
  const firstRead = async (extra) => {
    await node.stop();
    node = await sb.start([...NODE_FLAGS, ...extra]);
    dropCaches();
    return work('read', sb.mnt, 0);
  };
  const vOn = await firstRead([]);
  report(`first read ${mib} MiB, verified (cold)`, mib / vOn, mib / cd, 'MiB/s', 'none');
  const vOff = await firstRead(['--no-verify-reads']);
  report(`first read ${mib} MiB, --no-verify-reads (cold)`, mib / vOff, mib / cd, 'MiB/s', 'none');
  node = await (async () => { await node.stop(); return sb.start(NODE_FLAGS); })();

  const crm = work('create', sb.mnt, FILES);
  const crd = work('create', direct, FILES);
  report(`4 KiB file creates (${FILES}, 1 writer)`, FILES / crm, FILES / crd, 'files/s', '>= 1000/s');
  // Four writers at once: FUSE round trips overlap (each create is ~4 of them).
  const cpm = await parallel('create', sb.mnt, FILES, 4);
  const cpd = await parallel('create', direct, FILES, 4);
  report(`4 KiB file creates (${FILES}, 4 writers)`, FILES / cpm, FILES / cpd, 'files/s', '>= 1000/s');

  const expire = () => new Promise((r) => setTimeout(r, 1500)); // the kernel's 1 s name and attribute cache
  await expire();
  const snm = work('stat-names', sb.mnt, FILES);
  const snd = work('stat-names', direct, FILES);
  report(`stat by name, uncached (${FILES})`, FILES / snm, FILES / snd, 'stats/s', '>= 10000/s');
  await expire();
  const scm = work('stat-cold', sb.mnt, 0);
  const scd = work('stat-cold', direct, 0);
  report(`list + stat, uncached (${FILES})`, FILES / scm, FILES / scd, 'stats/s', '>= 10000/s');
  const sm = work('stat', sb.mnt, STATS);
  const sd = work('stat', direct, STATS);
  report(`stat, repeated (${STATS} over ${FILES})`, STATS / sm, STATS / sd, 'stats/s', '>= 10000/s');
} finally {
  await sb.cleanup();
}

// Restart of a node whose namespace has ENTRIES entries, built through the namespace API.
const dir = await mkdtemp(join(tmpdir(), 'dfs-bench-restart-'));
try {
  const root = join(dir, 'root');
  const p = paths(root);
  const config = await createLayout(p, 'testc');
  const attrs = { mode: 0o644, uid: 0, gid: 0, mtime: Date.now(), ctime: Date.now() };
  const ns = await Namespace.create({ dir: p.meta, nodeId: config.nodeId, log: silentLogger, idleMs: 1e9, maxDelayMs: 1e9 },
    { type: 'dir', ...attrs, mode: 0o755 }, 'create');
  const perDir = 1000;
  for (let d = 0; d < ENTRIES / perDir; d++) {
    ns.apply({ o: 'put', p: `/d${d}`, e: { type: 'dir', ...attrs, mode: 0o755 } });
    for (let i = 0; i < perDir; i++) {
      const pieces = Buffer.alloc(20, (d * perDir + i) % 251);
      const info = { length: 1000 + i, pieceLength: pieceLengthFor(1000), pieces };
      ns.apply({ o: 'put', p: `/d${d}/f${i}`, e: { type: 'file', ...attrs, info, id: infoHash(info) } });
    }
  }
  await ns.close();
  const sb2 = { root };
  const t0 = Date.now();
  const proc = spawn(process.execPath, [new URL('../dist/cli/main.js', import.meta.url).pathname, 'testc', sb2.root, '--json', '--port', '17100'], { stdio: ['ignore', 'pipe', 'pipe'] });
  await new Promise((resolve, reject) => {
    proc.stdout.on('data', (b) => b.toString().includes('"ready"') && resolve());
    proc.on('exit', (c) => reject(new Error(`node exited ${c}`)));
  });
  const restart = (Date.now() - t0) / 1000;
  proc.kill('SIGTERM');
  await new Promise((r) => proc.on('exit', r));
  results.push({ name: `restart with ${ENTRIES} entries`, mount: restart, unit: 's', target: '<= 10 s' });
  if (!JSON_OUT) console.log(`${`restart with ${ENTRIES} entries`.padEnd(34)} ${restart.toFixed(2)} s  (target <= 10 s)`);
} finally {
  await rm(dir, { recursive: true, force: true });
}
if (JSON_OUT) console.log(JSON.stringify(results));

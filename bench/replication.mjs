#!/usr/bin/env node
// Replication benchmark (issue 10), nodes as processes in network namespaces (src/testing/cluster.ts),
// each on a machine of its own (UTS namespace), mounted.
// 1) remote read: --size MiB written on node 0 with copies=1 (so only node 0 holds it), read
//    sequentially through node 1's mount, against the same read through node 0's mount (the
//    content local), both cold (page cache dropped). Target >= 0.5x, aim 0.8x.
// 2) first byte of remote files: --first files of 1 MiB on node 0, the first 4 KiB read through
//    node 1's mount (p50, p90). Target p50 <= 50 ms.
// 3) healing: copies=2 over three nodes, --heal-files files totalling --heal MiB; node 1 killed
//    with -9; from the moment it counts as down (--dead-after after the kill) until every file is
//    on two live disks again, as throughput against the remote-read rate of 1) (the raw transfer
//    rate of this wire in the same run). Target >= 0.5x.
// Not a test: numbers are printed, never judged. Needs root. Run `npm run build` first.
// Usage: node bench/replication.mjs [--size 1024] [--first 20] [--heal 2048] [--heal-files 100] [--json]
// (--size 0 or --heal-files 0 skips that part; DFS_CLUSTER_NODE_FLAGS="--cpu-prof ..." profiles the nodes)
import { mkdir, open, writeFile } from 'node:fs/promises';
import { createReadStream, createWriteStream } from 'node:fs';
import { randomFillSync } from 'node:crypto';
import { join } from 'node:path';
import { once } from 'node:events';
import { startCluster } from '../dist/testing/cluster.js';

const arg = (name, def) => {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 ? Number(process.argv[i + 1]) : def;
};
const SIZE = arg('size', 1024);
const FIRST = arg('first', 20);
const HEAL = arg('heal', 2048);
const HEAL_FILES = arg('heal-files', 100);
const DEAD_AFTER_S = 3;
const JSON_OUT = process.argv.includes('--json');
const MiB = 1 << 20;
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const now = () => performance.now();
const pct = (xs, p) => [...xs].sort((a, b) => a - b)[Math.min(xs.length - 1, Math.floor((p / 100) * xs.length))];
const say = (s) => { if (!JSON_OUT) process.stderr.write(s + '\n'); };
const dropCaches = () => writeFile('/proc/sys/vm/drop_caches', '3\n').catch(() => {});

async function until(what, fn, ms = 600_000, every = 100) {
  const end = Date.now() + ms;
  while (!(await fn())) {
    if (Date.now() > end) throw new Error(`timed out: ${what}`);
    await sleep(every);
  }
}

/** Writes `mib` MiB of random bytes to path (in 4 MiB chunks: never the whole file in memory). */
async function writeRandom(path, mib) {
  await mkdir(join(path, '..'), { recursive: true });
  const out = createWriteStream(path);
  const chunk = Buffer.alloc(4 * MiB);
  for (let left = mib * MiB; left > 0; left -= chunk.length) {
    randomFillSync(chunk);
    if (!out.write(left >= chunk.length ? chunk : chunk.subarray(0, left))) await once(out, 'drain');
  }
  out.end();
  await once(out, 'close');
}

async function readAll(path) {
  const t0 = now();
  let n = 0;
  for await (const b of createReadStream(path, { highWaterMark: MiB })) n += b.length;
  return { bytes: n, s: (now() - t0) / 1000 };
}

async function held(c, i) {
  const ids = new Set();
  let after = null;
  for (;;) {
    const r = await c.rpc(i, 'active_torrents', { after });
    for (const h of r.items) if (h.complete) ids.add(h.id);
    if (!r.next) return ids;
    after = r.next;
  }
}

const out = {};
if (SIZE > 0) {
  say(`remote read: ${SIZE} MiB on node 0 only, read through node 1's mount`);
  const c = await startCluster({ nodes: 2, mount: true, subnet: '10.87.0', machines: ['alpha', 'beta'], settle: 'heads', extra: ['--audit-every', '2s'] });
  try {
    await c.rpc(0, 'replication_config', { copies: 1 });
    await c.converged(60_000);
    await writeRandom(join(c.nodes[0].mnt, 'big.bin'), SIZE);
    for (let k = 0; k < FIRST; k++) await writeRandom(join(c.nodes[0].mnt, `first/f${k}.bin`), 1);
    await c.converged(120_000);
    await dropCaches();
    const local = await readAll(join(c.nodes[0].mnt, 'big.bin'));
    await until('node 1 lists big.bin', async () => (await c.list(1, '/')).includes('big.bin'));
    await dropCaches();
    const remote = await readAll(join(c.nodes[1].mnt, 'big.bin'));
    if (remote.bytes !== SIZE * MiB) throw new Error(`read ${remote.bytes} bytes`);
    out.local_MBps = +(SIZE * MiB / 1e6 / local.s).toFixed(1);
    out.remote_MBps = +(SIZE * MiB / 1e6 / remote.s).toFixed(1);
    out.remote_vs_local = +(local.s / remote.s).toFixed(2);
    say(`  local ${out.local_MBps} MB/s, remote ${out.remote_MBps} MB/s: ${out.remote_vs_local}x (target >= 0.5x, aim 0.8x)`);
    const firsts = [];
    for (let k = 0; k < FIRST; k++) {
      const t0 = now();
      const fh = await open(join(c.nodes[1].mnt, `first/f${k}.bin`), 'r');
      await fh.read(Buffer.alloc(4096), 0, 4096, 0);
      firsts.push(now() - t0);
      await fh.close();
    }
    if (firsts.length) {
      out.first_byte_ms = { p50: +pct(firsts, 50).toFixed(1), p90: +pct(firsts, 90).toFixed(1) };
      say(`  first 4 KiB of a remote 1 MiB file: p50 ${out.first_byte_ms.p50} ms, p90 ${out.first_byte_ms.p90} ms (target p50 <= 50 ms)`);
    }
  } finally {
    await c.teardown();
  }
}
if (HEAL_FILES > 0) {
  say(`healing: ${HEAL} MiB in ${HEAL_FILES} files, copies=2 on three machines, node 1 killed`);
  const c = await startCluster({ nodes: 3, mount: true, subnet: '10.88.0', machines: ['alpha', 'beta', 'gamma'], settle: 'heads', extra: ['--dead-after', `${DEAD_AFTER_S}s`, '--audit-every', '1s'] });
  try {
    const per = Math.max(1, Math.round(HEAL / HEAL_FILES));
    for (let k = 0; k < HEAL_FILES; k++) await writeRandom(join(c.nodes[0].mnt, `h/f${k}.bin`), per);
    await c.converged(120_000);
    const twice = async (nodes) => {
      const h = await Promise.all(nodes.map((i) => held(c, i)));
      const count = new Map();
      for (const s of h) for (const id of s) count.set(id, (count.get(id) ?? 0) + 1);
      return count.size === HEAL_FILES && [...count.values()].every((n) => n === 2) ? h : null;
    };
    let placed;
    await until('every file on two disks', async () => (placed = await twice([0, 1, 2])));
    const lostBytes = placed[1].size * per * MiB;
    await c.kill9(1);
    const down = Date.now() + DEAD_AFTER_S * 1000;
    await until('every file on two live disks', async () => !!(await twice([0, 2])), 900_000, 200);
    const s = (Date.now() - down) / 1000;
    out.heal = { files_copied: placed[1].size, MB: +(lostBytes / 1e6).toFixed(0), s: +s.toFixed(1), MBps: +(lostBytes / 1e6 / s).toFixed(1) };
    out.heal_vs_raw = out.remote_MBps ? +(out.heal.MBps / out.remote_MBps).toFixed(2) : null;
    say(`  ${out.heal.files_copied} files (${out.heal.MB} MB) copied again in ${out.heal.s} s after dead-after: ${out.heal.MBps} MB/s, ${out.heal_vs_raw}x the remote-read rate (target >= 0.5x)`);
  } finally {
    await c.teardown();
  }
}
if (JSON_OUT) process.stdout.write(JSON.stringify(out) + '\n');

#!/usr/bin/env node
// Swarm benchmark (run `npm run build` first): engines in child processes over loopback.
//  1. 1 GiB, one engine to another (members: TLS 1.3), against libtorrent to libtorrent
//     (plaintext) on the same file and link: the ratio of throughputs and CPU seconds per GiB (both
//     ends together). Our engine also runs plaintext (an outsider fetching shared content) from
//     the same seeder: the difference in CPU per GiB is what the member channel's cipher costs.
//  2. 1 GiB from two seeders at once against one.
//  3. p50 latency of a 1 MiB range in the middle of a 1 GiB file not yet fetched.
// Usage: node bench/swarm.mjs [--size MiB] [--runs N] [--samples N]
import { mkdtemp, rm, mkdir, writeFile, link, open } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { startEngine } from '../dist/swarm/testing/harness.js';
import { haveLibtorrent, startLt } from '../dist/swarm/testing/libtorrent.js';

const arg = (name, def) => {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 ? Number(process.argv[i + 1]) : def;
};
const SIZE = arg('size', 1024) * 1024 * 1024;
const RUNS = arg('runs', 2);
const SAMPLES = arg('samples', 15);
const GiB = 1024 ** 3;
const dir = await mkdtemp(join(tmpdir(), 'dfs-bench-'));
const procs = [];
const engine = async (a) => { const e = await startEngine(a); procs.push(e); return e; };
const cpuOf = async (e) => (await e.call('usage')).cpu;
const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
const fmt = (x, d = 2) => x.toFixed(d);
// On this VM the first write into memory the guest has just handed back to the host (freed page
// cache is reported back by the balloon within seconds) costs ~1.5 s of system time per GiB more
// than writing into pages freed a moment ago. Every measured fetch starts right after SIZE bytes
// were written and deleted, so each engine meets the same memory.
const warm = async () => {
  const w = await open(join(dir, 'warm'), 'w');
  const z = Buffer.alloc(64 << 20, 1);
  for (let o = 0; o < SIZE; o += z.length) await w.write(z, 0, Math.min(z.length, SIZE - o));
  await w.close();
  await rm(join(dir, 'warm'));
};

try {
  // The file: random bytes, written in chunks.
  const file = join(dir, 'f');
  const fh = await open(file, 'w');
  for (let off = 0; off < SIZE; off += 64 << 20) await fh.write(randomBytes(Math.min(64 << 20, SIZE - off)));
  await fh.close();
  const seeder = await engine({ root: join(dir, 'seed') });
  const { id, torrent } = await seeder.call('add', { path: file, share: true });
  const tfile = join(dir, 't.torrent');
  await writeFile(tfile, Buffer.from(torrent, 'hex'));

  // 1. ours -> ours and libtorrent -> libtorrent, runs interleaved so both meet the machine in
  // the same state (on this VM, writes into memory the guest has not touched before cost far
  // more system time; every run's output is removed right after it).
  const ours = [];
  const plain = [];
  const lts = [];
  const lt = haveLibtorrent();
  let ls = null;
  if (lt) {
    await mkdir(join(dir, 'lt-seed'));
    await link(file, join(dir, 'lt-seed', 'content'));
    ls = await startLt(tfile, join(dir, 'lt-seed'), [], true);
    await ls.next('done');
  } else console.log('libtorrent -> lt: skipped (python3-libtorrent not installed)');
  for (let r = 0; r < RUNS; r++) {
    const b = await engine({ root: join(dir, `ours-${r}`), peers: [`127.0.0.1:${seeder.port}`] });
    await warm();
    const [ca, cb] = [await cpuOf(seeder), await cpuOf(b)];
    const t0 = process.hrtime.bigint();
    await b.call('fetch', { torrent });
    const s = Number(process.hrtime.bigint() - t0) / 1e9;
    const cpu = (await cpuOf(seeder)) - ca + (await cpuOf(b)) - cb;
    ours.push({ s, cpu });
    console.log(`ours -> ours     run ${r + 1}: ${fmt(SIZE / s / 1e6, 0)} MB/s, ${fmt(cpu / (SIZE / GiB))} CPU s/GiB`);
    await b.stop();
    await rm(join(dir, `ours-${r}`), { recursive: true, force: true });
    const p = await engine({ root: join(dir, `plain-${r}`), plain: true, share: [id], peers: [`127.0.0.1:${seeder.port}`] });
    await warm();
    const [pa, pb] = [await cpuOf(seeder), await cpuOf(p)];
    const p0 = process.hrtime.bigint();
    await p.call('fetch', { torrent });
    const ps = Number(process.hrtime.bigint() - p0) / 1e9;
    const pcpu = (await cpuOf(seeder)) - pa + (await cpuOf(p)) - pb;
    plain.push({ s: ps, cpu: pcpu });
    console.log(`ours plaintext   run ${r + 1}: ${fmt(SIZE / ps / 1e6, 0)} MB/s, ${fmt(pcpu / (SIZE / GiB))} CPU s/GiB`);
    await p.stop();
    await rm(join(dir, `plain-${r}`), { recursive: true, force: true });
    if (!ls) continue;
    await mkdir(join(dir, `lt-${r}`));
    await warm();
    const c0 = await ls.cpu();
    const lb = await startLt(tfile, join(dir, `lt-${r}`), [`127.0.0.1:${ls.port}`], true);
    const d = await lb.next('done');
    const ltcpu = (await ls.cpu()) - c0 + (await lb.cpu());
    lts.push({ s: d.seconds, cpu: ltcpu });
    console.log(`libtorrent -> lt run ${r + 1}: ${fmt(SIZE / d.seconds / 1e6, 0)} MB/s, ${fmt(ltcpu / (SIZE / GiB))} CPU s/GiB`);
    await lb.stop();
    await rm(join(dir, `lt-${r}`), { recursive: true, force: true });
  }
  await ls?.stop();

  // A second seeder for 2: an engine with the content in its store.
  const fetched = await engine({ root: join(dir, 'seed2') });
  await fetched.call('add', { path: file });

  // 2. two seeders -> one
  const two = [];
  for (let r = 0; r < RUNS; r++) {
    const d = await engine({ root: join(dir, `two-${r}`), peers: [`127.0.0.1:${seeder.port}`, `127.0.0.1:${fetched.port}`] });
    await warm();
    const t0 = process.hrtime.bigint();
    await d.call('fetch', { torrent });
    const s = Number(process.hrtime.bigint() - t0) / 1e9;
    two.push(s);
    console.log(`two seeders -> one run ${r + 1}: ${fmt(SIZE / s / 1e6, 0)} MB/s`);
    await d.stop();
    await rm(join(dir, `two-${r}`), { recursive: true, force: true });
  }

  // 3. latency of a 1 MiB range in the middle of unfetched content: a running engine (default
  // settings, connected by a first read at the start), ranges spaced wider than its read-ahead,
  // each one after the previous read-ahead settled. The first read (cold process, connect) is
  // reported apart.
  const e = await engine({ root: join(dir, 'lat'), peers: [`127.0.0.1:${seeder.port}`] });
  const cold = (await e.call('read', { torrent, start: 0, end: 1024 * 1024 })).ms;
  await e.call('idle', { id });
  // And the first read of content this running engine has never opened (new connections and
  // handshakes for it): a second, smaller file.
  const file2 = join(dir, 'f2');
  await writeFile(file2, randomBytes(64 << 20));
  const second = await seeder.call('add', { path: file2 });
  const fresh = (await e.call('read', { torrent: second.torrent, start: 32 << 20, end: (32 << 20) + (1 << 20) })).ms;
  const lat = [];
  const span = Math.floor((SIZE / 2) / SAMPLES);
  for (let i = 0; i < SAMPLES; i++) {
    const start = Math.floor(SIZE / 4) + i * span + 12345;
    const r = await e.call('read', { torrent, start, end: start + 1024 * 1024 });
    lat.push(r.ms);
    await e.call('idle', { id });
  }

  const best = (xs) => Math.min(...xs.map((x) => x.s));
  const oursRate = SIZE / best(ours) / 1e6;
  console.log('\nsummary');
  const cpuTls = median(ours.map((x) => x.cpu)) / (SIZE / GiB);
  const cpuPlain = median(plain.map((x) => x.cpu)) / (SIZE / GiB);
  // Under load every run's CPU is inflated by contention: the least CPU of each kind is the cleaner difference.
  const least = (xs) => Math.min(...xs.map((x) => x.cpu)) / (SIZE / GiB);
  console.log(`  ours -> ours (TLS)  ${fmt(oursRate, 0)} MB/s (best of ${RUNS}), ${fmt(cpuTls)} CPU s/GiB`);
  console.log(`  ours plaintext      ${fmt(SIZE / best(plain) / 1e6, 0)} MB/s (best of ${RUNS}), ${fmt(cpuPlain)} CPU s/GiB`);
  console.log(`  cipher cost         ${fmt(least(ours) - least(plain))} CPU s/GiB (both ends, least TLS - least plaintext; medians ${fmt(cpuTls - cpuPlain)})`);
  if (lts.length) {
    const ltRate = SIZE / best(lts) / 1e6;
    console.log(`  libtorrent -> lt    ${fmt(ltRate, 0)} MB/s (best of ${RUNS}), ${fmt(median(lts.map((x) => x.cpu)) / (SIZE / GiB))} CPU s/GiB`);
    console.log(`  ratio ours(TLS)/lt  ${fmt(oursRate / ltRate)}x`);
  }
  console.log(`  two seeders -> one  ${fmt(SIZE / Math.min(...two) / 1e6, 0)} MB/s (${fmt(best(ours) / Math.min(...two))}x one seeder)`);
  console.log(`  1 MiB range latency p50 ${fmt(median(lat), 1)} ms (min ${fmt(Math.min(...lat), 1)}, max ${fmt(Math.max(...lat), 1)}, ${SAMPLES} samples); first read of other content on the running engine ${fmt(fresh, 1)} ms; first read of a fresh process ${fmt(cold, 1)} ms`);
} finally {
  await Promise.all(procs.map((p) => p.stop()));
  await rm(dir, { recursive: true, force: true });
}

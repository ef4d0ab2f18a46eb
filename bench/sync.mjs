#!/usr/bin/env node
// Metadata sync benchmark: two nodes on loopback (no mDNS, no other network), both mounted.
// 1) latency: time from close() of a new file on A's mount to the file listed on B's mount,
//    over --files files written one after another (p50, p90, max);
// 2) burst: --burst files written on A (16 at a time) until all are listed on B.
// Not a test: the numbers are printed, never judged. Needs root (FUSE). Run `npm run build` first.
// Usage: node bench/sync.mjs [--files 50] [--burst 1000] [--json]
import { spawnSync } from 'node:child_process';
import { readdir, writeFile, mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { sandbox, CLI } from '../dist/testing/node-proc.js';

const arg = (name, def) => {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 ? Number(process.argv[i + 1]) : def;
};
const FILES = arg('files', 50);
const BURST = arg('burst', 1000);
const JSON_OUT = process.argv.includes('--json');
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const now = () => performance.now();
const pct = (xs, p) => [...xs].sort((a, b) => a - b)[Math.min(xs.length - 1, Math.floor((p / 100) * xs.length))];

async function until(what, fn, ms = 120_000, every = 2) {
  const end = Date.now() + ms;
  while (!(await fn())) {
    if (Date.now() > end) throw new Error(`timed out: ${what}`);
    await sleep(every);
  }
}

const boxes = [await sandbox('dfs-sync-bench-a'), await sandbox('dfs-sync-bench-b')];
try {
  const [sa, sb] = boxes;
  // --interface lo: the nodes record and announce 127.0.0.1 only; --no-mdns comes from sandbox().
  const a = await sa.start(['--interface', 'lo', '--ssh-port', '17522'], { create: true });
  const inv = spawnSync(process.execPath, [CLI, 'invite', sa.root, '--ttl', '10m'], { encoding: 'utf8' });
  if (inv.status !== 0) throw new Error(`invite failed: ${inv.stderr}`);
  const b = await sb.start(['--interface', 'lo', '--ssh-port', '17522', '--join', inv.stdout.trim(), '--peer', `127.0.0.1:${a.ready.sshPort}`]);
  // Warm up: both sides have seen each other and synced once.
  await writeFile(join(sa.mnt, 'warmup'), 'x');
  await until('warm-up file on B', async () => (await readdir(sb.mnt)).includes('warmup'), 30_000);

  const lat = [];
  await mkdir(join(sa.mnt, 'lat'));
  await until('lat/ on B', async () => (await readdir(sb.mnt)).includes('lat'), 30_000);
  for (let i = 0; i < FILES; i++) {
    const name = `f${i}`;
    await writeFile(join(sa.mnt, 'lat', name), `file ${i}\n`); // resolves after close()
    const t0 = now();
    await until(`lat/${name} on B`, async () => (await readdir(join(sb.mnt, 'lat'))).includes(name), 30_000, 1);
    lat.push(now() - t0);
  }

  await mkdir(join(sa.mnt, 'burst'));
  await until('burst/ on B', async () => (await readdir(sb.mnt)).includes('burst'), 30_000);
  const t0 = now();
  let next = 0;
  await Promise.all(Array.from({ length: 16 }, async () => {
    while (next < BURST) {
      const i = next++;
      await writeFile(join(sa.mnt, 'burst', `b${i}`), `burst ${i}\n`);
    }
  }));
  const written = now() - t0;
  await until('burst on B', async () => (await readdir(join(sb.mnt, 'burst'))).length >= BURST, 300_000, 20);
  const listed = now() - t0;

  // Where the time goes, from the nodes' own log lines.
  const msOf = (log, event) => log.split('\n').filter((l) => l.includes(`"event":"${event}"`)).map((l) => JSON.parse(l).ms).filter((x) => typeof x === 'number');
  const pushes = msOf(a.stderr(), 'sync_pushed');
  const merges = msOf(b.stderr(), 'sync_merged');
  const r = {
    parts_ms: { push_p50: pct(pushes, 50), merge_p50: pct(merges, 50), pushes: pushes.length, merges: merges.length },
    latency_ms: { files: FILES, p50: +pct(lat, 50).toFixed(1), p90: +pct(lat, 90).toFixed(1), max: +Math.max(...lat).toFixed(1) },
    burst: { files: BURST, written_ms: Math.round(written), all_listed_on_b_ms: Math.round(listed), after_last_close_ms: Math.round(listed - written) },
  };
  if (JSON_OUT) console.log(JSON.stringify(r));
  else {
    console.log(`close() on A -> listed on B, ${FILES} files: p50 ${r.latency_ms.p50} ms, p90 ${r.latency_ms.p90} ms, max ${r.latency_ms.max} ms`);
    console.log(`parts: git push p50 ${r.parts_ms.push_p50} ms (${pushes.length} pushes), merge on B p50 ${r.parts_ms.merge_p50} ms (${merges.length} merges); the rest is A's commit batching (50 ms idle) and the 20 ms push debounce`);
    console.log(`burst of ${BURST} files: written on A in ${r.burst.written_ms} ms, all listed on B after ${r.burst.all_listed_on_b_ms} ms (${r.burst.after_last_close_ms} ms after the last close)`);
  }
  await b.stop();
  await a.stop();
} finally {
  for (const x of boxes) await x.cleanup();
}

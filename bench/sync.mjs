#!/usr/bin/env node
// Metadata sync benchmark: N nodes (default 2), each in a network namespace of its own on one
// bridge (src/testing/cluster.ts, no mDNS), mounted (or storage-only with --storage-only).
// 1) latency: time from close() of a new file on node 0 until every other node lists it, over
//    --files files written one after another (p50, p90, max), and what one change costs;
// 2) burst: --burst files written on node 0 (16 at a time) until every other node lists them all;
// 3) convergence: every node writes --conv files at the same time; time from the last close until
//    every node has one identical head, with pushes, bytes sent on eth0 and merge commits per change;
// 4) RSS per node 2 s after the last round settled, and again once idle 30 s (V8 and malloc give
//    memory back only a while after a burst).
// Not a test: the numbers are printed, never judged. Needs root (namespaces, FUSE). Run
// `npm run build` first. Storage-only nodes are written through `put` (the control socket) and
// listed from their committed tree.
// Usage: node bench/sync.mjs [--nodes 2] [--files 50] [--burst 1000] [--conv 20] [--rounds 1] [--storage-only] [--json]
// (--rounds R: step 3 again R-1 times, each in a new directory; from the second round on the nodes'
// code is compiled: in the first, V8's optimizing compiler was ~30 % of the nodes' CPU at 16 nodes)
import { startCluster } from '../dist/testing/cluster.js';
import { controlCall } from '../dist/cluster/control-socket.js';

const arg = (name, def) => {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 ? Number(process.argv[i + 1]) : def;
};
const NODES = arg('nodes', 2);
const FILES = arg('files', 50);
const BURST = arg('burst', 1000);
const CONV = arg('conv', 20);
const ROUNDS = arg('rounds', 1);
const STORAGE = process.argv.includes('--storage-only');
const JSON_OUT = process.argv.includes('--json');
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const now = () => performance.now();
const pct = (xs, p) => (xs.length ? [...xs].sort((a, b) => a - b)[Math.min(xs.length - 1, Math.floor((p / 100) * xs.length))] : null);
const r1 = (x) => (x === null ? null : +x.toFixed(1));
if (!(NODES >= 2 && NODES <= 32)) throw new Error('--nodes must be 2-32');

async function until(what, fn, ms = 120_000, every = 2) {
  const end = Date.now() + ms;
  while (!(await fn())) {
    if (Date.now() > end) throw new Error(`timed out: ${what}`);
    await sleep(every);
  }
}

const c = await startCluster({ nodes: NODES, mount: !STORAGE, subnet: '10.84.0', settle: 'members', settleMs: 120_000, joinConcurrency: 2 });
// ^C or a timeout's SIGTERM: the nodes, mounts and namespaces go too.
for (const sig of ['SIGINT', 'SIGTERM']) process.once(sig, () => void c.teardown().finally(() => process.exit(130)));
const all = c.nodes.map((n) => n.index);
const others = all.slice(1);
const sock = (i) => `${c.nodes[i].root}/control.sock`;
// Heads through the control socket: no process per poll.
const headOf = async (i) => (await controlCall(sock(i), 'status', null, 30_000)).head;
/** Until every node has one head (and `done()`, if given, holds); null ms when it never came. */
async function oneHead(ms, done = async () => true) {
  const t0 = now();
  let distinct = NODES;
  const end = Date.now() + ms;
  while (Date.now() < end) {
    const hs = await Promise.all(all.map(headOf));
    distinct = new Set(hs).size;
    if (distinct === 1 && (await done())) return { ms: now() - t0, at: now(), distinct };
    await sleep(20);
  }
  return { ms: null, at: null, distinct };
}
/** What the cluster spent (pushes, eth0 bytes) between two calls. */
async function counters() {
  let pushes = 0, tx = 0, own = 0, kids = 0;
  const { readFile } = await import('node:fs/promises');
  for (const i of all) {
    pushes += await c.pushes(i);
    tx += await c.txBytes(i);
    // CPU of the node process itself and of the processes it ran (git, ssh: counted once reaped).
    const f = (await readFile(`/proc/${c.nodes[i].pid}/stat`, 'utf8')).split(') ')[1].split(' ');
    own += Number(f[11]) + Number(f[12]);
    kids += Number(f[13]) + Number(f[14]);
  }
  return { pushes, tx, own, kids };
}
const r2 = (x) => +x.toFixed(2);
const TICK_MS = 10; // USER_HZ is 100 on Linux
const per = (a, b, changes) => ({
  pushes: r2((b.pushes - a.pushes) / changes), tx_bytes: Math.round((b.tx - a.tx) / changes), total_pushes: b.pushes - a.pushes, total_tx_bytes: b.tx - a.tx,
  cpu_ms: { nodes: Math.round(((b.own - a.own) * TICK_MS) / changes), their_processes: Math.round(((b.kids - a.kids) * TICK_MS) / changes) },
});
const listed = async (i, dir, name) => (await c.list(i, dir).catch(() => [])).includes(name);

const r = { nodes: NODES, mounted: !STORAGE, setup_ms: c.setupMs };
try {
  r.setup_one_head_ms = r1((await oneHead(60_000)).ms);
  // Warm up: every node has synced with node 0 once.
  await c.write(0, '/warmup', 'x');
  for (const i of others) await until(`warm-up file on ${i}`, () => listed(i, '/', 'warmup'), 60_000, 20);
  await oneHead(30_000);

  // 1) latency, one writer.
  await c.write(0, '/lat/_keep', '');
  for (const i of others) await until(`lat/ on ${i}`, () => listed(i, '/', 'lat'), 60_000, 20);
  await oneHead(30_000);
  const lat = [];
  const latBefore = await counters();
  const m0 = (await c.commits(0)).merges;
  for (let k = 0; k < FILES; k++) {
    const name = `f${k}`;
    await c.write(0, `/lat/${name}`, `file ${k}\n`); // resolves after close()
    const t0 = now();
    const left = new Set(others);
    await until(`lat/${name} everywhere`, async () => {
      for (const i of [...left]) if (await listed(i, '/lat', name)) left.delete(i);
      return left.size === 0;
    }, 60_000, STORAGE ? 5 : 1);
    lat.push(now() - t0);
  }
  const latSettled = await oneHead(120_000);
  const latAfter = await counters();
  r.latency_ms = { files: FILES, p50: r1(pct(lat, 50)), p90: r1(pct(lat, 90)), max: r1(Math.max(...lat)) };
  r.latency_per_change = { ...per(latBefore, latAfter, FILES), merges: r2(((await c.commits(0)).merges - m0) / FILES), settled: latSettled.ms !== null };

  // Where one change's time goes, from the nodes' own log lines (as before: node 0 pushes, node 1 merges).
  const { readFile } = await import('node:fs/promises');
  const msOf = async (i, event) => (await readFile(c.nodes[i].logPath, 'utf8')).split('\n').filter((l) => l.includes(`"event":"${event}"`)).map((l) => JSON.parse(l).ms).filter((x) => typeof x === 'number');
  const pushes = await msOf(0, 'sync_pushed');
  const merges = await msOf(1, 'sync_merged');
  r.parts_ms = { push_p50: pct(pushes, 50), merge_p50: pct(merges, 50), pushes_node0: pushes.length, merges_node1: merges.length };

  // 2) burst on node 0.
  if (BURST > 0) {
    await c.write(0, '/burst/_keep', '');
    for (const i of others) await until(`burst/ on ${i}`, () => listed(i, '/', 'burst'), 60_000, 20);
    const t0 = now();
    let next = 0;
    await Promise.all(Array.from({ length: 16 }, async () => {
      while (next < BURST) {
        const k = next++;
        await c.write(0, `/burst/b${k}`, `burst ${k}\n`);
      }
    }));
    const written = now() - t0;
    for (const i of others) await until(`burst on ${i}`, async () => (await c.list(i, '/burst').catch(() => [])).length >= BURST + 1, 120_000, 20);
    const done = now() - t0;
    r.burst = { files: BURST, written_ms: Math.round(written), all_listed_everywhere_ms: Math.round(done), after_last_close_ms: Math.round(done - written) };
    await oneHead(120_000);
  }

  // 3) everyone writes at once (--rounds times, each in a directory of its own).
  r.converge_rounds = [];
  for (let round = 0; round < ROUNDS; round++) {
    const dir = round ? `/conv${round}` : '/conv';
    await c.write(0, `${dir}/_keep`, '');
    for (const i of others) await until(`${dir}/ on ${i}`, () => listed(i, '/', dir.slice(1)), 60_000, 20);
    await oneHead(60_000);
    const convBefore = await counters();
    const cm0 = (await c.commits(0)).merges;
    let lastClose = 0;
    await Promise.all(all.map(async (i) => {
      for (let k = 0; k < CONV; k++) await c.write(i, `${dir}/n${i}-${k}`, `node ${i} file ${k}\n`);
      lastClose = Math.max(lastClose, now());
    }));
    const changes = NODES * CONV;
    const complete = async () => {
      for (const i of all) if ((await c.list(i, dir).catch(() => [])).length !== changes + 1) return false;
      return true;
    };
    // One head is not enough: right after the writes every node still has the old one.
    const conv = await oneHead(300_000, complete);
    const convAfter = await counters();
    r.converge_rounds.push({
      changes, after_last_close_ms: conv.at === null ? null : Math.round(conv.at - lastClose), distinct_heads_at_end: conv.distinct, all_files_everywhere: await complete(),
      per_change: { ...per(convBefore, convAfter, changes), merges: r2(((await c.commits(0)).merges - cm0) / changes) },
    });
  }
  r.converge = r.converge_rounds[0];

  // 4) memory: just after the burst, then idle.
  const rssNow = async () => {
    const rss = [];
    for (const i of all) rss.push((await c.rss(i)) / 2 ** 20);
    return { min: r1(Math.min(...rss)), avg: r1(rss.reduce((a, b) => a + b, 0) / rss.length), max: r1(Math.max(...rss)) };
  };
  await sleep(2000);
  r.rss_after_burst_mib = await rssNow();
  await sleep(28_000);
  r.idle_rss_mib = await rssNow();
} catch (e) {
  r.error = e.message;
} finally {
  await c.teardown();
}

if (JSON_OUT) console.log(JSON.stringify(r));
else {
  const rows = [
    ['nodes', `${NODES} (${STORAGE ? 'storage-only' : 'mounted'}), setup ${r.setup_ms} ms, one head ${r.setup_one_head_ms ?? 'not reached'} ms later`],
  ];
  if (r.latency_ms) {
    const l = r.latency_ms, pc = r.latency_per_change;
    rows.push([`close() on node 0 -> listed on all ${NODES - 1} others`, `${l.files} files: p50 ${l.p50} ms, p90 ${l.p90} ms, max ${l.max} ms`]);
    rows.push(['  per change (one writer)', `${pc.pushes} pushes, ${pc.tx_bytes} bytes sent, ${pc.merges} merge commits, CPU ${pc.cpu_ms.nodes} ms in nodes + ${pc.cpu_ms.their_processes} ms in their processes${pc.settled ? '' : ' (heads not settled)'}`]);
    rows.push(['  parts', `git push p50 ${r.parts_ms.push_p50} ms (${r.parts_ms.pushes_node0} pushes by node 0), merge p50 on node 1 ${r.parts_ms.merge_p50} ms`]);
  }
  if (r.burst) rows.push([`burst of ${r.burst.files} files on node 0`, `written in ${r.burst.written_ms} ms, listed everywhere after ${r.burst.all_listed_everywhere_ms} ms (${r.burst.after_last_close_ms} ms after the last close)`]);
  for (const [n, v] of (r.converge_rounds ?? []).entries()) {
    const pc = v.per_change;
    rows.push([`all ${NODES} write ${CONV} files at once${ROUNDS > 1 ? `, round ${n + 1}` : ''}`, v.after_last_close_ms === null ? `NOT converged: ${v.distinct_heads_at_end} heads after 300 s` : `one head ${v.after_last_close_ms} ms after the last close${v.all_files_everywhere ? '' : ' (files missing!)'}`]);
    rows.push(['  per change', `${pc.pushes} pushes, ${pc.tx_bytes} bytes sent, ${pc.merges} merge commits, CPU ${pc.cpu_ms.nodes} ms in nodes + ${pc.cpu_ms.their_processes} ms in their processes`]);
  }
  const mib = (m) => `min ${m.min} MiB, avg ${m.avg} MiB, max ${m.max} MiB`;
  if (r.rss_after_burst_mib) rows.push(['RSS per node 2 s after the burst', mib(r.rss_after_burst_mib)]);
  if (r.idle_rss_mib) rows.push(['idle RSS per node (30 s later)', mib(r.idle_rss_mib)]);
  if (r.error) rows.push(['error', r.error]);
  const w = Math.max(...rows.map(([k]) => k.length));
  for (const [k, v] of rows) console.log(`${k.padEnd(w)}  ${v}`);
}
if (r.error) process.exitCode = 1;

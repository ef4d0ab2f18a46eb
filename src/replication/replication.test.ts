// Replication end to end (issue 10): four storage-only nodes on three machines (their own UTS
// namespaces with their own host names: the failure domain) in network namespaces, copies=2.
// Every file ends on exactly two disks of two machines; a disk killed with -9 is healed around
// after dead-after; brought back, the surplus goes and no content ever has fewer than two live
// copies meanwhile; copies changed at run time to 3 and then 1 is followed by every node.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { open, readdir, readFile, stat, statfs, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { runProc } from '../testing/proc.js';
import { runCli } from '../testing/node-proc.js';
import { netnsAvailable } from '../testing/netns.js';
import { startCluster, TestCluster } from '../testing/cluster.js';
import { eventually } from '../testing/eventually.js';
import type { ActivePage } from './methods.js';
import { hashBuffer } from '../content/hasher.js';
import { infoHash } from '../content/metainfo.js';
import { decodeStored } from '../meta/entry.js';
import { run } from '../util/exec.js';

const skip = !(await netnsAvailable()) && 'needs root and iproute2';
const MACHINES = ['alpha', 'alpha', 'beta', 'gamma'];
const FILES = 24;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Node index -> the complete content ids it holds (null: not running). */
async function holdings(c: TestCluster, running: Set<number>): Promise<Map<number, Set<string>>> {
  const out = new Map<number, Set<string>>();
  for (const n of c.nodes) {
    if (!running.has(n.index)) continue;
    const ids = new Set<string>();
    let after: string | null = null;
    for (;;) {
      const r: ActivePage = await c.rpc<ActivePage>(n.index, 'active_torrents', { after });
      for (const h of r.items) if (h.complete) ids.add(h.id);
      if (!r.next) break;
      after = r.next;
    }
    out.set(n.index, ids);
  }
  return out;
}

/** Content id -> the nodes holding it. */
function byContent(h: Map<number, Set<string>>): Map<string, number[]> {
  const out = new Map<string, number[]>();
  for (const [i, ids] of h) for (const id of ids) (out.get(id) ?? out.set(id, []).get(id)!).push(i);
  return out;
}

/** Every one of `ids` on exactly `copies` running nodes, on `copies` machines when there are that many. */
function placedRight(where: Map<string, number[]>, ids: Set<string>, copies: number, machines: number): string | null {
  for (const id of ids) {
    const at = where.get(id) ?? [];
    if (at.length !== copies) return `${id} on ${at.length} disks (${at.join(',')}), not ${copies}`;
    const m = new Set(at.map((i) => MACHINES[i]));
    if (m.size !== Math.min(copies, machines)) return `${id} on machines ${[...m].join(',')}`;
  }
  return null;
}

/** Content id -> the disks its entry's `at` names, from node i's namespace (entries with a hint only). */
async function hints(c: TestCluster, i: number): Promise<Map<string, string[]>> {
  const git = ['--git-dir', join(c.nodes[i]!.root, 'meta', 'repo.git')];
  const ls = await runProc('git', [...git, 'ls-tree', '-r', 'refs/heads/main']);
  const out = new Map<string, string[]>();
  for (const line of ls.stdout.split('\n')) {
    const m = /^100644 blob ([0-9a-f]{40})\t(.*\.bin)$/.exec(line);
    if (!m) continue;
    const e = decodeStored((await run('git', [...git, 'cat-file', 'blob', m[1]!])).stdout);
    if (e.type === 'file' && e.at) out.set(e.id, e.at);
  }
  return out;
}

test('copies=2 on four disks of three machines: placed, healed after kill -9, surplus dropped, copies changed at run time', { skip, timeout: 300_000 }, async () => {
  const c = await startCluster({ nodes: 4, subnet: '10.84.0', machines: MACHINES, settle: 'heads', extra: ['--dead-after', '6s', '--audit-every', '1s'] });
  const running = new Set(c.nodes.map((n) => n.index));
  try {
    // Mixed sizes, written on every node; distinct content each.
    const inD0 = new Set<string>();
    const sizeOf = new Map<string, number>();
    for (let k = 0; k < FILES; k++) {
      const data = randomBytes([100, 5000, 70_000, 300_000][k % 4]!);
      sizeOf.set(infoHash(hashBuffer(data)), data.length);
      if (k % 3 === 0) inD0.add(infoHash(hashBuffer(data)));
      await c.write(k % 4, `/d${k % 3}/f${k}.bin`, data);
    }
    await c.converged(60_000);
    const all = new Set<string>();
    // Waits for the placement, checking on the way that no content ever has fewer than `floor` copies.
    const settle = async (copies: number, machines: number, what: string, floor = 1) => {
      let low: string | null = null;
      await eventually(what, async () => {
        const where = byContent(await holdings(c, running));
        for (const id of where.keys()) all.add(id);
        for (const id of all) if ((where.get(id) ?? []).length < floor) low ??= `${id} had ${(where.get(id) ?? []).length} copies`;
        return all.size === FILES && placedRight(where, all, copies, machines) === null;
      }, 90_000).catch(async (e) => {
        const where = byContent(await holdings(c, running));
        throw new Error(`${(e as Error).message}: ${placedRight(where, all, copies, machines) ?? `${all.size} ids`}`);
      });
      assert.equal(low, null, `${what}: no content may have fewer than ${floor} copies on the way`);
    };
    await settle(2, 3, 'every file on two disks of two machines');
    // The writers chose by fill where the view was complete (the entry's `at`): the copies are there.
    const hinted = await hints(c, 0);
    const where = byContent(await holdings(c, running));
    const ids = new Map(c.nodes.map((n) => [n.id, n.index]));
    for (const [id, at] of hinted) assert.deepEqual([...(where.get(id) ?? [])].sort(), at.map((n) => ids.get(n)).sort(), `${id}: held where its entry's at says (${at})`);
    assert.ok(hinted.size > 0, 'the entries written once the view was complete name their disks');
    console.log(`${hinted.size} of ${FILES} entries name their disks`);
    // Small content (up to 64 KiB: the 100- and 5,000-byte files) was copied over the member RPC, the rest through the swarm.
    const via = { rpc: 0, swarm: 0 };
    for (const n of c.nodes) {
      for (const l of (await readFile(n.logPath, 'utf8')).split('\n')) {
        if (!l.includes('"event":"replication.fetched"')) continue;
        const e = JSON.parse(l) as { id: string; via: 'rpc' | 'swarm' };
        assert.equal(e.via, sizeOf.get(e.id)! <= 65_536 ? 'rpc' : 'swarm', `${e.id} of ${sizeOf.get(e.id)} bytes`);
        via[e.via]++;
      }
    }
    assert.ok(via.rpc > 0 && via.swarm > 0, JSON.stringify(via));

    // A planned outage: in maintenance, a disk silent past dead-after is not healed around.
    const victim = 2; // beta's only disk
    const fetches = async () => (await c.events(0, 'replication.fetch')) + (await c.events(1, 'replication.fetch')) + (await c.events(3, 'replication.fetch'));
    await c.rpc(0, 'replication_config', { maintenance: c.nodes[victim]!.id, on: true });
    await c.converged(30_000);
    const before = await fetches();
    await c.kill9(victim);
    running.delete(victim);
    await sleep(9000); // dead-after and then some
    assert.equal(await fetches(), before, 'nothing is copied again while the node is in maintenance');
    const single = [...byContent(await holdings(c, running)).values()].filter((at) => at.length === 1).length;
    assert.ok(single > 0, 'the node in maintenance held copies that now have one live copy');

    // Maintenance off: the disk is down (dead-after silent), what it held is copied again.
    await c.rpc(1, 'replication_config', { maintenance: c.nodes[victim]!.id, on: false });
    await settle(2, 2, 'two copies again on the three disks left');
    assert.ok((await fetches()) > before);

    // It comes back with its old copies: the surplus goes, never below two live copies.
    await c.restart(victim);
    running.add(victim);
    await settle(2, 3, 'surplus dropped back to two copies on two machines', 2);

    // Drain gamma's disk: its copies move to the others before it lets them go, never below two.
    const drained = 3;
    const gamma = c.nodes[drained]!.id;
    let r0 = await runCli(['drain', c.nodes[0]!.root, gamma, 'status', '--json']);
    assert.equal(r0.code, 0, r0.err);
    let d = JSON.parse(r0.out);
    assert.deepEqual([d.nodeId, d.draining, d.known], [gamma, false, true]);
    assert.ok(d.left > 0 && d.bytesLeft > 0, r0.out);
    // `drain ... on --wait` returns once gamma holds nothing more: its copies are elsewhere.
    r0 = await runCli(['drain', c.nodes[0]!.root, gamma, 'on', '--wait', '--json']);
    assert.equal(r0.code, 0, r0.err);
    d = JSON.parse(r0.out);
    assert.deepEqual([d.draining, d.known, d.left, d.bytesLeft], [true, true, 0, 0]);
    await eventually('gamma drained', async () => {
      const h = await holdings(c, running);
      const where = byContent(new Map([...h].filter(([i]) => i !== drained)));
      const all2 = byContent(h);
      for (const id of all) if ((all2.get(id) ?? []).length < 2) throw new Error(`${id} fell to ${(all2.get(id) ?? []).length} copies while draining`);
      return h.get(drained)!.size === 0 && placedRight(where, all, 2, 2) === null;
    }, 90_000);
    await c.rpc(0, 'replication_config', { drain: gamma, on: false });

    // Run-time changes, from any member.
    const r = await c.rpc<{ copies: number }>(1, 'replication_config', { copies: 3 });
    assert.equal(r.copies, 3);
    await settle(3, 3, 'three copies on three machines', 2);
    // Every holder but one drops, several at once: the locks leave one copy of each, never none.
    await c.rpc(3, 'replication_config', { copies: 1 });
    await settle(1, 1, 'one copy each', 1);
    const cfg = await c.rpc<{ copies: number; copiesSetBy: string }>(0, 'replication_config', {});
    assert.equal(cfg.copies, 1);
    assert.equal(cfg.copiesSetBy, c.nodes[3]!.id);

    // A directory's own setting: /d0 on three disks of three machines, the rest stays at one.
    await c.rpc(2, 'replication_config', { copies: 3, dir: '/d0' });
    await eventually('/d0 on three machines, the rest on one disk', async () => {
      const where = byContent(await holdings(c, running));
      return [...all].every((id) => {
        const at = where.get(id) ?? [];
        return inD0.has(id) ? at.length === 3 && new Set(at.map((i) => MACHINES[i])).size === 3 : at.length === 1;
      });
    }, 90_000);
  } finally {
    await c.teardown();
  }
});

test('deleted content: kept while a member that may still use it is cut off (a delete racing a chmod), gone everywhere after the grace period', { skip, timeout: 240_000 }, async (t) => {
  const c = await startCluster({ nodes: 2, mount: true, subnet: '10.85.0', machines: ['alpha', 'beta'], settle: 'heads', extra: ['--dead-after', '120s', '--audit-every', '1s', '--gc-grace', '3s'] });
  const running = new Set([0, 1]);
  const t0 = Date.now();
  const step = (what: string) => t.diagnostic(`${Date.now() - t0} ms: ${what}`);
  // Mount operations in a child with a deadline: a hang names its step instead of the test's timeout.
  const sh = async (...cmd: string[]) => {
    const r = await runProc('timeout', ['30', ...cmd]);
    assert.equal(r.code, 0, `${cmd.join(' ')}: ${r.stderr}`);
  };
  try {
    // One copy: only the writer holds the bytes, so only its trash decides whether they survive.
    await c.rpc(0, 'replication_config', { copies: 1 });
    const data = randomBytes(200_000);
    await c.write(0, '/f.bin', data);
    await c.converged(60_000);
    step('written');
    const id = await eventually('the content on exactly one disk', async () => {
      const where = byContent(await holdings(c, running));
      return where.size === 1 && [...where.values()][0]!.length === 1 && [...where.keys()][0];
    }, 60_000);
    const holder = byContent(await holdings(c, running)).get(id)![0]!;
    // statfs counts the cluster: two disks of one size (both on this machine's disk), one copy each.
    const local = await statfs(c.nodes[0]!.root);
    await eventually('the mount reports both disks', async () => {
      const m = await statfs(c.nodes[0]!.mnt!);
      return Math.abs((m.blocks * m.bsize) / (local.blocks * local.bsize) - 2) < 0.02;
    }, 20_000);
    const other = 1 - holder;

    // Cut off (once the other has the whole file), the holder deletes it while the other changes its mode.
    await eventually('the file whole on the other node', async () => (await stat(join(c.nodes[other]!.mnt!, 'f.bin')).catch(() => null))?.size === data.length, 60_000);
    await c.partition([other]);
    step('cut off');
    await sh('rm', join(c.nodes[holder]!.mnt!, 'f.bin'));
    await sh('chmod', '600', join(c.nodes[other]!.mnt!, 'f.bin'));
    step('deleted and changed');
    await sleep(6000); // twice the grace period
    assert.ok((await holdings(c, running)).get(holder)!.has(id), 'the bytes stay while a member that may still reference them is cut off');
    await c.heal([other]);
    await c.converged(60_000);
    step('healed');
    // The change wins over the delete (meta/merge.ts): the file is back, and its bytes with it.
    for (const i of [0, 1]) {
      const r = await runProc('timeout', ['30', 'md5sum', join(c.nodes[i]!.mnt!, 'f.bin')]);
      assert.equal(r.code, 0, `node ${i} reads the file back`);
    }
    const back = await readFile(join(c.nodes[other]!.mnt!, 'f.bin'));
    assert.ok(back.equals(data));

    // A delete both have seen: the bytes go from every disk once the grace period is over.
    await sh('rm', join(c.nodes[other]!.mnt!, 'f.bin'));
    await c.converged(60_000);
    await eventually('the deleted content gone from every disk', async () => !byContent(await holdings(c, running)).has(id), 30_000);
  } finally {
    await c.teardown();
  }
});

test('every file readable from every mount while a disk holding it is dead, whole and by byte ranges; EIO, not a hang, when no holder is left', { skip, timeout: 240_000 }, async () => {
  process.env.DELUGEFS_READ_DEADLINE_MS = '3000';
  const c = await startCluster({ nodes: 3, mount: true, subnet: '10.86.0', machines: ['alpha', 'beta', 'gamma'], settle: 'heads', extra: ['--dead-after', '600s', '--audit-every', '1s'] });
  const running = new Set([0, 1, 2]);
  try {
    const files = new Map<string, Buffer>();
    for (const [k, size] of [1, 4000, 65_536, 700_000, 3_000_000].entries()) {
      const data = randomBytes(size);
      files.set(`/r/f${k}.bin`, data);
      await c.write(0, `/r/f${k}.bin`, data);
    }

    await c.converged(60_000);
    await eventually('every file on two disks', async () => {
      const where = byContent(await holdings(c, running));
      return where.size === files.size && [...where.values()].every((at) => at.length === 2);
    }, 60_000);
    // One more file, which no one reads before both its disks are gone.
    const known = new Set(byContent(await holdings(c, running)).keys());
    await c.write(0, '/lonely.bin', randomBytes(50_000));
    const [, lonelyAt] = await eventually('the last file on two disks', async () => [...byContent(await holdings(c, running))].find(([id, at]) => !known.has(id) && at.length === 2), 60_000);
    // The writer's disk dies; well before dead-after, so no copy is made again: reads use the other copy.
    await c.kill9(0);
    running.delete(0);
    for (const i of [1, 2]) {
      for (const [path, data] of files) {
        const p = join(c.nodes[i]!.mnt!, path);
        assert.ok((await readFile(p)).equals(data), `node ${i} reads ${path} whole`);
        const fh = await open(p, 'r');
        try {
          for (const [at, len] of [[0, 1], [data.length >> 1, 4096], [Math.max(0, data.length - 10), 10], [12_345 % data.length, 70_000]] as const) {
            const buf = Buffer.alloc(len);
            const { bytesRead } = await fh.read(buf, 0, len, at);
            const want = data.subarray(at, at + len);
            assert.equal(bytesRead, want.length, `${path} at ${at}`);
            assert.ok(buf.subarray(0, bytesRead).equals(want), `node ${i} reads ${path} bytes ${at}+${len}`);
          }
        } finally {
          await fh.close();
        }
      }
    }
    // Every disk holding some content gone: reading it fails with EIO within the deadline.
    const lastHolder = lonelyAt.find((i) => i !== 0)!;
    const reader = lastHolder === 1 ? 2 : 1;
    await c.kill9(lastHolder!);
    running.delete(lastHolder!);
    const t0 = Date.now();
    const r = await runProc('timeout', ['60', 'cat', join(c.nodes[reader]!.mnt!, 'lonely.bin')]);
    assert.notEqual(r.code, 0);
    assert.match(r.stderr, /Input\/output error/);
    assert.ok(Date.now() - t0 < 30_000, `EIO after ${Date.now() - t0} ms`);
  } finally {
    delete process.env.DELUGEFS_READ_DEADLINE_MS;
    await c.teardown();
  }
});

test('the read cache: pieces fetched for a reader stay in partial downloads within --cache-size, the least recently used go', { skip, timeout: 180_000 }, async () => {
  const c = await startCluster({ nodes: 2, mount: true, subnet: '10.89.0', machines: ['alpha', 'beta'], settle: 'heads', extra: ['--audit-every', '1s', '--cache-size', '4M'] });
  const partialBytes = async (i: number) => {
    const dir = join(c.nodes[i]!.root, 'partial');
    let n = 0;
    for (const name of await readdir(dir).catch(() => [] as string[])) n += ((await stat(join(dir, name)).catch(() => null))?.blocks ?? 0) * 512;
    return n;
  };
  try {
    await c.rpc(0, 'replication_config', { copies: 1 });
    const data = randomBytes(48 << 20);
    await c.write(0, '/big.bin', data);
    // Its whole size on the reader (converged heads may still be those of the create, size 0).
    await eventually('the file whole on node 1', async () => (await stat(join(c.nodes[1]!.mnt!, 'big.bin')).catch(() => null))?.size === data.length, 60_000);
    const read = async (at: number, len: number) => {
      const fh = await open(join(c.nodes[1]!.mnt!, 'big.bin'), 'r');
      try {
        const buf = Buffer.alloc(len);
        let got = 0;
        for (let n = -1; got < len && n !== 0; got += n) n = (await fh.read(buf, got, len - got, at + got)).bytesRead;
        assert.equal(got, len);
        assert.ok(buf.equals(data.subarray(at, at + len)), `bytes ${at}+${len}`);
      } finally {
        await fh.close();
      }
    };
    await read(0, 1 << 20);
    // whereis on the reader: its own download, partial (some pieces of all) or complete by now;
    // node 0 learns of it at node 1's next answer.
    type W = { holders: { nodeId: string; complete: boolean; have: number; pieces: number }[] };
    const whereFrom = async (i: number) => (JSON.parse((await runCli(['whereis', c.nodes[i]!.root, '/big.bin', '--json'])).out) as W[])[0]!.holders;
    const mine = (await whereFrom(1)).find((h) => h.nodeId === c.nodes[1]!.id);
    assert.ok(mine && (mine.complete || (mine.have > 0 && mine.have < mine.pieces)), JSON.stringify(mine));
    await eventually('node 0 knows of node 1\'s download', async () => (await whereFrom(0)).some((h) => h.nodeId === c.nodes[1]!.id && (h.complete || h.have > 0)), 30_000);
    // Read-ahead brings well past the budget; once the reader is idle the cache is trimmed.
    await eventually('read-ahead past the cache budget', async () => (await partialBytes(1)) > 8 << 20, 30_000);
    await eventually('the cache trimmed to its budget', async () => (await partialBytes(1)) <= 4 << 20, 30_000);
    // Read-ahead may have completed the file: then it is a whole copy in the cache, which goes
    // too (once idle) since it does not fit.
    await eventually('an eviction', async () => (await c.events(1, 'replication.cache.evicted')) >= 1, 30_000);
    // Evicted bytes are fetched again when read.
    await read(40 << 20, 1 << 20);
    await read(0, 4096);
  } finally {
    await c.teardown();
  }
});

test('the read cache keeps whole copies readers fetched (surplus here) within --cache-size, across a restart; the least recently used go, safely', { skip, timeout: 240_000 }, async () => {
  const c = await startCluster({ nodes: 2, mount: true, subnet: '10.96.0', machines: ['alpha', 'beta'], settle: 'heads', extra: ['--audit-every', '1s', '--cache-size', '6M'] });
  const running = new Set([0, 1]);
  try {
    await c.rpc(0, 'replication_config', { copies: 1 });
    const a = randomBytes(4 << 20), b = randomBytes(4 << 20);
    await c.write(0, '/a.bin', a);
    await c.write(0, '/b.bin', b);
    const idA = infoHash(hashBuffer(a)), idB = infoHash(hashBuffer(b));
    for (const [name, data] of [['a.bin', a], ['b.bin', b]] as const) {
      await eventually(`${name} whole on node 1`, async () => (await stat(join(c.nodes[1]!.mnt!, name)).catch(() => null))?.size === data.length, 60_000);
    }
    const held = async (i: number) => (await holdings(c, running)).get(i)!;
    const readWhole = async (name: string, data: Buffer) => assert.ok((await readFile(join(c.nodes[1]!.mnt!, name))).equals(data), name);
    // Read whole through the mount: the copy completes on node 1, where placement (copies=1) has no place for it.
    await readWhole('a.bin', a);
    await eventually('a whole copy of a.bin on node 1', async () => (await held(1)).has(idA), 60_000);
    await sleep(5000); // five rounds: a surplus copy nobody read would have been dropped by now
    assert.ok((await held(1)).has(idA), 'the copy a reader fetched was dropped');
    const st = await c.rpc<{ cache: { wholeCopies: number; wholeBytes: number } }>(1, 'replication_status');
    assert.deepEqual([st.cache.wholeCopies, st.cache.wholeBytes], [1, a.length]);
    // whereis: both disks hold a.bin whole, seen from node 0 (node 1 as of its last answer) and
    // from node 1 through its mount's path; b.bin only on node 0; no such file, a directory.
    const ids = [c.nodes[0]!.id, c.nodes[1]!.id].sort();
    type W = { path: string; error: string | null; size: number; id: string; copies: number; holders: { nodeId: string; complete: boolean; state: string; reportedAt: string | null }[] };
    const where = async (i: number, ...paths: string[]) => {
      const r = await runCli(['whereis', c.nodes[i]!.root, ...paths, '--json']);
      return { code: r.code, w: JSON.parse(r.out) as W[], err: r.err };
    };
    await eventually('node 0 knows node 1 holds a.bin', async () => (await where(0, '/a.bin')).w[0]!.holders.length === 2, 30_000);
    let w = await where(0, '/a.bin', '/b.bin');
    assert.equal(w.code, 0, w.err);
    assert.deepEqual(w.w.map((x) => [x.path, x.size, x.id, x.copies, x.holders.map((h) => [h.nodeId, h.complete, h.state])]), [
      ['/a.bin', a.length, idA, 1, ids.map((n) => [n, true, 'up'])],
      ['/b.bin', b.length, idB, 1, [[c.nodes[0]!.id, true, 'up']]],
    ]);
    assert.equal(w.w[0]!.holders.find((h) => h.nodeId === c.nodes[0]!.id)!.reportedAt, null, 'this disk is known now');
    assert.ok(Date.now() - Date.parse(w.w[0]!.holders.find((h) => h.nodeId === c.nodes[1]!.id)!.reportedAt!) < 60_000, 'a member as of its last answer');
    w = await where(1, join(c.nodes[1]!.mnt!, 'a.bin'), '/nope', '/');
    assert.equal(w.code, 1, 'a path that is no file is an error');
    assert.deepEqual(w.w.map((x) => [x.path, x.error === null, x.holders.length]), [['/a.bin', true, 2], ['/nope', false, 0], ['/', false, 0]]);
    const text = await runCli(['whereis', c.nodes[1]!.root, '/a.bin']);
    assert.match(text.out, new RegExp(`^/a\\.bin: ${a.length} bytes, 2 complete copies \\(the cluster keeps 1\\)`));
    assert.match(text.out, new RegExp(`${c.nodes[1]!.id} \\(beta, up\\): complete, this disk, now`));
    // The cache survives a crash and restart of the reader's node.
    await c.kill9(1);
    running.delete(1);
    await c.restart(1);
    running.add(1);
    await eventually('node 1 back with its copy', async () => (await held(1).catch(() => new Set<string>())).has(idA), 60_000);
    await eventually('node 1 places again', async () => (await c.rpc<{ round: { waiting: string[] } | null }>(1, 'replication_status')).round?.waiting.length === 0, 60_000);
    await sleep(5000);
    assert.ok((await held(1)).has(idA), 'the cached copy was dropped after the restart');
    // A second file read whole: both do not fit 6 MiB, the least recently used (a.bin) goes, after
    // its other copy was locked; node 0 keeps both.
    await readWhole('b.bin', b);
    await eventually('b.bin cached, a.bin evicted', async () => {
      const h = await held(1);
      return h.has(idB) && !h.has(idA);
    }, 60_000);
    const h0 = await held(0);
    assert.ok(h0.has(idA) && h0.has(idB));
    assert.ok((await c.events(1, 'replication.cache.evicted')) >= 1);
    await sleep(3000);
    assert.ok((await held(1)).has(idB), 'the copy within the budget stays');
    await readWhole('a.bin', a);
    // Draining the reader's disk: its cache goes too (a drain ends when the disk holds nothing),
    // and node 0's `drain --wait` sees that from node 1's fresh answer.
    const r = await runCli(['drain', c.nodes[0]!.root, c.nodes[1]!.id, 'on', '--wait', '--json']);
    assert.equal(r.code, 0, r.err);
    const d = JSON.parse(r.out) as { known: boolean; left: number };
    assert.deepEqual([d.known, d.left], [true, 0]);
    assert.equal((await held(1)).size, 0, 'node 1 still holds copies after its drain ended');
    const h0b = await held(0);
    assert.ok(h0b.has(idA) && h0b.has(idB), 'node 0 lost a copy');
  } finally {
    await c.teardown();
  }
});

test('verification on read: a corrupt stored piece is never returned; it is repaired from a member first, and without one the read fails with EIO', { skip, timeout: 240_000 }, async () => {
  const c = await startCluster({ nodes: 2, mount: true, subnet: '10.97.0', machines: ['alpha', 'beta'], settle: 'heads', extra: ['--audit-every', '1s', '--scrub-rate', '0'] });
  const running = new Set([0, 1]);
  try {
    const v = randomBytes(3 << 20), w = randomBytes(3 << 20);
    await c.write(0, '/v.bin', v);
    await c.write(0, '/w.bin', w);
    const idV = infoHash(hashBuffer(v)), idW = infoHash(hashBuffer(w));
    await eventually('both files on both disks', async () => {
      const h = await holdings(c, running);
      return [0, 1].every((i) => h.get(i)!.has(idV) && h.get(i)!.has(idW));
    }, 60_000);
    for (const [name, data] of [['v.bin', v], ['w.bin', w]] as const) {
      await eventually(`${name} whole on node 1`, async () => (await stat(join(c.nodes[1]!.mnt!, name)).catch(() => null))?.size === data.length, 60_000);
    }
    const flip = async (id: string, data: Buffer, at: number) => {
      const path = join(c.nodes[1]!.root, 'content', id.slice(0, 2), id);
      const fh = await open(path, 'r+');
      await fh.write(Buffer.from([data[at]! ^ 0xff]), 0, 1, at);
      await fh.close();
      return path;
    };
    // Bit rot on node 1's disk: its mount returns the right bytes, repaired from node 0 first.
    const pathV = await flip(idV, v, 1_500_000);
    assert.ok((await readFile(join(c.nodes[1]!.mnt!, 'v.bin'))).equals(v), 'the mount returned the corrupt bytes');
    assert.ok((await c.events(1, 'replication.read.bad_pieces')) >= 1);
    assert.ok((await c.events(1, 'replication.read.repaired')) >= 1);
    await eventually('the stored copy repaired', async () => (await readFile(pathV).catch(() => Buffer.alloc(0))).equals(v), 30_000);
    // With the only other copy gone, a corrupt piece is EIO, not wrong bytes.
    await c.kill9(0);
    running.delete(0);
    await flip(idW, w, 2_000_000);
    await assert.rejects(readFile(join(c.nodes[1]!.mnt!, 'w.bin')), (e: NodeJS.ErrnoException) => e.code === 'EIO');
  } finally {
    await c.teardown();
  }
});

test('scrub: a corrupt piece of a stored copy is found and repaired from a member, piece by piece', { skip, timeout: 180_000 }, async () => {
  const c = await startCluster({ nodes: 2, subnet: '10.90.0', machines: ['alpha', 'beta'], settle: 'heads', extra: ['--audit-every', '1s', '--scrub-rate', '64M', '--scrub-every', '1s'] });
  const running = new Set([0, 1]);
  try {
    const data = randomBytes(400_000);
    await c.write(0, '/s.bin', data);
    await c.converged(60_000);
    const [id] = await eventually('the file on both disks', async () => [...byContent(await holdings(c, running))].find(([, at]) => at.length === 2), 60_000);
    // Bit rot on beta's disk, in the middle of the file.
    const path = join(c.nodes[1]!.root, 'content', id.slice(0, 2), id);
    const fh = await open(path, 'r+');
    await fh.write(Buffer.from([data[200_000]! ^ 0xff]), 0, 1, 200_000);
    await fh.close();
    assert.ok(!(await readFile(path)).equals(data));
    await eventually('the copy repaired', async () => (await readFile(path).catch(() => Buffer.alloc(0))).equals(data), 60_000);
    assert.ok((await c.events(1, 'replication.scrub.bad_pieces')) >= 1);
    assert.ok((await c.events(1, 'replication.scrub.repaired')) >= 1);
    // Piece by piece: one piece came from the member, not the whole file.
    const st = await c.rpc<{ scrub: { bad: number; repaired: number }; swarm: { downloaded: number } }>(1, 'replication_status');
    assert.equal(st.scrub.bad, 1);
    assert.equal(st.scrub.repaired, 1);
    assert.ok(st.swarm.downloaded > 0 && st.swarm.downloaded < data.length / 4, `fetched ${st.swarm.downloaded} bytes to repair one piece`);
  } finally {
    await c.teardown();
  }
});

test('delugefs peers lists both disks as each sees the other; delugefs fsck: a full pass with progress finds bit rot and names the files, --repair fetches the bad pieces from the member', { skip, timeout: 180_000 }, async () => {
  // No background scrub: only fsck looks.
  const c = await startCluster({ nodes: 2, subnet: '10.98.0', machines: ['alpha', 'beta'], settle: 'heads', extra: ['--audit-every', '1s', '--scrub-rate', '0'] });
  const running = new Set([0, 1]);
  try {
    const a = randomBytes(500_000);
    const b = randomBytes(300_000);
    await c.write(0, '/a.bin', a);
    await c.write(0, '/b.bin', b);
    await c.converged(60_000);
    const both = await eventually('both files on both disks', async () => {
      const w = byContent(await holdings(c, running));
      const two = [...w].filter(([, at]) => at.length === 2).map(([id]) => id);
      return two.length === 2 && two;
    }, 60_000);
    const root = c.nodes[1]!.root;
    // peers, from beta: itself first, then alpha up, answering, reached over the network, in step.
    type Row = { nodeId: string; self: boolean; machine: string; state: string; seen: { host: string } | null; lastAnswerAt: string | null; disk: { total: number } | null; held: number | null; sync: { behind: number; failures: number } | null; swarm: number };
    const peers = async () => {
      const r = await runCli(['peers', root, '--json']);
      assert.equal(r.code, 0, r.err);
      return JSON.parse(r.out) as Row[];
    };
    const rows = await eventually('alpha answered and in step', async () => {
      const p = await peers();
      return p[1]?.lastAnswerAt && p[1].held === 2 && p[1].sync?.behind === 0 ? p : false;
    }, 60_000);
    assert.deepEqual(rows.map((r) => [r.self, r.machine, r.state]), [[true, 'beta', 'up'], [false, 'alpha', 'up']]);
    assert.equal(rows[0]!.nodeId, c.nodes[1]!.id);
    assert.equal(rows[1]!.nodeId, c.nodes[0]!.id);
    assert.equal(rows[1]!.seen?.host, c.nodes[0]!.host.ip);
    assert.equal(rows[1]!.sync?.failures, 0);
    assert.ok(rows[1]!.disk && rows[1]!.disk.total > 0);
    assert.ok(Number.isInteger(rows[1]!.swarm)); // connections last while content is exchanged: 0 once idle
    const table = await runCli(['peers', root]);
    assert.match(table.out, new RegExp(`^NODE +MACHINE +STATE[^\\n]*\\n${c.nodes[1]!.id} \\(this\\) +beta +up[\\s\\S]*\\n${c.nodes[0]!.id} +alpha +up +${c.nodes[0]!.host.ip.replace(/\./g, '\\.')}:\\d+ \\(\\w+\\)`));
    const fsck = async (...args: string[]) => {
      const r = await runCli(['fsck', root, '--json', ...args]);
      return { code: r.code, st: JSON.parse(r.out || 'null') as { state: string; checked: number; total: number; badCopies: number; repaired: number; unrepaired: number; bad: { id: string; paths: string[]; badPieces: number; state: string }[] }, err: r.err };
    };
    let r = await fsck();
    assert.equal(r.code, 0, r.err);
    assert.deepEqual([r.st.state, r.st.checked, r.st.total, r.st.badCopies], ['done', 2, 2, 0]);
    // Bit rot in a.bin's copy on beta.
    const which = new Map<string, Buffer>();
    for (const id of both) which.set(id, (await stat(join(root, 'content', id.slice(0, 2), id))).size === a.length ? a : b);
    const [rotten] = [...which].find(([, d]) => d === a)!;
    const path = join(root, 'content', rotten.slice(0, 2), rotten);
    const fh = await open(path, 'r+');
    await fh.write(Buffer.from([a[400_000]! ^ 0xff]), 0, 1, 400_000);
    await fh.close();
    r = await fsck();
    assert.equal(r.code, 4, `bad pieces left: exit 4 (${r.err})`);
    assert.equal(r.st.badCopies, 1);
    assert.deepEqual([r.st.bad[0]!.id, r.st.bad[0]!.paths, r.st.bad[0]!.badPieces, r.st.bad[0]!.state], [rotten, ['/a.bin'], 1, 'found']);
    assert.ok(!(await readFile(path)).equals(a), 'fsck without --repair changed the copy');
    const text = await runCli(['fsck', root]);
    assert.match(text.out, /1 bad copy \(1 bad pieces\): 0 repaired, 1 not[\s\S]*\/a\.bin[\s\S]*--repair/);
    r = await fsck('--repair');
    assert.equal(r.code, 1, `all repaired: exit 1 (${r.err})`);
    assert.deepEqual([r.st.badCopies, r.st.repaired, r.st.bad[0]!.state], [1, 1, 'repaired']);
    assert.ok((await readFile(path)).equals(a), 'the copy is whole again once fsck --repair returns');
    assert.ok((await c.events(1, 'replication.fsck.repaired')) >= 1);
    r = await fsck();
    assert.equal(r.code, 0, r.err);
    // The node down: said so, exit 8.
    await c.kill9(1);
    running.delete(1);
    const down = await runCli(['fsck', root]);
    assert.equal(down.code, 8);
    assert.match(down.err, /no node is running/);
  } finally {
    await c.teardown();
  }
});

test('a near-full disk takes no new copies: they go elsewhere, mirror requests are declined, every file still on two disks', { skip, timeout: 240_000 }, async () => {
  // Three disks of one size (placement weighs by size); gamma's is 87 % full of something else,
  // past the near-full mark (85 %): neither the writers' choice nor the hash sends it a copy, a
  // member's mirror request is declined, and every file is on the two others. (Where a disk
  // crosses the mark as it fills, placement.test.ts counts the room per file.)
  const c = await startCluster({ nodes: 3, subnet: '10.91.0', machines: ['alpha', 'beta', 'gamma'], rootSizes: ['64m', '64m', '64m'], settle: 'heads', extra: ['--audit-every', '1s'] });
  const running = new Set([0, 1, 2]);
  try {
    const junk = Math.floor(0.87 * (await statfs(c.nodes[2]!.root)).blocks * (await statfs(c.nodes[2]!.root)).bsize);
    await writeFile(join(c.nodes[2]!.root, 'other-data'), Buffer.alloc(junk, 1));
    const N = 60;
    for (let k = 0; k < N; k++) await c.write(k % 2, `/full/f${k}.bin`, randomBytes(450_000));
    await c.converged(60_000);
    await eventually('every file on two disks', async () => {
      const where = byContent(await holdings(c, running));
      return where.size === N && [...where.values()].every((at) => at.length === 2);
    }, 120_000);
    const small = await statfs(c.nodes[2]!.root);
    const fill = 1 - small.bavail / small.blocks;
    const onSmall = (await holdings(c, running)).get(2)!.size;
    assert.ok(fill > 0.85 && fill < 0.9, `the full disk is ${(fill * 100).toFixed(0)} % full`);
    assert.equal(onSmall, 0, `${onSmall} copies on the full disk`);
    // A member asking it to mirror more is told it is full.
    const big = [...byContent(await holdings(c, running))].filter(([, at]) => !at.includes(2)).map(([id]) => id);
    const r = await c.rpc<{ accepted: string[]; declined: { id: string; reason: string }[] }>(2, 'please_mirror', { ids: big.slice(0, 20) });
    assert.ok(r.declined.some((d) => d.reason === 'full'), JSON.stringify(r));
  } finally {
    await c.teardown();
  }
});

// Metadata sync at scale (issue 9): 8 storage-only nodes on network namespaces all write at once,
// three of them are cut off in the middle of the writes while both sides keep writing, then the
// links come back. Asserted: one head everywhere within a generous bound (not a timing test),
// every file on every node, every conflict kept as a *.sync-conflict-* copy. Reported, not
// asserted: setup and convergence times, commits, merge commits, pushes, bytes sent.
// DFS_SCALE_NODES=N runs it with N nodes (default 8); DFS_CLUSTER_LOGS=DIR keeps the logs.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { netnsAvailable } from '../testing/netns.js';
import { readFile } from 'node:fs/promises';
import { startCluster, TestCluster } from '../testing/cluster.js';

const skip = !(await netnsAvailable()) && 'needs root and iproute2';
const N = Number(process.env.DFS_SCALE_NODES ?? 8);
const FILES = 10;
/** Paths written on both sides of the partition: one conflict copy each, whatever the timing. */
const SHARED = 6;
/** conflictName() in meta/merge.ts: NAME.sync-conflict-DATE-TIME-NODE.EXT, then .2, .3… when taken. */
const CONFLICT = /^(shared-\d+|hot)\.sync-conflict-\d{8}-\d{6}-[a-z2-7]+\.txt(\.\d+)?$/;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
/** Log lines of node i's event `ev` holding `with` (e.g. '"via":"rpc"'). */
async function lines(c: TestCluster, i: number, ev: string, with_ = ''): Promise<number> {
  return (await readFile(c.nodes[i]!.logPath, 'utf8')).split('\n').filter((l) => l.includes(`"event":"${ev}"`) && l.includes(with_)).length;
}

async function sum(c: TestCluster, f: (i: number) => Promise<number>): Promise<number> {
  let s = 0;
  for (const n of c.nodes) s += await f(n.index);
  return s;
}

test(`${N} nodes write at once through a partition: one head, every file, every conflict kept`, { skip, timeout: 180_000 }, async (t) => {
  const c = await startCluster({ nodes: N, subnet: '10.82.0', settle: 'members', settleMs: 45_000 });
  const report: Record<string, unknown> = { nodes: N, setup_ms: c.setupMs };
  try {
    const all = c.nodes.map((n) => n.index);
    const cut = all.slice(N - Math.max(1, Math.round((3 * N) / 8))); // three of eight
    const rest = all.filter((i) => !cut.includes(i));
    const base = { pushes: await sum(c, c.pushes), tx: await sum(c, c.txBytes) };
    const writeSome = (i: number, from: number, to: number) => (async () => {
      for (let k = from; k < to; k++) {
        await c.write(i, `/n${i}-${k}.txt`, `node ${i} file ${k}\n`);
        await sleep(50);
      }
    })();

    // Everyone at once: the first half of each node's files, and one path written by all.
    const t0 = Date.now();
    await Promise.all(all.map((i) => Promise.all([c.write(i, '/hot.txt', `hot from node ${i}\n`), writeSome(i, 0, FILES / 2)])));
    await c.partition(cut);
    // Both sides keep writing; each shared path gets one version on each side.
    await Promise.all([
      ...all.map((i) => writeSome(i, FILES / 2, FILES)),
      ...Array.from({ length: SHARED }, (_, k) => Promise.all([
        c.write(rest[k % rest.length]!, `/shared-${k}.txt`, `shared ${k} from the larger side\n`),
        c.write(cut[k % cut.length]!, `/shared-${k}.txt`, `shared ${k} from the cut-off side, longer\n`),
      ])),
    ]);
    await sleep(2000);
    // Joins fetched with git (upload-pack); catching up after the heal is summaries and pulls over the member RPC.
    const gitFetchesBefore = await sum(c, (i) => lines(c, i, 'git_served', 'git-upload-pack'));
    const rpcPullsBefore = await sum(c, (i) => lines(c, i, 'sync_fetched', '"via":"rpc"'));
    await c.heal(cut);
    const lastWrite = Date.now();
    report.writes_ms = lastWrite - t0;

    const { head, ms } = await c.converged(60_000).catch(async (e) => {
      report.distinct_heads = new Set(await c.heads()).size;
      report.pushes = (await sum(c, c.pushes)) - base.pushes;
      report.merges_node0 = (await c.commits(0)).merges;
      throw e;
    });
    report.converge_after_heal_ms = ms;
    report.git_fetches_after_heal = (await sum(c, (i) => lines(c, i, 'git_served', 'git-upload-pack'))) - gitFetchesBefore;
    report.rpc_pulls_after_heal = (await sum(c, (i) => lines(c, i, 'sync_fetched', '"via":"rpc"'))) - rpcPullsBefore;
    const changes = N * FILES + N + 2 * SHARED;
    const commits = await c.commits(0);
    const pushes = (await sum(c, c.pushes)) - base.pushes;
    const tx = (await sum(c, c.txBytes)) - base.tx;
    Object.assign(report, {
      head: head.slice(0, 12), changes, commits: commits.commits, merges: commits.merges, pushes,
      pushes_per_change: +(pushes / changes).toFixed(1), merges_per_change: +(commits.merges / changes).toFixed(2),
      tx_bytes_per_change: Math.round(tx / changes),
    });

    // One head means one tree: every node lists the same names, but each is checked anyway.
    const want = all.flatMap((i) => Array.from({ length: FILES }, (_, k) => `n${i}-${k}.txt`));
    let hotCopies = 0;
    for (const i of all) {
      const names = await c.list(i);
      const missing = want.filter((x) => !names.includes(x));
      assert.deepEqual(missing, [], `node ${i} lacks files`);
      for (let k = 0; k < SHARED; k++) {
        assert.ok(names.includes(`shared-${k}.txt`), `node ${i}: shared-${k}.txt`);
        const copies = names.filter((x) => x.startsWith(`shared-${k}.sync-conflict-`) && CONFLICT.test(x));
        // Two versions, one loser: a second copy (NAME.2) is the same loser kept twice.
        assert.equal(copies.length, 1, `node ${i}: one conflict copy of shared-${k}.txt, got ${copies.join(' ') || 'none'}`);
      }
      assert.ok(names.includes('hot.txt'), `node ${i}: hot.txt`);
      const hot = names.filter((x) => x.startsWith('hot.sync-conflict-') && CONFLICT.test(x)).length;
      // Written by all at once: how many met in a merge (rather than one overwriting another) is timing.
      assert.ok(hot <= N - 1, `node ${i}: ${hot} copies of hot.txt`);
      if (i === 0) hotCopies = hot;
      else assert.equal(hot, hotCopies, `node ${i} and node 0 keep different copies of hot.txt`);
      const unexpected = names.filter((x) => !want.includes(x) && !/^(shared-\d+|hot)\.txt$/.test(x) && !CONFLICT.test(x));
      assert.deepEqual(unexpected, [], `node ${i}: unexpected names`);
    }
    report.conflict_copies = SHARED + hotCopies;
    assert.ok((report.rpc_pulls_after_heal as number) > 0, 'the heal was caught up by sync_pull');
    assert.equal(report.git_fetches_after_heal, 0, 'no git fetch after the heal');
  } finally {
    t.diagnostic(JSON.stringify(report));
    console.log('sync-scale:', JSON.stringify(report));
    await c.teardown();
  }
});

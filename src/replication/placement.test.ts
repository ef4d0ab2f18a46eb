import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { type Disk, type DiskState, choose, place, PlacementError, surplus } from './placement.js';
import { PlacementHints } from './hints.js';

const TB = 1e12;
const ids = (n: number, tag = 'c') => Array.from({ length: n }, (_, i) => createHash('sha1').update(`${tag}${i}`).digest('hex'));
function disk(node: string, machine: string, tb: number, more: Partial<Disk> = {}): Disk {
  return { node, machine, total: tb * TB, free: tb * TB, state: 'up', ...more };
}
/** A fixed shuffle (by a hash of the node id): another order of the same list. */
const shuffled = <T extends { node: string } | string>(xs: readonly T[]) =>
  [...xs].sort((a, b) => (h(a) < h(b) ? -1 : 1));
const h = (x: { node: string } | string) => createHash('md5').update(typeof x === 'string' ? x : x.node).digest('hex');
const machineOf = (disks: Disk[], n: string) => disks.find((d) => d.node === n)!.machine;

const mixed: Disk[] = [
  disk('a1', 'A', 4, { zone: 'z1' }), disk('a2', 'A', 2, { zone: 'z1' }), disk('b1', 'B', 8, { zone: 'z1' }),
  disk('c1', 'C', 3, { zone: 'z2' }), disk('c2', 'C', 1, { zone: 'z2' }), disk('d1', 'D', 6, { zone: 'z2', free: 0.5 * TB }),
  disk('e1', 'E', 2), disk('e2', 'E', 5, { state: 'maintenance' }), disk('f1', 'F', 4, { state: 'down' }),
  disk('g1', 'G', 2, { state: 'draining' }), disk('g2', 'G', 3), disk('h1', 'H', 0, { free: 0 }),
];

test('the same inputs in any order of the disk list give the same placement', () => {
  const orders = [mixed, [...mixed].reverse(), shuffled(mixed)];
  for (const id of ids(500)) {
    for (const copies of [1, 3, 5]) {
      const [first, ...rest] = orders.map((disks) => place({ id, copies, writer: 'c2', disks }));
      for (const r of rest) assert.deepEqual(r, first);
    }
  }
});

test('distinct machines first: never two copies on one machine while machines suffice', () => {
  const disks = ['A', 'B', 'C'].flatMap((m, i) => [1, 2, 3].map((j) => disk(`${m}${j}`, m, j + i)));
  for (const id of ids(1000)) {
    const two = place({ id, copies: 2, disks }).nodes;
    assert.equal(new Set(two.map((n) => machineOf(disks, n))).size, 2, `${id}: ${two}`);
    const four = place({ id, copies: 4, disks }).nodes;
    assert.equal(new Set(four).size, 4);
    const perMachine = ['A', 'B', 'C'].map((m) => four.filter((n) => machineOf(disks, n) === m).length).sort();
    assert.deepEqual(perMachine, [1, 1, 2], `${id}: every machine once, one twice: ${four}`);
  }
});

test('distinct zones before distinct machines, distinct machines before reusing one', () => {
  // 3 zones x 2 machines x 2 disks.
  const disks = ['z1', 'z2', 'z3'].flatMap((zone, z) =>
    [0, 1].flatMap((m) => [0, 1].map((d) => disk(`${zone}m${m}d${d}`, `${zone}m${m}`, 1 + z + m + d, { zone }))));
  const zoneOf = (n: string) => disks.find((d) => d.node === n)!.zone;
  for (const id of ids(1000)) {
    const three = place({ id, copies: 3, disks }).nodes;
    assert.equal(new Set(three.map(zoneOf)).size, 3, `${id}: ${three}`);
    const five = place({ id, copies: 5, disks }).nodes;
    assert.equal(new Set(five.map(zoneOf)).size, 3);
    assert.equal(new Set(five.map((n) => machineOf(disks, n))).size, 5, `${id}: new machines before a second disk on one: ${five}`);
    const eight = place({ id, copies: 8, disks }).nodes;
    assert.equal(new Set(eight).size, 8);
    assert.equal(new Set(eight.map((n) => machineOf(disks, n))).size, 6, `${id}: every machine used: ${eight}`);
  }
});

test("the writer's disk keeps the first copy when it is eligible, not when near-full or down", () => {
  const disks = [disk('w', 'W', 1), disk('x', 'X', 8), disk('y', 'Y', 8), disk('z', 'Z', 8), disk('w2', 'W', 8)];
  for (const id of ids(300)) {
    const r = place({ id, copies: 2, writer: 'w', disks }).nodes;
    assert.equal(r[0], 'w');
    assert.notEqual(machineOf(disks, r[1]), 'W', 'the second copy leaves the writer machine');
    assert.deepEqual(place({ id, copies: 2, writer: 'nobody', disks }), place({ id, copies: 2, disks }));
    for (const w of [{ free: 0.1 * TB }, { state: 'down' as DiskState }, { state: 'maintenance' as DiskState }]) {
      const other = disks.map((d) => (d.node === 'w' ? { ...d, ...w } : d));
      assert.ok(!place({ id, copies: 2, writer: 'w', disks: other }).nodes.includes('w'), JSON.stringify(w));
    }
  }
});

test('near-full and non-up disks take no new copies; short says how many are missing', () => {
  const disks = [
    disk('at', 'A', 100, { free: 15 * TB }), // fill exactly at the default threshold, 0.85
    disk('over', 'B', 100, { free: 0 }), disk('down', 'C', 100, { state: 'down' }),
    disk('maint', 'D', 100, { state: 'maintenance' }), disk('drain', 'E', 100, { state: 'draining' }),
    disk('empty', 'F', 0, { free: 0 }), disk('ok', 'G', 1, { free: 0.16 * TB }), disk('ok2', 'G', 1),
  ];
  for (const id of ids(300)) {
    const r = place({ id, copies: 3, writer: 'at', disks });
    assert.deepEqual([...r.nodes].sort(), ['ok', 'ok2']);
    assert.equal(r.short, 1);
    assert.deepEqual(place({ id, copies: 1, disks: disks.slice(0, 6) }), { nodes: [], short: 1 });
    const laxer = place({ id, copies: 8, disks, nearFull: 0.999 });
    assert.deepEqual([...laxer.nodes].sort(), ['at', 'ok', 'ok2']);
    assert.equal(laxer.short, 5);
  }
});

const eight = [1, 2, 2, 3, 4, 4, 6, 8].map((tb, i) => disk(`n${i}`, `m${i}`, tb));

test('adding a disk moves only its share, and only onto it', (t) => {
  const grown = [...eight, disk('new', 'mNew', 10)];
  const share = 10 / (30 + 10);
  const n = 5000;
  let moved = 0;
  for (const id of ids(n, 'move')) {
    const [before] = place({ id, copies: 1, disks: eight }).nodes;
    const [after] = place({ id, copies: 1, disks: grown }).nodes;
    if (before !== after) {
      moved++;
      assert.equal(after, 'new', `${id} moved between old disks: ${before} -> ${after}`);
    }
    const b2 = place({ id, copies: 2, disks: eight }).nodes, a2 = place({ id, copies: 2, disks: grown }).nodes;
    const gone = b2.filter((x) => !a2.includes(x));
    assert.ok(gone.length === 0 || (gone.length === 1 && a2.includes('new')), `${id}: copies=2 ${b2} -> ${a2}`);
  }
  const tol = 4 * Math.sqrt((share * (1 - share)) / n);
  t.diagnostic(`moved ${moved}/${n} = ${(moved / n).toFixed(4)}, the new disk's weight share ${share.toFixed(4)} +- ${tol.toFixed(4)}`);
  assert.ok(Math.abs(moved / n - share) < tol, `moved ${moved / n}, expected ${share}`);
});

/** Copies per disk when placing 2,000 equal files, copies=2, on the eight disks, filling free space as they go. */
function fillEight(): { counts: number[]; fills: number[] } {
  const size = 1e9; // 4 TB of 30: far below near-full, so placement alone decides
  const disks = eight.map((d) => ({ ...d }));
  const counts = disks.map(() => 0);
  for (const id of ids(2000, 'file')) {
    for (const node of place({ id, copies: 2, disks }).nodes) {
      const i = disks.findIndex((d) => d.node === node);
      counts[i]++;
      disks[i].free -= size;
    }
  }
  return { counts, fills: disks.map((d) => (d.total - d.free) / d.total) };
}

test('balance: copies follow capacity as rendezvous hashing predicts (2,000 files, copies=2)', (t) => {
  const w = eight.map((d) => d.total), W = w.reduce((a, b) => a + b);
  // Weighted HRW picks like successive sampling without replacement: P(i in the top 2).
  const p = w.map((wi, i) => wi / W + w.reduce((s, wj, j) => (j === i ? s : s + (wj / W) * (wi / (W - wj))), 0));
  const { counts } = fillEight();
  counts.forEach((c, i) => {
    const mean = 2000 * p[i], sd = Math.sqrt(2000 * p[i] * (1 - p[i]));
    t.diagnostic(`${w[i] / TB} TB: ${c} copies, expected ${mean.toFixed(0)} +- ${sd.toFixed(0)} (capacity share ${(4000 * w[i] / W).toFixed(0)})`);
    assert.ok(Math.abs(c - mean) < 4 * sd, `${w[i] / TB} TB disk: ${c} copies, expected ${mean.toFixed(1)}`);
  });
  const exp = p.map((pi, i) => pi / w[i]);
  t.diagnostic(`expected ratio of fill ratios from capacity weighting alone: ${(Math.max(...exp) / Math.min(...exp)).toFixed(3)} (at any number of files)`);
});

/**
 * 2,000 files of `sizes` written through PlacementHints (one per writer, as each node has its own)
 * whose view of the disks is refreshed only every `staleness` files, as free-space reports lag;
 * each file is then placed by place() with its entry's `at`, as every node would, and stored there.
 */
function fillHinted(o: { seed: string; writers: 'none' | 'capacity'; staleness: number; sizes: 'equal' | 'mixed' }): { fills: number[]; honoured: number } {
  const disks = eight.map((d) => ({ ...d }));
  let view = disks.map((d) => ({ ...d })), viewAt = 0, now = 0;
  const writers = new Map<string, PlacementHints>();
  const hintsOf = (me: string) => {
    let w = writers.get(me);
    if (!w) writers.set(me, (w = new PlacementHints({ me, nearFull: 0.85, disks: () => ({ disks: view, unknown: [] }), reportedAt: () => viewAt, copiesAt: () => 2, placer: () => undefined, now: () => now })));
    return w;
  };
  const W = disks.reduce((a, d) => a + d.total, 0);
  let honoured = 0;
  for (const id of ids(2000, o.seed)) {
    now++;
    const u = parseInt(id.slice(0, 8), 16) / 2 ** 32, v = parseInt(id.slice(8, 16), 16) / 2 ** 32;
    const bytes = o.sizes === 'equal' ? 1e9 : Math.round(1e9 * Math.exp(4 * (u - 0.5))); // 0.14-7.4 GB
    let writer = '-'; // no disk of the cluster: every copy is chosen by fill
    if (o.writers === 'capacity') for (let acc = 0, i = 0; i < disks.length; i++) if (v * W < (acc += disks[i]!.total)) { writer = disks[i]!.node; break; }
    const at = hintsOf(writer).hint('/f', id, bytes)!;
    const nodes = place({ id, copies: 2, writer: at[0], prefer: at.slice(1), disks, bytes }).nodes;
    if (nodes.join() === at.join()) honoured++;
    for (const n of nodes) disks.find((d) => d.node === n)!.free -= bytes;
    if (now % o.staleness === 0) [view, viewAt] = [disks.map((d) => ({ ...d })), now];
  }
  return { fills: disks.map((d) => (d.total - d.free) / d.total), honoured };
}

test('balance: the fullest disk within 10% of the emptiest with the writers\' hints (issue 10 target)', (t) => {
  const hrw = fillEight().fills;
  t.diagnostic(`hashing alone (no hints): fullest / emptiest ${(Math.max(...hrw) / Math.min(...hrw)).toFixed(3)}`);
  for (const sizes of ['equal', 'mixed'] as const) for (const writers of ['none', 'capacity'] as const) for (const staleness of [1, 50]) {
    const ratios: string[] = [];
    for (const seed of ['a', 'b', 'c']) {
      const { fills, honoured } = fillHinted({ seed, writers, staleness, sizes });
      const ratio = Math.max(...fills) / Math.min(...fills);
      ratios.push(ratio.toFixed(3));
      assert.equal(honoured, 2000, 'place() puts every copy where the hint says while those disks can take it');
      assert.ok(ratio <= 1.1, `${sizes} sizes, writers ${writers}, view ${staleness} files old, seed ${seed}: fullest / emptiest ${ratio.toFixed(3)} > 1.10 (${fills.map((f) => f.toFixed(3))})`);
    }
    t.diagnostic(`${sizes} sizes, writers ${writers}, reports every ${staleness} files: fullest / emptiest ${ratios.join(' ')}`);
  }
});

test("choose(): the writer first, distinct machines, only disks with room, the emptier of two ranked candidates, deterministic", () => {
  const disks = [disk('w', 'W', 4), disk('w2', 'W', 4), disk('x', 'X', 4, { free: 1 * TB }), disk('y', 'Y', 4), disk('z', 'Z', 4), disk('f', 'F', 4, { free: 0.1 * TB })];
  let emptier = 0;
  for (const id of ids(300, 'choose')) {
    const at = choose({ id, copies: 3, writer: 'w', disks, bytes: 1e9 });
    assert.equal(at[0], 'w');
    assert.equal(new Set(at.map((n) => machineOf(disks, n))).size, 3, `${id}: ${at}`);
    assert.ok(!at.includes('f'), 'a near-full disk takes no new copy');
    assert.deepEqual(choose({ id, copies: 3, writer: 'w', disks: shuffled(disks), bytes: 1e9 }), at);
    // The second copy is the emptier of the two best ranked: the 75%-full x only when both are x and a fuller one.
    const two = place({ id, copies: 3, disks: disks.filter((d) => d.machine !== 'W' && d.node !== 'f') }).nodes.slice(0, 2);
    if (two.includes('x')) assert.notEqual(at[1], 'x', `${id}: x is fuller than ${two}`);
    else assert.equal(at[1], two[0]);
    if (at[1] !== two[0]) emptier++;
  }
  assert.ok(emptier > 50, `the fill decided against the ranking ${emptier} times`);
  assert.deepEqual(choose({ id: ids(1)[0]!, copies: 2, writer: 'f', disks, bytes: 1e9 }).includes('f'), false, 'a near-full writer keeps no first copy');
  assert.throws(() => choose({ id: ids(1)[0]!, copies: 2, disks, choices: 0 }), /choices/);
});

test('place() follows the hint while its disks can take the copies, and hashes past those that cannot', () => {
  const disks = [disk('a', 'A', 4), disk('b', 'B', 4), disk('c', 'C', 4), disk('d', 'D', 4)];
  for (const id of ids(200, 'pref')) {
    const hashed = place({ id, copies: 2, writer: 'a', disks }).nodes;
    const other = ['b', 'c', 'd'].find((n) => !hashed.includes(n))!;
    assert.deepEqual(place({ id, copies: 2, writer: 'a', prefer: [other], disks }).nodes, ['a', other]);
    // The hinted disk gone: the hash decides, as without a hint.
    const down = disks.map((d) => (d.node === other ? { ...d, state: 'down' as const } : d));
    assert.deepEqual(place({ id, copies: 2, writer: 'a', prefer: [other], disks: down }).nodes, place({ id, copies: 2, writer: 'a', disks: down }).nodes);
    // Unknown or repeated names in the hint are passed over.
    assert.deepEqual(place({ id, copies: 2, writer: 'a', prefer: ['gone', other, other], disks }).nodes, ['a', other]);
    // More copies than the hint names: the rest by hash.
    assert.equal(place({ id, copies: 3, writer: 'a', prefer: [other], disks }).nodes.slice(0, 2).join(), `a,${other}`);
    // The hint keeps the surplus rule consistent: a holder outside it is the one to drop.
    const extra = hashed.find((n) => n !== 'a')!;
    if (extra !== other) assert.deepEqual(surplus({ id, copies: 2, writer: 'a', prefer: [other], disks, holders: ['a', other, extra] }), [extra]);
  }
  assert.throws(() => place({ id: ids(1)[0]!, copies: 2, disks, prefer: 'a' as unknown as string[] }), /prefer/);
});

test('surplus keeps the placement, never returns the last `copies` holders, and is deterministic', () => {
  const disks = mixed;
  const all = [...disks.map((d) => d.node), 'gone1', 'gone2'];
  for (const [k, id] of ids(400, 's').entries()) {
    const copies = 1 + (k % 4);
    const holders = all.filter((n) => h(n + id) < '8'); // a different subset per id
    const s = surplus({ id, copies, writer: 'a1', disks, holders });
    assert.equal(s.length, Math.max(0, holders.length - copies));
    assert.equal(new Set(s).size, s.length);
    assert.ok(s.every((n) => holders.includes(n)));
    assert.deepEqual(surplus({ id, copies, writer: 'a1', disks: shuffled(disks), holders: shuffled([...holders, ...holders]) }), s);
    const wanted = place({ id, copies, writer: 'a1', disks, holders }).nodes;
    const held = wanted.filter((n) => holders.includes(n));
    assert.ok(held.every((n) => !s.includes(n)), `${id}: a placed copy is surplus: ${s} (placement ${wanted})`);
    if (holders.length > copies && held.length === wanted.length && wanted.length === copies) {
      assert.deepEqual([...s].sort(), holders.filter((n) => !wanted.includes(n)).sort());
    }
  }
});

test('surplus drops unreachable and same-machine copies first, and lets a draining disk go', () => {
  const disks = [
    disk('a1', 'A', 4), disk('a2', 'A', 4), disk('b1', 'B', 4), disk('e1', 'E', 40), disk('f1', 'F', 40),
    disk('c1', 'C', 4, { state: 'down' }), disk('d1', 'D', 4, { state: 'draining' }),
    disk('m1', 'M', 4, { state: 'maintenance' }), disk('nf', 'N', 40, { free: 1 * TB }),
  ];
  let outside = 0;
  for (const id of ids(300, 'd')) {
    const wanted = place({ id, copies: 2, disks }).nodes;
    // Down and unknown copies go first but still count: 2 live copies are never reduced.
    assert.deepEqual(surplus({ id, copies: 2, disks, holders: ['c1', ...wanted] }), ['c1']);
    assert.deepEqual(new Set(surplus({ id, copies: 2, disks, holders: ['c1', 'zz', ...wanted] })), new Set(['c1', 'zz']));
    assert.deepEqual(surplus({ id, copies: 2, disks, holders: ['c1', wanted[0]] }), []);
    // The draining disk's copy is surplus once the placement holds copies.
    assert.deepEqual(surplus({ id, copies: 2, disks, holders: ['d1', ...wanted] }), ['d1']);
    // Outside the placement: up with room, near-full, maintenance, draining.
    // A near-full disk takes no new copies but keeps its place for what it holds.
    if (!wanted.includes('b1')) {
      const holders = ['nf', 'b1', ...wanted];
      const w3 = place({ id, copies: 3, disks, holders }).nodes;
      assert.ok(!place({ id, copies: 3, disks }).nodes.includes('nf'));
      assert.deepEqual(surplus({ id, copies: 3, disks, holders }), w3.includes('nf') ? ['b1'] : ['nf']);
    }
    assert.deepEqual(surplus({ id, copies: 3, disks, holders: ['d1', 'm1', 'nf', ...wanted] }), ['d1', 'm1']);
    // None held where the placement wants them: one copy per machine is kept.
    if (!wanted.some((n) => ['a1', 'a2', 'b1'].includes(n))) {
      outside++;
      const s = surplus({ id, copies: 2, disks, holders: ['a1', 'b1', 'a2'] });
      assert.equal(s.length, 1);
      assert.ok(['a1', 'a2'].includes(s[0]), `${id}: ${s}`);
    }
  }
  assert.ok(outside > 100, `${outside} ids with the placement outside the holders`);
});

test('malformed input from peers is refused with a clear error', () => {
  const id = ids(1)[0];
  const ok = { id, copies: 2, disks: eight };
  const bad: [object, RegExp][] = [
    [{ copies: 0 }, /copies must be an integer >= 1 \(got 0\)/],
    [{ copies: 1.5 }, /copies must be an integer/],
    [{ copies: NaN }, /copies must be an integer/],
    [{ copies: '2' }, /copies must be an integer/],
    [{ id: id.toUpperCase() }, /content id must be 40 lowercase hex/],
    [{ id: id.slice(1) }, /content id/],
    [{ writer: 42 }, /writer must be a node id/],
    [{ nearFull: 0 }, /nearFull must be a fill ratio/],
    [{ nearFull: 1.5 }, /nearFull/],
    [{ disks: 'n0' }, /disks must be a list/],
    [{ disks: [...eight, null] }, /disk 8 is not an object/],
    [{ disks: [...eight, { ...eight[3] }] }, /disk 8 \(node "n3"\): duplicate node id/],
    [{ disks: [disk('', 'M', 1)] }, /node must be a non-empty string/],
    [{ disks: [disk('x', '', 1)] }, /machine must be a non-empty string/],
    [{ disks: [disk('x', 'M', 1, { zone: '' })] }, /zone must be/],
    [{ disks: [disk('x', 'M', 1, { state: 'gone' as DiskState })] }, /state must be up, down, maintenance or draining/],
    [{ disks: [disk('x', 'M', 1, { free: -1 })] }, /free must be between 0 and total/],
    [{ disks: [disk('x', 'M', 1, { free: NaN })] }, /free must be between/],
    [{ disks: [disk('x', 'M', 1, { free: 2 * TB })] }, /free must be between 0 and total/],
    [{ disks: [disk('x', 'M', 1, { total: -1, free: 0 })] }, /total must be a finite number of bytes >= 0/],
    [{ disks: [disk('x', 'M', 1, { total: NaN })] }, /total must be/],
    [{ disks: [disk('x', 'M', 1, { total: Infinity })] }, /total must be/],
    [{ disks: [disk('x', 'M', 1, { total: '5' as unknown as number })] }, /total must be/],
  ];
  for (const [change, msg] of bad) {
    assert.throws(() => place({ ...ok, ...change } as never), (e: unknown) => e instanceof PlacementError && msg.test(e.message), JSON.stringify(change));
  }
  assert.throws(() => surplus({ ...ok, holders: ['n1', 7] } as never), /holders must be a list of node ids/);
  assert.throws(() => surplus({ ...ok, copies: -1, holders: [] }), /copies must be/);
});

test('a near-full disk takes no new copies but keeps its place for what it holds (no shedding at the threshold)', () => {
  const disks = [disk('a1', 'A', 4), disk('b1', 'B', 4), disk('c1', 'C', 4), disk('nf', 'N', 40, { free: 1 * TB })];
  let kept = 0;
  for (const id of ids(200, 'n')) {
    assert.ok(!place({ id, copies: 2, disks }).nodes.includes('nf'));
    const withCopy = place({ id, copies: 2, disks, holders: ['nf'] }).nodes;
    if (withCopy.includes('nf')) kept++;
    assert.ok(!place({ id, copies: 2, disks: disks.map((d) => (d.node === 'nf' ? { ...d, state: 'down' as const } : d)), holders: ['nf'] }).nodes.includes('nf'));
  }
  assert.ok(kept > 100, `the near-full disk kept its place for ${kept} of 200 ids it holds`);
});

test('a disk takes a new copy only if it stays below the near-full ratio with it', () => {
  // 4 TB disks; 'edge' is 84.9 % full: room for 4 GB more before 85 %.
  const disks = [disk('a1', 'A', 4), disk('b1', 'B', 4), disk('edge', 'E', 4, { free: 0.151 * 4 * TB })];
  let small = 0;
  for (const id of ids(200, 'b')) {
    if (place({ id, copies: 2, disks, bytes: 1e6 }).nodes.includes('edge')) small++;
    assert.ok(!place({ id, copies: 2, disks, bytes: 10e9 }).nodes.includes('edge'));
  }
  assert.ok(small > 50, `the edge disk took ${small} of 200 small copies`);
  assert.throws(() => place({ id: ids(1)[0]!, copies: 2, disks, bytes: -1 }), /bytes/);
});

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { PlacementHints, HintDeps } from './hints.js';
import type { Disk } from './placement.js';

const TB = 1e12;
const id = (s: string) => createHash('sha1').update(s).digest('hex');
const disk = (node: string, tb: number, free = tb): Disk => ({ node, machine: `m-${node}`, total: tb * TB, free: free * TB, state: 'up' });

function hints(over: Partial<HintDeps> & { view?: Disk[]; unknown?: string[] } = {}) {
  let now = 1000, reportAt = 0;
  const view = over.view ?? [disk('me', 4), disk('x', 4), disk('y', 4)];
  const h = new PlacementHints({
    me: 'me', nearFull: 0.85, now: () => now,
    disks: () => ({ disks: view, unknown: over.unknown ?? [] }),
    reportedAt: () => reportAt, copiesAt: () => 2, placer: () => undefined, ...over,
  });
  return { h, tick: () => now++, report: () => (reportAt = now) };
}

test('a hint names this disk first and then another machine; content already named keeps its placement', () => {
  const { h } = hints();
  const at = h.hint('/a', id('a'), 1e9)!;
  assert.equal(at.length, 2);
  assert.equal(at[0], 'me');
  assert.ok(['x', 'y'].includes(at[1]!));
  const [Y, X] = ['yyyyyyyyyyyyyyyy', 'xxxxxxxxxxxxxxxx'];
  const known = hints({ placer: () => [Y, X] }).h;
  assert.deepEqual(known.hint('/a', id('a'), 1e9), [Y, X]);
});

test('no hint while alone or while a member has not reported its size (placement hashes then)', () => {
  assert.equal(hints({ view: [disk('me', 4)] }).h.hint('/a', id('a'), 1), undefined);
  assert.equal(hints({ unknown: ['z'] }).h.hint('/a', id('a'), 1), undefined);
  assert.equal(hints({ disks: () => null }).h.hint('/a', id('a'), 1), undefined);
});

test("the copies of the file's directory, at most MAX_AT", () => {
  const view = Array.from({ length: 12 }, (_, i) => disk(`d${i}`, 4));
  view.push(disk('me', 4));
  assert.equal(hints({ view, copiesAt: (p) => (p === '/three/f' ? 3 : 2) }).h.hint('/three/f', id('f'), 1)!.length, 3);
  assert.equal(hints({ view, copiesAt: () => 20 }).h.hint('/f', id('f'), 1)!.length, 8);
});

test('bytes sent to a disk count against it until its next report', () => {
  // x and y equal: without the bookkeeping every file would go where the ranking says; with
  // it the second copies alternate as the sent bytes make one look fuller.
  const { h, tick, report } = hints();
  const counts = { x: 0, y: 0 };
  for (let i = 0; i < 200; i++) {
    tick();
    counts[h.hint('/f', id(`f${i}`), 0.01 * TB)![1] as 'x' | 'y']++;
  }
  assert.ok(Math.abs(counts.x - counts.y) <= 2, `alternates: ${JSON.stringify(counts)}`);
  // A report makes them count for nothing again (the report has them).
  report();
  tick();
  const after = { x: 0, y: 0 };
  for (let i = 0; i < 40; i++) after[h.hint('/g', id(`g${i}`), 1)![1] as 'x' | 'y']++;
  assert.ok(after.x > 5 && after.y > 5, JSON.stringify(after));
});

test("a known placement an entry could not hold is not copied into the new entry: a fresh choice", () => {
  for (const bad of [['x'], ['me', 'me'], ['', '']]) {
    const at = hints({ placer: () => bad }).h.hint('/a', id('a'), 1)!;
    assert.equal(at[0], 'me', JSON.stringify(bad));
  }
});

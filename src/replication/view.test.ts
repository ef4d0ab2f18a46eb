import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ClusterView } from './view.js';

const none = { maintenance: false, draining: false };
const maint = { maintenance: true, draining: false };
const drain = { maintenance: false, draining: true };

test('disk states: up, down after dead-after, maintenance keeps its place, draining survives a missed poll', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'dfs-view-'));
  let now = 1_000_000;
  const v = new ClusterView({ me: 'me', dir, deadAfterMs: 60_000, now: () => now });
  try {
    assert.equal(v.state('me', none), 'up');
    // Never heard from: unknown (nothing is placed), then left out once dead-after silent.
    assert.equal(v.state('x', none), 'unknown');
    assert.equal(v.state('m', maint), 'unknown');
    now += 61_000;
    assert.equal(v.state('x', none), 'down');
    assert.equal(v.state('m', maint), 'down', 'a member in maintenance never heard from does not stop the loop for good');
    const members = [{ nodeId: 'me', machine: 'A', ...none }, { nodeId: 'm', machine: 'B', ...maint }];
    assert.deepEqual(v.disks(members, { total: 10, free: 5 }).unknown, []);

    v.reported('y', { total: 10, free: 5, machine: 'C' });
    assert.equal(v.state('y', none), 'up');
    v.failed('y');
    assert.equal(v.state('y', none), 'up', 'a reboot is not a failure');
    now += 61_000;
    assert.equal(v.state('y', none), 'down');
    assert.equal(v.state('y', maint), 'maintenance', 'maintenance keeps its place however long it is away');

    v.reported('d', { total: 10, free: 5, machine: 'D' });
    assert.equal(v.state('d', drain), 'draining');
    v.failed('d');
    assert.equal(v.state('d', drain), 'draining', 'a missed poll does not make a draining disk take copies');
    now += 61_000;
    assert.equal(v.state('d', drain), 'down');
    v.reported('d', { total: 10, free: 5, machine: 'D' });
    assert.equal(v.state('d', drain), 'draining');
    // Maintenance disks are handed to placement as up (their place is kept).
    const { disks } = v.disks([{ nodeId: 'y', machine: 'C', ...maint }], { total: 10, free: 5 });
    assert.equal(disks[0]!.state, 'up');
    // Removed members are forgotten.
    v.retain(new Set(['me', 'd']));
    assert.equal(v.lastReport('y'), undefined);
    assert.ok(v.lastReport('d'));
  } finally {
    await v.flush();
    await rm(dir, { recursive: true, force: true });
  }
});

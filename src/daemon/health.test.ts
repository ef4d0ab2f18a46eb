// The health verdict's rules (health.ts): each check from its counts, ERROR over WARN over OK.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { judgeHealth, renderHealth, HealthInput } from './health.js';
import type { Disk } from '../replication/placement.js';

const GB = 1e9;
const disk = (node: string, machine: string, state: Disk['state'] = 'up', fill = 0.5): Disk => ({ node, machine, state, total: 100 * GB, free: (1 - fill) * 100 * GB });
function input(over: Partial<HealthInput> = {}, round: Partial<NonNullable<HealthInput['round']>> = {}): HealthInput {
  return {
    cluster: 'c', nodeId: 'a', head: '0123456789abcdef', members: ['a', 'b', 'c'], nearFull: 0.85, fetching: 0, queued: 0, sync: { b: { behind: 0, failures: 0, pushes: 3 } },
    namespace: { files: 10, dirs: 2, bytes: 5e6, conflicts: 0 },
    round: { at: Date.UTC(2026, 11, 3), copies: 2, ids: 10, under: 0, lost: 0, waiting: [], disks: [disk('a', 'm1'), disk('b', 'm2'), disk('c', 'm3')], ...round },
    ...over,
  };
}
const codes = (i: HealthInput) => judgeHealth(i).checks.map((c) => `${c.severity} ${c.code} ${c.count}`);

test('a healthy cluster is OK with its counts', () => {
  const h = judgeHealth(input());
  assert.equal(h.verdict, 'OK');
  assert.deepEqual(h.checks, []);
  assert.deepEqual(h.nodes, { members: 3, up: 3, down: 0, maintenance: 0, draining: 0, unknown: 0, machines: 3 });
  assert.equal(h.disks[0]!.fill, 0.5);
  assert.match(renderHealth(h), /^cluster c, node a: HEALTH_OK\nnodes: 3 members on 3 machines: 3 up/);
});

test('each check from its counts; ERROR wins over WARN', () => {
  assert.deepEqual(codes(input({}, { under: 3, lost: 1 })), ['ERROR CONTENT_LOST 1', 'WARN CONTENT_UNDER 2']);
  assert.equal(judgeHealth(input({}, { under: 3, lost: 1 })).verdict, 'ERROR');
  assert.deepEqual(codes(input({}, { disks: [disk('a', 'm1'), disk('b', 'm2', 'down'), disk('c', 'm3', 'maintenance')] })), ['WARN DISK_DOWN 1', 'WARN DISK_MAINTENANCE 1']);
  assert.deepEqual(codes(input({}, { disks: [disk('a', 'm1', 'up', 0.9), disk('b', 'm2', 'draining'), disk('c', 'm3', 'down', 0.99)] })), ['WARN DISK_DOWN 1', 'WARN DISK_DRAINING 1', 'WARN DISK_NEARFULL 1']);
  assert.deepEqual(codes(input({}, { waiting: ['c'], disks: [disk('a', 'm1'), disk('b', 'm2')] })), ['WARN VIEW_INCOMPLETE 1']);
  assert.equal(judgeHealth(input({}, { waiting: ['c'], disks: [disk('a', 'm1'), disk('b', 'm2')] })).nodes.unknown, 1);
  assert.deepEqual(codes(input({ sync: { b: { behind: 2, failures: 4, pushes: 0 } } })), ['WARN SYNC_FAILING 1']);
  assert.deepEqual(codes(input({ namespace: { files: 3, dirs: 0, bytes: 0, conflicts: 2 } })), ['WARN CONFLICTS 2']);
  assert.deepEqual(codes(input({ round: null })), ['WARN REPLICATION_STARTING 1']);
  const text = renderHealth(judgeHealth(input({}, { under: 3, lost: 1 })));
  assert.match(text, /HEALTH_ERROR\n  ERROR CONTENT_LOST: 1 content id with no live copy/);
  assert.match(text, /content: 10 ids, copies 2: 3 under, 1 lost/);
});

test('pending LAN join requests are a JOIN_PENDING warning with their codes, listed in the reply and the text', () => {
  const j = { code: 'K7QD-3M9X-WP2A-WP2A-WP2A', nodeId: 'abcdefghijklmnop', hostname: 'server3', address: '10.0.0.3:40000', since: Date.UTC(2026, 11, 7), expires: Date.UTC(2026, 11, 7) + 60_000 };
  assert.deepEqual(codes(input({ joins: [j] })), ['WARN JOIN_PENDING 1']);
  const h = judgeHealth(input({ joins: [j] }));
  assert.equal(h.verdict, 'WARN');
  assert.deepEqual(h.joins, [j]);
  assert.match(h.checks[0]!.message, /K7QD-3M9X-WP2A-WP2A-WP2A server3 \(abcdefghijklmnop\).*delugefs approve ROOT CODE/);
  assert.match(renderHealth(h), /join requests .*\n  join K7QD-3M9X-WP2A-WP2A-WP2A  abcdefghijklmnop  server3  from 10\.0\.0\.3:40000/);
  assert.deepEqual(judgeHealth(input()).joins, []);
});

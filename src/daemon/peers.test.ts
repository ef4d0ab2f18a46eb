// The peers listing from what the parts know: one row per member, this node first; the table
// never prints a member's control characters; the reply checker takes what records allow.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { gatherPeers, renderPeers, PEERS } from './peers.js';

const A = 'aaaaaaaaaaaaaaaa', B = 'bbbbbbbbbbbbbbbb', C = 'cccccccccccccccc';
const member = (nodeId: string, hostname: string, addresses: string[] = []) => ({ nodeId, hostname, addresses, addedAt: '2026-12-01T00:00:00.000Z', addedBy: A });

test('one row per member, this node first, then by machine; what each part knows in its row', () => {
  const rows = gatherPeers({
    me: C,
    members: [member(A, 'zeta', ['10.0.0.1:7422']), member(B, 'alpha'), member(C, 'mid')],
    seen: [{ nodeId: A, host: '10.0.0.1', sshPort: 7422, source: 'static' }, { nodeId: A, host: '10.0.0.9', sshPort: 7422, source: 'mdns' }],
    disks: new Map([[A, { zone: 'rack1', state: 'up', lastAnswerAt: Date.parse('2026-12-07T10:00:00Z'), total: 100, free: 25, held: 3 }]]),
    sync: { [A]: { behind: 2, failures: 0, pushes: 5 } },
    swarm: new Map([[A, 2]]),
  });
  assert.deepEqual(rows.map((r) => [r.nodeId, r.self]), [[C, true], [B, false], [A, false]]);
  const a = rows[2]!;
  assert.deepEqual([a.zone, a.state, a.seen?.source, a.lastAnswerAt, a.disk, a.held, a.sync?.behind, a.swarm], ['rack1', 'up', 'mdns', '2026-12-07T10:00:00.000Z', { total: 100, free: 25 }, 3, 2, 2]);
  assert.deepEqual([rows[1]!.state, rows[1]!.seen, rows[1]!.sync], ['unknown', null, null]);
  assert.deepEqual(PEERS.result(JSON.parse(JSON.stringify(rows))), rows);
  const t = renderPeers(rows, Date.parse('2026-12-07T10:00:30Z'));
  assert.match(t, /zeta \[rack1\] +up +10\.0\.0\.9:7422 \(mdns\) +30s ago +75 B of 100 B \(75 %\) +2 to send +2$/m);
});

test("a member's control characters are not printed; a long address (records allow 300) is taken", () => {
  const long = `${'h'.repeat(290)}.x:7422`;
  const rows = gatherPeers({ me: A, members: [member(A, 'me'), member(B, 'evil\x1b[2J\x07', [long])], seen: [], disks: new Map(), sync: {}, swarm: new Map() });
  const t = renderPeers(rows);
  assert.ok(!/[\x00-\x1f]/.test(t.replace(/\n/g, '')), 'control characters printed');
  assert.match(t, /evil\?\[2J\?/);
  assert.equal(PEERS.result(JSON.parse(JSON.stringify(rows)))[1]!.addresses[0], long);
});

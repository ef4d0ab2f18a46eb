// The store of pending LAN join requests: codes, re-polls, the bounds (in all, per address, new
// per address per window), expiry (idle and maximum age), refusal, approval through the admit
// callback only, ambiguity, and change events. A fake clock; no network.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { JoinRequests, JoinRequestError, JoinAsk } from './join-requests.js';
import { joinCode } from './join-code.js';
import { memoryLog } from './log.js';

const ROOT = 'c'.repeat(40);
const ask = (n: number, ip = '10.0.0.9'): JoinAsk => {
  const keyBlob = Buffer.alloc(51, n);
  return { publicKey: `ssh-ed25519 K${n}`, keyBlob, nodeId: `node${String(n).padStart(12, 'a')}`, hostname: `host${n}`, address: `${ip}:40000`, rootCommit: ROOT };
};
const code = (e: unknown) => (e as JoinRequestError).code;

function store(limits = {}) {
  let t = 1_000_000;
  const admitted: string[] = [];
  const log = memoryLog();
  const j = new JoinRequests({ admit: async (k) => { admitted.push(k); return { nodeId: 'x' + k }; }, limits, now: () => t, log });
  return { j, admitted, log, tick: (ms: number) => (t += ms), now: () => t };
}

test('a request gets its code; re-polls keep it alive and do not count as new', () => {
  const { j, tick, log } = store({ idleMs: 1000, maxAgeMs: 10_000 });
  const p = j.request(ask(1));
  assert.equal(p.code, joinCode(ask(1).keyBlob, ROOT));
  assert.equal(p.expires, p.since + 1000);
  for (let i = 0; i < 11; i++) {
    tick(900);
    assert.equal(j.request(ask(1)).code, p.code);
  }
  assert.equal(j.list().length, 1);
  assert.equal(log.events.filter((e) => e.event === 'join.request').length, 1, 'logged once, with its code');
  assert.equal(log.events[0]!.code, p.code);
  j.close();
});

test('idle and maximum age expire requests; a joiner that outlived its age is told so', () => {
  const { j, tick } = store({ idleMs: 1000, maxAgeMs: 3000 });
  j.request(ask(1));
  j.request(ask(2));
  tick(1001);
  j.request(ask(2)); // ask(1) went idle
  assert.deepEqual(j.list().map((p) => p.hostname), ['host2']);
  // An idle one may ask again (its joiner came back).
  assert.equal(j.request(ask(1)).hostname, 'host1');
  for (let i = 0; i < 3; i++) { tick(800); j.request(ask(2)); }
  tick(800);
  assert.throws(() => j.request(ask(2)), (e) => code(e) === 'expired');
  assert.ok(!j.list().some((p) => p.hostname === 'host2'));
  j.close();
});

test('bounds: per address, in all, and new requests per address per window', () => {
  const { j, tick, log } = store({ maxPending: 6, maxPerAddress: 2, newPerAddress: 3, windowMs: 10_000, idleMs: 60_000 });
  j.request(ask(1, '10.0.0.1'));
  j.request(ask(2, '10.0.0.1'));
  assert.throws(() => j.request(ask(3, '10.0.0.1')), (e) => code(e) === 'busy');
  // The refused one still counted against the address's window (3 new ones): the next is rate limited.
  assert.throws(() => j.request(ask(4, '10.0.0.1')), (e) => code(e) === 'busy' || code(e) === 'rate_limited');
  for (let i = 0; i < 4; i++) j.request(ask(10 + i, `10.0.1.${i}`));
  assert.equal(j.list().length, 6);
  assert.throws(() => j.request(ask(20, '10.0.2.1')), (e) => code(e) === 'busy', 'full in all');
  // A pending one's re-poll still works while full.
  assert.equal(j.request(ask(1, '10.0.0.1')).hostname, 'host1');
  // Refusals of a flood are logged once per reason every 5 s.
  for (let i = 0; i < 50; i++) assert.throws(() => j.request(ask(100 + i, '10.0.3.1')));
  assert.equal(log.events.filter((e) => e.event === 'join.request_refused').length, 1);
  tick(5000);
  assert.throws(() => j.request(ask(200, '10.0.3.1')));
  const refused = log.events.filter((e) => e.event === 'join.request_refused');
  assert.equal(refused.length, 2);
  assert.equal(refused[1]!.suppressed, 52, 'the 50 and the two earlier ones within 5 s');
  j.close();
  const s2 = store({ newPerAddress: 3, windowMs: 10_000, maxPerAddress: 100, idleMs: 1 });
  for (let i = 0; i < 3; i++) { s2.j.request(ask(i, '10.0.0.5')); s2.tick(2); }
  assert.throws(() => s2.j.request(ask(9, '10.0.0.5')), (e) => code(e) === 'rate_limited');
  s2.tick(10_001);
  assert.equal(s2.j.request(ask(9, '10.0.0.5')).hostname, 'host9');
  s2.j.close();
});

test('approve admits through the callback only; refuse is final; unknown codes are errors', async () => {
  const { j, admitted } = store();
  const a = j.request(ask(1));
  const b = j.request(ask(2));
  await assert.rejects(j.approve('0000-0000'), (e) => code(e) === 'not_found');
  await assert.rejects(j.approve('junk'), (e) => code(e) === 'not_found');
  assert.deepEqual(admitted, [], 'nothing admitted before an approval');
  assert.deepEqual(await j.approve(a.code.toLowerCase().replace('-', '')), { nodeId: 'xssh-ed25519 K1' });
  assert.deepEqual(admitted, ['ssh-ed25519 K1']);
  assert.throws(() => j.refuse(a.code), (e) => code(e) === 'not_found', 'approved: no longer pending');
  j.refuse(b.code);
  assert.throws(() => j.request(ask(2)), (e) => code(e) === 'refused');
  await assert.rejects(j.approve(b.code), (e) => code(e) === 'not_found');
  assert.deepEqual(j.list(), []);
  j.close();
});

test('a failing admission keeps the request; two requests sharing a code are acted on by neither', async () => {
  let fail = true;
  const j = new JoinRequests({ admit: async () => { if (fail) throw new Error('disk full'); return { nodeId: 'n' }; } });
  const a = j.request(ask(1));
  await assert.rejects(j.approve(a.code), (e) => code(e) === 'failed' && /disk full/.test((e as Error).message));
  assert.equal(j.list().length, 1);
  fail = false;
  // A second key whose code collides (forced here: same key bytes under another id).
  j.request({ ...ask(1), nodeId: 'otheridaaaaaaaaa', address: '10.0.0.7:1' });
  await assert.rejects(j.approve(a.code), (e) => code(e) === 'ambiguous');
  assert.throws(() => j.refuse(a.code), (e) => code(e) === 'ambiguous');
  j.close();
});

test('onChange fires on request, approval, refusal and expiry (by timer), and unsubscribes', async () => {
  const j = new JoinRequests({ admit: async () => ({ nodeId: 'n' }), limits: { idleMs: 50 } });
  let n = 0;
  const off = j.onChange(() => n++);
  const a = j.request(ask(1));
  assert.equal(n, 1);
  j.request(ask(1));
  assert.equal(n, 1, 'a re-poll is no change');
  await j.approve(a.code);
  assert.equal(n, 2);
  const b = j.request(ask(2));
  j.refuse(b.code);
  assert.equal(n, 4);
  j.request(ask(3));
  await new Promise((r) => setTimeout(r, 150));
  assert.equal(n, 6, 'expired by the timer, without anyone asking');
  assert.deepEqual(j.list(), []);
  off();
  j.request(ask(4));
  assert.equal(n, 6);
  j.close();
});

test('re-polls from another address do not free places at the first one', () => {
  const { j } = store({ maxPending: 16, maxPerAddress: 2, newPerAddress: 100, windowMs: 10_000 });
  j.request(ask(1, '10.0.0.1'));
  j.request(ask(2, '10.0.0.1'));
  // Both poll again from elsewhere: the places they took at 10.0.0.1 stay taken.
  j.request(ask(1, '10.0.0.2'));
  j.request(ask(2, '10.0.0.2'));
  assert.throws(() => j.request(ask(3, '10.0.0.1')), (e) => code(e) === 'busy');
  assert.equal(j.list().find((p) => p.nodeId === ask(1).nodeId)!.address, '10.0.0.2:40000', 'where it polls from now is shown');
});

test('an approval under way: a refuse fails, a second approve gets the same answer, the key is admitted once', async () => {
  let release!: () => void;
  const gate = new Promise<void>((r) => (release = r));
  const admitted: string[] = [];
  const j = new JoinRequests({ admit: async (k) => { admitted.push(k); await gate; return { nodeId: 'x' }; } });
  const p = j.request(ask(1));
  const a1 = j.approve(p.code);
  const a2 = j.approve(p.code);
  assert.throws(() => j.refuse(p.code), /being approved/);
  release();
  assert.deepEqual(await a1, { nodeId: 'x' });
  assert.deepEqual(await a2, { nodeId: 'x' });
  assert.deepEqual(admitted, [ask(1).publicKey]);
  assert.deepEqual(j.list(), []);
  j.close();
});

// The pre-auth pool under a flood, with real TCP sockets on loopback: a connection from a quiet
// address survives a flood from busier ones however silent it is, and the busiest address pays.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import { once } from 'node:events';
import { Admission, DEFAULT_LIMITS, Slot } from './ssh-limits.js';
import { memoryLog } from './log.js';

const server = net.createServer();
const accepted: net.Socket[] = [];
const clients: net.Socket[] = [];
after(() => {
  for (const s of [...accepted, ...clients]) s.destroy();
  server.close();
});

/** A connection from `from`: the server side's socket (what Admission sees). */
async function connect(port: number, from: string): Promise<net.Socket> {
  const got = once(server, 'connection') as Promise<[net.Socket]>;
  const c = net.connect({ host: '127.0.0.1', port, localAddress: from });
  c.on('error', () => {});
  clients.push(c);
  const [s] = await got;
  s.on('error', () => {});
  accepted.push(s);
  return s;
}

test('a full pre-auth pool evicts from the busiest address: a lone silent connection survives a flood', async () => {
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const port = (server.address() as net.AddressInfo).port;
  const log = memoryLog();
  const adm = new Admission({ ...DEFAULT_LIMITS, maxPreauth: 16, maxPreauthPerAddress: 8, preauthTimeoutMs: 60_000 }, log);
  const flood = (i: number) => `127.0.${4 + (i % 5)}.1`; // five prefixes (/24s)
  // Filled unevenly first (8 + 7 from two addresses of one prefix), so the flood that follows must evict.
  for (let i = 0; i < 15; i++) assert.ok(adm.accept(await connect(port, `127.0.4.${1 + (i & 1)}`)), `flood ${i} admitted below the cap`);
  const lone = adm.accept(await connect(port, '127.0.0.1')) as Slot;
  assert.ok(lone, 'the lone address gets the last slot');
  lone.active = 0; // the most silent of all: "longest silent" alone would evict it first
  let refusedNew = 0;
  for (let i = 15; i < 115; i++) if (!adm.accept(await connect(port, flood(i)))) refusedNew++;
  assert.equal(adm.stats().preauth, 16, 'the pool stays at its cap');
  assert.ok(!lone.dropped && adm.get('127.0.0.1', lone.socket.remotePort) === lone, 'the lone connection was not evicted');
  // The flood's five prefixes share the other 15 slots evenly: none displaces one of its size.
  const per = new Map<string, number>();
  for (const s of adm.all()) if (s !== lone) per.set(s.ip.split('.').slice(0, 3).join('.'), (per.get(s.ip.split('.').slice(0, 3).join('.')) ?? 0) + 1);
  assert.deepEqual([...per.values()].sort(), [3, 3, 3, 3, 3]);
  assert.ok(refusedNew > 0, 'a newcomer from an address as busy as any is refused, not admitted');
  const reasons = new Set(log.events.map((e) => e.reason));
  assert.ok(reasons.has('preauth_evicted') && reasons.has('preauth_total'), [...reasons].join(','));
  // A second quiet prefix still gets in, at the cost of a flood slot.
  const other = adm.accept(await connect(port, '127.0.99.2'));
  assert.ok(other && !lone.dropped, 'a second quiet address is admitted by eviction');
  for (const s of adm.all()) adm.destroy(s);
  assert.equal(adm.stats().preauth, 0);
});

test('a flood from as many prefixes as slots evicts sockets that sent nothing before a handshake under way', async () => {
  const port = (server.address() as net.AddressInfo).port;
  const adm = new Admission({ ...DEFAULT_LIMITS, maxPreauth: 16, maxPreauthPerAddress: 8, preauthTimeoutMs: 60_000 }, memoryLog());
  // A member mid-handshake: it sent its banner and key exchange, then waits for us (silent).
  const got = once(server, 'connection') as Promise<[net.Socket]>;
  const c = net.connect({ host: '127.0.0.1', port, localAddress: '127.0.0.1' });
  c.on('error', () => {});
  clients.push(c);
  const [ms] = await got;
  accepted.push(ms);
  const member = adm.accept(ms)!;
  const sent = once(ms, 'data');
  c.write(Buffer.alloc(3000, 1));
  await sent;
  for (let i = 0; i < 20 && member.received < 3000; i++) await new Promise((r) => setTimeout(r, 10));
  member.active = 0; // the longest silent of all
  // Then one socket each from 100 prefixes, none sending a byte: each takes the place of another.
  for (let i = 0; i < 100; i++) adm.accept(await connect(port, `127.${10 + (i >> 4)}.${i & 15}.1`));
  assert.ok(!member.dropped, 'the handshake under way was evicted for sockets that never sent anything');
  assert.equal(adm.stats().preauth, 16);
  for (const s of adm.all()) adm.destroy(s);
});

test('a reconnect from the same address and port before the old close: the old slot goes, the counts stay right', async () => {
  const port = (server.address() as net.AddressInfo).port;
  const adm = new Admission({ ...DEFAULT_LIMITS, maxPreauth: 16, maxPreauthPerAddress: 8, preauthTimeoutMs: 60_000 }, memoryLog());
  const a = await connect(port, '127.0.50.1');
  const b = await connect(port, '127.0.50.1');
  // b as the kernel reports a reconnect from a's port (RST, then SYN from the same port) while
  // a's close is not processed yet: what Admission keys its slots by.
  Object.defineProperty(b, 'remotePort', { get: () => a.remotePort });
  const sa = adm.accept(a)!;
  const sb = adm.accept(b)!;
  assert.ok(sa.dropped, 'the old slot was not ended');
  assert.equal(adm.stats().preauth, 1);
  assert.equal(adm.get('127.0.50.1', a.remotePort), sb);
  adm.destroy(sb);
  await new Promise((r) => setTimeout(r, 50)); // both sockets' close events
  assert.deepEqual(adm.stats(), { preauth: 0, guest: 0, member: 0 }, 'a count was left behind');
});

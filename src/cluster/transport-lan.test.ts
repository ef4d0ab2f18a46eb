// The transport as a node will use it, with separate processes on separate "machines" (network
// namespaces): discovery finds the peer, RPC and git fetch go over SSH, a partition and a heal.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { createInterface } from 'node:readline';
import { createLan, netnsAvailable, NetnsHost } from '../testing/netns.js';
import { Identity } from './identity.js';

const fixture = join(dirname(fileURLToPath(import.meta.url)), 'node.fixture.js');
const skip = !(await netnsAvailable()) && 'needs root and iproute2';
type Ev = Record<string, unknown>;

function startNode(host: NetnsHost, root: string, members: string) {
  const child = host.spawn(process.execPath, [fixture, root, 'blue', members], { stdio: ['ignore', 'pipe', 'inherit'] });
  const events: Ev[] = [];
  const waiters = new Set<() => void>();
  createInterface({ input: child.stdout! }).on('line', (l) => {
    try { events.push(JSON.parse(l)); } catch { events.push({ ev: 'garbage', l }); }
    for (const w of waiters) w();
  });
  const waitFor = (pred: (e: Ev, i: number) => boolean, ms: number, from = 0) =>
    new Promise<Ev>((resolve, reject) => {
      const check = () => {
        const i = events.findIndex((e, j) => j >= from && pred(e, j));
        if (i < 0) return false;
        clearTimeout(t);
        waiters.delete(w);
        resolve(events[i]);
        return true;
      };
      const w = () => void check();
      const t = setTimeout(() => { waiters.delete(w); reject(new Error(`timeout; events: ${JSON.stringify(events.filter((e) => e.event !== 'mdns_warning')).slice(-3000)}`)); }, ms);
      if (!check()) waiters.add(w);
    });
  return { child, events, waitFor };
}

test('two machines: discover, RPC and git fetch over SSH, partition and heal', { skip, timeout: 90_000 }, async () => {
  const dir = await mkdtemp(join(tmpdir(), 'dfs-cl-lan-'));
  const lan = await createLan();
  try {
    const [ha, hb, hc] = [await lan.addHost('a'), await lan.addHost('b'), await lan.addHost('c')];
    const [ia, ib, ic] = await Promise.all(['a', 'b', 'c'].map((n) => Identity.loadOrCreate(join(dir, n))));
    const members = join(dir, 'members');
    await writeFile(members, `${ia.publicKeyLine}\n${ib.publicKeyLine}\n`); // c is not a member
    const a = startNode(ha, join(dir, 'a'), members);
    const b = startNode(hb, join(dir, 'b'), members);
    const c = startNode(hc, join(dir, 'c'), members);
    const fetched = (by: Identity, peer: Identity) => (e: Ev) => e.ev === 'fetched' && e.peer === peer.nodeId && e.head === peer.nodeId;
    const rpcOk = (by: Identity, peer: Identity) => (e: Ev) => e.ev === 'rpc' && e.peer === peer.nodeId && JSON.stringify(e.result) === JSON.stringify({ me: peer.nodeId, you: by.nodeId });
    await a.waitFor(rpcOk(ia, ib), 15_000);
    await b.waitFor(rpcOk(ib, ia), 15_000);
    const fa = await a.waitFor(fetched(ia, ib), 15_000);
    await b.waitFor(fetched(ib, ia), 15_000);
    console.log(`# across namespaces: first rpc ${(Number((a.events.find(rpcOk(ia, ib)) as Ev).ms)).toFixed(1)} ms, git fetch ${Number(fa.ms).toFixed(1)} ms`);
    // c is seen by mDNS but is no member: a never talks to it, and c's attempts are refused.
    await a.waitFor((e) => e.event === 'not_member' && e.nodeId === ic.nodeId, 15_000);
    await a.waitFor((e) => e.event === 'auth_refused' && e.nodeId === ic.nodeId, 15_000);
    assert.ok(!c.events.some((e) => e.ev === 'rpc' || e.ev === 'fetched'));

    // Partition b: a loses it; heal: a finds it again and talks to it over a fresh connection.
    await hb.down();
    await a.waitFor((e) => e.ev === 'lost' && e.nodeId === ib.nodeId, 12_000);
    const mark = a.events.length;
    await hb.up();
    await a.waitFor((e, i) => i >= mark && rpcOk(ia, ib)(e), 15_000, mark);
    await a.waitFor((e, i) => i >= mark && fetched(ia, ib)(e), 15_000, mark);
  } finally {
    await lan.teardown();
    await rm(dir, { recursive: true, force: true });
  }
});

// Safe drops between real nodes' lock services (SSH on loopback, in process): two holders that
// both find their copy surplus at the same moment never take the content below `copies`.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ContentStore } from '../content/store.js';
import { Identity } from '../cluster/identity.js';
import { RpcRegistry } from '../cluster/rpc.js';
import { RpcClient } from '../cluster/rpc-client.js';
import { SshServer } from '../cluster/ssh-server.js';
import type { PeerClients } from '../cluster/peer-clients.js';
import { createLogger } from '../util/log.js';
import { Holdings } from './holdings.js';
import { serveLocks } from './locks.js';
import { ReplicationLoop } from './loop.js';
import { ClusterView } from './view.js';

const X = 'ab'.repeat(20);

test('two holders dropping the same content at once: neither goes below copies', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'dfs-loop-'));
  const names = ['a', 'b', 'c'];
  const nodes: { id: string; store: ContentStore; holdings: Holdings; server: SshServer; identity: Identity }[] = [];
  const clients: RpcClient[] = [];
  try {
    const ids = await Promise.all(names.map((n) => Identity.loadOrCreate(join(dir, n))));
    const members = new Set(ids.map((i) => i.nodeId));
    for (const [k, n] of names.entries()) {
      const store = new ContentStore(join(dir, n, 'content'), join(dir, n, 'tmp'));
      await store.init();
      const t = store.tempPath();
      await writeFile(t, 'x');
      await store.put(t, X);
      const holdings = new Holdings(store, { active: () => [], stats: () => null, drop: async () => {} });
      await holdings.load();
      const rpc = new RpcRegistry();
      serveLocks(rpc, holdings);
      const server = await SshServer.start({ identity: ids[k]!, repoPath: join(dir, 'none.git'), host: '127.0.0.1', port: 0, isMember: (key) => members.has(key.nodeId), rpc, log: () => {} });
      nodes.push({ id: ids[k]!.nodeId, store, holdings, server, identity: ids[k]! });
    }
    const views: ClusterView[] = [];
    /** What an audit poll would tell each node: every other node holds X (as it still does). */
    const poll = () => { for (const v of views) for (const o of nodes) v.holding(o.id, new Set([X])); };
    const loopOf = (me: (typeof nodes)[number]) => {
      const view = new ClusterView({ me: me.id, dir: join(dir, 'view-' + me.id), deadAfterMs: 600_000 });
      views.push(view);
      const byId = new Map<string, RpcClient>();
      for (const o of nodes) {
        if (o === me) continue;
        view.reported(o.id, { total: 1e12, free: 5e11, machine: o.id });
        view.holding(o.id, new Set([X]));
        const c = new RpcClient({ identity: me.identity, host: '127.0.0.1', port: o.server.port, hostFingerprint: o.identity.fingerprint, log: () => {} });
        clients.push(c);
        byId.set(o.id, c);
      }
      const peers = { get: (id: string) => byId.get(id) ?? null, drop: () => {}, close: () => {} } as unknown as PeerClients;
      return new ReplicationLoop({
        me: me.id, holdings: me.holdings, view, clients: peers, log: createLogger({}, 'error'),
        ids: () => [X][Symbol.iterator](), info: () => undefined, placer: () => undefined, busy: () => false, unreferenced: () => {}, members: () => [],
        copies: () => 2, copiesFor: () => () => 2, space: async () => ({ total: 1e12, free: 5e11, available: 5e11, reserved: 0 }), cached: () => new Set(), fetch: () => {},
        nearFull: 0.85, lockMs: 60_000,
      });
    };
    const [la, lb] = [loopOf(nodes[0]!), loopOf(nodes[1]!)];
    const drop = (l: ReplicationLoop) => (l as unknown as { dropSome(b: { id: string; copies: number }[]): Promise<number> }).dropSome([{ id: X, copies: 2 }]);
    // Both think their copy is surplus (two others hold it): at the same moment, each finds the
    // other's copy being dropped (its lock refused), so each has one lock, not two: both keep.
    const [da, db] = await Promise.all([drop(la), drop(lb)]);
    const held = async () => (await Promise.all(nodes.map((n) => n.store.has(X)))).filter(Boolean).length;
    assert.equal(da + db, 0);
    assert.equal(await held(), 3);
    // One after the other (after the audit that follows): the first goes (two others locked),
    // the second finds one other left.
    poll();
    assert.equal(await drop(la), 1);
    assert.equal(await drop(lb), 0);
    assert.equal(await held(), 2);
    assert.ok(!nodes[2]!.holdings.isLocked(X) && !nodes[1]!.holdings.isLocked(X), 'the locks were given back');
  } finally {
    for (const c of clients) c.close();
    for (const n of nodes) {
      n.holdings.close();
      await n.server.close();
    }
    await rm(dir, { recursive: true, force: true });
  }
});

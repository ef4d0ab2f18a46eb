// Content locks over a real SSH connection: held for the connection (released when it closes),
// bounded in number, refused on copies being dropped.
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
import { call } from '../daemon/methods.js';
import { eventually } from '../testing/eventually.js';
import { Holdings, MAX_LOCKS } from './holdings.js';
import { LOCKS_PER_MEMBER, serveLocks } from './locks.js';
import { LOCK_CONTENT, UNLOCK_CONTENT } from './methods.js';

const id = (n: number) => n.toString(16).padStart(40, '0');

test('a lock lasts no longer than the connection that took it; a member holds a bounded number', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'dfs-locks-'));
  const store = new ContentStore(join(dir, 'content'), join(dir, 'tmp'));
  await store.init();
  for (const n of [1, 2]) {
    const t = store.tempPath();
    await writeFile(t, `c${n}`);
    await store.put(t, id(n));
  }
  const holdings = new Holdings(store, { active: () => [], stats: () => null, drop: async () => {} });
  await holdings.load();
  const [a, b] = await Promise.all(['a', 'b'].map((n) => Identity.loadOrCreate(join(dir, n))));
  const rpc = new RpcRegistry();
  serveLocks(rpc, holdings);
  const server = await SshServer.start({ identity: a!, repoPath: join(dir, 'none.git'), host: '127.0.0.1', port: 0, isMember: (k) => k.nodeId === b!.nodeId, rpc, log: () => {} });
  const client = () => new RpcClient({ identity: b!, host: '127.0.0.1', port: server.port, hostFingerprint: a!.fingerprint, log: () => {} });
  try {
    const c1 = client();
    const r = await call(c1, LOCK_CONTENT, { ids: [id(1), id(3)], ms: 60_000 });
    assert.deepEqual(r.locked, [id(1)]);
    assert.deepEqual(r.missing, [id(3)]);
    assert.ok(holdings.isLocked(id(1)));
    // Unlocked explicitly.
    await call(c1, UNLOCK_CONTENT, { token: r.token });
    assert.ok(!holdings.isLocked(id(1)));
    // Held, then the connection goes: released long before the 60 s lease.
    await call(c1, LOCK_CONTENT, { ids: [id(2)], ms: 60_000 });
    assert.ok(holdings.isLocked(id(2)));
    c1.close();
    await eventually('the lock released with its connection', async () => !holdings.isLocked(id(2)), 10_000);

    // Bounded: one member holds at most LOCKS_PER_MEMBER leases (the table has MAX_LOCKS for all).
    const c2 = client();
    for (let k = 0; k < LOCKS_PER_MEMBER; k++) await call(c2, LOCK_CONTENT, { ids: [id(1)], ms: 60_000 });
    await assert.rejects(call(c2, LOCK_CONTENT, { ids: [id(1)], ms: 60_000 }), /locks held by .* already/);
    assert.ok(LOCKS_PER_MEMBER < MAX_LOCKS);
    c2.close();
    await eventually('every lock of the closed connection released', async () => !holdings.isLocked(id(1)), 10_000);
  } finally {
    await server.close();
    holdings.close();
    await rm(dir, { recursive: true, force: true });
  }
});

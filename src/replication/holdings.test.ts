import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ContentStore } from '../content/store.js';
import { RpcRegistry } from '../cluster/rpc.js';
import { LOCAL_PEER } from '../cluster/control-socket.js';
import { Holdings, PartialView } from './holdings.js';
import { serve } from '../daemon/methods.js';
import { ACTIVE_TORRENTS, LOCK_CONTENT, FREESPACE } from './methods.js';

const id = (n: number) => n.toString(16).padStart(40, '0');

async function setup(partials: Map<string, { pieces: number; piecesHave: number; complete: boolean }> = new Map()) {
  const dir = await mkdtemp(join(tmpdir(), 'dfs-hold-'));
  const store = new ContentStore(join(dir, 'content'), join(dir, 'tmp'));
  await store.init();
  const put = async (n: number) => {
    const t = store.tempPath();
    await writeFile(t, `c${n}`);
    await store.put(t, id(n));
  };
  const dropped: string[] = [];
  const swarm: PartialView = { active: () => [...partials.keys()], stats: (i) => partials.get(i) ?? null, drop: async (i) => { dropped.push(i); } };
  let now = 1_000_000;
  const h = new Holdings(store, swarm, () => now);
  return { dir, store, put, h, dropped, tick: (ms: number) => { now += ms; } };
}

test('the index follows the store: held at load, stored and removed later; pages in id order with partials', async () => {
  const partials = new Map([[id(4), { pieces: 10, piecesHave: 3, complete: false }]]);
  const s = await setup(partials);
  try {
    await s.put(5);
    await s.put(1);
    await s.h.load();
    await s.put(3);
    assert.ok(s.h.has(id(1)) && s.h.has(id(3)) && s.h.has(id(5)));
    await s.store.remove(id(5));
    assert.ok(!s.h.has(id(5)));
    const p1 = s.h.page(null, 2);
    assert.deepEqual(p1.items.map((x) => x.id), [id(1), id(3)]);
    assert.equal(p1.next, id(3));
    const p2 = s.h.page(p1.next, 2);
    assert.deepEqual(p2.items, [{ id: id(4), complete: false, pieces: 10, have: 3 }]);
    assert.equal(p2.next, null);
    // Paging from an id no longer held still goes on after it.
    assert.deepEqual(s.h.page(id(2), 10).items.map((x) => x.id), [id(3), id(4)]);
  } finally {
    s.h.close();
    await rm(s.dir, { recursive: true, force: true });
  }
});

test('a locked copy is not dropped until the lock expires or is unlocked; no lock is taken while a drop runs', async () => {
  const s = await setup();
  try {
    await s.put(1);
    await s.put(2);
    await s.h.load();
    const l = s.h.lock([id(1), id(9)], 5000);
    assert.deepEqual(l.locked, [id(1)]);
    assert.deepEqual(l.missing, [id(9)]);
    assert.equal(await s.h.drop(id(1), async () => true), false);
    assert.ok(await s.store.has(id(1)));
    s.tick(5000);
    assert.equal(await s.h.drop(id(1), async () => true), true);
    assert.ok(!(await s.store.has(id(1))));
    assert.deepEqual(s.dropped, [id(1)]);
    // While the drop of 2 waits for its check, a peer's lock on 2 is refused...
    let release!: (ok: boolean) => void;
    const dropping = s.h.drop(id(2), () => new Promise((r) => { release = r; }));
    await new Promise((r) => setImmediate(r));
    assert.deepEqual(s.h.lock([id(2)], 5000).missing, [id(2)]);
    // ... and a check that finds too few copies elsewhere keeps it.
    release(false);
    assert.equal(await dropping, false);
    assert.ok(await s.store.has(id(2)));
    const l2 = s.h.lock([id(2)], 5000);
    assert.deepEqual(l2.locked, [id(2)]);
    s.h.unlock(l2.token);
    assert.equal(s.h.isLocked(id(2)), false);
  } finally {
    s.h.close();
    await rm(s.dir, { recursive: true, force: true });
  }
});

test('replication methods refuse malformed params and check replies', async () => {
  const s = await setup();
  try {
    await s.h.load();
    const rpc = new RpcRegistry();
    serve(rpc, ACTIVE_TORRENTS, (p) => s.h.page(p.after, p.limit));
    serve(rpc, LOCK_CONTENT, (p) => s.h.lock(p.ids, p.ms));
    for (const [m, params] of [
      ['active_torrents', { limit: 0 }], ['active_torrents', { limit: 1e9 }], ['active_torrents', { after: '../x' }], ['active_torrents', [1]],
      ['lock_content', { ids: ['x'], ms: 5000 }], ['lock_content', { ids: [], ms: 10 ** 9 }], ['lock_content', { ids: Array(1001).fill(id(1)), ms: 5000 }], ['lock_content', null],
    ] as const) {
      const r = await rpc.dispatch(m, params, LOCAL_PEER);
      assert.equal(r.ok, false, `${m} ${JSON.stringify(params).slice(0, 50)}`);
      assert.equal(!r.ok && r.error.code, 'malformed');
    }
    const ok = await rpc.dispatch('active_torrents', null, LOCAL_PEER);
    assert.deepEqual(ok, { ok: true, result: { items: [], next: null } });
    // Replies from a peer are checked too.
    assert.throws(() => FREESPACE.result({ nodeId: 'aaaaaaaaaaaaaaaa', total: 10, free: 20, available: 1 }), /larger than the disk/);
    assert.throws(() => ACTIVE_TORRENTS.result({ items: [{ id: id(2), complete: true, pieces: 0, have: 0 }, { id: id(1), complete: true, pieces: 0, have: 0 }], next: null }), /out of order/);
    assert.throws(() => ACTIVE_TORRENTS.result({ items: [{ id: id(1), complete: false, pieces: 2, have: 3 }], next: null }));
    assert.deepEqual(FREESPACE.result({ nodeId: 'aaaaaaaaaaaaaaaa', total: 10, free: 5, available: 4 }), { nodeId: 'aaaaaaaaaaaaaaaa', total: 10, free: 5, available: 4, reserved: 0, own: null });
    assert.throws(() => FREESPACE.result({ nodeId: 'aaaaaaaaaaaaaaaa', total: 10, free: 5, available: 4, own: '--upload-pack=x' }), /own/);
  } finally {
    s.h.close();
    await rm(s.dir, { recursive: true, force: true });
  }
});

test('the sorted index follows stores and removals in place', async () => {
  const s = await setup();
  try {
    for (const n of [8, 2, 6]) await s.put(n);
    await s.h.load();
    assert.deepEqual(s.h.page(null, 10).items.map((x) => x.id), [id(2), id(6), id(8)]);
    await s.put(4);
    await s.put(9);
    await s.put(1);
    await s.store.remove(id(6));
    await s.store.remove(id(7)); // not held: nothing changes
    assert.deepEqual(s.h.page(null, 10).items.map((x) => x.id), [id(1), id(2), id(4), id(8), id(9)]);
    assert.deepEqual(s.h.page(id(4), 10).items.map((x) => x.id), [id(8), id(9)]);
  } finally {
    s.h.close();
    await rm(s.dir, { recursive: true, force: true });
  }
});

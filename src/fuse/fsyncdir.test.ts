// fsync(2) of a directory makes the namespace changes made so far durable (programs rename a
// file into place and then fsync its directory): the FUSE ops driven directly with a real node.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { FuseOps } from './ops.js';
import { IN_HEADER, Op } from './proto.js';
import type { Request } from './session.js';
import { createLayout, paths } from '../node/layout.js';
import { DelugeNode } from '../node/node.js';
import { closeHashers } from '../content/hasher.js';
import { silentLogger } from '../util/log.js';

const dirs: string[] = [];
after(async () => {
  for (const d of dirs) await rm(d, { recursive: true, force: true });
  await closeHashers();
});

test('FSYNCDIR waits for the journal to reach the disk, after the rename it follows', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'dfs-fsyncdir-'));
  dirs.push(dir);
  const p = paths(join(dir, 'root'));
  const node = await DelugeNode.start({ paths: p, config: await createLayout(p, 'c'), log: silentLogger, create: true });
  try {
    const ops = new FuseOps(node, { log: silentLogger });
    const journal = node.ns.journal;
    // Counts fsync(2)s of the journal that finished (the real call runs; nothing is faked).
    const real = journal.sync.bind(journal);
    let synced = 0;
    journal.sync = async () => { await real(); synced++; };
    const fh = await node.create('/f.tmp', 0o644);
    await node.write(fh, Buffer.from('data'), 4, 0);
    await node.flush(fh);
    await node.release(fh);
    await node.rename('/f.tmp', '/f');
    const before = synced;
    // fsync_in: fh, fsync_flags, padding; nodeid 1 is the root directory.
    const body = Buffer.alloc(16);
    const buf = Buffer.concat([Buffer.alloc(IN_HEADER), body]);
    const req: Request = { op: Op.FSYNCDIR, nodeid: 1, uid: 0, gid: 0, pid: 0, buf, len: buf.length };
    await ops.handler(req);
    assert.equal(synced, before + 1, 'fsync of a directory returned without syncing the journal that holds the rename');
  } finally {
    await node.close();
  }
});

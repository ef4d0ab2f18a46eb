// A full disk: every write either fails with ENOSPC/EIO (at write, close or fsync) or is intact
// after a restart, the old version of a file whose rewrite failed stays, a node whose disk is
// full starts and serves reads, and it goes on working once there is room again, without a restart.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs/promises';
import { join } from 'node:path';
import { createHash } from 'node:crypto';
import { sandbox, sh, Sandbox } from '../testing/node-proc.js';
import { runProc } from '../testing/proc.js';

const cleanups: (() => Promise<void>)[] = [];
after(async () => {
  for (const c of cleanups.reverse()) await c().catch(() => {});
});

/** Runs a test body; a failure carries what the nodes logged (debug lines left out). */
async function explained(nodes: { stderr(): string }[], fn: () => Promise<void>): Promise<void> {
  try {
    await fn();
  } catch (e) {
    const logs = nodes.slice(-1).map((n) => n.stderr().split('\n').filter((l) => !l.includes('"debug"')).slice(-40).join('\n'));
    (e as Error).message += `\n--- node logs ---\n${logs.join('\n---\n')}`;
    throw e;
  }
}

/** A sandbox whose root is on a tmpfs of its own of `mib` MiB. */
async function onTmpfs(name: string, mib: number): Promise<{ sb: Sandbox; disk: string; root: string }> {
  const sb = await sandbox(name);
  const disk = join(sb.dir, 'disk');
  await fs.mkdir(disk);
  await sh(`mount -t tmpfs -o size=${mib}m tmpfs ${disk}`);
  // Registered first, run last: the node stops before its disk goes.
  cleanups.push(async () => {
    await sh(`umount -l ${disk}`, { allowFail: true });
    await fs.rm(sb.dir, { recursive: true, force: true });
  });
  cleanups.push(() => sb.cleanup());
  return { sb, disk, root: join(disk, 'root') };
}

test('ENOSPC loses nothing', async () => {
  const { sb, root } = await onTmpfs('dfs-full', 48);
  const node = await sb.start([], { create: true, root });
  await explained([node], async () => {
  const m = (p: string) => join(sb.mnt, p);
  const v1 = Buffer.alloc(20 << 20, 1);
  await fs.writeFile(m('keep'), v1);
  await assert.rejects(fs.writeFile(m('keep'), Buffer.alloc(40 << 20, 2)), { code: 'ENOSPC' });
  assert.ok((await fs.readFile(m('keep'))).equals(v1), 'old version damaged');
  await assert.rejects(fs.writeFile(m('other'), Buffer.alloc(40 << 20, 3)), { code: 'ENOSPC' });
  // release(2) reaches the node after close() returned: give it a moment.
  for (let i = 0; i < 20 && (await fs.readdir(join(root, 'tmp'))).length; i++) await new Promise((r) => setTimeout(r, 100));
  assert.deepEqual(await fs.readdir(join(root, 'tmp')), [], 'temp files left behind');
  await fs.rm(m('other'), { force: true });
  await fs.rm(m('keep'));
  await new Promise((r) => setTimeout(r, 1500));
  await fs.writeFile(m('after'), Buffer.alloc(30 << 20, 4));
  assert.ok((await fs.readFile(m('after'))).equals(Buffer.alloc(30 << 20, 4)));
  });
});

// Writes through the mount with plain system calls and prints, per file, whether every call
// succeeded (and the SHA-256 of what was written) or which call failed with which errno.
const WRITER = `
import errno, hashlib, json, os, sys
d, mode = sys.argv[1], sys.argv[2]
def put(name, size, sync, rw=False):
    data = os.urandom(size)
    stage, fd = 'open', None
    try:
        # O_RDWR goes through the kernel's page cache (O_WRONLY handles bypass it).
        fd = os.open(os.path.join(d, name), (os.O_RDWR if rw else os.O_WRONLY) | os.O_CREAT | os.O_TRUNC, 0o644)
        stage = 'write'
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view[:1 << 20]):]
        if sync:
            stage = 'fsync'
            os.fsync(fd)
        stage = 'close'
        f, fd = fd, None
        os.close(f)
        r = {'ok': True, 'sha': hashlib.sha256(data).hexdigest()}
    except OSError as e:
        if fd is not None:
            try: os.close(fd)
            except OSError: pass
        r = {'ok': False, 'stage': stage, 'errno': errno.errorcode.get(e.errno, str(e.errno))}
    r.update(name=name, size=size, sync=sync)
    print(json.dumps(r), flush=True)
    return r['ok']
def inplace(name):
    # Same bytes count, same place, through the page cache: only the content changes.
    stage, fd = 'open', None
    try:
        fd = os.open(os.path.join(d, name), os.O_RDWR)
        size = os.fstat(fd).st_size
        data = os.urandom(size)
        stage = 'write'
        os.pwrite(fd, data, 0)
        stage = 'close'
        f, fd = fd, None
        os.close(f)
        r = {'ok': True, 'sha': hashlib.sha256(data).hexdigest()}
    except OSError as e:
        if fd is not None:
            try: os.close(fd)
            except OSError: pass
        r = {'ok': False, 'stage': stage, 'errno': errno.errorcode.get(e.errno, str(e.errno))}
    r.update(name=name, size=-1, sync=False)
    print(json.dumps(r), flush=True)
if mode == 'fill':
    # Large and small files, fsync and not, rewrites of earlier ones; on past the first failure.
    sizes = [100, 4000, 60000, 200000, 700000, 2500000, 100, 30000, 1500000]
    first_fail, i = None, 0
    while i < 400 and (first_fail is None or i - first_fail < 60):
        name = 'f%d' % (i - 5) if i % 5 == 4 else 'f%d' % i
        if not put(name, sizes[i % len(sizes)], i % 3 == 0) and first_fail is None:
            first_fail = i
        i += 1
    # Many small files: these ride in the journal.
    for j in range(300):
        put('m%d' % j, 40 + j * 7, j % 7 == 0)
else:
    # A few of each kind, e.g. once there is room again; rewrites of the given names through the page cache.
    for j, size in enumerate([10, 5000, 100000, 3000000]):
        put('%s%d' % (mode, j), size, j % 2 == 0)
    for name in sys.argv[3:]:
        if name.startswith('inplace:'):
            inplace(name[8:])
        else:
            put(name, 3000000, False, True)
`;

interface Result { ok: boolean; name: string; size: number; sync: boolean; sha?: string; stage?: string; errno?: string }

async function writer(dir: string, mode: string, rewrite: string[] = []): Promise<Result[]> {
  const r = await runProc('/usr/bin/python3', ['-c', WRITER, dir, mode, ...rewrite], { timeoutMs: 300_000 });
  assert.equal(r.code, 0, r.stderr);
  return r.stdout.split('\n').filter(Boolean).map((l) => JSON.parse(l) as Result);
}

const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');

/** A read that does not finish in time fails the test (content that is gone made reads hang). */
function readOrFail(path: string, ms = 20_000): Promise<Buffer> {
  let timer: NodeJS.Timeout;
  const late = new Promise<never>((_, reject) => { timer = setTimeout(() => reject(new Error(`reading ${path} hangs`)), ms); });
  return Promise.race([fs.readFile(path), late]).finally(() => clearTimeout(timer));
}

/** What each name must hold: the last version whose every call succeeded; null: none did. */
function expected(results: Result[], into = new Map<string, string | null>()): Map<string, string | null> {
  for (const r of results) {
    if (r.ok) into.set(r.name, r.sha!);
    else if (!into.has(r.name)) into.set(r.name, null);
  }
  return into;
}

/** Every file whose close returned 0 is intact; one that never got a good close is absent or empty (its create). */
async function check(mnt: string, want: Map<string, string | null>, when: string): Promise<void> {
  const listed = new Set(await fs.readdir(mnt));
  for (const [name, hash] of want) {
    if (hash === null) {
      if (listed.has(name)) assert.equal((await fs.stat(join(mnt, name))).size, 0, `${when}: ${name} never closed well but is not empty`);
      continue;
    }
    assert.ok(listed.has(name), `${when}: ${name} is missing`);
    assert.equal(sha(await readOrFail(join(mnt, name))), hash, `${when}: ${name} differs from what its last good close wrote`);
  }
  for (const name of listed) assert.ok(want.has(name), `${when}: ${name} listed but never written`);
}

test('full disk: a close that returned 0 kept its file, every failure is ENOSPC/EIO, a full node starts and serves reads, freed space is used at once', { timeout: 600_000 }, async (t) => {
  const { sb, disk, root } = await onTmpfs('dfs-fill', 24);
  const node = await sb.start([], { create: true, root });
  const nodes = [node];
  await explained(nodes, async () => {
  const fill = await writer(sb.mnt, 'fill');
  const failed = fill.filter((r) => !r.ok);
  const by = new Map<string, number>();
  for (const r of failed) by.set(`${r.errno} at ${r.stage}${r.sync ? ' (fsync)' : ''}`, (by.get(`${r.errno} at ${r.stage}${r.sync ? ' (fsync)' : ''}`) ?? 0) + 1);
  t.diagnostic(`fill: ${fill.length - failed.length} files closed well, ${failed.length} failed: ${[...by].map(([k, n]) => `${n} ${k}`).join(', ')}`);
  assert.ok(failed.length > 10, `the disk never filled: ${failed.length} failures`);
  assert.ok(fill.filter((r) => r.ok).length > 10, 'hardly anything was written');
  for (const r of failed) {
    assert.ok(['ENOSPC', 'EIO'].includes(r.errno!), `${r.name}: ${r.errno} at ${r.stage}`);
    // open(O_CREAT) may fail too: the create itself is journaled.
    assert.ok(['open', 'write', 'fsync', 'close'].includes(r.stage!), `${r.name}: failed at ${r.stage}`);
  }
  const want = expected(fill);
  await check(sb.mnt, want, 'before the restart');
  assert.ok(fill.some((r) => !r.ok && r.size >= 1 << 20) && fill.some((r) => !r.ok && r.size < 1000), 'both large and small writes must have met the full disk');

  // Crash while full: the journal holds small files the store has no room for. Then make sure
  // nothing is left, and start again on the full disk.
  await node.kill9();
  await sh(`dd if=/dev/zero of=${disk}/filler bs=4k 2>/dev/null`, { allowFail: true });
  const full = await sh(`df -B1 --output=avail ${disk} | tail -1`);
  assert.ok(Number(full.out.trim()) < 64 * 1024, `disk not full: ${full.out}`);
  // Another SSH port than before: the node's own member record changes, which a full journal cannot take.
  const again = await sb.start(['--ssh-port', '7600'], { root });
  nodes.push(again);
  await check(sb.mnt, want, 'after a restart on a full disk');

  // Still full (the start may have swept content no entry uses, so fill what it freed): new
  // writes fail cleanly, and what was there stays.
  await sh(`dd if=/dev/zero of=${disk}/filler1 bs=4k 2>/dev/null`, { allowFail: true });
  const good = [...want].filter(([, h]) => h !== null).map(([n]) => n);
  const mid = fill.filter((r) => r.ok && r.size === 200000 && want.get(r.name) === r.sha).map((r) => r.name);
  // Read first, so the kernel caches their pages; the rewrites fail; the old bytes must show.
  for (const n of [...good.slice(0, 3), ...mid]) await readOrFail(join(sb.mnt, n));
  const whileFull = await writer(sb.mnt, 'full', [...good.slice(0, 3), ...mid.map((n) => `inplace:${n}`)]);
  assert.ok(whileFull.some((r) => !r.ok && r.size === -1), 'no in-place rewrite met the full disk');
  for (const r of whileFull) if (!r.ok) assert.ok(['ENOSPC', 'EIO'].includes(r.errno!), `${r.name}: ${r.errno} at ${r.stage}`);
  assert.ok(whileFull.some((r) => !r.ok), 'writes on a full disk did not fail');
  expected(whileFull, want);
  await check(sb.mnt, want, 'after writes on the full disk');

  // A clean stop on the full disk, and a start after it, still full.
  assert.equal(await again.stop(), 0, again.stderr());
  await sh(`dd if=/dev/zero of=${disk}/filler2 bs=4k 2>/dev/null`, { allowFail: true });
  const fourth = await sb.start(['--ssh-port', '7700'], { root });
  nodes.push(fourth);
  await check(sb.mnt, want, 'after a clean stop and a start on a full disk');

  // Room again, through the mount: deleting large files frees their space within moments (no
  // commit can be made yet), and writes work again, no restart.
  const large = fill.filter((r) => r.ok && r.size >= 1 << 20 && want.get(r.name) === r.sha).map((r) => r.name);
  assert.ok(large.length >= 4, 'too few large files were written');
  for (const n of large) {
    await fs.rm(join(sb.mnt, n));
    want.delete(n);
  }
  const avail = async () => Number((await sh(`df -B1 --output=avail ${disk} | tail -1`)).out.trim());
  for (let i = 0; i < 100 && (await avail()) < 4 << 20; i++) await new Promise((r) => setTimeout(r, 200));
  assert.ok((await avail()) >= 4 << 20, `deleting files freed no space: ${await avail()} bytes free`);
  const later = await writer(sb.mnt, 'later');
  assert.deepEqual(later.filter((r) => !r.ok), [], 'writes fail after space was freed');
  expected(later, want);
  await check(sb.mnt, want, 'after space was freed');

  // And everything is durable: a clean stop, a restart, the same files, a sound repository.
  assert.equal(await fourth.stop(), 0, fourth.stderr());
  const third = await sb.start([], { root });
  nodes.push(third);
  await check(sb.mnt, want, 'after the last restart');
  assert.equal(await third.stop(), 0, third.stderr());
  const fsck = await sh(`git --git-dir ${root}/meta/repo.git fsck --strict`, { allowFail: true });
  assert.equal(fsck.code, 0, fsck.err);
  });
});

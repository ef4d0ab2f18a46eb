// FUSE passthrough on a real mount (--passthrough): read-only opens of verified local content are
// handed to the kernel (backing file: the store file) and mmap works;
// beside an open passthrough handle a write-only open works and a newer version reads right (the
// kernel's io-mode rules fail a wrong answer with EIO), a read-write open is refused with ETXTBSY
// (a shared map would write into the stored copy), and nothing of the stored copy changes.
// Without the flag every read goes through the node.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs/promises';
import { spawn } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { sandbox, sh, Sandbox, NodeProc } from '../testing/node-proc.js';
import { freePort } from '../testing/free-port.js';
import { Passthrough } from './passthrough.js';
import { FOPEN_DIRECT_IO, FOPEN_KEEP_CACHE, FOPEN_PASSTHROUGH } from './proto.js';
import { createLogger } from '../util/log.js';

const boxes: Sandbox[] = [];
after(async () => {
  for (const b of boxes) await b.cleanup();
});

const sha1 = (b: Buffer): string => createHash('sha1').update(b).digest('hex');
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** What the kernel says about passthrough here: Linux 6.9+ built with it. */
async function kernelHasPassthrough(): Promise<boolean> {
  const [maj, min] = (await fs.readFile('/proc/sys/kernel/osrelease', 'utf8')).split('.').map(Number);
  if (maj! < 6 || (maj === 6 && min! < 9)) return false;
  const cfg = await sh('zcat /proc/config.gz 2>/dev/null || cat /boot/config-$(uname -r) 2>/dev/null', { allowFail: true });
  return /^CONFIG_FUSE_PASSTHROUGH=y/m.test(cfg.out);
}

async function start(name: string, extra: string[] = []): Promise<{ sb: Sandbox; node: NodeProc; port: number }> {
  const sb = await sandbox(name);
  boxes.push(sb);
  const port = await freePort();
  const node = await sb.start(['--web-port', String(port), ...extra], { create: true });
  return { sb, node, port };
}

/** FUSE READ requests the node answered so far (its /metrics, which it renders at most every 2 s). */
async function reads(port: number): Promise<number> {
  await sleep(2100);
  const text = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
  const m = text.match(/^delugefs_fuse_requests_total\{op="read"\} (\d+)$/m);
  return m ? Number(m[1]) : 0;
}

/** Reads the file cold (the page cache dropped first): its sha1. */
const coldSha = async (path: string) => (await sh(`echo 3 > /proc/sys/vm/drop_caches; sha1sum < ${path}`)).out.split(' ')[0];

const ddSha = async (path: string) => (await sh(`dd if=${path} bs=1M iflag=direct status=none | sha1sum`)).out.split(' ')[0];

test('--passthrough: verified local content opens in passthrough; mmap, a write-only open and a newer version beside it work, read-write is refused', { timeout: 120_000 }, async () => {
  const { sb, node, port } = await start('dfs-passthrough', ['--passthrough']);
  const f = join(sb.mnt, 'f');
  const data = randomBytes(8 << 20);
  await fs.writeFile(f, data);
  await sleep(300);
  if (!(await kernelHasPassthrough())) {
    // Debian 12's 6.1 and the like: the node says why, and reads go through it as before.
    assert.match(node.stderr(), /"fuse\.passthrough".*"on":false.*"why":"the kernel does not offer it/);
    assert.equal(await ddSha(f), sha1(data));
    return;
  }
  assert.match(node.stderr(), /"fuse\.passthrough".*"on":true/);
  // The first read goes through the node, which verifies every piece; from then on opens are passthrough.
  assert.equal(sha1(await fs.readFile(f)), sha1(data));
  const r0 = await reads(port);
  assert.equal(await coldSha(f), sha1(data));
  assert.equal(await ddSha(f), sha1(data));
  assert.ok((await reads(port)) - r0 <= 1, 'reads of a passthrough file reached the node');
  const mm = await sh(`python3 -c "import mmap,hashlib,sys; f=open('${f}','rb'); m=mmap.mmap(f.fileno(),0,prot=mmap.PROT_READ); print(hashlib.sha1(m[:]).hexdigest())"`);
  assert.equal(mm.out.trim(), sha1(data), 'mmap of a passthrough file');
  // A handle held open in passthrough while the same inode is opened to write: read-write is
  // refused (a shared map of it would write into the stored copy), write-only works.
  const holder = spawn('sh', ['-c', `exec 3< '${f}'; read x; echo done`], { stdio: ['pipe', 'pipe', 'inherit'] });
  await sleep(300);
  await assert.rejects(fs.open(f, 'r+'), (e: NodeJS.ErrnoException) => e.code === 'ETXTBSY');
  const w = await fs.open(f, fs.constants.O_WRONLY);
  await w.write(Buffer.from('XY'), 0, 2, 0);
  await w.close();
  const v2 = Buffer.concat([Buffer.from('XY'), data.subarray(2)]);
  await sleep(300);
  // No stored copy holds bytes of neither version (nothing wrote through the backing file).
  const stored = (await sh(`find ${sb.root}/content -type f -size +7M`)).out.trim().split('\n').filter(Boolean);
  for (const p of stored) assert.ok([sha1(data), sha1(v2)].includes(sha1(await fs.readFile(p))), `${p} holds bytes of neither version`);
  // The newer version beside the held handle (direct_io through the node), then after it closed.
  const r1 = await reads(port);
  assert.equal(await coldSha(f), sha1(v2));
  assert.ok((await reads(port)) - r1 >= 8, 'the newer version was not read through the node');
  holder.stdin!.end('\n');
  await new Promise((r) => holder.once('exit', r));
  await sleep(300);
  assert.equal(sha1(await fs.readFile(f)), sha1(v2));
  assert.equal(await ddSha(f), sha1(v2));
  assert.equal(await node.stop(), 0);
});

test('without --passthrough: off, and a read-write open beside a reader works as on any filesystem', { timeout: 60_000 }, async () => {
  const { sb, node, port } = await start('dfs-no-passthrough');
  const f = join(sb.mnt, 'f');
  const data = randomBytes(4 << 20);
  await fs.writeFile(f, data);
  assert.equal(sha1(await fs.readFile(f)), sha1(data));
  assert.match(node.stderr(), /"fuse\.passthrough".*"on":false.*"why":"not asked for \(--passthrough\)"/);
  const r0 = await reads(port);
  assert.equal(await coldSha(f), sha1(data));
  assert.ok((await reads(port)) - r0 >= 4, 'reads did not reach the node');
  const holder = spawn('sh', ['-c', `exec 3< '${f}'; read x; echo done`], { stdio: ['pipe', 'pipe', 'inherit'] });
  await sleep(300);
  const w = await fs.open(f, 'r+');
  await w.write(Buffer.from('XY'), 0, 2, 0);
  await w.close();
  holder.stdin!.end('\n');
  await new Promise((r) => holder.once('exit', r));
  assert.equal(sha1(await fs.readFile(f)), sha1(Buffer.concat([Buffer.from('XY'), data.subarray(2)])));
  assert.equal(await node.stop(), 0);
});

test('io modes per inode: cached and passthrough opens never mix, one backing file per inode, closed with its last open', () => {
  const opened: number[] = [];
  const closed: number[] = [];
  let next = 10;
  const p = new Passthrough({ open: (fd) => (opened.push(fd), next++), close: (id) => (closed.push(id), 0) }, createLogger({}, 'error'));
  p.on = true;
  const A = { fd: 5, content: 'a' };
  // Inode 1: two passthrough opens share one backing file; a read-write open beside them is refused.
  assert.deepEqual(p.open(1, 100, 0, A), { flags: FOPEN_PASSTHROUGH, backing: 10 });
  assert.deepEqual(p.open(1, 101, FOPEN_KEEP_CACHE, { fd: 6, content: 'a' }), { flags: FOPEN_PASSTHROUGH, backing: 10 });
  assert.deepEqual(opened, [5]);
  // A writer, and another version of the inode, are direct_io naming the same backing file.
  assert.throws(() => p.open(1, 104, 0, null, 'rw'), (e: { code?: string }) => e.code === 'ETXTBSY');
  assert.deepEqual(p.open(1, 102, FOPEN_DIRECT_IO, null, 'w'), { flags: FOPEN_DIRECT_IO | FOPEN_PASSTHROUGH, backing: 10 });
  assert.deepEqual(p.open(1, 103, 0, { fd: 7, content: 'b' }), { flags: FOPEN_DIRECT_IO | FOPEN_PASSTHROUGH, backing: 10 });
  p.release(100);
  p.release(102);
  p.release(103);
  assert.deepEqual(closed, []);
  p.release(101);
  assert.deepEqual(closed, [10], 'backing file closed with the last passthrough open');
  // Inode 2: a cached open first; a verified reader then gets no passthrough until it is released.
  assert.deepEqual(p.open(2, 200, FOPEN_KEEP_CACHE, null), { flags: FOPEN_KEEP_CACHE, backing: 0 });
  assert.deepEqual(p.open(2, 201, 0, A), { flags: 0, backing: 0 });
  p.release(200);
  p.release(201);
  assert.deepEqual(p.open(2, 202, 0, A), { flags: FOPEN_PASSTHROUGH, backing: 11 });
  // Write-only handles are direct_io already and count for nothing.
  assert.deepEqual(p.open(3, 300, FOPEN_DIRECT_IO, null), { flags: FOPEN_DIRECT_IO, backing: 0 });
  assert.deepEqual(p.counts, { opens: 1, backing: 1 });
  // The kernel refuses backing files (no CAP_SYS_ADMIN): passthrough is off for good, opens are cached.
  const q = new Passthrough({ open: () => -1, close: () => 0 }, createLogger({}, 'error'));
  q.on = true;
  assert.deepEqual(q.open(1, 1, 0, A), { flags: 0, backing: 0 });
  assert.equal(q.on, false);
});

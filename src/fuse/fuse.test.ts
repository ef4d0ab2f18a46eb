// End-to-end: a real FUSE mount served by a `delugefs` child process, driven from this process.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs/promises';
import { constants as C } from 'node:fs';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { sandbox, sh, Sandbox, NodeProc } from '../testing/node-proc.js';
import { runProc } from '../testing/proc.js';
import { eventually } from '../testing/eventually.js';

let sb: Sandbox;
let node: NodeProc;
const m = (p: string) => join(sb.mnt, p);

before(async () => {
  sb = await sandbox('dfs-fuse');
  node = await sb.start([], { create: true });
});
after(async () => {
  await sb.cleanup();
});

async function storeFiles(): Promise<string[]> {
  const out: string[] = [];
  for (const d of await fs.readdir(join(sb.root, 'content'))) out.push(...(await fs.readdir(join(sb.root, 'content', d))));
  return out;
}

test('create, write, read, stat and list', async () => {
  const data = randomBytes(300_000);
  await fs.writeFile(m('a.bin'), data);
  assert.ok((await fs.readFile(m('a.bin'))).equals(data));
  const st = await fs.stat(m('a.bin'));
  assert.equal(st.size, data.length);
  assert.ok(st.isFile());
  assert.ok((await fs.readdir(sb.mnt)).includes('a.bin'));
  await fs.writeFile(m('empty'), '');
  assert.equal((await fs.stat(m('empty'))).size, 0);
  assert.equal((await fs.readFile(m('empty'))).length, 0);
});

test('directories: mkdir, nested files, rmdir of a non-empty directory fails, rename of a directory', async () => {
  await fs.mkdir(m('d1/d2'), { recursive: true });
  await fs.writeFile(m('d1/d2/f'), 'x');
  await assert.rejects(fs.rmdir(m('d1')), { code: 'ENOTEMPTY' });
  await assert.rejects(fs.mkdir(m('d1')), { code: 'EEXIST' });
  await fs.rename(m('d1'), m('d3'));
  assert.equal(await fs.readFile(m('d3/d2/f'), 'utf8'), 'x');
  await assert.rejects(fs.stat(m('d1')), { code: 'ENOENT' });
  await fs.rm(m('d3/d2/f'));
  await fs.rmdir(m('d3/d2'));
  await fs.rmdir(m('d3'));
  await assert.rejects(fs.unlink(m('nope')), { code: 'ENOENT' });
  await fs.mkdir(m('emptydir'));
  await assert.rejects(fs.unlink(m('emptydir')), (e: NodeJS.ErrnoException) => e.code === 'EISDIR' || e.code === 'EPERM');
});

test('rename over an existing file replaces it', async () => {
  await fs.writeFile(m('r1'), 'one');
  await fs.writeFile(m('r2'), 'two');
  await fs.rename(m('r1'), m('r2'));
  assert.equal(await fs.readFile(m('r2'), 'utf8'), 'one');
  await assert.rejects(fs.stat(m('r1')), { code: 'ENOENT' });
});

test('symlinks, chmod, chown, utimens, access, statfs; hard links', async () => {
  await fs.writeFile(m('t'), 'target');
  await fs.symlink('t', m('ln'));
  assert.equal(await fs.readlink(m('ln')), 't');
  assert.equal(await fs.readFile(m('ln'), 'utf8'), 'target');
  assert.ok((await fs.lstat(m('ln'))).isSymbolicLink());
  await fs.chmod(m('t'), 0o600);
  assert.equal((await fs.stat(m('t'))).mode & 0o7777, 0o600);
  await fs.chown(m('t'), 1234, 5678);
  const st = await fs.stat(m('t'));
  assert.equal(st.uid, 1234);
  assert.equal(st.gid, 5678);
  // Times keep millisecond resolution (what the namespace stores).
  const when = new Date('2020-01-02T03:04:05.500Z');
  await fs.utimes(m('t'), when, when);
  assert.equal((await fs.stat(m('t'))).mtimeMs, when.getTime());
  await fs.access(m('t'), C.R_OK);
  await assert.rejects(fs.access(m('missing')), { code: 'ENOENT' });
  const df = await sh(`df -B1 --output=size ${sb.mnt} | tail -1`);
  assert.ok(Number(df.out.trim()) > 0);
  await fs.link(m('t'), m('hard')); // links.test.ts covers them whole
  assert.equal((await fs.stat(m('hard'))).ino, (await fs.stat(m('t'))).ino);
  assert.equal((await fs.stat(m('t'))).nlink, 2);
  await fs.unlink(m('hard'));
});

test('truncate, ftruncate, O_APPEND, O_TRUNC and fsync behave as on a local filesystem', async () => {
  await fs.writeFile(m('tr'), '0123456789');
  await fs.truncate(m('tr'), 4);
  assert.equal(await fs.readFile(m('tr'), 'utf8'), '0123');
  await fs.truncate(m('tr'), 6);
  assert.deepEqual([...(await fs.readFile(m('tr')))], [48, 49, 50, 51, 0, 0]);
  const fh = await fs.open(m('tr'), 'r+');
  await fh.truncate(2);
  await fh.write('ab', 2);
  await fh.sync();
  await fh.close();
  assert.equal(await fs.readFile(m('tr'), 'utf8'), '01ab');
  await fs.appendFile(m('tr'), 'XY');
  await fs.appendFile(m('tr'), 'Z');
  assert.equal(await fs.readFile(m('tr'), 'utf8'), '01abXYZ');
  await fs.writeFile(m('tr'), 'new'); // O_TRUNC
  assert.equal(await fs.readFile(m('tr'), 'utf8'), 'new');
  // Overwrite in the middle without truncating keeps the rest (copy on write).
  const big = randomBytes(1 << 20);
  await fs.writeFile(m('cow'), big);
  const w = await fs.open(m('cow'), 'r+');
  await w.write(Buffer.from('HELLO'), 0, 5, 500_000);
  await w.close();
  big.write('HELLO', 500_000);
  assert.ok((await fs.readFile(m('cow'))).equals(big));
});

test('a reader of the old version keeps reading it while the file is replaced (atomic save)', async () => {
  await fs.writeFile(m('ver'), Buffer.alloc(4 << 20, 1));
  const r = await fs.open(m('ver'), 'r');
  const head = Buffer.alloc(4096);
  await r.read(head, 0, 4096, 0);
  await fs.writeFile(m('ver.tmp'), Buffer.alloc(4 << 20, 2));
  await fs.rename(m('ver.tmp'), m('ver'));
  const tail = Buffer.alloc(1 << 20);
  await r.read(tail, 0, tail.length, 3 << 20);
  await r.close();
  assert.ok(tail.equals(Buffer.alloc(1 << 20, 1)), 'old reader saw new bytes');
  assert.ok((await fs.readFile(m('ver'))).equals(Buffer.alloc(4 << 20, 2)));
});

test('kernel protocol details: fstat/ftruncate after unlink, . and .., RENAME_NOREPLACE, non-UTF-8 names, O_EXCL, O_APPEND, old times', async () => {
  await fs.mkdir(m('proto'));
  await fs.writeFile(m('proto/keep'), 'kept bytes');
  await fs.writeFile(m('proto/b'), 'b');
  const py = `
import os, sys, ctypes, errno
d = sys.argv[1]
out = []
# An open file that is unlinked: fstat and read go on through the handle.
fd = os.open(d + '/keep', os.O_RDONLY)
os.unlink(d + '/keep')
out.append(('fstat', os.fstat(fd).st_size, os.pread(fd, 100, 0).decode()))
os.close(fd)
# A file written, unlinked while still open for writing: fstat shows its current size.
fd = os.open(d + '/w', os.O_RDWR | os.O_CREAT, 0o644)
os.write(fd, b'x' * 5000)
os.unlink(d + '/w')
out.append(('fstat-w', os.fstat(fd).st_size))
os.close(fd)
# renameat2(RENAME_NOREPLACE): refused over an existing name, done otherwise.
libc = ctypes.CDLL(None, use_errno=True)
AT = -100
def r2(a, b):
    rc = libc.renameat2(AT, (d + '/' + a).encode(), AT, (d + '/' + b).encode(), 1)
    return 0 if rc == 0 else ctypes.get_errno()
open(d + '/a', 'w').write('a')
out.append(('noreplace-exists', errno.errorcode.get(r2('a', 'b'))))
out.append(('noreplace-free', r2('a', 'c'), sorted(os.listdir(d))))
# Names that are not UTF-8 cannot be stored: refused, nothing created.
try:
    os.open(d.encode() + b'/bad\\xff', os.O_CREAT | os.O_WRONLY, 0o644)
    out.append(('bad-name', 'created'))
except OSError as e:
    out.append(('bad-name', errno.errorcode[e.errno]))
try:
    os.open(d + '/b', os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
    out.append(('excl', 'opened'))
except OSError as e:
    out.append(('excl', errno.errorcode[e.errno]))
# ftruncate, fchmod and fstat's link count on a file unlinked while open (temp-file pattern).
fd = os.open(d + '/tmpfile', os.O_RDWR | os.O_CREAT, 0o644)
os.unlink(d + '/tmpfile')
os.write(fd, b'y' * 100)
os.ftruncate(fd, 10)
os.fchmod(fd, 0o600)
st = os.fstat(fd)
out.append(('unlinked', st.st_size, st.st_nlink))
os.close(fd)
# Two handles appending to one file: each appends to its own version, no hole of zeros.
a = os.open(d + '/log', os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
os.write(a, b'aaa')
b = os.open(d + '/log', os.O_WRONLY | os.O_APPEND)
os.write(b, b'bbbbbb')
os.close(b)
os.write(a, b'c')
os.close(a)
out.append(('append', open(d + '/log', 'rb').read().decode()))
os.unlink(d + '/log')
# Times before 1970.
open(d + '/old', 'w').close()
os.utime(d + '/old', (-315619200, -315619200))
out.append(('old', os.stat(d + '/old').st_mtime))
os.unlink(d + '/old')
import json
print(json.dumps(out))
`;
  const r = await runProc('python3', ['-c', py, m('proto')], { timeoutMs: 60_000 });
  assert.equal(r.code, 0, r.stderr);
  assert.deepEqual(JSON.parse(r.stdout), [
    ['fstat', 10, 'kept bytes'], ['fstat-w', 5000], ['noreplace-exists', 'EEXIST'], ['noreplace-free', 0, ['b', 'c']],
    ['bad-name', 'EINVAL'], ['excl', 'EEXIST'], ['unlinked', 10, 0], ['append', 'aaac'], ['old', -315619200],
  ]);
  assert.equal(await fs.readFile(m('proto/b'), 'utf8'), 'b');
  // readdir has . and .. like any POSIX filesystem (readdir() in node hides them).
  assert.deepEqual((await sh(`ls -a ${m('proto')}`)).out.split('\n').filter(Boolean), ['.', '..', 'b', 'c']);
});

test('shared writable mmap: the bytes are stored, with and without msync', async () => {
  await fs.writeFile(m('mapped'), Buffer.alloc(10_000, 0x30));
  const py = `
import mmap, os, sys
p = sys.argv[1]
fd = os.open(p, os.O_RDWR)
mm = mmap.mmap(fd, 10000)
mm[100:105] = b'HELLO'
mm.flush(); mm.close(); os.close(fd)
fd = os.open(p, os.O_RDWR)
mm = mmap.mmap(fd, 10000)
mm[200:205] = b'WORLD'
mm.close(); os.close(fd)
# What the node stores, not the kernel's page cache: O_DIRECT reads go to DelugeFS.
fd = os.open(p, os.O_RDONLY | os.O_DIRECT)
buf = mmap.mmap(-1, 16384)
n = os.preadv(fd, [buf], 0)
sys.stdout.write(buf[:n].decode())
`;
  const r = await runProc('python3', ['-c', py, m('mapped')], { timeoutMs: 60_000 });
  assert.equal(r.code, 0, r.stderr);
  const want = Buffer.alloc(10_000, 0x30);
  want.write('HELLO', 100);
  want.write('WORLD', 200);
  assert.equal(r.stdout, want.toString(), 'stored bytes');
  assert.ok((await fs.readFile(m('mapped'))).equals(want));
});

test('copy on write: an in-place rewrite does not reach a reader that bypasses the page cache', async () => {
  // The kernel page cache is shared per path; O_DIRECT shows what DelugeFS serves each handle.
  await fs.writeFile(m('inplace'), Buffer.alloc(4 << 20, 1));
  const py = `
import os, mmap, sys
fd = os.open(sys.argv[1], os.O_RDONLY | os.O_DIRECT)
buf = mmap.mmap(-1, 1 << 20)
os.preadv(fd, [buf], 0)
sys.stdout.write('opened\\n'); sys.stdout.flush()
sys.stdin.readline()
n = os.preadv(fd, [buf], 3 << 20)
print(n, set(buf[:n]))
`;
  const { spawn } = await import('node:child_process');
  const p = spawn('/usr/bin/python3', ['-c', py, m('inplace')], { stdio: ['pipe', 'pipe', 'inherit'] });
  let out = '';
  p.stdout.on('data', (b: Buffer) => (out += b.toString()));
  while (!out.includes('opened')) await new Promise((r) => setTimeout(r, 20));
  const w = await fs.open(m('inplace'), 'r+');
  await w.write(Buffer.alloc(4 << 20, 2), 0, 4 << 20, 0);
  await w.close();
  p.stdin.end('go\n');
  await new Promise((r) => p.on('close', r));
  assert.match(out, /1048576 \{1\}/);
  assert.ok((await fs.readFile(m('inplace'))).equals(Buffer.alloc(4 << 20, 2)));
});

test('two writers of one path: the last close wins and nothing is mixed', async () => {
  const a = await fs.open(m('race'), 'w');
  const b = await fs.open(m('race'), 'w');
  await a.write(Buffer.alloc(100_000, 0x61), 0, 100_000, 0);
  await b.write(Buffer.alloc(50_000, 0x62), 0, 50_000, 0);
  await a.close();
  await b.close();
  assert.ok((await fs.readFile(m('race'))).equals(Buffer.alloc(50_000, 0x62)));
});

test('identical content is stored once, and content nothing references is removed', async () => {
  const data = randomBytes(200_000);
  const before = new Set(await storeFiles());
  await fs.writeFile(m('dup1'), data);
  await fs.writeFile(m('dup2'), data);
  // Small files reach the store in the background (their bytes are in the journal at close).
  let added: string[] = [];
  for (let i = 0; i < 50 && !added.length; i++) {
    await new Promise((r) => setTimeout(r, 50));
    added = (await storeFiles()).filter((f) => !before.has(f));
  }
  assert.equal(added.length, 1);
  await fs.rm(m('dup1'));
  await new Promise((r) => setTimeout(r, 1500)); // one commit later
  assert.ok((await storeFiles()).includes(added[0]!));
  await fs.rm(m('dup2'));
  let gone = false;
  for (let i = 0; i < 50 && !gone; i++) {
    await new Promise((r) => setTimeout(r, 200));
    gone = !(await storeFiles()).includes(added[0]!);
  }
  assert.ok(gone, 'unreferenced content still stored');
});

const NAMES = ['.git', '.gitattributes', '.gitmodules', 'GIT~1', '%dir', '%25', '%', 'new\nline', 'tab\there', '-rf', ' lead', 'trail ', 'ü'.repeat(127) + 'x', '..dots', '\\back'];

test('every POSIX name round-trips, survives a restart, and nothing internal shows', async () => {
  await fs.mkdir(m('names'));
  for (const n of NAMES) await fs.writeFile(join(m('names'), n), n);
  await fs.mkdir(join(m('names'), '.git2'));
  await assert.rejects(fs.writeFile(join(m('names'), 'x'.repeat(256)), 'x'), { code: 'ENAMETOOLONG' });
  const want = [...NAMES, '.git2'].sort();
  assert.deepEqual((await fs.readdir(m('names'))).sort(), want);
  assert.equal(await node.stop(), 0);
  node = await sb.start();
  assert.deepEqual((await fs.readdir(m('names'))).sort(), want);
  for (const n of NAMES) assert.equal(await fs.readFile(join(m('names'), n), 'utf8'), n);
  assert.ok(!(await fs.readdir(sb.mnt)).some((n) => n.includes('%dir')));
  const fsck = await sh(`git --git-dir ${sb.root}/meta/repo.git fsck --strict`, { allowFail: true });
  assert.equal(fsck.code, 0, fsck.err);
});

test('a 5 GiB sparse file: size, tail bytes and restart', async () => {
  const f = m('sparse5g');
  const size = 5 * 1024 ** 3;
  const fh = await fs.open(f, 'w');
  await fh.truncate(size);
  await fh.write(Buffer.from('THE END'), 0, 7, size - 7);
  await fh.write(Buffer.from('MIDDLE'), 0, 6, 2 ** 32 + 5);
  await fh.close();
  assert.equal((await fs.stat(f)).size, size);
  const check = async () => {
    const r = await fs.open(f, 'r');
    const b = Buffer.alloc(7);
    await r.read(b, 0, 7, size - 7);
    assert.equal(b.toString(), 'THE END');
    await r.read(b, 0, 6, 2 ** 32 + 5);
    assert.equal(b.subarray(0, 6).toString(), 'MIDDLE');
    await r.close();
  };
  await check();
  assert.equal(await node.stop(), 0);
  node = await sb.start();
  assert.equal((await fs.stat(f)).size, size);
  await check();
  await fs.rm(f);
});

test('every stored content file hashes to its id (what peers will verify)', async () => {
  const { hashFile, closeHashers } = await import('../content/hasher.js');
  const { infoHash } = await import('../content/metainfo.js');
  // Large files written front to back were hashed while being written: check that path too.
  const big = Buffer.alloc(9 << 20);
  for (let i = 0; i < big.length; i += 4) big.writeUInt32LE(i * 2654435761 >>> 0, i);
  await fs.writeFile(m('seq-big'), big);
  await new Promise((r) => setTimeout(r, 1500)); // let earlier deletions be collected
  const ids = await storeFiles();
  assert.ok(ids.length > 3);
  for (const id of ids) {
    const info = await hashFile(join(sb.root, 'content', id.slice(0, 2), id));
    assert.equal(infoHash(info), id);
  }
  assert.ok(ids.includes(infoHash(await hashFile(m('seq-big')))));
  await closeHashers();
});

test('a burst of 2,000 creates is a handful of commits, each saying what changed', async () => {
  const count = async () => Number((await sh(`git --git-dir ${sb.root}/meta/repo.git rev-list --count main`)).out.trim());
  await new Promise((r) => setTimeout(r, 1500));
  const before = await count();
  await sh(`mkdir ${m('burst')} && cd ${m('burst')} && for i in $(seq 1 2000); do echo $i > f$i; done`);
  // On a loaded machine the commits come late (the mkdir's alone may come first): wait for one
  // that holds the files, then for any stragglers.
  const last = () => sh(`git --git-dir ${sb.root}/meta/repo.git log -1 --format=%B main`).then((r) => r.out);
  await eventually('the burst committed', async () => (await count()) > before && /write "?\/burst\/f\d+/.test(await last()), 30_000);
  await new Promise((r) => setTimeout(r, 1500));
  const commits = (await count()) - before;
  assert.ok(commits >= 1 && commits <= 15, `${commits} commits`);
  assert.match(await last(), /write "?\/burst\/f\d+/);
  assert.equal((await fs.readdir(m('burst'))).length, 2000);
});

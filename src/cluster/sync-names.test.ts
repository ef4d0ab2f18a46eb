// Metadata sync between two real nodes on this machine (`delugefs` processes, FUSE mounts, git
// over the nodes' SSH servers, --no-mdns) against names that could wedge it: a long name edited
// on both sides while apart (its conflict copy must fit in 255 bytes), a member pushing heads
// with names no mount can show, and a node whose repository already holds such names.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { mkdir } from 'node:fs/promises';
import { createServer, AddressInfo } from 'node:net';
import { sandbox, sh, Sandbox, NodeProc } from '../testing/node-proc.js';
import { runProc } from '../testing/proc.js';
import { badRows, commitWith } from '../meta/bad-names.fixture.js';
import type { DirEntry, FileEntry } from '../meta/entry.js';
import { infoHash } from '../content/metainfo.js';
import { eventually as waitFor } from '../testing/eventually.js';

const boxes: Sandbox[] = [];
after(async () => { for (const b of boxes) await b.cleanup(); });

interface Pair { box: Sandbox; root2: string; mnt2: string; n1: NodeProc; n2: NodeProc; ports: [number, number] }

/** A free TCP port: a node restarted while its peer is down must come back on its old one (no mDNS here to say where it went). */
function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer().listen(0, '127.0.0.1', () => {
      const port = (s.address() as AddressInfo).port;
      s.close(() => resolve(port));
    });
    s.on('error', reject);
  });
}
const args = (port: number) => ['--interface', 'lo', '--ssh-port', String(port), '--log-level', 'info'];

/** A member and a second disk that joined it; both mounted. */
async function pair(): Promise<Pair> {
  // One pair at a time: the nodes of an earlier test would answer on the same ports.
  for (const b of boxes.splice(0)) await b.cleanup();
  const box = await sandbox('dfs-sync-names');
  boxes.push(box);
  const root2 = join(box.dir, 'disk2');
  const mnt2 = join(box.dir, 'mnt2');
  await mkdir(mnt2);
  const ports: [number, number] = [await freePort(), await freePort()];
  const n1 = await box.start(args(ports[0]), { create: true });
  const n2 = await box.start(args(ports[1]), { root: root2, mnt: mnt2 });
  return { box, root2, mnt2, n1, n2, ports };
}

const start1 = (p: Pair) => p.box.start(args(p.ports[0]));
const start2 = (p: Pair) => p.box.start(args(p.ports[1]), { root: p.root2, mnt: p.mnt2 });
const repoOf = (root: string) => join(root, 'meta', 'repo.git');
async function git(root: string, args: string[]): Promise<string> {
  const r = await runProc('git', ['--git-dir', repoOf(root), ...args]);
  if (r.code !== 0) throw new Error(`git ${args.join(' ')}: ${r.stderr}`);
  return r.stdout.trim();
}
const head = (root: string) => git(root, ['rev-parse', 'refs/heads/main']);
const ls = async (mnt: string) => (await sh(`ls -A ${JSON.stringify(mnt)}`)).out.split('\n').filter(Boolean).sort();
const q = JSON.stringify;

const eventually = <T>(what: string, fn: () => Promise<T | undefined | false>, ms = 30_000) => waitFor(what, fn, ms);

async function converged(p: Pair): Promise<string> {
  try {
    return await eventually('both nodes on one head', async () => {
      const [a, b] = await Promise.all([head(p.box.root), head(p.root2)]);
      return a === b && a;
    });
  } catch (e) {
    throw withLogs(e, p);
  }
}

/** A timeout is easier to read with what each node said about sync. */
function withLogs(e: unknown, p: Pair): Error {
  const sync = (s: string) => s.split('\n').filter((l) => /sync_|meta\./.test(l)).slice(-15).join('\n');
  return new Error(`${(e as Error).message}\nnode 1:\n${sync(p.n1.stderr())}\nnode 2:\n${sync(p.n2.stderr())}`);
}

const listedOn = (p: Pair, mnt: string, name: string) => eventually(`${name.slice(0, 40)}... listed on ${mnt}`, async () => (await ls(mnt)).includes(name)).catch((e) => { throw withLogs(e, p); });

test('a 240-byte name edited on both nodes while apart: one head, a conflict copy that fits, and sync goes on', { timeout: 180_000 }, async () => {
  const p = await pair();
  const name = 'é'.repeat(100) + 'x'.repeat(36) + '.txt'; // 240 bytes: name.sync-conflict-... would be ~280
  assert.equal(Buffer.byteLength(name), 240);
  await sh(`printf base > ${q(join(p.box.mnt, name))}`);
  await listedOn(p, p.mnt2, name);
  await converged(p);
  // Apart: node 2 down while node 1 writes, then node 1 down while node 2 writes.
  await p.n2.stop();
  await sh(`printf from-one > ${q(join(p.box.mnt, name))}`);
  await p.n1.stop();
  p.n2 = await start2(p);
  await sh(`printf from-two-later > ${q(join(p.mnt2, name))}`);
  p.n1 = await start1(p);
  const h = await converged(p);
  for (const mnt of [p.box.mnt, p.mnt2]) {
    const names = await eventually('a conflict copy', async () => {
      const n = await ls(mnt);
      return n.some((x) => x.includes('.sync-conflict-')) && n;
    });
    const copies = names.filter((x) => x.includes('.sync-conflict-'));
    assert.equal(copies.length, 1, names.join('\n'));
    assert.ok(Buffer.byteLength(copies[0]!) <= 255, copies[0]);
    assert.ok(copies[0]!.endsWith('.txt'), copies[0]);
    assert.deepEqual((await sh(`cat ${q(join(mnt, name))} ${q(join(mnt, copies[0]!))}`)).out, 'from-two-laterfrom-one');
  }
  // A later change still arrives, both ways.
  await sh(`printf later > ${q(join(p.mnt2, 'later.txt'))}`);
  await listedOn(p, p.box.mnt, 'later.txt');
  await sh(`printf later > ${q(join(p.box.mnt, 'later2.txt'))}`);
  await listedOn(p, p.mnt2, 'later2.txt');
  assert.notEqual(await converged(p), h);
  assert.doesNotMatch(p.n1.stderr() + p.n2.stderr(), /sync_merge_refused/);
});

const T = Date.UTC(2026, 0, 2);
const dirEntry: DirEntry = { type: 'dir', mode: 0o755, uid: 0, gid: 0, mtime: T, ctime: T };
function fileEntry(): FileEntry {
  const info = { length: 0, pieceLength: 16384, pieces: Buffer.alloc(0) };
  return { type: 'file', mode: 0o644, uid: 0, gid: 0, mtime: T, ctime: T, info, id: infoHash(info), node: 'evil' };
}

test('a member pushing heads with bad names is refused each time, the other node unharmed, and later pushes merge', { timeout: 240_000 }, async () => {
  const p = await pair();
  await sh(`printf x > ${q(join(p.mnt2, 'first.txt'))}`);
  await listedOn(p, p.box.mnt, 'first.txt');
  const h1 = await converged(p);
  const listing = await ls(p.box.mnt);
  const id2 = String(p.n2.ready.node);
  const ssh = `ssh -F /dev/null -i ${join(p.root2, 'identity', 'id_ed25519')} -o IdentitiesOnly=yes -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o BatchMode=yes -o LogLevel=ERROR`;
  const url = `ssh://delugefs@127.0.0.1:${Number(p.n1.ready.sshPort)}/meta.git`;
  let merged = 0;
  for (const [what, rows] of await badRows(repoOf(p.root2), fileEntry(), dirEntry)) {
    const bad = await commitWith(repoOf(p.root2), await head(p.root2), rows);
    const r = await runProc('git', ['--git-dir', repoOf(p.root2), 'push', '--force', url, `${bad}:refs/nodes/${id2}`], { env: { ...process.env, GIT_SSH_COMMAND: ssh }, timeoutMs: 30_000 });
    if (r.code === 0) {
      // Git took the objects (they are well-formed); the merge must refuse them.
      merged++;
      await eventually(`${what}: merge refused`, async () => p.n1.stderr().split('\n').some((l) => l.includes('"sync_merge_refused"') && l.includes(bad)));
    }
    assert.equal(await head(p.box.root), h1, what);
    assert.deepEqual(await ls(p.box.mnt), listing, what);
  }
  assert.ok(merged >= 10, `only ${merged} bad heads reached the merge`);
  // The member's own next change still merges, and the two converge.
  await sh(`printf y > ${q(join(p.mnt2, 'after-bad.txt'))}`);
  await listedOn(p, p.box.mnt, 'after-bad.txt');
  assert.notEqual(await converged(p), h1);
});

test('a node whose repository already holds bad names starts, lists its root, and syncs', { timeout: 180_000 }, async () => {
  const p = await pair();
  await sh(`printf x > ${q(join(p.box.mnt, 'good.txt'))}`);
  await listedOn(p, p.mnt2, 'good.txt');
  await converged(p);
  await p.n1.stop();
  const repo = repoOf(p.box.root);
  // All but the file and directory of one name: git's own fsck keeps that out of any repository
  // (a history holding it could never be pushed to a peer again).
  const all = (await badRows(repo, fileEntry(), dirEntry)).filter(([what]) => what !== 'a file and a directory of one name').flatMap(([, r]) => r);
  const rows = all.filter((r, i) => all.findIndex((x) => x.name.equals(r.name)) === i); // one row per name, as fsck wants
  await git(p.box.root, ['update-ref', 'refs/heads/main', await commitWith(repo, await head(p.box.root), rows)]);
  p.n1 = await start1(p);
  const names = await ls(p.box.mnt);
  assert.deepEqual(names, ['good.txt', 'same']);
  assert.match(p.n1.stderr(), /meta\.load\.skip/);
  // Its head left them out, so the other node takes it, and changes flow both ways again.
  await sh(`printf y > ${q(join(p.mnt2, 'after.txt'))}`);
  await listedOn(p, p.box.mnt, 'after.txt');
  await sh(`printf z > ${q(join(p.box.mnt, 'after2.txt'))}`);
  await listedOn(p, p.mnt2, 'after2.txt');
  await converged(p);
  assert.deepEqual(await ls(p.mnt2), ['after.txt', 'after2.txt', 'good.txt', 'same']);
});

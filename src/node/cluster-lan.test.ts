// The cluster end to end: `delugefs` processes on separate "machines" (network namespaces on a
// bridge), mounted. Create + invite + join of three machines and a second disk; refusals of
// unknown keys, commands and bad pushes; a file written on one mount listed on the others;
// concurrent writes of one path; a partition healed; a node offline catching up; remove-node.
// Nodes run under `nsenter --net` (not `ip netns exec`, which would hide their FUSE mounts in a
// mount namespace of their own), so the test reads every mount from child processes.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, ChildProcess } from 'node:child_process';
import { mkdtemp, mkdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createLan, netnsAvailable, NetnsLan, NetnsHost } from '../testing/netns.js';
import { CLI, runCli, waitReady, NodeProc, sh, stopAll } from '../testing/node-proc.js';
import { eventually } from '../testing/eventually.js';

const skip = !(await netnsAvailable()) && 'needs root and iproute2';
const CL = 'lanc';

let dir = '';
let lan: NetnsLan;
const procs = new Set<ChildProcess>();
const mounts = new Set<string>();

interface N { name: string; host: NetnsHost; root: string; mnt?: string; proc?: NodeProc; id: string; sshPort: number }
const nodes: Record<string, N> = {};

function runDirOf(h: NetnsHost) { return join(dir, `run-${h.name}`); }

async function startNode(name: string, host: NetnsHost, extra: string[], o: { mount?: boolean } = {}): Promise<N> {
  const root = join(dir, name);
  const mnt = o.mount === false ? undefined : join(dir, `mnt-${name}`);
  if (mnt) { await mkdir(mnt, { recursive: true }); mounts.add(mnt); }
  const args = [CLI, CL, root, ...(mnt ? [mnt] : []), '--json', '--interface', 'eth0', '--port', '17100', '--ssh-port', '17422', '--log-level', 'debug', ...extra];
  const p = spawn('nsenter', [`--net=/run/netns/${host.ns}`, process.execPath, ...args], { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, DELUGEFS_RUN_DIR: runDirOf(host) } });
  procs.add(p);
  p.on('exit', () => procs.delete(p));
  const proc = await waitReady(p, 30_000);
  const n: N = { name, host, root, mnt, proc, id: String(proc.ready.node), sshPort: Number(proc.ready.sshPort) };
  nodes[name] = n;
  return n;
}

const cli = (args: string[], env: NodeJS.ProcessEnv = {}) => runCli(args, { env });

const ls = async (n: N) => (await sh(`ls -A ${JSON.stringify(n.mnt)}`)).out.split('\n').filter(Boolean);
const head = async (n: N) => (await sh(`git --git-dir ${JSON.stringify(join(n.root, 'meta', 'repo.git'))} rev-parse refs/heads/main`)).out.trim();
async function converged(list: N[], ms = 30_000): Promise<string> {
  return eventually(`identical heads on ${list.map((n) => n.name).join(', ')}`, async () => {
    const hs = await Promise.all(list.map(head));
    return hs.every((h) => h === hs[0]) && hs[0];
  }, ms);
}
const listedEverywhere = (list: N[], name: string) =>
  eventually(`${name} listed on ${list.map((n) => n.name).join(', ')}`, async () => (await Promise.all(list.map(ls))).every((l) => l.includes(name)));

/** ssh as some key into a node from inside a namespace. */
function sshAs(from: NetnsHost, key: string, to: N, command: string) {
  return from.run('ssh', ['-F', '/dev/null', '-i', key, '-o', 'IdentitiesOnly=yes', '-o', 'StrictHostKeyChecking=no', '-o', 'UserKnownHostsFile=/dev/null',
    '-o', 'BatchMode=yes', '-o', 'LogLevel=ERROR', '-p', String(to.sshPort), `delugefs@${to.host.ip}`, command], { timeoutMs: 15_000 });
}

before(async () => {
  if (skip) return;
  dir = await mkdtemp(join(tmpdir(), 'dfs-sync-lan-'));
  lan = await createLan({ subnet: '10.78.0' });
});

after(async () => {
  if (skip) return;
  // For a failed run: DFS_LAN_LOGS=DIR keeps every node's log (and the roots, named in DIR/roots).
  if (process.env.DFS_LAN_LOGS) {
    await mkdir(process.env.DFS_LAN_LOGS, { recursive: true });
    for (const n of Object.values(nodes)) await writeFile(join(process.env.DFS_LAN_LOGS, `${n.name}.log`), n.proc?.stderr() ?? '');
    await writeFile(join(process.env.DFS_LAN_LOGS, 'roots'), dir + '\n');
  }
  await stopAll(procs, mounts);
  await lan?.teardown();
  if (dir && !process.env.DFS_LAN_LOGS) await rm(dir, { recursive: true, force: true });
});

test('create, invite and join three machines and a second disk', { skip, timeout: 90_000 }, async () => {
  const [ha, hb, hc] = [await lan.addHost('a'), await lan.addHost('b'), await lan.addHost('c')];
  const a = await startNode('a', ha, ['--create']);
  // A new root with neither --create nor --join, no member on its machine and no mDNS (this runs
  // outside the test's namespaces: with mDNS it would ask the real network): told how to get a token.
  const lonely = await cli([CL, join(dir, 'lonely'), '--no-mdns'], { DELUGEFS_RUN_DIR: runDirOf(hb) });
  assert.equal(lonely.code, 1);
  assert.match(lonely.err, /delugefs invite.*--join TOKEN/);
  const tokenB = (await cli(['invite', a.root, '--ttl', '10m'])).out.trim();
  const tokenC = JSON.parse((await cli(['invite', a.root, '--json'])).out).token as string;
  const b = await startNode('b', hb, ['--join', tokenB]);
  // A used token is refused, and the root is left as it was.
  const again = await hc.run(process.execPath, [CLI, CL, join(dir, 'again'), '--join', tokenB, '--no-mdns'], { env: { ...process.env, DELUGEFS_RUN_DIR: runDirOf(hc) } });
  assert.equal(again.code, 1, again.stderr);
  assert.match(again.stderr, /already used/);
  const c = await startNode('c', hc, ['--join', tokenC]);
  // Second disk on machine a: no token, through the member's control socket.
  const a2 = await startNode('a2', ha, [], { mount: false });
  const all = [a, b, c, a2];
  await eventually('four members everywhere', async () => {
    for (const n of all) {
      const m = JSON.parse((await cli(['members', n.root, '--json'])).out) as { nodeId: string; addresses: string[] }[];
      if (m.length !== 4 || !m.every((r) => r.addresses.length)) return false;
    }
    return true;
  });
  await converged(all);
  assert.match((await cli(['key', b.root])).out, /^ssh-ed25519 \S+ delugefs:/);
});

test('unknown keys and commands are refused', { skip, timeout: 60_000 }, async () => {
  const { a, b } = nodes as Record<string, N>;
  const stranger = join(dir, 'stranger');
  await sh(`ssh-keygen -q -t ed25519 -N '' -f ${stranger}`);
  let r = await sshAs(b.host, stranger, a, 'delugefs-rpc status');
  assert.notEqual(r.code, 0);
  const bKey = join(b.root, 'identity', 'id_ed25519');
  r = await sshAs(b.host, bKey, a, 'ls /');
  assert.notEqual(r.code, 0);
  assert.match(r.stderr, /refused/);
  r = await sshAs(b.host, bKey, a, "git-upload-pack '/etc'");
  assert.notEqual(r.code, 0);
  r = await sshAs(b.host, bKey, a, 'delugefs-rpc freespace');
  assert.equal(r.code, 0, r.stderr);
  assert.ok(JSON.parse(r.stdout).result.available > 0);
  r = await sshAs(b.host, bKey, a, 'delugefs-rpc invite');
  assert.match(r.stdout, /forbidden/);
  // A stranger's key gets as far as the guest method `join` (which wants a token), nothing else.
  const log = a.proc!.stderr();
  assert.ok(/"event":"command_refused".*"reason":"not a member"/.test(log), 'stranger refused with a log line');
  assert.ok(/"event":"command_refused".*"peer":"[a-z2-7]{16}".*ls \//.test(log) || /"event":"command_refused"/.test(log), 'bad command logged');
});

test('a file written on one mount is listed on the others', { skip, timeout: 60_000 }, async () => {
  const { a, b, c } = nodes as Record<string, N>;
  await sh(`printf hello > ${a.mnt}/from-a.txt && mkdir ${a.mnt}/dir && printf 12345 > ${a.mnt}/dir/inner`);
  await listedEverywhere([b, c], 'from-a.txt');
  await eventually('attributes on b', async () => (await sh(`stat -c %s ${b.mnt}/dir/inner`, { allowFail: true })).out.trim() === '5');
  await sh(`printf x > ${c.mnt}/from-c.txt`);
  await listedEverywhere([a, b], 'from-c.txt');
});

test('content written on one mount is read on the others, over BitTorrent from the writer', { skip, timeout: 90_000 }, async () => {
  const { a, b, c } = nodes as Record<string, N>;
  await sh(`head -c 3000001 /dev/urandom > ${a.mnt}/content.bin && printf small > ${a.mnt}/small.txt`);
  const want = (await sh(`sha256sum < ${a.mnt}/content.bin`)).out.split(' ')[0];
  await listedEverywhere([b, c], 'content.bin');
  await listedEverywhere([b, c], 'small.txt');
  for (const n of [b, c]) {
    assert.equal((await sh(`cat ${n.mnt}/from-a.txt`)).out, 'hello');
    assert.equal((await sh(`cat ${n.mnt}/small.txt`)).out, 'small');
    assert.equal((await sh(`sha256sum < ${n.mnt}/content.bin`)).out.split(' ')[0], want, `content on ${n.name}`);
  }
  // Changing content held elsewhere copies it whole first; the new version reaches the writer's peers.
  await sh(`printf TAIL >> ${b.mnt}/content.bin`);
  const next = (await sh(`sha256sum < ${b.mnt}/content.bin`)).out.split(' ')[0];
  assert.notEqual(next, want);
  await eventually('new version on a', async () => (await sh(`stat -c %s ${a.mnt}/content.bin`)).out.trim() === '3000005');
  assert.equal((await sh(`sha256sum < ${a.mnt}/content.bin`)).out.split(' ')[0], next);
});

test("a peer's change reaches the kernel's caches on the other mounts at once", { skip, timeout: 60_000 }, async () => {
  const { a, b } = nodes as Record<string, N>;
  await sh(`printf 1 > ${a.mnt}/cached.txt`);
  await listedEverywhere([b], 'cached.txt');
  // The name can arrive before the bytes (the create committed on its own first): wait for both.
  await eventually('the whole first version on b', async () => (await sh(`stat -c %s ${b.mnt}/cached.txt`)).out.trim() === '1');
  // b's kernel now holds the name and attributes for 1 s; the change from a must not wait for that.
  assert.equal((await sh(`stat -c %s ${b.mnt}/cached.txt`)).out.trim(), '1');
  const before = await head(b);
  await sh(`printf 12345 > ${a.mnt}/cached.txt && printf x > ${a.mnt}/cached-new.txt && rm ${a.mnt}/from-c.txt`);
  // The whole change, not a part of it (the truncate can be committed, and reach b, on its own):
  // a's head once it holds still, then b on it.
  let last = '', since = Date.now();
  await eventually('a committed the change', async () => {
    const h = await head(a);
    if (h !== last) [last, since] = [h, Date.now()];
    return h !== before && Date.now() - since > 300;
  });
  await eventually('the change merged on b', async () => (await head(b)) === last);
  const t = Date.now();
  assert.equal((await sh(`stat -c %s ${b.mnt}/cached.txt`)).out.trim(), '5', 'b showed cached attributes of a changed file');
  assert.equal((await sh(`cat ${b.mnt}/cached.txt`)).out, '12345');
  assert.equal((await sh(`test -e ${b.mnt}/from-c.txt`, { allowFail: true })).code, 1, 'b still showed a removed file');
  assert.ok(Date.now() - t < 1000);
});

test('bad pushes are refused and the repository is unharmed', { skip, timeout: 60_000 }, async () => {
  const { a, b } = nodes as Record<string, N>;
  await converged([a, b]);
  const headA = await head(a);
  const bRepo = join(b.root, 'meta', 'repo.git');
  const ssh = `ssh -F /dev/null -i ${join(b.root, 'identity', 'id_ed25519')} -o IdentitiesOnly=yes -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o BatchMode=yes -o LogLevel=ERROR`;
  const url = `ssh://delugefs@${a.host.ip}:${a.sshPort}/meta.git`;
  const push = (spec: string) => b.host.run('git', [`--git-dir=${bRepo}`, 'push', '--force', '--', url, spec], { env: { ...process.env, GIT_SSH_COMMAND: ssh }, timeoutMs: 15_000 });
  const first = (await sh(`git --git-dir ${bRepo} rev-list --max-parents=0 refs/heads/main`)).out.trim();
  // Another member's ref wound back (a member may relay others' refs, never rewind them), and the branch itself.
  let r = await push(`${first}:refs/nodes/${a.id}`);
  assert.notEqual(r.code, 0);
  assert.match(r.stderr, /rewrites history/);
  r = await push(`${first}:refs/heads/main`);
  assert.notEqual(r.code, 0);
  assert.match(r.stderr, /only refs\/nodes\/<member id> may be pushed/);
  assert.equal(await head(a), headA);
  // History rewritten: a commit that does not contain what b pushed before.
  const rewrite = (await sh(`git --git-dir ${bRepo} commit-tree ${first}^{tree} -p ${first} -m rewrite`)).out.trim();
  r = await push(`${rewrite}:refs/nodes/${b.id}`);
  assert.notEqual(r.code, 0);
  assert.match(r.stderr, /rewrites history/);
  // A well-formed commit with a malformed entry on top of b's head: accepted by git, refused by the merge.
  const idx = join(dir, 'bad-index');
  const env = `GIT_INDEX_FILE=${idx}`;
  const bHead = await head(b);
  const blob = (await sh(`git --git-dir ${bRepo} hash-object -w --stdin`, { input: 'not a bencoded entry' })).out.trim();
  await sh(`${env} git --git-dir ${bRepo} read-tree ${bHead} && ${env} git --git-dir ${bRepo} update-index --add --cacheinfo 100644,${blob},garbage`);
  const tree = (await sh(`${env} git --git-dir ${bRepo} write-tree`)).out.trim();
  const bad = (await sh(`git --git-dir ${bRepo} commit-tree ${tree} -p ${bHead} -m bad`)).out.trim();
  r = await push(`${bad}:refs/nodes/${b.id}`);
  assert.equal(r.code, 0, r.stderr);
  await eventually('merge refused on a', async () => /"event":"sync_merge_refused".*garbage/.test(a.proc!.stderr()));
  assert.ok(!(await ls(a)).includes('garbage'));
  // Not in a's branch either (it would spread to every member from there).
  const inTree = await sh(`git --git-dir ${join(a.root, 'meta', 'repo.git')} ls-tree -r --name-only refs/heads/main`);
  assert.ok(!inTree.out.split('\n').includes('garbage'));
  // Membership b did not sign: a's own record with its addresses pointed elsewhere. Refused whole by the merge.
  const aRecPath = `%cluster/members/${a.id}`;
  const aRec = JSON.parse((await sh(`git --git-dir ${bRepo} cat-file blob ${bHead}:${aRecPath}`)).out);
  const hijack = (await sh(`git --git-dir ${bRepo} hash-object -w --stdin`, { input: JSON.stringify({ ...aRec, addresses: ['10.78.0.250:17422'] }) + '\n' })).out.trim();
  const env2 = `GIT_INDEX_FILE=${idx}-2`;
  await sh(`${env2} git --git-dir ${bRepo} read-tree ${bHead} && ${env2} git --git-dir ${bRepo} update-index --add --cacheinfo 100644,${hijack},${aRecPath}`);
  const hijackTree = (await sh(`${env2} git --git-dir ${bRepo} write-tree`)).out.trim();
  const hijackCommit = (await sh(`git --git-dir ${bRepo} commit-tree ${hijackTree} -p ${bHead} -m hijack`)).out.trim();
  r = await push(`${hijackCommit}:refs/nodes/${b.id}`);
  assert.equal(r.code, 0, r.stderr);
  await eventually('membership change refused on a', async () => /"event":"sync_merge_refused".*record signature does not verify/.test(a.proc!.stderr()));
  const aMembers = JSON.parse((await cli(['members', a.root, '--json'])).out) as { nodeId: string; addresses: string[] }[];
  assert.deepEqual(aMembers.find((m) => m.nodeId === a.id)?.addresses, aRec.addresses);
  const fsck = await sh(`git --git-dir ${join(a.root, 'meta', 'repo.git')} fsck --no-dangling`, { allowFail: true });
  assert.equal(fsck.code, 0, fsck.err);
  // Sync from b still works afterwards.
  await sh(`printf y > ${b.mnt}/after-bad.txt`);
  await listedEverywhere([a], 'after-bad.txt');
});

test('concurrent writes of one path: conflict copy, identical heads', { skip, timeout: 60_000 }, async () => {
  const { a, b, c, a2 } = nodes as Record<string, N>;
  await Promise.all([sh(`printf from-a > ${a.mnt}/same.txt`), sh(`printf from-bb > ${b.mnt}/same.txt`)]);
  await listedEverywhere([a, b, c], 'same.txt');
  // Both versions reached everyone: b's size (7) and a's (6) are both somewhere in every listing.
  await eventually('both versions everywhere', async () => {
    for (const n of [a, b, c]) {
      const sizes = (await sh(`stat -c %s ${n.mnt}/same*`)).out.split('\n').filter(Boolean).sort().join();
      if (sizes !== '6,7') return false;
    }
    return true;
  });
  const h = await converged([a, b, c, a2]);
  assert.ok(h);
  for (const n of [a, b, c]) {
    const names = await ls(n);
    assert.ok(names.includes('same.txt'), n.name);
    const copies = names.filter((x) => /^same\.sync-conflict-\d{8}-\d{6}-[a-z2-7]+\.txt$/.test(x));
    assert.equal(copies.length, 1, `${n.name}: ${names.join(' ')}`);
  }
  const sets = await Promise.all([a, b, c].map(async (n) => (await ls(n)).sort().join('|')));
  assert.equal(new Set(sets).size, 1, 'every mount lists the same names');
});

test('three writers at once: no merge storm, everything everywhere, one head', { skip, timeout: 60_000 }, async () => {
  const { a, b, c, a2 } = nodes as Record<string, N>;
  await sh(`mkdir ${a.mnt}/many`);
  await eventually('many/ everywhere', async () => (await Promise.all([b, c].map(ls))).every((l) => l.includes('many')));
  await Promise.all([a, b, c].map((n) => sh(`for i in $(seq 1 30); do printf $i > ${n.mnt}/many/${n.name}-$i; printf ${n.name} > ${n.mnt}/many/shared-$((i % 5)); done`)));
  await eventually('all files everywhere', async () => {
    for (const n of [a, b, c]) {
      const names = (await sh(`ls -A ${n.mnt}/many`)).out.split('\n').filter(Boolean);
      if (names.filter((x) => /^[abc]-\d+$/.test(x)).length !== 90) return false;
    }
    return true;
  }, 30_000);
  await converged([a, b, c, a2]);
  const sets = await Promise.all([a, b, c].map(async (n) => (await sh(`ls -A ${n.mnt}/many`)).out));
  assert.equal(new Set(sets).size, 1, 'every mount lists the same names');
  // Merges converge: after the writes stop, the number of commits stops growing.
  const count = async () => Number((await sh(`git --git-dir ${join(a.root, 'meta', 'repo.git')} rev-list --count refs/heads/main`)).out);
  const n1 = await count();
  await new Promise((r) => setTimeout(r, 1500));
  assert.equal(await count(), n1, 'no merge storm');
});

test('a partition with writes on both sides heals and converges', { skip, timeout: 90_000 }, async () => {
  const { a, b, c, a2 } = nodes as Record<string, N>;
  await c.host.down();
  await sh(`printf 1 > ${a.mnt}/during-a.txt`);
  await sh(`printf 2 > ${c.mnt}/during-c.txt`);
  await listedEverywhere([b], 'during-a.txt');
  assert.ok(!(await ls(c)).includes('during-a.txt'));
  // Long enough for a to lose c (mDNS expiry): the heal is then a rediscovery, not a retry.
  const mark = a.proc!.stderr().length;
  await eventually('a loses c', async () => new RegExp(`"event":"peer_expired".*"nodeId":"${c.id}"`).test(a.proc!.stderr().slice(mark)), 20_000);
  await c.host.up();
  await listedEverywhere([a, b], 'during-c.txt');
  await listedEverywhere([c], 'during-a.txt');
  await converged([a, b, c, a2], 45_000);
});

test('a node offline for a while catches up', { skip, timeout: 90_000 }, async () => {
  const { a, b, c, a2 } = nodes as Record<string, N>;
  assert.equal(await b.proc!.stop(), 0);
  mounts.delete(b.mnt!);
  await sh(`printf 3 > ${a.mnt}/while-b-away.txt && mkdir ${c.mnt}/dir-c`);
  await new Promise((r) => setTimeout(r, 1000));
  const b2 = await startNode('b', b.host, []);
  assert.equal(b2.id, b.id);
  await listedEverywhere([b2], 'while-b-away.txt');
  await listedEverywhere([b2], 'dir-c');
  await converged([a, b2, c, a2]);
});

test('remove-node: the key is refused everywhere once synced', { skip, timeout: 60_000 }, async () => {
  const { a, b, c, a2 } = nodes as Record<string, N>;
  const r = await cli(['remove-node', a.root, c.id, '--json']);
  assert.equal(r.code, 0, r.err);
  assert.deepEqual(JSON.parse(r.out), { nodeId: c.id, already: false });
  await eventually('c revoked on b and a2', async () => {
    for (const n of [b, a2]) {
      const m = JSON.parse((await cli(['members', n.root, '--json'])).out) as { nodeId: string }[];
      if (m.some((x) => x.nodeId === c.id)) return false;
    }
    return true;
  });
  const cKey = join(c.root, 'identity', 'id_ed25519');
  const res = await sshAs(c.host, cKey, b, 'delugefs-rpc freespace');
  assert.notEqual(res.code, 0);
  // c's writes no longer reach the others.
  await sh(`printf z > ${c.mnt}/from-removed.txt`);
  await sh(`printf w > ${a.mnt}/after-remove.txt`);
  await listedEverywhere([b], 'after-remove.txt');
  assert.ok(!(await ls(b)).includes('from-removed.txt'));
  await converged([a, b, a2]);
});

test('the manual way: key, authorize, then start with --peer', { skip, timeout: 60_000 }, async () => {
  const { a, b } = nodes as Record<string, N>;
  const hd = await lan.addHost('d');
  const rootD = join(dir, 'd');
  const key = (await cli(['key', rootD])).out.trim();
  // Not yet authorized: refused, and the root keeps only its key.
  const early = await hd.run(process.execPath, [CLI, CL, rootD, '--peer', `${a.host.ip}:${a.sshPort}`, '--no-mdns'], { env: { ...process.env, DELUGEFS_RUN_DIR: runDirOf(hd) } });
  assert.equal(early.code, 1);
  assert.match(early.stderr, /delugefs authorize/);
  const auth = await cli(['authorize', a.root, key, '--json']);
  assert.equal(auth.code, 0, auth.err);
  const d = await startNode('d', hd, ['--peer', `${a.host.ip}:${a.sshPort}`]);
  assert.equal(d.id, JSON.parse(auth.out).nodeId);
  await sh(`printf m > ${a.mnt}/for-d.txt`);
  await listedEverywhere([d, b], 'for-d.txt');
  await converged([a, b, d]);
  await writeFile(join(dir, 'done'), '');
});

test('a read waiting for content whose only holder went away ends when the reader is signalled', { skip, timeout: 60_000 }, async () => {
  const { b, d } = nodes as Record<string, N>;
  await sh(`head -c 2000000 /dev/urandom > ${d.mnt}/only-on-d.bin`);
  await eventually('the file with its size on b', async () => (await sh(`stat -c %s ${b.mnt}/only-on-d.bin`, { allowFail: true })).out.trim() === '2000000');
  assert.equal(await d.proc!.stop(), 0);
  mounts.delete(d.mnt!);
  // b waits for a peer holding the content. Once the kernel handed b a synchronous read (O_DIRECT
  // here; readahead's are asynchronous and the reader can die meanwhile), not even SIGKILL frees
  // the reader until b answers: the kernel's INTERRUPT must end the wait (EINTR).
  const t = Date.now();
  const r = await sh(`timeout -s INT 2 dd if=${b.mnt}/only-on-d.bin of=/dev/null bs=128k iflag=direct`, { allowFail: true });
  assert.equal(r.code, 124, `dd ended with ${r.code}: ${r.err}`);
  assert.ok(Date.now() - t < 10_000, `the reader took ${Date.now() - t} ms to go`);
});

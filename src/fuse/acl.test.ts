// POSIX ACLs on a real mount (issue 11), each step compared with the same calls on the root's own
// disk (ext4) in the same run: setfacl/getfacl, the mode following the access ACL and chmod
// following back into it (the mask), the kernel obeying a named user's entry and the mask
// (callers are other users, let in by --allow-other), default ACLs inherited by new files and
// directories in place of the umask, removal, and the same after a restart; a second node sees them.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs/promises';
import { join } from 'node:path';
import { sandbox, sh, Sandbox } from '../testing/node-proc.js';
import { netnsAvailable } from '../testing/netns.js';
import { startCluster } from '../testing/cluster.js';
import { eventually } from '../testing/eventually.js';

let sb: Sandbox | undefined;
after(async () => {
  await sb?.cleanup();
});

const as = (uid: number, cmd: string) => sh(`setpriv --reuid=${uid} --regid=${uid} --clear-groups sh -c '${cmd}'`, { allowFail: true });

/** The ACLs and modes of a tree, as getfacl prints them (names relative, so two trees compare). */
async function acls(dir: string): Promise<string> {
  return (await sh(`cd ${dir} && find . | sort | while read -r p; do getfacl -n -p "$p" 2>&1; done; find . -printf '%p %m\\n' | sort`)).out;
}

async function steps(dir: string): Promise<string[]> {
  const out: string[] = [];
  const step = async (what: string, cmd: string | (() => Promise<{ code: number; out: string; err: string }>)) => {
    const r = typeof cmd === 'string' ? await sh(`cd ${dir} && ${cmd}`, { allowFail: true }) : await cmd();
    out.push(`${what} -> ${r.code}${r.code ? ' ' + r.err.replace(/^.*: /, '').trim() : ''} ${r.out.trim()}\n${await acls(dir)}`);
  };
  await step('a file only its owner and group may read', 'umask 022 && mkdir s && chmod 755 s && echo secret > s/f && chmod 640 s/f');
  await step('a named user may write', 'setfacl -m u:4321:rw s/f');
  await step('...and does', () => as(4321, `echo from 4321 >> ${dir}/s/f && echo ok`));
  await step('another user may not', () => as(4322, `cat ${dir}/s/f`));
  await step('chmod narrows the mask', 'chmod 600 s/f');
  await step('...so the named user may not any more', () => as(4321, `echo again >> ${dir}/s/f`));
  await step('the mask widened again', 'setfacl -m m::rw s/f');
  await step('...and the named user writes', () => as(4321, `echo back >> ${dir}/s/f && echo ok`));
  await step('a group entry', 'setfacl -m g:5555:r s/f');
  await step('a default ACL', 'setfacl -d -m u:4321:rwx,g::rx,o::- s');
  await step('new entries inherit it in place of the umask', 'umask 077 && touch s/new && mkdir s/sub && mkfifo s/pipe');
  await step('the named user works in the new directory', () => as(4321, `touch ${dir}/s/sub/mine && echo ok`));
  await step('an ACL that says no more than the mode', 'setfacl -b s/f && setfacl -m u::rw,g::r,o::- s/f');
  await step('the default ACL removed', 'setfacl -k s');
  await step('a default ACL on a file', 'setfacl -d -m u:4321:r s/f');
  return out;
}

test('POSIX ACLs are kept, inherited and obeyed as on a local disk, and survive a restart', { timeout: 180_000 }, async () => {
  sb = await sandbox('dfs-acl');
  let node = await sb.start(['--allow-other'], { create: true });
  const local = join(sb.dir, 'local');
  await fs.mkdir(local);
  await fs.chmod(sb.dir, 0o755);
  await fs.chmod(sb.mnt, 0o755);
  await fs.chmod(local, 0o755);
  const want = await steps(local);
  const got = await steps(sb.mnt);
  for (let i = 0; i < want.length; i++) assert.equal(got[i], want[i], `step ${i + 1}`);
  // What the comparison covers, as the local disk showed it.
  assert.match(want[2]!, /-> 0 ok/);
  assert.match(want[3]!, /-> [12] Permission denied/);
  assert.match(want[5]!, /-> [12] Permission denied/);
  assert.match(want[7]!, /-> 0 ok/);
  assert.match(want[10]!, /# file: .\/s\/sub\n# owner: 0\n# group: 0\nuser::rwx\nuser:4321:rwx\n/);
  const before = await acls(sb.mnt);
  await node.stop();
  node = await sb.start(['--allow-other']);
  assert.equal(await acls(sb.mnt), before, 'the same after a restart');
  assert.equal((await as(4321, `touch ${sb.mnt}/s/sub/after && echo ok`)).out.trim(), 'ok', 'still obeyed after a restart');
  await node.stop();
});

test('ACLs travel to a second node with their entry', { skip: !(await netnsAvailable()) && 'needs root and iproute2', timeout: 120_000 }, async () => {
  const c = await startCluster({ nodes: 2, mount: true, subnet: '10.95.0', settle: 'heads' });
  try {
    const [a, b] = [c.nodes[0]!.mnt!, c.nodes[1]!.mnt!];
    await sh(`mkdir ${a}/acl && echo x > ${a}/acl/f && setfacl -m u:4321:rw,g:5555:r ${a}/acl/f && setfacl -d -m u:4321:rwx ${a}/acl && touch ${a}/acl/inherited`);
    const want = await acls(`${a}/acl`);
    assert.match(want, /user:4321:rw-/);
    await eventually('the ACLs on the second node', async () => (await acls(`${b}/acl`).catch(() => '')) === want, 60_000);
  } finally {
    await c.teardown();
  }
});

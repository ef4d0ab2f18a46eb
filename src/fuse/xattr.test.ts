// Extended attributes on a real mount (issue 11): the same calls (src/fuse/xattr-probe.py, by
// Python's os module and libc) on the mount and on the root's own disk (ext4 here) in the same
// run give the same results and errors: flags, ERANGE, ENODATA, E2BIG, ENOSPC, namespaces,
// symlinks, directories. Then: kept across a write and a restart, and sent to a second node.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { sandbox, sh, Sandbox } from '../testing/node-proc.js';
import { netnsAvailable } from '../testing/netns.js';
import { startCluster } from '../testing/cluster.js';
import { eventually } from '../testing/eventually.js';

const PROBE = fileURLToPath(new URL('../../src/fuse/xattr-probe.py', import.meta.url));
const get = async (path: string, name: string) => (await sh(`python3 -c "import os, sys; sys.stdout.write(os.getxattr('${path}', '${name}').decode())"`, { allowFail: true })).out;

let sb: Sandbox | undefined;
after(async () => {
  await sb?.cleanup();
});

test('extended attributes behave as on the root\'s own disk, and stay with the file through writes and restarts', { timeout: 120_000 }, async () => {
  sb = await sandbox('dfs-xattr');
  let node = await sb.start([], { create: true });
  const local = join(sb.dir, 'local');
  await fs.mkdir(local);
  const here = JSON.parse((await sh(`python3 ${PROBE} ${sb.mnt}`)).out) as unknown[][];
  const there = JSON.parse((await sh(`python3 ${PROBE} ${local}`)).out) as unknown[][];
  assert.deepEqual(here, there);
  assert.ok(here.some((r) => r[0] === 'block full' && r[1] === 'ENOSPC'));
  // A POSIX ACL set as a raw xattr (a named user, so the ACL is not just the mode) is kept, and
  // the mode follows it (acl.test.ts covers ACLs whole).
  const acl = `struct.pack('<I', 2) + b''.join(struct.pack('<HHI', *e) for e in [(1, 6, 0xffffffff), (2, 6, 1000), (4, 4, 0xffffffff), (0x10, 6, 0xffffffff), (0x20, 4, 0xffffffff)])`;
  await sh(`python3 -c "import os, struct; os.setxattr('${sb.mnt}/x', 'system.posix_acl_access', ${acl})"`);
  assert.match((await sh(`getfacl -n -p --omit-header ${sb.mnt}/x`)).out, /^user::rw-\nuser:1000:rw-\ngroup::r--\nmask::rw-\nother::r--\n/);
  assert.equal((await fs.stat(join(sb.mnt, 'x'))).mode & 0o777, 0o664);
  const f = join(sb.mnt, 'x');
  await fs.appendFile(f, ' more');
  assert.equal(await get(f, 'user.a'), '22', 'a new version of the bytes keeps the attributes');
  await node.stop();
  node = await sb.start([]);
  assert.equal(await get(f, 'user.a'), '22');
  assert.equal(await get(sb.mnt, 'user.dir'), 'on a directory');
  await node.stop();
});

test('extended attributes travel to a second node with their entry', { skip: !(await netnsAvailable()) && 'needs root and iproute2', timeout: 120_000 }, async () => {
  const c = await startCluster({ nodes: 2, mount: true, subnet: '10.93.0', settle: 'heads' });
  try {
    const [a, b] = [c.nodes[0]!.mnt!, c.nodes[1]!.mnt!];
    await fs.writeFile(join(a, 'f'), 'x');
    await sh(`python3 -c "import os; os.setxattr('${a}/f', 'user.colour', b'blue'); os.setxattr('${a}/f', 'trusted.owner', b'ops')"`);
    await eventually('the attributes on the second node', async () => (await get(join(b, 'f'), 'user.colour')) === 'blue' && (await get(join(b, 'f'), 'trusted.owner')) === 'ops', 60_000);
    await sh(`python3 -c "import os; os.removexattr('${b}/f', 'user.colour')"`);
    await eventually('the removal back on the first', async () => (await sh(`python3 -c "import os; print(sorted(os.listxattr('${a}/f')))"`)).out.trim() === "['trusted.owner']", 60_000);
  } finally {
    await c.teardown();
  }
});

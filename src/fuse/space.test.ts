// Space and copies on a real mount (issue 11), each step compared with the same calls on the
// root's own disk (ext4) in the same run: fallocate (default mode, PUNCH_HOLE, ZERO_RANGE),
// SEEK_DATA/SEEK_HOLE, copy_file_range and cp. (Preallocated ranges are compared once read:
// ext4 reports unwritten extents as holes only while none of their pages is cached.) A copy of a whole file is a clone: it stores
// nothing new (the content store holds as many files after it as before). Holes survive a restart.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs/promises';
import { join } from 'node:path';
import { sandbox, sh, Sandbox } from '../testing/node-proc.js';

let sb: Sandbox | undefined;
after(async () => {
  await sb?.cleanup();
});

const MiB = 1 << 20;

/** Per file: size, blocks, a digest, and where its data and holes are (SEEK_DATA/SEEK_HOLE walked). */
async function report(dir: string): Promise<string> {
  const py = `
import os, sys, hashlib
root = sys.argv[1]
out = []
for n in sorted(os.listdir(root)):
    p = os.path.join(root, n)
    st = os.stat(p)
    # Read first: ext4 reports preallocated (unwritten) ranges as holes until their pages are cached.
    digest = hashlib.sha1(open(p, 'rb').read()).hexdigest()[:10]
    fd = os.open(p, os.O_RDONLY)
    runs, at = [], 0
    while at < st.st_size:
        try:
            d = os.lseek(fd, at, os.SEEK_DATA)
        except OSError:
            break
        h = os.lseek(fd, d, os.SEEK_HOLE)
        runs.append(f"{d}-{h}")
        at = h
    os.close(fd)
    out.append(f"{n} size={st.st_size} blocks={st.st_blocks} {digest} data={','.join(runs)}")
print('\\n'.join(out))
`;
  return (await sh(`python3 -c "${py.replace(/"/g, '\\"')}" ${dir}`)).out;
}

/** copy_file_range(2) of `count` bytes from `src` at `offIn` to `dst` (created) at `offOut`. */
const cfr = (src: string, dst: string, count: number, offIn = 0, offOut = 0) =>
  `python3 -c "import os; i = os.open('${src}', os.O_RDONLY); o = os.open('${dst}', os.O_WRONLY | os.O_CREAT, 0o644); print(os.copy_file_range(i, o, ${count}, ${offIn}, ${offOut}))"`;

async function steps(dir: string): Promise<string[]> {
  const out: string[] = [];
  const step = async (cmd: string) => {
    const r = await sh(`cd ${dir} && ${cmd}`, { allowFail: true });
    out.push(`$ ${cmd} -> ${r.code}${r.code ? ' ' + r.err.replace(/^.*: /, '').trim() : ''} ${r.out.trim()}\n${await report(dir)}`);
  };
  await step(`yes 0123456789abcdef | head -c ${3 * MiB} > big && fallocate -l ${MiB} pre && yes dense | head -c ${2 * MiB} > dense`);
  await step(`fallocate -p -o ${MiB} -l ${MiB} big`); // a hole in the middle
  await step(`fallocate -z -o 0 -l 4096 big`); // zeroed, still data
  await step(`fallocate -o ${3 * MiB} -l ${MiB} big`); // grows the file
  await step(`fallocate -x -l ${MiB} big 2>&1 || true`); // posix_fallocate: reserves, changes nothing
  await step('echo small > s && fallocate -p -o 2 -l 2 s');
  await step(cfr('dense', 'whole', 8 * MiB)); // a whole file: a clone here (ext4 copies)
  await step(cfr('big', 'part', MiB, MiB / 2, 4096)); // a range: copied
  await step('cp dense viacp && cp s s2');
  await step('cp --reflink=always dense refl'); // FICLONE: neither ext4 nor FUSE has it
  await step(`truncate -s ${5 * MiB} big && fallocate -p -o 0 -l ${MiB} whole`);
  return out;
}


test('fallocate, SEEK_DATA/SEEK_HOLE and copy_file_range as on a local disk; a whole-file copy stores nothing new', { timeout: 180_000 }, async () => {
  sb = await sandbox('dfs-space');
  let node = await sb.start([], { create: true });
  const local = join(sb.dir, 'local');
  await fs.mkdir(local);
  const want = await steps(local);
  const got = await steps(sb.mnt);
  for (let i = 0; i < want.length; i++) assert.equal(got[i], want[i], `step ${i + 1}`);
  assert.match(want[1]!, new RegExp(`^big size=${3 * MiB} blocks=${4 * 1024} \\w+ data=0-${MiB},${2 * MiB}-${3 * MiB}$`, 'm'));
  assert.match(want[9]!, /-> 1 .*Operation not supported/);

  // A clone takes the content id of its source, and nothing is read or stored: the stored file
  // (the only dense one of 2 MiB) is the same inode after it. A copy through reads and writes would
  // end in a new file of the same bytes renamed over it.
  const root = sb.root;
  const stored = async () => (await sh(`find ${join(root, 'content')} -type f -size ${2 * MiB}c -printf '%i %b %p\\n'`)).out.split('\n').filter((l) => l.split(' ')[1] === String((2 * MiB) / 512)).join('\n');
  const before = await stored();
  assert.equal(before.split('\n').length, 1, before);
  await sh(`cd ${sb.mnt} && ${cfr('viacp', 'clone1', 8 * MiB)}`);
  assert.equal(await stored(), before, 'copy_file_range of a whole file stored new content');
  await sh(`cd ${sb.mnt} && cp viacp clone2`);
  assert.equal(await stored(), before, 'cp of a whole file stored new content');
  assert.equal((await sh(`cmp ${sb.mnt}/viacp ${sb.mnt}/clone1 && cmp ${sb.mnt}/viacp ${sb.mnt}/clone2 && echo same`)).out.trim(), 'same');
  // Writing to a clone afterwards changes only the clone.
  await sh(`printf X | dd of=${sb.mnt}/clone1 bs=1 seek=10 conv=notrunc status=none`);
  assert.notEqual((await sh(`cmp ${sb.mnt}/viacp ${sb.mnt}/clone1`, { allowFail: true })).code, 0);
  assert.equal((await sh(`cmp ${sb.mnt}/viacp ${sb.mnt}/clone2 && echo same`)).out.trim(), 'same');

  // A clone of a sparse file shares its holes (as a reflink would; ext4 would copy it densely).
  await sh(`cd ${sb.mnt} && ${cfr('big', 'sparse-clone', 8 * MiB)}`);
  const lines = (await report(sb.mnt)).split('\n');
  const strip = (l: string | undefined) => l?.replace(/^\S+ /, '');
  assert.equal(strip(lines.find((l) => l.startsWith('sparse-clone '))), strip(lines.find((l) => l.startsWith('big '))));

  const kept = await report(sb.mnt);
  await node.stop();
  node = await sb.start([]);
  assert.equal(await report(sb.mnt), kept, 'the same after a restart, holes and all');
  await node.stop();
});

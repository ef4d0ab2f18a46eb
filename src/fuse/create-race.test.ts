// A CREATE that finds its name created meanwhile (by a peer, between the kernel's LOOKUP and
// the CREATE) opens that file only as an open(2) would be allowed to: the FUSE ops driven
// directly with a real node, the file made in its namespace by another user in between.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { constants as fsc } from 'node:fs';
import { spawn } from 'node:child_process';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { FuseOps, toErrno } from './ops.js';
import { ENTRY_OUT_SIZE, IN_HEADER, Op, u64 } from './proto.js';
import type { Request } from './session.js';
import { createLayout, paths } from '../node/layout.js';
import { DelugeNode } from '../node/node.js';
import { closeHashers } from '../content/hasher.js';
import { silentLogger } from '../util/log.js';

const { O_RDONLY, O_WRONLY, O_RDWR, O_CREAT, O_EXCL, O_TRUNC } = fsc;
const E = (await import('node:os')).constants.errno;
const dirs: string[] = [];
after(async () => {
  for (const d of dirs) await rm(d, { recursive: true, force: true });
  await closeHashers();
});

interface Caller { uid: number; gid: number; pid?: number }
function request(op: Op, body: Buffer, c: Caller): Request {
  const buf = Buffer.concat([Buffer.alloc(IN_HEADER), body]);
  return { op, nodeid: 1, uid: c.uid, gid: c.gid, pid: c.pid ?? 0, buf, len: buf.length };
}
const nameBuf = (name: string) => Buffer.concat([Buffer.from(name), Buffer.alloc(1)]);
function createBody(name: string, flags: number, mode = 0o644): Buffer {
  const b = Buffer.alloc(16);
  b.writeUInt32LE(flags | O_CREAT, 0);
  b.writeUInt32LE(mode, 4);
  return Buffer.concat([b, nameBuf(name)]);
}

/** The errno a request ends with (0: it succeeded; the handle is released). */
async function errnoOf(ops: FuseOps, node: DelugeNode, r: Request): Promise<number> {
  try {
    const [out] = (await ops.handler(r)) as Buffer[];
    await node.release(u64(out!, ENTRY_OUT_SIZE));
    return 0;
  } catch (e) {
    return toErrno(e);
  }
}

test('CREATE of a name a peer created meanwhile: checked as an open (EACCES), O_EXCL gets EEXIST', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'dfs-fuse-race-'));
  dirs.push(dir);
  const p = paths(join(dir, 'root'));
  const node = await DelugeNode.start({ paths: p, config: await createLayout(p, 'c'), log: silentLogger, create: true });
  const ops = new FuseOps(node, { log: silentLogger });
  // A process in supplementary group 4242 only (its primary gid is 0): the kernel counts those.
  // Callers the request header alone cannot describe: one in supplementary group 4242 only, a
  // uid 0 without capabilities, a plain user with CAP_DAC_OVERRIDE (the kernel decides by caps).
  const member = spawn('setpriv', ['--reuid', '1000', '--regid', '1000', '--groups', '4242', 'sleep', '60'], { stdio: 'ignore' });
  const powerless = spawn('setpriv', ['--bounding-set', '-all', 'sleep', '60'], { stdio: 'ignore' });
  const capable = spawn('setpriv', ['--reuid', '1000', '--regid', '1000', '--clear-groups', '--inh-caps', '+dac_override', '--ambient-caps', '+dac_override', 'sleep', '60'], { stdio: 'ignore' });
  const status = (pid?: number) => readFile(`/proc/${pid}/status`, 'utf8').catch(() => '');
  try {
    // Until setpriv has exec'd, the children still have this process's credentials.
    for (const [c, re] of [[member, /^Groups:\s*4242\s*$/m], [powerless, /^CapEff:\s*0+$/m], [capable, /^CapEff:\s*0+2$/m]] as const) {
      for (let i = 0; i < 300 && !re.test(await status(c.pid)); i++) await new Promise((r) => setTimeout(r, 10));
      assert.match(await status(c.pid), re);
    }
    const alice = { uid: 1000, gid: 1000 };
    const put = async (name: string, mode: number, uid: number, gid: number) => {
      const fh = await node.create(`/${name}`, mode, { uid, gid });
      await node.write(fh, Buffer.from('secret'), 6, 0);
      await node.flush(fh);
      await node.release(fh);
    };
    const race = async (name: string, mode: number, c: Caller, flags: number, owner = { uid: 4242, gid: 4242 }) => {
      // The kernel looked the name up and found nothing...
      assert.equal(await errnoOf(ops, node, request(Op.LOOKUP, nameBuf(name), c)), E.ENOENT);
      // ...then a peer's merge brought the file in, before the kernel's CREATE arrived.
      await put(name, mode, owner.uid, owner.gid);
      return errnoOf(ops, node, request(Op.CREATE, createBody(name, flags), c));
    };

    assert.equal(await race('a', 0o600, alice, O_RDWR), E.EACCES, 'another user\'s 0600 file');
    assert.equal(await race('b', 0o600, alice, O_RDWR | O_EXCL), E.EEXIST);
    assert.equal(await race('c', 0o644, alice, O_RDONLY), 0, 'readable by others: read is allowed');
    assert.equal(await race('d', 0o644, alice, O_WRONLY), E.EACCES);
    assert.equal(await race('e', 0o644, alice, O_RDONLY | O_TRUNC), E.EACCES, 'O_TRUNC needs write');
    assert.equal(await race('f', 0o600, { uid: 4242, gid: 1 }, O_RDWR), 0, 'the owner');
    assert.equal(await race('g', 0o066, { uid: 4242, gid: 4242 }, O_RDONLY), E.EACCES, 'the owner class decides for the owner');
    assert.equal(await race('h', 0o600, { uid: 0, gid: 0 }, O_RDWR | O_TRUNC), 0, 'root');
    assert.equal(await race('h2', 0o600, { uid: 0, gid: 0, pid: powerless.pid }, O_RDONLY), E.EACCES, 'uid 0 without capabilities');
    assert.equal(await race('h3', 0o600, { uid: 1000, gid: 1000, pid: capable.pid }, O_RDWR), 0, 'CAP_DAC_OVERRIDE');
    assert.equal(await race('i', 0o640, { uid: 1000, gid: 4242 }, O_RDONLY), 0, 'the file\'s group');
    assert.equal(await race('j', 0o640, { uid: 1000, gid: 4242 }, O_WRONLY), E.EACCES);
    assert.equal(await race('k', 0o640, { uid: 1000, gid: 1000, pid: member.pid }, O_RDONLY), 0, 'a supplementary group');
    assert.equal(await race('l', 0o604, { uid: 1000, gid: 1000, pid: member.pid }, O_RDONLY), E.EACCES, 'the group class decides for a member');
    // A 0600 file that was refused is untouched (no truncation, no handle).
    assert.equal(node.stat('/a').size, 6);
  } finally {
    for (const c of [member, powerless, capable]) c.kill('SIGKILL');
    await node.close();
  }
});

// Revocation ends what a member already has open. Two real nodes (A, and C as a second disk) and
// a member key B with sessions on A that authenticated before the revocation: a git upload-pack
// waiting for B's wants, an RPC channel whose params never end, and a second connection whose
// client ignores the disconnect (never closes its side). B is removed on C; once A merges the
// tombstone, every one of B's sessions on A is gone, its git children included.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import { readFile, readdir } from 'node:fs/promises';
import { join } from 'node:path';
import ssh2 from 'ssh2';
import { Identity } from '../cluster/identity.js';
import { sandbox, runCli, Sandbox } from '../testing/node-proc.js';
import { eventually as waitFor } from '../testing/eventually.js';

const { Client } = ssh2;
const boxes: Sandbox[] = [];
const clients: Array<InstanceType<typeof Client>> = [];
const sockets: net.Socket[] = [];
after(async () => {
  for (const c of clients) c.end();
  for (const s of sockets) s.destroy();
  for (const b of boxes) await b.cleanup();
});

/** PIDs of `git upload-pack` processes the node spawned. */
async function uploadPacks(pid: number): Promise<number[]> {
  const out: number[] = [];
  for (const task of await readdir(`/proc/${pid}/task`)) {
    const kids = (await readFile(`/proc/${pid}/task/${task}/children`, 'utf8').catch(() => '')).split(' ').filter(Boolean).map(Number);
    for (const k of kids) {
      const cmd = await readFile(`/proc/${k}/cmdline`, 'utf8').catch(() => '');
      if (cmd.includes('upload-pack')) out.push(k);
    }
  }
  return out;
}

const eventually = <T>(what: string, fn: () => Promise<T | undefined | false>, ms = 30_000) => waitFor(what, fn, ms);

/** An SSH connection as B; `hostile`: a client that ignores the server's disconnect and FIN. */
function connect(who: Identity, port: number, hostile: boolean): Promise<InstanceType<typeof Client>> {
  return new Promise((resolve, reject) => {
    const c = new Client();
    clients.push(c);
    const sock = new net.Socket({ allowHalfOpen: hostile });
    sockets.push(sock);
    if (hostile) sock.end = (() => sock) as typeof sock.end; // never sends its FIN
    sock.on('error', () => {});
    c.on('ready', () => resolve(c));
    c.on('error', (e) => reject(e));
    sock.connect(port, '127.0.0.1', () => c.connect({ sock, username: 'delugefs', privateKey: who.privateKeyOpenSSH, hostVerifier: () => true }));
  });
}

function exec(c: InstanceType<typeof Client>, cmd: string): Promise<ssh2.ClientChannel> {
  return new Promise((resolve, reject) => c.exec(cmd, (err, ch) => (err ? reject(err) : resolve(ch))));
}

test('a revocation merged from another member ends the revoked member\'s open sessions', { timeout: 120_000 }, async () => {
  const box = await sandbox('dfs-revoke');
  boxes.push(box);
  const a = await box.start(['--interface', 'lo'], { create: true, mount: false });
  const cRoot = join(box.dir, 'disk-c');
  const c = await box.start(['--interface', 'lo'], { root: cRoot, mount: false });
  const pid = a.proc.pid!;
  const port = Number(a.ready.sshPort);
  const b = await Identity.loadOrCreate(join(box.dir, 'b'));
  const r = await runCli(['authorize', box.root, b.publicKeyLine]);
  assert.equal(r.code, 0, r.err);

  // B's sessions on A, all authenticated while B is a member.
  const polite = await connect(b, port, false);
  const pack = await exec(polite, `git-upload-pack '/meta.git'`);
  let packClosed = false;
  pack.on('close', () => (packClosed = true));
  pack.on('data', () => {});
  const call = await exec(polite, 'delugefs-rpc status');
  call.write('{"never": "ends"'); // no EOF: the call waits for the rest
  let callClosed = false;
  call.on('data', () => {});
  call.on('close', () => (callClosed = true));
  const rude = await connect(b, port, true);
  const rudePack = await exec(rude, `git-upload-pack '/meta.git'`);
  rudePack.on('data', () => {});
  await eventually('two upload-packs on A', async () => (await uploadPacks(pid)).length === 2);

  // C learns of B, then removes it; A merges the tombstone from C (nobody runs remove-node on A).
  await eventually('C knows B', async () => {
    const m = await runCli(['members', cRoot, '--json']);
    return m.code === 0 && (JSON.parse(m.out) as Array<{ nodeId: string }>).some((x) => x.nodeId === b.nodeId);
  });
  const rm = await runCli(['remove-node', cRoot, b.nodeId]);
  assert.equal(rm.code, 0, rm.err);
  await eventually('A dropped B', async () => a.stderr().includes('"member_dropped"') && a.stderr().includes(b.nodeId));
  await eventually('B\'s git children on A ended', async () => (await uploadPacks(pid)).length === 0, 10_000);
  await eventually('B\'s channels closed', async () => packClosed && callClosed, 10_000).catch((e) => { throw new Error(`${(e as Error).message}: upload-pack ${packClosed}, rpc ${callClosed}`); });
  // And B is refused from now on: a new connection gets guest rights at most (no git).
  const again = await connect(b, port, false);
  const ch = await exec(again, `git-upload-pack '/meta.git'`);
  const err = await new Promise<string>((res) => {
    let e = '';
    ch.stderr.on('data', (d: Buffer) => (e += d));
    ch.on('close', () => res(e));
    ch.on('data', () => {});
  });
  assert.match(err, /not a member/);
  await c.stop();
});

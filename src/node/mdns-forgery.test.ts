// A forged mDNS announcement must not cut a member off. Two real nodes (A, B) on a namespace
// LAN with mDNS; a third machine X runs an SSH server with another host key and keeps
// announcing B's node id at its own address. A never dials X for B (B's address at A stays B's),
// sync keeps working, and A warns once, naming X's address.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, ChildProcess } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { createLan, netnsAvailable, NetnsLan, NetnsHost } from '../testing/netns.js';
import { CLI, runCli, waitReady, NodeProc } from '../testing/node-proc.js';
import { controlCall } from '../cluster/control-socket.js';
import { Identity } from '../cluster/identity.js';
import { eventually } from '../testing/eventually.js';

const skip = !(await netnsAvailable()) && 'needs root and iproute2';
const CL = 'mdnsf';
let dir = '';
let lan: NetnsLan | undefined;
const procs = new Set<ChildProcess>();

after(async () => {
  for (const p of procs) p.kill('SIGTERM');
  await Promise.all([...procs].map((p) => new Promise<void>((r) => {
    const t = setTimeout(() => { p.kill('SIGKILL'); r(); }, 10_000);
    p.once('exit', () => { clearTimeout(t); r(); });
  })));
  await lan?.teardown();
  if (dir) await rm(dir, { recursive: true, force: true });
});

async function startNode(name: string, host: NetnsHost, extra: string[]): Promise<{ root: string; proc: NodeProc; id: string }> {
  const root = join(dir, name);
  const args = [CLI, CL, root, '--json', '--interface', 'eth0', '--port', '17100', '--ssh-port', '17422', ...extra];
  const p = spawn('nsenter', [`--net=/run/netns/${host.ns}`, process.execPath, ...args], { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, DELUGEFS_RUN_DIR: join(dir, `run-${name}`) } });
  procs.add(p);
  p.on('exit', () => procs.delete(p));
  const proc = await waitReady(p, 30_000);
  return { root, proc, id: String(proc.ready.node) };
}

type Status = { peers: Array<{ nodeId: string; host: string; sshPort: number; source: string }> };

test('a forged mDNS announcement of a member does not cut it off', { skip, timeout: 120_000 }, async () => {
  dir = await mkdtemp(join(tmpdir(), 'dfs-mdnsf-'));
  lan = await createLan({ subnet: '10.79.0' });
  const [ha, hb, hx] = [await lan.addHost('a'), await lan.addHost('b'), await lan.addHost('x')];
  const a = await startNode('a', ha, ['--create']);
  const token = (await runCli(['invite', a.root])).out.trim();
  const b = await startNode('b', hb, ['--join', token]);
  const status = () => controlCall<Status>(join(a.root, 'control.sock'), 'status');
  const bAtA = async () => (await status()).peers.find((p) => p.nodeId === b.id);
  await eventually('A sees B over mDNS', async () => (await bAtA())?.source === 'mdns');

  // X: an SSH server with its own key on 7422, and adverts of B's node id at X every 300 ms.
  const fixture = new URL('../cluster/discovery.fixture.js', import.meta.url).pathname;
  const other = hx.spawn(process.execPath, [fixture, JSON.stringify({ cluster: 'elsewhere', sshPort: 7422, btPort: 6881, interface: 'eth0' })], { stdio: ['ignore', 'pipe', 'inherit'] });
  procs.add(other);
  await new Promise<void>((r) => createInterface({ input: other.stdout! }).on('line', (l) => { if (l.includes('"ready"')) r(); }));
  const mdnsPath = JSON.stringify(new URL('../../node_modules/multicast-dns/index.js', import.meta.url).pathname);
  const bFp = (await Identity.loadOrCreate(b.root)).fingerprint;
  const forger = hx.spawn(process.execPath, ['-e', `const m=require(${mdnsPath})({bind:'0.0.0.0',interface:'${hx.ip}'});m.on('ready',()=>setInterval(()=>
    m.respond({answers:[{name:'${b.id}._delugefs._tcp.local',type:'TXT',ttl:6,data:['cluster=${CL}','node=${b.id}','ssh=7422','bt=6881','fp=${bFp}']}]}),300))`], { stdio: 'ignore' });
  procs.add(forger);

  // Where A would dial B, sampled while the forgery goes on: always B's own address.
  const seen = new Set<string>();
  for (let i = 0; i < 40; i++) {
    const p = await bAtA().catch(() => undefined);
    if (p) seen.add(`${p.host}:${p.sshPort}`);
    await new Promise((r) => setTimeout(r, 200));
  }
  assert.deepEqual([...seen], [`${hb.ip}:17422`], 'B\'s address at A never moved to the forger');

  // Sync still works both ways while the forger keeps announcing.
  const k1 = await Identity.loadOrCreate(join(dir, 'k1'));
  assert.equal((await runCli(['authorize', a.root, k1.publicKeyLine])).code, 0);
  await eventually('A\'s change reaches B', async () => JSON.parse((await runCli(['members', b.root, '--json'])).out).some((m: { nodeId: string }) => m.nodeId === k1.nodeId));
  const k2 = await Identity.loadOrCreate(join(dir, 'k2'));
  assert.equal((await runCli(['authorize', b.root, k2.publicKeyLine])).code, 0);
  await eventually('B\'s change reaches A', async () => JSON.parse((await runCli(['members', a.root, '--json'])).out).some((m: { nodeId: string }) => m.nodeId === k2.nodeId));

  // The mismatch is a warning that names the forger's address, once per retry period, not per advert.
  const warnings = a.proc.stderr().split('\n').filter((l) => l.includes('"mdns_host_key_mismatch"')).map((l) => JSON.parse(l) as Record<string, unknown>);
  assert.ok(warnings.length >= 1 && warnings.length <= 2, `${warnings.length} mismatch warnings`);
  assert.equal(warnings[0]!.address, `${hx.ip}:7422`);
  assert.equal(warnings[0]!.nodeId, b.id);
  assert.equal(warnings[0]!.level, 'warn');
});

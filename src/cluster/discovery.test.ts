import { test } from 'node:test';
import assert from 'node:assert/strict';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import net from 'node:net';
import { createInterface } from 'node:readline';
import type { ChildProcess } from 'node:child_process';
import { createLan, netnsAvailable, NetnsHost } from '../testing/netns.js';
import { Identity } from './identity.js';
import { PeerSet, PeerRecord } from './peer-set.js';
import { StaticPeers, parseHostPort, probeBanner } from './static-peers.js';
import { SshServer } from './ssh-server.js';
import { memoryLog } from './log.js';

const fixture = join(dirname(fileURLToPath(import.meta.url)), 'discovery.fixture.js');
const skip = !(await netnsAvailable()) && 'needs root and iproute2';

interface Proc {
  nodeId: string;
  fingerprint: string;
  child: ChildProcess;
  events: Array<Record<string, unknown>>;
  waitFor(pred: (e: Record<string, unknown>) => boolean, ms: number): Promise<Record<string, unknown>>;
}

/** Starts a discovery participant (mDNS and an SSH server on 7422) inside a namespace. */
async function participant(host: NetnsHost, cluster: string, sshPort = 7422): Promise<Proc> {
  const cfg = { cluster, sshPort, btPort: 6881, interface: 'eth0' };
  const child = host.spawn(process.execPath, [fixture, JSON.stringify(cfg)], { stdio: ['ignore', 'pipe', 'inherit'] });
  const events: Array<Record<string, unknown>> = [];
  const waiters = new Set<() => void>();
  createInterface({ input: child.stdout! }).on('line', (l) => {
    try {
      events.push(JSON.parse(l));
    } catch {
      events.push({ ev: 'garbage', line: l });
    }
    for (const w of waiters) w();
  });
  const p: Proc = {
    nodeId: '',
    fingerprint: '',
    child,
    events,
    waitFor(pred, ms) {
      return new Promise((resolve, reject) => {
        const check = () => {
          const e = events.find(pred);
          if (!e) return false;
          clearTimeout(t);
          waiters.delete(w);
          resolve(e);
          return true;
        };
        const w = () => void check();
        const t = setTimeout(() => {
          waiters.delete(w);
          reject(new Error(`timeout after ${ms} ms; events: ${JSON.stringify(events.filter((e) => e.ev !== 'log' || e.event !== 'mdns_warning'))}`));
        }, ms);
        if (!check()) waiters.add(w);
      });
    },
  };
  const ready = await p.waitFor((e) => e.ev === 'ready', 10_000);
  p.nodeId = String(ready.nodeId);
  p.fingerprint = String(ready.fingerprint);
  return p;
}

const sawPeer = (id: string) => (e: Record<string, unknown>) => e.ev === 'peer' && e.nodeId === id;
const sawLost = (id: string) => (e: Record<string, unknown>) => e.ev === 'lost' && e.nodeId === id;

test('mDNS in namespaces: peers see each other, crashes and other clusters', { skip, timeout: 60_000 }, async () => {
  const lan = await createLan();
  try {
    const [ha, hb, hc, hd] = [await lan.addHost('a'), await lan.addHost('b'), await lan.addHost('c'), await lan.addHost('d')];
    const t0 = performance.now();
    const [a, b, c] = await Promise.all([participant(ha, 'blue'), participant(hb, 'blue'), participant(hc, 'blue')]);
    for (const [x, others] of [[a, [b, c]], [b, [a, c]], [c, [a, b]]] as const) {
      for (const o of others) await x.waitFor(sawPeer(o.nodeId), 5000);
    }
    console.log(`# 3 namespaces saw each other ${(performance.now() - t0).toFixed(0)} ms after spawn`);
    const rec = a.events.find(sawPeer(b.nodeId)) as unknown as PeerRecord;
    assert.equal(rec.host, hb.ip);
    assert.equal(rec.sshPort, 7422);
    assert.equal(rec.btPort, 6881);
    assert.equal(rec.cluster, 'blue');
    assert.match(rec.fingerprint, /^SHA256:/);
    // Nobody reports itself.
    for (const x of [a, b, c]) assert.ok(!x.events.some(sawPeer(x.nodeId)));

    // Two nodes in one namespace (two disks on one machine) see each other.
    const c2 = await participant(hc, 'blue');
    await c2.waitFor(sawPeer(c.nodeId), 5000);
    await c.waitFor(sawPeer(c2.nodeId), 5000);
    await a.waitFor(sawPeer(c2.nodeId), 5000);

    // A node of another cluster is ignored (and says so in the log).
    const d = await participant(hd, 'green');
    await a.waitFor((e) => e.ev === 'log' && e.event === 'ignored_other_cluster' && e.nodeId === d.nodeId, 5000);
    await d.waitFor((e) => e.ev === 'log' && e.event === 'ignored_other_cluster' && e.nodeId === a.nodeId, 5000);
    assert.ok(!a.events.some(sawPeer(d.nodeId)));
    assert.ok(!d.events.some((e) => e.ev === 'peer'));

    // Garbage and malformed adverts are logged and ignored; nobody crashes.
    const mdnsPath = JSON.stringify(new URL('../../node_modules/multicast-dns/index.js', import.meta.url).pathname);
    const junk = `const m=require(${mdnsPath})({bind:'0.0.0.0',interface:'${hd.ip}'});m.on('ready',()=>{
      require('dgram').createSocket('udp4').send(Buffer.from('garbage'),5353,'224.0.0.251',()=>{
      m.respond({answers:[{name:'zz._delugefs._tcp.local',type:'TXT',ttl:5,data:['cluster=blue','node=../../etc','ssh=99999']}]},()=>setTimeout(()=>process.exit(0),100))})})`;
    assert.equal((await hd.run(process.execPath, ['-e', junk])).code, 0);
    await a.waitFor((e) => e.ev === 'log' && e.event === 'mdns_malformed' && e.from === hd.ip, 5000);
    assert.equal(a.child.exitCode, null);

    // Forged adverts of b's node id: at d's listener (another host key), at a port where nothing
    // listens, and a goodbye, all from d's machine. None of them moves or ends b at a.
    const forge = (ttl: number, port: number) => `const m=require(${mdnsPath})({bind:'0.0.0.0',interface:'${hd.ip}'});m.on('ready',()=>{
      m.respond({answers:[{name:'${b.nodeId}._delugefs._tcp.local',type:'TXT',ttl:${ttl},data:['cluster=blue','node=${b.nodeId}','ssh=${port}','bt=6881','fp=${b.fingerprint}']}]},()=>setTimeout(()=>process.exit(0),100))})`;
    const forgedAt = a.events.length;
    assert.equal((await hd.run(process.execPath, ['-e', forge(6, 7422)])).code, 0);
    const mismatch = await a.waitFor((e) => e.ev === 'log' && e.event === 'mdns_host_key_mismatch' && e.nodeId === b.nodeId, 5000);
    assert.equal(mismatch.address, `${hd.ip}:7422`);
    assert.equal(mismatch.fingerprint, d.fingerprint);
    assert.equal((await hd.run(process.execPath, ['-e', forge(6, 1)])).code, 0);
    await a.waitFor((e) => e.ev === 'log' && e.event === 'mdns_address_unverified' && e.address === `${hd.ip}:1`, 5000);
    assert.equal((await hd.run(process.execPath, ['-e', forge(0, 7422)])).code, 0);
    await new Promise((r) => setTimeout(r, 500));
    const after = a.events.slice(forgedAt);
    assert.ok(!after.some((e) => (e.ev === 'peer' && e.nodeId === b.nodeId) || sawLost(b.nodeId)(e)), `b unchanged at a: ${JSON.stringify(after)}`);

    // A crash (SIGKILL: no goodbye) is noticed within 10 s.
    const tKill = performance.now();
    b.child.kill('SIGKILL');
    await Promise.all([a.waitFor(sawLost(b.nodeId), 10_000), c.waitFor(sawLost(b.nodeId), 10_000)]);
    console.log(`# crashed peer lost after ${(performance.now() - tKill).toFixed(0)} ms`);

    // A clean stop sends a goodbye: noticed at once.
    const tStop = performance.now();
    c2.child.kill('SIGTERM');
    await a.waitFor(sawLost(c2.nodeId), 5000);
    console.log(`# stopped peer lost after ${(performance.now() - tStop).toFixed(0)} ms`);

    // A partitioned peer is lost, and found again when the link heals.
    await hc.down();
    await a.waitFor(sawLost(c.nodeId), 10_000);
    const nPeer = a.events.filter(sawPeer(c.nodeId)).length;
    await hc.up();
    await a.waitFor((e) => sawPeer(c.nodeId)(e) && a.events.filter(sawPeer(c.nodeId)).length > nPeer, 10_000);
  } finally {
    await lan.teardown();
  }
});

test('static peers: host key learned by probe, lost when gone', { timeout: 30_000 }, async () => {
  assert.deepEqual(parseHostPort('10.0.0.1:22'), { host: '10.0.0.1', port: 22 });
  assert.deepEqual(parseHostPort('[::1]:7422'), { host: '::1', port: 7422 });
  for (const bad of ['host', 'host:0', 'host:70000', ':22', 'a b:1']) assert.throws(() => parseHostPort(bad), bad);

  const dir = await mkdtemp(join(tmpdir(), 'dfs-cl-static-'));
  const peers = new PeerSet();
  const sp = new StaticPeers({ peers, intervalMs: 200, lostAfterMs: 600, log: memoryLog() });
  let server: SshServer | undefined;
  try {
    const id = await Identity.loadOrCreate(dir);
    server = await SshServer.start({ identity: id, repoPath: dir, host: '127.0.0.1', port: 0, isMember: () => false, log: memoryLog() });
    const seen = new Promise<PeerRecord>((r) => peers.once('peer', r));
    sp.add(`127.0.0.1:${server.port}`);
    sp.start();
    const rec = await seen;
    assert.equal(rec.nodeId, id.nodeId);
    assert.equal(rec.fingerprint, id.fingerprint);
    assert.equal(rec.source, 'static');
    // remove() forgets at once; add() finds it again.
    const gone = new Promise<PeerRecord>((r) => peers.once('lost', r));
    sp.remove(`127.0.0.1:${server.port}`);
    assert.equal((await gone).nodeId, id.nodeId);
    const back = new Promise<PeerRecord>((r) => peers.once('peer', r));
    sp.add(`127.0.0.1:${server.port}`);
    assert.equal((await back).nodeId, id.nodeId);
    const lost = new Promise<PeerRecord>((r) => peers.once('lost', r));
    await server.close();
    server = undefined;
    assert.equal((await lost).nodeId, id.nodeId);
    assert.deepEqual(peers.list(), []);
  } finally {
    sp.stop();
    await server?.close();
    await rm(dir, { recursive: true, force: true });
  }
});

/** A TCP relay to `port` that counts what each client connection sent. */
async function countingRelay(port: number): Promise<{ port: number; sent: number[]; close(): Promise<void> }> {
  const sent: number[] = [];
  const socks = new Set<net.Socket>();
  const srv = net.createServer((c) => {
    const i = sent.push(0) - 1;
    const up = net.connect({ host: '127.0.0.1', port });
    for (const s of [c, up]) {
      socks.add(s);
      s.on('error', () => {});
      s.on('close', () => { socks.delete(s); c.destroy(); up.destroy(); });
    }
    c.on('data', (d: Buffer) => { sent[i] += d.length; up.write(d); });
    up.on('data', (d: Buffer) => c.write(d));
  });
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
  return {
    port: (srv.address() as net.AddressInfo).port,
    sent,
    close: () => { for (const s of socks) s.destroy(); return new Promise<void>((r) => srv.close(() => r())); },
  };
}

test('static peers: liveness between identifications reads the banner; no key exchange', { timeout: 30_000 }, async () => {
  const dir = await mkdtemp(join(tmpdir(), 'dfs-cl-banner-'));
  let server: SshServer | undefined;
  const relays: Awaited<ReturnType<typeof countingRelay>>[] = [];
  const sps: StaticPeers[] = [];
  try {
    const id = await Identity.loadOrCreate(dir);
    server = await SshServer.start({ identity: id, repoPath: dir, host: '127.0.0.1', port: 0, isMember: () => false, log: memoryLog() });
    // A key exchange sends the client's KEXINIT and more (well over 100 bytes); a banner probe sends nothing.
    const kexes = (sent: number[]) => sent.filter((n) => n > 100).length;
    for (const identifyMs of [60_000, 300]) {
      const relay = await countingRelay(server.port);
      relays.push(relay);
      const peers = new PeerSet();
      const sp = new StaticPeers({ peers, intervalMs: 100, lostAfterMs: 3000, identifyMs, log: memoryLog() });
      sps.push(sp);
      const seen = new Promise<PeerRecord>((r) => peers.once('peer', r));
      sp.add(`127.0.0.1:${relay.port}`);
      sp.start();
      assert.equal((await seen).nodeId, id.nodeId);
      await new Promise((r) => setTimeout(r, 1500));
      sp.stop();
      assert.ok(relay.sent.length >= 8, `probed ${relay.sent.length} times`);
      if (identifyMs === 60_000) assert.equal(kexes(relay.sent), 1, `key exchanges: ${relay.sent.join(' ')}`);
      else assert.ok(kexes(relay.sent) >= 3, `the key is checked again every ${identifyMs} ms: ${relay.sent.join(' ')}`);
      assert.equal(peers.list().length, 1, 'still seen');
    }
    // Not an SSH server: refused.
    const http = net.createServer((c) => c.end('HTTP/1.1 400 Bad Request\r\n\r\n'));
    await new Promise<void>((r) => http.listen(0, '127.0.0.1', r));
    await assert.rejects(probeBanner('127.0.0.1', (http.address() as net.AddressInfo).port), /not an SSH server/);
    http.close();
    await probeBanner('127.0.0.1', server.port);
  } finally {
    for (const sp of sps) sp.stop();
    for (const r of relays) await r.close();
    await server?.close();
    await rm(dir, { recursive: true, force: true });
  }
});

test('peer set merges sources and loses a peer only when no source sees it', () => {
  const s = new PeerSet();
  const ev: string[] = [];
  s.on('peer', (p) => ev.push(`peer ${p.source}`));
  s.on('lost', () => ev.push('lost'));
  const base = { nodeId: 'aaaaaaaaaaaaaaaa', fingerprint: 'SHA256:x', host: '10.0.0.1', sshPort: 1, addresses: ['10.0.0.1'] };
  s.update({ ...base, source: 'static' });
  s.update({ ...base, source: 'static' }); // unchanged: no event
  s.update({ ...base, source: 'mdns', cluster: 'c', btPort: 2 });
  s.remove(base.nodeId, 'mdns');
  s.remove(base.nodeId, 'static');
  assert.deepEqual(ev, ['peer static', 'peer mdns', 'peer static', 'lost']);
});

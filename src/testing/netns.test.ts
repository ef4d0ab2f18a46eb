import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { once } from 'node:events';
import { createLan, netnsAvailable, sweepStaleNamespaces } from './netns.js';

const exec = promisify(execFile);
const skip = !(await netnsAvailable()) && 'needs root and iproute2';

// A TCP listener that prints "ready" once bound; and a client that prints what it got or the error.
const SERVER = `require('net').createServer(s=>s.end('hello from '+process.argv[1])).listen(7000,'0.0.0.0',()=>console.log('ready'))`;
const CLIENT = `const s=require('net').connect(7000,process.argv[1]);let d='';s.setTimeout(1500,()=>{console.log('timeout');process.exit(0)});s.on('data',c=>d+=c);s.on('end',()=>console.log(d));s.on('error',e=>console.log(e.code))`;

async function namespaces(): Promise<string[]> {
  return (await exec('ip', ['netns', 'list'])).stdout.split('\n').map((l) => l.split(' ')[0]).filter(Boolean);
}

test('hosts on a LAN reach each other; partition (one host, or a split) and heal; teardown removes everything', { skip }, async () => {
  await sweepStaleNamespaces();
  const lan = await createLan();
  let torn = false;
  try {
    const [a, b, c] = [await lan.addHost('a'), await lan.addHost('b'), await lan.addHost('c')];
    assert.deepEqual([a.ip, b.ip, c.ip], ['10.77.0.1', '10.77.0.2', '10.77.0.3']);
    const ours = (await namespaces()).filter((n) => n.startsWith(lan.id));
    assert.equal(ours.length, 4);
    // Nothing of ours shows in the root namespace.
    assert.ok(!(await exec('ip', ['link'])).stdout.includes('v-a'));

    const srv = a.spawn(process.execPath, ['-e', SERVER, 'a'], { stdio: ['ignore', 'pipe', 'inherit'] });
    await once(srv.stdout!, 'data');
    assert.equal((await b.run(process.execPath, ['-e', CLIENT, a.ip])).stdout.trim(), 'hello from a');
    assert.equal((await c.run(process.execPath, ['-e', CLIENT, a.ip])).stdout.trim(), 'hello from a');
    const st = await a.linkStats();
    assert.ok(st.txBytes > 0 && st.rxBytes > 0 && st.txPackets > 0, JSON.stringify(st));
    // spawnNet: a's network, our mount namespace, and the pid is the command's own (no fork).
    const probe = a.spawnNet(process.execPath, ['-e', `console.log(process.pid, require('fs').readlinkSync('/proc/self/ns/mnt'), require('fs').readlinkSync('/proc/self/ns/net'))`], { stdio: ['ignore', 'pipe', 'inherit'] });
    const [pid, mntNs, netNs] = String((await once(probe.stdout!, 'data'))[0]).trim().split(' ');
    assert.equal(Number(pid), probe.pid);
    assert.equal(mntNs, (await exec('readlink', ['/proc/self/ns/mnt'])).stdout.trim());
    assert.notEqual(netNs, (await exec('readlink', ['/proc/self/ns/net'])).stdout.trim());
    // The listener is not reachable from the root namespace's loopback: it lives in a.
    assert.equal((await exec(process.execPath, ['-e', CLIENT.replace('process.argv[1]', "'127.0.0.1'")])).stdout.trim(), 'ECONNREFUSED');

    await a.down();
    assert.notEqual((await b.run(process.execPath, ['-e', CLIENT, a.ip])).stdout.trim(), 'hello from a');
    await a.up();
    // The multicast route is back after the heal.
    assert.match((await a.run('ip', ['route', 'show', '224.0.0.0/4'])).stdout, /dev eth0/);
    let got = '';
    for (let i = 0; i < 20 && got !== 'hello from a'; i++) {
      got = (await b.run(process.execPath, ['-e', CLIENT, a.ip])).stdout.trim();
      if (got !== 'hello from a') await new Promise((r) => setTimeout(r, 100));
    }
    assert.equal(got, 'hello from a');
    // A split: a and b on the second bridge reach each other, c reaches neither, until they move back.
    await Promise.all([a.side(1), b.side(1)]);
    assert.equal((await b.run(process.execPath, ['-e', CLIENT, a.ip])).stdout.trim(), 'hello from a');
    assert.notEqual((await c.run(process.execPath, ['-e', CLIENT, a.ip])).stdout.trim(), 'hello from a');
    await Promise.all([a.side(0), b.side(0)]);
    got = '';
    for (let i = 0; i < 20 && got !== 'hello from a'; i++) {
      got = (await c.run(process.execPath, ['-e', CLIENT, a.ip])).stdout.trim();
      if (got !== 'hello from a') await new Promise((r) => setTimeout(r, 100));
    }
    assert.equal(got, 'hello from a');

    await lan.teardown();
    torn = true;
    assert.ok(srv.exitCode !== null || srv.signalCode !== null);
    assert.deepEqual((await namespaces()).filter((n) => n.startsWith(lan.id)), []);
  } finally {
    if (!torn) await lan.teardown();
  }
});

test('teardown runs even when setup fails half-way', { skip }, async () => {
  const lan = await createLan();
  try {
    await lan.addHost('x');
    await assert.rejects(lan.addHost('x'), /exists/);
    await assert.rejects(lan.addHost('Bad_Name'), /host name/);
  } finally {
    await lan.teardown();
  }
  assert.deepEqual((await namespaces()).filter((n) => n.startsWith(lan.id)), []);
});

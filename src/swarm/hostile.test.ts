// Bad input: peers that corrupt data, fall silent, hang up mid-piece, send oversized or malformed
// messages, ask for content we do not have or bytes beyond it. The engine must not crash, must
// never hand out a bad byte, and must finish from the honest peer. These are plaintext peers, so
// the engines here have no members and share the content with outsiders explicitly.
import { test, after, before } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile, readFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { once } from 'node:events';
import { createHash, randomBytes } from 'node:crypto';
import { startEngine, EngineProc } from './testing/harness.js';
import { HostilePeer, Behaviour, probe, handshake, message } from './testing/hostile.js';
import { decodeTorrent, pieceCount } from '../content/metainfo.js';

let dir = '';
let seeder: EngineProc;
let id = '';
let torrent = '';
let pieces = 0;
let data: Buffer;
const procs: EngineProc[] = [];
const sha1 = (b: Buffer): string => createHash('sha1').update(b).digest('hex');

before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'dfs-hostile-'));
  data = randomBytes(12 * 1024 * 1024 + 777);
  await writeFile(join(dir, 'f'), data);
  seeder = await startEngine({ root: join(dir, 'seeder'), plain: true });
  procs.push(seeder);
  ({ id, torrent } = await seeder.call('add', { path: join(dir, 'f'), share: true }));
  pieces = pieceCount(decodeTorrent(Buffer.from(torrent, 'hex')).info);
});

after(async () => {
  await Promise.all(procs.map((p) => p.stop(true)));
  await rm(dir, { recursive: true, force: true });
});

/** Waits until `cond` holds, re-checking on each of `ev`'s events. */
async function until(em: HostilePeer, ev: string, cond: () => boolean): Promise<void> {
  while (!cond()) await once(em, ev);
}

async function againstHostile(behaviour: Behaviour, ready: (h: HostilePeer) => Promise<void>): Promise<EngineProc> {
  const h = new HostilePeer(id, pieces, behaviour);
  await h.listen();
  const b = await startEngine({ root: join(dir, `b-${behaviour}`), peers: [`127.0.0.1:${h.port}`], requestTimeout: 1500, plain: true, share: [id] });
  procs.push(b);
  const fetching = b.call('fetch', { torrent });
  // Only the hostile peer is known until it has done its worst; then the honest one.
  await ready(h);
  await b.call('addPeer', { host: '127.0.0.1', port: seeder.port });
  const { path } = await fetching;
  assert.equal(sha1(await readFile(path)), sha1(data), `${behaviour}: content`);
  await h.close();
  return b;
}

test('a peer sending corrupt blocks is caught by verification, banned, and the transfer finishes elsewhere', async () => {
  const b = await againstHostile('corrupt', async (h) => {
    await until(h, 'closed', () => h.closed > 0); // banned after repeated bad pieces
  });
  const st = await b.call('stats', { id });
  assert.ok(st.badPieces >= 2, `bad pieces seen: ${st.badPieces}`);
  // Reported where an operator looks: warnings, not free text at debug.
  const ev = (await b.call('events')) as { level: string; event: string; fields: { id?: string } }[];
  assert.ok(ev.some((e) => e.level === 'warn' && e.event === 'swarm.bad_piece' && e.fields.id === id), JSON.stringify(ev));
  assert.ok(ev.some((e) => e.level === 'warn' && e.event === 'swarm.banned'), JSON.stringify(ev));
  await b.stop();
});

test('a peer that never answers is timed out and its blocks are fetched elsewhere', async () => {
  const b = await againstHostile('silent', async (h) => {
    await until(h, 'request', () => h.requests > 0);
  });
  await b.stop();
});

test('a peer hanging up mid-piece', async () => {
  const b = await againstHostile('hangup', async (h) => {
    await until(h, 'closed', () => h.closed > 0);
  });
  await b.stop();
});

test('an oversized message ends the connection, not the engine', async () => {
  const b = await againstHostile('oversized', async (h) => {
    await until(h, 'closed', () => h.closed > 0);
  });
  await b.stop();
});

test('malformed messages do not crash the engine', async () => {
  const b = await againstHostile('garbage', async (h) => {
    await until(h, 'closed', () => h.closed > 0);
  });
  await b.stop();
});

test('a seeder refuses unknown content and bad requests, and keeps serving', async () => {
  // Unknown info hash: hung up on before any reply.
  const unknown = await probe(seeder.port, handshake(randomBytes(20).toString('hex')), []);
  assert.equal(unknown.handshook, false);
  // Not BitTorrent at all.
  const http = await probe(seeder.port, Buffer.from('GET / HTTP/1.1\r\nHost: x\r\n\r\n'), []);
  assert.equal(http.handshook, false);
  // Requests beyond the content, past the end of the last piece, and far too long.
  for (const req of [[pieces + 5, 0, 16384], [pieces - 1, 16 * 1024 * 1024, 16384], [0, 0, 4 * 1024 * 1024], [-1, 0, 16384]]) {
    const r = await probe(seeder.port, handshake(id), [message(2), message(6, req[0]!, req[1]!, req[2]!)]);
    assert.equal(r.unchoked, true, `request ${req}`);
  }
  // An oversized length prefix straight after the handshake.
  const big = Buffer.alloc(4);
  big.writeUInt32BE(0xfffffff0);
  await probe(seeder.port, handshake(id), [big, randomBytes(1000)], true);
  // Still serving.
  const b = await startEngine({ root: join(dir, 'b-after'), peers: [`127.0.0.1:${seeder.port}`], plain: true, share: [id] });
  procs.push(b);
  const r = await b.call('read', { torrent, start: 1000, end: 2_000_000 });
  assert.equal(r.sha1, sha1(data.subarray(1000, 2_000_000)));
  await b.stop();
});

test('a request cancelled and asked again at once is still answered', { timeout: 30_000 }, async () => {
  // Regression: the wire matches answers by (index, offset, length); answering the cancelled
  // one consumed the new one, which then never came.
  const { connect } = await import('node:net');
  const { reader } = await import('./testing/hostile.js');
  const got = await new Promise<number>((resolve) => {
    const s = connect({ host: '127.0.0.1', port: seeder.port });
    let pieces = 0;
    s.on('error', () => {});
    s.on('connect', () => s.write(Buffer.concat([handshake(id), message(2)])));
    reader(s, () => {}, (mid, body) => {
      if (mid === 1) s.write(Buffer.concat([message(6, 3, 0, 16384), message(8, 3, 0, 16384), message(6, 3, 0, 16384)]));
      if (mid === 7 && body.readUInt32BE(0) === 3) {
        pieces++;
        s.destroy();
        resolve(pieces);
      }
    });
  });
  assert.equal(got, 1);
});

// Membership: with node-key proofs, members exchange data and a stranger gets none.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { once } from 'node:events';
import { createHash, generateKeyPairSync, randomBytes } from 'node:crypto';
import { startEngine, EngineProc } from './testing/harness.js';

const procs: EngineProc[] = [];
let dir = '';
after(async () => {
  await Promise.all(procs.map((p) => p.stop(true)));
  if (dir) await rm(dir, { recursive: true, force: true });
});

function keys(node: string) {
  const { publicKey, privateKey } = generateKeyPairSync('ed25519');
  return { node, key: privateKey.export({ type: 'pkcs8', format: 'pem' }).toString(), pub: publicKey.export({ type: 'spki', format: 'pem' }).toString() };
}

test('members fetch from each other; a non-member with a valid key of its own is refused and gets no data', async () => {
  dir = await mkdtemp(join(tmpdir(), 'dfs-member-'));
  const data = randomBytes(3 * 1024 * 1024);
  await writeFile(join(dir, 'f'), data);
  const [ka, kb, kc] = [keys('node-a'), keys('node-b'), keys('node-c')];
  const members = { 'node-a': ka.pub, 'node-b': kb.pub };
  const auth = (k: typeof ka, m: Record<string, string>) => ({ node: k.node, key: k.key, members: m });
  const a = await engine({ root: join(dir, 'a'), auth: auth(ka, members) });
  const { id, torrent } = await a.call('add', { path: join(dir, 'f') });
  const b = await engine({ root: join(dir, 'b'), auth: auth(kb, members), peers: [`127.0.0.1:${a.port}`] });
  const r = await b.call('read', { torrent, start: 0, end: data.length });
  assert.equal(r.sha1, createHash('sha1').update(data).digest('hex'));
  // c believes it is a member (it trusts a), but a does not know c's key.
  const c = await engine({ root: join(dir, 'c'), auth: auth(kc, { 'node-a': ka.pub, 'node-c': kc.pub }), peers: [`127.0.0.1:${a.port}`] });
  const refused = once(a, 'refused');
  void c.call('fetch', { torrent }).catch(() => {});
  const [ev] = await refused;
  assert.equal(ev.node, null);
  const st = await c.call('stats', { id });
  assert.equal(st.downloaded, 0);
  assert.equal(st.piecesHave, 0);
});

async function engine(args: Record<string, unknown>): Promise<EngineProc> {
  const e = await startEngine(args);
  procs.push(e);
  return e;
}

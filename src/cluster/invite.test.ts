import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Identity } from './identity.js';
import { createInvite, decodeInvite, verifyInvite, FileNonceStore, InviteError, registerJoin, redeemInvite, JOIN_METHOD, inviterFingerprint } from './invite.js';
import { SshServer } from './ssh-server.js';
import { RpcClient, RpcCallError } from './rpc-client.js';
import { RpcRegistry } from './rpc.js';
import { memoryLog } from './log.js';
import { gitSshCommand, writeKnownHosts } from './git-ssh.js';
import { runProc } from '../testing/proc.js';

let dir: string;
let a: Identity;
let b: Identity;
let c: Identity;

before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'dfs-cl-invite-'));
  [a, b, c] = await Promise.all(['a', 'b', 'c'].map((n) => Identity.loadOrCreate(join(dir, n))));
});
after(() => rm(dir, { recursive: true, force: true }));

const code = (c: string) => (e: unknown) => e instanceof InviteError && e.code === c;

test('tokens are signed, single-use, expiring, bound to cluster (name and id) and issuer', async () => {
  const nonces = new FileNonceStore(join(dir, 'a', 'identity', 'used-invites.json'));
  const { token, payload } = createInvite(a, { cluster: 'blue', addresses: ['10.0.0.1:7422'], ttlMs: 60_000 });
  assert.deepEqual(decodeInvite(token), payload);
  assert.equal(inviterFingerprint(payload), a.fingerprint);

  // Tampering with any part breaks the signature.
  const [p, body, sig] = token.split('.');
  const forged = JSON.parse(Buffer.from(body, 'base64url').toString());
  forged.e += 1e9;
  assert.throws(() => decodeInvite(`${p}.${Buffer.from(JSON.stringify(forged)).toString('base64url')}.${sig}`), code('bad_signature'));
  assert.throws(() => decodeInvite('hello'), code('malformed'));
  assert.throws(() => decodeInvite(`${p}.${body}.${Buffer.alloc(64).toString('base64url')}`), code('bad_signature'));

  await assert.rejects(verifyInvite(token, { identity: a, cluster: 'green', nonces }), code('wrong_cluster'));
  await assert.rejects(verifyInvite(token, { identity: b, cluster: 'blue', nonces }), code('wrong_node'));
  await assert.rejects(verifyInvite(token, { identity: a, cluster: 'blue', nonces, now: payload.e + 1 }), code('expired'));
  assert.deepEqual(await verifyInvite(token, { identity: a, cluster: 'blue', nonces }), payload);
  await assert.rejects(verifyInvite(token, { identity: a, cluster: 'blue', nonces }), code('used'));
  // The record survives a restart.
  await assert.rejects(verifyInvite(token, { identity: a, cluster: 'blue', nonces: new FileNonceStore(nonces.path) }), code('used'));
  // Bound to the cluster's id too: another cluster of the same name (where a is a member as well) refuses a's token for this one.
  const [blueOne, blueTwo] = [{ cluster: 'blue', clusterId: '1'.repeat(32), addresses: [] }, { cluster: 'blue', clusterId: '2'.repeat(32) }];
  const t1 = createInvite(a, blueOne).token;
  await assert.rejects(verifyInvite(t1, { identity: a, nonces, ...blueTwo }), code('wrong_cluster'));
  assert.equal((await verifyInvite(t1, { identity: a, nonces, ...blueOne })).x, decodeInvite(t1).x);
  // Concurrent redemptions of one fresh token: exactly one wins.
  const t2 = createInvite(a, { cluster: 'blue', addresses: [] }).token;
  const results = await Promise.allSettled([1, 2, 3].map(() => verifyInvite(t2, { identity: a, cluster: 'blue', nonces })));
  assert.equal(results.filter((r) => r.status === 'fulfilled').length, 1);
});

test('joining over SSH with a token: admitted once, replay refused, guests limited to join', async () => {
  const members = new Set([a.nodeId]);
  const log = memoryLog();
  const registry = new RpcRegistry().register('echo', (x) => x);
  const nonces = new FileNonceStore(join(dir, 'a', 'identity', 'used-invites-2.json'));
  registerJoin(registry, {
    identity: a,
    cluster: 'blue',
    nonces,
    log,
    admit: async ({ peer, params }) => {
      members.add(peer.nodeId);
      return { cluster: 'blue', welcome: peer.nodeId, name: params.name };
    },
  });
  const server = await SshServer.start({
    identity: a, repoPath: join(dir, 'nothing'), host: '127.0.0.1', port: 0, rpc: registry, log,
    isMember: (k) => members.has(k.nodeId), guestMethods: [JOIN_METHOD],
  });
  try {
    const addr = `127.0.0.1:${server.port}`;
    // A guest (c, not yet invited) can reach nothing but join.
    const guest = new RpcClient({ identity: c, host: '127.0.0.1', port: server.port, hostFingerprint: a.fingerprint, log: memoryLog() });
    await assert.rejects(guest.call('echo', 1), (e: RpcCallError) => e.code === 'refused' && /not a member/.test(e.message));
    await assert.rejects(guest.call(JOIN_METHOD, { token: 'junk' }), (e: RpcCallError) => e.code === 'invite_malformed');
    guest.close();
    const kh = join(dir, 'c', 'known_hosts');
    await writeKnownHosts(kh, [{ host: '127.0.0.1', port: server.port, publicKey: a.publicKeyLine }]);
    const git = await runProc('sh', ['-c', `${gitSshCommand({ identity: c, knownHostsPath: kh, port: server.port })} x@127.0.0.1 "git-upload-pack '/meta.git'"`]);
    assert.notEqual(git.code, 0);
    assert.match(git.stderr, /not a member/);

    const { token } = createInvite(a, { cluster: 'blue', addresses: ['127.0.0.1:1', addr] });
    const { result } = await redeemInvite(b, token, { params: { name: 'disk-b' }, log: memoryLog() });
    assert.deepEqual(result, { cluster: 'blue', welcome: b.nodeId, name: 'disk-b' });
    assert.ok(members.has(b.nodeId));
    // Now b is a member on a fresh connection.
    const cb = new RpcClient({ identity: b, host: '127.0.0.1', port: server.port, hostFingerprint: a.fingerprint, log: memoryLog() });
    assert.equal(await cb.call('echo', 5), 5);
    cb.close();

    // Replay by someone else: refused with a clear reason, c stays out.
    await assert.rejects(redeemInvite(c, token, { log: memoryLog() }), (e: RpcCallError) => e.code === 'invite_used' && /already used/.test(e.message));
    assert.ok(!members.has(c.nodeId));
    assert.ok(log.events.some((e) => e.event === 'join_refused' && e.code === 'used'));
    // An expired token is refused before any connection.
    const old = createInvite(a, { cluster: 'blue', addresses: [addr], ttlMs: -1 }).token;
    await assert.rejects(redeemInvite(c, old), code('expired'));
    // A token whose host key is not the server's: the joiner refuses to talk to that server.
    const fake = createInvite(b, { cluster: 'blue', addresses: [addr] }).token;
    await assert.rejects(redeemInvite(c, fake, { log: memoryLog() }), (e: RpcCallError) => e.code === 'host_key_mismatch');
  } finally {
    await server.close();
  }
});

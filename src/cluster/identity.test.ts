import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm, stat, readFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { Identity, isNodeId, parsePublicKeyLine, verifySignature, fingerprintOf } from './identity.js';

const run = promisify(execFile);

test('identity is created once, persisted with mode 0600, and reloaded identically', async () => {
  const root = await mkdtemp(join(tmpdir(), 'dfs-cl-id-'));
  try {
    const a = await Identity.loadOrCreate(root);
    assert.ok(isNodeId(a.nodeId), a.nodeId);
    assert.match(a.publicKeyLine, new RegExp(`^ssh-ed25519 AAAA[A-Za-z0-9+/=]+ delugefs:${a.nodeId}$`));
    assert.match(a.fingerprint, /^SHA256:[A-Za-z0-9+/]{43}$/);
    assert.equal((await stat(a.privateKeyPath)).mode & 0o777, 0o600);
    const b = await Identity.loadOrCreate(root);
    assert.equal(b.nodeId, a.nodeId);
    assert.equal(b.publicKeyLine, a.publicKeyLine);
    assert.equal((await readFile(join(root, 'identity', 'id_ed25519.pub'), 'utf8')).trim(), a.publicKeyLine);

    // Signatures verify with the key line or blob and fail on other data or keys.
    const sig = a.sign('hello');
    assert.ok(a.verify('hello', sig));
    assert.ok(verifySignature(a.publicKeyLine, 'hello', sig));
    assert.ok(!verifySignature(a.publicKeyLine, 'hellO', sig));
    assert.ok(!verifySignature(a.publicKeyLine, 'hello', Buffer.alloc(64)));
    assert.equal(fingerprintOf(parsePublicKeyLine(a.publicKeyLine).blob), a.fingerprint);
    assert.throws(() => parsePublicKeyLine('ssh-rsa AAAAB3 x'));
    assert.throws(() => parsePublicKeyLine('ssh-ed25519 AAAA garbage'));

    // The system OpenSSH tools accept the private key and agree on public key and fingerprint.
    const { stdout: pub } = await run('ssh-keygen', ['-y', '-f', a.privateKeyPath]);
    assert.equal(pub.trim().split(' ').slice(0, 2).join(' '), a.publicKeyLine.split(' ').slice(0, 2).join(' '));
    const { stdout: fp } = await run('ssh-keygen', ['-l', '-E', 'sha256', '-f', join(root, 'identity', 'id_ed25519.pub')]);
    assert.equal(fp.split(' ')[1], a.fingerprint);
  } finally {
    await rm(root, { recursive: true, force: true });
  }
});

test('two roots get different node ids', async () => {
  const r1 = await mkdtemp(join(tmpdir(), 'dfs-cl-id-'));
  const r2 = await mkdtemp(join(tmpdir(), 'dfs-cl-id-'));
  try {
    const [a, b] = await Promise.all([Identity.loadOrCreate(r1), Identity.loadOrCreate(r2)]);
    assert.notEqual(a.nodeId, b.nodeId);
    assert.ok(!verifySignature(b.publicKeyBlob, 'x', a.sign('x')));
  } finally {
    await rm(r1, { recursive: true, force: true });
    await rm(r2, { recursive: true, force: true });
  }
});

test('concurrent first starts on one root agree on one identity', async () => {
  const root = await mkdtemp(join(tmpdir(), 'dfs-cl-id-'));
  try {
    const ids = await Promise.all([1, 2, 3, 4].map(() => Identity.loadOrCreate(root)));
    assert.equal(new Set(ids.map((i) => i.nodeId)).size, 1);
    assert.equal((await Identity.loadOrCreate(root)).nodeId, ids[0].nodeId);
  } finally {
    await rm(root, { recursive: true, force: true });
  }
});

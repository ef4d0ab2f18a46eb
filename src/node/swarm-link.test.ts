// The swarm as a real node wires it: a node (namespace, store, cluster, swarm link) serves a
// file to a member over TLS, and drops that member's connection as soon as its revocation is
// committed; the member's next connection is refused. The member is a bare engine in this process
// holding a key the node admitted.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { once } from 'node:events';
import { createHash, createPublicKey, generateKeyPairSync, randomBytes } from 'node:crypto';
import { createLayout, paths } from './layout.js';
import { DelugeNode } from './node.js';
import { ClusterNode } from './cluster-node.js';
import { SwarmLink } from './swarm-link.js';
import { Swarm } from '../swarm/engine.js';
import { ContentStore } from '../content/store.js';
import { hashFile, closeHashers } from '../content/hasher.js';
import { closeVerifiers } from '../swarm/verify.js';
import { infoHash } from '../content/metainfo.js';
import { nodeIdOf, publicKeyLineOf } from '../cluster/identity.js';
import { nodeKeyObject, sshBlobOf } from '../cluster/wire-auth.js';
import { createLogger } from '../util/log.js';

const sha1 = (b: Buffer): string => createHash('sha1').update(b).digest('hex');

test('a node serves members over TLS and drops a member\'s connections when its revocation commits', { timeout: 60_000 }, async () => {
  const dir = await mkdtemp(join(tmpdir(), 'dfs-link-'));
  const log = createLogger({}, 'error');
  const closers: Array<() => Promise<unknown>> = [];
  try {
    const root = join(dir, 'a');
    const p = paths(root);
    const config = await createLayout(p, 'wt');
    const node = await DelugeNode.start({ paths: p, config, log, create: true });
    closers.push(() => node.close());
    const cluster = await ClusterNode.start(node, p, config, log, { btPort: 0, sshPort: 0, mdns: false, create: true, interface: 'lo' });
    closers.push(() => cluster.close());
    const link = await SwarmLink.start(node, cluster, { root, clusterName: 'wt', port: 0, log });
    closers.push(() => link.close());

    // A file on the node, 2 MiB.
    const data = randomBytes(2 * 1024 * 1024);
    await writeFile(join(dir, 'f'), data);
    const info = await hashFile(join(dir, 'f'));
    const id = infoHash(info);
    const fh = await node.create('/f.bin', 0o644);
    await node.write(fh, data, data.length, 0);
    await node.release(fh);
    while (!node.ns.tree.info(id) || !(await node.store.has(id))) await once(node.ns, 'commit');

    // Another member: its key admitted by the node.
    const kb = generateKeyPairSync('ed25519');
    const blob = sshBlobOf(kb.publicKey)!;
    const bId = nodeIdOf(blob);
    await cluster.membership.admit({ publicKey: publicKeyLineOf(blob), hostname: 'b' });
    const aPub = createPublicKey(nodeKeyObject(cluster.identity));
    const store = new ContentStore(join(dir, 'b', 'content'), join(dir, 'b', 'tmp'));
    await store.init();
    const b = new Swarm({
      store, host: '127.0.0.1', port: 0, readAhead: 1, peers: [`127.0.0.1:${link.port}`],
      secure: { key: kb.privateKey, verify: (k) => (k.equals(aPub) ? cluster.identity.nodeId : null) },
    });
    closers.push(() => b.close());
    await b.listen();
    assert.equal(sha1(await b.read(id, info, 0, 100_000)), sha1(data.subarray(0, 100_000)));
    assert.equal(link.swarm.stats(id)?.peers, 1);

    // Revoked: the open connection goes at once, the reconnection is refused.
    const refused = once(link.swarm, 'refused');
    await cluster.membership.revoke(bId);
    await refused;
    assert.equal(link.swarm.stats(id)?.peers, 0);
    assert.equal(b.stats(id)?.peers, 0);
  } finally {
    for (const c of closers.reverse()) await c().catch(() => {});
    // Worker threads (hashing, piece verification) would keep the test process alive.
    await closeHashers();
    await closeVerifiers();
    await rm(dir, { recursive: true, force: true });
  }
});

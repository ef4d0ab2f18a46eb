// MetaSync's fetch from a member is bounded (bounded-fetch.ts), over real SSH: member B's own
// SSH server serves a main branch holding an incompressible blob bigger than A's (test-sized)
// cap. A's fetch fails, its repository is byte for byte as it was, and no partial pack or
// quarantine remains, fetch after fetch; with the real cap the same fetch lands.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdir, mkdtemp, readdir, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { Namespace } from '../meta/namespace.js';
import type { DirEntry } from '../meta/entry.js';
import { silentLogger } from '../util/log.js';
import { run } from '../util/exec.js';
import { gitEnv } from '../meta/repo.js';
import { Identity } from './identity.js';
import { Membership } from './membership.js';
import { guardRepository } from './repo-guard.js';
import { MetaSync } from './sync.js';
import { PeerSet } from './peer-set.js';
import { SshServer } from './ssh-server.js';
import { memoryLog } from './log.js';
import { QUARANTINE_PREFIX } from './bounded-fetch.js';

const T0 = Date.UTC(2026, 0, 2, 3, 4, 5);
const dir: DirEntry = { type: 'dir', mode: 0o755, uid: 0, gid: 0, mtime: T0, ctime: T0 };
const git = async (repo: string, args: string[], input?: string) => (await run('git', [`--git-dir=${repo}`, ...args], { env: gitEnv(), input })).stdout.toString().trim();

async function files(d: string, out = new Map<string, number>()): Promise<Map<string, number>> {
  for (const e of await readdir(d, { withFileTypes: true })) {
    const p = join(d, e.name);
    if (e.isDirectory()) await files(p, out);
    else out.set(p, (await stat(p)).size);
  }
  return out;
}

test('sync: a member serving a pack over the cap is refused and nothing of it stays; under the cap it lands', async () => {
  const d = await mkdtemp(join(tmpdir(), 'dfs-sync-fetchcap-'));
  let server: SshServer | undefined;
  const syncs: MetaSync[] = [];
  try {
    const idA = await Identity.loadOrCreate(join(d, 'keys', 'a'));
    const idB = await Identity.loadOrCreate(join(d, 'keys', 'b'));
    const a = await Namespace.create({ dir: join(d, 'a'), nodeId: idA.nodeId, log: silentLogger }, dir, 'create');
    const m = new Membership(a, () => {}, idA);
    await m.admit({ publicKey: idA.publicKeyLine, hostname: 'a', cluster: 'capcluster' });
    await m.admit({ publicKey: idB.publicKeyLine, hostname: 'b' });
    await a.commit();
    await guardRepository(a.repo.dir);
    // B (rogue or not): a clone of A's repository whose main gets a 3 MiB random blob by hand.
    const repoB = join(d, 'b', 'repo.git');
    await run('git', ['clone', '--bare', '-q', '--', a.repo.dir, repoB], { env: gitEnv() });
    await writeFile(join(d, 'big'), randomBytes(3 * 2 ** 20));
    const blob = await git(repoB, ['hash-object', '-w', '--', join(d, 'big')]);
    const tree = await git(repoB, ['mktree'], `100644 blob ${blob}\tbig\n`);
    const headB = await git(repoB, ['-c', 'user.name=b', '-c', 'user.email=b@b', 'commit-tree', '-p', a.head!, '-m', 'big', tree]);
    await git(repoB, ['update-ref', 'refs/heads/main', headB]);
    await git(repoB, ['update-ref', `refs/nodes/${idB.nodeId}`, headB]);
    server = await SshServer.start({ identity: idB, repoPath: repoB, isMember: async (k) => k.nodeId === idA.nodeId, host: '127.0.0.1', port: 0 });
    const peers = new PeerSet();
    peers.update({ nodeId: idB.nodeId, fingerprint: idB.fingerprint, host: '127.0.0.1', sshPort: server.port, addresses: [], source: 'static' });

    // A crash's leftover quarantine: removed when sync starts.
    await mkdir(join(a.repo.dir, 'objects', `${QUARANTINE_PREFIX}crash`, 'objects', 'pack'), { recursive: true });
    await writeFile(join(a.repo.dir, 'objects', `${QUARANTINE_PREFIX}crash`, 'objects', 'pack', 'tmp_pack_x'), randomBytes(1000));
    const startSync = (maxFetchBytes?: number) => {
      const log = memoryLog();
      const s = new MetaSync({ ns: a, identity: idA, membership: m, peers, stateDir: join(d, 'state'), log, auditMs: 3_600_000, maxFetchBytes });
      syncs.push(s);
      s.start();
      return log;
    };
    const until = async (log: ReturnType<typeof memoryLog>, re: RegExp, n = 1) => {
      for (let i = 0; i < 1500 && log.events.filter((e) => re.test(e.event)).length < n; i++) await new Promise((r) => setTimeout(r, 20));
      return log.events.filter((e) => re.test(e.event));
    };
    const gone = async () => {
      for (let i = 0; i < 100 && (await readdir(join(a.repo.dir, 'objects'))).some((n) => n.startsWith(QUARANTINE_PREFIX)); i++) await new Promise((r) => setTimeout(r, 20));
    };

    let log = startSync(2 ** 20);
    let ev = await until(log, /^sync_fetch(ed|_failed)$/);
    assert.equal(ev[0]?.event, 'sync_fetch_failed', JSON.stringify(ev));
    assert.match(String(ev[0]?.error), /more than 1048576 bytes/);
    await gone();
    const before = await files(a.repo.dir);
    assert.deepEqual([...before.keys()].filter((p) => p.includes(QUARANTINE_PREFIX) || p.includes('tmp_')), []);
    assert.equal((await run('git', [`--git-dir=${a.repo.dir}`, 'cat-file', '-e', blob], { env: gitEnv(), allowFail: true })).code, 1);
    for (let i = 2; i <= 3; i++) {
      log.events.length = 0;
      syncs.at(-1)!.syncAll('again');
      ev = await until(log, /^sync_fetch(ed|_failed)$/);
      assert.equal(ev[0]?.event, 'sync_fetch_failed');
      assert.deepEqual(await files(a.repo.dir), before, `fetch ${i} changed the repository`);
    }
    await syncs.at(-1)!.close();

    log = startSync();
    ev = await until(log, /^sync_fetch(ed|_failed)$/);
    assert.equal(ev[0]?.event, 'sync_fetched', JSON.stringify(ev));
    assert.equal(await git(a.repo.dir, ['rev-parse', `refs/nodes/${idB.nodeId}`]), headB);
    await git(a.repo.dir, ['cat-file', '-e', blob]);
  } finally {
    for (const s of syncs) await s.close();
    await server?.close();
    await rm(d, { recursive: true, force: true });
  }
});

// Metadata sync between members, event-driven. A node pushes its head into refs/peers/<its id>
// of every reachable member shortly after each commit (debounced); the receiver merges that ref
// on receipt. When a peer is seen (start, reconnect, heal) the two fetch from and push to each
// other, so a node that was offline catches up. Failed pushes retry with backoff; a slow audit
// is the safety net. Merges are deterministic (meta/), so pushes of the same head end the echo.
import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import type { EventEmitter } from 'node:events';
import { run } from '../util/exec.js';
import { gitEnv } from '../meta/repo.js';
import type { Identity } from './identity.js';
import type { Membership } from './membership.js';
import type { PeerSet } from './peer-set.js';
import { gitSshEnv, knownHostsText, metaRepoUrl, writeKnownHosts } from './git-ssh.js';
import { parseHostPort } from './static-peers.js';
import type { Log } from './log.js';

/** The part of meta/namespace.ts sync needs. */
export interface SyncNamespace extends EventEmitter {
  head: string | null;
  repo: { dir: string };
  /** `refusal` is asked when the merge's turn comes (after earlier changes are committed); a reason refuses it. */
  mergeFrom(oid: string, refusal?: () => string | null): Promise<{ head: string; changed: boolean }>;
}

export interface SyncOptions {
  ns: SyncNamespace;
  identity: Identity;
  membership: Membership;
  peers: PeerSet;
  /** Directory for per-peer known_hosts files (built from member records). */
  stateDir: string;
  log: Log;
  debounceMs?: number;
  auditMs?: number;
}

interface PeerState {
  pushing: boolean;
  again: boolean;
  /** Head we last pushed to it, and the newest head we know it has (its pushes, our fetches). */
  lastSent?: string;
  lastHave?: string;
  failures: number;
  retry?: NodeJS.Timeout;
  knownHosts?: string;
  controlPath?: string;
  /** Ref value whose merge failed: not retried until the peer sends something new. */
  bad?: string;
  /** Last ref value merged fine: a refused one is rolled back to it, so it cannot block the peer's next push. */
  good?: string;
}

/** Where a peer pushes (guarded by the pre-receive hook), and where we fetch its head into: two refs, so a push and a fetch never race for one ref lock. */
const PEER_REF = (id: string) => `refs/peers/${id}`;
const FETCHED_REF = (id: string) => `refs/fetched/${id}`;

export class MetaSync {
  private state = new Map<string, PeerState>();
  /** Refs to merge, in arrival order: `${nodeId} ${ref}`. */
  private toMerge = new Set<string>();
  private merging?: Promise<void>;
  private debounce?: NodeJS.Timeout;
  private pushPending = false;
  /** When this node last made a merge commit (not a fast-forward). */
  private lastMergeAt = 0;
  private audit?: NodeJS.Timeout;
  private closed = false;
  private inflight = new Set<Promise<unknown>>();
  private readonly repo: string;
  private readonly me: string;

  constructor(private readonly o: SyncOptions) {
    this.repo = o.ns.repo.dir;
    this.me = o.identity.nodeId;
  }

  start(): void {
    this.o.ns.on('commit', this.onCommit);
    this.o.peers.on('peer', this.onPeer);
    this.audit = setInterval(() => this.syncAll('audit'), this.o.auditMs ?? 60_000);
    this.audit.unref();
    this.syncAll('start');
  }

  async close(): Promise<void> {
    this.closed = true;
    this.o.ns.off('commit', this.onCommit);
    this.o.peers.off('peer', this.onPeer);
    clearTimeout(this.debounce);
    clearInterval(this.audit);
    for (const s of this.state.values()) clearTimeout(s.retry);
    await Promise.allSettled([...this.inflight, this.merging]);
    // The multiplexing ssh masters are our children in all but name: end them with us.
    await Promise.allSettled([...this.state.values()].filter((s) => s.controlPath).map((s) =>
      run('ssh', ['-F', '/dev/null', '-o', `ControlPath=${s.controlPath}`, '-O', 'exit', 'peer'], { allowFail: true })));
  }

  /** A member pushed to us (SSH receive-pack finished): merge its ref. */
  received(nodeId: string): void {
    this.scheduleMerge(nodeId, PEER_REF(nodeId));
  }

  /** Fetch from and push to every reachable member (start, audit, membership changed). */
  syncAll(why: string): void {
    for (const id of this.targets()) this.track(this.syncWith(id, why));
  }

  /** Heads as known per peer, for status output. */
  peerHeads(): Record<string, { sent?: string; have?: string; failures: number }> {
    const out: Record<string, { sent?: string; have?: string; failures: number }> = {};
    for (const [id, s] of this.state) out[id] = { sent: s.lastSent, have: s.lastHave, failures: s.failures };
    return out;
  }

  private onCommit = (): void => {
    if (this.closed) return;
    this.pushPending = true;
    if (!this.merging) this.schedulePush();
  };

  /**
   * Pushes the head once no merge is queued (a node absorbs every head it was sent, then pushes
   * once). After a real merge it waits a random 50-300 ms: nodes that merged the same heads in
   * another order would otherwise keep trading fresh merge commits (a merge storm); the first
   * push usually contains the others' heads, so they fast-forward to it instead of merging.
   */
  private schedulePush(): void {
    clearTimeout(this.debounce);
    const merged = Date.now() - this.lastMergeAt < 1000;
    const wait = merged ? 50 + Math.random() * 250 : (this.o.debounceMs ?? 20);
    this.debounce = setTimeout(() => {
      if (this.merging || this.closed) return; // drain() reschedules when it is done
      this.pushPending = false;
      for (const id of this.targets()) this.track(this.pushTo(id));
    }, wait);
  }

  private onPeer = (p: { nodeId: string }): void => {
    if (!this.closed && this.o.membership.get(p.nodeId) && p.nodeId !== this.me) this.track(this.syncWith(p.nodeId, 'peer seen'));
  };

  /** Background work: never an unhandled rejection (a peer's bad day must not end this node). */
  private track(p: Promise<unknown>): void {
    const q = p.catch((e) => this.o.log('sync_error', { error: (e as Error)?.message ?? String(e) }));
    this.inflight.add(q);
    void q.finally(() => this.inflight.delete(q));
  }

  /** Members we can reach now (seen by discovery), except us. */
  private targets(): string[] {
    return this.o.peers.list().map((p) => p.nodeId).filter((id) => id !== this.me && this.o.membership.get(id));
  }

  private peerState(id: string): PeerState {
    let s = this.state.get(id);
    if (!s) this.state.set(id, (s = { pushing: false, again: false, failures: 0 }));
    return s;
  }

  private async syncWith(id: string, why: string): Promise<void> {
    await this.fetchFrom(id, why);
    await this.pushTo(id);
  }

  /** Environment and URL for git to reach a member; null when it is not reachable or not a member. */
  private async remote(id: string): Promise<{ url: string; env: NodeJS.ProcessEnv } | null> {
    const member = this.o.membership.get(id);
    const p = this.o.peers.get(id);
    if (!member || !p) return null;
    const s = this.peerState(id);
    const path = join(this.o.stateDir, `known_hosts-${id}`);
    // Host key from the member record, addresses from discovery and the record: mDNS cannot
    // vouch for a key. Every address is listed, so a concurrent rewrite never strands a connect.
    const hosts = new Set([`${p.host}:${p.sshPort}`, ...p.addresses.map((h) => `${h}:${p.sshPort}`), ...member.addresses]);
    const entries = [...hosts].flatMap((hp) => {
      try {
        const { host, port } = parseHostPort(hp);
        return [{ host, port, publicKey: member.publicKey }];
      } catch {
        return [];
      }
    });
    const text = knownHostsText(entries);
    if (s.knownHosts !== text) {
      s.knownHosts = text;
      await mkdir(this.o.stateDir, { recursive: true, mode: 0o700 });
      await writeKnownHosts(path, entries);
    }
    // One multiplexed connection per peer (keyed by this path), when the path fits in a socket address.
    const cm = join(this.o.stateDir, `cm-${id}`);
    // sun_path holds 104 bytes on FreeBSD (108 on Linux) and ssh appends a 17-byte suffix while it sets the socket up.
    const controlPath = Buffer.byteLength(cm) <= 86 ? cm : undefined;
    if (controlPath) s.controlPath = controlPath;
    const env = { ...gitEnv(), ...gitSshEnv({ identity: this.o.identity, knownHostsPath: path, connectTimeoutSec: 5, controlPath, persistSec: 30 }) };
    return { url: metaRepoUrl(p.host, p.sshPort), env };
  }

  private async fetchFrom(id: string, why: string): Promise<void> {
    if (this.closed) return;
    const r = await this.remote(id);
    if (!r) return;
    const t0 = Date.now();
    const res = await run('git', [`--git-dir=${this.repo}`, 'fetch', '--quiet', '--no-tags', '--no-write-fetch-head', '--', r.url, `+refs/heads/main:${FETCHED_REF(id)}`], { env: r.env, allowFail: true });
    if (res.code !== 0) {
      this.o.log('sync_fetch_failed', { peer: id, why, error: res.stderr.trim().slice(0, 500) });
      return;
    }
    this.o.log('sync_fetched', { peer: id, why, ms: Date.now() - t0 });
    this.scheduleMerge(id, FETCHED_REF(id));
  }

  private async pushTo(id: string): Promise<void> {
    const s = this.peerState(id);
    if (s.pushing) {
      s.again = true;
      return;
    }
    s.pushing = true;
    try {
      do {
        s.again = false;
        const head = this.o.ns.head;
        if (this.closed || !head || head === s.lastSent || head === s.lastHave) continue;
        const r = await this.remote(id);
        if (!r) break;
        const t0 = Date.now();
        const res = await run('git', [`--git-dir=${this.repo}`, 'push', '--quiet', '--no-verify', '--', r.url, `${head}:${PEER_REF(this.me)}`], { env: r.env, allowFail: true });
        if (res.code !== 0) throw new Error(res.stderr.trim().slice(0, 500));
        s.lastSent = head;
        s.failures = 0;
        this.o.log('sync_pushed', { peer: id, head, ms: Date.now() - t0 });
      } while (s.again);
    } catch (e) {
      s.failures++;
      // Event-driven retry: 1 s, 2 s, 4 s ... 30 s after a failure (peer busy, link down).
      const wait = Math.min(30_000, 1000 * 2 ** Math.min(5, s.failures - 1));
      this.o.log('sync_push_failed', { peer: id, error: (e as Error).message, retryMs: wait });
      clearTimeout(s.retry);
      s.retry = setTimeout(() => { if (!this.closed) this.track(this.syncWith(id, 'retry')); }, wait);
      s.retry.unref();
    } finally {
      s.pushing = false;
    }
  }

  private scheduleMerge(id: string, ref: string): void {
    if (this.closed) return;
    this.toMerge.add(`${id} ${ref}`);
    if (!this.merging) this.merging = this.drain();
  }

  /** One merge at a time, in the order peers arrived. */
  private async drain(): Promise<void> {
    for (;;) {
      const key = this.toMerge.values().next().value as string | undefined;
      if (key === undefined || this.closed) {
        this.merging = undefined;
        if (this.pushPending && !this.closed) this.schedulePush();
        return;
      }
      this.toMerge.delete(key);
      const [id, ref] = key.split(' ') as [string, string];
      await this.mergeRef(id, ref).catch((e) => this.o.log('sync_merge_error', { peer: id, error: (e as Error).message }));
    }
  }

  private async mergeRef(id: string, ref: string): Promise<void> {
    const res = await run('git', [`--git-dir=${this.repo}`, 'rev-parse', '--verify', '--quiet', `${ref}^{commit}`], { env: gitEnv(), allowFail: true });
    const oid = res.stdout.toString().trim();
    if (res.code !== 0 || !oid) return;
    const s = this.peerState(id);
    s.lastHave = oid;
    if (oid === s.bad) return;
    if (oid === this.o.ns.head) {
      s.good = oid;
      return;
    }
    const notMember = () => (this.o.membership.get(id) ? null : `${id} is not a member (removed?)`);
    if (notMember()) {
      this.o.log('sync_merge_refused', { peer: id, oid, reason: notMember() });
      return;
    }
    const t0 = Date.now();
    try {
      // mergeFrom validates every incoming entry and name, and changes nothing when one is bad.
      // Membership is asked again when the merge's turn comes: a removal made while it waited counts.
      const r = await this.o.ns.mergeFrom(oid, notMember);
      if (r.changed && r.head !== oid) this.lastMergeAt = Date.now();
      s.good = oid;
      this.o.log('sync_merged', { peer: id, oid, head: r.head, changed: r.changed, ms: Date.now() - t0 });
    } catch (e) {
      // A malformed entry or commit from a peer: our head stays as it was; say so once.
      s.bad = oid;
      this.o.log('sync_merge_refused', { peer: id, oid, reason: (e as Error).message.slice(0, 500) });
      if (ref === PEER_REF(id)) {
        const args = s.good ? ['update-ref', ref, s.good, oid] : ['update-ref', '-d', ref, oid];
        await run('git', [`--git-dir=${this.repo}`, ...args], { env: gitEnv(), allowFail: true });
      }
      s.lastHave = s.good;
    }
  }
}

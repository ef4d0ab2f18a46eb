// Metadata sync between members (the protocol and why it converges: README.md, "Sync").
// Every node's latest own commit is kept in refs/nodes/<its id> on every node; that map is a
// version vector (each value only moves forward). A node's head is the view of the map
// (Namespace.adoptHeads: one deterministic commit from the set), so nodes that know the same
// heads have the same head and no merge commit is ever sent for its own sake. New values
// spread by gossip along a tree (a few pushes per node per change, log2(N) hops), and
// anti-entropy compares the maps first (`git ls-remote`: the summary) and moves only the
// difference: when a peer is seen, after a burst, on membership news, and a slow audit.
import { createHash } from 'node:crypto';
import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import type { EventEmitter } from 'node:events';
import { run } from '../util/exec.js';
import { gitEnv, NODE_REFS, ObjectMissingError } from '../meta/repo.js';
import type { GitRepo } from '../meta/repo.js';
import type { Identity } from './identity.js';
import { isNodeId } from './identity.js';
import type { Membership } from './membership.js';
import type { PeerSet } from './peer-set.js';
import { gitSshEnv, knownHostsText, metaRepoUrl, writeKnownHosts } from './git-ssh.js';
import { parseHostPort } from './static-peers.js';
import { boundedFetchRefs, removeStaleQuarantines } from './bounded-fetch.js';
import type { Log } from './log.js';
import { RpcClient, RpcCallError } from './rpc-client.js';
import { RpcError } from './rpc.js';
import { encodePush, MAX_PUSH_BYTES, MAX_PUSH_OBJECTS, PushRefused, receivePush, SYNC_PUSH, type PushParams, type PushReply } from './sync-push.js';
import { parseSummary, servePull, summary, SYNC_PULL, SYNC_SUMMARY, type PullReply } from './sync-pull.js';
import { objectsToSend } from '../meta/object-walk.js';

/** The part of meta/namespace.ts sync needs. */
export interface SyncNamespace extends EventEmitter {
  head: string | null;
  /** This node's latest own commit. */
  own: string | null;
  repo: Pick<GitRepo, 'dir' | 'listRefs' | 'readRef' | 'readRefs' | 'isAncestor' | 'updateRefsEach' | 'types' | 'writeObjects' | 'newCommits' | 'rawObjects' | 'readCommit' | 'readTrees' | 'totalSize'>;
  /** `refusal` is asked when the view's turn comes (after earlier changes are committed); a reason refuses it. */
  adoptHeads(heads: string[], refusal?: () => string | null): Promise<{ head: string; changed: boolean }>;
  /** Folds small packs (sync_push stores one per call). */
  maintain?(): Promise<void>;
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
  /** Slow audit: one summary exchange with one peer per period. */
  auditMs?: number;
  /** Quiet time after activity before a summary exchange with the next member on the ring. */
  settleMs?: number;
  /** Pushes per node per gossip round along the tree (its children). */
  fanout?: number;
  /** Largest pack a fetch from a peer may bring (default MAX_PACK), and its deadline: for tests. */
  maxFetchBytes?: number;
  fetchTimeoutMs?: number;
}

interface PeerState {
  /** What we know the peer holds: node id -> its refs/nodes value (from its pushes, ours, summaries). */
  has: Map<string, string>;
  pushing: boolean;
  again: boolean;
  exchanging: boolean;
  exchangeAgain?: string;
  failures: number;
  retry?: NodeJS.Timeout;
  knownHosts?: string;
  controlPath?: string;
  pushes: number;
  /** Values it refused (e.g. of a member it does not know yet): not offered again until membership news. */
  refused: Map<string, string>;
  /** Member RPC to it (sync_push), its address, and when it was last used (closed when idle). */
  rpc?: { client: RpcClient; at: string; used: number };
  /** It does not answer sync_push (an older version): git push only, until membership news. */
  noRpcPush?: boolean;
  /** It does not answer sync_summary / sync_pull: ls-remote and git fetch, until membership news. */
  noRpcPull?: boolean;
  /** It lacked objects we thought it had: git push only until a summary exchange tells what it holds. */
  rpcAfterExchange?: boolean;
}

/** Commits and bytes one sync_push may carry; more (a long catch-up) goes by git push. */
const RPC_PUSH_LIMITS = { maxCommits: 256, maxBytes: MAX_PUSH_BYTES, maxObjects: MAX_PUSH_OBJECTS };
/** An RPC connection unused this long is closed: an idle node keeps no traffic going. */
const RPC_IDLE_MS = 30_000;
/** The settle queue's mark for values that came by sync_push. */
const RPC_PUSH = 'rpc push';
/** sync_push calls served at once. */
const MAX_RECEIVING = 4;
const MAX_RECEIVE_WAITING = 16;
/** sync_pull calls served at once (each walks and reads what the asker lacks); more are told `busy`. */
const MAX_SERVING = 4;

const ref = (id: string) => NODE_REFS + id;
/** A node's view of the cluster holds at most this many refs (members, current and past). */
const MAX_REFS = 100_000;

export class MetaSync {
  private state = new Map<string, PeerState>();
  /** Values adopted into our view (validated): node id -> commit. */
  private known = new Map<string, string>();
  /**
   * Values that passed the hooks and are being adopted: passed on at once (a hop costs a push,
   * not a push and a view), and dropped if the view refuses them (every node refuses alike).
   */
  private fwd = new Map<string, string>();
  /** Values refused (a malformed head): never adopted, never passed on again. */
  private bad = new Set<string>();
  /** Node ids whose new values still have to be gossiped. */
  private dirty = new Set<string>();
  private settleQueue: string[] = [];
  private settling?: Promise<void>;
  private gossipTimer?: NodeJS.Timeout;
  private quietTimer?: NodeJS.Timeout;
  private audit?: NodeJS.Timeout;
  private closed = false;
  private inflight = new Set<Promise<unknown>>();
  /** sync_push calls being served, and those waiting for a turn (the RPC layer bounds how many wait). */
  private receiving = 0;
  private receiveWaiters: (() => void)[] = [];
  private serving = 0;
  /** Each sync_push that stored something is a pack: the repository is maintained every so many. */
  private packsReceived = 0;
  private idleRpc?: NodeJS.Timeout;
  private readonly repo: string;
  private readonly me: string;

  constructor(private readonly o: SyncOptions) {
    this.repo = o.ns.repo.dir;
    this.me = o.identity.nodeId;
  }

  start(): void {
    this.o.ns.on('commit', this.onCommit);
    this.o.peers.on('peer', this.onPeer);
    this.o.peers.on('back', this.onBack);
    this.audit = setInterval(() => this.exchangeAny('audit'), this.o.auditMs ?? 60_000);
    this.audit.unref();
    this.idleRpc = setInterval(() => {
      for (const s of this.state.values()) {
        if (s.rpc && Date.now() - s.rpc.used > RPC_IDLE_MS) {
          s.rpc.client.close();
          s.rpc = undefined;
        }
      }
    }, RPC_IDLE_MS);
    this.idleRpc.unref();
    // A crash mid-fetch leaves its quarantine; fetches started meanwhile are never taken for one.
    this.track(removeStaleQuarantines(this.repo).then((n) => { if (n) this.o.log('sync_stale_fetches_removed', { count: n }); }));
    this.scheduleSettle('start');
    this.syncAll('start');
  }

  async close(): Promise<void> {
    this.closed = true;
    this.o.ns.off('commit', this.onCommit);
    this.o.peers.off('peer', this.onPeer);
    this.o.peers.off('back', this.onBack);
    clearTimeout(this.gossipTimer);
    clearTimeout(this.quietTimer);
    clearInterval(this.audit);
    clearInterval(this.idleRpc);
    for (const s of this.state.values()) {
      clearTimeout(s.retry);
      s.rpc?.client.close();
      s.rpc = undefined;
    }
    await Promise.allSettled([...this.inflight, this.settling]);
    // The multiplexing ssh masters are our children in all but name: end them with us.
    await Promise.allSettled([...this.state.values()].filter((s) => s.controlPath).map((s) => this.closeMaster(s)));
  }

  /** A member pushed to us (SSH receive-pack finished): adopt what it brought. */
  received(nodeId: string): void {
    this.scheduleSettle(nodeId);
  }

  /** A member's sync_push (the RPC layer authenticated it as `nodeId`): judged, stored, then adopted. */
  async receivePush(nodeId: string, params: unknown): Promise<PushReply> {
    // Each waiting call holds its parsed objects: past a few, the pusher is told to use git push.
    if (this.receiving >= MAX_RECEIVING && this.receiveWaiters.length >= MAX_RECEIVE_WAITING) throw new RpcError('busy', 'too many sync pushes at once');
    return this.receiveSlot(async () => {
      const reply = await this.store(params);
      // The pusher holds every member value it sent (what came in meanwhile by other ways is not its).
      if (!reply.missing) {
        const has = this.peerState(nodeId).has;
        for (const [id, oid] of Object.entries((params as { refs: Record<string, string> }).refs)) if (this.o.membership.get(id)) has.set(id, oid);
      }
      if (Object.values(reply.results).includes('ok')) {
        this.packStored();
        this.scheduleSettle(RPC_PUSH);
      }
      return reply;
    });
  }

  /**
   * Runs `fn` when fewer than MAX_RECEIVING stores are under way: received pushes and our pulls'
   * replies share the bound (each parses and writes up to a call's objects). Refs are
   * compare-and-swapped, so concurrent ones are safe.
   */
  private async receiveSlot<T>(fn: () => Promise<T>): Promise<T> {
    while (this.receiving >= MAX_RECEIVING) await new Promise<void>((r) => this.receiveWaiters.push(r));
    this.receiving++;
    try {
      return await fn();
    } finally {
      this.receiving--;
      this.receiveWaiters.shift()?.();
    }
  }

  /** Judges and stores what a sync_push or a pull's reply carries, by the hooks' rules (sync-push.ts). */
  private store(params: unknown): Promise<PushReply> {
    return receivePush({ repo: this.o.ns.repo, isMember: (id) => !!this.o.membership.get(id), self: this.me }, params);
  }

  /** Each call that stored something is a pack: the repository is maintained every so many. */
  private packStored(): void {
    if (++this.packsReceived % 50 === 0) void this.o.ns.maintain?.().catch(() => {});
  }

  /** A member's sync_summary: our refs/nodes map. */
  summary(): Promise<{ refs: Record<string, string> }> {
    return summary(this.o.ns.repo);
  }

  /** A member's sync_pull (sync-pull.ts): the values it asks for and the objects it lacks of them. */
  async servePull(params: unknown): Promise<PullReply> {
    if (this.serving >= MAX_SERVING) throw new RpcError('busy', 'too many sync pulls at once');
    this.serving++;
    try {
      return await servePull(this.o.ns.repo, params, RPC_PUSH_LIMITS.maxCommits);
    } finally {
      this.serving--;
    }
  }

  /**
   * Membership news or a start: every backoff is forgotten and every reachable member compared
   * with at once (a member that was refused as a stranger a moment ago is one now).
   */
  syncAll(why: string): void {
    for (const id of this.targets()) {
      const s = this.peerState(id);
      clearTimeout(s.retry);
      if (s.failures && s.controlPath) void this.closeMaster(s); // it may hold a session opened as a guest
      s.failures = 0;
      s.refused.clear();
      s.noRpcPush = false;
      s.noRpcPull = false;
      this.track(this.exchange(id, why));
    }
  }

  /** Per peer: what it lacks of ours as far as we know, failures, pushes made. */
  peerHeads(): Record<string, { behind: number; failures: number; pushes: number }> {
    const out: Record<string, { behind: number; failures: number; pushes: number }> = {};
    for (const [id, s] of this.state) out[id] = { behind: this.lacking(s).length, failures: s.failures, pushes: s.pushes };
    return out;
  }

  private onCommit = (): void => {
    if (this.closed) return;
    const own = this.o.ns.own;
    if (!own || this.known.get(this.me) === own) return; // a new view, not a change of ours
    this.known.set(this.me, own);
    this.dirty.add(this.me);
    this.scheduleGossip();
  };

  private onPeer = (p: { nodeId: string }): void => {
    if (!this.closed && this.o.membership.get(p.nodeId) && p.nodeId !== this.me) this.track(this.exchange(p.nodeId, 'peer seen'));
  };

  /** A peer we backed off from answers again (a partition healed): compare now, not at the next retry. */
  private onBack = (id: string): void => {
    const s = this.state.get(id);
    if (this.closed || !s?.failures || !this.o.membership.get(id)) return;
    clearTimeout(s.retry);
    s.failures = 0;
    this.track(this.exchange(id, 'peer back'));
  };

  /** Background work: never an unhandled rejection (a peer's bad day must not end this node). */
  private track(p: Promise<unknown>): void {
    const q = p.catch((e) => this.o.log('sync_error', { error: (e as Error)?.message ?? String(e) }, 'warn'));
    this.inflight.add(q);
    void q.finally(() => this.inflight.delete(q));
  }

  /** Members we can reach now (seen by discovery), except us. */
  private targets(): string[] {
    return this.o.peers.list().map((p) => p.nodeId).filter((id) => id !== this.me && this.o.membership.get(id));
  }

  private peerState(id: string): PeerState {
    let s = this.state.get(id);
    if (!s) this.state.set(id, (s = { has: new Map(), pushing: false, again: false, exchanging: false, failures: 0, pushes: 0, refused: new Map() }));
    return s;
  }

  /** The latest commit of node `id` we hold and have adopted (its refs/nodes value), if any. */
  adopted(id: string): string | undefined {
    return this.known.get(id);
  }

  /** What we pass on: the adopted values, and those being adopted. */
  private offered(): Map<string, string> {
    if (!this.fwd.size) return this.known;
    const m = new Map(this.known);
    for (const [id, oid] of this.fwd) m.set(id, oid);
    return m;
  }

  /** Values we offer that the peer does not hold, as far as we know. */
  private lacking(s: PeerState): string[] {
    const out: string[] = [];
    for (const [id, oid] of this.offered()) if (s.has.get(id) !== oid) out.push(id);
    return out;
  }

  // ---- adopting what arrived --------------------------------------------------------------

  private scheduleSettle(from: string): void {
    if (this.closed) return;
    this.settleQueue.push(from);
    if (!this.settling) this.settling = this.drainSettle();
  }

  private async drainSettle(): Promise<void> {
    while (this.settleQueue.length && !this.closed) {
      // Everything queued is adopted in one step: the refs say what arrived, not the queue.
      const from = new Set(this.settleQueue.splice(0));
      await this.settle(from).catch((e) => this.o.log('sync_settle_error', { error: (e as Error).message }, 'warn'));
    }
    this.settling = undefined;
  }

  /** Adopts the refs/nodes values that arrived (pushed to us or fetched) into the view. */
  private async settle(from: Set<string>): Promise<void> {
    const refs = await this.nodeRefs();
    const changed: string[] = [];
    for (const [id, oid] of refs) {
      if (this.known.get(id) === oid) continue;
      if (id === this.me) continue; // ours moves with our commits only
      // Who holds what is not guessed from here: a ref may have moved by another push or fetch
      // while this settle ran (a guess gave a peer values it lacked: sync_push then named objects
      // it did not have). sync_push, our pushes, fetches and summaries say it exactly.
      if (this.bad.has(oid)) {
        await this.rollBack(id, oid);
        continue;
      }
      changed.push(id);
    }
    if (from.has('start')) {
      // Our own ref as stored (a view of the map is adopted below with the rest).
      if (this.o.ns.own) this.known.set(this.me, this.o.ns.own);
    }
    // A value that came in while its node was a member, now removed: never adopted.
    const notMember = (id: string) => (this.o.membership.get(id) ? null : `${id} is not a member (removed?)`);
    for (const id of [...changed]) {
      const why = notMember(id);
      if (!why) continue;
      changed.splice(changed.indexOf(id), 1);
      await this.refuse(id, refs.get(id)!, why);
    }
    if (!changed.length && !from.has('start')) return;
    for (const id of changed) {
      this.fwd.set(id, refs.get(id)!);
      this.dirty.add(id);
    }
    if (changed.length) this.scheduleGossip();
    const t0 = Date.now();
    const others = (m: Map<string, string>) => [...m].filter(([id]) => id !== this.me).map(([, oid]) => oid);
    const proposal = new Map(this.known);
    for (const id of changed) proposal.set(id, refs.get(id)!);
    try {
      // Membership is asked again when the view's turn comes: a removal made while it waited counts.
      const r = await this.o.ns.adoptHeads(others(proposal), () => changed.map(notMember).find(Boolean) ?? null);
      // A removal among the new values refuses the removed node's new value that came with it
      // (as if the removal had arrived first): the view is made again without it.
      const gone = changed.filter((id) => notMember(id));
      if (gone.length) {
        for (const id of gone) changed.splice(changed.indexOf(id), 1);
        const without = new Map(this.known);
        for (const id of changed) without.set(id, refs.get(id)!);
        await this.o.ns.adoptHeads(others(without));
        for (const id of gone) await this.refuse(id, refs.get(id)!, notMember(id)!);
      }
      for (const id of changed) {
        this.known.set(id, refs.get(id)!);
        if (this.fwd.get(id) === refs.get(id)) this.fwd.delete(id);
      }
      this.o.log('sync_adopted', { heads: changed.length, head: r.head, changed: r.changed, ms: Date.now() - t0 });
    } catch (e) {
      // Find the culprit: each new value on its own, in id order (every node that sees the same
      // values refuses the same ones).
      this.o.log('sync_view_refused', { reason: (e as Error).message.slice(0, 300), heads: changed.length }, 'warn');
      for (const id of changed.sort()) {
        const oid = refs.get(id)!;
        const trial = new Map(this.known).set(id, oid);
        try {
          await this.o.ns.adoptHeads(others(trial), () => notMember(id));
          this.known.set(id, oid);
          if (this.fwd.get(id) === oid) this.fwd.delete(id);
        } catch (err) {
          if (err instanceof ObjectMissingError) await this.incomplete(id, oid, err.message);
          else await this.refuse(id, oid, (err as Error).message);
        }
      }
    }
    // Passed on already (fwd); what the view refused is dropped from there.
    for (const id of changed) if (this.fwd.get(id) === refs.get(id) && this.known.get(id) !== refs.get(id)) this.fwd.delete(id);
  }

  /**
   * A value whose objects are not all here (a fact about this node, not the value): never marked
   * bad. Its ref goes back to the adopted value, so the next summary exchange asks for it again
   * with its objects; one is started now.
   */
  private async incomplete(id: string, oid: string, why: string): Promise<void> {
    if (this.fwd.get(id) === oid) this.fwd.delete(id);
    this.o.log('sync_value_incomplete', { peer: id, oid, reason: why.slice(0, 300) }, 'warn');
    await this.rollBack(id, oid);
    this.exchangeAny('incomplete');
  }

  /** A summary exchange with one reachable member, chosen at random. */
  private exchangeAny(why: string): void {
    const t = this.targets();
    if (t.length) this.track(this.exchange(t[Math.floor(Math.random() * t.length)]!, why));
  }

  private async refuse(id: string, oid: string, why: string): Promise<void> {
    this.bad.add(oid);
    if (this.fwd.get(id) === oid) this.fwd.delete(id);
    this.o.log('sync_merge_refused', { peer: id, oid, reason: why.slice(0, 500) }, 'warn');
    await this.rollBack(id, oid);
  }

  /** Our refs/nodes/* by node id (anything else under it is ignored). */
  private async nodeRefs(): Promise<Map<string, string>> {
    return new Map([...(await this.o.ns.repo.listRefs(NODE_REFS))].filter(([id]) => isNodeId(id)));
  }

  /** Puts a refused value's ref back where it was (or away): a later good value must still fast-forward it. */
  private async rollBack(id: string, oid: string): Promise<void> {
    const good = this.known.get(id);
    const args = good ? ['update-ref', ref(id), good, oid] : ['update-ref', '-d', ref(id), oid];
    await run('git', [`--git-dir=${this.repo}`, ...args], { env: gitEnv(), allowFail: true });
  }

  // ---- gossip -----------------------------------------------------------------------------

  private scheduleGossip(): void {
    if (this.gossipTimer || this.closed) return;
    this.gossipTimer = setTimeout(() => {
      this.gossipTimer = undefined;
      this.gossip();
    }, this.o.debounceMs ?? 5);
  }

  /**
   * Sends the new values down the dissemination tree of each: members ordered by a hash of the
   * value's origin (its own node first), position p sends to 2p+1 and 2p+2 (fanout 2), so each
   * node receives a change about once and the tree differs per origin (no node carries all).
   * A child that cannot be reached is skipped over: its children are sent to instead.
   */
  private gossip(): void {
    if (this.closed) return;
    const ids = [...this.dirty];
    this.dirty.clear();
    const reach = this.targets();
    const want = new Set<string>();
    const fanout = this.o.fanout ?? 4;
    for (const origin of ids) {
      const order = treeOrder(origin, [this.me, ...reach]);
      const pos = order.indexOf(this.me);
      for (const c of children(order, pos, fanout)) want.add(c);
    }
    for (const id of want) {
      this.track(this.pushTo(id).then((ok) => {
        if (ok) return;
        // Its subtree must not wait for the audit: take it over.
        for (const origin of ids) {
          const order = treeOrder(origin, [this.me, ...reach]);
          const sub = children(order, order.indexOf(id), fanout).filter((c) => c !== this.me);
          for (const c of sub) this.track(this.pushTo(c));
        }
      }));
    }
    this.scheduleQuiet();
  }

  /**
   * After activity settles, one summary exchange with the next reachable member on the ring of
   * ids: what a tree missed (two nodes saw different members) travels on from there.
   */
  private scheduleQuiet(): void {
    clearTimeout(this.quietTimer);
    this.quietTimer = setTimeout(() => {
      const next = ringNext(this.me, this.targets());
      if (next) this.track(this.exchange(next, 'settle'));
    }, this.o.settleMs ?? 1000);
    this.quietTimer.unref();
  }

  // ---- talking to one peer ----------------------------------------------------------------

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

  private closeMaster(s: PeerState): Promise<unknown> {
    return run('ssh', ['-F', '/dev/null', '-o', `ControlPath=${s.controlPath}`, '-O', 'exit', 'peer'], { allowFail: true });
  }

  /** Pushes every value the peer lacks (as far as we know) in one push; false if it could not be reached. */
  private async pushTo(id: string): Promise<boolean> {
    const s = this.peerState(id);
    if (s.pushing) {
      s.again = true;
      return true;
    }
    s.pushing = true;
    try {
      do {
        s.again = false;
        // Never its own (it has the newest), nor what it refused (until membership news).
        const ids = this.lacking(s).filter((x) => x !== id && s.refused.get(x) !== this.offered().get(x));
        if (this.closed || !ids.length) continue;
        const r = await this.remote(id);
        if (!r) return false;
        const t0 = Date.now();
        // A copy: `known` itself moves while the push is on its way (a new own commit), and the
        // peer holds what was sent, not what is newest by the time it answers (taking the live
        // map recorded values it never got: it was then never sent them, until a summary exchange).
        const offer = new Map(this.offered());
        let out = await this.pushRpc(id, s, ids, offer);
        const via = out ? 'rpc' : 'git';
        if (!out) {
          const specs = ids.map((x) => `${offer.get(x)}:${ref(x)}`);
          const res = await run('git', [`--git-dir=${this.repo}`, 'push', '--porcelain', '--no-verify', '--', r.url, ...specs], { env: r.env, allowFail: true });
          out = parsePorcelain(res.stdout.toString());
          if (res.code !== 0 && !out.size) throw new Error(res.stderr.trim().slice(0, 500) || `git push failed (${res.code})`);
        }
        s.pushes++;
        s.failures = 0;
        let refused = 0;
        for (const x of ids) {
          const ok = out.get(ref(x));
          if (ok) s.has.set(x, offer.get(x)!);
          else {
            refused++;
            s.refused.set(x, offer.get(x)!);
          }
        }
        // Refused: it holds newer values (they reach us by gossip or the next summary exchange),
        // or a member it does not know yet (offered again after membership news).
        this.o.log('sync_pushed', { peer: id, refs: ids.length, refused, via, ms: Date.now() - t0 });
      } while (s.again);
      return true;
    } catch (e) {
      this.failed(id, s, e as Error, 'push');
      return false;
    } finally {
      s.pushing = false;
    }
  }

  /**
   * The values `ids` and what the peer lacks of them, over the member RPC: per ref whether it
   * took it (as git push --porcelain says), or null when git push must do it (too much to send,
   * the peer lacks objects we thought it had, an older peer, a failed call).
   */
  private async pushRpc(id: string, s: PeerState, ids: string[], offer: Map<string, string>): Promise<Map<string, boolean> | null> {
    if (s.noRpcPush || s.rpcAfterExchange || process.env.DFS_NO_RPC_PUSH) return null;
    const client = this.rpcClient(id, s);
    if (!client) return null;
    const values = new Map(ids.map((x) => [x, offer.get(x)!]));
    let reply: PushReply;
    try {
      // Anything odd in what we hold (a tree too big, an entry we never write): git push judges it.
      const objects = await objectsToSend(this.o.ns.repo, [...values.values()], [...new Set(s.has.values())], RPC_PUSH_LIMITS);
      if (!objects) return null;
      reply = await client.call<PushReply>(SYNC_PUSH, encodePush(values, objects));
    } catch (e) {
      // An older peer, or one served through `delugefs shell` (no member RPC there): git push until membership news.
      if (this.rpcFailed(s, e)) s.noRpcPush = true;
      this.o.log('sync_rpc_push_failed', { peer: id, error: (e as Error).message.slice(0, 300) }, 'warn');
      return null;
    }
    if (reply?.missing?.length || typeof reply?.results !== 'object') {
      // What we think it holds is wrong: git push (which negotiates) until a summary exchange corrects it.
      this.o.log('sync_rpc_push_missing', { peer: id, missing: (reply?.missing ?? []).length, first: reply?.missing?.[0] });
      s.rpcAfterExchange = true;
      return null;
    }
    const out = new Map<string, boolean>();
    for (const x of ids) out.set(ref(x), reply.results[x] === 'ok');
    return out;
  }

  /** The member RPC connection to a peer (opened on first use, closed when idle); null when it is not reachable. */
  private rpcClient(id: string, s: PeerState): RpcClient | null {
    const member = this.o.membership.get(id);
    const p = this.o.peers.get(id);
    if (!member || !p) return null;
    const at = `${p.host}:${p.sshPort} ${member.fingerprint}`;
    if (s.rpc?.at !== at) {
      s.rpc?.client.close();
      s.rpc = { client: new RpcClient({ identity: this.o.identity, host: p.host, port: p.sshPort, hostFingerprint: member.fingerprint, connectTimeoutMs: 5000, timeoutMs: 20_000, log: () => {} }), at, used: 0 };
    }
    s.rpc.used = Date.now();
    return s.rpc.client;
  }

  /**
   * A sync call failed: true when the peer does not serve it (an older version, or one served
   * through `delugefs shell`: no member RPC there). A peer that answered (busy, a refused call)
   * keeps its connection; anything else closes it (e.g. one opened before the peer knew us is a
   * guest's for good): the next call opens another.
   */
  private rpcFailed(s: PeerState, e: unknown): boolean {
    const code = e instanceof RpcCallError ? e.code : '';
    if (!['busy', 'push_refused', 'pull_refused', 'unknown_method', 'forbidden'].includes(code)) {
      s.rpc?.client.close();
      s.rpc = undefined;
    }
    return code === 'unknown_method' || code === 'forbidden';
  }

  /** The peer's refs/nodes map over the member RPC; null when git must ask (ls-remote). */
  private async summaryRpc(id: string, s: PeerState): Promise<Map<string, string> | null> {
    if (s.noRpcPull || process.env.DFS_NO_RPC_PUSH) return null;
    const client = this.rpcClient(id, s);
    if (!client) return null;
    try {
      return parseSummary(await client.call(SYNC_SUMMARY, null));
    } catch (e) {
      if (this.rpcFailed(s, e)) s.noRpcPull = true;
      this.o.log('sync_rpc_summary_failed', { peer: id, error: (e as Error).message.slice(0, 300) }, 'warn');
      return null;
    }
  }

  /**
   * The values `ids` and what we lack of them over the member RPC, judged and stored as a push
   * is; false when git must fetch them (too much for one reply, objects we lack, a failed call).
   * `before`: our refs/nodes as the exchange listed them (what moved is counted against it).
   */
  private async pullRpc(id: string, s: PeerState, ids: string[], before: Map<string, string>): Promise<boolean> {
    if (s.noRpcPull || process.env.DFS_NO_RPC_PUSH) return false;
    const client = this.rpcClient(id, s);
    if (!client) return false;
    const t0 = Date.now();
    let reply: PullReply;
    try {
      // Every value our refs hold (`before`, listed by the exchange): all of their objects are
      // here (a ref moves only once they are).
      const have = [...new Set([...before.values(), ...this.offered().values()])];
      reply = await client.call<PullReply>(SYNC_PULL, { want: ids, have });
    } catch (e) {
      if (this.rpcFailed(s, e)) s.noRpcPull = true;
      this.o.log('sync_rpc_pull_failed', { peer: id, error: (e as Error).message.slice(0, 300) }, 'warn');
      return false;
    }
    if (!reply || typeof reply !== 'object' || 'tooBig' in reply) return false;
    const p = reply as PushParams;
    // Only what was asked for; a value we refused before is not taken again.
    if (!p.refs || typeof p.refs !== 'object') return false;
    for (const x of Object.keys(p.refs)) if (!ids.includes(x) || this.bad.has(p.refs[x]!)) return false;
    let res: PushReply;
    try {
      // A reply (at most one per peer, each bounded) is judged and stored in a receive slot.
      res = await this.receiveSlot(() => this.store(p));
    } catch (e) {
      this.o.log('sync_rpc_pull_refused', { peer: id, error: (e as Error).message.slice(0, 300) }, 'warn');
      if (!(e instanceof PushRefused)) throw e;
      return false;
    }
    if (res.missing?.length) return false;
    let moved = 0;
    for (const [x, why] of Object.entries(res.results)) {
      if (why === 'ok') {
        s.has.set(x, p.refs[x]!);
        if (before.get(x) !== p.refs[x]) moved++;
      } else if (why === 'not a fast-forward') this.o.log('sync_fetch_diverged', { peer: id, ref: x, theirs: p.refs[x] }, 'warn');
    }
    if (p.objects.length) this.packStored();
    this.o.log('sync_fetched', { peer: id, refs: ids.length, moved, via: 'rpc', ms: Date.now() - t0 });
    if (moved) this.scheduleSettle(id);
    return true;
  }

  /** Event-driven retry: 1 s, 2 s, 4 s ... 30 s after a failure (peer busy, link down), as a summary exchange. */
  private failed(id: string, s: PeerState, e: Error, what: string): void {
    s.failures++;
    // A multiplexed connection opened before the peer knew us is a guest's for its whole life
    // (every command refused "not a member" until the guest timeout): it goes, the retry opens another.
    if (s.controlPath && /not a member/.test(e.message)) void this.closeMaster(s);
    const wait = Math.min(30_000, 1000 * 2 ** Math.min(5, s.failures - 1));
    this.o.log(`sync_${what}_failed`, { peer: id, error: e.message.slice(0, 500), retryMs: wait }, 'warn');
    clearTimeout(s.retry);
    s.retry = setTimeout(() => { if (!this.closed) this.track(this.exchange(id, 'retry')); }, wait);
    s.retry.unref();
  }

  /**
   * Anti-entropy with one peer: its map first (ls-remote, no pack), then only the difference
   * moves: what it lacks is pushed, what we lack is fetched and adopted.
   */
  private async exchange(id: string, why: string): Promise<void> {
    if (this.closed) return;
    const s = this.peerState(id);
    if (s.exchanging) {
      s.exchangeAgain = why; // news that came during one is not lost: it runs again after
      return;
    }
    s.exchanging = true;
    try {
      const r = await this.remote(id);
      if (!r) return;
      let theirs = await this.summaryRpc(id, s);
      if (!theirs) {
        const ls = await run('git', ['ls-remote', '--', r.url, `${NODE_REFS}*`], { env: r.env, allowFail: true });
        if (ls.code !== 0) return this.failed(id, s, new Error(ls.stderr.trim() || `ls-remote failed (${ls.code})`), 'exchange');
        theirs = parseLsRemote(ls.stdout.toString());
      }
      s.failures = 0;
      s.has = new Map(theirs);
      s.rpcAfterExchange = false;
      const need: string[] = [];
      // What our refs hold, adopted or not yet: a value that arrived meanwhile (a push, a pull)
      // is not asked for again while the view that adopts it is made.
      const held = await this.nodeRefs();
      let unadopted = false;
      for (const [x, oid] of theirs) {
        const mine = held.get(x) ?? this.known.get(x);
        if (x === this.me || this.known.get(x) === oid || this.bad.has(oid)) continue;
        if (mine === oid) {
          unadopted = true;
          continue;
        }
        // Ours is newer if theirs is already in our history.
        if (mine && (await this.o.ns.repo.isAncestor(oid, mine))) continue;
        if (!this.o.membership.get(x)) continue; // not a member (yet): its value waits
        need.push(x);
      }
      // Here but not in our view: adopt it (a settle costs a ref listing when nothing is new),
      // never leave it waiting for a push that will not come again.
      if (unadopted) this.scheduleSettle(id);
      this.o.log('sync_exchanged', { peer: id, why, theirs: theirs.size, fetch: need.length, push: this.lacking(s).length });
      if (need.length && !(await this.pullRpc(id, s, need, held))) await this.fetchFrom(id, r, need);
      if (this.lacking(s).some((x) => x !== id && s.refused.get(x) !== this.offered().get(x))) await this.pushTo(id);
    } finally {
      s.exchanging = false;
      const again = s.exchangeAgain;
      s.exchangeAgain = undefined;
      if (again && !this.closed) this.track(this.exchange(id, again));
    }
  }

  private async fetchFrom(id: string, r: { url: string; env: NodeJS.ProcessEnv }, ids: string[]): Promise<void> {
    const t0 = Date.now();
    let got: Map<string, string>;
    try {
      // Bounded in size and time, and nothing kept when it fails: a member's server may be rogue.
      got = await boundedFetchRefs({ repo: this.repo, url: r.url, refs: ids.map(ref), env: r.env, maxBytes: this.o.maxFetchBytes, timeoutMs: this.o.fetchTimeoutMs });
    } catch (e) {
      this.o.log('sync_fetch_failed', { peer: id, error: (e as Error).message.slice(0, 500) }, 'warn');
      return;
    }
    const updates: [string, string, string | null][] = [];
    for (const x of ids) {
      const oid = got.get(ref(x));
      if (!oid || this.bad.has(oid)) continue;
      this.peerState(id).has.set(x, oid);
      // Forward only, like a push: the hook's rule, kept by hand for what we fetch.
      const cur = await this.o.ns.repo.readRef(ref(x));
      if (cur === oid) continue;
      if (cur && !(await this.o.ns.repo.isAncestor(cur, oid))) {
        // Behind what was pushed to us meanwhile: nothing to do. Otherwise two histories of one node.
        if (!(await this.o.ns.repo.isAncestor(oid, cur))) this.o.log('sync_fetch_diverged', { peer: id, ref: x, ours: cur, theirs: oid }, 'warn');
        continue;
      }
      updates.push([ref(x), oid, cur]);
    }
    // One that moved meanwhile (a push) is left as it went.
    const moved = (await this.o.ns.repo.updateRefsEach(updates)).filter(Boolean).length;
    this.o.log('sync_fetched', { peer: id, refs: ids.length, moved, ms: Date.now() - t0 });
    if (moved) this.scheduleSettle(id);
  }
}

/** Members in dissemination order for a value of `origin`: the origin first, the rest by a hash of (origin, id). */
export function treeOrder(origin: string, members: string[]): string[] {
  const h = (id: string) => createHash('sha1').update(`${origin} ${id}`).digest('hex');
  const rest = [...new Set(members)].filter((m) => m !== origin).map((m) => [h(m), m] as const).sort((a, b) => (a[0] < b[0] ? -1 : 1)).map(([, m]) => m);
  return members.includes(origin) ? [origin, ...rest] : rest;
}

/** The children of position `pos` in a `fanout`-ary tree laid over `order`. */
export function children(order: string[], pos: number, fanout: number): string[] {
  if (pos < 0) return [];
  const out: string[] = [];
  for (let k = 1; k <= fanout; k++) {
    const c = order[pos * fanout + k];
    if (c) out.push(c);
  }
  return out;
}

/** The member after `me` on the ring of ids (wrapping), or null when alone. */
export function ringNext(me: string, others: string[]): string | null {
  const sorted = [...new Set(others)].filter((x) => x !== me).sort();
  return sorted.find((x) => x > me) ?? sorted[0] ?? null;
}

function parsePorcelain(text: string): Map<string, boolean> {
  // "<flag>\t<from>:<to>\t<summary>": ' ' fast-forward, '*' new, '=' up to date, '!' rejected.
  const out = new Map<string, boolean>();
  for (const line of text.split('\n')) {
    const m = /^([ *=!+-])\t[^:\t]*:([^\t]+)\t/.exec(line);
    if (m) out.set(m[2]!, m[1] !== '!');
  }
  return out;
}

function parseLsRemote(text: string): Map<string, string> {
  const out = new Map<string, string>();
  for (const line of text.split('\n')) {
    const [oid, name] = line.split('\t');
    if (!oid || !/^[0-9a-f]{40}$/.test(oid) || !name?.startsWith(NODE_REFS)) continue;
    const id = name.slice(NODE_REFS.length);
    if (isNodeId(id) && out.size < MAX_REFS) out.set(id, oid);
  }
  return out;
}

// Wires one DelugeNode to the cluster: membership records in its namespace, the SSH server
// (members' keys only), the local control socket, discovery, metadata sync and the RPC methods.
// One object per running node; close() stops everything in reverse order.
import os from 'node:os';
import { join } from 'node:path';
import type { DelugeNode } from './node.js';
import type { RootPaths, NodeConfig } from './layout.js';
import type { Logger } from '../util/log.js';
import type { GitRepo } from '../meta/repo.js';
import { Identity, parsePublicKeyLine } from '../cluster/identity.js';
import { Membership, RecordStore, MEMBERS as MEMBERS_PREFIX, MemberRecord, checkRecordChange } from '../cluster/membership.js';
import { serve } from '../daemon/methods.js';
import { AUTHORIZE, INVITE, JOIN_LOCAL, MEMBERS, PUSH_RECEIVED, REMOVE_NODE, STATUS, JOIN_REQUEST, JOIN_REQUESTS, JOIN_APPROVE, JOIN_REFUSE } from './control-methods.js';
import { JoinRequests, JoinRequestError, JoinLimits } from '../cluster/join-requests.js';
import { MetaSync, SyncNamespace } from '../cluster/sync.js';
import { guardRepository } from '../cluster/repo-guard.js';
import { RpcRegistry, RpcError } from '../cluster/rpc.js';
import { SYNC_PUSH, PushRefused } from '../cluster/sync-push.js';
import { SYNC_PULL, SYNC_SUMMARY, PullRefused } from '../cluster/sync-pull.js';
import { SshServer, DEFAULT_SSH_PORT } from '../cluster/ssh-server.js';
import { ControlServer, LOCAL_PEER, localOnly, memberOnly, registerForward } from '../cluster/control-socket.js';
import { startDiscovery, resolveInterface, Discovery } from '../cluster/discovery.js';
import { registerJoin, JOIN_METHOD, FileNonceStore, createInvite } from '../cluster/invite.js';
import { registerLocal } from '../cluster/local-registry.js';
import { parseHostPort } from '../cluster/static-peers.js';
import { fromLogger, Log } from '../cluster/log.js';
import { registerPut } from './put-file.js';
import { normalizeCode } from '../cluster/join-code.js';

export interface ClusterOptions {
  sshPort?: number;
  btPort: number;
  /** Interface to announce on and whose address to record (default: every non-internal IPv4). */
  interface?: string;
  /** HOST:PORT peers outside the LAN (`--peer`). */
  peers?: string[];
  /** False: no mDNS at all (static peers and member addresses only). */
  mdns?: boolean;
  /** The first node of a new cluster writes its own member record. */
  create?: boolean;
  /** Limits of LAN join requests (tests shorten the expiry); default DEFAULT_JOIN_LIMITS. */
  joinLimits?: Partial<JoinLimits>;
}

export const CONTROL_SOCKET = 'control.sock';

/** The namespace as this module uses it (meta/namespace.ts). */
type ClusterNamespace = RecordStore & SyncNamespace & { repo: SyncNamespace['repo'] & Pick<GitRepo, 'rootCommit'>; commit(): Promise<string | null>; recordGuard?: (before: Map<string, Buffer>, after: Map<string, Buffer>) => string | null };

export class ClusterNode {
  private closers: (() => Promise<unknown>)[] = [];
  private constructor(
    readonly identity: Identity,
    readonly membership: Membership,
    readonly ssh: SshServer,
    readonly discovery: Discovery,
    readonly sync: MetaSync,
    readonly addresses: string[],
    /** Methods for members (SSH) and the local control socket; features add theirs (replication/rpc). */
    readonly rpc: RpcRegistry,
    /** LAN join requests waiting for an operator (`delugefs approve`, the dashboard). */
    readonly joins: JoinRequests,
  ) {}

  get sshPort(): number {
    return this.ssh.port;
  }

  static async start(node: DelugeNode, p: RootPaths, config: NodeConfig, logger: Logger, o: ClusterOptions): Promise<ClusterNode> {
    const log = fromLogger(logger, 'cluster');
    const ns = node.ns as unknown as ClusterNamespace;
    const identity = await Identity.loadOrCreate(p.root);
    const membership = new Membership(ns, log, identity);
    // A merge that would change membership the way no member could sign it is refused whole.
    ns.recordGuard = checkRecordChange;
    await guardRepository(ns.repo.dir);
    const me = identity.nodeId;
    const closers: (() => Promise<unknown>)[] = [];
    const rpc = new RpcRegistry();
    let cn: ClusterNode | undefined;
    try {
      const ssh = await SshServer.start({
        identity, repoPath: ns.repo.dir, port: o.sshPort ?? DEFAULT_SSH_PORT, rpc, log: fromLogger(logger, 'ssh'),
        isMember: (k) => membership.hasKey(k.blob),
        // Guests (non-members) reach these two alone: a token's redemption, and asking to join (which grants nothing by itself).
        guestMethods: [JOIN_METHOD, JOIN_REQUEST.name],
        onReceivePack: (peer) => cn?.sync.received(peer.nodeId),
      });
      closers.push(() => ssh.close());
      const addresses = ownAddresses(o.interface).map((a) => `${a}:${ssh.port}`);

      // Our own record: written at creation; afterwards only the addresses and ports follow us.
      const self = membership.get(me);
      if (o.create && !self) {
        await membership.admit({ publicKey: identity.publicKeyLine, hostname: os.hostname(), addresses, sshPort: ssh.port, btPort: o.btPort, cluster: config.cluster });
      } else if (self && (self.addresses.join() !== addresses.join() || self.sshPort !== ssh.port || self.btPort !== o.btPort || self.hostname !== os.hostname())) {
        // Only where peers find us, not needed to start: a full disk (ENOSPC from the journal) must not stop the node.
        await membership.updateSelf({ addresses, sshPort: ssh.port, btPort: o.btPort, hostname: os.hostname() })
          .catch((e) => log('self_record_not_updated', { error: (e as Error).message, hint: 'peers may use the old address until a later start updates it' }, 'warn'));
      } else if (!self) {
        const invalid = membership.view().invalid.get(MEMBERS_PREFIX + me);
        log('not_a_member', { nodeId: me, hint: membership.isRevoked(me) ? 'this node was removed from the cluster' : invalid ? `this node's member record does not count: ${invalid}` : 'no member record for this node yet' });
      }

      // The records' founder names the cluster they were signed for; another name here is a root mixed up with another cluster's.
      const named = membership.cluster()?.name;
      if (named !== undefined && named !== config.cluster) log('cluster_name_mismatch', { config: config.cluster, records: named, hint: `this root's member records are of cluster "${named}"` }, 'warn');

      const statics = [...(o.peers ?? []), ...memberAddresses(membership, me)];
      const discovery = await startDiscovery({
        cluster: config.cluster, nodeId: me, sshPort: ssh.port, btPort: o.btPort, fingerprint: identity.fingerprint,
        interface: o.interface, staticPeers: [...new Set(statics)], mdns: o.mdns !== false, log: fromLogger(logger, 'discovery'),
        // An mDNS address is used only once it proved the key of the member record.
        hostKeyFor: (id) => { const m = membership.get(id); return m ? parsePublicKeyLine(m.publicKey).blob : undefined; },
      });
      closers.push(() => discovery.stop());
      const sync = new MetaSync({ ns, identity, membership, peers: discovery.peers, stateDir: join(p.root, 'cluster'), log: fromLogger(logger, 'sync') });
      const joins = new JoinRequests({ admit: (key, host) => admitKey(membership, ns, log, key, host), limits: o.joinLimits, log });
      closers.push(async () => joins.close());
      cn = new ClusterNode(identity, membership, ssh, discovery, sync, addresses, rpc, joins);
      cn.closers = closers;
      closers.push(() => sync.close());

      registerMethods(rpc, cn, node, ns, config, log);
      registerForward(rpc);
      registerPut(rpc, node);
      const ctl = await ControlServer.start(join(p.root, CONTROL_SOCKET), rpc, fromLogger(logger, 'control'));
      closers.push(() => ctl.close());
      closers.push(await registerLocal({ cluster: config.cluster, nodeId: me, root: p.root, control: ctl.path, pid: process.pid }, fromLogger(logger, 'registry')));

      // Records changed by a merge: removed members lose their connections, the members' last
      // known addresses are what static discovery probes, and everyone is synced.
      const userPeers = new Set(o.peers ?? []);
      let recordPeers = new Set(memberAddresses(membership, me));
      let removed = false;
      const onRecords = () => {
        if (!removed && membership.isRevoked(me)) {
          removed = true;
          logger.warn('node.removed', { hint: 'this node was removed from the cluster (delugefs remove-node); members refuse it from now on' });
        }
        for (const id of membership.revokedIds()) if (ssh.dropPeer(id)) log('member_dropped', { nodeId: id });
        const next = new Set(memberAddresses(membership, me));
        for (const a of next) if (!recordPeers.has(a)) try { discovery.statics.add(a); } catch { /* malformed address in a record */ }
        for (const a of recordPeers) if (!next.has(a) && !userPeers.has(a)) discovery.statics.remove(a);
        recordPeers = next;
        // A request whose key was admitted elsewhere (another member approved it) leaves the list.
        for (const j of joins.list()) if (membership.get(j.nodeId)) joins.admitted(j.nodeId);
        sync.syncAll('members changed');
      };
      ns.on('records', onRecords);
      closers.push(async () => ns.off('records', onRecords));
      sync.start();
      return cn;
    } catch (e) {
      for (const c of closers.reverse()) await c().catch(() => {});
      throw e;
    }
  }

  async close(): Promise<void> {
    for (const c of this.closers.reverse()) await c().catch(() => {});
    this.closers = [];
  }
}

/** The IPv4 addresses other machines can reach us on. */
export function ownAddresses(iface?: string): string[] {
  if (iface) {
    const a = resolveInterface(iface);
    return a ? [a] : [];
  }
  const out: string[] = [];
  for (const list of Object.values(os.networkInterfaces())) for (const a of list ?? []) if (a.family === 'IPv4' && !a.internal) out.push(a.address);
  return out.length ? out : ['127.0.0.1'];
}

/** Last known addresses of the other members that parse as HOST:PORT. */
function memberAddresses(m: Membership, me: string): string[] {
  return m.list().filter((r) => r.nodeId !== me).flatMap((r) => r.addresses).filter((a) => {
    try {
      parseHostPort(a);
      return true;
    } catch {
      return false;
    }
  });
}


function hostnameParam(params: unknown): string {
  const h = (params as { hostname?: unknown } | null)?.hostname;
  return typeof h === 'string' && h.length <= 255 ? h : 'unknown';
}

function checkKey(k: string): string {
  try {
    parsePublicKeyLine(k);
  } catch (e) {
    throw new RpcError('malformed', (e as Error).message);
  }
  return k;
}

/** Admits a key (authorize, join_local, a token, an approved LAN request: one way for all). */
async function admitKey(membership: Membership, ns: ClusterNamespace, log: Log, publicKey: string, hostname: string): Promise<MemberRecord> {
  let r: MemberRecord;
  try {
    r = await membership.admit({ publicKey, hostname });
  } catch (e) {
    throw new RpcError('refused', (e as Error).message);
  }
  // Committed before we answer, so the new member's first fetch already holds its record.
  await ns.commit();
  log('member_admitted', { nodeId: r.nodeId, hostname: r.hostname });
  return r;
}

function registerMethods(rpc: RpcRegistry, cn: ClusterNode, node: DelugeNode, ns: ClusterNamespace, config: NodeConfig, log: Log): void {
  const me = cn.identity.nodeId;
  const admit = (publicKey: string, hostname: string) => admitKey(cn.membership, ns, log, publicKey, hostname);

  serve(rpc, STATUS, () => ({
    cluster: config.cluster, nodeId: me, head: ns.head, sshPort: cn.sshPort, addresses: cn.addresses,
    members: cn.membership.list().map((m) => m.nodeId), revoked: cn.membership.revokedIds(),
    peers: cn.discovery.peers.list().map((p) => ({ nodeId: p.nodeId, host: p.host, sshPort: p.sshPort, source: p.source })),
    sync: cn.sync.peerHeads(),
  }));
  serve(rpc, MEMBERS, () => cn.membership.list());
  // New sync values and their objects from a member (cluster/sync-push.ts): in place of a git push.
  rpc.register(SYNC_PUSH, (params, peer) => {
    memberOnly(peer, cn.membership, SYNC_PUSH);
    return cn.sync.receivePush(peer.nodeId, params).catch((e: Error) => {
      throw e instanceof PushRefused ? new RpcError('push_refused', e.message) : e;
    });
  });

  // Anti-entropy from a member (cluster/sync-pull.ts): in place of git ls-remote and git fetch.
  rpc.register(SYNC_SUMMARY, (_params, peer) => {
    memberOnly(peer, cn.membership, SYNC_SUMMARY);
    return cn.sync.summary();
  });
  rpc.register(SYNC_PULL, (params, peer) => {
    memberOnly(peer, cn.membership, SYNC_PULL);
    return cn.sync.servePull(params).catch((e: Error) => {
      throw e instanceof PullRefused ? new RpcError('pull_refused', e.message) : e;
    });
  });

  registerJoin(rpc, {
    identity: cn.identity, cluster: config.cluster, clusterId: () => cn.membership.cluster()?.id, log,
    nonces: new FileNonceStore(join(node.opts.paths.identity, 'used-invites.json')),
    admit: async ({ peer, params }) => {
      const r = await admit(peer.publicKey, hostnameParam(params));
      return { cluster: config.cluster, inviter: me, member: r, head: ns.head };
    },
  });

  registerJoinRequests(rpc, cn, ns, config);

  // Control socket only: whoever reaches it runs this machine's node.
  serve(rpc, INVITE, (p, peer) => {
    localOnly(peer, 'invite');
    const { token, payload } = createInvite(cn.identity, { cluster: config.cluster, clusterId: cn.membership.cluster()?.id, addresses: cn.addresses, ttlMs: p.ttlMs });
    return { token, expires: new Date(payload.e).toISOString(), addresses: payload.a };
  });
  serve(rpc, AUTHORIZE, async (p, peer) => {
    localOnly(peer, 'authorize');
    return admit(checkKey(p.publicKey), p.hostname);
  });
  serve(rpc, JOIN_LOCAL, async (p, peer) => {
    localOnly(peer, 'join_local');
    const r = await admit(checkKey(p.publicKey), p.hostname);
    return { cluster: config.cluster, inviter: me, member: r, repo: ns.repo.dir, head: ns.head };
  });
  serve(rpc, REMOVE_NODE, async ({ nodeId: id }, peer) => {
    localOnly(peer, 'remove_node');
    if (id === me) throw new RpcError('refused', 'a node cannot remove itself; run remove-node on another member');
    if (cn.membership.isRevoked(id)) return { nodeId: id, already: true };
    if (!ns.getRecord(MEMBERS_PREFIX + id)) throw new RpcError('not_found', `node ${id} is not a member of cluster ${config.cluster}`);
    await cn.membership.revoke(id);
    await ns.commit();
    cn.ssh.dropPeer(id);
    log('member_removed', { nodeId: id });
    return { nodeId: id, already: false };
  });
  serve(rpc, PUSH_RECEIVED, ({ peer: id }, peer) => {
    localOnly(peer, 'push_received');
    cn.sync.received(id);
    return null;
  });
}


/**
 * LAN joins without a token: `join_request` for guests (ask, re-poll; nothing is granted by it),
 * and for the control socket the list, approve and refuse (`delugefs joins|approve|refuse`).
 */
function registerJoinRequests(rpc: RpcRegistry, cn: ClusterNode, ns: ClusterNamespace, config: NodeConfig): void {
  const me = cn.identity.nodeId;
  // The root commit never changes once the cluster exists (no push may bring another root).
  let root: string | null = null;
  const asJoinError = (e: unknown) => (e instanceof JoinRequestError ? new RpcError(`join_${e.code}`, e.message) : e);
  serve(rpc, JOIN_REQUEST, async (p, peer) => {
    if (peer === LOCAL_PEER || !peer.publicKey) throw new RpcError('no_key', 'join_request needs an SSH-authenticated key');
    if (p.cluster !== config.cluster) throw new RpcError('join_wrong_cluster', `this node is of cluster "${config.cluster}", not "${p.cluster}"`);
    const key = parsePublicKeyLine(peer.publicKey);
    if (cn.membership.isRevoked(peer.nodeId)) throw new RpcError('join_refused', `node ${peer.nodeId} was removed from cluster ${config.cluster}; a removed key cannot join again (make a new root)`);
    if (!cn.membership.get(me)) throw new RpcError('join_not_a_member', 'this node is not a member of the cluster (yet): ask another');
    root ??= await ns.repo.rootCommit();
    if (!root) throw new RpcError('join_not_ready', 'this node has no history yet');
    if (cn.membership.hasKey(key.blob)) return { status: 'admitted' as const, cluster: config.cluster, member: me, root };
    try {
      const j = cn.joins.request({ publicKey: peer.publicKey, keyBlob: key.blob, nodeId: peer.nodeId, hostname: p.hostname, address: peer.address ?? 'unknown', rootCommit: root });
      return { status: 'pending' as const, cluster: config.cluster, member: me, root, code: j.code, expires: j.expires };
    } catch (e) {
      throw asJoinError(e);
    }
  });
  serve(rpc, JOIN_REQUESTS, (_p, peer) => {
    localOnly(peer, 'join_requests');
    return cn.joins.list();
  });
  serve(rpc, JOIN_APPROVE, async ({ code }, peer) => {
    localOnly(peer, 'join_approve');
    return cn.joins.approve(code).catch((e) => { throw asJoinError(e); });
  });
  serve(rpc, JOIN_REFUSE, ({ code }, peer) => {
    localOnly(peer, 'join_refuse');
    try {
      cn.joins.refuse(code);
    } catch (e) {
      throw asJoinError(e);
    }
    return { code: normalizeCode(code)! };
  });
}

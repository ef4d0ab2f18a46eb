// LAN discovery over mDNS (`_delugefs._tcp`). Each node advertises `<nodeId>._delugefs._tcp.local`
// with SRV (ssh port, target `<nodeId>.local`), TXT (cluster, node, ssh, bt, fp) and A records.
// Records carry short TTLs and are re-announced well within them, so a crashed node (which sends
// no goodbye) expires within ttl seconds; a clean stop sends a goodbye (TTL 0) at once.
// mDNS is unauthenticated: a record only says where a node id claims to be, so an address is a
// hint. It reaches the PeerSet (and so what sync dials) only after an SSH key exchange with it
// proved the host key of that node id (the member record's key when there is one); a mismatch
// is a warning naming the address, and the address is left alone for a while. Forged adverts and
// goodbyes from elsewhere neither refresh nor end the verified record.
import os from 'node:os';
import makeMdns from 'multicast-dns';
import type { RemoteInfo } from 'node:dgram';
import type { Answer, TxtAnswer, StringAnswer } from 'dns-packet';
import { isNodeId, nodeIdOf, fingerprintOf } from './identity.js';
import { PeerSet, PeerRecord } from './peer-set.js';
import { StaticPeers, probeHostKey, HostKeyRefused } from './static-peers.js';
import { Log, jsonLog } from './log.js';

export const SERVICE = '_delugefs._tcp.local';
const FP_RE = /^SHA256:[A-Za-z0-9+/]{43}$/;
const CLUSTER_RE = /^[A-Za-z0-9_.-]{1,64}$/;
const MAX_CHECKS = 8;

export interface MdnsOptions {
  cluster: string;
  nodeId: string;
  sshPort: number;
  btPort: number;
  fingerprint: string;
  /** Interface to announce on: a name (`eth0`) or one of its IPv4 addresses. Default: first non-internal IPv4 one. */
  interface?: string;
  /** Seconds a record stays valid; a silent peer is lost after this. Default 6. */
  ttlSec?: number;
  /** Re-announce period. Default ttl/3. */
  announceMs?: number;
  /** UDP port (5353; tests in one namespace may change it). */
  port?: number;
  peers?: PeerSet;
  log?: Log;
  /** The member record's host key (blob) of a node id, if it is a member: an address must show it. */
  hostKeyFor?: (nodeId: string) => Buffer | undefined;
  /** How an announced address is checked; default: an SSH key exchange (`probeHostKey`). */
  probe?: (host: string, port: number, accept: (key: Buffer) => boolean) => Promise<Buffer>;
  /** How long an address that failed the check is not tried again. Default 30 s. */
  retryMs?: number;
  /** False: only listen and ask (a new root looking for members to ask to join), never announce or answer. */
  announce?: boolean;
}

/** Resolves an interface name or address to the IPv4 address to use. */
export function resolveInterface(spec?: string): string | undefined {
  const ifs = os.networkInterfaces();
  if (spec && /^\d+\.\d+\.\d+\.\d+$/.test(spec)) return spec;
  if (spec) {
    const a = ifs[spec]?.find((x) => x.family === 'IPv4');
    if (!a) throw new Error(`no IPv4 address on interface ${spec}`);
    return a.address;
  }
  for (const list of Object.values(ifs)) {
    const a = list?.find((x) => x.family === 'IPv4' && !x.internal);
    if (a) return a.address;
  }
  return undefined;
}

export class MdnsDiscovery {
  readonly peers: PeerSet;
  private mdns?: ReturnType<typeof makeMdns>;
  private timer?: NodeJS.Timeout;
  private expiry = new Map<string, NodeJS.Timeout>();
  private ignored = new Set<string>();
  /** Verified records, by node id: what this source has put in the PeerSet. */
  private verified = new Map<string, PeerRecord>();
  /** `nodeId host:port` under check, or refused until a time. */
  private checking = new Set<string>();
  private refusedUntil = new Map<string, number>();
  private readonly log: Log;
  private readonly ttl: number;
  private readonly address?: string;
  private readonly instance: string;
  private readonly hostName: string;

  constructor(private readonly o: MdnsOptions) {
    if (!CLUSTER_RE.test(o.cluster)) throw new Error(`bad cluster name: ${o.cluster}`);
    this.peers = o.peers ?? new PeerSet();
    this.log = o.log ?? jsonLog('discovery');
    this.ttl = o.ttlSec ?? 6;
    this.address = resolveInterface(o.interface);
    this.instance = `${o.nodeId}.${SERVICE}`;
    this.hostName = `${o.nodeId}.local`;
  }

  async start(): Promise<void> {
    // Bind 0.0.0.0: a socket bound to the interface address receives no multicast on Linux.
    const mdns = makeMdns({ bind: '0.0.0.0', interface: this.address, port: this.o.port, loopback: true, reuseAddr: true });
    this.mdns = mdns;
    mdns.on('warning', (err: Error) => this.warn(err.message));
    mdns.on('error', (err: Error) => this.log('mdns_error', { error: err.message }, 'warn'));
    mdns.on('query', (q, rinfo) => this.onQuery(q.questions ?? [], rinfo));
    mdns.on('response', (r, rinfo) => this.onResponse([...(r.answers ?? []), ...(r.additionals ?? [])], rinfo));
    await new Promise<void>((resolve, reject) => {
      mdns.once('ready', resolve);
      mdns.once('error', reject);
    });
    this.log('mdns_started', { interface: this.o.interface, address: this.address, cluster: this.o.cluster, nodeId: this.o.nodeId });
    // Ask first so running peers answer at once, then announce ourselves.
    mdns.query([{ name: SERVICE, type: 'PTR' }]);
    if (this.o.announce === false) return;
    this.announce();
    this.timer = setInterval(() => this.announce(), this.o.announceMs ?? Math.floor((this.ttl * 1000) / 3));
  }

  /** Sends a goodbye (TTL 0) so peers drop us at once, then closes the socket. */
  async stop(): Promise<void> {
    clearInterval(this.timer);
    clearTimeout(this.pending);
    this.stopped = true;
    for (const t of this.expiry.values()) clearTimeout(t);
    this.expiry.clear();
    this.verified.clear();
    const mdns = this.mdns;
    if (!mdns) return;
    this.mdns = undefined;
    if (this.o.announce !== false) await new Promise<void>((resolve) => mdns.respond({ answers: this.records(0) }, () => resolve()));
    await new Promise<void>((resolve) => mdns.destroy(() => resolve()));
  }

  // While a link is down every send fails; one line per distinct error a minute is enough.
  private warned = new Map<string, number>();
  private warn(message: string): void {
    const now = Date.now();
    if (now - (this.warned.get(message) ?? -Infinity) < 60_000) return;
    this.warned.set(message, now);
    this.log('mdns_warning', { error: message }, 'warn');
  }

  private records(ttl: number): Answer[] {
    const o = this.o;
    const txt = [`v=1`, `cluster=${o.cluster}`, `node=${o.nodeId}`, `ssh=${o.sshPort}`, `bt=${o.btPort}`, `fp=${o.fingerprint}`];
    const answers: Answer[] = [
      { name: SERVICE, type: 'PTR', ttl, data: this.instance },
      { name: this.instance, type: 'SRV', ttl, flush: true, data: { port: o.sshPort, target: this.hostName, priority: 0, weight: 0 } },
      { name: this.instance, type: 'TXT', ttl, flush: true, data: txt },
    ];
    if (this.address && this.address !== '0.0.0.0') answers.push({ name: this.hostName, type: 'A', ttl, flush: true, data: this.address });
    return answers;
  }

  private lastAnnounce = 0;
  private stopped = false;
  private pending?: NodeJS.Timeout;

  private announce(): void {
    this.lastAnnounce = Date.now();
    this.mdns?.respond({ answers: this.records(this.ttl) });
  }

  /** Answers a query at most every 250 ms: a flood of queries must not become a flood of answers. */
  private answerSoon(): void {
    if (this.pending) return;
    const wait = this.lastAnnounce + 250 - Date.now();
    if (wait <= 0) return this.announce();
    this.pending = setTimeout(() => {
      this.pending = undefined;
      this.announce();
    }, wait);
  }

  private onQuery(questions: Array<{ name: string; type: string }>, _rinfo: RemoteInfo): void {
    const wanted = questions.some((q) =>
      (q.name === SERVICE && (q.type === 'PTR' || q.type === 'ANY')) ||
      (q.name === this.instance) ||
      (q.name === this.hostName && (q.type === 'A' || q.type === 'ANY')));
    if (wanted && this.o.announce !== false) this.answerSoon();
  }

  private onResponse(answers: Answer[], rinfo: RemoteInfo): void {
    const txt = answers.find((a): a is TxtAnswer => a.type === 'TXT' && a.name.endsWith(`.${SERVICE}`));
    if (!txt) return;
    const fields = parseTxt(txt.data);
    const node = fields.get('node') ?? '';
    if (node === this.o.nodeId) return; // our own advert, looped back
    const sshPort = Number(fields.get('ssh'));
    const btPort = Number(fields.get('bt'));
    const fp = fields.get('fp') ?? '';
    const cluster = fields.get('cluster') ?? '';
    const key = `${rinfo.address}/${node}`;
    if (!isNodeId(node) || !validPort(sshPort) || !validPort(btPort) || !FP_RE.test(fp) || !CLUSTER_RE.test(cluster) || txt.name !== `${node}.${SERVICE}`) {
      if (!this.ignored.has(key)) {
        this.ignored.add(key);
        this.log('mdns_malformed', { from: rinfo.address, name: txt.name.slice(0, 100) }, 'warn');
      }
      return;
    }
    if (cluster !== this.o.cluster) {
      if (!this.ignored.has(key)) {
        this.ignored.add(key);
        this.log('ignored_other_cluster', { from: rinfo.address, nodeId: node, cluster });
      }
      return;
    }
    const known = this.verified.get(node);
    if ((txt.ttl ?? 0) === 0) {
      // A goodbye counts only from where the node was verified to be.
      if (!known || known.host !== rinfo.address) return;
      this.log('peer_goodbye', { nodeId: node, from: rinfo.address });
      this.expire(node);
      return;
    }
    const addresses = answers
      .filter((a): a is StringAnswer => a.type === 'A' && a.name === `${node}.local`)
      .map((a) => a.data)
      .filter((d): d is string => typeof d === 'string');
    const rec: PeerRecord = {
      nodeId: node,
      fingerprint: fp,
      // The packet's source address is what routes back to the peer; its A records are extra.
      host: rinfo.address,
      sshPort,
      btPort,
      cluster,
      addresses: [...new Set([rinfo.address, ...addresses])],
      source: 'mdns',
    };
    if (known && known.host === rec.host && known.sshPort === rec.sshPort) {
      this.publish({ ...rec, fingerprint: known.fingerprint }, txt.ttl);
      return;
    }
    void this.check(rec, txt.ttl);
  }

  /** An address new for this node id: published only once it proved the node's host key. */
  private async check(rec: PeerRecord, ttl: number | undefined): Promise<void> {
    const address = `${rec.host}:${rec.sshPort}`;
    const key = `${rec.nodeId} ${address}`;
    if (this.checking.has(key) || (this.refusedUntil.get(key) ?? 0) > Date.now()) return;
    // Anyone can announce: a burst of made-up node ids must not become a burst of connections.
    if (this.checking.size >= MAX_CHECKS) return;
    this.checking.add(key);
    const expected = this.o.hostKeyFor?.(rec.nodeId);
    const accept = (k: Buffer) => (expected ? k.equals(expected) : nodeIdOf(k) === rec.nodeId);
    const probe = this.o.probe ?? ((h, p, a) => probeHostKey(h, p, 3000, a));
    try {
      const k = await probe(rec.host, rec.sshPort, accept);
      if (!accept(k)) throw new HostKeyRefused(k, 'host key refused');
      if (this.stopped) return;
      this.refusedUntil.delete(key);
      this.publish({ ...rec, fingerprint: fingerprintOf(k) }, ttl);
    } catch (err) {
      this.refusedUntil.set(key, Date.now() + (this.o.retryMs ?? 30_000));
      if (this.stopped) return;
      if (err instanceof HostKeyRefused) {
        // Someone announces this node id at an address that cannot prove its key.
        this.log('mdns_host_key_mismatch', {
          nodeId: rec.nodeId, address, fingerprint: fingerprintOf(err.key), expected: expected ? fingerprintOf(expected) : undefined,
          hint: 'a forged or stale mDNS announcement; the address is not used',
        }, 'warn');
      } else {
        this.log('mdns_address_unverified', { nodeId: rec.nodeId, address, error: (err as Error).message }, 'warn');
      }
    } finally {
      this.checking.delete(key);
      if (this.refusedUntil.size > 1024) for (const [k, t] of this.refusedUntil) if (t <= Date.now()) this.refusedUntil.delete(k);
    }
  }

  private publish(rec: PeerRecord, ttl: number | undefined): void {
    const node = rec.nodeId;
    const isNew = !this.expiry.has(node);
    clearTimeout(this.expiry.get(node));
    const ttlMs = Math.min(ttl ?? this.ttl, 120) * 1000;
    const t = setTimeout(() => {
      this.log('peer_expired', { nodeId: node });
      this.expire(node);
    }, ttlMs);
    t.unref();
    this.expiry.set(node, t);
    const before = this.verified.get(node);
    this.verified.set(node, rec);
    if (isNew || before?.host !== rec.host || before?.sshPort !== rec.sshPort) this.log('peer_seen', { nodeId: node, host: rec.host, sshPort: rec.sshPort, btPort: rec.btPort });
    this.peers.update(rec);
  }

  private expire(node: string): void {
    clearTimeout(this.expiry.get(node));
    this.expiry.delete(node);
    this.verified.delete(node);
    this.peers.remove(node, 'mdns');
  }
}

function validPort(n: number): boolean {
  return Number.isInteger(n) && n > 0 && n < 65536;
}

function parseTxt(data: unknown): Map<string, string> {
  const out = new Map<string, string>();
  const items = Array.isArray(data) ? data : [data];
  for (const item of items) {
    const s = Buffer.isBuffer(item) ? item.toString('utf8') : String(item);
    const i = s.indexOf('=');
    if (i > 0 && !out.has(s.slice(0, i))) out.set(s.slice(0, i), s.slice(i + 1));
  }
  return out;
}

export interface DiscoveryOptions extends Omit<MdnsOptions, 'peers'> {
  /** HOST:PORT peers outside the LAN (`--peer`, last known member addresses). */
  staticPeers?: string[];
  /** False to skip mDNS (e.g. no multicast on this network). Default true. */
  mdns?: boolean;
}

export interface Discovery {
  /** 'peer' and 'lost' events, merged from mDNS and static peers. */
  peers: PeerSet;
  statics: StaticPeers;
  stop(): Promise<void>;
}

/** mDNS plus static peers feeding one PeerSet: what a node starts. */
export async function startDiscovery(o: DiscoveryOptions): Promise<Discovery> {
  const peers = new PeerSet();
  const statics = new StaticPeers({ peers, addresses: o.staticPeers, log: o.log });
  const mdns = o.mdns === false ? undefined : new MdnsDiscovery({ ...o, peers });
  await mdns?.start();
  statics.start();
  return {
    peers,
    statics,
    async stop() {
      statics.stop();
      await mdns?.stop();
    },
  };
}

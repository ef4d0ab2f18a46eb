// Command-line parsing for `delugefs`. Positional CLUSTER ROOT [MOUNTPOINT] and the flags
// --cluster/--root/--mount are the same thing; errors name the problem and point to --help.
import { isIP } from 'node:net';
import { ZONE_RE } from '../replication/settings.js';

export interface RunArgs {
  command: 'run';
  cluster: string;
  root: string;
  mount?: string;
  create: boolean;
  port: number;
  allowOther: boolean;
  /** FUSE passthrough for content complete on this disk (--passthrough; off: every read through the node). */
  passthrough: boolean;
  json: boolean;
  logLevel: 'debug' | 'info' | 'warn' | 'error';
  /**
   * Where the invite token to join with comes from (new or empty ROOT): the command line (readable
   * by every local user in /proc/PID/cmdline), a file, or stdin (`--join -`).
   */
  join?: { token: string } | { file: string } | { stdin: true };
  /** First SSH port to try (default 7422). */
  sshPort?: number;
  /** The web port (GET /metrics) and the address it binds (default 127.0.0.1). */
  webPort?: number;
  webBind?: string;
  interface?: string;
  /** HOST:PORT peers outside the LAN. */
  peers: string[];
  mdns: boolean;
  /** How long a new root asking to join over the LAN (no token) waits for an operator's approval (ms). */
  joinWaitMs?: number;
  /** A member silent this long is down and its content copied again (ms). */
  deadAfterMs?: number;
  /** The replication audit's period (ms). */
  auditMs?: number;
  /** Deleted content is kept this long (ms). */
  gcGraceMs?: number;
  /** Rack or site of this node's machine. */
  zone?: string;
  /** Bytes of partial downloads kept for readers. */
  cacheBytes?: number;
  scrubRate?: number;
  /** Bytes per second replication's copies may fetch together (undefined/0: no cap). */
  healRate?: number;
  scrubPauseMs?: number;
  /** Stored pieces checked against their hashes before a read returns them (default on). */
  verifyReads: boolean;
}
export type Args = RunArgs | { command: 'help' } | { command: 'version' };

export const USAGE = `Usage:
  delugefs CLUSTER ROOT [MOUNTPOINT] [options]
  delugefs --cluster CLUSTER --root ROOT [--mount MOUNTPOINT] [options]

Runs one DelugeFS node: ROOT is the node's disk (its data lives there), MOUNTPOINT is where the
whole cluster appears as one filesystem. Without a mount point the node stores data only.

Options:
  --create          start a new cluster in ROOT (an empty or missing directory)
  --join TOKEN      join the cluster with an invite token (from "delugefs invite" on a member);
                    a new ROOT with neither option joins through a member running on this machine.
                    A token on the command line is visible to every local user (ps): prefer
  --join-file FILE  to read the token from FILE, or
  --join -          to read it from stdin (e.g. delugefs ... --join - < token)
  --ssh-port N      SSH port: the first free port from N upward (default 7422)
  --web-port N      serve the dashboard (/, see "delugefs dashboard") and GET /metrics
                    (Prometheus) on port N (default: none)
  --web-bind ADDR   the address the web port binds (default 127.0.0.1: this machine only)
  --interface IF    network interface (name or IPv4 address) to announce on over mDNS
  --peer HOST:PORT  a member's SSH address outside the LAN (repeatable)
  --no-mdns         no mDNS (only --peer and the members' last known addresses)
  --join-wait D     a new ROOT with no token asks the members it finds on the LAN (mDNS) to
                    admit it and prints a code to approve on a member ("delugefs approve ROOT
                    CODE"); how long it waits for that (default 10m)
  --no-verify-reads  return stored bytes without checking them against their piece hashes
                    first (by default each piece is checked once per run before a read gets
                    it; a bad one is repaired from the members, or the read fails with EIO)
  --port N          BitTorrent port: the first free port from N upward (default 6881)
  --allow-other     let other users use the mount (FUSE allow_other)
  --passthrough     Linux 6.9+, as root: a read-only open of a file whose content is complete
                    and verified on this disk is handed to the kernel, which reads the stored
                    copy itself (near-native reads). While such a handle is open, a read-write
                    open of the same file fails with ETXTBSY (README: "The FUSE layer")
  --dead-after D    a member silent for D (e.g. 90s, 10m, 1h; default 10m) is down: its content
                    is copied again to keep every file on "copies" disks (delugefs config)
  --audit-every D   how often every member is asked what it holds (default 1m); events (writes,
                    members seen or lost) act at once, the audit is the safety net
  --cache-size N    bytes of content read from other disks kept here for later reads (e.g.
                    500M, 20G; default 2G): partial downloads and whole copies not placed
                    here, least recently used evicted first
  --scrub-rate N    bytes per second the background scrub reads to check stored copies against
                    their piece hashes (default 16M; 0: off); bad pieces are fetched again
  --scrub-every D   pause between two scrub passes (default 1d)
  --heal-rate N     bytes per second this disk's replication copies (healing a dead disk,
                    placement, drains) fetch together, e.g. 50M (default: no cap); reads
                    through a mount and copies someone waits for are never held to it
  --zone NAME       the rack or site of this machine: copies go to different zones first
  --gc-grace D      deleted content stays on the disks for D (default 10m), and until every
                    member has synced the delete and we hold its latest change
  --json            print the ready line as JSON
  --log-level L     debug, info, warn or error (default info); logs are JSON lines on stderr
  -h, --help        show this help
  -V, --version     show the version

Cluster commands (ROOT is a node's root; the node's own commands use its control socket):
  delugefs key ROOT                     print this node's public key line
  delugefs authorize ROOT KEYLINE       admit a key to the cluster (on a member)
  delugefs invite ROOT [--ttl 1d]       print a one-time join token (on a running member)
  delugefs remove-node ROOT NODE        revoke a member (its key is refused once synced)
  delugefs joins ROOT                   the LAN join requests waiting for approval (code, machine, address)
  delugefs approve ROOT CODE            admit the new node whose join request shows CODE
  delugefs refuse ROOT CODE             refuse that request (its node stops asking)
  delugefs members ROOT                 list the members
  delugefs peers ROOT                   every member as the running node sees it: state, address, last answer, disk, sync, swarm
  delugefs status ROOT                  the cluster's health (OK, WARN or ERROR) with its checks and counts
  delugefs conflicts ROOT               the conflict copies merges kept, with both versions' writers and times
  delugefs whereis ROOT PATH...         which disks hold each file's content (complete or partial), as of when
  delugefs dashboard ROOT               the web dashboard's URL with its token (node started with --web-port)
  delugefs fsck ROOT [--repair]         check every stored copy against its piece hashes now, with progress
  delugefs authorized-keys ROOT [--bin PATH]  members' keys as authorized_keys lines (own sshd)
  delugefs shell ROOT --peer NODE       forced command for an sshd authorized_keys line
  delugefs put ROOT PATH [FILE|-]       write a small file through the running node (no mount needed)
  delugefs config ROOT [copies [N]]     show or set cluster settings (copies: disks per file, default 2)
  delugefs maintenance ROOT NODE on|off a planned outage of NODE: its copies are not made again meanwhile
  delugefs drain ROOT NODE [off|status] [--wait]  move NODE's copies to other disks (before removing NODE)
  Each takes --json and --help.

Try it first:
  delugefs demo                         a throwaway three-node cluster on this machine: mounts one,
                                        writes files, kills a node, shows healing; Ctrl-C cleans up

Examples:
  delugefs bigstore /tank/delugefs /mnt/bigstore --create
  delugefs invite /tank/delugefs                         # on server1: prints TOKEN
  delugefs bigstore /tank/delugefs /mnt/bigstore --join-file token   # on server2
  delugefs --cluster bigstore --root /mnt/disk2/.bigstoredb      # second disk of server1`;

export class UsageError extends Error {}

const CLUSTER_RE = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/;

export function parseArgs(argv: string[]): Args {
  const pos: string[] = [];
  const named: { cluster?: string; root?: string; mount?: string } = {};
  let create = false, allowOther = false, passthrough = false, json = false, port = 6881, mdns = true, verifyReads = true;
  let join: RunArgs['join'], sshPort: number | undefined, iface: string | undefined;
  let joinWaitMs: number | undefined;
  let deadAfterMs: number | undefined, auditMs: number | undefined, gcGraceMs: number | undefined, zone: string | undefined, cacheBytes: number | undefined;
  let scrubRate: number | undefined, scrubPauseMs: number | undefined, healRate: number | undefined;
  let webPort: number | undefined, webBind: string | undefined;
  const peers: string[] = [];
  const portOf = (flag: string, v: string): number => {
    if (!/^\d+$/.test(v) || +v < 1 || +v > 65535) throw new UsageError(`${flag} must be a TCP port (1-65535), not "${v}"`);
    return +v;
  };
  let logLevel: RunArgs['logLevel'] = 'info';
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    const eq = a.startsWith('--') ? a.indexOf('=') : -1;
    const flag = eq > 0 ? a.slice(0, eq) : a;
    const value = (): string => {
      if (eq > 0) return a.slice(eq + 1);
      const v = argv[++i];
      if (v === undefined || (v.startsWith('-') && v !== '-')) throw new UsageError(`${flag} needs a value`);
      return v;
    };
    switch (flag) {
      case '-h': case '--help': return { command: 'help' };
      case '-V': case '--version': return { command: 'version' };
      case '--create': create = true; break;
      case '--allow-other': allowOther = true; break;
      case '--passthrough': passthrough = true; break;
      case '--json': json = true; break;
      case '--cluster': named.cluster = value(); break;
      case '--root': named.root = value(); break;
      case '--mount': named.mount = value(); break;
      case '--port': port = portOf(flag, value()); break;
      case '--ssh-port': sshPort = portOf(flag, value()); break;
      case '--web-port': webPort = portOf(flag, value()); break;
      case '--web-bind': {
        webBind = value();
        if (isIP(webBind) === 0) throw new UsageError(`--web-bind must be an IP address (e.g. 127.0.0.1, 0.0.0.0, ::1), not "${webBind}"`);
        break;
      }
      case '--join': case '--join-file': {
        if (join) throw new UsageError('give the token once: --join TOKEN, --join - or --join-file FILE');
        const v = value();
        if (!v) throw new UsageError(`${flag} needs a value`);
        join = v === '-' ? { stdin: true } : flag === '--join-file' ? { file: v } : { token: v };
        break;
      }
      case '--interface': iface = value(); break;
      case '--no-mdns': mdns = false; break;
      case '--no-verify-reads': verifyReads = false; break;
      case '--dead-after': deadAfterMs = parseDuration(flag, value()); break;
      case '--join-wait': joinWaitMs = parseDuration(flag, value()); break;
      case '--audit-every': auditMs = parseDuration(flag, value()); break;
      case '--gc-grace': gcGraceMs = parseDuration(flag, value()); break;
      case '--cache-size': cacheBytes = parseSize(flag, value()); break;
      case '--scrub-rate': scrubRate = parseSize(flag, value()); break;
      case '--heal-rate': {
        healRate = parseSize(flag, value());
        if (healRate > 0 && healRate < 64 * 1024) throw new UsageError('--heal-rate must be 0 (no cap) or at least 64K');
        break;
      }
      case '--scrub-every': scrubPauseMs = parseDuration(flag, value()); break;
      case '--zone': {
        zone = value();
        if (!ZONE_RE.test(zone)) throw new UsageError(`--zone must be 1-64 letters, digits, '.', '_' or '-', not "${zone}"`);
        break;
      }
      case '--peer': {
        const v = value();
        const m = /^\[[^\]]+\]:(\d+)$/.exec(v) ?? /^[^:\s]+:(\d+)$/.exec(v);
        if (!m) throw new UsageError(`--peer must be HOST:PORT, not "${v}"`);
        portOf('--peer port', m[1]!);
        peers.push(v);
        break;
      }
      case '--log-level': {
        const v = value();
        if (!['debug', 'info', 'warn', 'error'].includes(v)) throw new UsageError(`--log-level must be debug, info, warn or error`);
        logLevel = v as RunArgs['logLevel'];
        break;
      }
      default:
        if (a.startsWith('-') && a !== '-') throw new UsageError(`unknown option ${a}`);
        pos.push(a);
    }
  }
  if (pos.length > 3) throw new UsageError(`too many arguments: ${pos.slice(3).join(' ')}`);
  const merge = (key: 'cluster' | 'root' | 'mount', p: string | undefined): string | undefined => {
    const n = named[key];
    if (n !== undefined && p !== undefined && n !== p) throw new UsageError(`${key} given twice: "${p}" and --${key} "${n}"`);
    return n ?? p;
  };
  const cluster = merge('cluster', pos[0]);
  const root = merge('root', pos[1]);
  // An empty mount point is none: the systemd unit passes --mount= for a storage-only disk.
  const mount = merge('mount', pos[2]) || undefined;
  if (!cluster) throw new UsageError('missing CLUSTER (the cluster name)');
  if (!CLUSTER_RE.test(cluster)) throw new UsageError(`cluster name "${cluster}" must be 1-64 letters, digits, '.', '_' or '-'`);
  if (!root) throw new UsageError('missing ROOT (the directory on the disk this node stores into)');
  if (create && join !== undefined) throw new UsageError('--create and --join (or --join-file) exclude each other');
  if (webBind !== undefined && webPort === undefined) throw new UsageError('--web-bind goes with --web-port');
  return { command: 'run', cluster, root, mount, create, port, allowOther, passthrough, json, logLevel, join, sshPort, interface: iface, peers, mdns, joinWaitMs, deadAfterMs, auditMs, gcGraceMs, zone, cacheBytes, scrubRate, scrubPauseMs, healRate, verifyReads, webPort, webBind };
}

/** Bytes: "4096", "500K", "20M", "2G", "1T" (powers of 1024). */
export function parseSize(flag: string, s: string): number {
  const m = /^(\d+(?:\.\d+)?)([KMGT]?)i?B?$/i.exec(s);
  const n = m ? Math.floor(Number(m[1]) * 1024 ** ' KMGT'.indexOf((m[2] || ' ').toUpperCase())) : NaN;
  if (!Number.isSafeInteger(n) || n < 0) throw new UsageError(`${flag} must be a size like 500M or 20G, not "${s}"`);
  return n;
}

/** "90s", "10m", "1h", "500ms", or seconds; at least 100 ms, at most a week. */
export function parseDuration(flag: string, s: string): number {
  const m = /^(\d+(?:\.\d+)?)(ms|s|m|h|d)?$/.exec(s);
  const ms = m ? Number(m[1]) * { ms: 1, s: 1000, m: 60_000, h: 3600_000, d: 86400_000 }[(m[2] ?? 's') as 'ms']! : NaN;
  if (!(ms >= 100 && ms <= 7 * 86400_000)) throw new UsageError(`${flag} must be a duration like 90s, 10m or 1h (100ms to 7d), not "${s}"`);
  return Math.round(ms);
}

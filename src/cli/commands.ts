// The cluster subcommands: key, authorize, invite, joins, approve, refuse, remove-node, members, status, conflicts, whereis,
// authorized-keys, shell,
// put (a small file written through a running node, for nodes without a mount), config,
// maintenance and drain (replication settings, through the running node), fsck (cli/fsck.ts), peers, dashboard (the web port's URL with its token).
// Commands that change membership go through the running node's control socket when it runs
// (the node serialises its own changes), and open the root directly when it does not.
import { resolve, join } from 'node:path';
import { open } from 'node:fs/promises';
import { UsageError } from './args.js';
import { CheckError } from './run.js';
import { acquireLock, inspectRoot, paths } from '../node/layout.js';
import { DelugeNode } from '../node/node.js';
import { CONTROL_SOCKET } from '../node/cluster-node.js';
import { Identity, isNodeId, parsePublicKeyLine } from '../cluster/identity.js';
import { Membership, RecordStore } from '../cluster/membership.js';
import { controlDispatcher } from '../cluster/control-socket.js';
import { RpcCallError } from '../cluster/rpc-client.js';
import { runForcedCommand, authorizedKeysText } from '../cluster/forced-command.js';
import { refusalFromRepo } from '../cluster/repo-members.js';
import { closeHashers } from '../content/hasher.js';
import { createLogger } from '../util/log.js';
import { MAX_PUT_BYTES, PUT, putPathProblem } from '../node/put-file.js';
import { AUTHORIZE, INVITE, MEMBERS, PUSH_RECEIVED, REMOVE_NODE, JOIN_REQUESTS, JOIN_APPROVE, JOIN_REFUSE } from '../node/control-methods.js';
import { normalizeCode } from '../cluster/join-code.js';
import { renderJoins } from '../daemon/health.js';
import { callLocal, Method } from '../daemon/methods.js';
import { REPLICATION_CONFIG } from '../replication/methods.js';
import { MAX_COPIES } from '../replication/settings.js';
import { DRAIN_STATUS, DrainStatus, WHEREIS } from '../replication/methods.js';
import { MAX_WHEREIS_PATHS, renderWhere, type Where } from '../replication/whereis.js';
import { formatBytes } from '../util/units.js';
import { Progress } from './progress.js';
import { HEALTH } from '../daemon/health-method.js';
import { renderHealth } from '../daemon/health.js';
import { CONFLICTS, MAX_LISTED, renderConflicts } from '../daemon/conflicts.js';
import { FSCK_HELP, runFsck } from './fsck.js';
import { PEERS, renderPeers } from '../daemon/peers.js';
import { WEB_INFO } from '../web/methods.js';
import { readToken } from '../web/token.js';
import { dashboardHost } from '../web/guard.js';

const HELP: Record<string, string> = {
  key: `Usage: delugefs key ROOT [--json]
Prints the node's public key line (creates the key in a new ROOT). Give it to a member's
"delugefs authorize", then start this node with --peer MEMBER_HOST:SSH_PORT.`,
  authorize: `Usage: delugefs authorize ROOT KEYLINE [--json]
On a member: admits the key (an "ssh-ed25519 AAAA..." line from "delugefs key") to the cluster.`,
  invite: `Usage: delugefs invite ROOT [--ttl DURATION] [--json]
On a running member: prints a one-time join token, valid for DURATION (e.g. 30m, 12h, 7d;
default 1d). The new node runs: delugefs CLUSTER NEWROOT [MOUNT] --join TOKEN`,
  'remove-node': `Usage: delugefs remove-node ROOT NODE [--json]
On a member: revokes node NODE (its 16-character id, see "delugefs members"). Its key is refused
everywhere once the change has synced; a removed key cannot be admitted again.`,
  joins: `Usage: delugefs joins ROOT [--json]
On a running member: the join requests of new nodes on the LAN waiting for approval (a new, empty
root started with no token asks the members it finds over mDNS): each request's verification
code, node id, machine name (as the new node says), address, and when it expires. The new node
prints the same code: approve only a code you see on both.`,
  approve: `Usage: delugefs approve ROOT CODE [--json]
On a running member: admits the new node whose pending join request shows CODE (as "delugefs
joins" lists it and the new node printed it; case and the dash do not matter), exactly as
"delugefs authorize" would its key: the member record syncs to every member and the new node,
still asking, joins. Exit 1 when no pending request has that code (unknown, refused, expired).`,
  refuse: `Usage: delugefs refuse ROOT CODE [--json]
On a running member: refuses the pending join request with CODE. The new node is told so at its
next poll and stops; this member refuses that key's requests for 15 minutes.`,
  members: `Usage: delugefs members ROOT [--json]
Lists the cluster's members as this node knows them.`,
  status: `Usage: delugefs status ROOT [--json]
On a running node: one health verdict for the cluster as this node sees it, HEALTH_OK, _WARN or
_ERROR, with coded checks (CONTENT_LOST, CONTENT_UNDER, DISK_DOWN, DISK_NEARFULL, SYNC_FAILING,
CONFLICTS, ...) and the counts behind them: members and disks with their fill, content under its
copies, files and bytes, sync with each peer.`,
  conflicts: `Usage: delugefs conflicts ROOT [--json]
On a running node: the conflict copies merges kept (NAME.sync-conflict-TIME-NODE.EXT), each with
the version kept aside and the one now under the original name: who wrote each, when, how big.
Keep the one you want by renaming or deleting the other. At most ${MAX_LISTED} are listed in full.`,
  whereis: `Usage: delugefs whereis ROOT PATH... [--json]
On a running node: which disks hold the content of each file, complete copies first, then partial
downloads (pieces held), each disk with its machine and state, and how fresh that is: this disk
now, a member as of its last answer to this node's audit (--audit-every). PATH is the cluster's
(/docs/a.txt) or a path under this node's mount.`,
  'authorized-keys': `Usage: delugefs authorized-keys ROOT [--bin PATH] [--json]
Prints the other members' keys as authorized_keys lines restricted to "delugefs shell", for
running behind your own sshd. --bin: how sshd starts delugefs (default: this program's path).`,
  shell: `Usage: delugefs shell ROOT --peer NODE
The forced command of an authorized_keys line (see authorized-keys): serves git fetch/push of the
metadata repository and delugefs-rpc for member NODE, from SSH_ORIGINAL_COMMAND. Every call
first checks that NODE is a member and not removed (exit 1 with a message when not).`,
  config: `Usage: delugefs config ROOT [copies [N]] [--dir PATH] [--json]
On a running node: shows the cluster's settings, or sets one. copies: on how many disks (on
different machines where there are enough) every file is kept, 1-16, default 2. With --dir, for
the files under directory PATH of the namespace (e.g. /photos) instead; 0 removes that setting.
A file takes its nearest directory's setting, content shared by several files the largest. A
setting is a record in the cluster's namespace: every member follows it once synced (the later
change wins).`,
  maintenance: `Usage: delugefs maintenance ROOT NODE on|off [--json]
On a running node: NODE (a member's id, see "delugefs members") is out for planned work (a
reboot, a disk swap): while on, its copies are not made again elsewhere however long it is
away ("noout"). Turn it off when it is back.`,
  drain: `Usage: delugefs drain ROOT NODE [on|off|status] [--wait] [--json]
On a running node: moves everything NODE holds to other disks before it is taken out: NODE takes
no new copies, every file it holds is copied elsewhere until "copies" other disks hold it, and
only then is NODE's copy dropped. "delugefs config ROOT" lists the nodes draining; "off" stops.
status: how far it is: NODE's copies left, their bytes, and how many of them "copies" other
disks already hold (what NODE holds is its last answer to this node's audit, --audit-every).
--wait: after "on" or "status", show progress (on a terminal) until NODE holds nothing more;
Ctrl-C stops waiting, not the drain.`,
  fsck: FSCK_HELP,
  peers: `Usage: delugefs peers ROOT [--json]
On a running node: every member as this node sees it, itself first: machine (and zone), disk
state (up, down, maintenance, draining, unknown), the address it is reached at now and how it
was found (mdns, static, member record), when it last answered this node's replication poll,
its disk's fill, namespace sync with it (in step, changes still to send, or failing: failed
exchanges in a row) and the swarm connections open to it.`,
  dashboard: `Usage: delugefs dashboard ROOT [--json]
On a running node started with --web-port: prints the dashboard's URL with its token
(http://127.0.0.1:PORT/#token=...). Open it in a browser on this machine (or through an SSH
tunnel). The token is in ROOT/web-token, readable by the node's user only: it lets whoever holds
it approve or refuse joins, so do not share the URL.`,
  put: `Usage: delugefs put ROOT PATH [FILE|-] [--parents] [--json]
On a running node: writes FILE (or stdin) as the whole content of PATH, an absolute path inside
the cluster's namespace (e.g. /docs/a.txt), creating or replacing the file; for nodes without a
mount. At most ${MAX_PUT_BYTES >> 10} KiB; write larger files through a mount. --parents: make missing directories.`,
};
export const SUBCOMMANDS = Object.keys(HELP);

interface Parsed { pos: string[]; json: boolean; ttl?: string; bin?: string; peer?: string; parents?: boolean; dir?: string; wait?: boolean; repair?: boolean; restart?: boolean }

const POS_NAMES: Record<string, string[]> = { approve: ['ROOT', 'CODE'], refuse: ['ROOT', 'CODE'], whereis: ['ROOT', 'PATH'], authorize: ['ROOT', 'KEYLINE'], 'remove-node': ['ROOT', 'NODE'], put: ['ROOT', 'PATH'], maintenance: ['ROOT', 'NODE', 'on|off'], drain: ['ROOT', 'NODE'] };

function parse(cmd: string, argv: string[], nPos: number, maxPos = nPos): Parsed | 'help' {
  const out: Parsed = { pos: [], json: false };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    const val = () => {
      const v = argv[++i];
      if (v === undefined) throw new UsageError(`${a} needs a value`);
      return v;
    };
    if (a === '-h' || a === '--help') return 'help';
    else if (a === '--json') out.json = true;
    else if (a === '--ttl' && cmd === 'invite') out.ttl = val();
    else if (a === '--bin' && cmd === 'authorized-keys') out.bin = val();
    else if (a === '--peer' && cmd === 'shell') out.peer = val();
    else if ((a === '--parents' || a === '-p') && cmd === 'put') out.parents = true;
    else if (a === '--dir' && cmd === 'config') out.dir = val();
    else if (a === '--wait' && cmd === 'drain') out.wait = true;
    else if (a === '--repair' && cmd === 'fsck') out.repair = true;
    else if (a === '--restart' && cmd === 'fsck') out.restart = true;
    else if (a.startsWith('-') && !(a === '-' && cmd === 'put') && !a.startsWith('ssh-')) throw new UsageError(`${cmd}: unknown option ${a}`);
    else out.pos.push(a);
  }
  if (out.pos.length < nPos) throw new UsageError(`${cmd}: missing ${(POS_NAMES[cmd] ?? ['ROOT'])[out.pos.length]}\n${HELP[cmd]}`);
  if (out.pos.length > maxPos) throw new UsageError(`${cmd}: too many arguments: ${out.pos.slice(maxPos).join(' ')}`);
  return out;
}

export function parseTtl(s: string): number {
  const m = /^(\d+)([smhd]?)$/.exec(s);
  if (!m || +m[1]! === 0) throw new UsageError(`--ttl must be a duration like 30m, 12h or 7d, not "${s}"`);
  return +m[1]! * { '': 1, s: 1, m: 60, h: 3600, d: 86400 }[m[2]!]! * 1000;
}

async function nodeRoot(root: string): Promise<string> {
  const st = await inspectRoot(root);
  if (st.kind !== 'node') throw new CheckError(`${root} is not a DelugeFS node root`);
  return root;
}

/** A typed method of the running node (daemon/methods.ts); undefined when no node runs on ROOT. */
async function viaControlM<P, R>(root: string, m: Method<P, R>, params: P): Promise<R | undefined> {
  try {
    return await callLocal(join(root, CONTROL_SOCKET), m, params);
  } catch (e) {
    if (e instanceof RpcCallError && e.code === 'not_running') return undefined;
    throw new CheckError(`${m.name}: ${(e as Error).message}`);
  }
}

/** Opens a stopped node's root (locked) for a membership change or a read. */
async function offline<T>(root: string, fn: (m: Membership, node: DelugeNode) => Promise<T> | T): Promise<T> {
  const st = await inspectRoot(root);
  if (st.kind !== 'node') throw new CheckError(`${root} is not a DelugeFS node root`);
  const p = paths(root);
  const release = await acquireLock(p).catch((e) => { throw new CheckError((e as Error).message); });
  const log = createLogger({ node: st.config.nodeId }, 'warn');
  let node: DelugeNode | undefined;
  try {
    node = await DelugeNode.start({ paths: p, config: st.config, log, create: false });
    const n = node;
    // What fn refuses (a removed key, an unknown node) is the user's answer, not a crash.
    return await Promise.resolve()
      .then(async () => fn(new Membership(n.ns as unknown as RecordStore, () => {}, await Identity.loadOrCreate(root)), n))
      .catch((e) => { throw e instanceof CheckError ? e : new CheckError((e as Error).message); });
  } finally {
    await node?.close();
    await closeHashers();
    await release();
  }
}

const print = (json: boolean, value: unknown, text: string): void => void process.stdout.write(json ? JSON.stringify(value) + '\n' : text + '\n');

/** FILE or stdin ('-'), refused once it is longer than `max` bytes (read no further than that). */
async function readBounded(file: string, max: number): Promise<Buffer> {
  const fh = file === '-' ? null : await open(file).catch((e) => { throw new CheckError(`put: cannot read ${file}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`); });
  const chunks: Buffer[] = [];
  let size = 0;
  try {
    for await (const c of fh ? fh.createReadStream() : process.stdin) {
      size += (c as Buffer).length;
      if (size > max) throw new CheckError(`put: ${file === '-' ? 'stdin' : file} is larger than ${max >> 10} KiB; write larger files through a mount`);
      chunks.push(c as Buffer);
    }
  } catch (e) {
    if (e instanceof CheckError) throw e;
    throw new CheckError(`put: cannot read ${file}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
  } finally {
    await fh?.close().catch(() => {});
  }
  return Buffer.concat(chunks);
}

/** How long `drain --wait` waits for a member to answer before it gives up. */
const WAIT_UNKNOWN_MS = 60_000;

const drainLine = (d: DrainStatus): string =>
  `node ${d.nodeId}: ${d.draining ? 'draining' : 'not draining'} (${d.state}); ` +
  (d.known ? `${d.left} ${d.left === 1 ? 'copy' : 'copies'} left (${formatBytes(d.bytesLeft)}), ${d.ready} of them held by enough other disks${d.reportedAt ? `, as it answered at ${d.reportedAt}` : ''}` : 'what it holds is not known yet (no answer within 2 s, or its latest namespace changes have not reached this node)');

/** `drain ROOT NODE [on] status|--wait`: the drain's progress, once or until NODE holds nothing. */
async function drain(root: string, id: string, on: boolean, wait: boolean, json: boolean): Promise<void> {
  if (on) {
    const r = await viaControlM(root, REPLICATION_CONFIG, { drain: id, on: true });
    if (!r) throw new CheckError(`drain: no node is running on ${root}; start it first`);
  }
  const status = async () => {
    const d = await viaControlM(root, DRAIN_STATUS, { node: id });
    if (!d) throw new CheckError(`drain: no node is running on ${root}; start it first`);
    return d;
  };
  let d = await status();
  if (wait) {
    if (!d.draining) throw new CheckError(`drain: ${id} is not draining; "delugefs drain ${root} ${id} on --wait" starts it`);
    const bar = new Progress(`drain ${id}`);
    let total = d.left;
    let since = Date.now();
    while (!(d.known && d.left === 0)) {
      if (d.known) since = Date.now();
      // Down: its copies are healed elsewhere, not drained; no answer for a minute: nothing to wait on.
      if (d.state === 'down') {
        bar.end();
        throw new CheckError(`drain: ${id} is down (silent past --dead-after): its copies are being made again elsewhere instead; "delugefs status ${root}" shows how far`);
      }
      if (!d.known && Date.now() - since > WAIT_UNKNOWN_MS) {
        bar.end();
        throw new CheckError(`drain: ${id} has given no current answer of what it holds for ${WAIT_UNKNOWN_MS / 1000} s (${d.state}): is it running, and do its namespace changes reach this node?`);
      }
      total = Math.max(total, d.left);
      bar.update(total - d.left, total, d.known ? `${d.left} left, ${formatBytes(d.bytesLeft)}; ${d.ready} held elsewhere` : 'waiting for its first answer');
      await new Promise((r) => setTimeout(r, 1000));
      d = await status();
      if (!d.draining) {
        bar.end();
        throw new CheckError(`drain: ${id} stopped draining ("off" was set) with ${d.left} copies left`);
      }
    }
    bar.update(total, total, 'done');
    bar.end();
  }
  print(json, d, drainLine(d));
}

export async function runSubcommand(cmd: string, argv: string[]): Promise<void> {
  const n = cmd === 'approve' || cmd === 'refuse' || cmd === 'whereis' || cmd === 'authorize' || cmd === 'remove-node' || cmd === 'put' || cmd === 'drain' ? 2 : cmd === 'maintenance' ? 3 : 1;
  const a = parse(cmd, argv, n, cmd === 'put' || cmd === 'config' || cmd === 'drain' ? 3 : cmd === 'whereis' ? Infinity : n);
  if (a === 'help') return void process.stdout.write(HELP[cmd] + '\n');
  const root = resolve(a.pos[0]!);
  switch (cmd) {
    case 'key': {
      const st = await inspectRoot(root);
      if (st.kind === 'foreign') throw new CheckError(`${root} is not a DelugeFS root: ${st.what}`);
      const id = await Identity.loadOrCreate(root);
      return print(a.json, { nodeId: id.nodeId, publicKey: id.publicKeyLine, fingerprint: id.fingerprint }, id.publicKeyLine);
    }
    case 'authorize': {
      const keyLine = a.pos[1]!;
      try {
        parsePublicKeyLine(keyLine);
      } catch (e) {
        throw new CheckError(`authorize: ${(e as Error).message} (expected the line "delugefs key" prints)`);
      }
      await nodeRoot(root);
      const r = (await viaControlM(root, AUTHORIZE, { publicKey: keyLine, hostname: 'unknown' })) ??
        (await offline(root, (m) => m.admit({ publicKey: keyLine, hostname: 'unknown' })));
      return print(a.json, r, `admitted node ${r.nodeId} (${r.fingerprint})`);
    }
    case 'invite': {
      if (a.peer) throw new UsageError('invite: unknown option --peer');
      const ttlMs = a.ttl ? parseTtl(a.ttl) : undefined;
      await nodeRoot(root);
      const r = await viaControlM(root, INVITE, { ttlMs });
      if (!r) throw new CheckError(`invite: no node is running on ${root}; start it first (the token is redeemed at the running node)`);
      return print(a.json, r, r.token);
    }
    case 'remove-node': {
      const id = a.pos[1]!;
      if (!isNodeId(id)) throw new CheckError(`remove-node: "${id}" is not a node id (16 characters a-z 2-7; see "delugefs members")`);
      await nodeRoot(root);
      const r = (await viaControlM(root, REMOVE_NODE, { nodeId: id })) ??
        (await offline(root, async (m, node) => {
          if (id === node.nodeId) throw new CheckError('remove-node: a node cannot remove itself; run it on another member');
          if (m.isRevoked(id)) return { nodeId: id, already: true };
          if (!m.get(id)) throw new CheckError(`remove-node: node ${id} is not a member`);
          await m.revoke(id);
          return { nodeId: id, already: false };
        }));
      return print(a.json, r, r.already ? `node ${id} was already removed` : `removed node ${id}; its key is refused on every member once synced`);
    }
    case 'joins': {
      await nodeRoot(root);
      const list = await viaControlM(root, JOIN_REQUESTS, null);
      if (!list) throw new CheckError(`joins: no node is running on ${root}; start it first (requests wait at the running node)`);
      return print(a.json, list, list.length ? renderJoins(list).join('\n') : 'no join requests pending');
    }
    case 'approve': case 'refuse': {
      const code = normalizeCode(a.pos[1]!);
      if (!code) throw new CheckError(`${cmd}: "${a.pos[1]!.slice(0, 40)}" is not a join code (12 characters like ABCD-EFGH-JKMN, as the new node printed it; "delugefs joins ROOT" lists them)`);
      await nodeRoot(root);
      const r = cmd === 'approve' ? await viaControlM(root, JOIN_APPROVE, { code }) : await viaControlM(root, JOIN_REFUSE, { code });
      if (!r) throw new CheckError(`${cmd}: no node is running on ${root}; start it first (requests wait at the running node)`);
      return print(a.json, r, 'nodeId' in r ? `admitted node ${r.nodeId} (code ${code}); it joins at its next poll` : `refused the join request ${code}`);
    }
    case 'members': {
      await nodeRoot(root);
      const list = (await viaControlM(root, MEMBERS, null)) ?? (await offline(root, (m) => m.list()));
      return print(a.json, list, list.map((m) => `${m.nodeId}  ${m.hostname}  ${m.addresses.join(',') || '-'}  added ${m.addedAt} by ${m.addedBy}`).join('\n'));
    }
    case 'status': {
      await nodeRoot(root);
      const h = await viaControlM(root, HEALTH, null);
      if (!h) throw new CheckError(`status: no node is running on ${root}; start it first`);
      return print(a.json, h, renderHealth(h));
    }
    case 'fsck': {
      // fsck's own exit codes (e2fsck's): an operational error is 8, not 1 ("all repaired").
      try {
        await nodeRoot(root);
      } catch (e) {
        process.stderr.write(`delugefs: ${(e as Error).message}\n`);
        process.exitCode = 8;
        return;
      }
      return runFsck(root, { repair: !!a.repair, restart: !!a.restart, json: a.json });
    }
    case 'peers': {
      await nodeRoot(root);
      const rows = await viaControlM(root, PEERS, null);
      if (!rows) throw new CheckError(`peers: no node is running on ${root}; start it first`);
      return print(a.json, rows, renderPeers(rows));
    }
    case 'dashboard': {
      await nodeRoot(root);
      const w = await viaControlM(root, WEB_INFO, null).catch((e: Error) => {
        if (/unknown method/.test(e.message)) throw new CheckError(`dashboard: the node on ${root} has no web port; start it with --web-port N`);
        throw e;
      });
      if (!w) throw new CheckError(`dashboard: no node is running on ${root}; start it with --web-port N`);
      const token = await readToken(root).catch((e: Error) => { throw new CheckError(`dashboard: ${e.message}`); });
      const url = `http://${dashboardHost(w.bind)}:${w.port}/#token=${token}`;
      return print(a.json, { url, port: w.port, bind: w.bind }, url);
    }
    case 'conflicts': {
      await nodeRoot(root);
      const c = await viaControlM(root, CONFLICTS, null);
      if (!c) throw new CheckError(`conflicts: no node is running on ${root}; start it first`);
      return print(a.json, c, renderConflicts(c));
    }
    case 'whereis': {
      await nodeRoot(root);
      // Relative paths are taken from here (inside the mount, say); the node maps its mount's paths.
      const paths = a.pos.slice(1).map((p) => (p.startsWith('/') ? p : resolve(p)));
      const out: Where[] = [];
      for (let i = 0; i < paths.length; i += MAX_WHEREIS_PATHS) {
        const w = await viaControlM(root, WHEREIS, { paths: paths.slice(i, i + MAX_WHEREIS_PATHS) });
        if (!w) throw new CheckError(`whereis: no node is running on ${root}; start it first`);
        out.push(...w);
      }
      print(a.json, out, renderWhere(out));
      if (out.some((x) => x.error)) process.exitCode = 1;
      return;
    }
    case 'authorized-keys': {
      await nodeRoot(root);
      const me = (await Identity.loadOrCreate(root)).nodeId;
      const list = (await viaControlM(root, MEMBERS, null)) ?? (await offline(root, (m) => m.list()));
      const bin = a.bin ?? (process.argv[1]?.endsWith('/delugefs') ? process.argv[1] : `${process.argv[1] ?? 'delugefs'}`);
      const text = authorizedKeysText(list.filter((m) => m.nodeId !== me).map((m) => m.publicKey), bin, root);
      return print(a.json, text.split('\n').filter(Boolean), text.trimEnd());
    }
    case 'put': {
      const path = a.pos[1]!;
      const why = putPathProblem(path);
      if (why) throw new CheckError(`put: ${why}`);
      await nodeRoot(root);
      const data = await readBounded(a.pos[2] ?? '-', MAX_PUT_BYTES);
      const r = await viaControlM(root, PUT, { path, data: data.toString('base64'), parents: a.parents === true });
      if (!r) throw new CheckError(`put: no node is running on ${root}; start it first (put writes through the running node)`);
      return print(a.json, r, `${r.created ? 'created' : 'replaced'} ${r.path} (${r.size} bytes)`);
    }
    case 'config': {
      const [, key, value] = a.pos;
      if (key !== undefined && key !== 'copies') throw new UsageError(`config: unknown setting "${key}" (known: copies)\n${HELP.config}`);
      await nodeRoot(root);
      if (value !== undefined && !/^\d{1,2}$/.test(value)) throw new UsageError(`config: copies must be a whole number from 1 to ${MAX_COPIES}, not "${value}"`);
      if (a.dir !== undefined && (value === undefined || !a.dir.startsWith('/'))) throw new UsageError('config: --dir takes an absolute path inside the namespace and needs "copies N"');
      const r = await viaControlM(root, REPLICATION_CONFIG, value === undefined ? {} : { copies: Number(value), ...(a.dir !== undefined ? { dir: a.dir } : {}) });
      if (!r) throw new CheckError(`config: no node is running on ${root}; start it first`);
      if (key && value === undefined) return print(a.json, { copies: r.copies }, String(r.copies));
      return print(a.json, r, [
        `copies ${r.copies}${r.copiesSetBy ? ` (set by ${r.copiesSetBy} at ${r.copiesSetAt})` : ' (default)'}`,
        ...r.dirs.map((d) => `copies ${d.copies} under ${d.path}`),
        ...(r.maintenance.length ? [`maintenance ${r.maintenance.join(' ')}`] : []),
        ...(r.draining.length ? [`draining ${r.draining.join(' ')}`] : []),
      ].join('\n'));
    }
    case 'maintenance': case 'drain': {
      const [, id, onOff = 'on'] = a.pos as [string, string, string?];
      if (!isNodeId(id)) throw new CheckError(`${cmd}: "${id}" is not a node id (16 characters a-z 2-7; see "delugefs members")`);
      if (onOff !== 'on' && onOff !== 'off' && !(cmd === 'drain' && onOff === 'status')) throw new UsageError(`${cmd}: say on or off${cmd === 'drain' ? ' or status' : ''}, not "${onOff}"`);
      if (a.wait && onOff === 'off') throw new UsageError('drain: --wait goes with on or status');
      await nodeRoot(root);
      if (cmd === 'drain' && (onOff === 'status' || a.wait)) return drain(root, id, onOff === 'on', !!a.wait, a.json);
      const r = await viaControlM(root, REPLICATION_CONFIG, { [cmd === 'drain' ? 'drain' : 'maintenance']: id, on: onOff === 'on' });
      if (!r) throw new CheckError(`${cmd}: no node is running on ${root}; start it first`);
      const on = (cmd === 'drain' ? r.draining : r.maintenance).includes(id);
      return print(a.json, { nodeId: id, [cmd === 'drain' ? 'draining' : 'maintenance']: on }, `node ${id}: ${cmd === 'drain' ? 'draining' : 'maintenance'} ${on ? 'on' : 'off'}`);
    }
    case 'shell': {
      if (!a.peer || !isNodeId(a.peer)) throw new UsageError('shell: needs --peer NODE (the member this key belongs to)');
      const sock = join(root, CONTROL_SOCKET);
      const repoPath = join(root, 'meta', 'repo.git');
      process.exitCode = await runForcedCommand({
        repoPath, peerNodeId: a.peer, rpc: controlDispatcher(sock),
        // On every call: a removed member's authorized_keys line may still be there.
        refusal: (id) => refusalFromRepo(repoPath, id),
        onReceivePack: (peer) => callLocal(sock, PUSH_RECEIVED, { peer: peer.nodeId }).catch(() => {}),
      });
      return;
    }
  }
}

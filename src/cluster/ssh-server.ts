// The node's SSH server: public-key auth for members only, and nothing but the forced commands
// (git-upload-pack/receive-pack of the metadata repository, delugefs-rpc). Every refusal is logged.
// Connections are admitted by `ssh-limits.ts` from the TCP accept on (pre-auth, guest and member
// pools with caps and timeouts), so nobody can exhaust it and guests never take a member's slot.
import net from 'node:net';
import ssh2 from 'ssh2';
import type { Connection, PublicKeyAuthContext, AuthContext, ClientInfo, Session, ServerChannel } from 'ssh2';
import { Identity, PeerKey, peerKeyOf, KEY_TYPE } from './identity.js';
import { RpcDispatcher, RpcRegistry, PeerInfo } from './rpc.js';
import { serveCommand } from './serve-command.js';
import { Log, jsonLog } from './log.js';
import { Admission, DEFAULT_LIMITS, Slot, SshLimits, rateLimitedLog } from './ssh-limits.js';

const { Server, utils } = ssh2;

export const DEFAULT_SSH_PORT = 7422;
const PORT_TRIES = 100;
const MAX_AUTH_ATTEMPTS = 12;
/**
 * Bytes a channel may hold unread: ssh2 grants a 2 MiB window on top of a 2 MiB buffer, so a
 * client that keeps to the window never gets near this. ssh2 does not enforce the window (it
 * pushes whatever arrives), and one channel to a git child that had stopped reading held 600 MiB.
 */
const MAX_UNREAD = 8 * 2 ** 20;

export type MemberCheck = (key: PeerKey) => boolean | Promise<boolean>;

export interface SshServerOptions {
  identity: Identity;
  /** ROOT/meta/repo.git: the only repository peers may fetch from or push to. */
  repoPath: string;
  /** Approves a client key; called for every authentication attempt, so revocations apply at once. */
  isMember: MemberCheck;
  /** Defaults to a fresh registry, reachable as `server.rpc`. */
  rpc?: RpcDispatcher;
  onReceivePack?: (peer: PeerInfo) => unknown;
  /**
   * RPC methods open to keys that are not members (e.g. `join`, which checks an invite token).
   * Empty (the default): non-members are refused at authentication.
   */
  guestMethods?: string[];
  host?: string;
  /** First port to try; the next ones are tried while in use. 0 = any free port. */
  port?: number;
  log?: Log;
  /** Bytes of RPC input a member's request may send (guests: `limits.guestMaxInput`). */
  maxRpcInput?: number;
  /** Caps and timeouts per pool (DEFAULT_LIMITS otherwise). */
  limits?: Partial<SshLimits>;
}

export class SshServer {
  private constructor(
    private readonly tcp: net.Server,
    readonly port: number,
    readonly host: string,
    readonly rpc: RpcDispatcher,
    private readonly admission: Admission,
    private readonly conns: Map<Slot, Connection>,
  ) {}

  /**
   * Ends every connection of a node at once (after its membership was revoked), including ones
   * still authenticating: its git children are killed, its RPC handlers aborted, and the socket
   * is destroyed, so a client that ignores the disconnect keeps nothing open.
   */
  dropPeer(nodeId: string): number {
    const slots = this.admission.ofNode(nodeId);
    for (const s of slots) {
      this.conns.get(s)?.end(); // a polite disconnect first; destroy() right after cuts the rest
      s.abort.abort();
      setImmediate(() => this.admission.destroy(s));
    }
    return slots.length;
  }

  /** Connections per pool (pre-auth, guest, member), for status and tests. */
  connectionStats(): Record<'preauth' | 'guest' | 'member', number> {
    return this.admission.stats();
  }

  /** The registry when the server made its own (the usual case). */
  get registry(): RpcRegistry {
    if (!(this.rpc instanceof RpcRegistry)) throw new Error('server was given an external dispatcher');
    return this.rpc;
  }

  static async start(opts: SshServerOptions): Promise<SshServer> {
    const log = opts.log ?? jsonLog('ssh');
    const rpc = opts.rpc ?? new RpcRegistry();
    const host = opts.host ?? '0.0.0.0';
    const admission = new Admission({ ...DEFAULT_LIMITS, ...opts.limits }, log);
    const conns = new Map<Slot, Connection>();
    // Until it is a member, whatever a connection makes us log is rate-limited: a flood of
    // strangers must not become a flood of log lines.
    const noisy = rateLimitedLog(log);
    const server = new Server({ hostKeys: [opts.identity.privateKeyOpenSSH], ident: 'DelugeFS' }, (client, info) =>
      handleClient(client, info, opts, rpc, log, admission, conns, noisy),
    );
    server.on('error', (err: Error) => log('server_error', { error: err.message }, 'warn'));
    // Our own listener: every socket is admitted (or refused) before ssh2 sees a byte of it, so
    // connections that never send an SSH banner are bounded and timed out too.
    const tcp = net.createServer((sock) => {
      sock.on('error', () => {}); // ssh2 reports errors of admitted sockets; refused ones are just gone
      if (admission.accept(sock)) server.injectSocket(sock);
    });
    const port = await listenFirstFree(tcp, host, opts.port ?? DEFAULT_SSH_PORT);
    log('listening', { host, port, nodeId: opts.identity.nodeId, fingerprint: opts.identity.fingerprint });
    return new SshServer(tcp, port, host, rpc, admission, conns);
  }

  /** Stops listening and drops every open connection. */
  close(): Promise<void> {
    return new Promise((resolve) => {
      this.tcp.close(() => resolve());
      for (const c of this.conns.values()) c.end();
      for (const s of this.admission.all()) setImmediate(() => this.admission.destroy(s));
    });
  }
}

async function listenFirstFree(server: net.Server, host: string, first: number): Promise<number> {
  const tries = first === 0 ? 1 : PORT_TRIES;
  for (let i = 0; i < tries; i++) {
    const port = first === 0 ? 0 : first + i;
    const ok = await new Promise<boolean>((resolve, reject) => {
      const onError = (err: NodeJS.ErrnoException) => {
        server.off('listening', onListening);
        if (err.code === 'EADDRINUSE' || err.code === 'EACCES') resolve(false);
        else reject(err);
      };
      const onListening = () => {
        server.off('error', onError);
        resolve(true);
      };
      server.once('error', onError);
      server.once('listening', onListening);
      server.listen(port, host);
    });
    if (ok) return (server.address() as net.AddressInfo).port;
  }
  throw new Error(`no free SSH port in ${first}..${first + tries - 1}`);
}

function handleClient(
  client: Connection,
  info: ClientInfo,
  opts: SshServerOptions,
  rpc: RpcDispatcher,
  log: Log,
  admission: Admission,
  conns: Map<Slot, Connection>,
  noisy: Log,
): void {
  const address = `${info.ip}:${info.port}`;
  const slot = admission.get(info.ip, info.port);
  if (!slot || slot.dropped) return void client.end();
  // Without this every exchange waits on Nagle + delayed ACK (~40 ms per round trip).
  (client as unknown as { setNoDelay(v: boolean): void }).setNoDelay(true);
  conns.set(slot, client);
  const logAs = () => (slot.kind === 'member' ? log : noisy);
  let peer: PeerKey | undefined;
  let member = false;
  client.on('error', (err: Error) => logAs()('connection_error', { address, peer: peer?.nodeId, error: err.message }, 'warn'));
  const gone = new AbortController();
  client.on('close', () => {
    conns.delete(slot);
    gone.abort();
  });

  let attempts = 0;
  client.on('authentication', (ctx: AuthContext) => {
    // Key probing (one connection trying key after key) is cut short.
    if (++attempts > MAX_AUTH_ATTEMPTS) {
      noisy('auth_refused', { address, reason: `more than ${MAX_AUTH_ATTEMPTS} attempts` }, 'warn');
      ctx.reject();
      client.end();
      return;
    }
    if (ctx.method !== 'publickey') {
      if (ctx.method !== 'none') noisy('auth_refused', { address, user: ctx.username, method: ctx.method, reason: 'only publickey' }, 'warn');
      return ctx.reject(['publickey']);
    }
    void checkKey(ctx, opts, address, noisy, (key, isMember) => {
      // Into the member or guest pool before accept(): a full pool refuses the authentication,
      // and dropPeer() finds the connection from here on, even before 'ready'.
      const full = admission.promote(slot, isMember ? 'member' : 'guest', key.nodeId);
      if (full) return false;
      peer = key;
      member = isMember;
      return true;
    });
  });
  client.on('ready', () => {
    if (!peer || slot.dropped) return client.end();
    logAs()(member ? 'authenticated' : 'guest_authenticated', { address, peer: peer.nodeId, fingerprint: peer.fingerprint });
    const who: PeerInfo = { nodeId: peer.nodeId, fingerprint: peer.fingerprint, address, publicKey: peer.line, member, closed: gone.signal };
    client.on('session', (accept, reject) => {
      if (!admission.openChannel(slot)) return reject();
      const session = accept();
      let open = true;
      const closed = () => {
        if (open) admission.closeChannel(slot);
        open = false;
      };
      session.once('close', closed);
      handleSession(session, who, opts, rpc, logAs(), admission, slot, closed);
    });
  });
  // Forwarding of any kind: listening for them is what lets us log the refusal.
  client.on('tcpip', (_a, reject, i) => { logAs()('refused', { address, what: 'direct-tcpip', dest: `${i.destIP}:${i.destPort}` }, 'warn'); reject(); });
  client.on('openssh.streamlocal', (_a, reject) => { logAs()('refused', { address, what: 'streamlocal' }, 'warn'); reject(); });
  client.on('request', (_a, reject, name) => { logAs()('refused', { address, what: name }, 'warn'); reject?.(); });
}

async function checkKey(
  ctx: PublicKeyAuthContext,
  opts: SshServerOptions,
  address: string,
  log: Log,
  onVerified: (key: PeerKey, member: boolean) => boolean,
): Promise<void> {
  try {
    if (ctx.key.algo !== KEY_TYPE) {
      log('auth_refused', { address, user: ctx.username, reason: `key type ${ctx.key.algo} (only ${KEY_TYPE})` }, 'warn');
      ctx.reject(['publickey']);
      return;
    }
    const key = peerKeyOf(ctx.key.data);
    const member = await opts.isMember(key);
    const guest = !member && (opts.guestMethods?.length ?? 0) > 0;
    if (!member && !guest) {
      log('auth_refused', { address, user: ctx.username, fingerprint: key.fingerprint, nodeId: key.nodeId, reason: 'not a member' }, 'warn');
      ctx.reject(['publickey']);
      return;
    }
    if (ctx.signature) {
      const parsed = utils.parseKey(ctx.key.data);
      if (parsed instanceof Error || !ctx.blob || parsed.verify(ctx.blob, ctx.signature, ctx.hashAlgo) !== true) {
        log('auth_refused', { address, fingerprint: key.fingerprint, reason: 'bad signature' }, 'warn');
        ctx.reject(['publickey']);
        return;
      }
      // Record the peer before accept(): ssh2 may emit 'ready' synchronously from it.
      if (!onVerified(key, member)) {
        ctx.reject(['publickey']);
        return;
      }
    }
    ctx.accept();
  } catch (err) {
    log('auth_refused', { address, reason: `error: ${(err as Error).message}` }, 'warn');
    ctx.reject(['publickey']);
  }
}

function handleSession(
  session: Session, peer: PeerInfo, opts: SshServerOptions, rpc: RpcDispatcher, log: Log,
  admission: Admission, slot: Slot, closed: () => void,
): void {
  let gitProtocol: string | undefined;
  const refuse = (what: string) => (_a: unknown, reject?: () => void) => {
    log('refused', { peer: peer.nodeId, address: peer.address, what }, 'warn');
    reject?.();
  };
  session.on('pty', refuse('pty'));
  session.on('shell', refuse('shell'));
  session.on('x11', refuse('x11'));
  session.on('auth-agent', refuse('agent forwarding'));
  session.on('signal', refuse('signal'));
  session.on('window-change', refuse('window-change'));
  session.on('sftp', refuse('sftp'));
  session.on('subsystem', (_a, reject, info) => refuse(`subsystem ${info.name}`)(_a, reject));
  session.on('env', (accept, reject, info) => {
    // GIT_PROTOCOL alone is taken (as git-daemon does): it lets git speak protocol v2, nothing else.
    if (info.key === 'GIT_PROTOCOL' && /^version=[0-2](:version=[0-2])*$/.test(info.val)) {
      gitProtocol = info.val;
      accept?.();
      return;
    }
    log('refused', { peer: peer.nodeId, address: peer.address, what: `env ${String(info.key).slice(0, 64)}` }, 'warn');
    reject?.();
  });
  session.on('exec', (accept, _reject, info) => {
    const channel: ServerChannel | undefined = accept();
    // ssh2 returns nothing for a second exec on one session (or one after close): ignore it.
    if (!channel) return log('refused', { peer: peer.nodeId, address: peer.address, what: 'second exec on a session' }, 'warn');
    const abort = new AbortController();
    const onDrop = () => abort.abort();
    slot.abort.signal.addEventListener('abort', onDrop, { once: true });
    channel.on('close', () => {
      closed();
      slot.abort.signal.removeEventListener('abort', onDrop);
      abort.abort();
    });
    channel.on('error', (err: Error) => log('channel_error', { peer: peer.nodeId, error: err.message }, 'warn'));
    capUnread(channel, () => {
      admission.refused('limit_refused', { reason: 'window_ignored', address: peer.address, nodeId: peer.nodeId, limit: MAX_UNREAD }, 'warn');
      admission.destroy(slot);
    });
    const guest = peer.member === false;
    serveCommand(info.command, { stdin: channel, stdout: channel, stderr: channel.stderr }, {
      repoPath: opts.repoPath,
      rpc,
      peer,
      log,
      onReceivePack: opts.onReceivePack,
      gitProtocol,
      maxRpcInput: guest ? admission.limits.guestMaxInput : opts.maxRpcInput,
      inputBudget: guest ? admission.guestInput : admission.memberInput,
      guestMethods: opts.guestMethods,
      signal: abort.signal,
    })
      .catch((err) => {
        log('command_failed', { peer: peer.nodeId, error: (err as Error).message }, 'warn');
        return 1;
      })
      .then((status) => {
        if (abort.signal.aborted) return;
        channel.exit(status);
        channel.end();
        if (guest) channel.resume(); // whatever a guest still sends is discarded, not buffered
      });
  });
}

/** Calls `over` (and drops the data) when the client sends past what its window allowed. */
function capUnread(channel: ServerChannel, over: () => void): void {
  const push = channel.push.bind(channel);
  let tripped = false;
  channel.push = (chunk: unknown, encoding?: BufferEncoding): boolean => {
    if (tripped) return false;
    if (chunk && channel.readableLength + (chunk as Buffer).length > MAX_UNREAD) {
      tripped = true;
      over();
      return false;
    }
    return push(chunk, encoding);
  };
}

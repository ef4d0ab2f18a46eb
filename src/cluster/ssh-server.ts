// The node's SSH server: public-key auth for members only, and nothing but the forced commands
// (git-upload-pack/receive-pack of the metadata repository, delugefs-rpc). Every refusal is logged.
import net from 'node:net';
import ssh2 from 'ssh2';
import type { Connection, PublicKeyAuthContext, AuthContext, ClientInfo, Session, ServerChannel } from 'ssh2';
import { Identity, PeerKey, peerKeyOf, KEY_TYPE } from './identity.js';
import { RpcDispatcher, RpcRegistry, PeerInfo } from './rpc.js';
import { serveCommand } from './serve-command.js';
import { Log, jsonLog } from './log.js';

const { Server, utils } = ssh2;

export const DEFAULT_SSH_PORT = 7422;
const PORT_TRIES = 100;
const AUTH_TIMEOUT_MS = 20_000;
const MAX_AUTH_ATTEMPTS = 12;

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
  maxRpcInput?: number;
  maxConnections?: number;
}

export class SshServer {
  private constructor(
    private readonly server: InstanceType<typeof Server>,
    readonly port: number,
    readonly host: string,
    readonly rpc: RpcDispatcher,
    private readonly connections: Map<Connection, string | undefined>,
  ) {}

  /** Ends every open connection of a node (after its membership was revoked). */
  dropPeer(nodeId: string): number {
    let n = 0;
    for (const [c, id] of this.connections) if (id === nodeId) { c.end(); n++; }
    return n;
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
    const connections = new Map<Connection, string | undefined>();
    const server = new Server({ hostKeys: [opts.identity.privateKeyOpenSSH], ident: 'DelugeFS' }, (client, info) =>
      handleClient(client, info, opts, rpc, log, connections),
    );
    server.maxConnections = opts.maxConnections ?? 256;
    server.on('error', (err: Error) => log('server_error', { error: err.message }));
    const port = await listenFirstFree(server, host, opts.port ?? DEFAULT_SSH_PORT);
    log('listening', { host, port, nodeId: opts.identity.nodeId, fingerprint: opts.identity.fingerprint });
    return new SshServer(server, port, host, rpc, connections);
  }

  /** Stops listening and drops every open connection. */
  close(): Promise<void> {
    return new Promise((resolve) => {
      this.server.close(() => resolve());
      for (const c of this.connections.keys()) c.end();
    });
  }
}

async function listenFirstFree(server: InstanceType<typeof Server>, host: string, first: number): Promise<number> {
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
  connections: Map<Connection, string | undefined>,
): void {
  // Without this every exchange waits on Nagle + delayed ACK (~40 ms per round trip).
  (client as unknown as { setNoDelay(v: boolean): void }).setNoDelay(true);
  connections.set(client, undefined);
  const address = `${info.ip}:${info.port}`;
  let peer: PeerKey | undefined;
  let member = false;
  const authTimer = setTimeout(() => {
    log('auth_timeout', { address });
    client.end();
  }, AUTH_TIMEOUT_MS);
  client.on('error', (err: Error) => log('connection_error', { address, peer: peer?.nodeId, error: err.message }));
  client.on('close', () => {
    clearTimeout(authTimer);
    connections.delete(client);
  });

  let attempts = 0;
  client.on('authentication', (ctx: AuthContext) => {
    // Key probing (one connection trying key after key) is cut short.
    if (++attempts > MAX_AUTH_ATTEMPTS) {
      log('auth_refused', { address, reason: `more than ${MAX_AUTH_ATTEMPTS} attempts` });
      ctx.reject();
      client.end();
      return;
    }
    if (ctx.method !== 'publickey') {
      if (ctx.method !== 'none') log('auth_refused', { address, user: ctx.username, method: ctx.method, reason: 'only publickey' });
      return ctx.reject(['publickey']);
    }
    void checkKey(ctx, opts, address, log, (key, isMember) => { peer = key; member = isMember; });
  });
  client.on('ready', () => {
    clearTimeout(authTimer);
    if (!peer) return client.end();
    log(member ? 'authenticated' : 'guest_authenticated', { address, peer: peer.nodeId, fingerprint: peer.fingerprint });
    connections.set(client, peer.nodeId);
    const who: PeerInfo = { nodeId: peer.nodeId, fingerprint: peer.fingerprint, address, publicKey: peer.line, member };
    client.on('session', (accept) => handleSession(accept(), who, opts, rpc, log));
  });
  // Forwarding of any kind: listening for them is what lets us log the refusal.
  client.on('tcpip', (_a, reject, i) => { log('refused', { address, what: 'direct-tcpip', dest: `${i.destIP}:${i.destPort}` }); reject(); });
  client.on('openssh.streamlocal', (_a, reject) => { log('refused', { address, what: 'streamlocal' }); reject(); });
  client.on('request', (_a, reject, name) => { log('refused', { address, what: name }); reject?.(); });
}

async function checkKey(
  ctx: PublicKeyAuthContext,
  opts: SshServerOptions,
  address: string,
  log: Log,
  onVerified: (key: PeerKey, member: boolean) => void,
): Promise<void> {
  try {
    if (ctx.key.algo !== KEY_TYPE) {
      log('auth_refused', { address, user: ctx.username, reason: `key type ${ctx.key.algo} (only ${KEY_TYPE})` });
      ctx.reject(['publickey']);
      return;
    }
    const key = peerKeyOf(ctx.key.data);
    const member = await opts.isMember(key);
    const guest = !member && (opts.guestMethods?.length ?? 0) > 0;
    if (!member && !guest) {
      log('auth_refused', { address, user: ctx.username, fingerprint: key.fingerprint, nodeId: key.nodeId, reason: 'not a member' });
      ctx.reject(['publickey']);
      return;
    }
    if (ctx.signature) {
      const parsed = utils.parseKey(ctx.key.data);
      if (parsed instanceof Error || !ctx.blob || parsed.verify(ctx.blob, ctx.signature, ctx.hashAlgo) !== true) {
        log('auth_refused', { address, fingerprint: key.fingerprint, reason: 'bad signature' });
        ctx.reject(['publickey']);
        return;
      }
    }
    // Record the peer before accept(): ssh2 may emit 'ready' synchronously from it.
    if (ctx.signature) onVerified(key, member);
    ctx.accept();
  } catch (err) {
    log('auth_refused', { address, reason: `error: ${(err as Error).message}` });
    ctx.reject(['publickey']);
  }
}

function handleSession(session: Session, peer: PeerInfo, opts: SshServerOptions, rpc: RpcDispatcher, log: Log): void {
  let gitProtocol: string | undefined;
  const refuse = (what: string) => (_a: unknown, reject?: () => void) => {
    log('refused', { peer: peer.nodeId, address: peer.address, what });
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
    log('refused', { peer: peer.nodeId, address: peer.address, what: `env ${String(info.key).slice(0, 64)}` });
    reject?.();
  });
  session.on('exec', (accept, _reject, info) => {
    const channel: ServerChannel | undefined = accept();
    // ssh2 returns nothing for a second exec on one session (or one after close): ignore it.
    if (!channel) return log('refused', { peer: peer.nodeId, address: peer.address, what: 'second exec on a session' });
    const abort = new AbortController();
    channel.on('close', () => abort.abort());
    channel.on('error', (err: Error) => log('channel_error', { peer: peer.nodeId, error: err.message }));
    serveCommand(info.command, { stdin: channel, stdout: channel, stderr: channel.stderr }, {
      repoPath: opts.repoPath,
      rpc,
      peer,
      log,
      onReceivePack: opts.onReceivePack,
      gitProtocol,
      maxRpcInput: opts.maxRpcInput,
      guestMethods: opts.guestMethods,
      signal: abort.signal,
    })
      .catch((err) => {
        log('command_failed', { peer: peer.nodeId, error: (err as Error).message });
        return 1;
      })
      .then((status) => {
        if (abort.signal.aborted) return;
        channel.exit(status);
        channel.end();
      });
  });
}

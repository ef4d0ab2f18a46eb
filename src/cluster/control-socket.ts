// A node's local control socket (ROOT/control.sock, mode 0600): the same RPC methods as over SSH,
// for processes on this machine. Reaching it is the proof of being local and privileged, which is
// what lets `delugefs shell` (under a foreign sshd) forward RPC to the running node, and a second
// disk on the same machine join without a token. Newline-delimited JSON, one request per line:
//   {"id":1,"method":"status","params":{}}  ->  {"id":1,"ok":true,"result":...}
import net from 'node:net';
import { chmod, unlink } from 'node:fs/promises';
import { RpcDispatcher, RpcReply, PeerInfo, RpcRegistry, RpcError } from './rpc.js';
import { isNodeId } from './identity.js';
import { RPC_METHOD_RE } from './command.js';
import { RpcCallError } from './rpc-client.js';
import { Log, jsonLog } from './log.js';

const MAX_LINE = 1 << 20;
/** Who local callers are, for handlers that care (e.g. a local join is trusted). */
export const LOCAL_PEER: PeerInfo = { nodeId: 'local', address: 'unix', member: true };

/** Refuses a method to anyone but a member in our records: not the control socket, not a guest. */
export function memberOnly(peer: PeerInfo, membership: { get(nodeId: string): unknown }, method: string): void {
  if (peer === LOCAL_PEER || !isNodeId(peer.nodeId) || !membership.get(peer.nodeId)) throw new RpcError('forbidden', `${method} is for members`);
}

/** Refuses a method to anyone but the local control socket (whoever reaches it runs this machine's node). */
export function localOnly(peer: PeerInfo, method: string): void {
  if (peer !== LOCAL_PEER) throw new RpcError('forbidden', `${method} is only for the local control socket`);
}

export class ControlServer {
  private constructor(private readonly server: net.Server, readonly path: string) {}

  static async start(path: string, rpc: RpcDispatcher, log: Log = jsonLog('control')): Promise<ControlServer> {
    // A socket file left by a crashed process would make listen fail with EADDRINUSE. Only
    // remove it when nobody answers on it: a live node must not lose its socket to a second one.
    if (await answers(path)) throw new Error(`control socket ${path} is in use by a running node`);
    await unlink(path).catch(() => {});
    const server = net.createServer((sock) => serve(sock, rpc, log));
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      listenPrivate(server, path, () => resolve());
    });
    await chmod(path, 0o600); // 0700 from the umask; the x bit means nothing on a socket
    log('control_listening', { path });
    return new ControlServer(server, path);
  }

  close(): Promise<void> {
    return new Promise((resolve) => this.server.close(() => resolve()));
  }
}

/**
 * Binds under a 077 umask, so the socket never exists with a looser mode (a chmod after listen
 * leaves a window). bind(2) happens inside listen() itself for a path, on this thread, so the
 * umask is back before any other JS runs. Another thread creating a file meanwhile (the libuv
 * pool) gets 0700/0600 at worst: tighter, never looser, and what the CLI's umask gives anyway.
 */
export function listenPrivate(server: net.Server, path: string, onListening: () => void): void {
  const old = process.umask(0o077);
  try {
    server.listen(path, onListening);
  } finally {
    process.umask(old);
  }
}

function answers(path: string): Promise<boolean> {
  return new Promise((resolve) => {
    const s = net.connect(path, () => { s.destroy(); resolve(true); });
    s.on('error', () => resolve(false));
  });
}

function serve(sock: net.Socket, rpc: RpcDispatcher, log: Log): void {
  let buf = '';
  const abort = new AbortController();
  sock.on('close', () => abort.abort());
  sock.on('error', () => {});
  sock.setEncoding('utf8');
  sock.on('data', (chunk: string) => {
    buf += chunk;
    if (buf.length > MAX_LINE && !buf.includes('\n')) {
      log('control_refused', { reason: 'request line too long' }, 'warn');
      sock.end(JSON.stringify({ id: null, ok: false, error: { code: 'too_large', message: 'request line too long' } }) + '\n');
      sock.destroy();
      return;
    }
    let nl: number;
    while ((nl = buf.indexOf('\n')) >= 0) {
      const line = buf.slice(0, nl);
      buf = buf.slice(nl + 1);
      if (line.trim()) void handle(line, sock, rpc, log, abort.signal);
    }
  });
}

async function handle(line: string, sock: net.Socket, rpc: RpcDispatcher, log: Log, signal: AbortSignal): Promise<void> {
  let id: unknown = null;
  let reply: RpcReply;
  try {
    const req = JSON.parse(line) as { id?: unknown; method?: unknown; params?: unknown };
    id = req.id ?? null;
    if (typeof req.method !== 'string' || !RPC_METHOD_RE.test(req.method)) {
      reply = { ok: false, error: { code: 'bad_method', message: 'request needs a valid "method"' } };
    } else {
      reply = await rpc.dispatch(req.method, req.params ?? null, LOCAL_PEER, signal);
      log('control_rpc', { method: req.method, ok: reply.ok });
    }
  } catch {
    log('control_refused', { reason: 'malformed JSON' }, 'warn');
    reply = { ok: false, error: { code: 'bad_json', message: 'request is not valid JSON' } };
  }
  if (!sock.destroyed) sock.write(JSON.stringify({ id, ...reply }) + '\n');
}

/** Calls one method on a local node's control socket. */
export function controlCall<T = unknown>(path: string, method: string, params: unknown = null, timeoutMs = 10_000): Promise<T> {
  return new Promise((resolve, reject) => {
    const sock = net.connect(path);
    let buf = '';
    const t = setTimeout(() => { sock.destroy(); reject(new RpcCallError('timeout', `control call ${method} timed out`)); }, timeoutMs);
    sock.setEncoding('utf8');
    sock.on('error', (err: NodeJS.ErrnoException) => {
      clearTimeout(t);
      const code = err.code === 'ENOENT' || err.code === 'ECONNREFUSED' ? 'not_running' : 'unreachable';
      reject(new RpcCallError(code, code === 'not_running' ? `no node is running on ${path}` : err.message));
    });
    sock.on('connect', () => sock.write(JSON.stringify({ id: 1, method, params }) + '\n'));
    sock.on('data', (c: string) => {
      buf += c;
      const nl = buf.indexOf('\n');
      if (nl < 0) return;
      clearTimeout(t);
      sock.end();
      try {
        const r = JSON.parse(buf.slice(0, nl)) as RpcReply;
        if (r.ok) resolve(r.result as T);
        else reject(new RpcCallError(r.error.code, r.error.message));
      } catch {
        reject(new RpcCallError('bad_reply', 'malformed control reply'));
      }
    });
  });
}

/**
 * An RpcDispatcher that forwards to a running node: what `delugefs shell` hands to
 * runForcedCommand, so RPC behind a foreign sshd reaches the node's handlers. The caller's node
 * id travels along as `_peer` so handlers can tell who asked.
 */
export function controlDispatcher(path: string): RpcDispatcher {
  return {
    async dispatch(method, params, peer): Promise<RpcReply> {
      try {
        const result = await controlCall(path, 'forward', { method, params, peer: peer.nodeId });
        return { ok: true, result };
      } catch (err) {
        const e = err as RpcCallError;
        return { ok: false, error: { code: e.code ?? 'unreachable', message: e.message } };
      }
    },
  };
}

/**
 * Registers `forward` (used by controlDispatcher): runs METHOD as if called over SSH by the given
 * member. Only callers on the control socket may use it; over SSH it would let a member speak
 * for another.
 */
export function registerForward(registry: RpcRegistry): void {
  registry.register('forward', async (params, peer, signal) => {
    localOnly(peer, 'forward');
    const p = params as { method?: unknown; params?: unknown; peer?: unknown } | null;
    if (!p || typeof p.method !== 'string' || p.method === 'forward' || typeof p.peer !== 'string' || !isNodeId(p.peer)) {
      throw new RpcError('malformed', 'forward needs {method, params, peer}');
    }
    const r = await registry.dispatch(p.method, p.params ?? null, { nodeId: p.peer, address: 'sshd', member: true }, signal);
    if (!r.ok) throw new RpcError(r.error.code, r.error.message);
    return r.result;
  });
}

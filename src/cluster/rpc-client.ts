// A persistent SSH connection to one peer for RPC: each call is one exec channel on it, so a call
// costs one round trip or two instead of a handshake. The host key must match the fingerprint
// from the member records; anything else is refused.
import net from 'node:net';
import ssh2 from 'ssh2';
import type { ClientChannel } from 'ssh2';
import { Identity, fingerprintOf } from './identity.js';
import { RPC_COMMAND, RPC_METHOD_RE } from './command.js';
import { decodeReply } from './rpc.js';
import { Log, jsonLog } from './log.js';

const { Client } = ssh2;

export interface RpcClientOptions {
  identity: Identity;
  host: string;
  port: number;
  /** Expected host key fingerprint (`SHA256:...`) of the peer. */
  hostFingerprint: string;
  timeoutMs?: number;
  connectTimeoutMs?: number;
  maxReply?: number;
  log?: Log;
}

export class RpcCallError extends Error {
  constructor(readonly code: string, message: string) {
    super(message);
  }
}

type Conn = InstanceType<typeof Client>;

export class RpcClient {
  private conn?: Promise<Conn>;
  private closed = false;
  private readonly log: Log;

  constructor(readonly opts: RpcClientOptions) {
    this.log = opts.log ?? jsonLog('rpc-client');
  }

  /** Calls METHOD with JSON params; resolves with the result, rejects with RpcCallError. */
  async call<T = unknown>(method: string, params: unknown = null, opts: { timeoutMs?: number } = {}): Promise<T> {
    if (!RPC_METHOD_RE.test(method)) throw new RpcCallError('bad_method', `bad rpc method name: ${method}`);
    const body = JSON.stringify(params ?? null);
    const timeoutMs = opts.timeoutMs ?? this.opts.timeoutMs ?? 10_000;
    const deadline = Date.now() + timeoutMs;
    // A reused connection may have died quietly; the exec then fails before the method ran, so
    // one retry on a fresh connection is safe.
    for (let attempt = 0; ; attempt++) {
      const fresh = !this.conn;
      const conn = await this.connect(deadline);
      let ch: ClientChannel;
      try {
        ch = await this.exec(conn, `${RPC_COMMAND} ${method}`, deadline);
      } catch (err) {
        this.drop(conn);
        if (attempt === 0 && !fresh && !(err instanceof RpcCallError && err.code === 'timeout')) continue;
        throw err instanceof RpcCallError ? err : new RpcCallError('unreachable', (err as Error).message);
      }
      return this.exchange<T>(ch, body, deadline, method);
    }
  }

  close(): void {
    this.closed = true;
    const c = this.conn;
    this.conn = undefined;
    void c?.then((conn) => conn.end(), () => {});
  }

  private connect(deadline: number): Promise<Conn> {
    if (this.closed) return Promise.reject(new RpcCallError('closed', 'rpc client closed'));
    if (this.conn) return this.conn;
    const { host, port, identity, hostFingerprint } = this.opts;
    const p = new Promise<Conn>((resolve, reject) => {
      const conn = new Client();
      const sock = net.connect({ host, port });
      sock.setNoDelay(true); // see DESIGN.md: ~40 ms per round trip otherwise
      let seenKey = '';
      conn.on('ready', () => resolve(conn));
      conn.on('error', (err: Error) => {
        this.log('connection_error', { host, port, error: err.message, hostKey: seenKey || undefined }, 'warn');
        this.drop(conn);
        const code = seenKey && seenKey !== hostFingerprint ? 'host_key_mismatch' : 'unreachable';
        reject(new RpcCallError(code, code === 'host_key_mismatch' ? `host key ${seenKey} of ${host}:${port} is not ${hostFingerprint}` : err.message));
      });
      conn.on('close', () => {
        this.drop(conn);
        reject(new RpcCallError('unreachable', `connection to ${host}:${port} closed`)); // no-op once ready
      });
      conn.connect({
        sock,
        username: 'delugefs',
        privateKey: identity.privateKeyOpenSSH,
        hostVerifier: (key: Buffer) => {
          seenKey = fingerprintOf(key);
          return seenKey === hostFingerprint;
        },
        readyTimeout: Math.max(1, Math.min(this.opts.connectTimeoutMs ?? 10_000, deadline - Date.now())),
        keepaliveInterval: 5_000,
        keepaliveCountMax: 3,
        algorithms: { serverHostKey: ['ssh-ed25519'] },
      });
    });
    this.conn = p;
    p.catch(() => {});
    return p;
  }

  private drop(conn: Conn): void {
    const c = this.conn;
    if (!c) return;
    void c.then((cur) => {
      if (cur === conn && this.conn === c) this.conn = undefined;
    }, () => {
      if (this.conn === c) this.conn = undefined;
    });
    conn.end();
  }

  private exec(conn: Conn, command: string, deadline: number): Promise<ClientChannel> {
    return new Promise((resolve, reject) => {
      const t = setTimeout(() => reject(new RpcCallError('timeout', 'rpc timed out opening a channel')), Math.max(0, deadline - Date.now()));
      conn.exec(command, (err, ch) => {
        clearTimeout(t);
        if (err) reject(err);
        else resolve(ch);
      });
    });
  }

  private exchange<T>(ch: ClientChannel, body: string, deadline: number, method: string): Promise<T> {
    const max = this.opts.maxReply ?? 16 << 20;
    return new Promise<T>((resolve, reject) => {
      const out: Buffer[] = [];
      let size = 0;
      let err = '';
      let settled = false;
      const finish = (e: RpcCallError | null, v?: T) => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        if (e) {
          ch.close();
          reject(e);
        } else resolve(v as T);
      };
      const timer = setTimeout(() => finish(new RpcCallError('timeout', `rpc ${method} timed out`)), Math.max(0, deadline - Date.now()));
      ch.on('data', (c: Buffer) => {
        size += c.length;
        if (size > max) return finish(new RpcCallError('too_large', `rpc ${method} reply larger than ${max} bytes`));
        out.push(c);
      });
      ch.stderr.on('data', (c: Buffer) => { if (err.length < 4096) err += c.toString('utf8'); });
      ch.on('error', (e: Error) => finish(new RpcCallError('unreachable', e.message)));
      ch.on('close', () => {
        const text = Buffer.concat(out).toString('utf8').trim();
        if (!text) return finish(new RpcCallError('refused', err.trim() || `rpc ${method}: empty reply`));
        const r = decodeReply(text);
        if (r.ok) finish(null, r.result as T);
        else finish(new RpcCallError(r.error.code, r.error.message));
      });
      ch.end(body);
    });
  }
}

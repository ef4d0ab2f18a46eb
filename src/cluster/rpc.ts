// RPC over SSH: `delugefs-rpc METHOD`, the params as one JSON document on stdin (ended by EOF),
// one JSON reply on stdout. Shared by the server, `delugefs shell` and the client.
import { RPC_METHOD_RE } from './command.js';

/** Who called: the authenticated peer (under a foreign sshd, as named by authorized_keys). */
export interface PeerInfo {
  nodeId: string;
  fingerprint?: string;
  address?: string;
  /** The client's public key line, when the transport knows it (the embedded server always does). */
  publicKey?: string;
  /** False for a non-member admitted only to the guest methods (joining with a token). */
  member?: boolean;
  /** Aborted when the caller's connection closes (what a lock held "for the connection" ends with). */
  closed?: AbortSignal;
}

/** `signal` aborts when the caller went away (channel closed): long handlers may stop early. */
export type RpcHandler = (params: unknown, peer: PeerInfo, signal: AbortSignal) => unknown | Promise<unknown>;

export type RpcReply = { ok: true; result: unknown } | { ok: false; error: { code: string; message: string } };

export class RpcError extends Error {
  constructor(readonly code: string, message: string) {
    super(message);
  }
}

/** Anything that can run a method: the local registry, or a forwarder to a running node. */
export interface RpcDispatcher {
  dispatch(method: string, params: unknown, peer: PeerInfo, signal?: AbortSignal): Promise<RpcReply>;
}

export const DEFAULT_MAX_RPC_INPUT = 1 << 20;

export class RpcRegistry implements RpcDispatcher {
  private handlers = new Map<string, RpcHandler>();

  register(method: string, handler: RpcHandler): this {
    if (!RPC_METHOD_RE.test(method)) throw new Error(`bad rpc method name: ${method}`);
    this.handlers.set(method, handler);
    return this;
  }

  unregister(method: string): void {
    this.handlers.delete(method);
  }

  methods(): string[] {
    return [...this.handlers.keys()].sort();
  }

  async dispatch(method: string, params: unknown, peer: PeerInfo, signal: AbortSignal = new AbortController().signal): Promise<RpcReply> {
    const h = this.handlers.get(method);
    if (!h) return { ok: false, error: { code: 'unknown_method', message: `unknown method ${method}` } };
    try {
      const result = await h(params, peer, signal);
      return { ok: true, result: result === undefined ? null : result };
    } catch (err) {
      const code = err instanceof RpcError ? err.code : 'handler_error';
      return { ok: false, error: { code, message: (err as Error)?.message ?? String(err) } };
    }
  }
}

/** Parses a reply line from a server; malformed replies become errors rather than crashes. */
export function decodeReply(text: string): RpcReply {
  let v: unknown;
  try {
    v = JSON.parse(text);
  } catch {
    return { ok: false, error: { code: 'bad_reply', message: `malformed rpc reply: ${text.slice(0, 100)}` } };
  }
  const r = v as RpcReply;
  if (r && typeof r === 'object' && r.ok === true && 'result' in r) return r;
  if (r && typeof r === 'object' && r.ok === false && r.error && typeof r.error.code === 'string') return r;
  return { ok: false, error: { code: 'bad_reply', message: 'rpc reply has the wrong shape' } };
}

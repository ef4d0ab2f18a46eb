// One typed table of the node's RPC methods, used by the server (which checks what callers send)
// and by clients (which check what peers answer): both sides are untrusted, so every method
// has a checker for its params and one for its result. Features define their methods in their
// own folder (e.g. replication/methods.ts) and register handlers with serve().
import { RpcError, RpcRegistry, PeerInfo } from '../cluster/rpc.js';
import { RpcCallError, RpcClient } from '../cluster/rpc-client.js';
import { controlCall } from '../cluster/control-socket.js';

export interface Method<P, R> {
  readonly name: string;
  /** Checks a caller's params: returns them typed, or throws (the reply says 'malformed'). */
  params(v: unknown): P;
  /** Checks a peer's reply: returns it typed, or throws (the call fails with 'bad_reply'). */
  result(v: unknown): R;
}

export function method<P, R>(name: string, params: (v: unknown) => P, result: (v: unknown) => R): Method<P, R> {
  return { name, params, result };
}

/** Registers a handler that only ever sees checked params. */
export function serve<P, R>(rpc: RpcRegistry, m: Method<P, R>, h: (p: P, peer: PeerInfo, signal: AbortSignal) => R | Promise<R>): void {
  rpc.register(m.name, (raw, peer, signal) => {
    let p: P;
    try {
      p = m.params(raw);
    } catch (e) {
      throw e instanceof RpcError ? e : new RpcError('malformed', `${m.name}: ${(e as Error).message}`);
    }
    return h(p, peer, signal);
  });
}

/** Calls a peer and checks its answer against the method's result checker. */
export async function call<P, R>(client: RpcClient, m: Method<P, R>, params: P, opts: { timeoutMs?: number } = {}): Promise<R> {
  const raw = await client.call<unknown>(m.name, params, opts);
  try {
    return m.result(raw);
  } catch (e) {
    throw new RpcCallError('bad_reply', `${m.name}: ${(e as Error).message}`);
  }
}

/** Calls the node's control socket (CLI) and checks its answer the same way. */
export async function callLocal<P, R>(socket: string, m: Method<P, R>, params: P, timeoutMs = 30_000): Promise<R> {
  const raw = await controlCall<unknown>(socket, m.name, params, timeoutMs);
  try {
    return m.result(raw);
  } catch (e) {
    throw new RpcCallError('bad_reply', `${m.name}: ${(e as Error).message}`);
  }
}

// ---- checkers for params and replies ---------------------------------------------------------

export class Bad extends Error {}

export function obj(v: unknown, what = 'params'): Record<string, unknown> {
  if (!v || typeof v !== 'object' || Array.isArray(v)) throw new Bad(`${what} must be an object`);
  return v as Record<string, unknown>;
}

export function int(v: unknown, what: string, min: number, max: number): number {
  if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < min || v > max) throw new Bad(`${what} must be an integer in [${min}, ${max}]`);
  return v;
}

export function bool(v: unknown, what: string): boolean {
  if (typeof v !== 'boolean') throw new Bad(`${what} must be true or false`);
  return v;
}

export function str(v: unknown, what: string, re: RegExp, max = 256): string {
  if (typeof v !== 'string' || v.length > max || !re.test(v)) throw new Bad(`${what} is not valid`);
  return v;
}

export function list<T>(v: unknown, what: string, max: number, each: (x: unknown, what: string) => T): T[] {
  if (!Array.isArray(v)) throw new Bad(`${what} must be a list`);
  if (v.length > max) throw new Bad(`${what} has ${v.length} items, at most ${max}`);
  return v.map((x, i) => each(x, `${what}[${i}]`));
}

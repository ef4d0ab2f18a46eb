// How the dashboard reaches the node: through the same typed methods the CLI calls (status,
// peers, conflicts, whereis, ...), so the page and `delugefs status --json` are one object.
// In the daemon they are dispatched in process as the local control socket would; a test (or
// a dashboard served by another process) calls the control socket itself.
import { method, obj, int, str, type Method } from '../daemon/methods.js';
import { LOCAL_PEER } from '../cluster/control-socket.js';
import type { RpcDispatcher } from '../cluster/rpc.js';

export type Caller = <P, R>(m: Method<P, R>, params: P) => Promise<R>;

/** Calls the node's own handlers as its control socket does, replies checked the same way. */
export function inProcessCaller(rpc: RpcDispatcher): Caller {
  return async (m, params) => {
    const r = await rpc.dispatch(m.name, params, LOCAL_PEER);
    if (!r.ok) throw new Error(`${m.name}: ${r.error.message}`);
    return m.result(r.result);
  };
}

/** `delugefs dashboard ROOT` asks the running node where its web port listens. */
export const WEB_INFO = method('web_info', () => null, (v): { port: number; bind: string } => {
  const o = obj(v, 'reply');
  return { port: int(o.port, 'port', 1, 65535), bind: str(o.bind, 'bind', /^[0-9a-fA-F:.]{2,64}$/) };
});

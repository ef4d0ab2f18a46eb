// lock_content / unlock_content served: a lock is a lease (at most MAX_LOCK_MS) and lasts no
// longer than the connection of the member that took it (git-annex's LOCKCONTENT is held for a
// connection): a node that locked our copies and died, or lost its link, does not keep them
// locked until the lease runs out.
import { RpcError, RpcRegistry } from '../cluster/rpc.js';
import { serve } from '../daemon/methods.js';
import { Holdings, MAX_LOCKS } from './holdings.js';
import { LOCK_CONTENT, UNLOCK_CONTENT } from './methods.js';

/** Leases one member may hold at once: no member takes the node's whole lock table. */
export const LOCKS_PER_MEMBER = 16;

export function serveLocks(rpc: RpcRegistry, holdings: Holdings): void {
  /** Lock tokens by the connection that took them, and by the member. */
  const locksOf = new WeakMap<AbortSignal, Set<string>>();
  const byMember = new Map<string, Set<string>>();
  serve(rpc, LOCK_CONTENT, (p, peer) => {
    const mine = byMember.get(peer.nodeId);
    if (mine) for (const t of mine) if (!holdings.holds(t)) mine.delete(t);
    if (mine && mine.size >= LOCKS_PER_MEMBER) throw new RpcError('busy', `${LOCKS_PER_MEMBER} locks held by ${peer.nodeId} already`);
    const r = holdings.lock(p.ids, p.ms);
    if (r.locked.length) {
      if (!mine) byMember.set(peer.nodeId, new Set([r.token]));
      else mine.add(r.token);
    }
    const c = peer.closed;
    if (!r.locked.length || !c) return r;
    if (c.aborted) {
      holdings.unlock(r.token);
      return r;
    }
    let tokens = locksOf.get(c);
    if (!tokens) {
      const mine = (tokens = new Set());
      locksOf.set(c, tokens);
      c.addEventListener('abort', () => { for (const t of mine) holdings.unlock(t); }, { once: true });
    }
    tokens.add(r.token);
    // Expired leases a caller never unlocked are forgotten: a long connection keeps no list of them.
    if (tokens.size > 2 * MAX_LOCKS) for (const t of tokens) if (!holdings.holds(t)) tokens.delete(t);
    return r;
  });
  serve(rpc, UNLOCK_CONTENT, (p, peer) => {
    // Only the member that took a lock gives it back.
    const mine = byMember.get(peer.nodeId);
    if (!mine?.has(p.token)) return null;
    mine.delete(p.token);
    if (!mine.size) byMember.delete(peer.nodeId);
    holdings.unlock(p.token);
    if (peer.closed) locksOf.get(peer.closed)?.delete(p.token);
    return null;
  });
}

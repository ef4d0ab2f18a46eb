// What this disk holds, for peers and for our own drops: an index of the complete content in the
// store (kept by the store's change hook, so a page of active_torrents never rescans the disk),
// the partial downloads open in the swarm, and the locks peers hold on our copies. A copy is
// dropped only through drop(), which refuses while any lock covers it, and a lock is refused
// while a drop of it runs: a node that locked a copy can count on it until the lock expires.
import { randomBytes } from 'node:crypto';
import type { ContentId } from '../content/metainfo.js';
import type { ContentStore } from '../content/store.js';
import type { Held } from './methods.js';

/** The swarm as holdings see it: partial downloads and their progress. */
export interface PartialView {
  active(): ContentId[];
  stats(id: ContentId): { pieces: number; piecesHave: number; complete: boolean } | null;
  drop(id: ContentId): Promise<void>;
}

/** Most locks held on this node at once (by all peers): a peer cannot grow our memory without bound. */
export const MAX_LOCKS = 256;

export class Holdings {
  private held = new Set<ContentId>();
  private sorted: ContentId[] | null = null;
  private locks = new Map<string, { ids: Set<ContentId>; until: number }>();
  private dropping = new Set<ContentId>();

  constructor(
    private readonly store: ContentStore,
    private readonly swarm: PartialView,
    private readonly now: () => number = Date.now,
    /** Content the namespace references: a copy of anything else (deleted, in the trash) is never locked. */
    private readonly referenced: (id: ContentId) => boolean = () => true,
  ) {}

  /** Reads the store once; from then on the store's change hook keeps the index. */
  async load(): Promise<void> {
    this.store.onChange = (id, held) => {
      if (held ? this.held.has(id) : !this.held.has(id)) return;
      if (held) this.held.add(id);
      else this.held.delete(id);
      // The sorted index follows in place (a splice, not a sort of everything per change).
      const s = this.sorted;
      if (!s) return;
      const at = lowerBound(s.length, (k) => s[k]! < id);
      if (held) s.splice(at, 0, id);
      else if (s[at] === id) s.splice(at, 1);
    };
    for await (const id of this.store.list()) this.held.add(id);
    this.sorted = null;
  }

  close(): void {
    this.store.onChange = null;
  }

  has(id: ContentId): boolean {
    return this.held.has(id);
  }

  get size(): number {
    return this.held.size;
  }

  ids(): IterableIterator<ContentId> {
    return this.held.values();
  }

  /** A page of what we hold, complete and partial, in id order, after `after`. */
  page(after: ContentId | null, limit: number): { items: Held[]; next: ContentId | null } {
    const partial: Held[] = [];
    for (const id of this.swarm.active()) {
      if (this.held.has(id)) continue;
      const st = this.swarm.stats(id);
      if (st && !st.complete) partial.push({ id, complete: false, pieces: st.pieces, have: st.piecesHave });
    }
    // The complete ids stay sorted between changes; the few partial ones are merged in per page.
    partial.sort((a, b) => (a.id < b.id ? -1 : 1));
    const held = (this.sorted ??= [...this.held].sort());
    // Where each list goes on after `after` (which itself may no longer be held).
    const from = (n: number, key: (k: number) => ContentId): number => {
      if (after === null) return 0;
      const k = lowerBound(n, (m) => key(m) < after);
      return k < n && key(k) === after ? k + 1 : k;
    };
    let i = from(held.length, (k) => held[k]!);
    let j = from(partial.length, (k) => partial[k]!.id);
    const items: Held[] = [];
    while (items.length < limit && (i < held.length || j < partial.length)) {
      if (j >= partial.length || (i < held.length && held[i]! < partial[j]!.id)) items.push({ id: held[i++]!, complete: true, pieces: 0, have: 0 });
      else items.push(partial[j++]!);
    }
    return { items, next: i < held.length || j < partial.length ? items[items.length - 1]!.id : null };
  }

  /** Locks the complete copies among `ids` for `ms`; ids being dropped or not held are `missing`. */
  lock(ids: ContentId[], ms: number): { token: string; locked: ContentId[]; missing: ContentId[]; ms: number } {
    this.expire();
    if (this.locks.size >= MAX_LOCKS) throw new Error(`${MAX_LOCKS} locks held already`);
    const locked = ids.filter((id) => this.held.has(id) && !this.dropping.has(id) && this.referenced(id));
    const missing = ids.filter((id) => !locked.includes(id));
    const token = randomBytes(16).toString('hex');
    if (locked.length) this.locks.set(token, { ids: new Set(locked), until: this.now() + ms });
    return { token, locked, missing, ms };
  }

  /** The lock is held (not expired nor unlocked). */
  holds(token: string): boolean {
    this.expire();
    return this.locks.has(token);
  }

  unlock(token: string): void {
    this.locks.delete(token);
  }

  isLocked(id: ContentId): boolean {
    this.expire();
    for (const l of this.locks.values()) if (l.ids.has(id)) return true;
    return false;
  }

  /**
   * Drops our copy if no lock covers it and `safe()` (which locks copies elsewhere) still says
   * yes: no lock can be taken on it meanwhile. True if the copy went.
   */
  async drop(id: ContentId, safe: () => Promise<boolean>, unused: () => boolean = () => true): Promise<boolean> {
    if (this.dropping.has(id) || this.isLocked(id) || !this.held.has(id)) return false;
    this.dropping.add(id);
    try {
      if (!(await safe())) return false;
      await this.swarm.drop(id);
      return await this.store.remove(id, unused);
    } finally {
      this.dropping.delete(id);
    }
  }

  private expire(): void {
    const t = this.now();
    for (const [k, l] of this.locks) if (l.until <= t) this.locks.delete(k);
  }
}

/** The first index in [0, n) where `below` turns false (it must be true, then false). */
function lowerBound(n: number, below: (i: number) => boolean): number {
  let lo = 0, hi = n;
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    if (below(mid)) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

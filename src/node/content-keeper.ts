// Which content a node keeps: pins for content being stored, small content on its way from the
// journal into the store, and garbage collection of content no entry references any more.
// In a cluster, content that lost its last reference waits in a trash for a grace period and
// until the gate says every member has what we have (replication sets it): a concurrent change
// on another member (a chmod racing our delete) merges back a reference to it meanwhile, and
// then it is kept.
// Small content that cannot be stored (a full disk) stays in memory, served from there, and
// holds back every commit (the journal that carries its bytes must not be dropped) until a
// later attempt stores it.
import type { ContentStore } from '../content/store.js';
import type { ContentId } from '../content/metainfo.js';
import type { Logger } from '../util/log.js';

export class ContentKeeper {
  /** Content ids being stored right now: never collected in between. */
  private pins = new Map<ContentId, number>();
  private queue = new Set<ContentId>();
  /** Unreferenced content waiting for the grace period and the gate, with when it became so. */
  private trash = new Map<ContentId, number>();
  /** Set by replication on a member of a cluster; none: content goes as soon as it is unreferenced. */
  gate: {
    graceMs(): number;
    /**
     * Content trashed before this time is clear to go: every member has had every change we
     * have, and we have theirs, since then (urgent: members down are not waited for).
     * -Infinity: nothing is. Asked once per collect, not per trashed id.
     */
    clearBefore(urgent: boolean): number;
    /** A copy a member locked (it counts on it): kept meanwhile. */
    locked(id: ContentId): boolean;
  } | null = null;
  /** Small content whose bytes are in the journal and on their way into the store. */
  private pendingSmall = new Map<ContentId, Buffer>();
  /** Those of them whose last attempt failed, with its error; retried by drain(). */
  private failedSmall = new Map<ContentId, Error>();
  private smallTail: Promise<void> = Promise.resolve();
  /**
   * Small content an application fsync'ed: the journal holds its bytes on the disk, so the
   * store's copy is synced too before a commit drops that journal (drain()).
   */
  private durable = new Set<ContentId>();

  constructor(
    private readonly store: ContentStore,
    private readonly isReferenced: (id: ContentId) => boolean,
    private readonly log: Logger,
    /** Content that is never stored (the empty file). */
    private readonly ignore: ContentId,
  ) {}

  pin(id: ContentId): void {
    this.pins.set(id, (this.pins.get(id) ?? 0) + 1);
  }

  unpin(id: ContentId): void {
    const n = (this.pins.get(id) ?? 1) - 1;
    if (n > 0) this.pins.set(id, n);
    else this.pins.delete(id);
  }

  /** Bytes of small content not yet in the store, if this is such content. */
  small(id: ContentId): Buffer | undefined {
    return this.pendingSmall.get(id);
  }

  /**
   * Writes small content into the store in the background (temp file + rename), one at a time:
   * the I/O threads stay free for the journal writes that close() waits on. Never rejects: a
   * failure keeps the bytes pending (and reported by drain()).
   */
  storeSmall(id: ContentId, data: Buffer): Promise<void> {
    if (this.pendingSmall.has(id)) return this.smallTail;
    this.pendingSmall.set(id, data);
    this.pin(id);
    return this.attempt(id, data);
  }

  private attempt(id: ContentId, data: Buffer): Promise<void> {
    const p = this.smallTail.then(async () => {
      if (!this.pendingSmall.has(id)) return; // stored by an earlier attempt
      try {
        await this.store.putData(id, data);
      } catch (e) {
        // Once per spell of failures, not once per file: a full disk fails them all.
        if (!this.failedSmall.size) this.log.warn('content.store.failed', { id, error: (e as Error).message, why: 'small files are kept in memory and in the journal, and stored once there is room' });
        this.failedSmall.set(id, e as Error);
        return;
      }
      if (this.failedSmall.delete(id) && !this.failedSmall.size) this.log.info('content.store.resumed', {});
      if (this.pendingSmall.delete(id)) this.unpin(id);
    });
    this.smallTail = p;
    return p;
  }

  /**
   * Resolves when every small write started so far is in the store; those that failed are
   * tried again first, and if any still fails this rejects with its error (a commit must then
   * keep the journal that holds the bytes).
   */
  async drain(): Promise<void> {
    for (const id of [...this.failedSmall.keys()]) void this.attempt(id, this.pendingSmall.get(id)!);
    await this.smallTail;
    const failed = [...this.failedSmall.values()];
    if (failed.length) throw Object.assign(new Error(`${failed.length} small files are not in the store yet: ${failed[0]!.message}`), { code: (failed[0] as NodeJS.ErrnoException).code });
    for (const id of [...this.durable]) {
      // Still on its way (stored after this drain began): its journal is not dropped by this commit.
      if (this.pendingSmall.has(id)) continue;
      try {
        await this.store.sync(id);
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e; // gone: deleted since
      }
      this.durable.delete(id);
    }
  }

  /**
   * For an application's fsync: stored content and its name survive a power loss. Small content
   * still on its way is synced once stored, before the commit that drops its journal (drain()).
   */
  async keepDurable(id: ContentId, dataSynced: boolean): Promise<void> {
    if (id === this.ignore) return;
    if (this.pendingSmall.has(id)) {
      this.durable.add(id);
      return;
    }
    await this.store.sync(id, dataSynced).catch((e: NodeJS.ErrnoException) => { if (e.code !== 'ENOENT') throw e; }); // not here: a peer's
  }

  /** Content that never became part of the namespace (a close that failed): removed now, if no one else uses it. */
  async discard(id: ContentId): Promise<void> {
    if (id === this.ignore) return;
    await this.store.remove(id, () => this.unused(id)).catch((e) => this.log.warn('content.remove.failed', { id, error: (e as Error).message }));
  }

  /** Content being stored or written right now: a surplus copy of it is not dropped meanwhile. */
  busy(id: ContentId): boolean {
    return this.pins.has(id) || this.pendingSmall.has(id);
  }

  private unused(id: ContentId): boolean {
    return !this.isReferenced(id) && !this.busy(id);
  }

  /** Remembers content that may have lost its last reference; collect() decides. */
  maybeUnused(id: ContentId): void {
    if (id !== this.ignore) this.queue.add(id);
  }

  /**
   * Run after a commit, so the change that dropped the last reference is durable first.
   * `urgent` (a full disk): the grace period is not waited for, the gate still is.
   */
  async collect(urgent = false): Promise<void> {
    const now = Date.now();
    for (const id of this.queue) if (!this.trash.has(id)) this.trash.set(id, now);
    this.queue.clear();
    if (!this.trash.size) return;
    const grace = this.gate?.graceMs() ?? 0;
    const clearBefore = this.gate && grace > 0 ? this.gate.clearBefore(urgent) : Infinity;
    for (const [id, since] of [...this.trash]) {
      if (this.isReferenced(id)) {
        this.trash.delete(id); // referenced again (a merge brought it back): queued again when it goes
        continue;
      }
      if ((!urgent && now - since < grace) || !this.unused(id)) continue;
      if (since >= clearBefore || (this.gate && grace > 0 && this.gate.locked(id))) continue;
      this.trash.delete(id);
      if (await this.store.remove(id, () => this.unused(id))) this.log.debug('content.removed', { id });
    }
  }

  /** Unreferenced content still kept (grace period, gate). */
  get trashed(): number {
    return this.trash.size;
  }

  /**
   * At start: content no entry references (a crash between commit and removal) is removed, or
   * in a cluster put in the trash (its grace period starts again).
   */
  async sweep(clustered = false): Promise<number> {
    let removed = 0;
    for await (const id of this.store.list()) {
      if (!this.unused(id)) continue;
      if (clustered) this.trash.set(id, Date.now());
      else if (await this.store.remove(id, () => this.unused(id))) removed++;
    }
    return removed;
  }
}

// Which content a node keeps: pins for content being stored, small content on its way from the
// journal into the store, and garbage collection of content no entry references any more.
import { writeFile } from 'node:fs/promises';
import type { ContentStore } from '../content/store.js';
import type { ContentId } from '../content/metainfo.js';
import type { Logger } from '../util/log.js';

export class ContentKeeper {
  /** Content ids being stored right now: never collected in between. */
  private pins = new Map<ContentId, number>();
  private queue = new Set<ContentId>();
  /** Small content whose bytes are in the journal and on their way into the store. */
  private pendingSmall = new Map<ContentId, Buffer>();
  private smallTail: Promise<void> = Promise.resolve();

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
   * the I/O threads stay free for the journal writes that close() waits on.
   */
  storeSmall(id: ContentId, data: Buffer): Promise<void> {
    if (this.pendingSmall.has(id)) return this.smallTail;
    this.pendingSmall.set(id, data);
    this.pin(id);
    const p = this.smallTail.then(async () => {
      try {
        const tmp = this.store.tempPath();
        await writeFile(tmp, data, { mode: 0o600 });
        await this.store.put(tmp, id);
      } catch (e) {
        this.log.error('content.store.failed', { id, error: (e as Error).message });
      } finally {
        this.pendingSmall.delete(id);
        this.unpin(id);
      }
    });
    this.smallTail = p;
    return p;
  }

  /** Resolves when every small write started so far is in the store. */
  drain(): Promise<void> {
    return this.smallTail;
  }

  private unused(id: ContentId): boolean {
    return !this.isReferenced(id) && !this.pins.has(id) && !this.pendingSmall.has(id);
  }

  /** Remembers content that may have lost its last reference; collect() decides. */
  maybeUnused(id: ContentId): void {
    if (id !== this.ignore) this.queue.add(id);
  }

  /** Run after a commit, so the change that dropped the last reference is durable first. */
  async collect(): Promise<void> {
    const ids = [...this.queue];
    this.queue.clear();
    for (const id of ids) if (await this.store.remove(id, () => this.unused(id))) this.log.debug('content.removed', { id });
  }

  /** At start: content no entry references (a crash between commit and removal) is removed. */
  async sweep(): Promise<number> {
    let removed = 0;
    for await (const id of this.store.list()) if (this.unused(id) && (await this.store.remove(id, () => this.unused(id)))) removed++;
    return removed;
  }
}

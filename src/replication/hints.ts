// The writer's choice of disks for new content, recorded in the entry as `at` (meta/entry.ts) so
// that every node places the content the same way (placement.ts place() reads it). Chosen by fill
// with placement's choose() over the disks as this node last saw them, less what it has itself
// sent their way since their last report: one writer saving many files in a row spreads them
// instead of piling them onto the disk that looked emptiest at the last report.
import type { ContentId } from '../content/metainfo.js';
import { MAX_AT, isValidAt } from '../meta/entry.js';
import { choose, Disk } from './placement.js';

export interface HintDeps {
  me: string;
  /** The disks as placement sees them now, or null when not known yet. */
  disks(): { disks: Disk[]; unknown: string[] } | null;
  /** When a disk's free space was last reported (this node's: last measured). */
  reportedAt(node: string): number | undefined;
  /** Copies wanted for a file at `path` (null: a hard-linked file whose name went). */
  copiesAt(path: string | null): number;
  /** The placement of content some entry already names (tree.placer). */
  placer(id: ContentId): string[] | undefined;
  nearFull: number;
  now?: () => number;
}

/** Most disks the bookkeeping of bytes sent since their report tracks (one per member). */
const MAX_TRACKED = 4096;

export class PlacementHints {
  private readonly sent = new Map<string, { bytes: number; since: number }>();

  constructor(private readonly d: HintDeps) {}

  /** The `at` for a new version of `path` whose content is `id` of `bytes`, or none (placement hashes). */
  hint(path: string | null, id: ContentId, bytes: number): string[] | undefined {
    // Content some entry names already keeps where it was placed (a copy, an identical rewrite).
    // (Only as an entry may hold it: an entry it could not decode would cut this node off.)
    const known = this.d.placer(id);
    if (known && isValidAt(known)) return known;
    const view = this.d.disks();
    if (!view || view.unknown.length || view.disks.length < 2) return undefined; // alone, or a member's size unknown
    const disks = view.disks.map((x) => ({ ...x, free: Math.max(0, x.free - this.pending(x.node)) }));
    const copies = Math.min(MAX_AT, Math.max(1, this.d.copiesAt(path)));
    const at = choose({ id, copies, writer: this.d.me, disks, nearFull: this.d.nearFull, bytes });
    const now = (this.d.now ?? Date.now)();
    for (const n of at) {
      if (n === this.d.me) continue; // the bytes are here already
      const s = this.sent.get(n);
      if (s) s.bytes += bytes;
      else if (this.sent.size < MAX_TRACKED) this.sent.set(n, { bytes, since: now });
    }
    return at.length ? at : undefined;
  }

  /** Bytes hinted to `node` since its last report. */
  private pending(node: string): number {
    const s = this.sent.get(node);
    if (!s) return 0;
    const r = this.d.reportedAt(node);
    if (r !== undefined && r >= s.since) {
      this.sent.delete(node); // its report counts them (or they were never fetched)
      return 0;
    }
    return s.bytes;
  }
}

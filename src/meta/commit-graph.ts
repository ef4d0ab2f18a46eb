// Ancestry and merge bases answered in this process, over parents read once through the object
// reader: a view asks for a merge base per fold and sync asks "is this older than ours?" per
// summary, and each `git merge-base` was a process (tens of ms on a loaded 2-core machine, since
// spawning costs in proportion to the node's memory). Generation numbers (1 + the largest of the
// parents', roots 1) order the walks, as Git's commit-graph does: a commit is only looked at after
// every commit above it that is being walked, so one pass finds the best common ancestors.
// Answers equal `git merge-base --all` / `--is-ancestor` / `--independent` (commit-graph.test.ts checks against git).

export type ReadParents = (oids: string[]) => Promise<Map<string, string[]>>;

interface GraphNode { parents: string[]; gen: number }

const P1 = 1, P2 = 2, STALE = 4, RESULT = 8;

export class CommitGraph {
  private nodes = new Map<string, GraphNode>();

  constructor(private readonly readParents: ReadParents, private readonly maxNodes = 2_000_000) {}

  /** Whether `a` is `b` or in its history. */
  async isAncestor(a: string, b: string): Promise<boolean> {
    this.bound();
    return this.reaches(a, b);
  }

  /** Those of `oids` that are not in the history of another of them, sorted, without duplicates. */
  async independent(oids: string[]): Promise<string[]> {
    this.bound();
    return this.independentNow([...new Set(oids)]);
  }

  /**
   * One walk down from the parents of every candidate, no lower than the lowest candidate's
   * generation: a candidate it meets is in another's history. (Asking each pair walked the
   * history k^2 times: a crafted history with many merge bases made a merge cost 1e7+ steps.)
   */
  private async independentNow(set: string[]): Promise<string[]> {
    if (set.length <= 1) return [...set];
    let min = Infinity;
    for (const x of set) min = Math.min(min, await this.gen(x));
    const candidates = new Set(set);
    const below = new Set<string>();
    const seen = new Set<string>();
    const stack: string[] = [];
    const visit = (x: string) => {
      for (const p of this.nodes.get(x)!.parents) {
        if (seen.has(p) || this.nodes.get(p)!.gen < min) continue;
        seen.add(p);
        stack.push(p);
      }
    };
    for (const x of set) visit(x);
    while (stack.length) {
      const c = stack.pop()!;
      if (candidates.has(c)) below.add(c);
      visit(c);
    }
    return set.filter((x) => !below.has(x)).sort();
  }

  private async reaches(a: string, b: string): Promise<boolean> {
    if (a === b) return true;
    const ga = await this.gen(a);
    if ((await this.gen(b)) <= ga) return false;
    const seen = new Set<string>([b]);
    const stack = [b];
    while (stack.length) {
      const c = this.nodes.get(stack.pop()!)!;
      for (const p of c.parents) {
        if (p === a) return true;
        if (seen.has(p)) continue;
        seen.add(p);
        // Below a's generation nothing leads to a.
        if (this.nodes.get(p)!.gen > ga) stack.push(p);
      }
    }
    return false;
  }

  /** The best common ancestors of a and b, sorted (none: unrelated histories). */
  async mergeBases(a: string, b: string): Promise<string[]> {
    if (a === b) return [a];
    this.bound();
    await this.gen(a);
    await this.gen(b);
    const flags = new Map<string, number>();
    const queue = new GenQueue((x) => this.nodes.get(x)!.gen);
    // Queued entries of commits not (yet) stale: the walk ends when none is left.
    const occ = new Map<string, number>();
    let nonstale = 0;
    const put = (x: string) => {
      queue.push(x);
      occ.set(x, (occ.get(x) ?? 0) + 1);
      if (!((flags.get(x) ?? 0) & STALE)) nonstale++;
    };
    const mark = (x: string, f: number) => {
      const before = flags.get(x) ?? 0;
      if (!(before & STALE) && f & STALE) nonstale -= occ.get(x) ?? 0;
      flags.set(x, before | f);
    };
    mark(a, P1);
    mark(b, P2);
    put(a);
    put(b);
    const results: string[] = [];
    while (nonstale > 0) {
      const c = queue.pop()!;
      occ.set(c, occ.get(c)! - 1);
      const cf = flags.get(c)!;
      if (!(cf & STALE)) nonstale--;
      let f = cf & (P1 | P2 | STALE);
      if (f === (P1 | P2)) {
        if (!(cf & RESULT)) {
          mark(c, RESULT);
          results.push(c);
        }
        f |= STALE; // the parents of a common ancestor are not the best ones
      }
      for (const p of this.nodes.get(c)!.parents) {
        if (((flags.get(p) ?? 0) & f) === f) continue;
        mark(p, f);
        put(p);
      }
    }
    // One that is in the history of another is not a best one.
    return this.independentNow(results.filter((x) => !((flags.get(x) ?? 0) & STALE)));
  }

  /**
   * The commits in the history of `tips` and not in that of `not` (as `git rev-list tips --not
   * not`), newest generation first; null when there are more than `max`. One walk by generation:
   * a commit is popped after all its children, so its marks are final by then.
   */
  async only(tips: string[], not: string[], max: number): Promise<string[] | null> {
    this.bound();
    for (const x of [...tips, ...not]) await this.gen(x);
    const OLD = 1, NEW = 2;
    const flags = new Map<string, number>();
    const queued = new Set<string>();
    const queue = new GenQueue((x) => this.nodes.get(x)!.gen);
    let live = 0; // queued and not OLD: the walk ends when none is left
    const add = (x: string, f: number) => {
      const before = flags.get(x) ?? 0;
      const after = before | f;
      if (after === before) return;
      flags.set(x, after);
      if (!queued.has(x)) {
        queued.add(x);
        queue.push(x);
        if (!(after & OLD)) live++;
      } else if (!(before & OLD) && after & OLD) live--;
    };
    for (const x of not) add(x, OLD);
    for (const x of tips) add(x, NEW);
    const out: string[] = [];
    while (live > 0) {
      const c = queue.pop()!;
      const f = flags.get(c)!;
      if (!(f & OLD)) {
        live--;
        if (out.push(c) > max) return null;
      }
      for (const p of this.nodes.get(c)!.parents) add(p, f & OLD ? OLD : NEW);
    }
    return out;
  }

  /** Memory stays bounded: past maxNodes commits the graph is read again as needed (between questions, never during one). */
  private bound(): void {
    if (this.nodes.size >= this.maxNodes) this.nodes.clear();
  }

  /** Generation number of `oid`, reading (in batches) the parents of every commit below it not seen yet. */
  private async gen(oid: string): Promise<number> {
    const known = this.nodes.get(oid);
    if (known) return known.gen;
    const pending = new Map<string, string[]>(); // read, generation not known yet
    const stack = [oid];
    while (stack.length) {
      const top = stack[stack.length - 1]!;
      if (this.nodes.has(top)) { stack.pop(); continue; }
      let parents = pending.get(top);
      if (!parents) {
        // The unread commits on the stack are read together: one exchange for many.
        const unread = [...new Set(stack.filter((x) => !this.nodes.has(x) && !pending.has(x)))].slice(-512);
        for (const [x, ps] of await this.readParents(unread)) pending.set(x, ps);
        parents = pending.get(top);
        if (!parents) throw new Error(`commit ${top} is missing`);
      }
      const missing = parents.filter((p) => !this.nodes.has(p));
      if (missing.length) {
        for (const p of missing) stack.push(p);
        continue;
      }
      stack.pop();
      pending.delete(top);
      this.nodes.set(top, { parents, gen: 1 + Math.max(0, ...parents.map((p) => this.nodes.get(p)!.gen)) });
    }
    return this.nodes.get(oid)!.gen;
  }
}

/** A max-heap of commits by generation (ties by name: the walk is the same everywhere). */
class GenQueue {
  private heap: string[] = [];
  constructor(private readonly genOf: (x: string) => number) {}

  private above(i: number, j: number): boolean {
    const a = this.heap[i]!, b = this.heap[j]!;
    const ga = this.genOf(a), gb = this.genOf(b);
    return ga !== gb ? ga > gb : a > b;
  }

  push(x: string): void {
    const h = this.heap;
    h.push(x);
    for (let i = h.length - 1; i > 0; ) {
      const up = (i - 1) >> 1;
      if (!this.above(i, up)) break;
      [h[i], h[up]] = [h[up]!, h[i]!];
      i = up;
    }
  }

  pop(): string | undefined {
    const h = this.heap;
    if (!h.length) return undefined;
    const top = h[0];
    const last = h.pop()!;
    if (h.length) {
      h[0] = last;
      for (let i = 0; ; ) {
        const l = 2 * i + 1, r = l + 1;
        let m = i;
        if (l < h.length && this.above(l, m)) m = l;
        if (r < h.length && this.above(r, m)) m = r;
        if (m === i) break;
        [h[i], h[m]] = [h[m]!, h[i]!];
        i = m;
      }
    }
    return top;
  }
}

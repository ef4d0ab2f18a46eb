// One long-lived `git cat-file --batch-command` per repository: reading a commit, a few blobs or
// their sizes is a line on a pipe, not a process. Views are made on every push a node receives,
// and each spent ~6 ms per spawned reader (three of them) on a 2-core machine.
// Requests run one at a time (the pipe is a conversation); an object over the caller's limit is
// refused from its header and never read (the process is replaced). Object names are
// checked before they are written: a newline in one would be a second command.
import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process';
import { BatchParser, type BatchObject } from './cat-file.js';

export interface ObjectInfo { oid: string; type: string; size: number }

const OID = /^[0-9a-f]{40}$/;
/** A ref by its full name (refs/heads/main, refs/nodes/<id>): what may be asked besides an object name. */
const REF = /^refs\/(?:[A-Za-z0-9_-]+\/)*[A-Za-z0-9_-]+$/;
/** A reply that never comes (a wedged git) fails the request and the process is started anew. */
const TIMEOUT_MS = 60_000;

export class ObjectReader {
  private p?: ChildProcessWithoutNullStreams;
  private chain: Promise<unknown> = Promise.resolve();
  private sink?: (chunk: Buffer) => void;
  /** The process the request in flight talks to. */
  private busyOn?: ChildProcessWithoutNullStreams;
  private fail?: (e: Error) => void;
  private stderr = '';

  constructor(private readonly gitDir: string, private readonly env: () => NodeJS.ProcessEnv) {}

  /** Type, size (and the object a ref names) of each object or full ref name, or null when it is missing. */
  info(oids: string[]): Promise<Map<string, ObjectInfo | null>> {
    return this.serial(() => this.infoNow(oids));
  }

  /** The objects' contents, in one exchange; a missing one or one over `maxSize` fails the read. */
  read(oids: string[], maxSize: number): Promise<Map<string, BatchObject>> {
    return this.serial(async () => {
      const unique = [...new Set(oids)];
      for (const o of unique) if (!OID.test(o)) throw new Error(`not an object name: ${JSON.stringify(o.slice(0, 60))}`);
      // One round trip: the parser refuses a missing object or one over maxSize from its header,
      // before anything is allocated, and the process is then started afresh (what it still
      // sends is never read).
      const out = new Map<string, BatchObject>();
      if (!unique.length) return out;
      let n = 0;
      // Each reply names its object: one out of step (a git that answered something else) fails the read.
      const parser = new BatchParser((o) => {
        const want = unique[n++]!;
        if (o.oid !== want) throw new Error(`git cat-file --batch-command: asked for ${want}, got ${JSON.stringify(o.oid.slice(0, 60))}`);
        out.set(want, o);
      }, maxSize);
      await this.exchange(unique.map((o) => `contents ${o}\n`).join(''), (chunk) => {
        parser.push(chunk);
        return n === unique.length;
      });
      return out;
    });
  }

  /** Ends the process once the requests before are answered (after a gc: packs it mapped are gone). */
  restart(): Promise<void> {
    return this.serial(async () => this.close());
  }

  /** Ends the process now (a later request starts another). */
  close(): void {
    this.p?.kill();
    this.p = undefined;
  }

  private async infoNow(oids: string[]): Promise<Map<string, ObjectInfo | null>> {
    const unique = [...new Set(oids)];
    for (const o of unique) if (!OID.test(o) && !REF.test(o)) throw new Error(`not an object name: ${JSON.stringify(o.slice(0, 60))}`);
    const out = new Map<string, ObjectInfo | null>();
    if (!unique.length) return out;
    let rest = '';
    await this.exchange(unique.map((o) => `info ${o}\n`).join(''), (chunk) => {
      const text = rest + chunk.toString('latin1');
      const lines = text.split('\n');
      rest = lines.pop()!;
      if (rest.length > 1024) throw new Error('git cat-file --batch-command: header line too long');
      for (const line of lines) {
        const [oid = '', type = '', size = ''] = line.split(' ');
        const want = unique[out.size]!;
        // An object is named back as asked; a ref by the object it names (or by itself, missing).
        if (type === 'missing' ? oid !== want : want !== oid && !(REF.test(want) && OID.test(oid))) {
          throw new Error(`git cat-file --batch-command: unexpected reply ${JSON.stringify(line.slice(0, 100))}`);
        }
        if (type === 'missing') out.set(want, null);
        else if (/^\d+$/.test(size) && Number.isSafeInteger(Number(size))) out.set(want, { oid, type, size: Number(size) });
        else throw new Error(`git cat-file --batch-command: unexpected reply ${JSON.stringify(line.slice(0, 100))}`);
      }
      if (out.size === unique.length && rest) throw new Error('git cat-file --batch-command: more output than asked for');
      return out.size === unique.length;
    });
    return out;
  }

  private serial<T>(fn: () => Promise<T>): Promise<T> {
    const next = this.chain.then(fn);
    this.chain = next.catch(() => undefined);
    return next;
  }

  private start(): ChildProcessWithoutNullStreams {
    if (this.p && this.p.exitCode === null && !this.p.killed) return this.p;
    const p = spawn('git', [`--git-dir=${this.gitDir}`, 'cat-file', '--batch-command'], { stdio: ['pipe', 'pipe', 'pipe'], env: this.env() });
    this.stderr = '';
    // Output and exits of a process that was replaced are not the current request's.
    p.stdout.on('data', (b: Buffer) => {
      if (this.busyOn !== p) return;
      try {
        this.sink?.(b);
      } catch (e) {
        this.fail?.(e as Error);
      }
    });
    p.stderr.on('data', (b: Buffer) => { if (this.stderr.length < 4096) this.stderr += b.toString(); });
    p.stdin.on('error', () => {});
    const gone = (why: string) => {
      if (this.p === p) this.p = undefined;
      if (this.busyOn === p) this.fail?.(new Error(`git cat-file --batch-command ${why}${this.stderr ? `: ${this.stderr.trim()}` : ''}`));
    };
    p.on('error', (e) => gone(`failed: ${e.message}`));
    p.on('close', (code, sig) => gone(`exited (${sig ?? code})`));
    // Never keeps the process alive by itself: while a request is in flight its reply timer does.
    for (const h of [p, p.stdin, p.stdout, p.stderr] as Array<{ unref?: () => void }>) h.unref?.();
    this.p = p;
    return p;
  }

  /** Writes `input`; `consume` gets the output until it says the reply is complete. */
  private exchange(input: string, consume: (chunk: Buffer) => boolean): Promise<void> {
    const p = this.start();
    return new Promise<void>((resolve, reject) => {
      const done = (e?: Error) => {
        clearTimeout(timer);
        this.sink = undefined;
        this.fail = undefined;
        this.busyOn = undefined;
        if (e) {
          // What is left of this reply would be read as the next one's: start afresh.
          if (this.p === p) this.close();
          reject(e);
        } else resolve();
      };
      const timer = setTimeout(() => done(new Error(`git cat-file --batch-command: no reply in ${TIMEOUT_MS} ms`)), TIMEOUT_MS);
      this.sink = (chunk) => { if (consume(chunk)) done(); };
      this.fail = done;
      this.busyOn = p;
      p.stdin.write(input);
    });
  }
}

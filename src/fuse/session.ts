// One FUSE connection: reads requests from the kernel's device when the event loop says it is
// readable, hands each to a handler, and writes the reply in one call. Requests run
// concurrently; each holds its buffer until answered, so a write's data is never copied.
import { EventEmitter } from 'node:events';
import { Worker } from 'node:worker_threads';
import { constants } from 'node:os';
import type { Dev } from './dev.js';
import { IN_HEADER, OUT_HEADER, Op, u64 } from './proto.js';

const E = constants.errno;
/** Longest run of request handling before the event loop gets a turn (ns). */
const DRAIN_BUDGET = 2_000_000n;

/** One request; `body` starts after the header. */
export interface Request {
  readonly op: Op;
  readonly nodeid: number;
  readonly uid: number;
  readonly gid: number;
  readonly pid: number;
  /** The whole request as read; valid until the reply is sent. */
  readonly buf: Buffer;
  readonly len: number;
  /** Set by a handler that keeps `buf` past its reply (a lent write buffer): reused once it settles. */
  held?: Promise<unknown>;
  /** READ only: aborted when the caller is interrupted (a signal); the answer is then EINTR. */
  signal?: AbortSignal;
  /** An answer went out already (EINTR after an interrupt): the handler's result is dropped. */
  answered?: boolean;
  /** Set by a handler: runs once its result was written to the kernel, or dropped (a pooled buffer goes back). */
  after?: () => void;
  /** performance.now() when it was read from the kernel (for onDone). */
  t0?: number;
}

/** Returns reply payload buffers, or nothing for ops the kernel expects no answer to. */
export type Handler = (req: Request) => Buffer[] | void | Promise<Buffer[] | void>;

export interface SessionOptions {
  /** Largest request: max_write plus headers. */
  bufferSize: number;
  /** Requests in flight at once. */
  concurrency: number;
  onError: (op: Op, e: unknown) => number;
  /**
   * After the last answer, keep reading for this long before sleeping: the next request of a
   * stat loop or a create usually comes within ~100 µs, and waking a sleeping thread costs ~50 µs
   * on a VM. 0 disables it.
   */
  spinMicros?: number;
  /** Every request once answered (or dropped): its opcode, seconds since it was read, errno (0: none). */
  onDone?: (op: number, seconds: number, errno: number) => void;
}

export class Session extends EventEmitter {
  private free: Buffer[] = [];
  private allocated = 0;
  private watcher: object | null = null;
  private watching = false;
  private closed = false;
  private draining = false;
  /** Reads in progress by request id, so an INTERRUPT can end them. */
  private interruptible = new Map<number, { req: Request; abort: AbortController }>();
  private notifier: Worker | null = null;
  inFlight = 0;

  constructor(private readonly dev: Dev, readonly fd: number, private readonly handle: Handler, private readonly opts: SessionOptions) {
    super();
  }

  start(): void {
    const r = this.dev.nonblock(this.fd);
    if (r < 0) throw new Error(`FUSE device: cannot set non-blocking (errno ${-r})`);
    this.watcher = this.dev.watch(this.fd, () => this.drain());
    this.watch(true);
  }

  private watch(on: boolean): void {
    if (this.closed || !this.watcher || this.watching === on) return;
    this.watching = on;
    this.dev.resume(this.watcher, on);
  }

  private takeBuffer(): Buffer | null {
    const b = this.free.pop();
    if (b) return b;
    if (this.allocated >= this.opts.concurrency) return null;
    this.allocated++;
    // Large buffers come from mmap: pages the kernel never writes cost no memory.
    return Buffer.allocUnsafeSlow(this.opts.bufferSize);
  }

  /**
   * Reads every request the kernel has queued, as far as buffers allow; then spins briefly. At
   * most DRAIN_BUDGET at a time: a tree walk (find, ls -lR) keeps requests coming and must not
   * hold off timers and sockets; the device is still readable, so the loop comes back here.
   */
  private drain(): void {
    if (this.draining) return;
    this.draining = true;
    const spin = BigInt(Math.round((this.opts.spinMicros ?? 0) * 1000));
    const stop = process.hrtime.bigint() + DRAIN_BUDGET;
    let until = 0n;
    try {
      while (!this.closed) {
        const buf = this.takeBuffer();
        if (!buf) {
          this.watch(false); // resumed when a request finishes
          return;
        }
        const n = this.dev.read(this.fd, buf);
        if (n < 0) {
          this.free.push(buf);
          if (n === -E.EAGAIN) {
            // Spin only while no request is pending: one being answered (from a promise job) must
            // not wait behind this loop, nor a lent write buffer's disk write (whose thread the
            // spinning would starve on two cores: measured 1.3 -> 0.9 GB/s).
            if (!spin || this.inFlight) return;
            const now = process.hrtime.bigint();
            if (!until) until = now + spin;
            if (now >= until) return;
            continue;
          }
          if (n === -E.EINTR || n === -E.ENOENT) continue; // interrupted before we read it
          this.end(n === -E.ENODEV ? null : new Error(`FUSE device read failed (errno ${-n})`));
          return;
        }
        this.dispatch(buf, n);
        const now = process.hrtime.bigint();
        if (now >= stop) return;
        until = 0n;
      }
    } finally {
      this.draining = false;
    }
  }

  private dispatch(buf: Buffer, len: number): void {
    const req: Request = {
      op: buf.readUInt32LE(4), nodeid: u64(buf, 16), uid: buf.readUInt32LE(24), gid: buf.readUInt32LE(28),
      pid: buf.readUInt32LE(32), buf, len, t0: this.opts.onDone ? performance.now() : undefined,
    };
    this.inFlight++;
    if (req.op === Op.INTERRUPT) return this.interrupt(req);
    if (req.op === Op.READ) {
      // A read can wait for peers for as long as they are away; a signal must end that wait
      // (once the kernel handed the request over, even SIGKILL waits for the answer).
      const abort = new AbortController();
      req.signal = abort.signal;
      this.interruptible.set(u64(buf, 8), { req, abort });
    }
    let res: ReturnType<Handler>;
    try {
      res = this.handle(req);
    } catch (e) {
      return this.finish(req, this.opts.onError(req.op, e));
    }
    if (res instanceof Promise) res.then((out) => this.finish(req, 0, out), (e) => this.finish(req, this.opts.onError(req.op, e)));
    else this.finish(req, 0, res);
  }

  /** INTERRUPT names a request by id: a read still waiting is answered EINTR now. */
  private interrupt(req: Request): void {
    const target = this.interruptible.get(u64(req.buf, IN_HEADER));
    if (target && !target.req.answered) {
      target.req.answered = true;
      this.reply(target.req.buf, E.EINTR, []);
      target.abort.abort();
    }
    this.finish(req, 0); // no answer to the INTERRUPT itself
  }

  private finish(req: Request, errno: number, out?: Buffer[] | void): void {
    if (req.signal) this.interruptible.delete(u64(req.buf, 8));
    if ((out !== undefined || errno) && !req.answered) this.reply(req.buf, errno, out || []);
    req.after?.(); // the reply was written synchronously: nothing refers to its payload now
    if (req.t0 !== undefined) this.opts.onDone?.(req.op, (performance.now() - req.t0) / 1000, errno);
    if (req.held) req.held.then(() => this.recycle(req.buf), () => this.recycle(req.buf));
    else this.recycle(req.buf);
  }

  private recycle(buf: Buffer): void {
    this.inFlight--;
    this.free.push(buf);
    this.watch(true);
    // The last answer went out from a promise job: the next request is likely close behind.
    if (!this.inFlight && !this.draining && this.opts.spinMicros) this.drain();
  }

  private reply(reqBuf: Buffer, errno: number, payload: Buffer[]): void {
    if (this.closed) return;
    const hdr = Buffer.allocUnsafe(OUT_HEADER);
    let len = OUT_HEADER;
    if (!errno) for (const p of payload) len += p.length;
    hdr.writeUInt32LE(len, 0);
    hdr.writeInt32LE(errno ? -errno : 0, 4);
    reqBuf.copy(hdr, 8, 8, 16); // unique
    const r = this.dev.writev(this.fd, errno ? [hdr] : [hdr, ...payload]);
    // ENOENT: the request was interrupted and is gone; nothing waits for this answer.
    if (r < 0 && r !== -E.ENOENT) this.emit('reply-error', -r);
  }

  /** An unsolicited message to the kernel (cache invalidation), written by notify-worker.ts. */
  notify(code: number, payload: Buffer): void {
    if (this.closed) return;
    const msg = Buffer.allocUnsafe(OUT_HEADER + payload.length);
    msg.writeUInt32LE(msg.length, 0);
    msg.writeInt32LE(code, 4);
    msg.fill(0, 8, 16);
    payload.copy(msg, OUT_HEADER);
    if (!this.notifier) {
      this.notifier = new Worker(new URL('./notify-worker.js', import.meta.url), { workerData: { fd: this.fd } });
      this.notifier.on('message', (code: string) => this.emit('notify-error', code));
      this.notifier.on('error', (e) => this.emit('notify-error', e.message));
      this.notifier.unref();
    }
    this.notifier.postMessage(msg);
  }

  /** After end(): resolves once nothing can touch the fd any more, so it may be closed. */
  async release(): Promise<void> {
    const w = this.notifier;
    this.notifier = null;
    if (w) await w.terminate();
  }

  /** Stops reading; the kernel connection ends when the mount goes away. */
  end(err: Error | null): void {
    if (this.closed) return;
    this.watch(false);
    this.closed = true;
    // Lets go of the poll handle and, through it, of this session and its buffers.
    if (this.watcher) this.dev.unwatch(this.watcher);
    this.watcher = null;
    this.free = [];
    this.emit('end', err);
  }
}


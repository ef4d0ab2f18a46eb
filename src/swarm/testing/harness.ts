// Test side of child.ts: start engines in child processes and call them.
import { fork, ChildProcess } from 'node:child_process';
import { EventEmitter } from 'node:events';

export class EngineProc extends EventEmitter {
  private seq = 0;
  private calls = new Map<number, { resolve: (v: any) => void; reject: (e: Error) => void }>();
  port = 0;
  dhtPort = 0;
  exited: Promise<number | null>;

  constructor(readonly child: ChildProcess) {
    super();
    child.on('message', (m: any) => {
      if (m.event) return this.emit(m.event, m);
      const c = this.calls.get(m.seq);
      this.calls.delete(m.seq);
      if (!c) return;
      if (m.ok) c.resolve(m.result);
      else c.reject(new Error(m.error));
    });
    this.exited = new Promise((resolve) => child.once('exit', (code) => {
      for (const c of this.calls.values()) c.reject(new Error(`engine exited (${code})`));
      this.calls.clear();
      resolve(code);
    }));
  }

  call<T = any>(cmd: string, args: unknown = {}): Promise<T> {
    const seq = ++this.seq;
    return new Promise<T>((resolve, reject) => {
      this.calls.set(seq, { resolve, reject });
      this.child.send({ seq, cmd, args });
    });
  }

  /** Ends the child (by its own pid): gracefully, or with SIGKILL to test crashes. */
  async stop(hard = false): Promise<void> {
    if (this.child.exitCode !== null || this.child.signalCode !== null) return;
    if (hard) this.child.kill('SIGKILL');
    else await this.call('close').catch(() => {});
    await this.exited;
  }
}

export async function startEngine(args: Record<string, unknown>): Promise<EngineProc> {
  const execArgv = process.env.SWARM_PROF ? ['--cpu-prof', `--cpu-prof-dir=${process.env.SWARM_PROF}`] : [];
  const child = fork(new URL('./child.js', import.meta.url), [], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'], execArgv });
  const e = new EngineProc(child);
  const r = await e.call<{ port: number; dhtPort: number }>('start', args);
  e.port = r.port;
  e.dhtPort = r.dhtPort;
  return e;
}

// Runs Debian's python3-libtorrent as a peer (see lt_peer.py), for interop tests and the benchmark.
import { spawn, spawnSync, ChildProcess } from 'node:child_process';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';

export const LT_SCRIPT = fileURLToPath(new URL('../../../src/swarm/testing/lt_peer.py', import.meta.url));
export const PYTHON = '/usr/bin/python3';

export function haveLibtorrent(): boolean {
  return spawnSync(PYTHON, ['-c', 'import libtorrent'], { stdio: 'ignore' }).status === 0;
}

export class LtPeer {
  port = 0;
  private events: Array<Record<string, any>> = [];
  private waiters: Array<() => void> = [];
  readonly exited: Promise<void>;

  constructor(readonly child: ChildProcess) {
    createInterface({ input: child.stdout! }).on('line', (l) => {
      try {
        this.events.push(JSON.parse(l));
      } catch {
        return;
      }
      for (const w of this.waiters.splice(0)) w();
    });
    this.exited = new Promise((r) => child.once('exit', () => {
      for (const w of this.waiters.splice(0)) w();
      r();
    }));
  }

  async next(event: string): Promise<Record<string, any>> {
    for (;;) {
      const e = this.events.find((x) => x.event === event);
      if (e) return e;
      if (this.child.exitCode !== null || this.child.signalCode !== null) throw new Error(`libtorrent peer exited before "${event}"`);
      await new Promise<void>((r) => this.waiters.push(r));
    }
  }

  /** CPU seconds the peer has used so far. */
  async cpu(): Promise<number> {
    this.events = this.events.filter((e) => e.event !== 'cpu');
    this.child.stdin!.write('cpu\n');
    return (await this.next('cpu')).cpu as number;
  }

  /** Ends it by closing its stdin (it exits at once), by its pid if it does not. */
  async stop(): Promise<void> {
    if (this.child.exitCode !== null || this.child.signalCode !== null) return;
    this.child.stdin!.end();
    const t = setTimeout(() => this.child.kill('SIGKILL'), 5000);
    await this.exited;
    clearTimeout(t);
  }
}

export async function startLt(torrentPath: string, save: string, peers: string[] = [], fast = false, dhtNodes: string[] = []): Promise<LtPeer> {
  const args = [LT_SCRIPT, '--torrent', torrentPath, '--save', save, ...peers.flatMap((p) => ['--peer', p]), ...(fast ? ['--fast'] : []),
    ...dhtNodes.flatMap((n) => ['--dht-node', n])];
  const child = spawn(PYTHON, args, { stdio: ['pipe', 'pipe', 'inherit'] });
  const p = new LtPeer(child);
  p.port = (await p.next('listening')).port;
  return p;
}

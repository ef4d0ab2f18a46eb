// Test harness: a service manager's notify socket (an AF_UNIX datagram socket, path or abstract
// "@name", with SO_PASSCRED) served by a python3 child, since Node cannot bind one. Every
// datagram comes back with the pid the kernel says sent it, as systemd reads it.
import { spawn, ChildProcess } from 'node:child_process';
import { createInterface } from 'node:readline';

export interface Notification { pid: number; data: string }

export interface NotifySocket {
  address: string;
  received: Notification[];
  /** Resolves with the first datagram (received from now on or before) whose text matches. */
  next(match: RegExp, ms?: number): Promise<Notification>;
  close(): Promise<void>;
}

const RECEIVER = `
import json, os, socket, struct, sys
addr = sys.argv[1]
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
s.bind('\\0' + addr[1:] if addr.startswith('@') else addr)
print('bound', flush=True)
while True:
    data, anc, _, _ = s.recvmsg(65536, socket.CMSG_SPACE(12))
    pid = next((struct.unpack('3i', d[:12])[0] for l, t, d in anc if l == socket.SOL_SOCKET and t == socket.SCM_CREDENTIALS), -1)
    print(json.dumps({'pid': pid, 'data': data.decode('utf-8', 'replace')}), flush=True)
`;

/** Binds `address` (a path in a temp dir, or "@name") and waits until it can receive. */
export async function notifySocket(address: string): Promise<NotifySocket> {
  const p: ChildProcess = spawn('/usr/bin/python3', ['-c', RECEIVER, address], { stdio: ['ignore', 'pipe', 'pipe'] });
  const received: Notification[] = [];
  const waiters = new Set<() => void>();
  let err = '';
  p.stderr!.on('data', (b: Buffer) => (err += b.toString()));
  const lines = createInterface({ input: p.stdout! });
  await new Promise<void>((resolve, reject) => {
    p.once('error', reject);
    p.once('exit', (code) => reject(new Error(`notify receiver exited with ${code}: ${err}`)));
    lines.once('line', () => resolve());
  });
  lines.on('line', (l) => {
    received.push(JSON.parse(l) as Notification);
    for (const w of waiters) w();
  });
  return {
    address, received,
    next(match, ms = 10_000) {
      return new Promise((resolve, reject) => {
        const check = () => {
          const n = received.find((r) => match.test(r.data));
          if (!n) return;
          waiters.delete(check);
          clearTimeout(t);
          resolve(n);
        };
        const t = setTimeout(() => { waiters.delete(check); reject(new Error(`no notification matching ${match} after ${ms} ms; got ${JSON.stringify(received)}`)); }, ms);
        waiters.add(check);
        check();
      });
    },
    async close() {
      if (p.exitCode !== null || p.signalCode !== null) return;
      const gone = new Promise((r) => p.once('exit', r));
      p.kill('SIGTERM');
      await gone;
    },
  };
}

// Runs a program asynchronously and returns its stdout; the error names the command and its stderr.
import { spawn } from 'node:child_process';

export interface RunOptions { cwd?: string; input?: Buffer | string; env?: NodeJS.ProcessEnv; allowFail?: boolean }

export async function run(cmd: string, args: string[], opts: RunOptions = {}): Promise<{ code: number; stdout: Buffer; stderr: string }> {
  return new Promise((resolve, reject) => {
    const p = spawn(cmd, args, { cwd: opts.cwd, env: opts.env ?? process.env, stdio: ['pipe', 'pipe', 'pipe'] });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    p.stdout.on('data', (b: Buffer) => out.push(b));
    p.stderr.on('data', (b: Buffer) => err.push(b));
    p.on('error', reject);
    p.on('close', (code) => {
      const res = { code: code ?? -1, stdout: Buffer.concat(out), stderr: Buffer.concat(err).toString() };
      if (code !== 0 && !opts.allowFail) {
        reject(new Error(`${cmd} ${args.join(' ')} failed (${code}): ${res.stderr.trim()}`));
      } else resolve(res);
    });
    p.stdin.on('error', () => {}); // a program that exits early closes its stdin
    p.stdin.end(opts.input ?? '');
  });
}

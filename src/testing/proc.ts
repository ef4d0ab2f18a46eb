// Process helpers for tests (not used at run time); runProc lives in util/exec.ts (the demo uses it).

export { runProc, type ProcResult } from '../util/exec.js';
import { runProc } from '../util/exec.js';

export async function git(args: string[], opts: { env?: NodeJS.ProcessEnv; cwd?: string } = {}): Promise<string> {
  const r = await runProc('git', args, { ...opts, env: { ...process.env, ...opts.env } });
  if (r.code !== 0) throw new Error(`git ${args.join(' ')} failed (${r.code}): ${r.stderr}`);
  return r.stdout.trim();
}

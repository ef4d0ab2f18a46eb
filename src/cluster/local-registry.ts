// Running nodes of this machine, so a second disk can join through a local member with no token
// (reaching its 0600 control socket is the proof). One small JSON file per running node in a run
// directory; DELUGEFS_RUN_DIR overrides it (tests give each simulated machine its own).
import { mkdir, readdir, readFile, writeFile, rename, unlink } from 'node:fs/promises';
import { join } from 'node:path';
import { tmpdir } from 'node:os';
import { controlCall } from './control-socket.js';

export interface LocalEntry { cluster: string; nodeId: string; root: string; control: string; pid: number }

export function runDir(): string {
  if (process.env.DELUGEFS_RUN_DIR) return process.env.DELUGEFS_RUN_DIR;
  return process.getuid?.() === 0 ? '/run/delugefs' : join(tmpdir(), `delugefs-${process.getuid?.() ?? 'user'}`);
}

const fileOf = (e: { cluster: string; nodeId: string }) => join(runDir(), `${e.cluster}--${e.nodeId}.json`);

export async function registerLocal(e: LocalEntry): Promise<() => Promise<void>> {
  await mkdir(runDir(), { recursive: true, mode: 0o700 });
  const f = fileOf(e);
  await writeFile(f + '.tmp', JSON.stringify(e) + '\n', { mode: 0o600 });
  await rename(f + '.tmp', f);
  return async () => { await unlink(f).catch(() => {}); };
}

/** A running member of `cluster` on this machine that answers on its control socket. */
export async function findLocalMember(cluster: string): Promise<LocalEntry | undefined> {
  let names: string[];
  try {
    names = await readdir(runDir());
  } catch {
    return undefined;
  }
  for (const n of names.filter((x) => x.startsWith(`${cluster}--`) && x.endsWith('.json')).sort()) {
    try {
      const e = JSON.parse(await readFile(join(runDir(), n), 'utf8')) as LocalEntry;
      if (e.cluster !== cluster) continue;
      await controlCall(e.control, 'status', null, 3000);
      return e;
    } catch {
      // a node that crashed left its file; it no longer answers
    }
  }
  return undefined;
}

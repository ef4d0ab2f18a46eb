// `delugefs fsck ROOT [--repair] [--restart] [--json]`: starts (or goes on with) the running
// node's full check of its stored copies (replication/fsck.ts), shows progress on a terminal
// until the pass ends, then the report. Ctrl-C stops the pass; the next fsck goes on from there.
// Exit status as e2fsck's: 0 no bad pieces, 1 bad pieces all repaired, 4 bad pieces left,
// 8 an operational error (no node running), 32 stopped by the user.
import { join } from 'node:path';
import { CONTROL_SOCKET } from '../node/cluster-node.js';
import { callLocal } from '../daemon/methods.js';
import { RpcCallError } from '../cluster/rpc-client.js';
import { FSCK } from '../replication/methods.js';
import { renderFsck, type FsckStatus } from '../replication/fsck.js';
import { formatBytes } from '../util/units.js';
import { Progress } from './progress.js';

export const FSCK_HELP = `Usage: delugefs fsck ROOT [--repair] [--restart] [--json]
On a running node: reads back every copy its disk holds, as fast as the disk goes, and checks each
piece against its hash; shows progress on a terminal and then what it found: each bad copy with
its bad pieces and the files that have that content. --repair: fetches the bad pieces again from
a member holding a complete copy (the same repair the background scrub makes). The pass is saved
as it goes: Ctrl-C stops it, and the next "delugefs fsck" goes on from there (--restart: from the
start). Exit status: 0 no bad pieces, 1 bad pieces found and all repaired, 4 bad pieces left,
8 operational error (no node running on ROOT, the node stopped meanwhile), 32 stopped by Ctrl-C
(a second Ctrl-C leaves without waiting). A saved pass that cannot be read is dropped, logged,
and a new one starts.`;

const POLL_MS = 500;

/** `interrupted`: this fsck was stopped by Ctrl-C (32); a pass that ended otherwise unfinished (the node stopping) is 8. */
export function fsckExit(s: FsckStatus, interrupted: boolean): number {
  if (s.state !== 'done') return interrupted ? 32 : 8;
  if (s.unrepaired) return 4;
  return s.badCopies ? 1 : 0;
}

export async function runFsck(root: string, o: { repair: boolean; restart: boolean; json: boolean }): Promise<void> {
  const sock = join(root, CONTROL_SOCKET);
  const call = async (action: 'start' | 'stop' | 'status'): Promise<FsckStatus> => {
    try {
      return await callLocal(sock, FSCK, { action, repair: o.repair, restart: o.restart });
    } catch (e) {
      const down = e instanceof RpcCallError && e.code === 'not_running';
      throw Object.assign(new Error(down ? `fsck: no node is running on ${root}; start it first` : `fsck: ${(e as Error).message}`), { fsckExit: 8 });
    }
  };
  let s: FsckStatus;
  let interrupted = false;
  // The first Ctrl-C stops the pass (saved, resumable); a second one leaves at once.
  const onInt = () => {
    if (interrupted) process.exit(130);
    interrupted = true;
  };
  process.on('SIGINT', onInt);
  const bar = new Progress('fsck');
  try {
    s = await call('start');
    while (s.state === 'running' && !interrupted) {
      bar.update(s.bytes, s.totalBytes, `${s.checked}/${s.total} copies, ${formatBytes(s.bytes)} of ${formatBytes(s.totalBytes)}${s.badCopies ? `, ${s.badCopies} bad` : ''}`);
      await new Promise((r) => setTimeout(r, POLL_MS));
      s = await call('status');
    }
    if (s.state === 'running') s = await call('stop');
    bar.update(s.bytes, s.totalBytes, s.state);
  } catch (e) {
    bar.end();
    process.stderr.write(`delugefs: ${(e as Error).message}\n`);
    process.exitCode = (e as { fsckExit?: number }).fsckExit ?? 8;
    return;
  } finally {
    process.off('SIGINT', onInt);
  }
  bar.end();
  process.stdout.write((o.json ? JSON.stringify(s) : renderFsck(s)) + '\n');
  process.exitCode = fsckExit(s, interrupted);
}

// Checks what a peer's head would bring in before it is merged: every blob it adds or changes
// must be something this node could have written (a decodable entry in the right place, or a
// record at a valid record path), so a malformed entry never reaches our branch, where it would
// spread to every member and break loading the tree.
import { run } from '../util/exec.js';
import { GitRepo, gitEnv } from '../meta/repo.js';
import { decodeEntry } from '../meta/entry.js';
import { DIR_MARKER, isMarker } from '../meta/names.js';
import { RECORDS, checkRecordPath } from '../meta/tree.js';

const MAX_RECORD = 64 << 10;

/** Null when `theirs` is acceptable relative to `ours`; otherwise the reason, naming the path. */
export async function validateIncoming(repoDir: string, ours: string, theirs: string): Promise<string | null> {
  const out = (await run('git', ['--git-dir', repoDir, 'diff-tree', '-r', '-z', '--no-renames', ours, theirs], { env: gitEnv() })).stdout;
  const fields = out.toString('utf8').split('\0');
  const entries: { path: string; oid: string }[] = [];
  const records: { path: string; oid: string }[] = [];
  for (let i = 0; i + 1 < fields.length; i += 2) {
    const meta = fields[i]!;
    const path = fields[i + 1]!;
    const [, , newMode, , newOid, status] = meta.replace(/^:/, ':').split(/[ :]/);
    if (status === 'D') continue;
    if (newMode !== '100644') return `${JSON.stringify(path)} has mode ${newMode} (only plain blobs are written)`;
    if (path.startsWith(RECORDS + '/')) {
      try {
        checkRecordPath(path.slice(RECORDS.length + 1));
      } catch (e) {
        return (e as Error).message;
      }
      records.push({ path, oid: newOid! });
      continue;
    }
    const parts = path.split('/');
    const bad = parts.findIndex((p, j) => p === '' || (isMarker(p) && !(p === DIR_MARKER && j === parts.length - 1)));
    if (bad >= 0) return `${JSON.stringify(path)} has an unknown internal name ${JSON.stringify(parts[bad])}`;
    entries.push({ path, oid: newOid! });
  }
  const blobs = await new GitRepo(repoDir).readBlobs([...new Set([...entries, ...records].map((e) => e.oid))]);
  for (const r of records) if (blobs.get(r.oid)!.length > MAX_RECORD) return `record ${JSON.stringify(r.path)} is larger than ${MAX_RECORD} bytes`;
  for (const e of entries) {
    try {
      const entry = decodeEntry(blobs.get(e.oid)!, `entry ${e.path}`);
      const isDirMarker = e.path.endsWith(DIR_MARKER) && (e.path === DIR_MARKER || e.path.endsWith('/' + DIR_MARKER));
      if (isDirMarker !== (entry.type === 'dir')) return `${JSON.stringify(e.path)} holds a ${entry.type} entry in the wrong place`;
    } catch (err) {
      return `${JSON.stringify(e.path)}: ${(err as Error).message}`;
    }
  }
  return null;
}

// What a member may push into our metadata repository: only its own ref refs/peers/<its id>,
// fast-forward only, no deletions, well-formed objects, history related to ours, a pack of at
// most MAX_PACK bytes and no blob over MAX_ENTRY_BLOB. Git enforces it (config + a pre-receive
// hook reading DELUGEFS_PEER, which serve-command sets), so a bad push is refused before any ref
// moves and the repository stays as it was (the pushed objects stay in git's quarantine).
import { chmod, mkdir, writeFile, rename } from 'node:fs/promises';
import { join } from 'node:path';
import { run } from '../util/exec.js';
import { MAX_ENTRY_BLOB } from '../meta/repo.js';

/** Largest pack a push may send: far above any legitimate batch of entries (~200 bytes each). */
export const MAX_PACK = 256 * 2 ** 20;

const hook = (maxBlob: number) => `#!/bin/sh
# DelugeFS: a peer may only fast-forward its own ref, refs/peers/<its node id>.
z=0000000000000000000000000000000000000000
while read old new ref; do
  if [ -z "$DELUGEFS_PEER" ] || [ "$ref" != "refs/peers/$DELUGEFS_PEER" ]; then
    echo "delugefs: refused push to $ref: a node may only push refs/peers/<its own id> (refs/peers/$DELUGEFS_PEER)" >&2; exit 1
  fi
  if [ "$new" = "$z" ]; then echo "delugefs: refused: deleting $ref" >&2; exit 1; fi
  if [ "$(git cat-file -t "$new" 2>/dev/null)" != commit ]; then echo "delugefs: refused: $ref is not a commit" >&2; exit 1; fi
  if [ "$old" != "$z" ] && ! git merge-base --is-ancestor "$old" "$new"; then
    echo "delugefs: refused: push to $ref rewrites history" >&2; exit 1
  fi
  if ! git merge-base refs/heads/main "$new" >/dev/null 2>&1; then
    echo "delugefs: refused: $ref has no history in common with this cluster" >&2; exit 1
  fi
  # Sizes from the object headers (batch-check): no pushed blob is read to find out.
  big=$(git rev-list --objects --no-object-names "$new" --not --all | git cat-file --batch-check='%(objecttype) %(objectsize) %(objectname)' |
    awk -v max=${maxBlob} '$1 == "blob" && $2 > max { print $3 " (" $2 " bytes)"; exit }')
  if [ -n "$big" ]; then
    echo "delugefs: refused: $ref carries blob $big, more than the ${maxBlob} bytes an entry may have" >&2; exit 1
  fi
done
exit 0
`;

/** Idempotent: run at every start (an older root may lack it). The limits are for tests. */
export async function guardRepository(repoDir: string, limits: { maxPack?: number; maxBlob?: number } = {}): Promise<void> {
  const git = (...args: string[]) => run('git', [`--git-dir=${repoDir}`, ...args]);
  for (const [k, v] of [
    ['receive.fsckObjects', 'true'], ['fetch.fsckObjects', 'true'], ['receive.denyDeletes', 'true'],
    ['receive.denyNonFastForwards', 'true'], ['receive.advertisePushOptions', 'false'], ['core.hooksPath', 'hooks'],
    // Housekeeping (gc, repack, pack-refs) is the namespace's own (meta/repo.ts maintain()):
    // no second gc started by every push received or fetch made, racing the node's reads.
    ['receive.autogc', 'false'], ['maintenance.auto', 'false'],
    // index-pack stops reading a bigger push at once (the hook only runs once all of it arrived).
    ['receive.maxInputSize', String(limits.maxPack ?? MAX_PACK)],
  ]) await git('config', k!, v!);
  const dir = join(repoDir, 'hooks');
  await mkdir(dir, { recursive: true, mode: 0o700 });
  const tmp = join(dir, 'pre-receive.tmp');
  await writeFile(tmp, hook(limits.maxBlob ?? MAX_ENTRY_BLOB), { mode: 0o700 });
  await chmod(tmp, 0o700);
  await rename(tmp, join(dir, 'pre-receive'));
}

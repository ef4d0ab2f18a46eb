// What a member may push into our metadata repository: a member's latest head into
// refs/nodes/<that member's id> (any member may relay another's: sync gossips them), fast-forward
// only, no deletions, well-formed objects, history related to ours, a pack of at most MAX_PACK
// bytes and no blob over MAX_ENTRY_BLOB. Git enforces it (config + hooks; DELUGEFS_PEER is set
// by serve-command, so only pushes through our server pass).
import { chmod, mkdir, readFile, writeFile, rename } from 'node:fs/promises';
import { join } from 'node:path';
import { run } from '../util/exec.js';
import { MAX_ENTRY_BLOB } from '../meta/repo.js';
import { RECORDS } from '../meta/tree.js';
import { MEMBERS, REVOKED } from './membership.js';

/** Largest pack a push may send: far above any legitimate batch of entries (~200 bytes each). */
export const MAX_PACK = 256 * 2 ** 20;

// What no honest member sends refuses the whole push (pre-receive: before any object leaves the
// quarantine); what an honest member may send in a race (a value of a member we do not know yet,
// or older than ours) refuses that ref alone (update hook, after the objects are in).
const preReceive = (maxBlob: number) => `#!/bin/sh
# DelugeFS pre-receive: refs/nodes/<node id> only, no deletions, commits, no other history's root, small blobs.
z=0000000000000000000000000000000000000000
if [ -z "$DELUGEFS_PEER" ]; then echo "delugefs: refused: pushes come through the node's own server" >&2; exit 1; fi
while read old new ref; do
  case "$ref" in
    refs/nodes/*) ;;
    *) echo "delugefs: refused push to $ref: only refs/nodes/<member id> may be pushed" >&2; exit 1 ;;
  esac
  id=\${ref#refs/nodes/}
  case "$id" in *[!a-z2-7]*) id= ;; esac
  if [ \${#id} -ne 16 ]; then echo "delugefs: refused push to $ref: not a node id" >&2; exit 1; fi
  if [ "$new" = "$z" ]; then echo "delugefs: refused: deleting $ref" >&2; exit 1; fi
  # One pass over what the push brings (a process each for rev-list, cat-file and awk, not one per
  # check: every hop of a change runs this): the first line is $new itself, then every object new
  # here, commits with their parents (a commit without one is a root of another history), with
  # types and sizes from the object headers (no pushed blob is read to find out). The zero id goes
  # last only when rev-list finished, and cat-file answers it "missing" only when it read all the
  # walk: without that line the push is refused (a walk that died checked nothing).
  why=$( { echo "$new"; git rev-list --objects --no-object-names --parents "$new" --not --all && echo $z; } |
    git cat-file --batch-check='%(objecttype) %(objectsize) %(objectname) %(rest)' |
    awk -v max=${maxBlob} -v z=$z '
      NR == 1 { if ($1 != "commit") { print "is not a commit"; bad = 1; exit } next }
      $1 == z && $2 == "missing" { done = 1; next }
      $1 == "commit" && NF == 3 { print "has no history in common with this cluster"; bad = 1; exit }
      $1 == "blob" && $2 > max { print "carries blob " $3 " (" $2 " bytes), more than the " max " bytes an entry may have"; bad = 1; exit }
      END { if (!bad && !done) print "could not be checked (the walk of its objects did not finish)" }')
  if [ -n "$why" ]; then echo "delugefs: refused: $ref $why" >&2; exit 1; fi
done
exit 0
`;

const update = `#!/bin/sh
# DelugeFS update hook (per ref): a member's ref (by our records), fast-forward only.
ref=$1 old=$2 new=$3
z=0000000000000000000000000000000000000000
id=\${ref#refs/nodes/}
# A newer admission reaches us by sync, and the push is made again.
# Both records in one cat-file (pre-receive checked the id): "blob" then "<name> missing" is a member.
rec=$(printf '%s\n' "refs/heads/main:${RECORDS}/${MEMBERS}$id" "refs/heads/main:${RECORDS}/${REVOKED}$id" | git cat-file --batch-check='%(objecttype)')
case "$rec" in
  blob*missing) ;;
  *) echo "delugefs: refused push to $ref: $id is not a member here" >&2; exit 1 ;;
esac
if [ "$old" != "$z" ] && ! git merge-base --is-ancestor "$old" "$new"; then
  echo "delugefs: refused: push to $ref rewrites history" >&2; exit 1
fi
exit 0
`;

/** Idempotent: run at every start (an older root may lack it). The limits are for tests. */
export async function guardRepository(repoDir: string, limits: { maxPack?: number; maxBlob?: number } = {}): Promise<void> {
  const git = (...args: string[]) => run('git', [`--git-dir=${repoDir}`, ...args]);
  // Only what is missing is written, so a start works on a full disk.
  const have = new Set((await git('config', '--local', '--list')).stdout.toString().split('\n'));
  for (const [k, v] of [
    ['receive.fsckObjects', 'true'], ['fetch.fsckObjects', 'true'], ['receive.denyDeletes', 'true'],
    ['receive.denyNonFastForwards', 'true'], ['receive.advertisePushOptions', 'false'], ['core.hooksPath', 'hooks'],
    // Housekeeping (gc, repack, pack-refs) is the namespace's own (meta/repo.ts maintain()):
    // no second gc started by every push received or fetch made, racing the node's reads.
    ['receive.autogc', 'false'], ['maintenance.auto', 'false'],
    // index-pack stops reading a bigger push at once (the hook only runs once all of it arrived).
    ['receive.maxInputSize', String(limits.maxPack ?? MAX_PACK)],
    // A blob past this is streamed by unpack-objects/index-pack, never held whole: 400 MiB of
    // zeros is a 1.8 MB pack, and each receive-pack held all of it before the hook could refuse.
    ['core.bigFileThreshold', String(MAX_ENTRY_BLOB)],
  ]) if (!have.has(`${k!.toLowerCase()}=${v}`)) await git('config', k!, v!);
  const dir = join(repoDir, 'hooks');
  for (const [name, text] of [['pre-receive', preReceive(limits.maxBlob ?? MAX_ENTRY_BLOB)], ['update', update]] as const) {
    if ((await readFile(join(dir, name), 'utf8').catch(() => '')) === text) continue;
    await mkdir(dir, { recursive: true, mode: 0o700 });
    const tmp = join(dir, `${name}.tmp`);
    await writeFile(tmp, text, { mode: 0o700 });
    await chmod(tmp, 0o700);
    await rename(tmp, join(dir, name));
  }
}

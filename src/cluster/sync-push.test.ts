// sync_push on real repositories (no network: the RPC layer is tested on its own): what one node
// works out to send (meta/object-walk.ts) is taken by another exactly as a git push would leave
// it (refs, objects, git fsck clean); and what the hooks refuse is refused here too: a stranger's
// ref, a rewrite, a root of another history, malformed or oversized objects, objects that name
// what is not there (nothing written), wrong types.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Namespace } from '../meta/namespace.js';
import { silentLogger } from '../util/log.js';
import { run } from '../util/exec.js';
import { objectsToSend } from '../meta/object-walk.js';
import { objectId } from '../meta/tree.js';
import { encodePush, receivePush, PushRefused, type PushParams } from './sync-push.js';
import { checkObject, ObjectRefused } from '../meta/object-check.js';
import { T0, dir, file } from '../meta/entry.fixture.js';

const A = 'aaaaaaaaaaaaaaaa', B = 'bbbbbbbbbbbbbbbb', STRANGER = 'ssssssssssssssss';
const git = async (repo: string, ...args: string[]) => (await run('git', [`--git-dir=${repo}`, ...args], { allowFail: true }));
const out = async (repo: string, ...args: string[]) => (await git(repo, ...args)).stdout.toString().trim();
const LIMITS = { maxCommits: 256, maxBytes: 640 * 1024, maxObjects: 20_000 };

async function pair(d: string) {
  const a = await Namespace.create({ dir: join(d, 'a'), nodeId: A, log: silentLogger }, dir, 'create');
  await a.apply({ o: 'put', p: '/docs', e: dir });
  await a.apply({ o: 'put', p: '/docs/one', e: file('one') });
  await a.commit();
  await run('git', ['clone', '--bare', '-q', '--', a.repo.dir, join(d, 'b', 'repo.git')]);
  await git(join(d, 'b', 'repo.git'), 'update-ref', `refs/nodes/${A}`, a.head!);
  const b = await Namespace.open({ dir: join(d, 'b'), nodeId: B, log: silentLogger });
  await b.finishRecovery();
  return { a, b, base: a.head! };
}
const members = (id: string) => id === A || id === B;
const encode = (objects: { type: string; data: Buffer }[], refs: Record<string, string>): PushParams =>
  ({ refs, objects: objects.map((o) => [o.type, o.data.toString('base64')]) });

test('sync push: the objects one node works out are what the other needs; refs move as a push would move them', async () => {
  const d = await mkdtemp(join(tmpdir(), 'dfs-syncpush-'));
  try {
    const { a, b, base } = await pair(d);
    await a.apply({ o: 'put', p: '/deep', e: dir });
    await a.apply({ o: 'put', p: '/deep/er', e: dir });
    for (let i = 0; i < 3; i++) {
      await a.apply({ o: 'put', p: `/docs/f${i}`, e: file(`f${i}`) });
      await a.apply({ o: 'put', p: `/deep/er/g${i}`, e: file(`g${i}`) });
      await a.commit();
    }
    await a.apply({ o: 'put', p: '/new', e: dir });
    await a.apply({ o: 'put', p: '/new/g', e: file('g') });
    await a.apply({ o: 'rm', p: '/docs/one' });
    // A hard link: the '%inodes' tree and a reference blob go through the same checks.
    await a.apply({ o: 'link', p: '/new/g', to: '/docs/g', id: '00112233445566778899aabbccddeeff', t: T0 });
    await a.commit();
    const objects = (await objectsToSend(a.repo, [a.head!], [base], LIMITS))!;
    const commits = objects.filter((o) => o.type === 'commit').length;
    assert.equal(commits, Number(await out(a.repo.dir, 'rev-list', '--count', a.head!, '--not', base)));
    // Every object git itself would send (rev-list --objects); a few more at most (an entry equal
    // to one of an older commit, which a diff against the first parent cannot know).
    const want = (await out(a.repo.dir, 'rev-list', '--objects', '--no-object-names', a.head!, '--not', base)).split('\n');
    const sent = new Set(objects.map((o) => o.oid));
    for (const w of want) assert.ok(sent.has(w), `${w} is sent`);
    assert.ok(sent.size <= want.length + 2, `${sent.size} sent for ${want.length}`);
    const reply = await receivePush({ repo: b.repo, isMember: members, self: B }, encodePush(new Map([[A, a.head!]]), objects));
    assert.deepEqual(reply, { results: { [A]: 'ok' } });
    assert.equal(await out(b.repo.dir, 'rev-parse', `refs/nodes/${A}`), a.head);
    const fsck = await git(b.repo.dir, 'fsck', '--strict', '--no-dangling', `refs/nodes/${A}`);
    assert.equal(fsck.code, 0, fsck.stderr.toString());
    // Again: nothing new, and a value behind ours is no fast-forward.
    assert.deepEqual(await receivePush({ repo: b.repo, isMember: members, self: B }, encode([], { [A]: a.head! })), { results: { [A]: 'ok' } });
    assert.match((await receivePush({ repo: b.repo, isMember: members, self: B }, encode([], { [A]: base }))).results[A]!, /behind/);
    // A stranger's ref is refused alone; the member's beside it lands.
    await a.apply({ o: 'put', p: '/docs/h', e: file('h') });
    await a.commit();
    const more = (await objectsToSend(a.repo, [a.head!], [await out(b.repo.dir, 'rev-parse', `refs/nodes/${A}`)], LIMITS))!;
    assert.equal(more.filter((o) => o.type === 'commit').length, 1);
    const r2 = await receivePush({ repo: b.repo, isMember: members, self: B }, encode(more, { [A]: a.head!, [STRANGER]: a.head! }));
    assert.equal(r2.results[A], 'ok');
    assert.match(r2.results[STRANGER]!, /not a member/);
    assert.equal((await git(b.repo.dir, 'rev-parse', '--verify', '-q', `refs/nodes/${STRANGER}`)).code, 1);
    // A rewrite: a sibling of the member's value.
    const sibling = await out(a.repo.dir, 'commit-tree', `${base}^{tree}`, '-p', base, '-m', 'other');
    const sib = await a.repo.rawObjects([sibling]);
    assert.match((await receivePush({ repo: b.repo, isMember: members, self: B }, encode([...sib.values()], { [A]: sibling }))).results[A]!, /not a fast-forward/);
    await a.close();
    await b.close();
  } finally {
    await rm(d, { recursive: true, force: true });
  }
});

test('sync push: objects that name what is not there write nothing; malformed ones, roots of another history and wrong types are refused', async () => {
  const d = await mkdtemp(join(tmpdir(), 'dfs-syncpush-'));
  try {
    const { a, b, base } = await pair(d);
    await a.apply({ o: 'put', p: '/docs/two', e: file('two') });
    await a.commit();
    const c1 = a.head!;
    await a.apply({ o: 'put', p: '/docs/three', e: file('three') });
    await a.commit();
    // Only the newest commit's objects, as if B held c1: its parent is missing there.
    const partial = (await objectsToSend(a.repo, [a.head!], [c1], LIMITS))!;
    const packs = await out(b.repo.dir, 'count-objects', '-v');
    const r = await receivePush({ repo: b.repo, isMember: members, self: B }, encodePush(new Map([[A, a.head!]]), partial));
    assert.ok(r.missing?.includes(c1), JSON.stringify(r));
    assert.deepEqual(r.results, {});
    assert.equal(await out(b.repo.dir, 'count-objects', '-v'), packs, 'nothing written');
    assert.equal(await out(b.repo.dir, 'rev-parse', `refs/nodes/${A}`), base);

    const refuse = (why: RegExp, objects: { type: string; data: Buffer }[], refs: Record<string, string> = { [A]: base }) =>
      assert.rejects(receivePush({ repo: b.repo, isMember: members, self: B, maxBlob: 1000 }, encode(objects, refs)), (e: Error) => e instanceof PushRefused && why.test(e.message), why.source);
    const tree = (await a.repo.rawObjects([await out(a.repo.dir, 'rev-parse', `${base}^{tree}`)])).values().next().value!.data;
    const commitText = (t: string, parents: string[], extra = '') => Buffer.from(`tree ${t}\n${parents.map((p) => `parent ${p}\n`).join('')}author x <x@d> 1 +0000\ncommitter x <x@d> 1 +0000\n${extra}\nmsg\n`);
    const rootTree = objectId('tree', tree);
    // A root commit not held here: another history.
    await refuse(/no history in common/, [{ type: 'commit', data: commitText(rootTree, []) }], { [A]: objectId('commit', commitText(rootTree, [])) });
    // The root this repository already has is no stranger (a sender that knew nothing sends it).
    const root = await out(b.repo.dir, 'rev-list', '--max-parents=0', base);
    const rootRaw = (await b.repo.rawObjects([root])).get(root)!;
    assert.match((await receivePush({ repo: b.repo, isMember: members, self: B }, encode([rootRaw], { [A]: root }))).results[A]!, /behind/);
    // Objects no member ref reaches, and objects with no member ref at all, are not stored.
    await refuse(/no member ref reaches/, [rootRaw]);
    await refuse(/without a member ref/, [rootRaw], { [STRANGER]: root });
    // This node's own ref moves with its own commits only.
    assert.match((await receivePush({ repo: b.repo, isMember: members, self: B }, encode([], { [B]: base }))).results[B]!, /own ref/);
    // Malformed: a header git would refuse or we never write, a tree in the wrong order or with an odd mode or name, a big blob, a tag.
    await refuse(/header/, [{ type: 'commit', data: commitText(rootTree, [base], 'gpgsig x\n') }]);
    await refuse(/header/, [{ type: 'commit', data: Buffer.from(`tree ${rootTree}\nparent ${base}\nauthor x <x@d> 01 +0000\ncommitter x <x@d> 1 +0000\n\nm`) }]);
    const row = (mode: string, name: string, oid: string) => Buffer.concat([Buffer.from(`${mode} ${name}\0`), Buffer.from(oid, 'hex')]);
    const blob = objectId('blob', Buffer.from('x'));
    await refuse(/order/, [{ type: 'tree', data: Buffer.concat([row('100644', 'b', blob), row('100644', 'a', blob)]) }]);
    await refuse(/twice/, [{ type: 'tree', data: Buffer.concat([row('100644', 'a', blob), row('100644', 'a', blob)]) }]);
    await refuse(/mode/, [{ type: 'tree', data: row('100755', 'a', blob) }]);
    await refuse(/mode/, [{ type: 'tree', data: row('120000', 'a', blob) }]);
    await refuse(/mode/, [{ type: 'tree', data: row('160000', 'a', blob) }]);
    for (const bad of ['.git', 'git~1', 'GITMOD~1', '\u200c.git', '%61', 'a%2Fb', '%zz']) await refuse(/name/, [{ type: 'tree', data: row('100644', bad, blob) }]);
    await refuse(/mode/, [{ type: 'tree', data: row('040000', 'a', rootTree) }]);
    await refuse(/more than/, [{ type: 'blob', data: Buffer.alloc(1001) }]);
    await refuse(/type/, [{ type: 'tag', data: Buffer.from('object x') }]);
    // Wrong types: a ref naming a tree, a tree naming a blob as a directory.
    await refuse(/named as a commit/, [], { [A]: rootTree });
    const blobHere = await out(b.repo.dir, 'rev-parse', `${base}:docs/one`);
    const odd = row('40000', 'x', blobHere);
    const oddCommit = commitText(objectId('tree', odd), [base]);
    await refuse(/named as a tree/, [{ type: 'tree', data: odd }, { type: 'commit', data: oddCommit }], { [A]: objectId('commit', oddCommit) });
    const t2 = Buffer.concat([row('100644', 'x', rootTree)]);
    await refuse(/named as a (tree|blob) and as a (tree|blob)/, [{ type: 'tree', data: t2 }, { type: 'commit', data: commitText(rootTree, [base], '') }].map((o) => o).concat([{ type: 'commit', data: commitText(objectId('tree', t2), [base]) }]), { [A]: objectId('commit', commitText(objectId('tree', t2), [base])) });
    // The call itself.
    for (const bad of [null, {}, { refs: [], objects: [] }, { refs: { [A]: 'zz' }, objects: [] }, { refs: { 'not-an-id': base }, objects: [] }, { refs: {}, objects: [[1, 2]] }]) {
      await assert.rejects(receivePush({ repo: b.repo, isMember: members, self: B }, bad), PushRefused, JSON.stringify(bad));
    }
    assert.equal(await out(b.repo.dir, 'rev-parse', `refs/nodes/${A}`), base, 'no refusal moved a ref');
    await a.close();
    await b.close();
  } finally {
    await rm(d, { recursive: true, force: true });
  }
});

test('object check: what DelugeFS writes passes, ids are computed, not taken', () => {
  const data = Buffer.from('tree 4b825dc642cb6eb9a060e54bf8d69288fbee4904\nparent 4b825dc642cb6eb9a060e54bf8d69288fbee4904\nauthor delugefs <merge@delugefs> 1796279117 +0000\ncommitter delugefs <merge@delugefs> 1796279117 +0000\n\nMerge 2 heads\n');
  const r = checkObject('commit', data, 100);
  assert.equal(r.object.oid, objectId('commit', data));
  assert.deepEqual(r.links.map((l) => l.type), ['tree', 'commit']);
  assert.equal(r.root, false);
  assert.throws(() => checkObject('commit', Buffer.from('tree x\n\nm'), 100), ObjectRefused);
});

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { parseForcedCommand, allowedRepoPaths, CommandRefused } from './command.js';

const paths = allowedRepoPaths("/srv/d1/meta/repo.git");

test('parses the allowed forced commands', () => {
  assert.deepEqual(parseForcedCommand("git-upload-pack '/meta.git'", paths), { kind: 'git', service: 'git-upload-pack', path: '/meta.git' });
  assert.deepEqual(parseForcedCommand("git receive-pack 'meta.git'", paths), { kind: 'git', service: 'git-receive-pack', path: 'meta.git' });
  assert.deepEqual(parseForcedCommand('git-receive-pack /srv/d1/meta/repo.git', paths), { kind: 'git', service: 'git-receive-pack', path: '/srv/d1/meta/repo.git' });
  assert.deepEqual(parseForcedCommand('delugefs-rpc freespace', paths), { kind: 'rpc', method: 'freespace' });
});

test('git-style quoting of odd paths is understood, and odd paths are still refused', () => {
  const odd = allowedRepoPaths("/srv/it's here/repo.git");
  assert.equal((parseForcedCommand(`git-upload-pack '/srv/it'\\''s here/repo.git'`, odd) as { path: string }).path, "/srv/it's here/repo.git");
});

test('refuses everything else', () => {
  for (const c of [
    '', 'ls', 'git-upload-pack', "git-upload-pack '/etc'", "git-upload-pack '/meta.git/../x'", "git-upload-pack '/meta.git/'",
    "git-upload-pack '/meta.git' extra", "git-upload-pack '/meta.git", "git-upload-pack $(id)", 'git-upload-pack `id`',
    "git-upload-pack '/meta.git'\nls", 'delugefs-rpc a b', 'delugefs-rpc ../../x', 'delugefs-rpc ' + 'x'.repeat(65),
    "git-upload-archive '/meta.git'", 'x'.repeat(5000),
  ]) {
    assert.throws(() => parseForcedCommand(c, paths), CommandRefused, JSON.stringify(c));
  }
});

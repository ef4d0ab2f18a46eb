// What `delugefs whereis` prints: a path and a machine name are any member's words, so the text
// carries no terminal control characters.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { renderWhere } from './whereis.js';

test('whereis text has no terminal control characters from names or machines', () => {
  const text = renderWhere([{
    path: '/\x1b[2Jx', error: null, size: 3, id: 'a'.repeat(40), copies: 2,
    holders: [{ nodeId: 'n1', machine: 'm\x1b]0;t\x07', state: 'up', complete: true, have: 0, pieces: 0, reportedAt: null }],
  }, { path: '/\x9bq', error: 'no such file', size: 0, id: null, copies: 2, holders: [] }]);
  assert.doesNotMatch(text, /[\u0000-\u0009\u000b-\u001f\u007f-\u009f]/);
  assert.match(text, /^\/\?\[2Jx: 3 bytes, 1 complete copy/);
  assert.match(text, /n1 \(m\?\]0;t\?, up\)/);
  assert.match(text, /\/\?q: no such file$/);
});

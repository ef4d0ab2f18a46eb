import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ByteLru } from './byte-lru.js';

test('byte lru: the least recently used go past the budget, never the newest; delete and clear give bytes back', () => {
  const l = new ByteLru<string>(10);
  l.set('a', 'A', 4);
  l.set('b', 'B', 4);
  assert.equal(l.get('a'), 'A'); // now b is the oldest
  l.set('c', 'C', 4);
  assert.deepEqual([...l.keys()], ['a', 'c']);
  l.set('a', 'other', 1); // present: left as it is
  assert.equal(l.get('a'), 'A');
  l.set('big', 'X', 50); // alone over the budget: kept, everything else goes
  assert.deepEqual([...l.keys()], ['big']);
  l.delete('big');
  l.set('d', 'D', 10);
  l.set('e', 'E', 0);
  assert.deepEqual([...l.keys()], ['d', 'e'], 'the deleted entry gave its bytes back');
  l.clear();
  assert.equal(l.size, 0);
  l.set('f', 'F', 10);
  assert.equal(l.size, 1);
});

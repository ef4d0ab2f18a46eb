// The page asset without a browser: its CSP names exactly its one script and one style by hash
// (a stale hash would leave the page dead), it fetches nothing from elsewhere, and its script
// uses no markup sinks (names from the cluster go in as text only).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { PAGE, PAGE_CSP } from './page.js';

const sha = (s: string) => `'sha256-${createHash('sha256').update(s).digest('base64')}'`;

test('CSP hashes are the inline script and style; nothing else inline or remote', () => {
  const scripts = [...PAGE.matchAll(/<script>([\s\S]*?)<\/script>/g)].map((m) => m[1]!);
  const styles = [...PAGE.matchAll(/<style>([\s\S]*?)<\/style>/g)].map((m) => m[1]!);
  assert.equal(scripts.length, 1);
  assert.equal(styles.length, 1);
  assert.ok(PAGE_CSP.includes(`script-src ${sha(scripts[0]!)};`), 'script hash');
  assert.ok(PAGE_CSP.includes(`style-src ${sha(styles[0]!)};`), 'style hash');
  assert.match(PAGE_CSP, /^default-src 'none';/);
  assert.doesNotMatch(PAGE_CSP, /unsafe-|\*/);
  assert.doesNotMatch(PAGE, /\s(on[a-z]+|style)=/i, 'no inline handlers or style attributes (the CSP would block them)');
  assert.doesNotMatch(PAGE, /(https?:)?\/\/[a-z0-9.-]+\.[a-z]{2,}/i, 'no external URL');
});

test('the script puts data in as text only', () => {
  assert.doesNotMatch(PAGE, /innerHTML|outerHTML|insertAdjacentHTML|document\.write|\beval\(|new Function|setAttribute\(\s*['"]on/);
  assert.match(PAGE, /textContent/);
});

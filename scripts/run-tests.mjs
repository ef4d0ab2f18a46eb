#!/usr/bin/env node
// Runs every compiled test (dist/**/*.test.js) with node's test runner, one file at a time:
// the tests mount FUSE filesystems and start peers, and the machine has two cores.
// Usage: node scripts/run-tests.mjs [substring ...]   (only files whose path contains one)
import { readdirSync, statSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { spawnSync } from 'node:child_process';

function walk(dir, out = []) {
  for (const name of readdirSync(dir)) {
    const p = join(dir, name);
    if (statSync(p).isDirectory()) walk(p, out);
    else if (name.endsWith('.test.js')) out.push(p);
  }
  return out;
}

const filters = process.argv.slice(2);
const files = walk('dist').sort().filter((f) => !filters.length || filters.some((s) => f.includes(s)));
if (!files.length) {
  console.error('no test files matched');
  process.exit(1);
}
// Running nodes register in a run directory (local joins of second disks): one of our own, so
// tests never see (or join) a real node of this machine.
const runDir = mkdtempSync(join(tmpdir(), 'dfs-sync-run-'));
const r = spawnSync(process.execPath, ['--test', '--test-concurrency=1', ...files], { stdio: 'inherit', env: { ...process.env, DELUGEFS_RUN_DIR: runDir } });
rmSync(runDir, { recursive: true, force: true });
process.exit(r.status ?? 1);

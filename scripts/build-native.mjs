#!/usr/bin/env node
// Builds the FUSE module (src/fuse/native) when it is missing or older than its source, so a
// checkout whose node_modules predate it still builds with `npm run build`. `npm ci` builds it too.
import { spawnSync } from 'node:child_process';
import { statSync } from 'node:fs';

const mtime = (p) => { try { return statSync(p).mtimeMs; } catch { return 0; } };
const out = mtime('build/Release/devfuse.node');
if (out && out >= mtime('src/fuse/native/devfuse.c') && out >= mtime('binding.gyp')) process.exit(0);
const r = spawnSync('node-gyp', ['rebuild'], { stdio: 'inherit' });
if (r.status !== 0) {
  console.error('building the FUSE module failed: it needs g++, make and python3 (apt-get install g++ make python3)');
  process.exit(1);
}

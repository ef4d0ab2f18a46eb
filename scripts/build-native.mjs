#!/usr/bin/env node
// Builds the native modules (src/fuse/native, src/native) when one is missing or older than its
// source, so a checkout whose node_modules predate it still builds with `npm run build`. `npm ci`
// builds them too.
import { spawnSync } from 'node:child_process';
import { statSync } from 'node:fs';

const mtime = (p) => { try { return statSync(p).mtimeMs; } catch { return 0; } };
const fresh = (out, src) => mtime(out) && mtime(out) >= mtime(src) && mtime(out) >= mtime('binding.gyp');
if (fresh('build/Release/devfuse.node', 'src/fuse/native/devfuse.c') && fresh('build/Release/flock.node', 'src/native/flock.c')
  && fresh('build/Release/fileops.node', 'src/native/fileops.c') && fresh('build/Release/sdnotify.node', 'src/native/sdnotify.c')) process.exit(0);
const r = spawnSync('node-gyp', ['rebuild'], { stdio: 'inherit' });
if (r.status !== 0) {
  console.error('building the native modules failed: it needs g++, make and python3 (apt-get install g++ make python3)');
  process.exit(1);
}

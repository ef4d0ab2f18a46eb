// contrib/: the systemd unit passes `systemd-analyze verify` (a broken copy does not, so the check
// can fail), its start guard refuses a root without a node, and its command line, expanded as
// systemd does from the example config, parses to the node it describes.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { runProc } from '../testing/proc.js';
import { CLI } from '../testing/node-proc.js';
import { parseArgs, RunArgs } from './args.js';

const CONTRIB = new URL('../../contrib/', import.meta.url).pathname;
const UNIT = join(CONTRIB, 'systemd/delugefs@.service');
const dir = await mkdtemp(join(tmpdir(), 'dfs-contrib-'));
after(() => rm(dir, { recursive: true, force: true }));

const onPath = async (cmd: string) => (await runProc('sh', ['-c', `command -v ${cmd}`])).code === 0;
// CI installs systemd (.ci/run): there a missing systemd-analyze is a failure, not a skip.
const noAnalyze = !(await onPath('systemd-analyze')) && !process.env.CI && 'systemd-analyze is not installed (apt-get install systemd)';

/** The unit's [Service] values for `key`, in order. */
async function unitValues(key: string): Promise<string[]> {
  return (await readFile(UNIT, 'utf8')).split('\n').filter((l) => l.startsWith(`${key}=`)).map((l) => l.slice(key.length + 1));
}

/** `systemd-analyze verify` on `text` as delugefs@test.service: its exit code and what it said about this unit. */
async function verify(text: string): Promise<{ code: number | null; said: string[] }> {
  const d = await mkdtemp(join(dir, 'unit-'));
  const file = join(d, 'delugefs@test.service');
  await writeFile(file, text);
  const r = await runProc('systemd-analyze', ['verify', file], { timeoutMs: 60_000 }).catch((e: NodeJS.ErrnoException) => {
    throw e.code === 'ENOENT' ? new Error('systemd-analyze is not installed (apt-get install systemd; .ci/run does)') : e;
  });
  const said = (r.stdout + r.stderr).split('\n').filter((l) => l.includes('delugefs@test.service'));
  return { code: r.code, said };
}

test('the systemd unit passes systemd-analyze verify; a broken one does not', { skip: noAnalyze }, async () => {
  const unit = await readFile(UNIT, 'utf8');
  const bin = '/usr/local/bin/delugefs ';
  assert.ok(unit.includes(`ExecStart=${bin}`), 'ExecStart runs /usr/local/bin/delugefs');
  // verify checks that ExecStart's binary exists: the test copy runs the CLI built here instead.
  const here = unit.replace(`ExecStart=${bin}`, `ExecStart=${process.execPath} ${CLI} `);
  const ok = await verify(here);
  assert.deepEqual(ok.said, []);
  assert.equal(ok.code, 0);
  // What the check above would report: a bad value, an unknown key, a missing binary.
  const broken = await verify(here.replace('[Service]\n', '[Service]\nType=notfy\nKilMode=mixed\n'));
  assert.match(broken.said.join('\n'), /Failed to parse service type.*notfy/);
  assert.match(broken.said.join('\n'), /Unknown key.*KilMode/);
  const missing = await verify(unit);
  assert.match(missing.said.join('\n'), /\/usr\/local\/bin\/delugefs is not executable/);
  assert.notEqual(missing.code, 0);
});

test('the unit is Type=notify, stops the node alone, and starts only a root that holds a node', async () => {
  assert.deepEqual(await unitValues('Type'), ['notify']);
  assert.deepEqual(await unitValues('KillMode'), ['mixed']);
  assert.deepEqual(await unitValues('EnvironmentFile'), ['/etc/delugefs/%i.conf']);
  const [pre] = await unitValues('ExecStartPre');
  const m = /^\/bin\/sh -c '(.*)'$/.exec(pre ?? '');
  assert.ok(m, `ExecStartPre is /bin/sh -c '...': ${pre}`);
  // systemd's own expansion: $$ is $, %i the instance.
  const script = m[1]!.replace(/\$\$/g, '$').replace(/%i/g, 'test');
  const node = join(dir, 'node');
  await mkdir(join(node, 'config'), { recursive: true });
  await writeFile(join(node, 'config/node.json'), '{}');
  await mkdir(join(dir, 'empty'));
  const guard = (env: NodeJS.ProcessEnv) => runProc('/bin/sh', ['-c', script], { env: { PATH: '/usr/bin:/bin', ...env } });
  assert.equal((await guard({ ROOT: node })).code, 0);
  const empty = await guard({ ROOT: join(dir, 'empty') });
  assert.equal(empty.code, 1);
  assert.match(empty.stderr, /delugefs@test: ROOT=.*empty \(\/etc\/delugefs\/test\.conf\) holds no DelugeFS node/);
  assert.equal((await guard({})).code, 1);
});

/** ExecStart's words as systemd expands them: ${VAR} in place, a lone $VAR split at spaces (none when empty). */
function expand(line: string, env: Record<string, string>): string[] {
  return line.split(/\s+/).flatMap((w) => {
    const lone = /^\$([A-Za-z_]\w*)$/.exec(w);
    if (lone) return (env[lone[1]!] ?? '').split(/\s+/).filter(Boolean);
    return [w.replace(/\$\{([A-Za-z_]\w*)\}/g, (_, k: string) => env[k] ?? '')];
  });
}

async function exampleConf(): Promise<Record<string, string>> {
  const text = await readFile(join(CONTRIB, 'systemd/delugefs.conf.example'), 'utf8');
  return Object.fromEntries(text.split('\n').filter((l) => /^[A-Z_]+=/.test(l)).map((l) => [l.slice(0, l.indexOf('=')), l.slice(l.indexOf('=') + 1).trim()]));
}

test('ExecStart with the example config is that node; an empty MOUNT is storage only', async () => {
  const [start] = await unitValues('ExecStart');
  const conf = await exampleConf();
  const [bin, ...argv] = expand(start!, conf);
  assert.equal(bin, '/usr/local/bin/delugefs');
  const a = parseArgs(argv) as RunArgs;
  assert.equal(a.command, 'run');
  assert.deepEqual([a.cluster, a.root, a.mount, a.allowOther, a.webPort], ['bigstore', '/tank/delugefs', '/mnt/bigstore', true, 9360]);
  const bare = parseArgs(expand(start!, { CLUSTER: 'bigstore', ROOT: '/mnt/disk2/.bigstoredb', MOUNT: '' }).slice(1)) as RunArgs;
  assert.deepEqual([bare.cluster, bare.root, bare.mount], ['bigstore', '/mnt/disk2/.bigstoredb', undefined]);
});

// contrib/: the systemd unit passes `systemd-analyze verify` (a broken copy does not, so the check
// can fail), its start guard refuses a root without a node, and its command line, expanded as
// systemd does from the example config, parses to the node it describes; the FreeBSD rc.d script
// passes `sh -n`, and run against a recording stand-in for rc.subr (FreeBSD's is not here) gives
// each profile its own root, mount, pidfile and daemon(8) command line.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { chmod, mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { runProc } from '../testing/proc.js';
import { CLI } from '../testing/node-proc.js';
import { parseArgs, RunArgs } from './args.js';

const CONTRIB = new URL('../../contrib/', import.meta.url).pathname;
const UNIT = join(CONTRIB, 'systemd/delugefs@.service');
const RCD = join(CONTRIB, 'freebsd/delugefs');
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

// A stand-in for rc.subr: the calls the script makes, and a run_rc_command that does what
// FreeBSD's does before it starts a command (rcvar check, rc_flags from NAME_flags, start_precmd)
// and then prints the command instead of running it.
const RC_SUBR = `
rc_service=$0
load_rc_config() { . "$TEST_RC_CONF"; }
err() { _x=$1; shift; echo "ERROR: $*" >&2; exit $_x; }
warn() { echo "WARNING: $*" >&2; }
checkyesno() { eval "_v=\\$$1"; case $_v in [Yy][Ee][Ss]) return 0 ;; *) return 1 ;; esac; }
run_rc_command() {
  checkyesno $rcvar || { echo "disabled $pidfile"; return 0; }
  eval rc_flags=\\$\${name}_flags
  eval _user=\\$\${name}_user
  $start_precmd || { echo "precmd failed"; return 1; }
  echo "run[$_user] $command $rc_flags $command_args"
  echo "pidfile $pidfile modules $required_modules"
}
`;

async function rcd(conf: string, ...args: string[]): Promise<{ code: number | null; out: string; err: string }> {
  const d = await mkdtemp(join(dir, 'rcd-'));
  const script = (await readFile(RCD, 'utf8')).replace('. /etc/rc.subr', `. ${join(d, 'rc.subr')}`);
  assert.notEqual(script, await readFile(RCD, 'utf8'));
  await writeFile(join(d, 'rc.subr'), RC_SUBR);
  await writeFile(join(d, 'delugefs'), script);
  await chmod(join(d, 'delugefs'), 0o755);
  await writeFile(join(d, 'rc.conf'), conf);
  const r = await runProc(join(d, 'delugefs'), args, { env: { TEST_RC_CONF: join(d, 'rc.conf'), PATH: '/usr/bin:/bin' } });
  return { code: r.code, out: r.stdout.replaceAll(d, 'D'), err: r.stderr.replaceAll(d, 'D') };
}

test('the rc.d script: sh -n, knobs, profiles, and the checks before a start', async () => {
  assert.equal((await runProc('sh', ['-n', RCD])).code, 0);
  const node = join(dir, 'rcnode');
  await mkdir(join(node, 'config'), { recursive: true });
  await writeFile(join(node, 'config/node.json'), '{}');
  const bin = 'delugefs_command=/bin/true\n';

  const one = await rcd(`${bin}delugefs_enable=YES\ndelugefs_cluster=bigstore\ndelugefs_root=${node}\ndelugefs_mount=/mnt/bigstore\ndelugefs_flags="--allow-other --no-mdns"\n`, 'start');
  assert.equal(one.code, 0, one.err);
  // daemon(8) stays root (no su: its pidfile is in /var/run) and gets none of the node's flags.
  assert.equal(one.out, `run[] /usr/sbin/daemon  -P /var/run/delugefs.pid -R 10 -S -T delugefs -t delugefs -u root /bin/true --cluster bigstore --root ${node} --mount /mnt/bigstore --allow-other --no-mdns\n`
    + 'pidfile /var/run/delugefs.pid modules fusefs\n');

  const profiles = `${bin}delugefs_enable=YES\ndelugefs_cluster=bigstore\ndelugefs_root=/plain\ndelugefs_mount=/mnt/plain\ndelugefs_profiles="main disk2 off"\n`
    + `delugefs_main_root=${node}\ndelugefs_main_mount=/mnt/bigstore\ndelugefs_disk2_root=${node}\ndelugefs_disk2_user=dfs\n`
    + `delugefs_off_root=/nowhere\ndelugefs_off_enable=NO\ndelugefs_main_user=\n`;
  const all = await rcd(profiles, 'start');
  assert.equal(all.code, 0, all.err);
  const lines = all.out.split('\n');
  assert.deepEqual(lines.filter((l) => l.startsWith('===>')), ['===> delugefs profile: main', '===> delugefs profile: disk2', '===> delugefs profile: off']);
  const runs = lines.filter((l) => l.startsWith('run'));
  assert.equal(runs.length, 2);
  assert.match(runs[0]!, /-P \/var\/run\/delugefs\.main\.pid .*-T delugefs-main .*-u root .*--cluster bigstore --root \S+rcnode --mount \/mnt\/bigstore\s*$/);
  // disk2: the cluster inherited, no mount (root and mount are never inherited), its own user.
  assert.match(runs[1]!, /-P \/var\/run\/delugefs\.disk2\.pid .*-T delugefs-disk2 .*-u dfs .*--cluster bigstore --root \S+rcnode\s*$/);
  assert.ok(lines.includes('disabled /var/run/delugefs.off.pid'));

  const just = await rcd(profiles, 'start', 'disk2');
  assert.equal(just.out.split('\n').filter((l) => l.startsWith('run')).length, 1);
  assert.match(just.out, /delugefs\.disk2\.pid/);
  const unknown = await rcd(profiles, 'start', 'nope');
  assert.equal(unknown.code, 1);
  assert.match(unknown.err, /profile 'nope' is not in delugefs_profiles/);

  const noNode = await rcd(`${bin}delugefs_enable=YES\ndelugefs_cluster=bigstore\ndelugefs_root=${join(dir, 'empty-root')}\n`, 'start');
  assert.match(noNode.out, /precmd failed/);
  assert.match(noNode.err, /empty-root holds no DelugeFS node: create or join it once by hand, or mount its disk first/);
  const noCluster = await rcd(`${bin}delugefs_enable=YES\ndelugefs_root=${node}\n`, 'start');
  assert.match(noCluster.err, /set the cluster and root knobs/);
  const noBin = await rcd(`delugefs_enable=YES\ndelugefs_cluster=bigstore\ndelugefs_root=${node}\ndelugefs_command=/nonexistent/delugefs\n`, 'start');
  assert.match(noBin.err, /\/nonexistent\/delugefs is missing/);
});

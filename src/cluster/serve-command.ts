// Runs one forced command over a pair of streams. The embedded SSH server hands it a channel; the
// `delugefs shell` entry point hands it the process's stdio under a foreign sshd. Same code, same rules.
import { spawn } from 'node:child_process';
import type { Readable, Writable } from 'node:stream';
import { CommandRefused, ForcedCommand, allowedRepoPaths, parseForcedCommand } from './command.js';
import { DEFAULT_MAX_RPC_INPUT, PeerInfo, RpcDispatcher, RpcReply } from './rpc.js';
import type { Log } from './log.js';

export interface CommandIO {
  stdin: Readable;
  stdout: Writable;
  stderr: Writable;
}

/** Bytes taken while a request's input is buffered, given back when it is parsed. */
export interface InputBudget {
  take(n: number): boolean;
  give(n: number): void;
}

export interface CommandContext {
  /** The node's metadata repository (ROOT/meta/repo.git), the only one a peer may reach. */
  repoPath: string;
  rpc: RpcDispatcher;
  peer: PeerInfo;
  log: Log;
  /** Called (and awaited) after a receive-pack exits 0, so the node can merge what was pushed. */
  onReceivePack?: (peer: PeerInfo) => unknown;
  /** The client's GIT_PROTOCOL (e.g. `version=2`), passed on to git when well-formed. */
  gitProtocol?: string;
  maxRpcInput?: number;
  /** Shared cap on RPC input buffered at once (all requests of a pool together); none if absent. */
  inputBudget?: InputBudget;
  /** For guests (peer.member === false): the only RPC methods they may call; no git at all. */
  guestMethods?: readonly string[];
  /** Aborted when the client goes away: the git child is killed. */
  signal?: AbortSignal;
}

/** Parses and runs `command`; resolves with the exit status to report to the client. */
export async function serveCommand(command: string, io: CommandIO, ctx: CommandContext): Promise<number> {
  let cmd: ForcedCommand;
  try {
    cmd = parseForcedCommand(command, allowedRepoPaths(ctx.repoPath));
  } catch (err) {
    if (!(err instanceof CommandRefused)) throw err;
    ctx.log('command_refused', { peer: ctx.peer.nodeId, address: ctx.peer.address, reason: err.reason, command: err.command }, 'warn');
    io.stderr.write(`delugefs: ${err.message}\n`);
    return 1;
  }
  if (ctx.peer.member === false && !(cmd.kind === 'rpc' && (ctx.guestMethods ?? []).includes(cmd.method))) {
    ctx.log('command_refused', { peer: ctx.peer.nodeId, address: ctx.peer.address, reason: 'not a member', command: command.slice(0, 200) }, 'warn');
    io.stderr.write('delugefs: refused command: not a member of this cluster\n');
    return 1;
  }
  if (cmd.kind === 'rpc') return serveRpc(cmd.method, io, ctx);
  return serveGit(cmd.service, io, ctx);
}

function serveGit(service: 'git-upload-pack' | 'git-receive-pack', io: CommandIO, ctx: CommandContext): Promise<number> {
  const started = Date.now();
  const env: NodeJS.ProcessEnv = { PATH: process.env.PATH ?? '/usr/bin:/bin', HOME: process.env.HOME ?? '/', DELUGEFS_PEER: ctx.peer.nodeId };
  if (ctx.gitProtocol && /^version=[0-2](:version=[0-2])*$/.test(ctx.gitProtocol)) env.GIT_PROTOCOL = ctx.gitProtocol;
  // `git upload-pack DIR` rather than `git-upload-pack`: the dashed binaries are not on PATH everywhere (FreeBSD).
  const child = spawn('git', [service.slice(4), '--', ctx.repoPath], { cwd: ctx.repoPath, env, stdio: ['pipe', 'pipe', 'pipe'] });
  const onAbort = () => child.kill('SIGTERM');
  ctx.signal?.addEventListener('abort', onAbort, { once: true });
  io.stdin.pipe(child.stdin);
  child.stdin.on('error', () => {}); // the child may exit before reading everything (EPIPE)
  child.stdout.pipe(io.stdout, { end: false });
  child.stderr.pipe(io.stderr, { end: false });
  return new Promise((resolve) => {
    let failed = false;
    child.on('error', (err) => {
      failed = true;
      ctx.log('git_spawn_failed', { service, error: err.message }, 'warn');
      io.stderr.write(`delugefs: cannot run ${service}\n`);
      resolve(1);
    });
    child.on('close', (code, sig) => {
      if (failed) return;
      ctx.signal?.removeEventListener('abort', onAbort);
      io.stdin.unpipe(child.stdin);
      const status = code ?? 128;
      ctx.log('git_served', { service, peer: ctx.peer.nodeId, address: ctx.peer.address, protocol: env.GIT_PROTOCOL, status, signal: sig ?? undefined, ms: Date.now() - started });
      if (status === 0 && service === 'git-receive-pack' && ctx.onReceivePack) {
        // Awaited, so a `delugefs shell` process has told the node before it exits; the
        // embedded node's hook should only schedule its merge and return.
        Promise.resolve()
          .then(() => ctx.onReceivePack!(ctx.peer))
          .catch((err) => ctx.log('receive_hook_failed', { error: (err as Error)?.message ?? String(err) }, 'warn'))
          .then(() => resolve(status));
        return;
      }
      resolve(status);
    });
  });
}

async function serveRpc(method: string, io: CommandIO, ctx: CommandContext): Promise<number> {
  const max = ctx.maxRpcInput ?? DEFAULT_MAX_RPC_INPUT;
  const started = Date.now();
  let reply: RpcReply;
  const input = await readAll(io.stdin, max, ctx.inputBudget);
  if (input === 'busy') {
    ctx.log('rpc_refused', { method, peer: ctx.peer.nodeId, reason: 'input budget exhausted' }, 'warn');
    reply = { ok: false, error: { code: 'busy', message: 'the node is buffering too much rpc input right now; retry in a moment' } };
  } else if (input === null) {
    ctx.log('rpc_refused', { method, peer: ctx.peer.nodeId, reason: `input larger than ${max} bytes` }, 'warn');
    reply = { ok: false, error: { code: 'too_large', message: `rpc input larger than ${max} bytes` } };
  } else {
    let params: unknown = null;
    let parsed = true;
    if (input.length) {
      try {
        params = JSON.parse(input.toString('utf8'));
      } catch {
        parsed = false;
      }
    }
    if (!parsed) {
      ctx.log('rpc_refused', { method, peer: ctx.peer.nodeId, reason: 'malformed JSON input' }, 'warn');
      reply = { ok: false, error: { code: 'bad_json', message: 'rpc input is not valid JSON' } };
    } else {
      reply = await ctx.rpc.dispatch(method, params, ctx.peer, ctx.signal);
      ctx.log('rpc', { method, peer: ctx.peer.nodeId, ok: reply.ok, code: reply.ok ? undefined : reply.error.code, ms: Date.now() - started });
    }
  }
  let text: string;
  try {
    text = JSON.stringify(reply);
  } catch (err) {
    reply = { ok: false, error: { code: 'handler_error', message: `result not serialisable: ${(err as Error).message}` } };
    text = JSON.stringify(reply);
  }
  await new Promise<void>((resolve) => io.stdout.write(text + '\n', () => resolve()));
  return reply.ok ? 0 : 1;
}

/**
 * Reads a stream to its end; null when it exceeds `max` bytes, 'busy' when `budget` has no room
 * (the rest is discarded either way). What was taken from the budget is given back at the end.
 */
function readAll(stream: Readable, max: number, budget?: InputBudget): Promise<Buffer | null | 'busy'> {
  return new Promise((resolve) => {
    const chunks: Buffer[] = [];
    let size = 0;
    let over: false | 'large' | 'busy' = false;
    let finished = false;
    const done = () => {
      stream.off('end', done);
      stream.off('close', done);
      stream.off('error', done);
      stream.resume(); // keep draining so a sender past the limit is not stuck on flow control
      if (finished) return;
      finished = true;
      budget?.give(size);
      const out = over === 'busy' ? 'busy' : over ? null : Buffer.concat(chunks);
      chunks.length = 0;
      resolve(out);
    };
    const onData = (c: Buffer) => {
      if (over) return; // discarded: the answer went out already
      if (size + c.length > max || !(budget?.take(c.length) ?? true)) {
        over = size + c.length > max ? 'large' : 'busy';
        chunks.length = 0;
        done(); // answer at once; whatever else arrives is ignored
        return;
      }
      size += c.length;
      chunks.push(c);
    };
    stream.on('data', onData);
    stream.on('end', done);
    stream.on('close', done);
    stream.on('error', done);
  });
}

// The forced commands a peer may run, parsed from the SSH exec string. One parser serves both the
// embedded SSH server and `delugefs shell` under a foreign sshd, so the rules cannot drift apart.
// Nothing here ever reaches a shell; the strict parse is so that odd input is refused loudly.

export type GitService = 'git-upload-pack' | 'git-receive-pack';
export type ForcedCommand =
  | { kind: 'git'; service: GitService; path: string }
  | { kind: 'rpc'; method: string };

export class CommandRefused extends Error {
  constructor(readonly reason: string, readonly command: string) {
    super(`refused command: ${reason}`);
  }
}

/** The virtual path peers use for the metadata repository (`ssh://host:port/meta.git`). */
export const META_REPO_URL_PATH = '/meta.git';
export const RPC_COMMAND = 'delugefs-rpc';
export const RPC_METHOD_RE = /^[A-Za-z][A-Za-z0-9_.-]{0,63}$/;
const MAX_COMMAND_LENGTH = 4096;

/**
 * Parses one shell word as git's ssh transport quotes it: single-quoted runs, with `\'` and `\!`
 * escapes between them (git writes `a'b` as `'a'\''b'`). Unquoted text is limited to a safe set.
 */
function parseWord(s: string): string {
  let out = '';
  let i = 0;
  while (i < s.length) {
    const c = s[i];
    if (c === "'") {
      const end = s.indexOf("'", i + 1);
      if (end < 0) throw new Error('unterminated quote');
      out += s.slice(i + 1, end);
      i = end + 1;
    } else if (c === '\\') {
      if (i + 1 >= s.length) throw new Error('dangling backslash');
      out += s[i + 1];
      i += 2;
    } else if (/[A-Za-z0-9_./~+@:=,-]/.test(c)) {
      out += c;
      i++;
    } else {
      throw new Error(`unexpected character ${JSON.stringify(c)}`);
    }
  }
  return out;
}

/**
 * Parses `git-upload-pack '<path>'`, `git-receive-pack '<path>'` (also the `git upload-pack`
 * spelling) or `delugefs-rpc METHOD`. `repoPaths` are the only accepted repository paths,
 * compared as exact strings after unquoting: no normalisation, so `..` and symlink tricks can
 * never name anything else.
 */
export function parseForcedCommand(command: string, repoPaths: readonly string[]): ForcedCommand {
  const refuse = (reason: string): never => { throw new CommandRefused(reason, command.slice(0, 200)); };
  if (command.length > MAX_COMMAND_LENGTH) refuse('command too long');
  if (/[\0\n\r]/.test(command)) refuse('control characters in command');
  const m = /^(git-upload-pack|git-receive-pack|git upload-pack|git receive-pack|delugefs-rpc) +(.+?)\s*$/.exec(command);
  if (!m) refuse(`not an allowed command (only git-upload-pack, git-receive-pack, ${RPC_COMMAND})`);
  const [, verb, rest] = m!;
  if (verb === RPC_COMMAND) {
    if (!RPC_METHOD_RE.test(rest)) refuse('malformed rpc method name');
    return { kind: 'rpc', method: rest };
  }
  let path = '';
  try {
    path = parseWord(rest);
  } catch (err) {
    refuse(`malformed repository argument: ${(err as Error).message}`);
  }
  if (!repoPaths.includes(path)) refuse(`repository path not allowed: ${JSON.stringify(path.slice(0, 200))}`);
  const service = verb.replace(' ', '-') as GitService;
  return { kind: 'git', service, path };
}

/** The repository paths a peer may name: the virtual path (with or without slash) and the real one. */
export function allowedRepoPaths(realRepoPath: string): string[] {
  return [META_REPO_URL_PATH, META_REPO_URL_PATH.slice(1), realRepoPath];
}

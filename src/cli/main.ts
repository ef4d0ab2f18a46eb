#!/usr/bin/env -S node --max-semi-space-size=4
// The `delugefs` command.
import { readFileSync } from 'node:fs';
import { parseArgs, UsageError, USAGE } from './args.js';
import { runNode, CheckError } from './run.js';
import { runSubcommand, SUBCOMMANDS } from './commands.js';
import { runDemo } from './demo.js';
import { printable } from '../util/text.js';

function version(): string {
  // Read once at start, before any mount exists.
  return JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')).version;
}

async function main(argv: string[]): Promise<void> {
  // Everything this process and its children (git, ssh) create is the user's alone: the node
  // root must never be readable by others (files made through the mount get their modes from
  // the caller, not from this umask; the mount point is never created or changed).
  process.umask(0o077);
  let args;
  try {
    // Subcommand names are reserved words: they cannot be cluster names.
    if (argv[0] && (SUBCOMMANDS.includes(argv[0]) || argv[0] === 'demo')) {
      try {
        return await (argv[0] === 'demo' ? runDemo(argv.slice(1)) : runSubcommand(argv[0], argv.slice(1)));
      } catch (e) {
        if (e instanceof UsageError) throw e;
        fail(e);
      }
    }
    args = parseArgs(argv);
  } catch (e) {
    if (e instanceof UsageError) {
      process.stderr.write(`delugefs: ${e.message}\nRun "delugefs --help" for usage.\n`);
      process.exit(2);
    }
    throw e;
  }
  if (args.command === 'help') return void process.stdout.write(USAGE + '\n');
  if (args.command === 'version') return void process.stdout.write(`delugefs ${version()}\n`);
  try {
    await runNode(args);
  } catch (e) {
    fail(e);
  }
}

/** Exit 1 for a refusal, 3 for anything else; the message may quote a peer (a member's refusal, a reply over the LAN): no terminal escapes. */
function fail(e: unknown): never {
  process.stderr.write(`delugefs: ${(e as Error).message.split('\n').map(printable).join('\n')}\n`);
  process.exit(e instanceof CheckError ? 1 : 3);
}

void main(process.argv.slice(2));

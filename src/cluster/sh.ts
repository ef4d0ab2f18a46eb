// POSIX shell quoting, for the few places where a command line must pass through a shell
// (GIT_SSH_COMMAND, authorized_keys `command=`).
export function shQuote(s: string): string {
  if (/^[A-Za-z0-9_./:=@%+,-]+$/.test(s)) return s;
  return `'${s.replace(/'/g, `'\\''`)}'`;
}

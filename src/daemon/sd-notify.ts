// Readiness and stop reported to systemd when it started the node as a Type=notify service
// (contrib/systemd/delugefs@.service): READY=1 once the node is up (its mount answering),
// STOPPING=1 when it begins to stop, with a STATUS= line for `systemctl status`. Without
// $NOTIFY_SOCKET (started by hand, by tests, on FreeBSD) nothing is loaded and nothing is sent.
// The datagram leaves from this process itself (src/native/sdnotify.c), not from a
// `systemd-notify` child: that child needs NotifyAccess=all (then git and ssh children could
// speak for the node too), and systemd may fail to tie its message to the unit once it exited.
import { constants } from 'node:os';
import { loadSdNotify, SdNotifyModule } from '../native/sdnotify.js';

export interface SdNotifier {
  /** The socket the messages go to. */
  readonly address: string;
  /** Sends KEY=value lines in one datagram; null when sent, else why not (an errno name). */
  notify(fields: Record<string, string>): string | null;
}

/**
 * A notifier for $NOTIFY_SOCKET, or null when it is unset or empty. The variable is removed from
 * `env` (as sd_notify's unset_environment does), so children (git, ssh, fusermount3) never see it.
 * An address that is neither a path nor "@name" throws: the service manager expects READY=1, and
 * a start that can never report it should say so at once rather than time out.
 */
export function sdNotifier(env: NodeJS.ProcessEnv = process.env, load: () => SdNotifyModule = loadSdNotify): SdNotifier | null {
  const address = env.NOTIFY_SOCKET;
  delete env.NOTIFY_SOCKET;
  if (!address) return null;
  if (!/^[/@]./.test(address)) throw new Error(`NOTIFY_SOCKET=${address}: only unix sockets (a path or @name) are supported; start delugefs as a Type=simple service instead`);
  const mod = load();
  return {
    address,
    notify(fields) {
      const rc = mod.notify(address, formatState(fields));
      return rc === 0 ? null : errnoName(-rc);
    },
  };
}

/** "KEY=value\n" lines; values are single lines (a newline would start a new key). */
export function formatState(fields: Record<string, string>): string {
  return Object.entries(fields).map(([k, v]) => {
    if (!/^[A-Z][A-Z0-9_]*$/.test(k)) throw new Error(`sd_notify key ${JSON.stringify(k)} is not a variable name`);
    return `${k}=${v.replace(/[\r\n]+/g, ' ')}\n`;
  }).join('');
}

function errnoName(n: number): string {
  return Object.entries(constants.errno).find(([, v]) => v === n)?.[0] ?? `errno ${n}`;
}

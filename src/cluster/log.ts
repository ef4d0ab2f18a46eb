// Structured logs: one JSON object per line and event, so operators can grep and tools can parse.
export type LogFields = Record<string, unknown>;
export type Log = (event: string, fields?: LogFields) => void;

export function jsonLog(component: string, write: (line: string) => void = (l) => process.stderr.write(l)): Log {
  return (event, fields = {}) => {
    write(JSON.stringify({ t: new Date().toISOString(), c: component, event, ...fields }) + '\n');
  };
}

/** A log that keeps events in memory (tests assert on them). */
export function memoryLog(): Log & { events: Array<LogFields & { event: string }> } {
  const events: Array<LogFields & { event: string }> = [];
  const log = ((event: string, fields: LogFields = {}) => { events.push({ event, ...fields }); }) as Log & { events: typeof events };
  log.events = events;
  return log;
}

export const silentLog: Log = () => {};

/** The node's Logger (util/log.ts) as a cluster Log: one log format per process, not two. */
export function fromLogger(l: { info(event: string, fields?: LogFields): void; warn(event: string, fields?: LogFields): void }, component: string): Log {
  // Refusals and failures are what an operator greps for; the rest is routine.
  const WARN = /refused|failed|malformed|error|timeout|mismatch/;
  // A static-peer probe hangs up once it has seen our host key: routine, not a failure.
  const PROBE = /KEY_EXCHANGE_FAILED|ECONNRESET/;
  return (event, fields = {}) => {
    if (event === 'connection_error' && PROBE.test(String(fields.error))) return;
    (WARN.test(event) ? l.warn : l.info)(event, { c: component, ...fields });
  };
}

// Structured logs: one JSON object per line and event, so operators can grep and tools can parse.
// Every event says its level where it is logged (info unless said): the node's one log style
// (src/util/log.ts), which the cluster's parts reach through fromLogger.
export type LogFields = Record<string, unknown>;
export type LogLevel = 'debug' | 'info' | 'warn' | 'error';
export type Log = (event: string, fields?: LogFields, level?: LogLevel) => void;

export function jsonLog(component: string, write: (line: string) => void = (l) => process.stderr.write(l)): Log {
  return (event, fields = {}, level = 'info') => {
    write(JSON.stringify({ t: new Date().toISOString(), level, c: component, event, ...fields }) + '\n');
  };
}

/** A log that keeps events in memory (tests assert on them); `level` is kept when not info. */
export function memoryLog(): Log & { events: Array<LogFields & { event: string }> } {
  const events: Array<LogFields & { event: string }> = [];
  const log = ((event: string, fields: LogFields = {}, level: LogLevel = 'info') => { events.push(level === 'info' ? { event, ...fields } : { event, ...fields, level }); }) as Log & { events: typeof events };
  log.events = events;
  return log;
}

export const silentLog: Log = () => {};

/** The node's Logger (util/log.ts) as a cluster Log: one log format per process, not two. */
export function fromLogger(l: Record<LogLevel, (event: string, fields?: LogFields) => void>, component: string): Log {
  // A static-peer probe hangs up once it has seen our host key: routine, not a failure.
  const PROBE = /KEY_EXCHANGE_FAILED|ECONNRESET/;
  return (event, fields = {}, level = 'info') => {
    if (event === 'connection_error' && PROBE.test(String(fields.error))) return;
    l[level](event, { c: component, ...fields });
  };
}

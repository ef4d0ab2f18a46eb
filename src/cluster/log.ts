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

// Structured logs: one JSON object per line on stderr, with a level, an event name and fields.
export type Level = 'debug' | 'info' | 'warn' | 'error';
const ORDER: Record<Level, number> = { debug: 10, info: 20, warn: 30, error: 40 };

export interface Logger {
  debug(event: string, fields?: Record<string, unknown>): void;
  info(event: string, fields?: Record<string, unknown>): void;
  warn(event: string, fields?: Record<string, unknown>): void;
  error(event: string, fields?: Record<string, unknown>): void;
  child(fields: Record<string, unknown>): Logger;
}

export function createLogger(base: Record<string, unknown> = {}, min: Level = (process.env.DELUGEFS_LOG as Level) || 'info',
  write: (line: string) => void = (l) => process.stderr.write(l)): Logger {
  const emit = (level: Level, event: string, fields?: Record<string, unknown>) => {
    if (ORDER[level] < (ORDER[min] ?? 20)) return;
    write(JSON.stringify({ t: new Date().toISOString(), level, event, ...base, ...fields }) + '\n');
  };
  return {
    debug: (e, f) => emit('debug', e, f),
    info: (e, f) => emit('info', e, f),
    warn: (e, f) => emit('warn', e, f),
    error: (e, f) => emit('error', e, f),
    child: (f) => createLogger({ ...base, ...f }, min, write),
  };
}

export const silentLogger: Logger = createLogger({}, 'error', () => {});

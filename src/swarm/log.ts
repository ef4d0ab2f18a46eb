// The swarm's log: structured events with a level, like the rest of the node (the node forwards
// them to its Logger, src/node/swarm-link.ts), so bans, bad pieces and failed writes show at
// warn and error instead of being free text at debug.
export type SwarmLevel = 'debug' | 'info' | 'warn' | 'error';
export type SwarmLog = (level: SwarmLevel, event: string, fields: Record<string, unknown>) => void;

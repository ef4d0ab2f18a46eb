// Network namespaces for tests: the implementation is util/netns.ts (the demo uses it too).
export * from '../util/netns.js';

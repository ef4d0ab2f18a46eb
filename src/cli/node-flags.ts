// The flags a node's Node.js runs with. The `delugefs` command carries them in its #! line
// (main.ts); whatever starts a node another way (`delugefs demo`, the test harnesses) passes
// these. main.test checks that the two agree.
//
// --max-semi-space-size=4: V8's young generation may otherwise grow to 2 x 16 MiB under a
// burst of allocation (a sync storm, a transfer) and stays committed long after: 16 nodes 2 s
// after all had written at once averaged 144 MiB RSS, 120-131 MiB with this (bench/sync.mjs),
// at no measured cost to sync or to the swarm (bench/swarm.mjs).
export const NODE_FLAGS: readonly string[] = ['--max-semi-space-size=4'];

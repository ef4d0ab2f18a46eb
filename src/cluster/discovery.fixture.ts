// Test fixture: one mDNS participant; prints peer/lost events and logs as JSON lines on stdout.
// Usage: node discovery.fixture.js '{"cluster":..,"nodeId":..,...MdnsOptions}'
import { MdnsDiscovery, MdnsOptions } from './discovery.js';

const opts = JSON.parse(process.argv[2]) as MdnsOptions;
const out = (o: object) => process.stdout.write(JSON.stringify(o) + '\n');
const d = new MdnsDiscovery({ ...opts, log: (event, fields) => out({ ev: 'log', event, ...fields }) });
d.peers.on('peer', (p) => out({ ev: 'peer', ...p }));
d.peers.on('lost', (p) => out({ ev: 'lost', nodeId: p.nodeId }));
await d.start();
out({ ev: 'ready' });
process.on('SIGTERM', () => {
  void d.stop().then(() => process.exit(0));
});

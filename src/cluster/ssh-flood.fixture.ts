// Test fixture: floods an SSH server the way an attacker without a member key can. From many
// loopback source addresses (127.0.1.x, .2.x, .3.x: one range per kind) it keeps open: TCP connections that never send a banner,
// SSH connections that finish the handshake but never authenticate, and guest connections (a
// fresh key, so not a member) holding many `delugefs-rpc join` channels of ~1 MiB each without
// EOF. Whatever the server ends is reopened after a pause. Prints one JSON stats line a second.
// Usage: node ssh-flood.fixture.js '{"host":"127.0.0.1","port":N,"raw":300,"stalled":60,"guests":24,"channels":8}'
import net from 'node:net';
import ssh2 from 'ssh2';

const { Client, utils } = ssh2;
const o = JSON.parse(process.argv[2]) as { host: string; port: number; raw: number; stalled: number; guests: number; channels: number; addresses?: number };
const ADDRESSES = o.addresses ?? 40;
const RANGE = { raw: 1, stalled: 2, guest: 3 };
const source = (kind: keyof typeof RANGE, i: number) => `127.0.${RANGE[kind]}.${1 + (i % ADDRESSES)}`;
const stats = { rawOpen: 0, stalledOpen: 0, guestsReady: 0, channelsOpen: 0, channelsRefused: 0, connects: 0, bytesSent: 0 };
// ssh2 sometimes cannot parse an ed25519 key its own generator made ("Malformed OpenSSH private
// key", seen once in CI): take the first one it can read back.
const key = (() => {
  for (let i = 0; ; i++) {
    const k = utils.generateKeyPairSync('ed25519').private;
    if (!(utils.parseKey(k) instanceof Error) || i >= 20) return k;
  }
})();
const MIB = Buffer.alloc(1 << 20, 0x20);
let stopping = false;

function again(fn: () => void, ms: number) {
  if (!stopping) setTimeout(fn, ms).unref();
}

function raw(i: number) {
  stats.connects++;
  const s = net.connect({ host: o.host, port: o.port, localAddress: source('raw', i) });
  let open = false;
  s.on('connect', () => { open = true; stats.rawOpen++; });
  s.on('error', () => {});
  s.on('data', () => {}); // read the banner, never answer
  s.on('close', () => {
    if (open) stats.rawOpen--;
    again(() => raw(i), 1000);
  });
}

function client(from: string, onReady: (c: InstanceType<typeof Client>) => void, onClose: () => void, auth: boolean) {
  stats.connects++;
  const c = new Client();
  const sock = net.connect({ host: o.host, port: o.port, localAddress: from });
  sock.on('error', () => {});
  let closed = false;
  const done = () => {
    if (closed) return;
    closed = true;
    sock.destroy();
    onClose();
  };
  c.on('error', done);
  c.on('close', done);
  c.on('ready', () => onReady(c));
  c.connect({
    sock,
    username: 'flood',
    hostVerifier: () => true,
    readyTimeout: 120_000,
    // Never answering the auth handler leaves the connection after the handshake, before auth.
    ...(auth ? { privateKey: key } : { authHandler: () => { stats.stalledOpen++; c.once('close', () => stats.stalledOpen--); } }),
  });
}

function stalled(i: number) {
  client(source('stalled', i), () => {}, () => again(() => stalled(i), 1000), false);
}

function guest(i: number) {
  let ready = false;
  client(source('guest', i), (c) => {
    ready = true;
    stats.guestsReady++;
    for (let k = 0; k < o.channels; k++) {
      c.exec('delugefs-rpc join', (err, ch) => {
        if (err) return void stats.channelsRefused++;
        stats.channelsOpen++;
        ch.on('data', () => {});
        ch.stderr.on('data', () => {});
        ch.on('close', () => stats.channelsOpen--);
        // ~1 MiB of params and no EOF: the server has to buffer it or refuse it.
        ch.write(MIB, () => { stats.bytesSent += MIB.length; });
      });
    }
  }, () => {
    if (ready) stats.guestsReady--;
    again(() => guest(i), 500);
  }, true);
}

for (let i = 0; i < o.raw; i++) raw(i);
for (let i = 0; i < o.stalled; i++) stalled(i);
for (let i = 0; i < o.guests; i++) guest(i);
const t = setInterval(() => process.stdout.write(JSON.stringify({ ev: 'stats', ...stats }) + '\n'), 1000);
process.on('SIGTERM', () => {
  stopping = true;
  clearInterval(t);
  process.exit(0);
});

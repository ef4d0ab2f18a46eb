#!/usr/bin/python3
"""A libtorrent peer for interoperability tests and the benchmark.

Loopback only: listens on 127.0.0.1, no DHT, LSD, UPnP, NAT-PMP, uTP or trackers. Prints one
JSON object per line on stdout: {"event": "listening", "port": N}, {"event": "done", ...}.
Runs until stdin closes (the parent ends it by closing stdin or by killing its pid).
"""
import argparse, json, os, sys, threading, time
import libtorrent as lt

ap = argparse.ArgumentParser()
ap.add_argument('--torrent', required=True)
ap.add_argument('--save', required=True)
ap.add_argument('--port', type=int, default=0)
ap.add_argument('--peer', action='append', default=[])
ap.add_argument('--fast', action='store_true', help='high-performance seed settings')
ap.add_argument('--dht-node', action='append', default=[], help='enable the DHT, bootstrapped only from these host:port')
a = ap.parse_args()

def say(**kw):
    sys.stdout.write(json.dumps(kw) + '\n')
    sys.stdout.flush()

settings = lt.high_performance_seed() if a.fast else {}
settings.update({
    'listen_interfaces': '127.0.0.1:%d' % a.port,
    'outgoing_interfaces': '127.0.0.1',
    # No public DHT routers, ever: the bootstrap list is emptied before the DHT may start.
    'dht_bootstrap_nodes': '',
    'enable_dht': bool(a.dht_node), 'enable_lsd': False,
    # every test node is on 127.0.0.1: let several share the address in routing and searches
    'dht_restrict_routing_ips': False, 'dht_restrict_search_ips': False, 'enable_upnp': False, 'enable_natpmp': False,
    'enable_incoming_utp': False, 'enable_outgoing_utp': False,
    'in_enc_policy': 2, 'out_enc_policy': 2,  # plaintext only: our engine speaks no MSE
    'allow_multiple_connections_per_ip': True,
    'alert_mask': lt.alert.category_t.status_notification | lt.alert.category_t.error_notification,
})
ses = lt.session(settings)
ti = lt.torrent_info(a.torrent)
h = ses.add_torrent({'ti': ti, 'save_path': a.save})
port = ses.listen_port()
while port == 0:
    time.sleep(0.01)
    port = ses.listen_port()
say(event='listening', port=port)

def stdin_watch():
    # "cpu" asks for the CPU time used so far; end of input ends the peer.
    for line in sys.stdin:
        if line.strip() == 'cpu':
            say(event='cpu', cpu=time.process_time())
    os._exit(0)
threading.Thread(target=stdin_watch, daemon=True).start()

for n in a.dht_node:
    host, pp = n.rsplit(':', 1)
    ses.add_dht_node((host, int(pp)))

start = time.time()
connected = False
done = False
last_announce = 0
while True:
    if a.dht_node and time.time() - last_announce > 1.0:
        # The default re-announce interval is 15 minutes: ask for a lookup and announce now.
        last_announce = time.time()
        h.force_dht_announce()
    s = h.status()
    if not connected and s.state not in (lt.torrent_status.checking_files, lt.torrent_status.checking_resume_data):
        for p in a.peer:
            host, pp = p.rsplit(':', 1)
            h.connect_peer((host, int(pp)))
        connected = True
        start = time.time()
    if not done and s.is_seeding and connected:
        done = True
        say(event='done', seconds=time.time() - start, downloaded=s.total_payload_download, cpu=time.process_time(), dht_port=port)
    time.sleep(0.02)

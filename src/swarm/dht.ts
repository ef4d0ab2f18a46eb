// The DHT (BEP 5, `bittorrent-dht`) as a private directory of who holds what: bootstrapped only
// from cluster members given to it, never from the public routers, and the engine refuses to
// start it if the library would fall back to them.
import type { SwarmLog } from './log.js';
import { EventEmitter } from 'node:events';
import DHT from 'bittorrent-dht';
import type { ContentId } from '../content/metainfo.js';

export interface DhtOptions {
  /** UDP port to try first (the next ones are tried if taken); 0 = any. */
  port?: number;
  /** Bind address (default: the engine's). */
  host?: string;
  /**
   * Our address as other members reach it; with it, our own announces are also answered by us
   * (a two-node cluster then works without any third node).
   */
  announceHost?: string;
  /** DHT nodes of cluster members: "host:port" or {host, port}. */
  nodes?: Array<string | { host: string; port: number }>;
}

export class SwarmDht extends EventEmitter {
  private dht: DHT;
  port = 0;

  constructor(private readonly o: DhtOptions & { host: string }, private readonly log: SwarmLog) {
    super();
    // `bootstrap: false` gives k-rpc an empty bootstrap list; anything else might mean the
    // public routers.
    this.dht = this.make();
  }

  private make(): DHT {
    const dht = new DHT({ bootstrap: false, host: this.o.announceHost ?? null });
    if (dht._rpc.bootstrap.length !== 0) throw new Error('DHT would bootstrap from public nodes');
    dht.on('peer', (peer: { host: string; port: number }, infoHash: Buffer) => {
      this.emit('peer', peer.host, peer.port, infoHash.toString('hex'));
    });
    dht.on('node', () => this.emit('node'));
    // Another member announced to us: as good as a lookup result, and it comes without asking.
    dht.on('announce', (peer: { host: string; port: number }, infoHash: Buffer) => {
      this.emit('peer', peer.host, peer.port, infoHash.toString('hex'));
    });
    dht.on('warning', (e: Error) => this.log('debug', 'swarm.dht.warning', { error: e.message }));
    dht.on('error', (e: Error) => this.log('warn', 'swarm.dht.error', { error: e.message }));
    return dht;
  }

  async listen(): Promise<number> {
    const first = this.o.port ?? 0;
    const tries = first === 0 ? 1 : 100;
    for (let i = 0; i < tries; i++) {
      try {
        await new Promise<void>((resolve, reject) => {
          const onErr = (e: Error): void => reject(e);
          this.dht.once('error', onErr);
          this.dht.listen(first === 0 ? 0 : first + i, this.o.host, () => {
            this.dht.off('error', onErr);
            resolve();
          });
        });
        this.port = this.dht.address().port;
        for (const n of this.o.nodes ?? []) this.addNode(n);
        return this.port;
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code !== 'EADDRINUSE' || i + 1 >= tries) throw e;
        // k-rpc's socket cannot be re-bound after an error: start over with a fresh DHT.
        this.dht.destroy();
        this.dht = this.make();
      }
    }
    throw new Error('no free UDP port for the DHT');
  }

  /** A cluster member's DHT node. */
  addNode(n: string | { host: string; port: number }): void {
    const { host, port } = typeof n === 'string' ? { host: n.slice(0, n.lastIndexOf(':')), port: Number(n.slice(n.lastIndexOf(':') + 1)) } : n;
    this.dht.addNode({ host, port });
  }

  /** Resolves false if no node took the announce (e.g. none known yet). */
  announce(id: ContentId, port: number): Promise<boolean> {
    return new Promise((resolve) => this.dht.announce(id, port, (err) => {
      if (err) this.log('debug', 'swarm.dht.announce_failed', { id, error: err.message });
      resolve(!err);
    }));
  }

  /** Peers found are emitted as 'peer' (host, port, id). */
  lookup(id: ContentId): Promise<void> {
    return new Promise((resolve) => {
      this.dht.lookup(id, () => resolve());
    });
  }

  close(): Promise<void> {
    return new Promise((resolve) => this.dht.destroy(() => resolve()));
  }
}

// The parts of bittorrent-protocol (plain JS, no types) that the swarm uses.
declare module 'bittorrent-protocol' {
  import { EventEmitter } from 'node:events';

  interface PeerBits { get(index: number): boolean }
  type RequestCb = (err: Error | null, block: Uint8Array | null) => void;

  export default class Wire extends EventEmitter {
    constructor(type?: string, peEnabled?: number);
    peerId: string | null;
    type: string;
    amChoking: boolean;
    amInterested: boolean;
    peerChoking: boolean;
    peerInterested: boolean;
    peerPieces: PeerBits;
    hasFast: boolean;
    extendedHandshake: Record<string, unknown>;
    peerExtendedHandshake: Record<string, unknown>;
    peerExtendedMapping: Record<string, number>;
    extendedMapping: Record<number, string>;
    peerExtensions: { dht?: boolean; fast?: boolean; extended?: boolean };
    requests: Array<{ piece: number; offset: number; length: number; callback: RequestCb }>;
    destroyed: boolean;
    handshake(infoHash: string | Uint8Array, peerId: string | Uint8Array, extensions?: { dht?: boolean; fast?: boolean }): void;
    choke(): void;
    unchoke(): void;
    interested(): void;
    uninterested(): void;
    have(index: number): void;
    bitfield(bits: Uint8Array): void;
    haveAll(): void;
    haveNone(): void;
    request(index: number, offset: number, length: number, cb: RequestCb): void;
    cancel(index: number, offset: number, length: number): void;
    reject(index: number, offset: number, length: number): void;
    extended(ext: number | string, obj: Uint8Array | Record<string, unknown>): void;
    setKeepAlive(enable: boolean): void;
    write(chunk: Uint8Array): boolean;
    destroy(): void;
    end(): void;
  }
}

declare module 'bittorrent-dht' {
  import { EventEmitter } from 'node:events';
  export default class DHT extends EventEmitter {
    constructor(opts?: Record<string, unknown>);
    nodeId: Buffer;
    listening: boolean;
    _rpc: { bootstrap: unknown[] };
    listen(port: number, address: string, cb?: () => void): void;
    address(): { address: string; port: number };
    addNode(node: { host: string; port: number }): void;
    announce(infoHash: string | Buffer, port: number, cb?: (err?: Error) => void): void;
    lookup(infoHash: string | Buffer, cb?: (err?: Error, n?: number) => void): () => void;
    toJSON(): { nodes: Array<{ host: string; port: number }> };
    destroy(cb?: () => void): void;
  }
}

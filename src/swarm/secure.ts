// The member channel: the peer wire inside TLS 1.3, both sides authenticated by their ed25519
// node keys (a self-signed certificate per node, cert.ts; the names and the certificate's own
// signature are never trusted, only the key). TLS 1.3's CertificateVerify signs the whole
// handshake with that key, so a proof can be neither replayed on another connection nor
// reflected back (client and server sign with different context strings), and the records are
// AES-GCM in OpenSSL (AES-NI). Which keys are members is the caller's business (`verify`).
// Chosen over a Noise handshake in JS: measured on this VM (2 cores, VAES), TLS adds ~0.8 CPU
// s/GiB for both ends together; per-frame AES-GCM through node:crypto costs ~1.1 (it allocates
// every output) before any framing, and the handshake would be our own code.
import { KeyObject, createPublicKey } from 'node:crypto';
import { Socket } from 'node:net';
import { TLSSocket, SecureContext, ConnectionOptions, createSecureContext, connect as tlsConnect } from 'node:tls';
import { selfSignedCert, certPem } from './cert.js';

/** Application protocol named in the handshake: another TLS service's key cannot stand in for ours. */
export const ALPN = 'delugefs-peer/1';
/** First byte of a TLS record carrying a handshake (the ClientHello); BitTorrent starts with 0x13. */
export const TLS_HANDSHAKE_BYTE = 0x16;
const CIPHERS = 'TLS_AES_128_GCM_SHA256:TLS_AES_256_GCM_SHA384:TLS_CHACHA20_POLY1305_SHA256';

export interface WireSecurity {
  /** This node's ed25519 private key (its certificate is made from it). */
  key: KeyObject;
  /**
   * The member id of the node holding this ed25519 public key, or null if it may not exchange
   * member content (not a member, revoked, or this node's own key). Asked at every handshake and
   * again on Swarm.revalidate().
   */
  verify(publicKey: KeyObject): string | null;
}

export interface Secured {
  socket: TLSSocket;
  node: string;
  key: KeyObject;
  /** A dialed channel reads into one reused buffer (dial): whoever takes the socket sets `sink`. */
  reads?: ReusedReads;
}

/**
 * Cleartext of a dialed channel, read into one reused buffer: `sink` gets a view that is valid
 * only until it returns (Node's TLS would hand over a fresh buffer per 16 KiB record otherwise,
 * 65,536 per GiB, each faulted in and then collected). What comes before a sink is set is copied.
 */
export interface ReusedReads {
  sink: ((chunk: Buffer) => void) | null;
  early: Buffer[];
}

const READ_BUFFER = 64 * 1024;

export class MemberChannel {
  private readonly ctx: SecureContext;
  private readonly own: Buffer;

  constructor(private readonly sec: WireSecurity) {
    this.own = createPublicKey(sec.key).export({ type: 'spki', format: 'der' });
    this.ctx = createSecureContext({
      key: sec.key.export({ type: 'pkcs8', format: 'pem' }) as string,
      cert: certPem(selfSignedCert(sec.key)),
      minVersion: 'TLSv1.3',
      maxVersion: 'TLSv1.3',
      ciphers: CIPHERS,
      honorCipherOrder: true,
    });
  }

  /** The member id for a peer's key, or null (never our own key, whatever `verify` says). */
  check(key: KeyObject): string | null {
    if (key.asymmetricKeyType !== 'ed25519') return null;
    if (key.export({ type: 'spki', format: 'der' }).equals(this.own)) return null;
    return this.sec.verify(key);
  }

  /** Dials a member: TLS opens the socket itself, so its reads can go into a reused buffer. */
  dial(host: string, port: number, timeoutMs: number): Promise<Secured> {
    const reads: ReusedReads = { sink: null, early: [] };
    const buffer = Buffer.allocUnsafeSlow(READ_BUFFER);
    const t = tlsConnect({
      host, port, secureContext: this.ctx, rejectUnauthorized: false, ALPNProtocols: [ALPN], servername: '', checkServerIdentity: () => undefined,
      onread: { buffer, callback: (n: number, b: Uint8Array) => { const c = Buffer.from(b.buffer, b.byteOffset, n); if (reads.sink) reads.sink(c); else reads.early.push(Buffer.from(c)); return true; } },
    } as unknown as ConnectionOptions);
    t.setNoDelay(true);
    return this.handshake(t, t, timeoutMs, 'secureConnect').then((s) => ({ ...s, reads }));
  }

  /**
   * Runs the TLS handshake on a TCP socket (as server: `first` is what was already read from it,
   * the start of the ClientHello) and checks the peer's key. Rejects, with the socket destroyed,
   * unless the peer proved a member key.
   */
  open(raw: Socket, role: 'in' | 'out', timeoutMs: number, first?: Buffer): Promise<Secured> {
    let t: TLSSocket;
    if (role === 'in') {
      t = new TLSSocket(raw, { isServer: true, secureContext: this.ctx, requestCert: true, rejectUnauthorized: false, ALPNProtocols: [ALPN] });
      // The bytes read to tell TLS from BitTorrent: handed to OpenSSL before the socket reads on.
      const h = (t as unknown as { _handle?: { receive?: (b: Buffer) => void } })._handle;
      if (first?.length) {
        if (typeof h?.receive !== 'function') {
          t.destroy();
          raw.destroy();
          return Promise.reject(new Error('this Node cannot hand buffered bytes to TLS'));
        }
        h.receive(first);
      }
    } else {
      t = tlsConnect({ socket: raw, secureContext: this.ctx, rejectUnauthorized: false, ALPNProtocols: [ALPN], servername: '', checkServerIdentity: () => undefined });
    }
    return this.handshake(t, raw, timeoutMs, role === 'in' ? 'secure' : 'secureConnect');
  }

  /** Waits for the handshake on `t` and checks the peer's key; rejects with both sockets destroyed. */
  private handshake(t: TLSSocket, raw: Socket, timeoutMs: number, event: 'secure' | 'secureConnect'): Promise<Secured> {
    return new Promise<Secured>((resolve, reject) => {
      const fail = (why: string): void => {
        clearTimeout(timer);
        t?.destroy();
        raw.destroy();
        reject(new Error(why));
      };
      const timer = setTimeout(() => fail('TLS handshake timeout'), timeoutMs);
      const done = (): void => {
        clearTimeout(timer);
        t.off('error', onError);
        t.off('close', onClose);
        const cert = t.getPeerX509Certificate();
        if (t.getProtocol() !== 'TLSv1.3' || t.alpnProtocol !== ALPN) return fail(`peer spoke ${t.getProtocol()} / ${t.alpnProtocol || 'no protocol'}, not ${ALPN}`);
        if (!cert) return fail('peer sent no certificate');
        const key = cert.publicKey;
        if (key.asymmetricKeyType === 'ed25519' && key.export({ type: 'spki', format: 'der' }).equals(this.own)) return fail('peer claims our own node key');
        const node = this.check(key);
        if (!node) return fail('peer key is not a member');
        t.on('error', () => {}); // the Conn taking the socket listens from now on
        resolve({ socket: t, node, key });
      };
      const onError = (e: Error): void => fail(`TLS: ${e.message}`);
      const onClose = (): void => fail('closed during the TLS handshake');
      t.once(event, done);
      t.on('error', onError);
      t.on('close', onClose);
    });
  }
}

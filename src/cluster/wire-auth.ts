// Which TLS peers on the BitTorrent wire are members: the swarm's member channel (swarm/secure.ts)
// authenticates a peer's ed25519 key in TLS 1.3; this maps that key to a node id and asks the
// member records. Never our own id (a copy of our key is not a peer), never a revoked one, and
// the key must be exactly the one in the member's record (the id is only a hash of it).
import { KeyObject, createPrivateKey } from 'node:crypto';
import ssh2 from 'ssh2';
import { Identity, nodeIdOf, publicKeyBlob, KEY_TYPE } from './identity.js';
import type { WireSecurity } from '../swarm/secure.js';

function sshString(b: Buffer): Buffer {
  const len = Buffer.alloc(4);
  len.writeUInt32BE(b.length);
  return Buffer.concat([len, b]);
}

/** The SSH wire blob of an ed25519 public key (what member records and node ids are made of). */
export function sshBlobOf(key: KeyObject): Buffer | null {
  if (key.type !== 'public' || key.asymmetricKeyType !== 'ed25519') return null;
  const x = key.export({ format: 'jwk' }).x;
  if (typeof x !== 'string') return null;
  return Buffer.concat([sshString(Buffer.from(KEY_TYPE)), sshString(Buffer.from(x, 'base64url'))]);
}

/** The node's private key as node:crypto wants it (the identity keeps it in OpenSSH format). */
export function nodeKeyObject(identity: Identity): KeyObject {
  const parsed = ssh2.utils.parseKey(identity.privateKeyOpenSSH);
  if (parsed instanceof Error) throw new Error(`cannot read the node key ${identity.privateKeyPath}: ${parsed.message}`);
  return createPrivateKey(parsed.getPrivatePEM());
}

/**
 * The swarm's WireSecurity for this node. `keyOf` gives a current member's key (line or blob),
 * undefined for non-members and revoked members; it is asked at every handshake and whenever the
 * swarm revalidates its connections.
 */
export function memberWire(identity: Identity, keyOf: (nodeId: string) => string | Buffer | undefined): WireSecurity {
  return {
    key: nodeKeyObject(identity),
    verify(publicKey) {
      const blob = sshBlobOf(publicKey);
      if (!blob) return null;
      const id = nodeIdOf(blob);
      if (id === identity.nodeId || blob.equals(identity.publicKeyBlob)) return null;
      const member = keyOf(id);
      if (!member) return null;
      try {
        return publicKeyBlob(member).equals(blob) ? id : null;
      } catch {
        return null;
      }
    },
  };
}

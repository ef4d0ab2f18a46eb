// Membership proof for connections that SSH does not carry (the BitTorrent peer wire). Each side
// sends a fresh nonce (e.g. in its BEP 10 extended handshake), then proves its node key by
// signing both nonces, its own first: a proof cannot be reflected back to its maker, and an old
// one cannot be replayed on a new connection. It does not stop an active relay on an unencrypted
// stream; it keeps strangers and other clusters from being served.
import { randomBytes } from 'node:crypto';
import { Identity, verifySignature, isNodeId } from './identity.js';

const CONTEXT = 'delugefs-wire-v1';
export const WIRE_NONCE_BYTES = 16;

export interface WireProof {
  node: string;
  sig: Buffer;
}

export function wireNonce(): Buffer {
  return randomBytes(WIRE_NONCE_BYTES);
}

function message(cluster: string, signerNonce: Buffer, verifierNonce: Buffer): Buffer {
  return Buffer.concat([Buffer.from(`${CONTEXT}\0${cluster}\0`), signerNonce, verifierNonce]);
}

/** My proof for the peer: signs (my nonce, their nonce). */
export function makeWireProof(identity: Identity, cluster: string, myNonce: Buffer, theirNonce: Buffer): WireProof {
  return { node: identity.nodeId, sig: identity.sign(message(cluster, myNonce, theirNonce)) };
}

/**
 * Checks the peer's proof; returns its node id when valid and a member (keyOf returns the
 * member's key line or blob, undefined for non-members), else null.
 */
export function verifyWireProof(
  proof: unknown,
  o: { cluster: string; myNonce: Buffer; theirNonce: Buffer; keyOf: (nodeId: string) => string | Buffer | undefined },
): string | null {
  const p = proof as WireProof | null;
  if (!p || typeof p.node !== 'string' || !isNodeId(p.node) || !Buffer.isBuffer(p.sig)) return null;
  if (o.theirNonce.length !== WIRE_NONCE_BYTES || o.myNonce.length !== WIRE_NONCE_BYTES || o.theirNonce.equals(o.myNonce)) return null;
  const key = o.keyOf(p.node);
  if (!key) return null;
  return verifySignature(key, message(o.cluster, o.theirNonce, o.myNonce), p.sig) ? p.node : null;
}

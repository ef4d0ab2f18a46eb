// A self-signed X.509 certificate for an ed25519 key, built by hand in DER (Node parses
// certificates but cannot make them). It only carries the key into TLS: peers never check its
// names, dates or signature; what they trust is the key, proven by the TLS 1.3 CertificateVerify
// over the handshake, and looked up in the member records (see secure.ts).
import { KeyObject, createPublicKey, sign } from 'node:crypto';

function derLength(n: number): Buffer {
  if (n < 0x80) return Buffer.from([n]);
  const b: number[] = [];
  for (; n > 0; n >>>= 8) b.unshift(n & 0xff);
  return Buffer.from([0x80 | b.length, ...b]);
}

function tlv(tag: number, ...parts: Buffer[]): Buffer {
  const body = Buffer.concat(parts);
  return Buffer.concat([Buffer.from([tag]), derLength(body.length), body]);
}

const seq = (...parts: Buffer[]): Buffer => tlv(0x30, ...parts);
/** AlgorithmIdentifier for Ed25519 (OID 1.3.101.112, no parameters: RFC 8410). */
const ED25519 = seq(tlv(0x06, Buffer.from([0x2b, 0x65, 0x70])));

/** DER certificate: v3, serial 1, CN=delugefs, valid 2000 to 9999 ("no expiry", RFC 5280 4.1.2.5). */
export function selfSignedCert(privateKey: KeyObject): Buffer {
  if (privateKey.asymmetricKeyType !== 'ed25519') throw new Error('the peer wire needs an ed25519 node key');
  const name = seq(tlv(0x31, seq(tlv(0x06, Buffer.from([0x55, 0x04, 0x03])), tlv(0x0c, Buffer.from('delugefs')))));
  const validity = seq(tlv(0x17, Buffer.from('000101000000Z')), tlv(0x18, Buffer.from('99991231235959Z')));
  const spki = createPublicKey(privateKey).export({ type: 'spki', format: 'der' });
  const tbs = seq(tlv(0xa0, tlv(0x02, Buffer.from([2]))), tlv(0x02, Buffer.from([1])), ED25519, name, validity, name, spki);
  return seq(tbs, ED25519, tlv(0x03, Buffer.from([0]), sign(null, tbs, privateKey)));
}

export function certPem(der: Buffer): string {
  const b64 = der.toString('base64').replace(/.{64}/g, '$&\n').replace(/\n$/, '');
  return `-----BEGIN CERTIFICATE-----\n${b64}\n-----END CERTIFICATE-----\n`;
}

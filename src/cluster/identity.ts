// A node's identity: an ed25519 key pair kept under ROOT/identity/ and a node id derived from the
// public key, so the id cannot be claimed without the key. The same key is the SSH host key, the
// SSH client key (ssh2 and `ssh -i`) and the signing key for invites.
import { createHash, createPrivateKey, createPublicKey, KeyObject, sign as cryptoSign, verify as cryptoVerify } from 'node:crypto';
import { mkdir, readFile, link, unlink, writeFile, chmod, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import ssh2 from 'ssh2';

const { utils } = ssh2;

export const KEY_TYPE = 'ssh-ed25519';
const PRIVATE_FILE = 'id_ed25519';
const PUBLIC_FILE = 'id_ed25519.pub';

export interface PublicKeyInfo {
  type: string;
  /** The SSH wire-format public key blob (what `ssh-ed25519 AAAA...` base64-encodes). */
  blob: Buffer;
  comment: string;
}

const B32 = 'abcdefghijklmnopqrstuvwxyz234567';
function base32(buf: Buffer): string {
  let bits = 0, value = 0, out = '';
  for (const byte of buf) {
    value = (value << 8) | byte;
    bits += 8;
    while (bits >= 5) {
      out += B32[(value >>> (bits - 5)) & 31];
      bits -= 5;
    }
  }
  if (bits > 0) out += B32[(value << (5 - bits)) & 31];
  return out;
}

/** Node id: 16 lowercase base32 chars (80 bits) of SHA-256 of the key blob. Safe as a file name and a DNS label. */
export function nodeIdOf(blob: Buffer): string {
  return base32(createHash('sha256').update(blob).digest().subarray(0, 10));
}

export { NODE_ID_RE, isNodeId } from './node-id.js';

/** OpenSSH-style fingerprint, `SHA256:` + unpadded base64 of SHA-256 of the key blob. */
export function fingerprintOf(blob: Buffer): string {
  return 'SHA256:' + createHash('sha256').update(blob).digest('base64').replace(/=+$/, '');
}

/** Parses `ssh-ed25519 AAAA... comment`; throws on anything else (only ed25519 keys are members). */
export function parsePublicKeyLine(line: string): PublicKeyInfo {
  const m = /^\s*(ssh-ed25519)\s+([A-Za-z0-9+/]+={0,2})(?:\s+(.*?))?\s*$/.exec(line);
  if (!m) throw new Error('not an ssh-ed25519 public key line');
  const blob = Buffer.from(m[2], 'base64');
  const parsed = utils.parseKey(blob);
  if (parsed instanceof Error || parsed.type !== KEY_TYPE) throw new Error('malformed ssh-ed25519 public key');
  return { type: m[1], blob, comment: m[3] ?? '' };
}

/** Accepts a key line or a raw blob; returns the blob. */
export function publicKeyBlob(key: string | Buffer): Buffer {
  return typeof key === 'string' ? parsePublicKeyLine(key).blob : key;
}

export function publicKeyLineOf(blob: Buffer, comment = `delugefs:${nodeIdOf(blob)}`): string {
  return `${KEY_TYPE} ${blob.toString('base64')} ${comment}`;
}

function keyObjectFromBlob(blob: Buffer): KeyObject {
  const parsed = utils.parseKey(blob);
  if (parsed instanceof Error || parsed.type !== KEY_TYPE) throw new Error('malformed ssh-ed25519 public key');
  return createPublicKey(parsed.getPublicPEM());
}

/** Verifies an ed25519 signature made by `Identity.sign` with the key given as line or blob. */
export function verifySignature(key: string | Buffer, data: Buffer | string, signature: Buffer): boolean {
  try {
    return cryptoVerify(null, Buffer.from(data), keyObjectFromBlob(publicKeyBlob(key)), signature);
  } catch {
    return false;
  }
}

export class Identity {
  readonly nodeId: string;
  readonly fingerprint: string;
  readonly publicKeyLine: string;

  private constructor(
    /** The private key in OpenSSH format, as `ssh -i` and ssh2 want it. */
    readonly privateKeyOpenSSH: string,
    readonly publicKeyBlob: Buffer,
    private readonly privateKey: KeyObject,
    /** Path of the private key file, for `ssh -i`. */
    readonly privateKeyPath: string,
  ) {
    this.nodeId = nodeIdOf(publicKeyBlob);
    this.fingerprint = fingerprintOf(publicKeyBlob);
    this.publicKeyLine = publicKeyLineOf(publicKeyBlob);
  }

  sign(data: Buffer | string): Buffer {
    return cryptoSign(null, Buffer.from(data), this.privateKey);
  }

  verify(data: Buffer | string, signature: Buffer): boolean {
    return verifySignature(this.publicKeyBlob, data, signature);
  }

  /** Loads ROOT/identity, creating a fresh key pair on first start. */
  static async loadOrCreate(root: string): Promise<Identity> {
    const dir = join(root, 'identity');
    const privPath = join(dir, PRIVATE_FILE);
    let text: string;
    try {
      text = await readFile(privPath, 'utf8');
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
      await mkdir(dir, { recursive: true, mode: 0o700 });
      text = await generate();
      // Write a temp file, then link() it into place: a crash never leaves a half-written key,
      // and if another process created the key meanwhile, link fails and we use theirs.
      const tmp = `${privPath}.tmp-${process.pid}-${randomBytes(4).toString('hex')}`;
      await writeFile(tmp, text, { mode: 0o600, flag: 'wx' });
      try {
        await link(tmp, privPath);
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e;
        text = await readFile(privPath, 'utf8');
      } finally {
        await unlink(tmp);
      }
      const id = Identity.fromOpenSSH(text, privPath);
      await writeFile(join(dir, PUBLIC_FILE), id.publicKeyLine + '\n', { mode: 0o600 });
      return id;
    }
    // ssh refuses keys readable by others; repair the mode if someone copied the root carelessly.
    if (((await stat(privPath)).mode & 0o077) !== 0) await chmod(privPath, 0o600);
    return Identity.fromOpenSSH(text, privPath);
  }

  /** An identity from an OpenSSH private key text (path is where `ssh -i` finds the same key). */
  static fromOpenSSH(text: string, path: string): Identity {
    const parsed = utils.parseKey(text);
    if (parsed instanceof Error) throw new Error(`cannot parse node key ${path}: ${parsed.message}`);
    if (parsed.type !== KEY_TYPE) throw new Error(`node key ${path} is ${parsed.type}, expected ${KEY_TYPE}`);
    return new Identity(text, parsed.getPublicSSH(), createPrivateKey(parsed.getPrivatePEM()), path);
  }
}

/**
 * ssh2 writes about one ed25519 key in 500 that its own parser then rejects ("Malformed OpenSSH
 * private key"; measured 6 in 3,000): only a key that parses back is kept.
 */
async function generate(): Promise<string> {
  for (let attempt = 0; ; attempt++) {
    const text = await new Promise<string>((resolve, reject) =>
      utils.generateKeyPair('ed25519', { comment: 'delugefs' }, (err, kp) => (err ? reject(err) : resolve(kp.private))),
    );
    if (!(utils.parseKey(text) instanceof Error)) return text;
    if (attempt >= 20) throw new Error('could not generate a usable ed25519 key');
  }
}

/** A public key as the SSH layer saw it, with what callers usually want to match on. */
export interface PeerKey {
  blob: Buffer;
  line: string;
  nodeId: string;
  fingerprint: string;
}

export function peerKeyOf(blob: Buffer): PeerKey {
  return { blob, line: publicKeyLineOf(blob), nodeId: nodeIdOf(blob), fingerprint: fingerprintOf(blob) };
}

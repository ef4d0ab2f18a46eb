// One-time, expiring join tokens. The inviting node signs {cluster name and id, its key, its
// addresses, a nonce, an expiry}; the joiner learns from the token where to connect and which host key to
// expect (no trust on first use), and redeems it with the `join` RPC, which the embedded server
// lets a non-member call. The joiner's key is proven by the SSH authentication itself.
// A token is redeemed only at the node that issued it, so that node's nonce record is enough
// to make it single-use.
import { randomBytes } from 'node:crypto';
import { readFile, writeFile, rename } from 'node:fs/promises';
import { Identity, nodeIdOf, fingerprintOf, verifySignature } from './identity.js';
import { RpcRegistry, RpcError, PeerInfo } from './rpc.js';
import { RpcClient, RpcCallError } from './rpc-client.js';
import { parseHostPort } from './static-peers.js';
import { KeyedLock } from '../util/keyed-lock.js';
import type { Log } from './log.js';

const PREFIX = 'dfs1';
export const JOIN_METHOD = 'join';

export interface InvitePayload {
  v: 1;
  /** Cluster name. */
  c: string;
  /** Cluster id (the founder record's random clusterId): a name is not unique, the id is. */
  i?: string;
  /** Inviter node id. */
  n: string;
  /** Inviter public key blob, base64. */
  k: string;
  /** Where the inviter's SSH server can be reached, HOST:PORT. */
  a: string[];
  /** Nonce, hex. */
  x: string;
  /** Expiry, ms since the epoch. */
  e: number;
}

export class InviteError extends Error {
  constructor(readonly code: 'malformed' | 'bad_signature' | 'expired' | 'used' | 'wrong_cluster' | 'wrong_node', message: string) {
    super(message);
  }
}

const b64u = (b: Buffer) => b.toString('base64url');

export function createInvite(identity: Identity, o: { cluster: string; clusterId?: string; addresses: string[]; ttlMs?: number; now?: number }): { token: string; payload: InvitePayload } {
  for (const a of o.addresses) parseHostPort(a);
  const payload: InvitePayload = {
    v: 1,
    c: o.cluster,
    ...(o.clusterId ? { i: o.clusterId } : {}),
    n: identity.nodeId,
    k: identity.publicKeyBlob.toString('base64'),
    a: o.addresses,
    x: randomBytes(16).toString('hex'),
    e: (o.now ?? Date.now()) + (o.ttlMs ?? 24 * 3600_000),
  };
  const body = `${PREFIX}.${b64u(Buffer.from(JSON.stringify(payload)))}`;
  return { token: `${body}.${b64u(identity.sign(body))}`, payload };
}

/**
 * Parses a token and checks that it is well formed and signed by the key it names. Says nothing
 * about expiry or use: the joiner calls this to learn where to go, the inviter verifyInvite().
 */
export function decodeInvite(token: string): InvitePayload {
  const parts = token.trim().split('.');
  if (parts.length !== 3 || parts[0] !== PREFIX || token.length > 4096) throw new InviteError('malformed', 'not a DelugeFS invite token');
  let p: InvitePayload;
  try {
    p = JSON.parse(Buffer.from(parts[1], 'base64url').toString('utf8'));
  } catch {
    throw new InviteError('malformed', 'invite token payload is not readable');
  }
  const ok = p && p.v === 1 && typeof p.c === 'string' && typeof p.n === 'string' && typeof p.k === 'string' &&
    Array.isArray(p.a) && p.a.every((x) => typeof x === 'string') && typeof p.x === 'string' && /^[0-9a-f]{32}$/.test(p.x) &&
    (p.i === undefined || (typeof p.i === 'string' && /^[0-9a-f]{32}$/.test(p.i))) &&
    typeof p.e === 'number';
  if (!ok) throw new InviteError('malformed', 'invite token payload has the wrong shape');
  const blob = Buffer.from(p.k, 'base64');
  if (nodeIdOf(blob) !== p.n) throw new InviteError('bad_signature', 'invite token names a node id that does not match its key');
  if (!verifySignature(blob, `${parts[0]}.${parts[1]}`, Buffer.from(parts[2], 'base64url'))) {
    throw new InviteError('bad_signature', 'invite token signature is not valid');
  }
  return p;
}

/** The inviter's host key fingerprint, which the joiner must see when connecting. */
export function inviterFingerprint(p: InvitePayload): string {
  return fingerprintOf(Buffer.from(p.k, 'base64'));
}

/** Records redeemed nonces. consume() is true only the first time for a nonce. */
export interface NonceStore {
  consume(nonce: string, expiresAt: number): Promise<boolean>;
  /** Undoes consume() when admission failed after it. */
  release(nonce: string): Promise<void>;
}

/** Nonces in a JSON file (e.g. ROOT/identity/used-invites.json); expired ones are pruned. */
export class FileNonceStore implements NonceStore {
  private lock = new KeyedLock();
  constructor(readonly path: string) {}

  private async load(): Promise<Record<string, number>> {
    try {
      return JSON.parse(await readFile(this.path, 'utf8')) as Record<string, number>;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return {};
      throw err;
    }
  }

  private async save(m: Record<string, number>): Promise<void> {
    const tmp = `${this.path}.tmp-${process.pid}-${randomBytes(4).toString('hex')}`;
    await writeFile(tmp, JSON.stringify(m), { mode: 0o600 });
    await rename(tmp, this.path);
  }

  consume(nonce: string, expiresAt: number): Promise<boolean> {
    return this.lock.run('f', async () => {
      const m = await this.load();
      const now = Date.now();
      for (const [k, exp] of Object.entries(m)) if (exp < now) delete m[k];
      if (nonce in m) return false;
      m[nonce] = expiresAt;
      await this.save(m);
      return true;
    });
  }

  release(nonce: string): Promise<void> {
    return this.lock.run('f', async () => {
      const m = await this.load();
      delete m[nonce];
      await this.save(m);
    });
  }
}

/**
 * Checks a token presented to this node: issued here, right cluster (name, and id when this node
 * knows it: a key that is a member of two clusters of one name signs tokens for both), not
 * expired, not used. Consumes it.
 */
export async function verifyInvite(token: string, o: { identity: Identity; cluster: string; clusterId?: string; nonces: NonceStore; now?: number }): Promise<InvitePayload> {
  const p = decodeInvite(token);
  if (p.n !== o.identity.nodeId || p.k !== o.identity.publicKeyBlob.toString('base64')) {
    throw new InviteError('wrong_node', `invite token was issued by node ${p.n}, not this node (${o.identity.nodeId}); use it with the node that issued it`);
  }
  if (p.c !== o.cluster) throw new InviteError('wrong_cluster', `invite token is for cluster ${p.c}, this is ${o.cluster}`);
  if (o.clusterId && p.i !== o.clusterId) throw new InviteError('wrong_cluster', `invite token is for another cluster named ${p.c} (id ${p.i ?? 'none'}, this is ${o.clusterId}); ask a member of this one`);
  if ((o.now ?? Date.now()) > p.e) throw new InviteError('expired', `invite token expired at ${new Date(p.e).toISOString()}; ask for a new one (delugefs invite)`);
  if (!(await o.nonces.consume(p.x, p.e))) throw new InviteError('used', 'invite token was already used; ask for a new one (delugefs invite)');
  return p;
}

export interface JoinRequest {
  /** The joining node, as authenticated by SSH (its publicKey is proven). */
  peer: PeerInfo & { publicKey: string };
  invite: InvitePayload;
  /** Whatever else the joiner sent (hostname, ports...). */
  params: Record<string, unknown>;
}

/**
 * Registers the `join` RPC: verifies the token, then lets the node admit the key (write the member
 * record) and answer with what the joiner needs. Run the SSH server with guestMethods: [JOIN_METHOD].
 */
export function registerJoin(
  registry: RpcRegistry,
  o: { identity: Identity; cluster: string; clusterId?: () => string | undefined; nonces: NonceStore; admit: (req: JoinRequest) => Promise<unknown>; log?: Log },
): void {
  registry.register(JOIN_METHOD, async (params, peer) => {
    const prm = (params && typeof params === 'object' ? params : {}) as Record<string, unknown>;
    if (typeof prm.token !== 'string') throw new RpcError('malformed', 'join needs {"token": "..."}');
    if (!peer.publicKey) throw new RpcError('no_key', 'join needs an SSH-authenticated key');
    let invite: InvitePayload;
    try {
      invite = await verifyInvite(prm.token, { ...o, clusterId: o.clusterId?.() });
    } catch (err) {
      if (!(err instanceof InviteError)) throw err;
      o.log?.('join_refused', { peer: peer.nodeId, address: peer.address, code: err.code, reason: err.message }, 'warn');
      throw new RpcError(`invite_${err.code}`, err.message);
    }
    try {
      const { token: _t, ...rest } = prm;
      const result = await o.admit({ peer: { ...peer, publicKey: peer.publicKey }, invite, params: rest });
      o.log?.('joined', { peer: peer.nodeId, address: peer.address });
      return result;
    } catch (err) {
      await o.nonces.release(invite.x);
      throw err;
    }
  });
}

/**
 * The joiner's side: connects to the inviter (each address in turn, host key checked against the
 * token) and redeems the token. Returns the admit() result of the inviter.
 */
export async function redeemInvite(identity: Identity, token: string, o: { params?: Record<string, unknown>; timeoutMs?: number; log?: Log } = {}): Promise<{ invite: InvitePayload; result: unknown }> {
  const invite = decodeInvite(token);
  if (Date.now() > invite.e) throw new InviteError('expired', `invite token expired at ${new Date(invite.e).toISOString()}; ask for a new one (delugefs invite)`);
  let last: Error = new Error('invite token lists no address');
  for (const addr of invite.a) {
    const { host, port } = parseHostPort(addr);
    // As long as the inviter gives a guest (ssh-limits guestTimeoutMs): its answer waits for the admission's commit.
    const client = new RpcClient({ identity, host, port, hostFingerprint: inviterFingerprint(invite), timeoutMs: o.timeoutMs ?? 30_000, log: o.log });
    try {
      const result = await client.call(JOIN_METHOD, { ...o.params, token });
      return { invite, result };
    } catch (err) {
      last = err as Error;
      // A refusal of the token is final; only unreachable addresses are worth another try.
      if (err instanceof RpcCallError && err.code !== 'unreachable' && err.code !== 'timeout') throw err;
    } finally {
      client.close();
    }
  }
  throw last;
}


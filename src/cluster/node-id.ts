// The shape of a node id, apart from identity.ts (keys, ssh2) so that the namespace's entry
// decoder can check the node ids an entry names without loading any of that.

/** A node id: 16 base32 characters (80 bits of SHA-256 of the node's public key blob). */
export const NODE_ID_RE = /^[a-z2-7]{16}$/;

export function isNodeId(s: string): boolean {
  return NODE_ID_RE.test(s);
}

// The verification code of a LAN join request (no token): 12 base32 characters (60 bits) of
// SHA-256(joiner's key blob ‖ the cluster's root commit), shown by the joiner and by every member
// it asked. The key is the SSH-authenticated one, so a matching code tells the operator the key
// to be admitted is the one on the new machine's screen; the root commit is known only to
// members (the joiner learns it from the member's reply and checks it against the repository it
// fetches after admission), so a match also tells that the joiner talks to the real cluster.
import { createHash } from 'node:crypto';

/** Crockford's alphabet: no I, L, O, U, so a code read aloud or typed is not misread. */
const ALPHABET = '0123456789ABCDEFGHJKMNPQRSTVWXYZ';
const COMMIT_RE = /^[0-9a-f]{40}$/;
export const CODE_RE = /^[0-9A-HJKMNP-TV-Z]{4}-[0-9A-HJKMNP-TV-Z]{4}-[0-9A-HJKMNP-TV-Z]{4}$/;

/**
 * `ABCD-EFGH-JKMN`: 60 bits, so no key can be ground offline to match a code someone saw (the
 * root commit and a joiner's key are no secret); a member refuses a code two requests share.
 */
export function joinCode(keyBlob: Buffer, rootCommit: string): string {
  if (!COMMIT_RE.test(rootCommit)) throw new Error(`not a commit id: ${rootCommit.slice(0, 60)}`);
  const h = createHash('sha256').update('delugefs-join-code-v1\n').update(rootCommit).update('\n').update(keyBlob).digest();
  let v = 0n;
  for (const b of h.subarray(0, 8)) v = (v << 8n) | BigInt(b);
  let s = '';
  for (let i = 11; i >= 0; i--) s += ALPHABET[Number((v >> BigInt(5 * i + 4)) & 31n)];
  return `${s.slice(0, 4)}-${s.slice(4, 8)}-${s.slice(8)}`;
}

/** A code as an operator types it (any case, with or without the dash or spaces; I/L read as 1, O as 0); null when it cannot be one. */
export function normalizeCode(typed: string): string | null {
  if (typed.length > 32) return null;
  const s = typed.toUpperCase().replace(/[\s-]/g, '').replace(/[IL]/g, '1').replace(/O/g, '0');
  if (!/^[0-9A-HJKMNP-TV-Z]{12}$/.test(s)) return null;
  return `${s.slice(0, 4)}-${s.slice(4, 8)}-${s.slice(8)}`;
}

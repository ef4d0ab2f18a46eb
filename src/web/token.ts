// The dashboard's secret (ROOT/web-token, 0600): whoever can read it may change state through the
// web port (approve or refuse a join). ROOT is readable by the node's user only, so holding the
// token is the same-user check; `delugefs dashboard ROOT` reads it and prints the page's URL.
import { randomBytes, createHash, timingSafeEqual } from 'node:crypto';
import { chmod, open, readFile, rename, unlink } from 'node:fs/promises';
import { join } from 'node:path';

export const TOKEN_FILE = 'web-token';
export const TOKEN_RE = /^[0-9a-f]{64}$/;

/** ROOT/web-token: read it, or make it (32 random bytes, hex) when it is missing or not a token. */
export async function loadOrCreateToken(root: string): Promise<string> {
  const path = join(root, TOKEN_FILE);
  const have = await readToken(root).catch(() => null);
  if (have) {
    await chmod(path, 0o600); // a root loosened by hand: never readable by others
    return have;
  }
  const token = randomBytes(32).toString('hex');
  const tmp = `${path}.${process.pid}.tmp`;
  const fh = await open(tmp, 'w', 0o600);
  try {
    await fh.writeFile(token + '\n');
    await fh.sync();
  } finally {
    await fh.close();
  }
  // rename: a reader never sees a half-written token.
  await rename(tmp, path).catch(async (e) => { await unlink(tmp).catch(() => {}); throw e; });
  return token;
}

/** The token in ROOT, or an error saying what is wrong with it. */
export async function readToken(root: string): Promise<string> {
  const text = (await readFile(join(root, TOKEN_FILE), 'utf8')).trim();
  if (!TOKEN_RE.test(text)) throw new Error(`${join(root, TOKEN_FILE)} does not hold a token (64 hex digits); the node makes a new one at its next start`);
  return text;
}

/** Constant time whatever the input: both sides hashed first, so lengths never leak or throw. */
export function tokenMatches(given: string | undefined, secret: string): boolean {
  if (typeof given !== 'string' || given.length > 256) return false;
  const a = createHash('sha256').update(given).digest();
  const b = createHash('sha256').update(secret).digest();
  return timingSafeEqual(a, b);
}

// POSIX names <-> Git tree entry names. Git refuses or treats specially some names (".git",
// ".gitmodules", "git~1", ".", ".."), and DelugeFS keeps its own marker entries in every tree,
// so every user name is escaped: '%' -> %25, '~' and control bytes -> %XX, and a leading '.'
// -> %2E. An escaped name never contains '%' followed by a non-hex letter, so markers such as
// "%dir" can never collide with a user's file.
// A name read from Git (a peer's push, a repository on disk) is trusted only when it is what
// encodeName would have written: canonical, so two stored names never decode to one name.

export const DIR_MARKER = '%dir';

/** NAME_MAX of the mount: the limit is on the decoded UTF-8 name (Git itself has none). */
export const MAX_NAME_BYTES = 255;

const HEX = '0123456789ABCDEF';

export function encodeName(name: string): string {
  if (name === '' || name.includes('/') || name.includes('\0')) throw new Error(`invalid name ${JSON.stringify(name)}`);
  let out = '';
  for (let i = 0; i < name.length; i++) {
    const c = name.charCodeAt(i);
    if (c === 0x25 || c === 0x7e || c < 0x20 || c === 0x7f || (i === 0 && c === 0x2e)) {
      out += '%' + HEX[c >> 4] + HEX[c & 15];
    } else {
      out += name[i];
    }
  }
  return out;
}

export function decodeName(enc: string): string {
  if (!enc.includes('%')) return enc;
  return enc.replace(/%([0-9A-F]{2})/g, (_, h: string) => String.fromCharCode(parseInt(h, 16)));
}

/**
 * Why a stored (escaped) entry name cannot stand for a user's file, or undefined when it can:
 * empty, a marker, decoding to '.', '..' or a name with '/' or NUL, over MAX_NAME_BYTES once
 * decoded, or not canonical (e.g. '%61' for 'a', which would shadow 'a' in the mount).
 */
export function storedNameProblem(enc: string): string | undefined {
  if (enc === '') return 'empty name';
  if (isMarker(enc)) return 'internal entry name';
  const name = decodeName(enc);
  if (name === '.' || name === '..') return `decodes to ${name}`;
  if (name.includes('/') || name.includes('\0')) return 'decodes to a name with / or NUL';
  if (Buffer.byteLength(name) > MAX_NAME_BYTES) return `longer than ${MAX_NAME_BYTES} bytes`;
  if (encodeName(name) !== enc) return 'not canonically escaped';
  return undefined;
}

/** True for tree entries DelugeFS writes for itself; these never show in the mount. */
export function isMarker(enc: string): boolean {
  return /%(?![0-9A-F]{2})/.test(enc);
}

/** The path of `name` inside directory `dir` (an absolute mount path). */
export function joinPath(dir: string, name: string): string {
  return dir === '/' ? `/${name}` : `${dir}/${name}`;
}

/** Splits an absolute mount path into its components ("/" -> []). */
export function splitPath(path: string): string[] {
  if (path === '/' || path === '') return [];
  const parts = path.split('/');
  if (parts[0] === '') parts.shift();
  return parts;
}

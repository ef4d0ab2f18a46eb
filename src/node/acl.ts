// POSIX ACLs as the kernel hands them to a FUSE filesystem (the `system.posix_acl_access` and
// `system.posix_acl_default` xattrs, in the kernel's format: a version, then tag/perm/id entries).
// The kernel enforces them (FUSE_POSIX_ACL); the filesystem keeps the mode in step with the
// access ACL, changes the ACL on chmod, and makes new entries from a directory's default ACL, as
// ext4 does (posix_acl_update_mode, posix_acl_chmod, posix_acl_create).

export const ACL_ACCESS = 'system.posix_acl_access';
export const ACL_DEFAULT = 'system.posix_acl_default';

const VERSION = 2;
export const TAG = { USER_OBJ: 0x01, USER: 0x02, GROUP_OBJ: 0x04, GROUP: 0x08, MASK: 0x10, OTHER: 0x20 } as const;

export interface AclEntry { tag: number; perm: number; id: number }

/** The entries of an ACL xattr value; throws (EINVAL) on what the kernel would not have sent. */
export function parseAcl(buf: Buffer): AclEntry[] {
  if (buf.length < 4 || (buf.length - 4) % 8 || buf.readUInt32LE(0) !== VERSION) throw Object.assign(new Error('malformed ACL'), { code: 'EINVAL' });
  const out: AclEntry[] = [];
  for (let at = 4; at < buf.length; at += 8) {
    const tag = buf.readUInt16LE(at);
    const perm = buf.readUInt16LE(at + 2);
    if (!Object.values(TAG).includes(tag as never) || perm & ~7) throw Object.assign(new Error('malformed ACL entry'), { code: 'EINVAL' });
    out.push({ tag, perm, id: buf.readUInt32LE(at + 4) });
  }
  return out;
}

export function encodeAcl(entries: AclEntry[]): Buffer {
  const buf = Buffer.alloc(4 + 8 * entries.length);
  buf.writeUInt32LE(VERSION, 0);
  entries.forEach((e, i) => {
    buf.writeUInt16LE(e.tag, 4 + 8 * i);
    buf.writeUInt16LE(e.perm, 6 + 8 * i);
    // The object entries carry no id (the kernel writes -1).
    buf.writeUInt32LE(e.tag === TAG.USER || e.tag === TAG.GROUP ? e.id : 0xffffffff, 8 + 8 * i);
  });
  return buf;
}

const find = (acl: AclEntry[], tag: number) => acl.find((e) => e.tag === tag);

/** An ACL that says no more than the mode (owner, group, other only). */
export function isMinimal(acl: AclEntry[]): boolean {
  return acl.every((e) => e.tag === TAG.USER_OBJ || e.tag === TAG.GROUP_OBJ || e.tag === TAG.OTHER);
}

/** The permission bits an access ACL means: owner, mask (or owning group without one), other. */
export function modeOf(acl: AclEntry[], mode: number): number {
  const owner = find(acl, TAG.USER_OBJ)?.perm ?? (mode >> 6) & 7;
  const group = (find(acl, TAG.MASK) ?? find(acl, TAG.GROUP_OBJ))?.perm ?? (mode >> 3) & 7;
  const other = find(acl, TAG.OTHER)?.perm ?? mode & 7;
  return (mode & ~0o777) | (owner << 6) | (group << 3) | other;
}

/** chmod(2) of an entry with an access ACL: its owner, mask (or group) and other entries follow the mode. */
export function chmodAcl(acl: AclEntry[], mode: number): AclEntry[] {
  const hasMask = !!find(acl, TAG.MASK);
  return acl.map((e) => {
    if (e.tag === TAG.USER_OBJ) return { ...e, perm: (mode >> 6) & 7 };
    if (e.tag === TAG.OTHER) return { ...e, perm: mode & 7 };
    if (e.tag === (hasMask ? TAG.MASK : TAG.GROUP_OBJ)) return { ...e, perm: (mode >> 3) & 7 };
    return e;
  });
}

/**
 * A new entry in a directory with a default ACL (posix_acl_create): the umask is not applied;
 * the default ACL, masked by the mode asked for, becomes the access ACL (none when it says no more
 * than the mode) and, for a directory, its default ACL too.
 */
export function inherit(dflt: Buffer, mode: number, isDir: boolean): { mode: number; xattrs: Record<string, Buffer> } {
  const acl = parseAcl(dflt);
  const hasMask = !!find(acl, TAG.MASK);
  const masked = acl.map((e) => {
    if (e.tag === TAG.USER_OBJ) return { ...e, perm: e.perm & (mode >> 6) & 7 };
    if (e.tag === TAG.OTHER) return { ...e, perm: e.perm & mode & 7 };
    if (e.tag === (hasMask ? TAG.MASK : TAG.GROUP_OBJ)) return { ...e, perm: e.perm & (mode >> 3) & 7 };
    return e;
  });
  const xattrs: Record<string, Buffer> = {};
  if (!isMinimal(masked)) xattrs[ACL_ACCESS] = encodeAcl(masked);
  if (isDir) xattrs[ACL_DEFAULT] = Buffer.from(dflt);
  return { mode: modeOf(masked, mode), xattrs };
}

// Filesystem errors carry a POSIX code so every layer can fail precisely and FUSE can map it.
export type Errno =
  | 'ENOENT' | 'EEXIST' | 'ENOTDIR' | 'EISDIR' | 'ENOTEMPTY' | 'EINVAL' | 'EPERM' | 'EACCES'
  | 'EBADF' | 'EIO' | 'ENOSPC' | 'ENAMETOOLONG' | 'EXDEV' | 'EROFS' | 'EBUSY' | 'ENOSYS' | 'EMLINK'
  | 'ENODATA' | 'ERANGE' | 'EOPNOTSUPP' | 'E2BIG' | 'ENXIO' | 'ETXTBSY';

export class FsError extends Error {
  constructor(readonly code: Errno, message?: string) {
    // ENOENT on lookups is the hot path of every create: skip the stack trace, it says nothing.
    const limit = Error.stackTraceLimit;
    Error.stackTraceLimit = 0;
    super(message ? `${code}: ${message}` : code);
    Error.stackTraceLimit = limit;
    this.name = 'FsError';
  }
}

export function errnoOf(e: unknown): string {
  if (e instanceof FsError) return e.code;
  const code = (e as NodeJS.ErrnoException | undefined)?.code;
  return typeof code === 'string' ? code : 'EIO';
}

# The same extended-attribute calls on one directory (a DelugeFS mount or the root's own disk):
# one JSON list of [call, result or errno name], for the test to compare. Not a test itself.
import ctypes, errno, json, os, sys

d = sys.argv[1]
f = os.path.join(d, 'x')
with open(f, 'w') as h:
    h.write('data')
os.symlink('x', os.path.join(d, 'l'))
libc = ctypes.CDLL(None, use_errno=True)
out = []

def t(name, fn):
    try:
        r = fn()
        out.append([name, 'ok', r.hex() if isinstance(r, bytes) else r])
    except OSError as e:
        out.append([name, errno.errorcode[e.errno]])

def small_get():
    buf = ctypes.create_string_buffer(1)
    n = libc.getxattr(f.encode(), b'user.a', buf, 1)
    if n < 0:
        raise OSError(ctypes.get_errno(), 'getxattr')
    return n

t('set', lambda: os.setxattr(f, 'user.a', b'1'))
t('get', lambda: os.getxattr(f, 'user.a'))
t('create over an existing one', lambda: os.setxattr(f, 'user.a', b'2', os.XATTR_CREATE))
t('replace a missing one', lambda: os.setxattr(f, 'user.b', b'2', os.XATTR_REPLACE))
t('replace', lambda: os.setxattr(f, 'user.a', b'22', os.XATTR_REPLACE))
t('get again', lambda: os.getxattr(f, 'user.a'))
t('buffer too small', small_get)
t('empty value', lambda: os.setxattr(f, 'user.empty', b''))
t('get empty', lambda: os.getxattr(f, 'user.empty'))
t('trusted (root)', lambda: os.setxattr(f, 'trusted.t', b'root only'))
t('binary value', lambda: os.setxattr(f, 'user.bin', bytes(range(256))))
t('get binary', lambda: os.getxattr(f, 'user.bin'))
t('list', lambda: sorted(os.listxattr(f)))
t('missing', lambda: os.getxattr(f, 'user.nope'))
t('remove', lambda: os.removexattr(f, 'user.empty'))
t('remove a missing one', lambda: os.removexattr(f, 'user.empty'))
t('user.* on a symlink', lambda: os.setxattr(os.path.join(d, 'l'), 'user.a', b'1', follow_symlinks=False))
t('too big a value', lambda: os.setxattr(f, 'user.big', b'x' * 70000))
t('too long a name', lambda: os.setxattr(f, 'user.' + 'n' * 300, b'1'))
t('unknown namespace', lambda: os.setxattr(f, 'bogus.x', b'1'))
t('a directory', lambda: os.setxattr(d, 'user.dir', b'on a directory'))
t('get on a directory', lambda: os.getxattr(d, 'user.dir'))
t('block full', lambda: [os.setxattr(f, 'user.f%d' % i, b'y' * 1000) for i in range(8)])
print(json.dumps(out))

// fallocate(2) and lseek(2)'s SEEK_DATA/SEEK_HOLE for Node, which has neither: the mount's
// fallocate and lseek act on a handle's private temp file (or its stored version) under ROOT,
// never on the mount itself. Both return at once on a local disk, so they are called inline.
// misalign(): where a buffer's memory sits relative to an alignment, which O_DIRECT needs and
// JavaScript cannot see.
#define _GNU_SOURCE
#include <node_api.h>
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <unistd.h>

static int args(napi_env env, napi_callback_info info, size_t want, int32_t *fd, int32_t *i, double *a, double *b) {
  size_t argc = 4;
  napi_value argv[4];
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc < want) return -1;
  if (napi_get_value_int32(env, argv[0], fd) != napi_ok || napi_get_value_int32(env, argv[1], i) != napi_ok) return -1;
  if (napi_get_value_double(env, argv[2], a) != napi_ok) return -1;
  if (want > 3 && napi_get_value_double(env, argv[3], b) != napi_ok) return -1;
  return 0;
}

// fallocate(fd, mode, offset, length) -> 0 | -errno
static napi_value js_fallocate(napi_env env, napi_callback_info info) {
  int32_t fd, mode;
  double off, len;
  napi_value r;
  if (args(env, info, 4, &fd, &mode, &off, &len)) {
    napi_throw_type_error(env, NULL, "fallocate(fd, mode, offset, length)");
    return NULL;
  }
#ifdef __linux__
  int rc;
  do rc = fallocate(fd, mode, (off_t)off, (off_t)len); while (rc < 0 && errno == EINTR);
  napi_create_int32(env, rc < 0 ? -errno : 0, &r);
#else
  int rc = mode ? EOPNOTSUPP : posix_fallocate(fd, (off_t)off, (off_t)len);
  napi_create_int32(env, -rc, &r);
#endif
  return r;
}

// seek(fd, whence, offset) -> the new offset | -errno (-ENXIO: no data, or no hole, past offset)
static napi_value js_seek(napi_env env, napi_callback_info info) {
  int32_t fd, whence;
  double off, unused;
  napi_value r;
  if (args(env, info, 3, &fd, &whence, &off, &unused)) {
    napi_throw_type_error(env, NULL, "seek(fd, whence, offset)");
    return NULL;
  }
  off_t at = lseek(fd, (off_t)off, whence);
  napi_create_double(env, at < 0 ? -(double)errno : (double)at, &r);
  return r;
}

// misalign(view, alignment) -> the view's address modulo alignment (a power of two)
static napi_value js_misalign(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2], r;
  napi_typedarray_type type;
  size_t length;
  void *data = NULL;
  uint32_t a;
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc < 2
      || napi_get_typedarray_info(env, argv[0], &type, &length, &data, NULL, NULL) != napi_ok
      || napi_get_value_uint32(env, argv[1], &a) != napi_ok || a == 0 || (a & (a - 1))) {
    napi_throw_type_error(env, NULL, "misalign(typedArray, powerOfTwo)");
    return NULL;
  }
  napi_create_uint32(env, (uint32_t)((uintptr_t)data & (a - 1)), &r);
  return r;
}

static napi_value init(napi_env env, napi_value exports) {
  napi_value f;
  napi_create_function(env, "fallocate", NAPI_AUTO_LENGTH, js_fallocate, NULL, &f);
  napi_set_named_property(env, exports, "fallocate", f);
  napi_create_function(env, "seek", NAPI_AUTO_LENGTH, js_seek, NULL, &f);
  napi_set_named_property(env, exports, "seek", f);
  napi_create_function(env, "misalign", NAPI_AUTO_LENGTH, js_misalign, NULL, &f);
  napi_set_named_property(env, exports, "misalign", f);
  return exports;
}

NAPI_MODULE(NODE_GYP_MODULE_NAME, init)

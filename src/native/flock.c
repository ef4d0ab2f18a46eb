// flock(2) for Node, which has none: the node root's lock (node/root-lock.ts) is a lock on the
// lock file's open file description, so the kernel drops it when the process dies, however it
// dies, and no stale pid can ever block a restart. A module of its own, not part of devfuse.c:
// a storage-only node locks its root without loading anything FUSE.
#include <node_api.h>
#include <errno.h>
#include <sys/file.h>

// flock(fd, exclusive, wait) -> 0 | -errno (-EWOULDBLOCK when another holds it and !wait)
static napi_value js_flock(napi_env env, napi_callback_info info) {
  size_t argc = 3;
  napi_value argv[3];
  napi_value r;
  int32_t fd = -1;
  bool exclusive = true, wait = false;
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc < 3 ||
      napi_get_value_int32(env, argv[0], &fd) != napi_ok ||
      napi_get_value_bool(env, argv[1], &exclusive) != napi_ok ||
      napi_get_value_bool(env, argv[2], &wait) != napi_ok) {
    napi_throw_type_error(env, NULL, "flock(fd: number, exclusive: boolean, wait: boolean)");
    return NULL;
  }
  int op = (exclusive ? LOCK_EX : LOCK_SH) | (wait ? 0 : LOCK_NB);
  int rc;
  do rc = flock(fd, op); while (rc < 0 && errno == EINTR);
  napi_create_int32(env, rc < 0 ? -errno : 0, &r);
  return r;
}

// unlock(fd) -> 0 | -errno
static napi_value js_unlock(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  napi_value r;
  int32_t fd = -1;
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc < 1 || napi_get_value_int32(env, argv[0], &fd) != napi_ok) {
    napi_throw_type_error(env, NULL, "unlock(fd: number)");
    return NULL;
  }
  napi_create_int32(env, flock(fd, LOCK_UN) < 0 ? -errno : 0, &r);
  return r;
}

static napi_value init(napi_env env, napi_value exports) {
  napi_value f;
  napi_create_function(env, "flock", NAPI_AUTO_LENGTH, js_flock, NULL, &f);
  napi_set_named_property(env, exports, "flock", f);
  napi_create_function(env, "unlock", NAPI_AUTO_LENGTH, js_unlock, NULL, &f);
  napi_set_named_property(env, exports, "unlock", f);
  return exports;
}

NAPI_MODULE(NODE_GYP_MODULE_NAME, init)

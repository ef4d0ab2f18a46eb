// The few system calls a FUSE session needs that Node does not offer: the kernel's FUSE device
// read and written without exceptions, readiness from the event loop itself (uv_poll, so a
// request wakes the JS thread directly, with no thread hop), mount(2)/unmount, and the fd
// hand-over from fusermount3 (SCM_RIGHTS). Everything else lives in TypeScript.
#include <node_api.h>
#include <uv.h>
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <sys/uio.h>

#define CHECK(call) do { if ((call) != napi_ok) { napi_throw_error(env, NULL, #call " failed"); return NULL; } } while (0)

static napi_value num(napi_env env, double v) {
  napi_value r;
  napi_create_double(env, v, &r);
  return r;
}

static int arg_int(napi_env env, napi_value v) {
  int32_t i = -1;
  napi_get_value_int32(env, v, &i);
  return i;
}

static char *arg_str(napi_env env, napi_value v) {
  size_t len = 0;
  if (napi_get_value_string_utf8(env, v, NULL, 0, &len) != napi_ok) return NULL;
  char *s = malloc(len + 1);
  if (!s) return NULL;
  napi_get_value_string_utf8(env, v, s, len + 1, &len);
  return s;
}

// open(path) -> fd | -errno
static napi_value js_open(napi_env env, napi_callback_info info) {
  size_t argc = 1; napi_value argv[1];
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  char *path = arg_str(env, argv[0]);
  if (!path) return num(env, -EINVAL);
  int fd = open(path, O_RDWR | O_CLOEXEC);
  free(path);
  return num(env, fd < 0 ? -errno : fd);
}

// nonblock(fd) -> 0 | -errno
static napi_value js_nonblock(napi_env env, napi_callback_info info) {
  size_t argc = 1; napi_value argv[1];
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  int fd = arg_int(env, argv[0]);
  int fl = fcntl(fd, F_GETFL);
  if (fl < 0 || fcntl(fd, F_SETFL, fl | O_NONBLOCK) < 0) return num(env, -errno);
  return num(env, 0);
}

// read(fd, buffer) -> bytes | -errno; one FUSE request per call.
static napi_value js_read(napi_env env, napi_callback_info info) {
  size_t argc = 2; napi_value argv[2];
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  void *data; size_t len;
  CHECK(napi_get_buffer_info(env, argv[1], &data, &len));
  ssize_t n = read(arg_int(env, argv[0]), data, len);
  return num(env, n < 0 ? -errno : (double)n);
}

// writev(fd, [buffers]) -> bytes | -errno; a reply must reach the device in one call.
static napi_value js_writev(napi_env env, napi_callback_info info) {
  size_t argc = 2; napi_value argv[2];
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  uint32_t count = 0;
  CHECK(napi_get_array_length(env, argv[1], &count));
  if (count > 16) return num(env, -EINVAL);
  struct iovec iov[16];
  for (uint32_t i = 0; i < count; i++) {
    napi_value b;
    CHECK(napi_get_element(env, argv[1], i, &b));
    CHECK(napi_get_buffer_info(env, b, &iov[i].iov_base, &iov[i].iov_len));
  }
  ssize_t n;
  do n = writev(arg_int(env, argv[0]), iov, (int)count); while (n < 0 && errno == EINTR);
  return num(env, n < 0 ? -errno : (double)n);
}

// mount(source, target, fstype, data) -> 0 | -errno (Linux, root only)
static napi_value js_mount(napi_env env, napi_callback_info info) {
  size_t argc = 4; napi_value argv[4];
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
#ifdef __linux__
  char *src = arg_str(env, argv[0]), *dst = arg_str(env, argv[1]), *type = arg_str(env, argv[2]), *data = arg_str(env, argv[3]);
  int r = -1, e = EINVAL;
  if (src && dst && type && data) {
    r = mount(src, dst, type, MS_NOSUID | MS_NODEV | MS_NOATIME, data);
    e = errno;
  }
  free(src); free(dst); free(type); free(data);
  return num(env, r < 0 ? -e : 0);
#else
  return num(env, -ENOSYS);
#endif
}

// unmount(target, lazy) -> 0 | -errno (root only; others use fusermount3 -u)
static napi_value js_unmount(napi_env env, napi_callback_info info) {
  size_t argc = 2; napi_value argv[2];
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  char *dst = arg_str(env, argv[0]);
  if (!dst) return num(env, -EINVAL);
  bool lazy = false;
  napi_get_value_bool(env, argv[1], &lazy);
#ifdef __linux__
  int r = umount2(dst, lazy ? MNT_DETACH : 0);
#else
  int r = unmount(dst, lazy ? MNT_FORCE : 0);
#endif
  int e = errno;
  free(dst);
  return num(env, r < 0 ? -e : 0);
}

// FUSE passthrough (Linux >= 6.9; uapi/linux/fuse.h of 7.40, defined here for older headers):
// registers an open file as a backing file of the connection; the id goes in an OPEN reply.
#ifdef __linux__
#include <stdint.h>
#include <sys/ioctl.h>
struct dfs_backing_map { int32_t fd; uint32_t flags; uint64_t padding; };
#define DFS_IOC_BACKING_OPEN _IOW(229, 1, struct dfs_backing_map)
#define DFS_IOC_BACKING_CLOSE _IOW(229, 2, uint32_t)
#endif

// backingOpen(devFd, fd) -> backing id (> 0) | -errno (EPERM without CAP_SYS_ADMIN, ENOTTY before 6.9)
static napi_value js_backing_open(napi_env env, napi_callback_info info) {
  size_t argc = 2; napi_value argv[2];
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
#ifdef __linux__
  struct dfs_backing_map m = { .fd = arg_int(env, argv[1]), .flags = 0, .padding = 0 };
  int r = ioctl(arg_int(env, argv[0]), DFS_IOC_BACKING_OPEN, &m);
  return num(env, r < 0 ? -errno : r);
#else
  return num(env, -ENOSYS);
#endif
}

// backingClose(devFd, id) -> 0 | -errno
static napi_value js_backing_close(napi_env env, napi_callback_info info) {
  size_t argc = 2; napi_value argv[2];
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
#ifdef __linux__
  uint32_t id = (uint32_t)arg_int(env, argv[1]);
  int r = ioctl(arg_int(env, argv[0]), DFS_IOC_BACKING_CLOSE, &id);
  return num(env, r < 0 ? -errno : 0);
#else
  return num(env, -ENOSYS);
#endif
}

// socketpair() -> [ours (close-on-exec), theirs] | -errno
static napi_value js_socketpair(napi_env env, napi_callback_info info) {
  int sv[2];
  if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv) < 0) return num(env, -errno);
  fcntl(sv[0], F_SETFD, FD_CLOEXEC);
  napi_value arr;
  CHECK(napi_create_array_with_length(env, 2, &arr));
  napi_set_element(env, arr, 0, num(env, sv[0]));
  napi_set_element(env, arr, 1, num(env, sv[1]));
  return arr;
}

// recvFd(socket) -> fd | -errno: the device fd that fusermount3 sends after mounting.
static napi_value js_recvfd(napi_env env, napi_callback_info info) {
  size_t argc = 1; napi_value argv[1];
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  char byte;
  struct iovec iov = { &byte, 1 };
  union { struct cmsghdr h; char buf[CMSG_SPACE(sizeof(int))]; } ctl;
  struct msghdr msg;
  memset(&msg, 0, sizeof msg);
  msg.msg_iov = &iov; msg.msg_iovlen = 1;
  msg.msg_control = ctl.buf; msg.msg_controllen = sizeof ctl.buf;
  ssize_t n;
  do n = recvmsg(arg_int(env, argv[0]), &msg, 0); while (n < 0 && errno == EINTR);
  if (n < 0) return num(env, -errno);
  if (n == 0) return num(env, -ECONNRESET);
  struct cmsghdr *c = CMSG_FIRSTHDR(&msg);
  if ((msg.msg_flags & MSG_CTRUNC) || !c || c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS || c->cmsg_len < CMSG_LEN(sizeof(int))) return num(env, -EPROTO);
  int fd;
  memcpy(&fd, CMSG_DATA(c), sizeof fd);
  fcntl(fd, F_SETFD, FD_CLOEXEC);
  return num(env, fd);
}

// ---- readiness ------------------------------------------------------------------------------

typedef struct {
  uv_poll_t poll;
  napi_env env;
  napi_ref cb;
  napi_async_context ctx;
  int active;
  int closing;    // uv_close called (by unwatch or the finalizer)
  int closed;     // uv_close done
  int finalized;  // the JS handle was collected
} watcher_t;

static void on_poll(uv_poll_t *h, int status, int events) {
  watcher_t *w = (watcher_t *)h->data;
  if (w->closing) return;
  napi_env env = w->env;
  napi_handle_scope scope;
  napi_open_handle_scope(env, &scope);
  napi_value cb, global, arg, result;
  napi_get_reference_value(env, w->cb, &cb);
  napi_get_global(env, &global);
  napi_create_int32(env, status, &arg);
  // make_callback (not call_function) so promise jobs queued by the handlers run right after.
  if (napi_make_callback(env, w->ctx, global, cb, 1, &arg, &result) == napi_pending_exception) {
    napi_value err;
    napi_get_and_clear_last_exception(env, &err);
    napi_fatal_exception(env, err);
  }
  napi_close_handle_scope(env, scope);
}

// The watcher's memory goes once both the libuv handle is closed and the JS handle collected.
static void on_closed(uv_handle_t *h) {
  watcher_t *w = (watcher_t *)h->data;
  w->closed = 1;
  if (w->finalized) free(w);
}

// Releases the callback (and what it holds: the session and its buffers) and closes the poll
// handle; must run before the fd is closed, or epoll could drop a reused fd number.
static void close_watcher(napi_env env, watcher_t *w) {
  if (w->closing) return;
  w->closing = 1;
  if (w->cb) napi_delete_reference(env, w->cb);
  w->cb = NULL;
  if (w->ctx) napi_async_destroy(env, w->ctx);
  w->ctx = NULL;
  uv_close((uv_handle_t *)&w->poll, on_closed);
}

static void finalize_watcher(napi_env env, void *data, void *hint) {
  watcher_t *w = (watcher_t *)data;
  w->finalized = 1;
  if (!w->closing) close_watcher(env, w);
  else if (w->closed) free(w);
}

// watch(fd, cb) -> handle; cb(status) runs on the event loop each time fd is readable.
static napi_value js_watch(napi_env env, napi_callback_info info) {
  size_t argc = 2; napi_value argv[2];
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  uv_loop_t *loop;
  CHECK(napi_get_uv_event_loop(env, &loop));
  watcher_t *w = calloc(1, sizeof *w);
  if (!w) { napi_throw_error(env, NULL, "out of memory"); return NULL; }
  w->env = env;
  if (uv_poll_init(loop, &w->poll, arg_int(env, argv[0])) != 0) { free(w); napi_throw_error(env, NULL, "uv_poll_init failed"); return NULL; }
  w->poll.data = w;
  napi_value name, ext;
  napi_create_string_utf8(env, "delugefs:fuse", NAPI_AUTO_LENGTH, &name);
  if (napi_create_reference(env, argv[1], 1, &w->cb) != napi_ok || napi_async_init(env, NULL, name, &w->ctx) != napi_ok ||
      napi_create_external(env, w, finalize_watcher, NULL, &ext) != napi_ok) {
    w->finalized = 1; // nothing in JS refers to it: freed once closed
    close_watcher(env, w);
    napi_throw_error(env, NULL, "watch failed");
    return NULL;
  }
  return ext;
}

static watcher_t *get_watcher(napi_env env, napi_callback_info info, bool *flag) {
  size_t argc = 2; napi_value argv[2];
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok) return NULL;
  void *p = NULL;
  napi_get_value_external(env, argv[0], &p);
  if (flag && argc > 1) napi_get_value_bool(env, argv[1], flag);
  return (watcher_t *)p;
}

// resume(handle, on): start (on=true) or pause watching; a paused watcher keeps no loop alive.
static napi_value js_resume(napi_env env, napi_callback_info info) {
  bool on = false;
  watcher_t *w = get_watcher(env, info, &on);
  if (!w || w->closing) return num(env, -EBADF);
  int r = 0;
  if (on && !w->active) r = uv_poll_start(&w->poll, UV_READABLE, on_poll);
  if (!on && w->active) r = uv_poll_stop(&w->poll);
  if (r == 0) w->active = on;
  return num(env, r);
}

// unwatch(handle): stops for good and lets go of the callback.
static napi_value js_unwatch(napi_env env, napi_callback_info info) {
  watcher_t *w = get_watcher(env, info, NULL);
  if (w) close_watcher(env, w);
  return num(env, 0);
}

#define EXPORT(name, fn) do { napi_value f; napi_create_function(env, name, NAPI_AUTO_LENGTH, fn, NULL, &f); napi_set_named_property(env, exports, name, f); } while (0)

static napi_value init(napi_env env, napi_value exports) {
  EXPORT("open", js_open);
  EXPORT("nonblock", js_nonblock);
  EXPORT("read", js_read);
  EXPORT("writev", js_writev);
  EXPORT("mount", js_mount);
  EXPORT("unmount", js_unmount);
  EXPORT("socketpair", js_socketpair);
  EXPORT("recvFd", js_recvfd);
  EXPORT("watch", js_watch);
  EXPORT("resume", js_resume);
  EXPORT("unwatch", js_unwatch);
  EXPORT("backingOpen", js_backing_open);
  EXPORT("backingClose", js_backing_close);
  return exports;
}

NAPI_MODULE(NODE_GYP_MODULE_NAME, init)

// sd_notify(3) for Node, which cannot send on a unix datagram socket: one datagram of
// "KEY=value" lines to the service manager's socket ($NOTIFY_SOCKET), sent by the node's own
// process, so the unit needs only NotifyAccess=main and the manager reads this pid from the
// socket's credentials. The protocol is systemd's stable interface, meant to be reimplemented
// (sd_notify(3), NOTES); no libsystemd is linked.
#include <node_api.h>
#include <errno.h>
#include <stddef.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#ifndef MSG_NOSIGNAL
#define MSG_NOSIGNAL 0
#endif

#define MAX_MESSAGE 4096

// notify(address, message) -> 0 | -errno. address: an absolute path, or "@name" for Linux's
// abstract namespace (what systemd gives). Never blocks: a full queue is -EAGAIN, not a stalled
// event loop (the loop serves the FUSE mount).
static napi_value js_notify(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2], r;
  struct sockaddr_un sa;
  char addr[sizeof(sa.sun_path) + 1];
  char msg[MAX_MESSAGE + 1];
  size_t alen, mlen;
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc < 2
      || napi_get_value_string_utf8(env, argv[0], NULL, 0, &alen) != napi_ok
      || napi_get_value_string_utf8(env, argv[1], NULL, 0, &mlen) != napi_ok) {
    napi_throw_type_error(env, NULL, "notify(address, message)");
    return NULL;
  }
  int rc = 0;
  if (alen < 2 || alen >= sizeof(sa.sun_path)) rc = -ENAMETOOLONG;
  else if (mlen > MAX_MESSAGE) rc = -EMSGSIZE;
  if (rc) {
    napi_create_int32(env, rc, &r);
    return r;
  }
  napi_get_value_string_utf8(env, argv[0], addr, sizeof(addr), &alen);
  napi_get_value_string_utf8(env, argv[1], msg, sizeof(msg), &mlen);
  memset(&sa, 0, sizeof(sa));
  sa.sun_family = AF_UNIX;
  socklen_t slen;
  if (addr[0] == '/') {
    memcpy(sa.sun_path, addr, alen);
    slen = offsetof(struct sockaddr_un, sun_path) + alen + 1;
  } else if (addr[0] == '@') {
#ifdef __linux__
    // sun_path[0] stays 0; the name is the rest, without a terminating 0 (counted by length).
    memcpy(sa.sun_path + 1, addr + 1, alen - 1);
    slen = offsetof(struct sockaddr_un, sun_path) + alen;
#else
    rc = -EAFNOSUPPORT;
#endif
  } else {
    rc = -EAFNOSUPPORT; // e.g. systemd's vsock: addresses, for VMs
  }
  if (!rc) {
#ifdef SOCK_CLOEXEC
    int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
#else
    int fd = socket(AF_UNIX, SOCK_DGRAM, 0);
#endif
    if (fd < 0) rc = -errno;
    else {
      ssize_t n;
      do n = sendto(fd, msg, mlen, MSG_NOSIGNAL | MSG_DONTWAIT, (struct sockaddr *)&sa, slen); while (n < 0 && errno == EINTR);
      if (n < 0) rc = -errno;
      close(fd);
    }
  }
  napi_create_int32(env, rc, &r);
  return r;
}

static napi_value init(napi_env env, napi_value exports) {
  napi_value f;
  napi_create_function(env, "notify", NAPI_AUTO_LENGTH, js_notify, NULL, &f);
  napi_set_named_property(env, exports, "notify", f);
  return exports;
}

NAPI_MODULE(NODE_GYP_MODULE_NAME, init)

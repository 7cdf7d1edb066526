/* listen.c: a loopback HTTP listener that waits for one browser redirect
 * (the OAuth authorization response of `favcrm login --oauth`).
 *
 *   core.loopback_listen([port]) -> listener | nil, err
 *       binds 127.0.0.1:port (0 or absent: a free port) and listens
 *   listener:port() -> integer
 *   listener:accept(timeout_ms, path [, page]) -> target | nil, err
 *       waits (at most timeout_ms) for a `GET <path>[?query] HTTP/1.x`
 *       request, answers it 200 with page (short HTML) and returns the
 *       request target ("/callback?code=...&state=..."); any other request
 *       in the meantime gets a 404 and the wait goes on
 *   listener:close() (also __gc and __close; idempotent)
 *
 * Bounded: a request head is read up to 8 KiB (a longer one is answered 431
 * and dropped), one connection at a time, each read and write limited by
 * what is left of timeout_ms. Runtime failures return nil, err with code
 * "timeout" (the deadline passed), "too_large" (never here: a long head is
 * skipped) or "network" (socket errors); misuse raises. No Lua call is made
 * while a connection is open, so nothing can longjmp past its close. */
#include "favcrm.h"
#include "secret.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define LISTEN_MT "favcrm.Listener"
#define LISTEN_HEAD_MAX 8192 /* bytes of one request head */
#define LISTEN_PAGE_MAX 4096 /* bytes of the answer page */

typedef struct fav_listener {
  int fd;
  int port;
} fav_listener;

/* Milliseconds left until deadline (monotonic), at least 0. Never raises. */
static int listen_left(double deadline) {
  double left = deadline - fav_monotonic_ms();
  return left <= 0 ? 0 : fav_ms_int(left);
}

/* Waits for ev on fd until deadline. Returns 1 ready, 0 timeout, -1 error
 * (errno set). EINTR is retried. Never raises. */
static int listen_wait(int fd, short ev, double deadline) {
  for (;;) {
    struct pollfd p;
    int r;
    p.fd = fd;
    p.events = ev;
    p.revents = 0;
    r = poll(&p, 1, listen_left(deadline));
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) return r;
    return 1;
  }
}

/* Writes all n bytes of s to fd before deadline; gives up quietly (the
 * browser's page is a courtesy). Never raises. */
static void listen_send(int fd, const char *s, size_t n, double deadline) {
  while (n > 0) {
    ssize_t w;
    if (listen_wait(fd, POLLOUT, deadline) <= 0) return;
    w = send(fd, s, n, MSG_NOSIGNAL);
    if (w < 0) {
      if (errno == EINTR || errno == EAGAIN || errno == EWOULDBLOCK) continue;
      return;
    }
    s += w;
    n -= (size_t)w;
  }
}

/* Answers status with body on fd. Never raises. */
static void listen_answer(int fd, const char *status, const char *body, double deadline) {
  char head[256];
  size_t blen = strlen(body);
  int n = snprintf(head, sizeof head,
                   "HTTP/1.1 %s\r\nContent-Type: text/html; charset=utf-8\r\nContent-Length: %lu\r\n"
                   "Cache-Control: no-store\r\nConnection: close\r\n\r\n",
                   status, (unsigned long)blen);
  if (n < 0 || (size_t)n >= sizeof head) return;
  listen_send(fd, head, (size_t)n, deadline);
  listen_send(fd, body, blen, deadline);
}

/* Reads one request head from fd into buf (NUL-terminated) until a blank
 * line, before deadline. Returns the head's length, 0 when the peer closed
 * or the deadline passed, -1 when the head is longer than
 * LISTEN_HEAD_MAX - 1 bytes. Never raises. */
static long listen_read_head(int fd, char *buf, double deadline) {
  size_t len = 0;
  for (;;) {
    ssize_t r;
    if (len >= LISTEN_HEAD_MAX - 1) return -1;
    if (listen_wait(fd, POLLIN, deadline) <= 0) return 0;
    r = recv(fd, buf + len, LISTEN_HEAD_MAX - 1 - len, 0);
    if (r < 0 && (errno == EINTR || errno == EAGAIN || errno == EWOULDBLOCK)) continue;
    if (r <= 0) return 0;
    len += (size_t)r;
    buf[len] = '\0';
    if (strstr(buf, "\r\n\r\n") != NULL || strstr(buf, "\n\n") != NULL) return (long)len;
  }
}

/* If head's request line is `GET <path>[?...] HTTP/...`, copies the target
 * to out (NUL-terminated, at most LISTEN_HEAD_MAX bytes) and returns 1;
 * else 0. Never raises. */
static int listen_match(const char *head, const char *path, size_t plen, char *out) {
  const char *t, *end;
  if (strncmp(head, "GET ", 4) != 0) return 0;
  t = head + 4;
  end = strchr(t, ' ');
  if (end == NULL || (size_t)(end - t) >= LISTEN_HEAD_MAX) return 0;
  if ((size_t)(end - t) < plen || strncmp(t, path, plen) != 0) return 0;
  if (t[plen] != '?' && t[plen] != ' ') return 0;
  memcpy(out, t, (size_t)(end - t));
  out[end - t] = '\0';
  return 1;
}

static fav_listener *check_listener(lua_State *L) {
  return (fav_listener *)luaL_checkudata(L, 1, LISTEN_MT);
}

/* core.loopback_listen([port]): takes an optional port (0..65535); leaves a
 * listener, or nil and an error table. Raises on a bad port or memory. */
static int fav_listen_new(lua_State *L) {
  lua_Integer port = luaL_optinteger(L, 1, 0);
  fav_listener *l;
  struct sockaddr_in a;
  socklen_t alen = sizeof a;
  int fd, one = 1, e;
  luaL_argcheck(L, port >= 0 && port <= 65535, 1, "port must be within 0..65535");
  l = (fav_listener *)lua_newuserdatauv(L, sizeof *l, 0); /* userdata first, socket second */
  l->fd = -1;
  l->port = 0;
  luaL_setmetatable(L, LISTEN_MT);
  fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return fav_pushfail(L, FAV_ENETWORK, "loopback listener: socket: %s", strerror(errno));
  (void)setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  memset(&a, 0, sizeof a);
  a.sin_family = AF_INET;
  a.sin_port = htons((unsigned short)port);
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (bind(fd, (struct sockaddr *)&a, sizeof a) != 0 || listen(fd, 8) != 0 ||
      getsockname(fd, (struct sockaddr *)&a, &alen) != 0 ||
      fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK) != 0) {
    e = errno;
    close(fd);
    return fav_pushfail(L, FAV_ENETWORK, "loopback listener on 127.0.0.1:%d: %s", (int)port, strerror(e));
  }
  l->fd = fd;
  l->port = ntohs(a.sin_port);
  return 1;
}

/* listener:port() -> the bound port (0 once closed). */
static int fav_listen_port(lua_State *L) {
  fav_listener *l = check_listener(L);
  lua_pushinteger(L, l->fd >= 0 ? l->port : 0);
  return 1;
}

/* listener:accept(timeout_ms, path [, page]): see the top of the file.
 * Takes the listener, a time in ms, a path starting with "/" and an
 * optional page; leaves the target or nil, err. Raises on misuse or
 * memory (only once no connection is open). */
static int fav_listen_accept(lua_State *L) {
  fav_listener *l = check_listener(L);
  double deadline = fav_monotonic_ms() + fav_optms(L, 2, 0);
  size_t plen, pglen;
  const char *path = luaL_checklstring(L, 3, &plen);
  const char *page = luaL_optlstring(L, 4, "<!doctype html><title>favcrm</title><p>Done: you can close this window.",
                                     &pglen);
  char *buf, *target;
  luaL_argcheck(L, plen > 0 && path[0] == '/' && strlen(path) == plen, 3, "path must start with /");
  luaL_argcheck(L, pglen <= LISTEN_PAGE_MAX && strlen(page) == pglen, 4, "page must be at most 4096 bytes");
  if (l->fd < 0) return luaL_error(L, "listener is closed");
  /* scratch memory from Lua's allocator, held by the stack: nothing to free on error */
  buf = (char *)lua_newuserdatauv(L, LISTEN_HEAD_MAX, 0);
  target = (char *)lua_newuserdatauv(L, LISTEN_HEAD_MAX, 0);
  for (;;) {
    int c, r = listen_wait(l->fd, POLLIN, deadline);
    long n;
    if (r == 0) return fav_pushfail(L, FAV_ETIMEOUT, "no redirect reached 127.0.0.1:%d%s in time", l->port, path);
    if (r < 0) return fav_pushfail(L, FAV_ENETWORK, "loopback listener: poll: %s", strerror(errno));
    c = accept(l->fd, NULL, NULL);
    if (c < 0) {
      if (errno == EINTR || errno == EAGAIN || errno == EWOULDBLOCK || errno == ECONNABORTED) continue;
      return fav_pushfail(L, FAV_ENETWORK, "loopback listener: accept: %s", strerror(errno));
    }
    (void)fcntl(c, F_SETFL, fcntl(c, F_GETFL) | O_NONBLOCK);
    n = listen_read_head(c, buf, deadline);
    if (n > 0 && listen_match(buf, path, plen, target)) {
      listen_answer(c, "200 OK", page, deadline);
      close(c);
      fav_wipe(buf, LISTEN_HEAD_MAX);
      lua_pushstring(L, target);
      fav_wipe(target, LISTEN_HEAD_MAX);
      return 1;
    }
    if (n < 0) listen_answer(c, "431 Request Header Fields Too Large", "request head too large", deadline);
    else if (n > 0) listen_answer(c, "404 Not Found", "not found", deadline);
    close(c);
    fav_wipe(buf, LISTEN_HEAD_MAX);
  }
}

/* listener:close(), __gc, __close: closes the socket once. Never raises
 * (but for a non-listener argument). */
static int fav_listen_close(lua_State *L) {
  fav_listener *l = check_listener(L);
  if (l->fd >= 0) {
    close(l->fd);
    l->fd = -1;
  }
  return 0;
}

/* Takes the module table at the top; adds loopback_listen and registers
 * favcrm.Listener. Leaves the stack as found. Can raise (memory). */
int fav_listen_open(lua_State *L) {
  static const luaL_Reg methods[] = {
    {"port", fav_listen_port},
    {"accept", fav_listen_accept},
    {"close", fav_listen_close},
    {NULL, NULL}};
  fav_newclass(L, LISTEN_MT, methods, NULL, fav_listen_close);
  lua_pop(L, 1);
  lua_pushcfunction(L, fav_listen_new);
  lua_setfield(L, -2, "loopback_listen");
  return 0;
}

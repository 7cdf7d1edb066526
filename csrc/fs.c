/* fs.c: files and clocks for favcrm.core: write_file_atomic, mkdir_p,
 * stat, chmod, unlink, lock_file, now, monotonic, getpid, geteuid, isatty,
 * read_secret_line, poll_fds, read_fd.
 *
 * Runtime failures return nil, err with err = {code=, message="<path>:
 * <strerror>", errno=}; code is "not_found" (ENOENT, for stat, chmod and
 * unlink), "io" otherwise; read_secret_line adds "no_terminal",
 * "too_large" and "cancelled". Misuse raises. Modes are exact: the umask
 * does not apply (the file or folder is chmod'ed to the mode asked). No
 * Lua call is made while a file descriptor is open or a terminal's echo
 * is off, so nothing can longjmp past the clean-up. */
#include "favcrm.h"
#include "secret.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

#define FS_SECRET_LINE_MAX 4096 /* read_secret_line's cap, in bytes */
#define FS_TMP_ATTEMPTS 16      /* temp names tried before giving up */
#define FS_LOCK_MT "favcrm.FileLock"
#define FS_LOCK_TIMEOUT 10.0    /* lock_file's default wait, in seconds */

/* Pushes nil and an error table {code = e, message = "<what>: <strerror(e)>"
 * (or just <what> when err is 0), errno = err} (util.h's fav_pushfail).
 * Returns 2. Can raise (memory): call it only once every descriptor is
 * closed. */
static int fs_error(lua_State *L, fav_err e, const char *what, int err) {
  char msg[256];
  if (err != 0) {
    if (strerror_r(err, msg, sizeof msg) != 0) snprintf(msg, sizeof msg, "error %d", err);
    fav_pushfail(L, e, "%s: %s", what, msg);
  } else {
    fav_pushfail(L, e, "%s", what);
  }
  lua_pushinteger(L, (lua_Integer)err);
  lua_setfield(L, -2, "errno");
  return 2;
}

/* fs_error with code "not_found" for ENOENT, else "io". Returns 2. */
static int fs_errno(lua_State *L, const char *path, int e) {
  return fs_error(L, e == ENOENT ? FAV_ENOT_FOUND : FAV_EIO, path, e);
}

/* The path at idx: a string without NUL bytes. Raises otherwise. */
static const char *fs_checkpath(lua_State *L, int idx, size_t *len) {
  size_t n;
  const char *p = luaL_checklstring(L, idx, &n);
  luaL_argcheck(L, n > 0 && strlen(p) == n, idx, "path must be a non-empty string without NUL");
  if (len != NULL) *len = n;
  return p;
}

/* The permission bits at idx (an integer 0..07777), or def when the
 * argument is absent (and optional is set). Raises otherwise. */
static mode_t fs_checkmode(lua_State *L, int idx, int optional, mode_t def) {
  lua_Integer m;
  if (optional && lua_isnoneornil(L, idx)) return def;
  luaL_argcheck(L, lua_type(L, idx) == LUA_TNUMBER && lua_isinteger(L, idx), idx,
                "mode must be an integer");
  m = lua_tointeger(L, idx);
  luaL_argcheck(L, m >= 0 && m <= 07777, idx, "mode must be within 0..07777");
  return (mode_t)m;
}

/* A few pseudo-random bits for temp names (O_EXCL makes them safe; they
 * only need to differ). Never raises. */
static uint64_t fs_random(unsigned attempt) {
  struct timespec ts;
  uint64_t x;
  clock_gettime(CLOCK_REALTIME, &ts);
  x = (uint64_t)ts.tv_nsec ^ ((uint64_t)ts.tv_sec << 30) ^ ((uint64_t)(uintptr_t)&ts << 7) ^
      ((uint64_t)attempt * 0x9E3779B97F4A7C15ULL);
  x ^= x >> 30; /* splitmix64 finaliser */
  x *= 0xBF58476D1CE4E5B9ULL;
  x ^= x >> 27;
  x *= 0x94D049BB133111EBULL;
  x ^= x >> 31;
  return x;
}

/* write(2) all n bytes of p to fd, retrying short writes and EINTR.
 * Returns 0 or an errno. */
static int fs_write_all(int fd, const char *p, size_t n) {
  while (n > 0) {
    ssize_t w = write(fd, p, n);
    if (w < 0) {
      if (errno == EINTR) continue;
      return errno;
    }
    p += w;
    n -= (size_t)w;
  }
  return 0;
}

/* fsync(2) retrying EINTR. Returns 0 or an errno. */
static int fs_fsync(int fd) {
  while (fsync(fd) != 0) {
    if (errno != EINTR) return errno;
  }
  return 0;
}

/* Writes, fsyncs and closes the new temp file fd. Makes no Lua call.
 * Returns 0 or an errno; fd is closed either way. */
static int fs_fill_tmp(int fd, mode_t mode, const char *data, size_t len) {
  int e = 0;
  if (fchmod(fd, mode) != 0) e = errno;
  if (e == 0) e = fs_write_all(fd, data, len);
  if (e == 0) e = fs_fsync(fd);
  if (close(fd) != 0 && e == 0 && errno != EINTR) e = errno;
  return e;
}

/* Writes the TOML basic-string form of the n bytes at p ('"' ... '"', with
 * \" \\ and the control bytes as \uXXXX) to out, or only counts when out
 * is NULL. Returns its length. Makes no Lua call. */
static size_t fs_toml_quote(char *out, const char *p, size_t n) {
  size_t i, o = 0;
  if (out) out[o] = '"';
  o++;
  for (i = 0; i < n; i++) {
    unsigned char c = (unsigned char)p[i];
    if (c == '"' || c == '\\') {
      if (out) { out[o] = '\\'; out[o + 1] = (char)c; }
      o += 2;
    } else if (c < 0x20 || c == 0x7f) {
      if (out) snprintf(out + o, 7, "\\u%04X", c);
      o += 6;
    } else {
      if (out) out[o] = (char)c;
      o++;
    }
  }
  if (out) out[o] = '"';
  return o + 1;
}

/* The data argument of write_file_atomic, at index 2: a string, or a list
 * of strings and open favcrm.Secrets, each secret written as a quoted TOML
 * string from its own bytes (so a key goes to the file without ever being
 * a Lua string). A list is assembled into a userdata that replaces it at
 * index 2; *wipe is set then, and the caller wipes the bytes once written.
 * Raises on a bad item. */
static const char *fs_data(lua_State *L, size_t *len, int *wipe) {
  size_t i, n, total = 0, o = 0;
  char *buf;
  *wipe = 0;
  if (lua_type(L, 2) == LUA_TSTRING) return lua_tolstring(L, 2, len);
  luaL_argcheck(L, lua_istable(L, 2), 2, "string or list of strings and secrets expected");
  n = lua_rawlen(L, 2);
  for (i = 1; i <= n; i++) {
    size_t l;
    const char *sp;
    lua_rawgeti(L, 2, (int)i);
    if (lua_type(L, -1) == LUA_TSTRING) total += lua_rawlen(L, -1);
    else if ((sp = fav_secret_get(L, -1, &l)) != NULL) total += fs_toml_quote(NULL, sp, l);
    else luaL_argerror(L, 2, "list items must be strings or open secrets");
    lua_pop(L, 1);
  }
  buf = lua_newuserdatauv(L, total + 1, 0);
  for (i = 1; i <= n; i++) {
    size_t l;
    const char *sp;
    lua_rawgeti(L, 2, (int)i);
    if (lua_type(L, -1) == LUA_TSTRING) {
      sp = lua_tolstring(L, -1, &l);
      memcpy(buf + o, sp, l);
      o += l;
    } else {
      sp = fav_secret_get(L, -1, &l);
      o += fs_toml_quote(buf + o, sp, l);
    }
    lua_pop(L, 1);
  }
  buf[o] = '\0';
  lua_replace(L, 2);
  *wipe = 1;
  *len = o;
  return buf;
}

/* core.write_file_atomic(path, data [, mode]): takes a path, data (a string,
 * or a list of strings and secrets: see fs_data; the assembled bytes are
 * wiped once written) and
 * permission bits (default 0600); writes data to ".<name>.tmp.<pid>.<rand>"
 * in path's folder (O_CREAT|O_EXCL, exact mode), fsyncs it, renames it over
 * path and fsyncs the folder. Returns true, or nil, err (code "io"; the
 * temp file is removed, path untouched). Raises on bad arguments. */
static int fs_write_file_atomic(lua_State *L) {
  size_t plen, dlen;
  const char *path = fs_checkpath(L, 1, &plen);
  const char *data, *slash, *base, *dir, *tmp = NULL;
  mode_t mode;
  int fd = -1, e = 0, dfd, wipe;
  unsigned attempt;
  char rnd[17];
  mode = fs_checkmode(L, 3, 1, 0600);
  lua_settop(L, 3);
  data = fs_data(L, &dlen, &wipe);
  slash = strrchr(path, '/');
  base = slash ? slash + 1 : path;
  luaL_argcheck(L, *base != '\0', 1, "path must name a file, not a folder");
  if (slash == NULL) lua_pushliteral(L, ".");
  else if (slash == path) lua_pushliteral(L, "/");
  else lua_pushlstring(L, path, (size_t)(slash - path));
  dir = lua_tostring(L, 4); /* index 4: the folder */
  for (attempt = 0; attempt < FS_TMP_ATTEMPTS; attempt++) {
    snprintf(rnd, sizeof rnd, "%016llx", (unsigned long long)fs_random(attempt));
    lua_settop(L, 4);
    lua_pushfstring(L, "%s/.%s.tmp.%d.%s", dir, base, (int)getpid(), rnd);
    tmp = lua_tostring(L, 5); /* index 5: the temp name (anchored) */
    fd = open(tmp, O_CREAT | O_EXCL | O_WRONLY | O_CLOEXEC, mode);
    if (fd >= 0 || errno != EEXIST) break;
  }
  if (fd < 0) return fs_error(L, FAV_EIO, path, errno);
  /* fd is open: no Lua call until it is closed */
  e = fs_fill_tmp(fd, mode, data, dlen);
  if (wipe) fav_wipe((void *)data, dlen);
  if (e == 0 && rename(tmp, path) != 0) e = errno;
  if (e != 0) {
    unlink(tmp);
    return fs_error(L, FAV_EIO, path, e);
  }
  dfd = open(dir, O_RDONLY | O_CLOEXEC | O_DIRECTORY);
  if (dfd < 0) {
    e = errno;
  } else {
    e = fs_fsync(dfd);
    if (e == EINVAL || e == EROFS) e = 0; /* folder fsync not supported */
    close(dfd);
  }
  if (e != 0) return fs_error(L, FAV_EIO, path, e);
  lua_pushboolean(L, 1);
  return 1;
}

/* Makes the folder buf unless it exists as a folder; a new one gets the
 * exact mode. Returns 0 or an errno. Makes no Lua call. */
static int fs_mkdir1(const char *buf, mode_t mode) {
  struct stat st;
  if (mkdir(buf, mode) == 0) return chmod(buf, mode) == 0 ? 0 : errno;
  if (errno == EEXIST || errno == EACCES || errno == EPERM || errno == EROFS) {
    int e = errno;
    if (stat(buf, &st) == 0) return S_ISDIR(st.st_mode) ? 0 : ENOTDIR;
    return e;
  }
  return errno;
}

/* core.mkdir_p(path [, mode]): takes a path and permission bits (default
 * 0700); makes each missing folder along path with that exact mode.
 * Returns true, or nil, err (code "io"). Raises on bad arguments. */
static int fs_mkdir_p(lua_State *L) {
  size_t len, i;
  const char *path = fs_checkpath(L, 1, &len);
  mode_t mode = fs_checkmode(L, 2, 1, 0700);
  char *buf = (char *)lua_newuserdatauv(L, len + 1, 0); /* scratch, Lua-owned */
  memcpy(buf, path, len + 1);
  for (i = 1; i <= len; i++) {
    if ((i == len || buf[i] == '/') && buf[i - 1] != '/') {
      char c = buf[i];
      int e;
      buf[i] = '\0';
      e = fs_mkdir1(buf, mode);
      buf[i] = c;
      if (e != 0) return fs_error(L, FAV_EIO, path, e);
    }
  }
  lua_pushboolean(L, 1);
  return 1;
}

/* core.stat(path): returns {mode = permission bits, size, uid, type =
 * "file"|"dir"|"other"} (following symlinks), or nil, err ("not_found"
 * for ENOENT, else "io"). Raises on a bad argument. */
static int fs_stat(lua_State *L) {
  const char *path = fs_checkpath(L, 1, NULL);
  struct stat st;
  if (stat(path, &st) != 0) return fs_errno(L, path, errno);
  lua_createtable(L, 0, 4);
  lua_pushinteger(L, (lua_Integer)(st.st_mode & 07777));
  lua_setfield(L, -2, "mode");
  lua_pushinteger(L, (lua_Integer)st.st_size);
  lua_setfield(L, -2, "size");
  lua_pushinteger(L, (lua_Integer)st.st_uid);
  lua_setfield(L, -2, "uid");
  if (S_ISREG(st.st_mode)) lua_pushliteral(L, "file");
  else if (S_ISDIR(st.st_mode)) lua_pushliteral(L, "dir");
  else lua_pushliteral(L, "other");
  lua_setfield(L, -2, "type");
  return 1;
}

/* core.chmod(path, mode): returns true or nil, err. Raises on bad args. */
static int fs_chmod(lua_State *L) {
  const char *path = fs_checkpath(L, 1, NULL);
  mode_t mode = fs_checkmode(L, 2, 0, 0);
  if (chmod(path, mode) != 0) return fs_errno(L, path, errno);
  lua_pushboolean(L, 1);
  return 1;
}

/* core.unlink(path): returns true or nil, err. Raises on a bad argument. */
static int fs_unlink(lua_State *L) {
  const char *path = fs_checkpath(L, 1, NULL);
  if (unlink(path) != 0) return fs_errno(L, path, errno);
  lua_pushboolean(L, 1);
  return 1;
}

typedef struct {
  int fd; /* the lock file, or -1 once unlocked */
} fs_lock;

/* lock:unlock(), __gc, __close: releases the lock (closes the lock file;
 * the file itself stays). Idempotent; never raises on a lock. */
static int fs_lock_release(lua_State *L) {
  fs_lock *lk = (fs_lock *)luaL_checkudata(L, 1, FS_LOCK_MT);
  if (lk->fd >= 0) {
    close(lk->fd); /* closing drops every fcntl lock this process holds on it */
    lk->fd = -1;
  }
  return 0;
}

/* Tries to take an exclusive fcntl write lock on fd until deadline (in
 * fav_monotonic_ms() milliseconds); polls every 1..20 ms. Returns 0, ETIMEDOUT or an errno. Makes
 * no Lua call. */
static int fs_lock_wait(int fd, double deadline) {
  long pause_ns = 1000000L;
  for (;;) {
    struct flock fl;
    struct timespec ts;
    memset(&fl, 0, sizeof fl);
    fl.l_type = F_WRLCK;
    fl.l_whence = SEEK_SET; /* l_start = l_len = 0: the whole file */
    if (fcntl(fd, F_SETLK, &fl) == 0) return 0;
    if (errno == EINTR) continue;
    if (errno != EACCES && errno != EAGAIN) return errno;
    if (fav_monotonic_ms() >= deadline) return ETIMEDOUT;
    ts.tv_sec = 0;
    ts.tv_nsec = pause_ns;
    nanosleep(&ts, NULL);
    if (pause_ns < 20000000L) pause_ns *= 2;
  }
}

/* core.lock_file(path [, timeout]): takes the lock file's path (created
 * 0600 if missing; a symlink is refused) and the seconds to wait (default
 * 10, finite, >= 0); waits for an exclusive lock on it, shared with every
 * process that locks the same file this way. Returns a lock (lock:unlock(),
 * also on collection and __close), or nil, err (code "timeout" when another
 * process held it all along, else "io"). Raises on bad arguments. */
static int fs_lock_file(lua_State *L) {
  const char *path = fs_checkpath(L, 1, NULL);
  lua_Number timeout = luaL_optnumber(L, 2, FS_LOCK_TIMEOUT);
  double start = fav_monotonic_ms();
  fs_lock *lk;
  int e;
  luaL_argcheck(L, timeout >= 0 && timeout <= 86400, 2, "timeout must be within 0..86400 seconds");
  lk = (fs_lock *)lua_newuserdatauv(L, sizeof *lk, 0);
  lk->fd = -1;
  luaL_setmetatable(L, FS_LOCK_MT);
  lk->fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
  if (lk->fd < 0) return fs_error(L, FAV_EIO, path, errno);
  e = fs_lock_wait(lk->fd, start + (double)timeout * 1000.0);
  if (e != 0) {
    close(lk->fd);
    lk->fd = -1;
    if (e == ETIMEDOUT) return fs_error(L, FAV_ETIMEOUT, "another process holds the lock on the config file", 0);
    return fs_error(L, FAV_EIO, path, e);
  }
  return 1;
}

/* core.geteuid(): the effective user id, an integer. */
static int fs_geteuid(lua_State *L) {
  lua_pushinteger(L, (lua_Integer)geteuid());
  return 1;
}

/* core.now(): wall-clock seconds since the epoch, a float. Raises only if
 * the clock fails. */
static int fs_now(lua_State *L) {
  struct timespec ts;
  if (clock_gettime(CLOCK_REALTIME, &ts) != 0) return luaL_error(L, "clock_gettime failed");
  lua_pushnumber(L, (lua_Number)ts.tv_sec + (lua_Number)ts.tv_nsec / 1e9);
  return 1;
}

/* core.monotonic(): monotonic seconds (arbitrary origin), a float, from
 * the module's one monotonic clock (util.h). Never raises. */
static int fs_monotonic(lua_State *L) {
  lua_pushnumber(L, (lua_Number)(fav_monotonic_ms() / 1000.0));
  return 1;
}

/* core.getpid(): the process id, an integer. */
static int fs_getpid(lua_State *L) {
  lua_pushinteger(L, (lua_Integer)getpid());
  return 1;
}

/* core.isatty(fd): takes an integer descriptor; returns a boolean. */
static int fs_isatty(lua_State *L) {
  lua_Integer fd = luaL_checkinteger(L, 1);
  lua_pushboolean(L, fd >= 0 && fd <= 0x7fffffff && isatty((int)fd));
  return 1;
}

#define FS_LINE_TOO_LONG (-1) /* fs_read_line: over cap, rest dropped   */
#define FS_LINE_EOF (-2)      /* fs_read_line: end of input, no byte    */

/* Reads one line from the terminal fd (echo off by the caller) into buf
 * (cap bytes). *n gets the length without the line end. Returns 0,
 * FS_LINE_TOO_LONG (the rest of the line is read and dropped),
 * FS_LINE_EOF, or a read errno (EINTR: interrupted). Makes no Lua call. */
static int fs_read_line(int fd, char *buf, size_t cap, size_t *n) {
  size_t len = 0;
  for (;;) {
    ssize_t r;
    char *nl;
    if (len == cap) { /* too long: drain the rest of the line */
      char sink[256];
      for (;;) {
        r = read(fd, sink, sizeof sink);
        if (r <= 0 || memchr(sink, '\n', (size_t)r) != NULL) break;
      }
      fav_wipe(sink, sizeof sink);
      *n = 0;
      return FS_LINE_TOO_LONG;
    }
    r = read(fd, buf + len, cap - len);
    if (r < 0) return errno;
    if (r == 0) { /* end of input */
      if (len == 0) return FS_LINE_EOF;
      break;
    }
    nl = (char *)memchr(buf + len, '\n', (size_t)r);
    if (nl != NULL) {
      len = (size_t)(nl - buf);
      break;
    }
    len += (size_t)r;
  }
  if (len > 0 && buf[len - 1] == '\r') len--;
  *n = len;
  return 0;
}

/* core.read_secret_line([prompt]): writes prompt to /dev/tty, reads one
 * line (at most 4096 bytes) with echo off, restores the terminal on every
 * path and returns the line as a favcrm.Secret (never a string), or nil,
 * err with code "no_terminal" (no /dev/tty), "too_large", "cancelled"
 * (end of input or interrupted) or "io". The bytes are read straight into
 * the secret's own memory. Raises on a bad argument or memory failure. */
static int fs_read_secret_line(lua_State *L) {
  size_t plen, n = 0;
  const char *prompt = luaL_optlstring(L, 1, "", &plen);
  char *buf;
  int fd, e = 0, sidx;
  struct termios old, quiet;
  lua_settop(L, 1);
  buf = fav_secret_pushbuf(L, FS_SECRET_LINE_MAX); /* index 2 */
  sidx = lua_gettop(L);
  fd = open("/dev/tty", O_RDWR | O_NOCTTY | O_CLOEXEC);
  if (fd < 0) return fs_error(L, FAV_ENO_TERMINAL, "/dev/tty", errno);
  if (tcgetattr(fd, &old) != 0) {
    e = errno;
    close(fd);
    return fs_error(L, FAV_ENO_TERMINAL, "/dev/tty", e);
  }
  quiet = old;
  quiet.c_lflag &= (tcflag_t) ~(ECHO | ECHOE | ECHOK);
  quiet.c_lflag |= ECHONL;
  if (tcsetattr(fd, TCSAFLUSH, &quiet) != 0) {
    e = errno;
    close(fd);
    return fs_error(L, FAV_EIO, "/dev/tty", e);
  }
  /* echo is off: no Lua call until the terminal is restored */
  e = fs_write_all(fd, prompt, plen);
  if (e == 0) e = fs_read_line(fd, buf, FS_SECRET_LINE_MAX, &n);
  while (tcsetattr(fd, TCSAFLUSH, &old) != 0 && errno == EINTR) {
  }
  close(fd);
  if (e != 0) {
    fav_wipe(buf, FS_SECRET_LINE_MAX);
    if (e == FS_LINE_TOO_LONG) return fs_error(L, FAV_ETOO_LARGE, "input line longer than 4096 bytes", 0);
    if (e == EINTR) return fs_error(L, FAV_ECANCELLED, "input interrupted", 0);
    if (e == FS_LINE_EOF) return fs_error(L, FAV_ECANCELLED, "end of input", 0);
    return fs_error(L, FAV_EIO, "/dev/tty", e);
  }
  fav_secret_setlen(L, sidx, n);
  return 1;
}

/* core.read_secret_file(path): reads the first line of the file (at most
 * 4096 bytes, without its line end) straight into a new favcrm.Secret and
 * returns it, or nil, err ("not_found", "too_large", "io"). The key never
 * becomes a Lua string. Raises on a bad path or memory failure. */
static int fs_read_secret_file(lua_State *L) {
  const char *path = fs_checkpath(L, 1, NULL);
  size_t n = 0;
  char *buf;
  int fd, e;
  lua_settop(L, 1);
  buf = fav_secret_pushbuf(L, FS_SECRET_LINE_MAX); /* index 2 */
  fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
  if (fd < 0) return fs_errno(L, path, errno);
  e = fs_read_line(fd, buf, FS_SECRET_LINE_MAX, &n);
  close(fd);
  if (e == FS_LINE_EOF) e = 0, n = 0;
  if (e != 0) {
    fav_wipe(buf, FS_SECRET_LINE_MAX);
    if (e == FS_LINE_TOO_LONG) return fs_error(L, FAV_ETOO_LARGE, "the first line is longer than 4096 bytes", 0);
    return fs_error(L, FAV_EIO, path, e);
  }
  fav_secret_setlen(L, 2, n);
  lua_settop(L, 2);
  return 1;
}

#define FS_POLL_MAX 64        /* poll_fds: descriptors watched at most    */
#define FS_READ_MAX 65536     /* read_fd: bytes read at most per call     */

/* core.poll_fds(fds, timeout_ms) -> ready: waits (at most timeout_ms; -1 is
 * not allowed: every wait has a deadline) until one of fds ({fd=, read=,
 * write=}, at most 64) can be read or written, or has hung up. ready is the
 * list of the indexes into fds that are ready (empty on timeout or EINTR).
 * Misuse raises; a poll failure returns nil, err. */
static int fs_poll_fds(lua_State *L) {
  struct pollfd p[FS_POLL_MAX];
  lua_Integer ms;
  int n, i, r, k = 0;
  luaL_checktype(L, 1, LUA_TTABLE);
  ms = luaL_checkinteger(L, 2);
  luaL_argcheck(L, ms >= 0 && ms <= 86400000, 2, "timeout_ms from 0 to 86400000 expected");
  n = (int)lua_rawlen(L, 1);
  luaL_argcheck(L, n <= FS_POLL_MAX, 1, "at most 64 descriptors");
  for (i = 0; i < n; i++) {
    lua_Integer fd;
    lua_rawgeti(L, 1, i + 1);
    luaL_argcheck(L, lua_istable(L, -1), 1, "list of {fd=, read=, write=} expected");
    lua_getfield(L, -1, "fd");
    fd = luaL_checkinteger(L, -1);
    luaL_argcheck(L, fd >= 0 && fd <= 0x7fffffff, 1, "fd out of range");
    p[i].fd = (int)fd;
    p[i].events = 0;
    p[i].revents = 0;
    lua_getfield(L, -2, "read");
    if (lua_toboolean(L, -1)) p[i].events |= POLLIN;
    lua_getfield(L, -3, "write");
    if (lua_toboolean(L, -1)) p[i].events |= POLLOUT;
    lua_pop(L, 4);
  }
  r = poll(p, (nfds_t)n, (int)ms);
  if (r < 0 && errno != EINTR) return fs_error(L, FAV_EIO, "poll", errno);
  lua_createtable(L, r > 0 ? r : 0, 0);
  for (i = 0; r > 0 && i < n; i++) {
    if (p[i].revents == 0) continue;
    lua_pushinteger(L, i + 1);
    lua_rawseti(L, -2, ++k);
  }
  return 1;
}

/* core.read_fd(fd [, max]) -> bytes: one read(2) of at most max bytes
 * (default and cap 65536). "" when nothing can be read now (EAGAIN,
 * EINTR); nil at end of input; nil, err on a read error. Call it after
 * poll_fds said fd is ready, or it blocks. */
static int fs_read_fd(lua_State *L) {
  char buf[FS_READ_MAX];
  lua_Integer fd = luaL_checkinteger(L, 1);
  lua_Integer max = luaL_optinteger(L, 2, FS_READ_MAX);
  ssize_t got;
  luaL_argcheck(L, fd >= 0 && fd <= 0x7fffffff, 1, "fd out of range");
  luaL_argcheck(L, max >= 1, 2, "max >= 1 expected");
  if (max > FS_READ_MAX) max = FS_READ_MAX;
  got = read((int)fd, buf, (size_t)max);
  if (got < 0) {
    if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) {
      lua_pushliteral(L, "");
      return 1;
    }
    return fs_error(L, FAV_EIO, "read", errno);
  }
  if (got == 0) {
    lua_pushnil(L);
    return 1;
  }
  lua_pushlstring(L, buf, (size_t)got);
  return 1;
}

static const luaL_Reg fs_funcs[] = {
  {"write_file_atomic", fs_write_file_atomic},
  {"mkdir_p", fs_mkdir_p},
  {"stat", fs_stat},
  {"chmod", fs_chmod},
  {"unlink", fs_unlink},
  {"lock_file", fs_lock_file},
  {"geteuid", fs_geteuid},
  {"now", fs_now},
  {"monotonic", fs_monotonic},
  {"getpid", fs_getpid},
  {"isatty", fs_isatty},
  {"read_secret_line", fs_read_secret_line},
  {"read_secret_file", fs_read_secret_file},
  {"poll_fds", fs_poll_fds},
  {"read_fd", fs_read_fd},
  {NULL, NULL}
};

/* Takes the module table at the top; adds the functions above. Leaves the
 * stack as found. Can raise (memory). */
int fav_fs_open(lua_State *L) {
  static const luaL_Reg lock_methods[] = {{"unlock", fs_lock_release}, {NULL, NULL}};
  fav_newclass(L, FS_LOCK_MT, lock_methods, NULL, fs_lock_release);
  lua_pop(L, 1);
  luaL_setfuncs(L, fs_funcs, 0);
  return 0;
}

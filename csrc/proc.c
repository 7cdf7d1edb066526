/* proc.c: a child process with pipes, for the stdio MCP transport.
 *
 * core.spawn(argv, env) starts a program (posix_spawnp: no fork of the Lua
 * process) with its stdin, stdout and stderr on non-blocking pipes.
 * :write(s) queues bytes for its stdin, :poll(ms) moves bytes both ways and
 * returns the complete stdout lines, the stderr bytes and whether the child
 * has ended; :close([grace_ms]) closes stdin, waits, then sends SIGTERM and
 * SIGKILL, and reaps the child. __close is close with a 200 ms grace.
 *
 * __gc never waits: a collected Process whose child still runs sends it
 * SIGKILL, closes the pipes and reaps it with WNOHANG. A child not dead
 * yet at that instant is handed to the state's reaper (a small array in a
 * userdata, upvalue of spawn and __gc, one per Lua state: no global), which
 * reaps it with WNOHANG at the next spawn or collection and when the state
 * closes. Only children the reaper cannot hold (more than FAV_PROC_GRAVE
 * killed and not yet dead at once) stay zombies until the host process
 * exits or waits for them. Double-forking would have avoided zombies but
 * costs the exit status and the pid that :poll, :kill and :close use.
 *
 * Failures return nil, err (util.h's fav_pushfail): codes "spawn" (the
 * program cannot start; err.errno), "io" (write: stdin closed),
 * "too_large" (write: over 256 MiB queued). Misuse raises.
 *
 * Buffers are malloc'd and owned by the userdata; Lua values are built only
 * after the I/O is done, so a raising push leaks nothing.
 */
#include "favcrm.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

extern char **environ;

#define FAV_PROC_MT "favcrm.Process"
#define FAV_PROC_REAPER_MT "favcrm.ProcessReaper"
#define FAV_PROC_GRAVE 64 /* killed children the reaper holds at once */
/* Complete stdout lines held for one :poll at most: past either bound the
 * pipe is left unread until :poll hands them out (the child then blocks on
 * its write), so a server that writes without end costs bounded memory.
 * One read may overshoot by its buffer (16 KiB). */
#define FAV_PROC_QUEUE_BYTES ((size_t)1 << 20)
#define FAV_PROC_QUEUE_LINES 1024

/* The killed children not reaped yet (see the header comment). */
typedef struct fav_reaper {
  pid_t pids[FAV_PROC_GRAVE];
  int n;
} fav_reaper;

typedef struct fav_proc {
  pid_t pid;
  int in, out, err;     /* parent's ends; -1 when closed */
  fav_buf wq;               /* bytes waiting for the child's stdin */
  size_t woff;
  fav_buf line;             /* the stdout line being read */
  fav_buf lines;            /* complete lines, each followed by '\n' */
  size_t nlines;            /* how many lines holds */
  fav_buf errb;             /* stderr bytes not yet handed out */
  size_t max_line;
  int exited, status;   /* reaped, and how */
  int too_large;        /* a stdout line crossed max_line */
  int broken;           /* writing to stdin failed (EPIPE) */
} fav_proc;

static void close_fd(int *fd) {
  if (*fd >= 0) close(*fd);
  *fd = -1;
}

static void try_reap(fav_proc *p, int block) {
  int st;
  pid_t r;
  if (p->exited || p->pid <= 0) return;
  do r = waitpid(p->pid, &st, block ? 0 : WNOHANG);
  while (r < 0 && errno == EINTR);
  if (r == p->pid) {
    p->exited = 1;
    p->status = st;
  } else if (r < 0) {
    p->exited = 1; /* not our child any more */
    p->status = 0;
  }
}

/* write(2) to a pipe whose reader is gone raises SIGPIPE, which would kill
 * the whole Lua process: block it around the write and swallow the one it
 * caused, so the caller just sees EPIPE. */
static ssize_t write_nosigpipe(int fd, const void *b, size_t n) {
  sigset_t pipe_set, old, pending;
  ssize_t r;
  int e, was_pending;
  sigemptyset(&pipe_set);
  sigaddset(&pipe_set, SIGPIPE);
  sigpending(&pending);
  was_pending = sigismember(&pending, SIGPIPE);
  sigprocmask(SIG_BLOCK, &pipe_set, &old);
  r = write(fd, b, n);
  e = errno;
  if (r < 0 && e == EPIPE && !was_pending) {
    struct timespec zero = {0, 0};
    while (sigtimedwait(&pipe_set, NULL, &zero) < 0 && errno == EINTR) {}
  }
  sigprocmask(SIG_SETMASK, &old, NULL);
  errno = e;
  return r;
}

/* Moves bytes once: writes what stdin takes, reads what stdout and stderr
 * have. Never raises. */
static void pump_io(fav_proc *p) {
  char tmp[16384];
  ssize_t n;
  while (p->in >= 0 && p->woff < p->wq.len) {
    n = write_nosigpipe(p->in, p->wq.p + p->woff, p->wq.len - p->woff);
    if (n > 0) p->woff += (size_t)n;
    else if (n < 0 && errno == EINTR) continue;
    else {
      if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK) {
        p->broken = 1;
        close_fd(&p->in);
      }
      break;
    }
  }
  if (p->woff == p->wq.len) p->woff = p->wq.len = 0;
  while (p->out >= 0 && p->lines.len < FAV_PROC_QUEUE_BYTES && p->nlines < FAV_PROC_QUEUE_LINES) {
    n = read(p->out, tmp, sizeof tmp);
    if (n > 0) {
      ssize_t i, start = 0;
      for (i = 0; i < n; i++) {
        if (tmp[i] != '\n') continue;
        if (fav_buf_add(&p->line, tmp + start, (size_t)(i - start), p->max_line)) p->too_large = 1;
        if (!p->too_large) {
          size_t l = p->line.len;
          if (l && p->line.p[l - 1] == '\r') l--;
          if (fav_buf_add(&p->lines, p->line.p ? p->line.p : "", l, (size_t)-1) ||
              fav_buf_add(&p->lines, "\n", 1, (size_t)-1))
            p->too_large = 1;
          else
            p->nlines++;
        }
        p->line.len = 0;
        start = i + 1;
      }
      if (start < n && fav_buf_add(&p->line, tmp + start, (size_t)(n - start), p->max_line)) p->too_large = 1;
    } else if (n == 0) {
      close_fd(&p->out);
    } else if (errno == EINTR) {
      continue;
    } else {
      if (errno != EAGAIN && errno != EWOULDBLOCK) close_fd(&p->out);
      break;
    }
  }
  while (p->err >= 0) {
    n = read(p->err, tmp, sizeof tmp);
    if (n > 0) {
      /* keep the last 64 KiB of stderr at most */
      if (p->errb.len + (size_t)n > 65536) {
        size_t drop = p->errb.len + (size_t)n - 65536;
        if (drop > p->errb.len) drop = p->errb.len;
        memmove(p->errb.p, p->errb.p + drop, p->errb.len - drop);
        p->errb.len -= drop;
      }
      fav_buf_add(&p->errb, tmp, (size_t)n, 65536 + sizeof tmp);
    } else if (n == 0) {
      close_fd(&p->err);
    } else if (errno == EINTR) {
      continue;
    } else {
      if (errno != EAGAIN && errno != EWOULDBLOCK) close_fd(&p->err);
      break;
    }
  }
  if (p->out < 0) try_reap(p, 0);
}

/* Waits up to ms for any of the pipes to be ready. Never raises. */
static void wait_io(fav_proc *p, int ms) {
  struct pollfd fds[3];
  int n = 0;
  if (p->in >= 0 && p->woff < p->wq.len) { fds[n].fd = p->in; fds[n].events = POLLOUT; n++; }
  if (p->out >= 0) { fds[n].fd = p->out; fds[n].events = POLLIN; n++; }
  if (p->err >= 0) { fds[n].fd = p->err; fds[n].events = POLLIN; n++; }
  if (n == 0) return;
  while (poll(fds, (nfds_t)n, ms) < 0 && errno == EINTR) {}
}

/* Reaps (WNOHANG) every child r holds that has ended; keeps the others.
 * Never blocks, never raises. */
static void reaper_sweep(fav_reaper *r) {
  int i = 0;
  while (i < r->n) {
    pid_t w;
    int st;
    do w = waitpid(r->pids[i], &st, WNOHANG);
    while (w < 0 && errno == EINTR);
    if (w == 0) {
      i++;
    } else { /* reaped, or not our child any more */
      r->pids[i] = r->pids[--r->n];
    }
  }
}

/* True when the environment entry name (n bytes) holds a FavCRM secret a
 * child must not inherit: FAVCRM_API_KEY, FAVCRM_MCP_TOKEN, and any other
 * FAVCRM_* name with KEY, TOKEN, SECRET or PASSWORD in it. Never raises. */
static int secret_env_name(const char *name, size_t n) {
  static const char *const words[] = {"KEY", "TOKEN", "SECRET", "PASSWORD", NULL};
  int i;
  if (n < 7 || memcmp(name, "FAVCRM_", 7) != 0) return 0;
  for (i = 0; words[i]; i++) {
    size_t w = strlen(words[i]), j;
    for (j = 7; j + w <= n; j++)
      if (memcmp(name + j, words[i], w) == 0) return 1;
  }
  return 0;
}

static fav_proc *check_proc(lua_State *L) {
  return luaL_checkudata(L, 1, FAV_PROC_MT);
}

/* core.spawn(argv, env [, max_line]) -> process, or nil, err. argv is a
 * list of strings (argv[1] is looked up in PATH); env, when given, is a
 * table of extra NAME = value pairs on top of this process's environment
 * (a value of false removes the name). The child never inherits a FavCRM
 * secret (FAVCRM_API_KEY, FAVCRM_MCP_TOKEN, other FAVCRM_*KEY/TOKEN/SECRET/
 * PASSWORD names: see secret_env_name): only env can pass one on.
 * Upvalue 1: the reaper, swept first. Misuse raises. */
static int fav_proc_spawn(lua_State *L) {
  fav_proc *p;
  size_t i, argc, envc = 0;
  const char **argv, **envp = NULL;
  int pin[2] = {-1, -1}, pout[2] = {-1, -1}, perr[2] = {-1, -1};
  posix_spawn_file_actions_t fa;
  posix_spawnattr_t attr;
  sigset_t none, all;
  int rc;
  luaL_checktype(L, 1, LUA_TTABLE);
  if (!lua_isnoneornil(L, 2)) luaL_checktype(L, 2, LUA_TTABLE);
  reaper_sweep((fav_reaper *)lua_touserdata(L, lua_upvalueindex(1)));
  argc = lua_rawlen(L, 1);
  if (argc == 0) return luaL_argerror(L, 1, "the command list is empty");
  lua_settop(L, 3);
  if (lua_isnil(L, 2)) { /* no env: this process's, secrets scrubbed */
    lua_newtable(L);
    lua_replace(L, 2);
  }
  /* argv and envp live in Lua-owned memory (userdata anchored on the
   * stack), so a raise while building them leaks nothing */
  argv = lua_newuserdatauv(L, sizeof(char *) * (argc + 1), 0); /* 4 */
  for (i = 0; i < argc; i++) {
    lua_rawgeti(L, 1, (int)(i + 1));
    if (lua_type(L, -1) != LUA_TSTRING)
      return luaL_error(L, "bad argument #1 to 'spawn' (item %d of the command is not a string)", (int)i + 1);
    argv[i] = lua_tostring(L, -1);
    lua_rawseti(L, 1, (int)(i + 1)); /* keep it anchored where it was */
  }
  argv[argc] = NULL;
  lua_newtable(L); /* 5: anchors for the env strings */
  if (lua_istable(L, 2)) {
    size_t nenv = 0, k;
    char **e;
    for (e = environ; *e; e++) nenv++;
    lua_pushnil(L);
    while (lua_next(L, 2)) {
      lua_pop(L, 1);
      nenv++;
    }
    envp = lua_newuserdatauv(L, sizeof(char *) * (nenv + 1), 0); /* 6 */
    lua_pushnil(L);
    while (lua_next(L, 2)) {
      const char *name, *val;
      if (lua_type(L, -2) != LUA_TSTRING || strchr(lua_tostring(L, -2), '=') != NULL)
        return luaL_error(L, "bad argument #2 to 'spawn' (env names must be strings without '=')");
      name = lua_tostring(L, -2);
      if (lua_toboolean(L, -1) == 0 && lua_type(L, -1) == LUA_TBOOLEAN) {
        lua_pop(L, 1);
        continue;
      }
      if (lua_type(L, -1) != LUA_TSTRING && lua_type(L, -1) != LUA_TNUMBER)
        return luaL_error(L, "bad argument #2 to 'spawn' (env value of '%s' must be a string)", name);
      val = lua_tostring(L, -1);
      lua_pushfstring(L, "%s=%s", name, val);
      envp[envc++] = lua_tostring(L, -1);
      lua_rawseti(L, 5, (int)envc);
      lua_pop(L, 1);
    }
    for (e = environ; *e; e++) {
      const char *eq = strchr(*e, '=');
      size_t nl = eq ? (size_t)(eq - *e) : strlen(*e);
      int overridden = 0;
      lua_pushlstring(L, *e, nl);
      lua_rawget(L, 2);
      overridden = !lua_isnil(L, -1);
      lua_pop(L, 1);
      if (!overridden && !secret_env_name(*e, nl)) envp[envc++] = *e;
    }
    envp[envc] = NULL;
    for (k = envc; k <= nenv; k++) envp[k] = NULL;
  }
  p = lua_newuserdatauv(L, sizeof *p, 0);
  memset(p, 0, sizeof *p);
  p->in = p->out = p->err = -1;
  p->pid = -1;
  p->max_line = (size_t)luaL_optinteger(L, 3, (lua_Integer)FAV_MAX_EVENT_BYTES);
  luaL_setmetatable(L, FAV_PROC_MT);

  /* From here on nothing raises until the result is pushed. */
  if (pipe(pin) || pipe(pout) || pipe(perr)) goto syserr;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_adddup2(&fa, pin[0], 0);
  posix_spawn_file_actions_adddup2(&fa, pout[1], 1);
  posix_spawn_file_actions_adddup2(&fa, perr[1], 2);
  posix_spawn_file_actions_addclose(&fa, pin[1]);
  posix_spawn_file_actions_addclose(&fa, pout[0]);
  posix_spawn_file_actions_addclose(&fa, perr[0]);
  posix_spawnattr_init(&attr);
  sigemptyset(&none);
  sigfillset(&all);
  posix_spawnattr_setsigmask(&attr, &none);
  posix_spawnattr_setsigdefault(&attr, &all);
  posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);
  rc = posix_spawnp(&p->pid, argv[0], &fa, &attr, (char *const *)argv,
                    envp ? (char *const *)envp : environ);
  posix_spawn_file_actions_destroy(&fa);
  posix_spawnattr_destroy(&attr);
  close(pin[0]);
  close(pout[1]);
  close(perr[1]);
  pin[0] = pout[1] = perr[1] = -1;
  if (rc != 0) {
    errno = rc;
    p->pid = -1;
    goto syserr;
  }
  p->in = pin[1];
  p->out = pout[0];
  p->err = perr[0];
  fcntl(p->in, F_SETFL, fcntl(p->in, F_GETFL) | O_NONBLOCK);
  fcntl(p->out, F_SETFL, fcntl(p->out, F_GETFL) | O_NONBLOCK);
  fcntl(p->err, F_SETFL, fcntl(p->err, F_GETFL) | O_NONBLOCK);
  fcntl(p->in, F_SETFD, FD_CLOEXEC);
  fcntl(p->out, F_SETFD, FD_CLOEXEC);
  fcntl(p->err, F_SETFD, FD_CLOEXEC);
  return 1;
syserr: {
    int e = errno;
    int fds[6] = {pin[0], pin[1], pout[0], pout[1], perr[0], perr[1]};
    for (i = 0; i < 6; i++)
      if (fds[i] >= 0) close(fds[i]);
    p->in = p->out = p->err = -1;
    fav_pushfail(L, FAV_ESPAWN, "cannot start %s: %s", argv[0], strerror(e));
    lua_pushinteger(L, e);
    lua_setfield(L, -2, "errno");
    return 2;
  }
}

/* proc:write(s) -> true, or nil, err: err.code "io" when the child's
 * stdin is closed, "too_large" past 256 MiB of unwritten input. Queues s
 * and writes what the pipe takes now. Raises on misuse and memory. */
static int fav_proc_write(lua_State *L) {
  fav_proc *p = check_proc(L);
  size_t n;
  const char *s = luaL_checklstring(L, 2, &n);
  if (p->in < 0) return fav_pushfail(L, FAV_EIO, "the process's stdin is closed");
  if (fav_buf_add(&p->wq, s, n, (size_t)256 << 20) != 0)
    return fav_pushfail(L, FAV_ETOO_LARGE, "too much unwritten input for the process");
  pump_io(p);
  lua_pushboolean(L, 1);
  return 1;
}

/* proc:poll([ms]) -> {lines = {...}, stderr = s|nil, eof = bool,
 * exited = bool, status = n|nil, signal = n|nil, too_large = bool}.
 * Waits at most ms (default 0) when nothing is ready. Raises a bad-argument
 * error when ms is NaN, infinite or negative; a huge ms is clamped
 * (FAV_MS_MAX). */
static int fav_proc_poll(lua_State *L) {
  fav_proc *p = check_proc(L);
  double wait = fav_optms(L, 2, 0); /* finite, >= 0, clamped */
  double deadline = fav_monotonic_ms() + wait;
  int n = 0;
  pump_io(p);
  while (p->lines.len == 0 && p->errb.len == 0 && (p->out >= 0 || p->err >= 0)) {
    double left = deadline - fav_monotonic_ms();
    if (left <= 0) break;
    wait_io(p, fav_ms_int(left < 1 ? 1 : left));
    pump_io(p);
  }
  lua_createtable(L, 0, 6);
  lua_newtable(L);
  if (p->lines.len) {
    const char *s = p->lines.p, *end = p->lines.p + p->lines.len;
    while (s < end) {
      const char *nl = memchr(s, '\n', (size_t)(end - s));
      lua_pushlstring(L, s, (size_t)(nl - s));
      lua_rawseti(L, -2, ++n);
      s = nl + 1;
    }
  }
  lua_setfield(L, -2, "lines");
  p->lines.len = 0;
  p->nlines = 0;
  if (p->errb.len) {
    lua_pushlstring(L, p->errb.p, p->errb.len);
    lua_setfield(L, -2, "stderr");
    p->errb.len = 0;
  }
  lua_pushboolean(L, p->out < 0);
  lua_setfield(L, -2, "eof");
  lua_pushboolean(L, p->too_large);
  lua_setfield(L, -2, "too_large");
  if (p->out < 0) try_reap(p, 0);
  lua_pushboolean(L, p->exited);
  lua_setfield(L, -2, "exited");
  if (p->exited) {
    if (WIFEXITED(p->status)) {
      lua_pushinteger(L, WEXITSTATUS(p->status));
      lua_setfield(L, -2, "status");
    } else if (WIFSIGNALED(p->status)) {
      lua_pushinteger(L, WTERMSIG(p->status));
      lua_setfield(L, -2, "signal");
    }
  }
  return 1;
}

/* Waits up to ms for the child to end, draining its output. */
static void wait_exit(fav_proc *p, int ms) {
  double deadline = fav_monotonic_ms() + ms;
  for (;;) {
    double left;
    /* nobody reads lines any more: drop them, so the pipe keeps draining */
    p->lines.len = 0;
    p->nlines = 0;
    pump_io(p);
    try_reap(p, 0);
    if (p->exited) return;
    left = deadline - fav_monotonic_ms();
    if (left <= 0) return;
    if (p->out >= 0 || p->err >= 0) {
      wait_io(p, left < 5 ? fav_ms_int(left + 1) : 5);
    } else {
      struct timespec ts = {0, 2000000}; /* no pipe left to wait on: 2 ms */
      nanosleep(&ts, NULL);
    }
  }
}

/* proc:close([grace_ms]) -> exit status or nil: closes stdin, waits
 * grace_ms (default 2000; clamped like every time, util.h) for the child to
 * end, then SIGTERM, waits again, then SIGKILL; always reaps. Idempotent.
 * Raises only on a bad grace_ms (NaN, infinite, negative), before acting. */
static int fav_proc_close(lua_State *L) {
  fav_proc *p = luaL_checkudata(L, 1, FAV_PROC_MT);
  int grace = fav_ms_int(fav_optms(L, 2, 2000));
  if (p->pid > 0 && !p->exited) {
    close_fd(&p->in);
    wait_exit(p, grace);
    if (!p->exited) {
      kill(p->pid, SIGTERM);
      wait_exit(p, grace);
    }
    if (!p->exited) {
      kill(p->pid, SIGKILL);
      try_reap(p, 1);
    }
  }
  close_fd(&p->in);
  close_fd(&p->out);
  close_fd(&p->err);
  fav_buf_free(&p->wq);
  fav_buf_free(&p->line);
  fav_buf_free(&p->lines);
  fav_buf_free(&p->errb);
  if (p->exited && WIFEXITED(p->status)) lua_pushinteger(L, WEXITSTATUS(p->status));
  else lua_pushnil(L);
  return 1;
}

/* __close(proc [, err]): close with a 200 ms grace (the error object a
 * to-be-closed variable passes is ignored). Never raises. */
static int fav_proc_close_scope(lua_State *L) {
  lua_settop(L, 1);
  lua_pushinteger(L, 200);
  return fav_proc_close(L);
}

/* __gc (upvalue 1: the reaper): SIGKILL to a child still running, pipes
 * closed, buffers freed, a WNOHANG reap; a child not dead yet goes to the
 * reaper. Never waits, never raises. Idempotent (then close() is a no-op). */
static int fav_proc_gc(lua_State *L) {
  fav_proc *p = luaL_checkudata(L, 1, FAV_PROC_MT);
  fav_reaper *r = (fav_reaper *)lua_touserdata(L, lua_upvalueindex(1));
  if (p->pid > 0 && !p->exited) {
    kill(p->pid, SIGKILL);
    try_reap(p, 0);
    if (!p->exited && r != NULL && r->n < FAV_PROC_GRAVE) r->pids[r->n++] = p->pid;
    p->exited = 1; /* ours no more: the reaper (or the host) reaps it */
    p->status = 0;
    p->pid = -1;
  }
  if (r != NULL) reaper_sweep(r);
  close_fd(&p->in);
  close_fd(&p->out);
  close_fd(&p->err);
  fav_buf_free(&p->wq);
  fav_buf_free(&p->line);
  fav_buf_free(&p->lines);
  fav_buf_free(&p->errb);
  return 0;
}

/* The reaper's __gc (the Lua state closes): a last WNOHANG sweep. */
static int fav_proc_reaper_gc(lua_State *L) {
  reaper_sweep((fav_reaper *)lua_touserdata(L, 1));
  return 0;
}

/* proc:pid() -> the child's process id */
static int fav_proc_pid(lua_State *L) {
  fav_proc *p = check_proc(L);
  lua_pushinteger(L, p->pid);
  return 1;
}

/* proc:kill([signal]) -> true, or nil when it has ended */
static int fav_proc_kill(lua_State *L) {
  fav_proc *p = check_proc(L);
  int sig = (int)luaL_optinteger(L, 2, SIGTERM);
  if (p->pid <= 0 || p->exited) { lua_pushnil(L); return 1; }
  lua_pushboolean(L, kill(p->pid, sig) == 0);
  return 1;
}

/* proc:fds() -> list of {fd=, read=, write=} to watch */
static int fav_proc_fds(lua_State *L) {
  fav_proc *p = check_proc(L);
  int n = 0;
  lua_newtable(L);
  if (p->out >= 0) {
    lua_createtable(L, 0, 3);
    lua_pushinteger(L, p->out);
    lua_setfield(L, -2, "fd");
    lua_pushboolean(L, 1);
    lua_setfield(L, -2, "read");
    lua_rawseti(L, -2, ++n);
  }
  if (p->in >= 0 && p->woff < p->wq.len) {
    lua_createtable(L, 0, 3);
    lua_pushinteger(L, p->in);
    lua_setfield(L, -2, "fd");
    lua_pushboolean(L, 1);
    lua_setfield(L, -2, "write");
    lua_rawseti(L, -2, ++n);
  }
  return 1;
}

int fav_proc_open(lua_State *L) {
  static const luaL_Reg methods[] = {
    {"write", fav_proc_write},
    {"poll", fav_proc_poll},
    {"close", fav_proc_close},
    {"pid", fav_proc_pid},
    {"kill", fav_proc_kill},
    {"fds", fav_proc_fds},
    {NULL, NULL}};
  static const luaL_Reg meta[] = {{"__close", fav_proc_close_scope}, {NULL, NULL}};
  fav_reaper *r = (fav_reaper *)lua_newuserdatauv(L, sizeof *r, 0); /* the state's reaper */
  memset(r, 0, sizeof *r);
  luaL_newmetatable(L, FAV_PROC_REAPER_MT);
  lua_pushcfunction(L, fav_proc_reaper_gc);
  lua_setfield(L, -2, "__gc");
  lua_setmetatable(L, -2);
  fav_newclass(L, FAV_PROC_MT, methods, meta, NULL);
  lua_pushvalue(L, -2);
  lua_pushcclosure(L, fav_proc_gc, 1);
  lua_setfield(L, -2, "__gc");
  lua_pop(L, 1);
  lua_pushcclosure(L, fav_proc_spawn, 1);
  lua_setfield(L, -2, "spawn");
  return 0;
}

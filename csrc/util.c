/* util.c: the helpers every unit shares (see util.h for the contracts):
 * growable buffer, monotonic clock, metatable helper, error constructor
 * and time-argument checks. */
#include "favcrm.h"
#include "util.h"

#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* See util.h. Never raises. */
int fav_buf_reserve(fav_buf *b, size_t need, size_t limit) {
  size_t ncap;
  char *np;
  if (need > limit || need == (size_t)-1) return -1;
  if (need + 1 <= b->cap) return 0;
  ncap = b->cap ? b->cap : 64;
  while (ncap < need + 1) ncap = ncap > ((size_t)-1) / 2 ? need + 1 : ncap * 2;
  if (limit != (size_t)-1 && ncap > limit + 1) ncap = limit + 1;
  np = (char *)realloc(b->p, ncap);
  if (np == NULL) return -1;
  b->p = np;
  b->cap = ncap;
  return 0;
}

/* See util.h. Never raises. */
int fav_buf_add(fav_buf *b, const char *s, size_t n, size_t limit) {
  if (n > ((size_t)-1) - b->len) return -1;
  if (fav_buf_reserve(b, b->len + n, limit) != 0) return -1;
  if (n) memcpy(b->p + b->len, s, n);
  b->len += n;
  b->p[b->len] = '\0';
  return 0;
}

/* See util.h. Never raises. */
int fav_buf_set(fav_buf *b, const char *s, size_t n, size_t limit) {
  if (fav_buf_reserve(b, n, limit) != 0) return -1;
  if (n) memcpy(b->p, s, n);
  b->len = n;
  b->p[n] = '\0';
  return 0;
}

/* See util.h. Never raises. */
void fav_buf_free(fav_buf *b) {
  free(b->p);
  b->p = NULL;
  b->len = b->cap = 0;
}

/* See util.h. Never raises. */
size_t fav_b64(char *out, const unsigned char *in, size_t n, int url) {
  const char *abc = url ? "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
                        : "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  size_t i, k = 0;
  for (i = 0; i < n; i += 3) {
    size_t left = n - i;
    unsigned v = (unsigned)in[i] << 16;
    if (left > 1) v |= (unsigned)in[i + 1] << 8;
    if (left > 2) v |= in[i + 2];
    out[k++] = abc[(v >> 18) & 63];
    out[k++] = abc[(v >> 12) & 63];
    if (left > 1) out[k++] = abc[(v >> 6) & 63];
    else if (!url) out[k++] = '=';
    if (left > 2) out[k++] = abc[v & 63];
    else if (!url) out[k++] = '=';
  }
  return k;
}

/* See util.h. Never raises. */
int fav_grow(void **pp, size_t *cap, size_t need, size_t sz) {
  size_t ncap = *cap ? *cap : 16;
  void *np;
  if (need <= *cap) return 0;
  while (ncap < need) {
    if (ncap > ((size_t)-1) / 2 / sz) return -1;
    ncap *= 2;
  }
  np = realloc(*pp, ncap * sz);
  if (np == NULL) return -1;
  *pp = np;
  *cap = ncap;
  return 0;
}

/* See util.h. Never raises. */
double fav_monotonic_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec * 1000.0 + (double)ts.tv_nsec / 1e6;
}

/* See util.h. Leaves the metatable on the stack; can raise (memory). */
void fav_newclass(lua_State *L, const char *name, const luaL_Reg *methods, const luaL_Reg *meta,
                  lua_CFunction close) {
  luaL_newmetatable(L, name);
  lua_pushstring(L, name);
  lua_setfield(L, -2, "__name");
  lua_newtable(L);
  luaL_setfuncs(L, methods, 0);
  lua_setfield(L, -2, "__index");
  if (meta != NULL) luaL_setfuncs(L, meta, 0);
  if (close != NULL) {
    lua_pushcfunction(L, close);
    lua_setfield(L, -2, "__gc");
    lua_pushcfunction(L, close);
    lua_setfield(L, -2, "__close");
  }
}

#define FAV_ERR_NAME(id, s) s,
static const char *const fav_errnames[] = {FAV_ERRORS(FAV_ERR_NAME) NULL};
#undef FAV_ERR_NAME

/* See util.h. Never raises. */
const char *fav_errname(fav_err e) {
  return ((unsigned)e < (unsigned)FAV_E_COUNT) ? fav_errnames[e] : "io";
}

/* Pushes {code=, message=} with the message formatted from fmt and ap.
 * Can raise (memory). */
static void fav_vpusherror(lua_State *L, fav_err e, const char *fmt, va_list ap) {
  lua_createtable(L, 0, 3);
  lua_pushstring(L, fav_errname(e));
  lua_setfield(L, -2, "code");
  lua_pushvfstring(L, fmt, ap);
  lua_setfield(L, -2, "message");
}

/* See util.h. Can raise (memory). */
void fav_pusherror(lua_State *L, fav_err e, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  fav_vpusherror(L, e, fmt, ap);
  va_end(ap);
}

/* See util.h. Returns 2; can raise (memory). */
int fav_pushfail(lua_State *L, fav_err e, const char *fmt, ...) {
  va_list ap;
  lua_pushnil(L);
  va_start(ap, fmt);
  fav_vpusherror(L, e, fmt, ap);
  va_end(ap);
  return 2;
}

/* Why ms is not a usable time, or NULL when it is. Never raises. */
static const char *fav_ms_problem(double ms) {
  if (ms != ms) return "time is NaN";
  if (isinf(ms)) return "time must be finite";
  if (ms < 0) return "time must not be negative";
  return NULL;
}

/* See util.h. Raises a luaL_argerror naming arg. */
double fav_optms(lua_State *L, int arg, double def) {
  double ms;
  const char *why;
  if (lua_isnoneornil(L, arg)) return def;
  ms = (double)luaL_checknumber(L, arg);
  why = fav_ms_problem(ms);
  if (why != NULL) luaL_argerror(L, arg, why);
  return ms > FAV_MS_MAX ? FAV_MS_MAX : ms;
}

/* See util.h. Raises "bad option 'k' (...)"; pops the value. */
double fav_popfield_ms(lua_State *L, const char *k, double def) {
  double ms = def;
  const char *why;
  int t = lua_type(L, -1);
  if (t == LUA_TNUMBER) { /* the usual case, in fewer calls */
    ms = (double)lua_tonumber(L, -1);
    if (ms >= 0 && ms <= FAV_MS_MAX) {
      lua_pop(L, 1);
      return ms;
    }
  }
  if (t != LUA_TNIL) {
    if (!lua_isnumber(L, -1))
      luaL_error(L, "bad option '%s' (number expected, got %s)", k, luaL_typename(L, -1));
    ms = (double)lua_tonumber(L, -1);
    why = fav_ms_problem(ms);
    if (why != NULL) luaL_error(L, "bad option '%s' (%s)", k, why);
    if (ms > FAV_MS_MAX) ms = FAV_MS_MAX;
  }
  lua_pop(L, 1);
  return ms;
}

/* See util.h. Raises "bad option 'k' (...)"; pops what it pushed. */
double fav_optfield_ms(lua_State *L, int t, const char *k, double def) {
  lua_getfield(L, t, k);
  return fav_popfield_ms(L, k, def);
}

/* See util.h. Never raises. */
int fav_ms_int(double ms) {
  if (!(ms > 0)) return 0;
  if (ms >= FAV_MS_MAX) return (int)FAV_MS_MAX;
  return (int)ms;
}

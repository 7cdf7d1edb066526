/* json_decode.c: core.json_decode(text), a fast path for lua-cjson's decode.
 *
 * It returns exactly what cjson.decode (lua-cjson 2.1.0) returns for the
 * strict JSON it accepts: numbers via lua_pushnumber (floats on 5.3+, as
 * cjson does), null as cjson.null (light userdata NULL), strings unescaped
 * (\uXXXX and surrogate pairs to UTF-8, other bytes passed through), empty
 * containers as plain tables, duplicate keys last-wins. Unlike cjson it
 * builds each table at its final size: a container's items are collected on
 * the Lua stack, counted, and then set into lua_createtable(narr, nrec).
 *
 * Anything else -- invalid JSON, numbers strict JSON does not allow, a NUL
 * byte, nesting deeper than JD_MAX_DEPTH, a container of more than
 * JD_MAX_ITEMS items, a locale whose strtod disagrees -- returns nil, and
 * the caller falls back to cjson.decode, which gives today's result or
 * error. It holds no C resource, so a memory error may unwind through it.
 *
 * Short strings (keys and values of at most JD_CACHE_LEN bytes without an
 * escape) come from a small cache of Lua strings kept per Lua state (see
 * struct fav_jd_cache): the same keys and values come back in every
 * answer, and a hit costs less than lua_pushlstring's hashing and
 * interning (and the GC does not free and make them again). The strings
 * are the same either way.
 *
 * fav_jd_rpc_result (for http:exchange) decodes a JSON-RPC answer and
 * hands over only its result, building no envelope table, when the answer
 * is the plain result of a given request; it declines everything else. */
#include "favcrm.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define JD_MAX_DEPTH 64
#define JD_MAX_ITEMS 1000 /* stack slots one container may take while parsed */

/* The string cache (one per Lua state, see fav_jd_cache_get): JD_SETS
 * sets of JD_WAYS entries. Each entry's string is kept in a registry slot
 * of its own (ref), so the GC keeps it while it is cached and a hit is one
 * lua_rawgeti on the registry, with no table to find first. The C side
 * holds the bytes to compare with: the length, the words jd_words reads
 * (all the bytes up to 16) and the middle bytes beyond 16. Bounded:
 * JD_ENTRIES strings of at most JD_CACHE_LEN bytes. */
#define JD_CACHE_LEN 40 /* Lua 5.2-5.4 intern strings up to 40 bytes */
#define JD_WAYS 4
#define JD_SETS 16
#define JD_ENTRIES (JD_WAYS * JD_SETS)

struct fav_jd_cache {
  uint64_t head[JD_ENTRIES], tail[JD_ENTRIES];
  int ref[JD_ENTRIES];
  unsigned char len[JD_ENTRIES]; /* length + 1, 0 when empty */
  unsigned char victim[JD_SETS]; /* the way a miss replaces next */
  char mid[JD_ENTRIES][JD_CACHE_LEN - 16];
};

FAV_REGKEY(jd_cache_key);

typedef struct {
  const char *p;  /* the next byte; the text is NUL-terminated (a Lua string) */
  const char *end;/* its end (the NUL after it) */
  int depth;
  fav_jd_cache *c;/* the state's string cache, or NULL */
  int esc;        /* jd_string met an escape */
  int watch;      /* the depth whose "resultType" is watched, or 0 */
  int ir;         /* 1: the last one watched is "input_required" */
} jd_state;

static int jd_value(lua_State *L, jd_state *d);

/* Strings are scanned 8 bytes at a time where the words are little-endian
 * and the compiler counts trailing zeros. JD_ZERO(v) has the high bit of
 * each byte of v that is zero set, and no bit below the lowest such byte. */
#if defined(__GNUC__) && defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
#define JD_SWAR 1
#define JD_ONES 0x0101010101010101ull
#define JD_ZERO(v) (((v) - JD_ONES) & ~(v) & (JD_ONES * 0x80))
#else
#define JD_SWAR 0
#endif

static const char *jd_ws(const char *p) {
  while (*p == ' ' || *p == '\n' || *p == '\r' || *p == '\t') p++;
  return p;
}

static int jd_hex4(const char *p, unsigned *out) {
  unsigned v = 0;
  int i;
  for (i = 0; i < 4; i++) {
    unsigned char c = (unsigned char)p[i];
    v <<= 4;
    if (c >= '0' && c <= '9') v |= (unsigned)(c - '0');
    else if (c >= 'a' && c <= 'f') v |= (unsigned)(c - 'a' + 10);
    else if (c >= 'A' && c <= 'F') v |= (unsigned)(c - 'A' + 10);
    else return 0;
  }
  *out = v;
  return 1;
}

/* (favcrm.h) The string cache of L's state, made on first use. Can raise
 * (memory). */
fav_jd_cache *fav_jd_cache_get(lua_State *L) {
  fav_jd_cache *c;
  int e;
  lua_pushlightuserdata(L, (void *)&jd_cache_key);
  lua_rawget(L, LUA_REGISTRYINDEX);
  c = (fav_jd_cache *)lua_touserdata(L, -1);
  lua_pop(L, 1);
  if (c) return c;
  c = (fav_jd_cache *)lua_newuserdatauv(L, sizeof *c, 0);
  memset(c, 0, sizeof *c);
  for (e = 0; e < JD_ENTRIES; e++) {
    lua_pushboolean(L, 0);
    c->ref[e] = luaL_ref(L, LUA_REGISTRYINDEX);
  }
  /* anchored last: a raise above leaves no half-made cache in use */
  lua_pushlightuserdata(L, (void *)&jd_cache_key);
  lua_insert(L, -2);
  lua_rawset(L, LUA_REGISTRYINDEX);
  return c;
}

/* The words the cache compares (with the length) for the n bytes at s:
 * the first and last 8 (or 4) bytes, or all of them below 4; with the
 * length they tell strings of up to 16 bytes apart. */
static void jd_words(const char *s, size_t n, uint64_t *a, uint64_t *b) {
  if (n >= 8) {
    memcpy(a, s, 8);
    memcpy(b, s + n - 8, 8);
  } else if (n >= 4) {
    uint32_t x, y;
    memcpy(&x, s, 4);
    memcpy(&y, s + n - 4, 4);
    *a = x;
    *b = y;
  } else {
    *a = n ? (unsigned char)s[0] | (uint64_t)(unsigned char)s[n >> 1] << 8 | (uint64_t)(unsigned char)s[n - 1] << 16
           : 0;
    *b = 0;
  }
}

/* Pushes the string of the n (<= JD_CACHE_LEN) bytes at s from cache c,
 * adding it there when it is not in it. Can raise (memory). */
static void jd_push_cached(lua_State *L, fav_jd_cache *c, const char *s, size_t n) {
  uint64_t a, b;
  unsigned set, w, e, free_e = JD_ENTRIES;
  jd_words(s, n, &a, &b);
  set = (unsigned)(((a ^ (b * 0x9E3779B97F4A7C15ull) ^ n) * 0xBF58476D1CE4E5B9ull) >> 60) & (JD_SETS - 1);
  for (w = 0; w < JD_WAYS; w++) {
    e = set * JD_WAYS + w;
    if (c->len[e] == n + 1 && c->head[e] == a && c->tail[e] == b &&
        (n <= 16 || memcmp(c->mid[e], s + 8, n - 16) == 0)) {
      lua_rawgeti(L, LUA_REGISTRYINDEX, c->ref[e]);
      return;
    }
    if (c->len[e] == 0 && free_e == JD_ENTRIES) free_e = e;
  }
  if (free_e == JD_ENTRIES) {
    free_e = set * JD_WAYS + c->victim[set];
    c->victim[set] = (unsigned char)((c->victim[set] + 1) & (JD_WAYS - 1));
  }
  lua_pushlstring(L, s, n);
  lua_pushvalue(L, -1);
  c->len[free_e] = 0; /* until the slot holds it */
  lua_rawseti(L, LUA_REGISTRYINDEX, c->ref[free_e]);
  c->head[free_e] = a;
  c->tail[free_e] = b;
  if (n > 16) memcpy(c->mid[free_e], s + 8, n - 16);
  c->len[free_e] = (unsigned char)(n + 1);
}

/* Takes d->p at the opening quote; pushes the string and returns 1, or
 * returns 0 (the stack may hold a partial buffer: the caller declines). */
static int jd_string(lua_State *L, jd_state *d) {
  const char *s = d->p + 1, *p = s;
  luaL_Buffer b;
#if JD_SWAR
  /* 8 bytes at a time while they lie before the text's end: to the first
   * '"', '\\' or NUL */
  while (d->end - p >= 8) {
    uint64_t v, t;
    memcpy(&v, p, 8);
    t = JD_ZERO(v) | JD_ZERO(v ^ (JD_ONES * '"')) | JD_ZERO(v ^ (JD_ONES * '\\'));
    if (t) {
      p += __builtin_ctzll(t) >> 3;
      break;
    }
    p += 8;
  }
#endif
  for (;;) { /* the common case: no escape */
    unsigned char c = (unsigned char)*p;
    if (c == '"') {
      size_t n = (size_t)(p - s);
      if (d->c && n <= JD_CACHE_LEN) jd_push_cached(L, d->c, s, n);
      else lua_pushlstring(L, s, n);
      d->p = p + 1;
      return 1;
    }
    if (c == '\\') break;
    if (c == 0) return 0;
    p++;
  }
  d->esc = 1;
  luaL_buffinit(L, &b);
  for (;;) {
    unsigned char c = (unsigned char)*p;
    if (c == '"') {
      luaL_addlstring(&b, s, (size_t)(p - s));
      luaL_pushresult(&b);
      d->p = p + 1;
      return 1;
    }
    if (c == 0) return 0;
    if (c != '\\') {
      p++;
      continue;
    }
    luaL_addlstring(&b, s, (size_t)(p - s));
    switch (p[1]) {
    case '"': luaL_addchar(&b, '"'); p += 2; break;
    case '\\': luaL_addchar(&b, '\\'); p += 2; break;
    case '/': luaL_addchar(&b, '/'); p += 2; break;
    case 'b': luaL_addchar(&b, '\b'); p += 2; break;
    case 'f': luaL_addchar(&b, '\f'); p += 2; break;
    case 'n': luaL_addchar(&b, '\n'); p += 2; break;
    case 'r': luaL_addchar(&b, '\r'); p += 2; break;
    case 't': luaL_addchar(&b, '\t'); p += 2; break;
    case 'u': {
      unsigned cp, lo;
      char u[4];
      size_t n;
      if (!jd_hex4(p + 2, &cp)) return 0;
      p += 6;
      if (cp >= 0xDC00 && cp <= 0xDFFF) return 0; /* a lone low surrogate */
      if (cp >= 0xD800 && cp <= 0xDBFF) {
        if (p[0] != '\\' || p[1] != 'u' || !jd_hex4(p + 2, &lo)) return 0;
        if (lo < 0xDC00 || lo > 0xDFFF) return 0;
        cp = 0x10000 + (((cp & 0x3FF) << 10) | (lo & 0x3FF));
        p += 6;
      }
      if (cp < 0x80) {
        u[0] = (char)cp;
        n = 1;
      } else if (cp < 0x800) {
        u[0] = (char)(0xC0 | (cp >> 6));
        u[1] = (char)(0x80 | (cp & 0x3F));
        n = 2;
      } else if (cp < 0x10000) {
        u[0] = (char)(0xE0 | (cp >> 12));
        u[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
        u[2] = (char)(0x80 | (cp & 0x3F));
        n = 3;
      } else {
        u[0] = (char)(0xF0 | (cp >> 18));
        u[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
        u[2] = (char)(0x80 | ((cp >> 6) & 0x3F));
        u[3] = (char)(0x80 | (cp & 0x3F));
        n = 4;
      }
      luaL_addlstring(&b, u, n);
      break;
    }
    default: return 0;
    }
    s = p;
  }
}

/* Takes d->p at '-' or a digit; sets *out to the number (as cjson reads
 * it), moves d->p past it and returns 1, or returns 0 for what strict JSON
 * does not allow. */
static int jd_number_read(jd_state *d, double *out) {
  const char *p = d->p, *q;
  char *end;
  int simple = 1;
  double v;
  if (*p == '-') p++;
  if (*p == '0') p++;
  else if (*p >= '1' && *p <= '9') while (*p >= '0' && *p <= '9') p++;
  else return 0;
  if (*p == '.') {
    simple = 0;
    p++;
    if (!(*p >= '0' && *p <= '9')) return 0;
    while (*p >= '0' && *p <= '9') p++;
  }
  if (*p == 'e' || *p == 'E') {
    simple = 0;
    p++;
    if (*p == '+' || *p == '-') p++;
    if (!(*p >= '0' && *p <= '9')) return 0;
    while (*p >= '0' && *p <= '9') p++;
  }
  if (simple && p - d->p <= 15) { /* exact in a double: strtod agrees */
    double x = 0;
    q = d->p;
    if (*q == '-') q++;
    for (; q < p; q++) x = x * 10 + (*q - '0');
    *out = *d->p == '-' ? -x : x;
    d->p = p;
    return 1;
  }
  v = strtod(d->p, &end); /* what cjson's fpconv_strtod does in a '.' locale */
  if (end != p) return 0; /* another locale, or strtod read on: let cjson decide */
  *out = v;
  d->p = p;
  return 1;
}

/* Takes d->p at '-' or a digit; pushes the number (lua_pushnumber, as cjson)
 * and returns 1, or returns 0 for what strict JSON does not allow. */
static int jd_number(lua_State *L, jd_state *d) {
  double v;
  if (!jd_number_read(d, &v)) return 0;
  lua_pushnumber(L, (lua_Number)v);
  return 1;
}

/* Takes d->p at '[' (obj 0) or '{' (obj 1); pushes the array or object,
 * returns 1, or returns 0. An object's keys and values lie on the stack in
 * order, so a repeated key ends with the last value, as cjson's rawset in
 * text order does; the table is made at its final size once all are in. */
static int jd_container(lua_State *L, jd_state *d, int obj) {
  int base = lua_gettop(L), n = 0, i, watched = 0;
  const char close = obj ? '}' : ']';
  d->p = jd_ws(d->p + 1);
  if (*d->p != close) {
    for (;;) {
      if ((obj ? 2 * n : n) >= JD_MAX_ITEMS || !lua_checkstack(L, 6)) return 0;
      if (obj) {
        const char *k = d->p;
        if (*k != '"') return 0;
        d->esc = 0;
        if (!jd_string(L, d)) return 0;
        if (d->depth == d->watch) {
          /* the result's resultType (the last one wins) */
          if (!d->esc) {
            watched = d->p - k == 12 && memcmp(k, "\"resultType\"", 12) == 0;
          } else { /* a key written with an escape: as decoded */
            size_t kn;
            const char *ks = lua_tolstring(L, -1, &kn);
            watched = kn == 10 && memcmp(ks, "resultType", 10) == 0;
          }
        }
        d->p = jd_ws(d->p);
        if (*d->p != ':') return 0;
        d->p = jd_ws(d->p + 1);
      }
      if (!jd_value(L, d)) return 0;
      if (watched) {
        size_t vn;
        const char *v = lua_type(L, -1) == LUA_TSTRING ? lua_tolstring(L, -1, &vn) : NULL;
        d->ir = v && vn == 14 && memcmp(v, "input_required", 14) == 0;
        watched = 0;
      }
      n++;
      d->p = jd_ws(d->p);
      if (*d->p == ',') {
        d->p = jd_ws(d->p + 1);
        continue;
      }
      if (*d->p == close) break;
      return 0;
    }
  }
  d->p++;
  if (obj) {
    lua_createtable(L, 0, n);
    for (i = 0; i < n; i++) {
      lua_pushvalue(L, base + 2 * i + 1);
      lua_pushvalue(L, base + 2 * i + 2);
      lua_rawset(L, -3);
    }
  } else {
    lua_createtable(L, n, 0);
    for (i = 1; i <= n; i++) {
      lua_pushvalue(L, base + i);
      lua_rawseti(L, -2, i);
    }
  }
  if (n > 0) lua_replace(L, base + 1);
  lua_settop(L, base + 1);
  return 1;
}

/* Takes d->p at a value (no leading space); pushes it and returns 1, or
 * returns 0 (the stack then holds partial work; the caller declines). */
static int jd_value(lua_State *L, jd_state *d) {
  const char *p = d->p;
  int ok;
  switch (*p) {
  case '"': return jd_string(L, d);
  case '{':
  case '[':
    if (++d->depth > JD_MAX_DEPTH) return 0;
    ok = jd_container(L, d, *p == '{');
    d->depth--;
    return ok;
  case 't':
    if (strncmp(p, "true", 4) != 0) return 0;
    lua_pushboolean(L, 1);
    d->p = p + 4;
    return 1;
  case 'f':
    if (strncmp(p, "false", 5) != 0) return 0;
    lua_pushboolean(L, 0);
    d->p = p + 5;
    return 1;
  case 'n':
    if (strncmp(p, "null", 4) != 0) return 0;
    lua_pushlightuserdata(L, NULL); /* cjson.null (checked once below) */
    d->p = p + 4;
    return 1;
  default:
    if (*p == '-' || (*p >= '0' && *p <= '9')) return jd_number(L, d);
    return 0;
  }
}

/* 1: cjson.null is light userdata NULL (the fast path may run); -1: it is
 * something else (always decline); 0: not yet looked at. */
static int jd_null_ok = 0;

static void jd_check_null(lua_State *L) {
  static const char *const mods[] = {"cjson.safe", "cjson"};
  int i, found = 0;
  for (i = 0; i < 2 && !found; i++) {
    lua_getfield(L, LUA_REGISTRYINDEX, "_LOADED");
    if (lua_istable(L, -1)) {
      lua_getfield(L, -1, mods[i]);
      if (lua_istable(L, -1)) {
        lua_getfield(L, -1, "null");
        found = lua_type(L, -1) == LUA_TLIGHTUSERDATA ? (lua_touserdata(L, -1) == NULL ? 1 : -1) : 0;
        lua_pop(L, 1);
      }
      lua_pop(L, 1);
    }
    lua_pop(L, 1);
  }
  if (found) jd_null_ok = found; /* not loaded yet: look again next time */
}

/* core.json_decode(text) -> value, or nil where cjson.decode must decide.
 * Raises only for misuse (text not a string) or out of memory. */
static int fav_json_decode(lua_State *L) {
  size_t len;
  const char *s = luaL_checklstring(L, 1, &len);
  jd_state d;
  if (jd_null_ok == 0) jd_check_null(L);
  if (jd_null_ok != 1) {
    lua_pushnil(L);
    return 1;
  }
  lua_settop(L, 1);
  d.c = (fav_jd_cache *)lua_touserdata(L, lua_upvalueindex(1));
  d.end = s + len;
  d.p = jd_ws(s);
  d.depth = d.esc = d.watch = d.ir = 0;
  if (jd_value(L, &d)) {
    d.p = jd_ws(d.p);
    if (d.p == s + len) return 1; /* all of it, no trailing bytes or NUL */
  }
  lua_pushnil(L);
  return 1;
}

/* Where an envelope key of the n bytes at k (no escape) goes. */
enum { JK_OTHER, JK_JSONRPC, JK_ID, JK_RESULT, JK_STOP };

static int jd_envelope_key(const char *k, size_t n) {
  switch (n) {
    case 2: return memcmp(k, "id", 2) == 0 ? JK_ID : JK_OTHER;
    case 5: return memcmp(k, "error", 5) == 0 ? JK_STOP : JK_OTHER;
    case 6:
      if (memcmp(k, "result", 6) == 0) return JK_RESULT;
      return memcmp(k, "method", 6) == 0 ? JK_STOP : JK_OTHER;
    case 7: return memcmp(k, "jsonrpc", 7) == 0 ? JK_JSONRPC : JK_OTHER;
    default: return JK_OTHER;
  }
}

/* (favcrm.h) Decodes the JSON-RPC answer of len bytes at s
 * (NUL-terminated) and, when it is the plain result of the request whose
 * id is the number at stack index idx -- an object whose "jsonrpc" is
 * "2.0", whose "id" equals that number (as Lua's == compares cjson's
 * number with it), with no "error" and no "method", and whose "result" is
 * an object or an array (and with modern set, not one whose resultType is
 * "input_required") -- pushes that result, exactly as
 * cjson.decode(s).result, and returns 1. Otherwise it pushes nothing and
 * returns 0: what it does not take (an escape in a key of the envelope, a
 * jsonrpc or an id written otherwise, what json_decode declines) is left
 * to the caller's general path, which decides as before. c is the state's
 * string cache (fav_jd_cache_get) or NULL. Can raise (memory). */
int fav_jd_rpc_result(lua_State *L, const char *s, size_t len, int idx, int modern, fav_jd_cache *c) {
  int top = lua_gettop(L), ver = 0, id = 0, ir = 0;
  double want, got;
  jd_state d;
  if (lua_type(L, idx) != LUA_TNUMBER) return 0;
#if LUA_VERSION_NUM >= 503
  if (lua_isinteger(L, idx)) {
    /* compared as doubles only where that is exact */
    lua_Integer iv = lua_tointeger(L, idx);
    if (iv < -((lua_Integer)1 << 53) || iv > ((lua_Integer)1 << 53)) return 0;
    want = (double)iv;
  } else
#endif
    want = (double)lua_tonumber(L, idx);
  if (jd_null_ok == 0) jd_check_null(L);
  if (jd_null_ok != 1 || !lua_checkstack(L, 8)) return 0;
  lua_pushnil(L); /* top + 1: the result */
  d.c = c;
  d.end = s + len;
  d.p = jd_ws(s);
  d.depth = 1;
  d.esc = d.watch = d.ir = 0;
  if (*d.p != '{') goto decline;
  d.p = jd_ws(d.p + 1);
  if (*d.p != '}') {
    for (;;) {
      const char *k = d.p + 1, *q = k;
      int which;
      if (*d.p != '"') goto decline;
      while (*q != '"' && *q != '\\' && *q != '\0') q++;
      if (*q != '"') goto decline; /* an escape (or the end): the general path */
      which = jd_envelope_key(k, (size_t)(q - k));
      if (which == JK_STOP) goto decline;
      d.p = jd_ws(q + 1);
      if (*d.p != ':') goto decline;
      d.p = jd_ws(d.p + 1);
      switch (which) {
        case JK_JSONRPC:
          /* only "2.0" as it is; another value (or one written with an
           * escape) is for the general path to judge */
          if (d.p[0] != '"' || d.p[1] != '2' || d.p[2] != '.' || d.p[3] != '0' || d.p[4] != '"') goto decline;
          d.p += 5;
          ver = 1;
          break;
        case JK_ID:
          /* every id must be ours (the last one wins in cjson) */
          if (!(*d.p == '-' || (*d.p >= '0' && *d.p <= '9')) || !jd_number_read(&d, &got) || got != want)
            goto decline;
          id = 1;
          break;
        case JK_RESULT:
          /* a repeated key: the last wins, as in cjson */
          if (modern) {
            d.watch = 2;
            d.ir = 0;
          }
          if (!jd_value(L, &d)) goto decline;
          lua_replace(L, top + 1);
          d.watch = 0;
          ir = d.ir;
          break;
        default:
          if (!jd_value(L, &d)) goto decline;
          lua_pop(L, 1);
      }
      d.p = jd_ws(d.p);
      if (*d.p == ',') {
        d.p = jd_ws(d.p + 1);
        continue;
      }
      if (*d.p == '}') break;
      goto decline;
    }
  }
  d.p = jd_ws(d.p + 1);
  if (d.p != s + len || !ver || !id || ir || !lua_istable(L, top + 1)) goto decline;
  return 1;
decline:
  lua_settop(L, top);
  return 0;
}

/* Pushes the state's string cache (its userdata). Can raise (memory). */
static void jd_cache_push(lua_State *L) {
  fav_jd_cache_get(L);
  lua_pushlightuserdata(L, (void *)&jd_cache_key);
  lua_rawget(L, LUA_REGISTRYINDEX);
}

/* core.json_rpc_result(text, id [, modern]) -> result | nil: what
 * http:exchange's JSON-RPC mode decides for an answer (for the specs):
 * the result fav_jd_rpc_result hands over, or nil where it declines.
 * Raises only for misuse (text not a string) or out of memory. */
static int fav_json_rpc_result(lua_State *L) {
  size_t len;
  const char *s = luaL_checklstring(L, 1, &len);
  luaL_checkany(L, 2);
  if (!fav_jd_rpc_result(L, s, len, 2, lua_toboolean(L, 3), (fav_jd_cache *)lua_touserdata(L, lua_upvalueindex(1))))
    lua_pushnil(L);
  return 1;
}

int fav_json_decode_open(lua_State *L) {
  jd_cache_push(L);
  lua_pushvalue(L, -1);
  lua_pushcclosure(L, fav_json_decode, 1);
  lua_setfield(L, -3, "json_decode");
  lua_pushcclosure(L, fav_json_rpc_result, 1);
  lua_setfield(L, -2, "json_rpc_result");
  return 0;
}

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
 * error. It holds no C resource, so a memory error may unwind through it. */
#include "favcrm.h"

#include <stdlib.h>
#include <string.h>

#define JD_MAX_DEPTH 64
#define JD_MAX_ITEMS 1000 /* stack slots one container may take while parsed */

typedef struct {
  const char *p; /* the next byte; the text is NUL-terminated (a Lua string) */
  int depth;
} jd_state;

static int jd_value(lua_State *L, jd_state *d);

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

/* Takes d->p at the opening quote; pushes the string and returns 1, or
 * returns 0 (the stack may hold a partial buffer: the caller declines). */
static int jd_string(lua_State *L, jd_state *d) {
  const char *s = d->p + 1, *p = s;
  luaL_Buffer b;
  for (;;) { /* the common case: no escape */
    unsigned char c = (unsigned char)*p;
    if (c == '"') {
      lua_pushlstring(L, s, (size_t)(p - s));
      d->p = p + 1;
      return 1;
    }
    if (c == '\\') break;
    if (c == 0) return 0;
    p++;
  }
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

/* Takes d->p at '-' or a digit; pushes the number (lua_pushnumber, as cjson)
 * and returns 1, or returns 0 for what strict JSON does not allow. */
static int jd_number(lua_State *L, jd_state *d) {
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
    lua_pushnumber(L, (lua_Number)(*d->p == '-' ? -x : x));
    d->p = p;
    return 1;
  }
  v = strtod(d->p, &end); /* what cjson's fpconv_strtod does in a '.' locale */
  if (end != p) return 0; /* another locale, or strtod read on: let cjson decide */
  lua_pushnumber(L, (lua_Number)v);
  d->p = p;
  return 1;
}

/* Takes d->p at '[' (obj 0) or '{' (obj 1); pushes the array or object,
 * returns 1, or returns 0. An object's keys and values lie on the stack in
 * order, so a repeated key ends with the last value, as cjson's rawset in
 * text order does; the table is made at its final size once all are in. */
static int jd_container(lua_State *L, jd_state *d, int obj) {
  int base = lua_gettop(L), n = 0, i;
  const char close = obj ? '}' : ']';
  d->p = jd_ws(d->p + 1);
  if (*d->p != close) {
    for (;;) {
      if ((obj ? 2 * n : n) >= JD_MAX_ITEMS || !lua_checkstack(L, 6)) return 0;
      if (obj) {
        if (*d->p != '"' || !jd_string(L, d)) return 0;
        d->p = jd_ws(d->p);
        if (*d->p != ':') return 0;
        d->p = jd_ws(d->p + 1);
      }
      if (!jd_value(L, d)) return 0;
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
  d.p = jd_ws(s);
  d.depth = 0;
  if (jd_value(L, &d)) {
    d.p = jd_ws(d.p);
    if (d.p == s + len) return 1; /* all of it, no trailing bytes or NUL */
  }
  lua_pushnil(L);
  return 1;
}

int fav_json_decode_open(lua_State *L) {
  lua_pushcfunction(L, fav_json_decode);
  lua_setfield(L, -2, "json_decode");
  return 0;
}

/* secret.c: favcrm.Secret, core.secret, core.mask_key, core.mask_email,
 * core.secret_form (a form body built in a secret), core.secret_token,
 * core.secret_basic (an Authorization: Basic line built in a secret).
 *
 * A secret is a userdata whose block holds the bytes (no malloc: Lua owns
 * the memory, so nothing leaks when an error unwinds). tostring masks it;
 * :reveal() is the one way back to a string; close, __gc and __close wipe
 * it; concatenation and # raise; getmetatable returns "favcrm.Secret".
 * tostring of a closed secret is "<closed secret>" (its bytes are gone).
 * core.is_secret(v) is how Lua code tells a secret (the metatable is hidden).
 * Masking is by bytes: API keys are ASCII. */
#include "secret.h"

#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#include <openssl/rand.h>
#ifdef __linux__
#include <sys/prctl.h>
#endif

#if defined(__GLIBC__) && defined(__USE_MISC) && \
    (__GLIBC__ > 2 || (__GLIBC__ == 2 && __GLIBC_MINOR__ >= 25))
#define FAV_HAVE_EXPLICIT_BZERO 1
#endif

#define SECRET_CLOSED_TEXT "<closed secret>"

typedef struct secret_ud {
  size_t len;   /* bytes in use                              */
  size_t cap;   /* room in bytes[] (plus one for the NUL)     */
  int closed;
  char bytes[]; /* cap + 1 bytes, NUL after len               */
} secret_ud;

/* See secret.h. Never raises. */
#ifndef FAV_HAVE_EXPLICIT_BZERO
/* memset through a volatile pointer: the compiler cannot prove the call
 * dead, and it runs at memset's speed (a byte loop through a volatile
 * pointer cost ~110k instructions per tools/call in libcurl's freed
 * buffers: issue 20). */
static void *(*volatile fav_wipe_memset)(void *, int, size_t) = memset;
#endif

void fav_wipe(void *p, size_t n) {
#ifdef FAV_HAVE_EXPLICIT_BZERO
  explicit_bzero(p, n);
#else
  fav_wipe_memset(p, 0, n);
#endif
}

/* ---- no core dumps while a secret is alive ----------------------------
 * A core file would hold every open secret. From the first open secret to
 * the last one's close, the process makes no core dump: RLIMIT_CORE's soft
 * limit is 0 and, on Linux, PR_SET_DUMPABLE is 0 (which also keeps pipe
 * core handlers such as systemd-coredump away, and other same-user
 * processes from ptrace and /proc/PID/mem). Both are restored when the
 * last secret is closed. Opt out with FAVCRM_ALLOW_CORE_DUMPS=1 in the
 * environment (read at the first secret) or core.core_dumps(true). */
static long live_secrets = 0;
static int dumps_optout = -1; /* -1: not decided yet */
static int dumps_blocked = 0;
static struct rlimit saved_core;
static int saved_dumpable = 1;

static void dumps_block(void) {
  struct rlimit off;
  if (dumps_optout < 0) {
    const char *v = getenv("FAVCRM_ALLOW_CORE_DUMPS");
    dumps_optout = v != NULL && *v != '\0' && strcmp(v, "0") != 0;
  }
  if (dumps_optout || dumps_blocked) return;
  if (getrlimit(RLIMIT_CORE, &saved_core) == 0) {
    off = saved_core;
    off.rlim_cur = 0;
    setrlimit(RLIMIT_CORE, &off);
  }
#ifdef __linux__
  saved_dumpable = prctl(PR_GET_DUMPABLE, 0, 0, 0, 0);
  if (saved_dumpable < 0) saved_dumpable = 1;
  prctl(PR_SET_DUMPABLE, 0, 0, 0, 0);
#endif
  dumps_blocked = 1;
}

static void dumps_restore(void) {
  if (!dumps_blocked) return;
  setrlimit(RLIMIT_CORE, &saved_core);
#ifdef __linux__
  prctl(PR_SET_DUMPABLE, (unsigned long)saved_dumpable, 0, 0, 0);
#endif
  dumps_blocked = 0;
}

/* core.core_dumps([allow]) -> allowed, blocked_now. With a boolean, sets
 * the opt-out: true allows core dumps while secrets are alive (restoring
 * the limits at once), false blocks them again from the next secret on
 * (at once when one is alive). Returns whether they are allowed and
 * whether they are blocked right now. */
static int secret_core_dumps(lua_State *L) {
  if (!lua_isnoneornil(L, 1)) {
    luaL_checktype(L, 1, LUA_TBOOLEAN);
    dumps_optout = lua_toboolean(L, 1);
    if (dumps_optout) dumps_restore();
    else if (live_secrets > 0) dumps_block();
  }
  lua_pushboolean(L, dumps_optout == 1);
  lua_pushboolean(L, dumps_blocked);
  return 2;
}

/* The secret at idx or NULL (not a secret). Never raises. */
static secret_ud *secret_test(lua_State *L, int idx) {
  return (secret_ud *)luaL_testudata(L, idx, FAV_SECRET_MT);
}

/* The secret at idx; raises when it is not one. */
static secret_ud *secret_check(lua_State *L, int idx) {
  return (secret_ud *)luaL_checkudata(L, idx, FAV_SECRET_MT);
}

/* See secret.h: userdata first (zeroed, with its metatable), so a raise
 * leaves nothing behind. Can raise (memory). */
char *fav_secret_pushbuf(lua_State *L, size_t cap) {
  secret_ud *s;
  if (cap > ((size_t)-1) - sizeof(secret_ud) - 1) luaL_error(L, "secret too large");
  s = (secret_ud *)lua_newuserdatauv(L, sizeof(secret_ud) + cap + 1, 0);
  s->len = 0;
  s->cap = cap;
  s->closed = 1; /* open (and counted) once the metatable is set */
  memset(s->bytes, 0, cap + 1);
  luaL_setmetatable(L, FAV_SECRET_MT);
  s->closed = 0;
  if (live_secrets++ == 0) dumps_block();
  return s->bytes;
}

/* See secret.h. Can raise (memory). */
void fav_secret_push(lua_State *L, const char *p, size_t len) {
  char *b = fav_secret_pushbuf(L, len);
  if (len) memcpy(b, p, len);
  fav_secret_setlen(L, -1, len);
}

/* See secret.h. Never raises. */
int fav_secret_setlen(lua_State *L, int idx, size_t len) {
  secret_ud *s = secret_test(L, idx);
  if (s == NULL || s->closed || len > s->cap) return -1;
  fav_wipe(s->bytes + len, s->cap + 1 - len);
  s->len = len;
  return 0;
}

/* See secret.h. Never raises. */
const char *fav_secret_get(lua_State *L, int idx, size_t *len) {
  secret_ud *s = secret_test(L, idx);
  if (s == NULL || s->closed) return NULL;
  if (len != NULL) *len = s->len;
  return s->bytes;
}

/* See secret.h. Never raises. */
const char *fav_secret_bytes(void *ud, size_t *len) {
  secret_ud *s = (secret_ud *)ud;
  if (s == NULL || s->closed) return NULL;
  if (len != NULL) *len = s->len;
  return s->bytes;
}

#define SECRET_PUBLIC_PREFIX "fav_mcp_" /* the same in every key: not secret */
#define SECRET_PREFIX_LEN 8
#define SECRET_MASK_TAIL 4                /* the secret bytes a mask shows */
#define SECRET_MASK_MIN 12                /* a secret part this short shows none */

/* Pushes the masked form of len bytes at p. The rule: the public prefix
 * "fav_mcp_" is kept when the text starts with it; the rest (the secret
 * part) is shown only as "..." and its last 4 bytes, and only when it is
 * longer than 12 bytes, so a mask never shows more than 4 secret bytes nor
 * as much as a third of them; a shorter text is "****". A real key gives
 * "fav_mcp_...cdef"; a 13-byte "fav_mcp_abcde" gives "****".
 * Can raise (memory). */
static void secret_push_masked(lua_State *L, const char *p, size_t len) {
  char out[SECRET_PREFIX_LEN + 3 + SECRET_MASK_TAIL];
  size_t pre = 0, o;
  if (len >= SECRET_PREFIX_LEN && memcmp(p, SECRET_PUBLIC_PREFIX, SECRET_PREFIX_LEN) == 0)
    pre = SECRET_PREFIX_LEN;
  if (len - pre <= SECRET_MASK_MIN) {
    lua_pushliteral(L, "****");
    return;
  }
  memcpy(out, p, pre);
  o = pre;
  memcpy(out + o, "...", 3);
  o += 3;
  memcpy(out + o, p + len - SECRET_MASK_TAIL, SECRET_MASK_TAIL);
  o += SECRET_MASK_TAIL;
  lua_pushlstring(L, out, o);
  fav_wipe(out, sizeof out);
}

/* core.secret(text): takes a string; returns a new favcrm.Secret holding a
 * copy of it. Raises when text is not a string (or memory fails). */
static int secret_new(lua_State *L) {
  size_t len;
  const char *p;
  luaL_checktype(L, 1, LUA_TSTRING);
  p = lua_tolstring(L, 1, &len);
  fav_secret_push(L, p, len);
  return 1;
}

/* s:reveal(): returns the plain text. Raises "secret is closed" on a
 * closed secret (the message never holds the text). */
static int secret_reveal(lua_State *L) {
  secret_ud *s = secret_check(L, 1);
  if (s->closed) return luaL_error(L, "secret is closed");
  lua_pushlstring(L, s->bytes, s->len);
  return 1;
}

/* s:close(), __gc, __close: wipes the bytes and marks the secret closed.
 * Idempotent; returns nothing; raises only when s is not a secret. */
static int secret_close(lua_State *L) {
  secret_ud *s = secret_check(L, 1);
  if (!s->closed) {
    fav_wipe(s->bytes, s->cap + 1);
    s->len = 0;
    s->closed = 1;
    if (--live_secrets == 0) dumps_restore();
  }
  return 0;
}

/* s:is_closed(): returns a boolean. */
static int secret_is_closed(lua_State *L) {
  secret_ud *s = secret_check(L, 1);
  lua_pushboolean(L, s->closed);
  return 1;
}

/* s:mask(), __tostring: returns the masked text ("fav_mcp_...cdef",
 * "****") or "<closed secret>". Raises only when s is not a secret. */
static int secret_mask(lua_State *L) {
  secret_ud *s = secret_check(L, 1);
  if (s->closed) lua_pushliteral(L, SECRET_CLOSED_TEXT);
  else secret_push_masked(L, s->bytes, s->len);
  return 1;
}

/* __eq: takes two values; true when both are open secrets with the same
 * bytes (compared in constant time for equal lengths). Never raises. */
static int secret_eq(lua_State *L) {
  secret_ud *a = secret_test(L, 1), *b = secret_test(L, 2);
  int same = 0;
  if (a != NULL && b != NULL && !a->closed && !b->closed && a->len == b->len) {
    volatile unsigned char diff = 0;
    size_t i;
    for (i = 0; i < a->len; i++)
      diff |= (unsigned char)(a->bytes[i] ^ b->bytes[i]);
    same = diff == 0;
  }
  lua_pushboolean(L, same);
  return 1;
}

/* __concat: always raises, so a secret never silently becomes a string. */
static int secret_concat(lua_State *L) {
  return luaL_error(L, "cannot concatenate a favcrm.secret (use :reveal())");
}

/* __len: always raises; the length is not exposed either. */
static int secret_len(lua_State *L) {
  return luaL_error(L, "cannot take the length of a favcrm.secret (use :reveal())");
}

/* core.mask_key(text_or_secret): returns the masked form of a string or a
 * secret ("<closed secret>" for a closed one). Raises on other types. */
static int secret_mask_key(lua_State *L) {
  if (lua_type(L, 1) == LUA_TSTRING) {
    size_t len;
    const char *p = lua_tolstring(L, 1, &len);
    secret_push_masked(L, p, len);
    return 1;
  }
  if (secret_test(L, 1) != NULL) return secret_mask(L);
  return luaL_argerror(L, 1, "string or favcrm.Secret expected");
}

/* core.redact(text, secret...) -> text with every occurrence of each open
 * secret's bytes (of 8 bytes or more) replaced by its mask
 * ("fav_mcp_...cdef"); the same string when none occurs. Arguments after
 * text that are not open secrets are skipped. The secret's bytes never
 * become a Lua string. Raises when text is not a string. */
static int secret_redact(lua_State *L) {
  int i, top = lua_gettop(L);
  luaL_checktype(L, 1, LUA_TSTRING);
  for (i = 2; i <= top; i++) {
    secret_ud *s = secret_test(L, i);
    size_t tlen, k, from = 0;
    const char *t;
    luaL_Buffer b;
    int found = 0;
    if (s == NULL || s->closed || s->len < 8) continue;
    t = lua_tolstring(L, 1, &tlen);
    for (k = 0; k + s->len <= tlen; k++) {
      if (t[k] != s->bytes[0] || memcmp(t + k, s->bytes, s->len) != 0) continue;
      if (!found) luaL_buffinit(L, &b);
      found = 1;
      luaL_addlstring(&b, t + from, k - from);
      secret_push_masked(L, s->bytes, s->len);
      luaL_addvalue(&b);
      k += s->len - 1;
      from = k + 1;
    }
    if (found) {
      luaL_addlstring(&b, t + from, tlen - from);
      luaL_pushresult(&b);
      lua_replace(L, 1);
    }
  }
  lua_settop(L, 1);
  return 1;
}

/* core.is_secret(v): true when v is a favcrm.Secret (open or closed),
 * else false. Never raises. */
static int secret_is_secret(lua_State *L) {
  lua_pushboolean(L, secret_test(L, 1) != NULL);
  return 1;
}

/* Length of the UTF-8 sequence starting at p (at most n bytes): the lead
 * byte plus the continuation bytes after it. */
static size_t secret_utf8_len(const char *p, size_t n) {
  size_t i = 1;
  while (i < n && ((unsigned char)p[i] & 0xC0) == 0x80) i++;
  return i;
}

/* core.mask_email(text): takes a string; returns "yo*@example.com" (first
 * two characters of the local part then "*"; one character then "*" when
 * the local part has one or two; "*" when it is empty), or "***" when
 * there is no "@". Characters are UTF-8 sequences. Raises on a non-string. */
static int secret_mask_email(lua_State *L) {
  size_t len, local, keep, c1, c2;
  const char *p, *at;
  luaL_checktype(L, 1, LUA_TSTRING);
  p = lua_tolstring(L, 1, &len);
  at = NULL;
  { /* the last "@": quoted local parts may hold one */
    size_t i;
    for (i = len; i > 0; i--)
      if (p[i - 1] == '@') {
        at = p + i - 1;
        break;
      }
  }
  if (at == NULL) {
    lua_pushliteral(L, "***");
    return 1;
  }
  local = (size_t)(at - p);
  c1 = local > 0 ? secret_utf8_len(p, local) : 0;
  c2 = c1 < local ? secret_utf8_len(p + c1, local - c1) : 0;
  keep = c1 + c2 < local ? c1 + c2 : c1; /* 3+ characters: keep two */
  {
    luaL_Buffer b;
    luaL_buffinit(L, &b);
    luaL_addlstring(&b, p, keep);
    luaL_addchar(&b, '*');
    luaL_addlstring(&b, at, len - local);
    luaL_pushresult(&b);
  }
  return 1;
}

/* 1 when c is an RFC 3986 unreserved byte (kept as it is in a form). */
static int form_keep(unsigned char c) {
  return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '.'
    || c == '_' || c == '~';
}

/* Writes p[0..n) percent-encoded to out (when out is not NULL); returns
 * the length of the encoding. Never raises. */
static size_t form_encode(char *out, const char *p, size_t n) {
  static const char HEX[] = "0123456789ABCDEF";
  size_t i, k = 0;
  for (i = 0; i < n; i++) {
    unsigned char c = (unsigned char)p[i];
    if (form_keep(c)) {
      if (out) out[k] = (char)c;
      k++;
    } else {
      if (out) {
        out[k] = '%';
        out[k + 1] = HEX[c >> 4];
        out[k + 2] = HEX[c & 15];
      }
      k += 3;
    }
  }
  return k;
}

/* The bytes of list[i] (a string or an open favcrm.Secret), or NULL for
 * false. The list keeps the value alive, so the pointer stays good after
 * the pop. Raises (misuse) on anything else. */
static const char *form_item(lua_State *L, lua_Integer i, size_t *len, int secret_ok) {
  const char *p;
  lua_rawgeti(L, 1, i);
  if (lua_type(L, -1) == LUA_TBOOLEAN && !lua_toboolean(L, -1)) p = NULL;
  else if ((p = fav_secret_get(L, -1, len)) != NULL && secret_ok) {
    /* a secret's bytes */
  } else if (lua_type(L, -1) == LUA_TSTRING) {
    p = lua_tolstring(L, -1, len);
  } else {
    lua_pop(L, 1);
    luaL_argerror(L, 1, lua_pushfstring(L, "item %d: %s expected", (int)i,
      secret_ok ? "string, favcrm.secret or false" : "string"));
    return NULL;
  }
  lua_pop(L, 1);
  return p;
}

/* core.secret_form(list) -> a favcrm.Secret holding the
 * application/x-www-form-urlencoded body of list = {name1, value1, name2,
 * value2, ...}: names are strings, values strings or open favcrm.Secret
 * values, or false (the pair is left out); both percent-encoded (RFC 3986
 * unreserved bytes kept). The form is written straight into the secret's
 * own bytes, so no value of a secret becomes a Lua string; what it holds
 * is wiped when it is closed or collected. Raises on a bad list (misuse)
 * and on memory. */
static int secret_form(lua_State *L) {
  lua_Integer i, n;
  size_t total = 0, k = 0;
  char *out;
  luaL_checktype(L, 1, LUA_TTABLE);
  n = (lua_Integer)lua_rawlen(L, 1);
  luaL_argcheck(L, n % 2 == 0, 1, "a list of name, value pairs expected");
  for (i = 1; i <= n; i += 2) {
    size_t nl = 0, vl = 0;
    const char *name = form_item(L, i, &nl, 0);
    const char *v = form_item(L, i + 1, &vl, 1);
    if (!name) luaL_argerror(L, 1, lua_pushfstring(L, "item %d: string expected", (int)i));
    if (!v) continue;
    total += (total ? 1 : 0) + form_encode(NULL, name, nl) + 1 + form_encode(NULL, v, vl);
  }
  out = fav_secret_pushbuf(L, total);
  for (i = 1; i <= n; i += 2) {
    size_t nl = 0, vl = 0;
    const char *name = form_item(L, i, &nl, 0);
    const char *v = form_item(L, i + 1, &vl, 1);
    if (!v) continue;
    if (k) out[k++] = '&';
    k += form_encode(out + k, name, nl);
    out[k++] = '=';
    k += form_encode(out + k, v, vl);
  }
  fav_secret_setlen(L, -1, k);
  return 1;
}

/* core.secret_token(n) -> a favcrm.Secret holding the unpadded base64url
 * text of n bytes (1..256) from the CSPRNG (a PKCE code verifier: n = 32
 * gives its 43 characters). The random bytes never become a Lua string
 * and are wiped. Raises on a bad n or when the generator fails (never
 * returns weak bytes). */
static int secret_token(lua_State *L) {
  unsigned char raw[256];
  lua_Integer n = luaL_checkinteger(L, 1);
  size_t k;
  char *out;
  luaL_argcheck(L, n >= 1 && n <= 256, 1, "count must be within 1..256");
  out = fav_secret_pushbuf(L, FAV_B64_LEN((size_t)n, 1));
  if (RAND_bytes(raw, (int)n) != 1) {
    fav_wipe(raw, sizeof raw);
    return luaL_error(L, "favcrm: the system's random generator failed");
  }
  k = fav_b64(out, raw, (size_t)n, 1);
  fav_wipe(raw, sizeof raw);
  fav_secret_setlen(L, -1, k);
  return 1;
}

/* The bytes of argument arg: a string or an open favcrm.Secret. Raises
 * (misuse) on anything else. */
static const char *basic_arg(lua_State *L, int arg, size_t *len) {
  const char *p = fav_secret_get(L, arg, len);
  if (p) return p;
  if (lua_type(L, arg) != LUA_TSTRING)
    luaL_argerror(L, arg, lua_pushfstring(L, "string or favcrm.secret expected, got %s", luaL_typename(L, arg)));
  return lua_tolstring(L, arg, len);
}

/* core.secret_basic(user, password) -> a favcrm.Secret holding the header
 * line "Authorization: Basic <base64 of user:password>", each of the two
 * percent-encoded first (RFC 6749 section 2.3.1: OAuth's
 * client_secret_basic; RFC 3986 unreserved bytes kept). user and password
 * are strings or open favcrm.Secret values; the pair is assembled in a
 * second secret, wiped before this returns, so no byte of a secret becomes
 * a Lua string. Raises on a bad argument (misuse) and on memory. */
static int secret_basic(lua_State *L) {
  static const char pre[] = "Authorization: Basic ";
  size_t ul, pl, pair_len, k;
  const char *u = basic_arg(L, 1, &ul);
  const char *pw = basic_arg(L, 2, &pl);
  char *pair, *out;
  lua_settop(L, 2);
  pair_len = form_encode(NULL, u, ul) + 1 + form_encode(NULL, pw, pl);
  pair = fav_secret_pushbuf(L, pair_len); /* 3 */
  k = form_encode(pair, u, ul);
  pair[k++] = ':';
  k += form_encode(pair + k, pw, pl);
  out = fav_secret_pushbuf(L, sizeof pre - 1 + FAV_B64_LEN(pair_len, 0)); /* 4 */
  memcpy(out, pre, sizeof pre - 1);
  k = sizeof pre - 1 + fav_b64(out + sizeof pre - 1, (const unsigned char *)pair, pair_len, 0);
  fav_secret_setlen(L, 4, k);
  fav_secret_setlen(L, 3, 0); /* wipes the pair */
  return 1;
}

static const luaL_Reg secret_methods[] = {
  {"reveal", secret_reveal},
  {"close", secret_close},
  {"mask", secret_mask},
  {"is_closed", secret_is_closed},
  {NULL, NULL}
};

static const luaL_Reg secret_meta[] = {
  {"__tostring", secret_mask},
  {"__eq", secret_eq},
  {"__concat", secret_concat},
  {"__len", secret_len},
  {NULL, NULL}
};

static const luaL_Reg secret_funcs[] = {
  {"secret", secret_new},
  {"is_secret", secret_is_secret},
  {"mask_key", secret_mask_key},
  {"mask_email", secret_mask_email},
  {"redact", secret_redact},
  {"core_dumps", secret_core_dumps},
  {"secret_form", secret_form},
  {"secret_token", secret_token},
  {"secret_basic", secret_basic},
  {NULL, NULL}
};

/* Takes the module table at the top; registers the favcrm.Secret
 * metatable and adds secret, is_secret, mask_key, mask_email. Leaves the stack as
 * found. Can raise (memory). */
int fav_secret_open(lua_State *L) {
  fav_newclass(L, FAV_SECRET_MT, secret_methods, secret_meta, secret_close);
  lua_pushliteral(L, FAV_SECRET_MT);
  lua_setfield(L, -2, "__metatable");
  lua_pop(L, 1);
  luaL_setfuncs(L, secret_funcs, 0);
  return 0;
}

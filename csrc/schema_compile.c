/* schema_compile.c: program memory (every allocation attached to the
 * validator userdata the moment it is made) and the compiler: keyword
 * readers and fav_schema_build, one node per schema. See schema.h. */
#include "schema.h"

#include <dlfcn.h>

#ifndef FAV_PCRE2_SONAME
#ifdef __APPLE__
#define FAV_PCRE2_SONAME "libpcre2-8.0.dylib"
#else
#define FAV_PCRE2_SONAME "libpcre2-8.so.0"
#endif
#endif

/* ---- PCRE2, loaded on first use (schema.h) --------------------------- */

fav_pcre2_api fav_pcre2;
static int pcre2_state;      /* 0 not tried, 1 loaded, -1 failed (for good) */
static char pcre2_err[256];

/* Binds f (a field of fav_pcre2) to the library's symbol name. */
#define PCRE2_BIND(f, name)                                    \
  do {                                                         \
    void *sym = dlsym(lib, name);                              \
    if (sym == NULL) { missing = name; break; }                \
    memcpy(&fav_pcre2.f, &sym, sizeof sym);                    \
  } while (0)

/* Loads libpcre2-8 and binds fav_pcre2; 0 or -1 (pcre2_err says why). */
static int pcre2_load(void) {
  void *lib;
  const char *missing = NULL;
  if (pcre2_state != 0) return pcre2_state > 0 ? 0 : -1;
  lib = dlopen(FAV_PCRE2_SONAME, RTLD_NOW | RTLD_LOCAL);
  if (lib == NULL) {
    const char *why = dlerror();
    snprintf(pcre2_err, sizeof pcre2_err, "favcrm.schema: PCRE2 (%s) could not be loaded: %s", FAV_PCRE2_SONAME,
             why ? why : "unknown error");
    pcre2_state = -1;
    return -1;
  }
  PCRE2_BIND(compile, "pcre2_compile_8");
  if (!missing) PCRE2_BIND(code_free, "pcre2_code_free_8");
  if (!missing) PCRE2_BIND(get_error_message, "pcre2_get_error_message_8");
  if (!missing) PCRE2_BIND(jit_compile, "pcre2_jit_compile_8");
  if (!missing) PCRE2_BIND(jit_match, "pcre2_jit_match_8");
  if (!missing) PCRE2_BIND(match, "pcre2_match_8");
  if (!missing) PCRE2_BIND(match_data_create, "pcre2_match_data_create_8");
  if (!missing) PCRE2_BIND(match_data_free, "pcre2_match_data_free_8");
  if (!missing) PCRE2_BIND(match_context_create, "pcre2_match_context_create_8");
  if (!missing) PCRE2_BIND(match_context_free, "pcre2_match_context_free_8");
  if (!missing) PCRE2_BIND(compile_context_create, "pcre2_compile_context_create_8");
  if (!missing) PCRE2_BIND(compile_context_free, "pcre2_compile_context_free_8");
  if (!missing) PCRE2_BIND(set_match_limit, "pcre2_set_match_limit_8");
  if (!missing) PCRE2_BIND(set_compile_extra_options, "pcre2_set_compile_extra_options_8");
  if (missing) {
    snprintf(pcre2_err, sizeof pcre2_err, "favcrm.schema: PCRE2 (%s) has no %s", FAV_PCRE2_SONAME, missing);
    dlclose(lib);
    pcre2_state = -1;
    return -1;
  }
  pcre2_state = 1; /* the library stays loaded for the process */
  return 0;
}

/* See schema.h. */
const char *fav_pcre2_error(void) { return pcre2_err; }

/* See schema.h. */
int fav_schema_pcre(fav_prog *P) {
  if (P->md != NULL) return 0;
  if (pcre2_load() != 0) return FAV_PCRE2_NOLIB;
  if (P->mctx == NULL) P->mctx = pcre2_match_context_create(NULL);
  if (P->cctx == NULL) P->cctx = pcre2_compile_context_create(NULL);
  if (P->mctx == NULL || P->cctx == NULL) return FAV_PCRE2_NOMEM;
  pcre2_set_match_limit(P->mctx, FAV_SCHEMA_MATCH_LIMIT);
#ifdef PCRE2_EXTRA_ALT_BSUX
  pcre2_set_compile_extra_options(P->cctx, PCRE2_EXTRA_ALT_BSUX);
#endif
  P->md = pcre2_match_data_create(1, NULL); /* last: md set means all set */
  return P->md != NULL ? 0 : FAV_PCRE2_NOMEM;
}

/* ------------------------------------------------------------------ */
/* Small helpers                                                        */
/* ------------------------------------------------------------------ */

/* Allocates zeroed memory or raises. The caller attaches the result to the
 * program before calling anything else that can raise. */
static void *fav_schema_alloc(lua_State *L, size_t n, size_t sz) {
  void *p;
  if (n == 0) n = 1;
  p = calloc(n, sz);
  if (p == NULL) luaL_error(L, "favcrm.schema: out of memory");
  return p;
}

static char *fav_schema_strdup(lua_State *L, const char *s, size_t len) {
  char *p = (char *)fav_schema_alloc(L, len + 1, 1);
  if (len) memcpy(p, s, len); /* s may be NULL when len is 0 */
  p[len] = '\0';
  return p;
}

/* Hash of a property name: its length and its first and last 8 bytes
 * (names are short; equal hashes are settled by memcmp). */
uint32_t fav_schema_hash(const char *s, size_t n) {
  uint64_t a = 0, b = 0, h;
  if (n >= 8) {
    memcpy(&a, s, 8);
    memcpy(&b, s + n - 8, 8);
  } else { /* a short name: bytes by hand (memcpy of a variable length is a call) */
    size_t i;
    for (i = 0; i < n; i++) a |= (uint64_t)(unsigned char)s[i] << (8 * i);
  }
  h = (a ^ (b * 0x9E3779B97F4A7C15ull) ^ (uint64_t)n) * 0xFF51AFD7ED558CCDull;
  return (uint32_t)(h >> 32);
}

/* Pushes t[k] (raw) for a C string key; returns its Lua type. */
int fav_schema_field(lua_State *L, int t, const char *k) {
  lua_pushstring(L, k);
  lua_rawget(L, t);
  return lua_type(L, -1);
}

/* Formats a number for messages: integers without a fraction, others with
 * the shortest %g that reads back the same. */
const char *fav_schema_numstr(char *buf, size_t sz, double x) {
  int p;
  if (x == floor(x) && fabs(x) < 1e15) {
    snprintf(buf, sz, "%.0f", x);
    return buf;
  }
  for (p = 15; p <= 17; p++) {
    snprintf(buf, sz, "%.*g", p, x);
    if (strtod(buf, NULL) == x) break;
  }
  return buf;
}

/* Counts the code points of s, or returns (size_t)-1 when s is not valid
 * UTF-8 (overlongs, surrogates and values above U+10FFFF are invalid). */
size_t fav_schema_utf8len(const char *str, size_t n) {
  const unsigned char *s = (const unsigned char *)str;
  size_t i = 0, cps = 0;
  /* all ASCII (the usual case): n code points, found a word at a time,
   * the tail as the last 8 bytes (overlapping) */
  if (n >= 8) {
    uint64_t w, acc = 0;
    for (i = 0; i + 8 <= n; i += 8) {
      memcpy(&w, s + i, 8);
      acc |= w;
    }
    memcpy(&w, s + n - 8, 8);
    if (!((acc | w) & 0x8080808080808080ull)) return n;
    i = 0;
  } else {
    unsigned acc = 0;
    for (i = 0; i < n; i++) acc |= s[i];
    if (acc < 0x80) return n;
    i = 0;
  }
  while (i < n) {
    unsigned c = s[i];
    if (c < 0x80) {
      while (i + 8 <= n) {
        uint64_t w;
        memcpy(&w, s + i, 8);
        if (w & 0x8080808080808080ull) break;
        i += 8;
        cps += 8;
      }
      while (i < n && s[i] < 0x80) {
        i++;
        cps++;
      }
      continue;
    }
    if (c < 0xC2 || c > 0xF4) return (size_t)-1;
    if (c < 0xE0) {
      if (i + 1 >= n || (s[i + 1] & 0xC0) != 0x80) return (size_t)-1;
      i += 2;
    } else if (c < 0xF0) {
      if (i + 2 >= n || (s[i + 1] & 0xC0) != 0x80 || (s[i + 2] & 0xC0) != 0x80) return (size_t)-1;
      if (c == 0xE0 && s[i + 1] < 0xA0) return (size_t)-1;
      if (c == 0xED && s[i + 1] >= 0xA0) return (size_t)-1;
      i += 3;
    } else {
      if (i + 3 >= n || (s[i + 1] & 0xC0) != 0x80 || (s[i + 2] & 0xC0) != 0x80 ||
          (s[i + 3] & 0xC0) != 0x80)
        return (size_t)-1;
      if (c == 0xF0 && s[i + 1] < 0x90) return (size_t)-1;
      if (c == 0xF4 && s[i + 1] >= 0x90) return (size_t)-1;
      i += 4;
    }
    cps++;
  }
  return cps;
}

/* ------------------------------------------------------------------ */
/* Program memory                                                       */
/* ------------------------------------------------------------------ */

static void fav_schema_freedeps(fav_dep *d, int n) {
  int i, j;
  if (d == NULL) return;
  for (i = 0; i < n; i++) {
    free(d[i].name);
    if (d[i].names) {
      for (j = 0; j < d[i].n; j++) free(d[i].names[j]);
    }
    free(d[i].names);
    free(d[i].lens);
  }
  free(d);
}

static void fav_schema_freenode(fav_node *n) {
  int i;
  free(n->loc);
  free(n->ref_str);
  free(n->dynref_name);
  free(n->dynref_str);
  free(n->dynanchor);
  if (n->dyn)
    for (i = 0; i < n->ndyn; i++) free(n->dyn[i].name);
  free(n->dyn);
  free(n->prefix);
  if (n->keys)
    for (i = 0; i < n->nkeys; i++) free(n->keys[i].name);
  free(n->keys);
  free(n->ktab);
  free(n->ptab);
  free(n->patre);
  free(n->patnodes);
  if (n->req)
    for (i = 0; i < n->nreq; i++) free(n->req[i]);
  free(n->req);
  fav_schema_freedeps(n->depreq, n->ndepreq);
  fav_schema_freedeps(n->depsch, n->ndepsch);
  free(n->allof);
  free(n->anyof);
  free(n->oneof);
  free(n);
}

/* Frees everything the program owns; idempotent (close and __gc). */
void fav_schema_freeprog(fav_prog *P) {
  int i;
  P->root = NULL;
  if (P->nodes) {
    for (i = 0; i < P->nnodes; i++) fav_schema_freenode(P->nodes[i]);
    free(P->nodes);
  }
  P->nodes = NULL;
  P->nnodes = P->cap = 0;
  if (P->re) {
    for (i = 0; i < P->nre; i++) {
      pcre2_code_free(P->re[i].code);
      free(P->re[i].src);
    }
    free(P->re);
  }
  P->re = NULL;
  P->nre = P->recap = 0;
  for (i = 0; i < 4; i++) {
    if (P->idna[i]) pcre2_code_free(P->idna[i]);
    P->idna[i] = NULL;
  }
  if (P->md) pcre2_match_data_free(P->md);
  if (P->mctx) pcre2_match_context_free(P->mctx);
  if (P->cctx) pcre2_compile_context_free(P->cctx);
  P->md = NULL;
  P->mctx = NULL;
  P->cctx = NULL;
}

/* Makes a node owned by P, with "absent" bounds. Can raise (memory). */
fav_node *fav_schema_newnode(lua_State *L, fav_prog *P) {
  fav_node *n;
  if (P->nnodes == P->cap) {
    int ncap = P->cap ? P->cap * 2 : 16;
    fav_node **p = (fav_node **)realloc(P->nodes, (size_t)ncap * sizeof *p);
    if (p == NULL) luaL_error(L, "favcrm.schema: out of memory");
    P->nodes = p;
    P->cap = ncap;
  }
  n = (fav_node *)fav_schema_alloc(L, 1, sizeof *n);
  P->nodes[P->nnodes++] = n;
  n->pattern = -1;
  n->maxlen = n->maxitems = n->maxprops = n->maxcontains = (size_t)-1;
  n->mincontains = 1;
  return n;
}

/* ------------------------------------------------------------------ */
/* Compile                                                              */
/* ------------------------------------------------------------------ */
/* Raises an invalid_schema error object {code, message = "invalid schema
 * at <path>: <text>", schema_path = <loc>/<kw>} (util.h's fav_pusherror). */
int fav_schema_bad(fav_cc *c, const char *loc, const char *kw, const char *fmt, ...) {
  lua_State *L = c->L;
  const char *path, *text;
  va_list ap;
  luaL_checkstack(L, 8, NULL);
  if (kw) lua_pushfstring(L, "%s/%s", loc, kw);
  else lua_pushstring(L, loc);
  path = lua_tostring(L, -1);
  va_start(ap, fmt);
  text = lua_pushvfstring(L, fmt, ap);
  va_end(ap);
  fav_pusherror(L, FAV_EINVALID_SCHEMA, "invalid schema at %s: %s", *path ? path : "/", text);
  lua_pushvalue(L, -3);
  lua_setfield(L, -2, "schema_path");
  return lua_error(L);
}

/* Reads a non-negative integer keyword value at the top. */
static size_t fav_schema_count(fav_cc *c, const char *loc, const char *kw) {
  lua_State *L = c->L;
  lua_Number x;
  if (lua_type(L, -1) != LUA_TNUMBER) fav_schema_bad(c, loc, kw, "%s must be a non-negative integer", kw);
  x = lua_tonumber(L, -1);
  if (!(x >= 0) || x != floor(x)) fav_schema_bad(c, loc, kw, "%s must be a non-negative integer", kw);
  if (x >= 1.8e19) return (size_t)-1;
  return (size_t)x;
}

static double fav_schema_number(fav_cc *c, const char *loc, const char *kw) {
  if (lua_type(c->L, -1) != LUA_TNUMBER) fav_schema_bad(c, loc, kw, "%s must be a number", kw);
  return (double)lua_tonumber(c->L, -1);
}

static unsigned fav_schema_typename(fav_cc *c, const char *loc, int i) {
  static const char *const names[] = {"null", "boolean", "integer", "number", "string", "array", "object", NULL};
  static const unsigned bits[] = {FT_NULL, FT_BOOL, FT_INT, FT_NUM, FT_STR, FT_ARR, FT_OBJ};
  const char *s;
  int k;
  if (lua_type(c->L, i) != LUA_TSTRING) fav_schema_bad(c, loc, "type", "type names must be strings");
  s = lua_tostring(c->L, i);
  for (k = 0; names[k]; k++)
    if (strcmp(s, names[k]) == 0) return bits[k];
  return fav_schema_bad(c, loc, "type", "unknown type \"%s\"", s), 0;
}

/* ECMA-262 long Unicode property names PCRE2 10.42 does not know, mapped to
 * its short forms. */
static const char *const fav_schema_props[] = {
  "Letter", "L", "Cased_Letter", "LC", "Uppercase_Letter", "Lu", "Lowercase_Letter", "Ll",
  "Titlecase_Letter", "Lt", "Modifier_Letter", "Lm", "Other_Letter", "Lo", "Mark", "M",
  "Combining_Mark", "M", "Nonspacing_Mark", "Mn", "Spacing_Mark", "Mc", "Enclosing_Mark", "Me",
  "Number", "N", "Decimal_Number", "Nd", "digit", "Nd", "Letter_Number", "Nl", "Other_Number", "No",
  "Punctuation", "P", "punct", "P", "Connector_Punctuation", "Pc", "Dash_Punctuation", "Pd",
  "Open_Punctuation", "Ps", "Close_Punctuation", "Pe", "Initial_Punctuation", "Pi",
  "Final_Punctuation", "Pf", "Other_Punctuation", "Po", "Symbol", "S", "Math_Symbol", "Sm",
  "Currency_Symbol", "Sc", "Modifier_Symbol", "Sk", "Other_Symbol", "So", "Separator", "Z",
  "Space_Separator", "Zs", "Line_Separator", "Zl", "Paragraph_Separator", "Zp", "Other", "C",
  "Control", "Cc", "cntrl", "Cc", "Format", "Cf", "Surrogate", "Cs", "Private_Use", "Co",
  "Unassigned", "Cn", NULL
};

/* Pushes the pattern at the top rewritten for PCRE2: \p{Long_Name},
 * \p{gc=X}, \p{General_Category=X}, \p{sc=X} and \p{Script=X} become
 * names PCRE2 knows. Other text is copied unchanged. */
static void fav_schema_ecma(lua_State *L) {
  size_t n, i = 0;
  const char *s = lua_tolstring(L, -1, &n);
  luaL_Buffer b;
  luaL_buffinit(L, &b);
  while (i < n) {
    if (s[i] == '\\' && i + 1 < n && (s[i + 1] == 'p' || s[i + 1] == 'P') && i + 2 < n && s[i + 2] == '{') {
      const char *e = memchr(s + i + 3, '}', n - i - 3);
      if (e) {
        const char *name = s + i + 3, *eq;
        size_t nl = (size_t)(e - name);
        int k;
        eq = memchr(name, '=', nl);
        if (eq) {
          nl -= (size_t)(eq + 1 - name);
          name = eq + 1;
        }
        luaL_addlstring(&b, s + i, 3);
        for (k = 0; fav_schema_props[k]; k += 2) {
          if (strlen(fav_schema_props[k]) == nl && memcmp(fav_schema_props[k], name, nl) == 0) break;
        }
        if (fav_schema_props[k]) luaL_addstring(&b, fav_schema_props[k + 1]);
        else luaL_addlstring(&b, name, nl);
        luaL_addchar(&b, '}');
        i = (size_t)(e - s) + 1;
        continue;
      }
    }
    if (s[i] == '\\' && i + 1 < n) {
      luaL_addlstring(&b, s + i, 2);
      i += 2;
      continue;
    }
    luaL_addchar(&b, s[i]);
    i++;
  }
  luaL_pushresult(&b);
}

/* Compiles the regex at the top (a string) into P->re; returns its index. */
static int fav_schema_regex(fav_cc *c, const char *loc, const char *kw) {
  lua_State *L = c->L;
  fav_prog *P = c->P;
  size_t n;
  const char *src;
  int err, i;
  PCRE2_SIZE off;
  pcre2_code *code;
  if (lua_type(L, -1) != LUA_TSTRING) fav_schema_bad(c, loc, kw, "%s must be a string", kw);
  fav_schema_ecma(L);
  src = lua_tolstring(L, -1, &n);
  if (P->nre == P->recap) {
    int ncap = P->recap ? P->recap * 2 : 4;
    fav_re *p = (fav_re *)realloc(P->re, (size_t)ncap * sizeof *p);
    if (p == NULL) luaL_error(L, "favcrm.schema: out of memory");
    P->re = p;
    P->recap = ncap;
  }
  err = fav_schema_pcre(P);
  if (err == FAV_PCRE2_NOMEM) luaL_error(L, "favcrm.schema: out of memory");
  if (err != 0) fav_schema_bad(c, loc, kw, "%s", fav_pcre2_error());
  code = pcre2_compile((PCRE2_SPTR)src, n, PCRE2_UTF | PCRE2_ALT_BSUX, &err, &off, P->cctx);
  if (code == NULL) {
    PCRE2_UCHAR msg[200];
    pcre2_get_error_message(err, msg, sizeof msg);
    fav_schema_bad(c, loc, kw, "invalid regular expression \"%s\": %s at offset %d", src, (const char *)msg,
                   (int)off);
  }
  i = P->nre++;
  P->re[i].code = code;
  P->re[i].src = NULL;
  P->re[i].jit = pcre2_jit_compile(code, PCRE2_JIT_COMPLETE) == 0;
  lua_pop(L, 1); /* the rewritten pattern: keep the original for messages */
  src = lua_tolstring(L, -1, &n);
  P->re[i].src = fav_schema_strdup(L, src, n);
  return i;
}

/* Stores the value at the top in the constants table; returns its index. */
static int fav_schema_const(fav_cc *c) {
  lua_pushvalue(c->L, -1);
  lua_rawseti(c->L, c->K, ++c->nk);
  return c->nk;
}

/* Child schema helpers: the schema value is at the top; makes (or finds)
 * its node with loc = LOC/kw[/key|/i]. Pops nothing. */
static fav_node *fav_schema_child(fav_cc *c, int LOC, int B, int draft, fav_node *res, int depth, const char *kw,
                                  const char *key, size_t klen, lua_Integer i) {
  lua_State *L = c->L;
  fav_node *n;
  int v = lua_gettop(L);
  if (lua_type(L, v) != LUA_TTABLE && lua_type(L, v) != LUA_TBOOLEAN)
    fav_schema_bad(c, lua_tostring(L, LOC), kw, "%s must hold schemas (objects or booleans)", kw);
  fav_schema_pushloc(L, LOC, kw, key, klen, i);
  n = fav_schema_node_for(c, v, B, v + 1, draft, res, depth + 1, kw);
  lua_settop(L, v);
  return n;
}

/* Compiles an array of schemas (at the top) into a node array. */
static fav_node **fav_schema_children(fav_cc *c, int LOC, int B, int draft, fav_node *res, int depth, const char *kw,
                                      fav_node ***slot, int *count) {
  lua_State *L = c->L;
  int t = lua_gettop(L), i, n;
  const char *loc = lua_tostring(L, LOC);
  if (!fav_schema_isarr(L, t)) fav_schema_bad(c, loc, kw, "%s must be an array of schemas", kw);
  n = (int)lua_rawlen(L, t);
  if (n == 0 && strcmp(kw, "prefixItems") != 0 && strcmp(kw, "items") != 0)
    fav_schema_bad(c, loc, kw, "%s must not be empty", kw);
  *slot = (fav_node **)fav_schema_alloc(L, (size_t)n, sizeof(fav_node *));
  *count = n;
  for (i = 0; i < n; i++) {
    lua_rawgeti(L, t, i + 1);
    (*slot)[i] = fav_schema_child(c, LOC, B, draft, res, depth, kw, NULL, 0, i);
    lua_pop(L, 1);
  }
  return *slot;
}

static int fav_schema_pentcmp(const void *a, const void *b) {
  const fav_pent *x = (const fav_pent *)a, *y = (const fav_pent *)b;
  int r = (x->req < 0) - (y->req < 0); /* required first */
  if (r) return r;
  r = memcmp(x->name, y->name, x->len < y->len ? x->len : y->len);
  return r ? r : (x->len > y->len) - (x->len < y->len);
}

static void fav_schema_addkey(fav_node *n, const char *name, size_t len, fav_node *node, int req, lua_State *L) {
  int i;
  for (i = 0; i < n->nkeys; i++) {
    if (n->keys[i].len == len && memcmp(n->keys[i].name, name, len) == 0) {
      if (node) n->keys[i].node = node;
      if (req >= 0) n->keys[i].req = req;
      return;
    }
  }
  i = n->nkeys;
  n->keys[i].name = fav_schema_strdup(L, name, len);
  n->nkeys++;
  n->keys[i].len = len;
  n->keys[i].h = fav_schema_hash(name, len);
  n->keys[i].node = node;
  n->keys[i].req = req;
}

/* dependentRequired-style list at the top -> d (names + lens). */
static void fav_schema_strlist(fav_cc *c, const char *loc, const char *kw, fav_dep *d) {
  lua_State *L = c->L;
  int t = lua_gettop(L), i, n;
  if (!fav_schema_isarr(L, t)) fav_schema_bad(c, loc, kw, "%s must be an array of strings", kw);
  n = (int)lua_rawlen(L, t);
  d->names = (char **)fav_schema_alloc(L, (size_t)n, sizeof(char *));
  d->lens = (size_t *)fav_schema_alloc(L, (size_t)n, sizeof(size_t));
  for (i = 0; i < n; i++) {
    size_t l;
    const char *s;
    lua_rawgeti(L, t, i + 1);
    if (lua_type(L, -1) != LUA_TSTRING) fav_schema_bad(c, loc, kw, "%s must be an array of strings", kw);
    s = lua_tolstring(L, -1, &l);
    d->names[i] = fav_schema_strdup(L, s, l);
    d->lens[i] = l;
    d->n = i + 1;
    lua_pop(L, 1);
  }
}

/* One node being built: what fav_build_head reads from the worklist entry
 * and every fav_build_* keyword reader uses. V, B and LOC are stack slots
 * (the schema, its base URI, its JSON pointer) valid until
 * fav_schema_build returns. */
typedef struct fav_build {
  fav_cc *c;
  fav_node *n;   /* the node being filled */
  fav_node *res; /* the schema resource it belongs to */
  int V, B, LOC;
  int draft, depth, isres;
  const char *loc; /* n->loc */
} fav_build;

/* Reads the worklist entry at slots e+1..e+7 into b and pushes what the
 * other builders index (the schema V, its base URI B and location LOC).
 * Finishes a boolean schema itself and returns 1 then; else fills the
 * node's res, draft and loc and returns 0. Raises (invalid schema, memory). */
static int fav_build_head(fav_cc *c, int e, fav_build *b) {
  lua_State *L = c->L;
  fav_node *n, *res;
  int V, B, LOC, draft, depth, isres = 0, t;
  const char *loc;
  luaL_checkstack(L, 30, "schema too deep");
  lua_rawgeti(L, c->wl, e + 1);
  n = (fav_node *)lua_touserdata(L, -1);
  lua_rawgeti(L, c->wl, e + 2);
  V = lua_gettop(L);
  lua_rawgeti(L, c->wl, e + 3);
  B = lua_gettop(L);
  lua_rawgeti(L, c->wl, e + 4);
  LOC = lua_gettop(L);
  lua_rawgeti(L, c->wl, e + 5);
  draft = (int)lua_tointeger(L, -1);
  lua_rawgeti(L, c->wl, e + 6);
  res = (fav_node *)lua_touserdata(L, -1);
  lua_rawgeti(L, c->wl, e + 7);
  depth = (int)lua_tointeger(L, -1);
  lua_pop(L, 3);
  if (lua_type(L, V) == LUA_TBOOLEAN) {
    n->boolean = lua_toboolean(L, V) ? 1 : 2;
    n->loc = fav_schema_strdup(L, lua_tostring(L, LOC), lua_rawlen(L, LOC));
    n->res = res;
    return 1;
  }
  if (lua_type(L, V) != LUA_TTABLE)
    fav_schema_bad(c, lua_tostring(L, LOC), NULL, "a schema must be an object or a boolean, got %s",
                   luaL_typename(L, V));
  if (depth > c->maxdepth)
    fav_schema_bad(c, lua_tostring(L, LOC), NULL, "schema nesting exceeds %d levels", c->maxdepth);
  lua_pushvalue(L, V);
  lua_rawget(L, c->info);
  if (lua_istable(L, -1)) {
    t = lua_gettop(L);
    lua_rawgeti(L, t, 1);
    B = lua_gettop(L);
    lua_rawgeti(L, t, 2);
    LOC = lua_gettop(L);
    lua_rawgeti(L, t, 4);
    draft = (int)lua_tointeger(L, -1);
    lua_pop(L, 1);
    lua_rawgeti(L, t, 3);
    if (lua_rawequal(L, -1, V)) {
      isres = 1;
      res = n;
    } else {
      res = fav_schema_node_for(c, lua_gettop(L), B, LOC, draft, res, depth, NULL);
    }
    lua_pop(L, 1);
  } else {
    draft = fav_schema_dialect(c, V, draft);
    lua_pop(L, 1);
    if (res == NULL) {
      isres = 1;
      res = n;
    }
  }
  n->res = res;
  n->draft = (unsigned char)draft;
  loc = lua_tostring(L, LOC);
  n->loc = fav_schema_strdup(L, loc, lua_rawlen(L, LOC));
  loc = n->loc;

  b->c = c;
  b->n = n;
  b->res = res;
  b->V = V;
  b->B = B;
  b->LOC = LOC;
  b->draft = draft;
  b->depth = depth;
  b->isres = isres;
  b->loc = loc;
  return 0;
}

/* A 2020-12 resource root's $dynamicAnchor list, and the node's own
 * $dynamicAnchor. Stack-neutral; raises (invalid schema, memory). */
static void fav_build_dynamic(fav_build *b) {
  fav_cc *c = b->c;
  lua_State *L = b->c->L;
  fav_node *n = b->n;
  fav_node *res = b->res;
  int V = b->V, B = b->B, LOC = b->LOC, draft = b->draft, depth = b->depth, isres = b->isres;
  int top = lua_gettop(L);
  /* $dynamicAnchor list of a resource root */
  if (isres && draft != 7) {
    lua_pushvalue(L, B);
    lua_rawget(L, c->dyn);
    if (lua_istable(L, -1)) {
      int d = lua_gettop(L), cnt = 0;
      lua_pushnil(L);
      while (lua_next(L, d)) {
        cnt++;
        lua_pop(L, 1);
      }
      n->dyn = (fav_dyn *)fav_schema_alloc(L, (size_t)cnt, sizeof(fav_dyn));
      lua_pushnil(L);
      while (lua_next(L, d)) {
        size_t l;
        const char *name = lua_tolstring(L, -2, &l);
        fav_node *dn = fav_schema_node_for(c, lua_gettop(L), B, LOC, draft, res, depth, NULL);
        n->dyn[n->ndyn].name = fav_schema_strdup(L, name, l);
        n->dyn[n->ndyn].node = dn;
        n->ndyn++;
        lua_pop(L, 1);
      }
    }
    lua_pop(L, 1);
  }
  if (draft != 7) {
    if (fav_schema_field(L, V, "$dynamicAnchor") == LUA_TSTRING)
      n->dynanchor = fav_schema_strdup(L, lua_tostring(L, -1), lua_rawlen(L, -1));
    lua_pop(L, 1);
  }
  lua_settop(L, top);
}

/* $ref and $dynamicRef. Returns 1 when the node is complete (draft-07:
 * siblings of $ref are ignored), else 0. Stack-neutral; raises (invalid
 * schema, memory). */
static int fav_build_refs(fav_build *b) {
  fav_cc *c = b->c;
  lua_State *L = b->c->L;
  fav_node *n = b->n;
  fav_node *res = b->res;
  int V = b->V, B = b->B, draft = b->draft, depth = b->depth;
  const char *loc = b->loc;
  int top = lua_gettop(L);
  /* $ref */
  if (fav_schema_field(L, V, "$ref") != LUA_TNIL) {
    int tt, r = lua_gettop(L);
    if (lua_type(L, r) != LUA_TSTRING) fav_schema_bad(c, loc, "$ref", "$ref must be a string");
    n->ref = fav_schema_ref(c, r, B, draft, res, depth, loc, "$ref", &tt);
    n->ref_str = fav_schema_strdup(L, lua_tostring(L, r), lua_rawlen(L, r));
    n->cat |= CAT_APP;
    lua_settop(L, r);
    if (draft == 7) { /* draft-07: siblings of $ref are ignored */
      lua_settop(L, top);
      return 1;
    }
  }
  lua_pop(L, 1);
  if (draft != 7 && fav_schema_field(L, V, "$dynamicRef") != LUA_TNIL) {
    int tt, r = lua_gettop(L);
    const char *rs, *h;
    if (lua_type(L, r) != LUA_TSTRING) fav_schema_bad(c, loc, "$dynamicRef", "$dynamicRef must be a string");
    n->dynref = fav_schema_ref(c, r, B, draft, res, depth, loc, "$dynamicRef", &tt);
    rs = lua_tostring(L, r);
    n->dynref_str = fav_schema_strdup(L, rs, lua_rawlen(L, r));
    h = strchr(rs, '#');
    if (h && h[1] && h[1] != '/') {
      n->dynref_name = fav_schema_strdup(L, h + 1, strlen(h + 1));
      if (lua_type(L, tt) == LUA_TTABLE && fav_schema_field(L, tt, "$dynamicAnchor") == LUA_TSTRING &&
          strcmp(lua_tostring(L, -1), h + 1) == 0)
        n->dynbook = 1;
    }
    n->cat |= CAT_APP;
    lua_settop(L, r);
  }
  lua_pop(L, 1);
  lua_settop(L, top);
  return 0;
}

/* type, enum and const. Stack-neutral; raises (invalid schema, memory). */
static void fav_build_type(fav_build *b) {
  fav_cc *c = b->c;
  lua_State *L = b->c->L;
  fav_node *n = b->n;
  int V = b->V;
  const char *loc = b->loc;
  int top = lua_gettop(L), t, i;
  /* type */
  t = fav_schema_field(L, V, "type");
  if (t == LUA_TSTRING) {
    n->types = fav_schema_typename(c, loc, -1);
  } else if (t == LUA_TTABLE) {
    int a = lua_gettop(L);
    if (!fav_schema_isarr(L, a) || lua_rawlen(L, a) == 0)
      fav_schema_bad(c, loc, "type", "type must be a string or a non-empty array of strings");
    for (i = 1; i <= (int)lua_rawlen(L, a); i++) {
      lua_rawgeti(L, a, i);
      n->types |= fav_schema_typename(c, loc, -1);
      lua_pop(L, 1);
    }
  } else if (t != LUA_TNIL) {
    fav_schema_bad(c, loc, "type", "type must be a string or an array of strings");
  }
  lua_pop(L, 1);
  if (n->types & FT_NUM) n->types |= FT_INT;

  /* enum, const */
  if (fav_schema_field(L, V, "enum") != LUA_TNIL) {
    int a = lua_gettop(L), scalars = 0;
    if (!fav_schema_isarr(L, a)) fav_schema_bad(c, loc, "enum", "enum must be an array");
    n->enum_k = fav_schema_const(c);
    lua_newtable(L);
    n->nenumptr = (int)lua_rawlen(L, a) <= FAV_ENUM_PTRS ? 0 : -1;
    for (i = 1; i <= (int)lua_rawlen(L, a); i++) {
      lua_rawgeti(L, a, i);
      if (n->nenumptr >= 0) {
        size_t sl;
        /* the member as the array anchored at enum_k holds it: same object */
        if (lua_type(L, -1) == LUA_TSTRING && (lua_tolstring(L, -1, &sl), sl <= FAV_SHORTSTR))
          n->enumptr[n->nenumptr++] = lua_tostring(L, -1);
        else
          n->nenumptr = -1;
      }
      if (lua_type(L, -1) != LUA_TTABLE && !(lua_type(L, -1) == LUA_TNUMBER && lua_tonumber(L, -1) != lua_tonumber(L, -1))) {
        lua_pushboolean(L, 1);
        lua_rawset(L, -3);
        scalars++;
      } else {
        lua_pop(L, 1);
      }
    }
    if (scalars) n->enumset_k = fav_schema_const(c);
    lua_pop(L, 1);
  }
  lua_pop(L, 1);
  lua_pushliteral(L, "const");
  lua_rawget(L, V);
  if (!lua_isnil(L, -1)) n->const_k = fav_schema_const(c);
  lua_pop(L, 1);
  lua_settop(L, top);
}

/* minimum, maximum, exclusiveMinimum/Maximum (draft-04 booleans
 * tolerated), multipleOf. Stack-neutral; raises (invalid schema). */
static void fav_build_number(fav_build *b) {
  fav_cc *c = b->c;
  lua_State *L = b->c->L;
  fav_node *n = b->n;
  int V = b->V;
  const char *loc = b->loc;
  int top = lua_gettop(L), t;
  /* numbers */
  if (fav_schema_field(L, V, "minimum") != LUA_TNIL) n->minimum = fav_schema_number(c, loc, "minimum"), n->numkw |= NK_MIN;
  lua_pop(L, 1);
  if (fav_schema_field(L, V, "maximum") != LUA_TNIL) n->maximum = fav_schema_number(c, loc, "maximum"), n->numkw |= NK_MAX;
  lua_pop(L, 1);
  t = fav_schema_field(L, V, "exclusiveMinimum");
  if (t == LUA_TBOOLEAN) { /* draft-04 style, tolerated */
    if (lua_toboolean(L, -1) && (n->numkw & NK_MIN)) n->numkw = (n->numkw & ~NK_MIN) | NK_XMIN, n->exmin = n->minimum;
  } else if (t != LUA_TNIL) {
    n->exmin = fav_schema_number(c, loc, "exclusiveMinimum"), n->numkw |= NK_XMIN;
  }
  lua_pop(L, 1);
  t = fav_schema_field(L, V, "exclusiveMaximum");
  if (t == LUA_TBOOLEAN) {
    if (lua_toboolean(L, -1) && (n->numkw & NK_MAX)) n->numkw = (n->numkw & ~NK_MAX) | NK_XMAX, n->exmax = n->maximum;
  } else if (t != LUA_TNIL) {
    n->exmax = fav_schema_number(c, loc, "exclusiveMaximum"), n->numkw |= NK_XMAX;
  }
  lua_pop(L, 1);
  if (fav_schema_field(L, V, "multipleOf") != LUA_TNIL) {
    n->mult = fav_schema_number(c, loc, "multipleOf");
    if (!(n->mult > 0)) fav_schema_bad(c, loc, "multipleOf", "multipleOf must be greater than 0");
    n->numkw |= NK_MULT;
  }
  lua_pop(L, 1);
  if (n->numkw) n->cat |= CAT_NUM;
  lua_settop(L, top);
}

/* minLength, maxLength, pattern, format. Stack-neutral; raises (invalid
 * schema, memory, a bad regex). */
static void fav_build_string(fav_build *b) {
  fav_cc *c = b->c;
  lua_State *L = b->c->L;
  fav_node *n = b->n;
  int V = b->V;
  const char *loc = b->loc;
  int top = lua_gettop(L), t, i;
  /* strings */
  if (fav_schema_field(L, V, "minLength") != LUA_TNIL) n->minlen = fav_schema_count(c, loc, "minLength");
  lua_pop(L, 1);
  if (fav_schema_field(L, V, "maxLength") != LUA_TNIL) n->maxlen = fav_schema_count(c, loc, "maxLength");
  lua_pop(L, 1);
  if (fav_schema_field(L, V, "pattern") != LUA_TNIL) {
    n->pattern = fav_schema_regex(c, loc, "pattern");
    /* the pattern error's reason and schema_path never change: built once
     * here, so a failing instance only fetches them */
    lua_pushfstring(L, "does not match the pattern %s", c->P->re[n->pattern].src);
    n->pat_why_k = fav_schema_const(c);
    lua_pushfstring(L, "%s/pattern", loc);
    n->pat_spath_k = fav_schema_const(c);
    lua_pop(L, 2);
  }
  lua_pop(L, 1);
  t = fav_schema_field(L, V, "format");
  if (t == LUA_TSTRING) {
    const char *f = lua_tostring(L, -1);
    for (i = 1; fav_schema_fmt_names[i]; i++)
      if (strcmp(f, fav_schema_fmt_names[i]) == 0) n->format = i;
  } else if (t != LUA_TNIL) {
    fav_schema_bad(c, loc, "format", "format must be a string");
  }
  lua_pop(L, 1);
  n->strutf = n->minlen > 0 || n->maxlen != (size_t)-1 || n->pattern >= 0;
  if (n->strutf || n->format) n->cat |= CAT_STR;
  lua_settop(L, top);
}

/* prefixItems, items, additionalItems, contains, min/maxContains,
 * min/maxItems, uniqueItems, unevaluatedItems. Stack-neutral; raises
 * (invalid schema, memory). */
static void fav_build_array(fav_build *b) {
  fav_cc *c = b->c;
  lua_State *L = b->c->L;
  fav_node *n = b->n;
  fav_node *res = b->res;
  int V = b->V, B = b->B, LOC = b->LOC, draft = b->draft, depth = b->depth;
  const char *loc = b->loc;
  int top = lua_gettop(L), t;
  /* arrays */
  {
    int hasprefix = 0;
    if (draft != 7 && fav_schema_field(L, V, "prefixItems") != LUA_TNIL) {
      fav_schema_children(c, LOC, B, draft, res, depth, "prefixItems", &n->prefix, &n->nprefix);
      hasprefix = 1;
    }
    if (draft != 7) lua_pop(L, 1);
    t = fav_schema_field(L, V, "items");
    if (t == LUA_TTABLE && fav_schema_isarr(L, -1) && lua_rawlen(L, -1) > 0 && !hasprefix) {
      fav_schema_children(c, LOC, B, draft, res, depth, "items", &n->prefix, &n->nprefix);
      lua_pop(L, 1);
      if (fav_schema_field(L, V, "additionalItems") != LUA_TNIL) {
        n->items = fav_schema_child(c, LOC, B, draft, res, depth, "additionalItems", NULL, 0, -1);
        n->items_kw = "additionalItems";
      }
    } else if (t != LUA_TNIL) {
      n->items = fav_schema_child(c, LOC, B, draft, res, depth, "items", NULL, 0, -1);
      n->items_kw = "items";
    }
    lua_pop(L, 1);
  }
  if (fav_schema_field(L, V, "contains") != LUA_TNIL)
    n->contains = fav_schema_child(c, LOC, B, draft, res, depth, "contains", NULL, 0, -1);
  lua_pop(L, 1);
  if (draft != 7 && n->contains) {
    if (fav_schema_field(L, V, "minContains") != LUA_TNIL) n->mincontains = fav_schema_count(c, loc, "minContains");
    lua_pop(L, 1);
    if (fav_schema_field(L, V, "maxContains") != LUA_TNIL) n->maxcontains = fav_schema_count(c, loc, "maxContains");
    lua_pop(L, 1);
  }
  if (fav_schema_field(L, V, "minItems") != LUA_TNIL) n->minitems = fav_schema_count(c, loc, "minItems");
  lua_pop(L, 1);
  if (fav_schema_field(L, V, "maxItems") != LUA_TNIL) n->maxitems = fav_schema_count(c, loc, "maxItems");
  lua_pop(L, 1);
  t = fav_schema_field(L, V, "uniqueItems");
  if (t == LUA_TBOOLEAN) n->unique = (unsigned char)lua_toboolean(L, -1);
  else if (t != LUA_TNIL) fav_schema_bad(c, loc, "uniqueItems", "uniqueItems must be a boolean");
  lua_pop(L, 1);
  if (draft != 7) {
    if (fav_schema_field(L, V, "unevaluatedItems") != LUA_TNIL)
      n->uitems = fav_schema_child(c, LOC, B, draft, res, depth, "unevaluatedItems", NULL, 0, -1);
    lua_pop(L, 1);
  }
  if (n->nprefix || n->items || n->contains || n->minitems || n->maxitems != (size_t)-1 || n->unique)
    n->cat |= CAT_ARR;
  lua_settop(L, top);
}

/* properties and required, and the hash table of the names they know.
 * Stack-neutral; raises (invalid schema, memory). */
static void fav_build_properties(fav_build *b) {
  fav_cc *c = b->c;
  lua_State *L = b->c->L;
  fav_node *n = b->n;
  fav_node *res = b->res;
  int V = b->V, B = b->B, LOC = b->LOC, draft = b->draft, depth = b->depth;
  const char *loc = b->loc;
  int top = lua_gettop(L), i;
  /* objects */
  int np = 0, nr = 0, pt = 0, rt = 0;
  if (fav_schema_field(L, V, "properties") != LUA_TNIL) {
    pt = lua_gettop(L);
    if (lua_type(L, pt) != LUA_TTABLE) fav_schema_bad(c, loc, "properties", "properties must be an object");
    lua_pushnil(L);
    while (lua_next(L, pt)) {
      np++;
      lua_pop(L, 1);
    }
  }
  if (fav_schema_field(L, V, "required") != LUA_TNIL) {
    rt = lua_gettop(L);
    if (!fav_schema_isarr(L, rt)) fav_schema_bad(c, loc, "required", "required must be an array of strings");
    nr = (int)lua_rawlen(L, rt);
  }
  if (np + nr > 0) n->keys = (fav_pent *)fav_schema_alloc(L, (size_t)(np + nr), sizeof(fav_pent));
  if (pt) {
    lua_pushnil(L);
    while (lua_next(L, pt)) {
      size_t kl;
      const char *k;
      fav_node *cn;
      if (lua_type(L, -2) != LUA_TSTRING) fav_schema_bad(c, loc, "properties", "property names must be strings");
      k = lua_tolstring(L, -2, &kl);
      cn = fav_schema_child(c, LOC, B, draft, res, depth, "properties", k, kl, -1);
      fav_schema_addkey(n, k, kl, cn, -1, L);
      lua_pop(L, 1);
    }
  }
  if (rt) {
    n->req = (char **)fav_schema_alloc(L, (size_t)nr, sizeof(char *));
    for (i = 0; i < nr; i++) {
      size_t kl;
      const char *k;
      lua_rawgeti(L, rt, i + 1);
      if (lua_type(L, -1) != LUA_TSTRING) fav_schema_bad(c, loc, "required", "required must be an array of strings");
      k = lua_tolstring(L, -1, &kl);
      n->req[i] = fav_schema_strdup(L, k, kl);
      n->nreq = i + 1;
      if (nr <= 64) fav_schema_addkey(n, k, kl, NULL, i, L);
      lua_pop(L, 1);
    }
    lua_pushvalue(L, rt);
    n->req_k = fav_schema_const(c);
    lua_pop(L, 1);
  }
  if (rt) lua_pop(L, 1);
  else lua_pop(L, 1);
  lua_pop(L, 1); /* properties (or nil) */
  /* the order the by-key walk looks them up in: the required names first,
   * then the others, each by name (as ajv checks required before
   * properties). Not lua_next's order, which follows the hash seed that
   * Lua 5.4 draws per state: the properties looked up first (and the
   * first error of an instance with several) would change from run to run */
  if (n->nkeys > 1) qsort(n->keys, (size_t)n->nkeys, sizeof(fav_pent), fav_schema_pentcmp);
  if (n->nkeys) {
    uint32_t size = 4;
    while (size < (uint32_t)n->nkeys * 2) size <<= 1;
    n->ktab = (int *)fav_schema_alloc(L, size, sizeof(int));
    n->kmask = size - 1;
    for (i = 0; i < n->nkeys; i++) {
      uint32_t h = n->keys[i].h & n->kmask;
      while (n->ktab[h]) h = (h + 1) & n->kmask;
      n->ktab[h] = i + 1;
    }
  }
  lua_settop(L, top);
}

/* patternProperties, additionalProperties, propertyNames,
 * min/maxProperties. Stack-neutral; raises (invalid schema, memory). */
static void fav_build_object(fav_build *b) {
  fav_cc *c = b->c;
  lua_State *L = b->c->L;
  fav_node *n = b->n;
  fav_node *res = b->res;
  int V = b->V, B = b->B, LOC = b->LOC, draft = b->draft, depth = b->depth;
  const char *loc = b->loc;
  int top = lua_gettop(L);
  if (fav_schema_field(L, V, "patternProperties") != LUA_TNIL) {
    int pp = lua_gettop(L), cnt = 0;
    if (lua_type(L, pp) != LUA_TTABLE)
      fav_schema_bad(c, loc, "patternProperties", "patternProperties must be an object");
    lua_pushnil(L);
    while (lua_next(L, pp)) {
      cnt++;
      lua_pop(L, 1);
    }
    n->patre = (int *)fav_schema_alloc(L, (size_t)cnt, sizeof(int));
    n->patnodes = (fav_node **)fav_schema_alloc(L, (size_t)cnt, sizeof(fav_node *));
    lua_pushnil(L);
    while (lua_next(L, pp)) {
      size_t kl;
      const char *k;
      fav_node *cn;
      int re;
      if (lua_type(L, -2) != LUA_TSTRING) fav_schema_bad(c, loc, "patternProperties", "patterns must be strings");
      k = lua_tolstring(L, -2, &kl);
      cn = fav_schema_child(c, LOC, B, draft, res, depth, "patternProperties", k, kl, -1);
      lua_pushvalue(L, -2);
      re = fav_schema_regex(c, loc, "patternProperties");
      lua_pop(L, 1);
      n->patre[n->npat] = re;
      n->patnodes[n->npat] = cn;
      n->npat++;
      lua_pop(L, 1);
    }
  }
  lua_pop(L, 1);
  if (fav_schema_field(L, V, "additionalProperties") != LUA_TNIL) {
    n->addl = fav_schema_child(c, LOC, B, draft, res, depth, "additionalProperties", NULL, 0, -1);
    n->addl_false = lua_type(L, -1) == LUA_TBOOLEAN && !lua_toboolean(L, -1);
  }
  lua_pop(L, 1);
  if (fav_schema_field(L, V, "propertyNames") != LUA_TNIL)
    n->pnames = fav_schema_child(c, LOC, B, draft, res, depth, "propertyNames", NULL, 0, -1);
  lua_pop(L, 1);
  if (fav_schema_field(L, V, "minProperties") != LUA_TNIL) n->minprops = fav_schema_count(c, loc, "minProperties");
  lua_pop(L, 1);
  if (fav_schema_field(L, V, "maxProperties") != LUA_TNIL) n->maxprops = fav_schema_count(c, loc, "maxProperties");
  lua_pop(L, 1);
  lua_settop(L, top);
}

/* dependencies (draft-07, also read in 2020-12), dependentRequired,
 * dependentSchemas. Stack-neutral; raises (invalid schema, memory). */
static void fav_build_dependencies(fav_build *b) {
  fav_cc *c = b->c;
  lua_State *L = b->c->L;
  fav_node *n = b->n;
  fav_node *res = b->res;
  int V = b->V, B = b->B, LOC = b->LOC, draft = b->draft, depth = b->depth;
  const char *loc = b->loc;
  int top = lua_gettop(L);
  /* dependencies (draft-07, also read in 2020-12), dependentRequired,
   * dependentSchemas */
  static const char *const dk[] = {"dependencies", "dependentRequired", "dependentSchemas"};
  int d, nreq = 0, nsch = 0, tabs[3] = {0, 0, 0};
  for (d = 0; d < 3; d++) {
    if (d > 0 && draft == 7) break;
    if (fav_schema_field(L, V, dk[d]) == LUA_TTABLE) {
      tabs[d] = lua_gettop(L);
      lua_pushnil(L);
      while (lua_next(L, tabs[d])) {
        if (d == 1 || (d == 0 && lua_type(L, -1) == LUA_TTABLE && fav_schema_isarr(L, -1) &&
                       lua_rawlen(L, -1) > 0)) nreq++;
        else nsch++;
        lua_pop(L, 1);
      }
    } else if (!lua_isnil(L, -1)) {
      fav_schema_bad(c, loc, dk[d], "%s must be an object", dk[d]);
    }
  }
  if (nreq) n->depreq = (fav_dep *)fav_schema_alloc(L, (size_t)nreq, sizeof(fav_dep));
  if (nsch) n->depsch = (fav_dep *)fav_schema_alloc(L, (size_t)nsch, sizeof(fav_dep));
  for (d = 0; d < 3; d++) {
    if (!tabs[d]) continue;
    lua_pushnil(L);
    while (lua_next(L, tabs[d])) {
      size_t kl;
      const char *k;
      if (lua_type(L, -2) != LUA_TSTRING) fav_schema_bad(c, loc, dk[d], "%s keys must be strings", dk[d]);
      k = lua_tolstring(L, -2, &kl);
      if (d == 1 || (d == 0 && lua_type(L, -1) == LUA_TTABLE && fav_schema_isarr(L, -1) && lua_rawlen(L, -1) > 0)) {
        fav_dep *dp = &n->depreq[n->ndepreq];
        dp->name = fav_schema_strdup(L, k, kl);
        dp->len = kl;
        n->ndepreq++;
        n->depreq_kw = dk[d];
        fav_schema_strlist(c, loc, dk[d], dp);
      } else {
        fav_dep *dp = &n->depsch[n->ndepsch];
        fav_node *cn;
        if (d == 0 && lua_type(L, -1) == LUA_TTABLE && fav_schema_isarr(L, -1)) {
          lua_pop(L, 1);
          lua_pushboolean(L, 1); /* dependencies: [] requires nothing */
        }
        cn = fav_schema_child(c, LOC, B, draft, res, depth, dk[d], k, kl, -1);
        dp->name = fav_schema_strdup(L, k, kl);
        dp->len = kl;
        dp->node = cn;
        n->ndepsch++;
        n->depsch_kw = dk[d];
      }
      lua_pop(L, 1);
    }
  }
  lua_settop(L, top);
  lua_settop(L, top);
}

/* unevaluatedProperties and the node's object flags (set once every
 * object keyword is read). Stack-neutral; raises (invalid schema). */
static void fav_build_object_tail(fav_build *b) {
  fav_cc *c = b->c;
  lua_State *L = b->c->L;
  fav_node *n = b->n;
  fav_node *res = b->res;
  int V = b->V, B = b->B, LOC = b->LOC, draft = b->draft, depth = b->depth;
  int top = lua_gettop(L);
  if (draft != 7) {
    if (fav_schema_field(L, V, "unevaluatedProperties") != LUA_TNIL)
      n->uprops = fav_schema_child(c, LOC, B, draft, res, depth, "unevaluatedProperties", NULL, 0, -1);
    lua_pop(L, 1);
  }
  n->obj_iter = n->nkeys > 0 || n->npat || n->addl || n->pnames || n->minprops || n->maxprops != (size_t)-1;
  n->req_hashed = n->obj_iter && n->nreq > 0 && n->nreq <= 64;
  /* Only named keys matter (properties, required): validation can look
   * each one up instead of walking every key of the instance with
   * lua_next, as ajv does. Not when a name reads as a number (the instance
   * may hold it under a number key) or required has more than 64 names. */
  if (n->nkeys > 0) {
    int i, numeric = 0;
    uint32_t size = 4;
    /* the names as Lua strings in consecutive constant slots (keys_k + i),
     * which anchors the strings behind lstr: a lookup pushes its key with
     * one lua_rawgeti on the constants */
    for (i = 0; i < n->nkeys; i++) {
      lua_pushlstring(L, n->keys[i].name, n->keys[i].len);
      if (lua_isnumber(L, -1)) numeric = 1; /* a string that converts */
      n->keys[i].lstr = lua_tostring(L, -1);
#if FAV_KID_TOPOINTER
      n->keys[i].kid = lua_topointer(L, -1);
#else
      n->keys[i].kid = n->keys[i].lstr;
#endif
      if (i == 0) n->keys_k = c->nk + 1;
      lua_rawseti(L, c->K, ++c->nk);
    }
    while (size < (uint32_t)n->nkeys * 2) size <<= 1;
    n->ptab = (int *)fav_schema_alloc(L, size, sizeof(int));
    n->pmask = size - 1;
    for (i = 0; i < n->nkeys; i++) {
      uint32_t h = fav_schema_ptrhash(n->keys[i].kid) & n->pmask;
      while (n->ptab[h]) h = (h + 1) & n->pmask;
      n->ptab[h] = i + 1;
    }
    if (!numeric && !n->npat && !n->addl && !n->pnames && !n->minprops && n->maxprops == (size_t)-1 &&
        !n->uprops && (n->nreq == 0 || n->req_hashed))
      n->by_key = 1;
    /* the same with additionalProperties: false, where a key count (when
     * the Lua has table.nkeys: LuaJIT) tells that nothing else is there */
    if (!numeric && !n->npat && n->addl_false && !n->pnames && !n->minprops && n->maxprops == (size_t)-1 &&
        !n->uprops && (n->nreq == 0 || n->req_hashed))
      n->by_count = 1;
  }
  if (n->nkeys || n->npat || n->addl || n->pnames || n->minprops || n->maxprops != (size_t)-1 || n->nreq ||
      n->ndepreq || n->ndepsch)
    n->cat |= CAT_OBJ;
  lua_settop(L, top);
}

/* allOf, anyOf, oneOf, not, if/then/else, and the node's needs_kind flag
 * (set last: it reads every category). Stack-neutral; raises. */
static void fav_build_applicators(fav_build *b) {
  fav_cc *c = b->c;
  lua_State *L = b->c->L;
  fav_node *n = b->n;
  fav_node *res = b->res;
  int V = b->V, B = b->B, LOC = b->LOC, draft = b->draft, depth = b->depth;
  int top = lua_gettop(L);
  /* applicators */
  if (fav_schema_field(L, V, "allOf") != LUA_TNIL) fav_schema_children(c, LOC, B, draft, res, depth, "allOf", &n->allof, &n->nallof);
  lua_pop(L, 1);
  if (fav_schema_field(L, V, "anyOf") != LUA_TNIL) fav_schema_children(c, LOC, B, draft, res, depth, "anyOf", &n->anyof, &n->nanyof);
  lua_pop(L, 1);
  if (fav_schema_field(L, V, "oneOf") != LUA_TNIL) fav_schema_children(c, LOC, B, draft, res, depth, "oneOf", &n->oneof, &n->noneof);
  lua_pop(L, 1);
  if (fav_schema_field(L, V, "not") != LUA_TNIL) n->not_ = fav_schema_child(c, LOC, B, draft, res, depth, "not", NULL, 0, -1);
  lua_pop(L, 1);
  if (fav_schema_field(L, V, "if") != LUA_TNIL) {
    n->if_ = fav_schema_child(c, LOC, B, draft, res, depth, "if", NULL, 0, -1);
    lua_pop(L, 1);
    if (fav_schema_field(L, V, "then") != LUA_TNIL) n->then_ = fav_schema_child(c, LOC, B, draft, res, depth, "then", NULL, 0, -1);
    lua_pop(L, 1);
    if (fav_schema_field(L, V, "else") != LUA_TNIL) n->else_ = fav_schema_child(c, LOC, B, draft, res, depth, "else", NULL, 0, -1);
  }
  lua_pop(L, 1);
  if (n->nallof || n->nanyof || n->noneof || n->not_ || n->if_) n->cat |= CAT_APP;
  n->needs_kind = (n->types & (FT_ARR | FT_OBJ)) != 0 || (n->cat & (CAT_ARR | CAT_OBJ)) != 0 || n->uitems ||
                  n->uprops;
  n->obj_only = !(n->types & FT_ARR) && !(n->cat & CAT_ARR) && !n->uitems && (n->cat & CAT_OBJ);
  n->leaf = !n->ref && !n->dynref && !(n->cat & ~(CAT_NUM | CAT_STR)) && !n->const_k && !n->uprops && !n->uitems &&
            (!n->enum_k || n->enumset_k) && !(n->numkw & NK_MULT);
  lua_settop(L, top);
}

/* Builds node n from the worklist entry at slots e+1..e+7: one reader per
 * keyword family, in the order the evaluation relies on (object flags
 * after every object keyword, needs_kind last). Leaves the stack as found;
 * raises (invalid schema, memory, a remote resolver's error). */
void fav_schema_build(fav_cc *c, int e) {
  fav_build b;
  int top = lua_gettop(c->L);
  luaL_checkstack(c->L, 30, "schema too deep");
  if (fav_build_head(c, e, &b) == 0) {
    fav_build_dynamic(&b);
    if (fav_build_refs(&b) == 0) {
      fav_build_type(&b);
      fav_build_number(&b);
      fav_build_string(&b);
      fav_build_array(&b);
      fav_build_properties(&b);
      fav_build_object(&b);
      fav_build_dependencies(&b);
      fav_build_object_tail(&b);
      fav_build_applicators(&b);
    }
  }
  lua_settop(c->L, top);
}

/* schema.c: JSON Schema (draft-07 and 2020-12) compiled once into a tree of
 * C nodes (favcrm.Validator) that walks Lua values directly on the stack.
 *
 * Memory: the validator userdata is the fav_prog itself. Every node, string,
 * array and PCRE2 object is attached to it the moment it is allocated, so a
 * Lua error raised anywhere in compile (bad schema, out of memory, a remote
 * resolver that raises) leaks nothing: __gc (or the failure path right after
 * the protected compile) frees the half-built program. Validation allocates
 * nothing with malloc: its state lives on the C stack and in Lua values.
 *
 * Lua values as JSON: nil and cjson.null (light userdata NULL) are null; a
 * table whose keys are exactly 1..n is an array, any other non-empty table an
 * object, the empty table is both. Only raw access (lua_rawget*, lua_next)
 * touches instances and schemas. */
#define PCRE2_CODE_UNIT_WIDTH 8
#include "favcrm.h"

#include <pcre2.h>

#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define FAV_SCHEMA_MT "favcrm.Validator"
#define FAV_SCHEMA_DEPTH 200    /* default instance and schema nesting limit */
#define FAV_SCHEMA_DEPTH_MAX 500 /* largest opts.max_depth accepted */
#define FAV_SCHEMA_EVAL 1000    /* nested node evaluations (C stack bound) */
#define FAV_SCHEMA_MATCH_LIMIT 1000000

#if LUA_VERSION_NUM >= 504
#define fav_schema_setuv(L, i) lua_setiuservalue((L), (i), 1)
#define fav_schema_getuv(L, i) lua_getiuservalue((L), (i), 1)
#elif LUA_VERSION_NUM >= 502
#define fav_schema_setuv(L, i) lua_setuservalue((L), (i))
#define fav_schema_getuv(L, i) lua_getuservalue((L), (i))
#else
#define fav_schema_setuv(L, i) lua_setfenv((L), (i))
#define fav_schema_getuv(L, i) lua_getfenv((L), (i))
#endif

/* JSON types of an instance, as bits. An integral number is INT|NUM. */
#define FT_NULL 1u
#define FT_BOOL 2u
#define FT_INT 4u
#define FT_NUM 8u
#define FT_STR 16u
#define FT_ARR 32u
#define FT_OBJ 64u
#define FT_TAB 128u /* a table not classified (no keyword needed it) */
#define FT_BAD 256u /* not a JSON value */

/* which numeric keywords a node has */
#define NK_MIN 1u
#define NK_MAX 2u
#define NK_XMIN 4u
#define NK_XMAX 8u
#define NK_MULT 16u

/* keyword categories a node has */
#define CAT_NUM 1u
#define CAT_STR 2u
#define CAT_ARR 4u
#define CAT_OBJ 8u
#define CAT_APP 16u

enum {
  FMT_NONE, FMT_EMAIL, FMT_URI, FMT_URIREF, FMT_DATETIME, FMT_DATE, FMT_TIME,
  FMT_UUID, FMT_IPV4, FMT_IPV6, FMT_HOSTNAME, FMT_REGEX
};

static const char *const fav_schema_fmt_names[] = {
  "", "email", "uri", "uri-reference", "date-time", "date", "time", "uuid",
  "ipv4", "ipv6", "hostname", "regex", NULL
};
static const char *const fav_schema_fmt_nouns[] = {
  "", "e-mail address", "URI", "URI reference", "RFC 3339 date-time",
  "date (YYYY-MM-DD)", "RFC 3339 time", "UUID", "IPv4 address", "IPv6 address",
  "hostname", "regular expression"
};

typedef struct fav_node fav_node;

typedef struct fav_pent { /* a property name the node knows */
  char *name;
  size_t len;
  uint32_t h;
  fav_node *node; /* properties[name], or NULL */
  int req;        /* bit in the required set, or -1 */
} fav_pent;

typedef struct fav_dep { /* dependentRequired / dependentSchemas entry */
  char *name;
  size_t len;
  char **names;
  size_t *lens;
  int n;
  fav_node *node;
} fav_dep;

typedef struct fav_dyn {
  char *name;
  fav_node *node;
} fav_dyn;

struct fav_node {
  unsigned char boolean; /* 0 object schema, 1 true, 2 false */
  unsigned char draft;   /* 7 or 20 */
  unsigned char needs_kind, strutf, obj_iter, req_hashed, unique, dynbook;
  unsigned cat, types, numkw;
  const char *kw;  /* for boolean nodes: the keyword that holds them */
  char *loc;       /* JSON pointer of this schema ("" root) */
  fav_node *res;   /* schema resource this node belongs to */
  fav_node *ref;
  char *ref_str;
  fav_node *dynref;
  char *dynref_name, *dynref_str;
  char *dynanchor;
  fav_dyn *dyn;
  int ndyn;
  double minimum, maximum, exmin, exmax, mult;
  size_t minlen, maxlen;
  int pattern, format;
  fav_node **prefix;
  int nprefix;
  const char *items_kw;
  fav_node *items, *contains, *uitems;
  size_t mincontains, maxcontains, minitems, maxitems;
  fav_pent *keys;
  int nkeys, *ktab;
  uint32_t kmask;
  int *patre;
  fav_node **patnodes;
  int npat;
  fav_node *addl, *pnames, *uprops;
  char **req;
  int nreq, req_k;
  size_t minprops, maxprops;
  const char *depreq_kw, *depsch_kw;
  fav_dep *depreq, *depsch;
  int ndepreq, ndepsch;
  fav_node **allof, **anyof, **oneof;
  int nallof, nanyof, noneof;
  fav_node *not_, *if_, *then_, *else_;
  int enum_k, enumset_k, const_k;
};

typedef struct fav_re {
  pcre2_code *code;
  char *src;
  int jit;
} fav_re;

typedef struct fav_prog { /* the favcrm.Validator userdata */
  fav_node **nodes;
  int nnodes, cap;
  fav_re *re;
  int nre, recap;
  pcre2_match_data *md;
  pcre2_match_context *mctx;
  pcre2_compile_context *cctx;
  fav_node *root;
  pcre2_code *idna[4]; /* \\p{M}, \\p{Greek}, \\p{Hebrew}, Hiragana/Katakana/Han */
  int all, formats, maxdepth;
} fav_prog;

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
static uint32_t fav_schema_hash(const char *s, size_t n) {
  uint64_t a = 0, b = 0, h;
  if (n >= 8) {
    memcpy(&a, s, 8);
    memcpy(&b, s + n - 8, 8);
  } else {
    memcpy(&a, s, n);
  }
  h = (a ^ (b * 0x9E3779B97F4A7C15ull) ^ (uint64_t)n) * 0xFF51AFD7ED558CCDull;
  return (uint32_t)(h >> 32);
}

/* Pushes t[k] (raw) for a C string key; returns its Lua type. */
static int fav_schema_field(lua_State *L, int t, const char *k) {
  lua_pushstring(L, k);
  lua_rawget(L, t);
  return lua_type(L, -1);
}

/* Formats a number for messages: integers without a fraction, others with
 * the shortest %g that reads back the same. */
static const char *fav_schema_numstr(char *buf, size_t sz, double x) {
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
static size_t fav_schema_utf8len(const char *str, size_t n) {
  const unsigned char *s = (const unsigned char *)str;
  size_t i = 0, cps = 0;
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
/* Formats (hand-written; `regex` through PCRE2)                        */
/* ------------------------------------------------------------------ */

static int fav_fmt_isdigit(int c) { return c >= '0' && c <= '9'; }
static int fav_fmt_isalpha(int c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'); }
static int fav_fmt_isalnum(int c) { return fav_fmt_isdigit(c) || fav_fmt_isalpha(c); }
static int fav_fmt_ishex(int c) {
  return fav_fmt_isdigit(c) || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}

static int fav_fmt_num(const char *s, int n) {
  int v = 0, i;
  for (i = 0; i < n; i++) {
    if (!fav_fmt_isdigit((unsigned char)s[i])) return -1;
    v = v * 10 + (s[i] - '0');
  }
  return v;
}

static int fav_fmt_date(const char *s, size_t n) {
  static const int mdays[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
  int y, m, d, max;
  if (n != 10 || s[4] != '-' || s[7] != '-') return 0;
  y = fav_fmt_num(s, 4);
  m = fav_fmt_num(s + 5, 2);
  d = fav_fmt_num(s + 8, 2);
  if (y < 0 || m < 1 || m > 12 || d < 1) return 0;
  max = mdays[m - 1];
  if (m == 2 && ((y % 4 == 0 && y % 100 != 0) || y % 400 == 0)) max = 29;
  return d <= max;
}

static int fav_fmt_time(const char *s, size_t n) {
  int h, mi, sec, oh = 0, om = 0, sign = 0;
  size_t i = 8;
  if (n < 9 || s[2] != ':' || s[5] != ':') return 0;
  h = fav_fmt_num(s, 2);
  mi = fav_fmt_num(s + 3, 2);
  sec = fav_fmt_num(s + 6, 2);
  if (h < 0 || mi < 0 || sec < 0 || h > 23 || mi > 59 || sec > 60) return 0;
  if (s[i] == '.') {
    size_t st = ++i;
    while (i < n && fav_fmt_isdigit((unsigned char)s[i])) i++;
    if (i == st) return 0;
  }
  if (i >= n) return 0;
  if (s[i] == 'Z' || s[i] == 'z') {
    i++;
  } else if (s[i] == '+' || s[i] == '-') {
    sign = s[i] == '+' ? 1 : -1;
    if (n - i != 6 || s[i + 3] != ':') return 0;
    oh = fav_fmt_num(s + i + 1, 2);
    om = fav_fmt_num(s + i + 4, 2);
    if (oh < 0 || om < 0 || oh > 23 || om > 59) return 0;
    i += 6;
  } else {
    return 0;
  }
  if (i != n) return 0;
  if (sec == 60) { /* a leap second is 23:59:60 in UTC */
    int utc = ((h * 60 + mi - sign * (oh * 60 + om)) % 1440 + 1440) % 1440;
    if (utc != 23 * 60 + 59) return 0;
  }
  return 1;
}

static int fav_fmt_datetime(const char *s, size_t n) {
  if (n < 11 || (s[10] != 'T' && s[10] != 't')) return 0;
  return fav_fmt_date(s, 10) && fav_fmt_time(s + 11, n - 11);
}

static int fav_fmt_uuid(const char *s, size_t n) {
  size_t i;
  if (n != 36) return 0;
  for (i = 0; i < 36; i++) {
    if (i == 8 || i == 13 || i == 18 || i == 23) {
      if (s[i] != '-') return 0;
    } else if (!fav_fmt_ishex((unsigned char)s[i])) {
      return 0;
    }
  }
  return 1;
}

static int fav_fmt_ipv4(const char *s, size_t n) {
  size_t i = 0;
  int part;
  for (part = 0; part < 4; part++) {
    size_t st = i;
    int v = 0;
    while (i < n && fav_fmt_isdigit((unsigned char)s[i]) && i - st < 4) v = v * 10 + (s[i++] - '0');
    if (i == st || i - st > 3 || v > 255) return 0;
    if (i - st > 1 && s[st] == '0') return 0;
    if (part < 3) {
      if (i >= n || s[i] != '.') return 0;
      i++;
    }
  }
  return i == n;
}

static int fav_fmt_ipv6(const char *s, size_t n) {
  size_t i = 0;
  int groups = 0, dbl = 0;
  if (n < 2) return 0;
  if (s[0] == ':') {
    if (s[1] != ':') return 0;
    dbl = 1;
    i = 2;
    if (i == n) return 1;
  }
  for (;;) {
    size_t j = i, st = i;
    while (j < n && s[j] != ':' && s[j] != '.') j++;
    if (j < n && s[j] == '.') { /* dotted IPv4 tail */
      if (!fav_fmt_ipv4(s + st, n - st)) return 0;
      groups += 2;
      break;
    }
    if (j == st || j - st > 4) return 0;
    for (; i < j; i++)
      if (!fav_fmt_ishex((unsigned char)s[i])) return 0;
    groups++;
    if (i == n) break;
    i++; /* ':' */
    if (i < n && s[i] == ':') {
      if (dbl) return 0;
      dbl = 1;
      i++;
      if (i == n) break;
    } else if (i == n) {
      return 0;
    }
    if (groups > 8) return 0;
  }
  return dbl ? groups <= 7 : groups == 8;
}

/* RFC 3492 Punycode: decodes s[0..n) into out (at most cap code points);
 * returns the count, or -1 when the input is not valid Punycode. */
static int fav_fmt_punydecode(const char *s, size_t n, uint32_t *out, int cap) {
  uint32_t nn = 128, i = 0, bias = 72;
  size_t b = 0, j, in;
  int len = 0;
  for (j = 0; j < n; j++)
    if (s[j] == '-') b = j;
  if (b > 0 || (n > 0 && s[0] == '-')) {
    if ((int)b > cap) return -1;
    for (j = 0; j < b; j++) {
      if ((unsigned char)s[j] >= 0x80) return -1;
      out[len++] = (unsigned char)s[j];
    }
    in = b + 1;
  } else {
    in = 0;
  }
  while (in < n) {
    uint32_t oldi = i, w = 1, k, t, digit;
    for (k = 36;; k += 36) {
      int c;
      if (in >= n) return -1;
      c = (unsigned char)s[in++];
      if (c >= '0' && c <= '9') digit = (uint32_t)(c - 22);
      else if (c >= 'a' && c <= 'z') digit = (uint32_t)(c - 'a');
      else if (c >= 'A' && c <= 'Z') digit = (uint32_t)(c - 'A');
      else return -1;
      if (digit > (0xFFFFFFFFu - i) / w) return -1;
      i += digit * w;
      t = k <= bias ? 1 : k >= bias + 26 ? 26 : k - bias;
      if (digit < t) break;
      if (w > 0xFFFFFFFFu / (36 - t)) return -1;
      w *= 36 - t;
    }
    {
      uint32_t delta = oldi == 0 ? (i - oldi) / 700 : (i - oldi) / 2, kk = 0;
      delta += delta / (uint32_t)(len + 1);
      while (delta > 455) {
        delta /= 35;
        kk += 36;
      }
      bias = kk + (36 * delta) / (delta + 38);
    }
    nn += i / (uint32_t)(len + 1);
    i %= (uint32_t)(len + 1);
    if (nn > 0x10FFFF || (nn >= 0xD800 && nn <= 0xDFFF) || len >= cap) return -1;
    memmove(out + i + 1, out + i, (size_t)(len - (int)i) * sizeof *out);
    out[i++] = nn;
    len++;
  }
  return len;
}

/* Does code point c match the lazily compiled Unicode class k? */
static int fav_fmt_uclass(fav_prog *P, int k, uint32_t c) {
  static const char *const pats[4] = {"^\\p{M}", "^\\p{Greek}", "^\\p{Hebrew}", "^[\\p{Hiragana}\\p{Katakana}\\p{Han}]"};
  unsigned char u[4];
  size_t n;
  int rc;
  if (P->idna[k] == NULL) {
    int err;
    PCRE2_SIZE off;
    P->idna[k] = pcre2_compile((PCRE2_SPTR)pats[k], PCRE2_ZERO_TERMINATED, PCRE2_UTF, &err, &off, NULL);
    if (P->idna[k] == NULL) return 0;
  }
  if (c < 0x80) u[0] = (unsigned char)c, n = 1;
  else if (c < 0x800) u[0] = (unsigned char)(0xC0 | (c >> 6)), u[1] = (unsigned char)(0x80 | (c & 0x3F)), n = 2;
  else if (c < 0x10000)
    u[0] = (unsigned char)(0xE0 | (c >> 12)), u[1] = (unsigned char)(0x80 | ((c >> 6) & 0x3F)),
    u[2] = (unsigned char)(0x80 | (c & 0x3F)), n = 3;
  else
    u[0] = (unsigned char)(0xF0 | (c >> 18)), u[1] = (unsigned char)(0x80 | ((c >> 12) & 0x3F)),
    u[2] = (unsigned char)(0x80 | ((c >> 6) & 0x3F)), u[3] = (unsigned char)(0x80 | (c & 0x3F)), n = 4;
  rc = pcre2_match(P->idna[k], u, n, 0, 0, P->md, NULL);
  return rc >= 0;
}

static int fav_fmt_virama(uint32_t c) {
  static const uint32_t v[] = {0x94D, 0x9CD, 0xA4D, 0xACD, 0xB4D, 0xBCD, 0xC4D, 0xCCD, 0xD3B, 0xD3C, 0xD4D,
                               0xDCA, 0xE3A, 0xEBA, 0xF84, 0x1039, 0x103A, 0x1714, 0x1734, 0x17D2, 0x1A60,
                               0x1B44, 0x1BAA, 0x1BAB, 0x1BF2, 0x1BF3, 0x2D7F, 0xA806, 0xA8C4, 0xA953, 0xA9C0,
                               0xAAF6, 0xABED, 0};
  int i;
  for (i = 0; v[i]; i++)
    if (v[i] == c) return 1;
  return 0;
}

/* IDNA2008 checks (RFC 5891/5892) on an A-label's decoded code points, for
 * the rules that matter in practice: no leading mark, the DISALLOWED
 * exceptions, and the CONTEXTJ/CONTEXTO rules. */
static int fav_fmt_ulabel(fav_prog *P, const uint32_t *u, int n) {
  int i, ai = 0, ext = 0, kana = 0, dot = 0;
  if (n == 0) return 0;
  if (n >= 4 && u[2] == '-' && u[3] == '-') return 0;
  if (u[0] == '-' || u[n - 1] == '-') return 0;
  if (fav_fmt_uclass(P, 0, u[0])) return 0;
  for (i = 0; i < n; i++) {
    uint32_t c = u[i];
    if (c < 0x80 && !fav_fmt_isalnum((int)c) && c != '-') return 0;
    if (c >= 'A' && c <= 'Z') return 0;
    if (c == 0x640 || c == 0x7FA || c == 0x302E || c == 0x302F || (c >= 0x3031 && c <= 0x3035) || c == 0x303B)
      return 0;
    if (c == 0xB7 && !(i > 0 && i + 1 < n && u[i - 1] == 'l' && u[i + 1] == 'l')) return 0;
    if (c == 0x375 && !(i + 1 < n && fav_fmt_uclass(P, 1, u[i + 1]))) return 0;
    if ((c == 0x5F3 || c == 0x5F4) && !(i > 0 && fav_fmt_uclass(P, 2, u[i - 1]))) return 0;
    if (c == 0x200D && !(i > 0 && fav_fmt_virama(u[i - 1]))) return 0;
    if (c >= 0x660 && c <= 0x669) ai = 1;
    if (c >= 0x6F0 && c <= 0x6F9) ext = 1;
    if (c == 0x30FB) dot = 1;
    else if (fav_fmt_uclass(P, 3, c)) kana = 1;
  }
  if (ai && ext) return 0;
  if (dot && !kana) return 0;
  return 1;
}

static int fav_fmt_hostname(fav_prog *P, const char *s, size_t n) {
  size_t i = 0;
  if (n == 0 || n > 253) return 0;
  while (i < n) {
    size_t st = i;
    while (i < n && s[i] != '.') {
      if (!fav_fmt_isalnum((unsigned char)s[i]) && s[i] != '-') return 0;
      i++;
    }
    if (i == st || i - st > 63 || s[st] == '-' || s[i - 1] == '-') return 0;
    if (i - st >= 4 && s[st + 2] == '-' && s[st + 3] == '-') {
      uint32_t u[64];
      int m;
      /* "--" at 3-4 is reserved for IDNA A-labels ("xn--") */
      if (!((s[st] == 'x' || s[st] == 'X') && (s[st + 1] == 'n' || s[st + 1] == 'N'))) return 0;
      m = fav_fmt_punydecode(s + st + 4, i - st - 4, u, 64);
      if (m < 0 || !fav_fmt_ulabel(P, u, m)) return 0;
    }
    if (i < n) {
      i++;
      if (i == n) return 0;
    }
  }
  return 1;
}

static int fav_fmt_email(fav_prog *P, const char *s, size_t n) {
  static const char atext[] = "!#$%&'*+-/=?^_`{|}~";
  size_t i = 0, at;
  if (n == 0) return 0;
  if (s[0] == '"') { /* quoted local part */
    i = 1;
    while (i < n && s[i] != '"') {
      if (s[i] == '\\') i++;
      else if ((unsigned char)s[i] < 32 || (unsigned char)s[i] > 126) return 0;
      i++;
    }
    if (i >= n) return 0;
    at = i + 1;
    if (at >= n || s[at] != '@') return 0;
  } else {
    for (at = 0; at < n && s[at] != '@'; at++) {
      unsigned char c = (unsigned char)s[at];
      if (c == '.') {
        if (at == 0 || s[at - 1] == '.') return 0;
      } else if (!fav_fmt_isalnum(c) && !strchr(atext, c)) {
        return 0;
      }
    }
    if (at == 0 || at >= n || s[at - 1] == '.' || at > 64) return 0;
  }
  s += at + 1;
  n -= at + 1;
  if (n >= 2 && s[0] == '[' && s[n - 1] == ']') {
    if (n > 7 && memcmp(s + 1, "IPv6:", 5) == 0) return fav_fmt_ipv6(s + 6, n - 7);
    return fav_fmt_ipv4(s + 1, n - 2);
  }
  return fav_fmt_hostname(P, s, n);
}

/* URI characters: unreserved / sub-delims / ":" / "@" (pchar minus pct). */
static int fav_fmt_pchar(int c) {
  return fav_fmt_isalnum(c) || (c && strchr("-._~!$&'()*+,;=:@", c) != NULL);
}

/* Checks s[i..e) contains pchars, pct-encodings and the extra characters. */
static int fav_fmt_uripart(const char *s, size_t i, size_t e, const char *extra) {
  for (; i < e; i++) {
    int c = (unsigned char)s[i];
    if (c == '%') {
      if (i + 2 >= e || !fav_fmt_ishex((unsigned char)s[i + 1]) ||
          !fav_fmt_ishex((unsigned char)s[i + 2]))
        return 0;
      i += 2;
    } else if (!fav_fmt_pchar(c) && !(c && strchr(extra, c))) {
      return 0;
    }
  }
  return 1;
}

/* RFC 3986 URI (absolute) or URI-reference. */
static int fav_fmt_uri(const char *s, size_t n, int absolute) {
  size_t i = 0, p, q;
  int scheme = 0;
  if (fav_fmt_isalpha((unsigned char)s[0])) {
    while (i < n && (fav_fmt_isalnum((unsigned char)s[i]) || s[i] == '+' || s[i] == '-' || s[i] == '.')) i++;
    if (i < n && s[i] == ':') {
      scheme = 1;
      i++;
    } else {
      i = 0;
    }
  }
  if (absolute && !scheme) return 0;
  if (i + 1 < n && s[i] == '/' && s[i + 1] == '/') { /* authority */
    size_t a = i + 2, e = a, at = (size_t)-1, h;
    while (e < n && s[e] != '/' && s[e] != '?' && s[e] != '#') {
      if (s[e] == '@') at = e;
      e++;
    }
    h = a;
    if (at != (size_t)-1) {
      if (!fav_fmt_uripart(s, a, at, "")) return 0;
      for (p = a; p < at; p++)
        if (s[p] == '@') return 0;
      h = at + 1;
    }
    if (h < e && s[h] == '[') {
      size_t rb = h;
      while (rb < e && s[rb] != ']') rb++;
      if (rb >= e) return 0;
      if (!fav_fmt_ipv6(s + h + 1, rb - h - 1)) {
        if (!(rb - h > 2 && (s[h + 1] == 'v' || s[h + 1] == 'V'))) return 0;
      }
      p = rb + 1;
    } else {
      p = h;
      while (p < e && s[p] != ':') {
        int c = (unsigned char)s[p];
        if (c == '%') {
          if (p + 2 >= e || !fav_fmt_ishex((unsigned char)s[p + 1]) ||
              !fav_fmt_ishex((unsigned char)s[p + 2]))
            return 0;
          p += 3;
          continue;
        }
        if (!fav_fmt_isalnum(c) && !strchr("-._~!$&'()*+,;=", c)) return 0;
        p++;
      }
    }
    if (p < e) {
      if (s[p] != ':') return 0;
      for (p++; p < e; p++)
        if (!fav_fmt_isdigit((unsigned char)s[p])) return 0;
    }
    i = e;
  } else if (!scheme) {
    /* relative-ref with path-noscheme: no ':' in the first segment */
    for (p = i; p < n && s[p] != '/' && s[p] != '?' && s[p] != '#'; p++)
      if (s[p] == ':') return 0;
  }
  for (q = i; q < n && s[q] != '?' && s[q] != '#'; q++) {}
  if (!fav_fmt_uripart(s, i, q, "/")) return 0;
  if (q < n && s[q] == '?') {
    p = q + 1;
    for (q = p; q < n && s[q] != '#'; q++) {}
    if (!fav_fmt_uripart(s, p, q, "/?")) return 0;
  }
  if (q < n && s[q] == '#') {
    if (!fav_fmt_uripart(s, q + 1, n, "/?")) return 0;
  }
  return 1;
}

/* Validates s against a format; 1 when valid or the format is unknown. The
 * caller has checked s is valid UTF-8. */
static int fav_schema_format(fav_prog *P, int fmt, const char *s, size_t n) {
  switch (fmt) {
    case FMT_EMAIL: return fav_fmt_email(P, s, n);
    case FMT_URI: return n > 0 && fav_fmt_uri(s, n, 1);
    case FMT_URIREF: return n == 0 || fav_fmt_uri(s, n, 0);
    case FMT_DATETIME: return fav_fmt_datetime(s, n);
    case FMT_DATE: return fav_fmt_date(s, n);
    case FMT_TIME: return fav_fmt_time(s, n);
    case FMT_UUID: return fav_fmt_uuid(s, n);
    case FMT_IPV4: return fav_fmt_ipv4(s, n);
    case FMT_IPV6: return fav_fmt_ipv6(s, n);
    case FMT_HOSTNAME: return fav_fmt_hostname(P, s, n);
    case FMT_REGEX: {
      int err;
      PCRE2_SIZE off;
      pcre2_code *c = pcre2_compile((PCRE2_SPTR)s, n, PCRE2_UTF | PCRE2_ALT_BSUX | PCRE2_NO_UTF_CHECK,
                                    &err, &off, P->cctx);
      if (c == NULL) return 0;
      pcre2_code_free(c);
      return 1;
    }
    default: return 1;
  }
}

/* ------------------------------------------------------------------ */
/* URI references (RFC 3986 section 5)                                  */
/* ------------------------------------------------------------------ */

typedef struct fav_uri {
  const char *scheme, *auth, *path, *query, *frag;
  size_t nscheme, nauth, npath, nquery, nfrag;
  int hs, ha, hq, hf;
} fav_uri;

static void fav_schema_urisplit(const char *s, size_t n, fav_uri *u) {
  size_t i = 0, p;
  memset(u, 0, sizeof *u);
  if (n && fav_fmt_isalpha((unsigned char)s[0])) {
    while (i < n && (fav_fmt_isalnum((unsigned char)s[i]) || s[i] == '+' || s[i] == '-' || s[i] == '.')) i++;
    if (i < n && s[i] == ':') {
      u->hs = 1;
      u->scheme = s;
      u->nscheme = i;
      i++;
    } else {
      i = 0;
    }
  }
  if (i + 1 < n && s[i] == '/' && s[i + 1] == '/') {
    p = i + 2;
    i = p;
    while (i < n && s[i] != '/' && s[i] != '?' && s[i] != '#') i++;
    u->ha = 1;
    u->auth = s + p;
    u->nauth = i - p;
  }
  p = i;
  while (i < n && s[i] != '?' && s[i] != '#') i++;
  u->path = s + p;
  u->npath = i - p;
  if (i < n && s[i] == '?') {
    p = ++i;
    while (i < n && s[i] != '#') i++;
    u->hq = 1;
    u->query = s + p;
    u->nquery = i - p;
  }
  if (i < n && s[i] == '#') {
    u->hf = 1;
    u->frag = s + i + 1;
    u->nfrag = n - i - 1;
  }
}

/* Removes dot segments from in[0..n) (writable) into out; returns length. */
static size_t fav_schema_dots(char *in, size_t n, char *out) {
  size_t i = 0, o = 0;
  while (i < n) {
    size_t rest = n - i;
    if (rest >= 3 && memcmp(in + i, "../", 3) == 0) {
      i += 3;
    } else if (rest >= 2 && memcmp(in + i, "./", 2) == 0) {
      i += 2;
    } else if (rest >= 3 && memcmp(in + i, "/./", 3) == 0) {
      i += 2;
    } else if (rest == 2 && memcmp(in + i, "/.", 2) == 0) {
      i += 1;
      in[i] = '/';
    } else if ((rest >= 4 && memcmp(in + i, "/../", 4) == 0) || (rest == 3 && memcmp(in + i, "/..", 3) == 0)) {
      if (rest == 3) {
        i += 2;
        in[i] = '/';
      } else {
        i += 3;
      }
      while (o > 0 && out[o - 1] != '/') o--;
      if (o > 0) o--;
    } else if ((rest == 1 && in[i] == '.') || (rest == 2 && memcmp(in + i, "..", 2) == 0)) {
      i = n;
    } else {
      if (in[i] == '/') out[o++] = in[i++];
      while (i < n && in[i] != '/') out[o++] = in[i++];
    }
  }
  return o;
}

/* Resolves reference r against base b; pushes the target URI string.
 * Scratch memory is a Lua userdata, so raising here leaks nothing. */
static void fav_schema_resolve(lua_State *L, const char *b, size_t nb, const char *r, size_t nr) {
  fav_uri B, R;
  size_t cap = nb + nr + 8, o = 0, np;
  char *buf, *tmp, *out;
  const char *scheme, *auth, *query;
  size_t nscheme, nauth, nquery;
  int hs, ha, hq;
  fav_schema_urisplit(b, nb, &B);
  fav_schema_urisplit(r, nr, &R);
  buf = (char *)lua_newuserdata(L, 3 * cap);
  tmp = buf + cap;
  out = buf + 2 * cap;
  if (R.hs) {
    hs = 1, scheme = R.scheme, nscheme = R.nscheme;
    ha = R.ha, auth = R.auth, nauth = R.nauth;
    memcpy(tmp, R.path, R.npath);
    np = fav_schema_dots(tmp, R.npath, out);
    hq = R.hq, query = R.query, nquery = R.nquery;
  } else {
    hs = B.hs, scheme = B.scheme, nscheme = B.nscheme;
    if (R.ha) {
      ha = 1, auth = R.auth, nauth = R.nauth;
      memcpy(tmp, R.path, R.npath);
      np = fav_schema_dots(tmp, R.npath, out);
      hq = R.hq, query = R.query, nquery = R.nquery;
    } else {
      ha = B.ha, auth = B.auth, nauth = B.nauth;
      if (R.npath == 0) {
        memcpy(out, B.path, B.npath);
        np = B.npath;
        if (R.hq) hq = 1, query = R.query, nquery = R.nquery;
        else hq = B.hq, query = B.query, nquery = B.nquery;
      } else {
        size_t nt = 0;
        if (R.path[0] == '/') {
          memcpy(tmp, R.path, R.npath);
          nt = R.npath;
        } else if (B.ha && B.npath == 0) {
          tmp[0] = '/';
          memcpy(tmp + 1, R.path, R.npath);
          nt = R.npath + 1;
        } else {
          size_t k = B.npath;
          while (k > 0 && B.path[k - 1] != '/') k--;
          memcpy(tmp, B.path, k);
          memcpy(tmp + k, R.path, R.npath);
          nt = k + R.npath;
        }
        if (!hs && !ha && nt > 0 && tmp[0] != '/' && tmp[0] != '.') {
          /* a relative base: keep the path as merged, only drop dots */
        }
        np = fav_schema_dots(tmp, nt, out);
        hq = R.hq, query = R.query, nquery = R.nquery;
      }
    }
  }
  /* assemble into tmp: scheme ":" "//" auth path "?" query "#" frag */
  memmove(buf, out, np); /* path to the front (buf) */
  o = 0;
  {
    char *res = out;
    if (hs) {
      memcpy(res + o, scheme, nscheme);
      o += nscheme;
      res[o++] = ':';
    }
    if (ha) {
      res[o++] = '/';
      res[o++] = '/';
      memcpy(res + o, auth, nauth);
      o += nauth;
    }
    lua_pushlstring(L, res, o);
    lua_pushlstring(L, buf, np);
    if (hq) {
      lua_pushliteral(L, "?");
      lua_pushlstring(L, query, nquery);
    } else {
      lua_pushliteral(L, "");
      lua_pushliteral(L, "");
    }
    if (R.hf) {
      lua_pushliteral(L, "#");
      lua_pushlstring(L, R.frag, R.nfrag);
    } else {
      lua_pushliteral(L, "");
      lua_pushliteral(L, "");
    }
    lua_concat(L, 6);
  }
  lua_remove(L, -2); /* the scratch userdata */
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
static void fav_schema_freeprog(fav_prog *P) {
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
static fav_node *fav_schema_newnode(lua_State *L, fav_prog *P) {
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

typedef struct fav_cc {
  lua_State *L;
  fav_prog *P;
  int forced;     /* opts.draft, or 0 */
  int maxdepth;
  int res;        /* uri -> resource root schema */
  int anchors;    /* uri#name -> schema */
  int info;       /* schema table -> {base, loc, resource table, draft} */
  int dyn;        /* uri -> {name -> schema} ($dynamicAnchor) */
  int memo;       /* schema table -> node (light userdata) */
  int wl;         /* worklist, 7 slots an entry */
  int loaded;     /* uri -> true/false: remote documents asked for */
  int K;          /* constants (the validator's uservalue) */
  int remotes, resolver;
  int nwl, nk;
} fav_cc;

/* Raises an invalid_schema error object {code, message = "invalid schema
 * at <path>: <text>", schema_path = <loc>/<kw>} (util.h's fav_pusherror). */
static int fav_schema_bad(fav_cc *c, const char *loc, const char *kw, const char *fmt, ...) {
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

static int fav_schema_dialect(fav_cc *c, int s, int draft) {
  lua_State *L = c->L;
  if (c->forced) return c->forced;
  if (fav_schema_field(L, s, "$schema") == LUA_TSTRING) {
    const char *u = lua_tostring(L, -1);
    if (strstr(u, "draft-07") || strstr(u, "draft-06") || strstr(u, "draft-04") || strstr(u, "draft-03")) draft = 7;
    else if (strstr(u, "2020-12") || strstr(u, "2019-09")) draft = 20;
  }
  lua_pop(L, 1);
  return draft;
}

/* A table used as a JSON array in a schema: [1] exists, or it is empty. */
static int fav_schema_isarr(lua_State *L, int t) {
  int r;
  t = lua_absindex(L, t);
  if (lua_type(L, t) != LUA_TTABLE) return 0;
  lua_rawgeti(L, t, 1);
  r = !lua_isnil(L, -1);
  lua_pop(L, 1);
  if (!r) {
    lua_pushnil(L);
    if (lua_next(L, t)) {
      lua_pop(L, 2);
      return 0;
    }
    return 1;
  }
  return 1;
}

/* Pushes loc .. "/" .. kw [.. "/" .. escaped key | index]. */
static void fav_schema_pushloc(lua_State *L, int loc, const char *kw, const char *key, size_t klen, lua_Integer i) {
  luaL_Buffer b;
  size_t n;
  const char *l = lua_tolstring(L, loc, &n);
  luaL_buffinit(L, &b);
  luaL_addlstring(&b, l, n);
  luaL_addchar(&b, '/');
  luaL_addstring(&b, kw);
  if (key) {
    size_t j;
    luaL_addchar(&b, '/');
    for (j = 0; j < klen; j++) {
      if (key[j] == '~') luaL_addlstring(&b, "~0", 2);
      else if (key[j] == '/') luaL_addlstring(&b, "~1", 2);
      else luaL_addchar(&b, key[j]);
    }
  } else if (i >= 0) {
    char num[32];
    snprintf(num, sizeof num, "/%ld", (long)i);
    luaL_addstring(&b, num);
  }
  luaL_pushresult(&b);
}

static const char *const fav_schema_kw_one[] = {
  "additionalItems", "additionalProperties", "contains", "propertyNames", "not", "if", "then", "else",
  "unevaluatedItems", "unevaluatedProperties", "items", NULL
};
static const char *const fav_schema_kw_arr[] = {"allOf", "anyOf", "oneOf", "prefixItems", "items", NULL};
static const char *const fav_schema_kw_map[] = {
  "properties", "patternProperties", "definitions", "$defs", "dependentSchemas", "dependencies", NULL
};

static void fav_schema_index(fav_cc *c, int s, int base, int loc, int rt, int draft, int depth);

/* Records key = value (value at top, popped) in map m, where key is the
 * concatenation of the base string at `base`, "#" and name. */
static void fav_schema_setanchor(lua_State *L, int m, int base, const char *name, size_t n, int s) {
  lua_pushvalue(L, base);
  lua_pushliteral(L, "#");
  lua_pushlstring(L, name, n);
  lua_concat(L, 3);
  lua_pushvalue(L, s);
  lua_rawset(L, m);
}

/* Index pass: records resources ($id), anchors, dynamic anchors and per
 * schema {base, loc, resource, draft} for everything reachable through known
 * keywords. Takes absolute stack indices; leaves the stack as found. */
static void fav_schema_index(fav_cc *c, int s, int base, int loc, int rt, int draft, int depth) {
  lua_State *L = c->L;
  int top = lua_gettop(L), has_ref = 0, k;
  if (lua_type(L, s) != LUA_TTABLE) return;
  if (depth > c->maxdepth)
    fav_schema_bad(c, lua_tostring(L, loc), NULL, "schema nesting exceeds %d levels", c->maxdepth);
  luaL_checkstack(L, 20, "schema too deep");
  lua_pushvalue(L, s);
  lua_rawget(L, c->info);
  if (!lua_isnil(L, -1)) { /* already indexed (shared table) */
    lua_settop(L, top);
    return;
  }
  lua_pop(L, 1);
  draft = fav_schema_dialect(c, s, draft);
  if (draft == 7) {
    has_ref = fav_schema_field(L, s, "$ref") == LUA_TSTRING;
    lua_pop(L, 1);
  }
  if (!has_ref && fav_schema_field(L, s, "$id") == LUA_TSTRING) {
    size_t n;
    const char *id = lua_tolstring(L, -1, &n);
    if (draft == 7 && id[0] == '#') {
      fav_schema_setanchor(L, c->anchors, base, id + 1, n - 1, s);
    } else {
      size_t nb, nf;
      const char *b = lua_tolstring(L, base, &nb), *full, *hash;
      fav_schema_resolve(L, b, nb, id, n);
      full = lua_tolstring(L, -1, &nf);
      hash = memchr(full, '#', nf);
      lua_pushlstring(L, full, hash ? (size_t)(hash - full) : nf);
      base = lua_gettop(L);
      lua_pushvalue(L, base);
      lua_pushvalue(L, s);
      lua_rawset(L, c->res);
      rt = s;
      if (hash && hash[1] && draft == 7) fav_schema_setanchor(L, c->anchors, base, hash + 1, nf - (size_t)(hash - full) - 1, s);
    }
  } else {
    lua_pop(L, 1);
  }
  if (draft != 7) {
    if (fav_schema_field(L, s, "$anchor") == LUA_TSTRING) {
      size_t n;
      const char *a = lua_tolstring(L, -1, &n);
      fav_schema_setanchor(L, c->anchors, base, a, n, s);
    }
    lua_pop(L, 1);
    if (fav_schema_field(L, s, "$dynamicAnchor") == LUA_TSTRING) {
      size_t n;
      const char *a = lua_tolstring(L, -1, &n);
      fav_schema_setanchor(L, c->anchors, base, a, n, s);
      lua_pushvalue(L, base);
      lua_rawget(L, c->dyn);
      if (lua_isnil(L, -1)) {
        lua_pop(L, 1);
        lua_newtable(L);
        lua_pushvalue(L, base);
        lua_pushvalue(L, -2);
        lua_rawset(L, c->dyn);
      }
      lua_pushvalue(L, -2);
      lua_pushvalue(L, s);
      lua_rawset(L, -3);
      lua_pop(L, 1);
    }
    lua_pop(L, 1);
  }
  /* info[s] = {base, loc, rt, draft} */
  lua_pushvalue(L, s);
  lua_createtable(L, 4, 0);
  lua_pushvalue(L, base);
  lua_rawseti(L, -2, 1);
  lua_pushvalue(L, loc);
  lua_rawseti(L, -2, 2);
  lua_pushvalue(L, rt);
  lua_rawseti(L, -2, 3);
  lua_pushinteger(L, draft);
  lua_rawseti(L, -2, 4);
  lua_rawset(L, c->info);

  for (k = 0; fav_schema_kw_one[k]; k++) {
    if (fav_schema_field(L, s, fav_schema_kw_one[k]) == LUA_TTABLE && !fav_schema_isarr(L, -1)) {
      fav_schema_pushloc(L, loc, fav_schema_kw_one[k], NULL, 0, -1);
      fav_schema_index(c, lua_gettop(L) - 1, base, lua_gettop(L), rt, draft, depth + 1);
      lua_pop(L, 1);
    }
    lua_pop(L, 1);
  }
  for (k = 0; fav_schema_kw_arr[k]; k++) {
    if (fav_schema_field(L, s, fav_schema_kw_arr[k]) == LUA_TTABLE && fav_schema_isarr(L, -1)) {
      int t = lua_gettop(L);
      lua_Integer i;
      for (i = 1;; i++) {
        lua_rawgeti(L, t, (int)i);
        if (lua_isnil(L, -1)) {
          lua_pop(L, 1);
          break;
        }
        fav_schema_pushloc(L, loc, fav_schema_kw_arr[k], NULL, 0, i - 1);
        fav_schema_index(c, t + 1, base, t + 2, rt, draft, depth + 1);
        lua_pop(L, 2);
      }
    }
    lua_pop(L, 1);
  }
  for (k = 0; fav_schema_kw_map[k]; k++) {
    if (fav_schema_field(L, s, fav_schema_kw_map[k]) == LUA_TTABLE) {
      int t = lua_gettop(L);
      lua_pushnil(L);
      while (lua_next(L, t)) {
        if (lua_type(L, -2) == LUA_TSTRING && lua_type(L, -1) == LUA_TTABLE && !fav_schema_isarr(L, -1)) {
          size_t kl;
          const char *key = lua_tolstring(L, -2, &kl);
          fav_schema_pushloc(L, loc, fav_schema_kw_map[k], key, kl, -1);
          fav_schema_index(c, t + 2, base, t + 3, rt, draft, depth + 1);
          lua_pop(L, 1);
        }
        lua_pop(L, 1);
      }
    }
    lua_pop(L, 1);
  }
  lua_settop(L, top);
}

/* Returns the node for the schema value at v, allocating it (and queueing
 * it for building) if this table has none yet. Booleans get a fresh node.
 * base/loc are stack indices of strings, used when v was not indexed. */
static fav_node *fav_schema_node_for(fav_cc *c, int v, int base, int loc, int draft, fav_node *res, int depth,
                                     const char *kw) {
  lua_State *L = c->L;
  fav_node *n;
  int e;
  if (lua_type(L, v) == LUA_TTABLE) {
    lua_pushvalue(L, v);
    lua_rawget(L, c->memo);
    n = (fav_node *)lua_touserdata(L, -1);
    lua_pop(L, 1);
    if (n) return n;
  }
  n = fav_schema_newnode(L, c->P);
  n->kw = kw;
  if (lua_type(L, v) == LUA_TTABLE) {
    lua_pushvalue(L, v);
    lua_pushlightuserdata(L, n);
    lua_rawset(L, c->memo);
  }
  e = c->nwl * 7;
  c->nwl++;
  lua_pushlightuserdata(L, n);
  lua_rawseti(L, c->wl, e + 1);
  lua_pushvalue(L, v);
  lua_rawseti(L, c->wl, e + 2);
  lua_pushvalue(L, base);
  lua_rawseti(L, c->wl, e + 3);
  lua_pushvalue(L, loc);
  lua_rawseti(L, c->wl, e + 4);
  lua_pushinteger(L, draft);
  lua_rawseti(L, c->wl, e + 5);
  if (res) lua_pushlightuserdata(L, res);
  else lua_pushboolean(L, 0);
  lua_rawseti(L, c->wl, e + 6);
  lua_pushinteger(L, depth);
  lua_rawseti(L, c->wl, e + 7);
  return n;
}

/* Loads a remote document for uri (string at u) from opts.remotes or
 * opts.resolve_remote and indexes it. Pushes the document or nil. */
static void fav_schema_load(fav_cc *c, int u, int draft) {
  lua_State *L = c->L;
  int doc;
  lua_pushvalue(L, u);
  lua_rawget(L, c->res);
  if (!lua_isnil(L, -1)) return;
  lua_pop(L, 1);
  lua_pushvalue(L, u);
  lua_rawget(L, c->loaded);
  if (!lua_isnil(L, -1)) {
    lua_pop(L, 1);
    lua_pushnil(L);
    return;
  }
  lua_pop(L, 1);
  lua_pushvalue(L, u);
  lua_pushboolean(L, 1);
  lua_rawset(L, c->loaded);
  lua_pushnil(L);
  if (c->remotes) {
    lua_pop(L, 1);
    lua_pushvalue(L, u);
    lua_gettable(L, c->remotes);
  }
  if (lua_isnil(L, -1) && c->resolver) {
    lua_pop(L, 1);
    lua_pushvalue(L, c->resolver);
    lua_pushvalue(L, u);
    lua_call(L, 1, 1);
  }
  if (lua_type(L, -1) != LUA_TTABLE && lua_type(L, -1) != LUA_TBOOLEAN) {
    lua_pop(L, 1);
    lua_pushnil(L);
    return;
  }
  doc = lua_gettop(L);
  lua_pushvalue(L, u);
  lua_pushvalue(L, doc);
  lua_rawset(L, c->res);
  lua_pushvalue(L, u);
  lua_pushliteral(L, "#");
  lua_concat(L, 2);
  fav_schema_index(c, doc, u, lua_gettop(L), doc, draft, 0);
  lua_pop(L, 1);
}

/* Percent-decodes s[0..n) and pushes it. */
static void fav_schema_pctdecode(lua_State *L, const char *s, size_t n) {
  luaL_Buffer b;
  size_t i;
  luaL_buffinit(L, &b);
  for (i = 0; i < n; i++) {
    if (s[i] == '%' && i + 2 < n && fav_fmt_ishex((unsigned char)s[i + 1]) &&
        fav_fmt_ishex((unsigned char)s[i + 2])) {
      char h[3] = {s[i + 1], s[i + 2], 0};
      luaL_addchar(&b, (char)strtol(h, NULL, 16));
      i += 2;
    } else {
      luaL_addchar(&b, s[i]);
    }
  }
  luaL_pushresult(&b);
}

/* Resolves a $ref / $dynamicRef string at stack index r, relative to the
 * base string at b. Returns the target's node; *target_tab gets the stack
 * index of the target schema value (left pushed, with 1-2 helper values
 * below it: the caller restores the stack top). Raises invalid_schema. */
static fav_node *fav_schema_ref(fav_cc *c, int r, int b, int draft, fav_node *res, int depth, const char *loc,
                                const char *kw, int *target) {
  lua_State *L = c->L;
  size_t nb, nr, nf;
  const char *bs = lua_tolstring(L, b, &nb), *rs = lua_tolstring(L, r, &nr), *full, *hash;
  int u, frag, doc, t, tbase, k;
  fav_schema_resolve(L, bs, nb, rs, nr);
  full = lua_tolstring(L, -1, &nf);
  hash = memchr(full, '#', nf);
  lua_pushlstring(L, full, hash ? (size_t)(hash - full) : nf);
  u = lua_gettop(L);
  if (hash) fav_schema_pctdecode(L, hash + 1, nf - (size_t)(hash - full) - 1);
  else lua_pushliteral(L, "");
  frag = lua_gettop(L);
  if (lua_rawlen(L, frag) == 0 || lua_tostring(L, frag)[0] == '/') {
    const char *p = lua_tostring(L, frag);
    fav_schema_load(c, u, draft);
    doc = lua_gettop(L);
    if (lua_isnil(L, doc)) fav_schema_bad(c, loc, kw, "cannot resolve %s \"%s\"", kw, rs);
    lua_pushvalue(L, u); /* base while walking */
    tbase = lua_gettop(L);
    lua_pushvalue(L, doc);
    t = lua_gettop(L);
    while (*p == '/') {
      const char *e = strchr(p + 1, '/');
      size_t tl = e ? (size_t)(e - p - 1) : strlen(p + 1);
      luaL_Buffer tok;
      size_t j;
      if (lua_type(L, t) != LUA_TTABLE) fav_schema_bad(c, loc, kw, "%s \"%s\" points to nothing", kw, rs);
      luaL_buffinit(L, &tok);
      for (j = 0; j < tl; j++) {
        char ch = p[1 + j];
        if (ch == '~' && j + 1 < tl && p[2 + j] == '1') ch = '/', j++;
        else if (ch == '~' && j + 1 < tl && p[2 + j] == '0') ch = '~', j++;
        luaL_addchar(&tok, ch);
      }
      luaL_pushresult(&tok);
      lua_pushvalue(L, -1);
      lua_rawget(L, t);
      if (lua_isnil(L, -1)) {
        const char *ts = lua_tostring(L, -2);
        char *end;
        long ix = strtol(ts, &end, 10);
        lua_pop(L, 1);
        if (*ts && *end == '\0' && ix >= 0) lua_rawgeti(L, t, (int)(ix + 1));
        else lua_pushnil(L);
      }
      lua_remove(L, -2);
      lua_replace(L, t);
      /* track the base of indexed schemas on the way */
      if (lua_type(L, t) == LUA_TTABLE) {
        lua_pushvalue(L, t);
        lua_rawget(L, c->info);
        if (lua_istable(L, -1)) {
          lua_rawgeti(L, -1, 1);
          lua_replace(L, tbase);
        }
        lua_pop(L, 1);
      }
      p = e ? e : p + 1 + tl;
    }
    if (lua_isnil(L, t) || (lua_type(L, t) != LUA_TTABLE && lua_type(L, t) != LUA_TBOOLEAN))
      fav_schema_bad(c, loc, kw, "%s \"%s\" points to nothing", kw, rs);
  } else {
    lua_pushvalue(L, u);
    lua_pushliteral(L, "#");
    lua_pushvalue(L, frag);
    lua_concat(L, 3);
    k = lua_gettop(L);
    lua_pushvalue(L, k);
    lua_rawget(L, c->anchors);
    if (lua_isnil(L, -1)) {
      lua_pop(L, 1);
      fav_schema_load(c, u, draft);
      lua_pop(L, 1);
      lua_pushvalue(L, k);
      lua_rawget(L, c->anchors);
      if (lua_isnil(L, -1)) fav_schema_bad(c, loc, kw, "cannot resolve %s \"%s\"", kw, rs);
    }
    lua_pushvalue(L, u);
    tbase = lua_gettop(L);
    lua_pushvalue(L, -2);
    t = lua_gettop(L);
  }
  *target = t;
  return fav_schema_node_for(c, t, tbase, r, draft, res, depth + 1, NULL);
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

/* Builds node n from the worklist entry at slots e+1..e+7. */
static void fav_schema_build(fav_cc *c, int e) {
  lua_State *L = c->L;
  fav_node *n, *res;
  int V, B, LOC, draft, depth, top = lua_gettop(L), isres = 0, t, i;
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
    lua_settop(L, top);
    return;
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
      return;
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
    for (i = 1; i <= (int)lua_rawlen(L, a); i++) {
      lua_rawgeti(L, a, i);
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

  /* strings */
  if (fav_schema_field(L, V, "minLength") != LUA_TNIL) n->minlen = fav_schema_count(c, loc, "minLength");
  lua_pop(L, 1);
  if (fav_schema_field(L, V, "maxLength") != LUA_TNIL) n->maxlen = fav_schema_count(c, loc, "maxLength");
  lua_pop(L, 1);
  if (fav_schema_field(L, V, "pattern") != LUA_TNIL) n->pattern = fav_schema_regex(c, loc, "pattern");
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

  /* objects */
  {
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
  }
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
  if (fav_schema_field(L, V, "additionalProperties") != LUA_TNIL)
    n->addl = fav_schema_child(c, LOC, B, draft, res, depth, "additionalProperties", NULL, 0, -1);
  lua_pop(L, 1);
  if (fav_schema_field(L, V, "propertyNames") != LUA_TNIL)
    n->pnames = fav_schema_child(c, LOC, B, draft, res, depth, "propertyNames", NULL, 0, -1);
  lua_pop(L, 1);
  if (fav_schema_field(L, V, "minProperties") != LUA_TNIL) n->minprops = fav_schema_count(c, loc, "minProperties");
  lua_pop(L, 1);
  if (fav_schema_field(L, V, "maxProperties") != LUA_TNIL) n->maxprops = fav_schema_count(c, loc, "maxProperties");
  lua_pop(L, 1);
  {
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
    lua_settop(L, top + 0);
    /* restore the locals we index below */
  }
  /* the stack was reset: re-push the entry values we still need */
  lua_rawgeti(L, c->wl, e + 2);
  V = lua_gettop(L);
  lua_pushvalue(L, V);
  lua_rawget(L, c->info);
  if (lua_istable(L, -1)) {
    t = lua_gettop(L);
    lua_rawgeti(L, t, 1);
    B = lua_gettop(L);
    lua_rawgeti(L, t, 2);
    LOC = lua_gettop(L);
  } else {
    lua_rawgeti(L, c->wl, e + 3);
    B = lua_gettop(L);
    lua_rawgeti(L, c->wl, e + 4);
    LOC = lua_gettop(L);
  }
  if (draft != 7) {
    if (fav_schema_field(L, V, "unevaluatedProperties") != LUA_TNIL)
      n->uprops = fav_schema_child(c, LOC, B, draft, res, depth, "unevaluatedProperties", NULL, 0, -1);
    lua_pop(L, 1);
  }
  n->obj_iter = n->nkeys > 0 || n->npat || n->addl || n->pnames || n->minprops || n->maxprops != (size_t)-1;
  n->req_hashed = n->obj_iter && n->nreq > 0 && n->nreq <= 64;
  if (n->nkeys || n->npat || n->addl || n->pnames || n->minprops || n->maxprops != (size_t)-1 || n->nreq ||
      n->ndepreq || n->ndepsch)
    n->cat |= CAT_OBJ;

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
  lua_settop(L, top);
}

/* ------------------------------------------------------------------ */
/* Validation                                                           */
/* ------------------------------------------------------------------ */

typedef struct fav_seg {
  const char *s; /* key, or NULL for an array index */
  size_t len;
  lua_Integer i; /* 0-based index */
} fav_seg;

typedef struct fav_ann { /* what in-place subschemas evaluated */
  int props;             /* stack index: set of evaluated property keys */
  int citems;            /* stack index: set of 1-based indices (contains) */
  int all_props, all_items;
  size_t items; /* leading items evaluated */
} fav_ann;

typedef struct fav_ref {
  const fav_node *node;
  int depth;
} fav_ref;

typedef struct fav_vs {
  lua_State *L;
  fav_prog *P;
  int K, E;
  int nerr, all, quiet, fatal, formats;
  int depth, maxdepth, eval, nscope, nref;
  const fav_node *scope[FAV_SCHEMA_EVAL];
  fav_ref refs[FAV_SCHEMA_EVAL];
  fav_seg path[FAV_SCHEMA_DEPTH_MAX + 2];
} fav_vs;

static int fav_schema_eval(fav_vs *v, const fav_node *n, int idx, fav_ann *ann);

/* Pushes the JSON Pointer of the current instance location. */
static void fav_schema_pushpath(fav_vs *v) {
  luaL_Buffer b;
  int d;
  luaL_buffinit(v->L, &b);
  for (d = 1; d <= v->depth; d++) {
    const fav_seg *s = &v->path[d];
    luaL_addchar(&b, '/');
    if (s->s) {
      size_t j;
      for (j = 0; j < s->len; j++) {
        if (s->s[j] == '~') luaL_addlstring(&b, "~0", 2);
        else if (s->s[j] == '/') luaL_addlstring(&b, "~1", 2);
        else luaL_addchar(&b, s->s[j]);
      }
    } else {
      char num[32];
      snprintf(num, sizeof num, "%ld", (long)s->i);
      luaL_addstring(&b, num);
    }
  }
  luaL_pushresult(&b);
}

/* Records an error; the message text is at the top (popped). */
static void fav_schema_record(fav_vs *v, const fav_node *n, const char *kw, const char *prop, size_t plen) {
  lua_State *L = v->L;
  int msg = lua_gettop(L);
  if (lua_isnil(L, v->E)) {
    lua_newtable(L);
    lua_replace(L, v->E);
  }
  lua_createtable(L, 0, 6);
  fav_schema_pushpath(v);
  lua_pushvalue(L, -1);
  lua_setfield(L, -3, "path");
  if (lua_rawlen(L, -1) == 0) {
    lua_pop(L, 1);
    lua_pushliteral(L, "/");
  }
  lua_pushliteral(L, ": ");
  lua_pushvalue(L, msg);
  lua_concat(L, 3);
  lua_setfield(L, -2, "message");
  lua_pushvalue(L, msg);
  lua_setfield(L, -2, "reason");
  lua_pushstring(L, kw);
  lua_setfield(L, -2, "keyword");
  if (n->boolean) lua_pushstring(L, n->loc);
  else lua_pushfstring(L, "%s/%s", n->loc, kw);
  lua_setfield(L, -2, "schema_path");
  if (prop) {
    lua_pushlstring(L, prop, plen);
    lua_setfield(L, -2, "property");
  }
  lua_rawseti(L, v->E, ++v->nerr);
  lua_settop(L, msg - 1);
}

/* Records a validation error (not inside anyOf/oneOf/not/if probes). */
static void fav_schema_fail(fav_vs *v, const fav_node *n, const char *kw, const char *prop, size_t plen,
                            const char *fmt, ...) {
  va_list ap;
  if (v->quiet || v->fatal) return;
  va_start(ap, fmt);
  lua_pushvfstring(v->L, fmt, ap);
  va_end(ap);
  fav_schema_record(v, n, kw, prop, plen);
}

/* Records an error that ends validation whatever the context (depth
 * limit, $ref cycle): it replaces any errors gathered so far. */
static void fav_schema_fatal(fav_vs *v, const fav_node *n, const char *kw, const char *fmt, ...) {
  va_list ap;
  if (v->fatal) return;
  lua_pushnil(v->L);
  lua_replace(v->L, v->E);
  v->nerr = 0;
  va_start(ap, fmt);
  lua_pushvfstring(v->L, fmt, ap);
  va_end(ap);
  fav_schema_record(v, n, kw, NULL, 0);
  v->fatal = 1;
}

/* Classifies a table: FT_ARR (keys 1..n, *count = n), FT_OBJ, FT_ARR|FT_OBJ
 * (empty) or FT_BAD (a key that is not a string or a number). */
static unsigned fav_schema_kind(lua_State *L, int idx, size_t *count) {
  size_t n = 0;
  lua_Number max = 0;
  lua_pushnil(L);
  while (lua_next(L, idx)) {
    lua_pop(L, 1);
    if (lua_type(L, -1) == LUA_TNUMBER) {
      lua_Number k = lua_tonumber(L, -1);
      if (k >= 1 && k == floor(k)) {
        n++;
        if (k > max) max = k;
        continue;
      }
      lua_pop(L, 1);
      return FT_OBJ;
    }
    if (lua_type(L, -1) == LUA_TSTRING) {
      lua_pop(L, 1);
      return FT_OBJ;
    }
    lua_pop(L, 1);
    return FT_BAD;
  }
  if (n == 0) return FT_ARR | FT_OBJ;
  if ((lua_Number)n == max) {
    *count = n;
    return FT_ARR;
  }
  return FT_OBJ;
}

static unsigned fav_schema_jtype(lua_State *L, int idx, size_t *count, int need_kind) {
  switch (lua_type(L, idx)) {
    case LUA_TNIL: return FT_NULL;
    case LUA_TBOOLEAN: return FT_BOOL;
    case LUA_TNUMBER: {
      lua_Number x;
#if LUA_VERSION_NUM >= 503
      if (lua_isinteger(L, idx)) return FT_INT | FT_NUM;
#endif
      x = lua_tonumber(L, idx);
      return (x == floor(x) && x - x == 0) ? (FT_INT | FT_NUM) : FT_NUM;
    }
    case LUA_TSTRING: return FT_STR;
    case LUA_TTABLE: return need_kind ? fav_schema_kind(L, idx, count) : FT_TAB;
    case LUA_TLIGHTUSERDATA: return lua_touserdata(L, idx) == NULL ? FT_NULL : FT_BAD;
    default: return FT_BAD;
  }
}

static int fav_schema_isnull(lua_State *L, int i) {
  return lua_isnil(L, i) || (lua_type(L, i) == LUA_TLIGHTUSERDATA && lua_touserdata(L, i) == NULL);
}

/* JSON equality of the values at a and b (absolute indices). */
static int fav_schema_equal(lua_State *L, int a, int b, int depth) {
  int ta = lua_type(L, a), tb = lua_type(L, b);
  size_t na = 0, nb = 0;
  if (fav_schema_isnull(L, a) || fav_schema_isnull(L, b)) return fav_schema_isnull(L, a) && fav_schema_isnull(L, b);
  if (ta != tb) return 0;
  if (ta != LUA_TTABLE) return lua_rawequal(L, a, b);
  if (depth > FAV_SCHEMA_DEPTH_MAX || !lua_checkstack(L, 4)) return 0;
  lua_pushnil(L);
  while (lua_next(L, a)) {
    int eq;
    na++;
    lua_pushvalue(L, -2);
    lua_rawget(L, b);
    eq = !lua_isnil(L, -1) && fav_schema_equal(L, lua_gettop(L) - 1, lua_gettop(L), depth + 1);
    lua_pop(L, 2);
    if (!eq) {
      lua_pop(L, 1);
      return 0;
    }
  }
  lua_pushnil(L);
  while (lua_next(L, b)) {
    nb++;
    lua_pop(L, 1);
  }
  return na == nb;
}

/* Pushes a short JSON-ish rendering of the value at i (for messages). */
static void fav_schema_pushrepr(lua_State *L, int i) {
  switch (lua_type(L, i)) {
    case LUA_TSTRING: lua_pushfstring(L, "\"%s\"", lua_tostring(L, i)); break;
    case LUA_TNUMBER: {
      char b[40];
      lua_pushstring(L, fav_schema_numstr(b, sizeof b, (double)lua_tonumber(L, i)));
      break;
    }
    case LUA_TBOOLEAN: lua_pushstring(L, lua_toboolean(L, i) ? "true" : "false"); break;
    case LUA_TTABLE: lua_pushliteral(L, "{...}"); break;
    default: lua_pushliteral(L, "null"); break;
  }
}

/* Evaluates child node c on the value at vi, one level down (key or index). */
static int fav_schema_down(fav_vs *v, const fav_node *n, const fav_node *c, int vi, const char *k, size_t kl,
                           lua_Integer i) {
  int r;
  if (c->boolean == 1) return 1;
  if (v->depth >= v->maxdepth) {
    fav_schema_fatal(v, n, "depth", "exceeds the maximum depth of %d", v->maxdepth);
    return 0;
  }
  v->depth++;
  v->path[v->depth].s = k;
  v->path[v->depth].len = kl;
  v->path[v->depth].i = i;
  if (c->boolean == 2) {
    if (!v->quiet && !v->fatal) {
      if (k && c->kw && (strcmp(c->kw, "additionalProperties") == 0 || strcmp(c->kw, "unevaluatedProperties") == 0)) {
        lua_pushfstring(v->L, "property \"%s\" is not allowed", k);
        fav_schema_record(v, c, c->kw, k, kl);
      } else {
        lua_pushliteral(v->L, "is not allowed");
        fav_schema_record(v, c, c->kw ? c->kw : "false", NULL, 0);
      }
    }
    r = 0;
  } else {
    r = fav_schema_eval(v, c, vi, NULL);
  }
  v->depth--;
  return r;
}

static int fav_schema_rematch(fav_vs *v, int re, const char *s, size_t n) {
  const fav_re *r = &v->P->re[re];
  int rc;
  if (r->jit) rc = pcre2_jit_match(r->code, (PCRE2_SPTR)s, n, 0, 0, v->P->md, v->P->mctx);
  else rc = pcre2_match(r->code, (PCRE2_SPTR)s, n, 0, PCRE2_NO_UTF_CHECK, v->P->md, v->P->mctx);
  if (rc >= 0) return 1;
  return rc == PCRE2_ERROR_NOMATCH ? 0 : -1;
}

#define FAV_BAIL()                                        \
  do {                                                    \
    ok = 0;                                               \
    if (!v->all || v->quiet || v->fatal) goto done;       \
  } while (0)

static int fav_schema_num(fav_vs *v, const fav_node *n, int idx) {
  lua_State *L = v->L;
  double x = (double)lua_tonumber(L, idx);
  char b[40];
  int ok = 1;
  if ((n->numkw & NK_MIN) && x < n->minimum) {
    fav_schema_fail(v, n, "minimum", NULL, 0, "must be >= %s", fav_schema_numstr(b, sizeof b, n->minimum));
    FAV_BAIL();
  }
  if ((n->numkw & NK_MAX) && x > n->maximum) {
    fav_schema_fail(v, n, "maximum", NULL, 0, "must be <= %s", fav_schema_numstr(b, sizeof b, n->maximum));
    FAV_BAIL();
  }
  if ((n->numkw & NK_XMIN) && x <= n->exmin) {
    fav_schema_fail(v, n, "exclusiveMinimum", NULL, 0, "must be > %s", fav_schema_numstr(b, sizeof b, n->exmin));
    FAV_BAIL();
  }
  if ((n->numkw & NK_XMAX) && x >= n->exmax) {
    fav_schema_fail(v, n, "exclusiveMaximum", NULL, 0, "must be < %s", fav_schema_numstr(b, sizeof b, n->exmax));
    FAV_BAIL();
  }
  if (n->numkw & NK_MULT) {
    int mult;
#if LUA_VERSION_NUM >= 503
    if (lua_isinteger(L, idx) && n->mult == floor(n->mult) && n->mult < 9.2e18) {
      mult = lua_tointeger(L, idx) % (lua_Integer)n->mult == 0;
    } else
#endif
    {
      double q = x / n->mult;
      mult = isfinite(q) && fabs(q - floor(q + 0.5)) <= 1e-9 * (fabs(q) > 1 ? 1 : 1);
      if (!isfinite(q)) mult = 0;
    }
    if (!mult) {
      fav_schema_fail(v, n, "multipleOf", NULL, 0, "must be a multiple of %s", fav_schema_numstr(b, sizeof b, n->mult));
      FAV_BAIL();
    }
  }
done:
  return ok;
}

static int fav_schema_str(fav_vs *v, const fav_node *n, int idx) {
  lua_State *L = v->L;
  size_t len, cps = 0;
  const char *s = lua_tolstring(L, idx, &len);
  int ok = 1, fmt = v->formats ? n->format : 0;
  if (n->strutf || fmt) {
    cps = fav_schema_utf8len(s, len);
    if (cps == (size_t)-1) {
      fav_schema_fail(v, n, "utf8", NULL, 0, "invalid UTF-8 in string");
      return 0;
    }
    if (cps < n->minlen) {
      fav_schema_fail(v, n, "minLength", NULL, 0, "must be at least %d character%s long", (int)n->minlen,
                      n->minlen == 1 ? "" : "s");
      FAV_BAIL();
    }
    if (cps > n->maxlen) {
      fav_schema_fail(v, n, "maxLength", NULL, 0, "must be at most %d character%s long", (int)n->maxlen,
                      n->maxlen == 1 ? "" : "s");
      FAV_BAIL();
    }
  }
  if (n->pattern >= 0) {
    int m = fav_schema_rematch(v, n->pattern, s, len);
    if (m <= 0) {
      if (m == 0) fav_schema_fail(v, n, "pattern", NULL, 0, "does not match the pattern %s", v->P->re[n->pattern].src);
      else fav_schema_fail(v, n, "pattern", NULL, 0, "could not be matched against the pattern %s (match limit)",
                           v->P->re[n->pattern].src);
      FAV_BAIL();
    }
  }
  if (fmt && !fav_schema_format(v->P, fmt, s, len)) {
    fav_schema_fail(v, n, "format", NULL, 0, "must be a valid %s", fav_schema_fmt_nouns[fmt]);
    FAV_BAIL();
  }
done:
  return ok;
}

static int fav_schema_unique(fav_vs *v, size_t count, int idx, size_t *di, size_t *dj) {
  lua_State *L = v->L;
  size_t i, j;
  int set, ok = 1;
  lua_newtable(L);
  set = lua_gettop(L);
  for (i = 1; i <= count && ok; i++) {
    lua_rawgeti(L, idx, (int)i);
    if (lua_type(L, -1) == LUA_TTABLE) {
      for (j = 1; j < i; j++) {
        lua_rawgeti(L, idx, (int)j);
        if (lua_type(L, -1) == LUA_TTABLE && fav_schema_equal(L, lua_gettop(L) - 1, lua_gettop(L), 0)) {
          *di = j, *dj = i, ok = 0;
        }
        lua_pop(L, 1);
        if (!ok) break;
      }
    } else if (!(lua_type(L, -1) == LUA_TNUMBER && lua_tonumber(L, -1) != lua_tonumber(L, -1))) {
      if (lua_isnil(L, -1)) { /* cannot happen in a sequence; be safe */
      } else {
        lua_pushvalue(L, -1);
        lua_rawget(L, set);
        if (!lua_isnil(L, -1)) {
          *di = (size_t)lua_tointeger(L, -1), *dj = i, ok = 0;
        }
        lua_pop(L, 1);
        if (ok) {
          lua_pushvalue(L, -1);
          lua_pushinteger(L, (lua_Integer)i);
          lua_rawset(L, set);
        }
      }
    }
    lua_pop(L, 1);
  }
  lua_settop(L, set - 1);
  return ok;
}

static int fav_schema_arr(fav_vs *v, const fav_node *n, int idx, size_t count, fav_ann *la) {
  lua_State *L = v->L;
  size_t i, np;
  int ok = 1, r;
  if (count < n->minitems) {
    fav_schema_fail(v, n, "minItems", NULL, 0, "must have at least %d item%s", (int)n->minitems,
                    n->minitems == 1 ? "" : "s");
    FAV_BAIL();
  }
  if (count > n->maxitems) {
    fav_schema_fail(v, n, "maxItems", NULL, 0, "must have at most %d item%s", (int)n->maxitems,
                    n->maxitems == 1 ? "" : "s");
    FAV_BAIL();
  }
  np = (size_t)n->nprefix < count ? (size_t)n->nprefix : count;
  for (i = 0; i < np; i++) {
    lua_rawgeti(L, idx, (int)(i + 1));
    r = fav_schema_down(v, n, n->prefix[i], lua_gettop(L), NULL, 0, (lua_Integer)i);
    lua_pop(L, 1);
    if (!r) FAV_BAIL();
  }
  if (la && np > la->items) la->items = np;
  if (n->items) {
    for (i = (size_t)n->nprefix; i < count; i++) {
      lua_rawgeti(L, idx, (int)(i + 1));
      r = fav_schema_down(v, n, n->items, lua_gettop(L), NULL, 0, (lua_Integer)i);
      lua_pop(L, 1);
      if (!r) FAV_BAIL();
    }
    if (la) la->all_items = 1;
  }
  if (n->contains) {
    size_t m = 0;
    v->quiet++;
    for (i = 0; i < count; i++) {
      lua_rawgeti(L, idx, (int)(i + 1));
      r = fav_schema_down(v, n, n->contains, lua_gettop(L), NULL, 0, (lua_Integer)i);
      lua_pop(L, 1);
      if (v->fatal) break;
      if (r) {
        m++;
        if (la) {
          lua_pushboolean(L, 1);
          lua_rawseti(L, la->citems, (int)(i + 1));
        }
        if (!la && m >= n->mincontains && n->maxcontains == (size_t)-1) break;
      }
    }
    v->quiet--;
    if (v->fatal) FAV_BAIL();
    if (m < n->mincontains) {
      if (n->mincontains == 1)
        fav_schema_fail(v, n, "contains", NULL, 0, "must contain at least one item matching the contains schema");
      else
        fav_schema_fail(v, n, "minContains", NULL, 0, "must contain at least %d items matching the contains schema",
                        (int)n->mincontains);
      FAV_BAIL();
    }
    if (m > n->maxcontains) {
      fav_schema_fail(v, n, "maxContains", NULL, 0, "must contain at most %d item%s matching the contains schema",
                      (int)n->maxcontains, n->maxcontains == 1 ? "" : "s");
      FAV_BAIL();
    }
  }
  if (n->unique && count > 1) {
    size_t a = 0, b = 0;
    if (!fav_schema_unique(v, count, idx, &a, &b)) {
      fav_schema_fail(v, n, "uniqueItems", NULL, 0, "must not contain duplicate items (items %d and %d are equal)",
                      (int)a - 1, (int)b - 1);
      FAV_BAIL();
    }
  }
done:
  return ok;
}

static const fav_pent *fav_schema_lookup(const fav_node *n, const char *k, size_t kl) {
  uint32_t h = fav_schema_hash(k, kl), i = h & n->kmask;
  int e;
  while ((e = n->ktab[i]) != 0) {
    const fav_pent *p = &n->keys[e - 1];
    if (p->h == h && p->len == kl && memcmp(p->name, k, kl) == 0) return p;
    i = (i + 1) & n->kmask;
  }
  return NULL;
}

static int fav_schema_obj(fav_vs *v, const fav_node *n, int idx, unsigned t, fav_ann *la) {
  lua_State *L = v->L;
  uint64_t seen = 0;
  size_t nkeys = 0;
  int ok = 1, r, i, top = lua_gettop(L);
  if (!(t & FT_ARR) && n->obj_iter) {
    lua_pushnil(L);
    while (lua_next(L, idx)) {
      int vi = lua_gettop(L), kt = lua_type(L, vi - 1), matched = 0;
      const char *k;
      size_t kl;
      if (kt == LUA_TSTRING) {
        k = lua_tolstring(L, vi - 1, &kl);
      } else if (kt == LUA_TNUMBER) {
        lua_pushvalue(L, vi - 1);
        k = lua_tolstring(L, -1, &kl);
      } else {
        fav_schema_fail(v, n, "type", NULL, 0, "has a key of type %s, which JSON cannot hold", lua_typename(L, kt));
        ok = 0;
        goto done;
      }
      nkeys++;
      if (n->ktab) {
        const fav_pent *p = fav_schema_lookup(n, k, kl);
        if (p) {
          if (p->req >= 0) seen |= (uint64_t)1 << p->req;
          if (p->node) {
            matched = 1;
            r = fav_schema_down(v, n, p->node, vi, k, kl, 0);
            if (!r) FAV_BAIL();
          }
        }
      }
      if (n->npat) {
        if (fav_schema_utf8len(k, kl) == (size_t)-1) {
          fav_schema_fail(v, n, "utf8", NULL, 0, "invalid UTF-8 in a property name");
          FAV_BAIL();
        } else {
          for (i = 0; i < n->npat; i++) {
            int m = fav_schema_rematch(v, n->patre[i], k, kl);
            if (m < 0) {
              fav_schema_fail(v, n, "patternProperties", k, kl, "property name could not be matched (match limit)");
              FAV_BAIL();
            } else if (m) {
              matched = 1;
              r = fav_schema_down(v, n, n->patnodes[i], vi, k, kl, 0);
              if (!r) FAV_BAIL();
            }
          }
        }
      }
      if (!matched && n->addl) {
        matched = 1;
        r = fav_schema_down(v, n, n->addl, vi, k, kl, 0);
        if (!r) FAV_BAIL();
      }
      if (la && matched && !la->all_props) {
        lua_pushvalue(L, vi - 1);
        lua_pushboolean(L, 1);
        lua_rawset(L, la->props);
      }
      if (n->pnames) {
        lua_pushlstring(L, k, kl);
        v->quiet++;
        r = fav_schema_eval(v, n->pnames, lua_gettop(L), NULL);
        v->quiet--;
        lua_pop(L, 1);
        if (!r) {
          fav_schema_fail(v, n, "propertyNames", k, kl, "property name \"%s\" is not valid", k);
          FAV_BAIL();
        }
      }
      lua_settop(L, vi - 1);
    }
  }
  if (nkeys < n->minprops) {
    fav_schema_fail(v, n, "minProperties", NULL, 0, "must have at least %d propert%s", (int)n->minprops,
                    n->minprops == 1 ? "y" : "ies");
    FAV_BAIL();
  }
  if (nkeys > n->maxprops) {
    fav_schema_fail(v, n, "maxProperties", NULL, 0, "must have at most %d propert%s", (int)n->maxprops,
                    n->maxprops == 1 ? "y" : "ies");
    FAV_BAIL();
  }
  if (n->nreq) {
    if (n->req_hashed) {
      for (i = 0; i < n->nreq; i++) {
        if (!((seen >> i) & 1)) {
          fav_schema_fail(v, n, "required", n->req[i], strlen(n->req[i]), "missing required property \"%s\"", n->req[i]);
          FAV_BAIL();
        }
      }
    } else {
      lua_rawgeti(L, v->K, n->req_k);
      for (i = 0; i < n->nreq; i++) {
        lua_rawgeti(L, -1, i + 1);
        lua_rawget(L, idx);
        r = !lua_isnil(L, -1);
        lua_pop(L, 1);
        if (!r) {
          fav_schema_fail(v, n, "required", n->req[i], strlen(n->req[i]), "missing required property \"%s\"", n->req[i]);
          FAV_BAIL();
        }
      }
      lua_pop(L, 1);
    }
  }
  for (i = 0; i < n->ndepreq; i++) {
    const fav_dep *d = &n->depreq[i];
    int j;
    lua_pushlstring(L, d->name, d->len);
    lua_rawget(L, idx);
    r = lua_isnil(L, -1);
    lua_pop(L, 1);
    if (r) continue;
    for (j = 0; j < d->n; j++) {
      lua_pushlstring(L, d->names[j], d->lens[j]);
      lua_rawget(L, idx);
      r = lua_isnil(L, -1);
      lua_pop(L, 1);
      if (r) {
        fav_schema_fail(v, n, n->depreq_kw, d->names[j], d->lens[j],
                        "missing property \"%s\", required when \"%s\" is present", d->names[j], d->name);
        FAV_BAIL();
      }
    }
  }
  for (i = 0; i < n->ndepsch; i++) {
    const fav_dep *d = &n->depsch[i];
    lua_pushlstring(L, d->name, d->len);
    lua_rawget(L, idx);
    r = lua_isnil(L, -1);
    lua_pop(L, 1);
    if (r) continue;
    if (!fav_schema_eval(v, d->node, idx, la)) FAV_BAIL();
  }
done:
  lua_settop(L, top);
  return ok;
}

static void fav_schema_ann_new(lua_State *L, fav_ann *a) {
  lua_newtable(L);
  a->props = lua_gettop(L);
  lua_newtable(L);
  a->citems = lua_gettop(L);
  a->all_props = a->all_items = 0;
  a->items = 0;
}

static void fav_schema_ann_merge(lua_State *L, fav_ann *d, const fav_ann *s) {
  if (s->all_props) d->all_props = 1;
  if (s->all_items) d->all_items = 1;
  if (s->items > d->items) d->items = s->items;
  if (!d->all_props) {
    lua_pushnil(L);
    while (lua_next(L, s->props)) {
      lua_pushvalue(L, -2);
      lua_insert(L, -2);
      lua_rawset(L, d->props);
    }
  }
  if (!d->all_items) {
    lua_pushnil(L);
    while (lua_next(L, s->citems)) {
      lua_pushvalue(L, -2);
      lua_insert(L, -2);
      lua_rawset(L, d->citems);
    }
  }
}

/* Follows a $ref/$dynamicRef to `to`, refusing a cycle without progress. */
static int fav_schema_follow(fav_vs *v, const fav_node *from, const fav_node *to, int idx, fav_ann *la,
                             const char *kw, const char *ref) {
  int i, r;
  for (i = v->nref - 1; i >= 0 && v->refs[i].depth == v->depth; i--) {
    if (v->refs[i].node == to) {
      fav_schema_fatal(v, from, kw, "%s cycle without progress: \"%s\" leads back to itself on the same value", kw, ref);
      return 0;
    }
  }
  if (v->nref >= FAV_SCHEMA_EVAL) {
    fav_schema_fatal(v, from, "depth", "schema recursion is too deep");
    return 0;
  }
  v->refs[v->nref].node = to;
  v->refs[v->nref].depth = v->depth;
  v->nref++;
  r = fav_schema_eval(v, to, idx, la);
  v->nref--;
  return r;
}

/* Evaluates an in-place branch quietly; merges its annotations into la
 * when it passes. */
static int fav_schema_probe(fav_vs *v, const fav_node *c, int idx, fav_ann *la) {
  lua_State *L = v->L;
  int r, top = lua_gettop(L);
  fav_ann tmp;
  v->quiet++;
  if (la) {
    fav_schema_ann_new(L, &tmp);
    r = fav_schema_eval(v, c, idx, &tmp);
    if (r) fav_schema_ann_merge(L, la, &tmp);
  } else {
    r = fav_schema_eval(v, c, idx, NULL);
  }
  v->quiet--;
  lua_settop(L, top);
  return r;
}

static int fav_schema_app(fav_vs *v, const fav_node *n, int idx, fav_ann *la) {
  int ok = 1, r, i;
  if (n->ref) {
    if (!fav_schema_follow(v, n, n->ref, idx, la, "$ref", n->ref_str)) FAV_BAIL();
  }
  if (n->dynref) {
    const fav_node *to = n->dynref;
    if (n->dynbook) {
      int s, d;
      for (s = 0; s < v->nscope; s++) {
        const fav_node *rs = v->scope[s];
        for (d = 0; d < rs->ndyn; d++) {
          if (strcmp(rs->dyn[d].name, n->dynref_name) == 0) {
            to = rs->dyn[d].node;
            goto found;
          }
        }
      }
    }
  found:
    if (!fav_schema_follow(v, n, to, idx, la, "$dynamicRef", n->dynref_str)) FAV_BAIL();
  }
  for (i = 0; i < n->nallof; i++) {
    if (!fav_schema_eval(v, n->allof[i], idx, la)) FAV_BAIL();
  }
  if (n->nanyof) {
    int any = 0;
    for (i = 0; i < n->nanyof && !v->fatal; i++) {
      if (fav_schema_probe(v, n->anyof[i], idx, la)) {
        any = 1;
        if (!la) break;
      }
    }
    if (!any) {
      fav_schema_fail(v, n, "anyOf", NULL, 0, "must match at least one of the anyOf schemas");
      FAV_BAIL();
    }
  }
  if (n->noneof) {
    int m = 0, a = -1, b = -1;
    for (i = 0; i < n->noneof && !v->fatal; i++) {
      if (fav_schema_probe(v, n->oneof[i], idx, m == 0 ? la : NULL)) {
        m++;
        if (a < 0) a = i;
        else if (b < 0) b = i;
        if (m > 1) break;
      }
    }
    if (m == 0) {
      fav_schema_fail(v, n, "oneOf", NULL, 0, "must match exactly one of the oneOf schemas (it matches none)");
      FAV_BAIL();
    } else if (m > 1) {
      fav_schema_fail(v, n, "oneOf", NULL, 0, "must match exactly one of the oneOf schemas (it matches schemas %d and %d)", a, b);
      FAV_BAIL();
    }
  }
  if (n->not_) {
    v->quiet++;
    r = fav_schema_eval(v, n->not_, idx, NULL);
    v->quiet--;
    if (r && !v->fatal) {
      fav_schema_fail(v, n, "not", NULL, 0, "must not match the schema in not");
      FAV_BAIL();
    }
  }
  if (n->if_) {
    r = fav_schema_probe(v, n->if_, idx, la);
    if (v->fatal) FAV_BAIL();
    if (r && n->then_) {
      if (!fav_schema_eval(v, n->then_, idx, la)) FAV_BAIL();
    } else if (!r && n->else_) {
      if (!fav_schema_eval(v, n->else_, idx, la)) FAV_BAIL();
    }
  }
done:
  return ok;
}

static int fav_schema_uneval(fav_vs *v, const fav_node *n, int idx, unsigned t, size_t count, fav_ann *la) {
  lua_State *L = v->L;
  int ok = 1, r, top = lua_gettop(L);
  if (n->uitems && (t & FT_ARR)) {
    size_t i;
    for (i = 0; i < count; i++) {
      if (la->all_items || i < la->items) continue;
      lua_rawgeti(L, la->citems, (int)(i + 1));
      r = lua_isnil(L, -1);
      lua_pop(L, 1);
      if (!r) continue;
      lua_rawgeti(L, idx, (int)(i + 1));
      r = fav_schema_down(v, n, n->uitems, lua_gettop(L), NULL, 0, (lua_Integer)i);
      lua_pop(L, 1);
      if (!r) FAV_BAIL();
    }
    la->all_items = 1;
  }
  if (n->uprops && (t & FT_OBJ) && !(t & FT_ARR) && !la->all_props) {
    lua_pushnil(L);
    while (lua_next(L, idx)) {
      int vi = lua_gettop(L);
      const char *k;
      size_t kl;
      lua_pushvalue(L, vi - 1);
      lua_rawget(L, la->props);
      r = lua_isnil(L, -1);
      lua_pop(L, 1);
      if (r) {
        lua_pushvalue(L, vi - 1);
        k = lua_tolstring(L, -1, &kl);
        r = fav_schema_down(v, n, n->uprops, vi, k, kl, 0);
        if (!r) FAV_BAIL();
      }
      lua_settop(L, vi - 1);
    }
  }
  if (n->uprops) la->all_props = 1;
done:
  lua_settop(L, top);
  return ok;
}

/* Evaluates node n against the value at absolute index idx. ann, when not
 * NULL, collects what n evaluated (for unevaluated* of an enclosing node).
 * Returns 1 valid, 0 invalid. Leaves the stack as found. Raises only on
 * out-of-memory. */
static int fav_schema_eval(fav_vs *v, const fav_node *n, int idx, fav_ann *ann) {
  lua_State *L = v->L;
  int ok = 1, top, pushed = 0;
  unsigned t;
  size_t count = 0;
  fav_ann local, *la = ann;
  if (n->boolean) {
    if (n->boolean == 1) return 1;
    if (!v->quiet && !v->fatal) {
      lua_pushliteral(L, "is not allowed");
      fav_schema_record(v, n, n->kw ? n->kw : "false", NULL, 0);
    }
    return 0;
  }
  if (v->eval >= FAV_SCHEMA_EVAL || !lua_checkstack(L, 16)) {
    fav_schema_fatal(v, n, "depth", "schema evaluation is too deep");
    return 0;
  }
  v->eval++;
  top = lua_gettop(L);
  if (n->res && (v->nscope == 0 || v->scope[v->nscope - 1] != n->res)) {
    v->scope[v->nscope++] = n->res;
    pushed = 1;
  }
  t = fav_schema_jtype(L, idx, &count, n->needs_kind);
  if (t & FT_BAD) {
    fav_schema_fail(v, n, "type", NULL, 0, "is a Lua %s, not a JSON value", luaL_typename(L, idx));
    ok = 0;
    goto done;
  }
  if (n->uprops || n->uitems) {
    fav_schema_ann_new(L, &local);
    la = &local;
  }
  if (n->types && !(n->types & t)) {
    static const char *const tn[] = {"null", "boolean", "integer", "number", "string", "array", "object"};
    char want[80];
    const char *got;
    int k;
    want[0] = '\0';
    for (k = 0; k < 7; k++) {
      if (k == 2 && (n->types & FT_NUM)) continue;
      if (n->types & (1u << k)) {
        if (want[0]) strcat(want, " or ");
        strcat(want, tn[k]);
      }
    }
    got = (t & FT_ARR) ? "array" : (t & FT_OBJ) ? "object" : (t & FT_TAB) ? "table" : (t & FT_INT) ? "integer"
        : (t & FT_NUM) ? "number" : (t & FT_STR) ? "string" : (t & FT_BOOL) ? "boolean" : "null";
    fav_schema_fail(v, n, "type", NULL, 0, "must be %s, got %s", want, got);
    FAV_BAIL();
  }
  if (n->enum_k) {
    int found = 0;
    if (n->enumset_k && lua_type(L, idx) != LUA_TTABLE) {
      lua_rawgeti(L, v->K, n->enumset_k);
      if (lua_isnil(L, idx)) lua_pushlightuserdata(L, NULL);
      else lua_pushvalue(L, idx);
      lua_rawget(L, -2);
      found = !lua_isnil(L, -1);
      lua_pop(L, 2);
    }
    if (!found && (lua_type(L, idx) == LUA_TTABLE || !n->enumset_k)) {
      int i, a;
      lua_rawgeti(L, v->K, n->enum_k);
      a = lua_gettop(L);
      for (i = 1;; i++) {
        lua_rawgeti(L, a, i);
        if (lua_isnil(L, -1)) {
          lua_pop(L, 1);
          break;
        }
        found = fav_schema_equal(L, idx, lua_gettop(L), 0);
        lua_pop(L, 1);
        if (found) break;
      }
      lua_pop(L, 1);
    }
    if (!found) {
      if (!v->quiet && !v->fatal) {
        luaL_Buffer b;
        int i, a;
        lua_rawgeti(L, v->K, n->enum_k);
        a = lua_gettop(L);
        luaL_buffinit(L, &b);
        luaL_addstring(&b, "must be one of: ");
        for (i = 1; i <= 20 && i <= (int)lua_rawlen(L, a); i++) {
          if (i > 1) luaL_addstring(&b, ", ");
          lua_rawgeti(L, a, i);
          fav_schema_pushrepr(L, lua_gettop(L));
          lua_remove(L, -2);
          luaL_addvalue(&b);
        }
        if (lua_rawlen(L, a) > 20) luaL_addstring(&b, ", ...");
        luaL_pushresult(&b);
        lua_remove(L, a);
        fav_schema_record(v, n, "enum", NULL, 0);
      }
      FAV_BAIL();
    }
  }
  if (n->const_k) {
    int eq;
    lua_rawgeti(L, v->K, n->const_k);
    eq = fav_schema_equal(L, idx, lua_gettop(L), 0);
    if (!eq && !v->quiet && !v->fatal) {
      fav_schema_pushrepr(L, lua_gettop(L));
      lua_pushfstring(L, "must be equal to %s", lua_tostring(L, -1));
      lua_remove(L, -2);
      lua_remove(L, -2);
      fav_schema_record(v, n, "const", NULL, 0);
    } else {
      lua_pop(L, 1);
    }
    if (!eq) FAV_BAIL();
  }
  if ((t & FT_NUM) && (n->cat & CAT_NUM)) {
    if (!fav_schema_num(v, n, idx)) FAV_BAIL();
  }
  if (t == FT_STR && (n->cat & CAT_STR)) {
    if (!fav_schema_str(v, n, idx)) FAV_BAIL();
  }
  if ((t & FT_ARR) && (n->cat & CAT_ARR)) {
    if (!fav_schema_arr(v, n, idx, count, la)) FAV_BAIL();
  }
  if ((t & FT_OBJ) && (n->cat & CAT_OBJ)) {
    if (!fav_schema_obj(v, n, idx, t, la)) FAV_BAIL();
  }
  if (n->cat & CAT_APP) {
    if (!fav_schema_app(v, n, idx, la)) FAV_BAIL();
  }
  if (la != ann) {
    if (!fav_schema_uneval(v, n, idx, t, count, la)) FAV_BAIL();
    if (ann) fav_schema_ann_merge(L, ann, la);
  }
done:
  lua_settop(L, top);
  if (pushed) v->nscope--;
  v->eval--;
  return ok;
}

/* ------------------------------------------------------------------ */
/* Lua API                                                              */
/* ------------------------------------------------------------------ */

static fav_prog *fav_schema_check(lua_State *L) {
  fav_prog *P = (fav_prog *)luaL_checkudata(L, 1, FAV_SCHEMA_MT);
  if (P->root == NULL) luaL_error(L, "attempt to use a closed or unfinished validator");
  return P;
}

/* validator:validate(value) / validator(value) -> true | false, errors */
static int fav_schema_validate_l(lua_State *L) {
  fav_prog *P = fav_schema_check(L);
  fav_vs vs, *v = &vs; /* on the C stack: nothing to free if we raise */
  int ok;
  lua_settop(L, 2);
  fav_schema_getuv(L, 1); /* 3: constants */
  lua_pushnil(L);         /* 4: errors */
  v->L = L;
  v->P = P;
  v->K = 3;
  v->E = 4;
  v->nerr = 0;
  v->all = P->all;
  v->quiet = 0;
  v->fatal = 0;
  v->formats = P->formats;
  v->depth = 0;
  v->maxdepth = P->maxdepth;
  v->eval = 0;
  v->nscope = 0;
  v->nref = 0;
  ok = fav_schema_eval(v, P->root, 2, NULL);
  if (ok && !v->fatal) {
    lua_pushboolean(L, 1);
    return 1;
  }
  lua_pushboolean(L, 0);
  if (lua_isnil(L, 4)) {
    lua_createtable(L, 1, 0);
    lua_createtable(L, 0, 5);
    lua_pushliteral(L, "");
    lua_setfield(L, -2, "path");
    lua_pushliteral(L, "false");
    lua_setfield(L, -2, "keyword");
    lua_pushstring(L, P->root->loc);
    lua_setfield(L, -2, "schema_path");
    lua_pushliteral(L, "/: is not allowed");
    lua_setfield(L, -2, "message");
    lua_rawseti(L, -2, 1);
  } else {
    lua_pushvalue(L, 4);
  }
  return 2;
}

static int fav_schema_gc_l(lua_State *L) {
  fav_prog *P = (fav_prog *)luaL_checkudata(L, 1, FAV_SCHEMA_MT);
  fav_schema_freeprog(P);
  return 0;
}

static int fav_schema_tostring_l(lua_State *L) {
  fav_prog *P = (fav_prog *)luaL_checkudata(L, 1, FAV_SCHEMA_MT);
  if (P->root) lua_pushfstring(L, "favcrm.Validator (%p)", (void *)P);
  else lua_pushliteral(L, "favcrm.Validator (closed)");
  return 1;
}

/* The protected part of compile. Stack: 1 userdata, 2 schema, 3 opts
 * (table or nil). Everything allocated is attached to the userdata. */
static int fav_schema_compile_p(lua_State *L) {
  fav_cc c;
  fav_prog *P = (fav_prog *)lua_touserdata(L, 1);
  int draft = 20, base, loc;
  memset(&c, 0, sizeof c);
  c.L = L;
  c.P = P;
  c.maxdepth = P->maxdepth;
  if (lua_istable(L, 3)) {
    lua_getfield(L, 3, "draft");
    if (lua_type(L, -1) == LUA_TSTRING) {
      const char *d = lua_tostring(L, -1);
      c.forced = (strstr(d, "7") != NULL) ? 7 : 20;
    }
    lua_pop(L, 1);
    lua_getfield(L, 3, "remotes");
    if (lua_istable(L, -1)) c.remotes = lua_gettop(L);
    else lua_pop(L, 1);
    lua_getfield(L, 3, "resolve_remote");
    if (lua_isfunction(L, -1)) c.resolver = lua_gettop(L);
    else lua_pop(L, 1);
  }
  P->md = pcre2_match_data_create(1, NULL);
  P->mctx = pcre2_match_context_create(NULL);
  P->cctx = pcre2_compile_context_create(NULL);
  if (!P->md || !P->mctx || !P->cctx) return luaL_error(L, "favcrm.schema: out of memory");
  pcre2_set_match_limit(P->mctx, FAV_SCHEMA_MATCH_LIMIT);
#ifdef PCRE2_EXTRA_ALT_BSUX
  pcre2_set_compile_extra_options(P->cctx, PCRE2_EXTRA_ALT_BSUX);
#endif
  lua_newtable(L);
  c.res = lua_gettop(L);
  lua_newtable(L);
  c.anchors = lua_gettop(L);
  lua_newtable(L);
  c.info = lua_gettop(L);
  lua_newtable(L);
  c.dyn = lua_gettop(L);
  lua_newtable(L);
  c.memo = lua_gettop(L);
  lua_newtable(L);
  c.wl = lua_gettop(L);
  lua_newtable(L);
  c.loaded = lua_gettop(L);
  fav_schema_getuv(L, 1);
  c.K = lua_gettop(L);
  if (c.forced) draft = c.forced;
  else if (lua_istable(L, 2)) draft = fav_schema_dialect(&c, 2, 20);
  if (lua_istable(L, 3)) {
    lua_getfield(L, 3, "base_uri");
    if (lua_type(L, -1) != LUA_TSTRING) {
      lua_pop(L, 1);
      lua_pushliteral(L, "");
    }
  } else {
    lua_pushliteral(L, "");
  }
  base = lua_gettop(L);
  lua_pushvalue(L, base);
  lua_pushvalue(L, 2);
  lua_rawset(L, c.res);
  lua_pushliteral(L, "");
  loc = lua_gettop(L);
  fav_schema_index(&c, 2, base, loc, 2, draft, 0);
  {
    fav_node *root = fav_schema_node_for(&c, 2, base, loc, draft, NULL, 0, NULL);
    int i;
    for (i = 0; i < c.nwl; i++) fav_schema_build(&c, i * 7);
    P->root = root;
  }
  return 0;
}

/* core.schema_compile(schema, opts) -> validator | nil, err
 * schema: a table, a boolean or a JSON string (decoded with cjson).
 * Misuse raises; an invalid schema returns nil, {code="invalid_schema",
 * message, schema_path}. */
static int fav_schema_compile_l(lua_State *L) {
  fav_prog *P;
  int t = lua_type(L, 1), st;
  if (t != LUA_TTABLE && t != LUA_TBOOLEAN && t != LUA_TSTRING)
    return luaL_error(L, "bad argument #1 to 'compile' (table or JSON string expected, got %s)",
                      lua_typename(L, t));
  if (!lua_isnoneornil(L, 2) && !lua_istable(L, 2))
    return luaL_error(L, "bad argument #2 to 'compile' (table of options expected, got %s)", luaL_typename(L, 2));
  lua_settop(L, 2);
  if (t == LUA_TSTRING) { /* decode with cjson */
    lua_getglobal(L, "require");
    lua_pushliteral(L, "cjson");
    lua_call(L, 1, 1);
    lua_getfield(L, -1, "decode");
    lua_pushvalue(L, 1);
    if (lua_pcall(L, 1, 1, 0) != LUA_OK) {
      fav_pushfail(L, FAV_EINVALID_SCHEMA, "invalid schema at /: not valid JSON (%s)", lua_tostring(L, -1));
      lua_pushliteral(L, "");
      lua_setfield(L, -2, "schema_path");
      return 2;
    }
    lua_replace(L, 1);
    lua_settop(L, 2);
  }
  P = (fav_prog *)lua_newuserdatauv(L, sizeof(fav_prog), 1);
  memset(P, 0, sizeof *P);
  luaL_getmetatable(L, FAV_SCHEMA_MT);
  lua_setmetatable(L, -2);
  lua_newtable(L);
  fav_schema_setuv(L, -2); /* 3: userdata with its constants table */
  P->formats = 1;
  P->maxdepth = FAV_SCHEMA_DEPTH;
  if (lua_istable(L, 2)) {
    lua_getfield(L, 2, "draft");
    if (!lua_isnil(L, -1)) {
      const char *d = lua_tostring(L, -1);
      if (lua_type(L, -1) != LUA_TSTRING ||
          (strcmp(d, "draft7") && strcmp(d, "draft-07") && strcmp(d, "7") && strcmp(d, "2020-12") &&
           strcmp(d, "draft2020-12") && strcmp(d, "draft2020")))
        return luaL_error(L, "bad argument #2 to 'compile' (opts.draft must be \"draft7\" or \"2020-12\")");
    }
    lua_pop(L, 1);
    lua_getfield(L, 2, "all_errors");
    P->all = lua_toboolean(L, -1);
    lua_pop(L, 1);
    lua_getfield(L, 2, "formats");
    if (lua_type(L, -1) == LUA_TBOOLEAN) P->formats = lua_toboolean(L, -1);
    lua_pop(L, 1);
    lua_getfield(L, 2, "max_depth");
    if (!lua_isnil(L, -1)) {
      lua_Number d = lua_tonumber(L, -1);
      if (lua_type(L, -1) != LUA_TNUMBER || d < 1 || d > FAV_SCHEMA_DEPTH_MAX || d != floor(d))
        return luaL_error(L, "bad argument #2 to 'compile' (opts.max_depth must be an integer from 1 to %d)",
                          FAV_SCHEMA_DEPTH_MAX);
      P->maxdepth = (int)d;
    }
    lua_pop(L, 1);
  }
  lua_pushcfunction(L, fav_schema_compile_p);
  lua_pushvalue(L, 3);
  lua_pushvalue(L, 1);
  lua_pushvalue(L, 2);
  st = lua_pcall(L, 3, 0, 0);
  if (st != LUA_OK) {
    fav_schema_freeprog(P);
    if (lua_istable(L, -1)) {
      lua_getfield(L, -1, "code");
      if (lua_type(L, -1) == LUA_TSTRING && strcmp(lua_tostring(L, -1), "invalid_schema") == 0) {
        lua_pop(L, 1);
        lua_pushnil(L);
        lua_insert(L, -2);
        return 2;
      }
      lua_pop(L, 1);
    }
    return lua_error(L);
  }
  lua_settop(L, 3);
  return 1;
}

/* Takes the module table at the top; adds schema_compile and registers the
 * favcrm.Validator metatable. Leaves the stack as found. */
int fav_schema_open(lua_State *L) {
  static const luaL_Reg methods[] = {
    {"validate", fav_schema_validate_l},
    {NULL, NULL}
  };
  static const luaL_Reg meta[] = {
    {"__call", fav_schema_validate_l},
    {"__gc", fav_schema_gc_l},
    {"__tostring", fav_schema_tostring_l},
    {NULL, NULL}
  };
  fav_newclass(L, FAV_SCHEMA_MT, methods, meta, NULL);
  lua_pop(L, 1);
  lua_pushcfunction(L, fav_schema_compile_l);
  lua_setfield(L, -2, "schema_compile");
  return 0;
}

/* schema_eval.c: validation. Walks a Lua value on the stack against the
 * compiled nodes; allocates nothing with malloc (state on the C stack and
 * in Lua values). See schema.h. */
#include "schema.h"

/* ------------------------------------------------------------------ */
/* Validation                                                           */
/* ------------------------------------------------------------------ */


/* hot helpers inlined where they are called (GCC and Clang) */
#if defined(__GNUC__)
#define FAV_INLINE inline __attribute__((always_inline))
#else
#define FAV_INLINE inline
#endif

/* Writes the JSON Pointer of the nseg segments at segs into buf
 * (NUL-terminated); returns its length, or (size_t)-1 when it does not fit. */
static size_t fav_schema_segstr(const fav_seg *segs, int nseg, char *buf, size_t cap) {
  size_t o = 0;
  int d;
  for (d = 0; d < nseg; d++) {
    const fav_seg *s = &segs[d];
    if (o + 1 >= cap) return (size_t)-1;
    buf[o++] = '/';
    if (s->s) {
      size_t j;
      for (j = 0; j < s->len; j++) {
        char ch = s->s[j];
        if (o + 3 >= cap) return (size_t)-1;
        if (ch == '~') buf[o++] = '~', buf[o++] = '0';
        else if (ch == '/') buf[o++] = '~', buf[o++] = '1';
        else buf[o++] = ch;
      }
    } else {
      int k = snprintf(buf + o, cap - o, "%ld", (long)s->i);
      if (k < 0 || (size_t)k >= cap - o) return (size_t)-1;
      o += (size_t)k;
    }
  }
  buf[o] = '\0';
  return o;
}

/* The JSON Pointer of the current instance location (fav_schema_segstr). */
static size_t fav_schema_pathstr(const fav_vs *v, char *buf, size_t cap) {
  return fav_schema_segstr(&v->path[1], v->depth, buf, cap);
}

/* Pushes the JSON Pointer of the current instance location. */
static void fav_schema_pushpath(fav_vs *v) {
  char small[256];
  size_t n = fav_schema_pathstr(v, small, sizeof small);
  luaL_Buffer b;
  int d;
  if (n != (size_t)-1) {
    lua_pushlstring(v->L, small, n);
    return;
  }
  luaL_buffinit(v->L, &b); /* a long path: the general way */
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

/* Pushes the string s (n bytes): the one kept in constant slot k (whose
 * bytes are *cs, *cl bytes, or NULL) when it has these bytes, else a new
 * one, which then replaces it there. check returns the same path and
 * reason call after call: pushed from the slot, they are not hashed,
 * interned and collected again each time. */
void fav_schema_pushcached(lua_State *L, int K, int k, const char **cs, size_t *cl, const char *s, size_t n) {
  if (*cs && *cl == n && memcmp(*cs, s, n) == 0) {
    lua_rawgeti(L, K, k);
    return;
  }
  lua_pushlstring(L, s, n);
  *cs = lua_tolstring(L, -1, cl); /* anchored in K by the rawseti below */
  lua_pushvalue(L, -1);
  lua_rawseti(L, K, k);
}

/* check: pushes the first error's path (v->cseg, v->cpath or the slot
 * FAV_K_LASTPATH, see fav_vs.check). A path of the validator's own names
 * equal, segment by segment, to the last one pushed is that string again:
 * no bytes built or compared. */
void fav_schema_pushcpath(fav_vs *v) {
  lua_State *L = v->L;
  fav_prog *P = v->P;
  int d, n = v->cseg_n;
  if (n >= 0) {
    if (P->lastseg_n == n) {
      for (d = 0; d < n; d++) {
        const fav_seg *a = &v->cseg[d], *b = &P->lastseg[d];
        if (a->s != b->s || a->len != b->len || (!a->s && a->i != b->i)) break;
      }
      if (d == n) {
        lua_rawgeti(L, v->K, FAV_K_LASTPATH);
        return;
      }
    }
    v->cpl = fav_schema_segstr(v->cseg, n, v->cpath, sizeof v->cpath);
    if (v->cpl != (size_t)-1) {
      fav_schema_pushcached(L, v->K, FAV_K_LASTPATH, &P->lastpath, &P->lastpl, v->cpath, v->cpl);
      memcpy(P->lastseg, v->cseg, (size_t)n * sizeof(fav_seg));
      P->lastseg_n = n;
      return;
    }
    /* longer than the buffer (8 long names): the general way */
    v->depth = n;
    memcpy(&v->path[1], v->cseg, (size_t)n * sizeof(fav_seg));
    fav_schema_pushpath(v);
    P->lastpath = lua_tolstring(L, -1, &P->lastpl);
    P->lastseg_n = -1;
    lua_pushvalue(L, -1);
    lua_rawseti(L, v->K, FAV_K_LASTPATH);
    return;
  }
  if (v->cpl == (size_t)-1) { /* stored by fav_schema_record_s */
    lua_rawgeti(L, v->K, FAV_K_LASTPATH);
    return;
  }
  if (!(P->lastpath && P->lastpl == v->cpl && memcmp(P->lastpath, v->cpath, v->cpl) == 0)) P->lastseg_n = -1;
  fav_schema_pushcached(L, v->K, FAV_K_LASTPATH, &P->lastpath, &P->lastpl, v->cpath, v->cpl);
}

/* check's part of fav_schema_record_s: keeps the first error's path,
 * keyword and reason in v (see fav_vs.check), builds no table. */
static void fav_schema_record_chk(fav_vs *v, const fav_node *n, const char *kw, const char *why, size_t wl,
                                  int why_k) {
  lua_State *L = v->L;
  int d, depth = v->depth;
  if (v->nerr++ != 0) return;
  v->cseg_n = -1;
  if (depth <= FAV_CSEG) { /* every key the validator's own: keep the segments */
    for (d = 1; d <= depth && (!v->path[d].s || v->path[d].own); d++) v->cseg[d - 1] = v->path[d];
    if (d > depth) v->cseg_n = depth;
  }
  if (v->cseg_n < 0) {
    v->cpl = fav_schema_pathstr(v, v->cpath, sizeof v->cpath);
    if (v->cpl == (size_t)-1) { /* a long path: straight to its slot */
      fav_prog *P = v->P;
      fav_schema_pushpath(v);
      P->lastpath = lua_tolstring(L, -1, &P->lastpl); /* anchored by the rawseti */
      P->lastseg_n = -1;
      lua_rawseti(L, v->K, FAV_K_LASTPATH);
    }
  }
  v->cwhy_k = why_k;
  v->cwhy = v->cwhybuf;
  v->cwl = wl;
  if (why_k) {
  } else if (wl <= sizeof v->cwhybuf) {
    memcpy(v->cwhybuf, why, wl);
  } else { /* a long reason: straight to its slot */
    fav_prog *P = v->P;
    v->cwhy = NULL;
    v->cwhy_k = FAV_K_LASTWHY;
    lua_pushlstring(L, why, wl);
    P->lastwhy = lua_tolstring(L, -1, &P->lastwl);
    lua_rawseti(L, v->K, FAV_K_LASTWHY);
  }
  v->ckw = kw;
  v->ckw_k = !why_k ? 0 : why_k == n->pat_why_k ? FAV_K_PATTERN : why_k > FAV_K_FMTWHY && why_k <= FAV_K_RESERVED ? FAV_K_FORMAT : 0;
}

/* Records an error with the reason text `why` (n bytes). Builds each
 * string once, in C buffers where they fit (the first error of every
 * invalid instance goes through here, so it is kept cheap). */
static void fav_schema_record_tab(fav_vs *v, const fav_node *n, const char *kw, const char *prop, size_t plen,
                                  const char *why, size_t wl, int why_k, int spath_k) {
  lua_State *L = v->L;
  int top, rec, K = v->K;
  char buf[512];
  size_t pl, kl, ll;
  top = lua_gettop(L);
  kl = strlen(kw);
  if (lua_isnil(L, v->E)) {
    lua_createtable(L, v->all ? 4 : 1, 0);
    lua_replace(L, v->E);
  }
  lua_createtable(L, 0, prop ? 6 : 5);
  rec = lua_gettop(L);
  /* every field: its name from the constants (FAV_K_*), then the value,
   * then one lua_rawset */
  lua_rawgeti(L, K, FAV_K_PATH);
  pl = fav_schema_pathstr(v, buf, sizeof buf);
  if (pl != (size_t)-1 && pl + 2 + wl < sizeof buf) {
    lua_pushlstring(L, buf, pl);
    lua_rawset(L, rec);
    lua_rawgeti(L, K, FAV_K_MESSAGE);
    if (pl == 0) buf[pl++] = '/';
    buf[pl++] = ':';
    buf[pl++] = ' ';
    memcpy(buf + pl, why, wl);
    lua_pushlstring(L, buf, pl + wl);
  } else {
    fav_schema_pushpath(v);
    lua_pushvalue(L, -1);
    lua_insert(L, -3);
    lua_rawset(L, rec); /* path; its copy stays at the top */
    if (lua_rawlen(L, -1) == 0) {
      lua_pop(L, 1);
      lua_pushliteral(L, "/");
    }
    lua_rawgeti(L, K, FAV_K_MESSAGE);
    lua_insert(L, -2);
    lua_pushliteral(L, ": ");
    lua_pushlstring(L, why, wl);
    lua_concat(L, 3);
  }
  lua_rawset(L, rec);
  lua_rawgeti(L, K, FAV_K_REASON);
  if (why_k) lua_rawgeti(L, K, why_k); /* the very string why points into */
  else lua_pushlstring(L, why, wl);
  lua_rawset(L, rec);
  lua_rawgeti(L, K, FAV_K_KEYWORD);
  if (why_k && strcmp(kw, "pattern") == 0) lua_rawgeti(L, K, FAV_K_PATTERN); /* the pattern error */
  else lua_pushstring(L, kw); /* a static string: Lua's string cache by address */
  lua_rawset(L, rec);
  lua_rawgeti(L, K, FAV_K_SCHEMA_PATH);
  ll = strlen(n->loc);
  if (spath_k) {
    lua_rawgeti(L, K, spath_k);
  } else if (n->boolean) {
    lua_pushlstring(L, n->loc, ll);
  } else if (ll + 1 + kl < sizeof buf) {
    memcpy(buf, n->loc, ll);
    buf[ll] = '/';
    memcpy(buf + ll + 1, kw, kl);
    lua_pushlstring(L, buf, ll + 1 + kl);
  } else {
    lua_pushfstring(L, "%s/%s", n->loc, kw);
  }
  lua_rawset(L, rec);
  if (prop) {
    lua_rawgeti(L, K, FAV_K_PROPERTY);
    lua_pushlstring(L, prop, plen);
    lua_rawset(L, rec);
  }
  lua_rawseti(L, v->E, ++v->nerr);
  lua_settop(L, top);
}

/* Records an error: validate's record (a table in the errors list), or
 * check's strings (fav_schema_record_chk). */
static FAV_INLINE void fav_schema_record_s(fav_vs *v, const fav_node *n, const char *kw, const char *prop,
                                          size_t plen, const char *why, size_t wl, int why_k, int spath_k) {
  if (v->check) fav_schema_record_chk(v, n, kw, why, wl, why_k);
  else fav_schema_record_tab(v, n, kw, prop, plen, why, wl, why_k, spath_k);
}

/* Records an error; the message text is at the top (popped). */
static void fav_schema_record(fav_vs *v, const fav_node *n, const char *kw, const char *prop, size_t plen) {
  size_t wl;
  const char *why = lua_tolstring(v->L, -1, &wl);
  fav_schema_record_s(v, n, kw, prop, plen, why, wl, 0, 0);
  lua_pop(v->L, 1);
}

/* Records a validation error (not inside anyOf/oneOf/not/if probes). The
 * format takes %s and %d only (as lua_pushfstring would). */
static void fav_schema_fail(fav_vs *v, const fav_node *n, const char *kw, const char *prop, size_t plen,
                            const char *fmt, ...) {
  va_list ap;
  char why[512];
  int k;
  if (v->quiet || v->fatal) return;
  va_start(ap, fmt);
  k = vsnprintf(why, sizeof why, fmt, ap);
  va_end(ap);
  if (k >= 0 && (size_t)k < sizeof why) {
    fav_schema_record_s(v, n, kw, prop, plen, why, (size_t)k, 0, 0);
    return;
  }
  va_start(ap, fmt); /* longer than the buffer: the general way */
  lua_pushvfstring(v->L, fmt, ap);
  va_end(ap);
  fav_schema_record(v, n, kw, prop, plen);
}

/* Records the `format` error of n (its reason is a static string). */
static void fav_schema_fail_format(fav_vs *v, const fav_node *n, int fmt) {
  const char *why = fav_schema_fmt_reasons[fmt];
  if (v->quiet || v->fatal) return;
  /* check keeps the constant, not the bytes: no strlen */
  fav_schema_record_s(v, n, "format", NULL, 0, why, v->check ? 0 : strlen(why), FAV_K_FMTWHY + fmt, 0);
}

/* Records the `pattern` error of n: reason and schema_path are the
 * constants compiled with the node, so only the path and the message are
 * built. */
static void fav_schema_fail_pattern(fav_vs *v, const fav_node *n) {
  size_t wl;
  const char *why;
  if (v->quiet || v->fatal) return;
  lua_rawgeti(v->L, v->K, n->pat_why_k);
  why = lua_tolstring(v->L, -1, &wl); /* anchored in K: valid after the pop */
  lua_pop(v->L, 1);
  fav_schema_record_s(v, n, "pattern", NULL, 0, why, wl, n->pat_why_k, n->pat_spath_k);
}

/* Records an error that ends validation whatever the context (depth
 * limit, $ref cycle): it replaces any errors gathered so far. */
static void fav_schema_fatal(fav_vs *v, const fav_node *n, const char *kw, const char *fmt, ...) {
  va_list ap;
  if (v->fatal) return;
  if (!v->check) {
    lua_pushnil(v->L);
    lua_replace(v->L, v->E);
  }
  v->nerr = 0;
  va_start(ap, fmt);
  lua_pushvfstring(v->L, fmt, ap);
  va_end(ap);
  fav_schema_record(v, n, kw, NULL, 0);
  v->fatal = 1;
}

/* 1 when the double x is integral (x == floor(x), finite), without a
 * call of libm's floor: within +-2^63 the truncating conversion says it,
 * beyond every finite double is integral (infinities and NaN are not). */
static inline int fav_schema_integral(double x) {
  if (x > -9.2e18 && x < 9.2e18) return (double)(long long)x == x;
  return x - x == 0;
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
      if (k >= 1 && fav_schema_integral((double)k)) {
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
      return fav_schema_integral((double)x) ? (FT_INT | FT_NUM) : FT_NUM;
    }
    case LUA_TSTRING: return FT_STR;
    case LUA_TTABLE:
      /* nothing in the node tells an empty table from an object, and it has
       * no item at 1: an object (its keys are walked or looked up later),
       * without the lua_next of fav_schema_kind */
      if (need_kind == 2 && lua_rawlen(L, idx) == 0) return FT_OBJ;
      return need_kind ? fav_schema_kind(L, idx, count) : FT_TAB;
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

static int fav_schema_late(fav_vs *v, const fav_node *n, unsigned every);
static int fav_schema_rematch(fav_vs *v, int re, const char *s, size_t n);

/* The fast path for a leaf node (scalar keywords only, see fav_node.leaf)
 * on the value at idx, with v->path already one level down: 1 when the
 * value certainly passes, 0 when it may not and fav_schema_eval must
 * decide (and build the errors), -1 when it fails only its pattern, which
 * is then recorded here as fav_schema_eval would. Leaves the stack as found. */
static FAV_INLINE int fav_schema_leaf(fav_vs *v, const fav_node *c, int idx, int lt) {
  lua_State *L = v->L;
  unsigned t;
  const char *str = NULL;
  size_t slen = 0;
  if (v->deadline > 0 && fav_schema_late(v, c, c->pattern >= 0 ? 256 : 1)) return 0;
  switch (lt) {
    case LUA_TBOOLEAN: t = FT_BOOL; break;
    case LUA_TSTRING:
      t = FT_STR;
      str = lua_tolstring(L, idx, &slen);
      break;
    case LUA_TNUMBER: {
      /* one call for every number: an integer converts exactly where it
       * matters (a Lua integer is integral whatever its double) */
      lua_Number x = lua_tonumber(L, idx);
      t = fav_schema_integral((double)x) ? (FT_INT | FT_NUM) : FT_NUM;
      if (c->cat & CAT_NUM) {
        double d = (double)x;
        if ((c->numkw & NK_MIN) && d < c->minimum) return 0;
        if ((c->numkw & NK_MAX) && d > c->maximum) return 0;
        if ((c->numkw & NK_XMIN) && d <= c->exmin) return 0;
        if ((c->numkw & NK_XMAX) && d >= c->exmax) return 0;
      }
      break;
    }
    default: return 0; /* null, tables, non-JSON values: the general path */
  }
  if (c->types && !(c->types & t)) return 0;
  if (t == FT_STR && (c->cat & CAT_STR)) {
    size_t len = slen;
    const char *s = str;
    int fmt = v->formats ? c->format : 0;
    /* the checks in fav_schema_str's order (lengths, format, then the
     * PCRE2 pattern, so an instance the format refuses does not pay for
     * the regex); without enum (which
     * fav_schema_eval checks first) and without all_errors, the first that
     * fails is the error fav_schema_eval would return: record it here
     * rather than evaluate the node a second time */
    int first = !v->all && !c->enum_k;
    if (c->strutf || fmt) {
      size_t cps = fav_schema_utf8len(s, len);
      if (cps == (size_t)-1 || cps < c->minlen || cps > c->maxlen) return 0;
    }
    if (fmt && !fav_schema_format(v->P, fmt, s, len)) {
      if (!first) return 0;
      fav_schema_fail_format(v, c, fmt);
      return -1;
    }
    if (c->pattern >= 0) {
      int m = fav_schema_rematch(v, c->pattern, s, len);
      if (m == 0 && first) {
        fav_schema_fail_pattern(v, c);
        return -1;
      }
      if (m != 1) return 0;
    }
  }
  if (c->enum_k) {
    int found;
    if (c->nenumptr > 0) {
      /* every member is a short string: a string instance is one of them
       * exactly when it is that very (interned) string */
      if (t == FT_STR && slen <= FAV_SHORTSTR) {
        int i;
        for (i = 0; i < c->nenumptr; i++)
          if (c->enumptr[i] == str) return 1;
      }
      return 0;
    }
    lua_rawgeti(L, v->K, c->enumset_k);
    lua_pushvalue(L, idx);
    lua_rawget(L, -2);
    found = !lua_isnil(L, -1);
    lua_pop(L, 2);
    if (!found) return 0;
  }
  return 1;
}

/* fav_schema_downt past the leaf fast path: v->depth is already one level
 * down. The false schema, or the full evaluation. */
static int fav_schema_downt_node(fav_vs *v, const fav_node *c, int vi, const char *k, size_t kl) {
  int r;
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
  return r;
}

/* Evaluates child node c on the value at vi, one level down (key or index);
 * lt: the value's Lua type when the caller has it, else -1. own: k is one
 * of the validator's names (fav_seg.own). Inlined into the loops over
 * properties and items, with the leaf fast path: a scalar property costs
 * no C call of its own. */
static FAV_INLINE int fav_schema_downt(fav_vs *v, const fav_node *n, const fav_node *c, int vi, const char *k,
                                       size_t kl, lua_Integer i, int lt, int own) {
  int r;
  fav_seg *sg;
  if (c->boolean == 1) return 1;
  if (v->depth >= v->maxdepth) {
    fav_schema_fatal(v, n, "depth", "exceeds the maximum depth of %d", v->maxdepth);
    return 0;
  }
  sg = &v->path[++v->depth];
  sg->s = k;
  sg->len = kl;
  sg->i = i;
  sg->own = own;
  if (c->leaf && (r = fav_schema_leaf(v, c, vi, lt >= 0 ? lt : lua_type(v->L, vi))) != 0) {
    v->depth--;
    return r > 0;
  }
  r = fav_schema_downt_node(v, c, vi, k, kl);
  v->depth--;
  return r;
}

/* fav_schema_downt when the value's Lua type is not at hand. */
static int fav_schema_down(fav_vs *v, const fav_node *n, const fav_node *c, int vi, const char *k, size_t kl,
                           lua_Integer i) {
  return fav_schema_downt(v, n, c, vi, k, kl, i, -1, 0);
}

/* Past the validation's deadline (checked every `every` units of work):
 * records the fatal `timeout` error and returns 1. */
static int fav_schema_late(fav_vs *v, const fav_node *n, unsigned every) {
  if (v->deadline <= 0) return 0;
  if (v->fatal) return 1;
  v->ticks += every;
  if (v->ticks < 256) return 0;
  v->ticks = 0;
  if (fav_monotonic_ms() < v->deadline) return 0;
  fav_schema_fatal(v, n, "timeout", "validation did not finish within the call's deadline");
  return 1;
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
  /* format (hand-written) before the PCRE2 pattern: JSON Schema does not
   * order keywords, and the cheap check fails first (fav_schema_leaf keeps
   * the same order, so check and validate name the same first error) */
  if (fmt && !fav_schema_format(v->P, fmt, s, len)) {
    fav_schema_fail_format(v, n, fmt);
    FAV_BAIL();
  }
  if (n->pattern >= 0) {
    int m;
    if (fav_schema_late(v, n, 256)) return 0;
    m = fav_schema_rematch(v, n->pattern, s, len);
    if (m <= 0) {
      if (m == 0) fav_schema_fail_pattern(v, n);
      else fav_schema_fail(v, n, "pattern", NULL, 0, "could not be matched against the pattern %s (match limit)",
                           v->P->re[n->pattern].src);
      FAV_BAIL();
    }
  }
done:
  return ok;
}

/* A hash of the JSON value at i such that equal values (fav_schema_equal)
 * hash alike: objects and arrays sum their (key, value) pairs, so the order
 * of lua_next does not matter. */
static uint64_t fav_schema_mix(uint64_t h) {
  h ^= h >> 33;
  h *= 0xFF51AFD7ED558CCDull;
  h ^= h >> 33;
  h *= 0xC4CEB9FE1A85EC53ull;
  h ^= h >> 33;
  return h;
}

static uint64_t fav_schema_vhash(lua_State *L, int i, int depth) {
  if (fav_schema_isnull(L, i)) return 0x6E756C6Cull;
  switch (lua_type(L, i)) {
    case LUA_TBOOLEAN: return lua_toboolean(L, i) ? 0x74727565ull : 0x66616C73ull;
    case LUA_TNUMBER: {
      double x = (double)lua_tonumber(L, i);
      uint64_t u;
      if (x == 0) x = 0; /* -0 */
      if (x != x) return 0x4E614Eull;
      memcpy(&u, &x, sizeof u);
      return fav_schema_mix(u ^ 0x6E756Dull);
    }
    case LUA_TSTRING: {
      size_t n, k;
      const unsigned char *s = (const unsigned char *)lua_tolstring(L, i, &n);
      uint64_t h = 0xCBF29CE484222325ull ^ n;
      for (k = 0; k < n; k++) h = (h ^ s[k]) * 0x100000001B3ull;
      return fav_schema_mix(h);
    }
    case LUA_TTABLE: {
      uint64_t h = 0x7461626Cull;
      if (depth > FAV_SCHEMA_DEPTH_MAX || !lua_checkstack(L, 4)) return h;
      lua_pushnil(L);
      while (lua_next(L, i)) {
        int top = lua_gettop(L);
        h += fav_schema_mix(fav_schema_vhash(L, top - 1, depth + 1) * 31 + fav_schema_vhash(L, top, depth + 1));
        lua_pop(L, 1);
      }
      return fav_schema_mix(h);
    }
    default: return 1;
  }
}

typedef struct fav_hidx {
  uint64_t h;
  size_t i;
} fav_hidx;

static int fav_schema_hidx_cmp(const void *a, const void *b) {
  const fav_hidx *x = (const fav_hidx *)a, *y = (const fav_hidx *)b;
  if (x->h != y->h) return x->h < y->h ? -1 : 1;
  return x->i < y->i ? -1 : x->i > y->i;
}

/* The first item (in order) equal to an earlier one: *dj, and the first
 * earlier one it equals: *di. Scalars go through a Lua table, tables
 * through hashes sorted once (n log n), compared only when hashes agree. */
static int fav_schema_unique(fav_vs *v, const fav_node *node, size_t count, int idx, size_t *di, size_t *dj) {
  lua_State *L = v->L;
  size_t i, j, nt = 0, bi = 0, bj = 0;
  int set;
  fav_hidx *hs;
  lua_newtable(L);
  set = lua_gettop(L);
  hs = (fav_hidx *)lua_newuserdata(L, count * sizeof *hs); /* collected, never freed by hand */
  for (i = 1; i <= count; i++) {
    lua_rawgeti(L, idx, (int)i);
    if (lua_type(L, -1) == LUA_TTABLE) {
      hs[nt].h = fav_schema_vhash(L, lua_gettop(L), 0);
      hs[nt].i = i;
      nt++;
    } else if (!bj && !lua_isnil(L, -1) && !(lua_type(L, -1) == LUA_TNUMBER && lua_tonumber(L, -1) != lua_tonumber(L, -1))) {
      lua_pushvalue(L, -1);
      lua_rawget(L, set);
      if (!lua_isnil(L, -1)) {
        bi = (size_t)lua_tointeger(L, -1), bj = i;
      }
      lua_pop(L, 1);
      if (!bj) {
        lua_pushvalue(L, -1);
        lua_pushinteger(L, (lua_Integer)i);
        lua_rawset(L, set);
      }
    }
    lua_pop(L, 1);
    if (fav_schema_late(v, node, 1)) break;
  }
  if (nt > 1 && !v->fatal) {
    size_t a = 0, b;
    qsort(hs, nt, sizeof *hs, fav_schema_hidx_cmp);
    while (a < nt && !v->fatal) {
      for (b = a + 1; b < nt && hs[b].h == hs[a].h; b++) {
      }
      /* a run of equal hashes, in item order: the first item equal to an earlier one */
      for (i = a + 1; i < b && !v->fatal; i++) {
        if (bj && hs[i].i >= bj) break;
        lua_rawgeti(L, idx, (int)hs[i].i);
        for (j = a; j < i; j++) {
          int eq;
          if (fav_schema_late(v, node, 16)) break;
          lua_rawgeti(L, idx, (int)hs[j].i);
          eq = fav_schema_equal(L, lua_gettop(L) - 1, lua_gettop(L), 0);
          lua_pop(L, 1);
          if (eq) {
            bi = hs[j].i, bj = hs[i].i;
            break;
          }
        }
        lua_pop(L, 1);
      }
      a = b;
    }
  }
  lua_settop(L, set - 1);
  if (v->fatal) return 0;
  if (bj) {
    *di = bi, *dj = bj;
    return 0;
  }
  return 1;
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
    if (!fav_schema_unique(v, n, count, idx, &a, &b)) {
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

/* The key whose anchored Lua string is k itself (see fav_pent.kid). */
static const fav_pent *fav_schema_lookup_ptr(const fav_node *n, const void *k) {
  uint32_t i = fav_schema_ptrhash(k) & n->pmask;
  int e;
  while ((e = n->ptab[i]) != 0) {
    if (n->keys[e - 1].kid == k) return &n->keys[e - 1];
    i = (i + 1) & n->pmask;
  }
  return NULL;
}

/* values the by-key walk leaves on the stack before it pops them */
#define FAV_BYKEY_KEEP 8 /* + a record (fav_schema_record_s pushes up to 6) <= 16 */

/* top: lua_gettop() (the caller has it) */
static int fav_schema_obj(fav_vs *v, const fav_node *n, int idx, unsigned t, fav_ann *la, int top) {
  lua_State *L = v->L;
  uint64_t seen = 0;
  size_t nkeys = 0;
  int ok = 1, r, i;
  int counted = n->by_count && v->P->nkeys_k; /* by_key, then the count shows nothing else is there */
  if (!(t & FT_ARR) && (n->by_key || counted) && !la && !v->all) {
    /* only the named keys matter: one raw lookup each, in name order. The
     * values found stay on the stack (sp: the last one) and are popped
     * FAV_BYKEY_KEEP at a time, not one lua_settop a key: fav_schema_eval
     * made room for 16 slots */
    int declared = 0, sp = top;
    for (i = 0; i < n->nkeys; i++) {
      const fav_pent *p = &n->keys[i];
      int vt;
      lua_rawgeti(L, v->K, n->keys_k + i);
#if LUA_VERSION_NUM >= 503
      vt = lua_rawget(L, idx); /* the value's type: no lua_type call */
#else
      lua_rawget(L, idx);
      vt = lua_type(L, -1);
#endif
      sp++;
      if (vt != LUA_TNIL) {
        if (p->req >= 0) seen |= (uint64_t)1 << p->req;
        if (p->node) {
          declared++;
          r = fav_schema_downt(v, n, p->node, sp, p->name, p->len, 0, vt, 1);
          if (!r) FAV_BAIL();
        }
      }
      if (sp - top >= FAV_BYKEY_KEEP) {
        lua_settop(L, top);
        sp = top;
      }
    }
    if (sp != top) lua_settop(L, top);
    if (counted) {
      /* additionalProperties: false. Every declared property present is
       * valid; the instance is valid when it holds nothing else, which its
       * key count (table.nkeys, one call instead of a lua_next a key) says.
       * Otherwise the walk below finds and reports what is extra. */
      lua_Integer total;
      lua_rawgeti(L, v->K, v->P->nkeys_k);
      lua_pushvalue(L, idx);
      lua_call(L, 1, 1);
      total = lua_tointeger(L, -1);
      lua_settop(L, top);
      if (total != (lua_Integer)declared) {
        seen = 0;
        counted = -1;
      }
    }
  }
  if ((counted < 0 || !(n->by_key || counted) || la || v->all) && !(t & FT_ARR) && n->obj_iter) {
    /* the stack is at top here: each key at top + 1, its value at top + 2 */
    lua_pushnil(L);
    while (lua_next(L, idx)) {
      int vi = top + 2, kt, matched = 0;
      const char *k;
      size_t kl;
      const fav_pent *p = NULL;
      /* a short string key equal to a name is that name's interned string:
       * a pointer comparison (FAV_KID_TOPOINTER); anything else the general way */
#if FAV_KID_TOPOINTER
      if (n->ptab && (p = fav_schema_lookup_ptr(n, lua_topointer(L, vi - 1))) != NULL) {
        kt = LUA_TSTRING;
        k = p->name;
        kl = p->len;
      } else
#endif
      {
        kt = lua_type(L, vi - 1);
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
        if (n->ktab) {
#if !FAV_KID_TOPOINTER
          if (kt == LUA_TSTRING) p = fav_schema_lookup_ptr(n, k);
#endif
          if (!p && (kt != LUA_TSTRING || kl > FAV_SHORTSTR)) p = fav_schema_lookup(n, k, kl);
        }
      }
      nkeys++;
      {
        if (p) {
          if (p->req >= 0) seen |= (uint64_t)1 << p->req;
          if (p->node) {
            matched = 1;
            r = fav_schema_downt(v, n, p->node, vi, p->name, p->len, 0, -1, 1); /* k's bytes, the validator's pointer */
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
  return ok; /* what a bail left on the stack: fav_schema_eval's lua_settop */
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
int fav_schema_eval(fav_vs *v, const fav_node *n, int idx, fav_ann *ann) {
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
  if (fav_schema_late(v, n, 1)) return 0;
  /* the root needs no lua_checkstack: a C function has LUA_MINSTACK (20)
   * slots, of which validate and check use 4 */
  if (v->eval >= FAV_SCHEMA_EVAL || (v->eval > 0 && !lua_checkstack(L, 16))) {
    fav_schema_fatal(v, n, "depth", "schema evaluation is too deep");
    return 0;
  }
  v->eval++;
  top = lua_gettop(L);
  if (n->res && (v->nscope == 0 || v->scope[v->nscope - 1] != n->res)) {
    v->scope[v->nscope++] = n->res;
    pushed = 1;
  }
  t = fav_schema_jtype(L, idx, &count, n->needs_kind ? (n->obj_only ? 2 : 1) : 0);
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
    if (!fav_schema_obj(v, n, idx, t, la, la != ann ? lua_gettop(L) : top)) FAV_BAIL();
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

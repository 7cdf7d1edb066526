/* schema_uri.c: URI references (RFC 3986 section 5) and everything that
 * turns a $ref / $dynamicRef into a node: the index of resources, anchors
 * and dynamic anchors, remote documents (opts.remotes / opts.resolver) and
 * JSON Pointer fragments. See schema.h. */
#include "schema.h"

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
/* Resources, anchors and references                                    */
/* ------------------------------------------------------------------ */


int fav_schema_dialect(fav_cc *c, int s, int draft) {
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
int fav_schema_isarr(lua_State *L, int t) {
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
void fav_schema_pushloc(lua_State *L, int loc, const char *kw, const char *key, size_t klen, lua_Integer i) {
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
void fav_schema_index(fav_cc *c, int s, int base, int loc, int rt, int draft, int depth) {
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
fav_node *fav_schema_node_for(fav_cc *c, int v, int base, int loc, int draft, fav_node *res, int depth,
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
fav_node *fav_schema_ref(fav_cc *c, int r, int b, int draft, fav_node *res, int depth, const char *loc,
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

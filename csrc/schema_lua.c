/* schema_lua.c: the Lua API of the validator: core.schema_compile and
 * the favcrm.Validator object (validate, check, __call, close, __gc, __close,
 * __tostring). See schema.h. */
#include "schema.h"

/* ------------------------------------------------------------------ */
/* Lua API                                                              */
/* ------------------------------------------------------------------ */

static fav_prog *fav_schema_check(lua_State *L) {
  fav_prog *P = (fav_prog *)luaL_checkudata(L, 1, FAV_SCHEMA_MT);
  if (P->root == NULL) luaL_error(L, "attempt to use a closed or unfinished validator");
  return P;
}

/* The common part of validate and check: checks the validator (argument
 * 1) and the options (argument 3), leaves the value at 2, the constants at
 * 3 and (validate) nil at 4, and runs the program. Returns 1 when valid. */
static int fav_schema_run(lua_State *L, fav_vs *v, int check) {
  /* a validator is a full userdata of exactly sizeof(fav_prog) whose
   * `self` is its own address (set by compile): two cheap calls instead of
   * luaL_checkudata's registry lookup, or lua_getmetatable + lua_rawequal
   * (~130 instructions a call on Lua 5.4). Anything else (a light
   * userdata has length 0) takes the checked way, which raises. */
  fav_prog *P = (fav_prog *)lua_touserdata(L, 1);
  int top;
  if (P == NULL || lua_rawlen(L, 1) != sizeof(fav_prog) || P->self != P) {
    P = fav_schema_check(L); /* raises the usual message */
  } else if (P->root == NULL) {
    luaL_error(L, "attempt to use a closed or unfinished validator");
  }
  v->deadline = 0;
  top = lua_gettop(L);
  if (top >= 3 && lua_type(L, 3) == LUA_TTABLE) {
    /* the key is the methods' upvalue (fav_schema_open), a Lua string
     * already: lua_getfield would make one of "deadline" on every call */
    if (lua_type(L, lua_upvalueindex(1)) == LUA_TSTRING) {
      lua_pushvalue(L, lua_upvalueindex(1));
      lua_gettable(L, 3);
    } else {
      lua_getfield(L, 3, "deadline");
    }
    if (!lua_isnil(L, -1)) {
      double d = lua_type(L, -1) == LUA_TNUMBER ? (double)lua_tonumber(L, -1) : NAN;
      if (!isfinite(d)) luaL_error(L, "bad option 'deadline' (finite number of seconds expected)");
      v->deadline = d * 1000.0;
      if (v->deadline <= 0) v->deadline = 1e-9; /* already over */
    }
    lua_pop(L, 1);
  }
  v->ticks = 0;
  if (top != 2) lua_settop(L, 2);
  fav_schema_getuv(L, 1); /* 3: constants */
  v->L = L;
  v->P = P;
  v->K = 3;
  v->E = 4;
  v->nerr = 0;
  v->all = check ? 0 : P->all;
  v->check = check;
  v->ckw = NULL;
  v->ckw_k = 0;
  if (!check) lua_pushnil(L); /* 4: errors (check keeps its error in C, see fav_vs.check) */
  v->quiet = 0;
  v->fatal = 0;
  v->formats = P->formats;
  v->depth = 0;
  v->maxdepth = P->maxdepth;
  v->eval = 0;
  v->nscope = 0;
  v->nref = 0;
  return fav_schema_eval(v, P->root, 2, NULL) && !v->fatal;
}

/* validator:validate(value [, opts]) / validator(value) -> true | false,
 * errors. opts.deadline: core.monotonic() seconds by which validation must
 * end; past it, one error with keyword "timeout". */
static int fav_schema_validate_l(lua_State *L) {
  fav_vs vs; /* on the C stack: nothing to free if we raise */
  if (fav_schema_run(L, &vs, 0)) {
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
    lua_pushstring(L, vs.P->root->loc);
    lua_setfield(L, -2, "schema_path");
    lua_pushliteral(L, "/: is not allowed");
    lua_setfield(L, -2, "message");
    lua_rawseti(L, -2, 1);
  } else {
    lua_pushvalue(L, 4);
  }
  return 2;
}

/* validator:check(value [, opts]) -> true | false, path, keyword, reason:
 * the verdict of validate and its first error's path, keyword and reason
 * as plain strings, building no table (the same walk, in the same order,
 * with all_errors off). opts as validate's. */
static int fav_schema_check_l(lua_State *L) {
  fav_vs vs;
  fav_prog *P;
  if (fav_schema_run(L, &vs, 1)) {
    lua_pushboolean(L, 1);
    return 1;
  }
  lua_pushboolean(L, 0);
  P = vs.P;
  if (vs.ckw == NULL) { /* as validate's record when nothing was recorded */
    lua_pushliteral(L, "");
    lua_pushliteral(L, "false");
    lua_pushliteral(L, "is not allowed");
    return 4;
  }
  fav_schema_pushcpath(&vs);
  if (vs.ckw_k) lua_rawgeti(L, 3, vs.ckw_k);
  else lua_pushstring(L, vs.ckw);
  if (vs.cwhy_k) lua_rawgeti(L, 3, vs.cwhy_k);
  else fav_schema_pushcached(L, 3, FAV_K_LASTWHY, &P->lastwhy, &P->lastwl, vs.cwhy, vs.cwl);
  return 4;
}

/* validator:close(), __gc, __close: frees the compiled program (nodes,
 * regexes, PCRE2 contexts). Idempotent; a closed validator raises when
 * used. Raises only if the argument is not a validator. */
static int fav_schema_close_l(lua_State *L) {
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
  /* P->md, mctx, cctx: made with the first regex (fav_schema_pcre) */
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
  {
    static const char *const names[FAV_K_LASTWHY] = {"path", "message", "reason", "keyword", "schema_path",
                                                      "property", "pattern", "format", "", ""};
    for (c.nk = 0; c.nk < FAV_K_RESERVED; c.nk++) {
      lua_pushstring(L, c.nk < FAV_K_LASTWHY ? names[c.nk] : fav_schema_fmt_reasons[c.nk + 1 - FAV_K_FMTWHY]);
      lua_rawseti(L, c.K, c.nk + 1);
    }
  }
#if LUA_VERSION_NUM == 501
  /* LuaJIT's table.nkeys counts a table's keys in one call: objects with
   * additionalProperties: false are then checked by lookups and a count
   * (fav_node.by_count) instead of a lua_next a key. PUC Lua has no such
   * call; there the walk stays. */
  lua_getglobal(L, "require");
  lua_pushliteral(L, "table.nkeys");
  if (lua_pcall(L, 1, 1, 0) == 0 && lua_iscfunction(L, -1)) {
    P->nkeys_k = ++c.nk;
    lua_rawseti(L, c.K, c.nk);
  } else {
    lua_pop(L, 1);
  }
#endif
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
  P->self = P; /* what validate checks (with the size) to know a validator */
  P->lastseg_n = -1;
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
    {"check", fav_schema_check_l},
    {"close", fav_schema_close_l},
    {NULL, NULL}
  };
  static const luaL_Reg meta[] = {
    {"__call", fav_schema_validate_l},
    {"__tostring", fav_schema_tostring_l},
    {NULL, NULL}
  };
  fav_newclass(L, FAV_SCHEMA_MT, methods, meta, fav_schema_close_l);
  /* validate, check and __call again, with the key "deadline" as their
   * upvalue (see fav_schema_run) */
  lua_newtable(L);
  lua_pushliteral(L, "deadline");
  luaL_setfuncs(L, methods, 1);
  lua_setfield(L, -2, "__index");
  lua_pushliteral(L, "deadline");
  lua_pushcclosure(L, fav_schema_validate_l, 1);
  lua_setfield(L, -2, "__call");
  lua_pop(L, 1); /* the metatable */
  lua_pushcfunction(L, fav_schema_compile_l);
  lua_setfield(L, -2, "schema_compile");
  return 0;
}

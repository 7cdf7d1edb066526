/* harness.c: see harness.h. */
#include "harness.h"

#include <stdio.h>
#include <stdlib.h>
#include <lauxlib.h>
#include <lualib.h>

#ifndef FAV_TOP
#define FAV_TOP "."
#endif

int luaopen_favcrm_core(lua_State *L);

static int driver_ref = LUA_NOREF;

/* Lua coverage for libFuzzer: a line hook hashes (chunk, line, previous
 * line) into libFuzzer's extra counters, so inputs that reach new Lua paths
 * (the session's dispatch) count as new coverage, not only new C paths. */
#define FAV_LUA_COUNTERS 8192
__attribute__((used, section("__libfuzzer_extra_counters")))
static uint8_t lua_counters[FAV_LUA_COUNTERS];
static uintptr_t lua_prev;

static void line_hook(lua_State *L, lua_Debug *ar) {
  uintptr_t here;
  if (!lua_getinfo(L, "S", ar)) return;
  here = ((uintptr_t)ar->source >> 4) * 2654435761u + (uintptr_t)ar->currentline;
  lua_counters[(here ^ (lua_prev >> 1)) % FAV_LUA_COUNTERS]++;
  lua_prev = here;
}

lua_State *fav_fuzz_state(const char *driver) {
  lua_State *L = luaL_newstate();
  if (!L) abort();
  luaL_openlibs(L);
  /* package.path: the repository's Lua modules first */
  lua_getglobal(L, "package");
  lua_pushliteral(L, FAV_TOP "/lua/?.lua;" FAV_TOP "/lua/?/init.lua;");
  lua_getfield(L, -2, "path");
  lua_concat(L, 2);
  lua_setfield(L, -2, "path");
  lua_getfield(L, -1, "preload");
  lua_pushcfunction(L, luaopen_favcrm_core);
  lua_setfield(L, -2, "favcrm.core");
  lua_pop(L, 2);
  if (luaL_loadstring(L, driver) != LUA_OK || lua_pcall(L, 0, 1, 0) != LUA_OK ||
      !lua_isfunction(L, -1)) {
    fprintf(stderr, "fuzz harness: the driver failed: %s\n", lua_tostring(L, -1));
    abort();
  }
  driver_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  lua_sethook(L, line_hook, LUA_MASKLINE, 0);
  return L;
}

static int traceback(lua_State *L) {
  luaL_traceback(L, L, lua_tostring(L, 1), 1);
  return 1;
}

void fav_fuzz_call(lua_State *L, const uint8_t *data, size_t size, int gc_every, int strict) {
  static unsigned long calls = 0;
  lua_pushcfunction(L, traceback);
  lua_rawgeti(L, LUA_REGISTRYINDEX, driver_ref);
  lua_pushlstring(L, (const char *)data, size);
  if (lua_pcall(L, 1, 0, 1) != LUA_OK && strict) {
    fprintf(stderr, "fuzz: the driver raised: %s\n", lua_tostring(L, -1));
    abort();
  }
  lua_settop(L, 0);
  if (gc_every > 0 && ++calls % (unsigned long)gc_every == 0) lua_gc(L, LUA_GCCOLLECT, 0);
}

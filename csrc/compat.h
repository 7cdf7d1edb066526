/* compat.h: one header so the same C source builds for Lua 5.1, 5.2, 5.3,
 * 5.4 and LuaJIT 2.1. Include it instead of lua.h/lauxlib.h. */
#ifndef FAV_COMPAT_H
#define FAV_COMPAT_H

#include <lua.h>
#include <lauxlib.h>
#include <lualib.h>

/* FAV_API (functions shared between units, hidden from core.so's users)
 * comes from util.h. */
#include "util.h"

#if !defined(LUA_VERSION_NUM) || LUA_VERSION_NUM < 501
#error "favcrm needs Lua 5.1 or newer"
#endif

#ifndef LUA_OK
#define LUA_OK 0
#endif

#if LUA_VERSION_NUM == 501
/* PUC 5.1 and LuaJIT. LuaJIT 2.1 already has luaL_setfuncs,
 * luaL_testudata and luaL_setmetatable; PUC 5.1 does not. */
#if !defined(LUAJIT_VERSION_NUM)
#define FAV_NEED_51_AUX 1
#endif

#define lua_rawlen(L, i) lua_objlen((L), (i))
#ifndef luaL_newlib
#define luaL_newlibtable(L, l) lua_createtable((L), 0, (int)(sizeof(l) / sizeof((l)[0]) - 1))
#define luaL_newlib(L, l) (luaL_newlibtable(L, l), luaL_setfuncs((L), (l), 0))
#endif
#define lua_absindex(L, i) \
  (((i) > 0 || (i) <= LUA_REGISTRYINDEX) ? (i) : lua_gettop(L) + (i) + 1)

#ifdef FAV_NEED_51_AUX
FAV_API void fav_compat_setfuncs(lua_State *L, const luaL_Reg *l, int nup);
FAV_API void *fav_compat_testudata(lua_State *L, int i, const char *tname);
#define luaL_setfuncs fav_compat_setfuncs
#define luaL_testudata fav_compat_testudata
#define luaL_setmetatable(L, t) (luaL_getmetatable((L), (t)), lua_setmetatable((L), -2))
#endif
#endif /* 5.1 */

#if LUA_VERSION_NUM < 503
#define lua_isinteger(L, i) fav_compat_isinteger((L), (i))
FAV_API int fav_compat_isinteger(lua_State *L, int i);
#endif

#if LUA_VERSION_NUM < 504
#define lua_newuserdatauv(L, sz, nuv) lua_newuserdata((L), (sz))
#endif

/* Registry keys are the addresses of static variables. On LuaJIT (and
 * generally) light userdata keys are fine as long as the pointer fits the
 * 47-bit range, which static data always does. */
#define FAV_REGKEY(name) static const char name = 0

#endif

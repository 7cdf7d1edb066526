/* compat.c: the few functions Lua 5.1 lacks (see compat.h). */
#include "compat.h"
#include <math.h>

#ifdef FAV_NEED_51_AUX
/* Same contract as 5.2's luaL_setfuncs: table below nup upvalues. */
void fav_compat_setfuncs(lua_State *L, const luaL_Reg *l, int nup) {
  luaL_checkstack(L, nup + 1, "too many upvalues");
  for (; l->name != NULL; l++) {
    int i;
    for (i = 0; i < nup; i++) lua_pushvalue(L, -nup);
    lua_pushcclosure(L, l->func, nup);
    lua_setfield(L, -(nup + 2), l->name);
  }
  lua_pop(L, nup);
}

void *fav_compat_testudata(lua_State *L, int i, const char *tname) {
  void *p = lua_touserdata(L, i);
  if (p == NULL || !lua_getmetatable(L, i)) return NULL;
  luaL_getmetatable(L, tname);
  if (!lua_rawequal(L, -1, -2)) p = NULL;
  lua_pop(L, 2);
  return p;
}
#endif

#if LUA_VERSION_NUM < 503
/* A number is an "integer" when it has no fractional part and fits. */
int fav_compat_isinteger(lua_State *L, int i) {
  lua_Number n;
  if (lua_type(L, i) != LUA_TNUMBER) return 0;
  n = lua_tonumber(L, i);
  return n == floor(n) && n >= -9007199254740992.0 && n <= 9007199254740992.0;
}
#endif

/* core.c: luaopen_favcrm_core, the only exported symbol of the module. */
#include "favcrm.h"

/* Takes nothing; leaves the module table (VERSION, MAX_EVENT_BYTES: the
 * default cap on one event, and the units' functions). Can raise (memory). */
FAV_EXPORT int luaopen_favcrm_core(lua_State *L);
FAV_EXPORT int luaopen_favcrm_core(lua_State *L) {
  lua_newtable(L);
  lua_pushliteral(L, FAV_VERSION);
  lua_setfield(L, -2, "VERSION");
  lua_pushinteger(L, (lua_Integer)FAV_MAX_EVENT_BYTES);
  lua_setfield(L, -2, "MAX_EVENT_BYTES");
  fav_secret_open(L);
  fav_sse_open(L);
  fav_http_open(L);
  fav_schema_open(L);
  fav_fs_open(L);
  fav_proc_open(L);
  fav_crypto_open(L);
  fav_listen_open(L);
  fav_json_decode_open(L);
  return 1;
}

/* favcrm.h: the units of favcrm.core and how core.c opens them.
 * Each fav_<unit>_open(L) takes the module table at the top of the stack,
 * adds its functions to it, registers its metatables, and leaves the stack
 * as it found it. Any of them can raise (out of memory) while loading.
 * Only luaopen_favcrm_core (FAV_EXPORT) leaves core.so; every function
 * shared between units is FAV_API (util.h): hidden even when the build
 * passes no -fvisibility=hidden (luarocks' builtin type). */
#ifndef FAV_FAVCRM_H
#define FAV_FAVCRM_H

#include "compat.h"
#include "util.h"

#define FAV_VERSION "0.1.0"

#if defined(__GNUC__)
#define FAV_EXPORT __attribute__((visibility("default")))
#else
#define FAV_EXPORT
#endif

FAV_API int fav_http_open(lua_State *L);   /* http.c:   Streamable HTTP on libcurl */
FAV_API int fav_sse_open(lua_State *L);    /* sse_lua.c: the SSE parser for Lua    */
FAV_API int fav_secret_open(lua_State *L); /* secret.c: favcrm.Secret              */
FAV_API int fav_schema_open(lua_State *L); /* schema_lua.c: JSON Schema validator  */
FAV_API int fav_proc_open(lua_State *L);   /* proc.c:   child processes (stdio)    */
FAV_API int fav_fs_open(lua_State *L);     /* fs.c:     atomic 0600 files, clocks  */
FAV_API int fav_crypto_open(lua_State *L); /* crypto.c: SHA-256, CSPRNG, base64, JWS */
FAV_API int fav_listen_open(lua_State *L); /* listen.c: one loopback redirect      */
FAV_API int fav_json_decode_open(lua_State *L); /* json_decode.c: cjson.decode fast path */
/* json_decode.c: the string cache of L's state (made on first use), and
 * the JSON-RPC mode of http:exchange: pushes the result of the answer s
 * (len bytes, NUL-terminated) and returns 1 when it is the plain result of
 * the request whose id is the number at stack index idx; else pushes
 * nothing and returns 0 (see there). Both can raise (memory). */
typedef struct fav_jd_cache fav_jd_cache;
FAV_API fav_jd_cache *fav_jd_cache_get(lua_State *L);
FAV_API int fav_jd_rpc_result(lua_State *L, const char *s, size_t len, int idx, int modern, fav_jd_cache *c);

#endif

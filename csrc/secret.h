/* secret.h: favcrm.Secret for the other C units (http.c, fs.c).
 * A secret's bytes live inside its userdata (Lua-owned memory), are
 * NUL-terminated, and are wiped by close, __gc and __close. */
#ifndef FAV_SECRET_H
#define FAV_SECRET_H

#include <stddef.h>

#include "favcrm.h"

#define FAV_SECRET_MT "favcrm.Secret"

/* The bytes of the live secret at idx (NUL-terminated; *len set when len
 * is non-NULL), or NULL when the value is not a favcrm.Secret or is closed.
 * The pointer is valid while the secret is alive and open. Never raises. */
FAV_API const char *fav_secret_get(lua_State *L, int idx, size_t *len);

/* fav_secret_get for a caller that has already checked that ud (a full
 * userdata's block) is a favcrm.Secret, by its metatable: no registry
 * lookup. NULL when the secret is closed. Never raises. */
FAV_API const char *fav_secret_bytes(void *ud, size_t *len);

/* Pushes a new open favcrm.Secret holding a copy of len bytes of p.
 * Can raise (memory); p is not touched then. */
FAV_API void fav_secret_push(lua_State *L, const char *p, size_t len);

/* Pushes a new open favcrm.Secret of length 0 with room for cap bytes and
 * returns that room, for a caller that reads a secret straight into it
 * (then calls fav_secret_setlen). Can raise (memory). */
FAV_API char *fav_secret_pushbuf(lua_State *L, size_t cap);

/* Sets the length of the open secret at idx to len (<= its room), wiping
 * the bytes after it. Returns 0, or -1 when idx is not an open secret or
 * len is too large. Never raises. */
FAV_API int fav_secret_setlen(lua_State *L, int idx, size_t len);

/* Zeroes n bytes at p in a way the compiler cannot drop (explicit_bzero
 * where the feature macros expose it, else a volatile loop). */
FAV_API void fav_wipe(void *p, size_t n);

#endif

/* util.h: the helpers every unit of favcrm.core shares (util.c).
 *
 * The first half is plain C (no Lua), so sse.c and its fuzz target can use
 * it: the symbol-visibility macro, the max_event_bytes default, the growable
 * buffer and the monotonic clock. The second half needs a lua_State: the one
 * metatable helper, the one error constructor and the time-argument checks.
 * Everything declared here is FAV_API: shared between the units, never
 * exported from core.so (only luaopen_* is). */
#ifndef FAV_UTIL_H
#define FAV_UTIL_H

#include <stddef.h>

/* Marks a function shared between units of the module: visible to the
 * linker inside core.so, hidden from everything that loads it, whatever
 * flags the build passes (luarocks' builtin type passes no
 * -fvisibility=hidden). */
#ifndef FAV_API
#if defined(__GNUC__)
#define FAV_API __attribute__((visibility("hidden")))
#else
#define FAV_API
#endif
#endif

/* The one default cap on one event (an SSE event over HTTP, a line of a
 * stdio child, a parser made by core.sse_parser()): 8 MiB. Lua reads it as
 * core.MAX_EVENT_BYTES. */
#define FAV_MAX_EVENT_BYTES ((size_t)8 << 20)

/* Largest number of milliseconds a wait or a timeout is clamped to (about
 * 24.8 days): fits an int, a long and curl's long options. */
#define FAV_MS_MAX 2147483647.0

/* ---- growable byte buffer (no Lua) ----------------------------------- */

/* A malloc'd byte buffer. Zero-initialise it ({0}) before use; it owns
 * p. Its contents are always followed by a NUL byte once p is non-NULL, and
 * it never allocates more than limit + 1 bytes for a given limit. */
typedef struct fav_buf {
  char *p;
  size_t len, cap;
} fav_buf;

/* Makes room for need bytes (plus the NUL) in b, doubling, never past
 * limit + 1. Returns 0, or -1 when need > limit or memory fails (b is then
 * unchanged). Never raises. */
FAV_API int fav_buf_reserve(fav_buf *b, size_t need, size_t limit);

/* Appends n bytes of s to b, keeping b->len <= limit. Returns 0, or -1
 * (over limit or memory; b unchanged). Never raises. */
FAV_API int fav_buf_add(fav_buf *b, const char *s, size_t n, size_t limit);

/* Replaces b's contents with n bytes of s. 0 or -1 as fav_buf_add. */
FAV_API int fav_buf_set(fav_buf *b, const char *s, size_t n, size_t limit);

/* Frees b's memory; b is then empty and reusable. Never raises. */
FAV_API void fav_buf_free(fav_buf *b);

/* Grows the array *pp of elements of size sz so that it holds need of
 * them, doubling from 16. Returns 0, or -1 (overflow or memory; *pp and
 * *cap unchanged). Never raises. */
FAV_API int fav_grow(void **pp, size_t *cap, size_t need, size_t sz);

/* ---- base64 (no Lua) ------------------------------------------------- */

/* Characters of base64 (RFC 4648 section 4, padded) of n bytes, or with
 * url the unpadded base64url of section 5. */
#define FAV_B64_LEN(n, url) ((url) ? ((n) * 4 + 2) / 3 : ((n) + 2) / 3 * 4)

/* Writes the base64 (url = 0: standard alphabet, padded) or base64url
 * (url = 1: unpadded) of in[0..n) to out, which has FAV_B64_LEN(n, url)
 * bytes; returns that count. Never raises. */
FAV_API size_t fav_b64(char *out, const unsigned char *in, size_t n, int url);

/* ---- clock (no Lua) -------------------------------------------------- */

/* Milliseconds on the monotonic clock (arbitrary origin). Never raises. */
FAV_API double fav_monotonic_ms(void);

/* ---- with Lua -------------------------------------------------------- */

struct lua_State;
struct luaL_Reg;

/* Registers the metatable `name` (luaL_newmetatable) with __name = name,
 * __index = a table of methods, the functions of meta (may be NULL) and,
 * when close is non-NULL, __gc and __close = close (one idempotent close
 * for the three, as every object here has). Leaves the metatable on the
 * stack. Can raise (memory). */
FAV_API void fav_newclass(struct lua_State *L, const char *name, const struct luaL_Reg *methods,
                          const struct luaL_Reg *meta, int (*close)(struct lua_State *));

/* The error codes C can produce: one list (X-macro), in DESIGN.md's order;
 * io, not_found, no_terminal and invalid_schema are the C-only ones.
 * Who returns what (as err.code of nil, err, or a "done" item's error):
 *   core.write_file_atomic, mkdir_p      io
 *   core.stat, chmod, unlink             not_found (ENOENT), io
 *   core.read_secret_line                no_terminal, too_large, cancelled, io
 *   core.spawn                           spawn (was network before issue 13)
 *   proc:write                           io (stdin closed), too_large (was a
 *                                        bare string before issue 13)
 *   parser:feed (core.sse_parser)        too_large
 *   core.schema_compile                  invalid_schema
 *   http "done" items (error=)           timeout, tls, invalid_arguments
 *                                        (bad URL/scheme), network, too_large
 * Misuse raises instead (luaL_argerror / luaL_error), never a code. */
#define FAV_ERRORS(X)                 \
  X(INVALID_ARGUMENTS, "invalid_arguments") \
  X(TIMEOUT, "timeout")               \
  X(NETWORK, "network")               \
  X(TLS, "tls")                       \
  X(TOO_LARGE, "too_large")           \
  X(CANCELLED, "cancelled")           \
  X(SPAWN, "spawn")                   \
  X(IO, "io")                         \
  X(NOT_FOUND, "not_found")           \
  X(NO_TERMINAL, "no_terminal")       \
  X(INVALID_SCHEMA, "invalid_schema")

#define FAV_ERR_ENUM(id, s) FAV_E##id,
typedef enum fav_err { FAV_ERRORS(FAV_ERR_ENUM) FAV_E_COUNT } fav_err;
#undef FAV_ERR_ENUM

/* The stable code string of e ("io" for an out-of-range value). */
FAV_API const char *fav_errname(fav_err e);

/* Pushes a new error table {code = fav_errname(e), message = <fmt, ...
 * formatted as lua_pushfstring does>}; the caller adds the fields that fit
 * the code (errno, path, keyword, ...). lua/favcrm/errors.lua `wrap` gives
 * it the error metatable. Can raise (memory): call it only when no C
 * resource is held. */
FAV_API void fav_pusherror(struct lua_State *L, fav_err e, const char *fmt, ...);

/* Pushes nil and an error table as fav_pusherror; returns 2, for
 * `return fav_pushfail(L, ...)`. Can raise (memory). */
FAV_API int fav_pushfail(struct lua_State *L, fav_err e, const char *fmt, ...);

/* A time in milliseconds for argument arg: def when absent (nil or none),
 * else a number that must be finite and not negative (raises a
 * luaL_argerror naming arg otherwise). Huge finite values are clamped to
 * FAV_MS_MAX, so the result always converts to int or long safely. */
FAV_API double fav_optms(struct lua_State *L, int arg, double def);

/* Field k of the table at index t as milliseconds, as fav_optms: def when
 * nil, raises "bad option 'k' (...)" when not a finite, non-negative
 * number, clamps to FAV_MS_MAX. */
FAV_API double fav_optfield_ms(struct lua_State *L, int t, const char *k, double def);

/* The same for the value at the top of the stack (field k, already
 * fetched), which it pops. */
FAV_API double fav_popfield_ms(struct lua_State *L, const char *k, double def);

/* A non-negative double, clamped to [0, FAV_MS_MAX], as an int. */
FAV_API int fav_ms_int(double ms);

#endif

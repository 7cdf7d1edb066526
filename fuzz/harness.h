/* harness.h: a Lua 5.4 state with favcrm.core (linked in statically from
 * csrc/) and lua-cjson (the system's, through require) for the libFuzzer
 * targets that need Lua. See mk/checks.mk, `make fuzz`. */
#ifndef FAV_FUZZ_HARNESS_H
#define FAV_FUZZ_HARNESS_H

#include <stddef.h>
#include <stdint.h>
#include <lua.h>

/* Opens a state once per process: standard libraries, package.path on the
 * repository's lua/ folder, favcrm.core preloaded, then runs `driver` (Lua
 * source that returns one function). Aborts if any of that fails: a broken
 * harness is not a finding. */
lua_State *fav_fuzz_state(const char *driver);

/* Calls the driver function with the fuzz input as one string. With
 * strict 0 a Lua error is not a finding (raising on bad input is allowed);
 * with strict 1 it is: the message is printed and the process aborts, so
 * libFuzzer keeps the input. Runs a full collection every `gc_every` calls
 * so __gc paths are exercised too. */
void fav_fuzz_call(lua_State *L, const uint8_t *data, size_t size, int gc_every, int strict);

/* The libFuzzer entry point of a Lua target: one state per process made
 * from `driver` on the first input, then fav_fuzz_call for each. */
#define FAV_FUZZ_LUA_TARGET(driver, gc_every, strict)                     \
  int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);           \
  int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {          \
    static lua_State *L;                                                  \
    if (!L) L = fav_fuzz_state(driver);                                   \
    fav_fuzz_call(L, data, size, gc_every, strict);                       \
    return 0;                                                             \
  }

#endif

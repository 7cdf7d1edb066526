# favcrm-lua. `make` builds favcrm.core for Lua 5.4; `make LUA=5.1|5.2|5.3|luajit`
# builds the same source for the others. `make test`, `make demo`: see README.md.

LUA        ?= 5.4
ifeq ($(LUA),luajit)
LUA_BIN    ?= luajit
LUA_PC     ?= luajit
else
LUA_BIN    ?= lua$(LUA)
LUA_PC     ?= lua$(LUA)
endif
PKG_CONFIG ?= pkg-config
LUA_INC    ?= $(shell $(PKG_CONFIG) --cflags $(LUA_PC) 2>/dev/null || echo -I/usr/include/$(if $(filter luajit,$(LUA)),luajit-2.1,lua$(LUA)))
CURL_CFLAGS ?= $(shell $(PKG_CONFIG) --cflags libcurl 2>/dev/null)
CURL_LIBS  ?= $(shell $(PKG_CONFIG) --libs libcurl 2>/dev/null || echo -lcurl)
PCRE2_CFLAGS ?= $(shell $(PKG_CONFIG) --cflags libpcre2-8 2>/dev/null)
PCRE2_LIBS ?= $(shell $(PKG_CONFIG) --libs libpcre2-8 2>/dev/null || echo -lpcre2-8)
# OpenSSL libcrypto (csrc/crypto.c: SHA-256, CSPRNG, JWS for OAuth)
CRYPTO_CFLAGS ?= $(shell $(PKG_CONFIG) --cflags libcrypto 2>/dev/null)
CRYPTO_LIBS ?= $(shell $(PKG_CONFIG) --libs libcrypto 2>/dev/null || echo -lcrypto)

CC         ?= cc
OPT        ?= -O2 -g
WARN       ?= -Wall -Wextra -Wmissing-prototypes -Wshadow -Wpointer-arith -Wstrict-prototypes
CFLAGS     ?= $(OPT)
ALL_CFLAGS  = -std=c99 -D_POSIX_C_SOURCE=200809L -fPIC -fvisibility=hidden $(WARN) \
              $(LUA_INC) $(CURL_CFLAGS) $(PCRE2_CFLAGS) $(CRYPTO_CFLAGS) $(CFLAGS) $(SAN)
LDFLAGS    ?=
LIBS        = $(CURL_LIBS) $(CRYPTO_LIBS) -lm -ldl

BUILD      ?= build/$(LUA)$(if $(SAN),-san)
SRCS        = $(wildcard csrc/*.c)
OBJS        = $(patsubst csrc/%.c,$(BUILD)/obj/%.o,$(SRCS))
MODULE      = $(BUILD)/favcrm/core.so

# SANDBOX_ERA: the protocol era of the sandboxes that `make test`, `make demo`
# and the benchmarks start: 2025 (default: the v1 SDK, sessions), 2026 (the
# v2 SDK, MCP 2026-07-28 only) or dual (both); sandbox/README.md.
SANDBOX_ERA ?= $(FAVCRM_SANDBOX_ERA)
ifneq ($(SANDBOX_ERA),)
export FAVCRM_SANDBOX_ERA := $(SANDBOX_ERA)
endif

.PHONY: all module test demo deps sandbox-deps lint clean bench bench-smoke asan valgrind
all: module
module: $(MODULE)

$(BUILD)/obj/%.o: csrc/%.c $(wildcard csrc/*.h) Makefile
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) -c $< -o $@

$(MODULE): $(OBJS)
	@mkdir -p $(dir $@)
	$(CC) -shared $(SAN) $(LDFLAGS) -o $@ $(OBJS) $(LIBS)

# Installs missing Debian packages (as root) or prints the exact command;
# .ci/deps.sh is the one list (`bash .ci/deps.sh 5.4 test --list` prints it).
deps:
	@bash .ci/deps.sh $(LUA) test

sandbox-deps:
	@bash .ci/sandbox-deps.sh

# TEST_SPECS: spec files or folders to run instead of all of spec/
test: deps sandbox-deps
	@$(MAKE) --no-print-directory module
	@bash spec/support/run.sh $(LUA_BIN) $(BUILD) $(TEST_SPECS)

demo:
	@bash .ci/deps.sh $(LUA) demo
	@bash .ci/sandbox-deps.sh
	@$(MAKE) --no-print-directory module
	@bash examples/demo.sh $(LUA_BIN) $(BUILD)

lint:
	@bash .ci/deps.sh $(LUA) lint
	luacheck --no-color -q $(wildcard lua plugin spec examples bench bin/favcrm conformance/client.lua)

clean:
	rm -rf build

# More targets (sanitizers, fuzzing, benchmarks) live in mk/*.mk.
-include $(wildcard mk/*.mk)

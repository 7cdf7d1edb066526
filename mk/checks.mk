# Sanitizers, valgrind and fuzzing (issue 8). None of these is part of
# `make test`; .ci/checks.sh runs the first two for Lua 5.4.
#
#   make asan       ASan+UBSan (+float-cast-overflow; clang) build in
#                   build/5.4-asan, whole spec suite
#   make valgrind   the spec suite's busted process under valgrind (Lua 5.4)
#   make fuzz       libFuzzer targets (clang), FUZZ_SECONDS each (default 60)
#
# The sanitized module is loaded by a stock Lua, so the ASan runtime is
# preloaded by a small wrapper that stands in for the Lua binary (through the
# dynamic loader's --preload where it has it, so only into that Lua; else
# LD_PRELOAD); child Lua processes the specs start (FAVCRM_LUA_BIN) go
# through it too. Reports from every process land in $(ASAN_BUILD)/reports/
# and fail the target.

CHECK_LUA      ?= 5.4
CHECK_LUA_BIN  ?= lua$(CHECK_LUA)
# clang by default (issue 14: float-cast-overflow catches a time cast from a
# double that does not fit). With clang the module links the shared ASan
# runtime (-shared-libasan), which the wrapper preloads; with gcc, libasan.so.
ASAN_CC        ?= clang
ASAN_BUILD     ?= build/$(CHECK_LUA)-asan
ifneq ($(findstring clang,$(ASAN_CC)),)
ASAN_RT        ?= libclang_rt.asan-$(shell uname -m).so
ASAN_SHARED     = -shared-libasan
else
ASAN_RT        ?= libasan.so
ASAN_SHARED     =
endif
ASAN_SAN       ?= -fsanitize=address,undefined,float-cast-overflow \
                  -fno-sanitize-recover=undefined,float-cast-overflow -fno-omit-frame-pointer $(ASAN_SHARED)
ASAN_LIB        = $(shell $(ASAN_CC) -print-file-name=$(ASAN_RT))
ASAN_WRAP       = $(ASAN_BUILD)/lua
# The dynamic loader of the Lua binary when it takes --preload (glibc 2.33+):
# the wrapper then preloads the ASan runtime into that Lua alone, where
# LD_PRELOAD would put it in every program the specs start (sh, node, cc,
# nm, strace: none of them ours, each slowed down by it). Empty: LD_PRELOAD.
ASAN_LDSO      ?= $(shell lua=$$(command -v $(CHECK_LUA_BIN)) && \
                  ld=$$(readelf -l "$$lua" 2>/dev/null | sed -n 's/.*interpreter: \(.*\)]$$/\1/p') && \
                  [ -x "$$ld" ] && "$$ld" --help 2>/dev/null | grep -q -- --preload && echo "$$ld")
# extra busted arguments (spec files, --filter=...) for asan and valgrind
# (default: all of spec/ for asan, VG_SPECS for valgrind)
SPECS          ?=
# What CI runs under the sanitizers and valgrind (.ci/checks.sh): every spec
# whose work is in this process's C code (the C units, transports, session,
# client, scheduler, JSON, schema suite, and the fault, hostile, deadline,
# key, no-leak, gc, TLS and server-everything runs), leaving out the specs
# that mostly start other programs (the CLI and its terminal, the bridge,
# the README blocks, luarocks, Neovim, nginx, the shells' completion, the
# sandbox's own protocol and OAuth checks over LuaSocket), each of which
# would cost seconds a process under ASan or valgrind. `make asan` alone
# runs all.
CI_CHECK_SPECS ?= $(filter-out spec/cli_spec.lua spec/mcp_serve_spec.lua \
                  spec/integration/cli_tmux_spec.lua spec/integration/bridge_spec.lua \
                  spec/integration/bridge_era_spec.lua spec/integration/completion_spec.lua \
                  spec/integration/nvim_idle_spec.lua spec/integration/sandbox_oauth_spec.lua \
                  spec/sandbox_era_spec.lua \
                  spec/integration/bridge_docs_spec.lua spec/integration/docs_examples_spec.lua \
                  spec/integration/luarocks_spec.lua spec/integration/nginx_spec.lua \
                  spec/integration/resty_spec.lua spec/integration/nvim_spec.lua \
                  spec/integration/nvim_plugin_spec.lua,$(shell find spec -name "*_spec.lua" | sort))

VG_BUILD       ?= build/$(CHECK_LUA)-vg
VG_WRAP         = $(VG_BUILD)/lua
VALGRIND       ?= valgrind
VG_FLAGS       ?= --error-exitcode=9 --leak-check=full --errors-for-leak-kinds=definite \
                  --show-leak-kinds=definite --track-fds=no --num-callers=30 --child-silent-after-fork=yes \
                  --suppressions=$(CURDIR)/mk/valgrind.supp
# The suite under valgrind: everything but the official JSON Schema test
# suite (3,000 cases of pure validator work that the fuzzer and the ASan run
# cover), which alone would triple the time. VG_SPECS=spec runs all of it.
VG_SPECS       ?= $(filter-out spec/integration/schema_suite_spec.lua,$(shell find spec -name "*_spec.lua" | sort))
# FAVCRM_SPEC_SLOWDOWN: how many times slower than native the specs run
# (valgrind: ~20-50x). Specs scale their waits with it through
# spec/support/sandbox.lua: sandbox.patience(s) (how long to wait for what
# should happen: s x slowdown) and sandbox.stretch(x) (times that race each
# other: x4, kept in proportion); the bounds a spec tests stay as they are.
# Under valgrind posix_spawn falls back to fork+exec, so a program that does
# not exist shows as a child exiting 127, not as ENOENT from spawn: the one
# spec that asserts the ENOENT message is left out there.
VG_BUSTED_ARGS ?= '--filter-out=a program that cannot start'


FUZZ_CC        ?= clang
FUZZ_SECONDS   ?= 60
FUZZ_BUILD     ?= build/fuzz
FUZZ_LUA_PC    ?= lua5.4
FUZZ_FLAGS      = -g -O1 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined \
                  -fno-omit-frame-pointer -std=c99 -D_POSIX_C_SOURCE=200809L -Icsrc \
                  $(shell $(PKG_CONFIG) --cflags $(FUZZ_LUA_PC)) $(CURL_CFLAGS) $(PCRE2_CFLAGS)
FUZZ_LIBS       = $(shell $(PKG_CONFIG) --libs $(FUZZ_LUA_PC)) $(CURL_LIBS) $(PCRE2_LIBS) $(CRYPTO_LIBS) -lm -ldl
FUZZ_TARGETS    = sse schema rpc jd
# Leak checks (LSan after each input) only for sse: the Lua targets keep one
# state whose caches grow, which would make LSan scan after every input and
# run 50 times slower; their leaks are valgrind's job (`make valgrind`).
FUZZ_CORE_SRCS  = $(wildcard csrc/*.c)

.PHONY: asan valgrind fuzz fuzz-build checks-build checks-help

# Everything asan, valgrind and fuzz build, and nothing run: .ci/run builds it
# ahead, at the lowest priority, beside the runs that wait on I/O.
checks-build: fuzz-build
	@$(MAKE) --no-print-directory module LUA=$(CHECK_LUA) CC=$(ASAN_CC) BUILD=$(ASAN_BUILD) \
	  SAN='$(ASAN_SAN)' OPT='-O1 -g'
	@$(MAKE) --no-print-directory $(ASAN_WRAP)
	@$(MAKE) --no-print-directory module LUA=$(CHECK_LUA) BUILD=$(VG_BUILD) OPT='-O1 -g'
	@$(MAKE) --no-print-directory $(VG_WRAP)

# ---- ASan + UBSan -------------------------------------------------------------
$(ASAN_WRAP): Makefile mk/checks.mk
	@mkdir -p $(dir $@)
	@printf '%s\n' '#!/bin/sh' \
	  '# Lua with the ASan runtime preloaded (made by mk/checks.mk; ASAN_LDSO there)' \
	  'export ASAN_OPTIONS="detect_leaks=0:halt_on_error=1:abort_on_error=0:exitcode=86:log_path=$(CURDIR)/$(ASAN_BUILD)/reports/asan"' \
	  'export UBSAN_OPTIONS="halt_on_error=1:print_stacktrace=1:log_path=$(CURDIR)/$(ASAN_BUILD)/reports/ubsan"' \
	  $(if $(ASAN_LDSO),'exec $(ASAN_LDSO) --preload "$(ASAN_LIB)" "$(shell command -v $(CHECK_LUA_BIN))" "$$@"', \
	  'export LD_PRELOAD="$(ASAN_LIB)$${LD_PRELOAD:+ $$LD_PRELOAD}"' \
	  'exec $(CHECK_LUA_BIN) "$$@"') >$@
	@chmod +x $@

asan:
	@bash .ci/deps.sh $(CHECK_LUA)
	@bash .ci/sandbox-deps.sh
	@test -e "$(ASAN_LIB)" || { echo "asan: $(ASAN_CC) has no libasan.so (install libasan8 / libclang-rt-14-dev)" >&2; exit 1; }
	@$(MAKE) --no-print-directory module LUA=$(CHECK_LUA) CC=$(ASAN_CC) BUILD=$(ASAN_BUILD) \
	  SAN='$(ASAN_SAN)' OPT='-O1 -g'
	@$(MAKE) --no-print-directory $(ASAN_WRAP)
	@rm -rf $(ASAN_BUILD)/reports && mkdir -p $(ASAN_BUILD)/reports
	@start=$$(date +%s); \
	bash spec/support/run.sh $(CURDIR)/$(ASAN_WRAP) $(ASAN_BUILD) $(SPECS); rc=$$?; \
	if ls $(ASAN_BUILD)/reports/* >/dev/null 2>&1; then \
	  echo "asan: sanitizer reports:" >&2; cat $(ASAN_BUILD)/reports/* >&2; rc=1; fi; \
	echo "asan: $$(( $$(date +%s) - start )) s, $$([ $$rc = 0 ] && echo clean || echo FAILED)"; \
	exit $$rc

# ---- valgrind -------------------------------------------------------------------
# The wrapper runs busted (its first argument) under valgrind and every other
# Lua the specs start (FAVCRM_LUA_BIN children) plainly. A process busted
# forks is valgrind's until it execs: it writes a report file without a
# summary, which is removed; only reports with a summary are judged.
$(VG_WRAP): Makefile mk/checks.mk
	@mkdir -p $(dir $@)
	@printf '%s\n' '#!/bin/sh' \
	  '# Lua; busted itself under valgrind (made by mk/checks.mk)' \
	  'case "$$1" in' \
	  '  */busted) exec $(VALGRIND) $(VG_FLAGS) --log-file=$(CURDIR)/$(VG_BUILD)/valgrind.%p.log $(CHECK_LUA_BIN) "$$@" ;;' \
	  '  *) exec $(CHECK_LUA_BIN) "$$@" ;;' \
	  'esac' >$@
	@chmod +x $@

valgrind:
	@bash .ci/deps.sh $(CHECK_LUA) valgrind
	@bash .ci/sandbox-deps.sh
	@$(MAKE) --no-print-directory module LUA=$(CHECK_LUA) BUILD=$(VG_BUILD) OPT='-O1 -g'
	@$(MAKE) --no-print-directory $(VG_WRAP)
	@rm -f $(VG_BUILD)/valgrind.*.log
	@start=$$(date +%s); \
	FAVCRM_SPEC_SLOWDOWN=20 bash spec/support/run.sh $(CURDIR)/$(VG_WRAP) $(VG_BUILD) $(VG_BUSTED_ARGS) $(or $(SPECS),$(VG_SPECS)); rc=$$?; \
	n=0; for f in $(VG_BUILD)/valgrind.*.log; do \
	  grep -q "ERROR SUMMARY" "$$f" 2>/dev/null || { rm -f "$$f"; continue; }; \
	  n=$$((n + 1)); grep -E "ERROR SUMMARY|definitely lost" "$$f"; \
	  if ! grep -q "ERROR SUMMARY: 0 errors" "$$f"; then cat "$$f" >&2; rc=1; fi; \
	done; \
	[ $$n -gt 0 ] || { echo "valgrind: no valgrind report was written" >&2; rc=1; }; \
	echo "valgrind: $$(( $$(date +%s) - start )) s, $$([ $$rc = 0 ] && echo clean || echo FAILED)"; \
	exit $$rc

# ---- libFuzzer --------------------------------------------------------------------
# Each target links the module's C sources and Lua 5.4 statically into one
# program; fuzz/harness.c opens favcrm.core and lua-cjson in a Lua state.
$(FUZZ_BUILD)/sse_fuzz: fuzz/sse_fuzz.c csrc/sse.c csrc/sse.h csrc/util.c csrc/util.h
	@mkdir -p $(dir $@)
	$(FUZZ_CC) $(FUZZ_FLAGS) -o $@ fuzz/sse_fuzz.c csrc/sse.c csrc/util.c $(FUZZ_LIBS)

$(FUZZ_BUILD)/%_fuzz: fuzz/%_fuzz.c fuzz/harness.c fuzz/harness.h $(wildcard csrc/*.c csrc/*.h) lua/favcrm/session.lua
	@mkdir -p $(dir $@)
	$(FUZZ_CC) $(FUZZ_FLAGS) -DFAV_TOP='"$(CURDIR)"' -o $@ $< fuzz/harness.c $(FUZZ_CORE_SRCS) $(FUZZ_LIBS)

fuzz-build: $(addprefix $(FUZZ_BUILD)/,$(addsuffix _fuzz,$(FUZZ_TARGETS)))

fuzz: fuzz-build
	@rc=0; for t in $(FUZZ_TARGETS); do \
	  mkdir -p $(FUZZ_BUILD)/corpus/$$t $(FUZZ_BUILD)/crashes/$$t; \
	  echo "== fuzz $$t ($(FUZZ_SECONDS) s)"; \
	  leaks=0; [ $$t = sse ] && leaks=1; \
	  ASAN_OPTIONS=halt_on_error=1 UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 \
	  $(FUZZ_BUILD)/$${t}_fuzz -max_total_time=$(FUZZ_SECONDS) -max_len=65536 -timeout=20 -detect_leaks=$$leaks \
	    -rss_limit_mb=2048 -print_final_stats=1 -artifact_prefix=$(FUZZ_BUILD)/crashes/$$t/ \
	    $(FUZZ_BUILD)/corpus/$$t fuzz/corpus/$$t >$(FUZZ_BUILD)/$$t.log 2>&1 || rc=1; \
	  grep -E "^#[0-9]+ +DONE|stat::number_of_executed_units|stat::peak_rss_mb" $(FUZZ_BUILD)/$$t.log; \
	  grep -E "^#[0-9]+" $(FUZZ_BUILD)/$$t.log | tail -1 | grep -oE "cov: [0-9]+ ft: [0-9]+" ; \
	  if grep -qE "ERROR: (AddressSanitizer|LeakSanitizer|libFuzzer)|runtime error:" $(FUZZ_BUILD)/$$t.log; then \
	    echo "fuzz $$t: CRASH, see $(FUZZ_BUILD)/$$t.log and $(FUZZ_BUILD)/crashes/$$t/" >&2; \
	    grep -A30 -E "ERROR:|runtime error:" $(FUZZ_BUILD)/$$t.log | head -60 >&2; rc=1; fi; \
	done; exit $$rc

.PHONY: print-ci-check-specs print-fuzz-targets
print-ci-check-specs:
	@echo $(CI_CHECK_SPECS)
print-fuzz-targets:
	@echo $(FUZZ_TARGETS)

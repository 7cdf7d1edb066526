# Benchmarks (issue 9). `make bench`: the full run, writes bench/results.json
# and bench/results.png; `make bench-smoke`: a quick pass (a few hundred
# calls per client) that fails only on errors, for CI. See bench/README.md.
# Neither is part of `make test`.

BENCH_DIR    = build/bench
BENCH_CC     ?= $(CC)
BENCH_CFLAGS ?= -O2 -g -Wall -Wextra
BENCH_BINS   = $(BENCH_DIR)/runstat $(BENCH_DIR)/libcurl_c

.PHONY: bench bench-smoke bench-build bench-deps bench-openresty bench-openresty-deps

$(BENCH_DIR)/runstat: bench/runstat.c
	@mkdir -p $(dir $@)
	$(BENCH_CC) $(BENCH_CFLAGS) -o $@ $<

$(BENCH_DIR)/libcurl_c: bench/libcurl_c.c
	@mkdir -p $(dir $@)
	$(BENCH_CC) $(BENCH_CFLAGS) $(CURL_CFLAGS) -o $@ $< $(CURL_LIBS)

# Lua 5.4 and LuaJIT (the two favcrm columns), gnuplot for the chart (the
# run goes on without it), valgrind for instr_per_call (callgrind; likewise), the sandbox's npm packages (the TS SDK column)
# and bench/'s own (ajv, for the schema rows; optional).
bench-deps:
	@bash .ci/deps.sh 5.4
	@bash .ci/deps.sh luajit
	@command -v gnuplot >/dev/null 2>&1 || bash .ci/deps.sh 5.4 gnuplot-nox || \
	  echo "bench: no gnuplot, so no bench/results.png" >&2
	@command -v valgrind >/dev/null 2>&1 || bash .ci/deps.sh 5.4 valgrind || \
	  echo "bench: no valgrind, so no instr_per_call in bench/results.json" >&2
	@bash .ci/sandbox-deps.sh
	@if [ -f bench/package-lock.json ] && [ ! -d bench/node_modules/ajv ]; then \
	  (cd bench && npm ci --no-audit --no-fund --loglevel=error >&2) || \
	  echo "bench: npm ci in bench/ failed: no ajv column in schema.*" >&2; fi

bench-build: $(BENCH_BINS)
	@$(MAKE) --no-print-directory LUA=5.4 module
	@$(MAKE) --no-print-directory LUA=luajit module

bench: bench-deps bench-openresty-deps
	@$(MAKE) --no-print-directory bench-build
	@bash bench/run.sh
	@bash bench/openresty.sh

bench-smoke: bench-deps bench-openresty-deps
	@$(MAKE) --no-print-directory bench-build
	@bash bench/run.sh --smoke
	@bash bench/openresty.sh --smoke

# favcrm.resty in nginx against nginx's proxy_pass, with wrk (issue 19):
# nginx, its Lua module and wrk (.ci/deps.sh's bench role).
bench-openresty-deps:
	@bash .ci/deps.sh luajit bench
	@bash .ci/sandbox-deps.sh

bench-openresty: bench-openresty-deps
	@$(MAKE) --no-print-directory LUA=5.4 module
	@$(MAKE) --no-print-directory LUA=luajit module
	@bash bench/openresty.sh

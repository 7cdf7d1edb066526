# The API reference (issue 13): `make docs` writes build/docs/index.html.
#
# LDoc (Debian's lua-ldoc) reads config.ld, which translates the LuaLS
# `---@` annotations of lua/ and types/ (the C module's meta file). The
# target fails on any LDoc warning, and .ci/doccheck.lua fails it on a
# public function (one README.md or docs/*.md names) without annotations.
# .ci/doc-pending.txt lists what is still to do: names the checker lets
# pass, and source files (lines with a "/") whose LDoc warnings are let
# pass; both are printed.

DOCS_LUA     ?= lua5.4
DOCS_PENDING ?= .ci/doc-pending.txt

.PHONY: docs
docs:
	@bash .ci/deps.sh $(LUA) docs
	@rm -rf build/docs && mkdir -p build/docs
	@ldoc . >build/docs/ldoc.log 2>&1; rc=$$?; \
	grep -vE '^(reading configuration from config\.ld|output written to .*)$$' build/docs/ldoc.log >build/docs/warnings.txt || true; \
	pend=$$(grep -E '^[^#]*/' $(DOCS_PENDING) 2>/dev/null | sed 's/#.*//; s/[[:space:]]*$$//'); \
	: >build/docs/blocking.txt; \
	while IFS= read -r w; do \
	  ok=; for f in $$pend; do case "$$w" in *"$(CURDIR)/$$f:"*) ok=1;; esac; done; \
	  if [ -n "$$ok" ]; then echo "ldoc (pending file): $$w"; else echo "$$w" >>build/docs/blocking.txt; fi; \
	done <build/docs/warnings.txt; \
	n=$$(wc -l <build/docs/blocking.txt); \
	if [ $$rc -ne 0 ] || [ $$n -gt 0 ]; then cat build/docs/blocking.txt >&2; \
	  echo "docs: ldoc failed (exit $$rc, $$n warnings)" >&2; exit 1; fi; \
	echo "docs: ldoc: 0 warnings ($$(wc -l <build/docs/warnings.txt) in pending files)"
	@$(DOCS_LUA) .ci/doccheck.lua --pending $(DOCS_PENDING)
	@echo "docs: build/docs/index.html"

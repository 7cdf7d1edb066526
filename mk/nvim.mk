# The Neovim build hook (issue 19): `make nvim` compiles favcrm/core.so for
# the Lua inside Neovim (LuaJIT, or PUC Lua 5.1 where `nvim --version` does
# not say LuaJIT) and puts it at lua/favcrm/core.so, where Neovim's
# runtimepath loader finds `require("favcrm.core")`. Plugin managers run it
# in the plugin folder: lazy.nvim `build = "make nvim"`, packer `run = "make nvim"`.
# The file is replaced by a rename, so a Neovim that has the old one loaded
# keeps a valid mapping. The help tags (doc/tags, not checked in) are
# generated too.

NVIM       ?= nvim
NVIM_LUA   ?= $(shell $(NVIM) --version 2>/dev/null | grep -q '^LuaJIT' && echo luajit || \
                ($(NVIM) --version >/dev/null 2>&1 && echo 5.1 || echo luajit))

.PHONY: nvim
nvim:
	@$(MAKE) --no-print-directory LUA=$(NVIM_LUA) BUILD=build/nvim module || { \
	  echo "make nvim: the build failed; it needs a C compiler and the headers of $(NVIM_LUA), libcurl and PCRE2" >&2; \
	  echo "  (Debian: sudo apt-get install build-essential $(if $(filter luajit,$(NVIM_LUA)),libluajit-5.1-dev,liblua5.1-0-dev) libcurl4-openssl-dev libpcre2-dev)" >&2; \
	  exit 1; }
	@cp build/nvim/favcrm/core.so lua/favcrm/.core.so.tmp && mv -f lua/favcrm/.core.so.tmp lua/favcrm/core.so
	@echo "make nvim: lua/favcrm/core.so built for Neovim's $(NVIM_LUA)"
	@if $(NVIM) --version >/dev/null 2>&1; then \
	  $(NVIM) --headless -u NONE -i NONE -n -c 'helptags doc' -c 'qa!' </dev/null && echo "make nvim: doc/tags generated"; \
	fi

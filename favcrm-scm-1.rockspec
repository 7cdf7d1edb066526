rockspec_format = "3.0"
package = "favcrm"
version = "scm-1"
source = {
  url = "git+https://github.com/favcrm/favcrm-lua.git",
}
description = {
  summary = "FavCRM for Lua: agentic signup, doctor and typed CRM tools over MCP",
  detailed = [[
A Lua extension module in C that signs a person up for FavCRM from inside a
conversation, keeps the API key as a masked secret, checks the workspace and
calls FavCRM's typed CRM tools over MCP (Streamable HTTP on libcurl, JSON
Schema validation in C with PCRE2). Works on Lua 5.1-5.4 and LuaJIT.
]],
  license = "MIT",
  labels = { "mcp", "crm", "favcrm", "curl", "json-schema" },
}
dependencies = {
  "lua >= 5.1",
  "lua-cjson",
}
external_dependencies = {
  CURL = { library = "curl" },
  PCRE2 = { header = "pcre2.h", library = "pcre2-8" },
  OPENSSL = { header = "openssl/evp.h", library = "crypto" },
}
build = {
  type = "builtin",
  modules = {
    ["favcrm.core"] = {
      sources = {
        "csrc/compat.c", "csrc/core.c", "csrc/crypto.c", "csrc/fs.c", "csrc/http.c", "csrc/json_decode.c", "csrc/listen.c",
        "csrc/proc.c", "csrc/util.c",
        "csrc/schema_compile.c", "csrc/schema_eval.c", "csrc/schema_format.c",
        "csrc/schema_lua.c", "csrc/schema_uri.c", "csrc/secret.c", "csrc/sse.c", "csrc/sse_lua.c",
      },
      defines = { "_POSIX_C_SOURCE=200809L" },
      libraries = { "curl", "crypto", "dl" }, -- PCRE2: dlopen on first use
      incdirs = { "csrc", "$(CURL_INCDIR)", "$(PCRE2_INCDIR)", "$(OPENSSL_INCDIR)" },
      libdirs = { "$(CURL_LIBDIR)", "$(PCRE2_LIBDIR)", "$(OPENSSL_LIBDIR)" },
    },
    ["favcrm"] = "lua/favcrm/init.lua",
    ["favcrm.cli"] = "lua/favcrm/cli.lua",
    ["favcrm.cli_tools"] = "lua/favcrm/cli_tools.lua",
    ["favcrm.cli_workspace"] = "lua/favcrm/cli_workspace.lua",
    ["favcrm.client"] = "lua/favcrm/client.lua",
    ["favcrm.config"] = "lua/favcrm/config.lua",
    ["favcrm.config_file"] = "lua/favcrm/config_file.lua",
    ["favcrm.config_toml"] = "lua/favcrm/config_toml.lua",
    ["favcrm.doctor"] = "lua/favcrm/doctor.lua",
    ["favcrm.era"] = "lua/favcrm/era.lua",
    ["favcrm.era_wire"] = "lua/favcrm/era_wire.lua",
    ["favcrm.era_verdicts"] = "lua/favcrm/era_verdicts.lua",
    ["favcrm.era_answers"] = "lua/favcrm/era_answers.lua",
    ["favcrm.errors"] = "lua/favcrm/errors.lua",
    ["favcrm.json"] = "lua/favcrm/json.lua",
    ["favcrm.json_text"] = "lua/favcrm/json_text.lua",
    ["favcrm.lazy"] = "lua/favcrm/lazy.lua",
    ["favcrm.login"] = "lua/favcrm/login.lua",
    ["favcrm.mcp_serve"] = "lua/favcrm/mcp_serve.lua",
    ["favcrm.recipes.flow"] = "lua/favcrm/recipes/flow.lua",
    ["favcrm.recipes.safe_call"] = "lua/favcrm/recipes/safe_call.lua",
    ["favcrm.recipes.signup"] = "lua/favcrm/recipes/signup.lua",
    ["favcrm.recipes.team_invite"] = "lua/favcrm/recipes/team_invite.lua",
    ["favcrm.registration"] = "lua/favcrm/registration.lua",
    ["favcrm.protocol"] = "lua/favcrm/protocol.lua",
    ["favcrm.tasks"] = "lua/favcrm/tasks.lua",
    ["favcrm.session"] = "lua/favcrm/session.lua",
    ["favcrm.session_listen"] = "lua/favcrm/session_listen.lua",
    ["favcrm.session_answer"] = "lua/favcrm/session_answer.lua",
    ["favcrm.session_http_error"] = "lua/favcrm/session_http_error.lua",
    ["favcrm.session_negotiate"] = "lua/favcrm/session_negotiate.lua",
    ["favcrm.session_mrtr"] = "lua/favcrm/session_mrtr.lua",
    ["favcrm.suggest"] = "lua/favcrm/suggest.lua",
    ["favcrm.scheduler"] = "lua/favcrm/scheduler.lua",
    ["favcrm.schema"] = "lua/favcrm/schema.lua",
    ["favcrm.nvim"] = "lua/favcrm/nvim.lua",
    ["favcrm.oauth"] = "lua/favcrm/oauth.lua",
    ["favcrm.nvim.commands"] = "lua/favcrm/nvim/commands.lua",
    ["favcrm.health"] = "lua/favcrm/health.lua",
    ["favcrm.resty"] = "lua/favcrm/resty.lua",
    ["favcrm.transport"] = "lua/favcrm/transport/init.lua",
    ["favcrm.transport.custom"] = "lua/favcrm/transport/custom.lua",
    ["favcrm.transport.stdio"] = "lua/favcrm/transport/stdio.lua",
    ["favcrm.url"] = "lua/favcrm/url.lua",
    ["favcrm.util"] = "lua/favcrm/util.lua",
  },
  install = {
    bin = { favcrm = "bin/favcrm" },
  },
}

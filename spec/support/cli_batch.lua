-- Runs favcrm.cli's main once per argument list, one after another, in ONE
-- process: for the CLI specs whose commands need no process of their own
-- (`--help` of every command), where a process start each would cost more
-- than the command.
--   $FAVCRM_LUA_BIN spec/support/cli_batch.lua IN OUT
-- IN: a JSON array of argument arrays. OUT: a JSON array, in the same order,
-- of { code = exit status, stdout = text, stderr = text }. Module paths are
-- set as bin/favcrm sets them (the checkout's lua/ and build/, or
-- FAVCRM_BUILD); the environment, stdin and terminal checks are the process's
-- own, as they are for bin/favcrm.
local script = arg and arg[0] or ""
local top = script:match("^(.*)/spec/support/[^/]*$") or "."
local flavour = jit and "luajit" or _VERSION:match("%d+%.%d+")
local build = os.getenv("FAVCRM_BUILD")
if build and build ~= "" then
  if build:sub(1, 1) ~= "/" then build = top .. "/" .. build end
else
  build = top .. "/build/" .. flavour
end
package.path = top .. "/lua/?.lua;" .. top .. "/lua/?/init.lua;" .. top .. "/?.lua;" .. package.path
package.cpath = build .. "/?.so;" .. package.cpath

local cjson = require("cjson")
local cli = require("favcrm.cli")
local files = require("spec.support.files")


-- a file-like object that keeps what is written to it
local function capture()
  local buf = {}
  return {
    write = function(self, ...)
      for i = 1, select("#", ...) do buf[#buf + 1] = tostring((select(i, ...))) end
      return self
    end,
    flush = function(self) return self end,
    text = function() return table.concat(buf) end,
  }
end

local list = cjson.decode(assert(files.slurp(assert(arg[1], "usage: cli_batch.lua IN OUT"))))
local results = {}
for i, argv in ipairs(list) do
  local out, err = capture(), capture()
  local code = cli.main(argv, { stdout = out, stderr = err })
  results[i] = { code = code, stdout = out.text(), stderr = err.text() }
end
local f = assert(io.open(assert(arg[2], "usage: cli_batch.lua IN OUT"), "wb"))
f:write(cjson.encode(results))
f:close()

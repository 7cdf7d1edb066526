-- `favcrm completion zsh|fish` run in the real shells (issue 18): fish's
-- `complete -C LINE` and zsh's completion system in a pseudo-terminal
-- (spec/support/zsh_complete.zsh, zsh/zpty) complete every command path of
-- the command table to exactly its subcommands, flags after "--", and the
-- values of the flags that have a fixed set.
local cli = require("favcrm.cli")
local files = require("spec.support.files")

local LUA = os.getenv("FAVCRM_LUA_BIN") or "lua5.4"
local dir, tmpname = files.tmpdir("completion")
local q, spit, slurp = files.q, files.spit, files.slurp

local function have(prog)
  return files.sh("command -v " .. prog .. " >/dev/null 2>&1")
end

local function script(shell)
  local out = tmpname(shell .. "-out")
  assert(files.sh(LUA .. " bin/favcrm completion " .. shell .. " >" .. q(out)),
    "favcrm completion " .. shell .. " failed")
  return slurp(out)
end

local function lines_of(text)
  local t = {}
  for l in (text or ""):gmatch("[^\n]+") do t[#t + 1] = (l:gsub("\t.*$", "")) end
  table.sort(t)
  return t
end

local function sorted(list)
  local t = {}
  for i, v in ipairs(list) do t[i] = v end
  table.sort(t)
  return t
end

-- the paths with subcommands (the top, "plan", "team invite", ...)
local function paths_with_subs()
  local out = {}
  for _, c in ipairs(cli.command_paths()) do
    if #c.subs > 0 then out[#out + 1] = c end
  end
  return out
end

describe("completion scripts in the real shells", function()
  describe("fish", function()
    if not have("fish") then
      pending("fish is not installed (bash .ci/deps.sh installs it for the test role)")
      return
    end
    local file = tmpname("favcrm.fish")
    setup(function() spit(file, script("fish")) end)

    -- complete(lines) -> for each line, the sorted completions fish offers
    local function complete(list)
      local cmds = { "source " .. q(file) }
      for _, l in ipairs(list) do
        cmds[#cmds + 1] = "complete -C " .. q(l)
        cmds[#cmds + 1] = "echo '<<end>>'"
      end
      local out = tmpname("fish-out")
      assert(files.sh("fish -N -c " .. q(table.concat(cmds, "; ")) .. " >" .. q(out) .. " 2>&1"), slurp(out))
      local res, cur = {}, {}
      for l in (slurp(out) or ""):gmatch("[^\n]*\n") do
        l = l:gsub("\n$", "")
        if l == "<<end>>" then
          table.sort(cur)
          res[#res + 1] = cur
          cur = {}
        elseif l ~= "" then
          cur[#cur + 1] = (l:gsub("\t.*$", ""))
        end
      end
      assert.equal(#list, #res, slurp(out))
      return res
    end

    it("completes every command path of the table to its subcommands", function()
      local paths = paths_with_subs()
      local lines = {}
      for i, c in ipairs(paths) do lines[i] = "favcrm " .. (c.path == "" and "" or (c.path .. " ")) end
      local got = complete(lines)
      assert.is_true(#paths > 10)
      for i, c in ipairs(paths) do
        assert.same(sorted(c.subs), got[i], lines[i])
      end
    end)

    it("completes prefixes, flags after global options, and fixed flag values", function()
      local got = complete({ "favcrm pl", "favcrm --json plan check --", "favcrm team invite create --role ",
        "favcrm --url http://x whatsapp connect --mode co", "favcrm completion " })
      assert.same({ "plan" }, got[1])
      for _, f in ipairs({ "--tool", "--quota", "--module", "--delta", "--json", "--api-key" }) do
        assert.is_truthy(table.concat(got[2], " "):find(f, 1, true), f)
      end
      assert.same({ "manager", "staff" }, got[3])
      assert.same({ "coexistence" }, got[4])
      assert.same({ "bash", "fish", "zsh" }, got[5])
    end)
  end)

  describe("zsh", function()
    if not have("zsh") then
      pending("zsh is not installed (bash .ci/deps.sh installs it for the test role)")
      return
    end
    local fdir = dir .. "/zfunc"
    setup(function()
      os.execute("mkdir -p " .. q(fdir))
      spit(fdir .. "/_favcrm", script("zsh"))
    end)

    local function complete(line)
      local out = tmpname("zsh-out")
      local ok = os.execute("zsh -f spec/support/zsh_complete.zsh " .. q(fdir) .. " " .. q(line) .. " >" .. q(out)
        .. " 2>&1")
      assert(ok == true or ok == 0, "zsh_complete failed: " .. tostring(slurp(out)))
      return lines_of(slurp(out))
    end

    it("completes command paths of the table to their subcommands (compinit, zpty)", function()
      local n = 0
      for _, c in ipairs(paths_with_subs()) do
        -- the top, and each path one level down (the deeper ones share the code)
        if not c.path:find(" ", 1, true) then
          local line = "favcrm " .. (c.path == "" and "" or (c.path .. " "))
          assert.same(sorted(c.subs), complete(line), line)
          n = n + 1
        end
      end
      assert.is_true(n > 5)
      assert.same({ "accept", "accept-request", "accept-verify", "create" }, complete("favcrm team invite "))
    end)

    it("completes prefixes, flags and fixed flag values", function()
      assert.same({ "plan" }, complete("favcrm pl"))
      local flags = table.concat(complete("favcrm --json plan check --"), " ")
      for _, f in ipairs({ "--tool", "--quota", "--module", "--delta", "--json", "--api-key" }) do
        assert.is_truthy(flags:find(f, 1, true), f)
      end
      assert.same({ "manager", "staff" }, complete("favcrm team invite create --role "))
      assert.same({ "coexistence" }, complete("favcrm --url http://x whatsapp connect --mode co"))
    end)
  end)
end)

-- favcrm.config, the file itself (issue 14, "The config file"): concurrent
-- saves, the TOML the Rust CLI can write, bad escapes, folders and files
-- other users can write or own, load() of a folder; and favcrm.mask_key on
-- short keys.
local config = require("favcrm.config")
local core = require("favcrm.core")
local files = require("spec.support.files")
local sandbox = require("spec.support.sandbox")

local LUA = os.getenv("FAVCRM_LUA_BIN") or "lua5.4"
local q, slurp, spit = files.q, files.slurp, files.spit
local _, tmpname = files.tmpdir("config-file")

local function oct(s) return tonumber(s, 8) end

local sh_ok = files.sh

-- A fresh config folder (0700) and the path of config.toml in it.
local function fresh()
  local dir = tmpname("cfg") .. "/favcrm"
  assert(core.mkdir_p(dir, oct("700")))
  return dir .. "/config.toml", dir
end

-- Runs a Lua chunk in a child with XDG_CONFIG_HOME=xdg; returns its stdout.
local function child(xdg, code)
  local script = tmpname("child") .. ".lua"
  spit(script, code)
  local p = assert(io.popen("XDG_CONFIG_HOME=" .. q(xdg) .. " " .. LUA .. " " .. q(script) .. " 2>&1"))
  local out = p:read("*a")
  p:close()
  return out
end

describe("favcrm.config file", function()
  describe("save() from two processes at once", function()
    it("keeps both fields (one saves the key, one the URL) after every round", function()
      local path, dir = fresh()
      local fifo = dir .. "/replies"
      assert.is_true(sh_ok("mkfifo " .. q(fifo)), "mkfifo failed")
      local script = tmpname("saver") .. ".lua"
      -- Each round: read the round number on stdin, save one field, report
      -- on the shared FIFO. The parent starts both savers' rounds together.
      spit(script, [[
        local field, path, fifo = arg[1], arg[2], arg[3]
        local out = assert(io.open(fifo, "w"))
        local ok, config = pcall(require, "favcrm.config")
        for line in io.lines() do
          local n = tonumber(line)
          local v = field == "api_key" and ("fav_mcp_round" .. n .. string.rep("k", 24))
            or ("http://round" .. n .. ".example/mcp")
          local res, err
          if ok then
            ok, res, err = pcall(config.save, { [field] = v }, path)
            if ok and not res then res = "error " .. tostring(err.code) end
            if not ok then res = "raised " .. tostring(res) end
            ok = true
          else
            res = "require failed"
          end
          out:write(field, " ", n, " ", res == path and "saved" or tostring(res), "\n")
          out:flush()
        end
        out:close()
      ]])
      local function start(field)
        return assert(io.popen("timeout 120 " .. LUA .. " " .. q(script) .. " " .. field .. " " .. q(path)
          .. " " .. q(fifo), "w"))
      end
      local a, b = start("api_key"), start("url")
      local replies = assert(io.open(fifo, "r"))
      local lost = {}
      local rounds = 60
      for n = 1, rounds do
        a:write(n, "\n")
        b:write(n, "\n")
        a:flush()
        b:flush()
        local r1, r2 = replies:read("*l"), replies:read("*l")
        assert.is_truthy(r1 and r2, "a saver stopped in round " .. n)
        assert.matches(" " .. n .. " saved$", r1)
        assert.matches(" " .. n .. " saved$", r2)
        local got = assert(config.load(path))
        if got.api_key ~= "fav_mcp_round" .. n .. string.rep("k", 24)
          or got.url ~= "http://round" .. n .. ".example/mcp" then
          lost[#lost + 1] = n
        end
      end
      a:close()
      b:close()
      replies:close()
      assert.same({}, lost) -- rounds in which one of the two saves was lost
    end)

    it("gives up with a timeout error when the lock is held too long, leaving the file as it was", function()
      local path, dir = fresh()
      assert(config.save({ url = "http://first/mcp" }, path))
      local lockfile = dir .. "/.config.toml.lock" -- beside the file, hidden
      -- fcntl locks do not exclude their own process: the holder is a child
      local script = tmpname("holder") .. ".lua"
      spit(script, [[
        local core = require("favcrm.core")
        local lock = assert(core.lock_file(arg[1]))
        io.write("locked\n") io.flush()
        io.read("*l") -- until the parent closes the pipe
        lock:unlock()
      ]])
      local ready = tmpname("ready")
      assert.is_true(sh_ok("mkfifo " .. q(ready)))
      local holder = assert(io.popen(LUA .. " " .. q(script) .. " " .. q(lockfile) .. " >" .. q(ready), "w"))
      local rf = assert(io.open(ready, "r"))
      assert.equal("locked", rf:read("*l"))
      local ok, err = config.save({ url = "http://second/mcp" }, path, { lock_timeout = 0.2 })
      holder:close()
      rf:close()
      assert.is_nil(ok)
      assert.equal("timeout", err.code)
      assert.matches("lock", err.message)
      assert.equal("http://first/mcp", config.load(path).url)
      assert(config.save({ url = "http://third/mcp" }, path))
      assert.equal("http://third/mcp", config.load(path).url)
    end)
  end)

  describe("parse() of TOML the Rust CLI can write", function()
    it("accepts quoted keys", function()
      local v = assert(config.parse('"api_key" = "fav_mcp_q"\n\'url\' = "http://q/mcp"\n"odd key" = 1\n'))
      assert.equal("fav_mcp_q", v.api_key)
      assert.equal("http://q/mcp", v.url)
      assert.same({ raw = '"odd key" = 1' }, v["odd key"])
    end)

    it("accepts multi-line basic and literal strings", function()
      local v = assert(config.parse(table.concat({
        'api_key = """',
        'fav_mcp_multi\\',
        '    line"""',
        "url = '''http://lit/mcp'''",
        'note = """a "quoted" word',
        'and a second line"""',
        "after = 'x'",
      }, "\n")))
      assert.equal("fav_mcp_multiline", v.api_key)
      assert.equal("http://lit/mcp", v.url)
      assert.equal('a "quoted" word\nand a second line', v.note)
      assert.equal("x", v.after)
    end)

    it("accepts a UTF-8 byte order mark at the start, and CRLF line ends", function()
      local v = assert(config.parse('\239\187\191api_key = "fav_mcp_bom"\r\nurl = "http://bom/mcp"\r\n'))
      assert.equal("fav_mcp_bom", v.api_key)
      assert.equal("http://bom/mcp", v.url)
    end)

    it("keeps other values (arrays over several lines, inline tables) as raw text", function()
      local v, order, tail = config.parse('list = [\n  "a", # c\n  "b",\n]\nt = { x = 1 }\nurl = "u"\n[s]\nk = 1\n')
      assert(v, order)
      assert.same({ raw = 'list = [\n  "a", # c\n  "b",\n]' }, v.list)
      assert.same({ raw = "t = { x = 1 }" }, v.t)
      assert.same({ "list", "t", "url" }, order)
      assert.equal("[s]\nk = 1", tail)
    end)

    it("keeps numbers, booleans and dates as raw text, and refuses a word without quotes", function()
      local text = "d = 1979-05-27 07:32:00Z\nf = -1.5e6\ni = -inf\nh = 0xDEAD\nb = true # c\n"
      local v = assert(config.parse(text))
      assert.same({ raw = "d = 1979-05-27 07:32:00Z" }, v.d)
      assert.same({ raw = "b = true # c" }, v.b)
      local _, err = config.parse("url = https://x/mcp\n")
      assert.equal("config file line 1: a value that is not TOML (text needs quotes)", err.message)
    end)

    it("rejects a duplicate key in the same table, naming the line", function()
      for _, text in ipairs({
        'api_key = "fav_mcp_a"\napi_key = "fav_mcp_b"\n',
        'api_key = "fav_mcp_a"\n"api_key" = "fav_mcp_b"\n',
        'url = "u"\n[p]\na = 1\n\na = 2\n',
        '[p]\na = 1\n[p]\n',
      }) do
        local v, err = config.parse(text)
        assert.is_nil(v, text)
        assert.equal("config_error", err.code)
        assert.matches("^config file line %d: duplicate", err.message)
        assert.is_nil(err.message:find("fav_mcp_", 1, true))
      end
      local _, err = config.parse('api_key = "fav_mcp_a"\n\n# c\napi_key = "fav_mcp_b"\n')
      assert.equal("config file line 4: duplicate key 'api_key'", err.message)
      assert.equal(4, err.line)
      -- the same name in two tables is fine
      assert(config.parse('a = 1\n[p]\na = 1\n[q]\na = 1\n[[r]]\na = 1\n[[r]]\na = 1\n'))
    end)
  end)

  describe("parse() of escapes", function()
    it("turns every invalid escape or code point into a config_error naming the line", function()
      local bad = { "\\UFFFFFFFF", "\\U00110000", "\\uD800", "\\uDFFF", "\\x41", "\\u12", "\\U1234", "\\q" }
      for _, esc in ipairs(bad) do
        local v, err = config.parse('url = "ok"\napi_key = "fav_mcp_' .. esc .. '"\n')
        assert.is_nil(v, esc)
        assert.equal("config_error", err.code, esc)
        assert.matches("^config file line 2: ", err.message)
        assert.equal(2, err.line)
        assert.is_nil(err.message:find("fav_mcp_", 1, true))
      end
      local v = assert(config.parse('a = "\\U0010FFFF\\u00e9\\uE000\\U0001F600"\n'))
      assert.equal("\244\143\191\191\195\169\238\128\128\240\159\152\128", v.a)
    end)

    it("makes favcrm.new() report the file as config_error instead of raising", function()
      local path = fresh()
      spit(path, 'url = "http://bad/mcp"\napi_key = "\\UFFFFFFFF"\n')
      local xdg = path:match("^(.*)/favcrm/config.toml$")
      local out = child(xdg, [[
        local ok, c = pcall(require("favcrm").new, { url = "http://127.0.0.1:9/mcp" })
        if not ok then io.write("raised: ", tostring(c)) return end
        io.write(tostring(c.config_error and c.config_error.code), "|",
          tostring(c.config_error and c.config_error.message))
        c:close()
      ]])
      assert.matches("^config_error|.*config file line 2: ", out)
    end)

    it("makes the CLI warn about the line and go on, instead of raising", function()
      local path = fresh()
      spit(path, 'api_key = "\\UFFFFFFFF"\n')
      local xdg = path:match("^(.*)/favcrm/config.toml$")
      local errf = tmpname("err")
      local ok = sh_ok("XDG_CONFIG_HOME=" .. q(xdg) .. " FAVCRM_MCP_URL=" .. q(sandbox.url()) .. " "
        .. LUA .. " bin/favcrm tool list >/dev/null 2>" .. q(errf))
      local err = slurp(errf)
      assert.is_nil(err:find("string.char", 1, true), err)
      assert.matches("config file line 1: ", err, 1, true)
      assert.is_true(ok, err)
    end)
  end)

  describe("permissions", function()
    it("refuses a folder other users can write, saying how to fix it", function()
      local path, dir = fresh()
      assert(config.save({ api_key = "fav_mcp_perm000000000000000000", url = "http://p/mcp" }, path))
      assert(core.chmod(dir, oct("777")))
      local v, err = config.load(path)
      assert.is_nil(v)
      assert.equal("config_error", err.code)
      assert.matches(dir, err.message, 1, true)
      assert.matches("other users can write", err.message, 1, true)
      assert.matches("chmod 700 " .. dir, err.message, 1, true)
      assert.is_nil(err.message:find("fav_mcp_", 1, true))
      local before = slurp(path)
      local ok, serr = config.save({ url = "http://other/mcp" }, path)
      assert.is_nil(ok)
      assert.equal("config_error", serr.code)
      assert.equal(before, slurp(path))
      assert(core.chmod(dir, oct("770")))
      assert.equal("config_error", select(2, config.load(path)).code) -- group-writable too
      assert(core.chmod(dir, oct("755")))
      assert.equal("http://p/mcp", assert(config.load(path)).url)
    end)

    it("refuses a file other users can write, and accepts one they can only read", function()
      local path = fresh()
      assert(config.save({ url = "http://p/mcp" }, path))
      assert(core.chmod(path, oct("666")))
      local v, err = config.load(path)
      assert.is_nil(v)
      assert.equal("config_error", err.code)
      assert.matches("chmod 600 " .. path, err.message, 1, true)
      assert(core.chmod(path, oct("644"))) -- what the Rust CLI writes: readable is a doctor warning only
      assert.equal("http://p/mcp", assert(config.load(path)).url)
    end)

    local as_root = core.geteuid() == 0
    local it_root = as_root and it or function(name, fn)
      pending("SKIPPED (not root, cannot chown to another user): " .. name, fn)
    end

    it_root("refuses a file or folder another user owns", function()
      local path, dir = fresh()
      assert(config.save({ url = "http://p/mcp" }, path))
      assert.is_true(sh_ok("chown nobody " .. q(path)))
      local v, err = config.load(path)
      assert.is_nil(v)
      assert.equal("config_error", err.code)
      assert.matches("owned by another user", err.message, 1, true)
      assert.is_nil(config.save({ url = "http://x/mcp" }, path))
      assert.is_true(sh_ok("chown " .. core.geteuid() .. " " .. q(path)))
      assert(config.load(path))
      assert.is_true(sh_ok("chown nobody " .. q(dir)))
      v, err = config.load(path)
      assert.is_nil(v)
      assert.matches("the config folder " .. dir .. " is owned by another user", err.message, 1, true)
    end)

    it("makes new() skip the file and doctor report the problem with the fix", function()
      local path, dir = fresh()
      assert(config.save({ url = "http://attacker.example/mcp" }, path))
      assert(core.chmod(dir, oct("777")))
      local xdg = path:match("^(.*)/favcrm/config.toml$")
      local out = child(xdg, [[
        local c = require("favcrm").new({ timeout = 10 })
        io.write("url=", c.url, "\n")
        io.write("config_error=", tostring(c.config_error and c.config_error.code), "\n")
        c:close()
        c = require("favcrm").new({ url = ]] .. string.format("%q", sandbox.url()) .. [[, timeout = 10 })
        local r = c:doctor()
        for _, p in ipairs(r.problems) do
          io.write("problem=", p.check, "|", tostring(p.code), "|", p.message, "|", tostring(p.hint), "\n")
        end
        io.write("ok=", tostring(r.ok), "\n")
        c:close()
      ]])
      assert.is_nil(out:find("attacker", 1, true), out)
      assert.matches("config_error=config_error\n", out, 1, true)
      assert.matches("problem=config_permissions|config_error|[^\n]*other users can write[^\n]*|[^\n]*chmod 700 "
        .. dir:gsub("%p", "%%%0"), out)
      assert.matches("ok=false", out, 1, true)
      local n = 0
      for _ in out:gmatch("problem=config") do n = n + 1 end
      assert.equal(1, n, out) -- reported once, not twice
    end)
  end)

  describe("load()", function()
    it("refuses a file over 1 MiB", function()
      local path = fresh()
      spit(path, "# " .. string.rep("x", 1024 * 1024) .. "\n")
      local v, err = config.load(path)
      assert.is_nil(v)
      assert.equal("config_error", err.code)
      assert.matches("larger than 1 MiB", err.message, 1, true)
      spit(path, "# " .. string.rep("x", 1024 * 1024 - 4) .. "\n")
      assert.same({}, assert(config.load(path)))
    end)

    it("of a folder says what is wrong instead of 'nil'", function()
      local _, dir = fresh()
      local v, err = config.load(dir)
      assert.is_nil(v)
      assert.equal("config_error", err.code)
      assert.equal(dir .. " is a folder, not a config file", err.message)
    end)
  end)
end)

describe("favcrm.mask_key", function()
  local favcrm = require("favcrm")
  -- The bytes a mask shows beyond the public "fav_mcp_" prefix.
  local function shown(mask)
    local rest = mask:gsub("^fav_mcp_", "")
    if rest == "****" then return 0 end
    return #(rest:gsub("^%.%.%.", ""))
  end

  it("never shows more than the last 4 nor more than a third of the secret part", function()
    for len = 0, 48 do
      for _, prefix in ipairs({ "fav_mcp_", "" }) do
        local key = prefix .. ("0123456789abcdefghijklmnopqrstuvwxyz0123456789ABCD"):sub(1, len)
        local secret_len = len
        local mask = favcrm.mask_key(key)
        local n = shown(mask)
        assert.is_true(n <= 4 and n <= math.floor(secret_len / 3),
          string.format("%d secret bytes, %d shown (%s)", secret_len, n, mask))
        assert.equal(mask, tostring(core.secret(key)))
      end
    end
  end)

  it("masks a 13-byte key without showing 12 of its bytes", function()
    assert.equal("****", favcrm.mask_key("fav_mcp_abcde"))
    assert.equal("...jklm", favcrm.mask_key("abcdefghijklm"))
  end)

  it("keeps the usual form of a full key", function()
    assert.equal("fav_mcp_...cdef", favcrm.mask_key("fav_mcp_0123456789abcdef0123456789abcdef"))
  end)
end)

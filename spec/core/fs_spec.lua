-- spec/core/fs_spec.lua: files and clocks of favcrm.core (csrc/fs.c)
local core = require("favcrm.core")

local function oct(s) return tonumber(s, 8) end

-- Runs a shell command; returns its whole stdout.
local function sh(cmd)
  local f = assert(io.popen(cmd, "r"))
  local out = f:read("*a")
  f:close()
  return out
end

local function q(s) return "'" .. s:gsub("'", "'\\''") .. "'" end

local function read(path)
  local f = assert(io.open(path, "rb"))
  local s = f:read("*a")
  f:close()
  return s
end

-- The names in a folder (hidden ones too), sorted, as one string.
local function ls(dir) return (sh("ls -A " .. q(dir) .. " | sort | tr '\\n' ' '")) end

-- The interpreter running these specs, so subprocesses use the same Lua
-- (under valgrind /proc/<pid>/exe is the tool: then use arg's first word;
-- under `make asan` it is the dynamic loader that preloaded the ASan
-- runtime: then the wrapper that ran it, FAVCRM_LUA_BIN).
local LUA = sh("readlink /proc/" .. core.getpid() .. "/exe"):gsub("%s+$", "")
if LUA:match("/ld%-linux[^/]*$") and os.getenv("FAVCRM_LUA_BIN") then
  LUA = os.getenv("FAVCRM_LUA_BIN")
elseif LUA == "" or LUA:find("valgrind", 1, true) or LUA:find("memcheck", 1, true) then
  local i = 0
  while arg and arg[i - 1] do i = i - 1 end
  LUA = assert(arg and arg[i], "cannot tell which Lua runs the specs")
end

-- package.cpath with relative entries made absolute, for subprocesses
-- that change folder.
local CWD = sh("pwd"):gsub("%s+$", "")
local CPATH = package.cpath:gsub("[^;]+", function(e)
  if e:sub(1, 1) ~= "/" then return CWD .. "/" .. e end
end)

-- Runs a Lua chunk in a subprocess after shell set-up `pre`; returns stdout.
-- `wrapper` (a command such as setsid) runs the interpreter when given.
local function lua_sub(pre, code, wrapper)
  return sh("export LUA_CPATH=" .. q(CPATH) .. "; " .. pre .. "; exec " .. (wrapper or "") .. " " .. q(LUA)
    .. " -e " .. q(code) .. " 2>&1")
end

describe("favcrm.core files and clocks", function()
  local root

  before_each(function()
    root = sh("mktemp -d /tmp/favcrm-fs-spec.XXXXXX"):gsub("%s+$", "")
    assert.are.equal("/tmp/favcrm-fs-spec.", root:sub(1, 20))
  end)

  after_each(function()
    sh("rm -rf " .. q(root))
  end)

  describe("write_file_atomic()", function()
    it("creates a 0600 file with the data", function()
      local path = root .. "/config.json"
      assert.is_true(core.write_file_atomic(path, "{\"k\":1}\n"))
      assert.are.equal("{\"k\":1}\n", read(path))
      local st = assert(core.stat(path))
      assert.are.equal(oct("600"), st.mode)
      assert.are.equal(8, st.size)
      assert.are.equal("file", st.type)
    end)

    it("makes the mode exact whatever the umask (022, 000, 077)", function()
      local code = "local core = require('favcrm.core') "
        .. "assert(core.write_file_atomic(os.getenv('P'), 'x', tonumber(os.getenv('M'), 8))) "
        .. "io.write(string.format('%o', core.stat(os.getenv('P')).mode))"
      assert.are.equal("600", lua_sub("umask 022; export P=" .. q(root .. "/a") .. " M=600", code))
      assert.are.equal("600", lua_sub("umask 000; export P=" .. q(root .. "/b") .. " M=600", code))
      assert.are.equal("644", lua_sub("umask 077; export P=" .. q(root .. "/c") .. " M=644", code))
    end)

    it("uses 0600 by default even under umask 022", function()
      local code = "local core = require('favcrm.core') "
        .. "assert(core.write_file_atomic(os.getenv('P'), 'x')) "
        .. "io.write(string.format('%o', core.stat(os.getenv('P')).mode))"
      assert.are.equal("600", lua_sub("umask 022; export P=" .. q(root .. "/d"), code))
    end)

    it("replaces an existing file and leaves no temp file behind", function()
      local path = root .. "/config"
      assert.is_true(core.write_file_atomic(path, "old"))
      assert.is_true(core.write_file_atomic(path, "new contents", oct("640")))
      assert.are.equal("new contents", read(path))
      assert.are.equal(oct("640"), core.stat(path).mode)
      assert.are.equal("config ", ls(root))
    end)

    it("writes empty and large data", function()
      local big = ("0123456789abcdef"):rep(256 * 1024) -- 4 MiB
      assert.is_true(core.write_file_atomic(root .. "/empty", ""))
      assert.is_true(core.write_file_atomic(root .. "/big", big))
      assert.are.equal("", read(root .. "/empty"))
      assert.are.equal(big, read(root .. "/big"))
    end)

    it("writes a relative path in the current folder", function()
      local code = "local core = require('favcrm.core') "
        .. "io.write(tostring(core.write_file_atomic('rel.txt', 'r')))"
      assert.are.equal("true", lua_sub("cd " .. q(root), code))
      assert.are.equal("r", read(root .. "/rel.txt"))
      assert.are.equal("rel.txt ", ls(root))
    end)

    it("returns nil, io error for a missing folder and creates nothing", function()
      local path = root .. "/missing/config"
      local ok, err = core.write_file_atomic(path, "x")
      assert.is_nil(ok)
      assert.are.equal("io", err.code)
      assert.are.equal(2, err.errno)
      assert.are.equal(path .. ": No such file or directory", err.message)
      assert.are.equal("", ls(root))
    end)

    it("keeps the old file and removes the temp file when the write fails", function()
      -- RLIMIT_FSIZE makes write(2) fail with EFBIG once the file is too big.
      local path = root .. "/config"
      assert.is_true(core.write_file_atomic(path, "old contents"))
      local code = "local core = require('favcrm.core') "
        .. "local ok, err = core.write_file_atomic(os.getenv('P'), ('x'):rep(1024 * 1024)) "
        .. "io.write(tostring(ok), ' ', err.code, ' ', err.errno)"
      local out = lua_sub("trap '' XFSZ; ulimit -f 8; export P=" .. q(path), code)
      assert.are.equal("nil io 27", out)
      assert.are.equal("old contents", read(path))
      assert.are.equal("config ", ls(root))
    end)

    it("returns nil, io error when the target is a folder, removing the temp file", function()
      assert.is_true(core.mkdir_p(root .. "/dir"))
      local ok, err = core.write_file_atomic(root .. "/dir", "x")
      assert.is_nil(ok)
      assert.are.equal("io", err.code)
      assert.are.equal("number", type(err.errno))
      assert.are.equal("dir ", ls(root))
      assert.are.equal("dir", core.stat(root .. "/dir").type)
    end)

    it("raises on bad arguments", function()
      assert.has_error(function() core.write_file_atomic(nil, "x") end)
      assert.has_error(function() core.write_file_atomic(root .. "/x", nil) end)
      assert.has_error(function() core.write_file_atomic(root .. "/x", core.secret("key")) end)
      assert.has_error(function() core.write_file_atomic(root .. "/x", "x", "0600") end)
      assert.has_error(function() core.write_file_atomic(root .. "/x", "x", oct("10000")) end)
      assert.has_error(function() core.write_file_atomic(root .. "/", "x") end)
      assert.has_error(function() core.write_file_atomic(root .. "/a\0b", "x") end)
      assert.are.equal("", ls(root))
    end)
  end)

  describe("mkdir_p()", function()
    it("creates every missing folder with 0700 by default", function()
      local path = root .. "/a/b/c"
      assert.is_true(core.mkdir_p(path))
      for _, p in ipairs({ root .. "/a", root .. "/a/b", path }) do
        local st = assert(core.stat(p))
        assert.are.equal("dir", st.type)
        assert.are.equal(oct("700"), st.mode)
      end
    end)

    it("gives new folders the exact mode asked and leaves existing ones alone", function()
      assert.is_true(core.chmod(root, oct("755")))
      assert.is_true(core.mkdir_p(root .. "//x/./y/", oct("750")))
      assert.are.equal(oct("750"), core.stat(root .. "/x").mode)
      assert.are.equal(oct("750"), core.stat(root .. "/x/y").mode)
      assert.are.equal(oct("755"), core.stat(root).mode)
    end)

    it("succeeds when the folder exists", function()
      assert.is_true(core.mkdir_p(root))
      assert.is_true(core.mkdir_p("/"))
    end)

    it("returns nil, io error when a file is in the way", function()
      assert.is_true(core.write_file_atomic(root .. "/f", "x"))
      local ok, err = core.mkdir_p(root .. "/f/sub")
      assert.is_nil(ok)
      assert.are.equal("io", err.code)
      assert.are.equal(root .. "/f/sub: Not a directory", err.message)
      ok, err = core.mkdir_p(root .. "/f")
      assert.is_nil(ok)
      assert.are.equal("io", err.code)
    end)
  end)

  describe("stat(), chmod(), unlink()", function()
    it("reports a missing file as not_found", function()
      local ok, err = core.stat(root .. "/none")
      assert.is_nil(ok)
      assert.are.equal("not_found", err.code)
      assert.are.equal(2, err.errno)
      assert.are.equal(root .. "/none: No such file or directory", err.message)
    end)

    it("describes a file, a folder and something else", function()
      assert.is_true(core.write_file_atomic(root .. "/f", "12345"))
      local st = core.stat(root .. "/f")
      assert.are.equal(5, st.size)
      assert.are.equal(tonumber((sh("id -u"))), st.uid)
      assert.are.equal("dir", core.stat(root).type)
      assert.are.equal("other", core.stat("/dev/null").type)
    end)

    it("changes the permission bits", function()
      assert.is_true(core.write_file_atomic(root .. "/f", "x"))
      assert.is_true(core.chmod(root .. "/f", oct("444")))
      assert.are.equal(oct("444"), core.stat(root .. "/f").mode)
      local ok, err = core.chmod(root .. "/none", oct("600"))
      assert.is_nil(ok)
      assert.are.equal("not_found", err.code)
      assert.has_error(function() core.chmod(root .. "/f") end)
    end)

    it("removes a file once", function()
      assert.is_true(core.write_file_atomic(root .. "/f", "x"))
      assert.is_true(core.unlink(root .. "/f"))
      local ok, err = core.unlink(root .. "/f")
      assert.is_nil(ok)
      assert.are.equal("not_found", err.code)
      assert.are.equal("", ls(root))
    end)
  end)

  describe("clocks and process", function()
    it("now() is the wall clock in seconds with a fraction", function()
      local t = core.now()
      assert.are.equal("number", type(t))
      assert.is_true(math.abs(t - os.time()) < 5)
    end)

    it("monotonic() never decreases across 1000 reads", function()
      local last = core.monotonic()
      assert.is_true(last > 0)
      for _ = 1, 1000 do
        local t = core.monotonic()
        assert.is_true(t >= last)
        last = t
      end
    end)

    it("monotonic() advances with time", function()
      local t0 = core.monotonic()
      sh("sleep 0.05")
      local dt = core.monotonic() - t0
      assert.is_true(dt >= 0.04 and dt < 5, "dt " .. dt)
    end)

    it("getpid() is this process", function()
      assert.are.equal(tonumber((sh("echo $PPID"))), core.getpid())
    end)

    it("isatty() answers with a boolean", function()
      for fd = 0, 2 do assert.are.equal("boolean", type(core.isatty(fd))) end
      assert.is_false(core.isatty(99))
      assert.is_false(core.isatty(-1))
      assert.has_error(function() core.isatty("x") end)
    end)
  end)

  describe("poll_fds() and read_fd()", function()
    local lua = os.getenv("FAVCRM_LUA_BIN") or "lua5.4"
    -- a child Lua that polls its stdin (a pipe the spec holds) and reads it
    local script = "local core = require('favcrm.core'); local fds = {{fd = 0, read = true}}; "
      .. "local r = core.poll_fds(fds, 50); io.write('idle:', #r, '\\n'); io.flush(); "
      .. "r = core.poll_fds(fds, 20000); io.write('ready:', #r, ':', r[1] or 0, ':', core.read_fd(0, 3), '\\n'); "
      .. "io.flush(); core.poll_fds(fds, 20000); io.write('rest:', core.read_fd(0), '\\n')"

    it("waits for a descriptor at most timeout_ms, then reads what came", function()
      local p = assert(core.spawn({ lua, "-e", script }))
      local got = {}
      local function line()
        while #got == 0 do
          local r = p:poll(20000)
          for _, l in ipairs(r.lines) do got[#got + 1] = l end
          assert(#got > 0 or not r.exited, "the child ended: " .. tostring(r.stderr))
        end
        return table.remove(got, 1)
      end
      assert.equal("idle:0", line()) -- nothing written: the 50 ms passed with nothing ready
      p:write("hello")
      assert.equal("ready:1:1:hel", line())
      assert.equal("rest:lo", line())
      p:close(2000)
    end)

    it("reads nil at the end of input", function()
      local out = sh("printf abc | " .. lua .. " -e " .. q("local core = require('favcrm.core'); "
        .. "io.write(core.read_fd(0), ':', tostring(core.read_fd(0)))"))
      assert.equal("abc:nil", out)
    end)

    it("raises on misuse", function()
      assert.has_error(function() core.poll_fds("x", 10) end)
      assert.has_error(function() core.poll_fds({}, -1) end)
      assert.has_error(function() core.poll_fds({ { fd = -1, read = true } }, 0) end)
      local many = {}
      for i = 1, 65 do many[i] = { fd = 0, read = true } end
      assert.has_error(function() core.poll_fds(many, 0) end)
      assert.has_error(function() core.read_fd(-1) end)
      assert.has_error(function() core.read_fd(0, 0) end)
      assert.same({}, core.poll_fds({}, 0))
    end)
  end)

  describe("read_secret_line()", function()
    it("returns nil, no_terminal without a controlling terminal", function()
      local code = "local core = require('favcrm.core') "
        .. "local s, err = core.read_secret_line('Key: ') io.write(tostring(s), ' ', err.code)"
      assert.are.equal("nil no_terminal", lua_sub("exec </dev/null", code, "setsid"))
    end)

    local has_script = sh("command -v script"):find("script") ~= nil

    it("reads a line from a terminal with echo off, as a favcrm.Secret", function()
      assert.is_true(has_script, "script(1) is not installed (apt-get install bsdutils)")
      local key = "fav_mcp_0123456789abcdef"
      local code = "local core = require('favcrm.core') "
        .. "local s, err = core.read_secret_line('Key: ') "
        .. "if not s then print('ERR', err.code) os.exit(1) end "
        .. "print('TYPE', type(s), tostring(s), s:reveal() == os.getenv('K'))"
      -- typed after 1 s (3 s under valgrind): echo is off by then
      local pause = (tonumber(os.getenv("FAVCRM_SPEC_SLOWDOWN")) or 1) > 1 and 3 or 1
      local cmd = "export K=" .. q(key) .. "; (sleep " .. pause .. "; printf '%s\\r' \"$K\") | "
        .. "timeout 20 script -qec " .. q(q(LUA) .. " -e " .. q(code)) .. " /dev/null"
      local out = sh(cmd)
      assert.truthy(out:find("Key: ", 1, true), out)
      assert.truthy(out:find("TYPE\tuserdata\tfav_mcp_...cdef\ttrue", 1, true), out)
      assert.is_nil(out:find(key, 1, true)) -- the typed key was not echoed
    end)
  end)

  describe("masking", function()
    it("mask_key and mask_email are in the same module", function()
      assert.are.equal("fav_mcp_...cdef", core.mask_key("fav_mcp_0123456789abcdef"))
      assert.are.equal("yo*@example.com", core.mask_email("you@example.com"))
    end)
  end)
end)

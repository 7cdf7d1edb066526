-- spec/core/sse_spec.lua: core.sse_parser, the WHATWG event-stream parser (csrc/sse.c)
local core = require("favcrm.core")

local BOM = "\239\187\191"

-- Feeds each chunk to a new parser (or p); returns all events and the parser.
local function feed_all(chunks, p)
  p = p or core.sse_parser()
  local out = {}
  for _, chunk in ipairs(chunks) do
    local evs, err = p:feed(chunk)
    assert(evs, err and err.message)
    for _, ev in ipairs(evs) do out[#out + 1] = ev end
  end
  return out, p
end

-- One stream with every feature: BOM, comments, CRLF / CR / LF line ends,
-- priming events (empty data), retry, id, event, multi-line data, a field
-- without colon, an unknown field, an id reset, an incomplete tail.
local STREAM = BOM
  .. ": welcome comment\r\n"
  .. "retry: 3000\r\n"
  .. "\r\n"                                   -- priming: retry only
  .. "id: 1\r\n"
  .. "\r\n"                                   -- priming: id only
  .. "data: first\n"
  .. "\n"
  .. "event: update\rdata: line one\rdata:line two\r\r"
  .. "id: 42\r\ndata:  two spaces\r\nretry: 1500\r\n\r\n"
  .. "data\n\n"                               -- field without colon
  .. ": just a comment\nfoo: ignored\ndata: \195\169t\195\169\nid\n\n"
  .. "data: tail without blank line\n"

local EXPECTED = {
  { data = "first", event = "message", id = "1" },
  { data = "line one\nline two", event = "update", id = "1" },
  { data = " two spaces", event = "message", id = "42", retry = 1500 },
  { data = "", event = "message", id = "42" },
  { data = "\195\169t\195\169", event = "message", id = "" },
}

describe("favcrm.core sse_parser", function()
  describe("one stream in any chunking", function()
    it("parses the whole stream fed at once", function()
      local evs, p = feed_all({ STREAM })
      assert.are.same(EXPECTED, evs)
      assert.are.equal("", p:last_event_id())
      assert.are.equal(1500, p:retry())
    end)

    it("gets the same events when split in two at every byte position", function()
      for i = 0, #STREAM do
        local evs, p = feed_all({ STREAM:sub(1, i), STREAM:sub(i + 1) })
        assert.are.same(EXPECTED, evs, "split at " .. i)
        assert.are.equal("", p:last_event_id(), "split at " .. i)
        assert.are.equal(1500, p:retry(), "split at " .. i)
      end
    end)

    it("gets the same events when split in three at every pair of positions", function()
      for i = 0, #STREAM, 7 do
        for j = i, #STREAM do
          local evs = feed_all({ STREAM:sub(1, i), STREAM:sub(i + 1, j), STREAM:sub(j + 1) })
          assert.are.same(EXPECTED, evs, "split at " .. i .. "," .. j)
        end
      end
    end)

    it("gets the same events fed byte by byte", function()
      local chunks = {}
      for i = 1, #STREAM do chunks[i] = STREAM:sub(i, i) end
      local evs, p = feed_all(chunks)
      assert.are.same(EXPECTED, evs)
      assert.are.equal(1500, p:retry())
    end)

    it("returns an empty list for bytes that complete no event", function()
      local p = core.sse_parser()
      assert.are.same({}, p:feed(""))
      assert.are.same({}, p:feed("data: x\n"))
      assert.are.same({ { data = "x", event = "message", id = "" } }, p:feed("\n"))
    end)
  end)

  describe("line ends", function()
    it("treats a CR ending one chunk and an LF starting the next as one line end", function()
      local evs = feed_all({ "data: a\r", "\ndata: b\r\n\r\n" })
      assert.are.same({ { data = "a\nb", event = "message", id = "" } }, evs)
    end)

    it("dispatches on CR CR without waiting for the next chunk", function()
      local p = core.sse_parser()
      assert.are.same({ { data = "a", event = "message", id = "" } }, p:feed("data: a\r\r"))
      assert.are.same({}, p:feed("\n")) -- the LF after that CR is not a blank line
      assert.are.same({ { data = "b", event = "message", id = "" } }, p:feed("data: b\n\n"))
    end)

    it("accepts LF, CRLF and CR mixed in one event", function()
      local evs = feed_all({ "data: 1\ndata: 2\r\ndata: 3\rdata: 4\n\r\n" })
      assert.are.same({ { data = "1\n2\n3\n4", event = "message", id = "" } }, evs)
    end)

    it("counts LF CR as two line ends (a blank line)", function()
      local evs = feed_all({ "data: a\n\rdata: b\n\n" })
      assert.are.same({
        { data = "a", event = "message", id = "" },
        { data = "b", event = "message", id = "" },
      }, evs)
    end)
  end)

  describe("byte order mark", function()
    it("skips a BOM at stream start even when split across chunks", function()
      local evs = feed_all({ "\239", "\187", "\191data: x\n\n" })
      assert.are.same({ { data = "x", event = "message", id = "" } }, evs)
    end)

    it("skips only one BOM: a second one makes the field name unknown", function()
      assert.are.same({}, (feed_all({ BOM .. BOM .. "data: x\n\n" })))
    end)

    it("keeps the bytes of a partial BOM (they join the field name)", function()
      assert.are.same({}, (feed_all({ "\239", "\187", "data: x\n\n" })))
    end)

    it("keeps a BOM that is not at stream start", function()
      local evs = feed_all({ "data: " .. BOM .. "x\n\n" })
      assert.are.same({ { data = BOM .. "x", event = "message", id = "" } }, evs)
    end)

    it("looks for a BOM again after reset", function()
      local p = core.sse_parser()
      p:feed(BOM .. "data: a\n\n")
      p:reset()
      assert.are.same({ { data = "b", event = "message", id = "" } }, p:feed(BOM .. "data: b\n\n"))
    end)
  end)

  describe("fields", function()
    it("joins data lines with LF and drops only the last LF", function()
      local evs = feed_all({ "data: a\ndata:\ndata: b\ndata\n\n" })
      assert.are.same({ { data = "a\n\nb\n", event = "message", id = "" } }, evs)
    end)

    it("strips exactly one space after the colon", function()
      local evs = feed_all({ "data:x\n\ndata: x\n\ndata:  x\n\ndata:\tx\n\n" })
      assert.are.same({ "x", "x", " x", "\tx" },
        { evs[1].data, evs[2].data, evs[3].data, evs[4].data })
    end)

    it("dispatches an event whose only data line is empty", function()
      assert.are.same({ { data = "", event = "message", id = "" } }, (feed_all({ "data:\n\n" })))
    end)

    it("reads a field without colon as the name with an empty value", function()
      local evs = feed_all({ "event: x\nevent\ndata: a\n\n" })
      assert.are.same({ { data = "a", event = "message", id = "" } }, evs)
    end)

    it("ignores comment lines and unknown fields", function()
      local evs = feed_all({ ":data: no\n: data: no\nDATA: no\ndata : no\nx: 1\ndata: yes\n\n" })
      assert.are.same({ { data = "yes", event = "message", id = "" } }, evs)
    end)

    it("uses the event type for one event only", function()
      local evs = feed_all({ "event: a\ndata: 1\n\ndata: 2\n\n" })
      assert.are.same({ "a", "message" }, { evs[1].event, evs[2].event })
    end)

    it("keeps the id across events until it is set again", function()
      local evs, p = feed_all({ "id: 7\ndata: 1\n\ndata: 2\n\nid: 8\ndata: 3\n\nid:\ndata: 4\n\n" })
      assert.are.same({ "7", "7", "8", "" }, { evs[1].id, evs[2].id, evs[3].id, evs[4].id })
      assert.are.equal("", p:last_event_id())
    end)

    it("ignores an id holding a NUL byte", function()
      local evs, p = feed_all({ "id: 5\ndata: a\n\nid: 6\0x\ndata: b\n\n" })
      assert.are.same({ "5", "5" }, { evs[1].id, evs[2].id })
      assert.are.equal("5", p:last_event_id())
    end)

    it("passes NUL bytes in data through", function()
      assert.are.equal("a\0b", (feed_all({ "data: a\0b\n\n" }))[1].data)
    end)

    it("takes retry only when it is all ASCII digits", function()
      local p = core.sse_parser()
      assert.is_nil(p:retry())
      p:feed("retry: 12a\nretry: -5\nretry:  100\nretry\nretry: 1.5\nretry: \n\n")
      assert.is_nil(p:retry())
      local evs = p:feed("retry: 0250\ndata: x\n\n")
      assert.are.equal(250, p:retry())
      assert.are.equal(250, evs[1].retry)
    end)

    it("reports retry only on the event that set it", function()
      local evs = feed_all({ "retry: 10\ndata: a\n\ndata: b\n\n" })
      assert.are.equal(10, evs[1].retry)
      assert.is_nil(evs[2].retry)
    end)

    it("clamps a huge retry to 2147483647", function()
      local p = core.sse_parser()
      p:feed("retry: 99999999999999999999999\n\n")
      assert.are.equal(2147483647, p:retry())
    end)

    it("skips a priming event but keeps its id and retry", function()
      local p = core.sse_parser()
      assert.are.same({}, p:feed("id: 7\nretry: 2000\nevent: ping\n\n"))
      assert.are.equal("7", p:last_event_id())
      assert.are.equal(2000, p:retry())
      -- and its event type does not leak into the next event
      assert.are.same({ { data = "x", event = "message", id = "7" } }, p:feed("data: x\n\n"))
    end)
  end)

  describe("end of stream", function()
    it("discards an incomplete event on reset but keeps the last id and retry", function()
      local p = core.sse_parser()
      p:feed("id: 1\nretry: 5\ndata: a\n\nid: 2\ndata: half")
      p:reset()
      assert.are.equal("1", p:last_event_id())
      assert.are.equal(5, p:retry())
      assert.are.same({}, p:feed("\n\n"))
      assert.are.same({ { data = "b", event = "message", id = "1" } }, p:feed("data: b\n\n"))
    end)

    it("returns the parser from reset", function()
      local p = core.sse_parser()
      assert.are.equal(p, p:reset())
    end)
  end)

  describe("max_event_bytes", function()
    it("accepts an event whose line is exactly the cap", function()
      local p = core.sse_parser(16)
      assert.are.same({ { data = "0123456789a", event = "message", id = "" } },
        p:feed("data:0123456789a\n\n"))
    end)

    it("returns nil, too_large when one line crosses the cap", function()
      local p = core.sse_parser(16)
      local evs, err = p:feed("data:0123456789ab\n\n")
      assert.is_nil(evs)
      assert.are.equal("too_large", err.code)
      assert.are.equal("SSE event larger than 16 bytes", err.message)
      assert.are.equal(16, err.max_event_bytes)
      assert.are.same({}, err.events)
    end)

    it("counts the data so far plus the current line", function()
      local p = core.sse_parser(16)
      assert.are.same({}, p:feed("data: 0123456789\n")) -- 11 bytes of data
      assert.are.same({}, p:feed("data:"))                -- 11 + 5 = 16: fine
      local evs, err = p:feed("x")                        -- 17: too large
      assert.is_nil(evs)
      assert.are.equal("too_large", err.code)
    end)

    it("counts a long comment line too, even split across chunks", function()
      local p = core.sse_parser(16)
      assert.are.same({}, p:feed(": 0123456789"))
      local evs, err = p:feed("abcdef\n")
      assert.is_nil(evs)
      assert.are.equal("too_large", err.code)
    end)

    it("hands back the events completed before the error", function()
      local p = core.sse_parser(16)
      local evs, err = p:feed("data: ok\n\ndata: 0123456789abcdef\n\n")
      assert.is_nil(evs)
      assert.are.same({ { data = "ok", event = "message", id = "" } }, err.events)
    end)

    it("stays in the error state until reset", function()
      local p = core.sse_parser(8)
      assert.is_nil((p:feed("data: 0123456789\n")))
      local evs, err = p:feed("data: x\n\n")
      assert.is_nil(evs)
      assert.are.equal("too_large", err.code)
      p:reset()
      assert.are.same({ { data = "x", event = "message", id = "" } }, p:feed("data: x\n\n"))
    end)

    it("rejects a cap that is not a positive integer", function()
      assert.has_error(function() core.sse_parser(0) end)
      assert.has_error(function() core.sse_parser(1.5) end)
      assert.has_error(function() core.sse_parser("many") end)
    end)
  end)

  describe("lifecycle", function()
    it("closes idempotently and raises on use after close", function()
      local p = core.sse_parser()
      p:feed("id: 3\ndata: a")
      p:close()
      p:close()
      local ok, msg = pcall(p.feed, p, "\n\n")
      assert.is_false(ok)
      assert.are.equal("favcrm.SSEParser: parser is closed", msg)
      assert.is_false((pcall(p.last_event_id, p)))
      assert.is_false((pcall(p.retry, p)))
      assert.are.equal("favcrm.SSEParser (closed)", tostring(p))
    end)

    it("names itself in tostring", function()
      assert.truthy(tostring(core.sse_parser()):find("^favcrm%.SSEParser: "))
    end)

    it("raises when feed gets something other than a string", function()
      local p = core.sse_parser()
      assert.has_error(function() p:feed({}) end)
      assert.has_error(function() p.feed({}, "x") end)
    end)

    it("is collected with buffered state without leaking", function()
      for _ = 1, 200 do
        local p = core.sse_parser()
        p:feed("id: " .. ("i"):rep(100) .. "\ndata: " .. ("d"):rep(1000))
      end
      collectgarbage()
      collectgarbage()
    end)

    if _VERSION == "Lua 5.4" then
      it("is closed by a to-be-closed variable", function()
        local chunk = assert(load([[
          local core = ...
          local keep
          do
            local p <close> = core.sse_parser()
            keep = p
          end
          return keep
        ]]))
        local p = chunk(core)
        assert.are.equal("favcrm.SSEParser (closed)", tostring(p))
      end)
    end

    it("handles many events in one chunk", function()
      local parts = { "id: shared\n" }
      for i = 1, 5000 do parts[#parts + 1] = "data: " .. i .. "\n\n" end
      local evs = core.sse_parser():feed(table.concat(parts))
      assert.are.equal(5000, #evs)
      assert.are.same({ data = "5000", event = "message", id = "shared" }, evs[5000])
      assert.are.equal("shared", evs[1].id)
    end)
  end)
end)

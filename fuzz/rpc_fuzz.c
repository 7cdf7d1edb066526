/* rpc_fuzz.c: libFuzzer target for the JSON-RPC message dispatch of the MCP
 * session (lua/favcrm/session.lua) and the SSE parser under it.
 *
 * A session runs over a fake transport (no I/O: every transfer it starts
 * ends with a network error at the next poll). For each input one tools/call
 * op is started, and the input is delivered as the server's answer: byte 0
 * picks the shape (an event stream parsed by favcrm.core's SSE parser, a
 * JSON body, or an HTTP error status with a body), byte 1 the status and
 * headers, the rest is the body. The session must end the op with a result
 * or a typed error, or leave it pending; a Lua error counts as a finding
 * here too, because protocol decoding must never raise on server input. */
#include "harness.h"

static const char driver[] =
  "local cjson = require('cjson.safe')\n"
  "local core = require('favcrm.core')\n"
  "local errors = require('favcrm.errors')\n"
  "local Session = require('favcrm.session')\n"
  "cjson.decode_max_depth(64)\n"
  "local Fake = {}\n"
  "Fake.__index = Fake\n"
  "function Fake:start(req) self.n = self.n + 1; self.pending[#self.pending + 1] = self.n; return self.n end\n"
  "function Fake:poll() local out = {}\n"
  "  for i, id in ipairs(self.pending) do out[i] = { type = 'done', id = id, error = 'network', message = 'fake' } end\n"
  "  self.pending = {}; return out end\n"
  "function Fake:cancel() return true end\n"
  "function Fake:close() end\n"
  "local STATUS = { 200, 200, 200, 202, 400, 401, 403, 404, 429, 500, 503, 307, 308, 302, 204, 200 }\n"
  "local CT = { 'text/event-stream', 'application/json', 'application/json; charset=utf-8', 'text/html', '' }\n"
  "local cb = function(p) return { action = 'accept', content = { x = 1 }, roots = {} } end\n"
  "return function(input)\n"
  "  if #input < 2 then return end\n"
  "  local mode, b1 = input:byte(1), input:byte(2)\n"
  "  local body = input:sub(3)\n"
  "  local s = Session.new({ transport = setmetatable({ n = 0, pending = {} }, Fake),\n"
  "    url = 'http://127.0.0.1:1/mcp', timeout = 5, client_info = { name = 'fuzz', version = '0' },\n"
  "    on_elicit = (mode % 2 == 0) and cb or nil, on_sample = cb, on_roots = cb,\n"
  "    on_progress = function() end, on_log = function() end })\n"
  "  s.initialized, s.protocol_version = true, '2025-11-25'\n"
  "  if mode % 3 == 0 then s.session_id = 'sid' end\n"
  "  local op = s:start_request('tools/call', { name = 'x', arguments = {} }, { on_progress = function() end })\n"
  "  local tid = op.tid\n"
  "  local status = STATUS[(b1 % #STATUS) + 1]\n"
  "  local sse = (mode % 4) == 0\n"
  "  local ct = sse and CT[1] or CT[(b1 // 16) % #CT + 1]\n"
  "  local headers = { ['content-type'] = ct, ['retry-after'] = tostring(b1), location = (b1 % 2 == 0) and '/x' or 'ftp://h/',\n"
  "    ['mcp-session-id'] = 's2', date = 'Sun, 06 Nov 1994 08:49:37 GMT' }\n"
  "  local function item(it) if not op.done and s.ops[tid] == op then s:_on_item(op, it) end end\n"
  "  item({ type = 'headers', id = tid, status = status, headers = headers, sse = sse })\n"
  "  if sse then\n"
  "    local p = core.sse_parser(1024 * 1024)\n"
  "    -- in two pieces, split where byte 1 says, as curl may hand them over\n"
  "    local cut = (b1 * 7) % (#body + 1)\n"
  "    for _, piece in ipairs({ body:sub(1, cut), body:sub(cut + 1) }) do\n"
  "      local evs, perr = p:feed(piece)\n"
  "      if not evs then evs = perr.events or {} end\n"
  "      for _, ev in ipairs(evs) do\n"
  "        item({ type = 'event', id = tid, data = ev.data, event = ev.event, event_id = ev.id, retry = ev.retry })\n"
  "      end\n"
  "    end\n"
  "    item({ type = 'done', id = tid, status = status, sse = true })\n"
  "    p:close()\n"
  "  else\n"
  "    -- the body also goes through _on_message directly, as a decoded value\n"
  "    local msg = cjson.decode(body)\n"
  "    if msg ~= nil and not op.done then s:_on_message(op, msg) end\n"
  "    item({ type = 'done', id = tid, status = status, body = body, sse = false })\n"
  "  end\n"
  "  if op.done and op.err ~= nil then\n"
  "    assert(errors.is(op.err), 'an op ended with an error that is not an error object')\n"
  "    assert(errors.CODES[op.err.code], 'unknown error code')\n"
  "    assert(type(op.err.message) == 'string')\n"
  "    tostring(op.err)\n"
  "  end\n"
  "  s:close()\n"
  "end\n";

FAV_FUZZ_LUA_TARGET(driver, 64, 1)

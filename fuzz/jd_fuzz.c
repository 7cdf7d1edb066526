/* jd_fuzz.c: libFuzzer target for the JSON decoder of favcrm.core
 * (csrc/json_decode.c), by difference with lua-cjson.
 *
 * The input is JSON text (byte 0 picks the JSON-RPC id the mode asks for
 * and whether it is modern; the rest is the text). core.json_decode must
 * give exactly what cjson.decode gives wherever it answers, and
 * core.json_rpc_result -- http:exchange's JSON-RPC mode -- must take a
 * result only where the session's general path (json_decode or cjson,
 * then its checks) takes that same result. A difference aborts. */
#include "harness.h"

static const char driver[] =
  "local cjson = require('cjson.safe')\n"
  "local core = require('favcrm.core')\n"
  "local function diff(a, b, depth)\n"
  "  if type(a) ~= type(b) then return 'type' end\n"
  "  if type(a) == 'number' then\n"
  "    if math.type(a) ~= math.type(b) then return 'subtype' end\n"
  "    if a ~= b and not (a ~= a and b ~= b) then return 'number' end\n"
  "    if a == 0 and 1 / a ~= 1 / b then return 'signed zero' end\n"
  "    return nil\n"
  "  end\n"
  "  if type(a) ~= 'table' then return a ~= b and 'value' or nil end\n"
  "  if depth > 100 or getmetatable(a) ~= getmetatable(b) then return 'meta' end\n"
  "  for k, v in pairs(a) do local d = diff(v, rawget(b, k), depth + 1) if d then return d end end\n"
  "  for k in pairs(b) do if rawget(a, k) == nil then return 'missing key' end end\n"
  "  return nil\n"
  "end\n"
  "return function(input)\n"
  "  if #input < 1 then return end\n"
  "  local b0 = input:byte(1)\n"
  "  local text = input:sub(2)\n"
  "  local id, modern = b0 % 8, b0 >= 128\n"
  "  local fast = core.json_decode(text)\n"
  "  local slow = cjson.decode(text)\n"
  "  if fast ~= nil then\n"
  "    assert(slow ~= nil, 'json_decode took what cjson refuses')\n"
  "    assert(diff(fast, slow, 0) == nil, 'json_decode differs from cjson')\n"
  "  end\n"
  "  local msg = fast\n"
  "  if msg == nil then msg = slow end\n"
  "  local want\n"
  "  if type(msg) == 'table' and msg.id == id and msg.jsonrpc == '2.0' and msg.error == nil and msg.method == nil then\n"
  "    local res = msg.result\n"
  "    if type(res) == 'table' and not (modern and res.resultType == 'input_required') then want = res end\n"
  "  end\n"
  "  local got = core.json_rpc_result(text, id, modern)\n"
  "  if got ~= nil then\n"
  "    assert(want ~= nil, 'json_rpc_result took what the general path does not')\n"
  "    assert(diff(got, want, 0) == nil, 'json_rpc_result differs from the general path')\n"
  "  end\n"
  "end\n";

FAV_FUZZ_LUA_TARGET(driver, 64, 1)

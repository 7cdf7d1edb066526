/* json_fuzz.c: libFuzzer target for favcrm.core's JSON decoder
 * (csrc/json_decode.c), differential against lua-cjson.
 *
 * core.json_decode either declines an input (nil: cjson then decides, as
 * the hot path of a call does) or returns exactly what cjson.decode returns
 * for it: the same types, numbers with the same value and (5.3+) the same
 * subtype, the same strings, cjson.null where cjson has it, the last of a
 * repeated key. The input is decoded as it is, and wrapped as the value of
 * a JSON-RPC result, so both the top level and nested values are covered.
 * A difference, or a decoder that accepts what cjson rejects, is a finding
 * (strict mode: the assertion aborts and libFuzzer keeps the input); so are
 * crashes and sanitizer reports. */
#include "harness.h"

static const char driver[] =
  "local cjson = require('cjson.safe')\n"
  "local core = require('favcrm.core')\n"
  "local mtype = math.type or function() return 'float' end\n"
  "local function same(a, b, depth)\n"
  "  if type(a) ~= type(b) then return false end\n"
  "  if type(a) == 'number' then return a == b and mtype(a) == mtype(b) end\n"
  "  if type(a) ~= 'table' then return a == b end\n"
  "  if depth > 200 then return false end\n"
  "  for k, v in pairs(a) do if not same(v, b[k], depth + 1) then return false end end\n"
  "  for k in pairs(b) do if a[k] == nil then return false end end\n"
  "  return true\n"
  "end\n"
  "local function one(text)\n"
  "  local ok, mine = pcall(core.json_decode, text)\n"
  "  assert(ok, 'core.json_decode raised: ' .. tostring(mine))\n"
  "  if mine == nil then return end\n"
  "  local theirs = cjson.decode(text)\n"
  "  assert(theirs ~= nil, 'core.json_decode accepted a text cjson rejects')\n"
  "  assert(same(mine, theirs, 0), 'core.json_decode and cjson.decode differ')\n"
  "end\n"
  "return function(input)\n"
  "  one(input)\n"
  "  one('{\"jsonrpc\":\"2.0\",\"id\":1,\"result\":' .. input .. '}')\n"
  "end\n";

FAV_FUZZ_LUA_TARGET(driver, 64, 1)

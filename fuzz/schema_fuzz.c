/* schema_fuzz.c: libFuzzer target for the JSON Schema validator
 * (csrc/schema.c) through its Lua API.
 *
 * The input is "<schema JSON>\0<instance JSON>" (no NUL: the whole input is
 * the schema and it validates itself). The schema is compiled for both
 * drafts, with and without all_errors and formats; the instance is checked,
 * and so are a few fixed values of every type. Lua errors are allowed
 * (bad JSON, misuse); crashes, sanitizer reports and leaks are findings. */
#include "harness.h"

static const char driver[] =
  "local cjson = require('cjson.safe')\n"
  "local core = require('favcrm.core')\n"
  "cjson.decode_max_depth(64)\n"
  "local fixed = { {}, { 1, 2, 3 }, { a = 1, b = { c = 'x' } }, 'text', '', 0, -1.5, 2^53, true, cjson.null,\n"
  "  'caf\\195\\169', '\\255\\254', { [1] = 'a', x = 'y' } }\n"
  "local variants = { { draft = 'draft7' }, { draft = '2020-12', all_errors = true },\n"
  "  { formats = false, max_depth = 8 } }\n"
  "return function(input)\n"
  "  local nul = input:find('\\0', 1, true)\n"
  "  local stext = nul and input:sub(1, nul - 1) or input\n"
  "  local itext = nul and input:sub(nul + 1) or input\n"
  "  local schema = cjson.decode(stext)\n"
  "  if schema == nil then return end\n"
  "  if type(schema) ~= 'table' and type(schema) ~= 'boolean' then return end\n"
  "  local inst = cjson.decode(itext)\n"
  "  for _, opts in ipairs(variants) do\n"
  "    local ok, v = pcall(core.schema_compile, schema, opts)\n"
  "    if ok and v then\n"
  "      if inst ~= nil then pcall(v.validate, v, inst); pcall(v.check, v, inst) end\n"
  "      for _, x in ipairs(fixed) do pcall(v.validate, v, x); pcall(v.check, v, x) end\n"
  "      pcall(tostring, v)\n"
  "    end\n"
  "  end\n"
  "end\n";

FAV_FUZZ_LUA_TARGET(driver, 64, 0)

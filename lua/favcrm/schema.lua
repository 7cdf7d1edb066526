--- favcrm.schema: JSON Schema (draft-07 and 2020-12) validators compiled once
-- into C (favcrm.core.schema_compile). This layer only decodes JSON strings
-- and turns compile errors into favcrm error objects.
--
--   local v = assert(schema.compile(tool.inputSchema))
--   local ok, errs = v:validate(args)   -- or v(args)
--   -- errs[1] = { path = "/email", keyword = "pattern",
--   --             schema_path = "/properties/email/pattern",
--   --             message = "/email: does not match the pattern ...",
--   --             reason = "does not match the pattern ..." }
--   local ok, path, keyword, reason = v:check(args)
--   -- false, "/email", "pattern", "does not match the pattern ..."
--
-- v:check(value [, opts]) -> true | false, path, keyword, reason: the
-- verdict and the first failure as three strings, building no table (its
-- strings are constants of the validator where they can be). It fails
-- exactly when validate fails, and names what validate's first record
-- names (when the validator was compiled without all_errors; check always
-- stops at the first failure). Use check on hot paths and where a yes/no
-- with one readable reason is enough; use validate for the error records
-- (schema_path, message, and every failure with all_errors), e.g. only
-- after check has said false. opts: as validate's (`deadline`).
--
-- Order inside one node: a string's lengths, then its `format` (the
-- hand-written checks), then its PCRE2 `pattern`, so an instance the
-- format refuses does not pay for the regex; an object's declared
-- properties required ones first, each group by name (as ajv checks
-- required before properties). JSON Schema does not order keywords;
-- all_errors still reports every failure.
--
-- opts: draft = "draft7" | "2020-12" (default: from $schema, else 2020-12),
-- all_errors = true (collect every error, not just the first),
-- formats = false (format is an annotation only), max_depth = n (default
-- 200), remotes = { [uri] = schema }, resolve_remote = function(uri) ->
-- schema | nil, base_uri = "retrieval URI of the root schema".
local core = require("favcrm.core")
local json = require("favcrm.json")
local errors = require("favcrm.errors")

local M = {}

local DRAFTS = { draft7 = true, ["draft-07"] = true, ["2020-12"] = true, draft2020 = true, ["draft2020-12"] = true }

--- Compiles a JSON Schema into a validator.
-- schema.compile(schema [, opts]) -> validator | nil, err
-- schema: a table (decoded JSON Schema), a boolean, or a JSON string.
---@param schema table|boolean|string a decoded schema, a boolean, or JSON text
---@param opts? table `draft`, `all_errors`, `formats`, `max_depth`, `remotes`, `resolve_remote`, `base_uri`
---@return favcrm.Validator|nil validator
---@return favcrm.Error|nil err `invalid_schema` with `schema_path`
function M.compile(schema, opts)
  local ts = type(schema)
  if ts ~= "table" and ts ~= "string" and ts ~= "boolean" then
    error("bad argument #1 to 'compile' (table or JSON string expected, got " .. ts .. ")", 2)
  end
  if opts ~= nil and type(opts) ~= "table" then
    error("bad argument #2 to 'compile' (table of options expected, got " .. type(opts) .. ")", 2)
  end
  if opts and opts.draft ~= nil and not DRAFTS[opts.draft] then
    error("bad argument #2 to 'compile' (opts.draft must be \"draft7\" or \"2020-12\", got "
      .. tostring(opts.draft) .. ")", 2)
  end
  if ts == "string" then
    local decoded, derr = json.decode_plain(schema)
    if decoded == nil then
      return nil, errors.new("invalid_schema", "invalid schema at /: not valid JSON (" .. tostring(derr) .. ")",
        { schema_path = "" })
    end
    schema = decoded
  end
  local v, err = core.schema_compile(schema, opts)
  if v == nil then
    return nil, errors.new("invalid_schema", err.message, { schema_path = err.schema_path })
  end
  return v
end

return M

--- favcrm.core: the C module (csrc/), as the Lua layers and users see it.
-- Annotations only, for editors (lua-language-server) and the API reference:
-- this file is never loaded (it is not on `package.path` and not in the
-- rockspec). Only what the public API hands out is described: `favcrm.secret`,
-- `favcrm.mask_key`, `favcrm.mask_email` are these functions, and
-- `favcrm.schema.compile` returns a `favcrm.Validator`. The HTTP, process,
-- file and SSE objects are internal to the session and transports.
-- @module favcrm.core
---@meta favcrm.core
local core = {}

-- The module's version string.
core.VERSION = ""

--- An API key (or any secret text) held in C memory.
-- `tostring(s)` gives the masked form (`fav_mcp_...cdef`); JSON encoders
-- refuse it; `s .. "x"` and `#s` raise; `s1 == s2` compares the bytes in
-- constant time. Its memory is wiped by `close()`, by `__close` (a
-- `<close>` variable) and when it is collected.
---@class favcrm.Secret
local Secret = {}

--- The plain text: the one way to it.
-- Raises "secret is closed" on a closed secret (the message never holds the text).
---@return string text the secret's text
function Secret:reveal() end

--- Wipes the bytes and marks the secret closed. Idempotent.
---@return nil
function Secret:close() end

--- The masked form, as `tostring` gives it.
---@return string masked `fav_mcp_...cdef`, `****`, or `<closed secret>`
function Secret:mask() end

--- Whether `close()` (or collection) has wiped it.
---@return boolean closed
function Secret:is_closed() end

--- One validation error of a `favcrm.Validator`.
---@class favcrm.ValidationError
---@field path string JSON Pointer to the failing value in the instance (`/email`)
---@field keyword string the schema keyword that failed (`pattern`)
---@field schema_path string JSON Pointer to that keyword in the schema
---@field message string path and reason, for a person
---@field reason string the reason alone

--- A JSON Schema compiled into C (draft-07 or 2020-12), from
-- `favcrm.schema.compile`. Calling it, `v(value)`, is `v:validate(value)`.
---@class favcrm.Validator
local Validator = {}

--- Validates a decoded JSON value.
---@param value any the instance (tables, strings, numbers, booleans; `cjson.null`)
---@return boolean ok true when the value is valid
---@return favcrm.ValidationError[]|nil errors when not: the first error, or every one with `all_errors`
function Validator:validate(value) end

--- The verdict and the first failure as strings, building no table: fails
-- exactly when `validate` does, naming what its first record names (for a
-- validator compiled without `all_errors`). For hot paths; call
-- `validate` for the records.
---@param value any the instance
---@param opts? table `deadline`, as `validate`'s
---@return boolean ok true when the value is valid
---@return string|nil path when not: JSON Pointer of the failing value (`/email`)
---@return string|nil keyword the keyword that failed (`format`)
---@return string|nil reason the reason alone (`must be a valid e-mail address`)
function Validator:check(value, opts) end

--- Makes a secret from a string (copied into C memory).
-- Raises when `text` is not a string.
---@param text string the secret text, e.g. an API key
---@return favcrm.Secret secret
function core.secret(text) end

--- Whether a value is a `favcrm.Secret` (open or closed). Never raises.
---@param value any
---@return boolean is
function core.is_secret(value) end

--- The masked form of an API key: the first 8 characters, `...`, the last 4
-- (`fav_mcp_...cdef`); `****` when too short to show any part.
-- Raises on anything but a string or a secret.
---@param key string|favcrm.Secret
---@return string masked
function core.mask_key(key) end

--- The masked form of an e-mail address (`yo*@example.com`), or `***` when
-- there is no `@`. Characters are UTF-8 sequences. Raises on a non-string.
---@param email string
---@return string masked
function core.mask_email(email) end

--- Compiles a decoded JSON Schema; `favcrm.schema.compile` is the public
-- wrapper (it also takes JSON text).
-- Misuse raises; an invalid schema returns `nil, { code = "invalid_schema", message = ..., schema_path = ... }`.
---@param schema table|boolean the schema
---@param opts? table `draft`, `all_errors`, `formats`, `max_depth`, `remotes`, `resolve_remote`, `base_uri`
---@return favcrm.Validator|nil validator
---@return table|nil err
function core.schema_compile(schema, opts) end

--- SHA-256 of a string or a favcrm.Secret (OpenSSL libcrypto).
---@param data string|favcrm.Secret
---@return string digest 32 raw bytes
function core.sha256(data) end

--- Bytes from the CSPRNG (OpenSSL RAND_bytes); raises when it fails.
---@param n integer 1..1024
---@return string bytes
function core.random_bytes(n) end

--- Unpadded base64url (RFC 4648 section 5) of a string or a favcrm.Secret.
---@param data string|favcrm.Secret
---@return string text
function core.base64url(data) end

--- Padded standard base64 (RFC 4648 section 4) of a string or a favcrm.Secret.
---@param data string|favcrm.Secret
---@return string text
function core.base64(data) end

--- A JWS signature over `input`: ES256 (R||S, 64 bytes) or RS256 (PKCS#1 v1.5).
---@param pem string|favcrm.Secret an unencrypted PEM private key (P-256 for ES256, RSA >= 2048 bits for RS256)
---@param alg string "ES256" or "RS256"
---@param input string the signing input (`header.payload`)
---@return string|nil signature raw bytes
---@return string|nil message why not (a key of the wrong kind, not PEM)
function core.jws_sign(pem, alg, input) end

return core

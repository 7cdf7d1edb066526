--- favcrm.lazy: methods whose code loads on first use (issue 20: a
-- program that only calls tools parses, and keeps, less Lua at start-up).
--
--   lazy(Session, "favcrm.session_listen", { "_listen_start", "_listen_stop" })
--
-- puts a stand-in in Class[name] for each name. The first call of one
-- requires the module, which defines the real methods on the class (over
-- the stand-ins), and calls the real one. A stand-in that is still there
-- after the require raises (the module does not define that name), never
-- recursing. Plain fields, no __index function: an instance's nil field
-- reads cost what they did.

--- lazy(class, module, names): a stand-in in class[name] for each name,
-- which requires module on first call and calls what it defined.
---@param class table the class (or module) table the methods belong to
---@param module string the module that defines them on `class` when required
---@param names string[] the method names
---@return nil
local function lazy(class, module, names)
  for _, name in ipairs(names) do
    local function stand_in(...)
      require(module)
      local real = class[name]
      if real == stand_in then
        error("favcrm.lazy: " .. module .. " does not define " .. name, 2)
      end
      return real(...)
    end
    class[name] = stand_in
  end
end

return lazy

--- favcrm.suggest: the names nearest a misspelt one (internal; the
-- `suggestions` of client:describe's and client:call's unknown_tool error).
-- favcrm.client loads it the first time a tool name is unknown.
local M = {}

-- The edit distance of a and b (99 when their lengths differ by more than 8).
local function distance(a, b)
  local la, lb = #a, #b
  if math.abs(la - lb) > 8 then return 99 end
  local prev = {}
  for j = 0, lb do prev[j] = j end
  for i = 1, la do
    local cur = { [0] = i }
    for j = 1, lb do
      local cost = a:sub(i, i) == b:sub(j, j) and 0 or 1
      cur[j] = math.min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + cost)
    end
    prev = cur
  end
  return prev[lb]
end

--- suggest.nearest(name, tools) -> the names of at most three tools
-- nearest `name` (edit distance, or one name inside the other), nearest
-- first; none further than a third of the name's length (at least 3).
---@param name string the name asked for
---@param list table[] the tools (tables with a `name`)
---@return string[] names
function M.nearest(name, list)
  local scored = {}
  for _, t in ipairs(list) do
    local d = distance(name, t.name)
    if t.name:find(name, 1, true) or name:find(t.name, 1, true) then d = math.min(d, 2) end
    scored[#scored + 1] = { d = d, n = t.name }
  end
  table.sort(scored, function(x, y) return x.d < y.d or (x.d == y.d and x.n < y.n) end)
  local out = {}
  for i = 1, math.min(3, #scored) do
    if scored[i].d <= math.max(3, math.floor(#name / 3)) then out[#out + 1] = scored[i].n end
  end
  return out
end

return M

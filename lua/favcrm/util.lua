--- favcrm.util: dates, countries and time zones for the registration checks.
local M = {}

-- Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's
-- days_from_civil), so no local time zone is ever involved.
local function days_from_civil(y, m, d)
  if m <= 2 then y = y - 1 end
  local era = math.floor(y / 400)
  local yoe = y - era * 400
  local mp = (m + 9) % 12
  local doy = math.floor((153 * mp + 2) / 5) + d - 1
  local doe = yoe * 365 + math.floor(yoe / 4) - math.floor(yoe / 100) + doy
  return era * 146097 + doe - 719468
end
M.days_from_civil = days_from_civil

local MONTHS = { Jan = 1, Feb = 2, Mar = 3, Apr = 4, May = 5, Jun = 6,
  Jul = 7, Aug = 8, Sep = 9, Oct = 10, Nov = 11, Dec = 12 }

--- util.parse_http_date("Sun, 06 Nov 1994 08:49:37 GMT") -> epoch seconds or nil
---@param s string an HTTP date
---@return integer|nil seconds
function M.parse_http_date(s)
  if type(s) ~= "string" then return nil end
  local d, mon, y, hh, mm, ss = s:match("^%a+, (%d%d?) (%a%a%a) (%d%d%d%d) (%d%d):(%d%d):(%d%d) GMT$")
  if not d or not MONTHS[mon] then return nil end
  return days_from_civil(tonumber(y), MONTHS[mon], tonumber(d)) * 86400
    + tonumber(hh) * 3600 + tonumber(mm) * 60 + tonumber(ss)
end

--- util.parse_iso8601("2026-05-11T12:00:00.000Z") -> epoch seconds or nil
-- (a `Z` or `+hh:mm` / `-hh:mm` offset is required).
---@param s string an ISO 8601 timestamp with an offset
---@return number|nil seconds
function M.parse_iso8601(s)
  if type(s) ~= "string" then return nil end
  local y, mo, d, hh, mm, ss, rest = s:match("^(%d%d%d%d)-(%d%d)-(%d%d)[Tt ](%d%d):(%d%d):(%d%d)(.*)$")
  if not y then return nil end
  local frac = rest:match("^%.(%d+)")
  if frac then rest = rest:sub(#frac + 2) end
  local offset
  if rest == "Z" or rest == "z" then
    offset = 0
  else
    local sign, oh, om = rest:match("^([+-])(%d%d):?(%d%d)$")
    if not sign then return nil end
    offset = (tonumber(oh) * 3600 + tonumber(om) * 60) * (sign == "+" and 1 or -1)
  end
  mo, d = tonumber(mo), tonumber(d)
  if mo < 1 or mo > 12 or d < 1 or d > 31 then return nil end
  local t = days_from_civil(tonumber(y), mo, d) * 86400 + tonumber(hh) * 3600 + tonumber(mm) * 60 + tonumber(ss)
  if frac then t = t + tonumber("0." .. frac) end
  return t - offset
end

--- util.trim(s) -> s without leading and trailing white space
---@param s string
---@return string
function M.trim(s)
  return (s:gsub("^%s+", ""):gsub("%s+$", ""))
end

-- ISO 3166-1 alpha-2: the officially assigned codes.
local COUNTRIES = {}
for code in ([[
AD AE AF AG AI AL AM AO AQ AR AS AT AU AW AX AZ BA BB BD BE BF BG BH BI BJ BL
BM BN BO BQ BR BS BT BV BW BY BZ CA CC CD CF CG CH CI CK CL CM CN CO CR CU CV
CW CX CY CZ DE DJ DK DM DO DZ EC EE EG EH ER ES ET FI FJ FK FM FO FR GA GB GD
GE GF GG GH GI GL GM GN GP GQ GR GS GT GU GW GY HK HM HN HR HT HU ID IE IL IM
IN IO IQ IR IS IT JE JM JO JP KE KG KH KI KM KN KP KR KW KY KZ LA LB LC LI LK
LR LS LT LU LV LY MA MC MD ME MF MG MH MK ML MM MN MO MP MQ MR MS MT MU MV MW
MX MY MZ NA NC NE NF NG NI NL NO NP NR NU NZ OM PA PE PF PG PH PK PL PM PN PR
PS PT PW PY QA RE RO RS RU RW SA SB SC SD SE SG SH SI SJ SK SL SM SN SO SR SS
ST SV SX SY SZ TC TD TF TG TH TJ TK TL TM TN TO TR TT TV TW TZ UA UG UM US UY
UZ VA VC VE VG VI VN VU WF WS YE YT ZA ZM ZW]]):gmatch("%u%u") do
  COUNTRIES[code] = true
end

--- util.is_country("HK") -> true for an assigned ISO 3166-1 alpha-2 code
---@param code string
---@return boolean
function M.is_country(code)
  return COUNTRIES[code] == true
end

local ZONEINFO = { "/usr/share/zoneinfo", "/usr/lib/zoneinfo", "/usr/share/lib/zoneinfo" }

--- util.tz_database() -> the folder of the system's tz database, or nil
---@return string|nil folder
function M.tz_database()
  local dir = os.getenv("TZDIR")
  local list = dir and { dir } or ZONEINFO
  for _, d in ipairs(list) do
    local f = io.open(d .. "/UTC", "rb")
    if f then
      local magic = f:read(4)
      f:close()
      if magic == "TZif" then return d end
    end
  end
  return nil
end

--- util.is_timezone("Asia/Hong_Kong") -> true, false, or nil when the
-- system has no tz database to ask.
---@param name string an IANA zone name
---@return boolean|nil
function M.is_timezone(name)
  if type(name) ~= "string" or not name:match("^[%w_+-]+[%w_+/-]*$") or name:find("%.%.")
    or name:find("//") then
    return false
  end
  local db = M.tz_database()
  if not db then return nil end
  local f = io.open(db .. "/" .. name, "rb")
  if not f then return false end
  local magic = f:read(4)
  f:close()
  return magic == "TZif"
end

return M

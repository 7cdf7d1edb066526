-- favcrm.recipes.safe_call: describe first, preflight the plan, confirm a
-- destructive call with the user, report unexpected failures only with the
-- user's consent; against the real sandbox.
local favcrm = require("favcrm")
local sandbox = require("spec.support.sandbox")
local safe_call = require("favcrm.recipes.safe_call")

local client

local function calls(name)
  return sandbox.stats().by_method["tools/call:" .. name] or 0
end

local function contains(text, phrase)
  assert.is_truthy(text:find(phrase, 1, true), "expected to find [" .. phrase .. "] in: " .. text)
end

local function service(name)
  return assert(client:call("create_service", { name = name or "Hatha Yoga", durationMinutes = 60, price = 180 }))
end

describe("favcrm.recipes.safe_call", function()
  before_each(function()
    sandbox.reset()
    local key = sandbox.account("owner@example.com")
    client = favcrm.new({ url = sandbox.url(), api_key = key })
  end)

  after_each(function()
    client:close()
  end)

  describe("run()", function()
    it("describes the tool first: an unknown name fails with suggestions and calls nothing", function()
      local data, err = safe_call.run(client, "list_servics", {})
      assert.is_nil(data)
      assert.equal("unknown_tool", err.code)
      assert.same("list_services", err.suggestions[1])
      assert.equal(0, sandbox.stats().by_method["tools/call"] or 0)
    end)

    it("calls a read-only tool without a plan preflight or a question", function()
      local asked = false
      local data = safe_call.run(client, "list_services", {}, { confirm = function() asked = true end })
      assert.same({}, data)
      assert.is_false(asked)
      assert.equal(0, calls("check_plan_operation"))
    end)

    it("preflights a write with check_plan_operation", function()
      local svc = safe_call.run(client, "create_service", { name = "Yin", durationMinutes = 60 })
      assert.equal("Yin", svc.name)
      assert.equal(1, calls("check_plan_operation"))
    end)

    it("turns an upgradeAction into a clear plan_required message and sends nothing", function()
      local data, err = safe_call.run(client, "create_campaign", { name = "Spring", channel = "email",
        message = "Hello" })
      assert.is_nil(data)
      assert.equal("plan_required", err.code)
      assert.equal("create_plan_upgrade_link", err.upgrade_action.tool)
      assert.equal("starter", err.required_plan)
      contains(err.message, "create_campaign needs the starter plan (this workspace is on the free plan).")
      contains(err.message, "To upgrade, open https://app.favcrm.io/settings/billing?plan=starter")
      contains(err.message, "or ask me to create an upgrade link (create_plan_upgrade_link")
      contains(err.message, "Nothing was changed.")
      assert.equal(0, calls("create_campaign"))
    end)

    it("turns a plan limit the call itself hits into the same kind of message", function()
      for i = 1, 10 do service("Class " .. i) end
      local data, err = safe_call.run(client, "create_service", { name = "One too many", durationMinutes = 30 })
      assert.is_nil(data)
      assert.equal("plan_required", err.code)
      contains(err.message, "create_service needs the starter plan")
      contains(err.message, "Reason: services limit (10) reached.")
    end)

    it("presents the target of a destructive tool and does nothing when the user says no", function()
      local svc = service("Hatha Yoga")
      local seen
      local data, err = safe_call.run(client, "delete_service", { serviceId = svc.id }, {
        confirm = function(tool, args, summary)
          seen = { tool = tool, args = args, summary = summary }
          return false
        end,
      })
      assert.is_nil(data)
      assert.equal("confirmation_required", err.code)
      assert.equal("delete_service", seen.tool.name)
      assert.equal(svc.id, seen.args.serviceId)
      assert.equal("Delete service (delete_service): Hatha Yoga (" .. svc.id .. "). This can't be undone.",
        seen.summary)
      assert.equal(0, calls("delete_service"))
      assert.equal(1, #assert(client:call("list_services", {})))
    end)

    it("calls a destructive tool once the user confirms", function()
      local svc = service()
      local data = safe_call.run(client, "delete_service", { serviceId = svc.id }, {
        confirm = function() return true end,
      })
      assert.is_true(data.deleted)
      assert.equal(0, #assert(client:call("list_services", {})))
    end)

    it("refuses a destructive tool when there is no confirm callback", function()
      local svc = service()
      local _, err = safe_call.run(client, "delete_service", { serviceId = svc.id })
      assert.equal("confirmation_required", err.code)
      assert.equal(0, calls("delete_service"))
    end)

    it("does not ask about a target that does not exist", function()
      local asked = false
      local _, err = safe_call.run(client, "delete_service", { serviceId = "svc_missing" }, {
        confirm = function() asked = true; return true end,
      })
      assert.equal("not_found", err.code)
      assert.is_false(asked)
      assert.equal(0, calls("delete_service"))
    end)

    it("files report_agent_issue for an unexpected failure when report_issues is true", function()
      sandbox.fault({ fault = "status", status = 500, match_tool = "create_service" })
      local data, err = safe_call.run(client, "create_service", { name = "Yin", durationMinutes = 60 },
        { report_issues = true })
      assert.is_nil(data)
      assert.equal("http", err.code)
      assert.matches("^iss_", err.issue_id)
      assert.equal(1, calls("report_agent_issue"))
    end)

    it("files nothing without the user's consent", function()
      sandbox.fault({ fault = "status", status = 500, match_tool = "create_service" })
      local _, err = safe_call.run(client, "create_service", { name = "Yin", durationMinutes = 60 })
      assert.equal("http", err.code)
      assert.is_nil(err.issue_id)
      assert.equal(0, calls("report_agent_issue"))
    end)

    it("files nothing for an expected failure (bad arguments, a business conflict)", function()
      local _, err = safe_call.run(client, "create_service", { name = "" }, { report_issues = true })
      assert.equal("invalid_arguments", err.code)
      local svc = service()
      local start = "2030-01-07T09:00:00Z"
      assert(client:call("create_booking", { serviceId = svc.id, start = start, customerName = "Ann" }))
      local _, cerr = safe_call.run(client, "create_booking", { serviceId = svc.id, start = start,
        customerName = "Bo" }, { report_issues = true })
      assert.equal("tool_error", cerr.code)
      assert.equal("conflict", cerr.server_code)
      assert.equal(0, calls("report_agent_issue"))
    end)

    it("raises on misuse", function()
      assert.has_error(function() safe_call.run(client, "list_services", {}, { confrim = print }) end,
        "safe_call.run: unknown option 'confrim'")
      assert.has_error(function() safe_call.run(client, nil) end,
        "bad argument #2 to 'safe_call.run' (tool name expected, got nil)")
    end)
  end)
end)

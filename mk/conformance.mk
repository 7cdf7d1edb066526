# The official MCP conformance suite in client mode (issue 15, issue 16):
#   make conformance                       every scenario below, Lua 5.4
#   make conformance CONFORMANCE_SCENARIOS=sse-retry@2025-11-25
# The suite (@modelcontextprotocol/conformance, pinned by conformance/
# package-lock.json) runs on Node.js 22 (.ci/node.sh 22, via
# .ci/conformance-deps.sh). For each scenario it starts a test server and runs
# conformance/client.lua against it (conformance/run.sh). One line per
# scenario, then "N passed, N failed"; the target fails on a failure that
# conformance/expected-failures.txt does not list with its reason.
# Results (checks.json, the client's stdout/stderr) land in build/conformance/.

# SCENARIO@SPEC-VERSION: every client scenario the suite (0.2.0-alpha.12)
# lists for 2025-11-25 (`conformance list --client --spec-version 2025-11-25`),
# and the non-auth client scenarios it requires for 2026-07-28 (issue 16:
# the client negotiates the era itself, favcrm.era), with
# json-schema-2020-12-preservation (not scored: added after the release).
# Also every auth scenario for 2025-11-25 and for 2026-07-28 (issue 17), the
# two 2025-03-26 OAuth back-compat ones, and the OAuth client credentials
# extension's two (@extension: run without --spec-version, see run.sh).
# One list of scenario names per group; a scenario the suite runs for both
# eras is named once and suffixed with each version ($(call conf_at,...)).
conf_at = $(addsuffix @$(2),$(1))
CONF_CORE_2025 = initialize tools_call elicitation-sep1034-client-defaults sse-retry \
  json-schema-2020-12-preservation
CONF_CORE_2026 = tools_call request-metadata sep-2322-client-request-state http-standard-headers \
  http-custom-headers http-invalid-tool-headers json-schema-ref-no-deref json-schema-2020-12-preservation
# auth scenarios of both 2025-11-25 and 2026-07-28
CONF_AUTH = $(addprefix auth/,metadata-default metadata-var1 metadata-var2 metadata-var3 basic-cimd \
  scope-from-www-authenticate scope-from-scopes-supported scope-omitted-when-undefined scope-step-up \
  scope-retry-limit token-endpoint-auth-basic token-endpoint-auth-post token-endpoint-auth-none \
  pre-registration)
CONF_AUTH_2026 = $(addprefix auth/,resource-mismatch offline-access-scope offline-access-not-supported \
  authorization-server-migration iss-supported iss-not-advertised iss-supported-missing iss-wrong-issuer \
  iss-unexpected iss-normalized metadata-issuer-mismatch)
CONF_AUTH_2025_03_26 = $(addprefix auth/,2025-03-26-oauth-metadata-backcompat 2025-03-26-oauth-endpoint-fallback)

CONFORMANCE_SCENARIOS ?= \
  $(call conf_at,$(CONF_CORE_2025),2025-11-25) \
  $(call conf_at,$(CONF_CORE_2026),2026-07-28) \
  $(call conf_at,$(CONF_AUTH),2025-11-25) \
  $(call conf_at,$(CONF_AUTH_2025_03_26),2025-03-26) \
  auth/client-credentials-basic@extension \
  $(call conf_at,$(CONF_AUTH) $(CONF_AUTH_2026),2026-07-28) \
  auth/client-credentials-jwt@extension

.PHONY: conformance conformance-deps
conformance-deps:
	@bash .ci/conformance-deps.sh >/dev/null

conformance: deps
	@$(MAKE) --no-print-directory module
	@bash conformance/run.sh $(LUA_BIN) $(BUILD) $(CONFORMANCE_SCENARIOS)

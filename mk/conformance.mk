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
CONFORMANCE_SCENARIOS ?= \
  initialize@2025-11-25 \
  tools_call@2025-11-25 \
  elicitation-sep1034-client-defaults@2025-11-25 \
  sse-retry@2025-11-25 \
  json-schema-2020-12-preservation@2025-11-25 \
  tools_call@2026-07-28 \
  request-metadata@2026-07-28 \
  sep-2322-client-request-state@2026-07-28 \
  http-standard-headers@2026-07-28 \
  http-custom-headers@2026-07-28 \
  http-invalid-tool-headers@2026-07-28 \
  json-schema-ref-no-deref@2026-07-28 \
  json-schema-2020-12-preservation@2026-07-28 \
  auth/metadata-default@2025-11-25 \
  auth/metadata-var1@2025-11-25 \
  auth/metadata-var2@2025-11-25 \
  auth/metadata-var3@2025-11-25 \
  auth/basic-cimd@2025-11-25 \
  auth/scope-from-www-authenticate@2025-11-25 \
  auth/scope-from-scopes-supported@2025-11-25 \
  auth/scope-omitted-when-undefined@2025-11-25 \
  auth/scope-step-up@2025-11-25 \
  auth/scope-retry-limit@2025-11-25 \
  auth/token-endpoint-auth-basic@2025-11-25 \
  auth/token-endpoint-auth-post@2025-11-25 \
  auth/token-endpoint-auth-none@2025-11-25 \
  auth/pre-registration@2025-11-25 \
  auth/2025-03-26-oauth-metadata-backcompat@2025-03-26 \
  auth/2025-03-26-oauth-endpoint-fallback@2025-03-26 \
  auth/client-credentials-basic@extension \
  auth/metadata-default@2026-07-28 \
  auth/metadata-var1@2026-07-28 \
  auth/metadata-var2@2026-07-28 \
  auth/metadata-var3@2026-07-28 \
  auth/basic-cimd@2026-07-28 \
  auth/scope-from-www-authenticate@2026-07-28 \
  auth/scope-from-scopes-supported@2026-07-28 \
  auth/scope-omitted-when-undefined@2026-07-28 \
  auth/scope-step-up@2026-07-28 \
  auth/scope-retry-limit@2026-07-28 \
  auth/token-endpoint-auth-basic@2026-07-28 \
  auth/token-endpoint-auth-post@2026-07-28 \
  auth/token-endpoint-auth-none@2026-07-28 \
  auth/pre-registration@2026-07-28 \
  auth/resource-mismatch@2026-07-28 \
  auth/offline-access-scope@2026-07-28 \
  auth/offline-access-not-supported@2026-07-28 \
  auth/authorization-server-migration@2026-07-28 \
  auth/iss-supported@2026-07-28 \
  auth/iss-not-advertised@2026-07-28 \
  auth/iss-supported-missing@2026-07-28 \
  auth/iss-wrong-issuer@2026-07-28 \
  auth/iss-unexpected@2026-07-28 \
  auth/iss-normalized@2026-07-28 \
  auth/metadata-issuer-mismatch@2026-07-28 \
  auth/client-credentials-jwt@extension

.PHONY: conformance conformance-deps
conformance-deps:
	@bash .ci/conformance-deps.sh >/dev/null

conformance: deps
	@$(MAKE) --no-print-directory module
	@bash conformance/run.sh $(LUA_BIN) $(BUILD) $(CONFORMANCE_SCENARIOS)

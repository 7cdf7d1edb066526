#!/usr/bin/env node
// A 2026-07-28 agent host on the official MCP TypeScript SDK v2 client
// (@modelcontextprotocol/client: the sandbox's copy, pinned by
// sandbox/package-lock.json) driving `favcrm mcp serve` over stdio, for
// spec/integration/bridge_era_spec.lua:
//   node spec/support/mcp_bridge_client_v2.mjs LUA_BIN PLAN_JSON RECEIVED_FILE
// PLAN_JSON: {"mode": "auto" | "legacy" | "2026-07-28" (a pin),
//   "capabilities": {...}, "steps": [...]}; a step is {"list": true},
//   {"call": NAME, "arguments": {...}} (an argument "$last" is the same field
//   of the last call's data, "$var:LABEL" the line a wait got),
//   {"listen": {toolsListChanged: true}},
//   {"awaitNotification": METHOD, "timeoutMs": N} or {"wait": LABEL} (as in
//   mcp_bridge_client.mjs). Every message the bridge sent is written to
//   RECEIVED_FILE and every message the host sent is in report.sent. The
//   report, one JSON line, is the last thing on stdout. What this host shares
//   with mcp_bridge_client.mjs is in bridge_host.mjs.
import * as H from './bridge_host.mjs';

const { Client } = await import(H.sandboxModule('@modelcontextprotocol/client/dist/index.mjs'));
const { StdioClientTransport } = await import(H.sandboxModule('@modelcontextprotocol/client/dist/stdio.mjs'));

const { luaBin, plan, receivedFile, lines } = H.args();
const transport = new StdioClientTransport(H.serveCommand(luaBin, plan));
const mode = plan.mode === 'auto' || plan.mode === 'legacy' ? plan.mode : { pin: plan.mode ?? '2026-07-28' };
const caps = plan.capabilities ?? {};
const client = new Client({ name: 'favcrm-spec-bridge-host-v2', version: '2.0.0' },
    { capabilities: caps, versionNegotiation: { mode } });
const out = { steps: [], serverRequests: [], notifications: [], sent: [], errors: [] };
if (caps.elicitation) client.setRequestHandler('elicitation/create', async req => {
    out.serverRequests.push({ method: 'elicitation/create', message: req.params.message });
    return { action: 'accept', content: { name: 'Grace', confirm: true } };
});
H.answerSamplingAndRoots(client, caps, out, m => m);
const waiters = [];
const noted = H.notifications(out, waiters);
for (const m of ['notifications/tools/list_changed', 'notifications/resources/updated']) {
    client.setNotificationHandler(m, noted(m));
}
client.onerror = e => { out.errors.push(H.thrown(e)); };

await H.run(client, transport, out, receivedFile, async received => {
    // everything on the wire, both ways (the handshake too)
    H.tapWire(transport, out, received);
    await client.connect(transport);
    out.era = client.getProtocolEra?.();
    out.protocolVersion = client.getNegotiatedProtocolVersion?.();
    out.discover = client.getDiscoverResult?.() ?? null;
    out.serverVersion = client.getServerVersion();
    out.serverCapabilities = client.getServerCapabilities();
    const vars = {};
    let last = {};
    const subs = [];
    for (const step of plan.steps) {
        if (await H.commonStep(step, { out, lines, vars, waiters })) continue;
        if (step.listen) {
            try {
                subs.push(await client.listen(step.listen));
                out.steps.push({ listened: true });
            } catch (e) {
                out.steps.push({ listened: false, thrown: H.thrown(e) });
            }
            continue;
        }
        if (step.list) {
            try {
                const r = await client.listTools();
                out.steps.push({ list: r.tools.map(t => ({ name: t.name })) });
            } catch (e) {
                out.steps.push({ list: null, thrown: H.thrown(e) });
            }
            continue;
        }
        const args = {};
        for (const [k, v] of Object.entries(step.arguments ?? {})) {
            if (typeof v === 'string' && v.startsWith('$var:')) args[k] = vars[v.slice(5)];
            else if (v === '$last') args[k] = last[k];
            else args[k] = v;
        }
        try {
            const r = await client.callTool({ name: step.call, arguments: args }, { timeout: 60000 });
            const [rec, data] = H.callRecord(step, r);
            if (data) last = data;
            out.steps.push(rec);
        } catch (e) {
            out.steps.push({ call: step.call, thrown: H.thrown(e), code: e && e.code });
        }
    }
    for (const s of subs) await s.close?.().catch?.(() => {});
});

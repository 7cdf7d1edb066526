#!/usr/bin/env node
// An agent host on the official MCP TypeScript SDK (Client +
// StdioClientTransport) driving `favcrm mcp serve` step by step, for
// spec/integration/bridge_spec.lua:
//   node spec/support/mcp_bridge_client.mjs LUA_BIN PLAN_JSON RECEIVED_FILE
// PLAN_JSON: {"serveArgs": [...], "capabilities": {"elicitation": {}, ...},
//   "steps": [...]}; a step is {"list": true}, {"call": NAME, "arguments": {...},
//   "progress": true, "abortOnProgress": true}, {"setLevel": LEVEL},
//   {"rpc": METHOD, "params": {...}} (any request: resources/list, resources/read,
//   resources/subscribe, prompts/list, prompts/get, completion/complete, ...),
//   {"awaitNotification": METHOD, "timeoutMs": N} (until the bridge sent one),
//   or {"wait": LABEL}: the script
//   prints {"waiting": LABEL} on stdout and goes on when a line arrives on
//   its stdin (the spec does something to the world meanwhile); the line is
//   kept, and an argument "$var:LABEL" is replaced by it.
// "$outbox:EMAIL" and "$last.requestId" work as in mcp_stdio_client.mjs.
// An elicitation/create in URL mode is accepted with no content; every
// notification the host heard (list_changed, resources/updated,
// elicitation/complete) is in report.notifications.
// Every message the bridge sent the host is written, one JSON per line, to
// RECEIVED_FILE, so the spec can look for a key in all of it, and every
// message the host sent is in report.sent. The report,
// one JSON line, is the last thing on stdout. What this host shares with
// mcp_bridge_client_v2.mjs is in bridge_host.mjs.
import * as H from './bridge_host.mjs';

const SDK = '@modelcontextprotocol/sdk/dist/esm/';
const { Client } = await import(H.sandboxModule(SDK + 'client/index.js'));
const { StdioClientTransport } = await import(H.sandboxModule(SDK + 'client/stdio.js'));
const T = await import(H.sandboxModule(SDK + 'types.js'));

const { luaBin, plan, receivedFile, lines } = H.args();
const outboxCode = H.outboxCode;

const transport = new StdioClientTransport(H.serveCommand(luaBin, plan));
const caps = plan.capabilities ?? {};
const client = new Client({ name: 'favcrm-spec-bridge-host', version: '1.0.0' }, { capabilities: caps });
const out = { steps: [], logs: [], serverRequests: [] };
if (caps.elicitation) client.setRequestHandler(T.ElicitRequestSchema, async req => {
    const p = req.params;
    out.serverRequests.push({ method: 'elicitation/create', message: p.message, mode: p.mode ?? 'form',
        url: p.url, elicitationId: p.elicitationId });
    if (p.mode === 'url') return { action: 'accept' }; // the user opened the URL (never opened here)
    return { action: 'accept', content: { name: 'Grace', confirm: true } };
});
const SCHEMAS = { 'sampling/createMessage': T.CreateMessageRequestSchema, 'roots/list': T.ListRootsRequestSchema };
H.answerSamplingAndRoots(client, caps, out, m => SCHEMAS[m]);
client.setNotificationHandler(T.LoggingMessageNotificationSchema, n => { out.logs.push(n.params); });
out.notifications = [];
const waiters = [];
const noted = H.notifications(out, waiters);
client.setNotificationHandler(T.ToolListChangedNotificationSchema, noted('notifications/tools/list_changed'));
client.setNotificationHandler(T.ResourceListChangedNotificationSchema, noted('notifications/resources/list_changed'));
client.setNotificationHandler(T.PromptListChangedNotificationSchema, noted('notifications/prompts/list_changed'));
client.setNotificationHandler(T.ResourceUpdatedNotificationSchema, noted('notifications/resources/updated'));
client.setNotificationHandler(T.ElicitationCompleteNotificationSchema, noted('notifications/elicitation/complete'));
out.sent = [];
out.errors = [];
client.onerror = e => { out.errors.push(H.thrown(e)); };

await H.run(client, transport, out, receivedFile, async received => {
    await client.connect(transport);
    // everything the bridge sends reaches the host through here (after the handshake)
    H.tapWire(transport, out, received);
    out.serverVersion = client.getServerVersion();
    out.serverCapabilities = client.getServerCapabilities();
    let last = {};
    const vars = {};
    for (const step of plan.steps) {
        if (await H.commonStep(step, { out, lines, vars, waiters })) continue;
        if (step.setLevel) {
            await client.setLoggingLevel(step.setLevel);
            out.steps.push({ setLevel: step.setLevel });
            continue;
        }
        if (step.rpc) {
            try {
                const r = await client.request({ method: step.rpc, params: step.params ?? {} }, T.ResultSchema.passthrough
                    ? T.ResultSchema.passthrough() : T.ResultSchema, { timeout: 60000 });
                out.steps.push({ rpc: step.rpc, result: r });
            } catch (e) {
                out.steps.push({ rpc: step.rpc, thrown: H.thrown(e), code: e && e.code });
            }
            continue;
        }
        if (step.list) {
            const r = await client.listTools();
            out.steps.push({ list: r.tools.map(t => ({ name: t.name, description: t.description ?? '' })) });
            continue;
        }
        const args = {};
        for (const [k, v] of Object.entries(step.arguments ?? {})) {
            if (typeof v === 'string' && v.startsWith('$outbox:')) args[k] = await outboxCode(v.slice(8), last.requestId);
            else if (typeof v === 'string' && v.startsWith('$var:')) args[k] = vars[v.slice(5)];
            else if (v === '$last.requestId') args[k] = last.requestId;
            else args[k] = v;
        }
        const progress = [];
        try {
            const ac = new AbortController();
            const opts = step.progress ? { onprogress: p => { progress.push(p); if (step.abortOnProgress) ac.abort('spec: cancelled'); },
                timeout: 60000, signal: ac.signal } : { timeout: 60000 };
            const r = await client.callTool({ name: step.call, arguments: args }, undefined, opts);
            const [rec, data] = H.callRecord(step, r, { progress });
            if (data) last = data;
            out.steps.push(rec);
        } catch (e) {
            out.steps.push({ call: step.call, thrown: H.thrown(e), code: e && e.code });
        }
    }
});

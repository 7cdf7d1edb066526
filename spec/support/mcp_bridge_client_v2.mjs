#!/usr/bin/env node
// A 2026-07-28 agent host on the official MCP TypeScript SDK v2 client
// (@modelcontextprotocol/client, pinned in spec/support/package.json) driving
// `favcrm mcp serve` over stdio, for spec/integration/bridge_era_spec.lua:
//   node spec/support/mcp_bridge_client_v2.mjs LUA_BIN PLAN_JSON RECEIVED_FILE
// PLAN_JSON: {"mode": "auto" | "legacy" | "2026-07-28" (a pin),
//   "capabilities": {...}, "steps": [...]}; a step is {"list": true},
//   {"call": NAME, "arguments": {...}} (an argument "$last" is the same field
//   of the last call's data, "$var:LABEL" the line a wait got),
//   {"listen": {toolsListChanged: true}},
//   {"awaitNotification": METHOD, "timeoutMs": N} or {"wait": LABEL} (as in
//   mcp_bridge_client.mjs). Every message the bridge sent is written to
//   RECEIVED_FILE and every message the host sent is in report.sent. The
//   report, one JSON line, is the last thing on stdout.
import path from 'node:path';
import fs from 'node:fs';
import readline from 'node:readline';
import { fileURLToPath } from 'node:url';
import { Client } from '@modelcontextprotocol/client';
import { StdioClientTransport } from '@modelcontextprotocol/client/stdio';

const HERE = path.dirname(fileURLToPath(import.meta.url));
const TOP = path.resolve(HERE, '..', '..');
const [luaBin, planJson, receivedFile] = process.argv.slice(2);
const plan = JSON.parse(planJson);
const lines = readline.createInterface({ input: process.stdin })[Symbol.asyncIterator]();

const transport = new StdioClientTransport({
    command: luaBin,
    args: [path.join(TOP, 'bin', 'favcrm'), 'mcp', 'serve', ...(plan.serveArgs ?? [])],
    env: { ...process.env },
    stderr: 'pipe',
});
const mode = plan.mode === 'auto' || plan.mode === 'legacy' ? plan.mode : { pin: plan.mode ?? '2026-07-28' };
const caps = plan.capabilities ?? {};
const client = new Client({ name: 'favcrm-spec-bridge-host-v2', version: '2.0.0' },
    { capabilities: caps, versionNegotiation: { mode } });
const out = { steps: [], serverRequests: [], notifications: [], sent: [], errors: [] };
if (caps.elicitation) client.setRequestHandler('elicitation/create', async req => {
    out.serverRequests.push({ method: 'elicitation/create', message: req.params.message });
    return { action: 'accept', content: { name: 'Grace', confirm: true } };
});
if (caps.sampling) client.setRequestHandler('sampling/createMessage', async req => {
    out.serverRequests.push({ method: 'sampling/createMessage' });
    const text = req.params.messages?.[0]?.content?.text ?? '';
    return { role: 'assistant', model: 'spec-model', content: { type: 'text', text: `sampled: ${text}` } };
});
if (caps.roots) client.setRequestHandler('roots/list', async () => {
    out.serverRequests.push({ method: 'roots/list' });
    return { roots: [{ uri: 'file:///work/project', name: 'project' }] };
});
const waiters = [];
for (const m of ['notifications/tools/list_changed', 'notifications/resources/updated']) {
    client.setNotificationHandler(m, n => {
        out.notifications.push({ method: m, params: n.params ?? {} });
        for (const w of waiters.splice(0)) w();
    });
}
client.onerror = e => { out.errors.push(String(e && e.message || e)); };

const received = fs.openSync(receivedFile, 'a');
let stderr = '';
try {
    if (transport.stderr) transport.stderr.on('data', d => { stderr += d.toString(); });
    // everything on the wire, both ways
    const origSend = transport.send.bind(transport);
    transport.send = (m, o) => { out.sent.push(m); return origSend(m, o); };
    let onmsg;
    Object.defineProperty(transport, 'onmessage', {
        configurable: true,
        get() { return onmsg && (m => { fs.writeSync(received, JSON.stringify(m) + '\n'); onmsg(m); }); },
        set(f) { onmsg = f; },
    });
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
        if (step.wait) {
            process.stdout.write(JSON.stringify({ waiting: step.wait }) + '\n');
            const r = await lines.next();
            if (r.done) throw new Error('stdin closed while waiting');
            vars[step.wait] = r.value;
            out.steps.push({ waited: step.wait });
            continue;
        }
        if (step.listen) {
            try {
                subs.push(await client.listen(step.listen));
                out.steps.push({ listened: true });
            } catch (e) {
                out.steps.push({ listened: false, thrown: String(e && e.message || e) });
            }
            continue;
        }
        if (step.awaitNotification) {
            const until = Date.now() + (step.timeoutMs ?? 20000);
            while (!out.notifications.some(n => n.method === step.awaitNotification) && Date.now() < until) {
                await new Promise(r => { waiters.push(r); setTimeout(r, Math.max(0, until - Date.now())); });
            }
            out.steps.push({ awaited: step.awaitNotification,
                seen: out.notifications.some(n => n.method === step.awaitNotification) });
            continue;
        }
        if (step.list) {
            try {
                const r = await client.listTools();
                out.steps.push({ list: r.tools.map(t => ({ name: t.name })) });
            } catch (e) {
                out.steps.push({ list: null, thrown: String(e && e.message || e) });
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
            const sc = r.structuredContent ?? null;
            const data = sc && typeof sc === 'object' && 'data' in sc ? sc.data : sc;
            if (data && typeof data === 'object' && !Array.isArray(data)) last = data;
            out.steps.push({ call: step.call, isError: r.isError === true, structuredContent: sc,
                texts: (r.content ?? []).map(c => c.text ?? null) });
        } catch (e) {
            out.steps.push({ call: step.call, thrown: String(e && e.message || e), code: e && e.code });
        }
    }
    for (const s of subs) await s.close?.().catch?.(() => {});
} catch (e) {
    out.fatal = String(e && e.stack || e);
}
await client.close().catch(() => {});
fs.closeSync(received);
out.stderr = stderr;
process.stdout.write(JSON.stringify({ report: out }) + '\n');
process.exit(0);

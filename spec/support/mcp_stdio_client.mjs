#!/usr/bin/env node
// Connects the official MCP TypeScript SDK client over stdio to
// `favcrm mcp serve` and runs a script of steps; prints one JSON document.
//   node spec/support/mcp_stdio_client.mjs LUA_BIN STEPS_JSON
// STEPS_JSON: a list of {"call": NAME, "arguments": {...}} or {"list": true};
// an argument value "$outbox:EMAIL:REF" is replaced by the newest code the
// sandbox e-mailed to EMAIL for the request id that an earlier step returned
// as REF ("$last.requestId"). The child gets this process's environment
// (FAVCRM_MCP_URL, HOME, LUA_PATH, ...); no key is ever in its argv.
import * as H from './bridge_host.mjs';

const SDK = '@modelcontextprotocol/sdk/dist/esm/';
const { Client } = await import(H.sandboxModule(SDK + 'client/index.js'));
const { StdioClientTransport } = await import(H.sandboxModule(SDK + 'client/stdio.js'));

const [luaBin, stepsJson] = process.argv.slice(2);
const steps = JSON.parse(stepsJson || '[{"list": true}]');
const outboxCode = H.outboxCode;

const transport = new StdioClientTransport(H.serveCommand(luaBin, {}));
let stderr = '';
const client = new Client({ name: 'favcrm-spec-sdk-client', version: '1.0.0' });
const out = { steps: [] };
try {
    const errStream = transport.stderr;
    if (errStream) errStream.on('data', d => { stderr += d.toString(); });
    await client.connect(transport);
    out.serverVersion = client.getServerVersion();
    out.protocolVersion = transport._protocolVersion ?? null;
    let last = {};
    for (const step of steps) {
        if (step.list) {
            const r = await client.listTools();
            out.steps.push({ list: r.tools.map(t => ({ name: t.name, annotations: t.annotations ?? null, hasOutputSchema: !!t.outputSchema })) });
            continue;
        }
        const args = {};
        for (const [k, v] of Object.entries(step.arguments ?? {})) {
            if (typeof v === 'string' && v.startsWith('$outbox:')) {
                const to = v.slice('$outbox:'.length);
                args[k] = await outboxCode(to, last.requestId);
            } else if (v === '$last.requestId') {
                args[k] = last.requestId;
            } else {
                args[k] = v;
            }
        }
        try {
            const r = await client.callTool({ name: step.call, arguments: args });
            const sc = r.structuredContent ?? null;
            const data = sc && typeof sc === 'object' && 'data' in sc ? sc.data : sc;
            if (data && typeof data === 'object' && !Array.isArray(data)) last = data;
            // the key never goes to stdout: only its shape
            const safe = JSON.parse(JSON.stringify(sc, (k, val) => (k === 'apiKey' && typeof val === 'string')
                ? `${val.slice(0, 8)}...(${val.length})` : val));
            out.steps.push({ call: step.call, isError: r.isError === true, structuredContent: safe,
                text: r.isError ? (r.content?.[0]?.text ?? null) : null });
        } catch (e) {
            out.steps.push({ call: step.call, thrown: String(e && e.message || e), code: e && e.code });
        }
    }
} catch (e) {
    out.fatal = String(e && e.stack || e);
}
await client.close().catch(() => {});
out.stderrLines = stderr.split('\n').filter(Boolean).length;
process.stdout.write(JSON.stringify(out) + '\n');

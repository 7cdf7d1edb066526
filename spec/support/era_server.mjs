// A scripted MCP server of both eras for spec/era_spec.lua (issue 16), on
// node:http alone, so each rule of the 2026-07-28 revision the client must
// follow can be checked on the wire. The official v2 server runs in the
// sandbox (FAVCRM_SANDBOX_ERA); this one plays the servers that are hard to
// get from it: a -32022 that lists only 2025, a server that changes era, a
// tool that asks for input forever, malformed x-mcp-header annotations.
//   node era_server.mjs [--stdio] [--lifetime SECONDS]
// HTTP: prints its base URL on the first line; the MCP endpoints are
//   /modern   2026-07-28 only (per-request _meta, headers checked)
//   /legacy   2025-11-25 only (initialize and a session; 400 for 2026 headers)
//   /only2025 answers server/discover with -32022 listing 2025-11-25 only,
//             then serves like /legacy
//   /flip     like /modern until POST /_era/flip, then like /legacy
// Control: GET /_era/log (every request seen: path, method, headers, params),
//   POST /_era/reset, POST /_era/flip, POST /_era/exit.
// --stdio: one 2026-07-28 server on stdin/stdout (newline-delimited).
import http from 'node:http';
import { createInterface } from 'node:readline';

const MODERN = '2026-07-28';
const LEGACY = '2025-11-25';
let log = [];
let flipped = false;
let sessions = 0;

// POST /_era/rename {header}: the echo tool's region now goes in that
// header, and a call whose Mcp-Param headers do not match gets 400 -32020
let regionHeader = 'Region';
let strict = false;
let broken = {}; // tool -> streams broken so far
const tools = [
    { name: 'echo', inputSchema: { type: 'object', properties: {
        region: { type: 'string', 'x-mcp-header': 'Region' },
        n: { type: 'integer', 'x-mcp-header': 'N' },
        text: { type: 'string' } } } },
    { name: 'ask', description: 'asks for a confirmation (MRTR), then answers with what it got',
        inputSchema: { type: 'object' }, annotations: { readOnlyHint: true } },
    { name: 'ask_forever', inputSchema: { type: 'object' } },
    { name: 'needs_sampling', inputSchema: { type: 'object' } },
    // the first call of each opens an event stream and ends it before the answer
    { name: 'flaky_read', inputSchema: { type: 'object' }, annotations: { readOnlyHint: true } },
    { name: 'flaky_write', inputSchema: { type: 'object' } },
    { name: 'bad_header', inputSchema: { type: 'object', properties: {
        x: { type: 'number', 'x-mcp-header': 'X' } } } },
    { name: 'nested_in_items', inputSchema: { type: 'object', properties: {
        list: { type: 'array', items: { type: 'string', 'x-mcp-header': 'Item' } } } } },
];
let ttlMs = 0;

const text = v => ({ content: [{ type: 'text', text: JSON.stringify(v) }] });

// One modern request -> [httpStatus, message]
function modern(req, headers, stdio) {
    const { id, method } = req;
    const params = req.params || {};
    const meta = params._meta || {};
    const err = (status, code, message, data) =>
        [status, { jsonrpc: '2.0', id: id ?? null, error: { code, message, data } }];
    const ok = result => [200, { jsonrpc: '2.0', id, result: { resultType: 'complete', ...result } }];
    const v = meta['io.modelcontextprotocol/protocolVersion'];
    if (method === 'initialize') return err(400, -32022, 'Unsupported protocol version',
        { supported: [MODERN], requested: params.protocolVersion });
    if (!stdio) {
        const hv = headers['mcp-protocol-version'];
        if (!hv) return err(400, -32020, 'Missing MCP-Protocol-Version header');
        if (headers['mcp-method'] !== method) return err(400, -32020, 'Mcp-Method does not match');
    }
    if (v === undefined || meta['io.modelcontextprotocol/clientCapabilities'] === undefined)
        return err(400, -32602, 'Invalid params: missing _meta keys');
    if (v !== MODERN) return err(400, -32022, 'Unsupported protocol version', { supported: [MODERN], requested: v });
    if (!stdio && headers['mcp-protocol-version'] !== v) return err(400, -32020, 'header/_meta version mismatch');
    const caps = meta['io.modelcontextprotocol/clientCapabilities'];
    switch (method) {
        case 'server/discover':
            return ok({ supportedVersions: [MODERN], capabilities: { tools: { listChanged: true }, resources: {} },
                _meta: { 'io.modelcontextprotocol/serverInfo': { name: 'era-server', version: '1' } },
                ttlMs: 0, cacheScope: 'public' });
        case 'tools/list':
            return ok({ tools, ttlMs, cacheScope: 'public' });
        case 'resources/read':
            return err(stdio ? 200 : 400, -32602, 'Resource not found: ' + params.uri);
        case 'tools/call': {
            const a = params.arguments || {};
            if (params.name === 'echo' && strict && a.region !== undefined
                && headers['mcp-param-' + regionHeader.toLowerCase()] !== a.region)
                return err(400, -32020, 'Header mismatch: Mcp-Param-' + regionHeader);
            if (params.name === 'echo') return ok(text({ args: a, logLevel: meta['io.modelcontextprotocol/logLevel'] ?? null,
                headers: Object.fromEntries(Object.entries(headers).filter(([k]) => k.startsWith('mcp-'))) }));
            if (params.name === 'ask' || params.name === 'ask_forever') {
                if (params.name === 'ask' && params.inputResponses)
                    return ok(text({ inputResponses: params.inputResponses, requestState: params.requestState ?? null, id }));
                return ok({ resultType: 'input_required', requestState: 'state-' + id,
                    inputRequests: { confirm: { method: 'elicitation/create', params: { mode: 'form',
                        message: 'Confirm?', requestedSchema: { type: 'object', properties: {
                            ok: { type: 'boolean', default: true } } } } } } });
            }
            if (params.name === 'flaky_read' || params.name === 'flaky_write') return ok(text({ id }));
            if (params.name === 'needs_sampling') {
                if (!caps.sampling) return err(stdio ? 200 : 400, -32021, 'Missing required client capability',
                    { requiredCapabilities: { sampling: {} } });
                return ok(text('sampled'));
            }
            return err(stdio ? 200 : 404, -32602, 'Unknown tool ' + params.name);
        }
        default:
            return err(stdio ? 200 : 404, -32601, 'Method not found: ' + method);
    }
}

// One legacy request -> [status, message|null, extra headers]
function legacy(req, headers) {
    const { id, method } = req;
    const err = (status, code, message) => [status, { jsonrpc: '2.0', id: id ?? null, error: { code, message } }, {}];
    if (headers['mcp-protocol-version'] === MODERN) return err(400, -32000, 'Bad Request: Unsupported protocol version');
    if (method === 'initialize') {
        sessions++;
        return [200, { jsonrpc: '2.0', id, result: { protocolVersion: LEGACY, capabilities: { tools: {} },
            serverInfo: { name: 'legacy-server', version: '1' } } }, { 'mcp-session-id': 'sess-' + sessions }];
    }
    if (!headers['mcp-session-id']) return err(400, -32000, 'Bad Request: No valid session ID provided');
    if (id === undefined) return [202, null, {}];
    if (method === 'tools/list') return [200, { jsonrpc: '2.0', id, result: { tools } }, {}];
    if (method === 'tools/call') return [200, { jsonrpc: '2.0', id, result: text({ legacy: true }) }, {}];
    if (method === 'ping') return [200, { jsonrpc: '2.0', id, result: {} }, {}];
    return err(200, -32601, 'Method not found');
}

function serveHttp(lifetime) {
    const server = http.createServer((req, res) => {
        let body = '';
        req.on('data', c => { body += c; });
        req.on('end', () => {
            const path = req.url.split('?')[0];
            const send = (status, msg, extra = {}) => {
                if (msg === null) { res.writeHead(status, extra); res.end(); return; }
                res.writeHead(status, { 'content-type': 'application/json', ...extra });
                res.end(JSON.stringify(msg));
            };
            if (path === '/_era/log') return send(200, log);
            if (path === '/_era/reset') {
                log = []; flipped = false; ttlMs = 0; strict = false; regionHeader = 'Region'; broken = {};
                tools[0].inputSchema.properties.region['x-mcp-header'] = regionHeader;
                return send(200, {});
            }
            if (path === '/_era/rename') {
                regionHeader = JSON.parse(body).header; strict = true;
                tools[0].inputSchema.properties.region['x-mcp-header'] = regionHeader;
                return send(200, {});
            }
            if (path === '/_era/flip') { flipped = true; return send(200, {}); }
            if (path === '/_era/ttl') { ttlMs = JSON.parse(body).ttlMs; return send(200, {}); }
            if (path === '/_era/exit') { send(200, {}); setTimeout(() => process.exit(0), 10); return; }
            if (req.method !== 'POST') { log.push({ path, http: req.method }); return send(405, null); }
            let msg;
            try { msg = JSON.parse(body); } catch { return send(400, { jsonrpc: '2.0', id: null, error: { code: -32700, message: 'Parse error' } }); }
            log.push({ path, method: msg.method, id: msg.id, headers: req.headers, params: msg.params });
            let era = path === '/modern' || (path === '/flip' && !flipped) ? 'modern' : 'legacy';
            if (path === '/only2025' && msg.method === 'server/discover')
                return send(400, { jsonrpc: '2.0', id: msg.id, error: { code: -32022, message: 'Unsupported protocol version',
                    data: { supported: [LEGACY], requested: MODERN } } });
            if (era === 'modern' && msg.method === 'subscriptions/listen' && req.headers['mcp-method'] === msg.method) {
                // the stream: acknowledged, then one resources/updated per subscribed uri; stays open
                const f = (msg.params && msg.params.notifications) || {};
                const sub = { 'io.modelcontextprotocol/subscriptionId': msg.id };
                res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache' });
                const ev = m => res.write(`event: message\ndata: ${JSON.stringify(m)}\n\n`);
                ev({ jsonrpc: '2.0', method: 'notifications/subscriptions/acknowledged', params: { _meta: sub, notifications: f } });
                for (const uri of f.resourceSubscriptions || [])
                    ev({ jsonrpc: '2.0', method: 'notifications/resources/updated', params: { _meta: sub, uri } });
                if (f.toolsListChanged) ev({ jsonrpc: '2.0', method: 'notifications/tools/list_changed', params: { _meta: sub } });
                return;
            }
            const tool = msg.method === 'tools/call' && msg.params && msg.params.name;
            if (era === 'modern' && (tool === 'flaky_read' || tool === 'flaky_write') && !broken[tool]) {
                broken[tool] = 1;
                res.writeHead(200, { 'content-type': 'text/event-stream' });
                res.write(': working\n\n');
                res.end(); // no answer: the stream is broken
                return;
            }
            if (era === 'modern') { const [st, m] = modern(msg, req.headers, false); return send(st, m); }
            const [st, m, extra] = legacy(msg, req.headers);
            return send(st, m, extra);
        });
    });
    server.listen(0, '127.0.0.1', () => {
        process.stdout.write(`http://127.0.0.1:${server.address().port}\n`);
    });
    setTimeout(() => process.exit(0), lifetime * 1000).unref();
}

function serveStdio() {
    createInterface({ input: process.stdin }).on('line', line => {
        let msg;
        try { msg = JSON.parse(line); } catch { return; }
        if (msg.id === undefined) return;
        if (msg.method === 'subscriptions/listen') {
            // no answer while the subscription lasts: its notifications, tagged with its id
            const f = (msg.params && msg.params.notifications) || {};
            const sub = { 'io.modelcontextprotocol/subscriptionId': msg.id };
            const w = m => process.stdout.write(JSON.stringify(m) + '\n');
            w({ jsonrpc: '2.0', method: 'notifications/subscriptions/acknowledged', params: { _meta: sub, notifications: f } });
            for (const uri of f.resourceSubscriptions || [])
                w({ jsonrpc: '2.0', method: 'notifications/resources/updated', params: { _meta: sub, uri } });
            return;
        }
        const [, m] = modern(msg, {}, true);
        process.stdout.write(JSON.stringify(m) + '\n');
    });
}

const args = process.argv.slice(2);
const li = args.indexOf('--lifetime');
if (args.includes('--stdio')) serveStdio();
else serveHttp(li >= 0 ? Number(args[li + 1]) : 300);

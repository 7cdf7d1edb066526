#!/usr/bin/env node
// favcrm-sandbox: a local FavCRM-compatible MCP server (Streamable HTTP) built
// on the official MCP TypeScript SDK. See README.md for flags, tools, error
// signalling, the /_sandbox/ control endpoints and the fault list.
import './lib/nodecheck.mjs'; // first: refuses a Node.js older than 20 before the SDK loads
import http from 'node:http';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { randomUUID } from 'node:crypto';
import { fileURLToPath } from 'node:url';
import { State, sha256 } from './lib/state.mjs';
import { buildTools } from './lib/tools.mjs';
import { MemoryEventStore } from './lib/eventstore.mjs';
import { FAULTS, applyFault } from './lib/faults.mjs';
import { createOAuth } from './lib/oauth.mjs';
import { resourceListing, TEMPLATES, PROMPTS, newScope } from './lib/resources.mjs';
import { mcpHandlers, registerV1, capabilities, SERVER_INFO, INSTRUCTIONS, CACHEABLE, RESULT_TYPES } from './lib/mcp.mjs';

const ERAS = ['2025', '2026', 'dual'];

const HERE = path.dirname(fileURLToPath(import.meta.url));
const VERSION = JSON.parse(fs.readFileSync(path.join(HERE, 'package.json'), 'utf8')).version;
const MAX_BODY = 4 * 1024 * 1024;

// ---- command line -------------------------------------------------------------
function usage(msg) {
    if (msg) process.stderr.write(`favcrm-sandbox: ${msg}\n`);
    process.stderr.write('usage: node sandbox/server.mjs [--port N] [--host 127.0.0.1] [--stateless] [--test] [--outbox DIR]\n' +
        '       [--code-ttl SECONDS] [--rate PER_HOUR/PER_DAY] [--json-response] [--lenient-sessions] [--page-size N] [--quiet] [--oauth]\n' +
        '       [--era 2025|2026|dual]   (default: $FAVCRM_SANDBOX_ERA, else 2025)\n');
    process.exit(2);
}

function parseArgs(argv) {
    const cfg = { port: 0, host: '127.0.0.1', stateless: false, test: false, outbox: null, codeTtl: 600, ratePerHour: 3, ratePerDay: 20, jsonResponse: false, lenient: false, pageSize: 0, quiet: false, portGiven: false, era: process.env.FAVCRM_SANDBOX_ERA || '2025' };
    for (let k = 0; k < argv.length; k++) {
        const a = argv[k];
        const [flag, inline] = a.includes('=') ? [a.slice(0, a.indexOf('=')), a.slice(a.indexOf('=') + 1)] : [a, undefined];
        const val = () => { const v = inline ?? argv[++k]; if (v === undefined) usage(`${flag} needs a value`); return v; };
        switch (flag) {
            case '--port': cfg.port = Number(val()); cfg.portGiven = true; if (!Number.isInteger(cfg.port) || cfg.port < 0 || cfg.port > 65535) usage('bad --port'); break;
            case '--host': cfg.host = val(); break;
            case '--stateless': cfg.stateless = true; break;
            case '--test': cfg.test = true; break;
            case '--outbox': cfg.outbox = val(); break;
            case '--code-ttl': cfg.codeTtl = Number(val()); if (!(cfg.codeTtl > 0)) usage('bad --code-ttl'); break;
            case '--rate': {
                const m = /^(\d+)\/(\d+)$/.exec(val());
                if (!m) usage('--rate wants PER_HOUR/PER_DAY, e.g. 3/20');
                cfg.ratePerHour = Number(m[1]); cfg.ratePerDay = Number(m[2]);
                break;
            }
            case '--json-response': cfg.jsonResponse = true; break;
            case '--lenient-sessions': cfg.lenient = true; break;
            case '--page-size': cfg.pageSize = Number(val()); if (!Number.isInteger(cfg.pageSize) || cfg.pageSize < 0) usage('bad --page-size'); break;
            case '--quiet': cfg.quiet = true; break;
            case '--oauth': cfg.oauth = true; break; // also FAVCRM_SANDBOX_OAUTH=1: lib/oauth.mjs
            case '--era': cfg.era = val(); break;
            case '-h': case '--help': usage();
            // falls through (usage exits)
            default: usage(`unknown argument ${a}`);
        }
    }
    if (!ERAS.includes(cfg.era)) usage(`--era (or FAVCRM_SANDBOX_ERA) must be one of ${ERAS.join(', ')}, not "${cfg.era}"`);
    if (!['127.0.0.1', 'localhost', '::1'].includes(cfg.host)) usage('--host must be a loopback address (127.0.0.1)');
    cfg.host = '127.0.0.1';
    if (!cfg.portGiven) cfg.port = 8765;
    return cfg;
}

const cfg = parseArgs(process.argv.slice(2));

// The SDKs, loaded by era so each starts as fast as it can: the v1 package
// (@modelcontextprotocol/sdk) serves 2025 and older, the v2 one 2026-07-28.
const v1 = cfg.era === '2026' ? null : await Promise.all([
    import('@modelcontextprotocol/sdk/server/index.js'), import('@modelcontextprotocol/sdk/server/streamableHttp.js'),
    import('@modelcontextprotocol/sdk/server/webStandardStreamableHttp.js'), import('@modelcontextprotocol/sdk/types.js'),
]).then(([a, b, c, types]) => ({ Server: a.Server, StreamableHTTPServerTransport: b.StreamableHTTPServerTransport, WebStandardStreamableHTTPServerTransport: c.WebStandardStreamableHTTPServerTransport, types }));
const SUPPORTED_PROTOCOL_VERSIONS = v1 ? v1.types.SUPPORTED_PROTOCOL_VERSIONS : [];
const V1_RESULT_SCHEMAS = v1 ? Object.fromEntries(RESULT_TYPES.map(t => [t, v1.types[`${t}Schema`]])) : null;
const log = msg => { if (!cfg.quiet) process.stderr.write(`[favcrm-sandbox] ${msg}\n`); };

let outboxDir = cfg.outbox, outboxIsTemp = false;
if (outboxDir) fs.mkdirSync(outboxDir, { recursive: true });
else { outboxDir = fs.mkdtempSync(path.join(os.tmpdir(), 'favcrm-outbox-')); outboxIsTemp = true; }
outboxDir = path.resolve(outboxDir);

const state = new State({ codeTtl: cfg.codeTtl, ratePerHour: cfg.ratePerHour, ratePerDay: cfg.ratePerDay, outboxDir });
const tools = buildTools(state);
const runtimeTools = new Set(); // names POST /_sandbox/tools added (reset removes them)
const mode = cfg.stateless ? 'stateless' : 'session';
// OAuth authorization server mode (lib/oauth.mjs): /mcp then needs a bearer (API key or access token).
const oauth = cfg.oauth || process.env.FAVCRM_SANDBOX_OAUTH === '1' ? createOAuth({ state, cfg, log: m => log(m) }) : null;
// The 2026-07-28 side (v2 package), loaded only when the era needs it.
const modern = cfg.era === '2025' ? null
    : (await import('./lib/modern.mjs')).createModern({ tools, state, cfg, onInputRequired }, {
        version: VERSION,
        legacyVersions: cfg.era === 'dual' ? SUPPORTED_PROTOCOL_VERSIONS : [],
        onerror: e => { if (process.env.FAVCRM_SANDBOX_DEBUG) log(`v2: ${e?.message || e}`); },
    });

// ---- bookkeeping --------------------------------------------------------------
const sessions = new Map();          // sessionId -> {transport, server, lastSeen}
const routed = new Map();            // server-request id we own -> {deliver(msg), owner}
const inflight = new Map();          // stateless: JSON(requestId) -> transport (cancel routing)
const statelessCaps = new Map();     // stateless: client key (ip, user-agent, credential) -> capabilities from its last initialize
let routedSeq = 0;
let faults = [];
let stats;
function resetStats() {
    stats = { requests: 0, by_method: {}, by_http_method: {}, last_headers: null, last_request: null, last_tool_name: null, last_tool_arguments: null, sessions_open: 0, sessions_created: 0, deleted_sessions: 0, session_lost: 0, cancelled: [], faults_applied: [], server_request_answers: [], last_server_request_answer: null, unauthorized: 0, connections: 0, connections_open: 0, input_required: 0, last_input_required: null };
}
resetStats();
const bump = (o, k) => { o[k] = (o[k] || 0) + 1; };
/** 2026 MRTR: a tools/call answered input_required (the client should retry with inputResponses). */
function onInputRequired(tool, result) {
    stats.input_required++;
    stats.last_input_required = { tool, keys: Object.keys(result.inputRequests || {}), requestState: result.requestState ?? null };
}

const isRequest = m => m && typeof m === 'object' && typeof m.method === 'string' && m.id !== undefined && m.id !== null;
const isNotification = m => m && typeof m === 'object' && typeof m.method === 'string' && (m.id === undefined);
const isResponse = m => m && typeof m === 'object' && m.method === undefined && m.id !== undefined && ('result' in m || 'error' in m);

// ---- the MCP server (one per session, or per request when stateless) ------------
function makeServer(kind, session) {
    const server = new v1.Server({ ...SERVER_INFO, version: VERSION }, { capabilities: capabilities(cfg.test), instructions: INSTRUCTIONS });
    const scope = session ? (session.scope ??= newScope()) : newScope();
    const unit = {
        kind, era: 'legacy', session, server, scope, resultSchemas: V1_RESULT_SCHEMAS,
        notifyUpdated: (uri, extra) => extra.sendNotification({ method: 'notifications/resources/updated', params: { uri } }).catch(() => {}),
        clientCapabilities: (extra, info) => server.getClientCapabilities() ?? (kind === 'stateless' ? statelessCaps.get(info.clientKey) : undefined),
    };
    registerV1(server, mcpHandlers({ tools, state, cfg }, unit), v1.types);
    server.onerror = () => { /* transport-level noise (client went away etc.) */ };
    return server;
}

async function newSession() {
    const entry = { transport: null, server: null, lastSeen: Date.now() };
    const transport = new v1.StreamableHTTPServerTransport({
        sessionIdGenerator: () => randomUUID(),
        enableJsonResponse: cfg.jsonResponse,
        eventStore: new MemoryEventStore(),
        retryInterval: 50,
        onsessioninitialized: sid => { sessions.set(sid, entry); stats.sessions_created++; },
        onsessionclosed: () => { stats.deleted_sessions++; },
    });
    transport.onclose = () => { if (transport.sessionId) sessions.delete(transport.sessionId); };
    entry.transport = transport;
    entry.server = makeServer('session', entry);
    await entry.server.connect(transport);
    return entry;
}

async function forgetSession(sid) {
    const e = sessions.get(sid);
    sessions.delete(sid);
    if (e) { try { await e.server.close(); } catch { /* already closed */ } }
}

function reapSessions() {
    const cutoff = Date.now() - 30 * 60e3;
    for (const [sid, e] of sessions) if (e.lastSeen < cutoff) forgetSession(sid);
    while (sessions.size > 2000) forgetSession(sessions.keys().next().value);
}

/** Stateless handling: a fresh Server + transport for this one HTTP request. */
async function handleStateless(req, res, body, msgs) {
    const transport = new v1.StreamableHTTPServerTransport({ sessionIdGenerator: undefined, enableJsonResponse: cfg.jsonResponse });
    const server = makeServer('stateless', null);
    const mine = [];
    // Server-to-client requests get globally unique ids so the client's answer
    // (a separate POST) can be routed back to this transport.
    const origSend = transport.send.bind(transport);
    transport.send = async (message, options) => {
        if (isRequest(message)) {
            const gid = `sbx-${++routedSeq}`;
            const localId = message.id;
            routed.set(gid, { deliver: m => transport.onmessage?.({ ...m, id: localId }) });
            mine.push(gid);
            message = { ...message, id: gid };
        }
        return origSend(message, options);
    };
    const reqIds = msgs.filter(isRequest).map(m => JSON.stringify(m.id));
    for (const k of reqIds) inflight.set(k, transport);
    res.on('close', () => {
        for (const k of reqIds) if (inflight.get(k) === transport) inflight.delete(k);
        for (const g of mine) routed.delete(g);
        transport.close().catch(() => {});
        server.close().catch(() => {});
    });
    await server.connect(transport);
    await transport.handleRequest(req, res, body);
}

/** Computes the real JSON-RPC response(s) for a body, without touching the socket (used by faults). */
async function computeResponse(body, req, authInfo) {
    const t = new v1.WebStandardStreamableHTTPServerTransport({ sessionIdGenerator: undefined, enableJsonResponse: true });
    const server = makeServer('stateless', null);
    await server.connect(t);
    try {
        const headers = { 'content-type': 'application/json', accept: 'application/json, text/event-stream' };
        const pv = req.headers['mcp-protocol-version'];
        if (pv && SUPPORTED_PROTOCOL_VERSIONS.includes(pv)) headers['mcp-protocol-version'] = pv;
        const r = await t.handleRequest(new Request('http://127.0.0.1/mcp', { method: 'POST', headers, body: JSON.stringify(body) }), { parsedBody: body, authInfo });
        const text = await r.text();
        return JSON.parse(text);
    } finally {
        await server.close().catch(() => {});
    }
}

function registerServerRequest(method, params, waitMs) {
    const gid = `sbx-${++routedSeq}`;
    let resolve;
    const answer = new Promise(r => { resolve = r; });
    const timer = setTimeout(() => { routed.delete(gid); resolve(null); }, waitMs);
    routed.set(gid, { deliver: m => { clearTimeout(timer); routed.delete(gid); stats.server_request_answers.push(m); stats.last_server_request_answer = m; resolve(m); } });
    return { message: { jsonrpc: '2.0', id: gid, method, params }, answer };
}

// ---- HTTP plumbing --------------------------------------------------------------
function sendJson(res, status, obj, headers = {}) {
    const body = JSON.stringify(obj);
    res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body), ...headers });
    res.end(body);
}

function readBody(req, limit) {
    return new Promise((resolve, reject) => {
        const chunks = [];
        let size = 0, over = false;
        req.on('data', c => { size += c.length; if (size > limit) over = true; else chunks.push(c); });
        req.on('end', () => resolve(over ? null : Buffer.concat(chunks)));
        req.on('error', reject);
    });
}

const isLoopback = a => a === '127.0.0.1' || a === '::1' || a === '::ffff:127.0.0.1';

function clientIp(req) {
    if (cfg.test && req.headers['x-forwarded-for']) return String(req.headers['x-forwarded-for']).split(',')[0].trim();
    return req.socket.remoteAddress || '127.0.0.1';
}

function bearer(req) {
    const h = req.headers.authorization;
    if (!h) return null;
    const m = /^Bearer\s+(\S+)\s*$/i.exec(h);
    return m ? m[1] : '';
}

function serverCard() {
    return {
        serverInfo: { ...SERVER_INFO, version: VERSION },
        protocolVersions: [...(modern ? modern.versions : []), ...(cfg.era === '2026' ? [] : SUPPORTED_PROTOCOL_VERSIONS)],
        transport: { type: 'streamable-http', endpoint: '/mcp', sessions: mode === 'session' && cfg.era !== '2026' },
        authentication: { type: 'bearer', prefix: 'fav_mcp_', noAuthTools: tools.list.filter(t => !t.auth).map(t => t.name) },
        tools: tools.list.map(t => ({ name: t.name, title: t.title, description: t.description, annotations: t.annotations, inputSchema: t.inputSchema })),
        capabilities: { ...capabilities(false) },
        resources: resourceListing(tools).map(({ uri, name, title, description, mimeType }) => ({ uri, name, title, description, mimeType })),
        resourceTemplates: TEMPLATES,
        prompts: PROMPTS,
    };
}

async function handleMcp(req, res) {
    stats.requests++;
    bump(stats.by_http_method, req.method);
    const hdrs = { ...req.headers };
    const authPresent = 'authorization' in hdrs;
    delete hdrs.authorization;
    stats.last_headers = { ...hdrs, authorization_present: authPresent };

    let body, rawBody = null, msgs = [];
    if (req.method === 'POST') {
        const raw = rawBody = await readBody(req, MAX_BODY);
        if (raw === null) return sendJson(res, 413, { jsonrpc: '2.0', error: { code: -32000, message: `Payload Too Large: request body exceeds ${MAX_BODY} bytes` }, id: null });
        try { body = JSON.parse(raw.toString('utf8')); } catch {
            bump(stats.by_method, '<invalid json>');
            return sendJson(res, 400, { jsonrpc: '2.0', error: { code: -32700, message: 'Parse error: Invalid JSON' }, id: null });
        }
        msgs = Array.isArray(body) ? body : [body];
        for (const m of msgs) {
            bump(stats.by_method, isResponse(m) ? '<response>' : (m && typeof m.method === 'string' ? m.method : '<invalid>'));
            if (m?.method === 'tools/call' && typeof m.params?.name === 'string') {
                bump(stats.by_method, `tools/call:${m.params.name}`);
                stats.last_tool_name = m.params.name;
                stats.last_tool_arguments = m.params.arguments ?? null;
            }
            if (m?.method === 'notifications/cancelled' && m.params) {
                stats.cancelled.push(m.params.requestId);
                if (mode === 'stateless') inflight.get(JSON.stringify(m.params.requestId))?.onmessage?.(m);
            }
        }
        stats.last_request = { http_method: 'POST', methods: msgs.map(m => m?.method ?? '<response>'), ids: msgs.map(m => m?.id ?? null) };
        // The client's answers to server requests we route ourselves (stateless mode, server_request fault).
        if (msgs.length && msgs.every(m => isResponse(m) && routed.has(String(m.id)))) {
            for (const m of msgs) routed.get(String(m.id)).deliver(m);
            res.writeHead(202, { 'content-length': 0 });
            return res.end();
        }
    } else {
        stats.last_request = { http_method: req.method, last_event_id: req.headers['last-event-id'] ?? null };
    }

    // Authentication: a tools/call of an authenticated tool needs a live key (HTTP 401 otherwise).
    const token = bearer(req);
    const auth = token ? (state.authenticate(token) ?? oauth?.authenticate(token) ?? null) : null;
    for (const m of msgs) {
        if (isRequest(m) && m.method === 'tools/call') {
            const t = tools.byName.get(m.params?.name);
            if (t && t.auth && !auth) {
                stats.unauthorized++;
                const message = token === null ? 'Unauthorized: missing bearer token; send "Authorization: Bearer fav_mcp_..."'
                    : 'Unauthorized: the API key is unknown or revoked';
                return sendJson(res, 401, { jsonrpc: '2.0', id: m.id, error: { code: -32001, message } }, { 'www-authenticate': 'Bearer realm="favcrm", error="invalid_token"' });
            }
        }
    }
    const authInfo = { token: auth ? 'fav_mcp_<redacted>' : '', clientId: 'favcrm-sandbox-client', scopes: auth ? ['mcp'] : [], extra: { auth, ip: clientIp(req) } };
    req.auth = authInfo;
    if (mode === 'stateless' || cfg.lenient) {
        // A stateless server has no session to remember capabilities in: keep them per client key.
        authInfo.extra.clientKey = `${clientIp(req)}|${req.headers['user-agent'] || ''}|${token ? sha256(token) : ''}`;
        for (const m of msgs) if (isRequest(m) && m.method === 'initialize') {
            statelessCaps.set(authInfo.extra.clientKey, m.params?.capabilities || {});
            if (statelessCaps.size > 1000) statelessCaps.delete(statelessCaps.keys().next().value);
        }
    }

    // 2026-07-28 traffic goes to the v2 package (era 2026: all of it, so it
    // can refuse initialize; dual: what the SDK classifies as modern).
    const modernReq = cfg.era === '2026' || (cfg.era === 'dual' && !(await modern.isLegacy(req, body)));

    // Fault injection (test mode): the next matching request-bearing POST.
    const first = msgs.find(isRequest);
    if (cfg.test && first && faults.length) {
        const idx = faults.findIndex(f => (!f.match_method || f.match_method === first.method) && (!f.match_tool || (first.method === 'tools/call' && first.params?.name === f.match_tool)));
        if (idx >= 0) {
            const f = faults[idx];
            if (--f.remaining <= 0) faults.splice(idx, 1);
            stats.faults_applied.push({ fault: f.fault, method: first.method, id: first.id });
            const compute = modernReq ? () => modern.compute(req, body, authInfo) : () => computeResponse(body, req, authInfo);
            return applyFault(f, { req, res, id: first.id, port: server.address().port, stats, forgetSession, registerServerRequest, compute });
        }
    }

    if (modernReq) {
        // 2026 has no notifications/cancelled over HTTP: a request whose
        // client closes the connection before the answer is cancelled.
        if (first) res.on('close', () => { if (!res.writableFinished) stats.cancelled.push(first.id); });
        return modern.serve(req, res, rawBody, body, authInfo);
    }
    if (mode === 'stateless') {
        if (req.method !== 'POST') {
            return sendJson(res, 405, { jsonrpc: '2.0', error: { code: -32000, message: 'Method not allowed.' }, id: null }, { allow: 'POST' });
        }
        return handleStateless(req, res, body, msgs);
    }

    const sid = req.headers['mcp-session-id'];
    if (sid) {
        const e = sessions.get(sid);
        if (!e) return sendJson(res, 404, { jsonrpc: '2.0', error: { code: -32001, message: 'Session not found' }, id: null });
        e.lastSeen = Date.now();
        return e.transport.handleRequest(req, res, body);
    }
    if (req.method === 'POST' && msgs.some(m => isRequest(m) && m.method === 'initialize')) {
        reapSessions();
        const e = await newSession();
        return e.transport.handleRequest(req, res, body);
    }
    if (cfg.lenient && req.method === 'POST') return handleStateless(req, res, body, msgs);
    if (req.method === 'POST' || req.method === 'GET' || req.method === 'DELETE') {
        return sendJson(res, 400, { jsonrpc: '2.0', error: { code: -32000, message: 'Bad Request: Mcp-Session-Id header is required' }, id: null });
    }
    return sendJson(res, 405, { jsonrpc: '2.0', error: { code: -32000, message: 'Method not allowed.' }, id: null }, { allow: 'GET, POST, DELETE' });
}

// ---- /_sandbox/ control endpoints (test mode, loopback only) ---------------------------
async function handleControl(req, res, url) {
    if (!cfg.test) return sendJson(res, 404, { error: 'not_found', message: 'control endpoints need --test' });
    if (!isLoopback(req.socket.remoteAddress)) return sendJson(res, 403, { error: 'forbidden', message: 'loopback only' });
    let input = {};
    if (req.method === 'POST') {
        const raw = await readBody(req, MAX_BODY);
        if (raw && raw.length) {
            try { input = JSON.parse(raw.toString('utf8')); } catch { return sendJson(res, 400, { error: 'invalid_json' }); }
        }
        if (input === null || typeof input !== 'object') input = {};
    }
    const route = `${req.method} ${url.pathname.replace(/\/+$/, '')}`;
    switch (route) {
        case 'GET /_sandbox/outbox': {
            const to = url.searchParams.get('to');
            const list = state.outbox.filter(m => !to || m.to.toLowerCase() === to.toLowerCase());
            return sendJson(res, 200, list.map(m => ({ file: m.file, to: m.to, subject: m.subject, code: m.code, date: m.date, body: m.body, kind: m.kind, ref: m.ref, messageId: m.messageId })));
        }
        case 'GET /_sandbox/clock':
            return sendJson(res, 200, { now: state.nowIso(), offset: state.clockOffsetMs / 1000 });
        case 'POST /_sandbox/clock': {
            if (typeof input.offset === 'number') state.clockOffsetMs = input.offset * 1000;
            if (typeof input.advance === 'number') state.clockOffsetMs += input.advance * 1000;
            if (typeof input.offset !== 'number' && typeof input.advance !== 'number') return sendJson(res, 400, { error: 'invalid_arguments', message: 'give {advance: seconds} or {offset: seconds}' });
            res.setHeader('Date', new Date(state.now()).toUTCString());
            return sendJson(res, 200, { now: state.nowIso(), offset: state.clockOffsetMs / 1000 });
        }
        case 'POST /_sandbox/revoke':
            return sendJson(res, 200, { revoked: state.revoke(input.apiKey) });
        case 'POST /_sandbox/tools': {
            // adds a tool at run time (answers {tool, arguments}); notify: true
            // sends notifications/tools/list_changed to every open session
            const name = input.name;
            if (typeof name !== 'string' || !/^[A-Za-z0-9_.-]{1,64}$/.test(name)) return sendJson(res, 400, { error: 'invalid_arguments', message: 'name required ([A-Za-z0-9_.-], at most 64)' });
            if (!tools.byName.has(name)) {
                const t = { name, title: name, description: input.description || `runtime tool ${name} (test mode)`, inputSchema: { type: 'object', properties: {} }, handler: async a => ({ tool: name, arguments: a }), auth: false, skipValidation: true, annotations: { readOnlyHint: true } };
                tools.list.push(t); tools.byName.set(name, t); tools.toolNames.add(name); runtimeTools.add(name);
            }
            let notified = 0;
            if (input.notify) {
                for (const e of sessions.values()) {
                    try { await e.server.sendToolListChanged(); notified++; } catch { /* no stream: dropped by the SDK */ }
                }
                if (modern) notified += modern.notifyToolsChanged(); // open subscriptions/listen streams
            }
            return sendJson(res, 200, { name, tools: tools.list.length, notified });
        }
        case 'POST /_sandbox/list_changed': {
            // notifications/{resources,prompts,tools}/list_changed to every
            // open session and subscriptions/listen stream (the lists stay as they are)
            const kind = input.kind;
            const send = { tools: 'sendToolListChanged', resources: 'sendResourceListChanged', prompts: 'sendPromptListChanged' }[kind];
            if (typeof kind !== 'string' || !send) return sendJson(res, 400, { error: 'invalid_arguments', message: 'kind must be tools, resources or prompts' });
            let notified = 0;
            for (const e of sessions.values()) {
                try { await e.server[send](); notified++; } catch { /* no stream: dropped by the SDK */ }
            }
            if (modern) notified += modern.notifyChanged(kind);
            return sendJson(res, 200, { kind, notified });
        }
        case 'POST /_sandbox/reset':
            for (const name of runtimeTools) {
                tools.byName.delete(name); tools.toolNames.delete(name);
                const i = tools.list.findIndex(t => t.name === name);
                if (i >= 0) tools.list.splice(i, 1);
            }
            runtimeTools.clear();
            state.reset();
            faults = [];
            resetStats();
            statelessCaps.clear();
            modern?.setCache(null);
            return sendJson(res, 200, { ok: true });
        case 'POST /_sandbox/cache': {
            // 2026-07-28 cache fields of list/read/discover results: {ttlMs, cacheScope?, methods?}
            if (!modern) return sendJson(res, 404, { error: 'not_found', message: 'cache hints need the 2026 era (--era 2026 or dual)' });
            const methods = input.methods ?? CACHEABLE;
            if (!Array.isArray(methods) || !methods.every(m => CACHEABLE.includes(m))) return sendJson(res, 400, { error: 'invalid_arguments', message: `methods must be a list of ${CACHEABLE.join(', ')}` });
            if (!Number.isSafeInteger(input.ttlMs) || input.ttlMs < 0) return sendJson(res, 400, { error: 'invalid_arguments', message: 'ttlMs (integer >= 0) required' });
            const scope = input.cacheScope ?? 'private';
            if (!['private', 'public'].includes(scope)) return sendJson(res, 400, { error: 'invalid_arguments', message: 'cacheScope must be private or public' });
            modern.setCache(Object.fromEntries(methods.map(m => [m, { ttlMs: input.ttlMs, cacheScope: scope }])));
            return sendJson(res, 200, { ttlMs: input.ttlMs, cacheScope: scope, methods });
        }
        case 'POST /_sandbox/accounts': {
            const email = input.email;
            if (typeof email !== 'string' || !email.includes('@')) return sendJson(res, 400, { error: 'invalid_arguments', message: 'email required' });
            if (state.hasAccount(email)) return sendJson(res, 409, { error: 'existing_account', message: 'an account already exists for this e-mail' });
            const { ws, user, apiKey } = state.createOwnerAccount({ email, organisationName: input.organisationName || 'Sandbox Studio', industry: input.industry || 'other', country: input.country || 'HK', timezone: input.timezone });
            if (input.plan) ws.plan = input.plan;
            if (input.whatsapp) ws.whatsapp = { connected: true, phoneNumber: '+85290000000' };
            return sendJson(res, 200, { apiKey, email, userId: user.userId, companyId: ws.companyId, organisationId: ws.organisationId, plan: ws.plan });
        }
        case 'POST /_sandbox/plan': {
            const a = state.authenticate(input.apiKey);
            if (!a) return sendJson(res, 404, { error: 'not_found', message: 'unknown apiKey' });
            if (input.plan) {
                if (!['free', 'starter', 'growth'].includes(input.plan)) return sendJson(res, 400, { error: 'invalid_arguments', message: 'plan must be free, starter or growth' });
                a.ws.plan = input.plan;
            }
            if (input.whatsapp !== undefined) a.ws.whatsapp = input.whatsapp ? { connected: true, phoneNumber: '+85290000000' } : { connected: false, phoneNumber: null };
            return sendJson(res, 200, { plan: a.ws.plan, whatsapp: a.ws.whatsapp });
        }
        case 'POST /_sandbox/drop_mail': {
            const to = input.email || input.to;
            if (typeof to !== 'string') return sendJson(res, 400, { error: 'invalid_arguments', message: 'email (or to) required' });
            const count = Number.isInteger(input.count) ? input.count : 1;
            if (count > 0) state.dropMail.set(to.toLowerCase(), count); else state.dropMail.delete(to.toLowerCase());
            return sendJson(res, 200, { email: to, count });
        }
        case 'POST /_sandbox/fault': {
            const f = { ...input };
            if (!FAULTS.has(f.fault)) return sendJson(res, 400, { error: 'invalid_arguments', message: `fault must be one of ${[...FAULTS].join(', ')}` });
            f.remaining = Number.isInteger(f.count) && f.count > 0 ? f.count : 1;
            faults.push(f);
            return sendJson(res, 200, { queued: faults.map(x => ({ fault: x.fault, remaining: x.remaining, match_method: x.match_method ?? null, match_tool: x.match_tool ?? null })) });
        }
        case 'GET /_sandbox/fault':
            return sendJson(res, 200, { queued: faults.map(x => ({ fault: x.fault, remaining: x.remaining, match_method: x.match_method ?? null, match_tool: x.match_tool ?? null })) });
        case 'DELETE /_sandbox/fault':
            faults = [];
            return sendJson(res, 200, { queued: [] });
        case 'GET /_sandbox/stats':
            return sendJson(res, 200, { ...stats, sessions_open: sessions.size, mode, era: cfg.era, faults_queued: faults.length });
        case 'POST /_sandbox/stats/reset':
            resetStats();
            return sendJson(res, 200, { ok: true });
        default:
            return sendJson(res, 404, { error: 'not_found', message: `no control endpoint ${route}` });
    }
}

const server = http.createServer(async (req, res) => {
    res.setHeader('Date', new Date(state.now()).toUTCString());
    const url = new URL(req.url, 'http://127.0.0.1');
    try {
        if (oauth && await oauth.handle(req, res, url, { sendJson, readJson: async r => { const b = await readBody(r, MAX_BODY); try { return b && b.length ? JSON.parse(b.toString('utf8')) ?? {} : {}; } catch { return null; } } })) return;
        if (url.pathname === '/mcp') return await (oauth ? oauth.guard(req, res, () => handleMcp(req, res)) : handleMcp(req, res));
        if (url.pathname.startsWith('/_sandbox/')) return await handleControl(req, res, url);
        if (url.pathname === '/.well-known/mcp/server-card.json' && (req.method === 'GET' || req.method === 'HEAD')) return sendJson(res, 200, serverCard(), { 'cache-control': 'no-cache' });
        if (url.pathname === '/healthz') return sendJson(res, 200, { ok: true, mode, era: cfg.era });
        return sendJson(res, 404, { error: 'not_found' });
    } catch (e) {
        log(`internal error on ${req.method} ${url.pathname}: ${e?.message || e}`);
        if (!res.headersSent) sendJson(res, 500, { jsonrpc: '2.0', error: { code: -32603, message: 'Internal error' }, id: null });
        else res.destroy();
    }
});
server.on('connection', sock => {
    const st = stats;
    st.connections++;
    st.connections_open++;
    sock.on('close', () => { st.connections_open--; });
});
server.keepAliveTimeout = 65000;
server.headersTimeout = 66000;
server.requestTimeout = 0;

server.on('error', e => { process.stderr.write(`favcrm-sandbox: ${e.message}\n`); process.exit(1); });
server.listen(cfg.port, cfg.host, () => {
    const { port } = server.address();
    process.stdout.write(`favcrm sandbox listening on http://127.0.0.1:${port}/mcp\nfavcrm sandbox outbox ${outboxDir}\n`);
    log(`era=${cfg.era} mode=${cfg.era === '2026' ? 'per-request (2026-07-28)' : mode}${cfg.jsonResponse ? ' json-response' : ''}${cfg.test ? ' test' : ''} tools=${tools.list.length} code-ttl=${cfg.codeTtl}s rate=${cfg.ratePerHour}/${cfg.ratePerDay}`);
});

let stopping = false;
async function shutdown() {
    if (stopping) return;
    stopping = true;
    for (const sid of [...sessions.keys()]) await forgetSession(sid);
    await modern?.close().catch(() => {});
    server.close();
    server.closeAllConnections();
    if (outboxIsTemp) { try { fs.rmSync(outboxDir, { recursive: true, force: true }); } catch { /* ignore */ } }
    process.exit(0);
}
process.on('SIGTERM', shutdown);
process.on('SIGINT', shutdown);

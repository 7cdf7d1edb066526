// MCP 2026-07-28 on the official v2 server package (@modelcontextprotocol/server):
// createMcpHandler with a per-request low-level Server carrying the same
// handlers as the 2025 era (lib/mcp.mjs). The SDK does the revision's
// transport work: the per-request `_meta` envelope, server/discover, the
// Mcp-Method / Mcp-Name / MCP-Protocol-Version header checks (-32020),
// -32021 for a missing client capability, -32022 for an unsupported
// version (also what `initialize` gets: legacy 'reject'), and
// subscriptions/listen streams fed by handler.notify. Loaded only when the
// era is 2026 or dual, so the 2025 sandbox starts as before.
import {
    createMcpHandler, isLegacyRequest, Server, CLIENT_CAPABILITIES_META_KEY, LOG_LEVEL_META_KEY, specTypeSchemas,
} from '@modelcontextprotocol/server';
import { mcpHandlers, capabilities, SERVER_INFO, INSTRUCTIONS, RESULT_TYPES } from './mcp.mjs';
import { newScope } from './resources.mjs';
import { rpcError } from './tools.mjs';
import { headerDeclarations, checkParamHeaders } from './headers.mjs';

/** The modern revisions the v2 package serves (its legacy list is the v1 server's business). */
export const MODERN_VERSIONS = ['2026-07-28'];

const LEVELS = ['debug', 'info', 'notice', 'warning', 'error', 'critical', 'alert', 'emergency'];

/**
 * Log messages are request-scoped in 2026-07-28: only when the request's
 * `_meta` names io.modelcontextprotocol/logLevel, and at or above it.
 */
function logAllowed(ctx, n) {
    if (n.method !== 'notifications/message') return true;
    const want = LEVELS.indexOf(ctx.mcpReq.envelope?.[LOG_LEVEL_META_KEY] ?? ctx.mcpReq._meta?.[LOG_LEVEL_META_KEY]);
    return want >= 0 && LEVELS.indexOf(n.params?.level) >= want;
}

/** The v2 handler context seen through the v1 `extra` shape the shared handlers use. */
function v1Extra(ctx) {
    const req = ctx.http?.req;
    return {
        _meta: ctx.mcpReq._meta,
        signal: ctx.mcpReq.signal,
        requestId: ctx.mcpReq.id,
        sendNotification: async n => { if (logAllowed(ctx, n)) await ctx.mcpReq.notify(n); },
        sendRequest: () => Promise.reject(rpcError(-32601, '2026-07-28 has no server-to-client requests: answer input_required')),
        authInfo: ctx.http?.authInfo,
        requestInfo: req ? { url: new URL(req.url), headers: Object.fromEntries(req.headers) } : undefined,
        envelope: ctx.mcpReq.envelope,
        inputResponses: ctx.mcpReq.inputResponses,
        requestState: ctx.mcpReq.requestState(),
    };
}

/**
 * deps: {tools, state, cfg}; opts: {version (the sandbox's), legacyVersions
 * (dual: the 2025 versions the v1 side serves, added to a -32022's
 * data.supported as the versioning page's dual-era example does), onerror}.
 * Returns {versions, serve(req, res, raw, parsedBody, authInfo),
 * compute(req, body, authInfo), isLegacy(req, parsedBody),
 * notifyToolsChanged() -> listeners, notifyChanged(kind) -> listeners,
 * setCache(hints), close()}.
 */
export function createModern(deps, { version, legacyVersions = [], onerror }) {
    let cacheHints; // {method: {ttlMs, cacheScope}}: POST /_sandbox/cache; the SDK's default is ttlMs 0, private
    const scope = newScope();
    const resultSchemas = Object.fromEntries(RESULT_TYPES.map(t => [t, specTypeSchemas[t]]));
    scope.subs.add('*'); // no sessions: every call is news to subscriptions/listen streams that asked for the URI
    let notify = null;
    const factory = () => {
        const server = new Server({ ...SERVER_INFO, version }, { capabilities: capabilities(deps.cfg.test), instructions: INSTRUCTIONS, ...(cacheHints && { cacheHints }) });
        const unit = {
            kind: 'modern', era: 'modern', session: null, server, scope, resultSchemas,
            notifyUpdated: async uri => notify?.resourceUpdated(uri),
            clientCapabilities: extra => extra.envelope?.[CLIENT_CAPABILITIES_META_KEY] ?? server.getClientCapabilities(),
        };
        for (const [method, fn] of Object.entries(mcpHandlers(deps, unit))) {
            server.setRequestHandler(method, (req, ctx) => fn(req.params ?? {}, v1Extra(ctx)));
        }
        server.onerror = () => { /* client went away etc. */ };
        return server;
    };
    const opts = { legacy: 'reject', onerror, keepAliveMs: 15000 };
    const warn = console.warn; // the SDK warns (stderr) that json mode drops notifications: that is the point of it
    console.warn = () => {};
    let handler, jsonHandler;
    try {
        handler = createMcpHandler(factory, { ...opts, responseMode: deps.cfg.jsonResponse ? 'json' : 'auto' });
        jsonHandler = createMcpHandler(factory, { ...opts, responseMode: 'json', bus: handler.bus });
    } finally { console.warn = warn; }
    notify = handler.notify;

    const toRequest = (req, raw, signal) => new Request(`http://127.0.0.1${req.url}`, {
        method: req.method,
        headers: Object.entries(req.headers).map(([k, v]) => [k, Array.isArray(v) ? v.join(', ') : String(v)]),
        body: req.method === 'POST' && raw ? raw : undefined,
        signal,
    });

    async function serve(req, res, raw, parsedBody, authInfo) {
        const bad = paramHeaderMismatch(req, parsedBody);
        if (bad) {
            const body = JSON.stringify({ jsonrpc: '2.0', id: parsedBody.id, error: { code: -32020, message: `Bad Request: the request headers and body disagree: ${bad}` } });
            res.writeHead(400, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) });
            return void res.end(body);
        }
        const ac = new AbortController();
        res.on('close', () => { if (!res.writableFinished) ac.abort(); });
        let response = await handler.fetch(toRequest(req, raw, ac.signal), { authInfo, parsedBody });
        if (legacyVersions.length && response.status === 400) response = await withLegacyVersions(response);
        const headers = {};
        response.headers.forEach((v, k) => { headers[k] = v; });
        res.writeHead(response.status, headers);
        if (!response.body) return void res.end();
        const reader = response.body.getReader();
        res.on('close', () => { reader.cancel().catch(() => {}); });
        try {
            for (;;) {
                const { done, value } = await reader.read();
                if (done || res.destroyed) break;
                if (!res.write(value)) await new Promise(r => { res.once('drain', r); res.once('close', r); });
            }
        } catch { /* the client went away */ }
        res.end();
    }

    /** tools/call of a tool with x-mcp-header parameters: the Mcp-Param-* check (null: fine). */
    function paramHeaderMismatch(req, msg) {
        if (req.method !== 'POST' || msg?.method !== 'tools/call') return null;
        const tool = deps.tools.byName.get(msg.params?.name);
        const decls = tool ? headerDeclarations(tool.inputSchema) : [];
        return decls.length ? checkParamHeaders(decls, msg.params?.arguments ?? {}, req.headers) : null;
    }

    /** Dual era: a -32022 names the 2025 versions too (the client may fall back to initialize). */
    async function withLegacyVersions(response) {
        const text = await response.text();
        let msg = null;
        try { msg = JSON.parse(text); } catch { /* not JSON: pass it on */ }
        const data = msg?.error?.code === -32022 ? msg.error.data : null;
        if (data && Array.isArray(data.supported)) {
            data.supported = [...new Set([...data.supported, ...legacyVersions])];
            return new Response(JSON.stringify(msg), { status: response.status, headers: { 'content-type': 'application/json' } });
        }
        return new Response(text, { status: response.status, headers: response.headers });
    }

    /** The real JSON-RPC response for a 2026 request, as one JSON body (faults use it). */
    async function compute(req, body, authInfo) {
        const raw = Buffer.from(JSON.stringify(body));
        const headers = { ...req.headers, 'content-length': String(raw.length), accept: 'application/json, text/event-stream' };
        const r = await jsonHandler.fetch(toRequest({ ...req, headers }, raw), { authInfo, parsedBody: body });
        return JSON.parse(await r.text());
    }

    return {
        versions: MODERN_VERSIONS,
        serve,
        compute,
        isLegacy: (req, parsedBody) => isLegacyRequest(toRequest(req, null), req.method === 'POST' ? parsedBody : undefined),
        notifyToolsChanged() { handler.notify.toolsChanged(); return handler.bus.listenerCount ?? 0; },
        /** kind: tools, resources or prompts: its list_changed to the subscriptions/listen streams. */
        notifyChanged(kind) { handler.notify[`${kind}Changed`](); return handler.bus.listenerCount ?? 0; },
        /** hints: {method: {ttlMs?, cacheScope?}} for the next requests (null: the SDK's defaults). */
        setCache(hints) { cacheHints = hints || undefined; },
        close: async () => { await handler.close(); await jsonHandler.close(); },
    };
}

// The sandbox's MCP surface, defined once for both protocol eras: the
// method handlers (tools, resources, prompts, completions) and the server
// identity. server.mjs registers them on the v1 SDK Server (2025 era) with
// registerV1; lib/modern.mjs registers the same handlers on the v2 SDK Server
// (2026-07-28). A handler is async (params, extra) -> result, where extra has
// the v1 SDK's shape ({_meta, signal, requestId, sendNotification,
// sendRequest, requestInfo, closeSSEStream?}); the v2 adapter builds that
// shape and adds {inputResponses, requestState, envelope} for MRTR.
import { callTool, toolListing, rpcError } from './tools.mjs';
import { CAPABILITIES as RESOURCE_CAPS, resourceHandlers, recordCall } from './resources.mjs';

export const SERVER_INFO = { name: 'favcrm-sandbox', title: 'FavCRM sandbox' };
export const INSTRUCTIONS = 'Local FavCRM-compatible sandbox. Register with register_organisation_request/verify, then send "Authorization: Bearer fav_mcp_..." with every other tool call. Ask query_favcrm_platform before guessing tool names.';

/** The results 2026-07-28 gives cache fields (ttlMs, cacheScope). */
export const CACHEABLE = ['tools/list', 'prompts/list', 'resources/list', 'resources/templates/list', 'resources/read', 'server/discover'];

/** The capabilities both eras declare (listChanged for tools, resources and prompts in test mode). */
export function capabilities(test) {
    const t = test === true;
    return {
        ...RESOURCE_CAPS, tools: { listChanged: t }, logging: {},
        resources: { ...RESOURCE_CAPS.resources, listChanged: t }, prompts: { ...RESOURCE_CAPS.prompts, listChanged: t },
    };
}

/**
 * The handlers for one SDK Server instance. deps: {tools, state, cfg,
 * onInputRequired(tool, result)?}; unit: {kind ('session' | 'stateless' | 'modern'), era
 * ('legacy' | 'modern'), session, server, scope (resources.newScope()),
 * notifyUpdated(uri, extra), clientCapabilities(extra, authExtra),
 * resultSchemas (RESULT_TYPES -> that SDK's schema, for answers from the client)}.
 */
export function mcpHandlers(deps, unit) {
    const { tools, state, cfg } = deps;
    const h = resourceHandlers(tools, unit.scope, unit.era);
    h['tools/list'] = async (params, extra) => {
        const all = tools.list.filter(t => unit.era === 'modern' || !t.modernOnly).map(toolListing);
        const q = Number(extra.requestInfo?.url?.searchParams?.get('page_size'));
        const pageSize = Number.isInteger(q) && q > 0 ? q : cfg.pageSize;
        if (!pageSize) return { tools: all };
        const start = params.cursor ? Number(Buffer.from(String(params.cursor), 'base64url').toString()) : 0;
        if (!Number.isInteger(start) || start < 0 || start > all.length) throw rpcError(-32602, 'Invalid cursor');
        const end = start + pageSize;
        const out = { tools: all.slice(start, end) };
        if (end < all.length) out.nextCursor = Buffer.from(String(end)).toString('base64url');
        return out;
    };
    h['tools/call'] = async (params, extra) => {
        const { name, arguments: args } = params;
        const info = extra.authInfo?.extra || {};
        const ctx = {
            state, mode: unit.kind, era: unit.era, session: unit.session, extra, server: unit.server, jsonResponse: cfg.jsonResponse,
            auth: info.auth || null, ip: info.ip || '127.0.0.1',
            clientCapabilities: () => unit.clientCapabilities(extra, info),
            resultSchemas: unit.resultSchemas,
        };
        const result = await callTool(tools, name, args, ctx);
        if (result === null) throw rpcError(-32602, `Tool ${name} not found`);
        if (result.resultType === 'input_required') deps.onInputRequired?.(name, result);
        else await recordCall(unit.scope, name, uri => unit.notifyUpdated(uri, extra));
        return result;
    };
    return h;
}

/** The client results the test tools check, by spec type name. */
export const RESULT_TYPES = ['ElicitResult', 'CreateMessageResult', 'ListRootsResult', 'EmptyResult'];

/** Registers the handlers on a v1 SDK (`@modelcontextprotocol/sdk`) Server. */
export function registerV1(server, handlers, types) {
    const schemas = {
        'tools/list': types.ListToolsRequestSchema, 'tools/call': types.CallToolRequestSchema,
        'resources/list': types.ListResourcesRequestSchema, 'resources/templates/list': types.ListResourceTemplatesRequestSchema,
        'resources/read': types.ReadResourceRequestSchema, 'resources/subscribe': types.SubscribeRequestSchema,
        'resources/unsubscribe': types.UnsubscribeRequestSchema, 'prompts/list': types.ListPromptsRequestSchema,
        'prompts/get': types.GetPromptRequestSchema, 'completion/complete': types.CompleteRequestSchema,
    };
    // The v1 SDK's McpError words messages "MCP error CODE: ..."; kept so the 2025 wire is as before.
    const v1Error = e => (Number.isSafeInteger(e?.code) && !(e instanceof types.McpError) ? new types.McpError(e.code, e.message, e.data) : e);
    for (const [method, fn] of Object.entries(handlers)) {
        server.setRequestHandler(schemas[method], (req, extra) => fn(req.params ?? {}, extra).catch(e => { throw v1Error(e); }));
    }
}

// The sandbox's resources, resource template, prompt and completion: what
// FavCRM's discovery card lists beside tools. Installed on each MCP Server
// by server.mjs (installResources).
//   favcrm://guide                      the platform guide (text/markdown)
//   favcrm://schemas/{tool}             a tool's published input schema (the
//                                       registration pair are listed as resources)
//   favcrm://session/activity           this session's tool calls; subscribable:
//                                       each later tools/call sends
//                                       notifications/resources/updated for it
//   prompt signup(industry, email?)     the signup conversation; industry completes
import {
    ListResourcesRequestSchema, ListResourceTemplatesRequestSchema, ReadResourceRequestSchema,
    SubscribeRequestSchema, UnsubscribeRequestSchema, ListPromptsRequestSchema, GetPromptRequestSchema,
    CompleteRequestSchema, McpError, ErrorCode,
} from '@modelcontextprotocol/sdk/types.js';
import { INDUSTRIES, PLATFORM_GUIDE } from './tools.mjs';

export const CAPABILITIES = {
    resources: { subscribe: true, listChanged: false },
    prompts: { listChanged: false },
    completions: {},
};

const SCHEMA_TOOLS = ['register_organisation_request', 'register_organisation_verify'];

export function resourceListing(tools) {
    return [
        { uri: 'favcrm://guide', name: 'guide', title: 'FavCRM platform guide', description: 'How FavCRM works: signup, services, bookings, contacts, billing.', mimeType: 'text/markdown' },
        ...SCHEMA_TOOLS.filter(n => tools.byName.has(n)).map(n => ({
            uri: `favcrm://schemas/${n}`, name: `${n} schema`, title: `${tools.byName.get(n).title} (input schema)`,
            description: `The published JSON Schema of ${n}'s arguments.`, mimeType: 'application/schema+json',
        })),
        { uri: 'favcrm://session/activity', name: 'session activity', title: 'This session\'s tool calls', description: 'The tools called in this MCP session; subscribe to hear of each new call.', mimeType: 'application/json' },
    ];
}

export const TEMPLATES = [
    { uriTemplate: 'favcrm://schemas/{tool}', name: 'tool schema', title: 'A tool\'s input schema', description: 'The published JSON Schema of any tool\'s arguments.', mimeType: 'application/schema+json' },
];

export const PROMPTS = [
    {
        name: 'signup', title: 'Sign up for FavCRM',
        description: 'The signup conversation: collect the business details, request the e-mailed code, verify it.',
        arguments: [
            { name: 'industry', description: `The business's industry (${INDUSTRIES.join(', ')})`, required: true },
            { name: 'email', description: "The owner's e-mail address, if known", required: false },
        ],
    },
];

function guideText() {
    return '# FavCRM platform guide\n\n' + PLATFORM_GUIDE.map(([, text, tools]) => `- ${text} (tools: ${tools.join(', ')})`).join('\n') + '\n';
}

/** Installs the handlers on one Server. activity(): this session's calls; */
export function installResources(server, tools, session) {
    const subs = new Set();
    const calls = [];
    server.setRequestHandler(ListResourcesRequestSchema, async () => ({ resources: resourceListing(tools) }));
    server.setRequestHandler(ListResourceTemplatesRequestSchema, async () => ({ resourceTemplates: TEMPLATES }));
    server.setRequestHandler(ReadResourceRequestSchema, async req => {
        const uri = String(req.params.uri);
        if (uri === 'favcrm://guide') return { contents: [{ uri, mimeType: 'text/markdown', text: guideText() }] };
        if (uri === 'favcrm://session/activity') return { contents: [{ uri, mimeType: 'application/json', text: JSON.stringify({ calls }) }] };
        const m = /^favcrm:\/\/schemas\/([A-Za-z0-9_]+)$/.exec(uri);
        if (m && tools.byName.has(m[1])) {
            return { contents: [{ uri, mimeType: 'application/schema+json', text: JSON.stringify(tools.byName.get(m[1]).inputSchema) }] };
        }
        throw new McpError(-32002, `Resource not found: ${uri}`, { uri });
    });
    server.setRequestHandler(SubscribeRequestSchema, async req => { subs.add(String(req.params.uri)); return {}; });
    server.setRequestHandler(UnsubscribeRequestSchema, async req => { subs.delete(String(req.params.uri)); return {}; });
    server.setRequestHandler(ListPromptsRequestSchema, async () => ({ prompts: PROMPTS }));
    server.setRequestHandler(GetPromptRequestSchema, async req => {
        if (req.params.name !== 'signup') throw new McpError(ErrorCode.InvalidParams, `Prompt ${req.params.name} not found`);
        const a = req.params.arguments || {};
        if (!a.industry) throw new McpError(ErrorCode.InvalidParams, 'Missing required argument: industry');
        if (!INDUSTRIES.includes(a.industry)) throw new McpError(ErrorCode.InvalidParams, `industry must be one of ${INDUSTRIES.join(', ')}`);
        const who = a.email ? ` The owner's e-mail is ${a.email}.` : ' Ask for the owner\'s e-mail address.';
        return {
            description: `Sign up a ${a.industry} business for FavCRM`,
            messages: [{
                role: 'user',
                content: {
                    type: 'text',
                    text: `Help me sign up my ${a.industry} business for FavCRM.${who} Ask for the business name, country and timezone, ` +
                        'call register_organisation_request, ask me for the 6-digit code from the e-mail, then call register_organisation_verify.',
                },
            }],
        };
    });
    server.setRequestHandler(CompleteRequestSchema, async req => {
        const { ref, argument } = req.params;
        const value = String(argument?.value ?? '').toLowerCase();
        let pool = [];
        if (ref?.type === 'ref/prompt' && ref.name === 'signup' && argument?.name === 'industry') pool = INDUSTRIES;
        else if (ref?.type === 'ref/resource' && ref.uri === 'favcrm://schemas/{tool}' && argument?.name === 'tool') pool = [...tools.byName.keys()];
        const values = pool.filter(v => v.toLowerCase().startsWith(value)).slice(0, 100);
        return { completion: { values, total: values.length, hasMore: false } };
    });
    return {
        /** After a tools/call: records it and tells a subscriber (on the call's own stream). */
        async called(name, extra) {
            calls.push(name);
            if (calls.length > 100) calls.shift();
            if (subs.has('favcrm://session/activity')) {
                await extra.sendNotification({ method: 'notifications/resources/updated', params: { uri: 'favcrm://session/activity' } }).catch(() => {});
            }
        },
    };
}

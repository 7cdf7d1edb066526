// The sandbox's resources, resource template, prompt and completion: what
// FavCRM's discovery card lists beside tools. Installed on each MCP Server
// on either SDK by lib/mcp.mjs (resourceHandlers).
//   favcrm://guide                      the platform guide (text/markdown)
//   favcrm://schemas/{tool}             a tool's published input schema (the
//                                       registration pair are listed as resources)
//   favcrm://session/activity           this session's tool calls; subscribable:
//                                       each later tools/call sends
//                                       notifications/resources/updated for it
//   prompt signup(industry, email?)     the signup conversation; industry completes
import { INDUSTRIES, PLATFORM_GUIDE, rpcError } from './tools.mjs';

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

/**
 * The resource, prompt and completion handlers, era-neutral: method ->
 * async (params, extra) -> result. scope {calls, subs} is what one session
 * (2025) or the whole server (2026, no sessions) remembers. era 'modern'
 * (2026-07-28) answers an unknown resource with -32602 and has no
 * resources/subscribe (subscriptions/listen replaces it); 'legacy' -32002.
 */
export function resourceHandlers(tools, scope, era) {
    const { subs, calls } = scope;
    const h = {
        'resources/list': async () => ({ resources: resourceListing(tools) }),
        'resources/templates/list': async () => ({ resourceTemplates: TEMPLATES }),
        'resources/read': async p => {
            const uri = String(p.uri);
            if (uri === 'favcrm://guide') return { contents: [{ uri, mimeType: 'text/markdown', text: guideText() }] };
            if (uri === 'favcrm://session/activity') return { contents: [{ uri, mimeType: 'application/json', text: JSON.stringify({ calls }) }] };
            const m = /^favcrm:\/\/schemas\/([A-Za-z0-9_]+)$/.exec(uri);
            if (m && tools.byName.has(m[1])) {
                return { contents: [{ uri, mimeType: 'application/schema+json', text: JSON.stringify(tools.byName.get(m[1]).inputSchema) }] };
            }
            throw rpcError(era === 'modern' ? -32602 : -32002, `Resource not found: ${uri}`, { uri });
        },
        'prompts/list': async () => ({ prompts: PROMPTS }),
        'prompts/get': async p => {
            if (p.name !== 'signup') throw rpcError(-32602, `Prompt ${p.name} not found`);
            const a = p.arguments || {};
            if (!a.industry) throw rpcError(-32602, 'Missing required argument: industry');
            if (!INDUSTRIES.includes(a.industry)) throw rpcError(-32602, `industry must be one of ${INDUSTRIES.join(', ')}`);
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
        },
        'completion/complete': async p => {
            const { ref, argument } = p;
            const value = String(argument?.value ?? '').toLowerCase();
            let pool = [];
            if (ref?.type === 'ref/prompt' && ref.name === 'signup' && argument?.name === 'industry') pool = INDUSTRIES;
            else if (ref?.type === 'ref/resource' && ref.uri === 'favcrm://schemas/{tool}' && argument?.name === 'tool') pool = [...tools.byName.keys()];
            const values = pool.filter(v => v.toLowerCase().startsWith(value)).slice(0, 100);
            return { completion: { values, total: values.length, hasMore: false } };
        },
    };
    if (era !== 'modern') {
        h['resources/subscribe'] = async p => { subs.add(String(p.uri)); return {}; };
        h['resources/unsubscribe'] = async p => { subs.delete(String(p.uri)); return {}; };
    }
    return h;
}

/** After a tools/call: records it in scope; notify(uri) tells subscribers. */
export async function recordCall(scope, name, notify) {
    scope.calls.push(name);
    if (scope.calls.length > 100) scope.calls.shift();
    if (scope.subs.has(ACTIVITY_URI) || scope.subs.has('*')) await notify(ACTIVITY_URI);
}

export const ACTIVITY_URI = 'favcrm://session/activity';
export const newScope = () => ({ subs: new Set(), calls: [] });

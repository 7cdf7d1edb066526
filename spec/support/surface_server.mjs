// An MCP server on the official TypeScript SDK for spec/surface_spec.lua:
// it sends every kind of message a server may send a client, while a call
// is open (on the call's stream) or while none is (over Streamable HTTP the
// standalone GET stream, over stdio a line between calls).
//   node spec/support/surface_server.mjs stdio
//   node spec/support/surface_server.mjs http   (prints "port N" on stdout)
// Tools:
//   send {kind, when}: kind is ping | log | progress | tools_changed |
//     resources_changed | prompts_changed | updated | elicit | elicit_url |
//     elicit_done (notifications/elicitation/complete of the last elicit_url) | sample | roots;
//     when "during": sent on the call's stream before its answer (a request's
//     answer awaited first); "idle": sent 200 ms after the answer, related to
//     no request. A progress "idle" goes out unrelated to the call (over HTTP:
//     on the standalone stream) while the call waits; then a ping on the same
//     stream, whose answer (the client read past the progress) ends the wait.
//   answers {}: what the client answered to the requests sent so far.
//   job {ms, poll, fail}: taskSupport "optional". Called plainly it answers
//     at once; as a task it is done (or failed: an isError result) after ms,
//     its pollInterval is poll, and half way it sends a progress notification
//     for the call's token; the result tells how many tasks/get it saw and
//     the ttl asked.
import http from 'node:http';
import path from 'node:path';
import { randomUUID } from 'node:crypto';
import { fileURLToPath, pathToFileURL } from 'node:url';

// what it sends "at idle" goes out this long after the call's answer (4x
// under valgrind, FAVCRM_SPEC_SLOWDOWN, where the client may read late)
const IDLE_MS = (Number(process.env.FAVCRM_SPEC_SLOWDOWN) > 1 ? 4 : 1) * 200;

const HERE = path.dirname(fileURLToPath(import.meta.url));
const SDK = path.join(HERE, '..', '..', 'sandbox', 'node_modules', '@modelcontextprotocol', 'sdk', 'dist', 'esm');
const load = p => import(pathToFileURL(path.join(SDK, ...p.split('/'))).href);
const { Server } = await load('server/index.js');
const { StdioServerTransport } = await load('server/stdio.js');
const { StreamableHTTPServerTransport } = await load('server/streamableHttp.js');
const T = await load('types.js');

const TOOLS = [
    { name: 'send', inputSchema: { type: 'object', properties: { kind: { type: 'string' }, when: { type: 'string' } } } },
    { name: 'answers', inputSchema: { type: 'object' } },
    { name: 'job', execution: { taskSupport: 'optional' }, inputSchema: { type: 'object',
        properties: { ms: { type: 'number' }, poll: { type: 'number' }, fail: { type: 'boolean' } } } },
];
const text = v => ({ content: [{ type: 'text', text: JSON.stringify(v) }] });

function makeServer() {
    const server = new Server({ name: 'surface', version: '1' }, {
        capabilities: {
            tools: { listChanged: true }, resources: { subscribe: true, listChanged: true },
            prompts: { listChanged: true }, logging: {},
            tasks: { cancel: {}, requests: { tools: { call: {} } } },
        },
    });
    const answers = [];
    let n = 0;
    let lastUrl = 'el-none'; // the id of the last URL elicitation (elicit_done completes it)
    server.setRequestHandler(T.ListToolsRequestSchema, async () => ({ tools: TOOLS }));
    server.setRequestHandler(T.ListResourcesRequestSchema, async () => ({ resources: [] }));
    server.setRequestHandler(T.ListPromptsRequestSchema, async () => ({ prompts: [] }));
    server.setRequestHandler(T.SubscribeRequestSchema, async () => ({}));
    server.setRequestHandler(T.UnsubscribeRequestSchema, async () => ({}));
    server.setRequestHandler(T.SetLevelRequestSchema, async () => ({}));

    // [method, params, result schema] of a request kind; the method of a notification kind
    function request(kind) {
        n++;
        switch (kind) {
            case 'ping': return ['ping', undefined, T.EmptyResultSchema];
            case 'elicit': return ['elicitation/create', { message: `elicit ${n}`,
                requestedSchema: { type: 'object', properties: { name: { type: 'string' } } } }, T.ElicitResultSchema];
            case 'elicit_url': lastUrl = `el-${n}`; return ['elicitation/create', { mode: 'url', message: `open ${n}`,
                url: `https://example.com/step/${n}`, elicitationId: lastUrl }, T.ElicitResultSchema];
            case 'sample': return ['sampling/createMessage', { maxTokens: 5,
                messages: [{ role: 'user', content: { type: 'text', text: `sample ${n}` } }] }, T.CreateMessageResultSchema];
            case 'roots': return ['roots/list', undefined, T.ListRootsResultSchema];
        }
    }
    function notification(kind) {
        switch (kind) {
            case 'log': return { method: 'notifications/message', params: { level: 'info', data: `log ${++n}` } };
            case 'tools_changed': return { method: 'notifications/tools/list_changed' };
            case 'resources_changed': return { method: 'notifications/resources/list_changed' };
            case 'prompts_changed': return { method: 'notifications/prompts/list_changed' };
            case 'elicit_done': return { method: 'notifications/elicitation/complete', params: { elicitationId: lastUrl } };
            case 'updated': return { method: 'notifications/resources/updated', params: { uri: 'surface://watched' } };
        }
    }
    async function ask(kind, send) {
        const [method, params, schema] = request(kind);
        try {
            const res = await send({ method, params }, schema);
            answers.push({ kind, ok: true, res });
        } catch (e) {
            answers.push({ kind, ok: false, error: String(e && e.message || e) });
        }
    }

    const jobs = new Map();
    const now = () => new Date().toISOString();
    const view = j => ({ taskId: j.id, status: j.status, ttl: j.ttl, createdAt: j.created, lastUpdatedAt: j.updated,
        pollInterval: j.poll });
    server.setRequestHandler(T.GetTaskRequestSchema, async req => {
        const j = jobs.get(req.params.taskId);
        if (!j) throw new T.McpError(T.ErrorCode.InvalidParams, 'no such task');
        j.polls++;
        return view(j);
    });
    server.setRequestHandler(T.GetTaskPayloadRequestSchema, async req => {
        const j = jobs.get(req.params.taskId);
        if (!j) throw new T.McpError(T.ErrorCode.InvalidParams, 'no such task');
        await j.over;
        return { ...text({ job: j.status, polls: j.polls, ttl: j.ttl }), isError: j.status !== 'completed',
            _meta: { 'io.modelcontextprotocol/related-task': { taskId: j.id } } };
    });
    server.setRequestHandler(T.CancelTaskRequestSchema, async req => {
        const j = jobs.get(req.params.taskId);
        if (!j || j.status !== 'working') throw new T.McpError(T.ErrorCode.InvalidParams, 'not cancellable');
        j.finish('cancelled');
        return view(j);
    });
    function startJob(a, task, token) {
        const j = { id: randomUUID(), status: 'working', ttl: task.ttl ?? null, created: now(), updated: now(),
            poll: a.poll ?? 1000, polls: 0 };
        j.over = new Promise(resolve => { j.finish = st => {
            if (j.status === 'working') { j.status = st; j.updated = now(); }
            resolve();
        }; });
        setTimeout(() => j.finish(a.fail ? 'failed' : 'completed'), a.ms ?? 100);
        // the call's progress token stays valid for the task's lifetime
        if (token !== undefined) setTimeout(() => server.notification({ method: 'notifications/progress',
            params: { progressToken: token, progress: 1, total: 2, message: 'half way' } }).catch(() => {}), (a.ms ?? 100) / 2);
        jobs.set(j.id, j);
        return { task: view(j) };
    }

    server.setRequestHandler(T.CallToolRequestSchema, async (req, extra) => {
        const a = req.params.arguments || {};
        if (req.params.name === 'job') {
            return req.params.task ? startJob(a, req.params.task, req.params._meta?.progressToken) : text({ job: 'direct' });
        }
        if (req.params.name === 'answers') return text(answers);
        if (req.params.name !== 'send') throw new T.McpError(T.ErrorCode.InvalidParams, `Tool ${req.params.name} not found`);
        const kind = a.kind, during = a.when === 'during';
        if (kind === 'progress') {
            const token = req.params._meta && req.params._meta.progressToken;
            const p = { method: 'notifications/progress', params: { progressToken: token, progress: 1, total: 2 } };
            if (during) await extra.sendNotification(p);
            else { await server.notification(p); await server.ping(); }
            return text({ sent: kind, token });
        }
        if (request(kind)) {
            if (during) await ask(kind, (r, s) => extra.sendRequest(r, s));
            else setTimeout(() => ask(kind, (r, s) => server.request(r, s)), IDLE_MS);
        } else {
            const note = notification(kind);
            if (!note) throw new T.McpError(T.ErrorCode.InvalidParams, `unknown kind ${kind}`);
            if (during) await extra.sendNotification(note);
            else setTimeout(() => server.notification(note).catch(() => {}), IDLE_MS);
        }
        return text({ sent: kind });
    });
    server.onerror = () => {};
    return server;
}

if (process.argv[2] === 'http') {
    const sessions = new Map();
    const httpServer = http.createServer(async (req, res) => {
        let body;
        if (req.method === 'POST') {
            const chunks = [];
            for await (const c of req) chunks.push(c);
            body = JSON.parse(Buffer.concat(chunks).toString('utf8'));
        }
        const sid = req.headers['mcp-session-id'];
        let transport = sid && sessions.get(sid);
        if (!transport) {
            if (sid || req.method !== 'POST') { res.writeHead(404).end(); return; }
            transport = new StreamableHTTPServerTransport({
                sessionIdGenerator: () => randomUUID(),
                onsessioninitialized: id => sessions.set(id, transport),
            });
            transport.onclose = () => { if (transport.sessionId) sessions.delete(transport.sessionId); };
            await makeServer().connect(transport);
        }
        await transport.handleRequest(req, res, body);
    });
    httpServer.listen(0, '127.0.0.1', () => process.stdout.write(`port ${httpServer.address().port}\n`));
    process.stdin.on('end', () => process.exit(0)); // ends with the spec that started it
    process.stdin.resume();
} else {
    await makeServer().connect(new StdioServerTransport());
}

// A scripted stdio MCP server for spec/list_changed_spec.lua: it sends the
// messages a server may write while no call is open (a ping request, a log
// notification, tools/list_changed), at idle or during a call.
//   tools/call "send" {kind: "ping"|"log"|"list_changed", when: "idle"|"during", add?: name}
//     during: the message is written before the answer; idle: 300 ms after it.
//     add: a tool of that name is added to tools/list first.
//   tools/call "answers": the ids of the client's answers to our pings.
import { createInterface } from 'node:readline';

const tools = [
    { name: 'send', inputSchema: { type: 'object' } },
    { name: 'answers', inputSchema: { type: 'object' } },
];
const answers = [];
let pings = 0;
const write = m => process.stdout.write(JSON.stringify(m) + '\n');
const text = v => ({ content: [{ type: 'text', text: JSON.stringify(v) }] });

function message(kind) {
    if (kind === 'ping') return { jsonrpc: '2.0', id: `srv-ping-${++pings}`, method: 'ping' };
    if (kind === 'log') return { jsonrpc: '2.0', method: 'notifications/message', params: { level: 'info', data: `log ${++pings}` } };
    return { jsonrpc: '2.0', method: 'notifications/tools/list_changed' };
}

createInterface({ input: process.stdin }).on('line', line => {
    let m;
    try { m = JSON.parse(line); } catch { return; }
    if (m.method === undefined && m.id !== undefined) { answers.push({ id: m.id, ok: m.result !== undefined }); return; }
    if (m.id === undefined) return; // notifications/initialized
    const reply = result => write({ jsonrpc: '2.0', id: m.id, result });
    switch (m.method) {
        case 'initialize':
            return reply({ protocolVersion: m.params.protocolVersion, capabilities: { tools: { listChanged: true }, logging: {} }, serverInfo: { name: 'idle', version: '1' } });
        case 'tools/list':
            return reply({ tools });
        case 'tools/call': {
            const a = m.params.arguments || {};
            if (m.params.name === 'answers') return reply(text(answers));
            if (m.params.name === 'send') {
                if (a.add && !tools.some(t => t.name === a.add)) tools.push({ name: a.add, inputSchema: { type: 'object' } });
                if (a.when === 'during') { write(message(a.kind)); return reply(text({ sent: a.kind })); }
                reply(text({ sent: a.kind }));
                setTimeout(() => write(message(a.kind)), 300);
                return;
            }
            if (tools.some(t => t.name === m.params.name)) return reply(text({ tool: m.params.name }));
            return write({ jsonrpc: '2.0', id: m.id, error: { code: -32602, message: `Tool ${m.params.name} not found` } });
        }
        default:
            return write({ jsonrpc: '2.0', id: m.id, error: { code: -32601, message: 'Method not found' } });
    }
});

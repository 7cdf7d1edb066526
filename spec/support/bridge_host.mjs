// What the two agent hosts that drive `favcrm mcp serve` over stdio share
// (spec/support/mcp_bridge_client.mjs on the v1 SDK, mcp_bridge_client_v2.mjs
// on the v2 client; mcp_stdio_client.mjs uses a few): their command line, the bridge's command, the host's
// answers to sampling and roots, the wire tap, the steps both know (wait,
// awaitNotification, a tool call's record) and the closing report.
//   import * as H from './bridge_host.mjs';
// A script passes in what differs: its SDK's Client and transport classes,
// how a request handler is keyed (a v1 schema or a v2 method name), its
// elicitation answer and the steps only it knows.
import path from 'node:path';
import fs from 'node:fs';
import readline from 'node:readline';
import { fileURLToPath, pathToFileURL } from 'node:url';

const HERE = path.dirname(fileURLToPath(import.meta.url));
export const TOP = path.resolve(HERE, '..', '..');

// import(sandboxModule(rel)): a file of the sandbox's npm packages (the one
// place the MCP SDKs are pinned: sandbox/package-lock.json)
export function sandboxModule(rel) {
    return pathToFileURL(path.join(TOP, 'sandbox', 'node_modules', rel)).href;
}

// -> { luaBin, plan, receivedFile, lines }: the command line
//   node SCRIPT LUA_BIN PLAN_JSON RECEIVED_FILE
// and stdin's lines (what the spec hands back to a {"wait": LABEL} step)
export function args() {
    const [luaBin, planJson, receivedFile] = process.argv.slice(2);
    return {
        luaBin, receivedFile, plan: JSON.parse(planJson),
        lines: readline.createInterface({ input: process.stdin })[Symbol.asyncIterator](),
    };
}

// outboxCode(to, ref) -> the newest code the sandbox (FAVCRM_MCP_URL) e-mailed
// to `to` for the request id ref (any, when ref is not given); polls the
// outbox, bounded (50 tries, 100 ms apart)
export async function outboxCode(to, ref) {
    const sandbox = (process.env.FAVCRM_MCP_URL || '').replace(/\/mcp$/, '');
    for (let i = 0; i < 50; i++) {
        const res = await fetch(`${sandbox}/_sandbox/outbox?to=${encodeURIComponent(to)}`);
        const mails = await res.json();
        const m = mails.filter(x => !ref || x.ref === ref).pop();
        if (m && m.code) return m.code;
        await new Promise(r => setTimeout(r, 100));
    }
    throw new Error(`no code e-mailed to ${to}`);
}

// the options of a StdioClientTransport running `favcrm mcp serve`
export function serveCommand(luaBin, plan) {
    return {
        command: luaBin,
        args: [path.join(TOP, 'bin', 'favcrm'), 'mcp', 'serve', ...(plan.serveArgs ?? [])],
        env: { ...process.env },
        stderr: 'pipe',
    };
}

// The host's answers to the bridge's sampling and roots requests (when the
// plan's capabilities name them); key(method) is what the SDK's
// setRequestHandler takes for that method.
export function answerSamplingAndRoots(client, caps, out, key) {
    if (caps.sampling) client.setRequestHandler(key('sampling/createMessage'), async req => {
        out.serverRequests.push({ method: 'sampling/createMessage' });
        const text = req.params.messages?.[0]?.content?.text ?? '';
        return { role: 'assistant', model: 'spec-model', content: { type: 'text', text: `sampled: ${text}` } };
    });
    if (caps.roots) client.setRequestHandler(key('roots/list'), async () => {
        out.serverRequests.push({ method: 'roots/list' });
        return { roots: [{ uri: 'file:///work/project', name: 'project' }] };
    });
}

// -> a handler factory noted(method): each notification it gets goes to
// out.notifications and wakes the awaitNotification steps
export function notifications(out, waiters) {
    return method => n => {
        out.notifications.push({ method, params: n.params ?? {} });
        for (const w of waiters.splice(0)) w();
    };
}

// Taps the wire: every message the bridge sends is written, one JSON a line,
// to the received file (fd); every message the host sends goes to out.sent.
// Before connect it sees the handshake too; after it, what follows.
export function tapWire(transport, out, fd) {
    const origSend = transport.send.bind(transport);
    transport.send = (m, o) => { out.sent.push(m); return origSend(m, o); };
    let onmsg = transport.onmessage;
    Object.defineProperty(transport, 'onmessage', {
        configurable: true,
        get() { return onmsg && (m => { fs.writeSync(fd, JSON.stringify(m) + '\n'); onmsg(m); }); },
        set(f) { onmsg = f; },
    });
}

// The steps both hosts know; -> true when it ran step (a wait or an
// awaitNotification), false for another kind.
//   {"wait": LABEL}: prints {"waiting": LABEL}, goes on when a line arrives
//     on stdin, keeps it as vars[LABEL]
//   {"awaitNotification": METHOD, "timeoutMs": N}: until the bridge sent one
//     (event-driven: woken by notifications(); N bounds the wait)
export async function commonStep(step, ctx) {
    const { out, lines, vars, waiters } = ctx;
    if (step.wait) {
        process.stdout.write(JSON.stringify({ waiting: step.wait }) + '\n');
        const r = await lines.next();
        if (r.done) throw new Error('stdin closed while waiting');
        vars[step.wait] = r.value;
        out.steps.push({ waited: step.wait });
        return true;
    }
    if (step.awaitNotification) {
        const until = Date.now() + (step.timeoutMs ?? 20000);
        while (!out.notifications.some(n => n.method === step.awaitNotification) && Date.now() < until) {
            await new Promise(r => { waiters.push(r); setTimeout(r, Math.max(0, until - Date.now())); });
        }
        out.steps.push({ awaited: step.awaitNotification,
            seen: out.notifications.some(n => n.method === step.awaitNotification) });
        return true;
    }
    return false;
}

// A tool call's step record; -> [record, the data to keep as the last one
// (or undefined)]. extra: fields the script adds (progress)
export function callRecord(step, r, extra) {
    const sc = r.structuredContent ?? null;
    const data = sc && typeof sc === 'object' && 'data' in sc ? sc.data : sc;
    return [{ call: step.call, isError: r.isError === true, structuredContent: sc,
        texts: (r.content ?? []).map(c => c.text ?? null), ...extra },
        data && typeof data === 'object' && !Array.isArray(data) ? data : undefined];
}

export const thrown = e => String(e && e.message || e);

// Runs body() (connect and the steps) with the bridge's stderr collected and
// the received file open; a throw is report.fatal. Then closes the client and
// prints the report, one JSON line, the last thing on stdout, and exits.
export async function run(client, transport, out, receivedFile, body) {
    const received = fs.openSync(receivedFile, 'a');
    let stderr = '';
    try {
        if (transport.stderr) transport.stderr.on('data', d => { stderr += d.toString(); });
        await body(received);
    } catch (e) {
        out.fatal = String(e && e.stack || e);
    }
    await client.close().catch(() => {});
    fs.closeSync(received);
    out.stderr = stderr;
    process.stdout.write(JSON.stringify({ report: out }) + '\n');
    process.exit(0);
}

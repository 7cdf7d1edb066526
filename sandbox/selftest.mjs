#!/usr/bin/env node
// Self-check of the sandbox with the official SDK clients.
// Era 2025: `server.mjs --test --port 0 --era 2025` (session mode, stateless
// mode, JSON mode) with the v1 Client (@modelcontextprotocol/sdk): the
// registration flow, error cases, test tools and a few faults. Eras 2026 and
// dual: the v2 Client (@modelcontextprotocol/client) on MCP 2026-07-28 (the
// envelope, server/discover, header checks, MRTR, subscriptions/listen,
// cancellation, faults, cache hints), and in dual the v1 Client beside it.
// Exits non-zero on any failure.
// Usage: node sandbox/selftest.mjs [-v] [--era 2025|2026|dual|all (default)]
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { ElicitRequestSchema, CreateMessageRequestSchema, ListRootsRequestSchema, LoggingMessageNotificationSchema } from '@modelcontextprotocol/sdk/types.js';
import { Client as Client2, StreamableHTTPClientTransport as HttpTransport2 } from '@modelcontextprotocol/client';

const HERE = path.dirname(fileURLToPath(import.meta.url));
const VERBOSE = process.argv.includes('-v');
const eraArg = process.argv.indexOf('--era') >= 0 ? process.argv[process.argv.indexOf('--era') + 1] : 'all';
if (!['2025', '2026', 'dual', 'all'].includes(eraArg)) { console.error('selftest: --era must be 2025, 2026, dual or all'); process.exit(2); }
let failures = 0, passes = 0;
const children = new Set();
process.on('exit', () => { for (const c of children) { try { c.kill('SIGKILL'); } catch { /* gone */ } } });

function check(cond, what, detail) {
    if (cond) { passes++; if (VERBOSE) console.log(`ok   ${what}`); }
    else { failures++; console.log(`FAIL ${what}${detail !== undefined ? ': ' + (typeof detail === 'string' ? detail : JSON.stringify(detail)) : ''}`); }
    return cond;
}

/** CPU time (user + system, ms) a process has used so far (Linux /proc), or null. */
function cpuMs(pid) {
    try {
        const f = fs.readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1].split(' ');
        return (Number(f[11]) + Number(f[12])) * 10; // utime, stime in USER_HZ (100)
    } catch { return null; }
}

async function startServer(args) {
    if (!args.includes('--era')) args = ['--era', '2025', ...args];
    const child = spawn(process.execPath, [path.join(HERE, 'server.mjs'), '--test', '--port', '0', '--quiet', ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
    children.add(child);
    child.on('exit', () => children.delete(child));
    let out = '', err = '';
    child.stderr.on('data', d => { err += d; });
    const t0 = Date.now();
    const lines = await new Promise((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error(`server did not start in 30 s: ${err}`)), 30000);
        child.stdout.on('data', d => {
            out += d;
            const ls = out.split('\n');
            if (ls.length >= 3) { clearTimeout(timer); resolve(ls); }
        });
        child.on('exit', code => { clearTimeout(timer); reject(new Error(`server exited ${code}: ${err}`)); });
    });
    const m = /^favcrm sandbox listening on (http:\/\/127\.0\.0\.1:\d+\/mcp)$/.exec(lines[0]);
    const o = /^favcrm sandbox outbox (.+)$/.exec(lines[1]);
    if (!m || !o) throw new Error(`bad banner: ${JSON.stringify(lines.slice(0, 2))}`);
    const startupMs = Date.now() - t0;
    const startupCpuMs = cpuMs(child.pid) ?? startupMs;
    const url = m[1];
    const base = url.replace(/\/mcp$/, '');
    const ctl = async (p, body, method) => {
        const r = await fetch(base + '/_sandbox/' + p, body === undefined && !method ? {} : { method: method || 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body ?? {}) });
        return r.json();
    };
    return { child, url, base, outbox: o[1], ctl, startupMs, startupCpuMs, stderr: () => err };
}

async function stopServer(s) {
    const exited = new Promise(r => s.child.on('exit', code => r(code)));
    s.child.kill('SIGTERM');
    return exited;
}

async function connect(url, { key, caps = {}, handlers = true } = {}) {
    const headers = key ? { Authorization: `Bearer ${key}` } : {};
    const transport = new StreamableHTTPClientTransport(new URL(url), { requestInit: { headers }, reconnectionOptions: { initialReconnectionDelay: 20, maxReconnectionDelay: 200, reconnectionDelayGrowFactor: 1.5, maxRetries: 5 } });
    const client = new Client({ name: 'favcrm-selftest', version: '1.0.0' }, { capabilities: caps });
    if (handlers) {
        if (caps.elicitation) client.setRequestHandler(ElicitRequestSchema, async req => ({ action: 'accept', content: { name: req.params.requestedSchema.properties.name.default, confirm: true, plan: 'starter' } }));
        if (caps.sampling) client.setRequestHandler(CreateMessageRequestSchema, async () => ({ role: 'assistant', content: { type: 'text', text: 'sampled!' }, model: 'selftest-model', stopReason: 'endTurn' }));
        if (caps.roots) client.setRequestHandler(ListRootsRequestSchema, async () => ({ roots: [{ uri: 'file:///tmp/selftest', name: 'selftest' }] }));
    }
    await client.connect(transport);
    return { client, transport };
}

const errOf = r => r?.structuredContent?.error;
const dataOf = r => r?.structuredContent?.data;

async function signup(s, client, email, name = 'Stretch + Breathe') {
    const r = await client.callTool({ name: 'register_organisation_request', arguments: { email, organisationName: name, industry: 'fitness', country: 'HK', timezone: 'Asia/Hong_Kong' } });
    return r;
}

async function codeFor(s, email) {
    const list = await s.ctl(`outbox?to=${encodeURIComponent(email)}`);
    const withCode = list.filter(m => m.code);
    return withCode.length ? withCode[withCode.length - 1].code : null;
}

async function rawPost(url, body, headers = {}) {
    return fetch(url, { method: 'POST', headers: { 'content-type': 'application/json', accept: 'application/json, text/event-stream', ...headers }, body: JSON.stringify(body) });
}

// ---------------------------------------------------------------------------------------
async function sessionSuite() {
    const s = await startServer([]);
    check(s.startupCpuMs < 1500, `startup fast (${s.startupCpuMs} ms CPU, ${s.startupMs} ms wall)`);
    try {
        const card = await (await fetch(s.base + '/.well-known/mcp/server-card.json')).json();
        check(card.serverInfo?.name === 'favcrm-sandbox' && Array.isArray(card.tools) && card.tools.length >= 30 && Array.isArray(card.resources) && Array.isArray(card.prompts), 'server card');

        const caps = { elicitation: { form: {} }, sampling: {}, roots: { listChanged: false } };
        const { client, transport } = await connect(s.url, { caps });
        check(typeof transport.sessionId === 'string' && transport.sessionId.length > 0, 'session id issued');
        const { tools } = await client.listTools();
        const names = new Set(tools.map(t => t.name));
        const testTools = tools.filter(t => t.name.startsWith('sandbox_'));
        check(tools.length - testTools.length >= 25 && testTools.length >= 8, `tool count (${tools.length}, ${testTools.length} test tools)`);
        const reg = tools.find(t => t.name === 'register_organisation_request');
        check(reg && JSON.stringify(reg.inputSchema.required) === '["organisationName","email"]' && reg.inputSchema.properties.email.pattern.startsWith('^(?!\\.)(?!.*\\.\\.)') && reg.inputSchema.properties.email.format === 'email' && reg.inputSchema.properties.industry.enum.length === 7 && reg.inputSchema.properties.country.minLength === 2 && reg.inputSchema.properties.country.maxLength === 2, 'registration input schema as published');
        check(tools.every(t => t.annotations && typeof t.annotations.title === 'string' && typeof t.annotations.readOnlyHint === 'boolean'), 'every tool annotated');
        check(tools.find(t => t.name === 'delete_service').annotations.destructiveHint === true && tools.find(t => t.name === 'list_services').annotations.readOnlyHint === true && tools.find(t => t.name === 'send_whatsapp_message').annotations.openWorldHint === true && tools.find(t => t.name === 'update_service').annotations.idempotentHint === true, 'annotation conventions');
        check(['list_services', 'get_plan_status', 'list_my_companies'].every(n => tools.find(t => t.name === n).outputSchema), 'outputSchemas present');
        check(!names.has('sandbox_headers') && !names.has('sandbox_bad_headers'), '2026-only test tools not listed to 2025 clients');
        for (const n of ['accept_team_invite_request', 'accept_team_invite_verify', 'create_team_member_invite', 'check_plan_operation', 'query_favcrm_platform']) check(names.has(n), `tool ${n} listed`);

        // --- registration happy path ---
        const email = 'you@example.com';
        const r1 = await signup(s, client, email);
        const d1 = dataOf(r1);
        check(!r1.isError && /^signup_req_[a-z0-9]+$/.test(d1?.requestId) && d1.maskedEmail === 'yo*@example.com' && /Z$/.test(d1.expiresAt) && typeof d1.instructions === 'string', 'register_organisation_request result', r1);
        check(JSON.stringify(JSON.parse(r1.content[0].text)) === JSON.stringify(d1), 'content[0].text mirrors structuredContent.data');
        const code = await codeFor(s, email);
        check(/^\d{6}$/.test(code || ''), 'code read from outbox');
        const files = fs.readdirSync(s.outbox).filter(f => f.endsWith('.eml'));
        const eml = files.length ? fs.readFileSync(path.join(s.outbox, files[0]), 'utf8') : '';
        check(/^From: .+\r\nTo: you@example.com\r\nSubject: .+\r\nDate: .+\r\nMessage-ID: <.+>\r\n/.test(eml) && eml.includes(code), 'outbox file is an RFC 5322 message with the code');

        const wrong = code === '000000' ? '111111' : '000000';
        const rw = await client.callTool({ name: 'register_organisation_verify', arguments: { requestId: d1.requestId, code: wrong } });
        check(rw.isError === true && errOf(rw)?.code === 'wrong_code' && errOf(rw)?.attemptsLeft === 4 && typeof rw.content[0].text === 'string', 'wrong code -> wrong_code attemptsLeft 4', rw);

        const rv = await client.callTool({ name: 'register_organisation_verify', arguments: { requestId: d1.requestId, code } });
        const v = dataOf(rv);
        check(!rv.isError && /^org_/.test(v?.organisationId) && /^co_/.test(v.companyId) && /^usr_/.test(v.userId) && /^fav_mcp_[A-Za-z0-9]{32}$/.test(v.apiKey) && v.loginUrl.startsWith('https://') && v.nextSteps, 'verify returns the workspace and key', rv);
        const again = await client.callTool({ name: 'register_organisation_verify', arguments: { requestId: d1.requestId, code } });
        check(errOf(again)?.code === 'expired_code', 'verify is once-only');
        check(!s.stderr().includes(v.apiKey) && !s.stderr().includes(code), 'no key or code in logs');

        // --- authenticated calls ---
        const key = v.apiKey;
        const a = await connect(s.url, { key });
        const ls = await a.client.callTool({ name: 'list_services', arguments: {} });
        check(!ls.isError && Array.isArray(dataOf(ls)) && dataOf(ls).length === 0 && ls.content[0].text === '[]', 'list_services on a fresh workspace is {data: []}', ls);
        const plan = await a.client.callTool({ name: 'get_plan_status', arguments: {} });
        check(dataOf(plan)?.plan === 'free', 'get_plan_status free');
        const me = await a.client.callTool({ name: 'list_my_companies', arguments: {} });
        check(dataOf(me)?.email === email && dataOf(me).userId === v.userId && dataOf(me).companies[0].companyId === v.companyId, 'list_my_companies');
        const wa = await a.client.callTool({ name: 'get_whatsapp_connection_status', arguments: {} });
        check(dataOf(wa)?.connected === false, 'whatsapp not connected');
        const svc = dataOf(await a.client.callTool({ name: 'create_service', arguments: { name: 'Yoga 60', durationMinutes: 60, price: 200 } }));
        check(/^svc_/.test(svc?.id) && svc.currency === 'HKD', 'create_service');
        const slots = dataOf(await a.client.callTool({ name: 'get_available_slots', arguments: { serviceId: svc.id, date: '2026-06-01' } }));
        check(Array.isArray(slots) && slots.length === 8, 'get_available_slots');
        const bk = dataOf(await a.client.callTool({ name: 'create_booking', arguments: { serviceId: svc.id, start: slots[0].start, customerName: 'Ada' } }));
        check(bk?.status === 'confirmed', 'create_booking');
        const clash = await a.client.callTool({ name: 'create_booking', arguments: { serviceId: svc.id, start: slots[0].start, customerName: 'Bob' } });
        check(errOf(clash)?.code === 'conflict', 'double booking -> conflict');
        const nf = await a.client.callTool({ name: 'get_service', arguments: { serviceId: 'svc_nope' } });
        check(errOf(nf)?.code === 'not_found', 'not_found');
        const ia = await a.client.callTool({ name: 'create_service', arguments: { name: 'X', durationMinutes: 'sixty' } });
        check(errOf(ia)?.code === 'invalid_arguments' && errOf(ia).path === '/durationMinutes', 'invalid_arguments with path', ia);
        const pr = await a.client.callTool({ name: 'send_whatsapp_message', arguments: { to: '+85291234567', text: 'hi' } });
        check(errOf(pr)?.code === 'plan_required' && errOf(pr).upgradeAction?.tool === 'create_plan_upgrade_link' && errOf(pr).upgradeAction.url, 'plan_required with upgradeAction', pr);
        const cpo = dataOf(await a.client.callTool({ name: 'check_plan_operation', arguments: { tool: 'create_campaign' } }));
        check(cpo?.allowed === false && cpo.upgradeAction?.tool === 'create_plan_upgrade_link', 'check_plan_operation gated');
        const cr = await a.client.callTool({ name: 'create_plan_upgrade_link', arguments: { plan: 'starter' } });
        check(errOf(cr)?.code === 'confirmation_required', 'confirmation_required');
        const cr2 = await a.client.callTool({ name: 'create_plan_upgrade_link', arguments: { plan: 'starter', confirm: true } });
        check(dataOf(cr2)?.url?.startsWith('https://'), 'upgrade link with confirm');

        // unknown tool -> JSON-RPC -32602
        try { await a.client.callTool({ name: 'no_such_tool', arguments: {} }); check(false, 'unknown tool rejected'); }
        catch (e) { check(e.code === -32602 && /no_such_tool/.test(e.message), 'unknown tool -> -32602', e.message); }

        // --- 401 ---
        const r401 = await rawPost(s.url, { jsonrpc: '2.0', id: 7, method: 'tools/call', params: { name: 'list_services', arguments: {} } }, { 'mcp-session-id': transport.sessionId, 'mcp-protocol-version': '2025-11-25' });
        const b401 = await r401.json();
        check(r401.status === 401 && r401.headers.get('www-authenticate') === 'Bearer realm="favcrm", error="invalid_token"' && b401.id === 7 && b401.error?.code === -32001 && b401.jsonrpc === '2.0', '401 without key', b401);
        try { await client.callTool({ name: 'list_services', arguments: {} }); check(false, 'SDK client sees 401'); }
        catch (e) { check(/401|Unauthorized/i.test(String(e?.code) + e?.message + e?.constructor?.name), 'SDK client sees 401', e.message); }
        const rev = await s.ctl('revoke', { apiKey: key });
        check(rev.revoked === true, 'revoke endpoint');
        const r401b = await rawPost(s.url, { jsonrpc: '2.0', id: 'x', method: 'tools/call', params: { name: 'list_services', arguments: {} } }, { authorization: `Bearer ${key}`, 'mcp-session-id': a.transport.sessionId });
        check(r401b.status === 401, 'revoked key -> 401');

        // --- team invite flow ---
        const acct = await s.ctl('accounts', { email: 'owner@example.com' });
        check(/^fav_mcp_/.test(acct.apiKey), '/_sandbox/accounts gives a key');
        const o = await connect(s.url, { key: acct.apiKey });
        const inv = dataOf(await o.client.callTool({ name: 'create_team_member_invite', arguments: { email: 'staff@example.com', name: 'Sam' } }));
        check(/^inv_/.test(inv?.inviteToken) && inv.role === 'staff', 'create_team_member_invite');
        const ir = await client.callTool({ name: 'accept_team_invite_request', arguments: { token: inv.inviteToken } });
        check(!ir.isError && dataOf(ir).maskedEmail === 'st*@example.com', 'accept_team_invite_request', ir);
        const icode = await codeFor(s, 'staff@example.com');
        const iv = dataOf(await client.callTool({ name: 'accept_team_invite_verify', arguments: { token: inv.inviteToken, code: icode } }));
        check(/^fav_mcp_/.test(iv?.apiKey) && iv.role === 'staff' && /^usr_/.test(iv.userId), 'accept_team_invite_verify');

        // --- error codes: expired, rate limit, existing account ---
        await s.ctl('reset', {});
        const e1 = dataOf(await signup(s, client, 'late@example.com'));
        const before = Date.parse((await fetch(s.base + '/_sandbox/clock')).headers.get('date'));
        await s.ctl('clock', { advance: 601 });
        const after = Date.parse((await fetch(s.base + '/_sandbox/clock')).headers.get('date'));
        check(after - before >= 600e3, 'Date header follows the sandbox clock');
        const ex = await client.callTool({ name: 'register_organisation_verify', arguments: { requestId: e1.requestId, code: await codeFor(s, 'late@example.com') } });
        check(errOf(ex)?.code === 'expired_code', 'expired code after advancing the clock', ex);

        await s.ctl('reset', {});
        let last;
        for (let k = 0; k < 3; k++) { last = await signup(s, client, `rl${k}@example.com`); check(!last.isError, `rate window request ${k + 1}`); }
        last = await signup(s, client, 'rl3@example.com');
        check(errOf(last)?.code === 'rate_limited' && errOf(last).retryAfter > 3000 && last.structuredContent.retryAfter === errOf(last).retryAfter, 'rate limited after 3 requests', last);
        await s.ctl('clock', { advance: 3601 });
        check(!(await signup(s, client, 'rl4@example.com')).isError, 'rate window slides');

        await s.ctl('reset', {});
        await s.ctl('accounts', { email: 'taken@example.com' });
        const exa = await signup(s, client, 'taken@example.com');
        check(errOf(exa)?.code === 'existing_account', 'existing account', exa);
        const bad = await client.callTool({ name: 'register_organisation_request', arguments: { email: 'a..b@example.com', organisationName: 'Ok Name' } });
        check(errOf(bad)?.code === 'invalid_arguments' && errOf(bad).path === '/email' && errOf(bad).keyword === 'pattern', 'look-ahead email pattern enforced', bad);

        await s.ctl('reset', {});
        const dead = dataOf(await signup(s, client, 'five@example.com'));
        let rr;
        for (let k = 0; k < 5; k++) rr = await client.callTool({ name: 'register_organisation_verify', arguments: { requestId: dead.requestId, code: '999999' === (await codeFor(s, 'five@example.com')) ? '888888' : '999999' } });
        check(errOf(rr)?.code === 'wrong_code' && errOf(rr).attemptsLeft === 0, 'fifth wrong code: attemptsLeft 0');
        rr = await client.callTool({ name: 'register_organisation_verify', arguments: { requestId: dead.requestId, code: await codeFor(s, 'five@example.com') } });
        check(errOf(rr)?.code === 'expired_code' && errOf(rr).reason === 'too_many_attempts', 'request dead after 5 wrong codes');

        await s.ctl('drop_mail', { email: 'lost@example.com', count: 1 });
        check(!(await signup(s, client, 'lost@example.com')).isError && (await codeFor(s, 'lost@example.com')) === null, 'drop_mail swallows the e-mail');

        // --- test tools ---
        const progress = [];
        const logs = [];
        client.setNotificationHandler(LoggingMessageNotificationSchema, n => { logs.push(n.params); });
        const pg = await client.callTool({ name: 'sandbox_progress', arguments: { steps: 3, delay_ms: 5 } }, undefined, { onprogress: p => progress.push(p) });
        check(dataOf(pg)?.steps === 3 && progress.length === 3 && progress[2].progress === 3 && logs.length >= 1, 'sandbox_progress notifications', { progress, logs });
        const el = dataOf(await client.callTool({ name: 'sandbox_elicit', arguments: { message: 'Your name?' } }));
        check(el?.action === 'accept' && el.content?.name === 'Ada', 'sandbox_elicit', el);
        const sm = dataOf(await client.callTool({ name: 'sandbox_sample', arguments: { prompt: 'hi' } }));
        check(sm?.content?.text === 'sampled!', 'sandbox_sample', sm);
        const rt = dataOf(await client.callTool({ name: 'sandbox_roots', arguments: {} }));
        check(rt?.roots?.[0]?.uri === 'file:///tmp/selftest', 'sandbox_roots', rt);
        const pi = dataOf(await client.callTool({ name: 'sandbox_ping', arguments: {} }));
        check(pi?.pong === true, 'sandbox_ping');
        const ec = dataOf(await client.callTool({ name: 'sandbox_echo', arguments: { value: { a: [1, 'two', null] } } }));
        check(JSON.stringify(ec) === '{"a":[1,"two",null]}', 'sandbox_echo');
        const plain = await connect(s.url, {});
        const eu = await plain.client.callTool({ name: 'sandbox_elicit', arguments: { message: 'x' } });
        check(errOf(eu)?.code === 'elicitation_unsupported', 'elicitation_unsupported without the capability', eu);
        const rs = await client.callTool({ name: 'sandbox_resume', arguments: { delay_ms: 30 } });
        check(dataOf(rs)?.resumed === true, 'sandbox_resume delivered after GET + Last-Event-ID', rs);
        const statsR = await s.ctl('stats');
        check(statsR.by_http_method.GET >= 1, 'a resume GET arrived');
        const ac = new AbortController();
        const slow = client.callTool({ name: 'sandbox_slow', arguments: { ms: 5000 } }, undefined, { signal: ac.signal });
        setTimeout(() => ac.abort('selftest cancel'), 100);
        try { await slow; check(false, 'sandbox_slow cancelled'); } catch { check(true, 'sandbox_slow cancelled'); }
        await new Promise(r => setTimeout(r, 100));
        const st = await s.ctl('stats');
        check(st.cancelled.length === 1 && st.last_headers && st.last_headers.authorization_present === false && 'mcp-protocol-version' in st.last_headers, 'stats: cancel recorded, headers reported', st);

        // --- faults ---
        await s.ctl('fault', { fault: 'status', status: 503, retry_after: 7 });
        const f1 = await rawPost(s.url, { jsonrpc: '2.0', id: 1, method: 'tools/list' }, { 'mcp-session-id': transport.sessionId });
        check(f1.status === 503 && f1.headers.get('retry-after') === '7', 'fault status 503 + Retry-After');
        await s.ctl('fault', { fault: 'bad_content_type' });
        const f2 = await rawPost(s.url, { jsonrpc: '2.0', id: 1, method: 'tools/list' }, { 'mcp-session-id': transport.sessionId });
        check(f2.headers.get('content-type').startsWith('text/html'), 'fault bad_content_type');
        await s.ctl('fault', { fault: 'unknown_id' });
        const f3 = await (await rawPost(s.url, { jsonrpc: '2.0', id: 5, method: 'tools/list' }, { 'mcp-session-id': transport.sessionId })).json();
        check(f3.id === 1000005 && Array.isArray(f3.result?.tools), 'fault unknown_id', f3.id);
        await s.ctl('fault', { fault: 'duplicate_id' });
        const f4 = await (await rawPost(s.url, { jsonrpc: '2.0', id: 6, method: 'tools/call', params: { name: 'sandbox_echo', arguments: { value: 1 } } }, { 'mcp-session-id': transport.sessionId })).text();
        check((f4.match(/"id":6/g) || []).length === 2, 'fault duplicate_id');
        await s.ctl('fault', { fault: 'invalid_utf8' });
        const f5 = Buffer.from(await (await rawPost(s.url, { jsonrpc: '2.0', id: 8, method: 'tools/list' })).arrayBuffer());
        check(f5.includes(Buffer.from([0xff, 0xfe])), 'fault invalid_utf8');
        await s.ctl('fault', { fault: 'server_request', method: 'weird/method', match_method: 'tools/call' });
        const sr = await client.callTool({ name: 'sandbox_echo', arguments: { value: 'after-weird' } });
        const st2 = await s.ctl('stats');
        check(dataOf(sr) === 'after-weird' && st2.server_request_answers.length === 1 && st2.server_request_answers[0].error?.code === -32601, 'fault server_request answered by client then call completes', st2.server_request_answers);
        await s.ctl('fault', { fault: 'close_mid_headers' });
        let died = false;
        try { await rawPost(s.url, { jsonrpc: '2.0', id: 9, method: 'tools/list' }); } catch { died = true; }
        check(died, 'fault close_mid_headers');
        await s.ctl('fault', { fault: 'session_lost' });
        const f6 = await rawPost(s.url, { jsonrpc: '2.0', id: 10, method: 'tools/list' }, { 'mcp-session-id': plain.transport.sessionId });
        const f7 = await rawPost(s.url, { jsonrpc: '2.0', id: 11, method: 'tools/list' }, { 'mcp-session-id': plain.transport.sessionId, 'mcp-protocol-version': '2025-11-25' });
        check(f6.status === 404 && f7.status === 404, 'fault session_lost forgets the session');
        const f8 = await rawPost(s.url, { jsonrpc: '2.0', id: 12, method: 'tools/list' }, { 'mcp-session-id': 'no-such-session' });
        check(f8.status === 404, 'unknown session id -> 404');

        // --- DELETE ends the session ---
        await a.transport.terminateSession();
        const st3 = await s.ctl('stats');
        check(st3.deleted_sessions >= 1, 'DELETE ends the session');
        await client.close(); await a.client.close(); await o.client.close();
    } finally {
        const code = await stopServer(s);
        check(code === 0, 'clean exit on SIGTERM', code);
        check(!fs.existsSync(s.outbox), 'temp outbox removed at exit');
    }
}

async function statelessSuite(extra) {
    const label = extra.join(' ');
    const s = await startServer(extra);
    try {
        const caps = { elicitation: { form: {} } };
        const { client, transport } = await connect(s.url, { caps });
        check(transport.sessionId === undefined, `[${label}] no session id`);
        const { tools } = await client.listTools();
        check(tools.length >= 33, `[${label}] tools listed`);
        const d = dataOf(await signup(s, client, 'sl@example.com'));
        const v = dataOf(await client.callTool({ name: 'register_organisation_verify', arguments: { requestId: d.requestId, code: await codeFor(s, 'sl@example.com') } }));
        check(/^fav_mcp_/.test(v?.apiKey), `[${label}] signup + verify`);
        const a = await connect(s.url, { key: v.apiKey });
        const ls = await a.client.callTool({ name: 'list_services', arguments: {} });
        check(Array.isArray(dataOf(ls)) && dataOf(ls).length === 0, `[${label}] list_services empty`);
        const r = await rawPost(s.url, { jsonrpc: '2.0', id: 3, method: 'tools/call', params: { name: 'get_plan_status', arguments: {} } });
        check(r.status === 401, `[${label}] 401 without key`);
        const elr = await client.callTool({ name: 'sandbox_elicit', arguments: { message: 'name?' } }); const el = dataOf(elr);
        if (extra.includes('--json-response')) check(errOf(elr)?.code === 'sse_required', `[${label}] elicitation needs SSE`, elr);
        else check(el?.action === 'accept', `[${label}] elicitation routed`, elr);
        const pr = await rawPost(s.url, { jsonrpc: '2.0', id: 4, method: 'tools/list' });
        const ct = pr.headers.get('content-type');
        check(extra.includes('--json-response') ? ct.startsWith('application/json') : ct.startsWith('text/event-stream'), `[${label}] response framing ${ct}`);
        await client.close(); await a.client.close();
    } finally {
        check((await stopServer(s)) === 0, `[${label}] clean exit`);
    }
}

async function jsonSessionSuite() {
    const s = await startServer(['--json-response']);
    try {
        const { client, transport } = await connect(s.url, {});
        check(typeof transport.sessionId === 'string', '[json] session id');
        const r = await rawPost(s.url, { jsonrpc: '2.0', id: 4, method: 'tools/list' }, { 'mcp-session-id': transport.sessionId, 'mcp-protocol-version': '2025-11-25' });
        check(r.headers.get('content-type').startsWith('application/json') && (await r.json()).result.tools.length >= 33, '[json] plain JSON answer');
        const pg = await client.callTool({ name: 'sandbox_progress', arguments: { steps: 2 } });
        check(dataOf(pg)?.steps === 2, '[json] tool call');
        const e = await connect(s.url, { caps: { elicitation: { form: {} } } });
        await new Promise(r => setTimeout(r, 150)); // the SDK client opens its GET stream after initialized
        const el = await e.client.callTool({ name: 'sandbox_elicit', arguments: { message: 'json?' } });
        check(dataOf(el)?.action === 'accept', '[json] elicitation over the GET stream', el);
        await e.client.close();
        await client.close();
    } finally {
        check((await stopServer(s)) === 0, '[json] clean exit');
    }
}

// ---- MCP 2026-07-28 (v2 packages) ---------------------------------------------
const V26 = '2026-07-28';
const envelope = (caps = {}) => ({ 'io.modelcontextprotocol/protocolVersion': V26, 'io.modelcontextprotocol/clientCapabilities': caps, 'io.modelcontextprotocol/clientInfo': { name: 'favcrm-selftest', version: '1.0.0' } });
function post26(url, id, method, params = {}, { name, caps, headers = {}, signal } = {}) {
    const h = { 'mcp-protocol-version': V26, 'mcp-method': method, ...headers };
    if (name !== undefined) h['mcp-name'] = name;
    return fetch(url, { method: 'POST', signal, headers: { 'content-type': 'application/json', accept: 'application/json, text/event-stream', ...h }, body: JSON.stringify({ jsonrpc: '2.0', id, method, params: { ...params, _meta: { ...envelope(caps), ...(params._meta || {}) } } }) });
}
/** The JSON-RPC response in a JSON or SSE body (the last message with an id). */
async function rpcOf(r) {
    const text = await r.text();
    if (!(r.headers.get('content-type') || '').startsWith('text/event-stream')) return JSON.parse(text);
    const msgs = text.split('\n').filter(l => l.startsWith('data: ')).map(l => JSON.parse(l.slice(6)));
    return msgs.filter(m => m.id !== undefined).pop();
}
async function until(what, fn, ms = 5000) {
    const end = Date.now() + ms;
    for (;;) {
        const v = await fn();
        if (v) return v;
        if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
        await new Promise(r => setTimeout(r, 20)); // polling interval, not a synchronisation point
    }
}

async function connect26(url, { key, caps = {}, mode = { pin: V26 } } = {}) {
    const headers = key ? { Authorization: `Bearer ${key}` } : {};
    const client = new Client2({ name: 'favcrm-selftest', version: '1.0.0' }, { capabilities: caps, versionNegotiation: { mode } });
    if (caps.elicitation) client.setRequestHandler('elicitation/create', async req => ({ action: 'accept', content: { name: req.params.requestedSchema.properties.name.default, confirm: true, plan: 'starter' } }));
    if (caps.sampling) client.setRequestHandler('sampling/createMessage', async () => ({ role: 'assistant', content: { type: 'text', text: 'sampled!' }, model: 'selftest-model', stopReason: 'endTurn' }));
    if (caps.roots) client.setRequestHandler('roots/list', async () => ({ roots: [{ uri: 'file:///tmp/selftest', name: 'selftest' }] }));
    await client.connect(new HttpTransport2(new URL(url), { requestInit: { headers } }));
    return client;
}

async function modernSuite(era) {
    const L = `[${era}]`;
    const s = await startServer(['--era', era]);
    check(s.startupCpuMs < 1500, `${L} startup fast (${s.startupCpuMs} ms CPU, ${s.startupMs} ms wall)`);
    try {
        const health = await (await fetch(s.base + '/healthz')).json();
        check(health.era === era, `${L} healthz names the era`, health);
        const card = await (await fetch(s.base + '/.well-known/mcp/server-card.json')).json();
        check(card.protocolVersions[0] === V26 && (era === 'dual') === card.protocolVersions.includes('2025-11-25'), `${L} card protocolVersions`, card.protocolVersions);

        // server/discover, and what initialize gets
        const disc = await rpcOf(await post26(s.url, 1, 'server/discover'));
        check(disc.result?.supportedVersions?.includes(V26) && disc.result.capabilities?.tools && disc.result._meta?.['io.modelcontextprotocol/serverInfo']?.name === 'favcrm-sandbox', `${L} server/discover`, disc);
        const init = await rawPost(s.url, { jsonrpc: '2.0', id: 2, method: 'initialize', params: { protocolVersion: '2025-11-25', capabilities: {}, clientInfo: { name: 'x', version: '1' } } });
        if (era === '2026') {
            const j = await init.json();
            check(init.status === 400 && j.error?.code === -32022 && j.error.data?.supported?.join() === V26, `${L} initialize refused with -32022 naming ${V26}`, j);
        } else {
            check(init.status === 200 && !!init.headers.get('mcp-session-id'), `${L} initialize answered by the 2025 side (session id)`);
        }
        const bad = await rpcOf(await post26(s.url, 3, 'tools/list', { _meta: { 'io.modelcontextprotocol/protocolVersion': '1900-01-01' } }, { headers: { 'mcp-protocol-version': '1900-01-01' } }));
        check(bad.error?.code === -32022 && bad.error.data?.supported?.includes(V26) && (era === 'dual') === bad.error.data.supported.includes('2025-11-25'), `${L} unknown version -> -32022 with the supported list`, bad);
        const mism = await post26(s.url, 4, 'tools/call', { name: 'sandbox_echo', arguments: { value: 1 } }, { name: 'other' });
        const mj = await mism.json();
        check(mism.status === 400 && mj.error?.code === -32020, `${L} Mcp-Name mismatch -> 400 -32020`, mj);
        const nometh = await fetch(s.url, { method: 'POST', headers: { 'content-type': 'application/json', accept: 'application/json, text/event-stream', 'mcp-protocol-version': V26 }, body: JSON.stringify({ jsonrpc: '2.0', id: 5, method: 'tools/list', params: { _meta: envelope() } }) });
        check(nometh.status === 400, `${L} missing Mcp-Method -> 400`, nometh.status);
        const get = await fetch(s.url, { headers: { accept: 'text/event-stream', 'mcp-protocol-version': V26 } });
        check(era === '2026' ? get.status === 405 : get.status === 400, `${L} GET /mcp: ${era === '2026' ? '405 (no standalone stream in 2026)' : '400 without a session (the 2025 side)'}`, get.status);
        await get.body?.cancel();

        // the official v2 client: tools, signup, auth
        const caps = { elicitation: { form: {} }, sampling: {}, roots: {} };
        const client = await connect26(s.url, { caps, mode: era === 'dual' ? 'auto' : { pin: V26 } });
        check(client.getNegotiatedProtocolVersion() === V26, `${L} v2 client negotiated ${V26}`, client.getNegotiatedProtocolVersion());
        const warn = console.warn, warned = [];
        console.warn = (...a) => warned.push(a.join(' ')); // the client says which tool it drops
        const { tools } = await client.listTools().finally(() => { console.warn = warn; });
        check(tools.length >= 33 && tools.some(t => t.name === 'register_organisation_request'), `${L} tools listed (${tools.length})`);
        const rawList = await rpcOf(await post26(s.url, 19, 'tools/list'));
        check(rawList.result?.tools?.some(t => t.name === 'sandbox_bad_headers') && !tools.some(t => t.name === 'sandbox_bad_headers') && warned.some(w => w.includes('sandbox_bad_headers')), `${L} a tool with an invalid x-mcp-header is listed, and the v2 client drops it`, warned);
        const d = dataOf(await signup(s, client, 'm26@example.com'));
        const v = dataOf(await client.callTool({ name: 'register_organisation_verify', arguments: { requestId: d?.requestId, code: await codeFor(s, 'm26@example.com') } }));
        check(/^fav_mcp_/.test(v?.apiKey || ''), `${L} signup + verify`);
        const authed = await connect26(s.url, { key: v?.apiKey });
        const ls = await authed.callTool({ name: 'list_services', arguments: {} });
        check(Array.isArray(dataOf(ls)) && dataOf(ls).length === 0, `${L} list_services with the key`, ls);
        const r401 = await post26(s.url, 6, 'tools/call', { name: 'get_plan_status', arguments: {} }, { name: 'get_plan_status' });
        check(r401.status === 401, `${L} 401 without key`);

        // MRTR: the client fulfils input_required rounds through its handlers
        await s.ctl('stats/reset', {});
        const el = dataOf(await client.callTool({ name: 'sandbox_elicit', arguments: { message: 'name?' } }));
        check(el?.action === 'accept' && el.content?.name === 'Ada', `${L} elicitation by MRTR`, el);
        const sm = dataOf(await client.callTool({ name: 'sandbox_sample', arguments: { prompt: 'hi' } }));
        check(sm?.content?.text === 'sampled!', `${L} sampling by MRTR`, sm);
        const rt = dataOf(await client.callTool({ name: 'sandbox_roots', arguments: {} }));
        check(rt?.roots?.[0]?.uri === 'file:///tmp/selftest', `${L} roots by MRTR`, rt);
        const st = await s.ctl('stats');
        check(st.by_method['tools/call:sandbox_elicit'] === 2 && st.by_method['tools/call:sandbox_roots'] === 2 && st.era === era, `${L} two rounds per MRTR call`, st.by_method);
        check(st.input_required === 3 && st.last_input_required?.tool === 'sandbox_roots' && st.last_input_required.keys.join() === 'roots', `${L} stats count input_required answers`, { n: st.input_required, last: st.last_input_required });
        const r1 = await rpcOf(await post26(s.url, 7, 'tools/call', { name: 'sandbox_elicit', arguments: { message: 'x' } }, { name: 'sandbox_elicit', caps }));
        const ir = r1.result;
        check(ir?.resultType === 'input_required' && ir.inputRequests?.elicit?.method === 'elicitation/create' && typeof ir.requestState === 'string', `${L} raw first round: input_required`, r1);
        const r2 = await rpcOf(await post26(s.url, 8, 'tools/call', { name: 'sandbox_elicit', arguments: { message: 'x' }, inputResponses: { elicit: { action: 'decline' } }, requestState: 'tampered' }, { name: 'sandbox_elicit', caps }));
        check(errOf(r2.result)?.code === 'invalid_request_state', `${L} a changed requestState is refused`, r2);
        const r3 = await rpcOf(await post26(s.url, 9, 'tools/call', { name: 'sandbox_elicit', arguments: { message: 'x' }, inputResponses: { elicit: { action: 'decline' } }, requestState: ir?.requestState }, { name: 'sandbox_elicit', caps }));
        check(dataOf(r3.result)?.action === 'decline' && r3.result.resultType === 'complete', `${L} retry with inputResponses completes`, r3);
        const r4r = await post26(s.url, 10, 'tools/call', { name: 'sandbox_elicit', arguments: { message: 'x' } }, { name: 'sandbox_elicit' });
        const r4 = await rpcOf(r4r);
        check(r4r.status === 400 && r4.error?.code === -32021 && r4.error.data?.requiredCapabilities?.elicitation, `${L} no elicitation capability -> 400 -32021 requiredCapabilities, no inputRequests`, r4);
        // x-mcp-header parameters: Mcp-Param-* headers checked against the body
        check(tools.some(t => t.name === 'sandbox_headers'), `${L} sandbox_headers listed to 2026 clients`);
        const hargs = { region: 'Hello, 世界', priority: 3, dryRun: true, filter: { tag: 'a' }, query: 'q' };
        const hdrs = { 'mcp-param-region': `=?base64?${Buffer.from('Hello, 世界').toString('base64')}?=`, 'mcp-param-priority': '3', 'mcp-param-dryrun': 'true', 'mcp-param-tag': 'a' };
        const hok = await rpcOf(await post26(s.url, 20, 'tools/call', { name: 'sandbox_headers', arguments: hargs }, { name: 'sandbox_headers', headers: hdrs }));
        check(dataOf(hok.result)?.headers?.['mcp-param-priority'] === '3', `${L} matching Mcp-Param-* headers accepted`, hok);
        const hbad = await post26(s.url, 21, 'tools/call', { name: 'sandbox_headers', arguments: hargs }, { name: 'sandbox_headers', headers: { ...hdrs, 'mcp-param-priority': '4' } });
        const hbj = await hbad.json();
        check(hbad.status === 400 && hbj.error?.code === -32020, `${L} Mcp-Param-* mismatch -> 400 -32020`, hbj);
        const hmiss = await post26(s.url, 22, 'tools/call', { name: 'sandbox_headers', arguments: hargs }, { name: 'sandbox_headers', headers: Object.fromEntries(Object.entries(hdrs).filter(([k]) => k !== 'mcp-param-tag')) });
        check(hmiss.status === 400, `${L} missing Mcp-Param-* header -> 400`);
        await hmiss.body?.cancel();
        const viaClient = dataOf(await client.callTool({ name: 'sandbox_headers', arguments: { region: 'eu', dryRun: false } }));
        check(viaClient?.headers?.['mcp-param-region'] === 'eu' && viaClient.headers['mcp-param-dryrun'] === 'false', `${L} the v2 client sends Mcp-Param-* itself`, viaClient);

        const pg = await client.callTool({ name: 'sandbox_ping', arguments: {} });
        check(errOf(pg)?.code === 'unsupported_in_era', `${L} sandbox_ping: no server-to-client requests`, pg);

        // progress and logging on the request's own stream
        const seen = [];
        const pr = await client.callTool({ name: 'sandbox_progress', arguments: { steps: 3 } }, { onprogress: p => seen.push(p.progress) });
        check(dataOf(pr)?.steps === 3 && seen.join() === '1,2,3', `${L} progress notifications`, seen);
        const logs = async (id, level) => {
            const r = await post26(s.url, id, 'tools/call', { name: 'sandbox_progress', arguments: { steps: 1 }, _meta: level ? { 'io.modelcontextprotocol/logLevel': level } : {} }, { name: 'sandbox_progress' });
            return (await r.text()).split('\n').filter(l => l.includes('"notifications/message"')).length;
        };
        const [l0, lInfo, lErr] = [await logs(30), await logs(31, 'info'), await logs(32, 'error')];
        check(l0 === 0 && lInfo === 1 && lErr === 0, `${L} log messages only at or above the request's _meta logLevel`, { none: l0, info: lInfo, error: lErr });
        const nf = await rpcOf(await post26(s.url, 11, 'resources/read', { uri: 'favcrm://nope' }, { name: 'favcrm://nope' }));
        check(nf.error?.code === -32602, `${L} unknown resource -> -32602`, nf);
        const pgGet = await client.getPrompt({ name: 'signup', arguments: { industry: 'fitness' } });
        check(pgGet.messages?.[0]?.content?.text?.includes('fitness'), `${L} prompts/get`);

        // subscriptions/listen: tools list_changed and resource updates
        const heard = [];
        client.setNotificationHandler('notifications/tools/list_changed', () => { heard.push('tools'); });
        client.setNotificationHandler('notifications/resources/updated', n => { heard.push(n.params.uri); });
        const sub = await client.listen({ toolsListChanged: true, resourceSubscriptions: ['favcrm://session/activity'] });
        const added = await s.ctl('tools', { name: 'runtime_tool', notify: true });
        check(added.notified >= 1, `${L} /_sandbox/tools notifies listen streams`, added);
        await client.callTool({ name: 'sandbox_echo', arguments: { value: 1 } });
        await until('notifications on the listen stream', () => heard.includes('tools') && heard.includes('favcrm://session/activity'));
        check(true, `${L} list_changed and resources/updated on subscriptions/listen`);
        await sub.close();

        // cancellation: the client closes the request's stream
        await s.ctl('stats/reset', {});
        const ac = new AbortController();
        const slow = post26(s.url, 'slow-1', 'tools/call', { name: 'sandbox_slow', arguments: { ms: 30000 } }, { name: 'sandbox_slow', signal: ac.signal }).then(r => r.text()).catch(e => e.name);
        await until('the slow call to arrive', async () => (await s.ctl('stats')).by_method['tools/call:sandbox_slow'] === 1);
        ac.abort();
        await slow;
        const cs = await until('the cancel to be recorded', async () => { const x = await s.ctl('stats'); return x.cancelled.includes('slow-1') && x; });
        check(cs.cancelled.includes('slow-1'), `${L} a closed stream is recorded in stats.cancelled`);

        // faults compute the real 2026 response
        await s.ctl('fault', { fault: 'duplicate_id', sse: false, match_tool: 'sandbox_echo' });
        const dup = await (await post26(s.url, 12, 'tools/call', { name: 'sandbox_echo', arguments: { value: 'z' } }, { name: 'sandbox_echo' })).json();
        check(Array.isArray(dup) && dup.length === 2 && dup[0].result?.resultType === 'complete' && dup[0].result.structuredContent?.data === 'z', `${L} fault over the 2026 response`, dup);
        await s.ctl('fault', { fault: 'status', status: 503, match_method: 'tools/list' });
        check((await post26(s.url, 13, 'tools/list')).status === 503, `${L} status fault`);

        // cache hints
        const ch = await s.ctl('cache', { ttlMs: 60000, cacheScope: 'public', methods: ['tools/list'] });
        const tl = await rpcOf(await post26(s.url, 14, 'tools/list'));
        check(ch.ttlMs === 60000 && tl.result?.ttlMs === 60000 && tl.result.cacheScope === 'public', `${L} /_sandbox/cache sets ttlMs/cacheScope`, { ttlMs: tl.result?.ttlMs, cacheScope: tl.result?.cacheScope });
        await s.ctl('reset', {});
        const tl2 = await rpcOf(await post26(s.url, 15, 'tools/list'));
        check(tl2.result?.ttlMs === 0, `${L} reset clears cache hints`);

        if (era === 'dual') {
            // the 2025 side keeps sessions and server-to-client requests
            const old = await connect(s.url, { caps: { elicitation: { form: {} } } });
            check(typeof old.transport.sessionId === 'string', `${L} v1 client gets a session`);
            const oe = dataOf(await old.client.callTool({ name: 'sandbox_elicit', arguments: { message: 'old?' } }));
            check(oe?.action === 'accept', `${L} v1 elicitation as a server-to-client request`, oe);
            const op = await old.client.callTool({ name: 'sandbox_ping', arguments: {} });
            check(dataOf(op)?.pong === true, `${L} v1 sandbox_ping`, op);
            await old.client.close();
        }
        await client.close(); await authed.close();
    } finally {
        check((await stopServer(s)) === 0, `${L} clean exit`);
    }
}

const deadline = setTimeout(() => { console.log('FAIL selftest timed out'); process.exit(1); }, 300000);
try {
    if (eraArg === '2025' || eraArg === 'all') {
        await sessionSuite();
        await statelessSuite(['--stateless']);
        await statelessSuite(['--stateless', '--json-response']);
        await jsonSessionSuite();
    }
    if (eraArg === '2026' || eraArg === 'all') await modernSuite('2026');
    if (eraArg === 'dual' || eraArg === 'all') await modernSuite('dual');
    if (eraArg === '2026' || eraArg === 'all') {
        const s = await startServer(['--era', '2026', '--json-response']);
        try {
            const r = await post26(s.url, 1, 'tools/call', { name: 'sandbox_progress', arguments: { steps: 2 }, _meta: { progressToken: 'p', 'io.modelcontextprotocol/logLevel': 'debug' } }, { name: 'sandbox_progress' });
            const ct = r.headers.get('content-type') || '';
            const j = ct.startsWith('application/json') ? await r.json() : null;
            check(j?.result?.structuredContent?.data?.steps === 2, '[2026 json] one JSON body, notifications dropped', ct);
            check(!s.stderr().includes('responseMode'), '[2026 json] no SDK warning on stderr');
        } finally {
            check((await stopServer(s)) === 0, '[2026 json] clean exit');
        }
    }
} catch (e) {
    failures++;
    console.log(`FAIL exception: ${e?.stack || e}`);
}
clearTimeout(deadline);
console.log(`${failures ? 'FAILED' : 'PASSED'}: ${passes} checks passed, ${failures} failed`);
process.exit(failures ? 1 : 0);

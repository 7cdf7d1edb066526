// Fault injection for /mcp (test mode). Each fault answers one request-bearing
// POST instead of the normal handling. See README.md for the list.
export const FAULTS = new Set([
    'close_mid_headers', 'close_mid_body', 'drip', 'sse_truncated', 'sse_huge_event', 'huge_body',
    'invalid_json', 'unknown_id', 'duplicate_id', 'missing_jsonrpc', 'bad_content_type', 'status',
    'session_lost', 'redirect', 'server_request', 'invalid_utf8', 'server_request_flood', 'huge_headers',
    'silent',
]);

const MiB = 1024 * 1024;

function baseHeaders(req, extra = {}) {
    const h = { ...extra };
    const sid = req.headers['mcp-session-id'];
    if (sid) h['mcp-session-id'] = sid;
    return h;
}

async function writeChunked(res, totalBytes, prefix, suffix, fill = 'x') {
    // Writes prefix + fill*N + suffix (N so that the whole is totalBytes), honouring backpressure.
    const pad = Math.max(0, totalBytes - Buffer.byteLength(prefix) - Buffer.byteLength(suffix));
    const chunk = fill.repeat(64 * 1024);
    if (!res.write(prefix)) await drained(res);
    let left = pad;
    while (left > 0) {
        if (res.destroyed) return;
        const piece = left >= chunk.length ? chunk : chunk.slice(0, left);
        left -= piece.length;
        if (!res.write(piece)) await drained(res);
    }
    res.end(suffix);
}

function drained(res) {
    return new Promise(resolve => {
        const done = () => { res.off('drain', done); res.off('close', done); resolve(); };
        res.on('drain', done);
        res.on('close', done);
    });
}

const sseEvent = (obj, id) => `event: message\n${id ? `id: ${id}\n` : ''}data: ${typeof obj === 'string' ? obj : JSON.stringify(obj)}\n\n`;

/**
 * Applies fault f to the request. ctx: {req, res, id (JSON-RPC id of the first
 * request), compute() -> real JSON-RPC response(s), port, forgetSession(sid),
 * registerServerRequest(message) -> {id, answer: Promise}, stats}.
 */
export async function applyFault(f, ctx) {
    const { req, res, id } = ctx;
    const sock = req.socket;
    switch (f.fault) {
        case 'close_mid_headers': {
            sock.write('HTTP/1.1 200 OK\r\nContent-Type: applica');
            setTimeout(() => sock.destroy(), 10);
            return;
        }
        case 'close_mid_body': {
            const text = JSON.stringify(await ctx.compute());
            res.writeHead(200, baseHeaders(req, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) }));
            res.write(text.slice(0, Math.max(1, Math.floor(text.length / 2))));
            setTimeout(() => sock.destroy(), 20);
            return;
        }
        case 'drip': {
            const buf = Buffer.from(JSON.stringify(await ctx.compute()));
            const interval = f.interval_ms ?? 1000;
            const per = f.bytes_per_tick ?? 1;
            res.writeHead(200, baseHeaders(req, { 'content-type': 'application/json', 'content-length': buf.length }));
            let off = 0;
            await new Promise(resolve => {
                const tick = () => {
                    if (res.destroyed) return resolve();
                    res.write(buf.subarray(off, off + per));
                    off += per;
                    if (off >= buf.length) { res.end(); return resolve(); }
                    timer = setTimeout(tick, interval);
                };
                let timer = setTimeout(tick, 0);
                res.on('close', () => { clearTimeout(timer); resolve(); });
            });
            return;
        }
        case 'sse_truncated': {
            res.writeHead(200, baseHeaders(req, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache' }));
            res.write(sseEvent({ jsonrpc: '2.0', method: 'notifications/message', params: { level: 'info', logger: 'favcrm-sandbox', data: 'stream will end without a response' } }));
            // with event_id (and retry): the stream ends resumable, asking the client to wait retry ms
            if (f.event_id) res.write(`${f.retry !== undefined ? `retry: ${f.retry}\n` : ''}id: ${f.event_id}\ndata: \n\n`);
            res.end();
            return;
        }
        case 'silent': {
            // reads the request, never answers; the socket stays open until the client goes
            await new Promise(resolve => { res.on('close', resolve); sock.on('close', resolve); });
            return;
        }
        case 'sse_huge_event': {
            const bytes = f.bytes ?? 16 * MiB;
            res.writeHead(200, baseHeaders(req, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache' }));
            const prefix = `event: message\ndata: {"jsonrpc":"2.0","id":${JSON.stringify(id)},"result":{"content":[{"type":"text","text":"`;
            await writeChunked(res, bytes, prefix, '"}]}}\n\n');
            return;
        }
        case 'huge_body': {
            const bytes = f.bytes ?? 16 * MiB;
            const headers = { 'content-type': 'application/json' };
            if (!f.chunked) headers['content-length'] = bytes;
            res.writeHead(200, baseHeaders(req, headers));
            const prefix = `{"jsonrpc":"2.0","id":${JSON.stringify(id)},"result":{"content":[{"type":"text","text":"`;
            await writeChunked(res, bytes, prefix, '"}]}}');
            return;
        }
        case 'invalid_json':
            return send(res, req, f, `{"jsonrpc":"2.0","id":${JSON.stringify(id)},"result":{"content":[{"type":"text","text":"unterminated}`);
        case 'unknown_id': {
            const r = await ctx.compute();
            const one = Array.isArray(r) ? r[0] : r;
            one.id = typeof one.id === 'number' ? one.id + 1000000 : `${one.id}-unknown`;
            return send(res, req, f, JSON.stringify(one));
        }
        case 'missing_jsonrpc': {
            const r = await ctx.compute();
            const one = Array.isArray(r) ? r[0] : r;
            delete one.jsonrpc;
            return send(res, req, f, JSON.stringify(one));
        }
        case 'duplicate_id': {
            const r = await ctx.compute();
            const one = Array.isArray(r) ? r[0] : r;
            if (f.sse === false) return send(res, req, f, JSON.stringify([one, one]));
            res.writeHead(200, baseHeaders(req, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache' }));
            res.write(sseEvent(one));
            res.end(sseEvent(one));
            return;
        }
        case 'invalid_utf8': {
            const head = Buffer.from(`{"jsonrpc":"2.0","id":${JSON.stringify(id)},"result":{"content":[{"type":"text","text":"bad bytes: `);
            const bad = Buffer.from([0xff, 0xfe, 0xc3, 0x28, 0xa0, 0xa1]);
            const tail = Buffer.from('"}]}}');
            return send(res, req, f, Buffer.concat([head, bad, tail]));
        }
        case 'bad_content_type': {
            const html = '<!DOCTYPE html>\n<html><head><title>Welcome</title></head><body><h1>It works!</h1></body></html>\n';
            res.writeHead(200, { 'content-type': 'text/html; charset=utf-8', 'content-length': Buffer.byteLength(html) });
            res.end(html);
            return;
        }
        case 'status': {
            if (f.delay_ms) await new Promise(resolve => setTimeout(resolve, f.delay_ms));
            const status = f.status ?? 503;
            let body = f.body;
            let ctype = f.content_type;
            if (body === undefined) {
                body = JSON.stringify({ error: { code: status, message: `sandbox fault: HTTP ${status}` } });
                ctype = ctype || 'application/json';
            } else if (typeof body !== 'string') {
                body = JSON.stringify(body);
                ctype = ctype || 'application/json';
            }
            const headers = { 'content-type': ctype || 'text/plain; charset=utf-8', 'content-length': Buffer.byteLength(body) };
            if (f.retry_after !== undefined) headers['retry-after'] = String(f.retry_after);
            if (f.www_authenticate) headers['www-authenticate'] = f.www_authenticate;
            res.writeHead(status, headers);
            res.end(body);
            return;
        }
        case 'session_lost': {
            const sid = req.headers['mcp-session-id'];
            if (sid) await ctx.forgetSession(sid);
            ctx.stats.session_lost++;
            const body = JSON.stringify({ jsonrpc: '2.0', error: { code: -32001, message: 'Session not found' }, id: null });
            res.writeHead(404, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) });
            res.end(body);
            return;
        }
        case 'redirect': {
            const status = f.status ?? 307;
            const location = f.location ?? `http://127.0.0.1:${ctx.port}/mcp`;
            res.writeHead(status, { location, 'content-length': 0 });
            res.end();
            return;
        }
        case 'server_request': {
            res.writeHead(200, baseHeaders(req, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache' }));
            const { message, answer } = ctx.registerServerRequest(f.method ?? 'weird/method', f.params ?? {}, f.wait_ms ?? 10000);
            res.write(sseEvent(message));
            await answer; // resolves with the client's answer or null after wait_ms
            if (res.destroyed) return;
            const r = await ctx.compute();
            for (const one of Array.isArray(r) ? r : [r]) res.write(sseEvent(one));
            res.end();
            return;
        }
        case 'server_request_flood': {
            // `count` server requests in one answer stream, written as fast as
            // the socket takes them, then (if the client still listens after
            // wait_ms) the real response.
            res.writeHead(200, baseHeaders(req, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache' }));
            const count = f.count ?? 20000;
            const waitMs = f.wait_ms ?? 10000;
            let batch = '';
            for (let i = 0; i < count && !res.destroyed; i++) {
                batch += sseEvent(ctx.registerServerRequest(f.method ?? 'ping', f.params ?? {}, waitMs).message);
                if (batch.length >= 16384 || i === count - 1) {
                    const ok = res.write(batch);
                    batch = '';
                    if (!ok) await drained(res);
                }
            }
            if (res.destroyed) return;
            await new Promise(resolve => {
                const timer = setTimeout(resolve, waitMs);
                res.on('close', () => { clearTimeout(timer); resolve(); });
            });
            if (res.destroyed) return;
            const r = await ctx.compute();
            for (const one of Array.isArray(r) ? r : [r]) res.write(sseEvent(one));
            res.end();
            return;
        }
        case 'huge_headers': {
            // the real JSON response behind about `bytes` bytes of headers
            const bytes = f.bytes ?? 256 * 1024;
            const text = JSON.stringify(await ctx.compute());
            const headers = baseHeaders(req, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) });
            const value = 'x'.repeat(1000);
            for (let i = 0; i * 1010 < bytes; i++) headers[`x-junk-${i}`] = value;
            res.writeHead(200, headers);
            res.end(text);
            return;
        }
        default:
            throw new Error(`unknown fault ${f.fault}`);
    }
}

/** Sends a raw body as application/json, or as one SSE event when f.sse is true. */
function send(res, req, f, body) {
    const buf = Buffer.isBuffer(body) ? body : Buffer.from(body);
    if (f.sse) {
        const framed = Buffer.concat([Buffer.from('event: message\ndata: '), buf, Buffer.from('\n\n')]);
        res.writeHead(200, baseHeaders(req, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache' }));
        res.end(framed);
        return;
    }
    res.writeHead(200, baseHeaders(req, { 'content-type': 'application/json', 'content-length': buf.length }));
    res.end(buf);
}

// bench/ts_sdk.mjs: the official MCP TypeScript SDK client side of `make bench`.
//
//   node bench/ts_sdk.mjs seq N WARMUP        N sequential client.callTool
//   node bench/ts_sdk.mjs many N WARMUP CONC  N calls, CONC in flight
//
// Uses Client + StreamableHTTPClientTransport from the sandbox's lock file
// (sandbox/node_modules). Environment: FAVCRM_BENCH_URL, FAVCRM_BENCH_KEY
// (never argv), BENCH_T0_NS (CLOCK_MONOTONIC at spawn, from runstat). Like
// the favcrm client it lists the tools once (so results are checked against
// the outputSchema, as favcrm does). Prints one JSON line, the same shape as
// bench/libcurl_c.c.
import { Client } from '../sandbox/node_modules/@modelcontextprotocol/sdk/dist/esm/client/index.js';
import { StreamableHTTPClientTransport } from '../sandbox/node_modules/@modelcontextprotocol/sdk/dist/esm/client/streamableHttp.js';

const [mode = 'seq', nArg = '2000', warmArg = '200', concArg = '1'] = process.argv.slice(2);
const n = Number(nArg), warm = Number(warmArg), conc = Number(concArg);
const now = () => Number(process.hrtime.bigint()) / 1e9; // CLOCK_MONOTONIC on Linux
const t0 = process.env.BENCH_T0_NS ? Number(process.env.BENCH_T0_NS) / 1e9 : now();
const die = msg => { process.stderr.write(`bench/ts_sdk.mjs: ${msg}\n`); process.exit(1); };

const url = process.env.FAVCRM_BENCH_URL, key = process.env.FAVCRM_BENCH_KEY;
if (!url || !key) die('FAVCRM_BENCH_URL and FAVCRM_BENCH_KEY must be set');

const client = new Client({ name: 'ts-sdk-bench', version: '1.0.0' });
const transport = new StreamableHTTPClientTransport(new URL(url), {
    requestInit: { headers: { Authorization: `Bearer ${key}` } },
});
await client.connect(transport);
await client.listTools();

async function one() {
    const r = await client.callTool({ name: 'list_services', arguments: {} });
    if (r.isError) die(`list_services failed: ${JSON.stringify(r.content)}`);
    return r;
}

const first = await one();
if (!first.structuredContent) die('list_services answered without structuredContent');
const out = { client: 'ts_sdk', mode, n, startup_ms: (now() - t0) * 1e3 };
for (let i = 1; i < warm; i++) await one();

if (mode === 'seq') {
    const lat = new Float64Array(n);
    const c0 = process.cpuUsage();
    const ts = now();
    for (let i = 0; i < n; i++) {
        const a = now();
        await one();
        lat[i] = now() - a;
    }
    out.wall_s = now() - ts;
    const cu = process.cpuUsage(c0);
    out.loop_cpu_us = cu.user + cu.system;
    lat.sort();
    if (n > 0) {
        out.calls_per_s = n / out.wall_s;
        out.p50_ms = lat[Math.floor((n - 1) / 2)] * 1e3;
        out.p99_ms = lat[Math.floor((n - 1) * 0.99)] * 1e3;
    }
} else if (mode === 'many') {
    const c0 = process.cpuUsage();
    const ts = now();
    let next = 0;
    const worker = async () => { while (next < n) { next++; await one(); } };
    await Promise.all(Array.from({ length: conc }, worker));
    out.wall_s = now() - ts;
    const cu = process.cpuUsage(c0);
    out.loop_cpu_us = cu.user + cu.system;
    out.concurrency = conc;
    out.calls_per_s = n / out.wall_s;
} else {
    die('mode must be seq or many');
}
try { await transport.terminateSession(); } catch { /* 405 is fine */ }
await client.close();
process.stdout.write(JSON.stringify(out) + '\n');

// MCP 2026-07-28 custom headers (basic/transports/streamable-http, "Custom
// Headers"): tool parameters annotated `x-mcp-header` travel as
// Mcp-Param-{Name} too, plain or `=?base64?...?=`; the server checks them
// against the body. The v2 SDK does this only for its high-level McpServer,
// so the sandbox (a low-level Server) does it here, before the SDK runs.

/** [{path: [key, ...], name}] for the x-mcp-header annotations reachable by `properties` chains. */
export function headerDeclarations(schema, path = [], out = []) {
    const props = schema && typeof schema === 'object' ? schema.properties : null;
    if (!props || typeof props !== 'object') return out;
    for (const [key, sub] of Object.entries(props)) {
        if (!sub || typeof sub !== 'object') continue;
        if (typeof sub['x-mcp-header'] === 'string') out.push({ path: [...path, key], name: sub['x-mcp-header'] });
        headerDeclarations(sub, [...path, key], out);
    }
    return out;
}

function decode(v) {
    const m = /^=\?base64\?([A-Za-z0-9+/=]*)\?=$/.exec(v);
    return m ? Buffer.from(m[1], 'base64').toString('utf8') : v;
}

/** null when the Mcp-Param-* headers match args, else the mismatch message. */
export function checkParamHeaders(decls, args, headers) {
    for (const { path, name } of decls) {
        let v = args;
        for (const k of path) v = v !== null && typeof v === 'object' ? v[k] : undefined;
        const raw = headers[`mcp-param-${name.toLowerCase()}`];
        const hname = `Mcp-Param-${name}`;
        if (v === undefined || v === null) {
            if (raw !== undefined) return `${hname} is present but arguments.${path.join('.')} is not`;
            continue;
        }
        if (raw === undefined) return `${hname} is missing for arguments.${path.join('.')}`;
        if (/[\x00-\x1f\x7f]/.test(raw) || raw !== raw.trim()) return `${hname} carries characters a header value cannot (base64-wrap it)`;
        if (decode(raw) !== String(v)) return `${hname} says ${JSON.stringify(decode(raw))} but arguments.${path.join('.')} is ${JSON.stringify(v)}`;
    }
    return null;
}

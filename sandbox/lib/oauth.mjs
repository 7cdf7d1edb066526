// The sandbox's OAuth 2.1 authorization server mode (FAVCRM_SANDBOX_OAUTH=1 or
// --oauth), behaving as FavCRM's does: PKCE S256 only, dynamic client
// registration (RFC 7591), the client credentials grant, rotating refresh tokens (a reused one is refused
// and its family revoked), 15-minute access tokens and 30-day refresh tokens
// on the sandbox clock (/_sandbox/clock moves it), revocation (RFC 7009),
// protected-resource metadata (RFC 9728) and a 401 carrying
// `resource_metadata` on /mcp. Built on the v1 SDK's server-side auth
// support: mcpAuthRouter (metadata, /authorize, /token, /register, /revoke)
// and requireBearerAuth (the /mcp guard), with a provider of our own.
//
// In test mode an authorization is approved at once (302 to the redirect URI
// with code, state and iss); otherwise /authorize shows a consent page.
// Test-only controls: GET /_sandbox/oauth (counts), POST /_sandbox/oauth
// ({deny: n} refuses the next n authorizations, {email} picks the account
// that approves, {hold_token: true} holds every /token answer until
// {hold_token: false}, a reset or 30 s, {auth_methods: [...]} sets the metadata's
// token_endpoint_auth_methods_supported ([] or a reset: the SDK's)), GET /_sandbox/oauth/tokens (every token issued, client
// secret and code verifier seen, so specs can scan their output for them). POST /_sandbox/reset resets this too.
// Nothing here logs a token, a code, a verifier or a client secret.
import express from 'express';
import { mcpAuthRouter } from '@modelcontextprotocol/sdk/server/auth/router.js';
import { requireBearerAuth } from '@modelcontextprotocol/sdk/server/auth/middleware/bearerAuth.js';
import { InvalidGrantError, InvalidTokenError, InvalidTargetError, AccessDeniedError, InvalidRequestError } from '@modelcontextprotocol/sdk/server/auth/errors.js';
import { randomString, sha256 } from './state.mjs';

export const ACCESS_TTL = 15 * 60;          // seconds
export const REFRESH_TTL = 30 * 86400;      // seconds
const CODE_TTL = 10 * 60;                   // seconds an authorization code lives
const SCOPES = ['mcp', 'offline_access'];
const MAX_CLIENTS = 1000, MAX_TOKENS = 10000, MAX_PENDING = 1000;
const OWN_PATHS = ['/authorize', '/token', '/register', '/revoke', '/.well-known/oauth-authorization-server',
    '/.well-known/oauth-protected-resource', '/.well-known/oauth-protected-resource/mcp', '/_oauth/consent'];

const escapeHtml = s => String(s).replace(/[&<>"']/g, c => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c]);

// A Map that forgets its oldest entry beyond max (every store here is bounded).
function bounded(map, max) {
    while (map.size > max) map.delete(map.keys().next().value);
}

export function createOAuth({ state, cfg, log }) {
    let clients, codes, tokens, pending, counts, denyNext, email, issued, holdToken, authMethods;
    let held = [];             // resolvers of the /token requests held (POST /_sandbox/oauth {hold_token})
    const HOLD_MAX_MS = 30000, MAX_HELD = 100;
    const reset = () => {
        clients = new Map();   // client_id -> client information
        codes = new Map();     // sha256(code) -> {clientId, challenge, redirectUri, scopes, resource, exp, userId}
        tokens = new Map();    // sha256(token) -> {kind, clientId, scopes, resource, exp, userId, family, used, revoked}
        pending = new Map();   // consent id -> {client, params} (consent page, not test mode)
        counts = { registrations: 0, authorizations: 0, denied: 0, tokens_issued: 0, code_exchanges: 0,
            refreshes: 0, refresh_reuse_refused: 0, refresh_refused: 0, revocations: 0, bearer_refused: 0, bearer_accepted: 0,
            client_credentials: 0, client_credentials_refused: 0 };
        denyNext = 0;
        holdToken = false;
        authMethods = null;
        for (const w of held) w();  // a reset lets held token requests go
        held = [];
        email = 'oauth-owner@example.com';
        issued = [];           // test mode: every token, client secret and code verifier (GET /_sandbox/oauth/tokens)
    };
    reset();

    let origin = null, app = null, guardApp = null;
    // test mode: every secret seen (tokens, client secrets, code verifiers), for leak scans
    const keep = secret => { issued.push(secret); if (issued.length > MAX_TOKENS) issued.shift(); };
    const now = () => Math.floor(state.now() / 1000);

    function account() {
        let userId = state.accountsByEmail.get(email.toLowerCase());
        if (!userId) userId = state.createOwnerAccount({ email, organisationName: 'OAuth Studio', industry: 'other', country: 'HK' }).user.userId;
        return userId;
    }

    function mint(kind, fields) {
        const token = (kind === 'access' ? 'fav_oat_' : 'fav_ort_') + randomString(40);
        const lifetime = kind === 'access' ? ACCESS_TTL : REFRESH_TTL;
        tokens.set(sha256(token), { kind, ...fields, exp: now() + lifetime, used: false, revoked: false });
        bounded(tokens, MAX_TOKENS);
        if (cfg.test) keep(token);
        return token;
    }

    function grant(fields) {
        counts.tokens_issued++;
        const family = randomString(16);
        const access = mint('access', { ...fields, family });
        const out = { access_token: access, token_type: 'Bearer', expires_in: ACCESS_TTL, scope: fields.scopes.join(' ') };
        out.refresh_token = mint('refresh', { ...fields, family });
        return out;
    }

    function revokeFamily(family) {
        for (const t of tokens.values()) if (t.family === family) t.revoked = true;
    }

    function resourceOf(resource) {
        const ours = `${origin}/mcp`;
        if (resource === undefined) return ours;
        const r = resource.href.replace(/#.*$/, '').replace(/\/$/, '');
        if (r !== ours) throw new InvalidTargetError(`this server is the resource ${ours}, not ${r}`);
        return ours;
    }

    const clientsStore = {
        getClient: id => clients.get(id),
        registerClient: info => {
            counts.registrations++;
            if (cfg.test && info.client_secret) keep(info.client_secret);
            clients.set(info.client_id, info);
            bounded(clients, MAX_CLIENTS);
            return info;
        },
    };

    function redirectWithCode(client, params, res) {
        const resource = resourceOf(params.resource);
        const scopes = params.scopes && params.scopes.length && params.scopes[0] !== '' ? params.scopes : ['mcp'];
        const bad = scopes.find(s => !SCOPES.includes(s));
        if (bad) throw new InvalidRequestError(`unknown scope ${bad}`);
        const code = randomString(32);
        codes.set(sha256(code), { clientId: client.client_id, challenge: params.codeChallenge, redirectUri: params.redirectUri,
            scopes, resource, exp: now() + CODE_TTL, userId: account() });
        bounded(codes, MAX_PENDING);
        counts.authorizations++;
        const u = new URL(params.redirectUri);
        u.searchParams.set('code', code);
        if (params.state !== undefined) u.searchParams.set('state', params.state);
        u.searchParams.set('iss', `${origin}/`);
        res.redirect(302, u.href);
    }

    const provider = {
        get clientsStore() { return clientsStore; },
        async authorize(client, params, res) {
            resourceOf(params.resource);
            if (denyNext > 0) {
                denyNext--;
                counts.denied++;
                throw new AccessDeniedError('the user denied the request');
            }
            if (cfg.test) return redirectWithCode(client, params, res);
            const id = randomString(24);
            pending.set(id, { client, params, exp: now() + CODE_TTL });
            bounded(pending, MAX_PENDING);
            const name = escapeHtml(client.client_name || client.client_id);
            res.status(200).type('html').send(`<!doctype html><meta charset="utf-8"><title>FavCRM sandbox: authorize</title>
<h1>Allow ${name} to use your FavCRM sandbox workspace?</h1>
<form method="post" action="/_oauth/consent"><input type="hidden" name="id" value="${id}">
<button name="decision" value="allow">Allow</button> <button name="decision" value="deny">Deny</button></form>`);
        },
        async challengeForAuthorizationCode(client, code) {
            const c = codes.get(sha256(code));
            if (!c || c.clientId !== client.client_id || c.exp < now()) throw new InvalidGrantError('unknown or expired authorization code');
            return c.challenge;
        },
        async exchangeAuthorizationCode(client, code, _verifier, redirectUri, resource) {
            const key = sha256(code);
            const c = codes.get(key);
            if (!c || c.clientId !== client.client_id || c.exp < now()) throw new InvalidGrantError('unknown or expired authorization code');
            codes.delete(key); // once only
            if (redirectUri !== undefined && redirectUri !== c.redirectUri) throw new InvalidGrantError('redirect_uri differs from the authorization request');
            if (resource !== undefined && resourceOf(resource) !== c.resource) throw new InvalidGrantError('resource differs from the authorization request');
            counts.code_exchanges++;
            return grant({ clientId: client.client_id, scopes: c.scopes, resource: c.resource, userId: c.userId });
        },
        async exchangeRefreshToken(client, refreshToken, scopes, resource) {
            const t = tokens.get(sha256(refreshToken));
            if (!t || t.kind !== 'refresh' || t.clientId !== client.client_id) {
                counts.refresh_refused++;
                throw new InvalidGrantError('unknown refresh token');
            }
            if (t.used) {
                // Rotation: a refresh token works once; a second use means it leaked (or a client
                // burned it twice): refuse, and end the whole family.
                counts.refresh_reuse_refused++;
                revokeFamily(t.family);
                throw new InvalidGrantError('refresh token already used; the grant is revoked');
            }
            if (t.revoked || t.exp < now()) {
                counts.refresh_refused++;
                throw new InvalidGrantError('refresh token expired or revoked');
            }
            if (resource !== undefined && resourceOf(resource) !== t.resource) throw new InvalidGrantError('resource differs from the grant');
            const want = scopes && scopes.length ? scopes : t.scopes;
            if (want.some(s => !t.scopes.includes(s))) throw new InvalidGrantError('scope wider than the grant');
            t.used = true;
            for (const a of tokens.values()) if (a.family === t.family && a.kind === 'access') a.revoked = true;
            counts.refreshes++;
            const fields = { clientId: t.clientId, scopes: want, resource: t.resource, userId: t.userId, family: t.family };
            const access = mint('access', fields);
            return { access_token: access, token_type: 'Bearer', expires_in: ACCESS_TTL, scope: want.join(' '),
                refresh_token: mint('refresh', fields) };
        },
        async verifyAccessToken(token) {
            if (typeof token === 'string' && token.startsWith('fav_mcp_')) {
                const a = state.authenticate(token);
                if (!a) throw new InvalidTokenError('the API key is unknown or revoked');
                return { token: 'fav_mcp_<redacted>', clientId: 'api-key', scopes: ['mcp'], expiresAt: Date.now() / 1000 + 3600, resource: new URL(`${origin}/mcp`) };
            }
            const t = tokens.get(sha256(String(token)));
            if (!t || t.kind !== 'access' || t.revoked) throw new InvalidTokenError('unknown or revoked access token');
            if (t.exp <= now()) throw new InvalidTokenError('the access token has expired');
            // requireBearerAuth compares with the real clock: hand it the time left on ours.
            return { token: '<redacted>', clientId: t.clientId, scopes: t.scopes, expiresAt: Date.now() / 1000 + (t.exp - now()), resource: new URL(t.resource) };
        },
        async revokeToken(client, request) {
            const t = tokens.get(sha256(String(request.token)));
            if (!t || t.clientId !== client.client_id) return;
            counts.revocations++;
            if (t.kind === 'refresh') revokeFamily(t.family); else t.revoked = true;
        },
    };

    function build(port) {
        origin = `http://127.0.0.1:${port}`;
        const off = { rateLimit: false };
        app = express();
        app.disable('x-powered-by');
        // test mode: note the code verifier (the SDK's token handler parses the form again: body-parser skips a parsed body)
        app.post('/token', express.urlencoded({ extended: false }), (req, res, next) => {
            if (cfg.test && typeof req.body?.code_verifier === 'string') keep(req.body.code_verifier);
            if (!(cfg.test && holdToken) || held.length >= MAX_HELD) return next();
            // test mode, {hold_token: true}: the answer waits until {hold_token: false}, a reset, or HOLD_MAX_MS
            let timer = null;
            const go = () => { clearTimeout(timer); held = held.filter(w => w !== go); next(); };
            timer = setTimeout(go, HOLD_MAX_MS);
            held.push(go);
        });
        // the client credentials grant (the SDK's token handler has none): a
        // client registered with a secret, authenticated by client_secret_post
        // or client_secret_basic, gets an access token (no refresh token)
        app.post('/token', (req, res, next) => {
            if (req.body?.grant_type !== 'client_credentials') return next();
            res.set('Cache-Control', 'no-store');
            let id = req.body.client_id, secret = req.body.client_secret;
            const basic = /^Basic\s+(\S+)$/i.exec(req.headers.authorization || '');
            if (basic) {
                const pair = Buffer.from(basic[1], 'base64').toString('utf8');
                const i = pair.indexOf(':');
                try { id = decodeURIComponent(pair.slice(0, i)); secret = decodeURIComponent(pair.slice(i + 1)); } catch { id = undefined; }
            }
            const client = typeof id === 'string' ? clients.get(id) : undefined;
            if (!client || typeof client.client_secret !== 'string' || typeof secret !== 'string'
                || sha256(secret) !== sha256(client.client_secret)) {
                counts.client_credentials_refused++;
                return res.status(401).json({ error: 'invalid_client', error_description: 'unknown client or wrong secret' });
            }
            let resource;
            try { resource = resourceOf(req.body.resource === undefined ? undefined : new URL(String(req.body.resource))); }
            catch (e) { return res.status(400).json({ error: 'invalid_target', error_description: e.message }); }
            // offline_access means nothing here (no refresh token): left out
            const asked = typeof req.body.scope === 'string' && req.body.scope.trim() ? req.body.scope.trim().split(/\s+/) : ['mcp'];
            const bad = asked.find(x => !SCOPES.includes(x));
            if (bad) return res.status(400).json({ error: 'invalid_scope', error_description: `unknown scope ${bad}` });
            const scopes = ['mcp'];
            counts.client_credentials++;
            const access = mint('access', { clientId: client.client_id, scopes, resource, userId: account(), family: randomString(16) });
            res.json({ access_token: access, token_type: 'Bearer', expires_in: ACCESS_TTL, scope: scopes.join(' ') });
        });
        app.post('/_oauth/consent', express.urlencoded({ extended: false }), (req, res) => {
            const p = pending.get(String(req.body?.id));
            if (!p || p.exp < now()) return res.status(400).type('text').send('unknown or expired consent request');
            pending.delete(String(req.body.id));
            if (req.body.decision !== 'allow') {
                counts.denied++;
                const u = new URL(p.params.redirectUri);
                u.searchParams.set('error', 'access_denied');
                if (p.params.state !== undefined) u.searchParams.set('state', p.params.state);
                u.searchParams.set('iss', `${origin}/`);
                return res.redirect(302, u.href);
            }
            try { redirectWithCode(p.client, p.params, res); } catch (e) { res.status(400).type('text').send(e.message); }
        });
        // test mode, {auth_methods: [...]}: the metadata's
        // token_endpoint_auth_methods_supported (the SDK lists
        // client_secret_post and none; the client credentials grant above
        // takes client_secret_basic too)
        app.get('/.well-known/oauth-authorization-server', (req, res, next) => {
            if (!(cfg.test && authMethods)) return next();
            const json = res.json.bind(res);
            res.json = body => json({ ...body, token_endpoint_auth_methods_supported: authMethods });
            next();
        });
        app.use(mcpAuthRouter({
            provider, issuerUrl: new URL(`${origin}/`), resourceServerUrl: new URL(`${origin}/mcp`),
            scopesSupported: SCOPES, resourceName: 'FavCRM sandbox',
            authorizationOptions: off, tokenOptions: off, revocationOptions: off,
            clientRegistrationOptions: { ...off, clientSecretExpirySeconds: 0 },
        }));
        const bearer = requireBearerAuth({ verifier: provider, resourceMetadataUrl: `${origin}/.well-known/oauth-protected-resource/mcp`, expectedResource: new URL(`${origin}/mcp`) });
        guardApp = express();
        guardApp.disable('x-powered-by');
        guardApp.all('/mcp', (req, res, next) => bearer(req, res, next), (req, res) => {
            counts.bearer_accepted++;
            req.favcrmGuard.pass();
        });
        log(`oauth: authorization server at ${origin}/ (${cfg.test ? 'auto-approval, test mode' : 'consent page'})`);
    }

    async function control(req, res, url, sendJson, readJson) {
        const isLoop = ['127.0.0.1', '::1', '::ffff:127.0.0.1'].includes(req.socket.remoteAddress);
        if (!cfg.test) return sendJson(res, 404, { error: 'not_found', message: 'control endpoints need --test' });
        if (!isLoop) return sendJson(res, 403, { error: 'forbidden', message: 'loopback only' });
        const route = `${req.method} ${url.pathname.replace(/\/+$/, '')}`;
        if (route === 'GET /_sandbox/oauth') return sendJson(res, 200, { ...counts, token_held: held.length, hold_token: holdToken, clients: clients.size, issuer: origin && `${origin}/`, account: email, deny: denyNext, access_ttl: ACCESS_TTL, refresh_ttl: REFRESH_TTL });
        if (route === 'GET /_sandbox/oauth/tokens') return sendJson(res, 200, { tokens: issued });
        if (route === 'POST /_sandbox/oauth') {
            const input = await readJson(req);
            if (input === null) return sendJson(res, 400, { error: 'invalid_json' });
            if (Number.isInteger(input.deny) && input.deny >= 0) denyNext = input.deny;
            if (typeof input.email === 'string' && input.email.includes('@')) email = input.email;
            if (Array.isArray(input.auth_methods) && input.auth_methods.every(m => typeof m === 'string')) {
                authMethods = input.auth_methods.length ? input.auth_methods : null;
            }
            if (typeof input.hold_token === 'boolean') {
                holdToken = input.hold_token;
                if (!holdToken) for (const w of [...held]) w();
            }
            return sendJson(res, 200, { deny: denyNext, account: email, hold_token: holdToken, token_held: held.length, auth_methods: authMethods });
        }
        return sendJson(res, 404, { error: 'not_found', message: `no control endpoint ${route}` });
    }

    return {
        counts: () => ({ ...counts }),
        reset,
        /** Serves the authorization server's own paths and /_sandbox/oauth*; false for anything else
         *  (POST /_sandbox/reset resets this and still returns false, for the server to reset the rest). */
        async handle(req, res, url, { sendJson, readJson }) {
            if (!app) build(req.socket.localPort);
            if (url.pathname === '/_sandbox/reset' && req.method === 'POST' && cfg.test) { reset(); return false; }
            if (url.pathname === '/_sandbox/oauth' || url.pathname.startsWith('/_sandbox/oauth/')) { await control(req, res, url, sendJson, readJson); return true; }
            if (!OWN_PATHS.includes(url.pathname.replace(/\/+$/, '') || '/')) return false;
            await new Promise(resolve => { res.on('finish', resolve); res.on('close', resolve); app(req, res, () => { res.statusCode = 404; res.end(); }); });
            return true;
        },
        /** /mcp: runs next() when the request carries a live API key or access token, else answers
         *  401 with WWW-Authenticate: Bearer ..., resource_metadata="<origin>/.well-known/oauth-protected-resource/mcp". */
        guard(req, res, next) {
            if (!app) build(req.socket.localPort);
            return new Promise((resolve, reject) => {
                req.favcrmGuard = { pass: () => Promise.resolve().then(next).then(resolve, reject) };
                res.on('finish', () => { if (res.statusCode === 401) counts.bearer_refused++; resolve(); });
                res.on('close', resolve);
                guardApp(req, res, err => (err ? reject(err) : resolve()));
            });
        },
        /** The account behind a live access token, shaped as State#authenticate's answer, or null. */
        authenticate(token) {
            if (typeof token !== 'string') return null;
            const t = tokens.get(sha256(token));
            if (!t || t.kind !== 'access' || t.revoked || t.exp <= now()) return null;
            const user = state.users.get(t.userId);
            const ws = user && state.workspaces.get(user.companyId);
            return user && ws ? { user, ws, keyHash: sha256(token) } : null;
        },
    };
}

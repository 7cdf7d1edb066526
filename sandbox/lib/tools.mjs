// The sandbox's tool table: FavCRM-like tools plus sandbox_* test tools.
// Each entry: {name, title, description, inputSchema, outputSchema?, annotations,
// auth, handler(args, ctx)}. Handlers return the payload (it becomes
// structuredContent.data) or throw ToolError (it becomes an isError result).
import { validate } from './schema.mjs';
import { newId, randomString, PLANS, PLAN_ORDER } from './state.mjs';

export const LOGIN_URL = 'https://app.favcrm.io';
export const EMAIL_PATTERN = "^(?!\\.)(?!.*\\.\\.)([A-Za-z0-9_'+\\-\\.]*)[A-Za-z0-9_+-]@([A-Za-z0-9][A-Za-z0-9\\-]*\\.)+[A-Za-z]{2,}$";
export const INDUSTRIES = ['beauty', 'fitness', 'tutoring', 'retail', 'hospitality', 'services', 'other'];

export class ToolError extends Error {
    constructor(code, message, fields = {}) {
        super(message);
        this.code = code;
        this.fields = fields;
    }
}

/** A JSON-RPC error either SDK sends as is ({code, message, data}). */
export function rpcError(code, message, data) {
    return Object.assign(new Error(message), { code, data });
}

/**
 * 2026-07-28 multi-round-trip request (MRTR): thrown by askClient when the
 * answer is not in the retry's inputResponses yet; callTool turns it into an
 * `input_required` result naming what the client must fulfil.
 */
class InputRequired {
    constructor(key, method, params, requestState) {
        this.result = { resultType: 'input_required', inputRequests: { [key]: { method, params } }, requestState };
    }
}
const INPUT_KEYS = { 'elicitation/create': 'elicit', 'sampling/createMessage': 'sample', 'roots/list': 'roots' };

export function okResult(payload) {
    return { content: [{ type: 'text', text: JSON.stringify(payload) }], structuredContent: { data: payload } };
}

export function errorResult(code, message, fields = {}) {
    const error = { code, message, ...fields };
    const structuredContent = { error };
    if (fields.retryAfter !== undefined) structuredContent.retryAfter = fields.retryAfter;
    return { isError: true, content: [{ type: 'text', text: message }], structuredContent };
}

// ---- schema helpers --------------------------------------------------------
const D7 = 'http://json-schema.org/draft-07/schema#';
const obj = (properties, required = [], extra = {}) => ({ $schema: D7, type: 'object', properties, required, additionalProperties: false, ...extra });
const s = (description, extra = {}) => ({ type: 'string', description, ...extra });
const i = (description, extra = {}) => ({ type: 'integer', description, ...extra });
const n = (description, extra = {}) => ({ type: 'number', description, ...extra });
const b = (description, extra = {}) => ({ type: 'boolean', description, ...extra });
const emailProp = description => ({ type: 'string', format: 'email', pattern: EMAIL_PATTERN, description });
const idProp = (what, prefix) => s(`The ${what} id (${prefix}...)`, { minLength: 3 });
const limitProp = i('Maximum number of items to return (default 50)', { minimum: 1, maximum: 200 });
const offsetProp = i('Number of items to skip (default 0)', { minimum: 0 });

function annotate(name, title, over = {}) {
    const readOnly = /^(list|get|search)_/.test(name);
    return {
        title,
        readOnlyHint: readOnly,
        destructiveHint: /^(delete|cancel|void|refund)_/.test(name),
        idempotentHint: /^(set|update|upsert)_/.test(name),
        openWorldHint: false,
        ...over,
    };
}

// ---- helpers -----------------------------------------------------------------
function maskEmail(email) {
    const [local, domain] = email.split('@');
    return `${local.slice(0, 2)}*@${domain}`;
}

const page = (list, args) => {
    const off = args.offset || 0, lim = args.limit || 50;
    return list.slice(off, off + lim);
};

function need(map, id, what) {
    const v = map.get(id);
    if (!v) throw new ToolError('not_found', `No ${what} with id ${id} in this workspace.`, { resource: what, id });
    return v;
}

function sleep(ms, signal) {
    return new Promise((resolve, reject) => {
        if (signal?.aborted) return reject(new Error('cancelled'));
        const t = setTimeout(() => { signal?.removeEventListener('abort', onAbort); resolve(); }, ms);
        const onAbort = () => { clearTimeout(t); reject(new Error('cancelled')); };
        signal?.addEventListener('abort', onAbort, { once: true });
    });
}

const GATED = {
    create_campaign: { requiredPlan: 'starter', feature: 'campaigns' },
    send_whatsapp_message: { requiredPlan: 'starter', feature: 'whatsapp' },
};

function planAllows(ws, tool) {
    const g = GATED[tool];
    if (!g) return true;
    return PLAN_ORDER.indexOf(ws.plan) >= PLAN_ORDER.indexOf(g.requiredPlan);
}

function upgradeAction(tool) {
    const g = GATED[tool];
    return {
        tool: 'create_plan_upgrade_link',
        reason: `${tool} needs the ${g.requiredPlan} plan (${g.feature}); the workspace is on a lower plan.`,
        url: `${LOGIN_URL}/settings/billing?plan=${g.requiredPlan}`,
        arguments: { plan: g.requiredPlan, confirm: true },
    };
}

function requirePlan(ws, tool) {
    if (planAllows(ws, tool)) return;
    const g = GATED[tool];
    throw new ToolError('plan_required', `${tool} is not available on the ${ws.plan} plan; upgrade to ${g.requiredPlan}.`, {
        plan: ws.plan, requiredPlan: g.requiredPlan, upgradeAction: upgradeAction(tool),
    });
}

function limitCheck(ws, what, count) {
    const lim = PLANS[ws.plan].limits[what];
    if (count >= lim) {
        const next = PLAN_ORDER[PLAN_ORDER.indexOf(ws.plan) + 1] || 'growth';
        throw new ToolError('plan_required', `The ${ws.plan} plan allows at most ${lim} ${what}.`, {
            plan: ws.plan, requiredPlan: next,
            upgradeAction: { tool: 'create_plan_upgrade_link', reason: `${what} limit (${lim}) reached`, url: `${LOGIN_URL}/settings/billing?plan=${next}`, arguments: { plan: next, confirm: true } },
        });
    }
}

function checkCode(state, rec, code, what) {
    if (rec.used) throw new ToolError('expired_code', `This ${what} was already completed; request a new code.`, { reason: 'already_used' });
    if (rec.dead) throw new ToolError('expired_code', `Too many wrong codes for this ${what}; request a new code.`, { reason: 'too_many_attempts' });
    if (state.now() > rec.expiresAtMs) throw new ToolError('expired_code', `The code expired at ${new Date(rec.expiresAtMs).toISOString()}; request a new code.`, { reason: 'expired', expiredAt: new Date(rec.expiresAtMs).toISOString() });
    if (String(code) !== rec.code) {
        rec.wrong += 1;
        const attemptsLeft = Math.max(0, state.maxWrongCodes - rec.wrong);
        if (attemptsLeft === 0) rec.dead = true;
        throw new ToolError('wrong_code', attemptsLeft > 0
            ? `That code is not correct; ${attemptsLeft} attempt(s) left. Re-check the e-mail and retry.`
            : 'That code is not correct and no attempts are left; request a new code.', { attemptsLeft });
    }
}

function rateLimit(state, bucket) {
    const block = state.rateHit(bucket);
    if (block) {
        throw new ToolError('rate_limited', `Too many code requests from this address (${block.limit} per ${block.window}); retry after ${block.retryAfter} seconds. Do not loop.`, {
            retryAfter: block.retryAfter, window: block.window, limit: block.limit,
        });
    }
}

function slotBusy(ws, start, end, exceptId) {
    for (const bk of ws.bookings.values()) {
        if (bk.status === 'cancelled' || bk.id === exceptId) continue;
        if (Date.parse(bk.start) < end && Date.parse(bk.end) > start) return true;
    }
    return false;
}

const BOOKING_STATUSES = ['pending', 'confirmed', 'completed', 'cancelled', 'no_show'];
const isOverdue = (inv, nowMs) => (inv.status === 'open' || inv.status === 'sent') && inv.dueDate && Date.parse(`${inv.dueDate}T23:59:59Z`) < nowMs;

// A plan by its code (favcrm-lite), its id (plan_starter) or its sandbox name (starter).
function planByRef(ref) {
    if (!ref) return null;
    for (const p of PLAN_ORDER) if (PLANS[p].planCode === ref || PLANS[p].planId === ref || p === ref) return p;
    return null;
}

function invoiceTotals(items) {
    const subtotal = items.reduce((a, it) => a + (it.quantity ?? 1) * it.unitPrice, 0);
    return Math.round(subtotal * 100) / 100;
}

export const PLATFORM_GUIDE = [
    [/sign ?up|regist|account|key/i, 'Register with register_organisation_request (organisationName, email) then register_organisation_verify (requestId, code). The verify result carries the API key once; send it as "Authorization: Bearer fav_mcp_..." on every other call.', ['register_organisation_request', 'register_organisation_verify']],
    [/servic|book|slot|appoint/i, 'Create services with create_service (name, durationMinutes, price). Find times with get_available_slots (serviceId, date) and book with create_booking (serviceId, start, customerName).', ['create_service', 'list_services', 'get_available_slots', 'create_booking']],
    [/contact|customer|client/i, 'Contacts: create_contact (name, email, phone), list_contacts, get_contact, delete_contact.', ['create_contact', 'list_contacts', 'get_contact']],
    [/member|tier|loyal/i, 'Membership: create_membership_tier, then create_account for a member; search_members finds them.', ['create_membership_tier', 'create_account', 'search_members']],
    [/invoice|pay|bill/i, 'Invoices: create_invoice (items[{description, quantity, unitPrice}]), mark_invoice_paid, void_invoice, send_invoice_email.', ['create_invoice', 'list_invoices', 'mark_invoice_paid']],
    [/plan|upgrade|price|whatsapp|campaign/i, 'Check get_plan_status and preflight gated writes with check_plan_operation; upgrades go through create_plan_upgrade_link with confirm: true. WhatsApp and campaigns need the starter plan.', ['get_plan_status', 'check_plan_operation', 'create_plan_upgrade_link']],
    [/team|staff|invite/i, 'Invite staff with create_team_member_invite (email, role); the invitee runs accept_team_invite_request (token) and accept_team_invite_verify (token, code) to get their own key.', ['create_team_member_invite', 'accept_team_invite_request', 'accept_team_invite_verify']],
];

/**
 * Asks the client (elicitation, sampling, roots, ping) and returns its answer,
 * checked against the result type `type` (e.g. 'ElicitResult') of the era's
 * SDK: ctx.resultSchemas maps the name to that SDK's schema.
 */
async function askClient(ctx, method, params, type, capability, timeout = 60000) {
    const schema = ctx.resultSchemas[type];
    if (ctx.era === 'modern') return askClientModern(ctx, method, params, schema, capability);
    const caps = ctx.clientCapabilities();
    if (capability && caps !== undefined && !caps?.[capability]) {
        throw new ToolError(`${capability}_unsupported`, `The client did not declare the ${capability} capability at initialize.`, { capability });
    }
    if (capability && caps === undefined && ctx.mode === 'session') {
        throw new ToolError(`${capability}_unsupported`, `The client did not declare the ${capability} capability at initialize.`, { capability });
    }
    // With --json-response a POST answer is one JSON body: requests tied to it can't be
    // delivered. In session mode they go out on the client's standalone GET stream instead.
    let viaGet = false;
    if (ctx.jsonResponse) {
        const t = ctx.session?.transport?._webStandardTransport;
        if (ctx.mode === 'session' && t?._streamMapping?.get(t._standaloneSseStreamId)) viaGet = true;
        else throw new ToolError('sse_required', `In --json-response mode ${method} can only reach the client over a GET SSE stream (session mode); open one first.`, { method });
    }
    try {
        if (viaGet) return await ctx.server.request({ method, params }, schema, { timeout, signal: ctx.extra.signal });
        return await ctx.extra.sendRequest({ method, params }, schema, { timeout });
    } catch (e) {
        if (ctx.extra.signal.aborted) throw e;
        const timedOut = e?.code === -32001;
        if (capability && e?.code === -32601) throw new ToolError(`${capability}_unsupported`, `The client does not handle ${method}.`, { capability });
        throw new ToolError(timedOut ? 'client_timeout' : 'client_error', `The client answered ${method} with an error: ${e?.message || e}`, { method, clientErrorCode: e?.code ?? null });
    }
}

/**
 * 2026-07-28: no server-to-client requests. The first round answers
 * input_required (only for a declared capability, as the revision requires);
 * the retry carries the answer in inputResponses and requestState echoed.
 */
function askClientModern(ctx, method, params, schema, capability) {
    const key = INPUT_KEYS[method];
    if (!key) throw new ToolError('unsupported_in_era', `${method} cannot reach a 2026-07-28 client: that revision has no server-to-client requests.`, { method, era: '2026-07-28' });
    const caps = ctx.clientCapabilities() || {};
    if (capability && !caps[capability]) {
        // basic/index: a request that needs an undeclared capability -> -32021 (HTTP 400)
        throw rpcError(-32021, `This tool needs the ${capability} capability in the request's clientCapabilities`, { requiredCapabilities: { [capability]: {} } });
    }
    const state = `sbx1.${ctx.toolName}.${key}`;
    const answer = ctx.extra.inputResponses?.[key];
    if (answer === undefined) throw new InputRequired(key, method, params, state);
    if (ctx.extra.requestState !== state) throw new ToolError('invalid_request_state', 'requestState was not echoed unchanged with the inputResponses.', { expected: state, got: ctx.extra.requestState ?? null });
    const r = schema.safeParse(answer);
    if (!r.success) throw new ToolError('client_error', `The client's ${method} answer (inputResponses.${key}) is malformed: ${r.error.message}`, { method, clientErrorCode: null });
    return r.data;
}

// ---- the table -------------------------------------------------------------
export function buildTools(state) {
    const T = [];
    const add = (name, title, description, inputSchema, handler, opts = {}) => {
        T.push({ name, title, description, inputSchema, handler, auth: opts.auth !== false, skipValidation: !!opts.skipValidation, outputSchema: opts.outputSchema, annotations: annotate(name, title, opts.annotations), meta: opts.meta, links: opts.links, modernOnly: !!opts.modernOnly });
    };
    const noAuth = { auth: false };

    // -- registration (no auth) --
    add('register_organisation_request', 'Request organisation signup code',
        'Start agentic registration: e-mails a 6-digit verification code to the owner. No auth. Returns requestId, maskedEmail, expiresAt and instructions.', {
            $schema: D7,
            type: 'object',
            properties: {
                organisationName: { type: 'string', minLength: 2, maxLength: 80, description: 'Business name shown in the workspace' },
                email: { type: 'string', format: 'email', pattern: EMAIL_PATTERN, description: "Owner's e-mail address; the code is sent here" },
                industry: { type: 'string', enum: INDUSTRIES, description: 'Industry of the business' },
                country: { type: 'string', minLength: 2, maxLength: 2, description: 'ISO 3166-1 alpha-2 country code' },
                timezone: { type: 'string', description: 'IANA timezone name; defaults from the country' },
            },
            required: ['organisationName', 'email'],
        }, async (a, ctx) => {
            if (state.hasAccount(a.email)) {
                throw new ToolError('existing_account', 'An account already exists for this e-mail. Sign in to the portal and create an MCP key under Settings.', { loginUrl: LOGIN_URL, settingsUrl: `${LOGIN_URL}/settings/mcp` });
            }
            rateLimit(state, `signup:${ctx.ip}`);
            const requestId = newId('signup_req_', 24);
            const code = state.newCode();
            const expiresAtMs = state.now() + state.codeTtl * 1000;
            state.signups.set(requestId, { requestId, email: a.email, organisationName: a.organisationName, industry: a.industry, country: a.country ? a.country.toUpperCase() : undefined, timezone: a.timezone, code, expiresAtMs, wrong: 0, dead: false, used: false });
            const masked = maskEmail(a.email);
            const mins = Math.round(state.codeTtl / 60);
            state.sendMail({ to: a.email, kind: 'signup', ref: requestId, code, subject: 'Your FavCRM verification code',
                body: `Hello,\n\nYour FavCRM verification code for ${a.organisationName} is: ${code}\n\nIt expires in ${mins} minutes. If you did not ask for it, ignore this e-mail.\n\n-- FavCRM` });
            return {
                requestId, maskedEmail: masked, expiresAt: new Date(expiresAtMs).toISOString(),
                instructions: `Tell the user to check ${masked} for a 6-digit code (valid ${mins} minutes), then call register_organisation_verify with requestId and the code.`,
            };
        }, { ...noAuth, annotations: { openWorldHint: true } });

    add('register_organisation_verify', 'Verify signup code and create workspace',
        'Finish registration with the 6-digit code: creates the workspace and returns the API key once. No auth.',
        obj({ requestId: s('requestId from register_organisation_request', { pattern: '^signup_req_' }), code: s('6-digit code from the e-mail', { pattern: '^[0-9]{6}$' }) }, ['requestId', 'code']),
        async a => {
            const rec = state.signups.get(a.requestId);
            if (!rec) throw new ToolError('not_found', 'Unknown requestId; call register_organisation_request again.', { resource: 'signup_request', id: a.requestId });
            checkCode(state, rec, a.code, 'signup request');
            if (state.hasAccount(rec.email)) {
                rec.used = true;
                throw new ToolError('existing_account', 'An account already exists for this e-mail. Sign in to the portal and create an MCP key under Settings.', { loginUrl: LOGIN_URL, settingsUrl: `${LOGIN_URL}/settings/mcp` });
            }
            rec.used = true;
            const { ws, user, apiKey } = state.createOwnerAccount(rec);
            return {
                organisationId: ws.organisationId, companyId: ws.companyId, userId: user.userId, apiKey,
                loginUrl: LOGIN_URL,
                nextSteps: 'Store the key securely (it is shown once). Set "Authorization: Bearer <apiKey>" on subsequent MCP calls, then call list_services; an empty list means auth works.',
            };
        }, noAuth);

    // -- services --
    const serviceShape = { type: 'object', properties: { id: { type: 'string' }, name: { type: 'string' }, durationMinutes: { type: 'integer' }, price: { type: 'number' }, currency: { type: 'string' }, description: { type: ['string', 'null'] }, active: { type: 'boolean' }, createdAt: { type: 'string' } }, required: ['id', 'name', 'durationMinutes', 'price', 'currency', 'active'] };
    add('list_services', 'List services', 'List the services offered by the workspace. An empty list on a fresh workspace is success.',
        obj({ activeOnly: b('Only active services'), limit: limitProp, offset: offsetProp }),
        async (a, ctx) => page([...ctx.ws.services.values()].filter(x => !a.activeOnly || x.active), a),
        { outputSchema: { type: 'object', properties: { data: { type: 'array', items: serviceShape } }, required: ['data'] } });
    add('create_service', 'Create service', 'Create a bookable service.',
        obj({ name: s('Service name', { minLength: 1, maxLength: 120 }), durationMinutes: i('Duration in minutes', { minimum: 5, maximum: 1440 }), price: n('Price in the workspace currency', { minimum: 0 }), description: s('Description', { maxLength: 2000 }), active: b('Bookable now (default true)') }, ['name', 'durationMinutes']),
        async (a, ctx) => {
            limitCheck(ctx.ws, 'services', ctx.ws.services.size);
            const svc = { id: newId('svc_'), name: a.name, durationMinutes: a.durationMinutes, price: a.price ?? 0, currency: ctx.ws.currency, description: a.description ?? null, active: a.active ?? true, createdAt: state.nowIso() };
            ctx.ws.services.set(svc.id, svc);
            return svc;
        });
    add('get_service', 'Get service', 'Get one service by id.', obj({ serviceId: idProp('service', 'svc_') }, ['serviceId']),
        async (a, ctx) => need(ctx.ws.services, a.serviceId, 'service'));
    add('update_service', 'Update service', 'Update fields of a service (only the given fields change).',
        obj({ serviceId: idProp('service', 'svc_'), name: s('Service name', { minLength: 1, maxLength: 120 }), durationMinutes: i('Duration in minutes', { minimum: 5, maximum: 1440 }), price: n('Price', { minimum: 0 }), description: s('Description', { maxLength: 2000 }), active: b('Bookable') }, ['serviceId']),
        async (a, ctx) => {
            const svc = need(ctx.ws.services, a.serviceId, 'service');
            for (const k of ['name', 'durationMinutes', 'price', 'description', 'active']) if (a[k] !== undefined) svc[k] = a[k];
            svc.updatedAt = state.nowIso();
            return svc;
        });
    add('delete_service', 'Delete service', 'Delete a service. Existing bookings are kept.', obj({ serviceId: idProp('service', 'svc_') }, ['serviceId']),
        async (a, ctx) => { need(ctx.ws.services, a.serviceId, 'service'); ctx.ws.services.delete(a.serviceId); return { deleted: true, serviceId: a.serviceId }; });

    // -- bookings --
    add('get_available_slots', 'Get available slots', 'Free booking slots for a service on a date (09:00-17:00 UTC, one slot per service duration).',
        obj({ serviceId: idProp('service', 'svc_'), date: s('Date, YYYY-MM-DD', { format: 'date' }) }, ['serviceId', 'date']),
        async (a, ctx) => {
            const svc = need(ctx.ws.services, a.serviceId, 'service');
            const out = [];
            const dayStart = Date.parse(`${a.date}T09:00:00Z`), dayEnd = Date.parse(`${a.date}T17:00:00Z`);
            for (let t = dayStart; t + svc.durationMinutes * 60e3 <= dayEnd; t += svc.durationMinutes * 60e3) {
                const e = t + svc.durationMinutes * 60e3;
                if (!slotBusy(ctx.ws, t, e)) out.push({ start: new Date(t).toISOString(), end: new Date(e).toISOString(), serviceId: svc.id });
            }
            return out;
        });
    add('create_booking', 'Create booking', 'Book a service at a start time for a customer.',
        obj({ serviceId: idProp('service', 'svc_'), start: s('Start time, ISO-8601', { format: 'date-time' }), customerName: s('Customer name', { minLength: 1, maxLength: 120 }), contactId: s('Existing contact id (ct_...)'), notes: s('Notes', { maxLength: 2000 }) }, ['serviceId', 'start']),
        async (a, ctx) => {
            const svc = need(ctx.ws.services, a.serviceId, 'service');
            if (a.contactId) need(ctx.ws.contacts, a.contactId, 'contact');
            const start = Date.parse(a.start), end = start + svc.durationMinutes * 60e3;
            if (slotBusy(ctx.ws, start, end)) throw new ToolError('conflict', 'That slot is already booked; pick another from get_available_slots.', { reason: 'slot_unavailable' });
            const bk = { id: newId('bkg_'), serviceId: svc.id, serviceName: svc.name, start: new Date(start).toISOString(), end: new Date(end).toISOString(), customerName: a.customerName ?? null, contactId: a.contactId ?? null, notes: a.notes ?? null, status: 'confirmed', createdAt: state.nowIso() };
            ctx.ws.bookings.set(bk.id, bk);
            return bk;
        });
    add('list_bookings', 'List bookings', 'List bookings, optionally by status or time range.',
        obj({ status: s('Filter by status', { enum: BOOKING_STATUSES }), from: s('From: ISO-8601 date or date-time'), to: s('To: ISO-8601 date or date-time (exclusive)'), limit: limitProp, offset: offsetProp }),
        async (a, ctx) => page([...ctx.ws.bookings.values()].filter(x => (!a.status || x.status === a.status) && (!a.from || Date.parse(x.start) >= Date.parse(a.from)) && (!a.to || Date.parse(x.start) < Date.parse(a.to))), a));
    add('get_booking_detail', 'Get booking detail', 'One booking by id.', obj({ bookingId: idProp('booking', 'bkg_') }, ['bookingId']),
        async (a, ctx) => need(ctx.ws.bookings, a.bookingId, 'booking'));
    add('get_booking_stats', 'Get booking stats', 'Booking counts by status and the next upcoming booking.', obj({}),
        async (a, ctx) => {
            const all = [...ctx.ws.bookings.values()];
            const byStatus = Object.fromEntries(BOOKING_STATUSES.map(st => [st, all.filter(x => x.status === st).length]));
            const upcoming = all.filter(x => x.status !== 'cancelled' && Date.parse(x.start) >= state.now()).sort((x, y) => Date.parse(x.start) - Date.parse(y.start));
            return { total: all.length, byStatus, upcoming: upcoming.length, nextBooking: upcoming[0] ?? null };
        });
    const bookingMove = (name, title, description, from, to, stamp) => add(name, title, description, obj({ bookingId: idProp('booking', 'bkg_') }, ['bookingId']),
        async (a, ctx) => {
            const bk = need(ctx.ws.bookings, a.bookingId, 'booking');
            if (!from.includes(bk.status)) throw new ToolError('conflict', `The booking is ${bk.status}; it cannot be ${to}.`, { reason: `booking_${bk.status}` });
            bk.status = to; bk[stamp] = state.nowIso();
            return bk;
        }, { annotations: { idempotentHint: false } });
    bookingMove('confirm_booking', 'Confirm booking', 'Confirm a pending booking.', ['pending'], 'confirmed', 'confirmedAt');
    bookingMove('complete_booking', 'Complete booking', 'Mark a booking completed.', ['pending', 'confirmed'], 'completed', 'completedAt');
    add('cancel_booking', 'Cancel booking', 'Cancel a booking.', obj({ bookingId: idProp('booking', 'bkg_'), reason: s('Reason', { maxLength: 500 }) }, ['bookingId']),
        async (a, ctx) => {
            const bk = need(ctx.ws.bookings, a.bookingId, 'booking');
            if (bk.status === 'cancelled') throw new ToolError('conflict', 'The booking is already cancelled.', { reason: 'already_cancelled' });
            bk.status = 'cancelled'; bk.cancelReason = a.reason ?? null; bk.cancelledAt = state.nowIso();
            return bk;
        });

    // -- membership --
    add('search_members', 'Search members', 'Search and filter member accounts: free text over name, e-mail or phone (case-insensitive substring), inactivity, tier. No filter lists all.',
        obj({ search: s('Search text', { minLength: 1, maxLength: 200 }), query: s('Search text (older name of search)', { minLength: 1, maxLength: 200 }), inactiveDays: i('Members with no activity in the last N days', { minimum: 1, maximum: 3650 }), tierId: s('Membership tier id (tier_...)'), limit: limitProp }),
        async (a, ctx) => {
            const q = (a.search ?? a.query ?? '').toLowerCase();
            const cutoff = a.inactiveDays ? state.now() - a.inactiveDays * 86400e3 : null;
            return [...ctx.ws.members.values()].filter(m => (!q || [m.name, m.email, m.phone].some(f => f && f.toLowerCase().includes(q)))
                && (!a.tierId || m.tierId === a.tierId)
                && (cutoff === null || Date.parse(m.lastActivityAt ?? m.createdAt) < cutoff)).slice(0, a.limit || 20);
        });
    add('get_member_profile', 'Get member profile', "One member's full profile: account, tier and bookings.", obj({ accountId: idProp('member account', 'mem_') }, ['accountId']),
        async (a, ctx) => {
            const m = need(ctx.ws.members, a.accountId, 'member');
            const tier = m.tierId ? ctx.ws.tiers.get(m.tierId) ?? null : null;
            return { ...m, tier, bookings: [...ctx.ws.bookings.values()].filter(x => x.contactId && x.contactId === m.contactId) };
        });
    add('create_account', 'Create member account', 'Create a member (loyalty) account, optionally in a membership tier.',
        obj({ name: s('Member name', { minLength: 1, maxLength: 120 }), email: emailProp('Member e-mail'), phone: s('Phone, E.164', { pattern: '^\\+[1-9][0-9]{6,14}$' }), tierId: s('Membership tier id (tier_...)') }, ['name']),
        async (a, ctx) => {
            if (a.tierId) need(ctx.ws.tiers, a.tierId, 'membership tier');
            const m = { id: newId('mem_'), name: a.name, email: a.email ?? null, phone: a.phone ?? null, tierId: a.tierId ?? null, points: 0, createdAt: state.nowIso() };
            ctx.ws.members.set(m.id, m);
            return m;
        });
    add('list_membership_tiers', 'List membership tiers', 'List membership tiers.', obj({}), async (a, ctx) => [...ctx.ws.tiers.values()]);
    add('create_membership_tier', 'Create membership tier', 'Create a membership tier.',
        obj({ name: s('Tier name', { minLength: 1, maxLength: 80 }), pointsThreshold: i('Points needed', { minimum: 0 }), discountPercent: n('Member discount', { minimum: 0, maximum: 100 }) }, ['name']),
        async (a, ctx) => {
            const t = { id: newId('tier_'), name: a.name, pointsThreshold: a.pointsThreshold ?? 0, discountPercent: a.discountPercent ?? 0, createdAt: state.nowIso() };
            ctx.ws.tiers.set(t.id, t);
            return t;
        });

    // -- contacts --
    add('list_contacts', 'List contacts', 'List CRM contacts.', obj({ limit: limitProp, offset: offsetProp }), async (a, ctx) => page([...ctx.ws.contacts.values()], a));
    add('create_contact', 'Create contact', 'Create a CRM contact.',
        obj({ name: s('Full name', { minLength: 1, maxLength: 120 }), email: emailProp('E-mail'), phone: s('Phone, E.164', { pattern: '^\\+[1-9][0-9]{6,14}$' }), tags: { type: 'array', items: { type: 'string', maxLength: 40 }, maxItems: 20, description: 'Tags' } }, ['name']),
        async (a, ctx) => {
            limitCheck(ctx.ws, 'contacts', ctx.ws.contacts.size);
            const c = { id: newId('ct_'), name: a.name, email: a.email ?? null, phone: a.phone ?? null, tags: a.tags ?? [], createdAt: state.nowIso() };
            ctx.ws.contacts.set(c.id, c);
            return c;
        });
    add('get_contact', 'Get contact', 'Get one contact by id.', obj({ contactId: idProp('contact', 'ct_') }, ['contactId']), async (a, ctx) => need(ctx.ws.contacts, a.contactId, 'contact'));
    add('delete_contact', 'Delete contact', 'Delete a contact.', obj({ contactId: idProp('contact', 'ct_') }, ['contactId']),
        async (a, ctx) => { need(ctx.ws.contacts, a.contactId, 'contact'); ctx.ws.contacts.delete(a.contactId); return { deleted: true, contactId: a.contactId }; });

    // -- invoices --
    const itemSchema = { type: 'object', properties: { description: s('Line description', { minLength: 1 }), quantity: n('Quantity (default 1)', { exclusiveMinimum: 0 }), unitPrice: n('Unit price', { minimum: 0 }) }, required: ['description', 'unitPrice'], additionalProperties: false };
    add('list_invoices', 'List invoices', 'List invoices, optionally by status.', obj({ status: s('Status (draft is the same as open; overdue is open or sent past its due date)', { enum: ['open', 'draft', 'sent', 'paid', 'void', 'overdue'] }), limit: limitProp, offset: offsetProp }),
        async (a, ctx) => page([...ctx.ws.invoices.values()].filter(x => !a.status || x.status === a.status
            || (a.status === 'draft' && x.status === 'open')
            || (a.status === 'overdue' && isOverdue(x, state.now()))), a));
    add('get_invoice', 'Get invoice', 'One invoice by id.', obj({ invoiceId: idProp('invoice', 'invc_') }, ['invoiceId']),
        async (a, ctx) => need(ctx.ws.invoices, a.invoiceId, 'invoice'));
    add('mark_invoice_sent', 'Mark invoice sent', 'Publish a draft invoice: marks it sent.', obj({ invoiceId: idProp('invoice', 'invc_') }, ['invoiceId']),
        async (a, ctx) => {
            const inv = need(ctx.ws.invoices, a.invoiceId, 'invoice');
            if (inv.status !== 'open' && inv.status !== 'sent') throw new ToolError('conflict', `Invoice is ${inv.status}; only an open (draft) invoice can be sent.`, { reason: `invoice_${inv.status}` });
            inv.status = 'sent'; inv.sentAt = inv.sentAt ?? state.nowIso();
            return inv;
        }, { annotations: { openWorldHint: true } });
    add('get_invoice_stats', 'Get invoice stats', 'Invoice counts and totals by status.', obj({}),
        async (a, ctx) => {
            const all = [...ctx.ws.invoices.values()];
            const byStatus = {};
            for (const st of ['open', 'sent', 'paid', 'void']) {
                const xs = all.filter(x => x.status === st);
                byStatus[st] = { count: xs.length, total: Math.round(xs.reduce((s2, x) => s2 + x.total, 0) * 100) / 100 };
            }
            const overdue = all.filter(x => isOverdue(x, state.now()));
            return { count: all.length, currency: ctx.ws.currency, byStatus, overdue: { count: overdue.length, total: Math.round(overdue.reduce((s2, x) => s2 + x.total, 0) * 100) / 100 } };
        });
    add('create_invoice', 'Create invoice', 'Create an open (draft) invoice.',
        obj({ contactId: s('Contact id (ct_...)'), customerName: s('Customer name', { maxLength: 120 }), items: { type: 'array', items: itemSchema, minItems: 1, maxItems: 100, description: 'Line items' }, dueDate: s('Due date, YYYY-MM-DD', { format: 'date' }) }, ['items']),
        async (a, ctx) => {
            if (a.contactId) need(ctx.ws.contacts, a.contactId, 'contact');
            const ws = ctx.ws;
            const inv = { id: newId('invc_'), number: `INV-${String(++ws.invoiceSeq).padStart(4, '0')}`, contactId: a.contactId ?? null, customerName: a.customerName ?? null, items: a.items.map(it => ({ description: it.description, quantity: it.quantity ?? 1, unitPrice: it.unitPrice })), total: invoiceTotals(a.items), currency: ws.currency, status: 'open', dueDate: a.dueDate ?? null, createdAt: state.nowIso() };
            ws.invoices.set(inv.id, inv);
            return inv;
        });
    add('mark_invoice_paid', 'Mark invoice paid', 'Record payment of an open invoice.',
        obj({ invoiceId: idProp('invoice', 'invc_'), method: s('Payment method', { enum: ['cash', 'card', 'bank_transfer', 'other'] }) }, ['invoiceId']),
        async (a, ctx) => {
            const inv = need(ctx.ws.invoices, a.invoiceId, 'invoice');
            if (inv.status !== 'open' && inv.status !== 'sent') throw new ToolError('conflict', `Invoice is ${inv.status}, not open.`, { reason: `invoice_${inv.status}` });
            inv.status = 'paid'; inv.paidAt = state.nowIso(); inv.paymentMethod = a.method ?? 'other';
            return inv;
        });
    add('void_invoice', 'Void invoice', 'Void an open invoice.', obj({ invoiceId: idProp('invoice', 'invc_'), reason: s('Reason', { maxLength: 500 }) }, ['invoiceId']),
        async (a, ctx) => {
            const inv = need(ctx.ws.invoices, a.invoiceId, 'invoice');
            if (inv.status !== 'open' && inv.status !== 'sent') throw new ToolError('conflict', `Invoice is ${inv.status}, not open.`, { reason: `invoice_${inv.status}` });
            inv.status = 'void'; inv.voidedAt = state.nowIso(); inv.voidReason = a.reason ?? null;
            return inv;
        });
    add('send_invoice_email', 'E-mail invoice', 'E-mail an invoice to the customer (lands in the sandbox outbox).',
        obj({ invoiceId: idProp('invoice', 'invc_'), to: emailProp('Recipient') }, ['invoiceId', 'to']),
        async (a, ctx) => {
            const inv = need(ctx.ws.invoices, a.invoiceId, 'invoice');
            const m = state.sendMail({ to: a.to, kind: 'invoice', ref: inv.id, subject: `Invoice ${inv.number} from ${ctx.ws.name}`, body: `Invoice ${inv.number}\nTotal: ${inv.total} ${inv.currency}\nStatus: ${inv.status}\n` });
            return { sent: true, invoiceId: inv.id, to: a.to, messageId: m ? m.messageId : null };
        }, { annotations: { openWorldHint: true } });

    // -- account, plan --
    add('list_my_companies', 'List my companies', "The current user's companies (workspaces), with the user's id and e-mail.", obj({}),
        async (a, ctx) => ({
            userId: ctx.user.userId, email: ctx.user.email, name: ctx.user.name, role: ctx.user.role,
            companies: [{ companyId: ctx.ws.companyId, organisationId: ctx.ws.organisationId, name: ctx.ws.name, role: ctx.user.role, plan: ctx.ws.plan, industry: ctx.ws.industry, country: ctx.ws.country, timezone: ctx.ws.timezone, current: true }],
        }), {
            outputSchema: { type: 'object', required: ['data'], properties: { data: { type: 'object', required: ['userId', 'email', 'companies'], properties: { userId: { type: 'string' }, email: { type: 'string' }, name: { type: ['string', 'null'] }, role: { type: 'string' }, companies: { type: 'array', items: { type: 'object', required: ['companyId', 'name'], properties: { companyId: { type: 'string' }, organisationId: { type: 'string' }, name: { type: 'string' }, role: { type: 'string' }, plan: { type: 'string' }, current: { type: 'boolean' } } } } } } } },
        });
    add('switch_company', 'Switch company', "Make one of the user's companies the active one for this key.", obj({ companyId: idProp('company', 'co_') }, ['companyId']),
        async (a, ctx) => {
            if (a.companyId !== ctx.ws.companyId) throw new ToolError('not_found', `You are not a member of company ${a.companyId}; list_my_companies lists yours.`, { resource: 'company', id: a.companyId });
            return { companyId: ctx.ws.companyId, organisationId: ctx.ws.organisationId, name: ctx.ws.name, role: ctx.user.role, switched: true };
        }, { annotations: { idempotentHint: true } });
    add('get_dashboard_stats', 'Get dashboard stats', "Today's headline numbers for the active company.", obj({}),
        async (a, ctx) => {
            const ws = ctx.ws, today = new Date(state.now()).toISOString().slice(0, 10);
            const bk = [...ws.bookings.values()], inv = [...ws.invoices.values()];
            return {
                date: today, companyId: ws.companyId, currency: ws.currency,
                bookingsToday: bk.filter(x => x.status !== 'cancelled' && x.start.slice(0, 10) === today).length,
                upcomingBookings: bk.filter(x => x.status !== 'cancelled' && Date.parse(x.start) >= state.now()).length,
                members: ws.members.size, contacts: ws.contacts.size, services: ws.services.size,
                openInvoices: inv.filter(x => x.status === 'open' || x.status === 'sent').length,
                revenuePaid: Math.round(inv.filter(x => x.status === 'paid').reduce((s2, x) => s2 + x.total, 0) * 100) / 100,
                plan: ws.plan,
            };
        });
    add('get_plan_status', 'Get plan status', 'Current plan, limits and usage of the workspace.', obj({}),
        async (a, ctx) => {
            const ws = ctx.ws, p = PLANS[ws.plan];
            return { plan: ws.plan, planCode: p.planCode, planId: p.planId, status: 'active', limits: p.limits, usage: { services: ws.services.size, contacts: ws.contacts.size, staff: [...state.users.values()].filter(u => u.companyId === ws.companyId).length, whatsappMessagesThisMonth: ws.whatsappSent.length, campaignsThisMonth: ws.campaigns.size }, features: p.features };
        }, {
            outputSchema: { type: 'object', required: ['data'], properties: { data: { type: 'object', required: ['plan', 'status', 'limits'], properties: { plan: { type: 'string', enum: PLAN_ORDER }, status: { type: 'string' }, limits: { type: 'object', additionalProperties: { type: 'integer' } }, usage: { type: 'object' }, features: { type: 'array', items: { type: 'string' } } } } } },
        });
    add('check_plan_operation', 'Check plan operation', 'Preflight a write against the plan: a tool (toolName), a quota (quotaCode with the planned increment delta) or a module (moduleCode). Answers allowed, or not with the required plan and an upgradeAction.',
        obj({ toolName: s('Tool name to check, e.g. create_campaign', { minLength: 1 }), tool: s('Tool name (older name of toolName)', { minLength: 1 }), quotaCode: s('Quota code, e.g. contacts', { enum: Object.keys(PLANS.free.limits) }), moduleCode: s('Module code, e.g. whatsapp', { minLength: 1 }), delta: i('Planned usage increment (default 1)', { minimum: 1, maximum: 1000000 }) }),
        async (a, ctx) => {
            const ws = ctx.ws, toolName = a.toolName ?? a.tool;
            if (!toolName && !a.quotaCode && !a.moduleCode) throw new ToolError('invalid_arguments', 'Give toolName, quotaCode or moduleCode.', { field: 'toolName' });
            const out = { allowed: true, plan: ws.plan, planCode: PLANS[ws.plan].planCode, checks: [] };
            const deny = (check, requiredPlan, reason) => {
                out.allowed = false;
                check.allowed = false; check.reason = reason;
                if (!out.requiredPlan || PLAN_ORDER.indexOf(requiredPlan) > PLAN_ORDER.indexOf(out.requiredPlan)) {
                    out.requiredPlan = requiredPlan;
                    out.upgradeAction = { tool: 'create_plan_upgrade_link', reason, url: `${LOGIN_URL}/settings/billing?plan=${requiredPlan}`, arguments: { planCode: PLANS[requiredPlan].planCode, confirm: true } };
                }
            };
            if (toolName) {
                if (!ctx.toolNames.has(toolName)) throw new ToolError('not_found', `No tool named ${toolName}.`, { resource: 'tool', id: toolName });
                const c = { kind: 'tool', toolName, allowed: true };
                out.checks.push(c);
                out.tool = toolName;
                if (!planAllows(ws, toolName)) deny(c, GATED[toolName].requiredPlan, `${toolName} needs the ${GATED[toolName].requiredPlan} plan (${GATED[toolName].feature}).`);
            }
            if (a.quotaCode) {
                const delta = a.delta ?? 1, limit = PLANS[ws.plan].limits[a.quotaCode];
                const used = { services: ws.services.size, contacts: ws.contacts.size, staff: [...state.users.values()].filter(u => u.companyId === ws.companyId).length, whatsappMessagesPerMonth: ws.whatsappSent.length, campaignsPerMonth: ws.campaigns.size }[a.quotaCode];
                const c = { kind: 'quota', quotaCode: a.quotaCode, used, limit, delta, remaining: Math.max(0, limit - used), allowed: true };
                out.checks.push(c);
                if (used + delta > limit) {
                    const next = PLAN_ORDER.find(p => PLANS[p].limits[a.quotaCode] >= used + delta) ?? 'growth';
                    deny(c, next, `${a.quotaCode}: ${used} used of ${limit}; ${delta} more does not fit the ${ws.plan} plan.`);
                }
            }
            if (a.moduleCode) {
                const c = { kind: 'module', moduleCode: a.moduleCode, allowed: true };
                out.checks.push(c);
                if (!PLANS[ws.plan].features.includes(a.moduleCode)) {
                    const next = PLAN_ORDER.find(p => PLANS[p].features.includes(a.moduleCode));
                    if (!next) throw new ToolError('not_found', `No module named ${a.moduleCode}.`, { resource: 'module', id: a.moduleCode });
                    deny(c, next, `The ${a.moduleCode} module needs the ${next} plan.`);
                }
            }
            return out;
        }, { annotations: { readOnlyHint: true } });
    add('list_plan_options', 'List plan options', 'Plans that the workspace can move to, with prices and limits.', obj({}),
        async (a, ctx) => PLAN_ORDER.map(p => ({ ...PLANS[p], current: p === ctx.ws.plan })));
    add('create_plan_upgrade_link', 'Create plan upgrade link', 'Create a Stripe checkout link to move to a higher plan (planCode such as favcrm-lite, or planId), or a Stripe billing portal link when the workspace is already on that paid plan or a higher one. Needs confirm: true (the user must agree).',
        obj({ planCode: s('Target plan code, e.g. favcrm-lite', { minLength: 1 }), planId: s('Target plan id (plan_...)', { minLength: 1 }), plan: s('Target plan (older form)', { enum: ['starter', 'growth'] }), billingCycle: s('Billing cycle (default monthly)', { enum: ['monthly', 'yearly'], default: 'monthly' }), returnUrl: s('Where Stripe sends the user back to', { format: 'uri' }), confirm: b('Must be true: the user agreed to the upgrade') }),
        async (a, ctx) => {
            const ref = a.planCode ?? a.planId ?? a.plan;
            if (!ref) throw new ToolError('invalid_arguments', 'Give planCode or planId.', { field: 'planCode' });
            const target = planByRef(ref);
            if (!target) throw new ToolError('not_found', `No plan ${ref}; list_plan_options lists them.`, { resource: 'plan', id: ref });
            if (a.confirm !== true) throw new ToolError('confirmation_required', 'Creating an upgrade link starts a paid checkout; ask the user, then call again with confirm: true.', { field: 'confirm' });
            const cycle = a.billingCycle ?? 'monthly';
            const cur = PLAN_ORDER.indexOf(ctx.ws.plan), want = PLAN_ORDER.indexOf(target);
            if (want <= cur) {
                if (a.plan || ctx.ws.plan === 'free') throw new ToolError('conflict', `The workspace is already on ${ctx.ws.plan}.`, { reason: 'not_an_upgrade' });
                return { kind: 'portal', plan: ctx.ws.plan, planCode: PLANS[ctx.ws.plan].planCode, url: `https://billing.stripe.com/p/session/test_${randomString(32)}`, returnUrl: a.returnUrl ?? `${LOGIN_URL}/settings/billing`, expiresAt: new Date(state.now() + 3600e3).toISOString() };
            }
            const p = PLANS[target];
            return { kind: 'checkout', plan: target, planCode: p.planCode, planId: p.planId, billingCycle: cycle, url: `https://checkout.stripe.com/c/pay/cs_test_${randomString(40)}`, returnUrl: a.returnUrl ?? `${LOGIN_URL}/settings/billing`, expiresAt: new Date(state.now() + 24 * 3600e3).toISOString(), price: cycle === 'yearly' ? p.priceMonthly * 10 : p.priceMonthly, priceMonthly: p.priceMonthly, currency: p.currency };
        }, { annotations: { openWorldHint: true } });

    // -- WhatsApp, campaigns --
    add('get_whatsapp_connection_status', 'Get WhatsApp connection status', 'Whether a WhatsApp Business number is connected.', obj({}),
        async (a, ctx) => ({ connected: ctx.ws.whatsapp.connected, phoneNumber: ctx.ws.whatsapp.phoneNumber, status: ctx.ws.whatsapp.connected ? 'connected' : 'not_connected', connectUrl: `${LOGIN_URL}/settings/whatsapp` }),
        { annotations: { openWorldHint: true } });
    add('create_whatsapp_connect_link', 'Create WhatsApp connect link', "A browser link to Meta's Embedded Signup that connects a WhatsApp Business number (cloud_api: a new number on the Cloud API; coexistence: keep using the WhatsApp Business app on the same number).",
        obj({ onboardingMode: s('Onboarding mode (default cloud_api)', { enum: ['cloud_api', 'coexistence'], default: 'cloud_api' }), ttlMinutes: i('Link lifetime in minutes (default 30)', { minimum: 5, maximum: 1440 }) }),
        async (a, ctx) => {
            const ttl = a.ttlMinutes ?? 30, mode = a.onboardingMode ?? 'cloud_api';
            return { url: `${LOGIN_URL}/whatsapp/connect/${randomString(32)}?mode=${mode}`, onboardingMode: mode, expiresAt: new Date(state.now() + ttl * 60e3).toISOString(), ttlMinutes: ttl, alreadyConnected: ctx.ws.whatsapp.connected };
        }, { annotations: { openWorldHint: true } });
    add('send_whatsapp_message', 'Send WhatsApp message', 'Send a WhatsApp message to a phone number (starter plan and a connected number needed).',
        obj({ to: s('Recipient, E.164', { pattern: '^\\+[1-9][0-9]{6,14}$' }), text: s('Message text', { minLength: 1, maxLength: 4096 }) }, ['to', 'text']),
        async (a, ctx) => {
            requirePlan(ctx.ws, 'send_whatsapp_message');
            if (!ctx.ws.whatsapp.connected) throw new ToolError('whatsapp_not_connected', 'No WhatsApp number is connected; connect one in the portal first.', { connectUrl: `${LOGIN_URL}/settings/whatsapp` });
            const m = { id: newId('wamid_'), to: a.to, text: a.text, status: 'sent', sentAt: state.nowIso() };
            ctx.ws.whatsappSent.push(m);
            return m;
        }, { annotations: { openWorldHint: true } });
    add('create_campaign', 'Create campaign', 'Create a marketing campaign (starter plan needed).',
        obj({ name: s('Campaign name', { minLength: 1, maxLength: 120 }), channel: s('Channel', { enum: ['whatsapp', 'email'] }), message: s('Message', { minLength: 1, maxLength: 4096 }) }, ['name', 'channel', 'message']),
        async (a, ctx) => {
            requirePlan(ctx.ws, 'create_campaign');
            const c = { id: newId('cmp_'), name: a.name, channel: a.channel, message: a.message, status: 'draft', createdAt: state.nowIso() };
            ctx.ws.campaigns.set(c.id, c);
            return c;
        });

    // -- guidance, knowledge, issues --
    add('query_favcrm_platform', 'Ask about the FavCRM platform', 'Ask how FavCRM works before guessing tool names or shapes. No auth.',
        obj({ question: s('Question in plain words', { minLength: 1, maxLength: 2000 }) }, ['question']),
        async a => {
            const hits = PLATFORM_GUIDE.filter(([re]) => re.test(a.question));
            const chosen = hits.length ? hits : [PLATFORM_GUIDE[0]];
            return { answer: chosen.map(h => h[1]).join(' '), suggestedTools: [...new Set(chosen.flatMap(h => h[2]))], docsUrl: 'https://docs.favcrm.io/mcp' };
        }, { ...noAuth, annotations: { readOnlyHint: true },
            // the platform guide and the signup schemas, as resource links (lib/resources.mjs serves them)
            links: () => [
                { type: 'resource_link', uri: 'favcrm://guide', name: 'guide', title: 'FavCRM platform guide', mimeType: 'text/markdown' },
                { type: 'resource_link', uri: 'favcrm://schemas/register_organisation_request', name: 'register_organisation_request schema', mimeType: 'application/schema+json' },
            ] });
    add('query_company_knowledge', 'Ask about this company', "Ask a question about the workspace's own data (counts, settings).",
        obj({ question: s('Question', { minLength: 1, maxLength: 2000 }) }, ['question']),
        async (a, ctx) => {
            const ws = ctx.ws;
            return { answer: `${ws.name} (${ws.industry}, ${ws.country}, ${ws.timezone}) has ${ws.services.size} services, ${ws.contacts.size} contacts, ${ws.bookings.size} bookings, ${ws.members.size} members and ${ws.invoices.size} invoices on the ${ws.plan} plan.`, sources: [] };
        }, { annotations: { readOnlyHint: true } });
    add('report_agent_issue', 'Report agent issue', 'Report a missing path or a failing tool to the FavCRM team.',
        obj({ summary: s('One-line summary', { minLength: 3, maxLength: 300 }), details: s('Details', { maxLength: 10000 }), tool: s('Tool involved'), severity: s('Severity', { enum: ['low', 'medium', 'high'] }) }, ['summary']),
        async (a, ctx) => {
            const issue = { issueId: newId('iss_'), received: true, summary: a.summary, tool: a.tool ?? null, severity: a.severity ?? 'medium', createdAt: state.nowIso() };
            ctx.ws.issues.push(issue);
            return issue;
        });

    // -- team onboarding --
    add('create_team_member_invite', 'Invite team member', 'Invite a staff member by e-mail; returns an invite token the invitee uses with accept_team_invite_request/verify.',
        obj({ email: emailProp('Invitee e-mail'), name: s('Invitee name', { maxLength: 120 }), role: s('Role (default staff)', { enum: ['staff', 'manager'], default: 'staff' }), expiresInHours: i('Invite lifetime in hours (default 168)', { minimum: 1, maximum: 720 }) }, ['email']),
        async (a, ctx) => {
            const staff = [...state.users.values()].filter(u => u.companyId === ctx.ws.companyId).length;
            limitCheck(ctx.ws, 'staff', staff);
            const token = 'inv_' + randomString(32);
            const expiresAtMs = state.now() + (a.expiresInHours ?? 168) * 3600e3;
            state.invites.set(token, { token, email: a.email, name: a.name ?? null, role: a.role ?? 'staff', companyId: ctx.ws.companyId, invitedBy: ctx.user.userId, expiresAtMs, pending: null, accepted: false });
            state.sendMail({ to: a.email, kind: 'invite', ref: null, subject: `You are invited to ${ctx.ws.name} on FavCRM`,
                body: `Hello${a.name ? ' ' + a.name : ''},\n\nYou have been invited to join ${ctx.ws.name} on FavCRM as ${a.role ?? 'staff'}.\nAsk your assistant to accept the invitation with this token:\n\n${token}\n\n-- FavCRM` });
            return { inviteToken: token, email: a.email, role: a.role ?? 'staff', expiresAt: new Date(expiresAtMs).toISOString(), instructions: 'Give the token to the invitee; they call accept_team_invite_request (token) and then accept_team_invite_verify (token, code).' };
        }, { annotations: { openWorldHint: true } });
    const inviteTokenProp = s('Invite token (inv_...)', { pattern: '^inv_' });
    add('accept_team_invite_request', 'Request invite acceptance code', 'E-mails a 6-digit code to the invited address. No auth.',
        obj({ token: inviteTokenProp }, ['token']),
        async (a, ctx) => {
            const inv = state.invites.get(a.token);
            if (!inv || state.now() > inv.expiresAtMs) throw new ToolError('not_found', 'Unknown or expired invite token; ask for a new invitation.', { resource: 'invite', id: null });
            if (inv.accepted) throw new ToolError('expired_code', 'This invitation was already accepted.', { reason: 'already_used' });
            if (state.hasAccount(inv.email)) throw new ToolError('existing_account', 'An account already exists for the invited e-mail. Sign in to the portal instead.', { loginUrl: LOGIN_URL, settingsUrl: `${LOGIN_URL}/settings/mcp` });
            rateLimit(state, `invite:${ctx.ip}`);
            const code = state.newCode();
            const expiresAtMs = state.now() + state.codeTtl * 1000;
            inv.pending = { code, expiresAtMs, wrong: 0, dead: false, used: false };
            const masked = maskEmail(inv.email);
            state.sendMail({ to: inv.email, kind: 'invite-code', ref: null, code, subject: 'Your FavCRM invitation code',
                body: `Hello,\n\nYour FavCRM invitation code is: ${code}\n\nIt expires in ${Math.round(state.codeTtl / 60)} minutes.\n\n-- FavCRM` });
            return { maskedEmail: masked, expiresAt: new Date(expiresAtMs).toISOString(), instructions: `Tell the invitee to check ${masked} for a 6-digit code, then call accept_team_invite_verify with the token and the code.` };
        }, { ...noAuth, annotations: { openWorldHint: true } });
    add('accept_team_invite_verify', 'Verify invite code', "Accept an invitation with the 6-digit code; returns the member's API key once. No auth.",
        obj({ token: inviteTokenProp, code: s('6-digit code', { pattern: '^[0-9]{6}$' }), name: s('Your name', { maxLength: 120 }) }, ['token', 'code']),
        async a => {
            const inv = state.invites.get(a.token);
            if (!inv) throw new ToolError('not_found', 'Unknown invite token.', { resource: 'invite', id: null });
            if (inv.accepted) throw new ToolError('expired_code', 'This invitation was already accepted.', { reason: 'already_used' });
            if (!inv.pending) throw new ToolError('expired_code', 'No code was requested for this invitation; call accept_team_invite_request first.', { reason: 'no_code' });
            checkCode(state, inv.pending, a.code, 'invitation');
            if (state.hasAccount(inv.email)) throw new ToolError('existing_account', 'An account already exists for the invited e-mail.', { loginUrl: LOGIN_URL });
            inv.pending.used = true; inv.accepted = true;
            const ws = state.workspaces.get(inv.companyId);
            const user = state.newUser({ email: inv.email, name: a.name ?? inv.name, role: inv.role, companyId: inv.companyId });
            const apiKey = state.issueKey(user);
            return { userId: user.userId, companyId: ws.companyId, organisationId: ws.organisationId, role: user.role, apiKey, loginUrl: LOGIN_URL, nextSteps: 'Store the key securely (shown once) and send it as "Authorization: Bearer <apiKey>".' };
        }, noAuth);

    // -- sandbox test tools (no auth, always available) --
    const testAnn = { openWorldHint: false, readOnlyHint: true, destructiveHint: false, idempotentHint: false };
    add('sandbox_progress', 'Sandbox: progress', 'Test tool: sends notifications/progress per step (when the request has a progressToken) and one notifications/message, then returns {steps}.',
        obj({ steps: i('Number of steps', { minimum: 0, maximum: 1000 }), delay_ms: i('Delay between steps', { minimum: 0, maximum: 60000 }) }, ['steps']),
        async (a, ctx) => {
            const token = ctx.extra._meta?.progressToken;
            await ctx.extra.sendNotification({ method: 'notifications/message', params: { level: 'info', logger: 'favcrm-sandbox', data: { tool: 'sandbox_progress', steps: a.steps } } });
            for (let k = 1; k <= a.steps; k++) {
                if (a.delay_ms) await sleep(a.delay_ms, ctx.extra.signal);
                if (token !== undefined) await ctx.extra.sendNotification({ method: 'notifications/progress', params: { progressToken: token, progress: k, total: a.steps, message: `step ${k} of ${a.steps}` } });
            }
            return { steps: a.steps, progressToken: token ?? null };
        }, { ...noAuth, annotations: testAnn });
    add('sandbox_elicit', 'Sandbox: elicitation', 'Test tool: sends elicitation/create to the client and returns its answer {action, content}.',
        obj({ message: s('Message shown to the user', { minLength: 1 }) }, ['message']),
        async (a, ctx) => {
            const r = await askClient(ctx, 'elicitation/create', {
                mode: 'form',
                message: a.message,
                requestedSchema: { type: 'object', properties: { name: { type: 'string', title: 'Name', default: 'Ada' }, confirm: { type: 'boolean', title: 'Confirm' }, plan: { type: 'string', title: 'Plan', enum: ['free', 'starter', 'growth'], default: 'starter' } }, required: ['name'] },
            }, 'ElicitResult', 'elicitation', 600000);
            return { action: r.action, content: r.content ?? null };
        }, { ...noAuth, annotations: testAnn });
    add('sandbox_elicit_url', 'Sandbox: URL elicitation', 'Test tool: sends a URL-mode elicitation/create (2025-11-25) and, when the client accepts, notifications/elicitation/complete for its elicitationId (2025 era); returns {action, elicitationId}.',
        obj({ url: s('The URL the user should open', { minLength: 1 }), message: s('Message shown to the user', { minLength: 1 }), elicitationId: s('The elicitation id (default: a new one)', { minLength: 1 }) }, ['url']),
        async (a, ctx) => {
            const caps = ctx.clientCapabilities();
            if (caps && caps.elicitation && !caps.elicitation.url) {
                throw new ToolError('elicitation_unsupported', 'The client did not declare URL-mode elicitation (capabilities.elicitation.url).', { capability: 'elicitation.url' });
            }
            const elicitationId = a.elicitationId ?? newId('elicit_');
            const r = await askClient(ctx, 'elicitation/create', { mode: 'url', message: a.message ?? 'Open the link to finish.', url: a.url, elicitationId }, 'ElicitResult', 'elicitation', 600000);
            // 2026-07-28 has no notifications/elicitation/complete
            if (r.action === 'accept' && ctx.era !== 'modern') await ctx.extra.sendNotification({ method: 'notifications/elicitation/complete', params: { elicitationId } });
            return { action: r.action, elicitationId };
        }, { ...noAuth, annotations: testAnn });
    add('sandbox_sample', 'Sandbox: sampling', 'Test tool: sends sampling/createMessage to the client and returns its answer.',
        obj({ prompt: s('User prompt', { minLength: 1 }), maxTokens: i('Max tokens (default 100)', { minimum: 1 }) }, ['prompt']),
        async (a, ctx) => {
            const r = await askClient(ctx, 'sampling/createMessage', { messages: [{ role: 'user', content: { type: 'text', text: a.prompt } }], maxTokens: a.maxTokens ?? 100 }, 'CreateMessageResult', 'sampling', 600000);
            return r;
        }, { ...noAuth, annotations: testAnn });
    add('sandbox_roots', 'Sandbox: roots', 'Test tool: sends roots/list to the client and returns its answer.', obj({}),
        async (a, ctx) => askClient(ctx, 'roots/list', {}, 'ListRootsResult', 'roots'), { ...noAuth, annotations: testAnn });
    add('sandbox_ping', 'Sandbox: ping', 'Test tool: sends a ping request to the client inside the response stream, then answers.', obj({}),
        async (a, ctx) => {
            const t0 = Date.now();
            await askClient(ctx, 'ping', undefined, 'EmptyResult', null, 30000); // 2026: unsupported_in_era
            return { pong: true, roundTripMs: Date.now() - t0 };
        }, { ...noAuth, annotations: testAnn });
    add('sandbox_resume', 'Sandbox: resumability', 'Test tool (session mode): sends a log notification, closes the SSE stream before the result, and stores the result in the event store; reconnect with GET + Last-Event-ID to receive it.',
        obj({ delay_ms: i('Wait this long after closing the stream before producing the result (default 0)', { minimum: 0, maximum: 60000 }) }),
        async (a, ctx) => {
            await ctx.extra.sendNotification({ method: 'notifications/message', params: { level: 'info', logger: 'favcrm-sandbox', data: { tool: 'sandbox_resume', note: 'stream will close before the result' } } });
            let closed = false;
            if (ctx.mode === 'session' && ctx.session?.transport && !ctx.jsonResponse) {
                if (ctx.extra.closeSSEStream) ctx.extra.closeSSEStream(); else ctx.session.transport.closeSSEStream(ctx.extra.requestId);
                closed = true;
            }
            if (a.delay_ms) await sleep(a.delay_ms, ctx.extra.signal);
            return { resumed: closed, mode: ctx.mode };
        }, { ...noAuth, annotations: testAnn });
    add('sandbox_slow', 'Sandbox: slow', 'Test tool: answers after ms milliseconds; stops quietly when the client cancels.',
        obj({ ms: i('Delay in milliseconds', { minimum: 0, maximum: 600000 }) }, ['ms']),
        async (a, ctx) => { await sleep(a.ms, ctx.extra.signal); return { sleptMs: a.ms }; }, { ...noAuth, annotations: testAnn });
    add('sandbox_echo', 'Sandbox: echo', 'Test tool: returns {data: value}.', { $schema: D7, type: 'object', properties: { value: { description: 'Any JSON value' } }, required: ['value'] },
        async a => a.value, { ...noAuth, annotations: testAnn });

    add('sandbox_echo_args', 'Sandbox: echo argument encoding', 'Test tool: returns how the arrays/objects in the arguments arrived on the wire: raw_tags and raw_meta are the JSON text of tags and meta as received.',
        { $schema: D7, type: 'object', properties: { tags: { type: 'array', items: { type: 'string' }, description: 'An array (send [] when empty)' }, meta: { type: 'object', description: 'An object (send {} when empty)' } } },
        async a => ({ raw_tags: a.tags === undefined ? null : JSON.stringify(a.tags), raw_meta: a.meta === undefined ? null : JSON.stringify(a.meta), arguments: a }),
        { ...noAuth, annotations: testAnn, skipValidation: true });

    // 2026-07-28 only (listed to 2026 clients): parameters mirrored in Mcp-Param-* headers.
    add('sandbox_headers', 'Sandbox: x-mcp-header parameters', 'Test tool (2026-07-28): region, priority, dryRun and filter.tag are sent as Mcp-Param-Region, -Priority, -DryRun and -Tag headers; the server checks them against the body (400 -32020 on a mismatch). Returns the arguments and the Mcp-Param-* headers as received.',
        { $schema: D7, type: 'object', properties: {
            region: { type: 'string', description: 'Region', 'x-mcp-header': 'Region' },
            priority: { type: 'integer', description: 'Priority', 'x-mcp-header': 'Priority' },
            dryRun: { type: 'boolean', description: 'Dry run', 'x-mcp-header': 'DryRun' },
            filter: { type: 'object', properties: { tag: { type: 'string', description: 'Tag', 'x-mcp-header': 'Tag' } } },
            query: { type: 'string', description: 'Not mirrored' },
        } },
        async (a, ctx) => ({ arguments: a, headers: Object.fromEntries(Object.entries(ctx.extra.requestInfo?.headers || {}).filter(([k]) => k.toLowerCase().startsWith('mcp-param-'))) }),
        { ...noAuth, annotations: testAnn, modernOnly: true });
    add('sandbox_bad_headers', 'Sandbox: invalid x-mcp-header', 'Test tool (2026-07-28): its x-mcp-header sits on a number parameter, which the revision forbids, so a conforming client drops this tool from tools/list.',
        { $schema: D7, type: 'object', properties: { amount: { type: 'number', description: 'Amount', 'x-mcp-header': 'Amount' } } },
        async a => a, { ...noAuth, annotations: testAnn, modernOnly: true });

    const byName = new Map(T.map(t => [t.name, t]));
    return { list: T, byName, toolNames: new Set(byName.keys()) };
}

/** Runs one tools/call: argument validation, auth context, handler, result shaping. */
export async function callTool(tools, name, args, ctx) {
    const tool = tools.byName.get(name);
    if (!tool) return null;
    const result = await callToolInner(tools, tool, name, args, ctx);
    if (result.resultType === 'input_required') return result;
    // A tool with an outputSchema keeps structuredContent for its data: SDK
    // clients check any structuredContent against that schema, errors too.
    // Its error details travel in _meta["favcrm/error"] instead.
    if (result.isError && tool.outputSchema && result.structuredContent) {
        const { error } = result.structuredContent;
        delete result.structuredContent;
        result._meta = { ...(result._meta || {}), 'favcrm/error': error };
    }
    return result;
}

async function callToolInner(tools, tool, name, args, ctx) {
    if (tool.auth && !ctx.auth) {
        // Normally unreachable: the HTTP layer answers 401 first.
        return errorResult('unauthorized', 'This tool needs "Authorization: Bearer fav_mcp_...".');
    }
    const input = args ?? {};
    const bad = tool.skipValidation ? null : validate(tool.inputSchema, input);
    if (bad) return errorResult('invalid_arguments', `Invalid arguments for ${name}: ${bad.message}`, { path: bad.path, keyword: bad.keyword });
    const hctx = { ...ctx, user: ctx.auth?.user, ws: ctx.auth?.ws, toolNames: tools.toolNames, toolName: name };
    try {
        const payload = await tool.handler(input, hctx);
        const result = okResult(payload === undefined ? null : payload);
        if (tool.links) result.content.push(...tool.links(input, hctx));
        return result;
    } catch (e) {
        if (e instanceof ToolError) return errorResult(e.code, e.message, e.fields);
        if (e instanceof InputRequired) return e.result;
        throw e;
    }
}

export function toolListing(t) {
    const out = { name: t.name, title: t.title, description: t.description, inputSchema: t.inputSchema, annotations: t.annotations };
    if (t.outputSchema) out.outputSchema = t.outputSchema;
    return out;
}

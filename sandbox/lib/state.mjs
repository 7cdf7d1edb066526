// In-memory state of the sandbox: the clock, accounts, workspaces, API keys,
// pending signup/invite codes, per-IP rate windows and the e-mail outbox.
// Nothing here ever logs a key or a code.
import { createHash, randomBytes, randomInt } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';

const ALNUM = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789';
const LOWER = 'abcdefghijklmnopqrstuvwxyz0123456789';

/** n characters drawn uniformly from alphabet (rejection sampling, no modulo bias). */
export function randomString(n, alphabet = ALNUM) {
    let out = '';
    while (out.length < n) {
        const buf = randomBytes(n * 2);
        for (const b of buf) {
            const limit = 256 - (256 % alphabet.length);
            if (b < limit) out += alphabet[b % alphabet.length];
            if (out.length === n) break;
        }
    }
    return out;
}

export const newId = (prefix, n = 16) => `${prefix}${randomString(n, LOWER)}`;
export const sha256 = s => createHash('sha256').update(s).digest('hex');

export const CURRENCY_BY_COUNTRY = { HK: 'HKD', US: 'USD', GB: 'GBP', SG: 'SGD', AU: 'AUD', CA: 'CAD', JP: 'JPY', TW: 'TWD', CN: 'CNY', NZ: 'NZD', MY: 'MYR', IN: 'INR' };
export const TZ_BY_COUNTRY = { HK: 'Asia/Hong_Kong', US: 'America/New_York', GB: 'Europe/London', SG: 'Asia/Singapore', AU: 'Australia/Sydney', CA: 'America/Toronto', JP: 'Asia/Tokyo', TW: 'Asia/Taipei', CN: 'Asia/Shanghai', NZ: 'Pacific/Auckland', MY: 'Asia/Kuala_Lumpur', IN: 'Asia/Kolkata', DE: 'Europe/Berlin', FR: 'Europe/Paris' };

export const PLANS = {
    free: { plan: 'free', planCode: 'favcrm-free', planId: 'plan_free', name: 'Free', priceMonthly: 0, currency: 'USD', limits: { services: 10, contacts: 500, staff: 3, whatsappMessagesPerMonth: 0, campaignsPerMonth: 0 }, features: ['contacts', 'bookings', 'membership', 'invoices'] },
    starter: { plan: 'starter', planCode: 'favcrm-lite', planId: 'plan_starter', name: 'Starter', priceMonthly: 29, currency: 'USD', limits: { services: 100, contacts: 5000, staff: 10, whatsappMessagesPerMonth: 1000, campaignsPerMonth: 10 }, features: ['contacts', 'bookings', 'membership', 'invoices', 'whatsapp', 'campaigns'] },
    growth: { plan: 'growth', planCode: 'favcrm-growth', planId: 'plan_growth', name: 'Growth', priceMonthly: 79, currency: 'USD', limits: { services: 1000, contacts: 50000, staff: 50, whatsappMessagesPerMonth: 10000, campaignsPerMonth: 100 }, features: ['contacts', 'bookings', 'membership', 'invoices', 'whatsapp', 'campaigns', 'api-priority'] },
};
export const PLAN_ORDER = ['free', 'starter', 'growth'];

/** Minimal RFC 5322 date: "Mon, 11 May 2026 12:00:00 +0000". */
export function rfc5322Date(ms) {
    return new Date(ms).toUTCString().replace('GMT', '+0000');
}

export class State {
    constructor(opts) {
        this.codeTtl = opts.codeTtl;          // seconds
        this.ratePerHour = opts.ratePerHour;
        this.ratePerDay = opts.ratePerDay;
        this.outboxDir = opts.outboxDir;
        this.maxWrongCodes = 5;
        this.reset();
    }

    reset() {
        this.clockOffsetMs = 0;
        this.accountsByEmail = new Map();   // email(lower) -> userId
        this.users = new Map();             // userId -> {userId,email,name,role,companyId}
        this.workspaces = new Map();        // companyId -> workspace
        this.keys = new Map();              // sha256(key) -> {userId, companyId, revoked, createdAt, hint}
        this.signups = new Map();           // requestId -> pending signup
        this.invites = new Map();           // token -> invite
        this.rate = new Map();              // bucket -> [timestamps ms]
        this.dropMail = new Map();          // email(lower) -> count
        if (this.outbox) {
            for (const m of this.outbox) {
                try { fs.unlinkSync(path.join(this.outboxDir, m.file)); } catch { /* gone already */ }
            }
        }
        this.outbox = [];
        this.mailSeq = 0;
    }

    now() { return Date.now() + this.clockOffsetMs; }
    nowIso() { return new Date(this.now()).toISOString(); }

    // ---- rate limiting (sliding windows on the sandbox clock) -------------
    /** Returns null when allowed (and records the hit) or {retryAfter, window, limit}. */
    rateHit(bucket) {
        const now = this.now();
        const hour = 3600e3, day = 86400e3;
        const list = (this.rate.get(bucket) || []).filter(t => t > now - day && t <= now + 1);
        const inHour = list.filter(t => t > now - hour);
        let block = null;
        if (inHour.length >= this.ratePerHour) {
            const oldest = inHour[inHour.length - this.ratePerHour];
            block = { retryAfter: Math.max(1, Math.ceil((oldest + hour - now) / 1000)), window: 'hour', limit: this.ratePerHour };
        }
        if (list.length >= this.ratePerDay) {
            const oldest = list[list.length - this.ratePerDay];
            const ra = Math.max(1, Math.ceil((oldest + day - now) / 1000));
            if (!block || ra > block.retryAfter) block = { retryAfter: ra, window: 'day', limit: this.ratePerDay };
        }
        this.rate.set(bucket, list);
        if (block) return block;
        list.push(now);
        return null;
    }

    // ---- accounts, workspaces, keys ---------------------------------------
    hasAccount(email) { return this.accountsByEmail.has(email.toLowerCase()); }

    newWorkspace({ organisationName, industry, country, timezone }) {
        const ws = {
            organisationId: newId('org_'),
            companyId: newId('co_'),
            name: organisationName,
            industry: industry || 'other',
            country: country || 'US',
            timezone: timezone || TZ_BY_COUNTRY[country] || 'UTC',
            currency: CURRENCY_BY_COUNTRY[country] || 'USD',
            plan: 'free',
            whatsapp: { connected: false, phoneNumber: null },
            createdAt: this.nowIso(),
            services: new Map(), bookings: new Map(), contacts: new Map(), members: new Map(),
            tiers: new Map(), invoices: new Map(), campaigns: new Map(), issues: [], invoiceSeq: 0,
            whatsappSent: [],
        };
        this.workspaces.set(ws.companyId, ws);
        return ws;
    }

    newUser({ email, name, role, companyId }) {
        const user = { userId: newId('usr_'), email, name: name || null, role, companyId, createdAt: this.nowIso() };
        this.users.set(user.userId, user);
        this.accountsByEmail.set(email.toLowerCase(), user.userId);
        return user;
    }

    issueKey(user) {
        const apiKey = 'fav_mcp_' + randomString(32);
        this.keys.set(sha256(apiKey), { userId: user.userId, companyId: user.companyId, revoked: false, createdAt: this.nowIso(), hint: apiKey.slice(-4) });
        return apiKey;
    }

    /** Creates owner account + workspace; returns the once-only credential bundle. */
    createOwnerAccount({ email, organisationName, industry, country, timezone }) {
        const ws = this.newWorkspace({ organisationName, industry, country, timezone });
        const user = this.newUser({ email, name: null, role: 'owner', companyId: ws.companyId });
        ws.ownerUserId = user.userId;
        const apiKey = this.issueKey(user);
        return { ws, user, apiKey };
    }

    /** Looks up a bearer token. Returns {user, ws, keyHash} or null (unknown or revoked). */
    authenticate(token) {
        if (typeof token !== 'string' || !token.startsWith('fav_mcp_')) return null;
        const h = sha256(token);
        const rec = this.keys.get(h);
        if (!rec || rec.revoked) return null;
        const user = this.users.get(rec.userId);
        const ws = this.workspaces.get(rec.companyId);
        if (!user || !ws) return null;
        return { user, ws, keyHash: h };
    }

    revoke(token) {
        const rec = this.keys.get(sha256(String(token)));
        if (!rec) return false;
        rec.revoked = true;
        return true;
    }

    // ---- codes ------------------------------------------------------------
    newCode() { return String(randomInt(0, 1000000)).padStart(6, '0'); }

    // ---- outbox -----------------------------------------------------------
    /** Writes one RFC 5322 message file unless a drop_mail counter swallows it. */
    sendMail({ to, subject, body, code = null, kind = 'other', ref = null }) {
        const key = to.toLowerCase();
        const drops = this.dropMail.get(key) || 0;
        if (drops > 0) {
            if (drops === 1) this.dropMail.delete(key); else this.dropMail.set(key, drops - 1);
            return null;
        }
        const ms = this.now();
        const seq = ++this.mailSeq;
        const stamp = new Date(ms).toISOString().replace(/[-:]/g, '').replace('.', '');
        const file = `${stamp}-${String(seq).padStart(6, '0')}-${kind}.eml`;
        const messageId = `<${randomString(24, LOWER)}@sandbox.favcrm.io>`;
        const date = rfc5322Date(ms);
        const headers = [
            'From: FavCRM <no-reply@favcrm.io>',
            `To: ${to}`,
            `Subject: ${subject}`,
            `Date: ${date}`,
            `Message-ID: ${messageId}`,
            'MIME-Version: 1.0',
            'Content-Type: text/plain; charset=utf-8',
            'Content-Transfer-Encoding: 8bit',
            `X-FavCRM-Kind: ${kind}`,
        ];
        if (ref) headers.push(`X-FavCRM-Ref: ${ref}`);
        const text = headers.join('\r\n') + '\r\n\r\n' + body.replace(/\r?\n/g, '\r\n') + '\r\n';
        fs.writeFileSync(path.join(this.outboxDir, file), text, { mode: 0o600 });
        const msg = { file, to, subject, code, date: new Date(ms).toISOString(), messageId, kind, ref, body };
        this.outbox.push(msg);
        return msg;
    }
}

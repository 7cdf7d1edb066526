// A small JSON Schema checker for the keywords the sandbox's own tool schemas
// use (type, required, properties, additionalProperties, enum, const,
// minLength/maxLength, pattern, format email/date/date-time, minimum/maximum,
// items, minItems/maxItems). Returns the first failure with a JSON Pointer.

const escapePtr = s => String(s).replace(/~/g, '~0').replace(/\//g, '~1');

function typeOf(v) {
    if (v === null) return 'null';
    if (Array.isArray(v)) return 'array';
    if (typeof v === 'number') return Number.isInteger(v) ? 'integer' : 'number';
    return typeof v;
}

function typeMatches(v, t) {
    const actual = typeOf(v);
    if (t === 'number') return actual === 'number' || actual === 'integer';
    return actual === t;
}

const FORMATS = {
    email: s => /^[^\s@]+@[^\s@]+\.[^\s@]+$/.test(s),
    date: s => /^\d{4}-\d{2}-\d{2}$/.test(s) && !Number.isNaN(Date.parse(s + 'T00:00:00Z')),
    'date-time': s => /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(:\d{2}(\.\d+)?)?(Z|[+-]\d{2}:\d{2})$/i.test(s) && !Number.isNaN(Date.parse(s)),
    uri: s => { try { new URL(s); return true; } catch { return false; } },
};

/** Validates value against schema; returns null or {path, keyword, message}. */
export function validate(schema, value, ptr = '') {
    const fail = (keyword, message) => ({ path: ptr, keyword, message: `${ptr || '/'}: ${message}` });
    if (schema === true || schema === undefined) return null;
    if (schema === false) return fail('false', 'no value is allowed here');
    if (schema.type !== undefined) {
        const types = Array.isArray(schema.type) ? schema.type : [schema.type];
        if (!types.some(t => typeMatches(value, t))) return fail('type', `must be ${types.join(' or ')}`);
    }
    if (schema.enum && !schema.enum.some(e => JSON.stringify(e) === JSON.stringify(value))) {
        return fail('enum', `must be one of ${schema.enum.map(e => JSON.stringify(e)).join(', ')}`);
    }
    if (schema.const !== undefined && JSON.stringify(schema.const) !== JSON.stringify(value)) {
        return fail('const', `must be ${JSON.stringify(schema.const)}`);
    }
    if (typeof value === 'string') {
        const len = [...value].length;
        if (schema.minLength !== undefined && len < schema.minLength) return fail('minLength', `must have at least ${schema.minLength} characters`);
        if (schema.maxLength !== undefined && len > schema.maxLength) return fail('maxLength', `must have at most ${schema.maxLength} characters`);
        if (schema.pattern !== undefined && !new RegExp(schema.pattern, 'u').test(value)) return fail('pattern', `does not match the required pattern`);
        if (schema.format && FORMATS[schema.format] && !FORMATS[schema.format](value)) return fail('format', `must be a valid ${schema.format}`);
    }
    if (typeof value === 'number') {
        if (schema.minimum !== undefined && value < schema.minimum) return fail('minimum', `must be >= ${schema.minimum}`);
        if (schema.maximum !== undefined && value > schema.maximum) return fail('maximum', `must be <= ${schema.maximum}`);
        if (schema.exclusiveMinimum !== undefined && value <= schema.exclusiveMinimum) return fail('exclusiveMinimum', `must be > ${schema.exclusiveMinimum}`);
    }
    if (Array.isArray(value)) {
        if (schema.minItems !== undefined && value.length < schema.minItems) return fail('minItems', `must have at least ${schema.minItems} items`);
        if (schema.maxItems !== undefined && value.length > schema.maxItems) return fail('maxItems', `must have at most ${schema.maxItems} items`);
        if (schema.items) {
            for (let i = 0; i < value.length; i++) {
                const e = validate(schema.items, value[i], `${ptr}/${i}`);
                if (e) return e;
            }
        }
    }
    if (typeOf(value) === 'object') {
        for (const req of schema.required || []) {
            if (!Object.prototype.hasOwnProperty.call(value, req)) {
                return { path: `${ptr}/${escapePtr(req)}`, keyword: 'required', message: `${ptr}/${escapePtr(req)}: is required` };
            }
        }
        const props = schema.properties || {};
        for (const [k, v] of Object.entries(value)) {
            if (props[k] !== undefined) {
                const e = validate(props[k], v, `${ptr}/${escapePtr(k)}`);
                if (e) return e;
            } else if (schema.additionalProperties === false) {
                return { path: `${ptr}/${escapePtr(k)}`, keyword: 'additionalProperties', message: `${ptr}/${escapePtr(k)}: unknown property` };
            } else if (typeof schema.additionalProperties === 'object') {
                const e = validate(schema.additionalProperties, v, `${ptr}/${escapePtr(k)}`);
                if (e) return e;
            }
        }
    }
    return null;
}

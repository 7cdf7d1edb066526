/* schema_format.c: the `format` keyword's checks (email, uri,
 * uri-reference, date-time, date, time, uuid, ipv4, ipv6, hostname with
 * IDNA rules, regex). Pure functions over bytes, plus PCRE2 for regex and
 * the Unicode classes IDNA needs. See schema.h. */
#include "schema.h"

const char *const fav_schema_fmt_names[] = {
  "", "email", "uri", "uri-reference", "date-time", "date", "time", "uuid",
  "ipv4", "ipv6", "hostname", "regex", NULL
};
const char *const fav_schema_fmt_nouns[] = {
  "", "e-mail address", "URI", "URI reference", "RFC 3339 date-time",
  "date (YYYY-MM-DD)", "RFC 3339 time", "UUID", "IPv4 address", "IPv6 address",
  "hostname", "regular expression"
};

const char *const fav_schema_fmt_reasons[] = {
  "", "must be a valid e-mail address", "must be a valid URI", "must be a valid URI reference",
  "must be a valid RFC 3339 date-time", "must be a valid date (YYYY-MM-DD)", "must be a valid RFC 3339 time",
  "must be a valid UUID", "must be a valid IPv4 address", "must be a valid IPv6 address",
  "must be a valid hostname", "must be a valid regular expression"
};

/* ------------------------------------------------------------------ */
/* Formats (hand-written; `regex` through PCRE2)                        */
/* ------------------------------------------------------------------ */

static int fav_fmt_num(const char *s, int n) {
  int v = 0, i;
  for (i = 0; i < n; i++) {
    if (!fav_fmt_isdigit((unsigned char)s[i])) return -1;
    v = v * 10 + (s[i] - '0');
  }
  return v;
}

static int fav_fmt_date(const char *s, size_t n) {
  static const int mdays[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
  int y, m, d, max;
  if (n != 10 || s[4] != '-' || s[7] != '-') return 0;
  y = fav_fmt_num(s, 4);
  m = fav_fmt_num(s + 5, 2);
  d = fav_fmt_num(s + 8, 2);
  if (y < 0 || m < 1 || m > 12 || d < 1) return 0;
  max = mdays[m - 1];
  if (m == 2 && ((y % 4 == 0 && y % 100 != 0) || y % 400 == 0)) max = 29;
  return d <= max;
}

static int fav_fmt_time(const char *s, size_t n) {
  int h, mi, sec, oh = 0, om = 0, sign = 0;
  size_t i = 8;
  if (n < 9 || s[2] != ':' || s[5] != ':') return 0;
  h = fav_fmt_num(s, 2);
  mi = fav_fmt_num(s + 3, 2);
  sec = fav_fmt_num(s + 6, 2);
  if (h < 0 || mi < 0 || sec < 0 || h > 23 || mi > 59 || sec > 60) return 0;
  if (s[i] == '.') {
    size_t st = ++i;
    while (i < n && fav_fmt_isdigit((unsigned char)s[i])) i++;
    if (i == st) return 0;
  }
  if (i >= n) return 0;
  if (s[i] == 'Z' || s[i] == 'z') {
    i++;
  } else if (s[i] == '+' || s[i] == '-') {
    sign = s[i] == '+' ? 1 : -1;
    if (n - i != 6 || s[i + 3] != ':') return 0;
    oh = fav_fmt_num(s + i + 1, 2);
    om = fav_fmt_num(s + i + 4, 2);
    if (oh < 0 || om < 0 || oh > 23 || om > 59) return 0;
    i += 6;
  } else {
    return 0;
  }
  if (i != n) return 0;
  if (sec == 60) { /* a leap second is 23:59:60 in UTC */
    int utc = ((h * 60 + mi - sign * (oh * 60 + om)) % 1440 + 1440) % 1440;
    if (utc != 23 * 60 + 59) return 0;
  }
  return 1;
}

static int fav_fmt_datetime(const char *s, size_t n) {
  if (n < 11 || (s[10] != 'T' && s[10] != 't')) return 0;
  return fav_fmt_date(s, 10) && fav_fmt_time(s + 11, n - 11);
}

static int fav_fmt_uuid(const char *s, size_t n) {
  size_t i;
  if (n != 36) return 0;
  for (i = 0; i < 36; i++) {
    if (i == 8 || i == 13 || i == 18 || i == 23) {
      if (s[i] != '-') return 0;
    } else if (!fav_fmt_ishex((unsigned char)s[i])) {
      return 0;
    }
  }
  return 1;
}

static int fav_fmt_ipv4(const char *s, size_t n) {
  size_t i = 0;
  int part;
  for (part = 0; part < 4; part++) {
    size_t st = i;
    int v = 0;
    while (i < n && fav_fmt_isdigit((unsigned char)s[i]) && i - st < 4) v = v * 10 + (s[i++] - '0');
    if (i == st || i - st > 3 || v > 255) return 0;
    if (i - st > 1 && s[st] == '0') return 0;
    if (part < 3) {
      if (i >= n || s[i] != '.') return 0;
      i++;
    }
  }
  return i == n;
}

static int fav_fmt_ipv6(const char *s, size_t n) {
  size_t i = 0;
  int groups = 0, dbl = 0;
  if (n < 2) return 0;
  if (s[0] == ':') {
    if (s[1] != ':') return 0;
    dbl = 1;
    i = 2;
    if (i == n) return 1;
  }
  for (;;) {
    size_t j = i, st = i;
    while (j < n && s[j] != ':' && s[j] != '.') j++;
    if (j < n && s[j] == '.') { /* dotted IPv4 tail */
      if (!fav_fmt_ipv4(s + st, n - st)) return 0;
      groups += 2;
      break;
    }
    if (j == st || j - st > 4) return 0;
    for (; i < j; i++)
      if (!fav_fmt_ishex((unsigned char)s[i])) return 0;
    groups++;
    if (i == n) break;
    i++; /* ':' */
    if (i < n && s[i] == ':') {
      if (dbl) return 0;
      dbl = 1;
      i++;
      if (i == n) break;
    } else if (i == n) {
      return 0;
    }
    if (groups > 8) return 0;
  }
  return dbl ? groups <= 7 : groups == 8;
}

/* RFC 3492 Punycode: decodes s[0..n) into out (at most cap code points);
 * returns the count, or -1 when the input is not valid Punycode. */
static int fav_fmt_punydecode(const char *s, size_t n, uint32_t *out, int cap) {
  uint32_t nn = 128, i = 0, bias = 72;
  size_t b = 0, j, in;
  int len = 0;
  for (j = 0; j < n; j++)
    if (s[j] == '-') b = j;
  if (b > 0 || (n > 0 && s[0] == '-')) {
    if ((int)b > cap) return -1;
    for (j = 0; j < b; j++) {
      if ((unsigned char)s[j] >= 0x80) return -1;
      out[len++] = (unsigned char)s[j];
    }
    in = b + 1;
  } else {
    in = 0;
  }
  while (in < n) {
    uint32_t oldi = i, w = 1, k, t, digit;
    for (k = 36;; k += 36) {
      int c;
      if (in >= n) return -1;
      c = (unsigned char)s[in++];
      if (c >= '0' && c <= '9') digit = (uint32_t)(c - 22);
      else if (c >= 'a' && c <= 'z') digit = (uint32_t)(c - 'a');
      else if (c >= 'A' && c <= 'Z') digit = (uint32_t)(c - 'A');
      else return -1;
      if (digit > (0xFFFFFFFFu - i) / w) return -1;
      i += digit * w;
      t = k <= bias ? 1 : k >= bias + 26 ? 26 : k - bias;
      if (digit < t) break;
      if (w > 0xFFFFFFFFu / (36 - t)) return -1;
      w *= 36 - t;
    }
    {
      uint32_t delta = oldi == 0 ? (i - oldi) / 700 : (i - oldi) / 2, kk = 0;
      delta += delta / (uint32_t)(len + 1);
      while (delta > 455) {
        delta /= 35;
        kk += 36;
      }
      bias = kk + (36 * delta) / (delta + 38);
    }
    nn += i / (uint32_t)(len + 1);
    i %= (uint32_t)(len + 1);
    if (nn > 0x10FFFF || (nn >= 0xD800 && nn <= 0xDFFF) || len >= cap) return -1;
    memmove(out + i + 1, out + i, (size_t)(len - (int)i) * sizeof *out);
    out[i++] = nn;
    len++;
  }
  return len;
}

/* Does code point c match the lazily compiled Unicode class k? */
static int fav_fmt_uclass(fav_prog *P, int k, uint32_t c) {
  static const char *const pats[4] = {"^\\p{M}", "^\\p{Greek}", "^\\p{Hebrew}", "^[\\p{Hiragana}\\p{Katakana}\\p{Han}]"};
  unsigned char u[4];
  size_t n;
  int rc;
  if (P->idna[k] == NULL) {
    int err;
    if (fav_schema_pcre(P) != 0) return 0;
    PCRE2_SIZE off;
    P->idna[k] = pcre2_compile((PCRE2_SPTR)pats[k], PCRE2_ZERO_TERMINATED, PCRE2_UTF, &err, &off, NULL);
    if (P->idna[k] == NULL) return 0;
  }
  if (c < 0x80) u[0] = (unsigned char)c, n = 1;
  else if (c < 0x800) u[0] = (unsigned char)(0xC0 | (c >> 6)), u[1] = (unsigned char)(0x80 | (c & 0x3F)), n = 2;
  else if (c < 0x10000)
    u[0] = (unsigned char)(0xE0 | (c >> 12)), u[1] = (unsigned char)(0x80 | ((c >> 6) & 0x3F)),
    u[2] = (unsigned char)(0x80 | (c & 0x3F)), n = 3;
  else
    u[0] = (unsigned char)(0xF0 | (c >> 18)), u[1] = (unsigned char)(0x80 | ((c >> 12) & 0x3F)),
    u[2] = (unsigned char)(0x80 | ((c >> 6) & 0x3F)), u[3] = (unsigned char)(0x80 | (c & 0x3F)), n = 4;
  rc = pcre2_match(P->idna[k], u, n, 0, 0, P->md, NULL);
  return rc >= 0;
}

static int fav_fmt_virama(uint32_t c) {
  static const uint32_t v[] = {0x94D, 0x9CD, 0xA4D, 0xACD, 0xB4D, 0xBCD, 0xC4D, 0xCCD, 0xD3B, 0xD3C, 0xD4D,
                               0xDCA, 0xE3A, 0xEBA, 0xF84, 0x1039, 0x103A, 0x1714, 0x1734, 0x17D2, 0x1A60,
                               0x1B44, 0x1BAA, 0x1BAB, 0x1BF2, 0x1BF3, 0x2D7F, 0xA806, 0xA8C4, 0xA953, 0xA9C0,
                               0xAAF6, 0xABED, 0};
  int i;
  for (i = 0; v[i]; i++)
    if (v[i] == c) return 1;
  return 0;
}

/* IDNA2008 checks (RFC 5891/5892) on an A-label's decoded code points, for
 * the rules that matter in practice: no leading mark, the DISALLOWED
 * exceptions, and the CONTEXTJ/CONTEXTO rules. */
static int fav_fmt_ulabel(fav_prog *P, const uint32_t *u, int n) {
  int i, ai = 0, ext = 0, kana = 0, dot = 0;
  if (n == 0) return 0;
  if (n >= 4 && u[2] == '-' && u[3] == '-') return 0;
  if (u[0] == '-' || u[n - 1] == '-') return 0;
  if (fav_fmt_uclass(P, 0, u[0])) return 0;
  for (i = 0; i < n; i++) {
    uint32_t c = u[i];
    if (c < 0x80 && !fav_fmt_isalnum((int)c) && c != '-') return 0;
    if (c >= 'A' && c <= 'Z') return 0;
    if (c == 0x640 || c == 0x7FA || c == 0x302E || c == 0x302F || (c >= 0x3031 && c <= 0x3035) || c == 0x303B)
      return 0;
    if (c == 0xB7 && !(i > 0 && i + 1 < n && u[i - 1] == 'l' && u[i + 1] == 'l')) return 0;
    if (c == 0x375 && !(i + 1 < n && fav_fmt_uclass(P, 1, u[i + 1]))) return 0;
    if ((c == 0x5F3 || c == 0x5F4) && !(i > 0 && fav_fmt_uclass(P, 2, u[i - 1]))) return 0;
    if (c == 0x200D && !(i > 0 && fav_fmt_virama(u[i - 1]))) return 0;
    if (c >= 0x660 && c <= 0x669) ai = 1;
    if (c >= 0x6F0 && c <= 0x6F9) ext = 1;
    if (c == 0x30FB) dot = 1;
    else if (fav_fmt_uclass(P, 3, c)) kana = 1;
  }
  if (ai && ext) return 0;
  if (dot && !kana) return 0;
  return 1;
}

static int fav_fmt_hostname(fav_prog *P, const char *s, size_t n) {
  size_t i = 0;
  if (n == 0 || n > 253) return 0;
  while (i < n) {
    size_t st = i;
    while (i < n && s[i] != '.') {
      if (!fav_fmt_isalnum((unsigned char)s[i]) && s[i] != '-') return 0;
      i++;
    }
    if (i == st || i - st > 63 || s[st] == '-' || s[i - 1] == '-') return 0;
    if (i - st >= 4 && s[st + 2] == '-' && s[st + 3] == '-') {
      uint32_t u[64];
      int m;
      /* "--" at 3-4 is reserved for IDNA A-labels ("xn--") */
      if (!((s[st] == 'x' || s[st] == 'X') && (s[st + 1] == 'n' || s[st + 1] == 'N'))) return 0;
      m = fav_fmt_punydecode(s + st + 4, i - st - 4, u, 64);
      if (m < 0 || !fav_fmt_ulabel(P, u, m)) return 0;
    }
    if (i < n) {
      i++;
      if (i == n) return 0;
    }
  }
  return 1;
}

static int fav_fmt_email(fav_prog *P, const char *s, size_t n) {
  static const char atext[] = "!#$%&'*+-/=?^_`{|}~";
  size_t i = 0, at;
  if (n == 0) return 0;
  if (s[0] == '"') { /* quoted local part */
    i = 1;
    while (i < n && s[i] != '"') {
      if (s[i] == '\\') i++;
      else if ((unsigned char)s[i] < 32 || (unsigned char)s[i] > 126) return 0;
      i++;
    }
    if (i >= n) return 0;
    at = i + 1;
    if (at >= n || s[at] != '@') return 0;
  } else {
    for (at = 0; at < n && s[at] != '@'; at++) {
      unsigned char c = (unsigned char)s[at];
      if (c == '.') {
        if (at == 0 || s[at - 1] == '.') return 0;
      } else if (!fav_fmt_isalnum(c) && !strchr(atext, c)) {
        return 0;
      }
    }
    if (at == 0 || at >= n || s[at - 1] == '.' || at > 64) return 0;
  }
  s += at + 1;
  n -= at + 1;
  if (n >= 2 && s[0] == '[' && s[n - 1] == ']') {
    if (n > 7 && memcmp(s + 1, "IPv6:", 5) == 0) return fav_fmt_ipv6(s + 6, n - 7);
    return fav_fmt_ipv4(s + 1, n - 2);
  }
  return fav_fmt_hostname(P, s, n);
}

/* URI characters: unreserved / sub-delims / ":" / "@" (pchar minus pct). */
static int fav_fmt_pchar(int c) {
  return fav_fmt_isalnum(c) || (c && strchr("-._~!$&'()*+,;=:@", c) != NULL);
}

/* Checks s[i..e) contains pchars, pct-encodings and the extra characters. */
static int fav_fmt_uripart(const char *s, size_t i, size_t e, const char *extra) {
  for (; i < e; i++) {
    int c = (unsigned char)s[i];
    if (c == '%') {
      if (i + 2 >= e || !fav_fmt_ishex((unsigned char)s[i + 1]) ||
          !fav_fmt_ishex((unsigned char)s[i + 2]))
        return 0;
      i += 2;
    } else if (!fav_fmt_pchar(c) && !(c && strchr(extra, c))) {
      return 0;
    }
  }
  return 1;
}

/* RFC 3986 URI (absolute) or URI-reference. */
static int fav_fmt_uri(const char *s, size_t n, int absolute) {
  size_t i = 0, p, q;
  int scheme = 0;
  if (fav_fmt_isalpha((unsigned char)s[0])) {
    while (i < n && (fav_fmt_isalnum((unsigned char)s[i]) || s[i] == '+' || s[i] == '-' || s[i] == '.')) i++;
    if (i < n && s[i] == ':') {
      scheme = 1;
      i++;
    } else {
      i = 0;
    }
  }
  if (absolute && !scheme) return 0;
  if (i + 1 < n && s[i] == '/' && s[i + 1] == '/') { /* authority */
    size_t a = i + 2, e = a, at = (size_t)-1, h;
    while (e < n && s[e] != '/' && s[e] != '?' && s[e] != '#') {
      if (s[e] == '@') at = e;
      e++;
    }
    h = a;
    if (at != (size_t)-1) {
      if (!fav_fmt_uripart(s, a, at, "")) return 0;
      for (p = a; p < at; p++)
        if (s[p] == '@') return 0;
      h = at + 1;
    }
    if (h < e && s[h] == '[') {
      size_t rb = h;
      while (rb < e && s[rb] != ']') rb++;
      if (rb >= e) return 0;
      if (!fav_fmt_ipv6(s + h + 1, rb - h - 1)) {
        if (!(rb - h > 2 && (s[h + 1] == 'v' || s[h + 1] == 'V'))) return 0;
      }
      p = rb + 1;
    } else {
      p = h;
      while (p < e && s[p] != ':') {
        int c = (unsigned char)s[p];
        if (c == '%') {
          if (p + 2 >= e || !fav_fmt_ishex((unsigned char)s[p + 1]) ||
              !fav_fmt_ishex((unsigned char)s[p + 2]))
            return 0;
          p += 3;
          continue;
        }
        if (!fav_fmt_isalnum(c) && !strchr("-._~!$&'()*+,;=", c)) return 0;
        p++;
      }
    }
    if (p < e) {
      if (s[p] != ':') return 0;
      for (p++; p < e; p++)
        if (!fav_fmt_isdigit((unsigned char)s[p])) return 0;
    }
    i = e;
  } else if (!scheme) {
    /* relative-ref with path-noscheme: no ':' in the first segment */
    for (p = i; p < n && s[p] != '/' && s[p] != '?' && s[p] != '#'; p++)
      if (s[p] == ':') return 0;
  }
  for (q = i; q < n && s[q] != '?' && s[q] != '#'; q++) {}
  if (!fav_fmt_uripart(s, i, q, "/")) return 0;
  if (q < n && s[q] == '?') {
    p = q + 1;
    for (q = p; q < n && s[q] != '#'; q++) {}
    if (!fav_fmt_uripart(s, p, q, "/?")) return 0;
  }
  if (q < n && s[q] == '#') {
    if (!fav_fmt_uripart(s, q + 1, n, "/?")) return 0;
  }
  return 1;
}

/* Validates s against a format; 1 when valid or the format is unknown. The
 * caller has checked s is valid UTF-8. */
int fav_schema_format(fav_prog *P, int fmt, const char *s, size_t n) {
  switch (fmt) {
    case FMT_EMAIL: return fav_fmt_email(P, s, n);
    case FMT_URI: return n > 0 && fav_fmt_uri(s, n, 1);
    case FMT_URIREF: return n == 0 || fav_fmt_uri(s, n, 0);
    case FMT_DATETIME: return fav_fmt_datetime(s, n);
    case FMT_DATE: return fav_fmt_date(s, n);
    case FMT_TIME: return fav_fmt_time(s, n);
    case FMT_UUID: return fav_fmt_uuid(s, n);
    case FMT_IPV4: return fav_fmt_ipv4(s, n);
    case FMT_IPV6: return fav_fmt_ipv6(s, n);
    case FMT_HOSTNAME: return fav_fmt_hostname(P, s, n);
    case FMT_REGEX: {
      int err;
      PCRE2_SIZE off;
      pcre2_code *c;
      if (fav_schema_pcre(P) != 0) return 0; /* no PCRE2: not checkable */
      c = pcre2_compile((PCRE2_SPTR)s, n, PCRE2_UTF | PCRE2_ALT_BSUX | PCRE2_NO_UTF_CHECK,
                                    &err, &off, P->cctx);
      if (c == NULL) return 0;
      pcre2_code_free(c);
      return 1;
    }
    default: return 1;
  }
}

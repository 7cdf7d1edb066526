/* http.c: the Streamable HTTP transport on libcurl's multi interface.
 *
 * A favcrm.Http object owns one CURLM (its connection pool: keep-alive and
 * DNS cache are shared by every transfer) and the transfers in flight. Lua
 * starts transfers with :start{...} and advances them with :poll(ms), which
 * returns what happened as plain tables: "headers", SSE "event"s and "done".
 *
 * No Lua code ever runs inside a curl callback: the callbacks only copy
 * bytes into bounded C buffers and a queue owned by the userdata. Lua values
 * are built after curl_multi_perform has returned, so an error raised while
 * building them (out of memory) unwinds through no C resource: everything is
 * still owned by the userdata and freed by its __gc.
 */
#include "favcrm.h"
#include "sse.h"
#include "secret.h"

#include <curl/curl.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/select.h>

#define FAV_HTTP_MT "favcrm.Http"
#define FAV_MAX_HEADER_BYTES (64 * 1024)
#define FAV_IDLE_EASY 8
/* connections kept open per client (curl's cache): as many as call_many
 * runs at once in the bench (concurrency 64), so those reuse them */
#define FAV_MAX_CONNECTIONS 64

typedef enum { Q_HEADERS, Q_EVENT, Q_DONE } qkind;

/* One thing that happened, waiting for :poll to hand it to Lua. */
typedef struct qitem {
  struct qitem *next;
  qkind kind;
  long id;
  long status;
  char *data;      /* event data, or the whole non-SSE body */
  size_t len;
  char *event;     /* event type */
  char *event_id;  /* last event id */
  long retry;      /* -1 when the event set none */
  char *headers;   /* "name: value\n" lines, names lower-cased */
  size_t headers_len;
  int sse;
  long connects;   /* new connections the transfer needed */
  const char *err_code; /* static string, NULL on success */
  char *err_msg;
} qitem;

typedef struct transfer {
  struct transfer *next;
  struct fav_http *owner;
  CURL *easy;
  long id;
  struct curl_slist *hdrs; /* request headers; the auth line is wiped */
  char *body;
  size_t body_len;
  long status;
  fav_buf rhdr;    /* response headers collected so far */
  size_t hdr_bytes;/* all header bytes received, every block, kept or not */
  int headers_sent;/* the Q_HEADERS item is queued */
  int headers_done;/* the final header block ended with its blank line */
  int sse;         /* the response is text/event-stream */
  fav_sse parser;  /* used when sse is set */
  int parser_on;
  unsigned long id_seq; /* the parser's id_seq last handed on */
  fav_buf rbody;   /* a non-SSE body */
  size_t received; /* all body bytes, SSE included */
  const char *fail_code; /* set by a callback that aborted the transfer */
  char fail_msg[160];
} transfer;

typedef struct fav_http {
  CURLM *multi;
  transfer *active;
  CURL *idle[FAV_IDLE_EASY];
  int nidle;
  qitem *qhead, *qtail;
  long next_id;
  size_t max_response;
  size_t max_event;
  long connect_timeout_ms;
  char *user_agent;
  char *ca_file;
  int closed;
} fav_http;

static int curl_ready = 0;

/* ---- libcurl's memory: wiped when freed ------------------------------ *
 * libcurl copies the Authorization line into its own buffers (the header
 * list, the request it sends); freed memory keeps its bytes until reused.
 * favcrm gives libcurl an allocator whose free (and realloc, which moves)
 * zeroes the block first, so nothing libcurl had is left in the heap. It
 * only takes effect when favcrm is the first to initialise libcurl in the
 * process (docs/LIMITS.md). Needs malloc_usable_size (glibc, musl). */
#if defined(__GLIBC__) || defined(__linux__)
#include <malloc.h>
#define FAV_WIPING_ALLOC 1

static void *wa_malloc(size_t n) { return malloc(n); }
static void *wa_calloc(size_t a, size_t b) { return calloc(a, b); }
static char *wa_strdup(const char *p) {
  size_t n = strlen(p) + 1;
  char *q = malloc(n);
  if (q) memcpy(q, p, n);
  return q;
}
static void wa_free(void *p) {
  if (!p) return;
  fav_wipe(p, malloc_usable_size(p));
  free(p);
}
static void *wa_realloc(void *p, size_t n) {
  size_t old;
  void *q;
  if (!p) return malloc(n);
  if (n == 0) n = 1;
  old = malloc_usable_size(p);
  if (n <= old) return p; /* fits: the block stays where it is */
  q = malloc(n);
  if (!q) return NULL;
  memcpy(q, p, old);
  wa_free(p);
  return q;
}
#endif

/* ---- small helpers (no Lua) ---------------------------------------- */

static char *dupmem(const char *s, size_t n) {
  char *p = malloc(n + 1);
  if (p) {
    if (n) memcpy(p, s, n);
    p[n] = '\0';
  }
  return p;
}

static void qitem_free(qitem *q) {
  if (!q) return;
  free(q->data);
  free(q->event);
  free(q->event_id);
  free(q->headers);
  free(q->err_msg);
  free(q);
}

static qitem *qitem_new(fav_http *h, qkind kind, long id) {
  qitem *q = calloc(1, sizeof *q);
  if (!q) return NULL;
  q->kind = kind;
  q->id = id;
  q->retry = -1;
  (void)h;
  return q;
}

static void queue_push(fav_http *h, qitem *q) {
  q->next = NULL;
  if (h->qtail) h->qtail->next = q;
  else h->qhead = q;
  h->qtail = q;
}

/* Zeroes every header line before the list is freed: one of them may hold
 * the API key. */
static void wipe_slist(struct curl_slist *l) {
  for (; l; l = l->next)
    if (l->data) fav_wipe(l->data, strlen(l->data));
}

/* Records the first failure of t (code from util.h's list; msg copied,
 * truncated to fit). Later failures are ignored. Never raises. */
static void fail(transfer *t, fav_err code, const char *msg) {
  if (t->fail_code) return;
  t->fail_code = fav_errname(code);
  snprintf(t->fail_msg, sizeof t->fail_msg, "%s", msg);
}

/* ---- curl callbacks (C only, never Lua) ------------------------------ */

static void queue_headers(transfer *t) {
  qitem *q;
  if (t->headers_sent) return;
  t->headers_sent = 1;
  q = qitem_new(t->owner, Q_HEADERS, t->id);
  if (!q) return;
  q->status = t->status;
  q->sse = t->sse;
  if (t->rhdr.p) {
    q->headers = dupmem(t->rhdr.p, t->rhdr.len);
    q->headers_len = q->headers ? t->rhdr.len : 0;
  }
  queue_push(t->owner, q);
}

/* The response headers the session reads; the others are not handed to
 * Lua at all (building them into tables was a good part of a call's cost). */
static int wanted_header(const char *name, size_t n) {
  static const char *const names[] = {
    "content-type", "mcp-session-id", "mcp-protocol-version", "date", "location",
    "retry-after", "www-authenticate", "content-length", NULL};
  int i;
  for (i = 0; names[i]; i++)
    if (strlen(names[i]) == n && memcmp(names[i], name, n) == 0) return 1;
  return 0;
}

static size_t on_header(char *buf, size_t size, size_t n, void *ud) {
  transfer *t = ud;
  size_t len = size * n, i, nl;
  char *colon;
  t->hdr_bytes += len;
  if (t->hdr_bytes > FAV_MAX_HEADER_BYTES) {
    fail(t, FAV_ETOO_LARGE, "response headers over 64 KiB");
    return 0;
  }
  if (len >= 5 && memcmp(buf, "HTTP/", 5) == 0) {
    /* a new header block (after a 1xx): start over */
    const char *sp = memchr(buf, ' ', len);
    t->status = sp ? strtol(sp + 1, NULL, 10) : 0;
    t->rhdr.len = 0;
    return len;
  }
  if (len <= 2 && (buf[0] == '\r' || buf[0] == '\n')) {
    if (t->status >= 200) {
      t->headers_done = 1;
      /* headers complete: decide whether the body is SSE */
      const char *ct = NULL;
      char *p = t->rhdr.p;
      while (p && *p) {
        char *e = strchr(p, '\n');
        if (strncmp(p, "content-type:", 13) == 0) ct = p + 13;
        if (!e) break;
        p = e + 1;
      }
      if (ct) {
        while (*ct == ' ') ct++;
        t->sse = strncasecmp(ct, "text/event-stream", 17) == 0;
      }
      queue_headers(t);
    }
    return len;
  }
  colon = memchr(buf, ':', len);
  if (!colon) return len;
  nl = len;
  while (nl > 0 && (buf[nl - 1] == '\r' || buf[nl - 1] == '\n')) nl--;
  if ((size_t)(colon - buf) >= nl) return len;
  for (i = 0; i < (size_t)(colon - buf); i++)
    if (buf[i] >= 'A' && buf[i] <= 'Z') buf[i] = (char)(buf[i] - 'A' + 'a');
  if (!wanted_header(buf, (size_t)(colon - buf))) return len;
  if (fav_buf_add(&t->rhdr, buf, nl, FAV_MAX_HEADER_BYTES) != 0 ||
      fav_buf_add(&t->rhdr, "\n", 1, FAV_MAX_HEADER_BYTES) != 0) {
    fail(t, FAV_ETOO_LARGE, "response headers over 64 KiB");
    return 0;
  }
  return len;
}

static int on_sse_event(void *ud, const fav_sse_event *ev) {
  transfer *t = ud;
  qitem *q;
  /* an event without data (a priming event) carries only an id and a
   * retry: those reach Lua with the next event or with "done" */
  if (ev->data_len == 0) return 0;
  q = qitem_new(t->owner, Q_EVENT, t->id);
  if (!q) return 1;
  q->data = dupmem(ev->data, ev->data_len);
  q->len = ev->data_len;
  q->event = dupmem(ev->event, ev->event_len);
  /* the id only when it changed: a long id is not copied per event */
  if (ev->id_seq != t->id_seq) {
    q->event_id = dupmem(ev->id, ev->id_len);
    if (q->event_id) t->id_seq = ev->id_seq;
  }
  q->retry = ev->retry;
  if (!q->data || !q->event || (ev->id_seq != t->id_seq)) {
    qitem_free(q);
    return 1;
  }
  queue_push(t->owner, q);
  return 0;
}

static size_t on_body(char *buf, size_t size, size_t n, void *ud) {
  transfer *t = ud;
  fav_http *h = t->owner;
  size_t len = size * n;
  if (!t->headers_sent) queue_headers(t);
  t->received += len;
  if (t->received > h->max_response) {
    fail(t, FAV_ETOO_LARGE, "response body over max_response_bytes");
    return 0;
  }
  if (t->sse && t->status >= 200 && t->status < 300) {
    int rc;
    if (!t->parser_on) {
      fav_sse_init(&t->parser, h->max_event);
      t->parser_on = 1;
    }
    rc = fav_sse_feed(&t->parser, buf, len, on_sse_event, t);
    if (rc == FAV_SSE_TOO_LARGE) {
      fail(t, FAV_ETOO_LARGE, "one SSE event over max_event_bytes");
      return 0;
    }
    if (rc != FAV_SSE_OK) { fail(t, FAV_ENETWORK, "out of memory"); return 0; }
    return t->fail_code ? 0 : len;
  }
  if (fav_buf_add(&t->rbody, buf, len, h->max_response) != 0) {
    fail(t, FAV_ETOO_LARGE, "response body over max_response_bytes");
    return 0;
  }
  return len;
}

/* ---- transfer lifecycle ---------------------------------------------- */

static void transfer_free(fav_http *h, transfer *t) {
  if (t->easy) {
    curl_multi_remove_handle(h->multi, t->easy);
    if (h->nidle < FAV_IDLE_EASY && !h->closed) {
      /* kept as it is, not curl_easy_reset: a reset frees and later
       * reallocates (and our allocator wipes) libcurl's per-handle buffers
       * on every request. fav_http_start sets every option a request uses,
       * the ones it does not need back to their defaults. */
      h->idle[h->nidle++] = t->easy;
    } else {
      curl_easy_cleanup(t->easy);
    }
  }
  wipe_slist(t->hdrs);
  curl_slist_free_all(t->hdrs);
  free(t->body);
  fav_buf_free(&t->rhdr);
  fav_buf_free(&t->rbody);
  if (t->parser_on) fav_sse_free(&t->parser);
  free(t);
}

static void unlink_transfer(fav_http *h, transfer *t) {
  transfer **pp = &h->active;
  while (*pp && *pp != t) pp = &(*pp)->next;
  if (*pp) *pp = t->next;
}

/* The error code (util.h) for a failed curl transfer. Never raises. */
static fav_err classify(CURLcode rc) {
  switch (rc) {
    case CURLE_OPERATION_TIMEDOUT: return FAV_ETIMEOUT;
    case CURLE_PEER_FAILED_VERIFICATION:
    case CURLE_SSL_CONNECT_ERROR:
    case CURLE_SSL_CERTPROBLEM:
    case CURLE_SSL_CIPHER:
    case CURLE_SSL_CACERT_BADFILE:
    case CURLE_SSL_ENGINE_NOTFOUND:
    case CURLE_SSL_ENGINE_SETFAILED:
    case CURLE_SSL_ISSUER_ERROR:
    case CURLE_SSL_CRL_BADFILE:
    case CURLE_SSL_PINNEDPUBKEYNOTMATCH:
    case CURLE_SSL_INVALIDCERTSTATUS:
    case CURLE_USE_SSL_FAILED:
      return FAV_ETLS;
    case CURLE_UNSUPPORTED_PROTOCOL:
    case CURLE_URL_MALFORMAT:
      return FAV_EINVALID_ARGUMENTS;
    default: return FAV_ENETWORK;
  }
}

/* Turns a finished transfer into a Q_DONE item and frees it. */
static void finish(fav_http *h, transfer *t, CURLcode rc) {
  qitem *q = qitem_new(h, Q_DONE, t->id);
  unlink_transfer(h, t);
  if (rc == CURLE_OK && !t->headers_done)
    fail(t, FAV_ENETWORK, "the connection closed before the response headers were complete");
  if (q) {
    if (!t->headers_sent && rc == CURLE_OK && !t->fail_code) queue_headers(t);
    q->status = t->status;
    q->sse = t->sse;
    if (t->easy) curl_easy_getinfo(t->easy, CURLINFO_NUM_CONNECTS, &q->connects);
    if (t->fail_code) {
      q->err_code = t->fail_code;
      q->err_msg = dupmem(t->fail_msg, strlen(t->fail_msg));
    } else if (rc != CURLE_OK) {
      char msg[256];
      q->err_code = fav_errname(classify(rc));
      snprintf(msg, sizeof msg, "%s", curl_easy_strerror(rc));
      q->err_msg = dupmem(msg, strlen(msg));
    } else if (t->sse && t->parser_on) {
      /* a clean end of the stream: an event cut short is dropped */
    } else if (t->rbody.p) {
      q->data = t->rbody.p;
      q->len = t->rbody.len;
      t->rbody.p = NULL;
      t->rbody.len = t->rbody.cap = 0;
    }
    if (t->parser_on) {
      /* where a reconnect would resume from */
      size_t idlen = 0;
      const char *id = fav_sse_last_event_id(&t->parser, &idlen);
      if (idlen) q->event_id = dupmem(id, idlen);
      q->retry = fav_sse_retry(&t->parser);
    }
    queue_push(h, q);
  }
  transfer_free(h, t);
}

static void drain_info(fav_http *h) {
  CURLMsg *m;
  int left;
  while ((m = curl_multi_info_read(h->multi, &left)) != NULL) {
    transfer *t = NULL;
    if (m->msg != CURLMSG_DONE) continue;
    curl_easy_getinfo(m->easy_handle, CURLINFO_PRIVATE, (char **)&t);
    if (t) finish(h, t, m->data.result);
  }
}

/* ---- Lua side ---------------------------------------------------------- */

static fav_http *check_http(lua_State *L) {
  fav_http *h = luaL_checkudata(L, 1, FAV_HTTP_MT);
  if (h->closed) luaL_error(L, "favcrm.Http is closed");
  return h;
}

/* Field k of the options table at t as a count of bytes or connections:
 * def when nil; raises "bad option 'k' (...)" unless it is a finite number
 * >= 0 (v - v is NaN for NaN and both infinities); clamps at 2^40 (no
 * cast of an out-of-range double). */
static long opt_count(lua_State *L, int t, const char *k, long def) {
  double v = (double)def;
  lua_getfield(L, t, k);
  if (!lua_isnil(L, -1)) {
    if (!lua_isnumber(L, -1)) luaL_error(L, "bad option '%s' (number expected, got %s)", k, luaL_typename(L, -1));
    v = (double)lua_tonumber(L, -1);
    if (v - v != 0 || v < 0) luaL_error(L, "bad option '%s' (must be a finite number >= 0)", k);
    if (v > 1099511627776.0) v = 1099511627776.0;
  }
  lua_pop(L, 1);
  return (long)v;
}

static char *opt_str_dup(lua_State *L, int t, const char *k) {
  char *s = NULL;
  lua_getfield(L, t, k);
  if (!lua_isnil(L, -1)) {
    size_t n;
    const char *v;
    if (lua_type(L, -1) != LUA_TSTRING) luaL_error(L, "bad option '%s' (string expected, got %s)", k, luaL_typename(L, -1));
    v = lua_tolstring(L, -1, &n);
    s = dupmem(v, n);
  }
  lua_pop(L, 1);
  return s;
}

/* core.http_new([opts]) -> favcrm.Http. opts: max_response_bytes,
 * max_event_bytes (default FAV_MAX_EVENT_BYTES), connect_timeout_ms
 * (default 10000), max_connections, user_agent, ca_file. Raises on bad
 * options (a time that is NaN, infinite or negative included). The
 * userdata exists, zeroed, with its metatable before anything is acquired. */
static int fav_http_new(lua_State *L) {
  fav_http *h;
  if (!lua_isnoneornil(L, 1)) luaL_checktype(L, 1, LUA_TTABLE);
  else { lua_settop(L, 0); lua_newtable(L); }
  lua_settop(L, 1);
  h = lua_newuserdatauv(L, sizeof *h, 0);
  memset(h, 0, sizeof *h);
  h->closed = 1; /* until the handle exists */
  luaL_setmetatable(L, FAV_HTTP_MT);
  h->max_response = (size_t)opt_count(L, 1, "max_response_bytes", 32L * 1024 * 1024);
  h->max_event = (size_t)opt_count(L, 1, "max_event_bytes", (long)FAV_MAX_EVENT_BYTES);
  h->connect_timeout_ms = (long)fav_optfield_ms(L, 1, "connect_timeout_ms", 10000);
  h->multi = curl_multi_init();
  if (!h->multi) luaL_error(L, "curl_multi_init failed");
  h->closed = 0;
  h->user_agent = opt_str_dup(L, 1, "user_agent");
  h->ca_file = opt_str_dup(L, 1, "ca_file");
  /* keep as many idle connections as calls may be in flight, so that
   * call_many at high concurrency reuses them instead of reconnecting */
  curl_multi_setopt(h->multi, CURLMOPT_MAXCONNECTS, opt_count(L, 1, "max_connections", FAV_MAX_CONNECTIONS));
  h->next_id = 1;
  return 1;
}

/* http:close(): idempotent; also __gc and __close. Never raises. */
static int fav_http_close(lua_State *L) {
  fav_http *h = luaL_checkudata(L, 1, FAV_HTTP_MT);
  int i;
  if (!h->multi) return 0;
  h->closed = 1;
  while (h->active) {
    transfer *t = h->active;
    h->active = t->next;
    transfer_free(h, t);
  }
  for (i = 0; i < h->nidle; i++) curl_easy_cleanup(h->idle[i]);
  h->nidle = 0;
  while (h->qhead) {
    qitem *q = h->qhead;
    h->qhead = q->next;
    qitem_free(q);
  }
  h->qtail = NULL;
  curl_multi_cleanup(h->multi);
  h->multi = NULL;
  free(h->user_agent);
  free(h->ca_file);
  h->user_agent = h->ca_file = NULL;
  return 0;
}

/* Reads req.headers (a list of "Name: value" strings) into t->hdrs.
 * Returns NULL on success, else a static message. Does not raise: the
 * caller has checked the types already. */
static const char *build_headers(lua_State *L, int req, transfer *t, const char *auth, size_t auth_len) {
  struct curl_slist *l;
  lua_getfield(L, req, "headers");
  if (lua_istable(L, -1)) {
    size_t i, n = lua_rawlen(L, -1);
    for (i = 1; i <= n; i++) {
      const char *s;
      lua_rawgeti(L, -1, (int)i);
      s = lua_tostring(L, -1);
      if (s) {
        l = curl_slist_append(t->hdrs, s);
        if (!l) { lua_pop(L, 2); return "out of memory"; }
        t->hdrs = l;
      }
      lua_pop(L, 1);
    }
  }
  lua_pop(L, 1);
  /* no "Expect: 100-continue" round trip for larger bodies */
  l = curl_slist_append(t->hdrs, "Expect:");
  if (!l) return "out of memory";
  t->hdrs = l;
  if (auth) {
    static const char pre[] = "Authorization: Bearer ";
    size_t n = sizeof pre - 1 + auth_len;
    char *line = malloc(n + 1);
    if (!line) return "out of memory";
    memcpy(line, pre, sizeof pre - 1);
    memcpy(line + sizeof pre - 1, auth, auth_len);
    line[n] = '\0';
    l = curl_slist_append(t->hdrs, line);
    fav_wipe(line, n);
    free(line);
    if (!l) return "out of memory";
    t->hdrs = l;
  }
  return NULL;
}

/* http:start{method=, url=, headers={...}, body=, auth=, timeout_ms=}
 * -> id. Misuse raises; an out-of-memory failure returns nil, err. */
static int fav_http_start(lua_State *L) {
  fav_http *h = check_http(L);
  const char *url, *method = "POST", *auth = NULL, *err;
  size_t auth_len = 0, blen = 0;
  const char *body = NULL;
  long timeout_ms;
  transfer *t;
  CURL *e;
  luaL_checktype(L, 2, LUA_TTABLE);
  lua_settop(L, 2);
  lua_getfield(L, 2, "url");
  url = lua_tostring(L, -1);
  if (!url || lua_type(L, -1) != LUA_TSTRING) return luaL_error(L, "bad request field 'url' (string expected)");
  lua_getfield(L, 2, "method");
  if (!lua_isnil(L, -1)) {
    method = lua_tostring(L, -1);
    if (!method || (strcmp(method, "POST") && strcmp(method, "GET") && strcmp(method, "DELETE")))
      return luaL_error(L, "bad request field 'method' (POST, GET or DELETE expected)");
  }
  lua_getfield(L, 2, "body");
  if (!lua_isnil(L, -1)) {
    if (lua_type(L, -1) != LUA_TSTRING) return luaL_error(L, "bad request field 'body' (string expected)");
    body = lua_tolstring(L, -1, &blen);
  }
  lua_getfield(L, 2, "auth");
  if (!lua_isnil(L, -1)) {
    auth = fav_secret_get(L, -1, &auth_len);
    if (!auth) {
      if (lua_type(L, -1) != LUA_TSTRING) return luaL_error(L, "bad request field 'auth' (favcrm.secret or string expected)");
      auth = lua_tolstring(L, -1, &auth_len);
    }
    if (memchr(auth, '\r', auth_len) || memchr(auth, '\n', auth_len))
      return luaL_error(L, "bad request field 'auth' (contains a line break)");
  }
  lua_getfield(L, 2, "headers");
  if (!lua_isnil(L, -1)) {
    size_t i, n;
    if (!lua_istable(L, -1)) return luaL_error(L, "bad request field 'headers' (table expected)");
    n = lua_rawlen(L, -1);
    for (i = 1; i <= n; i++) {
      size_t sl;
      const char *s;
      lua_rawgeti(L, -1, (int)i);
      s = lua_tolstring(L, -1, &sl);
      if (lua_type(L, -1) != LUA_TSTRING || memchr(s, '\r', sl) || memchr(s, '\n', sl))
        return luaL_error(L, "bad request field 'headers' (item %d is not a one-line string)", (int)i);
      lua_pop(L, 1);
    }
  }
  lua_pop(L, 1);
  timeout_ms = (long)fav_optfield_ms(L, 2, "timeout_ms", 0);

  /* From here on nothing raises until the transfer is owned by h. */
  t = calloc(1, sizeof *t);
  if (!t) { lua_pushnil(L); lua_pushliteral(L, "out of memory"); return 2; }
  t->owner = h;
  t->id = h->next_id++;
  if (h->nidle > 0) e = h->idle[--h->nidle];
  else e = curl_easy_init();
  t->easy = e;
  t->next = h->active;
  h->active = t;
  if (!e) { err = "curl_easy_init failed"; goto fail; }
  if ((err = build_headers(L, 2, t, auth, auth_len)) != NULL) goto fail;
  curl_easy_setopt(e, CURLOPT_URL, url);
  curl_easy_setopt(e, CURLOPT_PRIVATE, (char *)t);
  curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
#if LIBCURL_VERSION_NUM >= 0x075500
  curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https");
#else
  curl_easy_setopt(e, CURLOPT_PROTOCOLS, (long)(CURLPROTO_HTTP | CURLPROTO_HTTPS));
#endif
  curl_easy_setopt(e, CURLOPT_FOLLOWLOCATION, 0L);
  curl_easy_setopt(e, CURLOPT_SSL_VERIFYPEER, 1L);
  curl_easy_setopt(e, CURLOPT_SSL_VERIFYHOST, 2L);
  if (h->ca_file) curl_easy_setopt(e, CURLOPT_CAINFO, h->ca_file);
  curl_easy_setopt(e, CURLOPT_USERAGENT, h->user_agent); /* NULL: none */
  curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, h->connect_timeout_ms);
  curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, timeout_ms > 0 ? timeout_ms : 0L);
  curl_easy_setopt(e, CURLOPT_TCP_KEEPALIVE, 1L);
  curl_easy_setopt(e, CURLOPT_HTTPHEADER, t->hdrs);
  curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, on_header);
  curl_easy_setopt(e, CURLOPT_HEADERDATA, t);
  curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, on_body);
  curl_easy_setopt(e, CURLOPT_WRITEDATA, t);
  if (strcmp(method, "POST") == 0) {
    t->body = dupmem(body ? body : "", blen);
    if (!t->body) { err = "out of memory"; goto fail; }
    t->body_len = blen;
    curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, (char *)NULL);
    curl_easy_setopt(e, CURLOPT_POST, 1L);
    curl_easy_setopt(e, CURLOPT_POSTFIELDS, t->body);
    curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)blen);
  } else {
    /* a reused handle may hold a POST's fields: cleared */
    curl_easy_setopt(e, CURLOPT_POSTFIELDS, (char *)NULL);
    curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)-1);
    curl_easy_setopt(e, CURLOPT_HTTPGET, 1L);
    curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, strcmp(method, "GET") == 0 ? (char *)NULL : "DELETE");
  }
  if (curl_multi_add_handle(h->multi, e) != CURLM_OK) { err = "curl_multi_add_handle failed"; goto fail; }
  lua_pushinteger(L, (lua_Integer)t->id);
  return 1;
fail:
  if (e) {
    curl_easy_cleanup(e);
    t->easy = NULL;
  }
  unlink_transfer(h, t);
  transfer_free(h, t);
  lua_pushnil(L);
  lua_pushstring(L, err);
  return 2;
}

/* Sets event_id and retry (where a reconnect would resume, and after how
 * long) on the item table at the top of the stack. Can raise (memory). */
static void push_resume_point(lua_State *L, const qitem *q) {
  if (q->event_id) {
    lua_pushstring(L, q->event_id);
    lua_setfield(L, -2, "event_id");
  }
  if (q->retry >= 0) {
    lua_pushinteger(L, (lua_Integer)q->retry);
    lua_setfield(L, -2, "retry");
  }
}

/* Sets status, sse and headers (a table of lower-case name = value; a
 * repeated name's values joined with ", ") of a Q_HEADERS item on the table
 * at the top of the stack. Can raise (memory). */
static void set_headers_fields(lua_State *L, const qitem *q) {
  const char *p = q->headers, *end = q->headers ? q->headers + q->headers_len : NULL;
  lua_pushinteger(L, q->status);
  lua_setfield(L, -2, "status");
  lua_pushboolean(L, q->sse);
  lua_setfield(L, -2, "sse");
  lua_newtable(L);
  while (p && p < end) {
    const char *nl = memchr(p, '\n', (size_t)(end - p));
    const char *colon = memchr(p, ':', (size_t)((nl ? nl : end) - p));
    if (!nl) nl = end;
    if (colon) {
      const char *v = colon + 1;
      while (v < nl && (*v == ' ' || *v == '\t')) v++;
      lua_pushlstring(L, p, (size_t)(colon - p));
      lua_pushvalue(L, -1);
      lua_rawget(L, -3);
      if (lua_isnil(L, -1)) {
        lua_pop(L, 1);
        lua_pushlstring(L, v, (size_t)(nl - v));
      } else {
        lua_pushliteral(L, ", ");
        lua_pushlstring(L, v, (size_t)(nl - v));
        lua_concat(L, 3);
      }
      lua_rawset(L, -3);
    }
    p = nl + 1;
  }
  lua_setfield(L, -2, "headers");
}

/* Sets data and event of a Q_EVENT item on the table at the top of the
 * stack. Can raise (memory). */
static void set_event_fields(lua_State *L, const qitem *q) {
  lua_pushlstring(L, q->data, q->len);
  lua_setfield(L, -2, "data");
  lua_pushstring(L, q->event);
  lua_setfield(L, -2, "event");
}

/* Sets the fields of a Q_DONE item on the table at the top of the stack.
 * Can raise (memory). */
static void set_done_fields(lua_State *L, const qitem *q) {
  lua_pushinteger(L, q->status);
  lua_setfield(L, -2, "status");
  lua_pushboolean(L, q->sse);
  lua_setfield(L, -2, "sse");
  lua_pushinteger(L, (lua_Integer)q->connects);
  lua_setfield(L, -2, "connects");
  if (q->data) {
    lua_pushlstring(L, q->data, q->len);
    lua_setfield(L, -2, "body");
  }
  push_resume_point(L, q);
  if (q->err_code) {
    lua_pushstring(L, q->err_code);
    lua_setfield(L, -2, "error");
    lua_pushstring(L, q->err_msg ? q->err_msg : q->err_code);
    lua_setfield(L, -2, "message");
  }
}

/* Pushes one queued item as a table. Can raise (memory); q stays owned by
 * the caller's queue until this returns. */
static void push_item(lua_State *L, const qitem *q) {
  lua_createtable(L, 0, 8);
  lua_pushinteger(L, (lua_Integer)q->id);
  lua_setfield(L, -2, "id");
  switch (q->kind) {
    case Q_HEADERS:
      lua_pushliteral(L, "headers");
      lua_setfield(L, -2, "type");
      set_headers_fields(L, q);
      break;
    case Q_EVENT:
      lua_pushliteral(L, "event");
      lua_setfield(L, -2, "type");
      set_event_fields(L, q);
      push_resume_point(L, q);
      break;
    case Q_DONE:
      lua_pushliteral(L, "done");
      lua_setfield(L, -2, "type");
      set_done_fields(L, q);
      break;
  }
}

/* Pushes the run of queued items that starts at q as one table (merged
 * mode of http:poll): a headers item and the item of the same transfer
 * right after it share one table (that item's, with status, sse and
 * headers set), and so do an event and the done item right after it (a
 * "done" table with the event's data and event set; event_id and retry are
 * the done item's, the last ones of the stream). Returns the first item
 * after the run. Can raise (memory); the items stay owned by the queue. */
static const qitem *push_run(lua_State *L, const qitem *q) {
  const qitem *hdr = NULL, *ev = NULL;
  if (q->kind == Q_HEADERS && q->next && q->next->id == q->id) {
    hdr = q;
    q = q->next;
  }
  if (q->kind == Q_EVENT && q->next && q->next->id == q->id && q->next->kind == Q_DONE) {
    ev = q;
    q = q->next;
  }
  if (!hdr && !ev) {
    push_item(L, q);
    return q->next;
  }
  lua_createtable(L, 0, 16);
  lua_pushinteger(L, (lua_Integer)q->id);
  lua_setfield(L, -2, "id");
  if (ev) set_event_fields(L, ev);
  if (q->kind == Q_EVENT) {
    lua_pushliteral(L, "event");
    lua_setfield(L, -2, "type");
    set_event_fields(L, q);
    push_resume_point(L, q);
  } else {
    lua_pushliteral(L, "done");
    lua_setfield(L, -2, "type");
    set_done_fields(L, q);
  }
  /* last: status and sse are those the headers item carried */
  if (hdr) set_headers_fields(L, hdr);
  return q->next;
}

/* http:poll([timeout_ms [, merged]]) -> list of items (may be empty).
 * Waits at most timeout_ms (default 0) for something to happen; with
 * nothing in flight it simply waits (the session uses that to pace a
 * reconnect). With merged true, a transfer's items that follow each other
 * share tables (see push_run: fewer, fuller items). Raises a bad-argument
 * error when timeout_ms is NaN, infinite or negative (a huge finite one is
 * clamped to FAV_MS_MAX, about 24.8 days); otherwise can raise (memory)
 * only while building the result, when no C resource is in flux. */
static int fav_http_poll(lua_State *L) {
  fav_http *h = check_http(L);
  double wait = fav_optms(L, 2, 0); /* finite, >= 0, clamped */
  int merged = lua_toboolean(L, 3);
  double deadline = fav_monotonic_ms() + wait;
  int running = 0, n = 0;
  for (;;) {
    double left;
    curl_multi_perform(h->multi, &running);
    drain_info(h);
    if (h->qhead) break;
    left = deadline - fav_monotonic_ms();
    if (left <= 0) break;
    curl_multi_poll(h->multi, NULL, 0, fav_ms_int(left < 1 ? 1 : left), NULL);
  }
  lua_newtable(L);
  while (h->qhead) {
    qitem *q = h->qhead;
    const qitem *after;
    if (merged) {
      after = push_run(L, q);
    } else {
      push_item(L, q);
      after = q->next;
    }
    lua_rawseti(L, -2, ++n);
    /* the run is in the list: its items leave the queue */
    while (h->qhead != after) {
      q = h->qhead;
      h->qhead = q->next;
      qitem_free(q);
    }
    if (!h->qhead) h->qtail = NULL;
  }
  return 1;
}

/* http:cancel(id) -> true if it was in flight. Never raises for an unknown
 * id. The transfer ends silently: no "done" item is queued for it. */
static int fav_http_cancel(lua_State *L) {
  fav_http *h = check_http(L);
  long id = (long)luaL_checkinteger(L, 2);
  transfer *t;
  qitem **pp;
  for (t = h->active; t; t = t->next)
    if (t->id == id) break;
  /* drop anything still queued for it */
  pp = &h->qhead;
  h->qtail = NULL;
  while (*pp) {
    if ((*pp)->id == id) {
      qitem *q = *pp;
      *pp = q->next;
      qitem_free(q);
    } else {
      h->qtail = *pp;
      pp = &(*pp)->next;
    }
  }
  if (!t) { lua_pushboolean(L, 0); return 1; }
  unlink_transfer(h, t);
  transfer_free(h, t);
  lua_pushboolean(L, 1);
  return 1;
}

/* http:fds() -> {{fd=, read=, write=}, ...}, timeout_ms: the sockets curl
 * wants watched now and when it wants to be called at the latest (-1: no
 * timer), for an event loop that calls :poll(0) when one is ready. */
static int fav_http_fds(lua_State *L) {
  fav_http *h = check_http(L);
  fd_set r, w, x;
  int maxfd = -1, fd, n = 0;
  long timeout = -1;
  FD_ZERO(&r);
  FD_ZERO(&w);
  FD_ZERO(&x);
  curl_multi_fdset(h->multi, &r, &w, &x, &maxfd);
  curl_multi_timeout(h->multi, &timeout);
  lua_newtable(L);
  for (fd = 0; fd <= maxfd && fd < FD_SETSIZE; fd++) {
    int rd = FD_ISSET(fd, &r), wr = FD_ISSET(fd, &w);
    if (!rd && !wr && !FD_ISSET(fd, &x)) continue;
    lua_createtable(L, 0, 3);
    lua_pushinteger(L, fd);
    lua_setfield(L, -2, "fd");
    lua_pushboolean(L, rd || FD_ISSET(fd, &x));
    lua_setfield(L, -2, "read");
    lua_pushboolean(L, wr);
    lua_setfield(L, -2, "write");
    lua_rawseti(L, -2, ++n);
  }
  lua_pushinteger(L, timeout);
  return 2;
}

/* http:active() -> number of transfers in flight. */
static int fav_http_active(lua_State *L) {
  fav_http *h = check_http(L);
  int n = 0;
  transfer *t;
  for (t = h->active; t; t = t->next) n++;
  lua_pushinteger(L, n);
  return 1;
}

static int fav_http_tostring(lua_State *L) {
  fav_http *h = luaL_checkudata(L, 1, FAV_HTTP_MT);
  lua_pushfstring(L, "favcrm.Http (%s)", h->multi ? "open" : "closed");
  return 1;
}

/* core.curl_version() -> "libcurl/x.y.z" */
static int fav_http_curl_version(lua_State *L) {
  curl_version_info_data *d = curl_version_info(CURLVERSION_NOW);
  lua_pushfstring(L, "libcurl/%s", d->version);
  return 1;
}

int fav_http_open(lua_State *L) {
  static const luaL_Reg methods[] = {
    {"start", fav_http_start},
    {"poll", fav_http_poll},
    {"cancel", fav_http_cancel},
    {"active", fav_http_active},
    {"fds", fav_http_fds},
    {"close", fav_http_close},
    {NULL, NULL}};
  if (!curl_ready) {
#ifdef FAV_WIPING_ALLOC
    if (curl_global_init_mem(CURL_GLOBAL_DEFAULT, wa_malloc, wa_free, wa_realloc, wa_strdup, wa_calloc) != CURLE_OK)
      return luaL_error(L, "curl_global_init failed");
#else
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) return luaL_error(L, "curl_global_init failed");
#endif
    curl_ready = 1;
  }
  static const luaL_Reg meta[] = {{"__tostring", fav_http_tostring}, {NULL, NULL}};
  fav_newclass(L, FAV_HTTP_MT, methods, meta, fav_http_close);
  lua_pop(L, 1);
  lua_pushcfunction(L, fav_http_new);
  lua_setfield(L, -2, "http_new");
  lua_pushcfunction(L, fav_http_curl_version);
  lua_setfield(L, -2, "curl_version");
  return 0;
}

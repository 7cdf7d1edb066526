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

extern char **environ;

#define FAV_HTTP_MT "favcrm.Http"
#define FAV_MAX_HEADER_BYTES (64 * 1024)
#define FAV_IDLE_EASY 64 /* as many as call_many runs at once in the bench */
/* connections kept open per client (curl's cache): as many as call_many
 * runs at once in the bench (concurrency 64), so those reuse them */
#define FAV_MAX_CONNECTIONS 64
/* request header lists kept per client (struct hdrset) and the most lines
 * one of them may have to be kept */
#define FAV_HDRSETS 4
#define FAV_HDRSET_LINES 32
/* finished transfers' structs kept for the next ones */
#define FAV_IDLE_TRANSFERS 64
/* queue items kept for reuse */
#define FAV_IDLE_ITEMS 64
/* How long libcurl keeps a name's addresses (its default, 60 s). With
 * CURLOPT_DNS_CACHE_TIMEOUT set, libcurl walks every slot of the multi
 * handle's DNS cache (71 of them) after each transfer to drop old entries
 * (~1k instructions a call); with it at -1 ("forever") it does not, and
 * does not check an entry's age when it looks a name up. So a transfer
 * runs with it set at most once every FAV_DNS_CACHE_S seconds, the others
 * with -1: an entry is used at most about twice that long after it was
 * resolved (a connection that is kept needs no lookup at all). */
#define FAV_DNS_CACHE_S 60
/* a kept transfer keeps a buffer only up to this capacity */
#define FAV_KEEP_BUF (16 * 1024)

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
  int inl;         /* data, event, event_id, headers are in the item's own
                      block (after the struct), not allocations of their own */
  size_t cap;      /* bytes of that block after the struct */
  struct fav_http *owner;
} qitem;

/* A request header list as libcurl takes it, kept by the client and
 * shared by every transfer that sends the same lines (the session sends the
 * same ones on each call): built once, not per request. The lines are
 * req.headers, then req.extra_headers, then the client's User-Agent line
 * (see ua_line), then "Expect:" when set, then the Authorization line when
 * auth is set. The Authorization line is wiped when
 * the list is freed (evicted, replaced by a new token, or client close). */
typedef struct hdrset {
  struct curl_slist *list;
  int refs;          /* transfers in flight that use it */
  int nlines;        /* lines from headers and extra_headers */
  int ua_cand;       /* built to carry the client's User-Agent line... */
  int ua;            /* ...and it does (no User-Agent line of the caller's) */
  int expect;        /* ends with "Expect:" (then the auth line) */
  int auth;          /* ends with the Authorization line */
  size_t auth_len;   /* bytes of the token in it */
  unsigned long used;/* when last matched (LRU) */
  size_t len[FAV_HDRSET_LINES];
} hdrset;

/* The per-request options last set on an easy handle, so that a kept
 * handle gets only the ones that changed (curl_easy_setopt costs ~100
 * instructions a call, CURLOPT_URL a copy and a wiped free more; the
 * session sends the same ones on every call). libcurl copies them into
 * its per-transfer state when a transfer starts (Curl_pretransfer), so an
 * option set once stays in force. valid 0: nothing known, set them all. */
typedef struct easy_opts {
  int valid;
  char *url;          /* a copy of the URL set (wiped when freed), or NULL */
  size_t url_len;
  const void *t;      /* PRIVATE, HEADERDATA and WRITEDATA */
  const char *ua;     /* USERAGENT (NULL or the client's user_agent) */
  int noenv;          /* PROXY and NOPROXY are "" (no proxy variable in the
                         environment), not NULL (libcurl reads them) */
  long dns;
  const struct curl_slist *hdrs;
  int method;         /* 1 POST, 2 GET, 3 DELETE */
  const char *postfields;
  curl_off_t postsize;
} easy_opts;

/* An easy handle kept for the next request, with what is set on it. */
typedef struct easy_slot {
  CURL *e;
  easy_opts o;
} easy_slot;

typedef struct transfer {
  struct transfer *next;
  struct fav_http *owner;
  CURL *easy;
  easy_opts eo;    /* the options set on easy */
  long id;
  struct curl_slist *hdrs; /* request headers of this transfer alone (not
                              kept in a hdrset); the auth line is wiped */
  hdrset *hset;    /* or the shared list it uses */
  int ua_sent;     /* the list carries the User-Agent line */
  fav_buf body;    /* the request body libcurl reads */
  long status;
  fav_buf rhdr;    /* response headers collected so far */
  size_t hdr_bytes;/* all header bytes received, every block, kept or not */
  int headers_sent;/* the Q_HEADERS item is queued */
  int headers_done;/* the final header block ended with its blank line */
  int sse;         /* the response is text/event-stream */
  int ct_seen;     /* the header block so far has a Content-Type... */
  int ct_sse;      /* ...and the last one says text/event-stream */
  fav_sse parser;  /* used when sse is set */
  int parser_on;   /* the parser is in use by this transfer */
  int parser_kept; /* the parser holds memory (kept for reuse) */
  unsigned long id_seq; /* the parser's id_seq last handed on */
  fav_buf rbody;   /* a non-SSE body */
  size_t received; /* all body bytes, SSE included */
  double backstop; /* monotonic ms past which it fails as timed out (the
                      request's timeout_ms; 0: none): see expire_backstops */
  const char *fail_code; /* set by a callback that aborted the transfer */
  char fail_msg[160];
} transfer;

typedef struct fav_http {
  CURLM *multi;
  transfer *active;
  easy_slot idle[FAV_IDLE_EASY];
  int nidle;
  transfer *tfree[FAV_IDLE_TRANSFERS]; /* finished structs, for reuse */
  int ntfree;
  qitem *qfree[FAV_IDLE_ITEMS]; /* handed-on items, for reuse */
  int nqfree;
  hdrset *hsets[FAV_HDRSETS];
  unsigned long hclock;
  qitem *qhead, *qtail;
  long next_id;
  size_t max_response;
  size_t max_event;
  long connect_timeout_ms;
  char *user_agent;
  char *ua_line;   /* "User-Agent: " .. user_agent, or NULL */
  char *ca_file;
  double dns_at;   /* when a transfer last ran with DNS_CACHE_TIMEOUT set
                      (monotonic ms; see FAV_DNS_CACHE_S) */
  long ex_id;      /* the transfer http:exchange waits for, or 0 */
  int ex_ended;    /* it has ended (finish saw it) */
  int ex_event;    /* it queued an event: a server request in it may wait
                      for our answer, so exchange waits no longer */
  int ex_sse;      /* exchange hands over a one-event SSE answer too */
  struct transfer *ex_t; /* it, ended with an answer exchange hands over
                            itself: out of the active list and the queue */
  qitem *ex_ev;    /* that answer's one event, when it is SSE */
  fav_jd_cache *jdc; /* the Lua state's string cache (exchange's JSON-RPC
                        mode), once that has run */
  int closed;
} fav_http;

static int curl_ready = 0;

static void exchange_release(fav_http *h);

/* ---- libcurl's memory: wiped when freed ------------------------------ *
 * libcurl copies the Authorization line into its own buffers (the header
 * list, the request it sends); freed memory keeps its bytes until reused.
 * favcrm gives libcurl an allocator whose free (and realloc, which moves)
 * zeroes the block first, so nothing libcurl had is left in the heap. It
 * only takes effect when favcrm is the first to initialise libcurl in the
 * process (docs/LIMITS.md). Needs malloc_usable_size (glibc, musl).
 *
 * Large blocks are not wiped and freed at once but kept in a pool (a few
 * sizes, WA_POOL_DEPTH blocks of each, WA_POOL_BYTES in all; what it holds
 * libcurl had in use at once a moment before): libcurl frees its 16 KiB
 * receive buffer (and, over TLS, its 64 KiB upload buffer) after every
 * transfer and allocates the same size again for the next one, so zeroing
 * and returning it each time was a good part of a call's cost (16k
 * instructions of memset, plus malloc_consolidate on every large malloc).
 * A pooled block is never back in the heap: it is handed back to libcurl
 * only (malloc promises no content; calloc zeroes what it takes), and it is
 * wiped before it is freed: when the pool is full, and all of them when
 * any favcrm.Http closes (wa_pool_drain), so after close() nothing of
 * libcurl's is left unwiped, as before. A lock guards the pool: libcurl's
 * threaded resolver allocates from its own thread. */
#if defined(__GLIBC__) || defined(__linux__)
#include <malloc.h>
#include <pthread.h>
#define FAV_WIPING_ALLOC 1

#define WA_POOL_MIN 1024            /* smaller blocks: wiped and freed */
#define WA_POOL_MAX (128 * 1024)    /* larger blocks: wiped and freed */
#define WA_POOL_CLASSES 8           /* distinct block sizes kept */
#define WA_POOL_DEPTH 72            /* blocks kept of one size (call_many
                                       runs 64 transfers at once) */
#define WA_POOL_BYTES (3 * 1024 * 1024)

/* The pool: a stack of blocks per usable size (libcurl asks for a handful
 * of sizes, the same ones on every transfer). */
static pthread_mutex_t wa_lock = PTHREAD_MUTEX_INITIALIZER;
static struct {
  size_t size; /* usable size of every block here; 0: class unused */
  int n;
  void *blk[WA_POOL_DEPTH];
} wa_pool[WA_POOL_CLASSES];
static size_t wa_pool_bytes;

/* A pooled block of at least n bytes (and at most 2n, so a small request
 * does not take a big block), or NULL. Never raises. */
static void *wa_pool_take(size_t n) {
  void *p = NULL;
  int i;
  if (n < WA_POOL_MIN || n > WA_POOL_MAX) return NULL;
  pthread_mutex_lock(&wa_lock);
  for (i = 0; i < WA_POOL_CLASSES; i++) {
    size_t sz = wa_pool[i].size;
    if (wa_pool[i].n > 0 && sz >= n && sz / 2 <= n) {
      p = wa_pool[i].blk[--wa_pool[i].n];
      wa_pool_bytes -= sz;
      break;
    }
  }
  pthread_mutex_unlock(&wa_lock);
  return p;
}

/* Keeps p (usable size n) in the pool; 0 when it does not fit. */
static int wa_pool_put(void *p, size_t n) {
  int i, free_class = -1, ok = 0;
  if (n < WA_POOL_MIN || n > WA_POOL_MAX) return 0;
  pthread_mutex_lock(&wa_lock);
  if (wa_pool_bytes + n <= WA_POOL_BYTES) {
    for (i = 0; i < WA_POOL_CLASSES; i++) {
      if (wa_pool[i].size == n) break;
      if (free_class < 0 && wa_pool[i].n == 0) free_class = i;
    }
    if (i == WA_POOL_CLASSES && free_class >= 0) {
      i = free_class; /* an empty class takes the new size */
      wa_pool[i].size = n;
    }
    if (i < WA_POOL_CLASSES && wa_pool[i].n < WA_POOL_DEPTH) {
      wa_pool[i].blk[wa_pool[i].n++] = p;
      wa_pool_bytes += n;
      ok = 1;
    }
  }
  pthread_mutex_unlock(&wa_lock);
  return ok;
}

/* Wipes and frees every pooled block. Never raises. */
static void wa_pool_drain(void) {
  int i;
  pthread_mutex_lock(&wa_lock);
  for (i = 0; i < WA_POOL_CLASSES; i++) {
    while (wa_pool[i].n > 0) {
      void *p = wa_pool[i].blk[--wa_pool[i].n];
      fav_wipe(p, wa_pool[i].size);
      free(p);
    }
    wa_pool[i].size = 0;
  }
  wa_pool_bytes = 0;
  pthread_mutex_unlock(&wa_lock);
}

static void *wa_malloc(size_t n) {
  void *p = wa_pool_take(n);
  return p ? p : malloc(n);
}
static void *wa_calloc(size_t a, size_t b) {
  void *p;
  if (b && a > ((size_t)-1) / b) return NULL;
  p = wa_pool_take(a * b);
  if (!p) return calloc(a, b);
  memset(p, 0, a * b);
  return p;
}
static char *wa_strdup(const char *p) {
  size_t n = strlen(p) + 1;
  char *q = wa_malloc(n);
  if (q) memcpy(q, p, n);
  return q;
}
/* memset through a volatile pointer, as fav_wipe's fallback: a wipe the
 * compiler cannot drop, one call fewer than fav_wipe's (libcurl frees ~35
 * blocks a request). */
static void *(*volatile wa_memset)(void *, int, size_t) = memset;

static void wa_free(void *p) {
  size_t n;
  if (!p) return;
  n = malloc_usable_size(p);
  if (wa_pool_put(p, n)) return;
  wa_memset(p, 0, n);
  free(p);
}
/* A block that grows moves (so that the old one is wiped), and a move
 * takes room to grow into: libcurl's growing buffers (the request it
 * builds, header lines) double from 32 bytes, a move each time, ~170
 * instructions a move; given at least twice the size (and 512 bytes), the
 * next growth or two fit where the block is. */
#define WA_GROW_MIN 512
static void *wa_realloc(void *p, size_t n) {
  size_t old, want;
  void *q;
  if (!p) return wa_malloc(n);
  if (n == 0) n = 1;
  old = malloc_usable_size(p);
  if (n <= old) return p; /* fits: the block stays where it is */
  want = n < WA_GROW_MIN / 2 ? WA_GROW_MIN : n <= ((size_t)-1) / 2 ? 2 * n : n;
  q = want > WA_POOL_MAX ? NULL : wa_malloc(want); /* (a big one: no slack) */
  if (!q) q = wa_malloc(n);
  if (!q) return NULL;
  memcpy(q, p, old);
  wa_free(p);
  return q;
}
#else
static void wa_pool_drain(void) {}
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

/* Frees q's strings; q is kept by its client for the next item (at most
 * FAV_IDLE_ITEMS of them, of at most FAV_KEEP_BUF bytes) unless the client
 * is closed. */
static void qitem_free(qitem *q) {
  fav_http *h;
  if (!q) return;
  if (!q->inl) { /* else they live in q's own block */
    free(q->data);
    free(q->event);
    free(q->event_id);
    free(q->headers);
  }
  free(q->err_msg);
  h = q->owner;
  if (h && !h->closed && h->nqfree < FAV_IDLE_ITEMS && q->cap <= FAV_KEEP_BUF) {
    h->qfree[h->nqfree++] = q;
    return;
  }
  free(q);
}

/* An item, zeroed, with at least extra bytes after the struct for the
 * strings it carries (one allocation an item, not one a string): a kept
 * one of h's when one is large enough. NULL on out of memory. */
static qitem *qitem_new(fav_http *h, qkind kind, long id, size_t extra) {
  qitem *q = NULL;
  size_t cap = extra;
  int i;
  for (i = h->nqfree - 1; i >= 0; i--) {
    if (h->qfree[i]->cap >= extra) {
      q = h->qfree[i];
      h->qfree[i] = h->qfree[--h->nqfree];
      cap = q->cap;
      break;
    }
  }
  if (!q) {
    if (cap < 256) cap = 256; /* room for a small event or headers */
    if (cap > ((size_t)-1) - sizeof *q) return NULL;
    q = malloc(sizeof *q + cap);
    if (!q) return NULL;
  }
  memset(q, 0, sizeof *q);
  q->cap = cap;
  q->owner = h;
  q->kind = kind;
  q->id = id;
  q->retry = -1;
  return q;
}

/* Copies n bytes of s and a NUL to *at (inside an item's block), returns
 * where they went and moves *at past them. */
static char *qitem_put(char **at, const char *s, size_t n) {
  char *p = *at;
  if (n) memcpy(p, s, n);
  p[n] = '\0';
  *at = p + n + 1;
  return p;
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

/* Wipes and frees a header list. Never raises. */
static void free_slist(struct curl_slist *l) {
  wipe_slist(l);
  curl_slist_free_all(l);
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
  size_t n = t->rhdr.p ? t->rhdr.len : 0;
  if (t->headers_sent) return;
  t->headers_sent = 1;
  q = qitem_new(t->owner, Q_HEADERS, t->id, n + 1);
  if (!q) return;
  q->inl = 1;
  q->status = t->status;
  q->sse = t->sse;
  if (n) {
    char *at = (char *)(q + 1);
    q->headers = qitem_put(&at, t->rhdr.p, n);
    q->headers_len = n;
  }
  queue_push(t->owner, q);
}

/* Whether a byte is an ASCII letter equal to the lower-case c, any case. */
#define LC_EQ(b, c) (((unsigned char)(b) | 0x20) == (unsigned char)(c))

/* Whether the n bytes at name are lc (lower case, n bytes) in any case. */
static int name_is(const char *name, const char *lc, size_t n) {
  size_t i;
  for (i = 0; i < n; i++)
    if (!LC_EQ(name[i], lc[i])) return 0;
  return 1;
}

/* The response headers the session reads; the others are not handed to
 * Lua at all (building them into tables was a good part of a call's cost).
 * Case-insensitive; picks by length first so that most headers cost one
 * switch. (A '-' matches only '-': 0x2d | 0x20 is 0x2d.) */
static int wanted_header(const char *name, size_t n) {
  switch (n) {
    case 4: return name_is(name, "date", 4);
    case 8: return name_is(name, "location", 8);
    case 11: return name_is(name, "retry-after", 11);
    case 12: return name_is(name, "content-type", 12);
    case 14: return name_is(name, "mcp-session-id", 14) || name_is(name, "content-length", 14);
    case 16: return name_is(name, "www-authenticate", 16);
    case 20: return name_is(name, "mcp-protocol-version", 20);
    default: return 0;
  }
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
  if (len >= 5 && buf[0] == 'H' && memcmp(buf, "HTTP/", 5) == 0) {
    /* a new header block (after a 1xx): start over */
    const char *sp = memchr(buf, ' ', len);
    size_t left = sp ? len - (size_t)(sp + 1 - buf) : 0;
#define IS_DIGIT(c) ((unsigned)((unsigned char)(c) - '0') < 10u)
    /* three digits (and no fourth): as strtol reads them, without it */
    if (left >= 3 && IS_DIGIT(sp[1]) && IS_DIGIT(sp[2]) && IS_DIGIT(sp[3]) && (left == 3 || !IS_DIGIT(sp[4])))
      t->status = (sp[1] - '0') * 100 + (sp[2] - '0') * 10 + (sp[3] - '0');
    else
      t->status = sp ? strtol(sp + 1, NULL, 10) : 0;
#undef IS_DIGIT
    t->rhdr.len = 0;
    t->ct_seen = t->ct_sse = 0;
    return len;
  }
  if (len <= 2 && (buf[0] == '\r' || buf[0] == '\n')) {
    if (t->status >= 200) {
      t->headers_done = 1;
      /* headers complete: the body is SSE when the block's (last)
       * Content-Type says so (see below) */
      if (t->ct_seen) t->sse = t->ct_sse;
      queue_headers(t);
    }
    return len;
  }
  colon = memchr(buf, ':', len);
  if (!colon) return len;
  if (!wanted_header(buf, (size_t)(colon - buf))) return len;
  nl = len;
  while (nl > 0 && (buf[nl - 1] == '\r' || buf[nl - 1] == '\n')) nl--;
  if ((size_t)(colon - buf) >= nl) return len;
  for (i = 0; i < (size_t)(colon - buf); i++)
    if (buf[i] >= 'A' && buf[i] <= 'Z') buf[i] = (char)(buf[i] - 'A' + 'a');
  if (colon - buf == 12 && buf[0] == 'c' && buf[8] == 't') { /* content-type (the only 12 wanted) */
    const char *v = colon + 1, *end = buf + nl;
    while (v < end && *v == ' ') v++;
    t->ct_seen = 1;
    t->ct_sse = end - v >= 17 && strncasecmp(v, "text/event-stream", 17) == 0;
  }
  /* the line and its "\n" (one reserve) */
  if (fav_buf_reserve(&t->rhdr, t->rhdr.len + nl + 1, FAV_MAX_HEADER_BYTES) != 0) {
    fail(t, FAV_ETOO_LARGE, "response headers over 64 KiB");
    return 0;
  }
  memcpy(t->rhdr.p + t->rhdr.len, buf, nl);
  t->rhdr.p[t->rhdr.len + nl] = '\n';
  t->rhdr.len += nl + 1;
  t->rhdr.p[t->rhdr.len] = '\0';
  return len;
}

static int on_sse_event(void *ud, const fav_sse_event *ev) {
  transfer *t = ud;
  qitem *q;
  char *at;
  /* the id only when it changed: a long id is not copied per event */
  int new_id = ev->id_seq != t->id_seq;
  size_t extra = ev->data_len + 1 + ev->event_len + 1 + (new_id ? ev->id_len + 1 : 0);
  /* an event without data (a priming event) carries only an id and a
   * retry: those reach Lua with the next event or with "done" */
  if (ev->data_len == 0) return 0;
  if (extra < ev->data_len) return 1; /* overflow */
  q = qitem_new(t->owner, Q_EVENT, t->id, extra);
  if (!q) return 1;
  q->inl = 1;
  at = (char *)(q + 1);
  q->data = qitem_put(&at, ev->data, ev->data_len);
  q->len = ev->data_len;
  q->event = qitem_put(&at, ev->event, ev->event_len);
  if (new_id) {
    q->event_id = qitem_put(&at, ev->id, ev->id_len);
    t->id_seq = ev->id_seq;
  }
  q->retry = ev->retry;
  if (t->id == t->owner->ex_id) t->owner->ex_event = 1;
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
      /* a kept parser keeps its buffers' memory */
      if (t->parser_kept) fav_sse_restart(&t->parser, h->max_event);
      else fav_sse_init(&t->parser, h->max_event);
      t->id_seq = t->parser.id_seq;
      t->parser_on = t->parser_kept = 1;
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

/* ---- request header lists -------------------------------------------- */

/* The last line of a non-empty list. */
static const char *slist_last(const struct curl_slist *l) {
  while (l->next) l = l->next;
  return l->data;
}

static void hdrset_free(hdrset *s) {
  if (!s) return;
  free_slist(s->list);
  free(s);
}

/* A walk over the lines of req.headers then req.extra_headers (lists of
 * one-line strings or favcrm.Secret lines), which start_transfer has put
 * on the stack at lists and lists + 1 (a missing list, or one that is not
 * a table, has none; an item that is neither a string, a number nor an
 * open secret ends the walk with bad set,
 * so hdrset_find can walk them before start_transfer checks them):
 *   hdr_iter it = HDR_ITER(L, lists);
 *   while (hdr_next(&it, &str, &len)) ... ;   (or hdr_stop(&it) to leave)
 * While it walks, the current line is on the stack (str stays valid until
 * the next call); when hdr_next has returned 0, or after hdr_stop, the
 * stack is as it was. Does not raise. */
static const char *auth_secret(lua_State *L, int idx, size_t *len);

typedef struct hdr_iter {
  lua_State *L;
  int lists;  /* the stack index of req.headers (extra_headers: + 1) */
  int list;   /* lists opened so far (0, 1: headers, 2: extra_headers) */
  int line;   /* the current line is on the stack */
  int bad;    /* a line was neither a string, a number nor a
                 favcrm.Secret (the walk stopped there) */
  int secret; /* the current line is a favcrm.Secret's bytes */
  size_t i, n;
} hdr_iter;

#define HDR_ITER(L, lists) {(L), (lists), 0, 0, 0, 0, 0, 0}

static void hdr_stop(hdr_iter *it) {
  if (it->line) lua_pop(it->L, 1);
  it->line = 0;
  it->list = 2;
  it->i = it->n = 0;
}

static int hdr_next(hdr_iter *it, const char **str, size_t *len) {
  lua_State *L = it->L;
  if (it->line) { lua_pop(L, 1); it->line = 0; }
  for (;;) {
    if (it->i < it->n) {
      lua_rawgeti(L, it->lists + it->list - 1, (int)++it->i);
      it->line = 1;
      it->secret = lua_type(L, -1) == LUA_TUSERDATA;
      /* a number becomes its text; a secret gives its bytes (a line of
       * the caller's, such as OAuth's Basic client credentials) */
      *str = it->secret ? auth_secret(L, -1, len) : lua_tolstring(L, -1, len);
      if (!*str) {
        it->bad = 1;
        hdr_stop(it);
        return 0;
      }
      return 1;
    }
    if (it->list == 2) return 0;
    it->i = 0;
    it->n = lua_istable(L, it->lists + it->list) ? lua_rawlen(L, it->lists + it->list) : 0;
    it->list++;
  }
}

/* Whether set s holds exactly the lines of req.headers and
 * req.extra_headers (not checked yet: see hdr_iter),
 * then "Expect:" when expect, then the Authorization line for auth. Does
 * not raise; leaves the stack as it found it. */
static int hdrset_match(lua_State *L, int lists, const hdrset *s, int ua, int expect, const char *auth,
                        size_t auth_len) {
  const struct curl_slist *node = s->list;
  hdr_iter it = HDR_ITER(L, lists);
  const char *str;
  size_t sl;
  int k = 0;
  if (s->ua_cand != ua || s->expect != expect || s->auth != (auth != NULL) ||
      (auth && s->auth_len != auth_len))
    return 0;
  while (hdr_next(&it, &str, &sl)) {
    if (!node || k >= s->nlines || s->len[k] != sl || memcmp(node->data, str, sl) != 0) {
      hdr_stop(&it);
      return 0;
    }
    node = node->next;
    k++;
  }
  if (it.bad || k != s->nlines) return 0;
  if (s->ua) node = node ? node->next : NULL; /* the same User-Agent line */
  if (expect) node = node ? node->next : NULL; /* "Expect:" itself */
  if (auth) {
    if (!node || memcmp(node->data + 22, auth, auth_len) != 0) return 0;
    node = node->next;
  }
  return node == NULL;
}

/* Builds the list of lines hdrset_match describes into a new set (nlines
 * and len filled in only while there are at most FAV_HDRSET_LINES lines;
 * and no line is an Authorization of the caller's; *cacheable tells).
 * Returns NULL on out of memory. Does not raise; the
 * caller has checked the types already. */
static hdrset *hdrset_build(lua_State *L, int lists, const char *ua, int expect, const char *auth,
                            size_t auth_len, int *cacheable) {
  hdrset *s = calloc(1, sizeof *s);
  hdr_iter it = HDR_ITER(L, lists);
  struct curl_slist *l;
  const char *str;
  size_t sl;
  *cacheable = 1;
  if (!s) return NULL;
  while (hdr_next(&it, &str, &sl)) {
    if (sl >= 11 && name_is(str, "user-agent:", 11)) ua = NULL; /* the caller's wins */
    /* a credential of the caller's (OAuth's Basic client secret) is
     * not kept: that list is the transfer's, wiped when it ends */
    if ((sl >= 14 && name_is(str, "authorization:", 14)) ||
        (sl >= 20 && name_is(str, "proxy-authorization:", 20)) || it.secret)
      *cacheable = 0;
    l = curl_slist_append(s->list, str);
    if (!l) { hdr_stop(&it); hdrset_free(s); return NULL; }
    s->list = l;
    if (s->nlines < FAV_HDRSET_LINES) s->len[s->nlines] = sl;
    else *cacheable = 0;
    s->nlines++;
  }
  if (ua) {
    l = curl_slist_append(s->list, ua);
    if (!l) { hdrset_free(s); return NULL; }
    s->list = l;
    s->ua = 1;
  }
  if (expect) {
    /* no "Expect: 100-continue" round trip for larger bodies */
    l = curl_slist_append(s->list, "Expect:");
    if (!l) { hdrset_free(s); return NULL; }
    s->list = l;
    s->expect = 1;
  }
  if (auth) {
    static const char pre[] = "Authorization: Bearer ";
    size_t n = sizeof pre - 1 + auth_len;
    char *line = malloc(n + 1);
    if (!line) { hdrset_free(s); return NULL; }
    memcpy(line, pre, sizeof pre - 1);
    memcpy(line + sizeof pre - 1, auth, auth_len);
    line[n] = '\0';
    l = curl_slist_append(s->list, line);
    fav_wipe(line, n);
    free(line);
    if (!l) { hdrset_free(s); return NULL; }
    s->list = l;
    s->auth = 1;
    s->auth_len = auth_len;
  }
  return s;
}

/* The kept set of h with exactly the lines hdrset_match describes, or
 * NULL. Does not raise; leaves the stack as it found it. Lines it matches
 * are lines a set was built from: checked then, so not again. */
static hdrset *hdrset_find(lua_State *L, int lists, fav_http *h, int ua, int expect, const char *auth,
                           size_t auth_len) {
  int i;
  for (i = 0; i < FAV_HDRSETS; i++) {
    hdrset *s = h->hsets[i];
    if (s && hdrset_match(L, lists, s, ua, expect, auth, auth_len)) return s;
  }
  return NULL;
}

/* Gives t its request header list: found (a kept set with the same
 * lines, from hdrset_find), else a new one, kept in a free or least recently
 * used idle slot when it can be. A new Authorization line retires every
 * idle set with another one (a refreshed token: the old goes now). Returns
 * NULL on success, else a static message. Does not raise. */
static const char *take_headers(lua_State *L, int lists, fav_http *h, transfer *t, hdrset *found, int ua,
                                int expect, const char *auth, size_t auth_len) {
  hdrset *s = found;
  int i, slot = -1, cacheable;
  if (s) {
    s->refs++;
    s->used = ++h->hclock;
    t->hset = s;
    t->ua_sent = s->ua;
    return NULL;
  }
  s = hdrset_build(L, lists, ua ? h->ua_line : NULL, expect, auth, auth_len, &cacheable);
  if (!s) return "out of memory";
  s->ua_cand = ua;
  t->ua_sent = s->ua;
  for (i = 0; i < FAV_HDRSETS; i++) {
    hdrset *o = h->hsets[i];
    if (o && o->refs == 0 && o->auth &&
        (!auth || o->auth_len != auth_len || memcmp(slist_last(o->list) + 22, auth, auth_len) != 0)) {
      hdrset_free(o);
      h->hsets[i] = o = NULL;
    }
    if (!o) { if (slot < 0 || h->hsets[slot]) slot = i; }
    else if (o->refs == 0 && (slot < 0 || (h->hsets[slot] && o->used < h->hsets[slot]->used))) slot = i;
  }
  if (cacheable && slot >= 0) {
    hdrset_free(h->hsets[slot]);
    h->hsets[slot] = s;
    s->refs = 1;
    s->used = ++h->hclock;
    t->hset = s;
  } else {
    t->hdrs = s->list; /* this transfer's alone */
    s->list = NULL;
    free(s);
  }
  return NULL;
}

/* Whether the environment may name a proxy for libcurl (http_proxy,
 * https_proxy, all_proxy, in any case: a superset of what libcurl reads).
 *
 * Why it matters: libcurl formats CURLOPT_USERAGENT into a "User-Agent:"
 * line of its own on every transfer (curl's printf, byte by byte, twice:
 * about 6k instructions a call for favcrm's user agent). Sent as a line of
 * the kept header list instead, it costs one copy. But libcurl also sends
 * CURLOPT_USERAGENT to a proxy (CONNECT), which the header list does not
 * reach: so when a proxy may be in play, the option is used as before. */
/* Whether the n bytes at s are lc (lower case, n bytes) in any ASCII case:
 * exact for every byte (name_is's LC_EQ takes any byte b with b | 0x20 ==
 * c, so it never matched the '_' of "http_proxy"). */
static int ascii_ci_is(const char *s, const char *lc, size_t n) {
  size_t i;
  for (i = 0; i < n; i++) {
    unsigned char b = (unsigned char)s[i];
    if (b >= 'A' && b <= 'Z') b = (unsigned char)(b + ('a' - 'A'));
    if (b != (unsigned char)lc[i]) return 0;
  }
  return 1;
}

static int proxy_env(void) {
  char **e;
  for (e = environ; e && *e; e++) {
    const char *v = *e;
    if (!LC_EQ(v[0], 'h') && !LC_EQ(v[0], 'a')) continue;
    if (ascii_ci_is(v, "http_proxy=", 11) || ascii_ci_is(v, "https_proxy=", 12) || ascii_ci_is(v, "all_proxy=", 10))
      return 1;
  }
  return 0;
}

/* ---- transfer lifecycle ---------------------------------------------- */

/* A transfer struct: a finished one kept by h (its buffers' memory kept,
 * everything else zeroed) or a new zeroed one. NULL on out of memory. */
static transfer *transfer_get(fav_http *h) {
  transfer *t;
  if (h->ntfree > 0) {
    fav_buf body, rhdr, rbody;
    fav_sse parser;
    int kept;
    t = h->tfree[--h->ntfree];
    body = t->body;
    rhdr = t->rhdr;
    rbody = t->rbody;
    parser = t->parser;
    kept = t->parser_kept;
    memset(t, 0, sizeof *t);
    t->body = body;
    t->rhdr = rhdr;
    t->rbody = rbody;
    t->body.len = t->rhdr.len = t->rbody.len = 0;
    if (t->rhdr.p) t->rhdr.p[0] = '\0';
    t->parser = parser;
    t->parser_kept = kept;
    return t;
  }
  return calloc(1, sizeof *t);
}

static void buf_trim(fav_buf *b) {
  if (b->cap > FAV_KEEP_BUF) fav_buf_free(b);
}

/* Frees t's memory for good. */
static void transfer_destroy(transfer *t) {
  fav_buf_free(&t->body);
  fav_buf_free(&t->rhdr);
  fav_buf_free(&t->rbody);
  if (t->parser_on || t->parser_kept) fav_sse_free(&t->parser);
  free(t);
}

/* Forgets what is known to be set on an easy handle (wipes and frees the
 * URL copy). Never raises. */
static void easy_opts_clear(easy_opts *o) {
  if (o->url) {
    fav_wipe(o->url, o->url_len);
    free(o->url);
  }
  memset(o, 0, sizeof *o);
}

static void transfer_free(fav_http *h, transfer *t) {
  if (t->easy) {
    curl_multi_remove_handle(h->multi, t->easy);
    if (h->nidle < FAV_IDLE_EASY && !h->closed) {
      /* kept as it is, not curl_easy_reset: a reset frees and later
       * reallocates (and our allocator wipes) libcurl's per-handle buffers
       * on every request. The options that are the same for every request
       * of h were set when the handle was made (easy_new); start_transfer
       * sets every other option a request uses, the ones it does not need
       * back to their defaults, each only when it differs from what the
       * handle has (kept with it: easy_opts). */
      h->idle[h->nidle].e = t->easy;
      h->idle[h->nidle++].o = t->eo;
      memset(&t->eo, 0, sizeof t->eo);
    } else {
      curl_easy_cleanup(t->easy);
      easy_opts_clear(&t->eo);
    }
    t->easy = NULL;
  }
  if (t->hset) t->hset->refs--;
  t->hset = NULL;
  free_slist(t->hdrs);
  t->hdrs = NULL;
  /* the request body (an OAuth token request's carries the code verifier
   * or the refresh token): wiped, kept or not */
  if (t->body.p && t->body.len) fav_wipe(t->body.p, t->body.len);
  t->body.len = 0;
  if (h->ntfree < FAV_IDLE_TRANSFERS && !h->closed) {
    buf_trim(&t->body);
    buf_trim(&t->rhdr);
    buf_trim(&t->rbody); /* (finish hands a whole body on as it is; a
                            body exchange pushed stays for the next one) */
    if (t->parser_on || t->parser_kept) {
      if (t->parser.line.cap > FAV_KEEP_BUF || t->parser.data.cap > FAV_KEEP_BUF ||
          t->parser.type.cap > FAV_KEEP_BUF || t->parser.id.cap > FAV_KEEP_BUF ||
          t->parser.last_id.cap > FAV_KEEP_BUF) {
        fav_sse_free(&t->parser);
        t->parser_kept = 0;
      }
      t->parser_on = 0;
    }
    h->tfree[h->ntfree++] = t;
    return;
  }
  transfer_destroy(t);
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

/* Drops t's queued headers item, if any. Never raises. */
static void queue_drop_headers(fav_http *h, const transfer *t) {
  qitem **pp = &h->qhead, *prev = NULL;
  while (*pp) {
    qitem *q = *pp;
    if (q->id == t->id && q->kind == Q_HEADERS) {
      *pp = q->next;
      if (h->qtail == q) h->qtail = prev;
      qitem_free(q);
      return;
    }
    prev = q;
    pp = &q->next;
  }
}

/* Takes the one event item queued for t out of the queue and returns it;
 * NULL (the queue untouched) when t has no event queued or more than one.
 * Never raises. */
static qitem *queue_take_event(fav_http *h, const transfer *t) {
  qitem **pp, **at = NULL, *prev = NULL, *before = NULL, *q;
  for (pp = &h->qhead; *pp; pp = &(*pp)->next) {
    if ((*pp)->id == t->id && (*pp)->kind == Q_EVENT) {
      if (at) return NULL;
      at = pp;
      before = prev;
    }
    prev = *pp;
  }
  if (!at) return NULL;
  q = *at;
  *at = q->next;
  if (h->qtail == q) h->qtail = before;
  q->next = NULL;
  return q;
}

/* Turns a finished transfer into a Q_DONE item and frees it; or, when it
 * is the one http:exchange waits for and its answer is one exchange hands
 * over itself (a clean 2xx with a non-empty body that is not SSE; with
 * ex_sse, also an SSE stream that carried one event), takes its items out
 * of the queue and leaves it in h->ex_t (and the event in h->ex_ev). */
static void finish(fav_http *h, transfer *t, CURLcode rc) {
  qitem *q;
  unlink_transfer(h, t);
  if (t->id == h->ex_id) {
    h->ex_ended = 1;
    if (rc == CURLE_OK && !t->fail_code && t->headers_done && t->status >= 200 && t->status < 300 &&
        ((!t->sse && t->rbody.len > 0) ||
         (t->sse && h->ex_sse && t->parser_on && (h->ex_ev = queue_take_event(h, t)) != NULL))) {
      queue_drop_headers(h, t);
      h->ex_t = t;
      return;
    }
  }
  q = qitem_new(h, Q_DONE, t->id, 0);
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

/* The upvalues of every method in favcrm.Http's __index (fav_http_open):
 * the metatable (checked by identity: luaL_checkudata's registry lookup
 * is a string lookup a call), favcrm.Secret's metatable (nil when it is not
 * registered: then auth takes fav_secret_get's checked way) and the keys of
 * the request table, as Lua strings (lua_getfield makes a Lua string of
 * its C key on every call). */
enum { UV_MT = 1, UV_SECRET_MT, UV_URL, UV_METHOD, UV_BODY, UV_AUTH, UV_HEADERS, UV_EXTRA, UV_TIMEOUT,
       UV_COUNT = UV_TIMEOUT };
static const char *const req_keys[UV_COUNT - UV_URL + 1] = {"url", "method", "body", "auth", "headers",
                                                            "extra_headers", "timeout_ms"};

static fav_http *check_http(lua_State *L) {
  fav_http *h = lua_touserdata(L, 1);
  if (h != NULL) {
    if (!lua_getmetatable(L, 1)) h = NULL;
    else {
      /* (two tables are the same when their addresses are: cheaper than
       * lua_rawequal) */
      if (lua_topointer(L, -1) != lua_topointer(L, lua_upvalueindex(UV_MT))) h = NULL;
      lua_pop(L, 1);
    }
  }
  if (h == NULL) h = luaL_checkudata(L, 1, FAV_HTTP_MT); /* raises the usual message */
  if (h->closed) luaL_error(L, "favcrm.Http is closed");
  return h;
}

/* Pushes field uv (UV_URL...) of the request table at index 2, as
 * lua_getfield would (__index included). */
static void req_field(lua_State *L, int uv) {
  lua_pushvalue(L, lua_upvalueindex(uv));
  lua_gettable(L, 2);
}

/* The bytes of the auth value at idx when it is a favcrm.Secret (open), or
 * NULL. Never raises. */
static const char *auth_secret(lua_State *L, int idx, size_t *len) {
  void *ud;
  int same;
  if (lua_type(L, idx) != LUA_TUSERDATA) return NULL;
  if (lua_isnil(L, lua_upvalueindex(UV_SECRET_MT))) return fav_secret_get(L, idx, len);
  ud = lua_touserdata(L, idx);
  if (!lua_getmetatable(L, idx)) return NULL;
  same = lua_topointer(L, -1) == lua_topointer(L, lua_upvalueindex(UV_SECRET_MT));
  lua_pop(L, 1);
  return same ? fav_secret_bytes(ud, len) : NULL;
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
  if (h->user_agent) {
    size_t n = strlen(h->user_agent);
    h->ua_line = malloc(n + 13);
    if (h->ua_line) {
      memcpy(h->ua_line, "User-Agent: ", 12);
      memcpy(h->ua_line + 12, h->user_agent, n + 1);
    }
  }
  h->ca_file = opt_str_dup(L, 1, "ca_file");
  /* keep as many idle connections as calls may be in flight, so that
   * call_many at high concurrency reuses them instead of reconnecting */
  curl_multi_setopt(h->multi, CURLMOPT_MAXCONNECTS, opt_count(L, 1, "max_connections", FAV_MAX_CONNECTIONS));
  h->next_id = 1;
  h->dns_at = -1e300; /* the first transfer prunes */
  return 1;
}

/* http:close(): idempotent; also __gc and __close. Never raises. */
static int fav_http_close(lua_State *L) {
  fav_http *h = luaL_checkudata(L, 1, FAV_HTTP_MT);
  int i;
  if (!h->multi) return 0;
  h->closed = 1;
  exchange_release(h);
  while (h->active) {
    transfer *t = h->active;
    h->active = t->next;
    transfer_free(h, t);
  }
  for (i = 0; i < h->nidle; i++) {
    curl_easy_cleanup(h->idle[i].e);
    easy_opts_clear(&h->idle[i].o);
  }
  h->nidle = 0;
  for (i = 0; i < h->ntfree; i++) transfer_destroy(h->tfree[i]);
  h->ntfree = 0;
  for (i = 0; i < h->nqfree; i++) free(h->qfree[i]);
  h->nqfree = 0;
  for (i = 0; i < FAV_HDRSETS; i++) {
    hdrset_free(h->hsets[i]); /* wipes the Authorization lines */
    h->hsets[i] = NULL;
  }
  while (h->qhead) {
    qitem *q = h->qhead;
    h->qhead = q->next;
    qitem_free(q);
  }
  h->qtail = NULL;
  curl_multi_cleanup(h->multi);
  h->multi = NULL;
  free(h->user_agent);
  free(h->ua_line);
  free(h->ca_file);
  h->user_agent = h->ca_file = h->ua_line = NULL;
  /* libcurl's pooled blocks may hold this client's Authorization line */
  wa_pool_drain();
  return 0;
}

/* A new easy handle for h with the options that are the same for every
 * request of h set (a kept handle keeps them: fav_http_start sets only
 * the others). NULL when curl_easy_init fails. */
static CURL *easy_new(fav_http *h) {
  CURL *e = curl_easy_init();
  if (!e) return NULL;
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
  curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, h->connect_timeout_ms);
  curl_easy_setopt(e, CURLOPT_TCP_KEEPALIVE, 1L);
  curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, on_header);
  curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, on_body);
  return e;
}

/* Whether something is queued for http:poll to hand over. */
static int queue_ready(const fav_http *h) { return h->qhead != NULL; }

/* Whether http:exchange waits no longer for its transfer: it has ended,
 * or it has queued an event (one that is a server request waits for an
 * answer only the caller can send: the caller takes over from there). */
static int exchange_ended(const fav_http *h) { return h->ex_ended || h->ex_event; }

/* Ends every transfer in flight whose request's timeout_ms has run out
 * at monotonic time now (ms) as libcurl's CURLOPT_TIMEOUT_MS did: failed
 * with CURLE_OPERATION_TIMEDOUT ("timeout", "Timeout was reached"), its
 * connection closed (removed before its response ended). Returns the
 * earliest backstop of the transfers left in flight, 0 when none has one.
 * Never raises. */
static double expire_backstops(fav_http *h, double now) {
  transfer *t = h->active, *next;
  double first = 0;
  for (; t; t = next) {
    next = t->next;
    if (t->backstop <= 0) continue;
    if (now >= t->backstop) finish(h, t, CURLE_OPERATION_TIMEDOUT);
    else if (first <= 0 || t->backstop < first) first = t->backstop;
  }
  return first;
}

/* Advances every transfer until stop(h) holds or the monotonic time
 * deadline (ms) has passed; one round at least, even when it has. A wait
 * ends at the earliest backstop too (expire_backstops). Never raises. */
static void drive(fav_http *h, double deadline, int (*stop)(const fav_http *)) {
  int running = 0;
  for (;;) {
    double now, left, first;
    curl_multi_perform(h->multi, &running);
    drain_info(h);
    now = fav_monotonic_ms();
    first = expire_backstops(h, now);
    if (stop(h)) return;
    left = deadline - now;
    if (left <= 0) return;
    if (first > 0 && first - now < left) left = first - now;
    curl_multi_poll(h->multi, NULL, 0, fav_ms_int(left < 1 ? 1 : left), NULL);
  }
}

/* Starts the transfer the request table at index 2 describes (what
 * http:start takes) and returns it, in flight and owned by h; or NULL with
 * *err a static message (out of memory, libcurl refused the handle) after
 * freeing what it took. Raises on a bad request, before anything is
 * acquired or sent; leaves the fields it read on the stack (the body
 * string among them). */
static transfer *start_transfer(lua_State *L, fav_http *h, const char **err) {
  const char *url, *method = "POST", *auth = NULL;
  size_t auth_len = 0, blen = 0, url_len = 0;
  const char *body = NULL;
  long timeout_ms;
  int post, expect, f, ua, mkind, penv, lists;
  hdrset *found;
  transfer *t;
  CURL *e;
  easy_opts *o;
  const struct curl_slist *hl;
  *err = NULL;
  /* room for the fields and what the header walk pushes, above whatever
   * the caller keeps (exchange: its arguments) */
  luaL_checkstack(L, 16, "start_transfer");
  req_field(L, UV_URL); /* the fields go on top, in this order */
  url = lua_tolstring(L, -1, &url_len);
  if (!url || lua_type(L, -1) != LUA_TSTRING) { luaL_error(L, "bad request field 'url' (string expected)"); return NULL; }
  req_field(L, UV_METHOD);
  if (!lua_isnil(L, -1)) {
    method = lua_tostring(L, -1);
    if (!method || (strcmp(method, "POST") && strcmp(method, "GET") && strcmp(method, "DELETE"))) {
      luaL_error(L, "bad request field 'method' (POST, GET or DELETE expected)");
      return NULL;
    }
  }
  req_field(L, UV_BODY);
  /* a favcrm.Secret body (favcrm.oauth's token requests): its copy in
   * t->body is wiped when the transfer ends, like every body's */
  if (!lua_isnil(L, -1) && (lua_type(L, -1) == LUA_TSTRING || (body = auth_secret(L, -1, &blen)) == NULL)) {
    if (lua_type(L, -1) != LUA_TSTRING) { luaL_error(L, "bad request field 'body' (string or favcrm.secret expected)"); return NULL; }
    body = lua_tolstring(L, -1, &blen);
  }
  req_field(L, UV_AUTH);
  if (!lua_isnil(L, -1)) {
    auth = auth_secret(L, -1, &auth_len);
    if (!auth) {
      if (lua_type(L, -1) != LUA_TSTRING) { luaL_error(L, "bad request field 'auth' (favcrm.secret or string expected)"); return NULL; }
      auth = lua_tolstring(L, -1, &auth_len);
    }
  }
  /* "Expect:" turns off libcurl's "Expect: 100-continue" round trip, which
   * it adds only to a POST body over 1 KiB (1 MiB since 7.76): not sent
   * when it changes nothing */
  mkind = method[0] == 'P' ? 1 : method[0] == 'G' ? 2 : 3;
  post = mkind == 1;
  expect = post && blen > 1024;
  penv = proxy_env();
  ua = h->ua_line && !penv;
  /* lists, lists + 1: the header lists, read once (hdr_iter walks them
   * there); start puts the request at 2 and nothing above it, exchange
   * keeps its own arguments above the request */
  lists = lua_gettop(L) + 1;
  req_field(L, UV_HEADERS);
  req_field(L, UV_EXTRA);
  /* the lines of a kept list were checked when it was built, its token
   * too (a set matches only the same bytes: hdrset_match); hdrset_find
   * raises nothing and takes a list that is not a table as empty */
  found = hdrset_find(L, lists, h, ua, expect, auth, auth_len);
  if (auth && !found && (memchr(auth, '\r', auth_len) || memchr(auth, '\n', auth_len))) {
    luaL_error(L, "bad request field 'auth' (contains a line break)");
    return NULL;
  }
  for (f = 0; f < 2; f++)
    if (!lua_isnil(L, lists + f) && !lua_istable(L, lists + f)) {
      luaL_error(L, "bad request field '%s' (table expected)", f ? "extra_headers" : "headers");
      return NULL;
    }
  for (f = 0; !found && f < 2; f++) {
    const char *field = f ? "extra_headers" : "headers";
    size_t i, n = lua_istable(L, lists + f) ? lua_rawlen(L, lists + f) : 0;
    for (i = 1; i <= n; i++) {
      size_t sl;
      const char *s;
      lua_rawgeti(L, lists + f, (int)i);
      s = lua_type(L, -1) == LUA_TSTRING ? lua_tolstring(L, -1, &sl) : auth_secret(L, -1, &sl);
      if (!s || memchr(s, '\r', sl) || memchr(s, '\n', sl)) {
        luaL_error(L, "bad request field '%s' (item %d is not a one-line string or favcrm.secret)", field, (int)i);
        return NULL;
      }
      lua_pop(L, 1);
    }
  }
  req_field(L, UV_TIMEOUT);
  timeout_ms = (long)fav_popfield_ms(L, "timeout_ms", 0);
  if (timeout_ms < 0) timeout_ms = 0;

  /* From here on nothing raises until the transfer is owned by h. */
  t = transfer_get(h);
  if (!t) { *err = "out of memory"; return NULL; }
  t->owner = h;
  t->id = h->next_id++;
  if (h->nidle > 0) {
    --h->nidle;
    e = h->idle[h->nidle].e;
    t->eo = h->idle[h->nidle].o;
  } else {
    e = easy_new(h);
  }
  t->easy = e;
  t->next = h->active;
  h->active = t;
  if (!e) { *err = "curl_easy_init failed"; goto fail; }
  if ((*err = take_headers(L, lists, h, t, found, ua, expect, auth, auth_len)) != NULL) goto fail;
  if (post && fav_buf_set(&t->body, body ? body : "", blen, (size_t)-2) != 0) { *err = "out of memory"; goto fail; }
  /* only the options that changed since the handle's last request (see
   * easy_opts) */
  o = &t->eo;
  /* the User-Agent line travels in the header list when it can (see
   * ua_line), else as libcurl's option, as before */
  {
    const char *uav = t->ua_sent ? NULL : h->user_agent;
    if (!o->valid || o->ua != uav) {
      curl_easy_setopt(e, CURLOPT_USERAGENT, (char *)uav);
      o->ua = uav;
    }
  }
  if (!o->valid || o->url_len != url_len || memcmp(o->url, url, url_len) != 0) {
    curl_easy_setopt(e, CURLOPT_URL, url);
    if (o->url) {
      fav_wipe(o->url, o->url_len);
      free(o->url);
    }
    o->url = dupmem(url, url_len); /* NULL (out of memory): set again next time */
    o->url_len = o->url ? url_len : 0;
    if (!o->url) o->valid = 0;
  }
  if (!o->valid || o->t != t) {
    curl_easy_setopt(e, CURLOPT_PRIVATE, (char *)t);
    curl_easy_setopt(e, CURLOPT_HEADERDATA, t);
    curl_easy_setopt(e, CURLOPT_WRITEDATA, t);
    o->t = t;
  }
  {
    double now = fav_monotonic_ms();
    long dns = -1L;
    /* timeout_ms is ours to keep, not libcurl's CURLOPT_TIMEOUT_MS (whose
     * timer cost ~0.8k instructions a request): see expire_backstops */
    t->backstop = timeout_ms > 0 ? now + (double)timeout_ms : 0;
    if (now - h->dns_at >= FAV_DNS_CACHE_S * 1000.0 || now < h->dns_at) {
      h->dns_at = now;
      dns = FAV_DNS_CACHE_S;
    }
    if (!o->valid || o->dns != dns) {
      curl_easy_setopt(e, CURLOPT_DNS_CACHE_TIMEOUT, dns);
      o->dns = dns;
    }
  }
  /* With no proxy variable in the environment (proxy_env), libcurl would
   * find none either: saying so ("" for both) spares it five getenv walks
   * of the environment a request (~1.6k instructions); with one, libcurl
   * reads them as before. */
  if (!o->valid || o->noenv != !penv) {
    curl_easy_setopt(e, CURLOPT_PROXY, penv ? (char *)NULL : "");
    curl_easy_setopt(e, CURLOPT_NOPROXY, penv ? (char *)NULL : "");
    o->noenv = !penv;
  }
  hl = t->hset ? t->hset->list : t->hdrs;
  if (!o->valid || o->hdrs != hl) {
    curl_easy_setopt(e, CURLOPT_HTTPHEADER, hl);
    o->hdrs = hl;
  }
  if (post) {
    if (!o->valid || o->method != 1) {
      curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, (char *)NULL);
      curl_easy_setopt(e, CURLOPT_POST, 1L);
      o->postfields = NULL;
      o->postsize = -1;
    }
    if (o->postfields != t->body.p) {
      curl_easy_setopt(e, CURLOPT_POSTFIELDS, t->body.p);
      o->postfields = t->body.p;
    }
    if (o->postsize != (curl_off_t)blen) {
      curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)blen);
      o->postsize = (curl_off_t)blen;
    }
  } else if (!o->valid || o->method != mkind) {
    /* a reused handle may hold a POST's fields: cleared */
    curl_easy_setopt(e, CURLOPT_POSTFIELDS, (char *)NULL);
    curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)-1);
    curl_easy_setopt(e, CURLOPT_HTTPGET, 1L);
    curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, mkind == 2 ? (char *)NULL : "DELETE");
    o->postfields = NULL;
    o->postsize = -1;
  }
  o->method = mkind;
  if (o->url) o->valid = 1;
  if (curl_multi_add_handle(h->multi, e) != CURLM_OK) { *err = "curl_multi_add_handle failed"; goto fail; }
  return t;
fail:
  if (e) {
    curl_easy_cleanup(e);
    easy_opts_clear(&t->eo);
    t->easy = NULL;
  }
  unlink_transfer(h, t);
  transfer_free(h, t);
  return NULL;
}

/* http:start{method=, url=, headers={...}, extra_headers={...}, body=,
 * auth=, timeout_ms=} -> id. extra_headers (optional, like headers) are
 * sent after headers: a caller can pass the same headers table on every
 * request and the per-request lines (Mcp-Method, Mcp-Name) apart; the
 * header list libcurl gets is kept and reused while the lines repeat.
 * A header item is a one-line string or an open favcrm.Secret holding one
 * line (OAuth's Basic client credentials: core.secret_basic); a list with
 * a secret line, or an Authorization line of the caller's, is not kept:
 * it is the transfer's, wiped when it ends.
 * timeout_ms (0 or absent: none) ends the transfer with error "timeout"
 * ("Timeout was reached") once that long has passed since the start, when
 * :poll, :exchange or an event loop (whose :fds timer it shortens) drives
 * it. Misuse raises; an out-of-memory failure returns nil, err. */
static int fav_http_start(lua_State *L) {
  fav_http *h = check_http(L);
  const char *err;
  transfer *t;
  luaL_checktype(L, 2, LUA_TTABLE);
  lua_settop(L, 2);
  t = start_transfer(L, h, &err);
  if (!t) {
    lua_pushnil(L);
    lua_pushstring(L, err);
    return 2;
  }
  lua_pushinteger(L, (lua_Integer)t->id);
  return 1;
}

/* Pushes the value of response header name (lower case, n bytes) of the
 * "name: value\n" lines at p (len bytes), as set_headers_fields would set
 * it (a repeated name's values joined with ", "), or nil. Can raise
 * (memory). */
static void push_header_value(lua_State *L, const char *p, size_t len, const char *name, size_t n) {
  const char *end = p ? p + len : NULL;
  int found = 0;
  while (p && p < end) {
    const char *nl = memchr(p, '\n', (size_t)(end - p));
    if (!nl) nl = end;
    if ((size_t)(nl - p) > n && p[n] == ':' && memcmp(p, name, n) == 0) {
      const char *v = p + n + 1;
      while (v < nl && (*v == ' ' || *v == '\t')) v++;
      if (found) lua_pushliteral(L, ", ");
      lua_pushlstring(L, v, (size_t)(nl - v));
      if (found) lua_concat(L, 3);
      found = 1;
    }
    p = nl + 1;
  }
  if (!found) lua_pushnil(L);
}

/* Whether the Date value of the "name: value\n" lines at p (len bytes) is
 * the string at stack index idx: one date line, whose value (as
 * push_header_value gives it) is that string. Never raises. */
static int date_is(lua_State *L, const char *p, size_t len, int idx) {
  const char *end = p ? p + len : NULL, *val = NULL, *s;
  size_t vlen = 0, slen;
  if (lua_type(L, idx) != LUA_TSTRING) return 0;
  while (p && p < end) {
    const char *nl = memchr(p, '\n', (size_t)(end - p));
    if (!nl) nl = end;
    if (nl - p > 4 && p[4] == ':' && memcmp(p, "date", 4) == 0) {
      const char *v = p + 5;
      if (val) return 0; /* joined: let Lua compare */
      while (v < nl && (*v == ' ' || *v == '\t')) v++;
      val = v;
      vlen = (size_t)(nl - v);
    }
    p = nl + 1;
  }
  s = lua_tolstring(L, idx, &slen);
  return val && slen == vlen && memcmp(s, val, vlen) == 0;
}

/* Whether the session reads the answer of t as JSON-RPC: one SSE event of
 * type "message", or a body whose Content-Type (as push_header_value gives
 * it) starts with application/json in any case. Never raises. */
static int answer_is_json(const fav_http *h, const transfer *t) {
  const char *p = t->rhdr.p, *end = p ? p + t->rhdr.len : NULL;
  if (h->ex_ev) return h->ex_ev->event && strcmp(h->ex_ev->event, "message") == 0;
  while (p && p < end) {
    const char *nl = memchr(p, '\n', (size_t)(end - p));
    if (!nl) nl = end;
    if (nl - p > 12 && p[12] == ':' && memcmp(p, "content-type", 12) == 0) {
      /* the first value: a joined one starts with it */
      const char *v = p + 13;
      while (v < nl && (*v == ' ' || *v == '\t')) v++;
      return nl - v >= 16 && strncasecmp(v, "application/json", 16) == 0;
    }
    p = nl + 1;
  }
  return 0;
}

/* Frees the transfer a raise left in h->ex_t (see fav_http_exchange).
 * Never raises. */
static void exchange_release(fav_http *h) {
  transfer *t = h->ex_t;
  qitem *q = h->ex_ev;
  h->ex_t = NULL;
  h->ex_ev = NULL;
  if (q) qitem_free(q);
  if (t) transfer_free(h, t);
}

/* http:exchange(req [, wait_ms [, sse [, rpc_id [, date [, modern]]]]])
 * -> id, status, body, content_type, date | id | id, result [, date].
 * Starts the transfer http:start(req) would (same fields, checks, errors
 * and header-list reuse), then drives the transfers in flight as
 * http:poll does for at most wait_ms (default 0) until that one has ended
 * or has queued an event (an event may be a server request that waits for
 * the caller's answer; an event and the end that come together still make
 * an ended transfer).
 * When it ended within wait_ms without a transport error, with a status
 * 200..299, a response that is not text/event-stream and a body that is not
 * empty, its items (headers, done) are taken out of the queue (the items of
 * other transfers stay queued, in order) and it returns its id, status,
 * body, and its Content-Type and Date values (nil when absent), building
 * no table. Otherwise it returns the id alone: the transfer is in flight or
 * its items are queued, and http:poll hands them over as if http:start had
 * started it (an SSE answer, a status outside 2xx, a failure, an empty
 * body, wait_ms running out). nil, err when the transfer cannot be started
 * (out of memory), as http:start. Raises on a bad request (naming the
 * field, nothing sent) and on a NaN, infinite or negative wait_ms (a huge
 * finite one is clamped, as poll's); otherwise can raise (memory) only
 * while pushing the answer, when the transfer is held by h.
 * With sse true, a clean 2xx text/event-stream answer whose stream carried
 * exactly one event with data is handed over the same way, with three more
 * values: id, status, data, content_type, date, event (its type, as its
 * "event" item would carry it), event_id, retry (the stream's last event id
 * and retry, as its "done" item would carry them, or nil): nothing of it
 * is queued. Otherwise (no event, or more than one) only the id, as above.
 * With rpc_id (the JSON-RPC id of the request in req.body; not nil), an
 * answer handed over that the session reads as JSON-RPC (a body whose
 * Content-Type is application/json, or one event of type "message") and
 * that is the plain result of that request (see fav_jd_rpc_result: with
 * modern true, not an input_required one) comes back decoded: id, the
 * result table, and the Date value unless it is the string date (nothing
 * else of it is built). Any other answer comes back as without rpc_id. */
static int fav_http_exchange(lua_State *L) {
  fav_http *h = check_http(L);
  const char *err;
  double wait;
  transfer *t;
  long id;
  luaL_checktype(L, 2, LUA_TTABLE);
  wait = fav_optms(L, 3, 0); /* finite, >= 0, clamped */
  h->ex_sse = lua_toboolean(L, 4);
  lua_settop(L, 7); /* the request is at 2, rpc_id, date and modern at 5..7 */
  exchange_release(h);
  t = start_transfer(L, h, &err);
  if (!t) {
    lua_pushnil(L);
    lua_pushstring(L, err);
    return 2;
  }
  id = t->id;
  h->ex_id = id;
  h->ex_ended = h->ex_event = 0;
  drive(h, fav_monotonic_ms() + wait, exchange_ended);
  h->ex_id = 0;
  lua_pushinteger(L, (lua_Integer)id);
  t = h->ex_t;
  if (!t) return 1;
  /* t stays h's while the answer is pushed: a raise leaves it there */
  if (!lua_isnoneornil(L, 5) && answer_is_json(h, t)) {
    const char *b = h->ex_ev ? h->ex_ev->data : t->rbody.p;
    size_t blen = h->ex_ev ? h->ex_ev->len : t->rbody.len;
    if (!h->jdc) h->jdc = fav_jd_cache_get(L);
    if (fav_jd_rpc_result(L, b, blen, 5, lua_toboolean(L, 7), h->jdc)) {
      int n = 2;
      if (!date_is(L, t->rhdr.p, t->rhdr.len, 6)) {
        push_header_value(L, t->rhdr.p, t->rhdr.len, "date", 4);
        n = 3;
      }
      exchange_release(h);
      return n;
    }
  }
  lua_pushinteger(L, (lua_Integer)t->status);
  if (h->ex_ev) lua_pushlstring(L, h->ex_ev->data, h->ex_ev->len);
  else lua_pushlstring(L, t->rbody.p, t->rbody.len);
  push_header_value(L, t->rhdr.p, t->rhdr.len, "content-type", 12);
  push_header_value(L, t->rhdr.p, t->rhdr.len, "date", 4);
  if (h->ex_ev) {
    size_t idlen = 0;
    const char *eid = fav_sse_last_event_id(&t->parser, &idlen);
    long retry = fav_sse_retry(&t->parser);
    lua_pushstring(L, h->ex_ev->event ? h->ex_ev->event : "");
    if (idlen) lua_pushlstring(L, eid, idlen);
    else lua_pushnil(L);
    if (retry >= 0) lua_pushinteger(L, (lua_Integer)retry);
    else lua_pushnil(L);
    exchange_release(h);
    return 8;
  }
  exchange_release(h);
  return 5;
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
  int n = 0;
  drive(h, fav_monotonic_ms() + wait, queue_ready);
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
  {
    /* the request timeouts are ours (expire_backstops): the earliest
     * one is a timer too */
    double first = expire_backstops(h, 0); /* (at time 0: finishes none) */
    if (first > 0) {
      double ms = first - fav_monotonic_ms();
      long l = ms <= 0 ? 0 : (long)fav_ms_int(ms + 1);
      if (timeout < 0 || l < timeout) timeout = l;
    }
  }
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
    {"exchange", fav_http_exchange},
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
  int i;
  /* fav_newclass's class, with the methods' upvalues (see UV_MT) */
  fav_newclass(L, FAV_HTTP_MT, methods, meta, fav_http_close);
  lua_newtable(L);
  lua_pushvalue(L, -2); /* UV_MT */
  luaL_getmetatable(L, FAV_SECRET_MT); /* UV_SECRET_MT */
  for (i = UV_URL; i <= UV_COUNT; i++) lua_pushstring(L, req_keys[i - UV_URL]);
  luaL_setfuncs(L, methods, UV_COUNT);
  lua_setfield(L, -2, "__index");
  lua_pop(L, 1);
  lua_pushcfunction(L, fav_http_new);
  lua_setfield(L, -2, "http_new");
  lua_pushcfunction(L, fav_http_curl_version);
  lua_setfield(L, -2, "curl_version");
  return 0;
}

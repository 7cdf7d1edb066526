/* sse.c: the event-stream parser declared in sse.h. Pure C: no Lua, no
 * globals, no abort(); every allocation is bounded by max_event_bytes + 1
 * (the buffers are util.h's fav_buf). */
#include "sse.h"

#include <stdlib.h>
#include <string.h>

static const unsigned char sse_bom[3] = {0xEF, 0xBB, 0xBF};

/* Enters the sticky error state st and returns it. */
static int sse_fail(fav_sse *p, int st) {
  p->status = st;
  return st;
}

/* See sse.h: prepares p, allocates nothing. */
void fav_sse_init(fav_sse *p, size_t max_event_bytes) {
  memset(p, 0, sizeof *p);
  if (max_event_bytes == 0) max_event_bytes = FAV_SSE_DEFAULT_MAX_EVENT_BYTES;
  if (max_event_bytes > ((size_t)-1) / 4) max_event_bytes = ((size_t)-1) / 4;
  p->max_event_bytes = max_event_bytes;
  p->status = FAV_SSE_OK;
  p->bom_pos = 0;
  p->event_retry = -1;
  p->retry = -1;
}

/* A blank line: commits the pending id, then calls cb unless the data
 * buffer is empty, then clears the event's buffers. Returns a status. */
static int sse_dispatch(fav_sse *p, fav_sse_cb cb, void *ud) {
  fav_sse_event ev;
  int rc = 0;
  if (p->id_dirty) { /* the pending id becomes the last event id string */
    fav_sse_buf t = p->last_id;
    p->last_id = p->id;
    p->id = t;
    p->id_dirty = 0;
    p->id_seq++;
  }
  if (p->data.len > 0) {
    p->data.len--; /* drop the final "\n"; its byte becomes the NUL */
    p->data.p[p->data.len] = '\0';
    ev.data = p->data.p;
    ev.data_len = p->data.len;
    if (p->type.len > 0) {
      ev.event = p->type.p; /* fav_buf_set left it NUL-terminated */
      ev.event_len = p->type.len;
    } else {
      ev.event = "message";
      ev.event_len = 7;
    }
    ev.id = p->last_id.p ? p->last_id.p : "";
    ev.id_len = p->last_id.len;
    ev.id_seq = p->id_seq;
    ev.retry = p->event_retry;
    if (cb != NULL) rc = cb(ud, &ev);
  }
  p->data.len = 0;
  p->type.len = 0;
  p->event_retry = -1;
  return rc != 0 ? sse_fail(p, FAV_SSE_ABORTED) : FAV_SSE_OK;
}

/* Sets retry from a value made only of ASCII digits (clamped to
 * FAV_SSE_RETRY_MAX); any other value is ignored. */
static void sse_retry(fav_sse *p, const char *v, size_t n) {
  long val = 0;
  size_t i;
  if (n == 0) return;
  for (i = 0; i < n; i++) {
    int d;
    if (v[i] < '0' || v[i] > '9') return;
    d = v[i] - '0';
    if (val > (FAV_SSE_RETRY_MAX - d) / 10) val = FAV_SSE_RETRY_MAX;
    else val = val * 10 + d;
  }
  p->event_retry = val;
  p->retry = val;
}

/* Interprets one complete line (without its line end). Returns a status. */
static int sse_line(fav_sse *p, const char *line, size_t n, fav_sse_cb cb, void *ud) {
  const char *colon, *v;
  size_t name_len, vlen, limit = p->max_event_bytes;
  if (n == 0) return sse_dispatch(p, cb, ud);
  if (line[0] == ':') return FAV_SSE_OK; /* comment */
  colon = (const char *)memchr(line, ':', n);
  if (colon != NULL) {
    name_len = (size_t)(colon - line);
    v = colon + 1;
    vlen = n - name_len - 1;
    if (vlen > 0 && *v == ' ') {
      v++;
      vlen--;
    }
  } else {
    name_len = n;
    v = line + n;
    vlen = 0;
  }
  if (name_len == 4 && memcmp(line, "data", 4) == 0) {
    if (p->data.len + vlen + 1 > p->max_event_bytes) return sse_fail(p, FAV_SSE_TOO_LARGE);
    if (fav_buf_add(&p->data, v, vlen, limit) != 0 ||
        fav_buf_add(&p->data, "\n", 1, limit) != 0)
      return sse_fail(p, FAV_SSE_NOMEM);
  } else if (name_len == 5 && memcmp(line, "event", 5) == 0) {
    if (fav_buf_set(&p->type, v, vlen, limit) != 0) return sse_fail(p, FAV_SSE_NOMEM);
  } else if (name_len == 2 && memcmp(line, "id", 2) == 0) {
    if (vlen > 0 && memchr(v, '\0', vlen) != NULL) return FAV_SSE_OK;
    if (fav_buf_set(&p->id, v, vlen, limit) != 0) return sse_fail(p, FAV_SSE_NOMEM);
    p->id_dirty = 1;
  } else if (name_len == 5 && memcmp(line, "retry", 5) == 0) {
    sse_retry(p, v, vlen);
  }
  return FAV_SSE_OK;
}

/* Splits n bytes of s into lines (LF, CRLF, CR), buffering a trailing
 * partial line, and interprets each. Returns a status. */
static int sse_scan(fav_sse *p, const char *s, size_t n, fav_sse_cb cb, void *ud) {
  const char *end = s + n;
  size_t limit = p->max_event_bytes;
  while (s < end) {
    const char *q;
    size_t span;
    int st;
    if (p->cr_pending) {
      p->cr_pending = 0;
      if (*s == '\n') {
        s++;
        continue;
      }
    }
    /* the first LF or CR (memchr: a line of JSON is long) */
    q = (const char *)memchr(s, '\n', (size_t)(end - s));
    if (q == NULL) q = end;
    {
      const char *cr = (const char *)memchr(s, '\r', (size_t)(q - s));
      if (cr != NULL) q = cr;
    }
    span = (size_t)(q - s);
    if (span > p->max_event_bytes - p->line.len ||
        p->data.len > p->max_event_bytes - p->line.len - span)
      return sse_fail(p, FAV_SSE_TOO_LARGE);
    if (q == end) {
      if (fav_buf_add(&p->line, s, span, limit) != 0) return sse_fail(p, FAV_SSE_NOMEM);
      break;
    }
    if (*q == '\r') p->cr_pending = 1;
    if (p->line.len == 0) {
      st = sse_line(p, s, span, cb, ud); /* whole line in this chunk */
    } else {
      if (fav_buf_add(&p->line, s, span, limit) != 0) return sse_fail(p, FAV_SSE_NOMEM);
      st = sse_line(p, p->line.p, p->line.len, cb, ud);
      p->line.len = 0;
    }
    if (st != FAV_SSE_OK) return st;
    s = q + 1;
  }
  return FAV_SSE_OK;
}

/* See sse.h: the BOM check (bytes held back while they may still be a
 * BOM, replayed when they are not), then lines. Returns a status. */
int fav_sse_feed(fav_sse *p, const char *buf, size_t len, fav_sse_cb cb, void *ud) {
  const char *s = buf, *end = buf + len;
  if (p->status != FAV_SSE_OK) return p->status;
  if (len == 0) return FAV_SSE_OK;
  while (p->bom_pos >= 0 && s < end) {
    if ((unsigned char)*s == sse_bom[p->bom_pos]) {
      s++;
      if (++p->bom_pos == 3) p->bom_pos = -1;
    } else {
      int matched = p->bom_pos; /* not a BOM: replay what was held back */
      p->bom_pos = -1;
      if (matched > 0) {
        int st = sse_scan(p, (const char *)sse_bom, (size_t)matched, cb, ud);
        if (st != FAV_SSE_OK) return st;
      }
    }
  }
  return sse_scan(p, s, (size_t)(end - s), cb, ud);
}

/* See sse.h: a new stream; keeps last_id, retry and the memory. */
void fav_sse_reset(fav_sse *p) {
  p->status = FAV_SSE_OK;
  p->bom_pos = 0;
  p->cr_pending = 0;
  p->id_dirty = 0;
  p->event_retry = -1;
  p->line.len = 0;
  p->data.len = 0;
  p->type.len = 0;
  p->id.len = 0;
}

/* See sse.h: as after fav_sse_init, but the buffers keep their memory. */
void fav_sse_restart(fav_sse *p, size_t max_event_bytes) {
  fav_sse keep = *p;
  fav_sse_init(p, max_event_bytes);
  p->line = keep.line;
  p->data = keep.data;
  p->type = keep.type;
  p->id = keep.id;
  p->last_id = keep.last_id;
  p->line.len = p->data.len = p->type.len = p->id.len = p->last_id.len = 0;
  p->id_seq = keep.id_seq + 1; /* the id changes (to "") */
}

/* See sse.h: frees everything; p is reusable as after init. */
void fav_sse_free(fav_sse *p) {
  size_t max = p->max_event_bytes;
  unsigned long seq = p->id_seq + 1; /* the id changes (to "") */
  fav_buf_free(&p->line);
  fav_buf_free(&p->data);
  fav_buf_free(&p->type);
  fav_buf_free(&p->id);
  fav_buf_free(&p->last_id);
  fav_sse_init(p, max);
  p->id_seq = seq;
}

/* See sse.h. Never fails. */
const char *fav_sse_last_event_id(const fav_sse *p, size_t *len) {
  if (len != NULL) *len = p->last_id.len;
  return p->last_id.p != NULL ? p->last_id.p : "";
}

/* See sse.h. Never fails. */
long fav_sse_retry(const fav_sse *p) { return p->retry; }

/* See sse.h: a static string. */
const char *fav_sse_strstatus(int status) {
  switch (status) {
  case FAV_SSE_OK: return "ok";
  case FAV_SSE_TOO_LARGE: return "event larger than max_event_bytes";
  case FAV_SSE_NOMEM: return "out of memory";
  case FAV_SSE_ABORTED: return "aborted by the event callback";
  default: return "unknown status";
  }
}

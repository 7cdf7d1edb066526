/* sse_fuzz.c: libFuzzer target for the SSE parser (csrc/sse.c).
 *
 * The first bytes of the input choose the event cap and the chunking; the
 * rest is the stream, fed in chunks of varying size to one parser and, in a
 * single piece, to a second one. Both must dispatch the same events (the
 * parser's contract: any chunking gives the same result), every event must
 * respect the cap, and nothing may crash or leak. */
#include "sse.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
  unsigned long n;
  unsigned long hash;
  size_t cap;
} tally;

static unsigned long mix(unsigned long h, const char *p, size_t n) {
  size_t i;
  for (i = 0; i < n; i++) h = (h ^ (unsigned char)p[i]) * 1099511628211UL;
  return h * 31 + n;
}

static int on_event(void *ud, const fav_sse_event *ev) {
  tally *t = ud;
  if (ev->data_len > t->cap || ev->event_len > t->cap || ev->id_len > t->cap) abort();
  if (ev->data[ev->data_len] != '\0' || ev->event[ev->event_len] != '\0' || ev->id[ev->id_len] != '\0') abort();
  if (memchr(ev->id, '\0', ev->id_len)) abort();
  if (ev->retry < -1) abort();
  t->n++;
  t->hash = mix(t->hash, ev->data, ev->data_len);
  t->hash = mix(t->hash, ev->event, ev->event_len);
  t->hash = mix(t->hash, ev->id, ev->id_len);
  t->hash = t->hash * 7 + (unsigned long)(ev->retry + 1);
  return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  fav_sse a, b;
  tally ta = {0, 0, 0}, tb = {0, 0, 0};
  size_t cap, off = 0, step;
  int ra = FAV_SSE_OK, rb;
  uint8_t seed;
  if (size < 2) return 0;
  cap = (size_t)16 + (size_t)data[0] * 64; /* 16 .. 16336 bytes */
  seed = data[1];
  data += 2;
  size -= 2;
  ta.cap = tb.cap = cap;
  fav_sse_init(&a, cap);
  fav_sse_init(&b, cap);
  while (off < size && ra == FAV_SSE_OK) {
    step = 1 + (seed % 13);
    seed = (uint8_t)(seed * 37 + 11);
    if (step > size - off) step = size - off;
    ra = fav_sse_feed(&a, (const char *)data + off, step, on_event, &ta);
    off += step;
  }
  rb = fav_sse_feed(&b, (const char *)data, size, on_event, &tb);
  if (ra != rb) abort();
  if (ra == FAV_SSE_OK && (ta.n != tb.n || ta.hash != tb.hash)) abort();
  {
    size_t l1, l2;
    const char *i1 = fav_sse_last_event_id(&a, &l1), *i2 = fav_sse_last_event_id(&b, &l2);
    if (ra == FAV_SSE_OK && (l1 != l2 || memcmp(i1, i2, l1) != 0 || fav_sse_retry(&a) != fav_sse_retry(&b)))
      abort();
  }
  /* reset and reuse after an error or a half-read event */
  fav_sse_reset(&a);
  ra = fav_sse_feed(&a, "data: x\n\n", 9, on_event, &ta);
  if (ra != FAV_SSE_OK) abort();
  (void)fav_sse_strstatus(rb);
  fav_sse_free(&a);
  fav_sse_free(&b);
  return 0;
}

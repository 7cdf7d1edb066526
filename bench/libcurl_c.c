/* libcurl_c.c: the floor for any MCP client over Streamable HTTP.
 *
 *   libcurl_c seq   N WARMUP        N sequential tools/call on one handle
 *   libcurl_c multi N WARMUP CONC   N calls, CONC in flight on curl multi
 *
 * Environment: FAVCRM_BENCH_URL (the /mcp endpoint), FAVCRM_BENCH_KEY (the
 * API key: never argv), BENCH_T0_NS (CLOCK_MONOTONIC at spawn, set by
 * runstat; optional). Does initialize + notifications/initialized, then POSTs
 * the tools/call body for list_services with the session headers
 * (Mcp-Session-Id, MCP-Protocol-Version, Authorization: Bearer), checks each
 * answer is a 200 carrying a JSON-RPC result, and prints one JSON line:
 *
 *   {"client":"libcurl_c","mode":...,"n":...,"startup_ms":...,"wall_s":...,
 *    "calls_per_s":...,"p50_ms":...,"p99_ms":...,"loop_cpu_us":...}
 *
 * It parses nothing beyond that check: a real client does strictly more.
 */
#define _GNU_SOURCE
#include <curl/curl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/resource.h>
#include <time.h>

#define PROTO "2025-11-25"

typedef struct {
  char *p;
  size_t len, cap;
} buf;

typedef struct {
  CURL *e;
  buf body;            /* the response body */
  char req[256];       /* the request body */
  long id;
  double started;
} slot;

static char session_id[256];

static double mono_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static double cpu_us(void) {
  struct rusage ru;
  getrusage(RUSAGE_SELF, &ru);
  return (double)(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) * 1e6 +
         (double)(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec);
}

static void die(const char *what) {
  fprintf(stderr, "libcurl_c: %s\n", what);
  exit(1);
}

static size_t on_body(char *d, size_t sz, size_t n, void *ud) {
  buf *b = ud;
  size_t len = sz * n;
  if (b->len + len + 1 > b->cap) {
    size_t nc = b->cap ? b->cap * 2 : 4096;
    while (nc < b->len + len + 1) nc *= 2;
    b->p = realloc(b->p, nc);
    if (!b->p) return 0;
    b->cap = nc;
  }
  memcpy(b->p + b->len, d, len);
  b->len += len;
  b->p[b->len] = '\0';
  return len;
}

static size_t on_header(char *d, size_t sz, size_t n, void *ud) {
  size_t len = sz * n;
  (void)ud;
  if (len > 15 && strncasecmp(d, "mcp-session-id:", 15) == 0) {
    size_t i = 15, j = 0;
    while (i < len && d[i] == ' ') i++;
    while (i < len && d[i] != '\r' && d[i] != '\n' && j + 1 < sizeof session_id)
      session_id[j++] = d[i++];
    session_id[j] = '\0';
  }
  return len;
}

static int cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return x < y ? -1 : x > y;
}

/* The answer is a 200 holding a JSON-RPC result that is not a tool error. */
static int answer_ok(CURL *e, const buf *b) {
  long st = 0;
  curl_easy_getinfo(e, CURLINFO_RESPONSE_CODE, &st);
  return st == 200 && b->p && strstr(b->p, "\"result\"") && !strstr(b->p, "\"isError\":true");
}

static void setup(CURL *e, const char *url, struct curl_slist *h, buf *b) {
  curl_easy_setopt(e, CURLOPT_URL, url);
  curl_easy_setopt(e, CURLOPT_HTTPHEADER, h);
  curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, on_body);
  curl_easy_setopt(e, CURLOPT_WRITEDATA, b);
  curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(e, CURLOPT_TCP_NODELAY, 1L);
  curl_easy_setopt(e, CURLOPT_POST, 1L);
}

static void set_call(slot *s, long id) {
  int n = snprintf(s->req, sizeof s->req,
                   "{\"jsonrpc\":\"2.0\",\"id\":%ld,\"method\":\"tools/call\","
                   "\"params\":{\"name\":\"list_services\",\"arguments\":{}}}", id);
  s->id = id;
  s->body.len = 0;
  curl_easy_setopt(s->e, CURLOPT_POSTFIELDS, s->req);
  curl_easy_setopt(s->e, CURLOPT_POSTFIELDSIZE, (long)n);
}

static void print_result(const char *mode, long n, double startup_ms, double wall,
                         double loop_cpu, double *lat) {
  qsort(lat, (size_t)n, sizeof *lat, cmp_double);
  printf("{\"client\":\"libcurl_c\",\"mode\":\"%s\",\"n\":%ld,\"startup_ms\":%.3f,"
         "\"wall_s\":%.6f,\"calls_per_s\":%.1f,\"p50_ms\":%.4f,\"p99_ms\":%.4f,"
         "\"loop_cpu_us\":%.0f}\n",
         mode, n, startup_ms, wall, n > 0 ? n / wall : 0.0,
         n > 0 ? lat[(n - 1) / 2] * 1e3 : 0.0,
         n > 0 ? lat[(long)((n - 1) * 0.99)] * 1e3 : 0.0, loop_cpu);
}

int main(int argc, char **argv) {
  const char *url = getenv("FAVCRM_BENCH_URL"), *key = getenv("FAVCRM_BENCH_KEY");
  const char *t0s = getenv("BENCH_T0_NS");
  double t0 = t0s ? atof(t0s) / 1e9 : mono_s(), startup_ms = 0, tstart, wall, c0;
  long n, warm, conc = 1, i, next_id = 2;
  int multi;
  char line[512];
  struct curl_slist *h0 = NULL, *h = NULL;
  slot s0;
  double *lat;

  if (argc < 4 || (strcmp(argv[1], "seq") && strcmp(argv[1], "multi")))
    die("usage: libcurl_c seq N WARMUP | libcurl_c multi N WARMUP CONC");
  multi = strcmp(argv[1], "multi") == 0;
  n = atol(argv[2]);
  warm = atol(argv[3]);
  if (multi) conc = argc > 4 ? atol(argv[4]) : 64;
  if (n < 0 || warm < 0 || conc < 1) die("bad N, WARMUP or CONC");
  if (!url || !key) die("FAVCRM_BENCH_URL and FAVCRM_BENCH_KEY must be set");
  lat = calloc((size_t)(n > 0 ? n : 1), sizeof *lat);
  if (!lat) die("out of memory");
  curl_global_init(CURL_GLOBAL_DEFAULT);

  /* initialize, on the handle the sequential calls reuse */
  memset(&s0, 0, sizeof s0);
  s0.e = curl_easy_init();
  h0 = curl_slist_append(h0, "Content-Type: application/json");
  h0 = curl_slist_append(h0, "Accept: application/json, text/event-stream");
  snprintf(line, sizeof line, "Authorization: Bearer %s", key);
  h0 = curl_slist_append(h0, line);
  setup(s0.e, url, h0, &s0.body);
  curl_easy_setopt(s0.e, CURLOPT_HEADERFUNCTION, on_header);
  curl_easy_setopt(s0.e, CURLOPT_POSTFIELDS,
                   "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"initialize\",\"params\":"
                   "{\"protocolVersion\":\"" PROTO "\",\"capabilities\":{},"
                   "\"clientInfo\":{\"name\":\"libcurl_c\",\"version\":\"1\"}}}");
  curl_easy_setopt(s0.e, CURLOPT_POSTFIELDSIZE, -1L);
  if (curl_easy_perform(s0.e) != CURLE_OK || !answer_ok(s0.e, &s0.body) || !session_id[0])
    die("initialize failed");
  curl_easy_setopt(s0.e, CURLOPT_HEADERFUNCTION, NULL);
  h = curl_slist_append(h, "Content-Type: application/json");
  h = curl_slist_append(h, "Accept: application/json, text/event-stream");
  h = curl_slist_append(h, line);
  snprintf(line, sizeof line, "Mcp-Session-Id: %s", session_id);
  h = curl_slist_append(h, line);
  h = curl_slist_append(h, "MCP-Protocol-Version: " PROTO);
  curl_easy_setopt(s0.e, CURLOPT_HTTPHEADER, h);
  curl_easy_setopt(s0.e, CURLOPT_POSTFIELDS, "{\"jsonrpc\":\"2.0\",\"method\":\"notifications/initialized\"}");
  s0.body.len = 0;
  if (curl_easy_perform(s0.e) != CURLE_OK) die("notifications/initialized failed");

  /* warm-up on one handle; the first answer ends "startup" */
  for (i = 0; i < (warm > 0 ? warm : 1); i++) {
    set_call(&s0, next_id++);
    if (curl_easy_perform(s0.e) != CURLE_OK || !answer_ok(s0.e, &s0.body)) die("tools/call failed");
    if (i == 0) startup_ms = (mono_s() - t0) * 1e3;
  }

  if (!multi) {
    c0 = cpu_us();
    tstart = mono_s();
    for (i = 0; i < n; i++) {
      double a = mono_s();
      set_call(&s0, next_id++);
      if (curl_easy_perform(s0.e) != CURLE_OK || !answer_ok(s0.e, &s0.body)) die("tools/call failed");
      lat[i] = mono_s() - a;
    }
    wall = mono_s() - tstart;
    print_result("seq", n, startup_ms, wall, cpu_us() - c0, lat);
  } else {
    CURLM *m = curl_multi_init();
    slot *slots = calloc((size_t)conc, sizeof *slots);
    long issued = 0, done = 0, k;
    int running = 1;
    if (!m || !slots) die("out of memory");
    curl_multi_setopt(m, CURLMOPT_MAXCONNECTS, conc * 2);
    c0 = cpu_us();
    tstart = mono_s();
    for (k = 0; k < conc && issued < n; k++, issued++) {
      slots[k].e = curl_easy_init();
      setup(slots[k].e, url, h, &slots[k].body);
      curl_easy_setopt(slots[k].e, CURLOPT_PRIVATE, (char *)&slots[k]);
      set_call(&slots[k], next_id++);
      slots[k].started = mono_s();
      curl_multi_add_handle(m, slots[k].e);
    }
    while (done < n) {
      CURLMsg *msg;
      int left;
      curl_multi_perform(m, &running);
      while ((msg = curl_multi_info_read(m, &left)) != NULL) {
        slot *s = NULL;
        if (msg->msg != CURLMSG_DONE) continue;
        curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, (char **)&s);
        if (msg->data.result != CURLE_OK || !answer_ok(s->e, &s->body)) die("tools/call failed (multi)");
        lat[done++] = mono_s() - s->started;
        curl_multi_remove_handle(m, s->e);
        if (issued < n) {
          issued++;
          set_call(s, next_id++);
          s->started = mono_s();
          curl_multi_add_handle(m, s->e);
        }
      }
      if (done < n) curl_multi_poll(m, NULL, 0, 1000, NULL);
    }
    wall = mono_s() - tstart;
    print_result("multi", n, startup_ms, wall, cpu_us() - c0, lat);
    for (k = 0; k < conc; k++)
      if (slots[k].e) { curl_easy_cleanup(slots[k].e); free(slots[k].body.p); }
    curl_multi_cleanup(m);
    free(slots);
  }

  /* end the session */
  curl_easy_setopt(s0.e, CURLOPT_CUSTOMREQUEST, "DELETE");
  curl_easy_setopt(s0.e, CURLOPT_HTTPGET, 1L);
  s0.body.len = 0;
  curl_easy_perform(s0.e);
  curl_easy_cleanup(s0.e);
  curl_slist_free_all(h0);
  curl_slist_free_all(h);
  free(s0.body.p);
  free(lat);
  curl_global_cleanup();
  return 0;
}

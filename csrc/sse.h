/* sse.h: a WHATWG event-stream (Server-Sent Events) parser in plain C.
 *
 * No Lua, no globals, no abort(): usable from the Lua binding (sse_lua.c),
 * from inside curl's write callback (http.c) and from a fuzz target.
 *
 *   fav_sse p;
 *   fav_sse_init(&p, 0);                         // 0: the default cap
 *   st = fav_sse_feed(&p, buf, len, on_event, ud); // any chunking, repeat
 *   fav_sse_reset(&p);                           // stream ended / reconnect
 *   fav_sse_free(&p);
 *
 * Rules followed (html.spec.whatwg.org, "Interpreting an event stream"):
 * LF, CRLF and CR line ends (a CR ending one chunk and an LF starting the
 * next are one line end); a UTF-8 BOM at stream start is skipped; `data`
 * lines are joined with "\n"; `event` sets the type (default "message");
 * `id` sets the last event id unless its value holds a NUL; `retry` is
 * taken only when its value is all ASCII digits; lines starting with ':'
 * are comments; a line without ':' is a field name with an empty value; one
 * space after the ':' is stripped; a blank line dispatches the event. An
 * event whose data buffer is empty is not dispatched, but its id still
 * becomes the last event id and its retry is still kept. Bytes are passed
 * through as they are (no UTF-8 validation or replacement).
 *
 * The cap: while one event is being assembled, the bytes of its data buffer
 * plus the bytes of the line being read may not exceed max_event_bytes;
 * crossing it puts the parser in the FAV_SSE_TOO_LARGE state, in which feed
 * accepts nothing more until fav_sse_reset. Every buffer is bounded by the
 * cap, so a parser holds at most about 5 * max_event_bytes of heap. */
#ifndef FAV_SSE_H
#define FAV_SSE_H

#include <stddef.h>

#include "util.h"

/* Default cap when fav_sse_init is given 0: the module-wide default,
 * FAV_MAX_EVENT_BYTES (8 MiB). */
#define FAV_SSE_DEFAULT_MAX_EVENT_BYTES FAV_MAX_EVENT_BYTES
/* Largest retry value reported; longer ones are clamped to it (ms). */
#define FAV_SSE_RETRY_MAX 2147483647L

/* Results of fav_sse_feed; every state but OK is sticky until reset. */
enum {
  FAV_SSE_OK = 0,        /* all bytes consumed                            */
  FAV_SSE_TOO_LARGE = 1, /* an event crossed max_event_bytes              */
  FAV_SSE_NOMEM = 2,     /* malloc/realloc failed                         */
  FAV_SSE_ABORTED = 3    /* the callback returned non-zero                */
};

/* One dispatched event. The pointers are into the parser and valid only
 * during the callback: copy what you keep. Each string is NUL-terminated
 * too, but `data` and `event` may themselves contain NUL bytes (use the
 * lengths); `id` never does. */
typedef struct fav_sse_event {
  const char *data;  /* the data lines joined with "\n"                   */
  size_t data_len;
  const char *event; /* the event type; "message" when none was given     */
  size_t event_len;
  const char *id;    /* the last event id (persists across events), or "" */
  size_t id_len;
  unsigned long id_seq; /* changes each time the last event id is set:
                           equal id_seq, same id (saves comparing ids)    */
  long retry;        /* retry (ms) set inside this event, or -1           */
} fav_sse_event;

/* Called once per dispatched event. Return 0 to go on; non-zero stops the
 * parser (fav_sse_feed returns FAV_SSE_ABORTED). It must not longjmp. */
typedef int (*fav_sse_cb)(void *ud, const fav_sse_event *ev);

/* A growable byte buffer (util.h), at most max_event_bytes + 1 bytes
 * allocated. */
typedef fav_buf fav_sse_buf;

/* The parser. Fields are visible so it can be embedded (e.g. in a Lua
 * userdata); treat them as private and use the functions below. */
typedef struct fav_sse {
  size_t max_event_bytes;
  int status;          /* FAV_SSE_OK or the sticky error                  */
  int bom_pos;         /* BOM bytes matched so far; -1 once decided       */
  int cr_pending;      /* last byte was a CR: skip one LF right after     */
  int id_dirty;        /* `id` holds a pending id not yet in `last_id`    */
  unsigned long id_seq; /* bumped each time `last_id` is set              */
  long event_retry;    /* retry seen in the event being assembled, or -1  */
  long retry;          /* last retry seen on the stream, or -1            */
  fav_sse_buf line;    /* the current incomplete line                     */
  fav_sse_buf data;    /* data buffer, each line followed by "\n"         */
  fav_sse_buf type;    /* event type buffer                               */
  fav_sse_buf id;      /* pending last event id buffer, when id_dirty     */
  fav_sse_buf last_id; /* last event id string (committed at dispatch)    */
} fav_sse;

/* Prepares p; allocates nothing. max_event_bytes 0 means the default. */
FAV_API void fav_sse_init(fav_sse *p, size_t max_event_bytes);

/* Parses len bytes of buf, calling cb(ud, ev) for each event dispatched.
 * Returns FAV_SSE_OK or the (sticky) error state; once in an error state
 * it consumes nothing and returns that state again. cb may be NULL. */
FAV_API int fav_sse_feed(fav_sse *p, const char *buf, size_t len, fav_sse_cb cb, void *ud);

/* The stream ended (or a new one starts on reconnect): discards the
 * incomplete line and event, re-arms the BOM check and clears the error
 * state. Keeps the last event id and the last retry, as a reconnecting
 * client needs them. Keeps the buffers' memory for reuse. */
FAV_API void fav_sse_reset(fav_sse *p);

/* A new stream from scratch: p is as after fav_sse_init(p, max_event_bytes)
 * (no last event id, no retry; id_seq moves on), but the buffers keep
 * their memory for reuse. p must have been initialised before. */
FAV_API void fav_sse_restart(fav_sse *p, size_t max_event_bytes);

/* Releases all memory; p is then as after fav_sse_init (reusable). */
FAV_API void fav_sse_free(fav_sse *p);

/* The last event id string (NUL-terminated, "" when none); *len if non-NULL. */
FAV_API const char *fav_sse_last_event_id(const fav_sse *p, size_t *len);

/* The last retry (ms) seen on the stream, or -1. */
FAV_API long fav_sse_retry(const fav_sse *p);

/* A short English description of a status code. */
FAV_API const char *fav_sse_strstatus(int status);

#endif

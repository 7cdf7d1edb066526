/* sse_lua.c: core.sse_parser(), the Lua face of the SSE parser (sse.h).
 *
 * The parser's callback never touches Lua: it copies each event into a
 * queue owned by the userdata (one byte arena + one record array, both
 * malloc'd and freed by close/__gc). Lua values are built only after
 * fav_sse_feed has returned, so a raise there leaks nothing: the queue is
 * still owned by the userdata and is emptied by the next feed or close. */
#include "favcrm.h"
#include "sse.h"

#include <stdlib.h>
#include <string.h>

#define SSE_MT "favcrm.SSEParser"
#define SSE_NO_TYPE ((size_t)-1) /* record's type is the default "message" */
#define SSE_KEEP_BYTES ((size_t)1 << 20) /* queue memory kept between feeds */

typedef struct sse_rec {
  size_t data_off, data_len;
  size_t type_off, type_len; /* type_off SSE_NO_TYPE: "message" */
  size_t id_off, id_len;
  unsigned long id_seq;
  long retry;
} sse_rec;

typedef struct sse_ud {
  fav_sse sse;
  int closed;
  char *arena; /* event bytes of the current feed */
  size_t arena_len, arena_cap;
  sse_rec *recs; /* events of the current feed */
  size_t nrecs, recs_cap;
} sse_ud;

/* Copies n bytes into the arena; *off gets their offset. 0 or -1. */
static int sse_arena_put(sse_ud *u, const char *s, size_t n, size_t *off) {
  void *a = u->arena;
  if (u->arena_len > ((size_t)-1) - n) return -1;
  if (fav_grow(&a, &u->arena_cap, u->arena_len + n, 1) != 0) return -1;
  u->arena = (char *)a;
  if (n) memcpy(u->arena + u->arena_len, s, n);
  *off = u->arena_len;
  u->arena_len += n;
  return 0;
}

/* fav_sse_cb: copies ev into u's queue. Returns non-zero on memory
 * failure (the parser then stops with FAV_SSE_ABORTED). Never calls Lua. */
static int sse_collect(void *ud, const fav_sse_event *ev) {
  sse_ud *u = (sse_ud *)ud;
  sse_rec r;
  void *recs = u->recs;
  if (fav_grow(&recs, &u->recs_cap, u->nrecs + 1, sizeof(sse_rec)) != 0) return 1;
  u->recs = (sse_rec *)recs;
  if (sse_arena_put(u, ev->data, ev->data_len, &r.data_off) != 0) return 1;
  r.data_len = ev->data_len;
  if (ev->event_len == 7 && memcmp(ev->event, "message", 7) == 0) {
    r.type_off = SSE_NO_TYPE;
  } else if (sse_arena_put(u, ev->event, ev->event_len, &r.type_off) != 0) {
    return 1;
  }
  r.type_len = ev->event_len;
  r.id_seq = ev->id_seq;
  r.id_len = ev->id_len;
  if (u->nrecs > 0 && u->recs[u->nrecs - 1].id_seq == ev->id_seq) {
    r.id_off = u->recs[u->nrecs - 1].id_off; /* same id: share the bytes */
  } else if (sse_arena_put(u, ev->id, ev->id_len, &r.id_off) != 0) {
    return 1;
  }
  r.retry = ev->retry;
  u->recs[u->nrecs++] = r;
  return 0;
}

/* Empties the queue; frees its memory when it grew past SSE_KEEP_BYTES. */
static void sse_queue_clear(sse_ud *u, int release) {
  u->arena_len = 0;
  u->nrecs = 0;
  if (release || u->arena_cap > SSE_KEEP_BYTES) {
    free(u->arena);
    u->arena = NULL;
    u->arena_cap = 0;
  }
  if (release || u->recs_cap * sizeof(sse_rec) > SSE_KEEP_BYTES) {
    free(u->recs);
    u->recs = NULL;
    u->recs_cap = 0;
  }
}

/* Takes the parser at index 1; returns it. Raises if it is not a parser
 * or (when open is set) if it is closed. */
static sse_ud *sse_check(lua_State *L, int open) {
  sse_ud *u = (sse_ud *)luaL_checkudata(L, 1, SSE_MT);
  if (open && u->closed) luaL_error(L, "favcrm.SSEParser: parser is closed");
  return u;
}

/* Pushes a list of the queued events ({data, event, id[, retry]}).
 * Can raise (memory); the queue stays owned by u. */
static void sse_push_events(lua_State *L, sse_ud *u) {
  size_t i;
  int list, id_slot;
  const char *arena = u->arena ? u->arena : ""; /* NULL when every event was empty */
  luaL_checkstack(L, 6, "favcrm.SSEParser");
  lua_createtable(L, u->nrecs > 0x7fffffff ? 0x7fffffff : (int)u->nrecs, 0);
  list = lua_gettop(L);
  lua_pushnil(L); /* the id string of the previous event, shared */
  id_slot = lua_gettop(L);
  for (i = 0; i < u->nrecs; i++) {
    const sse_rec *r = &u->recs[i];
    lua_createtable(L, 0, 4);
    lua_pushlstring(L, arena + r->data_off, r->data_len);
    lua_setfield(L, -2, "data");
    if (r->type_off == SSE_NO_TYPE) lua_pushliteral(L, "message");
    else lua_pushlstring(L, arena + r->type_off, r->type_len);
    lua_setfield(L, -2, "event");
    if (i == 0 || r->id_off != u->recs[i - 1].id_off) {
      lua_pushlstring(L, arena + r->id_off, r->id_len);
      lua_replace(L, id_slot);
    }
    lua_pushvalue(L, id_slot);
    lua_setfield(L, -2, "id");
    if (r->retry >= 0) {
      lua_pushinteger(L, (lua_Integer)r->retry);
      lua_setfield(L, -2, "retry");
    }
    lua_rawseti(L, list, (int)(i + 1));
  }
  lua_pop(L, 1); /* id_slot */
}

/* parser:feed(bytes): takes the parser and a string; returns the list of
 * events completed by these bytes, or nil, err when an event exceeded the
 * cap (err = {code="too_large", message=, max_event_bytes=, events=list of
 * the events completed before it}); once too large, every later feed
 * returns that error until :reset(). Raises on misuse, on a closed parser
 * and when memory fails. */
static int sse_feed(lua_State *L) {
  sse_ud *u = sse_check(L, 1);
  size_t len;
  const char *s = luaL_checklstring(L, 2, &len);
  int st;
  sse_queue_clear(u, 0);
  st = fav_sse_feed(&u->sse, s, len, sse_collect, u);
  if (st == FAV_SSE_NOMEM || st == FAV_SSE_ABORTED) {
    sse_queue_clear(u, 1);
    return luaL_error(L, "favcrm.SSEParser: not enough memory");
  }
  sse_push_events(L, u);
  sse_queue_clear(u, 0);
  if (st == FAV_SSE_OK) return 1;
  fav_pushfail(L, FAV_ETOO_LARGE, "SSE event larger than %d bytes",
               (int)(u->sse.max_event_bytes > 0x7fffffff ? 0x7fffffff : u->sse.max_event_bytes));
  lua_pushnumber(L, (lua_Number)u->sse.max_event_bytes);
  lua_setfield(L, -2, "max_event_bytes");
  lua_pushvalue(L, -3); /* the events before the error */
  lua_setfield(L, -2, "events");
  return 2;
}

/* parser:last_event_id(): returns the last event id string ("" if none).
 * Raises on a closed parser. */
static int sse_last_event_id(lua_State *L) {
  sse_ud *u = sse_check(L, 1);
  size_t len;
  const char *id;
  if (u->closed) return luaL_error(L, "favcrm.SSEParser: parser is closed");
  id = fav_sse_last_event_id(&u->sse, &len);
  lua_pushlstring(L, id, len);
  return 1;
}

/* parser:retry(): returns the last retry (ms) seen, or nil. Raises on a
 * closed parser. */
static int sse_retry_get(lua_State *L) {
  sse_ud *u = sse_check(L, 1);
  long r;
  if (u->closed) return luaL_error(L, "favcrm.SSEParser: parser is closed");
  r = fav_sse_retry(&u->sse);
  if (r < 0) lua_pushnil(L);
  else lua_pushinteger(L, (lua_Integer)r);
  return 1;
}

/* parser:reset(): the stream ended or a new one starts (see fav_sse_reset:
 * the incomplete event is dropped, the too_large state cleared, the last
 * event id and retry kept). Returns the parser. Raises on a closed one. */
static int sse_reset(lua_State *L) {
  sse_ud *u = sse_check(L, 1);
  if (u->closed) return luaL_error(L, "favcrm.SSEParser: parser is closed");
  fav_sse_reset(&u->sse);
  sse_queue_clear(u, 1);
  lua_settop(L, 1);
  return 1;
}

/* parser:close(), __gc, __close: frees the parser's memory. Idempotent;
 * returns nothing; raises only if the argument is not a parser. */
static int sse_close(lua_State *L) {
  sse_ud *u = sse_check(L, 0);
  if (!u->closed) {
    u->closed = 1;
    fav_sse_free(&u->sse);
    sse_queue_clear(u, 1);
  }
  return 0;
}

/* __tostring: "favcrm.SSEParser: 0x..." or "favcrm.SSEParser (closed)". */
static int sse_tostring(lua_State *L) {
  sse_ud *u = sse_check(L, 0);
  if (u->closed) lua_pushliteral(L, SSE_MT " (closed)");
  else lua_pushfstring(L, SSE_MT ": %p", (void *)u);
  return 1;
}

/* core.sse_parser([max_event_bytes]): takes an optional positive integer
 * (default FAV_MAX_EVENT_BYTES, 8 MiB); returns a new parser.
 * Raises on a bad argument or when memory fails. */
static int sse_new(lua_State *L) {
  lua_Number max = luaL_optnumber(L, 1, (lua_Number)FAV_SSE_DEFAULT_MAX_EVENT_BYTES);
  sse_ud *u;
  luaL_argcheck(L, max >= 1 && max <= 1e15 && max == (lua_Number)(size_t)max, 1,
                "max_event_bytes must be a positive integer");
  u = (sse_ud *)lua_newuserdatauv(L, sizeof(sse_ud), 0);
  memset(u, 0, sizeof *u);
  luaL_setmetatable(L, SSE_MT);
  fav_sse_init(&u->sse, (size_t)max); /* allocates nothing */
  return 1;
}

static const luaL_Reg sse_methods[] = {
  {"feed", sse_feed},
  {"last_event_id", sse_last_event_id},
  {"retry", sse_retry_get},
  {"reset", sse_reset},
  {"close", sse_close},
  {NULL, NULL}
};

/* Takes the module table at the top; registers the favcrm.SSEParser
 * metatable and adds sse_parser. Leaves the stack as found. Can raise. */
int fav_sse_open(lua_State *L) {
  static const luaL_Reg meta[] = {{"__tostring", sse_tostring}, {NULL, NULL}};
  fav_newclass(L, SSE_MT, sse_methods, meta, sse_close);
  lua_pop(L, 1);
  lua_pushcfunction(L, sse_new);
  lua_setfield(L, -2, "sse_parser");
  return 0;
}

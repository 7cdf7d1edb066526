/* schema.h: private header of the JSON Schema validator (draft-07 and
 * 2020-12), shared by its units. The validator:
 * JSON Schema (draft-07 and 2020-12) compiled once into a tree of
 * C nodes (favcrm.Validator) that walks Lua values directly on the stack.
 *
 * Memory: the validator userdata is the fav_prog itself. Every node, string,
 * array and PCRE2 object is attached to it the moment it is allocated, so a
 * Lua error raised anywhere in compile (bad schema, out of memory, a remote
 * resolver that raises) leaks nothing: __gc (or the failure path right after
 * the protected compile) frees the half-built program. Validation allocates
 * nothing with malloc: its state lives on the C stack and in Lua values.
 *
 * Lua values as JSON: nil and cjson.null (light userdata NULL) are null; a
 * table whose keys are exactly 1..n is an array, any other non-empty table an
 * object, the empty table is both. Only raw access (lua_rawget*, lua_next)
 * touches instances and schemas.
 *
 * Units (split the way LPeg splits compiler, VM and tree):
 *   schema_format.c   the `format` checks (hand-written; `regex` and IDNA
 *                     hostnames through PCRE2)
 *   schema_uri.c      URI references (RFC 3986), resources, anchors,
 *                     $ref / $dynamicRef resolution, remote documents
 *   schema_compile.c  program memory, keyword readers, one node per schema
 *   schema_eval.c     validation: walks a Lua value against the nodes
 *   schema_lua.c      the Lua API: core.schema_compile, favcrm.Validator
 * Only fav_schema_open (favcrm.h) is used outside; the FAV_API functions
 * below are shared between the units and hidden from core.so's users. */
#ifndef FAV_SCHEMA_H
#define FAV_SCHEMA_H

#define PCRE2_CODE_UNIT_WIDTH 8
#include "favcrm.h"

#include <pcre2.h>

/* PCRE2 is not linked: libpcre2-8 is loaded (dlopen) on the first
 * `pattern`, `format: regex` or IDNA hostname check that needs it
 * (fav_schema_pcre), so a process that compiles no pattern maps none of
 * it. The pcre2_* names below go through this table of its functions. */
typedef struct fav_pcre2_api {
  __typeof__(pcre2_compile_8) *compile;
  __typeof__(pcre2_code_free_8) *code_free;
  __typeof__(pcre2_get_error_message_8) *get_error_message;
  __typeof__(pcre2_jit_compile_8) *jit_compile;
  __typeof__(pcre2_jit_match_8) *jit_match;
  __typeof__(pcre2_match_8) *match;
  __typeof__(pcre2_match_data_create_8) *match_data_create;
  __typeof__(pcre2_match_data_free_8) *match_data_free;
  __typeof__(pcre2_match_context_create_8) *match_context_create;
  __typeof__(pcre2_match_context_free_8) *match_context_free;
  __typeof__(pcre2_compile_context_create_8) *compile_context_create;
  __typeof__(pcre2_compile_context_free_8) *compile_context_free;
  __typeof__(pcre2_set_match_limit_8) *set_match_limit;
  __typeof__(pcre2_set_compile_extra_options_8) *set_compile_extra_options;
} fav_pcre2_api;
FAV_API extern fav_pcre2_api fav_pcre2;
#undef pcre2_compile
#undef pcre2_code_free
#undef pcre2_get_error_message
#undef pcre2_jit_compile
#undef pcre2_jit_match
#undef pcre2_match
#undef pcre2_match_data_create
#undef pcre2_match_data_free
#undef pcre2_match_context_create
#undef pcre2_match_context_free
#undef pcre2_compile_context_create
#undef pcre2_compile_context_free
#undef pcre2_set_match_limit
#undef pcre2_set_compile_extra_options
#define pcre2_compile (*fav_pcre2.compile)
#define pcre2_code_free (*fav_pcre2.code_free)
#define pcre2_get_error_message (*fav_pcre2.get_error_message)
#define pcre2_jit_compile (*fav_pcre2.jit_compile)
#define pcre2_jit_match (*fav_pcre2.jit_match)
#define pcre2_match (*fav_pcre2.match)
#define pcre2_match_data_create (*fav_pcre2.match_data_create)
#define pcre2_match_data_free (*fav_pcre2.match_data_free)
#define pcre2_match_context_create (*fav_pcre2.match_context_create)
#define pcre2_match_context_free (*fav_pcre2.match_context_free)
#define pcre2_compile_context_create (*fav_pcre2.compile_context_create)
#define pcre2_compile_context_free (*fav_pcre2.compile_context_free)
#define pcre2_set_match_limit (*fav_pcre2.set_match_limit)
#define pcre2_set_compile_extra_options (*fav_pcre2.set_compile_extra_options)

#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define FAV_SCHEMA_MT "favcrm.Validator"
#define FAV_SCHEMA_DEPTH 200    /* default instance and schema nesting limit */
#define FAV_SCHEMA_DEPTH_MAX 500 /* largest opts.max_depth accepted */
#define FAV_SCHEMA_EVAL 1000    /* nested node evaluations (C stack bound) */
#define FAV_SCHEMA_MATCH_LIMIT 1000000

#if LUA_VERSION_NUM >= 504
#define fav_schema_setuv(L, i) lua_setiuservalue((L), (i), 1)
#define fav_schema_getuv(L, i) lua_getiuservalue((L), (i), 1)
#elif LUA_VERSION_NUM >= 502
#define fav_schema_setuv(L, i) lua_setuservalue((L), (i))
#define fav_schema_getuv(L, i) lua_getuservalue((L), (i))
#else
#define fav_schema_setuv(L, i) lua_setfenv((L), (i))
#define fav_schema_getuv(L, i) lua_getfenv((L), (i))
#endif

/* The first slots of a validator's constants table: the field names of an
 * error record, so that recording an error sets them with lua_rawset on
 * strings at hand instead of lua_setfield's lookup of each name. */
#define FAV_K_PATH 1
#define FAV_K_MESSAGE 2
#define FAV_K_REASON 3
#define FAV_K_KEYWORD 4
#define FAV_K_SCHEMA_PATH 5
#define FAV_K_PROPERTY 6
#define FAV_K_PATTERN 7 /* the keyword of the pattern error (fav_schema_fail_pattern) */
#define FAV_K_FORMAT 8  /* the keyword of the format error */
/* check's last returned path and reason: an equal one is pushed from here
 * (no string hashed, interned or collected per failing call) */
#define FAV_K_LASTPATH 9
#define FAV_K_LASTWHY 10
#define FAV_K_FMTWHY 10 /* + FMT_*: the format error's reason (fav_schema_fmt_reasons) */
#define FAV_K_RESERVED 21 /* FAV_K_FMTWHY + FMT_REGEX */

/* JSON types of an instance, as bits. An integral number is INT|NUM. */
#define FT_NULL 1u
#define FT_BOOL 2u
#define FT_INT 4u
#define FT_NUM 8u
#define FT_STR 16u
#define FT_ARR 32u
#define FT_OBJ 64u
#define FT_TAB 128u /* a table not classified (no keyword needed it) */
#define FT_BAD 256u /* not a JSON value */

/* which numeric keywords a node has */
#define NK_MIN 1u
#define NK_MAX 2u
#define NK_XMIN 4u
#define NK_XMAX 8u
#define NK_MULT 16u

/* keyword categories a node has */
#define CAT_NUM 1u
#define CAT_STR 2u
#define CAT_ARR 4u
#define CAT_OBJ 8u
#define CAT_APP 16u

enum {
  FMT_NONE, FMT_EMAIL, FMT_URI, FMT_URIREF, FMT_DATETIME, FMT_DATE, FMT_TIME,
  FMT_UUID, FMT_IPV4, FMT_IPV6, FMT_HOSTNAME, FMT_REGEX
};

/* format names as written in schemas, and as nouns in messages
 * (schema_format.c), indexed by FMT_* */
FAV_API extern const char *const fav_schema_fmt_names[];
FAV_API extern const char *const fav_schema_fmt_nouns[];
/* "must be a valid " .. noun: the format error's reason, indexed by FMT_* */
FAV_API extern const char *const fav_schema_fmt_reasons[];

typedef struct fav_node fav_node;

#define FAV_ENUM_PTRS 16 /* string enums checked by pointer (fav_node.enumptr) */

typedef struct fav_pent { /* a property name the node knows */
  char *name;
  size_t len;
  uint32_t h;
  fav_node *node; /* properties[name], or NULL */
  int req;        /* bit in the required set, or -1 */
  const void *kid; /* what identifies that anchored string in the walk (FAV_KID_TOPOINTER) */
  const char *lstr; /* the bytes of the same name as a Lua string anchored in
                     * the validator's constants: short strings are interned,
                     * so an equal short key has this very pointer */
} fav_pent;

typedef struct fav_dep { /* dependentRequired / dependentSchemas entry */
  char *name;
  size_t len;
  char **names;
  size_t *lens;
  int n;
  fav_node *node;
} fav_dep;

typedef struct fav_dyn {
  char *name;
  fav_node *node;
} fav_dyn;

struct fav_node {
  unsigned char boolean; /* 0 object schema, 1 true, 2 false */
  unsigned char draft;   /* 7 or 20 */
  unsigned char needs_kind, strutf, obj_iter, req_hashed, unique, dynbook;
  unsigned cat, types, numkw;
  const char *kw;  /* for boolean nodes: the keyword that holds them */
  char *loc;       /* JSON pointer of this schema ("" root) */
  fav_node *res;   /* schema resource this node belongs to */
  fav_node *ref;
  char *ref_str;
  fav_node *dynref;
  char *dynref_name, *dynref_str;
  char *dynanchor;
  fav_dyn *dyn;
  int ndyn;
  double minimum, maximum, exmin, exmax, mult;
  size_t minlen, maxlen;
  int pattern, format;
  int pat_why_k, pat_spath_k; /* constants: the pattern error's reason and schema_path */
  fav_node **prefix;
  int nprefix;
  const char *items_kw;
  fav_node *items, *contains, *uitems;
  size_t mincontains, maxcontains, minitems, maxitems;
  fav_pent *keys;
  int nkeys, *ktab;
  int keys_k;             /* constants keys_k .. keys_k + nkeys - 1: the key names as Lua strings */
  int *ptab;              /* keys by kid (open addressing, 1-based), pmask + 1 slots */
  uint32_t pmask;
  unsigned char by_key;   /* properties/required only: look the keys up, do not walk the instance */
  unsigned char leaf;     /* scalar keywords only (type, numbers, strings, scalar enum): fav_schema_leaf */
  unsigned char obj_only; /* object keywords, nothing that tells an empty table from an object */
  unsigned char addl_false; /* additionalProperties is the schema false */
  unsigned char by_count; /* as by_key, with addl_false: look the keys up, then count them (fav_prog.nkeys_k) */
  uint32_t kmask;
  int *patre;
  fav_node **patnodes;
  int npat;
  fav_node *addl, *pnames, *uprops;
  char **req;
  int nreq, req_k;
  size_t minprops, maxprops;
  const char *depreq_kw, *depsch_kw;
  fav_dep *depreq, *depsch;
  int ndepreq, ndepsch;
  fav_node **allof, **anyof, **oneof;
  int nallof, nanyof, noneof;
  fav_node *not_, *if_, *then_, *else_;
  int enum_k, enumset_k, const_k;
  /* an enum of at most FAV_ENUM_PTRS strings of at most FAV_SHORTSTR bytes
   * (and nothing else): the bytes of its members as interned Lua strings
   * anchored in the constants, so a string instance is a member exactly
   * when its pointer is one of these (see fav_pent.lstr) */
  const char *enumptr[FAV_ENUM_PTRS];
  int nenumptr;
};

typedef struct fav_re {
  pcre2_code *code;
  char *src;
  int jit;
} fav_re;

typedef struct fav_seg {
  const char *s; /* key, or NULL for an array index */
  size_t len;
  lua_Integer i; /* 0-based index */
  int own;       /* s is a property name of the validator (fav_pent.name),
                  * which lives as long as it: check may keep the pointer */
} fav_seg;

#define FAV_CSEG 8 /* check: paths of at most this many segments are compared by segment */

typedef struct fav_prog { /* the favcrm.Validator userdata */
  void *self; /* its own address: validate's cheap check (schema_lua.c) */
  fav_node **nodes;
  int nnodes, cap;
  fav_re *re;
  int nre, recap;
  pcre2_match_data *md;
  pcre2_match_context *mctx;
  pcre2_compile_context *cctx;
  fav_node *root;
  pcre2_code *idna[4]; /* \\p{M}, \\p{Greek}, \\p{Hebrew}, Hiragana/Katakana/Han */
  int all, formats, maxdepth;
  int nkeys_k; /* constant: table.nkeys where the Lua has it (LuaJIT), else 0 */
  /* the bytes of the strings in constant slots FAV_K_LASTPATH and
   * FAV_K_LASTWHY (anchored there; NULL until check first fails) */
  const char *lastpath, *lastwhy;
  size_t lastpl, lastwl;
  /* the segments whose JSON Pointer is the string in FAV_K_LASTPATH (every
   * key one of the validator's own names), lastseg_n of them, or -1 */
  fav_seg lastseg[FAV_CSEG];
  int lastseg_n;
} fav_prog;



typedef struct fav_cc {
  lua_State *L;
  fav_prog *P;
  int forced;     /* opts.draft, or 0 */
  int maxdepth;
  int res;        /* uri -> resource root schema */
  int anchors;    /* uri#name -> schema */
  int info;       /* schema table -> {base, loc, resource table, draft} */
  int dyn;        /* uri -> {name -> schema} ($dynamicAnchor) */
  int memo;       /* schema table -> node (light userdata) */
  int wl;         /* worklist, 7 slots an entry */
  int loaded;     /* uri -> true/false: remote documents asked for */
  int K;          /* constants (the validator's uservalue) */
  int remotes, resolver;
  int nwl, nk;
} fav_cc;



typedef struct fav_ann { /* what in-place subschemas evaluated */
  int props;             /* stack index: set of evaluated property keys */
  int citems;            /* stack index: set of 1-based indices (contains) */
  int all_props, all_items;
  size_t items; /* leading items evaluated */
} fav_ann;

typedef struct fav_ref {
  const fav_node *node;
  int depth;
} fav_ref;

typedef struct fav_vs {
  lua_State *L;
  fav_prog *P;
  int K, E;
  int nerr, all, quiet, fatal, formats;
  int check;         /* v:check(): the first error's path, keyword and reason
                      * are kept here (cseg or cpath, ckw, cwhy), no table is
                      * built; strings too long for the buffers go to the
                      * constant slots FAV_K_LASTPATH and FAV_K_LASTWHY */
  const char *ckw;   /* check: the first error's keyword */
  int ckw_k;         /* check: that keyword as a constant (FAV_K_*), or 0 */
  int cwhy_k;        /* check: the reason as a constant, or 0 */
  size_t cpl, cwl;   /* check: bytes in cpath ((size_t)-1: the path is in FAV_K_LASTPATH), in cwhy */
  const char *cwhy;  /* check: the reason's bytes (cwhybuf), or NULL: in FAV_K_LASTWHY */
  int cseg_n;        /* check: the path as cseg_n segments (>= 0; cpath unused), or -1 */
  fav_seg cseg[FAV_CSEG];
  char cpath[256], cwhybuf[256];
  int depth, maxdepth, eval, nscope, nref;
  double deadline;   /* fav_monotonic_ms() by which validation must end; 0: none */
  unsigned ticks;    /* work done since the clock was last read */
  const fav_node *scope[FAV_SCHEMA_EVAL];
  fav_ref refs[FAV_SCHEMA_EVAL];
  fav_seg path[FAV_SCHEMA_DEPTH_MAX + 2];
} fav_vs;

/* ASCII classes for formats and URIs (C's ctype depends on the locale).
 * Take a byte value; never raise. */
static inline int fav_fmt_isdigit(int c) { return c >= '0' && c <= '9'; }
static inline int fav_fmt_isalpha(int c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'); }
static inline int fav_fmt_isalnum(int c) { return fav_fmt_isdigit(c) || fav_fmt_isalpha(c); }
static inline int fav_fmt_ishex(int c) {
  return fav_fmt_isdigit(c) || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}

/* Lua interns every string of at most this many bytes (LUAI_MAXSHORTLEN on
 * 5.2-5.4; 5.1 and LuaJIT intern them all): two equal ones are one object. */
#define FAV_SHORTSTR 40

/* A walked key's identity, compared with fav_pent.kid. On Lua 5.4
 * lua_topointer gives a string's own object, so a key that is one of the
 * validator's anchored (interned) names is known by that one call, without
 * lua_type and lua_tolstring; it gives NULL for numbers and booleans and
 * a distinct object for tables and functions (a light userdata made from
 * the address of an anchored name, which only C can make, would pass for
 * that name). Before 5.4 it gives NULL for strings: there the identity is
 * the bytes' pointer, read after lua_type says string. */
#if LUA_VERSION_NUM >= 504
#define FAV_KID_TOPOINTER 1
#else
#define FAV_KID_TOPOINTER 0
#endif

static inline uint32_t fav_schema_ptrhash(const void *p) {
  /* the product's high half mixes every bit of the address (its low bits
   * are the alignment's zeros) */
  return (uint32_t)(((uint64_t)(uintptr_t)p * 0x9E3779B97F4A7C15ull) >> 32);
}

/* Shared between the units; the contract of each is above its definition. */

/* formats (schema_format.c) */
FAV_API int fav_schema_format(fav_prog *P, int fmt, const char *s, size_t n);

/* URIs, resources and references (schema_uri.c) */
FAV_API int fav_schema_dialect(fav_cc *c, int s, int draft);
FAV_API int fav_schema_isarr(lua_State *L, int t);
FAV_API void fav_schema_pushloc(lua_State *L, int loc, const char *kw, const char *key, size_t klen, lua_Integer i);
FAV_API void fav_schema_index(fav_cc *c, int s, int base, int loc, int rt, int draft, int depth);
FAV_API fav_node *fav_schema_node_for(fav_cc *c, int v, int base, int loc, int draft, fav_node *res, int depth,
                                     const char *kw);
FAV_API fav_node *fav_schema_ref(fav_cc *c, int r, int b, int draft, fav_node *res, int depth, const char *loc,
                                const char *kw, int *target);

/* helpers, program memory, node building (schema_compile.c) */
FAV_API uint32_t fav_schema_hash(const char *s, size_t n);
FAV_API int fav_schema_field(lua_State *L, int t, const char *k);
FAV_API const char *fav_schema_numstr(char *buf, size_t sz, double x);
FAV_API size_t fav_schema_utf8len(const char *str, size_t n);
FAV_API void fav_schema_freeprog(fav_prog *P);
FAV_API fav_node *fav_schema_newnode(lua_State *L, fav_prog *P);
/* Loads PCRE2 (once a process) and makes P's match data and contexts (once a
 * program). 0, or FAV_PCRE2_NOLIB (the library or a function is missing:
 * fav_pcre2_error() says which) or FAV_PCRE2_NOMEM. Never raises. */
#define FAV_PCRE2_NOLIB 1
#define FAV_PCRE2_NOMEM 2
FAV_API int fav_schema_pcre(fav_prog *P);
FAV_API const char *fav_pcre2_error(void);
FAV_API int fav_schema_bad(fav_cc *c, const char *loc, const char *kw, const char *fmt, ...);
FAV_API void fav_schema_build(fav_cc *c, int e);

/* validation (schema_eval.c) */
FAV_API int fav_schema_eval(fav_vs *v, const fav_node *n, int idx, fav_ann *ann);
FAV_API void fav_schema_pushcached(lua_State *L, int K, int k, const char **cs, size_t *cl, const char *s, size_t n);
FAV_API void fav_schema_pushcpath(fav_vs *v);

#endif

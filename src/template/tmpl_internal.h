/* tmpl_internal.h — what the template modules share: tokens, the syntax tree, the tagged value type and
 * the render context. Not a public header: only src/template/ includes it. */
#ifndef SS_TMPL_INTERNAL_H
#define SS_TMPL_INTERNAL_H

#include <stddef.h>
#include <stdint.h>

#include "core/status.h"
#include "template/chat_template.h"

/* ---- arena: the syntax tree and its strings live here until ss_template_destroy ---- */
typedef struct tm_arena_blk tm_arena_blk;
typedef struct tm_arena {
    tm_arena_blk *head;
} tm_arena;
void *tm_arena_alloc(tm_arena *a, size_t n); /* zeroed, NULL on OOM */
void tm_arena_free(tm_arena *a);

/* ---- lexer ---- */
typedef enum tk_kind {
    TK_EOF,
    TK_DATA,        /* literal text (s, n) */
    TK_VAR_BEGIN,   /* {{ */
    TK_VAR_END,     /* }} */
    TK_BLOCK_BEGIN, /* {% */
    TK_BLOCK_END,   /* %} */
    TK_NAME,
    TK_STRING, /* unescaped value in (s, n) */
    TK_INT,
    TK_FLOAT,
    TK_OP, /* s = the operator's text, n its length */
} tk_kind;

typedef struct tm_token {
    tk_kind kind;
    int line;
    const char *s; /* arena-owned (DATA, STRING, NAME) or points into a static operator table */
    size_t n;
    int64_t i;
    double f;
} tm_token;

/* Tokenizes the whole source. *toks: arena-owned array ending with TK_EOF. */
ss_status tm_lex(tm_arena *a, const char *src, size_t len, const char *name, tm_token **toks, size_t *ntoks,
                 ss_err *err);

/* ---- syntax tree ---- */
typedef enum tn_kind {
    /* statements */
    N_BODY,
    N_DATA,
    N_OUTPUT,
    N_IF,
    N_FOR,
    N_SET,
    N_SET_BLOCK,
    N_MACRO,
    N_BREAK,
    N_CONTINUE,
    N_CALL_BLOCK,
    N_FILTER_BLOCK,
    /* expressions */
    N_STR,
    N_INT,
    N_FLOAT,
    N_BOOL,
    N_NONE,
    N_NAME,
    N_LIST,
    N_TUPLE,
    N_DICT,
    N_BINOP,
    N_NEG,
    N_POS,
    N_NOT,
    N_AND,
    N_OR,
    N_COMPARE,
    N_COND,
    N_ATTR,
    N_ITEM,
    N_SLICE,
    N_CALL,
    N_KWARG,
    N_FILTER,
    N_TEST,
    N_PARAM,
} tn_kind;

typedef enum tn_op {
    OP_ADD,
    OP_SUB,
    OP_MUL,
    OP_DIV,
    OP_FLOORDIV,
    OP_MOD,
    OP_POW,
    OP_CONCAT,
    OP_EQ,
    OP_NE,
    OP_LT,
    OP_LE,
    OP_GT,
    OP_GE,
    OP_IN,
    OP_NOTIN,
} tn_op;

typedef struct tn tn;
struct tn {
    tn_kind kind;
    int line;
    int op;        /* tn_op, filter id, test id; N_TEST: negated flag in i */
    const char *s; /* name / literal text, NUL-terminated, arena-owned */
    size_t n;
    int64_t i;
    double f;
    tn *a, *b, *c, *d, *e;
    tn **kids; /* arena-owned */
    size_t nkids;
};

/* Parses tokens into *root (an N_BODY). Filter and test names are resolved here. */
ss_status tm_parse(tm_arena *a, const tm_token *toks, size_t ntoks, const char *name, tn **root, ss_err *err);

/* Filter and test ids, resolved at compile time (-1 when unknown). */
int tm_filter_id(const char *name, size_t n);
int tm_test_id(const char *name, size_t n);

/* ---- values ---- */
typedef enum tv_kind {
    TV_UNDEF,
    TV_NONE,
    TV_BOOL,
    TV_INT,
    TV_FLOAT,
    TV_STR,
    TV_LIST,
    TV_DICT,
    TV_NS,
    TV_MACRO,
    TV_FUNC,
    TV_LOOP,
} tv_kind;

typedef struct tv_obj tv_obj;
struct tv_obj {
    tv_obj *prev, *next; /* every live object of a render, so cycles (ns.x = ns) are freed at its end */
    int64_t refs;
    int kind;
};

typedef struct tv {
    tv_kind kind;
    union {
        int64_t i; /* BOOL, INT, FUNC id */
        double f;
        struct {
            const char *p; /* STR: bytes (not necessarily NUL-terminated) */
            size_t n;
        } s;
        const tn *macro;   /* MACRO: its N_MACRO node */
        const char *undef; /* UNDEF: the name that was missing, or NULL */
    } u;
    tv_obj *o; /* owner for STR (NULL = borrowed for the render), LIST, DICT, NS, LOOP */
} tv;

typedef struct tv_str_obj {
    tv_obj h;
    size_t n;
    char data[];
} tv_str_obj;

typedef struct tv_list_obj {
    tv_obj h;
    size_t n, cap;
    tv *v;
    int tuple;
} tv_list_obj;

/* ---- hash index over an insertion-ordered array (dict keys, scope names) ----
 * The entries stay in their arrays, in insertion order (iteration, tojson and repr read those); the index
 * only maps a key's hash to its position, so a lookup probes a few slots instead of scanning every entry.
 * Open addressing with linear probing, at most half full; entries are never removed (no dict method or
 * statement deletes one), so no tombstones. Arrays of fewer than TM_INDEX_MIN entries have no index: a
 * scan of a few entries is as fast and needs no memory. */
#define TM_INDEX_MIN 16
typedef struct tm_slot {
    uint32_t hash; /* the key's hash (tv_hash, tm_hash_bytes), kept so that growing rehashes no key */
    uint32_t at;   /* entry position + 1; 0 = empty slot */
} tm_slot;
typedef struct tm_index {
    tm_slot *slot; /* NULL while the array has fewer than TM_INDEX_MIN entries */
    size_t cap;    /* slots, a power of two */
} tm_index;
uint32_t tm_hash_bytes(const char *p, size_t n);
/* Slots an index needs for n entries: 0 when none (below TM_INDEX_MIN) or when its current size does. */
size_t tm_index_want(const tm_index *ix, size_t n);
/* Moves the index to cap slots (more than it has), rehashing from the stored hashes. 0 on out of memory
 * (the index is then unchanged). Adding the entries of a new index is the caller's (tm_index_put). */
int tm_index_grow(tm_index *ix, size_t cap);
/* Records entry `at` under hash h; the index has room (tm_index_want) and holds no entry for that key. */
void tm_index_put(tm_index *ix, uint32_t h, size_t at);
void tm_index_free(tm_index *ix);

typedef struct tv_dict_obj { /* also the attributes of a namespace; insertion ordered */
    tv_obj h;
    size_t n, cap;
    tv *k, *v;
    tm_index ix; /* key -> position in k/v, from TM_INDEX_MIN entries on */
} tv_dict_obj;

typedef struct tv_loop_obj {
    tv_obj h;
    int64_t index0, length;
    tv items; /* the list iterated (a LIST) */
} tv_loop_obj;

#define TV_LIST_OF(x) ((tv_list_obj *)(x).o)
#define TV_DICT_OF(x) ((tv_dict_obj *)(x).o)

enum { FN_RANGE, FN_NAMESPACE, FN_RAISE, FN_STRFTIME, FN_DICT, FN_COUNT };

/* ---- growable byte buffer with a hard cap ---- */
typedef struct tbuf {
    char *p;
    size_t n, cap;
} tbuf;

/* ---- render context ---- */
typedef struct tframe tframe;
struct tframe {
    tframe *parent;
    size_t n, cap;
    const char **names; /* borrowed (tree or JSON keys) */
    tv *vals;
    tm_index ix; /* name -> position, from TM_INDEX_MIN names on: the root scope holds every request variable */
};

typedef struct tr {
    const char *name;
    ss_err *err;
    tv_obj heap; /* sentinel of the live-object list */
    int64_t iters, steps;
    size_t created;
    int depth; /* macro call depth */
    int nest;  /* expressions being evaluated inside each other in the current macro call */
    int jump;  /* 1 break, 2 continue pending */
    tbuf *out;
    tframe *root, *cur;
    const tn *cur_node; /* for error lines */
    size_t read;        /* bytes read by scans (tr_work) not yet counted as a step */
} tr;

/* Errors "name:line: message" (line of cur_node when node is NULL). Returns st. */
ss_status tr_fail(tr *r, ss_status st, const tn *node, const char *fmt, ...) __attribute__((format(printf, 4, 5)));
#ifdef __clang_analyzer__ /* as ss_err_set's in core/status.h */
#define tr_fail(r, st, ...) ((tr_fail)((r), (st), __VA_ARGS__), (st))
#endif

/* buffers */
ss_status tbuf_put(tr *r, tbuf *b, const char *p, size_t n);
ss_status tbuf_putc(tr *r, tbuf *b, char c);
ss_status tbuf_puts(tr *r, tbuf *b, const char *s);
void tbuf_free(tbuf *b);

/* values: constructors return owned references */
static inline tv tv_undef(const char *name)
{
    tv v = {TV_UNDEF, {.undef = name}, NULL};
    return v;
}
static inline tv tv_none(void)
{
    tv v = {TV_NONE, {.i = 0}, NULL};
    return v;
}
static inline tv tv_bool(int b)
{
    tv v = {TV_BOOL, {.i = b ? 1 : 0}, NULL};
    return v;
}
static inline tv tv_int(int64_t i)
{
    tv v = {TV_INT, {.i = i}, NULL};
    return v;
}
static inline tv tv_float(double f)
{
    tv v = {TV_FLOAT, {.f = f}, NULL};
    return v;
}
static inline tv tv_sborrow(const char *p, size_t n)
{
    tv v = {TV_STR, {.s = {p, n}}, NULL};
    return v;
}
void tv_incref(tv v);
void tv_decref(tv v);
void tr_heap_free_all(tr *r);
ss_status tv_str_new(tr *r, const char *p, size_t n, tv *out); /* copies */
ss_status tv_str_take(tr *r, tbuf *b, tv *out);                /* from buffer; b is emptied */
ss_status tv_list_new(tr *r, size_t cap, int tuple, tv *out);
ss_status tv_list_push(tr *r, tv list, tv item); /* takes item */
ss_status tv_dict_new(tr *r, size_t cap, int ns, tv *out);
ss_status tv_dict_set(tr *r, tv dict, tv key, tv val); /* takes key and val */
/* *hit: the value of key (borrowed), NULL when absent. The work done counts (tr_work): one step per entry
 * scanned or slot probed, one per 16 bytes hashed or compared. */
ss_status tv_dict_get(tr *r, tv dict, tv key, const tv **hit);
ss_status tv_dict_gets(tr *r, tv dict, const char *key, size_t n, const tv **hit);
ss_status tv_loop_new(tr *r, tv items, tv *out); /* borrows items (increfs) */
ss_status tv_from_json(tr *r, const struct cJSON *j, tv *out);

int tv_truthy(tv v);
int tv_is_str(tv v);
/* Python ==. Items of lists and dicts count as steps (tr_work); values nested too deeply are an error. */
ss_status tv_equal(tr *r, tv a, tv b, int *res);
/* == for dict keys, which are never lists or dicts (those compare by identity here). */
int tv_eq(tv a, tv b);
/* A hash for dict keys that agrees with tv_eq: keys equal there hash alike (1, 1.0 and True too). */
uint32_t tv_hash(tv k);
/* <0, 0, >0 in *res; error when the two cannot be ordered. Counts steps like tv_equal. */
ss_status tv_cmp(tr *r, tv a, tv b, int *res);
const char *tv_type_name(tv v);
/* str() and repr() of Python, appended to b. */
ss_status tv_write_str(tr *r, tbuf *b, tv v);
ss_status tv_write_repr(tr *r, tbuf *b, tv v);
ss_status tv_to_str(tr *r, tv v, tv *out); /* str(v) as a STR value (owned) */
/* json.dumps(v, ensure_ascii, indent (NULL = none), separators, sort_keys) appended to b. */
ss_status tv_write_json(tr *r, tbuf *b, tv v, int ensure_ascii, const char *indent, size_t indent_n,
                        const char *item_sep, const char *key_sep, int sort_keys);
void tv_float_repr(double f, char buf[40]);
/* Number of code points in a UTF-8 string; byte offset of code point index i. */
size_t tm_utf8_len(const char *p, size_t n);
size_t tm_utf8_offset(const char *p, size_t n, size_t cp_index);
/* Python str.isspace() for a code point; decoding one code point (returns bytes used, >=1). */
int tm_is_space(uint32_t cp);
size_t tm_utf8_decode(const char *p, size_t n, uint32_t *cp);
size_t tm_utf8_encode(uint32_t cp, char out[4]);

/* ---- evaluation (tmpl_eval.c) and builtins (tmpl_builtins.c) ---- */
ss_status tr_eval(tr *r, const tn *e, tv *out);
ss_status tr_exec_body(tr *r, const tn *body);
ss_status tr_call_macro(tr *r, const tn *macro, const tn *call, const tv *args, size_t nargs,
                        const char *const *kwnames, const tv *kwvals, size_t nkw, tv *out);
/* Calls the value callee with evaluated arguments. */
ss_status tr_call_value(tr *r, const tn *at, tv callee, const tv *args, size_t nargs, const char *const *kwnames,
                        const tv *kwvals, size_t nkw, tv *out);
/* Filters/tests with evaluated arguments. */
ss_status tb_filter(tr *r, const tn *at, int id, tv in, const tv *args, size_t nargs, const char *const *kwnames,
                    const tv *kwvals, size_t nkw, tv *out);
ss_status tb_test(tr *r, const tn *at, int id, tv in, const tv *args, size_t nargs, int *res);
/* Method call obj.name(args) on strings, dicts, loop; *handled = 0 when no such method. */
ss_status tb_method(tr *r, const tn *at, tv obj, const char *name, const tv *args, size_t nargs,
                    const char *const *kwnames, const tv *kwvals, size_t nkw, tv *out, int *handled);
ss_status tb_global_call(tr *r, const tn *at, int fn, const tv *args, size_t nargs, const char *const *kwnames,
                         const tv *kwvals, size_t nkw, tv *out);
int tb_global_id(const char *name);

/* Call arguments as filters, tests and methods receive them (all borrowed). */
typedef struct targs {
    const tv *pos;
    size_t npos;
    const char *const *kwn;
    const tv *kwv;
    size_t nkw;
} targs;
/* Argument `name` at position i, or given by keyword; NULL when absent. */
const tv *tb_arg(const targs *a, size_t i, const char *name);
int tb_arg_bool(const tv *v, int dflt);
/* Typed access; errors name `what`. */
ss_status tb_arg_str(tr *r, const tn *at, const tv *v, const char *what, const char **p, size_t *n);
ss_status tb_arg_int(tr *r, const tn *at, const tv *v, const char *what, int64_t *out);
/* At most maxpos positional arguments and only the keywords listed (NULL-terminated). */
ss_status tb_arg_check(tr *r, const tn *at, const targs *a, const char *what, size_t maxpos,
                       const char *const *kwnames);

/* String helpers (tmpl_strings.c); results are owned values. */
enum { CASE_UPPER, CASE_LOWER, CASE_PYTITLE, CASE_JTITLE, CASE_CAPITALIZE };
ss_status tb_case(tr *r, tv s, int mode, tv *out);
/* *out: a view sharing s's owner. */
ss_status tb_strip(tr *r, tv s, const char *chars, size_t nchars, int left, int right, tv *out);
ss_status tb_replace(tr *r, tv s, const char *old, size_t on, const char *nw, size_t nn, int64_t count, tv *out);
ss_status tb_join(tr *r, const tn *at, tv seq, const char *sep, size_t sn, const char *attr, tv *out);
ss_status tb_html_escape(tr *r, tv s, tv *out);
ss_status tb_indent(tr *r, tv s, const char *pre, size_t pn, int first, int blank, tv *out);
int tb_str_all_case(tv s, int upper); /* str.isupper() / str.islower() */
ss_status tb_dict_items(tr *r, const tn *at, tv dict, tv *out);
/* Iterates v as Jinja would: fills *out with a LIST (owned). */
ss_status tb_to_list(tr *r, const tn *at, tv v, tv *out);
/* obj.attr / obj[key] lookups; return owned values (undefined when missing). */
ss_status tr_getattr(tr *r, tv obj, const char *name, size_t n, tv *out);
ss_status tr_getitem(tr *r, const tn *at, tv obj, tv key, tv *out);
ss_status tr_step(tr *r, const tn *at);
/* Binds name (borrowed for the render) in the current scope; takes val. */
ss_status tr_bind(tr *r, const char *name, tv val);
ss_status tr_charge(tr *r, size_t bytes);
/* Scans and comparisons count as steps: one per list item or dict entry visited, one per 16 bytes read; a
 * lookup through a hash index (tm_index), one per slot probed. */
ss_status tr_work(tr *r, size_t items, size_t bytes);

#endif

/* tool_stream.c — function calls streamed as they are written (see tool_stream.h): a byte-at-a-time reader of the
 * five call formats that prints arguments as cJSON_PrintUnformatted prints them, and the end's check against
 * ss_tool_calls_parse, which has the last word. */
#include "serve/tool_stream.h"

#include <cjson/cJSON.h>
#include <stdio.h>
#include <string.h>

#include "core/alloc.h"

/* How it stays exact. ss_tool_calls_parse gives a call's "arguments" as cJSON re-prints the parsed object (compact,
 * numbers through "%1.15g", strings re-escaped); raw model text would differ in white space, escapes and numbers. So
 * the reader follows cJSON's grammar (white space: any byte <= 32; strings: raw bytes kept, the escapes \b \f \n \r \t
 * \" \\ \/ \uXXXX with surrogate pairs; numbers: a run of [0-9+-eE.] that strtod must wholly take) and prints what it
 * reads the way cJSON prints it: structure as it comes, a string's bytes as they come (escaped as cJSON escapes
 * them), a number once it has ended (parsed and printed by cJSON itself), a literal once whole. Whatever it is not
 * sure to read as cJSON does (a NUL in a string, \u escapes cJSON reads leniently, nesting past TS_DEPTH, a byte-order
 * mark...) makes it stop: nothing more is sent until the end, where the whole text is parsed and what is missing is
 * sent then. A call starts (its id and name are sent) once its name is complete and names a tool, with everything
 * before it read as a valid prefix of calls; its arguments follow as they are read, less a trailing incomplete UTF-8
 * character (a chunk's JSON would show it as U+FFFD).
 *
 * What cannot be known before the end: that the answer stays calls (text after them, a malformed or truncated call).
 * Then the outcome is BROKEN: what was sent of calls stays sent, the text not yet sent as content follows as content
 * (so the stream's content equals the non-streamed answer's) and finish_reason is the model's, never "tool_calls".
 * (vLLM says "tool_calls" once it has streamed any call, even one cut short by max_tokens.) */

#define TS_DEPTH 64   /* nesting read, at most (cJSON's own limit is 1000) */
#define TS_NAME_MAX 64 /* a tool's name, at most (ss_tools_check) */
#define TS_KEY_MAX 16 /* longer keys of a call object are none of "name", "arguments", "parameters" */
#define TS_NUM_MAX 63 /* cJSON reads at most 63 bytes of a number */

typedef enum ts_phase {
    PH_LEAD,  /* JSON, MISTRAL, MISTRAL_V11, forced: the answer's first characters decide between calls and text */
    PH_TEXT,  /* HERMES, DEEPSEEK, MISTRAL_V11 (a lead of text): content, until the marker that begins the calls */
    PH_PLAIN, /* the answer is text: everything is content */
    PH_CALLS, /* reading calls */
    PH_STOP,  /* read something not understood (or not a call): nothing more until the end */
    PH_DONE,  /* finished */
} ts_phase;

/* Between call objects (bare: between the arguments' objects). */
typedef enum ts_outer {
    B_OPEN,        /* a call object comes (bare: the arguments): white space, then '{' */
    B_CALL,        /* in a call object (bare: in the arguments) */
    B_AFTER,       /* after one (MISTRAL_V11: also before the first call) */
    B_TAG,         /* in a marker: one of tags[] (tag_pos bytes matched), then tag_next[] */
    B_GAP,         /* HERMES: after </tool_call> */
    B_LIST_DONE,   /* MISTRAL: after the list's ']' */
    B_V_POST_TAG,  /* MISTRAL_V11: after [TOOL_CALLS] */
    B_V_NAME,      /* MISTRAL_V11: in a call's name */
    B_V_ID,        /* MISTRAL_V11: in the model's call id, after [CALL_ID] */
    B_DS_GAP,      /* DEEPSEEK: before a call or the calls' end marker */
    B_DS_WORD0,    /* DEEPSEEK: after a call's begin marker */
    B_DS_WORD,     /* DEEPSEEK: in the word before <sep>: the type "function" (V3) or the name (V3.1) */
    B_DS_PICK,     /* DEEPSEEK: after <sep>: '{' (V3.1) or the name (V3) */
    B_DS_NAME,     /* DEEPSEEK V3: in the name */
    B_DS_FENCE_WS, /* DEEPSEEK V3: after the name, before ``` */
    B_DS_LANG,     /* DEEPSEEK V3: after ```: "json" or not */
    B_DS_END_WS,   /* DEEPSEEK V3: after the closing ``` */
    B_DS_DONE,     /* DEEPSEEK: after the calls' end marker */
} ts_outer;

typedef enum ts_mode { M_JSON, M_LIST, M_HERMES, M_V11, M_DS } ts_mode;

/* A container's state. */
typedef enum ts_frame {
    F_OBJ_FIRST, /* after '{' */
    F_OBJ_KEY,   /* after ',' */
    F_OBJ_COLON, /* after a key */
    F_OBJ_VALUE, /* after ':' */
    F_OBJ_NEXT,  /* after a member */
    F_ARR_FIRST, /* after '[' */
    F_ARR_VALUE, /* after ',' */
    F_ARR_NEXT,  /* after an element */
} ts_frame;

typedef enum ts_tok { T_NONE, T_STR, T_NUM, T_LIT } ts_tok;
typedef enum ts_esc { E_CHAR, E_ESC, E_HEX, E_LOW_BS, E_LOW_U, E_LOW_HEX } ts_esc;
/* Where a string's bytes go. */
typedef enum ts_sink { K_SKIP, K_PRINT, K_KEY, K_NAME, K_ARGSTR } ts_sink;
/* What a member of the call object is. */
typedef enum ts_role { R_SKIP, R_NAME, R_ARGS } ts_role;

typedef struct ts_call {
    char name[TS_NAME_MAX + 1];
    char id[48];
    int named;           /* name complete and one of the tools */
    int announced;       /* its CALL event went */
    char *args;          /* printed arguments so far (owned) */
    size_t args_len, args_cap;
    int args_done;       /* args is whole */
    size_t sent;         /* bytes of the arguments sent */
} ts_call;

struct ss_tool_stream {
    ss_tool_stream_params p;
    char response_id[64];
    ss_status err;      /* SS_ERR_NOMEM once an allocation failed */
    ts_phase phase;
    ss_tool_outcome outcome;
    char *text;         /* the whole answer so far (owned, NUL-terminated) */
    size_t len, cap;
    size_t pos;         /* PH_CALLS: the next byte to read */
    size_t scan;        /* PH_TEXT: where a tag may still begin */
    size_t content_end, content_sent;
    size_t ws_from, ws_to; /* [ws_from, ws_to) is known to be white space (ts_trim_back: a run is walked once) */
    size_t lead;           /* PH_LEAD: the answer's leading white space known so far */
    /* calls: entries for those begun below max_calls (and, once finished, for every parsed call) */
    ts_call *calls;
    int32_t n_calls, calls_cap;
    int32_t call;       /* the call being read (its index in the answer) */
    int32_t emit;       /* the call whose events come next */
    ss_tool_calls parsed;
    /* reading */
    ts_mode mode;
    int bare;           /* M_V11, M_DS: the name comes before the arguments' object, which is read as depth 1 */
    int fenced;         /* M_DS: the call being read is V3's, its arguments in a ``` fence */
    ts_outer outer;
    const char *tags[2]; /* B_TAG: the markers that may be being read (NULL: none) */
    ts_outer tag_next[2];
    size_t tag_pos;
    ts_frame stack[TS_DEPTH];
    int depth;          /* frames open; the call object is depth 1 */
    int args_depth;     /* the depth of the arguments' object (0: not in it) */
    int name_seen, args_seen;
    int name_ok;        /* the call's name is complete and one of the tools */
    ts_role role;       /* the call object's member being read */
    ts_tok tok;
    ts_esc esc;
    ts_sink sink;
    int str_key, str_print;
    uint32_t hex, hi;
    int hex_n;
    char key[TS_KEY_MAX + 1];
    size_t key_len;
    char name[TS_NAME_MAX + 1];
    size_t name_len;
    char num[TS_NUM_MAX + 1];
    size_t num_len;
    const char *lit;    /* "true", "false" or "null" */
    size_t lit_pos;
    char *sbuf;         /* a string's decoded bytes, when the arguments are a string (owned) */
    size_t sbuf_len, sbuf_cap;
};

ss_tool_stream_params ss_tool_stream_default_params(void)
{
    ss_tool_stream_params p;
    memset(&p, 0, sizeof p);
    p.fmt = SS_TOOL_FORMAT_NONE;
    p.max_calls = 64;
    p.max_text = (size_t)64 << 20;
    return p;
}

static int ts_is_ws(unsigned char c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\r';
}

/* Grows *buf (cap *cap) to hold need bytes and a NUL. 0 when out of memory. */
static int ts_reserve(char **buf, size_t *cap, size_t need)
{
    if (need + 1 <= *cap)
        return 1;
    size_t c = *cap ? *cap : 64;
    while (c < need + 1)
        c *= 2;
    char *b = ss_realloc(*buf, c);
    if (!b)
        return 0;
    *buf = b;
    *cap = c;
    return 1;
}

static void ts_stop(ss_tool_stream *ts)
{
    ts->phase = PH_STOP;
}

/* The entry of the call being read, or NULL when it is past max_calls (read, never sent). */
static ts_call *ts_cur(ss_tool_stream *ts)
{
    return ts->call < ts->n_calls ? &ts->calls[ts->call] : NULL;
}

/* Entries for calls [0, n). */
static int ts_calls_grow(ss_tool_stream *ts, int32_t n)
{
    if (n > ts->calls_cap) {
        int32_t cap = ts->calls_cap ? ts->calls_cap * 2 : 4;
        while (cap < n)
            cap *= 2;
        ts_call *c = ss_realloc(ts->calls, (size_t)cap * sizeof *c);
        if (!c)
            return 0;
        ts->calls = c;
        ts->calls_cap = cap;
    }
    for (; ts->n_calls < n; ts->n_calls++)
        memset(&ts->calls[ts->n_calls], 0, sizeof ts->calls[0]);
    return 1;
}

/* Appends to the arguments of the call being read. */
static void ts_print(ss_tool_stream *ts, const char *s, size_t n)
{
    ts_call *c = ts_cur(ts);
    if (!c || n == 0)
        return;
    if (!ts_reserve(&c->args, &c->args_cap, c->args_len + n)) {
        ts->err = SS_ERR_NOMEM;
        ts_stop(ts);
        return;
    }
    memcpy(c->args + c->args_len, s, n);
    c->args_len += n;
    c->args[c->args_len] = '\0';
}

/* Whether what is being read now is printed: inside the arguments' object. */
static int ts_printing(const ss_tool_stream *ts)
{
    return ts->args_depth > 0 && ts->depth >= ts->args_depth;
}

/* One decoded byte of a string printed as cJSON's print_string_ptr prints it. */
static void ts_print_escaped(ss_tool_stream *ts, unsigned char c)
{
    static const char hex[] = "0123456789abcdef";
    char e[6] = {'\\', 0, 0, 0, 0, 0};
    switch (c) {
    case '"': e[1] = '"'; break;
    case '\\': e[1] = '\\'; break;
    case '\b': e[1] = 'b'; break;
    case '\f': e[1] = 'f'; break;
    case '\n': e[1] = 'n'; break;
    case '\r': e[1] = 'r'; break;
    case '\t': e[1] = 't'; break;
    default:
        if (c >= 32) {
            ts_print(ts, (const char *)&c, 1);
            return;
        }
        memcpy(e + 1, "u00", 3);
        e[4] = hex[c >> 4];
        e[5] = hex[c & 15];
        ts_print(ts, e, 6);
        return;
    }
    ts_print(ts, e, 2);
}

static void ts_value_end(ss_tool_stream *ts);

/* The arguments of the call being read are whole. */
static void ts_args_done(ss_tool_stream *ts)
{
    ts_call *c = ts_cur(ts);
    if (c)
        c->args_done = 1;
}

/* One decoded byte of a string. */
static void ts_str_out(ss_tool_stream *ts, unsigned char c)
{
    if (c == 0) { /* cJSON's strings end at a NUL: what it makes of the rest is not followed here */
        ts_stop(ts);
        return;
    }
    switch (ts->sink) {
    case K_SKIP: break;
    case K_PRINT: ts_print_escaped(ts, c); break;
    case K_KEY:
        if (ts->key_len < TS_KEY_MAX)
            ts->key[ts->key_len] = (char)c;
        ts->key_len++;
        break;
    case K_NAME:
        if (ts->name_len >= TS_NAME_MAX) { /* no tool has so long a name: not a call */
            ts_stop(ts);
            return;
        }
        ts->name[ts->name_len++] = (char)c;
        break;
    case K_ARGSTR:
        if (!ts_reserve(&ts->sbuf, &ts->sbuf_cap, ts->sbuf_len + 1)) {
            ts->err = SS_ERR_NOMEM;
            ts_stop(ts);
            return;
        }
        ts->sbuf[ts->sbuf_len++] = (char)c;
        break;
    }
}

/* A code point of a \u escape, as cJSON's utf16_literal_to_utf8 writes it. */
static void ts_str_cp(ss_tool_stream *ts, uint32_t cp)
{
    unsigned char b[4];
    int n;
    if (cp < 0x80) {
        b[0] = (unsigned char)cp;
        n = 1;
    } else if (cp < 0x800) {
        b[0] = (unsigned char)(0xc0 | (cp >> 6));
        b[1] = (unsigned char)(0x80 | (cp & 0x3f));
        n = 2;
    } else if (cp < 0x10000) {
        b[0] = (unsigned char)(0xe0 | (cp >> 12));
        b[1] = (unsigned char)(0x80 | ((cp >> 6) & 0x3f));
        b[2] = (unsigned char)(0x80 | (cp & 0x3f));
        n = 3;
    } else {
        b[0] = (unsigned char)(0xf0 | (cp >> 18));
        b[1] = (unsigned char)(0x80 | ((cp >> 12) & 0x3f));
        b[2] = (unsigned char)(0x80 | ((cp >> 6) & 0x3f));
        b[3] = (unsigned char)(0x80 | (cp & 0x3f));
        n = 4;
    }
    for (int i = 0; i < n && ts->phase == PH_CALLS; i++)
        ts_str_out(ts, b[i]);
}

static int ts_hex(unsigned char c)
{
    return c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : c >= 'A' && c <= 'F' ? c - 'A' + 10
                                                                                                         : -1;
}

/* The call's name (ts->name) is complete: 1 when it names a tool (the call can be announced), else 0 and the answer is
 * no call. */
static int ts_name_done(ss_tool_stream *ts)
{
    ts->name[ts->name_len] = '\0';
    if (!ss_tools_has(ts->p.tools, ts->name)) {
        ts_stop(ts);
        return 0;
    }
    ts->name_ok = 1;
    ts_call *c = ts_cur(ts);
    if (c) {
        memcpy(c->name, ts->name, ts->name_len + 1);
        c->named = 1;
    }
    return 1;
}

/* A string's closing quote. */
static void ts_str_end(ss_tool_stream *ts)
{
    ts->tok = T_NONE;
    if (ts->str_print)
        ts_print(ts, "\"", 1);
    if (ts->str_key) {
        ts->stack[ts->depth - 1] = F_OBJ_COLON;
        if (ts->depth != 1 || ts->bare)
            return;
        int name = ts->key_len == 4 && memcmp(ts->key, "name", 4) == 0;
        int args = (ts->key_len == 9 && memcmp(ts->key, "arguments", 9) == 0) ||
                   (ts->key_len == 10 && memcmp(ts->key, "parameters", 10) == 0);
        ts->role = name && !ts->name_seen ? R_NAME : args && !ts->args_seen ? R_ARGS : R_SKIP;
        if (ts->role == R_NAME)
            ts->name_seen = 1;
        if (ts->role == R_ARGS)
            ts->args_seen = 1;
        return;
    }
    if (ts->sink == K_NAME) {
        if (!ts_name_done(ts))
            return;
    } else if (ts->sink == K_ARGSTR) { /* a string holding the arguments' object, as add_call takes it */
        if (!ts_reserve(&ts->sbuf, &ts->sbuf_cap, ts->sbuf_len)) {
            ts->err = SS_ERR_NOMEM;
            ts_stop(ts);
            return;
        }
        ts->sbuf[ts->sbuf_len] = '\0';
        cJSON *inner = cJSON_ParseWithOpts(ts->sbuf, NULL, 1);
        int ok = cJSON_IsObject(inner);
        cJSON_Delete(inner);
        if (!ok) {
            ts_stop(ts);
            return;
        }
        ts_print(ts, ts->sbuf, ts->sbuf_len);
        ts_args_done(ts);
    }
    ts_value_end(ts);
}

static void ts_str_byte(ss_tool_stream *ts, unsigned char c)
{
    int h = ts_hex(c);
    switch (ts->esc) {
    case E_CHAR:
        if (c == '"')
            ts_str_end(ts);
        else if (c == '\\')
            ts->esc = E_ESC;
        else
            ts_str_out(ts, c);
        return;
    case E_ESC:
        ts->esc = E_CHAR;
        switch (c) {
        case 'b': ts_str_out(ts, '\b'); return;
        case 'f': ts_str_out(ts, '\f'); return;
        case 'n': ts_str_out(ts, '\n'); return;
        case 'r': ts_str_out(ts, '\r'); return;
        case 't': ts_str_out(ts, '\t'); return;
        case '"': case '\\': case '/': ts_str_out(ts, c); return;
        case 'u':
            ts->esc = E_HEX;
            ts->hex = 0;
            ts->hex_n = 0;
            return;
        default: ts_stop(ts); return;
        }
    case E_HEX:
    case E_LOW_HEX:
        if (h < 0) { /* cJSON reads a bad hex digit as part of a NUL: not followed */
            ts_stop(ts);
            return;
        }
        ts->hex = ts->hex * 16 + (uint32_t)h;
        if (++ts->hex_n < 4)
            return;
        if (ts->esc == E_LOW_HEX) {
            if (ts->hex < 0xdc00 || ts->hex > 0xdfff) {
                ts_stop(ts);
                return;
            }
            ts->esc = E_CHAR;
            ts_str_cp(ts, 0x10000 + (((ts->hi & 0x3ff) << 10) | (ts->hex & 0x3ff)));
        } else if (ts->hex >= 0xdc00 && ts->hex <= 0xdfff) {
            ts_stop(ts);
        } else if (ts->hex >= 0xd800 && ts->hex <= 0xdbff) {
            ts->hi = ts->hex;
            ts->esc = E_LOW_BS;
        } else {
            ts->esc = E_CHAR;
            ts_str_cp(ts, ts->hex);
        }
        return;
    case E_LOW_BS:
        if (c != '\\')
            ts_stop(ts);
        ts->esc = E_LOW_U;
        return;
    case E_LOW_U:
        if (c != 'u')
            ts_stop(ts);
        ts->esc = E_LOW_HEX;
        ts->hex = 0;
        ts->hex_n = 0;
        return;
    }
}

static void ts_str_begin(ss_tool_stream *ts, ts_sink sink, int key)
{
    ts->tok = T_STR;
    ts->esc = E_CHAR;
    ts->sink = sink;
    ts->str_key = key;
    ts->str_print = sink == K_PRINT;
    ts->key_len = 0;
    ts->name_len = 0;
    ts->sbuf_len = 0;
    if (ts->str_print)
        ts_print(ts, "\"", 1);
}

/* The number read has ended (the byte after it is not part of it): cJSON reads and prints it. */
static void ts_num_end(ss_tool_stream *ts)
{
    ts->tok = T_NONE;
    const char *end = NULL;
    cJSON *n = cJSON_ParseWithLengthOpts(ts->num, ts->num_len, &end, 0);
    if (!cJSON_IsNumber(n) || end != ts->num + ts->num_len) { /* what strtod leaves is no valid continuation */
        cJSON_Delete(n);
        ts_stop(ts);
        return;
    }
    if (ts_printing(ts)) {
        char *s = cJSON_PrintUnformatted(n);
        if (s)
            ts_print(ts, s, strlen(s));
        else {
            ts->err = SS_ERR_NOMEM;
            ts_stop(ts);
        }
        cJSON_free(s);
    }
    cJSON_Delete(n);
    ts_value_end(ts);
}

static int ts_push(ss_tool_stream *ts, ts_frame f)
{
    if (ts->depth >= TS_DEPTH) {
        ts_stop(ts);
        return 0;
    }
    ts->stack[ts->depth++] = f;
    return 1;
}

/* A value begins with c (no white space) where the top frame expects one. */
static void ts_value_begin(ss_tool_stream *ts, unsigned char c)
{
    if (ts->depth == 1 && ts->role == R_NAME) { /* the call's name: a string */
        if (c != '"') {
            ts_stop(ts);
            return;
        }
        ts_str_begin(ts, K_NAME, 0);
        return;
    }
    if (ts->depth == 1 && ts->role == R_ARGS) { /* the arguments: an object, a string holding one, or null */
        if (c == '{') {
            if (ts_push(ts, F_OBJ_FIRST)) {
                ts->args_depth = ts->depth;
                ts_print(ts, "{", 1);
            }
        } else if (c == '"') {
            ts_str_begin(ts, K_ARGSTR, 0);
        } else if (c == 'n') {
            ts->tok = T_LIT;
            ts->lit = "null";
            ts->lit_pos = 1;
        } else {
            ts_stop(ts);
        }
        return;
    }
    int print = ts_printing(ts);
    if (c == '{' || c == '[') {
        if (ts_push(ts, c == '{' ? F_OBJ_FIRST : F_ARR_FIRST) && print)
            ts_print(ts, (const char *)&c, 1);
    } else if (c == '"') {
        ts_str_begin(ts, print ? K_PRINT : K_SKIP, 0);
    } else if (c == '-' || (c >= '0' && c <= '9')) {
        ts->tok = T_NUM;
        ts->num[0] = (char)c;
        ts->num_len = 1;
    } else if (c == 't' || c == 'f' || c == 'n') {
        ts->tok = T_LIT;
        ts->lit = c == 't' ? "true" : c == 'f' ? "false" : "null";
        ts->lit_pos = 1;
    } else {
        ts_stop(ts);
    }
}

/* A value has ended: its container moves on; the arguments or the call may be whole. */
static void ts_value_end(ss_tool_stream *ts)
{
    if (ts->depth == 0)
        return;
    ts_frame *f = &ts->stack[ts->depth - 1];
    *f = *f == F_OBJ_VALUE ? F_OBJ_NEXT : F_ARR_NEXT;
    if (ts->depth == 1 && ts->role == R_ARGS)
        ts_args_done(ts);
}

/* The top container closes with c ('}' or ']'). */
static void ts_pop(ss_tool_stream *ts, unsigned char c)
{
    if (ts_printing(ts))
        ts_print(ts, (const char *)&c, 1);
    if (ts->depth == ts->args_depth) {
        ts->args_depth = 0;
        ts_args_done(ts);
    }
    if (--ts->depth > 0) {
        ts_value_end(ts);
        return;
    }
    /* the call object: a call needs its name; no arguments are "{}" */
    if (!ts->name_ok) {
        ts_stop(ts);
        return;
    }
    if (!ts->args_seen) {
        ts_print(ts, "{}", 2);
        ts_args_done(ts);
    }
    ts->call++;
    ts->outer = B_AFTER;
}

/* An entry for the call being read (when below max_calls). */
static int ts_call_entry(ss_tool_stream *ts)
{
    if (ts->call < ts->p.max_calls && !ts_calls_grow(ts, ts->call + 1)) {
        ts->err = SS_ERR_NOMEM;
        ts_stop(ts);
        return 0;
    }
    return 1;
}

/* A byte of a call's name (bare formats); 0 when the name is too long for a tool's. */
static int ts_name_char(ss_tool_stream *ts, unsigned char c)
{
    if (ts->name_len >= TS_NAME_MAX) {
        ts_stop(ts);
        return 0;
    }
    ts->name[ts->name_len++] = (char)c;
    return 1;
}

/* Bare formats: a call begins with c, its name's first byte. */
static int ts_call_begin(ss_tool_stream *ts, unsigned char c)
{
    if (!ss_tool_name_char((char)c)) {
        ts_stop(ts);
        return 0;
    }
    if (!ts_call_entry(ts))
        return 0;
    ts->name_len = 0;
    ts->name_ok = 0;
    ts->fenced = 0;
    return ts_name_char(ts, c);
}

/* The '{' of a call object (bare formats: of the arguments, the call's name already read). */
static void ts_open(ss_tool_stream *ts)
{
    ts->outer = B_CALL;
    ts->depth = 0;
    ts->args_depth = 0;
    ts->role = R_SKIP;
    if (ts->bare) {
        ts->name_seen = ts->args_seen = 1;
        if (ts_push(ts, F_OBJ_FIRST)) {
            ts->args_depth = 1;
            ts_print(ts, "{", 1);
        }
        return;
    }
    if (!ts_call_entry(ts))
        return;
    ts->name_seen = ts->args_seen = ts->name_ok = 0;
    ts_push(ts, F_OBJ_FIRST);
}

/* A byte of a marker (B_TAG): on to the state after the marker once one is whole; a byte that fits none stops. */
static void ts_tag_byte(ss_tool_stream *ts, unsigned char c)
{
    int fits = 0;
    for (int i = 0; i < 2; i++) {
        if (ts->tags[i] && (unsigned char)ts->tags[i][ts->tag_pos] == c)
            fits = 1;
        else
            ts->tags[i] = NULL;
    }
    if (!fits) {
        ts_stop(ts);
        return;
    }
    ts->tag_pos++;
    for (int i = 0; i < 2; i++)
        if (ts->tags[i] && ts->tags[i][ts->tag_pos] == '\0')
            ts->outer = ts->tag_next[i];
}

/* c begins marker a (then state na) or b (NULL, or then nb). */
static void ts_tag_begin(ss_tool_stream *ts, unsigned char c, const char *a, ts_outer na, const char *b, ts_outer nb)
{
    ts->outer = B_TAG;
    ts->tags[0] = a;
    ts->tags[1] = b;
    ts->tag_next[0] = na;
    ts->tag_next[1] = nb;
    ts->tag_pos = 0;
    ts_tag_byte(ts, c);
}

/* JSON, MISTRAL's list, HERMES: after a call object. */
static void ts_outer_json(ss_tool_stream *ts, unsigned char c)
{
    if (ts->outer == B_AFTER && ts->mode == M_LIST) { /* in cJSON's list: any byte <= 32 is white space */
        if (c <= 32)
            return;
        if (c == ',')
            ts->outer = B_OPEN;
        else if (c == ']')
            ts->outer = B_LIST_DONE;
        else
            ts_stop(ts);
        return;
    }
    if (ts_is_ws(c))
        return;
    if (ts->outer == B_AFTER && ts->mode == M_JSON && c == ';')
        ts->outer = B_OPEN;
    else if (ts->outer == B_AFTER && ts->mode == M_HERMES && c == SS_TOOL_END[0])
        ts_tag_begin(ts, c, SS_TOOL_END, B_GAP, NULL, B_GAP);
    else if (ts->outer == B_GAP && c == SS_TOOL_TAG[0])
        ts_tag_begin(ts, c, SS_TOOL_TAG, B_OPEN, NULL, B_OPEN);
    else
        ts_stop(ts); /* (B_LIST_DONE: only white space may follow) */
}

static int ts_alnum(unsigned char c)
{
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

/* MISTRAL_V11, before and between calls: [marker] name ([CALL_ID] id [ARGS] | [ARGS] | nothing) {arguments}. */
static void ts_outer_v11(ss_tool_stream *ts, unsigned char c)
{
    switch (ts->outer) {
    case B_AFTER:
    case B_V_POST_TAG:
        if (ts_is_ws(c))
            return;
        if (c == '[' && ts->outer == B_AFTER)
            ts_tag_begin(ts, c, SS_MISTRAL_TAG, B_V_POST_TAG, NULL, B_V_POST_TAG);
        else if (ts_call_begin(ts, c))
            ts->outer = B_V_NAME;
        return;
    case B_V_NAME:
        if (ss_tool_name_char((char)c))
            ts_name_char(ts, c);
        else if (c != '{' && c != '[')
            ts_stop(ts);
        else if (ts_name_done(ts) && c == '{')
            ts_open(ts);
        else if (ts->phase == PH_CALLS)
            ts_tag_begin(ts, c, SS_MISTRAL_ARGS, B_OPEN, SS_MISTRAL_CALL_ID, B_V_ID);
        return;
    case B_V_ID:
        if (c == '[')
            ts_tag_begin(ts, c, SS_MISTRAL_ARGS, B_OPEN, NULL, B_OPEN);
        else if (!ts_alnum(c))
            ts_stop(ts);
        return;
    default: ts_stop(ts); return;
    }
}

/* DEEPSEEK V3, after the name: the fence, "json", the arguments, the fence, <call_end> (B_AFTER: after the
 * arguments). */
static void ts_outer_ds_fence(ss_tool_stream *ts, unsigned char c)
{
    switch (ts->outer) {
    case B_DS_NAME:
        if (ss_tool_name_char((char)c)) {
            ts_name_char(ts, c);
            return;
        }
        if ((!ts_is_ws(c) && c != '`') || !ts_name_done(ts)) {
            ts_stop(ts);
            return;
        }
        ts->outer = B_DS_FENCE_WS; /* c is white space or the fence's first byte */
        /* fall through */
    case B_DS_FENCE_WS:
        if (c == '`')
            ts_tag_begin(ts, c, "```", B_DS_LANG, NULL, B_DS_LANG);
        else if (!ts_is_ws(c))
            ts_stop(ts);
        return;
    case B_DS_LANG:
        if (c == 'j') {
            ts_tag_begin(ts, c, "json", B_OPEN, NULL, B_OPEN);
            return;
        }
        ts->outer = B_OPEN;
        if (c == '{')
            ts_open(ts);
        else if (c > 32) /* (cJSON's white space before the object) */
            ts_stop(ts);
        return;
    case B_AFTER:
    case B_DS_END_WS:
        if (ts_is_ws(c))
            return;
        if (c == '`' && ts->outer == B_AFTER)
            ts_tag_begin(ts, c, "```", B_DS_END_WS, NULL, B_DS_END_WS);
        else if (c == '<' && ts->outer == B_DS_END_WS)
            ts_tag_begin(ts, c, SS_DS_CALL_END, B_DS_GAP, NULL, B_DS_GAP);
        else
            ts_stop(ts);
        return;
    default: ts_stop(ts); return;
    }
}

/* DEEPSEEK, between calls and up to a call's arguments (or its name, V3). */
static void ts_outer_ds(ss_tool_stream *ts, unsigned char c)
{
    switch (ts->outer) {
    case B_DS_GAP:
        if (c == '<')
            ts_tag_begin(ts, c, SS_DS_CALL_BEGIN, B_DS_WORD0, SS_DS_CALLS_END, B_DS_DONE);
        else if (!ts_is_ws(c))
            ts_stop(ts);
        return;
    case B_DS_WORD0:
        if (!ts_is_ws(c) && ts_call_begin(ts, c))
            ts->outer = B_DS_WORD;
        return;
    case B_DS_WORD:
        if (ss_tool_name_char((char)c))
            ts_name_char(ts, c);
        else if (c == '<')
            ts_tag_begin(ts, c, SS_DS_SEP, B_DS_PICK, NULL, B_DS_PICK);
        else
            ts_stop(ts);
        return;
    case B_DS_PICK:
        if (c <= 32) /* (cJSON's white space before the object) */
            return;
        if (c == '{') { /* V3.1: the word was the name */
            if (ts_name_done(ts))
                ts_open(ts);
        } else if (ss_tool_name_char((char)c) && ts->name_len == 8 && memcmp(ts->name, "function", 8) == 0) {
            ts->fenced = 1; /* V3: the word was the type; the name comes */
            ts->name_len = 0;
            ts_name_char(ts, c);
            ts->outer = B_DS_NAME;
        } else {
            ts_stop(ts);
        }
        return;
    case B_AFTER:
        if (!ts->fenced) { /* V3.1: <call_end> */
            if (c == '<')
                ts_tag_begin(ts, c, SS_DS_CALL_END, B_DS_GAP, NULL, B_DS_GAP);
            else if (!ts_is_ws(c))
                ts_stop(ts);
            return;
        }
        ts_outer_ds_fence(ts, c);
        return;
    case B_DS_DONE:
        if (!ts_is_ws(c))
            ts_stop(ts);
        return;
    default: ts_outer_ds_fence(ts, c); return;
    }
}

/* A byte between call objects (bare formats: outside the arguments). */
static void ts_outer_byte(ss_tool_stream *ts, unsigned char c)
{
    switch (ts->outer) {
    case B_OPEN:
        if (c == '{')
            ts_open(ts);
        else if (c > 32)
            ts_stop(ts);
        return;
    case B_TAG: ts_tag_byte(ts, c); return;
    case B_CALL: return; /* (read by ts_byte) */
    default: break;
    }
    if (ts->mode == M_V11)
        ts_outer_v11(ts, c);
    else if (ts->mode == M_DS)
        ts_outer_ds(ts, c);
    else
        ts_outer_json(ts, c);
}

static int ts_num_char(unsigned char c)
{
    return (c >= '0' && c <= '9') || c == '+' || c == '-' || c == 'e' || c == 'E' || c == '.';
}

/* Reads one byte of calls. */
static void ts_byte(ss_tool_stream *ts, unsigned char c)
{
    if (ts->tok == T_STR) {
        ts_str_byte(ts, c);
        return;
    }
    if (ts->tok == T_LIT) {
        if (c != (unsigned char)ts->lit[ts->lit_pos]) {
            ts_stop(ts);
            return;
        }
        if (ts->lit[++ts->lit_pos] != '\0')
            return;
        ts->tok = T_NONE;
        if (ts->depth == 1 && ts->role == R_ARGS) /* "arguments": null */
            ts_print(ts, "{}", 2);
        else if (ts_printing(ts))
            ts_print(ts, ts->lit, ts->lit_pos);
        ts_value_end(ts);
        return;
    }
    if (ts->tok == T_NUM) {
        if (ts_num_char(c)) {
            if (ts->num_len >= TS_NUM_MAX)
                ts_stop(ts);
            else
                ts->num[ts->num_len++] = (char)c;
            return;
        }
        ts_num_end(ts); /* then c, after the number */
        if (ts->phase != PH_CALLS)
            return;
    }
    if (ts->depth == 0) {
        ts_outer_byte(ts, c);
        return;
    }
    if (c <= 32) /* cJSON's white space */
        return;
    ts_frame *f = &ts->stack[ts->depth - 1];
    int print = ts_printing(ts);
    switch (*f) {
    case F_OBJ_FIRST:
    case F_OBJ_KEY:
        if (c == '"')
            ts_str_begin(ts, ts->depth == 1 && !ts->bare ? K_KEY : print ? K_PRINT : K_SKIP, 1);
        else if (c == '}' && *f == F_OBJ_FIRST)
            ts_pop(ts, c);
        else
            ts_stop(ts);
        return;
    case F_OBJ_COLON:
        if (c != ':') {
            ts_stop(ts);
            return;
        }
        *f = F_OBJ_VALUE;
        if (print)
            ts_print(ts, ":", 1);
        return;
    case F_OBJ_VALUE:
    case F_ARR_VALUE: ts_value_begin(ts, c); return;
    case F_ARR_FIRST:
        if (c == ']')
            ts_pop(ts, c);
        else
            ts_value_begin(ts, c);
        return;
    case F_OBJ_NEXT:
    case F_ARR_NEXT:
        if (c == ',') {
            *f = *f == F_OBJ_NEXT ? F_OBJ_KEY : F_ARR_VALUE;
            if (print)
                ts_print(ts, ",", 1);
        } else if (c == (*f == F_OBJ_NEXT ? '}' : ']')) {
            ts_pop(ts, c);
        } else {
            ts_stop(ts);
        }
        return;
    }
}

/* How many bytes at the end of s[0..n) begin a UTF-8 character that may still be completed (the rules of the JSON
 * writer, ss_jbuf_str): held back, since a chunk's JSON string would show them as U+FFFD. */
static size_t ts_utf8_tail(const char *str, size_t n)
{
    const unsigned char *s = (const unsigned char *)str;
    for (size_t k = 1; k <= 3 && k <= n; k++) {
        unsigned char c = s[n - k];
        if (c < 0x80)
            return 0;
        if (c < 0xc0)
            continue; /* a continuation byte: its lead is further back */
        size_t need;
        unsigned lo = 0x80, hi = 0xbf;
        if (c >= 0xc2 && c <= 0xdf) {
            need = 2;
        } else if (c >= 0xe0 && c <= 0xef) {
            need = 3;
            lo = c == 0xe0 ? 0xa0 : 0x80;
            hi = c == 0xed ? 0x9f : 0xbf;
        } else if (c >= 0xf0 && c <= 0xf4) {
            need = 4;
            lo = c == 0xf0 ? 0x90 : 0x80;
            hi = c == 0xf4 ? 0x8f : 0xbf;
        } else {
            return 0;
        }
        if (k >= need || (k >= 2 && (s[n - k + 1] < lo || s[n - k + 1] > hi)))
            return 0;
        return k;
    }
    return 0;
}

/* Calls are read from byte pos on, in state outer. */
static void ts_begin_calls(ss_tool_stream *ts, ts_mode mode, size_t pos, ts_outer outer)
{
    ts->phase = PH_CALLS;
    ts->mode = mode;
    ts->bare = mode == M_V11 || mode == M_DS;
    ts->outer = outer;
    ts->pos = pos;
}

/* Past an optional tag at *p (and the white space after it): 0 when the text may still grow into the tag, or is the tag
 * and white space so far (undecided); else 1, *p moved past them when they are there. */
static int ts_skip_tag(const char **p, const char *end, const char *tag)
{
    const size_t tl = strlen(tag), rest = (size_t)(end - *p);
    if (rest < tl)
        return memcmp(*p, tag, rest) != 0;
    if (memcmp(*p, tag, tl) != 0)
        return 1;
    const char *q = *p + tl;
    while (q < end && ts_is_ws((unsigned char)*q))
        q++;
    if (q == end)
        return 0;
    *p = q;
    return 1;
}

/* How far s[0..n) and tag agree: 1 when s begins with tag, 0 when s is shorter and a prefix of it, -1 otherwise. */
static int ts_prefix(const char *s, size_t n, const char *tag)
{
    size_t tl = strlen(tag);
    if (memcmp(s, tag, n < tl ? n : tl) != 0)
        return -1;
    return n >= tl ? 1 : 0;
}

/* MISTRAL_V11: whether the answer (from p, after white space) begins with calls (1: the marker, or a tool's name and
 * then '{' or a marker), is text (-1), or may still grow into either (0); as parse_v11_calls chooses. */
static int ts_v11_lead(const ss_tool_stream *ts, const char *p, const char *end)
{
    int r = ts_prefix(p, (size_t)(end - p), SS_MISTRAL_TAG);
    if (r >= 0)
        return r;
    const char *ne = p;
    while (ne < end && ss_tool_name_char(*ne))
        ne++;
    size_t n = (size_t)(ne - p);
    if (n == 0 || n > TS_NAME_MAX)
        return -1;
    if (ne == end)
        return ss_tools_has_prefix(ts->p.tools, p, n) ? 0 : -1;
    char name[TS_NAME_MAX + 1];
    memcpy(name, p, n);
    name[n] = '\0';
    if (!ss_tools_has(ts->p.tools, name))
        return -1;
    if (*ne == '{')
        return 1;
    const size_t rest = (size_t)(end - ne);
    int a = ts_prefix(ne, rest, SS_MISTRAL_ARGS), b = ts_prefix(ne, rest, SS_MISTRAL_CALL_ID);
    return a > b ? a : b;
}

/* JSON, MISTRAL or forced: [marker] [ '[' ... | python tag ] '{' ... begins calls; anything else is text (as
 * parse_json_calls and parse_mistral_calls read it). MISTRAL_V11: see ts_v11_lead; text goes on as PH_TEXT, content
 * until a marker. Undecided while the text may still grow into either. */
static void ts_lead(ss_tool_stream *ts)
{
    const char *t = ts->text, *end = t + ts->len, *p = t + ts->lead;
    while (p < end && ts_is_ws((unsigned char)*p))
        p++;
    ts->lead = (size_t)(p - t);
    if (p == end)
        return;
    if (ts->p.fmt == SS_TOOL_FORMAT_MISTRAL_V11 && !ts->p.forced) {
        int r = ts_v11_lead(ts, p, end);
        if (r > 0)
            ts_begin_calls(ts, M_V11, (size_t)(p - t), B_AFTER);
        else if (r < 0)
            ts->phase = PH_TEXT;
        return;
    }
    if (ts->p.fmt == SS_TOOL_FORMAT_MISTRAL && !ts->p.forced) {
        if (!ts_skip_tag(&p, end, SS_MISTRAL_TAG))
            return;
        if (*p == '[') {
            ts_begin_calls(ts, M_LIST, (size_t)(p + 1 - t), B_OPEN);
            return;
        }
    }
    if (!ts_skip_tag(&p, end, SS_PYTHON_TAG))
        return;
    if (*p == '{')
        ts_begin_calls(ts, M_JSON, (size_t)(p - t), B_OPEN);
    else
        ts->phase = PH_PLAIN;
}

/* e less the white space before it, never below ts->content_end. A run of white space that keeps growing (a model
 * writing spaces) is walked once, not at every feed: [ws_from, ws_to) is remembered. */
static size_t ts_trim_back(ss_tool_stream *ts, size_t e)
{
    const char *t = ts->text;
    const size_t from = ts->content_end, end = e;
    while (e > from && ts_is_ws((unsigned char)t[e - 1])) {
        if (ts->ws_from == from && e <= ts->ws_to) {
            e = from;
            break;
        }
        e--;
    }
    if (e == from && end > from) {
        if (ts->ws_from != from)
            ts->ws_to = from;
        ts->ws_from = from;
        ts->ws_to = end > ts->ws_to ? end : ts->ws_to;
    }
    return e;
}

/* The marker that ends the content (PH_TEXT), the mode the calls after it are read in and the state to begin in. */
static const char *ts_text_tag(ss_tool_format fmt, ts_mode *mode, ts_outer *outer)
{
    *mode = fmt == SS_TOOL_FORMAT_HERMES ? M_HERMES : fmt == SS_TOOL_FORMAT_DEEPSEEK ? M_DS : M_V11;
    *outer = fmt == SS_TOOL_FORMAT_HERMES ? B_OPEN : fmt == SS_TOOL_FORMAT_DEEPSEEK ? B_DS_GAP : B_V_POST_TAG;
    return fmt == SS_TOOL_FORMAT_HERMES ? SS_TOOL_TAG : fmt == SS_TOOL_FORMAT_DEEPSEEK ? SS_DS_CALLS_BEGIN
                                                                                      : SS_MISTRAL_TAG;
}

/* HERMES, DEEPSEEK, MISTRAL_V11: content up to the first marker (<tool_call>, <calls_begin>, [TOOL_CALLS]) less the
 * white space before it, as the content of the non-streamed answer, holding back a tail that may grow into it. */
static void ts_text(ss_tool_stream *ts)
{
    ts_mode mode;
    ts_outer outer;
    const char *tag = ts_text_tag(ts->p.fmt, &mode, &outer);
    const size_t tl = strlen(tag);
    const char *t = ts->text;
    for (size_t i = ts->scan; i + tl <= ts->len; i++)
        if (memcmp(t + i, tag, tl) == 0) {
            ts->content_end = ts_trim_back(ts, i);
            ts_begin_calls(ts, mode, i + tl, outer);
            return;
        }
    ts->scan = ts->len >= tl - 1 ? ts->len - (tl - 1) : 0;
    size_t e = ts->len;
    for (size_t k = tl - 1; k > 0; k--)
        if (k <= ts->len && memcmp(t + ts->len - k, tag, k) == 0) {
            e = ts->len - k;
            break;
        }
    e = ts_trim_back(ts, e);
    e -= ts_utf8_tail(t, e);
    if (e > ts->content_end)
        ts->content_end = e;
}

ss_status ss_tool_stream_create(const ss_tool_stream_params *p, ss_tool_stream **out)
{
    *out = NULL;
    ss_tool_stream *ts = ss_calloc(1, sizeof *ts);
    if (!ts)
        return SS_ERR_NOMEM;
    ts->p = *p;
    if (p->response_id)
        snprintf(ts->response_id, sizeof ts->response_id, "%s", p->response_id);
    ts->p.response_id = ts->response_id;
    if (ts->p.fmt == SS_TOOL_FORMAT_NONE || ts->p.max_calls < 1)
        ts->phase = PH_PLAIN; /* ss_tool_calls_parse finds no calls */
    else if ((ts->p.fmt == SS_TOOL_FORMAT_HERMES || ts->p.fmt == SS_TOOL_FORMAT_DEEPSEEK) && !ts->p.forced)
        ts->phase = PH_TEXT;
    else
        ts->phase = PH_LEAD;
    if (!ts_reserve(&ts->text, &ts->cap, 0)) {
        ss_free(ts);
        return SS_ERR_NOMEM;
    }
    ts->text[0] = '\0';
    *out = ts;
    return SS_OK;
}

void ss_tool_stream_destroy(ss_tool_stream *ts)
{
    if (!ts)
        return;
    for (int32_t i = 0; i < ts->n_calls; i++)
        ss_free(ts->calls[i].args);
    ss_free(ts->calls);
    ss_tool_calls_free(&ts->parsed);
    ss_free(ts->sbuf);
    ss_free(ts->text);
    ss_free(ts);
}

ss_status ss_tool_stream_feed(ss_tool_stream *ts, const char *text, size_t len)
{
    if (ts->phase == PH_DONE)
        return SS_ERR_INVALID_ARG;
    if (ts->err != SS_OK)
        return ts->err;
    if (len > ts->p.max_text || ts->len > ts->p.max_text - len)
        return SS_ERR_CAPACITY;
    if (!ts_reserve(&ts->text, &ts->cap, ts->len + len))
        return SS_ERR_NOMEM;
    if (len)
        memcpy(ts->text + ts->len, text, len);
    ts->len += len;
    ts->text[ts->len] = '\0';
    if (ts->phase == PH_LEAD)
        ts_lead(ts);
    if (ts->phase == PH_TEXT) /* (also when the lead has just found text: MISTRAL_V11) */
        ts_text(ts);
    if (ts->phase == PH_PLAIN && ts->len - ts_utf8_tail(ts->text, ts->len) > ts->content_end)
        ts->content_end = ts->len - ts_utf8_tail(ts->text, ts->len);
    while (ts->phase == PH_CALLS && ts->pos < ts->len)
        ts_byte(ts, (unsigned char)ts->text[ts->pos++]);
    return ts->err;
}

/* Whether what was sent is the start of what ss_tool_calls_parse found (a call's text read differently is a bug, which
 * the fuzzer looks for; the answer is then given as BROKEN: content, the model's finish). */
static int ts_agrees(const ss_tool_stream *ts)
{
    const ss_tool_calls *pc = &ts->parsed;
    if (pc->n == 0 || ts->content_sent > pc->content_len)
        return 0;
    for (int32_t i = 0; i < ts->n_calls; i++) {
        const ts_call *c = &ts->calls[i];
        if (!c->announced)
            continue;
        if (i >= pc->n || strcmp(c->name, pc->calls[i].name) != 0 || c->sent > strlen(pc->calls[i].arguments) ||
            (c->sent > 0 && memcmp(c->args, pc->calls[i].arguments, c->sent) != 0))
            return 0;
    }
    return 1;
}

ss_status ss_tool_stream_finish(ss_tool_stream *ts, ss_tool_outcome *outcome)
{
    if (ts->phase == PH_DONE) {
        *outcome = ts->outcome;
        return SS_OK;
    }
    *outcome = SS_TOOL_OUTCOME_OPEN;
    ss_status st = ss_tool_calls_parse(ts->p.fmt, ts->p.forced, ts->text, ts->len, ts->p.tools, ts->p.max_calls,
                                       &ts->parsed);
    if (st != SS_OK)
        return st;
    ss_tool_calls_name(&ts->parsed, ts->p.fmt, ts->response_id, ts->p.choice);
    int announced = 0;
    for (int32_t i = 0; i < ts->n_calls; i++)
        announced |= ts->calls[i].announced;
    if (ts_agrees(ts)) {
        if (!ts_calls_grow(ts, ts->parsed.n)) {
            ss_tool_calls_free(&ts->parsed);
            return SS_ERR_NOMEM;
        }
        ts->outcome = SS_TOOL_OUTCOME_CALLS;
        ts->content_end = ts->parsed.content_len;
    } else {
        ss_tool_calls_free(&ts->parsed);
        ts->outcome = announced ? SS_TOOL_OUTCOME_BROKEN : SS_TOOL_OUTCOME_TEXT;
        ts->content_end = ts->len;
    }
    if (ts->content_end < ts->content_sent) /* (cannot be: ts_agrees) */
        ts->content_end = ts->content_sent;
    ts->phase = PH_DONE;
    *outcome = ts->outcome;
    return SS_OK;
}

int ss_tool_stream_next(ss_tool_stream *ts, ss_tool_event *ev)
{
    memset(ev, 0, sizeof *ev);
    if (ts->content_end > ts->content_sent) {
        ev->kind = SS_TOOL_EVENT_CONTENT;
        ev->text = ts->text + ts->content_sent;
        ev->len = ts->content_end - ts->content_sent;
        ts->content_sent = ts->content_end;
        return 1;
    }
    int done = ts->phase == PH_DONE;
    if ((ts->phase != PH_CALLS && !done) || (done && ts->outcome != SS_TOOL_OUTCOME_CALLS))
        return 0;
    int32_t n = done ? ts->parsed.n : ts->n_calls;
    while (ts->emit < n) {
        ts_call *c = &ts->calls[ts->emit];
        const ss_tool_call *pc = done ? &ts->parsed.calls[ts->emit] : NULL;
        if (!c->announced) {
            if (!c->named && !pc)
                return 0;
            c->announced = 1;
            ss_tool_call_id(ts->p.fmt, ts->response_id, ts->p.choice, ts->emit, c->id);
            ev->kind = SS_TOOL_EVENT_CALL;
            ev->index = ts->emit;
            ev->id = c->id;
            ev->name = pc ? pc->name : c->name;
            return 1;
        }
        const char *args = pc ? pc->arguments : c->args;
        size_t avail = pc ? strlen(args) : c->args_done ? c->args_len : c->args_len - ts_utf8_tail(args, c->args_len);
        if (avail > c->sent) {
            ev->kind = SS_TOOL_EVENT_ARGS;
            ev->index = ts->emit;
            ev->text = args + c->sent;
            ev->len = avail - c->sent;
            c->sent = avail;
            return 1;
        }
        if (!pc && !c->args_done)
            return 0;
        ts->emit++;
    }
    return 0;
}

const ss_tool_calls *ss_tool_stream_calls(const ss_tool_stream *ts)
{
    return &ts->parsed;
}

/* test_tool_stream.c — calls streamed as they are written (serve/tool_stream.c): every format's answers fed whole, a
 * byte at a time and split at every byte, against ss_tool_calls_parse of the whole text; malformed and cut calls. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <cjson/cJSON.h>
#include <stdio.h>
#include <string.h>

#include "core/alloc.h"
#include "serve/tool_stream.h"

static const char tools_json[] =
    "[{\"type\":\"function\",\"function\":{\"name\":\"get_weather\",\"description\":\"Weather\",\"parameters\":"
    "{\"type\":\"object\",\"properties\":{\"city\":{\"type\":\"string\"}},\"required\":[\"city\"]}}},"
    "{\"type\":\"function\",\"function\":{\"name\":\"now\"}}]";

#define MAX_EV 4096
#define MAX_CALLS 8

/* What one run gave: the events (each with the text fed when it came: -1 after finish) and their sums. */
typedef struct run {
    int n_ev;
    ss_tool_event_kind kind[MAX_EV];
    int32_t index[MAX_EV];
    long at[MAX_EV];
    char piece[MAX_EV][128];
    char content[4096];
    int n_calls;
    char id[MAX_CALLS][48], name[MAX_CALLS][72], args[MAX_CALLS][2048];
    ss_tool_outcome outcome;
    int late; /* CALL or ARGS events after finish */
} run;

static int utf8_valid(const char *str, size_t n)
{
    const unsigned char *s = (const unsigned char *)str;
    for (size_t i = 0; i < n;) {
        size_t k = s[i] < 0x80 ? 1 : s[i] >= 0xc2 && s[i] <= 0xdf ? 2 : s[i] >= 0xe0 && s[i] <= 0xef ? 3
                                                                   : s[i] >= 0xf0 && s[i] <= 0xf4 ? 4 : 0;
        if (k == 0 || i + k > n)
            return 0;
        for (size_t j = 1; j < k; j++)
            if ((s[i + j] & 0xc0) != 0x80)
                return 0;
        i += k;
    }
    return 1;
}

static void take(ss_tool_stream *ts, run *r, long at, int valid_utf8)
{
    ss_tool_event ev;
    while (ss_tool_stream_next(ts, &ev)) {
        assert_true(r->n_ev < MAX_EV);
        int e = r->n_ev++;
        r->kind[e] = ev.kind;
        r->index[e] = ev.index;
        r->at[e] = at;
        if (ev.kind == SS_TOOL_EVENT_CONTENT) {
            assert_true(ev.len > 0);
            /* content comes before the calls (or, BROKEN, after them all, once finished) */
            assert_true(r->n_calls == 0 || at < 0);
            strncat(r->content, ev.text, ev.len);
        } else if (ev.kind == SS_TOOL_EVENT_CALL) {
            assert_int_equal(ev.index, r->n_calls); /* calls in order, each once */
            assert_true(r->n_calls < MAX_CALLS);
            snprintf(r->id[r->n_calls], 48, "%s", ev.id);
            snprintf(r->name[r->n_calls], 72, "%s", ev.name);
            r->n_calls++;
            r->late |= at < 0;
        } else {
            assert_int_equal(ev.kind, SS_TOOL_EVENT_ARGS);
            assert_int_equal(ev.index, r->n_calls - 1); /* arguments of the call begun last */
            assert_true(ev.len > 0);
            strncat(r->args[ev.index], ev.text, ev.len);
            r->late |= at < 0;
        }
        if (ev.kind != SS_TOOL_EVENT_CALL) {
            if (valid_utf8 && at >= 0) /* no character cut in two while more may come */
                assert_true(utf8_valid(ev.text, ev.len));
            snprintf(r->piece[e], sizeof r->piece[e], "%.*s", (int)ev.len, ev.text);
        }
    }
}

/* Feeds text cut at the offsets cuts[0..n_cuts) (increasing), finishes, and checks the run against the whole text's
 * parse: CALLS gives its calls (ids, names, arguments byte for byte) after its content; otherwise everything is
 * content. */
static void run_cuts(ss_tool_format fmt, int forced, const char *text, int32_t max_calls, const size_t *cuts,
                     int n_cuts, run *r)
{
    memset(r, 0, sizeof *r);
    cJSON *tools = cJSON_Parse(tools_json);
    ss_tool_stream_params p = ss_tool_stream_default_params();
    p.fmt = fmt;
    p.forced = forced;
    p.tools = tools;
    p.max_calls = max_calls;
    p.response_id = "chatcmpl-00ff";
    p.choice = 1;
    ss_tool_stream *ts = NULL;
    assert_int_equal(ss_tool_stream_create(&p, &ts), SS_OK);
    size_t len = strlen(text), from = 0;
    int valid = utf8_valid(text, len);
    for (int i = 0; i <= n_cuts; i++) {
        size_t to = i < n_cuts ? cuts[i] : len;
        assert_int_equal(ss_tool_stream_feed(ts, text + from, to - from), SS_OK);
        take(ts, r, (long)to, valid);
        from = to;
    }
    assert_int_equal(ss_tool_stream_finish(ts, &r->outcome), SS_OK);
    take(ts, r, -1, valid);
    ss_tool_outcome again;
    assert_int_equal(ss_tool_stream_finish(ts, &again), SS_OK);
    assert_int_equal(again, r->outcome);
    assert_int_equal(ss_tool_stream_feed(ts, "x", 1), SS_ERR_INVALID_ARG);

    ss_tool_calls want;
    assert_int_equal(ss_tool_calls_parse(fmt, forced, text, len, tools, max_calls, &want), SS_OK);
    ss_tool_calls_name(&want, fmt, "chatcmpl-00ff", 1);
    const ss_tool_calls *got = ss_tool_stream_calls(ts);
    assert_int_equal(got->n, want.n);
    if (want.n > 0) {
        assert_int_equal(r->outcome, SS_TOOL_OUTCOME_CALLS);
        assert_int_equal(r->n_calls, want.n);
        for (int32_t i = 0; i < want.n; i++) {
            assert_string_equal(r->id[i], want.calls[i].id);
            assert_string_equal(r->name[i], want.calls[i].name);
            assert_string_equal(r->args[i], want.calls[i].arguments);
            assert_string_equal(got->calls[i].arguments, want.calls[i].arguments);
        }
        assert_int_equal(strlen(r->content), want.content_len);
        assert_memory_equal(r->content, text, want.content_len);
    } else {
        assert_int_equal(r->outcome, r->n_calls > 0 ? SS_TOOL_OUTCOME_BROKEN : SS_TOOL_OUTCOME_TEXT);
        assert_string_equal(r->content, text);
    }
    ss_tool_calls_free(&want);
    ss_tool_stream_destroy(ts);
    cJSON_Delete(tools);
}

/* The text whole, a byte at a time (kept in *bytes), and cut in two at every byte: all check out, and give the same
 * content and the same calls (a text that is no calls is TEXT or BROKEN, by whether a call had begun at a cut). */
static void run_all(ss_tool_format fmt, int forced, const char *text, int32_t max_calls, run *bytes)
{
    static run r;
    size_t len = strlen(text);
    static size_t cuts[4096];
    assert_true(len < 4096);
    for (size_t i = 1; i < len; i++)
        cuts[i - 1] = i;
    run_cuts(fmt, forced, text, max_calls, cuts, len > 0 ? (int)len - 1 : 0, bytes);
    for (size_t k = 0; k < len; k++) { /* k = 0: whole */
        run_cuts(fmt, forced, text, max_calls, &k, k > 0, &r);
        assert_int_equal(r.outcome == SS_TOOL_OUTCOME_CALLS, bytes->outcome == SS_TOOL_OUTCOME_CALLS);
        assert_string_equal(r.content, bytes->content);
        if (r.outcome == SS_TOOL_OUTCOME_CALLS) {
            assert_int_equal(r.n_calls, bytes->n_calls);
            for (int i = 0; i < r.n_calls; i++)
                assert_string_equal(r.args[i], bytes->args[i]);
        }
    }
}

/* The arguments sent by the time the text up to (not including) byte `upto` was fed. */
static void args_by(const run *r, long upto, int32_t call, char *out, size_t cap)
{
    out[0] = '\0';
    for (int e = 0; e < r->n_ev; e++)
        if (r->kind[e] == SS_TOOL_EVENT_ARGS && r->index[e] == call && r->at[e] >= 0 && r->at[e] <= upto)
            strncat(out, r->piece[e], cap - strlen(out) - 1);
}

/* The text fed when call `call` was announced (-1: at the end; -2: never). */
static long call_at(const run *r, int32_t call)
{
    for (int e = 0; e < r->n_ev; e++)
        if (r->kind[e] == SS_TOOL_EVENT_CALL && r->index[e] == call)
            return r->at[e];
    return -2;
}

static long pos_after(const char *text, const char *needle)
{
    const char *p = strstr(text, needle);
    assert_non_null(p);
    return (long)(p - text + (long)strlen(needle));
}

/* Llama 3 JSON: a byte at a time, the exact events: the call once its name's closing quote is in, then each byte of the
 * arguments as it comes (white space between tokens dropped, as cJSON prints them), a number once it has ended. */
static void test_json_exact(void **state)
{
    (void)state;
    static run r;
    const char *t = "{\"name\": \"get_weather\", \"parameters\": {\"city\": \"Paris\", \"n\": 12}}";
    run_all(SS_TOOL_FORMAT_JSON, 0, t, 8, &r);
    assert_int_equal(r.outcome, SS_TOOL_OUTCOME_CALLS);
    assert_int_equal(r.late, 0);
    assert_int_equal(r.kind[0], SS_TOOL_EVENT_CALL);
    assert_int_equal(r.at[0], pos_after(t, "\"get_weather\""));
    assert_string_equal(r.id[0], "call_00ff_1_0");
    /* then one ARGS per byte of {"city":"Paris","n": , and "12}" once the '}' ends the number */
    const char *a = strstr(t, "{\"city\"");
    int e = 1;
    for (const char *q = a; *q != '1'; q++) {
        if (*q == ' ')
            continue;
        assert_int_equal(r.kind[e], SS_TOOL_EVENT_ARGS);
        assert_int_equal(r.at[e], (long)(q - t + 1));
        assert_int_equal(r.piece[e][0], *q);
        assert_int_equal(strlen(r.piece[e]), 1);
        e++;
    }
    assert_string_equal(r.piece[e], "12}");
    assert_int_equal(r.at[e], (long)strlen(t) - 1); /* before the call's own '}' */
    assert_int_equal(r.n_ev, e + 1);
    assert_string_equal(r.args[0], "{\"city\":\"Paris\",\"n\":12}");
    char so_far[256];
    args_by(&r, pos_after(t, "\"Par"), 0, so_far, sizeof so_far);
    assert_string_equal(so_far, "{\"city\":\"Par");
}

/* Arguments re-printed as cJSON prints them (the non-streamed "arguments"): escapes, \u and surrogate pairs, numbers
 * (1.0 -> 1, 1e2 -> 100), literals, nesting, raw control bytes and UTF-8; all sent before the end. */
static void test_reprint(void **state)
{
    (void)state;
    static run r;
    const char *t = "<|python_tag|> {\"name\":\"get_weather\",\"parameters\":{\"city\":\"Z\\u00fcrich \\ud83d\\ude00 "
                    "\\\"q\\\" \\/ \\t\\b\\u001f \xc3\xa9\t\", \"n\" : [1.0, -0, 1e2, 0.5e-1, 123456789012, true, "
                    "false, "
                    "null, {\"a\": {}}, [] ], \"k\\u0041\": \"x\"}}\n";
    run_all(SS_TOOL_FORMAT_JSON, 0, t, 8, &r);
    assert_int_equal(r.outcome, SS_TOOL_OUTCOME_CALLS);
    assert_int_equal(r.late, 0);
    assert_string_equal(r.args[0], "{\"city\":\"Z\xc3\xbcrich \xf0\x9f\x98\x80 \\\"q\\\" / \\t\\b\\u001f \xc3\xa9\\t\","
                                   "\"n\":[1,-0,100,0.05,123456789012,true,false,null,{\"a\":{}},[]],\"kA\":\"x\"}");
}

/* Hermes: content before the blocks (the white space before the tag held back, as the content leaves it out), then
 * each call; the open last block too. */
static void test_hermes(void **state)
{
    (void)state;
    static run r;
    const char *t = "Let me check.\n\n<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Oslo\"}}\n"
                    "</tool_call>\n<tool_call>\n{\"name\": \"now\", \"arguments\": {}}\n";
    run_all(SS_TOOL_FORMAT_HERMES, 0, t, 8, &r);
    assert_int_equal(r.outcome, SS_TOOL_OUTCOME_CALLS);
    assert_int_equal(r.late, 0);
    assert_string_equal(r.content, "Let me check.");
    assert_int_equal(r.kind[0], SS_TOOL_EVENT_CONTENT);
    assert_int_equal(r.n_calls, 2);
    assert_int_equal(call_at(&r, 1), pos_after(t, "\"now\""));
    assert_string_equal(r.args[0], "{\"city\":\"Oslo\"}");
    assert_string_equal(r.args[1], "{}");
    /* text that only looks like the tag's start goes out; a tail that may grow into it waits */
    run_all(SS_TOOL_FORMAT_HERMES, 0, "a < b <tool", 8, &r);
    assert_int_equal(r.outcome, SS_TOOL_OUTCOME_TEXT);
    long last_before_end = -2;
    for (int e = 0; e < r.n_ev; e++)
        if (r.at[e] >= 0)
            last_before_end = e;
    assert_true(last_before_end >= 0);
    char sent[64] = "";
    for (int e = 0; e <= last_before_end; e++)
        strncat(sent, r.piece[e], sizeof sent - strlen(sent) - 1);
    assert_string_equal(sent, "a < b");
    /* a multi-byte character is not cut */
    run_all(SS_TOOL_FORMAT_HERMES, 0, "caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80", 8, &r);
    assert_int_equal(r.outcome, SS_TOOL_OUTCOME_TEXT);
}

/* Mistral: the list after its marker (or without it), ids of 9 characters; a bare call; a citation is text. */
static void test_mistral(void **state)
{
    (void)state;
    static run r;
    const char *t = "[TOOL_CALLS] [{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Nice\"}}, "
                    "{\"name\": \"now\", "
                    "\"arguments\": {}}]";
    run_all(SS_TOOL_FORMAT_MISTRAL, 0, t, 8, &r);
    assert_int_equal(r.outcome, SS_TOOL_OUTCOME_CALLS);
    assert_int_equal(r.late, 0);
    assert_int_equal(r.n_calls, 2);
    assert_int_equal(strlen(r.id[0]), 9);
    assert_string_equal(r.args[0], "{\"city\":\"Nice\"}");
    run_all(SS_TOOL_FORMAT_MISTRAL, 0, " [{\"name\":\"now\",\"arguments\":{}}]\n", 8, &r);
    assert_int_equal(r.outcome, SS_TOOL_OUTCOME_CALLS);
    run_all(SS_TOOL_FORMAT_MISTRAL, 0, "{\"name\":\"now\",\"arguments\":{}}", 8, &r);
    assert_int_equal(r.outcome, SS_TOOL_OUTCOME_CALLS);
    run_all(SS_TOOL_FORMAT_MISTRAL, 0, "[TOOL_CALLS]<|python_tag|>{\"name\":\"now\"}", 8, &r);
    assert_int_equal(r.outcome, SS_TOOL_OUTCOME_CALLS);
    static const char *const texts[] = {"[1] A citation.", "[]", "[TOOL_CALLS] [{\"name\":\"rm\"}]", "Plain text",
                                        "[TOOL_CALLS] hello"};
    for (size_t i = 0; i < sizeof texts / sizeof texts[0]; i++) {
        run_all(SS_TOOL_FORMAT_MISTRAL, 0, texts[i], 8, &r);
        assert_int_equal(r.outcome, SS_TOOL_OUTCOME_TEXT);
    }
    /* plain text goes out as it comes */
    run_all(SS_TOOL_FORMAT_MISTRAL, 0, "Sure, here", 8, &r);
    assert_int_equal(r.kind[0], SS_TOOL_EVENT_CONTENT);
    assert_int_equal(r.at[0], 1);
}

/* Mistral v11+: [TOOL_CALLS]name[ARGS]{...} after any text; without the markers the whole answer is calls, known as
 * such once a tool's name is followed by '{' or [ARGS]; until then held back (while it may still be one). */
static void test_mistral_v11(void **state)
{
    (void)state;
    static run r;
    const char *t = "[TOOL_CALLS]get_weather[ARGS]{\"city\": \"Nice\"}[TOOL_CALLS]now[ARGS]{}";
    run_all(SS_TOOL_FORMAT_MISTRAL_V11, 0, t, 8, &r);
    assert_int_equal(r.outcome, SS_TOOL_OUTCOME_CALLS);
    assert_int_equal(r.late, 0);
    assert_int_equal(r.n_calls, 2);
    assert_int_equal(strlen(r.id[0]), 9);
    assert_int_equal(r.kind[0], SS_TOOL_EVENT_CALL);
    assert_int_equal(call_at(&r, 0), pos_after(t, "get_weather["));
    assert_int_equal(call_at(&r, 1), pos_after(t, "now["));
    assert_string_equal(r.args[0], "{\"city\":\"Nice\"}");
    assert_string_equal(r.args[1], "{}");
    char so_far[256];
    args_by(&r, pos_after(t, "\"Ni"), 0, so_far, sizeof so_far);
    assert_string_equal(so_far, "{\"city\":\"Ni");
    /* the markers left out: the call starts once its name is followed by [ARGS] or '{' */
    t = "get_weather[ARGS]{\"city\":\"Nice\"}\nnow{}";
    run_all(SS_TOOL_FORMAT_MISTRAL_V11, 0, t, 8, &r);
    assert_int_equal(r.outcome, SS_TOOL_OUTCOME_CALLS);
    assert_int_equal(r.late, 0);
    assert_int_equal(call_at(&r, 0), pos_after(t, "[ARGS]"));
    assert_int_equal(call_at(&r, 1), pos_after(t, "now{"));
    /* text first: it goes out as it comes (a lead that may still be a tool's name waits), the marker's white space and
     * a tail that may grow into the marker held back */
    t = "now is the time\n[TOOL_CALLS]now[CALL_ID]a1B2c3D4e[ARGS]{\"a\": {\"b\": [true, null]}}";
    run_all(SS_TOOL_FORMAT_MISTRAL_V11, 0, t, 8, &r);
    assert_int_equal(r.outcome, SS_TOOL_OUTCOME_CALLS);
    assert_int_equal(r.late, 0);
    assert_string_equal(r.content, "now is the time");
    assert_int_equal(r.kind[0], SS_TOOL_EVENT_CONTENT);
    assert_int_equal(r.at[0], 4);
    assert_string_equal(r.piece[0], "now"); /* (the space may come before the marker) */
    assert_string_equal(r.args[0], "{\"a\":{\"b\":[true,null]}}");
    run_all(SS_TOOL_FORMAT_MISTRAL_V11, 0, "Sure, here", 8, &r);
    assert_int_equal(r.kind[0], SS_TOOL_EVENT_CONTENT);
    assert_int_equal(r.at[0], 1);
    static const char *const texts[] = {"Plain text [TOOL", "now", "get_weather[AR", "[TOOL_CALLS]", "now {}",
                                        "[TOOL_CALLS][{\"name\":\"now\",\"arguments\":{}}]", "[TOOL_CALLS] hello"};
    for (size_t i = 0; i < sizeof texts / sizeof texts[0]; i++) {
        run_all(SS_TOOL_FORMAT_MISTRAL_V11, 0, texts[i], 8, &r);
        assert_int_equal(r.outcome, SS_TOOL_OUTCOME_TEXT);
    }
    run_all(SS_TOOL_FORMAT_MISTRAL_V11, 0,
            " [TOOL_CALLS] get_weather[ARGS] {\"city\":\"X\"}\n[TOOL_CALLS]now[ARGS]{}\n", 1, &r);
    assert_int_equal(r.outcome, SS_TOOL_OUTCOME_CALLS);
    assert_int_equal(r.n_calls, 1);
}

#define DS_V3(name, args) SS_DS_CALL_BEGIN "function" SS_DS_SEP name "\n```json\n" args "\n```" SS_DS_CALL_END
#define DS_V31(name, args) SS_DS_CALL_BEGIN name SS_DS_SEP args SS_DS_CALL_END

/* DeepSeek: content before the calls' marker (its white space and a tail that may grow into it held back), then V3's
 * or V3.1's calls, each starting once its name is in. */
static void test_deepseek(void **state)
{
    (void)state;
    static run r;
    const char *t = "Sure.\n" SS_DS_CALLS_BEGIN DS_V3("get_weather", "{\"city\": \"Paris\"}") "\n" DS_V3("now", "{}")
        SS_DS_CALLS_END;
    run_all(SS_TOOL_FORMAT_DEEPSEEK, 0, t, 8, &r);
    assert_int_equal(r.outcome, SS_TOOL_OUTCOME_CALLS);
    assert_int_equal(r.late, 0);
    assert_string_equal(r.content, "Sure.");
    assert_int_equal(r.n_calls, 2);
    assert_string_equal(r.id[1], "call_00ff_1_1");
    assert_int_equal(call_at(&r, 0), pos_after(t, "get_weather\n"));
    assert_string_equal(r.args[0], "{\"city\":\"Paris\"}");
    assert_string_equal(r.args[1], "{}");
    t = "<think>\nhmm\n</think>\n\n" SS_DS_CALLS_BEGIN DS_V31("get_weather", "{\"city\":\"Paris\"}")
        DS_V31("now", "{}") SS_DS_CALLS_END;
    run_all(SS_TOOL_FORMAT_DEEPSEEK, 0, t, 8, &r);
    assert_int_equal(r.outcome, SS_TOOL_OUTCOME_CALLS);
    assert_int_equal(r.late, 0);
    assert_string_equal(r.content, "<think>\nhmm\n</think>");
    assert_int_equal(call_at(&r, 0), pos_after(t, SS_DS_SEP "{"));
    assert_string_equal(r.args[0], "{\"city\":\"Paris\"}");
    run_all(SS_TOOL_FORMAT_DEEPSEEK, 0,
            SS_DS_CALLS_BEGIN DS_V31("now", " {}") "\n" DS_V3("get_weather", "{}") "\n" SS_DS_CALLS_END "\n", 8, &r);
    assert_int_equal(r.outcome, SS_TOOL_OUTCOME_CALLS);
    assert_int_equal(r.n_calls, 2);
    run_all(SS_TOOL_FORMAT_DEEPSEEK, 0,
            SS_DS_CALLS_BEGIN SS_DS_CALL_BEGIN "function" SS_DS_SEP " now ```json{} ```" SS_DS_CALL_END, 8, &r);
    assert_int_equal(r.outcome, SS_TOOL_OUTCOME_CALLS);
    run_all(SS_TOOL_FORMAT_DEEPSEEK, 0, SS_DS_CALLS_BEGIN DS_V3("now", "{}") DS_V3("now", "{}"), 1, &r);
    assert_int_equal(r.outcome, SS_TOOL_OUTCOME_CALLS);
    assert_int_equal(r.n_calls, 1);
    /* a tail that may be the marker's start waits; the rest goes out as it comes */
    t = "Hi \xef\xbd\x9c <" SS_DS_BAR "tool";
    run_all(SS_TOOL_FORMAT_DEEPSEEK, 0, t, 8, &r);
    assert_int_equal(r.outcome, SS_TOOL_OUTCOME_TEXT);
    char sent[64] = "";
    for (int e = 0; e < r.n_ev; e++)
        if (r.at[e] >= 0)
            strncat(sent, r.piece[e], sizeof sent - strlen(sent) - 1);
    assert_string_equal(sent, "Hi \xef\xbd\x9c");
    static const char *const texts[] = {SS_DS_CALLS_BEGIN SS_DS_CALLS_END, SS_DS_CALLS_BEGIN DS_V31("now", "[1]"),
                                        SS_DS_CALLS_BEGIN DS_V31("function", "{}"),
                                        SS_DS_CALLS_BEGIN SS_DS_CALL_BEGIN "tool" SS_DS_SEP "now\n```json\n{}\n```"};
    for (size_t i = 0; i < sizeof texts / sizeof texts[0]; i++) {
        run_all(SS_TOOL_FORMAT_DEEPSEEK, 0, texts[i], 8, &r);
        assert_int_equal(r.outcome, SS_TOOL_OUTCOME_TEXT);
    }
}

/* Forced calls (any format: the bare object of the JSON-mode grammar) stream the same way. */
static void test_forced(void **state)
{
    (void)state;
    static run r;
    static const ss_tool_format fmts[] = {SS_TOOL_FORMAT_JSON, SS_TOOL_FORMAT_HERMES, SS_TOOL_FORMAT_MISTRAL,
                                          SS_TOOL_FORMAT_MISTRAL_V11, SS_TOOL_FORMAT_DEEPSEEK};
    for (int i = 0; i < 5; i++) {
        run_all(fmts[i], 1, "{\"name\":\"get_weather\",\"arguments\":{\"city\":\"Rome\"}}", 1, &r);
        assert_int_equal(r.outcome, SS_TOOL_OUTCOME_CALLS);
        assert_int_equal(r.late, 0);
        assert_string_equal(r.args[0], "{\"city\":\"Rome\"}");
    }
}

/* Several calls; parallel_tool_calls false keeps (and sends) the first only; other shapes of a call. */
static void test_calls_shapes(void **state)
{
    (void)state;
    static run r;
    run_all(SS_TOOL_FORMAT_JSON, 0,
            "<|python_tag|>{\"name\":\"get_weather\",\"arguments\":\"{\\\"city\\\": \\\"Rome\\\"}\"}; "
            "{\"name\":\"now\"}",
            8, &r);
    assert_int_equal(r.outcome, SS_TOOL_OUTCOME_CALLS);
    assert_int_equal(r.late, 0);
    assert_string_equal(r.args[0], "{\"city\": \"Rome\"}"); /* a string holding the object: as it is */
    assert_string_equal(r.args[1], "{}");
    run_all(SS_TOOL_FORMAT_JSON, 0, "{\"name\":\"now\"};{\"name\":\"get_weather\",\"parameters\":{\"city\":\"X\"}}", 1,
            &r);
    assert_int_equal(r.outcome, SS_TOOL_OUTCOME_CALLS);
    assert_int_equal(r.n_calls, 1);
    /* the name after the arguments: the call starts when the name is in, its arguments right after */
    const char *t = "{\"parameters\":{\"city\":\"Oslo\"},\"name\":\"get_weather\"}";
    run_all(SS_TOOL_FORMAT_JSON, 0, t, 8, &r);
    assert_int_equal(call_at(&r, 0), pos_after(t, "\"get_weather\""));
    assert_int_equal(r.late, 0);
    /* the first of "parameters" and "arguments"; arguments null */
    run_all(SS_TOOL_FORMAT_JSON, 0,
            "{\"name\":\"get_weather\",\"parameters\":{\"city\":\"A\"},\"arguments\":{\"city\":\"B\"},"
            "\"name\":\"now\"}",
            8, &r);
    assert_string_equal(r.args[0], "{\"city\":\"A\"}");
    assert_string_equal(r.name[0], "get_weather");
    run_all(SS_TOOL_FORMAT_HERMES, 0, "<tool_call>{\"name\":\"now\",\"arguments\":null}", 8, &r);
    assert_string_equal(r.args[0], "{}");
    assert_int_equal(r.late, 0);
    /* what the reader does not follow (a NUL in a string, nesting deeper than it reads, a bad \u digit): nothing
     * more until the end, where the rest is sent, still exact */
    char deep[512] = "{\"name\":\"now\",\"arguments\":{\"a\":";
    for (int i = 0; i < 80; i++)
        strcat(deep, "[");
    for (int i = 0; i < 80; i++)
        strcat(deep, "]");
    strcat(deep, "}}");
    const char *const odd[] = {"{\"name\":\"now\",\"arguments\":{\"a\":\"x\\u0000y\",\"b\":1}}",
                                      "{\"name\":\"now\",\"arguments\":{\"a\":\"\\u00zz\"}}", deep};
    for (int i = 0; i < 3; i++) {
        run_all(SS_TOOL_FORMAT_JSON, 0, odd[i], 8, &r);
        assert_int_equal(r.outcome, SS_TOOL_OUTCOME_CALLS);
    }
}

/* A call that had begun but is not one after all: what was sent stays, the text follows as content, the outcome is
 * BROKEN (finish_reason: the model's). A call that never began is plain text (TEXT). */
static void test_malformed(void **state)
{
    (void)state;
    static run r;
    static const struct {
        ss_tool_format fmt;
        const char *text;
        ss_tool_outcome outcome;
        const char *args; /* sent, BROKEN */
    } cases[] = {
        {SS_TOOL_FORMAT_JSON, "{\"name\":\"now\",\"parameters\":{\"a\":1}} and more", SS_TOOL_OUTCOME_BROKEN,
         "{\"a\":1}"},
        {SS_TOOL_FORMAT_JSON, "{\"name\":\"get_weather\",\"parameters\":{\"city\":\"Par", SS_TOOL_OUTCOME_BROKEN,
         "{\"city\":\"Par"}, /* cut short by max_tokens */
        {SS_TOOL_FORMAT_JSON, "{\"name\":\"now\",\"arguments\":[1]}", SS_TOOL_OUTCOME_BROKEN, ""},
        {SS_TOOL_FORMAT_JSON, "{\"name\":\"now\",\"arguments\":\"\"}", SS_TOOL_OUTCOME_BROKEN, ""},
        {SS_TOOL_FORMAT_JSON, "{\"name\":\"now\",\"arguments\":\"{} x\"}", SS_TOOL_OUTCOME_BROKEN, ""},
        {SS_TOOL_FORMAT_JSON, "{\"name\":\"now\",\"arguments\":{\"a\":tru}}", SS_TOOL_OUTCOME_BROKEN, "{\"a\":"},
        {SS_TOOL_FORMAT_HERMES, "Hi <tool_call>{\"name\":\"now\",\"arguments\":{}}</tool_call> bye",
         SS_TOOL_OUTCOME_BROKEN, "{}"},
        {SS_TOOL_FORMAT_HERMES, "<tool_call>{\"name\":\"now\"}</tool_call><tool_call>{\"name\":\"rm\"}</tool_call>",
         SS_TOOL_OUTCOME_BROKEN, "{}"},
        {SS_TOOL_FORMAT_MISTRAL, "[{\"name\":\"now\",\"arguments\":{}}, 3]", SS_TOOL_OUTCOME_BROKEN, "{}"},
        {SS_TOOL_FORMAT_JSON, "{\"name\":\"rm_rf\",\"parameters\":{}}", SS_TOOL_OUTCOME_TEXT, NULL},
        {SS_TOOL_FORMAT_JSON, "{\"name\":\"now\"", SS_TOOL_OUTCOME_BROKEN, ""},
        {SS_TOOL_FORMAT_JSON, "{\"nam\":\"now\",\"parameters\":{}}", SS_TOOL_OUTCOME_TEXT, NULL},
        {SS_TOOL_FORMAT_HERMES, "<tool_call>not json</tool_call>", SS_TOOL_OUTCOME_TEXT, NULL},
        {SS_TOOL_FORMAT_JSON, "The weather is fine.", SS_TOOL_OUTCOME_TEXT, NULL},
        {SS_TOOL_FORMAT_JSON, "", SS_TOOL_OUTCOME_TEXT, NULL},
        {SS_TOOL_FORMAT_MISTRAL_V11, "[TOOL_CALLS]get_weather[ARGS]{\"city\":\"Par", SS_TOOL_OUTCOME_BROKEN,
         "{\"city\":\"Par"},
        {SS_TOOL_FORMAT_MISTRAL_V11, "[TOOL_CALLS]now[ARGS]{} and more", SS_TOOL_OUTCOME_BROKEN, "{}"},
        {SS_TOOL_FORMAT_MISTRAL_V11, "now{\"a\":tru}", SS_TOOL_OUTCOME_BROKEN, "{\"a\":"},
        {SS_TOOL_FORMAT_MISTRAL_V11, "now{bad}[TOOL_CALLS]now[ARGS]{}", SS_TOOL_OUTCOME_BROKEN, "{"},
        {SS_TOOL_FORMAT_MISTRAL_V11, "[TOOL_CALLS]now[ARGS][1]", SS_TOOL_OUTCOME_BROKEN, ""},
        {SS_TOOL_FORMAT_MISTRAL_V11, "[TOOL_CALLS]rm[ARGS]{}", SS_TOOL_OUTCOME_TEXT, NULL},
        {SS_TOOL_FORMAT_MISTRAL_V11, "Hi [TOOL_CALLS]rm_rf{}", SS_TOOL_OUTCOME_TEXT, NULL},
        {SS_TOOL_FORMAT_DEEPSEEK, SS_DS_CALLS_BEGIN SS_DS_CALL_BEGIN "function" SS_DS_SEP "now\n```json\n{}\n```",
         SS_TOOL_OUTCOME_BROKEN, "{}"}, /* cut short before its end marker */
        {SS_TOOL_FORMAT_DEEPSEEK, "A " SS_DS_CALLS_BEGIN DS_V3("now", "{}") SS_DS_CALLS_END " and more",
         SS_TOOL_OUTCOME_BROKEN, "{}"},
        {SS_TOOL_FORMAT_DEEPSEEK, SS_DS_CALLS_BEGIN SS_DS_CALL_BEGIN "get_weather" SS_DS_SEP "{\"city\": \"Pa",
         SS_TOOL_OUTCOME_BROKEN, "{\"city\":\"Pa"},
        {SS_TOOL_FORMAT_DEEPSEEK, SS_DS_CALLS_BEGIN DS_V3("rm", "{}"), SS_TOOL_OUTCOME_TEXT, NULL},
        {SS_TOOL_FORMAT_DEEPSEEK, SS_DS_CALLS_BEGIN SS_DS_CALL_BEGIN "function" SS_DS_SEP "now\n{}" SS_DS_CALL_END,
         SS_TOOL_OUTCOME_BROKEN, ""},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        run_all(cases[i].fmt, 0, cases[i].text, 8, &r);
        assert_int_equal(r.outcome, cases[i].outcome);
        assert_string_equal(r.content, cases[i].text);
        if (cases[i].args) { /* the call began as the text came, not at the end */
            assert_true(call_at(&r, 0) >= 0);
            assert_string_equal(r.args[0], cases[i].args);
        } else {
            assert_int_equal(r.n_calls, 0);
        }
    }
}

/* Out of memory at every allocation in turn while t streams in format fmt: SS_ERR_NOMEM, nothing leaks (ASan); and
 * once there is memory enough, the calls. */
static void alloc_failures(cJSON *tools, ss_tool_format fmt, const char *t)
{
    int ok = 0;
    for (long k = 0; k < 60; k++) {
        ss_tool_stream_params p = ss_tool_stream_default_params();
        p.fmt = fmt;
        p.tools = tools;
        ss_tool_stream *ts = NULL;
        ss_alloc_fail_after(k);
        ss_status st = ss_tool_stream_create(&p, &ts);
        for (size_t i = 0; st == SS_OK && i < strlen(t); i += 5) {
            st = ss_tool_stream_feed(ts, t + i, strlen(t) - i < 5 ? strlen(t) - i : 5);
            ss_tool_event ev;
            while (st == SS_OK && ss_tool_stream_next(ts, &ev))
                ;
        }
        ss_tool_outcome out = SS_TOOL_OUTCOME_OPEN;
        if (st == SS_OK)
            st = ss_tool_stream_finish(ts, &out);
        ss_alloc_fail_after(-1);
        assert_true(st == SS_OK || st == SS_ERR_NOMEM);
        if (st == SS_OK) {
            assert_int_equal(out, SS_TOOL_OUTCOME_CALLS);
            ok = 1;
        }
        ss_tool_stream_destroy(ts);
    }
    assert_true(ok);
}

/* Out of memory anywhere: SS_ERR_NOMEM, nothing leaks (ASan); a text past max_text: SS_ERR_CAPACITY. */
static void test_alloc_failures(void **state)
{
    (void)state;
    cJSON *tools = cJSON_Parse(tools_json);
    alloc_failures(tools, SS_TOOL_FORMAT_HERMES,
                   "Hi\n<tool_call>{\"name\":\"get_weather\",\"arguments\":{\"city\":\"Oslo\",\"n\":[1,2]}}"
                   "</tool_call><tool_call>{\"name\":\"now\"}");
    alloc_failures(tools, SS_TOOL_FORMAT_MISTRAL_V11,
                   "Hi\n[TOOL_CALLS]get_weather[ARGS]{\"city\":\"Oslo\",\"n\":[1,2]}now{}");
    alloc_failures(tools, SS_TOOL_FORMAT_DEEPSEEK,
                   "Hi\n" SS_DS_CALLS_BEGIN DS_V3("get_weather", "{\"city\":\"Oslo\",\"n\":[1,2]}")
                       DS_V31("now", "{}"));
    ss_tool_stream_params p = ss_tool_stream_default_params();
    p.fmt = SS_TOOL_FORMAT_JSON;
    p.tools = tools;
    p.max_text = 8;
    ss_tool_stream *ts = NULL;
    assert_int_equal(ss_tool_stream_create(&p, &ts), SS_OK);
    assert_int_equal(ss_tool_stream_feed(ts, "{\"name\"", 7), SS_OK);
    assert_int_equal(ss_tool_stream_feed(ts, ":\"now\"}", 7), SS_ERR_CAPACITY);
    ss_tool_stream_destroy(ts);
    cJSON_Delete(tools);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_json_exact),   cmocka_unit_test(test_reprint),     cmocka_unit_test(test_hermes),
        cmocka_unit_test(test_mistral),      cmocka_unit_test(test_forced),      cmocka_unit_test(test_calls_shapes),
        cmocka_unit_test(test_malformed),    cmocka_unit_test(test_alloc_failures), cmocka_unit_test(test_mistral_v11),
        cmocka_unit_test(test_deepseek),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

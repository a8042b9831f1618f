/* test_bench.c — `shardserve bench` pieces: exact percentiles, the incremental SSE parser (whole, byte
 * by byte, random splits), chunk and usage parsing, request bodies, seeded workloads, reports, and the
 * runner's error classification against a closed port. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "bench/bench_openai.h"
#include "bench/bench_report.h"
#include "bench/bench_run.h"
#include "bench/bench_sse.h"
#include "bench/bench_stats.h"
#include "bench/bench_workload.h"
#include "core/alloc.h"

#define NEAR(a, b) assert_true(fabs((a) - (b)) < 1e-9)

/* ---- stats ---- */

static void test_percentile_known(void **state)
{
    (void)state;
    const double a[] = {1, 2, 3, 4};
    double v;
    assert_int_equal(ss_bench_percentile(a, 4, 50, &v), SS_OK);
    NEAR(v, 2.5);
    assert_int_equal(ss_bench_percentile(a, 4, 90, &v), SS_OK);
    NEAR(v, 3.7);
    assert_int_equal(ss_bench_percentile(a, 4, 99, &v), SS_OK);
    NEAR(v, 3.97);
    assert_int_equal(ss_bench_percentile(a, 4, 0, &v), SS_OK);
    NEAR(v, 1.0);
    assert_int_equal(ss_bench_percentile(a, 4, 100, &v), SS_OK);
    NEAR(v, 4.0);
    const double one[] = {7.5};
    assert_int_equal(ss_bench_percentile(one, 1, 99, &v), SS_OK);
    NEAR(v, 7.5);
    assert_int_equal(ss_bench_percentile(a, 0, 50, &v), SS_ERR_INVALID_ARG);
    assert_int_equal(ss_bench_percentile(a, 4, 100.5, &v), SS_ERR_INVALID_ARG);
    assert_int_equal(ss_bench_percentile(a, 4, -1, &v), SS_ERR_INVALID_ARG);
    assert_int_equal(ss_bench_percentile(a, 4, NAN, &v), SS_ERR_INVALID_ARG);
}

static void test_summarize(void **state)
{
    (void)state;
    double v[] = {5, 1, 4, 2, 3};
    ss_bench_summary s;
    ss_bench_summarize(v, 5, &s);
    assert_int_equal(s.n, 5);
    NEAR(s.mean, 3.0);
    NEAR(s.stddev, sqrt(2.0));
    NEAR(s.min, 1.0);
    NEAR(s.max, 5.0);
    NEAR(s.p50, 3.0);
    NEAR(s.p90, 4.6);
    NEAR(s.p99, 4.96);
    for (int i = 0; i < 5; i++) /* sorted in place */
        NEAR(v[i], (double)(i + 1));
    /* 1..100: numpy.percentile gives 50.5, 90.1, 99.01 */
    double h[100];
    for (int i = 0; i < 100; i++)
        h[i] = (double)(100 - i);
    ss_bench_summarize(h, 100, &s);
    NEAR(s.p50, 50.5);
    NEAR(s.p90, 90.1);
    NEAR(s.p99, 99.01);
    ss_bench_summarize(NULL, 0, &s);
    assert_int_equal(s.n, 0);
    NEAR(s.p99, 0.0);
}

static void test_samples(void **state)
{
    (void)state;
    ss_bench_samples s = {0};
    s.max = 100;
    for (int i = 0; i < 100; i++)
        assert_int_equal(ss_bench_samples_push(&s, i), SS_OK);
    assert_int_equal(ss_bench_samples_push(&s, 1), SS_ERR_CAPACITY);
    assert_int_equal(s.n, 100);
    NEAR(s.v[99], 99.0);
    ss_bench_samples_free(&s);
    ss_bench_samples t = {0};
    ss_alloc_fail_after(0);
    assert_int_equal(ss_bench_samples_push(&t, 1), SS_ERR_NOMEM);
    ss_alloc_fail_after(-1);
    ss_bench_samples_free(&t);
}

/* ---- SSE ---- */

typedef struct sse_log {
    char text[4096]; /* "event|data;" per event */
    size_t len;
    int n;
    int fail_at; /* return SS_ERR_CANCELLED on this event (1-based), 0 = never */
} sse_log;

static ss_status sse_collect(void *user, const char *event, const char *data, size_t len)
{
    sse_log *l = user;
    l->n++;
    assert_int_equal(strlen(data), len); /* NUL-terminated at len */
    l->len += (size_t)snprintf(l->text + l->len, sizeof l->text - l->len, "%s|%s;", event, data);
    return l->n == l->fail_at ? SS_ERR_CANCELLED : SS_OK;
}

static const char sse_stream[] = ": comment line\r\n"
                                 "data: {\"a\":1}\n\n"
                                 "data:nospace\r\n\r\n"
                                 "event: custom\n"
                                 "id: 7\n"
                                 "retry: 100\n"
                                 "data: line1\r\n" /* one terminator, not a line and a blank line */
                                 "data: line2\n\n"
                                 "event: lonely\n\n"  /* no data: not dispatched, name forgotten */
                                 "data\n\n"           /* field without colon: one empty data line */
                                 "data:  two spaces\r\r"
                                 "unknown: x\n"
                                 "data: [DONE]\n\n"
                                 "data: partial";     /* unfinished: never dispatched */

static const char sse_expect[] = "message|{\"a\":1};message|nospace;custom|line1\nline2;message|;message| two "
                                 "spaces;message|[DONE];";

static void sse_feed_split(const size_t *cuts, size_t n_cuts, sse_log *log)
{
    ss_sse_params sp;
    ss_sse_default_params(&sp);
    ss_sse_parser *p = NULL;
    ss_err e;
    assert_int_equal(ss_sse_parser_create(&sp, &p, &e), SS_OK);
    size_t total = sizeof sse_stream - 1, at = 0;
    for (size_t i = 0; i <= n_cuts; i++) {
        size_t end = i < n_cuts ? cuts[i] : total;
        assert_int_equal(ss_sse_parser_feed(p, sse_stream + at, end - at, sse_collect, log, &e), SS_OK);
        at = end;
    }
    assert_true(ss_sse_parser_pending(p));
    ss_sse_parser_reset(p);
    assert_false(ss_sse_parser_pending(p));
    ss_sse_parser_destroy(p);
}

static void test_sse_whole_and_bytewise(void **state)
{
    (void)state;
    sse_log whole = {0};
    sse_feed_split(NULL, 0, &whole);
    assert_string_equal(whole.text, sse_expect);
    assert_int_equal(whole.n, 6);

    size_t cuts[sizeof sse_stream];
    for (size_t i = 0; i < sizeof sse_stream - 2; i++)
        cuts[i] = i + 1;
    sse_log bytes = {0};
    sse_feed_split(cuts, sizeof sse_stream - 2, &bytes);
    assert_string_equal(bytes.text, sse_expect);
}

static void test_sse_random_splits(void **state)
{
    (void)state;
    ss_bench_rng r;
    ss_bench_rng_seed(&r, 42);
    size_t total = sizeof sse_stream - 1;
    for (int iter = 0; iter < 300; iter++) {
        size_t cuts[16], n = 0, at = 0;
        size_t want = (size_t)ss_bench_rng_range(&r, 1, 16);
        while (n < want) {
            at += (size_t)ss_bench_rng_range(&r, 0, 24); /* empty feeds too */
            if (at >= total)
                break;
            cuts[n++] = at;
        }
        sse_log log = {0};
        sse_feed_split(cuts, n, &log);
        assert_string_equal(log.text, sse_expect);
    }
}

static void test_sse_crlf_split_across_feeds(void **state)
{
    (void)state;
    ss_sse_params sp;
    ss_sse_default_params(&sp);
    ss_sse_parser *p = NULL;
    ss_err e;
    assert_int_equal(ss_sse_parser_create(&sp, &p, &e), SS_OK);
    sse_log log = {0};
    /* "\r" | "\n" must be one terminator, else "\r\n\r\n" would dispatch an extra blank line. */
    const char *parts[] = {"data: x\r", "\n\r", "\ndata: y\r", "\n", "\r", "\n"};
    for (size_t i = 0; i < 6; i++)
        assert_int_equal(ss_sse_parser_feed(p, parts[i], strlen(parts[i]), sse_collect, &log, &e), SS_OK);
    assert_string_equal(log.text, "message|x;message|y;");
    assert_false(ss_sse_parser_pending(p));
    const char *multi[] = {"data: a\r", "\ndata: b\r", "\n", "\r\n"};
    sse_log log2 = {0};
    for (size_t i = 0; i < 4; i++)
        assert_int_equal(ss_sse_parser_feed(p, multi[i], strlen(multi[i]), sse_collect, &log2, &e), SS_OK);
    assert_string_equal(log2.text, "message|a\nb;");
    ss_sse_parser_destroy(p);
}

static void test_sse_limits_and_errors(void **state)
{
    (void)state;
    ss_sse_params sp = {.max_event_bytes = 16};
    ss_sse_parser *p = NULL;
    ss_err e;
    assert_int_equal(ss_sse_parser_create(&sp, &p, &e), SS_OK);
    sse_log log = {0};
    const char ok[] = "data: 0123456789\n\n"; /* 10 bytes of data + '\n' fits in 16 */
    assert_int_equal(ss_sse_parser_feed(p, ok, sizeof ok - 1, sse_collect, &log, &e), SS_OK);
    assert_int_equal(log.n, 1);
    const char big[] = "data: 0123456789abcdefghij\n\n";
    assert_int_equal(ss_sse_parser_feed(p, big, sizeof big - 1, sse_collect, &log, &e), SS_ERR_CAPACITY);
    assert_non_null(strstr(e.msg, "16 bytes"));
    ss_sse_parser_reset(p);
    /* several data lines that together outgrow the cap */
    const char many[] = "data: 0123456\ndata: 0123456\n\n";
    assert_int_equal(ss_sse_parser_feed(p, many, sizeof many - 1, sse_collect, &log, &e), SS_ERR_CAPACITY);
    ss_sse_parser_reset(p);
    const char longname[] = "event: aaaaaaaaaaaaaa\n"; /* fits the cap, so the line is checked */
    assert_int_equal(ss_sse_parser_feed(p, longname, 9, sse_collect, &log, &e), SS_OK);
    ss_sse_parser_destroy(p);

    /* callback failure stops the feed and is returned */
    ss_sse_default_params(&sp);
    assert_int_equal(ss_sse_parser_create(&sp, &p, &e), SS_OK);
    sse_log stop = {.fail_at = 2};
    const char three[] = "data: a\n\ndata: b\n\ndata: c\n\n";
    assert_int_equal(ss_sse_parser_feed(p, three, sizeof three - 1, sse_collect, &stop, &e), SS_ERR_CANCELLED);
    assert_int_equal(stop.n, 2);
    ss_sse_parser_destroy(p);

    sp.max_event_bytes = 0;
    assert_int_equal(ss_sse_parser_create(&sp, &p, &e), SS_ERR_INVALID_ARG);
    assert_null(p);
}

static void test_sse_event_name_too_long(void **state)
{
    (void)state;
    ss_sse_params sp;
    ss_sse_default_params(&sp);
    ss_sse_parser *p = NULL;
    ss_err e;
    assert_int_equal(ss_sse_parser_create(&sp, &p, &e), SS_OK);
    char line[128];
    memset(line, 'x', sizeof line);
    memcpy(line, "event: ", 7);
    line[sizeof line - 1] = '\n';
    sse_log log = {0};
    assert_int_equal(ss_sse_parser_feed(p, line, sizeof line, sse_collect, &log, &e), SS_ERR_FORMAT);
    ss_sse_parser_destroy(p);
}

/* ---- chunks ---- */

static ss_status chunk(const char *s, ss_bench_chunk *c, ss_err *e)
{
    return ss_bench_chunk_parse(s, strlen(s), c, e);
}

static void test_chunk_parse(void **state)
{
    (void)state;
    ss_bench_chunk c;
    ss_err e;
    assert_int_equal(chunk("{\"id\":\"x\",\"object\":\"text_completion\",\"choices\":[{\"index\":0,\"text\":\"he\","
                           "\"logprobs\":null,\"finish_reason\":null}],\"usage\":null}",
                           &c, &e),
                     SS_OK);
    assert_true(c.has_choice);
    assert_int_equal(c.text_len, 2);
    assert_false(c.has_usage);
    assert_string_equal(c.finish_reason, "");
    assert_int_equal(c.prompt_tokens, -1);

    assert_int_equal(chunk("{\"choices\":[],\"usage\":{\"prompt_tokens\":7,\"completion_tokens\":5,"
                           "\"total_tokens\":12}}",
                           &c, &e),
                     SS_OK);
    assert_false(c.has_choice);
    assert_true(c.has_usage);
    assert_int_equal(c.prompt_tokens, 7);
    assert_int_equal(c.completion_tokens, 5);

    assert_int_equal(chunk("{\"choices\":[{\"text\":\"\",\"finish_reason\":\"length\"}],"
                           "\"usage\":{\"completion_tokens\":3}}",
                           &c, &e),
                     SS_OK);
    assert_true(c.has_choice);
    assert_int_equal(c.text_len, 0);
    assert_string_equal(c.finish_reason, "length");
    assert_int_equal(c.completion_tokens, 3);
    assert_int_equal(c.prompt_tokens, -1);

    assert_int_equal(chunk("{\"choices\":[{\"delta\":{\"content\":\"abc\"}}]}", &c, &e), SS_OK);
    assert_true(c.has_choice);
    assert_int_equal(c.text_len, 3);

    assert_int_equal(ss_bench_chunk_parse("[DONE]", 6, &c, &e), SS_OK);
    assert_true(c.done);

    assert_int_equal(chunk("{\"error\":{\"message\":\"boom\",\"type\":\"x\"}}", &c, &e), SS_OK);
    assert_true(c.is_error);
    assert_string_equal(c.error, "boom");
    assert_int_equal(chunk("{\"error\":\"flat\"}", &c, &e), SS_OK);
    assert_string_equal(c.error, "flat");
}

static void test_chunk_malformed(void **state)
{
    (void)state;
    ss_bench_chunk c;
    ss_err e;
    const char *bad[] = {
        "",
        "{\"choices\":[",
        "[1,2]",
        "\"str\"",
        "{\"choices\":{}}",
        "{\"choices\":[1]}",
        "{\"choices\":[{\"text\":5}]}",
        "{\"usage\":[]}",
        "{\"usage\":{\"completion_tokens\":-1}}",
        "{\"usage\":{\"completion_tokens\":1.5}}",
        "{\"usage\":{\"prompt_tokens\":\"7\"}}",
        "[DONE] ",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        e.msg[0] = '\0';
        assert_int_equal(chunk(bad[i], &c, &e), SS_ERR_FORMAT);
        assert_true(strncmp(e.msg, "chunk: ", 7) == 0);
    }
    /* length is honoured: the parser never reads past len */
    assert_int_equal(ss_bench_chunk_parse("[DONE]xyz", 6, &c, &e), SS_OK);
    assert_true(c.done);
}

/* ---- request bodies ---- */

static void test_body_build(void **state)
{
    (void)state;
    const int64_t ids[] = {1, 2, 128000};
    ss_bench_body_params bp = {.model = "m", .prompt_ids = ids, .n_prompt_ids = 3, .max_tokens = 4, .ignore_eos = 1};
    char *s = NULL;
    size_t n = 0;
    ss_err e;
    assert_int_equal(ss_bench_body_build(&bp, &s, &n, &e), SS_OK);
    assert_string_equal(s, "{\"model\":\"m\",\"prompt\":[1,2,128000],\"max_tokens\":4,\"temperature\":0,"
                           "\"stream\":true,\"stream_options\":{\"include_usage\":true},\"ignore_eos\":true}");
    assert_int_equal(n, strlen(s));
    ss_free(s);
    bp.prompt_text = "say \"hi\"\n";
    bp.ignore_eos = 0;
    bp.temperature = 0.5;
    assert_int_equal(ss_bench_body_build(&bp, &s, &n, &e), SS_OK);
    assert_string_equal(s, "{\"model\":\"m\",\"prompt\":\"say \\\"hi\\\"\\n\",\"max_tokens\":4,\"temperature\":0.5,"
                           "\"stream\":true,\"stream_options\":{\"include_usage\":true}}");
    ss_free(s);
    /* --extra-body: new fields appended, a field of the same name replaced */
    bp.extra_body = "{\"response_format\":{\"type\":\"json_object\"},\"temperature\":1,\"stop\":[\"}\"]}";
    assert_int_equal(ss_bench_body_build(&bp, &s, &n, &e), SS_OK);
    assert_string_equal(s, "{\"model\":\"m\",\"prompt\":\"say \\\"hi\\\"\\n\",\"max_tokens\":4,"
                           "\"stream\":true,\"stream_options\":{\"include_usage\":true},"
                           "\"response_format\":{\"type\":\"json_object\"},\"temperature\":1,\"stop\":[\"}\"]}");
    ss_free(s);
    assert_int_equal(ss_bench_extra_body_check("{}", &e), SS_OK);
    assert_int_equal(ss_bench_extra_body_check("[1]", &e), SS_ERR_INVALID_ARG);
    assert_string_equal(e.msg, "--extra-body: not a JSON object");
    assert_int_equal(ss_bench_extra_body_check("{\"a\":", &e), SS_ERR_INVALID_ARG);
    assert_string_equal(e.msg, "--extra-body: not valid JSON");
    assert_int_equal(ss_bench_extra_body_check("{\"seed\":1,\"stream\":false}", &e), SS_ERR_INVALID_ARG);
    assert_string_equal(e.msg, "--extra-body: 'stream' is bench's own (it measures streams)");
    bp.extra_body = "\"x\"";
    assert_int_equal(ss_bench_body_build(&bp, &s, &n, &e), SS_ERR_INVALID_ARG);
    assert_null(s);
    bp.extra_body = NULL;
    bp.model = NULL;
    assert_int_equal(ss_bench_body_build(&bp, &s, &n, &e), SS_ERR_INVALID_ARG);
    assert_null(s);
}

/* ---- workload ---- */

static void test_rng_range(void **state)
{
    (void)state;
    ss_bench_rng a, b;
    ss_bench_rng_seed(&a, 7);
    ss_bench_rng_seed(&b, 7);
    for (int i = 0; i < 100; i++)
        assert_true(ss_bench_rng_next(&a) == ss_bench_rng_next(&b));
    int seen[4] = {0};
    for (int i = 0; i < 4000; i++) {
        int64_t v = ss_bench_rng_range(&a, 3, 7);
        assert_true(v >= 3 && v < 7);
        seen[v - 3]++;
    }
    for (int i = 0; i < 4; i++) /* each ~1000; far from 0 or 4000 */
        assert_true(seen[i] > 850 && seen[i] < 1150);
    assert_int_equal(ss_bench_rng_range(&a, 5, 5), 5);
    for (int i = 0; i < 1000; i++) {
        double u = ss_bench_rng_uniform(&a);
        assert_true(u >= 0.0 && u < 1.0);
    }
}

static void test_plan(void **state)
{
    (void)state;
    ss_bench_workload_params w;
    ss_bench_workload_default_params(&w);
    w.num_requests = 2000;
    w.input_min = 4;
    w.input_max = 9;
    w.output_min = 2;
    w.output_max = 2;
    w.vocab_lo = 10;
    w.vocab_hi = 20;
    w.request_rate = 50.0;
    w.seed = 123;
    ss_bench_request_plan *a = NULL, *b = NULL;
    ss_err e;
    assert_int_equal(ss_bench_plan_create(&w, &a, &e), SS_OK);
    assert_int_equal(ss_bench_plan_create(&w, &b, &e), SS_OK);
    assert_memory_equal(a, b, sizeof *a * 2000);
    int seen_min = 0, seen_max = 0;
    NEAR(a[0].arrival_s, 0.0);
    for (int i = 0; i < 2000; i++) {
        assert_true(a[i].input_len >= 4 && a[i].input_len <= 9);
        seen_min |= a[i].input_len == 4;
        seen_max |= a[i].input_len == 9;
        assert_int_equal(a[i].output_len, 2);
        if (i > 0)
            assert_true(a[i].arrival_s >= a[i - 1].arrival_s);
    }
    assert_true(seen_min && seen_max);
    /* mean gap of a rate-50 Poisson process is 20 ms: 1999 gaps land within 10% */
    double mean_gap = a[1999].arrival_s / 1999.0;
    assert_true(mean_gap > 0.018 && mean_gap < 0.022);
    int64_t ids[9], ids2[9];
    ss_bench_prompt_ids(&a[5], w.vocab_lo, w.vocab_hi, ids);
    ss_bench_prompt_ids(&b[5], w.vocab_lo, w.vocab_hi, ids2);
    assert_memory_equal(ids, ids2, sizeof ids[0] * (size_t)a[5].input_len);
    for (int64_t i = 0; i < a[5].input_len; i++)
        assert_true(ids[i] >= 10 && ids[i] < 20);
    ss_free(b);
    /* another rate keeps lengths and prompts: only arrivals change */
    w.request_rate = 0.0;
    assert_int_equal(ss_bench_plan_create(&w, &b, &e), SS_OK);
    for (int i = 0; i < 2000; i++) {
        assert_int_equal(a[i].input_len, b[i].input_len);
        assert_true(a[i].prompt_seed == b[i].prompt_seed);
        NEAR(b[i].arrival_s, 0.0);
    }
    ss_free(a);
    ss_free(b);
    w.seed = 124;
    assert_int_equal(ss_bench_plan_create(&w, &a, &e), SS_OK);
    ss_free(a);

    w.input_min = 0;
    assert_int_equal(ss_bench_plan_create(&w, &a, &e), SS_ERR_INVALID_ARG);
    assert_null(a);
    w.input_min = 4;
    w.vocab_hi = 10;
    assert_int_equal(ss_bench_workload_check(&w, &e), SS_ERR_INVALID_ARG);
    assert_non_null(strstr(e.msg, "--vocab-range"));
    w.vocab_hi = 20;
    w.output_max = 1;
    assert_int_equal(ss_bench_workload_check(&w, &e), SS_ERR_INVALID_ARG);
    w.output_max = 2;
    w.request_rate = -1;
    assert_int_equal(ss_bench_workload_check(&w, &e), SS_ERR_INVALID_ARG);
    w.request_rate = 0;
    w.num_requests = 0;
    assert_int_equal(ss_bench_workload_check(&w, &e), SS_ERR_INVALID_ARG);
}

static void test_parse_range(void **state)
{
    (void)state;
    int64_t a = 0, b = 0;
    ss_err e;
    assert_int_equal(ss_bench_parse_range("4:9", "--x", &a, &b, &e), SS_OK);
    assert_int_equal(a, 4);
    assert_int_equal(b, 9);
    assert_int_equal(ss_bench_parse_range("-3:128256", "--x", &a, &b, &e), SS_OK);
    assert_int_equal(a, -3);
    assert_int_equal(b, 128256);
    const char *bad[] = {"", "4", "4:", ":9", "a:b", "4:9x", "4-9", "99999999999999999999:1"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        assert_int_equal(ss_bench_parse_range(bad[i], "--vocab-range", &a, &b, &e), SS_ERR_INVALID_ARG);
        assert_non_null(strstr(e.msg, "--vocab-range"));
    }
    assert_int_equal(ss_bench_parse_range(NULL, "--x", &a, &b, &e), SS_ERR_INVALID_ARG);
}

/* ---- report ---- */

static void test_report_json(void **state)
{
    (void)state;
    ss_bench_params p;
    ss_bench_default_params(&p);
    p.workload.num_requests = 4;
    ss_bench_result r;
    memset(&r, 0, sizeof r);
    snprintf(r.model, sizeof r.model, "tiny");
    r.duration_s = 2.0;
    r.requests_ok = 3;
    r.requests_failed = 1;
    r.errors[SS_BENCH_ERR_HTTP] = 1;
    snprintf(r.first_error[SS_BENCH_ERR_HTTP], sizeof r.first_error[0], "HTTP 500: x");
    r.n_status = 1;
    r.status_code[0] = 500;
    r.status_count[0] = 1;
    r.input_tokens = 30;
    r.output_tokens = 12;
    double v[] = {1, 2, 3};
    ss_bench_summarize(v, 3, &r.ttft_ms);
    char *s = NULL;
    ss_err e;
    assert_int_equal(ss_bench_report_json(&p, &r, &s, &e), SS_OK);
    cJSON *j = cJSON_Parse(s);
    assert_non_null(j);
    cJSON *req = cJSON_GetObjectItem(j, "requests"), *err = cJSON_GetObjectItem(j, "errors");
    assert_int_equal(cJSON_GetObjectItem(req, "total")->valueint, 4);
    assert_int_equal(cJSON_GetObjectItem(req, "failed")->valueint, 1);
    assert_int_equal(cJSON_GetObjectItem(err, "http")->valueint, 1);
    assert_int_equal(cJSON_GetObjectItem(err, "bad_stream")->valueint, 0);
    assert_int_equal(cJSON_GetObjectItem(cJSON_GetObjectItem(err, "http_status"), "500")->valueint, 1);
    assert_string_equal(cJSON_GetObjectItem(cJSON_GetObjectItem(err, "first"), "http")->valuestring, "HTTP 500: x");
    cJSON *tp = cJSON_GetObjectItem(j, "throughput");
    NEAR(cJSON_GetObjectItem(tp, "output_tokens_per_s")->valuedouble, 6.0);
    NEAR(cJSON_GetObjectItem(tp, "input_tokens_per_s")->valuedouble, 15.0);
    NEAR(cJSON_GetObjectItem(tp, "requests_per_s")->valuedouble, 1.5);
    NEAR(cJSON_GetObjectItem(cJSON_GetObjectItem(j, "ttft_ms"), "p50")->valuedouble, 2.0);
    cJSON *par = cJSON_GetObjectItem(j, "parameters");
    assert_string_equal(cJSON_GetObjectItem(par, "model")->valuestring, "tiny");
    assert_true(cJSON_IsNull(cJSON_GetObjectItem(par, "prompt_text")));
    assert_true(cJSON_IsTrue(cJSON_GetObjectItem(par, "ignore_eos")));
    cJSON_Delete(j);
    ss_free(s);

    FILE *f = tmpfile();
    assert_non_null(f);
    ss_bench_report_text(&p, &r, f);
    char buf[4096];
    rewind(f);
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    buf[n] = '\0';
    fclose(f);
    assert_non_null(strstr(buf, "output tokens/s    6.00"));
    assert_non_null(strstr(buf, "HTTP 500"));
}

/* ---- runner, without a server ---- */

static void test_run_errors(void **state)
{
    (void)state;
    ss_bench_params p;
    ss_bench_default_params(&p);
    ss_bench_result r;
    ss_err e;
    p.concurrency = -1;
    assert_int_equal(ss_bench_run(&p, &r, &e), SS_ERR_INVALID_ARG);
    p.concurrency = 2;
    p.workload.input_max = 1; /* below input_min */
    assert_int_equal(ss_bench_run(&p, &r, &e), SS_ERR_INVALID_ARG);
    ss_bench_default_params(&p);
    /* Port 1 on loopback refuses connections: every request fails as "connect". */
    p.url = "http://127.0.0.1:1/";
    p.model = "m";
    p.workload.num_requests = 5;
    p.workload.input_min = p.workload.input_max = 3;
    p.concurrency = 2;
    p.timeout_s = 5;
    assert_int_equal(ss_bench_run(&p, &r, &e), SS_OK);
    assert_int_equal(r.requests_ok, 0);
    assert_int_equal(r.requests_failed, 5);
    assert_int_equal(r.errors[SS_BENCH_ERR_CONNECT], 5);
    assert_non_null(strstr(r.first_error[SS_BENCH_ERR_CONNECT], "127.0.0.1:1/v1/completions"));
    assert_int_equal(r.output_tokens, 0);
    assert_int_equal(r.e2e_ms.n, 0);
    /* Without --model the runner asks /v1/models, which fails the run itself. */
    p.model = NULL;
    assert_int_equal(ss_bench_run(&p, &r, &e), SS_ERR_IO);
    assert_non_null(strstr(e.msg, "/v1/models"));
}

/* Every allocation of a run failing in turn: a clean status (or a finished run), never a crash or a
 * leak (ASan builds check the leaks). curl's own allocations are not hooked. */
static void test_run_alloc_faults(void **state)
{
    (void)state;
    ss_bench_params p;
    ss_bench_default_params(&p);
    p.url = "http://127.0.0.1:1";
    p.model = "m";
    p.workload.num_requests = 3;
    p.workload.input_min = p.workload.input_max = 4;
    p.concurrency = 2;
    p.warmup = 1;
    int finished = 0;
    for (long n = 0; n < 200 && !finished; n++) {
        ss_bench_result r;
        ss_err e;
        ss_alloc_fail_after(n);
        ss_status st = ss_bench_run(&p, &r, &e);
        long injected = ss_alloc_fail_after(-1);
        if (injected == 0) {
            assert_int_equal(st, SS_OK);
            assert_int_equal(r.errors[SS_BENCH_ERR_CONNECT], 3);
            finished = 1;
        } else if (st != SS_OK) {
            assert_int_equal(st, SS_ERR_NOMEM);
        }
    }
    assert_true(finished);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_percentile_known),
        cmocka_unit_test(test_summarize),
        cmocka_unit_test(test_samples),
        cmocka_unit_test(test_sse_whole_and_bytewise),
        cmocka_unit_test(test_sse_random_splits),
        cmocka_unit_test(test_sse_crlf_split_across_feeds),
        cmocka_unit_test(test_sse_limits_and_errors),
        cmocka_unit_test(test_sse_event_name_too_long),
        cmocka_unit_test(test_chunk_parse),
        cmocka_unit_test(test_chunk_malformed),
        cmocka_unit_test(test_body_build),
        cmocka_unit_test(test_rng_range),
        cmocka_unit_test(test_plan),
        cmocka_unit_test(test_parse_range),
        cmocka_unit_test(test_report_json),
        cmocka_unit_test(test_run_errors),
        cmocka_unit_test(test_run_alloc_faults),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

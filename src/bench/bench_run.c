/* bench_run.c — the load generator behind `shardserve bench` (see bench_run.h).
 *
 * Why libcurl's multi interface rather than raw sockets and threads: one thread drives every
 * connection through one event loop, so all timestamps come from one clock with no locks and no
 * thread wake-up jitter in the figures; curl brings keep-alive connection pools, chunked decoding,
 * TLS and proxies, which a tool meant to measure other servers (vLLM, TensorRT-LLM) too needs. */
#include "bench/bench_run.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <curl/curl.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "bench/bench_openai.h"
#include "bench/bench_sse.h"
#include "core/alloc.h"
#include "core/clock.h"
#include "core/json_num.h"
#include "core/log.h"

#define RUN_MAX_MODELS_BODY ((size_t)1 << 20)
#define RUN_MAX_CHUNKS ((size_t)1 << 22) /* per request: a server streaming more is broken */

/* One in-flight request (a slot, reused for request after request). */
typedef struct run_req {
    struct run_ctx *ctx;
    CURL *easy;
    ss_sse_parser *sse;
    char *body;                        /* request body, owned, freed when the request ends */
    const ss_bench_request_plan *plan; /* borrowed from the phase's plan */
    double t_start, t_first, t_last, t_now;
    int64_t n_chunks; /* events with a choice */
    int has_usage;
    int64_t usage_prompt, usage_completion;
    int done_seen;
    long http_status; /* 0 until the first body byte */
    int failed;
    ss_bench_err_kind kind;
    char msg[256];
    char errbody[200]; /* start of a non-2xx body, for the message */
    size_t errbody_len;
    ss_bench_samples itl; /* this request's gaps, merged into the run's on success */
    char curl_err[CURL_ERROR_SIZE];
} run_req;

typedef struct run_ctx {
    const ss_bench_params *p;
    ss_bench_result *res;
    const char *model;          /* res->model */
    int64_t vocab_lo, vocab_hi; /* res->vocab_lo/hi: the prompt id range in use */
    char *endpoint;             /* {url}/v1/completions, owned */
    struct curl_slist *headers; /* shared by every request */
    CURLM *multi;
    int64_t *ids;       /* [workload.input_max] prompt scratch */
    int measuring;      /* 0 during warm-up */
    double t_phase;     /* when the current phase started (requests_out's start_s counts from it) */
    const ss_bench_request_plan *plan0; /* the current phase's plan (requests_out's i indexes it) */
    int64_t ok, failed; /* of the current phase */
    ss_bench_samples ttft, itl, tpot, e2e;
} run_ctx;

const char *ss_bench_err_kind_str(ss_bench_err_kind k)
{
    static const char *const names[SS_BENCH_ERR_KIND_COUNT] = {"http", "connect", "timeout", "bad_stream", "other"};
    return (k >= 0 && k < SS_BENCH_ERR_KIND_COUNT) ? names[k] : "?";
}

void ss_bench_default_params(ss_bench_params *p)
{
    memset(p, 0, sizeof *p);
    p->url = "http://127.0.0.1:8000";
    ss_bench_workload_default_params(&p->workload);
    p->concurrency = 0;
    p->warmup = 0;
    p->timeout_s = 600.0;
    p->temperature = 0.0;
    p->ignore_eos = 1;
}

/* Marks the request failed (the first reason wins). */
static void run_fail(run_req *r, ss_bench_err_kind kind, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void run_fail(run_req *r, ss_bench_err_kind kind, const char *fmt, ...)
{
    if (r->failed)
        return;
    r->failed = 1;
    r->kind = kind;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(r->msg, sizeof r->msg, fmt, ap);
    va_end(ap);
}

static ss_status run_on_event(void *user, const char *event, const char *data, size_t len)
{
    run_req *r = user;
    ss_bench_chunk c;
    ss_err e;
    (void)event;
    if (r->done_seen)
        return SS_OK; /* nothing follows [DONE]; tolerate stray bytes */
    if (ss_bench_chunk_parse(data, len, &c, &e) != SS_OK) {
        run_fail(r, SS_BENCH_ERR_BAD_STREAM, "%s", e.msg);
        return SS_ERR_FORMAT;
    }
    if (c.done) {
        r->done_seen = 1;
        return SS_OK;
    }
    if (c.is_error) {
        run_fail(r, SS_BENCH_ERR_BAD_STREAM, "server streamed an error: %s", c.error);
        return SS_ERR_FORMAT;
    }
    if (c.has_choice) {
        if (r->n_chunks == 0) {
            r->t_first = r->t_now;
        } else {
            ss_status st = ss_bench_samples_push(&r->itl, (r->t_now - r->t_last) * 1e3);
            if (st == SS_ERR_CAPACITY) {
                run_fail(r, SS_BENCH_ERR_BAD_STREAM, "more than %zu chunks in one stream", RUN_MAX_CHUNKS);
                return st;
            }
            if (st != SS_OK) {
                run_fail(r, SS_BENCH_ERR_OTHER, "bench: %s recording inter-token latency", ss_status_str(st));
                return st;
            }
        }
        r->t_last = r->t_now;
        r->n_chunks++;
    }
    if (c.has_usage) {
        r->has_usage = 1;
        if (c.prompt_tokens >= 0)
            r->usage_prompt = c.prompt_tokens;
        if (c.completion_tokens >= 0)
            r->usage_completion = c.completion_tokens;
    }
    return SS_OK;
}

static size_t run_on_write(char *ptr, size_t size, size_t nmemb, void *user)
{
    run_req *r = user;
    size_t n = size * nmemb;
    r->t_now = ss_now_s();
    if (r->http_status == 0)
        curl_easy_getinfo(r->easy, CURLINFO_RESPONSE_CODE, &r->http_status);
    if (r->http_status < 200 || r->http_status > 299) {
        size_t room = sizeof r->errbody - 1 - r->errbody_len;
        size_t k = n < room ? n : room;
        memcpy(r->errbody + r->errbody_len, ptr, k);
        r->errbody_len += k;
        r->errbody[r->errbody_len] = '\0';
        return n;
    }
    ss_err e;
    ss_status st = ss_sse_parser_feed(r->sse, ptr, n, run_on_event, r, &e);
    if (st != SS_OK) {
        run_fail(r, st == SS_ERR_NOMEM ? SS_BENCH_ERR_OTHER : SS_BENCH_ERR_BAD_STREAM, "%s", e.msg);
        return 0; /* curl aborts the transfer */
    }
    return n;
}

static ss_status run_add_status(ss_bench_result *res, long code)
{
    for (int i = 0; i < res->n_status; i++)
        if (res->status_code[i] == code) {
            res->status_count[i]++;
            return SS_OK;
        }
    if (res->n_status == SS_BENCH_MAX_STATUS_CODES)
        return SS_OK; /* counted under errors[http] all the same */
    res->status_code[res->n_status] = code;
    res->status_count[res->n_status++] = 1;
    return SS_OK;
}

/* Starts plan rq on slot r. */
static ss_status run_launch(run_ctx *ctx, run_req *r, const ss_bench_request_plan *rq, ss_err *err)
{
    const ss_bench_params *p = ctx->p;
    ss_bench_samples itl = r->itl;
    CURL *easy = r->easy;
    ss_sse_parser *sse = r->sse;
    memset(r, 0, sizeof *r);
    r->ctx = ctx;
    r->easy = easy;
    r->sse = sse;
    r->itl = itl;
    r->itl.n = 0;
    r->itl.max = RUN_MAX_CHUNKS;
    r->plan = rq;
    ss_sse_parser_reset(r->sse);

    ss_bench_body_params bp = {.model = ctx->model,
                               .prompt_text = p->prompt_text,
                               .max_tokens = rq->output_len,
                               .temperature = p->temperature,
                               .ignore_eos = p->ignore_eos,
                               .extra_body = p->extra_body};
    if (!p->prompt_text) {
        ss_bench_prompt_ids(rq, ctx->vocab_lo, ctx->vocab_hi, ctx->ids);
        bp.prompt_ids = ctx->ids;
        bp.n_prompt_ids = (size_t)rq->input_len;
    }
    size_t body_len = 0;
    SS_CHECK(ss_bench_body_build(&bp, &r->body, &body_len, err));

    curl_easy_reset(easy);
    CURLcode cc = CURLE_OK;
    long timeout_ms = p->timeout_s > 0 ? (long)ceil(p->timeout_s * 1e3) : 0;
    long connect_ms = (timeout_ms > 0 && timeout_ms < 30000) ? timeout_ms : 30000;
#define RUN_SET(opt, val)                                                                                              \
    do {                                                                                                               \
        if (cc == CURLE_OK)                                                                                            \
            cc = curl_easy_setopt(easy, opt, val);                                                                     \
    } while (0)
    RUN_SET(CURLOPT_URL, ctx->endpoint);
    RUN_SET(CURLOPT_POST, 1L);
    RUN_SET(CURLOPT_POSTFIELDS, r->body);
    RUN_SET(CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)body_len);
    RUN_SET(CURLOPT_HTTPHEADER, ctx->headers);
    RUN_SET(CURLOPT_WRITEFUNCTION, run_on_write);
    RUN_SET(CURLOPT_WRITEDATA, r);
    RUN_SET(CURLOPT_PRIVATE, r);
    RUN_SET(CURLOPT_ERRORBUFFER, r->curl_err);
    RUN_SET(CURLOPT_TIMEOUT_MS, timeout_ms);
    RUN_SET(CURLOPT_CONNECTTIMEOUT_MS, connect_ms);
    RUN_SET(CURLOPT_NOSIGNAL, 1L);
    RUN_SET(CURLOPT_TCP_NODELAY, 1L);
#undef RUN_SET
    if (cc != CURLE_OK)
        return ss_err_set(err, SS_ERR_INTERNAL, "bench: curl_easy_setopt: %s", curl_easy_strerror(cc));
    r->t_start = ss_now_s();
    CURLMcode mc = curl_multi_add_handle(ctx->multi, easy);
    if (mc != CURLM_OK)
        return ss_err_set(err, SS_ERR_IO, "bench: curl_multi_add_handle: %s", curl_multi_strerror(mc));
    return SS_OK;
}

/* Adds the successful request on r to the run's counts and samples; *in_tokens, *out_tokens: its own. */
static ss_status run_record(run_ctx *ctx, run_req *r, double t_end, int64_t *in_tokens_out, int64_t *out_tokens_out)
{
    const ss_bench_request_plan *rq = r->plan;
    int64_t out_tokens = (r->has_usage && r->usage_completion >= 0) ? r->usage_completion : r->n_chunks;
    int64_t in_tokens = (r->has_usage && r->usage_prompt >= 0) ? r->usage_prompt
                        : ctx->p->prompt_text                  ? 0
                                                               : rq->input_len;
    ss_bench_result *res = ctx->res;
    res->input_tokens += in_tokens;
    res->output_tokens += out_tokens;
    res->output_chunks += r->n_chunks;
    if (out_tokens < rq->output_len)
        res->short_outputs++;
    *in_tokens_out = in_tokens;
    *out_tokens_out = out_tokens;
    double e2e = (t_end - r->t_start) * 1e3;
    SS_CHECK(ss_bench_samples_push(&ctx->e2e, e2e));
    if (r->n_chunks > 0) {
        double ttft = (r->t_first - r->t_start) * 1e3;
        SS_CHECK(ss_bench_samples_push(&ctx->ttft, ttft));
        if (out_tokens > 1)
            SS_CHECK(ss_bench_samples_push(&ctx->tpot, (e2e - ttft) / (double)(out_tokens - 1)));
    }
    for (size_t i = 0; i < r->itl.n; i++)
        SS_CHECK(ss_bench_samples_push(&ctx->itl, r->itl.v[i]));
    return SS_OK;
}

/* dst = src with every byte outside printable ASCII as '?' (a server's error body need not be UTF-8, and the line
 * must stay valid JSON); returns dst. */
static const char *run_ascii(char *dst, const char *src, size_t cap)
{
    size_t i = 0;
    for (; src[i] && i + 1 < cap; i++)
        dst[i] = (unsigned char)src[i] >= 0x20 && (unsigned char)src[i] < 0x7f ? src[i] : '?';
    dst[i] = 0;
    return dst;
}

/* One line of p->requests_out for the measured request on r (ended at t_end): its plan index, start (s after
 * the phase's), TTFT, end-to-end time, longest gap between tokens and the chunk after which it came, tokens,
 * and its error kind and message if it failed (null otherwise). */
static ss_status run_write_request(run_ctx *ctx, const run_req *r, double t_end, int64_t in_tokens, int64_t out_tokens,
                                   ss_err *err)
{
    char msg[sizeof r->msg];
    double gap = -1.0;
    size_t at = 0;
    for (size_t i = 0; i < r->itl.n; i++)
        if (r->itl.v[i] > gap)
            gap = r->itl.v[i], at = i + 1;
    cJSON *o = cJSON_CreateObject();
    int ok = o && cJSON_AddNumberToObject(o, "i", (double)(r->plan - ctx->plan0)) &&
             cJSON_AddNumberToObject(o, "start_s", r->t_start - ctx->t_phase) &&
             (r->n_chunks > 0 ? cJSON_AddNumberToObject(o, "ttft_ms", (r->t_first - r->t_start) * 1e3) != NULL
                              : cJSON_AddNullToObject(o, "ttft_ms") != NULL) &&
             cJSON_AddNumberToObject(o, "e2e_ms", (t_end - r->t_start) * 1e3) &&
             (gap >= 0.0 ? cJSON_AddNumberToObject(o, "itl_max_ms", gap) != NULL
                         : cJSON_AddNullToObject(o, "itl_max_ms") != NULL) &&
             cJSON_AddNumberToObject(o, "itl_max_after", (double)at) &&
             cJSON_AddNumberToObject(o, "input_tokens", (double)in_tokens) &&
             cJSON_AddNumberToObject(o, "output_tokens", (double)out_tokens) &&
             (r->failed ? cJSON_AddStringToObject(o, "error", ss_bench_err_kind_str(r->kind)) != NULL &&
                              cJSON_AddStringToObject(o, "message", run_ascii(msg, r->msg, sizeof msg)) != NULL
                        : cJSON_AddNullToObject(o, "error") != NULL);
    char *line = ok ? cJSON_PrintUnformatted(o) : NULL;
    cJSON_Delete(o);
    if (!line)
        return ss_err_set(err, SS_ERR_NOMEM, "bench: out of memory writing a request's line");
    int bad = fprintf(ctx->p->requests_out, "%s\n", line) < 0;
    int e = errno;
    cJSON_free(line);
    if (bad)
        return ss_err_set(err, SS_ERR_IO, "--requests-out: %s", strerror(e));
    return SS_OK;
}

/* Ends the request on slot r, whose transfer finished with cc. */
static ss_status run_finish(run_ctx *ctx, run_req *r, CURLcode cc, ss_err *err)
{
    double t_end = ss_now_s();
    curl_multi_remove_handle(ctx->multi, r->easy);
    ss_free(r->body);
    r->body = NULL;
    if (r->http_status == 0)
        curl_easy_getinfo(r->easy, CURLINFO_RESPONSE_CODE, &r->http_status);
    const char *cmsg = r->curl_err[0] ? r->curl_err : curl_easy_strerror(cc);
    if (r->failed) {
        /* already classified while streaming */
    } else if (cc == CURLE_OPERATION_TIMEDOUT) {
        run_fail(r, SS_BENCH_ERR_TIMEOUT, "timed out after %.3f s: %s", ctx->p->timeout_s, cmsg);
    } else if (cc == CURLE_COULDNT_CONNECT || cc == CURLE_COULDNT_RESOLVE_HOST || cc == CURLE_COULDNT_RESOLVE_PROXY) {
        run_fail(r, SS_BENCH_ERR_CONNECT, "%s: %s", ctx->endpoint, cmsg);
    } else if (cc != CURLE_OK) {
        run_fail(r, SS_BENCH_ERR_OTHER, "%s: %s", ctx->endpoint, cmsg);
    } else if (r->http_status < 200 || r->http_status > 299) {
        run_fail(r, SS_BENCH_ERR_HTTP, "HTTP %ld: %s", r->http_status, r->errbody);
    } else if (!r->done_seen) {
        run_fail(r, SS_BENCH_ERR_BAD_STREAM, "the stream ended without data: [DONE] (%lld chunks received)",
                 (long long)r->n_chunks);
    }
    if (!r->failed) {
        ctx->ok++;
        if (!ctx->measuring)
            return SS_OK;
        int64_t out_tokens = 0, in_tokens = 0;
        ss_status st = run_record(ctx, r, t_end, &in_tokens, &out_tokens);
        if (st != SS_OK)
            return ss_err_set(err, st, "bench: %s recording a result", ss_status_str(st));
        return ctx->p->requests_out ? run_write_request(ctx, r, t_end, in_tokens, out_tokens, err) : SS_OK;
    }
    ctx->failed++;
    if (!ctx->measuring)
        return SS_OK;
    if (ctx->p->requests_out) /* a failed request: its planned prompt and the chunks that came */
        SS_CHECK(run_write_request(ctx, r, t_end, ctx->p->prompt_text ? 0 : r->plan->input_len, r->n_chunks, err));
    ss_bench_result *res = ctx->res;
    if (res->errors[r->kind]++ == 0) {
        snprintf(res->first_error[r->kind], sizeof res->first_error[r->kind], "%s", r->msg);
        SS_LOGW("bench: first %s error: %s", ss_bench_err_kind_str(r->kind), r->msg);
    }
    if (r->kind == SS_BENCH_ERR_HTTP)
        run_add_status(res, r->http_status);
    return SS_OK;
}

/* Sends n planned requests (at their arrival times when use_rate) with at most `concurrency` in
 * flight, and waits for all of them. *duration_s: first send to last completion. */
static ss_status run_phase(run_ctx *ctx, const ss_bench_request_plan *plan, int64_t n, int use_rate, double *duration_s,
                           ss_err *err)
{
    int64_t cap = ctx->p->concurrency > 0 && ctx->p->concurrency < n ? ctx->p->concurrency : n;
    ss_status st = SS_OK;
    run_req *slots = ss_calloc((size_t)cap, sizeof *slots);
    run_req **free_slots = ss_calloc((size_t)cap, sizeof *free_slots);
    int64_t n_free = 0;
    if (!slots || !free_slots) {
        st = ss_err_set(err, SS_ERR_NOMEM, "bench: out of memory for %lld request slots", (long long)cap);
        goto out;
    }
    ss_sse_params sp;
    ss_sse_default_params(&sp);
    for (int64_t i = 0; i < cap; i++) {
        slots[i].easy = curl_easy_init();
        if (!slots[i].easy) {
            st = ss_err_set(err, SS_ERR_NOMEM, "bench: curl_easy_init failed");
            goto out;
        }
        SS_CHECK_GOTO(ss_sse_parser_create(&sp, &slots[i].sse, err), st, out);
        free_slots[n_free++] = &slots[cap - 1 - i];
    }
    curl_multi_setopt(ctx->multi, CURLMOPT_MAXCONNECTS, (long)cap);

    double t0 = ss_now_s(), t_last_end = t0;
    ctx->t_phase = t0;
    ctx->plan0 = plan;
    int64_t next = 0, done = 0;
    while (done < n) {
        double now = ss_now_s();
        while (next < n && n_free > 0 && (!use_rate || now - t0 >= plan[next].arrival_s)) {
            run_req *r = free_slots[--n_free];
            st = run_launch(ctx, r, &plan[next], err);
            if (st != SS_OK) {
                free_slots[n_free++] = r;
                goto out;
            }
            next++;
        }
        int running = 0;
        CURLMcode mc = curl_multi_perform(ctx->multi, &running);
        if (mc != CURLM_OK) {
            st = ss_err_set(err, SS_ERR_IO, "bench: curl_multi_perform: %s", curl_multi_strerror(mc));
            goto out;
        }
        CURLMsg *msg;
        int left;
        while ((msg = curl_multi_info_read(ctx->multi, &left))) {
            if (msg->msg != CURLMSG_DONE)
                continue;
            char *priv = NULL;
            curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, &priv);
            run_req *r = (run_req *)priv;
            CURLcode cc = msg->data.result;
            st = run_finish(ctx, r, cc, err);
            free_slots[n_free++] = r; /* the slot is free even if recording failed */
            if (st != SS_OK) /* (run_finish said why in err) */
                goto out;
            done++;
            t_last_end = ss_now_s();
        }
        if (done == n)
            break;
        int wait_ms = 100;
        if (next < n && n_free > 0 && use_rate) {
            double dt = plan[next].arrival_s - (ss_now_s() - t0);
            wait_ms = dt <= 0 ? 0 : (int)ceil(dt * 1e3);
            if (wait_ms > 100)
                wait_ms = 100;
        } else if (next < n && n_free > 0) {
            wait_ms = 0;
        }
        mc = curl_multi_poll(ctx->multi, NULL, 0, wait_ms, NULL);
        if (mc != CURLM_OK) {
            st = ss_err_set(err, SS_ERR_IO, "bench: curl_multi_poll: %s", curl_multi_strerror(mc));
            goto out;
        }
    }
    *duration_s = t_last_end - t0;
out:
    if (slots) {
        for (int64_t i = 0; i < cap; i++) {
            if (slots[i].body) { /* still in flight after an error */
                curl_multi_remove_handle(ctx->multi, slots[i].easy);
                ss_free(slots[i].body);
            }
            if (slots[i].easy)
                curl_easy_cleanup(slots[i].easy);
            ss_sse_parser_destroy(slots[i].sse);
            ss_bench_samples_free(&slots[i].itl);
        }
    }
    ss_free(slots);
    ss_free(free_slots);
    return st;
}

typedef struct run_buf {
    char *v;
    size_t n;
    int overflow;
} run_buf;

static size_t run_on_models_write(char *ptr, size_t size, size_t nmemb, void *user)
{
    run_buf *b = user;
    size_t n = size * nmemb;
    if (b->n + n > RUN_MAX_MODELS_BODY) {
        b->overflow = 1;
        return 0;
    }
    char *v = ss_realloc(b->v, b->n + n + 1);
    if (!v)
        return 0;
    b->v = v;
    memcpy(b->v + b->n, ptr, n);
    b->n += n;
    b->v[b->n] = '\0';
    return n;
}

/* Asks GET {url}/v1/models for the first model id, into res->model when that is still empty, and for the
 * vocabulary size of the model in use (*vocab: 0 when the answer has none). */
static ss_status run_lookup_model(run_ctx *ctx, char *url, long timeout_ms, int64_t *vocab, ss_err *err)
{
    *vocab = 0;
    run_buf b = {0};
    char cerr[CURL_ERROR_SIZE] = "";
    ss_status st = SS_OK;
    long code = 0;
    CURL *easy = curl_easy_init();
    if (!easy)
        return ss_err_set(err, SS_ERR_NOMEM, "bench: curl_easy_init failed");
    curl_easy_setopt(easy, CURLOPT_URL, url);
    curl_easy_setopt(easy, CURLOPT_HTTPHEADER, ctx->headers);
    curl_easy_setopt(easy, CURLOPT_WRITEFUNCTION, run_on_models_write);
    curl_easy_setopt(easy, CURLOPT_WRITEDATA, &b);
    curl_easy_setopt(easy, CURLOPT_ERRORBUFFER, cerr);
    curl_easy_setopt(easy, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(easy, CURLOPT_TIMEOUT_MS, timeout_ms);
    CURLcode cc = curl_easy_perform(easy);
    curl_easy_getinfo(easy, CURLINFO_RESPONSE_CODE, &code);
    curl_easy_cleanup(easy);
    if (cc != CURLE_OK) {
        st = ss_err_set(err, SS_ERR_IO, "GET %s: %s (or pass --model)", url,
                        b.overflow ? "response larger than 1 MiB"
                        : cerr[0]  ? cerr
                                   : curl_easy_strerror(cc));
        goto out;
    }
    if (code != 200) {
        st = ss_err_set(err, SS_ERR_IO, "GET %s: HTTP %ld (pass --model)", url, code);
        goto out;
    }
    cJSON *root = b.v ? cJSON_ParseWithLength(b.v, b.n) : NULL;
    const cJSON *data = cJSON_GetObjectItemCaseSensitive(root, "data");
    const cJSON *entry = cJSON_GetArrayItem(data, 0), *m;
    cJSON_ArrayForEach(m, data) /* a model given by name: its own entry */
    {
        const cJSON *mid = cJSON_GetObjectItemCaseSensitive(m, "id");
        if (ctx->res->model[0] && cJSON_IsString(mid) && !strcmp(mid->valuestring, ctx->res->model))
            entry = m;
    }
    const cJSON *id = cJSON_GetObjectItemCaseSensitive(entry, "id");
    if (!cJSON_IsString(id) || strlen(id->valuestring) >= sizeof ctx->res->model)
        st = ss_err_set(err, SS_ERR_FORMAT, "GET %s: no usable data[0].id in the answer (pass --model)", url);
    else if (!ctx->res->model[0])
        snprintf(ctx->res->model, sizeof ctx->res->model, "%s", id->valuestring);
    const cJSON *vs = cJSON_GetObjectItemCaseSensitive(entry, "vocab_size");
    int64_t v = 0;
    if (st == SS_OK && !strcmp(id->valuestring, ctx->res->model) && ss_json_int(vs, 1, INT64_C(1) << 40, &v))
        *vocab = v;
    cJSON_Delete(root);
out:
    ss_free(b.v);
    return st;
}

static char *run_join(const char *base, const char *path)
{
    size_t bl = strlen(base);
    while (bl > 0 && base[bl - 1] == '/')
        bl--;
    size_t pl = strlen(path);
    char *s = ss_malloc(bl + pl + 1);
    if (!s)
        return NULL;
    memcpy(s, base, bl);
    memcpy(s + bl, path, pl + 1);
    return s;
}

static ss_status run_check(const ss_bench_params *p, ss_err *err)
{
    if (!p->url || !*p->url)
        return ss_err_set(err, SS_ERR_INVALID_ARG, "--url: required");
    if (p->model && strlen(p->model) >= sizeof((ss_bench_result *)0)->model)
        return ss_err_set(err, SS_ERR_INVALID_ARG, "--model: longer than 255 bytes");
    if (p->concurrency < 0)
        return ss_err_set(err, SS_ERR_INVALID_ARG, "--concurrency: must be >= 0 (0 = no cap)");
    if (p->warmup < 0 || p->warmup > SS_BENCH_MAX_REQUESTS)
        return ss_err_set(err, SS_ERR_INVALID_ARG, "--warmup: must be in [0, %lld]", (long long)SS_BENCH_MAX_REQUESTS);
    if (!(p->timeout_s >= 0.0) || p->timeout_s > 1e6)
        return ss_err_set(err, SS_ERR_INVALID_ARG, "--timeout: must be in [0, 1e6] seconds (0 = none)");
    if (!(p->temperature >= 0.0) || isinf(p->temperature))
        return ss_err_set(err, SS_ERR_INVALID_ARG, "--temperature: must be a finite number >= 0");
    return ss_bench_workload_check(&p->workload, err);
}

ss_status ss_bench_run(const ss_bench_params *p, ss_bench_result *out, ss_err *err)
{
    memset(out, 0, sizeof *out);
    SS_CHECK(run_check(p, err));
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK)
        return ss_err_set(err, SS_ERR_INTERNAL, "bench: curl_global_init failed");
    ss_status st = SS_OK;
    run_ctx ctx = {.p = p, .res = out, .model = out->model};
    ss_bench_request_plan *plan = NULL, *warm_plan = NULL;
    char *models_url = NULL, *auth = NULL;

    ctx.endpoint = run_join(p->url, "/v1/completions");
    models_url = run_join(p->url, "/v1/models");
    if (!ctx.endpoint || !models_url) {
        st = ss_err_set(err, SS_ERR_NOMEM, "bench: out of memory");
        goto out;
    }
    /* "Expect:" stops curl from waiting for "100 Continue" before sending large prompts. */
    const char *fixed[] = {"Content-Type: application/json", "Accept: text/event-stream", "Expect:"};
    for (size_t i = 0; i < sizeof fixed / sizeof fixed[0]; i++) {
        struct curl_slist *h = curl_slist_append(ctx.headers, fixed[i]);
        if (!h) {
            st = ss_err_set(err, SS_ERR_NOMEM, "bench: out of memory");
            goto out;
        }
        ctx.headers = h;
    }
    if (p->api_key) {
        size_t n = strlen(p->api_key) + sizeof "Authorization: Bearer ";
        auth = ss_malloc(n);
        if (!auth) {
            st = ss_err_set(err, SS_ERR_NOMEM, "bench: out of memory");
            goto out;
        }
        snprintf(auth, n, "Authorization: Bearer %s", p->api_key);
        struct curl_slist *h = curl_slist_append(ctx.headers, auth);
        if (!h) {
            st = ss_err_set(err, SS_ERR_NOMEM, "bench: out of memory");
            goto out;
        }
        ctx.headers = h;
    }
    if (p->model)
        snprintf(out->model, sizeof out->model, "%s", p->model);
    int64_t vocab = 0;
    if (!p->model) {
        SS_CHECK_GOTO(run_lookup_model(&ctx, models_url, 30000L, &vocab, err), st, out);
    } else if (p->fit_vocab && !p->prompt_text) { /* only for the vocabulary: a server without the route is fine */
        ss_err why;
        if (run_lookup_model(&ctx, models_url, 5000L, &vocab, &why) != SS_OK)
            SS_LOGI("prompt ids in [%lld, %lld) as given: the server's vocabulary is unknown (%s)",
                    (long long)p->workload.vocab_lo, (long long)p->workload.vocab_hi, why.msg);
    }
    ctx.vocab_lo = p->workload.vocab_lo;
    ctx.vocab_hi = p->workload.vocab_hi;
    if (p->fit_vocab && vocab > 0 && ctx.vocab_hi > vocab) { /* e.g. 1000:20000 against a 4,096-token model */
        ctx.vocab_hi = vocab;
        if (ctx.vocab_lo >= vocab)
            ctx.vocab_lo = vocab / 4;
        SS_LOGI("prompt ids in [%lld, %lld): the model's vocabulary has %lld ids", (long long)ctx.vocab_lo,
                (long long)ctx.vocab_hi, (long long)vocab);
    }
    out->vocab_lo = ctx.vocab_lo;
    out->vocab_hi = ctx.vocab_hi;

    SS_CHECK_GOTO(ss_bench_plan_create(&p->workload, &plan, err), st, out);
    if (!p->prompt_text) {
        ctx.ids = ss_malloc((size_t)p->workload.input_max * sizeof *ctx.ids);
        if (!ctx.ids) {
            st = ss_err_set(err, SS_ERR_NOMEM, "bench: out of memory for a %lld-token prompt",
                            (long long)p->workload.input_max);
            goto out;
        }
    }
    ctx.multi = curl_multi_init();
    if (!ctx.multi) {
        st = ss_err_set(err, SS_ERR_NOMEM, "bench: curl_multi_init failed");
        goto out;
    }
    double duration = 0.0;
    if (p->warmup > 0) {
        /* Its own seed stream, so that the measured requests are the same with or without warm-up. */
        ss_bench_workload_params wp = p->workload;
        wp.num_requests = p->warmup;
        wp.seed = p->workload.seed ^ 0x9e3779b97f4a7c15ULL;
        SS_CHECK_GOTO(ss_bench_plan_create(&wp, &warm_plan, err), st, out);
        SS_CHECK_GOTO(run_phase(&ctx, warm_plan, p->warmup, 0, &duration, err), st, out);
        out->warmup_ok = ctx.ok;
        out->warmup_failed = ctx.failed;
        if (ctx.failed > 0)
            SS_LOGW("bench: %lld of %lld warm-up requests failed", (long long)ctx.failed, (long long)p->warmup);
    }
    ctx.measuring = 1;
    ctx.ok = ctx.failed = 0;
    SS_CHECK_GOTO(run_phase(&ctx, plan, p->workload.num_requests, p->workload.request_rate > 0.0, &duration, err), st,
                  out);
    out->duration_s = duration;
    out->requests_ok = ctx.ok;
    out->requests_failed = ctx.failed;
    ss_bench_summarize(ctx.ttft.v, ctx.ttft.n, &out->ttft_ms);
    ss_bench_summarize(ctx.itl.v, ctx.itl.n, &out->itl_ms);
    ss_bench_summarize(ctx.tpot.v, ctx.tpot.n, &out->tpot_ms);
    ss_bench_summarize(ctx.e2e.v, ctx.e2e.n, &out->e2e_ms);
out:
    if (ctx.multi)
        curl_multi_cleanup(ctx.multi);
    curl_slist_free_all(ctx.headers);
    ss_free(ctx.endpoint);
    ss_free(models_url);
    ss_free(auth);
    ss_free(ctx.ids);
    ss_free(plan);
    ss_free(warm_plan);
    ss_bench_samples_free(&ctx.ttft);
    ss_bench_samples_free(&ctx.itl);
    ss_bench_samples_free(&ctx.tpot);
    ss_bench_samples_free(&ctx.e2e);
    curl_global_cleanup();
    return st;
}

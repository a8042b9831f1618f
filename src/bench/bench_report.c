/* bench_report.c — text and JSON reports of a `shardserve bench` run (see bench_report.h). */
#include "bench/bench_report.h"

#include <cjson/cJSON.h>
#include <string.h>

#include "core/alloc.h"

static double report_rate(double x, double duration_s)
{
    return duration_s > 0.0 ? x / duration_s : 0.0;
}

/* Adds name: number; returns 0 on allocation failure. */
static int report_num(cJSON *o, const char *name, double v)
{
    return cJSON_AddNumberToObject(o, name, v) != NULL;
}

static int report_summary(cJSON *root, const char *name, const ss_bench_summary *s)
{
    cJSON *o = cJSON_AddObjectToObject(root, name);
    return o && report_num(o, "n", (double)s->n) && report_num(o, "mean", s->mean) &&
           report_num(o, "stddev", s->stddev) && report_num(o, "min", s->min) && report_num(o, "max", s->max) &&
           report_num(o, "p50", s->p50) && report_num(o, "p90", s->p90) && report_num(o, "p99", s->p99);
}

static int report_str_or_null(cJSON *o, const char *name, const char *v)
{
    return v ? cJSON_AddStringToObject(o, name, v) != NULL : cJSON_AddNullToObject(o, name) != NULL;
}

/* --extra-body as the object it is (checked before the run), or null. */
static int report_extra(cJSON *o, const char *text)
{
    cJSON *v = text ? cJSON_Parse(text) : cJSON_CreateNull();
    if (!v)
        return 0;
    if (!cJSON_AddItemToObject(o, "extra_body", v)) {
        cJSON_Delete(v);
        return 0;
    }
    return 1;
}

static int report_params(cJSON *root, const ss_bench_params *p, const ss_bench_result *r)
{
    const ss_bench_workload_params *w = &p->workload;
    cJSON *o = cJSON_AddObjectToObject(root, "parameters");
    return o && report_str_or_null(o, "url", p->url) && cJSON_AddStringToObject(o, "model", r->model) &&
           report_str_or_null(o, "prompt_text", p->prompt_text) &&
           report_num(o, "num_requests", (double)w->num_requests) &&
           report_num(o, "input_len_min", (double)w->input_min) &&
           report_num(o, "input_len_max", (double)w->input_max) &&
           report_num(o, "output_len_min", (double)w->output_min) &&
           report_num(o, "output_len_max", (double)w->output_max) && report_num(o, "vocab_lo", (double)r->vocab_lo) &&
           report_num(o, "vocab_hi", (double)r->vocab_hi) && report_num(o, "request_rate", w->request_rate) &&
           report_num(o, "concurrency", (double)p->concurrency) && report_num(o, "seed", (double)w->seed) &&
           report_num(o, "warmup", (double)p->warmup) && report_num(o, "timeout_s", p->timeout_s) &&
           report_num(o, "temperature", p->temperature) && cJSON_AddBoolToObject(o, "ignore_eos", p->ignore_eos) &&
           report_extra(o, p->extra_body);
}

static int report_errors(cJSON *root, const ss_bench_result *r)
{
    cJSON *o = cJSON_AddObjectToObject(root, "errors");
    if (!o)
        return 0;
    for (int k = 0; k < SS_BENCH_ERR_KIND_COUNT; k++)
        if (!report_num(o, ss_bench_err_kind_str((ss_bench_err_kind)k), (double)r->errors[k]))
            return 0;
    cJSON *hs = cJSON_AddObjectToObject(o, "http_status");
    if (!hs)
        return 0;
    for (int i = 0; i < r->n_status; i++) {
        char code[24];
        snprintf(code, sizeof code, "%ld", r->status_code[i]);
        if (!report_num(hs, code, (double)r->status_count[i]))
            return 0;
    }
    cJSON *first = cJSON_AddObjectToObject(o, "first");
    if (!first)
        return 0;
    for (int k = 0; k < SS_BENCH_ERR_KIND_COUNT; k++)
        if (r->errors[k] > 0 &&
            !cJSON_AddStringToObject(first, ss_bench_err_kind_str((ss_bench_err_kind)k), r->first_error[k]))
            return 0;
    return 1;
}

ss_status ss_bench_report_json(const ss_bench_params *p, const ss_bench_result *r, char **out, ss_err *err)
{
    *out = NULL;
    cJSON *root = cJSON_CreateObject(), *o;
    char *txt = NULL;
    double d = r->duration_s;
    int ok = root && report_params(root, p, r) && report_num(root, "duration_s", d);
    ok = ok && (o = cJSON_AddObjectToObject(root, "requests")) &&
         report_num(o, "total", (double)(r->requests_ok + r->requests_failed)) &&
         report_num(o, "ok", (double)r->requests_ok) && report_num(o, "failed", (double)r->requests_failed);
    ok = ok && report_errors(root, r);
    ok = ok && (o = cJSON_AddObjectToObject(root, "tokens")) && report_num(o, "input", (double)r->input_tokens) &&
         report_num(o, "output", (double)r->output_tokens) &&
         report_num(o, "output_chunks", (double)r->output_chunks) &&
         report_num(o, "short_outputs", (double)r->short_outputs);
    ok = ok && (o = cJSON_AddObjectToObject(root, "throughput")) &&
         report_num(o, "requests_per_s", report_rate((double)r->requests_ok, d)) &&
         report_num(o, "input_tokens_per_s", report_rate((double)r->input_tokens, d)) &&
         report_num(o, "output_tokens_per_s", report_rate((double)r->output_tokens, d));
    ok = ok && report_summary(root, "ttft_ms", &r->ttft_ms) && report_summary(root, "itl_ms", &r->itl_ms) &&
         report_summary(root, "tpot_ms", &r->tpot_ms) && report_summary(root, "e2e_ms", &r->e2e_ms);
    ok = ok && (o = cJSON_AddObjectToObject(root, "warmup")) && report_num(o, "ok", (double)r->warmup_ok) &&
         report_num(o, "failed", (double)r->warmup_failed);
    if (ok)
        txt = cJSON_PrintUnformatted(root);
    cJSON_Delete(root);
    if (!txt)
        return ss_err_set(err, SS_ERR_NOMEM, "bench: out of memory building the JSON report");
    *out = ss_strdup(txt);
    cJSON_free(txt);
    if (!*out)
        return ss_err_set(err, SS_ERR_NOMEM, "bench: out of memory building the JSON report");
    return SS_OK;
}

static void report_line(FILE *f, const char *name, const ss_bench_summary *s)
{
    fprintf(f, "  %-6s %10.2f %10.2f %10.2f %10.2f %10.2f %10.2f %9zu\n", name, s->mean, s->p50, s->p90, s->p99, s->min,
            s->max, s->n);
}

void ss_bench_report_text(const ss_bench_params *p, const ss_bench_result *r, FILE *f)
{
    const ss_bench_workload_params *w = &p->workload;
    double d = r->duration_s;
    fprintf(f, "shardserve bench\n");
    fprintf(f, "  url            %s\n  model          %s\n", p->url, r->model);
    if (p->prompt_text)
        fprintf(f, "  prompt         text (%zu bytes)\n", strlen(p->prompt_text));
    else
        fprintf(f, "  prompt         random token ids in [%lld, %lld)\n", (long long)r->vocab_lo,
                (long long)r->vocab_hi);
    fprintf(f, "  requests       %lld (+%lld warm-up)\n", (long long)w->num_requests, (long long)p->warmup);
    fprintf(f, "  input len      %lld:%lld\n  output len     %lld:%lld%s\n", (long long)w->input_min,
            (long long)w->input_max, (long long)w->output_min, (long long)w->output_max,
            p->ignore_eos ? " (ignore_eos)" : "");
    if (p->extra_body)
        fprintf(f, "  extra body     %s\n", p->extra_body);
    if (w->request_rate > 0.0)
        fprintf(f, "  arrivals       Poisson, %.3f req/s\n", w->request_rate);
    else
        fprintf(f, "  arrivals       all at once\n");
    if (p->concurrency > 0)
        fprintf(f, "  concurrency    %lld\n", (long long)p->concurrency);
    else
        fprintf(f, "  concurrency    unlimited\n");
    fprintf(f, "  seed           %llu\n  temperature    %g\n\n", (unsigned long long)w->seed, p->temperature);

    fprintf(f, "duration           %.3f s\n", d);
    fprintf(f, "requests ok        %lld\nrequests failed    %lld\n", (long long)r->requests_ok,
            (long long)r->requests_failed);
    for (int k = 0; k < SS_BENCH_ERR_KIND_COUNT; k++)
        if (r->errors[k] > 0)
            fprintf(f, "  %-12s     %lld  (first: %s)\n", ss_bench_err_kind_str((ss_bench_err_kind)k),
                    (long long)r->errors[k], r->first_error[k]);
    for (int i = 0; i < r->n_status; i++)
        fprintf(f, "  HTTP %ld         %lld\n", r->status_code[i], (long long)r->status_count[i]);
    fprintf(f, "input tokens       %lld\noutput tokens      %lld", (long long)r->input_tokens,
            (long long)r->output_tokens);
    if (r->short_outputs > 0)
        fprintf(f, "  (%lld requests returned fewer than max_tokens)", (long long)r->short_outputs);
    fprintf(f, "\nrequests/s         %.3f\ninput tokens/s     %.2f\noutput tokens/s    %.2f\n\n",
            report_rate((double)r->requests_ok, d), report_rate((double)r->input_tokens, d),
            report_rate((double)r->output_tokens, d));
    fprintf(f, "  %-6s %10s %10s %10s %10s %10s %10s %9s\n", "ms", "mean", "p50", "p90", "p99", "min", "max",
            "samples");
    report_line(f, "TTFT", &r->ttft_ms);
    report_line(f, "ITL", &r->itl_ms);
    report_line(f, "TPOT", &r->tpot_ms);
    report_line(f, "E2E", &r->e2e_ms);
    if (p->warmup > 0)
        fprintf(f, "\nwarm-up            %lld ok, %lld failed\n", (long long)r->warmup_ok, (long long)r->warmup_failed);
}

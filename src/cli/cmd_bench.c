/* cmd_bench.c — `shardserve bench`: flags (with SHARDSERVE_* twins) -> a load-generator run against
 * an OpenAI-compatible server -> a text or JSON report on stdout (DESIGN.md §8). */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/resource.h>

#include "bench/bench_openai.h"
#include "bench/bench_report.h"
#include "bench/bench_run.h"
#include "cli/commands.h"
#include "cli/opts.h"
#include "core/alloc.h"
#include "core/log.h"
#include "core/status.h"

#define BENCH_SYNOPSIS "--url URL [--model M] [--num-requests N] [--input-len L | --input-len-range A:B] ..."

/* Applies a fixed length or an inclusive a:b range to [*lo, *hi]; both given is a usage error. */
static ss_status bench_len(const char *name, int64_t fixed, const char *range, int64_t *lo, int64_t *hi, ss_err *err)
{
    const int given = fixed != INT64_MIN; /* (INT64_MIN: the flag was not given) */
    if (given && range)
        return ss_err_set(err, SS_ERR_INVALID_ARG, "--%s and --%s-range: give one of them", name, name);
    if (range) {
        char flag[64];
        snprintf(flag, sizeof flag, "--%s-range", name);
        return ss_bench_parse_range(range, flag, lo, hi, err);
    }
    if (given && fixed < 1) /* (a negative value was taken for "not given": helper-80) */
        return ss_err_set(err, SS_ERR_INVALID_ARG, "--%s %lld: must be at least 1", name, (long long)fixed);
    if (given)
        *lo = *hi = fixed;
    return SS_OK;
}

/* One socket per request in flight: lift the soft open-file limit towards the hard one when the run
 * needs more than it allows (1000 concurrent requests against a common soft limit of 1024). */
static void bench_raise_nofile(int64_t in_flight)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) != 0)
        return;
    rlim_t want = (rlim_t)in_flight + 64;
    if (rl.rlim_cur != RLIM_INFINITY && rl.rlim_cur < want) {
        rl.rlim_cur = (rl.rlim_max == RLIM_INFINITY || rl.rlim_max > want) ? want : rl.rlim_max;
        if (setrlimit(RLIMIT_NOFILE, &rl) != 0 || rl.rlim_cur < want)
            SS_LOGW("bench: the open-file limit (%llu) is below %lld requests in flight; some may fail to connect",
                    (unsigned long long)rl.rlim_cur, (long long)in_flight);
    }
}

int ss_cmd_bench(int argc, char **argv, char **env)
{
    ss_bench_params p;
    ss_bench_default_params(&p);
    ss_bench_workload_params *w = &p.workload;
    int64_t num_requests = w->num_requests, input_len = INT64_MIN, output_len = INT64_MIN, seed = 0;
    const char *input_range = NULL, *output_range = NULL, *vocab_range = NULL, *requests_path = NULL;
    int json = 0, quiet = 0;
    const ss_opt opts[] = {
        {"url", SS_OPT_STR, &p.url, "server base URL (default http://127.0.0.1:8000)"},
        {"model", SS_OPT_STR, &p.model,
         "model name (default: the first of GET /v1/models); environment: SHARDSERVE_BENCH_MODEL (SHARDSERVE_MODEL "
         "is serve's model folder or id, not read here)"},
        {"api-key", SS_OPT_STR, &p.api_key, "sent as Authorization: Bearer KEY"},
        {"num-requests", SS_OPT_INT, &num_requests, "measured requests (default 100)"},
        {"input-len", SS_OPT_INT, &input_len, "prompt tokens per request (default 128)"},
        {"input-len-range", SS_OPT_STR, &input_range, "A:B prompt tokens, uniform in [A, B]"},
        {"output-len", SS_OPT_INT, &output_len, "max_tokens per request (default 128)"},
        {"output-len-range", SS_OPT_STR, &output_range, "A:B max_tokens, uniform in [A, B]"},
        {"vocab-range", SS_OPT_STR, &vocab_range, "LO:HI random prompt ids in [LO, HI) (default 1000:20000, narrowed to the server's vocab_size)"},
        {"prompt", SS_OPT_STR, &p.prompt_text, "a text prompt for every request instead of random ids"},
        {"concurrency", SS_OPT_INT, &p.concurrency, "most requests in flight (closed loop); 0 = no cap"},
        {"request-rate", SS_OPT_FLOAT, &w->request_rate, "Poisson arrivals, requests/s; 0 = all at once"},
        {"seed", SS_OPT_INT, &seed, "seed of lengths, prompts and arrivals (default 0)"},
        {"warmup", SS_OPT_INT, &p.warmup, "requests sent and discarded before measuring (default 0)"},
        {"timeout", SS_OPT_FLOAT, &p.timeout_s, "per-request timeout in seconds; 0 = none (default 600)"},
        {"temperature", SS_OPT_FLOAT, &p.temperature, "sampling temperature (default 0)"},
        {"ignore-eos", SS_OPT_BOOL, &p.ignore_eos, "send ignore_eos so outputs run to max_tokens (default true)"},
        {"extra-body", SS_OPT_STR, &p.extra_body, "JSON object whose fields are set in every request, e.g. '{\"response_format\":{\"type\":\"json_object\"}}'"},
        {"json", SS_OPT_BOOL, &json, "print the report as one JSON object"},
        {"requests-out", SS_OPT_STR, &requests_path, "FILE: one JSON line per measured request (start, TTFT, longest gap, ...)"},
        {"quiet", SS_OPT_BOOL, &quiet, "no log lines on stderr"},
        {NULL, 0, NULL, NULL},
    };
    ss_err err = {""};
    /* bench's --model names a served model, while SHARDSERVE_MODEL is serve's model (a folder or a Hub id), set in the
     * same environment in a serving pod: read there, every request asked for the path and got 404 (helper-80). So
     * bench leaves it out; its twin is SHARDSERVE_BENCH_MODEL. (The options keep pointers into env's strings only.) */
    size_t n_env = 0;
    while (env && env[n_env])
        n_env++;
    char **benv = ss_calloc(n_env + 1, sizeof *benv);
    if (!benv) {
        fprintf(stderr, "shardserve bench: out of memory\n");
        return SS_EXIT_OOM;
    }
    for (size_t i = 0, k = 0; i < n_env; i++)
        if (strncmp(env[i], "SHARDSERVE_MODEL=", 17) != 0)
            benv[k++] = env[i];
    ss_status st = ss_opts_parse(opts, argc, argv, 2, benv, "bench", &err);
    const char *bench_model = env ? ss_env_get(env, "SHARDSERVE_BENCH_MODEL") : NULL;
    if (st == SS_OK && !p.model && bench_model && *bench_model)
        p.model = bench_model;
    if (st == SS_ERR_CANCELLED) {
        ss_free(benv);
        return SS_EXIT_OK;
    }
    if (st == SS_OK)
        st = bench_len("input-len", input_len, input_range, &w->input_min, &w->input_max, &err);
    if (st == SS_OK)
        st = bench_len("output-len", output_len, output_range, &w->output_min, &w->output_max, &err);
    if (st == SS_OK && vocab_range)
        st = ss_bench_parse_range(vocab_range, "--vocab-range", &w->vocab_lo, &w->vocab_hi, &err);
    p.fit_vocab = vocab_range == NULL;
    if (p.extra_body && !*p.extra_body)
        p.extra_body = NULL;
    if (st == SS_OK && p.extra_body)
        st = ss_bench_extra_body_check(p.extra_body, &err);
    if (st == SS_OK && seed < 0)
        st = ss_err_set(&err, SS_ERR_INVALID_ARG, "--seed: must be >= 0");
    if (st != SS_OK) {
        const ss_opts_src src = {opts, argc, argv, 2, benv};
        ss_opts_explain(&src, &err);
        fprintf(stderr, "shardserve bench: %s\n", err.msg);
    }
    ss_free(benv);
    if (st != SS_OK)
        return SS_EXIT_USAGE;
    w->num_requests = num_requests;
    w->seed = (uint64_t)seed;
    if (p.prompt_text && !*p.prompt_text)
        p.prompt_text = NULL;
    if (p.model && !*p.model)
        p.model = NULL;
    if (quiet)
        ss_log_init(SS_LOG_ERROR, "bench");

    bench_raise_nofile(p.concurrency > 0 && p.concurrency < w->num_requests ? p.concurrency : w->num_requests);

    if (requests_path && *requests_path) {
        p.requests_out = fopen(requests_path, "w");
        if (!p.requests_out) {
            fprintf(stderr, "shardserve bench: --requests-out %s: %s\n", requests_path, strerror(errno));
            return SS_EXIT_USAGE;
        }
    }
    ss_bench_result res;
    st = ss_bench_run(&p, &res, &err);
    if (p.requests_out && fclose(p.requests_out) != 0 && st == SS_OK)
        st = ss_err_set(&err, SS_ERR_IO, "--requests-out %s: %s", requests_path, strerror(errno));
    if (st != SS_OK) {
        fprintf(stderr, "shardserve bench: %s\n", err.msg);
        return st == SS_ERR_INVALID_ARG ? SS_EXIT_USAGE : SS_EXIT_FAILURE;
    }
    if (json) {
        char *txt = NULL;
        st = ss_bench_report_json(&p, &res, &txt, &err);
        if (st != SS_OK) {
            fprintf(stderr, "shardserve bench: %s\n", err.msg);
            return SS_EXIT_FAILURE;
        }
        printf("%s\n", txt);
        ss_free(txt);
    } else {
        ss_bench_report_text(&p, &res, stdout);
    }
    fflush(stdout);
    /* A run with failed requests still reports, but exits non-zero so that scripts notice. */
    return res.requests_failed > 0 ? SS_EXIT_FAILURE : SS_EXIT_OK;
}

/* bench_run.h — `shardserve bench`'s load generator: drives any OpenAI-compatible server with a seeded
 * workload (closed loop at a fixed concurrency, or Poisson arrivals at a rate) over streaming
 * /v1/completions, and measures TTFT, inter-token latency, end-to-end latency and throughput. */
#ifndef SS_BENCH_RUN_H
#define SS_BENCH_RUN_H

#include <stdint.h>
#include <stdio.h>

#include "bench/bench_stats.h"
#include "bench/bench_workload.h"
#include "core/status.h"

typedef struct ss_bench_params {
    const char *url;         /* server base URL, e.g. "http://127.0.0.1:8000" (borrowed) */
    const char *model;       /* model name; NULL asks GET {url}/v1/models for the first one (borrowed) */
    const char *api_key;     /* sent as "Authorization: Bearer ..." when non-NULL (borrowed) */
    const char *prompt_text; /* the same text prompt for every request instead of random ids, or NULL */
    ss_bench_workload_params workload;
    int64_t concurrency; /* most requests in flight at once; 0 = no cap */
    int64_t warmup;      /* requests sent (at the same concurrency) and discarded before the run */
    double timeout_s;    /* per-request deadline, whole request; 0 = none */
    double temperature;
    int ignore_eos; /* ask the server to generate exactly max_tokens (vLLM's extension) */
    const char *extra_body; /* JSON text of an object merged into every request body (borrowed), or NULL */
    int fit_vocab;  /* the id range is the default: narrow it to the vocab_size GET {url}/v1/models states */
    FILE *requests_out; /* one JSON object a line for each measured request (when it started, its TTFT, its
                         * longest token gap, ...), in completion order, or NULL (borrowed, not closed) */
} ss_bench_params;

void ss_bench_default_params(ss_bench_params *p);

/* Why a request failed. */
typedef enum ss_bench_err_kind {
    SS_BENCH_ERR_HTTP,       /* the server answered a non-2xx status */
    SS_BENCH_ERR_CONNECT,    /* could not resolve or connect */
    SS_BENCH_ERR_TIMEOUT,    /* the per-request deadline passed */
    SS_BENCH_ERR_BAD_STREAM, /* 2xx, but the event stream was malformed, carried an error or lacked [DONE] */
    SS_BENCH_ERR_OTHER,      /* any other transport failure (connection reset mid-stream, ...) */
    SS_BENCH_ERR_KIND_COUNT
} ss_bench_err_kind;

/* "http", "connect", "timeout", "bad_stream", "other". */
const char *ss_bench_err_kind_str(ss_bench_err_kind k);

#define SS_BENCH_MAX_STATUS_CODES 16

typedef struct ss_bench_result {
    char model[256];   /* the model the run used */
    int64_t vocab_lo, vocab_hi; /* the prompt id range the run used (see ss_bench_params.fit_vocab) */
    double duration_s; /* first send to last completion, warm-up excluded */
    int64_t requests_ok;
    int64_t requests_failed;
    int64_t errors[SS_BENCH_ERR_KIND_COUNT];
    char first_error[SS_BENCH_ERR_KIND_COUNT][256]; /* the first message of each kind, "" if none */
    int n_status; /* distinct non-2xx HTTP statuses seen (at most SS_BENCH_MAX_STATUS_CODES) */
    long status_code[SS_BENCH_MAX_STATUS_CODES];
    int64_t status_count[SS_BENCH_MAX_STATUS_CODES];
    int64_t input_tokens;  /* of successful requests: usage.prompt_tokens, else the planned length */
    int64_t output_tokens; /* of successful requests: usage.completion_tokens, else the chunk count */
    int64_t output_chunks; /* streamed chunks with a choice, of successful requests */
    int64_t short_outputs; /* successful requests that returned fewer tokens than max_tokens */
    int64_t warmup_ok;
    int64_t warmup_failed;
    ss_bench_summary ttft_ms; /* send -> first chunk carrying a choice */
    ss_bench_summary itl_ms;  /* gaps between consecutive chunks carrying a choice */
    ss_bench_summary tpot_ms; /* per request: (e2e - ttft) / (output_tokens - 1) */
    ss_bench_summary e2e_ms;  /* send -> end of the response */
} ss_bench_result;

/* Runs the whole benchmark (warm-up, then the measured requests) on the calling thread and fills *out.
 * Failed requests are counted in *out, not returned as errors; the return value is not SS_OK only when
 * the run itself could not proceed (bad params, out of memory, model lookup failed). Calls
 * curl_global_init/cleanup, so it must not run on several threads at once (the CLI runs it once). */
ss_status ss_bench_run(const ss_bench_params *p, ss_bench_result *out, ss_err *err);

#endif

/* bench_workload.h — the seeded, reproducible workload of `shardserve bench`: per-request prompt and
 * output lengths, Poisson arrival times and random prompt token ids, all derived from one seed. */
#ifndef SS_BENCH_WORKLOAD_H
#define SS_BENCH_WORKLOAD_H

#include <stddef.h>
#include <stdint.h>

#include "core/status.h"

/* xoshiro256** seeded through splitmix64: fast, good statistical quality, same stream everywhere. */
typedef struct ss_bench_rng {
    uint64_t s[4];
} ss_bench_rng;

void ss_bench_rng_seed(ss_bench_rng *r, uint64_t seed);
uint64_t ss_bench_rng_next(ss_bench_rng *r);
/* Uniform in [0, 1), 53 random bits. */
double ss_bench_rng_uniform(ss_bench_rng *r);
/* Uniform integer in [lo, hi) without modulo bias; lo when hi <= lo. */
int64_t ss_bench_rng_range(ss_bench_rng *r, int64_t lo, int64_t hi);
/* Exponentially distributed with the given rate (> 0): the gap between Poisson arrivals. */
double ss_bench_rng_exponential(ss_bench_rng *r, double rate);

#define SS_BENCH_MAX_REQUESTS ((int64_t)10000000)
#define SS_BENCH_MAX_LEN ((int64_t)1 << 20) /* tokens, for prompt and output lengths */

typedef struct ss_bench_workload_params {
    int64_t num_requests;
    int64_t input_min, input_max;   /* prompt length in tokens, uniform in [min, max] (inclusive) */
    int64_t output_min, output_max; /* max_tokens, uniform in [min, max] (inclusive) */
    int64_t vocab_lo, vocab_hi;     /* prompt token ids are uniform in [lo, hi) */
    double request_rate;            /* requests/s of a Poisson process; 0 = every request at t = 0 */
    uint64_t seed;
} ss_bench_workload_params;

void ss_bench_workload_default_params(ss_bench_workload_params *p);

/* One planned request. */
typedef struct ss_bench_request_plan {
    int64_t input_len;
    int64_t output_len;
    double arrival_s;     /* send time, seconds after the start of the run */
    uint64_t prompt_seed; /* seeds this request's prompt ids (independent of send order) */
} ss_bench_request_plan;

/* Checks p; SS_ERR_INVALID_ARG names the offending field. */
ss_status ss_bench_workload_check(const ss_bench_workload_params *p, ss_err *err);

/* Plans p->num_requests requests. *out ([num_requests]) is owned by the caller (ss_free). The same
 * params always give the same plan. */
ss_status ss_bench_plan_create(const ss_bench_workload_params *p, ss_bench_request_plan **out, ss_err *err);

/* Parses "a:b" (two decimal integers) into *a and *b; flag names the flag for the message. No order
 * check (the caller knows whether a:b is inclusive or half-open). */
ss_status ss_bench_parse_range(const char *s, const char *flag, int64_t *a, int64_t *b, ss_err *err);

/* Writes the plan's input_len prompt ids, uniform in [vocab_lo, vocab_hi), into ids[0..input_len). */
void ss_bench_prompt_ids(const ss_bench_request_plan *rq, int64_t vocab_lo, int64_t vocab_hi, int64_t *ids);

#endif

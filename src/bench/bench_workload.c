/* bench_workload.c — seeded request plans and prompt ids for `shardserve bench` (see bench_workload.h). */
#include "bench/bench_workload.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>

#include "core/alloc.h"

static uint64_t workload_splitmix(uint64_t *x)
{
    uint64_t z = (*x += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

static uint64_t workload_rotl(uint64_t x, int k)
{
    return (x << k) | (x >> (64 - k));
}

void ss_bench_rng_seed(ss_bench_rng *r, uint64_t seed)
{
    uint64_t x = seed;
    for (int i = 0; i < 4; i++)
        r->s[i] = workload_splitmix(&x);
}

uint64_t ss_bench_rng_next(ss_bench_rng *r)
{
    uint64_t *s = r->s;
    uint64_t out = workload_rotl(s[1] * 5, 7) * 9;
    uint64_t t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = workload_rotl(s[3], 45);
    return out;
}

double ss_bench_rng_uniform(ss_bench_rng *r)
{
    return (double)(ss_bench_rng_next(r) >> 11) * 0x1.0p-53;
}

int64_t ss_bench_rng_range(ss_bench_rng *r, int64_t lo, int64_t hi)
{
    if (hi <= lo)
        return lo;
    uint64_t span = (uint64_t)hi - (uint64_t)lo;
    /* Reject the top partial block so every value is equally likely. */
    uint64_t limit = UINT64_MAX - (UINT64_MAX % span);
    uint64_t x;
    do {
        x = ss_bench_rng_next(r);
    } while (x >= limit);
    return (int64_t)((uint64_t)lo + x % span);
}

double ss_bench_rng_exponential(ss_bench_rng *r, double rate)
{
    /* 1 - u lies in (0, 1], so the log is finite. */
    return -log(1.0 - ss_bench_rng_uniform(r)) / rate;
}

void ss_bench_workload_default_params(ss_bench_workload_params *p)
{
    p->num_requests = 100;
    p->input_min = p->input_max = 128;
    p->output_min = p->output_max = 128;
    p->vocab_lo = 1000;
    p->vocab_hi = 20000;
    p->request_rate = 0.0;
    p->seed = 0;
}

ss_status ss_bench_workload_check(const ss_bench_workload_params *p, ss_err *err)
{
    if (p->num_requests < 1 || p->num_requests > SS_BENCH_MAX_REQUESTS)
        return ss_err_set(err, SS_ERR_INVALID_ARG, "--num-requests: %lld is outside [1, %lld]",
                          (long long)p->num_requests, (long long)SS_BENCH_MAX_REQUESTS);
    if (p->input_min < 1 || p->input_max < p->input_min || p->input_max > SS_BENCH_MAX_LEN)
        return ss_err_set(err, SS_ERR_INVALID_ARG, "--input-len: range %lld:%lld must satisfy 1 <= a <= b <= %lld",
                          (long long)p->input_min, (long long)p->input_max, (long long)SS_BENCH_MAX_LEN);
    if (p->output_min < 1 || p->output_max < p->output_min || p->output_max > SS_BENCH_MAX_LEN)
        return ss_err_set(err, SS_ERR_INVALID_ARG, "--output-len: range %lld:%lld must satisfy 1 <= a <= b <= %lld",
                          (long long)p->output_min, (long long)p->output_max, (long long)SS_BENCH_MAX_LEN);
    if (p->vocab_lo < 0 || p->vocab_hi <= p->vocab_lo)
        return ss_err_set(err, SS_ERR_INVALID_ARG, "--vocab-range: %lld:%lld must satisfy 0 <= lo < hi",
                          (long long)p->vocab_lo, (long long)p->vocab_hi);
    if (!(p->request_rate >= 0.0) || isinf(p->request_rate))
        return ss_err_set(err, SS_ERR_INVALID_ARG, "--request-rate: must be a finite number >= 0 (0 = all at once)");
    return SS_OK;
}

ss_status ss_bench_plan_create(const ss_bench_workload_params *p, ss_bench_request_plan **out, ss_err *err)
{
    *out = NULL;
    ss_status st = ss_bench_workload_check(p, err);
    if (st != SS_OK)
        return st;
    ss_bench_request_plan *plan = ss_calloc((size_t)p->num_requests, sizeof *plan);
    if (!plan)
        return ss_err_set(err, SS_ERR_NOMEM, "bench: out of memory for %lld request plans", (long long)p->num_requests);
    /* Separate streams for lengths, arrivals and prompt seeds: changing the rate keeps the prompts. */
    ss_bench_rng len_rng, arr_rng, seed_rng;
    ss_bench_rng_seed(&len_rng, p->seed);
    ss_bench_rng_seed(&arr_rng, p->seed ^ 0x5851f42d4c957f2dULL);
    ss_bench_rng_seed(&seed_rng, p->seed ^ 0x14057b7ef767814fULL);
    double t = 0.0;
    for (int64_t i = 0; i < p->num_requests; i++) {
        ss_bench_request_plan *rq = &plan[i];
        rq->input_len = ss_bench_rng_range(&len_rng, p->input_min, p->input_max + 1);
        rq->output_len = ss_bench_rng_range(&len_rng, p->output_min, p->output_max + 1);
        if (p->request_rate > 0.0 && i > 0)
            t += ss_bench_rng_exponential(&arr_rng, p->request_rate);
        rq->arrival_s = t;
        rq->prompt_seed = ss_bench_rng_next(&seed_rng);
    }
    *out = plan;
    return SS_OK;
}

void ss_bench_prompt_ids(const ss_bench_request_plan *rq, int64_t vocab_lo, int64_t vocab_hi, int64_t *ids)
{
    ss_bench_rng r;
    ss_bench_rng_seed(&r, rq->prompt_seed);
    for (int64_t i = 0; i < rq->input_len; i++)
        ids[i] = ss_bench_rng_range(&r, vocab_lo, vocab_hi);
}

static int workload_int(const char *s, const char **end, int64_t *out)
{
    char *e = NULL;
    errno = 0;
    long long v = strtoll(s, &e, 10);
    if (errno || e == s)
        return 0;
    *end = e;
    *out = v;
    return 1;
}

ss_status ss_bench_parse_range(const char *s, const char *flag, int64_t *a, int64_t *b, ss_err *err)
{
    const char *e = NULL;
    int64_t x, y;
    if (!s || !workload_int(s, &e, &x) || *e != ':' || !workload_int(e + 1, &e, &y) || *e != '\0')
        return ss_err_set(err, SS_ERR_INVALID_ARG, "%s: expected two integers as a:b, got '%s'", flag, s ? s : "");
    *a = x;
    *b = y;
    return SS_OK;
}

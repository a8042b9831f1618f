/* bench_stats.c — sample lists and exact percentiles for `shardserve bench` (see bench_stats.h). */
#include "bench/bench_stats.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/alloc.h"

ss_status ss_bench_samples_push(ss_bench_samples *s, double x)
{
    size_t max = s->max ? s->max : SS_BENCH_SAMPLES_MAX;
    if (s->n >= max)
        return SS_ERR_CAPACITY;
    if (s->n == s->cap) {
        size_t cap = s->cap ? s->cap * 2 : 64;
        if (cap > max)
            cap = max;
        double *v = ss_realloc(s->v, cap * sizeof *v);
        if (!v)
            return SS_ERR_NOMEM;
        s->v = v;
        s->cap = cap;
    }
    s->v[s->n++] = x;
    return SS_OK;
}

void ss_bench_samples_free(ss_bench_samples *s)
{
    ss_free(s->v);
    s->v = NULL;
    s->n = 0;
    s->cap = 0;
}

ss_status ss_bench_percentile(const double *sorted, size_t n, double q, double *out)
{
    if (n == 0 || !(q >= 0.0 && q <= 100.0))
        return SS_ERR_INVALID_ARG;
    double rank = q / 100.0 * (double)(n - 1);
    size_t lo = (size_t)floor(rank);
    if (lo >= n - 1) {
        *out = sorted[n - 1];
        return SS_OK;
    }
    double frac = rank - (double)lo;
    *out = sorted[lo] + (sorted[lo + 1] - sorted[lo]) * frac;
    return SS_OK;
}

static int stats_cmp(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

void ss_bench_summarize(double *v, size_t n, ss_bench_summary *out)
{
    memset(out, 0, sizeof *out);
    if (n == 0)
        return;
    qsort(v, n, sizeof *v, stats_cmp);
    double sum = 0.0;
    for (size_t i = 0; i < n; i++)
        sum += v[i];
    double mean = sum / (double)n, var = 0.0;
    for (size_t i = 0; i < n; i++)
        var += (v[i] - mean) * (v[i] - mean);
    out->n = n;
    out->mean = mean;
    out->stddev = sqrt(var / (double)n);
    out->min = v[0];
    out->max = v[n - 1];
    /* n > 0 and the quantiles are constants in range: these cannot fail. */
    (void)ss_bench_percentile(v, n, 50.0, &out->p50);
    (void)ss_bench_percentile(v, n, 90.0, &out->p90);
    (void)ss_bench_percentile(v, n, 99.0, &out->p99);
}

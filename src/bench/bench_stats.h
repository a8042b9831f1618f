/* bench_stats.h — exact latency statistics for `shardserve bench`: growable sample lists and
 * mean / percentiles computed by sorting (no histograms), so that reported figures are exact. */
#ifndef SS_BENCH_STATS_H
#define SS_BENCH_STATS_H

#include <stddef.h>

#include "core/status.h"

/* A growable list of samples (milliseconds, usually). Zero-initialise it ({0}) before first use;
 * it owns its buffer, released by ss_bench_samples_free. Not thread-safe. */
typedef struct ss_bench_samples {
    double *v; /* [n] */
    size_t n;
    size_t cap;
    size_t max; /* hard cap on n (0 = SS_BENCH_SAMPLES_MAX) */
} ss_bench_samples;

#define SS_BENCH_SAMPLES_MAX ((size_t)1 << 28)

/* Appends x. SS_ERR_NOMEM when allocation fails, SS_ERR_CAPACITY past the cap. */
ss_status ss_bench_samples_push(ss_bench_samples *s, double x);
void ss_bench_samples_free(ss_bench_samples *s);

/* Summary of one metric. Every field is 0 when n == 0. */
typedef struct ss_bench_summary {
    size_t n;
    double mean;
    double stddev; /* population standard deviation */
    double min;
    double max;
    double p50;
    double p90;
    double p99;
} ss_bench_summary;

/* The q-th percentile (0 <= q <= 100) of n ascending values, by linear interpolation between the two
 * closest ranks: rank = q/100 * (n-1) (numpy's default "linear" method, the one vLLM's benchmark
 * reports, so figures compare like for like). SS_ERR_INVALID_ARG for n == 0 or q outside [0, 100]. */
ss_status ss_bench_percentile(const double *sorted, size_t n, double q, double *out);

/* Sorts v[0..n) in place (ascending) and fills *out. n == 0 gives an all-zero summary. */
void ss_bench_summarize(double *v, size_t n, ss_bench_summary *out);

#endif

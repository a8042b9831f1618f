/* bench_report.h — `shardserve bench`'s report: the run's parameters and results as aligned text for
 * people, or as one JSON object (--json) for scripts and docs/performance.md. */
#ifndef SS_BENCH_REPORT_H
#define SS_BENCH_REPORT_H

#include <stdio.h>

#include "bench/bench_run.h"
#include "core/status.h"

/* One JSON object: {"parameters": {...}, "duration_s", "requests": {"total","ok","failed"},
 * "errors": {"http","connect","timeout","bad_stream","other","http_status": {"500": n},
 * "first": {kind: message}}, "tokens": {"input","output","output_chunks","short_outputs"},
 * "throughput": {"requests_per_s","input_tokens_per_s","output_tokens_per_s"},
 * "ttft_ms"/"itl_ms"/"tpot_ms"/"e2e_ms": {"n","mean","stddev","min","max","p50","p90","p99"},
 * "warmup": {"ok","failed"}}. *out (NUL-terminated) is owned by the caller (ss_free). */
ss_status ss_bench_report_json(const ss_bench_params *p, const ss_bench_result *r, char **out, ss_err *err);

/* Writes the same content as text to f. */
void ss_bench_report_text(const ss_bench_params *p, const ss_bench_result *r, FILE *f);

#endif

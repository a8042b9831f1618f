/* metrics.h — Prometheus text exposition (format 0.0.4) of the server: the reference's nv_inference_*
 * families, the vllm:* gauges the Gateway API Inference Extension reads, and shardserve_* histograms,
 * gauges and counters. Observations are thread-safe; rendering takes a scheduler stats snapshot. */
#ifndef SS_METRICS_H
#define SS_METRICS_H

#include <stddef.h>
#include <stdint.h>

#include "core/status.h"
#include "serve/sched.h"

typedef struct ss_metrics ss_metrics;

/* Why a request failed, as nv_inference_request_failure{reason} labels it. */
typedef enum ss_metrics_failure {
    SS_METRICS_FAIL_REJECTED = 0, /* refused before running: validation, queue full, not ready */
    SS_METRICS_FAIL_CANCELED,     /* client went away */
    SS_METRICS_FAIL_BACKEND,      /* the replica failed the step */
    SS_METRICS_FAIL_OTHER,        /* deadline, internal error */
    SS_METRICS_FAIL_COUNT
} ss_metrics_failure;

/* Timings of one finished generation (microseconds). */
typedef struct ss_metrics_request {
    int64_t queue_us;   /* arrival -> first scheduled */
    int64_t ttft_us;    /* arrival -> first token */
    int64_t e2e_us;     /* arrival -> done */
} ss_metrics_request;

/* model: the served name, copied. Caller destroys. */
ss_status ss_metrics_create(const char *model, ss_metrics **out);
void ss_metrics_destroy(ss_metrics *m);

void ss_metrics_request_ok(ss_metrics *m, const ss_metrics_request *r);
void ss_metrics_request_failed(ss_metrics *m, ss_metrics_failure reason, const ss_metrics_request *r_or_null);
void ss_metrics_observe_itl(ss_metrics *m, double seconds);
void ss_metrics_set_load_seconds(ss_metrics *m, double seconds);
void ss_metrics_add_comm_seconds(ss_metrics *m, double seconds);
/* The requests whose bodies wait for or run on the server's work pool (parsed, tokenized), as the loop thread
 * counts them; set before each rendering. */
void ss_metrics_set_tokenizing(ss_metrics *m, int64_t requests);

/* Renders the whole exposition. stats may be NULL (scheduler not up: its gauges read 0).
 * Returns ss_malloc'd text (caller ss_frees) or NULL on no memory. */
char *ss_metrics_render(ss_metrics *m, const ss_sched_stats *stats, size_t *len);

#endif

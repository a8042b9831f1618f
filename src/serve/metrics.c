/* metrics.c — counters and cumulative histograms behind one mutex, rendered in the Prometheus text
 * format 0.0.4 (# HELP / # TYPE, _bucket{le}/_sum/_count). */
#include "serve/metrics.h"

#include <pthread.h>
#include <stdio.h>
#include <string.h>

#include "core/alloc.h"
#include "serve/api_common.h"

#define MET_MAX_BUCKETS 24

typedef struct met_hist {
    const double *bounds; /* upper bounds, ascending (+Inf implied) */
    int n_bounds;
    int64_t counts[MET_MAX_BUCKETS + 1]; /* per bucket, not cumulative; last = +Inf */
    double sum;
    int64_t count;
} met_hist;

static const double met_latency_bounds[] = {0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5,
                                            0.75,  1.0,   2.5,  5.0,  7.5,  10.0, 20.0, 40.0, 80.0, 160.0};
static const double met_itl_bounds[] = {0.001, 0.0025, 0.005, 0.0075, 0.01, 0.015, 0.02, 0.025, 0.03, 0.04,
                                        0.05,  0.075,  0.1,   0.15,   0.2,  0.3,   0.4,  0.5,   0.75, 1.0, 2.5};

struct ss_metrics {
    pthread_mutex_t mu;
    char *model;
    int64_t success, failure[SS_METRICS_FAIL_COUNT];
    int64_t inference_count;
    int64_t request_duration_us, queue_duration_us, compute_duration_us;
    met_hist ttft, itl, queue, e2e;
    double load_seconds, comm_seconds;
    int64_t tokenizing; /* requests on the work pool (ss_metrics_set_tokenizing) */
};

static const char *const met_fail_names[SS_METRICS_FAIL_COUNT] = {"REJECTED", "CANCELED", "BACKEND", "OTHER"};

static void met_hist_init(met_hist *h, const double *bounds, int n)
{
    memset(h, 0, sizeof *h);
    h->bounds = bounds;
    h->n_bounds = n < MET_MAX_BUCKETS ? n : MET_MAX_BUCKETS;
}

static void met_hist_observe(met_hist *h, double v)
{
    if (v < 0)
        v = 0;
    int i = 0;
    while (i < h->n_bounds && v > h->bounds[i])
        i++;
    h->counts[i]++;
    h->sum += v;
    h->count++;
}

ss_status ss_metrics_create(const char *model, ss_metrics **out)
{
    *out = NULL;
    ss_metrics *m = ss_calloc(1, sizeof *m);
    if (!m)
        return SS_ERR_NOMEM;
    m->model = ss_strdup(model ? model : "");
    if (!m->model || pthread_mutex_init(&m->mu, NULL) != 0) {
        ss_free(m->model);
        ss_free(m);
        return SS_ERR_NOMEM;
    }
    met_hist_init(&m->ttft, met_latency_bounds, (int)(sizeof met_latency_bounds / sizeof *met_latency_bounds));
    met_hist_init(&m->queue, met_latency_bounds, (int)(sizeof met_latency_bounds / sizeof *met_latency_bounds));
    met_hist_init(&m->e2e, met_latency_bounds, (int)(sizeof met_latency_bounds / sizeof *met_latency_bounds));
    met_hist_init(&m->itl, met_itl_bounds, (int)(sizeof met_itl_bounds / sizeof *met_itl_bounds));
    *out = m;
    return SS_OK;
}

void ss_metrics_destroy(ss_metrics *m)
{
    if (!m)
        return;
    pthread_mutex_destroy(&m->mu);
    ss_free(m->model);
    ss_free(m);
}

static void met_record_timings(ss_metrics *m, const ss_metrics_request *r)
{
    m->inference_count++;
    m->request_duration_us += r->e2e_us > 0 ? r->e2e_us : 0;
    m->queue_duration_us += r->queue_us > 0 ? r->queue_us : 0;
    int64_t compute = r->e2e_us - r->queue_us;
    m->compute_duration_us += compute > 0 ? compute : 0;
    met_hist_observe(&m->queue, (double)r->queue_us / 1e6);
    met_hist_observe(&m->e2e, (double)r->e2e_us / 1e6);
    if (r->ttft_us > 0)
        met_hist_observe(&m->ttft, (double)r->ttft_us / 1e6);
}

void ss_metrics_request_ok(ss_metrics *m, const ss_metrics_request *r)
{
    pthread_mutex_lock(&m->mu);
    m->success++;
    met_record_timings(m, r);
    pthread_mutex_unlock(&m->mu);
}

void ss_metrics_request_failed(ss_metrics *m, ss_metrics_failure reason, const ss_metrics_request *r_or_null)
{
    if ((int)reason < 0 || reason >= SS_METRICS_FAIL_COUNT)
        reason = SS_METRICS_FAIL_OTHER;
    pthread_mutex_lock(&m->mu);
    m->failure[reason]++;
    if (r_or_null)
        met_record_timings(m, r_or_null);
    pthread_mutex_unlock(&m->mu);
}

void ss_metrics_observe_itl(ss_metrics *m, double seconds)
{
    pthread_mutex_lock(&m->mu);
    met_hist_observe(&m->itl, seconds);
    pthread_mutex_unlock(&m->mu);
}

void ss_metrics_set_load_seconds(ss_metrics *m, double seconds)
{
    pthread_mutex_lock(&m->mu);
    m->load_seconds = seconds;
    pthread_mutex_unlock(&m->mu);
}

void ss_metrics_add_comm_seconds(ss_metrics *m, double seconds)
{
    pthread_mutex_lock(&m->mu);
    m->comm_seconds += seconds;
    pthread_mutex_unlock(&m->mu);
}

void ss_metrics_set_tokenizing(ss_metrics *m, int64_t requests)
{
    pthread_mutex_lock(&m->mu);
    m->tokenizing = requests;
    pthread_mutex_unlock(&m->mu);
}

/* ---- rendering ---------------------------------------------------------------------------------- */

/* Label value escaping of the text format: backslash, double quote and newline. */
static void met_label_value(ss_jbuf *b, const char *s)
{
    for (; *s; s++) {
        if (*s == '\\')
            ss_jbuf_raw(b, "\\\\", 2);
        else if (*s == '"')
            ss_jbuf_raw(b, "\\\"", 2);
        else if (*s == '\n')
            ss_jbuf_raw(b, "\\n", 2);
        else
            ss_jbuf_raw(b, s, 1);
    }
}

static void met_family(ss_jbuf *b, const char *name, const char *type, const char *help)
{
    ss_jbuf_printf(b, "# HELP %s ", name);
    ss_jbuf_cstr(b, help);
    ss_jbuf_printf(b, "\n# TYPE %s %s\n", name, type);
}

/* labels: "model" (model + version) or "model_name" (vllm style). */
static void met_labels(ss_jbuf *b, const ss_metrics *m, int nv, const char *extra_key, const char *extra_val)
{
    ss_jbuf_cstr(b, nv ? "{model=\"" : "{model_name=\"");
    met_label_value(b, m->model);
    ss_jbuf_cstr(b, nv ? "\",version=\"1\"" : "\"");
    if (extra_key) {
        ss_jbuf_printf(b, ",%s=\"", extra_key);
        met_label_value(b, extra_val);
        ss_jbuf_cstr(b, "\"");
    }
    ss_jbuf_cstr(b, "}");
}

static void met_sample_i(ss_jbuf *b, const ss_metrics *m, const char *name, int nv, int64_t v)
{
    ss_jbuf_cstr(b, name);
    met_labels(b, m, nv, NULL, NULL);
    ss_jbuf_printf(b, " %lld\n", (long long)v);
}

static void met_sample_f(ss_jbuf *b, const ss_metrics *m, const char *name, int nv, double v)
{
    ss_jbuf_cstr(b, name);
    met_labels(b, m, nv, NULL, NULL);
    ss_jbuf_printf(b, " %.9g\n", v);
}

static void met_scalar(ss_jbuf *b, const ss_metrics *m, const char *name, const char *type, const char *help,
                       int nv, int64_t v)
{
    met_family(b, name, type, help);
    met_sample_i(b, m, name, nv, v);
}

static void met_scalar_f(ss_jbuf *b, const ss_metrics *m, const char *name, const char *type, const char *help,
                         int nv, double v)
{
    met_family(b, name, type, help);
    met_sample_f(b, m, name, nv, v);
}

static void met_histogram(ss_jbuf *b, const ss_metrics *m, const char *name, const char *help, const met_hist *h)
{
    char key[160];
    met_family(b, name, "histogram", help);
    int64_t cum = 0;
    for (int i = 0; i <= h->n_bounds; i++) {
        cum += h->counts[i];
        char le[32];
        if (i < h->n_bounds)
            snprintf(le, sizeof le, "%g", h->bounds[i]);
        else
            snprintf(le, sizeof le, "+Inf");
        snprintf(key, sizeof key, "%s_bucket", name);
        ss_jbuf_cstr(b, key);
        met_labels(b, m, 0, "le", le);
        ss_jbuf_printf(b, " %lld\n", (long long)cum);
    }
    snprintf(key, sizeof key, "%s_sum", name);
    met_sample_f(b, m, key, 0, h->sum);
    snprintf(key, sizeof key, "%s_count", name);
    met_sample_i(b, m, key, 0, h->count);
}

char *ss_metrics_render(ss_metrics *m, const ss_sched_stats *stats, size_t *len)
{
    ss_sched_stats zero;
    if (!stats) {
        memset(&zero, 0, sizeof zero);
        stats = &zero;
    }
    ss_jbuf b;
    ss_jbuf_init(&b, (size_t)1 << 22);
    pthread_mutex_lock(&m->mu);

    met_scalar(&b, m, "nv_inference_request_success", "counter",
               "Number of successful inference requests, all batch sizes", 1, m->success);
    met_family(&b, "nv_inference_request_failure", "counter",
               "Number of failed inference requests, all batch sizes");
    for (int i = 0; i < SS_METRICS_FAIL_COUNT; i++) {
        ss_jbuf_cstr(&b, "nv_inference_request_failure");
        met_labels(&b, m, 1, "reason", met_fail_names[i]);
        ss_jbuf_printf(&b, " %lld\n", (long long)m->failure[i]);
    }
    met_scalar(&b, m, "nv_inference_count", "counter",
               "Number of inferences performed (does not include cached requests)", 1, m->inference_count);
    met_scalar(&b, m, "nv_inference_exec_count", "counter",
               "Number of model executions performed (scheduler steps)", 1, stats->steps);
    met_scalar(&b, m, "nv_inference_request_duration_us", "counter",
               "Cumulative inference request duration in microseconds (includes cached requests)", 1,
               m->request_duration_us);
    met_scalar(&b, m, "nv_inference_queue_duration_us", "counter",
               "Cumulative inference queuing duration in microseconds (includes cached requests)", 1,
               m->queue_duration_us);
    met_scalar(&b, m, "nv_inference_compute_infer_duration_us", "counter",
               "Cumulative compute inference duration in microseconds (does not include cached requests)", 1,
               m->compute_duration_us);
    met_scalar(&b, m, "nv_inference_pending_request_count", "gauge",
               "Instantaneous number of pending requests awaiting execution per-model", 1, stats->waiting);

    met_scalar(&b, m, "vllm:num_requests_waiting", "gauge", "Number of requests waiting to be processed", 0,
               stats->waiting);
    met_scalar(&b, m, "vllm:num_requests_running", "gauge", "Number of requests in model execution batches", 0,
               stats->running);
    double usage = stats->kv_blocks_total > 0 ? (double)stats->kv_blocks_used / (double)stats->kv_blocks_total : 0;
    met_scalar_f(&b, m, "vllm:kv_cache_usage_perc", "gauge", "KV-cache usage. 1 means 100 percent usage", 0, usage);

    met_histogram(&b, m, "shardserve_time_to_first_token_seconds", "Time from arrival to the first token",
                  &m->ttft);
    met_histogram(&b, m, "shardserve_inter_token_latency_seconds", "Time between consecutive output tokens",
                  &m->itl);
    met_histogram(&b, m, "shardserve_queue_time_seconds", "Time a request waited before it was scheduled",
                  &m->queue);
    met_histogram(&b, m, "shardserve_e2e_request_latency_seconds", "Time from arrival to the last token",
                  &m->e2e);
    met_scalar(&b, m, "shardserve_requests_running", "gauge",
               "Sequences in the running batch (a request of n choices counts n)", 0, stats->running);
    met_scalar(&b, m, "shardserve_requests_waiting", "gauge",
               "Sequences waiting in the queue (a request of n choices counts n)", 0, stats->waiting);
    met_scalar(&b, m, "shardserve_requests_tokenizing", "gauge",
               "Requests whose bodies are parsed or prompts tokenized on the work pool, or wait for it", 0,
               m->tokenizing);
    met_scalar(&b, m, "shardserve_kv_blocks_used", "gauge", "KV-cache blocks in use", 0, stats->kv_blocks_used);
    met_scalar(&b, m, "shardserve_kv_blocks_free", "gauge", "KV-cache blocks free", 0,
               stats->kv_blocks_total - stats->kv_blocks_used);
    met_scalar(&b, m, "shardserve_prefix_cache_hits_total", "counter", "Prompt tokens served from the prefix cache",
               0, stats->prefix_hits);
    met_scalar(&b, m, "shardserve_prefix_cache_queries_total", "counter",
               "Prompt tokens looked up in the prefix cache", 0, stats->prefix_queries);
    met_scalar(&b, m, "shardserve_preemptions_total", "counter", "Sequences preempted for lack of KV blocks", 0,
               stats->preemptions);
    met_scalar(&b, m, "shardserve_prompt_tokens_total", "counter", "Prompt tokens processed", 0,
               stats->prompt_tokens);
    met_scalar(&b, m, "shardserve_generation_tokens_total", "counter", "Tokens generated", 0,
               stats->generated_tokens);
    met_scalar_f(&b, m, "shardserve_step_seconds_total", "counter", "Time spent in scheduler steps", 0,
                 stats->step_seconds_total);
    met_scalar(&b, m, "shardserve_steps_planned_ahead_total", "counter",
               "Steps submitted before the previous step's tokens were back (overlap)", 0, stats->steps_ahead);
    met_scalar(&b, m, "shardserve_steps_paced_total", "counter",
               "Steps planned ahead only shortly before the previous step's expected end (room for arrivals)", 0,
               stats->steps_paced);
    met_scalar(&b, m, "shardserve_steps_paced_late_total", "counter",
               "Paced steps submitted after the previous step had ended (the device idled briefly)", 0,
               stats->steps_paced_late);
    met_scalar(&b, m, "shardserve_spec_draft_tokens_total", "counter",
               "Draft tokens proposed by prompt lookup (speculative decoding)", 0, stats->spec_draft_tokens);
    met_scalar(&b, m, "shardserve_spec_accepted_tokens_total", "counter",
               "Draft tokens the model confirmed (speculative decoding)", 0, stats->spec_accepted_tokens);
    met_scalar_f(&b, m, "shardserve_comm_seconds_total", "counter", "Time spent in collectives between ranks", 0,
                 m->comm_seconds);
    met_scalar_f(&b, m, "shardserve_load_seconds", "gauge", "Time taken to load the model and warm up", 0,
                 m->load_seconds);

    pthread_mutex_unlock(&m->mu);
    return ss_jbuf_take(&b, len);
}

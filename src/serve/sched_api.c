/* sched_api.c — the scheduler's calls (serve/sched.h): parameters, create and destroy, submit, cancel, statistics,
 * drain. They meet the scheduler thread (sched.c) under its mutex, through its inbox and id map. */
#include "serve/sched.h"

#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/alloc.h"
#include "core/clock.h"
#include "core/log.h"
#include "serve/sched_spec.h"
#include "serve/sched_state.h"

ss_sched_params ss_sched_default_params(void)
{
    ss_sched_params p;
    memset(&p, 0, sizeof(p));
    p.max_waiting = 1024;
    p.max_running = 256;
    p.max_step_tokens = 512;
    p.enable_prefix_cache = 1;
    p.pace = 1;
    p.pace_min_us = 1000;
    p.pace_margin_min_us = 250;
    p.spec_max_running = 4;
    return p;
}

int32_t ss_sched_max_entries(const ss_sched_params *p)
{
    int64_t n = p->max_running;
    if (p->spec_tokens > 0) {
        int64_t spec_seqs = p->spec_max_running < p->max_running ? p->spec_max_running : p->max_running;
        int64_t spec = spec_seqs * (1 + (int64_t)p->spec_tokens);
        n = spec > n ? spec : n;
    }
    return n > INT32_MAX ? INT32_MAX : (int32_t)n;
}

/* Frees what s owns besides its thread, mutex and requests: the KV blocks, the step's arrays, the flights, JSON mode's
 * vocabulary and masks (each possibly never made), and s itself. */
static void sched_free(ss_sched *s)
{
    ss_kv_blocks_destroy(s->kv);
    ss_free(s->running);
    ss_free(s->plan_reqs);
    ss_free(s->plan_spec);
    ss_free(s->plan_seqs);
    ss_free(s->banned_off);
    ss_free(s->plan_tokens);
    ss_free(s->banned);
    ss_guide_vocab_destroy(s->guide);
    ss_guide_batch_destroy(s->masks);
    ss_free(s->mask_due);
    ss_free(s->mask_guide);
    for (int f = 0; f < 2; f++) {
        ss_free(s->fl[f].reqs);
        ss_free(s->fl[f].tokens);
        ss_free(s->fl[f].sample);
        ss_free(s->fl[f].spec);
    }
    ss_free(s);
}

/* A benchmark switch: the number of keys in environment variable name, if set, into *v (a warning, and *v kept, when
 * it is not a number >= 0). */
static void env_keys(const char *name, double *v)
{
    const char *e = getenv(name);
    char *end = NULL;
    double x = e && *e ? strtod(e, &end) : -1.0;
    if (e && *e && (*end || !isfinite(x) || x < 0.0))
        SS_LOGW("%s=%s is not a number of keys: ignored", name, e);
    else if (e && *e)
        *v = x;
}

ss_status ss_sched_create(const ss_sched_params *params, ss_replica *replica, const ss_tokenizer *tok, ss_sched **out,
                          ss_err *err)
{
    *out = NULL;
    ss_sched_params p = params ? *params : ss_sched_default_params();
    if (!replica)
        return ss_err_set(err, SS_ERR_INVALID_ARG, "scheduler: no replica");
    if (p.max_waiting < 0 || p.max_running < 1 || p.max_step_tokens < 1)
        return ss_err_set(err, SS_ERR_INVALID_ARG,
                          "scheduler: max_waiting %d, max_running %d, max_step_tokens %d (need >= 0, >= 1, >= 1)",
                          (int)p.max_waiting, (int)p.max_running, (int)p.max_step_tokens);
    if (p.spec_tokens < 0 || p.spec_tokens > SS_SPEC_MAX_TOKENS || (p.spec_tokens > 0 && p.spec_max_running < 1))
        return ss_err_set(err, SS_ERR_INVALID_ARG,
                          "scheduler: %d speculative tokens (0..%d) while at most %d sequences run (>= 1)",
                          (int)p.spec_tokens, SS_SPEC_MAX_TOKENS, (int)p.spec_max_running);
    /* A plan larger than the ranks were sized for would fail the replica: clamp to what it takes. */
    if (p.max_running > ss_replica_max_seqs(replica)) {
        SS_LOGW("scheduler: max_running %d exceeds the replica's %d sequences per step; using %d", (int)p.max_running,
                (int)ss_replica_max_seqs(replica), (int)ss_replica_max_seqs(replica));
        p.max_running = ss_replica_max_seqs(replica);
    }
    if (p.max_step_tokens > ss_replica_max_batch_tokens(replica)) {
        SS_LOGW("scheduler: max_step_tokens %d exceeds the replica's %lld tokens per step; using that",
                (int)p.max_step_tokens, (long long)ss_replica_max_batch_tokens(replica));
        p.max_step_tokens = (int32_t)ss_replica_max_batch_tokens(replica);
    }
    ss_sched *s = ss_calloc(1, sizeof(*s));
    if (!s)
        return ss_err_set(err, SS_ERR_NOMEM, "scheduler: out of memory");
    s->p = p;
    s->replica = replica;
    s->max_entries = ss_sched_max_entries(&p); /* at least max_running, which fits the replica (above) */
    if (s->max_entries > ss_replica_max_seqs(replica))
        s->max_entries = ss_replica_max_seqs(replica);
    s->tok = tok;
    ss_pace_init(&s->pace, p.pace_min_us, p.pace_margin_min_us);
    const char *slow = getenv("SS_STEP_LOG_MS"); /* a diagnostic for latency tails (docs/deploy.md) */
    char *slow_end = NULL;
    double slow_ms = slow && *slow ? strtod(slow, &slow_end) : 0.0;
    if (slow && *slow && (*slow_end || !isfinite(slow_ms) || slow_ms < 0.0 || slow_ms > 1e9)) {
        SS_LOGW("SS_STEP_LOG_MS=%s is not a number of milliseconds: no step log", slow);
        slow_ms = 0.0;
    }
    s->log_step_us = slow_ms <= 0.0 ? 0 : slow_ms < 0.001 ? 1 : (int64_t)(slow_ms * 1000.0);
    s->accepting = 1;
    s->healthy = 1;
    s->next_id = 1;
    s->max_seq_len = ss_replica_max_seq_len(replica);
    s->tok_vocab = tok ? ss_tokenizer_vocab_size(tok) : 0;
    const ss_model_config *cfg = ss_replica_config(replica);
    s->vocab = cfg->vocab_size;
    /* ss_chunk_fit's unit: a prompt token's projections take 2 FLOPs a weight, its attention 4 · heads · head_dim a
     * key, and prefill attention runs at ~0.45 of the GEMMs' rate (one H200: ~270 against ~600 TFLOP/s; the 8B
     * shape's prefill gives 11k keys, this 12k). At least 4,096 (tiny models); SS_CHUNK_KEYS=N sets it (a benchmark
     * switch; 0: off). */
    double proj = (double)cfg->hidden_size * (cfg->n_heads + 2.0 * cfg->n_kv_heads) * cfg->head_dim +
                  (double)cfg->n_heads * cfg->head_dim * cfg->hidden_size +
                  3.0 * cfg->hidden_size * (double)cfg->intermediate_size;
    s->chunk_keys = 0.45 * 2.0 * proj / (4.0 * cfg->n_heads * (double)cfg->head_dim);
    if (!(s->chunk_keys >= 4096.0))
        s->chunk_keys = 4096.0;
    env_keys("SS_CHUNK_KEYS", &s->chunk_keys);
    const char *pace = getenv("SS_SPEC_PACE"); /* a benchmark switch: 1 / 0 */
    s->spec_pace = pace && *pace ? strcmp(pace, "0") != 0 : p.spec_pace;
    const char *adapt = getenv("SS_SPEC_ADAPT"); /* a benchmark switch: 1 / 0 */
    s->spec_adapt = adapt && *adapt ? strcmp(adapt, "0") != 0 : p.spec_adapt;
    if (s->p.spec_tile < 1)
        s->p.spec_tile = 1;
    double tile = -1.0;
    env_keys("SS_SPEC_TILE", &tile); /* benchmark switch: 1 = the bound as if each token read its keys */
    if (tile >= 1.0 && tile <= 64.0)
        s->p.spec_tile = (int32_t)tile;
    s->spec_keys = ss_spec_keys(cfg);
    env_keys("SS_SPEC_KEYS", &s->spec_keys); /* 0: no bound */
    if (p.spec_tokens > 0)
        SS_LOGI("scheduler: speculative decoding by prompt lookup, up to %d draft tokens a sequence while at most %d "
                "run (%d entries a step), drafts' extra KV reads within %.0f keys a step (counted once a tile of %d "
                "tokens)%s%s",
                (int)p.spec_tokens, (int)p.spec_max_running, (int)s->max_entries, s->spec_keys,
                (int)s->p.spec_tile, s->spec_adapt ? ", lengths by confirmed drafts" : "",
                s->spec_pace ? ", pauses after misses" : "");
    for (int32_t i = 0; i < cfg->n_eos && i < SS_MAX_EOS; i++)
        s->eos[s->n_eos++] = cfg->eos_ids[i];
    ss_status st = ss_kv_blocks_create(ss_replica_num_kv_blocks(replica), ss_replica_block_size(replica),
                                       p.enable_prefix_cache, &s->kv, err);
    if (st != SS_OK) {
        ss_free(s);
        return st;
    }
    s->kv_total = ss_replica_num_kv_blocks(replica);
    s->stats.kv_blocks_total = s->kv_total;
    size_t nr = (size_t)p.max_running, ne = (size_t)s->max_entries;
    s->running = ss_calloc(nr, sizeof(sreq *));
    s->plan_reqs = ss_calloc(ne, sizeof(sreq *));
    s->plan_spec = ss_calloc(ne, 1);
    s->plan_seqs = ss_calloc(ne, sizeof(ss_plan_seq));
    s->banned_off = ss_calloc(ne, sizeof(size_t));
    s->plan_tokens = ss_malloc((size_t)p.max_step_tokens * sizeof(int32_t));
    int fl_ok = 1;
    for (int f = 0; f < 2; f++) {
        s->fl[f].reqs = ss_calloc(ne, sizeof(sreq *));
        s->fl[f].tokens = ss_calloc(ne, sizeof(int32_t));
        s->fl[f].sample = ss_calloc(ne, 1);
        s->fl[f].spec = ss_calloc(ne, 1);
        fl_ok = fl_ok && s->fl[f].reqs && s->fl[f].tokens && s->fl[f].sample && s->fl[f].spec;
    }
    s->overlap = p.overlap == SS_OVERLAP_ON || (p.overlap == SS_OVERLAP_AUTO && ss_replica_overlaps(replica));
    int mu_ok = 0, cv_ok = 0;
    pthread_condattr_t ca;
    if (s->running && s->plan_reqs && s->plan_spec && s->plan_seqs && s->banned_off && s->plan_tokens && fl_ok) {
        mu_ok = pthread_mutex_init(&s->mu, NULL) == 0;
        if (pthread_condattr_init(&ca) == 0) {
            pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
            cv_ok = pthread_cond_init(&s->cv, &ca) == 0;
            pthread_condattr_destroy(&ca);
        }
    }
    if (!mu_ok || !cv_ok || pthread_create(&s->thread, NULL, sched_thread, s) != 0) {
        if (mu_ok)
            pthread_mutex_destroy(&s->mu);
        if (cv_ok)
            pthread_cond_destroy(&s->cv);
        sched_free(s);
        return ss_err_set(err, SS_ERR_NOMEM, "scheduler: cannot allocate or start its thread");
    }
    s->thread_started = 1;
    *out = s;
    return SS_OK;
}

/* Checks a request against the model and the context (no locks needed: read-only fields). */
ss_status ss_sched_submit(ss_sched *s, ss_gen_request *req, ss_gen_callback cb, void *user, uint64_t *req_id,
                          ss_err *err)
{
    if (req_id)
        *req_id = 0;
    if (!req || !cb) {
        ss_gen_request_free(req);
        return ss_err_set(err, SS_ERR_INVALID_ARG, "submit: no request or no callback");
    }
    ss_status st = ss_gen_request_check(req, s->vocab, s->max_seq_len, s->tok != NULL, err);
    if (st != SS_OK) {
        ss_gen_request_free(req);
        return st;
    }
    if (req->min_tokens < 0)
        req->min_tokens = 0;
    sreq *r = ss_calloc(1, sizeof(*r));
    if (!r) {
        ss_gen_request_free(req);
        return ss_err_set(err, SS_ERR_NOMEM, "submit: out of memory");
    }
    r->req = req;
    r->cb = cb;
    r->user = user;
    r->n_prompt = req->n_prompt;
    int64_t cap = (int64_t)req->n_prompt + (req->max_tokens < 64 ? req->max_tokens : 64);
    r->cap = (int32_t)(cap > s->max_seq_len ? s->max_seq_len : cap);
    r->tokens = ss_malloc((size_t)r->cap * sizeof(int32_t));
    if (!r->tokens) {
        int32_t cap_tokens = r->cap;
        sched_req_free(r);
        return ss_err_set(err, SS_ERR_NOMEM, "submit: out of memory for %d tokens", (int)cap_tokens);
    }
    memcpy(r->tokens, req->prompt, (size_t)req->n_prompt * sizeof(int32_t));
    r->n_tokens = req->n_prompt;
    if (s->tok) {
        st = ss_detok_create(s->tok, 1, &r->detok, err);
        if (st != SS_OK) {
            sched_req_free(r);
            return st;
        }
    }
    st = ss_stop_create((const char *const *)req->stop, req->n_stop, &r->stop, err);
    if (st != SS_OK) {
        sched_req_free(r);
        return st;
    }
    r->arrival_us = req->arrival_ms > 0 ? req->arrival_ms * 1000 : ss_now_us();

    pthread_mutex_lock(&s->mu);
    if (!s->accepting) {
        pthread_mutex_unlock(&s->mu);
        sched_req_free(r);
        return ss_err_set(err, SS_ERR_CANCELLED, "server is shutting down");
    }
    if (!s->healthy) {
        st = s->fail_status;
        ss_err_set(err, st, "replica is not healthy: %s", s->fail_msg);
        pthread_mutex_unlock(&s->mu);
        sched_req_free(r);
        return st;
    }
    if (s->n_inbox + s->n_waiting_shared >= s->p.max_waiting) {
        int32_t n = s->n_inbox + s->n_waiting_shared;
        pthread_mutex_unlock(&s->mu);
        sched_req_free(r);
        return ss_err_set(err, SS_ERR_CAPACITY, "waiting queue is full (%d requests)", (int)n);
    }
    r->id = s->next_id++;
    r->state = SREQ_QUEUED;
    if (s->inbox_tail)
        s->inbox_tail->next = r;
    else
        s->inbox_head = r;
    s->inbox_tail = r;
    s->n_inbox++;
    s->stats.waiting++;
    sched_map_insert(s, r);
    if (req_id)
        *req_id = r->id;
    pthread_cond_signal(&s->cv);
    pthread_mutex_unlock(&s->mu);
    return SS_OK;
}

void ss_sched_cancel(ss_sched *s, uint64_t req_id)
{
    pthread_mutex_lock(&s->mu);
    sreq *r = sched_map_find(s, req_id);
    if (r) {
        r->cancel = 1;
        s->cancel_pending = 1;
        pthread_cond_signal(&s->cv);
    }
    pthread_mutex_unlock(&s->mu);
}

void ss_sched_stats_get(ss_sched *s, ss_sched_stats *out)
{
    pthread_mutex_lock(&s->mu);
    *out = s->stats;
    pthread_mutex_unlock(&s->mu);
}

int ss_sched_healthy(ss_sched *s)
{
    pthread_mutex_lock(&s->mu);
    int h = s->healthy;
    pthread_mutex_unlock(&s->mu);
    return h;
}

void ss_sched_fail(ss_sched *s, ss_status st, const char *msg)
{
    SS_LOGE("%s", msg);
    pthread_mutex_lock(&s->mu);
    if (s->healthy) {
        s->healthy = 0;
        s->fail_status = st;
        snprintf(s->fail_msg, sizeof s->fail_msg, "%s", msg);
    }
    pthread_cond_broadcast(&s->cv);
    pthread_mutex_unlock(&s->mu);
}

void ss_sched_drain(ss_sched *s, int64_t deadline_ms)
{
    pthread_mutex_lock(&s->mu);
    s->accepting = 0;
    if (!s->draining || ss_now_us() + deadline_ms * 1000 < s->drain_deadline_us)
        s->drain_deadline_us = ss_now_us() + (deadline_ms > 0 ? deadline_ms : 0) * 1000;
    s->draining = 1;
    pthread_cond_signal(&s->cv);
    int join = s->thread_started && !s->thread_joined;
    s->thread_joined = 1;
    pthread_mutex_unlock(&s->mu);
    if (join)
        pthread_join(s->thread, NULL);
}

void ss_sched_destroy(ss_sched *s)
{
    if (!s)
        return;
    ss_sched_drain(s, 0);
    /* The thread failed everything it held on its way out; nothing is left but the inbox race-free. */
    while (s->inbox_head) {
        sreq *r = s->inbox_head;
        s->inbox_head = r->next;
        sched_req_free(r);
    }
    pthread_mutex_destroy(&s->mu);
    pthread_cond_destroy(&s->cv);
    sched_free(s);
}

/* sched.c — the scheduler thread: admission from a bounded queue, one step plan per iteration (decodes
 * first, with draft tokens when speculating, then chunked prefills, under a token budget), paged KV with prefix
 * caching and preemption by recompute, sampling results turned into token/done events (EOS, stop strings, lengths,
 * deadlines, the end of JSON mode's object). Its calls (create, submit, cancel, drain) are in sched_api.c. */
#include "serve/sched.h"

#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#ifdef __linux__
#include <sys/prctl.h>
#endif

#include "core/alloc.h"
#include "core/clock.h"
#include "core/log.h"
#include "serve/sched_chunk.h"
#include "serve/sched_spec.h"
#include "serve/sched_state.h"
#include "serve/spec_ngram.h"

/* tokens in a row without text from which the debug log notes the run when text comes again */
#define SCHED_SILENT_LOG 8

/* ---- id map (under mu) ---- */

void sched_map_insert(ss_sched *s, sreq *r)
{
    sreq **b = &s->map[r->id % SCHED_MAP_BUCKETS];
    r->map_next = *b;
    *b = r;
}

static void map_remove(ss_sched *s, sreq *r)
{
    for (sreq **p = &s->map[r->id % SCHED_MAP_BUCKETS]; *p; p = &(*p)->map_next)
        if (*p == r) {
            *p = r->map_next;
            return;
        }
}

sreq *sched_map_find(ss_sched *s, uint64_t id)
{
    for (sreq *r = s->map[id % SCHED_MAP_BUCKETS]; r; r = r->map_next)
        if (r->id == id)
            return r;
    return NULL;
}

/* ---- waiting deque and running set (scheduler thread) ---- */

/* The queue bound counts the waiting deque: keep the shared copy exact, so that a client that saw an
 * event never finds a stale count. */
static void waiting_changed(ss_sched *s, int32_t delta)
{
    s->n_waiting += delta;
    pthread_mutex_lock(&s->mu);
    s->n_waiting_shared = s->n_waiting;
    pthread_mutex_unlock(&s->mu);
}

/* Appends r to the waiting deque; the caller holds mu and updates the counts. */
static void wait_link_back(ss_sched *s, sreq *r)
{
    r->next = NULL;
    r->prev = s->wait_tail;
    if (s->wait_tail)
        s->wait_tail->next = r;
    else
        s->wait_head = r;
    s->wait_tail = r;
    r->state = SREQ_WAITING;
}

static void wait_push_front(ss_sched *s, sreq *r)
{
    r->prev = NULL;
    r->next = s->wait_head;
    if (s->wait_head)
        s->wait_head->prev = r;
    else
        s->wait_tail = r;
    s->wait_head = r;
    waiting_changed(s, 1);
    r->state = SREQ_WAITING;
}

static void wait_remove(ss_sched *s, sreq *r)
{
    if (r->prev)
        r->prev->next = r->next;
    else
        s->wait_head = r->next;
    if (r->next)
        r->next->prev = r->prev;
    else
        s->wait_tail = r->prev;
    r->next = r->prev = NULL;
    waiting_changed(s, -1);
}

static void running_remove(ss_sched *s, sreq *r)
{
    for (int32_t i = 0; i < s->n_running; i++)
        if (s->running[i] == r) {
            memmove(&s->running[i], &s->running[i + 1], (size_t)(s->n_running - i - 1) * sizeof(sreq *));
            s->n_running--;
            return;
        }
}

/* ---- events ---- */

static void emit_token(ss_sched *s, sreq *r, int32_t token, float logprob, int32_t n_top, const int32_t *top_ids,
                       const float *top_lp, const char *text, size_t text_len)
{
    (void)s;
    ss_gen_event ev;
    memset(&ev, 0, sizeof(ev));
    ev.kind = SS_GEN_TOKEN;
    ev.req_id = r->id;
    ev.token = token;
    ev.logprob = logprob;
    ev.n_top = n_top;
    ev.top_ids = top_ids;
    ev.top_logprobs = top_lp;
    ev.text = text_len ? text : "";
    ev.text_len = text_len;
    r->cb(r->user, &ev);
}

void sched_req_free(sreq *r)
{
    ss_detok_destroy(r->detok);
    ss_stop_destroy(r->stop);
    ss_guide_clear(&r->guide);
    ss_free(r->tokens);
    ss_gen_request_free(r->req);
    ss_free(r);
}

/* Ends a request: releases its blocks, takes it out of its list, sends DONE (with any text still held
 * when it ended normally), counts it and frees it. */
static void finish(ss_sched *s, sreq *r, ss_finish_reason reason, ss_status st, const char *msg)
{
    for (int f = 0; f < 2; f++) /* a step in flight may hold r: its result for r is dropped */
        for (int32_t i = 0; s->fl[f].active && i < s->fl[f].n; i++)
            if (s->fl[f].reqs[i] == r)
                s->fl[f].reqs[i] = NULL;
    if (r->state == SREQ_RUNNING)
        running_remove(s, r);
    else if (r->state == SREQ_WAITING)
        wait_remove(s, r);
    ss_kv_seq_free(s->kv, &r->kv);

    /* Text still held back by the detokenizer (an unfinished character) and the stop matcher. */
    char *tail = NULL;
    size_t tail_len = 0;
    if ((reason == SS_FINISH_STOP || reason == SS_FINISH_LENGTH) && r->detok) {
        const char *piece = "", *out = "";
        size_t piece_len = 0, out_len = 0, flush_len = 0;
        int stopped = 0;
        int32_t which = -1;
        ss_err err;
        if (ss_detok_flush(r->detok, &piece, &piece_len, &err) == SS_OK &&
            ss_stop_feed(r->stop, piece, piece_len, r->n_generated > r->req->min_tokens, &out, &out_len, &stopped,
                         &which, &err) == SS_OK) {
            tail = ss_malloc(out_len + 1);
            if (tail) {
                if (out_len) /* out may be NULL when empty (memcpy's arguments must not be) */
                    memcpy(tail, out, out_len);
                tail_len = out_len;
                if (stopped) {
                    reason = SS_FINISH_STOP;
                } else {
                    ss_stop_flush(r->stop, &out, &flush_len);
                    char *t2 = ss_realloc(tail, tail_len + flush_len + 1);
                    if (t2) {
                        tail = t2;
                        if (flush_len)
                            memcpy(tail + tail_len, out, flush_len);
                        tail_len += flush_len;
                    }
                }
            }
        }
    }

    ss_gen_event ev;
    memset(&ev, 0, sizeof(ev));
    ev.kind = SS_GEN_DONE;
    ev.req_id = r->id;
    ev.token = -1;
    ev.text = tail ? tail : "";
    ev.text_len = tail_len;
    ev.finish = reason;
    ev.status = st;
    ev.message = msg ? msg : "";
    ev.prompt_tokens = r->n_prompt;
    ev.completion_tokens = r->n_generated;
    ev.cached_tokens = r->cached_tokens;
    ev.queue_us = r->admitted ? r->admit_us - r->arrival_us : ss_now_us() - r->arrival_us;
    ev.ttft_us = r->n_generated > 0 ? r->first_token_us - r->arrival_us : 0;
    r->cb(r->user, &ev);
    ss_free(tail);

    pthread_mutex_lock(&s->mu);
    map_remove(s, r);
    if (reason == SS_FINISH_CANCELLED)
        s->stats.requests_cancelled++;
    else if (reason == SS_FINISH_ERROR)
        s->stats.requests_failed++;
    else
        s->stats.requests_ok++;
    pthread_mutex_unlock(&s->mu);
    sched_req_free(r);
}

static void fail_all(ss_sched *s, ss_status st, const char *msg)
{
    while (s->n_running > 0)
        finish(s, s->running[s->n_running - 1], SS_FINISH_ERROR, st, msg);
    while (s->wait_head)
        finish(s, s->wait_head, SS_FINISH_ERROR, st, msg);
}

/* Updates the shared snapshot (counts and KV usage). */
static void publish_stats(ss_sched *s)
{
    ss_kv_stats kst;
    ss_kv_stats_get(s->kv, &kst);
    pthread_mutex_lock(&s->mu);
    s->n_waiting_shared = s->n_waiting;
    s->stats.running = s->n_running;
    s->stats.waiting = s->n_waiting + s->n_inbox;
    s->stats.kv_blocks_total = kst.total;
    s->stats.kv_blocks_used = kst.used;
    s->stats.prefix_hits = kst.hit_tokens;
    s->stats.prefix_queries = kst.query_tokens;
    pthread_mutex_unlock(&s->mu);
}

/* ---- preemption and block reservation ---- */

static void preempt(ss_sched *s, sreq *r)
{
    running_remove(s, r);
    ss_kv_seq_free(s->kv, &r->kv);
    r->n_computed = 0;
    r->step_tokens = 0;
    r->n_preempted++;
    wait_push_front(s, r);
    pthread_mutex_lock(&s->mu);
    s->stats.preemptions++;
    pthread_mutex_unlock(&s->mu);
}

/* The newest running sequence not in the plan yet (NULL if none). */
static sreq *newest_unplanned(ss_sched *s)
{
    for (int32_t i = s->n_running - 1; i >= 0; i--)
        if (s->running[i]->step_tokens == 0)
            return s->running[i];
    return NULL;
}

/* Gets r blocks for want tokens (fewer if !exact and blocks are short, at least 1), preempting newer
 * unplanned sequences as needed. Returns the tokens granted; 0 when r itself was preempted or failed. */
static int32_t grant_blocks(ss_sched *s, sreq *r, int32_t want, int exact)
{
    int32_t bs = ss_kv_block_size(s->kv);
    for (;;) {
        ss_err err;
        ss_status st = ss_kv_seq_reserve(s->kv, &r->kv, (int64_t)r->n_computed + want, &err);
        if (st == SS_OK)
            return want;
        if (!exact && st == SS_ERR_CAPACITY) {
            int64_t fit = ((int64_t)r->kv.n_blocks + ss_kv_num_available(s->kv)) * bs - r->n_computed;
            if (fit > 0) {
                st = ss_kv_seq_reserve(s->kv, &r->kv, (int64_t)r->n_computed + fit, &err);
                if (st == SS_OK)
                    return (int32_t)fit;
            }
        }
        if (st != SS_ERR_CAPACITY) { /* out of memory for the block table: retrying would spin */
            finish(s, r, SS_FINISH_ERROR, st, err.msg);
            return 0;
        }
        sreq *victim = newest_unplanned(s);
        if (victim && victim != r) {
            preempt(s, victim);
            continue;
        }
        if (s->n_running == 1) {
            char msg[256];
            snprintf(msg, sizeof(msg), "sequence of %d tokens does not fit the KV cache (%d blocks of %d tokens)",
                     (int)(r->n_computed + want), (int)s->kv_total, (int)bs);
            finish(s, r, SS_FINISH_ERROR, SS_ERR_CAPACITY, msg);
        } else {
            preempt(s, r);
        }
        return 0;
    }
}

/* ---- JSON mode ---- */

/* Starts r's guide: the vocabulary's bytes (read once, for the first request that asks), the empty output's
 * state and the tokens its first sample may take. */
static ss_status guide_start(ss_sched *s, sreq *r, ss_err *err)
{
    if (!s->guide) {
        int64_t t0 = ss_now_us();
        SS_CHECK(ss_guide_vocab_create(s->tok, s->vocab, &s->guide, err));
        SS_LOGI("JSON mode: read the vocabulary's %d tokens in %.1f ms", (int)s->tok_vocab,
                (double)(ss_now_us() - t0) / 1000.0);
    }
    if (!s->masks) {
        s->mask_due = ss_malloc((size_t)s->p.max_running * sizeof *s->mask_due);
        s->mask_guide = ss_malloc((size_t)s->p.max_running * sizeof *s->mask_guide);
        if (!s->mask_due || !s->mask_guide)
            return ss_err_set(err, SS_ERR_NOMEM, "JSON mode: out of memory for the mask list");
        SS_CHECK(ss_guide_batch_create(s->guide, s->p.mask_threads, s->p.max_running, &s->masks, err));
        SS_LOGI("JSON mode: masks on up to %d threads", ss_guide_batch_threads(s->masks));
    }
    const ss_json_schema *sc = r->req->json_schema ? r->req->json_schema : ss_json_schema_any_object();
    return ss_guide_start(&r->guide, s->guide, sc, err);
}

/* ---- plan building ---- */

static int penalty_active(const ss_sampling_params *sp)
{
    return sp->repetition_penalty != 1.0f || sp->presence_penalty != 0.0f || sp->frequency_penalty != 0.0f;
}

static ss_status banned_push(ss_sched *s, int32_t id)
{
    if (s->n_banned == s->banned_cap) {
        size_t cap = s->banned_cap ? s->banned_cap * 2 : 64;
        int32_t *b = ss_realloc(s->banned, cap * sizeof(int32_t));
        if (!b)
            return SS_ERR_NOMEM;
        s->banned = b;
        s->banned_cap = cap;
    }
    s->banned[s->n_banned++] = id;
    return SS_OK;
}

/* Appends r's banned ids for its sample after its j draft tokens (0: its next token): bad words whose prefix ends
 * the sequence (one-token bad words always), and the end ids while min_tokens is not reached. */
static ss_status collect_banned(ss_sched *s, const sreq *r, int32_t j)
{
    const ss_gen_request *q = r->req;
    const int32_t n_tok = r->n_tokens + j; /* the drafts follow r's tokens (spec_plan) */
    for (int32_t w = 0; w < q->n_bad_words; w++) {
        int32_t len = q->bad_word_lens[w];
        const int32_t *word = q->bad_words[w];
        if (len < 1)
            continue;
        int32_t pre = len - 1;
        if (pre > n_tok || memcmp(r->tokens + n_tok - pre, word, (size_t)pre * sizeof(int32_t)) != 0)
            continue;
        SS_CHECK(banned_push(s, word[pre]));
    }
    if (r->n_generated + j < q->min_tokens) { /* the ids that would end it (the model's unless ignore_eos) */
        for (int32_t i = 0; i < s->n_eos && !q->ignore_eos; i++)
            SS_CHECK(banned_push(s, s->eos[i]));
        for (int32_t i = 0; i < q->n_stop_ids; i++)
            if (q->stop_ids[i] >= 0 && q->stop_ids[i] < s->vocab)
                SS_CHECK(banned_push(s, q->stop_ids[i]));
    }
    return SS_OK;
}

static void plan_add(ss_sched *s, sreq *r, int32_t n)
{
    r->step_tokens = n;
    s->plan_spec[s->n_plan] = 0;
    s->plan_reqs[s->n_plan++] = r;
}

/* ---- speculative decoding (prompt lookup) ---- */

/* The most draft tokens each decoding sequence may have in this step (ss_spec_room), keeping an entry for an
 * admission when someone waits and a batch slot is free. */
static int32_t spec_room(const ss_sched *s)
{
    const int admit = s->wait_head && s->n_running < s->p.max_running;
    return ss_spec_room(s->p.spec_tokens, s->p.spec_max_running, s->n_running, s->max_entries - admit,
                        s->p.max_step_tokens);
}

/* While r's drafting pauses: the token prompt lookup expects r to sample next, watched (ss_spec_pace_token) so that
 * the pause ends as soon as r's text repeats again. */
static void spec_guess(sreq *r)
{
    int32_t guess;
    if (ss_spec_ngram_propose(r->tokens, r->n_tokens, 1, &guess) == 1)
        ss_spec_pace_guess(&r->spec_pace, guess);
}

/* Whether r may have drafts in the step after the one in flight (r's counts do not hold that step's token yet): not
 * in JSON mode, its drafting not paused, room left before max_tokens and the context. */
static int spec_wants(const ss_sched *s, const sreq *r)
{
    return !r->guide.allow && (!s->spec_pace || r->spec_pace.pause == 0) &&
           r->req->max_tokens - (r->n_generated + 1) - 1 > 0 && s->max_seq_len - (r->n_tokens + 1) - 1 > 0;
}

/* Plans up to k draft tokens after decoding sequence r's entry (just added): the tokens prompt lookup proposes
 * (written after r's tokens, where the verified ones will be appended), one entry each. Not for JSON mode (its mask
 * follows the tokens), nor past max_tokens or the context, nor beyond the KV reads the step's drafts have left
 * (*keys_left: draft rows times context keys, spec_keys a step), nor while its drafting pauses (ss_spec_pace), nor
 * beyond its adaptive length (ss_spec_pace_len); only from blocks nobody else needs (no preemption for a guess).
 * Returns the drafts planned. */
static int32_t spec_plan(ss_sched *s, sreq *r, int32_t k, double *keys_left)
{
    if (r->guide.allow)
        return 0;
    /* the last draft's sample is sent only if r still runs after the drafts: within max_tokens and the context */
    int32_t by_len = r->req->max_tokens - r->n_generated - 1, by_ctx = s->max_seq_len - r->n_tokens - 1;
    k = by_len < k ? by_len : k;
    k = by_ctx < k ? by_ctx : k;
    if (s->spec_adapt && r->spec_pace.len > 0 && r->spec_pace.len < k)
        k = r->spec_pace.len; /* by how many of its last drafts were confirmed (ss_spec_pace_len) */
    /* their KV reads at this context, the step's drafts together (ss_spec_keys, ss_spec_keys_room) */
    k = ss_spec_keys_room(k, *keys_left, r->n_tokens, s->p.spec_tile);
    if (k <= 0)
        return 0;
    if (s->spec_pace && !ss_spec_pace_draft(&r->spec_pace)) {
        spec_guess(r);
        return 0;
    }
    int32_t n = ss_spec_propose(&r->tokens, &r->cap, r->n_tokens, k);
    /* Their blocks only from what the running sequences' next tokens and admissions (kv_total / 100) leave free: a
     * guess never makes another sequence wait or be preempted. */
    const int64_t need = ss_kv_blocks_for(s->kv, (int64_t)r->n_computed + 1 + n) - r->kv.n_blocks;
    const int64_t headroom = (int64_t)s->n_running + s->kv_total / 100;
    ss_err err;
    if (n == 0 || (need > 0 && ss_kv_num_available(s->kv) - need < headroom) ||
        ss_kv_seq_reserve(s->kv, &r->kv, (int64_t)r->n_computed + 1 + n, &err) != SS_OK)
        return 0;
    for (int32_t j = 1; j <= n; j++) {
        s->plan_spec[s->n_plan] = (uint8_t)j;
        s->plan_reqs[s->n_plan++] = r;
    }
    *keys_left -= ss_spec_draft_keys(n, r->n_tokens, s->p.spec_tile);
    return n;
}

/* The attention weight of prompt chunks beside decoding streams (sched_chunk.h): chunk_keys with
 * p.prefill_attn_budget, else 0 (a chunk takes the whole budget). */
static double chunk_keys(const ss_sched *s)
{
    return s->p.prefill_attn_budget ? s->chunk_keys : 0.0;
}

/* Chooses this step's work: decodes (oldest first), then prefill chunks of running sequences, then new
 * admissions, under the token budget. Fills plan_reqs with step_tokens set. */
static void choose_work(ss_sched *s)
{
    int32_t budget = s->p.max_step_tokens, cost = 0;
    s->n_plan = 0;
    for (int32_t i = 0; i < s->n_running; i++)
        s->running[i]->step_tokens = 0;

    /* 1. one token for every decoding sequence (and, speculating, its draft tokens) */
    const int32_t spec_k = spec_room(s);
    double keys_left = s->spec_keys > 0 ? s->spec_keys : HUGE_VAL;
    for (int32_t i = 0; i < s->n_running && budget > 0;) {
        sreq *r = s->running[i];
        if (r->n_tokens - r->n_computed != 1) {
            i++;
            continue;
        }
        if (grant_blocks(s, r, 1, 1) == 1) {
            plan_add(s, r, 1);
            budget--;
            if (spec_k > 0)
                budget -= spec_plan(s, r, spec_k < budget ? spec_k : budget, &keys_left);
            i++;
        } /* else r left the running set: index i now holds the next one */
    }
    const int decoding = s->n_plan > 0;
    /* 2. chunks of prompts being prefilled */
    for (int32_t i = 0; i < s->n_running && budget > 0;) {
        sreq *r = s->running[i];
        int32_t left = r->n_tokens - r->n_computed;
        if (r->step_tokens > 0 || left <= 1) {
            i++;
            continue;
        }
        int32_t want = ss_chunk_fit(chunk_keys(s), decoding, r->n_computed, left, budget, &cost);
        int32_t got = grant_blocks(s, r, want, 0);
        if (got > 0) {
            plan_add(s, r, got);
            budget -= got < want ? ss_chunk_cost(chunk_keys(s), decoding, r->n_computed, got, budget) : cost;
            i++;
        }
    }
    /* 3. admissions, while blocks last (keeping a small reserve for the running sequences' growth) */
    int32_t reserve = 0;
    if (s->n_running > 0)
        reserve = s->kv_total / 100 > 1 ? s->kv_total / 100 : 1;
    int32_t bs = ss_kv_block_size(s->kv);
    while (s->wait_head && s->n_running < s->p.max_running && s->n_plan < s->max_entries && budget > 0) {
        sreq *r = s->wait_head;
        int32_t cached = 0;
        ss_err err;
        ss_status gst;
        if (r->req->json_mode && !r->guide.allow && (gst = guide_start(s, r, &err)) != SS_OK) {
            finish(s, r, SS_FINISH_ERROR, gst, err.msg);
            continue;
        }
        if (r->kv.n_blocks == 0 && s->p.enable_prefix_cache &&
            ss_kv_seq_match_prefix(s->kv, &r->kv, r->tokens, r->n_tokens, &cached, &err) == SS_OK)
            r->n_computed = cached;
        int32_t left = r->n_tokens - r->n_computed;
        int32_t want = ss_chunk_fit(chunk_keys(s), decoding, r->n_computed, left, budget, &cost);
        int64_t fit = ((int64_t)r->kv.n_blocks + ss_kv_num_available(s->kv) - reserve) * bs - r->n_computed;
        if (fit < want) {
            want = (int32_t)(fit > 0 ? fit : 0);
            cost = ss_chunk_cost(chunk_keys(s), decoding, r->n_computed, want, budget);
        }
        ss_status st =
            want > 0 ? ss_kv_seq_reserve(s->kv, &r->kv, (int64_t)r->n_computed + want, &err) : SS_ERR_CAPACITY;
        if (st != SS_OK) {
            ss_kv_seq_free(s->kv, &r->kv); /* give back the cached prefix */
            r->n_computed = 0;
            if (st == SS_ERR_CAPACITY)
                break; /* try again next step */
            finish(s, r, SS_FINISH_ERROR, st, err.msg);
            continue;
        }
        wait_remove(s, r);
        r->state = SREQ_RUNNING;
        s->running[s->n_running++] = r;
        if (!r->admitted) {
            r->admitted = 1;
            r->admit_us = ss_now_us();
            r->cached_tokens = cached;
            pthread_mutex_lock(&s->mu);
            s->stats.prompt_tokens += r->n_prompt;
            pthread_mutex_unlock(&s->mu);
        }
        plan_add(s, r, want);
        budget -= cost;
    }
}

/* Turns plan_reqs into the step plan. */
static ss_status build_plan(ss_sched *s, ss_step_plan *plan)
{
    memset(plan, 0, sizeof(*plan));
    s->n_banned = 0;
    int64_t nt = 0;
    for (int32_t k = 0; k < s->n_plan; k++) {
        sreq *r = s->plan_reqs[k];
        ss_plan_seq *ps = &s->plan_seqs[k];
        /* A draft entry (j > 0) computes r's j-th draft token, at the position after entry j - 1's, and samples what
         * follows it as r would once the drafts before it are confirmed: same counter, penalties over them too. */
        const int32_t j = s->plan_spec[k];
        memset(ps, 0, sizeof(*ps));
        ps->seq_id = r->id;
        ps->n_tokens = j ? 1 : r->step_tokens;
        ps->pos_start = r->n_computed + j;
        ps->n_blocks = ss_kv_blocks_for(s->kv, (int64_t)ps->pos_start + ps->n_tokens);
        ps->blocks = r->kv.blocks;
        ps->sample = j || r->n_computed + r->step_tokens == r->n_tokens;
        ps->rng_counter = (uint64_t)r->n_generated + (uint64_t)j;
        ps->sp = r->req->sp;
        memcpy(s->plan_tokens + nt, r->tokens + ps->pos_start, (size_t)ps->n_tokens * sizeof(int32_t));
        nt += ps->n_tokens;
        s->banned_off[k] = s->n_banned;
        if (ps->sample) {
            if (penalty_active(&r->req->sp)) {
                int all = r->req->include_prompt_penalty;
                ps->penalty_tokens = all ? r->tokens : r->tokens + r->n_prompt;
                ps->n_penalty_tokens = (all ? r->n_tokens : r->n_generated) + j;
            }
            SS_CHECK(collect_banned(s, r, j));
            ps->n_banned = (int32_t)(s->n_banned - s->banned_off[k]);
            ps->n_bias = r->req->n_bias; /* borrowed from the request, which outlives the step */
            ps->bias_ids = r->req->bias_ids;
            ps->bias_vals = r->req->bias_vals;
            if (r->guide.allow) { /* r's own mask: it changes only when r's token comes back */
                ps->n_allow = ss_guide_vocab_words(s->guide);
                ps->allow = r->guide.allow;
            }
        }
    }
    for (int32_t k = 0; k < s->n_plan; k++)
        if (s->plan_seqs[k].n_banned > 0)
            s->plan_seqs[k].banned = s->banned + s->banned_off[k];
    plan->step_id = ++s->step_id;
    plan->n_seqs = s->n_plan;
    plan->seqs = s->plan_seqs;
    plan->n_tokens = nt;
    plan->tokens = s->plan_tokens;
    return SS_OK;
}

/* ---- results ---- */

/* tok ends r: one of the model's end ids (unless the request ignores them, as vLLM's ignore_eos) or of the request's
 * stop_token_ids (which ignore_eos leaves in force). */
static int is_end_id(const ss_sched *s, const sreq *r, int32_t tok)
{
    for (int32_t i = 0; i < s->n_eos && !r->req->ignore_eos; i++)
        if (s->eos[i] == tok)
            return 1;
    for (int32_t i = 0; i < r->req->n_stop_ids; i++)
        if (r->req->stop_ids[i] == tok)
            return 1;
    return 0;
}

static ss_status append_token(sreq *r, int32_t tok)
{
    if (r->n_tokens == r->cap) {
        int32_t cap = r->cap * 2;
        int32_t *t = ss_realloc(r->tokens, (size_t)cap * sizeof(int32_t));
        if (!t)
            return SS_ERR_NOMEM;
        r->tokens = t;
        r->cap = cap;
    }
    r->tokens[r->n_tokens++] = tok;
    return SS_OK;
}

/* Handles one sampled token of r: appends it, finds the text it releases, decides whether r is done. */
static void on_token(ss_sched *s, sreq *r, const ss_step_output *out, int32_t k)
{
    int32_t tok = out->token[k];
    int32_t before = r->n_generated;
    if (append_token(r, tok) != SS_OK) {
        finish(s, r, SS_FINISH_ERROR, SS_ERR_NOMEM, "out of memory for generated tokens");
        return;
    }
    r->n_generated++;
    if (before == 0)
        r->first_token_us = ss_now_us();
    pthread_mutex_lock(&s->mu);
    s->stats.generated_tokens++;
    pthread_mutex_unlock(&s->mu);

    const ss_gen_request *q = r->req;
    int checks = before >= q->min_tokens; /* end ids and stop strings count after min_tokens */
    ss_finish_reason reason = SS_FINISH_NONE;
    const char *text = "";
    size_t text_len = 0;
    ss_err err;
    err.msg[0] = '\0';
    if (checks && is_end_id(s, r, tok)) {
        reason = SS_FINISH_STOP; /* the end id's own text is never shown */
    } else if (r->detok) {
        const char *piece;
        size_t piece_len;
        int stopped = 0;
        int32_t which;
        ss_status st = SS_OK;
        piece = "";
        piece_len = 0;
        if (tok < s->tok_vocab) /* ids past the tokenizer (padded embedding rows) have no text */
            st = ss_detok_push(r->detok, tok, &piece, &piece_len, &err);
        if (st == SS_OK)
            st = ss_stop_feed(r->stop, piece, piece_len, checks, &text, &text_len, &stopped, &which, &err);
        if (st != SS_OK) {
            finish(s, r, SS_FINISH_ERROR, st, err.msg);
            return;
        }
        if (stopped)
            reason = SS_FINISH_STOP;
        if (text_len == 0) {
            r->silent++;
        } else {
            /* A stream's gap may be tokens without text (special tokens, a held UTF-8 sequence or stop prefix),
             * not a stall: say so where it is long (random-weight models emit runs of special tokens). */
            if (r->silent >= SCHED_SILENT_LOG)
                SS_LOGD("request %llu: text again after %d tokens without any, at token %d", (unsigned long long)r->id,
                        r->silent, r->n_generated);
            r->silent = 0;
        }
    }
    int mask_due = 0;
    if (reason == SS_FINISH_NONE && r->guide.allow) {
        ss_status st = ss_guide_feed(&r->guide, s->guide, tok, &err);
        if (st == SS_ERR_INTERNAL && q->n_bad_words > 0) {
            /* The mask sets every token it refuses to -inf, so a refused token means that the request's own bans
             * left no token the object allows (min_tokens, which bans EOS, is refused with JSON mode): the
             * client's doing, not the server's (a 400, not a 503 to retry). */
            st = ss_err_set(&err, SS_ERR_INVALID_ARG,
                            "JSON mode: at the answer's token %d, the request's bad_words ban every token that "
                            "continues the object", (int)r->n_generated);
        }
        if (st != SS_OK) {
            finish(s, r, SS_FINISH_ERROR, st, err.msg);
            return;
        }
        if (ss_guide_done(&r->guide))
            reason = SS_FINISH_STOP; /* the object is whole: nothing may follow it */
        else
            mask_due = 1;
    }
    if (reason == SS_FINISH_NONE && (r->n_generated >= q->max_tokens || r->n_tokens >= s->max_seq_len))
        reason = SS_FINISH_LENGTH;

    int32_t n_top = q->sp.n_logprobs < out->n_top ? q->sp.n_logprobs : out->n_top;
    if (n_top < 0)
        n_top = 0;
    emit_token(s, r, tok, out->logprob ? out->logprob[k] : 0.0f, n_top,
               n_top ? out->top_ids + (size_t)k * (size_t)out->n_top : NULL,
               n_top ? out->top_logprobs + (size_t)k * (size_t)out->n_top : NULL, text, text_len);
    if (reason != SS_FINISH_NONE)
        finish(s, r, reason, SS_OK, NULL);
    else if (mask_due)
        s->mask_due[s->n_mask_due++] = r; /* its next mask: masks_make, once the step's tokens are all in */
}

/* The next masks of the guided sequences that sampled in the step just collected, on several threads (a sequence
 * that nothing can continue fails). Measured: docs/performance.md, session 35. */
static void masks_make(ss_sched *s)
{
    const int32_t n = s->n_mask_due;
    for (int32_t i = 0; i < n; i++)
        s->mask_guide[i] = &s->mask_due[i]->guide;
    s->n_mask_due = 0;
    if (ss_guide_batch_remask(s->masks, s->guide, s->mask_guide, n) == 0)
        return;
    for (int32_t i = 0; i < n; i++) {
        const char *msg;
        ss_status st = ss_guide_batch_error(s->masks, i, &msg);
        if (st != SS_OK)
            finish(s, s->mask_due[i], SS_FINISH_ERROR, st, msg);
    }
}

static void flights_drain(ss_sched *s);
/* What a step was made of (SS_STEP_LOG_MS): sequences, decoding ones, tokens, the longest prompt chunk. */
typedef struct step_makeup {
    int32_t n, decoding, chunk;
    int64_t tokens;
} step_makeup;
static void step_makeup_of(const sched_flight *a, step_makeup *mk);
static void log_step(const ss_sched *s, const step_makeup *mk, int64_t us, int late);

/* Submits plan (built from plan_reqs) to the replica as flight f. */
static ss_status flight_submit(ss_sched *s, sched_flight *f, const ss_step_plan *plan, ss_err *err)
{
    int64_t t = ss_now_us(); /* before: a replica that runs the step within submit spends it there */
    SS_CHECK(ss_replica_submit(s->replica, plan, err));
    f->active = 1;
    f->n = plan->n_seqs;
    f->t_submit = t;
    for (int32_t k = 0; k < plan->n_seqs; k++) {
        f->reqs[k] = s->plan_reqs[k];
        f->tokens[k] = plan->seqs[k].n_tokens;
        f->sample[k] = (uint8_t)plan->seqs[k].sample;
        f->spec[k] = s->plan_spec[k];
    }
    return SS_OK;
}

/* A step failed: the replica cannot be trusted any more, so every request fails with its message. */
static void step_failed(ss_sched *s, ss_status st, const ss_err *err)
{
    char msg[sizeof(err->msg) + 32];
    snprintf(msg, sizeof(msg), "replica step failed: %s", err->msg[0] ? err->msg : ss_status_str(st));
    SS_LOGE("%s", msg);
    pthread_mutex_lock(&s->mu);
    s->healthy = 0;
    s->fail_status = st;
    snprintf(s->fail_msg, sizeof(s->fail_msg), "%s", msg);
    pthread_mutex_unlock(&s->mu);
    fail_all(s, st, msg);
    flights_drain(s); /* leave no step pending: the replica may serve a later scheduler (a lost rank makes it refuse) */
}

/* Moves submitted requests from the inbox to the waiting queue. Called with mu held. */
static void inbox_take(ss_sched *s)
{
    while (s->inbox_head) {
        sreq *r = s->inbox_head;
        s->inbox_head = r->next;
        s->n_inbox--;
        wait_link_back(s, r);
        s->n_waiting++;
    }
    s->inbox_tail = NULL;
    s->n_waiting_shared = s->n_waiting;
}

/* 1 when every sequence of f computes one token (a decode-only step: its time is steady from one to the next). */
static int flight_decode_only(const sched_flight *f)
{
    for (int32_t i = 0; i < f->n; i++)
        if (f->tokens[i] != 1)
            return 0;
    return f->n > 0;
}

/* Whether the step after flight fl[cur] may be planned before its tokens are known (see plan_ahead), but for
 * the KV blocks: every running sequence samples in the flight, none needs the flight's token for its sampling
 * (penalties and bans count or match the tokens so far; JSON mode's mask follows them), none ends by length with
 * it, and nobody waiting could be admitted (the batch is full, or nobody waits). Logprob lists and a logit bias do
 * not depend on the tokens (the runner's device path takes both since session 37). */
static int plan_ahead_allowed(const ss_sched *s)
{
    const sched_flight *a = &s->fl[s->cur];
    if (!s->overlap || (s->wait_head && s->n_running < s->p.max_running))
        return 0; /* someone could be admitted into the next step: plan it the usual way */
    const int speculating = spec_room(s) > 0;
    for (int32_t i = 0; speculating && i < s->n_running; i++)
        if (spec_wants(s, s->running[i]))
            return 0; /* the next step may speculate: its drafts follow the flight's tokens */
    int32_t live = 0;
    for (int32_t i = 0; i < a->n; i++) {
        const sreq *r = a->reqs[i];
        if (a->spec[i])
            return 0; /* how many of the drafts hold is not known yet */
        if (!r)
            continue;
        const ss_gen_request *q = r->req;
        if (!a->sample[i] || penalty_active(&q->sp) || q->n_bad_words > 0 || r->guide.allow ||
            ((!q->ignore_eos || q->n_stop_ids > 0) && r->n_generated + 1 < q->min_tokens) ||
            r->n_generated + 1 >= q->max_tokens || r->n_tokens + 1 >= s->max_seq_len)
            return 0;
        live++;
    }
    return live > 0 && live == s->n_running && live <= s->p.max_step_tokens;
}

/* 1 when the oldest step in flight has ended on the device (collect would not wait); errors read as 0 (the
 * collect that follows reports them). */
static int flight_ended(ss_sched *s)
{
    int ready = 0;
    ss_err err;
    return ss_replica_ready(s->replica, &ready, &err) == SS_OK && ready;
}

/* Before a step is planned ahead of flight a: waits until shortly before a is expected to end, or until a
 * request arrives. Planned at once, the next step is queued on the device behind a, and a request that
 * arrives while a runs joins only the step after it: one decode step more to its first token. Held back,
 * the step is still queued before a ends (the host's turnaround stays hidden), and an arrival meanwhile
 * is admitted into it, planned the usual way. Paced: decode-only flights whose batch size ran at least twice
 * (on the shorter of the last and the average own time, less the margin for the host's planning, the
 * submit and a late wake-up), when the step after them may be planned ahead at all and someone could still
 * join it. Not waited for: a flight that has ended already (a replica that runs steps within submit, or a
 * host that came late). An arrival, a cancellation or a drain ends the wait. Returns 1 when it waited until
 * the deadline (run_step then checks whether that was too late: ss_pace_adapt). */
static int pace_ahead(ss_sched *s, const sched_flight *a)
{
    if (!s->p.pace || s->n_running >= s->p.max_running || !plan_ahead_allowed(s))
        return 0;
    int64_t start = a->t_submit > s->t_last_collect ? a->t_submit : s->t_last_collect, deadline = 0;
    if (!flight_decode_only(a) || !ss_pace_deadline(&s->pace, a->n, start, &deadline))
        return 0;
    if (ss_now_us() >= deadline || flight_ended(s))
        return 0;
    pthread_mutex_lock(&s->mu);
    while (!s->inbox_head && !s->cancel_pending && !s->draining && ss_now_us() < deadline) {
        struct timespec ts = {.tv_sec = deadline / 1000000, .tv_nsec = (long)(deadline % 1000000) * 1000};
        pthread_cond_timedwait(&s->cv, &s->mu, &ts);
    }
    int interrupted = s->inbox_head || s->cancel_pending || s->draining;
    inbox_take(s); /* an arrival is now in the waiting queue: plan_ahead leaves the next step to choose_work */
    pthread_mutex_unlock(&s->mu);
    return !interrupted;
}

/* Plans the step after the one in flight before its tokens are known, when that step is certain to be
 * one decode token for each of its sequences (plan_ahead_allowed) and the blocks are there. The tokens are
 * SS_TOKEN_PREV; a sequence that ends with the flight's token has its result of this step dropped. The plan
 * carries no bans, penalties or masks (such sequences are not planned ahead); it does carry the logit bias.
 * Returns 1 with plan built, 0 otherwise. */
static int plan_ahead(ss_sched *s, ss_step_plan *plan)
{
    const sched_flight *a = &s->fl[s->cur];
    if (!plan_ahead_allowed(s))
        return 0;
    for (int32_t i = 0; i < a->n; i++) {
        sreq *r = a->reqs[i];
        ss_err err;
        if (r && ss_kv_seq_reserve(s->kv, &r->kv, (int64_t)r->n_tokens + 1, &err) != SS_OK)
            return 0; /* blocks are short: the next step is planned the usual way, preempting if it must */
    }
    memset(plan, 0, sizeof(*plan));
    s->n_banned = 0;
    s->n_plan = 0;
    for (int32_t i = 0; i < a->n; i++) {
        sreq *r = a->reqs[i];
        if (!r)
            continue;
        int32_t k = s->n_plan++;
        ss_plan_seq *ps = &s->plan_seqs[k];
        memset(ps, 0, sizeof(*ps));
        s->plan_reqs[k] = r;
        s->plan_spec[k] = 0;
        /* a step without drafts: a paused sequence counts it, and watches for the flight's token to repeat its text */
        if (s->p.spec_tokens > 0 && s->spec_pace && !ss_spec_pace_draft(&r->spec_pace) &&
            (s->spec_keys <= 0 || s->spec_keys >= r->n_tokens || s->p.spec_tile > 1))
            spec_guess(r);
        ps->seq_id = r->id;
        ps->n_tokens = 1;
        ps->pos_start = r->n_tokens; /* the flight computes position n_tokens - 1 and samples this one */
        ps->n_blocks = ss_kv_blocks_for(s->kv, (int64_t)r->n_tokens + 1);
        ps->blocks = r->kv.blocks;
        ps->sample = 1;
        ps->rng_counter = (uint64_t)r->n_generated + 1;
        ps->sp = r->req->sp;
        ps->n_bias = r->req->n_bias; /* borrowed from the request, as in build_plan */
        ps->bias_ids = r->req->bias_ids;
        ps->bias_vals = r->req->bias_vals;
        s->plan_tokens[k] = SS_TOKEN_PREV;
    }
    plan->step_id = ++s->step_id;
    plan->n_seqs = s->n_plan;
    plan->seqs = s->plan_seqs;
    plan->n_tokens = s->n_plan;
    plan->tokens = s->plan_tokens;
    return 1;
}

/* The results of speculating sequence r, entries i .. i + g - 1 of flight f (its own, then one per draft token),
 * whose samples start at output row k_out: the drafts up to the first one its samples do not confirm are its
 * tokens (their KV is computed), and the sample after them is one more. Each sample is what r would have drawn
 * without the drafts (the same counter, on the same tokens before it), so the text is the same, only sooner. */
static void spec_finish(ss_sched *s, sched_flight *f, int32_t i, int32_t g, const ss_step_output *out, int32_t k_out)
{
    sreq *r = f->reqs[i];
    const int32_t a = ss_spec_confirmed(out->token + k_out, r->tokens + r->n_tokens, g - 1); /* (spec_plan) */
    r->n_computed += 1 + a;
    r->step_tokens = 0;
    ss_kv_seq_commit(s->kv, &r->kv, r->tokens, r->n_computed); /* the confirmed drafts are r's tokens already */
    ss_kv_seq_shrink(s->kv, &r->kv, (int64_t)r->n_computed + 1); /* the refused drafts' blocks */
    if (s->spec_pace)
        ss_spec_pace_after(&r->spec_pace, a);
    if (s->spec_adapt)
        ss_spec_pace_len(&r->spec_pace, g - 1, a, s->p.spec_tokens);
    int32_t m = 0;
    for (; m <= a && f->reqs[i]; m++) /* finish() clears f's entries of r: it ended (freed) */
        on_token(s, r, out, k_out + m);
    const int32_t sent = m < a ? m : a; /* confirmed drafts sent: all, unless r ended among them */
    pthread_mutex_lock(&s->mu);
    s->stats.spec_draft_tokens += g - 1;
    s->stats.spec_accepted_tokens += sent;
    pthread_mutex_unlock(&s->mu);
}

/* Hands out a collected flight's results: the sequences' new KV, and their sampled tokens. */
static void flight_finish(ss_sched *s, sched_flight *f, const ss_step_output *out)
{
    int32_t k_out = 0;
    for (int32_t i = 0, g; i < f->n; i += g) {
        for (g = 1; i + g < f->n && f->spec[i + g] > 0; g++) /* a speculating sequence's entries */
            ;
        sreq *r = f->reqs[i];
        int sample = f->sample[i];
        if (r && g > 1) {
            spec_finish(s, f, i, g, out, k_out);
        } else if (r) {
            r->n_computed += f->tokens[i];
            r->step_tokens = 0;
            ss_kv_seq_commit(s->kv, &r->kv, r->tokens, r->n_computed);
            if (sample && s->spec_pace)
                ss_spec_pace_token(&r->spec_pace, out->token[k_out]); /* a paused sequence's guess */
            if (sample)
                on_token(s, r, out, k_out); /* may finish and free r */
        }
        k_out += g > 1 ? g : sample; /* every entry of a speculating sequence samples */
    }
    f->active = 0;
    if (s->n_mask_due > 0)
        masks_make(s);
}

/* One iteration: choose work (unless a step planned ahead is in flight already), maybe plan the next
 * step ahead of it, then collect the flight and hand out its sampled tokens. */
static void run_step(ss_sched *s)
{
    ss_step_plan plan;
    ss_err err;
    err.msg[0] = '\0';
    ss_status st;
    if (!s->fl[s->cur].active) {
        choose_work(s);
        publish_stats(s); /* admissions and preemptions show before any event of this step */
        if (s->n_plan == 0)
            return;
        st = build_plan(s, &plan);
        if (st != SS_OK) {
            for (int32_t k = 0; k < s->n_plan; k++)
                finish(s, s->plan_reqs[k], SS_FINISH_ERROR, st, "out of memory building a step");
            return;
        }
        st = flight_submit(s, &s->fl[s->cur], &plan, &err);
        if (st != SS_OK) {
            step_failed(s, st, &err);
            return;
        }
    }
    sched_flight *a = &s->fl[s->cur], *b = &s->fl[1 - s->cur];
    int late = 0, paced = pace_ahead(s, a);
    if (plan_ahead(s, &plan)) {
        if ((st = flight_submit(s, b, &plan, &err)) != SS_OK) {
            step_failed(s, st, &err);
            return;
        }
        if (paced) { /* (plan_ahead_allowed's sequences sample on the device: this submit did not wait for a) */
            late = flight_ended(s);
            ss_pace_adapt(&s->pace, late);
        }
        pthread_mutex_lock(&s->mu);
        s->stats.steps_ahead++;
        s->stats.steps_paced += paced;
        s->stats.steps_paced_late += late;
        pthread_mutex_unlock(&s->mu);
    }
    ss_step_output out;
    st = ss_replica_collect(s->replica, &out, &err);
    int64_t t1 = ss_now_us();
    int32_t n_sample = 0;
    for (int32_t k = 0; k < a->n; k++)
        n_sample += a->sample[k];
    if (st == SS_OK && out.n != n_sample)
        st = ss_err_set(&err, SS_ERR_INTERNAL, "step returned %d tokens for %d sampled sequences", (int)out.n,
                        (int)n_sample);
    if (st != SS_OK) {
        ss_step_output_clear(&out);
        step_failed(s, st, &err);
        return;
    }
    /* the step's own time: from its submission, or from the end of the step it was queued behind */
    int64_t t0 = a->t_submit > s->t_last_collect ? a->t_submit : s->t_last_collect;
    s->t_last_collect = t1;
    if (late)
        ss_pace_forget(&s->pace); /* a's time includes the wait past its end: no estimate from it */
    else if (flight_decode_only(a))
        ss_pace_record(&s->pace, a->n, t1 - t0);
    pthread_mutex_lock(&s->mu);
    s->stats.steps++;
    s->stats.step_seconds_total += (double)(t1 - t0) * 1e-6;
    pthread_mutex_unlock(&s->mu);
    s->n_steps++;
    step_makeup mk; /* (taken before flight_finish uses a up; logged after it, so that no token waits for stderr) */
    const int log_it = s->log_step_us > 0 && t1 - t0 >= s->log_step_us;
    if (log_it)
        step_makeup_of(a, &mk);
    flight_finish(s, a, &out);
    if (log_it)
        log_step(s, &mk, t1 - t0, late);
    ss_step_output_clear(&out);
    if (b->active)
        s->cur = 1 - s->cur;
    if (s->n_running == 0) /* every sequence of a step planned ahead ended: drop it now, not when work comes */
        flights_drain(s);
}

static void step_makeup_of(const sched_flight *a, step_makeup *mk)
{
    memset(mk, 0, sizeof *mk);
    mk->n = a->n;
    for (int32_t k = 0; k < a->n; k++) {
        mk->tokens += a->tokens[k];
        mk->decoding += a->tokens[k] == 1;
        mk->chunk = a->tokens[k] > mk->chunk ? a->tokens[k] : mk->chunk;
    }
}

/* SS_STEP_LOG_MS: one line for a slow step: its time, sequences (decoding ones), tokens, its longest prompt chunk,
 * whether it was paced and ended late, and the requests waiting in the scheduler's queue (not those still in its
 * inbox). */
static void log_step(const ss_sched *s, const step_makeup *mk, int64_t us, int late)
{
    SS_LOGI("step %lld: %.2f ms, %d sequences (%d decoding), %lld tokens, longest chunk %d%s; %d waiting",
            (long long)s->n_steps, (double)us / 1000.0, (int)mk->n, (int)mk->decoding, (long long)mk->tokens,
            (int)mk->chunk, late ? ", paced and late" : "", (int)s->n_waiting);
}

/* Collects what is still in flight when the thread ends, so that the replica has no step pending. */
static void flights_drain(ss_sched *s)
{
    for (int i = 0; i < 2 && ss_replica_pending(s->replica) > 0; i++) {
        ss_step_output out;
        ss_err err;
        ss_replica_collect(s->replica, &out, &err);
        ss_step_output_clear(&out);
    }
    s->fl[0].active = s->fl[1].active = 0;
    ss_pace_forget(&s->pace); /* idle (or failed): the next requests' steps are timed afresh */
}

/* Finishes r if it was cancelled (flag set under mu) or its deadline passed. */
static void reap_one(ss_sched *s, sreq *r, int check_cancel, int64_t now_ms)
{
    int cancelled = 0;
    if (check_cancel) {
        pthread_mutex_lock(&s->mu);
        cancelled = r->cancel;
        pthread_mutex_unlock(&s->mu);
    }
    if (cancelled)
        finish(s, r, SS_FINISH_CANCELLED, SS_ERR_CANCELLED, "cancelled");
    else if (r->req->deadline_ms > 0 && now_ms >= r->req->deadline_ms)
        finish(s, r, SS_FINISH_ERROR, SS_ERR_TIMEOUT, "deadline exceeded");
}

/* Cancellations and deadlines, in the running set and the queue. */
static void reap(ss_sched *s, int check_cancel)
{
    int64_t now_ms = ss_now_us() / 1000;
    for (int32_t i = s->n_running - 1; i >= 0; i--) /* finish() only shifts entries above i */
        reap_one(s, s->running[i], check_cancel, now_ms);
    for (sreq *r = s->wait_head, *next; r; r = next) {
        next = r->next;
        reap_one(s, r, check_cancel, now_ms);
    }
}

void *sched_thread(void *arg)
{
    ss_sched *s = arg;
#ifdef __linux__
    /* Paced steps wake on a timer a few hundred µs before the device needs them: Linux's default timer
     * slack (50 µs) would make those wake-ups later. This thread's slack only. */
    prctl(PR_SET_TIMERSLACK, 1000UL, 0UL, 0UL, 0UL);
#endif
    for (;;) {
        int check_cancel, exit_now = 0, healthy;
        pthread_mutex_lock(&s->mu);
        for (;;) {
            inbox_take(s);
            int have_work = s->n_running > 0 || s->wait_head != NULL;
            if (s->draining && (!have_work || ss_now_us() >= s->drain_deadline_us)) {
                exit_now = 1;
                break;
            }
            if (have_work || s->cancel_pending)
                break;
            if (s->draining) {
                int64_t d = s->drain_deadline_us;
                struct timespec ts = {.tv_sec = d / 1000000, .tv_nsec = (long)(d % 1000000) * 1000};
                pthread_cond_timedwait(&s->cv, &s->mu, &ts);
            } else {
                pthread_cond_wait(&s->cv, &s->mu);
            }
        }
        check_cancel = s->cancel_pending;
        s->cancel_pending = 0;
        healthy = s->healthy;
        pthread_mutex_unlock(&s->mu);

        if (exit_now) {
            /* Cancelled, not timed out: the client sees the draining server's 503, not its own deadline's 504. */
            fail_all(s, SS_ERR_CANCELLED, "server shutting down: drain deadline passed");
            publish_stats(s);
            flights_drain(s);
            break;
        }
        if (!healthy) {
            char msg[sizeof(s->fail_msg)];
            pthread_mutex_lock(&s->mu);
            ss_status st = s->fail_status;
            memcpy(msg, s->fail_msg, sizeof(msg));
            pthread_mutex_unlock(&s->mu);
            fail_all(s, st, msg);
            flights_drain(s); /* ss_sched_fail may have come with a step pending: no flight outlives its requests */
            publish_stats(s);
            continue;
        }
        reap(s, check_cancel);
        if (s->n_running == 0)
            flights_drain(s); /* a step planned ahead whose sequences were all cancelled */
        run_step(s);
        publish_stats(s);
    }
    return NULL;
}

/* test_sched.c — the scheduler against the real replica (cpu) on fixture models: golden greedy outputs,
 * batching invariance, KV exhaustion with preemption, prefix-cache hits, cancellation, queue bound,
 * deadlines, drain, end ids / min_tokens / bad words, text with stop strings through the tokenizer, JSON mode. */
#include <math.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <cjson/cJSON.h>
#include <cmocka.h> /* after setjmp.h, stdarg.h, stddef.h */

#include "core/alloc.h"
#include "core/clock.h"
#include "core/fileio.h"
#include "runner/replica.h"
#include "serve/json_guide.h"
#include "serve/sched.h"
#include "tokenizer/tokenizer.h"

/* JSON mode without a schema: any object. */
static const ss_json_schema *anyo(void)
{
    return ss_json_schema_any_object();
}

#define MAX_GEN 4096
#define WAIT_S 60

/* ---- fixtures ---- */

typedef struct golden_case {
    int32_t prompt[256];
    int n_prompt;
    int32_t greedy[64];
    int n_greedy;
    double margin[64];
} golden_case;

#define MIX_N 32   /* concurrent requests of the batching tests */
#define MIX_GEN 16 /* tokens each */

typedef struct fixture {
    ss_replica *big;   /* default KV size */
    ss_replica *small; /* 12 blocks of 16 tokens, context 160 */
    ss_replica *twin;  /* big's twin: where a test's second scheduler runs while its first lives (a replica serves one
                        * scheduler: another's steps would be collected in its place) */
    golden_case cases[8];
    int n_cases;
    int32_t alone[MIX_N][MIX_GEN]; /* each mix request run alone */
} fixture;

static ss_gen_request *mix_req(const fixture *f, int i, int32_t max_tokens);
static void compute_alone(fixture *f);

static ss_replica *make_replica(const char *model, int32_t num_blocks, int32_t max_seq_len)
{
    char dir[1024];
    snprintf(dir, sizeof dir, "%s/models/%s", SS_FIXTURES, model);
    ss_replica_params p = ss_replica_default_params();
    p.model_dir = dir;
    p.backend.device = SS_DEVICE_CPU;
    p.backend.n_threads = 1; /* tiny model: threads only add waiting on a shared machine */
    p.num_kv_blocks = num_blocks;
    p.max_seq_len = max_seq_len;
    ss_replica *r = NULL;
    ss_err e;
    if (ss_replica_create(&p, &r, &e) != SS_OK)
        fail_msg("%s: %s", model, e.msg);
    return r;
}

static cJSON *golden_load(const char *model)
{
    char path[1024];
    snprintf(path, sizeof path, "%s/golden/%s.json", SS_FIXTURES, model);
    char *text = NULL;
    size_t len = 0;
    ss_err e;
    if (ss_read_file(path, 64u << 20, &text, &len, &e) != SS_OK)
        fail_msg("%s", e.msg);
    cJSON *j = cJSON_ParseWithLength(text, len);
    ss_free(text);
    assert_non_null(j);
    return j;
}

static int load_cases(const char *model, golden_case *cases, int max)
{
    cJSON *j = golden_load(model);
    int n = 0;
    for (const cJSON *c = cJSON_GetObjectItem(j, "cases")->child; c && n < max; c = c->next, n++) {
        golden_case *g = &cases[n];
        memset(g, 0, sizeof(*g));
        for (const cJSON *x = cJSON_GetObjectItem(c, "prompt_ids")->child; x; x = x->next)
            g->prompt[g->n_prompt++] = (int32_t)x->valuedouble;
        const cJSON *m = cJSON_GetObjectItem(c, "greedy_margins")->child;
        for (const cJSON *x = cJSON_GetObjectItem(c, "greedy_ids")->child; x; x = x->next, m = m->next) {
            g->margin[g->n_greedy] = m->valuedouble;
            g->greedy[g->n_greedy++] = (int32_t)x->valuedouble;
        }
    }
    cJSON_Delete(j);
    return n;
}

static int group_setup(void **state)
{
    fixture *f = calloc(1, sizeof(*f));
    f->big = make_replica("llama3-gqa", 0, 0);
    f->small = make_replica("llama3-gqa", 12, 160);
    f->twin = make_replica("llama3-gqa", 0, 0);
    f->n_cases = load_cases("llama3-gqa", f->cases, 8);
    assert_int_equal(f->n_cases, 4);
    compute_alone(f);
    *state = f;
    return 0;
}

static int group_teardown(void **state)
{
    fixture *f = *state;
    ss_replica_destroy(f->big);
    ss_replica_destroy(f->small);
    ss_replica_destroy(f->twin);
    free(f);
    return 0;
}

/* ---- event collection ---- */

typedef struct collect {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int32_t tokens[MAX_GEN];
    float logprobs[MAX_GEN];
    int32_t n;
    char text[16384];
    size_t text_len;
    int done, events_after_done;
    ss_finish_reason finish;
    ss_status status;
    char message[512];
    int32_t prompt_tokens, completion_tokens, cached_tokens;
    int32_t n_top;
    int top_is_token; /* every event's first top id and log-probability are its token's */
} collect;

static void collect_init(collect *c)
{
    memset(c, 0, sizeof(*c));
    pthread_mutex_init(&c->mu, NULL);
    pthread_cond_init(&c->cv, NULL);
    c->top_is_token = 1;
}

static void collect_fini(collect *c)
{
    pthread_mutex_destroy(&c->mu);
    pthread_cond_destroy(&c->cv);
}

static void on_event(void *user, const ss_gen_event *ev)
{
    collect *c = user;
    pthread_mutex_lock(&c->mu);
    if (c->done)
        c->events_after_done++;
    if (c->text_len + ev->text_len < sizeof(c->text)) {
        memcpy(c->text + c->text_len, ev->text, ev->text_len);
        c->text_len += ev->text_len;
    }
    if (ev->kind == SS_GEN_TOKEN) {
        if (c->n < MAX_GEN) {
            c->logprobs[c->n] = ev->logprob;
            c->tokens[c->n++] = ev->token;
        }
        c->n_top = ev->n_top;
        /* greedy: the first entry is the token itself, with the very same log-probability */
        if (ev->n_top > 0 && (ev->top_ids[0] != ev->token || memcmp(&ev->top_logprobs[0], &ev->logprob, 4)))
            c->top_is_token = 0;
    } else {
        c->done = 1;
        c->finish = ev->finish;
        c->status = ev->status;
        snprintf(c->message, sizeof(c->message), "%s", ev->message ? ev->message : "");
        c->prompt_tokens = ev->prompt_tokens;
        c->completion_tokens = ev->completion_tokens;
        c->cached_tokens = ev->cached_tokens;
        pthread_cond_broadcast(&c->cv);
    }
    pthread_cond_signal(&c->cv);
    pthread_mutex_unlock(&c->mu);
}

static void wait_done(collect *c)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_sec += WAIT_S;
    pthread_mutex_lock(&c->mu);
    while (!c->done)
        if (pthread_cond_timedwait(&c->cv, &c->mu, &ts) != 0)
            break;
    int done = c->done;
    pthread_mutex_unlock(&c->mu);
    if (!done)
        fail_msg("request did not finish within %d s", WAIT_S);
}

static void wait_tokens(collect *c, int32_t n)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_sec += WAIT_S;
    pthread_mutex_lock(&c->mu);
    while (c->n < n && !c->done)
        if (pthread_cond_timedwait(&c->cv, &c->mu, &ts) != 0)
            break;
    int ok = c->n >= n;
    pthread_mutex_unlock(&c->mu);
    if (!ok)
        fail_msg("no %d tokens within %d s", (int)n, WAIT_S);
}

/* A greedy request (ignore_eos) for prompt[0..n), allocated as the API layer would. */
static ss_gen_request *make_req(const int32_t *prompt, int32_t n, int32_t max_tokens)
{
    ss_gen_request *q = ss_calloc(1, sizeof(*q));
    q->prompt = ss_malloc((size_t)n * sizeof(int32_t));
    memcpy(q->prompt, prompt, (size_t)n * sizeof(int32_t));
    q->n_prompt = n;
    q->max_tokens = max_tokens;
    q->sp = ss_sampling_default();
    q->ignore_eos = 1;
    q->arrival_ms = ss_now_ms();
    return q;
}

/* attn_budget: prompt chunks' attention counts against the budget (prefill_attn_budget); spec: draft tokens of
 * speculative decoding (spec_tokens), also in batches of up to 64, drafting whenever it can (the most drafts to check);
 * negative: the default bound of 4 sequences, and pauses after failed drafts (spec_pace) */
static ss_sched *make_sched_ex(ss_replica *rep, const ss_tokenizer *tok, int32_t max_running, int32_t max_waiting,
                               int32_t max_step_tokens, int prefix_cache, int no_overlap, int attn_budget, int32_t spec)
{
    ss_sched_params p = ss_sched_default_params();
    p.spec_tokens = spec < 0 ? -spec : spec;
    if (spec > 0)
        p.spec_max_running = 64;
    p.spec_pace = spec < 0;
    p.prefill_attn_budget = attn_budget;
    p.overlap = no_overlap ? SS_OVERLAP_OFF : SS_OVERLAP_ON; /* on the cpu too: the bookkeeping is tested */
    p.pace_min_us = 0; /* cpu steps are short: let them reach the pacing's last check (below) */
    if (max_running > 0)
        p.max_running = max_running;
    if (max_waiting > 0)
        p.max_waiting = max_waiting;
    if (max_step_tokens > 0)
        p.max_step_tokens = max_step_tokens;
    p.enable_prefix_cache = prefix_cache;
    ss_sched *s = NULL;
    ss_err e;
    if (ss_sched_create(&p, rep, tok, &s, &e) != SS_OK)
        fail_msg("sched create: %s", e.msg);
    return s;
}

static ss_sched *make_sched(ss_replica *rep, const ss_tokenizer *tok, int32_t max_running, int32_t max_waiting,
                            int32_t max_step_tokens, int prefix_cache)
{
    return make_sched_ex(rep, tok, max_running, max_waiting, max_step_tokens, prefix_cache, 0, 0, 0);
}

static void submit_ok(ss_sched *s, ss_gen_request *q, collect *c, uint64_t *id)
{
    ss_err e;
    uint64_t local;
    if (ss_sched_submit(s, q, on_event, c, id ? id : &local, &e) != SS_OK)
        fail_msg("submit: %s", e.msg);
}

/* Runs one request alone on s and waits for it. */
static void run_alone(ss_sched *s, ss_gen_request *q, collect *c)
{
    collect_init(c);
    submit_ok(s, q, c, NULL);
    wait_done(c);
}

/* Tokens must match the golden greedy ids while the reference's margin is clearly above our error. */
static void assert_golden_prefix(const golden_case *g, const int32_t *tok, int32_t n)
{
    for (int32_t k = 0; k < n && k < g->n_greedy; k++) {
        if (g->margin[k] < 1e-3)
            return;
        if (tok[k] != g->greedy[k])
            fail_msg("token %d: got %d, golden %d", (int)k, (int)tok[k], (int)g->greedy[k]);
    }
}

/* Polls the stats until no block is used and nothing runs (published after each iteration); for up to WAIT_S, a
 * bound on a hang only (the scheduler thread may run late on a loaded machine). */
static void wait_idle_stats(ss_sched *s, ss_sched_stats *st)
{
    const int64_t end = ss_now_ms() + WAIT_S * 1000;
    for (;;) {
        ss_sched_stats_get(s, st);
        if ((st->kv_blocks_used == 0 && st->running == 0 && st->waiting == 0) || ss_now_ms() > end)
            return;
        struct timespec d = {0, 1000000};
        nanosleep(&d, NULL);
    }
}

/* ---- tests ---- */

static void test_greedy_golden(void **state)
{
    fixture *f = *state;
    ss_sched *s = make_sched(f->big, NULL, 0, 0, 0, 1);
    for (int i = 0; i < f->n_cases; i++) {
        golden_case *g = &f->cases[i];
        ss_gen_request *q = make_req(g->prompt, g->n_prompt, g->n_greedy);
        q->sp.n_logprobs = 3;
        collect c;
        run_alone(s, q, &c);
        assert_int_equal(c.finish, SS_FINISH_LENGTH);
        assert_int_equal(c.status, SS_OK);
        assert_int_equal(c.n, g->n_greedy);
        assert_int_equal(c.completion_tokens, g->n_greedy);
        assert_int_equal(c.prompt_tokens, g->n_prompt);
        assert_int_equal(c.n_top, 3);
        assert_true(c.top_is_token);
        assert_int_equal(c.events_after_done, 0);
        assert_int_equal(c.text_len, 0); /* no tokenizer: no text */
        assert_golden_prefix(g, c.tokens, c.n);
        collect_fini(&c);
    }
    ss_sched_stats st;
    wait_idle_stats(s, &st);
    assert_int_equal(st.requests_ok, f->n_cases);
    assert_int_equal(st.kv_blocks_used, 0);
    assert_true(st.steps_ahead > 0); /* logprob lists do not keep steps from being planned ahead (session 37) */
    int64_t gen = 0, prompt = 0;
    for (int i = 0; i < f->n_cases; i++) {
        gen += f->cases[i].n_greedy;
        prompt += f->cases[i].n_prompt;
    }
    assert_int_equal(st.generated_tokens, gen);
    assert_int_equal(st.prompt_tokens, prompt);
    assert_true(st.steps >= f->cases[0].n_greedy);
    ss_sched_destroy(s);
}

/* 32 prompts: the golden prompts and prefixes of them; odd ones sample with a seed. */
static ss_gen_request *mix_req(const fixture *f, int i, int32_t max_tokens)
{
    const golden_case *g = &f->cases[i % f->n_cases];
    int32_t n = (int32_t)((g->n_prompt * (8 - i / 4) + 7) / 8);
    if (n < 1)
        n = 1;
    ss_gen_request *q = make_req(g->prompt, n, max_tokens);
    if (i % 2) {
        q->sp.temperature = 0.9f;
        q->sp.top_p = 0.95f;
        q->sp.seed = (uint64_t)(1000 + i);
    }
    return q;
}

/* Runs the mix requests one at a time (no prefix cache), each step collected before the next is planned:
 * the reference for the batching and overlap tests. */
static void compute_alone(fixture *f)
{
    ss_sched *s = make_sched_ex(f->big, NULL, 0, 0, 0, 0, 1, 0, 0);
    for (int i = 0; i < MIX_N; i++) {
        collect c;
        run_alone(s, mix_req(f, i, MIX_GEN), &c);
        assert_int_equal(c.n, MIX_GEN);
        memcpy(f->alone[i], c.tokens, sizeof(f->alone[i]));
        collect_fini(&c);
    }
    ss_sched_destroy(s);
}

/* Submits the first n mix requests at once on rep and checks each against its run alone (spec: draft tokens). */
static void run_mix(fixture *f, ss_replica *rep, int n, int32_t max_running, int32_t max_step_tokens, int32_t spec,
                    ss_sched_stats *st)
{
    static collect batched[MIX_N];
    ss_sched *s = make_sched_ex(rep, NULL, max_running, 0, max_step_tokens, 1, 0, 0, spec);
    for (int i = 0; i < n; i++) {
        collect_init(&batched[i]);
        submit_ok(s, mix_req(f, i, MIX_GEN), &batched[i], NULL);
    }
    for (int i = 0; i < n; i++)
        wait_done(&batched[i]);
    wait_idle_stats(s, st);
    ss_sched_destroy(s); /* before any assertion: a failure must not leave a thread stepping the replica */
    for (int i = 0; i < n; i++) {
        assert_int_equal(batched[i].finish, SS_FINISH_LENGTH);
        assert_int_equal(batched[i].n, MIX_GEN);
        if (memcmp(f->alone[i], batched[i].tokens, MIX_GEN * sizeof(int32_t)) != 0)
            fail_msg("request %d: batched tokens differ from alone", i);
        collect_fini(&batched[i]);
    }
    assert_int_equal(st->requests_ok, n);
    assert_int_equal(st->kv_blocks_used, 0);
}

static void test_batching_invariance(void **state)
{
    fixture *f = *state;
    ss_sched_stats st;
    /* a small step budget: long prompts are prefilled in chunks beside the decodes */
    run_mix(f, f->big, MIX_N, 0, 48, 0, &st);
    assert_true(st.steps < MIX_N * MIX_GEN / 4); /* really batched */
    assert_true(st.steps_ahead > 0);             /* and steps were planned ahead (tokens fed on the device) */
    /* a step that ran within submit (cpu) has ended when the next is planned: never waited for */
    assert_int_equal(st.steps_paced, 0);
    assert_int_equal(st.steps_paced_late, 0);
    assert_true(st.prefix_hits > 0);             /* shared prefixes were reused */
    assert_int_equal(st.preemptions, 0);
}

/* When every sequence of a step planned ahead has ended on the step before it, that step is collected
 * and dropped at once: an idle scheduler leaves nothing pending on the replica (a later request would
 * otherwise wait for it, and the idle time would count as step time). Step time counts the work whether
 * the replica runs a step within submit (here, cpu) or not. */
static void test_overlap_idle_and_step_time(void **state)
{
    fixture *f = *state;
    ss_sched *s = make_sched(f->big, NULL, 0, 0, 0, 1);
    collect a;
    collect_init(&a);
    ss_gen_request *qa = mix_req(f, 0, MIX_GEN);
    qa->ignore_eos = 0;
    qa->stop_ids = ss_malloc(sizeof(int32_t));
    qa->stop_ids[0] = f->alone[0][5];
    qa->n_stop_ids = 1;
    submit_ok(s, qa, &a, NULL);
    wait_done(&a);
    ss_sched_stats st;
    wait_idle_stats(s, &st);
    assert_int_equal(a.finish, SS_FINISH_STOP);
    assert_true(st.steps_ahead > 0);
    assert_int_equal(ss_replica_pending(f->big), 0);
    ss_sched_destroy(s);
    collect_fini(&a);
    for (int no = 0; no <= 1; no++) { /* 48 cpu steps of a real forward pass take well over 0.5 ms */
        s = make_sched_ex(f->big, NULL, 0, 0, 0, 1, no, 0, 0);
        collect c;
        run_alone(s, make_req(f->cases[3].prompt, f->cases[3].n_prompt, 48), &c);
        wait_idle_stats(s, &st);
        ss_sched_destroy(s);
        collect_fini(&c);
        if (!(st.step_seconds_total > 0.0005))
            fail_msg("no_overlap=%d: %lld steps counted %.6f s", no, (long long)st.steps, st.step_seconds_total);
    }
}

/* A full batch (max_running 4 of 32 requests) still plans ahead while others wait: none of them could
 * join the next step anyway. Tokens equal each request's run alone. */
static void test_overlap_full_batch(void **state)
{
    fixture *f = *state;
    ss_sched_stats st;
    run_mix(f, f->big, MIX_N, 4, 0, 0, &st);
    assert_true(st.steps_ahead > MIX_N * MIX_GEN / 4 / 2); /* most decode steps of the batches of 4 */
}

/* Steps planned ahead: a request that ends on an end id while the step after it is in flight gets
 * exactly its tokens up to that id (the speculated result is dropped, its blocks come back), and a
 * request decoding beside it is unaffected; both equal their runs without overlap. */
static void test_overlap_end_mid_flight(void **state)
{
    fixture *f = *state;
    int32_t stop = f->alone[0][5], first = 0;
    while (f->alone[0][first] != stop)
        first++;
    ss_sched *s = make_sched(f->big, NULL, 0, 0, 0, 1);
    collect a, b;
    collect_init(&a);
    collect_init(&b);
    ss_gen_request *qa = mix_req(f, 0, MIX_GEN), *qb = mix_req(f, 2, MIX_GEN);
    qa->ignore_eos = 0;
    qa->stop_ids = ss_malloc(sizeof(int32_t));
    qa->stop_ids[0] = stop;
    qa->n_stop_ids = 1;
    submit_ok(s, qa, &a, NULL);
    submit_ok(s, qb, &b, NULL);
    wait_done(&a);
    wait_done(&b);
    ss_sched_stats st;
    wait_idle_stats(s, &st);
    ss_sched_destroy(s);
    assert_int_equal(a.finish, SS_FINISH_STOP);
    assert_int_equal(a.n, first + 1);
    assert_memory_equal(a.tokens, f->alone[0], (size_t)(first + 1) * sizeof(int32_t));
    assert_int_equal(b.finish, SS_FINISH_LENGTH);
    assert_int_equal(b.n, MIX_GEN);
    assert_memory_equal(b.tokens, f->alone[2], MIX_GEN * sizeof(int32_t));
    assert_true(st.steps_ahead > 0);
    assert_int_equal(st.kv_blocks_used, 0);
    assert_int_equal(st.requests_ok, 2);
    collect_fini(&a);
    collect_fini(&b);
}

/* A long prompt arriving while another request decodes must not stall it: the prompt is prefilled in
 * chunks of the step budget and every one of those steps still carries the decode token. Counted in
 * tokens, not time: between the long request's submission and its first token (its whole prefill),
 * the decoding request must receive about one token per chunk. */
typedef struct stall_watch {
    collect c;
    collect *other;      /* the decoding request */
    int32_t other_at_first;
} stall_watch;

static void on_long_event(void *user, const ss_gen_event *ev)
{
    stall_watch *w = user;
    if (ev->kind == SS_GEN_TOKEN && w->c.n == 0) {
        pthread_mutex_lock(&w->other->mu);
        w->other_at_first = w->other->n;
        pthread_mutex_unlock(&w->other->mu);
    }
    on_event(&w->c, ev);
}

static int32_t tokens_so_far(collect *c)
{
    pthread_mutex_lock(&c->mu);
    int32_t n = c->n;
    pthread_mutex_unlock(&c->mu);
    return n;
}

/* Runs a long_len-token prompt (4 tokens out) while another request decodes, under a step budget, and counts the
 * decoding request's tokens from the long one's submission to its first token (its whole prefill). This thread may
 * take a while over the submission on a loaded machine while the other request goes on, so: *most (optional) counts
 * from before the call, at least the tokens during the prefill (for checks that enough came); *least (optional) from
 * after it, at most those (for checks that few came). */
static void long_prompt_beside_decode(fixture *f, int32_t budget, int32_t long_len, int attn_budget, int32_t *most,
                                      int32_t *least)
{
    ss_sched *s = make_sched_ex(f->big, NULL, 0, 0, budget, 0, 0, attn_budget, 0);
    collect shortc;
    collect_init(&shortc);
    uint64_t short_id = 0;
    /* far more tokens than the prefill takes steps, however late the long prompt comes; cancelled after it */
    submit_ok(s, make_req(f->cases[0].prompt, f->cases[0].n_prompt, 4000), &shortc, &short_id);
    wait_tokens(&shortc, 5);
    int32_t *prompt = ss_malloc((size_t)long_len * sizeof(int32_t));
    assert_non_null(prompt);
    for (int32_t i = 0; i < long_len; i++)
        prompt[i] = (int32_t)((i * 37 + 11) % 500);
    stall_watch w;
    memset(&w, 0, sizeof w);
    collect_init(&w.c);
    w.other = &shortc;
    ss_gen_request *q = make_req(prompt, long_len, 4);
    ss_free(prompt);
    ss_err e;
    uint64_t id;
    const int32_t before = tokens_so_far(&shortc);
    assert_int_equal(ss_sched_submit(s, q, on_long_event, &w, &id, &e), SS_OK);
    const int32_t after = tokens_so_far(&shortc);
    wait_done(&w.c);
    ss_sched_cancel(s, short_id);
    wait_done(&shortc);
    assert_int_equal(w.c.n, 4);
    ss_sched_destroy(s);
    if (most)
        *most = w.other_at_first - before;
    if (least)
        *least = w.other_at_first - after;
    collect_fini(&w.c);
    collect_fini(&shortc);
}

static void test_long_prompt_does_not_stall_decode(void **state)
{
    fixture *f = *state;
    const int32_t budget = 16, long_len = 150;
    int32_t during;
    long_prompt_beside_decode(f, budget, long_len, 0, &during, NULL);
    int32_t chunks = (long_len + budget - 2) / (budget - 1); /* one budget slot goes to the decode */
    printf("long prompt of %d tokens prefilled while the other request got %d tokens (%d chunks)\n", long_len,
           during, chunks);
    if (during < chunks - 1)
        fail_msg("decode stalled: %d tokens during a %d-chunk prefill", during, chunks);
}

/* With prefill_attn_budget, beside a decode a chunk's attention counts against the budget too (SS_CHUNK_KEYS: the
 * keys that cost one token; 64 here, so that a tiny model's 300-token prompt is long): its chunks shrink as its
 * context grows, from 39 tokens to the minimum of 16, about 15 steps where the token count alone makes 5 (as without
 * the setting); each carries a decode. */
static void test_long_context_chunks_shrink(void **state)
{
    fixture *f = *state;
    setenv("SS_CHUNK_KEYS", "64", 1);
    int32_t off, during;
    long_prompt_beside_decode(f, 64, 300, 0, NULL, &off);
    long_prompt_beside_decode(f, 64, 300, 1, &during, NULL);
    unsetenv("SS_CHUNK_KEYS");
    if (off > 8)
        fail_msg("without prefill_attn_budget the chunks shrank: %d decode tokens during the prefill", off);
    printf("300-token prompt, budget 64, 64 keys a token: the other request got %d tokens during its prefill\n",
           during);
    if (during < 12)
        fail_msg("chunks did not shrink with the context: %d decode tokens during the prefill (5 chunks of 63 give 5)",
                 during);
}

static void test_kv_exhaustion_preemption(void **state)
{
    fixture *f = *state;
    ss_sched_stats st;
    run_mix(f, f->small, 16, 0, 0, 0, &st); /* 12 blocks: far less than the work needs */
    assert_true(st.preemptions > 0);
    assert_int_equal(st.kv_blocks_total, 12);
}

static void test_prefix_cache_hit(void **state)
{
    fixture *f = *state;
    golden_case *g = &f->cases[2]; /* 33 tokens: two full blocks of 16 */
    ss_sched *s = make_sched(f->big, NULL, 0, 0, 0, 1);
    collect a, b;
    run_alone(s, make_req(g->prompt, g->n_prompt, 8), &a);
    assert_int_equal(a.cached_tokens, 0);
    run_alone(s, make_req(g->prompt, g->n_prompt, 8), &b);
    assert_int_equal(b.cached_tokens, 32);
    assert_memory_equal(a.tokens, b.tokens, 8 * sizeof(int32_t));
    assert_golden_prefix(g, b.tokens, b.n);
    ss_sched_stats st;
    wait_idle_stats(s, &st);
    assert_int_equal(st.prefix_hits, 32);
    assert_int_equal(st.prefix_queries, 2 * 33);
    ss_sched_destroy(s);
    collect_fini(&a);
    collect_fini(&b);
}

static void test_cancel_frees_blocks(void **state)
{
    fixture *f = *state;
    golden_case *g = &f->cases[3];
    ss_sched *s = make_sched(f->big, NULL, 0, 0, 0, 1);
    collect c;
    collect_init(&c);
    uint64_t id = 0;
    submit_ok(s, make_req(g->prompt, g->n_prompt, 4000), &c, &id);
    assert_true(id > 0);
    wait_tokens(&c, 2);
    ss_sched_stats st;
    ss_sched_stats_get(s, &st);
    assert_true(st.kv_blocks_used > 0);
    ss_sched_cancel(s, id);
    wait_done(&c);
    assert_int_equal(c.finish, SS_FINISH_CANCELLED);
    assert_true(c.n < 4000);
    assert_int_equal(c.completion_tokens, c.n);
    wait_idle_stats(s, &st);
    assert_int_equal(st.kv_blocks_used, 0);
    assert_int_equal(st.running, 0);
    assert_int_equal(st.requests_cancelled, 1);
    ss_sched_cancel(s, id);        /* already gone: ignored */
    ss_sched_cancel(s, 987654321); /* unknown: ignored */
    ss_sched_destroy(s);
    collect_fini(&c);
}

static void test_queue_full(void **state)
{
    fixture *f = *state;
    golden_case *g = &f->cases[1];
    ss_sched *s = make_sched(f->big, NULL, 1, 2, 0, 1);
    collect c[3];
    uint64_t id[3];
    collect_init(&c[0]);
    submit_ok(s, make_req(g->prompt, g->n_prompt, 4000), &c[0], &id[0]);
    wait_tokens(&c[0], 1); /* running: the queue is empty again */
    for (int i = 1; i < 3; i++) {
        collect_init(&c[i]);
        submit_ok(s, make_req(g->prompt, g->n_prompt, 4000), &c[i], &id[i]);
    }
    ss_err e;
    uint64_t rid = 77;
    assert_int_equal(ss_sched_submit(s, make_req(g->prompt, g->n_prompt, 4), on_event, NULL, &rid, &e),
                     SS_ERR_CAPACITY);
    assert_int_equal(rid, 0);
    assert_non_null(strstr(e.msg, "queue is full"));
    ss_sched_stats st;
    ss_sched_stats_get(s, &st);
    assert_int_equal(st.running, 1);
    assert_int_equal(st.waiting, 2);
    for (int i = 2; i >= 0; i--)
        ss_sched_cancel(s, id[i]);
    for (int i = 0; i < 3; i++) {
        wait_done(&c[i]);
        assert_int_equal(c[i].finish, SS_FINISH_CANCELLED);
    }
    assert_int_equal(c[1].n, 0);
    assert_int_equal(c[2].n, 0);
    wait_idle_stats(s, &st);
    assert_int_equal(st.kv_blocks_used, 0);
    assert_int_equal(st.requests_cancelled, 3);
    ss_sched_destroy(s);
    for (int i = 0; i < 3; i++)
        collect_fini(&c[i]);
}

static void test_bad_requests(void **state)
{
    fixture *f = *state;
    ss_sched *s = make_sched(f->small, NULL, 0, 0, 0, 1);
    ss_err e;
    uint64_t id;
    int32_t long_prompt[200];
    for (int i = 0; i < 200; i++)
        long_prompt[i] = i % 500;
    /* longer than the context (160): the message gives both numbers */
    assert_int_equal(ss_sched_submit(s, make_req(long_prompt, 160, 4), on_event, NULL, &id, &e), SS_ERR_INVALID_ARG);
    assert_non_null(strstr(e.msg, "160 tokens"));
    assert_non_null(strstr(e.msg, "context holds 160"));
    assert_int_equal(ss_sched_submit(s, make_req(long_prompt, 200, 4), on_event, NULL, &id, &e), SS_ERR_INVALID_ARG);
    assert_non_null(strstr(e.msg, "200"));
    ss_gen_request *q = make_req(long_prompt, 4, 4);
    q->n_prompt = 0;
    assert_int_equal(ss_sched_submit(s, q, on_event, NULL, &id, &e), SS_ERR_INVALID_ARG);
    assert_non_null(strstr(e.msg, "empty"));
    assert_int_equal(ss_sched_submit(s, make_req(long_prompt, 4, 0), on_event, NULL, &id, &e), SS_ERR_INVALID_ARG);
    assert_non_null(strstr(e.msg, "max_tokens"));
    q = make_req(long_prompt, 4, 4);
    q->prompt[2] = 512;
    assert_int_equal(ss_sched_submit(s, q, on_event, NULL, &id, &e), SS_ERR_INVALID_ARG);
    assert_non_null(strstr(e.msg, "vocabulary"));
    q = make_req(long_prompt, 4, 4);
    q->stop[0] = ss_strdup("x");
    q->n_stop = 1;
    assert_int_equal(ss_sched_submit(s, q, on_event, NULL, &id, &e), SS_ERR_UNSUPPORTED); /* no tokenizer */
    q = make_req(long_prompt, 4, 4);
    q->sp.n_logprobs = 21;
    assert_int_equal(ss_sched_submit(s, q, on_event, NULL, &id, &e), SS_ERR_INVALID_ARG);
    assert_int_equal(ss_sched_submit(s, NULL, on_event, NULL, &id, &e), SS_ERR_INVALID_ARG);

    /* the context cap ends a generation with "length" */
    collect c;
    run_alone(s, make_req(f->cases[3].prompt, 130, 1000), &c);
    assert_int_equal(c.finish, SS_FINISH_LENGTH);
    assert_int_equal(c.n, 30);
    assert_golden_prefix(&f->cases[3], c.tokens, c.n);
    assert_true(ss_sched_healthy(s));
    ss_sched_destroy(s);
    collect_fini(&c);
}

static void test_deadline(void **state)
{
    fixture *f = *state;
    ss_sched *s = make_sched(f->big, NULL, 0, 0, 0, 1);
    collect c;
    ss_gen_request *q = make_req(f->cases[3].prompt, 130, 8000);
    q->deadline_ms = ss_now_ms() + 30;
    run_alone(s, q, &c);
    assert_int_equal(c.finish, SS_FINISH_ERROR);
    assert_int_equal(c.status, SS_ERR_TIMEOUT);
    assert_string_equal(c.message, "deadline exceeded");
    ss_sched_stats st;
    wait_idle_stats(s, &st);
    assert_int_equal(st.kv_blocks_used, 0);
    assert_int_equal(st.requests_failed, 1);
    ss_sched_destroy(s);
    collect_fini(&c);
}

static void test_drain(void **state)
{
    fixture *f = *state;
    golden_case *g = &f->cases[1];
    /* a generous deadline: the running request completes */
    ss_sched *s = make_sched(f->big, NULL, 0, 0, 0, 1);
    collect a;
    collect_init(&a);
    submit_ok(s, make_req(g->prompt, g->n_prompt, 8), &a, NULL);
    ss_sched_drain(s, 30000);
    assert_true(a.done);
    assert_int_equal(a.finish, SS_FINISH_LENGTH);
    ss_err e;
    uint64_t id;
    assert_int_equal(ss_sched_submit(s, make_req(g->prompt, g->n_prompt, 8), on_event, NULL, &id, &e),
                     SS_ERR_CANCELLED);
    ss_sched_destroy(s);
    collect_fini(&a);

    /* no time left: a long request is failed */
    s = make_sched(f->big, NULL, 0, 0, 0, 1);
    collect b;
    collect_init(&b);
    submit_ok(s, make_req(g->prompt, g->n_prompt, 8000), &b, NULL);
    wait_tokens(&b, 1);
    ss_sched_drain(s, 0);
    assert_true(b.done);
    assert_int_equal(b.finish, SS_FINISH_ERROR);
    assert_non_null(strstr(b.message, "shutting down"));
    ss_sched_destroy(s);
    collect_fini(&b);
}

/* ss_sched_fail from outside the scheduler (the server's idle check found a lost rank) while steps run ahead: the
 * running and the waiting request fail with its status and message, the step planned ahead is collected and its
 * sequences' blocks come back (no flight outlives its requests), new requests are refused naming the failure, and
 * destroy returns. */
static void test_fail_from_outside(void **state)
{
    fixture *f = *state;
    golden_case *g = &f->cases[1];
    ss_sched *s = make_sched(f->big, NULL, 1, 0, 0, 1); /* one running: b waits */
    collect a, b;
    collect_init(&a);
    collect_init(&b);
    submit_ok(s, make_req(g->prompt, g->n_prompt, 8000), &a, NULL);
    submit_ok(s, make_req(g->prompt, g->n_prompt, 8), &b, NULL);
    wait_tokens(&a, 3);
    ss_sched_fail(s, SS_ERR_COMM, "rank 1 is lost (test)");
    wait_done(&a);
    wait_done(&b);
    assert_false(ss_sched_healthy(s));
    for (int i = 0; i < 2; i++) {
        const collect *c = i ? &b : &a;
        assert_int_equal(c->finish, SS_FINISH_ERROR);
        assert_int_equal(c->status, SS_ERR_COMM);
        assert_non_null(strstr(c->message, "rank 1 is lost (test)"));
    }
    assert_true(a.n >= 3 && a.n < 8000);
    assert_int_equal(b.n, 0);
    ss_sched_stats st;
    wait_idle_stats(s, &st);
    assert_int_equal(st.kv_blocks_used, 0);
    assert_int_equal(st.running, 0);
    /* the replica holds no step (read while the failed scheduler only waits) */
    const int64_t end = ss_now_ms() + WAIT_S * 1000;
    while (ss_replica_pending(f->big) > 0 && ss_now_ms() < end) {
        struct timespec d = {0, 1000000};
        nanosleep(&d, NULL);
    }
    assert_int_equal(ss_replica_pending(f->big), 0);
    ss_err e;
    uint64_t id;
    assert_int_equal(ss_sched_submit(s, make_req(g->prompt, g->n_prompt, 8), on_event, NULL, &id, &e), SS_ERR_COMM);
    assert_non_null(strstr(e.msg, "rank 1 is lost (test)"));
    ss_sched_destroy(s);
    collect_fini(&a);
    collect_fini(&b);
}

static void test_end_ids_min_tokens_bad_words(void **state)
{
    fixture *f = *state;
    golden_case *g = &f->cases[1]; /* greedy: 221 350 305 253 295 225 145 253 ... */
    ss_sched *s = make_sched(f->big, NULL, 0, 0, 0, 1);
    assert_int_equal(g->greedy[3], 253);
    assert_int_equal(g->greedy[4], 295);

    collect c;
    ss_gen_request *q = make_req(g->prompt, g->n_prompt, 16);
    q->ignore_eos = 0;
    q->stop_ids = ss_malloc(sizeof(int32_t));
    q->stop_ids[0] = 295;
    q->n_stop_ids = 1;
    run_alone(s, q, &c);
    assert_int_equal(c.finish, SS_FINISH_STOP);
    assert_int_equal(c.completion_tokens, 5);
    assert_memory_equal(c.tokens, g->greedy, 5 * sizeof(int32_t));
    collect_fini(&c);

    /* ignore_eos leaves stop_token_ids in force, as vLLM does (helper-78: it switched them off) */
    q = make_req(g->prompt, g->n_prompt, 8);
    assert_true(q->ignore_eos);
    q->stop_ids = ss_malloc(sizeof(int32_t));
    q->stop_ids[0] = 295;
    q->n_stop_ids = 1;
    run_alone(s, q, &c);
    assert_int_equal(c.finish, SS_FINISH_STOP);
    assert_int_equal(c.completion_tokens, 5);
    assert_memory_equal(c.tokens, g->greedy, 5 * sizeof(int32_t));
    collect_fini(&c);

    /* the model's end id (llama3-gqa's 2, forced by a bias) ends a request, unless it ignores it */
    for (int ignore = 0; ignore < 2; ignore++) {
        q = make_req(g->prompt, g->n_prompt, 4);
        q->ignore_eos = ignore;
        q->bias_ids = ss_malloc(sizeof(int32_t));
        q->bias_vals = ss_malloc(sizeof(float));
        q->bias_ids[0] = 2;
        q->bias_vals[0] = 100.0f;
        q->n_bias = 1;
        run_alone(s, q, &c);
        assert_int_equal(c.finish, ignore ? SS_FINISH_LENGTH : SS_FINISH_STOP);
        assert_int_equal(c.completion_tokens, ignore ? 4 : 1);
        for (int k = 0; k < c.n; k++)
            assert_int_equal(c.tokens[k], 2);
        collect_fini(&c);
    }

    /* min_tokens with ignore_eos: the stop id is still banned for the first 5 tokens */
    q = make_req(g->prompt, g->n_prompt, 8);
    q->min_tokens = 5;
    q->stop_ids = ss_malloc(sizeof(int32_t));
    q->stop_ids[0] = 295;
    q->n_stop_ids = 1;
    run_alone(s, q, &c);
    assert_memory_equal(c.tokens, g->greedy, 4 * sizeof(int32_t));
    for (int k = 0; k < 5; k++)
        assert_int_not_equal(c.tokens[k], 295);
    collect_fini(&c);

    /* min_tokens 5: the end id is banned for the first 5 tokens */
    q = make_req(g->prompt, g->n_prompt, 8);
    q->ignore_eos = 0;
    q->min_tokens = 5;
    q->stop_ids = ss_malloc(sizeof(int32_t));
    q->stop_ids[0] = 295;
    q->n_stop_ids = 1;
    run_alone(s, q, &c);
    assert_memory_equal(c.tokens, g->greedy, 4 * sizeof(int32_t));
    assert_int_not_equal(c.tokens[4], 295);
    for (int k = 0; k < 5; k++)
        assert_int_not_equal(c.tokens[k], 295);
    collect_fini(&c);

    /* a one-token bad word is never generated */
    q = make_req(g->prompt, g->n_prompt, 8);
    q->n_bad_words = 1;
    q->bad_words = ss_calloc(1, sizeof(int32_t *));
    q->bad_word_lens = ss_calloc(1, sizeof(int32_t));
    q->bad_words[0] = ss_malloc(sizeof(int32_t));
    q->bad_words[0][0] = 253;
    q->bad_word_lens[0] = 1;
    run_alone(s, q, &c);
    assert_memory_equal(c.tokens, g->greedy, 3 * sizeof(int32_t));
    for (int k = 0; k < c.n; k++)
        assert_int_not_equal(c.tokens[k], 253);
    collect_fini(&c);

    /* a two-token bad word: 253 banned only right after 305 */
    q = make_req(g->prompt, g->n_prompt, 8);
    q->n_bad_words = 1;
    q->bad_words = ss_calloc(1, sizeof(int32_t *));
    q->bad_word_lens = ss_calloc(1, sizeof(int32_t));
    q->bad_words[0] = ss_malloc(2 * sizeof(int32_t));
    q->bad_words[0][0] = 305;
    q->bad_words[0][1] = 253;
    q->bad_word_lens[0] = 2;
    run_alone(s, q, &c);
    assert_memory_equal(c.tokens, g->greedy, 3 * sizeof(int32_t));
    assert_int_not_equal(c.tokens[3], 253);
    collect_fini(&c);
    ss_sched_destroy(s);
}

/* ---- speculative decoding ---- */

/* Request kind k of the speculation tests on golden case c's prompt written twice (prompt lookup finds drafts from
 * the first token on): 0 greedy with logprob lists, 1 sampled with a seed, 2 penalties, bad words and min_tokens
 * with an end id, 3 three tokens only. */
static ss_gen_request *spec_req(const fixture *f, int c, int k)
{
    const golden_case *g = &f->cases[c];
    int32_t prompt[512];
    memcpy(prompt, g->prompt, (size_t)g->n_prompt * sizeof(int32_t));
    memcpy(prompt + g->n_prompt, g->prompt, (size_t)g->n_prompt * sizeof(int32_t));
    ss_gen_request *q = make_req(prompt, 2 * g->n_prompt, k == 3 ? 3 : 40);
    if (k == 0)
        q->sp.n_logprobs = 4;
    if (k == 1) {
        q->sp.temperature = 0.6f;
        q->sp.top_k = 3;
        q->sp.seed = 7;
    }
    if (k == 2) {
        q->sp.repetition_penalty = 1.3f;
        q->sp.frequency_penalty = 0.4f;
        q->include_prompt_penalty = 1;
        q->ignore_eos = 0;
        q->min_tokens = 6;
        q->stop_ids = ss_malloc(sizeof(int32_t));
        q->stop_ids[0] = g->greedy[2];
        q->n_stop_ids = 1;
        q->n_bad_words = 1;
        q->bad_words = ss_calloc(1, sizeof(int32_t *));
        q->bad_word_lens = ss_calloc(1, sizeof(int32_t));
        q->bad_words[0] = ss_malloc(2 * sizeof(int32_t));
        q->bad_words[0][0] = g->greedy[0];
        q->bad_words[0][1] = g->greedy[1];
        q->bad_word_lens[0] = 2;
    }
    return q;
}

#define SPEC_KINDS 4

/* got has ref's tokens, finish and log-probabilities: to the bit (tol 0), or within tol (a batch's other rows change the
 * cpu backend's thread split of a reduction, never a row's token: test_batching_invariance). */
static void assert_same_run(const collect *ref, const collect *got, double tol, const char *what)
{
    if (ref->n != got->n || ref->finish != got->finish || ref->completion_tokens != got->completion_tokens)
        fail_msg("%s: %d tokens (finish %d) against %d (finish %d)", what, (int)got->n, (int)got->finish,
                 (int)ref->n, (int)ref->finish);
    for (int32_t i = 0; i < ref->n; i++)
        if (ref->tokens[i] != got->tokens[i] || (tol == 0 && memcmp(&ref->logprobs[i], &got->logprobs[i], 4)) ||
            fabs((double)ref->logprobs[i] - (double)got->logprobs[i]) > tol)
            fail_msg("%s: token %d is %d (log-probability %.9g) against %d (%.9g)", what, (int)i, (int)got->tokens[i],
                     (double)got->logprobs[i], (int)ref->tokens[i], (double)ref->logprobs[i]);
}

/* Speculation changes when tokens come, never which: every request kind gives the same tokens and log-probabilities
 * as without it, alone (to the bit) and eight at once, and drafts were both confirmed and refused on the way. */
static void test_spec_same_text(void **state)
{
    fixture *f = *state;
    static collect ref[SPEC_KINDS][2], alone[SPEC_KINDS][2], together[SPEC_KINDS][2];
    ss_sched *plain = make_sched_ex(f->big, NULL, 0, 0, 0, 1, 1, 0, 0);
    ss_sched *spec = make_sched_ex(f->twin, NULL, 0, 0, 0, 1, 0, 0, 6);
    for (int k = 0; k < SPEC_KINDS; k++)
        for (int c = 0; c < 2; c++) {
            run_alone(plain, spec_req(f, c + 1, k), &ref[k][c]);
            run_alone(spec, spec_req(f, c + 1, k), &alone[k][c]);
        }
    ss_sched_stats st;
    wait_idle_stats(spec, &st);
    const int64_t alone_drafts = st.spec_draft_tokens, alone_accepted = st.spec_accepted_tokens;
    for (int k = 0; k < SPEC_KINDS; k++)
        for (int c = 0; c < 2; c++) {
            collect_init(&together[k][c]);
            submit_ok(spec, spec_req(f, c + 1, k), &together[k][c], NULL);
        }
    for (int k = 0; k < SPEC_KINDS; k++)
        for (int c = 0; c < 2; c++)
            wait_done(&together[k][c]);
    wait_idle_stats(spec, &st);
    ss_sched_destroy(plain);
    ss_sched_destroy(spec);
    print_message("speculation: alone %lld of %lld drafts confirmed; together %lld of %lld\n", (long long)alone_accepted,
                  (long long)alone_drafts, (long long)(st.spec_accepted_tokens - alone_accepted),
                  (long long)(st.spec_draft_tokens - alone_drafts));
    for (int k = 0; k < SPEC_KINDS; k++)
        for (int c = 0; c < 2; c++) {
            char what[64];
            snprintf(what, sizeof what, "kind %d, case %d, alone", k, c + 1);
            assert_same_run(&ref[k][c], &alone[k][c], 0, what);
            snprintf(what, sizeof what, "kind %d, case %d, together", k, c + 1);
            assert_same_run(&ref[k][c], &together[k][c], 1e-4, what);
            collect_fini(&ref[k][c]);
            collect_fini(&alone[k][c]);
            collect_fini(&together[k][c]);
        }
    assert_true(alone_accepted > 0);                       /* drafts were confirmed */
    assert_true(alone_accepted < alone_drafts);            /* and refused */
    assert_true(st.spec_accepted_tokens > alone_accepted); /* also in a batch */
    assert_int_equal(st.kv_blocks_used, 0);
    assert_int_equal(st.requests_ok, 2 * 2 * SPEC_KINDS);
}

static int memchr_i32(const int32_t *a, int32_t n, int32_t v)
{
    for (int32_t i = 0; i < n; i++)
        if (a[i] == v)
            return 1;
    return 0;
}

/* Bans follow the drafts: a draft entry's bad words match the text with the drafts before it, and min_tokens counts
 * them. Bad words taken from the free output (each pair of neighbours) and end ids at each token of it (min_tokens
 * up to there) change the text; with speculation it is the same text. */
static void test_spec_bans_follow_drafts(void **state)
{
    fixture *f = *state;
    ss_sched *plain = make_sched_ex(f->big, NULL, 0, 0, 0, 1, 1, 0, 0);
    ss_sched *spec = make_sched_ex(f->twin, NULL, 0, 0, 0, 1, 0, 0, 6);
    collect free_run, ref, got;
    run_alone(plain, spec_req(f, 1, 0), &free_run);
    int changed = 0;
    for (int v = 0; v < 24 && 2 + 3 * (v / 2) < free_run.n; v++) {
        ss_gen_request *q[2];
        for (int i = 0; i < 2; i++) {
            q[i] = spec_req(f, 1, 0);
            const int32_t at = 2 + 3 * (v / 2); /* 2 .. 35 */
            if (v % 2) { /* the end id of token `at`, banned before it */
                q[i]->ignore_eos = 0;
                q[i]->min_tokens = at;
                q[i]->stop_ids = ss_malloc(sizeof(int32_t));
                q[i]->stop_ids[0] = free_run.tokens[at];
                q[i]->n_stop_ids = 1;
            } else { /* the pair of tokens at - 1, at */
                q[i]->n_bad_words = 1;
                q[i]->bad_words = ss_calloc(1, sizeof(int32_t *));
                q[i]->bad_word_lens = ss_calloc(1, sizeof(int32_t));
                q[i]->bad_words[0] = ss_malloc(2 * sizeof(int32_t));
                memcpy(q[i]->bad_words[0], free_run.tokens + at - 1, 2 * sizeof(int32_t));
                q[i]->bad_word_lens[0] = 2;
            }
        }
        run_alone(plain, q[0], &ref);
        run_alone(spec, q[1], &got);
        char what[64];
        snprintf(what, sizeof what, "variant %d", v);
        assert_same_run(&ref, &got, 0, what);
        changed += ref.n != free_run.n || memcmp(ref.tokens, free_run.tokens, (size_t)ref.n * sizeof(int32_t)) != 0;
        collect_fini(&ref);
        collect_fini(&got);
    }
    /* An end id with a bias of +100 ends the text right where min_tokens lets it, in the free run's loop of one token
     * (drafts confirmed through that point): a draft entry past min_tokens must not ban it. */
    int32_t end_id = 1;
    while (memchr_i32(free_run.tokens, free_run.n, end_id))
        end_id++;
    for (int32_t m = 30; m < free_run.n && m <= 36; m += 3) {
        ss_gen_request *q[2];
        for (int i = 0; i < 2; i++) {
            q[i] = spec_req(f, 1, 0);
            q[i]->ignore_eos = 0;
            q[i]->min_tokens = m;
            q[i]->stop_ids = ss_malloc(sizeof(int32_t));
            q[i]->stop_ids[0] = end_id;
            q[i]->n_stop_ids = 1;
            q[i]->bias_ids = ss_malloc(sizeof(int32_t));
            q[i]->bias_vals = ss_malloc(sizeof(float));
            q[i]->bias_ids[0] = end_id;
            q[i]->bias_vals[0] = 100.0f;
            q[i]->n_bias = 1;
        }
        run_alone(plain, q[0], &ref);
        run_alone(spec, q[1], &got);
        assert_int_equal(ref.n, m + 1);
        assert_int_equal(ref.tokens[m], end_id);
        assert_memory_equal(ref.tokens, free_run.tokens, (size_t)m * sizeof(int32_t));
        char what[64];
        snprintf(what, sizeof what, "end id after min_tokens %d", (int)m);
        assert_same_run(&ref, &got, 0, what);
        collect_fini(&ref);
        collect_fini(&got);
    }
    ss_sched_stats st;
    wait_idle_stats(spec, &st);
    ss_sched_destroy(plain);
    ss_sched_destroy(spec);
    collect_fini(&free_run);
    assert_true(changed >= 12); /* the bans did change the text */
    assert_true(st.spec_accepted_tokens > 0);
}

/* One request alone under a drafts' KV bound of 1 key (SS_SPEC_KEYS), the bound counting a read a draft or (tile) one
 * a tile of that many tokens (SS_SPEC_TILE, the scheduler's spec_tile): its text is the text without speculation;
 * drafts: whether it may draft at all. */
static void check_spec_bound(fixture *f, const char *tile, int drafts)
{
    setenv("SS_SPEC_KEYS", "1", 1);
    if (tile)
        setenv("SS_SPEC_TILE", tile, 1);
    ss_sched *spec = make_sched_ex(f->twin, NULL, 0, 0, 0, 1, 0, 0, 6);
    unsetenv("SS_SPEC_KEYS");
    unsetenv("SS_SPEC_TILE");
    ss_sched *plain = make_sched_ex(f->big, NULL, 0, 0, 0, 1, 1, 0, 0);
    collect ref, got;
    run_alone(plain, spec_req(f, 1, 0), &ref);
    run_alone(spec, spec_req(f, 1, 0), &got);
    ss_sched_stats st;
    wait_idle_stats(spec, &st);
    ss_sched_destroy(plain);
    ss_sched_destroy(spec);
    assert_same_run(&ref, &got, 0, tile ? "bounded by tiles" : "bounded");
    if (drafts)
        assert_true(st.spec_draft_tokens > 0);
    else
        assert_int_equal(st.spec_draft_tokens, 0);
    collect_fini(&ref);
    collect_fini(&got);
}

/* Drafts read their sequence's KV again, so a long context bounds them (ss_spec_keys; SS_SPEC_KEYS sets the bound):
 * under a bound of 1 key no sequence of a token or more has a draft, and the text is the same. */
static void test_spec_bound_by_context(void **state)
{
    check_spec_bound(*state, NULL, 0);
}

/* The same bound counting one read of a sequence's keys a tile of 4 of its tokens (SS_SPEC_TILE=4, as a GPU's graph
 * steps read them): a token and 3 drafts add no reads, so it drafts (ss_spec_keys_room's counts: test_sched_spec), and
 * its text stays the text without speculation. */
static void test_spec_bound_by_tiles(void **state)
{
    check_spec_bound(*state, "4", 1);
}

/* Adaptive draft lengths (SS_SPEC_ADAPT=1, the scheduler's spec_adapt): one request alone has the text without
 * speculation to the bit, its drafts are confirmed at times, and it drafts fewer than with every step drafting all 6
 * (on this text many are refused: after a miss a sequence drafts one more than was confirmed). */
static void test_spec_adaptive(void **state)
{
    fixture *f = *state;
    ss_sched *plain = make_sched_ex(f->big, NULL, 0, 0, 0, 1, 1, 0, 0);
    ss_sched *full = make_sched_ex(f->big, NULL, 0, 0, 0, 1, 0, 0, 6);
    setenv("SS_SPEC_ADAPT", "1", 1);
    ss_sched *adapt = make_sched_ex(f->twin, NULL, 0, 0, 0, 1, 0, 0, 6);
    unsetenv("SS_SPEC_ADAPT");
    collect ref, got_full, got;
    ss_sched_stats st_full, st;
    run_alone(plain, spec_req(f, 1, 0), &ref);
    ss_sched_destroy(plain);
    run_alone(full, spec_req(f, 1, 0), &got_full);
    wait_idle_stats(full, &st_full);
    ss_sched_destroy(full);
    run_alone(adapt, spec_req(f, 1, 0), &got);
    wait_idle_stats(adapt, &st);
    ss_sched_destroy(adapt);
    print_message("adaptive: %lld of %lld drafts confirmed (all 6 each step: %lld of %lld)\n",
                  (long long)st.spec_accepted_tokens, (long long)st.spec_draft_tokens,
                  (long long)st_full.spec_accepted_tokens, (long long)st_full.spec_draft_tokens);
    assert_same_run(&ref, &got_full, 0, "all drafts");
    assert_same_run(&ref, &got, 0, "adaptive");
    assert_true(st.spec_accepted_tokens > 0);
    assert_true(st.spec_draft_tokens < st_full.spec_draft_tokens);
    collect_fini(&ref);
    collect_fini(&got_full);
    collect_fini(&got);
}

/* The default bound (speculation only while at most 4 sequences run) and the pauses after failed drafts. Six
 * requests at once (two end after 3 tokens): steps planned ahead while more than 4 run or all pause, drafts when 4 are
 * left, each text the one it gets alone without speculation. */
static void test_spec_defaults(void **state)
{
    fixture *f = *state;
    static collect ref[6], got[6];
    ss_sched *plain = make_sched_ex(f->big, NULL, 0, 0, 0, 1, 1, 0, 0);
    for (int i = 0; i < 6; i++)
        run_alone(plain, spec_req(f, 1 + i % 2, (int[]){0, 1, 3}[i / 2]), &ref[i]);
    ss_sched_destroy(plain);
    ss_sched *spec = make_sched_ex(f->big, NULL, 0, 0, 0, 1, 0, 0, -6);
    for (int i = 0; i < 6; i++) {
        collect_init(&got[i]);
        submit_ok(spec, spec_req(f, 1 + i % 2, (int[]){0, 1, 3}[i / 2]), &got[i], NULL);
    }
    for (int i = 0; i < 6; i++)
        wait_done(&got[i]);
    ss_sched_stats st;
    wait_idle_stats(spec, &st);
    ss_sched_destroy(spec);
    for (int i = 0; i < 6; i++) {
        char what[32];
        snprintf(what, sizeof what, "request %d", i);
        assert_same_run(&ref[i], &got[i], 1e-4, what);
        collect_fini(&ref[i]);
        collect_fini(&got[i]);
    }
    assert_true(st.spec_draft_tokens > 0);
    assert_true(st.steps_ahead > 0);
}

/* Drafts stop at the context: on the small replica (context 160) the doubled prompt's text runs into its loop and
 * ends by length at the context's end, as without speculation. */
static void test_spec_context_end(void **state)
{
    fixture *f = *state;
    collect ref, got;
    ss_gen_request *q[2] = {spec_req(f, 1, 0), spec_req(f, 1, 0)};
    q[0]->max_tokens = q[1]->max_tokens = 1000;
    const int32_t room = 160 - q[0]->n_prompt;
    ss_sched *plain = make_sched_ex(f->small, NULL, 0, 0, 0, 1, 1, 0, 0);
    run_alone(plain, q[0], &ref);
    ss_sched_destroy(plain);
    ss_sched *spec = make_sched_ex(f->small, NULL, 0, 0, 0, 1, 0, 0, 6);
    run_alone(spec, q[1], &got);
    ss_sched_stats st;
    wait_idle_stats(spec, &st);
    ss_sched_destroy(spec);
    assert_int_equal(ref.finish, SS_FINISH_LENGTH);
    assert_int_equal(ref.n, room);
    assert_same_run(&ref, &got, 0, "at the context's end");
    assert_true(st.spec_accepted_tokens > 0);
    assert_int_equal(st.kv_blocks_used, 0);
    collect_fini(&ref);
    collect_fini(&got);
}

/* Speculating in a batch of 16 whose KV cache (12 blocks) forces preemptions, and in one of 32: each request's
 * tokens are those it gets alone without speculation. */
static void test_spec_batched_and_preempted(void **state)
{
    fixture *f = *state;
    ss_sched_stats st;
    run_mix(f, f->small, 16, 0, 0, 5, &st);
    assert_true(st.preemptions > 0);
    assert_true(st.spec_draft_tokens > 0);
    run_mix(f, f->big, MIX_N, 0, 0, 5, &st);
    assert_true(st.spec_accepted_tokens > 0);
}

static void test_seed_reproducible(void **state)
{
    fixture *f = *state;
    golden_case *g = &f->cases[2];
    ss_sched *s = make_sched(f->big, NULL, 0, 0, 0, 1);
    collect a, b, c;
    ss_gen_request *q[3];
    for (int i = 0; i < 3; i++) {
        q[i] = make_req(g->prompt, g->n_prompt, 24);
        q[i]->sp.temperature = 1.5f;
        q[i]->sp.seed = i < 2 ? 42 : 43;
    }
    run_alone(s, q[0], &a);
    run_alone(s, q[1], &b);
    run_alone(s, q[2], &c);
    assert_memory_equal(a.tokens, b.tokens, 24 * sizeof(int32_t));
    assert_true(memcmp(a.tokens, c.tokens, 24 * sizeof(int32_t)) != 0);
    ss_sched_destroy(s);
    collect_fini(&a);
    collect_fini(&b);
    collect_fini(&c);
}

/* logit_bias holds on every step, also those planned ahead (the overlap is on here): a bias of +100 on one
 * id makes greedy decoding pick it each time, and a bias of -100 on the golden's first token keeps it out.
 * (Session 28: steps planned ahead dropped the bias.) */
static void test_logit_bias_with_overlap(void **state)
{
    fixture *f = *state;
    golden_case *g = &f->cases[2];
    ss_sched *s = make_sched(f->big, NULL, 0, 0, 0, 1);
    collect a, b;
    int32_t forced = (g->greedy[0] + 7) % 100 + 1; /* an id other than the golden's first */
    ss_gen_request *q = make_req(g->prompt, g->n_prompt, 16);
    q->bias_ids = ss_malloc(sizeof(int32_t));
    q->bias_vals = ss_malloc(sizeof(float));
    q->bias_ids[0] = forced;
    q->bias_vals[0] = 100.0f;
    q->n_bias = 1;
    run_alone(s, q, &a);
    assert_int_equal(a.n, 16);
    for (int i = 0; i < 16; i++)
        assert_int_equal(a.tokens[i], forced);
    q = make_req(g->prompt, g->n_prompt, 16);
    q->bias_ids = ss_malloc(sizeof(int32_t));
    q->bias_vals = ss_malloc(sizeof(float));
    q->bias_ids[0] = g->greedy[0];
    q->bias_vals[0] = -100.0f;
    q->n_bias = 1;
    run_alone(s, q, &b);
    assert_int_equal(b.n, 16);
    for (int i = 0; i < 16; i++)
        assert_int_not_equal(b.tokens[i], g->greedy[0]);
    ss_sched_stats st;
    wait_idle_stats(s, &st);
    ss_sched_destroy(s);
    collect_fini(&a);
    collect_fini(&b);
}

/* The Llama 3.1 tokenizer of the e2e-llama3-tok fixture (caller destroys). */
static ss_tokenizer *e2e_tokenizer(void)
{
    char dir[1024];
    snprintf(dir, sizeof dir, "%s/models/e2e-llama3-tok", SS_FIXTURES);
    ss_tokenizer *tok = NULL;
    ss_err e;
    if (ss_tokenizer_load(dir, &tok, &e) != SS_OK)
        fail_msg("tokenizer: %s", e.msg);
    return tok;
}

/* Text through the real Llama 3.1 tokenizer: the streamed text equals the golden text, and a stop
 * string spanning two tokens is cut exactly. */
static void test_text_and_stop_strings(void **state)
{
    (void)state;
    ss_tokenizer *tok = e2e_tokenizer();
    ss_replica *rep = make_replica("e2e-llama3-tok", 64, 256);
    cJSON *j = golden_load("e2e-llama3-tok");
    ss_sched *s = make_sched(rep, tok, 0, 0, 0, 1);
    const cJSON *cases = cJSON_GetObjectItem(j, "cases");
    int idx = 0;
    for (const cJSON *cj = cases->child; cj; cj = cj->next, idx++) {
        int32_t prompt[256];
        int n = 0;
        for (const cJSON *x = cJSON_GetObjectItem(cj, "prompt_ids")->child; x; x = x->next)
            prompt[n++] = (int32_t)x->valuedouble;
        int n_gen = cJSON_GetArraySize(cJSON_GetObjectItem(cj, "greedy_ids"));
        const char *want = cJSON_GetObjectItem(cj, "greedy_text")->valuestring;
        collect c;
        run_alone(s, make_req(prompt, n, n_gen), &c);
        assert_int_equal(c.finish, SS_FINISH_LENGTH);
        assert_int_equal(c.text_len, strlen(want));
        assert_memory_equal(c.text, want, c.text_len);
        collect_fini(&c);

        /* stop string: the first 3 bytes of the golden text's second half plus the next 4 bytes */
        size_t wl = strlen(want);
        size_t at = wl / 2;
        char stop[16];
        snprintf(stop, sizeof stop, "%.7s", want + at);
        const char *hit = strstr(want, stop);
        size_t expect_len = (size_t)(hit - want);
        ss_gen_request *q = make_req(prompt, n, n_gen);
        q->stop[0] = ss_strdup("never-appears");
        q->stop[1] = ss_strdup(stop);
        q->n_stop = 2;
        run_alone(s, q, &c);
        assert_int_equal(c.finish, SS_FINISH_STOP);
        assert_int_equal(c.text_len, expect_len);
        assert_memory_equal(c.text, want, expect_len);
        assert_true(c.completion_tokens < n_gen);
        collect_fini(&c);
    }
    /* the case the brief names: "late\tte" spans "\ttemplate" + "\ttemplate" */
    const cJSON *c2 = cJSON_GetArrayItem(cases, 1);
    const char *want2 = cJSON_GetObjectItem(c2, "greedy_text")->valuestring;
    if (strstr(want2, "late\ttemplate")) {
        int32_t prompt[256];
        int n = 0;
        for (const cJSON *x = cJSON_GetObjectItem(c2, "prompt_ids")->child; x; x = x->next)
            prompt[n++] = (int32_t)x->valuedouble;
        ss_gen_request *q = make_req(prompt, n, 16);
        q->stop[0] = ss_strdup("late\tte");
        q->n_stop = 1;
        collect c;
        run_alone(s, q, &c);
        assert_int_equal(c.finish, SS_FINISH_STOP);
        size_t expect_len = (size_t)(strstr(want2, "late\tte") - want2);
        assert_int_equal(c.text_len, expect_len);
        assert_memory_equal(c.text, want2, expect_len);
        collect_fini(&c);
    }
    ss_sched_destroy(s);
    cJSON_Delete(j);
    ss_replica_destroy(rep);
    ss_tokenizer_destroy(tok);
}

/* JSON mode on the Llama 3.1 tokenizer's random model. 12 sampled requests at once (temperature 1, their own seeds,
 * more than the KV cache holds, so some are preempted and recomputed; their masks made on three threads) and a
 * greedy one: every text is a prefix the
 * grammar accepts, whole exactly when the request ended "stop", and then cJSON parses it as an object; the same
 * seed alone gives the same text. A logit bias of +10 on '"' and '}' lets this model's strings and objects end
 * (without it its random strings run past max_tokens). min_tokens, and JSON mode without a tokenizer, are
 * refused. */
#define JSON_N 12
/* A greedy JSON-mode request of up to 160 tokens with +10 on the two closers' ids. */
static ss_gen_request *json_req(const int32_t *ids, int32_t n, const int32_t closers[2])
{
    ss_gen_request *q = make_req(ids, n, 160);
    q->json_mode = 1;
    q->n_bias = 2;
    q->bias_ids = ss_malloc(2 * sizeof *q->bias_ids);
    q->bias_vals = ss_malloc(2 * sizeof *q->bias_vals);
    assert_true(q->bias_ids && q->bias_vals);
    memcpy(q->bias_ids, closers, 2 * sizeof *closers);
    q->bias_vals[0] = q->bias_vals[1] = 10.0f;
    return q;
}

static void test_json_mode(void **state)
{
    (void)state;
    ss_tokenizer *tok = e2e_tokenizer();
    ss_err e;
    ss_replica *rep = make_replica("e2e-llama3-tok", 64, 256);
    ss_sched_params p = ss_sched_default_params();
    p.overlap = SS_OVERLAP_ON;
    p.mask_threads = 3; /* the masks of a step made on three threads, also on a 2-core machine */
    ss_sched *s = NULL;
    if (ss_sched_create(&p, rep, tok, &s, &e) != SS_OK)
        fail_msg("sched create: %s", e.msg);
    const char *prompt_text = "Reply in JSON: the name and age of a cat.";
    int32_t *ids = NULL;
    size_t n_ids = 0;
    assert_int_equal(ss_tokenizer_encode(tok, prompt_text, strlen(prompt_text), 1, &ids, &n_ids, &e), SS_OK);

    static collect c[JSON_N + 1];
    const int32_t closers[2] = {ss_tokenizer_token_to_id(tok, "\""), ss_tokenizer_token_to_id(tok, "}")};
    assert_true(closers[0] >= 0 && closers[1] >= 0);
    for (int i = 0; i <= JSON_N; i++) {
        ss_gen_request *q = json_req(ids, (int32_t)n_ids, closers);
        if (i < JSON_N) {
            q->sp.temperature = 1.0f;
            q->sp.seed = 1000u + (uint64_t)i;
        }
        collect_init(&c[i]);
        submit_ok(s, q, &c[i], NULL);
    }
    int whole = 0;
    for (int i = 0; i <= JSON_N; i++) {
        wait_done(&c[i]);
        if (c[i].finish != SS_FINISH_STOP && c[i].finish != SS_FINISH_LENGTH)
            fail_msg("JSON request %d: finish %d (%s)", i, (int)c[i].finish, c[i].message);
        ss_json_state js;
        ss_json_init(&js, anyo());
        if (!ss_json_push_bytes(anyo(), &js, (const uint8_t *)c[i].text, c[i].text_len))
            fail_msg("JSON request %d: the grammar refuses its text: %.*s", i, (int)c[i].text_len, c[i].text);
        assert_int_equal(ss_json_done(&js), c[i].finish == SS_FINISH_STOP);
        if (c[i].finish == SS_FINISH_STOP) {
            whole++;
            cJSON *j = cJSON_ParseWithLength(c[i].text, c[i].text_len);
            if (!j || !cJSON_IsObject(j))
                fail_msg("JSON request %d: cJSON does not read an object: %.*s", i, (int)c[i].text_len, c[i].text);
            cJSON_Delete(j);
        } else {
            assert_int_equal(c[i].completion_tokens, 160);
        }
    }
    print_message("JSON mode: %d of %d outputs whole objects within 160 tokens; e.g. %.*s\n", whole, JSON_N + 1,
                  (int)(c[0].text_len < 120 ? c[0].text_len : 120), c[0].text);
    assert_true(whole >= 4);
    /* the first again, alone: the same text */
    ss_gen_request *q = json_req(ids, (int32_t)n_ids, closers);
    q->sp.temperature = 1.0f;
    q->sp.seed = 1000u;
    collect again;
    run_alone(s, q, &again);
    assert_int_equal(again.text_len, c[0].text_len);
    assert_memory_equal(again.text, c[0].text, again.text_len);
    collect_fini(&again);
    for (int i = 0; i <= JSON_N; i++)
        collect_fini(&c[i]);

    q = make_req(ids, (int32_t)n_ids, 16);
    q->json_mode = 1;
    q->min_tokens = 4;
    uint64_t id;
    assert_int_equal(ss_sched_submit(s, q, on_event, NULL, &id, &e), SS_ERR_INVALID_ARG);
    assert_non_null(strstr(e.msg, "min_tokens"));
    ss_sched_destroy(s);
    s = make_sched(rep, NULL, 0, 0, 0, 1);
    q = make_req(ids, (int32_t)n_ids, 16);
    q->json_mode = 1;
    assert_int_equal(ss_sched_submit(s, q, on_event, NULL, &id, &e), SS_ERR_UNSUPPORTED);
    assert_non_null(strstr(e.msg, "tokenizer"));
    ss_sched_destroy(s);
    ss_free(ids);
    ss_replica_destroy(rep);
    ss_tokenizer_destroy(tok);
}

/* Allocation failures injected from submit on (scheduler thread and replica included): every request
 * ends with a clean DONE, a failed step turns the scheduler unhealthy and fails what comes next. Last:
 * a replica that failed mid-step is not reused. */
static void test_alloc_failures(void **state)
{
    fixture *f = *state;
    golden_case *g = &f->cases[2];
    int saw_ok = 0, saw_error = 0, saw_unhealthy = 0;
    long tries = 0;
    for (long n = 0; !saw_ok && n < 1000000; n = n < 30 ? n + 1 : n * 3 / 2, tries++) {
        ss_sched *s = make_sched(f->small, NULL, 0, 0, 0, 1);
        ss_gen_request *q = make_req(g->prompt, g->n_prompt, 100); /* more than the first 64-token buffer */
        collect c;
        collect_init(&c);
        ss_err e;
        uint64_t id;
        ss_alloc_fail_after(n);
        ss_status st = ss_sched_submit(s, q, on_event, &c, &id, &e);
        if (st == SS_OK)
            wait_done(&c);
        ss_alloc_fail_after(-1);
        if (st != SS_OK) {
            assert_int_equal(st, SS_ERR_NOMEM);
        } else if (c.finish == SS_FINISH_ERROR) {
            saw_error = 1;
            assert_true(c.message[0] != '\0');
            if (!ss_sched_healthy(s)) {
                saw_unhealthy = 1;
                assert_non_null(strstr(c.message, "replica step failed"));
                assert_int_not_equal(ss_sched_submit(s, make_req(g->prompt, g->n_prompt, 4), on_event, NULL, &id, &e),
                                     SS_OK);
                assert_non_null(strstr(e.msg, "not healthy"));
            }
        } else {
            saw_ok = 1;
            assert_int_equal(c.finish, SS_FINISH_LENGTH);
            assert_int_equal(c.n, 100);
        }
        ss_sched_destroy(s);
        collect_fini(&c);
    }
    assert_true(saw_ok);
    assert_true(saw_error);
    print_message("alloc failures: %ld runs, a failed step seen: %d\n", tries, saw_unhealthy);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_greedy_golden),
        cmocka_unit_test(test_batching_invariance),
        cmocka_unit_test(test_overlap_end_mid_flight),
        cmocka_unit_test(test_overlap_full_batch),
        cmocka_unit_test(test_overlap_idle_and_step_time),
        cmocka_unit_test(test_long_prompt_does_not_stall_decode),
        cmocka_unit_test(test_long_context_chunks_shrink),
        cmocka_unit_test(test_kv_exhaustion_preemption),
        cmocka_unit_test(test_prefix_cache_hit),
        cmocka_unit_test(test_cancel_frees_blocks),
        cmocka_unit_test(test_queue_full),
        cmocka_unit_test(test_fail_from_outside),
        cmocka_unit_test(test_bad_requests),
        cmocka_unit_test(test_deadline),
        cmocka_unit_test(test_drain),
        cmocka_unit_test(test_end_ids_min_tokens_bad_words),
        cmocka_unit_test(test_seed_reproducible),
        cmocka_unit_test(test_spec_same_text),
        cmocka_unit_test(test_spec_bans_follow_drafts),
        cmocka_unit_test(test_spec_bound_by_context),
        cmocka_unit_test(test_spec_bound_by_tiles),
        cmocka_unit_test(test_spec_adaptive),
        cmocka_unit_test(test_spec_defaults),
        cmocka_unit_test(test_spec_context_end),
        cmocka_unit_test(test_spec_batched_and_preempted),
        cmocka_unit_test(test_logit_bias_with_overlap),
        cmocka_unit_test(test_text_and_stop_strings),
        cmocka_unit_test(test_json_mode),
        cmocka_unit_test(test_alloc_failures),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}

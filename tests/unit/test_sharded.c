/* test_sharded.c — every fixture model at every (tp, pp) with tp·pp <= 4 that its shapes allow gives
 * the logits of one process (relative L2 <= 1e-5) and identical greedy tokens; ranks are real
 * processes talking TCP (the shardserve binary's `worker`). The sharded runs, and a second
 * one-process run, decode with steps submitted ahead (SS_TOKEN_PREV); the reference does not. SS_TEST_KV=fp8:
 * the same comparison with every rank's KV cache in fp8 (its rows quantise alike however the heads are split).
 * SS_TEST_QUANT=fp8: with fp8 projection weights; pipeline stages hold whole matrices, so pp runs still equal one
 * process. At tp the column-parallel rows (q/k/v, gate/up) are quantised as one process's are (a scale a row), but
 * o's and down's rows are split, each part with its own scale (SHARD_QUANT_TP_TOL, tokens not compared). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/alloc.h"
#include "model/config.h"
#include "model/shard_plan.h"
#include "runner/replica.h"

#define SHARD_TOL 1e-5
#define SHARD_GEN 8
#define SHARD_QUANT_TP_TOL 0.08 /* fp8 weights at tp > 1 (the fixtures: 0.034 to 0.048 at tp 2) */

static ss_kv_type shard_kv = SS_KV_ACT;             /* SS_TEST_KV */
static ss_linear_type shard_quant = SS_LINEAR_ACT; /* SS_TEST_QUANT */

static const char *models[] = {"llama3-gqa", "llama2-mha", "mistral-tied-mqa", "qwen2-bias", "qwen3-qknorm",
                               "e2e-llama3-tok"};
static const int32_t prompt[] = {3, 17, 42, 99, 5, 250, 7, 11, 64, 128, 1, 2, 300, 45, 6, 77, 90, 13, 21};
#define N_PROMPT ((int32_t)(sizeof prompt / sizeof prompt[0]))

typedef struct run_result {
    float *logits; /* [N_PROMPT, V] */
    int32_t tokens[SHARD_GEN];
    float logprobs[SHARD_GEN]; /* of the greedy token; with tp > 1, from the shard-reduced path */
    int32_t V;
} run_result;

/* A cpu replica of a fixture model, ranks as worker processes; fails the test if it cannot start. */
static ss_replica *open_replica_ex(const char *model, int tp, int pp, int32_t max_seq_len, int32_t kv_blocks,
                                   int64_t batch_tokens, int32_t max_seqs, int no_graphs)
{
    char dir[1024];
    snprintf(dir, sizeof dir, "%s/models/%s", SS_FIXTURES, model);
    ss_replica_params p = ss_replica_default_params();
    p.model_dir = dir;
    p.tp = tp;
    p.pp = pp;
    /* SS_TEST_DEVICE=cuda: test_sampled_tp_ahead on GPUs (the other tests compare float32 logits) */
    const char *dev = getenv("SS_TEST_DEVICE");
    p.backend.device = dev && !strcmp(dev, "cuda") ? SS_DEVICE_CUDA : SS_DEVICE_CPU;
    p.backend.n_threads = 1;
    p.backend.kv_type = shard_kv;
    p.backend.linear_type = shard_quant;
    p.max_seq_len = max_seq_len;
    p.num_kv_blocks = kv_blocks;
    p.max_batch_tokens = batch_tokens;
    p.max_seqs = max_seqs;
    p.no_graphs = no_graphs;
    p.comm_timeout_ms = 30000;
    p.worker_exe = SS_BINARY_DIR "/shardserve";
    ss_replica *r = NULL;
    ss_err e;
    if (ss_replica_create(&p, &r, &e) != SS_OK)
        fail_msg("%s tp%d pp%d: %s", model, tp, pp, e.msg);
    return r;
}

static ss_replica *open_replica(const char *model, int tp, int pp, int32_t max_seq_len, int32_t kv_blocks,
                                int64_t batch_tokens, int32_t max_seqs)
{
    return open_replica_ex(model, tp, pp, max_seq_len, kv_blocks, batch_tokens, max_seqs, 0);
}

/* A sequence of the plan that samples with the default parameters: n_tokens tokens over the given blocks
 * (borrowed), from position 0. */
static ss_plan_seq sampling_seq(uint64_t id, int32_t *blocks, int32_t n_blocks, int32_t n_tokens)
{
    ss_plan_seq q;
    memset(&q, 0, sizeof q);
    q.seq_id = id;
    q.blocks = blocks;
    q.n_blocks = n_blocks;
    q.n_tokens = n_tokens;
    q.sample = 1;
    q.sp = ss_sampling_default();
    return q;
}

/* temperature > 0: every step samples (top-p 0.95, seed 7) instead of taking the argmax. */
static int run_model_t(const char *model, int tp, int pp, int ahead, float temperature, run_result *res)
{
    ss_replica *r = open_replica(model, tp, pp, 64, 8, 64, 4);
    ss_err e;
    int32_t V = ss_replica_config(r)->vocab_size;
    int32_t blocks[4] = {3, 1, 2, 0};
    ss_plan_seq q = sampling_seq(0, blocks, 4, N_PROMPT);
    if (temperature > 0) {
        q.sp.temperature = temperature;
        q.sp.top_p = 0.95f;
        q.sp.seed = 7;
    }
    int32_t ids[N_PROMPT];
    for (int i = 0; i < N_PROMPT; i++)
        ids[i] = prompt[i] % V;
    ss_step_plan plan = {1, SS_PLAN_ALL_LOGITS, 1, &q, N_PROMPT, ids};
    ss_step_output out;
    if (ss_replica_step(r, &plan, &out, &e) != SS_OK)
        fail_msg("%s tp%d pp%d: %s", model, tp, pp, e.msg);
    res->V = V;
    res->logits = malloc((size_t)N_PROMPT * V * sizeof(float));
    memcpy(res->logits, out.logits, (size_t)N_PROMPT * V * sizeof(float));
    int32_t tok = out.token[0];
    ss_step_output_clear(&out);
    int32_t prev = SS_TOKEN_PREV;
    for (int k = 0; k < SHARD_GEN; k++) {
        res->tokens[k] = tok;
        /* ahead: step k was submitted with step k-1 still pending; submit k+1 before collecting k */
        for (int sub = k == 0 || !ahead ? k : k + 1; sub <= k + ahead && sub < SHARD_GEN; sub++) {
            q.pos_start = N_PROMPT + sub;
            q.n_tokens = 1;
            q.rng_counter = 1 + (uint64_t)sub;
            ss_step_plan dp = {2 + (uint64_t)sub, 0, 1, &q, 1, sub == k ? &tok : &prev};
            if (ss_replica_submit(r, &dp, &e) != SS_OK)
                fail_msg("%s tp%d pp%d decode: %s", model, tp, pp, e.msg);
        }
        if (ss_replica_collect(r, &out, &e) != SS_OK)
            fail_msg("%s tp%d pp%d decode: %s", model, tp, pp, e.msg);
        tok = out.token[0];
        res->logprobs[k] = out.logprob[0];
        ss_step_output_clear(&out);
    }
    assert_int_equal(ss_replica_pending(r), 0);
    ss_replica_destroy(r);
    return 0;
}

static int run_model(const char *model, int tp, int pp, int ahead, run_result *res)
{
    return run_model_t(model, tp, pp, ahead, 0.0f, res);
}

/* Sampled steps (temperature 0.8, top-p 0.95): with tp 2 every rank samples the gathered logits with the
 * same counter-based draws and feeds its own tokens to the next step submitted ahead; the tokens equal
 * one process's, and those of tp 2 with each step collected first. */
static void test_sampled_tp_ahead(void **state)
{
    (void)state;
    run_result one, sync2, ahead2;
    run_model_t("llama3-gqa", 1, 1, 0, 0.8f, &one);
    run_model_t("llama3-gqa", 2, 1, 0, 0.8f, &sync2);
    run_model_t("llama3-gqa", 2, 1, 1, 0.8f, &ahead2);
    /* each rank's own tokens, fed ahead, equal the leader's, handed out in the plans */
    assert_memory_equal(ahead2.tokens, sync2.tokens, sizeof one.tokens);
    const char *dev = getenv("SS_TEST_DEVICE");
    if (!dev || strcmp(dev, "cuda")) /* bf16 on GPUs: tp 2's logits may move a draw across a boundary */
        assert_memory_equal(sync2.tokens, one.tokens, sizeof one.tokens);
    int differs = 0; /* the draws matter: greedy would give other tokens somewhere */
    run_result greedy;
    run_model("llama3-gqa", 1, 1, 0, &greedy);
    for (int k = 0; k < SHARD_GEN; k++)
        differs |= greedy.tokens[k] != one.tokens[k];
    assert_true(differs);
    free(one.logits), free(sync2.logits), free(ahead2.logits), free(greedy.logits);
}

static void test_sharded_equals_single(void **state)
{
    (void)state;
    static const int cfgs[][2] = {{2, 1}, {4, 1}, {1, 2}, {1, 3}, {1, 4}, {2, 2}, {3, 1}};
    int ran = 0;
    for (size_t m = 0; m < sizeof models / sizeof models[0]; m++) {
        char dir[1024];
        snprintf(dir, sizeof dir, "%s/models/%s", SS_FIXTURES, models[m]);
        ss_model_config cfg;
        ss_err e;
        assert_int_equal(ss_config_load_dir(dir, &cfg, &e), SS_OK);
        run_result base, ahead;
        run_model(models[m], 1, 1, 0, &base);
        run_model(models[m], 1, 1, 1, &ahead); /* tokens fed on the device from step to step */
        assert_memory_equal(ahead.tokens, base.tokens, sizeof base.tokens);
        for (int k = 0; k < SHARD_GEN; k++)
            assert_true(ahead.logprobs[k] == base.logprobs[k]);
        free(ahead.logits);
        for (size_t c = 0; c < sizeof cfgs / sizeof cfgs[0]; c++) {
            int tp = cfgs[c][0], pp = cfgs[c][1];
            if (ss_shard_check(&cfg, tp, pp, &e) != SS_OK)
                continue; /* the shapes don't allow it: refused with a reason, checked elsewhere */
            if (shard_quant == SS_LINEAR_FP8 &&
                ((cfg.intermediate_size / tp) % 16 != 0 || (cfg.n_heads / tp * cfg.head_dim) % 16 != 0))
                continue; /* fp8 weights need 16-wide slices (refused with a reason: test_linear_fp8) */
            run_result got;
            run_model(models[m], tp, pp, 1, &got);
            double num = 0, den = 0;
            for (size_t i = 0; i < (size_t)N_PROMPT * base.V; i++) {
                double d = (double)got.logits[i] - base.logits[i];
                num += d * d;
                den += (double)base.logits[i] * base.logits[i];
            }
            double rel = sqrt(num / den);
            printf("%-18s tp%d pp%d: logits rel err %.2e\n", models[m], tp, pp, rel);
            const int quant_tp = shard_quant == SS_LINEAR_FP8 && tp > 1;
            const double tol = quant_tp ? SHARD_QUANT_TP_TOL : SHARD_TOL;
            if (rel > tol)
                fail_msg("%s tp%d pp%d: relative error %.3g > %g", models[m], tp, pp, rel, tol);
            for (int k = 0; k < SHARD_GEN && !quant_tp; k++) {
                if (got.tokens[k] != base.tokens[k])
                    fail_msg("%s tp%d pp%d: greedy token %d is %d, single process %d", models[m], tp, pp, k,
                             got.tokens[k], base.tokens[k]);
                if (fabsf(got.logprobs[k] - base.logprobs[k]) > 1e-4f)
                    fail_msg("%s tp%d pp%d: log-probability of token %d is %g, single process %g", models[m], tp, pp,
                             k, got.logprobs[k], base.logprobs[k]);
            }
            free(got.logits);
            ran++;
        }
        free(base.logits);
    }
    assert_true(ran >= (shard_quant == SS_LINEAR_FP8 ? 12 : 20));
}

/* A plan whose all-logits rows exceed the buffers is refused before any worker sees it: the replica stays
 * usable (at tp 2 the workers would otherwise fail it and break the replica). */
static void test_all_logits_refused(void **state)
{
    (void)state;
    for (int tp = 1; tp <= 2; tp++) {
        ss_replica *r = open_replica("llama3-gqa", tp, 1, 512, 32, 512, 4);
        static int32_t blocks[32], toks[300];
        for (int i = 0; i < 32; i++)
            blocks[i] = i;
        for (int i = 0; i < 300; i++)
            toks[i] = 3 + i % 50;
        ss_plan_seq q = sampling_seq(1, blocks, 32, 300);
        ss_step_plan big = {1, SS_PLAN_ALL_LOGITS, 1, &q, 300, toks};
        ss_err e;
        assert_int_equal(ss_replica_submit(r, &big, &e), SS_ERR_INVALID_ARG);
        assert_non_null(strstr(e.msg, "all logits of 300 tokens"));
        q.n_tokens = 4;
        ss_step_plan small = {2, 0, 1, &q, 4, toks};
        ss_step_output out;
        assert_int_equal(ss_replica_step(r, &small, &out, &e), SS_OK);
        assert_int_equal(out.n, 1);
        ss_step_output_clear(&out);
        ss_replica_destroy(r);
    }
}

/* submit/collect misuse is refused with the reason, and the replica stays usable: collecting with
 * nothing pending, a third pending step, SS_TOKEN_PREV with no previous step, after a step where the
 * sequence did not sample, or for another sequence. One process and tp 2 (resolved on the leader). */
static void test_submit_errors(void **state)
{
    (void)state;
    for (int tp = 1; tp <= 2; tp++) {
        ss_replica *r = open_replica("llama3-gqa", tp, 1, 64, 8, 64, 4);
        int32_t blocks[4] = {0, 1, 2, 3}, prev = SS_TOKEN_PREV, toks[4] = {5, 6, 7, 8};
        ss_plan_seq q;
        memset(&q, 0, sizeof q);
        q.seq_id = 1;
        q.blocks = blocks;
        q.n_blocks = 4;
        q.sp = ss_sampling_default();
        ss_step_output out;
        ss_err e;
        assert_int_equal(ss_replica_collect(r, &out, &e), SS_ERR_INVALID_ARG);
        assert_non_null(strstr(e.msg, "no step is pending"));
        /* PREV before any step */
        q.n_tokens = 1;
        q.sample = 1;
        ss_step_plan p1 = {1, 0, 1, &q, 1, &prev};
        assert_int_equal(ss_replica_submit(r, &p1, &e), SS_ERR_INVALID_ARG);
        assert_non_null(strstr(e.msg, "did not sample"));
        /* a prefill chunk that does not sample, then PREV */
        q.n_tokens = 4;
        q.sample = 0;
        ss_step_plan p2 = {2, 0, 1, &q, 4, toks};
        assert_int_equal(ss_replica_submit(r, &p2, &e), SS_OK);
        q.pos_start = 4;
        q.n_tokens = 1;
        q.sample = 1;
        ss_step_plan p3 = {3, 0, 1, &q, 1, &prev};
        assert_int_equal(ss_replica_submit(r, &p3, &e), SS_ERR_INVALID_ARG);
        assert_non_null(strstr(e.msg, "sequence 1 asks for its token of the previous step"));
        assert_int_equal(ss_replica_pending(r), 1);
        assert_int_equal(ss_replica_collect(r, &out, &e), SS_OK);
        assert_int_equal(out.n, 0);
        ss_step_output_clear(&out);
        /* a sampling step, then two pending; a third is refused; PREV for another sequence is refused */
        ss_step_plan p4 = {4, 0, 1, &q, 1, &toks[3]};
        assert_int_equal(ss_replica_submit(r, &p4, &e), SS_OK);
        q.pos_start = 5;
        q.seq_id = 2;
        ss_step_plan p5 = {5, 0, 1, &q, 1, &prev};
        assert_int_equal(ss_replica_submit(r, &p5, &e), SS_ERR_INVALID_ARG);
        assert_non_null(strstr(e.msg, "sequence 2"));
        q.seq_id = 1;
        assert_int_equal(ss_replica_submit(r, &p5, &e), SS_OK);
        q.pos_start = 6;
        ss_step_plan p6 = {6, 0, 1, &q, 1, &prev};
        assert_int_equal(ss_replica_submit(r, &p6, &e), SS_ERR_INVALID_ARG);
        assert_non_null(strstr(e.msg, "pending already"));
        int32_t got[2];
        for (int k = 0; k < 2; k++) {
            assert_int_equal(ss_replica_collect(r, &out, &e), SS_OK);
            assert_int_equal(out.n, 1);
            got[k] = out.token[0];
            ss_step_output_clear(&out);
        }
        /* the same two steps without PREV give the same tokens */
        q.pos_start = 4;
        ss_step_output o2;
        assert_int_equal(ss_replica_step(r, &p4, &o2, &e), SS_OK);
        assert_int_equal(o2.token[0], got[0]);
        q.pos_start = 5;
        ss_step_plan p7 = {7, 0, 1, &q, 1, &got[0]};
        ss_step_output_clear(&o2);
        assert_int_equal(ss_replica_step(r, &p7, &o2, &e), SS_OK);
        assert_int_equal(o2.token[0], got[1]);
        ss_step_output_clear(&o2);
        ss_replica_destroy(r);
    }
}

/* A decode step of 200 sequences with 256 tokens per step pads to 256, past max_seqs: its compact
 * metadata layout must fit the buffers (it wrote past them once; ASan catches it). */
static void test_meta_padded_past_max_seqs(void **state)
{
    (void)state;
    ss_replica *r = open_replica("llama3-gqa", 1, 1, 32, 256, 256, 200);
    ss_err e;
    enum { N = 200 };
    static ss_plan_seq q[N];
    static int32_t blocks[N], toks[N];
    for (int i = 0; i < N; i++) {
        blocks[i] = i;
        toks[i] = 5 + i;
        q[i] = sampling_seq((uint64_t)i + 1, &blocks[i], 1, 1);
    }
    ss_step_plan plan = {1, 0, N, q, N, toks};
    ss_step_output out;
    assert_int_equal(ss_replica_step(r, &plan, &out, &e), SS_OK);
    assert_int_equal(out.n, N);
    ss_step_output_clear(&out);
    ss_replica_destroy(r);
}

/* PREV after a host-sampled step (logprob lists) and a host-sampled step fed from the device: the same
 * tokens as explicit ids. */
static void run_chain(ss_replica *r, int ahead, const int *lp, int32_t *got)
{
    int32_t blocks[4] = {0, 1, 2, 3}, toks[4] = {5, 6, 7, 8}, prev = SS_TOKEN_PREV;
    ss_plan_seq q = sampling_seq(1, blocks, 1, 4);
    q.sp.n_logprobs = lp[0];
    ss_err e;
    ss_step_output out;
    ss_step_plan p0 = {1, 0, 1, &q, 4, toks};
    assert_int_equal(ss_replica_submit(r, &p0, &e), SS_OK);
    int pending = 1;
    int32_t last = -1;
    for (int k = 1; k < 5; k++) {
        if (!ahead) {
            assert_int_equal(ss_replica_collect(r, &out, &e), SS_OK);
            last = out.token[0];
            got[k - 1] = last;
            ss_step_output_clear(&out);
            pending--;
        }
        q.pos_start = 3 + k;
        q.n_tokens = 1;
        q.sp.n_logprobs = lp[k];
        ss_step_plan pk = {1 + (uint64_t)k, 0, 1, &q, 1, ahead ? &prev : &last};
        if (ss_replica_submit(r, &pk, &e) != SS_OK)
            fail_msg("step %d: %s", k, e.msg);
        pending++;
        if (ahead) {
            assert_int_equal(ss_replica_collect(r, &out, &e), SS_OK);
            got[k - 1] = out.token[0];
            ss_step_output_clear(&out);
            pending--;
        }
    }
    assert_int_equal(pending, 1);
    assert_int_equal(ss_replica_collect(r, &out, &e), SS_OK);
    got[4] = out.token[0];
    ss_step_output_clear(&out);
}

/* One process, then tp 2 (greedy steps leave their tokens on every rank, host-sampled ones are resolved
 * on the leader before the workers see the plan) and tp 2 x pp 2 (resolved on the leader): all equal. */
static void test_prev_host_paths(void **state)
{
    (void)state;
    static const int cfgs[][2] = {{1, 1}, {2, 1}, {2, 2}};
    int lp[5] = {2, 0, 3, 3, 0};
    int32_t ref[5];
    for (size_t c = 0; c < sizeof cfgs / sizeof cfgs[0]; c++) {
        ss_replica *r = open_replica("llama3-gqa", cfgs[c][0], cfgs[c][1], 32, 8, 64, 4);
        int32_t a[5], b[5];
        run_chain(r, 0, lp, a);
        run_chain(r, 1, lp, b);
        assert_memory_equal(a, b, sizeof a);
        if (c == 0)
            memcpy(ref, a, sizeof ref);
        else
            assert_memory_equal(a, ref, sizeof ref);
        ss_replica_destroy(r);
    }
}

/* One prefill step of six sequences with logprob lists, a bias, penalties, bans, a JSON mode mask, greedy and
 * sampled, at tp: on the host sampling path with SS_HELPER_THREADS threads when flags asks for the logits back
 * (SS_PLAN_LAST_LOGITS), else on the device path (the backend's edit_logits, mask_logits, sample and top_logprobs).
 * *out (caller clears). */
static void sampling_step(const char *threads, uint32_t flags, int tp, ss_step_output *out)
{
    enum { S = 6, T = 4 };
    assert_int_equal(setenv("SS_HELPER_THREADS", threads, 1), 0);
    /* Llama 3's vocabulary: 128,256 logits, rows of eight chunks, the last one short */
    ss_replica *r = open_replica("e2e-llama3-tok", tp, 1, 32, 8, 64, S);
    const int32_t V = ss_replica_config(r)->vocab_size, W = (V + 31) / 32;
    static int32_t blocks[S], toks[S * T], pen[3] = {5, 9, 9}, ban[2] = {1, 2}, bias_ids[2] = {3, 4};
    static float bias_vals[2] = {2.5f, -1.0f};
    uint32_t *allow = calloc((size_t)W, sizeof *allow);
    assert_non_null(allow);
    for (int32_t t = 0; t < V; t += 3) /* every third token */
        allow[t / 32] |= 1u << (t % 32);
    ss_plan_seq q[S];
    for (int i = 0; i < S; i++) {
        blocks[i] = i;
        for (int j = 0; j < T; j++)
            toks[i * T + j] = 5 + 7 * i + j;
        q[i] = sampling_seq((uint64_t)i + 1, &blocks[i], 1, T);
        q[i].sp.n_logprobs = 1 + i % 4;
        q[i].sp.seed = 11 + (uint64_t)i;
        q[i].sp.temperature = i % 2 ? 0.9f : 0.0f;
        q[i].sp.top_p = i == 3 ? 0.8f : 1.0f;
    }
    q[1].n_bias = 2, q[1].bias_ids = bias_ids, q[1].bias_vals = bias_vals;
    q[2].n_penalty_tokens = 3, q[2].penalty_tokens = pen, q[2].sp.repetition_penalty = 1.3f;
    q[2].sp.frequency_penalty = 0.5f;
    q[3].n_banned = 2, q[3].banned = ban;
    q[3].n_penalty_tokens = 3, q[3].penalty_tokens = pen, q[3].sp.presence_penalty = -0.75f;
    q[3].n_bias = 1, q[3].bias_ids = pen; /* token 5: biased, then penalised */
    q[3].bias_vals = bias_vals;
    q[4].n_allow = W, q[4].allow = allow;
    q[5].n_allow = W, q[5].allow = allow, q[5].sp.n_logprobs = 0, q[5].n_bias = 1, q[5].bias_ids = bias_ids,
    q[5].bias_vals = bias_vals;
    ss_step_plan plan = {1, flags, S, q, S * T, toks};
    ss_err e;
    if (ss_replica_step(r, &plan, out, &e) != SS_OK)
        fail_msg("sampling step (flags %u, tp %d) with %s threads: %s", flags, tp, threads, e.msg);
    assert_int_equal(out->n, S);
    assert_int_equal(out->token[4] % 3, 0); /* the mask holds */
    assert_int_equal(out->token[5] % 3, 0);
    ss_replica_destroy(r);
    free(allow);
    assert_int_equal(unsetenv("SS_HELPER_THREADS"), 0);
}

/* The host sampling path shares its rows among threads: the same tokens, log-probabilities and top lists, to
 * the bit, with one thread and with four. */
static void test_host_path_threads(void **state)
{
    (void)state;
    ss_step_output a, b;
    sampling_step("1", SS_PLAN_LAST_LOGITS, 1, &a); /* the raw logits come back too */
    sampling_step("4", SS_PLAN_LAST_LOGITS, 1, &b);
    assert_int_equal(a.n_top, 4);
    assert_int_equal(b.n_top, a.n_top);
    assert_memory_equal(a.token, b.token, (size_t)a.n * sizeof *a.token);
    assert_memory_equal(a.logprob, b.logprob, (size_t)a.n * sizeof *a.logprob);
    assert_memory_equal(a.top_ids, b.top_ids, (size_t)a.n * a.n_top * sizeof *a.top_ids);
    assert_memory_equal(a.top_logprobs, b.top_logprobs, (size_t)a.n * a.n_top * sizeof *a.top_logprobs);
    /* against log_softmax in double of the raw logits (row 0: greedy, one logprob), the biased ones (row 1:
     * sampled, +2.5 on token 3 and -1 on 4, two), the penalised ones (row 2: greedy, three) and the masked ones
     * (row 4: greedy, every third token, one) */
    assert_int_equal(b.logits_rows, b.n);
    const int32_t V = b.vocab;
    double *x = malloc((size_t)V * sizeof *x);
    assert_non_null(x);
    static const int checked[4] = {0, 1, 2, 4};
    for (int c = 0; c < 4; c++) {
        const int k = checked[c];
        const float *raw = b.logits + (size_t)k * V;
        double mx = -INFINITY, z = 0;
        int32_t arg = -1;
        for (int32_t t = 0; t < V; t++) {
            x[t] = k == 4 && t % 3 ? -INFINITY : raw[t] + (k == 1 && t == 3 ? 2.5 : k == 1 && t == 4 ? -1.0 : 0.0);
            if (k == 2 && (t == 5 || t == 9)) /* repetition 1.3, frequency 0.5 times the count (5 once, 9 twice) */
                x[t] = (x[t] > 0 ? x[t] / 1.3 : x[t] * 1.3) - 0.5 * (t == 5 ? 1 : 2);
            if (x[t] > mx)
                mx = x[t], arg = t;
        }
        for (int32_t t = 0; t < V; t++)
            z += exp(x[t] - mx);
        const double lse = mx + log(z);
        if (k != 1)
            assert_int_equal(b.token[k], arg);
        assert_true(fabs(b.logprob[k] - (x[b.token[k]] - lse)) < 1e-5);
        for (int j = 0; j < a.n_top; j++) {
            const int32_t id = b.top_ids[(size_t)k * b.n_top + j];
            if (j >= 1 + k % 4) {
                assert_int_equal(id, -1);
                continue;
            }
            assert_true(id >= 0 && id < V);
            assert_true(fabs(b.top_logprobs[(size_t)k * b.n_top + j] - (x[id] - lse)) < 1e-5);
            if (j > 0) /* in order */
                assert_true(x[id] <= x[b.top_ids[(size_t)k * b.n_top + j - 1]]);
        }
        if (k != 1) /* the greedy token heads its own list, with the same number */
            assert_true(b.top_ids[(size_t)k * b.n_top] == b.token[k] &&
                        b.top_logprobs[(size_t)k * b.n_top] == b.logprob[k]);
    }
    free(x);
    ss_step_output_clear(&a);
    ss_step_output_clear(&b);
}

/* The device path (the cpu backend's ops, which share the host path's definitions: ss_logit_edit_host, the
 * chunked lse) gives the host path's tokens, log-probabilities and top lists to the bit, at tp 1 and at tp 2 (every
 * rank edits its gathered rows; only the output rank lists). */
static void test_device_path_equals_host(void **state)
{
    (void)state;
    for (int tp = 1; tp <= 2; tp++) {
        ss_step_output d, h;
        sampling_step("2", SS_PLAN_LAST_LOGITS, tp, &h);
        sampling_step("2", 0, tp, &d);
        assert_int_equal(d.n, h.n);
        assert_int_equal(d.n_top, h.n_top);
        assert_int_equal(d.logits_rows, 0);
        assert_memory_equal(d.token, h.token, (size_t)h.n * sizeof *h.token);
        assert_memory_equal(d.logprob, h.logprob, (size_t)h.n * sizeof *h.logprob);
        assert_memory_equal(d.top_ids, h.top_ids, (size_t)h.n * h.n_top * sizeof *h.top_ids);
        assert_memory_equal(d.top_logprobs, h.top_logprobs, (size_t)h.n * h.n_top * sizeof *h.top_logprobs);
        assert_true(h.token[3] != 1 && h.token[3] != 2); /* row 3 (sampled) never draws its banned tokens */
        ss_step_output_clear(&d);
        ss_step_output_clear(&h);
    }
}

/* One prefill step: a sequence that does not sample, then three that do (masked greedy, unmasked greedy, masked
 * sampled), each asking for lp logprobs, on the device sampling path (JSON mode's masks on the device) or, with
 * host, on the host path (the logits asked back). The tokens into tok[3]. */
static void masked_step(ss_replica *r, int lp, int host, int32_t *tok)
{
    enum { S = 4, T = 4 };
    const int32_t V = ss_replica_config(r)->vocab_size, W = (V + 31) / 32;
    uint32_t *allow = calloc((size_t)W, sizeof *allow);
    assert_non_null(allow);
    for (int32_t t = 0; t < V; t += 3)
        allow[t / 32] |= 1u << (t % 32);
    int32_t blocks[S] = {3, 0, 2, 1}, toks[S * T];
    ss_plan_seq q[S];
    for (int i = 0; i < S; i++) {
        for (int j = 0; j < T; j++)
            toks[i * T + j] = 9 + 5 * i + j;
        q[i] = sampling_seq((uint64_t)i + 1, &blocks[i], 1, T);
        q[i].sp.n_logprobs = lp;
    }
    q[0].sample = 0;
    q[1].n_allow = W, q[1].allow = allow;
    q[3].n_allow = W, q[3].allow = allow, q[3].sp.temperature = 0.9f, q[3].sp.seed = 5;
    ss_step_plan plan = {1, host ? SS_PLAN_LAST_LOGITS : 0, S, q, S * T, toks};
    ss_step_output out;
    ss_err e;
    if (ss_replica_step(r, &plan, &out, &e) != SS_OK)
        fail_msg("masked step (logprobs %d, host %d): %s", lp, host, e.msg);
    assert_int_equal(out.n, 3);
    memcpy(tok, out.token, 3 * sizeof *tok);
    assert_int_equal(tok[0] % 3, 0);
    assert_int_equal(tok[2] % 3, 0);
    ss_step_output_clear(&out);
    free(allow);
}

/* JSON mode's masks on the device path (the mask_logits op, rows picked among the sampling sequences; at tp 2
 * on every rank's gathered logits) choose the tokens the host path chooses, at tp 1 and tp 2. */
static void test_masks_device_path(void **state)
{
    (void)state;
    int32_t want[3] = {-1, -1, -1};
    for (int tp = 1; tp <= 2; tp++) {
        ss_replica *r = open_replica("llama3-gqa", tp, 1, 32, 8, 64, 4);
        int32_t dev[3], dev_lp[3], host[3];
        masked_step(r, 0, 0, dev);
        masked_step(r, 1, 0, dev_lp);
        masked_step(r, 1, 1, host);
        assert_memory_equal(dev, host, sizeof dev);
        assert_memory_equal(dev_lp, host, sizeof dev);
        if (tp == 1)
            memcpy(want, dev, sizeof want);
        assert_memory_equal(dev, want, sizeof dev);
        ss_replica_destroy(r);
    }
}

/* One prefill of 4 tokens that samples, greedy, with the given logit_bias: the token chosen. */
static int32_t biased_step(ss_replica *r, uint64_t id, int32_t n_bias, int32_t *ids, float *vals)
{
    int32_t blocks[1] = {0}, toks[4] = {5, 6, 7, 8};
    ss_plan_seq q = sampling_seq(id, blocks, 1, 4);
    q.n_bias = n_bias, q.bias_ids = ids, q.bias_vals = vals;
    ss_step_plan p = {id, 0, 1, &q, 4, toks};
    ss_err e;
    ss_step_output out;
    if (ss_replica_step(r, &p, &out, &e) != SS_OK)
        fail_msg("step %llu: %s", (unsigned long long)id, e.msg);
    int32_t t = out.token[0];
    ss_step_output_clear(&out);
    return t;
}

/* logit_bias crosses the wire to the rank that samples: +100 on a token makes greedy choose it; -100 on the
 * greedy token gives the same runner-up in one process, at tp 2 and at tp 2 x pp 2. */
static void test_logit_bias_sharded(void **state)
{
    (void)state;
    static const int cfgs[][2] = {{1, 1}, {2, 1}, {2, 2}};
    int32_t ref[2] = {-1, -1};
    for (size_t c = 0; c < sizeof cfgs / sizeof cfgs[0]; c++) {
        ss_replica *r = open_replica("llama3-gqa", cfgs[c][0], cfgs[c][1], 32, 8, 64, 4);
        int32_t plain = biased_step(r, 1, 0, NULL, NULL);
        int32_t down_id[1] = {plain}, up_id[2] = {123, 77};
        float down[1] = {-100.0f}, up[2] = {100.0f, 0.5f};
        int32_t second = biased_step(r, 2, 1, down_id, down);
        assert_int_not_equal(second, plain);
        assert_int_equal(biased_step(r, 3, 2, up_id, up), 123);
        if (c == 0)
            ref[0] = plain, ref[1] = second;
        assert_int_equal(plain, ref[0]);
        assert_int_equal(second, ref[1]);
        ss_replica_destroy(r);
    }
}

/* Prefills three sequences of ~600 tokens (scattered blocks), then decodes them together: with a context
 * bound of 1,024 the decode step's block-table rows are 64 wide instead of max_blocks = 128, copied row by
 * row. The tokens and log-probabilities equal those of a replica without graphs (full-width rows). */
static void decode_after_long_prompts(int no_graphs, int32_t *tok, float *lp)
{
    enum { S = 3, MB = 128 };
    ss_replica *r = open_replica_ex("llama3-gqa", 1, 1, MB * 16, S * MB, 1024, 4, no_graphs);
    int32_t V = ss_replica_config(r)->vocab_size;
    static int32_t blocks[S][MB], prompt[S][700];
    ss_plan_seq q[S];
    ss_err e;
    ss_step_output out;
    for (int s = 0; s < S; s++) {
        for (int b = 0; b < MB; b++)
            blocks[s][b] = (S * MB - 1) - (b * S + s); /* interleaved, backwards */
        int n = 600 + 37 * s;
        for (int i = 0; i < n; i++)
            prompt[s][i] = (i * 31 + s * 7 + 3) % V;
        q[s] = sampling_seq((uint64_t)s + 1, blocks[s], MB, n);
        ss_step_plan pre = {1 + (uint64_t)s, 0, 1, &q[s], n, prompt[s]};
        assert_int_equal(ss_replica_step(r, &pre, &out, &e), SS_OK);
        tok[s] = out.token[0];
        ss_step_output_clear(&out);
    }
    int32_t ids[S];
    for (int s = 0; s < S; s++) {
        q[s].pos_start = q[s].n_tokens;
        q[s].n_tokens = 1;
        ids[s] = tok[s];
    }
    ss_step_plan dec = {10, 0, S, q, S, ids};
    assert_int_equal(ss_replica_step(r, &dec, &out, &e), SS_OK);
    assert_int_equal(out.n, S);
    for (int s = 0; s < S; s++) {
        tok[S + s] = out.token[s];
        lp[s] = out.logprob[s];
    }
    ss_step_output_clear(&out);
    ss_replica_destroy(r);
}

static void test_narrow_block_table_rows(void **state)
{
    (void)state;
    int32_t a[6], b[6];
    float la[3], lb[3];
    decode_after_long_prompts(0, a, la);
    decode_after_long_prompts(1, b, lb);
    assert_memory_equal(a, b, sizeof a);
    for (int s = 0; s < 3; s++)
        assert_true(la[s] == lb[s]);
}

/* A local rank that exits before it joins ends the rendezvous with its rank and status, instead of the leader
 * waiting for the 30-minute join deadline (the binary that cannot run: 127; one that fails: its status). */
static void test_local_rank_exits_early(void **state)
{
    (void)state;
    static const char *const exes[] = {"/nonexistent/shardserve", "/bin/false"};
    static const char *const want[] = {"exited with status 127 before the replica was up: could not run /nonexistent/shardserve",
                                       "exited with status 1 before the replica was up (its log says why)"};
    for (int i = 0; i < 2; i++) {
        char dir[1024];
        snprintf(dir, sizeof dir, "%s/models/llama3-gqa", SS_FIXTURES);
        ss_replica_params p = ss_replica_default_params();
        p.model_dir = dir;
        p.tp = 2;
        p.backend.device = SS_DEVICE_CPU;
        p.backend.n_threads = 1;
        p.max_seq_len = 64;
        p.num_kv_blocks = 8;
        p.worker_exe = exes[i];
        ss_replica *r = NULL;
        ss_err e = {{0}};
        assert_int_equal(ss_replica_create(&p, &r, &e), SS_ERR_COMM);
        assert_null(r);
        if (!strstr(e.msg, "local rank 1 (pid ") || !strstr(e.msg, want[i]))
            fail_msg("%s: unexpected error: %s", exes[i], e.msg);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {cmocka_unit_test(test_submit_errors), cmocka_unit_test(test_prev_host_paths),
                                       cmocka_unit_test(test_host_path_threads),
                                       cmocka_unit_test(test_device_path_equals_host),
                                       cmocka_unit_test(test_masks_device_path),
                                       cmocka_unit_test(test_sampled_tp_ahead),
                                       cmocka_unit_test(test_logit_bias_sharded),
                                       cmocka_unit_test(test_all_logits_refused),
                                       cmocka_unit_test(test_meta_padded_past_max_seqs),
                                       cmocka_unit_test(test_narrow_block_table_rows),
                                       cmocka_unit_test(test_local_rank_exits_early),
                                       cmocka_unit_test(test_sharded_equals_single)};
    const char *kv = getenv("SS_TEST_KV");
    if (kv && !strcmp(kv, "fp8")) { /* the sharded-equals-single comparison with fp8 caches */
        shard_kv = SS_KV_FP8;
        const struct CMUnitTest fp8[] = {cmocka_unit_test(test_sharded_equals_single)};
        return cmocka_run_group_tests(fp8, NULL, NULL);
    }
    const char *quant = getenv("SS_TEST_QUANT");
    if (quant && !strcmp(quant, "fp8")) { /* the same with fp8 projection weights */
        shard_quant = SS_LINEAR_FP8;
        const struct CMUnitTest fp8[] = {cmocka_unit_test(test_sharded_equals_single)};
        return cmocka_run_group_tests(fp8, NULL, NULL);
    }
    const char *dev = getenv("SS_TEST_DEVICE");
    if (dev && !strcmp(dev, "cuda")) { /* on GPUs (2 of them) only the test that holds at bf16 */
        const struct CMUnitTest gpu[] = {cmocka_unit_test(test_sampled_tp_ahead)};
        return cmocka_run_group_tests(gpu, NULL, NULL);
    }
    return cmocka_run_group_tests(tests, NULL, NULL);
}

/* test_golden.c — the forward pass against Hugging Face float64 goldens (../shared/fixtures/golden):
 * logits at every prompt position, greedy continuations, and batching invariance, on the cpu backend. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/alloc.h"
#include "core/fileio.h"
#include "model/config.h"
#include "model/shard_plan.h"
#include "runner/replica.h"

/* cpu computes in float32 (tolerance 1e-4); SS_TEST_DEVICE=cuda runs the same goldens in bf16 (2e-2),
 * comparing greedy tokens only while the reference margin exceeds the bf16 error. SS_TEST_KV=fp8 keeps the
 * KV cache in fp8 (e4m3, a scale per row): tolerance GOLDEN_FP8_TOL on either device. SS_TEST_QUANT=fp8 loads the
 * projection weights as fp8 (e4m3, a scale per row): tolerance GOLDEN_QUANT_TOL. */
static double golden_tol = 1e-4, golden_margin = 1e-3;
static ss_device_kind golden_device = SS_DEVICE_CPU;
static ss_kv_type golden_kv = SS_KV_ACT;
static ss_linear_type golden_quant = SS_LINEAR_ACT;
#define GOLDEN_FP8_TOL 8e-2 /* e4m3 keeps 3 mantissa bits (~3.6% RMS error a cached value); the fixtures reach 6.0% on cpu */
/* fp8 weights (e4m3, a scale per row): the cpu (W8A16) reaches 0.15 on the fixtures' random tiny models, 0.13 at
 * tp 2 (o's and down's rows are split, each half with its own scale). cuda's prefill GEMMs round the activations to
 * e4m3 too (a scale per token): 0.19 on an H200, 0.21 at tp 2 (2 x H200). A wrong scale or layout is ~1. */
#define GOLDEN_QUANT_TOL (golden_tp > 1 ? 3e-1 : 2.5e-1)
#define GOLDEN_TOL golden_tol
static int golden_checked_total;
static double golden_worst; /* the largest logits error of the model under test */
static int golden_tp = 1, golden_pp = 1; /* SS_TEST_TP / SS_TEST_PP: run the goldens sharded */

static const char *golden_models[] = {"llama3-gqa", "llama2-mha", "mistral-tied-mqa", "qwen2-bias", "qwen3-qknorm",
                                      "e2e-llama3-tok"};

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

static int32_t *golden_ids(const cJSON *arr, int *n)
{
    *n = cJSON_GetArraySize(arr);
    int32_t *ids = malloc((size_t)(*n ? *n : 1) * sizeof *ids);
    int i = 0;
    for (const cJSON *x = arr->child; x; x = x->next)
        ids[i++] = (int32_t)x->valuedouble;
    return ids;
}

/* max |out[i] - ref[i]| over a row */
static double max_abs_err(const float *out, const cJSON *ref, int32_t V)
{
    double m = 0;
    int i = 0;
    for (const cJSON *x = ref->child; x && i < V; x = x->next, i++)
        m = fabs(out[i] - x->valuedouble) > m ? fabs(out[i] - x->valuedouble) : m;
    return m;
}

static double rel_l2(const float *out, const cJSON *ref, int32_t V)
{
    double num = 0, den = 0;
    int i = 0;
    for (const cJSON *x = ref->child; x && i < V; x = x->next, i++) {
        double d = out[i] - x->valuedouble;
        num += d * d;
        den += x->valuedouble * x->valuedouble;
    }
    assert_int_equal(i, V);
    return sqrt(num / den);
}

/* A tiny sequence bookkeeper: contiguous blocks per sequence slot. */
typedef struct {
    int32_t blocks[256];
    int32_t n_blocks;
} seq_blocks;

static void seq_blocks_init(seq_blocks *s, int32_t first, int32_t count)
{
    s->n_blocks = count;
    for (int32_t i = 0; i < count; i++)
        s->blocks[i] = first + count - 1 - i; /* reversed: block tables need not be contiguous */
}

static ss_replica *golden_replica_graphs(const char *model, int no_graphs)
{
    char dir[1024];
    snprintf(dir, sizeof dir, "%s/models/%s", SS_FIXTURES, model);
    ss_replica_params p = ss_replica_default_params();
    p.model_dir = dir;
    p.backend.device = golden_device;
    p.backend.kv_type = golden_kv;
    p.backend.linear_type = golden_quant;
    p.tp = golden_tp;
    p.pp = golden_pp;
    p.worker_exe = SS_BINARY_DIR "/shardserve";
    p.max_seq_len = 256;
    p.num_kv_blocks = 16 * 16;
    p.no_graphs = no_graphs;
    ss_replica *r = NULL;
    ss_err e;
    if (ss_replica_create(&p, &r, &e) != SS_OK)
        fail_msg("%s: %s", model, e.msg);
    return r;
}

static ss_replica *golden_replica(const char *model)
{
    return golden_replica_graphs(model, 0);
}

/* Runs prefill + greedy decode for one case and checks logits and tokens. */
static void golden_case(ss_replica *r, const cJSON *c, int32_t slot, int n_gen)
{
    int n_prompt, n_greedy;
    int32_t *prompt = golden_ids(cJSON_GetObjectItem(c, "prompt_ids"), &n_prompt);
    int32_t *greedy = golden_ids(cJSON_GetObjectItem(c, "greedy_ids"), &n_greedy);
    const cJSON *margins = cJSON_GetObjectItem(c, "greedy_margins");
    const cJSON *all = cJSON_GetObjectItem(c, "all_logits");
    const cJSON *last = cJSON_GetObjectItem(c, "last_logits");
    int32_t V = ss_replica_config(r)->vocab_size;
    seq_blocks sb;
    seq_blocks_init(&sb, slot * 16, 16);
    ss_plan_seq q;
    memset(&q, 0, sizeof q);
    q.seq_id = (uint64_t)slot;
    q.n_tokens = n_prompt;
    q.blocks = sb.blocks;
    q.n_blocks = sb.n_blocks;
    q.sample = 1;
    q.sp = ss_sampling_default();
    ss_step_plan plan = {1, all ? SS_PLAN_ALL_LOGITS : SS_PLAN_LAST_LOGITS, 1, &q, n_prompt, prompt};
    ss_step_output out;
    ss_err e;
    if (ss_replica_step(r, &plan, &out, &e) != SS_OK)
        fail_msg("%s", e.msg);
    double worst = 0, linf = 0; /* linf: of the logits the first greedy token comes from */
    if (all) {
        assert_int_equal(out.logits_rows, n_prompt);
        int t = 0;
        for (const cJSON *row = all->child; row; row = row->next, t++) {
            double err = rel_l2(out.logits + (size_t)t * V, row, V);
            worst = err > worst ? err : worst;
            if (t == n_prompt - 1)
                linf = max_abs_err(out.logits + (size_t)t * V, row, V);
        }
        assert_int_equal(t, n_prompt);
    } else {
        worst = rel_l2(out.logits, last, V);
        linf = max_abs_err(out.logits, last, V);
    }
    golden_worst = worst > golden_worst ? worst : golden_worst;
    if (worst > GOLDEN_TOL)
        fail_msg("prompt of %d tokens: logits relative L2 error %.3g > %.2g", n_prompt, worst, GOLDEN_TOL);
    /* Greedy: compare tokens while the reference margin is clearly above our error. */
    int32_t tok = out.token[0];
    ss_step_output_clear(&out);
    /* Decoding as the scheduler does: step k+2 is submitted with SS_TOKEN_PREV (fed on the device) before
     * step k+1 is collected. */
    int checked = 0, pending = 0;
    int32_t prev = SS_TOKEN_PREV;
    /* fp8 weights: logits move by more than the fixed margin allows for; a token is compared only while the
     * reference margin exceeds twice the largest logit error of the prompt's last position */
    const double need = golden_quant == SS_LINEAR_FP8 && 2 * linf > golden_margin ? 2 * linf : golden_margin;
    for (int k = 0; k < n_gen && k < n_greedy; k++) {
        double margin = cJSON_GetArrayItem(margins, k)->valuedouble;
        if (margin < need)
            break;
        assert_int_equal(tok, greedy[k]);
        checked++;
        if (k + 1 == n_gen)
            break;
        for (int sub = pending ? k + 1 : k; sub <= k + 1 && sub + 1 < n_gen; sub++) {
            q.pos_start = n_prompt + sub;
            q.n_tokens = 1;
            ss_step_plan dp = {2 + (uint64_t)sub, 0, 1, &q, 1, sub == k ? &tok : &prev};
            if (ss_replica_submit(r, &dp, &e) != SS_OK)
                fail_msg("%s", e.msg);
            pending++;
        }
        if (ss_replica_collect(r, &out, &e) != SS_OK)
            fail_msg("%s", e.msg);
        pending--;
        tok = out.token[0];
        ss_step_output_clear(&out);
    }
    for (; pending > 0; pending--) {
        if (ss_replica_collect(r, &out, &e) != SS_OK)
            fail_msg("%s", e.msg);
        ss_step_output_clear(&out);
    }
    golden_checked_total += checked;
    free(prompt);
    free(greedy);
}

static void test_golden_all_models(void **state)
{
    (void)state;
    for (size_t m = 0; m < sizeof golden_models / sizeof golden_models[0]; m++) {
        char dir[1024];
        snprintf(dir, sizeof dir, "%s/models/%s", SS_FIXTURES, golden_models[m]);
        ss_model_config mc;
        ss_err ce;
        assert_int_equal(ss_config_load_dir(dir, &mc, &ce), SS_OK);
        if (ss_shard_check(&mc, golden_tp, golden_pp, &ce) != SS_OK) {
            printf("golden %s: tp %d x pp %d not possible: %s\n", golden_models[m], golden_tp, golden_pp, ce.msg);
            continue;
        }
        if (golden_quant == SS_LINEAR_FP8 &&
            ((mc.intermediate_size / golden_tp) % 16 || (mc.n_heads / golden_tp * mc.head_dim) % 16)) {
            printf("golden %s: fp8 weights at tp %d not possible (16-wide slices; refused with a reason, see "
                   "test_linear_fp8)\n", golden_models[m], golden_tp);
            continue;
        }
        cJSON *g = golden_load(golden_models[m]);
        ss_replica *r = golden_replica(golden_models[m]);
        int n_gen = cJSON_GetObjectItem(g, "n_gen")->valueint;
        int slot = 0;
        for (const cJSON *c = cJSON_GetObjectItem(g, "cases")->child; c; c = c->next)
            golden_case(r, c, slot++, n_gen);
        printf("golden %s on %s%s: %d cases ok (worst logits error %.3g)\n", golden_models[m],
               golden_device == SS_DEVICE_CUDA ? "cuda" : "cpu", golden_kv == SS_KV_FP8 ? ", fp8 KV cache" : golden_quant == SS_LINEAR_FP8 ? ", fp8 weights" : "", slot,
               golden_worst);
        golden_worst = 0;
        ss_replica_destroy(r);
        cJSON_Delete(g);
    }
    assert_true(golden_checked_total >= 20);
}

/* All prompts of a model in one step give the same last-token logits as each alone. */
static void test_golden_batched(void **state)
{
    (void)state;
    const char *models[] = {"llama3-gqa", "qwen3-qknorm", "llama2-mha"};
    for (size_t m = 0; m < 3; m++) {
        if (golden_tp * golden_pp > 1 && m > 0)
            break; /* sharded runs: the batched check on one model is enough */
        cJSON *g = golden_load(models[m]);
        ss_replica *r = golden_replica(models[m]);
        int32_t V = ss_replica_config(r)->vocab_size;
        ss_plan_seq qs[8];
        seq_blocks sb[8];
        int32_t toks[1024];
        int n_seqs = 0, n_tok = 0;
        const cJSON *cases = cJSON_GetObjectItem(g, "cases");
        for (const cJSON *c = cases->child; c && n_seqs < 8; c = c->next, n_seqs++) {
            int n;
            int32_t *ids = golden_ids(cJSON_GetObjectItem(c, "prompt_ids"), &n);
            memcpy(toks + n_tok, ids, (size_t)n * 4);
            free(ids);
            seq_blocks_init(&sb[n_seqs], n_seqs * 16, 16);
            memset(&qs[n_seqs], 0, sizeof qs[n_seqs]);
            qs[n_seqs].n_tokens = n;
            qs[n_seqs].blocks = sb[n_seqs].blocks;
            qs[n_seqs].n_blocks = 16;
            qs[n_seqs].sample = 1;
            qs[n_seqs].sp = ss_sampling_default();
            n_tok += n;
        }
        ss_step_plan plan = {1, SS_PLAN_LAST_LOGITS, n_seqs, qs, n_tok, toks};
        ss_step_output out;
        ss_err e;
        if (ss_replica_step(r, &plan, &out, &e) != SS_OK)
            fail_msg("%s", e.msg);
        assert_int_equal(out.n, n_seqs);
        int i = 0;
        for (const cJSON *c = cases->child; c && i < n_seqs; c = c->next, i++) {
            double err = rel_l2(out.logits + (size_t)i * V, cJSON_GetObjectItem(c, "last_logits"), V);
            if (err > GOLDEN_TOL)
                fail_msg("%s batched case %d: error %.3g", models[m], i, err);
        }
        ss_step_output_clear(&out);
        ss_replica_destroy(r);
        cJSON_Delete(g);
    }
}

/* Greedy decode of `n_seqs` sequences (prompt lengths 3 + 5s, 12 blocks of 16 each) for n_steps steps; tokens and
 * their log-probabilities of every step go to tok/lp [n_steps][n_seqs]. */
#define DECODE_MAX_SEQS 20
static void decode_batch(ss_replica *r, int n_seqs, int n_steps, const ss_sampling_params *sp, int32_t *tok,
                         float *lp)
{
    seq_blocks sb[DECODE_MAX_SEQS];
    ss_plan_seq q[DECODE_MAX_SEQS];
    int32_t ids[DECODE_MAX_SEQS * (3 + 5 * DECODE_MAX_SEQS)], n = 0;
    assert_true(n_seqs >= 1 && n_seqs <= DECODE_MAX_SEQS);
    memset(q, 0, sizeof q);
    for (int s = 0; s < n_seqs; s++) {
        seq_blocks_init(&sb[s], s * 12, 12);
        q[s].seq_id = (uint64_t)s;
        q[s].n_tokens = 3 + 5 * s;
        q[s].blocks = sb[s].blocks;
        q[s].n_blocks = sb[s].n_blocks;
        q[s].sample = 1;
        q[s].sp = *sp;
        for (int i = 0; i < q[s].n_tokens; i++)
            ids[n++] = (int32_t)((s * 31 + i * 7) % 200 + 1);
    }
    ss_step_plan plan = {1, 0, n_seqs, q, n, ids};
    ss_err e;
    for (int k = 0; k < n_steps; k++) {
        ss_step_output out;
        if (ss_replica_step(r, &plan, &out, &e) != SS_OK)
            fail_msg("%s", e.msg);
        assert_int_equal(out.n, n_seqs);
        for (int s = 0; s < n_seqs; s++) {
            tok[k * n_seqs + s] = ids[s] = out.token[s];
            lp[k * n_seqs + s] = out.logprob[s];
            q[s].pos_start += q[s].n_tokens;
            q[s].n_tokens = 1;
        }
        ss_step_output_clear(&out);
        plan.step_id++;
        plan.n_tokens = n_seqs;
    }
}

/* Decode steps replayed from graphs (padded to their buckets, ss_forward_graph_pad) give the tokens of the same
 * steps run op by op (batch 3 pads to 4, batch 12 to 16, batch 20 to 24), for `steps` steps. Twice: greedy (with
 * tp > 1, the shards' maxima are reduced) and top-k 1 at temperature 1 (the sampling path: with tp > 1, whole rows
 * are gathered) — both must pick the argmax. Batch 12 takes the decode GEMV's two-tile form (9-16 rows: bf16 and fp8
 * weights); batch 20 is past it: cuBLASLt GEMMs (fp8: over e4m3 activations whose scale a kernel of the graph
 * computes). */
static void check_graphs_equal_eager(int SEQS, int steps)
{
    enum { MAX_STEPS = 40 };
    assert_true(steps >= 1 && steps <= MAX_STEPS);
    int32_t tok[3][MAX_STEPS * DECODE_MAX_SEQS];
    float lp[3][MAX_STEPS * DECODE_MAX_SEQS];
    ss_sampling_params greedy = ss_sampling_default(), topk1 = greedy;
    topk1.temperature = 1.0f;
    topk1.top_k = 1;
    for (int ng = 0; ng < 3; ng++) {
        ss_replica *r = golden_replica_graphs("llama3-gqa", ng == 1);
        decode_batch(r, SEQS, steps, ng < 2 ? &greedy : &topk1, tok[ng], lp[ng]);
        ss_replica_destroy(r);
    }
    /* Both run the same kernels on the same rows, the attention's key splits sized by the same context bound
     * (forward.c); a row's result does not depend on the padding rows (test_rows_independent). Since session 57 all
     * three batches gave equal log-probabilities on one H200 (before, eager steps' splits followed the longest
     * context: 0.046 at batch 12 with fp8 weights, 0.076 at 20, and a near-tie token flip). The tolerance leaves
     * a little room for cuBLASLt at batch 20 (20 rows eager, 24 in the graph), whose algorithm could change with the
     * row count on another GPU or library version: if that fails while batches 3 and 12 pass, look there first. */
    const float lp_tol = 1e-3f;
    float worst = 0.0f;
    for (int i = 0; i < steps * SEQS; i++) {
        if (tok[0][i] != tok[1][i] || tok[2][i] != tok[1][i])
            fail_msg("step %d sequence %d: token %d with graphs, %d without, %d sampled top-k 1 with graphs", i / SEQS,
                     i % SEQS, tok[0][i], tok[1][i], tok[2][i]);
        worst = fmaxf(worst, fabsf(lp[0][i] - lp[1][i]));
        if (fabsf(lp[0][i] - lp[1][i]) > lp_tol)
            fail_msg("step %d sequence %d: log-probability %.6f with graphs, %.6f without", i / SEQS, i % SEQS,
                     lp[0][i], lp[1][i]);
    }
    printf("graphs = eager at batch %d: %d steps, tokens equal, log-probabilities within %.3g\n", SEQS, steps, worst);
}

static void test_golden_graphs_equal_eager(void **state)
{
    (void)state;
    check_graphs_equal_eager(3, 40);
}

/* The GEMV's two tiles of x rows inside the graphs (batch 12 runs as 16 rows, the padding rows zeros). A test of its
 * own so that a sanitizer run can leave it out: under compute-sanitizer racecheck the process dies here without a
 * message (session 25, one H200, when these were cuBLASLt GEMMs), while memcheck passes it. */
static void test_golden_graphs_equal_eager_lt(void **state)
{
    (void)state;
    check_graphs_equal_eager(12, 40);
}

/* A batch between powers of two: 20 runs as 24 rows (buckets of SS_GRAPH_BUCKET_DEFAULT, 8), not 32. Until session
 * 57 only 16 steps: eager steps sized the attention's splits by the longest context, and that drift grew to 0.076
 * in a log-probability at step 20 (one H200, session 50). */
static void test_golden_graphs_equal_eager_bucket(void **state)
{
    (void)state;
    check_graphs_equal_eager(20, 40);
}

int main(void)
{
    const char *dev = getenv("SS_TEST_DEVICE");
    if (dev && !strcmp(dev, "cuda")) {
        golden_device = SS_DEVICE_CUDA;
        golden_tol = 2e-2;
        golden_margin = 0.5;
    }
    const char *kv = getenv("SS_TEST_KV");
    if (kv && !strcmp(kv, "fp8")) {
        golden_kv = SS_KV_FP8;
        golden_tol = GOLDEN_FP8_TOL;
        golden_margin = 0.5;
    }
    if (getenv("SS_TEST_TP"))
        golden_tp = atoi(getenv("SS_TEST_TP"));
    if (getenv("SS_TEST_PP"))
        golden_pp = atoi(getenv("SS_TEST_PP"));
    const char *quant = getenv("SS_TEST_QUANT");
    if (quant && !strcmp(quant, "fp8")) {
        golden_quant = SS_LINEAR_FP8;
        golden_tol = GOLDEN_QUANT_TOL;
        golden_margin = 0.5;
    }
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_golden_all_models),
        cmocka_unit_test(test_golden_batched),
        cmocka_unit_test(test_golden_graphs_equal_eager),
        cmocka_unit_test(test_golden_graphs_equal_eager_lt),
        cmocka_unit_test(test_golden_graphs_equal_eager_bucket),
    };
    /* SS_TEST_SKIP=pattern leaves tests out (compute-sanitizer racecheck: test_golden_graphs_equal_eager_lt) */
    const char *skip = getenv("SS_TEST_SKIP");
    if (skip && *skip)
        cmocka_set_skip_filter(skip);
    return cmocka_run_group_tests(tests, NULL, NULL);
}

/* test_sampler.c — the runner's sampler on the cpu backend: logit edits (bias, penalties, bans) against values worked
 * out here, the device path against the host path to the bit, when the device path declines a step, list trimming. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "backend/backend.h"
#include "runner/runner.h"
#include "runner/sampler.h"

enum { V = 64, S = 3 };

static ss_backend *cpu_backend(void)
{
    ss_backend_params p = ss_backend_default_params();
    ss_backend *be = NULL;
    ss_err e;
    if (ss_backend_cpu_create(&p, &be, &e) != SS_OK)
        fail_msg("cpu backend: %s", e.msg);
    return be;
}

/* Row r of the logits: token t gets a small distinct value, and a few stand out. */
static void fill_logits(float *x)
{
    for (int r = 0; r < S; r++)
        for (int t = 0; t < V; t++)
            x[r * V + t] = (float)((t * 37 + r * 11) % V) / 16.0f - 2.0f;
    x[0 * V + 3] = 9.0f;  /* row 0: the raw argmax, which the penalty pulls below token 7 */
    x[0 * V + 7] = 7.0f;
    x[0 * V + 9] = -3.0f; /* a negative logit: the repetition penalty multiplies it */
    x[1 * V + 20] = 8.0f; /* row 1: the argmax, banned */
    x[1 * V + 21] = 7.5f;
    x[2 * V + 40] = 5.0f; /* row 2: lifted past by a bias */
}

static int32_t pen0[5] = {3, 3, 9, 7, 63}, ban1[2] = {20, 99}, bias_ids0[2] = {7, 3}, bias_ids2[1] = {41};
static float bias_vals0[2] = {1.5f, -0.25f}, bias_vals2[1] = {10.0f};

/* Three sampling sequences, greedy: 0 with a bias and penalties, 1 with a ban (one id out of range), 2 with a bias;
 * lists of 4, 0 and 2. */
static void make_plan(ss_plan_seq *q, ss_step_plan *plan, uint32_t flags)
{
    static int32_t blocks[1] = {0}, toks[S] = {1, 2, 3};
    for (int i = 0; i < S; i++) {
        memset(&q[i], 0, sizeof q[i]);
        q[i].seq_id = (uint64_t)i + 1;
        q[i].n_tokens = 1;
        q[i].n_blocks = 1;
        q[i].blocks = blocks;
        q[i].sample = 1;
        q[i].sp = ss_sampling_default();
    }
    q[0].sp.n_logprobs = 4;
    q[0].n_bias = 2, q[0].bias_ids = bias_ids0, q[0].bias_vals = bias_vals0;
    q[0].n_penalty_tokens = 5, q[0].penalty_tokens = pen0;
    q[0].sp.repetition_penalty = 2.0f, q[0].sp.frequency_penalty = 0.25f, q[0].sp.presence_penalty = 0.5f;
    q[1].n_banned = 2, q[1].banned = ban1;
    q[2].sp.n_logprobs = 2;
    q[2].n_bias = 1, q[2].bias_ids = bias_ids2, q[2].bias_vals = bias_vals2;
    *plan = (ss_step_plan){7, flags, S, q, S, toks};
}

/* Row 0 of fill_logits after q[0]'s edits, worked out by hand: bias, then penalty, as the API documents. */
static void edited_row0(const float *x, float *y)
{
    memcpy(y, x, V * sizeof *y);
    y[3] = (9.0f - 0.25f) / 2.0f - (0.25f * 2 + 0.5f); /* bias, repetition (positive: divided), twice counted */
    y[7] = (7.0f + 1.5f) / 2.0f - (0.25f * 1 + 0.5f);
    y[9] = -3.0f * 2.0f - (0.25f * 1 + 0.5f); /* negative: multiplied */
    y[63] = (x[63] > 0 ? x[63] / 2.0f : x[63] * 2.0f) - 0.75f;
}

static void run_host(ss_backend *be, ss_sampler *smp, const ss_step_plan *plan, const float *dev_logits,
                     ss_step_output *o)
{
    static const int32_t row_of_seq[S] = {0, 1, 2};
    int device = -1;
    ss_err e;
    memset(o, 0, sizeof *o);
    assert_int_equal(ss_sampler_prepare(smp, plan, row_of_seq, &device, &e), SS_OK);
    if (ss_sampler_host(smp, plan, row_of_seq, dev_logits, S, o, &e) != SS_OK)
        fail_msg("host path: %s", e.msg);
    (void)be;
}

static void run_device(ss_backend *be, ss_sampler *smp, const ss_step_plan *plan, float *dev_logits,
                       ss_step_output *o)
{
    static const int32_t row_of_seq[S] = {0, 1, 2};
    int device = 0;
    ss_err e;
    memset(o, 0, sizeof *o);
    assert_int_equal(ss_sampler_prepare(smp, plan, row_of_seq, &device, &e), SS_OK);
    assert_int_equal(device, 1);
    int32_t *out = NULL, row_k[S], k = -1;
    size_t bytes = 0;
    assert_int_equal(be->iface->alloc(be->ctx, ss_sampler_out_bytes(S), (void **)&out), SS_OK);
    if (ss_sampler_device(smp, plan, dev_logits, out, 1, &bytes, &k, &e) != SS_OK)
        fail_msg("device path: %s", e.msg);
    assert_int_equal(k, 4);
    assert_int_equal(bytes, (size_t)S * 8 + (size_t)S * 4 * 8);
    int32_t *buf = malloc(bytes);
    assert_non_null(buf);
    assert_int_equal(be->iface->download(be->ctx, buf, out, bytes), SS_OK);
    ss_sampler_row_lists(plan, row_k);
    assert_int_equal(ss_sampler_unpack(buf, S, k, row_k, o, &e), SS_OK);
    free(buf);
    be->iface->free_buf(be->ctx, out);
}

static float *upload_logits(ss_backend *be, const float *x)
{
    float *d = NULL;
    assert_int_equal(be->iface->alloc(be->ctx, (size_t)S * V * sizeof *d, (void **)&d), SS_OK);
    assert_int_equal(be->iface->upload(be->ctx, d, x, (size_t)S * V * sizeof *d), SS_OK);
    return d;
}

static double lse_of(const float *y)
{
    double mx = -INFINITY, z = 0;
    for (int t = 0; t < V; t++)
        mx = y[t] > mx ? y[t] : mx;
    for (int t = 0; t < V; t++)
        z += exp((double)y[t] - mx);
    return mx + log(z);
}

/* The host path applies the edits as worked out by hand: tokens, lists and log-probabilities. */
static void test_edits_exact(void **state)
{
    (void)state;
    ss_backend *be = cpu_backend();
    ss_sampler *smp = NULL;
    ss_err e;
    assert_int_equal(ss_sampler_create(be, V, 4, 1, &smp, &e), SS_OK);
    float x[S * V], y[V];
    fill_logits(x);
    float *d = upload_logits(be, x);
    ss_plan_seq q[S];
    ss_step_plan plan;
    make_plan(q, &plan, SS_PLAN_LAST_LOGITS);
    ss_step_output o;
    run_host(be, smp, &plan, d, &o);
    assert_int_equal(o.n, S);
    assert_int_equal(o.n_top, 4);
    /* row 0: 3 falls to 8.75 / 2 - 1 = 3.375, below 7's 8.5 / 2 - 0.75 = 3.5 */
    edited_row0(x, y);
    assert_int_equal(o.token[0], 7);
    const double lse0 = lse_of(y);
    assert_true(fabs(o.logprob[0] - (y[7] - lse0)) < 1e-6);
    int32_t want_ids[4] = {7, -1, -1, -1};
    float v[4] = {-INFINITY, -INFINITY, -INFINITY, -INFINITY};
    for (int t = 0; t < V; t++) /* the rest of the list: the largest edited logits, then the first index */
        for (int j = 1; j < 4; j++)
            if (t != 7 && y[t] > v[j]) {
                memmove(&want_ids[j + 1], &want_ids[j], (size_t)(3 - j) * sizeof *want_ids);
                memmove(&v[j + 1], &v[j], (size_t)(3 - j) * sizeof *v);
                want_ids[j] = t, v[j] = y[t];
                break;
            }
    assert_memory_equal(o.top_ids, want_ids, sizeof want_ids);
    for (int j = 0; j < 4; j++)
        assert_true(fabs(o.top_logprobs[j] - (y[want_ids[j]] - lse0)) < 1e-6);
    /* the token's log-probability is its list entry's, to the bit */
    assert_memory_equal(&o.logprob[0], &o.top_logprobs[0], sizeof(float));
    /* row 1: 20 banned (99 is outside the vocabulary: ignored), so 21; no list asked: -1 */
    assert_int_equal(o.token[1], 21);
    for (int j = 0; j < 4; j++)
        assert_int_equal(o.top_ids[4 + j], -1);
    /* row 2: 41 lifted by 10; a list of 2 */
    assert_int_equal(o.token[2], 41);
    assert_int_equal(o.top_ids[8], 41);
    assert_int_equal(o.top_ids[9], 40);
    assert_int_equal(o.top_ids[10], -1);
    assert_true(isinf(o.top_logprobs[11]) && o.top_logprobs[11] < 0);
    /* the raw logits came back untouched */
    assert_int_equal(o.logits_rows, S);
    assert_memory_equal(o.logits, x, sizeof x);
    ss_step_output_clear(&o);
    be->iface->free_buf(be->ctx, d);
    ss_sampler_destroy(smp);
    ss_backend_destroy(be);
}

/* The device path (edit_logits, sample, top_logprobs: the cpu backend's) equals the host path to the bit, and its
 * logits are edited in place. */
static void test_device_equals_host(void **state)
{
    (void)state;
    ss_backend *be = cpu_backend();
    ss_sampler *smp = NULL;
    ss_err e;
    assert_int_equal(ss_sampler_create(be, V, 4, 1, &smp, &e), SS_OK);
    float x[S * V], y[V], got[S * V];
    fill_logits(x);
    float *d = upload_logits(be, x);
    ss_plan_seq q[S];
    ss_step_plan plan;
    make_plan(q, &plan, SS_PLAN_LAST_LOGITS);
    ss_step_output h, o;
    run_host(be, smp, &plan, d, &h);
    make_plan(q, &plan, 0);
    run_device(be, smp, &plan, d, &o);
    assert_int_equal(o.n, h.n);
    assert_int_equal(o.n_top, h.n_top);
    assert_memory_equal(o.token, h.token, S * sizeof *o.token);
    assert_memory_equal(o.logprob, h.logprob, S * sizeof *o.logprob);
    assert_memory_equal(o.top_ids, h.top_ids, (size_t)S * 4 * sizeof *o.top_ids);
    assert_memory_equal(o.top_logprobs, h.top_logprobs, (size_t)S * 4 * sizeof *o.top_logprobs);
    assert_int_equal(be->iface->download(be->ctx, got, d, sizeof got), SS_OK);
    edited_row0(x, y);
    assert_memory_equal(got, y, sizeof y);
    assert_true(isinf(got[V + 20]) && got[V + 20] < 0);
    assert_true(got[2 * V + 41] == x[2 * V + 41] + 10.0f);
    ss_step_output_clear(&h);
    ss_step_output_clear(&o);
    be->iface->free_buf(be->ctx, d);
    ss_sampler_destroy(smp);
    ss_backend_destroy(be);
}

/* The device path declines steps that return logits, lists that outgrow one read-back, edits beyond its buffer, and
 * every step of a sampler made without device buffers; it takes the rest. */
static void test_device_declines(void **state)
{
    (void)state;
    enum { N = 400 };
    ss_backend *be = cpu_backend();
    ss_sampler *smp = NULL, *host_only = NULL;
    ss_err e;
    assert_int_equal(ss_sampler_create(be, V, N, 1, &smp, &e), SS_OK);
    assert_int_equal(ss_sampler_create(be, V, N, 0, &host_only, &e), SS_OK);
    ss_plan_seq *q = calloc(N, sizeof *q);
    int32_t *row_of_seq = malloc(N * sizeof *row_of_seq), toks[N];
    static int32_t blocks[1] = {0};
    int32_t *many = malloc((size_t)N * 2048 * sizeof *many);
    assert_true(q && row_of_seq && many);
    for (int32_t i = 0; i < N * 2048; i++)
        many[i] = i % V;
    for (int i = 0; i < N; i++) {
        q[i].seq_id = (uint64_t)i + 1, q[i].n_tokens = 1, q[i].n_blocks = 1, q[i].blocks = blocks, q[i].sample = 1;
        q[i].sp = ss_sampling_default();
        q[i].sp.n_logprobs = SS_MAX_TOP_LOGPROBS;
        row_of_seq[i] = i;
        toks[i] = 1;
    }
    ss_step_plan plan = {1, 0, N, q, N, toks};
    int device = -1;
    /* 400 rows with lists of 20: 67,200 bytes to read back, over 64 KiB */
    assert_int_equal(ss_sampler_prepare(smp, &plan, row_of_seq, &device, &e), SS_OK);
    assert_int_equal(device, 0);
    plan.n_seqs = 380; /* 63,840 bytes: fits */
    assert_int_equal(ss_sampler_prepare(smp, &plan, row_of_seq, &device, &e), SS_OK);
    assert_int_equal(device, 1);
    assert_int_equal(ss_sampler_prepare(host_only, &plan, row_of_seq, &device, &e), SS_OK);
    assert_int_equal(device, 0);
    plan.flags = SS_PLAN_LAST_LOGITS;
    assert_int_equal(ss_sampler_prepare(smp, &plan, row_of_seq, &device, &e), SS_OK);
    assert_int_equal(device, 0);
    /* every token of every row banned: 380 * 64 edits fit */
    plan.flags = 0;
    for (int i = 0; i < 380; i++)
        q[i].sp.n_logprobs = 0, q[i].n_banned = V, q[i].banned = many;
    assert_int_equal(ss_sampler_prepare(smp, &plan, row_of_seq, &device, &e), SS_OK);
    assert_int_equal(device, 1);
    ss_sampler_destroy(smp);
    /* a sampler for 4 sequences: its buffer holds 65,536 edits */
    assert_int_equal(ss_sampler_create(be, 1 << 17, 4, 1, &smp, &e), SS_OK);
    for (int32_t i = 0; i < N * 2048; i++)
        many[i] = i % (1 << 17);
    for (int i = 0; i < 4; i++)
        q[i].n_banned = 20000, q[i].banned = many + i * 20000;
    plan.n_seqs = 4; /* 80,000 distinct bans: over the 65,536 edits of the buffer */
    assert_int_equal(ss_sampler_prepare(smp, &plan, row_of_seq, &device, &e), SS_OK);
    assert_int_equal(device, 0);
    plan.n_seqs = 3; /* 60,000: fit */
    assert_int_equal(ss_sampler_prepare(smp, &plan, row_of_seq, &device, &e), SS_OK);
    assert_int_equal(device, 1);
    ss_sampler_destroy(smp);
    ss_sampler_destroy(host_only);
    free(many);
    free(row_of_seq);
    free(q);
    ss_backend_destroy(be);
}

/* Unpacking a read-back: each row's list cut to its own length. */
static void test_unpack_trims(void **state)
{
    (void)state;
    /* two rows: tokens, log-probabilities, lists of 3 ids, their values */
    const int32_t buf_i[2 + 2 + 6] = {5, 6, 0, 0, 5, 1, 2, 6, 3, 4};
    int32_t buf[2 + 2 + 6 + 6];
    memcpy(buf, buf_i, sizeof buf_i);
    const float lp[2] = {-0.5f, -0.25f}, vals[6] = {-0.5f, -1, -2, -0.25f, -3, -4};
    memcpy(buf + 2, lp, sizeof lp);
    memcpy(buf + 10, vals, sizeof vals);
    const int32_t row_k[2] = {1, 3};
    ss_step_output o;
    memset(&o, 0, sizeof o);
    ss_err e;
    assert_int_equal(ss_sampler_unpack(buf, 2, 3, row_k, &o, &e), SS_OK);
    assert_int_equal(o.n, 2);
    assert_int_equal(o.n_top, 3);
    assert_int_equal(o.token[1], 6);
    assert_true(o.logprob[1] == -0.25f);
    const int32_t ids[6] = {5, -1, -1, 6, 3, 4};
    assert_memory_equal(o.top_ids, ids, sizeof ids);
    assert_true(o.top_logprobs[0] == -0.5f && isinf(o.top_logprobs[1]) && o.top_logprobs[5] == -4.0f);
    ss_step_output_clear(&o);
}

int main(void)
{
    const struct CMUnitTest tests[] = {cmocka_unit_test(test_edits_exact), cmocka_unit_test(test_device_equals_host),
                                       cmocka_unit_test(test_device_declines), cmocka_unit_test(test_unpack_trims)};
    return cmocka_run_group_tests(tests, NULL, NULL);
}

/* test_linear_fp8.c — fp8 projection weights (--quantization fp8): the format's sizes and parser, the cpu
 * backend's linear_quantize and linear against hand-computed values, and a fixture model's weights loaded as
 * fp8 (a scale a row: fused q/k/v and gate/up rows, and a tp rank's rows, quantised as the checkpoint's rows
 * are), and a tp split whose slices are not 16 wide refused with the widths named. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend/backend.h"
#include "core/dtype.h"
#include "model/config.h"
#include "model/safetensors.h"
#include "model/shard_plan.h"
#include "model/weights.h"
#include "runner/replica.h"

static ss_backend *cpu_backend(ss_linear_type t)
{
    ss_backend_params prm = ss_backend_default_params();
    prm.device = SS_DEVICE_CPU;
    prm.n_threads = 2;
    prm.linear_type = t;
    ss_backend *be = NULL;
    ss_err e = {{0}};
    assert_int_equal(ss_backend_create(&prm, &be, &e), SS_OK);
    assert_int_equal((int)be->linear_type, (int)t);
    return be;
}

static void test_parse_and_sizes(void **state)
{
    (void)state;
    ss_linear_type t = SS_LINEAR_FP8;
    ss_err e = {{0}};
    assert_int_equal(ss_linear_type_parse("none", &t, &e), SS_OK);
    assert_int_equal(t, SS_LINEAR_ACT);
    assert_int_equal(ss_linear_type_parse("fp8", &t, &e), SS_OK);
    assert_int_equal(t, SS_LINEAR_FP8);
    t = SS_LINEAR_ACT;
    assert_int_equal(ss_linear_type_parse("fp8_e4m3", &t, &e), SS_OK);
    assert_int_equal(t, SS_LINEAR_FP8);
    assert_int_equal(ss_linear_type_parse("auto", &t, &e), SS_OK); /* the runner follows the checkpoint */
    assert_int_equal(t, SS_LINEAR_AUTO);
    assert_string_equal(ss_linear_type_name(SS_LINEAR_AUTO), "auto");
    assert_int_equal(ss_linear_type_parse("int4", &t, &e), SS_ERR_INVALID_ARG);
    assert_non_null(strstr(e.msg, "'int4'"));
    assert_int_equal(ss_linear_type_parse(NULL, &t, &e), SS_ERR_INVALID_ARG);
    assert_string_equal(ss_linear_type_name(SS_LINEAR_FP8), "fp8");
    assert_string_equal(ss_linear_type_name(SS_LINEAR_ACT), "none");
    /* act: weight_dtype elements; fp8: bytes, then the m row scales on a 256-byte boundary, padded to 256 */
    assert_int_equal(ss_linear_bytes(SS_LINEAR_ACT, SS_DTYPE_BF16, 6144, 4096), (size_t)6144 * 4096 * 2);
    assert_int_equal(ss_linear_bytes(SS_LINEAR_ACT, SS_DTYPE_F32, 3, 16), 3 * 16 * 4);
    assert_int_equal(ss_linear_fp8_scale_offset(6144, 4096), (size_t)6144 * 4096);
    assert_int_equal(ss_linear_bytes(SS_LINEAR_FP8, SS_DTYPE_BF16, 6144, 4096), (size_t)6144 * 4096 + 6144 * 4);
    assert_int_equal(ss_linear_fp8_scale_offset(3, 16), 256);
    assert_int_equal(ss_linear_bytes(SS_LINEAR_FP8, SS_DTYPE_F32, 3, 16), 512);
    assert_int_equal(ss_linear_fp8_scale_offset(100, 16), 1792);                   /* 1600 rounded up */
    assert_int_equal(ss_linear_bytes(SS_LINEAR_FP8, SS_DTYPE_BF16, 100, 16), 2304); /* + 400 rounded up */
}

static float scale_of(const uint8_t *q, int64_t m, int64_t k, int64_t row)
{
    float s;
    memcpy(&s, q + ss_linear_fp8_scale_offset(m, k) + (size_t)row * sizeof s, sizeof s);
    return s;
}

/* The quantisation by hand. Row 0: a = 3.5 (its largest magnitude, negative), so w * 128 is encoded. Row 1:
 * a = 3, so w * 448 / 3 (-0.25 -> -37.33, which e4m3 rounds to -36). */
static void test_quantize_known(void **state)
{
    (void)state;
    ss_backend *be = cpu_backend(SS_LINEAR_FP8);
    enum { M = 2, K = 16 };
    float w[M * K] = {0};
    w[0] = 1.0f, w[1] = -3.5f, w[2] = 0.001f, w[3] = 0.5f, w[16] = 3.0f, w[31] = -0.25f;
    void *q = NULL;
    assert_int_equal(be->iface->alloc(be->ctx, ss_linear_bytes(SS_LINEAR_FP8, be->weight_dtype, M, K), &q), SS_OK);
    assert_int_equal(be->iface->linear_quantize(be->ctx, q, w, M, K), SS_OK);
    const uint8_t *b = q;
    assert_true(scale_of(b, M, K, 0) == 3.5f / 448.0f);
    assert_true(scale_of(b, M, K, 1) == 3.0f / 448.0f);
    assert_int_equal(b[0], ss_f32_to_e4m3(128.0f)); /* 1.0 * 448 / 3.5 */
    assert_int_equal(b[1], 0xfe);                    /* -448: the largest magnitude maps to the top code */
    assert_int_equal(b[2], ss_f32_to_e4m3(0.128f));
    assert_int_equal(b[3], ss_f32_to_e4m3(64.0f));
    assert_int_equal(b[16], 0x7e);                   /* 448: row 1's own top code */
    assert_int_equal(b[31], ss_f32_to_e4m3(-36.0f));
    assert_int_equal(b[5], 0);
    assert_int_equal(b[17], 0);
    /* a zero row next to a nonzero one: its codes and scale are 0 */
    for (int i = K; i < 2 * K; i++)
        w[i] = 0.0f;
    assert_int_equal(be->iface->linear_quantize(be->ctx, q, w, M, K), SS_OK);
    assert_true(scale_of(b, M, K, 0) == 3.5f / 448.0f && scale_of(b, M, K, 1) == 0.0f);
    assert_int_equal(b[1], 0xfe);
    for (int i = K; i < 2 * K; i++)
        assert_int_equal(b[i], 0);
    /* an all-zero matrix: zero codes and a zero scale, and linear gives zeros (no NaN from 0 * inf) */
    float z[M * K] = {0};
    assert_int_equal(be->iface->linear_quantize(be->ctx, q, z, M, K), SS_OK);
    assert_true(scale_of(b, M, K, 0) == 0.0f && scale_of(b, M, K, 1) == 0.0f);
    for (int i = 0; i < M * K; i++)
        assert_int_equal(b[i], 0);
    float x[K], y[M] = {NAN, NAN};
    for (int i = 0; i < K; i++)
        x[i] = (float)i;
    assert_int_equal(be->iface->linear(be->ctx, y, x, q, NULL, 1, M, K), SS_OK);
    assert_true(y[0] == 0.0f && y[1] == 0.0f);
    be->iface->free_buf(be->ctx, q);
    ss_backend_destroy(be);
}

/* linear over fp8 weights equals x . (e4m3(q) * s_row)^T (+ bias), computed here in double; the rows' magnitudes
 * differ by up to 16x, so a scale taken from the wrong row shows. */
static void test_linear_values(void **state)
{
    (void)state;
    ss_backend *be = cpu_backend(SS_LINEAR_FP8);
    enum { N = 3, M = 37, K = 48 };
    float *w = malloc(sizeof(float) * M * K), x[N * K], bias[M], y[N * M];
    assert_non_null(w);
    uint32_t r = 12345;
    for (int i = 0; i < M * K; i++) {
        r = r * 1103515245u + 12345u;
        w[i] = ((float)(r >> 8) / 16777216.0f - 0.5f) * 0.2f / (float)(1 + (i / K) % 16);
    }
    for (int i = 0; i < N * K; i++)
        x[i] = sinf((float)i * 0.37f);
    for (int i = 0; i < M; i++)
        bias[i] = 0.01f * (float)i;
    void *q = NULL;
    assert_int_equal(be->iface->alloc(be->ctx, ss_linear_bytes(SS_LINEAR_FP8, be->weight_dtype, M, K), &q), SS_OK);
    assert_int_equal(be->iface->linear_quantize(be->ctx, q, w, M, K), SS_OK);
    const uint8_t *b = q;
    assert_int_equal(be->iface->linear(be->ctx, y, x, q, bias, N, M, K), SS_OK);
    double worst = 0, werr = 0, wden = 0;
    for (int i = 0; i < N; i++)
        for (int j = 0; j < M; j++) {
            double ref = bias[j], exact = bias[j];
            for (int t = 0; t < K; t++) {
                ref += (double)x[i * K + t] * (double)(ss_e4m3_to_f32(b[j * K + t]) * scale_of(b, M, K, j));
                exact += (double)x[i * K + t] * (double)w[j * K + t];
            }
            const double d = fabs(y[i * M + j] - ref) / (fabs(ref) + 1e-3);
            worst = d > worst ? d : worst;
            werr += (ref - exact) * (ref - exact);
            wden += exact * exact;
        }
    assert_true(worst < 1e-5);
    /* and fp8 is a real rounding: a few percent off the f32 product, not zero, not wild */
    const double rel = sqrt(werr / wden);
    assert_true(rel > 1e-3 && rel < 0.05);
    /* the same backend type with no quantisation: linear is matmul over weight_dtype */
    ss_backend *plain = cpu_backend(SS_LINEAR_ACT);
    float y2[N * M], y3[N * M];
    void *wd = NULL;
    assert_int_equal(plain->iface->alloc(plain->ctx, ss_linear_bytes(SS_LINEAR_ACT, plain->weight_dtype, M, K), &wd),
                     SS_OK);
    assert_int_equal(plain->iface->linear_quantize(plain->ctx, wd, w, M, K), SS_OK);
    assert_int_equal(plain->iface->linear(plain->ctx, y2, x, wd, bias, N, M, K), SS_OK);
    assert_int_equal(plain->iface->matmul(plain->ctx, y3, SS_DTYPE_F32, x, w, bias, N, M, K), SS_OK);
    assert_memory_equal(y2, y3, sizeof y2);
    plain->iface->free_buf(plain->ctx, wd);
    ss_backend_destroy(plain);
    be->iface->free_buf(be->ctx, q);
    ss_backend_destroy(be);
    free(w);
}

/* f32 copy of rows [r0, r0+nr) x cols [c0, c0+nc) of a 2-d checkpoint tensor. */
static void tensor_block(const ss_checkpoint *ck, const char *name, int64_t r0, int64_t nr, int64_t c0, int64_t nc,
                         float *out)
{
    const ss_st_tensor *t = ss_checkpoint_find(ck, name, NULL);
    assert_non_null(t);
    assert_int_equal(t->ndim, 2);
    const size_t esz = ss_dtype_size(t->dtype);
    for (int64_t r = 0; r < nr; r++)
        ss_convert_to_f32(out + r * nc, (const uint8_t *)t->data + ((size_t)(r0 + r) * (size_t)t->shape[1] + (size_t)c0) * esz,
                          t->dtype, (size_t)nc);
}

/* dev (a loaded [m, k] fp8 matrix) holds ref's rows, each quantised by itself. */
static void expect_fp8_matrix(const void *dev, const float *ref, int64_t m, int64_t k, const char *what)
{
    uint8_t *q = malloc((size_t)k);
    assert_non_null(q);
    const uint8_t *got = dev;
    for (int64_t r = 0; r < m; r++) {
        float s = -1;
        ss_kv_fp8_quant_row(ref + r * k, (int32_t)k, q, &s);
        if (memcmp(got + r * k, q, (size_t)k) != 0 || scale_of(got, m, k, r) != s)
            fail_msg("%s: row %lld of the loaded fp8 matrix differs from quantising the checkpoint's row", what,
                     (long long)r);
        assert_true(s > 0);
    }
    free(q);
}

static void test_load_fixture(void **state)
{
    (void)state;
    char dir[1024];
    snprintf(dir, sizeof dir, "%s/models/llama3-gqa", SS_FIXTURES);
    ss_model_config cfg;
    ss_err e = {{0}};
    assert_int_equal(ss_config_load_dir(dir, &cfg, &e), SS_OK);
    ss_checkpoint *ck = NULL;
    assert_int_equal(ss_checkpoint_open(dir, &ck, &e), SS_OK);
    ss_backend *be = cpu_backend(SS_LINEAR_FP8);
    const int64_t dim = cfg.hidden_size, hd = cfg.head_dim, inter = cfg.intermediate_size;
    const int64_t qd = (int64_t)cfg.n_heads * hd, kvd = (int64_t)cfg.n_kv_heads * hd;

    /* one process: q, k, v fused; gate, up fused; down as it is */
    ss_shard_plan plan;
    assert_int_equal(ss_shard_plan_make(&cfg, 1, 1, 0, &plan, &e), SS_OK);
    ss_model_weights *w = NULL;
    assert_int_equal(ss_weights_load(be, &cfg, &plan, ck, 0, &w, &e), SS_OK);
    float *ref = malloc(sizeof(float) * (size_t)((qd + 2 * kvd) * dim + 2 * inter * dim));
    assert_non_null(ref);
    tensor_block(ck, "model.layers.1.self_attn.q_proj.weight", 0, qd, 0, dim, ref);
    tensor_block(ck, "model.layers.1.self_attn.k_proj.weight", 0, kvd, 0, dim, ref + qd * dim);
    tensor_block(ck, "model.layers.1.self_attn.v_proj.weight", 0, kvd, 0, dim, ref + (qd + kvd) * dim);
    expect_fp8_matrix(w->layers[1].wqkv, ref, qd + 2 * kvd, dim, "layer 1 qkv");
    tensor_block(ck, "model.layers.1.mlp.gate_proj.weight", 0, inter, 0, dim, ref);
    tensor_block(ck, "model.layers.1.mlp.up_proj.weight", 0, inter, 0, dim, ref + inter * dim);
    expect_fp8_matrix(w->layers[1].wgu, ref, 2 * inter, dim, "layer 1 gate/up");
    tensor_block(ck, "model.layers.0.mlp.down_proj.weight", 0, dim, 0, inter, ref);
    expect_fp8_matrix(w->layers[0].wdown, ref, dim, inter, "layer 0 down");
    ss_weights_free(be, w);

    /* tp 2, rank 1: its half of down's columns, each row's half with its own scale; its half of gate's and up's
     * rows, quantised as one process's rows are */
    assert_int_equal(ss_shard_plan_make(&cfg, 2, 1, 1, &plan, &e), SS_OK);
    assert_int_equal(plan.inter_size, inter / 2);
    assert_int_equal(ss_weights_load(be, &cfg, &plan, ck, 0, &w, &e), SS_OK);
    tensor_block(ck, "model.layers.1.mlp.gate_proj.weight", inter / 2, inter / 2, 0, dim, ref);
    tensor_block(ck, "model.layers.1.mlp.up_proj.weight", inter / 2, inter / 2, 0, dim, ref + inter / 2 * dim);
    expect_fp8_matrix(w->layers[1].wgu, ref, inter, dim, "tp 2 rank 1 layer 1 gate/up");
    tensor_block(ck, "model.layers.0.mlp.down_proj.weight", 0, dim, inter / 2, inter / 2, ref);
    expect_fp8_matrix(w->layers[0].wdown, ref, dim, inter / 2, "tp 2 rank 1 layer 0 down");
    ss_weights_free(be, w);

    free(ref);
    ss_backend_destroy(be);
    ss_checkpoint_close(ck);
}

/* qwen2-bias at tp 2: a rank's intermediate slice is 88 wide; every rank refuses, naming the widths. */
static void test_refused_widths(void **state)
{
    (void)state;
    char dir[1024];
    snprintf(dir, sizeof dir, "%s/models/qwen2-bias", SS_FIXTURES);
    ss_replica_params p = ss_replica_default_params();
    p.model_dir = dir;
    p.tp = 2;
    p.backend.device = SS_DEVICE_CPU;
    p.backend.n_threads = 1;
    p.backend.linear_type = SS_LINEAR_FP8;
    p.worker_exe = SS_BINARY_DIR "/shardserve";
    p.max_seq_len = 64;
    p.num_kv_blocks = 8;
    p.comm_timeout_ms = 20000;
    ss_replica *r = NULL;
    ss_err e = {{0}};
    assert_int_not_equal(ss_replica_create(&p, &r, &e), SS_OK);
    assert_null(r);
    if (!strstr(e.msg, "multiples of 16") || !strstr(e.msg, "intermediate 88"))
        fail_msg("unexpected error: %s", e.msg);
    /* the same model in one process is 16 wide everywhere (intermediate 176) and loads */
    p.tp = 1;
    assert_int_equal(ss_replica_create(&p, &r, &e), SS_OK);
    ss_replica_destroy(r);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse_and_sizes),
        cmocka_unit_test(test_quantize_known),
        cmocka_unit_test(test_linear_values),
        cmocka_unit_test(test_load_fixture),
        cmocka_unit_test(test_refused_widths),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

/* test_fp8_checkpoint.c — fp8 checkpoints (F8_E4M3 projection weights with scale tensors, as Hugging Face's fp8,
 * fbgemm_fp8 and compressed-tensors checkpoints hold them), made here from a fixture: a scale a row loads into the
 * very bytes --quantization fp8 makes of the bf16 original (also a tp rank's slices), one scale a tensor keeps the
 * checkpoint's codes, block-wise scales are dequantised; --quantization auto follows the config; prepare writes
 * them dequantised; bad scales, a missing scale and other quantization methods are refused by name. The logits
 * checks run on a GPU with SS_TEST_DEVICE=cuda (the weight-level ones stay on the cpu). */
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
#include <sys/stat.h>
#include <unistd.h>

#include "backend/backend.h"
#include "core/alloc.h"
#include "core/dtype.h"
#include "core/fileio.h"
#include "engine/digest.h"
#include "engine/engine.h"
#include "engine/st_writer.h"
#include "model/config.h"
#include "model/fp8_weights.h"
#include "model/safetensors.h"
#include "model/shard_plan.h"
#include "model/weights.h"
#include "runner/replica.h"

enum { PER_ROW, PER_TENSOR, BLOCK };
static int64_t blk_rows = 16, blk_cols = 16; /* block-wise scales (BLOCK) */
static const char *src_model = "llama3-gqa";  /* the fixture the checkpoints are made from */

static char tmpdir[256];

static int setup(void **state)
{
    (void)state;
    snprintf(tmpdir, sizeof tmpdir, "/tmp/ss_fp8ck_XXXXXX");
    return mkdtemp(tmpdir) ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    char cmd[512];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
    return system(cmd) == 0 ? 0 : -1;
}

static const char *src_dir(void)
{
    static char dir[1024];
    snprintf(dir, sizeof dir, "%s/models/%s", SS_FIXTURES, src_model);
    return dir;
}

static int is_projection(const char *name)
{
    static const char *const p[] = {"q_proj.weight", "k_proj.weight", "v_proj.weight", "o_proj.weight",
                                    "gate_proj.weight", "up_proj.weight", "down_proj.weight"};
    for (size_t i = 0; i < sizeof p / sizeof p[0]; i++) {
        size_t n = strlen(name), m = strlen(p[i]);
        if (n > m && !strcmp(name + n - m, p[i]))
            return 1;
    }
    return 0;
}

/* Quantises the [rows, cols] f32 matrix w into codes q and its scale tensor's values sc (layout `mode`). */
static void quantise(const float *w, int64_t rows, int64_t cols, int mode, uint8_t *q, float *sc)
{
    if (mode == PER_ROW) {
        for (int64_t r = 0; r < rows; r++)
            ss_kv_fp8_quant_row(w + r * cols, (int32_t)cols, q + r * cols, &sc[r]);
        return;
    }
    const int64_t br = mode == BLOCK ? blk_rows : rows, bc = mode == BLOCK ? blk_cols : cols;
    const int64_t gc = (cols + bc - 1) / bc;
    for (int64_t R = 0; R < rows; R += br)
        for (int64_t C = 0; C < cols; C += bc) {
            float a = 0;
            for (int64_t r = R; r < R + br && r < rows; r++)
                for (int64_t c = C; c < C + bc && c < cols; c++)
                    a = fmaxf(a, fabsf(w[r * cols + c]));
            const float s = a / 448.0f, inv = a > 0 ? 448.0f / a : 0.0f;
            sc[(R / br) * gc + C / bc] = s;
            for (int64_t r = R; r < R + br && r < rows; r++)
                for (int64_t c = C; c < C + bc && c < cols; c++)
                    q[r * cols + c] = ss_f32_to_e4m3(w[r * cols + c] * inv);
        }
}

/* Writes <tmpdir>/<name>: the fixture with its projections in fp8 (scales as `mode` lays them, named `scale_suffix`,
 * in scale_dtype) and `quant_config` (JSON) as its quantization_config. skip_scale: a tensor whose scale is left out;
 * bad_scale: a tensor whose scale gets one row too many. */
static void make_fp8_checkpoint(const char *name, int mode, const char *scale_suffix, ss_dtype scale_dtype,
                                const char *quant_config, const char *skip_scale, const char *bad_scale, char *out,
                                size_t cap)
{
    snprintf(out, cap, "%s/%s", tmpdir, name);
    assert_int_equal(mkdir(out, 0755), 0);
    ss_err e = {{0}};
    ss_checkpoint *ck = NULL;
    assert_int_equal(ss_checkpoint_open(src_dir(), &ck, &e), SS_OK);
    const ss_st_file *f = ss_checkpoint_file(ck, 0);
    const size_t n_src = ss_st_count(f);
    ss_st_entry *ents = calloc(2 * n_src, sizeof *ents);
    char (*names)[160] = calloc(n_src, sizeof *names);
    const ss_st_tensor **srcs = calloc(2 * n_src, sizeof *srcs); /* the tensor an entry comes from */
    assert_true(ents && names && srcs);
    size_t n = 0;
    for (size_t i = 0; i < n_src; i++) {
        const ss_st_tensor *t = ss_st_at(f, i);
        ss_st_entry *en = &ents[n];
        en->name = t->name, en->ndim = t->ndim, en->dtype = t->dtype;
        memcpy(en->shape, t->shape, sizeof en->shape);
        srcs[n++] = t;
        if (!is_projection(t->name))
            continue;
        en->dtype = SS_DTYPE_E4M3;
        if (skip_scale && !strcmp(t->name, skip_scale))
            continue;
        snprintf(names[i], sizeof names[i], "%s%s", t->name, scale_suffix);
        ss_st_entry *s = &ents[n];
        s->name = names[i], s->dtype = scale_dtype;
        if (mode == PER_ROW)
            s->ndim = 2, s->shape[0] = t->shape[0], s->shape[1] = 1; /* compressed-tensors' [rows, 1] */
        else if (mode == PER_TENSOR)
            s->ndim = 0; /* AutoFP8's scalar */
        else
            s->ndim = 2, s->shape[0] = (t->shape[0] + blk_rows - 1) / blk_rows,
            s->shape[1] = (t->shape[1] + blk_cols - 1) / blk_cols;
        if (bad_scale && !strcmp(t->name, bad_scale))
            s->shape[0]++;
        srcs[n++] = NULL; /* the scale of the entry before */
    }
    char path[1200];
    snprintf(path, sizeof path, "%s/model.safetensors", out);
    ss_st_writer_params wp = ss_st_writer_default_params();
    wp.sync = 0;
    ss_st_writer *w = NULL;
    assert_int_equal(ss_st_writer_create(path, ents, n, NULL, 0, &wp, &w, &e), SS_OK);
    float *sc = NULL;
    int64_t n_sc = 0;
    for (size_t i = 0; i < n; i++) {
        const ss_st_tensor *t = srcs[i];
        if (!t) { /* the previous tensor's scale */
            uint64_t bytes = ss_st_entry_nbytes(&ents[i]);
            uint8_t *buf = calloc(1, bytes + 4);
            ss_convert_from_f32(buf, scale_dtype, sc, (size_t)(bytes / ss_dtype_size(scale_dtype) < (uint64_t)n_sc
                                                                   ? bytes / ss_dtype_size(scale_dtype)
                                                                   : (uint64_t)n_sc));
            assert_int_equal(ss_st_writer_append(w, buf, bytes, &e), SS_OK);
            free(buf);
            continue;
        }
        if (ents[i].dtype != SS_DTYPE_E4M3) {
            assert_int_equal(ss_st_writer_append(w, t->data, t->nbytes, &e), SS_OK);
            continue;
        }
        const int64_t rows = t->shape[0], cols = t->shape[1];
        float *wf = malloc(sizeof(float) * (size_t)(rows * cols));
        uint8_t *q = malloc((size_t)(rows * cols));
        free(sc);
        sc = calloc((size_t)(rows * cols + 1), sizeof(float));
        n_sc = rows * cols + 1;
        ss_convert_to_f32(wf, t->data, t->dtype, (size_t)(rows * cols));
        quantise(wf, rows, cols, mode, q, sc);
        assert_int_equal(ss_st_writer_append(w, q, (size_t)(rows * cols), &e), SS_OK);
        free(wf), free(q);
    }
    free(sc);
    char digest[SS_SHA256_HEX];
    int64_t size = 0;
    assert_int_equal(ss_st_writer_finish(w, digest, &size, &e), SS_OK);
    ss_st_writer_destroy(w);
    /* config.json with the quantization_config; the tokenizer files as they are */
    char *text = NULL;
    size_t len = 0;
    snprintf(path, sizeof path, "%s/config.json", src_dir());
    assert_int_equal(ss_read_file(path, 1 << 20, &text, &len, &e), SS_OK);
    cJSON *cfg = cJSON_ParseWithLength(text, len);
    ss_free(text);
    assert_non_null(cfg);
    if (quant_config)
        cJSON_AddItemToObject(cfg, "quantization_config", cJSON_Parse(quant_config));
    char *js = cJSON_Print(cfg);
    snprintf(path, sizeof path, "%s/config.json", out);
    FILE *fp = fopen(path, "w");
    assert_non_null(fp);
    fputs(js, fp);
    fclose(fp);
    free(js);
    cJSON_Delete(cfg);
    free(ents), free(names), free(srcs);
    ss_checkpoint_close(ck);
}

static ss_backend *cpu_backend(ss_linear_type t)
{
    ss_backend_params prm = ss_backend_default_params();
    prm.device = SS_DEVICE_CPU;
    prm.n_threads = 2;
    prm.linear_type = t;
    ss_backend *be = NULL;
    ss_err e = {{0}};
    assert_int_equal(ss_backend_create(&prm, &be, &e), SS_OK);
    return be;
}

/* dir's config (into *cfg) and its opened checkpoint (caller closes). */
static ss_checkpoint *open_checkpoint(const char *dir, ss_model_config *cfg)
{
    ss_err e = {{0}};
    assert_int_equal(ss_config_load_dir(dir, cfg, &e), SS_OK);
    ss_checkpoint *ck = NULL;
    assert_int_equal(ss_checkpoint_open(dir, &ck, &e), SS_OK);
    return ck;
}

static ss_model_weights *load(ss_backend *be, const char *dir, int tp, int rank)
{
    ss_model_config cfg;
    ss_err e = {{0}};
    ss_checkpoint *ck = open_checkpoint(dir, &cfg);
    ss_shard_plan plan;
    assert_int_equal(ss_shard_plan_make(&cfg, tp, 1, rank, &plan, &e), SS_OK);
    ss_model_weights *w = NULL;
    if (ss_weights_load(be, &cfg, &plan, ck, 0, &w, &e) != SS_OK)
        fail_msg("%s: %s", dir, e.msg);
    ss_checkpoint_close(ck);
    return w;
}

/* The fp8 linear buffers of two loads are the same bytes (codes and f32 row scales). */
static void expect_same_linear(const void *a, const void *b, int64_t m, int64_t k, const char *what)
{
    const size_t bytes = ss_linear_bytes(SS_LINEAR_FP8, SS_DTYPE_F32, m, k);
    const size_t soff = ss_linear_fp8_scale_offset(m, k);
    if (memcmp(a, b, (size_t)(m * k)) || memcmp((const uint8_t *)a + soff, (const uint8_t *)b + soff, (size_t)m * 4))
        fail_msg("%s: the two loads' [%lld, %lld] fp8 matrices (%zu bytes) differ", what, (long long)m, (long long)k,
                 bytes);
}

/* A scale a row: the same bytes as quantising the bf16 fixture at load (one process, and tp 2 rank 1's row slices);
 * a tp rank's column slice keeps the whole row's scale. */
static void test_per_row_exact(void **state)
{
    (void)state;
    char dir[1024];
    make_fp8_checkpoint("row", PER_ROW, "_scale", SS_DTYPE_F32,
                        "{\"quant_method\":\"compressed-tensors\",\"format\":\"float-quantized\",\"config_groups\":"
                        "{\"group_0\":{\"targets\":[\"Linear\"],\"weights\":{\"num_bits\":8,\"type\":\"float\","
                        "\"strategy\":\"channel\"}}},\"ignore\":[\"lm_head\"]}",
                        NULL, NULL, dir, sizeof dir);
    ss_model_config cfg;
    ss_err e = {{0}};
    assert_int_equal(ss_config_load_dir(dir, &cfg, &e), SS_OK);
    assert_int_equal(cfg.fp8_weights, 1);
    ss_backend *be = cpu_backend(SS_LINEAR_FP8);
    const int64_t dim = cfg.hidden_size, hd = cfg.head_dim, inter = cfg.intermediate_size;
    const int64_t qkv = (int64_t)(cfg.n_heads + 2 * cfg.n_kv_heads) * hd, qd = (int64_t)cfg.n_heads * hd;
    ss_model_weights *a = load(be, dir, 1, 0), *b = load(be, src_dir(), 1, 0);
    for (int l = 0; l < cfg.n_layers; l++) {
        expect_same_linear(a->layers[l].wqkv, b->layers[l].wqkv, qkv, dim, "qkv");
        expect_same_linear(a->layers[l].wo, b->layers[l].wo, dim, qd, "o");
        expect_same_linear(a->layers[l].wgu, b->layers[l].wgu, 2 * inter, dim, "gate/up");
        expect_same_linear(a->layers[l].wdown, b->layers[l].wdown, dim, inter, "down");
    }
    ss_weights_free(be, a), ss_weights_free(be, b);
    /* tp 2, rank 1: gate/up rows as quantised from the original; down's columns: the checkpoint's codes of its half,
     * under the whole row's scale */
    a = load(be, dir, 2, 1), b = load(be, src_dir(), 2, 1);
    expect_same_linear(a->layers[1].wgu, b->layers[1].wgu, inter, dim, "tp 2 rank 1 gate/up");
    ss_weights_free(be, b);
    ss_checkpoint *ck = NULL;
    assert_int_equal(ss_checkpoint_open(dir, &ck, &e), SS_OK);
    const ss_st_tensor *t = ss_checkpoint_find(ck, "model.layers.1.mlp.down_proj.weight", NULL);
    const ss_st_tensor *s = ss_checkpoint_find(ck, "model.layers.1.mlp.down_proj.weight_scale", NULL);
    assert_true(t && s && t->dtype == SS_DTYPE_E4M3);
    const uint8_t *got = a->layers[1].wdown;
    const float *gs = (const float *)(got + ss_linear_fp8_scale_offset(dim, inter / 2));
    for (int64_t r = 0; r < dim; r++) {
        assert_memory_equal(got + r * (inter / 2), (const uint8_t *)t->data + r * inter + inter / 2, (size_t)(inter / 2));
        assert_float_equal(gs[r], ((const float *)s->data)[r], 0.0f);
    }
    ss_checkpoint_close(ck);
    ss_weights_free(be, a);
    ss_backend_destroy(be);
}

/* Logits of one prompt on the cpu, or with SS_TEST_DEVICE=cuda (and gpu_ok) on a GPU (a replica, so --quantization
 * auto resolves as serve's does). tp > 1 runs on the cpu. */
static float *prompt_logits_tp(const char *dir, ss_linear_type lt, int tp, int gpu_ok, int32_t *vocab,
                               ss_linear_type *resolved)
{
    ss_replica_params p = ss_replica_default_params();
    p.model_dir = dir;
    p.tp = tp;
    const char *dev = getenv("SS_TEST_DEVICE");
    p.backend.device = gpu_ok && tp == 1 && dev && !strcmp(dev, "cuda") ? SS_DEVICE_CUDA : SS_DEVICE_CPU;
    p.backend.n_threads = 2;
    p.backend.linear_type = lt;
    p.worker_exe = SS_BINARY_DIR "/shardserve";
    p.comm_timeout_ms = 20000;
    p.max_seq_len = 64;
    p.num_kv_blocks = 8;
    ss_replica *r = NULL;
    ss_err e = {{0}};
    if (ss_replica_create(&p, &r, &e) != SS_OK)
        fail_msg("%s: %s", dir, e.msg);
    int32_t ids[12], blocks[4] = {3, 1, 2, 0};
    for (int i = 0; i < 12; i++)
        ids[i] = 1 + 37 * i;
    ss_plan_seq q;
    memset(&q, 0, sizeof q);
    q.n_tokens = 12, q.blocks = blocks, q.n_blocks = 4, q.sample = 1, q.sp = ss_sampling_default();
    ss_step_plan plan = {1, SS_PLAN_LAST_LOGITS, 1, &q, 12, ids};
    ss_step_output out;
    if (ss_replica_step(r, &plan, &out, &e) != SS_OK)
        fail_msg("%s: %s", dir, e.msg);
    *vocab = ss_replica_config(r)->vocab_size;
    if (resolved)
        *resolved = ss_replica_linear_type(r);
    float *l = malloc(sizeof(float) * (size_t)*vocab);
    memcpy(l, out.logits, sizeof(float) * (size_t)*vocab);
    ss_step_output_clear(&out);
    ss_replica_destroy(r);
    return l;
}

static float *prompt_logits(const char *dir, ss_linear_type lt, int32_t *vocab)
{
    return prompt_logits_tp(dir, lt, 1, 1, vocab, NULL);
}

static double rel_l2(const float *a, const float *b, int32_t n)
{
    double d = 0, s = 0;
    for (int32_t i = 0; i < n; i++)
        d += (double)(a[i] - b[i]) * (a[i] - b[i]), s += (double)b[i] * b[i];
    return sqrt(d / (s > 0 ? s : 1));
}

/* --quantization auto: an fp8 checkpoint is served in fp8 (the same logits as --quantization fp8 of the original,
 * for a scale a row); none dequantises it (within the fp8 error of the original's logits). One scale a tensor (AutoFP8,
 * bf16 scales) and block-wise scales (weight_scale_inv) load too, close to the original. */
static void test_auto_and_layouts(void **state)
{
    (void)state;
    char row[1024], ten[1024], blk[1024];
    make_fp8_checkpoint("auto_row", PER_ROW, "_scale", SS_DTYPE_F32, "{\"quant_method\":\"fbgemm_fp8\"}", NULL, NULL,
                        row, sizeof row);
    make_fp8_checkpoint("auto_tensor", PER_TENSOR, "_scale", SS_DTYPE_BF16,
                        "{\"quant_method\":\"fp8\",\"activation_scheme\":\"static\"}", NULL, NULL, ten, sizeof ten);
    make_fp8_checkpoint("auto_block", BLOCK, "_scale_inv", SS_DTYPE_F32,
                        "{\"quant_method\":\"fp8\",\"weight_block_size\":[16,16]}", NULL, NULL, blk, sizeof blk);
    int32_t V = 0;
    float *ref = prompt_logits(src_dir(), SS_LINEAR_ACT, &V);
    float *ref8 = prompt_logits(src_dir(), SS_LINEAR_FP8, &V);
    float *a = prompt_logits(row, SS_LINEAR_AUTO, &V);
    assert_memory_equal(a, ref8, sizeof(float) * (size_t)V); /* the same weights, the same arithmetic */
    float *n = prompt_logits(row, SS_LINEAR_ACT, &V);
    const double e_none = rel_l2(n, ref, V), e_fp8 = rel_l2(ref8, ref, V);
    fprintf(stderr, "fp8 checkpoint (a scale a row): dequantised %.3g, --quantization fp8 of the original %.3g\n", e_none,
            e_fp8);
    assert_true(e_none > 0 && e_none < 2 * e_fp8);
    float *t = prompt_logits(ten, SS_LINEAR_AUTO, &V), *b = prompt_logits(blk, SS_LINEAR_AUTO, &V);
    float *bn = prompt_logits(blk, SS_LINEAR_ACT, &V);
    const double e_t = rel_l2(t, ref, V), e_b = rel_l2(b, ref, V), e_bn = rel_l2(bn, ref, V);
    fprintf(stderr, "one scale a tensor %.3g; block-wise %.3g (dequantised %.3g)\n", e_t, e_b, e_bn);
    /* (the fixture is tiny: fp8 moves its logits by ~6%; block-wise scales are quantised again a row at a time on the
     * device, which adds to that: 0.101 against 0.0835 dequantised when written) */
    assert_true(e_t > 0 && e_t < 2 * e_fp8 && e_b > 0 && e_b < 2 * e_fp8 && e_bn > 0 && e_bn < 2 * e_fp8);
    free(ref), free(ref8), free(a), free(n), free(t), free(b), free(bn);
}

/* One scale a tensor keeps the checkpoint's codes: every row of a fused matrix carries its part's scale. */
static void test_per_tensor_codes(void **state)
{
    (void)state;
    char dir[1024];
    make_fp8_checkpoint("tensor", PER_TENSOR, "_scale", SS_DTYPE_F32, "{\"quant_method\":\"fp8\"}", NULL, NULL, dir,
                        sizeof dir);
    ss_backend *be = cpu_backend(SS_LINEAR_FP8);
    ss_model_weights *w = load(be, dir, 1, 0);
    ss_model_config cfg;
    ss_checkpoint *ck = open_checkpoint(dir, &cfg);
    const int64_t dim = cfg.hidden_size, inter = cfg.intermediate_size;
    const ss_st_tensor *g = ss_checkpoint_find(ck, "model.layers.0.mlp.gate_proj.weight", NULL);
    const ss_st_tensor *u = ss_checkpoint_find(ck, "model.layers.0.mlp.up_proj.weight", NULL);
    const ss_st_tensor *gs = ss_checkpoint_find(ck, "model.layers.0.mlp.gate_proj.weight_scale", NULL);
    const ss_st_tensor *us = ss_checkpoint_find(ck, "model.layers.0.mlp.up_proj.weight_scale", NULL);
    assert_true(g && u && gs && us && gs->ndim == 0);
    const uint8_t *d = w->layers[0].wgu;
    assert_memory_equal(d, g->data, (size_t)(inter * dim));
    assert_memory_equal(d + inter * dim, u->data, (size_t)(inter * dim));
    const float *sc = (const float *)(d + ss_linear_fp8_scale_offset(2 * inter, dim));
    for (int64_t r = 0; r < 2 * inter; r++)
        assert_float_equal(sc[r], ((const float *)(r < inter ? gs : us)->data)[0], 0.0f);
    ss_checkpoint_close(ck);
    ss_weights_free(be, w);
    ss_backend_destroy(be);
}

/* Prepares an engine (tp 1) of checkpoint dir into <tmpdir>/<name>. */
static void prepare_engine_tp(const char *dir, const char *name, int tp, int pp, char *eng, size_t cap)
{
    snprintf(eng, cap, "%s/%s", tmpdir, name);
    assert_int_equal(mkdir(eng, 0755), 0);
    ss_engine_build_params bp;
    memset(&bp, 0, sizeof bp);
    bp.src_dir = dir;
    bp.out_dir = eng;
    bp.source_id = "fp8-test";
    bp.source_revision = "local";
    bp.tp = tp;
    bp.pp = pp;
    bp.dtype = SS_DTYPE_BF16;
    bp.threads = 1;
    bp.quiet = 1;
    ss_err e = {{0}};
    if (ss_engine_build(&bp, &e) != SS_OK)
        fail_msg("prepare %s: %s", dir, e.msg);
}

static void prepare_engine(const char *dir, const char *name, char *eng, size_t cap)
{
    prepare_engine_tp(dir, name, 1, 1, eng, cap);
}

/* The dtype of tensor `name` in an engine's rank 0 file, and (kept fp8) its "_scale" tensor's shape. */
static ss_dtype engine_tensor(const char *eng, const char *name, int64_t *scale_rows)
{
    char path[1300];
    snprintf(path, sizeof path, "%s/rank-00000.safetensors", eng);
    ss_checkpoint *ck = NULL;
    ss_err e = {{0}};
    assert_int_equal(ss_checkpoint_open_file(path, &ck, &e), SS_OK);
    const ss_st_tensor *t = ss_checkpoint_find(ck, name, NULL);
    assert_non_null(t);
    char sn[200];
    snprintf(sn, sizeof sn, "%s_scale", name);
    const ss_st_tensor *s = ss_checkpoint_find(ck, sn, NULL);
    *scale_rows = s ? s->shape[0] : -1;
    if (s)
        assert_true(s->dtype == SS_DTYPE_F32 && s->ndim == 2 && s->shape[1] == 1);
    const ss_dtype d = t->dtype;
    ss_checkpoint_close(ck);
    return d;
}

/* Every rank of the tp x pp engine eng loads (pre-sliced) into the bytes it loads from checkpoint dir. */
static void engine_vs_checkpoint(const char *dir, const char *eng, int tp, int pp)
{
    ss_model_config cfg;
    ss_err e = {{0}};
    assert_int_equal(ss_config_load_dir(dir, &cfg, &e), SS_OK);
    ss_checkpoint *src = NULL;
    assert_int_equal(ss_checkpoint_open(dir, &src, &e), SS_OK);
    ss_backend *be = cpu_backend(SS_LINEAR_FP8);
    for (int rank = 0; rank < tp * pp; rank++) {
        ss_shard_plan plan;
        assert_int_equal(ss_shard_plan_make(&cfg, tp, pp, rank, &plan, &e), SS_OK);
        char path[1300];
        snprintf(path, sizeof path, "%s/rank-%05d.safetensors", eng, rank);
        ss_checkpoint *ck = NULL;
        assert_int_equal(ss_checkpoint_open_file(path, &ck, &e), SS_OK);
        ss_model_weights *we = NULL, *wc = NULL;
        if (ss_weights_load(be, &cfg, &plan, ck, 1, &we, &e) != SS_OK || ss_weights_load(be, &cfg, &plan, src, 0, &wc, &e) != SS_OK)
            fail_msg("%s rank %d: %s", eng, rank, e.msg);
        const int64_t dim = cfg.hidden_size, hd = cfg.head_dim, inter = plan.inter_size;
        const int64_t qkv = (int64_t)(plan.q_heads + 2 * plan.kv_heads) * hd, qd = (int64_t)plan.q_heads * hd;
        char what[1400];
        snprintf(what, sizeof what, "%s rank %d", eng, rank);
        for (int l = 0; l < plan.layer_end - plan.layer_start; l++) {
            expect_same_linear(we->layers[l].wqkv, wc->layers[l].wqkv, qkv, dim, what);
            expect_same_linear(we->layers[l].wo, wc->layers[l].wo, dim, qd, what);
            expect_same_linear(we->layers[l].wgu, wc->layers[l].wgu, 2 * inter, dim, what);
            expect_same_linear(we->layers[l].wdown, wc->layers[l].wdown, dim, inter, what);
        }
        ss_weights_free(be, we), ss_weights_free(be, wc);
        ss_checkpoint_close(ck);
    }
    ss_backend_destroy(be);
    ss_checkpoint_close(src);
}

/* prepare keeps an fp8 checkpoint's codes where each row has one scale (a row, or one a tensor) — the engine holds
 * them and their rows' f32 scales, so it serves exactly the checkpoint's logits — and writes narrower blocks
 * dequantised in its dtype (quantised again at load: close to the checkpoint). The engine keeps the config, so
 * --quantization auto serves it in fp8. */
static void test_prepare(void **state)
{
    (void)state;
    char dir[1024], eng[1200];
    const char *q = "model.layers.1.self_attn.q_proj.weight";
    int64_t srows = 0;
    int32_t V = 0;
    static const int modes[2] = {PER_ROW, PER_TENSOR};
    for (int m = 0; m < 2; m++) {
        make_fp8_checkpoint(m ? "prep_t" : "prep_r", modes[m], "_scale", SS_DTYPE_F32,
                            m ? "{\"quant_method\":\"fp8\"}" : "{\"quant_method\":\"fbgemm_fp8\"}", NULL, NULL, dir,
                            sizeof dir);
        prepare_engine(dir, m ? "prep_t-engine" : "prep_r-engine", eng, sizeof eng);
        assert_int_equal(engine_tensor(eng, q, &srows), SS_DTYPE_E4M3);
        assert_true(srows > 0);
        float *a = prompt_logits(dir, SS_LINEAR_AUTO, &V), *b = prompt_logits(eng, SS_LINEAR_AUTO, &V);
        assert_memory_equal(a, b, sizeof(float) * (size_t)V);
        free(a), free(b);
    }
    /* tp 2, pp 2 and tp 2 x pp 2: every rank's engine file loads into the bytes that rank loads from the checkpoint,
     * for a scale a row, one a tensor, and row-wide blocks of 24 rows (a tp slice of gate/up starts inside a block) */
    static const char *const kept[] = {"prep_r", "prep_t", "prep_w"};
    for (int m = 0; m < 3; m++) {
        char src[1200];
        snprintf(src, sizeof src, "%s/%s", tmpdir, kept[m]);
        if (m == 2) {
            blk_rows = 24, blk_cols = 100000;
            make_fp8_checkpoint("prep_w", BLOCK, "_scale_inv", SS_DTYPE_F32,
                                "{\"quant_method\":\"fp8\",\"weight_block_size\":[24,100000]}", NULL, NULL, dir,
                                sizeof dir);
            blk_rows = 16, blk_cols = 16;
        }
        static const int layouts[3][2] = {{2, 1}, {1, 2}, {2, 2}};
        for (int l = 0; l < 3; l++) {
            char en[64];
            snprintf(en, sizeof en, "%s-tp%d-pp%d", kept[m], layouts[l][0], layouts[l][1]);
            prepare_engine_tp(src, en, layouts[l][0], layouts[l][1], eng, sizeof eng);
            engine_vs_checkpoint(src, eng, layouts[l][0], layouts[l][1]);
        }
    }
    make_fp8_checkpoint("prep_b", BLOCK, "_scale_inv", SS_DTYPE_F32,
                        "{\"quant_method\":\"fp8\",\"weight_block_size\":[16,16]}", NULL, NULL, dir, sizeof dir);
    prepare_engine(dir, "prep_b-engine", eng, sizeof eng);
    assert_int_equal(engine_tensor(eng, q, &srows), SS_DTYPE_BF16);
    assert_int_equal(srows, -1);
    float *a = prompt_logits(dir, SS_LINEAR_AUTO, &V), *b = prompt_logits(eng, SS_LINEAR_AUTO, &V);
    const double err = rel_l2(b, a, V);
    fprintf(stderr, "engine of a block-wise fp8 checkpoint against the checkpoint: %.3g\n", err);
    assert_true(err < 0.05); /* both quantise the same dequantised rows at load, one through bf16 */
    free(a), free(b);
}

/* Blocks as wide as a row (weight_block_size [16, 100000]) are a scale a row in effect: copied straight in, every
 * row carrying its own block's scale (rows 16..31 block 1's, ...). */
static void test_row_wide_blocks(void **state)
{
    (void)state;
    char dir[1024];
    blk_rows = 16, blk_cols = 100000;
    make_fp8_checkpoint("wideblk", BLOCK, "_scale_inv", SS_DTYPE_F32,
                        "{\"quant_method\":\"fp8\",\"weight_block_size\":[16,100000]}", NULL, NULL, dir, sizeof dir);
    blk_rows = 16, blk_cols = 16;
    ss_backend *be = cpu_backend(SS_LINEAR_FP8);
    ss_model_weights *w = load(be, dir, 1, 0);
    ss_model_config cfg;
    ss_checkpoint *ck = open_checkpoint(dir, &cfg);
    const int64_t dim = cfg.hidden_size, inter = cfg.intermediate_size;
    const ss_st_tensor *g = ss_checkpoint_find(ck, "model.layers.1.mlp.gate_proj.weight", NULL);
    const ss_st_tensor *gs = ss_checkpoint_find(ck, "model.layers.1.mlp.gate_proj.weight_scale_inv", NULL);
    const ss_st_tensor *ds = ss_checkpoint_find(ck, "model.layers.1.mlp.down_proj.weight_scale_inv", NULL);
    assert_true(g && gs && ds && gs->shape[0] == (inter + 15) / 16 && gs->shape[1] == 1);
    const uint8_t *d = w->layers[1].wgu;
    assert_memory_equal(d, g->data, (size_t)(inter * dim));
    const float *sc = (const float *)(d + ss_linear_fp8_scale_offset(2 * inter, dim));
    for (int64_t r = 0; r < inter; r++)
        assert_float_equal(sc[r], ((const float *)gs->data)[r / 16], 0.0f);
    const float *dsc = (const float *)((const uint8_t *)w->layers[1].wdown + ss_linear_fp8_scale_offset(dim, inter));
    for (int64_t r = 0; r < dim; r++)
        assert_float_equal(dsc[r], ((const float *)ds->data)[r / 16], 0.0f);
    ss_checkpoint_close(ck);
    ss_weights_free(be, w);
    ss_backend_destroy(be);
}

/* --quantization auto where fp8 projections cannot load (qwen2-bias at tp 2: a rank's intermediate slice is 88 wide,
 * not a multiple of 16): the fp8 checkpoint is dequantised instead (with a warning), where an explicit fp8 is refused
 * (test_linear_fp8). The logits then match the one-process dequantised run. */
static void test_auto_falls_back(void **state)
{
    (void)state;
    char dir[1024];
    src_model = "qwen2-bias";
    make_fp8_checkpoint("qwen_row", PER_ROW, "_scale", SS_DTYPE_F32, "{\"quant_method\":\"fbgemm_fp8\"}", NULL, NULL,
                        dir, sizeof dir);
    src_model = "llama3-gqa";
    int32_t V = 0;
    ss_linear_type got = SS_LINEAR_FP8;
    /* both on the cpu (under SS_TEST_DEVICE=cuda too: tp 2 runs there, and a GPU's bf16 logits are no match) */
    float *one = prompt_logits_tp(dir, SS_LINEAR_ACT, 1, 0, &V, NULL);
    float *two = prompt_logits_tp(dir, SS_LINEAR_AUTO, 2, 0, &V, &got);
    assert_int_equal(got, SS_LINEAR_ACT);
    const double err = rel_l2(two, one, V);
    fprintf(stderr, "auto at tp 2 (dequantised) against one process: %.3g\n", err);
    assert_true(err < 1e-5);
    free(one), free(two);
}

/* compressed-tensors: no config_groups (a scheme of KV-cache scales only) leaves bf16 weights as they are; a group
 * without weights, or with fp8 weights a group of columns at a time, is refused by name. */
static void test_compressed_tensors_forms(void **state)
{
    (void)state;
    static const char *const ok = "{\"architectures\":[\"LlamaForCausalLM\"],\"vocab_size\":32,\"hidden_size\":16,"
                                  "\"intermediate_size\":32,\"num_hidden_layers\":1,\"num_attention_heads\":2,"
                                  "\"quantization_config\":%s}";
    static const struct {
        const char *q;
        int fp8;
        const char *err;
    } cases[] = {
        {"{\"quant_method\":\"compressed-tensors\",\"kv_cache_scheme\":{\"num_bits\":8,\"type\":\"float\"}}", 0, NULL},
        {"{\"quant_method\":\"compressed-tensors\",\"config_groups\":{\"g0\":{\"input_activations\":{}}}}", 0,
         "group 'g0' has no weights scheme"},
        {"{\"quant_method\":\"compressed-tensors\",\"config_groups\":{\"g0\":{\"weights\":{\"num_bits\":8,\"type\":"
         "\"float\",\"strategy\":\"group\",\"group_size\":128}}}}",
         0, "strategy \"group\" are not supported"},
        {"{\"quant_method\":\"compressed-tensors\",\"config_groups\":{\"g0\":{\"weights\":{\"num_bits\":8,\"type\":"
         "\"float\",\"strategy\":\"block\",\"block_structure\":[128,128]}}}}",
         1, NULL},
        {"{\"quant_method\":\"fp8\",\"weight_block_size\":[128]}", 0, "weight_block_size is not [rows, cols]"},
        {"{\"bits\":4}", 0, "needs a \"quant_method\""},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char json[1024];
        snprintf(json, sizeof json, ok, cases[i].q);
        ss_model_config c;
        ss_err e = {{0}};
        const ss_status st = ss_config_parse(json, strlen(json), "config.json", &c, &e);
        if (cases[i].err) {
            assert_int_not_equal(st, SS_OK);
            if (!strstr(e.msg, cases[i].err))
                fail_msg("case %zu: unexpected error: %s", i, e.msg);
        } else {
            if (st != SS_OK)
                fail_msg("case %zu: %s", i, e.msg);
            assert_int_equal(c.fp8_weights, cases[i].fp8);
            if (cases[i].fp8)
                assert_true(c.fp8_block_rows == 128 && c.fp8_block_cols == 128);
        }
    }
}

static void expect_load_error(const char *dir, const char *needle1, const char *needle2)
{
    ss_replica_params p = ss_replica_default_params();
    p.model_dir = dir;
    p.backend.device = SS_DEVICE_CPU;
    p.backend.n_threads = 1;
    p.max_seq_len = 64;
    p.num_kv_blocks = 8;
    ss_replica *r = NULL;
    ss_err e = {{0}};
    assert_int_not_equal(ss_replica_create(&p, &r, &e), SS_OK);
    assert_null(r);
    if (!strstr(e.msg, needle1) || (needle2 && !strstr(e.msg, needle2)))
        fail_msg("%s: unexpected error: %s", dir, e.msg);
}

static void test_errors(void **state)
{
    (void)state;
    char dir[1024];
    make_fp8_checkpoint("noscale", PER_ROW, "_scale", SS_DTYPE_F32, "{\"quant_method\":\"fp8\"}",
                        "model.layers.1.self_attn.o_proj.weight", NULL, dir, sizeof dir);
    expect_load_error(dir, "model.layers.1.self_attn.o_proj.weight", "no 'model.layers.1.self_attn.o_proj.weight_scale'");
    make_fp8_checkpoint("badscale", PER_ROW, "_scale", SS_DTYPE_F32, "{\"quant_method\":\"fp8\"}", NULL,
                        "model.layers.0.mlp.up_proj.weight", dir, sizeof dir);
    expect_load_error(dir, "model.layers.0.mlp.up_proj.weight_scale", "expected one value");
    /* block-wise scales without the config's weight_block_size */
    make_fp8_checkpoint("noblock", BLOCK, "_scale_inv", SS_DTYPE_F32, "{\"quant_method\":\"fp8\"}", NULL, NULL, dir,
                        sizeof dir);
    expect_load_error(dir, "weight_scale_inv", "weight_block_size");
    /* other methods, and compressed-tensors with int4 weights, refused by name */
    make_fp8_checkpoint("awq", PER_ROW, "_scale", SS_DTYPE_F32, "{\"quant_method\":\"awq\",\"bits\":4}", NULL, NULL, dir,
                        sizeof dir);
    expect_load_error(dir, "quant_method \"awq\" is not supported", NULL);
    make_fp8_checkpoint("int4", PER_ROW, "_scale", SS_DTYPE_F32,
                        "{\"quant_method\":\"compressed-tensors\",\"config_groups\":{\"g\":{\"weights\":{\"num_bits\":4,"
                        "\"type\":\"int\"}}}}",
                        NULL, NULL, dir, sizeof dir);
    expect_load_error(dir, "int 4 bits", "only 8-bit float");
    /* a scale tensor in fp8 itself */
    ss_err e = {{0}};
    ss_checkpoint *ck = NULL;
    make_fp8_checkpoint("f8scale", PER_ROW, "_scale", SS_DTYPE_E4M3, "{\"quant_method\":\"fp8\"}", NULL, NULL, dir,
                        sizeof dir);
    assert_int_equal(ss_checkpoint_open(dir, &ck, &e), SS_OK);
    ss_fp8_scale sc;
    const ss_st_tensor *t = ss_checkpoint_find(ck, "model.layers.0.self_attn.q_proj.weight", NULL);
    assert_int_equal(ss_fp8_scale_find(ck, t, 0, 0, &sc, &e), SS_ERR_FORMAT);
    assert_non_null(strstr(e.msg, "f8_e4m3 (f32, bf16 or f16 expected)"));
    ss_checkpoint_close(ck);
}

/* Dequantising a run that crosses rows and blocks: each element's own block scale. */
static void test_dequant_blocks(void **state)
{
    (void)state;
    uint8_t codes[3 * 5];
    for (int i = 0; i < 15; i++)
        codes[i] = ss_f32_to_e4m3((float)(i + 1));
    float scales[2 * 3] = {1, 2, 4, 8, 16, 32}; /* blocks of 2 x 2 over [3, 5]: a 2 x 3 grid */
    ss_st_tensor t = {"w", SS_DTYPE_E4M3, 2, {3, 5}, 0, 15, codes};
    ss_st_tensor s = {"w_scale_inv", SS_DTYPE_F32, 2, {2, 3}, 0, 24, scales};
    ss_fp8_scale sc = {&s, 3, 5, 2, 2, 3};
    float out[15];
    ss_fp8_dequant(&t, &sc, 3, 9, out); /* elements 3 .. 11: row 0 cols 3-4, row 1, row 2 cols 0-1 */
    const float want[9] = {4 * 2, 5 * 4, 6 * 1, 7 * 1, 8 * 2, 9 * 2, 10 * 4, 11 * 8, 12 * 8};
    for (int i = 0; i < 9; i++)
        assert_float_equal(out[i], want[i], 0.0f);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_dequant_blocks), cmocka_unit_test(test_per_row_exact),
        cmocka_unit_test(test_per_tensor_codes), cmocka_unit_test(test_auto_and_layouts),
        cmocka_unit_test(test_prepare),         cmocka_unit_test(test_errors),
        cmocka_unit_test(test_row_wide_blocks), cmocka_unit_test(test_auto_falls_back),
        cmocka_unit_test(test_compressed_tensors_forms),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}

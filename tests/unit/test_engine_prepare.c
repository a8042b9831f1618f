/* test_engine_prepare.c — engines built from the llama3-gqa and mistral-tied-mqa fixtures: every rank
 * file holds exactly its slices (checked byte for byte against slices computed here from the config),
 * dtype conversion, reuse, verification naming a damaged file, the local-folder key. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/alloc.h"
#include "core/dtype.h"
#include "core/fileio.h"
#include "core/log.h"
#include "engine/cache.h"
#include "engine/engine.h"
#include "model/safetensors.h"

static char te_cache[256];

static int te_setup(void **state)
{
    (void)state;
    ss_log_init(SS_LOG_WARN, "test");
    snprintf(te_cache, sizeof te_cache, "/tmp/ss-test-eng.XXXXXX");
    return mkdtemp(te_cache) ? 0 : -1;
}

static int te_teardown(void **state)
{
    (void)state;
    ss_err e;
    return ss_cache_rmtree(te_cache, &e) == SS_OK ? 0 : -1;
}

static char *te_prepare(const char *model, int tp, int pp, ss_dtype dt)
{
    ss_engine_params p = ss_engine_default_params();
    p.model = model;
    p.tp = tp;
    p.pp = pp;
    p.dtype = dt;
    p.cache_dir = te_cache;
    p.quiet = 1;
    char *dir = NULL;
    ss_err err;
    ss_status st = ss_engine_prepare(&p, &dir, &err);
    if (st != SS_OK)
        fail_msg("prepare %s tp %d pp %d: %s", model, tp, pp, err.msg);
    return dir;
}

/* The llama3-gqa fixture's numbers (config.json): the expected cut, written out independently. */
enum { G_VOCAB = 512, G_DIM = 128, G_INTER = 352, G_LAYERS = 4, G_HEADS = 8, G_KV = 2, G_HD = 16 };

typedef struct te_cut {
    int held;           /* 0: not in this rank's file */
    int cols;           /* 1: column range, 0: row range */
    int64_t start, len; /* len -1: whole tensor */
} te_cut;

static te_cut te_expect(const char *name, int tp, int pp, int rank)
{
    te_cut none = {0, 0, 0, 0}, full = {1, 0, 0, -1};
    int tr = rank % tp, stage = rank / tp;
    int per = G_LAYERS / pp, l0 = stage * per, l1 = l0 + per;
    int qh = G_HEADS / tp, kvh = G_KV >= tp ? G_KV / tp : 1;
    int kv0 = G_KV >= tp ? tr * kvh : tr / (tp / G_KV);
    int vper = (G_VOCAB + tp - 1) / tp, inter = G_INTER / tp;
    if (!strcmp(name, "model.embed_tokens.weight"))
        return stage == 0 ? (te_cut){1, 0, (int64_t)tr * vper, vper} : none;
    if (!strcmp(name, "lm_head.weight"))
        return stage == pp - 1 ? (te_cut){1, 0, (int64_t)tr * vper, vper} : none;
    if (!strcmp(name, "model.norm.weight"))
        return stage == pp - 1 ? full : none;
    int layer = -1, n = 0;
    char rest[128];
    if (sscanf(name, "model.layers.%d.%127s%n", &layer, rest, &n) != 2 || layer < l0 || layer >= l1)
        return none;
    if (strstr(rest, "layernorm"))
        return full;
    if (!strcmp(rest, "self_attn.q_proj.weight"))
        return (te_cut){1, 0, (int64_t)tr * qh * G_HD, qh * G_HD};
    if (!strcmp(rest, "self_attn.k_proj.weight") || !strcmp(rest, "self_attn.v_proj.weight"))
        return (te_cut){1, 0, (int64_t)kv0 * G_HD, kvh * G_HD};
    if (!strcmp(rest, "self_attn.o_proj.weight"))
        return (te_cut){1, 1, (int64_t)tr * qh * G_HD, qh * G_HD};
    if (!strcmp(rest, "mlp.gate_proj.weight") || !strcmp(rest, "mlp.up_proj.weight"))
        return (te_cut){1, 0, (int64_t)tr * inter, inter};
    if (!strcmp(rest, "mlp.down_proj.weight"))
        return (te_cut){1, 1, (int64_t)tr * inter, inter};
    return none;
}

static void te_check_engine(const char *dir, int tp, int pp)
{
    char src[512];
    snprintf(src, sizeof src, "%s/models/llama3-gqa/model.safetensors", SS_FIXTURES);
    ss_st_file *sf = NULL;
    ss_err err;
    assert_int_equal(ss_st_open(src, &sf, &err), SS_OK);
    for (int r = 0; r < tp * pp; r++) {
        char path[4096];
        assert_int_equal(ss_engine_rank_path(dir, r, path, sizeof path, &err), SS_OK);
        ss_st_file *rf = NULL;
        if (ss_st_open(path, &rf, &err) != SS_OK)
            fail_msg("%s", err.msg);
        size_t expected = 0;
        for (size_t i = 0; i < ss_st_count(sf); i++) {
            const ss_st_tensor *s = ss_st_at(sf, i);
            te_cut cut = te_expect(s->name, tp, pp, r);
            const ss_st_tensor *t = ss_st_find(rf, s->name);
            if (!cut.held) {
                if (t)
                    fail_msg("rank %d holds %s, which belongs elsewhere", r, s->name);
                continue;
            }
            expected++;
            if (!t)
                fail_msg("rank %d lacks %s", r, s->name);
            assert_int_equal(t->dtype, SS_DTYPE_BF16);
            int64_t rows = s->shape[0], cols = s->ndim == 2 ? s->shape[1] : 1;
            int64_t r0 = 0, nr = rows, c0 = 0, nc = cols;
            if (cut.len >= 0 && cut.cols) {
                c0 = cut.start;
                nc = cut.len;
            } else if (cut.len >= 0) {
                r0 = cut.start;
                nr = cut.len;
            }
            assert_int_equal(t->shape[0], nr);
            if (s->ndim == 2)
                assert_int_equal(t->shape[1], nc);
            const uint16_t *a = s->data, *b = t->data;
            for (int64_t i0 = 0; i0 < nr; i0++)
                if (memcmp(b + i0 * nc, a + (r0 + i0) * cols + c0, (size_t)nc * 2))
                    fail_msg("rank %d %s: row %lld differs from the source slice", r, s->name, (long long)i0);
        }
        assert_int_equal(ss_st_count(rf), expected);
        ss_st_close(rf);
    }
    ss_st_close(sf);
}

static void test_slices_exact(void **state)
{
    (void)state;
    char model[512];
    snprintf(model, sizeof model, "%s/models/llama3-gqa", SS_FIXTURES);
    static const int shapes[][2] = {{1, 1}, {2, 1}, {2, 2}, {1, 4}, {4, 1}};
    for (size_t i = 0; i < sizeof shapes / sizeof shapes[0]; i++) {
        char *dir = te_prepare(model, shapes[i][0], shapes[i][1], SS_DTYPE_BF16);
        te_check_engine(dir, shapes[i][0], shapes[i][1]);
        ss_err err;
        assert_int_equal(ss_engine_verify(dir, SS_ENGINE_VERIFY_FULL, &err), SS_OK);
        ss_free(dir);
    }
}

static void test_reuse_verify_damage(void **state)
{
    (void)state;
    char model[512];
    snprintf(model, sizeof model, "%s/models/llama3-gqa", SS_FIXTURES);
    char *dir = te_prepare(model, 2, 2, SS_DTYPE_BF16);
    char man[4200];
    snprintf(man, sizeof man, "%s/manifest.json", dir);
    struct stat a, b;
    assert_int_equal(stat(man, &a), 0);
    char *again = te_prepare(model, 2, 2, SS_DTYPE_BF16);
    assert_string_equal(dir, again);
    assert_int_equal(stat(man, &b), 0);
    assert_int_equal(a.st_ino, b.st_ino); /* reused, not rebuilt */
    assert_int_equal(a.st_mtim.tv_nsec, b.st_mtim.tv_nsec);
    /* Flip one byte in the middle of rank 2's data. */
    char path[4096];
    ss_err err;
    assert_int_equal(ss_engine_rank_path(dir, 2, path, sizeof path, &err), SS_OK);
    FILE *f = fopen(path, "r+b");
    assert_non_null(f);
    fseek(f, 0, SEEK_END);
    long mid = ftell(f) / 2;
    fseek(f, mid, SEEK_SET);
    int c = fgetc(f);
    fseek(f, mid, SEEK_SET);
    fputc(c ^ 0x10, f);
    fclose(f);
    assert_int_equal(ss_engine_verify(dir, SS_ENGINE_VERIFY_SIZES, &err), SS_OK);
    assert_int_equal(ss_engine_verify(dir, SS_ENGINE_VERIFY_FULL, &err), SS_ERR_MISMATCH);
    assert_non_null(strstr(err.msg, "rank-00002.safetensors"));
    /* prepare with a full check rebuilds it. */
    ss_engine_params p = ss_engine_default_params();
    p.model = model;
    p.tp = 2;
    p.pp = 2;
    p.cache_dir = te_cache;
    p.quiet = 1;
    p.verify = SS_ENGINE_VERIFY_FULL;
    char *rebuilt = NULL;
    assert_int_equal(ss_engine_prepare(&p, &rebuilt, &err), SS_OK);
    assert_string_equal(rebuilt, dir);
    assert_int_equal(ss_engine_verify(dir, SS_ENGINE_VERIFY_FULL, &err), SS_OK);
    /* A missing rank file is named too. */
    unlink(path);
    assert_int_equal(ss_engine_verify(dir, SS_ENGINE_VERIFY_SIZES, &err), SS_ERR_NOT_FOUND);
    assert_non_null(strstr(err.msg, "rank-00002.safetensors"));
    assert_int_equal(ss_engine_rank_path("/e", 12, path, sizeof path, &err), SS_OK);
    assert_string_equal(path, "/e/rank-00012.safetensors");
    assert_int_equal(ss_engine_rank_path("/e", 1, path, 8, &err), SS_ERR_INVALID_ARG);
    ss_free(dir);
    ss_free(again);
    ss_free(rebuilt);
}

static void test_fp32_and_tied(void **state)
{
    (void)state;
    char model[512], src[600];
    snprintf(model, sizeof model, "%s/models/mistral-tied-mqa", SS_FIXTURES);
    snprintf(src, sizeof src, "%s/model.safetensors", model);
    char *dir = te_prepare(model, 1, 2, SS_DTYPE_F32);
    ss_err err;
    ss_st_file *sf = NULL, *last = NULL;
    assert_int_equal(ss_st_open(src, &sf, &err), SS_OK);
    char path[4096];
    assert_int_equal(ss_engine_rank_path(dir, 1, path, sizeof path, &err), SS_OK);
    assert_int_equal(ss_st_open(path, &last, &err), SS_OK);
    /* Tied: the last stage holds the embedding (its lm_head) under the checkpoint's name. */
    const ss_st_tensor *e = ss_st_find(last, "model.embed_tokens.weight");
    const ss_st_tensor *s = ss_st_find(sf, "model.embed_tokens.weight");
    assert_non_null(e);
    assert_non_null(s);
    assert_null(ss_st_find(last, "lm_head.weight"));
    assert_int_equal(e->dtype, SS_DTYPE_F32);
    assert_int_equal(e->shape[0], s->shape[0]);
    const uint16_t *h = s->data;
    const float *f = e->data;
    for (int64_t i = 0; i < s->shape[0] * s->shape[1]; i++)
        if (f[i] != ss_bf16_to_f32(h[i]))
            fail_msg("element %lld: %g != %g", (long long)i, f[i], ss_bf16_to_f32(h[i]));
    ss_st_close(last);
    ss_st_close(sf);
    ss_free(dir);
}

static void test_local_key(void **state)
{
    (void)state;
    char model[512];
    snprintf(model, sizeof model, "%s/models/llama3-gqa", SS_FIXTURES);
    char k1[33], k2[33];
    ss_manifest_file *f = NULL;
    size_t n = 0;
    ss_err err;
    assert_int_equal(ss_cache_local_digest(model, k1, &f, &n, &err), SS_OK);
    assert_int_equal(n, 3); /* config.json, generation_config.json, model.safetensors */
    assert_string_equal(f[2].name, "model.safetensors");
    assert_int_equal(strncmp(f[2].digest, "header-sha256:", 14), 0);
    ss_cache_files_free(f, n);
    assert_int_equal(ss_cache_local_digest(model, k2, &f, &n, &err), SS_OK);
    assert_string_equal(k1, k2);
    ss_cache_files_free(f, n);
    assert_int_equal(ss_cache_local_digest("/no/such/dir", k2, &f, &n, &err), SS_ERR_NOT_FOUND);
    char dir[4096], lock[4096];
    assert_int_equal(ss_cache_engine_dir("/c", "org--m", "abc", 2, 4, SS_DTYPE_F16, dir, sizeof dir, lock, sizeof lock,
                                         &err), SS_OK);
    assert_string_equal(dir, "/c/engines/org--m/abc/tp2-pp4-fp16");
    assert_string_equal(lock, "/c/engines/org--m/abc/tp2-pp4-fp16.lock");
    /* Bad inputs to prepare. */
    ss_engine_params p = ss_engine_default_params();
    p.cache_dir = te_cache;
    p.quiet = 1;
    char *out = NULL;
    p.model = "/no/such/folder";
    assert_int_equal(ss_engine_prepare(&p, &out, &err), SS_ERR_NOT_FOUND);
    assert_non_null(strstr(err.msg, "/no/such/folder"));
    p.model = model;
    p.tp = 3;
    assert_int_equal(ss_engine_prepare(&p, &out, &err), SS_ERR_INVALID_ARG);
    assert_non_null(strstr(err.msg, "tp 3"));
    assert_null(out);
}

/* A copy of llama3-gqa (its weights linked) whose config.json has `from` replaced by `to`; returns the folder. */
static void te_model_with(const char *from, const char *to, char *dir, size_t cap)
{
    char src[512], path[600], *text = NULL;
    size_t len = 0;
    ss_err err;
    snprintf(dir, cap, "%s/model-XXXXXX", te_cache);
    assert_non_null(mkdtemp(dir));
    snprintf(src, sizeof src, "%s/models/llama3-gqa/config.json", SS_FIXTURES);
    assert_int_equal(ss_read_file(src, 1 << 20, &text, &len, &err), SS_OK);
    char *at = strstr(text, from);
    assert_non_null(at);
    snprintf(path, sizeof path, "%s/config.json", dir);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fprintf(f, "%.*s%s%s", (int)(at - text), text, to, at + strlen(from));
    fclose(f);
    ss_free(text);
    snprintf(src, sizeof src, "%s/models/llama3-gqa/model.safetensors", SS_FIXTURES);
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    assert_int_equal(symlink(src, path), 0);
}

/* A config that disagrees with the weights is refused before any engine is written, naming the tensor, as loading the
 * checkpoint directly refuses it (helper-79: the tensors were cut to the config's sizes, or a missing one went
 * unnoticed, and the engine was published). */
static void test_config_mismatch(void **state)
{
    (void)state;
    static const struct {
        const char *from, *to;
        ss_status st;
        const char *says;
    } cases[] = {
        {"\"intermediate_size\": 352", "\"intermediate_size\": 256", SS_ERR_FORMAT,
         "tensor 'model.layers.0.mlp.gate_proj.weight': shape [352,128], expected [256,128]"},
        {"\"vocab_size\": 512", "\"vocab_size\": 256", SS_ERR_FORMAT,
         "tensor 'model.embed_tokens.weight': shape [512,128], expected [256,128]"},
        {"\"num_key_value_heads\": 2", "\"num_key_value_heads\": 1", SS_ERR_FORMAT,
         "tensor 'model.layers.0.self_attn.k_proj.weight': shape [32,128], expected [16,128]"},
        {"\"num_hidden_layers\": 4", "\"num_hidden_layers\": 6", SS_ERR_NOT_FOUND,
         "tensor 'model.layers.4.input_layernorm.weight' is missing"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        for (int tp = 1; tp <= 2; tp++) {
            char model[512];
            te_model_with(cases[i].from, cases[i].to, model, sizeof model);
            ss_engine_params p = ss_engine_default_params();
            p.model = model;
            p.tp = tp;
            p.cache_dir = te_cache;
            p.quiet = 1;
            char *out = NULL;
            ss_err err;
            ss_status st = ss_engine_prepare(&p, &out, &err);
            if (st != cases[i].st || !strstr(err.msg, cases[i].says))
                fail_msg("%s, tp %d: status %d: %s", cases[i].to, tp, (int)st, err.msg);
            assert_null(out);
        }
    }
}

/* Weights rewritten in place (same header, same size) give a new key: the safetensors file's time is in it
 * (helper-79: the stale engine was reused). */
static void test_local_key_mtime(void **state)
{
    (void)state;
    char model[512], path[600], k1[33], k2[33];
    te_model_with("\"vocab_size\": 512", "\"vocab_size\": 512", model, sizeof model);
    snprintf(path, sizeof path, "%s/model.safetensors", model);
    assert_int_equal(unlink(path), 0); /* a file of its own, not the fixture's link */
    char src[512], *bytes = NULL;
    size_t len = 0;
    ss_err err;
    snprintf(src, sizeof src, "%s/models/llama3-gqa/model.safetensors", SS_FIXTURES);
    assert_int_equal(ss_read_file(src, 64 << 20, &bytes, &len, &err), SS_OK);
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(bytes, 1, len, f), len);
    fclose(f);
    ss_free(bytes);
    ss_manifest_file *files = NULL;
    size_t n = 0;
    const struct timespec t1[2] = {{1700000000, 0}, {1700000000, 0}}, t2[2] = {{1700000000, 0}, {1700000001, 5}};
    assert_int_equal(utimensat(AT_FDCWD, path, t1, 0), 0);
    assert_int_equal(ss_cache_local_digest(model, k1, &files, &n, &err), SS_OK);
    ss_cache_files_free(files, n);
    assert_int_equal(utimensat(AT_FDCWD, path, t2, 0), 0);
    assert_int_equal(ss_cache_local_digest(model, k2, &files, &n, &err), SS_OK);
    ss_cache_files_free(files, n);
    assert_string_not_equal(k1, k2);
    assert_int_equal(utimensat(AT_FDCWD, path, t1, 0), 0);
    assert_int_equal(ss_cache_local_digest(model, k2, &files, &n, &err), SS_OK);
    ss_cache_files_free(files, n);
    assert_string_equal(k1, k2);
}

/* A config edited inside a built engine (same size) is caught by the full check (helper-79: config and tokenizer files
 * had sizes only), and the manifest carries their digests. */
static void test_extras_digested(void **state)
{
    (void)state;
    char model[512], path[600];
    snprintf(model, sizeof model, "%s/models/llama3-gqa", SS_FIXTURES);
    char *dir = te_prepare(model, 1, 1, SS_DTYPE_BF16);
    ss_err err;
    assert_int_equal(ss_engine_verify(dir, SS_ENGINE_VERIFY_FULL, &err), SS_OK);
    snprintf(path, sizeof path, "%s/config.json", dir);
    char *text = NULL;
    size_t len = 0;
    assert_int_equal(ss_read_file(path, 1 << 20, &text, &len, &err), SS_OK);
    char *at = strstr(text, "\"rms_norm_eps\": 1e-05");
    assert_non_null(at);
    at[strlen("\"rms_norm_eps\": 1e-0")] = '9';
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    assert_int_equal(fwrite(text, 1, len, f), len);
    fclose(f);
    ss_free(text);
    assert_int_equal(ss_engine_verify(dir, SS_ENGINE_VERIFY_SIZES, &err), SS_OK);
    assert_int_equal(ss_engine_verify(dir, SS_ENGINE_VERIFY_FULL, &err), SS_ERR_MISMATCH);
    assert_non_null(strstr(err.msg, "config.json: sha256"));
    ss_free(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_slices_exact),
        cmocka_unit_test(test_reuse_verify_damage),
        cmocka_unit_test(test_fp32_and_tied),
        cmocka_unit_test(test_local_key),
        cmocka_unit_test(test_config_mismatch),
        cmocka_unit_test(test_local_key_mtime),
        cmocka_unit_test(test_extras_digested),
    };
    return cmocka_run_group_tests(tests, te_setup, te_teardown);
}

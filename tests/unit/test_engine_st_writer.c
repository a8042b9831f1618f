/* test_engine_st_writer.c — the streaming safetensors writer: exact bytes of a small file, round trip
 * through the reader (ss_st_open) with a tiny buffer, the file's sha256 and quick digest, and misuse errors. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/alloc.h"
#include "engine/cache.h"
#include "engine/digest.h"
#include "engine/st_writer.h"
#include "model/safetensors.h"

static char tw_dir[256];

static int tw_setup(void **state)
{
    (void)state;
    snprintf(tw_dir, sizeof tw_dir, "/tmp/ss-test-stw.XXXXXX");
    return mkdtemp(tw_dir) ? 0 : -1;
}

static int tw_teardown(void **state)
{
    (void)state;
    ss_err e;
    return ss_cache_rmtree(tw_dir, &e) == SS_OK ? 0 : -1;
}

static unsigned char *tw_read(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    unsigned char *b = malloc((size_t)n + 1);
    *len = fread(b, 1, (size_t)n, f);
    fclose(f);
    return b;
}

static void test_exact_bytes(void **state)
{
    (void)state;
    char path[300];
    snprintf(path, sizeof path, "%s/exact.safetensors", tw_dir);
    ss_st_entry e[2] = {{"a", SS_DTYPE_F32, 1, {2}}, {"b", SS_DTYPE_BF16, 2, {1, 3}}};
    ss_st_kv meta[1] = {{"format", "pt"}};
    ss_st_writer *w = NULL;
    ss_err err;
    assert_int_equal(ss_st_writer_create(path, e, 2, meta, 1, NULL, &w, &err), SS_OK);
    float a[2] = {1.0f, -2.0f};
    uint16_t b[3] = {0x3f80, 0x4000, 0xc040};
    assert_int_equal(ss_st_writer_append(w, a, sizeof a, &err), SS_OK);
    assert_int_equal(ss_st_writer_current(w), 1);
    assert_int_equal(ss_st_writer_append(w, b, sizeof b, &err), SS_OK);
    assert_int_equal(ss_st_writer_current(w), 2);
    char hex[SS_SHA256_HEX];
    int64_t size = 0;
    assert_int_equal(ss_st_writer_finish(w, hex, &size, &err), SS_OK);
    char quick[SS_QUICK_DIGEST_LEN];
    ss_st_writer_quick_digest(w, quick);
    ss_st_writer_destroy(w);

    const char *json = "{\"__metadata__\":{\"format\":\"pt\"},\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
                       "\"b\":{\"dtype\":\"BF16\",\"shape\":[1,3],\"data_offsets\":[8,14]}}";
    size_t jl = strlen(json), padded = (jl + 7) / 8 * 8;
    size_t len = 0;
    unsigned char *got = tw_read(path, &len);
    assert_non_null(got);
    assert_int_equal(len, 8 + padded + 14);
    assert_int_equal((int64_t)len, size);
    uint64_t hl = 0;
    for (int i = 7; i >= 0; i--)
        hl = (hl << 8) | got[i];
    assert_int_equal(hl, padded);
    assert_memory_equal(got + 8, json, jl);
    for (size_t i = jl; i < padded; i++)
        assert_int_equal(got[8 + i], ' ');
    assert_memory_equal(got + 8 + padded, a, 8);
    assert_memory_equal(got + 8 + padded + 8, b, 6);
    char hex2[SS_SHA256_HEX];
    assert_int_equal(ss_sha256_file(path, hex2, &err), SS_OK);
    assert_string_equal(hex, hex2);
    ss_quick_digest *q = NULL; /* the quick digest is the whole file's, header included */
    assert_int_equal(ss_quick_digest_create(&q, &err), SS_OK);
    assert_int_equal(ss_quick_digest_update(q, got, len, &err), SS_OK);
    char quick2[SS_QUICK_DIGEST_LEN];
    ss_quick_digest_text(q, quick2);
    ss_quick_digest_destroy(q);
    assert_true(ss_quick_digest_valid(quick));
    assert_string_equal(quick, quick2);
    free(got);
}

static void test_roundtrip_small_buffer(void **state)
{
    (void)state;
    char path[300];
    snprintf(path, sizeof path, "%s/rt.safetensors", tw_dir);
    enum { N1 = 100003, N2 = 7, N3 = 4096 };
    uint16_t *t1 = malloc(N1 * 2);
    float t2[N2];
    uint16_t *t3 = malloc(N3 * 2);
    for (int i = 0; i < N1; i++)
        t1[i] = (uint16_t)(i * 2654435761u >> 7);
    for (int i = 0; i < N2; i++)
        t2[i] = (float)i * 0.5f;
    for (int i = 0; i < N3; i++)
        t3[i] = (uint16_t)(i ^ 0x5a5a);
    /* A name that needs JSON escapes. */
    ss_st_entry e[3] = {{"model.x\"y\\z.weight", SS_DTYPE_BF16, 1, {N1}},
                        {"t2", SS_DTYPE_F32, 1, {N2}},
                        {"t3", SS_DTYPE_F16, 2, {64, 64}}};
    ss_st_writer_params p = ss_st_writer_default_params();
    p.buffer_bytes = 4096;
    p.sync = 0;
    ss_st_writer *w = NULL;
    ss_err err;
    assert_int_equal(ss_st_writer_create(path, e, 3, NULL, 0, &p, &w, &err), SS_OK);
    /* One stream of bytes cut at odd places, crossing tensor boundaries. */
    size_t total = N1 * 2 + sizeof t2 + N3 * 2;
    unsigned char *all = malloc(total);
    memcpy(all, t1, N1 * 2);
    memcpy(all + N1 * 2, t2, sizeof t2);
    memcpy(all + N1 * 2 + sizeof t2, t3, N3 * 2);
    size_t off = 0, step = 1;
    while (off < total) {
        size_t n = step < total - off ? step : total - off;
        if (step % 3 == 0) { /* zero-copy path */
            void *dst = NULL;
            size_t got = 0;
            assert_int_equal(ss_st_writer_reserve(w, n, &dst, &got, &err), SS_OK);
            assert_true(got > 0 && got <= n);
            memcpy(dst, all + off, got);
            assert_int_equal(ss_st_writer_commit(w, got, &err), SS_OK);
            n = got;
        } else {
            assert_int_equal(ss_st_writer_append(w, all + off, n, &err), SS_OK);
        }
        off += n;
        step = step * 7 % 9001 + 1;
    }
    assert_int_equal(ss_st_writer_finish(w, NULL, NULL, &err), SS_OK);
    ss_st_writer_destroy(w);

    ss_st_file *f = NULL;
    assert_int_equal(ss_st_open(path, &f, &err), SS_OK);
    assert_int_equal(ss_st_count(f), 3);
    const ss_st_tensor *a = ss_st_find(f, "model.x\"y\\z.weight");
    assert_non_null(a);
    assert_int_equal(a->dtype, SS_DTYPE_BF16);
    assert_int_equal(a->ndim, 1);
    assert_int_equal(a->shape[0], N1);
    assert_memory_equal(a->data, t1, N1 * 2);
    const ss_st_tensor *b = ss_st_find(f, "t2");
    assert_non_null(b);
    assert_int_equal(b->dtype, SS_DTYPE_F32);
    assert_memory_equal(b->data, t2, sizeof t2);
    const ss_st_tensor *c = ss_st_find(f, "t3");
    assert_non_null(c);
    assert_int_equal(c->dtype, SS_DTYPE_F16);
    assert_int_equal(c->ndim, 2);
    assert_int_equal(c->shape[1], 64);
    assert_memory_equal(c->data, t3, N3 * 2);
    ss_st_close(f);
    free(all);
    free(t1);
    free(t3);
}

static void test_misuse(void **state)
{
    (void)state;
    char path[300];
    snprintf(path, sizeof path, "%s/bad.safetensors", tw_dir);
    ss_err err;
    ss_st_writer *w = NULL;
    ss_st_entry dup[2] = {{"x", SS_DTYPE_F32, 1, {1}}, {"x", SS_DTYPE_F32, 1, {1}}};
    assert_int_equal(ss_st_writer_create(path, dup, 2, NULL, 0, NULL, &w, &err), SS_ERR_INVALID_ARG);
    assert_non_null(strstr(err.msg, "duplicate tensor x"));
    ss_st_entry reserved[1] = {{"__metadata__", SS_DTYPE_F32, 1, {1}}};
    assert_int_equal(ss_st_writer_create(path, reserved, 1, NULL, 0, NULL, &w, &err), SS_ERR_INVALID_ARG);
    ss_st_entry neg[1] = {{"n", SS_DTYPE_F32, 1, {-3}}};
    assert_int_equal(ss_st_writer_create(path, neg, 1, NULL, 0, NULL, &w, &err), SS_ERR_INVALID_ARG);

    ss_st_entry one[1] = {{"x", SS_DTYPE_F32, 1, {2}}};
    assert_int_equal(ss_st_writer_create(path, one, 1, NULL, 0, NULL, &w, &err), SS_OK);
    float v[3] = {1, 2, 3};
    assert_int_equal(ss_st_writer_append(w, v, sizeof v, &err), SS_ERR_INVALID_ARG);
    assert_int_equal(ss_st_writer_append(w, v, 4, &err), SS_OK);
    assert_int_equal(ss_st_writer_finish(w, NULL, NULL, &err), SS_ERR_INVALID_ARG);
    assert_non_null(strstr(err.msg, "4 of 8 data bytes"));
    ss_st_writer_destroy(w); /* not finished: the partial file is removed */
    assert_int_equal(access(path, F_OK), -1);

    char nodir[300];
    snprintf(nodir, sizeof nodir, "%s/no/such/dir/x.safetensors", tw_dir);
    assert_int_equal(ss_st_writer_create(nodir, one, 1, NULL, 0, NULL, &w, &err), SS_ERR_IO);
    assert_non_null(strstr(err.msg, nodir));
}

static void test_alloc_failures(void **state)
{
    (void)state;
    char path[300];
    snprintf(path, sizeof path, "%s/oom.safetensors", tw_dir);
    ss_st_entry one[2] = {{"x", SS_DTYPE_F32, 1, {2}}, {"y", SS_DTYPE_BF16, 1, {2}}};
    ss_st_kv meta[1] = {{"k", "v"}};
    int ok = 0;
    for (long n = 0; n < 64 && !ok; n++) {
        ss_err err;
        ss_st_writer *w = NULL;
        ss_alloc_fail_after(n);
        ss_status st = ss_st_writer_create(path, one, 2, meta, 1, NULL, &w, &err);
        ss_alloc_fail_after(-1);
        if (st == SS_OK) {
            ok = 1;
            ss_st_writer_destroy(w);
        } else {
            assert_int_equal(st, SS_ERR_NOMEM);
        }
    }
    assert_true(ok);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_exact_bytes),
        cmocka_unit_test(test_roundtrip_small_buffer),
        cmocka_unit_test(test_misuse),
        cmocka_unit_test(test_alloc_failures),
    };
    return cmocka_run_group_tests(tests, tw_setup, tw_teardown);
}

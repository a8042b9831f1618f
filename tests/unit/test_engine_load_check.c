/* test_engine_load_check.c — the quick digest (known answers, validity) and the load check, over bytes in memory and
 * by path: a good file passes, a flipped bit fails naming the file, a missing file, an early cancel. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "engine/cache.h"
#include "engine/load_check.h"
#include "engine/quick_digest.h"

static char lc_dir[256];

static int lc_setup(void **state)
{
    (void)state;
    snprintf(lc_dir, sizeof lc_dir, "/tmp/ss-test-lc.XXXXXX");
    return mkdtemp(lc_dir) ? 0 : -1;
}

static int lc_teardown(void **state)
{
    (void)state;
    ss_err e;
    return ss_cache_rmtree(lc_dir, &e) == SS_OK ? 0 : -1;
}

static void lc_digest_of(const void *data, size_t len, char out[SS_QUICK_DIGEST_LEN])
{
    ss_quick_digest *q = NULL;
    ss_err err;
    assert_int_equal(ss_quick_digest_create(&q, &err), SS_OK);
    assert_int_equal(ss_quick_digest_update(q, data, len, &err), SS_OK);
    ss_quick_digest_text(q, out);
    ss_quick_digest_destroy(q);
}

/* XXH3-128's published values (xxhsum -H2): the text is the canonical big-endian form, so the same on every host. */
static void test_known_answers(void **state)
{
    (void)state;
    char d[SS_QUICK_DIGEST_LEN];
    lc_digest_of("", 0, d);
    assert_string_equal(d, "xxh3-128:99aa06d3014798d86001c324468d497f");
    lc_digest_of("abc", 3, d);
    assert_string_equal(d, "xxh3-128:06b05ab6733a618578af5f94892f3950");
    /* fed in pieces: the same as at once */
    static uint8_t big[1 << 16];
    for (size_t i = 0; i < sizeof big; i++)
        big[i] = (uint8_t)(i * 2654435761u >> 13);
    char whole[SS_QUICK_DIGEST_LEN];
    lc_digest_of(big, sizeof big, whole);
    ss_quick_digest *q = NULL;
    ss_err err;
    assert_int_equal(ss_quick_digest_create(&q, &err), SS_OK);
    for (size_t off = 0; off < sizeof big; off += 1000)
        assert_int_equal(ss_quick_digest_update(q, big + off, sizeof big - off < 1000 ? sizeof big - off : 1000, &err),
                         SS_OK);
    ss_quick_digest_text(q, d);
    ss_quick_digest_destroy(q);
    assert_string_equal(d, whole);
}

static void test_valid(void **state)
{
    (void)state;
    assert_true(ss_quick_digest_valid("xxh3-128:99aa06d3014798d86001c324468d497f"));
    assert_false(ss_quick_digest_valid(NULL));
    assert_false(ss_quick_digest_valid(""));
    assert_false(ss_quick_digest_valid("xxh3-128:99aa06d3014798d86001c324468d497"));   /* 31 digits */
    assert_false(ss_quick_digest_valid("xxh3-128:99aa06d3014798d86001c324468d497f0")); /* 33 */
    assert_false(ss_quick_digest_valid("xxh3-128:99AA06d3014798d86001c324468d497f"));  /* upper case */
    assert_false(ss_quick_digest_valid("xxh3-128:99aa06d3014798d86001c324468d497g"));
    assert_false(ss_quick_digest_valid("sha256:99aa06d3014798d86001c324468d497f"));
}

/* n pseudo-random bytes (more than the check's 8 MiB step), also written to dir/name; their digest into d. */
static uint8_t *lc_bytes(const char *name, size_t n, char path[300], char d[SS_QUICK_DIGEST_LEN])
{
    snprintf(path, 300, "%s/%s", lc_dir, name);
    uint8_t *b = malloc(n);
    assert_non_null(b);
    uint32_t x = 12345;
    for (size_t i = 0; i < n; i++)
        b[i] = (uint8_t)((x = x * 1664525u + 1013904223u) >> 24);
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(b, 1, n, f), n);
    fclose(f);
    lc_digest_of(b, n, d);
    return b;
}

static void test_check(void **state)
{
    (void)state;
    char path[300], d[SS_QUICK_DIGEST_LEN];
    const size_t n = (9u << 20) + 77;
    uint8_t *b = lc_bytes("rank.safetensors", n, path, d);
    ss_load_check *c = NULL;
    ss_err err = {{0}};
    assert_int_equal(ss_load_check_start(b, n, path, d, &c, &err), SS_OK);
    assert_int_equal(ss_load_check_finish(c, &err), SS_OK);
    assert_int_equal(ss_load_check_file(path, d, &err), SS_OK);

    /* one flipped bit past the first step: a mismatch naming the file, both digests and the way out */
    b[n - 5] ^= 1;
    assert_int_equal(ss_load_check_start(b, n, path, d, &c, &err), SS_OK);
    assert_int_equal(ss_load_check_finish(c, &err), SS_ERR_MISMATCH);
    assert_non_null(strstr(err.msg, path));
    assert_non_null(strstr(err.msg, d));
    assert_non_null(strstr(err.msg, "damaged engine file"));
    assert_non_null(strstr(err.msg, "--verify full"));
    char msg[sizeof err.msg];
    snprintf(msg, sizeof msg, "%s", err.msg);
    /* the same by path, over the file flipped alike: the same message */
    FILE *f = fopen(path, "r+b");
    assert_non_null(f);
    fseek(f, (long)(n - 5), SEEK_SET);
    fputc(b[n - 5], f);
    fclose(f);
    assert_int_equal(ss_load_check_file(path, d, &err), SS_ERR_MISMATCH);
    assert_string_equal(err.msg, msg);

    /* a file that is gone: an error naming it */
    char gone[300];
    snprintf(gone, sizeof gone, "%s/gone.safetensors", lc_dir);
    assert_int_equal(ss_load_check_file(gone, d, &err), SS_ERR_NOT_FOUND);
    assert_non_null(strstr(err.msg, gone));

    /* cancelled while hashing (the caller gives up): returns, frees (ASan sees leaks) */
    assert_int_equal(ss_load_check_start(b, n, path, d, &c, &err), SS_OK);
    ss_load_check_cancel(c);
    ss_load_check_cancel(NULL);
    /* an empty file: the digest of nothing */
    assert_int_equal(ss_load_check_start(b, 0, path, "xxh3-128:99aa06d3014798d86001c324468d497f", &c, &err), SS_OK);
    assert_int_equal(ss_load_check_finish(c, &err), SS_OK);
    free(b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_known_answers),
        cmocka_unit_test(test_valid),
        cmocka_unit_test(test_check),
    };
    return cmocka_run_group_tests(tests, lc_setup, lc_teardown);
}

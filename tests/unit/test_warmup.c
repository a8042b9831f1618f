/* test_warmup.c — the warm-up's request plan (serve/warmup.c): simulated step by step, the decode batch must run
 * through exactly the graph sizes, largest first, each once, with the real bucket rule (ss_forward_graph_pad). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "model/forward.h"
#include "serve/warmup.h"

/* ctx: the bucket (int32_t); -1: no graphs at all */
static int32_t rows_bucket(const void *ctx, int32_t n)
{
    const int32_t bucket = *(const int32_t *)ctx;
    return bucket < 0 ? 0 : (int32_t)ss_forward_graph_pad(n, bucket);
}

/* Runs the plan: the batch of decode step t is the requests with more than t + 1 tokens to make. Checks it against
 * the sizes b <= n whose pad is b, descending, and returns the step count. */
static int32_t check_plan(int32_t n, int32_t bucket)
{
    int32_t max_tokens[256];
    const int32_t steps = ss_warmup_plan(n, rows_bucket, &bucket, max_tokens);
    int32_t want[256], n_want = 0;
    for (int32_t b = n; b >= 1; b--)
        if (rows_bucket(&bucket, b) == b)
            want[n_want++] = b;
    assert_int_equal(steps, n_want);
    for (int32_t t = 0; t < steps; t++) {
        int32_t batch = 0, prefix = 1; /* the ones still decoding are requests 0..batch-1 */
        for (int32_t i = 0; i < n; i++) {
            const int alive = max_tokens[i] - 1 > t;
            assert_true(!alive || prefix);
            prefix = prefix && alive;
            batch += alive;
        }
        assert_int_equal(batch, want[t]);
    }
    for (int32_t i = 0; i < n; i++)
        assert_true(max_tokens[i] >= 1);
    return steps;
}

static void test_buckets_of_eight(void **state)
{
    (void)state;
    /* 1, 2, 4, 8, 16, then 24..256: 35 sizes, as the server logs for --max-batch 256 */
    assert_int_equal(check_plan(256, 8), 35);
    /* 250 is no graph size: the first decode step runs at 248; requests 248 and 249 make only their prefill's */
    int32_t bucket = 8, max_tokens[250];
    assert_int_equal(ss_warmup_plan(250, rows_bucket, &bucket, max_tokens), 34);
    assert_int_equal(max_tokens[249], 1);
    assert_int_equal(max_tokens[248], 1);
    assert_int_equal(max_tokens[247], 2);
    assert_int_equal(max_tokens[0], 35);
    assert_int_equal(check_plan(20, 8), 5); /* 20 pads to 24: 16, 8, 4, 2, 1 */
}

static void test_other_buckets(void **state)
{
    (void)state;
    assert_int_equal(check_plan(256, 0), 9);   /* powers of two */
    assert_int_equal(check_plan(256, 64), 10); /* powers of two up to 128 (twice the bucket), then 192, 256 */
    assert_int_equal(check_plan(1, 8), 1);
}

static void test_no_graphs(void **state)
{
    (void)state;
    int32_t bucket = -1, max_tokens[16];
    assert_int_equal(ss_warmup_plan(16, rows_bucket, &bucket, max_tokens), 0);
    for (int i = 0; i < 16; i++)
        assert_int_equal(max_tokens[i], 1);
    assert_int_equal(ss_warmup_plan(0, rows_bucket, &bucket, max_tokens), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_buckets_of_eight),
        cmocka_unit_test(test_other_buckets),
        cmocka_unit_test(test_no_graphs),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

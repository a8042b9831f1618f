/* test_sample_host.c — the host reference of the greedy combine of tp vocabulary shards
 * (ss_greedy_combine_host, the definition of the backend's greedy_combine op) against a whole-row argmax; a
 * row's statistics in chunks (ss_row_chunk_host / ss_row_merge_host) against the whole row's. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <math.h>
#include <string.h>

#include "backend/sample_host.h"

enum { V = 1000, TP = 4, R = 3, STRIDE = 5 };

/* log_softmax of one row into out: the reference, in double, rounded once. */
static void log_softmax(const float *logits, int32_t vocab, float *out)
{
    float mx = -INFINITY;
    for (int32_t i = 0; i < vocab; i++)
        mx = logits[i] > mx ? logits[i] : mx;
    double s = 0;
    for (int32_t i = 0; i < vocab; i++)
        s += exp((double)logits[i] - mx);
    float lse = mx + (float)log(s);
    for (int32_t i = 0; i < vocab; i++)
        out[i] = logits[i] - lse;
}

/* Splits row l (V logits) into TP shards and writes row r of their [TP][3][STRIDE] results as the forward
 * pass makes them: the shard's max, its index in the whole vocabulary, its log-probability in the shard. */
static void shard_results(const float *l, int r, float *g)
{
    const int per = (V + TP - 1) / TP;
    for (int k = 0; k < TP; k++) {
        int lo = k * per, hi = lo + per < V ? lo + per : V;
        float shard[V];
        int best = lo;
        for (int i = lo; i < hi; i++)
            if (l[i] > l[best])
                best = i;
        log_softmax(l + lo, hi - lo, shard);
        float *blk = g + k * 3 * STRIDE;
        blk[r] = l[best];
        int32_t idx = best;
        memcpy(&blk[STRIDE + r], &idx, 4);
        blk[2 * STRIDE + r] = shard[best - lo];
    }
}

/* Random rows, and a row whose max appears in two shards: the token is the first index of the whole row's
 * max, the log-probability that of the whole row's log_softmax. */
static void test_combine_equals_whole_row(void **state)
{
    (void)state;
    static float l[R][V];
    float g[TP * 3 * STRIDE];
    uint32_t x = 12345;
    for (int r = 0; r < R; r++)
        for (int i = 0; i < V; i++) {
            x = x * 1664525u + 1013904223u;
            l[r][i] = (float)(x >> 8) / 16777216.0f * 16.0f - 8.0f;
        }
    l[2][700] = 20.0f, l[2][300] = 20.0f; /* a tie across shards 1 and 2: index 300 wins */
    for (int r = 0; r < R; r++)
        shard_results(l[r], r, g);
    for (int r = 0; r < R; r++) {
        int want = 0;
        for (int i = 1; i < V; i++)
            if (l[r][i] > l[r][want])
                want = i;
        float whole[V];
        log_softmax(l[r], V, whole);
        int32_t tok;
        float lp;
        ss_greedy_combine_host(g, r, STRIDE, TP, &tok, &lp);
        assert_int_equal(tok, want);
        assert_true(fabsf(lp - whole[want]) < 1e-5f);
    }
    int32_t tok;
    float lp;
    ss_greedy_combine_host(g, 2, STRIDE, TP, &tok, &lp);
    assert_int_equal(tok, 300);
}

/* An empty shard (-inf max) never wins; a +inf logit is certain (0); no finite max at all gives -inf, never
 * NaN. */
static void test_combine_degenerate(void **state)
{
    (void)state;
    float g[TP * 3 * STRIDE];
    for (int k = 0; k < TP; k++)
        for (int r = 0; r < STRIDE; r++) {
            float *blk = g + k * 3 * STRIDE;
            blk[r] = (float)k;
            int32_t idx = 100 * k + r;
            memcpy(&blk[STRIDE + r], &idx, 4);
            blk[2 * STRIDE + r] = -1.0f;
        }
    g[3 * 3 * STRIDE + 0] = -INFINITY, g[3 * 3 * STRIDE + 2 * STRIDE + 0] = 0.0f; /* row 0: shard 3 empty */
    g[1 * 3 * STRIDE + 1] = INFINITY;                                              /* row 1: +inf in shard 1 */
    for (int k = 0; k < TP; k++)                                                   /* row 2: nothing finite */
        g[k * 3 * STRIDE + 2] = -INFINITY, g[k * 3 * STRIDE + 2 * STRIDE + 2] = 0.0f;
    int32_t tok;
    float lp;
    ss_greedy_combine_host(g, 0, STRIDE, TP, &tok, &lp);
    assert_int_equal(tok, 200); /* shard 2 has the largest finite max */
    assert_true(isfinite(lp) && lp < 0.0f);
    ss_greedy_combine_host(g, 1, STRIDE, TP, &tok, &lp);
    assert_int_equal(tok, 101);
    assert_true(lp == 0.0f);
    ss_greedy_combine_host(g, 2, STRIDE, TP, &tok, &lp);
    assert_true(lp == -INFINITY);
}

/* A row's statistics in chunks (the host sampling path's threads) merge to the whole row's: the first index of
 * the maximum across chunks (a tie in a later chunk loses), the log-sum-exp of log_softmax; chunks of
 * -inf only (a JSON mask) are skipped; a row of -inf only has no maximum. */
static void test_row_chunks(void **state)
{
    (void)state;
    enum { N = 5003 };
    static float l[N], lp[N];
    for (int i = 0; i < N; i++)
        l[i] = (float)((i * 7919) % 1013) / 97.0f - 5.0f;
    l[1200] = 20.0f, l[4100] = 20.0f; /* the maximum twice, in different chunks */
    for (int i = 2000; i < 3000; i++) /* a masked stretch: one whole chunk and parts of two */
        l[i] = -INFINITY;
    log_softmax(l, N, lp);
    for (int chunk = 1; chunk <= N + 1; chunk = chunk * 3 + 1) {
        ss_row_chunk c[N];
        int32_t nc = 0;
        for (int32_t b = 0; b < N; b += chunk)
            ss_row_chunk_host(l, b, b + chunk < N ? b + chunk : N, &c[nc++]);
        int32_t arg = -1;
        float lse = 0;
        ss_row_merge_host(c, nc, &arg, &lse);
        assert_int_equal(arg, 1200);
        assert_true(fabsf((l[1200] - lse) - lp[1200]) <= 1e-6f);
        assert_true(fabsf((l[17] - lse) - lp[17]) <= 1e-6f);
    }
    for (int i = 0; i < N; i++)
        l[i] = -INFINITY;
    ss_row_chunk c[2];
    ss_row_chunk_host(l, 0, 100, &c[0]);
    ss_row_chunk_host(l, 100, N, &c[1]);
    assert_int_equal(c[0].idx, -1);
    int32_t arg = -1;
    float lse = 0;
    ss_row_merge_host(c, 2, &arg, &lse);
    assert_int_equal(arg, 0);
    assert_true(lse == -INFINITY);
}

int main(void)
{
    const struct CMUnitTest tests[] = {cmocka_unit_test(test_combine_equals_whole_row),
                                       cmocka_unit_test(test_combine_degenerate),
                                       cmocka_unit_test(test_row_chunks)};
    return cmocka_run_group_tests(tests, NULL, NULL);
}

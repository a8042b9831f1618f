/* test_attn_tiles.c — ss_attn_tiles_check: the query tiles of ss_attn_meta against their contract (every token once,
 * runs of one sequence, the short group first with its counts), with exact good and bad cases. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "backend/backend.h"

/* A step: a 20-token chunk of sequence 0 at 100, a decode token of sequence 1 at 7, a 3-token run of sequence 2 at 0
 * (tokens 0..19, 20, 21..23). */
static const int32_t kSeq[24] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 2, 2, 2};
static int32_t kPos[24];

static ss_attn_meta meta_with(const int32_t *tiles, int32_t nt, int32_t max_tile, int32_t ns, int32_t st, int32_t ms)
{
    for (int i = 0; i < 20; i++)
        kPos[i] = 100 + i;
    kPos[20] = 7, kPos[21] = 0, kPos[22] = 1, kPos[23] = 2;
    ss_attn_meta m;
    memset(&m, 0, sizeof m);
    m.tok_seq = kSeq, m.tok_pos = kPos;
    m.q_tiles = tiles, m.n_tiles = nt, m.max_tile_tokens = max_tile;
    m.n_short_tiles = ns, m.short_tokens = st, m.max_short_tokens = ms;
    return m;
}

static void expect_bad(const ss_attn_meta *m, const char *needle)
{
    ss_err e;
    memset(&e, 0, sizeof e);
    assert_int_equal(ss_attn_tiles_check(m, 24, &e), SS_ERR_INVALID_ARG);
    if (!strstr(e.msg, needle))
        fail_msg("expected \"%s\" in \"%s\"", needle, e.msg);
}

static void test_good(void **state)
{
    (void)state;
    ss_err e;
    static const int32_t ordered[] = {0, 20, 20, 1, 21, 3}; /* token order, no groups */
    ss_attn_meta m = meta_with(ordered, 3, 20, 0, 0, 0);
    assert_int_equal(ss_attn_tiles_check(&m, 24, &e), SS_OK);
    static const int32_t grouped[] = {20, 1, 21, 3, 0, 20}; /* short group (2 tiles, 4 tokens, longest 3) first */
    m = meta_with(grouped, 3, 20, 2, 4, 3);
    assert_int_equal(ss_attn_tiles_check(&m, 24, &e), SS_OK);
    static const int32_t cut[] = {16, 4, 20, 1, 21, 2, 23, 1, 0, 16}; /* runs may be cut anywhere */
    m = meta_with(cut, 5, 16, 4, 8, 4);
    assert_int_equal(ss_attn_tiles_check(&m, 24, &e), SS_OK);
    m = meta_with(NULL, 0, 0, 0, 0, 0); /* no tiles */
    assert_int_equal(ss_attn_tiles_check(&m, 24, &e), SS_OK);
}

static void test_bad(void **state)
{
    (void)state;
    static const int32_t twice[] = {19, 1, 20, 1, 21, 3, 0, 20}; /* token 19 in both groups */
    ss_attn_meta m = meta_with(twice, 4, 20, 3, 5, 3);
    expect_bad(&m, "twice");
    static const int32_t gap[] = {0, 20, 21, 3};
    m = meta_with(gap, 2, 20, 0, 0, 0);
    expect_bad(&m, "token 20 is in no tile");
    static const int32_t across[] = {0, 21, 21, 3}; /* a tile over two sequences */
    m = meta_with(across, 2, 21, 0, 0, 0);
    expect_bad(&m, "consecutive positions");
    static const int32_t long_first[] = {0, 20, 20, 1, 21, 3}; /* says 2 short tiles, but the first is long */
    m = meta_with(long_first, 3, 20, 2, 4, 3);
    expect_bad(&m, "in the short group but long");
    static const int32_t short_late[] = {20, 1, 0, 20, 21, 3};
    m = meta_with(short_late, 3, 20, 1, 1, 1);
    expect_bad(&m, "in the long group but short");
    static const int32_t unordered[] = {21, 3, 20, 1, 0, 20};
    m = meta_with(unordered, 3, 20, 2, 4, 3);
    expect_bad(&m, "out of token order");
    static const int32_t grouped[] = {20, 1, 21, 3, 0, 20};
    m = meta_with(grouped, 3, 20, 2, 5, 3); /* counts that do not match the tiles */
    expect_bad(&m, "short tokens 5");
    m = meta_with(grouped, 3, 21, 2, 4, 3);
    expect_bad(&m, "longest 21");
    m = meta_with(grouped, 3, 20, 3, 4, 3); /* every tile short: no groups to speak of */
    expect_bad(&m, "3 short");
    m = meta_with(grouped, 3, 20, 0, 4, 3); /* counts without groups */
    expect_bad(&m, "0 short");
    static const int32_t outside[] = {0, 20, 20, 1, 21, 4};
    m = meta_with(outside, 3, 20, 0, 0, 0);
    expect_bad(&m, "outside the step");
    m = meta_with(NULL, 3, 20, 0, 0, 0);
    expect_bad(&m, "without a tile array");
}

int main(void)
{
    const struct CMUnitTest tests[] = {cmocka_unit_test(test_good), cmocka_unit_test(test_bad)};
    return cmocka_run_group_tests(tests, NULL, NULL);
}

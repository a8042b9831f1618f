/* test_attn_tiles.c — ss_attn_tiles_check: the query tiles of ss_attn_meta against their contract (every token once,
 * runs of one sequence, the short group first with its counts, empty tiles only at the end), with exact good and bad
 * cases; ss_step_tiles, the forward pass's tiles of a step, exactly and against the check; and a graph step's padded
 * token count (ss_forward_graph_pad, the SS_GRAPH_BUCKET switch). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "backend/backend.h"
#include "model/forward.h"
#include "model/step_tiles.h"

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

/* A graph step pads its tile count with empty tiles at the end (first token n, no tokens). */
static void test_empty_tiles(void **state)
{
    (void)state;
    ss_err e;
    static const int32_t padded[] = {0, 20, 20, 1, 21, 3, 24, 0};
    ss_attn_meta m = meta_with(padded, 4, 20, 0, 0, 0);
    assert_int_equal(ss_attn_tiles_check(&m, 24, &e), SS_OK);
    static const int32_t padded2[] = {0, 20, 20, 1, 21, 3, 24, 0, 24, 0};
    m = meta_with(padded2, 5, 20, 0, 0, 0);
    assert_int_equal(ss_attn_tiles_check(&m, 24, &e), SS_OK);
    static const int32_t middle[] = {0, 20, 24, 0, 20, 1, 21, 3}; /* not at the end */
    m = meta_with(middle, 4, 20, 0, 0, 0);
    expect_bad(&m, "after an empty tile");
    static const int32_t first[] = {24, 0, 0, 20, 20, 1, 21, 3}; /* not even first */
    m = meta_with(first, 4, 20, 0, 0, 0);
    expect_bad(&m, "outside the step");
    static const int32_t elsewhere[] = {0, 20, 20, 1, 21, 3, 5, 0}; /* empty, but not at the step's end */
    m = meta_with(elsewhere, 4, 20, 0, 0, 0);
    expect_bad(&m, "outside the step");
    static const int32_t grouped[] = {20, 1, 21, 3, 0, 20, 24, 0}; /* groups: no padding */
    m = meta_with(grouped, 4, 20, 2, 4, 3);
    expect_bad(&m, "outside the step");
    /* the longest rounded up to a power of two (20: up to 32), without groups only */
    m = meta_with(padded, 4, 32, 0, 0, 0);
    assert_int_equal(ss_attn_tiles_check(&m, 24, &e), SS_OK);
    m = meta_with(padded, 4, 33, 0, 0, 0);
    expect_bad(&m, "longest 33");
    m = meta_with(padded, 4, 19, 0, 0, 0);
    expect_bad(&m, "longer than the longest");
    m = meta_with(grouped, 3, 32, 2, 4, 3);
    expect_bad(&m, "longest 32");
}

/* ss_step_tiles' tiles of tokens seq / pos (n real, n_pad in all), expected exactly (want: pairs), and checked. */
static void expect_tiles(const int32_t *seq, const int32_t *pos, int64_t n, int64_t n_pad, int32_t max_run,
                         int pad_pow2, const int32_t *want, int32_t want_n, ss_step_tiles_info want_info)
{
    int32_t tiles[2 * 64], s2[64], p2[64];
    ss_step_tiles_info got;
    memset(tiles, 0x7f, sizeof tiles);
    ss_step_tiles(seq, pos, n, n_pad, max_run, pad_pow2, tiles, &got);
    assert_int_equal(got.n_tiles, want_n);
    assert_memory_equal(tiles, want, (size_t)want_n * 2 * sizeof(int32_t));
    assert_int_equal(got.max_tile_tokens, want_info.max_tile_tokens);
    assert_int_equal(got.n_short_tiles, want_info.n_short_tiles);
    assert_int_equal(got.short_tokens, want_info.short_tokens);
    assert_int_equal(got.max_short_tokens, want_info.max_short_tokens);
    for (int64_t i = 0; i < n_pad; i++) /* the padding tokens: sequence 0 at position 0 */
        s2[i] = i < n ? seq[i] : 0, p2[i] = i < n ? pos[i] : 0;
    ss_attn_meta m;
    memset(&m, 0, sizeof m);
    m.tok_seq = s2, m.tok_pos = p2, m.q_tiles = tiles, m.n_tiles = got.n_tiles, m.max_tile_tokens = got.max_tile_tokens;
    m.n_short_tiles = got.n_short_tiles, m.short_tokens = got.short_tokens, m.max_short_tokens = got.max_short_tokens;
    ss_err e;
    if (ss_attn_tiles_check(&m, n_pad, &e) != SS_OK)
        fail_msg("ss_step_tiles made tiles the check refuses: %s", e.msg);
}

static void test_step_tiles(void **state)
{
    (void)state;
    /* a speculating sequence's token and two drafts, a plain decode token, a token and one draft; 2 padding tokens */
    static const int32_t seq[] = {0, 0, 0, 1, 2, 2}, pos[] = {10, 11, 12, 5, 7, 8};
    static const int32_t chains[] = {0, 3, 3, 1, 4, 2, 6, 1, 7, 1, 8, 0, 8, 0, 8, 0};
    expect_tiles(seq, pos, 6, 8, 8, 1, chains, 8, (ss_step_tiles_info){8, 4, 0, 0, 0}); /* longest 3: 4 */
    expect_tiles(seq, pos, 6, 8, 8, 0, chains, 5, (ss_step_tiles_info){5, 3, 0, 0, 0}); /* not padded */
    static const int32_t one_each[] = {0, 1, 1, 1, 2, 1, 3, 1, 4, 1, 5, 1, 6, 1, 7, 1}; /* max_run 1: as before */
    expect_tiles(seq, pos, 6, 8, 1, 1, one_each, 8, (ss_step_tiles_info){8, 1, 0, 0, 0});
    static const int32_t cut2[] = {0, 2, 2, 1, 3, 1, 4, 2, 6, 1, 7, 1, 8, 0, 8, 0};
    expect_tiles(seq, pos, 6, 8, 2, 1, cut2, 8, (ss_step_tiles_info){8, 2, 0, 0, 0});
    /* 20 tokens of one sequence in tiles of 8: 8, 8, 4 and one empty */
    int32_t s20[20], p20[20];
    for (int i = 0; i < 20; i++)
        s20[i] = 0, p20[i] = 40 + i;
    static const int32_t by8[] = {0, 8, 8, 8, 16, 4, 20, 0};
    expect_tiles(s20, p20, 20, 20, 8, 1, by8, 4, (ss_step_tiles_info){4, 8, 0, 0, 0});
    /* a 20-token chunk and a decode token, runs of up to 64: the short group first, and no padding with groups */
    int32_t s21[21], p21[21];
    memcpy(s21, s20, sizeof s20), memcpy(p21, p20, sizeof p20);
    s21[20] = 1, p21[20] = 3;
    static const int32_t grouped[] = {20, 1, 0, 20};
    expect_tiles(s21, p21, 21, 21, SS_ATTN_TILE_MAX, 1, grouped, 2, (ss_step_tiles_info){2, 20, 1, 1, 1});
    /* a break in positions ends a run (a sequence's token and a stale draft) */
    static const int32_t sq[] = {0, 0, 0}, ps[] = {4, 5, 9};
    static const int32_t broken[] = {0, 2, 2, 1, 3, 1, 4, 0};
    expect_tiles(sq, ps, 3, 4, 8, 1, broken, 4, (ss_step_tiles_info){4, 2, 0, 0, 0});
}

/* Powers of two without a bucket; with one, multiples of it from twice the bucket on where smaller. The default bucket,
 * or the switch as 0 or a multiple of 8 from 8 to 64 (anything else: the default). */
static void test_graph_pad(void **state)
{
    (void)state;
    static const int64_t pow2[][2] = {{1, 1}, {2, 2}, {3, 4}, {5, 8}, {64, 64}, {65, 128}, {160, 256}, {256, 256}};
    for (size_t i = 0; i < sizeof pow2 / sizeof pow2[0]; i++)
        assert_int_equal(ss_forward_graph_pad(pow2[i][0], 0), pow2[i][1]);
    static const int64_t by32[][2] = {{1, 1}, {3, 4}, {60, 64}, {64, 64}, {65, 96}, {96, 96}, {97, 128},
                                      {129, 160}, {160, 160}, {161, 192}, {200, 224}, {225, 256}, {256, 256}};
    for (size_t i = 0; i < sizeof by32 / sizeof by32[0]; i++)
        assert_int_equal(ss_forward_graph_pad(by32[i][0], 32), by32[i][1]);
    assert_int_equal(ss_forward_graph_pad(33, 16), 48);
    assert_int_equal(ss_forward_graph_pad(32, 16), 32);
    assert_int_equal(ss_forward_graph_pad(17, 8), 24);
    assert_int_equal(ss_forward_graph_pad(48, 24), 48); /* from twice the bucket itself */
    assert_int_equal(ss_forward_graph_pad(47, 24), 64);
    assert_int_equal(ss_forward_graph_pad(130, 64), 192);
    static const int64_t by8[][2] = {{1, 1}, {9, 16}, {16, 16}, {17, 24}, {72, 72}, {73, 80}, {150, 152}, {255, 256}};
    for (size_t i = 0; i < sizeof by8 / sizeof by8[0]; i++)
        assert_int_equal(ss_forward_graph_pad(by8[i][0], 8), by8[i][1]);
    unsetenv("SS_GRAPH_BUCKET");
    assert_int_equal(ss_forward_graph_bucket(), SS_GRAPH_BUCKET_DEFAULT);
    setenv("SS_GRAPH_BUCKET", "16", 1);
    assert_int_equal(ss_forward_graph_bucket(), 16);
    setenv("SS_GRAPH_BUCKET", "0", 1); /* powers of two */
    assert_int_equal(ss_forward_graph_bucket(), 0);
    static const char *const bad[] = {"33", "4", "72", "128", "32x", "x", "-32", "00x", "8 "};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        setenv("SS_GRAPH_BUCKET", bad[i], 1);
        assert_int_equal(ss_forward_graph_bucket(), SS_GRAPH_BUCKET_DEFAULT);
    }
    setenv("SS_GRAPH_BUCKET", "64", 1);
    assert_int_equal(ss_forward_graph_bucket(), 64);
    unsetenv("SS_GRAPH_BUCKET");
}

int main(void)
{
    const struct CMUnitTest tests[] = {cmocka_unit_test(test_good), cmocka_unit_test(test_bad),
                                       cmocka_unit_test(test_empty_tiles), cmocka_unit_test(test_step_tiles),
                                       cmocka_unit_test(test_graph_pad)};
    return cmocka_run_group_tests(tests, NULL, NULL);
}

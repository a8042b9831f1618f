/* test_gemm_plan.c — the wgmma decode GEMM's tiling rule (backend/cuda/gemm_plan.c) on Llama-3-8B's projection shapes
 * and an H200's cluster residency, its bounds and its benchmark switches: host arithmetic, no GPU needed. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
/* cmocka.h needs the four above first */
#include <cmocka.h>
#include <stdlib.h>

#ifdef SS_HAVE_CUDA
#include "backend/cuda/gemm_plan.h"

/* An H200 with one 197 KB CTA an SM: 132 SMs, clusters of 4 and 8 leave 12 idle (session 24's probe); the sizes it
 * did not ask for as the GPCs would place them (7 of 18 SMs a GPC: 2 a GPC). */
static ss_gemm_wg_dev h200(void)
{
    ss_gemm_wg_dev d = {0};
    static const int res[SS_GEMM_WG_MAX_SPLITS + 1] = {0, 132, 132, 126, 120, 120, 120, 112, 120};
    d.ok = 1;
    for (int s = 0; s <= SS_GEMM_WG_MAX_SPLITS; s++)
        d.resident[0][s] = d.resident[1][s] = res[s];
    return d;
}

/* The rule itself (SS_GEMM_WG=auto), nothing forced. */
static void clear_env(void)
{
    setenv("SS_GEMM_WG", "auto", 1);
    unsetenv("SS_GEMM_WG_BM");
    unsetenv("SS_GEMM_WG_SPLITS");
}

static void expect_plan(const ss_gemm_wg_dev *d, int64_t n, int32_t m, int32_t k, int bm, int splits)
{
    ss_gemm_wg_plan p = {0, 0};
    assert_int_equal(ss_gemm_wg_pick(d, n, m, k, &p), 1);
    assert_int_equal(p.bm, bm);
    assert_int_equal(p.splits, splits);
}

static void expect_none(const ss_gemm_wg_dev *d, int64_t n, int32_t m, int32_t k)
{
    ss_gemm_wg_plan p = {0, 0};
    assert_int_equal(ss_gemm_wg_pick(d, n, m, k, &p), 0);
}

/* The most CTAs that are all resident at once; of equal counts the larger tile, then the fewer splits. */
static void test_tilings(void **state)
{
    (void)state;
    clear_env();
    const ss_gemm_wg_dev d = h200();
    /* o at 128 rows: 16 tiles of 256; 8 splits (128 CTAs) exceed the 120 of clusters of 8, 7 give 112 (fits);
     * tiles of 128: 32 x 3 = 96 */
    expect_plan(&d, 128, 4096, 4096, 256, 7);
    /* qkv: 24 tiles of 256 x 5 = 120 (fits 120) against 48 of 128 x 2 = 96 */
    expect_plan(&d, 128, 6144, 4096, 256, 5);
    /* down: as o, k of 14336 */
    expect_plan(&d, 100, 4096, 14336, 256, 7);
    /* gate/up: 112 tiles of 256, one slice */
    expect_plan(&d, 65, 28672, 4096, 256, 1);
    /* two token tiles: o 32 tiles of 256 x 4 = 128 > 120, x 3 = 96 (fits 126); tiles of 128: 64 x 2 = 128 (fits 132) */
    expect_plan(&d, 256, 4096, 4096, 128, 2);
    /* gate/up at 256 rows: 224 tiles, more than a wave in every tiling */
    expect_none(&d, 256, 28672, 4096);
    /* m a multiple of 128 only: tiles of 128 (3 tiles x 8 splits = 24 CTAs) */
    expect_plan(&d, 128, 384, 4096, 128, 8);
    /* slices of at least 4 steps: k of 512 (8 steps) allows 2; tiles of 128 then give more CTAs (8 against 4) */
    expect_plan(&d, 128, 512, 512, 128, 2);
}

static void test_bounds(void **state)
{
    (void)state;
    clear_env();
    ss_gemm_wg_dev d = h200();
    expect_none(&d, SS_GEMM_WG_MIN_ROWS - 1, 4096, 4096); /* GEMV-like batches stay with cuBLASLt */
    expect_plan(&d, SS_GEMM_WG_MIN_ROWS, 4096, 4096, 256, 7);
    expect_plan(&d, SS_GEMM_WG_MAX_ROWS, 6144, 4096, 256, 2); /* 48 tiles x 2 = 96 against 96 x 1 */
    expect_none(&d, SS_GEMM_WG_MAX_ROWS + 1, 4096, 4096);
    expect_none(&d, 128, 4096, 4000);   /* k not a multiple of 64 */
    expect_none(&d, 128, 4000, 4096);   /* m a multiple of neither tile */
    expect_none(&d, 128, 4096, 64 * 3); /* 3 steps: not even one slice of 4 */
    d.ok = 0;
    expect_none(&d, 128, 4096, 4096); /* a device that does not run it (not sm_90) */
    expect_none(NULL, 128, 4096, 4096);
    d = h200();
    for (int s = 2; s <= SS_GEMM_WG_MAX_SPLITS; s++)
        d.resident[0][s] = d.resident[1][s] = 0; /* clusters refused: one slice a tile, the more tiles */
    expect_plan(&d, 128, 4096, 4096, 128, 1);
}

static void test_switches(void **state)
{
    (void)state;
    clear_env();
    const ss_gemm_wg_dev d = h200();
    setenv("SS_GEMM_WG", "0", 1);
    expect_none(&d, 128, 4096, 4096);
    unsetenv("SS_GEMM_WG"); /* the build's default */
    ss_gemm_wg_plan p = {0, 0};
    assert_int_equal(ss_gemm_wg_pick(&d, 128, 4096, 4096, &p), SS_GEMM_WG_BY_DEFAULT);
    setenv("SS_GEMM_WG", "off", 1); /* anything else: never */
    expect_none(&d, 128, 4096, 4096);
    setenv("SS_GEMM_WG", "1", 1);
    expect_plan(&d, 1, 4096, 4096, 256, 7); /* from one row */
    setenv("SS_GEMM_WG_BM", "128", 1);
    expect_plan(&d, 128, 4096, 4096, 128, 3); /* the rule's best of that tile */
    setenv("SS_GEMM_WG_SPLITS", "8", 1);
    expect_plan(&d, 128, 4096, 4096, 128, 8); /* 256 CTAs: forced, so more than a wave is allowed */
    setenv("SS_GEMM_WG_SPLITS", "9", 1);
    expect_none(&d, 128, 4096, 4096); /* no such cluster */
    unsetenv("SS_GEMM_WG_BM");
    setenv("SS_GEMM_WG_SPLITS", "8", 1);
    expect_plan(&d, 128, 4096, 4096, 256, 8);
    expect_none(&d, 128, 4096, 64 * 5); /* 5 steps: no 8 slices */
    clear_env();
}
#endif

int main(void)
{
#ifdef SS_HAVE_CUDA
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_tilings),
        cmocka_unit_test(test_bounds),
        cmocka_unit_test(test_switches),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
#else
    return 0;
#endif
}

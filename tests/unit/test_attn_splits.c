/* test_attn_splits.c — the CUDA attention's key-split, decode-form and prefill-form rules (backend/cuda/attn_splits.c)
 * for the shapes they were measured on, and their limits (workspace, context bound): host arithmetic, no GPU needed. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>

#ifdef SS_HAVE_CUDA
#include "backend/cuda/attn_splits.h"

static char workspace_dummy; /* only its address matters: the rules never touch the workspace */

/* A Llama-3-8B-shaped decode launch on an H200-like device (132 SMs, 3 decode CTAs per SM, 32 MB of
 * split-K workspace): n tokens, `heads` query heads (32 at tp 1, 16 at tp 2), context bound msl. */
static ss_cuda_attn_args launch(int64_t n, int32_t heads, int32_t msl)
{
    ss_cuda_attn_args a = {0};
    a.n = n;
    a.heads = heads;
    a.kv_heads = heads / 4;
    a.head_dim = 128;
    a.max_seq_len = msl;
    a.workspace = &workspace_dummy;
    a.workspace_bytes = (int64_t)32 << 20;
    a.sm_count = 132;
    a.decode_ctas_per_sm = 3;
    return a;
}

static int64_t wave(int64_t n, int32_t heads, int32_t msl)
{
    ss_cuda_attn_args a = launch(n, heads, msl);
    return ss_attn_wave_splits(&a, n * a.kv_heads); /* one row block per decode token and kv head */
}

/* The measured cases of docs/performance.md (session 8): whole waves of 396 CTAs. */
static void test_wave_rule_measured_shapes(void **state)
{
    (void)state;
    assert_int_equal(wave(8, 32, 8192), 6);   /* 384 CTAs, one wave */
    assert_int_equal(wave(32, 32, 8192), 3);  /* 768 CTAs, two waves */
    assert_int_equal(wave(64, 32, 4096), 3);  /* 1,536 CTAs, four waves */
    assert_int_equal(wave(16, 32, 8192), 3);  /* 384 CTAs */
    assert_int_equal(wave(4, 32, 8192), 12);  /* 384 CTAs */
    assert_int_equal(wave(1, 32, 8192), 43);  /* 3 key tiles per split beat 4 */
    assert_int_equal(wave(1, 32, 2048), 16);  /* bounded by 128 keys per split */
    assert_int_equal(wave(128, 32, 2048), 1); /* already 1,024 CTAs: splits would not pay */
    assert_int_equal(wave(256, 32, 8192), 2); /* within 3% of 3 splits: the fewer */
    /* session 54 (a CTA's fixed cost 4 tiles, not 2): unsplit where the forced-split sweep had it 2-6% faster */
    assert_int_equal(wave(256, 32, 2048), 1);  /* was 2 */
    assert_int_equal(wave(128, 32, 4096), 1);  /* was 3 */
    assert_int_equal(wave(64, 32, 2048), 2);   /* was 3 */
    assert_int_equal(wave(256, 32, 16384), 2); /* was 3 */
    assert_int_equal(wave(8, 16, 8192), 12);  /* tp 2: half the kv heads per rank, twice the splits */
}

static void test_wave_rule_limits(void **state)
{
    (void)state;
    ss_cuda_attn_args a = launch(8, 32, 8192);
    a.decode_ctas_per_sm = 0; /* unknown: two per SM, 264 CTAs a wave */
    assert_int_equal(ss_attn_wave_splits(&a, 64), 4);
    a = launch(8, 32, 8192);
    a.workspace_bytes = 2 * 8 * 32 * (128 + 2) * 4; /* room for two splits' partial results */
    assert_int_equal(ss_attn_wave_splits(&a, 64), 2);
    a = launch(8, 32, 8192);
    a.workspace = NULL;
    assert_int_equal(ss_attn_wave_splits(&a, 64), 1);
    a = launch(1, 32, 128); /* a bound below two splits' worth of keys */
    assert_int_equal(ss_attn_wave_splits(&a, 8), 1);
    a = launch(1, 4, 1 << 15); /* one kv head, 32k keys: both rules would want more than the combine merges */
    assert_int_equal(ss_attn_wave_splits(&a, 1), SS_ATTN_MAX_SPLITS);
    assert_int_equal(ss_attn_pick_splits(&a, 1, 0), SS_ATTN_MAX_SPLITS);
    assert_int_equal(ss_attn_pick_splits(&a, 0, 0), 1); /* no CTAs: nothing to split */
}

/* The short-context rule (session 6): cluster splits of 64 keys, fewer CTAs than the target. */
static void test_pick_rule(void **state)
{
    (void)state;
    unsetenv("SS_ATTN_SPLIT_KEYS");
    ss_cuda_attn_args a = launch(1, 32, 256);
    assert_int_equal(ss_attn_pick_splits(&a, 8, 8), 4); /* 256 keys / 64 */
    a = launch(8, 32, 256);
    assert_int_equal(ss_attn_pick_splits(&a, 64, 8), 4); /* 264 / 64 CTAs */
    a = launch(32, 32, 256);
    assert_int_equal(ss_attn_pick_splits(&a, 256, 8), 1);
    a = launch(64, 32, 256);
    assert_int_equal(ss_attn_pick_splits(&a, 512, 8), 1); /* the target is already met */
    a = launch(1, 32, 8192);
    assert_int_equal(ss_attn_pick_splits(&a, 8, 8), 33); /* more than a cluster: 128-key splits, combined */
    assert_int_equal(ss_attn_pick_splits(&a, 8, 0), 33);
    setenv("SS_ATTN_SPLIT_KEYS", "4096", 1); /* the benchmark switch: at least 4096 keys per split */
    assert_int_equal(ss_attn_pick_splits(&a, 8, 0), 2);
    unsetenv("SS_ATTN_SPLIT_KEYS");
}

/* An fp8 cache's dense form (one H200: 3 CTAs a SM of the 64-key form, 4 of the dense form; session 55's sweep, the
 * dense form reading Q from shared memory): wherever the slot model counts it no dearer, in its own split count from a
 * bound of 2,048 keys. `splits`: what the 64-key form's rule picks. */
static int64_t f8_dense_tp(int64_t n, int32_t heads, int32_t msl, int64_t splits)
{
    ss_cuda_attn_args a = launch(n, heads, msl);
    a.kv_fp8 = 1;
    a.decode_short_ctas_per_sm = 4;
    return ss_attn_dense_splits(&a, n * a.kv_heads, splits, 0);
}

static int64_t f8_dense(int64_t n, int32_t msl, int64_t splits)
{
    return f8_dense_tp(n, 32, msl, splits);
}

static void test_f8_dense_rule(void **state)
{
    (void)state;
    unsetenv("SS_ATTN_SHORT");
    assert_int_equal(f8_dense(64, 512, 1), 1);   /* 512 CTAs: 1.3 waves of the 64-key form, one of the dense: 0.67 */
    assert_int_equal(f8_dense(64, 1024, 1), 1);  /* measured -24% */
    assert_int_equal(f8_dense(64, 2048, 3), 1);  /* 0.80 against 3 splits: -15% */
    assert_int_equal(f8_dense(64, 4096, 3), 1);  /* 0.87: -10% (before session 55 +2%) */
    assert_int_equal(f8_dense(64, 8192, 3), 1);  /* 0.94: -7% */
    assert_int_equal(f8_dense(128, 1024, 1), 1); /* 2.6 waves against 1.9, 0.89: -7% (before: +5%) */
    assert_int_equal(f8_dense(128, 4096, 1), 1); /* 0.89: -7% */
    assert_int_equal(f8_dense(256, 512, 1), 1);  /* 0.89: -9% */
    assert_int_equal(f8_dense(256, 4096, 1), 1); /* 0.92: -6% */
    assert_int_equal(f8_dense(192, 1024, 1), 1); /* 3.9 waves against 2.9, as many slots (1.00): -5% */
    assert_int_equal(f8_dense(32, 2048, 3), 2);  /* 256 CTAs: in 2 splits, one wave (0.89): -7% */
    assert_int_equal(f8_dense(32, 8192, 3), 2);  /* 0.96: -4% */
    assert_int_equal(f8_dense(32, 1024, 2), 0);  /* under the bound of 2,048: the 64-key form's splits (level) */
    assert_int_equal(f8_dense(16, 4096, 3), 0);  /* 1.03 in 4 splits: level */
    assert_int_equal(f8_dense(48, 1024, 1), 0);  /* 384 CTAs: one wave of either (1.33): +0.5% */
    assert_int_equal(f8_dense(96, 2048, 1), 0);  /* 1.9 waves against 1.5: two either way (1.11) */
    assert_int_equal(f8_dense(96, 512, 1), 0);   /* 1.33: +4.5% */
    assert_int_equal(f8_dense(224, 1024, 1), 0); /* 4.5 waves against 3.4 (1.07; not measured) */
    assert_int_equal(f8_dense_tp(128, 16, 1024, 1), 1); /* tp 2: 4 kv heads a rank, batch 128 is batch 64's 512 CTAs */
    assert_int_equal(f8_dense_tp(96, 16, 4096, 3), 0);  /* 384 CTAs: batch 48's */
    ss_cuda_attn_args w = launch(32, 32, 8192);
    w.kv_fp8 = 1;
    w.decode_short_ctas_per_sm = 4;
    w.workspace_bytes = 32 * 32 * 130 * 4; /* room for one split: the dense form unsplit, 4 slots a SM against 3 */
    assert_int_equal(ss_attn_dense_splits(&w, 256, 1, 0), 0);
    w.workspace = NULL;
    assert_int_equal(ss_attn_dense_splits(&w, 256, 1, 0), 0);
    ss_cuda_attn_args a = launch(64, 32, 1024);
    a.kv_fp8 = 1;
    assert_int_equal(ss_attn_dense_splits(&a, 512, 1, 0), 0); /* occupancy unknown (heads of 64): never */
    a.decode_short_ctas_per_sm = 4;
    assert_int_equal(ss_attn_dense_splits(&a, 512, 1, 1), 0); /* forced splits keep the 64-key form */
    a.decode_ctas_per_sm = 0;
    assert_int_equal(ss_attn_dense_splits(&a, 512, 1, 0), 0);
    a.decode_ctas_per_sm = 3;
    setenv("SS_ATTN_SHORT", "1", 1); /* forced: at the 64-key form's splits, forced or not */
    assert_int_equal(ss_attn_dense_splits(&a, 256, 3, 1), 3);
    setenv("SS_ATTN_SHORT", "0", 1);
    assert_int_equal(ss_attn_dense_splits(&a, 512, 1, 0), 0);
    unsetenv("SS_ATTN_SHORT");
}

/* A bf16 cache: the 32-key form at the 64-key form's splits where ss_attn_short_tiles takes them all; else unsplit
 * where it takes the unsplit launch and the wave rule split it, up to a bound of 2,048 (session 48). */
static void test_bf16_dense_splits(void **state)
{
    (void)state;
    unsetenv("SS_ATTN_SHORT");
    ss_cuda_attn_args a = launch(64, 32, 2048);
    a.decode_short_ctas_per_sm = 5;
    assert_int_equal(ss_attn_dense_splits(&a, 512, 1, 0), 1);  /* the window (396, 660] */
    assert_int_equal(ss_attn_dense_splits(&a, 512, 3, 0), 1);  /* 1,536 CTAs: unsplit instead */
    assert_int_equal(ss_attn_dense_splits(&a, 512, 3, 1), 0);  /* forced splits: the 64-key form */
    assert_int_equal(ss_attn_dense_splits(&a, 160, 3, 0), 3);  /* 480 CTAs in the window, split */
    assert_int_equal(ss_attn_dense_splits(&a, 256, 3, 0), 0);  /* batch 32: neither */
    assert_int_equal(ss_attn_dense_splits(&a, 1024, 1, 0), 0); /* batch 128 */
    a.max_seq_len = 8192; /* 8B steps at 4,096-token prompts: +4.8% unsplit, so the wave rule's splits */
    assert_int_equal(ss_attn_dense_splits(&a, 512, 3, 0), 0);
    assert_int_equal(ss_attn_dense_splits(&a, 160, 3, 0), 3); /* the window itself, as before */
    a.decode_short_ctas_per_sm = 0;
    assert_int_equal(ss_attn_dense_splits(&a, 512, 3, 0), 0);
}

/* The benchmark switch SS_ATTN_SPLITS: a count above 0, at most what the workspace holds (batch 256 at tp 1:
 * 4.26 MB a split, 7 in 32 MB); no workspace, a bad value or none: 0 (the rules decide). */
static void test_forced_splits(void **state)
{
    (void)state;
    ss_cuda_attn_args a = launch(256, 32, 2048);
    unsetenv("SS_ATTN_SPLITS");
    assert_int_equal(ss_attn_forced_splits(&a), 0);
    setenv("SS_ATTN_SPLITS", "3", 1);
    assert_int_equal(ss_attn_forced_splits(&a), 3);
    setenv("SS_ATTN_SPLITS", "64", 1);
    assert_int_equal(ss_attn_forced_splits(&a), 7);
    setenv("SS_ATTN_SPLITS", "0", 1);
    assert_int_equal(ss_attn_forced_splits(&a), 0);
    setenv("SS_ATTN_SPLITS", "x", 1);
    assert_int_equal(ss_attn_forced_splits(&a), 0);
    setenv("SS_ATTN_SPLITS", "2", 1);
    a.workspace = NULL;
    assert_int_equal(ss_attn_forced_splits(&a), 0);
    unsetenv("SS_ATTN_SPLITS");
}

/* The decode form (session 17): the 32-key form only where it removes a partial second wave of the 64-key
 * form (396 CTAs a wave there, 660 in the 32-key form). */
static void test_short_tiles_rule(void **state)
{
    (void)state;
    unsetenv("SS_ATTN_SHORT");
    ss_cuda_attn_args a = launch(64, 32, 256);
    a.decode_short_ctas_per_sm = 5;
    assert_int_equal(ss_attn_short_tiles(&a, 512), 1); /* batch 64: 1.3 waves of the 64-key form, 0.8 of the other */
    assert_int_equal(ss_attn_short_tiles(&a, 660), 1);
    assert_int_equal(ss_attn_short_tiles(&a, 661), 0);  /* more than a wave of either: the 64-key form */
    assert_int_equal(ss_attn_short_tiles(&a, 1024), 0); /* batch 128 */
    assert_int_equal(ss_attn_short_tiles(&a, 396), 0);  /* one wave of the 64-key form already */
    assert_int_equal(ss_attn_short_tiles(&a, 256), 0);
    a.decode_short_ctas_per_sm = 0; /* unknown occupancy: never */
    assert_int_equal(ss_attn_short_tiles(&a, 512), 0);
    a.decode_short_ctas_per_sm = 5;
    a.decode_ctas_per_sm = 0;
    assert_int_equal(ss_attn_short_tiles(&a, 512), 0);
    a.decode_ctas_per_sm = 3;
    setenv("SS_ATTN_SHORT", "1", 1); /* the benchmark switch wins either way */
    assert_int_equal(ss_attn_short_tiles(&a, 100), 1);
    setenv("SS_ATTN_SHORT", "0", 1);
    assert_int_equal(ss_attn_short_tiles(&a, 512), 0);
    unsetenv("SS_ATTN_SHORT");
}

/* Prefill-shaped launches below one wave split for their longest tile (session 33). */
static void test_prefill_split_base(void **state)
{
    (void)state;
    unsetenv("SS_ATTN_SPLIT_KEYS");
    /* a 46-token chunk (2 row blocks of 128 a kv head) at a 120k-token bound beside 8 decode tokens: 9 tiles, 144 CTAs;
     * by the grid 2 splits, by the chunk's own 16 CTAs 17 */
    ss_cuda_attn_args a = launch(54, 32, 120000);
    a.max_tile_tokens = 46;
    assert_int_equal(ss_attn_pick_splits(&a, 144, 0), 2);
    assert_int_equal(ss_attn_prefill_split_base(&a, 144, 9), 16);
    assert_int_equal(ss_attn_pick_splits(&a, ss_attn_prefill_split_base(&a, 144, 9), 0), 17);
    /* a 2,048-token chunk (32 tiles, 512 CTAs: two waves) keeps its grid: one split */
    a = launch(2048, 32, 120000);
    a.max_tile_tokens = 64;
    assert_int_equal(ss_attn_prefill_split_base(&a, 512, 32), 512);
    assert_int_equal(ss_attn_pick_splits(&a, 512, 0), 1);
    /* one tile: its own CTAs are the grid */
    assert_int_equal(ss_attn_prefill_split_base(&a, 16, 1), 16);
    /* a short context bounds the splits as before (128 keys each, rounded up): 1000 keys, 8 */
    a = launch(54, 32, 1000);
    a.max_tile_tokens = 46;
    assert_int_equal(ss_attn_pick_splits(&a, ss_attn_prefill_split_base(&a, 144, 9), 0), 8);
    /* a verify step (session 40): 4 sequences' tokens and 7 drafts each, tiles of 8 (32 rows: one row block a kv head,
     * 32 CTAs) at an 8k bound: by the grid 9 splits, not 33 by one tile's 8 CTAs (SS_ATTN_VERIFY_BASE=tile, as before) */
    a = launch(32, 32, 8192);
    a.max_tile_tokens = 8;
    assert_int_equal(ss_attn_prefill_split_base(&a, 32, 4), 32);
    assert_int_equal(ss_attn_pick_splits(&a, ss_attn_prefill_split_base(&a, 32, 4), 0), 9);
    setenv("SS_ATTN_VERIFY_BASE", "tile", 1);
    assert_int_equal(ss_attn_pick_splits(&a, ss_attn_prefill_split_base(&a, 32, 4), 0), 33);
    unsetenv("SS_ATTN_VERIFY_BASE");
}

/* The prefill form (session 32): 4 warps of two m-tiles from a context bound of 4096 on (an fp8 cache: 2048), as
 * measured. */
static void test_prefill_form_rule(void **state)
{
    (void)state;
    unsetenv("SS_ATTN_PREFILL");
    ss_cuda_attn_args a = launch(1, 32, 2048);
    a.prefill_mt2_ctas_per_sm = 2; /* an H100 / H200 */
    assert_int_equal(ss_attn_prefill_mt2(&a), 0);
    a.max_seq_len = 4095;
    assert_int_equal(ss_attn_prefill_mt2(&a), 0);
    a.max_seq_len = 4096;
    assert_int_equal(ss_attn_prefill_mt2(&a), 1);
    a.max_seq_len = 32768;
    assert_int_equal(ss_attn_prefill_mt2(&a), 1);
    a.kv_fp8 = 1; /* an fp8 cache: from a context bound of 2048 on (session 38) */
    a.max_seq_len = 2047;
    assert_int_equal(ss_attn_prefill_mt2(&a), 0);
    a.max_seq_len = 2048;
    assert_int_equal(ss_attn_prefill_mt2(&a), 1);
    a.kv_fp8 = 0;
    assert_int_equal(ss_attn_prefill_mt2(&a), 0);
    a.max_seq_len = 32768;
    setenv("SS_ATTN_PREFILL", "wm8", 1); /* the benchmark switch wins either way */
    assert_int_equal(ss_attn_prefill_mt2(&a), 0);
    setenv("SS_ATTN_PREFILL", "mt2", 1);
    a.max_seq_len = 100;
    assert_int_equal(ss_attn_prefill_mt2(&a), 1);
    setenv("SS_ATTN_PREFILL", "other", 1); /* not a form: the rule */
    assert_int_equal(ss_attn_prefill_mt2(&a), 0);
    unsetenv("SS_ATTN_PREFILL");
    a.max_seq_len = 32768;
    a.prefill_mt2_ctas_per_sm = 1; /* one CTA a SM (an A100's shared memory): not its premise */
    assert_int_equal(ss_attn_prefill_mt2(&a), 0);
    a.prefill_mt2_ctas_per_sm = 0; /* cannot launch (Ada: 99 KB a block), or unknown: never, not even forced */
    assert_int_equal(ss_attn_prefill_mt2(&a), 0);
    setenv("SS_ATTN_PREFILL", "mt2", 1);
    assert_int_equal(ss_attn_prefill_mt2(&a), 0);
    unsetenv("SS_ATTN_PREFILL");
}

/* The wgmma prefill form (session 34): where the device runs it, for launches whose 128-row blocks are at least half
 * real rows. */
/* The decode form of a CTA per sequence (session 42): decode tiles only, where the device runs it, the batch filling
 * the GPU at short contexts; SS_ATTN_SEQ forces it on or off within what it can run. */
static void test_seq_form_rule(void **state)
{
    (void)state;
    unsetenv("SS_ATTN_SEQ");
    int32_t tiles = 0;
    ss_cuda_attn_args a = launch(132, 32, 256); /* 132 decode tokens, 32/8 heads of 128, context bound 256 */
    a.q_tiles = &tiles, a.n_tiles = 256, a.max_tile_tokens = 1;
    assert_int_equal(ss_attn_seq_form(&a), 0); /* the device does not run it */
    a.seq_ok = 1;
    assert_int_equal(ss_attn_seq_form(&a), 1);
    a.n = 75; /* from 9/16 of a token per SM (75 of 132) */
    assert_int_equal(ss_attn_seq_form(&a), 1);
    a.n = 74; /* fewer: the tiled form's key splits fill the GPU better */
    assert_int_equal(ss_attn_seq_form(&a), 0);
    a.sm_count = 78, a.n = 44; /* the bound scales with the SMs: 43.9 on 78 */
    assert_int_equal(ss_attn_seq_form(&a), 1);
    a.n = 43;
    assert_int_equal(ss_attn_seq_form(&a), 0);
    a.sm_count = 132;
    a.n = 256, a.max_seq_len = SS_ATTN_SEQ_CONTEXT + 1; /* longer contexts: the tiled form streams faster */
    assert_int_equal(ss_attn_seq_form(&a), 0);
    setenv("SS_ATTN_SEQ", "1", 1);
    assert_int_equal(ss_attn_seq_form(&a), 1);
    a.max_tile_tokens = 8; /* a verify tile (token and drafts): never, even forced */
    assert_int_equal(ss_attn_seq_form(&a), 0);
    a.max_tile_tokens = 1, a.kv_fp8 = 1; /* an fp8 cache: its form of 32-key stages (session 49), as seq_ok says */
    assert_int_equal(ss_attn_seq_form(&a), 1);
    unsetenv("SS_ATTN_SEQ");
    a.max_seq_len = SS_ATTN_SEQ_CONTEXT; /* by default as with bf16: up to 256, the batch filling the GPU */
    assert_int_equal(ss_attn_seq_form(&a), 1);
    a.max_seq_len = SS_ATTN_SEQ_CONTEXT + 1;
    assert_int_equal(ss_attn_seq_form(&a), 0);
    a.max_seq_len = SS_ATTN_SEQ_CONTEXT, a.n = 74;
    assert_int_equal(ss_attn_seq_form(&a), 0);
    setenv("SS_ATTN_SEQ", "1", 1);
    assert_int_equal(ss_attn_seq_form(&a), 1);
    a.n = 256, a.max_seq_len = SS_ATTN_SEQ_CONTEXT + 1;
    a.kv_fp8 = 0, a.heads = 64, a.kv_heads = 2; /* a group of 32: more rows than its one m-tile */
    assert_int_equal(ss_attn_seq_form(&a), 0);
    a.heads = 64, a.kv_heads = 16; /* 16 kv heads: their stages do not fit shared memory */
    assert_int_equal(ss_attn_seq_form(&a), 0);
    a.kv_heads = 8, a.head_dim = 96;
    assert_int_equal(ss_attn_seq_form(&a), 0);
    a.head_dim = 64, a.n_short_tiles = 3; /* a step's grouped tiles (prompt chunks beside) */
    assert_int_equal(ss_attn_seq_form(&a), 0);
    a.n_short_tiles = 0, a.q_tiles = NULL; /* no tiles: the CUDA-core kernel */
    assert_int_equal(ss_attn_seq_form(&a), 0);
    a.q_tiles = &tiles;
    assert_int_equal(ss_attn_seq_form(&a), 1);
    setenv("SS_ATTN_SEQ", "0", 1);
    a.max_seq_len = 128;
    assert_int_equal(ss_attn_seq_form(&a), 0);
    unsetenv("SS_ATTN_SEQ");
    assert_int_equal(ss_attn_seq_form(&a), 1);
}

/* The CTAs a token's kv heads take in that form: two below a token per SM, else one; forced by SS_ATTN_SEQ_PARTS,
 * two only where the kv heads divide by 2. */
static void test_seq_head_parts(void **state)
{
    (void)state;
    unsetenv("SS_ATTN_SEQ_PARTS");
    ss_cuda_attn_args a = launch(131, 32, 256); /* 8 kv heads, 131 tokens on 132 SMs */
    assert_int_equal(ss_attn_seq_head_parts(&a), 2);
    a.n = 132; /* a token per SM: one CTA each */
    assert_int_equal(ss_attn_seq_head_parts(&a), 1);
    setenv("SS_ATTN_SEQ_PARTS", "2", 1);
    assert_int_equal(ss_attn_seq_head_parts(&a), 2);
    a.heads = 8, a.kv_heads = 1; /* one kv head: cannot split */
    assert_int_equal(ss_attn_seq_head_parts(&a), 1);
    a.heads = 12, a.kv_heads = 3;
    assert_int_equal(ss_attn_seq_head_parts(&a), 1);
    a.heads = 8, a.kv_heads = 2;
    assert_int_equal(ss_attn_seq_head_parts(&a), 2);
    setenv("SS_ATTN_SEQ_PARTS", "1", 1);
    a.n = 64;
    assert_int_equal(ss_attn_seq_head_parts(&a), 1);
    unsetenv("SS_ATTN_SEQ_PARTS");
    assert_int_equal(ss_attn_seq_head_parts(&a), 2);
    a.heads = 8, a.kv_heads = 1; /* by default too */
    assert_int_equal(ss_attn_seq_head_parts(&a), 1);
}

static void test_prefill_wg_rule(void **state)
{
    (void)state;
    unsetenv("SS_ATTN_PREFILL");
    ss_cuda_attn_args a = launch(2048, 32, 8192); /* a 2,048-token chunk: 32 tiles of 64 tokens, 256 rows each */
    a.n_tiles = 32;
    a.max_tile_tokens = 64;
    assert_int_equal(ss_attn_prefill_wg(&a), 0); /* not an H100 / H200 (or a fp8 cache, or heads of 64) */
    a.prefill_wg_ok = 1;
    assert_int_equal(ss_attn_prefill_wg(&a), 1);
    a.max_seq_len = 100; /* any context */
    assert_int_equal(ss_attn_prefill_wg(&a), 1);
    /* 8 prompts of 100 tokens: 16 tiles (64 + 36 tokens), 3,200 real rows of at most 4,096 computed */
    a = launch(800, 32, 100);
    a.prefill_wg_ok = 1, a.n_tiles = 16, a.max_tile_tokens = 64;
    assert_int_equal(ss_attn_prefill_wg(&a), 1);
    /* the chunk beside 255 decode tokens: 287 tiles, 9,212 real rows of at most 73,472 */
    a = launch(2048 + 255, 32, 8192);
    a.prefill_wg_ok = 1, a.n_tiles = 32 + 255, a.max_tile_tokens = 64;
    assert_int_equal(ss_attn_prefill_wg(&a), 0);
    /* a 64-token chunk beside one decode token: 2 tiles, 260 real rows of at most 512; beside three: 268 of 1,024 */
    a = launch(65, 32, 4096);
    a.prefill_wg_ok = 1, a.n_tiles = 2, a.max_tile_tokens = 64;
    assert_int_equal(ss_attn_prefill_wg(&a), 1);
    a.n = 67, a.n_tiles = 4;
    assert_int_equal(ss_attn_prefill_wg(&a), 0);
    setenv("SS_ATTN_PREFILL", "wg", 1); /* the benchmark switch wins where the form runs */
    assert_int_equal(ss_attn_prefill_wg(&a), 1);
    setenv("SS_ATTN_PREFILL", "mt2", 1);
    a.n = 2048, a.n_tiles = 32;
    assert_int_equal(ss_attn_prefill_wg(&a), 0);
    setenv("SS_ATTN_PREFILL", "wm8", 1);
    assert_int_equal(ss_attn_prefill_wg(&a), 0);
    setenv("SS_ATTN_PREFILL", "wg", 1);
    a.prefill_wg_ok = 0; /* never where it cannot run, not even forced */
    assert_int_equal(ss_attn_prefill_wg(&a), 0);
    unsetenv("SS_ATTN_PREFILL");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_seq_form_rule),
        cmocka_unit_test(test_seq_head_parts),
        cmocka_unit_test(test_prefill_wg_rule),
        cmocka_unit_test(test_prefill_form_rule),
        cmocka_unit_test(test_prefill_split_base),
        cmocka_unit_test(test_wave_rule_measured_shapes),
        cmocka_unit_test(test_wave_rule_limits),
        cmocka_unit_test(test_pick_rule),
        cmocka_unit_test(test_short_tiles_rule),
        cmocka_unit_test(test_forced_splits),
        cmocka_unit_test(test_f8_dense_rule),
        cmocka_unit_test(test_bf16_dense_splits),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
#else
int main(void)
{
    fprintf(stderr, "a build without CUDA: the attention split tests are SKIPPED\n");
    return 0;
}
#endif

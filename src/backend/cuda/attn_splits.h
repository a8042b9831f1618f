/* attn_splits.h — how many key splits (flash-decoding) the CUDA attention launches use, and which decode
 * form: host-only policy, kept apart from the kernels so that CI's unit tests check it without a GPU. */
#ifndef SS_ATTN_SPLITS_H
#define SS_ATTN_SPLITS_H

#include <stdint.h>

#include "backend/cuda/cuda_kernels.h"

#define SS_ATTN_MAX_SPLITS 64              /* the combine kernel merges at most this many */
#define SS_ATTN_MIN_KEYS_PER_SPLIT 128     /* when the combine kernel merges the splits */
#define SS_ATTN_MIN_KEYS_PER_CLUSTER_SPLIT 64 /* when the attention kernel merges them itself (cheaper) */
/* Decode tiles from this context bound on take ss_attn_wave_splits. Graph-replayed steps round the bound up
 * to a power of two (it is part of the graph key), so there contexts of 1025 tokens and more qualify; steps
 * run op by op pass the true maximum. */
#define SS_ATTN_LONG_CONTEXT 2048
#define SS_ATTN_MT2_CONTEXT 4096 /* ss_attn_prefill_mt2 */
#define SS_ATTN_MT2_CONTEXT_FP8 2048 /* ss_attn_prefill_mt2, an fp8 cache */
#define SS_ATTN_SEQ_CONTEXT 256 /* ss_attn_seq_form: the longest context bound it takes by default */
#define SS_ATTN_SEQ_SIXTEENTHS_PER_SM 9 /* ss_attn_seq_form: decode tokens per SM it takes from, in sixteenths */
#define SS_ATTN_WG_ROWS 128 /* rows of a block of the wgmma prefill form (attn_wgmma.cu) */

#ifdef __cplusplus
extern "C" {
#endif
/* The split count for `base` CTAs per split, by the short-context rule: enough CTAs for two per SM, at
 * least SS_ATTN_MIN_KEYS_PER_SPLIT keys each (of the bound a->max_seq_len), no more than the workspace
 * holds. With cluster_max > 1 (the kernel merges up to that many splits in a cluster) splits are cheaper:
 * 64 keys each, and fewer CTAs than the target rather than more. Reads the benchmark switch
 * SS_ATTN_SPLIT_KEYS (the least keys per split). */
int64_t ss_attn_pick_splits(const ss_cuda_attn_args *a, int64_t base, int64_t cluster_max);
/* The `base` for ss_attn_pick_splits of a prefill-shaped launch of n_tiles tiles in `ctas` CTAs (each tile takes
 * the longest one's row blocks): the grid's count, or below one wave of two CTAs a SM one tile's own CTAs, so that
 * the longest tile fills the GPU. A short prompt chunk deep in a long context beside a few decode tokens (9 tiles,
 * 144 CTAs, 16 of them with ~120k keys each) took 2 splits by the grid's count and ran on an eighth of the GPU
 * (session 33); by its own 16 CTAs it takes 17. Only where the longest tile is a prompt chunk's (SS_ATTN_LONG_TILE
 * tokens or more): the tiles of a speculative verify step (a sequence's token and drafts, up to 8 tokens each) are
 * alike, and by one tile's CTAs 4 sequences at 8k keys took 33 splits whose partial results cost more than their
 * reads (session 40). Reads the benchmark switch SS_ATTN_VERIFY_BASE (tile: one tile's CTAs for those too). */
int64_t ss_attn_prefill_split_base(const ss_cuda_attn_args *a, int64_t ctas, int64_t n_tiles);
/* The split count for decode tiles of long contexts (bound >= SS_ATTN_LONG_CONTEXT), merged by the combine
 * kernel: the fewest splits whose cost, waves × (fixed tiles + key tiles per split), is within 3% of the
 * best, where a wave is a->decode_ctas_per_sm × a->sm_count CTAs. */
int64_t ss_attn_wave_splits(const ss_cuda_attn_args *a, int64_t base);
/* The benchmark switch SS_ATTN_SPLITS=N: N key splits for decode tiles, merged by the combine kernel (no cluster),
 * at most what the workspace holds; 0 when it is unset, not a number above 0, or the launch has no workspace. */
int64_t ss_attn_forced_splits(const ss_cuda_attn_args *a);
/* A bf16 cache: 1 when a decode launch of `ctas` CTAs (all splits) takes the tensor-core kernel's 32-key form:
 * more than one wave of the 64-key form (a->decode_ctas_per_sm × a->sm_count) but no more than one wave of the
 * 32-key form (a->decode_short_ctas_per_sm × a->sm_count); never when either count is unknown. Reads the benchmark
 * switch SS_ATTN_SHORT (0: never, 1: always). */
int ss_attn_short_tiles(const ss_cuda_attn_args *a, int64_t ctas);
/* The key splits of the decode form of more CTAs a SM (a bf16 cache: 32-key tiles; an fp8 one: the dense form, the
 * decode tiles held to fewer registers, a->decode_short_ctas_per_sm CTAs a SM) for decode tiles of `base` CTAs a split
 * that the 64-key form would run in `splits` splits; 0 keeps the 64-key form.
 * - bf16: `splits` where ss_attn_short_tiles takes base × splits CTAs; else unsplit (1) where it takes base CTAs and
 *   the rule split them, up to a context bound of SS_ATTN_LONG_CONTEXT (not where the splits were forced:
 *   splits_forced, SS_ATTN_SPLITS).
 * - fp8: the dense form where its cost is no more than the 64-key form's at `splits`, each counted as whole waves of
 *   its CTAs a SM × its CTAs a SM × (4 + 64-key tiles a split); in its own cheapest split count from a bound of
 *   SS_ATTN_LONG_CONTEXT (as far as the workspace holds), unsplit below it, where it is never taken for launches
 *   the 64-key form splits; never where a count is unknown or the splits were forced.
 * Reads the benchmark switch SS_ATTN_SHORT (0: never, 1: always, at `splits`). */
int64_t ss_attn_dense_splits(const ss_cuda_attn_args *a, int64_t base, int64_t splits, int splits_forced);
/* 1 when prefill tiles (128-row blocks; a bf16 or, since session 33, an fp8 cache) take the form of 4 warps of two
 * m-tiles instead of 8 of one:
 * from a context bound (a->max_seq_len) of SS_ATTN_MT2_CONTEXT on, where an SM holds two of its CTAs
 * (a->prefill_mt2_ctas_per_sm, for the launch's cache type: its premise; one H200, 8B prefill: +6.7% at 8k tokens,
 * +12.7% at 32k, session 32; with an fp8 cache +9.5% / +23.9%, session 33); with an fp8 cache from
 * SS_ATTN_MT2_CONTEXT_FP8 on (a 2,048-token chunk from position 0: 154 against 221 us, session 38).
 * Never where it cannot launch (a->prefill_mt2_ctas_per_sm 0: Ada's shared memory, or unknown). Reads the
 * benchmark switch SS_ATTN_PREFILL (mt2: always where it launches, wm8: never). */
int ss_attn_prefill_mt2(const ss_cuda_attn_args *a);
/* 1 when prefill tiles (128-row blocks) take the form on Hopper's warpgroup MMA (attn_wgmma.cu: a bf16 cache, heads
 * of 128, sm_90) over the two above: only where the device runs it (a->prefill_wg_ok), and when at least half of the
 * rows its blocks compute are real (a->n tokens times the group, against a->n_tiles times the blocks of the longest
 * tile: an upper bound on the rows computed): prompt chunks, not decode tiles beside one. Reads the benchmark switch SS_ATTN_PREFILL (wg: always where it
 * runs; mt2, wm8: never). */
int ss_attn_prefill_wg(const ss_cuda_attn_args *a);
/* 1 when a launch takes the decode form of a CTA per sequence (attn_decode_seq.cu): where the device runs it
 * (a->seq_ok, for the cache's type), every tile one decode token (a->max_tile_tokens 1, no groups), at most 8 kv
 * heads and groups of at most 16; and by default from 9/16 of a decode token per SM (a->n * 16 >= a->sm_count * 9: 75 tokens on
 * 132 SMs) at contexts up to SS_ATTN_SEQ_CONTEXT (the bound a->max_seq_len; a graph step's is a power of two, at least
 * 256). One H200, 8B (session 42): batch 128 / 256 at 128-token prompts a step 4.0% / 2.8% faster (the kernel 31.8
 * against 38.4 us at batch 128); at 512 even; at 1,024 and 2,048 6-8% slower (its one CTA a SM streams ~21 GB/s, the
 * 64-key form's waves more). Below the bound the 64-key form's key splits fill the GPU better (attn_splits.c has the
 * crossover's numbers). Reads the benchmark switch SS_ATTN_SEQ (0: never, 1: wherever it runs). */
int ss_attn_seq_form(const ss_cuda_attn_args *a);
/* The CTAs a token's kv heads are split over in that form (1 or 2; 2 only where the kv heads divide by 2): 2 where
 * the tokens are fewer than the SMs (a->n < a->sm_count: then a CTA a token leaves SMs idle; two CTAs of half the
 * shared memory each fit an SM), else 1. Reads the benchmark switch SS_ATTN_SEQ_PARTS (1 or 2). */
int ss_attn_seq_head_parts(const ss_cuda_attn_args *a);
#ifdef __cplusplus
}
#endif

#endif

/* gemm_plan.h — which GEMMs the wgmma decode GEMM (gemm_wgmma.cu) takes over from cuBLASLt, in which tiles and k
 * slices: host-only policy, kept apart from the kernels so that CI's unit tests check it without a GPU. */
#ifndef SS_GEMM_PLAN_H
#define SS_GEMM_PLAN_H

#include <stdint.h>

#include "backend/cuda/cuda_kernels.h"

#define SS_GEMM_WG_MIN_ROWS 65  /* by default from here: below, batches are GEMV-like and cuBLASLt's tiles spread */
#define SS_GEMM_WG_MAX_ROWS 256 /* ... to here (two token tiles) */
/* 1: the rule applies unless SS_GEMM_WG says otherwise; 0: only with SS_GEMM_WG=auto */
#define SS_GEMM_WG_BY_DEFAULT 0
#define SS_GEMM_WG_MIN_STEPS 4 /* 64-element k steps a slice at least */

typedef struct ss_gemm_wg_plan {
    int bm;     /* weight rows a tile: 128 or 256 */
    int splits; /* k slices a tile (its cluster's size) */
} ss_gemm_wg_plan;

#ifdef __cplusplus
extern "C" {
#endif
/* 1 with *plan when the kernel takes out[n, m] = x[n, k] . W[m, k]^T (bf16 out), 0 when cuBLASLt does: the device runs
 * it (d->ok), n in [SS_GEMM_WG_MIN_ROWS, SS_GEMM_WG_MAX_ROWS], k % 64 == 0, and some tiling fills at most one wave: of
 * the tilings (bm 256 or 128 dividing m, splits 1..8 of at least SS_GEMM_WG_MIN_STEPS steps) whose CTAs are all
 * resident at once (d->resident), the one of the most CTAs, then the larger tile (x is read once a tile), then the
 * fewer splits. Reads the switches SS_GEMM_WG (0: never; auto: this rule; 1: the rule from one row; unset: the rule
 * when SS_GEMM_WG_BY_DEFAULT, else never), SS_GEMM_WG_BM (128 or 256) and SS_GEMM_WG_SPLITS (1..8): a forced tiling
 * need only launch, in one wave or more. */
int ss_gemm_wg_pick(const ss_gemm_wg_dev *d, int64_t n, int32_t m, int32_t k, ss_gemm_wg_plan *plan);
#ifdef __cplusplus
}
#endif

#endif

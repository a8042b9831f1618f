/* fp8_weights.h — the weights of fp8 checkpoints (F8_E4M3 tensors, each with a scale tensor): finding a weight's
 * scale and dequantising any run of its elements to f32, for the loader and for prepare alike. */
#ifndef SS_FP8_WEIGHTS_H
#define SS_FP8_WEIGHTS_H

#include <stdint.h>

#include "core/status.h"
#include "model/safetensors.h"

/* A weight's scale as a grid of blocks: element (r, c) of the [rows, cols] weight is code(r, c) times
 * scale[(r / block_rows) * grid_cols + c / block_cols]. One scale for the tensor is one block of rows x cols; a
 * scale a row (compressed-tensors' "channel", fbgemm_fp8) blocks of 1 x cols; block-wise checkpoints
 * (quantization_config.weight_block_size, e.g. 128 x 128) their blocks. Borrowed from the checkpoint. */
typedef struct ss_fp8_scale {
    const ss_st_tensor *scale; /* f32, bf16 or f16 */
    int64_t rows, cols;
    int64_t block_rows, block_cols, grid_cols;
} ss_fp8_scale;

/* Finds the scale of fp8 weight t (2-D, SS_DTYPE_E4M3) in ck: "<name>_scale" (weight_scale: compressed-tensors,
 * AutoFP8, fbgemm_fp8) or "<name>_scale_inv" (weight_scale_inv: block-wise checkpoints; multiplied too, as they
 * define it). Its shape decides the layout: one element, [rows] or [rows, 1], or with block_rows/block_cols > 0
 * (the config's weight_block_size) [ceil(rows / block_rows), ceil(cols / block_cols)]. Errors name both tensors. */
ss_status ss_fp8_scale_find(const ss_checkpoint *ck, const ss_st_tensor *t, int32_t block_rows, int32_t block_cols,
                            ss_fp8_scale *out, ss_err *err);

/* The scale of element (row, col). */
float ss_fp8_scale_at(const ss_fp8_scale *s, int64_t row, int64_t col);

/* out[i] = element off + i of t (row-major) as f32, i < n: its code's value times its scale. */
void ss_fp8_dequant(const ss_st_tensor *t, const ss_fp8_scale *s, int64_t off, int64_t n, float *out);

#endif

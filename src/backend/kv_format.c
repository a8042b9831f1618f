/* kv_format.c — the element formats of the paged KV cache: block sizes, names, and the fp8 row
 * quantisation that the cpu backend and the tests use (the cuda kernels do the same f32 arithmetic). */
#include <math.h>
#include <string.h>

#include "backend/backend.h"

size_t ss_kv_block_bytes(ss_kv_type t, ss_dtype act, int32_t block_size, int32_t kv_heads, int32_t head_dim)
{
    const size_t rows = (size_t)block_size * (size_t)kv_heads;
    if (t == SS_KV_FP8)
        return rows * (size_t)head_dim + (rows * sizeof(float) + 127) / 128 * 128;
    return rows * (size_t)head_dim * ss_dtype_size(act);
}

size_t ss_kv_fp8_row_offset(int32_t block_size, int32_t kv_heads, int32_t head_dim, size_t slot, int32_t h)
{
    const size_t blk = slot / (size_t)block_size, off = slot % (size_t)block_size;
    return blk * ss_kv_block_bytes(SS_KV_FP8, SS_DTYPE_F32, block_size, kv_heads, head_dim) +
           (off * (size_t)kv_heads + (size_t)h) * (size_t)head_dim;
}

size_t ss_kv_fp8_scale_offset(int32_t block_size, int32_t kv_heads, int32_t head_dim, size_t slot, int32_t h)
{
    const size_t blk = slot / (size_t)block_size, off = slot % (size_t)block_size;
    return blk * ss_kv_block_bytes(SS_KV_FP8, SS_DTYPE_F32, block_size, kv_heads, head_dim) +
           (size_t)block_size * (size_t)kv_heads * (size_t)head_dim + ((size_t)h * (size_t)block_size + off) * sizeof(float);
}

void ss_kv_fp8_quant_row(const float *x, int32_t n, uint8_t *q, float *scale)
{
    float a = 0.0f;
    for (int32_t i = 0; i < n; i++)
        a = fmaxf(a, fabsf(x[i]));
    const float inv = a > 0.0f ? 448.0f / a : 0.0f;
    for (int32_t i = 0; i < n; i++)
        q[i] = ss_f32_to_e4m3(x[i] * inv);
    *scale = a / 448.0f;
}

const char *ss_kv_type_name(ss_kv_type t)
{
    return t == SS_KV_FP8 ? "fp8" : "auto";
}

ss_status ss_kv_type_parse(const char *s, ss_kv_type *out, ss_err *err)
{
    if (s && !strcmp(s, "auto")) {
        *out = SS_KV_ACT;
        return SS_OK;
    }
    if (s && (!strcmp(s, "fp8") || !strcmp(s, "fp8_e4m3"))) {
        *out = SS_KV_FP8;
        return SS_OK;
    }
    return ss_err_set(err, SS_ERR_INVALID_ARG, "--kv-cache-dtype must be auto, fp8 or fp8_e4m3 (got '%s')",
                      s ? s : "(null)");
}

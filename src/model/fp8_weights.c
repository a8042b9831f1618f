/* fp8_weights.c — fp8 checkpoint weights: their scale tensors' layouts (one, a row, a block) and dequantisation
 * to f32. Hand-written: no Debian library reads Hugging Face's fp8 checkpoint conventions. */
#include "model/fp8_weights.h"

#include <stdio.h>
#include <string.h>

static int64_t fp8_ceil_div(int64_t a, int64_t b)
{
    return (a + b - 1) / b;
}

ss_status ss_fp8_scale_find(const ss_checkpoint *ck, const ss_st_tensor *t, int32_t block_rows, int32_t block_cols,
                            ss_fp8_scale *out, ss_err *err)
{
    memset(out, 0, sizeof *out);
    if (t->ndim != 2)
        return ss_err_set(err, SS_ERR_UNSUPPORTED, "tensor '%s': fp8 (F8_E4M3) with %d dimensions: only matrices are",
                          t->name, t->ndim);
    char name[512];
    const ss_st_tensor *s = NULL;
    static const char *const suffixes[] = {"_scale", "_scale_inv"};
    for (int i = 0; i < 2 && !s; i++) {
        if ((size_t)snprintf(name, sizeof name, "%s%s", t->name, suffixes[i]) >= sizeof name)
            return ss_err_set(err, SS_ERR_FORMAT, "tensor '%s': name too long", t->name);
        s = ss_checkpoint_find(ck, name, NULL);
    }
    if (!s)
        return ss_err_set(err, SS_ERR_FORMAT, "tensor '%s' is fp8 (F8_E4M3) but the checkpoint has no '%s_scale' or "
                          "'%s_scale_inv' to dequantise it with", t->name, t->name, t->name);
    if (s->dtype != SS_DTYPE_F32 && s->dtype != SS_DTYPE_BF16 && s->dtype != SS_DTYPE_F16)
        return ss_err_set(err, SS_ERR_FORMAT, "tensor '%s': its scale '%s' is %s (f32, bf16 or f16 expected)", t->name,
                          s->name, ss_dtype_name(s->dtype));
    const int64_t rows = t->shape[0], cols = t->shape[1];
    int64_t n = 1;
    for (int32_t d = 0; d < s->ndim; d++)
        n *= s->shape[d];
    ss_fp8_scale r = {s, rows, cols, rows, cols, 1};
    if (n == 1) { /* one for the tensor */
    } else if ((s->ndim == 1 && s->shape[0] == rows) || (s->ndim == 2 && s->shape[0] == rows && s->shape[1] == 1)) {
        r.block_rows = 1; /* one a row */
    } else if (s->ndim == 2 && block_rows > 0 && block_cols > 0 && s->shape[0] == fp8_ceil_div(rows, block_rows) &&
               s->shape[1] == fp8_ceil_div(cols, block_cols)) {
        r.block_rows = block_rows, r.block_cols = block_cols, r.grid_cols = s->shape[1];
    } else {
        char got[64];
        if (s->ndim == 2)
            snprintf(got, sizeof got, "[%lld,%lld]", (long long)s->shape[0], (long long)s->shape[1]);
        else
            snprintf(got, sizeof got, "%d dims, %lld elements", s->ndim, (long long)n);
        return ss_err_set(err, SS_ERR_FORMAT,
                          "tensor '%s' [%lld,%lld]: its scale '%s' is %s; expected one value, [%lld] or [%lld,1] (a "
                          "row), or with quantization_config.weight_block_size (here %d x %d) [%lld,%lld]",
                          t->name, (long long)rows, (long long)cols, s->name, got, (long long)rows, (long long)rows,
                          block_rows, block_cols, block_rows > 0 ? (long long)fp8_ceil_div(rows, block_rows) : 0LL,
                          block_cols > 0 ? (long long)fp8_ceil_div(cols, block_cols) : 0LL);
    }
    *out = r;
    return SS_OK;
}

float ss_fp8_scale_at(const ss_fp8_scale *s, int64_t row, int64_t col)
{
    const int64_t i = row / s->block_rows * s->grid_cols + col / s->block_cols;
    float v;
    ss_convert_to_f32(&v, (const uint8_t *)s->scale->data + (size_t)i * ss_dtype_size(s->scale->dtype),
                      s->scale->dtype, 1);
    return v;
}

void ss_fp8_dequant(const ss_st_tensor *t, const ss_fp8_scale *s, int64_t off, int64_t n, float *out)
{
    const uint8_t *q = (const uint8_t *)t->data + off;
    int64_t r = off / s->cols, c = off % s->cols;
    for (int64_t i = 0; i < n;) {
        /* a run of elements of one row that share a scale */
        const int64_t end_c = (c / s->block_cols + 1) * s->block_cols;
        int64_t run = (end_c < s->cols ? end_c : s->cols) - c;
        run = run < n - i ? run : n - i;
        const float sc = ss_fp8_scale_at(s, r, c);
        for (int64_t j = 0; j < run; j++)
            out[i + j] = ss_e4m3_to_f32(q[i + j]) * sc;
        i += run;
        if ((c += run) == s->cols)
            c = 0, r++;
    }
}

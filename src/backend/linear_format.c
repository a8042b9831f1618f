/* linear_format.c — the formats of projection ("linear") weights: sizes, names, and the --quantization
 * parser. The fp8 arithmetic is ss_kv_fp8_quant_row's, a row at a time (backend.h, ss_linear_bytes). */
#include <string.h>

#include "backend/backend.h"

size_t ss_linear_fp8_scale_offset(int64_t m, int64_t k)
{
    return ((size_t)m * (size_t)k + 255) & ~(size_t)255;
}

size_t ss_linear_bytes(ss_linear_type t, ss_dtype weight_dtype, int64_t m, int64_t k)
{
    if (t == SS_LINEAR_FP8)
        return ss_linear_fp8_scale_offset(m, k) + (((size_t)m * sizeof(float) + 255) & ~(size_t)255);
    return (size_t)m * (size_t)k * ss_dtype_size(weight_dtype);
}

const char *ss_linear_type_name(ss_linear_type t)
{
    return t == SS_LINEAR_FP8 ? "fp8" : t == SS_LINEAR_AUTO ? "auto" : "none";
}

ss_status ss_linear_type_parse(const char *s, ss_linear_type *out, ss_err *err)
{
    if (s && !strcmp(s, "none")) {
        *out = SS_LINEAR_ACT;
        return SS_OK;
    }
    if (s && !strcmp(s, "auto")) {
        *out = SS_LINEAR_AUTO;
        return SS_OK;
    }
    if (s && (!strcmp(s, "fp8") || !strcmp(s, "fp8_e4m3"))) {
        *out = SS_LINEAR_FP8;
        return SS_OK;
    }
    return ss_err_set(err, SS_ERR_INVALID_ARG, "--quantization must be auto, none, fp8 or fp8_e4m3 (got '%s')",
                      s ? s : "(null)");
}

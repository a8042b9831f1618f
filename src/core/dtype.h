/* dtype.h — element types of tensors and activations, and bf16/f16 <-> f32 conversion.
 * Conversions are exact (widening) or round-to-nearest-even (narrowing), as torch does. */
#ifndef SS_DTYPE_H
#define SS_DTYPE_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

/* SS_DTYPE_E4M3: fp8 (OCP E4M3FN) codes as fp8 checkpoints store projection weights; each such tensor has a scale
 * tensor (model/fp8_weights.h), so ss_convert_to_f32 gives the codes' values before that scale. */
typedef enum ss_dtype { SS_DTYPE_F32 = 0, SS_DTYPE_BF16, SS_DTYPE_F16, SS_DTYPE_I32, SS_DTYPE_E4M3, SS_DTYPE_COUNT } ss_dtype;

/* Bytes per element. */
size_t ss_dtype_size(ss_dtype t);
/* "f32", "bf16", ... (static). */
const char *ss_dtype_name(ss_dtype t);

static inline float ss_bf16_to_f32(uint16_t h)
{
    uint32_t u = (uint32_t)h << 16;
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

static inline uint16_t ss_f32_to_bf16(float f)
{
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    if ((u & 0x7fffffffu) > 0x7f800000u) /* NaN stays a quiet NaN */
        return (uint16_t)((u >> 16) | 0x40u);
    u += 0x7fffu + ((u >> 16) & 1u);
    return (uint16_t)(u >> 16);
}

float ss_f16_to_f32(uint16_t h);
uint16_t ss_f32_to_f16(float f);

/* fp8 e4m3 (OCP "E4M3FN": bias 7, no infinities, 0x7f/0xff NaN, largest finite 448), as CUDA's
 * cvt.rn.satfinite.e4m3x2.f32 converts: round to nearest even; finite values and infinities beyond the
 * range saturate to +-448; NaN gives 0x7f. Decoding is exact. */
uint8_t ss_f32_to_e4m3(float f);
float ss_e4m3_to_f32(uint8_t c);

/* Converts n elements of src (type st) to f32 in dst. Supports f32, bf16, f16 and e4m3 (unscaled codes). */
void ss_convert_to_f32(float *dst, const void *src, ss_dtype st, size_t n);
/* Converts n f32 values to type dt (f32, bf16, f16) in dst. */
void ss_convert_from_f32(void *dst, ss_dtype dt, const float *src, size_t n);

#endif

/* dtype.c — element sizes, names, and half-precision conversions. */
#include "core/dtype.h"

#include <math.h>

size_t ss_dtype_size(ss_dtype t)
{
    switch (t) {
    case SS_DTYPE_F32: return 4;
    case SS_DTYPE_BF16: return 2;
    case SS_DTYPE_F16: return 2;
    case SS_DTYPE_I32: return 4;
    case SS_DTYPE_E4M3: return 1;
    default: return 0;
    }
}

const char *ss_dtype_name(ss_dtype t)
{
    switch (t) {
    case SS_DTYPE_F32: return "f32";
    case SS_DTYPE_BF16: return "bf16";
    case SS_DTYPE_F16: return "f16";
    case SS_DTYPE_I32: return "i32";
    case SS_DTYPE_E4M3: return "f8_e4m3";
    default: return "?";
    }
}

float ss_f16_to_f32(uint16_t h)
{
    uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
    uint32_t exp = (h >> 10) & 0x1fu;
    uint32_t man = h & 0x3ffu;
    uint32_t u;
    if (exp == 0) {
        if (man == 0) {
            u = sign;
        } else { /* subnormal: renormalise */
            float f = ldexpf((float)man, -24);
            memcpy(&u, &f, sizeof u);
            u |= sign;
        }
    } else if (exp == 31) {
        u = sign | 0x7f800000u | (man << 13);
    } else {
        u = sign | ((exp + 112) << 23) | (man << 13);
    }
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

uint16_t ss_f32_to_f16(float f)
{
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    uint16_t sign = (uint16_t)((u >> 16) & 0x8000u);
    float a = fabsf(f);
    if (isnan(f))
        return (uint16_t)(sign | 0x7e00u);
    if (a >= 65520.0f)
        return (uint16_t)(sign | 0x7c00u);
    if (a < 6.103515625e-05f) { /* subnormal range: round to multiple of 2^-24 */
        return (uint16_t)(sign | (uint16_t)lrintf(a * 16777216.0f));
    }
    uint32_t exp = ((u >> 23) & 0xffu) - 112;
    uint32_t man = u & 0x7fffffu;
    uint32_t h = (exp << 10) | (man >> 13);
    uint32_t rem = man & 0x1fffu;
    if (rem > 0x1000u || (rem == 0x1000u && (h & 1u)))
        h++;
    return (uint16_t)(sign | h);
}

void ss_convert_to_f32(float *dst, const void *src, ss_dtype st, size_t n)
{
    const uint16_t *h = src;
    switch (st) {
    case SS_DTYPE_F32: memcpy(dst, src, n * sizeof(float)); break;
    case SS_DTYPE_BF16:
        for (size_t i = 0; i < n; i++)
            dst[i] = ss_bf16_to_f32(h[i]);
        break;
    case SS_DTYPE_F16:
        for (size_t i = 0; i < n; i++)
            dst[i] = ss_f16_to_f32(h[i]);
        break;
    case SS_DTYPE_E4M3:
        for (size_t i = 0; i < n; i++)
            dst[i] = ss_e4m3_to_f32(((const uint8_t *)src)[i]);
        break;
    default: break;
    }
}

void ss_convert_from_f32(void *dst, ss_dtype dt, const float *src, size_t n)
{
    uint16_t *h = dst;
    switch (dt) {
    case SS_DTYPE_F32: memcpy(dst, src, n * sizeof(float)); break;
    case SS_DTYPE_BF16:
        for (size_t i = 0; i < n; i++)
            h[i] = ss_f32_to_bf16(src[i]);
        break;
    case SS_DTYPE_F16:
        for (size_t i = 0; i < n; i++)
            h[i] = ss_f32_to_f16(src[i]);
        break;
    default: break;
    }
}

/* By hand: no Debian library converts to fp8. Every step is exact in f32 (scaling by powers of two, rintf
 * under the default round-to-nearest-even mode), so the result is the correctly rounded one. */
uint8_t ss_f32_to_e4m3(float f)
{
    if (isnan(f))
        return 0x7f;
    const uint8_t sign = signbit(f) ? 0x80 : 0x00;
    const float a = fabsf(f);
    if (a >= 448.0f) /* 448 < a <= 464 rounds to 448 (464 is a tie to the even 448); beyond: saturated */
        return (uint8_t)(sign | 0x7e);
    if (a < 0x1p-6f) /* subnormal range, steps of 2^-9; 8 steps round up to the smallest normal, code 8 */
        return (uint8_t)(sign | (uint8_t)rintf(a * 0x1p9f));
    int ex;
    (void)frexpf(a, &ex);              /* a = m * 2^ex, m in [0.5, 1): a in [2^(ex-1), 2^ex) */
    const int e = ex - 1;              /* -6 .. 8 */
    float r = rintf(ldexpf(a, 3 - e)); /* 8 .. 16: the leading one and three mantissa bits */
    int eb = e + 7;
    if (r == 16.0f) {
        r = 8.0f;
        eb++;
    }
    return (uint8_t)(sign | (eb << 3) | ((int)r - 8)); /* a < 448 keeps this below 0x7f */
}

float ss_e4m3_to_f32(uint8_t c)
{
    const int e = (c >> 3) & 15, m = c & 7;
    float v;
    if (e == 15 && m == 7)
        v = NAN;
    else if (e == 0)
        v = ldexpf((float)m, -9);
    else
        v = ldexpf((float)(8 + m), e - 10);
    return (c & 0x80) ? -v : v;
}

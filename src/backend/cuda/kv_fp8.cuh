// kv_fp8.cuh — the fp8 KV cache's format on the device (backend.h, ss_kv_block_bytes): a block is its slots' e4m3
// rows, then their f32 scales by kv head; what the store kernel writes and the attention kernels read.
#pragma once

#include <cuda_fp8.h>

#include "backend/cuda/common.cuh"

namespace ss {

// Bytes of one block: block_size x kv_heads rows of D e4m3 bytes, then the f32 scales as [kv_heads, block_size],
// padded to 128 bytes.
__host__ __device__ __forceinline__ int64_t kv_fp8_block_bytes(int block_size, int kv_heads, int D)
{
    const int64_t rows = (int64_t)block_size * kv_heads;
    return rows * D + (rows * 4 + 127) / 128 * 128;
}

// Where row (block, offset, kv head h) starts, and its scale.
__device__ __forceinline__ int64_t kv_fp8_row(int64_t block, int off, int h, int64_t block_bytes, int kv_heads, int D)
{
    return block * block_bytes + ((int64_t)off * kv_heads + h) * D;
}
__device__ __forceinline__ int64_t kv_fp8_scale(int64_t block, int off, int h, int64_t block_bytes, int block_size,
                                                int kv_heads, int D)
{
    return block * block_bytes + (int64_t)block_size * kv_heads * D + 4 * ((int64_t)h * block_size + off);
}

// Two floats to two e4m3 bytes (low byte: a), as ss_f32_to_e4m3: nearest even, saturated to +-448.
__device__ __forceinline__ uint16_t e4m3x2(float a, float b)
{
    return (uint16_t)__nv_cvt_float2_to_fp8x2(make_float2(a, b), __NV_SATFINITE, __NV_E4M3);
}

// Two e4m3 bytes (the low 16 bits of u) as an f16 pair, exactly (every e4m3 value is an f16 value).
__device__ __forceinline__ uint32_t e4m3x2_h2(uint32_t u)
{
    const __half2_raw h = __nv_cvt_fp8x2_to_halfraw2((__nv_fp8x2_storage_t)(u & 0xffffu), __NV_E4M3);
    return (uint32_t)h.x | ((uint32_t)h.y << 16);
}

// The high two e4m3 bytes of u as an f16 pair: u's upper .b16 half handed to cvt as it is, so that ptxas may
// read it in place instead of shifting it down first (e4m3x2_h2(u >> 16) costs a shift).
__device__ __forceinline__ uint32_t e4m3x2_h2_hi(uint32_t u)
{
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 890
    uint32_t r;
    asm("{\n\t.reg .b16 lo, hi;\n\tmov.b32 {lo, hi}, %1;\n\tcvt.rn.f16x2.e4m3x2 %0, hi;\n\t}" : "=r"(r) : "r"(u));
    return r;
#else // (the cvt needs sm_89; the sm_80 build's intrinsic emulates it)
    return e4m3x2_h2(u >> 16);
#endif
}

// A packed f16 pair (low half first) as __half2.
__device__ __forceinline__ __half2 as_half2(uint32_t u)
{
    __half2_raw r;
    r.x = (unsigned short)(u & 0xffffu);
    r.y = (unsigned short)(u >> 16);
    return __half2(r);
}

// Four e4m3 bytes (little-endian in u) times scale, as floats (exact, then one f32 rounding each).
__device__ __forceinline__ void e4m3x4_to_f32(uint32_t u, float scale, float *f)
{
    const float2 a = __half22float2(as_half2(e4m3x2_h2(u))), b = __half22float2(as_half2(e4m3x2_h2_hi(u)));
    f[0] = a.x * scale;
    f[1] = a.y * scale;
    f[2] = b.x * scale;
    f[3] = b.y * scale;
}

} // namespace ss

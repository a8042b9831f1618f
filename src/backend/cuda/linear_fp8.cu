// linear_fp8.cu — fp8 projection weights (backend.h, SS_LINEAR_FP8): quantising the rows of a bf16 matrix to e4m3,
// one scale a row (weights at load time, activations, one scale a token, before an fp8 cuBLASLt GEMM).
#include "backend/cuda/common.cuh"
#include "backend/cuda/cuda_kernels.h"
#include "backend/cuda/kv_fp8.cuh"

namespace ss {
namespace {

constexpr int kRowWarps = 4; // a warp a row, four rows a block

// A warp per row of x [rows, k] (k % 16 == 0): a = max |x| over the row (the row is read twice; the second read
// hits L1/L2), then q = e4m3(x * (448 / a)) and scale = a / 448: ss_kv_fp8_quant_row's arithmetic (correctly
// rounded divisions and products: the library builds with fast math).
__global__ void __launch_bounds__(kRowWarps * 32)
    quant_rows_kernel(uint8_t *q, float *scale, const bf16 *x, int64_t rows, int k)
{
    pdl_enter();
    const int lane = threadIdx.x & 31;
    const int64_t row = (int64_t)blockIdx.x * kRowWarps + (threadIdx.x >> 5);
    if (row >= rows)
        return;
    const uint4 *xv = reinterpret_cast<const uint4 *>(x + row * k); // 8 bf16 a chunk
    uint4 *qv = reinterpret_cast<uint4 *>(q + row * k);             // 16 e4m3 a chunk
    const int n16 = k / 16;
    float a = 0.0f;
    for (int i = lane; i < n16; i += 32) {
        float f[16];
        unpack8(xv[2 * i], *reinterpret_cast<float(*)[8]>(&f[0]));
        unpack8(xv[2 * i + 1], *reinterpret_cast<float(*)[8]>(&f[8]));
#pragma unroll
        for (int j = 0; j < 16; j++)
            a = fmaxf(a, fabsf(f[j]));
    }
    a = warp_reduce(a, MaxOp());
    const float inv = a > 0.0f ? __fdiv_rn(448.0f, a) : 0.0f;
    if (lane == 0)
        scale[row] = __fdiv_rn(a, 448.0f);
    for (int i = lane; i < n16; i += 32) {
        float f[16];
        unpack8(xv[2 * i], *reinterpret_cast<float(*)[8]>(&f[0]));
        unpack8(xv[2 * i + 1], *reinterpret_cast<float(*)[8]>(&f[8]));
        uint32_t w[4];
#pragma unroll
        for (int j = 0; j < 4; j++)
            w[j] = (uint32_t)e4m3x2(__fmul_rn(f[4 * j], inv), __fmul_rn(f[4 * j + 1], inv)) |
                   ((uint32_t)e4m3x2(__fmul_rn(f[4 * j + 2], inv), __fmul_rn(f[4 * j + 3], inv)) << 16);
        qv[i] = make_uint4(w[0], w[1], w[2], w[3]);
    }
}

// out[t, i] = out[t, i] * x_scale[t] * w_scale[i] over bf16 out [n, m]: the scales of an unscaled e4m3 GEMM
// (where cuBLASLt has no outer-vector scales). VEC: 8 elements a thread (m % 8 == 0).
template <bool VEC>
__global__ void __launch_bounds__(256)
    scale_out_kernel(bf16 *out, const float *x_scale, const float *w_scale, int64_t n, int m)
{
    pdl_enter();
    constexpr int E = VEC ? 8 : 1;
    const int64_t total = n * m / E;
    for (int64_t c = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; c < total; c += (int64_t)gridDim.x * blockDim.x) {
        const int64_t t = c * E / m;
        const int i0 = (int)(c * E - t * m);
        const float sx = x_scale[t];
        if constexpr (VEC) {
            uint4 *p = reinterpret_cast<uint4 *>(out) + c;
            float f[8];
            unpack8(*p, f);
#pragma unroll
            for (int j = 0; j < 8; j++)
                f[j] = f[j] * sx * w_scale[i0 + j];
            *p = pack8(f);
        } else {
            out[c] = __float2bfloat16_rn(__bfloat162float(out[c]) * sx * w_scale[i0]);
        }
    }
}

// out[t, j] = silu(g * sx[t] * sw[j]) * (u * sx[t] * sw[inter + j]), g = gu[t, j], u = gu[t, inter + j]: the
// fp8 SwiGLU over an unscaled e4m3 GEMM's product gu [n, 2 * inter] (inter % 8 == 0), 8 outputs a thread.
__global__ void __launch_bounds__(256) silu_scaled_kernel(bf16 *out, const bf16 *gu, const float *x_scale,
                                                          const float *w_scale, int64_t n, int inter)
{
    pdl_enter();
    const int64_t per_row = inter / 8, total = n * per_row;
    for (int64_t c = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; c < total; c += (int64_t)gridDim.x * blockDim.x) {
        const int64_t t = c / per_row;
        const int j0 = (int)(c - t * per_row) * 8;
        const float sx = x_scale[t];
        float g[8], u[8], o[8];
        unpack8(*reinterpret_cast<const uint4 *>(gu + t * 2 * inter + j0), g);
        unpack8(*reinterpret_cast<const uint4 *>(gu + t * 2 * inter + inter + j0), u);
#pragma unroll
        for (int j = 0; j < 8; j++) {
            const float gs = g[j] * sx * w_scale[j0 + j], us = u[j] * sx * w_scale[inter + j0 + j];
            o[j] = gs / (1.0f + __expf(-gs)) * us;
        }
        *reinterpret_cast<uint4 *>(out + t * inter + j0) = pack8(o);
    }
}

} // namespace
} // namespace ss

using namespace ss;

extern "C" int ss_cuda_fp8_quantize_rows(void *stream, void *q, float *scale, const void *x, int64_t rows, int32_t k)
{
    if (rows <= 0 || k <= 0 || k % 16 != 0 || !aligned16(x) || !aligned16(q))
        return (int)cudaErrorInvalidValue;
    const int64_t blocks = (rows + kRowWarps - 1) / kRowWarps;
    if (blocks > 0x7fffffff)
        return (int)cudaErrorInvalidValue;
    return (int)launch_pdl(quant_rows_kernel, dim3((unsigned)blocks), dim3(kRowWarps * 32), 0, (cudaStream_t)stream,
                           (uint8_t *)q, scale, (const bf16 *)x, rows, (int)k);
}

extern "C" int ss_cuda_fp8_scale_out(void *stream, void *out, const float *x_scale, const float *w_scale, int64_t n,
                                     int32_t m)
{
    if (n <= 0 || m <= 0)
        return 0;
    const bool vec = m % 8 == 0 && aligned16(out);
    const int64_t work = n * m / (vec ? 8 : 1);
    const unsigned blocks = (unsigned)(work / 256 + 1 < 4096 ? work / 256 + 1 : 4096);
    cudaStream_t s = (cudaStream_t)stream;
    return (int)(vec ? launch_pdl(scale_out_kernel<true>, dim3(blocks), dim3(256), 0, s, (bf16 *)out, x_scale,
                                  w_scale, n, (int)m)
                     : launch_pdl(scale_out_kernel<false>, dim3(blocks), dim3(256), 0, s, (bf16 *)out, x_scale,
                                  w_scale, n, (int)m));
}

extern "C" int ss_cuda_fp8_silu_scaled(void *stream, void *out, const void *gu, const float *x_scale,
                                       const float *w_scale, int64_t n, int32_t inter)
{
    if (n <= 0)
        return 0;
    if (inter <= 0 || inter % 8 != 0 || !aligned16(out) || !aligned16(gu))
        return (int)cudaErrorInvalidValue;
    const int64_t work = n * inter / 8;
    const unsigned blocks = (unsigned)(work / 256 + 1 < 4096 ? work / 256 + 1 : 4096);
    return (int)launch_pdl(silu_scaled_kernel, dim3(blocks), dim3(256), 0, (cudaStream_t)stream, (bf16 *)out,
                           (const bf16 *)gu, x_scale, w_scale, n, (int)inter);
}

// linear_fp8.cu — fp8 projection weights (backend.h, SS_LINEAR_FP8): quantising a bf16 matrix to e4m3 with one
// scale (weights at load time, activations before an fp8 cuBLASLt GEMM), and the skinny W8A16 GEMV of decoding.
#include "backend/cuda/common.cuh"
#include "backend/cuda/cuda_kernels.h"
#include "backend/cuda/kv_fp8.cuh"

namespace ss {
namespace {

constexpr int kQuantThreads = 256;
constexpr int kGemvWarps = 8;

// *amax = max |x| over n bf16 elements (n % 16 == 0, x 16-byte aligned); *amax starts at 0. The bits of
// non-negative floats order as the floats do, so an integer atomicMax finds the largest.
__global__ void __launch_bounds__(kQuantThreads) amax_kernel(unsigned *amax, const bf16 *x, int64_t n)
{
    pdl_enter();
    __shared__ float red[32];
    float a = 0.0f;
    const uint4 *xv = reinterpret_cast<const uint4 *>(x);
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < n / 8; i += (int64_t)gridDim.x * blockDim.x) {
        float f[8];
        unpack8(xv[i], f);
#pragma unroll
        for (int j = 0; j < 8; j++)
            a = fmaxf(a, fabsf(f[j]));
    }
    a = block_reduce(a, MaxOp(), 0.0f, red);
    if (threadIdx.x == 0 && a > 0.0f)
        atomicMax(amax, __float_as_uint(a));
}

// q[i] = e4m3(x[i] * (448 / a)) and, from one thread, *scale = a / 448, with a = *amax: ss_kv_fp8_quant_row's
// arithmetic (correctly rounded divisions: the library builds with fast math).
__global__ void __launch_bounds__(kQuantThreads)
    quant_kernel(uint8_t *q, float *scale, const unsigned *amax, const bf16 *x, int64_t n)
{
    pdl_enter();
    const float a = __uint_as_float(*amax);
    const float inv = a > 0.0f ? __fdiv_rn(448.0f, a) : 0.0f;
    if (blockIdx.x == 0 && threadIdx.x == 0)
        *scale = __fdiv_rn(a, 448.0f);
    const uint4 *xv = reinterpret_cast<const uint4 *>(x);
    uint4 *qv = reinterpret_cast<uint4 *>(q);
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < n / 16; i += (int64_t)gridDim.x * blockDim.x) {
        float f[16];
        float(&lo)[8] = *reinterpret_cast<float(*)[8]>(&f[0]);
        float(&hi)[8] = *reinterpret_cast<float(*)[8]>(&f[8]);
        unpack8(xv[2 * i], lo);
        unpack8(xv[2 * i + 1], hi);
        uint32_t w[4];
#pragma unroll
        for (int j = 0; j < 4; j++)
            w[j] = (uint32_t)e4m3x2(__fmul_rn(f[4 * j], inv), __fmul_rn(f[4 * j + 1], inv)) |
                   ((uint32_t)e4m3x2(__fmul_rn(f[4 * j + 2], inv), __fmul_rn(f[4 * j + 3], inv)) << 16);
        qv[i] = make_uint4(w[0], w[1], w[2], w[3]);
    }
}

// Two f16 values packed in u as floats.
__device__ __forceinline__ float2 h2_to_f32(uint32_t u)
{
    return __half22float2(*reinterpret_cast<const __half2 *>(&u));
}

// 16 e4m3 weights (one 16-byte chunk) as floats, exactly.
__device__ __forceinline__ void e4m3x16_to_f32(const uint4 &u, float (&f)[16])
{
    const uint32_t w[4] = {u.x, u.y, u.z, u.w};
#pragma unroll
    for (int j = 0; j < 4; j++) {
        const float2 a = h2_to_f32(e4m3x2_h2(w[j])), b = h2_to_f32(e4m3x2_h2(w[j] >> 16));
        f[4 * j] = a.x, f[4 * j + 1] = a.y, f[4 * j + 2] = b.x, f[4 * j + 3] = b.y;
    }
}

// out[n, m] = (x[n, k] . e4m3(Wq[m, k])^T) * scale (+ bias), bf16 out, f32 accumulation in a fixed order. Warp w of
// the grid owns rows [w*R, w*R + R); every lane takes 16-byte chunks of its rows (16 weights) k/16/32 apart and
// the matching 16 x values of each of the N rows of x (from L1: x is small and shared by the block's rows).
// The summation order is fixed (lane by lane, then the warp's butterfly), so results do not vary run to run.
template <int N, int R>
__global__ void __launch_bounds__(kGemvWarps * 32)
    gemv_fp8_kernel(bf16 *__restrict__ out, const bf16 *__restrict__ x, const uint8_t *__restrict__ W,
                    const float *__restrict__ scale, const bf16 *__restrict__ bias, int m, int k)
{
    const int lane = threadIdx.x & 31;
    const int64_t row0 = ((int64_t)blockIdx.x * kGemvWarps + (threadIdx.x >> 5)) * R;
    pdl_enter();
    if (row0 >= m)
        return;
    const int kc = k / 16;
    const uint4 *wrow[R];
#pragma unroll
    for (int r = 0; r < R; r++) {
        const int64_t rr = row0 + r < m ? row0 + r : m - 1; // rows past the end repeat the last (not stored)
        wrow[r] = reinterpret_cast<const uint4 *>(W + rr * k);
    }
    float acc[R][N];
#pragma unroll
    for (int r = 0; r < R; r++)
#pragma unroll
        for (int i = 0; i < N; i++)
            acc[r][i] = 0.0f;
    // U chunks of every row are loaded before any is used: U*R 16-byte loads in flight per lane.
    constexpr int U = 2;
    for (int c0 = lane; c0 < kc; c0 += 32 * U) {
        uint4 wq[U][R];
#pragma unroll
        for (int u = 0; u < U; u++)
#pragma unroll
            for (int r = 0; r < R; r++)
                wq[u][r] = c0 + 32 * u < kc ? __ldcs(wrow[r] + c0 + 32 * u) : make_uint4(0, 0, 0, 0);
#pragma unroll
        for (int u = 0; u < U; u++) {
            const int c = c0 + 32 * u;
            if (c >= kc)
                break;
            float w[R][16];
#pragma unroll
            for (int r = 0; r < R; r++)
                e4m3x16_to_f32(wq[u][r], w[r]);
#pragma unroll
            for (int i = 0; i < N; i++) {
                const uint4 *xv = reinterpret_cast<const uint4 *>(x + (int64_t)i * k) + 2 * c;
                float f[8];
#pragma unroll
                for (int h = 0; h < 2; h++) {
                    unpack8(xv[h], f);
#pragma unroll
                    for (int j = 0; j < 8; j++)
#pragma unroll
                        for (int r = 0; r < R; r++)
                            acc[r][i] = fmaf(f[j], w[r][8 * h + j], acc[r][i]);
                }
            }
        }
    }
    const float s = *scale;
#pragma unroll
    for (int r = 0; r < R; r++)
#pragma unroll
        for (int i = 0; i < N; i++) {
            const float v = warp_reduce(acc[r][i], SumOp());
            if (lane == 0 && row0 + r < m) {
                float y = v * s;
                if (bias)
                    y += __bfloat162float(bias[row0 + r]);
                out[(int64_t)i * m + row0 + r] = __float2bfloat16_rn(y);
            }
        }
}

template <int N>
cudaError_t launch_gemv_n(bf16 *out, const bf16 *x, const uint8_t *W, const float *scale, const bf16 *bias, int m,
                          int k, cudaStream_t s)
{
    constexpr int R = N <= 2 ? 1 : 2; // more rows per warp share x's loads as n grows
    const int64_t warps = ((int64_t)m + R - 1) / R;
    return launch_pdl(gemv_fp8_kernel<N, R>, dim3(blocks_for(warps, kGemvWarps)), dim3(kGemvWarps * 32), 0, s, out,
                      x, W, scale, bias, m, k);
}

bool aligned16(const void *p)
{
    return ((uintptr_t)p & 15u) == 0;
}

} // namespace
} // namespace ss

using namespace ss;

extern "C" int ss_cuda_fp8_quantize(void *stream, void *q, float *scale, unsigned *amax_tmp, const void *x, int64_t n)
{
    if (n <= 0 || n % 16 != 0 || !aligned16(x) || !aligned16(q))
        return (int)cudaErrorInvalidValue;
    cudaStream_t s = (cudaStream_t)stream;
    cudaError_t e = cudaMemsetAsync(amax_tmp, 0, sizeof(unsigned), s);
    if (e != cudaSuccess)
        return (int)e;
    int dev = 0, sms = 0;
    if (cudaGetDevice(&dev) != cudaSuccess || cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, dev) != cudaSuccess)
        sms = 132;
    const int64_t want = (n / 16 + kQuantThreads - 1) / kQuantThreads;
    const unsigned blocks = (unsigned)(want < 4 * (int64_t)sms ? (want > 0 ? want : 1) : 4 * sms);
    e = launch_pdl(amax_kernel, dim3(blocks), dim3(kQuantThreads), 0, s, amax_tmp, (const bf16 *)x, n);
    if (e != cudaSuccess)
        return (int)e;
    return (int)launch_pdl(quant_kernel, dim3(blocks), dim3(kQuantThreads), 0, s, (uint8_t *)q, scale,
                           (const unsigned *)amax_tmp, (const bf16 *)x, n);
}

extern "C" int ss_cuda_gemv_fp8_supported(const void *x, const void *W, int64_t n, int32_t k)
{
    return n >= 1 && n <= SS_CUDA_GEMV_MAX_N && k % 16 == 0 && aligned16(x) && aligned16(W);
}

extern "C" int ss_cuda_gemv_fp8(void *stream, void *out, const void *x, const void *W, const float *scale,
                                const void *bias, int64_t n, int32_t m, int32_t k)
{
    if (!ss_cuda_gemv_fp8_supported(x, W, n, k))
        return (int)cudaErrorInvalidValue;
    cudaStream_t s = (cudaStream_t)stream;
    bf16 *o = (bf16 *)out;
    const bf16 *xb = (const bf16 *)x, *b = (const bf16 *)bias;
    const uint8_t *w = (const uint8_t *)W;
    switch (n) {
    case 1: return (int)launch_gemv_n<1>(o, xb, w, scale, b, m, k, s);
    case 2: return (int)launch_gemv_n<2>(o, xb, w, scale, b, m, k, s);
    case 3: return (int)launch_gemv_n<3>(o, xb, w, scale, b, m, k, s);
    case 4: return (int)launch_gemv_n<4>(o, xb, w, scale, b, m, k, s);
    case 5: return (int)launch_gemv_n<5>(o, xb, w, scale, b, m, k, s);
    case 6: return (int)launch_gemv_n<6>(o, xb, w, scale, b, m, k, s);
    case 7: return (int)launch_gemv_n<7>(o, xb, w, scale, b, m, k, s);
    default: return (int)launch_gemv_n<8>(o, xb, w, scale, b, m, k, s);
    }
}

// gemv.cu — the skinny GEMM of decoding: out[n, m] = x[n, k] . W[m, k]^T (+ bias) for n <= 8.
// W is streamed once at close to the memory bandwidth: each warp owns R consecutive rows, every lane
// loads 16 bytes (8 bf16) per row per step with U steps in flight, x (small, shared by all warps) comes
// through L1/L2, accumulation is fp32 for all n rows of x at once. Larger n goes to cuBLASLt.
#include "backend/cuda/common.cuh"
#include "backend/cuda/cuda_kernels.h"

namespace ss {
namespace {

constexpr int kWarpsPerBlock = 8;
constexpr int kRows = 2;   // rows of W per warp
constexpr int kUnroll = 2; // 16-byte steps in flight per row

__device__ __forceinline__ void store_out(float *out, float v)
{
    *out = v;
}
__device__ __forceinline__ void store_out(bf16 *out, float v)
{
    *out = __float2bfloat16_rn(v);
}

// Loads that should not displace x from the caches: W is read exactly once.
__device__ __forceinline__ uint4 load_stream(const uint4 *p)
{
    return __ldcs(p);
}

template <int N, int R, int U, typename OutT>
__global__ void __launch_bounds__(kWarpsPerBlock * 32)
    gemv_kernel(OutT *__restrict__ out, const bf16 *__restrict__ x, const bf16 *__restrict__ W,
                const bf16 *__restrict__ bias, int m, int k)
{
    const int lane = threadIdx.x & 31;
    const int64_t warp = (int64_t)blockIdx.x * kWarpsPerBlock + (threadIdx.x >> 5);
    const int64_t row0 = warp * R;
    if (row0 >= m)
        return;
    const int kc = k / 8; // 16-byte chunks per row
    const uint4 *wrow[R];
#pragma unroll
    for (int r = 0; r < R; r++) {
        const int64_t rr = row0 + r < m ? row0 + r : m - 1; // rows past the end repeat the last (not stored)
        wrow[r] = reinterpret_cast<const uint4 *>(W + rr * k);
    }
    const uint4 *xv = reinterpret_cast<const uint4 *>(x);

    float acc[R][N];
#pragma unroll
    for (int r = 0; r < R; r++)
#pragma unroll
        for (int i = 0; i < N; i++)
            acc[r][i] = 0.0f;

    for (int c0 = lane; c0 < kc; c0 += 32 * U) {
        uint4 wv[U][R];
#pragma unroll
        for (int u = 0; u < U; u++) {
            const int c = c0 + u * 32;
#pragma unroll
            for (int r = 0; r < R; r++)
                wv[u][r] = c < kc ? load_stream(wrow[r] + c) : make_uint4(0, 0, 0, 0);
        }
#pragma unroll
        for (int u = 0; u < U; u++) {
            const int c = c0 + u * 32;
            if (c < kc) {
                float wf[R][8];
#pragma unroll
                for (int r = 0; r < R; r++)
                    unpack8(wv[u][r], wf[r]);
#pragma unroll
                for (int i = 0; i < N; i++) {
                    float xf[8];
                    unpack8(__ldg(xv + (int64_t)i * kc + c), xf);
#pragma unroll
                    for (int r = 0; r < R; r++)
#pragma unroll
                        for (int e = 0; e < 8; e++)
                            acc[r][i] = fmaf(wf[r][e], xf[e], acc[r][i]);
                }
            }
        }
    }

#pragma unroll
    for (int r = 0; r < R; r++)
#pragma unroll
        for (int i = 0; i < N; i++)
            acc[r][i] = warp_reduce(acc[r][i], SumOp());

    if (lane == 0) {
#pragma unroll
        for (int r = 0; r < R; r++) {
            const int64_t row = row0 + r;
            if (row < m) {
                const float b = bias ? __bfloat162float(bias[row]) : 0.0f;
#pragma unroll
                for (int i = 0; i < N; i++)
                    store_out(out + (int64_t)i * m + row, acc[r][i] + b);
            }
        }
    }
}

template <int N, typename OutT>
void launch_gemv(OutT *out, const bf16 *x, const bf16 *W, const bf16 *bias, int m, int k, cudaStream_t s)
{
    const int64_t warps = ((int64_t)m + kRows - 1) / kRows;
    const unsigned blocks = blocks_for(warps, kWarpsPerBlock);
    gemv_kernel<N, kRows, kUnroll, OutT><<<blocks, kWarpsPerBlock * 32, 0, s>>>(out, x, W, bias, m, k);
}

template <typename OutT>
void dispatch_n(int64_t n, OutT *out, const bf16 *x, const bf16 *W, const bf16 *bias, int m, int k, cudaStream_t s)
{
    switch (n) {
    case 1: launch_gemv<1>(out, x, W, bias, m, k, s); break;
    case 2: launch_gemv<2>(out, x, W, bias, m, k, s); break;
    case 3: launch_gemv<3>(out, x, W, bias, m, k, s); break;
    case 4: launch_gemv<4>(out, x, W, bias, m, k, s); break;
    case 5: launch_gemv<5>(out, x, W, bias, m, k, s); break;
    case 6: launch_gemv<6>(out, x, W, bias, m, k, s); break;
    case 7: launch_gemv<7>(out, x, W, bias, m, k, s); break;
    default: launch_gemv<8>(out, x, W, bias, m, k, s); break;
    }
}

} // namespace
} // namespace ss

using namespace ss;

extern "C" int ss_cuda_gemv_supported(const void *x, const void *W, int64_t n, int32_t k)
{
    return n >= 1 && n <= SS_CUDA_GEMV_MAX_N && k > 0 && k % 8 == 0 && ((uintptr_t)x & 15u) == 0 &&
           ((uintptr_t)W & 15u) == 0;
}

extern "C" int ss_cuda_gemv(void *stream, void *out, int out_f32, const void *x, const void *W, const void *bias,
                            int64_t n, int32_t m, int32_t k)
{
    if (!ss_cuda_gemv_supported(x, W, n, k) || m <= 0)
        return (int)cudaErrorInvalidValue;
    cudaStream_t s = (cudaStream_t)stream;
    const bf16 *xb = (const bf16 *)x, *Wb = (const bf16 *)W, *bb = (const bf16 *)bias;
    if (out_f32)
        dispatch_n(n, (float *)out, xb, Wb, bb, m, k, s);
    else
        dispatch_n(n, (bf16 *)out, xb, Wb, bb, m, k, s);
    return launch_status();
}

// linear_fp8.cu — fp8 projection weights (backend.h, SS_LINEAR_FP8): quantising a bf16 matrix to e4m3 with one
// scale (weights at load time, activations before an fp8 cuBLASLt GEMM). The decode GEMV over them is gemv.cu's.
#include "backend/cuda/common.cuh"
#include "backend/cuda/cuda_kernels.h"
#include "backend/cuda/kv_fp8.cuh"

namespace ss {
namespace {

constexpr int kQuantThreads = 256;

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

} // namespace
} // namespace ss

using namespace ss;

extern "C" int ss_cuda_fp8_quantize(void *stream, void *q, float *scale, unsigned *amax_tmp, const void *x, int64_t n,
                                    int sms)
{
    if (n <= 0 || n % 16 != 0 || !aligned16(x) || !aligned16(q))
        return (int)cudaErrorInvalidValue;
    cudaStream_t s = (cudaStream_t)stream;
    cudaError_t e = cudaMemsetAsync(amax_tmp, 0, sizeof(unsigned), s);
    if (e != cudaSuccess)
        return (int)e;
    sms = sms > 0 ? sms : 1;
    const int64_t want = (n / 16 + kQuantThreads - 1) / kQuantThreads;
    const unsigned blocks = (unsigned)(want < 4 * (int64_t)sms ? (want > 0 ? want : 1) : 4 * sms);
    e = launch_pdl(amax_kernel, dim3(blocks), dim3(kQuantThreads), 0, s, amax_tmp, (const bf16 *)x, n);
    if (e != cudaSuccess)
        return (int)e;
    return (int)launch_pdl(quant_kernel, dim3(blocks), dim3(kQuantThreads), 0, s, (uint8_t *)q, scale,
                           (const unsigned *)amax_tmp, (const bf16 *)x, n);
}

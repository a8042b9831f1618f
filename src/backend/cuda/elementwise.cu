// elementwise.cu — row copies (embedding gather, gather_rows), SiLU*mul, add, bias add.
// Memory-bound one-pass kernels: 16-byte accesses where shapes and alignment allow, scalar otherwise.
#include "backend/cuda/common.cuh"
#include "backend/cuda/cuda_kernels.h"

namespace ss {
namespace {

constexpr int kThreads = 256;

// Copies one row of `dim` bf16 (or zero-fills it when src is NULL), VEC elements per access.
template <int VEC> __device__ __forceinline__ void copy_row(bf16 *dst, const bf16 *src, int dim)
{
    const int chunks = dim / VEC;
    for (int c = threadIdx.x; c < chunks; c += blockDim.x) {
        float f[VEC];
        if (src) {
            load_vec<VEC>(src + (int64_t)c * VEC, f);
        } else {
#pragma unroll
            for (int i = 0; i < VEC; i++)
                f[i] = 0.0f;
        }
        store_vec<VEC>(dst + (int64_t)c * VEC, f);
    }
}

template <int VEC>
__global__ void embed_kernel(bf16 *out, const bf16 *table, const int32_t *ids, const int32_t *fed, int dim,
                             int64_t row_start, int64_t rows)
{
    const int64_t i = blockIdx.x;
    const int64_t id = ids[i] < 0 && fed ? fed[-1 - (int64_t)ids[i]] : ids[i]; /* no PDL: fed is final here */
    const int64_t r = id - row_start;
    const bf16 *src = (r >= 0 && r < rows) ? table + r * dim : nullptr;
    copy_row<VEC>(out + i * dim, src, dim);
}

template <int VEC> __global__ void gather_kernel(bf16 *out, const bf16 *x, const int32_t *idx, int dim)
{
    pdl_enter();
    const int64_t j = blockIdx.x;
    copy_row<VEC>(out + j * dim, x + (int64_t)idx[j] * dim, dim);
}

template <int VEC> __global__ void silu_mul_kernel(bf16 *out, const bf16 *gu, int64_t n, int inter)
{
    pdl_enter();
    const int64_t chunks_per_row = inter / VEC;
    const int64_t total = n * chunks_per_row;
    for (int64_t c = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; c < total; c += (int64_t)gridDim.x * blockDim.x) {
        const int64_t t = c / chunks_per_row;
        const int64_t j = (c % chunks_per_row) * VEC;
        float g[VEC], u[VEC], o[VEC];
        load_vec<VEC>(gu + t * 2 * inter + j, g);
        load_vec<VEC>(gu + t * 2 * inter + inter + j, u);
#pragma unroll
        for (int i = 0; i < VEC; i++)
            o[i] = g[i] / (1.0f + __expf(-g[i])) * u[i];
        store_vec<VEC>(out + t * inter + j, o);
    }
}

template <int VEC> __global__ void add_kernel(bf16 *out, const bf16 *a, const bf16 *b, int64_t n)
{
    const int64_t chunks = n / VEC;
    for (int64_t c = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; c < chunks; c += (int64_t)gridDim.x * blockDim.x) {
        float x[VEC], y[VEC];
        load_vec<VEC>(a + c * VEC, x);
        load_vec<VEC>(b + c * VEC, y);
#pragma unroll
        for (int i = 0; i < VEC; i++)
            x[i] += y[i];
        store_vec<VEC>(out + c * VEC, x);
    }
}

__device__ __forceinline__ float to_f(float v)
{
    return v;
}
__device__ __forceinline__ float to_f(bf16 v)
{
    return __bfloat162float(v);
}
__device__ __forceinline__ void from_f(float &d, float v)
{
    d = v;
}
__device__ __forceinline__ void from_f(bf16 &d, float v)
{
    d = __float2bfloat16_rn(v);
}

template <typename T> __global__ void add_bias_kernel(T *out, const bf16 *bias, int64_t rows, int m)
{
    const int64_t total = rows * m;
    for (int64_t e = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; e < total; e += (int64_t)gridDim.x * blockDim.x)
        from_f(out[e], to_f(out[e]) + __bfloat162float(bias[e % m]));
}

// Grid for grid-stride loops: enough blocks to fill the GPU, bounded.
unsigned stride_blocks(int64_t work)
{
    int64_t b = (work + kThreads - 1) / kThreads;
    if (b > 65536)
        b = 65536;
    return (unsigned)(b < 1 ? 1 : b);
}

unsigned row_threads(int dim, int vec)
{
    int chunks = dim / vec;
    int t = ((chunks + 31) / 32) * 32;
    return (unsigned)(t < 32 ? 32 : (t > 512 ? 512 : t));
}

} // namespace
} // namespace ss

using namespace ss;

extern "C" int ss_cuda_embed(void *stream, void *out, const void *table, const int32_t *ids, const int32_t *fed,
                             int64_t n, int32_t dim, int64_t row_start, int64_t rows)
{
    if (n <= 0)
        return 0;
    cudaStream_t s = (cudaStream_t)stream;
    if (dim % 8 == 0 && aligned16(out) && aligned16(table)) {
        embed_kernel<8><<<(unsigned)n, row_threads(dim, 8), 0, s>>>((bf16 *)out, (const bf16 *)table, ids, fed,
                                                                     dim, row_start, rows);
    } else {
        embed_kernel<1><<<(unsigned)n, row_threads(dim, 1), 0, s>>>((bf16 *)out, (const bf16 *)table, ids, fed,
                                                                     dim, row_start, rows);
    }
    return launch_status();
}

extern "C" int ss_cuda_gather_rows(void *stream, void *out, const void *x, const int32_t *idx, int64_t m,
                                   int32_t dim)
{
    if (m <= 0)
        return 0;
    cudaStream_t s = (cudaStream_t)stream;
    const bool vec = dim % 8 == 0 && aligned16(out) && aligned16(x);
    const cudaError_t e = launch_pdl(vec ? gather_kernel<8> : gather_kernel<1>, dim3((unsigned)m),
                                     dim3(row_threads(dim, vec ? 8 : 1)), 0, s, (bf16 *)out, (const bf16 *)x, idx, dim);
    return e != cudaSuccess ? (int)e : launch_status();
}

extern "C" int ss_cuda_silu_mul(void *stream, void *out, const void *gu, int64_t n, int32_t inter)
{
    if (n <= 0)
        return 0;
    cudaStream_t s = (cudaStream_t)stream;
    const bool vec = inter % 8 == 0 && aligned16(out) && aligned16(gu);
    const cudaError_t e = launch_pdl(vec ? silu_mul_kernel<8> : silu_mul_kernel<1>,
                                     dim3(stride_blocks(vec ? n * inter / 8 : n * inter)), dim3(kThreads), 0, s,
                                     (bf16 *)out, (const bf16 *)gu, n, inter);
    return e != cudaSuccess ? (int)e : launch_status();
}

extern "C" int ss_cuda_add(void *stream, void *out, const void *a, const void *b, int64_t n)
{
    if (n <= 0)
        return 0;
    cudaStream_t s = (cudaStream_t)stream;
    if (n % 8 == 0 && aligned16(out) && aligned16(a) && aligned16(b))
        add_kernel<8><<<stride_blocks(n / 8), kThreads, 0, s>>>((bf16 *)out, (const bf16 *)a, (const bf16 *)b, n);
    else
        add_kernel<1><<<stride_blocks(n), kThreads, 0, s>>>((bf16 *)out, (const bf16 *)a, (const bf16 *)b, n);
    return launch_status();
}

extern "C" int ss_cuda_add_bias(void *stream, void *out, int out_f32, const void *bias, int64_t rows, int32_t m)
{
    if (rows <= 0 || m <= 0)
        return 0;
    cudaStream_t s = (cudaStream_t)stream;
    if (out_f32)
        add_bias_kernel<float><<<stride_blocks(rows * m), kThreads, 0, s>>>((float *)out, (const bf16 *)bias, rows, m);
    else
        add_bias_kernel<bf16><<<stride_blocks(rows * m), kThreads, 0, s>>>((bf16 *)out, (const bf16 *)bias, rows, m);
    return launch_status();
}

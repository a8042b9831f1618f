// norm.cu — RMSNorm of rows (optionally fused with the residual add) and per-head RMSNorm (Qwen3 q/k norm).
// One block per row; sums of squares in fp32; the row is read twice (the second read hits L1/L2).
#include "backend/cuda/common.cuh"
#include "backend/cuda/cuda_kernels.h"

namespace ss {
namespace {

// ADD: residual[row] += x[row] (rounded to bf16, as a bf16 model does), then normalise the residual.
// Each thread touches the same chunks in both passes, so its own residual writes are what it rereads.
// When a row is one chunk per thread (decode shapes: 4096 / 8 = 512 threads), the thread's chunk stays in
// registers, and its chunk of w — a weight, never written by a kernel, and likely in HBM rather than L2 —
// is read before the wait for the previous kernel, so the only memory trip after it is to x and residual.
template <int VEC, bool ADD>
__global__ void rmsnorm_kernel(bf16 *out, bf16 *residual, const bf16 *x, const bf16 *w, int dim, float eps)
{
    __shared__ float red[32];
    const int64_t row = blockIdx.x;
    const int chunks = dim / VEC;
    if (chunks <= (int)blockDim.x) {
        const int c = threadIdx.x;
        const bool on = c < chunks;
        float g[VEC], v[VEC];
        if (on)
            load_vec<VEC>(w + (int64_t)c * VEC, g);
        pdl_enter();
        float ss = 0.0f;
        if (on) {
            load_vec<VEC>(x + row * dim + (int64_t)c * VEC, v);
            if (ADD) {
                float r[VEC];
                load_vec<VEC>(residual + row * dim + (int64_t)c * VEC, r);
#pragma unroll
                for (int i = 0; i < VEC; i++)
                    v[i] = round_bf16(r[i] + v[i]);
                store_vec<VEC>(residual + row * dim + (int64_t)c * VEC, v);
            }
#pragma unroll
            for (int i = 0; i < VEC; i++)
                ss += v[i] * v[i];
        }
        const float inv = rsqrtf(block_reduce(ss, SumOp(), 0.0f, red) / (float)dim + eps);
        if (on) {
#pragma unroll
            for (int i = 0; i < VEC; i++)
                v[i] = v[i] * inv * g[i];
            store_vec<VEC>(out + row * dim + (int64_t)c * VEC, v);
        }
        return;
    }
    pdl_enter();
    const bf16 *xr = x + row * dim;
    bf16 *rr = ADD ? residual + row * dim : nullptr;
    float ss = 0.0f;
    for (int c = threadIdx.x; c < chunks; c += blockDim.x) {
        float v[VEC];
        load_vec<VEC>(xr + (int64_t)c * VEC, v);
        if (ADD) {
            float r[VEC];
            load_vec<VEC>(rr + (int64_t)c * VEC, r);
#pragma unroll
            for (int i = 0; i < VEC; i++)
                v[i] = round_bf16(r[i] + v[i]);
            store_vec<VEC>(rr + (int64_t)c * VEC, v);
        }
#pragma unroll
        for (int i = 0; i < VEC; i++)
            ss += v[i] * v[i];
    }
    const float total = block_reduce(ss, SumOp(), 0.0f, red);
    const float inv = rsqrtf(total / (float)dim + eps);
    const bf16 *src = ADD ? rr : xr;
    for (int c = threadIdx.x; c < chunks; c += blockDim.x) {
        float v[VEC], g[VEC];
        load_vec<VEC>(src + (int64_t)c * VEC, v);
        load_vec<VEC>(w + (int64_t)c * VEC, g);
#pragma unroll
        for (int i = 0; i < VEC; i++)
            v[i] = v[i] * inv * g[i];
        store_vec<VEC>(out + row * dim + (int64_t)c * VEC, v);
    }
}

// One warp per (token, head); in place.
constexpr int kHeadWarps = 4;
__global__ void head_rmsnorm_kernel(bf16 *x, const bf16 *w, int64_t n, int heads, int head_dim, int64_t tok_stride,
                                    float eps)
{
    const int64_t item = (int64_t)blockIdx.x * kHeadWarps + (threadIdx.x >> 5);
    const int lane = threadIdx.x & 31;
    if (item >= n * heads)
        return;
    const int64_t t = item / heads;
    const int h = (int)(item % heads);
    bf16 *p = x + t * tok_stride + (int64_t)h * head_dim;
    float ss = 0.0f;
    for (int i = lane; i < head_dim; i += 32) {
        const float v = __bfloat162float(p[i]);
        ss += v * v;
    }
    ss = warp_reduce(ss, SumOp());
    const float inv = rsqrtf(ss / (float)head_dim + eps);
    for (int i = lane; i < head_dim; i += 32)
        p[i] = __float2bfloat16_rn(__bfloat162float(p[i]) * inv * __bfloat162float(w[i]));
}

unsigned row_threads(int chunks)
{
    int t = ((chunks + 31) / 32) * 32;
    return (unsigned)(t < 32 ? 32 : (t > 1024 ? 1024 : t));
}

} // namespace
} // namespace ss

using namespace ss;

extern "C" int ss_cuda_rmsnorm(void *stream, void *out, void *residual, const void *x, const void *w, int64_t rows,
                               int32_t dim, float eps)
{
    if (rows <= 0)
        return 0;
    cudaStream_t s = (cudaStream_t)stream;
    const bool vec = dim % 8 == 0 && aligned16(out) && aligned16(x) && aligned16(w) &&
                     (residual == nullptr || aligned16(residual));
    bf16 *o = (bf16 *)out;
    bf16 *r = (bf16 *)residual;
    const bf16 *xi = (const bf16 *)x;
    const bf16 *wi = (const bf16 *)w;
    const unsigned g = (unsigned)rows;
    cudaError_t e;
    if (vec && r)
        e = launch_pdl(rmsnorm_kernel<8, true>, dim3(g), dim3(row_threads(dim / 8)), 0, s, o, r, xi, wi, dim, eps);
    else if (vec)
        e = launch_pdl(rmsnorm_kernel<8, false>, dim3(g), dim3(row_threads(dim / 8)), 0, s, o, r, xi, wi, dim, eps);
    else if (r)
        e = launch_pdl(rmsnorm_kernel<1, true>, dim3(g), dim3(row_threads(dim)), 0, s, o, r, xi, wi, dim, eps);
    else
        e = launch_pdl(rmsnorm_kernel<1, false>, dim3(g), dim3(row_threads(dim)), 0, s, o, r, xi, wi, dim, eps);
    return e != cudaSuccess ? (int)e : launch_status();
}

extern "C" int ss_cuda_head_rmsnorm(void *stream, void *x, const void *w, int64_t n, int32_t heads, int32_t head_dim,
                                    int64_t tok_stride, float eps)
{
    if (n <= 0 || heads <= 0)
        return 0;
    const unsigned blocks = blocks_for(n * heads, kHeadWarps);
    head_rmsnorm_kernel<<<blocks, kHeadWarps * 32, 0, (cudaStream_t)stream>>>((bf16 *)x, (const bf16 *)w, n, heads,
                                                                             head_dim, tok_stride, eps);
    return launch_status();
}

// rope.cu — rotary position embedding in place, rotate-half convention (Hugging Face Llama/Qwen), alone
// or fused with the paged-cache store of k and v. Angles in fp32 as the reference computes them, sin/cos
// in double (fast-math sinf is inaccurate for the large angles of long contexts).
#include "backend/cuda/common.cuh"
#include "backend/cuda/cuda_kernels.h"

namespace ss {
namespace {

constexpr int kThreads = 256;

__global__ void rope_kernel(bf16 *x, const int32_t *pos, const float *inv_freq, int64_t n, int heads, int head_dim,
                            int64_t tok_stride)
{
    pdl_enter();
    const int half = head_dim / 2;
    const int64_t total = n * heads * half;
    for (int64_t e = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; e < total; e += (int64_t)gridDim.x * blockDim.x) {
        const int i = (int)(e % half);
        const int64_t th = e / half;
        const int h = (int)(th % heads);
        const int64_t t = th / heads;
        const float angle = (float)pos[t] * inv_freq[i];
        double sd, cd;
        sincos((double)angle, &sd, &cd);
        const float s = (float)sd, c = (float)cd;
        bf16 *p = x + t * tok_stride + (int64_t)h * head_dim;
        const float x1 = __bfloat162float(p[i]);
        const float x2 = __bfloat162float(p[i + half]);
        p[i] = __float2bfloat16_rn(x1 * c - x2 * s);
        p[i + half] = __float2bfloat16_rn(x2 * c + x1 * s);
    }
}

// Blocks (token t, part y): each computes the sin/cos of t's half-head angles once (they do not depend on
// the head), rotates its share of t's q and k pairs in place (one pair per thread: at batch 1 the whole
// row is one wave, not a loop), and writes the rotated k heads and its share of the v row to t's cache
// slot (skipped for slot < 0). The stored values are the rounded bf16 the row holds, as rope followed by
// kv_store would store them. VEC: 8 when v rows can move in 16-byte pieces.
template <int VEC>
__global__ void rope_kv_store_kernel(bf16 *qkv, const int32_t *pos, const float *inv_freq, int q_heads, int kv_heads,
                                     int head_dim, int64_t tok_stride, bf16 *k_cache, bf16 *v_cache,
                                     const int32_t *slots)
{
    extern __shared__ float trig[]; // [half] cos then [half] sin
    // The angles, and the slot, come from the step's metadata and the rope table, which no kernel writes
    // (uploaded before the step): computed before the wait for the previous kernel (the q/k/v GEMV).
    const int64_t t = blockIdx.x;
    const int half = head_dim / 2, heads = q_heads + kv_heads, kv_row = kv_heads * head_dim;
    const float p = (float)pos[t];
    for (int i = threadIdx.x; i < half; i += blockDim.x) {
        double sd, cd;
        sincos((double)(p * inv_freq[i]), &sd, &cd);
        trig[i] = (float)cd;
        trig[half + i] = (float)sd;
    }
    const int32_t slot = slots[t];
    pdl_enter();
    __syncthreads();
    bf16 *row = qkv + t * tok_stride;
    bf16 *kd = slot >= 0 ? k_cache + (int64_t)slot * kv_row : nullptr;
    const int stride = gridDim.y * blockDim.x, first = blockIdx.y * blockDim.x + threadIdx.x;
    for (int e = first; e < heads * half; e += stride) {
        const int h = e / half, i = e % half;
        bf16 *ph = row + h * head_dim;
        const float c = trig[i], s = trig[half + i];
        const float x1 = __bfloat162float(ph[i]), x2 = __bfloat162float(ph[i + half]);
        const bf16 y1 = __float2bfloat16_rn(x1 * c - x2 * s), y2 = __float2bfloat16_rn(x2 * c + x1 * s);
        ph[i] = y1;
        ph[i + half] = y2;
        if (h >= q_heads && kd) {
            kd[(h - q_heads) * head_dim + i] = y1;
            kd[(h - q_heads) * head_dim + i + half] = y2;
        }
    }
    if (slot < 0)
        return;
    const bf16 *vs = row + (int64_t)heads * head_dim;
    bf16 *vd = v_cache + (int64_t)slot * kv_row;
    for (int c = first; c < kv_row / VEC; c += stride) {
        float f[VEC];
        load_vec<VEC>(vs + (int64_t)c * VEC, f);
        store_vec<VEC>(vd + (int64_t)c * VEC, f);
    }
}

} // namespace
} // namespace ss

using namespace ss;

extern "C" int ss_cuda_rope_kv_store(void *stream, void *qkv, const int32_t *pos, const float *inv_freq, int64_t n,
                                     int32_t q_heads, int32_t kv_heads, int32_t head_dim, int64_t tok_stride,
                                     void *k_cache, void *v_cache, const int32_t *slots)
{
    if (n <= 0 || head_dim < 2)
        return 0;
    const int64_t v_off = (int64_t)(q_heads + kv_heads) * head_dim, kv_row = (int64_t)kv_heads * head_dim;
    const bool vec = kv_row % 8 == 0 && tok_stride % 8 == 0 && v_off % 8 == 0 && ((uintptr_t)qkv & 15u) == 0 &&
                     ((uintptr_t)v_cache & 15u) == 0;
    const size_t smem = (size_t)head_dim * sizeof(float);
    // one pair per thread when few tokens (latency), else one block per token (no repeated sin/cos)
    const int64_t pairs = (int64_t)(q_heads + kv_heads) * (head_dim / 2);
    const int parts = n >= 64 ? 1 : (int)((pairs + kThreads - 1) / kThreads);
    const cudaError_t e = launch_pdl(vec ? rope_kv_store_kernel<8> : rope_kv_store_kernel<1>,
                                     dim3((unsigned)n, (unsigned)parts), dim3(kThreads), smem, (cudaStream_t)stream, (bf16 *)qkv, pos, inv_freq,
                                     (int)q_heads, (int)kv_heads, (int)head_dim, tok_stride, (bf16 *)k_cache,
                                     (bf16 *)v_cache, slots);
    return e != cudaSuccess ? (int)e : launch_status();
}

extern "C" int ss_cuda_rope(void *stream, void *x, const int32_t *pos, const float *inv_freq, int64_t n, int32_t heads,
                            int32_t head_dim, int64_t tok_stride)
{
    if (n <= 0 || heads <= 0 || head_dim < 2)
        return 0;
    int64_t work = n * heads * (head_dim / 2);
    int64_t blocks = (work + kThreads - 1) / kThreads;
    if (blocks > 65536)
        blocks = 65536;
    const cudaError_t e = launch_pdl(rope_kernel, dim3((unsigned)blocks), dim3(kThreads), 0, (cudaStream_t)stream,
                                     (bf16 *)x, pos, inv_freq, n, heads, head_dim, tok_stride);
    return e != cudaSuccess ? (int)e : launch_status();
}

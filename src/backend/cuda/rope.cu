// rope.cu — rotary position embedding in place, rotate-half convention (Hugging Face Llama/Qwen).
// One thread per (token, head, pair); angles in fp32 as the reference computes them, sin/cos in
// double (fast-math sinf is inaccurate for the large angles of long contexts).
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

} // namespace
} // namespace ss

using namespace ss;

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

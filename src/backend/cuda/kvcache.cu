// kvcache.cu — the device side of the paged KV cache: scatter of new k/v rows into their slots.
// Cache layout per layer: [num_blocks, block_size, kv_heads, head_dim] bf16; slot = block*block_size + offset.
#include "backend/cuda/common.cuh"
#include "backend/cuda/cuda_kernels.h"

namespace ss {
namespace {

bool aligned16(const void *p)
{
    return ((uintptr_t)p & 15u) == 0;
}

// One block per token: copies its k row and its v row (row = kv_heads*head_dim elements).
template <int VEC>
__global__ void kv_store_kernel(bf16 *k_cache, bf16 *v_cache, const bf16 *k, const bf16 *v, const int32_t *slots,
                                int row, int64_t src_stride)
{
    pdl_enter();
    const int64_t i = blockIdx.x;
    const int32_t slot = slots[i];
    if (slot < 0)
        return;
    const int chunks = row / VEC;
    const bf16 *ks = k + i * src_stride;
    const bf16 *vs = v + i * src_stride;
    bf16 *kd = k_cache + (int64_t)slot * row;
    bf16 *vd = v_cache + (int64_t)slot * row;
    for (int c = threadIdx.x; c < chunks; c += blockDim.x) {
        float f[VEC];
        load_vec<VEC>(ks + (int64_t)c * VEC, f);
        store_vec<VEC>(kd + (int64_t)c * VEC, f);
        load_vec<VEC>(vs + (int64_t)c * VEC, f);
        store_vec<VEC>(vd + (int64_t)c * VEC, f);
    }
}

} // namespace
} // namespace ss

using namespace ss;

extern "C" int ss_cuda_kv_store(void *stream, void *k_cache, void *v_cache, const void *k, const void *v,
                                const int32_t *slots, int64_t n, int32_t kv_heads, int32_t head_dim,
                                int64_t src_stride)
{
    if (n <= 0)
        return 0;
    const int row = kv_heads * head_dim;
    const bool vec = row % 8 == 0 && src_stride % 8 == 0 && aligned16(k_cache) && aligned16(v_cache) &&
                     aligned16(k) && aligned16(v);
    const int per = vec ? row / 8 : row;
    int threads = ((per + 31) / 32) * 32;
    threads = threads < 32 ? 32 : (threads > 256 ? 256 : threads);
    cudaStream_t s = (cudaStream_t)stream;
    const cudaError_t e = launch_pdl(vec ? kv_store_kernel<8> : kv_store_kernel<1>, dim3((unsigned)n), dim3(threads), 0,
                                     s, (bf16 *)k_cache, (bf16 *)v_cache, (const bf16 *)k, (const bf16 *)v, slots, row,
                                     src_stride);
    return e != cudaSuccess ? (int)e : launch_status();
}

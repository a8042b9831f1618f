// kvcache.cu — the device side of the paged KV cache: scatter of new k/v rows into their slots.
// Cache layout per layer: [num_blocks, block_size, kv_heads, head_dim] bf16, or the fp8 blocks of kv_fp8.cuh;
// slot = block*block_size + offset.
#include "backend/cuda/common.cuh"
#include "backend/cuda/cuda_kernels.h"
#include "backend/cuda/kv_fp8.cuh"

namespace ss {
namespace {

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

// fp8: one warp per row (K rows, then V rows, of one token per CTA): lane l quantises head dims
// [l*VPL, l*VPL + VPL) with the row's scale, in the f32 arithmetic of ss_kv_fp8_quant_row.
template <int VPL>
__global__ void kv_store_fp8_kernel(uint8_t *k_cache, uint8_t *v_cache, const bf16 *k, const bf16 *v,
                                    const int32_t *slots, int kv_heads, int D, int64_t src_stride, int bs)
{
    pdl_enter();
    const int64_t i = blockIdx.x;
    const int32_t slot = slots[i];
    if (slot < 0)
        return;
    const int lane = threadIdx.x & 31;
    const int64_t bb = kv_fp8_block_bytes(bs, kv_heads, D), blk = slot / bs;
    const int off = slot - (int)(blk * bs);
    for (int r = threadIdx.x >> 5; r < 2 * kv_heads; r += blockDim.x >> 5) {
        const bool is_v = r >= kv_heads;
        const int h = is_v ? r - kv_heads : r;
        const bf16 *src = (is_v ? v : k) + i * src_stride + (int64_t)h * D;
        uint8_t *dst = is_v ? v_cache : k_cache;
        float x[VPL], a = 0.0f;
#pragma unroll
        for (int e = 0; e < VPL; e++) {
            const int d = lane * VPL + e;
            x[e] = d < D ? __bfloat162float(src[d]) : 0.0f;
            a = fmaxf(a, fabsf(x[e]));
        }
        a = warp_reduce(a, MaxOp());
        // IEEE divisions: the library builds with --use_fast_math, whose divisions are approximate, and the
        // bytes must be the cpu's (ss_kv_fp8_quant_row)
        const float inv = a > 0.0f ? __fdiv_rn(448.0f, a) : 0.0f;
        uint8_t *row = dst + kv_fp8_row(blk, off, h, bb, kv_heads, D);
#pragma unroll
        for (int e = 0; e < VPL; e += 2) {
            const uint16_t q = e4m3x2(x[e] * inv, x[e + 1] * inv);
            const int d = lane * VPL + e;
            if (d < D)
                row[d] = (uint8_t)(q & 0xffu);
            if (d + 1 < D)
                row[d + 1] = (uint8_t)(q >> 8);
        }
        if (lane == 0)
            *reinterpret_cast<float *>(dst + kv_fp8_scale(blk, off, h, bb, bs, kv_heads, D)) = __fdiv_rn(a, 448.0f);
    }
}

} // namespace
} // namespace ss

using namespace ss;

static int kv_store_fp8(cudaStream_t s, void *k_cache, void *v_cache, const void *k, const void *v,
                        const int32_t *slots, int64_t n, int32_t kv_heads, int32_t D, int64_t src_stride, int32_t bs)
{
    if (D <= 0 || D % 16 != 0 || D > 256 || bs <= 0)
        return (int)cudaErrorInvalidValue;
    const int warps = 2 * kv_heads < 8 ? 2 * kv_heads : 8;
    auto kernel = D <= 64 ? kv_store_fp8_kernel<2> : D <= 128 ? kv_store_fp8_kernel<4> : kv_store_fp8_kernel<8>;
    const cudaError_t e = launch_pdl(kernel, dim3((unsigned)n), dim3(32 * warps), 0, s, (uint8_t *)k_cache,
                                     (uint8_t *)v_cache, (const bf16 *)k, (const bf16 *)v, slots, (int)kv_heads, (int)D,
                                     src_stride, (int)bs);
    return e != cudaSuccess ? (int)e : launch_status();
}

extern "C" int ss_cuda_kv_store(void *stream, void *k_cache, void *v_cache, const void *k, const void *v,
                                const int32_t *slots, int64_t n, int32_t kv_heads, int32_t head_dim,
                                int64_t src_stride, int fp8, int32_t block_size)
{
    if (n <= 0)
        return 0;
    if (fp8)
        return kv_store_fp8((cudaStream_t)stream, k_cache, v_cache, k, v, slots, n, kv_heads, head_dim, src_stride,
                            block_size);
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

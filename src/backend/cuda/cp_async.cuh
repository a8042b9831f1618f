// cp_async.cuh — asynchronous global -> shared copies (cp.async, sm_80+) and ldmatrix reads back, for the attention
// kernels that stream key tiles through shared memory (attn_tiled.cu, attn_wgmma.cu, attn_decode_seq.cu). Device code
// only; host C never sees this file.
#pragma once

#include "backend/cuda/common.cuh"

namespace ss {

// 16-byte global -> shared copy; when !pred nothing is read and the destination is zero-filled
// (src must still be a valid address).
__device__ __forceinline__ void cp_async16(void *dst, const void *src, bool pred)
{
    const unsigned s = (unsigned)__cvta_generic_to_shared(dst);
    const int bytes = pred ? 16 : 0;
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(s), "l"(src), "r"(bytes) : "memory");
}

// 4-byte global -> shared copy (through L1), zero-filled when !pred: the fp8 cache rows' scales.
__device__ __forceinline__ void cp_async4(void *dst, const void *src, bool pred)
{
    const unsigned s = (unsigned)__cvta_generic_to_shared(dst);
    const int bytes = pred ? 4 : 0;
    asm volatile("cp.async.ca.shared.global [%0], [%1], 4, %2;\n" ::"r"(s), "l"(src), "r"(bytes) : "memory");
}

__device__ __forceinline__ void cp_async_commit()
{
    asm volatile("cp.async.commit_group;\n" ::: "memory");
}

// Waits until at most N committed groups of this thread are still in flight.
template <int N> __device__ __forceinline__ void cp_async_wait()
{
    asm volatile("cp.async.wait_group %0;\n" ::"n"(N) : "memory");
}

// Four 8x8 b16 matrices from shared memory; lane l gives the address of row l%8 of matrix l/8. The
// memory clobber keeps these reads on their side of the barriers that guard the stages.
__device__ __forceinline__ void ldsm_x4(uint32_t (&r)[4], const bf16 *p)
{
    const unsigned s = (unsigned)__cvta_generic_to_shared(p);
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];\n"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                 : "r"(s)
                 : "memory");
}

// The same, each matrix transposed.
__device__ __forceinline__ void ldsm_x4_t(uint32_t (&r)[4], const bf16 *p)
{
    const unsigned s = (unsigned)__cvta_generic_to_shared(p);
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0,%1,%2,%3}, [%4];\n"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                 : "r"(s)
                 : "memory");
}

} // namespace ss

// cp_async.cuh — asynchronous global -> shared copies (cp.async, sm_80+) for the attention kernels that stream key
// tiles through shared memory (attn_tiled.cu, attn_wgmma.cu). Device code only; host C never sees this file.
#pragma once

namespace ss {

// 16-byte global -> shared copy; when !pred nothing is read and the destination is zero-filled
// (src must still be a valid address).
__device__ __forceinline__ void cp_async16(void *dst, const void *src, bool pred)
{
    const unsigned s = (unsigned)__cvta_generic_to_shared(dst);
    const int bytes = pred ? 16 : 0;
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(s), "l"(src), "r"(bytes) : "memory");
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

} // namespace ss

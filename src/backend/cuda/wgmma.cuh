// wgmma.cuh — Hopper's warpgroup MMA (wgmma.mma_async) as device helpers for the kernels built on it (attn_wgmma.cu's
// prefill attention): operands in shared memory in the 128-byte swizzle, their descriptors, the m64n128k16 bf16
// products, fences and waits, and shared-memory mbarriers. sm_90a device code only.
#pragma once

#include "backend/cuda/common.cuh"

namespace ss {

#if defined(__CUDA_ARCH__) && defined(__CUDA_ARCH_FEAT_SM90_ALL)
// Byte offset of 16-byte chunk ch (0..15: elements 8ch .. 8ch + 7) of row r in a [128][128] bf16 operand laid out for
// wgmma's 128-byte swizzle: two column halves of [128 rows][64 elements] (128 bytes a row, 8 rows a 1024-byte swizzle
// atom), each row's chunk index XORed with the row's index mod 8 (what the hardware undoes when it reads).
__device__ __forceinline__ uint32_t sw128_off(int r, int ch)
{
    return (uint32_t)((ch >> 3) * 128 * 128 + r * 128 + (((ch & 7) ^ (r & 7)) << 4));
}

// A shared-memory matrix descriptor (PTX ISA, "matrix descriptor format"): start address, leading and stride byte
// offsets (all in 16-byte units), 128-byte swizzle. K-major operands use only the stride offset (between 8-row groups).
__device__ __forceinline__ uint64_t sw128_desc(uint32_t saddr, uint32_t lbo, uint32_t sbo)
{
    return (uint64_t)((saddr & 0x3FFFF) >> 4) | ((uint64_t)(lbo >> 4) << 16) | ((uint64_t)(sbo >> 4) << 32) |
           (1ull << 62);
}

#define SS_WG_ACC                                                                                                      \
    "{%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, %16, %17, %18, %19, %20, %21, %22, %23, "  \
    "%24, %25, %26, %27, %28, %29, %30, %31, %32, %33, %34, %35, %36, %37, %38, %39, %40, %41, %42, %43, %44, %45, "   \
    "%46, %47, %48, %49, %50, %51, %52, %53, %54, %55, %56, %57, %58, %59, %60, %61, %62, %63}"
#define SS_WG_ACC_OPS(d)                                                                                               \
    "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]), "+f"(d[7]), "+f"(d[8]),        \
        "+f"(d[9]), "+f"(d[10]), "+f"(d[11]), "+f"(d[12]), "+f"(d[13]), "+f"(d[14]), "+f"(d[15]), "+f"(d[16]),         \
        "+f"(d[17]), "+f"(d[18]), "+f"(d[19]), "+f"(d[20]), "+f"(d[21]), "+f"(d[22]), "+f"(d[23]), "+f"(d[24]),        \
        "+f"(d[25]), "+f"(d[26]), "+f"(d[27]), "+f"(d[28]), "+f"(d[29]), "+f"(d[30]), "+f"(d[31]), "+f"(d[32]),        \
        "+f"(d[33]), "+f"(d[34]), "+f"(d[35]), "+f"(d[36]), "+f"(d[37]), "+f"(d[38]), "+f"(d[39]), "+f"(d[40]),        \
        "+f"(d[41]), "+f"(d[42]), "+f"(d[43]), "+f"(d[44]), "+f"(d[45]), "+f"(d[46]), "+f"(d[47]), "+f"(d[48]),        \
        "+f"(d[49]), "+f"(d[50]), "+f"(d[51]), "+f"(d[52]), "+f"(d[53]), "+f"(d[54]), "+f"(d[55]), "+f"(d[56]),        \
        "+f"(d[57]), "+f"(d[58]), "+f"(d[59]), "+f"(d[60]), "+f"(d[61]), "+f"(d[62]), "+f"(d[63])

// d[64x128] (+)= A[64x16] B[16x128], f32 accumulators; A and B K-major in shared memory. accumulate 0: d = A B.
__device__ __forceinline__ void wgmma_ss(float (&d)[64], uint64_t da, uint64_t db, int accumulate)
{
    asm volatile("{\n.reg .pred p;\nsetp.ne.b32 p, %66, 0;\n"
                 "wgmma.mma_async.sync.aligned.m64n128k16.f32.bf16.bf16 " SS_WG_ACC ", %64, %65, p, 1, 1, 0, 0;\n}\n"
                 : SS_WG_ACC_OPS(d)
                 : "l"(da), "l"(db), "r"(accumulate));
}

// d[64x128] += A[64x16] B[16x128]: A from registers (the m16n8k16 A fragment of each warp's 16 rows), B N-major in
// shared memory (tnsp-b 1).
__device__ __forceinline__ void wgmma_rs(float (&d)[64], const uint32_t (&a)[4], uint64_t db)
{
    asm volatile("{\n.reg .pred p;\nsetp.ne.b32 p, %69, 0;\n"
                 "wgmma.mma_async.sync.aligned.m64n128k16.f32.bf16.bf16 " SS_WG_ACC
                 ", {%64, %65, %66, %67}, %68, p, 1, 1, 1;\n}\n"
                 : SS_WG_ACC_OPS(d)
                 : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "l"(db), "r"(1));
}
#undef SS_WG_ACC
#undef SS_WG_ACC_OPS

__device__ __forceinline__ void wgmma_fence()
{
    asm volatile("wgmma.fence.sync.aligned;\n" ::: "memory");
}
__device__ __forceinline__ void wgmma_commit()
{
    asm volatile("wgmma.commit_group.sync.aligned;\n" ::: "memory");
}
// Waits until this warpgroup's committed groups are complete.
__device__ __forceinline__ void wgmma_wait0()
{
    asm volatile("wgmma.wait_group.sync.aligned 0;\n" ::: "memory");
}
// Pins accumulator registers in place: the compiler may not move their reads or writes across this point (the
// hardware writes them asynchronously between a wgmma and its wait).
__device__ __forceinline__ void fence_regs(float (&d)[64])
{
#pragma unroll
    for (int i = 0; i < 64; i++)
        asm volatile("" : "+f"(d[i])::"memory");
}
// The same for the A fragments of P V (registers that a wgmma reads asynchronously).
__device__ __forceinline__ void fence_regs(uint32_t (&a)[8][4])
{
#pragma unroll
    for (int i = 0; i < 8; i++)
#pragma unroll
        for (int j = 0; j < 4; j++)
            asm volatile("" : "+r"(a[i][j])::"memory");
}
// Makes this thread's generic-proxy writes to shared memory (cp.async's) visible to the async proxy (wgmma's reads).
__device__ __forceinline__ void fence_proxy_async()
{
    asm volatile("fence.proxy.async.shared::cta;\n" ::: "memory");
}
// Shared-memory mbarriers (8 bytes each, at shared address a): init (one thread, then a CTA barrier), arrive, and a
// wait for the completion of the phase of parity `parity`.
__device__ __forceinline__ void mbar_init(uint32_t a, int count)
{
    asm volatile("mbarrier.init.shared::cta.b64 [%0], %1;\n" ::"r"(a), "r"(count) : "memory");
}
__device__ __forceinline__ void mbar_arrive(uint32_t a)
{
    asm volatile("{\n.reg .b64 st;\nmbarrier.arrive.shared::cta.b64 st, [%0];\n}\n" ::"r"(a) : "memory");
}
// An arrival on the mbarrier at a once every cp.async this thread issued before it has landed (the count it was
// initialised with includes this arrival: .noinc).
__device__ __forceinline__ void mbar_arrive_cp_async(uint32_t a)
{
    asm volatile("cp.async.mbarrier.arrive.noinc.shared::cta.b64 [%0];\n" ::"r"(a) : "memory");
}
__device__ __forceinline__ void mbar_wait(uint32_t a, int parity)
{
    uint32_t done;
    do {
        asm volatile("{\n.reg .pred p;\nmbarrier.try_wait.parity.shared::cta.b64 p, [%1], %2;\n"
                     "selp.u32 %0, 1, 0, p;\n}\n"
                     : "=r"(done)
                     : "r"(a), "r"(parity)
                     : "memory");
    } while (!done);
}
#endif

} // namespace ss

// common.cuh — device helpers shared by the kernel files (.cu only): bf16 vector loads/stores,
// warp and block reductions, launch-error capture. Host C never sees this file.
#pragma once

#include <cuda_bf16.h>
#include <cuda_runtime.h>
#include <stdint.h>

namespace ss {

typedef __nv_bfloat16 bf16;

// Programmatic dependent launch (sm_90+): a kernel launched through launch_pdl may be scheduled while
// the previous kernel of the stream still runs. Before pdl_enter() (wait for the previous kernel's
// completion and memory, then let the next kernel be scheduled early in turn) it may only read what no
// kernel writes: weights and the step's metadata (the backend.h contract), and write only shared memory.
// (One exception: attn_decode_seq.cu reads KV rows (and an fp8 cache's scales, below the block of that key) that
// earlier steps wrote, below the first key its sequence gets in this step; every kernel before the previous one has
// completed, as each waits before it lets the next in.)
// On older devices (and in sm_80 code) both are no-ops and the launch is an ordinary one.
__device__ __forceinline__ void pdl_enter()
{
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    asm volatile("griddepcontrol.wait;" ::: "memory");
    asm volatile("griddepcontrol.launch_dependents;" ::: "memory");
#endif
}

// The two halves of pdl_enter, for kernels that work before waiting or let the next kernel in late.
// wait: blocks until the previous kernel has finished and its writes are visible; nothing it may write is
// loaded (or written) before (an L2 prefetch of such an address is harmless: L2 is where writes land).
// launch_dependents: lets the next PDL-launched kernel be scheduled (safe
// anywhere: every PDL-launched kernel of ours waits before touching its predecessor's output; exiting
// does it too).
__device__ __forceinline__ void pdl_wait()
{
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    asm volatile("griddepcontrol.wait;" ::: "memory");
#endif
}
__device__ __forceinline__ void pdl_launch_dependents()
{
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    asm volatile("griddepcontrol.launch_dependents;" ::: "memory");
#endif
}

// The same with the grid's z dimension cut into thread block clusters of cluster_z CTAs (sm_90+ only;
// cluster_z 1: no clusters, as launch_pdl).
template <typename... KArgs, typename... Args>
inline cudaError_t launch_pdl_cluster(void (*kernel)(KArgs...), dim3 grid, dim3 block, size_t smem, cudaStream_t s,
                                      unsigned cluster_z, Args... args)
{
    int dev = 0, major = 0;
    const bool pdl = cudaGetDevice(&dev) == cudaSuccess &&
                     cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, dev) == cudaSuccess &&
                     major >= 9;
    if (cluster_z > 1 && !pdl)
        return cudaErrorInvalidConfiguration;
    cudaLaunchAttribute attr[2];
    unsigned n = 0;
    if (pdl) {
        attr[n].id = cudaLaunchAttributeProgrammaticStreamSerialization;
        attr[n++].val.programmaticStreamSerializationAllowed = 1;
    }
    if (cluster_z > 1) {
        attr[n].id = cudaLaunchAttributeClusterDimension;
        attr[n].val.clusterDim.x = 1;
        attr[n].val.clusterDim.y = 1;
        attr[n++].val.clusterDim.z = cluster_z;
    }
    cudaLaunchConfig_t cfg = {};
    cfg.gridDim = grid;
    cfg.blockDim = block;
    cfg.dynamicSmemBytes = smem;
    cfg.stream = s;
    cfg.attrs = attr;
    cfg.numAttrs = n;
    return cudaLaunchKernelEx(&cfg, kernel, args...);
}

template <typename... KArgs, typename... Args>
inline cudaError_t launch_pdl(void (*kernel)(KArgs...), dim3 grid, dim3 block, size_t smem, cudaStream_t s,
                              Args... args)
{
    return launch_pdl_cluster(kernel, grid, block, smem, s, 1u, args...);
}

constexpr unsigned FULL_MASK = 0xffffffffu;

// Two floats as a packed f16 pair (low half: lo), rounded to nearest and saturated to +-65504 instead of becoming
// inf (activations beyond f16's range, rare after a norm but possible in o_proj's and down_proj's inputs, then stay
// finite). Operand order as cuda_fp16.hpp's __floats2half2_rn: the high half first.
__device__ __forceinline__ uint32_t h2_satfinite(float lo, float hi)
{
    uint32_t d;
    asm("cvt.rn.satfinite.f16x2.f32 %0, %2, %1;" : "=r"(d) : "f"(lo), "f"(hi));
    return d;
}

// d[16x8] += A[16x16] . B[16x8] on the tensor cores (mma.sync m16n8k16, row.col, f32 accumulate, sm_80+): bf16
// inputs, or f16 (F16; e4m3 weights convert to f16 exactly). The instruction spells the input type, and an asm
// string must be a literal: one each.
#define SS_MMA_16816_ASM(T)                                                                                      \
    asm("mma.sync.aligned.m16n8k16.row.col.f32." T "." T ".f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "          \
        "{%0,%1,%2,%3};"                                                                                         \
        : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])                                                         \
        : "r"(a0), "r"(a1), "r"(a2), "r"(a3), "r"(b0), "r"(b1))
template <bool F16 = false>
__device__ __forceinline__ void mma_16816(float (&d)[4], uint32_t a0, uint32_t a1, uint32_t a2, uint32_t a3,
                                          uint32_t b0, uint32_t b1)
{
    if constexpr (F16)
        SS_MMA_16816_ASM("f16");
    else
        SS_MMA_16816_ASM("bf16");
}
#undef SS_MMA_16816_ASM

// bf16 -> f32 is a shift: the low half of a packed pair goes to the top 16 bits.
__device__ __forceinline__ float bf16_lo(uint32_t u)
{
    return __uint_as_float(u << 16);
}
__device__ __forceinline__ float bf16_hi(uint32_t u)
{
    return __uint_as_float(u & 0xffff0000u);
}

// Unpacks a 16-byte vector of 8 bf16 into floats.
__device__ __forceinline__ void unpack8(const uint4 &u, float (&f)[8])
{
    f[0] = bf16_lo(u.x);
    f[1] = bf16_hi(u.x);
    f[2] = bf16_lo(u.y);
    f[3] = bf16_hi(u.y);
    f[4] = bf16_lo(u.z);
    f[5] = bf16_hi(u.z);
    f[6] = bf16_lo(u.w);
    f[7] = bf16_hi(u.w);
}

__device__ __forceinline__ uint32_t pack2(float a, float b)
{
    __nv_bfloat162 h = __floats2bfloat162_rn(a, b); // .x = a (low half), .y = b
    return *reinterpret_cast<uint32_t *>(&h);
}

__device__ __forceinline__ uint4 pack8(const float (&f)[8])
{
    uint4 u;
    u.x = pack2(f[0], f[1]);
    u.y = pack2(f[2], f[3]);
    u.z = pack2(f[4], f[5]);
    u.w = pack2(f[6], f[7]);
    return u;
}

// Loads / stores VEC consecutive bf16 (VEC = 8: one 16-byte access, the pointer must be 16-byte
// aligned; VEC = 1: scalar).
template <int VEC> __device__ __forceinline__ void load_vec(const bf16 *p, float (&f)[VEC]);
template <> __device__ __forceinline__ void load_vec<8>(const bf16 *p, float (&f)[8])
{
    unpack8(*reinterpret_cast<const uint4 *>(p), f);
}
template <> __device__ __forceinline__ void load_vec<1>(const bf16 *p, float (&f)[1])
{
    f[0] = __bfloat162float(*p);
}
template <int VEC> __device__ __forceinline__ void store_vec(bf16 *p, const float (&f)[VEC]);
template <> __device__ __forceinline__ void store_vec<8>(bf16 *p, const float (&f)[8])
{
    *reinterpret_cast<uint4 *>(p) = pack8(f);
}
template <> __device__ __forceinline__ void store_vec<1>(bf16 *p, const float (&f)[1])
{
    *p = __float2bfloat16_rn(f[0]);
}

// Rounds a float to the nearest bf16 value (kept as float).
__device__ __forceinline__ float round_bf16(float x)
{
    return __bfloat162float(__float2bfloat16_rn(x));
}

struct SumOp {
    template <typename T> __device__ __forceinline__ T operator()(T a, T b) const
    {
        return a + b;
    }
};
struct MaxOp {
    __device__ __forceinline__ float operator()(float a, float b) const
    {
        return fmaxf(a, b);
    }
    __device__ __forceinline__ int operator()(int a, int b) const
    {
        return a > b ? a : b;
    }
};

template <typename T, typename Op> __device__ __forceinline__ T warp_reduce(T v, Op op)
{
#pragma unroll
    for (int o = 16; o > 0; o >>= 1)
        v = op(v, __shfl_xor_sync(FULL_MASK, v, o));
    return v;
}

// Reduces v over the whole block; every thread gets the result. smem: 32 elements of scratch.
// Must be reached by every thread of the block (it synchronises twice, so smem may be reused).
template <typename T, typename Op> __device__ __forceinline__ T block_reduce(T v, Op op, T ident, T *smem)
{
    const int lane = threadIdx.x & 31;
    const int wid = threadIdx.x >> 5;
    const int nw = (blockDim.x + 31) >> 5;
    v = warp_reduce(v, op);
    if (lane == 0)
        smem[wid] = v;
    __syncthreads();
    T r = ident;
    for (int i = 0; i < nw; i++)
        r = op(r, smem[i]);
    __syncthreads();
    return r;
}

// Returns the launch error of the kernel just launched (as the int the C header promises).
inline int launch_status()
{
    return (int)cudaGetLastError();
}

// Whether p may be read or written 16 bytes at a time (the launchers' check before their vector kernels).
inline bool aligned16(const void *p)
{
    return ((uintptr_t)p & 15u) == 0;
}

inline unsigned blocks_for(int64_t work, int per_block)
{
    return (unsigned)((work + per_block - 1) / per_block);
}

} // namespace ss

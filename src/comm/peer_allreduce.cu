// peer_allreduce.cu — the one-shot all-reduce kernel over peer-mapped inboxes (the protocol is described
// in peer_allreduce.h): push the input into every rank's inbox, wait until every peer's part arrived, sum
// locally; optionally fused with the residual add and RMSNorm that follow every all-reduce of a decoder
// layer. Launched with programmatic dependent launch (the backend's helpers), so that the GEMV before it
// need not finish before it is resident, and the GEMV after it streams its weights during the exchange.
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include "backend/cuda/common.cuh"
#include "comm/peer_allreduce.h"

namespace {

using ss::block_reduce;
using ss::launch_pdl;
using ss::pdl_enter;
using ss::SumOp;
using ss::unpack8;

constexpr int kThreads = 512;
constexpr int kVecsPerBlock = SS_PEER_AR_CHUNK / 16; // 16-byte vectors of one block's chunk

__device__ __forceinline__ uint4 load_volatile(const uint4 *p)
{
    uint4 u;
    asm volatile("ld.volatile.global.v4.u32 {%0, %1, %2, %3}, [%4];"
                 : "=r"(u.x), "=r"(u.y), "=r"(u.z), "=r"(u.w)
                 : "l"(p)
                 : "memory");
    return u;
}

__device__ __forceinline__ void store_volatile(uint4 *p, uint4 u)
{
    asm volatile("st.volatile.global.v4.u32 [%0], {%1, %2, %3, %4};" ::"l"(p), "r"(u.x), "r"(u.y), "r"(u.z),
                 "r"(u.w)
                 : "memory");
}

constexpr uint32_t kEmpty = 0xffffffffu; // every byte SS_PEER_AR_EMPTY_BYTE: an inbox word no peer wrote yet

// A 16-byte vector of T, summed in f32 and packed back; its lanes as the empty-inbox protocol sees them.
// The empty pattern is a NaN in both types (bf16 0xffff, f32 0xffffffff). Data that happens to carry it
// (a negated NaN) is sent as another NaN (sign bit and quiet bit set), so a sum stays NaN exactly when it
// would have been, and an arrived lane is never mistaken for an empty one.
template <typename T> struct Vec;

template <> struct Vec<float> {
    static constexpr int N = 4;
    __device__ static bool empty(uint4 u) { return u.x == kEmpty || u.y == kEmpty || u.z == kEmpty || u.w == kEmpty; }
    __device__ static uint32_t fix(uint32_t w) { return w == kEmpty ? 0xffc00000u : w; }
    __device__ static uint4 sendable(uint4 u) { return make_uint4(fix(u.x), fix(u.y), fix(u.z), fix(u.w)); }
    __device__ static void add(float *acc, uint4 u)
    {
        acc[0] += __uint_as_float(u.x), acc[1] += __uint_as_float(u.y);
        acc[2] += __uint_as_float(u.z), acc[3] += __uint_as_float(u.w);
    }
    __device__ static uint4 pack(const float *acc)
    {
        return make_uint4(__float_as_uint(acc[0]), __float_as_uint(acc[1]), __float_as_uint(acc[2]),
                          __float_as_uint(acc[3]));
    }
};

template <> struct Vec<__nv_bfloat16> {
    static constexpr int N = 8;
    __device__ static bool half_empty(uint32_t w) { return (w & 0xffffu) == 0xffffu || (w >> 16) == 0xffffu; }
    __device__ static bool empty(uint4 u)
    {
        return half_empty(u.x) || half_empty(u.y) || half_empty(u.z) || half_empty(u.w);
    }
    __device__ static uint32_t fix(uint32_t w)
    {
        if ((w & 0xffffu) == 0xffffu)
            w = (w & 0xffff0000u) | 0xffc0u;
        if ((w >> 16) == 0xffffu)
            w = (w & 0xffffu) | 0xffc00000u;
        return w;
    }
    __device__ static uint4 sendable(uint4 u) { return make_uint4(fix(u.x), fix(u.y), fix(u.z), fix(u.w)); }
    __device__ static void add(float *acc, uint4 u)
    {
        const __nv_bfloat162 *h = reinterpret_cast<const __nv_bfloat162 *>(&u);
        for (int i = 0; i < 4; i++) {
            float2 f = __bfloat1622float2(h[i]);
            acc[2 * i] += f.x, acc[2 * i + 1] += f.y;
        }
    }
    __device__ static uint4 pack(const float *acc)
    {
        uint4 u;
        __nv_bfloat162 *h = reinterpret_cast<__nv_bfloat162 *>(&u);
        for (int i = 0; i < 4; i++)
            h[i] = __floats2bfloat162_rn(acc[2 * i], acc[2 * i + 1]);
        return u;
    }
};

// The residual add + RMSNorm after the sum (bf16 rows of dim = row_vecs * 8), with the semantics of the
// backend's add_rmsnorm (backend/cuda/norm.cu): residual = bf16(residual + sum), out = bf16(residual *
// rsqrt(mean(residual²) + eps) * w), squares summed in f32. residual == nullptr: a plain all-reduce.
// Bit-identical to add_rmsnorm up to dim 4096 (both sum the squares over 512 threads); wider rows (70B:
// 8192) sum in another order there (1024 threads), so the last bit of the norm may differ. Every rank of
// a group runs this same kernel, so the ranks still agree.
struct NormArgs {
    uint4 *residual;
    uint4 *out;
    const uint4 *w;
    int row_vecs;
    float eps;
};

// Block b reduces vectors [b * per_block, …) of buf (per_block <= kVecsPerBlock: its inbox region is
// always chunk b), in place — or, with a NormArgs, into the residual and the normed rows (whole rows
// per block) without writing buf. Peers' parts are recognised by their content (see the header).
template <typename T>
__global__ void __launch_bounds__(kThreads)
    peer_all_reduce(ss_peer_ar_view v, uint4 *buf, int64_t n_vec, int per_block, NormArgs norm)
{
    const int b = blockIdx.x;
    __shared__ uint32_t epoch_sh;
    __shared__ float red[kThreads / 32];
    pdl_enter(); // buf is the previous kernel's output; the next kernel may be scheduled from here on
    if (threadIdx.x == 0)
        epoch_sh = v.epoch[b] + 1;
    __syncthreads();
    const uint32_t e = epoch_sh;
    const int64_t v0 = (int64_t)b * per_block;
    const int nv = (int)(n_vec - v0 < per_block ? n_vec - v0 : per_block);
    const size_t slot = SS_PEER_AR_MAX_BYTES;
    const size_t set = (size_t)(e & 1) * (size_t)v.size * slot;
    const size_t chunk = (size_t)b * SS_PEER_AR_CHUNK;

    // 1. push this rank's chunk into slot `rank` of every inbox (remote stores are posted, not awaited)
    for (int i = threadIdx.x; i < nv; i += kThreads) {
        const uint4 x = Vec<T>::sendable(buf[v0 + i]);
        for (int r = 0; r < v.size; r++)
            store_volatile(reinterpret_cast<uint4 *>(v.inbox[r] + set + (size_t)v.rank * slot + chunk) + i, x);
    }
    // 2. sum the slots in rank order (the same order on every rank: bit-identical results). Each vector is
    //    polled (volatile: peers wrote it behind this SM's L1) until none of its lanes is empty any more
    //    (every lane is written once per epoch), then emptied again for the set's next use, two epochs
    //    later (see the header). After an abort (the communicator was stopped) a thread stops polling: the
    //    result is garbage, and the host reports the abort.
    char *mine = v.inbox[v.rank] + set + chunk;
    bool aborted = false;
    auto sum = [&](int i) {
        float acc[Vec<T>::N] = {};
        for (int r = 0; r < v.size; r++) {
            uint4 *p = reinterpret_cast<uint4 *>(mine + (size_t)r * slot) + i;
            uint4 u = load_volatile(p);
            for (uint32_t it = 1; Vec<T>::empty(u) && !aborted; it++) {
                if ((it & 1023) == 0 && *v.abort_flag)
                    aborted = true;
                else
                    u = load_volatile(p);
            }
            store_volatile(p, make_uint4(kEmpty, kEmpty, kEmpty, kEmpty));
            Vec<T>::add(acc, u);
        }
        return Vec<T>::pack(acc);
    };
    if (!norm.residual) {
        for (int i = threadIdx.x; i < nv; i += kThreads)
            buf[v0 + i] = sum(i);
    } else {
        for (int r0 = 0; r0 < nv; r0 += norm.row_vecs) { // 3. residual add and RMSNorm, row by row
            float ss = 0.0f;
            for (int i = threadIdx.x; i < norm.row_vecs; i += kThreads) {
                float x[8], res[8];
                unpack8(sum(r0 + i), x);
                unpack8(norm.residual[v0 + r0 + i], res);
                for (int k = 0; k < 8; k++)
                    res[k] = __bfloat162float(__float2bfloat16_rn(res[k] + x[k]));
                for (int k = 0; k < 8; k++)
                    ss += res[k] * res[k];
                norm.residual[v0 + r0 + i] = Vec<__nv_bfloat16>::pack(res);
            }
            const float inv = rsqrtf(block_reduce(ss, SumOp(), 0.0f, red) / (float)(norm.row_vecs * 8) + norm.eps);
            for (int i = threadIdx.x; i < norm.row_vecs; i += kThreads) { // rereads its own writes
                float res[8], g[8];
                unpack8(norm.residual[v0 + r0 + i], res);
                unpack8(norm.w[i], g);
                for (int k = 0; k < 8; k++)
                    res[k] = res[k] * inv * g[k];
                norm.out[v0 + r0 + i] = Vec<__nv_bfloat16>::pack(res);
            }
        }
    }
    if (threadIdx.x == 0)
        v.epoch[b] = e;
}

template <typename T>
int launch(const ss_peer_ar_view *v, uint4 *buf, int64_t n_vec, int per_block, const NormArgs &norm, void *stream)
{
    const int blocks = (int)((n_vec + per_block - 1) / per_block);
    cudaStream_t s = static_cast<cudaStream_t>(stream);
    auto kernel = peer_all_reduce<T>;
    if (v->no_pdl) {
        kernel<<<blocks, kThreads, 0, s>>>(*v, buf, n_vec, per_block, norm);
        return (int)cudaGetLastError();
    }
    return (int)launch_pdl(kernel, dim3(blocks), dim3(kThreads), 0, s, *v, buf, n_vec, per_block, norm);
}

} // namespace

extern "C" int ss_peer_ar_launch(const ss_peer_ar_view *v, void *buf, int64_t count, ss_dtype type, void *stream)
{
    const int64_t n_vec = count * (type == SS_DTYPE_BF16 ? 2 : 4) / 16;
    const NormArgs none = {nullptr, nullptr, nullptr, 0, 0.0f};
    if (type == SS_DTYPE_BF16)
        return launch<__nv_bfloat16>(v, static_cast<uint4 *>(buf), n_vec, kVecsPerBlock, none, stream);
    return launch<float>(v, static_cast<uint4 *>(buf), n_vec, kVecsPerBlock, none, stream);
}

extern "C" int ss_peer_ar_launch_add_rmsnorm(const ss_peer_ar_view *v, void *x, void *residual, void *out,
                                             const void *w, int64_t rows, int32_t dim, float eps, void *stream)
{
    const int row_vecs = dim / 8, rows_per_block = SS_PEER_AR_CHUNK / (dim * 2);
    const NormArgs norm = {static_cast<uint4 *>(residual), static_cast<uint4 *>(out), static_cast<const uint4 *>(w),
                           row_vecs, eps};
    return launch<__nv_bfloat16>(v, static_cast<uint4 *>(x), rows * row_vecs, rows_per_block * row_vecs, norm, stream);
}

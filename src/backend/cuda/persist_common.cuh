// persist_common.cuh — the persistent decode kernel's limits, parameters and synchronisation primitives
// (mbarriers, bulk copies, grid-wide counters, spins that trap). Included by decode_persist.cu only.
#pragma once
#include <stdint.h>

#include "backend/cuda/common.cuh"
#include "backend/cuda/cuda_kernels.h"

namespace ss {
namespace {

constexpr int kWarps = 8;                  // consumer warps
constexpr int kConsumers = kWarps * 32;
// + the producer warp; FP8: + a producer warpgroup (the producer warp and three that leave at once) so that
// setmaxnreg can move registers to the consumers: 9 warps put 3 on one of the SM's four schedulers, which holds
// every thread to kLaunchRegs (16,384 / 96), where the fp8 form spilled. setmaxnreg.inc waits for registers the
// CTA's pool holds, and the pool is what the launch allocated (384 x 168, not the register file's 65,536): with
// more the consumers wait forever (session 55's first try, 96 / 208, trapped). Below 88 the producer spills.
template <bool FP8> constexpr int kThreadsOf = kConsumers + (FP8 ? 128 : 32);
constexpr int kLaunchRegs = 168;
constexpr int kProducerRegs = 88;
constexpr int kConsumerRegs = 208;
static_assert(128 * kProducerRegs + kConsumers * kConsumerRegs <= kThreadsOf<true> * kLaunchRegs,
              "setmaxnreg: the consumers' registers must come from the launch's allocation");
// A stage is a tile of 16 weight rows (8 gate + the same 8 up rows for the MLP's first half) by kSlab
// columns, rows kPitch bytes apart: the 64 bytes of padding put rows g and g+1 16 banks apart, so the
// tensor-core fragment loads (lane g/4 reads row g) are free of bank conflicts.
constexpr int kTileRows = 16;
constexpr int kSlab = 1024;
constexpr int kPitch = 2 * kSlab + 64;
constexpr int kStageBytes = kTileRows * kPitch;
constexpr int kMaxStages = 12;
// K + V rows an attention item copies into shared memory, at most: 32 KiB keeps 5 stages for Llama-3-8B's
// shape up to a context bound of 1024 (16 splits of 64 keys). A longer bound is refused and runs op by op:
// on one H200 (session 10) the kernel won at a bound of 1024 (235.5 vs 229.7 tok/s) but lost at 2048 with
// 64 KiB and 4 stages (219.3 vs 224.7), and with keys read from the cache at 8192 (128 vs 206). Session 31 (one H200,
// SS_PERSIST_KV_PRE=70000) at a bound of 2048: +2.1% (bf16) / +4.1% (fp8 cache) at 1,228 keys but -1.9% / -0.2% at
// 2,028, and fp8 weights -1.3% / -7.6% with an fp8 cache (-3.7% with a bf16 one); an fp8 cache at 4096 -4.6%.
constexpr int kMaxKvPre = 32 << 10;
constexpr int kMaxXBytes = 32 << 10;       // the longest norm input (hidden); longer projection inputs load in passes
constexpr int kMaxSplits = 32;
constexpr int kMaxGroup = 8;               // q heads per kv head
constexpr int kMaxHeadDim = 128;
constexpr int kMaxOwnRows = 256;          // residual rows one CTA owns (hidden / CTAs)
constexpr int kMaxTable = 512;            // block-table entries of the sequence (context / block size)
constexpr int kCtrPerLayer = 5;            // qkv, attn, o, gu, down; then one per kv head
enum : int { kMergeChunked = 0, kMergeWide = 1, kMergeOne = 2, kMergeSplit = 3 };
enum : int { kQkv = 0, kAttn = 1, kO = 2, kGu = 3, kDown = 4 };
constexpr int kStamps = 14;    // trace points per layer (SS_PERSIST_TRACE), see the kernel
constexpr int kTraceSlots = 26; // + per matrix (qkv, o, gu, down): time waiting for stages, time in the phase;
                                // + an attention item's scores start and P·V start; + the producer's time
                                // blocked on a full ring for the layer's tiles, and the part of it with the
                                // L2 prefetch used up too (this SM's share of the bus idles)

struct Layer {
    const bf16 *attn_norm, *wqkv, *bqkv, *q_norm, *k_norm, *wo, *mlp_norm, *wgu, *wdown;
    bf16 *k_cache, *v_cache; // (kv_fp8: the bytes of fp8 blocks, kv_fp8.cuh)
};

struct Params {
    int n_layers, hidden, inter, q_heads, kv_heads, head_dim, q_dim, qkv_dim;
    int splits, nk_max, stages, region_bytes, ctr_stride, block_size;
    unsigned long long *trace; // SS_PERSIST_TRACE: [layers][kStamps][CTAs] globaltimer stamps, else NULL
    int l2ahead; // while the ring is full and every tile in it has landed, the producer prefetches up to
                 // this many further tiles into L2 (8; SS_PERSIST_L2AHEAD=N, a benchmark switch, 0: none).
                 // Session 11, one H200: 8 beat 4 by 0.6% in five pairs over two calls (241.0 vs 239.6)
    int pfpace; // SM cycles at least between two tiles of the L2 prefetch: 2500 (~1.37 us at the 1.82 GHz the SMs
                // ran at under this kernel in session 24; a 32 KiB tile at 24 GB/s, ~75% of an SM's share of
                // the bus); SS_PERSIST_PFPACE=N, a benchmark switch,
                // 0: as fast as the producer issues them, as before session 23. Paced, the prefetch no longer
                // queues 8 tiles of every SM at once ahead of the loads the attention and the grid waits make:
                // one H200, 8B batch 1, 249.6 against 248.4 tok/s (+0.46%); 2000, 3000 and 4000 cycles +0.3%,
                // 6000 -0.2% (docs/performance.md, session 23)
    int pfgate; // 1: the L2 prefetch waits until the newest tile issued has landed (the default); 0: it starts
                // as soon as the ring is full (SS_PERSIST_PFGATE=0, a benchmark switch: -2.3% unpaced, -0.7% paced)
    int pf_evict; // the prefetch's L2 policy (SS_PERSIST_PF_EVICT, a benchmark switch): 0 none (normal
                  // priority), 1 evict_last, 2 evict_first. Session 23, one H200, 8B batch 1: 247.7 and 248.4
                  // against 248.5 tok/s; the kernel reads 13.98 GB from DRAM a step either way (the weights once)
    int merge; // how a head's splits are merged: every item a slice (kMergeSplit, the default), or the last item
               // all of it (kMergeChunked, kMergeWide, kMergeOne; see the launcher;
               // SS_PERSIST_MERGE=split|chunked|wide|one, a benchmark switch)
    int debug; // SS_PERSIST_DEBUG, a benchmark switch that breaks the results: 1 no GEMV loads (nor math),
               // 2 no grid waits, 4 no attention, 8 no GEMV outputs
    float eps, scale;
    const float *inv_freq;
    const int32_t *pos, *slots, *block_table, *seq_lens;
    bf16 *residual, *qkv, *attn, *act;
    float *partials;
    unsigned *sync;
    // Tensor parallelism (tp_size > 1): the o and down GEMVs produce this rank's partial sums of the hidden
    // rows; each CTA pushes the rows it computed into slot tp_rank of every rank's window and sums the rows
    // it owns from all slots (see tp_push and tp_combine).
    int tp_rank, tp_size;
    unsigned short *tp_win[SS_CUDA_PERSIST_MAX_TP]; // rank r's window as this GPU addresses it
    const volatile int *tp_abort;                    // host-mapped: the communicator was stopped
    Layer layers[SS_CUDA_PERSIST_MAX_LAYERS];
    int64_t kv_block_bytes; // an fp8 cache's bytes a block (kv_fp8.cuh; the kernel's KV8 form). Last, so that the
                            // bf16 cache's kernel addresses every other parameter where it did before
};

// The device code is Hopper's (bulk copies, mbarrier transactions); the sm_80 build gets an empty kernel
// that the launcher never starts (it asks for compute capability 9 first).
#if !defined(__CUDA_ARCH__) || __CUDA_ARCH__ >= 900

// ---------------------------------------------------------------- synchronisation primitives

__device__ __forceinline__ uint32_t smem_u32(const void *p)
{
    return (uint32_t)__cvta_generic_to_shared(p);
}

__device__ __forceinline__ void mbar_init(uint64_t *bar, unsigned count)
{
    asm volatile("mbarrier.init.shared::cta.b64 [%0], %1;" ::"r"(smem_u32(bar)), "r"(count) : "memory");
}

// Every spin of this kernel gives up after kHangNs with a trap: a bug or a lost CTA becomes a launch error
// the backend reports, never a GPU that hangs. (A decode step takes milliseconds.) At tp > 1 a spin may wait
// on a peer GPU, whose host can be late by more than that (a busy or swapped worker): there the clock only
// runs once the communicator is stopped (`abort`, host-mapped, set at the comm deadline or on a lost rank),
// after which the exchange reads garbage and the step drains; a spin still stuck kHangNs later traps.
constexpr uint64_t kHangNs = 2000000000ull;

struct Spin {
    uint32_t n = 0;
    uint64_t t0 = 0;
    const volatile int *abort; // NULL at tp 1
    __device__ explicit Spin(const volatile int *abort_flag) : abort(abort_flag) {}
    __device__ __forceinline__ void tick()
    {
        if ((++n & 1023u) != 0)
            return;
        if (abort && !*abort)
            return; // tp > 1 and the communicator is running: the host's deadline decides
        uint64_t t;
        asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(t));
        if (t0 == 0)
            t0 = t;
        else if (t - t0 > kHangNs)
            __trap();
    }
};

__device__ __forceinline__ void mbar_wait(uint64_t *bar, uint32_t parity, const volatile int *abort)
{
    const uint32_t a = smem_u32(bar);
    Spin spin(abort);
    for (;;) {
        uint32_t done;
        asm volatile("{ .reg .pred p; mbarrier.try_wait.parity.shared::cta.b64 p, [%1], %2; selp.u32 %0, 1, 0, p; }"
                     : "=r"(done)
                     : "r"(a), "r"(parity)
                     : "memory");
        if (done)
            return;
        spin.tick();
    }
}

// Non-blocking: has the barrier completed the phase of this parity?
__device__ __forceinline__ bool mbar_test(uint64_t *bar, uint32_t parity)
{
    uint32_t done;
    asm volatile("{ .reg .pred p; mbarrier.test_wait.parity.shared::cta.b64 p, [%1], %2; selp.u32 %0, 1, 0, p; }"
                 : "=r"(done)
                 : "r"(smem_u32(bar)), "r"(parity)
                 : "memory");
    return done != 0;
}

__device__ __forceinline__ void mbar_arrive(uint64_t *bar)
{
    asm volatile("mbarrier.arrive.shared::cta.b64 _, [%0];" ::"r"(smem_u32(bar)) : "memory");
}

__device__ __forceinline__ void mbar_expect_tx(uint64_t *bar, uint32_t bytes)
{
    asm volatile("mbarrier.arrive.expect_tx.shared::cta.b64 _, [%0], %1;" ::"r"(smem_u32(bar)), "r"(bytes) : "memory");
}

// Bulk async copy global -> shared (16-byte aligned, a multiple of 16 bytes), completing on bar; the L2
// keeps weights only until they are read (evict_first): activations and the KV cache stay resident.
__device__ __forceinline__ void bulk_load(void *dst, const void *src, uint32_t bytes, uint64_t *bar, uint64_t policy)
{
    asm volatile("cp.async.bulk.shared::cluster.global.mbarrier::complete_tx::bytes.L2::cache_hint [%0], [%1], %2, "
                 "[%3], %4;" ::"r"(smem_u32(dst)),
                 "l"(src), "r"(bytes), "r"(smem_u32(bar)), "l"(policy)
                 : "memory");
}

// A hint: fetch [src, src + bytes) into L2 (a multiple of 16 bytes), with an eviction policy or none.
__device__ __forceinline__ void bulk_prefetch_l2(const void *src, uint32_t bytes, bool hinted, uint64_t policy)
{
    if (hinted)
        asm volatile("cp.async.bulk.prefetch.L2.global.L2::cache_hint [%0], %1, %2;" ::"l"(src), "r"(bytes),
                     "l"(policy)
                     : "memory");
    else
        asm volatile("cp.async.bulk.prefetch.L2.global [%0], %1;" ::"l"(src), "r"(bytes) : "memory");
}

// The consumer warps only (the producer warp never joins): named barrier 1.
__device__ __forceinline__ void consumer_sync()
{
    asm volatile("bar.sync 1, %0;" ::"n"(kConsumers) : "memory");
}

// Grid-wide counters: arrive after this CTA's outputs are written, wait until `target` CTAs arrived.
// Data other CTAs wrote is then read with ld.global.cg (L2), never through this SM's L1.
__device__ __forceinline__ void grid_arrive(unsigned *ctr)
{
    consumer_sync(); // the CTA's writes happen before thread 0's release (bar.sync orders them at CTA scope)
    if (threadIdx.x == 0)
        asm volatile("red.release.gpu.global.add.u32 [%0], 1;" ::"l"(ctr) : "memory");
}

__device__ __forceinline__ void grid_wait(const unsigned *ctr, unsigned target, const volatile int *abort,
                                          bool off = false)
{
    if (threadIdx.x == 0 && !off) {
        Spin spin(abort);
        for (;;) {
            unsigned v;
            asm volatile("ld.acquire.gpu.global.u32 %0, [%1];" : "=r"(v) : "l"(ctr) : "memory");
            if (v >= target)
                break;
            spin.tick();
        }
    }
    consumer_sync(); // the acquire by thread 0 happens before every thread's reads after the barrier
}

__device__ __forceinline__ uint4 ldcg16(const bf16 *p)
{
    return __ldcg(reinterpret_cast<const uint4 *>(p));
}

__device__ __forceinline__ float ldcg_bf16(const bf16 *p)
{
    return __uint_as_float((uint32_t)__ldcg(reinterpret_cast<const unsigned short *>(p)) << 16);
}

// Sum over the 256 consumer threads (every one gets it); scratch: 8 floats.
__device__ __forceinline__ float consumer_sum(float v, float *scratch)
{
    v = warp_reduce(v, SumOp());
    if ((threadIdx.x & 31) == 0)
        scratch[threadIdx.x >> 5] = v;
    consumer_sync();
    float r = 0.0f;
#pragma unroll
    for (int w = 0; w < kWarps; w++)
        r += scratch[w];
    consumer_sync();
    return r;
}

// A trace point of this CTA (SS_PERSIST_TRACE, a benchmark aid): the time at point k of layer l.
__device__ __forceinline__ void stamp(const Params &p, int l, int k)
{
    if (p.trace && threadIdx.x == 0) {
        unsigned long long t;
        asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(t));
        p.trace[((size_t)l * kTraceSlots + k) * gridDim.x + blockIdx.x] = t;
    }
}

__device__ __forceinline__ unsigned long long gtime()
{
    unsigned long long t;
    asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(t));
    return t;
}

// ---------------------------------------------------------------- the tensor-parallel exchange
//
// Each rank's window holds, for every layer and each of its two sums (o, down), tp_size slots of hidden
// bf16 values: slot q is rank q's partial. An element reads 0xffff while nobody has written it (a NaN
// pattern that a sender never sends: it sends another NaN instead), so data is its own signal, as in the
// peer all-reduce (comm/peer_allreduce.h): no fence, no flag. The reader empties each element after it
// has read it. Each element is written once per launch; the next launch's writes come after a collective
// of the step in between (the embedding's all-reduce), which every rank enters only after its previous
// launch — and so all of its emptying — completed. Rows go to whichever CTA owns them on the reading
// rank, so ranks need not have the same number of SMs.

constexpr unsigned short kXEmpty = 0xffffu;

__device__ __forceinline__ size_t tp_slot(const Params &p, int l, int sum, int rank)
{
    return (((size_t)l * 2 + (size_t)sum) * (size_t)p.tp_size + (size_t)rank) * (size_t)p.hidden;
}

// tp_push and tp_combine stay out of line: inlined into the GEMV phase they made the kernel spill at its
// 168-register cap, at tp 1 too.
// This rank's partial v of hidden row `row` of sum `sum` (0: o, 1: down) of layer l, to every rank.
__device__ __noinline__ void tp_push(const Params &p, int l, int sum, int64_t row, float v)
{
    unsigned short b = __bfloat16_as_ushort(__float2bfloat16_rn(v));
    if (b == kXEmpty)
        b = 0xffc0u; // another NaN
    const size_t at = tp_slot(p, l, sum, p.tp_rank) + (size_t)row;
    for (int q = 0; q < p.tp_size; q++)
        asm volatile("st.volatile.global.u16 [%0], %1;" ::"l"(p.tp_win[q] + at), "h"(b) : "memory");
}

// Waits until element e of this rank's window is written (or the communicator is stopped: garbage then),
// returns it and empties it.
__device__ __forceinline__ float tp_take(const Params &p, unsigned short *e)
{
    unsigned short v;
    Spin spin(p.tp_abort);
    for (uint32_t n = 1;; n++) {
        asm volatile("ld.volatile.global.u16 %0, [%1];" : "=h"(v) : "l"(e) : "memory");
        if (v != kXEmpty || ((n & 1023u) == 0 && *p.tp_abort))
            break;
        spin.tick();
    }
    asm volatile("st.volatile.global.u16 [%0], %1;" ::"l"(e), "h"(kXEmpty) : "memory");
    return __uint_as_float((uint32_t)v << 16);
}

// The rows [own0, own1) this CTA owns: the sum over the ranks' partials in rank order (the peer
// all-reduce's order and rounding: f32 from zero, then bf16), added to the residual as add_rmsnorm
// rounds it. Every rank computes the same bits.
__device__ __noinline__ void tp_combine(const Params &p, int l, int sum, float *own, int own0, int own1)
{
    unsigned short *mine = p.tp_win[p.tp_rank];
    for (int i = threadIdx.x; i < own1 - own0; i += kConsumers) {
        float acc = 0.0f;
        for (int q = 0; q < p.tp_size; q++)
            acc += tp_take(p, mine + tp_slot(p, l, sum, q) + own0 + i);
        const float v = round_bf16(round_bf16(acc) + own[i]);
        own[i] = v;
        p.residual[own0 + i] = __float2bfloat16_rn(v);
    }
}

#endif // Hopper device code

} // namespace
} // namespace ss

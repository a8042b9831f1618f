// decode_persist.cu — one decode token (batch 1) through all decoder layers in ONE persistent kernel (sm_90):
// every CTA streams its rows of every weight matrix through shared memory, its warps follow the layers.
//
// Why one kernel: at batch 1 a layer is eight dependent kernels, and between the GEMVs (norms, rope,
// attention) the memory bus idles; sessions 4-7 measured every per-kernel way to fill those gaps and
// none closed them (docs/performance.md). Here the weights never wait for activations: one producer warp
// per CTA copies its CTA's rows of qkv, o, gate/up and down, layer after layer, into a ring of shared-memory
// stages (tiles of 16 rows x 1024 columns, one bulk async copy per row, each from its own lane), held back
// only by free stages. The eight consumer warps take the stages in the same order on the tensor cores
// and, between matrices, wait for the whole grid through counters in global memory: an attention item or
// a norm stalls the consumers, not the bus, while the ring has room. The grid is one CTA per SM, launched
// cooperatively (all CTAs resident, so the spins end; every spin also traps after 2 s).
//
// Per layer, with G CTAs (counters zeroed before the launch, one set per layer):
//   norm:  x = rmsnorm(residual) · attn_norm, each CTA for itself   (after down of the previous layer: G)
//   qkv:   its rows of qkv (+ bias)                                   → counter qkv
//   attn:  CTAs [0, kv_heads·splits): one (kv head, key split) item each: q (and the new k) normed and
//          rotated, the new k/v stored in the cache by the last split, partial softmax · V; the last item
//          of a head (a counter per head) merges the splits                 → counter attn (kv_heads)
//   o:     its rows of o, added to residual                            → counter o (G)
//   norm + gate/up: silu(gate) · up for its rows                       → counter gu (G)
//   down:  its rows of down, added to residual                         → counter down (G)
// Rounding follows the op-by-op path (bf16 after each GEMV, the residual add, the norm, rope), so the two
// differ only by the fp32 summation order.
//
// Status (session 9, one H200): correct (test_backend_consistency, goldens), 230 tok/s on the 8B shape
// against 234 for the op-by-op path, so the forward pass uses it only with SS_PERSIST=1. Its GEMVs run at
// the bus rate (a layer's four GEMV phases take ~90 µs against ~110 op by op); the attention (~11 µs,
// half of it the merge of the splits) and the grid waits (~1-5 µs each) are what is left to win.
// SS_PERSIST_TRACE=N prints launch N's timeline of the middle layer (eager steps: bench_decode --no-graphs).
#include <float.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend/cuda/common.cuh"
#include "backend/cuda/cuda_kernels.h"

namespace ss {
namespace {

constexpr int kWarps = 8;                  // consumer warps
constexpr int kConsumers = kWarps * 32;
constexpr int kThreads = kConsumers + 32;  // + the producer warp
// A stage is a tile of 16 weight rows (8 gate + the same 8 up rows for the MLP's first half) by kSlab
// columns, rows kPitch bytes apart: the 64 bytes of padding put rows g and g+1 16 banks apart, so the
// tensor-core fragment loads (lane g/4 reads row g) are free of bank conflicts.
constexpr int kTileRows = 16;
constexpr int kSlab = 1024;
constexpr int kPitch = 2 * kSlab + 64;
constexpr int kStageBytes = kTileRows * kPitch;
constexpr int kMaxStages = 12;
constexpr int kMaxKvPre = 16 << 10;        // K + V rows an attention item preloads into shared memory, at most
constexpr int kMaxXBytes = 32 << 10;       // the longest input vector (x of down: inter) in shared memory
constexpr int kMaxSplits = 32;
constexpr int kMaxGroup = 8;               // q heads per kv head
constexpr int kMaxHeadDim = 128;
constexpr int kMaxOwnRows = 256;          // residual rows one CTA owns (hidden / CTAs)
constexpr int kMaxTable = 512;            // block-table entries of the sequence (context / block size)
constexpr int kCtrPerLayer = 5;            // qkv, attn, o, gu, down; then one per kv head
enum : int { kQkv = 0, kAttn = 1, kO = 2, kGu = 3, kDown = 4 };
constexpr int kStamps = 14;    // trace points per layer (SS_PERSIST_TRACE), see the kernel
constexpr int kTraceSlots = 24; // + per matrix (qkv, o, gu, down): time waiting for stages, time in the phase;
                                // + an attention item's scores start and P·V start

struct Layer {
    const bf16 *attn_norm, *wqkv, *bqkv, *q_norm, *k_norm, *wo, *mlp_norm, *wgu, *wdown;
    bf16 *k_cache, *v_cache;
};

struct Params {
    int n_layers, hidden, inter, q_heads, kv_heads, head_dim, q_dim, qkv_dim;
    int splits, nk_max, stages, region_bytes, ctr_stride, block_size;
    unsigned long long *trace; // SS_PERSIST_TRACE: [layers][kStamps][CTAs] globaltimer stamps, else NULL
    int kv_pre;  // attention items copy their keys' K and V rows into shared memory before the wait for q
    int headwait; // SS_PERSIST_HEADWAIT=1 (not yet measured): an attention item waits for its own kv head's
                  // q/k/v rows (counters per head) instead of the whole grid's q/k/v GEMV
    int debug; // SS_PERSIST_DEBUG, a benchmark switch that breaks the results: 1 no GEMV loads (nor math),
               // 2 no grid waits, 4 no attention, 8 no GEMV outputs
    float eps, scale;
    const float *inv_freq;
    const int32_t *pos, *slots, *block_table, *seq_lens;
    bf16 *residual, *qkv, *attn, *act;
    float *partials;
    unsigned *sync;
    Layer layers[SS_CUDA_PERSIST_MAX_LAYERS];
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
// the backend reports, never a GPU that hangs. (A decode step takes milliseconds.)
constexpr uint64_t kHangNs = 2000000000ull;

struct Spin {
    uint32_t n = 0;
    uint64_t t0 = 0;
    __device__ __forceinline__ void tick()
    {
        if ((++n & 1023u) != 0)
            return;
        uint64_t t;
        asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(t));
        if (t0 == 0)
            t0 = t;
        else if (t - t0 > kHangNs)
            __trap();
    }
};

__device__ __forceinline__ void mbar_wait(uint64_t *bar, uint32_t parity)
{
    const uint32_t a = smem_u32(bar);
    Spin spin;
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

__device__ __forceinline__ void grid_wait(const unsigned *ctr, unsigned target, bool off = false)
{
    if (threadIdx.x == 0 && !off) {
        Spin spin;
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

// ---------------------------------------------------------------- the weight stream

struct Geo {
    const bf16 *W;
    int64_t m, r0, r1; // matrix rows (pairs for gate/up); this CTA's rows [r0, r1)
    int k, rpt;        // row length; rows (pairs) per tile: 16 (8)
    bool pair;         // gate/up: a tile holds 8 gate rows, then the same 8 up rows
};

__device__ __forceinline__ Geo geo_of(const Params &p, int l, int mat)
{
    const Layer &L = p.layers[l];
    Geo g;
    g.pair = mat == kGu;
    switch (mat) {
    case kQkv: g.W = L.wqkv, g.m = p.qkv_dim, g.k = p.hidden; break;
    case kO: g.W = L.wo, g.m = p.hidden, g.k = p.q_dim; break;
    case kGu: g.W = L.wgu, g.m = p.inter, g.k = p.hidden; break;
    default: g.W = L.wdown, g.m = p.hidden, g.k = p.inter; break;
    }
    g.rpt = g.pair ? kTileRows / 2 : kTileRows;
    g.r0 = (int64_t)blockIdx.x * g.m / gridDim.x;
    g.r1 = (int64_t)(blockIdx.x + 1) * g.m / gridDim.x;
    return g;
}

// Position in the ring: slot and the parity of its current use.
struct Cursor {
    uint32_t slot = 0, phase = 0;
    __device__ __forceinline__ void next(int stages)
    {
        if (++slot == (uint32_t)stages)
            slot = 0, phase ^= 1u;
    }
};

// Walks the tiles (16 rows x kSlab columns) of every matrix of every layer in the consumers' order: a CTA's
// rows in groups of 16 (8 pairs), each group's columns slab after slab.
struct TileIter {
    int l, mat, k0;
    int64_t r;
    bool done;
    Geo g;
    __device__ void start(const Params &p)
    {
        l = 0, mat = kQkv, done = false;
        enter(p);
    }
    __device__ void enter(const Params &p) // the current matrix from its first tile, skipping empty ones
    {
        for (;;) {
            g = geo_of(p, l, mat);
            r = g.r0, k0 = 0;
            if (r < g.r1)
                return;
            mat = mat == kQkv ? kO : mat + 1; // (kAttn has no weights)
            if (mat > kDown) {
                mat = kQkv;
                if (++l == p.n_layers) {
                    done = true;
                    return;
                }
            }
        }
    }
    __device__ void next(const Params &p)
    {
        if ((k0 += kSlab) < g.k)
            return;
        k0 = 0;
        if ((r += g.rpt) < g.r1)
            return;
        mat = mat == kQkv ? kO : mat + 1;
        if (mat > kDown) {
            mat = kQkv;
            if (++l == p.n_layers) {
                done = true;
                return;
            }
        }
        enter(p);
    }
    __device__ int rows() const { return (int)(g.r1 - r < g.rpt ? g.r1 - r : g.rpt); }
    __device__ uint32_t bytes() const { return 2u * (uint32_t)(g.k - k0 < kSlab ? g.k - k0 : kSlab); }
    // Row i of the tile (gate rows first, then up rows, for gate/up).
    __device__ const bf16 *src(int i, bool up) const { return g.W + ((up ? g.m : 0) + r + i) * g.k + k0; }
};

// The producer warp: every tile, one bulk copy per row, each issued by its own lane (one thread issuing 16
// or 32 copies a stage could not keep the bus busy).
__device__ void produce(const Params &p, uint8_t *ring, uint64_t *full, uint64_t *empty)
{
    const int lane = threadIdx.x & 31;
    const int i = lane % kTileRows; // lanes 0-15: rows (gate rows); 16-31: the up rows
    const bool up = lane >= kTileRows;
    uint64_t policy;
    asm volatile("createpolicy.fractional.L2::evict_first.b64 %0, 1.0;" : "=l"(policy));
    Cursor cur;
    TileIter t;
    t.start(p);
    for (; !t.done; t.next(p), cur.next(p.stages)) {
        const int rows = t.rows();
        const uint32_t bytes = t.bytes();
        mbar_wait(&empty[cur.slot], cur.phase ^ 1u); // a fresh barrier's "previous phase" is complete
        if (lane == 0)
            mbar_expect_tx(&full[cur.slot], (t.g.pair ? 2u : 1u) * (uint32_t)rows * bytes);
        __syncwarp();
        uint8_t *dst = ring + (size_t)cur.slot * kStageBytes;
        if (i < rows && (!up || t.g.pair))
            bulk_load(dst + (up ? kTileRows / 2 + i : i) * kPitch, t.src(i, up), bytes, &full[cur.slot], policy);
    }
}

// d += A(16x16, row-major) . B(16x8, column-major), bf16 in, f32 accumulate (sm_80+).
__device__ __forceinline__ void mma_16816(float (&d)[4], uint32_t a0, uint32_t a1, uint32_t a2, uint32_t a3,
                                          uint32_t b0, uint32_t b1)
{
    asm("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};"
        : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
        : "r"(a0), "r"(a1), "r"(a2), "r"(a3), "r"(b0), "r"(b1));
}

constexpr int kStepsPerWarp = (kSlab / 32 + kWarps - 1) / kWarps; // 32 columns per step (4 lanes x 8)

// The consumers' side of one matrix on the tensor cores (as gemv.cu's mma kernel, from shared memory):
// lane (g = lane/4, t = lane%4) takes 16-byte chunk c of tile rows g and g+8 and of x; the two mmas' k slots
// are the same permutation of real k for A and B. The warps split a tile's columns; each hands the stage
// back once it has loaded it. After a row group's last slab the warps' sums meet in shared memory (the
// only barrier per group) and its outputs are stored.
__device__ void gemv_phase(const Params &p, int l, int mat, const uint8_t *ring, uint64_t *full, uint64_t *empty,
                           const bf16 *xs, float *red, float *own, Cursor &cur, uint32_t &group)
{
    const Geo g = geo_of(p, l, mat);
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, tid = threadIdx.x;
    const int lg = lane >> 2, lt = lane & 3;
    const Layer &L = p.layers[l];
    const uint4 *x = reinterpret_cast<const uint4 *>(xs);
    const uint4 zero = make_uint4(0, 0, 0, 0);
    const bool tr = p.trace && tid == 0;
    const unsigned long long t_in = tr ? gtime() : 0;
    unsigned long long waited = 0;
    for (int64_t r = g.r0; r < g.r1; r += g.rpt, group++) {
        const int rows = (int)(g.r1 - r < g.rpt ? g.r1 - r : g.rpt);
        const float bias = mat == kQkv && L.bqkv && tid < rows ? __bfloat162float(L.bqkv[r + tid]) : 0.0f;
        float acc[4] = {0.0f, 0.0f, 0.0f, 0.0f};
        for (int k0 = 0; k0 < g.k; k0 += kSlab, cur.next(p.stages)) {
            const int chunks = (g.k - k0 < kSlab ? g.k - k0 : kSlab) / 8;
            const unsigned long long t_w = tr ? gtime() : 0;
            mbar_wait(&full[cur.slot], cur.phase);
            if (tr)
                waited += gtime() - t_w;
            const uint8_t *st = ring + (size_t)cur.slot * kStageBytes;
            uint4 a[kStepsPerWarp], b[kStepsPerWarp], xv[kStepsPerWarp];
#pragma unroll
            for (int j = 0; j < kStepsPerWarp; j++) { // every load of the stage in flight at once
                const int c = 4 * (warp + j * kWarps) + lt;
                const bool on = c < chunks && !(p.debug & 1);
                a[j] = on ? *reinterpret_cast<const uint4 *>(st + lg * kPitch + c * 16) : zero;
                b[j] = on ? *reinterpret_cast<const uint4 *>(st + (lg + 8) * kPitch + c * 16) : zero;
                xv[j] = on ? x[k0 / 8 + c] : zero;
            }
            __syncwarp();
            if (lane == 0) // this warp has read the stage
                mbar_arrive(&empty[cur.slot]);
#pragma unroll
            for (int j = 0; j < kStepsPerWarp; j++) {
                mma_16816(acc, a[j].x, b[j].x, a[j].y, b[j].y, xv[j].x, xv[j].y);
                mma_16816(acc, a[j].z, b[j].z, a[j].w, b[j].w, xv[j].z, xv[j].w);
            }
        }
        // column 0 of D (x is in every column): acc[0] is row lg, acc[2] row lg + 8
        float *rb = red + (group & 1u) * kWarps * kTileRows;
        if (lt == 0)
            rb[warp * kTileRows + lg] = acc[0], rb[warp * kTileRows + lg + 8] = acc[2];
        consumer_sync();
        if (tid < rows && !(p.debug & 8)) {
            float a = 0.0f;
#pragma unroll
            for (int w = 0; w < kWarps; w++)
                a += rb[w * kTileRows + tid];
            const int64_t row = r + tid;
            if (mat == kQkv) {
                p.qkv[row] = __float2bfloat16_rn(a + bias);
            } else if (mat == kGu) {
                float u = 0.0f;
#pragma unroll
                for (int w = 0; w < kWarps; w++)
                    u += rb[w * kTileRows + kTileRows / 2 + tid];
                p.act[row] = __float2bfloat16_rn(a / (1.0f + __expf(-a)) * u);
            } else { // o, down: residual += round(out), rounded as add_rmsnorm does
                const float v = round_bf16(round_bf16(a) + own[row - g.r0]);
                own[row - g.r0] = v;
                p.residual[row] = __float2bfloat16_rn(v);
            }
        }
    }
    if (tr) {
        const int m = mat == kQkv ? 0 : mat - 1; // qkv, o, gu, down
        p.trace[((size_t)l * kTraceSlots + kStamps + m) * gridDim.x + blockIdx.x] = waited;
        p.trace[((size_t)l * kTraceSlots + kStamps + 4 + m) * gridDim.x + blockIdx.x] = gtime() - t_in;
    }
}

// With p.headwait: after its q/k/v rows, the CTA adds to each kv head's counter the number of that head's
// rows (its q heads', its k's and its v's) it wrote; the head is ready at (group + 2) * head_dim.
__device__ void arrive_heads(const Params &p, unsigned *ctr)
{
    consumer_sync();
    if (threadIdx.x != 0)
        return;
    const Geo g = geo_of(p, 0, kQkv); // the row split is the same in every layer
    const int grp = p.q_heads / p.kv_heads, hd = p.head_dim, kv_dim = p.kv_heads * hd;
    auto overlap = [&](int64_t a, int64_t b) { // rows of [a, b) among this CTA's [r0, r1)
        const int64_t lo = a > g.r0 ? a : g.r0, hi = b < g.r1 ? b : g.r1;
        return hi > lo ? (unsigned)(hi - lo) : 0u;
    };
    for (int h = 0; h < p.kv_heads; h++) {
        const unsigned n = overlap((int64_t)h * grp * hd, (int64_t)(h + 1) * grp * hd) +
                           overlap(p.q_dim + (int64_t)h * hd, p.q_dim + (int64_t)(h + 1) * hd) +
                           overlap(p.q_dim + kv_dim + (int64_t)h * hd, p.q_dim + kv_dim + (int64_t)(h + 1) * hd);
        if (n)
            asm volatile("red.release.gpu.global.add.u32 [%0], %1;" ::"l"(ctr + kCtrPerLayer + p.kv_heads + h), "r"(n)
                         : "memory");
    }
}

// Loads of a thread's 16-byte chunks of a vector (at most kPer): every load is issued before the first is
// used, so a norm or an input costs one trip to L2, not one per chunk.
constexpr int kPer = kMaxXBytes / 16 / kConsumers; // 32 KiB (the longest input) / 16 / 256 = 8

// xs = rmsnorm(residual) · w (bf16), as rmsnorm_kernel rounds it.
__device__ void norm_to_xs(const Params &p, const bf16 *w, bf16 *xs, float *scratch)
{
    const int chunks = p.hidden / 8;
    uint4 raw[kPer], wr[kPer];
#pragma unroll
    for (int i = 0; i < kPer; i++) {
        const int c = threadIdx.x + i * kConsumers;
        if (c < chunks) {
            raw[i] = ldcg16(p.residual + (int64_t)c * 8);
            wr[i] = *reinterpret_cast<const uint4 *>(w + (int64_t)c * 8);
        }
    }
    float ss = 0.0f;
#pragma unroll
    for (int i = 0; i < kPer; i++)
        if (threadIdx.x + i * kConsumers < chunks) {
            float v[8];
            unpack8(raw[i], v);
#pragma unroll
            for (int e = 0; e < 8; e++)
                ss += v[e] * v[e];
        }
    const float inv = rsqrtf(consumer_sum(ss, scratch) / (float)p.hidden + p.eps);
#pragma unroll
    for (int i = 0; i < kPer; i++) {
        const int c = threadIdx.x + i * kConsumers;
        if (c < chunks) {
            float v[8], g[8];
            unpack8(raw[i], v);
            unpack8(wr[i], g);
#pragma unroll
            for (int e = 0; e < 8; e++)
                v[e] = v[e] * inv * g[e];
            store_vec<8>(xs + (int64_t)c * 8, v);
        }
    }
    consumer_sync();
}

// xs = src[0, n) (another CTA's output).
__device__ void load_xs(const bf16 *src, int n, bf16 *xs)
{
    uint4 raw[kPer];
#pragma unroll
    for (int i = 0; i < kPer; i++) {
        const int c = threadIdx.x + i * kConsumers;
        if (c < n / 8)
            raw[i] = ldcg16(src + (int64_t)c * 8);
    }
#pragma unroll
    for (int i = 0; i < kPer; i++) {
        const int c = threadIdx.x + i * kConsumers;
        if (c < n / 8)
            reinterpret_cast<uint4 *>(xs)[c] = raw[i];
    }
    consumer_sync();
}

// ---------------------------------------------------------------- attention

// In place over v[0, hd): rmsnorm · w (rounded to bf16), when w is given. One warp.
__device__ __forceinline__ void head_norm(float *v, const bf16 *w, int hd, float eps)
{
    const int lane = threadIdx.x & 31;
    float ss = 0.0f;
    for (int i = lane; i < hd; i += 32)
        ss += v[i] * v[i];
    const float inv = rsqrtf(warp_reduce(ss, SumOp()) / (float)hd + eps);
    __syncwarp();
    for (int i = lane; i < hd; i += 32)
        v[i] = round_bf16(v[i] * inv * __bfloat162float(w[i]));
}

// Key j's row of kv head h in a layer's cache (the new token's from shared memory: the last split wrote
// it to the cache too, but reads its own copy).
__device__ __forceinline__ const bf16 *kv_row(const Params &p, const int *btab, const bf16 *cache, int j, int h,
                                              int newpos, const bf16 *fresh, const bf16 *pre = nullptr, int j0 = 0)
{
    if (j == newpos && fresh)
        return fresh;
    if (pre) // the item's copy in shared memory
        return pre + (j - j0) * p.head_dim;
    const int bs = p.block_size;
    const int64_t slot = (int64_t)btab[j / bs] * bs + j % bs;
    return cache + slot * p.kv_heads * p.head_dim + (int64_t)h * p.head_dim;
}

// One (kv head, key split) item of layer l; the last item of its head merges the head's splits.
constexpr int kMergeLoads = 16; // split partials loaded at once by the merge (one trip for 16 splits)

// trig: [hd/2] cos, [hd/2] sin of the token's rope angles; btab: the sequence's block table (the kernel
// copies both once).
__device__ void attention_item(const Params &p, int l, unsigned *ctr, uint8_t *region, const float *trig,
                               const int *btab)
{
    const Layer &L = p.layers[l];
    const int tid = threadIdx.x, warp = tid >> 5, lane = tid & 31;
    const int grp = p.q_heads / p.kv_heads, hd = p.head_dim, half = hd / 2, nkm = p.nk_max;
    const int h = (int)blockIdx.x / p.splits, s = (int)blockIdx.x % p.splits;
    const int len = p.seq_lens[0], newpos = p.pos[0];
    const int k0 = (int)((int64_t)s * len / p.splits), k1 = (int)((int64_t)(s + 1) * len / p.splits), nk = k1 - k0;
    const bool last = s == p.splits - 1;
    if (p.debug & 4) { // benchmark switch: no attention, one arrival per kv head
        if (s == 0)
            grid_arrive(ctr + kAttn);
        return;
    }
    if (nk > nkm) // the launcher sized shared memory for max_seq_len; a longer context is the caller's bug
        __trap();
    float *qf = reinterpret_cast<float *>(region);   // [grp][hd] rotated q (bf16 values)
    float *kf = qf + grp * hd;                         // [hd] the new k
    bf16 *knew = reinterpret_cast<bf16 *>(kf + hd);    // [hd] the new k, bf16
    bf16 *vnew = knew + hd;                            // [hd] the new v
    float *sc = reinterpret_cast<float *>(vnew + hd);  // [grp][nk_max] scores, then probabilities
    float *stat = sc + grp * nkm;                      // [grp] max, [grp] sum, [1] merge flag
    float *pv = stat + 4 * kMaxGroup;                  // [kWarps][grp][hd] partial P·V
    const bf16 *row = p.qkv;
    const int heads_new = grp + (last ? 1 : 0);
    const bool dims = lane * 4 < hd;
    // The cache rows of earlier steps do not depend on this step: copied into shared memory (or, for long
    // splits, into L2) while the grid finishes q/k/v.
    bf16 *kpre = p.kv_pre ? reinterpret_cast<bf16 *>(pv + kWarps * grp * hd) : nullptr; // [nk_max][hd]
    bf16 *vpre = p.kv_pre ? kpre + nkm * hd : nullptr;
    if (p.kv_pre) {
        const int cpr = hd / 8; // 16-byte chunks a row
        for (int e = tid; e < nk * cpr; e += kConsumers) {
            const int jj = e / cpr, c = e % cpr;
            if (last && k0 + jj == newpos)
                continue;
            const bf16 *kr = kv_row(p, btab, L.k_cache, k0 + jj, h, -1, nullptr);
            const bf16 *vr = kv_row(p, btab, L.v_cache, k0 + jj, h, -1, nullptr);
            asm volatile("cp.async.cg.shared.global [%0], [%1], 16;" ::"r"(smem_u32(kpre + jj * hd + c * 8)),
                         "l"(kr + c * 8)
                         : "memory");
            asm volatile("cp.async.cg.shared.global [%0], [%1], 16;" ::"r"(smem_u32(vpre + jj * hd + c * 8)),
                         "l"(vr + c * 8)
                         : "memory");
        }
        asm volatile("cp.async.commit_group;" ::: "memory");
    } else {
        for (int jj = tid; jj < nk; jj += kConsumers)
            if (!(last && k0 + jj == newpos)) {
                const bf16 *kr = kv_row(p, btab, L.k_cache, k0 + jj, h, -1, nullptr);
                const bf16 *vr = kv_row(p, btab, L.v_cache, k0 + jj, h, -1, nullptr);
                for (int b = 0; b < hd * 2; b += 128) { // 128-byte lines
                    asm volatile("prefetch.global.L2 [%0];" ::"l"((const char *)kr + b));
                    asm volatile("prefetch.global.L2 [%0];" ::"l"((const char *)vr + b));
                }
            }
    }

    if (p.headwait)
        grid_wait(ctr + kCtrPerLayer + p.kv_heads + h, (unsigned)((grp + 2) * hd), p.debug & 2);
    else
        grid_wait(ctr + kQkv, gridDim.x, p.debug & 2);
    stamp(p, l, 4);
#pragma unroll 4
    for (int e = tid; e < grp * hd; e += kConsumers)
        qf[e] = ldcg_bf16(row + (int64_t)h * grp * hd + e);
    if (last)
        for (int e = tid; e < hd; e += kConsumers) {
            kf[e] = ldcg_bf16(row + p.q_dim + (int64_t)h * hd + e);
            vnew[e] = __float2bfloat16_rn(ldcg_bf16(row + p.q_dim + (int64_t)p.kv_heads * hd + h * hd + e));
        }
    consumer_sync();
    if (L.q_norm) { // Qwen3: per-head RMSNorm before rope
        for (int j = warp; j < heads_new; j += kWarps)
            head_norm(j < grp ? qf + j * hd : kf, j < grp ? L.q_norm : L.k_norm, hd, p.eps);
        consumer_sync();
    }
    for (int e = tid; e < heads_new * half; e += kConsumers) { // rope, as rope_kv_store_kernel computes it
        const int j = e / half, i = e % half;
        float *v = j < grp ? qf + j * hd : kf;
        const float c = trig[i], sn = trig[half + i], x1 = v[i], x2 = v[i + half];
        v[i] = round_bf16(x1 * c - x2 * sn);
        v[i + half] = round_bf16(x2 * c + x1 * sn);
    }
    consumer_sync();
    if (last) {
        const int32_t slot = p.slots[0];
        for (int e = tid; e < hd; e += kConsumers) {
            knew[e] = __float2bfloat16_rn(kf[e]);
            if (slot >= 0) {
                const int64_t off = (int64_t)slot * p.kv_heads * hd + (int64_t)h * hd + e;
                L.k_cache[off] = knew[e];
                L.v_cache[off] = vnew[e];
            }
        }
        consumer_sync();
    }
    const bf16 *kfresh = last ? knew : nullptr, *vfresh = last ? vnew : nullptr;
    if (p.kv_pre) { // this thread's copies have landed; the barrier makes everyone's visible
        asm volatile("cp.async.wait_all;" ::: "memory");
        consumer_sync();
    }
    stamp(p, l, kStamps + 8);

    // scores: lanes own 4 dims (their q values stay in registers), warps take every 8th key
    float qr[kMaxGroup][4];
#pragma unroll
    for (int j = 0; j < kMaxGroup; j++)
#pragma unroll
        for (int e = 0; e < 4; e++)
            qr[j][e] = j < grp && dims ? qf[j * hd + lane * 4 + e] : 0.0f;
#pragma unroll 4
    for (int jj = warp; jj < nk; jj += kWarps) {
        const uint2 raw = dims ? *reinterpret_cast<const uint2 *>(
                                     kv_row(p, btab, L.k_cache, k0 + jj, h, newpos, kfresh, kpre, k0) + lane * 4)
                               : make_uint2(0, 0);
        const float kv[4] = {bf16_lo(raw.x), bf16_hi(raw.x), bf16_lo(raw.y), bf16_hi(raw.y)};
#pragma unroll
        for (int j = 0; j < kMaxGroup; j++)
            if (j < grp) {
                float d = 0.0f;
#pragma unroll
                for (int e = 0; e < 4; e++)
                    d = fmaf(qr[j][e], kv[e], d);
                d = warp_reduce(d, SumOp());
                if (lane == 0)
                    sc[j * nkm + jj] = d * p.scale;
            }
    }
    consumer_sync();
    for (int j = warp; j < grp; j += kWarps) { // softmax statistics of this split, a warp per q head
        float m = -FLT_MAX;
        for (int jj = lane; jj < nk; jj += 32)
            m = fmaxf(m, sc[j * nkm + jj]);
        m = warp_reduce(m, MaxOp());
        float sum = 0.0f;
        for (int jj = lane; jj < nk; jj += 32) {
            const float e = __expf(sc[j * nkm + jj] - m);
            sc[j * nkm + jj] = e;
            sum += e;
        }
        sum = warp_reduce(sum, SumOp());
        if (lane == 0)
            stat[j] = nk > 0 ? m : -FLT_MAX, stat[kMaxGroup + j] = sum;
    }
    consumer_sync();
    stamp(p, l, kStamps + 9);
    // P·V: lanes own 4 dims, warps take every 8th key
    float acc[kMaxGroup][4];
#pragma unroll
    for (int j = 0; j < kMaxGroup; j++)
#pragma unroll
        for (int e = 0; e < 4; e++)
            acc[j][e] = 0.0f;
    auto pv_key = [&](int jj, uint2 raw) {
        const float v[4] = {bf16_lo(raw.x), bf16_hi(raw.x), bf16_lo(raw.y), bf16_hi(raw.y)};
#pragma unroll
        for (int j = 0; j < kMaxGroup; j++)
            if (j < grp) {
                const float pr = sc[j * nkm + jj];
#pragma unroll
                for (int e = 0; e < 4; e++)
                    acc[j][e] = fmaf(pr, v[e], acc[j][e]);
            }
    };
    auto v_of = [&](int jj) {
        return *reinterpret_cast<const uint2 *>(kv_row(p, btab, L.v_cache, k0 + jj, h, newpos, vfresh, vpre, k0) +
                                                lane * 4);
    };
#pragma unroll 4
    for (int jj = warp; jj < nk && dims; jj += kWarps)
        pv_key(jj, v_of(jj));
    if (dims)
#pragma unroll
        for (int j = 0; j < kMaxGroup; j++)
            if (j < grp)
#pragma unroll
                for (int e = 0; e < 4; e++)
                    pv[(warp * grp + j) * hd + lane * 4 + e] = acc[j][e];
    consumer_sync();
    const int stride = hd + 2;
    for (int u = tid; u < grp * hd; u += kConsumers) {
        const int j = u / hd, d = u % hd;
        float sum = 0.0f;
        for (int w = 0; w < kWarps; w++)
            sum += pv[(w * grp + j) * hd + d];
        float *out = p.partials + ((int64_t)(h * grp + j) * p.splits + s) * stride;
        out[d] = sum;
        if (d == 0)
            out[hd] = stat[j], out[hd + 1] = stat[kMaxGroup + j];
    }
    // the last split of this head to finish merges them all
    consumer_sync();
    stamp(p, l, 5);
    if (tid == 0) {
        __threadfence();
        const unsigned before = atomicAdd(ctr + kCtrPerLayer + h, 1u);
        stat[2 * kMaxGroup] = before == (unsigned)p.splits - 1 ? 1.0f : 0.0f;
        __threadfence();
    }
    consumer_sync();
    if (stat[2 * kMaxGroup] == 0.0f)
        return;
    // the splits' weights exp(m_t - M) / sum, per q head, into shared memory (pv is free again)
    float *wt = pv; // [grp][splits] max, then weights; [grp][splits] sums
    for (int u = tid; u < grp * p.splits; u += kConsumers) {
        const float *src = p.partials + ((int64_t)(h * grp) * p.splits + u) * stride;
        wt[u] = __ldcg(src + hd);
        wt[grp * p.splits + u] = __ldcg(src + hd + 1);
    }
    consumer_sync();
    for (int j = tid; j < grp; j += kConsumers) {
        float *mj = wt + j * p.splits, *lj = wt + (grp + j) * p.splits;
        float m = -FLT_MAX, den = 0.0f;
        for (int t = 0; t < p.splits; t++)
            m = fmaxf(m, mj[t]);
        for (int t = 0; t < p.splits; t++)
            den += mj[t] == -FLT_MAX ? 0.0f : __expf(mj[t] - m) * lj[t]; // empty splits weigh nothing
        for (int t = 0; t < p.splits; t++)
            mj[t] = mj[t] == -FLT_MAX ? 0.0f : __expf(mj[t] - m) / den;
    }
    consumer_sync();
    for (int u = tid; u < grp * hd; u += kConsumers) {
        const int j = u / hd, d = u % hd;
        const float *base = p.partials + (int64_t)(h * grp + j) * p.splits * stride + d;
        float out = 0.0f;
        for (int t0 = 0; t0 < p.splits; t0 += kMergeLoads) {
            float part[kMergeLoads]; // kMergeLoads splits' values in flight at once
#pragma unroll
            for (int t = 0; t < kMergeLoads; t++)
                part[t] = t0 + t < p.splits ? __ldcg(base + (t0 + t) * stride) : 0.0f;
#pragma unroll
            for (int t = 0; t < kMergeLoads; t++)
                if (t0 + t < p.splits)
                    out += wt[j * p.splits + t0 + t] * part[t];
        }
        p.attn[(int64_t)(h * grp + j) * hd + d] = __float2bfloat16_rn(out);
    }
    grid_arrive(ctr + kAttn);
    stamp(p, l, 6);
}

#endif // Hopper device code

// ---------------------------------------------------------------- the kernel

__global__ void __launch_bounds__(kThreads, 1) decode_persist_kernel(const __grid_constant__ Params p)
{
#if !defined(__CUDA_ARCH__) || __CUDA_ARCH__ >= 900
    extern __shared__ __align__(128) uint8_t smem[];
    uint8_t *ring = smem;
    uint8_t *region = smem + (size_t)p.stages * kStageBytes; // xs, or an attention item's scratch
    uint64_t *full = reinterpret_cast<uint64_t *>(region + p.region_bytes);
    uint64_t *empty = full + kMaxStages;
    float *red = reinterpret_cast<float *>(empty + kMaxStages); // [2][kWarps][kTileRows]
    float *scratch = red + 2 * kWarps * kTileRows;              // [kWarps]
    float *own = scratch + kWarps;                               // [kMaxOwnRows]
    float *trig = own + kMaxOwnRows;                             // [kMaxHeadDim]: the rope's cos, sin
    int *btab = reinterpret_cast<int *>(trig + kMaxHeadDim);    // [kMaxTable]: the sequence's block table
    if (threadIdx.x == 0) {
        for (int i = 0; i < p.stages; i++) {
            mbar_init(&full[i], 1);
            mbar_init(&empty[i], kWarps); // every consumer warp hands a stage back
        }
        asm volatile("fence.mbarrier_init.release.cluster;" ::: "memory");
        asm volatile("fence.proxy.async.shared::cta;" ::: "memory");
    }
    __syncthreads();
    if (threadIdx.x >= kConsumers) { // the producer warp
        produce(p, ring, full, empty);
        return;
    }
    const unsigned G = gridDim.x;
    bf16 *xs = reinterpret_cast<bf16 *>(region);
    Cursor cur;
    uint32_t group = 0;
    const int own0 = (int)((int64_t)blockIdx.x * p.hidden / G), own1 = (int)((int64_t)(blockIdx.x + 1) * p.hidden / G);
    for (int i = threadIdx.x; i < own1 - own0; i += kConsumers) // the previous kernel's output
        own[i] = __bfloat162float(p.residual[own0 + i]);
    const int half = p.head_dim / 2;
    int nblk = (p.seq_lens[0] + p.block_size - 1) / p.block_size;
    nblk = nblk < kMaxTable ? nblk : kMaxTable; // a longer context traps in the attention (nk > nk_max)
    for (int i = threadIdx.x; i < nblk && (int)blockIdx.x < p.kv_heads * p.splits; i += kConsumers)
        btab[i] = p.block_table[i];
    for (int i = threadIdx.x; i < half && (int)blockIdx.x < p.kv_heads * p.splits; i += kConsumers) {
        double sd, cd; // as rope_kv_store_kernel computes them
        sincos((double)((float)p.pos[0] * p.inv_freq[i]), &sd, &cd);
        trig[i] = (float)cd;
        trig[half + i] = (float)sd;
    }
    consumer_sync();
    const bool nowait = p.debug & 2;
    for (int l = 0; l < p.n_layers; l++) {
        const Layer &L = p.layers[l];
        unsigned *ctr = p.sync + (size_t)l * p.ctr_stride;
        stamp(p, l, 0);
        if (l > 0)
            grid_wait(ctr - p.ctr_stride + kDown, G, nowait);
        stamp(p, l, 1);
        norm_to_xs(p, L.attn_norm, xs, scratch);
        stamp(p, l, 2);
        gemv_phase(p, l, kQkv, ring, full, empty, xs, red, own, cur, group);
        stamp(p, l, 3);
        if (p.headwait)
            arrive_heads(p, ctr);
        else
            grid_arrive(ctr + kQkv);
        if ((int)blockIdx.x < p.kv_heads * p.splits)
            attention_item(p, l, ctr, region, trig, btab); // stamps 4, 5, 6
        grid_wait(ctr + kAttn, (unsigned)p.kv_heads, nowait);
        stamp(p, l, 7);
        load_xs(p.attn, p.q_dim, xs);
        gemv_phase(p, l, kO, ring, full, empty, xs, red, own, cur, group);
        stamp(p, l, 8);
        grid_arrive(ctr + kO);
        grid_wait(ctr + kO, G, nowait);
        stamp(p, l, 9);
        norm_to_xs(p, L.mlp_norm, xs, scratch);
        stamp(p, l, 10);
        gemv_phase(p, l, kGu, ring, full, empty, xs, red, own, cur, group);
        stamp(p, l, 11);
        grid_arrive(ctr + kGu);
        grid_wait(ctr + kGu, G, nowait);
        stamp(p, l, 12);
        load_xs(p.act, p.inter, xs);
        gemv_phase(p, l, kDown, ring, full, empty, xs, red, own, cur, group);
        stamp(p, l, 13);
        grid_arrive(ctr + kDown);
    }
#endif
}

size_t round_up(size_t v, size_t a)
{
    return (v + a - 1) / a * a;
}

bool aligned16(const void *p)
{
    return ((uintptr_t)p & 15u) == 0;
}

// The timeline of the middle layer of one launch, over the CTAs (min / median / max, µs from the
// earliest CTA's layer start), on stderr. A benchmark aid: synchronises the stream, eager steps only.
void print_trace(cudaStream_t s, const unsigned long long *dev, int layers, int ctas)
{
    cudaStreamCaptureStatus cap = cudaStreamCaptureStatusNone;
    if (cudaStreamIsCapturing(s, &cap) != cudaSuccess || cap != cudaStreamCaptureStatusNone)
        return;
    const size_t n = (size_t)layers * kTraceSlots * ctas;
    unsigned long long *h = (unsigned long long *)malloc(n * 8);
    if (!h || cudaStreamSynchronize(s) != cudaSuccess || cudaMemcpy(h, dev, n * 8, cudaMemcpyDeviceToHost) != cudaSuccess) {
        free(h);
        return;
    }
    static const char *names[kTraceSlots] = {
        "layer start", "down done (all)", "norm", "qkv GEMV", "qkv done (all)", "attn item", "attn merged",
        "attn done (all)", "o GEMV", "o done (all)", "norm", "gate/up GEMV", "gate/up done (all)", "down GEMV",
        "qkv: stage waits", "o: stage waits", "gate/up: stage waits", "down: stage waits",
        "qkv: phase", "o: phase", "gate/up: phase", "down: phase", "attn: scores start", "attn: P.V start"};
    const int l = layers / 2;
    const unsigned long long *t = h + (size_t)l * kTraceSlots * ctas;
    unsigned long long base = ~0ull;
    for (int b = 0; b < ctas; b++)
        base = t[b] < base ? t[b] : base;
    fprintf(stderr, "persistent decode, layer %d of %d, %d CTAs: us from the layer's start (min / median / max)\n", l,
            layers, ctas);
    for (int k = 0; k < kTraceSlots; k++) {
        double v[1024];
        int m = 0;
        const unsigned long long off = k < kStamps || k >= kStamps + 8 ? base : 0; // durations: 14-21
        for (int b = 0; b < ctas && m < 1024; b++)
            if (t[(size_t)k * ctas + b] && t[(size_t)k * ctas + b] >= off)
                v[m++] = (double)(t[(size_t)k * ctas + b] - off) / 1000.0;
        for (int i = 1; i < m; i++) // insertion sort: a few hundred values
            for (int j = i; j > 0 && v[j - 1] > v[j]; j--) {
                const double x = v[j];
                v[j] = v[j - 1], v[j - 1] = x;
            }
        if (m)
            fprintf(stderr, "  %2d %-18s %8.2f %8.2f %8.2f  (%d CTAs)\n", k, names[k], v[0], v[m / 2], v[m - 1], m);
    }
    if (l + 1 < layers) {
        unsigned long long next = ~0ull;
        for (int b = 0; b < ctas; b++)
            next = t[(size_t)kTraceSlots * ctas + b] < next ? t[(size_t)kTraceSlots * ctas + b] : next;
        fprintf(stderr, "  layer period %.2f us\n", (double)(next - base) / 1000.0);
    }
    free(h);
}

} // namespace
} // namespace ss

using namespace ss;

extern "C" int ss_cuda_decode_persist(void *stream, ss_cuda_persist_args *a)
{
    int dev = 0, major = 0, sms = 0, smem_max = 0;
#define SS_PERSIST_NO(reason) return (a->why = (reason), -1)
    if (cudaGetDevice(&dev) != cudaSuccess ||
        cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, dev) != cudaSuccess ||
        cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, dev) != cudaSuccess ||
        cudaDeviceGetAttribute(&smem_max, cudaDevAttrMaxSharedMemoryPerBlockOptin, dev) != cudaSuccess)
        SS_PERSIST_NO("the device's properties are not readable");
    const int hd = a->head_dim, qh = a->q_heads, kvh = a->kv_heads;
    if (major < 9)
        SS_PERSIST_NO("it needs sm_90 (Hopper)");
    if (a->n_layers < 1 || a->n_layers > SS_CUDA_PERSIST_MAX_LAYERS || hd % 8 || hd > kMaxHeadDim || kvh < 1 ||
        qh % kvh || qh / kvh > kMaxGroup || a->hidden % 8 || a->inter % 8 || a->max_seq_len < 1)
        SS_PERSIST_NO("the model's shape is outside its limits (layers, head_dim, group, multiples of 8)");
    const int q_dim = qh * hd, qkv_dim = (qh + 2 * kvh) * hd, grp = qh / kvh;
    const int kmax = a->hidden > a->inter ? (a->hidden > q_dim ? a->hidden : q_dim) : (a->inter > q_dim ? a->inter : q_dim);
    if (2 * kmax > kMaxXBytes)
        SS_PERSIST_NO("an input vector is longer than its shared-memory buffer (32 KiB)");
    int splits = sms / kvh;
    splits = splits > kMaxSplits ? kMaxSplits : splits;
    const char *split_env = getenv("SS_PERSIST_SPLITS"); // benchmark switch: at most this many key splits
    const long split_cap = split_env ? strtol(split_env, NULL, 10) : 0;
    if (split_cap > 0 && split_cap < splits)
        splits = (int)split_cap;
    if (splits < 1)
        SS_PERSIST_NO("fewer SMs than kv heads");
    // Keys a split holds at most, rounded up to 4: the score rows (grp x nk_max floats) then end on a 16-byte
    // boundary, which the preloaded K/V rows after them need (cp.async of 16 bytes).
    const int nk_max = ((a->max_seq_len + splits - 1) / splits + 3) & ~3;
    const size_t pre_bytes = 2 * (size_t)nk_max * hd * 2; // an item's K and V rows
    const int kv_pre = pre_bytes <= kMaxKvPre;
    const size_t attn_bytes = ((size_t)grp * hd + hd) * 4 + 2 * (size_t)hd * 2 + (size_t)grp * nk_max * 4 +
                              4 * kMaxGroup * 4 + (size_t)kWarps * grp * hd * 4 + (kv_pre ? pre_bytes : 0);
    const size_t region = round_up(2 * (size_t)kmax > attn_bytes ? 2 * (size_t)kmax : attn_bytes, 128);
    const size_t tail = 2 * kMaxStages * 8 + (2 * kWarps * kTileRows + kWarps + kMaxOwnRows + kMaxHeadDim + kMaxTable) * 4;
    if (a->block_size < 1 || (a->max_seq_len + a->block_size - 1) / a->block_size > kMaxTable)
        SS_PERSIST_NO("the context bound exceeds its block table");
    if ((a->hidden + sms - 1) / sms > kMaxOwnRows)
        SS_PERSIST_NO("the hidden size is too large for the SM count");
    if ((size_t)smem_max < region + tail + 3 * (size_t)kStageBytes)
        SS_PERSIST_NO("the context bound leaves too little shared memory for the weight stages");
    int stages = (int)(((size_t)smem_max - region - tail) / kStageBytes);
    stages = stages > kMaxStages ? kMaxStages : stages;
    // As many stages as one CTA per SM can hold with this kernel's registers and static shared memory.
    size_t smem = 0;
    for (;; stages--) {
        if (stages < 3)
            SS_PERSIST_NO("one CTA per SM does not fit (registers or shared memory)");
        smem = (size_t)stages * kStageBytes + region + tail;
        int per_sm = 0;
        if (cudaFuncSetAttribute(decode_persist_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem) ==
                cudaSuccess &&
            cudaOccupancyMaxActiveBlocksPerMultiprocessor(&per_sm, decode_persist_kernel, kThreads, smem) ==
                cudaSuccess &&
            per_sm >= 1)
            break;
        (void)cudaGetLastError();
    }
    const int ctr_stride = kCtrPerLayer + 2 * kvh; // + a merge counter and a ready counter per kv head
    const size_t ctr_bytes = round_up((size_t)a->n_layers * ctr_stride * 4, 256);
    const size_t part_bytes = round_up((size_t)qh * splits * (hd + 2) * 4, 256);
    const char *trace_env = getenv("SS_PERSIST_TRACE"); // "N": print the timeline of launch N (eager steps)
    const size_t trace_n = trace_env ? (size_t)a->n_layers * kTraceSlots * sms : 0;
    if (ctr_bytes + part_bytes + trace_n * 8 > a->workspace_bytes || !aligned16(a->workspace))
        SS_PERSIST_NO("its workspace is too small");

    Params p = {};
    p.n_layers = a->n_layers, p.hidden = a->hidden, p.inter = a->inter, p.q_heads = qh, p.kv_heads = kvh;
    p.head_dim = hd, p.q_dim = q_dim, p.qkv_dim = qkv_dim, p.splits = splits, p.nk_max = nk_max;
    const char *dbg = getenv("SS_PERSIST_DEBUG");
    p.debug = dbg ? (int)strtol(dbg, NULL, 10) : 0;
    p.kv_pre = kv_pre;
    const char *headwait = getenv("SS_PERSIST_HEADWAIT");
    p.headwait = headwait && !strcmp(headwait, "1");
    p.stages = stages, p.region_bytes = (int)region, p.ctr_stride = ctr_stride, p.block_size = a->block_size;
    p.eps = a->eps, p.scale = a->scale, p.inv_freq = a->inv_freq, p.pos = a->pos, p.slots = a->slots;
    p.block_table = a->block_table, p.seq_lens = a->seq_lens;
    p.residual = (bf16 *)a->residual, p.qkv = (bf16 *)a->qkv, p.attn = (bf16 *)a->attn, p.act = (bf16 *)a->act;
    p.sync = (unsigned *)a->workspace;
    p.partials = (float *)((char *)a->workspace + ctr_bytes);
    p.trace = trace_n ? (unsigned long long *)((char *)a->workspace + ctr_bytes + part_bytes) : nullptr;
    for (int l = 0; l < a->n_layers; l++) {
        const ss_cuda_persist_layer *s = &a->layers[l];
        if (!aligned16(s->wqkv) || !aligned16(s->wo) || !aligned16(s->wgu) || !aligned16(s->wdown) ||
            !aligned16(s->attn_norm) || !aligned16(s->mlp_norm) || (s->q_norm == NULL) != (s->k_norm == NULL))
            SS_PERSIST_NO("a weight is not 16-byte aligned");
        p.layers[l] = Layer{(const bf16 *)s->attn_norm, (const bf16 *)s->wqkv, (const bf16 *)s->bqkv,
                            (const bf16 *)s->q_norm, (const bf16 *)s->k_norm, (const bf16 *)s->wo,
                            (const bf16 *)s->mlp_norm, (const bf16 *)s->wgu, (const bf16 *)s->wdown,
                            (bf16 *)s->k_cache, (bf16 *)s->v_cache};
    }
    if (!aligned16(a->residual) || !aligned16(a->attn) || !aligned16(a->act))
        SS_PERSIST_NO("an activation buffer is not 16-byte aligned");
#undef SS_PERSIST_NO
    cudaError_t e;
    cudaStream_t s = (cudaStream_t)stream;
    e = cudaMemsetAsync(a->workspace, 0, ctr_bytes, s);
    if (e != cudaSuccess)
        return (int)e;
    cudaLaunchAttribute attr[1];
    attr[0].id = cudaLaunchAttributeCooperative;
    attr[0].val.cooperative = 1;
    cudaLaunchConfig_t cfg = {};
    cfg.gridDim = dim3((unsigned)sms);
    cfg.blockDim = dim3(kThreads);
    cfg.dynamicSmemBytes = smem;
    cfg.stream = s;
    cfg.attrs = attr;
    cfg.numAttrs = 1;
    if (trace_n && (e = cudaMemsetAsync(p.trace, 0, trace_n * 8, s)) != cudaSuccess)
        return (int)e;
    e = cudaLaunchKernelEx(&cfg, decode_persist_kernel, p);
    if (e == cudaErrorCooperativeLaunchTooLarge) { // e.g. fewer SMs usable than the device has (MPS)
        (void)cudaGetLastError();
        a->why = "the cooperative launch of one CTA per SM was refused";
        return -1;
    }
    if (e != cudaSuccess)
        return (int)e;
    if (trace_n && a->call == strtoll(trace_env, NULL, 10))
        print_trace(s, p.trace, a->n_layers, sms);
    return launch_status();
}

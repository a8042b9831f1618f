// persist_stream.cuh — the persistent decode kernel's weight stream: the producer warp's tiles, the
// consumers' tensor-core GEMVs from shared memory, the norms and inputs. Included by decode_persist.cu.
// FP8 (a template parameter throughout): the weights are backend.h's fp8 linear format (e4m3 rows, an f32 scale a
// row); a tile then holds twice the columns in the same bytes, and x sits in shared memory as f16.
#pragma once
#include "backend/cuda/kv_fp8.cuh"
#include "backend/cuda/persist_common.cuh"

namespace ss {
namespace {

#if !defined(__CUDA_ARCH__) || __CUDA_ARCH__ >= 900

// ---------------------------------------------------------------- the weight stream

struct Geo {
    const bf16 *W;     // (FP8: the e4m3 bytes)
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

// Columns of a tile (kSlab bf16 weights, or twice as many e4m3 ones: the same bytes) and bytes of a weight.
template <bool FP8> constexpr int kCols = FP8 ? 2 * kSlab : kSlab;
template <bool FP8> constexpr int kEsz = FP8 ? 1 : 2;

// Walks the tiles (16 rows x kCols columns) of every matrix of every layer in the consumers' order: a CTA's
// rows in groups of 16 (8 pairs), each group's columns slab after slab.
template <bool FP8> struct TileIter {
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
        if ((k0 += kCols<FP8>) < g.k)
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
    __device__ uint32_t bytes() const
    {
        return (uint32_t)kEsz<FP8> * (uint32_t)(g.k - k0 < kCols<FP8> ? g.k - k0 : kCols<FP8>);
    }
    // Row i of the tile (gate rows first, then up rows, for gate/up).
    __device__ const void *src(int i, bool up) const
    {
        return reinterpret_cast<const uint8_t *>(g.W) + (((up ? g.m : 0) + r + i) * g.k + k0) * kEsz<FP8>;
    }
};

// While the producer waits for stage cur: if the newest tile it issued (last) has landed, the ring is full
// and landed and the consumers are the ones waiting (an attention, a grid wait), so the bus would idle:
// tiles after t (the next to load) go to L2 meanwhile, up to p.l2ahead of them. pf / n_pf: the next tile to
// prefetch and its index (caught up with t when behind); one tile every p.pfpace cycles at most (pf_last: the
// previous one's clock), so that the grid's SMs do not queue 8 tiles each at once ahead of the attention's
// loads. Returns false once stage cur is free, true once the prefetch is used up: the caller then blocks on
// the stage in mbar_wait, whose try_wait suspends the warp.
// (Until session 22 this loop polled on; blocking instead gave bf16 batch 1 +0.6% on one H200 and +0.35% at tp 2,
// the fp8 form -0.7%; docs/performance.md.) The producer warp calls it whole; lane 0's barrier tests decide for
// every lane.
template <bool FP8>
__device__ __forceinline__ bool prefetch_while_full(const Params &p, uint64_t *full, uint64_t *empty,
                                                    const Cursor &cur, const Cursor &last, const TileIter<FP8> &t,
                                                    int64_t n_loaded, TileIter<FP8> &pf, int64_t &n_pf, uint64_t policy,
                                                    long long &pf_last)
{
    const int lane = threadIdx.x & 31, i = lane % kTileRows;
    const bool up = lane >= kTileRows;
    Spin spin(p.tp_abort);
    for (;;) {
        const int ok = lane == 0 && mbar_test(&empty[cur.slot], cur.phase ^ 1u);
        if (__shfl_sync(0xffffffffu, ok, 0))
            return false;
        if (n_pf < n_loaded)
            pf = t, n_pf = n_loaded;
        const int idle = lane == 0 && mbar_test(&full[last.slot], last.phase);
        if (p.pfgate && !__shfl_sync(0xffffffffu, idle, 0)) { // the newest tile is on its way: poll on
            spin.tick();
            continue;
        }
        if (n_pf >= n_loaded + p.l2ahead || pf.done)
            return true;
        if (p.pfpace) { // paced: one tile at most every pfpace cycles (lane 0's clock decides)
            const long long now = __shfl_sync(0xffffffffu, clock64(), 0);
            if (now - pf_last < p.pfpace) {
                spin.tick();
                continue;
            }
            pf_last = now;
        }
        if (i < pf.rows() && (!up || pf.g.pair))
            bulk_prefetch_l2(pf.src(i, up), pf.bytes(), p.pf_evict != 0, policy);
        pf.next(p), n_pf++;
    }
}

__device__ __forceinline__ void trace_producer(const Params &p, int l, unsigned long long blocked,
                                               unsigned long long used_up)
{
    p.trace[((size_t)l * kTraceSlots + kStamps + 10) * gridDim.x + blockIdx.x] = blocked;
    p.trace[((size_t)l * kTraceSlots + kStamps + 11) * gridDim.x + blockIdx.x] = used_up;
}

// The producer warp: every tile, one bulk copy per row, each issued by its own lane (one thread issuing 16
// or 32 copies a stage could not keep the bus busy).
template <bool FP8> __device__ void produce(const Params &p, uint8_t *ring, uint64_t *full, uint64_t *empty)
{
    const int lane = threadIdx.x & 31;
    const int i = lane % kTileRows; // lanes 0-15: rows (gate rows); 16-31: the up rows
    const bool up = lane >= kTileRows;
    uint64_t policy;
    asm volatile("createpolicy.fractional.L2::evict_first.b64 %0, 1.0;" : "=l"(policy));
    uint64_t pf_policy = policy;
    if (p.pf_evict == 1)
        asm volatile("createpolicy.fractional.L2::evict_last.b64 %0, 1.0;" : "=l"(pf_policy));
    Cursor cur, last; // last: the slot and phase of the latest tile issued
    TileIter<FP8> t, pf; // pf: the next tile to prefetch into L2 (p.l2ahead)
    t.start(p);
    pf = t;
    int64_t n_loaded = 0, n_pf = 0; // tiles issued so far; tiles prefetched (pf's position)
    long long pf_last = 0;          // clock64 of the latest prefetch tile (p.pfpace)
    // Trace: the time blocked for the tiles of layer tl so far (a full ring; the prefetch used up too),
    // stored once the tiles move on to the next layer (a store per tile would hold the producer up).
    const bool tr = p.trace && lane == 0;
    unsigned long long blocked = 0, used_up = 0;
    int tl = 0;
    for (; !t.done; t.next(p), cur.next(p.stages), n_loaded++) {
        const int rows = t.rows();
        const uint32_t bytes = t.bytes();
        if (tr && t.l != tl) {
            trace_producer(p, tl, blocked, used_up);
            tl = t.l, blocked = used_up = 0;
        }
        const unsigned long long t_w = tr ? gtime() : 0;
        const bool used = p.l2ahead > 0 && n_loaded > 0 &&
                          prefetch_while_full(p, full, empty, cur, last, t, n_loaded, pf, n_pf, pf_policy, pf_last);
        const unsigned long long t_up = tr && used ? gtime() : 0;
        mbar_wait(&empty[cur.slot], cur.phase ^ 1u, p.tp_abort); // a fresh barrier's "previous phase" is complete
        if (tr) {
            const unsigned long long now = gtime();
            blocked += now - t_w;
            used_up += t_up ? now - t_up : 0;
        }
        if (lane == 0)
            mbar_expect_tx(&full[cur.slot], (t.g.pair ? 2u : 1u) * (uint32_t)rows * bytes);
        __syncwarp();
        uint8_t *dst = ring + (size_t)cur.slot * kStageBytes;
        if (i < rows && (!up || t.g.pair))
            bulk_load(dst + (up ? kTileRows / 2 + i : i) * kPitch, t.src(i, up), bytes, &full[cur.slot], policy);
        last = cur;
    }
    if (tr)
        trace_producer(p, tl, blocked, used_up);
}

constexpr int kStepsPerWarp = (kSlab / 32 + kWarps - 1) / kWarps; // 64 bytes a row per step (4 lanes x 16)

// The consumers' side of one matrix on the tensor cores (as gemv.cu's mma kernel, from shared memory):
// lane (g = lane/4, t = lane%4) takes 16-byte chunk c of tile rows g and g+8 and of x; the two mmas' k slots
// are the same permutation of real k for A and B. The warps split a tile's columns; each hands the stage
// back once it has loaded it. After a row group's last slab the warps' sums meet in shared memory (the
// only barrier per group) and its outputs are stored. FP8: a chunk is 16 weights, four mmas against two of x's
// f16 chunks (chunk element 4j + e fills slot e of mma j, x's as well), and the sums are times their row's scale.
// A whole stage loads without predicates (and zeroes); the upper byte pairs of FP8 words convert in place
// (e4m3x2_h2_hi). With both, one H200's 8B batch-1 decode ran at 359.9 tok/s in the fp8 form against 341.4
// (+5.4%; op by op: 382.7) and 246.9 against 245.1 in bf16. (Session 21 measured ~0.9 us a 32 KiB e4m3 stage with
// two warps a scheduler; session 22's W8A8 consumers on wgmma, with a quarter of the instructions a stage, were no
// faster, so what sets that pace is not the instruction count; docs/performance.md.) ACC: accumulators the mmas
// alternate between (the fp8 form's 2 since session 55, +0.6% with its registers from setmaxnreg; session 21's 2 and 4
// at the 168-register cap were 2% slower).
template <bool FP8, int ACC = 1>
__device__ void gemv_phase(const Params &p, int l, int mat, const uint8_t *ring, uint64_t *full, uint64_t *empty,
                           const bf16 *xs, float *red, float *own, Cursor &cur, uint32_t &group)
{
    const Geo g = geo_of(p, l, mat);
    const float *sc = nullptr; // FP8: the row scales, after the e4m3 bytes on a 256-byte boundary (ss_linear_fp8_scale_offset)
    if constexpr (FP8)
        sc = reinterpret_cast<const float *>(reinterpret_cast<const uint8_t *>(g.W) +
                                             (((g.pair ? 2 * g.m : g.m) * g.k + 255) & ~255ll));
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
        // FP8: the output rows' scales (gate/up: tid's gate and up rows), loaded now so that their trip to memory
        // overlaps the stages rather than adding a memory latency to each row group's epilogue.
        float s_a = 1.0f, s_u = 1.0f;
        if constexpr (FP8)
            if (tid < rows) {
                s_a = sc[r + tid];
                if (g.pair)
                    s_u = sc[g.m + r + tid];
            }
        float acc[4 * ACC] = {0.0f, 0.0f, 0.0f, 0.0f}; // ACC accumulators of 4
        for (int k0 = 0; k0 < g.k; k0 += kCols<FP8>, cur.next(p.stages)) {
            const int chunks = (g.k - k0 < kCols<FP8> ? g.k - k0 : kCols<FP8>) / (16 / kEsz<FP8>);
            const unsigned long long t_w = tr ? gtime() : 0;
            mbar_wait(&full[cur.slot], cur.phase, p.tp_abort);
            if (tr)
                waited += gtime() - t_w;
            const uint8_t *st = ring + (size_t)cur.slot * kStageBytes;
            constexpr int XC = FP8 ? 2 : 1; // x's 16-byte chunks a weight chunk meets
            uint4 a[kStepsPerWarp], b[kStepsPerWarp], xv[kStepsPerWarp][XC];
            if (chunks == kCols<FP8> / (16 / kEsz<FP8>) && !(p.debug & 1)) {
#pragma unroll
                for (int j = 0; j < kStepsPerWarp; j++) { // a whole stage: every chunk is there
                    const int c = 4 * (warp + j * kWarps) + lt;
                    a[j] = *reinterpret_cast<const uint4 *>(st + lg * kPitch + c * 16);
                    b[j] = *reinterpret_cast<const uint4 *>(st + (lg + 8) * kPitch + c * 16);
#pragma unroll
                    for (int h = 0; h < XC; h++)
                        xv[j][h] = x[k0 / 8 + XC * c + h];
                }
            } else {
#pragma unroll
                for (int j = 0; j < kStepsPerWarp; j++) { // every load of the stage in flight at once
                    const int c = 4 * (warp + j * kWarps) + lt;
                    const bool on = c < chunks && !(p.debug & 1);
                    a[j] = on ? *reinterpret_cast<const uint4 *>(st + lg * kPitch + c * 16) : zero;
                    b[j] = on ? *reinterpret_cast<const uint4 *>(st + (lg + 8) * kPitch + c * 16) : zero;
#pragma unroll
                    for (int h = 0; h < XC; h++)
                        xv[j][h] = on ? x[k0 / 8 + XC * c + h] : zero;
                }
            }
            __syncwarp();
            if (lane == 0) // this warp has read the stage
                mbar_arrive(&empty[cur.slot]);
#pragma unroll
            for (int j = 0; j < kStepsPerWarp; j++) {
                if constexpr (!FP8) {
                    mma_16816(acc, a[j].x, b[j].x, a[j].y, b[j].y, xv[j][0].x, xv[j][0].y);
                    mma_16816(acc, a[j].z, b[j].z, a[j].w, b[j].w, xv[j][0].z, xv[j][0].w);
                } else {
                    const uint32_t wa[4] = {a[j].x, a[j].y, a[j].z, a[j].w}, wb[4] = {b[j].x, b[j].y, b[j].z, b[j].w};
#pragma unroll
                    for (int q = 0; q < 4; q++) { // the chunk's elements 4q .. 4q + 3
                        const uint4 &xq = xv[j][q / 2];
                        const uint32_t b0 = (q & 1) ? xq.z : xq.x, b1 = (q & 1) ? xq.w : xq.y;
                        float(&d)[4] = *reinterpret_cast<float(*)[4]>(acc + 4 * (q % ACC));
                        mma_16816<true>(d, e4m3x2_h2(wa[q]), e4m3x2_h2(wb[q]), e4m3x2_h2_hi(wa[q]),
                                        e4m3x2_h2_hi(wb[q]), b0, b1);
                    }
                }
            }
        }
        // column 0 of D (x is in every column): acc[0] is row lg, acc[2] row lg + 8
#pragma unroll
        for (int i = 1; i < ACC; i++)
            acc[0] += acc[4 * i], acc[2] += acc[4 * i + 2];
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
            if constexpr (FP8)
                a *= s_a;
            if (mat == kQkv) {
                p.qkv[row] = __float2bfloat16_rn(a + bias);
            } else if (mat == kGu) {
                float u = 0.0f;
#pragma unroll
                for (int w = 0; w < kWarps; w++)
                    u += rb[w * kTileRows + kTileRows / 2 + tid];
                if constexpr (FP8)
                    u *= s_u;
                p.act[row] = __float2bfloat16_rn(a / (1.0f + __expf(-a)) * u);
            } else if (p.tp_size > 1) { // o, down at tp > 1: a partial sum, to every rank (tp_combine adds)
                tp_push(p, l, mat == kO ? 0 : 1, row, a);
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

// Loads of a thread's 16-byte chunks of a vector (at most kPer): every load is issued before the first is
// used, so a norm or an input costs one trip to L2, not one per chunk (load_xs: one trip a kMaxXBytes pass).
constexpr int kPer = kMaxXBytes / 16 / kConsumers; // 32 KiB (the longest norm input) / 16 / 256 = 8

// Stores 8 values of x into shared memory: bf16, or (FP8) the f16 of their bf16 rounding, which is what the
// op-by-op fp8 GEMV multiplies (bf16 activations, converted to f16, saturated).
template <bool FP8> __device__ __forceinline__ void store_x8(bf16 *xs, int c, float (&v)[8])
{
    if constexpr (!FP8) {
        store_vec<8>(xs + (int64_t)c * 8, v);
    } else {
        uint32_t h[4];
#pragma unroll
        for (int e = 0; e < 4; e++)
            h[e] = h2_satfinite(round_bf16(v[2 * e]), round_bf16(v[2 * e + 1]));
        reinterpret_cast<uint4 *>(xs)[c] = make_uint4(h[0], h[1], h[2], h[3]);
    }
}

// xs = rmsnorm(residual) · w (bf16), as rmsnorm_kernel rounds it.
template <bool FP8> __device__ void norm_to_xs(const Params &p, const bf16 *w, bf16 *xs, float *scratch)
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
            store_x8<FP8>(xs, c, v);
        }
    }
    consumer_sync();
}

// Chunks [c0, c0 + kPer * kConsumers) of xs = src[0, n) (another CTA's output): one pass, kPer chunks a thread.
template <bool FP8> __device__ __forceinline__ void load_xs_pass(const bf16 *src, int n, bf16 *xs, int c0)
{
    uint4 raw[kPer];
#pragma unroll
    for (int i = 0; i < kPer; i++) {
        const int c = c0 + threadIdx.x + i * kConsumers;
        if (c < n / 8)
            raw[i] = ldcg16(src + (int64_t)c * 8);
    }
#pragma unroll
    for (int i = 0; i < kPer; i++) {
        const int c = c0 + threadIdx.x + i * kConsumers;
        if (c < n / 8) {
            if constexpr (!FP8) {
                reinterpret_cast<uint4 *>(xs)[c] = raw[i];
            } else {
                float v[8];
                unpack8(raw[i], v);
                store_x8<FP8>(xs, c, v);
            }
        }
    }
}

// xs = src[0, n) (another CTA's output). WIDE (the kernel's form for inputs longer than kMaxXBytes: a 70B's down at
// tp 1, 28,672 wide, 56 KiB): in passes of kMaxXBytes with the same registers (the kernel is at its 168 a thread);
// xs itself is the launcher's region, sized for the longest input. Only the wide form has the loop: with it in every
// form, the 8B shape's batch-1 decode lost 0.25% on one H200 (session 31).
template <bool FP8, bool WIDE> __device__ void load_xs(const bf16 *src, int n, bf16 *xs)
{
    if constexpr (WIDE)
        for (int c0 = 0; c0 < n / 8; c0 += kPer * kConsumers)
            load_xs_pass<FP8>(src, n, xs, c0);
    else
        load_xs_pass<FP8>(src, n, xs, 0);
    consumer_sync();
}

#endif // Hopper device code

} // namespace
} // namespace ss

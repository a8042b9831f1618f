// attn_tiled.cu — causal attention over the paged KV cache on the tensor cores (flash-attention-2
// style), for prefill chunks and large decode batches. One CTA per (row block of a query tile, kv
// head, key split): the rows are the tile's tokens times the query heads of that kv head's GQA group
// (row r = token r / group, head r % group), so each K/V tile read serves the whole group. Keys
// stream through shared memory 64 at a time (cp.async, two stages, zero-filled past the context) and
// meet the rows in bf16 mma.sync m16n8k16 with f32 accumulation; softmax is online, in the log2
// domain. Each warp owns 16 rows; for tiles of few rows (decode) the warps of a CTA instead share the
// rows and split every key tile four ways, merging through shared memory at the end, and keep two key
// tiles in flight instead of one (Q then has rows of its own; session 16). On sm_90 the key
// splits of such a CTA can form one thread block cluster and merge through distributed shared memory,
// so no combine kernel follows. A second decode form, of 32-key tiles and two warps, fits 5 CTAs a SM
// instead of 3, for launches that would otherwise leave a partial second wave (session 17). An fp8 KV cache
// (kv_fp8.cuh) lands in stages of e4m3 bytes and scales; the math runs in f16 on the values unscaled (exact, one
// cvt per pair): the K scales multiply the scores, the V scales the probabilities, relative to a running maximum
// of the warp's V scales that the output is kept in units of (session 18). Prefill tiles decode each key tile
// into one f16 tile first; decode tiles read their mma fragments straight from the e4m3 rows (session 47). Its
// launcher hands prompt chunks of a bf16 cache with heads of 128 to attn_wgmma.cu on sm_90.
#include <cooperative_groups.h>
#include <math.h>

#include "backend/cuda/attn_tiled.cuh"
#include "backend/cuda/cp_async.cuh"
#include "backend/cuda/kv_fp8.cuh"

namespace ss {
namespace {

constexpr int kBN = 64; // keys per shared-memory tile
// Keys per tile of the short decode form (AttnTiledParams::short_tiles): two warps, 39 KB of shared
// memory, so an SM holds 5 CTAs instead of 3 and more of their fixed costs overlap.
constexpr int kShortBN = 32;

// An fp8 stage: the key tile's K rows, V rows (D e4m3 bytes each), then their K and V scales (f32).
template <int D, int BN> __host__ __device__ constexpr int fp8_stage_bytes()
{
    return 2 * BN * D + 2 * BN * (int)sizeof(float);
}

// Stages of the fp8 decode tiles (FP8 and WK > 1), whose fragments come straight from the landed e4m3 rows: two
// in flight while the third is read, one barrier a key tile.
constexpr int kF8DirectStages = 3;
// The fp8 decode tiles' dense form (AttnTiledParams::short_tiles with an fp8 cache, heads of 128): the same kernel
// held to 128 registers a thread, so that an SM runs 4 CTAs (55 KB of shared memory each) instead of 3 (160).
constexpr int kF8DenseCtas = 4;

// Shared memory: two stages of [K tile | V tile], each kBN rows of D + 8 bf16 (the 16-byte pad puts
// the 8 rows an ldmatrix reads in distinct banks). Q (up to 2*kBN rows) first sits in stage 1; decode tiles
// (WK > 1: 16 rows) give Q its own 16 rows after the stages, so that both stages load from the start.
// FP8: two fp8 stages, then one f16 [K tile | V tile] that each stage is decoded into (Q sits there first),
// then the decoded tile's K and V scales. FP8 decode tiles (WK > 1): kF8DirectStages fp8 stages, then Q's 16 rows.
// MT > 1 (two m-tiles a warp, the prefill form): Q keeps rows of its own after the stages (FP8: after the scales;
// BMQ of them), as its A fragments are read again at every key tile.
template <int D, int WK, int BN = kBN, bool FP8 = false, int BMQ = 0> __host__ __device__ constexpr int smem_bytes()
{
    if (FP8 && WK > 1)
        return kF8DirectStages * fp8_stage_bytes<D, BN>() + 16 * (D + 8) * (int)sizeof(bf16);
    return FP8 ? 2 * fp8_stage_bytes<D, BN>() + (2 * BN + BMQ) * (D + 8) * (int)sizeof(bf16) +
                     2 * BN * (int)sizeof(float)
               : (4 * BN + (WK > 1 ? 16 : BMQ)) * (D + 8) * (int)sizeof(bf16);
}

// Most splits one cluster merges (the portable cluster size).
constexpr int kMaxClusterSplits = 8;

// The cluster's CTAs (one per key split, rank = split) hold their (max, sum, sums) of the same rows in
// shared memory at cacc/cml; each CTA merges a share of the (row, dim) elements from all of them, in split
// order and with the same arithmetic as attn_combine_kernel, and stores the output. The second barrier
// keeps every CTA's shared memory alive until its peers have read it.
template <int D, int BM, int NT>
__device__ __forceinline__ void cluster_merge(const AttnTiledParams &p, float *cacc, float *cml, int r0, int rows,
                                              int tok0, int kvh)
{
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    namespace cg = cooperative_groups;
    cg::cluster_group cl = cg::this_cluster();
    cl.sync();
    const int ns = (int)cl.num_blocks(), rank = (int)cl.block_rank();
    const float *pacc[kMaxClusterSplits], *pml[kMaxClusterSplits];
#pragma unroll
    for (int s = 0; s < kMaxClusterSplits; s++) {
        pacc[s] = s < ns ? cl.map_shared_rank(cacc, (unsigned)s) : cacc;
        pml[s] = s < ns ? cl.map_shared_rank(cml, (unsigned)s) : cml;
    }
    for (int e = rank * NT + (int)threadIdx.x; e < BM * D; e += ns * NT) {
        const int i = e / D, d = e - (e / D) * D;
        const int r = r0 + i;
        if (r >= rows)
            continue;
        float ms[kMaxClusterSplits], ls[kMaxClusterSplits], as[kMaxClusterSplits];
#pragma unroll
        for (int s = 0; s < kMaxClusterSplits; s++) {
            ms[s] = s < ns ? pml[s][2 * i] : 0.0f;
            ls[s] = s < ns ? pml[s][2 * i + 1] : 0.0f;
            as[s] = s < ns ? pacc[s][i * D + d] : 0.0f;
        }
        float M = -INFINITY;
#pragma unroll
        for (int s = 0; s < kMaxClusterSplits; s++)
            if (ls[s] > 0.0f)
                M = fmaxf(M, ms[s]);
        float L = 0.0f, A = 0.0f;
#pragma unroll
        for (int s = 0; s < kMaxClusterSplits; s++) {
            if (ls[s] > 0.0f) {
                const float c = exp2f(ms[s] - M);
                L = fmaf(ls[s], c, L);
                A += as[s] * c;
            }
        }
        const int t = r / p.group;
        const int64_t tok = tok0 + t;
        const int hq = kvh * p.group + (r - t * p.group);
        p.out[(tok * p.heads + hq) * D + d] = __float2bfloat16_rn(L > 0.0f ? A / L : 0.0f);
    }
    cl.sync();
#elif defined(__CUDA_ARCH__)
    __trap(); // the host launches the cluster form on sm_90+ only: reaching this is a build/launch mismatch
#else
    (void)p, (void)cacc, (void)cml, (void)r0, (void)rows, (void)tok0, (void)kvh;
#endif
}

// WM warps over rows (16 each, or MT m-tiles of 16) times WK warps over each key tile of BN keys (BN / WK each).
// CL: the n_splits CTAs of a (row block, kv head) are one cluster along z and write the final output themselves.
// FP8: the caches hold fp8 blocks (p.kv_fp8). MT = 2 (prefill tiles, session 32): each key tile's K and V
// fragments, read from shared memory once, serve two m-tiles, and a CTA of 4 warps fits twice a SM (8 warps of
// 16 rows take 175 registers each: one CTA a SM, every warp waiting at every tile's barrier); Q stays in shared
// memory (its fragments in registers too would not fit). FP8 and MT = 2 (session 33): Q's rows are turned into
// f16 (the fp8 tiles' math) in shared memory once, after they land. FP8 decode tiles (WK > 1, session 47): no f16
// tile; each warp reads its K and V fragments straight from the landed e4m3 rows (4 bytes a k-step, converted in
// registers), over kF8DirectStages stages with one barrier a key tile. That takes two orders of the head's dims,
// which a sum over them does not see: in Q.K^T, k-step kk's 16 dims are thread tig's bytes tig*D/4 + 4kk .. + 3 of
// a key row (Q's A fragments are read in the same order); in P.V, output n-tile nt's column c is dim c*NO + nt, so a
// thread's B fragments for every n-tile are one NO-byte piece of each of its four key rows, their bytes interleaved
// pairwise by byte permutes. The rows' 16-byte chunks sit XOR-swizzled by the row (ch ^ (row mod D/16)), which
// keeps both reads free of bank conflicts at D = 128.
template <int D, int WM, int WK, bool CL, int BN = kBN, bool FP8 = false, int MT = 1, int MINB = 0>
__global__ void __launch_bounds__(WM *WK * 32, MINB) attn_tiled_kernel(const AttnTiledParams p)
{
    static_assert(!CL || WK > 1, "the cluster merge extends the key-split merge of decode tiles");
    static_assert(MT == 1 || WK == 1, "two m-tiles a warp: the prefill form only");
    constexpr int NW = WM * WK, NT = NW * 32, BM = 16 * WM * MT, KW = BN / WK;
    constexpr int LDS = D + 8;  // shared row stride, elements
    constexpr int CPR = D / 8;  // 16-byte chunks per row
    constexpr int DK = D / 16;  // k-steps of Q.K^T
    constexpr int NS = KW / 8;  // score n-tiles per warp
    constexpr int NO = D / 8;   // output n-tiles
    constexpr bool kDirect = FP8 && WK > 1; // fp8 decode tiles: fragments from the e4m3 rows (above)
    // QS: the dense fp8 form (MINB: held to 128 registers) reads Q's A fragments by ldmatrix at each k-step instead
    // of holding them in 32 registers through the loop (which spilled 36 bytes; with QS 123 registers, none; one
    // H200, session 55: 10-25% faster unsplit). Q is turned into f16 in its rows once, each pair of dims moved
    // to where ldmatrix's standard fragment order reads kDirect's: k-step kk's column 2tig (+8) holds dims
    // tig * D/4 + 4kk (+2).
    constexpr bool QS = kDirect && MINB > 0;
    static_assert(MT > 1 || BM <= 2 * BN, "Q must fit in stage 1");
    static_assert(!kDirect || (WM == 1 && MT == 1 && (D == 64 || D == 128)), "fp8 decode tiles: one row group");
    static_assert(KW % 16 == 0 && (BN * CPR) % NT == 0, "tile shape");
    extern __shared__ uint4 smem_u4[];
    bf16 *const smem = reinterpret_cast<bf16 *>(smem_u4);
    constexpr int FST = fp8_stage_bytes<D, BN>();
    uint8_t *const f8 = reinterpret_cast<uint8_t *>(smem_u4);          // FP8: the two fp8 stages
    bf16 *const sbf = reinterpret_cast<bf16 *>(f8 + (FP8 ? 2 * FST : 0)); // FP8: the decoded tile (f16 bits)
    float *const tsc = reinterpret_cast<float *>(sbf + 2 * BN * LDS);     // FP8: its K scales, then V scales

    const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
    const int wm = warp % WM, wk = warp / WM;
    const int gid = lane >> 2, tig = lane & 3;

    TileBlock tb;
    if (!tile_block<BM, BN>(p, tb)) // a shorter tile than the longest: this row block is empty (uniform exit)
        return;
    const int kvh = tb.kvh, split = tb.split, group = tb.group, seq = tb.seq, pos0 = tb.pos0, tok0 = tb.tok0;
    const int rows = tb.rows, r0 = tb.r0, pmin = tb.pmin, kbeg = tb.kbeg, kend = tb.kend, n_kt = tb.n_kt;

    const int32_t *bt = p.block_tables + (int64_t)seq * p.max_blocks;
    const int bs = p.block_size;
    // Key j's row in the cache: block sizes are powers of two in practice, where shifts replace the
    // divisions (the L2 prefetch below and lane_slot compute them)
    const bool bs_pow2 = (bs & (bs - 1)) == 0;
    const int bs_shift = __ffs(bs) - 1;
    auto cache_row = [&](int j) -> int64_t {
        return bs_pow2 ? ((int64_t)bt[j >> bs_shift] << bs_shift) + (j & (bs - 1)) : (int64_t)bt[j / bs] * bs + j % bs;
    };
    // FP8: where key j's row of this kv head starts (its block, then its offset).
    auto f8_row = [&](int j) -> int64_t {
        const int off = bs_pow2 ? (j & (bs - 1)) : j % bs;
        return kv_fp8_row(bt[bs_pow2 ? j >> bs_shift : j / bs], off, kvh, p.kv_block_bytes, p.kv_heads, D);
    };
    const int64_t kv_row = (int64_t)p.kv_heads * D;
    const bf16 *kbase = p.kc + (int64_t)kvh * D, *vbase = p.vc + (int64_t)kvh * D;
    const char *kb8 = reinterpret_cast<const char *>(p.kc), *vb8 = reinterpret_cast<const char *>(p.vc);

    // Loads by lane (session 54, as attn_wgmma.cu's): warp w copies RPW = BN / NW of a key tile's rows, RI rows a
    // step, one lane a 16-byte chunk. Lane l finds where key share_key(l) of the tile lives (lane_slot: one
    // block-table read, a tile ahead) and the copying lanes take it by a shuffle. (Each thread's 4-8 chunks a tile
    // had each read the block table and computed their own 64-bit address.)
    constexpr int CH = FP8 ? D / 16 : D / 8; // 16-byte chunks of a K (or V) row
    constexpr int RI = 32 / CH, RPW = BN / NW;
    static_assert(32 % CH == 0 && RPW <= 32 && RPW % RI == 0 && (BN * CH) % NT == 0, "a warp's share of a tile");
    // The key of the tile that a warp's lane slot l stands for: in step i, lane x copies chunk x % CH of key
    // i*NW*RI + warp*RI + x / CH (thread tid's chunk tid + i*NT, as c / CH, c % CH; that is slot i*RI + x / CH).
    auto share_key = [&](int l) { return (l / RI) * NW * RI + warp * RI + l % RI; };
    auto block_off = [&](int j) { return bs_pow2 ? (j & (bs - 1)) : j % bs; };
    // bf16: the cache row of key kb + share_key(lane % RPW); FP8: its block; -1 past kend (a cache has far fewer
    // than 2^31 rows).
    auto lane_slot = [&](int kb) -> int32_t {
        const int j = kb + share_key(lane % RPW);
        if (j >= kend)
            return -1;
        const int32_t blk = bt[bs_pow2 ? j >> bs_shift : j / bs];
        return FP8 ? blk : blk * bs + block_off(j);
    };
    // Key tile [kb, kb + BN) into stage `stage` (slot: lane_slot(kb)); keys at or past kend are zeros and read
    // nothing.
    auto load_kv = [&](int stage, int32_t slot) {
        bf16 *sk = smem + stage * 2 * BN * LDS;
        bf16 *sv = sk + BN * LDS;
        const int ch = lane % CH;
#pragma unroll
        for (int i = 0; i < RPW / RI; i++) {
            const int kr = i * NW * RI + warp * RI + lane / CH;
            const int32_t row = __shfl_sync(FULL_MASK, slot, i * RI + lane / CH);
            const bool ok = row >= 0;
            const int64_t off = ok ? (int64_t)row * kv_row + ch * 8 : 0;
            cp_async16(sk + kr * LDS + ch * 8, kbase + off, ok);
            cp_async16(sv + kr * LDS + ch * 8, vbase + off, ok);
        }
    };
    // FP8: key tile [kb, kb + BN) into fp8 stage `stage`: e4m3 rows and their scales (zeros past kend); each
    // warp's lanes of slots 0 .. RPW - 1 copy their own keys' scales.
    auto load_f8 = [&](int stage, int kb, int32_t slot) {
        uint8_t *sk = f8 + stage * FST, *sv = sk + BN * D;
        float *sks = reinterpret_cast<float *>(sv + BN * D), *svs = sks + BN;
        const int ch = lane % CH;
#pragma unroll
        for (int i = 0; i < RPW / RI; i++) {
            const int kr = i * NW * RI + warp * RI + lane / CH;
            const int32_t blk = __shfl_sync(FULL_MASK, slot, i * RI + lane / CH);
            const bool ok = blk >= 0;
            const int64_t off =
                ok ? kv_fp8_row(blk, block_off(kb + kr), kvh, p.kv_block_bytes, p.kv_heads, D) + ch * 16 : 0;
            const int pos = kDirect ? ch ^ (kr & (CH - 1)) : ch; // kDirect: swizzled (above)
            cp_async16(sk + kr * D + pos * 16, kb8 + off, ok);
            cp_async16(sv + kr * D + pos * 16, vb8 + off, ok);
        }
        if (lane < RPW) {
            const int kr = share_key(lane);
            const bool ok = slot >= 0;
            const int64_t off =
                ok ? kv_fp8_scale(slot, block_off(kb + kr), kvh, p.kv_block_bytes, bs, p.kv_heads, D) : 0;
            cp_async4(sks + kr, kb8 + off, ok);
            cp_async4(svs + kr, vb8 + off, ok);
        }
    };
    // Tiles load in order; next_slot holds the next one's lane_slot, read as the one before it loads.
    int32_t next_slot = -1;
    auto load_tile = [&](int stage, int kb) {
        const int32_t slot = next_slot;
        if (kb + BN < kend)
            next_slot = lane_slot(kb + BN);
        if constexpr (FP8)
            load_f8(stage, kb, slot);
        else
            load_kv(stage, slot);
    };
    // FP8: fp8 stage `stage` into the f16 tile, in load_kv's layout: the e4m3 values unscaled (exact in f16),
    // and the rows' scales beside it (the stage is refilled while the tile is in use).
    auto decode_f8 = [&](int stage) {
        const uint8_t *sk = f8 + stage * FST;
        uint4 u8[2 * BN * CH / NT]; // every load first, then the conversions
#pragma unroll
        for (int i = 0; i < 2 * BN * CH / NT; i++)
            u8[i] = *reinterpret_cast<const uint4 *>(sk + (tid + i * NT) * 16); // K rows, then V rows: contiguous
#pragma unroll
        for (int i = 0; i < 2 * BN * CH / NT; i++) {
            const int c = tid + i * NT;
            const bool is_v = c >= BN * CH;
            const int cc = is_v ? c - BN * CH : c;
            const int kr = cc / CH, ch = cc - (cc / CH) * CH;
            const uint4 u = u8[i];
            bf16 *dst = sbf + (is_v ? BN * LDS : 0) + kr * LDS + ch * 16;
            *reinterpret_cast<uint4 *>(dst) = make_uint4(e4m3x2_h2(u.x), e4m3x2_h2_hi(u.x), e4m3x2_h2(u.y),
                                                         e4m3x2_h2_hi(u.y));
            *reinterpret_cast<uint4 *>(dst + 8) = make_uint4(e4m3x2_h2(u.z), e4m3x2_h2_hi(u.z), e4m3x2_h2(u.w),
                                                             e4m3x2_h2_hi(u.w));
        }
        const float *ssc = reinterpret_cast<const float *>(sk + 2 * BN * D);
        for (int c = tid; c < 2 * BN; c += NT)
            tsc[c] = ssc[c];
    };
    if (n_kt > 0) // (the block tables are step metadata, never written by a kernel)
        next_slot = lane_slot(kbeg);
    // Before waiting for the previous kernel (rope + KV store, which writes q and this step's keys): the step
    // metadata read above is never written by a kernel, and the K/V rows of the first two key tiles can be
    // asked into L2 already (L2 is where the previous kernel's writes land, so nothing stale is read).
    for (int i = tid; i < 2 * BN && kbeg + i < kend; i += NT) {
        const int j = kbeg + i;
        const int64_t off = FP8 ? f8_row(j) : (cache_row(j) * kv_row + (int64_t)kvh * D) * (int64_t)sizeof(bf16);
#pragma unroll
        for (int b = 0; b < D * (FP8 ? 1 : (int)sizeof(bf16)); b += 128) {
            asm volatile("prefetch.global.L2 [%0];" ::"l"(kb8 + off + b));
            asm volatile("prefetch.global.L2 [%0];" ::"l"(vb8 + off + b));
        }
    }
    // The next kernel (the split combine, or the o_proj GEMV) is let in only at the end: scheduled at the
    // start, its blocks — a GEMV's early weight reads above all — slowed this latency-bound kernel (see
    // docs/architecture.md, programmatic dependent launch).
    pdl_wait();

    // Q rows of this block into stage 1, or for decode tiles into their own rows (rows past the tile repeat
    // its last row: finite, never written).
    // Decode tiles keep two key tiles in flight (Q has its own rows), and so does every FP8 shape (Q sits in
    // the bf16 tile until the first decode).
    constexpr bool kAhead2 = WK > 1 || FP8 || MT > 1;
    bf16 *const sq = kDirect ? reinterpret_cast<bf16 *>(f8 + kF8DirectStages * FST)
                     : FP8    ? (MT > 1 ? reinterpret_cast<bf16 *>(tsc + 2 * BN) : sbf)
                              : smem + (kAhead2 ? 4 : 2) * BN * LDS;
    for (int c = tid; c < BM * CPR; c += NT) {
        const int i = c / CPR, ch = c - (c / CPR) * CPR;
        const int r = min(r0 + i, rows - 1);
        const int t = r / group, g = r - t * group;
        const bf16 *src = p.q + (int64_t)(tok0 + t) * p.q_stride + (int64_t)(kvh * group + g) * D + ch * 8;
        cp_async16(sq + i * LDS + ch * 8, src, true);
    }
    cp_async_commit();
    if (n_kt > 0)
        load_tile(0, kbeg);
    cp_async_commit();
    if constexpr (kAhead2) {
        if (n_kt > 1)
            load_tile(1, kbeg + BN);
        cp_async_commit();
        cp_async_wait<1>(); // Q and the first key tile; the second may still fly
    } else {
        cp_async_wait<0>();
    }
    __syncthreads();
    uint32_t qf[MT == 1 && !QS ? DK : 1][4]; // A fragments of this warp's 16 rows, all of D (MT > 1: read from sq)
    if constexpr (kDirect && !QS) { // k-step kk's dims of this thread: tig * D/4 + 4kk .. + 3 (a: rows gid, gid + 8)
#pragma unroll
        for (int kk = 0; kk < DK; kk++)
#pragma unroll
            for (int h = 0; h < 2; h++) {
                const bf16 *qr = sq + (gid + 8 * h) * LDS + tig * (D / 4) + 4 * kk;
                const uint32_t lo = *reinterpret_cast<const uint32_t *>(qr);
                const uint32_t hi = *reinterpret_cast<const uint32_t *>(qr + 2);
                qf[kk][h] = pack_h2(bf16_lo(lo), bf16_hi(lo));
                qf[kk][2 + h] = pack_h2(bf16_lo(hi), bf16_hi(hi));
            }
    } else if constexpr (MT == 1 && !QS) {
        const bf16 *qrow = sq + (wm * 16 + (lane & 7) + ((lane >> 3) & 1) * 8) * LDS + (lane >> 4) * 8;
#pragma unroll
        for (int kk = 0; kk < DK; kk++)
            ldsm_x4(qf[kk], qrow + kk * 16);
        if constexpr (FP8) { // the math runs in f16 (the fp8 tiles' type): Q's pairs converted once
#pragma unroll
            for (int kk = 0; kk < DK; kk++)
#pragma unroll
                for (int r = 0; r < 4; r++)
                    qf[kk][r] = pack_h2(bf16_lo(qf[kk][r]), bf16_hi(qf[kk][r]));
        }
    } else if constexpr (QS) { // Q's rows into f16, permuted (above): every chunk read, then written
        constexpr int QC = 16 * CPR / NT;
        static_assert(QC * NT == 16 * CPR, "whole rounds of Q's chunks");
        uint4 qv[QC];
#pragma unroll
        for (int i = 0; i < QC; i++) {
            const int c = tid + i * NT;
            qv[i] = *reinterpret_cast<const uint4 *>(sq + (c / CPR) * LDS + (c % CPR) * 8);
        }
        __syncthreads();
#pragma unroll
        for (int i = 0; i < QC; i++) {
            const int c = tid + i * NT, row = c / CPR;
            const uint32_t w[4] = {qv[i].x, qv[i].y, qv[i].z, qv[i].w};
#pragma unroll
            for (int e = 0; e < 4; e++) {
                const int d = (c % CPR) * 8 + 2 * e, t = d / (D / 4), r = d % (D / 4);
                *reinterpret_cast<uint32_t *>(sq + row * LDS + (r / 4) * 16 + 2 * t + (r % 4 == 2 ? 8 : 0)) =
                    pack_h2(bf16_lo(w[e]), bf16_hi(w[e]));
            }
        }
    } else if constexpr (FP8) { // Q's rows into f16 in place (each thread the chunks it asked for)
        for (int c = tid; c < BM * CPR; c += NT) {
            uint4 *u = reinterpret_cast<uint4 *>(sq + (c / CPR) * LDS + (c - (c / CPR) * CPR) * 8);
            const uint4 v = *u;
            *u = make_uint4(pack_h2(bf16_lo(v.x), bf16_hi(v.x)), pack_h2(bf16_lo(v.y), bf16_hi(v.y)),
                            pack_h2(bf16_lo(v.z), bf16_hi(v.z)), pack_h2(bf16_lo(v.w), bf16_hi(v.w)));
        }
    }
    __syncthreads(); // stage 1 (FP8: the bf16 tile) is free for keys now

    // This thread's two rows of each m-tile (gid and gid + 8 of its 16): their positions bound the mask.
    int prow[MT][2];
#pragma unroll
    for (int h = 0; h < 2; h++) // (h outer, the m-tile's offset last: at MT = 1 the PTX of before)
#pragma unroll
        for (int mt = 0; mt < MT; mt++) {
            const int r = min(r0 + wm * 16 * MT + gid + 8 * h + mt * 16, rows - 1);
            prow[mt][h] = pos0 + r / group;
        }
    const bool warp_on = r0 + wm * 16 * MT < rows; // a warp whose rows are all padding skips the math
    float o[MT][NO][4];
    float m_r[MT][2], l_r[MT][2]; // l: this thread's columns only
#pragma unroll
    for (int mt = 0; mt < MT; mt++) {
#pragma unroll
        for (int nt = 0; nt < NO; nt++)
            o[mt][nt][0] = o[mt][nt][1] = o[mt][nt][2] = o[mt][nt][3] = 0.0f;
        m_r[mt][0] = m_r[mt][1] = -INFINITY;
        l_r[mt][0] = l_r[mt][1] = 0.0f;
    }
    float vmax = 0.0f; // FP8: o holds the sums in units of this running maximum of the warp's V scales

    for (int it = 0; it < n_kt; it++) {
        const int kb = kbeg + it * BN;
        const int st3 = it % kF8DirectStages; // kDirect: this tile's stage
        if constexpr (kDirect) {
            if (it > 0) {           // tile it was asked for two iterations ago (or in the prologue)
                cp_async_wait<1>(); // its group is complete (the newest one, tile it + 1, may still fly)
                __syncthreads();    // ... for every thread, and every warp is done with tile it - 1's stage
            }
            if (it + 2 < n_kt) // into tile it - 1's stage (an empty group past the end keeps the count)
                load_tile((it + 2) % kF8DirectStages, kb + 2 * BN);
            cp_async_commit();
        } else if constexpr (kAhead2) {
            if (it > 0) {           // tile it was asked for two iterations ago (or in the prologue)
                cp_async_wait<1>(); // its group is complete (the newest one, tile it + 1, may still fly)
                __syncthreads();
            }
        } else {
            if (it + 1 < n_kt) // the stage it overwrites was released by the barrier that ended it - 1
                load_tile((it + 1) & 1, kb + BN);
            cp_async_commit();
            cp_async_wait<1>(); // this tile's group is complete (the newest one may still fly)
            __syncthreads();
        }
        if constexpr (FP8 && !kDirect) { // decode the landed stage, then refill it with tile it + 2 (an empty group past the end)
            decode_f8(it & 1);
            __syncthreads();
            if (it + 2 < n_kt)
                load_tile(it & 1, kb + 2 * BN);
            cp_async_commit();
        }
        if (warp_on) {
            const bf16 *sk = (FP8 ? sbf : smem + (it & 1) * 2 * BN * LDS) + wk * KW * LDS;
            const bf16 *sv = sk + BN * LDS;
            float s[MT][NS][4];
#pragma unroll
            for (int mt = 0; mt < MT; mt++)
#pragma unroll
                for (int nt = 0; nt < NS; nt++)
                    s[mt][nt][0] = s[mt][nt][1] = s[mt][nt][2] = s[mt][nt][3] = 0.0f;
            const uint8_t *st8 = f8 + st3 * FST; // kDirect: the tile's stage (K rows, V rows, K scales, V scales)
            if constexpr (QS) { // as below, k-steps outer: one k-step's Q fragment in registers at a time
                uint32_t kw[NS][DK];
#pragma unroll
                for (int nt = 0; nt < NS; nt++)
                    f8_k_words<D>(st8, wk * KW + nt * 8 + gid, tig, kw[nt]);
                const bf16 *qrow = sq + ((lane & 7) + ((lane >> 3) & 1) * 8) * LDS + (lane >> 4) * 8;
#pragma unroll
                for (int kk = 0; kk < DK; kk++) {
                    uint32_t q[4];
                    ldsm_x4(q, qrow + kk * 16);
#pragma unroll
                    for (int nt = 0; nt < NS; nt++)
                        mma_k16<true>(s[0][nt], q, e4m3x2_h2(kw[nt][kk]), e4m3x2_h2_hi(kw[nt][kk]));
                }
            } else if constexpr (kDirect) {
                // S = Q K^T: score n-tile nt's column gid is key row kr, whose bytes tig * D/4 .. hold this thread's
                // four dims of every k-step (D/64 chunks, swizzled).
#pragma unroll
                for (int nt = 0; nt < NS; nt++) {
                    const int kr = wk * KW + nt * 8 + gid;
                    uint32_t kw[DK]; // k-step kk's four e4m3 bytes
                    f8_k_words<D>(st8, kr, tig, kw);
#pragma unroll
                    for (int kk = 0; kk < DK; kk++)
                        mma_k16<true>(s[0][nt], qf[kk], e4m3x2_h2(kw[kk]), e4m3x2_h2_hi(kw[kk]));
                }
            } else {
                // S = Q K^T: K rows are keys, so plain ldmatrix gives the col-major B fragments.
                const bf16 *krow = sk + ((lane & 7) + (lane >> 4) * 8) * LDS + ((lane >> 3) & 1) * 8;
    #pragma unroll
                for (int kk = 0; kk < DK; kk++) {
                    [[maybe_unused]] uint32_t qa[MT][4]; // MT > 1: this k-step's A fragments of each m-tile
                    if constexpr (MT > 1)
    #pragma unroll
                        for (int mt = 0; mt < MT; mt++)
                            ldsm_x4(qa[mt], sq + ((wm * MT + mt) * 16 + (lane & 7) + ((lane >> 3) & 1) * 8) * LDS +
                                                (lane >> 4) * 8 + kk * 16);
    #pragma unroll
                    for (int np = 0; np < NS / 2; np++) {
                        uint32_t b[4];
                        ldsm_x4(b, krow + np * 16 * LDS + kk * 16);
                        if constexpr (MT == 1) {
                            mma_k16<FP8>(s[0][2 * np], qf[kk], b[0], b[1]);
                            mma_k16<FP8>(s[0][2 * np + 1], qf[kk], b[2], b[3]);
                        } else {
    #pragma unroll
                            for (int mt = 0; mt < MT; mt++) {
                                mma_k16<FP8>(s[mt][2 * np], qa[mt], b[0], b[1]);
                                mma_k16<FP8>(s[mt][2 * np + 1], qa[mt], b[2], b[3]);
                            }
                        }
                    }
                }
            }
            // Scale into the log2 domain, mask the future (and the zero-filled keys past kend, which
            // lie past every row's position), update the running max.
            const bool need_mask = kb + BN - 1 > pmin;
            float mx[MT][2];
#pragma unroll
            for (int mt = 0; mt < MT; mt++)
                mx[mt][0] = m_r[mt][0], mx[mt][1] = m_r[mt][1];
            const float *tks = kDirect ? reinterpret_cast<const float *>(st8 + 2 * BN * D) : tsc;
            const float *wks = tks + wk * KW, *wvs = tks + BN + wk * KW; // FP8: this warp's keys' scales
#pragma unroll
            for (int mt = 0; mt < MT; mt++) {
#pragma unroll
                for (int nt = 0; nt < NS; nt++) {
#pragma unroll
                    for (int e = 0; e < 4; e++) {
                        float v = s[mt][nt][e] * (FP8 ? wks[nt * 8 + tig * 2 + (e & 1)] * p.scale_log2 : p.scale_log2);
                        if (need_mask && kb + wk * KW + nt * 8 + tig * 2 + (e & 1) > prow[mt][e >> 1])
                            v = -INFINITY;
                        s[mt][nt][e] = v;
                        mx[mt][e >> 1] = fmaxf(mx[mt][e >> 1], v);
                    }
                }
            }
            // FP8: the probabilities carry their key's V scale over vmax, the largest V scale this warp has seen
            // (so they stay in [0, 1] for f16); o, kept in units of vmax, is rescaled when it grows. A V scale far
            // above the rest pushes the others' products toward f16 subnormals; their error stays below e4m3's own
            // rounding up to a ratio of ~2e4 (docs/performance.md, session 52).
            float vrescale = 1.0f, vinv = 1.0f;
            if constexpr (FP8) {
                float t = 0.0f;
                for (int j = lane; j < KW; j += 32)
                    t = fmaxf(t, wvs[j]);
#pragma unroll
                for (int off = 16; off > 0; off >>= 1)
                    t = fmaxf(t, __shfl_xor_sync(FULL_MASK, t, off));
                const float vn = fmaxf(fmaxf(vmax, t), 1e-30f);
                vrescale = vmax / vn;
                vinv = 1.0f / vn;
                vmax = vn;
            }
            float base[MT][2];
#pragma unroll
            for (int mt = 0; mt < MT; mt++)
#pragma unroll
                for (int h = 0; h < 2; h++) {
                    mx[mt][h] = fmaxf(mx[mt][h], __shfl_xor_sync(FULL_MASK, mx[mt][h], 1));
                    mx[mt][h] = fmaxf(mx[mt][h], __shfl_xor_sync(FULL_MASK, mx[mt][h], 2));
                    base[mt][h] = mx[mt][h] == -INFINITY ? 0.0f : mx[mt][h]; // a row with no key yet stays at zero
                    const float corr = exp2f(m_r[mt][h] - base[mt][h]);
                    m_r[mt][h] = mx[mt][h];
                    l_r[mt][h] *= corr;
                    const float ocorr = FP8 ? corr * vrescale : corr;
#pragma unroll
                    for (int nt = 0; nt < NO; nt++) {
                        o[mt][nt][2 * h] *= ocorr;
                        o[mt][nt][2 * h + 1] *= ocorr;
                    }
                }
            // O += P V: two score n-tiles form one A fragment (16 keys); V through ldmatrix.trans (MT > 1: each V
            // fragment read once for every m-tile).
            const bf16 *vrow = sv + ((lane & 7) + ((lane >> 3) & 1) * 8) * LDS + (lane >> 4) * 8;
#pragma unroll
            for (int ks = 0; ks < KW / 16; ks++) {
                uint32_t a[MT][4];
#pragma unroll
                for (int mt = 0; mt < MT; mt++) {
                    float pr[2][4];
#pragma unroll
                    for (int u = 0; u < 2; u++) {
#pragma unroll
                        for (int e = 0; e < 4; e++) {
                            pr[u][e] = exp2f(s[mt][2 * ks + u][e] - base[mt][e >> 1]);
                            l_r[mt][e >> 1] += pr[u][e];
                        }
                    }
                    if constexpr (FP8) { // p * (its key's V scale / vmax), f16
#pragma unroll
                        for (int u = 0; u < 2; u++) {
                            const float v0 = wvs[ks * 16 + u * 8 + tig * 2] * vinv;
                            const float v1 = wvs[ks * 16 + u * 8 + tig * 2 + 1] * vinv;
                            a[mt][2 * u] = pack_h2(pr[u][0] * v0, pr[u][1] * v1);
                            a[mt][2 * u + 1] = pack_h2(pr[u][2] * v0, pr[u][3] * v1);
                        }
                    } else {
                        a[mt][0] = pack2(pr[0][0], pr[0][1]), a[mt][1] = pack2(pr[0][2], pr[0][3]);
                        a[mt][2] = pack2(pr[1][0], pr[1][1]), a[mt][3] = pack2(pr[1][2], pr[1][3]);
                    }
                }
                if constexpr (kDirect) {
                    f8_pv<D>(o[0], a[0], st8 + BN * D, wk * KW + ks * 16, gid, tig);
                } else {
#pragma unroll
                    for (int dp = 0; dp < NO / 2; dp++) {
                        uint32_t b[4];
                        ldsm_x4_t(b, vrow + ks * 16 * LDS + dp * 16);
#pragma unroll
                        for (int mt = 0; mt < MT; mt++) {
                            mma_k16<FP8>(o[mt][2 * dp], a[mt], b[0], b[1]);
                            mma_k16<FP8>(o[mt][2 * dp + 1], a[mt], b[2], b[3]);
                        }
                    }
                }
            }
        }
        if constexpr (!kDirect) // (kDirect: the next iteration's barrier guards the stage)
            __syncthreads();    // every warp is done with this stage (FP8: the bf16 tile) before it is refilled
        if constexpr (kAhead2 && !FP8) { // refill it with tile it + 2 (an empty group past the end keeps the count)
            if (it + 2 < n_kt)
                load_tile(it & 1, kb + 2 * BN);
            cp_async_commit();
        }
    }
#pragma unroll
    for (int mt = 0; mt < MT; mt++)
#pragma unroll
        for (int h = 0; h < 2; h++) {
            l_r[mt][h] += __shfl_xor_sync(FULL_MASK, l_r[mt][h], 1);
            l_r[mt][h] += __shfl_xor_sync(FULL_MASK, l_r[mt][h], 2);
        }
    if constexpr (FP8) { // back from units of vmax
#pragma unroll
        for (int mt = 0; mt < MT; mt++)
#pragma unroll
            for (int nt = 0; nt < NO; nt++)
#pragma unroll
                for (int e = 0; e < 4; e++)
                    o[mt][nt][e] *= vmax;
    }

    if constexpr (WK == 1) {
        if (!warp_on)
            return;
#pragma unroll
        for (int mt = 0; mt < MT; mt++)
#pragma unroll
            for (int h = 0; h < 2; h++) {
                const int r = r0 + (wm * MT + mt) * 16 + gid + 8 * h;
                if (r >= rows)
                    continue;
                const int t = r / group;
                const int64_t tok = tok0 + t;
                const int hq = kvh * group + (r - t * group);
                if (p.n_splits == 1) {
                    const float inv = l_r[mt][h] > 0.0f ? 1.0f / l_r[mt][h] : 0.0f;
                    bf16 *dst = p.out + (tok * p.heads + hq) * D + tig * 2;
#pragma unroll
                    for (int nt = 0; nt < NO; nt++)
                        *reinterpret_cast<uint32_t *>(dst + nt * 8) =
                            pack2(o[mt][nt][2 * h] * inv, o[mt][nt][2 * h + 1] * inv);
                } else {
                    const int64_t idx = ((int64_t)split * p.n + tok) * p.heads + hq;
                    float *dst = p.part_acc + idx * D + tig * 2;
#pragma unroll
                    for (int nt = 0; nt < NO; nt++)
                        *reinterpret_cast<float2 *>(dst + nt * 8) = make_float2(o[mt][nt][2 * h], o[mt][nt][2 * h + 1]);
                    if (tig == 0) {
                        p.part_ml[idx * 2] = m_r[mt][h];
                        p.part_ml[idx * 2 + 1] = l_r[mt][h];
                    }
                }
            }
    } else {
        // The WK warps of a row group saw different keys: merge (m, l, O) through shared memory,
        // which the stages no longer need (the loop ended on a barrier; drain the empty groups).
        constexpr int LDO = D + 8;
        cp_async_wait<0>();
        __syncthreads();
        float *so = reinterpret_cast<float *>(smem_u4);      // [NW][16][LDO]
        float *sm = so + NW * 16 * LDO, *sl = sm + NW * 16;  // [NW][16] each
        float *cacc = sl + NW * 16, *cml = cacc + BM * D; // CL: this split's [BM][D] sums, [BM][2] (max, sum)
        static_assert((NW * 16 * (LDO + 2) + BM * (D + 2)) * sizeof(float) <= (size_t)smem_bytes<D, WK, BN, FP8>(),
                      "merge buffer");
#pragma unroll
        for (int h = 0; h < 2; h++) {
            const int il = gid + 8 * h;
            if (r0 + wm * 16 + il >= rows) // padding rows (a decode tile has `group` real rows of 16): never read
                continue;
            if constexpr (kDirect) { // n-tile nt's column c is dim c * NO + nt: dims 2tig * NO .. + 2NO - 1 here
                float *dst = so + (warp * 16 + il) * LDO + 2 * tig * NO;
#pragma unroll
                for (int nt = 0; nt < NO; nt += 4) {
                    *reinterpret_cast<float4 *>(dst + nt) =
                        make_float4(o[0][nt][2 * h], o[0][nt + 1][2 * h], o[0][nt + 2][2 * h], o[0][nt + 3][2 * h]);
                    *reinterpret_cast<float4 *>(dst + NO + nt) = make_float4(
                        o[0][nt][2 * h + 1], o[0][nt + 1][2 * h + 1], o[0][nt + 2][2 * h + 1], o[0][nt + 3][2 * h + 1]);
                }
            } else {
#pragma unroll
                for (int nt = 0; nt < NO; nt++)
                    *reinterpret_cast<float2 *>(so + (warp * 16 + il) * LDO + nt * 8 + tig * 2) =
                        make_float2(o[0][nt][2 * h], o[0][nt][2 * h + 1]);
            }
            if (tig == 0) {
                sm[warp * 16 + il] = m_r[0][h];
                sl[warp * 16 + il] = l_r[0][h];
            }
        }
        __syncthreads();
        const int n_el = min(rows - r0, BM) * D; // the real rows' elements only
        for (int e = tid; e < n_el; e += NT) {
            const int i = e / D, d = e - (e / D) * D;
            const int r = r0 + i;
            const int wmi = i / 16, il = i - wmi * 16;
            float M = -INFINITY;
#pragma unroll
            for (int w = 0; w < WK; w++)
                M = fmaxf(M, sm[(w * WM + wmi) * 16 + il]);
            float L = 0.0f, A = 0.0f;
            if (M != -INFINITY) {
#pragma unroll
                for (int w = 0; w < WK; w++) {
                    const int x = (w * WM + wmi) * 16 + il;
                    const float c = exp2f(sm[x] - M);
                    L += sl[x] * c;
                    A += so[x * LDO + d] * c;
                }
            }
            if constexpr (CL) {
                cacc[i * D + d] = A;
                if (d == 0) {
                    cml[2 * i] = M;
                    cml[2 * i + 1] = L;
                }
            } else {
                const int t = r / group;
                const int64_t tok = tok0 + t;
                attn_store(p, split, tok, kvh * group + (r - t * group), D, d, M, L, A);
            }
        }
        if constexpr (CL)
            cluster_merge<D, BM, NT>(p, cacc, cml, r0, rows, tok0, kvh);
    }
    pdl_launch_dependents();
}

// Warp layout for tiles of up to `rows` rows: few rows (decode) -> one row group, keys split four
// ways; otherwise 4 or 8 warps of 16 rows.
struct TiledShape {
    int wm, wk;
};

TiledShape tiled_shape(int64_t rows)
{
    if (rows <= 16)
        return {1, 4};
    if (rows <= 64)
        return {4, 1};
    return {8, 1};
}

template <int D, int WM, int WK, bool CL = false, int BN = kBN, bool FP8 = false, int MT = 1, int MINB = 0>
int launch_shape(const AttnTiledParams &p, dim3 grid, cudaStream_t s)
{
    constexpr int bytes = smem_bytes<D, WK, BN, FP8, (MT > 1 ? 16 * WM * MT : 0)>();
    auto kernel = attn_tiled_kernel<D, WM, WK, CL, BN, FP8, MT, MINB>;
    cudaError_t e = cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, bytes);
    if (e != cudaSuccess)
        return (int)e;
    e = launch_pdl_cluster(kernel, grid, dim3(WM * WK * 32), (size_t)bytes, s, CL ? grid.z : 1u, p);
    return e != cudaSuccess ? (int)e : launch_status();
}

// Whether a cluster of kMaxClusterSplits CTAs of the cluster form fits the current device (sm_90+, and
// enough of a GPC: MPS or partitioned GPUs may have less).
template <int D> bool cluster_fits()
{
    auto kernel = attn_tiled_kernel<D, 1, 4, true>;
    constexpr int bytes = smem_bytes<D, 4>();
    if (cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, bytes) != cudaSuccess) {
        (void)cudaGetLastError();
        return false;
    }
    cudaLaunchAttribute attr[1];
    attr[0].id = cudaLaunchAttributeClusterDimension;
    attr[0].val.clusterDim.x = 1;
    attr[0].val.clusterDim.y = 1;
    attr[0].val.clusterDim.z = kMaxClusterSplits;
    cudaLaunchConfig_t cfg = {};
    cfg.gridDim = dim3(1, 1, kMaxClusterSplits);
    cfg.blockDim = dim3(4 * 32);
    cfg.dynamicSmemBytes = bytes;
    cfg.attrs = attr;
    cfg.numAttrs = 1;
    int clusters = 0;
    if (cudaOccupancyMaxActiveClusters(&clusters, kernel, &cfg) != cudaSuccess) {
        (void)cudaGetLastError();
        return false;
    }
    return clusters > 0;
}

template <int D, int WK, int BN, bool FP8 = false, int MINB = 0> int decode_ctas_per_sm()
{
    auto kernel = attn_tiled_kernel<D, 1, WK, false, BN, FP8, 1, MINB>;
    constexpr int bytes = smem_bytes<D, WK, BN, FP8>();
    int n = 0;
    if (cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, bytes) != cudaSuccess ||
        cudaOccupancyMaxActiveBlocksPerMultiprocessor(&n, kernel, WK * 32, bytes) != cudaSuccess) {
        (void)cudaGetLastError();
        return 0;
    }
    return n;
}

// CTAs of the prefill form of two m-tiles a warp (4 warps, Q in its own rows) one SM holds: 2 on an H100/H200, fewer
// where shared memory is smaller (an Ada GPU's 99 KB a block cannot launch it at all: 0).
template <int D, bool FP8> int prefill_mt2_ctas_per_sm()
{
    auto kernel = attn_tiled_kernel<D, 4, 1, false, kBN, FP8, 2>;
    constexpr int bytes = smem_bytes<D, 1, kBN, FP8, 16 * 4 * 2>();
    int n = 0;
    if (cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, bytes) != cudaSuccess ||
        cudaOccupancyMaxActiveBlocksPerMultiprocessor(&n, kernel, 4 * 32, bytes) != cudaSuccess) {
        (void)cudaGetLastError();
        return 0;
    }
    return n;
}

// Whether tiles of this shape may merge their key splits inside a cluster: decode tiles (the key-split
// warp layout), and the caller's device allows it (AttnTiledParams::cluster_ok).
bool cluster_shape_ok(TiledShape sh, bool device_ok)
{
    return device_ok && sh.wk > 1;
}

template <int D, bool FP8>
int launch_d(const AttnTiledParams &p, TiledShape sh, dim3 grid, bool cluster, cudaStream_t s)
{
    if (sh.wm == 1 && !cluster && p.short_tiles) { // the decode form of more CTAs a SM (AttnTiledParams)
        if constexpr (FP8 && D == 128)
            return launch_shape<D, 1, 4, false, kBN, true, 1, kF8DenseCtas>(p, grid, s);
        else if constexpr (!FP8)
            return launch_shape<D, 1, 2, false, kShortBN>(p, grid, s);
        // (no dense fp8 form at D = 64: its 96 registers already fit 5 CTAs a SM; the 64-key form below)
    }
    if (sh.wm == 1)
        return cluster ? launch_shape<D, 1, 4, true, kBN, FP8>(p, grid, s) : launch_shape<D, 1, 4, false, kBN, FP8>(p, grid, s);
    if (sh.wm == 4)
        return launch_shape<D, 4, 1, false, kBN, FP8>(p, grid, s);
    if (p.prefill_wg) { // 128-row blocks on wgmma (sm_90): a bf16 cache with heads of 128, as the host's rule asks
        if constexpr (D == 128 && !FP8)
            return attn_wgmma_launch(p, grid, s);
        else
            return (int)cudaErrorInvalidValue; // never silently another form (a forced test would pass untested)
    }
    if (p.prefill_mt2) // 128-row blocks: 4 warps of two m-tiles, or 8 of one
        return launch_shape<D, 4, 1, false, kBN, FP8, 2>(p, grid, s);
    return launch_shape<D, 8, 1, false, kBN, FP8>(p, grid, s);
}

} // namespace

bool attn_tiled_supported(int head_dim)
{
    return head_dim == 64 || head_dim == 128;
}

bool attn_tiled_cluster_fits(int head_dim)
{
    int dev = 0, major = 0;
    if (cudaGetDevice(&dev) != cudaSuccess ||
        cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, dev) != cudaSuccess || major < 9) {
        (void)cudaGetLastError();
        return false;
    }
    return head_dim == 64 ? cluster_fits<64>() : head_dim == 128 ? cluster_fits<128>() : false;
}

int attn_tiled_decode_ctas_per_sm(int head_dim, bool short_tiles, bool fp8)
{
    if (fp8 && short_tiles) // heads of 128 only (launch_d)
        return head_dim == 128 ? decode_ctas_per_sm<128, 4, kBN, true, kF8DenseCtas>() : 0;
    if (fp8)
        return head_dim == 64    ? decode_ctas_per_sm<64, 4, kBN, true>()
               : head_dim == 128 ? decode_ctas_per_sm<128, 4, kBN, true>()
                                 : 0;
    if (short_tiles)
        return head_dim == 64    ? decode_ctas_per_sm<64, 2, kShortBN>()
               : head_dim == 128 ? decode_ctas_per_sm<128, 2, kShortBN>()
                                 : 0;
    return head_dim == 64 ? decode_ctas_per_sm<64, 4, kBN>() : head_dim == 128 ? decode_ctas_per_sm<128, 4, kBN>() : 0;
}

int attn_tiled_prefill_mt2_ctas_per_sm(int head_dim, bool fp8)
{
    if (fp8)
        return head_dim == 64 ? prefill_mt2_ctas_per_sm<64, true>() : head_dim == 128 ? prefill_mt2_ctas_per_sm<128, true>() : 0;
    return head_dim == 64 ? prefill_mt2_ctas_per_sm<64, false>() : head_dim == 128 ? prefill_mt2_ctas_per_sm<128, false>() : 0;
}

int attn_tiled_cluster_splits(int head_dim, int max_tile_tokens, int group, bool device_ok)
{
    if (!attn_tiled_supported(head_dim) || max_tile_tokens <= 0 || group <= 0)
        return 0;
    return cluster_shape_ok(tiled_shape((int64_t)max_tile_tokens * group), device_ok) ? kMaxClusterSplits : 0;
}

int64_t attn_tiled_ctas(int head_dim, int64_t n_tiles, int max_tile_tokens, int group, int kv_heads)
{
    (void)head_dim;
    const int64_t rows = (int64_t)max_tile_tokens * group;
    const int64_t bm = 16LL * tiled_shape(rows).wm;
    return n_tiles * ((rows + bm - 1) / bm) * kv_heads;
}

int attn_tiled_launch(const AttnTiledParams &p_in, int head_dim, int64_t n_tiles, int max_tile_tokens,
                      cudaStream_t stream, bool *merged)
{
    *merged = false;
    if (!attn_tiled_supported(head_dim) || n_tiles <= 0 || max_tile_tokens <= 0 || p_in.group <= 0)
        return (int)cudaErrorInvalidValue;
    const int64_t rows = (int64_t)max_tile_tokens * p_in.group;
    const TiledShape sh = tiled_shape(rows);
    const int64_t bm = 16LL * sh.wm;
    AttnTiledParams p = p_in;
    p.rb_per_tile = (int)((rows + bm - 1) / bm);
    p.heads_inner = p.order == kOrderByShape ? sh.wk == 1 : p.order == kOrderHeadsInner;
    const int64_t gx = n_tiles * p.rb_per_tile * (p.heads_inner ? p.kv_heads : 1);
    if (gx > 0x7fffffffLL || p.kv_heads > 65535 || p.n_splits > 65535)
        return (int)cudaErrorInvalidConfiguration;
    const dim3 grid((unsigned)gx, p.heads_inner ? 1u : (unsigned)p.kv_heads, (unsigned)p.n_splits);
    const bool cluster = p.n_splits >= 2 && p.n_splits <= kMaxClusterSplits && cluster_shape_ok(sh, p.cluster_ok);
    const int st = head_dim == 64 ? (p.kv_fp8 ? launch_d<64, true>(p, sh, grid, cluster, stream)
                                              : launch_d<64, false>(p, sh, grid, cluster, stream))
                                  : (p.kv_fp8 ? launch_d<128, true>(p, sh, grid, cluster, stream)
                                              : launch_d<128, false>(p, sh, grid, cluster, stream));
    *merged = st == 0 && cluster;
    return st;
}

} // namespace ss

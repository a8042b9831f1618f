// attn_decode_seq.cu — decode attention with one CTA per sequence (or two, each half of its kv heads), for large
// decode batches at short contexts: its warps are the kv heads, and every stage brings 16 keys of all of them at once
// (one key's K/V rows of every head are contiguous in the cache), so a CTA streams its sequence in whole rows and pays
// its fixed costs once, not once per head. A warp owns its kv head's query rows (the GQA group, one m-tile of 16) and
// runs flash-attention-2 on the tensor cores (mma.sync m16n8k16, f32 accumulation, online softmax in the log2 domain)
// over three stages of cp.async (two in flight while one is read). No key splits: the launcher picks it only where the
// sequences alone fill the GPU (attn_splits.c, ss_attn_seq_form). Heads of 64 or 128, at most 8 kv heads (shared
// memory). An fp8 cache (F8, session 49) brings 32 keys a stage, the same bytes as bf16's 16, and its warps read their
// fragments straight from the e4m3 rows as attn_tiled.cu's fp8 decode tiles do (attn_tiled.cuh, f8_k_words / f8_pv).
#include "backend/cuda/attn_tiled.cuh"
#include "backend/cuda/cp_async.cuh"
#include "backend/cuda/kv_fp8.cuh"

#include <math.h>

namespace ss {
namespace {

constexpr int kSeqBK = 16;        // keys a stage
constexpr int kSeqBK8 = 32;       // keys a stage of an fp8 cache (as many bytes)
constexpr int kSeqStages = 3;     // two stages in flight while the third is read
constexpr int kSeqMaxKvHeads = 8; // shared memory: three stages of K and V for 8 heads of 128 are 204 KB (fp8: 198)

// A stage's bytes: [K | V][kv head of the part][key][D + 8] bf16, or (F8) [K | V][kv head][key][D] e4m3 bytes and then
// [K | V][kv head][key] f32 scales.
template <int D, bool F8> __host__ __device__ constexpr size_t seq_stage_bytes(int kv_heads)
{
    return F8 ? (size_t)2 * kv_heads * kSeqBK8 * (D + sizeof(float))
              : (size_t)2 * kv_heads * kSeqBK * (D + 8) * sizeof(bf16);
}
template <int D, bool F8> constexpr size_t seq_smem_bytes(int kv_heads)
{
    return kSeqStages * seq_stage_bytes<D, F8>(kv_heads);
}

// The online softmax's step over a stage's scores s (log2 domain, masked; mx: this thread's maxima of them, rows gid
// and gid + 8): the rows' running max m and sum l move on, s becomes the probabilities, and the output sums so far acc
// are scaled to the new max, and by acc_scale too (F8: the units of a grown V-scale maximum; bf16: 1).
template <int NS, int NO>
__device__ __forceinline__ void seq_softmax(float (&s)[NS][4], float (&mx)[2], float (&m)[2], float (&l)[2],
                                            float (&acc)[NO][4], float acc_scale)
{
    float alpha[2];
#pragma unroll
    for (int r = 0; r < 2; r++) {
        mx[r] = fmaxf(mx[r], __shfl_xor_sync(FULL_MASK, mx[r], 1));
        mx[r] = fmaxf(mx[r], __shfl_xor_sync(FULL_MASK, mx[r], 2));
        const float mn = fmaxf(m[r], mx[r]); // finite: every stage holds its first key, within the context
        alpha[r] = exp2f(m[r] - mn);
        m[r] = mn;
        l[r] *= alpha[r];
    }
#pragma unroll
    for (int j = 0; j < NS; j++)
#pragma unroll
        for (int e = 0; e < 4; e++) {
            s[j][e] = exp2f(s[j][e] - m[e >> 1]);
            l[e >> 1] += s[j][e];
        }
    alpha[0] *= acc_scale, alpha[1] *= acc_scale;
#pragma unroll
    for (int t = 0; t < NO; t++) {
        acc[t][0] *= alpha[0], acc[t][1] *= alpha[0];
        acc[t][2] *= alpha[1], acc[t][3] *= alpha[1];
    }
}

// Grid: one CTA per query tile (a decode token; empty padding tiles return at once) and part of its kv heads (y: the
// heads split over gridDim.y CTAs, which then share an SM's shared memory). Block: 32 threads per kv head of its part.
// Shared memory: kSeqStages stages (seq_stage_bytes; bf16: the 16-byte pad puts the 8 rows an ldmatrix reads in
// distinct banks; F8: the rows' chunks swizzled, f8_swz).
template <int D, bool F8>
__global__ void __launch_bounds__(kSeqMaxKvHeads * 32) attn_seq_kernel(const AttnTiledParams p)
{
    constexpr int BK = F8 ? kSeqBK8 : kSeqBK;
    constexpr int LDS = D + 8, CPR = F8 ? D / 16 : D / 8, DK = D / 16, NO = D / 8;
    constexpr int KPP = 32 / CPR; // key rows one pass of the block loads (its kv_heads * CPR threads a row)
    static_assert(!F8 || BK == 32, "F8: a stage's scales are one per thread of the block (a warp a kv head)");
    extern __shared__ uint4 smem_u4[];
    bf16 *const smem = reinterpret_cast<bf16 *>(smem_u4);
    uint8_t *const sm8 = reinterpret_cast<uint8_t *>(smem_u4);
    const int kvh_n = p.kv_heads / (int)gridDim.y, head0 = (int)blockIdx.y * kvh_n; // this CTA's part of the heads
    const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
    const int gid = lane >> 2, tig = lane & 3;
    if (p.q_tiles[2 * blockIdx.x + 1] == 0)
        return; // an empty padding tile (uniform exit)
    const int tok0 = p.q_tiles[2 * blockIdx.x];
    const int seq = p.tok_seq[tok0];
    const int n_keys = p.tok_pos[tok0] + 1;
    const int n_st = (n_keys + BK - 1) / BK;
    const int32_t *bt = p.block_tables + (int64_t)seq * p.max_blocks;
    const int bs = p.block_size;
    const int64_t kv_row = (int64_t)p.kv_heads * D;
    const int stage_elems = 2 * kvh_n * kSeqBK * LDS;              // bf16
    const int stage_bytes = (int)seq_stage_bytes<D, F8>(kvh_n);     // F8
    const int f8_rows = kvh_n * BK * D;                             // F8: a stage's K (then V) rows, bytes
    const char *kb8 = reinterpret_cast<const char *>(p.kc), *vb8 = reinterpret_cast<const char *>(p.vc);
    // This thread's 16-byte chunk of a key's row (the part's heads: contiguous), and its first row in a stage.
    const int per_row = kvh_n * CPR;
    const int row_off = tid / per_row, idx = tid - row_off * per_row;
    const int c_head = idx / CPR, c_ch = idx - c_head * CPR;
    // Block sizes are powers of two in practice, where shifts replace the divisions (a thread computes 8 rows a stage).
    const bool bs_pow2 = (bs & (bs - 1)) == 0;
    const int bs_shift = __ffs(bs) - 1;
    const int64_t c_off = (int64_t)(head0 + c_head) * D + c_ch * 8;
    // F8: key j's fp8 row of kv head h (its block, then its offset) and the row's scale.
    auto f8_at = [&](int j, int h, bool scale) -> int64_t {
        const int64_t blk = bt[bs_pow2 ? j >> bs_shift : j / bs];
        const int off = bs_pow2 ? (j & (bs - 1)) : j % bs;
        return scale ? kv_fp8_scale(blk, off, h, p.kv_block_bytes, bs, p.kv_heads, D)
                     : kv_fp8_row(blk, off, h, p.kv_block_bytes, p.kv_heads, D);
    };
    // F8: stage st's rows (this thread's chunk of KPP-apart keys' rows of its head) and scales (warp w's head, key
    // lane: one of each a thread); past the context zeros, nothing read.
    auto load_stage_f8 = [&](int st) {
        uint8_t *const s8 = sm8 + (st % kSeqStages) * stage_bytes;
        uint8_t *const sk = s8 + c_head * BK * D, *const sv = sk + f8_rows;
        const int kb = st * BK;
        int64_t off[BK / KPP]; // every block-table read first, then the copies
#pragma unroll
        for (int i = 0; i < BK / KPP; i++) {
            const int j = kb + row_off + i * KPP;
            off[i] = j < n_keys ? f8_at(j, head0 + c_head, false) + c_ch * 16 : 0;
        }
        const int js = kb + lane;
        const int64_t soff = js < n_keys ? f8_at(js, head0 + warp, true) : 0;
#pragma unroll
        for (int i = 0; i < BK / KPP; i++) {
            const int key = row_off + i * KPP;
            const bool ok = kb + key < n_keys;
            cp_async16(sk + key * D + f8_swz<D>(key, c_ch) * 16, kb8 + off[i], ok);
            cp_async16(sv + key * D + f8_swz<D>(key, c_ch) * 16, vb8 + off[i], ok);
        }
        float *const ks = reinterpret_cast<float *>(s8 + 2 * f8_rows);
        cp_async4(ks + warp * BK + lane, kb8 + soff, js < n_keys);
        cp_async4(ks + kvh_n * BK + warp * BK + lane, vb8 + soff, js < n_keys);
    };
    auto load_stage_bf16 = [&](int st) {
        bf16 *sk = smem + (st % kSeqStages) * stage_elems + (c_head * kSeqBK) * LDS + c_ch * 8;
        bf16 *sv = sk + kvh_n * kSeqBK * LDS;
        const int kb = st * kSeqBK;
        int64_t off[kSeqBK / KPP]; // every block-table read first, then the copies
#pragma unroll
        for (int i = 0; i < kSeqBK / KPP; i++) {
            const int j = kb + row_off + i * KPP;
            off[i] = 0;
            if (j < n_keys)
                off[i] = (bs_pow2 ? ((int64_t)bt[j >> bs_shift] << bs_shift) + (j & (bs - 1))
                                  : (int64_t)bt[j / bs] * bs + j % bs) * kv_row + c_off;
        }
#pragma unroll
        for (int i = 0; i < kSeqBK / KPP; i++) {
            const int key = row_off + i * KPP;
            const bool ok = kb + key < n_keys;
            cp_async16(sk + key * LDS, p.kc + off[i], ok); // past the context: zeros, nothing read
            cp_async16(sv + key * LDS, p.vc + off[i], ok);
        }
    };
    auto load_stage = [&](int st) {
        if constexpr (F8)
            load_stage_f8(st);
        else
            load_stage_bf16(st);
    };
    // The metadata above is never written by a kernel, nor are this sequence's keys before its first token of the
    // step (the previous kernel, rope + KV store, writes the step's tokens' keys): stages that end before this token's
    // key load before waiting for it, q and the rest after. Only where this token is its sequence's first of the step
    // (a sequence's tokens are adjacent, in order): a sequence with several one-token tiles (SS_GRAPH_TILE=1 with
    // drafts) has keys of the step below this token's.
    // F8: only stages below the new key's block (its scales load through L1, 4 bytes at a time, and a block that is not
    // a power of two keys long can put an earlier key's scale beside the new key's in one line; a review's finding).
    const bool first_of_seq = tok0 == 0 || p.tok_seq[tok0 - 1] != seq;
    const int before = F8 ? (n_keys - 1) / bs * bs : n_keys - 1;                  // keys safe to load early
    const int early = first_of_seq ? min(kSeqStages - 1, before / BK) : 0; // whole stages before its key
    for (int st = 0; st < early; st++) {
        load_stage(st);
        cp_async_commit();
    }
    pdl_wait();
    for (int st = early; st < kSeqStages - 1; st++) {
        if (st < n_st)
            load_stage(st);
        cp_async_commit();
    }

    // This warp's kv head: its query rows gid and gid + 8 (heads h * group + row; rows past the group are zeros).
    const int h = head0 + warp, group = p.group;
    const bf16 *q0 = p.q + (int64_t)tok0 * p.q_stride + (int64_t)h * group * D;
    uint32_t qa[DK][4];
    if constexpr (F8) { // f16, in f8_k_words' order of dims (tig*D/4 + 4kk .. + 3)
#pragma unroll
        for (int kk = 0; kk < DK; kk++)
#pragma unroll
            for (int r = 0; r < 2; r++) {
                const bool on = gid + 8 * r < group;
                const uint2 v = on ? *reinterpret_cast<const uint2 *>(q0 + (gid + 8 * r) * D + tig * (D / 4) + 4 * kk)
                                   : make_uint2(0u, 0u);
                qa[kk][r] = pack_h2(bf16_lo(v.x), bf16_hi(v.x));
                qa[kk][2 + r] = pack_h2(bf16_lo(v.y), bf16_hi(v.y));
            }
    } else {
#pragma unroll
        for (int kk = 0; kk < DK; kk++) {
            const int col = kk * 16 + tig * 2;
            const bool r0 = gid < group, r1 = gid + 8 < group;
            qa[kk][0] = r0 ? *reinterpret_cast<const uint32_t *>(q0 + gid * D + col) : 0u;
            qa[kk][1] = r1 ? *reinterpret_cast<const uint32_t *>(q0 + (gid + 8) * D + col) : 0u;
            qa[kk][2] = r0 ? *reinterpret_cast<const uint32_t *>(q0 + gid * D + col + 8) : 0u;
            qa[kk][3] = r1 ? *reinterpret_cast<const uint32_t *>(q0 + (gid + 8) * D + col + 8) : 0u;
        }
    }
    float acc[NO][4];
#pragma unroll
    for (int t = 0; t < NO; t++)
        acc[t][0] = acc[t][1] = acc[t][2] = acc[t][3] = 0.0f;
    float m[2] = {-INFINITY, -INFINITY}, l[2] = {0.0f, 0.0f};
    const int mi = lane >> 3, rr = lane & 7; // ldmatrix: this lane's matrix and row
    float vmax = 0.0f; // F8: acc holds the sums in units of this running maximum of the warp's V scales

    // F8: stage st's keys of this warp's kv head: the scores times their K scales, the online softmax, and P.V with
    // each probability times its key's V scale over vmax (which keeps P within f16; acc is rescaled when vmax grows).
    auto stage_f8 = [&](int st) {
        constexpr int NS = BK / 8; // score n-tiles: keys 8j .. 8j + 7 of the stage
        const uint8_t *const s8 = sm8 + (st % kSeqStages) * stage_bytes;
        const uint8_t *const kr8 = s8 + warp * BK * D, *const vr8 = kr8 + f8_rows; // this warp's head's rows
        const float *const wks = reinterpret_cast<const float *>(s8 + 2 * f8_rows) + warp * BK;
        const float *const wvs = wks + kvh_n * BK;
        float s[NS][4];
#pragma unroll
        for (int j = 0; j < NS; j++) {
            s[j][0] = s[j][1] = s[j][2] = s[j][3] = 0.0f;
            uint32_t kw[DK];
            f8_k_words<D>(kr8, j * 8 + gid, tig, kw);
#pragma unroll
            for (int kk = 0; kk < DK; kk++)
                mma_k16<true>(s[j], qa[kk], e4m3x2_h2(kw[kk]), e4m3x2_h2_hi(kw[kk]));
        }
        const int kb = st * BK;
        float mx[2] = {-INFINITY, -INFINITY};
#pragma unroll
        for (int j = 0; j < NS; j++)
#pragma unroll
            for (int e = 0; e < 4; e++) {
                const int c = j * 8 + tig * 2 + (e & 1);
                s[j][e] = kb + c < n_keys ? s[j][e] * (wks[c] * p.scale_log2) : -INFINITY;
                mx[e >> 1] = fmaxf(mx[e >> 1], s[j][e]);
            }
        float vt = wvs[lane]; // (BK == 32: a key a lane)
#pragma unroll
        for (int off = 16; off > 0; off >>= 1)
            vt = fmaxf(vt, __shfl_xor_sync(FULL_MASK, vt, off));
        const float vn = fmaxf(fmaxf(vmax, vt), 1e-30f), vrescale = vmax / vn, vinv = 1.0f / vn;
        vmax = vn;
        seq_softmax(s, mx, m, l, acc, vrescale);
#pragma unroll
        for (int ks = 0; ks < BK / 16; ks++) { // P's A fragment of keys 16ks .. + 15 (score n-tiles 2ks, 2ks + 1)
            uint32_t a[4];
#pragma unroll
            for (int u = 0; u < 2; u++) {
                const float *const sr = s[2 * ks + u];
                const float v0 = wvs[ks * 16 + u * 8 + tig * 2] * vinv, v1 = wvs[ks * 16 + u * 8 + tig * 2 + 1] * vinv;
                a[2 * u] = pack_h2(sr[0] * v0, sr[1] * v1);
                a[2 * u + 1] = pack_h2(sr[2] * v0, sr[3] * v1);
            }
            f8_pv<D>(acc, a, vr8, ks * 16, gid, tig);
        }
    };

    for (int st = 0; st < n_st; st++) {
        cp_async_wait<kSeqStages - 2>(); // stage st has landed (this thread's copies)
        __syncthreads();                 // everyone's, and every warp is done with the buffer refilled below
        if (st + kSeqStages - 1 < n_st)
            load_stage(st + kSeqStages - 1);
        cp_async_commit(); // one group an iteration, empty or not: the wait above counts on it
        if constexpr (F8) {
            stage_f8(st);
        } else {
            const bf16 *sk = smem + (st % kSeqStages) * stage_elems + warp * kSeqBK * LDS;
            const bf16 *sv = sk + kvh_n * kSeqBK * LDS;
            // scores of the 16 keys: n-tiles of keys 0-7 and 8-15
            float s[2][4] = {{0.0f, 0.0f, 0.0f, 0.0f}, {0.0f, 0.0f, 0.0f, 0.0f}};
#pragma unroll
            for (int kk = 0; kk < DK; kk++) {
                uint32_t b[4]; // K rows are Q.K^T's B fragments: (keys 0-7 | 8-15) x (dims kk*16 .. +7 | +8 .. +15)
                ldsm_x4(b, sk + ((mi >> 1) * 8 + rr) * LDS + kk * 16 + (mi & 1) * 8);
                mma_16816(s[0], qa[kk][0], qa[kk][1], qa[kk][2], qa[kk][3], b[0], b[1]);
                mma_16816(s[1], qa[kk][0], qa[kk][1], qa[kk][2], qa[kk][3], b[2], b[3]);
            }
            const int kb = st * kSeqBK;
            float mx[2] = {-INFINITY, -INFINITY};
#pragma unroll
            for (int j = 0; j < 2; j++)
#pragma unroll
                for (int e = 0; e < 4; e++) {
                    const int key = kb + j * 8 + tig * 2 + (e & 1);
                    s[j][e] = key < n_keys ? s[j][e] * p.scale_log2 : -INFINITY;
                    mx[e >> 1] = fmaxf(mx[e >> 1], s[j][e]);
                }
            seq_softmax(s, mx, m, l, acc, 1.0f);
            // the probabilities as P.V's A fragment (the score n-tiles are its two k halves)
            const uint32_t pa0 = pack2(s[0][0], s[0][1]), pa1 = pack2(s[0][2], s[0][3]);
            const uint32_t pa2 = pack2(s[1][0], s[1][1]), pa3 = pack2(s[1][2], s[1][3]);
#pragma unroll
            for (int t = 0; t < NO; t += 2) {
                uint32_t b[4]; // V rows transposed: (keys 0-7 | 8-15) x (dims 8t .. +7 | 8(t+1) .. +7)
                ldsm_x4_t(b, sv + ((mi & 1) * 8 + rr) * LDS + (t + (mi >> 1)) * 8);
                mma_16816(acc[t], pa0, pa1, pa2, pa3, b[0], b[1]);
                mma_16816(acc[t + 1], pa0, pa1, pa2, pa3, b[2], b[3]);
            }
        }
    }
    cp_async_wait<0>();
#pragma unroll
    for (int r = 0; r < 2; r++) {
        l[r] += __shfl_xor_sync(FULL_MASK, l[r], 1);
        l[r] += __shfl_xor_sync(FULL_MASK, l[r], 2);
        l[r] = l[r] > 0.0f ? 1.0f / l[r] : 0.0f;
    }
    if constexpr (F8) { // n-tile t's column c is dim c * NO + t: this thread's dims 2tig*NO .. + 2NO - 1 of its rows
#pragma unroll
        for (int r = 0; r < 2; r++) {
            const int row = gid + 8 * r;
            if (row >= group)
                continue;
            const float f = l[r] * vmax; // (acc is in units of vmax)
            bf16 *o = p.out + ((int64_t)tok0 * p.heads + h * group + row) * D + 2 * tig * NO;
#pragma unroll
            for (int c = 0; c < 2; c++)
#pragma unroll
                for (int t = 0; t < NO; t += 8)
                    *reinterpret_cast<uint4 *>(o + c * NO + t) =
                        make_uint4(pack2(acc[t][2 * r + c] * f, acc[t + 1][2 * r + c] * f),
                                   pack2(acc[t + 2][2 * r + c] * f, acc[t + 3][2 * r + c] * f),
                                   pack2(acc[t + 4][2 * r + c] * f, acc[t + 5][2 * r + c] * f),
                                   pack2(acc[t + 6][2 * r + c] * f, acc[t + 7][2 * r + c] * f));
        }
    } else {
#pragma unroll
        for (int r = 0; r < 2; r++) {
            const int row = gid + 8 * r;
            if (row >= group)
                continue;
            bf16 *o = p.out + ((int64_t)tok0 * p.heads + h * group + row) * D + tig * 2;
#pragma unroll
            for (int t = 0; t < NO; t++)
                *reinterpret_cast<uint32_t *>(o + t * 8) = pack2(acc[t][2 * r] * l[r], acc[t][2 * r + 1] * l[r]);
        }
    }
}

// Sets the kernel's shared-memory bound for the most kv heads it takes (always the same value, so launches of other
// head counts, captured in graphs or not, never change it), and says whether that fits.
template <int D, bool F8> bool seq_fits()
{
    if (cudaFuncSetAttribute(attn_seq_kernel<D, F8>, cudaFuncAttributeMaxDynamicSharedMemorySize,
                             (int)seq_smem_bytes<D, F8>(kSeqMaxKvHeads)) != cudaSuccess) {
        (void)cudaGetLastError();
        return false;
    }
    return true;
}

template <int D, bool F8>
cudaError_t seq_launch(const AttnTiledParams &p, dim3 grid, dim3 block, int part, cudaStream_t stream)
{
    return launch_pdl(attn_seq_kernel<D, F8>, grid, block, seq_smem_bytes<D, F8>(part), stream, p);
}

} // namespace

bool attn_seq_fits(int head_dim, int kv_heads, int group, bool fp8)
{
    if (kv_heads < 1 || kv_heads > kSeqMaxKvHeads || group < 1 || group > 16)
        return false;
    if (fp8)
        return head_dim == 128 ? seq_fits<128, true>() : head_dim == 64 ? seq_fits<64, true>() : false;
    return head_dim == 128 ? seq_fits<128, false>() : head_dim == 64 ? seq_fits<64, false>() : false;
}

int attn_seq_launch(const AttnTiledParams &p, int head_dim, int64_t n_tiles, int head_parts, cudaStream_t stream)
{
    if (n_tiles <= 0 || n_tiles > 0x7fffffffLL || p.n_splits != 1 || head_parts < 1 || p.kv_heads % head_parts != 0 ||
        !attn_seq_fits(head_dim, p.kv_heads, p.group, p.kv_fp8))
        return (int)cudaErrorInvalidValue;
    const int part = p.kv_heads / head_parts;
    const dim3 grid((unsigned)n_tiles, (unsigned)head_parts), block((unsigned)(32 * part));
    const cudaError_t e =
        p.kv_fp8 ? (head_dim == 128 ? seq_launch<128, true>(p, grid, block, part, stream)
                                    : seq_launch<64, true>(p, grid, block, part, stream))
                 : (head_dim == 128 ? seq_launch<128, false>(p, grid, block, part, stream)
                                    : seq_launch<64, false>(p, grid, block, part, stream));
    return e != cudaSuccess ? (int)e : launch_status();
}

} // namespace ss

// attn_tiled.cuh — the tensor-core attention kernels (attn_tiled.cu's, attn_wgmma.cu's prefill form on its grid, and
// attn_decode_seq.cu's decode form)
// as seen by their one caller, ss_cuda_attention in attention.cu (which picks them or the CUDA-core kernel and runs
// the split-K combine), and what the two kernels share. Device code only; host C never sees this file.
#pragma once

#include "backend/cuda/common.cuh"
#include "backend/cuda/kv_fp8.cuh"

namespace ss {

// What every attention kernel (CUDA-core, tiled, wgmma) reads.
struct AttnCommon {
    bf16 *out;           // [n, heads*D]
    const bf16 *q;       // row t at q + t*q_stride: [heads, D]
    int64_t q_stride;
    const bf16 *kc, *vc; // [slots, kv_heads, D], or fp8 blocks (kv_fp8.cuh) when kv_fp8
    bool kv_fp8;
    int64_t kv_block_bytes; // kv_fp8: bytes from one block to the next
    const int32_t *tok_seq, *tok_pos, *block_tables;
    int max_blocks, block_size;
    int heads, kv_heads, group;
    float scale_log2;    // softmax scale * log2(e)
    int n_splits;        // > 1: write partial results for attn_combine_kernel instead of out
    int64_t n;
    float *part_acc;     // [n_splits, n, heads, D] unnormalised sums (n_splits > 1)
    float *part_ml;      // [n_splits, n, heads, 2] running max (log2 domain) and sum
};

// The tiled kernel's grid order. Heads-inner: x enumerates (row block, kv head) with the kv heads of a row
// block adjacent, so the longest prefill tiles of every head start first (H200, 2,048-token prompt: the
// kernel 195 against 229 us); heads-outer: y is the kv head (decode tiles, all alike: 1-3.5% faster at
// batch 128-256 and contexts up to 256). Session 17, docs/performance.md.
enum AttnOrder { kOrderByShape = 0, kOrderHeadsInner, kOrderHeadsOuter };

struct AttnTiledParams : AttnCommon {
    const int32_t *q_tiles; // [n_tiles, 2]: first token, token count (runs of one sequence)
    int rb_per_tile;        // row blocks per tile (set by attn_tiled_launch)
    bool cluster_ok;        // the device runs the cluster form (attn_tiled_cluster_fits; the caller may veto)
    AttnOrder order;        // the caller's wish (kOrderByShape: prefill tiles inner, decode tiles outer)
    bool heads_inner;       // set by attn_tiled_launch from `order` and the tile shape
    bool short_tiles;       // decode tiles without a cluster, in the form of more CTAs a SM: with a bf16 cache 32-key
                            // tiles of two warps; with an fp8 cache the same tiles held to fewer registers
    bool prefill_mt2;       // prefill tiles (128-row blocks) by 4 warps of 32 rows instead of 8 of 16 (session 32)
    bool prefill_wg;        // prefill tiles of a bf16 cache, heads of 128, on sm_90: attn_wgmma.cu's form (session 34)
};

// ---------------------------------------------------------------- tensor-core pieces the kernels share

// c[16x8] += a[16x16] * b[16x8], f32 accumulators (PTX fragment layouts); bf16 inputs, or f16 (F16: the fp8
// cache's tiles). The instruction spells the input type, and an asm string must be a literal: one each.
#define SS_MMA_16816(T)                                                                                          \
    asm volatile("mma.sync.aligned.m16n8k16.row.col.f32." T "." T ".f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "  \
                 "{%0,%1,%2,%3};\n"                                                                               \
                 : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])                                                  \
                 : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1))
template <bool F16>
__device__ __forceinline__ void mma_k16(float (&c)[4], const uint32_t (&a)[4], uint32_t b0, uint32_t b1)
{
    if constexpr (F16)
        SS_MMA_16816("f16");
    else
        SS_MMA_16816("bf16");
}
#undef SS_MMA_16816

// Two floats as an f16 pair (low half: a).
__device__ __forceinline__ uint32_t pack_h2(float a, float b)
{
    __half2 h = __floats2half2_rn(a, b);
    return *reinterpret_cast<uint32_t *>(&h);
}

// An fp8 cache's decode fragments straight from e4m3 rows in shared memory (session 47; attn_tiled.cu's decode tiles
// and attn_decode_seq.cu's fp8 form): a tile's rows sit D bytes apart, the 16-byte chunk ch of row kr at chunk
// ch ^ (kr mod D/16), which keeps both reads below free of bank conflicts at D = 128. The math runs in f16 on the
// values unscaled (exact; one cvt a pair), and reads the head's dims in two orders that a sum over them does not see:
// in Q.K^T, k-step kk's 16 dims are thread tig's bytes tig*D/4 + 4kk .. + 3 of a key row (Q's A fragments must be
// read in the same order); in P.V, output n-tile nt's column c is dim c*NO + nt (NO = D/8).
template <int D> __device__ __forceinline__ int f8_swz(int kr, int ch)
{
    return ch ^ (kr & (D / 16 - 1));
}

// Q.K^T's B words of key row kr of `rows` for thread tig: kw[kk] holds k-step kk's four e4m3 bytes.
template <int D>
__device__ __forceinline__ void f8_k_words(const uint8_t *rows, int kr, int tig, uint32_t (&kw)[D / 16])
{
#pragma unroll
    for (int h = 0; h < D / 64; h++) {
        const uint4 u = *reinterpret_cast<const uint4 *>(rows + kr * D + f8_swz<D>(kr, tig * (D / 64) + h) * 16);
        kw[4 * h] = u.x, kw[4 * h + 1] = u.y, kw[4 * h + 2] = u.z, kw[4 * h + 3] = u.w;
    }
}

// o += P V over the 16 keys kr0 .. kr0 + 15 of the V rows `vrows`; a: P's A fragment (f16), o[nt]: output n-tile nt.
// Thread (gid, tig)'s B fragments of every n-tile are dims gid*NO .. + NO - 1 of the four key rows its k slots name
// (2tig and 2tig + 1 of each half of the 16 keys), one NO-byte piece of each row, byte-interleaved in pairs.
template <int D>
__device__ __forceinline__ void f8_pv(float (&o)[D / 8][4], const uint32_t (&a)[4], const uint8_t *vrows, int kr0,
                                      int gid, int tig)
{
    constexpr int NO = D / 8;
    uint32_t vw[4][NO / 4];
#pragma unroll
    for (int q = 0; q < 4; q++) {
        const int kr = kr0 + (q >> 1) * 8 + 2 * tig + (q & 1);
        const uint8_t *vr = vrows + kr * D;
        if constexpr (D == 128) {
            const uint4 u = *reinterpret_cast<const uint4 *>(vr + f8_swz<D>(kr, gid) * 16);
            vw[q][0] = u.x, vw[q][1] = u.y, vw[q][2] = u.z, vw[q][3] = u.w;
        } else {
            const uint2 u = *reinterpret_cast<const uint2 *>(vr + f8_swz<D>(kr, gid >> 1) * 16 + (gid & 1) * 8);
            vw[q][0] = u.x, vw[q][1] = u.y;
        }
    }
#pragma unroll
    for (int i = 0; i < NO / 4; i++) { // n-tiles 4i .. 4i + 3: byte j of word i
        const uint32_t x0 = __byte_perm(vw[0][i], vw[1][i], 0x5140);
        const uint32_t y0 = __byte_perm(vw[0][i], vw[1][i], 0x7362);
        const uint32_t x1 = __byte_perm(vw[2][i], vw[3][i], 0x5140);
        const uint32_t y1 = __byte_perm(vw[2][i], vw[3][i], 0x7362);
        mma_k16<true>(o[4 * i], a, e4m3x2_h2(x0), e4m3x2_h2(x1));
        mma_k16<true>(o[4 * i + 1], a, e4m3x2_h2_hi(x0), e4m3x2_h2_hi(x1));
        mma_k16<true>(o[4 * i + 2], a, e4m3x2_h2(y0), e4m3x2_h2(y1));
        mma_k16<true>(o[4 * i + 3], a, e4m3x2_h2_hi(y0), e4m3x2_h2_hi(y1));
    }
}

// Writes one output element of (token, head hq, dim d) from the merged softmax state (max M, sum L,
// weighted sum A): the final value when the context was not split, else this split's partial result.
__device__ __forceinline__ void attn_store(const AttnCommon &p, int split, int64_t tok, int hq, int D, int d,
                                           float M, float L, float A)
{
    if (p.n_splits == 1) {
        p.out[(tok * p.heads + hq) * D + d] = __float2bfloat16_rn(L > 0.0f ? A / L : 0.0f);
        return;
    }
    const int64_t idx = ((int64_t)split * p.n + tok) * p.heads + hq;
    p.part_acc[idx * D + d] = A;
    if (d == 0) {
        p.part_ml[idx * 2] = M;
        p.part_ml[idx * 2 + 1] = L;
    }
}

// Where a CTA of the tiled launch works (attn_tiled_kernel and attn_wgmma_kernel share its grid): its kv head and key
// split, the GQA group (p.group), the query tile's sequence, first token (tok0) and position (pos0: its tokens sit at
// pos0, pos0 + 1, ...), the tile's rows (tokens times group), this row block's first row r0 and its position pmin, and
// the split's keys [kbeg, kend) cut evenly in whole tiles of BN keys (n_kt of them).
struct TileBlock {
    int kvh, split, group, seq, pos0, tok0, rows, r0, pmin, kbeg, kend, n_kt;
};

// Fills b for this CTA's row block of BM rows (key tiles of BN); false when it lies past a shorter tile's rows
// (nothing to do).
// Last tiles first: in a prefill chunk they have the most keys, so the wave's tail is short. With heads_inner the
// kv heads of one row block are neighbours in x, so the longest tiles of every head start first; else the kv head
// is y (AttnOrder says which shapes take which).
template <int BM, int BN> __device__ __forceinline__ bool tile_block(const AttnTiledParams &p, TileBlock &b)
{
    int xr, kvh;
    if (p.heads_inner) {
        const int x = (int)blockIdx.x / p.kv_heads;
        kvh = (int)blockIdx.x - x * p.kv_heads;
        xr = (int)(gridDim.x / p.kv_heads) - 1 - x;
    } else {
        xr = (int)(gridDim.x - 1 - blockIdx.x);
        kvh = (int)blockIdx.y;
    }
    const int tile = xr / p.rb_per_tile;
    const int rb = xr - tile * p.rb_per_tile;
    const int split = blockIdx.z;
    const int group = p.group;
    // A decode step's tile t is its token t: that token's sequence and position are asked for together with the
    // tile (read again below when the guess is wrong), one dependent load less before the first block-table read.
    const int64_t guess = min((int64_t)tile, p.n - 1);
    int seq = p.tok_seq[guess];
    int pos0 = p.tok_pos[guess];
    const int tok0 = p.q_tiles[2 * tile];
    const int rows = p.q_tiles[2 * tile + 1] * group;
    const int r0 = rb * BM;
    if (r0 >= rows)
        return false;
    if (tok0 != guess) {
        seq = p.tok_seq[tok0];
        pos0 = p.tok_pos[tok0];
    }
    const int r_end = min(rows, r0 + BM);
    const int pmin = pos0 + r0 / group;          // position of the block's first row
    const int pmax = pos0 + (r_end - 1) / group; // and of its last
    // Keys [kbeg, kend) of this split: the block's context cut evenly, in whole key tiles.
    int kbeg = 0, kend = pmax + 1;
    if (p.n_splits > 1) {
        const int per = (kend + p.n_splits - 1) / p.n_splits;
        const int len = (per + BN - 1) / BN * BN;
        kbeg = split * len;
        kend = min(kend, kbeg + len);
    }
    const int n_kt = kend > kbeg ? (kend - kbeg + BN - 1) / BN : 0;
    b = TileBlock{kvh, split, group, seq, pos0, tok0, rows, r0, pmin, kbeg, kend, n_kt};
    return true;
}

// Whether the tiled kernel handles this head size (64 and 128).
bool attn_tiled_supported(int head_dim);

// Whether the current device can run the cluster form for this head size (sm_90+, a full cluster fits).
// A runtime query: callers ask once and pass the answer as AttnTiledParams::cluster_ok.
bool attn_tiled_cluster_fits(int head_dim);

// How many CTAs of the decode-tile form (no cluster; the 64-key form, or with short_tiles the form of more CTAs a
// SM) one SM holds at once, for this head size (registers and shared memory decide; 0 when the query fails).
// fp8: the forms for an fp8 cache (short_tiles: its register-capped 64-key form, heads of 128 only: 0 at 64). A
// runtime query: ask once.
int attn_tiled_decode_ctas_per_sm(int head_dim, bool short_tiles, bool fp8);
// How many CTAs of the prefill form of two m-tiles a warp (AttnTiledParams::prefill_mt2) one SM holds for head_dim
// (64 or 128; 0 otherwise, or where it cannot launch), its bf16- or (fp8) fp8-cache form. A runtime query: ask once.
int attn_tiled_prefill_mt2_ctas_per_sm(int head_dim, bool fp8);

// Whether the current device runs attn_wgmma.cu's prefill form for this head size and cache (sm_90 exactly, heads of
// 128, a bf16 cache, its shared memory fits). A runtime query: callers ask once.
bool attn_wgmma_fits(int head_dim, bool fp8);

// Enqueues attn_wgmma.cu's prefill form on the tiled launch's grid (128-row blocks, as attn_tiled_launch sets p up).
// Returns the cudaError_t of the launch as an int.
int attn_wgmma_launch(const AttnTiledParams &p, dim3 grid, cudaStream_t stream);

// Up to how many key splits the launch below merges inside the kernel (a thread block cluster per row
// block and kv head) for tiles of this shape; 0 when it never does (the combine kernel merges them).
int attn_tiled_cluster_splits(int head_dim, int max_tile_tokens, int group, bool device_ok);

// CTAs the launch below uses for one key split: n_tiles * row blocks per tile * kv_heads.
int64_t attn_tiled_ctas(int head_dim, int64_t n_tiles, int max_tile_tokens, int group, int kv_heads);

// Enqueues the tiled kernel over n_tiles query tiles of at most max_tile_tokens tokens (host-known,
// so the grid is fixed for graph capture). Returns the cudaError_t of the launch as an int. *merged
// (never NULL) says whether the key splits were merged in the kernel (output final, no combine needed).
int attn_tiled_launch(const AttnTiledParams &p, int head_dim, int64_t n_tiles, int max_tile_tokens,
                      cudaStream_t stream, bool *merged);

// attn_decode_seq.cu's form: one CTA per decode token (its sequence) and part of its kv heads. Whether it runs here for
// these shapes (a bf16 or (fp8) an fp8 cache, heads of 64 or 128, at most 8 kv heads, groups of at most 16, its shared
// memory for 8 kv heads fits): a runtime query, ask once.
bool attn_seq_fits(int head_dim, int kv_heads, int group, bool fp8);
// Enqueues it over n_tiles query tiles of one token each (empty padding tiles allowed), without key splits
// (p.n_splits must be 1), each token's kv heads split over head_parts CTAs (a divisor of p.kv_heads: 1 = all in one).
// Returns the cudaError_t of the launch as an int.
int attn_seq_launch(const AttnTiledParams &p, int head_dim, int64_t n_tiles, int head_parts, cudaStream_t stream);

} // namespace ss

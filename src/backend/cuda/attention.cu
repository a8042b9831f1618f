// attention.cu — causal attention over the paged KV cache, for decode and prefill tokens alike.
// One CTA per (token, kv head, chunk of up to GMAX query heads of its group, split of the context):
// each K/V row is read once for all query heads of the group (GQA/MQA). Lanes are grouped LPK to a key
// (8 head dims per lane, one 16-byte load); online softmax in the log2 domain, fp32 throughout. Long
// contexts with few tokens are split over CTAs (flash-decoding) and merged by a combine kernel.
// ss_cuda_attention also dispatches prefill chunks and large decode batches to the tensor-core kernel
// of attn_tiled.cu (rule at tiled_wanted; SS_ATTN_FORCE=old|tiled in the environment overrides it, for
// benchmarks), sharing the split-K workspace and the combine kernel with it (on sm_90 the tiled kernel
// merges the splits of decode tiles itself, in a thread block cluster, when they fit one — except for long
// contexts, whose split count fills whole waves instead: attn_splits.c). On sm_90 with a bf16 cache and heads of 128,
// the tiled launch hands prompt chunks to attn_wgmma.cu's form (ss_attn_prefill_wg).
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "backend/cuda/attn_splits.h"
#include "backend/cuda/attn_tiled.cuh"
#include "backend/cuda/common.cuh"
#include "backend/cuda/cuda_kernels.h"
#include "backend/cuda/kv_fp8.cuh"

namespace ss {
namespace {

constexpr int kWarps = 4;
constexpr int kMaxSplits = SS_ATTN_MAX_SPLITS;

// Each token cuts its own context into n_splits even parts.
struct AttnParams : AttnCommon {
    int head_dim, hchunks;
};

__device__ __forceinline__ float merge_scale(float m, float mn)
{
    return mn == -INFINITY ? 0.0f : exp2f(m - mn);
}

// 8 head dims of one key's K and V rows as loaded (fp8: the low 8 bytes of k and v, and the rows' scales).
struct KvBits8 {
    uint4 k, v;
    float ks, vs;
};

// FP8: the caches hold the fp8 blocks of kv_fp8.cuh (decoded to f32 here), else bf16.
template <int LPK, int GMAX, bool FP8> __global__ void __launch_bounds__(kWarps * 32) attn_kernel(const AttnParams p)
{
    constexpr int KPW = 32 / LPK; // keys in flight per warp
    constexpr int DMAX = LPK * 8;
    __shared__ float s_acc[kWarps][GMAX][DMAX];
    __shared__ float s_m[kWarps][GMAX];
    __shared__ float s_l[kWarps][GMAX];

    const int64_t tok = blockIdx.x;
    const int kvh = blockIdx.y / p.hchunks;
    const int hc = blockIdx.y - kvh * p.hchunks;
    const int split = blockIdx.z;
    const int D = p.head_dim;
    const int h0 = kvh * p.group + hc * GMAX;
    const int ng = min(GMAX, p.group - hc * GMAX);
    const int lane = threadIdx.x & 31;
    const int warp = threadIdx.x >> 5;
    const int kl = lane % LPK;
    const int kg = lane / LPK;
    const int d0 = kl * 8;
    const bool dim_ok = d0 < D;

    const int seq = p.tok_seq[tok];
    const int ctx = p.tok_pos[tok] + 1;
    int kbeg = 0, kend = ctx;
    if (p.n_splits > 1) { // this token's split: whole CTA iterations (kWarps * KPW keys), later ones may be empty
        constexpr int kpi = kWarps * KPW;
        const int len = ((ctx + p.n_splits - 1) / p.n_splits + kpi - 1) / kpi * kpi;
        kbeg = split * len;
        kend = min(ctx, kbeg + len);
    }

    float q[GMAX][8];
    float m[GMAX], l[GMAX], acc[GMAX][8];
    const bf16 *qrow = p.q + tok * p.q_stride + (int64_t)h0 * D + d0;
#pragma unroll
    for (int g = 0; g < GMAX; g++) {
        if (g < ng && dim_ok) {
            unpack8(*reinterpret_cast<const uint4 *>(qrow + (int64_t)g * D), q[g]);
#pragma unroll
            for (int d = 0; d < 8; d++)
                q[g][d] *= p.scale_log2;
        } else {
#pragma unroll
            for (int d = 0; d < 8; d++)
                q[g][d] = 0.0f;
        }
        m[g] = -INFINITY;
        l[g] = 0.0f;
#pragma unroll
        for (int d = 0; d < 8; d++)
            acc[g][d] = 0.0f;
    }

    // The lanes of one key group run the same trip count; their shuffles use only their own mask.
    const unsigned gmask = LPK == 32 ? FULL_MASK : (((1u << LPK) - 1u) << (kg * LPK));
    const int32_t *bt = p.block_tables + (int64_t)seq * p.max_blocks;
    const char *kbytes = reinterpret_cast<const char *>(p.kc), *vbytes = reinterpret_cast<const char *>(p.vc);
    auto load = [&](int jj, KvBits8 &r) {
        const int64_t blk = bt[jj / p.block_size];
        const int off = jj % p.block_size;
        if constexpr (FP8) {
            const int64_t ro = kv_fp8_row(blk, off, kvh, p.kv_block_bytes, p.kv_heads, D) + d0;
            const uint2 k2 = *reinterpret_cast<const uint2 *>(kbytes + ro);
            const uint2 v2 = *reinterpret_cast<const uint2 *>(vbytes + ro);
            r.k = make_uint4(k2.x, k2.y, 0u, 0u);
            r.v = make_uint4(v2.x, v2.y, 0u, 0u);
            const int64_t so = kv_fp8_scale(blk, off, kvh, p.kv_block_bytes, p.block_size, p.kv_heads, D);
            r.ks = *reinterpret_cast<const float *>(kbytes + so);
            r.vs = *reinterpret_cast<const float *>(vbytes + so);
        } else {
            const int64_t slot = blk * p.block_size + off;
            const int64_t ro = (slot * p.kv_heads * D + (int64_t)kvh * D + d0) * (int64_t)sizeof(bf16);
            r.k = *reinterpret_cast<const uint4 *>(kbytes + ro);
            r.v = *reinterpret_cast<const uint4 *>(vbytes + ro);
        }
    };
    const KvBits8 zero8 = {make_uint4(0, 0, 0, 0), make_uint4(0, 0, 0, 0), 0.0f, 0.0f};

    int j = kbeg + warp * KPW + kg;
    KvBits8 nx = zero8;
    if (j < kend && dim_ok)
        load(j, nx);
    while (j < kend) {
        const KvBits8 cur = nx;
        const int jn = j + kWarps * KPW;
        if (jn < kend && dim_ok) // prefetch the next key while this one is scored
            load(jn, nx);
        float kf[8], vf[8];
        if constexpr (FP8) {
            e4m3x4_to_f32(cur.k.x, cur.ks, kf);
            e4m3x4_to_f32(cur.k.y, cur.ks, kf + 4);
            e4m3x4_to_f32(cur.v.x, cur.vs, vf);
            e4m3x4_to_f32(cur.v.y, cur.vs, vf + 4);
        } else {
            unpack8(cur.k, kf);
            unpack8(cur.v, vf);
        }
#pragma unroll
        for (int g = 0; g < GMAX; g++) {
            if (g < ng) {
                float s = 0.0f;
#pragma unroll
                for (int d = 0; d < 8; d++)
                    s = fmaf(q[g][d], kf[d], s);
#pragma unroll
                for (int o = LPK / 2; o > 0; o >>= 1)
                    s += __shfl_xor_sync(gmask, s, o);
                const float mn = fmaxf(m[g], s);
                const float corr = exp2f(m[g] - mn);
                const float pj = exp2f(s - mn);
                l[g] = l[g] * corr + pj;
#pragma unroll
                for (int d = 0; d < 8; d++)
                    acc[g][d] = fmaf(pj, vf[d], acc[g][d] * corr);
                m[g] = mn;
            }
        }
        j = jn;
    }

    // Merge the key groups of the warp (lanes that differ in the bits above log2(LPK)).
#pragma unroll
    for (int o = LPK; o < 32; o <<= 1) {
#pragma unroll
        for (int g = 0; g < GMAX; g++) {
            if (g < ng) {
                const float m2 = __shfl_xor_sync(FULL_MASK, m[g], o);
                const float l2 = __shfl_xor_sync(FULL_MASK, l[g], o);
                const float mn = fmaxf(m[g], m2);
                const float c1 = merge_scale(m[g], mn), c2 = merge_scale(m2, mn);
                l[g] = l[g] * c1 + l2 * c2;
#pragma unroll
                for (int d = 0; d < 8; d++) {
                    const float a2 = __shfl_xor_sync(FULL_MASK, acc[g][d], o);
                    acc[g][d] = acc[g][d] * c1 + a2 * c2;
                }
                m[g] = mn;
            }
        }
    }
    if (kg == 0) {
#pragma unroll
        for (int g = 0; g < GMAX; g++) {
            if (g < ng) {
                if (kl == 0) {
                    s_m[warp][g] = m[g];
                    s_l[warp][g] = l[g];
                }
                if (dim_ok) {
#pragma unroll
                    for (int d = 0; d < 8; d++)
                        s_acc[warp][g][d0 + d] = acc[g][d];
                }
            }
        }
    }
    __syncthreads();

    // Merge the warps; write the output (one split) or this split's partial result.
    for (int e = threadIdx.x; e < ng * D; e += blockDim.x) {
        const int g = e / D;
        const int d = e - g * D;
        float M = -INFINITY;
#pragma unroll
        for (int w = 0; w < kWarps; w++)
            M = fmaxf(M, s_m[w][g]);
        float L = 0.0f, A = 0.0f;
        if (M != -INFINITY) {
#pragma unroll
            for (int w = 0; w < kWarps; w++) {
                const float c = exp2f(s_m[w][g] - M);
                L += s_l[w][g] * c;
                A += s_acc[w][g][d] * c;
            }
        }
        attn_store(p, split, tok, h0 + g, D, d, M, L, A);
    }
}

// One block per (token, head), at least kMaxSplits threads: merges the splits' partial results. Thread s
// reads split s's (max, sum) pair, one thread turns them into weights, then each thread sums its elements
// over the splits: two dependent trips to memory (one pair per loop iteration made one per split).
constexpr int kCombineThreads = 128;
static_assert(kCombineThreads >= kMaxSplits, "the combine kernel reads one split per thread");
__global__ void __launch_bounds__(kCombineThreads) attn_combine_kernel(const AttnParams p)
{
    __shared__ float sm[kMaxSplits], sl[kMaxSplits], sc[kMaxSplits];
    __shared__ float s_total;
    pdl_enter(); // lets the next kernel (a GEMV, PDL-launched) start streaming its weights meanwhile
    const int64_t tok = blockIdx.x;
    const int h = blockIdx.y;
    const int D = p.head_dim, ns = p.n_splits;
    const int64_t stride = p.n * p.heads; // between splits, in (token, head) items
    const int64_t item = tok * p.heads + h;
    if (threadIdx.x < ns) {
        const float2 ml = reinterpret_cast<const float2 *>(p.part_ml)[threadIdx.x * stride + item];
        sm[threadIdx.x] = ml.x;
        sl[threadIdx.x] = ml.y;
    }
    __syncthreads();
    if (threadIdx.x == 0) {
        float M = -INFINITY, L = 0.0f;
        for (int s = 0; s < ns; s++)
            if (sl[s] > 0.0f)
                M = fmaxf(M, sm[s]);
        for (int s = 0; s < ns; s++) {
            sc[s] = sl[s] > 0.0f ? exp2f(sm[s] - M) : 0.0f;
            if (sl[s] > 0.0f)
                L = fmaf(sl[s], sc[s], L); // one rounding, as the per-thread loop before it had
        }
        s_total = L;
    }
    __syncthreads();
    const float L = s_total;
    for (int d = threadIdx.x; d < D; d += blockDim.x) {
        float A = 0.0f;
#pragma unroll 4
        for (int s = 0; s < ns; s++)
            if (sl[s] > 0.0f)
                A += p.part_acc[(s * stride + item) * D + d] * sc[s];
        p.out[item * D + d] = __float2bfloat16_rn(L > 0.0f ? A / L : 0.0f);
    }
}

template <int LPK, int GMAX> void launch_attn(const AttnParams &p, bool fp8, dim3 grid, cudaStream_t s)
{
    if (fp8)
        attn_kernel<LPK, GMAX, true><<<grid, kWarps * 32, 0, s>>>(p);
    else
        attn_kernel<LPK, GMAX, false><<<grid, kWarps * 32, 0, s>>>(p);
}

template <int LPK> void launch_attn_g(int gmax, const AttnParams &p, bool fp8, dim3 grid, cudaStream_t s)
{
    switch (gmax) {
    case 1: launch_attn<LPK, 1>(p, fp8, grid, s); break;
    case 2: launch_attn<LPK, 2>(p, fp8, grid, s); break;
    case 4: launch_attn<LPK, 4>(p, fp8, grid, s); break;
    default: launch_attn<LPK, 8>(p, fp8, grid, s); break;
    }
}

// Tensor-core kernel or CUDA-core kernel, from host-known values only (decode steps are replayed from
// CUDA graphs). The tiled kernel reads each K/V tile once for a whole query tile and GQA group and
// does the dot products on the tensor cores: it wins for prefill tiles (8+ tokens) and, once there
// are about as many (tile, kv head) units as SMs, for decode batches too. Few decode tokens with long
// contexts stay on the CUDA-core kernel, whose split-K keeps many CTAs busy with little padding.
bool tiled_wanted(const ss_cuda_attn_args *a)
{
    if (!a->q_tiles || a->n_tiles <= 0 || a->max_tile_tokens <= 0 || a->max_tile_tokens > 64 ||
        !attn_tiled_supported(a->head_dim) || !aligned16(a->out))
        return false;
    const char *force = getenv("SS_ATTN_FORCE"); // benchmark switch, see the file header
    if (force && strcmp(force, "old") == 0)
        return false;
    if (force && strcmp(force, "tiled") == 0)
        return true;
    /* H200, 32/8 heads x 128: the tiled kernel won every measured case, decode batch 1 (8 vs 15 us at
     * context 128) through batch 256 (87% vs 50% of copy bandwidth) and prefill (18x) */
    return true;
}

} // namespace
} // namespace ss

using namespace ss;

extern "C" int ss_cuda_attn_cluster_ok(int head_dim)
{
    const char *sw = getenv("SS_ATTN_CLUSTER"); // benchmark switch: 0 = always the combine kernel
    if (sw && strcmp(sw, "0") == 0)
        return 0;
    return attn_tiled_cluster_fits(head_dim) ? 1 : 0;
}

extern "C" int ss_cuda_attn_decode_ctas_per_sm(int head_dim, int short_tiles, int fp8)
{
    return attn_tiled_decode_ctas_per_sm(head_dim, short_tiles != 0, fp8 != 0);
}

extern "C" int ss_cuda_attn_prefill_mt2_ctas_per_sm(int head_dim, int fp8)
{
    return attn_tiled_prefill_mt2_ctas_per_sm(head_dim, fp8 != 0);
}

extern "C" int ss_cuda_attn_prefill_wg_ok(int head_dim, int fp8)
{
    return attn_wgmma_fits(head_dim, fp8 != 0) ? 1 : 0;
}

extern "C" int ss_cuda_attn_seq_ok(int head_dim, int fp8)
{
    return attn_seq_fits(head_dim, 8, 1, fp8 != 0) ? 1 : 0;
}

extern "C" int ss_cuda_attention(void *stream, const ss_cuda_attn_args *a)
{
    if (a->n <= 0)
        return 0;
    const int D = a->head_dim;
    if (D <= 0 || D % 8 != 0 || D > 256 || a->kv_heads <= 0 || a->heads % a->kv_heads != 0 || a->block_size <= 0 ||
        a->q_stride % 8 != 0 || !aligned16(a->q) || !aligned16(a->k_cache) || !aligned16(a->v_cache) ||
        (a->kv_fp8 && D % 16 != 0))
        return (int)cudaErrorInvalidValue;
    const bool fp8 = a->kv_fp8 != 0;
    cudaStream_t s = (cudaStream_t)stream;

    AttnParams p;
    memset(&p, 0, sizeof p);
    p.out = (bf16 *)a->out;
    p.q = (const bf16 *)a->q;
    p.q_stride = a->q_stride;
    p.kc = (const bf16 *)a->k_cache;
    p.vc = (const bf16 *)a->v_cache;
    p.kv_fp8 = fp8;
    p.kv_block_bytes = fp8 ? kv_fp8_block_bytes(a->block_size, a->kv_heads, D) : 0;
    p.tok_seq = a->tok_seq;
    p.tok_pos = a->tok_pos;
    p.block_tables = a->block_tables;
    p.max_blocks = a->max_blocks;
    p.block_size = a->block_size;
    p.heads = a->heads;
    p.kv_heads = a->kv_heads;
    p.head_dim = D;
    p.group = a->heads / a->kv_heads;
    p.scale_log2 = a->scale * 1.4426950408889634f;
    p.n = a->n;

    int st;
    bool merged = false; // the splits were merged by the attention kernel itself
    // A step of decode tokens beside prompt chunks, its tiles grouped (a->n_short_tiles): when the chunks alone would
    // take the wgmma form, which the decode tiles keep from the whole launch, the groups run as two launches (the
    // chunks' first: their CTAs are the long ones) with one split count and one combine; each (split, token) of the
    // workspace is written by one of them.
    ss_cuda_attn_args lg = *a; // the long group, its own tokens counted (ss_attn_prefill_wg's rule)
    lg.q_tiles = a->q_tiles ? a->q_tiles + 2 * (int64_t)a->n_short_tiles : NULL;
    lg.n_tiles = a->n_tiles - a->n_short_tiles;
    lg.n = a->n - a->short_tokens;
    const char *grp = getenv("SS_ATTN_GROUPS"); // benchmark switch: 0 = one launch for every tile, as before
    if (a->n_short_tiles > 0 && lg.n_tiles > 0 && !(grp && strcmp(grp, "0") == 0) && tiled_wanted(a) &&
        !ss_attn_prefill_wg(a) && ss_attn_prefill_wg(&lg)) {
        ss_cuda_attn_args w = lg; // the workspace bounds the splits for all of the step's tokens
        w.n = a->n;
        const int64_t ctas = attn_tiled_ctas(D, lg.n_tiles, a->max_tile_tokens, p.group, a->kv_heads);
        p.n_splits = (int)ss_attn_pick_splits(&w, ss_attn_prefill_split_base(&w, ctas, lg.n_tiles), 0);
        p.part_acc = (float *)a->workspace;
        p.part_ml = p.part_acc + (int64_t)p.n_splits * a->n * a->heads * D;
        AttnTiledParams t;
        memset(&t, 0, sizeof t);
        static_cast<AttnCommon &>(t) = p;
        t.q_tiles = lg.q_tiles;
        t.order = kOrderByShape;
        t.prefill_wg = true;
        bool m1 = false, m2 = false;
        st = attn_tiled_launch(t, D, lg.n_tiles, a->max_tile_tokens, s, &m1);
        if (st == 0) { // the decode tiles: no clusters (they would merge and store their own results)
            t.q_tiles = a->q_tiles;
            t.prefill_wg = false;
            t.prefill_mt2 = false;
            st = attn_tiled_launch(t, D, a->n_short_tiles, a->max_short_tokens, s, &m2);
        }
        if (st != 0 || p.n_splits == 1)
            return st;
        const cudaError_t e =
            launch_pdl(attn_combine_kernel, dim3((unsigned)a->n, (unsigned)a->heads), dim3(kCombineThreads), 0, s, p);
        return e != cudaSuccess ? (int)e : launch_status();
    }
    if (tiled_wanted(a)) {
        if (ss_attn_seq_form(a)) { // a CTA per sequence (attn_decode_seq.cu): no key splits
            p.n_splits = 1;
            AttnTiledParams t;
            memset(&t, 0, sizeof t);
            static_cast<AttnCommon &>(t) = p;
            t.q_tiles = a->q_tiles;
            return attn_seq_launch(t, D, a->n_tiles, ss_attn_seq_head_parts(a), s);
        }
        const int64_t ctas = attn_tiled_ctas(D, a->n_tiles, a->max_tile_tokens, p.group, a->kv_heads);
        // decode tiles (the shape that may merge in clusters) of long contexts: ss_attn_wave_splits, no clusters
        const char *lw = getenv("SS_ATTN_LONG"); // benchmark switch: 0 = the short-context rule everywhere
        const bool decode_shape = attn_tiled_cluster_splits(D, a->max_tile_tokens, p.group, true) > 0;
        const bool wave = decode_shape && a->max_seq_len >= SS_ATTN_LONG_CONTEXT && !(lw && strcmp(lw, "0") == 0);
        const int64_t forced = decode_shape ? ss_attn_forced_splits(a) : 0; // benchmark switch SS_ATTN_SPLITS
        const bool cluster_ok = a->cluster_ok != 0 && !wave && forced == 0;
        const int cluster_max = attn_tiled_cluster_splits(D, a->max_tile_tokens, p.group, cluster_ok);
        int64_t n_splits = forced > 0     ? forced
                           : wave         ? ss_attn_wave_splits(a, ctas)
                           : decode_shape ? ss_attn_pick_splits(a, ctas, cluster_max)
                                          : ss_attn_pick_splits(a, ss_attn_prefill_split_base(a, ctas, a->n_tiles),
                                                                cluster_max);
        // the decode form of more CTAs a SM (a bf16 cache's 32-key form, an fp8 cache's dense form), its own splits
        const int64_t dense_splits = decode_shape ? ss_attn_dense_splits(a, ctas, n_splits, forced > 0) : 0;
        if (dense_splits > 0)
            n_splits = dense_splits;
        p.n_splits = (int)n_splits;
        p.part_acc = (float *)a->workspace;
        p.part_ml = p.part_acc + n_splits * a->n * a->heads * D;
        AttnTiledParams t;
        memset(&t, 0, sizeof t);
        static_cast<AttnCommon &>(t) = p;
        t.q_tiles = a->q_tiles;
        t.cluster_ok = cluster_ok;
        const char *order = getenv("SS_ATTN_ORDER"); // benchmark switch: heads_inner | heads_outer forces the grid order
        t.order = !order                              ? kOrderByShape
                  : strcmp(order, "heads_inner") == 0 ? kOrderHeadsInner
                  : strcmp(order, "heads_outer") == 0 ? kOrderHeadsOuter
                                                      : kOrderByShape;
        t.short_tiles = dense_splits > 0;
        t.prefill_mt2 = ss_attn_prefill_mt2(a) != 0;
        t.prefill_wg = ss_attn_prefill_wg(a) != 0;
        st = attn_tiled_launch(t, D, a->n_tiles, a->max_tile_tokens, s, &merged);
    } else {
        const int gmin = p.group < 8 ? p.group : 8;
        int gmax = 1;
        while (gmax < gmin)
            gmax <<= 1;
        p.hchunks = (p.group + gmax - 1) / gmax;
        int lpk = 2;
        while (lpk * 8 < D)
            lpk <<= 1;
        // Split the context when the (token, head-chunk) CTAs alone would leave the GPU idle.
        const int64_t n_splits = ss_attn_pick_splits(a, a->n * a->kv_heads * p.hchunks, 0);
        p.n_splits = (int)n_splits;
        p.part_acc = (float *)a->workspace;
        p.part_ml = p.part_acc + n_splits * a->n * a->heads * D;
        const dim3 grid((unsigned)a->n, (unsigned)(a->kv_heads * p.hchunks), (unsigned)n_splits);
        switch (lpk) {
        case 2: launch_attn_g<2>(gmax, p, fp8, grid, s); break;
        case 4: launch_attn_g<4>(gmax, p, fp8, grid, s); break;
        case 8: launch_attn_g<8>(gmax, p, fp8, grid, s); break;
        case 16: launch_attn_g<16>(gmax, p, fp8, grid, s); break;
        default: launch_attn_g<32>(gmax, p, fp8, grid, s); break;
        }
        st = launch_status();
    }
    if (st != 0 || p.n_splits == 1 || merged)
        return st;
    // PDL-launched: the tiled attention lets it in only at its end (before that, a PDL-launched combine
    // made batch 8 20% slower, session 4).
    const cudaError_t e =
        launch_pdl(attn_combine_kernel, dim3((unsigned)a->n, (unsigned)a->heads), dim3(kCombineThreads), 0, s, p);
    return e != cudaSuccess ? (int)e : launch_status();
}

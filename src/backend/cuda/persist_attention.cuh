// persist_attention.cuh — the persistent decode kernel's attention: (kv head, key split) items, q/k norms,
// rope, the new token's cache store (bf16 or fp8 rows), softmax · V, the merge of a head's splits. Included by
// decode_persist.cu.
#pragma once
#include "backend/cuda/kv_fp8.cuh"
#include "backend/cuda/persist_common.cuh"

namespace ss {
namespace {

// Threads that merge one output of merge_one (below): the largest power of two with that many per output
// fitting the consumers, at most the split count. (The launcher checks merge_one's condition with it.)
__host__ __device__ __forceinline__ int merge_one_threads(int splits, int outs)
{
    int P = 1;
    while (P < 32 && 2 * P <= splits && 2 * P * outs <= kConsumers)
        P *= 2;
    return P;
}

#if !defined(__CUDA_ARCH__) || __CUDA_ARCH__ >= 900

// ---------------------------------------------------------------- attention

// Key j's row of kv head h in a layer's cache.
__device__ __forceinline__ const bf16 *kv_row(const Params &p, const int *btab, const bf16 *cache, int j, int h)
{
    const int bs = p.block_size;
    const int64_t slot = (int64_t)btab[j / bs] * bs + j % bs;
    return cache + slot * p.kv_heads * p.head_dim + (int64_t)h * p.head_dim;
}

// Where key j's row of kv head h starts in a layer's fp8 cache, and its scale (kv_fp8.cuh).
__device__ __forceinline__ int64_t kv8_row(const Params &p, const int *btab, int j, int h)
{
    return kv_fp8_row(btab[j / p.block_size], j % p.block_size, h, p.kv_block_bytes, p.kv_heads, p.head_dim);
}
__device__ __forceinline__ int64_t kv8_scale(const Params &p, const int *btab, int j, int h)
{
    return kv_fp8_scale(btab[j / p.block_size], j % p.block_size, h, p.kv_block_bytes, p.block_size, p.kv_heads,
                        p.head_dim);
}

// This lane's 4 dims of a K or V row (zeros when the lane holds none: head_dim < 128).
__device__ __forceinline__ void lane_dims(const bf16 *row, int lane, bool on, float (&v)[4])
{
    const uint2 raw = on ? *reinterpret_cast<const uint2 *>(row + lane * 4) : make_uint2(0, 0);
    v[0] = bf16_lo(raw.x), v[1] = bf16_hi(raw.x), v[2] = bf16_lo(raw.y), v[3] = bf16_hi(raw.y);
}

// The same from an fp8 row (e4m3 bytes) and its scale, decoded in f32 as the op-by-op attention decodes it.
__device__ __forceinline__ void lane_dims8(const uint8_t *row, float scale, int lane, bool on, float (&v)[4])
{
    const uint32_t raw = on ? *reinterpret_cast<const uint32_t *>(row + lane * 4) : 0u;
    e4m3x4_to_f32(raw, on ? scale : 0.0f, v);
}

// The new token's K or V row (lane L: dims 4L..4L+3, zeros without dims) as the fp8 cache stores it, in the f32
// arithmetic of kv_store_fp8_kernel (so the same bytes): returns this lane's 4 e4m3 bytes and sets *scale; v
// becomes their decoded values, which is what the op-by-op attention reads back from the cache.
__device__ __forceinline__ uint32_t lane_quant8(float (&v)[4], float *scale)
{
    float a = 0.0f;
#pragma unroll
    for (int e = 0; e < 4; e++)
        a = fmaxf(a, fabsf(v[e]));
    a = warp_reduce(a, MaxOp());
    const float inv = a > 0.0f ? __fdiv_rn(448.0f, a) : 0.0f; // IEEE divisions, as the store kernel's
    const uint32_t q = (uint32_t)e4m3x2(v[0] * inv, v[1] * inv) | ((uint32_t)e4m3x2(v[2] * inv, v[3] * inv) << 16);
    *scale = __fdiv_rn(a, 448.0f);
    e4m3x4_to_f32(q, *scale, v);
    return q;
}

constexpr int kKeyGroup = 8;   // keys whose scores an attention warp reduces side by side
constexpr int kMergeLoads = 16; // split partials loaded at once by the merge (one trip for 16 splits)

// (Out of line: inlined, it made the kernel spill at its 168-register cap.)
// The merge of a kv head's splits in three trips instead of one per kMergeLoads splits per output
// (used above 16 splits, see the launcher; session 13's 70B trace at tp 4: the chunked merge of 32 splits
// of a group of 8 took 14 us a layer): every split's max and sum at once into shared memory, the
// weights per q head by a warp, then each thread a float4 of dims over all splits, 8 splits' loads in
// flight at a time. scratch: the item's P·V area, free by now (the launcher checks it holds
// grp * (2 * splits + 1) floats).
__device__ __noinline__ void merge_wide(const Params &p, int h, int grp, int stride, float *scratch)
{
    const int tid = threadIdx.x, warp = tid >> 5, lane = tid & 31, hd = p.head_dim, S = p.splits;
    float *mx = scratch, *wl = scratch + grp * S, *den = scratch + 2 * grp * S; // [grp][S], [grp][S], [grp]
    const float *head = p.partials + (int64_t)h * grp * S * stride;
    for (int u = tid; u < grp * S; u += kConsumers) {
        mx[u] = __ldcg(head + (int64_t)u * stride + hd);
        wl[u] = __ldcg(head + (int64_t)u * stride + hd + 1);
    }
    consumer_sync();
    for (int j = warp; j < grp; j += kWarps) { // S <= 32: a lane per split
        const float m = lane < S ? mx[j * S + lane] : -FLT_MAX;
        const float big = warp_reduce(m, MaxOp());
        const float w = m == -FLT_MAX ? 0.0f : __expf(m - big); // empty splits weigh nothing
        const float d = warp_reduce(lane < S ? w * wl[j * S + lane] : 0.0f, SumOp());
        __syncwarp();
        if (lane < S)
            wl[j * S + lane] = w;
        if (lane == 0)
            den[j] = d;
    }
    consumer_sync();
    constexpr int kAhead = 8;
    const int q4 = hd / 4;
    for (int g = tid; g < grp * q4; g += kConsumers) {
        const int j = g / q4, d4 = g % q4;
        const float *base = head + (int64_t)j * S * stride + d4 * 4;
        float4 acc = make_float4(0.0f, 0.0f, 0.0f, 0.0f);
        for (int s0 = 0; s0 < S; s0 += kAhead) {
            float4 v[kAhead];
#pragma unroll
            for (int t = 0; t < kAhead; t++)
                v[t] = s0 + t < S ? __ldcg(reinterpret_cast<const float4 *>(base + (int64_t)(s0 + t) * stride))
                                  : make_float4(0.0f, 0.0f, 0.0f, 0.0f);
#pragma unroll
            for (int t = 0; t < kAhead; t++) {
                const float w = s0 + t < S ? wl[j * S + s0 + t] : 0.0f;
                acc.x = fmaf(w, v[t].x, acc.x), acc.y = fmaf(w, v[t].y, acc.y);
                acc.z = fmaf(w, v[t].z, acc.z), acc.w = fmaf(w, v[t].w, acc.w);
            }
        }
        const float inv = 1.0f / den[j];
        bf16 *o = p.attn + (int64_t)(h * grp + j) * hd + d4 * 4;
        o[0] = __float2bfloat16_rn(acc.x * inv), o[1] = __float2bfloat16_rn(acc.y * inv);
        o[2] = __float2bfloat16_rn(acc.z * inv), o[3] = __float2bfloat16_rn(acc.w * inv);
    }
}

constexpr int kOneLoads = 8; // splits a thread of merge_one loads at once (16 made the kernel spill)

// Two online-softmax states (max, denominator, four dims of the numerator) as one, over the common max.
__device__ __forceinline__ void merge_state(float &m, float &den, float4 &acc, float m2, float den2, float4 acc2)
{
    const float big = fmaxf(m, m2);
    const float a = m == -FLT_MAX ? 0.0f : __expf(m - big), b = m2 == -FLT_MAX ? 0.0f : __expf(m2 - big);
    den = den * a + den2 * b;
    acc.x = acc.x * a + acc2.x * b, acc.y = acc.y * a + acc2.y * b;
    acc.z = acc.z * a + acc2.z * b, acc.w = acc.w * a + acc2.w * b;
    m = big;
}

// The merge of a kv head's splits with every load of a round in flight (session 15; inlined into the item:
// as a call it made the kernel spill): an output's four dims are merged by P threads of one warp (P from
// merge_one_threads), each loading its share of the splits, kOneLoads at a time. The statistics are the same
// for every output of a q head: lane s of a warp loads split s's (all of a warp's outputs belong to one q
// head, which the launcher checks: head_dim / 4 x P is a multiple of 32, at most 32 splits) and the others
// read them by shuffle. The P states then meet through shuffles. 8B at tp 2 (4 q heads a kv head, 32
// splits): two threads of 16 splits, two rounds of loads, where merge_wide makes five trips (its
// statistics, then 8 splits at a time; ~6 us a layer in session 15's trace).
__device__ __forceinline__ void merge_one(const Params &p, int h, int grp, int stride)
{
    const int tid = threadIdx.x, lane = tid & 31, hd = p.head_dim, S = p.splits, q4 = hd / 4, outs = grp * q4;
    const int P = merge_one_threads(S, outs), per = (S + P - 1) / P, part = tid % P;
    const float *head = p.partials + (int64_t)h * grp * S * stride;
    // Every thread runs every round (the shuffles need the whole warp); a thread past the outputs merges nothing.
    for (int t0 = 0; t0 < outs * P; t0 += kConsumers) {
        const int o = (t0 + tid) / P;
        const bool on = o < outs;
        const int j = on ? o / q4 : 0, d4 = on ? o % q4 : 0;
        const float *base = head + (int64_t)j * S * stride + d4 * 4;
        const float2 mine = on && lane < S ? __ldcg(reinterpret_cast<const float2 *>(head + ((int64_t)j * S + lane) * stride + hd))
                                           : make_float2(-FLT_MAX, 0.0f); // split `lane`'s max and sum
        float m = -FLT_MAX, den = 0.0f;
        float4 acc = make_float4(0.0f, 0.0f, 0.0f, 0.0f);
        for (int r0 = 0; r0 < per; r0 += kOneLoads) {
            float4 v[kOneLoads];
#pragma unroll
            for (int t = 0; t < kOneLoads; t++) { // every load of the round in flight at once
                const int s = part * per + r0 + t;
                v[t] = on && r0 + t < per && s < S ? __ldcg(reinterpret_cast<const float4 *>(base + (int64_t)s * stride))
                                                   : make_float4(0.0f, 0.0f, 0.0f, 0.0f);
            }
            float big = m;
#pragma unroll
            for (int t = 0; t < kOneLoads; t++) {
                const int s = part * per + r0 + t;
                const float ms = __shfl_sync(0xffffffffu, mine.x, s & 31);
                big = r0 + t < per && s < S ? fmaxf(big, ms) : big;
            }
            const float rescale = m == -FLT_MAX ? 0.0f : __expf(m - big);
            den *= rescale, acc.x *= rescale, acc.y *= rescale, acc.z *= rescale, acc.w *= rescale;
            m = big;
#pragma unroll
            for (int t = 0; t < kOneLoads; t++) {
                const int s = part * per + r0 + t;
                const float ms = __shfl_sync(0xffffffffu, mine.x, s & 31), ls = __shfl_sync(0xffffffffu, mine.y, s & 31);
                // empty splits (and slots past this thread's share) weigh nothing
                const float w = r0 + t >= per || s >= S || ms == -FLT_MAX ? 0.0f : __expf(ms - big);
                den = fmaf(w, ls, den);
                acc.x = fmaf(w, v[t].x, acc.x), acc.y = fmaf(w, v[t].y, acc.y);
                acc.z = fmaf(w, v[t].z, acc.z), acc.w = fmaf(w, v[t].w, acc.w);
            }
        }
        for (int off = P / 2; off > 0; off /= 2) { // the P threads' states, lanes tid ^ off
            const float m2 = __shfl_xor_sync(0xffffffffu, m, off), den2 = __shfl_xor_sync(0xffffffffu, den, off);
            float4 a2;
            a2.x = __shfl_xor_sync(0xffffffffu, acc.x, off), a2.y = __shfl_xor_sync(0xffffffffu, acc.y, off);
            a2.z = __shfl_xor_sync(0xffffffffu, acc.z, off), a2.w = __shfl_xor_sync(0xffffffffu, acc.w, off);
            merge_state(m, den, acc, m2, den2, a2);
        }
        if (on && part == 0) {
            const float inv = 1.0f / den;
            bf16 *out = p.attn + (int64_t)(h * grp + j) * hd + d4 * 4;
            out[0] = __float2bfloat16_rn(acc.x * inv), out[1] = __float2bfloat16_rn(acc.y * inv);
            out[2] = __float2bfloat16_rn(acc.z * inv), out[3] = __float2bfloat16_rn(acc.w * inv);
        }
    }
}

// The merge spread over a head's items (the default since session 27; SS_PERSIST_MERGE=split): every item, once
// all the head's splits have released their partials, merges a slice of the head's grp x head_dim/4 float4
// outputs, a warp an output and a lane a split, all loads of the slice in flight at once, the states meeting in a
// butterfly of shuffles. One trip for the loads, where the last item alone makes one a round of splits
// (merge_one: two at tp 2, four for a group of 8), but a wait on the head's counter instead of the atomic's answer.
__device__ __forceinline__ void merge_slice(const Params &p, int h, int s, int grp, int stride)
{
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, hd = p.head_dim, S = p.splits, q4 = hd / 4;
    const int n = grp * q4, o0 = s * n / S, o1 = (s + 1) * n / S;
    const float *head = p.partials + (int64_t)h * grp * S * stride;
    for (int o = o0 + warp; o < o1; o += kWarps) {
        const int j = o / q4, d4 = o % q4;
        const float *src = head + ((int64_t)j * S + lane) * stride;
        const bool on = lane < S; // (S <= kMaxSplits = 32)
        float4 acc = on ? __ldcg(reinterpret_cast<const float4 *>(src + d4 * 4)) : make_float4(0.0f, 0.0f, 0.0f, 0.0f);
        const float2 ml = on ? __ldcg(reinterpret_cast<const float2 *>(src + hd)) : make_float2(-FLT_MAX, 0.0f);
        float m = ml.x, den = ml.y;
#pragma unroll
        for (int off = 16; off > 0; off >>= 1) {
            const float m2 = __shfl_xor_sync(0xffffffffu, m, off), den2 = __shfl_xor_sync(0xffffffffu, den, off);
            float4 a2;
            a2.x = __shfl_xor_sync(0xffffffffu, acc.x, off), a2.y = __shfl_xor_sync(0xffffffffu, acc.y, off);
            a2.z = __shfl_xor_sync(0xffffffffu, acc.z, off), a2.w = __shfl_xor_sync(0xffffffffu, acc.w, off);
            merge_state(m, den, acc, m2, den2, a2);
        }
        if (lane == 0) {
            const float inv = 1.0f / den;
            bf16 *out = p.attn + (int64_t)(h * grp + j) * hd + d4 * 4;
            out[0] = __float2bfloat16_rn(acc.x * inv), out[1] = __float2bfloat16_rn(acc.y * inv);
            out[2] = __float2bfloat16_rn(acc.z * inv), out[3] = __float2bfloat16_rn(acc.w * inv);
        }
    }
}

// This lane's 4 dims of a bf16 row that other CTAs wrote in this launch (through L2; zeros without dims).
// (A twin of lane_dims rather than a template flag on it: the merged form compiled to other SASS, session 25.)
__device__ __forceinline__ void lane_dims_cg(const bf16 *row, int lane, bool on, float (&v)[4])
{
    const uint2 raw = on ? __ldcg(reinterpret_cast<const uint2 *>(row + lane * 4)) : make_uint2(0, 0);
    v[0] = bf16_lo(raw.x), v[1] = bf16_hi(raw.x), v[2] = bf16_lo(raw.y), v[3] = bf16_hi(raw.y);
}

// A head's rmsnorm · w over the warp (lane L: dims 4L..4L+3), rounded to bf16 where the op-by-op q/k norm rounds
// (its sum of squares adds in another order).
__device__ __forceinline__ void lane_norm(float (&v)[4], const bf16 *w, int lane, bool on, int hd, float eps)
{
    float ss = 0.0f;
#pragma unroll
    for (int e = 0; e < 4; e++)
        ss += v[e] * v[e];
    const float inv = rsqrtf(warp_reduce(ss, SumOp()) / (float)hd + eps);
    if (on)
#pragma unroll
        for (int e = 0; e < 4; e++)
            v[e] = round_bf16(v[e] * inv * __bfloat162float(w[lane * 4 + e]));
}

// Rope over the warp, as rope_kv_store_kernel computes it: dim i (< half) pairs with i + half, which lane
// `partner` holds; trig: cos of [0, half), then sin.
__device__ __forceinline__ void lane_rope(float (&v)[4], const float *trig, int lane, int partner, bool first_half,
                                          bool on, int half)
{
    float o[4];
#pragma unroll
    for (int e = 0; e < 4; e++)
        o[e] = __shfl_sync(0xffffffffu, v[e], partner);
    if (!on)
        return;
    const int i0 = first_half ? lane * 4 : lane * 4 - half;
#pragma unroll
    for (int e = 0; e < 4; e++) {
        const float c = trig[i0 + e], sn = trig[half + i0 + e];
        v[e] = first_half ? round_bf16(v[e] * c - o[e] * sn) : round_bf16(v[e] * c + o[e] * sn);
    }
}

// One (kv head, key split) item of layer l, and its part in the merge of the head's splits.
// trig: [hd/2] cos, [hd/2] sin of the token's rope angles; btab: the sequence's block table (the kernel
// copies both once). KV8: the caches hold fp8 blocks (kv_fp8.cuh): the item keeps its keys' rows as e4m3 bytes and
// their scales in shared memory (half the bytes: twice the keys fit) and decodes them where it reads them.
template <bool KV8>
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
    if (p.debug & 4) { // benchmark switch: no attention, one arrival per kv head (the split merge: per item)
        if (s == 0 || p.merge == kMergeSplit)
            grid_arrive(ctr + kAttn);
        return;
    }
    if (nk > nkm) // the launcher sized shared memory for max_seq_len; a longer context is the caller's bug
        __trap();
    // Shared memory (the launcher sized the region for this layout): score rows, statistics and the merge flag,
    // the P·V area that merge_wide uses as scratch, then the K/V rows of earlier steps.
    float *sc = reinterpret_cast<float *>(region) + (grp * hd + hd) + hd; // [grp][nk_max] scores, then probabilities
    float *stat = sc + grp * nkm;                                          // [2 * kMaxGroup] (unused), [1] merge flag
    float *pv = stat + 4 * kMaxGroup;                                      // merge_wide's scratch
    const bf16 *row = p.qkv;
    const bool dims = lane * 4 < hd;
    // The cache rows of earlier steps do not depend on this step: copied into shared memory while the grid
    // finishes q/k/v (the launcher sized the region for nk_max keys). Each thread waits for its own copies
    // before the grid wait, whose barrier then makes all of them visible: after it, only q and the new k/v
    // come from memory.
    bf16 *kpre = reinterpret_cast<bf16 *>(pv + kWarps * grp * hd); // [nk_max][hd]
    bf16 *vpre = kpre + nkm * hd;
    // KV8: [nk_max][hd] e4m3 bytes of K, then of V, then the K rows' scales and the V rows' ([nk_max] floats each)
    uint8_t *kpre8 = reinterpret_cast<uint8_t *>(kpre), *vpre8 = kpre8 + nkm * hd;
    float *ksc = reinterpret_cast<float *>(vpre8 + nkm * hd), *vsc = ksc + nkm;
    const int cpr = KV8 ? hd / 16 : hd / 8; // 16-byte chunks a row
    for (int e = tid; e < nk * cpr; e += kConsumers) {
        const int jj = e / cpr, c = e % cpr;
        if (last && k0 + jj == newpos)
            continue;
        if constexpr (KV8) {
            const uint8_t *kc = reinterpret_cast<const uint8_t *>(L.k_cache);
            const uint8_t *vc = reinterpret_cast<const uint8_t *>(L.v_cache);
            const int64_t o = kv8_row(p, btab, k0 + jj, h) + c * 16;
            asm volatile("cp.async.cg.shared.global [%0], [%1], 16;" ::"r"(smem_u32(kpre8 + jj * hd + c * 16)),
                         "l"(kc + o)
                         : "memory");
            asm volatile("cp.async.cg.shared.global [%0], [%1], 16;" ::"r"(smem_u32(vpre8 + jj * hd + c * 16)),
                         "l"(vc + o)
                         : "memory");
            if (c == 0) { // and the rows' scales
                const int64_t so = kv8_scale(p, btab, k0 + jj, h);
                asm volatile("cp.async.ca.shared.global [%0], [%1], 4;" ::"r"(smem_u32(ksc + jj)), "l"(kc + so)
                             : "memory");
                asm volatile("cp.async.ca.shared.global [%0], [%1], 4;" ::"r"(smem_u32(vsc + jj)), "l"(vc + so)
                             : "memory");
            }
        } else {
            const bf16 *kr = kv_row(p, btab, L.k_cache, k0 + jj, h);
            const bf16 *vr = kv_row(p, btab, L.v_cache, k0 + jj, h);
            asm volatile("cp.async.cg.shared.global [%0], [%1], 16;" ::"r"(smem_u32(kpre + jj * hd + c * 8)),
                         "l"(kr + c * 8)
                         : "memory");
            asm volatile("cp.async.cg.shared.global [%0], [%1], 16;" ::"r"(smem_u32(vpre + jj * hd + c * 8)),
                         "l"(vr + c * 8)
                         : "memory");
        }
    }
    asm volatile("cp.async.commit_group;" ::: "memory");
    asm volatile("cp.async.wait_all;" ::: "memory");

    grid_wait(ctr + kQkv, gridDim.x, p.tp_abort, p.debug & 2);
    stamp(p, l, 4);
    // From here a warp takes one q head of the group alone, up to its partial: no barrier until the election.
    // Lane L holds dims 4L..4L+3 of q (and, in the last split, of the new k and v) in registers; rope pairs dim i
    // with i + hd/2, which lane L +- hd/8 holds. (Until session 24 the eight warps shared each step, scores by
    // key, softmax by head, P·V by key, with a block barrier between steps: ~3.3 us an item on one H200.)
    // A warp's keys are all of the item's: with small groups (MHA: one warp busy, and with 32 kv heads only 4
    // splits, so up to 64 keys an item) that chain is longer than before session 24. Measured in session 25 on a
    // Llama-2-7B shape: still 6.5% faster than op by op (docs/performance.md).
    const int partner = lane < hd / 8 ? lane + hd / 8 : lane - hd / 8;
    const bool first_half = lane < hd / 8;
    const int jnew = last ? newpos - k0 : -1; // the new key's index in this split (its k and v: registers)
    const int32_t slot = p.slots[0];
    const int stride = p.merge != kMergeChunked ? hd + 4 : hd + 2;
    for (int j = warp; j < grp; j += kWarps) {
        float q[4], kn[4] = {0.0f, 0.0f, 0.0f, 0.0f}, vn[4] = {0.0f, 0.0f, 0.0f, 0.0f};
        lane_dims_cg(row + (int64_t)(h * grp + j) * hd, lane, dims, q);
        if (last) {
            lane_dims_cg(row + p.q_dim + (int64_t)h * hd, lane, dims, kn);
            lane_dims_cg(row + p.q_dim + (int64_t)(p.kv_heads + h) * hd, lane, dims, vn);
        }
        if (L.q_norm) { // Qwen3: per-head RMSNorm before rope
            lane_norm(q, L.q_norm, lane, dims, hd, p.eps);
            if (last)
                lane_norm(kn, L.k_norm, lane, dims, hd, p.eps);
        }
        lane_rope(q, trig, lane, partner, first_half, dims, half);
        if (last) {
            lane_rope(kn, trig, lane, partner, first_half, dims, half);
            if constexpr (KV8) { // every warp quantises them (kn, vn: then as read back); warp 0 stores them
                float ks, vs;
                const uint32_t kq = lane_quant8(kn, &ks), vq = lane_quant8(vn, &vs);
                if (j == 0 && slot >= 0) {
                    const int bs = p.block_size, blk = slot / bs, so = slot % bs;
                    const int64_t ro = kv_fp8_row(blk, so, h, p.kv_block_bytes, p.kv_heads, hd);
                    uint8_t *kc = reinterpret_cast<uint8_t *>(L.k_cache), *vc = reinterpret_cast<uint8_t *>(L.v_cache);
                    if (dims) {
                        *reinterpret_cast<uint32_t *>(kc + ro + lane * 4) = kq;
                        *reinterpret_cast<uint32_t *>(vc + ro + lane * 4) = vq;
                    }
                    if (lane == 0) {
                        const int64_t sco = kv_fp8_scale(blk, so, h, p.kv_block_bytes, bs, p.kv_heads, hd);
                        *reinterpret_cast<float *>(kc + sco) = ks;
                        *reinterpret_cast<float *>(vc + sco) = vs;
                    }
                }
            } else if (j == 0 && slot >= 0 && dims) { // warp 0 stores the new token's k and v
                const int64_t off = (int64_t)slot * p.kv_heads * hd + (int64_t)h * hd + lane * 4;
#pragma unroll
                for (int e = 0; e < 4; e++) {
                    L.k_cache[off + e] = __float2bfloat16_rn(kn[e]);
                    L.v_cache[off + e] = __float2bfloat16_rn(vn[e]);
                }
            }
        }
        stamp(p, l, kStamps + 8);
        // Scores, kKeyGroup keys at a time: their dot products' warp reductions run side by side (the same
        // butterfly as warp_reduce, so the same sums); lane 0 keeps them in shared memory. Then this split's
        // softmax statistics. (One reduction a key, as in bb2de54, ran key after key: 3.4k SM cycles for 8-16
        // keys, most of the item; session 24's trace. Side by side, session 25 on one H200: +1.1% at 512-token
        // prompts, +1.5-2.0% for Llama-2-7B's multi-head items of up to 64 keys, even at 128-token prompts.)
        float *srow = sc + j * nkm;
        for (int g0 = 0; g0 < nk; g0 += kKeyGroup) {
            float d[kKeyGroup];
#pragma unroll
            for (int t = 0; t < kKeyGroup; t++) {
                float kv[4];
                if constexpr (KV8)
                    lane_dims8(kpre8 + (g0 + t) * hd, g0 + t < nk ? ksc[g0 + t] : 0.0f, lane, dims && g0 + t < nk,
                               kv);
                else
                    lane_dims(kpre + (g0 + t) * hd, lane, dims && g0 + t < nk, kv);
                if (g0 + t == jnew)
#pragma unroll
                    for (int e = 0; e < 4; e++)
                        kv[e] = kn[e];
                d[t] = 0.0f;
#pragma unroll
                for (int e = 0; e < 4; e++)
                    d[t] = fmaf(q[e], kv[e], d[t]);
            }
#pragma unroll
            for (int o = 16; o > 0; o >>= 1)
#pragma unroll
                for (int t = 0; t < kKeyGroup; t++)
                    d[t] += __shfl_xor_sync(0xffffffffu, d[t], o);
            if (lane == 0)
#pragma unroll
                for (int t = 0; t < kKeyGroup; t++)
                    if (g0 + t < nk)
                        srow[g0 + t] = d[t] * p.scale;
        }
        __syncwarp();
        float m = -FLT_MAX;
        for (int jj = lane; jj < nk; jj += 32)
            m = fmaxf(m, srow[jj]);
        m = warp_reduce(m, MaxOp());
        float sum = 0.0f;
        for (int jj = lane; jj < nk; jj += 32) {
            const float e = __expf(srow[jj] - m);
            srow[jj] = e;
            sum += e;
        }
        sum = warp_reduce(sum, SumOp());
        __syncwarp();
        stamp(p, l, kStamps + 9);
        // P·V, then this split's partial: its hd values, then its max and sum (merge_wide, merge_one: rows
        // padded to 16 bytes for their float4 loads)
        float acc[4] = {0.0f, 0.0f, 0.0f, 0.0f};
#pragma unroll 4
        for (int jj = 0; jj < nk; jj++) {
            float v[4];
            if constexpr (KV8)
                lane_dims8(vpre8 + jj * hd, vsc[jj], lane, dims, v);
            else
                lane_dims(vpre + jj * hd, lane, dims, v);
            if (jj == jnew)
#pragma unroll
                for (int e = 0; e < 4; e++)
                    v[e] = vn[e];
            const float pr = srow[jj];
#pragma unroll
            for (int e = 0; e < 4; e++)
                acc[e] = fmaf(pr, v[e], acc[e]);
        }
        float *out = p.partials + ((int64_t)(h * grp + j) * p.splits + s) * stride;
        if (dims)
#pragma unroll
            for (int e = 0; e < 4; e++)
                out[lane * 4 + e] = acc[e];
        if (lane == 0)
            out[hd] = nk > 0 ? m : -FLT_MAX, out[hd + 1] = sum;
    }
    // the last split of this head to finish merges them all (or, split, every split a slice)
    consumer_sync();
    stamp(p, l, 5);
    if (p.merge == kMergeSplit) {
        grid_arrive(ctr + kCtrPerLayer + h);
        grid_wait(ctr + kCtrPerLayer + h, (unsigned)p.splits, p.tp_abort, p.debug & 2);
        merge_slice(p, h, s, grp, stride);
        grid_arrive(ctr + kAttn);
        stamp(p, l, 6);
        return;
    }
    // One atomic with release and acquire semantics, then one trip for the splits' statistics and values.
    if (tid == 0) {
        unsigned before;
        asm volatile("atom.acq_rel.gpu.global.add.u32 %0, [%1], 1;" : "=r"(before) : "l"(ctr + kCtrPerLayer + h)
                     : "memory");
        stat[2 * kMaxGroup] = before == (unsigned)p.splits - 1 ? 1.0f : 0.0f;
    }
    consumer_sync(); // thread 0's acquire happens before every thread's reads of the partials
    if (stat[2 * kMaxGroup] == 0.0f)
        return;
    if (p.merge == kMergeOne) {
        merge_one(p, h, grp, stride);
        grid_arrive(ctr + kAttn);
        stamp(p, l, 6);
        return;
    }
    if (p.merge == kMergeWide) {
        merge_wide(p, h, grp, stride, pv);
        grid_arrive(ctr + kAttn);
        stamp(p, l, 6);
        return;
    }
    for (int u = tid; u < grp * hd; u += kConsumers) {
        const int j = u / hd, d = u % hd;
        const float *base = p.partials + (int64_t)(h * grp + j) * p.splits * stride;
        float big = -FLT_MAX, den = 0.0f, out = 0.0f; // online over chunks of kMergeLoads splits
        for (int t0 = 0; t0 < p.splits; t0 += kMergeLoads) {
            float mt[kMergeLoads], lt[kMergeLoads], vt[kMergeLoads];
#pragma unroll
            for (int t = 0; t < kMergeLoads; t++) {
                const bool on = t0 + t < p.splits;
                const float *src = base + (t0 + t) * stride;
                mt[t] = on ? __ldcg(src + hd) : -FLT_MAX;
                lt[t] = on ? __ldcg(src + hd + 1) : 0.0f;
                vt[t] = on ? __ldcg(src + d) : 0.0f;
            }
            float m = big;
#pragma unroll
            for (int t = 0; t < kMergeLoads; t++)
                m = fmaxf(m, mt[t]);
            const float rescale = big == -FLT_MAX ? 0.0f : __expf(big - m);
            den *= rescale, out *= rescale, big = m;
#pragma unroll
            for (int t = 0; t < kMergeLoads; t++) {
                const float w = mt[t] == -FLT_MAX ? 0.0f : __expf(mt[t] - m); // empty splits weigh nothing
                den = fmaf(w, lt[t], den);
                out = fmaf(w, vt[t], out);
            }
        }
        p.attn[(int64_t)(h * grp + j) * hd + d] = __float2bfloat16_rn(out / den);
    }
    grid_arrive(ctr + kAttn);
    stamp(p, l, 6);
}

#endif // Hopper device code

} // namespace
} // namespace ss

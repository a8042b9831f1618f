// persist_attention.cuh — the persistent decode kernel's attention: (kv head, key split) items, q/k norms,
// rope, the new token's cache store, softmax · V, the last item's merge. Included by decode_persist.cu.
#pragma once
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
// This lane's 4 dims of a K or V row (zeros when the lane holds none: head_dim < 128).
__device__ __forceinline__ void lane_dims(const bf16 *row, int lane, bool on, float (&v)[4])
{
    const uint2 raw = on ? *reinterpret_cast<const uint2 *>(row + lane * 4) : make_uint2(0, 0);
    v[0] = bf16_lo(raw.x), v[1] = bf16_hi(raw.x), v[2] = bf16_lo(raw.y), v[3] = bf16_hi(raw.y);
}

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
    // The cache rows of earlier steps do not depend on this step: copied into shared memory while the grid
    // finishes q/k/v (the launcher sized the region for nk_max keys).
    bf16 *kpre = reinterpret_cast<bf16 *>(pv + kWarps * grp * hd); // [nk_max][hd]
    bf16 *vpre = kpre + nkm * hd;
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

    grid_wait(ctr + kQkv, gridDim.x, p.tp_abort, p.debug & 2);
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
    asm volatile("cp.async.wait_all;" ::: "memory"); // this thread's copies have landed; the barrier
    consumer_sync();                                     // makes everyone's visible
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
        float kv[4];
        lane_dims(kv_row(p, btab, L.k_cache, k0 + jj, h, newpos, kfresh, kpre, k0), lane, dims, kv);
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
    float acc[kMaxGroup][4] = {};
#pragma unroll 4
    for (int jj = warp; jj < nk && dims; jj += kWarps) {
        float v[4];
        lane_dims(kv_row(p, btab, L.v_cache, k0 + jj, h, newpos, vfresh, vpre, k0), lane, true, v);
#pragma unroll
        for (int j = 0; j < kMaxGroup; j++)
            if (j < grp) {
                const float pr = sc[j * nkm + jj];
#pragma unroll
                for (int e = 0; e < 4; e++)
                    acc[j][e] = fmaf(pr, v[e], acc[j][e]);
            }
    }
    if (dims)
#pragma unroll
        for (int j = 0; j < kMaxGroup; j++)
            if (j < grp)
#pragma unroll
                for (int e = 0; e < 4; e++)
                    pv[(warp * grp + j) * hd + lane * 4 + e] = acc[j][e];
    consumer_sync();
    // a split's hd values, then its max and sum (merge_wide, merge_one: rows padded to 16 bytes for their
    // float4 loads)
    const int stride = p.merge != kMergeChunked ? hd + 4 : hd + 2;
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

// sample.cu — greedy and stochastic token choice over full-vocabulary f32 logits, on the GPU.
// One block per row, no sort: top-k and top-p thresholds are found by bisection over the bit patterns
// of the (unnormalised) probabilities with block reductions; the pick is an inverse-CDF walk in index
// order over the kept tokens, driven by the caller's uniform number. Parameters travel by value.
#include <limits.h>
#include <math.h>

#include "backend/cuda/common.cuh"
#include "backend/cuda/cuda_kernels.h"

namespace ss {
namespace {

constexpr int kThreads = 1024;
constexpr int kRowsPerLaunch = 128; // 128 * 20 bytes of parameters stay under the 4 KiB argument limit

struct RowsChunk {
    ss_cuda_sample_row r[kRowsPerLaunch];
};

struct MinIntOp {
    __device__ __forceinline__ int operator()(int a, int b) const
    {
        return a < b ? a : b;
    }
};

// Larger value wins; equal values: the smaller index.
__device__ __forceinline__ void argmax_merge(float &v, int &i, float v2, int i2)
{
    if (v2 > v || (v2 == v && i2 < i)) {
        v = v2;
        i = i2;
    }
}

// Block-wide argmax of (v, i); every thread gets the result.
__device__ void block_argmax(float &v, int &i, float *sv, int *si)
{
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) {
        const float v2 = __shfl_xor_sync(FULL_MASK, v, o);
        const int i2 = __shfl_xor_sync(FULL_MASK, i, o);
        argmax_merge(v, i, v2, i2);
    }
    const int lane = threadIdx.x & 31, wid = threadIdx.x >> 5, nw = (blockDim.x + 31) >> 5;
    if (lane == 0) {
        sv[wid] = v;
        si[wid] = i;
    }
    __syncthreads();
    v = -INFINITY;
    i = INT_MAX;
    for (int w = 0; w < nw; w++)
        argmax_merge(v, i, sv[w], si[w]);
    __syncthreads();
}

__device__ void row_argmax(const float *x, int vocab, float &v, int &i, float *sv, int *si)
{
    v = -INFINITY;
    i = INT_MAX;
    for (int e = threadIdx.x; e < vocab; e += blockDim.x)
        argmax_merge(v, i, x[e], e);
    block_argmax(v, i, sv, si);
    if (i == INT_MAX) // every logit NaN: fall back to token 0
        i = 0;
}

// Exclusive prefix sum over the block (blockDim a multiple of 32); *total gets the block's sum.
__device__ float block_exclusive_scan(float v, float *smem, float *total)
{
    const int lane = threadIdx.x & 31, wid = threadIdx.x >> 5, nw = blockDim.x >> 5;
    float incl = v;
#pragma unroll
    for (int o = 1; o < 32; o <<= 1) {
        const float y = __shfl_up_sync(FULL_MASK, incl, o);
        if (lane >= o)
            incl += y;
    }
    if (lane == 31)
        smem[wid] = incl;
    __syncthreads();
    float before = 0.0f, tot = 0.0f;
    for (int w = 0; w < nw; w++) {
        if (w < wid)
            before += smem[w];
        tot += smem[w];
    }
    __syncthreads();
    *total = tot;
    return before + incl - v;
}

__global__ void argmax_kernel(float *out_val, int32_t *out_idx, const float *logits, int vocab, int index_offset)
{
    __shared__ float sv[32];
    __shared__ int si[32];
    const int64_t r = blockIdx.x;
    float v;
    int i;
    row_argmax(logits + r * vocab, vocab, v, i, sv, si);
    if (threadIdx.x == 0) {
        out_val[r] = v;
        out_idx[r] = i + index_offset;
    }
}

// Row statistics before sampling, spread over kStatBlocks blocks per row (one block scanning a 128k
// vocabulary took ~55 us of a ~4.5 ms decode step): per chunk of the row its max, the max's first index and
// sum(exp(x - max)); sample_kernel merges the chunks in index order.
constexpr int kStatBlocks = 32;
constexpr int kStatThreads = 256;

struct RowStat {
    float mx;
    int idx; // INT_MAX: no non-NaN value in the chunk
    float z;
    float pad;
};

__global__ void __launch_bounds__(kStatThreads) row_stats_kernel(RowStat *out, const float *logits, int vocab)
{
    __shared__ float sv[32];
    __shared__ int si[32];
    const int64_t r = blockIdx.y;
    const float *x = logits + r * vocab;
    const int per = (vocab + kStatBlocks - 1) / kStatBlocks;
    const int beg = blockIdx.x * per, end = min(beg + per, vocab);
    float v = -INFINITY;
    int i = INT_MAX;
    for (int e = beg + threadIdx.x; e < end; e += blockDim.x)
        argmax_merge(v, i, x[e], e);
    block_argmax(v, i, sv, si);
    float z = 0.0f;
    if (v > -INFINITY)
        for (int e = beg + threadIdx.x; e < end; e += blockDim.x)
            z += __expf(x[e] - v);
    z = block_reduce(z, SumOp(), 0.0f, sv);
    if (threadIdx.x == 0)
        out[r * kStatBlocks + blockIdx.x] = RowStat{v, i, z, 0.0f};
}

// Unnormalised tempered probability: exp((x - max) / T), 1 at the maximum.
__device__ __forceinline__ float weight(float x, float mx, float k)
{
    return exp2f((x - mx) * k);
}

__global__ void __launch_bounds__(kThreads)
    sample_kernel(int32_t *out_tok, float *out_lp, const float *logits, int vocab, const RowsChunk rows,
                  int64_t row_base, const RowStat *stats)
{
    __shared__ float sf[32];
    __shared__ int si[32];
    const ss_cuda_sample_row P = rows.r[blockIdx.x];
    const int64_t r = row_base + blockIdx.x;
    const float *x = logits + r * vocab;

    float mx;
    int amax;
    float z = 0.0f;
    if (stats) { // merge the chunks' statistics (row_stats_kernel)
        const RowStat *st = stats + (int64_t)blockIdx.x * kStatBlocks;
        float v = -INFINITY;
        int i = INT_MAX;
        for (int c = threadIdx.x; c < kStatBlocks; c += blockDim.x)
            argmax_merge(v, i, st[c].mx, st[c].idx);
        block_argmax(v, i, sf, si); // every thread gets the row's max and its first index
        mx = v;
        amax = i == INT_MAX ? 0 : i; // every logit NaN: token 0, as row_argmax
        float zc = 0.0f;
        for (int c = threadIdx.x; c < kStatBlocks; c += blockDim.x)
            if (st[c].mx > -INFINITY)
                zc += st[c].z * __expf(st[c].mx - mx);
        z = block_reduce(zc, SumOp(), 0.0f, sf);
    } else {
        row_argmax(x, vocab, mx, amax, sf, si);
        for (int e = threadIdx.x; e < vocab; e += blockDim.x)
            z += __expf(x[e] - mx);
        z = block_reduce(z, SumOp(), 0.0f, sf);
    }
    const float log_z = mx + logf(z);

    int tok = amax;
    if (P.temperature > 0.0f && mx > -INFINITY) {
        const float k = 1.4426950408889634f / P.temperature;
        const uint32_t one_bits = 0x3f800000u; // weights lie in [0, 1]
        float t = 0.0f;                       // keep tokens with weight >= t
        if (P.top_k > 0 && P.top_k < vocab) {
            // largest t with count(w >= t) >= top_k
            uint32_t lo = 0, hi = one_bits + 1;
            while (hi - lo > 1) {
                const uint32_t mid = lo + (hi - lo) / 2;
                const float tm = __uint_as_float(mid);
                int cnt = 0;
                for (int e = threadIdx.x; e < vocab; e += blockDim.x)
                    cnt += weight(x[e], mx, k) >= tm;
                cnt = block_reduce(cnt, SumOp(), 0, si);
                if (cnt >= P.top_k)
                    lo = mid;
                else
                    hi = mid;
            }
            t = __uint_as_float(lo);
        }
        if (P.top_p < 1.0f) {
            // top-p of the top-k survivors: largest t' >= t whose kept mass still reaches top_p of theirs
            float mass_k = 0.0f;
            for (int e = threadIdx.x; e < vocab; e += blockDim.x) {
                const float w = weight(x[e], mx, k);
                mass_k += w >= t ? w : 0.0f;
            }
            mass_k = block_reduce(mass_k, SumOp(), 0.0f, sf);
            const float target = P.top_p * mass_k;
            uint32_t lo = __float_as_uint(t), hi = one_bits + 1;
            while (hi - lo > 1) {
                const uint32_t mid = lo + (hi - lo) / 2;
                const float tm = __uint_as_float(mid);
                float mass = 0.0f;
                for (int e = threadIdx.x; e < vocab; e += blockDim.x) {
                    const float w = weight(x[e], mx, k);
                    mass += w >= tm ? w : 0.0f;
                }
                mass = block_reduce(mass, SumOp(), 0.0f, sf);
                if (mass >= target)
                    lo = mid;
                else
                    hi = mid;
            }
            t = __uint_as_float(lo);
        }
        if (P.min_p > 0.0f)
            t = fmaxf(t, fminf(P.min_p, 1.0f));

        // Inverse CDF in index order: each thread owns a contiguous range of the vocabulary.
        const int per = (vocab + blockDim.x - 1) / blockDim.x;
        const int beg = threadIdx.x * per;
        const int end = min(beg + per, vocab);
        float mine = 0.0f;
        int last = -1;
        for (int e = beg; e < end; e++) {
            const float w = weight(x[e], mx, k);
            if (w >= t) {
                mine += w;
                last = e;
            }
        }
        float total;
        const float before = block_exclusive_scan(mine, sf, &total);
        const float goal = P.uniform * total;
        int found = INT_MAX;
        if (mine > 0.0f && goal >= before && goal < before + mine) {
            float cum = before;
            for (int e = beg; e < end && found == INT_MAX; e++) {
                const float w = weight(x[e], mx, k);
                if (w >= t) {
                    cum += w;
                    if (cum > goal)
                        found = e;
                }
            }
            if (found == INT_MAX)
                found = last;
        }
        found = block_reduce(found, MinIntOp(), INT_MAX, si);
        last = block_reduce(last, MaxOp(), -1, si);
        if (found != INT_MAX)
            tok = found;
        else if (last >= 0) // rounding left the goal past the end: the last kept token
            tok = last;
    }
    if (threadIdx.x == 0) {
        out_tok[r] = tok;
        out_lp[r] = x[tok] - log_z;
    }
}

// The greedy combine of the tp vocabulary shards, one thread per row (tp is small): ss_greedy_combine_host's
// math (sample_host.c), double precision included, so every rank and the cpu find the same token.
__global__ void greedy_combine_kernel(int32_t *out_tok, float *out_logprob, const float *g, int32_t n, int32_t stride,
                                      int32_t tp)
{
    const int32_t r = blockIdx.x * blockDim.x + threadIdx.x;
    if (r >= n)
        return;
    float best = -INFINITY, lse_max = -INFINITY;
    int32_t tok = 0;
    for (int32_t k = 0; k < tp; k++) {
        const float *blk = g + (size_t)k * 3 * stride;
        const float v = blk[r];
        if (v > best) { // strictly greater: ties keep the lower shard
            best = v;
            tok = __float_as_int(blk[stride + r]);
        }
        const float lse = v - blk[2 * (size_t)stride + r];
        if (isfinite(v) && lse > lse_max)
            lse_max = lse;
    }
    double sum = 0;
    for (int32_t k = 0; k < tp; k++) {
        const float *blk = g + (size_t)k * 3 * stride;
        if (isfinite(blk[r]))
            sum += exp((double)(blk[r] - blk[2 * (size_t)stride + r]) - lse_max);
    }
    out_tok[r] = tok;
    out_logprob[r] = best == INFINITY ? 0.0f : lse_max == -INFINITY ? -INFINITY : (float)(best - (lse_max + log(sum)));
}

// One thread per token, so that a warp reads one mask word (a broadcast) and writes 32 consecutive logits.
__global__ void mask_logits_kernel(float *logits, int vocab, const int32_t *rows, const uint32_t *words, int n_words)
{
    const int t = blockIdx.x * blockDim.x + threadIdx.x;
    if (t >= vocab)
        return;
    const int64_t j = blockIdx.y;
    if (!((words[j * n_words + (t >> 5)] >> (t & 31)) & 1u))
        logits[(int64_t)rows[j] * vocab + t] = -INFINITY;
}

// One thread per edit (at most one per logit); each operation rounded as ss_logit_edit_host's C (the _rn
// intrinsics: no fast-math division, no contraction into an fma), so that cpu and cuda agree to the bit.
__global__ void edit_logits_kernel(float *logits, int vocab, int64_t n, const ss_cuda_logit_edit *edits)
{
    const int64_t j = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (j >= n)
        return;
    const ss_cuda_logit_edit e = edits[j];
    float *x = logits + (int64_t)e.row * vocab + e.token;
    if (e.ban) {
        *x = -INFINITY;
        return;
    }
    float l = __fadd_rn(*x, e.add);
    if (e.rep != 1.0f)
        l = l > 0 ? __fdiv_rn(l, e.rep) : __fmul_rn(l, e.rep);
    *x = __fsub_rn(l, e.sub);
}

} // namespace
} // namespace ss

using namespace ss;

extern "C" int ss_cuda_edit_logits(void *stream, float *logits, int32_t vocab, int64_t n,
                                   const ss_cuda_logit_edit *edits)
{
    if (n <= 0)
        return 0;
    if (vocab <= 0)
        return (int)cudaErrorInvalidValue;
    edit_logits_kernel<<<(unsigned)((n + 255) / 256), 256, 0, (cudaStream_t)stream>>>(logits, vocab, n, edits);
    return launch_status();
}

extern "C" int ss_cuda_argmax(void *stream, float *out_val, int32_t *out_idx, const float *logits, int64_t n,
                              int32_t vocab, int32_t index_offset)
{
    if (n <= 0)
        return 0;
    if (vocab <= 0)
        return (int)cudaErrorInvalidValue;
    argmax_kernel<<<(unsigned)n, kThreads, 0, (cudaStream_t)stream>>>(out_val, out_idx, logits, vocab, index_offset);
    return launch_status();
}

extern "C" size_t ss_cuda_sample_workspace_bytes(void)
{
    return (size_t)kRowsPerLaunch * kStatBlocks * sizeof(RowStat);
}

extern "C" int ss_cuda_sample(void *stream, int32_t *out_tok, float *out_logprob, const float *logits, int64_t n,
                              int32_t vocab, const ss_cuda_sample_row *rows, void *workspace)
{
    if (n <= 0)
        return 0;
    if (vocab <= 0)
        return (int)cudaErrorInvalidValue;
    for (int64_t base = 0; base < n; base += kRowsPerLaunch) {
        const int64_t cnt = n - base < kRowsPerLaunch ? n - base : kRowsPerLaunch;
        RowsChunk chunk;
        for (int64_t i = 0; i < kRowsPerLaunch; i++)
            chunk.r[i] = rows[i < cnt ? base + i : base];
        RowStat *stats = static_cast<RowStat *>(workspace);
        if (stats && vocab >= kStatBlocks * kStatThreads) { // small vocabularies: one block per row is fine
            row_stats_kernel<<<dim3(kStatBlocks, (unsigned)cnt), kStatThreads, 0, (cudaStream_t)stream>>>(
                stats, logits + base * (int64_t)vocab, vocab);
            const int st = launch_status();
            if (st != 0)
                return st;
        } else {
            stats = nullptr;
        }
        sample_kernel<<<(unsigned)cnt, kThreads, 0, (cudaStream_t)stream>>>(out_tok, out_logprob, logits, vocab, chunk,
                                                                            base, stats);
        const int st = launch_status();
        if (st != 0)
            return st;
    }
    return 0;
}

extern "C" int ss_cuda_mask_logits(void *stream, float *logits, int32_t vocab, int64_t n, const int32_t *rows,
                                   const uint32_t *words)
{
    if (n <= 0)
        return 0;
    if (vocab <= 0)
        return (int)cudaErrorInvalidValue;
    const int n_words = (vocab + 31) / 32;
    for (int64_t base = 0; base < n; base += 65535) { // rows on grid y: at most 65535 a launch
        const int64_t cnt = n - base < 65535 ? n - base : 65535;
        mask_logits_kernel<<<dim3((unsigned)((vocab + 255) / 256), (unsigned)cnt), 256, 0, (cudaStream_t)stream>>>(
            logits, vocab, rows + base, words + base * n_words, n_words);
        const int st = launch_status();
        if (st != 0)
            return st;
    }
    return 0;
}

extern "C" int ss_cuda_greedy_combine(void *stream, int32_t *out_tok, float *out_logprob, const float *gathered,
                                      int32_t n, int32_t stride, int32_t tp)
{
    if (n <= 0)
        return 0;
    if (tp < 1 || stride < n)
        return (int)cudaErrorInvalidValue;
    greedy_combine_kernel<<<(unsigned)((n + 127) / 128), 128, 0, (cudaStream_t)stream>>>(out_tok, out_logprob, gathered,
                                                                                       n, stride, tp);
    return launch_status();
}

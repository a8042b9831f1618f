// top_logprobs.cu — the k most likely tokens of each logits row and their log-probabilities, on the GPU
// (OpenAI's top_logprobs), and the row's log-sum-exp that the chosen token's log-probability shares with them.
// Two kernels: blocks over chunks of a row keep a top-k list per thread and merge them in shared memory, with the
// chunk's max and sum of exponentials; one warp per row merges the chunks. Order: larger logit first, then the
// smaller index (ss_top_host, the definition).
#include <limits.h>
#include <math.h>

#include "backend/cuda/common.cuh"
#include "backend/cuda/cuda_kernels.h"

namespace ss {
namespace {

constexpr int kTopChunks = 32;  // blocks per row (a 128k row: 4k logits a block)
constexpr int kTopThreads = 128; // 128 lists of up to 32 in shared memory: 32 KiB
constexpr int kTopMaxK = 32;

// a precedes b: the larger value, then the smaller index; (-inf, -1) padding comes last.
__device__ __forceinline__ bool top_before(float va, int ia, float vb, int ib)
{
    return va > vb || (va == vb && ia >= 0 && (ib < 0 || ia < ib));
}

// Merges the sorted lists a and b (k each, shared memory) into a (the first k of the union).
__device__ void top_merge2(float *av, int *ai, const float *bv, const int *bi, int k)
{
    float mv[kTopMaxK];
    int mi[kTopMaxK];
    int x = 0, y = 0;
    for (int j = 0; j < k; j++) {
        if (top_before(av[x], ai[x], bv[y], bi[y])) {
            mv[j] = av[x];
            mi[j] = ai[x++];
        } else {
            mv[j] = bv[y];
            mi[j] = bi[y++];
        }
    }
    for (int j = 0; j < k; j++) {
        av[j] = mv[j];
        ai[j] = mi[j];
    }
}

// Tree merge of blockDim.x lists of k (list t at sv/si + t * k); the result is list 0.
__device__ void top_merge_block(float *sv, int *si, int k)
{
    for (int stride = 1; stride < (int)blockDim.x; stride <<= 1) {
        __syncthreads();
        const int t = threadIdx.x;
        if (t % (2 * stride) == 0 && t + stride < (int)blockDim.x)
            top_merge2(sv + t * k, si + t * k, sv + (t + stride) * k, si + (t + stride) * k, k);
    }
    __syncthreads();
}

struct ChunkStat {
    float mx; // -inf: no value above -inf in the chunk
    float pad;
    double z; // sum of expf(x - mx)
};

// grid (kTopChunks, rows): per chunk of a row its top-k (raw logits) and its statistics.
__global__ void __launch_bounds__(kTopThreads)
    top_chunk_kernel(float *cand_v, int *cand_i, ChunkStat *stats, const float *logits, int vocab, int k)
{
    extern __shared__ float smem[];
    float *sv = smem;
    int *si = reinterpret_cast<int *>(smem + kTopThreads * k);
    __shared__ float red[32];
    __shared__ double redd[32];
    const int64_t r = blockIdx.y;
    const float *x = logits + r * vocab;
    const int per = (vocab + kTopChunks - 1) / kTopChunks;
    const int beg = blockIdx.x * per, end = min(beg + per, vocab);

    float lv[kTopMaxK];
    int li[kTopMaxK];
    for (int j = 0; j < k; j++) {
        lv[j] = -INFINITY;
        li[j] = -1;
    }
    float mx = -INFINITY;
    for (int e = beg + threadIdx.x; e < end; e += blockDim.x) { // increasing index: ties keep the earlier one
        const float v = x[e];
        mx = fmaxf(mx, v); // fmaxf ignores NaN
        if (!(v > lv[k - 1]))
            continue;
        int j = k - 1;
        while (j > 0 && v > lv[j - 1]) {
            lv[j] = lv[j - 1];
            li[j] = li[j - 1];
            j--;
        }
        lv[j] = v;
        li[j] = e;
    }
    mx = block_reduce(mx, MaxOp(), -INFINITY, red);
    double z = 0.0;
    if (mx > -INFINITY)
        for (int e = beg + threadIdx.x; e < end; e += blockDim.x)
            z += (double)__expf(x[e] - mx);
    z = block_reduce(z, SumOp(), 0.0, redd);

    for (int j = 0; j < k; j++) {
        sv[threadIdx.x * k + j] = lv[j];
        si[threadIdx.x * k + j] = li[j];
    }
    top_merge_block(sv, si, k);
    const int64_t c = r * kTopChunks + blockIdx.x;
    for (int j = threadIdx.x; j < k; j += blockDim.x) {
        cand_v[c * k + j] = sv[j];
        cand_i[c * k + j] = si[j];
    }
    if (threadIdx.x == 0)
        stats[c] = ChunkStat{mx, 0.0f, z};
}

// One warp per row (kTopChunks == 32 lanes): the row's lse from the chunks, their lists merged, log-probabilities.
__global__ void __launch_bounds__(kTopChunks)
    top_final_kernel(int32_t *out_ids, float *out_vals, float *tok_lp, const int32_t *tok, const float *cand_v,
                     const int *cand_i, const ChunkStat *stats, const float *logits, int vocab, int k)
{
    extern __shared__ float smem[];
    float *sv = smem;
    int *si = reinterpret_cast<int *>(smem + kTopChunks * k);
    const int64_t r = blockIdx.x;
    const int64_t c = r * kTopChunks + threadIdx.x;
    const ChunkStat st = stats[c];
    const float mx = warp_reduce(st.mx, MaxOp());
    double z = st.mx > -INFINITY ? st.z * exp((double)st.mx - mx) : 0.0;
    z = warp_reduce(z, SumOp());
    const float lse = mx > -INFINITY ? mx + (float)log(z) : -INFINITY;
    for (int j = 0; j < k; j++) {
        sv[threadIdx.x * k + j] = cand_v[c * k + j];
        si[threadIdx.x * k + j] = cand_i[c * k + j];
    }
    top_merge_block(sv, si, k);
    const float *x = logits + r * vocab;
    for (int j = threadIdx.x; j < k; j += blockDim.x) {
        const int id = si[j];
        out_ids[r * k + j] = id;
        out_vals[r * k + j] = id >= 0 ? x[id] - lse : -INFINITY;
    }
    if (threadIdx.x == 0)
        tok_lp[r] = x[tok[r]] - lse;
}

} // namespace
} // namespace ss

using namespace ss;

extern "C" size_t ss_cuda_top_logprobs_row_bytes(int32_t k)
{
    return (size_t)kTopChunks * ((size_t)k * 8 + sizeof(ChunkStat));
}

extern "C" int ss_cuda_top_logprobs(void *stream, int32_t *out_ids, float *out_vals, float *tok_logprob,
                                    const int32_t *tok, const float *logits, int64_t n, int32_t vocab, int32_t k,
                                    void *workspace, size_t workspace_bytes)
{
    if (n <= 0)
        return 0;
    if (vocab <= 0 || k < 1 || k > kTopMaxK)
        return (int)cudaErrorInvalidValue;
    int64_t per_launch = (int64_t)(workspace_bytes / ss_cuda_top_logprobs_row_bytes(k));
    per_launch = per_launch > 65535 ? 65535 : per_launch; // rows on grid y
    if (per_launch < 1)
        return (int)cudaErrorInvalidValue;
    // workspace: stats, then candidate values, then candidate indices (8-byte aligned: stats hold doubles)
    ChunkStat *stats = static_cast<ChunkStat *>(workspace);
    for (int64_t base = 0; base < n; base += per_launch) {
        const int64_t cnt = n - base < per_launch ? n - base : per_launch;
        float *cand_v = reinterpret_cast<float *>(stats + cnt * kTopChunks);
        int *cand_i = reinterpret_cast<int *>(cand_v + cnt * kTopChunks * k);
        const float *rows = logits + base * (int64_t)vocab;
        top_chunk_kernel<<<dim3(kTopChunks, (unsigned)cnt), kTopThreads, (size_t)kTopThreads * k * 8,
                           (cudaStream_t)stream>>>(cand_v, cand_i, stats, rows, vocab, k);
        int st = launch_status();
        if (st != 0)
            return st;
        top_final_kernel<<<(unsigned)cnt, kTopChunks, (size_t)kTopChunks * k * 8, (cudaStream_t)stream>>>(
            out_ids + base * k, out_vals + base * k, tok_logprob + base, tok + base, cand_v, cand_i, stats, rows,
            vocab, k);
        st = launch_status();
        if (st != 0)
            return st;
    }
    return 0;
}

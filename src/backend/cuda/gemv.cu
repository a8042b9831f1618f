// gemv.cu — the skinny GEMM of decoding: out[n, m] = x[n, k] . W[m, k]^T (+ bias) for n <= 8, streaming W
// once at close to the memory bandwidth. Two kernel families, chosen by a run-time variant (benchmarks
// compare them in one run; the server keeps the default): a SIMT kernel (each warp owns R rows, lanes load
// 16 bytes per row per step) and a tensor-core kernel (a block owns 16 rows, its warps split k, mma.sync
// m16n8k16 with x as the n <= 8 side). On sm_90+ both can be launched with programmatic dependent launch:
// the first loads of W (never written by a kernel) are issued before waiting for the previous kernel.
// The tensor-core kernel also has fused forms (backend.h's matmul_fused): a SwiGLU epilogue for the MLP's
// gate/up weight (each tile takes 8 gate rows and the 8 matching up rows and stores silu(gate) * up), an
// accumulating one (the residual add), and an RMSNorm of x on the way in, so no separate kernel runs
// between two decode GEMVs.
#include <atomic>
#include <stdlib.h>
#include <string.h>

#include "backend/cuda/common.cuh"
#include "backend/cuda/cuda_kernels.h"

namespace ss {
namespace {

// ---------------------------------------------------------------- shared pieces

__device__ __forceinline__ void store_out(float *out, float v)
{
    *out = v;
}
__device__ __forceinline__ void store_out(bf16 *out, float v)
{
    *out = __float2bfloat16_rn(v);
}

// The accumulate epilogue's read of out (bf16 only), written by earlier kernels: a plain (coherent) load,
// after the wait.
__device__ __forceinline__ float load_out(const bf16 *p)
{
    return __bfloat162float(*p);
}

// Loads that should not displace x from the caches: W is read exactly once.
__device__ __forceinline__ uint4 load_stream(const uint4 *p)
{
    return __ldcs(p);
}

// ---------------------------------------------------------------- SIMT kernel

constexpr int kSimtWarps = 8;

// x may be the previous kernel's output: a read-only (.nc) load could be scheduled above the PDL wait,
// so x is read with a volatile load, which stays ordered after griddepcontrol.wait.
__device__ __forceinline__ uint4 load_after_wait(const uint4 *p)
{
    uint4 v;
    asm volatile("ld.global.v4.u32 {%0, %1, %2, %3}, [%4];"
                 : "=r"(v.x), "=r"(v.y), "=r"(v.z), "=r"(v.w)
                 : "l"(p)
                 : "memory");
    return v;
}

// Warp w owns rows [w*R, w*R + R); per step every lane loads U 16-byte chunks of each row (U*R loads in
// flight), x comes through L1/L2 and is shared by the R rows. Accumulates all N rows of x at once.
template <int N, int R, int U, typename OutT>
__global__ void __launch_bounds__(kSimtWarps * 32)
    gemv_simt(OutT *__restrict__ out, const bf16 *__restrict__ x, const bf16 *__restrict__ W,
              const bf16 *__restrict__ bias, int m, int k)
{
    pdl_launch_dependents();
    const int lane = threadIdx.x & 31;
    const int64_t warp = (int64_t)blockIdx.x * kSimtWarps + (threadIdx.x >> 5);
    const int64_t row0 = warp * R;
    if (row0 >= m)
        return;
    const int kc = k / 8; // 16-byte chunks per row
    const uint4 *wrow[R];
#pragma unroll
    for (int r = 0; r < R; r++) {
        const int64_t rr = row0 + r < m ? row0 + r : m - 1; // rows past the end repeat the last (not stored)
        wrow[r] = reinterpret_cast<const uint4 *>(W + rr * k);
    }
    const uint4 *xv = reinterpret_cast<const uint4 *>(x);

    float acc[R][N];
#pragma unroll
    for (int r = 0; r < R; r++)
#pragma unroll
        for (int i = 0; i < N; i++)
            acc[r][i] = 0.0f;

    uint4 wv[U][R];
    bool waited = false;
    for (int base = 0; base < kc; base += 32 * U) {
#pragma unroll
        for (int u = 0; u < U; u++) {
            const int c = base + u * 32 + lane;
#pragma unroll
            for (int r = 0; r < R; r++)
                wv[u][r] = c < kc ? load_stream(wrow[r] + c) : make_uint4(0, 0, 0, 0);
        }
        if (!waited) { // the first W loads are in flight: now wait for x
            pdl_wait();
            waited = true;
        }
        // No branch on c < kc here (W and x past the end are zeros), so the x loads can be hoisted.
#pragma unroll
        for (int u = 0; u < U; u++) {
            const int c = base + u * 32 + lane;
            float wf[R][8];
#pragma unroll
            for (int r = 0; r < R; r++)
                unpack8(wv[u][r], wf[r]);
#pragma unroll
            for (int i = 0; i < N; i++) {
                float xf[8];
                unpack8(c < kc ? load_after_wait(xv + (int64_t)i * kc + c) : make_uint4(0, 0, 0, 0), xf);
#pragma unroll
                for (int r = 0; r < R; r++)
#pragma unroll
                    for (int e = 0; e < 8; e++)
                        acc[r][i] = fmaf(wf[r][e], xf[e], acc[r][i]);
            }
        }
    }

#pragma unroll
    for (int r = 0; r < R; r++)
#pragma unroll
        for (int i = 0; i < N; i++)
            acc[r][i] = warp_reduce(acc[r][i], SumOp());

    if (lane == 0) {
#pragma unroll
        for (int r = 0; r < R; r++) {
            const int64_t row = row0 + r;
            if (row < m) {
                const float b = bias ? __bfloat162float(bias[row]) : 0.0f;
#pragma unroll
                for (int i = 0; i < N; i++)
                    store_out(out + (int64_t)i * m + row, acc[r][i] + b);
            }
        }
    }
}

// ---------------------------------------------------------------- tensor-core kernel

// d += A(16x16, row-major) . B(16x8, column-major), bf16 in, f32 accumulate (sm_80+).
__device__ __forceinline__ void mma_bf16_16816(float (&d)[4], uint32_t a0, uint32_t a1, uint32_t a2, uint32_t a3,
                                               uint32_t b0, uint32_t b1)
{
    asm("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
                 "{%0,%1,%2,%3};"
                 : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
                 : "r"(a0), "r"(a1), "r"(a2), "r"(a3), "r"(b0), "r"(b1));
}

// Blocks per SM each mma configuration is built for (registers capped to fit; shared memory is small).
constexpr int mma_min_blocks(int warps, int unroll)
{
    return warps <= 4 ? 4 : (warps >= 16 ? 2 : (unroll <= 4 ? 3 : 2));
}

// What follows the product (backend.h's ss_matmul_epilogue, in the same order; EPI_ROPE is its store with
// an ss_rope_store).
enum epilogue { EPI_STORE, EPI_SILU, EPI_ACC, EPI_ROPE };

// With a norm weight: x's 16-byte chunk c times the norm weight's, rounded to bf16 (the scale 1/rms(x)
// is applied to the sums at the end: x·diag(w)·Wᵀ·s = (rmsnorm(x)·w)·Wᵀ); adds the chunk's squares to sq.
__device__ __forceinline__ uint4 norm_chunk(const uint4 &xv, const uint4 &wv, float &sq)
{
    float xf[8], wf[8];
    unpack8(xv, xf);
    unpack8(wv, wf);
#pragma unroll
    for (int e = 0; e < 8; e++) {
        sq = fmaf(xf[e], xf[e], sq);
        xf[e] *= wf[e];
    }
    return pack8(xf);
}

// Block b owns rows [16b, 16b + 16); its WARPS warps split the k/8 16-byte chunks into contiguous slices.
// Lane (g = lane/4, t = lane%4) loads, per step u, chunk c = base + 4u + t of rows g and g+8 and of x row
// g (g < n). The mma's k slots are a permutation of real k that is the same for A and B: slots (2t, 2t+1,
// 2t+8, 2t+9) of the first mma are elements 0..3 of chunk c, those of the second mma elements 4..7. So the
// 16-byte loads feed the fragments as they are, with no shuffles. The warps' partial 16x8 tiles are summed
// through shared memory in warp order (deterministic), then bias is added and out[col, row] stored.
// Lane l's fragment registers j and j + 2 (j < 2) hold rows g and g + 8 of output column 2(l%4) + j, which
// the paired forms use:
// EPI_SILU: W is [2m, k] (gate rows, then up rows) and block b owns output rows [8b, 8b + 8): its rows g
// are gate rows, its rows g + 8 the same rows of up; out = silu(gate) * up (bias unused).
// EPI_ROPE: the rows are [q heads | k heads | v heads]. The blocks of the q and k heads take 8 rows i of
// one head and, as their rows g + 8, the partners i + head_dim/2 that rope rotates them with; the blocks
// after them take 16 rows of v. Out holds the rotated rows, and the k and v of token col go to its cache
// slot too (as rope_kv_store, from the f32 sums).
// EPI_ACC: out += the result (the residual stream; read after the wait like x).
// NORM: x is RMS-normalised on the way in (nw: the norm weight). The block first stages x times the weight in
// shared memory (dynamic, n·k bf16) with all its threads, and each row's sum of squares; the main loop reads
// x from there and the sums are scaled by 1/rms(x) at the end: (x·diag(w))·Wᵀ / rms(x) = (rmsnorm(x)·w)·Wᵀ.
// (Normalising in the main loop instead, on the few lanes that load x, was 6% slower at batch 1: session 7.)
// EPI_ACC's read of out is issued right after the wait, so its latency hides under the main loop.
template <int WARPS, int U, typename OutT, int EPI, bool NORM>
__global__ void __launch_bounds__(WARPS * 32, mma_min_blocks(WARPS, U))
    gemv_mma(OutT *__restrict__ out, const bf16 *__restrict__ x, const bf16 *__restrict__ W,
             const bf16 *__restrict__ bias, const bf16 *__restrict__ nw, float eps, ss_cuda_rope_epi rp, int n, int m,
             int k)
{
    static_assert(WARPS * 32 >= 128, "the epilogue needs 128 threads");
    constexpr bool SILU = EPI == EPI_SILU, ROPE = EPI == EPI_ROPE;
    __shared__ float red[WARPS][4][32];
    __shared__ float sq_red[NORM ? WARPS : 1][8];
    extern __shared__ uint4 xs[]; // NORM: [n][k / 8] chunks of x times the norm weight
    pdl_launch_dependents();
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    const int g = lane >> 2, t = lane & 3;
    int64_t row0 = (int64_t)blockIdx.x * (SILU ? 8 : 16);
    int64_t ra = row0 + g < m ? row0 + g : m - 1; // rows past the end repeat the last (not stored)
    int64_t rb = SILU ? m + ra : (row0 + g + 8 < m ? row0 + g + 8 : m - 1);
    // EPI_ROPE: the head of a rotating block (-1: a block of v rows), the cosine and sine of this thread's
    // (pair, column) and the cache slot of its column, all from data no kernel writes: before the wait.
    int head = -1, slot = -1;
    float rc = 1.0f, rs = 0.0f;
    if constexpr (ROPE) {
        const int half = rp.head_dim >> 1, per_head = half >> 3, rot_blocks = (rp.q_heads + rp.kv_heads) * per_head;
        const int col = 2 * t + ((threadIdx.x >> 5) & 1); // the column of registers j and j + 2 (j = warp & 1)
        if ((int)blockIdx.x < rot_blocks) {
            head = blockIdx.x / per_head;
            row0 = (int64_t)head * rp.head_dim + (blockIdx.x % per_head) * 8;
            ra = row0 + g;
            rb = ra + half;
            if (threadIdx.x < 64 && col < n) {
                double sd, cd;
                sincos((double)((float)rp.pos[col] * rp.inv_freq[ra - (int64_t)head * rp.head_dim]), &sd, &cd);
                rc = (float)cd;
                rs = (float)sd;
            }
        } else {
            row0 = (int64_t)(rp.q_heads + rp.kv_heads) * rp.head_dim + (int64_t)(blockIdx.x - rot_blocks) * 16;
            ra = row0 + g < m ? row0 + g : m - 1;
            rb = row0 + g + 8 < m ? row0 + g + 8 : m - 1;
        }
        if (threadIdx.x < 128 && col < n)
            slot = rp.slots[col];
    }
    const uint4 *wa = reinterpret_cast<const uint4 *>(W + ra * k);
    const uint4 *wb = reinterpret_cast<const uint4 *>(W + rb * k);
    const bool has_x = g < n;
    const uint4 *xr = reinterpret_cast<const uint4 *>(x + (int64_t)(has_x ? g : 0) * k);
    const uint4 *nwv = reinterpret_cast<const uint4 *>(nw);
    const int kc = k >> 3;
    const int per_warp = (kc + WARPS - 1) / WARPS;
    const int cbeg = warp * per_warp;
    const int cend = cbeg + per_warp < kc ? cbeg + per_warp : kc;
    const uint4 zero = make_uint4(0, 0, 0, 0);

    float acc0[4] = {0.0f, 0.0f, 0.0f, 0.0f}, acc1[4] = {0.0f, 0.0f, 0.0f, 0.0f};
    uint4 va[U], vb[U];
#pragma unroll
    for (int u = 0; u < U; u++) {
        const int c = cbeg + 4 * u + t;
        va[u] = c < cend ? load_stream(wa + c) : zero;
        vb[u] = c < cend ? load_stream(wb + c) : zero;
    }
    pdl_wait(); // W of the first step is in flight; x may be the previous kernel's output
    // EPI_ACC: the value this thread's output adds to (the epilogue's mapping, below)
    float prev = 0.0f;
    if constexpr (EPI == EPI_ACC) {
        const int l = threadIdx.x & 31, j = threadIdx.x >> 5;
        const int64_t row = row0 + (l >> 2) + (j >= 2 ? 8 : 0);
        const int col = 2 * (l & 3) + (j & 1);
        if (threadIdx.x < 128 && row < m && col < n)
            prev = load_out(out + (int64_t)col * m + row);
    }
    if constexpr (NORM) {
        float sqr[8] = {0.0f, 0.0f, 0.0f, 0.0f, 0.0f, 0.0f, 0.0f, 0.0f};
        const uint4 *x4 = reinterpret_cast<const uint4 *>(x);
        for (int c = threadIdx.x; c < kc; c += WARPS * 32) {
            const uint4 wv = __ldg(nwv + c);
#pragma unroll
            for (int r = 0; r < 8; r++)
                if (r < n)
                    xs[r * kc + c] = norm_chunk(load_after_wait(x4 + (int64_t)r * kc + c), wv, sqr[r]);
        }
#pragma unroll
        for (int r = 0; r < 8; r++) {
            const float v = warp_reduce(sqr[r], SumOp());
            if (lane == 0)
                sq_red[warp][r] = v;
        }
        __syncthreads();
    }
    for (int base = cbeg; base < cend; base += 4 * U) {
        uint4 xv[U];
#pragma unroll
        for (int u = 0; u < U; u++) {
            const int c = base + 4 * u + t;
            if constexpr (NORM)
                xv[u] = has_x && c < cend ? xs[g * kc + c] : zero;
            else
                xv[u] = has_x && c < cend ? load_after_wait(xr + c) : zero;
        }
#pragma unroll
        for (int u = 0; u < U; u++) {
            mma_bf16_16816(acc0, va[u].x, vb[u].x, va[u].y, vb[u].y, xv[u].x, xv[u].y);
            mma_bf16_16816(acc1, va[u].z, vb[u].z, va[u].w, vb[u].w, xv[u].z, xv[u].w);
        }
        const int next = base + 4 * U;
        if (next < cend) {
#pragma unroll
            for (int u = 0; u < U; u++) {
                const int c = next + 4 * u + t;
                va[u] = c < cend ? load_stream(wa + c) : zero;
                vb[u] = c < cend ? load_stream(wb + c) : zero;
            }
        }
    }

#pragma unroll
    for (int j = 0; j < 4; j++)
        red[warp][j][lane] = acc0[j] + acc1[j];
    __syncthreads();
    // The scale of output column col (x row col): 1 / rms, or 1 without a norm.
    auto scale = [&](int col) {
        if constexpr (NORM) {
            float s = 0.0f;
#pragma unroll
            for (int w = 0; w < WARPS; w++)
                s += sq_red[w][col];
            return rsqrtf(s / (float)k + eps);
        } else {
            (void)col;
            return 1.0f;
        }
    };
    if constexpr (ROPE) {
        const int64_t kv_row = (int64_t)rp.kv_heads * rp.head_dim;
        if (head >= 0 && threadIdx.x < 64) { // registers j and j + 2 of lane l: a rotating pair
            const int l = threadIdx.x & 31, j = threadIdx.x >> 5;
            float x1 = 0.0f, x2 = 0.0f;
#pragma unroll
            for (int w = 0; w < WARPS; w++) {
                x1 += red[w][j][l];
                x2 += red[w][j + 2][l];
            }
            const int64_t r1 = row0 + (l >> 2), r2 = r1 + (rp.head_dim >> 1);
            const int col = 2 * (l & 3) + j;
            if (col < n) {
                const float s = scale(col);
                x1 = x1 * s + (bias ? __bfloat162float(bias[r1]) : 0.0f);
                x2 = x2 * s + (bias ? __bfloat162float(bias[r2]) : 0.0f);
                const bf16 y1 = __float2bfloat16_rn(x1 * rc - x2 * rs), y2 = __float2bfloat16_rn(x2 * rc + x1 * rs);
                out[(int64_t)col * m + r1] = y1;
                out[(int64_t)col * m + r2] = y2;
                if (head >= rp.q_heads && slot >= 0) {
                    bf16 *kd = (bf16 *)rp.k_cache + slot * kv_row + (r1 - (int64_t)rp.q_heads * rp.head_dim);
                    kd[0] = y1;
                    kd[rp.head_dim >> 1] = y2;
                }
            }
        } else if (head < 0 && threadIdx.x < 128) { // v rows: stored as they are, and into the cache
            const int l = threadIdx.x & 31, j = threadIdx.x >> 5;
            float v = 0.0f;
#pragma unroll
            for (int w = 0; w < WARPS; w++)
                v += red[w][j][l];
            const int64_t row = row0 + (l >> 2) + (j >= 2 ? 8 : 0);
            const int col = 2 * (l & 3) + (j & 1);
            if (row < m && col < n) {
                const bf16 y = __float2bfloat16_rn(v * scale(col) + (bias ? __bfloat162float(bias[row]) : 0.0f));
                out[(int64_t)col * m + row] = y;
                if (slot >= 0)
                    ((bf16 *)rp.v_cache)[slot * kv_row + (row - (int64_t)(rp.q_heads + rp.kv_heads) * rp.head_dim)] = y;
            }
        }
        return;
    }
    if constexpr (SILU) {
        if (threadIdx.x < 64) { // registers j (gate) and j + 2 (up) of lane l: one output
            const int l = threadIdx.x & 31, j = threadIdx.x >> 5;
            float gs = 0.0f, us = 0.0f;
#pragma unroll
            for (int w = 0; w < WARPS; w++) {
                gs += red[w][j][l];
                us += red[w][j + 2][l];
            }
            const int64_t row = row0 + (l >> 2);
            const int col = 2 * (l & 3) + j;
            if (row < m && col < n) { // as silu_mul_kernel, from the f32 sums
                const float s = scale(col);
                gs *= s;
                us *= s;
                store_out(out + (int64_t)col * m + row, gs / (1.0f + __expf(-gs)) * us);
            }
        }
        return;
    }
    if (threadIdx.x < 128) {
        const int l = threadIdx.x & 31, j = threadIdx.x >> 5; // fragment register j of lane l
        float v = 0.0f;
#pragma unroll
        for (int w = 0; w < WARPS; w++)
            v += red[w][j][l];
        const int64_t row = row0 + (l >> 2) + (j >= 2 ? 8 : 0);
        const int col = 2 * (l & 3) + (j & 1);
        if (row < m && col < n) {
            OutT *o = out + (int64_t)col * m + row;
            v = v * scale(col) + (bias ? __bfloat162float(bias[row]) : 0.0f);
            if constexpr (EPI == EPI_ACC)
                v += prev;
            store_out(o, v);
        }
    }
}

// ---------------------------------------------------------------- variants and launch

enum family { FAM_SIMT_BASE, FAM_SIMT, FAM_MMA };

struct variant {
    const char *name;
    family fam;
    int warps, unroll; // FAM_MMA only; warps 0: chosen from m and the SM count (mma_auto)
    bool pdl;
};

// Index 0 is the default (H200, n = 1: qkv 90%, o 81%, gate/up 99% of copy bandwidth; SIMT with x read
// after the PDL wait is slower: qkv 79%). The names are what SS_GEMV_VARIANT accepts (or the index).
constexpr variant kVariants[] = {
    {"mma-auto-pdl", FAM_MMA, 0, 4, true},   {"mma-auto", FAM_MMA, 0, 4, false},
    {"mma-w8u4-pdl", FAM_MMA, 8, 4, true},   {"mma-w16u4-pdl", FAM_MMA, 16, 4, true},
    {"mma-w8u8-pdl", FAM_MMA, 8, 8, true},   {"mma-w4u8-pdl", FAM_MMA, 4, 8, true},
    {"simt-pdl", FAM_SIMT, 0, 0, true},      {"simt", FAM_SIMT, 0, 0, false},
    {"base", FAM_SIMT_BASE, 0, 0, false},
};
constexpr int kNumVariants = (int)(sizeof kVariants / sizeof kVariants[0]);

// Process-wide benchmark knob (not configuration: the server never sets it). -1 = not yet resolved from
// SS_GEMV_VARIANT.
std::atomic<int> g_variant(-1);

int variant_from_env()
{
    const char *s = getenv("SS_GEMV_VARIANT");
    if (!s || !*s)
        return 0;
    for (int i = 0; i < kNumVariants; i++)
        if (strcmp(s, kVariants[i].name) == 0)
            return i;
    char *end = NULL;
    const long v = strtol(s, &end, 10);
    return end && *end == '\0' && v >= 0 && v < kNumVariants ? (int)v : 0;
}

int current_variant()
{
    int v = g_variant.load(std::memory_order_relaxed);
    if (v < 0) {
        int expect = -1;
        g_variant.compare_exchange_strong(expect, variant_from_env());
        v = g_variant.load(std::memory_order_relaxed);
    }
    return v;
}

// What the launch needs to know of the current device (cheap runtime queries, made per launch).
struct device_info {
    bool pdl; // compute capability 9.0+
    int sms;
};

device_info current_device()
{
    device_info d = {false, 0};
    int dev = 0, major = 0, sms = 0;
    if (cudaGetDevice(&dev) != cudaSuccess ||
        cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, dev) != cudaSuccess ||
        cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, dev) != cudaSuccess) {
        (void)cudaGetLastError();
        return d;
    }
    d.pdl = major >= 9;
    d.sms = sms;
    return d;
}

template <typename... KArgs, typename... Args>
cudaError_t launch(bool pdl, void (*kernel)(KArgs...), unsigned blocks, unsigned threads, size_t smem, cudaStream_t s,
                   Args... args)
{
    cudaLaunchAttribute attr[1];
    attr[0].id = cudaLaunchAttributeProgrammaticStreamSerialization;
    attr[0].val.programmaticStreamSerializationAllowed = 1;
    cudaLaunchConfig_t cfg = {};
    cfg.gridDim = dim3(blocks);
    cfg.blockDim = dim3(threads);
    cfg.dynamicSmemBytes = smem;
    cfg.stream = s;
    cfg.attrs = attr;
    cfg.numAttrs = pdl ? 1 : 0;
    return cudaLaunchKernelEx(&cfg, kernel, args...);
}

template <int N, int R, int U, typename OutT>
cudaError_t launch_simt(bool pdl, OutT *out, const bf16 *x, const bf16 *W, const bf16 *bias, int m, int k,
                        cudaStream_t s)
{
    const int64_t warps = ((int64_t)m + R - 1) / R;
    return launch(pdl, gemv_simt<N, R, U, OutT>, blocks_for(warps, kSimtWarps), kSimtWarps * 32, 0, s, out, x, W,
                  bias, m, k);
}

// The tuned SIMT shapes: one row and deep unrolling while x is cheap; more rows per warp (x loads shared
// by more rows) as n grows.
template <int N, typename OutT>
cudaError_t launch_simt_n(const variant &v, OutT *out, const bf16 *x, const bf16 *W, const bf16 *bias, int m,
                          int k, cudaStream_t s, bool pdl)
{
    if (v.fam == FAM_SIMT_BASE)
        return launch_simt<N, 2, 2>(false, out, x, W, bias, m, k, s);
    if constexpr (N <= 2)
        return launch_simt<N, 1, 8>(pdl, out, x, W, bias, m, k, s);
    else if constexpr (N <= 4)
        return launch_simt<N, 2, 4>(pdl, out, x, W, bias, m, k, s);
    else
        return launch_simt<N, 4, 2>(pdl, out, x, W, bias, m, k, s);
}

template <typename OutT>
cudaError_t launch_simt_any(const variant &v, int64_t n, OutT *out, const bf16 *x, const bf16 *W,
                            const bf16 *bias, int m, int k, cudaStream_t s, bool pdl)
{
    switch (n) {
    case 1: return launch_simt_n<1>(v, out, x, W, bias, m, k, s, pdl);
    case 2: return launch_simt_n<2>(v, out, x, W, bias, m, k, s, pdl);
    case 3: return launch_simt_n<3>(v, out, x, W, bias, m, k, s, pdl);
    case 4: return launch_simt_n<4>(v, out, x, W, bias, m, k, s, pdl);
    case 5: return launch_simt_n<5>(v, out, x, W, bias, m, k, s, pdl);
    case 6: return launch_simt_n<6>(v, out, x, W, bias, m, k, s, pdl);
    case 7: return launch_simt_n<7>(v, out, x, W, bias, m, k, s, pdl);
    default: return launch_simt_n<8>(v, out, x, W, bias, m, k, s, pdl);
    }
}

// What the fused forms add to a launch (the plain product: none of it).
struct fusion {
    const bf16 *nw; // norm weight or null
    float eps;
    ss_cuda_rope_epi rope; // EPI_ROPE only
};

// The largest staged x (n·k bf16) a norm form takes; above, matmul_fused declines it and the forward pass
// runs the norm apart. Every block stages its own copy, so this traffic grows with n: at batch 8 of the 8B
// shape (64 KB a block) the gate/up GEMV lost a quarter of its speed (session 7). SS_GEMV_STAGE_MAX
// (bytes) overrides it, for benchmarks.
constexpr size_t kStageMaxDefault = 16 * 1024;

inline size_t staged_bytes(int64_t n, int k)
{
    return (size_t)n * (size_t)k * sizeof(bf16);
}

template <int WARPS, int U, typename OutT, int EPI, int NORM>
cudaError_t launch_mma(bool pdl, OutT *out, const bf16 *x, const bf16 *W, const bf16 *bias, const fusion &fu,
                       int64_t n, int m, int k, cudaStream_t s)
{
    auto kernel = gemv_mma<WARPS, U, OutT, EPI, NORM>;
    const size_t smem = NORM ? staged_bytes(n, k) : 0;
    if (smem > 48 * 1024) { // above the default limit: opt in (a host-side attribute, harmless to repeat)
        const cudaError_t e = cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem);
        if (e != cudaSuccess)
            return e;
    }
    return launch(pdl, kernel, blocks_for(m, EPI == EPI_SILU ? 8 : 16), WARPS * 32, smem, s, out, x, W, bias, fu.nw,
                  fu.eps, fu.rope, (int)n, m, k);
}

// The default shape: the row tiles (16 rows each; 8 output rows of the SwiGLU form) should all be resident
// at once with as many bytes in flight per SM as possible. Up to 2 tiles per SM: 16 warps a tile (2
// blocks/SM, 32 warps); otherwise 8 warps a tile (3 blocks/SM; large m runs several waves either way).
// (8 warps x 8 chunks was ahead of 16 x 4 in bench_backend on the H200 for both m = 4096 shapes, o_proj
// 85.4 vs 80.4% of copy, but not end to end: 225.0 vs 225.1-225.7 tok/s at batch 1, 1,782 vs 1,768 at
// batch 8, session 5.)
template <typename OutT, int EPI, bool NORM>
cudaError_t launch_mma_auto(const device_info &dev, bool pdl, OutT *out, const bf16 *x, const bf16 *W,
                            const bf16 *bias, const fusion &fu, int64_t n, int m, int k, cudaStream_t s)
{
    const int64_t tiles = EPI == EPI_SILU ? ((int64_t)m + 7) / 8 : ((int64_t)m + 15) / 16;
    if (dev.sms > 0 && tiles <= 2 * (int64_t)dev.sms)
        return launch_mma<16, 4, OutT, EPI, NORM>(pdl, out, x, W, bias, fu, n, m, k, s);
    return launch_mma<8, 4, OutT, EPI, NORM>(pdl, out, x, W, bias, fu, n, m, k, s);
}

// The plain product in the shape variant v names.
template <typename OutT>
cudaError_t launch_variant(const variant &v, int64_t n, OutT *out, const bf16 *x, const bf16 *W, const bf16 *bias,
                           int m, int k, cudaStream_t s)
{
    const device_info dev = current_device();
    const bool pdl = v.pdl && dev.pdl;
    const fusion none = {};
    if (v.fam != FAM_MMA)
        return launch_simt_any(v, n, out, x, W, bias, m, k, s, pdl);
    if (v.warps == 0)
        return launch_mma_auto<OutT, EPI_STORE, false>(dev, pdl, out, x, W, bias, none, n, m, k, s);
    if (v.warps == 4)
        return launch_mma<4, 8, OutT, EPI_STORE, false>(pdl, out, x, W, bias, none, n, m, k, s);
    if (v.warps == 16)
        return launch_mma<16, 4, OutT, EPI_STORE, false>(pdl, out, x, W, bias, none, n, m, k, s);
    if (v.unroll == 8)
        return launch_mma<8, 8, OutT, EPI_STORE, false>(pdl, out, x, W, bias, none, n, m, k, s);
    return launch_mma<8, 4, OutT, EPI_STORE, false>(pdl, out, x, W, bias, none, n, m, k, s);
}

// A fused form, with or without the norm (the accumulate form never has one: not built).
template <int EPI>
cudaError_t launch_fused(const device_info &dev, bool pdl, bool norm, bf16 *out, const bf16 *x, const bf16 *W,
                         const bf16 *bias, const fusion &fu, int64_t n, int m, int k, cudaStream_t s)
{
    if constexpr (EPI != EPI_ACC) {
        if (norm)
            return launch_mma_auto<bf16, EPI, true>(dev, pdl, out, x, W, bias, fu, n, m, k, s);
    }
    return launch_mma_auto<bf16, EPI, false>(dev, pdl, out, x, W, bias, fu, n, m, k, s);
}

// Process-wide benchmark knob as g_variant: the staging limit (SS_GEMV_STAGE_MAX). -1 = not yet resolved.
std::atomic<long> g_stage_max(-1);

size_t stage_max()
{
    long v = g_stage_max.load(std::memory_order_relaxed);
    if (v < 0) {
        const char *e = getenv("SS_GEMV_STAGE_MAX");
        char *end = NULL;
        long want = e && *e ? strtol(e, &end, 10) : -1;
        if (want < 0 || want > 200 * 1024 || !end || *end)
            want = (long)kStageMaxDefault;
        long expect = -1;
        g_stage_max.compare_exchange_strong(expect, want);
        v = g_stage_max.load(std::memory_order_relaxed);
    }
    return (size_t)v;
}

} // namespace
} // namespace ss

using namespace ss;

extern "C" int ss_cuda_gemv_supported(const void *x, const void *W, int64_t n, int32_t k)
{
    return n >= 1 && n <= SS_CUDA_GEMV_MAX_N && k > 0 && k % 8 == 0 && ((uintptr_t)x & 15u) == 0 &&
           ((uintptr_t)W & 15u) == 0;
}

extern "C" int ss_cuda_gemv(void *stream, void *out, int out_f32, const void *x, const void *W, const void *bias,
                            int64_t n, int32_t m, int32_t k)
{
    if (!ss_cuda_gemv_supported(x, W, n, k) || m <= 0)
        return (int)cudaErrorInvalidValue;
    cudaStream_t s = (cudaStream_t)stream;
    const variant &v = kVariants[current_variant()];
    const bf16 *xb = (const bf16 *)x, *Wb = (const bf16 *)W, *bb = (const bf16 *)bias;
    const cudaError_t e = out_f32 ? launch_variant(v, n, (float *)out, xb, Wb, bb, m, k, s)
                                  : launch_variant(v, n, (bf16 *)out, xb, Wb, bb, m, k, s);
    const cudaError_t last = cudaGetLastError();
    return (int)(e != cudaSuccess ? e : last);
}

extern "C" int ss_cuda_gemv_fused(void *stream, void *out, const void *x, const void *W, const void *bias,
                                  const void *norm_w, float eps, int epi, const ss_cuda_rope_epi *rope, int64_t n,
                                  int32_t m, int32_t k)
{
    const variant &v = kVariants[current_variant()]; // read once: the knob may change between calls
    const bool norm = norm_w != nullptr;
    if (!ss_cuda_gemv_supported(x, W, n, k) || m <= 0 || v.fam != FAM_MMA || ((uintptr_t)norm_w & 15u) != 0)
        return -1;
    // The forms built: what the forward pass asks for (a norm never comes with the accumulate form).
    if ((epi == EPI_SILU && bias) || (epi == EPI_ACC && norm) || (epi != EPI_STORE && epi != EPI_SILU && epi != EPI_ACC))
        return -1;
    if (rope && (epi != EPI_STORE || rope->head_dim <= 0 || rope->head_dim % 16 != 0 || rope->q_heads <= 0 ||
                 rope->kv_heads <= 0 || (int64_t)(rope->q_heads + 2 * rope->kv_heads) * rope->head_dim != m))
        return -1;
    const device_info dev = current_device();
    const bool pdl = v.pdl && dev.pdl;
    if (norm && staged_bytes(n, k) > stage_max())
        return -1;
    bf16 *o = (bf16 *)out;
    const bf16 *xb = (const bf16 *)x, *Wb = (const bf16 *)W, *bb = (const bf16 *)bias;
    fusion fu = {(const bf16 *)norm_w, eps, {}};
    cudaStream_t s = (cudaStream_t)stream;
    cudaError_t e;
    if (rope) {
        fu.rope = *rope;
        e = launch_fused<EPI_ROPE>(dev, pdl, norm, o, xb, Wb, bb, fu, n, m, k, s);
    } else if (epi == EPI_SILU) {
        e = launch_fused<EPI_SILU>(dev, pdl, norm, o, xb, Wb, bb, fu, n, m, k, s);
    } else if (epi == EPI_ACC) {
        e = launch_fused<EPI_ACC>(dev, pdl, norm, o, xb, Wb, bb, fu, n, m, k, s);
    } else {
        e = norm ? launch_fused<EPI_STORE>(dev, pdl, norm, o, xb, Wb, bb, fu, n, m, k, s)
                 : launch_variant(v, n, o, xb, Wb, bb, m, k, s);
    }
    const cudaError_t last = cudaGetLastError();
    return (int)(e != cudaSuccess ? e : last);
}

extern "C" int ss_cuda_gemv_variant_count(void)
{
    return kNumVariants;
}

extern "C" const char *ss_cuda_gemv_variant_name(int variant)
{
    return variant >= 0 && variant < kNumVariants ? kVariants[variant].name : NULL;
}

extern "C" int ss_cuda_gemv_variant(void)
{
    return current_variant();
}

extern "C" int ss_cuda_gemv_set_variant(int variant)
{
    if (variant < 0 || variant >= kNumVariants)
        return (int)cudaErrorInvalidValue;
    g_variant.store(variant, std::memory_order_relaxed);
    return 0;
}

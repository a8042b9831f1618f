// gemv.cu — the skinny GEMM of decoding: out[n, m] = x[n, k] . W[m, k]^T (+ bias) for n <= 16 (fp8 weights: 32),
// streaming W once at close to the memory bandwidth (also over fp8 e4m3 weights with a scale a row, backend.h's linear
// format, in the tensor-core family: W8A16 with x rounded to f16). Two kernel families, chosen by a run-time variant
// (benchmarks compare them in one run; the server keeps the default): a SIMT kernel (each warp owns R rows, lanes load
// 16 bytes per row per step) and a tensor-core kernel (a block owns a tile of 16 rows, or two for fp8 weights at 9..16
// x rows where two_row_tiles says so; its warps split k, mma.sync m16n8k16 with x as the n side: one tile of 8 x rows,
// two for 9..16, four for fp8's 17..32; the SIMT family takes up to 8). The backend (backend_cuda.c) sends 17+ bf16
// rows, and 9+ of bf16 matrices larger than 8B's gate/up, to cuBLASLt, and fp8's 17+ to the e4m3 GEMM (its switch
// SS_FP8_GEMV_WIDE_ELEMS sends 17-32 rows of small matrices here). On sm_90+ both can be launched with programmatic
// dependent launch: the first loads of W (never written by a kernel) are issued before waiting for the previous
// kernel. The tensor-core kernel also has a SwiGLU form for the MLP's fused gate/up weight: each tile takes 8
// gate rows and the 8 matching up rows, and stores silu(gate) * up, so no separate kernel follows.
#include <atomic>
#include <stdlib.h>
#include <string.h>

#include "backend/cuda/common.cuh"
#include "backend/cuda/cuda_kernels.h"
#include "backend/cuda/kv_fp8.cuh"

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

// Four bf16 values (two packed pairs) as two packed f16 pairs (round to nearest, saturated at +-65504).
__device__ __forceinline__ void bf16x4_to_h2(uint32_t p, uint32_t q, uint32_t &a, uint32_t &b)
{
    a = h2_satfinite(bf16_lo(p), bf16_hi(p));
    b = h2_satfinite(bf16_lo(q), bf16_hi(q));
}

// One 16-byte chunk of each of the lane's two rows (ra: row g, rb: row g + 8) against the matching x values of NT
// tiles of 8 x rows: bf16 weights are 8 k values a chunk (two mma a tile), e4m3 weights 16 (four mma a tile, x rounded
// to f16 to meet them; the weights are converted once for all tiles). x_at(i, j) returns x's 16-byte chunk j of the
// lane's k range in tile i (bf16: 1 of them, fp8: 2).
template <bool FP8, int NT, typename XAt>
__device__ __forceinline__ void mma_chunk(float (&acc0)[NT][4], float (&acc1)[NT][4], const uint4 &ra, const uint4 &rb,
                                          XAt x_at)
{
    if constexpr (!FP8) {
#pragma unroll
        for (int i = 0; i < NT; i++) {
            const uint4 xv = x_at(i, 0);
            mma_16816<false>(acc0[i], ra.x, rb.x, ra.y, rb.y, xv.x, xv.y);
            mma_16816<false>(acc1[i], ra.z, rb.z, ra.w, rb.w, xv.z, xv.w);
        }
    } else if constexpr (NT == 1) { // (the code before the two-tile form, whose speed was measured)
        const uint32_t wa[4] = {ra.x, ra.y, ra.z, ra.w}, wb[4] = {rb.x, rb.y, rb.z, rb.w};
#pragma unroll
        for (int h = 0; h < 2; h++) {
            const uint4 xv = x_at(0, h);
            const uint32_t xs[4] = {xv.x, xv.y, xv.z, xv.w};
#pragma unroll
            for (int j = 0; j < 2; j++) { // mma over the chunk's elements 8h + 4j .. + 3
                uint32_t b0, b1;
                bf16x4_to_h2(xs[2 * j], xs[2 * j + 1], b0, b1);
                const uint32_t a = wa[2 * h + j], b = wb[2 * h + j];
                mma_16816<true>(j ? acc1[0] : acc0[0], e4m3x2_h2(a), e4m3x2_h2(b), e4m3x2_h2_hi(a), e4m3x2_h2_hi(b),
                                b0, b1);
            }
        }
    } else {
        const uint32_t wa[4] = {ra.x, ra.y, ra.z, ra.w}, wb[4] = {rb.x, rb.y, rb.z, rb.w};
#pragma unroll
        for (int h = 0; h < 2; h++) {
#pragma unroll
            for (int j = 0; j < 2; j++) { // mma over the chunk's elements 8h + 4j .. + 3
                const uint32_t a = wa[2 * h + j], b = wb[2 * h + j];
                const uint32_t a0 = e4m3x2_h2(a), a1 = e4m3x2_h2(b), a2 = e4m3x2_h2_hi(a), a3 = e4m3x2_h2_hi(b);
#pragma unroll
                for (int i = 0; i < NT; i++) {
                    const uint4 xv = x_at(i, h);
                    const uint32_t xs[4] = {xv.x, xv.y, xv.z, xv.w};
                    uint32_t b0, b1;
                    bf16x4_to_h2(xs[2 * j], xs[2 * j + 1], b0, b1);
                    mma_16816<true>(j ? acc1[i] : acc0[i], a0, a1, a2, a3, b0, b1);
                }
            }
        }
    }
}

// Blocks per SM each mma configuration is built for (registers capped to fit; shared memory is small). Two tiles of
// x (NT 2) hold twice the x registers: a block fewer. Two row tiles a block (MT 2, 2 chunks a step: as many loads in
// flight a warp as one tile's 4) hold twice the accumulators: 2 blocks of 8 warps, 1 of 16. Four tiles of x (NT 4, fp8
// only: 8 warps, 2 chunks a step, one row tile) fit 2 blocks in 128 registers.
constexpr int mma_min_blocks(int warps, int unroll, int nt, int mt)
{
    return nt > 2 ? 2 : mt > 1 ? (warps >= 16 ? 1 : 2)
                  : (warps <= 4 ? 4 : (warps >= 16 ? 2 : (unroll <= 4 ? 3 : 2))) - (nt > 1 ? 1 : 0);
}

// Block b owns MT row tiles, rows [16 MT b, 16 MT (b + 1)) (SILU: output rows [8 MT b, 8 MT (b + 1))); its WARPS
// warps split the 16-byte chunks of a row (k/8 of bf16, k/16 of e4m3) into contiguous slices, and each x load meets the weights of all MT tiles (MT 2: half the x
// loads a weight byte, which matter from 9 rows: at 16 x reads as many bytes through L1/L2 as bf16 W from memory).
// What follows describes one row tile.
// Lane (g = lane/4, t = lane%4) loads, per step u, chunk c = base + 4u + t of rows g and g+8 and of x rows
// g + 8i (i < NT, g + 8i < n). The mma's k slots are a permutation of real k that is the same for A and B: slots
// (2t, 2t+1, 2t+8, 2t+9) of the first mma are elements 0..3 of chunk c, those of the second mma elements 4..7. So
// the 16-byte loads feed the fragments as they are, with no shuffles (FP8: chunk element 4j + e fills slot e of mma
// j, x's as well). NT tiles of 8 x rows (n <= 8 NT) share each weight fragment: W is read once for all n rows. The
// warps' partial 16x8 tiles are summed through shared memory in warp order (deterministic), scaled by their row's
// wscale[row] (FP8), then bias is added and out[col, row] stored.
// SILU: W is [2m, k] (gate rows, then up rows) and a row tile owns 8 output rows: its rows g are gate rows, its rows
// g + 8 the same rows of up; out = silu(gate) * up (bias unused).
// The epilogue's outputs e < count over the block's threads: f(e) for e = threadIdx.x + p * WARPS * 32. STRIDED: a
// plain loop; else PASSES unrolled passes (count <= PASSES * WARPS * 32).
template <int WARPS, int PASSES, bool STRIDED, typename F>
__device__ __forceinline__ void epilogue_each(unsigned count, F f)
{
    if constexpr (STRIDED) {
        for (unsigned e = threadIdx.x; e < count; e += WARPS * 32)
            f(e);
    } else {
#pragma unroll
        for (int pass = 0; pass < PASSES; pass++) {
            const unsigned e = threadIdx.x + pass * WARPS * 32;
            if (e >= count)
                break;
            f(e);
        }
    }
}

template <int WARPS, int U, typename OutT, bool SILU, bool FP8, int NT, int MT>
__global__ void __launch_bounds__(WARPS * 32, mma_min_blocks(WARPS, U, NT, MT))
    gemv_mma(OutT *__restrict__ out, const bf16 *__restrict__ x, const void *__restrict__ Wv,
             const float *__restrict__ wscale, const bf16 *__restrict__ bias, int n, int m, int k)
{
    constexpr int KPC = FP8 ? 16 : 8; // k values a 16-byte chunk of W holds
    constexpr int ROWS = SILU ? 8 : 16; // output rows a row tile
    const uint8_t *W = static_cast<const uint8_t *>(Wv);
    const int64_t row_bytes = FP8 ? (int64_t)k : 2 * (int64_t)k;
    static_assert(WARPS * 32 >= 128, "the epilogue needs 128 threads");
    __shared__ float red[WARPS][4 * NT * MT][32];
    pdl_launch_dependents();
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    const int g = lane >> 2, t = lane & 3;
    const int64_t row0 = (int64_t)blockIdx.x * ROWS * MT;
    const uint4 *wa[MT], *wb[MT];
#pragma unroll
    for (int r = 0; r < MT; r++) {
        const int64_t rt = row0 + ROWS * r;
        const int64_t ra = rt + g < m ? rt + g : m - 1; // rows past the end repeat the last (not stored)
        const int64_t rb = SILU ? m + ra : (rt + g + 8 < m ? rt + g + 8 : m - 1);
        wa[r] = reinterpret_cast<const uint4 *>(W + ra * row_bytes);
        wb[r] = reinterpret_cast<const uint4 *>(W + rb * row_bytes);
    }
    bool has_x[NT];
    const uint4 *xr[NT];
#pragma unroll
    for (int i = 0; i < NT; i++) {
        has_x[i] = g + 8 * i < n;
        xr[i] = reinterpret_cast<const uint4 *>(x + (int64_t)(has_x[i] ? g + 8 * i : 0) * k);
    }
    const int kc = k / KPC;
    const int per_warp = (kc + WARPS - 1) / WARPS;
    const int cbeg = warp * per_warp;
    const int cend = cbeg + per_warp < kc ? cbeg + per_warp : kc;
    const uint4 zero = make_uint4(0, 0, 0, 0);

    float acc0[MT][NT][4], acc1[MT][NT][4];
#pragma unroll
    for (int r = 0; r < MT; r++)
#pragma unroll
        for (int i = 0; i < NT; i++)
#pragma unroll
            for (int j = 0; j < 4; j++)
                acc0[r][i][j] = acc1[r][i][j] = 0.0f;
    uint4 va[MT][U], vb[MT][U];
#pragma unroll
    for (int u = 0; u < U; u++) {
        const int c = cbeg + 4 * u + t;
#pragma unroll
        for (int r = 0; r < MT; r++) {
            va[r][u] = c < cend ? load_stream(wa[r] + c) : zero;
            vb[r][u] = c < cend ? load_stream(wb[r] + c) : zero;
        }
    }
    pdl_wait(); // W of the first step is in flight; x may be the previous kernel's output
    for (int base = cbeg; base < cend; base += 4 * U) {
        constexpr int XC = KPC / 8; // x's 16-byte chunks a W chunk meets
        uint4 xv[U][NT][XC];
#pragma unroll
        for (int u = 0; u < U; u++) {
            const int c = base + 4 * u + t;
#pragma unroll
            for (int i = 0; i < NT; i++)
#pragma unroll
                for (int h = 0; h < XC; h++)
                    xv[u][i][h] = has_x[i] && c < cend ? load_after_wait(xr[i] + (int64_t)c * XC + h) : zero;
        }
#pragma unroll
        for (int u = 0; u < U; u++)
#pragma unroll
            for (int r = 0; r < MT; r++)
                mma_chunk<FP8, NT>(acc0[r], acc1[r], va[r][u], vb[r][u], [&](int i, int h) { return xv[u][i][h]; });
        const int next = base + 4 * U;
        if (next < cend) {
#pragma unroll
            for (int u = 0; u < U; u++) {
                const int c = next + 4 * u + t;
#pragma unroll
                for (int r = 0; r < MT; r++) {
                    va[r][u] = c < cend ? load_stream(wa[r] + c) : zero;
                    vb[r][u] = c < cend ? load_stream(wb[r] + c) : zero;
                }
            }
        }
    }

#pragma unroll
    for (int r = 0; r < MT; r++)
#pragma unroll
        for (int i = 0; i < NT; i++)
#pragma unroll
            for (int j = 0; j < 4; j++)
                red[warp][4 * (NT * r + i) + j][lane] = acc0[r][i][j] + acc1[r][i][j];
    __syncthreads();
    // bf16 (session 57): a plain loop over the epilogue's outputs; fp8: the unrolled passes, for NT 1 the code before
    // the two-tile form. The loop leaves the hot loop's PTX as it was, yet on one H200 it made 8B decode steps at
    // batch 2 / 4 / 8 3.7 / 4.0 / 4.5% faster in bf16, and with fp8 weights 2.5-3.3% slower at batch 2 and 8
    // (session 56) and 3.1% at 9-16 (two tiles, session 57): not understood.
    // Output e of a tile is register j of lane l; tile q = NT r + i is x tile i of row tile r.
    constexpr int kPass = 1 + (128 * NT * MT - 1) / (WARPS * 32); // passes of the epilogue's threads
    if constexpr (SILU) {
        epilogue_each<WARPS, kPass, !FP8>(64 * NT * MT, [&](unsigned e) {
            // registers j (gate) and j + 2 (up) of lane l of tile q: one output
            const int l = e & 31, j = NT * MT == 1 ? e >> 5 : (e >> 5) & 1, q = NT * MT == 1 ? 0 : e >> 6;
            float gs = 0.0f, us = 0.0f;
#pragma unroll
            for (int w = 0; w < WARPS; w++) {
                gs += red[w][4 * q + j][l];
                us += red[w][4 * q + j + 2][l];
            }
            const int i = MT == 1 ? q : q % NT, r = MT == 1 ? 0 : q / NT;
            const int64_t row = row0 + ROWS * r + (l >> 2);
            const int col = 8 * i + 2 * (l & 3) + j;
            if constexpr (FP8)
                if (row < m)
                    gs *= wscale[row], us *= wscale[m + row];
            if (row < m && col < n) // as silu_mul_kernel, from the f32 sums
                store_out(out + (int64_t)col * m + row, gs / (1.0f + __expf(-gs)) * us);
        });
    } else {
        epilogue_each<WARPS, kPass, !FP8>(128 * NT * MT, [&](unsigned e) {
            const int l = e & 31, j = NT * MT == 1 ? e >> 5 : (e >> 5) & 3, q = NT * MT == 1 ? 0 : e >> 7;
            float v = 0.0f;
#pragma unroll
            for (int w = 0; w < WARPS; w++)
                v += red[w][4 * q + j][l];
            const int i = MT == 1 ? q : q % NT, r = MT == 1 ? 0 : q / NT;
            const int64_t row = row0 + ROWS * r + (l >> 2) + (j >= 2 ? 8 : 0);
            const int col = 8 * i + 2 * (l & 3) + (j & 1);
            if constexpr (FP8)
                if (row < m)
                    v *= wscale[row];
            if (row < m && col < n)
                store_out(out + (int64_t)col * m + row, v + (bias ? __bfloat162float(bias[row]) : 0.0f));
        });
    }
}

// ---------------------------------------------------------------- variants and launch

enum family { FAM_SIMT_BASE, FAM_SIMT, FAM_MMA };

struct variant {
    const char *name;
    family fam;
    int warps, unroll; // FAM_MMA only; warps 0: chosen from m and the SM count (mma_auto)
    bool pdl;
    int mt; // FAM_MMA only: row tiles a block (1 or 2; 2 takes 2 chunks a step, 8 warps or 16)
};

// Index 0 is the default (H200, n = 1: qkv 90%, o 81%, gate/up 99% of copy bandwidth; SIMT with x read
// after the PDL wait is slower: qkv 79%). The names are what SS_GEMV_VARIANT accepts (or the index).
constexpr variant kVariants[] = {
    {"mma-auto-pdl", FAM_MMA, 0, 4, true, 1},   {"mma-auto", FAM_MMA, 0, 4, false, 1},
    {"mma-w8u4-pdl", FAM_MMA, 8, 4, true, 1},   {"mma-w16u4-pdl", FAM_MMA, 16, 4, true, 1},
    {"mma-w8u8-pdl", FAM_MMA, 8, 8, true, 1},   {"mma-w4u8-pdl", FAM_MMA, 4, 8, true, 1},
    {"simt-pdl", FAM_SIMT, 0, 0, true, 1},      {"simt", FAM_SIMT, 0, 0, false, 1},
    {"base", FAM_SIMT_BASE, 0, 0, false, 1},    {"mma-m2-pdl", FAM_MMA, 8, 2, true, 2},
    {"mma-m2w16-pdl", FAM_MMA, 16, 2, true, 2},
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
cudaError_t launch(bool pdl, void (*kernel)(KArgs...), unsigned blocks, unsigned threads, cudaStream_t s,
                   Args... args)
{
    cudaLaunchAttribute attr[1];
    attr[0].id = cudaLaunchAttributeProgrammaticStreamSerialization;
    attr[0].val.programmaticStreamSerializationAllowed = 1;
    cudaLaunchConfig_t cfg = {};
    cfg.gridDim = dim3(blocks);
    cfg.blockDim = dim3(threads);
    cfg.dynamicSmemBytes = 0;
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
    return launch(pdl, gemv_simt<N, R, U, OutT>, blocks_for(warps, kSimtWarps), kSimtWarps * 32, s, out, x, W,
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

// n <= 8: one tile of x rows; up to 16: two. MT row tiles a block.
template <int WARPS, int U, typename OutT, bool SILU, bool FP8, int MT = 1>
cudaError_t launch_mma(bool pdl, OutT *out, const bf16 *x, const void *W, const float *wscale, const bf16 *bias,
                       int64_t n, int m, int k, cudaStream_t s)
{
    const auto kernel =
        n > 8 ? gemv_mma<WARPS, U, OutT, SILU, FP8, 2, MT> : gemv_mma<WARPS, U, OutT, SILU, FP8, 1, MT>;
    return launch(pdl, kernel, blocks_for(m, (SILU ? 8 : 16) * MT), WARPS * 32, s, out, x, W, wscale, bias, (int)n, m,
                  k);
}

// Whether fp8 weights at 9-16 x rows take two row tiles a block (8 warps) rather than one, for a matrix of `tiles` row
// tiles. x (bf16) is two bytes a weight's one, so with one row tile a block x's loads through L1/L2 come to twice W's
// bytes; two tiles a block halve them, but there are half as many blocks (both forms fit 2 blocks an SM). The model:
// a two-tile block takes 1.6 times a one-tile block's time, and a launch takes as many of those as it has waves of
// blocks. Fitted on one H200 (session 58, bench_backend --linear-rows --weights fp8, 12 and 16 rows): it picks the
// faster form for all 12 projections of 8B, 70B and 70B at tp 4 (two tiles -2 to -20% on 8B's qkv and gate/up and on
// 70B's o, gate/up and down, tp 4 too; one tile where two would leave SMs idle: 8B's o and down +18-36% with two,
// 70B's qkv +2-6%, at tp 4 +31-38%). Decode steps at batch 12 / 16 with this rule: 8B -7.4 / -7.4% against one tile
// everywhere (session 57's default), a 70B shape (8 layers) -7.9 / -7.8% against session 57's default and -7.1 / -7.0%
// against the e4m3 GEMM. bf16 lost with two tiles everywhere (8B steps +9%, 70B's +3-4%, against one tile): it keeps
// one.
bool two_row_tiles(int64_t tiles, int sms)
{
    if (sms <= 0)
        return false;
    const int64_t slots = 2 * (int64_t)sms;
    const int64_t waves1 = (tiles + slots - 1) / slots, waves2 = ((tiles + 1) / 2 + slots - 1) / slots;
    return 8 * waves2 <= 5 * waves1;
}

// SILU: the tensor-core SwiGLU form (m output columns from 2m weight rows); the caller checked v is FAM_MMA.
// FP8: W holds e4m3 rows with the scales wscale[row] (tensor-core family only: the caller passes an mma variant).
template <typename OutT, bool SILU = false, bool FP8 = false>
cudaError_t launch_variant(const variant &v, int64_t n, OutT *out, const bf16 *x, const void *W, const float *wscale,
                           const bf16 *bias, int m, int k, cudaStream_t s)
{
    const device_info dev = current_device();
    const bool pdl = v.pdl && dev.pdl;
    if constexpr (!SILU && !FP8) {
        if (v.fam != FAM_MMA && n <= 8) // (the SIMT family takes up to 8 rows; more run on the tensor-core default)
            return launch_simt_any(v, n, out, x, static_cast<const bf16 *>(W), bias, m, k, s, pdl);
        if (v.fam != FAM_MMA)
            return launch_variant<OutT, SILU, FP8>(kVariants[0], n, out, x, W, wscale, bias, m, k, s);
    }
    const int64_t tiles = SILU ? ((int64_t)m + 7) / 8 : ((int64_t)m + 15) / 16; // row tiles of one block each
    // fp8 linear at 17-32 rows: four tiles of x rows, one form whatever the variant (8 warps, 2 chunks a step, one row
    // tile a block: of five forms timed call by call on one H200, session 59, the fastest on 8B's qkv and o at 17-24
    // rows, where the e4m3 GEMM is slow; it loses to the GEMM on larger matrices: four tiles read x's bytes four times
    // W's through L1/L2, so the SwiGLU form, 60-67 us on 8B's gate/up against 38-39, was dropped. Two row tiles a
    // block, 1 block an SM, beat it on down and lost up to 20% on qkv. An e4m3-to-bf16 conversion by integer ops
    // instead of cvt, bf16 mma, made 8B steps at 4-16 rows 7-9% slower).
    if constexpr (FP8 && !SILU)
        if (n > SS_CUDA_GEMV_MAX_N)
            return launch(pdl, gemv_mma<8, 2, OutT, SILU, FP8, 4, 1>, blocks_for(m, 16), 8 * 32, s, out, x, W, wscale,
                          bias, (int)n, m, k);
    if (FP8 && n > 8 && v.warps == 0 && two_row_tiles(tiles, dev.sms))
        return launch_mma<8, 2, OutT, SILU, FP8, 2>(pdl, out, x, W, wscale, bias, n, m, k, s);
    if (v.warps == 0) {
        // Auto: the row tiles (16 rows each) should all be resident at once with as many bytes in flight
        // per SM as possible. Up to 2 tiles per SM: 16 warps a tile (2 blocks/SM, 32 warps); otherwise 8
        // warps a tile (3 blocks/SM; large m runs several waves either way).
        // fp8 rows are half as long: 8 warps x 4 chunks won for every shape at batch 1 (387.6 tok/s on the H200
        // against 377.5 with this rule, 342.1 with 16 warps always; session 19).
        // (Two tiles of x rows, n > 8, keep 8 warps: the 16-warp two-tile form's registers leave one block a SM, so
        // the tiles would not all be resident; unmeasured.)
        if (!FP8 && n <= 8 && dev.sms > 0 && tiles <= 2 * (int64_t)dev.sms) {
            // (8 warps x 8 chunks was ahead of 16 x 4 in bench_backend on the H200 for both m = 4096 shapes,
            // o_proj 85.4 vs 80.4% of copy, but not end to end: 225.0 vs 225.1-225.7 tok/s at batch 1,
            // 1,782 vs 1,768 at batch 8, session 5.)
            return launch_mma<16, 4, OutT, SILU, FP8>(pdl, out, x, W, wscale, bias, n, m, k, s);
        }
        return launch_mma<8, 4, OutT, SILU, FP8>(pdl, out, x, W, wscale, bias, n, m, k, s);
    }
    if (v.mt == 2 && v.warps == 16)
        return launch_mma<16, 2, OutT, SILU, FP8, 2>(pdl, out, x, W, wscale, bias, n, m, k, s);
    if (v.mt == 2)
        return launch_mma<8, 2, OutT, SILU, FP8, 2>(pdl, out, x, W, wscale, bias, n, m, k, s);
    if (v.warps == 4)
        return launch_mma<4, 8, OutT, SILU, FP8>(pdl, out, x, W, wscale, bias, n, m, k, s);
    if (v.warps == 16)
        return launch_mma<16, 4, OutT, SILU, FP8>(pdl, out, x, W, wscale, bias, n, m, k, s);
    if (v.unroll == 8)
        return launch_mma<8, 8, OutT, SILU, FP8>(pdl, out, x, W, wscale, bias, n, m, k, s);
    return launch_mma<8, 4, OutT, SILU, FP8>(pdl, out, x, W, wscale, bias, n, m, k, s);
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
    const cudaError_t e = out_f32 ? launch_variant(v, n, (float *)out, xb, Wb, nullptr, bb, m, k, s)
                                  : launch_variant(v, n, (bf16 *)out, xb, Wb, nullptr, bb, m, k, s);
    const cudaError_t last = cudaGetLastError();
    return (int)(e != cudaSuccess ? e : last);
}

extern "C" int ss_cuda_gemv_silu(void *stream, void *out, const void *x, const void *W, int64_t n, int32_t inter,
                                 int32_t k)
{
    const variant &v = kVariants[current_variant()]; // read once: the knob may change between calls
    if (!ss_cuda_gemv_supported(x, W, n, k) || inter <= 0 || v.fam != FAM_MMA)
        return -1;
    const cudaError_t e = launch_variant<bf16, true>(v, n, (bf16 *)out, (const bf16 *)x, W, nullptr, nullptr, inter, k,
                                                     (cudaStream_t)stream);
    const cudaError_t last = cudaGetLastError();
    return (int)(e != cudaSuccess ? e : last);
}

// The fp8 forms always take the tensor-core family: the variant knob's mma settings when it names one, else auto.
static const variant &fp8_variant()
{
    const variant &v = kVariants[current_variant()];
    return v.fam == FAM_MMA ? v : kVariants[0];
}

extern "C" int ss_cuda_gemv_fp8_supported(const void *x, const void *W, int64_t n, int32_t k)
{
    return n >= 1 && n <= SS_CUDA_GEMV_FP8_MAX_N && k > 0 && k % 16 == 0 && ((uintptr_t)x & 15u) == 0 &&
           ((uintptr_t)W & 15u) == 0;
}

extern "C" int ss_cuda_gemv_fp8(void *stream, void *out, const void *x, const void *W, const float *scale,
                                const void *bias, int64_t n, int32_t m, int32_t k)
{
    if (!ss_cuda_gemv_fp8_supported(x, W, n, k) || m <= 0)
        return (int)cudaErrorInvalidValue;
    const cudaError_t e = launch_variant<bf16, false, true>(fp8_variant(), n, (bf16 *)out, (const bf16 *)x, W, scale,
                                                            (const bf16 *)bias, m, k, (cudaStream_t)stream);
    const cudaError_t last = cudaGetLastError();
    return (int)(e != cudaSuccess ? e : last);
}

extern "C" int ss_cuda_gemv_silu_fp8(void *stream, void *out, const void *x, const void *W, const float *scale,
                                     int64_t n, int32_t inter, int32_t k)
{
    if (!ss_cuda_gemv_fp8_supported(x, W, n, k) || n > SS_CUDA_GEMV_MAX_N || inter <= 0) // (no four-tile SwiGLU form)
        return -1;
    const cudaError_t e = launch_variant<bf16, true, true>(fp8_variant(), n, (bf16 *)out, (const bf16 *)x, W, scale,
                                                           nullptr, inter, k, (cudaStream_t)stream);
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

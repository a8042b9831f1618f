// gemm_wgmma.cu — the GEMM of decode batches too large for the GEMV on Hopper's warpgroup MMA: out[n, m] = x[n, k] .
// W[m, k]^T (+ bias), bf16 in and out, f32 sums. cuBLASLt ran the small projections at 128 rows at 51-67% of the copy
// rate (docs/performance.md, session 42); here a CTA owns BM weight rows x 128 tokens over one slice of k, so that
// a launch fills the SMs, and the `splits` CTAs of a tile's slices form a thread block cluster that sums their
// partial tiles through distributed shared memory. Two warpgroups of BM/2 rows each; all 256 threads stream W and x
// through shared memory by cp.async (the 128-byte swizzle, 64 elements of k a stage, 192 KB of stages: two ahead of
// the products at BM 256, four at BM 128). Built for sm_90a; the sm_80 build traps (the host launches it on sm_90
// only, ss_cuda_gemm_wg_probe).
#include <cooperative_groups.h>

#include "backend/cuda/cp_async.cuh"
#include "backend/cuda/cuda_kernels.h"
#include "backend/cuda/wgmma.cuh"

namespace ss
{
namespace
{

constexpr int kThreads = 256;           // two warpgroups
constexpr int kN = 128;                 // tokens a CTA (wgmma's n)
constexpr int kK = 64;                  // k a stage: one 128-byte row of the swizzle
constexpr int kStageBytes = 192 * 1024; // all stages together

template <int BM> struct Tile {
    static constexpr int kWBytes = BM * kK * 2;                       // a stage's weight rows
    static constexpr int kXBytes = kN * kK * 2;                       // a stage's token rows
    static constexpr int kStages = kStageBytes / (kWBytes + kXBytes); // 4 (BM 256) or 6 (BM 128)
    static constexpr int kAhead = kStages - 2;                        // stages in flight beyond the one multiplied
    static constexpr int kRedStride = BM + 4;             // floats a token's partial row (spreads the banks)
    static constexpr int kRedBytes = kN * kRedStride * 4; // the partial tile, over the stages once they are done
    static constexpr int kSmem =
        (kRedBytes > kStageBytes ? kRedBytes : kStageBytes) + 1024; // + the swizzle's alignment
    static constexpr int kProducts = BM / 128;                      // m64 products of a warpgroup
};

static_assert(Tile<256>::kStages == 4 && Tile<256>::kAhead == 2 && Tile<256>::kProducts == 2 &&
                  Tile<128>::kStages == 6 && Tile<128>::kAhead == 4 && Tile<128>::kProducts == 1,
              "the stages fill 192 KB");
static_assert(Tile<256>::kRedBytes <= kStageBytes && (Tile<256>::kWBytes + Tile<256>::kXBytes) % 1024 == 0 &&
                  (Tile<128>::kWBytes + Tile<128>::kXBytes) % 1024 == 0,
              "the partial tile fits over the stages; every operand starts on the swizzle's 1024-byte period");

struct GemmParams {
    bf16 *out;        // [n, m]
    const bf16 *x;    // [n, k]
    const bf16 *W;    // [m, k]
    const bf16 *bias; // [m] or NULL
    int n, m, k;
};

template <int BM> __global__ void __launch_bounds__(kThreads, 1) gemm_wgmma_kernel(const GemmParams p)
{
#if defined(__CUDA_ARCH__) && defined(__CUDA_ARCH_FEAT_SM90_ALL)
    using T = Tile<BM>;
    extern __shared__ uint8_t smem_raw[];
    const uint32_t raw = (uint32_t)__cvta_generic_to_shared(smem_raw);
    uint8_t *const sm = smem_raw + ((1024 - (raw & 1023)) & 1023);
    const uint32_t sa = (uint32_t)__cvta_generic_to_shared(sm);
    auto w_off = [](int b) { return b * (T::kWBytes + T::kXBytes); };
    auto x_off = [](int b) { return b * (T::kWBytes + T::kXBytes) + T::kWBytes; };

    const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5, wg = warp >> 2;
    const int m0 = blockIdx.x * BM, t0 = blockIdx.y * kN;
    const int splits = gridDim.z, z = blockIdx.z, steps = p.k / kK;
    const int s_beg = (int)((int64_t)steps * z / splits), n_st = (int)((int64_t)steps * (z + 1) / splits) - s_beg;

    // Stage b from step s (k elements [64 s, 64 s + 64)): BM weight rows, then 128 token rows (tokens past n are zeros
    // and read nothing).
    auto load_w = [&](int b, int s) {
        const bf16 *src = p.W + (int64_t)m0 * p.k + (int64_t)s * kK;
#pragma unroll
        for (int i = 0; i < BM * 8 / kThreads; i++) {
            const int c = tid + i * kThreads, r = c >> 3, ch = c & 7;
            cp_async16(sm + w_off(b) + sw128_off(r, ch), src + (int64_t)r * p.k + ch * 8, true);
        }
    };
    auto load_x = [&](int b, int s) {
#pragma unroll
        for (int i = 0; i < kN * 8 / kThreads; i++) {
            const int c = tid + i * kThreads, r = c >> 3, ch = c & 7;
            const bool ok = t0 + r < p.n;
            const bf16 *src = p.x + (ok ? (int64_t)(t0 + r) * p.k : 0) + (int64_t)s * kK + ch * 8;
            cp_async16(sm + x_off(b) + sw128_off(r, ch), src, ok);
        }
    };
    // The weights of the first stages before waiting for the previous kernel (no kernel writes them), x after.
    for (int b = 0; b < T::kAhead && b < n_st; b++)
        load_w(b, s_beg + b);
    pdl_wait();
    for (int b = 0; b < T::kAhead; b++) {
        if (b < n_st)
            load_x(b, s_beg + b);
        cp_async_commit(); // one group a stage, empty or not: the wait below counts groups
    }

    float acc[T::kProducts][64];
#pragma unroll
    for (int h = 0; h < T::kProducts; h++)
#pragma unroll
        for (int i = 0; i < 64; i++)
            acc[h][i] = 0.0f;
    // Step i: stage i % kStages has landed (its group is the oldest of kAhead in flight), every warpgroup has
    // finished step i - 2's products (each waited for all but its newest group at the end of step i - 1), so stage
    // (i + kAhead) % kStages, step i - 2's, is refilled; then step i's products, and a wait for step i - 1's.
    for (int i = 0; i < n_st; i++) {
        cp_async_wait<T::kAhead - 1>();
        fence_proxy_async();
        __syncthreads();
        if (i + T::kAhead < n_st) {
            load_w((i + T::kAhead) % T::kStages, s_beg + i + T::kAhead);
            load_x((i + T::kAhead) % T::kStages, s_beg + i + T::kAhead);
        }
        cp_async_commit();
        const int b = i % T::kStages;
        wgmma_fence(); // (no fence_regs in the loop: an asm that names acc while a product writes it serialises them)
#pragma unroll
        for (int h = 0; h < T::kProducts; h++) // (product-major: interleaving the two chains serialised them)
#pragma unroll
            for (int kk = 0; kk < kK / 16; kk++)
                wgmma_ss(acc[h], sw128_desc(sa + w_off(b) + (wg * (BM / 2) + h * 64) * 128 + kk * 32, 16, 1024),
                         sw128_desc(sa + x_off(b) + kk * 32, 16, 1024), 1);
        wgmma_commit();
        wgmma_wait1();
    }
    wgmma_wait0();
#pragma unroll
    for (int h = 0; h < T::kProducts; h++)
        fence_regs(acc[h]);
    cp_async_wait<0>();
    __syncthreads(); // every warpgroup is done with the stages: the partial tile overlays them
    pdl_launch_dependents();

    // The partial tile, token-major ([128][BM], rows padded): acc[h][4 nt + e] is weight row (warp's 16) gid + 8 (e >>
    // 1) of product h, token 8 nt + 2 tig + (e & 1) (wgmma's accumulator layout).
    float *red = reinterpret_cast<float *>(sm);
    const int gid = lane >> 2, tig = lane & 3;
#pragma unroll
    for (int h = 0; h < T::kProducts; h++)
#pragma unroll
        for (int nt = 0; nt < kN / 8; nt++)
#pragma unroll
            for (int e = 0; e < 4; e++) {
                const int row = wg * (BM / 2) + h * 64 + (warp & 3) * 16 + gid + 8 * (e >> 1);
                const int tok = nt * 8 + tig * 2 + (e & 1);
                red[tok * T::kRedStride + row] = acc[h][4 * nt + e];
            }
    namespace cg = cooperative_groups;
    if (splits > 1)
        cg::this_cluster().sync(); // every slice's partial tile is in its CTA's shared memory
    else
        __syncthreads();
    // Rank z sums its share of the tile's 4-row groups over the cluster's partial tiles and stores them (with the
    // bias).
    const int tokens = min(kN, p.n - t0), quads = BM / 4, units = tokens * quads;
    const int u_beg = (int)((int64_t)units * z / splits), u_end = (int)((int64_t)units * (z + 1) / splits);
    for (int u = u_beg + tid; u < u_end; u += kThreads) {
        const int tok = u / quads, r4 = (u - tok * quads) * 4;
        const int idx = tok * T::kRedStride + r4;
        float4 v = *reinterpret_cast<const float4 *>(red + idx);
        for (int s = 0; s < splits; s++) {
            if (s == z)
                continue;
            const float4 o = *reinterpret_cast<const float4 *>(cg::this_cluster().map_shared_rank(red + idx, s));
            v.x += o.x, v.y += o.y, v.z += o.z, v.w += o.w;
        }
        if (p.bias) {
            const uint2 bb = *reinterpret_cast<const uint2 *>(p.bias + m0 + r4);
            v.x += bf16_lo(bb.x), v.y += bf16_hi(bb.x), v.z += bf16_lo(bb.y), v.w += bf16_hi(bb.y);
        }
        *reinterpret_cast<uint2 *>(p.out + (int64_t)(t0 + tok) * p.m + m0 + r4) =
            make_uint2(pack2(v.x, v.y), pack2(v.z, v.w));
    }
    if (splits > 1)
        cg::this_cluster().sync(); // no CTA leaves while another still reads its shared memory
#elif defined(__CUDA_ARCH__)
    __trap(); // the host launches this kernel only on sm_90 (ss_cuda_gemm_wg_probe): reaching it is a build mismatch
#else
    (void)p;
#endif
}

template <int BM> cudaError_t set_smem()
{
    return cudaFuncSetAttribute(gemm_wgmma_kernel<BM>, cudaFuncAttributeMaxDynamicSharedMemorySize, Tile<BM>::kSmem);
}

// CTAs of gemm_wgmma_kernel<BM> resident at once in clusters of `size` (0 when it cannot launch).
template <int BM> int resident(int size)
{
    cudaLaunchConfig_t cfg = {};
    cudaLaunchAttribute attr;
    attr.id = cudaLaunchAttributeClusterDimension;
    attr.val.clusterDim.x = 1;
    attr.val.clusterDim.y = 1;
    attr.val.clusterDim.z = (unsigned)size;
    cfg.gridDim = dim3(1, 1, (unsigned)size);
    cfg.blockDim = dim3(kThreads);
    cfg.dynamicSmemBytes = Tile<BM>::kSmem;
    cfg.attrs = &attr;
    cfg.numAttrs = 1;
    int clusters = 0;
    if (cudaOccupancyMaxActiveClusters(&clusters, gemm_wgmma_kernel<BM>, &cfg) != cudaSuccess) {
        (void)cudaGetLastError();
        return 0;
    }
    return clusters * size;
}

template <int BM> int launch(cudaStream_t s, const GemmParams &p, int splits)
{
    cudaError_t e = set_smem<BM>();
    if (e == cudaSuccess) {
        const dim3 grid((unsigned)(p.m / BM), (unsigned)((p.n + kN - 1) / kN), (unsigned)splits);
        e = launch_pdl_cluster(gemm_wgmma_kernel<BM>, grid, dim3(kThreads), (size_t)Tile<BM>::kSmem, s,
                               (unsigned)splits, p);
    }
    if (e != cudaSuccess) {
        (void)cudaGetLastError(); // not left for the next launch's status
        return (int)e;
    }
    return launch_status();
}

} // namespace
} // namespace ss

using namespace ss;

extern "C" int ss_cuda_gemm_wg_probe(ss_gemm_wg_dev *d)
{
    *d = ss_gemm_wg_dev{};
    int dev = 0, major = 0, minor = 0;
    if (cudaGetDevice(&dev) != cudaSuccess ||
        cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, dev) != cudaSuccess ||
        cudaDeviceGetAttribute(&minor, cudaDevAttrComputeCapabilityMinor, dev) != cudaSuccess) {
        (void)cudaGetLastError();
        return 0;
    }
    if (major != 9 || minor != 0) // sm_90a code runs on sm_90 only
        return 0;
    if (set_smem<128>() != cudaSuccess || set_smem<256>() != cudaSuccess) {
        (void)cudaGetLastError();
        return 0;
    }
    for (int s = 1; s <= SS_GEMM_WG_MAX_SPLITS; s++) {
        d->resident[0][s] = resident<128>(s);
        d->resident[1][s] = resident<256>(s);
    }
    d->ok = d->resident[0][1] > 0 && d->resident[1][1] > 0;
    return d->ok;
}

extern "C" int ss_cuda_gemm_wg(void *stream, void *out, const void *x, const void *W, const void *bias, int64_t n,
                               int32_t m, int32_t k, int bm, int splits)
{
    if (n < 1 || n > (int64_t)65535 * kN || k % kK != 0 || (bm != 128 && bm != 256) || m % bm != 0 || splits < 1 ||
        splits > SS_GEMM_WG_MAX_SPLITS || splits > k / kK || !aligned16(out) || !aligned16(x) || !aligned16(W) ||
        ((uintptr_t)bias & 7u) != 0)
        return (int)cudaErrorInvalidValue;
    const GemmParams p = {(bf16 *)out, (const bf16 *)x, (const bf16 *)W, (const bf16 *)bias, (int)n, m, k};
    cudaStream_t s = (cudaStream_t)stream;
    return bm == 256 ? launch<256>(s, p, splits) : launch<128>(s, p, splits);
}

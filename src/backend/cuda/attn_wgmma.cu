// attn_wgmma.cu — the prefill form of the tensor-core attention on Hopper's warpgroup MMA (wgmma.mma_async), for
// 128-row blocks over a bf16 KV cache with heads of 128: the grid, rows and outputs of attn_tiled.cu's prefill forms.
// Two warpgroups of 64 rows share each 128-key tile of K and V, which all 256 threads stream through shared memory by
// cp.async (three stages, the layout of wgmma's 128-byte swizzle, mbarriers saying when a stage is full or free).
// S = Q K^T reads Q and K from shared memory (K-major); the softmax is attn_tiled.cu's (online, log2 domain); O += P V
// takes P from registers (the accumulator's layout is the A fragment's) and V from shared memory (N-major). The
// warpgroups take turns at the tensor cores, so that one's softmax runs beside the other's products (FA3's
// "ping-pong"). A form with a third warpgroup that only loads (FA3's warp specialisation: it gathers Q and the tiles
// by cp.async and says when each stage is full; the two computing warpgroups take the registers it gives up,
// setmaxnreg) is built too, behind the benchmark switch SS_ATTN_WG_WS=1: on an H200 it ran 7-10% slower than the
// default (session 53). Built for sm_90a; the sm_80 build traps (the host launches it on sm_90 only).
#include <math.h>
#include <stdlib.h>

#include "backend/cuda/attn_splits.h"
#include "backend/cuda/attn_tiled.cuh"
#include "backend/cuda/cp_async.cuh"
#include "backend/cuda/wgmma.cuh"

namespace ss {
namespace {

constexpr int kD = 128;       // head size
constexpr int kBM = 128;      // rows a CTA: two warpgroups of 64
constexpr int kBN = 128;      // keys a tile
constexpr int kMath = 256;     // two warpgroups compute
constexpr int kStages = 3;
template <bool kWS> constexpr int threads_of() { return kWS ? kMath + 128 : kMath; }
constexpr int kOpBytes = 128 * kD * 2; // Q, or one tile's K or V: 128 rows of 256 bytes
// Q, then per stage K and V, each operand on the swizzle's 1024-byte period (the slack aligns the base); then the
// stages' full and empty mbarriers. 225 KB: one CTA a SM.
constexpr int kSmemBytes = kOpBytes * (1 + 2 * kStages) + 1024 + 2 * kStages * 8;
static_assert(kBM == 128 && kBN == 128, "the operand layout (sw128_off) is for 128 rows");
static_assert(kBM == SS_ATTN_WG_ROWS, "the host's rule (ss_attn_prefill_wg) counts rows in these blocks");


// kWS: warpgroup 0 loads and warpgroups 1-2 compute; else both warpgroups compute and load.
template <bool kWS>
__global__ void __launch_bounds__(threads_of<kWS>(), 1) attn_wgmma_kernel(const AttnTiledParams p)
{
#if defined(__CUDA_ARCH__) && defined(__CUDA_ARCH_FEAT_SM90_ALL)
    constexpr int kLoaders = kWS ? 128 : kMath; // threads that issue the copies
    // With a loading warpgroup: 384 threads launch with 168 registers each; the loader keeps 40, the two computing
    // warpgroups take 232 (128 x 40 + 256 x 232 = 384 x 168).
    constexpr int kLoadRegs = 40, kMathRegs = 232;
    extern __shared__ uint8_t smem_raw[];
    const uint32_t raw = (uint32_t)__cvta_generic_to_shared(smem_raw);
    uint8_t *const sm = smem_raw + ((1024 - (raw & 1023)) & 1023);
    const uint32_t sq_a = (uint32_t)__cvta_generic_to_shared(sm); // Q, then the stages' K and V
    auto sk_a = [&](int stage) -> uint32_t { return sq_a + (uint32_t)((1 + 2 * stage) * kOpBytes); };

    TileBlock tb;
    if (!tile_block<kBM, kBN>(p, tb)) // a shorter tile than the longest: this row block is empty (uniform exit)
        return;
    const int group = tb.group, rows = tb.rows, r0 = tb.r0, kend = tb.kend;
    const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
    const bool loader = kWS ? warp < 4 : true;  // issues copies
    const int wg = kWS ? (warp >> 2) - 1 : warp >> 2; // computing warpgroup (the loader's -1)
    const int gid = lane >> 2, tig = lane & 3;

    const int32_t *bt = p.block_tables + (int64_t)tb.seq * p.max_blocks;
    const int bs = p.block_size;
    const bool bs_pow2 = (bs & (bs - 1)) == 0;
    const int bs_shift = __ffs(bs) - 1;
    auto cache_row = [&](int j) -> int64_t {
        return bs_pow2 ? ((int64_t)bt[j >> bs_shift] << bs_shift) + (j & (bs - 1)) : (int64_t)bt[j / bs] * bs + j % bs;
    };
    const int64_t kv_row = (int64_t)p.kv_heads * kD;
    const bf16 *kbase = p.kc + (int64_t)tb.kvh * kD, *vbase = p.vc + (int64_t)tb.kvh * kD;
    // load_kv: key tile [kb, kb + kBN) into stage `stage`; keys at or past kend are zeros and read nothing. Loading
    // warp lw copies kRPW of a tile's keys: in step i, rows 2i and 2i + 1 of its share, 16 lanes (16-byte
    // chunks) a row. Lane l finds the cache row of the share's key l % kRPW (lane_row: one block-table read, a tile
    // ahead) and the copying lanes take it by a shuffle. (Each thread's 8-16 rows a tile had each computed their own
    // address and waited for their own block-table read: in the loading warpgroup, with 40 registers, ~990
    // instructions a warp a tile, more than the two computing warpgroups could use; session 53.)
    constexpr int kRPW = kBN / (kLoaders / 32);
    const int lw = warp; // the loading warps are the first kLoaders / 32
    auto lane_row = [&](int kb) -> int32_t { // -1: past kend (a cache has far fewer than 2^31 rows)
        const int j = kb + lw * kRPW + lane % kRPW;
        return j < kend ? (int32_t)cache_row(j) : -1;
    };
    auto load_kv = [&](int stage, int32_t rows_lane) {
        uint8_t *sk = sm + (1 + 2 * stage) * kOpBytes, *sv = sk + kOpBytes;
        const int ch = lane & 15;
#pragma unroll
        for (int i = 0; i < kRPW / 2; i++) {
            const int r = 2 * i + (lane >> 4), kr = lw * kRPW + r;
            const int32_t row = __shfl_sync(FULL_MASK, rows_lane, r);
            const bool ok = row >= 0;
            const int64_t off = ok ? (int64_t)row * kv_row + ch * 8 : 0;
            cp_async16(sk + sw128_off(kr, ch), kbase + off, ok);
            cp_async16(sv + sw128_off(kr, ch), vbase + off, ok);
        }
    };
    // Tiles load in order; next_rows holds the next one's rows (lane_row), read as the one before it loads.
    int32_t next_rows = -1;
    auto load_tile = [&](int t) {
        const int32_t rows_lane = next_rows;
        if (t + 1 < tb.n_kt)
            next_rows = lane_row(tb.kbeg + (t + 1) * kBN);
        load_kv(t % kStages, rows_lane);
    };
    // Stage st's mbarriers: full (its tile's copies have landed: every loading thread arrives) and empty (both
    // computing warpgroups are done with its tile: all their 256 threads arrive).
    const uint32_t full_a = sk_a(kStages), empty_a = full_a + kStages * 8;
    if (tid == 0)
        for (int i = 0; i < 2 * kStages; i++)
            mbar_init(full_a + i * 8, i < kStages ? kLoaders : kMath);
    __syncthreads();
    // The first two key tiles into L2 before waiting for the previous kernel (as attn_tiled.cu does).
    for (int i = tid; loader && i < 2 * kBN && tb.kbeg + i < kend; i += kLoaders) {
        const int64_t off = cache_row(tb.kbeg + i) * kv_row;
        asm volatile("prefetch.global.L2 [%0];" ::"l"(kbase + off));
        asm volatile("prefetch.global.L2 [%0];" ::"l"(kbase + off + 64));
        asm volatile("prefetch.global.L2 [%0];" ::"l"(vbase + off));
        asm volatile("prefetch.global.L2 [%0];" ::"l"(vbase + off + 64));
    }
    pdl_wait();
    const int n = tb.n_kt;
    if (loader && n > 0)
        next_rows = lane_row(tb.kbeg);
    // Q's rows (rows past the tile repeat its last row: finite, never stored) and key tile 0, one commit group.
    auto load_q0 = [&]() {
        for (int c = tid; c < kBM * 16; c += kLoaders) {
            const int i = c >> 4, ch = c & 15;
            const int r = min(r0 + i, rows - 1);
            const int t = r / group, g = r - t * group;
            const bf16 *src = p.q + (int64_t)(tb.tok0 + t) * p.q_stride + (int64_t)(tb.kvh * group + g) * kD + ch * 8;
            cp_async16(sm + sw128_off(i, ch), src, true);
        }
        if (n > 0)
            load_tile(0);
        cp_async_commit();
    };
    if constexpr (kWS) {
        if (loader) { // the loading warpgroup: tile t into stage t % kStages as soon as the stage is empty
            asm volatile("setmaxnreg.dec.sync.aligned.u32 %0;\n" ::"n"(kLoadRegs));
            if (n > 0) {
                // Each stage's full barrier completes when every loading thread's copies into it have landed (its
                // copies' own arrivals: the thread never waits for them). Waiting here made a warpgroup's turn wait
                // for the other's products (session 53: 274 TFLOP/s, the form without a loader 351).
                load_q0();
                mbar_arrive_cp_async(full_a);
                for (int t = 1; t < n; t++) {
                    if (t >= kStages)
                        mbar_wait(empty_a + (t % kStages) * 8, (t / kStages - 1) & 1);
                    load_tile(t);
                    mbar_arrive_cp_async(full_a + (t % kStages) * 8);
                }
                cp_async_wait<0>();
            }
            pdl_launch_dependents();
            return;
        }
        asm volatile("setmaxnreg.inc.sync.aligned.u32 %0;\n" ::"n"(kMathRegs));
    } else {
        load_q0();
    }

    // This thread's two rows (gid and gid + 8 of its warp's 16 in its warpgroup's 64) and their positions.
    const int rw = wg * 64 + (warp & 3) * 16 + gid;
    int prow[2];
#pragma unroll
    for (int h = 0; h < 2; h++)
        prow[h] = tb.pos0 + min(r0 + rw + 8 * h, rows - 1) / group;
    float o[64], s[64];
#pragma unroll
    for (int i = 0; i < 64; i++)
        o[i] = s[i] = 0.0f;
    float m_r[2] = {-INFINITY, -INFINITY}, l_r[2] = {0.0f, 0.0f}; // l: this thread's columns only

    // S = Q K^T of the key tile in stage st over the head's 8 k-steps (16 elements, 32 bytes each; the second four in
    // the operands' second column half), committed as one group.
    auto issue_s = [&](int st) {
        const uint32_t ka = sk_a(st);
#pragma unroll
        for (int k = 0; k < kD / 16; k++) {
            const uint32_t koff = (uint32_t)((k >> 2) * 128 * 128 + (k & 3) * 32);
            wgmma_ss(s, sw128_desc(sq_a + wg * 64 * 128 + koff, 16, 1024), sw128_desc(ka + koff, 16, 1024), k);
        }
        wgmma_commit();
    };
    // O += P V of the tile in stage st, P from a (one group): V's 16 keys of a k-step are two 8-row groups (1024 bytes
    // apart), its 128 elements two column halves (a tile's half apart: the leading offset of an N-major operand).
    auto issue_pv = [&](int st, const uint32_t (&a)[kBN / 16][4]) {
        const uint32_t va = sk_a(st) + kOpBytes;
#pragma unroll
        for (int ks = 0; ks < kBN / 16; ks++)
            wgmma_rs(o, a[ks], sw128_desc(va + ks * 16 * 128, 128 * 128, 1024));
        wgmma_commit();
    };
    // The scores in s of key tile [kb, kb + kBN): scaled into the log2 domain, the future masked (and the zero-filled
    // keys past kend, which lie past every row's position), the running max and sum updated; P in bf16 into a (the A
    // fragments of P V's 8 k-steps, two score n-tiles each) and each row's correction of O into corr. Writes s (no
    // wgmma may have it in flight). s[4 nt + e]: row gid + 8 (e >> 1), key 8 nt + 2 tig + (e & 1).
    auto softmax = [&](int kb, uint32_t (&a)[kBN / 16][4], float (&corr)[2]) {
        const bool need_mask = kb + kBN - 1 > tb.pmin;
        float mx[2] = {m_r[0], m_r[1]};
#pragma unroll
        for (int nt = 0; nt < kBN / 8; nt++)
#pragma unroll
            for (int e = 0; e < 4; e++) {
                float v = s[4 * nt + e] * p.scale_log2;
                if (need_mask && kb + nt * 8 + tig * 2 + (e & 1) > prow[e >> 1])
                    v = -INFINITY;
                s[4 * nt + e] = v;
                mx[e >> 1] = fmaxf(mx[e >> 1], v);
            }
        float base[2];
#pragma unroll
        for (int h = 0; h < 2; h++) {
            mx[h] = fmaxf(mx[h], __shfl_xor_sync(FULL_MASK, mx[h], 1));
            mx[h] = fmaxf(mx[h], __shfl_xor_sync(FULL_MASK, mx[h], 2));
            base[h] = mx[h] == -INFINITY ? 0.0f : mx[h]; // a row with no key yet stays at zero
            corr[h] = exp2f(m_r[h] - base[h]);
            m_r[h] = mx[h];
            l_r[h] *= corr[h];
        }
#pragma unroll
        for (int ks = 0; ks < kBN / 16; ks++) {
            float pr[8];
#pragma unroll
            for (int u = 0; u < 8; u++) {
                pr[u] = exp2f(s[8 * ks + u] - base[(u >> 1) & 1]);
                l_r[(u >> 1) & 1] += pr[u];
            }
            a[ks][0] = pack2(pr[0], pr[1]), a[ks][1] = pack2(pr[2], pr[3]);
            a[ks][2] = pack2(pr[4], pr[5]), a[ks][3] = pack2(pr[6], pr[7]);
        }
    };
    auto rescale_o = [&](const float (&corr)[2]) {
#pragma unroll
        for (int nt = 0; nt < kD / 8; nt++)
#pragma unroll
            for (int e = 0; e < 4; e++)
                o[4 * nt + e] *= corr[e >> 1];
    };

    uint32_t a[kBN / 16][4];
    float corr[2];
    // Warpgroup w waits at named barrier 1 + w for its turn at the tensor cores and gives the other its turn at 2 - w
    // once it has issued a block of products; warpgroup 0 goes first. Every warpgroup computes, rows or not (a
    // wgmma in flight across a branch would be serialised); padding rows repeat a real one and are never stored.
    auto turn_wait = [&]() { asm volatile("bar.sync %0, 256;\n" ::"r"(1 + wg) : "memory"); };
    auto turn_give = [&]() { asm volatile("bar.arrive %0, 256;\n" ::"r"(2 - wg) : "memory"); };
    // Iteration j: one product block at the warpgroup's turn, P V of tile j - 1 (its P from the last iteration) and
    // S of tile j, then tile j's softmax while the other warpgroup's block runs. Without a loading warpgroup, a thread
    // says its copies of tile j + 1 have landed once it has issued its block (they were asked for an iteration
    // before), and refills the stage of tile j - 1 with tile j + 2 after its softmax. The first and last iterations
    // are peeled: a wgmma under a branch would be serialised.
    auto landed = [&](int j) { // this thread's copies of tile j (the newest group) have landed
        if constexpr (!kWS) {
            cp_async_wait<0>();
            fence_proxy_async();
            if (j < n)
                mbar_arrive(full_a + (j % kStages) * 8);
        }
    };
    auto refill = [&](int j) { // tile j + 2 into the stage of tile j - 1, once both warpgroups are done with it
        if constexpr (!kWS) {
            if (j + 2 < n) {
                if (j >= 1)
                    mbar_wait(empty_a + ((j + 2) % kStages) * 8, ((j - 1) / kStages) & 1);
                load_tile(j + 2);
            }
            cp_async_commit();
        }
    };
    auto pv_done = [&](int j) { // after the block's wait: P V of tile j is complete
        fence_regs(o);
        mbar_arrive(empty_a + (j % kStages) * 8);
    };
    if (n > 0) {
        if constexpr (!kWS) {
            cp_async_wait<0>(); // Q and tile 0
            fence_proxy_async();
            mbar_arrive(full_a);
            if (n > 1)
                load_tile(1);
            cp_async_commit();
        }
        if (wg == 1)
            turn_give(); // warpgroup 0 goes first
        mbar_wait(full_a, 0);
        if constexpr (kWS)
            fence_proxy_async(); // the loader's copies (generic proxy) before this warpgroup's wgmma reads them
        turn_wait();
        fence_regs(s);
        wgmma_fence();
        issue_s(0);
        turn_give();
        landed(1);
        wgmma_wait0();
        fence_regs(s);
        softmax(tb.kbeg, a, corr); // o is zero: no correction
        refill(0);
        for (int j = 1; j < n; j++) {
            mbar_wait(full_a + (j % kStages) * 8, (j / kStages) & 1);
            if constexpr (kWS)
                fence_proxy_async();
            turn_wait();
            fence_regs(o);
            rescale_o(corr);
            fence_regs(o);
            fence_regs(s);
            fence_regs(a);
            wgmma_fence();
            issue_pv((j - 1) % kStages, a);
            issue_s(j % kStages);
            turn_give();
            landed(j + 1);
            wgmma_wait0();
            fence_regs(s);
            pv_done(j - 1);
            softmax(tb.kbeg + j * kBN, a, corr);
            refill(j);
        }
        turn_wait();
        fence_regs(o);
        rescale_o(corr);
        fence_regs(o);
        fence_regs(a);
        wgmma_fence();
        issue_pv((n - 1) % kStages, a);
        turn_give();
        wgmma_wait0();
        pv_done(n - 1);
    }
    if (wg == 0 && n > 0)
        turn_wait(); // warpgroup 1's last turn, given to no one
    cp_async_wait<0>();
#pragma unroll
    for (int h = 0; h < 2; h++) {
        l_r[h] += __shfl_xor_sync(FULL_MASK, l_r[h], 1);
        l_r[h] += __shfl_xor_sync(FULL_MASK, l_r[h], 2);
    }
    if (r0 + wg * 64 < rows) { // this warpgroup has real rows
#pragma unroll
        for (int h = 0; h < 2; h++) {
            const int r = r0 + rw + 8 * h;
            if (r >= rows)
                continue;
            const int t = r / group;
            const int64_t tok = tb.tok0 + t;
            const int hq = tb.kvh * group + (r - t * group);
            if (p.n_splits == 1) {
                const float inv = l_r[h] > 0.0f ? 1.0f / l_r[h] : 0.0f;
                bf16 *dst = p.out + (tok * p.heads + hq) * kD + tig * 2;
#pragma unroll
                for (int nt = 0; nt < kD / 8; nt++)
                    *reinterpret_cast<uint32_t *>(dst + nt * 8) =
                        pack2(o[4 * nt + 2 * h] * inv, o[4 * nt + 2 * h + 1] * inv);
            } else {
                const int64_t idx = ((int64_t)tb.split * p.n + tok) * p.heads + hq;
                float *dst = p.part_acc + idx * kD + tig * 2;
#pragma unroll
                for (int nt = 0; nt < kD / 8; nt++)
                    *reinterpret_cast<float2 *>(dst + nt * 8) = make_float2(o[4 * nt + 2 * h], o[4 * nt + 2 * h + 1]);
                if (tig == 0) {
                    p.part_ml[idx * 2] = m_r[h];
                    p.part_ml[idx * 2 + 1] = l_r[h];
                }
            }
        }
    }
    pdl_launch_dependents();
#elif defined(__CUDA_ARCH__)
    __trap(); // the host launches this form only on sm_90 (attn_wgmma_fits): reaching it is a build/launch mismatch
#else
    (void)p;
#endif
}

template <bool kWS> cudaError_t set_smem()
{
    return cudaFuncSetAttribute(attn_wgmma_kernel<kWS>, cudaFuncAttributeMaxDynamicSharedMemorySize, kSmemBytes);
}

template <bool kWS> bool fits_one()
{
    int n = 0;
    if (set_smem<kWS>() != cudaSuccess ||
        cudaOccupancyMaxActiveBlocksPerMultiprocessor(&n, attn_wgmma_kernel<kWS>, threads_of<kWS>(), kSmemBytes) !=
            cudaSuccess) {
        (void)cudaGetLastError();
        return false;
    }
    return n >= 1;
}

template <bool kWS> int launch_form(const AttnTiledParams &p, dim3 grid, cudaStream_t s)
{
    cudaError_t e = set_smem<kWS>();
    if (e == cudaSuccess)
        e = launch_pdl(attn_wgmma_kernel<kWS>, grid, dim3(threads_of<kWS>()), (size_t)kSmemBytes, s, p);
    return e != cudaSuccess ? (int)e : launch_status();
}

// The form with a loading warpgroup where the benchmark switch SS_ATTN_WG_WS is 1.
bool use_ws()
{
    const char *sw = getenv("SS_ATTN_WG_WS");
    return sw && sw[0] == '1';
}

} // namespace

bool attn_wgmma_fits(int head_dim, bool fp8)
{
    if (head_dim != kD || fp8)
        return false;
    int dev = 0, major = 0, minor = 0;
    if (cudaGetDevice(&dev) != cudaSuccess ||
        cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, dev) != cudaSuccess ||
        cudaDeviceGetAttribute(&minor, cudaDevAttrComputeCapabilityMinor, dev) != cudaSuccess) {
        (void)cudaGetLastError();
        return false;
    }
    if (major != 9 || minor != 0) // sm_90a code runs on sm_90 only
        return false;
    return fits_one<true>() && fits_one<false>();
}

int attn_wgmma_launch(const AttnTiledParams &p, dim3 grid, cudaStream_t s)
{
    return use_ws() ? launch_form<true>(p, grid, s) : launch_form<false>(p, grid, s);
}

} // namespace ss

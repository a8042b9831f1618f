// decode_persist.cu — one decode token (batch 1) through all decoder layers in ONE persistent kernel (sm_90):
// every CTA streams its rows of every weight matrix through shared memory, its warps follow the layers.
//
// Why one kernel: at batch 1 a layer is eight dependent kernels, and between the GEMVs (norms, rope,
// attention) the memory bus idles; sessions 4-7 measured every per-kernel way to fill those gaps and
// none closed them (docs/performance.md). Here the weights never wait for activations: one producer warp
// per CTA copies its CTA's rows of qkv, o, gate/up and down, layer after layer, into a ring of shared-memory
// stages (tiles of 16 rows x 1024 columns, one bulk async copy per row, each from its own lane), held back
// only by free stages. The eight consumer warps take the stages in the same order on the tensor cores
// and, between matrices, wait for the whole grid through counters in global memory: an attention item or
// a norm stalls the consumers, not the bus, while the ring has room. The grid is one CTA per SM, launched
// cooperatively (all CTAs resident, so the spins end; every spin also traps after 2 s).
//
// Per layer, with G CTAs (counters zeroed before the launch, one set per layer):
//   norm:  x = rmsnorm(residual) · attn_norm, each CTA for itself   (after down of the previous layer: G)
//   qkv:   its rows of qkv (+ bias)                                   → counter qkv
//   attn:  CTAs [0, kv_heads·splits): one (kv head, key split) item each: q (and the new k) normed and
//          rotated, the new k/v stored in the cache by the last split, partial softmax · V; once all of
//          a head's items are in (a counter per head), each merges a slice of its outputs
//                                                                          → counter attn (kv_heads·splits)
//   o:     its rows of o, added to residual                            → counter o (G)
//   norm + gate/up: silu(gate) · up for its rows                       → counter gu (G)
//   down:  its rows of down, added to residual                         → counter down (G)
// Rounding follows the op-by-op path (bf16 after each GEMV, the residual add, the norm, rope), so the two
// differ only by the fp32 summation order.
//
// Status (session 11, one H200): correct (test_backend_consistency, goldens; racecheck's reports are all its
// bulk copy, see scripts/gpu/racecheck_triage.py) and the forward pass's default for batch-1 steps at tp 1
// (SS_PERSIST=0 turns it off): 240-242 tok/s on the 8B shape against 234-235 op by op. Its GEMVs run at the
// bus rate; while the consumers wait (attention, grid waits) the producer prefetches up to 8 tiles into L2,
// one every 2500 cycles (session 23: +0.3% at 128 tokens, +2.1% at 512, +1.5% at tp 2 on H200s). Since
// session 24 an attention item's warps each take a q head with no block barrier between its steps: 252.9
// tok/s against 249.0 (89.4% of the copy roofline; +2.85% at 512 tokens, +2.4% at tp 2); session 25 reduces 8
// keys' scores side by side (253.2 tok/s; +1.1% at 512 tokens, +1.5-2.0% on a multi-head Llama-2-7B shape);
// session 27 spreads the merge over the head's items (255.4 tok/s, 90.2%; tp 2 +2.2%); since session 29 it reads an
// fp8 KV cache too (the KV8 form: 257.4 against 235.4 tok/s op by op, as fast as a bf16 cache).
// Context bounds above a 32 KiB K/V copy per attention item are refused (op by op is faster there). What is
// left is the layer's chain of exchanges through L2 (a flag's round trip between two SMs: 0.9 us idle, 2.6 us
// with the bus saturated, session 24's probe): the qkv wait, the merge of the splits (~3 µs), the grid
// waits. Arrival by content instead of the grid counters was tried (sessions 11, 23) and gained nothing;
// clusters do not fit the grid (8 or 16 CTAs a cluster place only 120 or 112 of the 132 CTAs on an H200).
// At tp > 1 (session 13) the same kernel runs on every rank with the rank's shards; the o and down sums
// cross the group inside it through peer-mapped windows (tp_push / tp_combine in persist_common.cuh):
// +0.4-5% over op by op at tp 2 and 4 on H200s, the per-layer chain of norm, attention and waits then
// being what the shorter weight stream no longer hides (docs/architecture.md).
// SS_PERSIST_TRACE=N prints launch N's timeline of the middle layer (eager steps: bench_decode --no-graphs).
// This file holds the kernel and its launcher; its pieces are in persist_common.cuh (parameters and
// synchronisation), persist_stream.cuh (the weight stream and GEMVs) and persist_attention.cuh.
#include <float.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend/cuda/persist_attention.cuh"
#include "backend/cuda/persist_common.cuh"
#include "backend/cuda/persist_stream.cuh"

namespace ss {
namespace {

// ---------------------------------------------------------------- the kernel

// FP8: the projection weights are backend.h's fp8 linear format (persist_stream.cuh). Correct (the consistency test);
// slower than op by op on an H200 until session 22 (8B batch 1: 360.6 against 387.1 tok/s in session 21), faster
// since sessions 23-27 shortened the per-layer chain (session 29: 395.4 against 386.1), so the default at tp 1.
// Profiled (session 21, Nsight Compute): with one CTA a SM its 8 consumer warps take ~0.9 us for a 32 KiB stage of
// e4m3 weights, about what the bus needs to bring one, so the consumers never catch up on the stages that pile up
// while they attend, norm or wait for the grid; their warps stall on shared-memory loads and on fixed-latency
// chains (cvt, mma), two warps a scheduler being too few to hide them. Converting by bit moves, sharing conversion
// between pipes, more accumulators and deeper L2 prefetch all measured slower (performance.md). Sixteen consumer
// warps do not fit (session 29: 17 warps leave 96 registers a thread; the kernel needs 168).
// Session 22: W8A8 (x in e4m3) on wgmma ran its GEMV phases no faster with a quarter of the instructions a stage, so
// instruction count is not the limit either (branch exp/persist-w8a8-wgmma). The backend runs it at tp 1 and 2, and at
// tp > 2 (unmeasured) only under SS_PERSIST_FP8=1. Session 55: its producer warp leads a warpgroup that hands
// registers to the consumers (setmaxnreg, persist_common.cuh): no spills (40 bytes before), no faster alone, but the
// GEMVs' two accumulators then gain 0.6% (one H200: 399.1 against 396.7 tok/s).
// KV8: the caches hold fp8 blocks (the args' kv_fp8; the attention items' form): a template parameter, not a branch,
// so that the bf16 cache's kernels stay as they were (PTX-identical; with both forms in one kernel, bf16 batch 1
// lost 0.5-0.8% on one H200, session 29).
// WIDE: an o or down input longer than kMaxXBytes (a 70B's down at tp 1) loads in passes (load_xs); also a template
// parameter, so that the other forms stay PTX-identical (with the passes in every form, 8B batch 1 lost 0.25%).
template <bool FP8, bool KV8, bool WIDE>
__global__ void __launch_bounds__(kThreadsOf<FP8>, 1) decode_persist_kernel(const __grid_constant__ Params p)
{
#if !defined(__CUDA_ARCH__) || __CUDA_ARCH__ >= 900
    extern __shared__ __align__(128) uint8_t smem[];
    uint8_t *ring = smem;
    uint8_t *region = smem + (size_t)p.stages * kStageBytes; // xs, or an attention item's scratch
    uint64_t *full = reinterpret_cast<uint64_t *>(region + p.region_bytes);
    uint64_t *empty = full + kMaxStages;
    float *red = reinterpret_cast<float *>(empty + kMaxStages); // [2][kWarps][kTileRows]
    float *scratch = red + 2 * kWarps * kTileRows;              // [kWarps]
    float *own = scratch + kWarps;                               // [kMaxOwnRows]
    float *trig = own + kMaxOwnRows;                             // [kMaxHeadDim]: the rope's cos, sin
    int *btab = reinterpret_cast<int *>(trig + kMaxHeadDim);    // [kMaxTable]: the sequence's block table
    if (threadIdx.x == 0) {
        for (int i = 0; i < p.stages; i++) {
            mbar_init(&full[i], 1);
            mbar_init(&empty[i], kWarps); // every consumer warp hands a stage back
        }
        asm volatile("fence.mbarrier_init.release.cluster;" ::: "memory");
        asm volatile("fence.proxy.async.shared::cta;" ::: "memory");
    }
    __syncthreads();
    constexpr int ACC = FP8 ? 2 : 1; // the GEMVs' accumulators (gemv_phase)
    if (threadIdx.x >= kConsumers) { // the producer warp (FP8: its warpgroup gives registers to the consumers)
        if constexpr (FP8) {
#if defined(__CUDA_ARCH_FEAT_SM90_ALL) // setmaxnreg: sm_90a only (elsewhere every thread keeps the launch's share)
            asm volatile("setmaxnreg.dec.sync.aligned.u32 %0;\n" ::"n"(kProducerRegs));
#endif
            if (threadIdx.x >= kConsumers + 32)
                return;
        }
        produce<FP8>(p, ring, full, empty);
        return;
    }
#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
    if constexpr (FP8)
        asm volatile("setmaxnreg.inc.sync.aligned.u32 %0;\n" ::"n"(kConsumerRegs));
#endif
    const unsigned G = gridDim.x;
    bf16 *xs = reinterpret_cast<bf16 *>(region);
    Cursor cur;
    uint32_t group = 0;
    const int own0 = (int)((int64_t)blockIdx.x * p.hidden / G), own1 = (int)((int64_t)(blockIdx.x + 1) * p.hidden / G);
    for (int i = threadIdx.x; i < own1 - own0; i += kConsumers) // the previous kernel's output
        own[i] = __bfloat162float(p.residual[own0 + i]);
    const int half = p.head_dim / 2;
    int nblk = (p.seq_lens[0] + p.block_size - 1) / p.block_size;
    nblk = nblk < kMaxTable ? nblk : kMaxTable; // a longer context traps in the attention (nk > nk_max)
    for (int i = threadIdx.x; i < nblk && (int)blockIdx.x < p.kv_heads * p.splits; i += kConsumers)
        btab[i] = p.block_table[i];
    for (int i = threadIdx.x; i < half && (int)blockIdx.x < p.kv_heads * p.splits; i += kConsumers) {
        double sd, cd; // as rope_kv_store_kernel computes them
        sincos((double)((float)p.pos[0] * p.inv_freq[i]), &sd, &cd);
        trig[i] = (float)cd;
        trig[half + i] = (float)sd;
    }
    consumer_sync();
    const bool nowait = p.debug & 2;
    for (int l = 0; l < p.n_layers; l++) {
        const Layer &L = p.layers[l];
        unsigned *ctr = p.sync + (size_t)l * p.ctr_stride;
        stamp(p, l, 0);
        if (l > 0)
            grid_wait(ctr - p.ctr_stride + kDown, G, p.tp_abort, nowait);
        stamp(p, l, 1);
        norm_to_xs<FP8>(p, L.attn_norm, xs, scratch);
        stamp(p, l, 2);
        gemv_phase<FP8, ACC>(p, l, kQkv, ring, full, empty, xs, red, own, cur, group);
        stamp(p, l, 3);
        grid_arrive(ctr + kQkv);
        if ((int)blockIdx.x < p.kv_heads * p.splits)
            attention_item<KV8>(p, l, ctr, region, trig, btab); // stamps 4, 5, 6
        grid_wait(ctr + kAttn, (unsigned)(p.merge == kMergeSplit ? p.kv_heads * p.splits : p.kv_heads), p.tp_abort,
                  nowait);
        stamp(p, l, 7);
        load_xs<FP8, WIDE>(p.attn, p.q_dim, xs);
        gemv_phase<FP8, ACC>(p, l, kO, ring, full, empty, xs, red, own, cur, group);
        stamp(p, l, 8);
        if (p.tp_size > 1)
            tp_combine(p, l, 0, own, own0, own1);
        grid_arrive(ctr + kO);
        grid_wait(ctr + kO, G, p.tp_abort, nowait);
        stamp(p, l, 9);
        norm_to_xs<FP8>(p, L.mlp_norm, xs, scratch);
        stamp(p, l, 10);
        gemv_phase<FP8, ACC>(p, l, kGu, ring, full, empty, xs, red, own, cur, group);
        stamp(p, l, 11);
        grid_arrive(ctr + kGu);
        grid_wait(ctr + kGu, G, p.tp_abort, nowait);
        stamp(p, l, 12);
        load_xs<FP8, WIDE>(p.act, p.inter, xs);
        gemv_phase<FP8, ACC>(p, l, kDown, ring, full, empty, xs, red, own, cur, group);
        stamp(p, l, 13);
        if (p.tp_size > 1)
            tp_combine(p, l, 1, own, own0, own1);
        grid_arrive(ctr + kDown);
    }
#endif
}

size_t round_up(size_t v, size_t a)
{
    return (v + a - 1) / a * a;
}

// Median of v[0, m) (sorts v).
double median_of(double *v, int m)
{
    for (int i = 1; i < m; i++) // insertion sort: a few hundred values
        for (int j = i; j > 0 && v[j - 1] > v[j]; j--) {
            const double x = v[j];
            v[j] = v[j - 1], v[j - 1] = x;
        }
    return m ? v[m / 2] : 0.0;
}

// A trace's text, built whole and then written at once (the ranks of a group print at the same time);
// what does not fit is cut.
struct TraceText {
    char buf[8192];
    size_t n = 0;
    __attribute__((format(printf, 2, 3))) void add(const char *fmt, ...)
    {
        if (n + 1 >= sizeof buf)
            return;
        va_list ap;
        va_start(ap, fmt);
        const int k = vsnprintf(buf + n, sizeof buf - n, fmt, ap);
        va_end(ap);
        if (k > 0)
            n = n + (size_t)k < sizeof buf ? n + (size_t)k : sizeof buf - 1;
    }
};

// Over the launch's inner layers: how late the last CTA ends a phase against the median one, and whether the
// same CTAs are late layer after layer (the slowest 5% counted per CTA); for the splits' merges, which head
// and which split merged last, and whether its item or its merge was the late part. A benchmark aid.
void trace_spread(TraceText &out, const unsigned long long *h, int layers, int ctas, int splits)
{
    unsigned long long base = ~0ull; // stamps are ns since an epoch: made small before they become doubles
    const unsigned long long *start1 = h + (size_t)kTraceSlots * ctas; // layer 1's start stamps
    for (int b = 0; b < ctas && layers > 1; b++)
        if (start1[b] && start1[b] < base)
            base = start1[b];
    auto us = [base](unsigned long long t) { return (double)(long long)(t - base) / 1000.0; };
    static const int ks[3] = {3, 11, 13};
    static const char *kn[3] = {"qkv GEMV end", "gate/up GEMV end", "down GEMV end"};
    double v[1024];
    for (int q = 0; q < 3; q++) {
        int late[1024] = {0};
        double sum = 0.0;
        int n = 0;
        for (int l = 1; l + 1 < layers; l++, n++) {
            const unsigned long long *t = h + ((size_t)l * kTraceSlots + ks[q]) * ctas;
            for (int b = 0; b < ctas; b++)
                v[b] = us(t[b]);
            const double med = median_of(v, ctas), top = v[ctas - 1], cut = v[ctas - 1 - ctas / 20];
            sum += top - med;
            for (int b = 0; b < ctas; b++)
                late[b] += us(t[b]) >= cut;
        }
        out.add("  spread %-17s last CTA +%.2f us over the median (mean of %d layers); most often late:", kn[q],
                n ? sum / n : 0.0, n);
        for (int r = 0; r < 5; r++) {
            int bi = 0;
            for (int b = 1; b < ctas; b++)
                bi = late[b] > late[bi] ? b : bi;
            out.add(" cta %d %d/%d", bi, late[bi], n);
            late[bi] = -1;
        }
        out.add("\n");
    }
    int by_head[kMaxSplits] = {0}, by_split[kMaxSplits] = {0};
    double lat = 0.0, item_late = 0.0, dur_late = 0.0, dur_med = 0.0;
    int n = 0;
    for (int l = 1; l + 1 < layers && splits > 0; l++) {
        const unsigned long long *t5 = h + ((size_t)l * kTraceSlots + 5) * ctas, *t6 = t5 + ctas;
        double m6[kMaxSplits * 8], d6[kMaxSplits * 8], i5[1024];
        int nm = 0, ni = 0, bl = -1;
        for (int b = 0; b < ctas; b++) {
            if (t5[b])
                i5[ni++] = us(t5[b]);
            if (t6[b] && nm < kMaxSplits * 8) {
                if (bl < 0 || t6[b] > t6[bl])
                    bl = b;
                m6[nm] = us(t6[b]), d6[nm++] = (double)(t6[b] - t5[b]) / 1000.0;
            }
        }
        if (nm < 2 || bl < 0)
            continue;
        const double dl = (double)(t6[bl] - t5[bl]) / 1000.0, il = us(t5[bl]);
        lat += us(t6[bl]) - median_of(m6, nm);
        dur_late += dl, dur_med += median_of(d6, nm), item_late += il - median_of(i5, ni);
        by_head[(bl / splits) % kMaxSplits]++, by_split[(bl % splits) % kMaxSplits]++;
        n++;
    }
    if (n) {
        out.add("  spread merges: last head +%.2f us over the median merge (mean of %d layers); its item ended "
                "+%.2f us after the median item; its merge took %.2f us (median merge %.2f)\n    last head by "
                "head:",
                lat / n, n, item_late / n, dur_late / n, dur_med / n);
        for (int i = 0; i < kMaxSplits; i++)
            if (by_head[i])
                out.add(" h%d:%d", i, by_head[i]);
        out.add("; by split:");
        for (int i = 0; i < kMaxSplits; i++)
            if (by_split[i])
                out.add(" s%d:%d", i, by_split[i]);
        out.add("\n");
    }
}

// The timeline of the middle layer of one launch, over the CTAs (min / median / max, µs from the
// earliest CTA's layer start), on stderr. A benchmark aid: synchronises the stream, eager steps only.
void print_trace(cudaStream_t s, const unsigned long long *dev, int layers, int ctas, int rank, int splits)
{
    cudaStreamCaptureStatus cap = cudaStreamCaptureStatusNone;
    if (cudaStreamIsCapturing(s, &cap) != cudaSuccess || cap != cudaStreamCaptureStatusNone)
        return;
    const size_t n = (size_t)layers * kTraceSlots * ctas;
    unsigned long long *h = (unsigned long long *)malloc(n * 8);
    if (!h || cudaStreamSynchronize(s) != cudaSuccess || cudaMemcpy(h, dev, n * 8, cudaMemcpyDeviceToHost) != cudaSuccess) {
        free(h);
        return;
    }
    static const char *names[kTraceSlots] = {
        "layer start", "down done (all)", "norm", "qkv GEMV", "qkv done (all)", "attn item", "attn merged",
        "attn done (all)", "o GEMV", "o done (all)", "norm", "gate/up GEMV", "gate/up done (all)", "down GEMV",
        "qkv: stage waits", "o: stage waits", "gate/up: stage waits", "down: stage waits",
        "qkv: phase", "o: phase", "gate/up: phase", "down: phase", "attn: scores start", "attn: P.V start",
        "producer: ring full", "  + prefetch used up"};
    const int l = layers / 2;
    const unsigned long long *t = h + (size_t)l * kTraceSlots * ctas;
    unsigned long long base = ~0ull;
    for (int b = 0; b < ctas; b++)
        base = t[b] < base ? t[b] : base;
    TraceText out;
    out.add("persistent decode, tp rank %d, layer %d of %d, %d CTAs: us from the layer's start (min / median / "
            "max)\n",
            rank, l, layers, ctas);
    for (int k = 0; k < kTraceSlots; k++) {
        double v[1024];
        int m = 0;
        const bool span = (k >= kStamps && k < kStamps + 8) || k >= kStamps + 10; // durations: 14-21, 24-25
        const unsigned long long off = span ? 0 : base;
        for (int b = 0; b < ctas && m < 1024; b++)
            if (t[(size_t)k * ctas + b] && t[(size_t)k * ctas + b] >= off)
                v[m++] = (double)(t[(size_t)k * ctas + b] - off) / 1000.0;
        const double med = median_of(v, m);
        if (m)
            out.add("  %2d %-18s %8.2f %8.2f %8.2f  (%d CTAs)\n", k, names[k], v[0], med, v[m - 1], m);
    }
    if (l + 1 < layers) {
        unsigned long long next = ~0ull;
        for (int b = 0; b < ctas; b++)
            next = t[(size_t)kTraceSlots * ctas + b] < next ? t[(size_t)kTraceSlots * ctas + b] : next;
        out.add("  layer period %.2f us\n", (double)(next - base) / 1000.0);
    }
    trace_spread(out, h, layers, ctas, splits);
    fwrite(out.buf, 1, out.n, stderr);
    free(h);
}

} // namespace
} // namespace ss

using namespace ss;

extern "C" int ss_cuda_decode_persist(void *stream, ss_cuda_persist_args *a)
{
    int dev = 0, major = 0, sms = 0, smem_max = 0;
#define SS_PERSIST_NO(reason) return (a->why = (reason), -1)
    if (cudaGetDevice(&dev) != cudaSuccess ||
        cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, dev) != cudaSuccess ||
        cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, dev) != cudaSuccess ||
        cudaDeviceGetAttribute(&smem_max, cudaDevAttrMaxSharedMemoryPerBlockOptin, dev) != cudaSuccess)
        SS_PERSIST_NO("the device's properties are not readable");
    const int hd = a->head_dim, qh = a->q_heads, kvh = a->kv_heads;
    if (major < 9)
        SS_PERSIST_NO("it needs sm_90 (Hopper)");
    if (a->n_layers < 1 || a->n_layers > SS_CUDA_PERSIST_MAX_LAYERS || hd % 8 || hd > kMaxHeadDim || kvh < 1 ||
        qh % kvh || qh / kvh > kMaxGroup || a->hidden % 8 || a->inter % 8 || a->max_seq_len < 1)
        SS_PERSIST_NO("the model's shape is outside its limits (layers, head_dim, group, multiples of 8)");
    const int q_dim = qh * hd, qkv_dim = (qh + 2 * kvh) * hd, grp = qh / kvh;
    if (a->fp8 && (a->hidden % 16 || a->inter % 16 || q_dim % 16))
        SS_PERSIST_NO("fp8 weights need inputs whose widths are multiples of 16");
    const int kmax = a->hidden > a->inter ? (a->hidden > q_dim ? a->hidden : q_dim) : (a->inter > q_dim ? a->inter : q_dim);
    if (2 * a->hidden > kMaxXBytes)
        SS_PERSIST_NO("the hidden size is longer than its norms take (16,384)");
    // [fp8 weights][fp8 KV cache][an o or down input longer than kMaxXBytes: loaded in passes]
    void (*const forms[2][2][2])(Params) = {
        {{decode_persist_kernel<false, false, false>, decode_persist_kernel<false, false, true>},
         {decode_persist_kernel<false, true, false>, decode_persist_kernel<false, true, true>}},
        {{decode_persist_kernel<true, false, false>, decode_persist_kernel<true, false, true>},
         {decode_persist_kernel<true, true, false>, decode_persist_kernel<true, true, true>}}};
    void (*const kernel)(Params) = forms[a->fp8 ? 1 : 0][a->kv_fp8 ? 1 : 0][2 * kmax > kMaxXBytes ? 1 : 0];
    const int threads = a->fp8 ? kThreadsOf<true> : kThreadsOf<false>;
    // Benchmark switch: at most this many CTAs (one an SM) instead of one on every SM.
    const char *ctas_env = getenv("SS_PERSIST_CTAS");
    const long ctas_cap = ctas_env ? strtol(ctas_env, NULL, 10) : 0;
    if (ctas_cap > 0 && ctas_cap < sms)
        sms = (int)ctas_cap;
    int splits = sms / kvh;
    splits = splits > kMaxSplits ? kMaxSplits : splits;
    // Benchmark switches (SS_PERSIST_SPLITS, _TRACE, _DEBUG, _MERGE, _L2AHEAD) change what the launcher
    // accepts: at tp > 1 every rank of the group must see the same values (local ranks inherit them).
    const char *split_env = getenv("SS_PERSIST_SPLITS"); // benchmark switch: at most this many key splits
    const long split_cap = split_env ? strtol(split_env, NULL, 10) : 0;
    if (split_cap > 0 && split_cap < splits)
        splits = (int)split_cap;
    if (splits < 1)
        SS_PERSIST_NO("fewer SMs than kv heads");
    if (a->kv_fp8 && hd % 16)
        SS_PERSIST_NO("an fp8 KV cache needs a head_dim that is a multiple of 16");
    // Keys a split holds at most, rounded up to 4: the score rows (grp x nk_max floats) then end on a 16-byte
    // boundary, which the preloaded K/V rows after them need (cp.async of 16 bytes).
    const int nk_max = ((a->max_seq_len + splits - 1) / splits + 3) & ~3;
    // an item's K and V rows (fp8: e4m3 bytes and a scale a row)
    const size_t pre_bytes = a->kv_fp8 ? 2 * (size_t)nk_max * (hd + 4) : 2 * (size_t)nk_max * hd * 2;
    // Benchmark switch: at most this many bytes of K/V rows an item (SS_PERSIST_KV_PRE=N) instead of kMaxKvPre
    // (longer context bounds; session 31 measured them no faster overall, persist_common.cuh).
    const char *pre_env = getenv("SS_PERSIST_KV_PRE");
    const long pre_cap = pre_env ? strtol(pre_env, NULL, 10) : 0;
    if (pre_bytes > (pre_cap > 0 ? (size_t)pre_cap : (size_t)kMaxKvPre))
        SS_PERSIST_NO("the context bound is too long for its attention (more than 32 KiB of K/V rows an item)");
    // An item's region: q, k and the new k/v rows (unused since session 24, whose warps hold them in registers;
    // kept so that the measured split of shared memory stays), scores, statistics, the P·V area (merge_wide's
    // scratch), the K/V rows.
    const size_t attn_bytes = ((size_t)grp * hd + hd) * 4 + 2 * (size_t)hd * 2 + (size_t)grp * nk_max * 4 +
                              4 * kMaxGroup * 4 + (size_t)kWarps * grp * hd * 4 + pre_bytes;
    const size_t region = round_up(2 * (size_t)kmax > attn_bytes ? 2 * (size_t)kmax : attn_bytes, 128);
    const size_t tail = 2 * kMaxStages * 8 + (2 * kWarps * kTileRows + kWarps + kMaxOwnRows + kMaxHeadDim + kMaxTable) * 4;
    if (a->block_size < 1 || (a->max_seq_len + a->block_size - 1) / a->block_size > kMaxTable)
        SS_PERSIST_NO("the context bound exceeds its block table");
    if ((a->hidden + sms - 1) / sms > kMaxOwnRows)
        SS_PERSIST_NO("the hidden size is too large for the SM count");
    if ((size_t)smem_max < region + tail + 3 * (size_t)kStageBytes)
        SS_PERSIST_NO("the context bound or the longest input leaves too little shared memory for the weight stages");
    int stages = (int)(((size_t)smem_max - region - tail) / kStageBytes);
    stages = stages > kMaxStages ? kMaxStages : stages;
    // As many stages as one CTA per SM can hold with this kernel's registers and static shared memory.
    size_t smem = 0;
    for (;; stages--) {
        if (stages < 3)
            SS_PERSIST_NO("one CTA per SM does not fit (registers or shared memory)");
        smem = (size_t)stages * kStageBytes + region + tail;
        int per_sm = 0;
        if (cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem) == cudaSuccess &&
            cudaOccupancyMaxActiveBlocksPerMultiprocessor(&per_sm, kernel, threads, smem) ==
                cudaSuccess &&
            per_sm >= 1)
            break;
        (void)cudaGetLastError();
    }
    const int ctr_stride = kCtrPerLayer + kvh; // + a merge counter per kv head
    const size_t ctr_bytes = round_up((size_t)a->n_layers * ctr_stride * 4, 256);
    const size_t part_bytes = round_up((size_t)qh * splits * (hd + 4) * 4, 256);
    const char *trace_env = getenv("SS_PERSIST_TRACE"); // "N": print the timeline of launch N (eager steps)
    const size_t trace_n = trace_env ? (size_t)a->n_layers * kTraceSlots * sms : 0;
    if (ctr_bytes + part_bytes + trace_n * 8 > a->workspace_bytes || !aligned16(a->workspace))
        SS_PERSIST_NO("its workspace is too small");

    Params p = {};
    p.n_layers = a->n_layers, p.hidden = a->hidden, p.inter = a->inter, p.q_heads = qh, p.kv_heads = kvh;
    p.head_dim = hd, p.q_dim = q_dim, p.qkv_dim = qkv_dim, p.splits = splits, p.nk_max = nk_max;
    const char *dbg = getenv("SS_PERSIST_DEBUG");
    p.debug = dbg ? (int)strtol(dbg, NULL, 10) : 0;
    const char *merge = getenv("SS_PERSIST_MERGE"); // benchmark switch: "split", "one", "wide" or "chunked"
    // The split merge: every item merges a slice of its head (session 27, 2 x H200, two interleaved rounds: 8B tp 2
    // 430.2 tok/s against 420.9 with merge_one, +2.2%; a 70B shape's 16 layers at tp 2, a group of 8, 266.3 against
    // 263.3, +1.15%). Before it: merge_one above 16 key splits, the chunked merge at 16 or fewer (session 15:
    // 8B tp 2, 32 splits, 391.4 tok/s against 387.9 with session 14's wide merge; 8B tp 1, 16 splits, 241.9
    // against 243.4 chunked). merge_one loads float4s and reads its statistics by shuffle within a warp of one q
    // head (persist_attention.cuh); merge_wide's scratch is the item's P·V area, whose kWarps * grp * hd floats
    // must hold grp * (2 * splits + 1). (merge_wide stays as a switch: deleting it changed the kernel's register
    // allocation, which this kernel's speed follows; session 15.)
    p.merge = !merge ? kMergeSplit
                     : !strcmp(merge, "one")     ? kMergeOne
                     : !strcmp(merge, "wide")    ? kMergeWide
                     : !strcmp(merge, "chunked") ? kMergeChunked
                                                 : kMergeSplit;
    // (head_dim % 8 == 0 and splits <= kMaxSplits = 32 hold already: the float4 loads and a lane per split fit)
    if (p.merge == kMergeOne && (hd / 4 * merge_one_threads(splits, grp * hd / 4)) % 32)
        p.merge = kMergeWide; // (a warp's outputs would span two q heads)
    if (p.merge == kMergeWide && kWarps * hd < 2 * splits + 1)
        p.merge = kMergeChunked;
    p.tp_size = a->tp_size > 1 ? a->tp_size : 1, p.tp_rank = a->tp_size > 1 ? a->tp_rank : 0;
    if (p.tp_size > 1) {
        if (p.tp_size > SS_CUDA_PERSIST_MAX_TP || p.tp_rank < 0 || p.tp_rank >= p.tp_size || !a->tp_abort ||
            a->tp_window_bytes < (size_t)a->n_layers * 2 * p.tp_size * a->hidden * 2)
            SS_PERSIST_NO("its tensor-parallel exchange is not set up (group, windows)");
        if (p.debug & (2 | 8)) // a rank that skips waits or outputs would leave its peers waiting
            SS_PERSIST_NO("SS_PERSIST_DEBUG 2 and 8 are for tp 1");
        for (int r = 0; r < p.tp_size; r++) {
            if (!a->tp_window[r] || ((uintptr_t)a->tp_window[r] & 1))
                SS_PERSIST_NO("its tensor-parallel exchange is not set up (group, windows)");
            p.tp_win[r] = (unsigned short *)a->tp_window[r];
        }
        p.tp_abort = a->tp_abort;
    }
    const char *l2ahead = getenv("SS_PERSIST_L2AHEAD");
    p.l2ahead = l2ahead ? (int)strtol(l2ahead, NULL, 10) : 8;
    const char *pfpace = getenv("SS_PERSIST_PFPACE");
    p.pfpace = pfpace ? (int)strtol(pfpace, NULL, 10) : 2500;
    const char *pfgate = getenv("SS_PERSIST_PFGATE");
    p.pfgate = pfgate ? (int)strtol(pfgate, NULL, 10) : 1;
    const char *pf_evict = getenv("SS_PERSIST_PF_EVICT");
    p.pf_evict = pf_evict ? (int)strtol(pf_evict, NULL, 10) : 0;
    p.stages = stages, p.region_bytes = (int)region, p.ctr_stride = ctr_stride, p.block_size = a->block_size;
    p.kv_block_bytes = kv_fp8_block_bytes(a->block_size, kvh, hd);
    p.eps = a->eps, p.scale = a->scale, p.inv_freq = a->inv_freq, p.pos = a->pos, p.slots = a->slots;
    p.block_table = a->block_table, p.seq_lens = a->seq_lens;
    p.residual = (bf16 *)a->residual, p.qkv = (bf16 *)a->qkv, p.attn = (bf16 *)a->attn, p.act = (bf16 *)a->act;
    p.sync = (unsigned *)a->workspace;
    p.partials = (float *)((char *)a->workspace + ctr_bytes);
    p.trace = trace_n ? (unsigned long long *)((char *)a->workspace + ctr_bytes + part_bytes) : nullptr;
    for (int l = 0; l < a->n_layers; l++) {
        const ss_cuda_persist_layer *s = &a->layers[l];
        if (!aligned16(s->wqkv) || !aligned16(s->wo) || !aligned16(s->wgu) || !aligned16(s->wdown) ||
            !aligned16(s->attn_norm) || !aligned16(s->mlp_norm) || (s->q_norm == NULL) != (s->k_norm == NULL))
            SS_PERSIST_NO("a weight is not 16-byte aligned");
        p.layers[l] = Layer{(const bf16 *)s->attn_norm, (const bf16 *)s->wqkv, (const bf16 *)s->bqkv,
                            (const bf16 *)s->q_norm, (const bf16 *)s->k_norm, (const bf16 *)s->wo,
                            (const bf16 *)s->mlp_norm, (const bf16 *)s->wgu, (const bf16 *)s->wdown,
                            (bf16 *)s->k_cache, (bf16 *)s->v_cache};
    }
    if (!aligned16(a->residual) || !aligned16(a->qkv) || !aligned16(a->attn) || !aligned16(a->act))
        SS_PERSIST_NO("an activation buffer is not 16-byte aligned");
#undef SS_PERSIST_NO
    cudaError_t e;
    cudaStream_t s = (cudaStream_t)stream;
    e = cudaMemsetAsync(a->workspace, 0, ctr_bytes, s);
    if (e != cudaSuccess)
        return (int)e;
    cudaLaunchAttribute attr[1];
    attr[0].id = cudaLaunchAttributeCooperative;
    attr[0].val.cooperative = 1;
    cudaLaunchConfig_t cfg = {};
    cfg.gridDim = dim3((unsigned)sms);
    cfg.blockDim = dim3(threads);
    cfg.dynamicSmemBytes = smem;
    cfg.stream = s;
    cfg.attrs = attr;
    cfg.numAttrs = 1;
    if (trace_n && (e = cudaMemsetAsync(p.trace, 0, trace_n * 8, s)) != cudaSuccess)
        return (int)e;
    e = cudaLaunchKernelEx(&cfg, kernel, p);
    if (e == cudaErrorCooperativeLaunchTooLarge && p.tp_size == 1) { // e.g. fewer SMs usable than it has (MPS)
        // (At tp > 1 this stays an error: the other ranks may have launched, and a rank that fell back to
        // op by op would leave them waiting for its sums.)
        (void)cudaGetLastError();
        a->why = "the cooperative launch of one CTA per SM was refused";
        return -1;
    }
    if (e != cudaSuccess)
        return (int)e;
    if (trace_n && a->call == strtoll(trace_env, NULL, 10))
        print_trace(s, p.trace, a->n_layers, sms, p.tp_rank, p.splits);
    return launch_status();
}

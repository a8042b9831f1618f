/* bench_backend.c — microbenchmark of the cuda backend's ops on Llama-3-8B shapes, timed with cudaEvents
 * through the backend table: decode GEMVs (every kernel variant of gemv.cu), the lm_head, a prefill GEMM,
 * decode attention at several contexts. Prints achieved GB/s against a measured device-to-device copy
 * bandwidth. Attention runs each case twice through the launcher's switch SS_ATTN_FORCE=old|tiled
 * (set and cleared here): the CUDA-core kernel and the tensor-core kernel of attn_tiled.cu.
 * Usage: bench_backend [--iters N] [--device I] [--attn-sweep] [--attn-prefill] [--attn-prefill-at START]
 * [--attn-dense] [--attn-case B:CTX] [--kv fp8] [--linear-rows [--weights fp8] [--rows N,N,...] [--graphs]].
 * Needs a build with CUDA and a GPU. --attn-case times one decode attention case as the launcher picks (for a
 * profiler).
 * --attn-sweep times only the tensor-core attention: decode at contexts 1..2048 as the launcher picks and in the
 * 64-key form (SS_ATTN_SHORT=0), and a 2048-token prefill in both grid orders (SS_ATTN_ORDER). --kv fp8: the
 * attention reads an fp8 KV cache (random bytes: the timing does not depend on the values). --attn-prefill times
 * 2,048-token prompt chunks at contexts of 2k to 128k in each prefill form (--attn-prefill-at START: one chunk at
 * START in the wgmma form, for a profiler). --attn-dense times decode tiles in both forms at forced key-split counts
 * (run_attn_dense). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend/backend.h"
#include "core/dtype.h"

#ifndef SS_HAVE_CUDA
int main(void)
{
    printf("bench_backend: this build has no CUDA backend; nothing to measure\n");
    return 0;
}
#else
#include "backend/cuda/cuda_kernels.h"
#include "backend/cuda/cuda_timer.h"

#define MIB ((size_t)1 << 20)
#define CHUNK_ELEMS (4 * MIB)
#define ROTATE_BYTES (384 * MIB) /* rotate over more than the L2 so every read comes from HBM */

typedef struct bench {
    ss_backend *be;
    uint16_t *chunk; /* [CHUNK_ELEMS] random bf16 to fill buffers with */
    ss_cuda_timer *timer;
    int iters;
    int graphs; /* --graphs: --linear-rows times its calls replayed from a CUDA graph, as decode steps run them */
    double copy_gbs; /* measured device-to-device bandwidth (bytes read + written per second) */
} bench;

static void die(const char *what, ss_status st)
{
    fprintf(stderr, "bench_backend: %s: %s\n", what, ss_status_str(st));
    exit(1);
}

#define CHECK(call)                                                                                          \
    do {                                                                                                     \
        ss_status st_ = (call);                                                                              \
        if (st_ != SS_OK)                                                                                    \
            die(#call, st_);                                                                                 \
    } while (0)

static void *dalloc(bench *b, size_t bytes)
{
    void *p = NULL;
    CHECK(b->be->iface->alloc(b->be->ctx, bytes, &p));
    return p;
}

/* Fills a device buffer with random bf16 in [-0.05, 0.05) (so no NaN/denormal games). */
static void fill_random(bench *b, void *dst, size_t bytes)
{
    const size_t chunk_bytes = CHUNK_ELEMS * sizeof(uint16_t);
    for (size_t off = 0; off < bytes; off += chunk_bytes) {
        size_t len = bytes - off < chunk_bytes ? bytes - off : chunk_bytes;
        CHECK(b->be->iface->upload(b->be->ctx, (char *)dst + off, b->chunk, len));
    }
}

static void measure_copy(bench *b)
{
    const size_t bytes = 1024 * MIB;
    void *src = dalloc(b, bytes), *dst = dalloc(b, bytes);
    CHECK(b->be->iface->zero(b->be->ctx, src, bytes));
    for (int i = 0; i < 3; i++)
        CHECK(b->be->iface->copy(b->be->ctx, dst, src, bytes));
    double ms;
    const int reps = 10;
    CHECK(ss_cuda_timer_start(b->timer));
    for (int i = 0; i < reps; i++)
        CHECK(b->be->iface->copy(b->be->ctx, dst, src, bytes));
    CHECK(ss_cuda_timer_stop(b->timer, &ms));
    b->copy_gbs = 2.0 * (double)bytes * reps / (ms * 1e-3) / 1e9;
    printf("device-to-device copy: %.0f GB/s (read + write; the roofline below)\n", b->copy_gbs);
    b->be->iface->free_buf(b->be->ctx, src);
    b->be->iface->free_buf(b->be->ctx, dst);
}

static void report(bench *b, const char *name, double ms_per, double bytes, double flops)
{
    const double gbs = bytes / (ms_per * 1e-3) / 1e9;
    printf("%-44s %9.2f us  %7.0f GB/s  %5.1f%% of copy", name, ms_per * 1e3, gbs, 100.0 * gbs / b->copy_gbs);
    if (flops > 0)
        printf("  %7.1f TFLOP/s", flops / (ms_per * 1e-3) / 1e12);
    printf("\n");
}

/* Copies of one weight matrix [m, k] bf16, enough of them to defeat the L2 when rotated over. */
typedef struct wset {
    void *W[16];
    int copies;
} wset;

static void wset_alloc(bench *b, wset *ws, int32_t m, int32_t k)
{
    const size_t wbytes = (size_t)m * k * 2;
    int copies = (int)((ROTATE_BYTES + wbytes - 1) / wbytes);
    ws->copies = copies < 1 ? 1 : (copies > 16 ? 16 : copies);
    for (int i = 0; i < ws->copies; i++) {
        ws->W[i] = dalloc(b, wbytes);
        fill_random(b, ws->W[i], wbytes);
    }
}

static void wset_free(bench *b, wset *ws)
{
    for (int i = 0; i < ws->copies; i++)
        b->be->iface->free_buf(b->be->ctx, ws->W[i]);
}

/* Milliseconds per y[n, m] = x[n, k] W[m, k]^T, back to back on the stream over the copies of W. */
static double time_matmul(bench *b, void *out, ss_dtype out_type, const void *x, const wset *ws, int64_t n, int32_t m,
                          int32_t k)
{
    for (int i = 0; i < 3; i++)
        CHECK(b->be->iface->matmul(b->be->ctx, out, out_type, x, ws->W[i % ws->copies], NULL, n, m, k));
    double ms;
    CHECK(ss_cuda_timer_start(b->timer));
    for (int i = 0; i < b->iters; i++)
        CHECK(b->be->iface->matmul(b->be->ctx, out, out_type, x, ws->W[i % ws->copies], NULL, n, m, k));
    CHECK(ss_cuda_timer_stop(b->timer, &ms));
    return ms / b->iters;
}

static double matmul_bytes(int64_t n, int32_t m, int32_t k, ss_dtype out_type)
{
    return (double)m * k * 2 + (double)n * k * 2 + (double)n * m * ss_dtype_size(out_type);
}

/* y[n, m] = x[n, k] W[m, k]^T, rotating over enough copies of W to defeat the L2. */
static void bench_matmul(bench *b, const char *name, int64_t n, int32_t m, int32_t k, ss_dtype out_type)
{
    wset ws;
    wset_alloc(b, &ws, m, k);
    void *x = dalloc(b, (size_t)n * k * 2), *out = dalloc(b, (size_t)n * m * ss_dtype_size(out_type));
    fill_random(b, x, (size_t)n * k * 2);
    const double ms = time_matmul(b, out, out_type, x, &ws, n, m, k);
    char label[96];
    snprintf(label, sizeof label, "%s n=%lld %dx%d", name, (long long)n, m, k);
    report(b, label, ms, matmul_bytes(n, m, k, out_type), 2.0 * (double)n * m * k);
    wset_free(b, &ws);
    b->be->iface->free_buf(b->be->ctx, x);
    b->be->iface->free_buf(b->be->ctx, out);
}

/* One decode GEMV shape at n = 1, 2, 4, 8 under every kernel variant of gemv.cu (ss_cuda_gemv_set_variant),
 * weights allocated once; each (shape, n) ends with its best variant. Leaves the default variant set. */
static void bench_gemv_variants(bench *b, const char *name, int32_t m, int32_t k, ss_dtype out_type)
{
    const int64_t ns[] = {1, 2, 4, 8};
    const int nv = ss_cuda_gemv_variant_count();
    wset ws;
    wset_alloc(b, &ws, m, k);
    void *x = dalloc(b, (size_t)8 * k * 2), *out = dalloc(b, (size_t)8 * m * ss_dtype_size(out_type));
    fill_random(b, x, (size_t)8 * k * 2);
    for (size_t i = 0; i < sizeof ns / sizeof ns[0]; i++) {
        double best_ms = 0;
        int best = 0;
        for (int v = 0; v < nv; v++) {
            ss_cuda_gemv_set_variant(v);
            const double ms = time_matmul(b, out, out_type, x, &ws, ns[i], m, k);
            char label[128];
            snprintf(label, sizeof label, "%s n=%lld %dx%d [%s]", name, (long long)ns[i], m, k,
                     ss_cuda_gemv_variant_name(v));
            report(b, label, ms, matmul_bytes(ns[i], m, k, out_type), 2.0 * (double)ns[i] * m * k);
            if (v == 0 || ms < best_ms)
                best_ms = ms, best = v;
        }
        const double gbs = matmul_bytes(ns[i], m, k, out_type) / (best_ms * 1e-3) / 1e9;
        printf("   best for %s n=%lld: %s (%.1f%% of copy)\n", name, (long long)ns[i], ss_cuda_gemv_variant_name(best),
               100.0 * gbs / b->copy_gbs);
    }
    ss_cuda_gemv_set_variant(0);
    wset_free(b, &ws);
    b->be->iface->free_buf(b->be->ctx, x);
    b->be->iface->free_buf(b->be->ctx, out);
}

/* The four GEMVs of a Llama-3-8B layer back to back (qkv, o, gate_up, down), over `layers` separate weight
 * sets, per variant: what a decode step's GEMVs cost when each follows another kernel (PDL overlap included,
 * attention and the elementwise kernels between them left out). */
static void bench_gemv_layers(bench *b, int64_t n)
{
    enum { LAYERS = 4, OPS = 4 };
    const int32_t shape[OPS][2] = {{6144, 4096}, {4096, 4096}, {28672, 4096}, {4096, 14336}};
    void *W[LAYERS][OPS];
    double bytes = 0;
    for (int l = 0; l < LAYERS; l++)
        for (int o = 0; o < OPS; o++) {
            const size_t wb = (size_t)shape[o][0] * shape[o][1] * 2;
            W[l][o] = dalloc(b, wb);
            fill_random(b, W[l][o], wb);
        }
    for (int o = 0; o < OPS; o++)
        bytes += matmul_bytes(n, shape[o][0], shape[o][1], SS_DTYPE_BF16);
    void *x = dalloc(b, (size_t)n * 28672 * 2), *out = dalloc(b, (size_t)n * 28672 * 2);
    fill_random(b, x, (size_t)n * 28672 * 2);
    for (int v = 0; v < ss_cuda_gemv_variant_count(); v++) {
        ss_cuda_gemv_set_variant(v);
        const int reps = b->iters < 8 ? 8 : b->iters;
        double ms = 0;
        for (int pass = 0; pass < 2; pass++) { /* pass 0 warms up */
            if (pass == 1)
                CHECK(ss_cuda_timer_start(b->timer));
            for (int r = 0; r < (pass ? reps : 2); r++)
                for (int l = 0; l < LAYERS; l++)
                    for (int o = 0; o < OPS; o++) /* x: the previous op's output, as in a real step
                                                     (values may overflow; the timing does not care) */
                        CHECK(b->be->iface->matmul(b->be->ctx, (o & 1) ? x : out, SS_DTYPE_BF16, (o & 1) ? out : x,
                                                   W[l][o], NULL, n, shape[o][0], shape[o][1]));
            if (pass == 1)
                CHECK(ss_cuda_timer_stop(b->timer, &ms));
        }
        char label[128];
        snprintf(label, sizeof label, "layer GEMVs n=%lld (per layer) [%s]", (long long)n, ss_cuda_gemv_variant_name(v));
        report(b, label, ms / reps / LAYERS, bytes, 0);
    }
    ss_cuda_gemv_set_variant(0);
    for (int l = 0; l < LAYERS; l++)
        for (int o = 0; o < OPS; o++)
            b->be->iface->free_buf(b->be->ctx, W[l][o]);
    b->be->iface->free_buf(b->be->ctx, x);
    b->be->iface->free_buf(b->be->ctx, out);
}

/* Attention over the paged cache with Llama-3-8B heads (32 q, 8 kv, d 128): `batch` sequences, each
 * with `chunk` new tokens at positions start .. start+chunk-1 (chunk 1: decode; batch 1 and a long
 * chunk: a prefill chunk), once per kernel: SS_ATTN_FORCE=old (CUDA-core) and =tiled (tensor cores),
 * the launcher's benchmark switch. Rotates over separate caches (as consecutive layers would) so that
 * K/V come from HBM. Decode lines are read as GB/s (K+V bytes of the contexts), prefill lines as
 * TFLOP/s (causal: 4 * heads * D * sum over tokens of the context). */
/* One way to run the attention launcher: an environment switch of attention.cu set for the timed calls
 * (value NULL: unset), optionally a second one (env2 NULL: none), and the label it prints as. */
typedef struct attn_variant {
    const char *label, *env, *value, *env2, *value2;
} attn_variant;

/* Sets (value NULL: unsets) one of attention.cu's switches. */
static void set_switch(const char *env, const char *value)
{
    if (!env)
        return;
    if (value)
        setenv(env, value, 1);
    else
        unsetenv(env);
}

/* The default table: each case on the CUDA-core kernel and on the tensor-core kernel. */
static const attn_variant kKernels[2] = {{"old", "SS_ATTN_FORCE", "old", NULL, NULL},
                                         {"tiled", "SS_ATTN_FORCE", "tiled", NULL, NULL}};

static void bench_attention(bench *b, int32_t batch, int32_t start, int32_t chunk, const attn_variant *vars, int n_vars)
{
    const int32_t heads = 32, kv = 8, hd = 128, bs = 16;
    const int32_t ctx = start + chunk;
    const int64_t n = (int64_t)batch * chunk;
    const int32_t max_blocks = (ctx + bs - 1) / bs;
    const size_t block_bytes = ss_kv_block_bytes(b->be->kv_type, b->be->act_dtype, bs, kv, hd);
    const size_t cache_bytes = (size_t)batch * max_blocks * block_bytes;
    int layers = (int)((ROTATE_BYTES + 2 * cache_bytes - 1) / (2 * cache_bytes));
    layers = layers < 2 ? 2 : (layers > 8 ? 8 : layers);
    void *kc[8], *vc[8];
    for (int l = 0; l < layers; l++) {
        kc[l] = dalloc(b, cache_bytes);
        vc[l] = dalloc(b, cache_bytes);
        fill_random(b, kc[l], cache_bytes);
        fill_random(b, vc[l], cache_bytes);
    }
    const int64_t q_stride = (int64_t)(heads + 2 * kv) * hd;
    void *q = dalloc(b, (size_t)n * q_stride * 2), *out = dalloc(b, (size_t)n * heads * hd * 2);
    fill_random(b, q, (size_t)n * q_stride * 2);
    /* host layout: tok_seq [n], tok_pos [n], q_tiles [2n], seq_lens [batch], block_tables [batch, max_blocks] */
    const size_t n_meta = (size_t)n * 4 + (size_t)batch * (1 + (size_t)max_blocks);
    int32_t *host = malloc(n_meta * sizeof *host);
    if (!host)
        die("host metadata", SS_ERR_NOMEM);
    int32_t *tok_seq = host, *tok_pos = host + n, *tiles = host + 2 * n, *lens = host + 4 * n;
    int32_t *bt = lens + batch;
    int32_t n_tiles = 0, max_tile = 0;
    for (int32_t s = 0; s < batch; s++) {
        lens[s] = ctx;
        for (int32_t j = 0; j < max_blocks; j++) /* interleaved: sequence s owns blocks s, s+batch, ... */
            bt[s * max_blocks + j] = j * batch + s;
        for (int32_t i = 0; i < chunk; i++) {
            const int64_t t = (int64_t)s * chunk + i;
            tok_seq[t] = s;
            tok_pos[t] = start + i;
            if (i % SS_ATTN_TILE_MAX == 0) { /* runs cut at SS_ATTN_TILE_MAX tokens, as backend.h says */
                tiles[2 * n_tiles] = (int32_t)t;
                tiles[2 * n_tiles + 1] = 0;
                n_tiles++;
            }
            tiles[2 * n_tiles - 1]++;
            max_tile = tiles[2 * n_tiles - 1] > max_tile ? tiles[2 * n_tiles - 1] : max_tile;
        }
    }
    int32_t *md = dalloc(b, n_meta * sizeof *host);
    CHECK(b->be->iface->upload(b->be->ctx, md, host, n_meta * sizeof *host));
    ss_attn_meta meta = {md, md + n, md + 4 * n + batch, md + 4 * n, batch, max_blocks, ctx, bs,
                         md + 2 * n, n_tiles, max_tile, 0, 0, 0};
    const float scale = 0.08838834764f;
    double ctx_sum = 0; /* sum over tokens of the context each one sees */
    for (int32_t i = 0; i < chunk; i++)
        ctx_sum += (double)batch * (start + i + 1);
    const double flops = 4.0 * heads * hd * ctx_sum;
    const double bytes = 2.0 * (double)batch * ctx * (double)block_bytes / bs; /* K and V, scales included */
    for (int k = 0; k < n_vars; k++) {
        set_switch(vars[k].env, vars[k].value);
        set_switch(vars[k].env2, vars[k].value2);
        for (int i = 0; i < 3; i++)
            CHECK(b->be->iface->attention(b->be->ctx, out, q, q_stride, kc[0], vc[0], &meta, n, heads, kv, hd, scale));
        double ms;
        CHECK(ss_cuda_timer_start(b->timer));
        for (int i = 0; i < b->iters; i++)
            CHECK(b->be->iface->attention(b->be->ctx, out, q, q_stride, kc[i % layers], vc[i % layers], &meta, n, heads,
                                          kv, hd, scale));
        CHECK(ss_cuda_timer_stop(b->timer, &ms));
        char label[96];
        if (chunk == 1)
            snprintf(label, sizeof label, "attn %-5s decode b=%d ctx=%d", vars[k].label, batch, ctx);
        else
            snprintf(label, sizeof label, "attn %-5s b=%d chunk %d at %d", vars[k].label, batch, chunk, start);
        report(b, label, ms / b->iters, bytes, flops);
        set_switch(vars[k].env, NULL);
        set_switch(vars[k].env2, NULL);
    }
    for (int l = 0; l < layers; l++) {
        b->be->iface->free_buf(b->be->ctx, kc[l]);
        b->be->iface->free_buf(b->be->ctx, vc[l]);
    }
    b->be->iface->free_buf(b->be->ctx, q);
    b->be->iface->free_buf(b->be->ctx, out);
    b->be->iface->free_buf(b->be->ctx, md);
    free(host);
}

/* --attn-sweep: the tensor-core attention alone, decode at contexts 1..2048 as the launcher picks and in the
 * 64-key form, and a 2048-token prefill in each grid order. */
static void run_attn_sweep(bench *b)
{
    static const attn_variant forms[2] = {{"auto", "SS_ATTN_SHORT", NULL, NULL, NULL},
                                          {"64key", "SS_ATTN_SHORT", "0", NULL, NULL}};
    static const attn_variant order[3] = {{"auto", "SS_ATTN_ORDER", NULL, NULL, NULL},
                                          {"inner", "SS_ATTN_ORDER", "heads_inner", NULL, NULL},
                                          {"outer", "SS_ATTN_ORDER", "heads_outer", NULL, NULL}};
    const int32_t sb[] = {32, 64, 128, 256}, sc[] = {1, 64, 128, 160, 256, 512, 1024, 2048};
    for (size_t i = 0; i < sizeof sb / sizeof sb[0]; i++)
        for (size_t j = 0; j < sizeof sc / sizeof sc[0]; j++)
            bench_attention(b, sb[i], sc[j] - 1, 1, forms, 2);
    bench_attention(b, 1, 0, 2048, order, 3);
}

/* --attn-dense: decode tiles in each form (SS_ATTN_SHORT: the 64-key form, 0, against the form of more CTAs a SM, 1)
 * at forced key-split counts (SS_ATTN_SPLITS, the combine kernel merging), beside the launcher's choice, over
 * batches 16-256 and contexts 512-8,192: the data a split rule for both forms is fitted to. */
static void run_attn_dense(bench *b)
{
    static const char *const splits[] = {"1", "2", "3", "4", "6", "8"};
    enum { NS = sizeof splits / sizeof splits[0] };
    attn_variant vars[1 + 2 * NS] = {{"auto", "SS_ATTN_SHORT", NULL, NULL, NULL}};
    static char labels[2 * NS][16];
    for (int f = 0; f < 2; f++)
        for (int i = 0; i < NS; i++) {
            attn_variant *v = &vars[1 + f * NS + i];
            snprintf(labels[f * NS + i], sizeof labels[0], "%s/s%s", f ? "dense" : "std", splits[i]);
            *v = (attn_variant){labels[f * NS + i], "SS_ATTN_SHORT", f ? "1" : "0", "SS_ATTN_SPLITS", splits[i]};
        }
    const int32_t sb[] = {16, 32, 48, 64, 96, 128, 192, 256}, sc[] = {512, 1024, 2048, 4096, 8192};
    for (size_t i = 0; i < sizeof sb / sizeof sb[0]; i++)
        for (size_t j = 0; j < sizeof sc / sizeof sc[0]; j++)
            if (sc[j] < 8192 || sb[i] <= 64)
                bench_attention(b, sb[i], sc[j] - 1, 1, vars, 1 + 2 * NS);
}

/* --attn-prefill: prompt chunks of 2,048 tokens at contexts of 2k to 128k in each prefill form (SS_ATTN_PREFILL:
 * 8 warps of one m-tile, 4 of two, wgmma where the GPU runs it) and as the launcher picks. */
static void run_attn_prefill(bench *b, int32_t only_start)
{
    static const attn_variant forms[4] = {{"auto", "SS_ATTN_PREFILL", NULL, NULL, NULL},
                                          {"wm8", "SS_ATTN_PREFILL", "wm8", NULL, NULL},
                                          {"mt2", "SS_ATTN_PREFILL", "mt2", NULL, NULL},
                                          {"wg", "SS_ATTN_PREFILL", "wg", NULL, NULL}};
    if (!ss_cuda_attn_prefill_wg_ok(128, b->be->kv_type == SS_KV_FP8))
        printf("(no wgmma prefill form on this GPU or cache: the wg lines time the launcher's other form)\n");
    const int32_t starts[] = {0, 6144, 30720, 129024};
    if (only_start >= 0) { /* --attn-prefill-at: one start, the wgmma form only (for a profiler) */
        bench_attention(b, 1, only_start, 2048, forms + 3, 1);
        return;
    }
    for (size_t i = 0; i < sizeof starts / sizeof starts[0]; i++)
        bench_attention(b, 1, starts[i], 2048, forms, 4);
}

/* --linear-rows: the projections of decode steps of 9 to 16 rows (and 8, where the GEMV's one tile ends) as the
 * forward pass calls them: linear (gate/up: matmul_silu), weights in the backend's linear format (--weights fp8:
 * quantised by linear_quantize), on Llama-3-8B, 70B and 70B-at-tp-4 shapes, and bf16 lm_heads (matmul, f32 out). Run
 * it under SS_GEMV_MAX / SS_FP8_GEMV_MAX=8 and =16 to compare the GEMV's two-tile form with the GEMMs a shape at a
 * time (one H200, session 57: the 8B steps gained with the GEMV, the 70B ones lost), and under SS_GEMV_VARIANT to
 * compare the GEMV's forms (session 58: one row tile a block, mma-w8u4-pdl, against two, mma-m2-pdl). --rows: other
 * row counts (session 59: 17-64). --graphs: the timed calls replayed from one CUDA graph, without the host's launch
 * costs, as decode steps run them (without it, calls of a few microseconds may time the host: session 59's per-call
 * times of the fp8 GEMV and GEMM at 17 rows predicted a third of what 8B steps measured); the lm_heads stay call by
 * call. */
typedef struct lin_shape {
    const char *name;
    int32_t m, k; /* matmul_silu: m = 2 * inter */
    int silu;
} lin_shape;

#define LIN_ROWS_MAX 16 /* --rows: at most this many row counts, each 1..256 */

/* iters calls of one projection at n rows, over the copies of ws (as the forward pass calls them). */
static void lin_calls(bench *b, const lin_shape *sh, const wset *ws, void *out, const void *x, void *gu, int64_t n,
                      int iters)
{
    const ss_backend_i *B = b->be->iface;
    for (int i = 0; i < iters; i++) {
        const void *W = ws->W[i % ws->copies];
        ss_status st = sh->silu ? B->matmul_silu(b->be->ctx, out, x, W, n, sh->m / 2, sh->k)
                                : B->linear(b->be->ctx, out, x, W, NULL, n, sh->m, sh->k);
        if (st == SS_ERR_UNSUPPORTED && sh->silu) { /* as the forward pass: linear, then silu_mul */
            CHECK(B->linear(b->be->ctx, gu, x, W, NULL, n, sh->m, sh->k));
            st = B->silu_mul(b->be->ctx, out, gu, n, sh->m / 2);
        }
        CHECK(st);
    }
}

static void bench_linear_rows(bench *b, const int64_t *ns, int nn)
{
    static const lin_shape shapes[] = {
        {"8B qkv", 6144, 4096, 0},        {"8B o", 4096, 4096, 0},          {"8B gate_up", 28672, 4096, 1},
        {"8B down", 4096, 14336, 0},      {"70B qkv", 10240, 8192, 0},      {"70B o", 8192, 8192, 0},
        {"70B gate_up", 57344, 8192, 1},  {"70B down", 8192, 28672, 0},     {"70B tp4 qkv", 2560, 8192, 0},
        {"70B tp4 o", 8192, 2048, 0},     {"70B tp4 gate_up", 14336, 8192, 1}, {"70B tp4 down", 8192, 7168, 0},
    };
    const ss_backend_i *B = b->be->iface;
    int64_t nmax = 0;
    for (int i = 0; i < nn; i++)
        nmax = ns[i] > nmax ? ns[i] : nmax;
    for (size_t si = 0; si < sizeof shapes / sizeof shapes[0]; si++) {
        const lin_shape *sh = &shapes[si];
        wset ws;
        wset_alloc(b, &ws, sh->m, sh->k);
        if (b->be->linear_type != SS_LINEAR_ACT) { /* each copy into the linear format, in place of the bf16 one */
            for (int c = 0; c < ws.copies; c++) {
                void *q = dalloc(b, ss_linear_bytes(b->be->linear_type, b->be->weight_dtype, sh->m, sh->k));
                CHECK(B->linear_quantize(b->be->ctx, q, ws.W[c], sh->m, sh->k));
                CHECK(B->sync(b->be->ctx));
                B->free_buf(b->be->ctx, ws.W[c]);
                ws.W[c] = q;
            }
        }
        const double wbytes = (double)ss_linear_bytes(b->be->linear_type, b->be->weight_dtype, sh->m, sh->k);
        void *x = dalloc(b, (size_t)nmax * sh->k * 2), *out = dalloc(b, (size_t)nmax * sh->m * 2);
        void *gu = dalloc(b, (size_t)nmax * sh->m * 2);
        fill_random(b, x, (size_t)nmax * sh->k * 2);
        for (int ni = 0; ni < nn; ni++) {
            const int64_t n = ns[ni];
            double ms = 0;
            lin_calls(b, sh, &ws, out, x, gu, n, 3); /* warm-up */
            const uint64_t key = 0x11e40000ull + (uint64_t)si * 1024 + (uint64_t)n;
            if (b->graphs) { /* one graph of the timed calls, replayed once untimed first */
                CHECK(B->graph_begin(b->be->ctx, key));
                lin_calls(b, sh, &ws, out, x, gu, n, b->iters);
                CHECK(B->graph_end(b->be->ctx, key));
                CHECK(B->graph_launch(b->be->ctx, key));
            }
            CHECK(ss_cuda_timer_start(b->timer));
            if (b->graphs)
                CHECK(B->graph_launch(b->be->ctx, key));
            else
                lin_calls(b, sh, &ws, out, x, gu, n, b->iters);
            CHECK(ss_cuda_timer_stop(b->timer, &ms));
            char label[96];
            snprintf(label, sizeof label, "%s n=%lld %dx%d%s", sh->name, (long long)n, sh->m, sh->k,
                     b->graphs ? " (graph)" : "");
            report(b, label, ms / b->iters, wbytes, 0);
        }
        wset_free(b, &ws);
        B->free_buf(b->be->ctx, x);
        B->free_buf(b->be->ctx, out);
        B->free_buf(b->be->ctx, gu);
    }
    if (b->be->linear_type == SS_LINEAR_ACT) {
        for (int ni = 0; ni < nn; ni++) {
            bench_matmul(b, "lm_head 8B (f32 out)", ns[ni], 128256, 4096, SS_DTYPE_F32);
            bench_matmul(b, "lm_head 70B (f32 out)", ns[ni], 128256, 8192, SS_DTYPE_F32);
        }
    }
}

/* Every op of the default run: GEMV variants, cuBLASLt, attention on both kernels, and the batch-1 roofline. */
static void run_all(bench *b)
{
    printf("-- decode GEMV (x bf16, W bf16, fp32 accumulate), Llama-3-8B layer shapes, every kernel variant "
           "(SS_GEMV_VARIANT picks one for the server; default: %s)\n",
           ss_cuda_gemv_variant_name(0));
    bench_gemv_variants(b, "qkv_proj", 6144, 4096, SS_DTYPE_BF16);
    bench_gemv_variants(b, "o_proj", 4096, 4096, SS_DTYPE_BF16);
    bench_gemv_variants(b, "gate_up (fused)", 28672, 4096, SS_DTYPE_BF16);
    bench_gemv_variants(b, "down_proj", 4096, 14336, SS_DTYPE_BF16);
    bench_gemv_variants(b, "lm_head (f32 logits)", 128256, 4096, SS_DTYPE_F32);
    bench_gemv_layers(b, 1);
    bench_gemv_layers(b, 8);
    printf("-- cuBLASLt (batch decode / prefill)\n");
    bench_matmul(b, "gate_up (fused)", 32, 28672, 4096, SS_DTYPE_BF16);
    bench_matmul(b, "gate_up (fused)", 128, 28672, 4096, SS_DTYPE_BF16);
    bench_matmul(b, "gate_up (fused) prefill", 2048, 28672, 4096, SS_DTYPE_BF16);
    bench_matmul(b, "down_proj prefill", 2048, 4096, 14336, SS_DTYPE_BF16);
    printf("-- attention over the paged cache, 32/8 heads x 128, each case on the CUDA-core kernel (old) and the\n"
           "   tensor-core kernel (tiled); prefill: TFLOP/s, decode: GB/s of K+V\n");
    bench_attention(b, 1, 0, 2048, kKernels, 2); /* a 2048-token prompt from position 0 */
    bench_attention(b, 1, 2048, 2048, kKernels, 2); /* its second chunk */
    const int32_t ctxs[] = {128, 2048, 8192};
    for (size_t i = 0; i < 3; i++)
        bench_attention(b, 1, ctxs[i] - 1, 1, kKernels, 2);
    const int32_t batches[] = {8, 32, 128, 256};
    for (size_t i = 0; i < 4; i++) {
        bench_attention(b, batches[i], 1023, 1, kKernels, 2);
        bench_attention(b, batches[i], 2047, 1, kKernels, 2);
    }

    /* Bytes of one decode step of Llama-3-8B at batch 1 (weights only) and the roofline it implies. */
    const double weights = 2.0 * (32.0 * (6144.0 * 4096 + 4096.0 * 4096 + 28672.0 * 4096 + 4096.0 * 14336) +
                                  128256.0 * 4096);
    printf("Llama-3-8B decode roofline at the copy bandwidth: %.1f GB of weights per token -> %.0f tok/s\n",
           weights / 1e9, b->copy_gbs * 1e9 / weights);
}

int main(int argc, char **argv)
{
    bench b;
    memset(&b, 0, sizeof b);
    b.iters = 50;
    int device = 0;
    int sweep = 0; /* --attn-sweep: only the tensor-core attention, per form and grid order */
    int prefill = 0; /* --attn-prefill: only the prefill attention, per form */
    int32_t prefill_at = -1; /* --attn-prefill-at START: one chunk at START in the wgmma form */
    int dense = 0;   /* --attn-dense: decode tiles per form at forced split counts */
    int linear_rows = 0; /* --linear-rows: the projections at 8, 12, 16 rows or --rows LIST (bench_linear_rows) */
    int64_t rows[LIN_ROWS_MAX] = {8, 12, 16};
    int nrows = 3, rows_given = 0;
    ss_linear_type linear_type = SS_LINEAR_ACT; /* --weights fp8 */
    int case_batch = 0, case_ctx = 0; /* --attn-case B:CTX: one decode attention case (for a profiler) */
    ss_kv_type kv_type = SS_KV_ACT;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--attn-sweep") == 0) {
            sweep = 1;
        } else if (strcmp(argv[i], "--attn-prefill") == 0) {
            prefill = 1;
        } else if (i + 1 < argc && strcmp(argv[i], "--attn-prefill-at") == 0) {
            prefill = 1;
            prefill_at = (int32_t)strtol(argv[++i], NULL, 10);
            if (prefill_at < 0) {
                fprintf(stderr, "bench_backend: --attn-prefill-at wants a position >= 0 (got '%s')\n", argv[i]);
                return 2;
            }
        } else if (strcmp(argv[i], "--attn-dense") == 0) {
            dense = 1;
        } else if (strcmp(argv[i], "--linear-rows") == 0) {
            linear_rows = 1;
        } else if (strcmp(argv[i], "--graphs") == 0) {
            b.graphs = 1;
        } else if (i + 1 < argc && strcmp(argv[i], "--rows") == 0) {
            const char *arg = argv[++i];
            char *end = NULL;
            nrows = 0;
            do {
                const char *p = nrows ? end + 1 : arg;
                const long long v = strtoll(p, &end, 10);
                if (end == p || v < 1 || v > 256 || nrows == LIN_ROWS_MAX || (*end && *end != ',')) {
                    nrows = 0;
                    break;
                }
                rows[nrows++] = v;
            } while (*end);
            rows_given = 1;
            if (nrows == 0) {
                fprintf(stderr, "bench_backend: --rows wants up to %d counts of 1-256, comma-separated (got '%s')\n",
                        LIN_ROWS_MAX, arg);
                return 2;
            }
        } else if (i + 1 < argc && strcmp(argv[i], "--weights") == 0) {
            if (strcmp(argv[++i], "fp8") != 0) {
                fprintf(stderr, "bench_backend: --weights takes fp8 (got '%s')\n", argv[i]);
                return 2;
            }
            linear_type = SS_LINEAR_FP8;
        } else if (i + 1 < argc && strcmp(argv[i], "--iters") == 0) {
            b.iters = (int)strtol(argv[++i], NULL, 10);
        } else if (i + 1 < argc && strcmp(argv[i], "--device") == 0) {
            device = (int)strtol(argv[++i], NULL, 10);
        } else if (i + 1 < argc && strcmp(argv[i], "--attn-case") == 0) {
            if (sscanf(argv[++i], "%d:%d", &case_batch, &case_ctx) != 2 || case_batch < 1 || case_ctx < 1) {
                fprintf(stderr, "bench_backend: --attn-case wants BATCH:CONTEXT (got '%s')\n", argv[i]);
                return 2;
            }
        } else if (i + 1 < argc && strcmp(argv[i], "--kv") == 0) {
            ss_err kerr;
            if (ss_kv_type_parse(argv[++i], &kv_type, &kerr) != SS_OK) {
                fprintf(stderr, "bench_backend: %s\n", kerr.msg);
                return 2;
            }
        } else {
            fprintf(stderr,
                    "bench_backend: unknown argument '%s' (usage: [--iters N] [--device I] [--attn-sweep] "
                    "[--attn-prefill] [--attn-prefill-at START] [--attn-dense] [--attn-case B:CTX] [--kv fp8] "
                    "[--linear-rows [--weights fp8] [--rows N,N,...] [--graphs]])\n",
                    argv[i]);
            return 2;
        }
    }
    if ((b.graphs || rows_given) && !linear_rows) {
        fprintf(stderr, "bench_backend: --rows and --graphs go with --linear-rows\n");
        return 2;
    }
    if (b.iters < 1)
        b.iters = 1;
    b.chunk = malloc(CHUNK_ELEMS * sizeof(uint16_t));
    if (!b.chunk)
        return 1;
    uint64_t s = 0x2545f4914f6cdd1dull;
    for (size_t i = 0; i < CHUNK_ELEMS; i++) {
        s ^= s << 13, s ^= s >> 7, s ^= s << 17;
        b.chunk[i] = ss_f32_to_bf16(((float)((s >> 40) & 0xffff) / 65536.0f - 0.5f) * 0.1f);
    }
    if (!ss_backend_cuda_available()) {
        printf("bench_backend: no CUDA device visible; nothing to measure\n");
        return 0;
    }
    ss_backend_params prm = ss_backend_default_params();
    prm.device = SS_DEVICE_CUDA;
    prm.device_index = device;
    prm.kv_type = kv_type;
    prm.linear_type = linear_type;
    ss_err err = {{0}};
    if (ss_backend_create(&prm, &b.be, &err) != SS_OK) {
        fprintf(stderr, "bench_backend: %s\n", err.msg);
        return 1;
    }
    CHECK(ss_cuda_timer_create(b.be, &b.timer, &err));
    printf("device: %s; %d iterations per line; KV cache %s\n", b.be->desc, b.iters, ss_kv_type_name(kv_type));
    measure_copy(&b);
    static const attn_variant launcher_choice = {"auto", "SS_ATTN_SHORT", NULL, NULL, NULL};
    if (case_batch > 0)
        bench_attention(&b, case_batch, case_ctx - 1, 1, &launcher_choice, 1);
    else if (sweep)
        run_attn_sweep(&b);
    else if (prefill)
        run_attn_prefill(&b, prefill_at);
    else if (dense)
        run_attn_dense(&b);
    else if (linear_rows)
        bench_linear_rows(&b, rows, nrows);
    else
        run_all(&b);
    ss_cuda_timer_destroy(b.timer);
    ss_backend_destroy(b.be);
    free(b.chunk);
    return 0;
}
#endif

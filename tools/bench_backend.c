/* bench_backend.c — microbenchmark of the cuda backend's ops on Llama-3-8B shapes, timed with cudaEvents
 * through the backend table: decode GEMVs, the lm_head, a prefill GEMM, decode attention at several
 * contexts. Prints achieved GB/s against a measured device-to-device copy bandwidth.
 * Usage: bench_backend [--iters N] [--device I]. Needs a build with CUDA and a GPU. */
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
#include "backend/cuda/cuda_timer.h"

#define MIB ((size_t)1 << 20)
#define CHUNK_ELEMS (4 * MIB)
#define ROTATE_BYTES (384 * MIB) /* rotate over more than the L2 so every read comes from HBM */

typedef struct bench {
    ss_backend *be;
    uint16_t *chunk; /* [CHUNK_ELEMS] random bf16 to fill buffers with */
    ss_cuda_timer *timer;
    int iters;
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

/* y[n, m] = x[n, k] W[m, k]^T, rotating over enough copies of W to defeat the L2. */
static void bench_matmul(bench *b, const char *name, int64_t n, int32_t m, int32_t k, ss_dtype out_type)
{
    const size_t wbytes = (size_t)m * k * 2;
    int copies = (int)((ROTATE_BYTES + wbytes - 1) / wbytes);
    copies = copies < 1 ? 1 : (copies > 16 ? 16 : copies);
    void *W[16];
    for (int i = 0; i < copies; i++) {
        W[i] = dalloc(b, wbytes);
        fill_random(b, W[i], wbytes);
    }
    void *x = dalloc(b, (size_t)n * k * 2), *out = dalloc(b, (size_t)n * m * ss_dtype_size(out_type));
    fill_random(b, x, (size_t)n * k * 2);
    for (int i = 0; i < 3; i++)
        CHECK(b->be->iface->matmul(b->be->ctx, out, out_type, x, W[i % copies], NULL, n, m, k));
    double ms;
    CHECK(ss_cuda_timer_start(b->timer));
    for (int i = 0; i < b->iters; i++)
        CHECK(b->be->iface->matmul(b->be->ctx, out, out_type, x, W[i % copies], NULL, n, m, k));
    CHECK(ss_cuda_timer_stop(b->timer, &ms));
    const double bytes = (double)wbytes + (double)n * k * 2 + (double)n * m * ss_dtype_size(out_type);
    char label[96];
    snprintf(label, sizeof label, "%s n=%lld %dx%d", name, (long long)n, m, k);
    report(b, label, ms / b->iters, bytes, 2.0 * (double)n * m * k);
    for (int i = 0; i < copies; i++)
        b->be->iface->free_buf(b->be->ctx, W[i]);
    b->be->iface->free_buf(b->be->ctx, x);
    b->be->iface->free_buf(b->be->ctx, out);
}

/* Decode attention, batch `batch`, every sequence at context ctx; Llama-3-8B heads (32 q, 8 kv, d 128).
 * Rotates over `layers` separate caches (as consecutive layers would). */
static void bench_attention(bench *b, int32_t batch, int32_t ctx)
{
    const int32_t heads = 32, kv = 8, hd = 128, bs = 16, layers = 8;
    const int32_t max_blocks = (ctx + bs - 1) / bs;
    const int64_t cache_elems = (int64_t)batch * max_blocks * bs * kv * hd;
    void *kc[8], *vc[8];
    for (int l = 0; l < layers; l++) {
        kc[l] = dalloc(b, (size_t)cache_elems * 2);
        vc[l] = dalloc(b, (size_t)cache_elems * 2);
        fill_random(b, kc[l], (size_t)cache_elems * 2);
        fill_random(b, vc[l], (size_t)cache_elems * 2);
    }
    const int64_t q_stride = (int64_t)(heads + 2 * kv) * hd;
    void *q = dalloc(b, (size_t)batch * q_stride * 2), *out = dalloc(b, (size_t)batch * heads * hd * 2);
    fill_random(b, q, (size_t)batch * q_stride * 2);
    int32_t *host = malloc((size_t)batch * (3 + max_blocks) * sizeof *host);
    int32_t *tok_seq = host, *tok_pos = host + batch, *lens = host + 2 * batch, *bt = host + 3 * batch;
    for (int32_t s = 0; s < batch; s++) {
        tok_seq[s] = s;
        tok_pos[s] = ctx - 1;
        lens[s] = ctx;
        for (int32_t j = 0; j < max_blocks; j++) /* interleaved: sequence s owns blocks s, s+batch, ... */
            bt[s * max_blocks + j] = j * batch + s;
    }
    void *meta_dev = dalloc(b, (size_t)batch * (3 + max_blocks) * sizeof *host);
    CHECK(b->be->iface->upload(b->be->ctx, meta_dev, host, (size_t)batch * (3 + max_blocks) * sizeof *host));
    int32_t *md = meta_dev;
    ss_attn_meta meta = {md, md + batch, md + 3 * batch, md + 2 * batch, batch, max_blocks, ctx, bs, NULL, 0, 0};
    const float scale = 0.08838834764f;
    for (int i = 0; i < 3; i++)
        CHECK(b->be->iface->attention(b->be->ctx, out, q, q_stride, kc[0], vc[0], &meta, batch, heads, kv, hd, scale));
    double ms;
    CHECK(ss_cuda_timer_start(b->timer));
    for (int i = 0; i < b->iters; i++)
        CHECK(b->be->iface->attention(b->be->ctx, out, q, q_stride, kc[i % layers], vc[i % layers], &meta, batch, heads,
                                      kv, hd, scale));
    CHECK(ss_cuda_timer_stop(b->timer, &ms));
    char label[96];
    snprintf(label, sizeof label, "attention decode b=%d ctx=%d (32/8 x 128)", batch, ctx);
    const double bytes = 2.0 * (double)batch * ctx * kv * hd * 2;
    report(b, label, ms / b->iters, bytes, 4.0 * (double)batch * ctx * heads * hd);
    for (int l = 0; l < layers; l++) {
        b->be->iface->free_buf(b->be->ctx, kc[l]);
        b->be->iface->free_buf(b->be->ctx, vc[l]);
    }
    b->be->iface->free_buf(b->be->ctx, q);
    b->be->iface->free_buf(b->be->ctx, out);
    b->be->iface->free_buf(b->be->ctx, meta_dev);
    free(host);
}

int main(int argc, char **argv)
{
    bench b;
    memset(&b, 0, sizeof b);
    b.iters = 50;
    int device = 0;
    for (int i = 1; i + 1 < argc; i += 2) {
        if (strcmp(argv[i], "--iters") == 0)
            b.iters = (int)strtol(argv[i + 1], NULL, 10);
        else if (strcmp(argv[i], "--device") == 0)
            device = (int)strtol(argv[i + 1], NULL, 10);
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
    ss_err err = {{0}};
    if (ss_backend_create(&prm, &b.be, &err) != SS_OK) {
        fprintf(stderr, "bench_backend: %s\n", err.msg);
        return 1;
    }
    CHECK(ss_cuda_timer_create(b.be, &b.timer, &err));
    printf("device: %s; %d iterations per line\n", b.be->desc, b.iters);
    measure_copy(&b);

    printf("-- decode GEMV (x bf16, W bf16, fp32 accumulate), Llama-3-8B layer shapes\n");
    const int64_t ns[] = {1, 2, 4, 8};
    for (size_t i = 0; i < sizeof ns / sizeof ns[0]; i++) {
        bench_matmul(&b, "qkv_proj", ns[i], 6144, 4096, SS_DTYPE_BF16);
        bench_matmul(&b, "o_proj", ns[i], 4096, 4096, SS_DTYPE_BF16);
        bench_matmul(&b, "gate_up (fused)", ns[i], 28672, 4096, SS_DTYPE_BF16);
        bench_matmul(&b, "down_proj", ns[i], 4096, 14336, SS_DTYPE_BF16);
    }
    bench_matmul(&b, "lm_head (f32 logits)", 1, 128256, 4096, SS_DTYPE_F32);
    bench_matmul(&b, "lm_head (f32 logits)", 8, 128256, 4096, SS_DTYPE_F32);
    printf("-- cuBLASLt (batch decode / prefill)\n");
    bench_matmul(&b, "gate_up (fused)", 32, 28672, 4096, SS_DTYPE_BF16);
    bench_matmul(&b, "gate_up (fused)", 128, 28672, 4096, SS_DTYPE_BF16);
    bench_matmul(&b, "gate_up (fused) prefill", 2048, 28672, 4096, SS_DTYPE_BF16);
    bench_matmul(&b, "down_proj prefill", 2048, 4096, 14336, SS_DTYPE_BF16);
    printf("-- attention (split-K decode over the paged cache)\n");
    const int32_t ctxs[] = {128, 2048, 8192};
    for (size_t i = 0; i < 3; i++)
        bench_attention(&b, 1, ctxs[i]);
    bench_attention(&b, 8, 2048);
    bench_attention(&b, 32, 2048);

    /* Bytes of one decode step of Llama-3-8B at batch 1 (weights only) and the roofline it implies. */
    const double weights = 2.0 * (32.0 * (6144.0 * 4096 + 4096.0 * 4096 + 28672.0 * 4096 + 4096.0 * 14336) +
                                  128256.0 * 4096);
    printf("Llama-3-8B decode roofline at the copy bandwidth: %.1f GB of weights per token -> %.0f tok/s\n",
           weights / 1e9, b.copy_gbs * 1e9 / weights);
    ss_cuda_timer_destroy(b.timer);
    ss_backend_destroy(b.be);
    free(b.chunk);
    return 0;
}
#endif

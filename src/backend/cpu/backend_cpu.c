/* backend_cpu.c — the cpu backend: float32 compute from (converted) bf16 weights, OpenBLAS for
 * matmuls, OpenMP threads for the rest. The reference the cuda backend is checked against. */
#include <cblas.h>
#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "backend/backend.h"
#include "backend/decode_layers_ref.h"
#include "backend/sample_host.h"
#include "core/log.h"
#include "core/alloc.h"

typedef struct cpu_ctx {
    int n_threads;
    const ss_backend *self; /* borrowed: the backend this context belongs to (decode_layers composes its ops) */
    ss_kv_type kv_type;
    ss_linear_type linear_type;
    float e4m3[256]; /* every e4m3 code's value */
    float *wtmp;     /* fp8 linear: one weight matrix in f32, grown as needed */
    size_t wtmp_cap; /* floats */
} cpu_ctx;

/* Threads of every parallel region: explicit, because the calling thread (a scheduler's) may not
 * be the one that created the backend, and omp_set_num_threads is per thread. */
#define CPU_THREADS(ctx) (((const cpu_ctx *)(ctx))->n_threads)

/* Buffers are zeroed, so that stale data never looks valid, and 64-byte aligned for vector loads. Large ones (32 MiB
 * or more: weights, the KV cache) are anonymous mappings, which the kernel zeroes page by page on first touch: a memset
 * touched every page at once, so a 1B model's cpu replica spent ~10 s of its start writing zeros, and an idle server
 * held its whole KV cache in memory (session 61). A 64-byte header before each buffer says how to free it. */
#if defined(__SANITIZE_ADDRESS__)
#define CPU_MAP_MIN SIZE_MAX /* under ASan every buffer comes from the allocator, which guards its ends */
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define CPU_MAP_MIN SIZE_MAX
#endif
#endif
#ifndef CPU_MAP_MIN /* glibc's allocator maps buffers this large itself (its threshold's cap): smaller freed ones it
                     * reuses, without page faults, where a fresh mapping would fault every page again */
#define CPU_MAP_MIN ((size_t)32 << 20)
#endif
#define CPU_HDR 64

typedef struct cpu_buf_hdr {
    size_t total; /* bytes from the header on */
    int mapped;   /* 1: mmap'd (munmap), 0: posix_memalign (free) */
} cpu_buf_hdr;

static ss_status cpu_alloc(void *ctx, size_t bytes, void **out)
{
    (void)ctx;
    const size_t total = CPU_HDR + ((bytes + 63) & ~(size_t)63);
    if (total < bytes)
        return SS_ERR_NOMEM;
    uint8_t *base = NULL;
    const int mapped = total >= CPU_MAP_MIN;
    if (mapped) {
        void *m = mmap(NULL, total, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (m == MAP_FAILED)
            return SS_ERR_NOMEM;
        base = m;
    } else {
        void *m = NULL;
        if (posix_memalign(&m, 64, total) != 0 || !m)
            return SS_ERR_NOMEM;
        base = m;
        memset(base, 0, total);
    }
    cpu_buf_hdr h = {total, mapped};
    memcpy(base, &h, sizeof h);
    *out = base + CPU_HDR;
    return SS_OK;
}

static void cpu_free(void *ctx, void *p)
{
    (void)ctx;
    if (!p)
        return;
    uint8_t *base = (uint8_t *)p - CPU_HDR;
    cpu_buf_hdr h;
    memcpy(&h, base, sizeof h);
    if (h.mapped)
        munmap(base, h.total);
    else
        free(base);
}

static ss_status cpu_memcpy(void *ctx, void *dst, const void *src, size_t bytes)
{
    (void)ctx;
    if (bytes)
        memmove(dst, src, bytes);
    return SS_OK;
}

/* The cpu backend has no stream: an "asynchronous" download is done when it returns. */
static ss_status cpu_download_async(void *ctx, void *dst, const void *src, size_t bytes, int slot)
{
    (void)slot;
    return cpu_memcpy(ctx, dst, src, bytes);
}

static ss_status cpu_download_wait(void *ctx, int slot)
{
    (void)ctx;
    (void)slot;
    return SS_OK;
}

static ss_status cpu_zero(void *ctx, void *dst, size_t bytes)
{
    (void)ctx;
    memset(dst, 0, bytes);
    return SS_OK;
}

static ss_status cpu_upload_weight(void *ctx, void *dst, const void *src, ss_dtype st, int64_t n)
{
    (void)ctx;
    ss_convert_to_f32(dst, src, st, (size_t)n);
    return SS_OK;
}

static ss_status cpu_sync(void *ctx)
{
    (void)ctx;
    return SS_OK;
}

static ss_status cpu_embed_fed(void *ctx, void *out, const void *table, const int32_t *ids, const int32_t *fed,
                               int64_t n, int32_t dim, int64_t row_start, int64_t rows)
{
    (void)ctx;
    float *o = out;
    const float *t = table;
    for (int64_t i = 0; i < n; i++) {
        int64_t id = ids[i] < 0 && fed ? fed[-1 - (int64_t)ids[i]] : ids[i];
        int64_t r = id - row_start;
        if (r >= 0 && r < rows)
            memcpy(o + i * dim, t + r * dim, (size_t)dim * sizeof(float));
        else
            memset(o + i * dim, 0, (size_t)dim * sizeof(float));
    }
    return SS_OK;
}

static ss_status cpu_embed(void *ctx, void *out, const void *table, const int32_t *ids, int64_t n, int32_t dim,
                           int64_t row_start, int64_t rows)
{
    return cpu_embed_fed(ctx, out, table, ids, NULL, n, dim, row_start, rows);
}

static void cpu_rms_row(float *o, const float *x, const float *w, int32_t dim, float eps)
{
    double ss = 0;
    for (int32_t j = 0; j < dim; j++)
        ss += (double)x[j] * x[j];
    float inv = (float)(1.0 / sqrt(ss / dim + eps));
    for (int32_t j = 0; j < dim; j++)
        o[j] = x[j] * inv * w[j];
}

static ss_status cpu_rmsnorm(void *ctx, void *out, const void *x, const void *w, int64_t rows, int32_t dim, float eps)
{
    (void)ctx;
#pragma omp parallel for if (rows > 16) num_threads(CPU_THREADS(ctx))
    for (int64_t r = 0; r < rows; r++)
        cpu_rms_row((float *)out + r * dim, (const float *)x + r * dim, w, dim, eps);
    return SS_OK;
}

static ss_status cpu_add_rmsnorm(void *ctx, void *residual, const void *add, void *out, const void *w, int64_t rows,
                                 int32_t dim, float eps)
{
    (void)ctx;
#pragma omp parallel for if (rows > 16) num_threads(CPU_THREADS(ctx))
    for (int64_t r = 0; r < rows; r++) {
        float *res = (float *)residual + r * dim;
        const float *a = (const float *)add + r * dim;
        for (int32_t j = 0; j < dim; j++)
            res[j] += a[j];
        cpu_rms_row((float *)out + r * dim, res, w, dim, eps);
    }
    return SS_OK;
}

static ss_status cpu_matmul(void *ctx, void *out, ss_dtype out_type, const void *x, const void *W, const void *bias,
                            int64_t n, int32_t m, int32_t k)
{
    (void)ctx;
    (void)out_type; /* f32 either way on cpu */
    float *o = out;
    if (n <= 0)
        return SS_OK;
    if (bias) {
        for (int64_t i = 0; i < n; i++)
            memcpy(o + i * m, bias, (size_t)m * sizeof(float));
    }
    if ((int64_t)n * m * k < (1 << 20)) {
        /* Small products: BLAS's thread hand-off costs more than the arithmetic. */
        const float *xs = x, *Ws = W;
        for (int64_t i = 0; i < n; i++)
            for (int32_t r = 0; r < m; r++) {
                const float *a = xs + i * k, *w = Ws + (int64_t)r * k;
                float acc = 0;
                for (int32_t j = 0; j < k; j++)
                    acc += a[j] * w[j];
                o[i * m + r] = bias ? o[i * m + r] + acc : acc;
            }
    } else if (n == 1)
        cblas_sgemv(CblasRowMajor, CblasNoTrans, m, k, 1.0f, W, k, x, 1, bias ? 1.0f : 0.0f, o, 1);
    else
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)n, m, k, 1.0f, x, k, W, k, bias ? 1.0f : 0.0f, o, m);
    return SS_OK;
}

/* fp8 linear weights are decoded into f32 (exactly e4m3 * its row's scale, rounded once) and multiplied as matmul
 * does: W8A16, the reference the cuda backend's fp8 paths are compared with. */
static ss_status cpu_linear(void *ctx, void *out, const void *x, const void *W, const void *bias, int64_t n, int32_t m,
                            int32_t k)
{
    cpu_ctx *c = ctx;
    if (c->linear_type != SS_LINEAR_FP8)
        return cpu_matmul(ctx, out, SS_DTYPE_F32, x, W, bias, n, m, k);
    const size_t cnt = (size_t)m * (size_t)k;
    if (cnt > c->wtmp_cap) {
        float *nb = ss_realloc(c->wtmp, cnt * sizeof(float));
        if (!nb)
            return SS_ERR_NOMEM;
        c->wtmp = nb;
        c->wtmp_cap = cnt;
    }
    const uint8_t *q = W;
    const uint8_t *scales = q + ss_linear_fp8_scale_offset(m, k);
#pragma omp parallel for num_threads(CPU_THREADS(ctx)) schedule(static)
    for (int64_t r = 0; r < (int64_t)m; r++) {
        float scale;
        memcpy(&scale, scales + (size_t)r * sizeof scale, sizeof scale);
        for (int32_t i = 0; i < k; i++)
            c->wtmp[r * k + i] = c->e4m3[q[r * k + i]] * scale;
    }
    return cpu_matmul(ctx, out, SS_DTYPE_F32, x, c->wtmp, bias, n, m, k);
}

static ss_status cpu_linear_quantize(void *ctx, void *dst, const void *src, int64_t m, int32_t k)
{
    cpu_ctx *c = ctx;
    if (c->linear_type != SS_LINEAR_FP8)
        return cpu_memcpy(ctx, dst, src, (size_t)m * (size_t)k * sizeof(float));
    const float *w = src;
    uint8_t *q = dst;
    uint8_t *scales = q + ss_linear_fp8_scale_offset(m, k);
#pragma omp parallel for num_threads(CPU_THREADS(ctx)) schedule(static)
    for (int64_t r = 0; r < m; r++) {
        float scale;
        ss_kv_fp8_quant_row(w + r * k, k, q + r * k, &scale);
        memcpy(scales + (size_t)r * sizeof scale, &scale, sizeof scale);
    }
    return SS_OK;
}

static ss_status cpu_head_rmsnorm(void *ctx, void *x, const void *w, int64_t n, int32_t heads, int32_t head_dim,
                                  int64_t tok_stride, float eps)
{
    (void)ctx;
    for (int64_t t = 0; t < n; t++)
        for (int32_t h = 0; h < heads; h++) {
            float *v = (float *)x + t * tok_stride + (int64_t)h * head_dim;
            cpu_rms_row(v, v, w, head_dim, eps);
        }
    return SS_OK;
}

static ss_status cpu_rope(void *ctx, void *x, const int32_t *pos, const float *inv_freq, int64_t n, int32_t heads,
                          int32_t head_dim, int64_t tok_stride)
{
    (void)ctx;
    int32_t half = head_dim / 2;
#pragma omp parallel for if (n > 16) num_threads(CPU_THREADS(ctx))
    for (int64_t t = 0; t < n; t++) {
        for (int32_t i = 0; i < half; i++) {
            /* Angle in float32 as the reference computes it, then cos/sin. */
            float ang = (float)pos[t] * inv_freq[i];
            float c = cosf(ang), s = sinf(ang);
            for (int32_t h = 0; h < heads; h++) {
                float *v = (float *)x + t * tok_stride + (int64_t)h * head_dim;
                float a = v[i], b = v[i + half];
                v[i] = a * c - b * s;
                v[i + half] = b * c + a * s;
            }
        }
    }
    return SS_OK;
}

static ss_status cpu_kv_store(void *ctx, void *k_cache, void *v_cache, const void *k, const void *v,
                              const int32_t *slots, int64_t n, int32_t kv_heads, int32_t head_dim, int64_t src_stride,
                              int32_t block_size)
{
    const cpu_ctx *c = ctx;
    size_t row = (size_t)kv_heads * head_dim;
    for (int64_t i = 0; i < n; i++) {
        if (slots[i] < 0) /* a padding token: no slot */
            continue;
        const size_t s = (size_t)slots[i];
        const float *ks = (const float *)k + i * src_stride, *vs = (const float *)v + i * src_stride;
        if (c->kv_type != SS_KV_FP8) {
            memcpy((float *)k_cache + s * row, ks, row * sizeof(float));
            memcpy((float *)v_cache + s * row, vs, row * sizeof(float));
            continue;
        }
        for (int32_t h = 0; h < kv_heads; h++) { /* e4m3 rows and their scales (backend.h) */
            const size_t ro = ss_kv_fp8_row_offset(block_size, kv_heads, head_dim, s, h);
            const size_t so = ss_kv_fp8_scale_offset(block_size, kv_heads, head_dim, s, h);
            float sk, sv;
            ss_kv_fp8_quant_row(ks + (size_t)h * head_dim, head_dim, (uint8_t *)k_cache + ro, &sk);
            ss_kv_fp8_quant_row(vs + (size_t)h * head_dim, head_dim, (uint8_t *)v_cache + ro, &sv);
            memcpy((uint8_t *)k_cache + so, &sk, sizeof sk);
            memcpy((uint8_t *)v_cache + so, &sv, sizeof sv);
        }
    }
    return SS_OK;
}

/* Row (slot, kv head) of a cache as f32: in place for the act layout, else decoded into tmp[head_dim]. */
static const float *cpu_kv_row(const cpu_ctx *c, const void *cache, size_t slot, int32_t kvh, int32_t kv_heads,
                               int32_t head_dim, int32_t bs, float *tmp)
{
    if (c->kv_type != SS_KV_FP8)
        return (const float *)cache + slot * (size_t)kv_heads * head_dim + (size_t)kvh * head_dim;
    const uint8_t *q = (const uint8_t *)cache + ss_kv_fp8_row_offset(bs, kv_heads, head_dim, slot, kvh);
    float scale;
    memcpy(&scale, (const uint8_t *)cache + ss_kv_fp8_scale_offset(bs, kv_heads, head_dim, slot, kvh), sizeof scale);
    for (int32_t j = 0; j < head_dim; j++)
        tmp[j] = ss_e4m3_to_f32(q[j]) * scale;
    return tmp;
}

static ss_status cpu_attention(void *ctx, void *out, const void *q, int64_t q_stride, const void *k_cache,
                               const void *v_cache, const ss_attn_meta *meta, int64_t n, int32_t heads,
                               int32_t kv_heads, int32_t head_dim, float scale)
{
    const cpu_ctx *c = ctx;
    if (meta->q_tiles || meta->n_tiles) { /* ignored here, but checked: the engine's tests then catch bad tiles */
        ss_err e;
        ss_status st = ss_attn_tiles_check(meta, n, &e);
        if (st != SS_OK) {
            SS_LOGE("cpu attention: %s", e.msg);
            return st;
        }
    }
    int32_t group = heads / kv_heads;
    int32_t max_len = meta->max_seq_len > 0 ? meta->max_seq_len : 1;
#pragma omp parallel num_threads(CPU_THREADS(ctx)) if (n * heads * (int64_t)max_len > 65536)
    {
        float *sc = malloc(((size_t)max_len + (size_t)head_dim) * sizeof *sc);
        float *tmp = sc ? sc + max_len : NULL; /* a decoded fp8 row */
#pragma omp for collapse(2) schedule(dynamic)
        for (int64_t t = 0; t < n; t++) {
            for (int32_t h = 0; h < heads; h++) {
                if (!sc)
                    continue;
                int32_t s = meta->tok_seq[t], len = meta->tok_pos[t] + 1;
                const int32_t *bt = meta->block_tables + (int64_t)s * meta->max_blocks;
                const float *qv = (const float *)q + t * q_stride + (int64_t)h * head_dim;
                int32_t kvh = h / group;
                float mx = -INFINITY;
                for (int32_t p = 0; p < len && p < max_len; p++) {
                    size_t slot = (size_t)bt[p / meta->block_size] * meta->block_size + p % meta->block_size;
                    const float *kv = cpu_kv_row(c, k_cache, slot, kvh, kv_heads, head_dim, meta->block_size, tmp);
                    float d = 0;
                    for (int32_t j = 0; j < head_dim; j++)
                        d += qv[j] * kv[j];
                    sc[p] = d * scale;
                    mx = sc[p] > mx ? sc[p] : mx;
                }
                double sum = 0;
                for (int32_t p = 0; p < len && p < max_len; p++) {
                    sc[p] = expf(sc[p] - mx);
                    sum += sc[p];
                }
                float *o = (float *)out + t * (int64_t)heads * head_dim + (int64_t)h * head_dim;
                memset(o, 0, (size_t)head_dim * sizeof *o);
                for (int32_t p = 0; p < len && p < max_len; p++) {
                    size_t slot = (size_t)bt[p / meta->block_size] * meta->block_size + p % meta->block_size;
                    const float *vv = cpu_kv_row(c, v_cache, slot, kvh, kv_heads, head_dim, meta->block_size, tmp);
                    float wgt = (float)(sc[p] / sum);
                    for (int32_t j = 0; j < head_dim; j++)
                        o[j] += wgt * vv[j];
                }
            }
        }
        free(sc);
    }
    return SS_OK;
}

static ss_status cpu_silu_mul(void *ctx, void *out, const void *gu, int64_t n, int32_t inter)
{
    (void)ctx;
#pragma omp parallel for if (n > 4) num_threads(CPU_THREADS(ctx))
    for (int64_t t = 0; t < n; t++) {
        const float *g = (const float *)gu + t * 2 * inter, *u = g + inter;
        float *o = (float *)out + t * inter;
        for (int32_t j = 0; j < inter; j++)
            o[j] = g[j] / (1.0f + expf(-g[j])) * u[j];
    }
    return SS_OK;
}

static ss_status cpu_add(void *ctx, void *out, const void *a, const void *b, int64_t n)
{
    (void)ctx;
    for (int64_t i = 0; i < n; i++)
        ((float *)out)[i] = ((const float *)a)[i] + ((const float *)b)[i];
    return SS_OK;
}

static ss_status cpu_gather_rows(void *ctx, void *out, const void *x, const int32_t *idx, int64_t m, int32_t dim)
{
    (void)ctx;
    for (int64_t j = 0; j < m; j++)
        memmove((float *)out + j * dim, (const float *)x + (int64_t)idx[j] * dim, (size_t)dim * sizeof(float));
    return SS_OK;
}

static ss_status cpu_argmax(void *ctx, float *out_val, int32_t *out_idx, const float *logits, int64_t n,
                            int32_t vocab, int32_t index_offset)
{
    (void)ctx;
    for (int64_t r = 0; r < n; r++) {
        const float *l = logits + r * vocab;
        int32_t best = 0;
        for (int32_t i = 1; i < vocab; i++)
            if (l[i] > l[best])
                best = i;
        out_val[r] = vocab ? l[best] : -INFINITY;
        out_idx[r] = best + index_offset;
    }
    return SS_OK;
}

static ss_status cpu_sample(void *ctx, int32_t *out_tok, float *out_logprob, const float *logits, int64_t n,
                            int32_t vocab, const ss_sample_row *rows)
{
    (void)ctx;
    float *scratch = ss_malloc((size_t)vocab * sizeof *scratch);
    if (!scratch)
        return SS_ERR_NOMEM;
    for (int64_t r = 0; r < n; r++)
        out_tok[r] = ss_sample_host(logits + r * vocab, vocab, &rows[r], scratch, &out_logprob[r]);
    ss_free(scratch);
    return SS_OK;
}

static ss_status cpu_mask_logits(void *ctx, float *logits, int32_t vocab, int64_t n, const int32_t *rows,
                                 const uint32_t *words)
{
    (void)ctx;
    const int64_t nw = ((int64_t)vocab + 31) / 32;
    for (int64_t j = 0; j < n; j++) {
        float *row = logits + (int64_t)rows[j] * vocab;
        const uint32_t *m = words + j * nw;
        for (int32_t t = 0; t < vocab; t++)
            if (!((m[t >> 5] >> (t & 31)) & 1u))
                row[t] = -INFINITY;
    }
    return SS_OK;
}

static ss_status cpu_edit_logits(void *ctx, float *logits, int32_t vocab, int64_t n, const ss_logit_edit *edits)
{
    (void)ctx;
    for (int64_t j = 0; j < n; j++) {
        float *x = logits + (int64_t)edits[j].row * vocab + edits[j].token;
        *x = ss_logit_edit_host(*x, &edits[j]);
    }
    return SS_OK;
}

/* The row's log-sum-exp in chunks as the runner's host path computes it (ss_row_chunk_host), so that both give
 * the same values to the bit. */
static ss_status cpu_top_logprobs(void *ctx, int32_t *out_ids, float *out_vals, float *tok_logprob,
                                  const int32_t *tok, const float *logits, int64_t n, int32_t vocab, int32_t k)
{
    (void)ctx;
    const int32_t CHUNK = SS_ROW_CHUNK, n_chunks = (vocab + CHUNK - 1) / CHUNK;
    ss_row_chunk *c = ss_malloc((size_t)(n_chunks ? n_chunks : 1) * sizeof *c);
    if (!c)
        return SS_ERR_NOMEM;
    for (int64_t r = 0; r < n; r++) {
        const float *x = logits + r * vocab;
        for (int32_t i = 0; i < n_chunks; i++)
            ss_row_chunk_host(x, i * CHUNK, (i + 1) * CHUNK < vocab ? (i + 1) * CHUNK : vocab, &c[i]);
        int32_t arg;
        float lse;
        ss_row_merge_host(c, n_chunks, &arg, &lse);
        int32_t *ids = out_ids + r * k;
        float *vals = out_vals + r * k;
        ss_top_host(x, vocab, k, ids, vals);
        for (int32_t j = 0; j < k; j++)
            vals[j] = ids[j] >= 0 ? x[ids[j]] - lse : -INFINITY;
        tok_logprob[r] = x[tok[r]] - lse;
    }
    ss_free(c);
    return SS_OK;
}

static ss_status cpu_greedy_combine(void *ctx, int32_t *out_tok, float *out_logprob, const float *gathered,
                                     int32_t n, int32_t stride, int32_t tp)
{
    (void)ctx;
    for (int32_t r = 0; r < n; r++)
        ss_greedy_combine_host(gathered, r, stride, tp, &out_tok[r], &out_logprob[r]);
    return SS_OK;
}

/* The layers of one decode token, op after op: the same arithmetic as the forward pass's op-by-op path
 * (float32 throughout), so the cpu also runs, and CI tests, the forward pass's decode_layers plumbing. */
static ss_status cpu_decode_layers(void *ctx, const ss_decode_layers *d)
{
    if (d->tp) /* its ops cannot reach the group: the forward pass runs the layers with collectives */
        return SS_ERR_UNSUPPORTED;
    return ss_decode_layers_by_op(((const cpu_ctx *)ctx)->self, d);
}

static void cpu_destroy(void *ctx)
{
    cpu_ctx *c = ctx;
    if (c)
        ss_free(c->wtmp);
    ss_free(c);
}

static const ss_backend_i cpu_iface = {
    .version = SS_BACKEND_IFACE_VERSION,
    .name = "cpu",
    .alloc = cpu_alloc,
    .free_buf = cpu_free,
    .upload = cpu_memcpy,
    .download = cpu_memcpy,
    .copy = cpu_memcpy,
    .zero = cpu_zero,
    .upload_weight = cpu_upload_weight,
    .sync = cpu_sync,
    .embed = cpu_embed,
    .rmsnorm = cpu_rmsnorm,
    .add_rmsnorm = cpu_add_rmsnorm,
    .matmul = cpu_matmul,
    .head_rmsnorm = cpu_head_rmsnorm,
    .rope = cpu_rope,
    .kv_store = cpu_kv_store,
    .attention = cpu_attention,
    .silu_mul = cpu_silu_mul,
    .add = cpu_add,
    .gather_rows = cpu_gather_rows,
    .argmax = cpu_argmax,
    .sample = cpu_sample,
    .decode_layers = cpu_decode_layers,
    .destroy = cpu_destroy,
    .embed_fed = cpu_embed_fed,
    .download_async = cpu_download_async,
    .download_wait = cpu_download_wait,
    .greedy_combine = cpu_greedy_combine,
    .linear = cpu_linear,
    .linear_quantize = cpu_linear_quantize,
    .mask_logits = cpu_mask_logits,
    .edit_logits = cpu_edit_logits,
    .top_logprobs = cpu_top_logprobs,
};

ss_status ss_backend_cpu_create(const ss_backend_params *params, ss_backend **out, ss_err *err)
{
    ss_backend *be = ss_calloc(1, sizeof *be);
    cpu_ctx *c = ss_calloc(1, sizeof *c);
    if (!be || !c) {
        ss_free(be);
        ss_free(c);
        return ss_err_set(err, SS_ERR_NOMEM, "cpu backend: out of memory");
    }
    c->n_threads = params->n_threads > 0 ? params->n_threads : (int)sysconf(_SC_NPROCESSORS_ONLN);
    if (c->n_threads < 1)
        c->n_threads = 1;
    omp_set_num_threads(c->n_threads);
    openblas_set_num_threads(c->n_threads);
    be->table = cpu_iface;
    ss_backend_fill_defaults(&be->table);
    be->iface = &be->table;
    be->ctx = c;
    c->self = be;
    be->act_dtype = SS_DTYPE_F32;
    be->weight_dtype = SS_DTYPE_F32;
    be->kv_type = c->kv_type = params->kv_type;
    be->linear_type = c->linear_type = params->linear_type;
    for (int i = 0; i < 256; i++)
        c->e4m3[i] = ss_e4m3_to_f32((uint8_t)i);
    be->device_index = -1;
    snprintf(be->desc, sizeof be->desc, "cpu (%d threads)", c->n_threads);
    *out = be;
    return SS_OK;
}

/* backend_cuda.c — the cuda backend (DESIGN.md §4): one device, one non-blocking stream, bf16 weights and
 * activations with fp32 accumulation. Fills ss_backend_i with the kernels of cuda_kernels.h, cuBLASLt
 * matmuls, pinned staging for host->device copies, and CUDA-graph capture of steps keyed by uint64. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend/backend.h"
#include "backend/cuda/cuda_internal.h"
#include "backend/cuda/cuda_kernels.h"
#include "backend/cuda/lt_api.h"
#include "core/alloc.h"
#include "core/log.h"

#define CU_STAGE_BUFS 3 /* a step's metadata and its logit edits, and the next step's planned ahead: no wait */
#define CU_STAGE_BYTES ((size_t)32 << 20)   /* per pinned staging buffer */
#define CU_LT_WORKSPACE ((size_t)32 << 20)  /* cuBLASLt workspace (Hopper wants >= 32 MiB) */
#define CU_ATTN_WORKSPACE ((size_t)32 << 20) /* split-K partial results */
#define CU_ACT8_BYTES ((size_t)32 << 20)     /* fp8 activations of one linear GEMM chunk (then their scales) */
#define CU_ACT8_ROWS 16384                   /* at most this many rows a chunk (a scale each) */
#define CU_GU8_BYTES ((size_t)64 << 20)      /* the fp8 SwiGLU's unscaled gate/up product of one chunk */
/* decode graphs kept (least recently used replaced): token buckets (35 up to 256) x tile counts x context bounds */
#define CU_MAX_GRAPHS 256
#define CU_READBACK_BYTES ((size_t)64 << 10)
#define CU_SAMPLE_CHUNK 128

typedef struct cu_graph {
    int used;
    uint64_t key;
    uint64_t last_use;
    cudaGraphExec_t exec;
} cu_graph;

typedef struct cu_ctx {
    int device;
    int sm_count;
    cudaStream_t stream;
    ss_cuda_lt *lt;
    void *attn_ws; /* [CU_ATTN_WORKSPACE bytes] f32 split-K partials */
    /* Pinned staging ring for host->device copies; stage_evt[i] marks the end of the copy out of
     * stage[i], so the buffer is rewritten only after the GPU has read it. Allocated on first use. */
    void *stage[CU_STAGE_BUFS];
    cudaEvent_t stage_evt[CU_STAGE_BUFS];
    int stage_pending[CU_STAGE_BUFS];
    int stage_next;
    void *readback; /* pinned [CU_READBACK_BYTES] for small device->host copies (sampled tokens) */
    /* download_async's slots: pinned [SS_DOWNLOAD_ASYNC_MAX] each, the event after the copy, and where
     * download_wait puts the bytes. Allocated on first use. */
    void *rb_slot[SS_DOWNLOAD_SLOTS];
    cudaEvent_t rb_evt[SS_DOWNLOAD_SLOTS];   /* the copy's end (on rb_stream when rb_side) */
    cudaEvent_t rb_start[SS_DOWNLOAD_SLOTS]; /* the main stream's point the copy follows */
    int rb_inflight[SS_DOWNLOAD_SLOTS];      /* on rb_stream, not yet waited for by the main stream */
    const void *rb_src[SS_DOWNLOAD_SLOTS];   /* the device bytes an in-flight copy reads */
    size_t rb_src_bytes[SS_DOWNLOAD_SLOTS];
    /* The copies run on a stream of their own (rb_side, default; SS_READBACK_SIDE=0: on the main stream),
     * so that the next step's work does not queue behind them; sample waits for them before it writes. */
    cudaStream_t rb_stream;
    int rb_side;
    void *rb_dst[SS_DOWNLOAD_SLOTS];
    size_t rb_bytes[SS_DOWNLOAD_SLOTS];
    cu_graph graphs[CU_MAX_GRAPHS];
    uint64_t graph_clock;
    int capturing;
    uint64_t capture_key;
    ss_err err; /* detail of the last failure (also logged) */
    int attn_cluster_ok[2]; /* ss_cuda_attn_cluster_ok for head_dim 64 and 128, asked at create */
    int attn_ctas_per_sm[2][2]; /* ss_cuda_attn_decode_ctas_per_sm for head_dim 64 / 128, 64- / 32-key form, asked at create */
    int attn_mt2_ctas_per_sm[2]; /* ss_cuda_attn_prefill_mt2_ctas_per_sm for head_dim 64 / 128 and this cache, at create */
    int attn_wg_ok;              /* ss_cuda_attn_prefill_wg_ok for head_dim 128 and this cache, at create */
    int attn_seq_ok[2];          /* ss_cuda_attn_seq_ok for head_dim 64 / 128 and this cache, at create */
    int kv_fp8;                 /* the KV caches hold fp8 blocks (ss_backend_params.kv_type) */
    int lin_fp8;                /* linear weights are fp8 (ss_backend_params.linear_type) */
    void *act8;                 /* lin_fp8: [CU_ACT8_BYTES] e4m3 activations, then [CU_ACT8_ROWS] f32 row scales */
    void *gu8;                  /* lin_fp8: [CU_GU8_BYTES] the fp8 SwiGLU's unscaled gate/up product */
    int64_t fp8_gemv_max;       /* lin_fp8: largest n the W8A16 GEMV takes (SS_FP8_GEMV_MAX, default 16) */
    int64_t fp8_wide_elems;     /* lin_fp8: largest m x k whose 17-32 rows take the GEMV (SS_FP8_GEMV_WIDE_ELEMS; 0) */
    int64_t gemv_max;           /* largest n the bf16 GEMV takes (SS_GEMV_MAX, default 16); more go to cuBLASLt */
    int gemv_sized; /* bf16: two tiles only up to SS_CUDA_GEMV2_MAX_ELEMS (unless the switch is set) */
    int persist_fp8; /* lin_fp8 or kv_fp8: where decode_layers runs the persistent kernel's fp8 forms: 1 at every tp
                      * degree, 0 nowhere, -1 (the default) at tp 1 and 2 (SS_PERSIST_FP8 = 1, 0, unset) */
    int64_t persist_calls; /* decode_layers launches so far (its trace switch names one) */
    const char *persist_why; /* why decode_layers last did not apply (logged when it changes) */
} cu_ctx;

ss_status ss_cuda_fail(ss_err *err, ss_status st, const char *file, int line, const char *expr, const char *msg)
{
    ss_err local;
    if (!err)
        err = &local;
    ss_err_set(err, st, "%s:%d: %s: %s", file, line, expr, msg ? msg : "(no message)");
    SS_LOGE("cuda: %s", err->msg);
    return st;
}

ss_status ss_cuda_status_of(cudaError_t e)
{
    return e == cudaErrorMemoryAllocation ? SS_ERR_NOMEM : SS_ERR_CUDA;
}

/* Makes the backend's device current for this thread (cheap when it already is). */
static ss_status cu_enter(cu_ctx *c)
{
    int cur = -1;
    CUDA_CHECK(&c->err, cudaGetDevice(&cur));
    if (cur != c->device)
        CUDA_CHECK(&c->err, cudaSetDevice(c->device));
    return SS_OK;
}

/* Host<->device copies cannot be captured meaningfully (they would replay stale host data). */
static ss_status cu_no_capture(cu_ctx *c, const char *what)
{
    if (c->capturing)
        return ss_cuda_fail(&c->err, SS_ERR_INVALID_ARG, __FILE__, __LINE__, what,
                            "not allowed during CUDA graph capture (do it before graph_begin or after graph_end)");
    return SS_OK;
}

int ss_backend_cuda_device_count(void)
{
    int n = 0;
    if (cudaGetDeviceCount(&n) != cudaSuccess) {
        (void)cudaGetLastError(); /* no driver / no device: not an error here */
        return 0;
    }
    return n;
}

ss_status ss_backend_cuda_libs_check(ss_err *err)
{
    ss_lt_api api;
    SS_CHECK(ss_lt_api_load(&api, err));
    ss_lt_api_unload(&api);
    return SS_OK;
}

int ss_backend_cuda_fp8_ok(int device_index)
{
    int major = 0, minor = 0;
    if (device_index < 0 || device_index >= ss_backend_cuda_device_count() ||
        cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, device_index) != cudaSuccess ||
        cudaDeviceGetAttribute(&minor, cudaDevAttrComputeCapabilityMinor, device_index) != cudaSuccess) {
        (void)cudaGetLastError();
        return 0;
    }
    return major * 10 + minor >= 89; /* as ss_backend_cuda_create requires for SS_LINEAR_FP8 */
}

/* ---------------------------------------------------------------- memory */

static ss_status cu_alloc(void *ctx, size_t bytes, void **out)
{
    cu_ctx *c = ctx;
    *out = NULL;
    SS_CHECK(cu_enter(c));
    CUDA_CHECK(&c->err, cudaMalloc(out, bytes ? bytes : 256));
    return SS_OK;
}

static void cu_free_buf(void *ctx, void *ptr)
{
    cu_ctx *c = ctx;
    if (!ptr || cu_enter(c) != SS_OK)
        return;
    cudaError_t e = cudaFree(ptr);
    if (e != cudaSuccess)
        ss_cuda_fail(&c->err, SS_ERR_CUDA, __FILE__, __LINE__, "cudaFree", cudaGetErrorString(e));
}

static ss_status cu_stage_init(cu_ctx *c)
{
    for (int i = 0; i < CU_STAGE_BUFS; i++) {
        if (c->stage[i])
            continue;
        CUDA_CHECK(&c->err, cudaHostAlloc(&c->stage[i], CU_STAGE_BYTES, cudaHostAllocDefault));
        CUDA_CHECK(&c->err, cudaEventCreateWithFlags(&c->stage_evt[i], cudaEventDisableTiming));
    }
    return SS_OK;
}

/* Returns a staging buffer that the GPU no longer reads. */
static ss_status cu_stage_acquire(cu_ctx *c, int *idx)
{
    SS_CHECK(cu_stage_init(c));
    int i = c->stage_next;
    if (c->stage_pending[i]) {
        CUDA_CHECK(&c->err, cudaEventSynchronize(c->stage_evt[i]));
        c->stage_pending[i] = 0;
    }
    *idx = i;
    return SS_OK;
}

/* Enqueues the copy of `bytes` from staging buffer idx to dst and marks the buffer busy. */
static ss_status cu_stage_submit(cu_ctx *c, int idx, void *dst, size_t bytes)
{
    CUDA_CHECK(&c->err, cudaMemcpyAsync(dst, c->stage[idx], bytes, cudaMemcpyHostToDevice, c->stream));
    CUDA_CHECK(&c->err, cudaEventRecord(c->stage_evt[idx], c->stream));
    c->stage_pending[idx] = 1;
    c->stage_next = (idx + 1) % CU_STAGE_BUFS;
    return SS_OK;
}

static ss_status cu_upload(void *ctx, void *dst, const void *src, size_t bytes)
{
    cu_ctx *c = ctx;
    SS_CHECK(cu_no_capture(c, "upload"));
    SS_CHECK(cu_enter(c));
    for (size_t off = 0; off < bytes;) {
        size_t len = bytes - off < CU_STAGE_BYTES ? bytes - off : CU_STAGE_BYTES;
        int idx = 0;
        SS_CHECK(cu_stage_acquire(c, &idx));
        memcpy(c->stage[idx], (const char *)src + off, len);
        SS_CHECK(cu_stage_submit(c, idx, (char *)dst + off, len));
        off += len;
    }
    return SS_OK;
}

static ss_status cu_upload_weight(void *ctx, void *dst, const void *src, ss_dtype src_type, int64_t n)
{
    cu_ctx *c = ctx;
    if (src_type != SS_DTYPE_F32 && src_type != SS_DTYPE_BF16 && src_type != SS_DTYPE_F16)
        return ss_err_set(&c->err, SS_ERR_INVALID_ARG, "upload_weight: cannot convert %s to bf16",
                          ss_dtype_name(src_type));
    if (n <= 0)
        return SS_OK;
    SS_CHECK(cu_no_capture(c, "upload_weight"));
    SS_CHECK(cu_enter(c));
    const size_t in_size = ss_dtype_size(src_type);
    const int64_t per_chunk = (int64_t)(CU_STAGE_BYTES / sizeof(uint16_t));
    for (int64_t off = 0; off < n; off += per_chunk) {
        const int64_t cnt = n - off < per_chunk ? n - off : per_chunk;
        int idx = 0;
        SS_CHECK(cu_stage_acquire(c, &idx));
        uint16_t *stage = c->stage[idx];
        const char *in = (const char *)src + (size_t)off * in_size;
        if (src_type == SS_DTYPE_BF16) {
            memcpy(stage, in, (size_t)cnt * sizeof(uint16_t));
        } else if (src_type == SS_DTYPE_F32) {
            ss_convert_from_f32(stage, SS_DTYPE_BF16, (const float *)in, (size_t)cnt);
        } else {
            for (int64_t i = 0; i < cnt; i++) {
                uint16_t h;
                memcpy(&h, in + (size_t)i * 2, 2);
                stage[i] = ss_f32_to_bf16(ss_f16_to_f32(h));
            }
        }
        SS_CHECK(cu_stage_submit(c, idx, (uint16_t *)dst + off, (size_t)cnt * sizeof(uint16_t)));
    }
    return SS_OK;
}

static ss_status cu_download(void *ctx, void *dst, const void *src, size_t bytes)
{
    cu_ctx *c = ctx;
    SS_CHECK(cu_no_capture(c, "download"));
    SS_CHECK(cu_enter(c));
    if (bytes == 0)
        return SS_OK;
    if (bytes <= CU_READBACK_BYTES) { /* through pinned memory: a pageable copy costs a driver bounce */
        if (!c->readback)
            CUDA_CHECK(&c->err, cudaHostAlloc(&c->readback, CU_READBACK_BYTES, cudaHostAllocDefault));
        CUDA_CHECK(&c->err, cudaMemcpyAsync(c->readback, src, bytes, cudaMemcpyDeviceToHost, c->stream));
        CUDA_CHECK(&c->err, cudaStreamSynchronize(c->stream));
        memcpy(dst, c->readback, bytes);
        return SS_OK;
    }
    CUDA_CHECK(&c->err, cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToHost, c->stream));
    CUDA_CHECK(&c->err, cudaStreamSynchronize(c->stream));
    return SS_OK;
}

static ss_status cu_download_async(void *ctx, void *dst, const void *src, size_t bytes, int slot)
{
    cu_ctx *c = ctx;
    if (slot < 0 || slot >= SS_DOWNLOAD_SLOTS || bytes > SS_DOWNLOAD_ASYNC_MAX)
        return ss_err_set(&c->err, SS_ERR_INVALID_ARG, "download_async: slot %d, %zu bytes (slots 0..%d, at most %zu)",
                          slot, bytes, SS_DOWNLOAD_SLOTS - 1, SS_DOWNLOAD_ASYNC_MAX);
    SS_CHECK(cu_no_capture(c, "download_async"));
    SS_CHECK(cu_enter(c));
    if (!c->rb_slot[slot]) {
        CUDA_CHECK(&c->err, cudaHostAlloc(&c->rb_slot[slot], SS_DOWNLOAD_ASYNC_MAX, cudaHostAllocDefault));
        CUDA_CHECK(&c->err, cudaEventCreateWithFlags(&c->rb_evt[slot], cudaEventDisableTiming));
        CUDA_CHECK(&c->err, cudaEventCreateWithFlags(&c->rb_start[slot], cudaEventDisableTiming));
    }
    if (c->rb_side && !c->rb_stream)
        CUDA_CHECK(&c->err, cudaStreamCreateWithFlags(&c->rb_stream, cudaStreamNonBlocking));
    cudaStream_t s = c->stream;
    if (c->rb_side) { /* after everything issued so far, beside what comes next */
        CUDA_CHECK(&c->err, cudaEventRecord(c->rb_start[slot], c->stream));
        CUDA_CHECK(&c->err, cudaStreamWaitEvent(c->rb_stream, c->rb_start[slot], 0));
        s = c->rb_stream;
        c->rb_inflight[slot] = bytes > 0; /* an empty copy only marks the point the stream reached */
        c->rb_src[slot] = src;
        c->rb_src_bytes[slot] = bytes;
    }
    if (bytes)
        CUDA_CHECK(&c->err, cudaMemcpyAsync(c->rb_slot[slot], src, bytes, cudaMemcpyDeviceToHost, s));
    CUDA_CHECK(&c->err, cudaEventRecord(c->rb_evt[slot], s));
    c->rb_dst[slot] = dst;
    c->rb_bytes[slot] = bytes;
    return SS_OK;
}

/* Orders the main stream after the read-back copies in flight that read [dst, dst + bytes), before an
 * op writes there. Only those: an op inside a graph capture (the greedy path's sample op at tp > 1) writes
 * elsewhere, and a wait on the side stream's event cannot be captured. */
static ss_status cu_rb_join(cu_ctx *c, const void *dst, size_t bytes)
{
    const char *d = dst;
    for (int i = 0; i < SS_DOWNLOAD_SLOTS; i++) {
        const char *src = c->rb_src[i];
        if (!c->rb_inflight[i] || !bytes || d >= src + c->rb_src_bytes[i] || src >= d + bytes)
            continue;
        CUDA_CHECK(&c->err, cudaStreamWaitEvent(c->stream, c->rb_evt[i], 0));
        c->rb_inflight[i] = 0;
    }
    return SS_OK;
}

static ss_status cu_download_wait(void *ctx, int slot)
{
    cu_ctx *c = ctx;
    if (slot < 0 || slot >= SS_DOWNLOAD_SLOTS || !c->rb_slot[slot] || !c->rb_dst[slot])
        return ss_err_set(&c->err, SS_ERR_INVALID_ARG, "download_wait: slot %d holds no copy", slot);
    SS_CHECK(cu_enter(c));
    CUDA_CHECK(&c->err, cudaEventSynchronize(c->rb_evt[slot]));
    memcpy(c->rb_dst[slot], c->rb_slot[slot], c->rb_bytes[slot]);
    c->rb_dst[slot] = NULL;
    return SS_OK;
}

static ss_status cu_download_ready(void *ctx, int slot, int *ready)
{
    cu_ctx *c = ctx;
    if (slot < 0 || slot >= SS_DOWNLOAD_SLOTS || !c->rb_slot[slot] || !c->rb_dst[slot])
        return ss_err_set(&c->err, SS_ERR_INVALID_ARG, "download_ready: slot %d holds no copy", slot);
    SS_CHECK(cu_enter(c));
    cudaError_t e = cudaEventQuery(c->rb_evt[slot]);
    if (e == cudaErrorNotReady) {
        *ready = 0;
        return SS_OK;
    }
    CUDA_CHECK(&c->err, e);
    *ready = 1;
    return SS_OK;
}

static ss_status cu_copy(void *ctx, void *dst, const void *src, size_t bytes)
{
    cu_ctx *c = ctx;
    if (bytes == 0)
        return SS_OK;
    CUDA_CHECK(&c->err, cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToDevice, c->stream));
    return SS_OK;
}

static ss_status cu_zero(void *ctx, void *dst, size_t bytes)
{
    cu_ctx *c = ctx;
    if (bytes == 0)
        return SS_OK;
    CUDA_CHECK(&c->err, cudaMemsetAsync(dst, 0, bytes, c->stream));
    return SS_OK;
}

static ss_status cu_sync(void *ctx)
{
    cu_ctx *c = ctx;
    SS_CHECK(cu_no_capture(c, "sync"));
    CUDA_CHECK(&c->err, cudaStreamSynchronize(c->stream));
    return SS_OK;
}

/* ---------------------------------------------------------------- ops */

/* Kernel launchers return a cudaError_t as int. */
#define KCHECK(c, launch) CUDA_CHECK(&(c)->err, (cudaError_t)(launch))

static ss_status cu_embed(void *ctx, void *out, const void *table, const int32_t *ids, int64_t n, int32_t dim,
                          int64_t row_start, int64_t rows)
{
    cu_ctx *c = ctx;
    KCHECK(c, ss_cuda_embed(c->stream, out, table, ids, NULL, n, dim, row_start, rows));
    return SS_OK;
}

static ss_status cu_embed_fed(void *ctx, void *out, const void *table, const int32_t *ids, const int32_t *fed,
                              int64_t n, int32_t dim, int64_t row_start, int64_t rows)
{
    cu_ctx *c = ctx;
    KCHECK(c, ss_cuda_embed(c->stream, out, table, ids, fed, n, dim, row_start, rows));
    return SS_OK;
}

static ss_status cu_rmsnorm(void *ctx, void *out, const void *x, const void *w, int64_t rows, int32_t dim, float eps)
{
    cu_ctx *c = ctx;
    KCHECK(c, ss_cuda_rmsnorm(c->stream, out, NULL, x, w, rows, dim, eps));
    return SS_OK;
}

static ss_status cu_add_rmsnorm(void *ctx, void *residual, const void *add, void *out, const void *w, int64_t rows,
                                int32_t dim, float eps)
{
    cu_ctx *c = ctx;
    KCHECK(c, ss_cuda_rmsnorm(c->stream, out, residual, add, w, rows, dim, eps));
    return SS_OK;
}

/* Whether the GEMV takes n rows of an [m, k] matrix: up to rows_max (SS_GEMV_MAX / SS_FP8_GEMV_MAX), past one tile of
 * 8 rows only up to SS_CUDA_GEMV2_MAX_ELEMS (8B's fused gate/up, also the 70B's at tp 4) where `sized` (bf16, the
 * switch unset). One H200, median decode steps against cuBLASLt: 8B (32 layers) at batch 9-16 -1.3 to -1.6% (session
 * 57, every matrix by the GEMV, the lm_head too); a 70B-shaped model of 8 layers at batch 12 +3.4-3.8% (session 57),
 * at 12 / 16 +3.7-5.0% (session 58) with every matrix by it, and +0.2-0.7% with the rule (its qkv and o by the
 * GEMV). So the largest bf16 matrices keep cuBLASLt: 70B's gate/up at tp 1-2 and down at tp 1, the lm_heads of 128k
 * vocabularies (8B's up to tp 4). fp8 weights take the W8A16 GEMV on every matrix up to fp8_gemv_max rows since
 * session 58 (gemv.cu's two row tiles a block at 9-16 rows: the 70B shape's steps -7% against the e4m3 GEMM). */
static int cu_gemv_takes(int64_t n, int64_t rows_max, int sized, int64_t m, int32_t k)
{
    return n <= rows_max && (n <= 8 || !sized || m * (int64_t)k <= SS_CUDA_GEMV2_MAX_ELEMS);
}

static ss_status cu_matmul(void *ctx, void *out, ss_dtype out_type, const void *x, const void *W, const void *bias,
                           int64_t n, int32_t m, int32_t k)
{
    cu_ctx *c = ctx;
    if (out_type != SS_DTYPE_BF16 && out_type != SS_DTYPE_F32)
        return ss_err_set(&c->err, SS_ERR_INVALID_ARG, "matmul: output type %s (want bf16 or f32)",
                          ss_dtype_name(out_type));
    if (n <= 0 || m <= 0)
        return SS_OK;
    const int out_f32 = out_type == SS_DTYPE_F32;
    if (cu_gemv_takes(n, c->gemv_max, c->gemv_sized, m, k) && ss_cuda_gemv_supported(x, W, n, k)) {
        KCHECK(c, ss_cuda_gemv(c->stream, out, out_f32, x, W, bias, n, m, k));
        return SS_OK;
    }
    SS_CHECK(ss_cuda_lt_matmul(c->lt, c->stream, out, out_f32, x, W, n, m, k, &c->err));
    if (bias)
        KCHECK(c, ss_cuda_add_bias(c->stream, out, out_f32, bias, n, m));
    return SS_OK;
}

static ss_status cu_silu_fp8_gemm(cu_ctx *c, void *out, const void *x, const void *Wgu, int64_t n, int32_t inter,
                                  int32_t k);

/* Rows of k activations one fp8 GEMM chunk takes: their e4m3 bytes and their scales fit act8. */
static int64_t cu_act8_rows(int32_t k)
{
    const int64_t fit = (int64_t)(CU_ACT8_BYTES / (size_t)k);
    return fit < CU_ACT8_ROWS ? fit : CU_ACT8_ROWS;
}

/* Fused where the decode GEMV runs (few rows); with fp8 weights also past it (cu_silu_fp8_gemm); larger bf16
 * batches go through cuBLASLt + silu_mul. Wgu is in the linear format (fp8 when lin_fp8). */
static ss_status cu_matmul_silu(void *ctx, void *out, const void *x, const void *Wgu, int64_t n, int32_t inter,
                                int32_t k)
{
    cu_ctx *c = ctx;
    if (c->lin_fp8 && (n > c->fp8_gemv_max || n > SS_CUDA_GEMV_MAX_N)) /* (the SwiGLU GEMV has no four-tile form) */
        return cu_silu_fp8_gemm(c, out, x, Wgu, n, inter, k);
    if (!c->lin_fp8 && !cu_gemv_takes(n, c->gemv_max, c->gemv_sized, 2 * (int64_t)inter, k))
        return SS_ERR_UNSUPPORTED; /* cuBLASLt + silu_mul */
    const int r = c->lin_fp8 ? ss_cuda_gemv_silu_fp8(c->stream, out, x, Wgu,
                                                     (const float *)((const char *)Wgu +
                                                                     ss_linear_fp8_scale_offset(2 * (int64_t)inter, k)),
                                                     n, inter, k)
                             : ss_cuda_gemv_silu(c->stream, out, x, Wgu, n, inter, k);
    if (r < 0)
        return SS_ERR_UNSUPPORTED;
    KCHECK(c, r);
    return SS_OK;
}

/* Whether fp8 weights' n rows of an [m, k] matrix take the W8A16 GEMV: up to fp8_gemv_max (16; SS_FP8_GEMV_MAX, 0-32)
 * on every matrix, and 17-32 (its four-tile form) on matrices of up to fp8_wide_elems (SS_FP8_GEMV_WIDE_ELEMS; unset:
 * 0, none). Timed call by call (bench_backend --linear-rows, without graphs; one H200, session 59), the e4m3 GEMM at
 * 17-32 rows ran 8B's o at ~20% of the copy rate and its qkv at ~30% (x's quantisation included); the four-tile form
 * was faster on o (10.4-11.4 us against 16.5-17.7), on qkv at 17-24 rows (16.0-16.6 against 17.7-18.4; at 32 18.5
 * against 17.1) and on 70B's qkv and o at tp 4, slower on larger matrices (four tiles read x's bytes four times W's
 * through L1/L2; its SwiGLU form, since dropped, took 60-67 us on 8B's gate/up against the GEMM's 38-39). But with the
 * form on every matrix 8B steps at 17-32 rows were 1.0-1.3 ms slower, where those times predicted +0.35 at 17: the
 * per-call times did not predict steps, so the switch (8192 x 4096 would take 8B's qkv and o) stays off until steps
 * measure it (bench_backend --graphs now times calls as steps run them). */
static int cu_fp8_gemv_takes(const cu_ctx *c, int64_t n, int32_t m, int32_t k)
{
    if (n <= c->fp8_gemv_max)
        return 1;
    return n <= SS_CUDA_GEMV_FP8_MAX_N && c->fp8_gemv_max >= SS_CUDA_GEMV_MAX_N && (int64_t)m * k <= c->fp8_wide_elems;
}

/* Linear weights (backend.h, ss_linear_bytes). fp8: up to fp8_gemv_max rows through the W8A16 GEMV (gemv.cu); more rows are
 * quantised to e4m3, one scale a token (so a row's result does not depend on the other rows of the call), for
 * cuBLASLt's fp8 GEMM; ss_cuda_lt_matmul_fp8 applies the weights' row scales and the tokens' scales. */
static ss_status cu_linear(void *ctx, void *out, const void *x, const void *W, const void *bias, int64_t n, int32_t m,
                           int32_t k)
{
    cu_ctx *c = ctx;
    if (!c->lin_fp8)
        return cu_matmul(ctx, out, SS_DTYPE_BF16, x, W, bias, n, m, k);
    if (n <= 0 || m <= 0)
        return SS_OK;
    const float *w_scale = (const float *)((const char *)W + ss_linear_fp8_scale_offset(m, k));
    if (cu_fp8_gemv_takes(c, n, m, k) && ss_cuda_gemv_fp8_supported(x, W, n, k)) {
        KCHECK(c, ss_cuda_gemv_fp8(c->stream, out, x, W, w_scale, bias, n, m, k));
        return SS_OK;
    }
    if (k % 16 != 0 || (int64_t)k > (int64_t)CU_ACT8_BYTES)
        return ss_err_set(&c->err, SS_ERR_INVALID_ARG, "linear: fp8 weights need k %% 16 == 0 (k = %d)", k);
    float *x_scale = (float *)((char *)c->act8 + CU_ACT8_BYTES);
    const int64_t rows = cu_act8_rows(k);
    for (int64_t r0 = 0; r0 < n; r0 += rows) {
        const int64_t nr = n - r0 < rows ? n - r0 : rows;
        const char *xr = (const char *)x + (size_t)(r0 * k) * 2;
        char *outr = (char *)out + (size_t)(r0 * m) * 2;
        KCHECK(c, ss_cuda_fp8_quantize_rows(c->stream, c->act8, x_scale, xr, nr, k));
        SS_CHECK(ss_cuda_lt_matmul_fp8(c->lt, c->stream, outr, c->act8, x_scale, W, w_scale, nr, m, k, &c->err));
    }
    if (bias)
        KCHECK(c, ss_cuda_add_bias(c->stream, out, 0, bias, n, m));
    return SS_OK;
}

/* The fp8 SwiGLU past the GEMV: x's rows quantised (a scale a token), the unscaled e4m3 GEMM into gu8, and one kernel
 * that scales gate and up and multiplies: no separate scaling pass over the largest product of the layer. */
static ss_status cu_silu_fp8_gemm(cu_ctx *c, void *out, const void *x, const void *Wgu, int64_t n, int32_t inter,
                                  int32_t k)
{
    if (k % 16 != 0 || (int64_t)k > (int64_t)CU_ACT8_BYTES || inter % 8 != 0 ||
        (size_t)inter * 4 > CU_GU8_BYTES)
        return SS_ERR_UNSUPPORTED; /* matmul + silu_mul refuse or handle it */
    const float *w_scale = (const float *)((const char *)Wgu + ss_linear_fp8_scale_offset(2 * (int64_t)inter, k));
    float *x_scale = (float *)((char *)c->act8 + CU_ACT8_BYTES);
    const int64_t gu_rows = (int64_t)(CU_GU8_BYTES / ((size_t)inter * 4)), act_rows = cu_act8_rows(k);
    const int64_t rows = act_rows < gu_rows ? act_rows : gu_rows;
    for (int64_t r0 = 0; r0 < n; r0 += rows) {
        const int64_t nr = n - r0 < rows ? n - r0 : rows;
        KCHECK(c, ss_cuda_fp8_quantize_rows(c->stream, c->act8, x_scale, (const char *)x + (size_t)(r0 * k) * 2, nr, k));
        SS_CHECK(ss_cuda_lt_matmul_e4m3(c->lt, c->stream, c->gu8, c->act8, Wgu, nr, 2 * inter, k, &c->err));
        KCHECK(c, ss_cuda_fp8_silu_scaled(c->stream, (char *)out + (size_t)(r0 * inter) * 2, c->gu8, x_scale, w_scale,
                                          nr, inter));
    }
    return SS_OK;
}

static ss_status cu_linear_quantize(void *ctx, void *dst, const void *src, int64_t m, int32_t k)
{
    cu_ctx *c = ctx;
    if (!c->lin_fp8)
        return cu_copy(ctx, dst, src, (size_t)m * (size_t)k * 2);
    if (m <= 0 || k % 16 != 0)
        return ss_err_set(&c->err, SS_ERR_INVALID_ARG,
                          "linear_quantize: fp8 weights need k %% 16 == 0 (a [%lld, %d] matrix)", (long long)m, k);
    float *scale = (float *)((char *)dst + ss_linear_fp8_scale_offset(m, k));
    KCHECK(c, ss_cuda_fp8_quantize_rows(c->stream, dst, scale, src, m, k));
    return SS_OK;
}

/* The persistent decode kernel; the attention's split-K workspace holds its counters and partials (the op
 * replaces the attention op of the step). */
_Static_assert(SS_CUDA_PERSIST_MAX_TP == SS_DECODE_MAX_TP, "the kernel takes every group size of the interface");

static ss_status cu_decode_layers(void *ctx, const ss_decode_layers *d)
{
    cu_ctx *c = ctx;
    if (d->n_layers < 1 || d->n_layers > SS_CUDA_PERSIST_MAX_LAYERS || d->meta->n_seqs != 1)
        return SS_ERR_UNSUPPORTED;
    /* fp8 weights: the kernel's fp8 form (persist_stream.cuh) was slower than op by op until session 22 (356.8 against
     * 387 tok/s on an H200); since sessions 23-27 shortened its per-layer chain it is faster: at tp 1 (session 29, one
     * H200: 395.4 against 386.1 tok/s at 128 tokens, 381.2 against 376.8 at 512) and at tp 2 (session 30, 2 x H200:
     * 588.4 against 530.4), so it runs there by default. At tp > 2 it is unmeasured: op by op unless
     * SS_PERSIST_FP8=1; SS_PERSIST_FP8=0 turns it off everywhere. The same goes for its fp8 KV cache form (one H200:
     * 257.4 against 235.4 tok/s op by op; 2 x H200 at tp 2: 428.1 against 369.1). */
    const int fp8_form = c->persist_fp8 > 0 || (c->persist_fp8 < 0 && (!d->tp || d->tp->size <= 2));
    if ((c->lin_fp8 || c->kv_fp8) && !fp8_form) {
        static const char why_fp8[] = "fp8 weights or KV cache (its fp8 forms are off, or unmeasured at tp > 2)";
        if (c->persist_why != why_fp8)
            SS_LOGI("cuda: decode steps of one token run layer by layer: the persistent kernel does not apply (%s)",
                    why_fp8);
        c->persist_why = why_fp8;
        return SS_ERR_UNSUPPORTED;
    }
    ss_cuda_persist_layer layers[SS_CUDA_PERSIST_MAX_LAYERS];
    for (int32_t i = 0; i < d->n_layers; i++) {
        const ss_decode_layer *l = &d->layers[i];
        layers[i] = (ss_cuda_persist_layer){l->attn_norm, l->wqkv, l->bqkv, l->q_norm, l->k_norm, l->wo,
                                            l->mlp_norm,  l->wgu,  l->wdown, l->k_cache, l->v_cache};
    }
    const ss_attn_meta *m = d->meta;
    ss_cuda_persist_args a = {
        .n_layers = d->n_layers, .layers = layers, .hidden = d->hidden, .inter = d->inter,
        .q_heads = d->q_heads, .kv_heads = d->kv_heads, .head_dim = d->head_dim, .eps = d->eps,
        .scale = d->attn_scale, .inv_freq = d->inv_freq, .pos = m->tok_pos, .slots = d->slots,
        .block_table = m->block_tables, .seq_lens = m->seq_lens, .block_size = m->block_size,
        .max_seq_len = m->max_seq_len, .residual = d->residual, .qkv = d->qkv, .attn = d->attn, .act = d->act,
        .workspace = c->attn_ws, .workspace_bytes = CU_ATTN_WORKSPACE, .fp8 = c->lin_fp8, .kv_fp8 = c->kv_fp8,
        .call = c->persist_calls++,
    };
    if (d->tp) {
        if (d->tp->size < 2 || d->tp->size > SS_DECODE_MAX_TP || d->tp->rank < 0 || d->tp->rank >= d->tp->size)
            return SS_ERR_INVALID_ARG;
        a.tp_rank = d->tp->rank, a.tp_size = d->tp->size, a.tp_abort = d->tp->abort_flag;
        a.tp_window_bytes = d->tp->window_bytes;
        for (int32_t i = 0; i < d->tp->size; i++)
            a.tp_window[i] = d->tp->window[i];
    } else {
        a.tp_rank = 0, a.tp_size = 1;
    }
    const int r = ss_cuda_decode_persist(c->stream, &a);
    if (r < 0) {
        if (a.why != c->persist_why) /* said once per reason: the layers then run op by op */
            SS_LOGI("cuda: decode steps of one token run layer by layer: the persistent kernel does not apply (%s)",
                    a.why ? a.why : "unknown");
        c->persist_why = a.why;
        return SS_ERR_UNSUPPORTED;
    }
    KCHECK(c, r);
    return SS_OK;
}

static ss_status cu_head_rmsnorm(void *ctx, void *x, const void *w, int64_t n, int32_t heads, int32_t head_dim,
                                 int64_t tok_stride, float eps)
{
    cu_ctx *c = ctx;
    KCHECK(c, ss_cuda_head_rmsnorm(c->stream, x, w, n, heads, head_dim, tok_stride, eps));
    return SS_OK;
}

static ss_status cu_rope(void *ctx, void *x, const int32_t *pos, const float *inv_freq, int64_t n, int32_t heads,
                         int32_t head_dim, int64_t tok_stride)
{
    cu_ctx *c = ctx;
    KCHECK(c, ss_cuda_rope(c->stream, x, pos, inv_freq, n, heads, head_dim, tok_stride));
    return SS_OK;
}

static ss_status cu_kv_store(void *ctx, void *k_cache, void *v_cache, const void *k, const void *v,
                             const int32_t *slots, int64_t n, int32_t kv_heads, int32_t head_dim, int64_t src_stride,
                             int32_t block_size)
{
    cu_ctx *c = ctx;
    KCHECK(c, ss_cuda_kv_store(c->stream, k_cache, v_cache, k, v, slots, n, kv_heads, head_dim, src_stride, c->kv_fp8,
                               block_size));
    return SS_OK;
}

static ss_status cu_rope_kv_store(void *ctx, void *qkv, const int32_t *pos, const float *inv_freq, int64_t n,
                                  int32_t q_heads, int32_t kv_heads, int32_t head_dim, int64_t tok_stride, void *k_cache,
                                  void *v_cache, const int32_t *slots, int32_t block_size)
{
    cu_ctx *c = ctx;
    if (c->kv_fp8) { /* rope in place over the q and k heads, then the fp8 store reads the rotated rows */
        const int64_t q_dim = (int64_t)q_heads * head_dim, kv_dim = (int64_t)kv_heads * head_dim;
        uint16_t *row = qkv; /* bf16 elements */
        KCHECK(c, ss_cuda_rope(c->stream, qkv, pos, inv_freq, n, q_heads + kv_heads, head_dim, tok_stride));
        KCHECK(c, ss_cuda_kv_store(c->stream, k_cache, v_cache, row + q_dim, row + q_dim + kv_dim, slots, n, kv_heads,
                                   head_dim, tok_stride, 1, block_size));
        return SS_OK;
    }
    KCHECK(c, ss_cuda_rope_kv_store(c->stream, qkv, pos, inv_freq, n, q_heads, kv_heads, head_dim, tok_stride,
                                    k_cache, v_cache, slots));
    return SS_OK;
}

static ss_status cu_attention(void *ctx, void *out, const void *q, int64_t q_stride, const void *k_cache,
                              const void *v_cache, const ss_attn_meta *meta, int64_t n, int32_t heads, int32_t kv_heads,
                              int32_t head_dim, float scale)
{
    cu_ctx *c = ctx;
    if (head_dim % 8 != 0 || head_dim > 256 || kv_heads <= 0 || heads % kv_heads != 0 || q_stride % 8 != 0)
        return ss_err_set(&c->err, SS_ERR_UNSUPPORTED,
                          "attention: head_dim %d (want a multiple of 8, <= 256), heads %d / kv_heads %d, "
                          "q_stride %lld (want a multiple of 8)",
                          head_dim, heads, kv_heads, (long long)q_stride);
    ss_cuda_attn_args a;
    memset(&a, 0, sizeof a);
    a.out = out;
    a.q = q;
    a.q_stride = q_stride;
    a.k_cache = k_cache;
    a.v_cache = v_cache;
    a.tok_seq = meta->tok_seq;
    a.tok_pos = meta->tok_pos;
    a.block_tables = meta->block_tables;
    a.seq_lens = meta->seq_lens;
    a.max_blocks = meta->max_blocks;
    a.block_size = meta->block_size;
    a.max_seq_len = meta->max_seq_len;
    a.n = n;
    a.heads = heads;
    a.kv_heads = kv_heads;
    a.head_dim = head_dim;
    a.scale = scale;
    a.workspace = c->attn_ws;
    a.cluster_ok = head_dim == 64 ? c->attn_cluster_ok[0] : head_dim == 128 ? c->attn_cluster_ok[1] : 0;
    a.workspace_bytes = (int64_t)CU_ATTN_WORKSPACE;
    a.sm_count = c->sm_count;
    const int hd_i = head_dim == 64 ? 0 : head_dim == 128 ? 1 : -1;
    a.decode_ctas_per_sm = hd_i >= 0 ? c->attn_ctas_per_sm[hd_i][0] : 0;
    a.decode_short_ctas_per_sm = hd_i >= 0 ? c->attn_ctas_per_sm[hd_i][1] : 0;
    a.prefill_mt2_ctas_per_sm = hd_i >= 0 ? c->attn_mt2_ctas_per_sm[hd_i] : 0;
    a.prefill_wg_ok = head_dim == 128 ? c->attn_wg_ok : 0;
    a.seq_ok = hd_i >= 0 ? c->attn_seq_ok[hd_i] : 0;
    a.kv_fp8 = c->kv_fp8;
    a.q_tiles = meta->q_tiles;
    a.n_tiles = meta->q_tiles ? meta->n_tiles : 0;
    a.max_tile_tokens = meta->q_tiles ? meta->max_tile_tokens : 0;
    if (meta->q_tiles && meta->n_short_tiles > 0 && meta->n_short_tiles < meta->n_tiles) {
        a.n_short_tiles = meta->n_short_tiles;
        a.short_tokens = meta->short_tokens;
        a.max_short_tokens = meta->max_short_tokens;
    }
    KCHECK(c, ss_cuda_attention(c->stream, &a));
    return SS_OK;
}

static ss_status cu_silu_mul(void *ctx, void *out, const void *gu, int64_t n, int32_t inter)
{
    cu_ctx *c = ctx;
    KCHECK(c, ss_cuda_silu_mul(c->stream, out, gu, n, inter));
    return SS_OK;
}

static ss_status cu_add(void *ctx, void *out, const void *a, const void *b, int64_t n)
{
    cu_ctx *c = ctx;
    KCHECK(c, ss_cuda_add(c->stream, out, a, b, n));
    return SS_OK;
}

static ss_status cu_gather_rows(void *ctx, void *out, const void *x, const int32_t *idx, int64_t m, int32_t dim)
{
    cu_ctx *c = ctx;
    KCHECK(c, ss_cuda_gather_rows(c->stream, out, x, idx, m, dim));
    return SS_OK;
}

static ss_status cu_argmax(void *ctx, float *out_val, int32_t *out_idx, const float *logits, int64_t n, int32_t vocab,
                           int32_t index_offset)
{
    cu_ctx *c = ctx;
    KCHECK(c, ss_cuda_argmax(c->stream, out_val, out_idx, logits, n, vocab, index_offset));
    return SS_OK;
}

/* The parameters go to the kernels by value, CU_SAMPLE_CHUNK rows per launch. Inside a captured graph
 * they are baked in at capture time: sample rows whose parameters change outside the graph. */
static ss_status cu_sample(void *ctx, int32_t *out_tok, float *out_logprob, const float *logits, int64_t n,
                           int32_t vocab, const ss_sample_row *rows)
{
    cu_ctx *c = ctx;
    /* out_tok / out_logprob may be the source of a read-back still in flight */
    SS_CHECK(cu_rb_join(c, out_tok, (size_t)n * sizeof *out_tok));
    SS_CHECK(cu_rb_join(c, out_logprob, (size_t)n * sizeof *out_logprob));
    ss_cuda_sample_row chunk[CU_SAMPLE_CHUNK];
    for (int64_t base = 0; base < n; base += CU_SAMPLE_CHUNK) {
        const int64_t cnt = n - base < CU_SAMPLE_CHUNK ? n - base : CU_SAMPLE_CHUNK;
        for (int64_t i = 0; i < cnt; i++) {
            const ss_sample_row *r = &rows[base + i];
            chunk[i].temperature = r->temperature;
            chunk[i].top_k = r->top_k;
            chunk[i].top_p = r->top_p;
            chunk[i].min_p = r->min_p;
            chunk[i].uniform = r->uniform < 0.0f ? 0.0f : (r->uniform >= 1.0f ? 0.99999994f : r->uniform);
        }
        /* the attention's split-K scratch holds the row statistics: sampling never overlaps attention */
        KCHECK(c, ss_cuda_sample(c->stream, out_tok + base, out_logprob + base, logits + base * (int64_t)vocab, cnt,
                                 vocab, chunk, ss_cuda_sample_workspace_bytes() <= CU_ATTN_WORKSPACE ? c->attn_ws : NULL));
    }
    return SS_OK;
}

static ss_status cu_mask_logits(void *ctx, float *logits, int32_t vocab, int64_t n, const int32_t *rows,
                                const uint32_t *words)
{
    cu_ctx *c = ctx;
    KCHECK(c, ss_cuda_mask_logits(c->stream, logits, vocab, n, rows, words));
    return SS_OK;
}

_Static_assert(sizeof(ss_cuda_logit_edit) == sizeof(ss_logit_edit) &&
                   offsetof(ss_cuda_logit_edit, add) == offsetof(ss_logit_edit, add) &&
                   offsetof(ss_cuda_logit_edit, sub) == offsetof(ss_logit_edit, sub) &&
                   offsetof(ss_cuda_logit_edit, ban) == offsetof(ss_logit_edit, ban),
               "ss_cuda_logit_edit mirrors ss_logit_edit");

static ss_status cu_edit_logits(void *ctx, float *logits, int32_t vocab, int64_t n, const ss_logit_edit *edits)
{
    cu_ctx *c = ctx;
    KCHECK(c, ss_cuda_edit_logits(c->stream, logits, vocab, n, (const ss_cuda_logit_edit *)edits));
    return SS_OK;
}

static ss_status cu_top_logprobs(void *ctx, int32_t *out_ids, float *out_vals, float *tok_logprob, const int32_t *tok,
                                 const float *logits, int64_t n, int32_t vocab, int32_t k)
{
    cu_ctx *c = ctx;
    /* the outputs may be the source of a read-back still in flight */
    SS_CHECK(cu_rb_join(c, out_ids, (size_t)n * k * sizeof *out_ids));
    SS_CHECK(cu_rb_join(c, out_vals, (size_t)n * k * sizeof *out_vals));
    SS_CHECK(cu_rb_join(c, tok_logprob, (size_t)n * sizeof *tok_logprob));
    /* the attention's split-K scratch, as the sample op's: neither overlaps attention */
    KCHECK(c, ss_cuda_top_logprobs(c->stream, out_ids, out_vals, tok_logprob, tok, logits, n, vocab, k, c->attn_ws,
                                   CU_ATTN_WORKSPACE));
    return SS_OK;
}

static ss_status cu_greedy_combine(void *ctx, int32_t *out_tok, float *out_logprob, const float *gathered,
                                    int32_t n, int32_t stride, int32_t tp)
{
    cu_ctx *c = ctx;
    /* out_tok / out_logprob may be the source of a read-back still in flight */
    SS_CHECK(cu_rb_join(c, out_tok, (size_t)n * sizeof *out_tok));
    SS_CHECK(cu_rb_join(c, out_logprob, (size_t)n * sizeof *out_logprob));
    KCHECK(c, ss_cuda_greedy_combine(c->stream, out_tok, out_logprob, gathered, n, stride, tp));
    return SS_OK;
}

/* ---------------------------------------------------------------- optional slots */

static void *cu_native_stream(void *ctx)
{
    return ((cu_ctx *)ctx)->stream;
}

static cu_graph *cu_graph_find(cu_ctx *c, uint64_t key)
{
    for (int i = 0; i < CU_MAX_GRAPHS; i++)
        if (c->graphs[i].used && c->graphs[i].key == key)
            return &c->graphs[i];
    return NULL;
}

static ss_status cu_graph_begin(void *ctx, uint64_t key)
{
    cu_ctx *c = ctx;
    if (c->capturing)
        return ss_err_set(&c->err, SS_ERR_INVALID_ARG, "graph_begin(%llu): capture of %llu still open",
                          (unsigned long long)key, (unsigned long long)c->capture_key);
    SS_CHECK(cu_enter(c));
    CUDA_CHECK(&c->err, cudaStreamBeginCapture(c->stream, cudaStreamCaptureModeThreadLocal));
    c->capturing = 1;
    c->capture_key = key;
    return SS_OK;
}

static ss_status cu_graph_end(void *ctx, uint64_t key)
{
    cu_ctx *c = ctx;
    if (!c->capturing || c->capture_key != key)
        return ss_err_set(&c->err, SS_ERR_INVALID_ARG, "graph_end(%llu): no such capture open",
                          (unsigned long long)key);
    c->capturing = 0;
    cudaGraph_t graph = NULL;
    CUDA_CHECK(&c->err, cudaStreamEndCapture(c->stream, &graph)); /* fails if an op broke the capture */
    cudaGraphExec_t exec = NULL;
    cudaError_t e = cudaGraphInstantiate(&exec, graph, 0);
    cudaGraphDestroy(graph);
    if (e != cudaSuccess)
        return ss_cuda_fail(&c->err, SS_ERR_CUDA, __FILE__, __LINE__, "cudaGraphInstantiate", cudaGetErrorString(e));

    cu_graph *slot = cu_graph_find(c, key);
    if (!slot) { /* a free slot, else the least recently used */
        slot = &c->graphs[0];
        for (int i = 0; i < CU_MAX_GRAPHS; i++) {
            cu_graph *g = &c->graphs[i];
            if (!g->used) {
                slot = g;
                break;
            }
            if (g->last_use < slot->last_use)
                slot = g;
        }
    }
    if (slot->used)
        cudaGraphExecDestroy(slot->exec);
    slot->used = 1;
    slot->key = key;
    slot->exec = exec;
    slot->last_use = ++c->graph_clock;
    return SS_OK;
}

static ss_status cu_graph_launch(void *ctx, uint64_t key)
{
    cu_ctx *c = ctx;
    cu_graph *g = cu_graph_find(c, key);
    if (!g)
        return ss_err_set(&c->err, SS_ERR_NOT_FOUND, "graph_launch(%llu): not captured", (unsigned long long)key);
    g->last_use = ++c->graph_clock;
    CUDA_CHECK(&c->err, cudaGraphLaunch(g->exec, c->stream));
    return SS_OK;
}

static ss_status cu_mem_info(void *ctx, size_t *free_bytes, size_t *total_bytes)
{
    cu_ctx *c = ctx;
    SS_CHECK(cu_enter(c));
    CUDA_CHECK(&c->err, cudaMemGetInfo(free_bytes, total_bytes));
    return SS_OK;
}

static void cu_destroy(void *ctx)
{
    cu_ctx *c = ctx;
    if (!c)
        return;
    if (cu_enter(c) == SS_OK) {
        if (c->capturing) {
            cudaGraph_t g = NULL;
            if (cudaStreamEndCapture(c->stream, &g) == cudaSuccess && g)
                cudaGraphDestroy(g);
            (void)cudaGetLastError();
        }
        if (c->stream)
            cudaStreamSynchronize(c->stream);
        for (int i = 0; i < CU_MAX_GRAPHS; i++)
            if (c->graphs[i].used)
                cudaGraphExecDestroy(c->graphs[i].exec);
        for (int i = 0; i < CU_STAGE_BUFS; i++) {
            if (c->stage[i])
                cudaFreeHost(c->stage[i]);
            if (c->stage_evt[i])
                cudaEventDestroy(c->stage_evt[i]);
        }
        if (c->attn_ws)
            cudaFree(c->attn_ws);
        if (c->act8)
            cudaFree(c->act8);
        if (c->gu8)
            cudaFree(c->gu8);
        if (c->readback)
            cudaFreeHost(c->readback);
        if (c->rb_stream) {
            cudaStreamSynchronize(c->rb_stream);
            cudaStreamDestroy(c->rb_stream);
        }
        for (int i = 0; i < SS_DOWNLOAD_SLOTS; i++) {
            if (c->rb_slot[i])
                cudaFreeHost(c->rb_slot[i]);
            if (c->rb_evt[i])
                cudaEventDestroy(c->rb_evt[i]);
            if (c->rb_start[i])
                cudaEventDestroy(c->rb_start[i]);
        }
        ss_cuda_lt_destroy(c->lt);
        if (c->stream)
            cudaStreamDestroy(c->stream);
    }
    ss_free(c);
}

static const ss_backend_i cu_iface = {
    .version = SS_BACKEND_IFACE_VERSION,
    .name = "cuda",
    .alloc = cu_alloc,
    .free_buf = cu_free_buf,
    .upload = cu_upload,
    .download = cu_download,
    .copy = cu_copy,
    .zero = cu_zero,
    .upload_weight = cu_upload_weight,
    .sync = cu_sync,
    .embed = cu_embed,
    .rmsnorm = cu_rmsnorm,
    .add_rmsnorm = cu_add_rmsnorm,
    .matmul = cu_matmul,
    .head_rmsnorm = cu_head_rmsnorm,
    .rope = cu_rope,
    .kv_store = cu_kv_store,
    .rope_kv_store = cu_rope_kv_store,
    .attention = cu_attention,
    .silu_mul = cu_silu_mul,
    .matmul_silu = cu_matmul_silu,
    .decode_layers = cu_decode_layers,
    .add = cu_add,
    .gather_rows = cu_gather_rows,
    .argmax = cu_argmax,
    .sample = cu_sample,
    .native_stream = cu_native_stream,
    .graph_begin = cu_graph_begin,
    .graph_end = cu_graph_end,
    .graph_launch = cu_graph_launch,
    .mem_info = cu_mem_info,
    .destroy = cu_destroy,
    .embed_fed = cu_embed_fed,
    .download_async = cu_download_async,
    .download_wait = cu_download_wait,
    .greedy_combine = cu_greedy_combine,
    .download_ready = cu_download_ready,
    .linear = cu_linear,
    .linear_quantize = cu_linear_quantize,
    .mask_logits = cu_mask_logits,
    .edit_logits = cu_edit_logits,
    .top_logprobs = cu_top_logprobs,
};

ss_status ss_backend_cuda_create(const ss_backend_params *params, ss_backend **out, ss_err *err)
{
    *out = NULL;
    const int dev = params->device_index;
    const int count = ss_backend_cuda_device_count();
    if (count <= 0)
        return ss_err_set(err, SS_ERR_NOT_FOUND, "cuda: no GPU visible");
    if (dev < 0 || dev >= count)
        return ss_err_set(err, SS_ERR_INVALID_ARG, "cuda: device %d out of range (%d visible)", dev, count);

    ss_status st = SS_OK;
    ss_backend *be = NULL;
    cu_ctx *c = ss_calloc(1, sizeof *c);
    if (!c)
        return ss_err_set(err, SS_ERR_NOMEM, "cuda: out of memory");
    c->device = dev;
    CUDA_CHECK_GOTO(err, cudaSetDevice(dev), st, fail);
    struct cudaDeviceProp prop;
    CUDA_CHECK_GOTO(err, cudaGetDeviceProperties(&prop, dev), st, fail);
    c->sm_count = prop.multiProcessorCount;
    c->attn_cluster_ok[0] = ss_cuda_attn_cluster_ok(64);
    c->attn_cluster_ok[1] = ss_cuda_attn_cluster_ok(128);
    c->kv_fp8 = params->kv_type == SS_KV_FP8;
    for (int f = 0; f < 2; f++) {
        c->attn_ctas_per_sm[0][f] = ss_cuda_attn_decode_ctas_per_sm(64, f, c->kv_fp8);
        c->attn_ctas_per_sm[1][f] = ss_cuda_attn_decode_ctas_per_sm(128, f, c->kv_fp8);
    }
    c->attn_mt2_ctas_per_sm[0] = ss_cuda_attn_prefill_mt2_ctas_per_sm(64, c->kv_fp8);
    c->attn_mt2_ctas_per_sm[1] = ss_cuda_attn_prefill_mt2_ctas_per_sm(128, c->kv_fp8);
    c->attn_wg_ok = ss_cuda_attn_prefill_wg_ok(128, c->kv_fp8);
    c->attn_seq_ok[0] = ss_cuda_attn_seq_ok(64, c->kv_fp8);
    c->attn_seq_ok[1] = ss_cuda_attn_seq_ok(128, c->kv_fp8);
    CUDA_CHECK_GOTO(err, cudaStreamCreateWithFlags(&c->stream, cudaStreamNonBlocking), st, fail);
    const char *side = getenv("SS_READBACK_SIDE"); /* benchmark switch: 0 reads back on the main stream */
    c->rb_side = !(side && side[0] == '0');
    SS_CHECK_GOTO(ss_cuda_lt_create(CU_LT_WORKSPACE, &c->lt, err), st, fail);
    CUDA_CHECK_GOTO(err, cudaMalloc(&c->attn_ws, CU_ATTN_WORKSPACE), st, fail);
    c->lin_fp8 = params->linear_type == SS_LINEAR_FP8;
    if (c->lin_fp8 && prop.major * 10 + prop.minor < 89) { /* cuBLASLt's e4m3 GEMM and the e4m3 conversions */
        st = ss_err_set(err, SS_ERR_UNSUPPORTED,
                        "cuda:%d %.64s: --quantization fp8 needs compute capability 8.9 or newer (Ada, Hopper); "
                        "it has %d.%d",
                        dev, prop.name, prop.major, prop.minor);
        goto fail;
    }
    if (c->lin_fp8) {
        CUDA_CHECK_GOTO(err, cudaMalloc(&c->act8, CU_ACT8_BYTES + CU_ACT8_ROWS * sizeof(float)), st, fail);
        CUDA_CHECK_GOTO(err, cudaMalloc(&c->gu8, CU_GU8_BYTES), st, fail);
        /* Benchmark switch: rows the W8A16 GEMV takes (0..32, its SwiGLU form up to 16; the e4m3 GEMM above). Unset:
         * 16 on every matrix (session 58; session 57: only up to SS_CUDA_GEMV2_MAX_ELEMS). Session 56 kept 8 because
         * graph steps of 12 rows padded to 16 no longer gave the eager step's bits; the cause was the attention's key
         * splits (forward.c now sizes both by one bound). */
        const char *gm = getenv("SS_FP8_GEMV_MAX");
        c->fp8_gemv_max = gm && *gm ? strtol(gm, NULL, 10) : SS_CUDA_GEMV_MAX_N;
        /* Benchmark switch: the largest matrix (m x k) whose 17-32 rows take the GEMV's four-tile form. Unset: 0, none
         * (the e4m3 GEMM, as before session 59) until decode steps have measured it (cu_fp8_gemv_takes). */
        const char *we = getenv("SS_FP8_GEMV_WIDE_ELEMS");
        c->fp8_wide_elems = we && *we ? strtoll(we, NULL, 10) : 0;
    }
    /* Benchmark switch: rows the bf16 GEMV takes (0..16, on every matrix; cuBLASLt above). Unset: 16 up to
     * SS_CUDA_GEMV2_MAX_ELEMS, 8 on larger matrices, since session 57, whose loop form of the GEMV's epilogue
     * (gemv.cu) made its two-tile form faster than cuBLASLt on 8B shapes (before it, 8B steps at batch 12 and 16 were
     * 2% slower, session 56). */
    const char *bm = getenv("SS_GEMV_MAX");
    c->gemv_max = bm && *bm ? strtol(bm, NULL, 10) : SS_CUDA_GEMV_MAX_N;
    c->gemv_sized = !(bm && *bm);
    if (c->lin_fp8 || c->kv_fp8) {
        const char *pf8 = getenv("SS_PERSIST_FP8"); /* benchmark switch: the persistent kernel's fp8 forms (1 / 0) */
        c->persist_fp8 = pf8 && !strcmp(pf8, "1") ? 1 : pf8 && !strcmp(pf8, "0") ? 0 : -1;
    }
    SS_CHECK_GOTO(cu_stage_init(c), st, fail_ctx_err);

    be = ss_calloc(1, sizeof *be);
    if (!be) {
        st = ss_err_set(err, SS_ERR_NOMEM, "cuda: out of memory");
        goto fail;
    }
    be->table = cu_iface;
    ss_backend_fill_defaults(&be->table);
    be->iface = &be->table;
    be->ctx = c;
    be->act_dtype = SS_DTYPE_BF16;
    be->weight_dtype = SS_DTYPE_BF16;
    be->kv_type = params->kv_type;
    be->linear_type = params->linear_type;
    be->device_index = dev;
    snprintf(be->desc, sizeof be->desc, "cuda:%d %.64s (sm_%d%d, %d SMs, %.1f GiB)", dev, prop.name, prop.major,
             prop.minor, prop.multiProcessorCount, (double)prop.totalGlobalMem / (1024.0 * 1024.0 * 1024.0));
    *out = be;
    return SS_OK;
fail_ctx_err:
    if (err)
        memcpy(err->msg, c->err.msg, sizeof err->msg);
fail:
    cu_destroy(c);
    return st;
}

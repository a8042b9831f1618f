/* matmul_lt.c — y = x . W^T through cuBLASLt (bf16 or fp8 e4m3 in, fp32 accumulate) with a set-associative cache
 * of plans (descriptors + the heuristic's algorithm) keyed by shape, input and output types and pointer alignment. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend/cuda/cuda_internal.h"
#include "backend/cuda/cuda_kernels.h"
#include "backend/cuda/lt_api.h"
#include "core/alloc.h"
#include "core/clock.h"
#include "core/log.h"

/* The plan cache: LT_SETS sets of LT_WAYS plans, a key's set picked by its hash, least recently used replaced within
 * the set. A serving run meets ~370 step sizes × 5 GEMM shapes; the 64-plan fully associative cache before session 52
 * remade 97% of its plans (docs/performance.md, session 51). SS_LT_CACHE=SETSxWAYS (a benchmark switch) sizes it:
 * 1x64 is the old cache. */
#define LT_SETS 512
#define LT_WAYS 8

typedef struct lt_key {
    int64_t n;
    int32_t m, k;
    int out_f32;
    int fp8; /* e4m3 x and W (bf16 out): 1 with cuBLASLt's outer-vector scales, 2 unscaled (scaled afterwards) */
    uint32_t align_x, align_w, align_out;
} lt_key;

typedef struct lt_plan {
    int used;
    uint64_t last_use;
    lt_key key;
    cublasLtMatmulDesc_t desc;
    cublasLtMatrixLayout_t a, b, c;
    cublasLtMatmulAlgo_t algo;
} lt_plan;

struct ss_cuda_lt {
    ss_lt_api api; /* the library's functions (lt_api.h), loaded by ss_cuda_lt_create */
    cublasLtHandle_t handle;
    void *workspace;
    size_t workspace_bytes;
    lt_plan *plans; /* owned: n_sets × n_ways, set s at plans[s * n_ways] */
    int n_sets, n_ways;
    uint64_t clock;
    /* fp8 GEMMs: 1 cuBLASLt applies the row and token scales (outer vectors), 0 it cannot here (a kernel
     * applies them to the unscaled product), -1 not yet known (the first fp8 plan finds out) */
    int fp8_outer;
    /* ... and only from this many rows on: below, cuBLASLt 13.1's outer-vector kernels are slower on an H200
     * than an unscaled GEMM and a scaling pass (docs/performance.md, session 20) */
    int64_t fp8_outer_min;
    int64_t plans_made; /* for the debug log: how often a shape missed the cache */
    int64_t plans_evicted;
};

/* A cuBLASLt call's failure (cublasStatus_t) as SS_ERR_CUDA with the library's message; returns from the caller. */
#define LT_CHECK(lt, err, call)                                                                             \
    do {                                                                                                    \
        cublasStatus_t lt_s_ = (call);                                                                      \
        if (lt_s_ != CUBLAS_STATUS_SUCCESS)                                                                 \
            return ss_cuda_fail((err), SS_ERR_CUDA, __FILE__, __LINE__, #call, (lt)->api.status_string(lt_s_)); \
    } while (0)

static uint32_t lt_alignment(const void *p)
{
    uintptr_t a = (uintptr_t)p;
    uint32_t al = 256;
    while (al > 1 && (a % al) != 0)
        al >>= 1;
    return al;
}

static void lt_plan_release(const ss_cuda_lt *lt, lt_plan *p)
{
    if (!p->used)
        return;
    if (p->a)
        lt->api.layout_destroy(p->a);
    if (p->b)
        lt->api.layout_destroy(p->b);
    if (p->c)
        lt->api.layout_destroy(p->c);
    if (p->desc)
        lt->api.desc_destroy(p->desc);
    memset(p, 0, sizeof *p);
}

ss_status ss_cuda_lt_create(size_t workspace_bytes, ss_cuda_lt **out, ss_err *err)
{
    *out = NULL;
    ss_cuda_lt *lt = ss_calloc(1, sizeof *lt);
    if (!lt)
        return ss_err_set(err, SS_ERR_NOMEM, "cuBLASLt context: out of memory");
    ss_status st = ss_lt_api_load(&lt->api, err);
    if (st != SS_OK) {
        SS_LOGE("%s", err->msg);
        goto fail;
    }
    cublasStatus_t bs = lt->api.create(&lt->handle);
    if (bs != CUBLAS_STATUS_SUCCESS) {
        lt->handle = NULL;
        st = ss_cuda_fail(err, SS_ERR_CUDA, __FILE__, __LINE__, "cublasLtCreate", lt->api.status_string(bs));
        goto fail;
    }
    cudaError_t ce = cudaMalloc(&lt->workspace, workspace_bytes);
    if (ce != cudaSuccess) {
        lt->workspace = NULL;
        st = ss_cuda_fail(err, ss_cuda_status_of(ce), __FILE__, __LINE__, "cudaMalloc(cuBLASLt workspace)",
                          cudaGetErrorString(ce));
        goto fail;
    }
    lt->workspace_bytes = workspace_bytes;
    lt->n_sets = LT_SETS;
    lt->n_ways = LT_WAYS;
    const char *cs = getenv("SS_LT_CACHE");
    int sets = 0, ways = 0;
    if (cs && sscanf(cs, "%dx%d", &sets, &ways) == 2 && sets > 0 && ways > 0 && (int64_t)sets * ways <= 65536) {
        lt->n_sets = sets;
        lt->n_ways = ways;
    } else if (cs) {
        SS_LOGW("cuda: SS_LT_CACHE='%s' is not SETSxWAYS with at most 65536 plans; keeping %dx%d", cs, LT_SETS, LT_WAYS);
    }
    lt->plans = ss_calloc((size_t)lt->n_sets * (size_t)lt->n_ways, sizeof *lt->plans);
    if (!lt->plans) {
        st = ss_err_set(err, SS_ERR_NOMEM, "cuBLASLt plan cache (%d × %d plans): out of memory", lt->n_sets,
                        lt->n_ways);
        goto fail;
    }
    const char *ov = getenv("SS_FP8_OUTER"); /* benchmark switch: 0 scales fp8 products in a separate kernel */
    lt->fp8_outer = ov && ov[0] == '0' ? 0 : -1;
    const char *om = getenv("SS_FP8_OUTER_MIN"); /* benchmark switch: rows from which cuBLASLt scales */
    lt->fp8_outer_min = om ? atoll(om) : 512;
    *out = lt;
    return SS_OK;
fail: /* what was made so far, in reverse (no plan was made yet) */
    if (lt->workspace)
        cudaFree(lt->workspace);
    if (lt->handle)
        lt->api.destroy(lt->handle);
    ss_lt_api_unload(&lt->api);
    ss_free(lt);
    return st;
}

void ss_cuda_lt_destroy(ss_cuda_lt *lt)
{
    if (!lt)
        return;
    SS_LOGD("cuda: cuBLASLt plan cache of %d × %d: %lld plans made, %lld of them evicting another", lt->n_sets,
            lt->n_ways, (long long)lt->plans_made, (long long)lt->plans_evicted);
    for (int i = 0; i < lt->n_sets * lt->n_ways; i++)
        lt_plan_release(lt, &lt->plans[i]);
    ss_free(lt->plans);
    cudaFree(lt->workspace);
    lt->api.destroy(lt->handle);
    ss_lt_api_unload(&lt->api);
    ss_free(lt);
}

/* Builds the plan for key into p (p is empty). Row-major out[n, m] = x[n, k] W[m, k]^T is, in cuBLAS's
 * column-major terms, out^T[m, n] = op_T(W^T as [k, m]) . x^T[k, n]. fp8 == 1: w_scale and x_scale are the
 * outer-vector scales' device pointers (set before the heuristic, which may check them). */
static ss_status lt_plan_make(ss_cuda_lt *lt, const lt_key *key, lt_plan *p, const float *w_scale,
                              const float *x_scale, ss_err *err)
{
    ss_status st = SS_OK;
    cublasLtMatmulPreference_t pref = NULL;
    const cudaDataType_t out_type = key->out_f32 ? CUDA_R_32F : CUDA_R_16BF;
    const cudaDataType_t in_type = key->fp8 ? CUDA_R_8F_E4M3 : CUDA_R_16BF;
    const cublasOperation_t op_t = CUBLAS_OP_T, op_n = CUBLAS_OP_N;
    memset(p, 0, sizeof *p);
    LT_CHECK(lt, err, lt->api.desc_create(&p->desc, CUBLAS_COMPUTE_32F, CUDA_R_32F));
    p->used = 1; /* from here on lt_plan_release cleans up; layouts not yet made are NULL */
#define LT_TRY(call)                                                                                        \
    do {                                                                                                    \
        cublasStatus_t s_ = (call);                                                                         \
        if (s_ != CUBLAS_STATUS_SUCCESS) {                                                                  \
            st = ss_cuda_fail(err, SS_ERR_CUDA, __FILE__, __LINE__, #call, lt->api.status_string(s_));      \
            goto fail;                                                                                      \
        }                                                                                                   \
    } while (0)
    LT_TRY(lt->api.desc_set(p->desc, CUBLASLT_MATMUL_DESC_TRANSA, &op_t, sizeof op_t));
    LT_TRY(lt->api.desc_set(p->desc, CUBLASLT_MATMUL_DESC_TRANSB, &op_n, sizeof op_n));
    if (key->fp8 == 1) { /* out^T[i, j] *= w_scale[i] * x_scale[j]: a scale per weight row and per token */
        const int32_t outer = CUBLASLT_MATMUL_MATRIX_SCALE_OUTER_VEC_32F;
        cublasStatus_t s = lt->api.desc_set(p->desc, CUBLASLT_MATMUL_DESC_A_SCALE_MODE, &outer, sizeof outer);
        if (s == CUBLAS_STATUS_SUCCESS)
            s = lt->api.desc_set(p->desc, CUBLASLT_MATMUL_DESC_B_SCALE_MODE, &outer, sizeof outer);
        if (s == CUBLAS_STATUS_SUCCESS)
            s = lt->api.desc_set(p->desc, CUBLASLT_MATMUL_DESC_A_SCALE_POINTER, &w_scale, sizeof w_scale);
        if (s == CUBLAS_STATUS_SUCCESS)
            s = lt->api.desc_set(p->desc, CUBLASLT_MATMUL_DESC_B_SCALE_POINTER, &x_scale, sizeof x_scale);
        if (s != CUBLAS_STATUS_SUCCESS) { /* an older cuBLAS: the caller falls back */
            st = ss_err_set(err, SS_ERR_UNSUPPORTED, "cuBLASLt refuses outer-vector scales: %s",
                            lt->api.status_string(s));
            goto fail;
        }
    }
    LT_TRY(lt->api.layout_create(&p->a, in_type, (uint64_t)key->k, (uint64_t)key->m, key->k));
    LT_TRY(lt->api.layout_create(&p->b, in_type, (uint64_t)key->k, (uint64_t)key->n, key->k));
    LT_TRY(lt->api.layout_create(&p->c, out_type, (uint64_t)key->m, (uint64_t)key->n, key->m));
    LT_TRY(lt->api.pref_create(&pref));
    uint64_t ws = lt->workspace_bytes;
    LT_TRY(lt->api.pref_set(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &ws, sizeof ws));
    LT_TRY(lt->api.pref_set(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES, &key->align_w, sizeof key->align_w));
    LT_TRY(lt->api.pref_set(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES, &key->align_x, sizeof key->align_x));
    LT_TRY(lt->api.pref_set(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES, &key->align_out,
                            sizeof key->align_out));
    LT_TRY(lt->api.pref_set(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES, &key->align_out,
                            sizeof key->align_out));
    cublasLtMatmulHeuristicResult_t res;
    int found = 0;
    const cublasStatus_t hs =
        lt->api.heuristic(lt->handle, p->desc, p->a, p->b, p->c, p->c, pref, 1, &res, &found);
    if (hs != CUBLAS_STATUS_SUCCESS && key->fp8 == 1) { /* outer-vector scales refused: the caller falls back */
        st = ss_err_set(err, SS_ERR_UNSUPPORTED, "cuBLASLt refuses e4m3 GEMMs with outer-vector scales: %s",
                        lt->api.status_string(hs));
        goto fail;
    }
    LT_TRY(hs);
#undef LT_TRY
    if (found < 1) {
        st = ss_err_set(err, SS_ERR_UNSUPPORTED, "cuBLASLt has no algorithm for n=%lld m=%d k=%d (%s in, %s out)",
                        (long long)key->n, key->m, key->k,
                        key->fp8 == 1 ? "e4m3 with outer-vector scales" : key->fp8 ? "e4m3" : "bf16",
                        key->out_f32 ? "f32" : "bf16");
        goto fail;
    }
    p->algo = res.algo;
    p->key = *key;
    lt->api.pref_destroy(pref);
    return SS_OK;
fail:
    if (pref)
        lt->api.pref_destroy(pref);
    lt_plan_release(lt, p);
    return st;
}

/* FNV-1a over the key's bytes (lt_key_of zeroes its padding): picks the key's set. */
static uint32_t lt_key_hash(const lt_key *key)
{
    const unsigned char *b = (const unsigned char *)key;
    uint32_t h = 2166136261u;
    for (size_t i = 0; i < sizeof *key; i++)
        h = (h ^ b[i]) * 16777619u;
    return h;
}

/* The plan for key, made on first use (fp8 == 1: with these scale pointers); the least recently used plan of the
 * key's set makes room. */
static ss_status lt_plan_get(ss_cuda_lt *lt, const lt_key *key, lt_plan **out, const float *w_scale,
                             const float *x_scale, ss_err *err)
{
    lt_plan *set = &lt->plans[(size_t)(lt_key_hash(key) % (uint32_t)lt->n_sets) * (size_t)lt->n_ways];
    lt_plan *plan = NULL, *victim = &set[0];
    for (int i = 0; i < lt->n_ways; i++) {
        lt_plan *p = &set[i];
        if (p->used && memcmp(&p->key, key, sizeof *key) == 0) {
            plan = p;
            break;
        }
        if (!p->used || (victim->used && p->last_use < victim->last_use))
            victim = p;
    }
    if (!plan) {
        const int evicting = victim->used;
        lt_plan_release(lt, victim);
        const int64_t t0 = ss_now_us();
        SS_CHECK(lt_plan_make(lt, key, victim, w_scale, x_scale, err));
        plan = victim;
        lt->plans_made++;
        lt->plans_evicted += evicting;
        SS_LOGD("cuda: cuBLASLt plan %lld: n=%lld m=%d k=%d%s made in %.2f ms%s", (long long)lt->plans_made,
                (long long)key->n, key->m, key->k, key->fp8 ? " e4m3" : "", (double)(ss_now_us() - t0) / 1e3,
                evicting ? " (evicting the least recently used of its set)" : "");
    }
    plan->last_use = ++lt->clock;
    *out = plan;
    return SS_OK;
}

static lt_key lt_key_of(int64_t n, int32_t m, int32_t k, int out_f32, int fp8, const void *x, const void *W,
                        const void *out)
{
    lt_key key;
    memset(&key, 0, sizeof key); /* compared with memcmp */
    key.n = n;
    key.m = m;
    key.k = k;
    key.out_f32 = out_f32 ? 1 : 0;
    key.fp8 = fp8;
    key.align_x = lt_alignment(x);
    key.align_w = lt_alignment(W);
    key.align_out = lt_alignment(out);
    return key;
}

ss_status ss_cuda_lt_matmul(ss_cuda_lt *lt, cudaStream_t stream, void *out, int out_f32, const void *x, const void *W,
                            int64_t n, int32_t m, int32_t k, ss_err *err)
{
    const lt_key key = lt_key_of(n, m, k, out_f32, 0, x, W, out);
    lt_plan *plan = NULL;
    SS_CHECK(lt_plan_get(lt, &key, &plan, NULL, NULL, err));
    const float alpha = 1.0f, beta = 0.0f;
    LT_CHECK(lt, err, lt->api.matmul(lt->handle, plan->desc, &alpha, W, plan->a, x, plan->b, &beta, out, plan->c, out,
                                     plan->c, &plan->algo, lt->workspace, lt->workspace_bytes, stream));
    return SS_OK;
}

ss_status ss_cuda_lt_matmul_e4m3(ss_cuda_lt *lt, cudaStream_t stream, void *out, const void *xq, const void *Wq,
                                 int64_t n, int32_t m, int32_t k, ss_err *err)
{
    const lt_key key = lt_key_of(n, m, k, 0, 2, xq, Wq, out);
    lt_plan *plan = NULL;
    SS_CHECK(lt_plan_get(lt, &key, &plan, NULL, NULL, err));
    const float alpha = 1.0f, beta = 0.0f;
    LT_CHECK(lt, err, lt->api.matmul(lt->handle, plan->desc, &alpha, Wq, plan->a, xq, plan->b, &beta, out, plan->c,
                                     out, plan->c, &plan->algo, lt->workspace, lt->workspace_bytes, stream));
    return SS_OK;
}

ss_status ss_cuda_lt_matmul_fp8(ss_cuda_lt *lt, cudaStream_t stream, void *out, const void *xq, const float *x_scale,
                                const void *Wq, const float *w_scale, int64_t n, int32_t m, int32_t k, ss_err *err)
{
    if (lt->fp8_outer != 0 && n >= lt->fp8_outer_min) {
        const float alpha = 1.0f, beta = 0.0f;
        const lt_key key = lt_key_of(n, m, k, 0, 1, xq, Wq, out);
        lt_plan *plan = NULL;
        ss_status st = lt_plan_get(lt, &key, &plan, w_scale, x_scale, err);
        if (st == SS_OK) {
            /* The scales are device pointers read when the GEMM runs (a captured graph keeps these addresses). */
            LT_CHECK(lt, err,
                     lt->api.desc_set(plan->desc, CUBLASLT_MATMUL_DESC_A_SCALE_POINTER, &w_scale, sizeof w_scale));
            LT_CHECK(lt, err,
                     lt->api.desc_set(plan->desc, CUBLASLT_MATMUL_DESC_B_SCALE_POINTER, &x_scale, sizeof x_scale));
            const cublasStatus_t ms =
                lt->api.matmul(lt->handle, plan->desc, &alpha, Wq, plan->a, xq, plan->b, &beta, out, plan->c, out,
                               plan->c, &plan->algo, lt->workspace, lt->workspace_bytes, stream);
            if (ms == CUBLAS_STATUS_SUCCESS) {
                lt->fp8_outer = 1;
                return SS_OK;
            }
            if (lt->fp8_outer > 0)
                return ss_cuda_fail(err, SS_ERR_CUDA, __FILE__, __LINE__, "cublasLtMatmul (e4m3, outer-vector scales)",
                                    lt->api.status_string(ms));
            lt_plan_release(lt, plan); /* the first such GEMM: its refusal (checked on the host, nothing enqueued) */
            ss_err_set(err, SS_ERR_UNSUPPORTED, "cublasLtMatmul refuses e4m3 with outer-vector scales: %s",
                       lt->api.status_string(ms));
        } else if (st != SS_ERR_UNSUPPORTED || lt->fp8_outer > 0) {
            return st;
        }
        /* this cuBLAS cannot scale rows and tokens itself: a kernel does, from now on */
        SS_LOGW("cuda: %s; the fp8 GEMMs' products are scaled by a separate kernel", err->msg);
        lt->fp8_outer = 0;
    }
    /* the unscaled e4m3 product in bf16 (|sum| <= 448^2 k fits), then the row and token scales */
    SS_CHECK(ss_cuda_lt_matmul_e4m3(lt, stream, out, xq, Wq, n, m, k, err));
    const int e = ss_cuda_fp8_scale_out(stream, out, x_scale, w_scale, n, m);
    if (e != 0)
        return ss_cuda_fail(err, ss_cuda_status_of((cudaError_t)e), __FILE__, __LINE__, "ss_cuda_fp8_scale_out",
                            cudaGetErrorString((cudaError_t)e));
    return SS_OK;
}

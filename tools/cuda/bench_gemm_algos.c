/* bench_gemm_algos.c — times every cuBLASLt algorithm configuration the library offers for the 8B shape's projection
 * GEMMs at decode batch sizes, against the heuristic's first choice (the one matmul_lt.c takes). A GPU-only tool.
 * Usage: bench_gemm_algos [N,N,... [REPS [bf16 | e4m3 | e4m3-outer]]]: bf16 weights and activations (the default), or
 * e4m3 ones with bf16 out, unscaled (backend_cuda.c's SS_FP8_OUTER=0 form) or with a scale a weight row and a token
 * (cuBLASLt's outer-vector scales, the backend's default fp8 GEMM). */
#include <cublasLt.h>
#include <cuda_runtime.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* This tool only measures: any CUDA or cuBLASLt failure is reported with its call and the run ends. */
#define CK(call)                                                                                                  \
    do {                                                                                                          \
        cudaError_t e_ = (call);                                                                                  \
        if (e_ != cudaSuccess) {                                                                                  \
            fprintf(stderr, "bench_gemm_algos: %s: %s\n", #call, cudaGetErrorString(e_));                         \
            exit(1);                                                                                              \
        }                                                                                                         \
    } while (0)
#define LK(call)                                                                                                  \
    do {                                                                                                          \
        cublasStatus_t s_ = (call);                                                                               \
        if (s_ != CUBLAS_STATUS_SUCCESS) {                                                                        \
            fprintf(stderr, "bench_gemm_algos: %s: %s\n", #call, cublasLtGetStatusString(s_));                    \
            exit(1);                                                                                              \
        }                                                                                                         \
    } while (0)

#define WS_BYTES ((size_t)32 << 20) /* as backend_cuda.c's CU_LT_WORKSPACE */
#define MAX_CAND 512

typedef struct {
    const char *name;
    int m, k; /* out features, in features */
} shape;

typedef enum { IN_BF16, IN_E4M3, IN_E4M3_OUTER } in_kind;

typedef struct {
    cublasLtHandle_t lt;
    cublasLtMatmulDesc_t desc;
    cublasLtMatrixLayout_t a, b, c;
    void **w; /* copies of the weight, so that the L2 holds none of them between runs */
    int n_w;
    void *x, *out, *ws;
    cudaStream_t s;
    cudaEvent_t e0, e1;
} bench;

/* Median of reps timed runs (each batch of runs cycles the weight copies), in microseconds; < 0 when it fails. */
static double time_algo(bench *b, const cublasLtMatmulAlgo_t *algo, int reps)
{
    const float one = 1.0f, zero = 0.0f;
    double t[16];
    int rounds = reps < 16 ? reps : 16;
    for (int w = 0; w < 3; w++)
        if (cublasLtMatmul(b->lt, b->desc, &one, b->w[w % b->n_w], b->a, b->x, b->b, &zero, b->out, b->c, b->out, b->c,
                           algo, b->ws, WS_BYTES, b->s) != CUBLAS_STATUS_SUCCESS)
            return -1.0;
    for (int r = 0; r < rounds; r++) {
        const int per = 8;
        CK(cudaEventRecord(b->e0, b->s));
        for (int i = 0; i < per; i++)
            cublasLtMatmul(b->lt, b->desc, &one, b->w[(r * per + i) % b->n_w], b->a, b->x, b->b, &zero, b->out, b->c,
                           b->out, b->c, algo, b->ws, WS_BYTES, b->s);
        CK(cudaEventRecord(b->e1, b->s));
        CK(cudaEventSynchronize(b->e1));
        float ms = 0.0f;
        CK(cudaEventElapsedTime(&ms, b->e0, b->e1));
        t[r] = 1000.0 * ms / per;
    }
    for (int i = 1; i < rounds; i++) /* insertion sort: a handful of values */
        for (int j = i; j > 0 && t[j] < t[j - 1]; j--) {
            double x = t[j];
            t[j] = t[j - 1], t[j - 1] = x;
        }
    return t[rounds / 2];
}

static void describe(const cublasLtMatmulAlgo_t *algo, char *buf, size_t len)
{
    int id = 0, tile = 0, splitk = 0, stages = 0, cluster = 0, inner = 0, red = 0;
    size_t wr = 0;
    cublasLtMatmulAlgoConfigGetAttribute(algo, CUBLASLT_ALGO_CONFIG_ID, &id, sizeof id, &wr);
    cublasLtMatmulAlgoConfigGetAttribute(algo, CUBLASLT_ALGO_CONFIG_TILE_ID, &tile, sizeof tile, &wr);
    cublasLtMatmulAlgoConfigGetAttribute(algo, CUBLASLT_ALGO_CONFIG_SPLITK_NUM, &splitk, sizeof splitk, &wr);
    cublasLtMatmulAlgoConfigGetAttribute(algo, CUBLASLT_ALGO_CONFIG_STAGES_ID, &stages, sizeof stages, &wr);
    cublasLtMatmulAlgoConfigGetAttribute(algo, CUBLASLT_ALGO_CONFIG_CLUSTER_SHAPE_ID, &cluster, sizeof cluster, &wr);
    cublasLtMatmulAlgoConfigGetAttribute(algo, CUBLASLT_ALGO_CONFIG_INNER_SHAPE_ID, &inner, sizeof inner, &wr);
    cublasLtMatmulAlgoConfigGetAttribute(algo, CUBLASLT_ALGO_CONFIG_REDUCTION_SCHEME, &red, sizeof red, &wr);
    snprintf(buf, len, "id=%d tile=%d splitk=%d red=%d stages=%d cluster=%d inner=%d", id, tile, splitk, red, stages,
             cluster, inner);
}

/* scales: kind IN_E4M3_OUTER's device vectors (>= m and >= n floats of 1.0). */
static void run_shape(cublasLtHandle_t lt, const shape *sh, int n, int reps, void *x, void *out, void *ws,
                      cudaStream_t s, cudaEvent_t e0, cudaEvent_t e1, void *w_src, in_kind kind, const float *scales)
{
    bench b = {.lt = lt, .x = x, .out = out, .ws = ws, .s = s, .e0 = e0, .e1 = e1};
    const cudaDataType_t in_type = kind == IN_BF16 ? CUDA_R_16BF : CUDA_R_8F_E4M3;
    const size_t wbytes = (size_t)sh->m * sh->k * (kind == IN_BF16 ? 2 : 1);
    b.n_w = (int)((256u << 20) / wbytes) + 1; /* > 256 MB of weights: five times the L2 */
    if (b.n_w < 2)
        b.n_w = 2;
    b.w = calloc((size_t)b.n_w, sizeof *b.w);
    for (int i = 0; i < b.n_w; i++) {
        CK(cudaMalloc(&b.w[i], wbytes));
        CK(cudaMemcpy(b.w[i], w_src, wbytes, cudaMemcpyDeviceToDevice));
    }
    const cublasOperation_t op_t = CUBLAS_OP_T, op_n = CUBLAS_OP_N;
    LK(cublasLtMatmulDescCreate(&b.desc, CUBLAS_COMPUTE_32F, CUDA_R_32F));
    LK(cublasLtMatmulDescSetAttribute(b.desc, CUBLASLT_MATMUL_DESC_TRANSA, &op_t, sizeof op_t));
    LK(cublasLtMatmulDescSetAttribute(b.desc, CUBLASLT_MATMUL_DESC_TRANSB, &op_n, sizeof op_n));
    if (kind == IN_E4M3_OUTER) { /* as matmul_lt.c's fp8 plans */
        const int32_t outer = CUBLASLT_MATMUL_MATRIX_SCALE_OUTER_VEC_32F;
        LK(cublasLtMatmulDescSetAttribute(b.desc, CUBLASLT_MATMUL_DESC_A_SCALE_MODE, &outer, sizeof outer));
        LK(cublasLtMatmulDescSetAttribute(b.desc, CUBLASLT_MATMUL_DESC_B_SCALE_MODE, &outer, sizeof outer));
        LK(cublasLtMatmulDescSetAttribute(b.desc, CUBLASLT_MATMUL_DESC_A_SCALE_POINTER, &scales, sizeof scales));
        LK(cublasLtMatmulDescSetAttribute(b.desc, CUBLASLT_MATMUL_DESC_B_SCALE_POINTER, &scales, sizeof scales));
    }
    LK(cublasLtMatrixLayoutCreate(&b.a, in_type, (uint64_t)sh->k, (uint64_t)sh->m, sh->k));
    LK(cublasLtMatrixLayoutCreate(&b.b, in_type, (uint64_t)sh->k, (uint64_t)n, sh->k));
    LK(cublasLtMatrixLayoutCreate(&b.c, CUDA_R_16BF, (uint64_t)sh->m, (uint64_t)n, sh->m));
    cublasLtMatmulPreference_t pref;
    LK(cublasLtMatmulPreferenceCreate(&pref));
    uint64_t wsb = WS_BYTES;
    LK(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &wsb, sizeof wsb));

    cublasLtMatmulHeuristicResult_t *cand = calloc(MAX_CAND, sizeof *cand); /* owned here */
    if (!cand) {
        fprintf(stderr, "bench_gemm_algos: out of memory\n");
        exit(1);
    }
    int n_cand = 0, found = 0;
    /* the heuristic's list (its first is what matmul_lt.c takes) */
    LK(cublasLtMatmulAlgoGetHeuristic(lt, b.desc, b.a, b.b, b.c, b.c, pref, 32, cand, &found));
    n_cand = found;
    const int n_heur = found;
    /* each algorithm id's own list */
    int ids[128], n_ids = 0;
    LK(cublasLtMatmulAlgoGetIds(lt, CUBLAS_COMPUTE_32F, CUDA_R_32F, in_type, in_type, CUDA_R_16BF, CUDA_R_16BF, 128,
                                ids, &n_ids));
    uint32_t mode = CUBLASLT_SEARCH_LIMITED_BY_ALGO_ID;
    for (int i = 0; i < n_ids && n_cand < MAX_CAND - 32; i++) {
        cublasLtMatmulPreference_t p2;
        LK(cublasLtMatmulPreferenceCreate(&p2));
        LK(cublasLtMatmulPreferenceSetAttribute(p2, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &wsb, sizeof wsb));
        LK(cublasLtMatmulPreferenceSetAttribute(p2, CUBLASLT_MATMUL_PREF_SEARCH_MODE, &mode, sizeof mode));
        cublasLtMatmulAlgo_t algo;
        if (cublasLtMatmulAlgoInit(lt, CUBLAS_COMPUTE_32F, CUDA_R_32F, in_type, in_type, CUDA_R_16BF, CUDA_R_16BF,
                                   ids[i], &algo) == CUBLAS_STATUS_SUCCESS) {
            cand[n_cand].algo = algo;
            int f = 0;
            if (cublasLtMatmulAlgoGetHeuristic(lt, b.desc, b.a, b.b, b.c, b.c, p2, 32, cand + n_cand, &f) ==
                CUBLAS_STATUS_SUCCESS)
                n_cand += f;
        }
        cublasLtMatmulPreferenceDestroy(p2);
    }
    double base = -1.0, best = 1e30;
    int best_i = -1;
    char d[160];
    for (int i = 0; i < n_cand; i++) {
        if (cand[i].state != CUBLAS_STATUS_SUCCESS || cand[i].workspaceSize > WS_BYTES)
            continue;
        const double us = time_algo(&b, &cand[i].algo, reps);
        if (us < 0)
            continue;
        if (i == 0)
            base = us;
        describe(&cand[i].algo, d, sizeof d);
        printf("  %-5s n=%-4d %s #%-3d %8.2f us %7.0f GB/s  %s ws=%zu\n", sh->name, n, i < n_heur ? "heur" : "byid", i,
               us, wbytes / us / 1e3, d, cand[i].workspaceSize);
        if (us < best)
            best = us, best_i = i;
    }
    if (best_i >= 0) {
        describe(&cand[best_i].algo, d, sizeof d);
        printf("BEST %-5s n=%-4d heuristic %.2f us (%.0f GB/s), best %.2f us (%.0f GB/s, %+.1f%%) of %d: %s\n", sh->name,
               n, base, wbytes / base / 1e3, best, wbytes / best / 1e3, 100.0 * (best - base) / base, n_cand, d);
    }
    fflush(stdout);
    free(cand);
    cublasLtMatmulPreferenceDestroy(pref);
    cublasLtMatrixLayoutDestroy(b.a);
    cublasLtMatrixLayoutDestroy(b.b);
    cublasLtMatrixLayoutDestroy(b.c);
    cublasLtMatmulDescDestroy(b.desc);
    for (int i = 0; i < b.n_w; i++)
        cudaFree(b.w[i]);
    free(b.w);
}

int main(int argc, char **argv)
{
    const shape shapes[] = {{"qkv", 6144, 4096}, {"o", 4096, 4096}, {"gu", 28672, 4096}, {"down", 4096, 14336}};
    int ns[16], n_ns = 0, reps = 9;
    const char *list = argc > 1 ? argv[1] : "32,128,256";
    for (const char *p = list; *p && n_ns < 16;) {
        ns[n_ns++] = atoi(p);
        p = strchr(p, ',');
        if (!p)
            break;
        p++;
    }
    if (argc > 2)
        reps = atoi(argv[2]);
    in_kind kind = IN_BF16;
    if (argc > 3) {
        if (strcmp(argv[3], "e4m3") == 0)
            kind = IN_E4M3;
        else if (strcmp(argv[3], "e4m3-outer") == 0)
            kind = IN_E4M3_OUTER;
        else if (strcmp(argv[3], "bf16") != 0) {
            fprintf(stderr, "bench_gemm_algos: the third argument is bf16, e4m3 or e4m3-outer (got '%s')\n", argv[3]);
            return 2;
        }
    }
    cublasLtHandle_t lt;
    LK(cublasLtCreate(&lt));
    void *x, *out, *ws, *w_src;
    const size_t max_w = (size_t)28672 * 14336 * 2;
    CK(cudaMalloc(&x, (size_t)1024 * 14336 * 2));
    CK(cudaMalloc(&out, (size_t)1024 * 28672 * 2));
    CK(cudaMalloc(&ws, WS_BYTES));
    CK(cudaMalloc(&w_src, max_w));
    { /* small random bf16 values (exponent of ~2^-7): no zeros, no overflow */
        size_t cnt = max_w / 2;
        uint16_t *h = malloc(cnt * 2);
        uint32_t r = 12345u;
        for (size_t i = 0; i < cnt; i++) {
            r = r * 1664525u + 1013904223u;
            h[i] = (uint16_t)(0x3c00u | ((r >> 16) & 0x7f) | ((r >> 8) & 0x8000u));
        }
        CK(cudaMemcpy(w_src, h, max_w, cudaMemcpyHostToDevice));
        CK(cudaMemcpy(x, h, (size_t)1024 * 14336 * 2, cudaMemcpyHostToDevice));
        free(h);
    }
    if (kind != IN_BF16) { /* e4m3 0x30 (0.5) everywhere: no NaN bytes (0x7f, 0xff) among the inputs */
        CK(cudaMemset(w_src, 0x30, max_w));
        CK(cudaMemset(x, 0x30, (size_t)1024 * 14336 * 2));
    }
    float *scales = NULL; /* IN_E4M3_OUTER: 1.0 for every weight row and token */
    if (kind == IN_E4M3_OUTER) {
        const size_t cnt = 28672;
        float *h = malloc(cnt * sizeof *h);
        if (!h) {
            fprintf(stderr, "bench_gemm_algos: out of memory\n");
            return 1;
        }
        for (size_t i = 0; i < cnt; i++)
            h[i] = 1.0f;
        CK(cudaMalloc((void **)&scales, cnt * sizeof *h));
        CK(cudaMemcpy(scales, h, cnt * sizeof *h, cudaMemcpyHostToDevice));
        free(h);
    }
    cudaStream_t s;
    cudaEvent_t e0, e1;
    CK(cudaStreamCreate(&s));
    CK(cudaEventCreate(&e0));
    CK(cudaEventCreate(&e1));
    for (int i = 0; i < n_ns; i++)
        for (size_t j = 0; j < sizeof shapes / sizeof shapes[0]; j++)
            run_shape(lt, &shapes[j], ns[i], reps, x, out, ws, s, e0, e1, w_src, kind, scales);
    cublasLtDestroy(lt);
    return 0;
}

/* test_comm_peer.c — the NCCL communicator with its one-shot peer-memory all-reduce on two GPUs (two
 * processes): exact sums at every size class, the fused residual add + RMSNorm against a host
 * reference, graph replay, and a lost peer turning into a timeout. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "comm/comm.h"

#ifdef SS_HAVE_CUDA
#include <cuda_runtime_api.h>

/* Children report with their exit status; the message goes to stderr. */
#define CHILD_CHECK(cond, ...)                                                                                        \
    do {                                                                                                               \
        if (!(cond)) {                                                                                                 \
            fprintf(stderr, "rank %d: ", rank);                                                                      \
            fprintf(stderr, __VA_ARGS__);                                                                              \
            fprintf(stderr, "\n");                                                                                     \
            _exit(1);                                                                                                  \
        }                                                                                                              \
    } while (0)

/* Small integers: exact in bf16 and f32, so sums compare exactly whatever the reduction order. */
static float val(int rank, int64_t i, int iter)
{
    return (float)((i * 7 + rank * 13 + iter * 5) % 17) - 8.0f;
}

static uint16_t to_bf16(float f)
{
    uint32_t u;
    memcpy(&u, &f, 4);
    return (uint16_t)(u >> 16); /* exact for these values */
}

static float from_bf16(uint16_t h)
{
    uint32_t u = (uint32_t)h << 16;
    float f;
    memcpy(&f, &u, 4);
    return f;
}

typedef struct ar_case {
    int64_t count;
    ss_dtype type;
} ar_case;

/* Every size class: one vector, the batch-1 residual of an 8B model, several blocks, the largest
 * one-shot message, and one past it (NCCL). */
static const ar_case cases[] = {
    {8, SS_DTYPE_BF16},     {4096, SS_DTYPE_BF16},   {8192, SS_DTYPE_F32},     {4096 * 33, SS_DTYPE_BF16},
    {262144, SS_DTYPE_BF16}, {131072, SS_DTYPE_F32}, {262144 + 8, SS_DTYPE_BF16}, {40, SS_DTYPE_F32},
};
#define N_CASES ((int)(sizeof cases / sizeof cases[0]))
#define MAX_COUNT (262144 + 8)

static void fill(void *host, const ar_case *c, int rank, int iter)
{
    for (int64_t i = 0; i < c->count; i++) {
        float v = val(rank, i, iter);
        if (c->type == SS_DTYPE_BF16)
            ((uint16_t *)host)[i] = to_bf16(v);
        else
            ((float *)host)[i] = v;
    }
}

/* 0 when host holds the sum over both ranks; else the first bad index + 1. */
static int64_t check(const void *host, const ar_case *c, int iter)
{
    for (int64_t i = 0; i < c->count; i++) {
        float want = val(0, i, iter) + val(1, i, iter);
        float got = c->type == SS_DTYPE_BF16 ? from_bf16(((const uint16_t *)host)[i]) : ((const float *)host)[i];
        if (got != want)
            return i + 1;
    }
    return 0;
}

/* Round to bf16, nearest even (the device's __float2bfloat16_rn on finite values). */
static float round_bf16(float f)
{
    uint32_t u;
    memcpy(&u, &f, 4);
    u = (u + 0x7fffu + ((u >> 16) & 1u)) & 0xffff0000u;
    memcpy(&f, &u, 4);
    return f;
}

typedef struct norm_case {
    int64_t rows;
    int32_t dim;
    int fits; /* 0: the fused op must decline (SS_ERR_UNSUPPORTED) */
} norm_case;

static const norm_case norm_cases[] = {{1, 4096, 1}, {3, 4096, 1}, {64, 4096, 1}, {2, 8192, 1},
                                       {5, 64, 1},   {65, 4096, 0}, {1, 16384, 0}};
#define N_NORM ((int)(sizeof norm_cases / sizeof norm_cases[0]))

/* x of rank r: small integers; residual: quarters; w: eighths — all sums exact in bf16. */
static float norm_x(int rank, int64_t i, int iter)
{
    return val(rank, i, iter);
}
static float norm_res(int64_t i, int iter)
{
    return (float)((i * 3 + iter) % 29 - 14) * 0.25f;
}
static float norm_w(int64_t j)
{
    return (float)(4 + j % 13) * 0.125f;
}

/* The fused all-reduce + residual add + RMSNorm against a host reference, interleaved with plain
 * all-reduces (they share the per-block epochs). Returns 0 or exits the child. */
static void child_norm(int rank, ss_comm *comm, cudaStream_t stream, void *dev)
{
    ss_err e;
    const int64_t max_el = 65 * 4096 + 16384;
    uint16_t *hx = malloc(max_el * 2), *hr = malloc(max_el * 2), *hw = malloc(16384 * 2), *ho = malloc(max_el * 2);
    char *x = dev, *res = x + max_el * 2, *out = res + max_el * 2, *w = out + max_el * 2, *pd = w + 16384 * 2;
    CHILD_CHECK(hx && hr && hw && ho, "host buffers");
    for (int iter = 0; iter < 3 * N_NORM; iter++) {
        const norm_case *nc = &norm_cases[iter % N_NORM];
        const int64_t n = nc->rows * nc->dim;
        for (int64_t i = 0; i < n; i++) {
            hx[i] = to_bf16(norm_x(rank, i, iter));
            hr[i] = to_bf16(norm_res(i, iter));
        }
        for (int32_t j = 0; j < nc->dim; j++)
            hw[j] = to_bf16(norm_w(j));
        CHILD_CHECK(cudaMemcpyAsync(x, hx, n * 2, cudaMemcpyHostToDevice, stream) == cudaSuccess, "upload");
        CHILD_CHECK(cudaMemcpyAsync(res, hr, n * 2, cudaMemcpyHostToDevice, stream) == cudaSuccess, "upload");
        CHILD_CHECK(cudaMemcpyAsync(w, hw, nc->dim * 2, cudaMemcpyHostToDevice, stream) == cudaSuccess, "upload");
        ss_status st = comm->iface->all_reduce_add_rmsnorm(comm->ctx, x, res, out, w, nc->rows, nc->dim, 1e-5f,
                                                           SS_DTYPE_BF16);
        if (!nc->fits) {
            CHILD_CHECK(st == SS_ERR_UNSUPPORTED, "%lld rows of %d: %s, not a decline", (long long)nc->rows, nc->dim,
                        ss_status_str(st));
            continue;
        }
        CHILD_CHECK(st == SS_OK, "all_reduce_add_rmsnorm: %s", ss_status_str(st));
        /* a plain all-reduce right behind it, on the same blocks */
        const ar_case *c = &cases[(iter * 5) % N_CASES];
        fill(ho, c, rank, iter);
        CHILD_CHECK(cudaMemcpyAsync(pd, ho, (size_t)c->count * ss_dtype_size(c->type), cudaMemcpyHostToDevice,
                                    stream) == cudaSuccess, "upload");
        CHILD_CHECK(comm->iface->all_reduce_sum(comm->ctx, pd, c->count, c->type) == SS_OK, "all_reduce");
        CHILD_CHECK(ss_comm_nccl_wait(comm, 0, &e) == SS_OK, "wait: %s", e.msg);
        CHILD_CHECK(cudaMemcpy(hr, res, n * 2, cudaMemcpyDeviceToHost) == cudaSuccess, "download");
        CHILD_CHECK(cudaMemcpy(ho, out, n * 2, cudaMemcpyDeviceToHost) == cudaSuccess, "download");
        for (int64_t r = 0; r < nc->rows; r++) {
            double ss = 0;
            float rn[16384];
            for (int32_t j = 0; j < nc->dim; j++) {
                int64_t i = r * nc->dim + j;
                rn[j] = round_bf16(norm_res(i, iter) + norm_x(0, i, iter) + norm_x(1, i, iter));
                CHILD_CHECK(from_bf16(hr[i]) == rn[j], "%lld x %d, row %lld, column %d: residual %g, want %g",
                            (long long)nc->rows, nc->dim, (long long)r, j, from_bf16(hr[i]), rn[j]);
                ss += (double)rn[j] * rn[j];
            }
            double inv = 1.0 / sqrt(ss / nc->dim + 1e-5);
            for (int32_t j = 0; j < nc->dim; j++) {
                double want = rn[j] * inv * norm_w(j), got = from_bf16(ho[r * nc->dim + j]);
                CHILD_CHECK(fabs(got - want) <= 1e-2 * fabs(want) + 1e-6, "%lld x %d, row %lld, column %d: out %g, want %g",
                            (long long)nc->rows, nc->dim, (long long)r, j, got, want);
            }
        }
        void *plain = malloc((size_t)c->count * 4);
        CHILD_CHECK(plain && cudaMemcpy(plain, pd, (size_t)c->count * ss_dtype_size(c->type),
                                        cudaMemcpyDeviceToHost) == cudaSuccess, "download");
        CHILD_CHECK(check(plain, c, iter) == 0, "the plain all-reduce after the fused one: wrong sum");
        free(plain);
    }
    free(hx), free(hr), free(hw), free(ho);
}

/* mode: the case (0..5). */

static void child(int rank, int fd_id, int mode)
{
    unsigned char id[128];
    CHILD_CHECK(cudaSetDevice(rank) == cudaSuccess, "cudaSetDevice");
    if (rank == 0) {
        ss_err e;
        CHILD_CHECK(ss_comm_nccl_unique_id(id, &e) == SS_OK, "%s", e.msg);
        CHILD_CHECK(write(fd_id, id, sizeof id) == (ssize_t)sizeof id, "write id");
    } else {
        CHILD_CHECK(read(fd_id, id, sizeof id) == (ssize_t)sizeof id, "read id");
    }
    cudaStream_t stream;
    CHILD_CHECK(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking) == cudaSuccess, "stream");
    ss_comm *comm = NULL;
    ss_err e;
    CHILD_CHECK(ss_comm_nccl_create(rank, 2, id, stream, rank, 30000, SS_NCCL_PEER_ALLREDUCE, &comm, &e) == SS_OK,
                "create: %s", e.msg);
    CHILD_CHECK(ss_comm_nccl_peer_allreduce(comm), "two GPUs of one host, but the peer all-reduce is off");
    void *dev = NULL, *host = malloc(MAX_COUNT * 4);
    CHILD_CHECK(cudaMalloc(&dev, 8 << 20) == cudaSuccess && host, "buffers");

    if (mode == 0) { /* eager: every case, many times, sizes interleaved (epochs and parities per block) */
        for (int iter = 0; iter < 120; iter++) {
            const ar_case *c = &cases[(iter * 3) % N_CASES];
            size_t bytes = (size_t)c->count * ss_dtype_size(c->type);
            fill(host, c, rank, iter);
            CHILD_CHECK(cudaMemcpyAsync(dev, host, bytes, cudaMemcpyHostToDevice, stream) == cudaSuccess, "upload");
            CHILD_CHECK(comm->iface->all_reduce_sum(comm->ctx, dev, c->count, c->type) == SS_OK, "all_reduce");
            CHILD_CHECK(ss_comm_nccl_wait(comm, 0, &e) == SS_OK, "wait: %s", e.msg);
            CHILD_CHECK(cudaMemcpy(host, dev, bytes, cudaMemcpyDeviceToHost) == cudaSuccess, "download");
            int64_t bad = check(host, c, iter);
            CHILD_CHECK(bad == 0, "iteration %d, %lld elements of %s: element %lld wrong", iter, (long long)c->count,
                        ss_dtype_name(c->type), (long long)bad - 1);
        }
    } else if (mode == 3) {
        child_norm(rank, comm, stream, dev);
    } else if (mode == 4) {
        /* Inputs carrying the inbox's empty pattern (all bits set: a negated NaN) on one rank or on both:
         * no hang, those sums are NaN and every other sum is exact; 12 rounds use every inbox set. */
        for (int iter = 0; iter < 12; iter++) {
            for (int k = 0; k < 3; k++) { /* one block of bf16, one of f32, ten blocks of bf16 */
                const ar_case c = {k == 0 ? 4096 : k == 1 ? 2048 : 4096 * 20, k == 1 ? SS_DTYPE_F32 : SS_DTYPE_BF16};
                size_t bytes = (size_t)c.count * ss_dtype_size(c.type);
                fill(host, &c, rank, iter);
                for (int64_t i = 0; i < c.count; i++)
                    if ((i % 3 == 0 && rank == iter % 2) || i % 7 == 0)
                        memset((char *)host + i * (int64_t)ss_dtype_size(c.type), 0xff, ss_dtype_size(c.type));
                CHILD_CHECK(cudaMemcpyAsync(dev, host, bytes, cudaMemcpyHostToDevice, stream) == cudaSuccess, "upload");
                CHILD_CHECK(comm->iface->all_reduce_sum(comm->ctx, dev, c.count, c.type) == SS_OK, "all_reduce");
                CHILD_CHECK(ss_comm_nccl_wait(comm, 0, &e) == SS_OK, "wait: %s", e.msg);
                CHILD_CHECK(cudaMemcpy(host, dev, bytes, cudaMemcpyDeviceToHost) == cudaSuccess, "download");
                for (int64_t i = 0; i < c.count; i++) {
                    float got = c.type == SS_DTYPE_BF16 ? from_bf16(((const uint16_t *)host)[i])
                                                        : ((const float *)host)[i];
                    if (i % 3 == 0 || i % 7 == 0)
                        CHILD_CHECK(isnan(got), "round %d, %s element %lld: %g, not NaN", iter, ss_dtype_name(c.type),
                                    (long long)i, got);
                    else
                        CHILD_CHECK(got == val(0, i, iter) + val(1, i, iter), "round %d, %s element %lld: %g", iter,
                                    ss_dtype_name(c.type), (long long)i, got);
                }
            }
        }
    } else if (mode == 1) { /* three all-reduces captured in one graph, replayed with fresh inputs */
        const ar_case *c = &cases[1];
        size_t bytes = (size_t)c->count * 2;
        char *bufs[3] = {dev, (char *)dev + bytes, (char *)dev + 2 * bytes};
        cudaGraph_t g;
        cudaGraphExec_t ge;
        CHILD_CHECK(cudaStreamBeginCapture(stream, cudaStreamCaptureModeThreadLocal) == cudaSuccess, "capture");
        for (int k = 0; k < 3; k++)
            CHILD_CHECK(comm->iface->all_reduce_sum(comm->ctx, bufs[k], c->count, c->type) == SS_OK, "captured call");
        CHILD_CHECK(cudaStreamEndCapture(stream, &g) == cudaSuccess, "end capture");
        CHILD_CHECK(cudaGraphInstantiate(&ge, g, 0) == cudaSuccess, "instantiate");
        for (int iter = 0; iter < 50; iter++) {
            for (int k = 0; k < 3; k++) {
                fill(host, c, rank, iter * 3 + k);
                CHILD_CHECK(cudaMemcpyAsync(bufs[k], host, bytes, cudaMemcpyHostToDevice, stream) == cudaSuccess,
                            "upload");
            }
            CHILD_CHECK(cudaGraphLaunch(ge, stream) == cudaSuccess, "launch");
            CHILD_CHECK(ss_comm_nccl_wait(comm, 0, &e) == SS_OK, "wait: %s", e.msg);
            for (int k = 0; k < 3; k++) {
                CHILD_CHECK(cudaMemcpy(host, bufs[k], bytes, cudaMemcpyDeviceToHost) == cudaSuccess, "download");
                CHILD_CHECK(check(host, c, iter * 3 + k) == 0, "replay %d, call %d: wrong sum", iter, k);
            }
        }
        cudaGraphExecDestroy(ge);
        cudaGraphDestroy(g);
    } else if (mode == 5) { /* windows: empty at first, each rank writes into its peer's, limits refused alike */
        enum { W = 3000, PART = 1000 };
        ss_comm_window win;
        CHILD_CHECK(comm->iface->window && comm->iface->window(comm->ctx, W, 1, &win) == SS_OK, "window");
        CHILD_CHECK(win.rank == rank && win.size == 2 && win.bytes == W && win.abort_flag && win.base[0] &&
                        win.base[1] && win.base[0] != win.base[1],
                    "window description");
        unsigned char *h = host;
        CHILD_CHECK(cudaMemcpy(h, win.base[rank], W, cudaMemcpyDefault) == cudaSuccess, "read own window");
        for (int i = 0; i < W; i++)
            CHILD_CHECK(h[i] == 0xff, "byte %d of a fresh window is 0x%02x, not 0xff", i, h[i]);
        /* both have looked before either writes */
        CHILD_CHECK(comm->iface->all_reduce_sum(comm->ctx, dev, 8, SS_DTYPE_F32) == SS_OK, "barrier");
        CHILD_CHECK(ss_comm_nccl_wait(comm, 0, &e) == SS_OK, "wait: %s", e.msg);
        memset(h, rank + 1, PART);
        CHILD_CHECK(cudaMemcpy((char *)win.base[1 - rank] + rank * PART, h, PART, cudaMemcpyDefault) == cudaSuccess,
                    "write into the peer's window");
        /* from pageable memory the copy may return before its DMA has landed */
        CHILD_CHECK(cudaDeviceSynchronize() == cudaSuccess, "sync after the write");
        CHILD_CHECK(comm->iface->all_reduce_sum(comm->ctx, dev, 8, SS_DTYPE_F32) == SS_OK, "barrier");
        CHILD_CHECK(ss_comm_nccl_wait(comm, 0, &e) == SS_OK, "wait: %s", e.msg);
        CHILD_CHECK(cudaMemcpy(h, win.base[rank], W, cudaMemcpyDefault) == cudaSuccess, "read own window");
        for (int i = 0; i < W; i++) {
            int want = i / PART == 1 - rank ? 2 - rank : 0xff;
            CHILD_CHECK(h[i] == want, "byte %d of rank %d's window: 0x%02x, want 0x%02x", i, rank, h[i], want);
        }
        int n = 1;
        ss_status st;
        /* a rank that does not want one: neither gets it (and the call still pairs up) */
        st = comm->iface->window(comm->ctx, 64, rank == 0, &win);
        CHILD_CHECK(st == SS_ERR_UNSUPPORTED, "a window one rank did not want gave %s", ss_status_str(st));
        while ((st = comm->iface->window(comm->ctx, 64, 1, &win)) == SS_OK)
            n++;
        CHILD_CHECK(st == SS_ERR_UNSUPPORTED && n == 3, "window %d gave %s", n + 2, ss_status_str(st));
        CHILD_CHECK(comm->iface->all_reduce_sum(comm->ctx, dev, 8, SS_DTYPE_F32) == SS_OK, "after the windows");
        CHILD_CHECK(ss_comm_nccl_wait(comm, 0, &e) == SS_OK, "wait: %s", e.msg);
    } else { /* rank 1 never calls: rank 0's call must become a timeout, and its kernel must stop */
        if (rank == 1) {
            sleep(6);
            _exit(0);
        }
        const ar_case *c = &cases[1];
        fill(host, c, rank, 0);
        CHILD_CHECK(cudaMemcpyAsync(dev, host, 8192, cudaMemcpyHostToDevice, stream) == cudaSuccess, "upload");
        CHILD_CHECK(comm->iface->all_reduce_sum(comm->ctx, dev, c->count, c->type) == SS_OK, "all_reduce enqueue");
        ss_status st = ss_comm_nccl_wait(comm, 1500, &e);
        CHILD_CHECK(st == SS_ERR_TIMEOUT, "a lost peer gave %s (%s), not a timeout", ss_status_str(st), e.msg);
        CHILD_CHECK(strstr(e.msg, "deadline") != NULL, "timeout message names no deadline: %s", e.msg);
        /* the spinning kernel gave up on the abort: the stream drains (a hang here fails by ctest timeout) */
        cudaError_t q = cudaStreamSynchronize(stream);
        CHILD_CHECK(q == cudaSuccess, "stream after abort: %s", cudaGetErrorString(q));
        st = comm->iface->all_reduce_sum(comm->ctx, dev, c->count, c->type);
        CHILD_CHECK(st == SS_ERR_CANCELLED, "a call after the abort gave %s", ss_status_str(st));
    }
    ss_comm_destroy(comm);
    cudaFree(dev);
    free(host);
    _exit(0);
}

/* Runs both ranks in fresh processes (CUDA must not be initialised before fork). */
static void run_pair(int mode)
{
    int fds[2];
    assert_int_equal(pipe(fds), 0);
    pid_t pid[2];
    for (int r = 0; r < 2; r++) {
        pid[r] = fork();
        assert_true(pid[r] >= 0);
        if (pid[r] == 0)
            child(r, r == 0 ? fds[1] : fds[0], mode);
    }
    close(fds[0]);
    close(fds[1]);
    for (int r = 0; r < 2; r++) {
        int status = 0;
        assert_int_equal(waitpid(pid[r], &status, 0), pid[r]);
        if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
            fail_msg("case %d: rank %d failed (status 0x%x; its message is above)", mode, r, status);
    }
}

static void test_eager_sums(void **state)
{
    (void)state;
    run_pair(0);
}

static void test_fused_add_rmsnorm(void **state)
{
    (void)state;
    run_pair(3);
}

static void test_empty_pattern_in_data(void **state)
{
    (void)state;
    run_pair(4);
}

static void test_graph_replay(void **state)
{
    (void)state;
    run_pair(1);
}

static void test_lost_peer_times_out(void **state)
{
    (void)state;
    run_pair(2);
}

static void test_windows(void **state)
{
    (void)state;
    run_pair(5);
}

/* Counts GPUs in a child, so that this process never initialises CUDA. */
static int gpu_count(void)
{
    pid_t p = fork();
    if (p == 0) {
        int n = 0;
        if (cudaGetDeviceCount(&n) != cudaSuccess)
            n = 0;
        _exit(n > 100 ? 100 : n);
    }
    int status = 0;
    if (p < 0 || waitpid(p, &status, 0) != p || !WIFEXITED(status))
        return 0;
    return WEXITSTATUS(status);
}

int main(void)
{
    if (gpu_count() < 2) {
        fprintf(stderr, "fewer than 2 CUDA devices: the peer all-reduce tests are SKIPPED\n");
        return 0;
    }
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_eager_sums),
        cmocka_unit_test(test_fused_add_rmsnorm),
        cmocka_unit_test(test_empty_pattern_in_data),
        cmocka_unit_test(test_graph_replay),
        cmocka_unit_test(test_lost_peer_times_out),
        cmocka_unit_test(test_windows),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
#else
int main(void)
{
    fprintf(stderr, "a build without CUDA: the peer all-reduce tests are SKIPPED\n");
    return 0;
}
#endif

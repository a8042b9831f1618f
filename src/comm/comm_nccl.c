/* comm_nccl.c — the NCCL communicator behind ss_comm_i, with deadlines. The communicator is
 * non-blocking (ncclConfig_t.blocking = 0): init and enqueues return at once and are polled with
 * ncclCommGetAsyncError against a deadline; a peer that never arrives turns into SS_ERR_TIMEOUT and a
 * stopped communicator (ncclCommAbort follows in destroy, which the replica bounds in time). Collectives are enqueued on the backend's stream and complete in stream order; their
 * completion is awaited (with the same deadline) by ss_comm_nccl_wait, which the runner calls after
 * a step instead of a plain stream sync — never inside CUDA graph capture (it queries the stream).
 *
 * Small all-reduces between ranks of one host may take the one-shot peer-memory kernel instead
 * (peer_allreduce.h); it shares the stream, the deadline (the wait) and the abort.
 *
 * Threading: one owner thread makes the calls; abort() may come from any thread. A mutex guards the
 * ncclComm_t (every NCCL call on it is short in non-blocking mode), so abort never races a call. */
#include <cuda_runtime_api.h>
#include <nccl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "comm/comm.h"
#include "comm/peer_allreduce.h"
#include "core/alloc.h"
#include "core/clock.h"
#include "core/log.h"

#define NC_DEFAULT_TIMEOUT_MS 60000

_Static_assert(sizeof(ncclUniqueId) == 128, "comm.h promises a 128-byte unique id");

typedef struct nc_ctx {
    pthread_mutex_t mu;
    ncclComm_t comm; /* NULL once aborted or destroyed */
    cudaStream_t stream;
    int device;
    int rank, size;
    int timeout_ms;
    atomic_int aborted;
    ss_peer_ar *peer; /* owned: the one-shot all-reduce, or NULL */
    ss_err err; /* detail of the last failure (also logged) */
} nc_ctx;

/* Sleeps *us microseconds and doubles it up to 1 ms (polling backoff). */
static void nc_backoff(long *us)
{
    struct timespec ts = {0, *us * 1000L};
    nanosleep(&ts, NULL);
    if (*us < 1000)
        *us *= 2;
}

static ncclDataType_t nc_type(ss_dtype t, int *ok)
{
    *ok = 1;
    switch (t) {
    case SS_DTYPE_F32: return ncclFloat32;
    case SS_DTYPE_BF16: return ncclBfloat16;
    case SS_DTYPE_F16: return ncclFloat16;
    case SS_DTYPE_I32: return ncclInt32;
    default: *ok = 0; return ncclFloat32;
    }
}

/* With mu held: aborts the communicator once (peers blocked on us then fail instead of hanging). */
static void nc_abort_locked(nc_ctx *c)
{
    atomic_store(&c->aborted, 1);
    ss_peer_ar_abort(c->peer);
    if (c->comm) {
        ncclCommAbort(c->comm);
        c->comm = NULL;
    }
}

/* Stops the communicator without ncclCommAbort (which may block for a long time, and must not run with mu
 * held on the hot path): later calls fail with SS_ERR_CANCELLED and our spinning peer kernels are
 * released. The owner aborts it for real in destroy. Any thread; mu need not be held. */
static void nc_stop(nc_ctx *c)
{
    atomic_store(&c->aborted, 1);
    ss_peer_ar_abort(c->peer);
}

static ss_status nc_fail(nc_ctx *c, ss_status st, const char *what, const char *detail)
{
    ss_err_set(&c->err, st, "nccl rank %d/%d: %s: %s", c->rank, c->size, what, detail);
    SS_LOGE("%s", c->err.msg);
    return st;
}

/* With mu held: settles result r of a non-blocking NCCL call — polls while it is in progress, up to
 * the deadline. Errors stop the communicator (it is unusable); destroy aborts it. */
static ss_status nc_settle_locked(nc_ctx *c, ncclResult_t r, const char *what)
{
    const int64_t deadline = ss_now_ms() + c->timeout_ms;
    long us = 10;
    /* An enqueue in progress usually settles within microseconds: poll without sleeping first (a sleep
     * costs tens of microseconds in a VM, and a decode step enqueues two collectives per layer). */
    for (int spin = 0; r == ncclInProgress && spin < 20000 && c->comm; spin++)
        if (ncclCommGetAsyncError(c->comm, &r) != ncclSuccess)
            r = ncclSystemError;
    while (r == ncclInProgress) {
        pthread_mutex_unlock(&c->mu);
        nc_backoff(&us);
        pthread_mutex_lock(&c->mu);
        if (!c->comm)
            return nc_fail(c, SS_ERR_CANCELLED, what, "communicator aborted");
        if (ncclCommGetAsyncError(c->comm, &r) != ncclSuccess)
            r = ncclSystemError;
        if (r == ncclInProgress && atomic_load(&c->aborted))
            return nc_fail(c, SS_ERR_CANCELLED, what, "communicator stopped");
        if (r == ncclInProgress && ss_now_ms() > deadline) {
            nc_stop(c);
            return nc_fail(c, SS_ERR_TIMEOUT, what, "did not complete before the deadline; communicator stopped");
        }
    }
    if (r != ncclSuccess) {
        char detail[512];
        snprintf(detail, sizeof detail, "%s (%s)", ncclGetErrorString(r), c->comm ? ncclGetLastError(c->comm) : "");
        nc_stop(c);
        return nc_fail(c, SS_ERR_COMM, what, detail);
    }
    return SS_OK;
}

/* Takes mu and checks the communicator is alive. On SS_OK the caller holds mu. */
static ss_status nc_enter(nc_ctx *c, const char *what)
{
    pthread_mutex_lock(&c->mu);
    if (!c->comm || atomic_load(&c->aborted)) {
        pthread_mutex_unlock(&c->mu);
        return nc_fail(c, SS_ERR_CANCELLED, what, "communicator aborted");
    }
    cudaError_t e = cudaSetDevice(c->device);
    if (e != cudaSuccess) {
        pthread_mutex_unlock(&c->mu);
        return nc_fail(c, SS_ERR_CUDA, what, cudaGetErrorString(e));
    }
    return SS_OK;
}

/* Finishes a call begun with nc_enter: settles r and releases mu. */
static ss_status nc_leave(nc_ctx *c, ncclResult_t r, const char *what)
{
    ss_status st = nc_settle_locked(c, r, what);
    pthread_mutex_unlock(&c->mu);
    return st;
}

static ss_status nc_check_type(nc_ctx *c, ss_dtype t, ncclDataType_t *out, const char *what)
{
    int ok;
    *out = nc_type(t, &ok);
    if (!ok)
        return nc_fail(c, SS_ERR_INVALID_ARG, what, "unsupported element type");
    return SS_OK;
}

static ss_status nc_all_reduce_sum(void *ctx, void *buf, int64_t count, ss_dtype type)
{
    nc_ctx *c = ctx;
    ncclDataType_t t;
    if (type != SS_DTYPE_F32 && type != SS_DTYPE_BF16)
        return nc_fail(c, SS_ERR_INVALID_ARG, "all_reduce_sum", "type must be f32 or bf16");
    SS_CHECK(nc_check_type(c, type, &t, "all_reduce_sum"));
    if (count <= 0)
        return SS_OK;
    SS_CHECK(nc_enter(c, "all_reduce_sum"));
    if (ss_peer_ar_fits(c->peer, buf, count, type)) {
        ss_err e;
        ss_status st = ss_peer_ar_all_reduce(c->peer, buf, count, type, c->stream, &e);
        pthread_mutex_unlock(&c->mu);
        return st == SS_OK ? SS_OK : nc_fail(c, st, "all_reduce_sum", e.msg);
    }
    return nc_leave(c, ncclAllReduce(buf, buf, (size_t)count, t, ncclSum, c->comm, c->stream), "all_reduce_sum");
}

static ss_status nc_all_reduce_add_rmsnorm(void *ctx, void *x, void *residual, void *out, const void *w, int64_t rows,
                                           int32_t dim, float eps, ss_dtype type)
{
    nc_ctx *c = ctx;
    if (!ss_peer_ar_fits_add_rmsnorm(c->peer, x, residual, out, w, rows, dim, type))
        return SS_ERR_UNSUPPORTED;
    SS_CHECK(nc_enter(c, "all_reduce_add_rmsnorm"));
    ss_err e;
    ss_status st = ss_peer_ar_all_reduce_add_rmsnorm(c->peer, x, residual, out, w, rows, dim, eps, c->stream, &e);
    pthread_mutex_unlock(&c->mu);
    return st == SS_OK ? SS_OK : nc_fail(c, st, "all_reduce_add_rmsnorm", e.msg);
}

_Static_assert(SS_COMM_WINDOW_MAX_RANKS == SS_PEER_AR_MAX_RANKS, "a window per peer all-reduce rank");

static ss_status nc_window(void *ctx, size_t bytes, int want, ss_comm_window *out)
{
    nc_ctx *c = ctx;
    if (!c->peer) /* no peer group: the same on every rank */
        return SS_ERR_UNSUPPORTED;
    memset(out, 0, sizeof *out);
    ss_err e = {0};
    ss_status st = ss_peer_ar_window(c->peer, bytes, want, out->base, &out->abort_flag, &e);
    if (st == SS_ERR_UNSUPPORTED)
        SS_LOGW("nccl rank %d: %s", c->rank, e.msg);
    else if (st != SS_OK)
        return nc_fail(c, st, "window", e.msg);
    out->rank = c->rank, out->size = c->size, out->bytes = bytes;
    return st;
}

static ss_status nc_all_gather(void *ctx, void *out, const void *in, int64_t count, ss_dtype type)
{
    nc_ctx *c = ctx;
    ncclDataType_t t;
    SS_CHECK(nc_check_type(c, type, &t, "all_gather"));
    if (count <= 0)
        return SS_OK;
    SS_CHECK(nc_enter(c, "all_gather"));
    return nc_leave(c, ncclAllGather(in, out, (size_t)count, t, c->comm, c->stream), "all_gather");
}

static ss_status nc_broadcast(void *ctx, void *buf, int64_t count, ss_dtype type, int root)
{
    nc_ctx *c = ctx;
    ncclDataType_t t;
    SS_CHECK(nc_check_type(c, type, &t, "broadcast"));
    if (root < 0 || root >= c->size)
        return nc_fail(c, SS_ERR_INVALID_ARG, "broadcast", "root out of range");
    if (count <= 0)
        return SS_OK;
    SS_CHECK(nc_enter(c, "broadcast"));
    return nc_leave(c, ncclBroadcast(buf, buf, (size_t)count, t, root, c->comm, c->stream), "broadcast");
}

static ss_status nc_send(void *ctx, const void *buf, int64_t count, ss_dtype type, int peer)
{
    nc_ctx *c = ctx;
    ncclDataType_t t;
    SS_CHECK(nc_check_type(c, type, &t, "send"));
    if (peer < 0 || peer >= c->size || peer == c->rank)
        return nc_fail(c, SS_ERR_INVALID_ARG, "send", "peer out of range");
    if (count <= 0)
        return SS_OK;
    SS_CHECK(nc_enter(c, "send"));
    return nc_leave(c, ncclSend(buf, (size_t)count, t, peer, c->comm, c->stream), "send");
}

static ss_status nc_recv(void *ctx, void *buf, int64_t count, ss_dtype type, int peer)
{
    nc_ctx *c = ctx;
    ncclDataType_t t;
    SS_CHECK(nc_check_type(c, type, &t, "recv"));
    if (peer < 0 || peer >= c->size || peer == c->rank)
        return nc_fail(c, SS_ERR_INVALID_ARG, "recv", "peer out of range");
    if (count <= 0)
        return SS_OK;
    SS_CHECK(nc_enter(c, "recv"));
    return nc_leave(c, ncclRecv(buf, (size_t)count, t, peer, c->comm, c->stream), "recv");
}

static void nc_abort(void *ctx)
{
    nc_ctx *c = ctx;
    pthread_mutex_lock(&c->mu);
    if (c->comm)
        SS_LOGW("nccl rank %d/%d: aborting communicator", c->rank, c->size);
    nc_abort_locked(c);
    pthread_mutex_unlock(&c->mu);
}

static void nc_destroy(void *ctx)
{
    nc_ctx *c = ctx;
    if (!c)
        return;
    pthread_mutex_lock(&c->mu);
    if (c->comm && atomic_load(&c->aborted)) /* stopped: no finalize (it would wait for the peers) */
        nc_abort_locked(c);
    /* The stream is idle here: a healthy owner waited for its last step, and a stopped one's spinning
     * kernels were released (ss_peer_ar_abort) and the NCCL ones by the abort above. The owner may have
     * destroyed the stream already (with the backend): it is not touched. */
    ss_peer_ar_destroy(c->peer);
    c->peer = NULL;
    if (c->comm) {
        /* Finalize flushes outstanding work and waits for the peers' finalize, and for NCCL work captured
         * in CUDA graphs to be released (destroy the graphs first); if peers are gone it cannot, and a
         * deadline (shorter than a collective's: nothing is left to flush) aborts. */
        cudaSetDevice(c->device);
        if (c->timeout_ms > 10000)
            c->timeout_ms = 10000;
        ss_status st = nc_settle_locked(c, ncclCommFinalize(c->comm), "finalize");
        if (st == SS_OK && c->comm) {
            ncclCommDestroy(c->comm);
            c->comm = NULL;
        } else {
            nc_abort_locked(c);
        }
    }
    pthread_mutex_unlock(&c->mu);
    pthread_mutex_destroy(&c->mu);
    ss_free(c);
}

static ss_status nc_wait(nc_ctx *c, int timeout_ms, ss_err *err);

/* All-gather of host bytes (a multiple of 4) through a temporary device buffer: the peer all-reduce's
 * setup exchange. Not during graph capture. */
static ss_status nc_exchange(void *ctx, void *out, const void *in, size_t bytes)
{
    nc_ctx *c = ctx;
    char *d = NULL;
    size_t total = bytes * (size_t)(c->size + 1);
    if (bytes % 4 || cudaMalloc((void **)&d, total) != cudaSuccess) {
        cudaGetLastError();
        return nc_fail(c, SS_ERR_NOMEM, "exchange", "no device buffer");
    }
    ss_err e;
    ss_status st = SS_OK;
    if (cudaMemcpyAsync(d + bytes * (size_t)c->size, in, bytes, cudaMemcpyHostToDevice, c->stream) != cudaSuccess)
        st = nc_fail(c, SS_ERR_CUDA, "exchange", "copy to the device");
    if (st == SS_OK)
        st = nc_all_gather(c, d, d + bytes * (size_t)c->size, (int64_t)(bytes / 4), SS_DTYPE_I32);
    if (st == SS_OK && (st = nc_wait(c, 0, &e)) != SS_OK)
        nc_fail(c, st, "exchange", e.msg);
    if (st == SS_OK && cudaMemcpy(out, d, bytes * (size_t)c->size, cudaMemcpyDeviceToHost) != cudaSuccess)
        st = nc_fail(c, SS_ERR_CUDA, "exchange", "copy from the device");
    cudaFree(d);
    cudaGetLastError();
    return st;
}

static const ss_comm_i nc_iface = {
    .version = SS_COMM_IFACE_VERSION,
    .name = "nccl",
    .all_reduce_sum = nc_all_reduce_sum,
    .all_reduce_add_rmsnorm = nc_all_reduce_add_rmsnorm,
    .window = nc_window,
    .all_gather = nc_all_gather,
    .broadcast = nc_broadcast,
    .send = nc_send,
    .recv = nc_recv,
    .abort = nc_abort,
    .destroy = nc_destroy,
};

ss_status ss_comm_nccl_unique_id(void *unique_id128, ss_err *err)
{
    ncclUniqueId id;
    ncclResult_t r = ncclGetUniqueId(&id);
    if (r != ncclSuccess)
        return ss_err_set(err, SS_ERR_COMM, "ncclGetUniqueId: %s", ncclGetErrorString(r));
    memcpy(unique_id128, &id, sizeof id);
    return SS_OK;
}

ss_status ss_comm_nccl_create(int rank, int size, const void *unique_id, void *stream, int device_index,
                              int timeout_ms, unsigned flags, ss_comm **out, ss_err *err)
{
    *out = NULL;
    if (size < 1 || rank < 0 || rank >= size || !unique_id || !stream || device_index < 0)
        return ss_err_set(err, SS_ERR_INVALID_ARG, "nccl: bad arguments (rank %d of %d, device %d, stream %p)", rank,
                          size, device_index, stream);
    cudaError_t ce = cudaSetDevice(device_index);
    if (ce != cudaSuccess)
        return ss_err_set(err, SS_ERR_CUDA, "nccl rank %d/%d: cudaSetDevice(%d): %s", rank, size, device_index,
                          cudaGetErrorString(ce));
    nc_ctx *c = ss_calloc(1, sizeof *c);
    ss_comm *comm = ss_calloc(1, sizeof *comm);
    if (!c || !comm) {
        ss_free(c);
        ss_free(comm);
        return ss_err_set(err, SS_ERR_NOMEM, "nccl: out of memory");
    }
    pthread_mutex_init(&c->mu, NULL);
    c->stream = (cudaStream_t)stream;
    c->device = device_index;
    c->rank = rank;
    c->size = size;
    c->timeout_ms = timeout_ms > 0 ? timeout_ms : NC_DEFAULT_TIMEOUT_MS;
    atomic_init(&c->aborted, 0);

    /* Decode steps capture their collectives in CUDA graphs; a connection NCCL would set up lazily
     * inside a capture (allocations, host synchronisation) breaks it. Connect everything at init
     * instead, unless the operator chose otherwise. (NCCL reads its settings from the environment.) */
    setenv("NCCL_RUNTIME_CONNECT", "0", 0);
    ncclUniqueId id;
    memcpy(&id, unique_id, sizeof id);
    ncclConfig_t cfg = NCCL_CONFIG_INITIALIZER;
    cfg.blocking = 0;
    pthread_mutex_lock(&c->mu);
    ncclResult_t r = ncclCommInitRankConfig(&c->comm, size, id, rank, &cfg);
    if (r != ncclSuccess && r != ncclInProgress) {
        /* the comm may or may not exist: abort what there is */
        char detail[256];
        snprintf(detail, sizeof detail, "%s", ncclGetErrorString(r));
        nc_abort_locked(c);
        pthread_mutex_unlock(&c->mu);
        ss_err_set(err, SS_ERR_COMM, "nccl rank %d/%d: ncclCommInitRankConfig: %s", rank, size, detail);
        nc_destroy(c);
        ss_free(comm);
        return SS_ERR_COMM;
    }
    ss_status st = nc_settle_locked(c, r, "init (are all ranks started, with the same unique id?)");
    pthread_mutex_unlock(&c->mu);
    if (st != SS_OK) {
        if (err)
            memcpy(err->msg, c->err.msg, sizeof err->msg);
        nc_destroy(c);
        ss_free(comm);
        return st;
    }
    if ((flags & SS_NCCL_PEER_ALLREDUCE) && size > 1 && size <= SS_PEER_AR_MAX_RANKS) {
        st = ss_peer_ar_create(rank, size, device_index, nc_exchange, c, &c->peer, err);
        if (st != SS_OK) {
            nc_destroy(c);
            ss_free(comm);
            return st;
        }
    }
    comm->iface = &nc_iface;
    comm->ctx = c;
    comm->rank = rank;
    comm->size = size;
    SS_LOGI("nccl rank %d/%d on cuda:%d ready (NCCL %d.%d.%d)", rank, size, device_index, NCCL_MAJOR, NCCL_MINOR,
            NCCL_PATCH);
    *out = comm;
    return SS_OK;
}

/* One look at the communicator: SS_OK while it runs; SS_ERR_CANCELLED once stopped or aborted ("<state>"
 * names when), or the NCCL error (which stops it). */
static ss_status nc_health(nc_ctx *c, const char *state, ss_err *err)
{
    pthread_mutex_lock(&c->mu);
    if (!c->comm || atomic_load(&c->aborted)) {
        pthread_mutex_unlock(&c->mu);
        return ss_err_set(err, SS_ERR_CANCELLED, "nccl rank %d/%d: communicator %s", c->rank, c->size, state);
    }
    ncclResult_t r = ncclSuccess;
    if (ncclCommGetAsyncError(c->comm, &r) != ncclSuccess)
        r = ncclSystemError;
    if (r != ncclSuccess && r != ncclInProgress) {
        ss_status st = nc_settle_locked(c, r, "collective"); /* stops, fills c->err */
        pthread_mutex_unlock(&c->mu);
        return ss_err_set(err, st, "%s", c->err.msg);
    }
    pthread_mutex_unlock(&c->mu);
    return SS_OK;
}

/* A step's deadline passed: stops the communicator and says so. */
static ss_status nc_step_timeout(nc_ctx *c, ss_err *err)
{
    nc_stop(c);
    nc_fail(c, SS_ERR_TIMEOUT, "step", "collectives did not complete before the deadline (peer lost?); "
                                      "communicator stopped");
    return ss_err_set(err, SS_ERR_TIMEOUT, "%s", c->err.msg);
}

/* Waits for the stream with the deadline; see ss_comm_nccl_wait. */
static ss_status nc_wait(nc_ctx *c, int timeout_ms, ss_err *err)
{
    const int64_t deadline = ss_now_ms() + (timeout_ms > 0 ? timeout_ms : c->timeout_ms);
    long us = 5;
    for (;;) {
        SS_CHECK(nc_health(c, "stopped or aborted", err));
        cudaError_t q = cudaStreamQuery(c->stream);
        /* Spin for the length of a typical step before backing off: the step's end is on the
         * critical path of every decode token. */
        for (int64_t spin_until = ss_now_ms() + 50; q == cudaErrorNotReady && ss_now_ms() < spin_until;)
            q = cudaStreamQuery(c->stream);
        if (q == cudaSuccess)
            return SS_OK;
        if (q != cudaErrorNotReady) { /* a kernel of the step faulted (sticky: the context is lost) */
            nc_stop(c);
            nc_fail(c, SS_ERR_CUDA, "step", cudaGetErrorString(q));
            return ss_err_set(err, SS_ERR_CUDA, "%s", c->err.msg);
        }
        if (atomic_load(&c->aborted))
            return ss_err_set(err, SS_ERR_CANCELLED, "nccl rank %d/%d: communicator stopped while waiting", c->rank,
                              c->size);
        if (ss_now_ms() > deadline)
            return nc_step_timeout(c, err);
        nc_backoff(&us);
    }
}

ss_status ss_comm_nccl_check(ss_comm *comm, int64_t started_ms, ss_err *err)
{
    if (!comm || !comm->iface || strcmp(comm->iface->name, "nccl") != 0)
        return ss_err_set(err, SS_ERR_INVALID_ARG, "ss_comm_nccl_check: not an NCCL communicator");
    nc_ctx *c = comm->ctx;
    SS_CHECK(nc_health(c, "stopped while waiting", err));
    if (started_ms >= 0 && ss_now_ms() > started_ms + c->timeout_ms)
        return nc_step_timeout(c, err);
    return SS_OK;
}

ss_status ss_comm_nccl_wait(ss_comm *comm, int timeout_ms, ss_err *err)
{
    if (!comm || !comm->iface || strcmp(comm->iface->name, "nccl") != 0)
        return ss_err_set(err, SS_ERR_INVALID_ARG, "ss_comm_nccl_wait: not an NCCL communicator");
    return nc_wait(comm->ctx, timeout_ms, err);
}

int ss_comm_nccl_peer_allreduce(const ss_comm *comm)
{
    if (!comm || !comm->iface || strcmp(comm->iface->name, "nccl") != 0)
        return 0;
    return ((const nc_ctx *)comm->ctx)->peer != NULL;
}

void ss_comm_nccl_stop(ss_comm *comm)
{
    if (!comm || !comm->iface || strcmp(comm->iface->name, "nccl") != 0)
        return;
    nc_stop(comm->ctx); /* no lock: abort and the calls read the flag atomically */
}

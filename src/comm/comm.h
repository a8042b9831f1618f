/* comm.h — collectives between the ranks of one group (DESIGN.md §4): a table that nccl and tcp fill.
 * Every call has a deadline: a dead or hung peer becomes SS_ERR_TIMEOUT / SS_ERR_COMM, never a hang. */
#ifndef SS_COMM_H
#define SS_COMM_H

#include <stddef.h>
#include <stdint.h>

#include "core/dtype.h"
#include "core/status.h"

#define SS_COMM_IFACE_VERSION 4 /* 2: all_reduce_add_rmsnorm; 3: window; 4: failed_peer */

/* How a call failed on a peer (ss_comm_i.failed_peer). */
typedef enum ss_comm_blame {
    SS_COMM_PEER_CLOSED = 1, /* its connection closed or was reset: its process is gone, or it gave up */
    SS_COMM_PEER_SILENT,     /* it sent nothing (or took nothing) before the call's deadline: hung, or stopped */
} ss_comm_blame;

/*
 * Buffers are device buffers of the rank's backend (host memory for the cpu backend). Calls are
 * issued on the backend's stream where there is one (nccl) and complete in stream order; tcp calls
 * complete before they return. All ranks of the group must make the same calls in the same order.
 * Ranks here are ranks within the communicator (0 .. size-1), not replica-wide ranks.
 */
#define SS_COMM_WINDOW_MAX_RANKS 8

/* Device memory of every rank of a group that every rank maps (peer memory between the GPUs of one
 * host), for kernels that exchange data among themselves (the persistent decode kernel at tp > 1).
 * Every pointer is owned by the communicator and stays valid until it is destroyed. */
typedef struct ss_comm_window {
    int rank, size;
    void *base[SS_COMM_WINDOW_MAX_RANKS]; /* rank r's window, as this rank's device addresses it */
    size_t bytes;                         /* of each window */
    const volatile int *abort_flag;       /* device-readable; nonzero once the communicator is stopped: a
                                           * kernel spinning on a peer then gives up (its results are garbage) */
} ss_comm_window;

typedef struct ss_comm_i {
    uint32_t version;
    const char *name;
    /* In-place sum over all ranks of `count` elements of `type` (f32 or bf16). */
    ss_status (*all_reduce_sum)(void *ctx, void *buf, int64_t count, ss_dtype type);
    /* out[r * count .. ] = in of rank r, for every rank r (out holds size * count elements). */
    ss_status (*all_gather)(void *ctx, void *out, const void *in, int64_t count, ss_dtype type);
    /* buf of `root` is copied to every rank. */
    ss_status (*broadcast)(void *ctx, void *buf, int64_t count, ss_dtype type, int root);
    /* Point-to-point (pipeline activations). */
    ss_status (*send)(void *ctx, const void *buf, int64_t count, ss_dtype type, int peer);
    ss_status (*recv)(void *ctx, void *buf, int64_t count, ss_dtype type, int peer);
    /* Optional (NULL: not offered): all_reduce_sum of x [rows, dim] fused with the residual add and
     * RMSNorm that follow it in a decoder layer, with the backend's add_rmsnorm semantics: residual +=
     * sum, out = rmsnorm(residual) * w (x itself need not receive the sum). Returns SS_ERR_UNSUPPORTED,
     * with nothing enqueued, for shapes it does not take — the same on every rank — and the caller then
     * runs all_reduce_sum and add_rmsnorm. */
    ss_status (*all_reduce_add_rmsnorm)(void *ctx, void *x, void *residual, void *out, const void *w, int64_t rows,
                                        int32_t dim, float eps, ss_dtype type);
    /* Optional (NULL: not offered): allocates a window of `bytes` on every rank, every byte 0xff, that
     * every rank maps, and fills *out. Collective, whatever `want` says: a rank that does not want the
     * window (want 0: its settings keep it from using one) still takes part, and then no rank gets one.
     * SS_ERR_UNSUPPORTED on every rank alike then, and where the ranks cannot map each other's memory
     * (other hosts, no peer access, SS_PEER_ALLREDUCE=0). */
    ss_status (*window)(void *ctx, size_t bytes, int want, ss_comm_window *out);
    /* Optional (NULL: not known, as with NCCL): after the last call failed, the rank (of this communicator) it
     * failed on, with *how; -1 when it blames no peer (it succeeded, was aborted, or failed locally). */
    int (*failed_peer)(void *ctx, ss_comm_blame *how);
    /* Aborts outstanding and future calls (they return SS_ERR_CANCELLED); safe from another thread. */
    void (*abort)(void *ctx);
    void (*destroy)(void *ctx);
} ss_comm_i;

typedef struct ss_comm {
    const ss_comm_i *iface;
    void *ctx;
    int rank;
    int size;
} ss_comm;

/* Releases c (NULL is fine). */
void ss_comm_destroy(ss_comm *c);
/* After a failure: makes c unusable at once without waiting on peers (NCCL: ss_comm_nccl_stop, the
 * abort proper follows in destroy; others: abort). NULL is fine. */
void ss_comm_stop(ss_comm *c);
/* Destroys a and b (either may be NULL; ownership passes in) on a helper thread, aborting both first
 * when abort_first (after a failure), and waits at most timeout_ms. Returns 1 when done; 0 when it is
 * still stuck (in a driver or NCCL call): the communicators — and whatever device memory their pending
 * work uses — are then left to the exiting process, so the caller must not free that memory. */
int ss_comm_destroy_bounded(ss_comm *a, ss_comm *b, int abort_first, int timeout_ms);

/* A communicator of one rank: collectives are identities (copies). */
ss_status ss_comm_create_single(ss_comm **out, ss_err *err);

/* TCP communicator over already-connected sockets: fds[r] is a connected stream socket to rank r
 * (fds[rank] unused). Takes ownership of the fds. timeout_ms bounds every call. */
ss_status ss_comm_tcp_create(int rank, int size, const int *fds, int timeout_ms, ss_comm **out, ss_err *err);

#ifdef SS_HAVE_CUDA
/* Flags of ss_comm_nccl_create. PEER_ALLREDUCE: small all-reduces (≤ 512 KiB) between ranks of one
 * host go through a one-shot kernel over CUDA peer memory (comm/peer_allreduce.h) instead of NCCL,
 * when every rank can map every other's memory (the ranks agree; SS_PEER_ALLREDUCE=0 turns it off). */
#define SS_NCCL_PEER_ALLREDUCE 1u

/* NCCL communicator: unique_id is the 128-byte ncclUniqueId the leader handed out; stream is the
 * backend's native stream. timeout_ms: a call that does not complete in time stops the communicator
 * (see ss_comm_nccl_stop) and returns SS_ERR_TIMEOUT. Collective: every rank passes the same flags. */
ss_status ss_comm_nccl_create(int rank, int size, const void *unique_id, void *stream, int device_index,
                              int timeout_ms, unsigned flags, ss_comm **out, ss_err *err);
/* Stops c without waiting for anything: its own spinning kernels (the peer all-reduce) give up and
 * later calls fail with SS_ERR_CANCELLED. Unlike abort it does not call ncclCommAbort, which may wait
 * for peers that are still alive — call abort (or destroy) once they are gone. Any thread; a no-op
 * for communicators other than NCCL's. */
void ss_comm_nccl_stop(ss_comm *c);
/* Whether small all-reduces of c take the one-shot peer-memory kernel (0 for other communicators). */
int ss_comm_nccl_peer_allreduce(const ss_comm *c);
/* Fills the 128-byte unique id (leader). */
ss_status ss_comm_nccl_unique_id(void *unique_id128, ss_err *err);
/* Waits until the stream the communicator enqueues on is idle (all of the step's work, collectives
 * included), polling ncclCommGetAsyncError; past timeout_ms (<= 0: the create-time timeout) the
 * communicator is aborted and SS_ERR_TIMEOUT returned. NCCL calls only enqueue: the runner calls this
 * after a step instead of a plain sync, so a lost peer cannot hang it. Not during graph capture. */
ss_status ss_comm_nccl_wait(ss_comm *c, int timeout_ms, ss_err *err);
/* One look at the communicator while the caller polls for a step of its own (an event) instead of
 * ss_comm_nccl_wait: SS_OK while it runs and ss_now_ms() is within the create-time timeout of started_ms
 * (started_ms < 0: no deadline); otherwise the error (stopped, a NCCL error, or SS_ERR_TIMEOUT after stopping
 * it, as ss_comm_nccl_wait). */
ss_status ss_comm_nccl_check(ss_comm *c, int64_t started_ms, ss_err *err);
#endif

#endif

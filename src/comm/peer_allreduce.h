/* peer_allreduce.h — one-shot all-reduce for small messages between the GPUs of one host, over CUDA
 * peer memory (IPC handles), behind the NCCL communicator: one kernel, no proxy thread, no protocol. */
#ifndef SS_PEER_ALLREDUCE_H
#define SS_PEER_ALLREDUCE_H

#include <stddef.h>
#include <stdint.h>

#include "core/dtype.h"
#include "core/status.h"

#define SS_PEER_AR_MAX_RANKS 8
#define SS_PEER_AR_CHUNK (16 * 1024)                                   /* bytes one block reduces */
#define SS_PEER_AR_MAX_BLOCKS 32
#define SS_PEER_AR_MAX_BYTES (SS_PEER_AR_CHUNK * SS_PEER_AR_MAX_BLOCKS) /* larger messages go to NCCL */

#define SS_PEER_AR_EMPTY_BYTE 0xff    /* an inbox no peer has written yet holds only these bytes */

/*
 * Each rank owns one device region of inboxes that every peer maps: [2 sets][size][MAX_BYTES] (peer r
 * writes its input into slot r). A call: every block copies its chunk of the input into the same chunk of
 * slot `rank` of every rank's inbox, waits until every peer's chunk arrived, and sums the slots in rank
 * order — every rank gets bit-identical results. Per-block epoch counters live in device memory and are
 * advanced by the kernel itself, so calls replay from CUDA graphs; epoch e uses set e % 2 (which stays
 * alternating when the 32-bit counter wraps).
 *
 * Arrival is recognised by content: inboxes start empty (every byte EMPTY_BYTE, a NaN pattern that the
 * sender never sends: it sends another NaN instead). A reader polls each 16-byte vector until no lane is
 * empty, and empties it again after reading. No fence, no flag: data is its own signal; a torn vector
 * only looks empty a little longer (vector accesses are atomic per 32-bit word). A set is written again
 * two epochs later: a rank can only write epoch e+1 after every peer pushed epoch e, which each does
 * after its kernel of epoch e−1 — the last reader (and emptier) of that set — has completed. This rests
 * on every kernel of the stream being PDL-launched with a wait before it touches its predecessor's
 * output (backend/cuda/common.cuh), so a kernel completes only after all earlier ones have.
 * (Sessions 3-9 signalled arrival with per-block flags after a system fence instead; arrival by content
 * measured 3.9% faster at tp 2 batch 1 on two H200s in session 10, and 2% at tp 4 in session 12, with the
 * same tokens, and replaced it.)
 */
typedef struct ss_peer_ar_view {
    int rank, size;
    char *inbox[SS_PEER_AR_MAX_RANKS];     /* rank r's inboxes, mapped here */
    uint32_t *epoch;                       /* this rank's per-block counters (device) */
    const volatile int *abort_flag;        /* host-mapped: set on abort, spinning kernels give up */
    int no_pdl;                            /* ordinary launches (SS_PEER_AR_NO_PDL, a benchmark switch) */
} ss_peer_ar_view;

/* Bytes of the per-rank region of inboxes for `size` ranks. */
size_t ss_peer_ar_region_bytes(int size);

#ifdef __cplusplus
extern "C" {
#endif
/* Enqueues the all-reduce of buf (bf16 or f32; bytes a multiple of 16, at most MAX_BYTES, buf 16-byte
 * aligned) on stream. Returns a cudaError_t (0 = launched). */
int ss_peer_ar_launch(const ss_peer_ar_view *v, void *buf, int64_t count, ss_dtype type, void *stream);
/* The all-reduce of bf16 rows x [rows, dim] fused with the residual add and RMSNorm that follow it:
 * residual += sum (rounded to bf16), out = rmsnorm(residual) * w; x is left as it was. dim % 8 == 0,
 * dim * 2 <= CHUNK, rows within MAX_BLOCKS blocks of whole rows; buffers 16-byte aligned. */
int ss_peer_ar_launch_add_rmsnorm(const ss_peer_ar_view *v, void *x, void *residual, void *out, const void *w,
                                  int64_t rows, int32_t dim, float eps, void *stream);
#ifdef __cplusplus
}
#endif

/* The host side. All-gather over the group, of host bytes (the communicator's own primitive): setup
 * exchanges IPC handles and identities with it. */
typedef ss_status (*ss_peer_ar_exchange_fn)(void *ctx, void *out, const void *in, size_t bytes);

typedef struct ss_peer_ar ss_peer_ar;

/* Collective: every rank of the group calls it. On SS_OK, *out is a working one-shot all-reduce, or
 * NULL when the ranks cannot use one (different hosts, no peer access, a rank failed to map): all
 * ranks then agree on NULL and the caller uses NCCL. Errors are only exchange failures. */
ss_status ss_peer_ar_create(int rank, int size, int device, ss_peer_ar_exchange_fn exchange, void *exchange_ctx,
                            ss_peer_ar **out, ss_err *err);
/* Whether a call of count elements of type at buf goes the one-shot way. */
int ss_peer_ar_fits(const ss_peer_ar *p, const void *buf, int64_t count, ss_dtype type);
/* Whether all_reduce_add_rmsnorm takes rows x dim of bf16 at these addresses. */
int ss_peer_ar_fits_add_rmsnorm(const ss_peer_ar *p, const void *x, const void *residual, const void *out,
                                const void *w, int64_t rows, int32_t dim, ss_dtype type);
/* Enqueues the fused all-reduce + residual add + RMSNorm (see ss_peer_ar_launch_add_rmsnorm). */
ss_status ss_peer_ar_all_reduce_add_rmsnorm(ss_peer_ar *p, void *x, void *residual, void *out, const void *w,
                                            int64_t rows, int32_t dim, float eps, void *stream, ss_err *err);
/* Enqueues the all-reduce on stream (cudaStream_t). */
ss_status ss_peer_ar_all_reduce(ss_peer_ar *p, void *buf, int64_t count, ss_dtype type, void *stream, ss_err *err);
/* Collective: a window of `bytes` on every rank (every byte SS_PEER_AR_EMPTY_BYTE) that every rank maps:
 * base[r] is rank r's, as this rank addresses it; *abort_flag the flag that ss_peer_ar_abort sets. The
 * memory is p's (freed by destroy); at most SS_PEER_AR_MAX_WINDOWS per p. want 0: this rank takes part
 * without allocating, and every rank gets SS_ERR_UNSUPPORTED, as where one rank could not set its
 * window up; other errors are exchange failures. */
#define SS_PEER_AR_MAX_WINDOWS 4
ss_status ss_peer_ar_window(ss_peer_ar *p, size_t bytes, int want, void *base[SS_PEER_AR_MAX_RANKS],
                            const volatile int **abort_flag, ss_err *err);
/* Makes spinning kernels give up (their results are garbage; the caller reports the abort). Any thread. */
void ss_peer_ar_abort(ss_peer_ar *p);
void ss_peer_ar_destroy(ss_peer_ar *p);

#endif

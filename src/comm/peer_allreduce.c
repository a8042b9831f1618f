/* peer_allreduce.c — setup of the one-shot peer-memory all-reduce: allocates this rank's region,
 * exchanges IPC handles and host identities, maps the peers', and agrees with every rank to use it. */
#include "comm/peer_allreduce.h"

#include <cuda_runtime_api.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/alloc.h"
#include "core/log.h"

struct ss_peer_ar {
    ss_peer_ar_view v;                  /* what the kernel gets */
    void *region;                       /* owned: this rank's inboxes (cudaMalloc) */
    void *mapped[SS_PEER_AR_MAX_RANKS]; /* owned: peers' regions opened here (NULL for self) */
    int *abort_host;                    /* owned: cudaHostAlloc, mapped into the kernel */
    int device;
    ss_peer_ar_exchange_fn exchange;    /* the group's host all-gather (windows are set up with it) */
    void *exchange_ctx;
    int n_windows;
    void *win[SS_PEER_AR_MAX_WINDOWS];                             /* owned: this rank's windows */
    void *win_mapped[SS_PEER_AR_MAX_WINDOWS][SS_PEER_AR_MAX_RANKS]; /* owned: peers' windows opened here */
};

/* What each rank tells the others about a window it allocated. */
typedef struct par_win_ident {
    int32_t ok;
    int32_t pad;
    cudaIpcMemHandle_t handle;
} par_win_ident;

_Static_assert(sizeof(par_win_ident) % 4 == 0, "exchanged in 32-bit words");

/* What each rank tells the others. Sizes are multiples of 4 (the exchange moves 32-bit words). */
typedef struct par_ident {
    uint64_t host;   /* hash of the host name and boot id: ranks on one host agree */
    int32_t ok;      /* this rank has its region and handle */
    int32_t device;  /* for messages */
    int32_t pad;
    char bus[32];    /* PCI bus id of its GPU */
    cudaIpcMemHandle_t handle;
} par_ident;

_Static_assert(sizeof(par_ident) % 4 == 0, "exchanged in 32-bit words");

size_t ss_peer_ar_region_bytes(int size)
{
    return 2 * (size_t)size * SS_PEER_AR_MAX_BYTES;
}

/* FNV-1a over the host name and the kernel's boot id: two containers on one node that may share GPU
 * memory see the same boot id but (in Kubernetes) different host names — they keep using NCCL. */
static uint64_t par_host_id(void)
{
    char buf[512] = {0};
    gethostname(buf, 255);
    FILE *f = fopen("/proc/sys/kernel/random/boot_id", "r");
    if (f) {
        size_t n = strlen(buf);
        if (fgets(buf + n, (int)(sizeof buf - n), f) == NULL)
            buf[n] = 0;
        fclose(f);
    }
    uint64_t h = 1469598103934665603ull;
    for (const char *p = buf; *p; p++)
        h = (h ^ (uint8_t)*p) * 1099511628211ull;
    return h;
}

static void par_release(ss_peer_ar *p)
{
    for (int w = 0; w < SS_PEER_AR_MAX_WINDOWS; w++) {
        for (int r = 0; r < SS_PEER_AR_MAX_RANKS; r++)
            if (p->win_mapped[w][r])
                cudaIpcCloseMemHandle(p->win_mapped[w][r]);
        if (p->win[w])
            cudaFree(p->win[w]);
    }
    for (int r = 0; r < SS_PEER_AR_MAX_RANKS; r++)
        if (p->mapped[r])
            cudaIpcCloseMemHandle(p->mapped[r]);
    if (p->v.epoch)
        cudaFree(p->v.epoch);
    if (p->region)
        cudaFree(p->region);
    if (p->abort_host)
        cudaFreeHost(p->abort_host);
    ss_free(p);
}

/* This rank's half of the setup; returns 0 with a log line saying why when it cannot take part. */
static int par_prepare(ss_peer_ar *p, int size, par_ident *me)
{
    cudaError_t e;
    const char *what = "cudaSetDevice";
    if ((e = cudaSetDevice(p->device)) != cudaSuccess)
        goto fail;
    what = "allocating the peer all-reduce region";
    size_t bytes = ss_peer_ar_region_bytes(size);
    if ((e = cudaMalloc(&p->region, bytes)) != cudaSuccess)
        goto fail;
    if ((e = cudaMemset(p->region, SS_PEER_AR_EMPTY_BYTE, bytes)) != cudaSuccess)
        goto fail;
    if ((e = cudaMalloc((void **)&p->v.epoch, SS_PEER_AR_MAX_BLOCKS * sizeof(uint32_t))) != cudaSuccess)
        goto fail;
    if ((e = cudaMemset(p->v.epoch, 0, SS_PEER_AR_MAX_BLOCKS * sizeof(uint32_t))) != cudaSuccess)
        goto fail;
    what = "cudaHostAlloc";
    if ((e = cudaHostAlloc((void **)&p->abort_host, sizeof(int), cudaHostAllocMapped)) != cudaSuccess)
        goto fail;
    *p->abort_host = 0;
    void *dev_abort = NULL;
    if ((e = cudaHostGetDevicePointer(&dev_abort, p->abort_host, 0)) != cudaSuccess)
        goto fail;
    p->v.abort_flag = dev_abort;
    what = "cudaIpcGetMemHandle";
    if ((e = cudaIpcGetMemHandle(&me->handle, p->region)) != cudaSuccess)
        goto fail;
    what = "cudaDeviceGetPCIBusId";
    if ((e = cudaDeviceGetPCIBusId(me->bus, sizeof me->bus, p->device)) != cudaSuccess)
        goto fail;
    what = "cudaDeviceSynchronize";
    if ((e = cudaDeviceSynchronize()) != cudaSuccess) /* inboxes emptied before any peer writes */
        goto fail;
    return 1;
fail:
    SS_LOGI("peer all-reduce: rank %d (cuda:%d): %s: %s; using NCCL for every all-reduce", p->v.rank, p->device,
            what, cudaGetErrorString(e));
    cudaGetLastError();
    return 0;
}

/* Maps every peer's region; returns 0 with a log line when one cannot be mapped. */
static int par_map(ss_peer_ar *p, const par_ident *all)
{
    const int size = p->v.size;
    for (int r = 0; r < size; r++) {
        if (!all[r].ok) {
            SS_LOGI("peer all-reduce: rank %d could not set up; using NCCL", r);
            return 0;
        }
        if (all[r].host != all[p->v.rank].host) {
            SS_LOGI("peer all-reduce: ranks %d and %d are on different hosts; using NCCL", p->v.rank, r);
            return 0;
        }
    }
    char *base[SS_PEER_AR_MAX_RANKS];
    for (int r = 0; r < size; r++) {
        if (r == p->v.rank) {
            base[r] = p->region;
            continue;
        }
        int dev = -1, can = 0;
        cudaError_t e = cudaDeviceGetByPCIBusId(&dev, all[r].bus);
        if (e == cudaSuccess)
            e = cudaDeviceCanAccessPeer(&can, p->device, dev);
        if (e != cudaSuccess || !can) {
            SS_LOGI("peer all-reduce: rank %d's GPU %s is %s from cuda:%d; using NCCL", r, all[r].bus,
                    e != cudaSuccess ? "not visible" : "not peer-accessible", p->device);
            cudaGetLastError();
            return 0;
        }
        e = cudaIpcOpenMemHandle(&p->mapped[r], all[r].handle, cudaIpcMemLazyEnablePeerAccess);
        if (e != cudaSuccess) {
            SS_LOGI("peer all-reduce: mapping rank %d's region: %s; using NCCL", r, cudaGetErrorString(e));
            p->mapped[r] = NULL;
            cudaGetLastError();
            return 0;
        }
        base[r] = p->mapped[r];
    }
    for (int r = 0; r < size; r++)
        p->v.inbox[r] = base[r];
    return 1;
}

ss_status ss_peer_ar_create(int rank, int size, int device, ss_peer_ar_exchange_fn exchange, void *exchange_ctx,
                            ss_peer_ar **out, ss_err *err)
{
    *out = NULL;
    if (size < 2 || size > SS_PEER_AR_MAX_RANKS || rank < 0 || rank >= size)
        return ss_err_set(err, SS_ERR_INVALID_ARG, "peer all-reduce: rank %d of %d (2..%d ranks)", rank, size,
                          SS_PEER_AR_MAX_RANKS);
    ss_peer_ar *p = ss_calloc(1, sizeof *p);
    par_ident *all = ss_calloc((size_t)size, sizeof *all);
    if (!p || !all) {
        ss_free(p);
        ss_free(all);
        return ss_err_set(err, SS_ERR_NOMEM, "peer all-reduce: out of memory");
    }
    p->v.rank = rank, p->v.size = size, p->device = device;
    p->exchange = exchange, p->exchange_ctx = exchange_ctx;
    p->v.no_pdl = getenv("SS_PEER_AR_NO_PDL") != NULL;
    par_ident me;
    memset(&me, 0, sizeof me);
    me.host = par_host_id();
    me.device = device;
    const char *env = getenv("SS_PEER_ALLREDUCE");
    if (env && strcmp(env, "0") == 0) /* still takes part in the exchange: the ranks must agree */
        SS_LOGI("peer all-reduce: off on rank %d (SS_PEER_ALLREDUCE=0); using NCCL", rank);
    else
        me.ok = par_prepare(p, size, &me);
    ss_status st = exchange(exchange_ctx, all, &me, sizeof me);
    int32_t mapped = st == SS_OK && par_map(p, all), agreed[SS_PEER_AR_MAX_RANKS];
    if (st == SS_OK)
        st = exchange(exchange_ctx, agreed, &mapped, sizeof mapped);
    ss_free(all);
    if (st != SS_OK) {
        par_release(p);
        return ss_err_set(err, st, "peer all-reduce setup: exchanging handles between %d ranks failed", size);
    }
    for (int r = 0; r < size; r++)
        mapped = mapped && agreed[r];
    if (!mapped) { /* every rank saw the same flags: all fall back together */
        par_release(p);
        return SS_OK;
    }
    SS_LOGI("peer all-reduce: rank %d/%d on cuda:%d: one-shot over peer memory for messages up to %d KiB", rank, size,
            device, SS_PEER_AR_MAX_BYTES / 1024);
    *out = p;
    return SS_OK;
}

int ss_peer_ar_fits(const ss_peer_ar *p, const void *buf, int64_t count, ss_dtype type)
{
    if (!p || (type != SS_DTYPE_BF16 && type != SS_DTYPE_F32) || count <= 0)
        return 0;
    int64_t bytes = count * (int64_t)ss_dtype_size(type);
    return bytes <= SS_PEER_AR_MAX_BYTES && bytes % 16 == 0 && ((uintptr_t)buf & 15) == 0;
}

ss_status ss_peer_ar_all_reduce(ss_peer_ar *p, void *buf, int64_t count, ss_dtype type, void *stream, ss_err *err)
{
    if (!ss_peer_ar_fits(p, buf, count, type))
        return ss_err_set(err, SS_ERR_INVALID_ARG, "peer all-reduce: %lld elements at %p do not fit", (long long)count,
                          buf);
    int e = ss_peer_ar_launch(&p->v, buf, count, type, stream);
    if (e != 0)
        return ss_err_set(err, SS_ERR_CUDA, "peer all-reduce kernel: %s", cudaGetErrorString((cudaError_t)e));
    return SS_OK;
}

int ss_peer_ar_fits_add_rmsnorm(const ss_peer_ar *p, const void *x, const void *residual, const void *out,
                                const void *w, int64_t rows, int32_t dim, ss_dtype type)
{
    if (!p || type != SS_DTYPE_BF16 || rows <= 0 || dim <= 0 || dim % 8 || (int64_t)dim * 2 > SS_PEER_AR_CHUNK)
        return 0;
    int64_t rows_per_block = SS_PEER_AR_CHUNK / ((int64_t)dim * 2);
    uintptr_t any = (uintptr_t)x | (uintptr_t)residual | (uintptr_t)out | (uintptr_t)w;
    return rows <= rows_per_block * SS_PEER_AR_MAX_BLOCKS && (any & 15) == 0;
}

ss_status ss_peer_ar_all_reduce_add_rmsnorm(ss_peer_ar *p, void *x, void *residual, void *out, const void *w,
                                            int64_t rows, int32_t dim, float eps, void *stream, ss_err *err)
{
    if (!ss_peer_ar_fits_add_rmsnorm(p, x, residual, out, w, rows, dim, SS_DTYPE_BF16))
        return ss_err_set(err, SS_ERR_INVALID_ARG, "peer all-reduce + rmsnorm: %lld rows of %d do not fit",
                          (long long)rows, dim);
    int e = ss_peer_ar_launch_add_rmsnorm(&p->v, x, residual, out, w, rows, dim, eps, stream);
    if (e != 0)
        return ss_err_set(err, SS_ERR_CUDA, "peer all-reduce + rmsnorm kernel: %s", cudaGetErrorString((cudaError_t)e));
    return SS_OK;
}

/* This rank's window w: allocated, emptied and its handle taken; 0 with a log line when not. */
static int par_win_prepare(ss_peer_ar *p, int w, size_t bytes, par_win_ident *me)
{
    cudaError_t e;
    const char *what = "cudaSetDevice";
    if ((e = cudaSetDevice(p->device)) != cudaSuccess)
        goto fail;
    what = "cudaMalloc";
    if ((e = cudaMalloc(&p->win[w], bytes)) != cudaSuccess)
        goto fail;
    what = "cudaMemset";
    if ((e = cudaMemset(p->win[w], SS_PEER_AR_EMPTY_BYTE, bytes)) != cudaSuccess)
        goto fail;
    what = "cudaIpcGetMemHandle";
    if ((e = cudaIpcGetMemHandle(&me->handle, p->win[w])) != cudaSuccess)
        goto fail;
    what = "cudaDeviceSynchronize";
    if ((e = cudaDeviceSynchronize()) != cudaSuccess) /* emptied before any peer writes */
        goto fail;
    return 1;
fail:
    SS_LOGW("peer window: rank %d (cuda:%d): %s of %zu bytes: %s", p->v.rank, p->device, what, bytes,
            cudaGetErrorString(e));
    cudaGetLastError();
    return 0;
}

ss_status ss_peer_ar_window(ss_peer_ar *p, size_t bytes, int want, void *base[SS_PEER_AR_MAX_RANKS],
                            const volatile int **abort_flag, ss_err *err)
{
    if (!p || bytes == 0)
        return ss_err_set(err, SS_ERR_INVALID_ARG, "peer window: no peer group or no bytes");
    const int size = p->v.size, w = p->n_windows;
    if (w >= SS_PEER_AR_MAX_WINDOWS) /* the same count on every rank: all refuse alike */
        return ss_err_set(err, SS_ERR_UNSUPPORTED, "peer window: at most %d windows", SS_PEER_AR_MAX_WINDOWS);
    p->n_windows++;
    par_win_ident me, all[SS_PEER_AR_MAX_RANKS];
    memset(&me, 0, sizeof me);
    me.ok = want && par_win_prepare(p, w, bytes, &me);
    ss_status st = p->exchange(p->exchange_ctx, all, &me, sizeof me);
    int32_t mapped = st == SS_OK, agreed[SS_PEER_AR_MAX_RANKS];
    for (int r = 0; r < size && mapped; r++) {
        if (!all[r].ok)
            mapped = 0;
        else if (r != p->v.rank) {
            cudaError_t e = cudaIpcOpenMemHandle(&p->win_mapped[w][r], all[r].handle, cudaIpcMemLazyEnablePeerAccess);
            if (e != cudaSuccess) {
                SS_LOGW("peer window: rank %d mapping rank %d's window: %s", p->v.rank, r, cudaGetErrorString(e));
                p->win_mapped[w][r] = NULL;
                cudaGetLastError();
                mapped = 0;
            }
        }
    }
    if (st == SS_OK)
        st = p->exchange(p->exchange_ctx, agreed, &mapped, sizeof mapped);
    if (st != SS_OK)
        return ss_err_set(err, st, "peer window: exchanging handles between %d ranks failed", size);
    for (int r = 0; r < size; r++)
        mapped = mapped && agreed[r];
    if (!mapped) { /* every rank saw the same flags: all release what they set up, mappings first */
        for (int r = 0; r < size; r++)
            if (p->win_mapped[w][r]) {
                cudaIpcCloseMemHandle(p->win_mapped[w][r]);
                p->win_mapped[w][r] = NULL;
            }
        /* a window may be freed only once no peer maps it any more: one more exchange as a barrier (if it
         * fails, the memory stays until destroy) */
        int32_t closed = 1, all_closed[SS_PEER_AR_MAX_RANKS];
        if (p->exchange(p->exchange_ctx, all_closed, &closed, sizeof closed) == SS_OK && p->win[w]) {
            cudaFree(p->win[w]);
            p->win[w] = NULL;
        }
        cudaGetLastError();
        return ss_err_set(err, SS_ERR_UNSUPPORTED,
                          "peer window: a rank does not want, or could not set up or map, a window of %zu bytes", bytes);
    }
    for (int r = 0; r < size; r++)
        base[r] = r == p->v.rank ? p->win[w] : p->win_mapped[w][r];
    *abort_flag = p->v.abort_flag;
    return SS_OK;
}

void ss_peer_ar_abort(ss_peer_ar *p)
{
    if (p && p->abort_host)
        *(volatile int *)p->abort_host = 1;
}

void ss_peer_ar_destroy(ss_peer_ar *p)
{
    if (p) {
        cudaSetDevice(p->device);
        par_release(p);
    }
}

/* comm_tcp.c — collectives over a full mesh of TCP sockets, for cpu replicas and GPU-less tests.
 * All-reduce exchanges every rank's buffer and sums in rank order, so every rank gets identical bits. */
#include <errno.h>
#include <poll.h>
#include <stdatomic.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "comm/comm.h"
#include "core/alloc.h"
#include "core/net.h"

typedef struct tcp_ctx {
    int rank, size;
    int *fds;          /* [size], fds[rank] = -1 */
    int timeout_ms;
    atomic_int aborted;
    uint8_t *scratch;  /* receive space for all-reduce: (size-1) * bytes */
    size_t scratch_cap;
    int fail_peer;     /* the peer the last call failed on, -1: none (tcp_failed_peer) */
    ss_comm_blame fail_how;
} tcp_ctx;

/* Records that the call fails on peer r (how) and returns st. */
static ss_status tcp_blame(tcp_ctx *c, int r, ss_comm_blame how, ss_status st)
{
    c->fail_peer = r;
    c->fail_how = how;
    return st;
}

/* Moves out[r] to peer r and in[r] from peer r, for every peer at once, before the deadline.
 * NULL out/in entries skip that direction. */
static ss_status tcp_exchange(tcp_ctx *c, const uint8_t *const *out, uint8_t *const *in, size_t bytes)
{
    int n = c->size;
    size_t sent[64], recvd[64];
    struct pollfd pf[64];
    if (n > 64)
        return SS_ERR_INVALID_ARG;
    memset(sent, 0, sizeof sent);
    memset(recvd, 0, sizeof recvd);
    int64_t deadline = ss_now_ms() + c->timeout_ms;
    c->fail_peer = -1;
    for (;;) {
        if (atomic_load(&c->aborted))
            return SS_ERR_CANCELLED;
        int np = 0, pending = 0;
        int who[64];
        for (int r = 0; r < n; r++) {
            if (r == c->rank)
                continue;
            short ev = 0;
            if (out[r] && sent[r] < bytes)
                ev |= POLLOUT;
            if (in[r] && recvd[r] < bytes)
                ev |= POLLIN;
            if (!ev)
                continue;
            pending = 1;
            pf[np].fd = c->fds[r];
            pf[np].events = ev;
            pf[np].revents = 0;
            who[np++] = r;
        }
        if (!pending)
            return SS_OK;
        int64_t left = deadline - ss_now_ms();
        if (left <= 0) /* the first peer still owing bytes */
            return tcp_blame(c, who[0], SS_COMM_PEER_SILENT, SS_ERR_TIMEOUT);
        int rc = poll(pf, (nfds_t)np, left > 1000 ? 1000 : (int)left);
        if (rc < 0 && errno != EINTR)
            return SS_ERR_COMM;
        for (int i = 0; i < np && rc > 0; i++) {
            int r = who[i];
            if (pf[i].revents & POLLOUT) {
                ssize_t w = send(c->fds[r], out[r] + sent[r], bytes - sent[r], MSG_NOSIGNAL);
                if (w > 0)
                    sent[r] += (size_t)w;
                else if (w < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)
                    return tcp_blame(c, r, SS_COMM_PEER_CLOSED, SS_ERR_COMM);
            }
            if (pf[i].revents & POLLIN) {
                ssize_t g = recv(c->fds[r], in[r] + recvd[r], bytes - recvd[r], 0);
                if (g > 0)
                    recvd[r] += (size_t)g;
                else if (g == 0 || (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR))
                    return tcp_blame(c, r, SS_COMM_PEER_CLOSED, SS_ERR_COMM); /* it died or aborted */
            } else if (pf[i].revents & (POLLERR | POLLHUP | POLLNVAL)) {
                return tcp_blame(c, r, SS_COMM_PEER_CLOSED, SS_ERR_COMM);
            }
        }
    }
}

static ss_status tcp_all_reduce(void *ctx, void *buf, int64_t count, ss_dtype type)
{
    tcp_ctx *c = ctx;
    if (type != SS_DTYPE_F32 && type != SS_DTYPE_BF16)
        return SS_ERR_INVALID_ARG;
    size_t esz = ss_dtype_size(type), bytes = (size_t)count * esz;
    size_t need = bytes * (size_t)c->size;
    if (need > c->scratch_cap) {
        uint8_t *nb = ss_realloc(c->scratch, need);
        if (!nb)
            return SS_ERR_NOMEM;
        c->scratch = nb;
        c->scratch_cap = need;
    }
    const uint8_t *out[64];
    uint8_t *in[64];
    for (int r = 0; r < c->size; r++) {
        out[r] = r == c->rank ? NULL : buf;
        in[r] = r == c->rank ? NULL : c->scratch + (size_t)r * bytes;
    }
    memcpy(c->scratch + (size_t)c->rank * bytes, buf, bytes);
    SS_CHECK(tcp_exchange(c, out, in, bytes));
    /* Sum in rank order on every rank: identical results everywhere. */
    if (type == SS_DTYPE_F32) {
        float *dst = buf;
        for (int64_t i = 0; i < count; i++) {
            float s = 0;
            for (int r = 0; r < c->size; r++)
                s += ((const float *)(c->scratch + (size_t)r * bytes))[i];
            dst[i] = s;
        }
    } else {
        uint16_t *dst = buf;
        for (int64_t i = 0; i < count; i++) {
            float s = 0;
            for (int r = 0; r < c->size; r++)
                s += ss_bf16_to_f32(((const uint16_t *)(c->scratch + (size_t)r * bytes))[i]);
            dst[i] = ss_f32_to_bf16(s);
        }
    }
    return SS_OK;
}

static ss_status tcp_all_gather(void *ctx, void *outb, const void *inb, int64_t count, ss_dtype type)
{
    tcp_ctx *c = ctx;
    size_t bytes = (size_t)count * ss_dtype_size(type);
    const uint8_t *out[64];
    uint8_t *in[64];
    for (int r = 0; r < c->size; r++) {
        out[r] = r == c->rank ? NULL : inb;
        in[r] = r == c->rank ? NULL : (uint8_t *)outb + (size_t)r * bytes;
    }
    memmove((uint8_t *)outb + (size_t)c->rank * bytes, inb, bytes);
    return tcp_exchange(c, out, in, bytes);
}

static ss_status tcp_broadcast(void *ctx, void *buf, int64_t count, ss_dtype type, int root)
{
    tcp_ctx *c = ctx;
    if (root < 0 || root >= c->size)
        return SS_ERR_INVALID_ARG;
    size_t bytes = (size_t)count * ss_dtype_size(type);
    const uint8_t *out[64] = {0};
    uint8_t *in[64] = {0};
    for (int r = 0; r < c->size; r++) {
        if (c->rank == root && r != root)
            out[r] = buf;
    }
    if (c->rank != root)
        in[root] = buf;
    return tcp_exchange(c, out, in, bytes);
}

static ss_status tcp_send(void *ctx, const void *buf, int64_t count, ss_dtype type, int peer)
{
    tcp_ctx *c = ctx;
    if (peer < 0 || peer >= c->size || peer == c->rank)
        return SS_ERR_INVALID_ARG;
    const uint8_t *out[64] = {0};
    uint8_t *in[64] = {0};
    out[peer] = buf;
    return tcp_exchange(c, out, in, (size_t)count * ss_dtype_size(type));
}

static ss_status tcp_recv(void *ctx, void *buf, int64_t count, ss_dtype type, int peer)
{
    tcp_ctx *c = ctx;
    if (peer < 0 || peer >= c->size || peer == c->rank)
        return SS_ERR_INVALID_ARG;
    const uint8_t *out[64] = {0};
    uint8_t *in[64] = {0};
    in[peer] = buf;
    return tcp_exchange(c, out, in, (size_t)count * ss_dtype_size(type));
}

static int tcp_failed_peer(void *ctx, ss_comm_blame *how)
{
    const tcp_ctx *c = ctx;
    if (c->fail_peer >= 0)
        *how = c->fail_how;
    return c->fail_peer;
}

static void tcp_abort(void *ctx)
{
    tcp_ctx *c = ctx;
    atomic_store(&c->aborted, 1);
    for (int r = 0; r < c->size; r++)
        if (c->fds[r] >= 0)
            shutdown(c->fds[r], SHUT_RDWR); /* wakes a poll in progress */
}

static void tcp_destroy(void *ctx)
{
    tcp_ctx *c = ctx;
    if (!c)
        return;
    for (int r = 0; r < c->size; r++)
        if (c->fds[r] >= 0)
            close(c->fds[r]);
    ss_free(c->fds);
    ss_free(c->scratch);
    ss_free(c);
}

static const ss_comm_i tcp_iface = {
    .version = SS_COMM_IFACE_VERSION,
    .name = "tcp",
    .all_reduce_sum = tcp_all_reduce,
    .all_gather = tcp_all_gather,
    .broadcast = tcp_broadcast,
    .send = tcp_send,
    .recv = tcp_recv,
    .failed_peer = tcp_failed_peer,
    .abort = tcp_abort,
    .destroy = tcp_destroy,
};

ss_status ss_comm_tcp_create(int rank, int size, const int *fds, int timeout_ms, ss_comm **out, ss_err *err)
{
    *out = NULL;
    if (size < 1 || size > 64 || rank < 0 || rank >= size)
        return ss_err_set(err, SS_ERR_INVALID_ARG, "tcp comm: rank %d of %d (at most 64 ranks)", rank, size);
    ss_comm *cm = ss_calloc(1, sizeof *cm);
    tcp_ctx *c = ss_calloc(1, sizeof *c);
    int *f = ss_malloc((size_t)size * sizeof *f);
    if (!cm || !c || !f) {
        ss_free(cm);
        ss_free(c);
        ss_free(f);
        return ss_err_set(err, SS_ERR_NOMEM, "out of memory");
    }
    for (int r = 0; r < size; r++)
        f[r] = r == rank ? -1 : fds[r];
    c->rank = rank;
    c->size = size;
    c->fds = f;
    c->timeout_ms = timeout_ms > 0 ? timeout_ms : 60000;
    c->fail_peer = -1;
    cm->iface = &tcp_iface;
    cm->ctx = c;
    cm->rank = rank;
    cm->size = size;
    *out = cm;
    return SS_OK;
}

/* comm_single.c — the communicator of a group of one: collectives are identities, used when tp == 1. */
#include <string.h>

#include "comm/comm.h"
#include "core/alloc.h"

static ss_status single_all_reduce(void *ctx, void *buf, int64_t count, ss_dtype type)
{
    (void)ctx;
    (void)buf;
    (void)count;
    (void)type;
    return SS_OK;
}

static ss_status single_all_gather(void *ctx, void *out, const void *in, int64_t count, ss_dtype type)
{
    (void)ctx;
    if (out != in)
        memmove(out, in, (size_t)count * ss_dtype_size(type));
    return SS_OK;
}

static ss_status single_broadcast(void *ctx, void *buf, int64_t count, ss_dtype type, int root)
{
    (void)ctx;
    (void)buf;
    (void)count;
    (void)type;
    return root == 0 ? SS_OK : SS_ERR_INVALID_ARG;
}

static ss_status single_p2p(void *ctx, const void *buf, int64_t count, ss_dtype type, int peer)
{
    (void)ctx;
    (void)buf;
    (void)count;
    (void)type;
    (void)peer;
    return SS_ERR_INVALID_ARG; /* no peer to talk to */
}

static ss_status single_recv(void *ctx, void *buf, int64_t count, ss_dtype type, int peer)
{
    return single_p2p(ctx, buf, count, type, peer);
}

static void single_abort(void *ctx)
{
    (void)ctx;
}

static void single_destroy(void *ctx)
{
    (void)ctx;
}

static const ss_comm_i single_iface = {
    .version = SS_COMM_IFACE_VERSION,
    .name = "single",
    .all_reduce_sum = single_all_reduce,
    .all_gather = single_all_gather,
    .broadcast = single_broadcast,
    .send = single_p2p,
    .recv = single_recv,
    .abort = single_abort,
    .destroy = single_destroy,
};

ss_status ss_comm_create_single(ss_comm **out, ss_err *err)
{
    ss_comm *c = ss_calloc(1, sizeof *c);
    if (!c)
        return ss_err_set(err, SS_ERR_NOMEM, "out of memory");
    c->iface = &single_iface;
    c->rank = 0;
    c->size = 1;
    *out = c;
    return SS_OK;
}

void ss_comm_destroy(ss_comm *c)
{
    if (!c)
        return;
    if (c->iface && c->iface->destroy)
        c->iface->destroy(c->ctx);
    ss_free(c);
}

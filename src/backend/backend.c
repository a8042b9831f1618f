/* backend.c — choosing and creating a backend, and the defaults of its optional slots. */
#include "backend/backend.h"

#include "core/alloc.h"

ss_backend_params ss_backend_default_params(void)
{
    ss_backend_params p = {SS_DEVICE_AUTO, 0, 0, SS_KV_ACT, SS_LINEAR_ACT};
    return p;
}

int ss_backend_cuda_available(void)
{
#ifdef SS_HAVE_CUDA
    return ss_backend_cuda_device_count() > 0;
#else
    return 0;
#endif
}

ss_status ss_backend_create(const ss_backend_params *params_in, ss_backend **out, ss_err *err)
{
    ss_backend_params resolved = *params_in;
    if (resolved.linear_type == SS_LINEAR_AUTO) /* no checkpoint to follow here (the runner resolves it first) */
        resolved.linear_type = SS_LINEAR_ACT;
    const ss_backend_params *params = &resolved;
    ss_device_kind kind = params->device;
    if (kind == SS_DEVICE_AUTO)
        kind = ss_backend_cuda_available() ? SS_DEVICE_CUDA : SS_DEVICE_CPU;
    if (kind == SS_DEVICE_CUDA) {
#ifdef SS_HAVE_CUDA
        return ss_backend_cuda_create(params, out, err);
#else
        return ss_err_set(err, SS_ERR_UNSUPPORTED, "--device cuda: this build has no CUDA backend (it was configured with SS_CUDA off, or "
                                                           "without nvcc)");
#endif
    }
    return ss_backend_cpu_create(params, out, err);
}

int ss_backend_fp8_linear_ok(const ss_backend_params *params)
{
    ss_device_kind kind = params->device;
    if (kind == SS_DEVICE_AUTO)
        kind = ss_backend_cuda_available() ? SS_DEVICE_CUDA : SS_DEVICE_CPU;
    if (kind != SS_DEVICE_CUDA)
        return 1;
#ifdef SS_HAVE_CUDA
    return ss_backend_cuda_fp8_ok(params->device_index);
#else
    return 0;
#endif
}

void ss_backend_destroy(ss_backend *be)
{
    if (!be)
        return;
    if (be->iface && be->iface->destroy)
        be->iface->destroy(be->ctx);
    ss_free(be);
}

static void *backend_no_stream(void *ctx)
{
    (void)ctx;
    return NULL;
}

static ss_status backend_no_graph(void *ctx, uint64_t key)
{
    (void)ctx;
    (void)key;
    return SS_ERR_UNSUPPORTED;
}

static ss_status backend_no_mem_info(void *ctx, size_t *free_bytes, size_t *total_bytes)
{
    (void)ctx;
    *free_bytes = *total_bytes = 0;
    return SS_ERR_UNSUPPORTED;
}

static ss_status backend_ready_at_once(void *ctx, int slot, int *ready)
{
    (void)ctx, (void)slot;
    *ready = 1;
    return SS_OK;
}

static void backend_no_destroy(void *ctx)
{
    (void)ctx;
}

void ss_backend_fill_defaults(ss_backend_i *iface)
{
    if (!iface->native_stream)
        iface->native_stream = backend_no_stream;
    if (!iface->graph_begin)
        iface->graph_begin = backend_no_graph;
    if (!iface->graph_end)
        iface->graph_end = backend_no_graph;
    if (!iface->graph_launch)
        iface->graph_launch = backend_no_graph;
    if (!iface->mem_info)
        iface->mem_info = backend_no_mem_info;
    if (!iface->destroy)
        iface->destroy = backend_no_destroy;
    if (!iface->download_ready)
        iface->download_ready = backend_ready_at_once;
}

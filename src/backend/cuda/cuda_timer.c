/* cuda_timer.c — cudaEvent timing on a cuda backend's stream (see cuda_timer.h). */
#include <string.h>

#include "backend/cuda/cuda_internal.h"
#include "backend/cuda/cuda_timer.h"
#include "core/alloc.h"

struct ss_cuda_timer {
    cudaStream_t stream;
    cudaEvent_t start, stop;
    ss_err err;
};

ss_status ss_cuda_timer_create(const ss_backend *be, ss_cuda_timer **out, ss_err *err)
{
    *out = NULL;
    if (!be || !be->iface->name || strcmp(be->iface->name, "cuda") != 0)
        return ss_err_set(err, SS_ERR_INVALID_ARG, "cuda timer: not a cuda backend");
    ss_cuda_timer *t = ss_calloc(1, sizeof *t);
    if (!t)
        return ss_err_set(err, SS_ERR_NOMEM, "cuda timer: out of memory");
    t->stream = (cudaStream_t)be->iface->native_stream(be->ctx);
    cudaError_t e = cudaEventCreate(&t->start);
    if (e == cudaSuccess)
        e = cudaEventCreate(&t->stop);
    if (e != cudaSuccess) {
        ss_cuda_timer_destroy(t);
        return ss_cuda_fail(err, SS_ERR_CUDA, __FILE__, __LINE__, "cudaEventCreate", cudaGetErrorString(e));
    }
    *out = t;
    return SS_OK;
}

ss_status ss_cuda_timer_start(ss_cuda_timer *t)
{
    CUDA_CHECK(&t->err, cudaEventRecord(t->start, t->stream));
    return SS_OK;
}

ss_status ss_cuda_timer_stop(ss_cuda_timer *t, double *ms)
{
    float f = 0.0f;
    CUDA_CHECK(&t->err, cudaEventRecord(t->stop, t->stream));
    CUDA_CHECK(&t->err, cudaEventSynchronize(t->stop));
    CUDA_CHECK(&t->err, cudaEventElapsedTime(&f, t->start, t->stop));
    *ms = (double)f;
    return SS_OK;
}

void ss_cuda_timer_destroy(ss_cuda_timer *t)
{
    if (!t)
        return;
    if (t->start)
        cudaEventDestroy(t->start);
    if (t->stop)
        cudaEventDestroy(t->stop);
    ss_free(t);
}

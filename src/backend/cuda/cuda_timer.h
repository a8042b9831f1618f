/* cuda_timer.h — cudaEvent timing of work on a cuda backend's stream, for benchmarks (tools/).
 * A plain C view: no CUDA header needed. Only in builds with SS_HAVE_CUDA. */
#ifndef SS_CUDA_TIMER_H
#define SS_CUDA_TIMER_H

#include "backend/backend.h"

typedef struct ss_cuda_timer ss_cuda_timer;

/* A pair of events on be's stream (be must be a cuda backend; borrowed for the timer's life). */
ss_status ss_cuda_timer_create(const ss_backend *be, ss_cuda_timer **out, ss_err *err);
/* Records the start event on the stream. */
ss_status ss_cuda_timer_start(ss_cuda_timer *t);
/* Records the stop event, waits for it and gives the elapsed GPU time in milliseconds. */
ss_status ss_cuda_timer_stop(ss_cuda_timer *t, double *ms);
void ss_cuda_timer_destroy(ss_cuda_timer *t);

#endif

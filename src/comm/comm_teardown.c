/* comm_teardown.c — tearing communicators down when peers may be gone: stop at once after a failure,
 * and destroy with a time bound (a driver or NCCL call that waits for a dead peer must not hang us). */
#include <pthread.h>
#include <string.h>
#include <time.h>

#include "comm/comm.h"
#include "core/alloc.h"
#include "core/log.h"

void ss_comm_stop(ss_comm *c)
{
    if (!c || !c->iface)
        return;
#ifdef SS_HAVE_CUDA
    if (strcmp(c->iface->name, "nccl") == 0) {
        ss_comm_nccl_stop(c);
        return;
    }
#endif
    if (c->iface->abort)
        c->iface->abort(c->ctx);
}

/* What the helper thread works on; owned by the thread once it runs (freed by it, or leaked with it). */
typedef struct teardown_job {
    ss_comm *comms[2];
    int abort_first;
} teardown_job;

static void *teardown_main(void *arg)
{
    teardown_job *j = arg;
    /* abort all before destroying any: a destroy may wait on work that another's abort releases */
    for (int i = 0; i < 2 && j->abort_first; i++)
        if (j->comms[i] && j->comms[i]->iface->abort)
            j->comms[i]->iface->abort(j->comms[i]->ctx);
    for (int i = 0; i < 2; i++)
        ss_comm_destroy(j->comms[i]);
    ss_free(j);
    return NULL;
}

int ss_comm_destroy_bounded(ss_comm *a, ss_comm *b, int abort_first, int timeout_ms)
{
    if (!a && !b)
        return 1;
    teardown_job *j = ss_malloc(sizeof *j);
    if (!j) { /* no memory for the job: do it here, unbounded */
        teardown_job local = {{a, b}, abort_first};
        for (int i = 0; i < 2 && abort_first; i++)
            if (local.comms[i] && local.comms[i]->iface->abort)
                local.comms[i]->iface->abort(local.comms[i]->ctx);
        ss_comm_destroy(a);
        ss_comm_destroy(b);
        return 1;
    }
    j->comms[0] = a, j->comms[1] = b, j->abort_first = abort_first;
    pthread_t th;
    if (pthread_create(&th, NULL, teardown_main, j) != 0) {
        teardown_main(j);
        return 1;
    }
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_sec += timeout_ms / 1000;
    ts.tv_nsec += (long)(timeout_ms % 1000) * 1000000L;
    if (ts.tv_nsec >= 1000000000L)
        ts.tv_sec++, ts.tv_nsec -= 1000000000L;
    if (pthread_timedjoin_np(th, NULL, &ts) == 0)
        return 1;
    SS_LOGE("releasing the communicators did not finish within %d ms; leaving them to the exiting process",
            timeout_ms);
    pthread_detach(th); /* a driver call hangs: leave it (and what it holds); the process is on its way out */
    return 0;
}

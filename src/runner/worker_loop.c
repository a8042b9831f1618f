/* worker_loop.c — a worker rank's life after loading: step plans from the leader in, its step outputs (the output
 * rank's) and failures out, until the leader says stop or goes away. */
#include <errno.h>
#include <poll.h>
#include <string.h>

#include "core/alloc.h"
#include "core/log.h"
#include "core/net.h"
#include "runner/bootstrap.h"
#include "runner/step_plan.h"

/* Tells the leader why this rank stops (best effort: the leader may be gone); returns st. */
static ss_status worker_fail(ss_boot *b, ss_status st, const ss_err *err)
{
    ss_net_send_msg(b->ctrl_fd, SS_MSG_ERROR, err->msg, strlen(err->msg), ss_now_ms() + 5000);
    return st;
}

/* Collects the worker's oldest pending step; the output rank sends its output to the leader. A failed
 * step is reported to the leader (SS_MSG_ERROR) and ends the loop. */
static ss_status worker_collect(ss_boot *b, ss_runner *runner, ss_err *err)
{
    ss_step_output out;
    ss_status st = ss_runner_collect(runner, &out, err);
    if (st != SS_OK)
        return worker_fail(b, st, err);
    if (ss_runner_is_output_rank(runner)) {
        uint8_t *buf = NULL;
        size_t bl = 0;
        st = ss_step_output_encode(&out, &buf, &bl, err);
        if (st == SS_OK)
            st = ss_net_send_msg(b->ctrl_fd, SS_MSG_OUTPUT, buf, bl, ss_now_ms() + b->settings.comm_timeout_ms);
        ss_free(buf);
        if (st != SS_OK)
            st = ss_err_set(err, SS_ERR_COMM, "rank %d: sending the step output to the leader failed", b->rank);
    }
    ss_step_output_clear(&out);
    return st;
}

/* While a step is pending: waits until the leader's next message is there (return 1) or the step is done
 * (collects it, return 0). Spins for 50 ms (the next plan usually arrives while the step runs, and
 * submitting it before waiting keeps the GPU busy), then polls the socket every millisecond. */
static ss_status worker_wait_plan_or_step(ss_boot *b, ss_runner *runner, int *plan_ready, ss_err *err)
{
    const int64_t t0 = ss_now_ms();
    for (;;) {
        struct pollfd pf = {b->ctrl_fd, POLLIN, 0};
        const int pr = poll(&pf, 1, ss_now_ms() - t0 > 50 ? 1 : 0);
        if (pr > 0 || (pr < 0 && errno != EINTR)) { /* a plan, a hang-up or an error: the receive says which */
            *plan_ready = 1;
            return SS_OK;
        }
        int done = 0;
        ss_status st = ss_runner_ready(runner, &done, err);
        if (st == SS_OK && !done)
            continue;
        *plan_ready = 0;
        return st != SS_OK ? worker_fail(b, st, err) : worker_collect(b, runner, err);
    }
}

ss_status ss_worker_loop(ss_boot *b, ss_runner *runner, ss_err *err)
{
    for (;;) {
        /* A step still pending (submitted ahead of the previous one's end): watch it and the socket. */
        int plan_ready = 0;
        while (ss_runner_pending(runner) > 0 && !plan_ready)
            SS_CHECK(worker_wait_plan_or_step(b, runner, &plan_ready, err));
        uint32_t type;
        uint8_t *msg = NULL;
        size_t len = 0;
        /* Idle without a deadline: the server may wait long for work; a dead leader closes the socket.
         * (Spinning for the plan instead of blocking was measured in session 4: 337-339 tok/s either way at
         * tp 2, so the ~110 us start skew of rank 1 is not its wake-up; it blocks.) */
        ss_status st = ss_net_recv_msg(b->ctrl_fd, &type, &msg, &len, 1u << 30, -1);
        if (st != SS_OK)
            return ss_err_set(err, SS_ERR_COMM, "rank %d: lost the leader (%s)", b->rank, ss_status_str(st));
        if (type != SS_MSG_PLAN) {
            ss_free(msg);
            return ss_err_set(err, SS_ERR_FORMAT, "rank %d: unexpected message %u", b->rank, type);
        }
        ss_step_plan plan;
        st = ss_step_plan_decode(msg, len, &plan, err);
        ss_free(msg);
        if (st != SS_OK)
            return st;
        if (plan.flags & SS_PLAN_SHUTDOWN) {
            ss_step_plan_free(&plan);
            while (ss_runner_pending(runner) > 0) /* the leader waits for nothing more: settle quietly */
                SS_CHECK(worker_collect(b, runner, err));
            return SS_OK;
        }
        /* Submit before collecting the step before it: the GPU runs this one right after that one. */
        st = ss_runner_submit(runner, &plan, err);
        ss_step_plan_free(&plan);
        if (st != SS_OK)
            return worker_fail(b, st, err);
        if (ss_runner_pending(runner) == SS_DOWNLOAD_SLOTS)
            SS_CHECK(worker_collect(b, runner, err));
    }
}

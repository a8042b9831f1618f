/* cmd_worker.c — `shardserve worker`: a non-leader rank. It joins the leader, loads its shard, reports
 * ready, then runs step plans until told to stop or the leader goes away (exit 4). No HTTP here. */
#include <stdio.h>
#include <string.h>

#include "cli/commands.h"
#include "cli/opts.h"
#include "core/log.h"
#include "core/net.h"
#include "runner/bootstrap.h"

int ss_cmd_worker(int argc, char **argv, char **env)
{
    const char *leader = NULL, *stamp = NULL;
    int64_t rank = -1, world = 0, join_timeout = 600;
    ss_opt opts[] = {
        {"leader-addr", SS_OPT_STR, &leader, "HOST:PORT of the leader's rendezvous"},
        {"rank", SS_OPT_INT, &rank, "this process's rank (1..world-1)"},
        {"world", SS_OPT_INT, &world, "ranks in the replica (tp x pp)"},
        {"join-timeout", SS_OPT_INT, &join_timeout, "seconds to keep trying to reach the leader (default 600)"},
        {"test-version-stamp", SS_OPT_STR, &stamp, "(tests) pretend to be another build"},
        {NULL, 0, NULL, NULL},
    };
    ss_err e = {{0}};
    ss_status st = ss_opts_parse(opts, argc, argv, 2, env, "worker", &e);
    if (st == SS_ERR_CANCELLED)
        return SS_EXIT_OK;
    if (st == SS_OK && (!leader || rank < 1 || world < 2 || rank >= world))
        st = ss_err_set(&e, SS_ERR_INVALID_ARG, "worker needs --leader-addr, --world >= 2 and --rank in 1..world-1");
    if (st != SS_OK) {
        fprintf(stderr, "shardserve worker: %s\n", e.msg);
        return ss_status_exit_code(st);
    }
    char role[64];
    snprintf(role, sizeof role, "rank %d/%d", (int)rank, (int)world);
    ss_log_init(SS_LOG_INFO, role);
    ss_boot b;
    st = ss_boot_worker(leader, (int)rank, (int)world, ss_now_ms() + join_timeout * 1000, stamp, &b, &e);
    if (st != SS_OK) {
        SS_LOGE("%s", e.msg);
        return ss_status_exit_code(st);
    }
    SS_LOGI("joined the leader at %s; loading %s", leader, b.settings.model_dir);
    ss_runner *runner = NULL;
    ss_comm *tp = NULL, *wc = NULL;
    st = ss_boot_make_runner(&b, &runner, &tp, &wc, &e);
    if (st != SS_OK) {
        SS_LOGE("%s", e.msg);
        ss_net_send_msg(b.ctrl_fd, SS_MSG_ERROR, e.msg, strlen(e.msg), ss_now_ms() + 5000);
        ss_boot_close(&b);
        return ss_status_exit_code(st);
    }
    st = ss_net_send_msg(b.ctrl_fd, SS_MSG_READY, "ok", 2, ss_now_ms() + 60000);
    if (st == SS_OK)
        st = ss_worker_loop(&b, runner, &e);
    else
        ss_err_set(&e, st, "could not report ready to the leader");
    if (st != SS_OK)
        SS_LOGE("%s", e.msg);
    ss_runner_destroy(runner);
    ss_comm_destroy(tp);
    ss_comm_destroy(wc);
    ss_boot_close(&b);
    return st == SS_OK ? SS_EXIT_OK : (st == SS_ERR_COMM ? SS_EXIT_PEER_LOST : ss_status_exit_code(st));
}

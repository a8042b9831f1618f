/* cmd_worker.c — `shardserve worker`: a non-leader rank. It joins the leader, loads its shard, reports
 * ready, then runs step plans until told to stop or the leader goes away (exit 4). No HTTP here. */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include "cli/commands.h"
#include "cli/opts.h"
#include "core/log.h"
#include "core/net.h"
#include "cli/rank_env.h"
#include "runner/bootstrap.h"
#include "runner/hangup_watch.h"

/* The communicators a worker's hang-up watcher stops (borrowed from worker_run). */
typedef struct worker_comms {
    int rank;
    ss_comm *tp, *world;
} worker_comms;

static void worker_on_hangup(void *ctx, int index)
{
    (void)index;
    worker_comms *w = ctx;
    SS_LOGE("rank %d: the leader closed its control connection (its process is gone?): stopping the communicators",
            w->rank);
    ss_comm_stop(w->tp);
    ss_comm_stop(w->world);
}

/* Runs one worker rank in this process until shutdown; returns its exit code. */
static int worker_run(const char *leader, int rank, int world, int64_t join_timeout_s, const char *stamp,
                      ss_log_level level)
{
    ss_err e = {{0}};
    char role[64];
    snprintf(role, sizeof role, "rank %d/%d", rank, world);
    ss_log_init(level, role);
    ss_boot b;
    ss_status st = ss_boot_worker(leader, rank, world, ss_now_ms() + join_timeout_s * 1000, stamp, &b, &e);
    if (st != SS_OK) {
        SS_LOGE("%s", e.msg);
        return ss_status_exit_code(st);
    }
    /* Joined: from here the leader says when to stop (it drains first, then closes; if it dies, this rank sees its
     * connection close and exits 4). A SIGINT or SIGTERM sent to the whole process group (Ctrl-C, systemd's
     * control-group kill, a pod's deletion) must not take this rank away mid-drain (session 60: the in-flight
     * requests failed); SIGKILL still ends it. */
    signal(SIGINT, SIG_IGN);
    signal(SIGTERM, SIG_IGN);
    /* NCCL reads its own environment (children inherit it); say what it will use. */
    const char *ifn = getenv("NCCL_SOCKET_IFNAME");
    SS_LOGI("joined the leader at %s; loading %s; NCCL_SOCKET_IFNAME=%s", leader, b.settings.model_dir,
            ifn && *ifn ? ifn : "(NCCL's choice)");
    ss_runner *runner = NULL;
    ss_comm *tp = NULL, *wc = NULL;
    st = ss_boot_make_runner(&b, &runner, &tp, &wc, &e);
    if (st != SS_OK) {
        SS_LOGE("%s", e.msg);
        ss_boot_report_load_error(&b, st, &e);
        ss_boot_close(&b);
        return ss_status_exit_code(st);
    }
    /* NCCL ranks: a leader that dies mid-step would leave this rank's collectives waiting until their
     * deadline; its control connection closes at once, and the watcher then stops them (see replica.c). */
    ss_hangup_watch *watch = NULL;
    worker_comms wcomms = {rank, tp, wc};
    if (b.settings.device == SS_DEVICE_CUDA &&
        ss_hangup_watch_start(&b.ctrl_fd, 1, worker_on_hangup, &wcomms, &watch, &e) != SS_OK)
        SS_LOGW("%s; a lost leader shows only at the deadline", e.msg);
    /* READY carries this rank's KV-block count: ranks size their caches from their own free memory, and
     * the leader's scheduler must use the smallest. */
    char ready[64];
    int rn = snprintf(ready, sizeof ready, "ok blocks=%d", ss_runner_num_kv_blocks(runner));
    st = ss_net_send_msg(b.ctrl_fd, SS_MSG_READY, ready, (size_t)rn, ss_now_ms() + 60000);
    if (st == SS_OK)
        st = ss_worker_loop(&b, runner, &e);
    else
        ss_err_set(&e, st, "could not report ready to the leader");
    ss_hangup_watch_stop(watch); /* before shutting down: the leader's hang-up is no failure from here on */
    if (st != SS_OK) {
        SS_LOGE("%s", e.msg);
        /* Peers may be gone and NCCL kernels may still wait for them on the runner's stream: abort the
         * communicators (bounded) before the runner, whose teardown synchronises with that stream. */
        if (!ss_comm_destroy_bounded(tp, wc, 1, 10000)) {
            ss_boot_close(&b);
            return st == SS_ERR_COMM ? SS_EXIT_PEER_LOST : ss_status_exit_code(st); /* leave the runner */
        }
        tp = wc = NULL;
    }
    /* Clean: the runner first: its CUDA graphs hold captured NCCL work that the communicators' finalize
     * waits to be released (the leader releases its own at the same time). */
    ss_runner_destroy(runner);
    if (!ss_comm_destroy_bounded(tp, wc, 0, 30000))
        st = st == SS_OK ? SS_ERR_TIMEOUT : st;
    ss_boot_close(&b);
    return st == SS_OK ? SS_EXIT_OK : (st == SS_ERR_COMM ? SS_EXIT_PEER_LOST : ss_status_exit_code(st));
}

int ss_cli_run_node(const ss_rank_info *info, int64_t join_timeout_s)
{
    /* A node other than the leader's: start this node's other ranks, then be the first of them. */
    pid_t kids[64];
    int nk = 0;
    if (!info->per_process) {
        char exe[4096];
        ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
        if (n <= 0) {
            fprintf(stderr, "shardserve: cannot find its own binary to start local ranks\n");
            return SS_EXIT_FAILURE;
        }
        exe[n] = '\0';
        pid_t me = getpid();
        for (int k = info->rank + 1; k < info->rank + info->gpus_per_node && nk < 64; k++) {
            pid_t pid = fork();
            if (pid == 0) {
                prctl(PR_SET_PDEATHSIG, SIGKILL);
                if (getppid() != me)
                    _exit(4);
                char rank[16], ws[16], lvl[16], join[24];
                snprintf(rank, sizeof rank, "%d", k);
                snprintf(ws, sizeof ws, "%d", info->world);
                snprintf(lvl, sizeof lvl, "%s", ss_log_level_name(ss_log_level_get())); /* this node's --log-level */
                snprintf(join, sizeof join, "%lld", (long long)join_timeout_s); /* (they had the worker's 600 s) */
                char *argv[] = {exe,  "worker", "--leader-addr", (char *)info->leader_addr, "--rank", rank, "--world",
                                ws,   "--log-level", lvl, "--join-timeout", join, NULL};
                execv(exe, argv);
                _exit(127);
            }
            if (pid > 0)
                kids[nk++] = pid;
        }
    }
    int rc = worker_run(info->leader_addr, info->rank, info->world, join_timeout_s, NULL, ss_log_level_get());
    for (int i = 0; i < nk; i++) {
        if (rc != SS_EXIT_OK)
            kill(kids[i], SIGTERM);
        int status;
        waitpid(kids[i], &status, 0);
        if (rc == SS_EXIT_OK && WIFEXITED(status) && WEXITSTATUS(status))
            rc = WEXITSTATUS(status);
    }
    return rc;
}

int ss_cmd_worker(int argc, char **argv, char **env)
{
    const char *leader = NULL, *stamp = NULL, *log_level = "info";
    int64_t rank = -1, world = 0, join_timeout = 600;
    ss_opt opts[] = {
        {"leader-addr", SS_OPT_STR, &leader, "HOST:PORT of the leader's rendezvous"},
        {"rank", SS_OPT_INT, &rank, "this process's rank (1..world-1)"},
        {"world", SS_OPT_INT, &world, "ranks in the replica (tp x pp)"},
        {"join-timeout", SS_OPT_INT, &join_timeout, "seconds to keep trying to reach the leader (default 600)"},
        {"log-level", SS_OPT_STR, &log_level, "debug | info | warn | error (local ranks get their leader's)"},
        {"test-version-stamp", SS_OPT_STR, &stamp, "(tests) pretend to be another build"},
        {NULL, 0, NULL, NULL},
    };
    ss_err e = {{0}};
    ss_status st = ss_opts_parse(opts, argc, argv, 2, env, "worker", &e);
    if (st == SS_ERR_CANCELLED)
        return SS_EXIT_OK;
    if (st == SS_OK && (!leader || rank < 1 || world < 2 || world > 4096 || rank >= world))
        st = ss_err_set(&e, SS_ERR_INVALID_ARG,
                        "worker needs --leader-addr, --world in 2..4096 and --rank in 1..world-1");
    if (st == SS_OK && (join_timeout < 1 || join_timeout > 86400)) /* (a larger one overflowed the deadline) */
        st = ss_err_set(&e, SS_ERR_INVALID_ARG, "--join-timeout must be in 1..86400 seconds (got %lld)",
                        (long long)join_timeout);
    ss_log_level level = SS_LOG_INFO;
    if (st == SS_OK && ss_log_level_parse(log_level, &level) != 0)
        st = ss_err_set(&e, SS_ERR_INVALID_ARG, "--log-level must be debug, info, warn or error (got '%s')", log_level);
    if (st != SS_OK) {
        const ss_opts_src src = {opts, argc, argv, 2, env};
        ss_opts_explain(&src, &e);
        fprintf(stderr, "shardserve worker: %s\n", e.msg);
        return ss_status_exit_code(st);
    }
    return worker_run(leader, (int)rank, (int)world, join_timeout, stamp, level);
}

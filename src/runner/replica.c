/* replica.c — the leader's view of a replica. One rank: the runner in this process. Several ranks:
 * workers (spawned here, or started by a launcher) join through the bootstrap and obey step plans. */
#include "runner/replica.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <poll.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "core/alloc.h"
#include "core/log.h"
#include "core/net.h"
#include "model/forward.h"
#include "runner/bootstrap.h"
#include "runner/hangup_watch.h"
#include "runner/runner.h"

#define REPLICA_LOAD_DEADLINE_MS (30 * 60 * 1000)

struct ss_replica {
    ss_replica_params p;
    ss_runner *runner; /* rank 0's runner */
    ss_comm *tp_comm;
    ss_comm *world;
    int multi;
    ss_boot boot;
    pid_t children[SS_BOOT_MAX_RANKS];
    int n_children;
    int output_rank;
    int broken; /* a step failed: the replica can't be used any more */
    int32_t num_kv_blocks; /* the smallest KV-block count of any rank (each sizes its own cache) */
    int no_graphs;         /* the ranks run decode steps op by op (--no-graphs, SS_NO_GRAPHS) */
    int32_t graph_bucket;  /* else ss_forward_graph_pad's bucket on every rank */
    /* Pipelines (pp > 1) run each step within submit: its output waits here for collect (oldest at
     * q_head). last/last_tokens: the sampling sequences and tokens of the last step, for SS_TOKEN_PREV.
     * (One stage keeps its steps pending in the leader's runner instead: replica_submit_stage.) */
    ss_step_output q_out[SS_DOWNLOAD_SLOTS];
    int q_head, q_n;
    ss_sampled_seqs last;
    int32_t *last_tokens, *plan_tokens;
    int64_t plan_tokens_cap;
    /* The thread that forks the local ranks and lives as long as the replica (see replica_spawn). */
    pthread_t keeper;
    int keeper_started;
    int keeper_hold[2]; /* the keeper blocks reading [0]; destroy closes [1] to release it */
    int keeper_done[2]; /* the keeper writes one byte to [1] once the children are forked */
    int spawn_port, spawn_world, spawn_count;
    ss_status spawn_st;
    ss_err spawn_err;
    /* NCCL replicas: watches the workers' control connections (see replica_on_hangup). */
    ss_hangup_watch *watch;
    _Atomic int lost_rank; /* the first rank whose connection closed, 0 while none */
};

ss_replica_params ss_replica_default_params(void)
{
    ss_replica_params p;
    memset(&p, 0, sizeof p);
    p.tp = 1;
    p.pp = 1;
    p.backend = ss_backend_default_params();
    p.block_size = 16;
    p.max_batch_tokens = 2048;
    p.max_seqs = 256;
    p.nnodes = 1;
    p.comm_timeout_ms = 60000;
    return p;
}

/* Forks local ranks 1..count-1 as `shardserve worker` children that die with the leader. */
static ss_status replica_fork_workers(ss_replica *r, int port, int world, int count, ss_err *err)
{
    char exe[4096];
    if (r->p.worker_exe) {
        snprintf(exe, sizeof exe, "%s", r->p.worker_exe);
    } else {
        ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
        if (n <= 0)
            return ss_err_set(err, SS_ERR_IO, "cannot find the shardserve binary to start local ranks");
        exe[n] = '\0';
    }
    pid_t leader = getpid();
    char lvl[16]; /* the leader's --quiet / --log-level */
    snprintf(lvl, sizeof lvl, "%s", ss_log_level_name(ss_log_level_get()));
    for (int k = 1; k < count && k < world; k++) {
        pid_t pid = fork();
        if (pid < 0)
            return ss_err_set(err, SS_ERR_IO, "starting local rank %d: %s", k, strerror(errno));
        if (pid == 0) {
            prctl(PR_SET_PDEATHSIG, SIGKILL); /* no orphans when the leader dies */
            if (getppid() != leader)
                _exit(4);
            char addr[64], rank[16], ws[16];
            snprintf(addr, sizeof addr, "127.0.0.1:%d", port);
            snprintf(rank, sizeof rank, "%d", k);
            snprintf(ws, sizeof ws, "%d", world);
            char *argv[] = {exe, "worker", "--leader-addr", addr, "--rank", rank, "--world", ws, "--log-level", lvl,
                            NULL};
            execv(exe, argv);
            _exit(127);
        }
        r->children[r->n_children++] = pid;
    }
    return SS_OK;
}

static void *replica_keeper_main(void *arg)
{
    ss_replica *r = arg;
    r->spawn_st = replica_fork_workers(r, r->spawn_port, r->spawn_world, r->spawn_count, &r->spawn_err);
    char c = 1;
    while (write(r->keeper_done[1], &c, 1) < 0 && errno == EINTR) {
    }
    for (;;) { /* until destroy closes the other end */
        ssize_t n = read(r->keeper_hold[0], &c, 1);
        if (n == 0 || (n < 0 && errno != EINTR))
            break;
    }
    return NULL;
}

/* The rendezvous' watch (ss_boot_watch_fn), also asked while the ranks load: a local rank that has exited (before
 * joining: its binary would not run, or it failed before it connected) ends the wait at once, instead of at the
 * 30-minute deadline, and so does the caller's cancel (session 60: a SIGTERM to a server waiting for a node was
 * ignored for those 30 minutes). Looks without reaping (WNOWAIT): replica_reap still collects it. */
static ss_status replica_boot_watch(void *arg, ss_err *err)
{
    const ss_replica *r = arg;
    if (r->p.cancelled && r->p.cancelled(r->p.cancelled_arg))
        return ss_err_set(err, SS_ERR_CANCELLED, "stopped while waiting for the replica's %d ranks",
                          r->p.tp * r->p.pp);
    for (int i = 0; i < r->n_children; i++) {
        siginfo_t si;
        memset(&si, 0, sizeof si);
        if (waitid(P_PID, (id_t)r->children[i], &si, WEXITED | WNOHANG | WNOWAIT) != 0 || si.si_pid != r->children[i])
            continue;
        const char *exe = r->p.worker_exe ? r->p.worker_exe : "this shardserve binary (/proc/self/exe)";
        if (si.si_code == CLD_EXITED)
            return ss_err_set(err, SS_ERR_COMM, "local rank %d (pid %d) exited with status %d before the replica was "
                              "up%s%s", i + 1, (int)si.si_pid, si.si_status,
                              si.si_status == 127 ? ": could not run " : " (its log says why)",
                              si.si_status == 127 ? exe : "");
        return ss_err_set(err, SS_ERR_COMM, "local rank %d (pid %d) was killed by signal %d before the replica was up",
                          i + 1, (int)si.si_pid, si.si_status);
    }
    return SS_OK;
}

/* Starts the local ranks. PR_SET_PDEATHSIG fires when the *thread* that forked a child ends, not the
 * process: forked from the server's loader thread, which ends after loading, every local worker was
 * killed right after readiness (`serve --tp 2` failed its first request). So a keeper thread that lives
 * until ss_replica_destroy forks them. */
static ss_status replica_spawn(ss_replica *r, int port, int world, int count, ss_err *err)
{
    if (pipe2(r->keeper_hold, O_CLOEXEC) != 0 || pipe2(r->keeper_done, O_CLOEXEC) != 0)
        return ss_err_set(err, SS_ERR_IO, "starting local ranks: pipe: %s", strerror(errno));
    r->spawn_port = port, r->spawn_world = world, r->spawn_count = count;
    if (pthread_create(&r->keeper, NULL, replica_keeper_main, r) != 0)
        return ss_err_set(err, SS_ERR_IO, "starting local ranks: cannot start the keeper thread");
    r->keeper_started = 1;
    char c;
    ssize_t n;
    while ((n = read(r->keeper_done[0], &c, 1)) < 0 && errno == EINTR) {
    }
    if (n != 1)
        return ss_err_set(err, SS_ERR_IO, "starting local ranks: the keeper thread did not report");
    if (r->spawn_st != SS_OK && err)
        *err = r->spawn_err;
    return r->spawn_st;
}

/* Releases the keeper thread (after the children are reaped: its end would signal them). */
static void replica_stop_keeper(ss_replica *r)
{
    if (r->keeper_started) {
        close(r->keeper_hold[1]);
        r->keeper_hold[1] = -1;
        pthread_join(r->keeper, NULL);
        r->keeper_started = 0;
    }
    for (int i = 0; i < 2; i++) {
        if (r->keeper_hold[i] >= 0)
            close(r->keeper_hold[i]);
        if (r->keeper_done[i] >= 0)
            close(r->keeper_done[i]);
        r->keeper_hold[i] = r->keeper_done[i] = -1;
    }
}

/* A worker that dies mid-step leaves the leader's collectives waiting for it: the peer kernels spin and
 * NCCL waits, until the communicator's deadline (60 s by default; session 13 measured the whole 20 s of
 * --comm-timeout 20 at tp 2). But its control connection closes at once, so a hang-up watcher on those
 * connections stops the communicators (ss_comm_nccl_stop: any thread), which makes the spinning kernels
 * give up and the step fail now, naming the rank. tcp communicators see the closed socket themselves, and
 * their stop closes fds a step may be using: there the watch only records the rank, for the messages and
 * for the server, which asks ss_replica_lost_rank while idle (session 60: a cpu worker that died between
 * requests was noticed only by the next request). */
static void replica_on_hangup(void *ctx, int index)
{
    ss_replica *r = ctx;
    const int k = index + 1; /* the watch covers ranks 1 .. world-1 */
    atomic_store(&r->lost_rank, k);
    if (r->boot.settings.device != SS_DEVICE_CUDA) {
        SS_LOGE("rank %d closed its control connection (its process is gone?)", k);
        return;
    }
    SS_LOGE("rank %d closed its control connection (its process is gone?): stopping the communicators", k);
    ss_comm_stop(r->tp_comm);
    ss_comm_stop(r->world);
}

static void replica_start_watch(ss_replica *r)
{
    ss_err e;
    if (ss_hangup_watch_start(&r->boot.peer_ctrl[1], r->boot.world - 1, replica_on_hangup, r, &r->watch, &e) != SS_OK)
        SS_LOGW("leader: %s; a lost worker shows only at the deadline", e.msg);
}

/* A worker's READY says "ok blocks=N": lowers the replica's KV-block count to N (rank k's) if smaller. */
static ss_status replica_take_blocks(ss_replica *r, int k, const char *msg, size_t len, int *min_rank, ss_err *err)
{
    char text[64];
    if (len >= sizeof text)
        return ss_err_set(err, SS_ERR_COMM, "rank %d's ready message is %zu bytes long", k, len);
    memcpy(text, msg, len);
    text[len] = 0;
    static const char head[] = "ok blocks=";
    const char *digits = text + sizeof head - 1;
    char *end = NULL;
    long n = 0;
    errno = 0;
    if (!strncmp(text, head, sizeof head - 1) && *digits >= '0' && *digits <= '9') /* no sign, no blanks */
        n = strtol(digits, &end, 10);
    if (!end || *end || errno || n < 1 || n > INT32_MAX)
        return ss_err_set(err, SS_ERR_COMM, "rank %d's ready message '%s' gives no KV-block count", k, text);
    if (n < r->num_kv_blocks) {
        r->num_kv_blocks = (int32_t)n;
        *min_rank = k;
    }
    return SS_OK;
}

/* One look at the control connections of the ranks not ready yet (waiting up to timeout_ms): reads each message that
 * has come, READY (ready[k] = 1, *left - 1, the smallest KV-block count taken, *min_rank: whose) or LOAD_ERROR (the
 * error: its text names the cause, and its status is the worker's own, so a bad model is the model's fault everywhere,
 * not a lost peer). */
static ss_status replica_read_ready(ss_replica *r, int *ready, int *left, int timeout_ms, int *min_rank, ss_err *err)
{
    struct pollfd pf[SS_BOOT_MAX_RANKS];
    int who[SS_BOOT_MAX_RANKS], n = 0;
    for (int k = 1; k < r->boot.world; k++)
        if (!ready[k]) {
            who[n] = k;
            pf[n++] = (struct pollfd){r->boot.peer_ctrl[k], POLLIN, 0};
        }
    if (poll(pf, (nfds_t)n, timeout_ms) < 0 && errno != EINTR)
        return ss_err_set(err, SS_ERR_IO, "waiting for the ranks to load: poll: %s", strerror(errno));
    for (int j = 0; j < n; j++) {
        if (!pf[j].revents)
            continue;
        const int k = who[j];
        uint32_t type;
        uint8_t *msg = NULL;
        size_t len = 0;
        /* its first byte is in: the rest of a small message follows at once */
        ss_status st = ss_net_recv_msg(pf[j].fd, &type, &msg, &len, 1u << 16, ss_now_ms() + 10000);
        if (st == SS_OK && type == SS_MSG_READY) {
            st = replica_take_blocks(r, k, (const char *)msg, len, min_rank, err);
        } else if (st == SS_OK && type == SS_MSG_LOAD_ERROR) {
            const char *text;
            int tl;
            st = ss_boot_parse_load_error(msg, len, &text, &tl);
            /* The worker's own flags were checked when it started: an invalid argument at its load is this
             * replica's bad model or engine input (exit 3), not a usage error of the leader's command (exit 2). */
            if (st == SS_ERR_INVALID_ARG)
                st = SS_ERR_FORMAT;
            st = ss_err_set(err, st, "rank %d failed to load: %.*s", k, tl, text);
        } else {
            st = ss_err_set(err, st == SS_OK ? SS_ERR_COMM : st, "rank %d did not become ready (%s)", k,
                            st == SS_OK ? "unexpected message" : ss_status_str(st));
        }
        ss_free(msg);
        SS_CHECK(st);
        ready[k] = 1;
        (*left)--;
    }
    return SS_OK;
}

/* Waits for every worker's READY (replica_read_ready), asking the watch (local ranks, the caller's cancel) every
 * SS_BOOT_WATCH_MS. When the watch fails, what the ranks sent is read once more first: a local rank that failed to
 * load sent LOAD_ERROR before it exited, and its reason must win over "local rank 1 exited" (helper-74). */
static ss_status replica_wait_ready(ss_replica *r, int *min_rank, ss_err *err)
{
    const int64_t deadline = ss_now_ms() + REPLICA_LOAD_DEADLINE_MS;
    int ready[SS_BOOT_MAX_RANKS] = {0}, left = r->boot.world - 1;
    while (left > 0) {
        SS_CHECK(replica_read_ready(r, ready, &left, SS_BOOT_WATCH_MS, min_rank, err));
        if (left == 0)
            break;
        ss_status st = replica_boot_watch(r, err);
        if (st != SS_OK) {
            SS_CHECK(replica_read_ready(r, ready, &left, 0, min_rank, err));
            return st;
        }
        if (ss_now_ms() >= deadline)
            return ss_err_set(err, SS_ERR_TIMEOUT, "%d of %d ranks did not load within %d minutes", left,
                              r->boot.world - 1, REPLICA_LOAD_DEADLINE_MS / 60000);
    }
    return SS_OK;
}

static ss_status replica_create_multi(ss_replica *r, ss_err *err)
{
    const ss_replica_params *p = &r->p;
    int world = p->tp * p->pp;
    if (world > SS_BOOT_MAX_RANKS)
        return ss_err_set(err, SS_ERR_INVALID_ARG, "tp x pp = %d exceeds %d ranks", world, SS_BOOT_MAX_RANKS);
    ss_boot_settings s;
    memset(&s, 0, sizeof s);
    snprintf(s.model_dir, sizeof s.model_dir, "%s", p->model_dir);
    s.tp = p->tp;
    s.pp = p->pp;
    s.device = p->backend.device == SS_DEVICE_AUTO
                   ? (ss_backend_cuda_available() ? SS_DEVICE_CUDA : SS_DEVICE_CPU)
                   : p->backend.device;
    s.n_threads = p->backend.n_threads;
    s.kv_type = (int32_t)p->backend.kv_type;
    s.linear_type = (int32_t)p->backend.linear_type;
    s.block_size = p->block_size;
    s.num_kv_blocks = p->num_kv_blocks;
    s.max_seq_len = p->max_seq_len;
    s.max_seqs = p->max_seqs;
    s.max_batch_tokens = p->max_batch_tokens;
    s.comm_timeout_ms = p->comm_timeout_ms > 0 ? p->comm_timeout_ms : 60000;
    s.no_graphs = r->no_graphs; /* the leader's switches, handed to every rank (see ss_replica_create) */
    s.graph_bucket = r->graph_bucket;
    s.gpus_per_node = p->gpus_per_node > 0 ? p->gpus_per_node : (p->leader_addr ? 1 : world);
#ifdef SS_HAVE_CUDA
    if (s.device == SS_DEVICE_CUDA)
        for (int i = 0; i <= p->pp; i++)
            SS_CHECK(ss_comm_nccl_unique_id(s.nccl_ids[i], err));
#endif
    int lfd = -1, port = 0;
    char host[256] = "127.0.0.1";
    int want_port = 0;
    if (p->leader_addr) {
        SS_CHECK(ss_net_split_addr(p->leader_addr, host, sizeof host, &want_port, err));
        snprintf(host, sizeof host, "0.0.0.0");
    }
    SS_CHECK(ss_boot_leader_listen(host, want_port, &lfd, &port, err));
    SS_LOGI("leader: waiting for %d ranks on port %d", world - 1, port);
    ss_status st = SS_OK;
    int local = p->local_ranks > 0 ? p->local_ranks : (p->leader_addr ? s.gpus_per_node : world);
    if (local > 1)
        st = replica_spawn(r, port, world, local, err);
    if (st == SS_OK)
        st = ss_boot_leader(lfd, world, &s, ss_now_ms() + REPLICA_LOAD_DEADLINE_MS, replica_boot_watch, r, &r->boot,
                            err);
    close(lfd);
    SS_CHECK(st);
    r->multi = 1;
    r->output_rank = (p->pp - 1) * p->tp;
    SS_CHECK(ss_boot_make_runner(&r->boot, &r->runner, &r->tp_comm, &r->world, err));
    r->num_kv_blocks = ss_runner_num_kv_blocks(r->runner);
    int min_rank = 0;
    SS_CHECK(replica_wait_ready(r, &min_rank, err));
    if (min_rank > 0)
        SS_LOGW("KV cache: %d blocks, rank %d's (rank 0 has %d): the scheduler uses the smallest count of any rank",
                r->num_kv_blocks, min_rank, ss_runner_num_kv_blocks(r->runner));
    if (ss_replica_max_seq_len(r) < ss_runner_max_seq_len(r->runner))
        SS_LOGI("context: %d tokens, what rank %d's KV cache holds (rank 0's: %d)", ss_replica_max_seq_len(r), min_rank,
                ss_runner_max_seq_len(r->runner));
    replica_start_watch(r);
    SS_LOGI("replica ready: %d ranks (tp %d x pp %d) on %s", world, p->tp, p->pp,
            ss_runner_device_desc(r->runner));
    return SS_OK;
}

ss_status ss_replica_create(const ss_replica_params *params, ss_replica **out, ss_err *err)
{
    *out = NULL;
    ss_replica *r = ss_calloc(1, sizeof *r);
    if (!r)
        return ss_err_set(err, SS_ERR_NOMEM, "out of memory");
    r->p = *params;
    for (int i = 0; i < SS_BOOT_MAX_RANKS; i++)
        r->boot.peer_ctrl[i] = r->boot.mesh[i] = -1;
    r->keeper_hold[0] = r->keeper_hold[1] = r->keeper_done[0] = r->keeper_done[1] = -1;
    r->boot.ctrl_fd = -1;
    ss_status st;
    if (params->tp < 1 || params->pp < 1) {
        st = ss_err_set(err, SS_ERR_INVALID_ARG, "tp and pp must be >= 1 (got %d, %d)", params->tp, params->pp);
        goto fail;
    }
    /* SS_NO_GRAPHS (a switch for bisecting faults) and SS_GRAPH_BUCKET are read here, by the leader only: every
     * rank of a tensor-parallel group must agree on graph use and padding, as a graph step pads its collectives */
    r->no_graphs = params->no_graphs || getenv("SS_NO_GRAPHS") != NULL;
    r->graph_bucket = ss_forward_graph_bucket();
    if (params->tp * params->pp > 1) {
        SS_CHECK_GOTO(replica_create_multi(r, err), st, fail);
    } else {
        SS_CHECK_GOTO(ss_comm_create_single(&r->tp_comm, err), st, fail);
        ss_runner_params rp = {params->model_dir, 1, 1, 0, params->backend, params->block_size,
                               params->num_kv_blocks, params->max_seq_len, params->max_batch_tokens,
                               params->max_seqs, r->no_graphs, r->graph_bucket};
        ss_runner_links links = {r->tp_comm, NULL, 0};
        SS_CHECK_GOTO(ss_runner_create(&rp, &links, &r->runner, err), st, fail);
    }
    *out = r;
    return SS_OK;
fail:
    ss_replica_destroy(r);
    return st;
}

/* After a failed step: stops the communicators at once, without waiting on anything. NCCL's abort may
 * wait for peers that are still alive (observed: a leader hung in it, so its scheduler never failed the
 * requests), so NCCL communicators only stop here — their own spinning kernels give up — and are
 * aborted in destroy, once the other ranks are gone. tcp ones abort now (that only closes sockets). */
static void replica_stop_comms(ss_replica *r)
{
    ss_comm_stop(r->tp_comm);
    ss_comm_stop(r->world);
}

static void replica_free_queue(ss_replica *r)
{
    for (int i = 0; i < SS_DOWNLOAD_SLOTS; i++)
        ss_step_output_clear(&r->q_out[i]);
    ss_sampled_seqs_free(&r->last);
    ss_free(r->last_tokens);
    ss_free(r->plan_tokens);
}

/* Pipelines: waits until the output rank's step output starts to arrive, or a rank is lost (the
 * watcher saw its connection close: the output would then only come at the deadline, if at all), or the
 * deadline passes (the receive after this then reports it). */
static ss_status replica_wait_output(ss_replica *r, int64_t deadline, ss_err *err)
{
    struct pollfd pf = {r->boot.peer_ctrl[r->output_rank], POLLIN, 0};
    while (ss_now_ms() < deadline) {
        /* the output rank's own hang-up may follow its report of the step's failure: the receive reads that */
        const int lost = atomic_load(&r->lost_rank);
        if (lost > 0 && lost != r->output_rank)
            return ss_err_set(err, SS_ERR_COMM, "rank %d is lost (its control connection closed)", lost);
        if (poll(&pf, 1, 20) != 0) /* data, a hang-up or an error: the receive tells which */
            return SS_OK;
    }
    return SS_OK;
}

/* After a failed step of several ranks: names the rank that went away when a socket says so (a dead
 * process closes them all), marks the replica broken (its ranks may be mid-step) and stops its comms.
 * reported: the rank that sent the step's error (-1: none), which closes its socket after, so it is looked at
 * last: the rank it lost is the one to name (session 60: "rank 2 is lost" for a killed rank 3). Returns the status
 * to report. */
static ss_status replica_failed(ss_replica *r, ss_status st, int reported, ss_err *err)
{
    /* the watcher names the lowest rank of those whose hang-ups one poll saw: the reporter, which closes after its
     * report, may hide the rank it lost (helper-74), so then the sockets are looked at, the reporter's last */
    int lost = atomic_load(&r->lost_rank);
    if (lost > 0 && lost == reported)
        lost = 0;
    if (lost > 0 && !strstr(err->msg, "is lost") &&
        (st == SS_ERR_COMM || st == SS_ERR_TIMEOUT || st == SS_ERR_CANCELLED)) { /* not a fault of our own */
        ss_err_prefix(err, "rank %d is lost (its control connection closed)", lost);
        st = SS_ERR_COMM;
    }
    for (int i = 1; i < r->boot.world && (st == SS_ERR_COMM || st == SS_ERR_TIMEOUT) && !strstr(err->msg, "is lost");
         i++) {
        const int k = reported <= 0 ? i : i < reported ? i : i + 1 < r->boot.world ? i + 1 : reported;
        /* a dead peer's FIN may still be on its way: give each socket a moment */
        if (ss_net_hung_up(r->boot.peer_ctrl[k], 100)) {
            ss_err_prefix(err, "rank %d is lost", k);
            break;
        }
    }
    r->broken = 1;
    replica_stop_comms(r);
    /* a step that timed out waited on a hung rank: the replica is gone as with a lost one (503 and exit 4, not
     * the 504 of a request's own deadline) */
    return st == SS_ERR_TIMEOUT ? SS_ERR_COMM : st;
}

/* Sends the step plan to every worker. */
static ss_status replica_send_plan(ss_replica *r, const ss_step_plan *plan, ss_err *err)
{
    uint8_t *buf = NULL;
    size_t len = 0;
    SS_CHECK(ss_step_plan_encode(plan, &buf, &len, err));
    int64_t deadline = ss_now_ms() + r->p.comm_timeout_ms;
    ss_status st = SS_OK;
    for (int k = 1; k < r->boot.world && st == SS_OK; k++) {
        st = ss_net_send_msg(r->boot.peer_ctrl[k], SS_MSG_PLAN, buf, len, deadline);
        if (st != SS_OK)
            st = ss_err_set(err, SS_ERR_COMM, "rank %d is lost (sending the step plan failed: %s)", k,
                            ss_status_str(st));
    }
    ss_free(buf);
    return st;
}

/* One step on every rank, start to end (several ranks in pipeline stages). */
static ss_status replica_step_multi(ss_replica *r, const ss_step_plan *plan, ss_step_output *out, ss_err *err)
{
    memset(out, 0, sizeof *out);
    ss_status st = replica_send_plan(r, plan, err);
    if (st == SS_OK)
        st = ss_runner_step(r->runner, plan, out, err);
    /* one deadline for the output's wait and its receipt (session 60: two made a silent output rank fail at twice
     * --comm-timeout) */
    const int64_t out_deadline = ss_now_ms() + r->p.comm_timeout_ms;
    int reported = -1;
    if (st == SS_OK && r->output_rank != 0)
        st = replica_wait_output(r, out_deadline, err);
    if (st == SS_OK && r->output_rank != 0) {
        uint32_t type;
        uint8_t *msg = NULL;
        size_t ml = 0;
        st = ss_net_recv_msg(r->boot.peer_ctrl[r->output_rank], &type, &msg, &ml, 1u << 30, out_deadline);
        if (st != SS_OK)
            st = ss_err_set(err, SS_ERR_COMM, "rank %d is lost (no step output: %s)", r->output_rank,
                            ss_status_str(st));
        else if (type == SS_MSG_ERROR)
            st = ss_err_set(err, SS_ERR_COMM, "rank %d failed the step: %.*s", (reported = r->output_rank), (int)ml,
                            msg);
        else if (type != SS_MSG_OUTPUT)
            st = ss_err_set(err, SS_ERR_COMM, "rank %d sent message %u instead of a step output", r->output_rank, type);
        else
            st = ss_step_output_decode(msg, ml, out, err);
        ss_free(msg);
    }
    if (st != SS_OK) {
        st = replica_failed(r, st, reported, err);
        ss_step_output_clear(out);
    }
    return st;
}

/* r->plan_tokens holds at least n tokens. */
static ss_status replica_plan_tokens(ss_replica *r, int64_t n, ss_err *err)
{
    if (r->plan_tokens_cap >= n)
        return SS_OK;
    int32_t *p = ss_realloc(r->plan_tokens, (size_t)n * 4);
    if (!p)
        return ss_err_set(err, SS_ERR_NOMEM, "out of memory");
    r->plan_tokens = p;
    r->plan_tokens_cap = n;
    return SS_OK;
}

/* One stage (tp ranks): every rank runs the step without waiting for it, the leader's runner keeps it
 * pending, and collect waits. Steps whose tokens the device chooses leave them on every rank, so the next
 * plan's SS_TOKEN_PREV goes to the workers as it is; otherwise it is resolved here first (waiting for the
 * previous step's tokens). The plan is checked before any rank sees it: a refused plan changes nothing. */
static ss_status replica_submit_stage(ss_replica *r, const ss_step_plan *plan, ss_err *err)
{
    if (ss_runner_pending(r->runner) == SS_DOWNLOAD_SLOTS)
        return ss_err_set(err, SS_ERR_INVALID_ARG, "step plan: %d steps are pending already (collect one first)",
                          SS_DOWNLOAD_SLOTS);
    SS_CHECK(ss_runner_check_plan(r->runner, plan, err));
    ss_step_plan rp = *plan;
    int prev = 0;
    for (int64_t t = 0; t < plan->n_tokens && !prev; t++)
        prev = plan->tokens[t] == SS_TOKEN_PREV;
    ss_status st = SS_OK;
    if (prev && !ss_runner_prev_fed_everywhere(r->runner)) {
        SS_CHECK(replica_plan_tokens(r, plan->n_tokens, err));
        st = ss_runner_resolve_prev(r->runner, plan, r->plan_tokens, err);
        rp.tokens = r->plan_tokens;
    }
    if (st == SS_OK)
        st = replica_send_plan(r, &rp, err);
    if (st == SS_OK)
        st = ss_runner_submit(r->runner, &rp, err);
    return st == SS_OK ? SS_OK : replica_failed(r, st, -1, err);
}

/* plan with its SS_TOKEN_PREV tokens replaced by the last step's tokens (several ranks: the workers get
 * plans with real tokens). *resolved points at plan or at a copy in r. */
static ss_status replica_resolve_prev(ss_replica *r, const ss_step_plan *plan, ss_step_plan *resolved, ss_err *err)
{
    *resolved = *plan;
    int64_t t = 0;
    int copied = 0;
    int32_t hint = 0;
    for (int32_t s = 0; s < plan->n_seqs; s++) {
        for (int32_t i = 0; i < plan->seqs[s].n_tokens; i++, t++) {
            if (t >= plan->n_tokens || plan->tokens[t] != SS_TOKEN_PREV)
                continue;
            if (!copied) {
                SS_CHECK(replica_plan_tokens(r, plan->n_tokens, err));
                memcpy(r->plan_tokens, plan->tokens, (size_t)plan->n_tokens * 4);
                resolved->tokens = r->plan_tokens;
                copied = 1;
            }
            int32_t row = ss_sampled_seqs_find(&r->last, plan->seqs[s].seq_id, hint);
            if (row < 0)
                return ss_err_set(err, SS_ERR_INVALID_ARG,
                                  "step plan: sequence %llu asks for its token of the previous step, where it did not sample",
                                  (unsigned long long)plan->seqs[s].seq_id);
            r->plan_tokens[t] = r->last_tokens[row];
            hint = row + 1;
        }
    }
    return SS_OK;
}

ss_status ss_replica_submit(ss_replica *r, const ss_step_plan *plan, ss_err *err)
{
    if (r->broken)
        return ss_err_set(err, SS_ERR_COMM, "the replica lost a rank earlier and cannot run steps");
    if (!r->multi)
        return ss_runner_submit(r->runner, plan, err);
    if (r->p.pp == 1)
        return replica_submit_stage(r, plan, err);
    if (r->q_n == SS_DOWNLOAD_SLOTS)
        return ss_err_set(err, SS_ERR_INVALID_ARG, "step plan: %d steps are pending already (collect one first)", r->q_n);
    ss_step_plan rp;
    SS_CHECK(replica_resolve_prev(r, plan, &rp, err));
    int k = (r->q_head + r->q_n) % SS_DOWNLOAD_SLOTS;
    ss_step_output *out = &r->q_out[k];
    r->last.n = 0;
    SS_CHECK(replica_step_multi(r, &rp, out, err));
    ss_status st = ss_sampled_seqs_record(&r->last, plan, err);
    if (st == SS_OK && out->n == r->last.n && out->n > 0) {
        int32_t *lt = ss_realloc(r->last_tokens, (size_t)out->n * 4);
        if (!lt)
            st = ss_err_set(err, SS_ERR_NOMEM, "out of memory");
        else
            memcpy(r->last_tokens = lt, out->token, (size_t)out->n * 4);
    } else if (st == SS_OK) {
        r->last.n = 0;
    }
    if (st != SS_OK) {
        ss_step_output_clear(out);
        r->last.n = 0;
        return st;
    }
    r->q_n++;
    return SS_OK;
}

ss_status ss_replica_collect(ss_replica *r, ss_step_output *out, ss_err *err)
{
    memset(out, 0, sizeof *out);
    if (!r->multi)
        return ss_runner_collect(r->runner, out, err);
    if (r->p.pp == 1) {
        if (ss_runner_pending(r->runner) == 0)
            return ss_err_set(err, SS_ERR_INVALID_ARG, "no step is pending");
        if (r->broken) /* its exchanges may have run on garbage once the communicators stopped */
            return ss_err_set(err, SS_ERR_COMM, "the replica lost a rank earlier and cannot run steps");
        ss_status st = ss_runner_collect(r->runner, out, err);
        return st == SS_OK ? SS_OK : replica_failed(r, st, -1, err);
    }
    if (r->q_n == 0)
        return ss_err_set(err, SS_ERR_INVALID_ARG, "no step is pending");
    *out = r->q_out[r->q_head]; /* ownership moves to the caller */
    memset(&r->q_out[r->q_head], 0, sizeof *out);
    r->q_head = (r->q_head + 1) % SS_DOWNLOAD_SLOTS;
    r->q_n--;
    return SS_OK;
}

int ss_replica_pending(const ss_replica *r)
{
    return r->multi && r->p.pp > 1 ? r->q_n : ss_runner_pending(r->runner);
}

ss_status ss_replica_ready(ss_replica *r, int *ready, ss_err *err)
{
    *ready = 1;
    if (r->multi && r->p.pp > 1) /* the stages' steps end within submit */
        return SS_OK;
    return ss_runner_ready(r->runner, ready, err);
}

int ss_replica_overlaps(const ss_replica *r)
{
    return (!r->multi || r->p.pp == 1) && ss_runner_async(r->runner);
}

int ss_replica_lost_rank(ss_replica *r)
{
    return atomic_load(&r->lost_rank);
}

int32_t ss_replica_graph_rows(const ss_replica *r, int32_t n)
{
    if (r->no_graphs || r->p.pp > 1 || !ss_runner_async(r->runner) || n < 1 || n > ss_replica_max_seqs(r) ||
        n > SS_FWD_GRAPH_MAX_TOKENS)
        return 0;
    return (int32_t)ss_forward_graph_pad(n, r->graph_bucket);
}

ss_status ss_replica_step(ss_replica *r, const ss_step_plan *plan, ss_step_output *out, ss_err *err)
{
    memset(out, 0, sizeof *out);
    SS_CHECK(ss_replica_submit(r, plan, err));
    return ss_replica_collect(r, out, err);
}

const ss_model_config *ss_replica_config(const ss_replica *r)
{
    return ss_runner_config(r->runner);
}

int32_t ss_replica_num_kv_blocks(const ss_replica *r)
{
    return r->multi ? r->num_kv_blocks : ss_runner_num_kv_blocks(r->runner);
}

int32_t ss_replica_block_size(const ss_replica *r)
{
    return ss_runner_block_size(r->runner);
}

int32_t ss_replica_max_seq_len(const ss_replica *r)
{
    /* each rank caps its context at what its own cache holds; the replica's is the smallest */
    int32_t msl = ss_runner_max_seq_len(r->runner);
    int64_t kv_tokens = (int64_t)ss_replica_num_kv_blocks(r) * ss_runner_block_size(r->runner);
    return kv_tokens < msl ? (int32_t)kv_tokens : msl;
}

ss_linear_type ss_replica_linear_type(const ss_replica *r)
{
    return ss_runner_linear_type(r->runner);
}

int64_t ss_replica_max_batch_tokens(const ss_replica *r)
{
    return ss_runner_max_batch_tokens(r->runner);
}

int32_t ss_replica_max_seqs(const ss_replica *r)
{
    return ss_runner_max_seqs(r->runner);
}

/* Waits up to timeout_ms for the children, then kills what is left. */
static void replica_reap(ss_replica *r, int timeout_ms)
{
    int64_t deadline = ss_now_ms() + timeout_ms;
    for (int i = 0; i < r->n_children; i++) {
        for (;;) {
            int status;
            pid_t w = waitpid(r->children[i], &status, WNOHANG);
            if (w == r->children[i] || (w < 0 && errno == ECHILD))
                break;
            if (ss_now_ms() > deadline) {
                kill(r->children[i], SIGKILL);
                waitpid(r->children[i], &status, 0);
                break;
            }
            struct timespec ts = {0, 20 * 1000000};
            nanosleep(&ts, NULL);
        }
    }
    r->n_children = 0;
}

void ss_replica_destroy(ss_replica *r)
{
    if (!r)
        return;
    ss_hangup_watch_stop(r->watch); /* before the workers leave: their hang-ups are no failure now */
    r->watch = NULL;
    if (r->multi && !r->broken) {
        ss_step_plan bye;
        memset(&bye, 0, sizeof bye);
        bye.flags = SS_PLAN_SHUTDOWN;
        uint8_t *buf = NULL;
        size_t len = 0;
        ss_err e;
        if (ss_step_plan_encode(&bye, &buf, &len, &e) != SS_OK)
            r->broken = 1;
        for (int k = 1; k < r->boot.world && !r->broken; k++)
            if (ss_net_send_msg(r->boot.peer_ctrl[k], SS_MSG_PLAN, buf, len, ss_now_ms() + 2000) != SS_OK)
                r->broken = 1; /* that rank will not release its communicators with us: abort ours */
        ss_free(buf);
    }
    if (r->multi && !r->broken) {
        /* The workers now release their runners, then their communicators: do the same at the same time.
         * The runner goes first: its CUDA graphs hold NCCL work captured in them, which NCCL's finalize
         * waits to be released (with the communicators first, finalize hung to its deadline on every rank
         * of a tp 2 replica on 2 x H200, session 4). Finalize is bounded (comm_nccl.c) and so is the whole
         * release: a slow or lost worker must not hold the leader. */
        ss_runner_destroy(r->runner);
        r->runner = NULL;
        ss_comm *tp = r->tp_comm, *world = r->world;
        r->tp_comm = r->world = NULL;
        if (!ss_comm_destroy_bounded(tp, world, 0, 30000)) {
            ss_boot_close(&r->boot);
            replica_reap(r, 5000);
            replica_stop_keeper(r);
            ss_free(r);
            return;
        }
    }
    ss_boot_close(&r->boot);
    if (!r->multi) /* never came up (a failure or a signal while starting): local ranks still joining go now */
        for (int i = 0; i < r->n_children; i++)
            kill(r->children[i], SIGTERM);
    replica_reap(r, 5000);
    replica_stop_keeper(r);
    if (r->broken) {
        /* abort (NCCL: releases its kernels that wait for the lost peers) before the runner frees memory.
         * 3 s: a replica that lost a worker exits for a restart, and a stuck abort only delays that (with 10 s,
         * session 13's kill -9 of a tp 2 worker took 11 s to exit, 10 of them here, stuck). */
        ss_comm *tp = r->tp_comm, *world = r->world;
        r->tp_comm = r->world = NULL;
        if (!ss_comm_destroy_bounded(tp, world, 1, 3000)) {
            /* the runner's device memory may still be in use by a hung collective: leak it */
            replica_free_queue(r);
            ss_free(r);
            return;
        }
    }
    ss_comm_destroy(r->tp_comm);
    ss_comm_destroy(r->world);
    ss_runner_destroy(r->runner);
    replica_free_queue(r);
    ss_free(r);
}

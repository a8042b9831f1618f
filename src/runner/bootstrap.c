/* bootstrap.c — rendezvous at the leader (hello/welcome/ready over TCP with deadlines), the data-plane
 * mesh between all ranks, and building each rank's comms (tcp mesh on cpu, NCCL on cuda). */
#include "runner/bootstrap.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "core/alloc.h"
#include "core/log.h"
#include "core/net.h"
#include "core/wire.h"

#define BOOT_STAMP_MAX 256

typedef struct boot_peer {
    char host[64];
    int32_t port;
} boot_peer;

void ss_boot_stamp(char *buf, size_t cap)
{
#ifdef SS_HAVE_CUDA
    const char *dev = "cuda+nccl";
#else
    const char *dev = "cpu-only";
#endif
    snprintf(buf, cap, "shardserve %s; engine format 1; step protocol 2; %s", SS_VERSION, dev);
}

static void boot_init(ss_boot *b, int rank, int world)
{
    memset(b, 0, sizeof *b);
    b->rank = rank;
    b->world = world;
    b->ctrl_fd = -1;
    for (int i = 0; i < SS_BOOT_MAX_RANKS; i++)
        b->peer_ctrl[i] = b->mesh[i] = -1;
}

void ss_boot_close(ss_boot *b)
{
    if (b->ctrl_fd >= 0)
        close(b->ctrl_fd);
    for (int i = 0; i < SS_BOOT_MAX_RANKS; i++) {
        if (b->peer_ctrl[i] >= 0)
            close(b->peer_ctrl[i]);
        if (b->mesh[i] >= 0)
            close(b->mesh[i]);
        b->peer_ctrl[i] = b->mesh[i] = -1;
    }
    b->ctrl_fd = -1;
}

ss_status ss_boot_leader_listen(const char *host, int port, int *lfd, int *bound_port, ss_err *err)
{
    return ss_net_listen(host, port, lfd, bound_port, err);
}

/* Connects to lower ranks and accepts higher ones on the data listener. */
static ss_status boot_mesh(ss_boot *b, int dfd, const boot_peer *peers, const char *leader_host, int64_t deadline,
                           ss_err *err)
{
    for (int j = 0; j < b->rank; j++) {
        const char *h = peers[j].host[0] ? peers[j].host : leader_host;
        int fd;
        ss_status st = ss_net_connect(h, peers[j].port, deadline, &fd, err);
        if (st != SS_OK)
            return ss_err_set(err, st, "rank %d: data-plane connection to rank %d at %s:%d failed", b->rank, j, h,
                              peers[j].port);
        uint32_t me = (uint32_t)b->rank;
        if (ss_net_write_all(fd, &me, 4, deadline) != SS_OK) {
            close(fd);
            return ss_err_set(err, SS_ERR_COMM, "rank %d: data-plane hello to rank %d failed", b->rank, j);
        }
        b->mesh[j] = fd;
    }
    for (int k = b->rank + 1; k < b->world; k++) {
        int fd;
        ss_status st = ss_net_accept(dfd, deadline, &fd, err);
        if (st != SS_OK)
            return ss_err_set(err, st, "rank %d: waiting for data-plane connections from higher ranks", b->rank);
        uint32_t who = 0;
        if (ss_net_read_all(fd, &who, 4, deadline) != SS_OK || who <= (uint32_t)b->rank ||
            who >= (uint32_t)b->world || b->mesh[who] >= 0) {
            close(fd);
            return ss_err_set(err, SS_ERR_COMM, "rank %d: bad data-plane hello (rank %u)", b->rank, who);
        }
        b->mesh[who] = fd;
    }
    return SS_OK;
}

ss_status ss_boot_leader(int lfd, int world, const ss_boot_settings *settings, int64_t deadline_ms,
                         ss_boot_watch_fn watch, void *watch_arg, ss_boot *out, ss_err *err)
{
    boot_init(out, 0, world);
    out->settings = *settings;
    if (world < 2 || world > SS_BOOT_MAX_RANKS)
        return ss_err_set(err, SS_ERR_INVALID_ARG, "world size %d outside 2..%d", world, SS_BOOT_MAX_RANKS);
    char stamp[BOOT_STAMP_MAX];
    ss_boot_stamp(stamp, sizeof stamp);
    int dfd = -1, dport = 0;
    SS_CHECK(ss_net_listen(NULL, 0, &dfd, &dport, err));
    boot_peer peers[SS_BOOT_MAX_RANKS];
    memset(peers, 0, sizeof peers);
    peers[0].port = dport;
    int joined = 1;
    ss_status st = SS_OK;
    while (joined < world) {
        int fd;
        const int64_t slice = watch && ss_now_ms() + SS_BOOT_WATCH_MS < deadline_ms ? ss_now_ms() + SS_BOOT_WATCH_MS
                                                                                   : deadline_ms;
        st = ss_net_accept(lfd, slice, &fd, err);
        if (st == SS_ERR_TIMEOUT && slice < deadline_ms) { /* a watch slice ended: anyone gone? */
            st = watch(watch_arg, err);
            if (st != SS_OK)
                goto fail;
            continue;
        }
        if (st != SS_OK) {
            st = ss_err_set(err, st, "leader: only %d of %d ranks joined before the deadline", joined, world);
            goto fail;
        }
        uint32_t type;
        uint8_t *msg = NULL;
        size_t len = 0;
        if (ss_net_recv_msg(fd, &type, &msg, &len, 4096, ss_now_ms() + 10000) != SS_OK || type != SS_MSG_HELLO) {
            ss_free(msg);
            close(fd);
            SS_LOGW("leader: dropped a connection that did not say hello");
            continue;
        }
        ss_rbuf r = {msg, len, 0};
        int32_t rank = (int32_t)ss_rbuf_u32(&r), w = (int32_t)ss_rbuf_u32(&r), port = (int32_t)ss_rbuf_u32(&r);
        char theirs[BOOT_STAMP_MAX] = {0};
        uint32_t sl = ss_rbuf_u32(&r);
        if (sl >= sizeof theirs)
            r.failed = 1;
        ss_rbuf_get(&r, theirs, r.failed ? 0 : sl);
        ss_free(msg);
        char reason[600] = {0};
        if (r.failed)
            snprintf(reason, sizeof reason, "malformed hello");
        else if (strcmp(theirs, stamp))
            snprintf(reason, sizeof reason, "version mismatch: worker rank %d has \"%s\", leader has \"%s\"", rank,
                     theirs, stamp);
        else if (w != world)
            snprintf(reason, sizeof reason, "world size mismatch: worker rank %d says %d, leader says %d", rank, w,
                     world);
        else if (rank < 1 || rank >= world || out->peer_ctrl[rank] >= 0)
            snprintf(reason, sizeof reason, "rank %d is out of range or already taken", rank);
        if (reason[0]) {
            SS_LOGE("leader: refused a worker: %s", reason);
            ss_net_send_msg(fd, SS_MSG_REJECT, reason, strlen(reason), ss_now_ms() + 2000);
            close(fd);
            continue;
        }
        struct sockaddr_storage ss;
        socklen_t slen = sizeof ss;
        char host[64] = "127.0.0.1";
        if (getpeername(fd, (struct sockaddr *)&ss, &slen) == 0) {
            if (ss.ss_family == AF_INET)
                inet_ntop(AF_INET, &((struct sockaddr_in *)&ss)->sin_addr, host, sizeof host);
            else if (ss.ss_family == AF_INET6)
                inet_ntop(AF_INET6, &((struct sockaddr_in6 *)&ss)->sin6_addr, host, sizeof host);
        }
        /* A rank on the leader's own machine (loopback) is reached the way the others reach the leader. */
        int loop = !strncmp(host, "127.", 4) || !strcmp(host, "::1") || !strncmp(host, "::ffff:127.", 11);
        snprintf(peers[rank].host, sizeof peers[rank].host, "%s", loop ? "" : host);
        peers[rank].port = port;
        out->peer_ctrl[rank] = fd;
        joined++;
        SS_LOGI("leader: rank %d joined from %s (%d/%d)", rank, host, joined, world);
    }
    for (int k = 1; k < world; k++) {
        ss_wbuf wb = {0};
        ss_wbuf_put(&wb, &out->settings, sizeof out->settings);
        ss_wbuf_put(&wb, peers, sizeof peers);
        st = wb.failed ? SS_ERR_NOMEM
                       : ss_net_send_msg(out->peer_ctrl[k], SS_MSG_WELCOME, wb.data, wb.len, deadline_ms);
        ss_free(wb.data);
        if (st != SS_OK) {
            st = ss_err_set(err, st, "leader: sending settings to rank %d failed", k);
            goto fail;
        }
    }
    SS_CHECK_GOTO(boot_mesh(out, dfd, peers, "", deadline_ms, err), st, fail);
    close(dfd);
    return SS_OK;
fail:
    close(dfd);
    ss_boot_close(out);
    return st;
}

/* One attempt at the worker's side of the handshake: connect (retrying until the deadline while nothing
 * listens; *connected = 1 once a connection stands), say hello, read the answer. On SS_OK *fd (owned by the
 * caller) is the control connection and *msg (owned by the caller) the answer; on failure nothing is left
 * open. */
static ss_status worker_hello(const char *host, int port, const ss_wbuf *hello, int64_t deadline_ms, int *fd,
                              int *connected, uint32_t *type, uint8_t **msg, size_t *len, ss_err *err)
{
    *fd = -1;
    SS_CHECK(ss_net_connect(host, port, deadline_ms, fd, err));
    *connected = 1;
    ss_status st = ss_net_send_msg(*fd, SS_MSG_HELLO, hello->data, hello->len, deadline_ms);
    if (st == SS_OK)
        st = ss_net_recv_msg(*fd, type, msg, len, 1u << 20, deadline_ms);
    if (st != SS_OK) {
        close(*fd);
        *fd = -1;
    }
    return st;
}

ss_status ss_boot_worker(const char *leader_addr, int rank, int world, int64_t deadline_ms,
                         const char *stamp_override, ss_boot *out, ss_err *err)
{
    boot_init(out, rank, world);
    if (rank < 1 || rank >= world || world > SS_BOOT_MAX_RANKS)
        return ss_err_set(err, SS_ERR_INVALID_ARG, "worker rank %d of world %d is invalid", rank, world);
    char host[256];
    int port;
    SS_CHECK(ss_net_split_addr(leader_addr, host, sizeof host, &port, err));
    int dfd = -1, dport = 0;
    SS_CHECK(ss_net_listen(NULL, 0, &dfd, &dport, err));
    char stamp[BOOT_STAMP_MAX];
    ss_boot_stamp(stamp, sizeof stamp);
    if (stamp_override)
        snprintf(stamp, sizeof stamp, "%s", stamp_override);
    ss_wbuf wb = {0};
    ss_wbuf_u32(&wb, (uint32_t)rank);
    ss_wbuf_u32(&wb, (uint32_t)world);
    ss_wbuf_u32(&wb, (uint32_t)dport);
    ss_wbuf_u32(&wb, (uint32_t)strlen(stamp));
    ss_wbuf_put(&wb, stamp, strlen(stamp));
    if (wb.failed) {
        ss_free(wb.data);
        close(dfd);
        return ss_err_set(err, SS_ERR_NOMEM, "rank %d: no memory for the hello message", rank);
    }
    uint32_t type = 0;
    uint8_t *msg = NULL;
    size_t len = 0;
    ss_status st = SS_OK;
    /* Something that accepts and then closes or answers garbage (a leader that restarts, or another
     * program on the port before the leader binds it) is retried until the deadline, like a refused
     * connection; a timeout or a refusal by the leader is final. */
    int connected = 0;
    for (int warned = 0; st == SS_OK;) {
        st = worker_hello(host, port, &wb, deadline_ms, &out->ctrl_fd, &connected, &type, &msg, &len, err);
        if (st == SS_OK || (st != SS_ERR_COMM && st != SS_ERR_FORMAT) ||
            (deadline_ms >= 0 && ss_now_ms() + 200 > deadline_ms))
            break;
        if (!warned++)
            SS_LOGW("rank %d: %s at %s closed the connection without the leader's answer (%s); retrying until the "
                    "deadline",
                    rank, host, leader_addr, ss_status_str(st));
        struct timespec ts = {0, 200 * 1000000};
        nanosleep(&ts, NULL);
        st = SS_OK;
    }
    ss_free(wb.data);
    if (st != SS_OK) {
        if (!connected)
            st = ss_err_set(err, st, "rank %d: could not reach the leader at %s before the deadline", rank,
                            leader_addr);
        else
            st = ss_err_set(err, st, "rank %d: no answer from the leader at %s", rank, leader_addr);
        goto fail;
    }
    if (type == SS_MSG_REJECT) {
        st = ss_err_set(err, SS_ERR_MISMATCH, "rank %d: the leader refused this worker: %.*s", rank, (int)len, msg);
        goto fail;
    }
    {
        char host_name[128] = "?", via[128];
        gethostname(host_name, sizeof host_name - 1);
        ss_net_local_desc(out->ctrl_fd, via, sizeof via);
        SS_LOGI("rank %d of %d on host %s, reaching the leader %s through %s", rank, world, host_name, leader_addr,
                via);
    }
    boot_peer peers[SS_BOOT_MAX_RANKS];
    if (type != SS_MSG_WELCOME || len != sizeof out->settings + sizeof peers) {
        st = ss_err_set(err, SS_ERR_FORMAT, "rank %d: unexpected message %u from the leader", rank, type);
        goto fail;
    }
    memcpy(&out->settings, msg, sizeof out->settings);
    memcpy(peers, msg + sizeof out->settings, sizeof peers);
    out->settings.model_dir[sizeof out->settings.model_dir - 1] = '\0';
    for (int i = 0; i < SS_BOOT_MAX_RANKS; i++)
        peers[i].host[sizeof peers[i].host - 1] = '\0';
    ss_free(msg);
    msg = NULL;
    SS_CHECK_GOTO(boot_mesh(out, dfd, peers, host, deadline_ms, err), st, fail);
    close(dfd);
    return SS_OK;
fail:
    ss_free(msg);
    close(dfd);
    ss_boot_close(out);
    return st;
}

ss_status ss_boot_make_runner(ss_boot *b, ss_runner **runner, ss_comm **tp_out, ss_comm **world_out, ss_err *err)
{
    const ss_boot_settings *s = &b->settings;
    *runner = NULL;
    *tp_out = *world_out = NULL;
    ss_runner_params rp;
    memset(&rp, 0, sizeof rp);
    rp.model_dir = s->model_dir;
    rp.tp = s->tp;
    rp.pp = s->pp;
    rp.rank = b->rank;
    rp.backend.device = (ss_device_kind)s->device;
    rp.backend.n_threads = s->n_threads;
    rp.backend.kv_type = (ss_kv_type)s->kv_type;
    rp.backend.linear_type = (ss_linear_type)s->linear_type;
    rp.backend.device_index = s->gpus_per_node > 0 ? b->rank % s->gpus_per_node : 0;
    rp.block_size = s->block_size;
    rp.num_kv_blocks = s->num_kv_blocks;
    rp.max_seq_len = s->max_seq_len;
    rp.max_batch_tokens = s->max_batch_tokens;
    rp.max_seqs = s->max_seqs;
    rp.no_graphs = s->no_graphs;
    rp.graph_bucket = s->graph_bucket;
    ss_comm *single = NULL;
    SS_CHECK(ss_comm_create_single(&single, err));
    ss_runner_links tmp = {single, NULL, 0};
    ss_status st = ss_runner_create(&rp, &tmp, runner, err);
    if (st != SS_OK) {
        ss_comm_destroy(single);
        return st;
    }
    int stage = b->rank / s->tp, tp_rank = b->rank % s->tp;
    ss_comm *tp = NULL, *world = NULL;
    if (s->device == SS_DEVICE_CUDA) {
#ifdef SS_HAVE_CUDA
        ss_backend *be = ss_runner_backend(*runner);
        void *stream = be->iface->native_stream(be->ctx);
        st = ss_comm_nccl_create(b->rank, b->world, s->nccl_ids[0], stream, be->device_index, s->comm_timeout_ms, 0,
                                 &world, err);
        if (st == SS_OK) /* the tp group's all-reduces are the latency-bound ones of every layer */
            st = ss_comm_nccl_create(tp_rank, s->tp, s->nccl_ids[1 + stage], stream, be->device_index,
                                     s->comm_timeout_ms, SS_NCCL_PEER_ALLREDUCE, &tp, err);
#else
        st = ss_err_set(err, SS_ERR_UNSUPPORTED, "cuda replica requested but this build has no CUDA");
#endif
    } else {
        int fds[SS_BOOT_MAX_RANKS], tfds[SS_BOOT_MAX_RANKS];
        for (int r = 0; r < b->world; r++)
            fds[r] = r == b->rank ? -1 : dup(b->mesh[r]);
        for (int k = 0; k < s->tp; k++) {
            int r = stage * s->tp + k;
            tfds[k] = r == b->rank ? -1 : dup(b->mesh[r]);
        }
        st = ss_comm_tcp_create(b->rank, b->world, fds, s->comm_timeout_ms, &world, err);
        if (st == SS_OK)
            st = ss_comm_tcp_create(tp_rank, s->tp, tfds, s->comm_timeout_ms, &tp, err);
    }
    if (st == SS_OK) {
        ss_runner_links links = {tp, world, s->device == SS_DEVICE_CUDA};
        st = ss_runner_set_links(*runner, &links, err);
    }
    if (st != SS_OK) {
        ss_comm_destroy(tp); /* the comms enqueue on the backend's stream: before the runner */
        ss_comm_destroy(world);
        ss_runner_destroy(*runner);
        ss_comm_destroy(single);
        *runner = NULL;
        return st;
    }
    ss_comm_destroy(single);
    *tp_out = tp;
    *world_out = world;
    return SS_OK;
}

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

/* bootstrap.c — the rendezvous' handshake (a worker's hello, the leader's welcome with the settings; the leader's
 * wait for its ranks is boot_gather.c), the data-plane mesh between all ranks, and each rank's comms. */
#include "runner/bootstrap.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "core/alloc.h"
#include "core/log.h"
#include "core/net.h"
#include "core/wire.h"
#include "runner/boot_internal.h"

void ss_boot_stamp(char *buf, size_t cap)
{
#ifdef SS_HAVE_CUDA
    const char *dev = "cuda+nccl";
#else
    const char *dev = "cpu-only";
#endif
    snprintf(buf, cap, "shardserve %s; engine format 1; step protocol 3; %s", SS_VERSION, dev);
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

/* Whether the mesh should be given up: the leader's watch (its local ranks, a cancel) and its ranks' control
 * connections; a worker's connection to the leader. A rank that dies after the welcome would otherwise leave the
 * others waiting for its data-plane connection to the deadline (30 minutes at the leader; session 61). */
static ss_status boot_mesh_check(const ss_boot *b, ss_boot_watch_fn watch, void *watch_arg, ss_err *err)
{
    if (b->rank > 0) {
        if (ss_net_hung_up(b->ctrl_fd, 0))
            return ss_err_set(err, SS_ERR_COMM, "rank %d: the leader closed its connection while the ranks connected "
                              "to each other", b->rank);
        return SS_OK;
    }
    int said = 0; /* ranks that said something first (a LOAD_ERROR, or READY): they have made their links */
    for (int k = 1; k < b->world; k++) {
        int unread = 0;
        if (ioctl(b->peer_ctrl[k], FIONREAD, &unread) == 0 && unread > 0) {
            said = 1;
            continue; /* its reader tells what it said, also if it has exited since */
        }
        if (ss_net_hung_up(b->peer_ctrl[k], 0))
            return ss_err_set(err, SS_ERR_COMM, "rank %d is lost (its control connection closed while the ranks "
                              "connected to each other)", k);
    }
    /* the watch's "local rank exited" would hide a LOAD_ERROR waiting to be read (helper-74); the mesh is nearly
     * made when a rank has spoken, and the wait for READY asks the watch after reading */
    return watch && !said ? watch(watch_arg, err) : SS_OK;
}

/* Connects to lower ranks and accepts higher ones on the data listener, looking at boot_mesh_check between tries. A
 * connection to the data port without a valid hello (4 bytes, a higher rank not yet connected, within 10 s) is
 * dropped. */
static ss_status boot_mesh(ss_boot *b, int dfd, const boot_peer *peers, const char *leader_host, int64_t deadline,
                           ss_boot_watch_fn watch, void *watch_arg, ss_err *err)
{
    for (int j = 0; j < b->rank; j++) {
        const char *h = peers[j].host[0] ? peers[j].host : leader_host;
        int fd = -1;
        for (;;) {
            const int64_t slice = ss_now_ms() + 1000 < deadline ? ss_now_ms() + 1000 : deadline;
            ss_status st = ss_net_connect(h, peers[j].port, slice, &fd, err);
            if (st == SS_OK)
                break;
            if (st != SS_ERR_TIMEOUT || slice >= deadline)
                return ss_err_set(err, st, "rank %d: data-plane connection to rank %d at %s:%d failed", b->rank, j, h,
                                  peers[j].port);
            SS_CHECK(boot_mesh_check(b, watch, watch_arg, err));
        }
        uint32_t me = (uint32_t)b->rank;
        if (ss_net_write_all(fd, &me, 4, deadline) != SS_OK) {
            close(fd);
            return ss_err_set(err, SS_ERR_COMM, "rank %d: data-plane hello to rank %d failed", b->rank, j);
        }
        b->mesh[j] = fd;
    }
    for (int k = b->rank + 1; k < b->world;) {
        int fd;
        const int64_t slice = ss_now_ms() + SS_BOOT_WATCH_MS < deadline ? ss_now_ms() + SS_BOOT_WATCH_MS : deadline;
        ss_status st = ss_net_accept(dfd, slice, &fd, err);
        if (st == SS_ERR_TIMEOUT && slice < deadline) {
            SS_CHECK(boot_mesh_check(b, watch, watch_arg, err));
            continue;
        }
        if (st != SS_OK)
            return ss_err_set(err, st, "rank %d: waiting for data-plane connections from higher ranks", b->rank);
        uint32_t who = 0;
        const int64_t hello_by = ss_now_ms() + 10000 < deadline ? ss_now_ms() + 10000 : deadline;
        if (ss_net_read_all(fd, &who, 4, hello_by) != SS_OK || who <= (uint32_t)b->rank || who >= (uint32_t)b->world ||
            b->mesh[who] >= 0) {
            close(fd);
            SS_LOGW("rank %d: dropped a data-plane connection without a valid hello (rank %u)", b->rank, who);
            continue;
        }
        b->mesh[who] = fd;
        k++;
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
    ss_status st = boot_gather_ranks(lfd, world, stamp, deadline_ms, watch, watch_arg, out, peers, err);
    if (st != SS_OK)
        goto fail;
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
    SS_CHECK_GOTO(boot_mesh(out, dfd, peers, "", deadline_ms, watch, watch_arg, err), st, fail);
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
    SS_CHECK_GOTO(boot_mesh(out, dfd, peers, host, deadline_ms, NULL, NULL, err), st, fail);
    close(dfd);
    return SS_OK;
fail:
    ss_free(msg);
    close(dfd);
    ss_boot_close(out);
    return st;
}

void ss_boot_report_load_error(const ss_boot *b, ss_status st, const ss_err *err)
{
    ss_wbuf wb = {0};
    ss_wbuf_u32(&wb, (uint32_t)st);
    ss_wbuf_put(&wb, err->msg, strlen(err->msg));
    if (!wb.failed)
        ss_net_send_msg(b->ctrl_fd, SS_MSG_LOAD_ERROR, wb.data, wb.len, ss_now_ms() + 5000);
    ss_free(wb.data);
}

ss_status ss_boot_parse_load_error(const uint8_t *msg, size_t len, const char **text, int *text_len)
{
    uint32_t st = (uint32_t)SS_ERR_COMM;
    if (len >= 4)
        memcpy(&st, msg, 4);
    *text = len >= 4 ? (const char *)msg + 4 : "(malformed report)";
    *text_len = len >= 4 ? (int)(len - 4) : (int)strlen(*text);
    return st > (uint32_t)SS_OK && st < (uint32_t)SS_STATUS_COUNT ? (ss_status)st : SS_ERR_COMM;
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

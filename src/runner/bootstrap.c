/* bootstrap.c — rendezvous at the leader (hello/welcome/ready over TCP with deadlines), the data-plane
 * mesh between all ranks, and building each rank's comms (tcp mesh on cpu, NCCL on cuda). */
#include "runner/bootstrap.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
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
    if (watch)
        SS_CHECK(watch(watch_arg, err));
    for (int k = 1; k < b->world; k++) {
        int unread = 0; /* a rank that said something first (its LOAD_ERROR) has made its links: its reader tells */
        if (ss_net_hung_up(b->peer_ctrl[k], 0) && ioctl(b->peer_ctrl[k], FIONREAD, &unread) == 0 && unread == 0)
            return ss_err_set(err, SS_ERR_COMM, "rank %d is lost (its control connection closed while the ranks "
                              "connected to each other)", k);
    }
    return SS_OK;
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

#define BOOT_HELLO_MS 10000  /* a connection has this long to say hello */
#define BOOT_MAX_PENDING 32  /* connections that have not said hello yet, at most (a new one drops the oldest) */
#define BOOT_HELLO_MAX 4096  /* a hello's payload, at most */
#define BOOT_HDR 12          /* a message's header: type (4 bytes), length (8), as ss_net_send_msg writes it */

/* A connection to the rendezvous that has not said hello yet, and its bytes so far. */
typedef struct boot_pending {
    int fd;
    int64_t deadline;
    size_t got;
    uint8_t buf[BOOT_HDR + BOOT_HELLO_MAX];
} boot_pending;

/* The leader's side of the rendezvous while ranks join. Connections are read side by side (one that never says
 * hello held every join up by 10 s when they were read in turn, session 60), and a joined rank whose connection
 * closes before the welcome gives its place back (a worker restarted during the rendezvous was refused: "already
 * taken"). */
typedef struct boot_gather {
    int world, joined;
    const char *stamp;
    ss_boot *out;      /* peer_ctrl[rank]: the joined ranks' connections */
    boot_peer *peers;  /* [SS_BOOT_MAX_RANKS]: where the others reach each rank's data plane */
    char from[SS_BOOT_MAX_RANKS][64];
    boot_pending *pend; /* [BOOT_MAX_PENDING] (owned) */
    int n_pend;
} boot_gather;

/* Closes pending connection i (why: logged when not NULL) and moves the last one into its place. */
static void gather_drop_pending(boot_gather *g, int i, const char *why)
{
    if (why)
        SS_LOGW("leader: dropped a connection to the rendezvous: %s", why);
    close(g->pend[i].fd);
    g->n_pend--;
    if (i != g->n_pend)
        memcpy(&g->pend[i], &g->pend[g->n_pend], sizeof g->pend[i]);
}

static void gather_drop_rank(boot_gather *g, int k, const char *why)
{
    SS_LOGW("leader: rank %d (from %s) left the rendezvous: %s; waiting for rank %d to join again", k, g->from[k], why,
            k);
    close(g->out->peer_ctrl[k]);
    g->out->peer_ctrl[k] = -1;
    memset(&g->peers[k], 0, sizeof g->peers[k]);
    g->joined--;
}

/* Reads what pending connection pd has sent without waiting: 1 once a whole message is in, 0 while more is to
 * come, -1 when it closed, failed or announced a message longer than a hello. */
static int gather_read(boot_pending *pd)
{
    for (;;) {
        size_t need = BOOT_HDR;
        if (pd->got >= BOOT_HDR) {
            uint64_t l;
            memcpy(&l, pd->buf + 4, 8);
            if (l > BOOT_HELLO_MAX)
                return -1;
            need = BOOT_HDR + (size_t)l;
        }
        if (pd->got == need)
            return 1;
        ssize_t n = recv(pd->fd, pd->buf + pd->got, need - pd->got, MSG_DONTWAIT);
        if (n > 0)
            pd->got += (size_t)n;
        else if (n == 0 || (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR))
            return -1;
        else
            return 0;
    }
}

/* Pending connection i has sent a whole message: takes it as a rank's hello or refuses it; either way it leaves
 * the pending list. */
static void gather_hello(boot_gather *g, int i)
{
    boot_pending *pd = &g->pend[i];
    uint32_t type;
    memcpy(&type, pd->buf, 4);
    if (type != SS_MSG_HELLO) {
        gather_drop_pending(g, i, "it did not say hello");
        return;
    }
    ss_rbuf r = {pd->buf + BOOT_HDR, pd->got - BOOT_HDR, 0};
    int32_t rank = (int32_t)ss_rbuf_u32(&r), w = (int32_t)ss_rbuf_u32(&r), port = (int32_t)ss_rbuf_u32(&r);
    char theirs[BOOT_STAMP_MAX] = {0};
    uint32_t sl = ss_rbuf_u32(&r);
    if (sl >= sizeof theirs)
        r.failed = 1;
    ss_rbuf_get(&r, theirs, r.failed ? 0 : sl);
    if (r.left != 0 || strlen(theirs) != sl) /* nothing after the stamp, and no NUL inside it */
        r.failed = 1;
    char host[64] = "127.0.0.1";
    struct sockaddr_storage ss;
    socklen_t slen = sizeof ss;
    if (getpeername(pd->fd, (struct sockaddr *)&ss, &slen) == 0) {
        if (ss.ss_family == AF_INET)
            inet_ntop(AF_INET, &((struct sockaddr_in *)&ss)->sin_addr, host, sizeof host);
        else if (ss.ss_family == AF_INET6)
            inet_ntop(AF_INET6, &((struct sockaddr_in6 *)&ss)->sin6_addr, host, sizeof host);
    }
    /* the rank's old connection closed (its process restarted) and its hang-up is not seen yet: it goes now */
    if (!r.failed && rank >= 1 && rank < g->world && g->out->peer_ctrl[rank] >= 0 &&
        ss_net_hung_up(g->out->peer_ctrl[rank], 0))
        gather_drop_rank(g, rank, "its connection closed");
    char reason[600] = {0};
    if (r.failed)
        snprintf(reason, sizeof reason, "malformed hello");
    else if (strcmp(theirs, g->stamp))
        snprintf(reason, sizeof reason, "version mismatch: worker rank %d has \"%s\", leader has \"%s\"", rank, theirs,
                 g->stamp);
    else if (w != g->world)
        snprintf(reason, sizeof reason, "world size mismatch: worker rank %d says %d, leader says %d", rank, w,
                 g->world);
    else if (rank < 1 || rank >= g->world)
        snprintf(reason, sizeof reason, "rank %d is out of range 1..%d", rank, g->world - 1);
    else if (g->out->peer_ctrl[rank] >= 0)
        snprintf(reason, sizeof reason, "rank %d is already taken (by the worker connected from %s)", rank,
                 g->from[rank]);
    if (reason[0]) {
        SS_LOGE("leader: refused a worker from %s: %s", host, reason);
        ss_net_send_msg(pd->fd, SS_MSG_REJECT, reason, strlen(reason), ss_now_ms() + 2000);
        gather_drop_pending(g, i, NULL);
        return;
    }
    /* A rank on the leader's own machine (loopback) is reached the way the others reach the leader. */
    int loop = !strncmp(host, "127.", 4) || !strcmp(host, "::1") || !strncmp(host, "::ffff:127.", 11);
    snprintf(g->peers[rank].host, sizeof g->peers[rank].host, "%s", loop ? "" : host);
    g->peers[rank].port = port;
    snprintf(g->from[rank], sizeof g->from[rank], "%s", host);
    g->out->peer_ctrl[rank] = pd->fd;
    g->joined++;
    SS_LOGI("leader: rank %d joined from %s (%d/%d)", rank, host, g->joined, g->world);
    pd->fd = -1;
    g->n_pend--; /* out of the list without closing: the rank's control connection now */
    if (i != g->n_pend)
        memcpy(&g->pend[i], &g->pend[g->n_pend], sizeof g->pend[i]);
}

/* Takes the connections waiting on the listener into the pending list; an error other than "none waiting" ends the
 * rendezvous (a listener that stays readable would turn the wait into a spin). */
static ss_status gather_accept(boot_gather *g, int lfd, int64_t now, ss_err *err)
{
    for (;;) {
        int fd = ss_net_accept_now(lfd);
        if (fd < 0) {
            if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR || errno == ECONNABORTED)
                return SS_OK;
            return ss_err_set(err, SS_ERR_IO, "leader: accepting at the rendezvous: %s", strerror(errno));
        }
        if (g->n_pend == BOOT_MAX_PENDING) { /* the oldest goes (the list is not in age order: drops reorder it) */
            int oldest = 0;
            for (int i = 1; i < g->n_pend; i++)
                if (g->pend[i].deadline < g->pend[oldest].deadline)
                    oldest = i;
            gather_drop_pending(g, oldest, "too many connections that have not said hello");
        }
        boot_pending *pd = &g->pend[g->n_pend++];
        pd->fd = fd;
        pd->deadline = now + BOOT_HELLO_MS;
        pd->got = 0;
    }
}

/* One wait of the rendezvous: polls the listener, the pending connections and the joined ranks' connections
 * until something happens or wake_ms, then handles it. */
static ss_status gather_poll(boot_gather *g, int lfd, int64_t wake_ms, ss_err *err)
{
    struct pollfd pf[1 + BOOT_MAX_PENDING + SS_BOOT_MAX_RANKS];
    int rk[SS_BOOT_MAX_RANKS], nr = 0, n = 0;
    const int np = g->n_pend;
    pf[n++] = (struct pollfd){lfd, POLLIN, 0};
    for (int i = 0; i < np; i++) {
        pf[n++] = (struct pollfd){g->pend[i].fd, POLLIN, 0};
        if (g->pend[i].deadline < wake_ms)
            wake_ms = g->pend[i].deadline;
    }
    for (int k = 1; k < g->world; k++)
        if (g->out->peer_ctrl[k] >= 0) {
            rk[nr++] = k;
            pf[n++] = (struct pollfd){g->out->peer_ctrl[k], POLLIN | POLLRDHUP, 0};
        }
    int64_t left = wake_ms - ss_now_ms();
    const int pr = poll(pf, (nfds_t)n, left < 0 ? 0 : left > 1000000 ? 1000000 : (int)left);
    if (pr < 0 && errno != EINTR)
        return ss_err_set(err, SS_ERR_IO, "leader: waiting at the rendezvous: %s", strerror(errno));
    const int64_t now = ss_now_ms();
    /* joined ranks first: a worker restarted during the rendezvous has closed its old connection */
    for (int j = 0; pr > 0 && j < nr; j++)
        if (pf[1 + np + j].revents)
            gather_drop_rank(g, rk[j],
                             pf[1 + np + j].revents & (POLLRDHUP | POLLHUP | POLLERR)
                                 ? "its connection closed"
                                 : "it sent a message before the leader's welcome");
    /* from the last: dropping one moves the list's last (already looked at) into its place */
    for (int i = np - 1; i >= 0; i--) {
        const int rd = pr > 0 && pf[1 + i].revents ? gather_read(&g->pend[i]) : 0;
        if (rd > 0)
            gather_hello(g, i);
        else if (rd < 0)
            gather_drop_pending(g, i, "it closed, or sent something other than a hello");
        else if (now >= g->pend[i].deadline)
            gather_drop_pending(g, i, "no hello within 10 s");
    }
    return pr > 0 && (pf[0].revents & POLLIN) ? gather_accept(g, lfd, now, err) : SS_OK;
}

/* Drops every joined rank whose connection has closed (looked at once more when the last rank joins: the gather
 * then ends, and a rank that left just before would be sent a welcome it cannot take); 1 when it dropped one. */
static int gather_lost_any(boot_gather *g)
{
    int dropped = 0;
    for (int k = 1; k < g->world; k++)
        if (g->out->peer_ctrl[k] >= 0 && ss_net_hung_up(g->out->peer_ctrl[k], 0)) {
            gather_drop_rank(g, k, "its connection closed");
            dropped = 1;
        }
    return dropped;
}

/* Waits until world-1 workers with the leader's stamp have joined (out->peer_ctrl, peers), the deadline passes or
 * watch says to stop. */
static ss_status boot_gather_ranks(int lfd, int world, const char *stamp, int64_t deadline_ms, ss_boot_watch_fn watch,
                                   void *watch_arg, ss_boot *out, boot_peer *peers, ss_err *err)
{
    boot_gather g;
    memset(&g, 0, sizeof g);
    g.world = world;
    g.joined = 1;
    g.stamp = stamp;
    g.out = out;
    g.peers = peers;
    g.pend = ss_calloc(BOOT_MAX_PENDING, sizeof *g.pend);
    if (!g.pend)
        return ss_err_set(err, SS_ERR_NOMEM, "leader: no memory for the rendezvous");
    ss_status st = SS_OK;
    int64_t next_watch = ss_now_ms() + SS_BOOT_WATCH_MS;
    while (st == SS_OK && (g.joined < world || gather_lost_any(&g))) {
        const int64_t now = ss_now_ms();
        if (now >= deadline_ms) {
            st = ss_err_set(err, SS_ERR_TIMEOUT, "leader: only %d of %d ranks joined before the deadline", g.joined,
                            world);
        } else if (watch && now >= next_watch) { /* anyone gone? (the replica: a local rank exited; a signal) */
            st = watch(watch_arg, err);
            next_watch = now + SS_BOOT_WATCH_MS;
        } else {
            st = gather_poll(&g, lfd, watch && next_watch < deadline_ms ? next_watch : deadline_ms, err);
        }
    }
    while (g.n_pend > 0)
        gather_drop_pending(&g, g.n_pend - 1, NULL);
    ss_free(g.pend);
    return st;
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

/* boot_gather.c — the leader's side of the rendezvous while ranks join: one poll over the listener, the connections
 * that have not said hello yet and the joined ranks', so no connection holds up another's join. */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "core/alloc.h"
#include "core/log.h"
#include "core/net.h"
#include "core/wire.h"
#include "runner/boot_internal.h"

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

/* Takes pending connection i out of the list (its fd is the caller's now) and moves the last one into its place. */
static int gather_take_pending(boot_gather *g, int i)
{
    const int fd = g->pend[i].fd;
    g->n_pend--;
    if (i != g->n_pend)
        memcpy(&g->pend[i], &g->pend[g->n_pend], sizeof g->pend[i]);
    return fd;
}

/* Closes pending connection i (why: logged when not NULL), out of the list. */
static void gather_drop_pending(boot_gather *g, int i, const char *why)
{
    if (why)
        SS_LOGW("leader: dropped a connection to the rendezvous: %s", why);
    close(gather_take_pending(g, i));
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
    g->joined++;
    SS_LOGI("leader: rank %d joined from %s (%d/%d)", rank, host, g->joined, g->world);
    g->out->peer_ctrl[rank] = gather_take_pending(g, i); /* not closed: the rank's control connection now */
}

/* Drops the oldest pending connection (the list is not in age order: drops reorder it). */
static void gather_drop_oldest(boot_gather *g, const char *why)
{
    int oldest = 0;
    for (int i = 1; i < g->n_pend; i++)
        if (g->pend[i].deadline < g->pend[oldest].deadline)
            oldest = i;
    gather_drop_pending(g, oldest, why);
}

/* Takes the connections waiting on the listener into the pending list. Out of file descriptors, the oldest pending
 * connection makes room (session 61: a flood under a low `ulimit -n` ended the rendezvous); an error other than "none
 * waiting" with none to drop ends the rendezvous (a listener that stays readable would turn the wait into a spin). */
static ss_status gather_accept(boot_gather *g, int lfd, int64_t now, ss_err *err)
{
    for (int taken = 0; taken < BOOT_MAX_PENDING; taken++) { /* then the others' turn (a flood must not starve them) */
        int fd = ss_net_accept_now(lfd);
        if (fd < 0) {
            if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR || errno == ECONNABORTED)
                return SS_OK;
            if ((errno == EMFILE || errno == ENFILE) && g->n_pend > 0) {
                gather_drop_oldest(g, "out of file descriptors for connections that have not said hello");
                continue;
            }
            return ss_err_set(err, SS_ERR_IO, "leader: accepting at the rendezvous: %s", strerror(errno));
        }
        if (g->n_pend == BOOT_MAX_PENDING)
            gather_drop_oldest(g, "too many connections that have not said hello");
        boot_pending *pd = &g->pend[g->n_pend++];
        pd->fd = fd;
        pd->deadline = now + BOOT_HELLO_MS;
        pd->got = 0;
    }
    return SS_OK;
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

ss_status boot_gather_ranks(int lfd, int world, const char *stamp, int64_t deadline_ms, ss_boot_watch_fn watch,
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

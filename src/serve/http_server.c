/* http_server.c — evhttp plumbing: listener with caps and timeouts (paused, not spinning, when file
 * descriptors run out), a deadline for each request's arrival, refusal of ambiguously framed requests (with
 * http_frame.c), a lingering close after an early answer, capped body reads, JSON/SSE replies, constant-time
 * Bearer check. Loop-thread only. */
#include "serve/http_server.h"

#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <netinet/in.h>
#include <netinet/tcp.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/http_struct.h> /* struct evhttp_request's major/minor: 2.1 has no getter for the version */
#include <event2/keyvalq_struct.h>
#include <event2/listener.h>

#include "core/alloc.h"
#include "core/clock.h"
#include "core/log.h"
#include "serve/api_common.h"
#include "serve/http_frame.h"

/* ---- listener ----------------------------------------------------------------------------------------
 * Out of file descriptors, accept() fails while the connection stays queued, so the listening socket stays
 * readable: libevent 2.1's evconnlistener retries at once, forever (100% CPU, and a warning per try).
 * Instead the accept error callback pauses the listener for HTTP_ACCEPT_PAUSE_MS and says so once. */

#define HTTP_ACCEPT_PAUSE_MS 200
#define HTTP_WARN_EVERY_US ((int64_t)60 * 1000000) /* at most one line per kind of accept error per minute */
#define HTTP_IDLE_ARM_S 3600 /* the guard timer's period while nothing is paused */

typedef struct http_conn http_conn;
typedef struct http_linger http_linger;

struct ss_http_listener {
    struct event_base *base;  /* borrowed */
    struct evhttp *http;
    void (*cb)(struct evhttp_request *, void *); /* the routes, called by http_request_cb */
    void *cb_arg;
    int conn_timeout_s;       /* idle timeout, and the time a whole request may take to arrive */
    size_t max_body;          /* --max-body-bytes, for the framing scanners */
    size_t max_head;          /* --max-header-bytes, for them too */
    http_conn *conns;         /* every request deadline (see "request deadline" below) */
    http_linger *lingers;     /* sockets closing after an early answer (see "lingering close" below) */
    int n_lingers;
    http_conn **by_fd;        /* the attached ones by socket, for the lookup when a request is complete */
    size_t by_fd_cap;
    struct evhttp_bound_socket *sock; /* NULL once ss_http_listener_stop_accepting ran */
    struct evconnlistener *lev;       /* sock's listener (owned by evhttp) */
    struct event *guard;              /* re-enables accepting after a pause; pending while sock is (see
                                       * http_accept_error_cb) */
    int port;
    int paused;
    int64_t exhausted_warned_us, other_warned_us;   /* times of the last warning lines (0: none yet) */
    int64_t exhausted_since_warn, other_since_warn; /* errors since then */
};

static void http_arm_guard(ss_http_listener *l, int paused)
{
    struct timeval tv = {paused ? 0 : HTTP_IDLE_ARM_S, paused ? HTTP_ACCEPT_PAUSE_MS * 1000 : 0};
    l->paused = paused;
    if (evtimer_add(l->guard, &tv) != 0 && paused) {
        /* No timer, no resumption: keep accepting rather than stay deaf. */
        evconnlistener_enable(l->lev);
        l->paused = 0;
    }
}

static void http_guard_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    ss_http_listener *l = arg;
    if (l->paused && l->sock)
        evconnlistener_enable(l->lev);
    http_arm_guard(l, 0);
}

typedef struct http_find {
    const struct evconnlistener *lev;
    ss_http_listener *found;
} http_find;

static int http_find_cb(const struct event_base *base, const struct event *ev, void *arg)
{
    (void)base;
    http_find *f = arg;
    if (event_get_callback(ev) != http_guard_cb)
        return 0;
    ss_http_listener *l = event_get_callback_arg(ev);
    if (l->lev != f->lev)
        return 0;
    f->found = l;
    return 1;
}

/* How the accept error is named in the warning: which limit ran out. */
static void http_describe_exhaustion(int e, char *buf, size_t cap)
{
    if (e == EMFILE) {
        struct rlimit rl;
        if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY)
            snprintf(buf, cap, "the process's open-file limit (RLIMIT_NOFILE, ulimit -n) of %llu is reached",
                     (unsigned long long)rl.rlim_cur);
        else
            snprintf(buf, cap, "the process's open-file limit (RLIMIT_NOFILE, ulimit -n) is reached");
    } else if (e == ENFILE) {
        snprintf(buf, cap, "the system-wide open-file limit (fs.file-max) is reached");
    } else {
        snprintf(buf, cap, "the kernel is out of socket memory");
    }
}

/* libevent calls this with errno still holding accept()'s error, and arg = the listener's user data, which
 * evhttp sets to its struct evhttp: there is no slot for ours, so the listener's state is found through
 * its guard timer, which stays pending for this reason. */
static void http_accept_error_cb(struct evconnlistener *lev, void *arg)
{
    (void)arg;
    int e = EVUTIL_SOCKET_ERROR();
    http_find f = {lev, NULL};
    event_base_foreach_event(evconnlistener_get_base(lev), http_find_cb, &f);
    ss_http_listener *l = f.found;
    if (!l)
        return; /* cannot happen while the guard is pending; accepting simply goes on */
    int64_t now = ss_now_us();
    if (e == EMFILE || e == ENFILE || e == ENOBUFS || e == ENOMEM) {
        /* Nothing can be accepted until a descriptor is freed: stop watching the socket for a moment (the
         * waiting connections stay in the kernel's backlog) instead of retrying in a loop. */
        evconnlistener_disable(lev);
        http_arm_guard(l, 1);
        l->exhausted_since_warn++;
        if (l->exhausted_warned_us == 0 || now - l->exhausted_warned_us >= HTTP_WARN_EVERY_US) {
            char why[160], since[96] = "";
            http_describe_exhaustion(e, why, sizeof why);
            if (l->exhausted_warned_us != 0)
                snprintf(since, sizeof since, "; %lld pauses since the last such warning",
                         (long long)l->exhausted_since_warn);
            SS_LOGW("port %d: cannot accept connections: %s (%s); new connections wait %d ms at a time until "
                    "descriptors are freed (this warning repeats at most once a minute%s)",
                    l->port, why, strerror(e), HTTP_ACCEPT_PAUSE_MS, since);
            l->exhausted_warned_us = now;
            l->exhausted_since_warn = 0;
        }
        return;
    }
    /* Errors of one connection (a reset before accept, a firewall's EPERM): drop it and go on. */
    l->other_since_warn++;
    if (l->other_warned_us == 0 || now - l->other_warned_us >= HTTP_WARN_EVERY_US) {
        char since[96] = "";
        if (l->other_warned_us != 0)
            snprintf(since, sizeof since, "; %lld such errors since the last warning", (long long)l->other_since_warn);
        SS_LOGW("port %d: accept failed: %s; continuing (this warning repeats at most once a minute%s)", l->port,
                strerror(e), since);
        l->other_warned_us = now;
        l->other_since_warn = 0;
    }
}

static int http_bound_port(struct evhttp_bound_socket *sock)
{
    struct sockaddr_storage ss;
    socklen_t len = sizeof ss;
    evutil_socket_t fd = evhttp_bound_socket_get_fd(sock);
    if (getsockname(fd, (struct sockaddr *)&ss, &len) != 0)
        return -1;
    if (ss.ss_family == AF_INET)
        return ntohs(((struct sockaddr_in *)&ss)->sin_port);
    if (ss.ss_family == AF_INET6)
        return ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
    return -1;
}

/* ---- request deadline ------------------------------------------------------------------------------------
 * evhttp's timeout (--conn-timeout) restarts with every byte read, so a client that trickles a header byte a
 * second holds its connection, and a descriptor, for ever. Here a request must arrive whole, headers and body,
 * within conn_timeout_s of its first byte; past that the client gets a 408 and the connection is closed.
 * libevent 2.1 says neither when a request starts nor when a connection ends (no evhttp_set_newreqcb), so:
 * - every connection gets its bufferevent from http_bev_cb, and a callback on its input buffer: the first
 *   bytes of a request arm the deadline (a connection idle between requests is the idle timeout's business);
 * - a request handed to the routes (http_request_cb) drops its deadline, since the response may take as long
 *   as it needs (a queued request, a long stream); a new one is attached once the response has been written
 *   (the request's on-complete callback), when the connection waits for its next request;
 * - while a deadline exists, evhttp's close callback tells it of the connection's end. The routes set that
 *   callback for their own requests (server.c), but only from http_request_cb to the end of the response,
 *   when no deadline exists.
 * At accept the bufferevent has no connection yet: http_bev_cb holds a reference on it and attaches on the
 * next loop turn, once evhttp has set the connection up (or dropped it). */

struct http_conn {
    ss_http_listener *l;
    struct bufferevent *bev;
    struct evhttp_connection *evcon; /* set once attached */
    struct event *timer;             /* first the attachment (made active at accept), then the deadline, or the
                                      * refusal of a request its framing scanner refused */
    ss_http_frame *frame;            /* owned: the request's framing read strictly from its bytes (see "request
                                      * framing" below); NULL when it could not be allocated (libevent's reading
                                      * alone then) */
    evutil_socket_t fd;
    int attached;                    /* close callback, input callback and l->by_fd set */
    int held;                        /* holds a reference on bev (from accept until attached) */
    int armed;                       /* the deadline runs */
    int close_now;                   /* the timer closes the connection (after a CONNECT, see below) */
    http_conn *prev, *next;          /* l->conns */
};

static void http_conn_timer_cb(evutil_socket_t fd, short what, void *arg);

static void http_conn_unlink(http_conn *c)
{
    if (c->prev)
        c->prev->next = c->next;
    else
        c->l->conns = c->next;
    if (c->next)
        c->next->prev = c->prev;
}

/* Feeds the bytes just read (the last n_added of buf) to c's framing scanner: 1 when it refuses the request. */
static int http_conn_scan(http_conn *c, struct evbuffer *buf, const struct evbuffer_cb_info *info)
{
    size_t len = evbuffer_get_length(buf), left = info->n_added;
    struct evbuffer_ptr pos;
    if (info->n_deleted || left > len || evbuffer_ptr_set(buf, &pos, len - left, EVBUFFER_PTR_SET) != 0) {
        /* Added and drained in one report (deferred callbacks, which evhttp's buffers do not use): where the
         * new bytes are is unknown, so the scanner stops here rather than read out of step. */
        ss_http_frame_destroy(c->frame);
        c->frame = NULL;
        return 0;
    }
    while (left > 0) {
        struct evbuffer_iovec v[8];
        int nv = evbuffer_peek(buf, (ev_ssize_t)left, &pos, v, 8);
        size_t done = 0;
        for (int i = 0; i < nv && i < 8 && left > 0; i++) {
            size_t k = v[i].iov_len < left ? v[i].iov_len : left;
            if (ss_http_frame_feed(c->frame, v[i].iov_base, k))
                return 1;
            left -= k;
            done += k;
        }
        if (nv <= 0 || (left > 0 && evbuffer_ptr_set(buf, &pos, done, EVBUFFER_PTR_ADD) != 0))
            return 0;
    }
    return 0;
}

static void http_conn_input_cb(struct evbuffer *buf, const struct evbuffer_cb_info *info, void *arg)
{
    http_conn *c = arg;
    if (info->n_added == 0)
        return;
    if (!c->armed) {
        struct timeval tv = {c->l->conn_timeout_s, 0};
        c->armed = evtimer_add(c->timer, &tv) == 0;
    }
    if (c->frame && !ss_http_frame_status(c->frame) && http_conn_scan(c, buf, info)) {
        /* Refused: evhttp must not act on these bytes (it would read a loose chunk size as a size, and could
         * answer in HTML first). This callback runs inside the bufferevent's read, before evhttp's read callback,
         * which the bufferevent skips while the input is below its read low-water mark: raised out of reach. The
         * timer answers on this loop turn, and closes the connection. */
        bufferevent_setwatermark(c->bev, EV_READ, SIZE_MAX, 0);
        event_active(c->timer, EV_TIMEOUT, 1);
    }
}

/* Drops c's deadline and everything it set on the connection (which lives on, or is about to be freed). */
static void http_conn_free(http_conn *c)
{
    if (c->attached) {
        evbuffer_remove_cb(bufferevent_get_input(c->bev), http_conn_input_cb, c);
        evhttp_connection_set_closecb(c->evcon, NULL, NULL);
        if ((size_t)c->fd < c->l->by_fd_cap && c->l->by_fd[c->fd] == c)
            c->l->by_fd[c->fd] = NULL;
    }
    if (c->held)
        bufferevent_decref(c->bev);
    http_conn_unlink(c);
    event_free(c->timer);
    ss_http_frame_destroy(c->frame);
    ss_free(c);
}

static void http_conn_closed_cb(struct evhttp_connection *evcon, void *arg)
{
    (void)evcon;
    http_conn_free(arg);
}

static http_conn *http_conn_new(ss_http_listener *l, struct bufferevent *bev)
{
    http_conn *c = ss_calloc(1, sizeof *c);
    if (!c)
        return NULL;
    c->timer = evtimer_new(bufferevent_get_base(bev), http_conn_timer_cb, c);
    if (!c->timer) {
        ss_free(c);
        return NULL;
    }
    c->l = l;
    c->bev = bev;
    c->fd = -1;
    c->frame = ss_http_frame_create(l->max_body, l->max_head);
    c->next = l->conns;
    if (l->conns)
        l->conns->prev = c;
    l->conns = c;
    return c;
}

/* Ties c to its connection: 0, or -1 out of memory, c freed (that request goes without a deadline). */
static int http_conn_attach(http_conn *c, struct evhttp_connection *evcon)
{
    ss_http_listener *l = c->l;
    evutil_socket_t fd = bufferevent_getfd(c->bev);
    if (fd < 0)
        goto fail;
    if ((size_t)fd >= l->by_fd_cap) {
        size_t cap = l->by_fd_cap ? l->by_fd_cap : 256;
        while (cap <= (size_t)fd)
            cap *= 2;
        http_conn **t = ss_realloc(l->by_fd, cap * sizeof *t);
        if (!t)
            goto fail;
        memset(t + l->by_fd_cap, 0, (cap - l->by_fd_cap) * sizeof *t);
        l->by_fd = t;
        l->by_fd_cap = cap;
    }
    struct evbuffer *in = bufferevent_get_input(c->bev);
    if (!evbuffer_add_cb(in, http_conn_input_cb, c))
        goto fail;
    if (l->by_fd[fd] && l->by_fd[fd]->evcon == evcon)
        http_conn_free(l->by_fd[fd]); /* cannot happen: one deadline per connection */
    c->evcon = evcon;
    c->fd = fd;
    c->attached = 1;
    l->by_fd[fd] = c;
    evhttp_connection_set_closecb(evcon, http_conn_closed_cb, c);
    if (c->held) {
        c->held = 0; /* from now on the close callback says when bev goes */
        bufferevent_decref(c->bev);
    }
    if (evbuffer_get_length(in) > 0) { /* a pipelined request, or bytes read before the attachment */
        struct evbuffer_cb_info info = {0, evbuffer_get_length(in), 0};
        http_conn_input_cb(in, &info, c);
    }
    return 0;
fail:
    http_conn_free(c);
    return -1;
}

/* ---- lingering close --------------------------------------------------------------------------------------
 * A request answered before it has arrived whole (a 413 for a body over the cap, a 400, a 408) leaves the client
 * still sending. Closing a socket with unread bytes makes the kernel reset the connection, and a client blocked
 * sending then sees "connection reset" and never reads its answer. So the answer is followed by a FIN
 * (shutdown of the sending side), and the socket, duplicated before evhttp closes its own descriptor, stays open
 * for a while to read and discard what still comes: until the client closes, HTTP_LINGER_GAP_S without a byte,
 * --conn-timeout in all, or HTTP_LINGER_MAX_BYTES. At most HTTP_LINGER_MAX sockets linger at once; past that
 * one is closed at once, as before. */

#define HTTP_LINGER_MAX 256
#define HTTP_LINGER_GAP_S 2
#define HTTP_LINGER_MAX_BYTES ((size_t)64 << 20)

struct http_linger {
    ss_http_listener *l;
    struct event *ev; /* read, persistent, with the gap as its timeout */
    evutil_socket_t fd; /* owned */
    int64_t until_us;
    size_t drained;
    http_linger *prev, *next; /* l->lingers */
};

static void http_linger_free(http_linger *g)
{
    if (g->prev)
        g->prev->next = g->next;
    else
        g->l->lingers = g->next;
    if (g->next)
        g->next->prev = g->prev;
    g->l->n_lingers--;
    event_free(g->ev);
    close(g->fd);
    ss_free(g);
}

static void http_linger_cb(evutil_socket_t fd, short what, void *arg)
{
    http_linger *g = arg;
    int over = (what & EV_TIMEOUT) != 0;
    for (int i = 0; i < 16 && (what & EV_READ); i++) { /* a bounded share of the loop per wake-up */
        char buf[16384];
        ssize_t n = recv(fd, buf, sizeof buf, MSG_DONTWAIT);
        if (n > 0) {
            g->drained += (size_t)n;
            continue;
        }
        /* 0: the client closed; an error other than "nothing yet": the socket failed */
        over |= n == 0 || !(errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR);
        break;
    }
    if (over || g->drained > HTTP_LINGER_MAX_BYTES || ss_now_us() >= g->until_us)
        http_linger_free(g);
}

/* Sends the FIN on fd's connection and keeps it open (on a duplicate) to drain what the client still sends;
 * fd itself stays the caller's (evhttp closes it). Without room or resources the connection just closes. */
static void http_linger_start(ss_http_listener *l, evutil_socket_t fd)
{
    if (l->n_lingers >= HTTP_LINGER_MAX)
        return;
    http_linger *g = ss_calloc(1, sizeof *g);
    evutil_socket_t d = g ? fcntl(fd, F_DUPFD_CLOEXEC, 0) : -1; /* close-on-exec, as evhttp's own */
    struct timeval gap = {HTTP_LINGER_GAP_S, 0};
    if (d >= 0)
        g->ev = event_new(l->base, d, EV_READ | EV_PERSIST, http_linger_cb, g);
    if (!g || d < 0 || !g->ev || event_add(g->ev, &gap) != 0) {
        if (g && g->ev)
            event_free(g->ev);
        if (d >= 0)
            close(d);
        ss_free(g);
        return;
    }
    (void)shutdown(d, SHUT_WR);
    g->l = l;
    g->fd = d;
    g->until_us = ss_now_us() + (int64_t)l->conn_timeout_s * 1000000;
    g->next = l->lingers;
    if (l->lingers)
        l->lingers->prev = g;
    l->lingers = g;
    l->n_lingers++;
}

/* Answers c's incomplete request with e, written straight to the socket since evhttp has no request to answer
 * before its headers are read (or is kept from reading them), then closes the connection (lingering). c is freed. */
static void http_conn_answer_close(http_conn *c, const ss_api_error *e)
{
    struct evhttp_connection *evcon = c->evcon;
    if (evbuffer_get_length(bufferevent_get_output(c->bev)) == 0) { /* nothing of evhttp's to come first */
        size_t len = 0;
        char *body = c->frame && ss_http_frame_triton(c->frame) ? ss_api_error_triton_json(e, &len)
                                                                 : ss_api_error_openai_json(e, &len);
        char msg[1024];
        int n = body ? snprintf(msg, sizeof msg,
                                "HTTP/1.1 %d %s\r\nContent-Type: application/json\r\n"
                                "Content-Length: %zu\r\nConnection: close\r\n\r\n%s",
                                e->http_status, ss_http_reason(e->http_status), len, body)
                     : -1;
        ss_free(body);
        ssize_t sent = n > 0 && (size_t)n < sizeof msg ? send(c->fd, msg, (size_t)n, MSG_NOSIGNAL | MSG_DONTWAIT) : -1;
        if (sent == n) /* a FIN after a part of the answer would end it short of its length */
            http_linger_start(c->l, c->fd);
        else if (sent < 0 && n > 0)
            SS_LOGD("port %d: %d not sent: %s", c->l->port, e->http_status, strerror(errno));
    }
    http_conn_free(c); /* first: it clears the close callback */
    evhttp_connection_free(evcon);
}

/* The deadline passed with the request still incomplete: a 408. */
static void http_conn_expire(http_conn *c)
{
    int t = c->l->conn_timeout_s;
    SS_LOGD("port %d: closing a connection whose request did not arrive in full within %d s (--conn-timeout)",
            c->l->port, t);
    ss_api_error e;
    ss_api_fail(&e, 408, NULL, "the request did not arrive in full within %d s of its first byte (--conn-timeout)", t);
    e.type = "timeout_error";
    http_conn_answer_close(c, &e);
}

/* The framing scanner refused the request (its head or its body's framing) before evhttp had it whole. */
static void http_conn_refuse(http_conn *c)
{
    int status = ss_http_frame_status(c->frame);
    SS_LOGD("port %d: refusing a request (%d): %s", c->l->port, status, ss_http_frame_reason(c->frame));
    ss_api_error e;
    ss_api_fail(&e, status, NULL, "%s", ss_http_frame_reason(c->frame));
    http_conn_answer_close(c, &e);
}

static void http_conn_timer_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    http_conn *c = arg;
    if (c->close_now) {
        struct evhttp_connection *evcon = c->evcon;
        http_conn_free(c);
        evhttp_connection_free(evcon);
        return;
    }
    if (c->attached && c->frame && ss_http_frame_status(c->frame)) {
        http_conn_refuse(c);
        return;
    }
    if (c->attached) {
        http_conn_expire(c);
        return;
    }
    /* The attachment after accept. evhttp gave the bufferevent its callbacks with the connection as their
     * argument; bufferevent_free clears them, so none means evhttp has dropped the connection already. */
    bufferevent_data_cb readcb = NULL, writecb = NULL;
    bufferevent_event_cb eventcb = NULL;
    void *evcon = NULL;
    bufferevent_getcb(c->bev, &readcb, &writecb, &eventcb, &evcon);
    if (!readcb || !evcon) {
        http_conn_free(c);
        return;
    }
    /* Nagle off (evhttp leaves it on): a stream's headers go out alone when the request is taken, and with Nagle
     * its first token's chunk then waited for their ACK, which a client that keeps its connection alive delays
     * by up to 40 ms (Linux's delayed ACK): every streamed request after a connection's first had its first
     * token 40 ms late (session 30: closed-loop TTFT 42 ms on one H200 against 6 ms after). Accepted sockets
     * inherit it from the listener on Linux; set here too, once a connection, for systems where they do not. */
    int one = 1;
    if (setsockopt(bufferevent_getfd(c->bev), IPPROTO_TCP, TCP_NODELAY, &one, sizeof one) != 0)
        SS_LOGD("port %d: TCP_NODELAY not set on a connection: %s", c->l->port, strerror(errno));
    (void)http_conn_attach(c, evcon);
}

/* evhttp's bufferevent factory: the same socket bufferevent it would make, with a deadline to attach. */
static struct bufferevent *http_bev_cb(struct event_base *base, void *arg)
{
    ss_http_listener *l = arg;
    struct bufferevent *bev = bufferevent_socket_new(base, -1, BEV_OPT_CLOSE_ON_FREE);
    if (!bev)
        return NULL; /* evhttp tries its own, without a deadline */
    http_conn *c = http_conn_new(l, bev);
    if (c) {
        bufferevent_incref(bev);
        c->held = 1;
        event_active(c->timer, EV_TIMEOUT, 1);
    }
    return bev;
}

/* The deadline of the connection whose request is complete: the attached one, or one still waiting for its
 * attachment (the request arrived on the loop turn of the accept). */
static http_conn *http_conn_find(ss_http_listener *l, struct evhttp_connection *evcon)
{
    struct bufferevent *bev = evhttp_connection_get_bufferevent(evcon);
    evutil_socket_t fd = bev ? bufferevent_getfd(bev) : -1;
    if (fd >= 0 && (size_t)fd < l->by_fd_cap && l->by_fd[fd] && l->by_fd[fd]->evcon == evcon)
        return l->by_fd[fd];
    for (http_conn *c = l->conns; c; c = c->next)
        if (!c->attached && c->bev == bev)
            return c;
    return NULL;
}

/* The response has been written and the connection waits for its next request (or is about to be closed,
 * which the close callback then reports). */
static void http_request_done_cb(struct evhttp_request *req, void *arg)
{
    struct evhttp_connection *evcon = evhttp_request_get_connection(req);
    struct bufferevent *bev = evcon ? evhttp_connection_get_bufferevent(evcon) : NULL;
    http_conn *c = bev ? http_conn_new(arg, bev) : NULL;
    if (!c || http_conn_attach(c, evcon) != 0)
        return;
    if (evhttp_request_get_command(req) == EVHTTP_REQ_CONNECT) {
        /* libevent 2.1 keeps a connection open after any answer to CONNECT, "Connection: close" or not (a
         * tunnel would go on), so the client would wait for the idle timeout. It cannot be freed from inside
         * this callback (evhttp goes on using it): the timer does it on the next loop turn. */
        c->close_now = 1;
        event_active(c->timer, EV_TIMEOUT, 1);
    }
}

/* ---- request framing ------------------------------------------------------------------------------------
 * libevent 2.1 frames a body by the first Content-Length header and ignores the others, takes a
 * Transfer-Encoding only when it is exactly "chunked", and treats a header name with white space before the
 * colon as another header. A proxy in front that reads the same bytes differently (the last Content-Length,
 * Transfer-Encoding over Content-Length, "Content-Length :") sees another request boundary: the rest of the
 * body runs here as a request of its own (request smuggling). RFC 9112 §6.3 and §5.1: such a request is
 * answered 400 and the connection closed, so nothing after it is read. */

/* Copies a header text into a message, printable ASCII only and cut at 64 bytes. */
static const char *http_quote(char *dst, size_t cap, const char *src)
{
    size_t i = 0;
    for (; src[i] && i + 1 < cap && i < 64; i++)
        dst[i] = src[i] >= 0x20 && src[i] < 0x7f ? src[i] : '?';
    dst[i] = '\0';
    return dst;
}

/* The methods whose body libevent 2.1 does not read (HEAD, TRACE, CONNECT, unknown ones): what a
 * Content-Length or Transfer-Encoding announces would be read as the next request. NULL for the others. */
static const char *http_bodiless_method(enum evhttp_cmd_type cmd)
{
    switch (cmd) {
    case EVHTTP_REQ_GET:
    case EVHTTP_REQ_POST:
    case EVHTTP_REQ_PUT:
    case EVHTTP_REQ_DELETE:
    case EVHTTP_REQ_OPTIONS:
    case EVHTTP_REQ_PATCH: return NULL;
    case EVHTTP_REQ_HEAD: return "HEAD";
    case EVHTTP_REQ_TRACE: return "TRACE";
    case EVHTTP_REQ_CONNECT: return "CONNECT";
    default: return "unknown-method";
    }
}

/* 1 (and the 400 sent, with Connection: close) when the request's framing headers are ambiguous, or its Host is
 * missing (HTTP/1.1) or repeated; or (400 or 413) when frame, its bytes' strict reading, refused it: evhttp took it
 * whole before the refusal could stop it (a pipelined request, read by evhttp's deferred callback). */
static int http_reject_framing(struct evhttp_request *req, const ss_http_frame *frame)
{
    const struct evkeyvalq *h = evhttp_request_get_input_headers(req);
    int n_cl = 0, n_te = 0, n_host = 0;
    int status = 400; /* the header checks' status, or the scanner's */
    const char *cl = NULL, *te = NULL, *spaced = NULL;
    for (const struct evkeyval *kv = h->tqh_first; kv; kv = kv->next.tqe_next) { /* no TAILQ_* macros here */
        if (strpbrk(kv->key, " \t")) {
            spaced = kv->key;
        } else if (!strcasecmp(kv->key, "Host")) {
            n_host++;
        } else if (!strcasecmp(kv->key, "Content-Length")) {
            n_cl++;
            cl = cl ? cl : kv->value;
        } else if (!strcasecmp(kv->key, "Transfer-Encoding")) {
            n_te++;
            te = te ? te : kv->value;
        }
    }
    const char *bodiless = http_bodiless_method(evhttp_request_get_command(req));
    char msg[256], q[72];
    const int http11 = req->major > 1 || (req->major == 1 && req->minor >= 1);
    if (spaced)
        snprintf(msg, sizeof msg, "header name '%s' has white space before its colon (RFC 9112 section 5.1)",
                 http_quote(q, sizeof q, spaced));
    else if (n_host > 1 || (http11 && n_host == 0))
        snprintf(msg, sizeof msg, "%s; an HTTP/1.1 request names its host once (RFC 9112 section 3.2)",
                 n_host ? "Host is given more than once" : "no Host header");
    else if (n_cl > 1)
        snprintf(msg, sizeof msg,
                 "Content-Length is given %d times; a request states its length once (RFC 9112 section 6.3)", n_cl);
    else if (n_te && n_cl)
        snprintf(msg, sizeof msg, "%s", SS_HTTP_MSG_TE_AND_CL);
    else if (n_te > 1)
        snprintf(msg, sizeof msg, "Transfer-Encoding is given %d times; only one 'chunked' is supported", n_te);
    else if (te && strcasecmp(te, "chunked") != 0)
        snprintf(msg, sizeof msg, "Transfer-Encoding '%s' is not supported; only 'chunked' is",
                 http_quote(q, sizeof q, te));
    else if (cl && (!*cl || strspn(cl, "0123456789") != strlen(cl)))
        snprintf(msg, sizeof msg, "Content-Length '%s' is not a number of bytes (decimal digits only)",
                 http_quote(q, sizeof q, cl));
    else if (bodiless && (te || (cl && cl[strspn(cl, "0")] != '\0')))
        snprintf(msg, sizeof msg, "a %s request cannot carry a body here (%s: %s)", bodiless,
                 te ? "Transfer-Encoding" : "Content-Length", http_quote(q, sizeof q, te ? te : cl));
    else if (frame && ss_http_frame_status(frame)) {
        status = ss_http_frame_status(frame);
        snprintf(msg, sizeof msg, "%s", ss_http_frame_reason(frame));
    } else {
        return 0;
    }
    /* The error's shape is the route's: Triton's under /v2, OpenAI's elsewhere (as server.c picks it). */
    const struct evhttp_uri *uri = evhttp_request_get_evhttp_uri(req);
    const char *path = uri ? evhttp_uri_get_path(uri) : NULL;
    if (!path || !*path) /* (CONNECT: libevent read its target as an authority; the routes get it back as the path) */
        path = evhttp_request_get_uri(req);
    ss_api_error e;
    ss_api_fail(&e, status, NULL, "%s", msg);
    size_t len = 0;
    char *body = path && !strncmp(path, "/v2", 3) ? ss_api_error_triton_json(&e, &len)
                                                   : ss_api_error_openai_json(&e, &len);
    evhttp_add_header(evhttp_request_get_output_headers(req), "Connection", "close");
    ss_http_reply_json(req, status, body ? body : "{}", body ? len : 2);
    ss_free(body);
    return 1;
}

/* The methods libevent 2.1 parses; any other token (unknown, or lower-case: methods are case-sensitive) it
 * marks with the bit EVHTTP_REQ_UNKNOWN_ of its http-internal.h. Letting that bit through routes such
 * requests too, to the same JSON 405 as the other methods a route does not take. */
#define HTTP_KNOWN_METHODS                                                                                     \
    (EVHTTP_REQ_GET | EVHTTP_REQ_POST | EVHTTP_REQ_HEAD | EVHTTP_REQ_PUT | EVHTTP_REQ_DELETE |                 \
     EVHTTP_REQ_OPTIONS | EVHTTP_REQ_TRACE | EVHTTP_REQ_CONNECT | EVHTTP_REQ_PATCH)
#if LIBEVENT_VERSION_NUMBER >= 0x02010000 && LIBEVENT_VERSION_NUMBER < 0x02020000
#define HTTP_UNKNOWN_METHOD (1u << 15)
#else
#define HTTP_UNKNOWN_METHOD 0u /* other versions number it differently (2.2 has evhttp_set_ext_method_cmp) */
#endif

/* libevent 2.1 parses a CONNECT's target as an authority (host:port): "CONNECT /v1/completions" reaches the
 * routes without a path, as a 404. Its path given back, the route answers its 405 with Allow. */
static void http_connect_path(struct evhttp_request *req)
{
    /* the request owns its parsed URI; only the const of the getter is in the way */
    struct evhttp_uri *uri = (struct evhttp_uri *)evhttp_request_get_evhttp_uri(req);
    const char *raw = evhttp_request_get_uri(req);
    const char *had = uri ? evhttp_uri_get_path(uri) : NULL;
    if (!uri || !raw || raw[0] != '/' || (had && *had))
        return;
    char *path = ss_strndup(raw, strcspn(raw, "?#"));
    if (path)
        (void)evhttp_uri_set_path(uri, path); /* refused (a character a path cannot hold): the 404 stays */
    ss_free(path);
}

/* evhttp's callback for every complete request: the deadline ends, the framing is checked, then the routes. */
static void http_request_cb(struct evhttp_request *req, void *arg)
{
    ss_http_listener *l = arg;
    struct evhttp_connection *evcon = evhttp_request_get_connection(req);
    http_conn *c = evcon ? http_conn_find(l, evcon) : NULL;
    int closing = c && c->close_now; /* a request pipelined after a CONNECT */
    ss_http_frame *frame = NULL;
    if (c) {
        frame = c->frame; /* kept for the framing checks */
        c->frame = NULL;
        http_conn_free(c);
    }
    if (evcon) /* first: a CONNECT refused for its framing needs it too */
        evhttp_request_set_on_complete_cb(req, http_request_done_cb, l);
    int refused = http_reject_framing(req, frame);
    ss_http_frame_destroy(frame);
    if (refused)
        return;
    enum evhttp_cmd_type cmd = evhttp_request_get_command(req);
    if (closing || cmd == EVHTTP_REQ_CONNECT || ((unsigned)cmd & HTTP_KNOWN_METHODS) == 0) {
        /* A refused CONNECT's client may already be sending what it meant for the tunnel, and an unknown
         * method's body is not framed by libevent: whatever follows is not a request to read. (For CONNECT
         * libevent 2.1 ignores the header: see http_request_done_cb.) */
        evhttp_add_header(evhttp_request_get_output_headers(req), "Connection", "close");
    }
    if (cmd == EVHTTP_REQ_CONNECT)
        http_connect_path(req);
    l->cb(req, l->cb_arg);
}

ss_status ss_http_listener_create(struct event_base *base, const ss_http_listen_params *p,
                                  void (*cb)(struct evhttp_request *, void *), void *arg, ss_http_listener **out,
                                  ss_err *err)
{
    *out = NULL;
    ss_http_listener *l = ss_calloc(1, sizeof *l);
    if (!l)
        return ss_err_set(err, SS_ERR_NOMEM, "out of memory");
    ss_status st = SS_OK;
    l->http = evhttp_new(base);
    l->guard = evtimer_new(base, http_guard_cb, l);
    if (!l->http || !l->guard) {
        st = ss_err_set(err, SS_ERR_NOMEM, "libevent: evhttp_new or evtimer_new failed");
        goto fail;
    }
    l->base = base;
    l->cb = cb;
    l->cb_arg = arg;
    l->conn_timeout_s = p->conn_timeout_s > 0 ? p->conn_timeout_s : 30;
    l->max_body = p->max_body_bytes;
    evhttp_set_max_body_size(l->http, (ev_ssize_t)p->max_body_bytes);
    l->max_head = p->max_header_bytes;
    evhttp_set_max_headers_size(l->http, (ev_ssize_t)p->max_header_bytes);
    evhttp_set_timeout(l->http, l->conn_timeout_s);
    /* Methods no route takes reach the routes too, which answer a JSON 405 with an Allow header (libevent
     * itself would answer 501 in HTML). */
    evhttp_set_allowed_methods(l->http, (ev_uint16_t)(HTTP_KNOWN_METHODS | HTTP_UNKNOWN_METHOD));
    evhttp_set_bevcb(l->http, http_bev_cb, l);
    evhttp_set_gencb(l->http, http_request_cb, l);
    l->sock = evhttp_bind_socket_with_handle(l->http, p->host, (ev_uint16_t)p->port);
    if (!l->sock) {
        st = ss_err_set(err, SS_ERR_IO, "cannot listen on %s:%d (address in use or not available)", p->host,
                        p->port);
        goto fail;
    }
    l->port = http_bound_port(l->sock);
    int one = 1; /* Nagle off on the connections it accepts (see http_conn_timer_cb) */
    if (setsockopt(evhttp_bound_socket_get_fd(l->sock), IPPROTO_TCP, TCP_NODELAY, &one, sizeof one) != 0)
        SS_LOGW("port %d: cannot set TCP_NODELAY on the listening socket: %s", l->port, strerror(errno));
    l->lev = evhttp_bound_socket_get_listener(l->sock);
    http_arm_guard(l, 0);
    evconnlistener_set_error_cb(l->lev, http_accept_error_cb);
    *out = l;
    return SS_OK;
fail:
    ss_http_listener_destroy(l);
    return st;
}

int ss_http_listener_port(const ss_http_listener *l)
{
    return l->port;
}

void ss_http_listener_answer_incomplete(ss_http_listener *l, int status, const char *message)
{
    if (!l)
        return;
    http_conn *next = NULL;
    for (http_conn *c = l->conns; c; c = next) {
        next = c->next; /* c goes */
        if (!c->attached || !c->armed)
            continue;
        ss_api_error e;
        ss_api_fail(&e, status, NULL, "%s", message);
        http_conn_answer_close(c, &e);
    }
}

int ss_http_listener_lingering(const ss_http_listener *l)
{
    return l ? l->n_lingers : 0;
}

void ss_http_listener_stop_accepting(ss_http_listener *l)
{
    if (!l || !l->sock)
        return;
    event_del(l->guard);
    evhttp_del_accept_socket(l->http, l->sock);
    l->sock = NULL;
    l->lev = NULL;
    l->paused = 0;
}

void ss_http_listener_destroy(ss_http_listener *l)
{
    if (!l)
        return;
    if (l->guard)
        event_free(l->guard);
    if (l->http)
        evhttp_free(l->http); /* the close callbacks free the attached deadlines */
    while (l->conns) {       /* those still waiting for their attachment */
        http_conn *c = l->conns;
        assert(c->l == l && !c->prev); /* the list's head: http_conn_free unlinks it */
        c->attached = 0;     /* its connection is gone: touch nothing of it but the reference */
        http_conn_free(c);
    }
    for (http_linger *g = l->lingers, *next = NULL; g; g = next) {
        next = g->next;
        http_linger_free(g);
    }
    ss_free(l->by_fd);
    ss_free(l);
}

/* ---- requests and replies ------------------------------------------------------------------------------ */

ss_status ss_http_read_body(struct evhttp_request *req, size_t max, char **body, size_t *len)
{
    *body = NULL;
    *len = 0;
    struct evbuffer *in = evhttp_request_get_input_buffer(req);
    size_t n = in ? evbuffer_get_length(in) : 0;
    if (n == 0)
        return SS_OK;
    if (n > max)
        return SS_ERR_CAPACITY;
    char *b = ss_malloc(n + 1);
    if (!b)
        return SS_ERR_NOMEM;
    if (evbuffer_copyout(in, b, n) != (ev_ssize_t)n) {
        ss_free(b);
        return SS_ERR_IO;
    }
    b[n] = '\0';
    *body = b;
    *len = n;
    return SS_OK;
}

const char *ss_http_reason(int status)
{
    switch (status) {
    case 200: return "OK";
    case 204: return "No Content";
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 408: return "Request Timeout";
    case 413: return "Payload Too Large";
    case 417: return "Expectation Failed";
    case 429: return "Too Many Requests";
    case 431: return "Request Header Fields Too Large";
    case 500: return "Internal Server Error";
    case 503: return "Service Unavailable";
    case 504: return "Gateway Timeout";
    case 505: return "HTTP Version Not Supported";
    default: return "Error";
    }
}

/* 1 for an HTTP/1.0 (or older) request: one that cannot take a chunked reply. */
static int http_before_1_1(const struct evhttp_request *req)
{
    return req->major < 1 || (req->major == 1 && req->minor < 1);
}

static void http_reply(struct evhttp_request *req, int status, const char *ctype, const char *body, size_t len)
{
    struct evkeyvalq *h = evhttp_request_get_output_headers(req);
    evhttp_add_header(h, "Content-Type", ctype);
    /* Always a Content-Length (libevent 2.1 leaves it out for an HTTP/1.0 request without keep-alive, whose
     * body then ends at the close: valid, but a client could not tell a cut reply from a whole one). A HEAD
     * reply states GET's length; 1xx, 204 and 304 replies have no body and must not have the header. */
    if (status >= 200 && status != 204 && status != 304) {
        char n[32];
        snprintf(n, sizeof n, "%zu", len);
        evhttp_add_header(h, "Content-Length", n);
    }
    if (evhttp_request_get_command(req) == EVHTTP_REQ_HEAD) {
        /* GET's headers without its body: libevent 2.1 would send the body after a HEAD reply, which a
         * keep-alive client then reads as the start of its next response. */
        evhttp_send_reply(req, status, ss_http_reason(status), NULL);
        return;
    }
    struct evbuffer *b = evbuffer_new();
    if (b && len)
        evbuffer_add(b, body, len);
    evhttp_send_reply(req, status, ss_http_reason(status), b);
    if (b)
        evbuffer_free(b);
}

void ss_http_reply_json(struct evhttp_request *req, int status, const char *body, size_t len)
{
    http_reply(req, status, "application/json", body, len);
}

void ss_http_reply_text(struct evhttp_request *req, int status, const char *content_type, const char *body,
                        size_t len)
{
    http_reply(req, status, content_type, body, len);
}

void ss_http_start_sse(struct evhttp_request *req)
{
    struct evkeyvalq *h = evhttp_request_get_output_headers(req);
    evhttp_add_header(h, "Content-Type", "text/event-stream");
    evhttp_add_header(h, "Cache-Control", "no-cache");
    evhttp_add_header(h, "X-Accel-Buffering", "no");
    if (http_before_1_1(req)) {
        /* HTTP/1.0 has no chunked encoding: the stream's end can only be the connection's close. libevent
         * 2.1's evhttp_send_reply_start does not chunk for 1.0, but for a 1.0 request with "Connection:
         * keep-alive" its header code adds "Connection: keep-alive" and "Content-Length: 0" (the length of
         * the still empty body), so the client read an empty reply (and the events as garbage after it), and
         * the connection stayed open. libevent decides both from the request's own Connection header: make
         * it "close", and the reply goes out with "Connection: close", no length, its body as it is
         * produced, and evhttp_send_reply_end closes the connection once the body is written. */
        struct evkeyvalq *in = evhttp_request_get_input_headers(req);
        while (evhttp_find_header(in, "Connection"))
            evhttp_remove_header(in, "Connection");
        evhttp_add_header(in, "Connection", "close");
    }
    evhttp_send_reply_start(req, 200, "OK");
}

void ss_http_chunk(struct evhttp_request *req, const char *data, size_t len)
{
    struct evbuffer *b = evbuffer_new();
    if (!b)
        return;
    evbuffer_add(b, data, len);
    evhttp_send_reply_chunk(req, b);
    evbuffer_free(b);
}

int ss_http_consttime_eq(const char *a, size_t alen, const char *b, size_t blen)
{
    /* Walks the expected key fully whatever the input, so timing reveals only the lengths. */
    unsigned diff = (unsigned)(alen ^ blen);
    for (size_t i = 0; i < blen; i++) {
        unsigned char ca = i < alen ? (unsigned char)a[i] : 0;
        diff |= (unsigned)(ca ^ (unsigned char)b[i]);
    }
    return diff == 0;
}

int ss_http_bearer_ok(struct evhttp_request *req, const char *key)
{
    if (!key || !key[0])
        return 1;
    const char *auth = evhttp_find_header(evhttp_request_get_input_headers(req), "Authorization");
    if (!auth || strncasecmp(auth, "Bearer ", 7) != 0)
        return 0;
    const char *tok = auth + 7;
    while (*tok == ' ')
        tok++;
    return ss_http_consttime_eq(tok, strlen(tok), key, strlen(key));
}

char *ss_http_path_decode(const char *part)
{
    size_t n = 0;
    char *d = evhttp_uridecode(part, 0, &n);
    if (d && n != strlen(d)) {
        free(d);
        return NULL;
    }
    return d;
}

/* http_server.c — evhttp plumbing: listener with caps and timeouts (paused, not spinning, when file
 * descriptors run out), capped body reads, JSON/SSE replies, constant-time Bearer check. Loop-thread only. */
#include "serve/http_server.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <netinet/in.h>

#include <event2/buffer.h>
#include <event2/http_struct.h> /* struct evhttp_request's major/minor: 2.1 has no getter for the version */
#include <event2/keyvalq_struct.h>
#include <event2/listener.h>

#include "core/alloc.h"
#include "core/log.h"

/* ---- listener ----------------------------------------------------------------------------------------
 * Out of file descriptors, accept() fails while the connection stays queued, so the listening socket stays
 * readable: libevent 2.1's evconnlistener retries at once, forever (100% CPU, and a warning per try).
 * Instead the accept error callback pauses the listener for HTTP_ACCEPT_PAUSE_MS and says so once. */

#define HTTP_ACCEPT_PAUSE_MS 200
#define HTTP_WARN_EVERY_US ((int64_t)60 * 1000000) /* at most one line per kind of accept error per minute */
#define HTTP_IDLE_ARM_S 3600 /* the guard timer's period while nothing is paused */

struct ss_http_listener {
    struct evhttp *http;
    struct evhttp_bound_socket *sock; /* NULL once ss_http_listener_stop_accepting ran */
    struct evconnlistener *lev;       /* sock's listener (owned by evhttp) */
    struct event *guard;              /* re-enables accepting after a pause; pending while sock is (see
                                       * http_accept_error_cb) */
    int port;
    int paused;
    int64_t exhausted_warned_us, other_warned_us;   /* times of the last warning lines (0: none yet) */
    int64_t exhausted_since_warn, other_since_warn; /* errors since then */
};

static int64_t http_now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

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
    int64_t now = http_now_us();
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
    evhttp_set_max_body_size(l->http, (ev_ssize_t)p->max_body_bytes);
    evhttp_set_max_headers_size(l->http, (ev_ssize_t)p->max_header_bytes);
    evhttp_set_timeout(l->http, p->conn_timeout_s > 0 ? p->conn_timeout_s : 30);
    /* Methods no route takes reach the routes too, which answer a JSON 405 with an Allow header (libevent
     * itself would answer 501 in HTML). */
    evhttp_set_allowed_methods(l->http, EVHTTP_REQ_GET | EVHTTP_REQ_POST | EVHTTP_REQ_HEAD | EVHTTP_REQ_OPTIONS |
                                            EVHTTP_REQ_PUT | EVHTTP_REQ_DELETE | EVHTTP_REQ_PATCH);
    evhttp_set_gencb(l->http, cb, arg);
    l->sock = evhttp_bind_socket_with_handle(l->http, p->host, (ev_uint16_t)p->port);
    if (!l->sock) {
        st = ss_err_set(err, SS_ERR_IO, "cannot listen on %s:%d (address in use or not available)", p->host,
                        p->port);
        goto fail;
    }
    l->port = http_bound_port(l->sock);
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
        evhttp_free(l->http);
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
    case 413: return "Payload Too Large";
    case 429: return "Too Many Requests";
    case 500: return "Internal Server Error";
    case 503: return "Service Unavailable";
    case 504: return "Gateway Timeout";
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

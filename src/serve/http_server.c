/* http_server.c — evhttp plumbing: listener with caps and timeouts, capped body reads, JSON/SSE
 * replies, constant-time Bearer check. Loop-thread only. */
#include "serve/http_server.h"

#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <netinet/in.h>

#include <event2/buffer.h>
#include <event2/keyvalq_struct.h>

#include "core/alloc.h"

ss_status ss_http_listen(struct event_base *base, const ss_http_listen_params *p,
                         void (*cb)(struct evhttp_request *, void *), void *arg, struct evhttp **out,
                         struct evhttp_bound_socket **sock, ss_err *err)
{
    *out = NULL;
    *sock = NULL;
    struct evhttp *http = evhttp_new(base);
    if (!http)
        return ss_err_set(err, SS_ERR_NOMEM, "evhttp_new failed");
    evhttp_set_max_body_size(http, (ev_ssize_t)p->max_body_bytes);
    evhttp_set_max_headers_size(http, (ev_ssize_t)p->max_header_bytes);
    evhttp_set_timeout(http, p->conn_timeout_s > 0 ? p->conn_timeout_s : 30);
    /* Methods no route takes reach the routes too, which answer a JSON 405 with an Allow header (libevent
     * itself would answer 501 in HTML). */
    evhttp_set_allowed_methods(http, EVHTTP_REQ_GET | EVHTTP_REQ_POST | EVHTTP_REQ_HEAD | EVHTTP_REQ_OPTIONS |
                                         EVHTTP_REQ_PUT | EVHTTP_REQ_DELETE | EVHTTP_REQ_PATCH);
    evhttp_set_gencb(http, cb, arg);
    struct evhttp_bound_socket *s = evhttp_bind_socket_with_handle(http, p->host, (ev_uint16_t)p->port);
    if (!s) {
        evhttp_free(http);
        return ss_err_set(err, SS_ERR_IO, "cannot listen on %s:%d (address in use or not available)", p->host,
                          p->port);
    }
    *out = http;
    *sock = s;
    return SS_OK;
}

int ss_http_bound_port(struct evhttp_bound_socket *sock)
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

static void http_reply(struct evhttp_request *req, int status, const char *ctype, const char *body, size_t len)
{
    struct evkeyvalq *h = evhttp_request_get_output_headers(req);
    evhttp_add_header(h, "Content-Type", ctype);
    if (evhttp_request_get_command(req) == EVHTTP_REQ_HEAD) {
        /* GET's headers without its body: libevent 2.1 would send the body after a HEAD reply, which a
         * keep-alive client then reads as the start of its next response. */
        char n[32];
        snprintf(n, sizeof n, "%zu", len);
        evhttp_add_header(h, "Content-Length", n);
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

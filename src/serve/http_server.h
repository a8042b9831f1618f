/* http_server.h — the thin layer over libevent's evhttp: binding a listener with the body/header caps
 * and connection timeouts, reading capped request bodies, JSON and SSE replies, and the Bearer check.
 * Everything here runs on the event-loop thread only. */
#ifndef SS_HTTP_SERVER_H
#define SS_HTTP_SERVER_H

#include <stddef.h>
#include <stdint.h>

#include <event2/event.h>
#include <event2/http.h>

#include "core/status.h"

typedef struct ss_http_listen_params {
    const char *host;        /* bind address (borrowed) */
    int port;                /* 0 = any free port (see ss_http_listener_port) */
    size_t max_body_bytes;   /* larger bodies get a JSON 413 */
    size_t max_header_bytes; /* larger header blocks are refused */
    int conn_timeout_s;      /* idle timeout per connection, and the time a request (headers and body) may take
                              * to arrive from its first byte: idle and slowloris clients are dropped (<= 0: 30) */
} ss_http_listen_params;

/* An evhttp bound to one address, with its accept guard: when accept() fails for want of file descriptors
 * (EMFILE, ENFILE, ENOBUFS, ENOMEM) the listener pauses for a moment instead of retrying in a busy loop,
 * and logs one warning a minute at most; other accept errors are logged (as rarely) and accepting goes on. */
typedef struct ss_http_listener ss_http_listener;

/* Creates an evhttp on base bound to host:port that sends every request to cb(req, arg). Before cb, a request
 * whose framing is ambiguous (several Content-Length headers, one that is not a number, Transfer-Encoding with
 * Content-Length or other than "chunked", white space before a header's colon, a chunked body not framed strictly
 * by RFC 9112 section 7.1: see http_frame.h) is answered 400 in the routes' JSON shape and its connection closed,
 * and one whose body is over max_body_bytes 413, as soon as its bytes say so; CONNECT and unknown methods reach
 * cb with "Connection: close" already set on the reply. Caller destroys *out with ss_http_listener_destroy
 * (before base). */
ss_status ss_http_listener_create(struct event_base *base, const ss_http_listen_params *p,
                                  void (*cb)(struct evhttp_request *, void *), void *arg, ss_http_listener **out,
                                  ss_err *err);
/* The port it listens on (useful with port 0), or -1. */
int ss_http_listener_port(const ss_http_listener *l);
/* Answers every request still arriving (some of its bytes read, not all) with status and message (JSON, in the
 * shape of its route, with "Connection: close"), then closes its connection after a lingering read (see
 * http_server.c): for the end of a drain, which would otherwise cut them without a word. Idle connections are
 * left alone. */
void ss_http_listener_answer_incomplete(ss_http_listener *l, int status, const char *message);
/* How many closed connections still drain what their client sends after an early answer (0 for NULL): an exit
 * that waits for them lets those clients read their answer rather than a reset. */
int ss_http_listener_lingering(const ss_http_listener *l);
/* Closes the listening socket: no new connections; the open ones carry on. Idempotent. */
void ss_http_listener_stop_accepting(ss_http_listener *l);
/* Frees the evhttp (every connection and pending request) and the listener. NULL is a no-op. */
void ss_http_listener_destroy(ss_http_listener *l);

/* Copies the request body into a NUL-terminated ss_malloc'd buffer (caller frees). SS_ERR_CAPACITY past
 * max bytes. An empty body gives *body = NULL, *len = 0. */
ss_status ss_http_read_body(struct evhttp_request *req, size_t max, char **body, size_t *len);

/* Sends a complete reply with Content-Type: application/json and its Content-Length (body borrowed). */
void ss_http_reply_json(struct evhttp_request *req, int status, const char *body, size_t len);
/* Sends a plain-text reply (metrics use content_type "text/plain; version=0.0.4; charset=utf-8"). */
void ss_http_reply_text(struct evhttp_request *req, int status, const char *content_type, const char *body,
                        size_t len);
/* Starts a text/event-stream reply: chunked for HTTP/1.1; for HTTP/1.0 (no chunking) without a length and
 * with "Connection: close", the body ending when the connection closes after evhttp_send_reply_end. Then
 * ss_http_chunk per piece and evhttp_send_reply_end. */
void ss_http_start_sse(struct evhttp_request *req);
void ss_http_chunk(struct evhttp_request *req, const char *data, size_t len);

/* 1 when the request's "Authorization: Bearer <key>" matches key (compared in constant time for keys
 * of the same length); 1 as well when key is NULL or empty (no key configured). */
int ss_http_bearer_ok(struct evhttp_request *req, const char *key);
/* Constant-time equality of two byte strings (time depends only on the lengths). */
int ss_http_consttime_eq(const char *a, size_t alen, const char *b, size_t blen);

/* Reason phrase for the status codes the server sends. */
const char *ss_http_reason(int status);

/* The percent-decoded part of a URL path, or NULL when it holds an encoded NUL (%00) or memory ran out.
 * Caller free()s (libevent's allocation, not ss_free). */
char *ss_http_path_decode(const char *part);

#endif

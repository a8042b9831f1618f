/* server.c — wiring of the serving process: the event loop (evhttp on the API and metrics ports, signal
 * handling, a wake event fed by the scheduler thread's event queue), the model loader thread, routing,
 * replies, and an HTTP generation request's life from its scheduler requests to its reply (server_gen.c
 * builds them). Threads: the loop thread owns every evhttp object; the scheduler thread only appends to the
 * event queue and calls event_active; the loader thread builds tokenizer/template/replica/scheduler and
 * publishes them with `state`; the work pool's threads only parse request bodies and encode prompts
 * (server_gen.c). */
#include "serve/server_internal.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <sys/socket.h>

#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/thread.h>

#include "core/alloc.h"
#include "core/clock.h"
#include "core/log.h"
#include "core/net.h"
#include "serve/api_openai.h"
#include "serve/api_triton.h"
#include "serve/http_server.h"
#include "serve/metrics.h"
#include "serve/sse.h"
#include "serve/warmup.h"
#include "serve/work_pool.h"
#include "template/chat_template.h"
#include "tokenizer/tokenizer.h"

#define SRV_MAX_TEXT ((size_t)64 << 20) /* generated text kept per choice */
/* Threads encoding prompts: a long prompt takes ~0.5 s a MB (Llama 3's tokenizer, one core of the CI VM),
 * which on the loop would stall every stream. Two keep a CPU core for the loop and the scheduler. */
#define SRV_TOKENIZER_THREADS 2
#define SRV_WARM_PROMPT 16 /* the most tokens of a warm-up request's prompt (srv_warm_graphs) */
#define SRV_HEALTH_MS 500 /* how often an idle replica's lost ranks are looked for (srv_health_cb) */

/* An event copied off the scheduler thread. */
struct srv_ev {
    struct srv_ev *next;
    void *user; /* srv_sub *, or the warm-up */
    ss_gen_event ev; /* pointers below replace the borrowed ones */
    int32_t top_ids[SS_MAX_TOP_LOGPROBS];
    float top_lps[SS_MAX_TOP_LOGPROBS];
    char *text;
    char *message;
};

uint64_t srv_mix(uint64_t x)
{
    x += 0x9e3779b97f4a7c15ull;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
    return x ^ (x >> 31);
}

ss_server_params ss_server_default_params(void)
{
    ss_server_params p;
    memset(&p, 0, sizeof p);
    p.replica = ss_replica_default_params();
    p.sched = ss_sched_default_params();
    p.host = "0.0.0.0";
    p.port = 8000;
    p.metrics_port = 8002;
    p.max_body_bytes = (size_t)8 << 20;
    p.max_header_bytes = (size_t)16 << 10;
    p.conn_timeout_s = 30;
    p.request_timeout_ms = 600000;
    p.drain_timeout_ms = 30000;
    p.max_n = SS_API_MAX_N;
    p.warmup = 1;
    p.generation_config = 1;
    return p;
}

/* ---- scheduler -> loop event queue --------------------------------------------------------------- */

/* Scheduler thread. Copies the borrowed event and wakes the loop. Never blocks beyond the queue mutex. */
static void srv_on_event(ss_server *s, void *user, const ss_gen_event *ev)
{
    srv_ev *e = ss_calloc(1, sizeof *e);
    if (!e) {
        /* A lost TOKEN only loses text; a lost DONE would leak the request, so DONE retries below. */
        if (ev->kind != SS_GEN_DONE)
            return;
        while (!(e = ss_calloc(1, sizeof *e)))
            usleep(1000);
    }
    e->user = user;
    e->ev = *ev;
    int32_t n_top = ev->n_top > SS_MAX_TOP_LOGPROBS ? SS_MAX_TOP_LOGPROBS : ev->n_top;
    if (n_top < 0 || !ev->top_ids || !ev->top_logprobs)
        n_top = 0;
    for (int32_t i = 0; i < n_top; i++) {
        e->top_ids[i] = ev->top_ids[i];
        e->top_lps[i] = ev->top_logprobs[i];
    }
    e->ev.n_top = n_top;
    e->ev.top_ids = e->top_ids;
    e->ev.top_logprobs = e->top_lps;
    if (ev->text && ev->text_len) {
        e->text = ss_strndup(ev->text, ev->text_len);
        if (!e->text && ev->kind == SS_GEN_DONE && ev->finish != SS_FINISH_ERROR) {
            e->ev.finish = SS_FINISH_ERROR;
            e->ev.status = SS_ERR_NOMEM;
        }
    }
    e->ev.text = e->text;
    e->ev.text_len = e->text ? ev->text_len : 0;
    if (ev->message) {
        e->message = ss_strdup(ev->message);
    }
    e->ev.message = e->message ? e->message : (e->ev.status == SS_ERR_NOMEM ? "out of memory" : NULL);
    pthread_mutex_lock(&s->qmu);
    if (s->q_tail)
        s->q_tail->next = e;
    else
        s->q_head = e;
    s->q_tail = e;
    pthread_mutex_unlock(&s->qmu);
    event_active(s->wake, EV_READ, 0);
}

void srv_sub_cb(void *user, const ss_gen_event *ev)
{
    srv_sub *sub = user;
    srv_on_event(sub->r->s, user, ev);
}

/* Cancels a scheduler request; a no-op once the scheduler is gone (events flushed at destroy). */
void srv_cancel(ss_server *s, uint64_t id)
{
    if (s->sched)
        ss_sched_cancel(s->sched, id);
}

static void srv_ev_free(srv_ev *e)
{
    ss_free(e->text);
    ss_free(e->message);
    ss_free(e);
}

/* ---- replies ------------------------------------------------------------------------------------- */

void srv_reply_error(struct evhttp_request *req, ss_api_kind kind, const ss_api_error *e)
{
    size_t len = 0;
    char *body = kind == SS_API_TRITON ? ss_api_error_triton_json(e, &len) : ss_api_error_openai_json(e, &len);
    if (e->http_status == 429 || e->http_status == 503)
        evhttp_add_header(evhttp_request_get_output_headers(req), "Retry-After", "1");
    if (e->http_status == 401)
        evhttp_add_header(evhttp_request_get_output_headers(req), "WWW-Authenticate", "Bearer");
    ss_http_reply_json(req, e->http_status, body ? body : "{}", body ? len : 2);
    ss_free(body);
}

void srv_fail(struct evhttp_request *req, ss_api_kind kind, int status, const char *param, const char *msg)
{
    ss_api_error e;
    ss_api_fail(&e, status, param, "%s", msg);
    srv_reply_error(req, kind, &e);
}

/* 404 for a model name (name[0, len)) other than the one served. */
static void srv_fail_model(const ss_server *s, struct evhttp_request *req, ss_api_kind kind, const char *param,
                           const char *name, size_t len)
{
    char msg[384];
    snprintf(msg, sizeof msg, "model '%.*s' not found; this server serves '%s'", (int)(len > 128 ? 128 : len), name,
             s->model_name);
    srv_fail(req, kind, 404, param, msg);
}

/* 405 with the methods the route takes, in an Allow header (RFC 9110) and in the message. */
static void srv_fail_method(struct evhttp_request *req, ss_api_kind kind, const char *allow)
{
    evhttp_add_header(evhttp_request_get_output_headers(req), "Allow", allow);
    char msg[96];
    snprintf(msg, sizeof msg, "method not allowed (use %s)", allow);
    srv_fail(req, kind, 405, NULL, msg);
}

void srv_reply_owned(struct evhttp_request *req, char *json, size_t len)
{
    if (!json) {
        srv_fail(req, SS_API_COMPLETION, 500, NULL, "out of memory building the response");
        return;
    }
    ss_http_reply_json(req, 200, json, len);
    ss_free(json);
}

/* Replies with json built by an argument expression; len is read only after it ran. */
static void srv_reply_built(struct evhttp_request *req, const size_t *len, char *json)
{
    srv_reply_owned(req, json, *len);
}

/* Token text for logprob entries (loop thread): the token's raw bytes, so that a character split across
 * tokens keeps its bytes (the JSON writer shows them as U+FFFD in strings; `bytes` and offsets need them). */
static size_t srv_token_text(void *user, int32_t token, char *buf, size_t cap)
{
    ss_server *s = user;
    char *text = NULL;
    size_t len = 0;
    if (ss_tokenizer_token_bytes(s->tok, token, &text, &len, NULL) != SS_OK) {
        int n = snprintf(buf, cap, "token_id:%d", (int)token);
        return n < 0 ? 0 : ((size_t)n < cap ? (size_t)n : cap - 1);
    }
    if (len >= cap)
        len = cap - 1;
    memcpy(buf, text, len);
    buf[len] = '\0';
    ss_free(text);
    return len;
}

/* ---- request lifecycle ---------------------------------------------------------------------------- */

static void srv_unwatch(srv_req *r)
{
    if (r->watch) {
        event_free(r->watch);
        r->watch = NULL;
    }
}

void srv_req_free(srv_req *r)
{
    srv_unwatch(r);
    for (int32_t i = 0; r->choices && i < r->n; i++)
        ss_api_choice_clear(&r->choices[i]);
    for (int32_t i = 0; r->subs && i < r->n; i++)
        ss_tool_stream_destroy(r->subs[i].tools);
    ss_free(r->choices);
    ss_free(r->subs);
    cJSON_Delete(r->tools);
    r->s->live_reqs--;
    ss_free(r);
}

void srv_on_close(struct evhttp_connection *conn, void *arg)
{
    (void)conn;
    srv_req *r = arg;
    srv_unwatch(r); /* the socket is about to close */
    r->gone = 1;
    /* libevent detaches an unanswered request from a dying connection (evcon = NULL) and leaves it to us;
     * one still attached is freed with the connection, so we must forget it. */
    if (r->http && evhttp_request_get_connection(r->http) != NULL)
        r->http = NULL;
    for (int32_t i = 0; i < r->n; i++)
        if (r->subs[i].submitted && !r->subs[i].done)
            srv_cancel(r->s, r->subs[i].id);
    SS_LOGD("client of %s went away; cancelling", r->id);
}

/* Whether the client of conn has hung up (NULL, or no socket: no). */
int srv_conn_hung_up(struct evhttp_connection *conn)
{
    struct bufferevent *bev = conn ? evhttp_connection_get_bufferevent(conn) : NULL;
    return ss_net_hung_up(bev ? bufferevent_getfd(bev) : -1, 0);
}

static void srv_watch_fd(srv_req *r, evutil_socket_t fd, short what);

/* libevent does not read from a connection whose request awaits its reply, so a client that hangs up
 * while its request is queued or prefilling goes unseen; this watch looks at the socket for its end. */
static void srv_watch_cb(evutil_socket_t fd, short what, void *arg)
{
    srv_req *r = arg;
    if (!(what & EV_CLOSED) && !ss_net_hung_up(fd, 0)) {
        char c;
        if (recv(fd, &c, 1, MSG_PEEK | MSG_DONTWAIT) > 0) {
            /* bytes after the request (pipelined, or stray): libevent reads them after our reply. Readable until
             * then, they would wake this watch on every turn of the loop; EV_CLOSED wakes it only at a hang-up. */
            srv_unwatch(r);
            if (event_base_get_features(r->s->base) & EV_FEATURE_EARLY_CLOSE)
                srv_watch_fd(r, fd, EV_CLOSED);
        }
        return;
    }
    srv_unwatch(r);
    r->gone = 1;
    for (int32_t i = 0; i < r->n; i++)
        if (r->subs[i].submitted && !r->subs[i].done)
            srv_cancel(r->s, r->subs[i].id);
    SS_LOGD("client of %s hung up; cancelling", r->id);
}

static void srv_watch_fd(srv_req *r, evutil_socket_t fd, short what)
{
    r->watch = event_new(r->s->base, fd, what | EV_PERSIST, srv_watch_cb, r);
    if (r->watch && event_add(r->watch, NULL) != 0)
        srv_unwatch(r);
}

void srv_watch(srv_req *r, struct evhttp_connection *conn)
{
    struct bufferevent *bev = conn ? evhttp_connection_get_bufferevent(conn) : NULL;
    evutil_socket_t fd = bev ? bufferevent_getfd(bev) : -1;
    if (fd >= 0)
        srv_watch_fd(r, fd, EV_READ);
}

static void srv_detach_close(srv_req *r)
{
    srv_unwatch(r);
    if (!r->http)
        return;
    struct evhttp_connection *c = evhttp_request_get_connection(r->http);
    if (c)
        evhttp_connection_set_closecb(c, NULL, NULL);
}

void srv_stream_send(srv_req *r, const char *json, size_t len)
{
    if (!json || r->gone || !r->http)
        return;
    ss_jbuf b;
    ss_jbuf_init(&b, len + 64);
    ss_sse_event(&b, json, len);
    size_t n = 0;
    char *out = ss_jbuf_take(&b, &n);
    if (out)
        ss_http_chunk(r->http, out, n);
    ss_free(out);
}

/* The calls in an answer's text (r's tools), into c->calls; fails r (500) only when out of memory. */
static ss_status srv_parse_calls(srv_req *r, ss_api_choice *c, const char *text, size_t len)
{
    int forced = r->tool_choice == SS_TOOL_CHOICE_REQUIRED || r->tool_choice == SS_TOOL_CHOICE_NAMED;
    ss_status st = ss_tool_calls_parse(r->s->limits.tool_format, forced, text ? text : "", text ? len : 0, r->tools,
                                       r->max_calls, &c->calls);
    ss_tool_calls_name(&c->calls, r->s->limits.tool_format, r->id, c->index);
    if (st != SS_OK) {
        r->failed = 1;
        ss_api_fail(&r->err, 500, NULL, "out of memory");
    }
    return st;
}

/* All submitted choices are done: answer (or release a request whose client left) and free r. */
static void srv_req_finish(srv_req *r)
{
    ss_server *s = r->s;
    srv_detach_close(r);
    struct evhttp_request *http = r->http;
    r->http = NULL;
    if (!http) {
        srv_req_free(r);
        return;
    }
    /* The request's own deadline no longer applies: a keep-alive connection is idle-bounded again. */
    struct evhttp_connection *conn = evhttp_request_get_connection(http);
    if (conn)
        evhttp_connection_set_timeout(conn, s->p.conn_timeout_s > 0 ? s->p.conn_timeout_s : 30);
    if (r->stream_started) {
        if (!r->gone) {
            if (r->failed) {
                size_t len = 0;
                char *j = r->kind == SS_API_TRITON ? ss_api_error_triton_json(&r->err, &len)
                                                   : ss_api_error_openai_json(&r->err, &len);
                r->http = http;
                srv_stream_send(r, j, len);
                r->http = NULL;
                ss_free(j);
            } else if (r->kind != SS_API_TRITON && r->include_usage) {
                int32_t completion = 0, cached = 0;
                for (int32_t i = 0; i < r->n; i++) {
                    completion += r->choices[i].completion_tokens;
                    if (r->choices[i].cached_tokens > cached)
                        cached = r->choices[i].cached_tokens;
                }
                size_t len = 0;
                char *j = ss_api_openai_usage_chunk_json(&r->meta, r->choices[0].prompt_tokens, completion, cached,
                                                         &len);
                r->http = http;
                srv_stream_send(r, j, len);
                r->http = NULL;
                ss_free(j);
            }
            if (r->kind != SS_API_TRITON) {
                ss_jbuf b;
                ss_jbuf_init(&b, 64);
                ss_sse_done(&b);
                size_t n = 0;
                char *d = ss_jbuf_take(&b, &n);
                if (d)
                    ss_http_chunk(http, d, n);
                ss_free(d);
            }
        }
        evhttp_send_reply_end(http); /* frees the request when its connection is gone */
    } else if (r->failed) {
        srv_reply_error(http, r->kind, &r->err);
    } else {
        size_t len = 0;
        char *json;
        if (r->kind == SS_API_TRITON) {
            json = ss_api_triton_response_json(s->model_name, &r->choices[0], r->return_log_probs, &len);
        } else {
            for (int32_t i = 0; i < r->n && r->tool_choice != SS_TOOL_CHOICE_NONE; i++)
                if (srv_parse_calls(r, &r->choices[i], r->choices[i].text, r->choices[i].text_len) != SS_OK) {
                    srv_reply_error(http, r->kind, &r->err);
                    srv_req_free(r);
                    return;
                }
            ss_api_vocab vocab = {srv_token_text, s};
            json = ss_api_openai_response_json(&r->meta, r->choices, r->n, &vocab, &len);
        }
        srv_reply_owned(http, json, len);
    }
    srv_req_free(r);
}

static int srv_status_http(ss_status st)
{
    switch (st) {
    case SS_ERR_INVALID_ARG: return 400;
    case SS_ERR_CAPACITY: return 429;
    case SS_ERR_TIMEOUT: return 504;
    default: return 503;
    }
}

/* A chat stream chunk of content text (finish: 0, or the choice's end). */
static void srv_send_content(srv_req *r, srv_sub *sub, const char *text, size_t len, int finish)
{
    size_t n = 0;
    char *j = ss_api_openai_chunk_json(&r->meta, sub->index, text, len, NULL, finish, 0, NULL, NULL, &n);
    srv_stream_send(r, j, n);
    ss_free(j);
    sub->chunks++;
}

/* A chat stream with tools: the answer's text goes through sub's tool stream, whose events become chunks (content, a
 * call's name, its arguments piece by piece). done: the answer ended (finish): the last chunk says "tool_calls" when
 * the answer was calls, else the model's finish. */
static void srv_tool_stream(srv_req *r, srv_sub *sub, const char *text, size_t len, int done, int finish)
{
    ss_status st = SS_OK;
    if (!sub->tools) {
        ss_tool_stream_params p = ss_tool_stream_default_params();
        p.fmt = r->s->limits.tool_format;
        p.forced = r->tool_choice == SS_TOOL_CHOICE_REQUIRED || r->tool_choice == SS_TOOL_CHOICE_NAMED;
        p.tools = r->tools;
        p.max_calls = r->max_calls;
        p.response_id = r->id;
        p.choice = sub->index;
        p.max_text = SRV_MAX_TEXT;
        st = ss_tool_stream_create(&p, &sub->tools);
    }
    ss_tool_outcome out = SS_TOOL_OUTCOME_OPEN;
    if (st == SS_OK)
        st = ss_tool_stream_feed(sub->tools, text, len);
    if (st == SS_OK && done)
        st = ss_tool_stream_finish(sub->tools, &out);
    if (st != SS_OK) {
        if (!r->failed) {
            r->failed = 1;
            ss_api_fail(&r->err, 500, NULL, "response too large or out of memory");
        }
        if (!done)
            srv_cancel(r->s, sub->id);
        return;
    }
    ss_tool_event ev;
    while (ss_tool_stream_next(sub->tools, &ev)) {
        size_t n = 0;
        char *j = ev.kind == SS_TOOL_EVENT_CONTENT
                      ? ss_api_openai_chunk_json(&r->meta, sub->index, ev.text, ev.len, NULL, 0, 0, NULL, NULL, &n)
                      : ss_api_openai_tool_chunk_json(&r->meta, sub->index, &ev, &n);
        srv_stream_send(r, j, n);
        ss_free(j);
        sub->chunks++;
    }
    if (done && out == SS_TOOL_OUTCOME_CALLS) {
        size_t n = 0;
        char *j = ss_api_openai_tool_chunk_json(&r->meta, sub->index, NULL, &n);
        srv_stream_send(r, j, n);
        ss_free(j);
        sub->chunks++;
    } else if (done) {
        srv_send_content(r, sub, NULL, 0, finish);
    }
}

static void srv_handle_token(srv_req *r, srv_sub *sub, const ss_gen_event *ev)
{
    ss_server *s = r->s;
    ss_api_choice *c = &r->choices[sub->index];
    int64_t now = ss_now_us();
    if (sub->last_token_us > 0)
        ss_metrics_observe_itl(s->metrics, (double)(now - sub->last_token_us) / 1e6);
    sub->last_token_us = now;
    sub->cum_lp += ev->logprob;
    int want_lp = r->kind == SS_API_TRITON ? r->return_log_probs : r->meta.logprobs;
    ss_api_token_lp lp;
    memset(&lp, 0, sizeof lp);
    lp.token = ev->token;
    lp.logprob = ev->logprob;
    lp.n_top = ev->n_top;
    memcpy(lp.top_ids, ev->top_ids, (size_t)ev->n_top * sizeof *lp.top_ids);
    memcpy(lp.top_logprobs, ev->top_logprobs, (size_t)ev->n_top * sizeof *lp.top_logprobs);
    if (!r->stream) {
        if (ss_api_choice_append_text(c, ev->text, ev->text_len, SRV_MAX_TEXT) != SS_OK ||
            (want_lp && ss_api_choice_append_lp(c, ev->token, ev->logprob, ev->n_top, ev->top_ids,
                                                 ev->top_logprobs) != SS_OK)) {
            if (!r->failed) {
                r->failed = 1;
                ss_api_fail(&r->err, 500, NULL, "response too large or out of memory");
            }
            srv_cancel(s, sub->id);
        }
        return;
    }
    if (r->gone || (ev->text_len == 0 && !want_lp))
        return;
    if (r->kind == SS_API_CHAT && r->tool_choice != SS_TOOL_CHOICE_NONE) { /* (no logprobs: refused with tools) */
        srv_tool_stream(r, sub, ev->text, ev->text_len, 0, 0);
        return;
    }
    size_t len = 0;
    char *j;
    if (r->kind == SS_API_TRITON) {
        j = ss_api_triton_chunk_json(s->model_name, ev->text, ev->text_len, want_lp ? &lp : NULL, sub->cum_lp,
                                     r->return_log_probs, &len);
    } else {
        ss_api_vocab vocab = {srv_token_text, s};
        j = ss_api_openai_chunk_json(&r->meta, sub->index, ev->text, ev->text_len, want_lp ? &lp : NULL, 0, 0,
                                     &vocab, &sub->lp_pos, &len);
    }
    srv_stream_send(r, j, len);
    ss_free(j);
    sub->chunks++;
}

static void srv_handle_done(srv_req *r, srv_sub *sub, const ss_gen_event *ev)
{
    ss_server *s = r->s;
    ss_api_choice *c = &r->choices[sub->index];
    sub->done = 1;
    r->n_done++;
    c->finish = (int)ev->finish;
    c->prompt_tokens = ev->prompt_tokens;
    c->completion_tokens = ev->completion_tokens;
    c->cached_tokens = ev->cached_tokens;
    if (ev->ttft_us > 0 && (r->first_ttft_us < 0 || ev->ttft_us < r->first_ttft_us))
        r->first_ttft_us = ev->ttft_us;
    ss_metrics_request m = {ev->queue_us, r->first_ttft_us, ss_now_us() - r->arrival_us};
    if (ev->finish == SS_FINISH_STOP || ev->finish == SS_FINISH_LENGTH) {
        if (!r->stream) {
            if (ss_api_choice_append_text(c, ev->text, ev->text_len, SRV_MAX_TEXT) != SS_OK && !r->failed) {
                r->failed = 1;
                ss_api_fail(&r->err, 500, NULL, "response too large or out of memory");
            }
        } else if (!r->gone && !r->failed) {
            size_t len = 0;
            char *j = NULL;
            if (r->kind == SS_API_TRITON) {
                /* The last text, or an empty event when nothing was sent: a 200 stream with no event at all
                 * (nothing generated, a stop word at once) looks like a cut one. */
                if (ev->text_len || sub->chunks == 0)
                    j = ss_api_triton_chunk_json(s->model_name, ev->text, ev->text_len, NULL, sub->cum_lp,
                                                 r->return_log_probs, &len);
            } else if (r->kind == SS_API_CHAT && r->tool_choice != SS_TOOL_CHOICE_NONE) {
                srv_tool_stream(r, sub, ev->text, ev->text_len, 1, (int)ev->finish);
            } else {
                j = ss_api_openai_chunk_json(&r->meta, sub->index, ev->text, ev->text_len, NULL, (int)ev->finish,
                                             0, NULL, NULL, &len);
            }
            srv_stream_send(r, j, len);
            ss_free(j);
        }
        if (r->n_done == r->n_submitted && !r->counted) { /* its last choice (its text appended above): the
                                                             * request succeeded, or a reply too large failed it */
            r->counted = 1;
            if (r->failed)
                ss_metrics_request_failed(s->metrics, SS_METRICS_FAIL_OTHER, &m);
            else
                ss_metrics_request_ok(s->metrics, &m);
        }
    } else {
        if (!r->counted) { /* a request fails once, however many of its n choices stop with it */
            r->counted = 1;
            ss_metrics_request_failed(s->metrics,
                                      ev->finish == SS_FINISH_CANCELLED ? SS_METRICS_FAIL_CANCELED
                                      : ev->status == SS_ERR_TIMEOUT || ev->status == SS_ERR_CANCELLED ||
                                              ev->status == SS_ERR_INVALID_ARG
                                          ? SS_METRICS_FAIL_OTHER
                                          : SS_METRICS_FAIL_BACKEND,
                                      &m);
        }
        if (!r->failed) {
            r->failed = 1;
            if (ev->finish == SS_FINISH_CANCELLED)
                ss_api_fail(&r->err, 503, NULL, "%s", r->gone ? "client disconnected" : "request cancelled");
            else
                ss_api_fail(&r->err, srv_status_http(ev->status), NULL, "generation failed: %s",
                            ev->message ? ev->message : ss_status_str(ev->status));
        }
        /* One failed choice fails the request: stop the others. */
        for (int32_t i = 0; i < r->n; i++)
            if (r->subs[i].submitted && !r->subs[i].done)
                srv_cancel(s, r->subs[i].id);
    }
    if (r->n_done == r->n_submitted)
        srv_req_finish(r);
}

/* Warm-up requests' state (the loader thread waits until none is pending). */
typedef struct srv_warm {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int pending;
    int failed; /* a request ended otherwise than by its length or a stop: msg says how */
    char msg[256];
} srv_warm;

static void srv_warm_cb(void *user, const ss_gen_event *ev)
{
    srv_warm *w = user;
    if (ev->kind != SS_GEN_DONE)
        return;
    pthread_mutex_lock(&w->mu);
    w->pending--;
    if (ev->finish != SS_FINISH_STOP && ev->finish != SS_FINISH_LENGTH && !w->failed) {
        w->failed = 1;
        snprintf(w->msg, sizeof w->msg, "%s", ev->message ? ev->message : ss_status_str(ev->status));
    }
    pthread_cond_signal(&w->cv);
    pthread_mutex_unlock(&w->mu);
}

/* The sampling a request gets for the fields it leaves out: greedy, with what the model's
 * generation_config.json sets on top (as vLLM does; `--generation-config none` keeps greedy). Set while
 * loading, before any request is parsed against the limits. */
static void srv_sampling_defaults(ss_server *s, const ss_model_config *cfg)
{
    ss_sampling_params d = ss_sampling_default();
    const ss_gen_defaults *g = &cfg->gen;
    if (s->p.generation_config) {
        if (g->has_temperature)
            d.temperature = g->temperature;
        if (g->has_top_p)
            d.top_p = g->top_p;
        if (g->has_top_k)
            d.top_k = g->top_k;
        if (g->has_min_p)
            d.min_p = g->min_p;
        if (g->has_repetition_penalty)
            d.repetition_penalty = g->repetition_penalty;
    }
    s->sampling_defaults = d;
    s->limits.defaults = &s->sampling_defaults;
    SS_LOGI("sampling of fields a request leaves out: temperature %g, top_p %g, top_k %d, min_p %g, "
            "repetition_penalty %g (%s)",
            d.temperature, d.top_p, d.top_k, d.min_p, d.repetition_penalty,
            !s->p.generation_config ? "--generation-config none: greedy"
            : g->has_temperature || g->has_top_p || g->has_top_k || g->has_min_p || g->has_repetition_penalty
                ? "from the model's generation_config.json"
                : "greedy: the model's generation_config.json sets none");
}

static void srv_wake_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    ss_server *s = arg;
    pthread_mutex_lock(&s->qmu);
    srv_ev *e = s->q_head;
    s->q_head = s->q_tail = NULL;
    pthread_mutex_unlock(&s->qmu);
    while (e) {
        srv_ev *next = e->next;
        srv_sub *sub = e->user;
        if (e->ev.kind == SS_GEN_TOKEN)
            srv_handle_token(sub->r, sub, &e->ev);
        else
            srv_handle_done(sub->r, sub, &e->ev);
        srv_ev_free(e);
        e = next;
    }
    if (atomic_load(&s->state) == SRV_FAILED && !s->shutting_down) {
        SS_LOGE("model load failed: %s", s->load_err.msg);
        s->shutting_down = 1;
        event_base_loopexit(s->base, NULL);
        return;
    }
    const int loaded = atomic_load(&s->state) == SRV_READY || atomic_load(&s->state) == SRV_DRAINING;
    if (loaded && s->shutting_down && !s->replica_lost && s->sched && !ss_sched_healthy(s->sched)) {
        /* lost while draining: the drain ends as it would, but the exit code says so (session 60: it said 0; and
         * again from the drain's own state, SRV_DRAINING, until session 63) */
        SS_LOGE("the replica lost a rank while draining: failing in-flight requests (exit code 4)");
        s->replica_lost = 1;
    }
    if (atomic_load(&s->state) == SRV_READY && !s->shutting_down && s->sched && !ss_sched_healthy(s->sched)) {
        /* A rank is gone: the failed requests were answered above; leave within a second (so those
         * replies flush) with exit code 4, and let the orchestrator restart the whole replica. */
        SS_LOGE("the replica lost a rank: failing in-flight requests and exiting (code 4)");
        s->shutting_down = 1;
        s->replica_lost = 1;
        struct timeval tv = {1, 0};
        event_base_loopexit(s->base, &tv);
        return;
    }
    srv_check_exit(s);
}

/* A rank whose process is gone while no step runs fails no step, so nothing would notice it before the next
 * request (session 60, cpu replicas); the replica's hang-up watch records it, and this timer turns it into the
 * failure a step would have given: queued requests fail, and the server exits 4 for a restart. (With a step
 * running, whichever comes first fails the requests.) */
static void srv_health_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    ss_server *s = arg;
    const int state = atomic_load(&s->state); /* while draining too: queued requests wait on the replica */
    if ((state != SRV_READY && state != SRV_DRAINING) || !s->sched || !ss_sched_healthy(s->sched))
        return;
    const int lost = ss_replica_lost_rank(s->replica);
    if (lost <= 0)
        return;
    char msg[160];
    snprintf(msg, sizeof msg, "rank %d is lost (its control connection closed)", lost);
    ss_sched_fail(s->sched, SS_ERR_COMM, msg);
    srv_wake_cb(-1, 0, s); /* the unhealthy scheduler: the exit with code 4 */
}

/* ---- routing ---------------------------------------------------------------------------------------- */

static void srv_reply_empty(struct evhttp_request *req, int status)
{
    ss_http_reply_json(req, status, "", 0);
}

/* /v2/models/{m}[/versions/1][/ready|/generate|/generate_stream]; rest: the path after /v2/models/, percent-
 * decoded. The served name may hold '/' (a Hub id): it matches as a prefix followed by '/' or the end. */
static void srv_route_v2_models(ss_server *s, struct evhttp_request *req, const char *rest, int is_get, int is_post,
                                int ready)
{
    size_t own = strlen(s->model_name);
    const char *slash = strchr(rest, '/');
    size_t mlen = slash ? (size_t)(slash - rest) : strlen(rest);
    if (!strncmp(rest, s->model_name, own) && (rest[own] == '\0' || rest[own] == '/'))
        mlen = own;
    const char *tail = rest + mlen;
    /* Triton also accepts /versions/1 between the model name and the action. */
    if (!strncmp(tail, "/versions/1", 11) && (tail[11] == '\0' || tail[11] == '/'))
        tail += 11;
    if (mlen != own || strncmp(rest, s->model_name, own) != 0) {
        srv_fail_model(s, req, SS_API_TRITON, NULL, rest, mlen);
        return;
    }
    if (!strcmp(tail, "") && is_get) {
        size_t len = 0;
        srv_reply_built(req, &len, ss_api_triton_model_json(s->model_name, &len));
    } else if (!strcmp(tail, "/ready") && is_get) {
        srv_reply_empty(req, ready ? 200 : 503);
    } else if ((!strcmp(tail, "/generate") || !strcmp(tail, "/generate_stream")) && is_post) {
        if (!ready) {
            srv_fail(req, SS_API_TRITON, 503, NULL, "model is not ready");
            return;
        }
        srv_generate(s, req, SS_API_TRITON, !strcmp(tail, "/generate_stream"));
    } else if (!strcmp(tail, "") || !strcmp(tail, "/ready")) {
        srv_fail_method(req, SS_API_TRITON, "GET, HEAD");
    } else if (!strcmp(tail, "/generate") || !strcmp(tail, "/generate_stream")) {
        srv_fail_method(req, SS_API_TRITON, "POST");
    } else {
        char msg[192];
        snprintf(msg, sizeof msg, "no such endpoint: '%.100s' under model '%s'%s", tail, s->model_name,
                 !strncmp(tail, "/versions/", 10) ? " (the model has version 1 only)" : "");
        srv_fail(req, SS_API_TRITON, 404, NULL, msg);
    }
}

static void srv_api_cb(struct evhttp_request *req, void *arg)
{
    ss_server *s = arg;
    const struct evhttp_uri *uri = evhttp_request_get_evhttp_uri(req);
    const char *path = uri ? evhttp_uri_get_path(uri) : NULL;
    if (!path || !*path)
        path = "/";
    enum evhttp_cmd_type cmd = evhttp_request_get_command(req);
    int is_get = cmd == EVHTTP_REQ_GET || cmd == EVHTTP_REQ_HEAD;
    int is_post = cmd == EVHTTP_REQ_POST;
    int state = atomic_load(&s->state);
    int ready = state == SRV_READY && ss_sched_healthy(s->sched);
    int is_v1 = !strncmp(path, "/v1/", 4) || !strcmp(path, "/tokenize") || !strcmp(path, "/detokenize");
    int is_v2m = !strncmp(path, "/v2/models/", 11);
    ss_api_kind fam = is_v2m || !strncmp(path, "/v2", 3) ? SS_API_TRITON : SS_API_COMPLETION;

    if (!strcmp(path, "/v2/health/live") || !strcmp(path, "/health") || !strcmp(path, "/v2/health/ready")) {
        if (!is_get) {
            srv_fail_method(req, fam, "GET, HEAD");
            return;
        }
        if (!strcmp(path, "/v2/health/ready"))
            srv_reply_empty(req, ready ? 200 : 503);
        else
            srv_reply_empty(req, 200);
        return;
    }
    if ((is_v1 || is_v2m) && !ss_http_bearer_ok(req, s->p.api_key)) {
        srv_fail(req, fam, 401, NULL, "missing or invalid API key (Authorization: Bearer ...)");
        return;
    }
    if (!strcmp(path, "/v2")) {
        size_t len = 0;
        if (!is_get)
            srv_fail_method(req, fam, "GET, HEAD");
        else
            srv_reply_built(req, &len, ss_api_triton_server_json(SS_VERSION, &len));
        return;
    }
    if (is_v2m) {
        if (state == SRV_DRAINING && is_post) {
            srv_fail(req, fam, 503, NULL, "server is shutting down");
            return;
        }
        char *rest = ss_http_path_decode(path + 11); /* "%2F" in a name is a '/' */
        if (!rest)
            srv_fail(req, fam, 404, NULL, "no such endpoint (the path holds %00)");
        else
            srv_route_v2_models(s, req, rest, is_get, is_post, ready);
        free(rest); /* libevent's allocation */
        return;
    }
    /* the limits are the loader's until it publishes READY (state's atomic store orders them before it) */
    int loaded = state == SRV_READY || state == SRV_DRAINING;
    ss_api_model_card card = {s->model_name, s->start_unix, loaded ? s->limits.max_context : 0,
                              loaded ? s->limits.vocab_size : 0};
    if (!strcmp(path, "/v1/models")) {
        size_t len = 0;
        if (!is_get)
            srv_fail_method(req, fam, "GET, HEAD");
        else
            srv_reply_built(req, &len, ss_api_openai_models_json(&card, &len));
        return;
    }
    if (!strncmp(path, "/v1/models/", 11)) { /* model ids may hold '/' (Hub ids), sent raw or as %2F */
        char *id = ss_http_path_decode(path + 11);
        size_t len = 0;
        if (!is_get)
            srv_fail_method(req, fam, "GET, HEAD");
        else if (!id || strcmp(id, s->model_name) != 0)
            srv_fail_model(s, req, fam, "model", id ? id : "", id ? strlen(id) : 0);
        else
            srv_reply_built(req, &len, ss_api_openai_model_json(&card, &len));
        free(id); /* libevent's allocation */
        return;
    }
    int gen = !strcmp(path, "/v1/completions") ? 1 : !strcmp(path, "/v1/chat/completions") ? 2 : 0;
    int tok = !strcmp(path, "/tokenize") ? 1 : !strcmp(path, "/detokenize") ? 2 : 0;
    if (!gen && !tok) {
        srv_fail(req, fam, 404, NULL, "no such endpoint");
        return;
    }
    if (!is_post) {
        srv_fail_method(req, fam, "POST");
        return;
    }
    if (state == SRV_DRAINING) {
        srv_fail(req, fam, 503, NULL, "server is shutting down");
        return;
    }
    if (!ready) {
        srv_fail(req, fam, 503, NULL, state == SRV_LOADING ? "model is loading" : "model is not ready");
        return;
    }
    if (gen)
        srv_generate(s, req, gen == 1 ? SS_API_COMPLETION : SS_API_CHAT, 0);
    else
        srv_tokenize(s, req, tok == 2);
}

static void srv_metrics_cb(struct evhttp_request *req, void *arg)
{
    ss_server *s = arg;
    const struct evhttp_uri *uri = evhttp_request_get_evhttp_uri(req);
    const char *path = uri ? evhttp_uri_get_path(uri) : NULL;
    if (!path || strcmp(path, "/metrics") != 0) {
        ss_http_reply_text(req, 404, "text/plain", "not found\n", 10);
        return;
    }
    enum evhttp_cmd_type cmd = evhttp_request_get_command(req);
    if (cmd != EVHTTP_REQ_GET && cmd != EVHTTP_REQ_HEAD) {
        evhttp_add_header(evhttp_request_get_output_headers(req), "Allow", "GET, HEAD");
        ss_http_reply_text(req, 405, "text/plain", "method not allowed (use GET)\n", 29);
        return;
    }
    ss_sched_stats st;
    int have = atomic_load(&s->state) != SRV_LOADING && s->sched; /* published before state changed */
    if (have)
        ss_sched_stats_get(s->sched, &st);
    ss_metrics_set_tokenizing(s->metrics, s->pool_jobs);
    size_t len = 0;
    char *text = ss_metrics_render(s->metrics, have ? &st : NULL, &len);
    if (!text) {
        ss_http_reply_text(req, 500, "text/plain", "out of memory\n", 14);
        return;
    }
    ss_http_reply_text(req, 200, "text/plain; version=0.0.4; charset=utf-8", text, len);
    ss_free(text);
}

/* ---- loading ------------------------------------------------------------------------------------------ */

/* Runs n warm-up requests at once and waits for them: request i has a prompt of prompt_len distinct token ids
 * (the first the BOS) and stops after max_tokens[i] tokens (max_tokens: borrowed). */
static ss_status srv_warm_run(ss_server *s, int32_t n, int32_t prompt_len, const int32_t *max_tokens, ss_err *err)
{
    srv_warm w;
    memset(&w, 0, sizeof w);
    pthread_mutex_init(&w.mu, NULL);
    pthread_cond_init(&w.cv, NULL);
    ss_status st = SS_OK;
    for (int32_t i = 0; i < n && st == SS_OK; i++) {
        ss_gen_request *g = ss_calloc(1, sizeof *g);
        if (!g || !(g->prompt = ss_malloc((size_t)prompt_len * sizeof *g->prompt))) {
            ss_gen_request_free(g);
            st = ss_err_set(err, SS_ERR_NOMEM, "warm-up: out of memory");
            break;
        }
        for (int32_t j = 0; j < prompt_len; j++) /* distinct prompts: no prefix is shared */
            g->prompt[j] = j == 0 && s->bos_id >= 0 ? s->bos_id
                                                    : (int32_t)((1 + (int64_t)i * prompt_len + j) % s->limits.vocab_size);
        g->n_prompt = prompt_len;
        g->max_tokens = max_tokens[i];
        g->sp = ss_sampling_default();
        g->ignore_eos = 1;
        uint64_t id;
        pthread_mutex_lock(&w.mu);
        w.pending++;
        pthread_mutex_unlock(&w.mu);
        st = ss_sched_submit(s->sched, g, srv_warm_cb, &w, &id, err); /* takes g, also on error */
        if (st != SS_OK) {
            pthread_mutex_lock(&w.mu);
            w.pending--;
            pthread_mutex_unlock(&w.mu);
        }
    }
    pthread_mutex_lock(&w.mu); /* also after a failed submit: the ones submitted still call back */
    while (w.pending > 0)
        pthread_cond_wait(&w.cv, &w.mu);
    pthread_mutex_unlock(&w.mu);
    if (st == SS_OK && w.failed)
        st = ss_err_set(err, SS_ERR_INTERNAL, "warm-up generation failed: %s", w.msg);
    pthread_cond_destroy(&w.cv);
    pthread_mutex_destroy(&w.mu);
    return st;
}

static int32_t srv_warm_rows(const void *ctx, int32_t n)
{
    return ss_replica_graph_rows((const ss_replica *)ctx, n);
}

/* The warm-up's second part on a GPU: n requests at once (their prompts one prefill step where the step's tokens
 * allow) whose decode batch then shrinks through the graph sizes (ss_warmup_plan): n = 256 with buckets of 8 takes
 * 35 decode steps, one per graph of the first context bound. */
static ss_status srv_warm_graphs(ss_server *s, int32_t n, ss_err *err)
{
    int32_t *max_tokens = ss_malloc((size_t)n * sizeof *max_tokens);
    if (!max_tokens)
        return ss_err_set(err, SS_ERR_NOMEM, "warm-up: out of memory");
    const int32_t steps = ss_warmup_plan(n, srv_warm_rows, s->replica, max_tokens);
    int64_t prompt = ss_replica_max_batch_tokens(s->replica) / n;
    if (prompt > SRV_WARM_PROMPT)
        prompt = SRV_WARM_PROMPT;
    if (prompt >= s->limits.max_context) /* a tiny --max-seq-len: the prompt must leave a token to make */
        prompt = s->limits.max_context - 1;
    if (prompt < 1)
        prompt = 1;
    const int64_t t0 = ss_now_us();
    ss_status st = srv_warm_run(s, n, (int32_t)prompt, max_tokens, err);
    if (st == SS_OK)
        SS_LOGI("warm-up: %d requests at once, %d decode steps, in %.2f s", (int)n, (int)steps,
                (double)(ss_now_us() - t0) / 1e6);
    ss_free(max_tokens);
    return st;
}

/* Before the server says ready: a 1-token prompt and one decode step, so that the batch-1 decode graph (and, on a
 * GPU, the persistent decode kernel) is captured and proven before the first request, not on it. Then, where decode
 * steps replay graphs, srv_warm_graphs with up to --max-batch (and --max-waiting) requests (the benchmark switch
 * SS_WARMUP_BATCH: fewer; 0 or 1 skips it): its prefill's GEMMs set cuBLASLt up (0.13-0.2 s, on the first request's
 * time otherwise), and its decode steps capture every graph of the first context bound (one H200, 8B, session 51: a
 * cold server's TTFT p99 at 80 requests/s 128 -> 42.7 ms, warm 36.2; ready 0.4 s later). */
static ss_status srv_warmup(ss_server *s, ss_err *err)
{
    const int32_t two = 2;
    SS_CHECK(srv_warm_run(s, 1, 1, &two, err));
    int32_t n = ss_replica_max_seqs(s->replica);
    const char *env = getenv("SS_WARMUP_BATCH"); /* benchmark switch (docs/architecture.md) */
    if (env) {
        char *end = NULL;
        long v = strtol(env, &end, 10);
        if (end != env && *end == '\0' && v >= 0 && v <= n)
            n = (int32_t)v;
        else
            SS_LOGW("serve: SS_WARMUP_BATCH='%s' is not a count of requests in 0..%d: ignored", env, (int)n);
    }
    if (n > s->p.sched.max_waiting) /* all are queued at once: more than --max-waiting would be refused */
        n = s->p.sched.max_waiting;
    while (n > 1 && ss_replica_graph_rows(s->replica, n) == 0) /* beyond the largest graph */
        n--;
    if (n <= 1)
        return SS_OK;
    return srv_warm_graphs(s, n, err);
}

/* The replica's cancel (ss_replica_params.cancelled): a SIGTERM or SIGINT came while loading. Loader thread. */
static int srv_load_cancelled(void *arg)
{
    ss_server *s = arg;
    return atomic_load(&s->load_cancel);
}

static ss_status srv_load(ss_server *s, ss_err *err)
{
    int64_t t0 = ss_now_us();
    SS_LOGI("loading model %s", s->p.model_dir);
    SS_CHECK(ss_tokenizer_load(s->p.model_dir, &s->tok, err));
    const char *tpl = ss_tokenizer_chat_template(s->tok);
    if (tpl) {
        ss_status st = ss_template_compile(tpl, strlen(tpl), "chat_template", &s->tmpl, err);
        if (st != SS_OK) {
            SS_LOGW("chat template of %s does not compile (%s); /v1/chat/completions is off", s->p.model_dir,
                    err->msg);
            s->tmpl = NULL;
        }
        s->limits.tool_format = s->tmpl ? ss_tool_format_of_template(tpl) : SS_TOOL_FORMAT_NONE;
        SS_LOGI("chat template: function calling %s", ss_tool_format_str(s->limits.tool_format));
    } else {
        SS_LOGW("%s has no chat template; /v1/chat/completions is off", s->p.model_dir);
    }
    ss_replica_params rp = s->p.replica;
    rp.model_dir = s->p.model_dir;
    rp.cancelled = srv_load_cancelled;
    rp.cancelled_arg = s;
    SS_CHECK(ss_replica_create(&rp, &s->replica, err));
    if (srv_load_cancelled(s)) /* no warm-up for a server that is stopping */
        return ss_err_set(err, SS_ERR_CANCELLED, "stopped by a signal before the model was ready");
    const ss_model_config *cfg = ss_replica_config(s->replica);
    /* the replica's context is at most what its smallest KV cache holds, so a sequence alone always fits: a
     * request that cannot is refused up front (400), not failed halfway with a status that invites a retry */
    s->limits.max_context = ss_replica_max_seq_len(s->replica);
    s->limits.vocab_size = cfg->vocab_size;
    s->limits.max_n = s->p.max_n > 0 ? s->p.max_n : SS_API_MAX_N;
    /* Each choice waits in the queue as a request of its own: more choices than --max-waiting could never
     * be admitted, so they are a 400 (not a 429 that a client following Retry-After would repeat forever). */
    if (s->p.sched.max_waiting > 0 && s->limits.max_n > s->p.sched.max_waiting)
        s->limits.max_n = s->p.sched.max_waiting;
    srv_sampling_defaults(s, cfg);
    s->bos_id = cfg->bos_id;
    SS_CHECK(ss_sched_create(&s->p.sched, s->replica, s->tok, &s->sched, err));
    if (s->p.warmup)
        SS_CHECK(srv_warmup(s, err));
    double secs = (double)(ss_now_us() - t0) / 1e6;
    ss_metrics_set_load_seconds(s->metrics, secs);
    SS_LOGI("model %s ready as '%s' (context %d, vocab %d) after %.1f s", s->p.model_dir, s->model_name,
            (int)s->limits.max_context, (int)s->limits.vocab_size, secs);
    return SS_OK;
}

static void *srv_loader_main(void *arg)
{
    ss_server *s = arg;
    s->load_status = srv_load(s, &s->load_err);
    atomic_store(&s->state, s->load_status == SS_OK ? SRV_READY : SRV_FAILED);
    event_active(s->wake, EV_READ, 0);
    return NULL;
}

/* ---- shutdown ------------------------------------------------------------------------------------------ */

static void *srv_drainer_main(void *arg)
{
    ss_server *s = arg;
    int64_t left = s->p.drain_timeout_ms - (ss_now_us() - s->signal_us) / 1000; /* the deadline runs from SIGTERM */
    ss_sched_drain(s->sched, left > 1 ? left : 1);
    atomic_store(&s->drained, 1);
    event_active(s->wake, EV_READ, 0);
    return NULL;
}

#define SRV_EXIT_LINGER_US 1000000 /* the longest the exit waits for lingering closes (ss_http_listener_lingering) */

static void srv_exit_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    ss_server *s = arg;
    /* A client still sending when its request was answered 503 reads that answer if its socket is still drained
     * when it finishes sending; a moment more for those, then the exit closes what is left. */
    struct timeval again = {0, 50000};
    if (ss_http_listener_lingering(s->api) + ss_http_listener_lingering(s->mapi) > 0 &&
        ss_now_us() - s->exit_us < SRV_EXIT_LINGER_US && evtimer_add(s->exit_timer, &again) == 0)
        return;
    event_base_loopexit(s->base, NULL);
}

void srv_check_exit(ss_server *s)
{
    if (!s->shutting_down || !atomic_load(&s->drained) || s->live_reqs > 0 || s->exit_timer)
        return;
    /* Requests still arriving are answered now (else the exit would cut them without a word), and the last
     * replies get a moment to leave the socket buffers. */
    const char *msg = "server is shutting down: this request had not arrived in full when the drain ended";
    ss_http_listener_answer_incomplete(s->api, 503, msg);
    ss_http_listener_answer_incomplete(s->mapi, 503, msg);
    s->exit_us = ss_now_us();
    s->exit_timer = evtimer_new(s->base, srv_exit_cb, s);
    struct timeval tv = {0, 200000};
    if (!s->exit_timer || evtimer_add(s->exit_timer, &tv) != 0)
        event_base_loopexit(s->base, NULL);
}

static void srv_signal_cb(evutil_socket_t sig, short what, void *arg)
{
    (void)what;
    ss_server *s = arg;
    if (s->shutting_down)
        return;
    s->shutting_down = 1;
    SS_LOGI("signal %d: stopping (drain deadline %lld ms)", (int)sig, (long long)s->p.drain_timeout_ms);
    ss_http_listener_stop_accepting(s->api);
    if (atomic_load(&s->state) != SRV_READY) {
        /* Still loading (or failed): nothing in flight; the loader is joined on the way out, and stops waiting for
         * ranks that have not come (a multi-node leader would wait 30 minutes for them). */
        atomic_store(&s->load_cancel, 1);
        atomic_store(&s->drained, 1);
        event_base_loopexit(s->base, NULL);
        return;
    }
    atomic_store(&s->state, SRV_DRAINING);
    s->signal_us = ss_now_us();
    if (s->pool_jobs > 0) { /* requests read before the signal are drained too, once their prompts are encoded */
        s->drain_deferred = 1;
        return;
    }
    srv_start_drain(s);
}

void srv_start_drain(ss_server *s)
{
    if (pthread_create(&s->drainer, NULL, srv_drainer_main, s) == 0) {
        s->drainer_started = 1;
    } else {
        ss_sched_drain(s->sched, s->p.drain_timeout_ms);
        atomic_store(&s->drained, 1);
        event_active(s->wake, EV_READ, 0);
    }
}

/* ---- public ------------------------------------------------------------------------------------------- */

ss_status ss_server_create(const ss_server_params *p, ss_server **out, ss_err *err)
{
    *out = NULL;
    if (!p->model_dir || !p->model_dir[0])
        return ss_err_set(err, SS_ERR_INVALID_ARG, "--model: no model folder given");
    if (evthread_use_pthreads() != 0)
        return ss_err_set(err, SS_ERR_INTERNAL, "libevent: evthread_use_pthreads failed");
    ss_server *s = ss_calloc(1, sizeof *s);
    if (!s)
        return ss_err_set(err, SS_ERR_NOMEM, "out of memory");
    s->p = *p;
    s->bos_id = -1;
    pthread_mutex_init(&s->qmu, NULL);
    atomic_init(&s->state, SRV_LOADING);
    atomic_init(&s->drained, 0);
    atomic_init(&s->load_cancel, 0);
    s->start_unix = ss_api_now_unix();
    s->id_seed = srv_mix((uint64_t)ss_now_us() ^ ((uint64_t)getpid() << 32));
    int fd = open("/dev/urandom", O_RDONLY | O_CLOEXEC);
    if (fd >= 0) {
        uint64_t v;
        if (read(fd, &v, sizeof v) == (ssize_t)sizeof v)
            s->id_seed ^= v;
        close(fd);
    }
    ss_status st = SS_OK;
    s->model_name = p->served_model_name && p->served_model_name[0] ? ss_strdup(p->served_model_name)
                                                                      : ss_api_default_model_name(p->model_dir);
    if (!s->model_name || ss_metrics_create(s->model_name, &s->metrics) != SS_OK) {
        st = ss_err_set(err, SS_ERR_NOMEM, "out of memory");
        goto fail;
    }
    s->base = event_base_new();
    if (!s->base) {
        st = ss_err_set(err, SS_ERR_INTERNAL, "libevent: event_base_new failed");
        goto fail;
    }
    s->wake = event_new(s->base, -1, 0, srv_wake_cb, s);
    s->sig_term = evsignal_new(s->base, SIGTERM, srv_signal_cb, s);
    s->sig_int = evsignal_new(s->base, SIGINT, srv_signal_cb, s);
    s->health_timer = event_new(s->base, -1, EV_PERSIST, srv_health_cb, s);
    if (!s->wake || !s->sig_term || !s->sig_int || !s->health_timer) {
        st = ss_err_set(err, SS_ERR_NOMEM, "libevent: cannot create events");
        goto fail;
    }
    /* SS_TEST_POOL_HOLD=FILE: a test switch (tests/serve/test_prompt_pool.py); docs/deploy.md lists it */
    SS_CHECK_GOTO(ss_work_pool_create(s->base, SRV_TOKENIZER_THREADS, getenv("SS_TEST_POOL_HOLD"), &s->pool, err),
                  st, fail);
    ss_http_listen_params lp = {p->host ? p->host : "0.0.0.0", p->port, p->max_body_bytes, p->max_header_bytes,
                                p->conn_timeout_s};
    SS_CHECK_GOTO(ss_http_listener_create(s->base, &lp, srv_api_cb, s, &s->api, err), st, fail);
    s->port = ss_http_listener_port(s->api);
    if (p->metrics_port >= 0) {
        lp.port = p->metrics_port;
        lp.max_body_bytes = 4096;
        SS_CHECK_GOTO(ss_http_listener_create(s->base, &lp, srv_metrics_cb, s, &s->mapi, err), st, fail);
        s->metrics_port = ss_http_listener_port(s->mapi);
    } else {
        s->metrics_port = -1;
    }
    *out = s;
    return SS_OK;
fail:
    ss_server_destroy(s);
    return st;
}

int ss_server_port(const ss_server *s)
{
    return s->port;
}

int ss_server_metrics_port(const ss_server *s)
{
    return s->metrics_port;
}

ss_status ss_server_run(ss_server *s, ss_err *err)
{
    /* SIGPIPE would kill the process when a client vanishes mid-write. */
    signal(SIGPIPE, SIG_IGN);
    evsignal_add(s->sig_term, NULL);
    evsignal_add(s->sig_int, NULL);
    const struct timeval health_tv = {0, SRV_HEALTH_MS * 1000};
    evtimer_add(s->health_timer, &health_tv);
    SS_LOGI("listening on http://%s:%d (metrics on port %d), model '%s' from %s",
            s->p.host ? s->p.host : "0.0.0.0", s->port, s->metrics_port, s->model_name, s->p.model_dir);
    if (pthread_create(&s->loader, NULL, srv_loader_main, s) != 0)
        return ss_err_set(err, SS_ERR_INTERNAL, "cannot start the loader thread");
    s->loader_started = 1;
    event_base_dispatch(s->base);
    pthread_join(s->loader, NULL);
    s->loader_started = 0;
    if (s->drainer_started) {
        pthread_join(s->drainer, NULL);
        s->drainer_started = 0;
    }
    if (s->load_status != SS_OK) {
        snprintf(err->msg, sizeof err->msg, "%s", s->load_err.msg);
        return s->load_status;
    }
    if (s->replica_lost)
        return ss_err_set(err, SS_ERR_COMM, "the replica lost a rank (see the log for which); exiting for a restart");
    SS_LOGI("stopped cleanly");
    return SS_OK;
}

void ss_server_destroy(ss_server *s)
{
    if (!s)
        return;
    if (s->loader_started)
        pthread_join(s->loader, NULL);
    if (s->drainer_started)
        pthread_join(s->drainer, NULL);
    /* The scheduler first: its thread may still call back into the queue. */
    ss_sched_destroy(s->sched);
    s->sched = NULL;
    /* Deliver what is left so that every pending HTTP request is released before evhttp goes. */
    if (s->wake)
        srv_wake_cb(-1, 0, s);
    s->pool_closing = 1;
    ss_work_pool_destroy(s->pool);
    ss_http_listener_destroy(s->api);
    ss_http_listener_destroy(s->mapi);
    if (s->wake)
        event_free(s->wake);
    /* Freeing a signal event gives the signal its default action back (libevent restores what it found) while the
     * replica is still being torn down: a second signal there (Ctrl-C pressed again, a group kill repeated) killed a
     * clean drain, exit -15 instead of 0. The drain is over: from here on the signals are ignored. */
    if (s->sig_term)
        event_free(s->sig_term);
    signal(SIGTERM, SIG_IGN);
    if (s->sig_int)
        event_free(s->sig_int);
    signal(SIGINT, SIG_IGN);
    if (s->exit_timer)
        event_free(s->exit_timer);
    if (s->health_timer)
        event_free(s->health_timer);
    if (s->base)
        event_base_free(s->base);
    ss_replica_destroy(s->replica);
    ss_template_destroy(s->tmpl);
    ss_tokenizer_destroy(s->tok);
    ss_metrics_destroy(s->metrics);
    pthread_mutex_destroy(&s->qmu);
    ss_free(s->model_name);
    ss_free(s);
}

/* server_internal.h — what the two halves of the serving process share: the server's and an HTTP generation
 * request's state, and the loop-thread helpers each half calls (server.c: wiring, routing, replies, a request's
 * life; server_gen.c: a request from JSON to scheduler requests, its body parsed and its prompt tokenized off
 * the loop). */
#ifndef SS_SERVER_INTERNAL_H
#define SS_SERVER_INTERNAL_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>

#include <event2/event.h>
#include <event2/http.h>

#include "serve/api_openai.h"
#include "serve/http_server.h"
#include "serve/metrics.h"
#include "serve/server.h"
#include "serve/work_pool.h"
#include "template/chat_template.h"
#include "tokenizer/tokenizer.h"

enum { SRV_LOADING = 0, SRV_READY, SRV_FAILED, SRV_DRAINING };

/* Request bodies waiting for the work pool, at most (8 at the default --max-body-bytes). */
#define SRV_POOL_MAX_BYTES ((size_t)64 << 20)
/* A body at most this long is refused only beyond SRV_POOL_SMALL_RESERVE more (256 such bodies, thousands of
 * typical requests): others' long prompts do not turn it away. */
#define SRV_POOL_SMALL_BODY ((size_t)64 << 10)
#define SRV_POOL_SMALL_RESERVE ((size_t)16 << 20)

typedef struct srv_req srv_req;
typedef struct srv_ev srv_ev; /* server.c's: an event off the scheduler thread */

/* One scheduler request (a choice of an HTTP request). */
typedef struct srv_sub {
    srv_req *r;
    int32_t index;
    uint64_t id;
    int submitted, done;
    int64_t last_token_us;
    double cum_lp;
    int32_t chunks;         /* stream chunks sent (Triton: a stream always ends with one) */
    ss_api_text_pos lp_pos; /* where the next token starts in the streamed text (completions' text_offset) */
    ss_tool_stream *tools; /* a chat stream with tools: its answer's content and calls as they come (owned) */
} srv_sub;

struct srv_req {
    ss_server *s;
    struct evhttp_request *http; /* NULL once answered or freed by libevent */
    ss_api_kind kind;
    int stream, include_usage, return_log_probs;
    int gone;           /* the client went away */
    struct event *watch; /* EOF watch on the client socket while no reply is being written */
    int stream_started;
    char id[64];
    ss_api_resp_meta meta;
    int32_t n, n_submitted, n_done;
    srv_sub *subs;
    ss_api_choice *choices;
    int failed;
    int counted;        /* the request's outcome is in the metrics (once per request, not per choice) */
    int64_t first_ttft_us; /* the earliest first token of its choices (-1: none yet) */
    ss_api_error err;
    int64_t arrival_us;
    cJSON *tools;               /* the request's tools (owned), when calls are parsed out of its answers */
    ss_tool_choice tool_choice; /* NONE: answers are text */
    int32_t max_calls;          /* parallel_tool_calls false: 1 */
};

struct ss_server {
    ss_server_params p;
    char *model_name;
    struct event_base *base;
    ss_http_listener *api, *mapi; /* the API and metrics ports */
    struct event *wake, *sig_term, *sig_int, *exit_timer;
    int64_t exit_us; /* when exit_timer was first armed (its lingering wait is bounded from there) */
    struct event *health_timer; /* every SRV_HEALTH_MS: a rank lost while no step runs (srv_health_cb) */
    int port, metrics_port;

    pthread_t loader, drainer;
    int loader_started, drainer_started;
    atomic_int state;
    atomic_int drained;
    atomic_int load_cancel; /* a signal came while loading: the loader stops waiting for ranks (loop -> loader) */
    ss_status load_status;
    int replica_lost; /* a step failed: exit with SS_ERR_COMM (code 4) */
    ss_err load_err;
    /* Published by the loader before state = READY (release), read by the loop after (acquire). */
    ss_tokenizer *tok;
    ss_template *tmpl;
    ss_replica *replica;
    ss_sched *sched;
    ss_api_limits limits;
    ss_sampling_params sampling_defaults; /* limits.defaults points here once the model is loaded */
    int32_t bos_id;

    ss_metrics *metrics;
    pthread_mutex_t qmu;
    srv_ev *q_head, *q_tail;
    int64_t live_reqs; /* loop thread */
    ss_work_pool *pool; /* request bodies parsed and prompts tokenized off the loop */
    int64_t pool_jobs;  /* jobs in it (loop thread) */
    size_t pool_bytes;  /* their text */
    int drain_deferred; /* SIGTERM came while jobs were in the pool: the drain starts when they are submitted */
    int64_t signal_us;  /* when SIGTERM came (the drain deadline runs from it) */
    int pool_closing;   /* ss_server_destroy: jobs handed back are answered 503, not submitted */
    uint64_t id_seed, id_counter;
    int64_t start_unix;
    int shutting_down;
};

/* server.c; loop thread unless said otherwise */
void srv_cancel(ss_server *s, uint64_t id);
void srv_check_exit(ss_server *s);
void srv_start_drain(ss_server *s); /* the scheduler's drain, on its own thread */
void srv_fail(struct evhttp_request *req, ss_api_kind kind, int status, const char *param, const char *msg);
uint64_t srv_mix(uint64_t x);
void srv_on_close(struct evhttp_connection *conn, void *arg);
void srv_reply_error(struct evhttp_request *req, ss_api_kind kind, const ss_api_error *e);
void srv_reply_owned(struct evhttp_request *req, char *json, size_t len);
void srv_req_free(srv_req *r);
void srv_stream_send(srv_req *r, const char *json, size_t len);
void srv_sub_cb(void *user, const ss_gen_event *ev);
void srv_watch(srv_req *r, struct evhttp_connection *conn);
int srv_conn_hung_up(struct evhttp_connection *conn); /* any thread */

/* server_gen.c; loop thread */
void srv_generate(ss_server *s, struct evhttp_request *req, ss_api_kind kind, int stream_endpoint);
void srv_tokenize(ss_server *s, struct evhttp_request *req, int decode);

#endif

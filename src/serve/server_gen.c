/* server_gen.c — an HTTP generation request from its JSON to scheduler requests (its body parsed and its prompt
 * tokenized on the work pool, off the loop), and POST /tokenize and /detokenize. Loop thread, but for
 * srv_tok_job_run. */
#include <stdlib.h>
#include <string.h>

#include "core/alloc.h"
#include "core/clock.h"
#include "core/log.h"
#include "serve/api_triton.h"
#include "serve/server_internal.h"

/* ---- generation requests --------------------------------------------------------------------------- */

/* A request's body parse and its prompt's tokenization, run on the work pool so that a long body (up to
 * --max-body-bytes) does not stall the loop and every other client with it: 8 MB of token ids took cJSON ~0.34 s
 * here, 6 MB of text ~0.5 s a MB to encode. The request waits here; a close of its connection is noted. */
typedef struct srv_tok_job {
    ss_work w; /* first: the pool's callbacks get &w */
    ss_server *s;
    struct evhttp_request *http; /* NULL once freed with its connection */
    int gone;                    /* the client went away */
    ss_api_kind kind;
    int route;                   /* SRV_JOB_GENERATE, _TOKENIZE (the reply is the ids) or _DETOKENIZE */
    int stream_endpoint;         /* Triton's generate_stream */
    char *body;                  /* the request body (owned) until the worker parses it */
    int parsed;                  /* the worker parsed the body and found the request valid; else e says why not */
    ss_api_request q;            /* a generation request's fields (owned) */
    int64_t arrival_us;
    char *text;                  /* the text to encode (owned; a completion's borrowed from q when text_owned 0) */
    size_t text_len;
    int text_owned, add_special;
    int render;                  /* a chat request: the worker renders q.messages through the chat template first
                                  * (text_owned once it did: a job that ran without it failed there) */
    size_t held;                 /* the bytes counted against SRV_POOL_MAX_BYTES while the job is in the pool (the
                                  * body's; a chat request's rendering and the ids are of its order) */
    const char *param;           /* the field named in errors */
    int32_t *ids;                /* the result (owned) */
    size_t n_ids;
    ss_status st;
    ss_err err;
    size_t body_len;             /* the body's size */
    char *reply;                 /* its JSON reply (owned), or NULL and e */
    size_t reply_len;
    ss_api_error e;
} srv_tok_job;

enum { SRV_JOB_GENERATE = 0, SRV_JOB_TOKENIZE, SRV_JOB_DETOKENIZE };

/* What a generation request's prompt is encoded from: the prompt (borrowed from q), or for a chat request its
 * messages, which the worker renders through the chat template (srv_tok_job_run; ~0.5 s for 6 MB of messages
 * here, too long for the loop). */
static ss_status srv_prompt_text(const ss_server *s, const ss_api_request *q, srv_tok_job *j, ss_api_error *e)
{
    j->add_special = 1;
    j->param = q->kind == SS_API_TRITON ? "text_input" : "prompt";
    if (q->kind != SS_API_CHAT) {
        j->text = q->prompt;
        j->text_len = strlen(q->prompt);
        return SS_OK;
    }
    if (!s->tmpl)
        return ss_api_fail(e, 400, "messages", "this model has no chat template; use /v1/completions");
    j->render = 1;
    j->add_special = 0; /* the template writes BOS and the role tokens */
    j->param = "messages";
    return SS_OK;
}

/* The encoder's result as the request's prompt ids (*ids taken from j) or its error. */
static ss_status srv_prompt_ids(srv_tok_job *j, int32_t **ids, int32_t *n, ss_api_error *e)
{
    const char *param = j->param;
    *ids = NULL;
    *n = 0;
    if (j->render && !j->text_owned)
        return ss_api_fail(e, 400, "messages", "chat template: %s", j->err.msg);
    if (j->st != SS_OK)
        return ss_api_fail(e, 400, param, "cannot tokenize '%s': %s", param, j->err.msg);
    if (j->n_ids == 0)
        return ss_api_fail(e, 400, param, "'%s' must not be empty", param);
    if (j->n_ids > (size_t)INT32_MAX / 2)
        return ss_api_fail(e, 400, param, "'%s' is too long", param);
    *ids = j->ids;
    *n = (int32_t)j->n_ids;
    j->ids = NULL;
    return SS_OK;
}

static void srv_tok_job_free(srv_tok_job *j)
{
    ss_free(j->body);
    if (j->text_owned)
        ss_free(j->text);
    ss_free(j->ids);
    ss_free(j->reply);
    ss_api_request_clear(&j->q);
    ss_free(j);
}

/* Worker thread: POST /detokenize's decoding and reply (its ids can be ~1M). */
static void srv_detok_run(srv_tok_job *j)
{
    char *text = NULL;
    size_t text_len = 0;
    ss_err err;
    if (ss_tokenizer_decode(j->s->tok, j->ids, j->n_ids, 0, &text, &text_len, &err) != SS_OK) {
        ss_api_fail(&j->e, 400, "tokens", "%s", err.msg);
    } else {
        j->reply = ss_api_detokenize_json(text, text_len, &j->reply_len);
        if (!j->reply)
            ss_api_fail(&j->e, 500, NULL, "out of memory");
    }
    ss_free(text);
}

static ss_status srv_check_model(const ss_server *s, const char *model, ss_api_error *e)
{
    if (model && strcmp(model, s->model_name) != 0)
        return ss_api_fail(e, 404, "model", "model '%s' not found; this server serves '%s'", model,
                           s->model_name);
    return SS_OK;
}

/* Worker thread: the body's parse into j's fields and the checks that need no loop state (the model's name, a
 * chat template for a chat request); 1 when the request goes on, else 0 with j->e set. Two workers may parse at
 * once: cJSON's README declares its parser thread-safe as long as cJSON_GetErrorPtr is never used (the parse
 * end comes from cJSON_ParseWithLengthOpts instead), cJSON_InitHooks is not called once threads use it, and
 * setlocale is not called meanwhile; shardserve does none of the three. (Each parse still writes cJSON's static
 * error position, which nothing reads: helgrind reports that write when two parses overlap.) A parse's tree is
 * ~23 times its body for an array of ids: two 8 MB bodies at once peaked at ~400 MB above idle here. */
static int srv_job_parse(srv_tok_job *j)
{
    const ss_server *s = j->s;
    ss_status st = SS_OK;
    int32_t n = 0;
    if (j->route == SRV_JOB_DETOKENIZE) {
        st = ss_api_detokenize_parse(j->body, j->body_len, &s->limits, &j->ids, &n, &j->e);
        j->n_ids = (size_t)n;
    } else if (j->route == SRV_JOB_TOKENIZE) {
        st = ss_api_tokenize_parse(j->body, j->body_len, &j->text, &j->add_special, &j->e);
        j->text_len = j->text ? strlen(j->text) : 0;
        j->text_owned = 1;
        j->param = "prompt";
    } else if (j->kind == SS_API_TRITON) {
        st = ss_api_triton_parse(j->body, j->body_len, j->stream_endpoint, &s->limits, &j->q, &j->e);
    } else {
        st = ss_api_openai_parse(j->body, j->body_len, j->kind, &s->limits, &j->q, &j->e);
    }
    ss_free(j->body);
    j->body = NULL;
    if (st != SS_OK) /* (the parsers leave their outputs NULL on failure) */
        return 0;
    if (j->route == SRV_JOB_GENERATE) {
        if (j->kind != SS_API_TRITON && srv_check_model(s, j->q.model, &j->e) != SS_OK)
            return 0;
        if (!j->q.prompt_ids && srv_prompt_text(s, &j->q, j, &j->e) != SS_OK)
            return 0;
    }
    j->parsed = 1;
    return 1;
}

/* Worker thread: the body's parse, then a chat request's rendering and the encoding (the template and the
 * tokenizer are read-only and thread-safe; nothing else of the server is touched but what srv_job_parse says). */
static void srv_tok_job_run(ss_work *w)
{
    srv_tok_job *j = (srv_tok_job *)w;
    if (!srv_job_parse(j))
        return;
    if (j->route == SRV_JOB_GENERATE && j->q.prompt_ids)
        return; /* ids given: nothing to encode */
    if (j->route == SRV_JOB_DETOKENIZE) {
        srv_detok_run(j);
        return;
    }
    if (j->render) {
        const ss_tokenizer *tok = j->s->tok;
        j->st = ss_chat_template_apply(j->s->tmpl, j->q.messages, j->q.tools, 1, ss_tokenizer_bos_token(tok),
                                       ss_tokenizer_eos_token(tok), &j->text, &j->text_len, &j->err);
        if (j->st != SS_OK)
            return;
        j->text_owned = 1;
    }
    j->st = ss_tokenizer_encode(j->s->tok, j->text, j->text_len, j->add_special, &j->ids, &j->n_ids, &j->err);
}

static void srv_tok_job_close(struct evhttp_connection *conn, void *arg)
{
    (void)conn;
    srv_tok_job *j = arg;
    j->gone = 1;
    /* as srv_on_close: a request still attached is freed with its connection; a detached one is ours */
    if (j->http && evhttp_request_get_connection(j->http) != NULL)
        j->http = NULL;
}

static void srv_generate_submit(ss_server *s, struct evhttp_request *req, ss_api_kind kind, ss_api_request *q,
                                int32_t *ids, int32_t n_ids, int64_t arrival_us);
static void srv_tokenize_reply(ss_server *s, struct evhttp_request *req, srv_tok_job *j);

/* Answers a request of the job kind `route` with an error before it reaches the pool or the scheduler; a
 * generation request counts as refused. */
static void srv_job_refuse(ss_server *s, struct evhttp_request *req, int route, ss_api_kind fam, int status,
                           const char *msg)
{
    if (route == SRV_JOB_GENERATE)
        ss_metrics_request_failed(s->metrics, SS_METRICS_FAIL_REJECTED, NULL);
    srv_fail(req, fam, status, NULL, msg);
}

/* Loop thread: the job is back from the pool (or the pool stopped before running it). */
static void srv_tok_job_done(ss_work *w)
{
    srv_tok_job *j = (srv_tok_job *)w;
    ss_server *s = j->s;
    s->live_reqs--;
    s->pool_jobs--;
    s->pool_bytes -= j->held;
    struct evhttp_request *http = j->http;
    struct evhttp_connection *conn = http ? evhttp_request_get_connection(http) : NULL;
    if (conn)
        evhttp_connection_set_closecb(conn, NULL, NULL);
    /* libevent reads nothing while a request is in the pool: a hang-up there would be seen only once the request
     * was scheduled (its prefill perhaps run) */
    if (!j->gone && srv_conn_hung_up(conn))
        j->gone = 1;
    ss_api_kind fam = j->route != SRV_JOB_GENERATE ? SS_API_COMPLETION : j->kind;
    if (w->cancelled || s->pool_closing || j->gone) {
        if (j->route == SRV_JOB_GENERATE)
            ss_metrics_request_failed(s->metrics, j->gone ? SS_METRICS_FAIL_CANCELED : SS_METRICS_FAIL_REJECTED,
                                      NULL);
        if (http) /* (a request whose client is gone is freed by the reply) */
            srv_fail(http, fam, 503, NULL, j->gone ? "client disconnected" : "server is shutting down");
    } else if (!j->parsed) {
        if (j->route == SRV_JOB_GENERATE)
            ss_metrics_request_failed(s->metrics, SS_METRICS_FAIL_REJECTED, NULL);
        srv_reply_error(http, fam, &j->e);
    } else if (j->route == SRV_JOB_TOKENIZE) {
        srv_tokenize_reply(s, http, j);
    } else if (j->route == SRV_JOB_DETOKENIZE) {
        if (j->reply) {
            srv_reply_owned(http, j->reply, j->reply_len);
            j->reply = NULL;
        } else {
            srv_reply_error(http, SS_API_COMPLETION, &j->e);
        }
    } else {
        ss_api_error e;
        memset(&e, 0, sizeof e);
        int32_t *ids = NULL, n = 0;
        ss_status st = SS_OK;
        if (j->q.prompt_ids) { /* ids given: the request's own */
            ids = j->q.prompt_ids;
            n = j->q.n_prompt_ids;
            j->q.prompt_ids = NULL;
            j->q.n_prompt_ids = 0;
        } else {
            st = srv_prompt_ids(j, &ids, &n, &e);
        }
        if (st == SS_OK) {
            srv_generate_submit(s, http, j->kind, &j->q, ids, n, j->arrival_us); /* takes ids and q's fields */
        } else {
            ss_metrics_request_failed(s->metrics, SS_METRICS_FAIL_REJECTED, NULL);
            srv_reply_error(http, fam, &e);
        }
    }
    srv_tok_job_free(j);
    if (s->drain_deferred && s->pool_jobs == 0 && !s->pool_closing) {
        s->drain_deferred = 0; /* the requests read before SIGTERM are all in the scheduler now */
        srv_start_drain(s);
    }
    srv_check_exit(s);
}

/* Hands j (its body) to the pool; the request's reply then comes from srv_tok_job_done. While it waits
 * libevent reads nothing more from the connection (no idle timeout runs; a hang-up is seen when the pool hands
 * the job back, srv_conn_hung_up). Beyond SRV_POOL_MAX_BYTES of bodies waiting there, a body longer than SRV_POOL_SMALL_BODY is refused
 * (429) instead: the bodies the loop keeps reading would otherwise pile up in memory. A small one still goes in,
 * up to SRV_POOL_SMALL_RESERVE more, so that a short request is not told to retry, nor a malformed one to come
 * back with the same 400, because of others' long prompts. */
static void srv_tok_job_start(ss_server *s, struct evhttp_request *req, srv_tok_job *j)
{
    const size_t bytes = j->body_len;
    const size_t cap = SRV_POOL_MAX_BYTES + (bytes <= SRV_POOL_SMALL_BODY ? SRV_POOL_SMALL_RESERVE : 0);
    j->held = bytes;
    if (s->pool_jobs > 0 && s->pool_bytes + bytes > cap) {
        srv_job_refuse(s, req, j->route, j->route == SRV_JOB_GENERATE ? j->kind : SS_API_COMPLETION, 429,
                       "the server is busy (too many long requests being parsed or tokenized); retry later");
        srv_tok_job_free(j);
        return;
    }
    j->s = s;
    j->http = req;
    j->w.run = srv_tok_job_run;
    j->w.done = srv_tok_job_done;
    s->live_reqs++; /* a drain waits for it */
    s->pool_jobs++;
    s->pool_bytes += bytes;
    struct evhttp_connection *conn = evhttp_request_get_connection(req);
    if (conn)
        evhttp_connection_set_closecb(conn, srv_tok_job_close, j);
    ss_work_pool_submit(s->pool, &j->w);
}

/* Builds one scheduler request of choice i (ownership to the caller, then to ss_sched_submit). */
static ss_status srv_build_gen(ss_server *s, const ss_api_request *q, const int32_t *ids, int32_t n_ids,
                               int32_t max_tokens, int32_t i, int64_t arrival_ms, ss_gen_request **out,
                               ss_api_error *e)
{
    ss_gen_request *g = ss_calloc(1, sizeof *g);
    if (!g)
        return ss_api_fail(e, 500, NULL, "out of memory");
    *out = g;
    g->prompt = ss_malloc((size_t)n_ids * sizeof *g->prompt);
    if (!g->prompt)
        return ss_api_fail(e, 500, NULL, "out of memory");
    memcpy(g->prompt, ids, (size_t)n_ids * sizeof *ids);
    g->n_prompt = n_ids;
    g->max_tokens = max_tokens;
    g->min_tokens = q->min_tokens;
    g->sp = q->sp;
    if (q->seed_given)
        g->sp.seed = q->sp.seed + (uint64_t)i;
    else
        g->sp.seed = srv_mix(s->id_seed ^ ++s->id_counter);
    g->ignore_eos = q->ignore_eos;
    g->json_mode = q->json_mode;
    g->json_schema = ss_json_schema_ref(q->json_schema); /* shared by the choices; each request drops its own */
    if (q->n_stop_ids) {
        g->stop_ids = ss_malloc((size_t)q->n_stop_ids * sizeof *g->stop_ids);
        if (!g->stop_ids)
            return ss_api_fail(e, 500, NULL, "out of memory");
        memcpy(g->stop_ids, q->stop_ids, (size_t)q->n_stop_ids * sizeof *g->stop_ids);
        g->n_stop_ids = q->n_stop_ids;
    }
    if (q->n_bias) {
        g->bias_ids = ss_malloc((size_t)q->n_bias * sizeof *g->bias_ids);
        g->bias_vals = ss_malloc((size_t)q->n_bias * sizeof *g->bias_vals);
        if (!g->bias_ids || !g->bias_vals)
            return ss_api_fail(e, 500, NULL, "out of memory");
        memcpy(g->bias_ids, q->bias_ids, (size_t)q->n_bias * sizeof *g->bias_ids);
        memcpy(g->bias_vals, q->bias_vals, (size_t)q->n_bias * sizeof *g->bias_vals);
        g->n_bias = q->n_bias;
    }
    for (int32_t k = 0; k < q->n_stop && k < SS_MAX_STOP_STRINGS; k++) {
        g->stop[k] = ss_strdup(q->stop[k]);
        if (!g->stop[k])
            return ss_api_fail(e, 500, NULL, "out of memory");
        g->n_stop = k + 1;
    }
    if (q->n_bad_words) {
        g->bad_words = ss_calloc((size_t)q->n_bad_words, sizeof *g->bad_words);
        g->bad_word_lens = ss_calloc((size_t)q->n_bad_words, sizeof *g->bad_word_lens);
        if (!g->bad_words || !g->bad_word_lens)
            return ss_api_fail(e, 500, NULL, "out of memory");
        for (int32_t k = 0; k < q->n_bad_words; k++) {
            size_t nn = 0;
            ss_err err;
            if (ss_tokenizer_encode(s->tok, q->bad_words[k], strlen(q->bad_words[k]), 0, &g->bad_words[k], &nn,
                                    &err) != SS_OK)
                return ss_api_fail(e, 400, "bad_words", "cannot tokenize 'bad_words[%d]': %s", (int)k, err.msg);
            g->n_bad_words = k + 1;
            g->bad_word_lens[k] = (int32_t)nn;
        }
    }
    g->include_prompt_penalty = q->kind == SS_API_TRITON;
    g->arrival_ms = arrival_ms;
    g->deadline_ms = s->p.request_timeout_ms > 0 ? arrival_ms + s->p.request_timeout_ms : 0;
    return SS_OK;
}

/* Reads the body; the work pool parses it, and srv_tok_job_done goes on. */
static void srv_job_begin(ss_server *s, struct evhttp_request *req, int route, ss_api_kind kind, int stream_endpoint)
{
    int64_t arrival_us = ss_now_us();
    ss_api_kind fam = route == SRV_JOB_GENERATE ? kind : SS_API_COMPLETION;
    char *body = NULL;
    size_t body_len = 0;
    ss_status st = ss_http_read_body(req, s->p.max_body_bytes, &body, &body_len);
    if (st != SS_OK) {
        srv_job_refuse(s, req, route, fam, st == SS_ERR_CAPACITY ? 413 : 500,
                       st == SS_ERR_CAPACITY ? "request body is larger than --max-body-bytes"
                                             : "cannot read the request body");
        return;
    }
    srv_tok_job *j = ss_calloc(1, sizeof *j);
    if (!j) {
        ss_free(body);
        srv_job_refuse(s, req, route, fam, 500, "out of memory");
        return;
    }
    j->route = route;
    j->kind = kind;
    j->stream_endpoint = stream_endpoint;
    j->body = body;
    j->body_len = body_len;
    j->arrival_us = arrival_us;
    srv_tok_job_start(s, req, j);
}

void srv_generate(ss_server *s, struct evhttp_request *req, ss_api_kind kind, int stream_endpoint)
{
    srv_job_begin(s, req, SRV_JOB_GENERATE, kind, stream_endpoint);
}

/* The rest of a generation request, its prompt tokenized: the context checks, one scheduler request per
 * choice, the reply's start. Takes ids and q's fields (q is cleared). */
static void srv_generate_submit(ss_server *s, struct evhttp_request *req, ss_api_kind kind, ss_api_request *qp,
                                int32_t *ids, int32_t n_ids, int64_t arrival_us)
{
    ss_api_error e;
    memset(&e, 0, sizeof e);
    ss_status st = SS_OK;
    ss_api_request q = *qp;
    memset(qp, 0, sizeof *qp);
    srv_req *r = NULL;
    int32_t ctx = s->limits.max_context;
    if (n_ids >= ctx) {
        st = ss_api_fail(&e, 400, kind == SS_API_CHAT ? "messages" : (kind == SS_API_TRITON ? "text_input" : "prompt"),
                         "the prompt has %d tokens, but the context length is %d (at least one token must be "
                         "generated)",
                         (int)n_ids, (int)ctx);
        goto fail;
    }
    int32_t max_tokens = q.max_tokens > 0 ? q.max_tokens : ctx - n_ids;
    if ((int64_t)n_ids + max_tokens > ctx) {
        st = ss_api_fail(&e, 400, "max_tokens",
                         "the context length is %d tokens, but %d were requested (%d in the prompt, %d to generate)",
                         (int)ctx, (int)(n_ids + max_tokens), (int)n_ids, (int)max_tokens);
        goto fail;
    }
    if (q.min_tokens > max_tokens) { /* chat without max_tokens: the room left after the prompt */
        st = ss_api_fail(&e, 400, "min_tokens", "'min_tokens' is %d, but only %d tokens fit after the prompt",
                         (int)q.min_tokens, (int)max_tokens);
        goto fail;
    }

    r = ss_calloc(1, sizeof *r);
    if (!r) {
        st = ss_api_fail(&e, 500, NULL, "out of memory");
        goto fail;
    }
    s->live_reqs++;
    r->s = s;
    r->kind = kind;
    r->n = q.n;
    r->stream = q.stream;
    r->include_usage = q.include_usage;
    r->return_log_probs = q.return_log_probs;
    r->arrival_us = arrival_us;
    r->first_ttft_us = -1;
    r->subs = ss_calloc((size_t)r->n, sizeof *r->subs);
    r->choices = ss_calloc((size_t)r->n, sizeof *r->choices);
    if (!r->subs || !r->choices) {
        st = ss_api_fail(&e, 500, NULL, "out of memory");
        goto fail;
    }
    uint64_t idv = srv_mix(s->id_seed + ++s->id_counter);
    ss_api_openai_make_id(kind, idv, srv_mix(idv), r->id, sizeof r->id);
    r->meta.kind = kind;
    r->meta.id = r->id;
    r->meta.created = ss_api_now_unix();
    r->meta.model = s->model_name;
    r->meta.logprobs = q.logprobs;
    r->meta.top_logprobs = q.top_logprobs;
    if (q.tool_choice != SS_TOOL_CHOICE_NONE) { /* the answers' calls are parsed against the tools */
        r->tools = q.tools;
        q.tools = NULL;
        r->tool_choice = q.tool_choice;
        r->max_calls = q.parallel_tool_calls ? 64 : 1;
    }
    for (int32_t i = 0; i < r->n; i++) {
        r->subs[i].r = r;
        r->subs[i].index = i;
        r->choices[i].index = i;
    }
    for (int32_t i = 0; i < r->n; i++) {
        ss_gen_request *g = NULL;
        st = srv_build_gen(s, &q, ids, n_ids, max_tokens, i, arrival_us / 1000, &g, &e);
        if (st != SS_OK) {
            ss_gen_request_free(g);
            break;
        }
        ss_err err;
        st = ss_sched_submit(s->sched, g, srv_sub_cb, &r->subs[i], &r->subs[i].id, &err);
        if (st != SS_OK) {
            if (st == SS_ERR_CAPACITY)
                ss_api_fail(&e, 429, NULL, "the server is busy (request queue full); retry later");
            else if (st == SS_ERR_INVALID_ARG)
                ss_api_fail(&e, 400, NULL, "%s", err.msg);
            else
                ss_api_fail(&e, 503, NULL, "cannot schedule the request: %s", err.msg);
            break;
        }
        r->subs[i].submitted = 1;
        r->n_submitted++;
    }
    ss_free(ids);
    ids = NULL;
    ss_api_request_clear(&q);
    if (r->n_submitted == 0) {
        ss_metrics_request_failed(s->metrics, SS_METRICS_FAIL_REJECTED, NULL);
        srv_reply_error(req, kind, &e);
        srv_req_free(r);
        return;
    }
    r->http = req;
    struct evhttp_connection *conn = evhttp_request_get_connection(req);
    if (conn) {
        evhttp_connection_set_closecb(conn, srv_on_close, r);
        srv_watch(r, conn);
        /* From here the request's own deadline governs: a request waiting in the queue (or streaming
         * slowly) must not be cut by the idle-connection timeout meant for slowloris clients. */
        int tmo = s->p.request_timeout_ms > 0 ? (int)(s->p.request_timeout_ms / 1000) + 30 : 7 * 86400;
        evhttp_connection_set_timeout(conn, tmo);
    }
    if (r->n_submitted < r->n) {
        /* A later choice was refused: fail the whole request once the submitted ones stop. It counts as
         * refused (as when no choice got in), not as cancelled by its own cancellations below. */
        r->failed = 1;
        r->err = e;
        r->counted = 1;
        ss_metrics_request_failed(s->metrics, SS_METRICS_FAIL_REJECTED, NULL);
        for (int32_t i = 0; i < r->n; i++)
            if (r->subs[i].submitted)
                srv_cancel(s, r->subs[i].id);
        return;
    }
    if (r->stream) {
        ss_http_start_sse(req);
        r->stream_started = 1;
        if (kind == SS_API_CHAT) {
            /* The assistant role comes first, as OpenAI's stream does. */
            for (int32_t i = 0; i < r->n; i++) {
                size_t len = 0;
                char *j = ss_api_openai_chunk_json(&r->meta, i, "", 0, NULL, 0, 1, NULL, NULL, &len);
                srv_stream_send(r, j, len);
                ss_free(j);
            }
        }
    }
    return;
fail:
    ss_metrics_request_failed(s->metrics, SS_METRICS_FAIL_REJECTED, NULL);
    srv_reply_error(req, kind, &e);
    ss_free(ids);
    ss_api_request_clear(&q);
    if (r)
        srv_req_free(r);
}

/* ---- tokenize / detokenize ------------------------------------------------------------------------- */

void srv_tokenize(ss_server *s, struct evhttp_request *req, int decode)
{
    srv_job_begin(s, req, decode ? SRV_JOB_DETOKENIZE : SRV_JOB_TOKENIZE, SS_API_COMPLETION, 0);
}

/* POST /tokenize's reply, its prompt encoded (srv_tok_job_done). */
static void srv_tokenize_reply(ss_server *s, struct evhttp_request *req, srv_tok_job *j)
{
    if (j->st != SS_OK) {
        srv_fail(req, SS_API_COMPLETION, 400, "prompt", j->err.msg);
        return;
    }
    size_t len = 0;
    char *json = ss_api_tokenize_json(j->ids, (int32_t)j->n_ids, s->limits.max_context, &len);
    srv_reply_owned(req, json, len);
}


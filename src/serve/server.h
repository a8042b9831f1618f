/* server.h — the serving process of a replica's leader: loads tokenizer, chat template and replica in
 * the background, runs the scheduler, and answers the Triton v2 and OpenAI APIs on one port and
 * Prometheus metrics on another, until SIGTERM/SIGINT drains it. */
#ifndef SS_SERVER_H
#define SS_SERVER_H

#include <stddef.h>
#include <stdint.h>

#include "core/status.h"
#include "runner/replica.h"
#include "serve/sched.h"

typedef struct ss_server ss_server;

typedef struct ss_server_params {
    const char *model_dir;         /* checkpoint or engine folder (borrowed) */
    const char *served_model_name; /* NULL: basename of model_dir, lowercased */
    ss_replica_params replica;     /* model_dir is filled in from above */
    ss_sched_params sched;
    const char *host;              /* default "0.0.0.0" */
    int port;                      /* default 8000; 0 = any free port */
    int metrics_port;              /* default 8002; 0 = any free port; -1 = no metrics listener */
    const char *api_key;           /* NULL/empty: no auth */
    size_t max_body_bytes;         /* default 8 MiB -> 413 */
    size_t max_header_bytes;       /* default 16 KiB */
    int conn_timeout_s;            /* per-connection read/write timeout (slowloris), default 30 */
    int64_t request_timeout_ms;    /* generation deadline per request, 0 = none (default 600000) */
    int64_t drain_timeout_ms;      /* graceful shutdown deadline, default 30000 */
    int32_t max_n;                 /* OpenAI n cap, default 16 */
    int warmup;                    /* 1-token warm-up before ready (default 1) */
    int generation_config;         /* 1 (default): the model's generation_config.json sets the sampling
                                    * fields a request leaves out; 0: they stay greedy */
} ss_server_params;

ss_server_params ss_server_default_params(void);

/* Binds both listeners (so a busy port fails here, before any loading). Caller destroys. */
ss_status ss_server_create(const ss_server_params *p, ss_server **out, ss_err *err);
/* Ports actually bound (useful with port 0). */
int ss_server_port(const ss_server *s);
int ss_server_metrics_port(const ss_server *s);
/* Loads the model in a background thread and serves until SIGTERM/SIGINT; then stops accepting,
 * drains the scheduler within drain_timeout_ms and returns SS_OK. A failed load returns its status. */
ss_status ss_server_run(ss_server *s, ss_err *err);
void ss_server_destroy(ss_server *s);

#endif

/* cmd_serve.c — `shardserve serve`: flags (with SHARDSERVE_* twins) into ss_server_params, the bundled
 * default model when --model is absent, then the server's run loop until SIGTERM/SIGINT. */
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cli/commands.h"
#include "cli/default_model.h"
#include "cli/engine_layout.h"
#include "cli/opts.h"
#include "cli/rank_env.h"
#include "core/alloc.h"
#include "core/fileio.h"
#include "engine/manifest.h"
#include "core/log.h"
#include "core/status.h"
#include "serve/server.h"

typedef struct serve_opts {
    const char *model, *engine, *device, *host, *api_key, *served_name, *log_level, *overlap, *gen_config;
    const char *revision, *dtype, *cache, *token_file, *leader_addr, *kv_dtype, *quant;
    int64_t nnodes, node_rank, gpus_per_node, rdzv_port, comm_timeout, join_timeout;
    int64_t tp, pp, port, metrics_port, threads;
    int64_t max_batch, max_waiting, max_step_tokens, max_seq_len, num_kv_blocks, block_size;
    int64_t max_body_bytes, max_header_bytes, conn_timeout, request_timeout, drain_timeout, max_n;
    int64_t spec_tokens, spec_max_batch;
    int no_prefix_cache, no_warmup, no_pace, prefill_attn_budget;
} serve_opts;

static int serve_fail(const ss_opts_src *src, ss_status st, ss_err *e)
{
    ss_opts_explain(src, e);
    fprintf(stderr, "shardserve serve: %s\n", e->msg);
    return st == SS_ERR_CANCELLED ? SS_EXIT_OK : ss_status_exit_code(st);
}

static ss_status serve_range(const char *flag, int64_t v, int64_t lo, int64_t hi, ss_err *e)
{
    if (v < lo || v > hi)
        return ss_err_set(e, SS_ERR_INVALID_ARG, "--%s must be in [%lld, %lld] (got %lld)", flag, (long long)lo,
                          (long long)hi, (long long)v);
    return SS_OK;
}

int ss_cmd_serve(int argc, char **argv, char **env)
{
    ss_server_params p = ss_server_default_params();
    serve_opts o;
    memset(&o, 0, sizeof o);
    o.device = "auto";
    o.kv_dtype = "auto";
    o.quant = "auto";
    o.host = p.host;
    o.log_level = "info";
    o.overlap = "auto";
    o.gen_config = "auto";
    o.tp = o.pp = SS_CLI_UNSET; /* left out: the engine's own layout, else 1 (below) */
    o.port = p.port;
    o.metrics_port = p.metrics_port;
    o.max_batch = p.sched.max_running;
    o.max_waiting = p.sched.max_waiting;
    o.max_step_tokens = p.sched.max_step_tokens;
    o.block_size = p.replica.block_size;
    o.max_body_bytes = (int64_t)p.max_body_bytes;
    o.max_header_bytes = (int64_t)p.max_header_bytes;
    o.conn_timeout = p.conn_timeout_s;
    o.request_timeout = p.request_timeout_ms / 1000;
    o.revision = "main";
    o.dtype = "bf16";
    o.nnodes = o.node_rank = o.gpus_per_node = -1;
    o.rdzv_port = 29500;
    o.join_timeout = SS_CLI_JOIN_TIMEOUT_DEFAULT;
    o.comm_timeout = 60;
    o.drain_timeout = p.drain_timeout_ms / 1000;
    o.max_n = p.max_n;
    o.spec_tokens = p.sched.spec_tokens;
    o.spec_max_batch = p.sched.spec_max_running;
    const ss_opt opts[] = {
        {"model", SS_OPT_STR, &o.model, "Hugging Face id or checkpoint folder (default: the bundled demo model)"},
        {"revision", SS_OPT_STR, &o.revision, "Hub branch, tag or commit of --model (default main)"},
        {"dtype", SS_OPT_STR, &o.dtype, "engine dtype when preparing: bf16 | fp16 | fp32 (default bf16)"},
        {"cache", SS_OPT_STR, &o.cache, "engine cache root; with it (or a Hub id) serve prepares the engine first"},
        {"hf-token-file", SS_OPT_STR, &o.token_file, "file holding the Hub token (else HF_TOKEN)"},
        {"nnodes", SS_OPT_INT, &o.nnodes, "machines in the replica (default 1)"},
        {"node-rank", SS_OPT_INT, &o.node_rank, "this machine's index (0 serves HTTP; others are workers)"},
        {"gpus-per-node", SS_OPT_INT, &o.gpus_per_node, "ranks per machine (default tp x pp / nnodes)"},
        {"leader-addr", SS_OPT_STR, &o.leader_addr, "HOST:PORT where rank 0 meets the other ranks"},
        {"rendezvous-port", SS_OPT_INT, &o.rdzv_port, "rendezvous port with LeaderWorkerSet / MPI (default 29500)"},
        {"join-timeout", SS_OPT_INT, &o.join_timeout,
         "a node other than the leader's: seconds to keep trying to reach the leader, which prepares the engine first"},
        {"comm-timeout", SS_OPT_INT, &o.comm_timeout, "seconds before a silent rank fails a step (default 60)"},
        {"engine", SS_OPT_STR, &o.engine, "prepared engine folder (instead of --model)"},
        {"tp", SS_OPT_INT, &o.tp, "tensor-parallel degree (default: the engine's, else 1)"},
        {"pp", SS_OPT_INT, &o.pp, "pipeline-parallel degree (default: the engine's, else 1)"},
        {"device", SS_OPT_STR, &o.device, "auto | cpu | cuda"},
        {"threads", SS_OPT_INT, &o.threads, "CPU threads (0 = all cores)"},
        {"host", SS_OPT_STR, &o.host, "address to listen on"},
        {"port", SS_OPT_INT, &o.port, "HTTP port of the Triton v2 and OpenAI APIs"},
        {"metrics-port", SS_OPT_INT, &o.metrics_port, "Prometheus /metrics port (-1: off)"},
        {"api-key", SS_OPT_STR, &o.api_key, "require 'Authorization: Bearer KEY' on /v1/* and /v2/models/*"},
        {"served-model-name", SS_OPT_STR, &o.served_name, "model name in the APIs (default: folder name, lowercased)"},
        {"max-batch", SS_OPT_INT, &o.max_batch, "sequences in one running batch"},
        {"max-waiting", SS_OPT_INT, &o.max_waiting, "waiting-queue bound, in sequences (a request of n choices takes n; beyond it: 429)"},
        {"max-step-tokens", SS_OPT_INT, &o.max_step_tokens, "token budget per step (chunked prefill)"},
        {"prefill-attention-budget", SS_OPT_BOOL, &o.prefill_attn_budget,
         "beside decoding sequences, a prompt chunk's attention counts against the step budget too: streams keep "
         "their pace while a long prompt prefills, which takes longer"},
        {"speculative-ngram", SS_OPT_INT, &o.spec_tokens,
         "speculative decoding by prompt lookup: up to this many draft tokens, copied from where the sequence's last "
         "tokens occurred before, are verified in each step (0: off; same text, sooner when the output repeats "
         "its input)"},
        {"speculative-max-batch", SS_OPT_INT, &o.spec_max_batch,
         "speculate only while at most this many sequences run (larger batches are not bound by the weights' reads)"},
        {"max-seq-len", SS_OPT_INT, &o.max_seq_len, "context cap in tokens (0: the model's, within the KV cache)"},
        {"num-kv-blocks", SS_OPT_INT, &o.num_kv_blocks, "KV-cache blocks (0: automatic)"},
        {"block-size", SS_OPT_INT, &o.block_size, "KV block size in tokens"},
        {"kv-cache-dtype", SS_OPT_STR, &o.kv_dtype, SS_KV_DTYPE_HELP},
        {"quantization", SS_OPT_STR, &o.quant, SS_QUANT_HELP},
        {"no-prefix-cache", SS_OPT_BOOL, &o.no_prefix_cache, "turn prefix caching off"},
        {"overlap", SS_OPT_STR, &o.overlap,
         "auto | on | off: plan a decode step while the one before it runs (auto: GPU replicas without pipeline stages)"},
        {"no-pace", SS_OPT_BOOL, &o.no_pace,
         "with overlap, plan that step at once, not shortly before the running step's expected end (a request "
         "arriving meanwhile then waits a step more)"},
        {"generation-config", SS_OPT_STR, &o.gen_config,
         "auto | none: the model's generation_config.json sets the sampling fields a request leaves out "
         "(temperature, top_p, top_k, min_p, repetition_penalty; none: greedy)"},
        {"max-body-bytes", SS_OPT_INT, &o.max_body_bytes, "largest request body (beyond it: 413)"},
        {"max-header-bytes", SS_OPT_INT, &o.max_header_bytes, "largest request header block"},
        {"conn-timeout", SS_OPT_INT, &o.conn_timeout, "seconds a connection may stall reading/writing"},
        {"request-timeout", SS_OPT_INT, &o.request_timeout, "seconds a generation may take (0: no limit)"},
        {"drain-timeout", SS_OPT_INT, &o.drain_timeout, "seconds to finish in-flight work on SIGTERM"},
        {"max-n", SS_OPT_INT, &o.max_n, "largest OpenAI n"},
        {"no-warmup", SS_OPT_BOOL, &o.no_warmup, "skip the warm-up generation before ready (tests only)"},
        {"log-level", SS_OPT_STR, &o.log_level, "debug | info | warn | error"},
        {NULL, 0, NULL, NULL},
    };
    ss_err e;
    memset(&e, 0, sizeof e);
    ss_status st = ss_opts_parse(opts, argc, argv, 2, env, "serve", &e);
    const ss_opts_src src = {opts, argc, argv, 2, env};
    if (st == SS_ERR_CANCELLED)
        return SS_EXIT_OK;
    if (st == SS_OK && strcmp(o.overlap, "auto") && strcmp(o.overlap, "on") && strcmp(o.overlap, "off"))
        st = ss_err_set(&e, SS_ERR_INVALID_ARG, "--overlap must be auto, on or off (got '%s')", o.overlap);
    if (st == SS_OK && strcmp(o.gen_config, "auto") && strcmp(o.gen_config, "none"))
        st = ss_err_set(&e, SS_ERR_INVALID_ARG, "--generation-config must be auto or none (got '%s')", o.gen_config);
    ss_log_level lvl = SS_LOG_INFO;
    if (st == SS_OK && ss_log_level_parse(o.log_level, &lvl) != 0)
        st = ss_err_set(&e, SS_ERR_INVALID_ARG, "--log-level must be debug, info, warn or error (got '%s')",
                        o.log_level);
    if (st != SS_OK)
        return serve_fail(&src, SS_ERR_INVALID_ARG, &e);
    ss_log_init(lvl, "serve");

    /* A prepared engine (--engine, or --model naming one) brings its layout and its model's name. */
    char engine_name[256];
    const char *layout_dir = o.engine ? o.engine : o.model && ss_path_exists(o.model) ? o.model : NULL;
    if ((st = ss_cli_engine_layout(layout_dir, o.engine != NULL, &o.tp, &o.pp, engine_name, sizeof engine_name, &e)) !=
        SS_OK)
        return serve_fail(&src, st, &e);
    if (!o.served_name && engine_name[0])
        o.served_name = engine_name;
    if ((st = serve_range("port", o.port, 0, 65535, &e)) != SS_OK ||
        (st = serve_range("metrics-port", o.metrics_port, -1, 65535, &e)) != SS_OK ||
        (st = serve_range("tp", o.tp, 1, 1024, &e)) != SS_OK || (st = serve_range("pp", o.pp, 1, 1024, &e)) != SS_OK ||
        (st = serve_range("threads", o.threads, 0, 4096, &e)) != SS_OK ||
        (st = serve_range("max-batch", o.max_batch, 1, 65536, &e)) != SS_OK ||
        (st = serve_range("max-waiting", o.max_waiting, 1, 1 << 20, &e)) != SS_OK ||
        (st = serve_range("max-step-tokens", o.max_step_tokens, 1, 1 << 20, &e)) != SS_OK ||
        (st = serve_range("max-seq-len", o.max_seq_len, 0, 1 << 24, &e)) != SS_OK ||
        (st = serve_range("num-kv-blocks", o.num_kv_blocks, 0, INT32_MAX, &e)) != SS_OK ||
        (st = serve_range("block-size", o.block_size, 1, 4096, &e)) != SS_OK ||
        (st = serve_range("max-body-bytes", o.max_body_bytes, 1024, (int64_t)1 << 32, &e)) != SS_OK ||
        (st = serve_range("max-header-bytes", o.max_header_bytes, 1024, 1 << 24, &e)) != SS_OK ||
        (st = serve_range("conn-timeout", o.conn_timeout, 1, 86400, &e)) != SS_OK ||
        (st = serve_range("request-timeout", o.request_timeout, 0, 86400 * 7, &e)) != SS_OK ||
        (st = serve_range("drain-timeout", o.drain_timeout, 0, 86400, &e)) != SS_OK ||
        (st = serve_range("max-n", o.max_n, 1, 128, &e)) != SS_OK ||
        (st = serve_range("comm-timeout", o.comm_timeout, 1, 86400, &e)) != SS_OK ||
        (st = serve_range("join-timeout", o.join_timeout, 1, SS_CLI_JOIN_TIMEOUT_MAX, &e)) != SS_OK ||
        (st = serve_range("speculative-ngram", o.spec_tokens, 0, SS_SPEC_MAX_TOKENS, &e)) != SS_OK ||
        (st = serve_range("speculative-max-batch", o.spec_max_batch, 1, 65536, &e)) != SS_OK)
        return serve_fail(&src, st, &e);
    if (!strcmp(o.device, "cpu"))
        p.replica.backend.device = SS_DEVICE_CPU;
    else if (!strcmp(o.device, "cuda"))
        p.replica.backend.device = SS_DEVICE_CUDA;
    else if (strcmp(o.device, "auto") != 0)
        return serve_fail(&src, ss_err_set(&e, SS_ERR_INVALID_ARG, "--device must be auto, cpu or cuda (got '%s')",
                                           o.device), &e);
    if (ss_kv_type_parse(o.kv_dtype, &p.replica.backend.kv_type, &e) != SS_OK ||
        ss_linear_type_parse(o.quant, &p.replica.backend.linear_type, &e) != SS_OK)
        return serve_fail(&src, SS_ERR_INVALID_ARG, &e);

    /* Where this process sits: a node other than the leader's runs workers only (no HTTP). */
    ss_rank_info ri;
    st = ss_rank_discover(env, (int)o.tp, (int)o.pp, (int)o.nnodes, (int)o.node_rank, (int)o.gpus_per_node,
                          o.leader_addr, (int)o.rdzv_port, &ri, &e);
    if (st != SS_OK)
        return serve_fail(&src, st, &e);
    if (ri.rank != 0) {
        SS_LOGI("serve: rank %d of %d (%s): worker, no HTTP", ri.rank, ri.world, ri.source);
        return ss_cli_run_node(&ri, o.join_timeout);
    }
    p.replica.leader_addr = ri.leader_addr[0] ? ri.leader_addr : NULL;
    p.replica.gpus_per_node = ri.gpus_per_node;
    p.replica.local_ranks = ri.per_process ? 1 : 0;
    p.replica.comm_timeout_ms = (int)(o.comm_timeout * 1000);

    char default_dir[PATH_MAX];
    char *engine_dir = NULL;
    p.model_dir = o.engine ? o.engine : o.model;
    if (!p.model_dir) {
        if ((st = ss_default_model_dir(default_dir, sizeof default_dir, &e)) != SS_OK)
            return serve_fail(&src, st, &e);
        p.model_dir = default_dir;
    } else if (!o.engine && (o.cache || !ss_path_exists(o.model))) {
        /* A Hub id, or a folder to cache: the same code path as `shardserve prepare`. */
        ss_engine_params ep = ss_engine_default_params();
        ep.model = o.model;
        ep.revision = o.revision;
        ep.tp = (int)o.tp;
        ep.pp = (int)o.pp;
        ep.tty = isatty(STDERR_FILENO);
        if ((st = ss_engine_dtype_parse(o.dtype, &ep.dtype, &e)) != SS_OK)
            return serve_fail(&src, SS_ERR_INVALID_ARG, &e);
        if ((st = ss_cli_engine_prepare(env, &ep, o.cache, o.token_file, &engine_dir, &e)) != SS_OK)
            return serve_fail(&src, st, &e);
        p.model_dir = engine_dir;
        if (!o.served_name) { /* name the model after the id, not the cache folder */
            const char *slash = strrchr(o.model, '/');
            o.served_name = slash && slash[1] ? slash + 1 : o.model;
        }
    }
    p.served_model_name = o.served_name;
    p.host = o.host;
    p.port = (int)o.port;
    p.metrics_port = (int)o.metrics_port;
    if (o.api_key && !o.api_key[0]) {
        /* given, but empty (an unset shell variable): serving without a key would be a silent surprise */
        fprintf(stderr, "shardserve serve: --api-key is empty; give a key, or leave the flag out to serve without one\n");
        return SS_EXIT_USAGE;
    }
    p.api_key = o.api_key;
    p.replica.tp = (int)o.tp;
    p.replica.pp = (int)o.pp;
    p.replica.backend.n_threads = (int)o.threads;
    p.replica.block_size = (int32_t)o.block_size;
    p.replica.num_kv_blocks = (int32_t)o.num_kv_blocks;
    p.replica.max_seq_len = (int32_t)o.max_seq_len;
    p.sched.max_running = (int32_t)o.max_batch;
    p.sched.spec_tokens = (int32_t)o.spec_tokens;
    p.sched.spec_max_running = (int32_t)o.spec_max_batch;
    /* Size the ranks for the steps the scheduler will send (a speculating sequence takes an entry per draft). */
    p.replica.max_seqs = ss_sched_max_entries(&p.sched);
    p.replica.max_batch_tokens = o.max_step_tokens > p.replica.max_seqs ? o.max_step_tokens : p.replica.max_seqs;
    p.sched.max_waiting = (int32_t)o.max_waiting;
    p.sched.max_step_tokens = (int32_t)o.max_step_tokens;
    p.sched.enable_prefix_cache = !o.no_prefix_cache;
    p.sched.overlap = !strcmp(o.overlap, "on") ? SS_OVERLAP_ON : !strcmp(o.overlap, "off") ? SS_OVERLAP_OFF : SS_OVERLAP_AUTO;
    p.sched.pace = !o.no_pace;
    p.sched.prefill_attn_budget = o.prefill_attn_budget;
    const char *floor_us = getenv("SS_PACE_MARGIN_MIN_US"); /* benchmark switch (docs/architecture.md) */
    if (floor_us) {
        char *end = NULL;
        long v = strtol(floor_us, &end, 10);
        if (end != floor_us && *end == '\0' && v > 0 && v <= 1000000)
            p.sched.pace_margin_min_us = (int32_t)v;
        else
            SS_LOGW("serve: SS_PACE_MARGIN_MIN_US='%s' is not a count of microseconds in 1..1000000: ignored",
                    floor_us);
    }
    p.max_body_bytes = (size_t)o.max_body_bytes;
    p.max_header_bytes = (size_t)o.max_header_bytes;
    p.conn_timeout_s = (int)o.conn_timeout;
    p.request_timeout_ms = o.request_timeout * 1000;
    p.drain_timeout_ms = o.drain_timeout * 1000;
    p.max_n = (int32_t)o.max_n;
    p.generation_config = !strcmp(o.gen_config, "auto");
    p.warmup = !o.no_warmup;
    SS_LOGI("serve: model %s, device %s, tp %d, pp %d", p.model_dir, o.device, p.replica.tp, p.replica.pp);

    ss_server *srv = NULL;
    st = ss_server_create(&p, &srv, &e);
    if (st == SS_OK)
        st = ss_server_run(srv, &e);
    ss_server_destroy(srv);
    ss_free(engine_dir);
    if (st != SS_OK)
        return serve_fail(&src, st, &e);
    return SS_EXIT_OK;
}
